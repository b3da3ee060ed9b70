#!/usr/bin/env bash
# Headless-browser tests of the pages the server serves: installs Debian's chromium
# and playwright-core (pinned in package-lock.json) when missing, starts the server
# on loopback with its embedded demo config, and runs each page test against it.
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)

if ! command -v chromium >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >/dev/null \
        || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >/dev/null; }
fi
[ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund --loglevel=error

cargo build -q -p comm-server --manifest-path "$root/Cargo.toml"
bin="${CARGO_TARGET_DIR:-$root/target}/debug/comm-server"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
data=$(mktemp -d)
http_port=$(free_port)
sip_port=$(free_port)
# From the checkout's root: the demo config names sounds/ and scripts/ relative to it.
(cd "$root" && exec "$bin" serve --sip "127.0.0.1:$sip_port" --http "127.0.0.1:$http_port" \
    --data-dir "$data") >"$data/server.log" 2>&1 &
server=$!
cleanup() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT

for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$http_port/api/scripts" >/dev/null 2>&1 && break
    kill -0 "$server" 2>/dev/null || { cat "$data/server.log"; exit 1; }
    sleep 0.1
done

status=0
for t in self-service.mjs; do
    node "$t" "http://127.0.0.1:$http_port/" || { status=1; echo "FAILED: $t"; }
done
[ $status -eq 0 ] || { echo "--- server log"; tail -50 "$data/server.log"; }
exit $status
