"""numdp's Numba kernels (CPU `@njit` and numba.cuda), every one of them under this package.

Importing it first gives Numba a cache folder it can write (numdp.numba_cache), so that a
read-only install works for a user without a writable home."""
from ..numba_cache import ensure_numba_cache

ensure_numba_cache()
