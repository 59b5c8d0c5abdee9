"""Times pdqhash.compute (the PyPI binding of Meta's C++ core) on the shared
benchmark buffers. Note: the binding computes luma with numpy in float64 before
calling the C++ core, so its time includes that and its hash can differ from
the float32 reference by a bit or two.

usage: python pdqhash_timer.py ITERS FILE...   (FILE named rgb-WxH.raw)
"""
import json
import re
import sys
import time

import numpy as np
import pdqhash


def hex_of(bits):
    # The binding returns bit 255 first (hash_to_vector reverses the bits);
    # in the printed form, bit k of the hash is bit k of the 256-bit number.
    value = 0
    for i, bit in enumerate(bits):
        if bit:
            value |= 1 << (255 - i)
    return f"{value:064x}"


def main():
    iters = int(sys.argv[1])
    for path in sys.argv[2:]:
        m = re.search(r"rgb-(\d+)x(\d+)\.raw$", path)
        w, h = int(m.group(1)), int(m.group(2))
        img = np.fromfile(path, dtype=np.uint8).reshape(h, w, 3)
        hash_bits, quality = pdqhash.compute(img)
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            hash_bits, quality = pdqhash.compute(img)
            times.append((time.perf_counter() - t0) * 1e3)
        times.sort()
        print(json.dumps({
            "impl": "pdqhash-python", "buffer": f"{w}x{h}",
            "median_ms": round(times[len(times) // 2], 4), "min_ms": round(times[0], 4),
            "iters": iters, "hash": hex_of(hash_bits), "quality": int(quality),
        }))


if __name__ == "__main__":
    main()
