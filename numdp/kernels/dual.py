"""One scalar function, two targets.

The maths that the CPU and CUDA kernels share (switching function, environment rows and their
Jacobian, polynomial pieces, key packing, ...) is written once as plain Python scalar functions
(`math` and `sqrt` from the standard library, no NumPy arrays) and compiled for each target:

    switch_cpu = cpu_inline(switch)      # @njit(inline="always"), called from @njit kernels
    switch_gpu = cuda_device(switch)     # @cuda.jit(device=True), called from @cuda.jit kernels

`cuda_device` imports numba.cuda only when called, so the CPU path never needs the `cuda` extra.
"""
from __future__ import annotations

from numba import njit


def cpu_inline(fn):
    """`fn` compiled for the CPU and inlined into every @njit caller."""
    return njit(cache=True, nogil=True, inline="always", error_model="numpy")(fn)


def cuda_device(fn):
    """`fn` compiled as a CUDA device function (inlined by the CUDA compiler, NVVM, which inlines
    small device functions itself; numba-cuda deprecates a bool `inline`, and its string form asks
    for Numba-IR inlining, which the simulator ignores anyway)."""
    from numba import cuda

    return cuda.jit(device=True)(fn)
