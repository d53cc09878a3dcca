"""The ranks of a run: who I am, global reductions (`*_global`), buffer exchange and agreement.

`World` wraps an mpi4py communicator; a run on one rank needs no MPI at all (`World(None)`), and
every method then reduces to the identity or a local copy, so the serial run is the parallel
run with one rank.  All transfers are of NumPy buffers (upper-case mpi4py calls); only small
metadata (an error message, the run's global scalars at start-up) is pickled.

Global sums are made deterministic and identical on every rank: the per-rank partial values are
gathered and added in rank order (`sum_global`), so every rank takes the same decisions from
bit-identical numbers (thermostat scaling, barostat cell, rebuild test).

`World.comm_time` accumulates the seconds spent inside communication calls (reported as "Comm").

Signals outside the steps.  The MD loop agrees on SIGINT / SIGTERM (numdp.signals.StopRequest);
before it (imports, reading, the model, the first force evaluation and its compilation) and after
it the ranks are at different places, some of them waiting in a collective, so a signal cannot be
agreed on.  `create_world` therefore gives a run on several ranks handlers that end every rank at
once (`abort_on_signal`): one line, status 128 + the signal's number (130, 143), as the agreed
stop, with no traceback from each rank and no rank left waiting.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import contextmanager

import numpy as np

from ..errors import InputError

# Environment variables set by MPI launchers (MPICH/Hydra, Open MPI, PMIx, MVAPICH); when one is
# present numdp was started by mpiexec / mpirun / srun and uses mpi4py.
LAUNCHER_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE")
LAUNCHER_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK")


# Seconds between printing an error and MPI_Abort, so that the launcher forwards the message.
ABORT_GRACE = 0.5
# Seconds a rank other than 0 waits before acting on a signal outside the steps: the launcher
# forwards Ctrl-C to every rank, and rank 0 then speaks (and aborts) for all of them.
SIGNAL_GRACE = 1.5


class RankFailed(Exception):
    """Another rank failed where all ranks agree on errors; that rank reports the error."""


def mark_agreed(exc: BaseException, report_here: bool) -> BaseException:
    """Mark `exc` as known to every rank: `report_here` on exactly one rank (which prints it), the
    others exit quietly with the same status.  Unmarked exceptions on several ranks abort the run."""
    exc.numdp_report = bool(report_here)
    return exc


def launched_by_mpi(environ=None) -> bool:
    """True when an MPI launcher started this process (its environment variables are set)."""
    env = os.environ if environ is None else environ
    return any(v in env for v in LAUNCHER_SIZE_VARS + LAUNCHER_RANK_VARS)


def launched_size(environ=None) -> int:
    """Number of ranks the launcher announced (1 when not launched by MPI or unknown)."""
    env = os.environ if environ is None else environ
    for v in LAUNCHER_SIZE_VARS:
        if env.get(v, "").isdigit():
            return int(env[v])
    return 1


def launched_rank(environ=None) -> int:
    """This process's rank as the launcher announced it (0 when not launched by MPI or unknown),
    read without MPI, like `launched_size`."""
    env = os.environ if environ is None else environ
    for v in LAUNCHER_RANK_VARS:
        if env.get(v, "").isdigit():
            return int(env[v])
    return 0


class World:
    """The communicator of a run.  mpi_comm: an mpi4py communicator, or None for one rank."""

    def __init__(self, mpi_comm=None):
        self.comm = mpi_comm
        self.rank = 0 if mpi_comm is None else int(mpi_comm.Get_rank())
        self.size = 1 if mpi_comm is None else int(mpi_comm.Get_size())
        self.comm_time = 0.0
        self._depth = 0

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    @contextmanager
    def timed(self):
        """Count the enclosed seconds as communication (nested uses count once)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._depth = 1
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._depth = 0
            self.comm_time += time.perf_counter() - t0

    # -- reductions ------------------------------------------------------------------------------
    def sum_global(self, value):
        """Σ over ranks of a float or a float64 array (any shape), added in rank order; the same
        bits on every rank.  One rank: the value itself."""
        if self.size == 1:
            return value
        scalar = np.ndim(value) == 0
        local = np.ascontiguousarray(value, dtype=np.float64).reshape(-1)
        parts = np.empty((self.size, local.shape[0]))
        with self.timed():
            self.comm.Allgather(local, parts)
        total = parts[0].copy()
        for r in range(1, self.size):
            total += parts[r]
        return float(total[0]) if scalar else total.reshape(np.shape(value))

    def max_global(self, value: float) -> float:
        """Largest value over ranks (exact: the same on every rank)."""
        if self.size == 1:
            return value
        from mpi4py import MPI

        out = np.empty(1)
        with self.timed():
            self.comm.Allreduce(np.array([value], dtype=np.float64), out, op=MPI.MAX)
        return float(out[0])

    def flags_global(self, flags) -> np.ndarray:
        """Element-wise maximum over ranks of a small int64 array (e.g. "any rank has a problem")."""
        local = np.ascontiguousarray(flags, dtype=np.int64)
        if self.size == 1:
            return local.copy()
        from mpi4py import MPI

        out = np.empty_like(local)
        with self.timed():
            self.comm.Allreduce(local, out, op=MPI.MAX)
        return out

    def counts_global(self, n: int) -> np.ndarray:
        """(size,) int64: `n` of every rank, on every rank."""
        if self.size == 1:
            return np.array([n], dtype=np.int64)
        out = np.empty(self.size, dtype=np.int64)
        with self.timed():
            self.comm.Allgather(np.array([n], dtype=np.int64), out)
        return out

    def bcast_object(self, obj, root: int = 0):
        """Broadcast small picklable metadata from `root`."""
        if self.size == 1:
            return obj
        with self.timed():
            return self.comm.bcast(obj, root=root)

    # -- rows of per-atom data -------------------------------------------------------------------
    def gather_rows(self, rows: np.ndarray):
        """Concatenate every rank's (n_r, m) float64 rows on rank 0 in rank order: (Σ n_r, m) on
        rank 0, None elsewhere.  The only operation that holds all atoms on one rank (output)."""
        rows = np.ascontiguousarray(rows, dtype=np.float64)
        if self.size == 1:
            return rows
        from mpi4py import MPI

        m = rows.shape[1]
        counts = np.empty(self.size, dtype=np.int64) if self.is_root else None
        with self.timed():
            self.comm.Gather(np.array([rows.shape[0]], dtype=np.int64), counts, root=0)
            if self.is_root:
                out = np.empty((int(counts.sum()), m))
                displs = np.zeros(self.size, dtype=np.int64)
                np.cumsum(counts[:-1] * m, out=displs[1:])
                self.comm.Gatherv(rows, [out, counts * m, displs, MPI.DOUBLE], root=0)
                return out
            self.comm.Gatherv(rows, None, root=0)
            return None

    def scatter_rows(self, rows, counts, m: int) -> np.ndarray:
        """Rank 0 hands out consecutive blocks of its (Σ counts, m) float64 `rows`: counts[r] rows to
        rank r.  rows and counts are read on rank 0 only; returns this rank's (counts[rank], m)."""
        if self.size == 1:
            return np.ascontiguousarray(rows, dtype=np.float64)
        from mpi4py import MPI

        with self.timed():
            mine = np.empty(1, dtype=np.int64)
            send_counts = np.ascontiguousarray(counts, dtype=np.int64) if self.is_root else None
            self.comm.Scatter(send_counts, mine, root=0)
            out = np.empty((int(mine[0]), m))
            if self.is_root:
                displs = np.zeros(self.size, dtype=np.int64)
                np.cumsum(send_counts[:-1] * m, out=displs[1:])
                buf = np.ascontiguousarray(rows, dtype=np.float64)
                self.comm.Scatterv([buf, send_counts * m, displs, MPI.DOUBLE], out, root=0)
            else:
                self.comm.Scatterv(None, out, root=0)
        return out

    def exchange_rows(self, send: np.ndarray, dest: int, source: int, tag: int) -> np.ndarray:
        """Send (n, m) float64 rows to `dest` and receive the rows that `source` sends this rank
        (count first, then data).  dest == source == rank: a copy."""
        send = np.ascontiguousarray(send, dtype=np.float64)
        if dest == self.rank and source == self.rank:
            return send.copy()
        m = send.shape[1]
        with self.timed():
            n = np.empty(1, dtype=np.int64)
            self.comm.Sendrecv(np.array([send.shape[0]], dtype=np.int64), dest, tag, n, source, tag)
            out = np.empty((int(n[0]), m))
            self.comm.Sendrecv(send, dest, tag + 1, out, source, tag + 1)
        return out

    def sendrecv(self, send: np.ndarray, dest: int, recv: np.ndarray, source: int, tag: int) -> None:
        """Send the contiguous float64 buffer `send` to `dest` while receiving `recv` (its size is
        known) from `source`; both must be C-contiguous (views of larger arrays are fine)."""
        with self.timed():
            self.comm.Sendrecv(send, dest, tag, recv, source, tag)

    # -- node, errors ----------------------------------------------------------------------------
    def local_size(self) -> int:
        """Ranks of this run on this node (shared-memory domain)."""
        if self.size == 1:
            return 1
        from mpi4py import MPI

        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED)
        try:
            return int(node.Get_size())
        finally:
            node.Free()

    def local_rank(self) -> int:
        """This rank's index among the ranks of this run on its node (shared-memory domain)."""
        if self.size == 1:
            return 0
        from mpi4py import MPI

        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        try:
            return int(node.Get_rank())
        finally:
            node.Free()

    def agree(self, error: BaseException | None) -> None:
        """Collective: every rank passes the exception it caught (or None).  If any rank failed,
        the lowest failing rank re-raises its exception and every other rank raises RankFailed;
        so an error is reported once, and no rank is left waiting.  No-op when nobody failed."""
        if self.size == 1:
            if error is not None:
                raise error
            return
        flags = np.empty(self.size, dtype=np.int64)
        with self.timed():
            self.comm.Allgather(np.array([0 if error is None else 1], dtype=np.int64), flags)
        if not flags.any():
            return
        first = int(np.flatnonzero(flags)[0])
        if self.rank == first:
            raise mark_agreed(error, True)
        raise RankFailed(f"rank {first} failed")

    @contextmanager
    def agreement(self):
        """Run the enclosed block on every rank, then `agree` on its outcome.  The block must not
        contain collective operations (a rank that failed early would leave the others waiting)."""
        error = None
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - reported by agree()
            error = exc
        self.agree(error)

    def abort(self, code: int) -> None:
        """Stop every rank at once (after an error that the other ranks cannot know about).  The
        caller has printed the error; a short pause lets the launcher forward it before the
        processes are killed."""
        if self.comm is not None:
            time.sleep(ABORT_GRACE)
            self.comm.Abort(code)
        raise SystemExit(code)


def abort_on_signal(world: World, command: str = "run") -> None:
    """On several ranks, make SIGINT and SIGTERM end every rank at once (main thread only): the
    handlers that apply outside the steps of `numdp run` (numdp.signals.StopRequest replaces them
    during the steps and puts them back after).  Rank 0 prints "numdp COMMAND: interrupted" and
    aborts all ranks (MPI_Abort, status 128 + the signal's number); another rank waits
    SIGNAL_GRACE seconds first (rank 0, signalled too, ends it meanwhile), then speaks and aborts
    itself.  Temporaries of atomic writes in progress are removed (numdp.io.atomic), so every file
    holds its last complete write.  One rank: nothing is installed (Python's own behaviour)."""
    if world.size == 1 or threading.current_thread() is not threading.main_thread():
        return
    state = {"busy": False}

    def handler(signum, frame):
        if state["busy"]:   # a forwarded copy, or a second signal while this one is handled
            return
        state["busy"] = True
        if world.rank != 0:
            time.sleep(SIGNAL_GRACE)
        from ..io.atomic import remove_pending

        remove_pending()
        name = signal.Signals(signum).name
        where = "" if world.rank == 0 else f" on MPI rank {world.rank} of {world.size}"
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a stream being written by the interrupted code
                pass
        try:
            os.write(2, f"numdp {command}: interrupted ({name}{where} outside the MD steps: every rank "
                        f"stopped at once)\n".encode())
        except OSError:
            pass
        time.sleep(ABORT_GRACE)
        world.comm.Abort(128 + signum)
        os._exit(128 + signum)   # MPICH's MPI_Abort can return on the rank that calls it: no unwinding

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def create_world(environ=None, command: str = "run") -> World:
    """The World of this process: MPI.COMM_WORLD when started by an MPI launcher, else one rank.
    On several ranks SIGINT / SIGTERM then end every rank at once until the MD loop takes them
    over (`abort_on_signal`; `command` names the sub-command in its line).

    Raises InputError when a launcher started several ranks but mpi4py is not installed, or when
    the launcher announced several ranks and this process's MPI world has one (a launcher of
    another MPI than mpi4py's: every process would run the whole job).
    """
    if not launched_by_mpi(environ):
        return World(None)
    try:
        import warnings

        with warnings.catch_warnings():   # mpi4py's own multi-line warning of the mismatch below
            warnings.filterwarnings("ignore", "suspicious MPI execution environment", RuntimeWarning)
            from mpi4py import MPI
    except ImportError:
        if launched_size(environ) > 1:
            raise InputError(f"started on {launched_size(environ)} MPI ranks, but mpi4py is not installed "
                             f"(pip install 'numdp[mpi]')") from None
        return World(None)
    world = World(MPI.COMM_WORLD)
    if world.size == 1 and launched_size(environ) > 1:
        # each process alone in its world: N copies of the whole job racing on the same outputs
        version = " ".join(MPI.Get_library_version().split()[:3])
        raise InputError(f"the launcher started {launched_size(environ)} ranks, but each sees an MPI world of one: "
                         f"that mpiexec is not the one of mpi4py's MPI ({version}); use the mpiexec of that "
                         f"MPI (with numdp[mpi]: the mpiexec installed beside numdp)")
    abort_on_signal(world, command)
    return world
