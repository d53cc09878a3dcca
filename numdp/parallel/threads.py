"""Threads per MPI rank, so that ranks x threads does not oversubscribe the cores.

Order of precedence: [model] threads in the input, then NUMDP_NUM_THREADS, then NUMBA_NUM_THREADS,
then the cores this rank may use divided among the ranks that share them: when the launcher bound
each rank to its own cores (different affinity masks on one node) a rank uses its own cores; when
the ranks of a node share one mask they split it evenly (at least one thread each).  A container's
CPU limit (`docker run --cpus 4`: the cgroup CPU bandwidth quota) caps the usable cores: the
affinity mask there still lists every core of the host.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

from .world import World

THREAD_VARS = ("NUMDP_NUM_THREADS", "NUMBA_NUM_THREADS")
CGROUP = Path("/sys/fs/cgroup")


def _affinity() -> frozenset:
    try:
        return frozenset(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return frozenset(range(os.cpu_count() or 1))


def cpu_quota(root: Path = CGROUP) -> float | None:
    """CPUs granted by the cgroup CPU bandwidth limit, or None when there is none (or it cannot be
    read): cgroup v2 `cpu.max` ("QUOTA PERIOD", "max PERIOD" for none), else cgroup v1
    `cpu/cpu.cfs_quota_us` over `cpu/cpu.cfs_period_us` (quota -1 for none)."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def usable_cores(mask_size: int, quota: float | None) -> int:
    """Cores a process may keep busy: its affinity mask's size, capped by a cgroup CPU quota
    (rounded up: a quota of 2.5 CPUs keeps 3 threads busy most of the time)."""
    if quota is None:
        return mask_size
    return max(1, min(mask_size, math.ceil(quota - 1e-9)))


def _env_threads(var: str, text: str) -> int:
    """The thread count an environment variable gives; InputError unless a whole number >= 1."""
    from ..errors import InputError

    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise InputError(f"{var}={text!r}: expected a whole number of threads >= 1")
    return n


def thread_count(requested: int | None = None, environ=None, cores: int | None = None,
                 sharing: int = 1) -> tuple[int, str]:
    """(threads, where the number comes from), by numdp's one order of precedence.

    requested ([model] threads or a --threads option) wins, then NUMDP_NUM_THREADS, then
    NUMBA_NUM_THREADS, then `cores` (default: the cores this process may use) divided among the
    `sharing` processes that use them (at least one thread).
    """
    env = os.environ if environ is None else environ
    if requested:
        return int(requested), "[model] threads or --threads"
    for var in THREAD_VARS:
        text = env.get(var, "").strip()
        if text:
            return _env_threads(var, text), var
    cores = usable_cores(len(_affinity()), cpu_quota()) if cores is None else cores
    return max(1, cores // sharing), f"{cores} usable cores shared by {sharing} rank(s)"


def default_threads() -> int:
    """Worker threads of one process when none are requested (see `thread_count`)."""
    return thread_count()[0]


def threads_per_rank(requested: int | None, world: World, environ=None) -> tuple[int, str]:
    """(threads, where the number comes from) for this rank.  Collective (all ranks call it)."""
    cores = _affinity()
    sharing = 1
    if world.size > 1:
        from mpi4py import MPI

        node = world.comm.Split_type(MPI.COMM_TYPE_SHARED)
        try:
            masks = node.allgather(cores)
        finally:
            node.Free()
        sharing = sum(1 for m in masks if m & cores)
    return thread_count(requested, environ, usable_cores(len(cores), cpu_quota()), sharing)


def apply_threads(n: int) -> int:
    """Set Numba's thread count to n (capped by NUMBA_NUM_THREADS at import); returns the count set."""
    import numba

    n = max(1, min(int(n), int(numba.config.NUMBA_NUM_THREADS)))
    numba.set_num_threads(n)
    return n
