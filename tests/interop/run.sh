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
bin=${CARGO_TARGET_DIR:-target}/debug/comm-server
work=$(mktemp -d /tmp/comm-interop.XXXXXX)
port=$(( 20000 + RANDOM % 20000 ))
server=127.0.0.1:$port
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

$bin check-config
"$bin" serve --sip "$server" --http "127.0.0.1:$((port + 3))" --data-dir "$work/data" >"$work/server.log" 2>&1 &
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
# Its cons module takes key presses over UDP (and TCP) on $cons: not port + 1 (SIP)
# nor port + 2 (baresip's SIP-over-TLS listener).
cons=$((port + 5))
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
module_app		cons.so
cons_listen		127.0.0.1:$cons
CFG
echo "<sip:alice@$server;transport=udp>;auth_pass=alice-demo-pw;regint=600" >"$work/baresip/accounts"
timeout 30 baresip -f "$work/baresip" -e "/dial sip:500@$server" -t 6 >"$work/baresip.log" 2>&1 || true
check "baresip registers" grep -aq "200 OK ().*binding" "$work/baresip.log"
check "baresip call established" grep -aq "Call established" "$work/baresip.log"
check "baresip call terminated" grep -aq "terminated" "$work/baresip.log"
sleep 0.5
check "server logged the answered call" grep -aq "call ended result=answered" "$work/server.log"

# baresip calls the prompt route (600: about 5 s of prompts, then the server hangs
# up) and, once the call is up, presses 4 then # through cons; baresip sends them as
# DTMF and the server must detect each exactly once.
timeout 30 baresip -f "$work/baresip" -e "/dial sip:600@$server" -t 10 >"$work/baresip-dtmf.log" 2>&1 &
bpid=$!
for _ in $(seq 100); do grep -aq "Call established" "$work/baresip-dtmf.log" && break; sleep 0.1; done
printf 4 >"/dev/udp/127.0.0.1/$cons"; sleep 0.5; printf '#' >"/dev/udp/127.0.0.1/$cons"
wait "$bpid" || true
digits() { grep -a "digit received" "$work/server.log" | sed -n 's/.*digit=\(.\).*/\1/p' | tr -d '\n'; }
check "baresip prompt call established" grep -aq "Call established" "$work/baresip-dtmf.log"
check "baresip sent DTMF 4 and #" grep -aq "send DTMF digit: '#'" "$work/baresip-dtmf.log"
check "server detected 4 then #, each once (got '$(digits)')" test "$(digits)" = "4#"
check "server hung up after the prompts" grep -aq "session closed" "$work/baresip-dtmf.log"

kill -TERM "$pid"
check "SIGTERM: server exits cleanly" timeout 40 tail --pid="$pid" -f /dev/null
wait "$pid" && code=0 || code=$?
pid=""
check "exit status 0" test "$code" -eq 0

echo "interop: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
