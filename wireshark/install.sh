#!/usr/bin/env bash
# Installs the pktpath Lua dissector for the current user: copies
# pktpath.lua into Wireshark's personal Lua plugin folder (where Wireshark
# and tshark load it at start) and prints where. Idempotent.
#
#   wireshark/install.sh             copy (re-run after updating the repo)
#   wireshark/install.sh --link      symlink to this checkout instead
#   wireshark/install.sh --uninstall remove it
#
# Run it as the user who runs Wireshark (not with sudo, unless you run
# Wireshark as root): the folder is in that user's home.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src="$here/pktpath.lua"
mode=copy
case "${1:-}" in
	"") ;;
	--link) mode=link ;;
	--uninstall) mode=uninstall ;;
	-h | --help)
		sed -n '2,11s/^# \{0,1\}//p' "$0"
		exit 0
		;;
	*)
		echo "install.sh: unknown option $1 (--link, --uninstall)" >&2
		exit 2
		;;
esac

# Ask Wireshark where its personal Lua plugins live ("Personal Lua
# Plugins" in `tshark -G folders`: ~/.local/lib/wireshark/plugins on Linux
# for Wireshark 3.x and 4.x, whatever XDG_CONFIG_HOME says); fall back to
# that default when tshark is not installed.
dir=""
if command -v tshark >/dev/null 2>&1; then
	dir=$(tshark -G folders 2>/dev/null | awk -F '\t' '/^Personal Lua Plugins:/ {print $2; exit}' || true)
fi
[ -n "$dir" ] || dir="${HOME:?HOME is not set}/.local/lib/wireshark/plugins"
dest="$dir/pktpath.lua"

if [ "$mode" = uninstall ]; then
	rm -f "$dest"
	echo "removed $dest"
	exit 0
fi

mkdir -p "$dir"
# Replace whatever is there (a copy or a link) so that re-running switches
# cleanly between --link and copy, and never writes through an old link.
rm -f "$dest"
if [ "$mode" = link ]; then
	ln -s "$src" "$dest"
	echo "linked $dest -> $src"
else
	cp "$src" "$dest"
	chmod 644 "$dest"
	echo "installed $dest"
fi
echo "restart Wireshark (or reload Lua plugins: Ctrl+Shift+L); check: tshark -G protocols | grep pktpath"
