"""Control of the thread count of the OpenBLAS libraries that NumPy and SciPy bundle, at run time.

numdp parallelises over chunks of atoms with its own worker threads, each calling BLAS on
modest matrices; a multi-threaded BLAS underneath would oversubscribe the cores.  NumPy and
SciPy wheels each bundle their own OpenBLAS (scipy_openblas64_ and scipy_openblas: two thread
pools in one process) without a public setter, so the symbols are looked up with ctypes.  SciPy's
is reached once scipy.linalg (the caller's, or ASE's cell filters') has loaded it: numdp never
loads a library itself.  OPENBLAS_NUM_THREADS, set before either is loaded, limits
both from the start.
"""
from __future__ import annotations

import ctypes
import functools
import glob
import os
import sys

import numpy  # noqa: F401  (its OpenBLAS is found through sys.modules)

_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
            "openblas_set_num_threads64_", "openblas_set_num_threads")
_GETTERS = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
            "openblas_get_num_threads64_", "openblas_get_num_threads")

_BUNDLED = {name: (f"../{name}.libs/*openblas*.so*", ".libs/*openblas*.so*", f"../{name}.libs/*openblas*.dylib")
            for name in ("numpy", "scipy")}
"""Where each package's wheel keeps its OpenBLAS, relative to the package's folder."""


@functools.lru_cache(maxsize=None)
def _paths(package: str) -> tuple[str, ...]:
    """The OpenBLAS library files bundled with the imported `package` ("numpy" or "scipy")."""
    base = os.path.dirname(sys.modules[package].__file__)
    return tuple(path for pattern in _BUNDLED[package] for path in sorted(glob.glob(os.path.join(base, pattern))))


_FOUND: dict[tuple[str, tuple[str, ...]], object] = {}
"""{(library file, names): its first function of names, or None}, for each library seen loaded."""


def _find(package: str, names: tuple[str, ...]) -> list:
    """The first function of `names` in each OpenBLAS bundled with `package` that the process has
    loaded (never loading one: SciPy's is loaded by scipy.linalg, maybe after numdp's first call,
    so a library not loaded yet is looked at again at the next call, ~1 us)."""
    found = []
    for path in _paths(package):
        fn = _FOUND.get((path, names), _FOUND)
        if fn is _FOUND:
            try:   # a handle only to a library already loaded (the package's own)
                lib = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0) | ctypes.RTLD_LOCAL)
            except OSError:
                continue
            fn = _FOUND[(path, names)] = next((getattr(lib, n) for n in names if hasattr(lib, n)), None)
        if fn is not None:
            found.append(fn)
    return found


def _imported() -> list[str]:
    """NumPy, and SciPy when something has imported it (checked at every call: ~0.1 us)."""
    return [p for p in _BUNDLED if p in sys.modules and getattr(sys.modules[p], "__file__", None)]


def set_blas_threads(n: int) -> bool:
    """Set the thread count of NumPy's OpenBLAS and, once SciPy is imported, of SciPy's; return
    False when no OpenBLAS setter was found."""
    fns = [fn for p in _imported() for fn in _find(p, _SETTERS)]
    for fn in fns:
        fn(ctypes.c_int(int(n)))
    return bool(fns)


def get_blas_threads() -> int | None:
    """NumPy's OpenBLAS thread count, or None when unknown."""
    fns = _find("numpy", _GETTERS)
    if not fns:
        return None
    fns[0].restype = ctypes.c_int
    return int(fns[0]())
