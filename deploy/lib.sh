# shellcheck shell=bash disable=SC2034
# Shared helpers for the deploy scripts (sourced, not run). WAIT_RC and
# SQ_HTTP_ARGS are results for the caller.

# free_port prints a TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
  python3 - <<'PY' 2>/dev/null && return 0
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
  # Fallback without python: a random high port not in `ss -ltn`.
  local p
  while :; do
    p=$(( 20000 + RANDOM % 40000 ))
    if ! ss -ltnH "sport = :$p" 2>/dev/null | grep -q .; then echo "$p"; return 0; fi
  done
}

# wait_for_line FILE PATTERN SECONDS: waits until FILE has a line matching
# PATTERN (grep -E); fails after SECONDS.
wait_for_line() {
  local file=$1 pat=$2 secs=${3:-20} i
  for ((i = 0; i < secs * 10; i++)); do
    if grep -qE "$pat" "$file" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "timed out after ${secs}s waiting for /$pat/ in $file:" >&2
  tail -20 "$file" >&2 || true
  return 1
}

# wait_port HOST PORT SECONDS: waits until a TCP connect succeeds.
wait_port() {
  local host=$1 port=$2 secs=${3:-20} i
  for ((i = 0; i < secs * 10; i++)); do
    if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "timed out after ${secs}s waiting for $host:$port" >&2
  return 1
}

# need CMD [DEBIAN-PACKAGE]: installs the package with apt-get when CMD is
# missing (root only), or fails with a clear message.
need() {
  local cmd=$1 pkg=${2:-$1}
  command -v "$cmd" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing $pkg (for $cmd)" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg") >&2
    command -v "$cmd" >/dev/null 2>&1 && return 0
  fi
  echo "$cmd is missing: apt-get install $pkg" >&2
  return 1
}

# wait_exit PID SECONDS: waits for child PID of this shell to exit and
# sets WAIT_RC to its exit status; after SECONDS it is killed (status 137)
# so a hang cannot stall the script. Call it directly, not in $(...): a
# subshell cannot wait for its parent's children.
wait_exit() {
  local pid=$1 secs=${2:-30} dog
  WAIT_RC=0
  ( exec sleep "$secs" ) &
  dog=$!
  # Whichever ends first: the child, or the watchdog sleep.
  while kill -0 "$dog" 2>/dev/null; do
    if [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] || ! kill -0 "$pid" 2>/dev/null; then
      break
    fi
    sleep 0.1
  done
  if ! kill -0 "$dog" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
  kill "$dog" 2>/dev/null || true
  wait "$dog" 2>/dev/null || true
  wait "$pid" || WAIT_RC=$?
}

# sq_http_args SQ PORT: sets SQ_HTTP_ARGS to (--http 127.0.0.1:PORT) when
# `sq host` has the --http flag (the REST API), else to (), so that several
# hosts on one machine never fight over the default HTTP port.
sq_http_args() {
  SQ_HTTP_ARGS=()
  # grep reads all of the help (no -q): stopping early would kill the
  # writer with SIGPIPE, which pipefail turns into "no --http".
  if "$1" help host 2>/dev/null | grep -- '^  -http ' >/dev/null; then
    SQ_HTTP_ARGS=(--http "127.0.0.1:$2")
  fi
}

# send_hello FD TOKEN: writes a protocol HELLO frame (docs/PROTOCOL.md:
# u32 length, op 0x01, flags 0, id 1, version 1, u8 token length, token,
# codecs 0) to file descriptor FD.
send_hello() {
  local fd=$1 tok=$2 n len b
  n=${#tok}
  len=$((6 + 1 + 1 + n + 1))
  b() { printf "\\x$(printf %02x "$1")"; }
  {
    b $(((len >> 24) & 255)); b $(((len >> 16) & 255)); b $(((len >> 8) & 255)); b $((len & 255))
    printf '\x01\x00\x00\x00\x00\x01\x01'
    b "$n"
    printf '%s' "$tok"
    printf '\x00'
  } >&"$fd"
}
