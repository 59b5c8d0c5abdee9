#!/usr/bin/env bash
# Sets up Meta's PDQ reference for the side-by-side benchmark, all under the
# crate's target dir (never committed):
#
#   target/bench-venv/          virtualenv with numpy and pdqhash (PyPI),
#                               pdqhash built from its sdist: Cython wrapping
#                               Meta's C++ PDQ core (ThreatExchange/pdq/cpp)
#   target/pdq-reference/       the same sdist unpacked, and pdq_core_timer:
#                               that C++ core compiled with g++ -O3 (the flags
#                               pip builds the extension with) and timed
#                               without Python, see pdq_core_timer.cpp
#
# Needs only python3 (with venv and pip), g++ and access to PyPI. Idempotent:
# whatever is already in place is kept.
#
# usage: bash benches/reference/setup.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

PDQHASH_VERSION=0.2.8
target_dir="${CARGO_TARGET_DIR:-target}"
venv="$target_dir/bench-venv"
work="$target_dir/pdq-reference"
py="$venv/bin/python"

die() {
  echo "benches/reference/setup.sh: $*" >&2
  exit 1
}

command -v python3 >/dev/null || die "python3 not found; install Python 3 (3.9 or later) with venv and pip"
command -v g++ >/dev/null || die "g++ not found; install it (apt-get install g++), pdqhash compiles C++"
mkdir -p "$work"

have_pdqhash() {
  [ -x "$py" ] && "$py" - "$PDQHASH_VERSION" <<'PY' 2>/dev/null
import sys
import numpy, pdqhash
sys.exit(0 if pdqhash.__version__ == sys.argv[1] else 1)
PY
}

if have_pdqhash; then
  echo "setup: $venv already has numpy and pdqhash $PDQHASH_VERSION" >&2
else
  if [ ! -x "$py" ]; then
    echo "setup: creating virtualenv $venv" >&2
    python3 -m venv "$venv" ||
      die "could not create $venv (on Debian/Ubuntu: apt-get install python3-venv)"
  fi
  # pdqhash ships only an sdist: its build needs setuptools, wheel, Cython and
  # numpy >= 2 (pyproject.toml). They go into the venv first and the build
  # uses them (no build isolation), so the extension is compiled against the
  # very numpy it runs with.
  echo "setup: installing numpy and pdqhash's build requirements into $venv" >&2
  "$py" -m pip install -q --disable-pip-version-check --upgrade pip ||
    die "pip could not upgrade itself in $venv (is PyPI reachable?)"
  "$py" -m pip install -q --disable-pip-version-check \
    'numpy>=2.0,<3' 'cython>=3' 'setuptools>=61' wheel ||
    die "pip could not install numpy/cython/setuptools/wheel into $venv (is PyPI reachable?)"
  echo "setup: building pdqhash $PDQHASH_VERSION from its sdist (compiles Meta's C++ core; about a minute)" >&2
  "$py" -m pip install -q --disable-pip-version-check --no-build-isolation \
    "pdqhash==$PDQHASH_VERSION" ||
    die "pip could not build/install pdqhash==$PDQHASH_VERSION (needs g++ and Python headers: apt-get install python3-dev)"
  have_pdqhash || die "pdqhash $PDQHASH_VERSION installed but 'import numpy, pdqhash' fails in $venv"
fi

# The C++ core on its own, from the same sdist.
src="$work/pdqhash-$PDQHASH_VERSION"
if [ ! -f "$src/ThreatExchange/pdq/cpp/hashing/pdqhashing.cpp" ]; then
  echo "setup: unpacking the pdqhash $PDQHASH_VERSION sdist into $work" >&2
  # pdqhash publishes only this sdist. No build isolation: pip reads its
  # metadata with the venv's build requirements instead of fetching (and,
  # with --no-binary, compiling) a fresh set.
  "$py" -m pip download -q --disable-pip-version-check --no-deps --no-build-isolation \
    -d "$work" "pdqhash==$PDQHASH_VERSION" ||
    die "pip could not download the pdqhash==$PDQHASH_VERSION sdist"
  [ -f "$work/pdqhash-$PDQHASH_VERSION.tar.gz" ] ||
    die "pip did not leave $work/pdqhash-$PDQHASH_VERSION.tar.gz (did PyPI offer a wheel instead?)"
  tar -xzf "$work/pdqhash-$PDQHASH_VERSION.tar.gz" -C "$work" ||
    die "could not unpack $work/pdqhash-$PDQHASH_VERSION.tar.gz"
fi
timer="$work/pdq_core_timer"
timer_src=benches/reference/pdq_core_timer.cpp
if [ ! -x "$timer" ] || [ "$timer_src" -nt "$timer" ]; then
  echo "setup: compiling $timer (g++ -O3)" >&2
  g++ -O3 -std=c++11 -w -I "$src/ThreatExchange" -I "$src/include" -o "$timer" "$timer_src" ||
    die "g++ could not compile $timer_src against $src"
fi
echo "setup: ok ($py, $timer)" >&2
