"""numdp.kernels.cuda.fastlaunch: the cached launch path gives the kernel the same arguments as
numba's own.

The comparison needs a GPU (the simulator's kernels are Python: the fast path is not installed
there): it runs in tools/gpu_check.sh (NUMDP_TEST_REAL_GPU=1), where every other CUDA test also
launches through the fast path.  Under the simulator only the switch is tested."""
import os

import numpy as np
import pytest

pytest.importorskip("numba_cuda")

from numba import cuda  # noqa: E402

from numdp.kernels.cuda import fastlaunch  # noqa: E402

REAL_GPU = os.environ.get("NUMDP_TEST_REAL_GPU") == "1"


def test_the_switch_reads_the_environment():
    assert fastlaunch.enabled({})
    for off in ("0", "false", "No", "off "):
        assert not fastlaunch.enabled({"NUMDP_CUDA_FAST_LAUNCH": off})
    assert fastlaunch.enabled({"NUMDP_CUDA_FAST_LAUNCH": "1"})


def test_the_simulator_keeps_numbas_launch(monkeypatch):
    if REAL_GPU:
        pytest.skip("the simulator's case")
    from numdp.backend import get_backend

    def refuse():
        raise AssertionError("the fast path must not be installed under the simulator")

    monkeypatch.setattr(fastlaunch, "install", refuse)
    assert get_backend("cuda").simulator


class _DeviceArrayLike:
    """What `flatten` reads of a CuPy array, over a NumPy array (no GPU needed)."""

    def __init__(self, a):
        import types

        self.shape, self.strides, self.size, self.itemsize, self.flags = a.shape, a.strides, a.size, a.itemsize, a.flags
        self.data = types.SimpleNamespace(ptr=a.ctypes.data)


def test_flatten_lays_arguments_out_as_numba_does():
    """numba's kernel parameters per argument (numba.cuda dispatcher, _prepare_args): an array as
    meminfo 0, parent 0, size, itemsize, pointer, shape, strides in bytes (canonical C strides for
    a C-contiguous array, whatever strides a size-1 dimension reports), a bool as bool, other
    scalars as their ctypes value.  The comparison with numba's own launches is the GPU test
    below; this one pins the layout on every machine."""
    import ctypes

    c = np.zeros((2, 3))
    view = np.zeros((6, 10))[:, ::3]
    odd = np.lib.stride_tricks.as_strided(np.zeros(4), (1, 4), (999, 8))   # C-contiguous by numpy's rule
    zero_d = np.zeros(())
    i32 = np.zeros(5, np.int32)
    assert odd.flags.c_contiguous and not view.flags.c_contiguous
    A, C = fastlaunch._ARRAY, fastlaunch._C_ARRAY   # the kinds entry_for gives by the arrays' contiguity
    kinds = (C, A, C, C, C, fastlaunch._BOOL, ctypes.c_int64, ctypes.c_double, ctypes.c_float, ctypes.c_int32)
    args = [_DeviceArrayLike(a) for a in (c, view, odd, zero_d, i32)] + [True, 5, 1.5, np.float32(0.25), np.int32(-3)]
    got = fastlaunch.flatten(kinds, args)
    want = [0, 0, 6, 8, c.ctypes.data, 2, 3, 24, 8,
            0, 0, 24, 8, view.ctypes.data, 6, 4, 80, 24,
            0, 0, 4, 8, odd.ctypes.data, 1, 4, 32, 8,
            0, 0, 1, 8, zero_d.ctypes.data,
            0, 0, 5, 4, i32.ctypes.data, 5, 4,
            True, 5, 1.5, 0.25, -3]
    assert [getattr(p, "value", p) for p in got] == want
    assert [type(p) for p in got[-4:]] == [ctypes.c_int64, ctypes.c_double, ctypes.c_float, ctypes.c_int32]


class _NumbaArrayLike:
    """What `flatten` reads of a numba device array, over a NumPy array (no GPU needed)."""

    def __init__(self, a):
        import ctypes
        import types

        self.shape, self.strides, self.size, self.dtype = a.shape, a.strides, a.size, a.dtype
        self.device_ctypes_pointer = ctypes.c_void_p(a.ctypes.data)
        self.gpu_data = types.SimpleNamespace()


def test_flatten_lays_numba_arrays_out_as_numba_does():
    """A numba device array: numba passes its own strides (its layout's strides_in_bytes), also
    for a C-contiguous one and a view."""
    c = np.zeros((2, 3))
    view = np.zeros((6, 10))[:, ::3]
    zero_d = np.zeros(())
    got = fastlaunch.flatten((fastlaunch._NUMBA_ARRAY,) * 3, [_NumbaArrayLike(a) for a in (c, view, zero_d)])
    assert got == [0, 0, 6, 8, c.ctypes.data, 2, 3, 24, 8,
                   0, 0, 24, 8, view.ctypes.data, 6, 4, 80, 24,
                   0, 0, 1, 8, zero_d.ctypes.data]


@cuda.jit
def _mix(a, b, c, d, e, n, x, flag, x32, n32, out):
    """out[i] = a function of every argument's element i (or value), so that a wrong pointer,
    stride, shape or scalar changes the result."""
    i = cuda.grid(1)
    if i < out.shape[0]:
        v = a[i] + 2.0 * b[i % b.shape[0], i % b.shape[1]] + 3.0 * c[i % c.shape[0], i % c.shape[1]]
        v += 5.0 * d[i % d.shape[0], i % d.shape[1]] + 7.0 * e[()] + n * x + 11.0 * x32 + 13.0 * n32
        if flag:
            v = -v
        out[i] = v + 0.001 * (b.shape[0] + 10 * c.shape[1] + 100 * d.strides[1] + 1000 * c.strides[0])


@pytest.mark.skipif(not REAL_GPU, reason="needs a GPU (NUMDP_TEST_REAL_GPU=1): tools/gpu_check.sh runs it")
def test_fast_launches_equal_numbas_on_a_gpu():
    import cupy

    from numdp.backend import get_backend

    get_backend("cuda")
    rng = np.random.default_rng(3)
    a = cupy.asarray(rng.normal(size=37))
    b = cupy.asarray(rng.integers(-9, 9, size=(5, 6)).astype(np.int32))   # C-contiguous 2-d
    c = cupy.asarray(rng.normal(size=(6, 10)))[:, ::3]                       # strided view
    d = cupy.asfortranarray(cupy.asarray(rng.normal(size=(4, 7))))            # F-contiguous
    e = cupy.asarray(np.float64(0.25))                                        # 0-d
    args = [a, b, c, d, e, 3, 1.5, True, np.float32(0.5), np.int32(-4)]

    def run():
        out = cupy.zeros(37)
        _mix[1, 64](*args, out)
        return out.get()

    fastlaunch.uninstall()
    ref = run()
    ref_false = None
    try:
        assert fastlaunch.install()
        fastlaunch.COUNT = True
        fastlaunch.STATS.update(fast=0, numba=0)
        first = run()    # numba's path: compiles, launches, caches the signature
        second = run()   # the cached path
        args[7] = False
        fast_false = run()
        fastlaunch.uninstall()
        ref_false = run()
    finally:
        fastlaunch.COUNT = False
        fastlaunch.install()
    assert fastlaunch.STATS["numba"] == 1 and fastlaunch.STATS["fast"] == 2, fastlaunch.STATS
    assert np.array_equal(first, ref) and np.array_equal(second, ref)
    assert np.array_equal(fast_false, ref_false) and not np.array_equal(fast_false, ref)


@pytest.mark.skipif(not REAL_GPU, reason="needs a GPU (NUMDP_TEST_REAL_GPU=1): tools/gpu_check.sh runs it")
def test_fast_launches_over_numba_arrays_equal_numbas_on_a_gpu():
    """The same kernel over numba device arrays (C-contiguous, a strided slice, Fortran order, 0-d)
    and a CuPy array mixed: the cached path gives numba's results."""
    import cupy

    from numdp.backend import get_backend

    get_backend("cuda")
    rng = np.random.default_rng(4)
    a = cuda.to_device(rng.normal(size=37))
    b = cuda.to_device(rng.integers(-9, 9, size=(5, 6)).astype(np.int32))
    c = cuda.to_device(rng.normal(size=(6, 10)))[:, ::3]
    d = cupy.asfortranarray(cupy.asarray(rng.normal(size=(4, 7))))
    e = cuda.to_device(np.float64(0.5).reshape(()))
    f = cuda.to_device(np.asfortranarray(rng.normal(size=(4, 7))))
    args = [a, b, c, d, e, 3, 1.5, True, np.float32(0.5), np.int32(-4)]

    def run(d_arg):
        args[3] = d_arg
        out = cuda.device_array(37)
        _mix[1, 64](*args, out)
        return out.copy_to_host()

    fastlaunch.uninstall()
    ref = [run(d), run(f)]
    try:
        assert fastlaunch.install()
        fastlaunch.COUNT = True
        fastlaunch.STATS.update(fast=0, numba=0)
        got = [run(d), run(d), run(f), run(f)]   # each signature: numba's path once, then the cache
    finally:
        fastlaunch.COUNT = False
    assert fastlaunch.STATS["numba"] == 2 and fastlaunch.STATS["fast"] == 2, fastlaunch.STATS
    assert all(np.array_equal(g, r) for g, r in zip(got, [ref[0], ref[0], ref[1], ref[1]]))


@pytest.mark.skipif(not REAL_GPU, reason="needs a GPU (NUMDP_TEST_REAL_GPU=1): tools/gpu_check.sh runs it")
def test_launching_on_leaves_numbas_cached_launch_configuration_alone():
    """numba-cuda caches one launch configuration per kernel and grid (`configure` is an
    lru_cache): a launch inside `launching_on` goes to the block's stream, and the kernel's later
    launches go where they did before (the block's stream was once left in the configuration, so
    they went to a CUDA graph's stream after the graph was gone)."""
    import cupy

    from numdp.backend import get_backend

    get_backend("cuda")
    assert fastlaunch.install()
    rng = np.random.default_rng(5)
    args = [cupy.asarray(rng.normal(size=37)), cupy.zeros((5, 6), np.int32), cupy.zeros((6, 4)),
            cupy.zeros((4, 7), order="F"), cupy.asarray(np.float64(0.25)), 3, 1.5, True, np.float32(0.5),
            np.int32(-4)]
    config = _mix[1, 64]
    assert _mix[1, 64] is config   # the cache this test is about
    before = config.stream
    stream = cupy.cuda.Stream(non_blocking=True)
    for _ in range(2):   # numba's own path, then the cached one
        out = cupy.zeros(37)
        with stream, fastlaunch.launching_on(stream.ptr):
            _mix[1, 64](*args, out)
        assert config.stream == before
    stream.synchronize()
    out2 = cupy.zeros(37)
    _mix[1, 64](*args, out2)
    assert np.array_equal(out.get(), out2.get())
