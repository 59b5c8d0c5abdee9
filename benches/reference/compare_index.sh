#!/usr/bin/env bash
# PDQ match index side by side in one run, on the same codes and queries:
#   hashfed's index  vs  FAISS (PyPI faiss-cpu) IndexBinaryMultiHash(256,16,16)
#   with nflip = r // 16 (as HMA configures it) and IndexBinaryFlat.
# Everything it downloads or writes lives under target/index-reference/.
#
# usage: bash benches/reference/compare_index.sh [N] [uniform|clustered] [QUERIES]
set -euo pipefail
cd "$(dirname "$0")/../.."
n="${1:-1000000}"
data="${2:-uniform}"
queries="${3:-1000}"
radii="16,31,48,64"
work="target/index-reference"
venv="$work/venv"
mkdir -p "$work"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import faiss, numpy' 2>/dev/null; then
  echo "setting up $venv (faiss-cpu, numpy) ..." >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q faiss-cpu numpy
fi
cargo build -q --release --bin hashfed-bench
results="$work/results-$n-$data.jsonl"
target/release/hashfed-bench index --n "$n" --data "$data" --queries "$queries" --radii "$radii" --write "$work/data" > "$results"
"$venv/bin/python" benches/reference/faiss_index.py "$work/data" "$radii" >> "$results"

python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
build = {r["impl"]: r for r in rows if r["what"] == "build"}
q = {(r["impl"], r["radius"]): r for r in rows if r["what"] == "query"}
n = rows[0]["n"]
print(f"n={n}  data={rows[0].get('data')}  build: " + ", ".join(
    f"{k} {v['build_s']} s / {v['rss_bytes'] / n:.0f} B per entry" for k, v in build.items()))
print(f"{'r':>3} {'hashfed mean/p99 ms':>21} {'strategy':>8} {'FAISS MultiHash mean ms':>24} {'FAISS Flat mean ms':>19} {'vs faster FAISS':>16} {'hits h/mh/flat':>18}")
for r in sorted({k[1] for k in q}):
    h, mh, fl = q[("hashfed", r)], q[("faiss-multihash-16x16", r)], q[("faiss-flat", r)]
    best = min(mh["mean_ms"], fl["mean_ms"])
    print(f"{r:>3} {h['mean_ms']:>10.3f} /{h['p99_ms']:>8.3f} {h['strategy']:>8} {mh['mean_ms']:>24.3f} {fl['mean_ms']:>19.3f} "
          f"{best / h['mean_ms']:>15.1f}x {h['hits']:>6}/{mh['hits']}/{fl['hits']}"
          + (f"  (MultiHash ran {mh['queries_run']} of {h.get('queries', '?')} queries)" if mh["queries_run"] < fl["queries_run"] else ""))
print("hashfed qps (1 core / all cores / batch): " + ", ".join(
    f"r{r}: {q[('hashfed', r)]['qps_1core']}/{q[('hashfed', r)]['qps_all_cores']}/{q[('hashfed', r)]['qps_batch']}" for r in sorted({k[1] for k in q})))
PY
