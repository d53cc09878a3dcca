"""numdp.backend: the CPU and CUDA backends expose the same interface and the same products."""
import os
import subprocess
import sys

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


def test_array_interface_sync_is_skipped_only_on_one_stream():
    from numdp.backend import one_stream

    assert one_stream({})
    assert one_stream({"NUMBA_CUDA_PER_THREAD_DEFAULT_STREAM": "0", "CUPY_CUDA_PER_THREAD_DEFAULT_STREAM": ""})
    assert not one_stream({"NUMBA_CUDA_ARRAY_INTERFACE_SYNC": "1"})   # the user's setting decides
    assert not one_stream({"NUMBA_CUDA_ARRAY_INTERFACE_SYNC": "0"})   # (numba reads it itself)
    assert not one_stream({"NUMBA_CUDA_PER_THREAD_DEFAULT_STREAM": "1"})
    assert not one_stream({"CUPY_CUDA_PER_THREAD_DEFAULT_STREAM": "1"})


def test_kernels_compile_with_a_numpy_without_row_stack():
    """numba-cuda 0.30.4 overloads np.row_stack when it loads its CUDA registries (at the first
    kernel compilation), and NumPy 2.5 removed the alias: importing numdp.kernels.cuda restores
    it.  numba.cuda.np.arrayobj is the module that fails; it imports without a GPU.  (Over numba
    0.60, the oldest numdp takes, numba-cuda 0.30.4 does not overload it and the control passes;
    numdp's import must still leave the alias.)"""
    pytest.importorskip("numba_cuda")
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    head = "import numpy as np\nif hasattr(np, 'row_stack'):\n    del np.row_stack\n"
    control = subprocess.run([sys.executable, "-c", head + "import numba.cuda.np.arrayobj"],
                             env=env, capture_output=True, text=True)
    assert control.returncode == 0 or "row_stack" in control.stderr   # where it fails, for want of the alias
    fixed = subprocess.run([sys.executable, "-c", head + "import numdp.kernels.cuda\nimport numba.cuda.np.arrayobj\n"
                            "assert np.row_stack is np.vstack"], env=env, capture_output=True, text=True)
    assert fixed.returncode == 0, fixed.stderr[-2000:]


def test_device_constants_are_made_once_and_retained_while_a_graph_is_captured():
    """DeviceConstants makes each key's array once, drops all at `limit` keys, and hands every
    array it gives out inside `retaining(keep)` to `keep` too, also when the cache drops it (a
    captured CUDA graph keeps that list: numdp.md.device_graph)."""
    from numdp.backend import DeviceConstants, retaining

    made = []

    def make(v):
        def _make():
            made.append(v)
            return np.full(2, v)
        return _make

    cache = DeviceConstants(limit=2)
    a = cache.get("a", make(1))
    assert cache.get("a", make(9)) is a and made == [1]
    with retaining([]) as kept:
        b = cache.get("b", make(2))
        assert cache.get("a", make(9)) is a
    assert [id(v) for v in kept] == [id(b), id(a)]
    cache.get("c", make(3))            # the third key: the cache starts over
    assert len(cache) == 1 and made == [1, 2, 3]
    assert kept[0] is b and kept[0][0] == 2
    assert cache.get("d", make(4)) is not None and len(kept) == 2   # outside the block: not kept
