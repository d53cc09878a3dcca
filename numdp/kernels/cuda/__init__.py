"""@cuda.jit kernels, the device twins of numdp.kernels.cpu (same names and argument order where
the algorithm allows).  Importing this package imports numba.cuda: only the CUDA backend does.

Launch helpers live in `launch`; the shared scalar maths is numdp.kernels.math compiled as CUDA
device functions (`launch.MATH`).  Every kernel writes each output element from exactly one
thread and sums in a fixed order: no atomics, so results are bitwise reproducible.
"""
import numpy as _np

if not hasattr(_np, "row_stack"):
    # numba-cuda 0.30.4 registers an overload of np.row_stack when it compiles its first kernel,
    # and NumPy 2.5 removed that alias of np.vstack: without it no kernel compiles on a GPU
    _np.row_stack = _np.vstack

from . import descriptor, embedding, envmat, forces, gemm, launch, layers, tabulated  # noqa: E402,F401

__all__ = ["descriptor", "embedding", "envmat", "forces", "gemm", "launch", "layers", "tabulated"]
