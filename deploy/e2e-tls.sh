#!/usr/bin/env bash
# TLS for the binary protocol through standard terminators, on loopback:
#   - a self-signed CA and a server certificate for 127.0.0.1 (openssl)
#   - one `sq host` with TENANTS tenants (cleartext, loopback only)
#   - HAProxy with deploy/haproxy/haproxy-tls.cfg: TLS termination plus
#     routing by token (req.payload_lv(11,1)) to the host
#   - stunnel (deploy/stunnel/sq-server.conf): TLS termination in front of
#     the same host, no routing
#   - stunnel in client mode (deploy/stunnel/sq-client.conf) so the TLS-less
#     sq CLI and sq bench can use both, verifying the certificate
# Checks: openssl s_client verifies the chain on both TLS ports; a
# cleartext HELLO to a TLS port gets no answer; ping/update/select and a
# verified sq bench work through each TLS path; throughput vs direct.
# Everything it starts is killed on exit.
#
#   deploy/e2e-tls.sh       TENANTS=20 DURATION=5s REPEAT=3 SQ_BIN=bin/sq KEEP=1 RESULTS=FILE
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
source deploy/lib.sh

TENANTS=${TENANTS:-20}
DURATION=${DURATION:-5s}
REPEAT=${REPEAT:-3}      # rounds over all paths; medians reported
need haproxy haproxy
need stunnel stunnel4
need jq jq
need openssl openssl

work=$(mktemp -d /tmp/sq-tls.XXXXXX)
pids=()
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait_exit "$p" 15 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ] || [ $rc != 0 ]; then echo "work dir kept: $work" >&2; else rm -rf "$work"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
step() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

if [ -n "${SQ_BIN:-}" ]; then sq=$(realpath "$SQ_BIN"); else
  step "build sq"
  go build -o "$work/sq" ./cmd/sq
  sq=$work/sq
fi
cd "$work"

step "self-signed CA and server certificate for 127.0.0.1"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=sq test CA" \
  -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >ext.cnf
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
  -extfile ext.cnf -out server.crt 2>/dev/null
cat server.crt server.key >server.pem
chmod 600 server.pem server.key ca.key

step "one sq host with $TENANTS tenants"
"$sq" tenants gen --count "$TENANTS" --dir "$work/data" --out tenants.json 2>/dev/null
hh=$(free_port) # --http port, where HAProxy checks GET /readyz
"$sq" tenants shard --hosts 1 --config tenants.json --out shard --health-ports "$hh" 2>/dev/null
ph=$(free_port); pf=$(free_port); pa=$(free_port); pt=$(free_port); ps=$(free_port)
pc1=$(free_port); pc2=$(free_port)
sq_http_args "$sq" "$hh"
"$sq" host --listen "127.0.0.1:$ph" "${SQ_HTTP_ARGS[@]}" --config shard/host-1.json --log-format json >host.out 2>host.log &
hpid=$!; pids+=("$hpid")
wait_for_line host.out '"msg":"listening"' 30

step "HAProxy: plain 127.0.0.1:$pf and TLS 127.0.0.1:$pt, routed by token"
export SQ_FRONTEND=127.0.0.1:$pf SQ_TLS_FRONTEND=127.0.0.1:$pt SQ_TLS_PEM=$work/server.pem
export SQ_MAP=$work/shard/tokens.map SQ_HAPROXY_ADMIN=ipv4@127.0.0.1:$pa SQ_MAXCONN=2000 SQ_HOST1=127.0.0.1:$ph
cfgs=(-f "$repo/deploy/haproxy/haproxy.cfg" -f "$repo/deploy/haproxy/haproxy-tls.cfg" -f shard/backends.cfg)
haproxy -c -q "${cfgs[@]}"
haproxy -W -db "${cfgs[@]}" >haproxy.log 2>&1 &
pids+=($!)
wait_port 127.0.0.1 "$pt" 20

step "stunnel server: TLS 127.0.0.1:$ps -> sq; stunnel client: 127.0.0.1:$pc1 -> HAProxy TLS, 127.0.0.1:$pc2 -> stunnel TLS"
sed -e "s#@FOREGROUND@#yes#" -e "s#@PIDFILE@##" -e '/@SETUID@/d' -e '/@SETGID@/d' \
  -e "s#@ACCEPT@#127.0.0.1:$ps#" -e "s#@CONNECT@#127.0.0.1:$ph#" -e "s#@PEM@#$work/server.pem#" \
  "$repo/deploy/stunnel/sq-server.conf" >stunnel-server.conf
stunnel stunnel-server.conf >stunnel-server.log 2>&1 &
pids+=($!)
for pair in "$pc1:$pt" "$pc2:$ps"; do
  sed -e "s#@FOREGROUND@#yes#" -e "s#@PIDFILE@##" -e "s#@ACCEPT@#127.0.0.1:${pair%%:*}#" \
    -e "s#@CONNECT@#127.0.0.1:${pair##*:}#" -e "s#@CAFILE@#$work/ca.pem#" -e "s#@CHECKIP@#127.0.0.1#" \
    "$repo/deploy/stunnel/sq-client.conf" >"stunnel-client-${pair%%:*}.conf"
  stunnel "stunnel-client-${pair%%:*}.conf" >"stunnel-client-${pair%%:*}.log" 2>&1 &
  pids+=($!)
done
wait_port 127.0.0.1 "$ps" 20; wait_port 127.0.0.1 "$pc1" 20; wait_port 127.0.0.1 "$pc2" 20

step "the TLS ports speak TLS with a certificate that verifies"
for p in "$pt" "$ps"; do
  out=$(openssl s_client -connect "127.0.0.1:$p" -CAfile ca.pem -verify_ip 127.0.0.1 -brief </dev/null 2>&1 || true)
  grep -q 'Verification: OK' <<<"$out" || { echo "$out" >&2; fail "TLS on port $p does not verify"; }
  echo "127.0.0.1:$p: $(grep -m1 'Protocol version' <<<"$out" | tr -s ' '), $(grep -m1 'Ciphersuite' <<<"$out" | tr -s ' '), verification OK"
done
tok=$(jq -r '.tenants | keys[0]' shard/host-1.json)
for p in "$pt" "$ps"; do
  if "$sq" ping --addr "127.0.0.1:$p" --token "$tok" --timeout 3s >/dev/null 2>&1; then
    fail "a cleartext client was answered on TLS port $p"
  fi
done
echo "cleartext HELLO on the TLS ports: no answer (as expected)"

step "protocol through TLS"
for via in "HAProxy-TLS:$pc1" "stunnel:$pc2"; do
  a=127.0.0.1:${via##*:}
  "$sq" ping --addr "$a" --token "$tok" >/dev/null
  "$sq" update --addr "$a" --token "$tok" 3.3.3/3.3.3/3.3.3 "over ${via%%:*}" >/dev/null
  got=$("$sq" select --addr "127.0.0.1:$ph" --token "$tok" 3.3.3/3.3.3/3.3.3)
  [ "$got" = "over ${via%%:*}" ] || fail "${via%%:*}: host has '$got'"
  echo "${via%%:*}: ping, update, select ok"
done

ops() { jq -r '.result.ops_per_sec | floor' "$1"; }
clean() {
  jq -e '.failed != true and .result.verified and .result.ops > 0 and .result.mismatches == 0 and
         .result.cross_tenant == 0 and .result.broken_conns == 0 and
         ((.result.errors // {}) | to_entries | map(.value) | add // 0) == 0' "$1" >/dev/null
}
summary=$work/summary.md
{
  echo "### e2e-tls $(date -u +%Y-%m-%dT%H:%MZ): $TENANTS tenants, one host, $(nproc) cores"
  echo
  echo "| path | pipeline | ops/s, median (runs) | ratio to direct |"
  echo "|---|---:|---:|---:|"
} >"$summary"
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
paths=("direct:$ph" "HAProxy:$pf" "HAProxy TLS (+stunnel client):$pc1" "stunnel TLS (+stunnel client):$pc2")
for pl in 1 16; do
  step "sq bench, pipeline $pl, $REPEAT rounds of $DURATION over: direct, HAProxy plain, HAProxy TLS, stunnel TLS"
  declare -A runs=()
  for rep in $(seq "$REPEAT"); do
    for via in "${paths[@]}"; do
      f=bench-$pl-${via##*:}-$rep.json
      "$sq" bench --addr "127.0.0.1:${via##*:}" --config shard/host-1.json --pipeline "$pl" --duration "$DURATION" \
        --warmup 1s --overwrite --progress off --json >"$f" 2>"$f.err" || { cat "$f.err" >&2; fail "bench via ${via%:*}"; }
      clean "$f" || fail "bench via ${via%:*} not clean"
      runs[$via]="${runs[$via]:-} $(ops "$f")"
    done
  done
  d=
  for via in "${paths[@]}"; do
    o=$(printf '%s\n' ${runs[$via]} | median); [ -n "$d" ] || d=$o
    r=$(awk -v a="$o" -v b="$d" 'BEGIN { printf "%.2f", a / b }')
    echo "${via%:*}: median $o ops/s (runs${runs[$via]}), ratio $r"
    echo "| ${via%:*} | $pl | $o (${runs[$via]# }) | $r |" >>"$summary"
  done
  unset runs
done

step "graceful stop"
kill -TERM "$hpid"; wait_exit "$hpid" 40
[ "$WAIT_RC" = 0 ] || fail "sq host exited $WAIT_RC on SIGTERM"
step "summary"
cat "$summary"
if [ -n "${RESULTS:-}" ]; then cat "$summary" >>"$RESULTS"; echo "appended to $RESULTS"; fi
echo "OK: e2e-tls passed"
