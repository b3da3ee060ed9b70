#!/usr/bin/env bash
# Headless-browser tests of the pages the server serves: installs Debian's chromium
# and playwright-core (pinned in package-lock.json) when missing, starts the server
# on loopback with a test config (a queue, an agent, a supervisor, one imported
# customer), and runs each page test against it; the desktop and wallboard tests
# drive the SIP side with the `desk_call` example of the e2e crate.
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)

if ! command -v chromium >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >/dev/null \
        || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >/dev/null; }
fi
[ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund --loglevel=error

cargo build -q -p comm-server --manifest-path "$root/Cargo.toml"
# The SIP side of the desktop and wallboard scenarios (a test phone and caller).
cargo build -q -p e2e --example desk_call --manifest-path "$root/Cargo.toml"
target="${CARGO_TARGET_DIR:-$root/target}/debug"
data=$(mktemp -d)
server=
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$data"
}
trap cleanup EXIT
# Copies: a target directory shared with other checkouts may be rebuilt under us.
cp "$target/comm-server" "$target/examples/desk_call" "$data/"
bin="$data/comm-server"
desk_call="$data/desk_call"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http_port=$(free_port)
sip_port=$(free_port)
grpc_port=$(free_port)

# A queue agent bob serves, one nobody serves (calls wait there), a supervisor, and a
# known customer whose national-format caller ID the screen pop resolves.
hash() { printf '%s\n' "$1" | "$bin" hash-password; }
cat >"$data/test.toml" <<TOML
[server]
data-dir = "$data"
scripts-dir = "$root/scripts"
sounds-dir = "$root/sounds"
shutdown-grace = "1s"

[sip]
realm = "test"

[media]
bind = "127.0.0.1"
rtp-ports = "auto"

[customers]
default-country-code = "44"

[[user]]
name = "bob"
password = "bob-phone-pw"

[[queue]]
name = "support"
wrap-up = "60s"
ring-timeout = "20s"
agent-script = "retention.xml"

[[queue]]
name = "sales"

[[agent]]
name = "bob"
queues = ["support"]
password-hash = "$(hash bob-pw)"

[[supervisor]]
name = "sue"
password-hash = "$(hash sue-pw)"

[[route]]
number = "800"
target = { queue = "support" }

[[route]]
number = "801"
target = { queue = "sales" }

# The support queue's mailbox: the desktop test leaves a message and works it.
[[mailbox]]
name = "support-messages"
pin = "1"
work-queue = "support"

[[route]]
number = "850"
target = { mailbox = "support-messages" }

# A campaign with no contacts: the wallboard starts and pauses it, the reports page
# lists it; nothing is ever dialled (the discard port stands in for a carrier).
[[trunk]]
name = "carrier"
address = "127.0.0.1:9"
inbound-sources = ["127.0.0.2"]

[[campaign]]
name = "renewals"
queue = "sales"
trunk = "carrier"
mode = "progressive"
TOML
printf 'name,phone,account,segment,since\nAda Lovelace,+442079460958,42,gold,2019\n' >"$data/customers.csv"
"$bin" import customers "$data/customers.csv" --config "$data/test.toml" >"$data/import.log" 2>&1 \
    || { cat "$data/import.log"; exit 1; }

"$bin" serve --config "$data/test.toml" --sip "127.0.0.1:$sip_port" --http "127.0.0.1:$http_port" \
    --grpc "127.0.0.1:$grpc_port" >"$data/server.log" 2>&1 &
server=$!

for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$http_port/api/scripts" >/dev/null 2>&1 && break
    kill -0 "$server" 2>/dev/null || { cat "$data/server.log"; exit 1; }
    sleep 0.1
done

base="http://127.0.0.1:$http_port/"
export DESK_CALL="$desk_call" SIP_ADDR="127.0.0.1:$sip_port"
status=0
for t in self-service.mjs grpcweb.mjs wallboard.mjs desktop.mjs reports.mjs; do
    node "$t" "$base" || { status=1; echo "FAILED: $t"; }
done
[ $status -eq 0 ] || { echo "--- server log"; tail -80 "$data/server.log"; }
exit $status
