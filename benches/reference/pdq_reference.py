"""Times Meta's PDQ as packaged on PyPI (`pdqhash`, a Cython binding of the
C++ reference core) on the raw RGB buffers the Rust side writes, and prints
one JSON line per measurement.

usage: python pdq_reference.py [--iters N] FILE...   (each FILE named rgb-WxH.raw:
       W*H*3 bytes, packed R G B, rows top to bottom, no header)

What `pdqhash.compute(image)` does (pdqhash 0.2.8, pdqhash/bindings.pyx):

  gray = (image[:, :, 0]*0.299 + image[:, :, 1]*0.587
          + image[:, :, 2]*0.114).astype('float32')      # numpy, float64
  placeholder = np.zeros_like(gray)
  pdqHash256FromFloatLuma(gray, placeholder, rows, cols, ...)  # C++ core
  return hash_to_vector(hash.w), quality

So: no resize (full resolution, like `Resolution::Full`), the channels taken
in the order given (we pass R G B), and the C++ core's hash + quality on the
whole plane. The one difference from the C++ reference pipeline is the luma:
the reference's fillFloatLumaFromRGB multiplies and adds in float32, the
binding in float64 and rounds once at the end, so a few luma values differ by
one float32 ulp and the hash can differ from the reference's by a bit or so.
To keep the comparison fair:

  * timing: this script also times the binding's numpy luma lines alone
    ("pdqhash-numpy-luma"), so the table can show the binding's C++ core time
    (compute minus luma) as well as what a Python caller pays;
    pdq_core_timer.cpp times the same C++ core with the reference's own
    float32 luma and no Python at all;
  * correctness: the Rust timer also hashes the binding's float64-rounded
    luma with our core (`hash_numpy_luma`), which must equal
    pdqhash.compute's hash exactly; our normal hash must equal the C++ core
    timer's.

`hash_to_vector` returns the 256 bits with bit 255 first; read as one
big-endian binary number that puts bit k of the hash at bit k of the number,
which is the 64-hex-digit form the reference's Hash256::format and our
`PdqHash` Display print.
"""

import argparse
import json
import re
import statistics
import sys
import time

try:
    import numpy as np
    import pdqhash
except ImportError as e:  # pragma: no cover - environment problem
    sys.exit(f"pdq_reference.py: {e}; run benches/reference/setup.sh and use target/bench-venv/bin/python")


def hex_of(bits):
    """pdqhash's bit vector (bit 255 first) as Meta's 64-hex-digit text."""
    bits = [int(b) for b in bits]
    if len(bits) != 256 or any(b not in (0, 1) for b in bits):
        raise ValueError("pdqhash returned something other than 256 bits")
    return f"{int(''.join(map(str, bits)), 2):064x}"


def binding_luma(image):
    """Exactly the numpy lines pdqhash.compute runs before the C++ core."""
    gray = (image[:, :, 0] * 0.299 + image[:, :, 1] * 0.587 + image[:, :, 2] * 0.114).astype("float32")
    placeholder = np.zeros_like(gray)
    return gray, placeholder


def load(path):
    m = re.search(r"rgb-(\d+)x(\d+)\.raw$", path)
    if not m:
        raise ValueError(f"{path}: file name must end in rgb-WxH.raw")
    w, h = int(m.group(1)), int(m.group(2))
    data = np.fromfile(path, dtype=np.uint8)
    if data.size != w * h * 3:
        raise ValueError(f"{path}: {data.size} bytes, expected {w}*{h}*3 = {w * h * 3}")
    return f"{w}x{h}", data.reshape(h, w, 3)


def timed(fn, iters):
    """Runs fn once to warm up, then iters times; returns (last result, ms list)."""
    out = fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return out, times


def row(impl, buffer, times, **extra):
    return {
        "impl": impl,
        "buffer": buffer,
        "mean_ms": round(statistics.fmean(times), 4),
        "median_ms": round(statistics.median(times), 4),
        "min_ms": round(min(times), 4),
        "iters": len(times),
        **extra,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iters", type=int, default=50, help="timed calls per buffer (default 50)")
    ap.add_argument("files", nargs="+", help="rgb-WxH.raw buffers")
    args = ap.parse_args()
    if args.iters < 1:
        ap.error("--iters must be at least 1")
    for path in args.files:
        try:
            buffer, image = load(path)
        except (OSError, ValueError) as e:
            sys.exit(f"pdq_reference.py: {e}")

        (bits, quality), t = timed(lambda: pdqhash.compute(image), args.iters)
        print(json.dumps(row("pdqhash.compute", buffer, t, hash=hex_of(bits), quality=int(quality))), flush=True)

        (variants, quality), t = timed(lambda: pdqhash.compute_dihedral(image), args.iters)
        hashes = [hex_of(b) for b in variants]
        print(json.dumps(row("pdqhash.compute_dihedral", buffer, t, hash=hashes[0], hashes=hashes,
                             quality=int(quality))), flush=True)

        _, t = timed(lambda: binding_luma(image), args.iters)
        print(json.dumps(row("pdqhash-numpy-luma", buffer, t)), flush=True)


if __name__ == "__main__":
    main()
