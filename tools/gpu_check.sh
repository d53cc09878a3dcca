#!/usr/bin/env bash
# The one device check for a lent NVIDIA GPU (issue 13): under 8 minutes in all.
#
#   0. preflight (seconds): the model file, numdp from the tree, numba-cuda, CuPy and a usable GPU;
#      anything missing stops the script at once with one line (exit 2), before device time is spent;
#   0b. tools/bench_launch.py (seconds): what one kernel launch and one CuPy call cost the host,
#      taken apart (argument conversion, numba's per-array wait, CUDA-graph replay);
#   1. the CUDA tests on the real device (NUMDP_TEST_REAL_GPU=1: the simulator stays off);
#   2. tools/bench_gpu.py: µs/atom/step of water.dp (uncompressed and compressed at dx 0.01) at
#      12 288, 98 304, ~1 M and ~10 M atoms in double, mix32 and mix16, neighbour search included
#      and alone, device bytes per atom, the largest box that fits, the FLOP floor from the
#      matrix-product rate of the same run;
#   2d. tools/bench_graph.py: the compressed evaluation at 192 and 12 288 atoms (double, mix32)
#      captured in a CUDA graph on a CuPy stream and replayed: µs per call direct and replayed,
#      and the replay's results against a direct call's, bit for bit (appended to launch.txt);
#   3. tools/bench_md.py --device cuda (issue 14): `numdp run` water NVT (0.5 fs) with the whole
#      step on the GPU at 192, 12 288, 98 304, ~1 M and ~10 M atoms (sizes that do not fit in
#      device memory or in its budget are skipped with one line): ns/day, µs/atom/step, the
#      split of the step, host transfers, kernel launches and copies per step; then the same at
#      192 atoms with the model compressed (dx 0.01), the issue's 50 ns/day target; then 192 and
#      12 288 atoms compressed with the force calls replayed from CUDA graphs (NUMDP_CUDA_GRAPH=1,
#      numdp.md.device_graph, experimental; its products are numba kernels, not cuBLAS, which
#      CuPy refuses while capturing, so its 192-atom run ends in another state than the compressed
#      run before it, by round-off: both print a sha1 of the final positions and velocities; the
#      graph test of step 1 compares graphs and no graphs with the same products), and once more uncompressed with numba's allocations
#      served by CuPy's pool (NUMDP_CUDA_NUMBA_POOL=1, numdp.kernels.cuda.numba_pool, experimental).
#      The MD runs use the shipped trained model inputs/water/model.h5 (water.dp's architecture):
#      water.dp's weights are random and its dynamics heats up within a few dozen steps;
#   2b. the same model's evaluate at 98 304 atoms (compressed and uncompressed, mix32 and double)
#      with every kernel and array operation timed apart, with the default kernels and with
#      KernelForm.TEAM: where the time goes (tools/bench_gpu.py --profile);
#   2c. ~1 M atoms again (compressed mix32, uncompressed double) with 4x larger chunks of centre
#      atoms (bench_gpu --chunk-scale 4): each chunk costs ~20-45 launches, and on the H200 each
#      launch cost ~190-290 µs whatever the size;
#   4. the short table of step 2, last, from the figures written so far (also after a step was
#      cut short).
#
# Usage, from the repository root on the GPU machine (numdp runs from the source tree):
#   tools/gpu_check.sh [--sim] [MODEL]   MODEL defaults to .gpu/water.dp (copy it in first:
#                                        ../shared/oracle does not travel to the device machine)
#   --sim (or GPU_CHECK_SIM=1): a dry run without a GPU under Numba's CUDA simulator, every step
#   at its smallest (the kernel tests, a 3-atom mix32 benchmark, compressed and not, one MD step
#   of 192 atoms with a tiny random O/H model, compressed and not; ~6 minutes): it proves the
#   script, its outputs and the table work; its figures mean nothing.
# Results go to $OUT (the device tool's return folder) or ./gpu_out, written as each step goes
# (a run killed by its time limit still returns what it had): device.txt,
# launch.txt, tests.txt, bench.txt, bench_gpu.json (rewritten after each configuration), bench_md.txt
# (the three MD runs), table.txt: 7 files (the device tool returns at most 8 files per run: a
# ninth and later, in name order, are left on the machine).
# Time limits (seconds; they add up to 570, under 10 minutes): GPU_CHECK_LAUNCH_TIMEOUT (20),
# GPU_CHECK_GRAPH_TIMEOUT (45: tools/bench_graph.py, step 2d),
# GPU_CHECK_TEST_TIMEOUT (120; the tests
# took 71-85 s on an H200 before the team-kernel and graph tests), GPU_CHECK_BENCH_BUDGET (85:
# bench_gpu.py skips sizes projected past it),
# GPU_CHECK_BENCH_TIMEOUT (110), GPU_CHECK_PROFILE_TIMEOUT (40: the per-operation profile, step 2b),
# GPU_CHECK_CHUNK_TIMEOUT (30: 4x larger chunks, step 2c), GPU_CHECK_MD_BUDGET (75: bench_md.py
# skips sizes projected past it), GPU_CHECK_MD_TIMEOUT (100), GPU_CHECK_MDC_TIMEOUT (35: the
# compressed 192-atom MD run), GPU_CHECK_SLOW_TIMEOUT (35 each: the runs with CUDA graphs, and
# those with numba's allocations from CuPy's pool).
# Expects Python with numba, numba-cuda, cupy-cuda13x, h5py; pytest is installed from .whl/ if
# it is missing and wheels are there (docs/gpu.md, "Checking on a lent GPU").
set -u
SIM=${GPU_CHECK_SIM:-0}
if [ "${1:-}" = "--sim" ]; then SIM=1; shift; fi
cd "$(dirname "$0")/.."
MODEL=${1:-.gpu/water.dp}
RES=${OUT:-gpu_out}
mkdir -p "$RES"
rm -f "$RES"/{device,launch,tests,bench,bench_md,table,FAILED}.txt "$RES/bench_gpu.json"   # a run's files are its own
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"   # the tree first, then any wheels brought along
export PYTHONUNBUFFERED=1   # every line reaches $RES as it is printed
export CUPY_TF32=0          # mix32 means plain FP32 products, never TF32
if [ "$SIM" = 1 ]; then export NUMBA_ENABLE_CUDASIM=1; else export NUMBA_ENABLE_CUDASIM=0; fi
export NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS=0   # small grids are expected at 192 atoms: no warning per launch
TEST_TIMEOUT=${GPU_CHECK_TEST_TIMEOUT:-120}
BENCH_BUDGET=${GPU_CHECK_BENCH_BUDGET:-85}
BENCH_TIMEOUT=${GPU_CHECK_BENCH_TIMEOUT:-110}
MD_BUDGET=${GPU_CHECK_MD_BUDGET:-75}
MD_TIMEOUT=${GPU_CHECK_MD_TIMEOUT:-100}
MDC_TIMEOUT=${GPU_CHECK_MDC_TIMEOUT:-35}
SLOW_TIMEOUT=${GPU_CHECK_SLOW_TIMEOUT:-35}
PROFILE_TIMEOUT=${GPU_CHECK_PROFILE_TIMEOUT:-40}
LAUNCH_TIMEOUT=${GPU_CHECK_LAUNCH_TIMEOUT:-20}
GRAPH_TIMEOUT=${GPU_CHECK_GRAPH_TIMEOUT:-45}
CHUNK_TIMEOUT=${GPU_CHECK_CHUNK_TIMEOUT:-30}
log() { echo "== $(date -u +%T) $*"; }
# timed LIMIT FILE LABEL CMD...: CMD under `timeout LIMIT`, its output shown and appended to FILE,
# and one line there when the limit cut it short
timed() {
    local limit=$1 file=$2 label=$3
    shift 3
    timeout "$limit" "$@" 2>&1 | tee -a "$file"
    [ "${PIPESTATUS[0]}" = 124 ] && echo "$label: stopped at the $limit s limit" | tee -a "$file"
    return 0
}
fail() { echo "gpu_check: $*" | tee -a "$RES/FAILED.txt"; exit 2; }

log "preflight ($([ "$SIM" = 1 ] && echo "SIMULATOR dry run" || echo GPU))"
[ -f "$MODEL" ] || fail "model $MODEL not found: copy ../shared/oracle/water.dp to .gpu/water.dp before the run"
python - "$MODEL" <<'EOF' 2>&1 | tee "$RES/device.txt"
import sys
try:
    import numba
    import numdp
    from numdp.backend import get_backend
    from numdp.errors import InputError
except Exception as exc:  # noqa: BLE001 - one line, whatever is missing
    sys.exit(f"gpu_check: numdp cannot be imported from the tree: {type(exc).__name__}: {exc}")
try:
    be = get_backend("cuda")   # one-line InputError: no numba-cuda, no GPU / driver, no CuPy
    numdp.load_model(sys.argv[1], nthreads=1)
except InputError as exc:
    sys.exit(f"gpu_check: {exc}")
except Exception as exc:  # noqa: BLE001
    sys.exit(f"gpu_check: model {sys.argv[1]} cannot be read: {type(exc).__name__}: {exc}")
import numba_cuda
print(sys.executable, sys.version.split()[0])
print("numba", numba.__version__, "numba-cuda", numba_cuda.__version__, "numpy", __import__("numpy").__version__)
if be.simulator:
    print("device: Numba's CUDA simulator (dry run: figures mean nothing)")
else:
    import cupy
    from numba import cuda
    print("cupy", cupy.__version__, "device:", cuda.get_current_device().name)
EOF
[ "${PIPESTATUS[0]}" = 0 ] || fail "preflight failed (see above)"
[ "$SIM" = 1 ] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$RES/device.txt"

log "launch cost: one numba.cuda launch and one CuPy call on tiny arrays (tools/bench_launch.py)"
timed "$LAUNCH_TIMEOUT" "$RES/launch.txt" "launch cost" python tools/bench_launch.py

log "pytest"
if ! python -c "import pytest" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
    python -m pip install --no-index --find-links .whl pytest 2>&1 | tail -1
fi
if ! python -c "import pytest" 2>/dev/null; then
    echo "pytest is missing (bring its wheels in .whl/, docs/gpu.md): the CUDA tests did NOT run" \
        | tee "$RES/tests.txt"
else
    if [ "$SIM" = 1 ]; then
        tests=(tests/test_cuda_kernels.py)
        real=0
    else
        # what no GPU has run yet first (team kernels in the first two files, the cached launches
        # over numba arrays, the kernel products and real CUDA graphs, the one-block kernels'
        # bits against the launches they replace, the other activation functions' kernels, frame
        # and atomic parameters), the
        # neighbour search (run on the H200 before) last: a run cut at the time limit loses the least
        tests=(tests/test_cuda_kernels.py tests/test_cuda_model.py tests/test_cuda_fastlaunch.py
               tests/test_cuda_gemm.py tests/test_cuda_graph.py tests/test_cuda_numba_pool.py
               tests/test_cuda_fused.py tests/test_cuda_force_launches.py
               tests/test_activations.py::test_cuda_matches_cpu
               tests/test_activations.py::test_low_precision_close_to_double
               tests/test_fparam.py::test_every_path_takes_the_parameters
               tests/test_fparam.py::test_parameters_switched_per_call
               tests/test_aparam.py::test_every_path_takes_the_parameters
               tests/test_aparam.py::test_parameters_switched_per_call
               tests/test_sweep_cuda_sim.py tests/test_sweep_sel0.py tests/test_sweep_cuda_new.py)
        [ -f tests/test_cuda_neighbor.py ] && tests+=(tests/test_cuda_neighbor.py)
        real=1
    fi
    log "CUDA tests: ${tests[*]} (timeout ${TEST_TIMEOUT} s)"
    NUMDP_TEST_REAL_GPU=$real timeout "$TEST_TIMEOUT" python -m pytest -q -x -p no:cacheprovider \
        "${tests[@]}" 2>&1 | tee "$RES/tests.txt"
    rc=${PIPESTATUS[0]}
    if [ "$rc" = 124 ]; then
        echo "CUDA tests: stopped at the ${TEST_TIMEOUT} s limit" | tee -a "$RES/tests.txt"
    elif [ "$rc" != 0 ]; then
        echo "CUDA tests: FAILED (pytest exit status $rc; the benchmark runs anyway)" | tee -a "$RES/tests.txt"
    fi
fi

log "benchmark (model $MODEL, budget ${BENCH_BUDGET} s)"
bench=(--repeat 2 --budget "$BENCH_BUDGET")
[ "$SIM" = 1 ] && bench=(--sizes 3 --quick --variants compressed uncompressed)
timed "$BENCH_TIMEOUT" "$RES/bench.txt" "benchmark" python tools/bench_gpu.py --model "$MODEL" "${bench[@]}" \
    --json "$RES/bench_gpu.json"

log "profile: where one evaluate's time goes, every operation timed apart (appended to bench.txt)"
prof=(--sizes 98304 --variants compressed uncompressed --precisions mix32 double)
[ "$SIM" = 1 ] && prof=(--sizes 3 --variants compressed --precisions mix32)
timed "$PROFILE_TIMEOUT" "$RES/bench.txt" "profile" python tools/bench_gpu.py --model "$MODEL" --profile "${prof[@]}"

log "chunks 4x larger at ~1 M atoms: fewer launches for a larger fixed scratch (appended to bench.txt)"
chunks=(--sizes 1029000 --variants compressed uncompressed --precisions double mix32 --repeat 2 --no-fused
        --no-atomic --chunk-scale 4 --budget "$CHUNK_TIMEOUT")
[ "$SIM" = 1 ] && chunks=(--sizes 3 --quick --no-atomic --chunk-scale 4)
timed "$CHUNK_TIMEOUT" "$RES/bench.txt" "chunks" python tools/bench_gpu.py --model "$MODEL" "${chunks[@]}"

MD_MODEL=inputs/water/model.h5   # trained, stable dynamics (water.dp is random: timing-only)
GRAPH_MODEL=$MODEL
md=(--budget "$MD_BUDGET" --warmup-steps 2)
mdc=(--sizes 192 --warmup-steps 2)
mds=(--sizes 192 12288 --warmup-steps 2)
if [ "$SIM" = 1 ]; then
    # water.dp's 138 neighbour slots take the simulator ~10 minutes per 192-atom step: the dry run
    # proves the MD benchmark on a tiny random O/H model instead (about a minute a run)
    MD_MODEL="$(mktemp -d)/tiny_water.h5"
    python - "$MD_MODEL" <<'EOF' || fail "could not write the dry run's tiny model"
import sys
sys.path.insert(0, "tests")
from randmodel import random_params
from numdp.io.model_file import write_model
params = random_params(ntypes=2, sel=[6, 12], neuron=(2,), axis_neuron=2, fitting=(4,), rcut=2.5,
                       rcut_smth=0.5, seed=1)
params.type_map = ["O", "H"]
params.min_nbor_dist = 0.8   # what `numdp compress` tabulates from (water: O-H ~0.9 A)
write_model(params, sys.argv[1])
EOF
    md=(--sizes 192 --steps 1 --warmup-steps 1)
    mdc=(--sizes 192 --steps 1 --warmup-steps 1)
    mds=(--sizes 192 --steps 1 --warmup-steps 1)
    GRAPH_MODEL=$MD_MODEL
    MD_TIMEOUT=400
    MDC_TIMEOUT=400
    GRAPH_TIMEOUT=400
    SLOW_TIMEOUT=400
fi

log "CUDA graph: the compressed evaluation captured and replayed (tools/bench_graph.py, appended to launch.txt)"
gr=(--sizes 192 12288 --precisions double mix32)
[ "$SIM" = 1 ] && gr=(--sizes 192 --precisions double --repeat 1)
timed "$GRAPH_TIMEOUT" "$RES/launch.txt" "graph" python tools/bench_graph.py --model "$GRAPH_MODEL" "${gr[@]}"

log "MD benchmark, the whole step on the GPU (model $MD_MODEL, budget ${MD_BUDGET} s)"
timed "$MD_TIMEOUT" "$RES/bench_md.txt" "MD benchmark" \
    python tools/bench_md.py --device cuda --model "$MD_MODEL" "${md[@]}"

log "MD benchmark, compressed model at 192 atoms (issue 14: >= 50 ns/day)"
timed "$MDC_TIMEOUT" "$RES/bench_md.txt" "MD benchmark (compressed)" \
    python tools/bench_md.py --device cuda --model "$MD_MODEL" --compress "${mdc[@]}"

log "MD benchmark, compressed, force calls replayed from CUDA graphs (NUMDP_CUDA_GRAPH=1, experimental)"
timed "$SLOW_TIMEOUT" "$RES/bench_md.txt" "MD benchmark (CUDA graphs)" \
    env NUMDP_CUDA_GRAPH=1 python tools/bench_md.py --device cuda --model "$MD_MODEL" --compress "${mds[@]}"
# the graph run's products are kernels (CuPy refuses cuBLAS while capturing): its 192-atom
# fingerprint differs from the compressed run's by round-off; test_cuda_graph checks the bits
grep -h "final positions" "$RES/bench_md.txt" | tail -n 5 | sed 's/^ */fingerprints so far (runs in order): /' \
    | tee -a "$RES/bench_md.txt"

log "MD benchmark, numba's allocations from CuPy's pool (NUMDP_CUDA_NUMBA_POOL=1, experimental)"
timed "$SLOW_TIMEOUT" "$RES/bench_md.txt" "MD benchmark (numba pool)" \
    env NUMDP_CUDA_NUMBA_POOL=1 python tools/bench_md.py --device cuda --model "$MD_MODEL" "${mds[@]}"

log "table"
python tools/bench_gpu.py --table "$RES/bench_gpu.json" 2>&1 | tee "$RES/table.txt"
log "done"
