#!/usr/bin/env bash
# Start-up of the function backends (kprobe-multi, fentry, kprobe): time
# from launch to ready (--ready-file) and the number of sites attached, in
# the 6.12 VM of the VM suite (tests/vm/: QEMU software emulation, stock
# Debian kernel), since our host kernel forbids function probes.
#
# EMULATED TIME: the guest runs under TCG, many times slower than hardware
# (user space ~16x, the verifier and text patching too); the figures show
# how start-up scales with the number of sites and compare the backends,
# they are not what a real machine takes.
#
#   bench/vm-startup.sh [--no-append]    (as root; tests/vm/setup.sh first)
#   PKTPATH_BENCH_BACKENDS="fentry"        only these backends
#
# Each backend starts once (all sites: ~1,800 functions and the
# tracepoints); under emulation kprobe-multi takes ~10 s, kprobe ~40 s and
# fentry about a minute (one program loaded and verified per function).
#
# Prints a table and appends it to BENCHMARKS.md (unless --no-append).
set -euo pipefail
cd "$(dirname "$0")/.."
APPEND=1
[ "${1:-}" = --no-append ] && APPEND=0
CACHE=${PKTPATH_VM_CACHE:-/var/cache/pktpath-vm}
export PATH="$CACHE/venv/bin:$PATH"
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
tests/vm/setup.sh
cargo build --release --quiet -p pktpath
BIN=$(realpath "${CARGO_TARGET_DIR:-target}/release/pktpath")
K=$(grep '^6\.12' "$CACHE/kernels" | head -n1)
[ -n "$K" ] || { echo "vm-startup.sh: no 6.12 kernel in $CACHE/kernels" >&2; exit 1; }

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
# Same boot as tests/vm/run.sh (modules that cost seconds under TCG left out).
BLACKLIST=$(sed -n 's/^BLACKLIST=//p' tests/vm/run.sh)

cat >"$OUT/guest.sh" <<EOF
#!/bin/bash
# Inside the VM: each backend once.
cd /tmp
for b in ${PKTPATH_BENCH_BACKENDS:-kprobe-multi fentry kprobe}; do
	for i in 1; do
		rm -f ready err
		t0=\$(date +%s.%N)
		$BIN --backend \$b --no-nft-trace --ready-file ready -w /dev/null 'host 192.0.2.123' 2>err &
		p=\$!
		for _ in \$(seq 12000); do [ -e ready ] && break; kill -0 \$p 2>/dev/null || break; sleep 0.05; done
		t1=\$(date +%s.%N)
		ok=\$([ -e ready ] && echo ready || echo failed)
		kill -INT \$p 2>/dev/null; wait \$p
		line=\$(grep -m1 'attached [0-9]* sites' err || tail -n1 err)
		echo "VMSTART \$b \$i \$ok \$(awk "BEGIN {print \$t1 - \$t0}") \$line" >>$OUT/result
	done
done
EOF
chmod +x "$OUT/guest.sh"
start=$(date +%s)
vng -r "$CACHE/vmlinux-$K" --user root --disable-kvm --force-9p \
	-a "module_blacklist=$BLACKLIST" --rwdir="$OUT" -- "$OUT/guest.sh" </dev/null 2>&1 | cat >"$OUT/console"
[ -s "$OUT/result" ] || { cat "$OUT/console" >&2; echo "vm-startup.sh: no result from the VM" >&2; exit 1; }
{
	echo "### $(date -u '+%Y-%m-%d %H:%M UTC'): function backends, start-up in the VM (EMULATED time)"
	echo
	echo "- guest kernel: Debian $K under QEMU TCG (software emulation, no KVM) on $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(nproc) host cores; whole VM run $(($(date +%s) - start)) s"
	echo "- pktpath commit: $(git rev-parse --short HEAD); one start per backend, all sites, filter matching nothing, --no-nft-trace"
	echo
	echo "| backend | launch to ready (emulated) | pktpath's own line | goal |"
	echo "| --- | ---: | --- | --- |"
	awk '$1 == "VMSTART" {
		line = ""; for (i = 6; i <= NF; i++) line = line " " $i
		printf "| %s | %s, %.1f s | %s | < 2 s for all sites (on hardware; emulated time is not judged) |\n", $2, $4, $5, line
	}' "$OUT/result"
} >"$OUT/table.md"
cat "$OUT/table.md"
if [ "$APPEND" = 1 ]; then
	{ echo; cat "$OUT/table.md"; } >>BENCHMARKS.md
fi
