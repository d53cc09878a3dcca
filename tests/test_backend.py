"""numdp.backend: the CPU and CUDA backends expose the same interface and the same products."""
import numpy as np
import pytest

from numdp.backend import get_backend
from numdp.model.precision import round_half


def test_cpu_backend_products_and_transfers():
    be = get_backend("cpu")
    assert be.name == "cpu" and be.xp is np and not be.simulator
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 7)), rng.normal(size=(7, 3))
    assert np.array_equal(be.to_host(be.to_device(a)), a)
    assert np.array_equal(be.matmul(a, b), a @ b)
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    # half: the CPU mix16 policy, operands rounded to float16 and multiplied in float32
    assert np.array_equal(be.matmul(a32, b32, half=True), round_half(a32) @ round_half(b32))
    assert be.kernels.envmat.env_pairs is not None


def test_cuda_backend_under_the_simulator():
    pytest.importorskip("numba_cuda")
    be = get_backend("cuda")
    if not be.simulator:
        pytest.skip("a real GPU: covered by tests/test_cuda_model.py")
    assert be.name == "cuda" and be.xp is np
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(4, 6)).astype(np.float32), rng.normal(size=(6, 2)).astype(np.float32)
    assert np.array_equal(be.matmul(a, b, half=True), round_half(a) @ round_half(b))
    assert be.kernels.envmat.env_pairs is not None and be.kernels.tabulated.kernels_for
