#!/usr/bin/env bash
# A bounded libFuzzer pass over the dialog script loader (fuzz_targets/load_script.rs)
# for CI: the stable-toolchain recipe in Cargo.toml (coverage flags, no cargo-fuzz, no
# nightly, no sanitizer), seeded with scripts/*.xml, for FUZZ_SECONDS (default 30).
# A crash or a slow input fails the run; the input is kept in $FUZZ_OUT/artifacts.
#
#   bash script-engine/fuzz/smoke.sh              # ~2 min cold on 2 cores, mostly the build
#   FUZZ_SECONDS=600 bash script-engine/fuzz/smoke.sh
#
# Builds into FUZZ_TARGET_DIR (default script-engine/fuzz/target), never into the
# workspace's target: the flags differ, and sharing would rebuild both every time.
# A directory outside the checkout survives fresh clones, so only script-engine and
# this crate are rebuilt (~15 s) instead of every dependency.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${FUZZ_SECONDS:-30}"
out="${FUZZ_OUT:-$(mktemp -d)}"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target}"

# libfuzzer-sys compiles libFuzzer's C++ sources.
if ! command -v c++ >/dev/null; then
    apt-get update -qq && apt-get install -y -qq g++ >/dev/null
fi

host="$(rustc -vV | sed -n 's/^host: //p')"
# `--target` keeps these flags off build scripts and proc macros.
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions" \
    cargo build --quiet --release --target "$host" --bin load_script

mkdir -p "$out/corpus" "$out/artifacts"
cp ../../scripts/*.xml "$out/corpus/"
# -timeout: seconds one input may take before it counts as a hang (a finding).
if ! "$CARGO_TARGET_DIR/$host/release/load_script" -max_total_time="$seconds" \
    -timeout=20 -artifact_prefix="$out/artifacts/" "$out/corpus" >"$out/log" 2>&1; then
    tail -n 60 "$out/log"
    echo "fuzz smoke: load_script failed; inputs kept in $out/artifacts" >&2
    exit 1
fi
echo "fuzz smoke: load_script: $(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$out/log")," \
    "corpus $(find "$out/corpus" -type f | wc -l) inputs, no crash (${SECONDS} s with the build)"
[ -n "${FUZZ_OUT:-}" ] || rm -rf "$out"
