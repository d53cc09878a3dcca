#!/usr/bin/env bash
# The one device check for a lent NVIDIA GPU (issue 13): under 8 minutes in all.
#
#   1. the CUDA tests on the real device (NUMDP_TEST_REAL_GPU=1: the simulator stays off);
#   2. tools/bench_gpu.py: µs/atom/step of water.dp (uncompressed and compressed at dx 0.01) at
#      12 288, 98 304, ~1 M and ~10 M atoms in double, mix32 and mix16, neighbour search included
#      and alone, device bytes per atom, the largest box that fits, the FLOP floor from the
#      matrix-product rate of the same run, and a short table last;
#   3. tools/bench_md.py --device cuda (issue 14): `numdp run` water NVT (0.5 fs) with the whole
#      step on the GPU at 192, 12 288, 98 304, ~1 M and ~10 M atoms (sizes that do not fit in
#      device memory or in its 70 s budget are skipped with one line): ns/day, µs/atom/step, the
#      split of the step, host transfers, kernel launches and copies per step.
# Worst case: 130 + 260 + 100 s of timeouts, under 8 minutes with the start-up.
#
# Usage, from the repository root on the GPU machine (numdp runs from the source tree):
#   tools/gpu_check.sh [MODEL]           MODEL defaults to .gpu/water.dp (copy it in first:
#                                        ../shared/oracle does not travel to the device machine)
# Results go to $OUT (the device tool's return folder) or ./gpu_out.
# Expects Python with numba, numba-cuda, cupy-cuda13x, h5py; pytest is installed from .whl/ if
# it is missing and wheels are there.
set -u
cd "$(dirname "$0")/.."
MODEL=${1:-.gpu/water.dp}
RES=${OUT:-gpu_out}
mkdir -p "$RES"
export PYTHONPATH=.
export CUPY_TF32=0          # mix32 means plain FP32 products, never TF32
log() { echo "== $(date -u +%T) $*"; }

if [ ! -f "$MODEL" ]; then   # fail before spending device time
    echo "model $MODEL not found: copy ../shared/oracle/water.dp to .gpu/water.dp before the run"
    exit 2
fi

log "device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$RES/device.txt"
python -c "import sys, numba, numba_cuda, cupy; print(sys.executable); print('numba', numba.__version__, 'numba-cuda', numba_cuda.__version__, 'cupy', cupy.__version__)" 2>&1 | tee -a "$RES/device.txt"

log "pytest"
if ! python -c "import pytest" 2>/dev/null; then
    if ls .whl/*.whl >/dev/null 2>&1; then
        pip install --no-index --find-links .whl pytest 2>&1 | tail -1
    else
        echo "pytest is missing and there is no .whl/ folder: the CUDA tests cannot run (bring a pytest wheel in .whl/)"
    fi
fi
if python -c "import pytest" 2>/dev/null; then
    tests=(tests/test_cuda_kernels.py tests/test_cuda_model.py)
    [ -f tests/test_cuda_neighbor.py ] && tests+=(tests/test_cuda_neighbor.py)
    log "CUDA tests on the device: ${tests[*]}"
    NUMDP_TEST_REAL_GPU=1 NUMBA_ENABLE_CUDASIM=0 timeout 130 python -m pytest -q -x -p no:cacheprovider \
        "${tests[@]}" 2>&1 | tail -30 | tee "$RES/tests.txt"
fi

log "benchmark (model $MODEL)"
NUMBA_ENABLE_CUDASIM=0 timeout 260 python tools/bench_gpu.py --model "$MODEL" --repeat 2 --budget 200 \
    --json "$RES/bench_gpu.json" 2>&1 | tee "$RES/bench.txt"

log "MD benchmark, the whole step on the GPU (model $MODEL)"
NUMBA_ENABLE_CUDASIM=0 timeout 100 python tools/bench_md.py --device cuda --model "$MODEL" --budget 70 \
    --warmup-steps 2 2>&1 | tee "$RES/bench_md.txt"
log "done"
