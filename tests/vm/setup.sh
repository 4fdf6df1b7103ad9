#!/usr/bin/env bash
# Installs what the VM suite needs: QEMU, virtme-ng, and stock Debian kernels
# (6.12.107 from bookworm-security, the newest 6.1), then extracts an uncompressed
# ELF vmlinux of each for a fast PVH boot (see ../shared/vm.md of the design).
# Idempotent. Run as root.
set -euo pipefail
cd "$(dirname "$0")"
CACHE=${PKTPATH_VM_CACHE:-/var/cache/pktpath-vm}
mkdir -p "$CACHE"

. ../../scripts/lib/apt.sh

# The newest kernel package version matching a pattern.
newest() {
	apt-cache search --names-only "^linux-image-$1-amd64-unsigned\$" 2>/dev/null |
		awk '{print $1}' | sed 's/^linux-image-//; s/-unsigned$//' | sort -V | tail -n1
}
if [ -n "${PKTPATH_VM_KERNELS:-}" ]; then
	read -r -a KERNELS <<<"$PKTPATH_VM_KERNELS"
else
	# Package lists may be stale on a new machine: refresh before looking.
	[ -s "$CACHE/kernels" ] || apt_update_once
	# 6.12.107 is the one measured in the design notes; a newer 6.12 when
	# the archive no longer has it; the newest 6.1.
	pick() {
		local k
		k=$(newest "$1")
		[ -n "$k" ] || [ -z "${2:-}" ] || k=$(newest "$2")
		echo "$k"
	}
	k612=$(pick '6\.12\.107\+deb12' '6\.12\.[0-9]+\+deb12')
	k61=$(pick '6\.1\.0-[0-9]+')
	if [ -z "$k612" ] || [ -z "$k61" ]; then
		apt_update_once
		k612=$(pick '6\.12\.107\+deb12' '6\.12\.[0-9]+\+deb12')
		k61=$(pick '6\.1\.0-[0-9]+')
	fi
	[ -n "$k612" ] && [ -n "$k61" ] || { echo "vm/setup.sh: Debian 6.12/6.1 kernel packages not found" >&2; exit 1; }
	KERNELS=("$k612" "$k61")
fi

packages=(qemu-system-x86 busybox-static zstd xz-utils python3-venv)
for k in "${KERNELS[@]}"; do
	packages+=("linux-image-$k-unsigned")
done
ensure_packages "${packages[@]}"

# virtme-ng in its own venv (calling its script directly is faster than a shim).
if [ ! -x "$CACHE/venv/bin/vng" ]; then
	echo "vm/setup.sh: installing virtme-ng"
	python3 -m venv "$CACHE/venv"
	"$CACHE/venv/bin/pip" install -q virtme-ng==1.42
fi

# Uncompressed ELF kernels: the bzImage payload (zstd or xz), PVH-bootable.
for k in "${KERNELS[@]}"; do
	out="$CACHE/vmlinux-$k"
	[ -s "$out" ] && continue
	python3 - "/boot/vmlinuz-$k" "$out" <<'PY'
import struct, subprocess, sys
src, dst = sys.argv[1], sys.argv[2]
data = open(src, "rb").read()
setup_sects = data[0x1f1] or 4
off, length = struct.unpack_from("<II", data, 0x248)
start = (setup_sects + 1) * 512 + off
payload = data[start:start + length]
if payload[:4] == b"\x28\xb5\x2f\xfd":
    tool = ["zstd", "-dq", "-c"]
    payload = payload[:-4]  # the last 4 bytes are the uncompressed size
elif payload[:6] == b"\xfd7zXZ\x00":
    tool = ["xz", "-dqc", "--single-stream"]
else:
    sys.exit(f"{src}: unknown kernel compression {payload[:6]!r}")
elf = subprocess.run(tool, input=payload, stdout=subprocess.PIPE, check=False).stdout
if elf[:4] != b"\x7fELF":
    sys.exit(f"{src}: payload did not decompress to an ELF")
open(dst, "wb").write(elf)
PY
	echo "vm/setup.sh: extracted $out"
done
printf '%s\n' "${KERNELS[@]}" >"$CACHE/kernels"
