#!/usr/bin/env bash
# Static checks of the deployment files (make deploy-check):
#   - deploy/systemd/sq.service passes `systemd-analyze verify` (with the
#     ExecStart binary path pointed at a freshly built sq, since the unit's
#     /usr/local/bin/sq is not installed here) and its security exposure
#     is printed (systemd-analyze security --offline)
#   - the Dockerfile's steps run without Docker (build-image-steps.sh)
#   - `sq tenants shard` output + deploy/haproxy/*.cfg pass `haproxy -c`
#   - stunnel configs parse (stunnel -help is not a checker: they are run
#     for real in e2e-tls.sh)
#   - every script passes bash -n (and shellcheck when installed)
# Tools missing here (systemd-analyze, haproxy) are installed with apt-get
# when running as root, otherwise that check is reported as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/lib.sh
work=$(mktemp -d /tmp/sq-deploy-check.XXXXXX)
trap 'rm -rf "$work"' EXIT
skipped=()
step() { printf '\n== %s\n' "$*"; }

step "scripts: bash -n"
for f in deploy/*.sh; do bash -n "$f"; echo "$f ok"; done
if command -v shellcheck >/dev/null; then shellcheck -x -S warning deploy/*.sh; else skipped+=("shellcheck (not installed)"); fi

step "build sq"
go build -o "$work/sq" ./cmd/sq

step "systemd unit: systemd-analyze verify"
if need systemd-analyze systemd 2>/dev/null; then
  sed "s#/usr/local/bin/sq#$work/sq#" deploy/systemd/sq.service >"$work/sq.service"
  systemd-analyze verify "$work/sq.service"
  echo "deploy/systemd/sq.service verifies"
  systemd-analyze security --offline=yes "$work/sq.service" 2>/dev/null | tail -1 || true
else
  skipped+=("systemd-analyze verify (systemd not installed)")
fi

step "Dockerfile steps without Docker"
deploy/build-image-steps.sh

step "HAProxy configs with a generated shard"
if need haproxy haproxy 2>/dev/null; then
  "$work/sq" tenants gen --count 30 --dir "$work/data" --out "$work/tenants.json" 2>/dev/null
  "$work/sq" tenants shard --hosts 3 --config "$work/tenants.json" --out "$work/shard" 2>/dev/null
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=127.0.0.1" \
    -keyout "$work/k.pem" -out "$work/c.pem" 2>/dev/null
  cat "$work/c.pem" "$work/k.pem" >"$work/server.pem"
  SQ_FRONTEND=127.0.0.1:1 SQ_TLS_FRONTEND=127.0.0.1:2 SQ_TLS_PEM=$work/server.pem \
  SQ_MAP=$work/shard/tokens.map SQ_HAPROXY_ADMIN=ipv4@127.0.0.1:3 SQ_MAXCONN=100 \
  SQ_HOST1=127.0.0.1:4 SQ_HOST2=127.0.0.1:5 SQ_HOST3=127.0.0.1:6 \
  SQ_REST_FRONTEND=127.0.0.1:7 SQ_HTTP1=127.0.0.1:8 SQ_HTTP2=127.0.0.1:9 SQ_HTTP3=127.0.0.1:10 \
    haproxy -c -f deploy/haproxy/haproxy.cfg -f deploy/haproxy/haproxy-tls.cfg -f "$work/shard/backends.cfg" \
      -f deploy/haproxy/haproxy-rest.cfg -f "$work/shard/backends-http.cfg"
else
  skipped+=("haproxy -c (haproxy not installed)")
fi

step "result"
if [ ${#skipped[@]} -gt 0 ]; then printf 'skipped: %s\n' "${skipped[@]}"; fi
echo "OK: deploy-check passed"
