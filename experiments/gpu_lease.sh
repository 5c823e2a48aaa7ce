#!/usr/bin/env bash
# gpu_check.sh on a leased GPU machine (a device that receives a copy of this tree and returns what is
# written under $OUT): what the 2026-12-04 lease needed, in one place.
#
#   experiments/gpu_lease.sh prepare   here, once: CIFAR-10's archive copied into .gpudata/ and the packages
#                                      the lease's Python lacks (faiss-cpu, apricot-select) as wheels in .whl/,
#                                      both ignored by git (.git/info/exclude) and carried to the device
#   experiments/gpu_lease.sh run       there, in one command: the wheels installed into /tmp/site, then
#                                      gpu_check.sh appending to $OUT/gpu.md (a copy of
#                                      experiments/results/gpu.md), its logs in $OUT/logs; copy $OUT/gpu.md
#                                      back to experiments/results/gpu.md and commit it
#
# `run` passes gpu_check.sh's settings through (BUDGET_S, TESTS_S, COMPILE_MODE, ...); BUDGET_S defaults to
# 540 here (a 600 s command), TABLE_SHARE to 0.9 (the speed table first; the recipe gets what is left). GPU_LEASE_PYTHON: the Python (default python3, the lease's own);
# GPU_LEASE_WHEELS: the wheels' folder (default .whl).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${GPU_LEASE_PYTHON:-python3}"
WHEELS="faiss-cpu==1.15.1"             # binary wheels for the lease's Python 3.12
BUILT="apricot-select==0.6.1"          # no wheel on PyPI: built here (pure Python)
case "${1:-}" in
    prepare)
        exclude=.git/info/exclude
        mkdir -p "$(dirname "$exclude")" && touch "$exclude"
        for folder in /.whl/ /.gpudata/; do
            grep -qxF "$folder" "$exclude" || echo "$folder" >> "$exclude"
        done
        mkdir -p .gpudata .whl
        cp "${CIFAR_TAR:-../shared/data/cifar10-jpeg.tar.gz}" .gpudata/cifar10-jpeg.tar.gz || exit 1
        python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
            --platform manylinux2014_x86_64 -d .whl $WHEELS || exit 1
        "$PY" -m pip wheel -q --no-deps -w .whl $BUILT || exit 1
        echo "gpu_lease: ready; carry .whl and .gpudata, and run: experiments/gpu_lease.sh run"
        ;;
    run)
        : "${OUT:?OUT (the folder the lease returns) is not set}"
        wheels="${GPU_LEASE_WHEELS:-.whl}"
        if compgen -G "$wheels/*.whl" > /dev/null; then
            "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
                --upgrade --target /tmp/site "$wheels"/*.whl || exit 1
            export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
        fi
        mkdir -p "$OUT/logs"
        cp experiments/results/gpu.md "$OUT/gpu.md"
        # TABLE_SHARE 0.9: in a 540 s budget the recipe gets a few epochs at best (24 ran in an earlier
        # lease), so the speed table, cut short at 0.6, takes the time.
        PYTHONUNBUFFERED=1 BUDGET_S="${BUDGET_S:-540}" TABLE_SHARE="${TABLE_SHARE:-0.9}" \
            CIFAR_TAR="${CIFAR_TAR:-.gpudata/cifar10-jpeg.tar.gz}" \
            GPU_CHECK_RESULTS="$OUT/gpu.md" GPU_CHECK_LOGS="$OUT/logs" \
            bash experiments/gpu_check.sh "$PY" 2>&1 | tee "$OUT/stderr.log"
        exit "${PIPESTATUS[0]}"
        ;;
    *)
        echo "usage: experiments/gpu_lease.sh prepare | run" >&2
        exit 2
        ;;
esac
