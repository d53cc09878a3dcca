"""How many Numba threads the (parallel) neighbour kernels use for a call."""
from __future__ import annotations

from contextlib import contextmanager

import numba

# Below this many atoms the neighbour kernels run on one thread: their work is then well under a
# millisecond, while waking a parallel region was measured to cost up to ~50 ms when the cores are
# shared with other processes.
SERIAL_NEIGHBOR_BELOW = 2048


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
