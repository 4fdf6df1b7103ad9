#!/bin/sh
# Fuzzes the capture readers with cargo fuzz (libFuzzer), each target for
# SECONDS (default 180), then minimizes the corpus kept in fuzz/corpus/.
# Needs a nightly toolchain (rustup toolchain install nightly).
# Usage: scripts/fuzz.sh [SECONDS]
set -eu
cd "$(dirname "$0")/.."
secs=${1:-180}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for target in read_capture mbuf_record; do
    mkdir -p "fuzz/corpus/$target"
    echo "fuzzing $target for ${secs}s"
    cargo +nightly fuzz run "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$secs" -max_len=65536 -rss_limit_mb=1024
    cargo +nightly fuzz cmin "$target" "fuzz/corpus/$target"
done
