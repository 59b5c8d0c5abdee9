"""FAISS on exactly the codes and queries `hashfed-bench index --write DIR`
wrote, configured as Meta's HMA configures it: IndexBinaryMultiHash(256, 16,
16) with nflip = r // 16, and IndexBinaryFlat for the exhaustive baseline.
One query per call, as a matcher serving uploads sees them. FAISS's
range_search keeps distances strictly below the radius, so r + 1 is passed for
our inclusive r.

usage: python faiss_index.py DIR RADII(comma-separated)
"""
import json
import sys
import time

import faiss
import numpy as np


# FAISS MultiHash at radius >= 48 takes seconds per query at 10M; each
# (index, radius) cell stops after this many seconds (at least 20 queries) and
# reports on the queries it ran.
BUDGET_S = 60.0


def timed_queries(index, queries, radius):
    lat = []
    hits = 0
    t0 = time.perf_counter()
    for i in range(len(queries)):
        if i >= 20 and time.perf_counter() - t0 > BUDGET_S:
            break
        s = time.perf_counter()
        lims, _, _ = index.range_search(queries[i:i + 1], radius + 1)
        lat.append((time.perf_counter() - s) * 1e3)
        hits += int(lims[1])
    total = time.perf_counter() - t0
    ran = len(lat)
    lat.sort()
    return {
        "mean_ms": round(sum(lat) / ran, 4),
        "p99_ms": round(lat[ran * 99 // 100], 4),
        "qps": round(ran / total),
        "hits": hits,
        "queries_run": ran,
    }


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def main():
    d, radii = sys.argv[1], [int(r) for r in sys.argv[2].split(",")]
    codes = np.fromfile(f"{d}/codes.bin", dtype=np.uint8).reshape(-1, 32)
    queries = np.fromfile(f"{d}/queries.bin", dtype=np.uint8).reshape(-1, 32)
    n = len(codes)
    for name, make in [
        ("faiss-multihash-16x16", lambda: faiss.IndexBinaryMultiHash(256, 16, 16)),
        ("faiss-flat", lambda: faiss.IndexBinaryFlat(256)),
    ]:
        before = rss_bytes()
        t0 = time.perf_counter()
        index = make()
        index.add(codes)
        build = time.perf_counter() - t0
        print(json.dumps({"impl": name, "what": "build", "n": n, "build_s": round(build, 2),
                          "rss_bytes": rss_bytes() - before, "threads": faiss.omp_get_max_threads()}), flush=True)
        for r in radii:
            if name.startswith("faiss-multihash"):
                index.nflip = r // 16
            row = {"impl": name, "what": "query", "n": n, "radius": r}
            row.update(timed_queries(index, queries, r))
            print(json.dumps(row), flush=True)
        del index


if __name__ == "__main__":
    main()
