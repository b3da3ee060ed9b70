#!/usr/bin/env bash
# Interop with SIP software nobody here wrote: sipsak and baresip (Debian packages),
# against the real server binary on its embedded demo config, on loopback only.
# Installs what it needs; bounded in time; exits non-zero on the first failed check.
set -euo pipefail
cd "$(dirname "$0")/../.."

need=()
command -v sipsak >/dev/null || need+=(sipsak)
command -v baresip >/dev/null || need+=(baresip)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo build -q -p comm-server
bin=target/debug/comm-server
work=$(mktemp -d /tmp/comm-interop.XXXXXX)
port=$(( 20000 + RANDOM % 20000 ))
server=127.0.0.1:$port
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

$bin check-config
"$bin" serve --sip "$server" --data-dir "$work/data" >"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 50); do grep -q listening "$work/server.log" 2>/dev/null && break; sleep 0.1; done

pass=0; fail=0
check() { # name, command...
  local name=$1; shift
  if "$@" >"$work/check.log" 2>&1; then echo "ok   $name"; pass=$((pass+1));
  else echo "FAIL $name"; sed 's/^/     /' "$work/check.log" | tail -20; fail=$((fail+1)); fi
}
refused() { ! "$@"; }

check "sipsak OPTIONS" timeout 10 sipsak -s "sip:500@$server"
check "sipsak REGISTER with digest" timeout 10 sipsak -U -C "sip:alice@127.0.0.1:5999" -s "sip:alice@$server" -a alice-demo-pw -u alice -x 600
check "sipsak REGISTER wrong password refused" refused timeout 10 sipsak -U -C "sip:alice@127.0.0.1:5999" -s "sip:alice@$server" -a wrong -u alice -x 600

# baresip: register alice, call the auto-answer route, hang up after 5 s.
mkdir -p "$work/baresip"
python3 - "$work/baresip/tone.wav" <<'PY'
import math, struct, sys, wave
w = wave.open(sys.argv[1], "wb"); w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)
w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / 8000))) for i in range(8000 * 10)))
PY
cat >"$work/baresip/config" <<CFG
poll_method		epoll
sip_listen		127.0.0.1:$((port + 1))
audio_source		aufile,$work/baresip/tone.wav
audio_player		aufile,$work/baresip/heard.wav
audio_alert		aufile,$work/baresip/alert.wav
module_path		/usr/lib/baresip/modules
module			g711.so
module			aufile.so
module_app		account.so
module_app		menu.so
CFG
echo "<sip:alice@$server;transport=udp>;auth_pass=alice-demo-pw;regint=600" >"$work/baresip/accounts"
timeout 30 baresip -f "$work/baresip" -e "/dial sip:500@$server" -t 6 >"$work/baresip.log" 2>&1 || true
check "baresip registers" grep -aq "200 OK ().*binding" "$work/baresip.log"
check "baresip call established" grep -aq "Call established" "$work/baresip.log"
check "baresip call terminated" grep -aq "terminated" "$work/baresip.log"
sleep 0.5
check "server logged the answered call" grep -aq "call ended result=answered" "$work/server.log"

kill -TERM "$pid"
check "SIGTERM: server exits cleanly" timeout 40 tail --pid="$pid" -f /dev/null
wait "$pid" && code=0 || code=$?
pid=""
check "exit status 0" test "$code" -eq 0

echo "interop: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
