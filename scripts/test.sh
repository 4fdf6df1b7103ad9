#!/usr/bin/env bash
# The whole test suite: install what is missing, then each step in turn,
# loudly. Needs root (the host tests trace real packets in namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

step() { printf '\n==> %s\n' "$*"; }

step "format (cargo fmt --check)"
cargo fmt --all -- --check

step "lint (cargo clippy, warnings denied)"
cargo clippy --all-targets --quiet -- -D warnings

step "docs (cargo doc, warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet

step "unit and integration tests, root tests on the host kernel (tracepoint backend)"
# Release: the root tests run the real binary under real load (20,000
# datagrams/s through a router in rules.rs), which an unoptimised build
# cannot keep up with; the bench and the VM suite build release anyway.
cargo test --release --quiet -- --test-threads 4

step "benchmark harness, short mode (runs every part, judges no timing; checks nothing is left behind)"
bench/run.sh --short --no-append

step "VM suite: function-level backends on stock Debian kernels (QEMU, software emulation)"
tests/vm/setup.sh
tests/vm/run.sh
