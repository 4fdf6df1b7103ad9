#!/usr/bin/env bash
# The HTML report at 10,000 journeys of the demo's kind: the file's size,
# the time pktpath takes to write it, and the time headless Chromium takes
# to open it until its script has drawn the first journey (against an
# empty page opened the same way, in the same run). No root needed:
#
#   bench/report.sh            prints the figures (BENCHMARKS.md keeps them)
#
# The journeys are the recorded journey set (pktpath-core/tests/fixtures,
# 14 journeys of the demo's network) repeated with new ids, ports, ICMP ids
# and timings.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --quiet
BIN=$PWD/target/release/pktpath
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - "$N" >"$tmp/journeys.jsonl" <<'PY'
import json, random, re, sys
# Each copy gets its own ports, ICMP ids and sequence numbers (every
# number of 1000 or more in its words) and its own timing, as packets of
# the demo's kind have: the page's data does not compress as repeats.
random.seed(1)
n = int(sys.argv[1])
base = [l for l in open("pktpath-core/tests/golden/journeys.jsonl")]
for i in range(n):
    j = json.loads(base[i % len(base)])
    own = {}
    def renumber(text):
        return re.sub(r"(?<![\d.:])\d{4,5}(?![\d.:])",
                      lambda m: own.setdefault(m.group(0), str(random.randint(1000, 65535))), text)
    j["id"] = i + 1
    if j.get("packet"):
        j["packet"] = renumber(j["packet"])
    t = 0
    for s in j["steps"]:
        t += random.randint(2000, 60000)
        s["ts_ns"] = 10**12 + i * 10**6 + t
        if s.get("headers"):
            s["headers"] = renumber(s["headers"])
    print(json.dumps(j))
PY
chrome() {
	local t0 t1
	t0=$(date +%s%N)
	chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
		--disable-component-update --disable-extensions --user-data-dir="$tmp/profile" \
		--virtual-time-budget=60000 --dump-dom "file://$1" >"$tmp/dom.html" 2>/dev/null
	t1=$(date +%s%N)
	echo $(((t1 - t0) / 1000000))
}
t0=$(date +%s%N)
"$BIN" report -r "$tmp/journeys.jsonl" -o "$tmp/report.html"
t1=$(date +%s%N)
size=$(stat -c %s "$tmp/report.html")
echo '<!DOCTYPE html><html><body>empty</body></html>' >"$tmp/empty.html"
base=() page=()
for i in 1 2 3; do
	base+=("$(chrome "$tmp/empty.html")")
	page+=("$(chrome "$tmp/report.html")")
	grep -q 'data-ready="1"' "$tmp/dom.html" || { echo "report.sh: the page did not draw" >&2; exit 1; }
	ready=$(grep -o 'data-ready-ms="[0-9]*"' "$tmp/dom.html" | grep -o '[0-9]*')
done
median() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
echo "journeys:                     $N"
echo "report size:                  $size bytes ($((size / N)) bytes a journey)"
echo "pktpath report:               $(((t1 - t0) / 1000000)) ms"
echo "Chromium, empty page:         $(median "${base[@]}") ms (median of 3: ${base[*]})"
echo "Chromium, report drawn:       $(median "${page[@]}") ms (median of 3: ${page[*]})"
echo "page's own clock at drawn:    ${ready} ms (performance.now(), virtual time)"
