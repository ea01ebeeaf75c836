#!/usr/bin/env bash
# Moves one tenant from one `sq host` to another behind HAProxy, while the
# other tenants keep working. The steps (docs/OPERATIONS.md, "Moving a
# tenant between hosts"):
#
#   1. record the checksum of each of the tenant's phexts on the source
#   2. drain: disable the tenant on the source (sq tenants disable + reload);
#      its connections are closed, its files are closed, new HELLOs get AUTH
#   3. copy its data dir to the target (cp -a here; rsync -a for another
#      machine; the files are quiescent once the tenant is disabled)
#   4. enable it on the target: sq tenants add with the same token + reload
#   5. check: every phext's checksum on the target equals step 1
#   6. route: rewrite the map file (for restarts and reloads) and
#      "set map" on HAProxy's admin socket (takes effect for new
#      connections at once, no reload); optionally reload HAProxy
#      (SIGUSR2 to the master: old workers keep their connections)
#
# Only the moved tenant is unavailable, from step 2 to step 6; clients
# retry and land on the target. The source keeps the tenant disabled in its
# config; delete its old data dir once you are satisfied.
#
# usage: deploy/move-tenant.sh --name NAME \
#          --from-config A.json --from-addr HOST:PORT \
#          --to-config B.json --to-addr HOST:PORT --to-dir DATA_ROOT \
#          --map tokens.map --backend sq_hostK --haproxy-admin ADDR \
#          [--haproxy-master-pid PID] [--sq PATH]
# ADDR is HAProxy's "stats socket": ipv4@127.0.0.1:PORT or a unix socket
# path (needs socat).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"

sq=sq name='' from_cfg='' from_addr='' to_cfg='' to_addr='' to_dir='' map='' backend='' admin='' master=''
while [ $# -gt 0 ]; do
  case $1 in
    --name) name=$2 ;;
    --from-config) from_cfg=$2 ;;
    --from-addr) from_addr=$2 ;;
    --to-config) to_cfg=$2 ;;
    --to-addr) to_addr=$2 ;;
    --to-dir) to_dir=$2 ;;
    --map) map=$2 ;;
    --backend) backend=$2 ;;
    --haproxy-admin) admin=$2 ;;
    --haproxy-master-pid) master=$2 ;;
    --sq) sq=$2 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "move-tenant: unknown argument $1" >&2; exit 2 ;;
  esac
  shift 2
done
for v in name from_cfg from_addr to_cfg to_addr to_dir map backend admin; do
  [ -n "${!v}" ] || { echo "move-tenant: --${v//_/-} is required" >&2; exit 2; }
done
need jq jq
log() { printf 'move-tenant %s: %s\n' "$(date -u +%H:%M:%S.%3N)" "$*" >&2; }

# haproxy_cmd CMD: one command on the admin socket, prints the answer.
haproxy_cmd() {
  case $admin in
    ipv4@*)
      local hp=${admin#ipv4@}
      exec 7<>"/dev/tcp/${hp%:*}/${hp##*:}"
      printf '%s\n' "$1" >&7
      cat <&7
      exec 7<&- 7>&-
      ;;
    *) need socat socat; printf '%s\n' "$1" | socat stdio "unix-connect:$admin" ;;
  esac
}

token=$(jq -r --arg n "$name" '.tenants | to_entries[] | select(.value.name == $n) | .key' "$from_cfg")
[ -n "$token" ] || { echo "move-tenant: no tenant $name in $from_cfg" >&2; exit 1; }
entry=$(jq -c --arg t "$token" '.tenants[$t]' "$from_cfg")
src_dir=$(jq -r .data_dir <<<"$entry")
case $src_dir in /*) ;; *) src_dir=$(cd "$(dirname "$from_cfg")" && pwd)/$src_dir ;; esac
quota=$(jq -r '.quota_mb // 0' <<<"$entry")
dst_dir=$to_dir/$name
[ ! -e "$dst_dir" ] || { echo "move-tenant: $dst_dir already exists" >&2; exit 1; }
t0=$(date +%s.%N)

# 1. Checksums on the source, per phext ("" is the default phext).
sums() { # addr -> "name checksum" lines, sorted
  local addr=$1 p
  "$sq" list --addr "$addr" --token "$token" --json | jq -r '.phexts[]' |
    while IFS= read -r p; do
      printf '%s %s\n' "${p:-.}" "$("$sq" checksum --addr "$addr" --token "$token" --phext "$p")"
    done | sort
}
before=$(sums "$from_addr")
log "1/6 $name has $(wc -l <<<"$before" | tr -d ' ') phext(s) on $from_addr"

# 2. Drain on the source.
"$sq" tenants disable --config "$from_cfg" --addr "$from_addr" "$name" >&2
if "$sq" ping --addr "$from_addr" --token "$token" >/dev/null 2>&1; then
  echo "move-tenant: $name still answers on $from_addr after disable (did the reload fail?)" >&2
  exit 1
fi
t_down=$(date +%s.%N)
log "2/6 disabled on $from_addr (its connections are closed)"

# 3. Copy the quiescent data dir.
mkdir -p "$to_dir"
cp -a "$src_dir" "$dst_dir.tmp-move"
mv "$dst_dir.tmp-move" "$dst_dir"
log "3/6 copied $src_dir -> $dst_dir ($(du -sh "$dst_dir" | cut -f1))"

# 4. Enable on the target with the same token.
"$sq" tenants add --config "$to_cfg" --addr "$to_addr" --data-dir "$dst_dir" --token "$token" \
  --quota-mb "$quota" "$name" >/dev/null
"$sq" ping --addr "$to_addr" --token "$token" >/dev/null
log "4/6 enabled on $to_addr"

# 5. Same content on the target.
after=$(sums "$to_addr")
if [ "$before" != "$after" ]; then
  echo "move-tenant: checksums differ after the copy:" >&2
  diff <(echo "$before") <(echo "$after") >&2 || true
  exit 1
fi
log "5/6 checksums match on $to_addr"

# 6. Route new connections to the target: file first (survives a reload),
# then the running HAProxy.
awk -v t="$token" -v b="$backend" '$1 == t { print t " " b; found = 1; next } { print } END { if (!found) print t " " b }' \
  "$map" >"$map.tmp-move"
chmod --reference="$map" "$map.tmp-move"
mv "$map.tmp-move" "$map"
ans=$(haproxy_cmd "set map $map $token $backend")
[ -z "$(tr -d '[:space:]' <<<"$ans")" ] || { echo "move-tenant: HAProxy set map: $ans" >&2; exit 1; }
got=$(haproxy_cmd "get map $map $token")
grep -q "value=\"$backend\"" <<<"$got" || { echo "move-tenant: HAProxy map lookup: $got" >&2; exit 1; }
t_up=$(date +%s.%N)
log "6/6 HAProxy routes $name to $backend"
if [ -n "$master" ]; then
  kill -USR2 "$master"
  log "HAProxy master $master reloaded (SIGUSR2); old workers finish their connections"
fi
awk -v n="$name" -v b="$backend" -v t0="$t0" -v d="$t_down" -v u="$t_up" \
  'BEGIN { printf "moved %s to %s: unavailable for %.3f s, total %.3f s\n", n, b, u - d, u - t0 }'
