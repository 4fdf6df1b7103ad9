#!/usr/bin/env bash
# The VM suite: boots each stock Debian kernel once (QEMU software emulation
# through virtme-ng, on the host's root filesystem) and runs the function-level
# tests (pktpath/tests/vm.rs) inside it, for every backend that kernel has.
# tests/vm/setup.sh installs what this needs. Arguments go to the test
# binary: `tests/vm/run.sh clones` runs the tests whose names contain it.
# tracing_loads_no_kernel_module runs first in each boot, before any other
# test's ruleset loads nf_tables.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=${PKTPATH_VM_CACHE:-/var/cache/pktpath-vm}
export PATH="$CACHE/venv/bin:$PATH"
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

# Modules udev would load for the emulated machine: seconds each under TCG.
BLACKLIST=kvm_amd,kvm,irqbypass,ccp,sr_mod,cdrom,sg,ahci,libahci,libata,scsi_mod,iTCO_wdt,iTCO_vendor_support,intel_pmc_bxt,i2c_i801,i2c_smbus,lpc_ich,i6300esb,psmouse,serio_raw,pcspkr,evdev,button,crct10dif_pclmul,crc32_pclmul,ghash_clmulni_intel,sha512_ssse3,sha256_ssse3,sha1_ssse3,aesni_intel,crypto_simd,cryptd,qemu_fw_cfg,watchdog

# Release build: user space is ~16x slower under emulation.
bin=$(cargo test --release --quiet --features vm-tests --test vm --no-run --message-format=json 2>/dev/null |
	python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "vm":
        print(m["executable"])' | tail -n1)
[ -x "$bin" ] || { echo "vm/run.sh: could not build the VM test binary" >&2; exit 1; }

backends_for() {
	case "$1" in
	6.1.*) echo "fentry kprobe" ;;            # built without CONFIG_FPROBE: no kprobe-multi
	*) echo "kprobe-multi fentry kprobe" ;;
	esac
}

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
while read -r k; do
	[ -n "$k" ] || continue
	b=$(backends_for "$k")
	printf '\n==> VM %s: backends %s\n' "$k" "$b"
	start=$(date +%s)
	# Through a pipe: the console output is reopened by path, which on a
	# plain file would write over what came before.
	set +e
	# The console at error level and above (loglevel=4 after the 7 of
	# -v): an oops or panic of the guest is printed, not only an exit 255.
	vng -v -r "$CACHE/vmlinux-$k" --user root --disable-kvm --force-9p \
		-a "module_blacklist=$BLACKLIST loglevel=4" --rwdir="$out" -- \
		"export PKTPATH_VM_BACKENDS='$b' PKTPATH_TEST_SETTLE_MS=4000 PKTPATH_TEST_READY_S=240 RUST_BACKTRACE=1; \
		'$bin' --exact tracing_loads_no_kernel_module; first=\$?; \
		'$bin' --test-threads=1 --skip tracing_loads_no_kernel_module $*; rest=\$?; \
		[ \$first -eq 0 ] && [ \$rest -eq 0 ]" \
		</dev/null 2>&1 | cat
	rc=${PIPESTATUS[0]}
	set -e
	if [ "$rc" -ne 0 ]; then
		status=1
		echo "==> VM $k: FAILED (exit $rc)"
	fi
	echo "==> VM $k: $(($(date +%s) - start)) s"
done <"$CACHE/kernels"
exit $status
