#!/usr/bin/env bash
# Runs the steps of deploy/Dockerfile without Docker and checks the result:
#   1. the Dockerfile's build stage: deploy/build-static.sh into a temp root
#   2. the binary is static (no ELF interpreter, no dynamic section), so it
#      runs FROM scratch
#   3. the image layout: /etc/passwd and /etc/group with sq (uid 10001),
#      /data 0750 owned by sq, /tmp 1777
#   4. the image's runtime: chroot into the temp root as uid 10001 (what
#      USER + ENTRYPOINT + CMD do), start `sq host` on a loopback port,
#      talk to it from outside, reload with SIGHUP, stop with SIGTERM
#      (expects exit 0), and check the data it wrote is owned by 10001.
# Needs root for chown/chroot; as non-root it stops after step 3 (dry run).
#
#   deploy/build-image-steps.sh            (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/lib.sh

uid=10001
work=$(mktemp -d /tmp/sq-image.XXXXXX)
root=$work/rootfs
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

step "Dockerfile runs deploy/build-static.sh and runs as uid $uid"
grep -q '^RUN deploy/build-static.sh /out$' deploy/Dockerfile || fail "Dockerfile no longer runs build-static.sh"
grep -q "^USER $uid:$uid\$" deploy/Dockerfile || fail "Dockerfile USER is not $uid"
grep -q '^FROM scratch$' deploy/Dockerfile || fail "Dockerfile final stage is not FROM scratch"

step "build stage: deploy/build-static.sh $root"
SQ_UID=$uid deploy/build-static.sh "$root"
bin=$root/usr/local/bin/sq

step "static binary"
if readelf -l "$bin" 2>/dev/null | grep -q 'INTERP'; then fail "$bin has an ELF interpreter (dynamic)"; fi
if readelf -d "$bin" 2>/dev/null | grep -q 'NEEDED'; then fail "$bin needs shared libraries"; fi
ls -l "$bin"

step "image layout"
grep -q "^sq:x:$uid:$uid:" "$root/etc/passwd" || fail "no sq user in etc/passwd"
grep -q "^sq:x:$uid:" "$root/etc/group" || fail "no sq group in etc/group"
[ "$(stat -c %a "$root/tmp")" = 1777 ] || fail "/tmp mode $(stat -c %a "$root/tmp")"
[ "$(stat -c %a "$root/data")" = 750 ] || fail "/data mode $(stat -c %a "$root/data")"
if [ "$(id -u)" != 0 ]; then
  echo "not root: skipping the ownership and chroot run steps (dry run ends here)"
  exit 0
fi
[ "$(stat -c %u:%g "$root/data")" = "$uid:$uid" ] || fail "/data owner $(stat -c %u:%g "$root/data")"

step "runtime: chroot --userspec=$uid:$uid (USER), sq host --data /data (CMD)"
port=$(free_port)
sq_http_args "$bin" "$(free_port)"
# The image's CMD, with a loopback address instead of 0.0.0.0.
(cd "$root/data" && exec chroot --userspec=$uid:$uid "$root" /usr/local/bin/sq host \
  --listen "127.0.0.1:$port" "${SQ_HTTP_ARGS[@]}" --data /data --log-format json --trust-loopback=false --shutdown-timeout 10s) \
  >"$work/out.log" 2>"$work/err.log" &
pid=$!
wait_for_line "$work/out.log" '"msg":"listening"' 20
token=$(sed -n 's/.*"msg":"dev tenant token","token":"\([^"]*\)".*/\1/p' "$work/out.log")
[ -n "$token" ] || fail "no dev token printed"
echo "dev token ${token:0:10}…, listening on 127.0.0.1:$port, pid $pid"
# The subshell execs chroot, which execs sq: $pid is the server itself.
ruid=$(awk '/^Uid:/{print $2}' "/proc/$pid/status")
[ "$ruid" = "$uid" ] || fail "server runs as uid $ruid, want $uid"
echo "server process runs as uid $ruid"

export SQ_ADDR=127.0.0.1:$port SQ_TOKEN=$token
"$bin" ping
"$bin" insert 1.1.1/1.1.1/1.1.1 "hello from the image"
got=$("$bin" select 1.1.1/1.1.1/1.1.1)
[ "$got" = "hello from the image" ] || fail "select returned '$got'"

step "reload (docker kill -s HUP)"
kill -HUP "$pid"
wait_for_line "$work/err.log" 'reloaded' 10
"$bin" ping

step "stop (docker stop: SIGTERM, drain, exit 0)"
kill -TERM "$pid"
wait_exit "$pid" 20
pid=
[ "$WAIT_RC" = 0 ] || { cat "$work/err.log" >&2; fail "sq exited $WAIT_RC on SIGTERM"; }

step "files in the volume belong to uid $uid"
bad=$(find "$root/data" ! -uid "$uid" -print)
[ -z "$bad" ] || fail "not owned by $uid: $bad"
find "$root/data" -maxdepth 3 -printf '%M %u:%g %p\n' | sed "s#$root##"
echo "OK: image steps pass"
