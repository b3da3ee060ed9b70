#!/usr/bin/env bash
# Regenerates the English prompt set in this directory.
#
# Every file is 8 kHz, mono, 16-bit signed PCM WAV: the format the media engine plays
# as-is (comm_server::media::prompt), so no conversion happens at load time.
# Requires espeak-ng and sox (Debian: apt-get install espeak-ng sox).
# Output is deterministic: sox dithering is off (-D) so a rerun gives the same bytes
# unless the tools' versions change.
set -euo pipefail
cd "$(dirname "$0")"

VOICE="${VOICE:-en-us}"
SPEED="${SPEED:-150}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# What each file says, for the table in README.md: "<name><TAB><text>" lines.
INDEX="$TMP/index"
: >"$INDEX"

# say <path-without-.wav> <text>
say() {
  local out="$1.wav" text="$2"
  mkdir -p "$(dirname "$out")"
  printf '%s\t%s\n' "$1" "$text" >>"$INDEX"
  espeak-ng -v "$VOICE" -s "$SPEED" -w "$TMP/raw.wav" "$text"
  # Telephone band, leading/trailing silence trimmed to a short pad, normalised.
  sox -D "$TMP/raw.wav" -r 8000 -c 1 -b 16 -e signed-integer "$out" \
    highpass 200 lowpass 3400 \
    silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse \
    pad 0.05 0.15 norm -3
}

# tone <path-without-.wav> <seconds> <frequency>
tone() {
  mkdir -p "$(dirname "$1")"
  printf '%s\t(%s Hz tone)\n' "$1" "$3" >>"$INDEX"
  sox -D -n -r 8000 -c 1 -b 16 -e signed-integer "$1.wav" \
    synth "$2" sine "$3" fade q 0.01 "$2" 0.01 vol 0.5
}

# --- general (shared by every line) ----------------------------------------------
say general/welcome "Welcome. Thank you for calling."
say general/main-menu "For sales, press 1. For support, press 2. To leave a voice message, press 3. To speak to an operator, press 0."
say general/goodbye "Thank you for calling. Goodbye."
say general/invalid-entry "Sorry, that is not a valid entry. Please try again."
say general/agent-unavailable "All of our agents are busy at the moment. Please stay on the line, or leave a message after the tone."
say general/please-hold "Please hold while we connect your call."
say general/transferring-to-agent "Transferring you to an agent."
say general/call-recorded "This call may be recorded for quality and training purposes."
say general/you-are-caller-number "You are caller number"
say general/your-estimated-wait-is "Your estimated wait is"
say general/minute "minute"
say general/minutes "minutes"
say general/less-than-one-minute "less than one minute"
say general/and "and"
# Queued callbacks (a queue's callback-key): offered after the position, then confirmed.
say general/callback-offer "To hang up and be called back when an agent is free, without losing your place in line, press"
say general/callback-booked "Thank you. You keep your place in line, and an agent will call you back at this number. Goodbye."
# Used by the sample scripts (scripts/*.xml): the words match the script's text.
say general/no-input "Sorry, I did not hear anything."
say general/invalid-option "That is not one of the options."
say general/yes-or-no "Press 1 for yes, 2 for no."
# Played to an answered campaign call no agent could take, before we hang up (the
# regulator asks that the caller learns who called).
say general/campaign-identification "This was a call from the customer service team. We will call you again later. Goodbye."
say general/press-1-or-2 "Please press 1 for yes or 2 for no."
say general/anything-else "Is there anything else we can do for you? Press 1 for yes, 2 for no."
say general/connecting-agent "Please hold, we are connecting you to an agent."
say general/agents-busy "All our agents are busy. Please leave a message after the tone."

# --- say-as words (script-engine/src/speech.rs): digits, numbers, currency --------
words=(zero one two three four five six seven eight nine ten eleven twelve thirteen
  fourteen fifteen sixteen seventeen eighteen nineteen twenty)
for i in $(seq 0 9); do say "digits/$i" "${words[$i]}"; done
say digits/star "star"
say digits/hash "hash"
for i in $(seq 0 20); do say "numbers/$i" "${words[$i]}"; done
tens=([3]=thirty [4]=forty [5]=fifty [6]=sixty [7]=seventy [8]=eighty [9]=ninety)
for t in 3 4 5 6 7 8 9; do say "numbers/${t}0" "${tens[$t]}"; done
say numbers/hundred "hundred"
say numbers/thousand "thousand"
say numbers/million "million"
say numbers/billion "billion"
say numbers/minus "minus"
say numbers/and "and"
# currency/<code> after the whole units, currency/<code>-cents after the cents,
# <code> being the ISO 4217 code in lower case as scripts write it (currency="EUR").
say currency/eur "euros"
say currency/eur-cents "cents"
say currency/usd "dollars"
say currency/usd-cents "cents"
say currency/gbp "pounds"
say currency/gbp-cents "pence"

# --- voicemail -------------------------------------------------------------------
say voicemail/leave-message-after-tone "Please leave your message after the tone. When you are finished, hang up, or press the pound key."
tone voicemail/beep 0.5 1000
# A mailbox with `review = true`: after the message, before it is sent.
say voicemail/review-menu "To listen to your message, press 1. To record it again, press 2. To send it, press 3."
say voicemail/enter-mailbox "Please enter your mailbox number, followed by the pound key."
say voicemail/enter-pin "Please enter your PIN, followed by the pound key."
say voicemail/invalid-pin "That PIN is not correct."
say voicemail/you-have "You have"
say voicemail/new-message "new message"
say voicemail/new-messages "new messages"
say voicemail/no-new-messages "You have no new messages."
say voicemail/main-menu "To listen to your new messages, press 1. To listen to saved messages, press 2. To change your greeting, press 3. To exit, press star."
say voicemail/message-menu "To replay this message, press 1. To save it, press 2. To delete it, press 3. To call the caller back, press 4. For the next message, press pound."
say voicemail/call-back-failed "Sorry, the caller could not be reached."
say voicemail/message-deleted "Message deleted."
say voicemail/message-saved "Message saved."
say voicemail/no-more-messages "There are no more messages."
say voicemail/mailbox-full "Sorry, this mailbox is full."
say voicemail/goodbye "Goodbye."
# Retrieval announces each message: "Message from <digits> received <month> <day>
# at <hour> <minute>" (comm_server::voicemail::announcement).
say voicemail/message-from "Message from"
say voicemail/unknown-caller "an unknown caller"
say voicemail/received "received"
say voicemail/at "at"
say voicemail/oclock "o'clock"
say voicemail/oh "oh"
months=(January February March April May June July August September October November December)
for i in $(seq 1 12); do say "voicemail/month-$i" "${months[$((i - 1))]}"; done

# --- bank card line: scripts/bank-card.xml and scripts/verify-pin.xml -------------
# A prompt that ends in "is" or "ending in" is followed by a spoken value.
say bank/welcome "Welcome to Example Bank card services."
say bank/enter-account-number "Please enter your eight-digit account number, then press hash."
say bank/enter-account-help "Your account number is on your bank statement. Enter its eight digits, then press hash."
say bank/invalid-account "That is not an eight-digit account number."
say bank/account-not-found "We could not find that account. Please try again."
say bank/enter-pin "Please enter your four-digit PIN."
say bank/pin-four-digits "Your PIN has four digits."
say bank/wrong-pin "That PIN is not correct. Please try again."
say bank/pin-locked "For your security we cannot continue. Please call again later or visit a branch. Goodbye."
say bank/main-menu "For your balance press 1. To block a card press 2. To speak to an agent press 0."
say bank/main-menu-short "Press 1 for balance, 2 to block a card, 0 for an agent."
say bank/your-balance-is "Your balance is"
say bank/block-confirm "Block the card ending in"
say bank/block-failed "We could not block the card automatically. An agent will help you."
say bank/card-blocked "Your card is blocked. Your reference number is"
say bank/goodbye "Thank you for calling Example Bank. Goodbye."

# --- utility outage line: scripts/utility-outage.xml --------------------------------
say utility/welcome "You have reached the Example Energy outage line."
say utility/enter-postcode "Please enter the five-digit postcode of the address without power."
say utility/invalid-postcode "A postcode has five digits."
say utility/enter-house-number "Please enter the house number, then press hash."
say utility/invalid-house-number "That is not a house number we can use."
say utility/address-found "We found the address registered to your phone number."
say utility/known-outage "We know about an outage in your area. Power should be back in about"
say utility/known-outage-no-eta "We know about an outage in your area. Our crews are working on it."
say utility/outage-reported "Thank you, we have logged the outage. Your reference is"
say utility/offer-callback "Would you like us to call you back when power is restored? Press 1 for yes, 2 for no."
say utility/callback-booked "We will call you back when power is restored."
say utility/callback-failed "Sorry, we could not book the callback. Please check our website for updates."
say utility/goodbye "Thank you for letting us know. Goodbye."

# --- tones -------------------------------------------------------------------------
tone tones/beep 0.25 1000
# What an agent hears while a called-back customer's phone rings: 425 Hz, 1 s on,
# 4 s off (ETSI ES 201 970 ringing tone), looped.
mkdir -p tones
printf '%s\t%s\n' tones/ringback "(425 Hz ringing tone, 1 s on, 4 s off)" >>"$INDEX"
sox -D -n -r 8000 -c 1 -b 16 -e signed-integer tones/ringback.wav \
  synth 1 sine 425 fade q 0.01 1 0.01 vol 0.5 pad 0 4

# --- music on hold -----------------------------------------------------------------
# A gentle I-vi-IV-V progression of plucked triads over a soft sine bass, twice round
# (8 chords x 2.5 s = 20 s). The last chord resolves into the first so the loop is
# seamless when it wraps.
mkdir -p music
chord() { # chord <n> <bass> <note> <note> <note>
  sox -D -n -r 8000 -c 4 -b 16 "$TMP/c$1.wav" synth 2.5 sine "$2" pluck "$3" pluck "$4" pluck "$5" \
    fade q 0.05 2.5 0.3
  sox -D "$TMP/c$1.wav" -c 1 "$TMP/m$1.wav" remix 1v0.2,2v0.3,3v0.3,4v0.3
}
chord 1 C3 C4 E4 G4
chord 2 A2 A3 C4 E4
chord 3 F2 F3 A3 C4
chord 4 G2 G3 B3 D4
chord 5 C3 E4 G4 C5
chord 6 A2 C4 E4 A4
chord 7 F2 A3 C4 F4
chord 8 G2 B3 D4 G4
sox -D "$TMP"/m{1,2,3,4,5,6,7,8}.wav -r 8000 -c 1 -b 16 -e signed-integer music/hold.wav \
  gain -3 lowpass 3000 reverb 30 norm -6
printf '%s\t%s\n' music/hold "(music on hold, loops seamlessly)" >>"$INDEX"

# --- README.md -------------------------------------------------------------------
# The table is written from what was just generated, so it cannot drift from the files.
{
  cat <<'EOF'
# sounds/: the English prompt set

Generated by `./generate.sh` (espeak-ng voice `en-us` + sox); the table below is
written by it too. Every file is a WAV of 8 kHz, mono, 16-bit signed PCM, the
format `comm_server::media::prompt` plays as-is. Silence is trimmed to a short pad.

Prompt names are the path without `.wav` (`general/welcome`); dialog scripts name
the file (`audio="general/welcome.wav"`). Folders:

- `general/`: shared by every line (queue announcements, yes/no, no input, agents busy)
- `bank/`: the bank card line (`scripts/bank-card.xml`, `scripts/verify-pin.xml`)
- `utility/`: the utility outage line (`scripts/utility-outage.xml`)
- `digits/`, `numbers/`, `currency/`: say-as words (`script-engine/src/speech.rs`);
  `currency/<code>` follows whole units and `currency/<code>-cents` the cents, for
  the lower-case ISO 4217 code a script gives (`currency="EUR"` → `currency/eur`)
- `voicemail/`, `tones/`, `music/`: the mailbox, beeps and music on hold

To change a prompt, edit its text in `generate.sh`, run it (Debian:
`apt-get install espeak-ng sox`), and commit the WAVs with it. A script prompt's
words match the script's own text. A file a script names also goes into
`scripts/audio-files.txt`; `script-engine/tests/sounds.rs` checks it is here.

| prompt | seconds | text |
|---|---|---|
EOF
  LC_ALL=C sort "$INDEX" | while IFS=$'\t' read -r name text; do
    printf '| `%s` | %.2f | %s |\n' "$name" "$(soxi -D "$name.wav")" "$text"
  done
} >README.md

echo "generated $(find . -name '*.wav' | wc -l) files, $(du -sh . | cut -f1)"
