"""Control of the BLAS thread count of NumPy's OpenBLAS at run time.

numdp parallelises over chunks of atoms with its own worker threads, each calling BLAS on
modest matrices; a multi-threaded BLAS underneath would oversubscribe the cores.  NumPy wheels
bundle OpenBLAS without a public setter, so the symbol is looked up with ctypes.
"""
from __future__ import annotations

import ctypes
import functools
import glob
import os

import numpy as np

_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
            "openblas_set_num_threads64_", "openblas_set_num_threads")
_GETTERS = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
            "openblas_get_num_threads64_", "openblas_get_num_threads")


def _libraries():
    base = os.path.dirname(np.__file__)
    for pattern in ("../numpy.libs/*openblas*.so*", ".libs/*openblas*.so*", "../numpy.libs/*openblas*.dylib"):
        for path in sorted(glob.glob(os.path.join(base, pattern))):
            try:
                yield ctypes.CDLL(path)
            except OSError:
                continue


@functools.lru_cache(maxsize=None)
def _find(names):
    for lib in _libraries():
        for name in names:
            fn = getattr(lib, name, None)
            if fn is not None:
                return fn
    return None


def set_blas_threads(n: int) -> bool:
    """Set NumPy's OpenBLAS thread count; return False when no OpenBLAS setter was found."""
    fn = _find(_SETTERS)
    if fn is None:
        return False
    fn(ctypes.c_int(int(n)))
    return True


def get_blas_threads() -> int | None:
    """NumPy's OpenBLAS thread count, or None when unknown."""
    fn = _find(_GETTERS)
    if fn is None:
        return None
    fn.restype = ctypes.c_int
    return int(fn())
