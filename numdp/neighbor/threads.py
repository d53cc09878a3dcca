"""How many Numba threads the (parallel) neighbour kernels use for a call, and whether they can
run in this process at all (a process forked after Numba's GNU OpenMP threads ran cannot)."""
from __future__ import annotations

import os
import threading
import weakref
from contextlib import contextmanager, nullcontext
from typing import Callable

import numba

from ..errors import InputError

# Below this many atoms the neighbour kernels run on one thread: their work is then well under a
# millisecond.  With OpenMP workers waiting actively (the default before numdp set
# OMP_WAIT_POLICY=PASSIVE) a parallel region cost up to ~50 ms on shared cores; with passive
# waiting two threads already pay off at 1 536 atoms (2.2 against 3.0 us/atom for extend +
# build_nlist of the water box, tools/bench_neighbor.py).
SERIAL_NEIGHBOR_BELOW = 1024


def _numba_gnu_openmp_started() -> bool:
    """Whether this process has started Numba's threading layer and it is GNU OpenMP (which a
    forked child cannot use: Numba terminates the child at its first parallel kernel)."""
    try:
        from numba.np.ufunc import parallel

        if not parallel._is_initialized:   # (Numba has no public "started" query)
            return False
        if numba.threading_layer() != "omp":
            return False
        from numba.np.ufunc import omppool

        return getattr(omppool, "openmp_vendor", "GNU") == "GNU"
    except (ImportError, AttributeError, ValueError):
        return False


_FORKED_AFTER_GNU_OPENMP = False

_ONE_CALLER = threading.RLock()
"""Held around the neighbour kernels where Numba's threading layer is `workqueue`, which aborts
the process when two threads launch parallel kernels at once (it is not thread-safe)."""

_SERIALISE: bool | None = None
"""Whether `one_launcher` takes _ONE_CALLER (the layer is `workqueue`), known from its first
call on: Numba picks its threading layer once per process, at the first launch, and a forked
child keeps its parent's."""


def orphaned_lock(lock) -> bool:
    """In a child process just forked (an os.register_at_fork after_in_child hook): whether
    `lock` (a threading.Lock or RLock) was held in the parent by a thread other than the forking
    one.  That thread does not exist in the child and can never release it, so the lock is made
    free in place (`_at_fork_reinit`, as the standard library does with its own locks), and True
    tells the owner that what the lock guarded may be half-updated.  An RLock held by the forking
    thread itself stays held (that thread goes on in the child and releases it)."""
    if lock.acquire(blocking=False):
        lock.release()
        return False
    lock._at_fork_reinit()
    return True


_FREED_AT_FORK: "weakref.WeakKeyDictionary[object, tuple]" = weakref.WeakKeyDictionary()
"""owner -> (its lock, on_orphaned or None): `free_at_fork`'s registrations."""


def free_at_fork(owner, lock, on_orphaned: Callable[[object], None] | None = None) -> None:
    """In every child forked from this process from now on, `lock` (owner's threading.Lock or
    RLock) is made free where another thread of the parent held it (`orphaned_lock`), and then
    on_orphaned(owner) is called (to mark what the lock guarded as possibly half-updated).
    `owner` is held by a weak reference (the registration ends with it), so on_orphaned must not
    hold it either: pass a function of the owner (e.g. `Class.method`), not a bound method."""
    _FREED_AT_FORK[owner] = (lock, on_orphaned)


def _after_fork_in_child() -> None:
    """The one at-fork hook of numdp: the layer check, _ONE_CALLER and `free_at_fork`'s locks."""
    global _FORKED_AFTER_GNU_OPENMP
    _FORKED_AFTER_GNU_OPENMP = _FORKED_AFTER_GNU_OPENMP or _numba_gnu_openmp_started()
    orphaned_lock(_ONE_CALLER)   # (it guards no data: only Numba's launches)
    for owner, (lock, on_orphaned) in list(_FREED_AT_FORK.items()):
        if orphaned_lock(lock) and on_orphaned is not None:
            on_orphaned(owner)


os.register_at_fork(after_in_child=_after_fork_in_child)


def fork_unsafe_threads() -> bool:
    """True in a process forked after its parent ran Numba's GNU OpenMP threads: the neighbour
    kernels cannot run here (`kernel_threads` raises InputError; `DPModel.compute` on given
    neighbour lists works)."""
    return _FORKED_AFTER_GNU_OPENMP


def check_fork_safe() -> None:
    """InputError instead of Numba terminating this process (SIGTERM; a multiprocessing 'fork'
    pool then waits for ever) at the first parallel neighbour kernel of a forked child."""
    if _FORKED_AFTER_GNU_OPENMP:
        raise InputError("numdp cannot evaluate in a process forked after it has run (Numba's GNU "
                         "OpenMP threads do not survive fork): start worker processes with "
                         "multiprocessing.get_context('spawn') or 'forkserver' (ProcessPoolExecutor("
                         "mp_context=...)), or fork before the first evaluation; models pickle")


@contextmanager
def kernel_threads(natoms: int, max_threads: int | None = None):
    """Numba threads for the enclosed neighbour kernels: one below SERIAL_NEIGHBOR_BELOW atoms,
    else min(max_threads, the current setting); InputError in a forked child that cannot run them
    (`check_fork_safe`)."""
    check_fork_safe()
    previous = numba.get_num_threads()
    wanted = 1 if natoms < SERIAL_NEIGHBOR_BELOW else min(previous, max_threads or previous)
    if wanted == previous:
        yield
        return
    numba.set_num_threads(wanted)   # (Numba's setting is the calling thread's own)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


_FREE = nullcontext()


def one_launcher():
    """A context held around each launch of a parallel neighbour kernel (numdp.neighbor.extend's
    and the cell list's, whoever calls them): one calling thread at a time on Numba's workqueue
    layer (`_ONE_CALLER`), free on the others.  The layer is read at the first call only."""
    global _SERIALISE
    if _SERIALISE is None:
        numba.get_num_threads()   # (starts the threading layer: threading_layer() answers)
        _SERIALISE = numba.threading_layer() == "workqueue"
    return _ONE_CALLER if _SERIALISE else _FREE
