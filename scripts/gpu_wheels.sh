#!/usr/bin/env bash
# Download every wheel that scripts/gpu_check.sh installs into DIR, for a machine without network:
# CPython 3.12 on manylinux x86_64, at the versions of constraints.txt (the list comes from
# `scripts/gpu_check.py requirements`: constraints.txt less torch and its CUDA libraries, which
# the GPU machine brings, and what the check does not use). Prints the total size.
#
#   bash scripts/gpu_wheels.sh DIR                      # then: WHEELHOUSE=DIR bash scripts/gpu_check.sh
#   GPU_WHEELS_PYTHON_VERSION=3.11 bash scripts/gpu_wheels.sh DIR   # another CPython
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: bash scripts/gpu_wheels.sh DIR" >&2
    exit 2
fi
dir=$1
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python3}
version=${GPU_WHEELS_PYTHON_VERSION:-3.12}
mkdir -p "$dir"

mapfile -t requirements < <("$python" "$repo/scripts/gpu_check.py" requirements)
echo "${#requirements[@]} packages for CPython $version, manylinux x86_64 -> $dir"
# --no-deps: the list is already the whole set, and resolving it would pull torch in (several
# packages depend on it). Several --platform tags, since a package's newest wheel may carry an
# older manylinux tag than another's; pure-Python wheels match any platform.
"$python" -m pip download --no-deps --only-binary=:all: \
    --python-version "$version" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform linux_x86_64 \
    -d "$dir" "${requirements[@]}"

count=$(find "$dir" -maxdepth 1 -name '*.whl' | wc -l)
echo "$count wheels, $(du -sh "$dir" | cut -f1) in all ($dir)"
