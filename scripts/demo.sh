#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, build, and run
# `pktpath demo` (a virtual network in namespaces, traced, then removed).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --quiet
exec target/release/pktpath demo "$@"
