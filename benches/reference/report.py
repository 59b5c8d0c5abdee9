"""Prints the side-by-side table from the JSON lines compare.sh collected
(examples/pdq_time.rs, pdq_core_timer.cpp, pdq_reference.py) and exits 1 if
any hash or quality differs where it must not.

usage: python report.py RESULTS.jsonl

Columns (all medians over the timed calls, milliseconds, one pinned core):
  pdqhash     pdqhash.compute / compute_dihedral from Python, as a PyPI user
              calls it: numpy float64 luma + Meta's C++ core
  core        the binding's C++ core alone = pdqhash minus its numpy luma
              lines timed on their own (an estimate: difference of medians)
  C++ -O3     Meta's C++ core from the same sdist, g++ -O3, reference
              float32 luma, no Python (pdq_core_timer)
  hashfed     ours: hash_pixels / hash_pixels_dihedral, RGB -> luma -> hash
  equal       ours vs pdqhash on the binding's luma (bit-exact expected), and
              ours vs the C++ pipeline on the reference luma (bit-exact expected)
"""

import json
import sys


def bits_apart(a, b):
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def same(ours, theirs, quality_ours, quality_theirs):
    """'yes', or what differs, for lists of hex hashes plus a quality."""
    diff = sum(bits_apart(a, b) for a, b in zip(ours, theirs))
    if len(ours) == len(theirs) and diff == 0 and quality_ours == quality_theirs:
        return "yes"
    return f"NO ({diff} bits, quality {quality_ours} vs {quality_theirs})"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    try:
        with open(sys.argv[1]) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError) as e:
        sys.exit(f"report.py: cannot read {sys.argv[1]}: {e}")
    by = {(r["impl"], r["buffer"]): r for r in rows}
    buffers = list(dict.fromkeys(r["buffer"] for r in rows if r["impl"] == "hashfed"))

    header = (f"{'buffer':<10} {'entry':<9} {'pdqhash ms':>10} {'core ms':>8} {'C++ -O3 ms':>10} "
              f"{'hashfed ms':>10} {'vs pdqhash':>10} {'vs C++':>7}  {'equal (pdqhash / C++)'}")
    print(header)
    print("-" * len(header))
    ok = True
    for buf in buffers:
        luma = by.get(("pdqhash-numpy-luma", buf))
        for entry, ours_impl, py_impl, cpp_impl, key in [
            ("hash", "hashfed", "pdqhash.compute", "reference-cpp-core", "hash"),
            ("dihedral", "hashfed-dihedral", "pdqhash.compute_dihedral", "reference-cpp-core-dihedral", "hashes"),
        ]:
            try:
                ours, py, cpp = by[(ours_impl, buf)], by[(py_impl, buf)], by[(cpp_impl, buf)]
            except KeyError as e:
                sys.exit(f"report.py: no result for {e.args[0]}")
            listed = (lambda r, k: r[k] if isinstance(r[k], list) else [r[k]])
            eq_py = same(listed(ours, key + "_numpy_luma"), listed(py, key),
                         ours["quality_numpy_luma"], py["quality"])
            eq_cpp = same(listed(ours, key), listed(cpp, key), ours["quality"], cpp["quality"])
            ok = ok and eq_py == "yes" and eq_cpp == "yes"
            core = f"{py['median_ms'] - luma['median_ms']:8.3f}" if luma else f"{'-':>8}"
            m = ours["median_ms"]
            print(f"{buf:<10} {entry:<9} {py['median_ms']:10.3f} {core} {cpp['median_ms']:10.3f} {m:10.3f} "
                  f"{py['median_ms'] / m:9.1f}x {cpp['median_ms'] / m:6.1f}x  {eq_py} / {eq_cpp}")
    iters = sorted({r["iters"] for r in rows})
    print(f"medians of {'/'.join(map(str, iters))} timed calls per cell after one warm-up call; "
          "speedup = their median / our median")
    for buf in buffers:
        ours, py = by[("hashfed", buf)], by[("pdqhash.compute", buf)]
        print(f"{buf}: hash {ours['hash']} quality {ours['quality']}"
              + ("" if ours["hash"] == py["hash"] else f" (pdqhash on its float64 luma: {py['hash']})"))
    if not ok:
        print("MISMATCH: hashes or qualities differ where they must be equal", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
