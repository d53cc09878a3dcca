"""The backend seam: one small interface that the evaluators call, with a CPU and a CUDA side.

    be = get_backend("cpu" | "cuda")
    a_dev = be.to_device(a); be.matmul(x, w, half=...); be.to_host(a_dev); be.xp.zeros(...)

- cpu:  NumPy arrays, BLAS products, the @njit kernels of numdp.kernels.cpu.
- cuda: CuPy arrays and cuBLAS products on a GPU, the @cuda.jit kernels of numdp.kernels.cuda;
        under Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1, no GPU needed) NumPy stands in for
        CuPy and the kernels run, one thread at a time, in Python.

Asking for "cuda" when it cannot run raises a one-line InputError (no numba-cuda, no GPU, no
CuPy).  The CPU backend never imports numba.cuda.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Protocol

import numpy as np

from ..errors import InputError

DEVICES = ("cpu", "cuda")
INSTALL_HINT = "pip install 'numdp[cuda]'"


class Backend(Protocol):
    """What an evaluator needs from a device."""

    name: str            # "cpu" or "cuda"
    xp: ModuleType       # array module: numpy or cupy
    kernels: ModuleType  # the kernel package: numdp.kernels.cpu or numdp.kernels.cuda
    simulator: bool      # CUDA kernels run in Numba's simulator

    def to_device(self, a, dtype=None): ...
    def to_host(self, a) -> np.ndarray: ...
    def matmul(self, a, b, out=None, half: bool = False): ...


def round_half_operand(xp, a):
    """a's values rounded to float16 and held in float32 (the emulation of FP16 operands)."""
    return a.astype(xp.float16).astype(xp.float32)


@dataclass(frozen=True)
class CPUBackend:
    """NumPy arrays, BLAS products, numdp.kernels.cpu."""

    name: str = "cpu"
    simulator: bool = False

    @property
    def xp(self):
        return np

    @property
    def kernels(self):
        """numdp.kernels.cpu with the evaluator's kernel modules imported (descriptor, envmat,
        layers, tabulated: the twins of numdp.kernels.cuda's)."""
        from ..kernels import cpu
        from ..kernels.cpu import descriptor, envmat, layers, tabulated  # noqa: F401

        return cpu

    def to_device(self, a, dtype=None):
        return np.ascontiguousarray(a, dtype=dtype)

    def to_host(self, a):
        return np.asarray(a)

    def matmul(self, a, b, out=None, half=False):
        """a @ b; with half, both operands rounded to float16 and the product formed in float32."""
        if half:
            a = round_half_operand(np, a)
            b = round_half_operand(np, b)
        return np.matmul(a, b, out=out)


@dataclass(frozen=True)
class CUDABackend:
    """CuPy arrays and cuBLAS on a GPU; NumPy under the simulator; numdp.kernels.cuda.

    kernel_products: `matmul` through numdp.kernels.cuda.gemm instead of cuBLAS (NumPy under the
    simulator), for a force call captured in a CUDA graph (numdp.md.device_graph), where CuPy
    refuses cuBLAS calls."""

    name: str = "cuda"
    simulator: bool = False
    kernel_products: bool = False

    @property
    def xp(self):
        if self.simulator:
            return np
        import cupy

        return cupy

    @property
    def kernels(self):
        from ..kernels import cuda

        return cuda

    def to_device(self, a, dtype=None):
        if self.simulator:
            return np.ascontiguousarray(a, dtype=dtype)
        import cupy

        return cupy.ascontiguousarray(cupy.asarray(a, dtype=dtype))

    def to_host(self, a):
        """A host (NumPy) copy of a CuPy array, a numba device array or a host array."""
        if self.simulator or isinstance(a, np.ndarray):
            return np.asarray(a)
        if hasattr(a, "copy_to_host"):   # numba.cuda device array
            return a.copy_to_host()
        return a.get()

    def matmul(self, a, b, out=None, half=False):
        """a @ b of 2-D arrays.

        double / float32: a plain product of the operands' dtype (cuBLAS on a GPU; CuPy's default
        float32 path, not TF32, unless the user sets CUPY_TF32=1).  half: FP16 operands with FP32
        accumulation and an FP32 result: cublasGemmEx (CUDA_R_16F inputs, CUDA_R_32F output,
        CUBLAS_COMPUTE_32F) on a GPU; under the simulator the operands are rounded to float16
        and multiplied in float32, which is the same arithmetic up to the summation order.
        """
        xp = self.xp
        if self.kernel_products:
            return _kernel_product(self, a, b, out, half)
        if not half:
            return xp.matmul(a, b, out=out)
        if self.simulator:
            return np.matmul(round_half_operand(np, a), round_half_operand(np, b), out=out)
        return _gemm_half(a, b, out)


def _kernel_product(be: "CUDABackend", a, b, out, half: bool):
    """`CUDABackend.matmul` through numdp.kernels.cuda.gemm: with half, the operands rounded to
    float16 (held in float32) and multiplied in float32, as the simulator emulates MIX-16."""
    xp = be.xp
    if half:
        a = round_half_operand(xp, a)
        b = round_half_operand(xp, b)
    n, k = a.shape[0], b.shape[1]
    if out is None:
        out = xp.empty((n, k), np.result_type(a.dtype, b.dtype))
    if n and k:
        gemm = be.kernels.gemm
        grid, block = gemm.launch_dims(n, k)
        gemm.gemm_for(out.dtype)[grid, block](a, b, out)
    return out


# cuBLAS / CUDA enum values (part of their ABI): cudaDataType CUDA_R_16F, CUDA_R_32F;
# cublasComputeType_t CUBLAS_COMPUTE_32F (FP32 accumulation, no TF32, no FP16 reduction);
# cublasGemmAlgo_t CUBLAS_GEMM_DEFAULT_TENSOR_OP; cublasOperation_t CUBLAS_OP_N
_CUDA_R_16F, _CUDA_R_32F, _COMPUTE_32F, _GEMM_DEFAULT_TENSOR_OP, _OP_N = 2, 0, 68, 99, 0


def _gemm_half(a, b, out):
    """out (n, k) float32 = a (n, m) @ b (m, k) with float16 operands, FP32 accumulation (GPU)."""
    import cupy
    from cupy.cuda import device

    try:
        from cupy_backends.cuda.libs import cublas
    except ImportError:  # pragma: no cover - older CuPy layout
        from cupy.cuda import cublas

    a16 = cupy.ascontiguousarray(a, dtype=cupy.float16)
    b16 = cupy.ascontiguousarray(b, dtype=cupy.float16)
    n, m = a16.shape
    k = b16.shape[1]
    if out is None:
        out = cupy.empty((n, k), cupy.float32)
    one = np.array(1.0, np.float32)
    zero = np.array(0.0, np.float32)
    # row-major C = A B is column-major Cᵀ = Bᵀ Aᵀ: (k x n) = (k x m)(m x n)
    cublas.gemmEx(device.get_cublas_handle(), _OP_N, _OP_N, k, n, m,
                  one.ctypes.data, b16.data.ptr, _CUDA_R_16F, k, a16.data.ptr, _CUDA_R_16F, m,
                  zero.ctypes.data, out.data.ptr, _CUDA_R_32F, k, _COMPUTE_32F, _GEMM_DEFAULT_TENSOR_OP)
    return out


_CACHE: dict = {}


_RETAINING: list[list] = []   # the lists of `retaining` blocks that are open, innermost last


@contextlib.contextmanager
def retaining(keep: list) -> Iterator[list]:
    """Within the block, every array a `DeviceConstants` hands out is also appended to `keep`.
    A captured CUDA graph reads its arrays by address at every replay: the graph keeps this list,
    so a cache that drops an array cannot free memory the graph still reads."""
    _RETAINING.append(keep)
    try:
        yield keep
    finally:
        _RETAINING.remove(keep)


class DeviceConstants:
    """Device copies of small host arrays that kernels only read (per-call constants: sel and its
    offsets, the atoms of a chunk), made once per key by `make` and all dropped when `limit` keys
    are held (a run keeps a few; a long series of different systems would otherwise grow it)."""

    def __init__(self, limit: int = 64):
        self.limit = limit
        self._held: dict = {}

    def get(self, key: Hashable, make: Callable[[], object]):
        if key not in self._held:
            if len(self._held) >= self.limit:
                self._held.clear()
            self._held[key] = make()
        value = self._held[key]
        for keep in _RETAINING:
            keep.append(value)
        return value

    def __len__(self) -> int:
        return len(self._held)


def cuda_simulator_enabled() -> bool:
    """NUMBA_ENABLE_CUDASIM as Numba read it at import."""
    from numba import config

    return bool(getattr(config, "ENABLE_CUDASIM", 0))


def get_backend(device: str = "cpu") -> Backend:
    """The backend for `device` ("cpu" or "cuda"); InputError (one line) when it cannot run."""
    device = str(device).lower()
    if device in _CACHE:
        return _CACHE[device]
    if device == "cpu":
        be = CPUBackend()
    elif device == "cuda":
        be = _cuda_backend()
    else:
        raise InputError(f"device '{device}' is not one of {', '.join(DEVICES)}")
    _CACHE[device] = be
    return be


def _cuda_backend() -> CUDABackend:
    if importlib.util.find_spec("numba_cuda") is None:
        raise InputError(f"device 'cuda' needs the numba-cuda package, which is not installed: {INSTALL_HINT}")
    if cuda_simulator_enabled():
        return CUDABackend(simulator=True)
    try:
        from numba import cuda

        ok = cuda.is_available()
    except Exception:  # noqa: BLE001 - any driver failure means "no usable GPU"
        ok = False
    if not ok:
        raise InputError("device 'cuda': no usable NVIDIA GPU or CUDA driver found "
                         "(set NUMBA_ENABLE_CUDASIM=1 to run the CUDA kernels in Numba's simulator)")
    if importlib.util.find_spec("cupy") is None:
        raise InputError(f"device 'cuda' needs CuPy, which is not installed: {INSTALL_HINT}")
    if one_stream(os.environ):
        from numba.cuda.core import config as cuda_config   # numba-cuda's settings (>= 0.30)

        cuda_config.CUDA_ARRAY_INTERFACE_SYNC = False
    from ..kernels.cuda import fastlaunch

    if fastlaunch.enabled():
        fastlaunch.install()   # ~18 µs of host time per CuPy argument of a launch saved
    from ..kernels.cuda import numba_pool

    if numba_pool.enabled():   # experimental: numba's allocations from CuPy's pool
        numba_pool.install()
    return CUDABackend(simulator=False)


def one_stream(environ: Mapping[str, str]) -> bool:
    """Whether CuPy's operations and numba.cuda's launches share one stream (CUDA's legacy default
    stream: neither library was asked for per-thread default streams), so that numba.cuda may skip
    the synchronisation it otherwise makes for each CuPy array handed to a kernel.

    CuPy names its current stream in each array's __cuda_array_interface__, and numba.cuda by
    default waits for that stream to drain before every launch, once per array argument: the
    host then never runs ahead of the device.  On one stream the launch order alone orders the
    work, so numdp turns the wait off (numba's CUDA_ARRAY_INTERFACE_SYNC) when the CUDA backend
    starts, unless the user set NUMBA_CUDA_ARRAY_INTERFACE_SYNC (which then decides)."""
    if "NUMBA_CUDA_ARRAY_INTERFACE_SYNC" in environ:
        return False
    return all(environ.get(k, "0").strip() in ("", "0") for k in
               ("NUMBA_CUDA_PER_THREAD_DEFAULT_STREAM", "CUPY_CUDA_PER_THREAD_DEFAULT_STREAM"))
