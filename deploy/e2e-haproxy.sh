#!/usr/bin/env bash
# End-to-end test of the scale-out deployment, on loopback only:
#   - 500 tenants (TENANTS) split by `sq tenants shard --hosts 2`
#   - two `sq host` processes on random free ports, each with its shard and
#     its own data root
#   - HAProxy (Debian's) in front, routing by the HELLO token with
#     req.payload_lv(11,1) and the generated map (deploy/haproxy/haproxy.cfg)
#   - routing checks: each tenant reaches only its host; unknown token -> AUTH
#   - REST through HAProxy in HTTP mode (deploy/haproxy/haproxy-rest.cfg,
#     backends-http.cfg): routed by Authorization: Bearer / X-SQ-API-Key with
#     the same map, unknown token -> 401, admin routes -> 403; REST SELECT
#     throughput through HAProxy vs direct (bench/restload)
#   - throughput through HAProxy vs direct (same tenants, same host)
#   - `sq bench --addr <haproxy>` over all tenants but one, verifying every
#     answer (zero errors, mismatches, cross-tenant reads, broken conns),
#     while deploy/move-tenant.sh moves the remaining tenant from host 1
#     to host 2 and HAProxy is reloaded; an open connection of the moved
#     tenant must be closed by the drain; its data is checked through
#     HAProxy afterwards, and backed up and restored with sq backup/restore
# Everything it starts is killed on exit. Needs haproxy and jq (installed
# with apt-get when missing and run as root).
#
#   deploy/e2e-haproxy.sh                  (from the repository root)
#   TENANTS=500 DURATION=5s MOVE_BENCH=20s KEEP=1 SQ_BIN=bin/sq deploy/e2e-haproxy.sh
# Prints a summary; RESULTS=FILE appends it to FILE as markdown.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
source deploy/lib.sh

TENANTS=${TENANTS:-500}
DURATION=${DURATION:-5s}        # each direct-vs-proxy measurement
MOVE_BENCH=${MOVE_BENCH:-20s}   # the all-tenant bench during the move
PIPELINES=${PIPELINES:-"1 16"}
REPEAT=${REPEAT:-3}             # direct/proxy pairs per pipeline; medians reported

need haproxy haproxy
need jq jq

work=$(mktemp -d /tmp/sq-e2e.XXXXXX)
pids=()
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  # Give each a moment to drain, then SIGKILL (wait_exit does that).
  for p in "${pids[@]}"; do wait_exit "$p" 15 2>/dev/null || true; done
  # HAProxy workers started by the master (reloads) are its children and
  # die with it; kill stragglers by the pid file it wrote, nothing broader.
  if [ -f "$work/haproxy.pid" ]; then
    while read -r p; do kill -KILL "$p" 2>/dev/null || true; done <"$work/haproxy.pid"
  fi
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

step "config: $TENANTS tenants, sharded over 2 hosts"
# --admin-token: move-tenant.sh reloads the hosts with it (a tenant token may not).
"$sq" tenants gen --count "$TENANTS" --dir "$work/unsharded" --admin-token --out "$work/tenants.json" 2>/dev/null
p1=$(free_port); p2=$(free_port); pf=$(free_port); pa=$(free_port); hp1=$(free_port); hp2=$(free_port); pr=$(free_port)
# HAProxy checks each host's GET /readyz on its --http port.
"$sq" tenants shard --hosts 2 --config "$work/tenants.json" --out "$work/shard" --dir "$work/host{host}/tenants" \
  --health-ports "$hp1,$hp2" --http-backends "127.0.0.1:$hp1,127.0.0.1:$hp2" 2>/dev/null
n1=$(jq '.tenants | length' shard/host-1.json); n2=$(jq '.tenants | length' shard/host-2.json)
echo "host 1: $n1 tenants, host 2: $n2 tenants"
[ $((n1 + n2)) = "$TENANTS" ] || fail "shard lost tenants"

start_host() { # N PORT HTTP-PORT
  sq_http_args "$sq" "$3"
  "$sq" host --listen "127.0.0.1:$2" "${SQ_HTTP_ARGS[@]}" --config "$work/shard/host-$1.json" --log-format json \
    >"$work/host$1.out" 2>"$work/host$1.log" &
  pids+=("$!")
  eval "hpid$1=$!"
  wait_for_line "$work/host$1.out" '"msg":"listening"' 30
}
step "start sq host 1 (127.0.0.1:$p1) and 2 (127.0.0.1:$p2)"
start_host 1 "$p1" "$hp1"
start_host 2 "$p2" "$hp2"

step "start HAProxy (127.0.0.1:$pf, REST 127.0.0.1:$pr, admin 127.0.0.1:$pa)"
export SQ_FRONTEND=127.0.0.1:$pf SQ_MAP=$work/shard/tokens.map SQ_HAPROXY_ADMIN=ipv4@127.0.0.1:$pa
export SQ_MAXCONN=4000 SQ_HOST1=127.0.0.1:$p1 SQ_HOST2=127.0.0.1:$p2 SQ_REST_FRONTEND=127.0.0.1:$pr
hacfg=(-f "$repo/deploy/haproxy/haproxy.cfg" -f shard/backends.cfg -f "$repo/deploy/haproxy/haproxy-rest.cfg" -f shard/backends-http.cfg)
haproxy -c -q "${hacfg[@]}"
haproxy -W -db -p "$work/haproxy.pid" "${hacfg[@]}" >"$work/haproxy.log" 2>&1 &
hapid=$!
pids+=("$hapid")
wait_port 127.0.0.1 "$pf" 20
wait_port 127.0.0.1 "$pa" 20
wait_port 127.0.0.1 "$pr" 20

step "routing by token"
tok_of() { jq -r --arg n "$2" '.tenants | to_entries[] | select(.value.name == $n) | .key' "$work/shard/host-$1.json"; }
mapfile -t names1 < <(jq -r '[.tenants[].name] | sort | .[]' shard/host-1.json)
mapfile -t names2 < <(jq -r '[.tenants[].name] | sort | .[]' shard/host-2.json)
for h in 1 2; do
  if [ $h = 1 ]; then nm=${names1[1]}; other=$p2; own=$p1; else nm=${names2[1]}; other=$p1; own=$p2; fi
  tk=$(tok_of $h "$nm")
  "$sq" update --addr "127.0.0.1:$pf" --token "$tk" 2.2.2/2.2.2/2.2.2 "routed-$nm" >/dev/null
  got=$("$sq" select --addr "127.0.0.1:$own" --token "$tk" 2.2.2/2.2.2/2.2.2)
  [ "$got" = "routed-$nm" ] || fail "$nm: wrote through HAProxy, host $h has '$got'"
  if "$sq" ping --addr "127.0.0.1:$other" --token "$tk" >/dev/null 2>&1; then fail "$nm is known to the wrong host"; fi
  echo "$nm -> host $h ok"
done
if out=$("$sq" ping --addr "127.0.0.1:$pf" --token pmb-v1-999-nosuchtenant000000000000 2>&1); then
  fail "unknown token accepted through HAProxy"
fi
grep -q AUTH <<<"$out" || fail "unknown token: want AUTH, got: $out"
echo "unknown token -> AUTH ok"

step "REST routing by Authorization / X-SQ-API-Key token"
rest() { # METHOD URL HEADER TOKEN [BODY]: prints "<code> <body>"
  local args=(-s -o "$work/rest.body" -w '%{http_code}' -X "$1")
  if [ "$3" = Authorization ]; then args+=(-H "Authorization: Bearer $4"); elif [ -n "$3" ]; then args+=(-H "$3: $4"); fi
  if [ $# -ge 5 ]; then args+=(--data-binary "$5"); fi
  local code; code=$(curl "${args[@]}" "$2")
  echo "$code $(cat "$work/rest.body")"
}
for h in 1 2; do
  if [ $h = 1 ]; then nm=${names1[2]}; own=$hp1; other=$hp2; hdr=Authorization; else nm=${names2[2]}; own=$hp2; other=$hp1; hdr=X-SQ-API-Key; fi
  tk=$(tok_of $h "$nm")
  got=$(rest POST "http://127.0.0.1:$pr/api/v2/update?c=2.2.2/2.2.2/2.2.2" "$hdr" "$tk" "rest-$nm")
  [ "${got%% *}" = 200 ] || fail "$nm: REST update through HAProxy: $got"
  got=$(rest GET "http://127.0.0.1:$own/api/v2/select?c=2.2.2/2.2.2/2.2.2" "$hdr" "$tk")
  [ "$got" = "200 rest-$nm" ] || fail "$nm: REST write through HAProxy not on host $h: $got"
  got=$(rest GET "http://127.0.0.1:$other/api/v2/select?c=2.2.2/2.2.2/2.2.2" "$hdr" "$tk")
  [ "${got%% *}" = 401 ] || fail "$nm: the other host answered $got"
  echo "REST $nm ($hdr) -> host $h ok"
done
got=$(rest GET "http://127.0.0.1:$pr/api/v2/select?c=2.2.2/2.2.2/2.2.2" Authorization pmb-v1-999-nosuchtenant000000000000)
[ "${got%% *}" = 401 ] || fail "REST unknown token through HAProxy: $got"
for path in /metrics /api/v2/reload /admin/tenants; do
  got=$(rest GET "http://127.0.0.1:$pr$path" "" "")
  [ "${got%% *}" = 403 ] || fail "REST $path through HAProxy: $got, want 403"
done
echo "REST unknown token -> 401, admin routes -> 403 ok"

bench() { # ADDR CONFIG PIPELINE DURATION OUT [extra]
  local addr=$1 cfg=$2 pl=$3 d=$4 out=$5; shift 5
  # --overwrite: the throwaway tenants' sq-bench phexts hold the previous
  # round's scrolls.
  "$sq" bench --addr "$addr" --config "$cfg" --pipeline "$pl" --duration "$d" --warmup 1s \
    --overwrite --progress off --json "$@" >"$out" 2>"$out.err"
}
ops() { jq -r '.result.ops_per_sec | floor' "$1"; }
clean() { # FILE: the bench verified every answer and saw no error
  jq -e '.failed != true and .result.verified and .result.ops > 0 and
         .result.mismatches == 0 and .result.cross_tenant == 0 and
         .result.count_errors == 0 and .result.broken_conns == 0 and
         ((.result.errors // {}) | to_entries | map(.value) | add // 0) == 0' "$1" >/dev/null
}

summary=$work/summary.md
{
  echo "### e2e-haproxy $(date -u +%Y-%m-%dT%H:%MZ): $TENANTS tenants, 2 hosts ($n1 + $n2), $(nproc) cores, $(haproxy -v | head -1 | cut -d' ' -f1-3)"
  echo
  echo "| tenants (host 1) | pipeline | direct ops/s, median (runs) | via HAProxy ops/s, median (runs) | ratio of medians |"
  echo "|---:|---:|---:|---:|---:|"
} >"$summary"
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
for pl in $PIPELINES; do
  step "throughput, host 1's $n1 tenants, pipeline $pl: direct vs through HAProxy ($REPEAT x $DURATION each, alternating)"
  ds=() ps=()
  for rep in $(seq "$REPEAT"); do
    for via in direct proxy; do
      if [ $via = direct ]; then a=127.0.0.1:$p1; else a=127.0.0.1:$pf; fi
      f=$via-$pl-$rep.json
      bench "$a" shard/host-1.json "$pl" "$DURATION" "$f" || { cat "$f.err" >&2; fail "$via bench"; }
      clean "$f" || { jq '.result | {errors, mismatches, cross_tenant, problems}' "$f" >&2; fail "$via bench not clean"; }
      if [ $via = direct ]; then ds+=("$(ops "$f")"); else ps+=("$(ops "$f")"); fi
    done
  done
  d=$(printf '%s\n' "${ds[@]}" | median); p=$(printf '%s\n' "${ps[@]}" | median)
  r=$(awk -v a="$p" -v b="$d" 'BEGIN { printf "%.2f", a / b }')
  echo "direct ${ds[*]} ops/s, via HAProxy ${ps[*]} ops/s: medians $d / $p, ratio $r"
  echo "| $n1 | $pl | $d (${ds[*]}) | $p (${ps[*]}) | $r |" >>"$summary"
done

if command -v go >/dev/null; then
  step "REST SELECT throughput, host 1's $n1 tenants: direct vs through HAProxy ($REPEAT x $DURATION each, alternating)"
  (cd "$repo" && go build -o "$work/restload" ./bench/restload)
  for t in $(jq -r '.tenants | keys[]' shard/host-1.json); do
    got=$(rest POST "http://127.0.0.1:$hp1/api/v2/update?c=1.1.1/1.1.1/1.1.1" Authorization "$t" "rest-load")
    [ "${got%% *}" = 200 ] || fail "seeding REST load: $got"
  done
  rd=() rp=()
  for rep_ in $(seq "$REPEAT"); do
    read -r v e < <("$work/restload" -url "http://127.0.0.1:$hp1" -config shard/host-1.json -c 16 -d "$DURATION")
    [ "$e" = 0 ] || fail "REST load direct: $e failed requests"
    rd+=("$v")
    read -r v e < <("$work/restload" -url "http://127.0.0.1:$pr" -config shard/host-1.json -c 16 -d "$DURATION")
    [ "$e" = 0 ] || fail "REST load through HAProxy: $e failed requests"
    rp+=("$v")
  done
  d=$(printf '%s\n' "${rd[@]}" | median); p=$(printf '%s\n' "${rp[@]}" | median)
  r=$(awk -v a="$p" -v b="$d" 'BEGIN { printf "%.2f", a / b }')
  echo "REST direct ${rd[*]} req/s, via HAProxy ${rp[*]} req/s: medians $d / $p, ratio $r"
  {
    echo
    echo "REST SELECT (bench/restload, 16 keep-alive clients, host 1's $n1 tenants): direct $d req/s (${rd[*]}),"
    echo "through HAProxy (haproxy-rest.cfg, HTTP mode) $p req/s (${rp[*]}): ratio of medians $r."
  } >>"$summary"
fi

step "all $TENANTS tenants through HAProxy (both hosts), pipeline 1, $DURATION"
bench "127.0.0.1:$pf" tenants.json 1 "$DURATION" all500.json || { cat all500.json.err >&2; fail "all-tenant bench"; }
clean all500.json || { jq '.result | {errors, mismatches, cross_tenant, problems}' all500.json >&2; fail "all-tenant bench not clean"; }
echo "$(jq .result.tenants all500.json) tenants: $(ops all500.json) ops/s, $(jq .result.ops all500.json) ops verified, clean"
{
  echo
  echo "All $(jq .result.tenants all500.json) tenants through HAProxy over both hosts (pipeline 1, $DURATION): $(ops all500.json) ops/s,"
  echo "$(jq .result.ops all500.json) operations verified: 0 errors, 0 mismatches, 0 cross-tenant reads."
} >>"$summary"

mover=${names1[0]}
mtok=$(tok_of 1 "$mover")
step "move $mover (host 1 -> host 2) while the other $((TENANTS - 1)) tenants run sq bench via HAProxy ($MOVE_BENCH)"
jq --arg t "$mtok" 'del(.tenants[$t])' tenants.json >bench-others.json
# The mover's data before the move, written through HAProxy.
for i in 1 2 3; do
  "$sq" update --addr "127.0.0.1:$pf" --token "$mtok" "1.1.1/1.1.1/1.1.$i" "before-move-$i" >/dev/null
  "$sq" update --addr "127.0.0.1:$pf" --token "$mtok" --phext notes "1.1.1/1.1.1/1.1.$i" "notes-$i" >/dev/null
done
sum_before=$("$sq" checksum --addr "127.0.0.1:$pf" --token "$mtok")
# A live connection of the mover through HAProxy, authenticated by a raw
# HELLO: the drain must close it.
exec 8<>"/dev/tcp/127.0.0.1/$pf"
send_hello 8 "$mtok"
st=$(head -c 5 <&8 | od -An -tx1 | awk '{print $5}')
[ "$st" = 00 ] || fail "raw HELLO of $mover through HAProxy: status '$st', want 00"
bench "127.0.0.1:$pf" bench-others.json 1 "$MOVE_BENCH" all.json &
bpid=$!
pids+=("$bpid")
sleep 4
"$repo/deploy/move-tenant.sh" --sq "$sq" --name "$mover" \
  --from-config shard/host-1.json --from-addr "127.0.0.1:$p1" \
  --to-config shard/host-2.json --to-addr "127.0.0.1:$p2" --to-dir "$work/host2/tenants" \
  --map "$SQ_MAP" --backend sq_host2 --haproxy-admin "$SQ_HAPROXY_ADMIN" \
  --haproxy-master-pid "$hapid" 2>&1 | tee move.log
if timeout 10 cat <&8 >/dev/null; then
  echo "the mover's open connection was closed by the drain"
else
  fail "the mover's open connection through HAProxy was not closed by the drain"
fi
exec 8<&- 8>&-
grep -qE 'removed or disabled, [1-9][0-9]* connections closed' move.log || fail "the source reported no closed connection"
# Through HAProxy the mover now lands on host 2 with its data.
sum_after=$("$sq" checksum --addr "127.0.0.1:$pf" --token "$mtok")
[ "$sum_before" = "$sum_after" ] || fail "checksum through HAProxy changed: $sum_before -> $sum_after"
got=$("$sq" select --addr "127.0.0.1:$pf" --token "$mtok" --phext notes 1.1.1/1.1.1/1.1.2)
[ "$got" = notes-2 ] || fail "moved tenant's notes phext: '$got'"
"$sq" insert --addr "127.0.0.1:$pf" --token "$mtok" 1.1.1/1.1.1/1.1.1 "+after" >/dev/null
got=$("$sq" select --addr "127.0.0.1:$p2" --token "$mtok" 1.1.1/1.1.1/1.1.1)
[ "$got" = "before-move-1+after" ] || fail "write after the move did not reach host 2: '$got'"
if "$sq" ping --addr "127.0.0.1:$p1" --token "$mtok" >/dev/null 2>&1; then fail "host 1 still serves $mover"; fi
got=$(rest GET "http://127.0.0.1:$pr/api/v2/select?c=1.1.1/1.1.1/1.1.1" X-SQ-API-Key "$mtok")
[ "$got" = "200 before-move-1+after" ] || fail "REST read of the moved tenant through HAProxy: $got"
echo "moved tenant ok through HAProxy (checksum $sum_after; REST too)"

# Online backup of the moved tenant through HAProxy while the bench runs
# (when this sq has the backup command).
if "$sq" backup -h >/dev/null 2>&1; then
  sum_now=$("$sq" checksum --addr "127.0.0.1:$pf" --token "$mtok")
  "$sq" backup --addr "127.0.0.1:$pf" --token "$mtok" "$work/backup" >backup.log
  grep -q "^$sum_now  .phext\$" "$work/backup/CHECKSUMS" || fail "backup's default phext does not match the server"
  "$sq" update --addr "127.0.0.1:$pf" --token "$mtok" 1.1.1/1.1.1/1.1.1 "overwritten" >/dev/null
  "$sq" restore --addr "127.0.0.1:$pf" --token "$mtok" "$work/backup" >restore.log
  [ "$("$sq" checksum --addr "127.0.0.1:$pf" --token "$mtok")" = "$sum_now" ] || fail "restore did not bring the phext back"
  echo "sq backup + sq restore through HAProxy ok ($(tail -1 backup.log))"
fi

wait_exit "$bpid" 120
[ "$WAIT_RC" = 0 ] || { cat all.json.err >&2; fail "bench during the move exited $WAIT_RC"; }
clean all.json || { jq '.result | {errors, mismatches, cross_tenant, count_errors, broken_conns, problems}' all.json >&2; fail "bench during the move not clean"; }
all_ops=$(ops all.json)
all_n=$(jq .result.tenants all.json)
echo "bench during the move: $all_n tenants, $all_ops ops/s, $(jq .result.ops all.json) ops, verified, 0 errors, 0 cross-tenant"
unavail=$(sed -n 's/.*unavailable for \([0-9.]*\) s.*/\1/p' move.log)
{
  echo
  echo "During the move: \`sq bench --addr <haproxy>\` over $all_n tenants (pipeline 1, $MOVE_BENCH): $all_ops ops/s,"
  echo "$(jq .result.ops all.json) operations verified, 0 errors / mismatches / cross-tenant reads / broken connections."
  echo "Moved tenant unavailable for ${unavail:-?} s (disable on host 1 → HAProxy map updated), checksum unchanged;"
  echo "HAProxy reloaded (SIGUSR2) during the run without a broken connection."
} >>"$summary"

step "graceful stop: SIGTERM to both hosts and HAProxy"
for h in 1 2; do
  eval "p=\$hpid$h"
  kill -TERM "$p"
  wait_exit "$p" 40
  [ "$WAIT_RC" = 0 ] || { tail -5 "$work/host$h.log" >&2; fail "sq host $h exited $WAIT_RC on SIGTERM"; }
  echo "sq host $h drained and exited 0"
done
kill -TERM "$hapid"
wait_exit "$hapid" 20
pids=()

step "summary"
cat "$summary"
if [ -n "${RESULTS:-}" ]; then cat "$summary" >>"$RESULTS"; echo; echo "appended to $RESULTS"; fi
echo "OK: e2e-haproxy passed"
