#!/usr/bin/env bash
# Installs what pktpath needs to build, run and test on Debian/Ubuntu.
# Idempotent: only missing packages are installed. Run as root.
set -euo pipefail

PACKAGES=(
	clang llvm libelf-dev zlib1g-dev libpcap-dev pkg-config  # build: BPF C, libbpf, libpcap
	iproute2 nftables iputils-ping util-linux procps tcpdump # demo and tests: netns, rules, traffic, pcap
	iptables ethtool                                         # tests: iptables (nft-backed and legacy) rules, device offloads
	tshark                                                   # tests of the Wireshark dissector (wireshark/)
	chromium                                                 # tests of the HTML report in a headless browser
)

if [ "$(id -u)" -ne 0 ]; then
	echo "setup.sh: run as root (it installs packages; pktpath itself needs root to trace)" >&2
	exit 1
fi

. "$(dirname "$0")/lib/apt.sh"
# tshark's wireshark-common asks whether non-root users may capture
# (setuid dumpcap): answer no beforehand, so the install never prompts.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
ensure_packages "${PACKAGES[@]}"

# Rust: use the machine's toolchain (rustup or distribution packages).
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
if ! command -v cargo >/dev/null; then
	echo "setup.sh: no cargo found, installing Debian's"
	ensure_packages cargo rustc
fi
need=1.85
have=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
	echo "setup.sh: rustc $have is older than $need, which pktpath needs (use rustup)" >&2
	exit 1
fi
