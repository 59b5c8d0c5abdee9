#!/usr/bin/env bash
# PDQ hash step, side by side in one run, on the same pixels, one core:
#   hashfed (this crate)  vs  Meta's C++ core from the PyPI package `pdqhash`
#   (compiled from its sdist with g++ -O3, no Python in the loop)  and
#   `pdqhash.compute` itself (Python binding: numpy luma + the C++ core).
# Everything it downloads or builds lives under target/pdq-reference/.
#
# usage: bash benches/reference/compare.sh [ITERS]
set -euo pipefail
cd "$(dirname "$0")/../.."
iters="${1:-100}"
work="target/pdq-reference"
venv="$work/venv"
mkdir -p "$work"

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import pdqhash, numpy' 2>/dev/null; then
  echo "setting up $venv (numpy, pdqhash 0.2.8) ..." >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q numpy 'pdqhash==0.2.8'
fi
if [ ! -d "$work/pdqhash-0.2.8/ThreatExchange" ]; then
  "$venv/bin/pip" download -q --no-deps -d "$work" "pdqhash==0.2.8"
  tar -xzf "$work/pdqhash-0.2.8.tar.gz" -C "$work"
fi
if [ ! -x "$work/pdq_core_timer" ] || [ benches/reference/pdq_core_timer.cpp -nt "$work/pdq_core_timer" ]; then
  g++ -O3 -std=c++11 -w -I "$work/pdqhash-0.2.8/ThreatExchange" -I "$work/pdqhash-0.2.8/include" \
    -o "$work/pdq_core_timer" benches/reference/pdq_core_timer.cpp
fi
cargo build -q --release --example pdq_time

pin=()
if command -v taskset >/dev/null; then pin=(taskset -c 0); fi
buffers="$work/buffers"
results="$work/results.jsonl"
"${pin[@]}" target/release/examples/pdq_time --write "$buffers" --iters "$iters" > "$results"
files=("$buffers"/rgb-512x512.raw "$buffers"/rgb-1600x1004.raw)
"${pin[@]}" "$work/pdq_core_timer" "$iters" "${files[@]}" >> "$results"
"${pin[@]}" "$venv/bin/python" benches/reference/pdqhash_timer.py "$iters" "${files[@]}" >> "$results"

python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {(r["impl"], r["buffer"]): r for r in rows}
print(f"{'buffer':<10} {'hashfed ms':>11} {'C++ core ms':>12} {'speedup':>8} {'pdqhash.compute ms':>19} {'speedup':>8}  hash equal to C++ core")
for buf in ["512x512", "1600x1004"]:
    ours, core, py = by[("hashfed", buf)], by[("reference-cpp-core", buf)], by[("pdqhash-python", buf)]
    diff = bin(int(ours["hash"], 16) ^ int(core["hash"], 16)).count("1")
    same = "yes" if diff == 0 and ours["quality"] == core["quality"] else f"NO ({diff} bits)"
    print(f"{buf:<10} {ours['median_ms']:>11.3f} {core['median_ms']:>12.3f} {core['median_ms']/ours['median_ms']:>7.1f}x "
          f"{py['median_ms']:>19.3f} {py['median_ms']/ours['median_ms']:>7.1f}x  {same}")
print("(medians over the iterations, one core; pdqhash.compute includes its numpy float64 luma)")
PY
