#!/usr/bin/env bash
# Installs what the VM suite needs: QEMU, virtme-ng, and stock Debian kernels
# (6.12 from bookworm-security, the newest 6.1), then extracts an uncompressed
# ELF vmlinux of each for a fast PVH boot (see ../shared/vm.md of the design).
# Idempotent. Run as root.
set -euo pipefail
cd "$(dirname "$0")"
CACHE=${PKTPATH_VM_CACHE:-/var/cache/pktpath-vm}
mkdir -p "$CACHE"

KERNELS=("6.12.107+deb12-amd64")
if [ -z "${PKTPATH_VM_KERNELS:-}" ]; then
	newest61=$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$' 2>/dev/null |
		awk '{print $1}' | sed 's/^linux-image-//; s/-unsigned$//' | sort -V | tail -n1)
	[ -n "$newest61" ] && KERNELS+=("$newest61")
else
	read -r -a KERNELS <<<"$PKTPATH_VM_KERNELS"
fi

packages=(qemu-system-x86 busybox-static zstd xz-utils python3-venv)
for k in "${KERNELS[@]}"; do
	packages+=("linux-image-$k-unsigned")
done
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "vm/setup.sh: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

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
