#!/usr/bin/env bash
# Lists a kernel's drop reasons (enum skb_drop_reason, read from its BTF,
# without the SKB_DROP_REASON_ prefix), one a line: the fixtures in
# pktpath-core/src/diagnosis/drop_reasons/ that the drop-reason words are checked
# against. Needs bpftool.
#   scripts/drop-reasons.sh [/sys/kernel/btf/vmlinux | vmlinux ELF] > FILE
set -euo pipefail
btf=${1:-/sys/kernel/btf/vmlinux}
bpftool btf dump file "$btf" | awk '
	/^\[[0-9]+\] ENUM .skb_drop_reason. / { n = $0; sub(/.*vlen=/, "", n); n += 0; next }
	n > 0 { n--; name = $1; gsub(/\047/, "", name); if (name ~ /^SKB_DROP_REASON_/) print substr(name, 17) }
' | grep -vx 'MAX\|SUBSYS_MASK'
