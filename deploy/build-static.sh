#!/usr/bin/env bash
# Builds the static sq binary and lays out the root filesystem of the
# container image under OUT. The Dockerfile runs this very script in its
# build stage, and deploy/build-image-steps.sh runs it without Docker, so
# both exercise the same steps.
#
#   deploy/build-static.sh OUT        (run from the repository root)
#
# OUT/usr/local/bin/sq  static binary (CGO_ENABLED=0, -trimpath, stripped)
# OUT/etc/passwd     root and sq (uid/gid SQ_UID, default 10001)
# OUT/etc/group      the same two groups
# OUT/data/          the data volume, owned by sq, mode 0750
# OUT/tmp/           sticky, world-writable (Go's os.TempDir)
set -euo pipefail

out=${1:?usage: build-static.sh OUT}
uid=${SQ_UID:-10001}
gid=${SQ_GID:-$uid}
go=${GO:-go}

mkdir -p "$out/etc" "$out/data" "$out/tmp" "$out/usr/local/bin"
# No cgo: the binary must run in an image with no libc (FROM scratch).
CGO_ENABLED=0 GOOS=${GOOS:-linux} "$go" build -trimpath -ldflags='-s -w -buildid=' -o "$out/usr/local/bin/sq" ./cmd/sq

# The image runs as this user, never as root.
cat > "$out/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/sbin/nologin
sq:x:${uid}:${gid}:sq:/data:/sbin/nologin
PASSWD
cat > "$out/etc/group" <<GROUP
root:x:0:
sq:x:${gid}:
GROUP
chmod 0644 "$out/etc/passwd" "$out/etc/group"
chmod 1777 "$out/tmp"
chmod 0750 "$out/data"
# chown needs root (true in the Docker build stage); a non-root dry run
# says what it would do instead.
if [ "$(id -u)" = 0 ]; then
  chown "$uid:$gid" "$out/data"
else
  echo "build-static: not root; would run: chown $uid:$gid $out/data" >&2
fi
