"""How many Numba threads the (parallel) neighbour kernels use for a call."""
from __future__ import annotations

from contextlib import contextmanager

import numba

# Below this many atoms the neighbour kernels run on one thread: their work is then well under a
# millisecond.  With OpenMP workers waiting actively (the default before numdp set
# OMP_WAIT_POLICY=PASSIVE) a parallel region cost up to ~50 ms on shared cores; with passive
# waiting two threads already pay off at 1 536 atoms (2.2 against 3.0 us/atom for extend +
# build_nlist of the water box, tools/bench_neighbor.py).
SERIAL_NEIGHBOR_BELOW = 1024


@contextmanager
def kernel_threads(natoms: int, max_threads: int | None = None):
    """Numba threads for the enclosed neighbour kernels: one below SERIAL_NEIGHBOR_BELOW atoms,
    else min(max_threads, the current setting)."""
    previous = numba.get_num_threads()
    wanted = 1 if natoms < SERIAL_NEIGHBOR_BELOW else min(previous, max_threads or previous)
    if wanted == previous:
        yield
        return
    numba.set_num_threads(wanted)
    try:
        yield
    finally:
        numba.set_num_threads(previous)
