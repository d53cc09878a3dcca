"""numdp.kernels.cuda.numba_pool: numba's device allocations from CuPy's pool (experimental, off
by default).  On a GPU (NUMDP_TEST_REAL_GPU=1, tools/gpu_check.sh) a numba allocation must come
from CuPy's pool and a model evaluated with the device neighbour search must give the CPU's
results; under the simulator only the switch is tested (the plugin is never installed there)."""
import os

import numpy as np
import pytest

pytest.importorskip("numba_cuda")

from numdp.kernels.cuda import numba_pool  # noqa: E402

REAL_GPU = os.environ.get("NUMDP_TEST_REAL_GPU") == "1"


def test_the_switch_is_off_unless_asked():
    assert not numba_pool.enabled({})
    assert not numba_pool.enabled({"NUMDP_CUDA_NUMBA_POOL": "0"})
    for on in ("1", "true", "Yes", " on"):
        assert numba_pool.enabled({"NUMDP_CUDA_NUMBA_POOL": on})


@pytest.mark.skipif(not REAL_GPU, reason="needs a GPU (NUMDP_TEST_REAL_GPU=1): tools/gpu_check.sh runs it")
def test_numba_allocates_from_cupys_pool_and_results_stay_on_a_gpu():
    import cupy
    from numba import cuda

    from numdp.backend import get_backend
    from numdp.model.dp_model import DPModel
    from randmodel import random_config, random_params

    get_backend("cuda")
    params = random_params(ntypes=2, sel=[24, 24], neuron=(4, 8), fitting=(8, 8))
    pos, typ, box = random_config(natoms=9, ntypes=2, box_len=4.0, tilt=0.3)
    before = DPModel(params, nthreads=1, device="cuda").evaluate(pos, typ, box)
    assert numba_pool.install()
    pool = cupy.get_default_memory_pool()
    used = pool.used_bytes()
    a = cuda.device_array(1 << 20)   # 8 MiB
    assert pool.used_bytes() - used >= 8 << 20
    a.copy_to_device(np.arange(1 << 20, dtype=np.float64))
    assert np.array_equal(a.copy_to_host(), np.arange(1 << 20, dtype=np.float64))
    del a
    after = DPModel(params, nthreads=1, device="cuda").evaluate(pos, typ, box)
    cpu = DPModel(params, nthreads=1).evaluate(pos, typ, box)
    assert after.energy == before.energy   # the same kernels on the same data: the same bits
    assert np.array_equal(after.forces, before.forces) and np.array_equal(after.virial, before.virial)
    # the CUDA-vs-CPU double bound derived in tests/test_cuda_model.py: the same float64
    # expressions summed in other orders, ~50 eps of the largest magnitude, two orders of margin
    np.testing.assert_allclose(after.forces, cpu.forces, rtol=0, atol=1e-12 * np.abs(cpu.forces).max())
