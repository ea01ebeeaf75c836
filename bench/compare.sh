#!/usr/bin/env bash
# bench/compare.sh — `make bench-compare`: SQ against Redis and against a
# do-nothing echo server, in one run, on this machine, with one load
# generator (sq bench) for all three. The only honest speed claims are
# these ratios.
#
#   SQ     sq host --durability everysec (started by sq bench, 1 tenant per conn)
#   Redis  redis-server --appendonly yes --appendfsync everysec (RESP, same generator:
#          GET/SET/APPEND/DEL for SELECT/UPDATE/INSERT/DELETE, one key per scroll)
#   echo   bench/echo: answers SQ frames with same-size answers, stores nothing
#
# Settings (environment): CONNS (500), SIZE (1KiB), MIX (80/15/4/1),
# DURATION (10s), WARMUP (2s), PIPELINES ("1 16"), SCROLLS (20 per tenant,
# so 10k keys at 500 conns), OUT (bench/results/compare-<time>).
# Redis is installed with apt-get when redis-server is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS=${CONNS:-500}
SIZE=${SIZE:-1KiB}
MIX=${MIX:-select=80,update=15,insert=4,delete=1}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
PIPELINES=${PIPELINES:-"1 16"}
SCROLLS=${SCROLLS:-20}
OUT=${OUT:-bench/results/compare-$(date -u +%Y%m%d-%H%M%S)}
GO=${GO:-go}

mkdir -p "$OUT" bin
echo "== building sq and the echo server"
$GO build -o bin/sq ./cmd/sq
$GO build -o bin/sq-echo ./bench/echo

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  echo "== installing redis-server and redis-tools with apt-get"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server redis-tools >/dev/null
fi

# size_bytes 1KiB → 1024 (B, KiB, MiB; a range takes its upper end).
size_bytes() {
  local s=${1##*-}
  case "$s" in
    *KiB) echo $(( ${s%KiB} * 1024 )) ;;
    *MiB) echo $(( ${s%MiB} * 1048576 )) ;;
    *B) echo "${s%B}" ;;
    *) echo "$s" ;;
  esac
}

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Redis on a random free port below the ephemeral range (the bench's own
# client sockets live there), AOF everysec like SQ's default durability.
# A port taken in the meantime makes redis-server exit: try another.
RPID=""
for _ in 1 2 3 4 5 6 7 8 9 10; do
  RPORT=$((10000 + RANDOM % 22000))
  if (exec 3<>/dev/tcp/127.0.0.1/$RPORT) 2>/dev/null; then continue; fi
  redis-server --port "$RPORT" --bind 127.0.0.1 --dir "$WORK" --appendonly yes --appendfsync everysec \
    --save "" --maxclients 10000 --protected-mode no --logfile "$WORK/redis.log" --daemonize no &
  RPID=$!
  for _ in $(seq 1 300); do
    if redis-cli -p "$RPORT" ping >/dev/null 2>&1; then break; fi
    if ! kill -0 "$RPID" 2>/dev/null; then break; fi
    sleep 0.1
  done
  if redis-cli -p "$RPORT" ping >/dev/null 2>&1; then break; fi
  kill "$RPID" 2>/dev/null || true
  RPID=""
done
[ -n "$RPID" ] || { echo "redis-server did not start:"; cat "$WORK/redis.log"; exit 1; }
PIDS+=("$RPID")

# The echo server.
bin/sq-echo --listen 127.0.0.1:0 --value-size "$SIZE" >"$WORK/echo.out" 2>"$WORK/echo.err" &
EPID=$!
PIDS+=("$EPID")
for _ in $(seq 1 300); do
  EADDR=$(sed -n 's/^echo: listening on //p' "$WORK/echo.out")
  if [ -n "$EADDR" ]; then break; fi
  sleep 0.1
done
[ -n "$EADDR" ] || { echo "echo server did not start"; cat "$WORK/echo.err"; exit 1; }

{
  echo "# bench-compare $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "machine: nproc=$(nproc), $(free -m | awk '/^Mem:/{print $2" MiB memory"}'), $(uname -sr)"
  echo "redis: $(redis-server --version)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on this machine skews everything)"
  echo "load: $CONNS conns, size $SIZE, mix $MIX, $SCROLLS scrolls/tenant, ${DURATION} after ${WARMUP} warm-up"
} | tee "$OUT/summary.txt"

COMMON=(--mix "$MIX" --size "$SIZE" --scrolls "$SCROLLS" --duration "$DURATION" --warmup "$WARMUP" --json --progress off)
status=0
for P in $PIPELINES; do
  echo "== pipeline $P: SQ"
  bin/sq bench --tenants "$CONNS" --pipeline "$P" "${COMMON[@]}" >"$OUT/sq-p$P.json" || status=1
  echo "== pipeline $P: Redis (appendfsync everysec)"
  bin/sq bench --protocol resp --addr "127.0.0.1:$RPORT" --server-pid "$RPID" --tenants "$CONNS" \
    --pipeline "$P" "${COMMON[@]}" >"$OUT/redis-p$P.json" || status=1
  echo "== pipeline $P: echo"
  # The echo server stores nothing: --overwrite skips the existing-data
  # check, --phext '' keeps the frames byte for byte those of the SQ run.
  bin/sq bench --addr "$EADDR" --token echo --server-pid "$EPID" --conns "$CONNS" --no-verify --overwrite --phext '' \
    --pipeline "$P" "${COMMON[@]}" >"$OUT/echo-p$P.json" || status=1
  bin/sq bench compare --sq "$OUT/sq-p$P.json" --redis "$OUT/redis-p$P.json" --echo "$OUT/echo-p$P.json" \
    --label "pipeline $P, $CONNS conns, $SIZE, mix $MIX" | tee -a "$OUT/summary.txt" || status=1
done

echo "== reference: redis-benchmark (GET/SET only; it cannot mix)" | tee -a "$OUT/summary.txt"
for P in $PIPELINES; do
  redis-benchmark -p "$RPORT" -c "$CONNS" -n 200000 -d "$(size_bytes "$SIZE")" \
    -t get,set -P "$P" -q 2>/dev/null | tr '\r' '\n' | grep 'requests per second' | sed "s/^/  P=$P /" \
    | tee -a "$OUT/summary.txt" || true
done

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/summary.txt"
echo "results in $OUT"
exit $status
