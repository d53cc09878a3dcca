"""numdp's Numba kernels (CPU `@njit` and numba.cuda), every one of them under this package.

Importing it first gives Numba a cache folder it can write (numdp.numba_cache), so that a
read-only install works for a user without a writable home, and drops compiled kernels made from
other sources than these (an edited module whose functions other kernels inline)."""
from ..numba_cache import drop_stale_kernels, ensure_numba_cache

ensure_numba_cache()
drop_stale_kernels()
