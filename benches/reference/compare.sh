#!/usr/bin/env bash
# PDQ hash step side by side, in one run, on the same pixels, pinned to one
# core: RGB bytes -> luma -> hash + quality, full resolution (no 512 resize),
# 512x512 and 1600x1004, plain hash and the eight dihedral hashes.
#
#   hashfed           this crate (examples/pdq_time.rs, release build)
#   pdqhash           Meta's C++ core as packaged on PyPI, called from Python
#                     (pdq_reference.py); its numpy luma is timed alone too
#   C++ -O3           the same C++ core from the same sdist without Python
#                     (pdq_core_timer.cpp)
#
# Exits 1 if a hash differs where it must be equal (see report.py).
# Everything it installs, builds or writes lives under target/ (the venv in
# target/bench-venv, the rest in target/pdq-reference).
#
# usage: bash benches/reference/compare.sh [ITERS]      (default 100)
#        PDQ_BENCH_CPU=1 bash benches/reference/compare.sh   (pin to core 1)
set -euo pipefail
cd "$(dirname "$0")/../.."

iters="${1:-100}"
case "$iters" in
  '' | *[!0-9]* | 0) echo "compare.sh: ITERS must be a positive integer, got '$iters'" >&2; exit 2 ;;
esac
target_dir="${CARGO_TARGET_DIR:-target}"
py="$target_dir/bench-venv/bin/python"
work="$target_dir/pdq-reference"
buffers="$work/buffers"
results="$work/results.jsonl"

bash benches/reference/setup.sh
echo "compare: building examples/pdq_time (release)" >&2
cargo build --quiet --release --example pdq_time
ours="$target_dir/release/examples/pdq_time"

pin=()
cpu="${PDQ_BENCH_CPU:-0}"
if command -v taskset >/dev/null && taskset -c "$cpu" true 2>/dev/null; then
  pin=(taskset -c "$cpu")
  echo "compare: every timer pinned to CPU $cpu (taskset)" >&2
else
  echo "compare: taskset unavailable, timers not pinned" >&2
fi

mkdir -p "$buffers"
: >"$results"
echo "compare: hashfed, $iters calls per buffer and entry point (also writes $buffers)" >&2
"${pin[@]}" "$ours" --write "$buffers" --iters "$iters" >>"$results"
files=("$buffers/rgb-512x512.raw" "$buffers/rgb-1600x1004.raw")
echo "compare: Meta's C++ core without Python (g++ -O3)" >&2
"${pin[@]}" "$work/pdq_core_timer" "$iters" "${files[@]}" >>"$results"
echo "compare: pdqhash from Python" >&2
"${pin[@]}" "$py" benches/reference/pdq_reference.py --iters "$iters" "${files[@]}" >>"$results"

echo >&2
"$py" benches/reference/report.py "$results"
echo "(raw JSON lines: $results)"
