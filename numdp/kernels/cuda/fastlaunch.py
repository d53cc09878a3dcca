"""A shorter host path for numba.cuda kernel launches over CuPy arrays (GPU only).

Measured on an NVIDIA H200 (tools/bench_launch.py, docs/gpu.md "Launch cost"): numba-cuda 0.30
spends ~18 µs of host time per CuPy array argument of a launch (it types the array from its
__cuda_array_interface__, then imports it again through DLPack to read its pointer) against
~4 µs for its own device arrays and ~12 µs for a launch without arguments: numdp's kernels take
10-20 arrays, so each launch cost ~200 µs of host time, whatever the work.  numba's own device
arrays (the neighbour search's, numdp.neighbor.device) cost 46-57 µs for 8 of them: they take the
cached path too.

`install()` wraps numba-cuda's `CUDADispatcher.call` (the method every `kernel[grid, block](...)`
ends in) with a cache: per kernel and per argument signature (for a CuPy array or a numba device
array its dtype, number of dimensions and contiguity, which is all numba's typing of it looks at;
for a scalar its Python type) it keeps the compiled function and the Numba type of each
argument, found by numba's own path at the first launch of that signature.  Later launches of that signature flatten the
arguments exactly as numba does (an array: meminfo 0, parent 0, size, itemsize, pointer, shape,
strides in bytes; a scalar: its ctypes value) and launch through cuda.core directly.  Anything
else (a host array argument, a tuple, a debug or cooperative kernel, a kernel with
argument extensions or launch callbacks, a launch-configuration-specialised kernel) takes numba's
own path unchanged.  The kernel runs with the same bytes of arguments either way: the CUDA tests
on a GPU run through this path and tests/test_cuda_fastlaunch.py compares it with numba's.

Not installed under the simulator (its kernels are Python), nor when NUMDP_CUDA_FAST_LAUNCH=0.
One GPU per process (numdp binds one per MPI rank): the compiled function is kept for the
context current at its first launch.
"""
from __future__ import annotations

import contextlib
import ctypes
import enum
import os

import numpy as np


class _Kind(enum.Enum):
    """How `flatten` passes an argument (other scalars: their ctypes type)."""
    C_ARRAY = "C-contiguous array"   # the canonical strides of its shape
    ARRAY = "array"                  # its own strides
    NUMBA_ARRAY = "numba device array"   # its pointer, shape and strides as numba reads them
    BOOL = "bool"


_C_ARRAY = _Kind.C_ARRAY
_ARRAY = _Kind.ARRAY
_NUMBA_ARRAY = _Kind.NUMBA_ARRAY
_CTYPES = {"int8": ctypes.c_int8, "int16": ctypes.c_int16, "int32": ctypes.c_int32,
           "int64": ctypes.c_int64, "uint8": ctypes.c_uint8, "uint16": ctypes.c_uint16,
           "uint32": ctypes.c_uint32, "uint64": ctypes.c_uint64, "float64": ctypes.c_double,
           "float32": ctypes.c_float}
_BOOL = _Kind.BOOL
_SCALARS = (int, float, bool)

STATS = {"fast": 0, "numba": 0}
"""Launches taken by each path since `install()` (counted only while `COUNT` is true)."""
COUNT = False


def enabled(environ=os.environ) -> bool:
    """Whether the CUDA backend installs the fast path (NUMDP_CUDA_FAST_LAUNCH, default on)."""
    return environ.get("NUMDP_CUDA_FAST_LAUNCH", "1").strip().lower() not in ("0", "false", "no", "off")


_INSTALLED: list = []   # the wrapper while installed (whatever was patched over it since)


def install() -> bool:
    """Wrap numba-cuda's CUDADispatcher.call with the cached path.  Idempotent, also when another
    wrapper was put over it since (numdp.kernels.cuda.opcount counts launches by wrapping `call`
    and installs this path first, so that it counts the launches numdp makes and restores this
    path when it stops).  False, with numba's path left alone, when this numba-cuda lacks what
    the fast path relies on."""
    if _INSTALLED:
        return True
    try:
        from cuda.core import LaunchConfig, launch
        from numba.cuda import dispatcher as nd
        from numba.cuda._compat import CUDA_CORE_GE_1_0
        from numba.cuda.cudadrv.devicearray import DeviceNDArray
        import cupy
    except ImportError:
        return False
    original = nd.CUDADispatcher.call
    ndarray = cupy.ndarray
    coop = "is_cooperative" if CUDA_CORE_GE_1_0 else "cooperative_launch"
    configs: dict = {}

    def key_of(args):
        """A hashable argument signature, or None when an argument is not a CuPy array, a numba
        device array or a plain scalar."""
        key = []
        for a in args:
            t = type(a)
            if t is ndarray:
                flags = a.flags
                key.append((a.dtype, a.ndim, flags.c_contiguous, flags.f_contiguous))
            elif t is DeviceNDArray:   # numba types it by the same three things (_numba_type_)
                key.append((t, a.dtype, a.ndim, a.is_c_contiguous(), a.is_f_contiguous()))
            elif t in _SCALARS or isinstance(a, np.generic):
                key.append(t)
            else:
                return None
        return tuple(key)

    def entry_for(dispatcher, args):
        """(kernel handle, per-argument kinds) of the overload numba chose for args, or False."""
        from numba.cuda import types

        try:
            argtypes = tuple(dispatcher.typeof_pyval(a) for a in args)
            kernel = dispatcher.overloads[argtypes]
            handle = kernel._codelibrary.get_cufunc().kernel
        except (KeyError, TypeError, AttributeError):   # not found, or another numba-cuda
            return False
        if kernel.debug or kernel.cooperative or getattr(kernel, "launch_config_sensitive", False):
            return False
        kinds = []
        for ty, a in zip(argtypes, args):
            if isinstance(ty, types.Array) and type(a) is DeviceNDArray:
                kinds.append(_NUMBA_ARRAY)
            elif isinstance(ty, types.Array):   # contiguity is part of the signature (key_of)
                kinds.append(_C_ARRAY if a.flags.c_contiguous else _ARRAY)
            elif ty == types.boolean:
                kinds.append(_BOOL)
            elif str(ty) in _CTYPES:
                kinds.append(_CTYPES[str(ty)])
            else:
                return False
        return handle, tuple(kinds)

    def call(self, args, launch_config):
        if not _STREAM:
            return _call(self, args, launch_config)
        # launching_on: this launch goes to that stream.  The configuration is put back after it:
        # numba-cuda caches one per kernel and grid (`CUDADispatcher.configure` is an lru_cache),
        # so a stream left in it would take that kernel's later launches to the block's stream
        # after the block (a captured graph's stream, destroyed with the graph)
        saved = launch_config.stream
        launch_config.stream = _STREAM[-1]
        try:
            return _call(self, args, launch_config)
        finally:
            launch_config.stream = saved

    def _call(self, args, launch_config):
        if self.extensions or launch_config.pre_launch_callbacks or self._launch_config_sensitive:
            return original(self, args, launch_config)
        key = key_of(args)
        cache = self.__dict__.setdefault("_numdp_fast_cache", {})
        entry = cache.get(key) if key is not None else False
        if not entry:
            if COUNT:
                STATS["numba"] += 1
            original(self, args, launch_config)
            if entry is None:   # first launch of this signature: numba compiled and launched it
                cache[key] = entry_for(self, args)
            return None
        handle, kinds = entry
        params = flatten(kinds, args)
        ck = (launch_config.griddim, launch_config.blockdim, launch_config.sharedmem)
        cfg = configs.get(ck)
        if cfg is None:
            cfg = configs[ck] = LaunchConfig(grid=ck[0], block=ck[1], shmem_size=ck[2], **{coop: False})
        if COUNT:
            STATS["fast"] += 1
        launch(launch_config.stream, cfg, handle, *params)
        return None

    call._numdp_fast = True
    call._numdp_original = original
    nd.CUDADispatcher.call = call
    _INSTALLED.append(call)
    return True


_STREAM: list = []   # cuda.core streams of the open `launching_on` blocks, innermost last


@contextlib.contextmanager
def launching_on(stream_ptr: int):
    """Inside the block every numba.cuda kernel launch (whatever stream it names) goes to the CUDA
    stream `stream_ptr` (e.g.
    a CuPy stream's `.ptr`, whose `with stream:` block sends CuPy's operations there too), so that
    a whole call can be captured in a CUDA graph (tools/bench_graph.py).  Needs the fast path
    installed (it is the hook); RuntimeError otherwise."""
    if not _INSTALLED:
        raise RuntimeError("fastlaunch.launching_on needs the fast launch path installed (a GPU)")
    from numba import cuda
    from numba.cuda.cudadrv import driver

    _STREAM.append(driver._to_core_stream(cuda.external_stream(stream_ptr)))
    try:
        yield
    finally:
        _STREAM.pop()


def installed() -> bool:
    return bool(_INSTALLED)


def flatten(kinds, args) -> list:
    """The kernel parameters numba passes for `args` (numba.cuda's dispatcher, _prepare_args): an
    array (CuPy's shape, strides in bytes, size, itemsize and data.ptr) as meminfo 0, parent 0,
    size, itemsize, pointer, shape..., strides... (kind _C_ARRAY, a C-contiguous array: the
    canonical C strides of its shape, as numba derives them when the array reports none; _ARRAY:
    its own), a numba device array (_NUMBA_ARRAY) the same way from its device pointer, shape and
    strides, a boolean (_BOOL) as a Python bool, any other scalar as its ctypes type."""
    params = []
    for kind, a in zip(kinds, args):
        if kind is _C_ARRAY:
            shape = a.shape
            isz = a.itemsize
            strides = []
            s = isz
            for n in reversed(shape):
                strides.append(s)
                s *= n
            strides.reverse()
            params += (0, 0, a.size, isz, a.data.ptr, *shape, *strides)
        elif kind is _ARRAY:
            params += (0, 0, a.size, a.itemsize, a.data.ptr, *a.shape, *a.strides)
        elif kind is _NUMBA_ARRAY:   # numba's strides_in_bytes of a device array are its strides
            params += (0, 0, a.size, a.dtype.itemsize, a.device_ctypes_pointer.value, *a.shape, *a.strides)
        elif kind is _BOOL:
            params.append(bool(a))
        else:
            params.append(kind(a))
    return params


def uninstall() -> None:
    """Put numba's own CUDADispatcher.call back (tests and A/B benchmarks).  Only while the fast
    path is the outermost wrapper (not inside an OpCounter's counting): RuntimeError otherwise."""
    from numba.cuda import dispatcher as nd

    if not _INSTALLED:
        return
    if nd.CUDADispatcher.call is not _INSTALLED[0]:
        raise RuntimeError("fastlaunch.uninstall: another wrapper is over the fast launch path")
    nd.CUDADispatcher.call = _INSTALLED.pop()._numdp_original
