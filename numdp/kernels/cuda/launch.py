"""Launch geometry and the CUDA copies of the shared scalar maths."""
from numba import config, cuda

from ..dual import cuda_device
from ..math import compile_math

MATH = compile_math(cuda_device)
# the simulator runs each thread as a Python thread (its start costs ~1 ms of GIL hand-over, more
# on a loaded or sandboxed machine), the whole block even past the end of the data: blocks of 2
# waste at most one per launch on the tiny systems simulated in tests and still index across
# blocks and threads (no kernel launched through `grid` depends on the block size)
BLOCK = 2 if getattr(config, "ENABLE_CUDASIM", 0) else 128


def _pin_simulated_launches() -> None:
    """Under the simulator, run each kernel launch with this thread bound to one CPU.

    The simulator runs a block's CUDA threads as Python threads while the launching thread polls
    them; they hand the GIL to each other thousands of times per launch, which costs about twice
    as much when the threads sit on different CPUs (the 200-step MD test of tests/test_cuda_md.py:
    25-28 s on one CPU against 43-60 s on two, on a loaded 2-core machine) and more on machines with
    many cores.  Linux binds only the calling thread (sched_setaffinity with pid 0), the threads it
    starts inherit that, and the previous mask is restored after the launch, so Numba's CPU worker
    threads and other threads keep their CPUs.  The MPI ranks of a node pick different CPUs (by
    local rank, else by pid).  A no-op where affinity cannot be set."""
    import os

    from numba.cuda.simulator import kernel as sim

    if not hasattr(os, "sched_setaffinity") or getattr(sim.FakeCUDAKernel, "_numdp_pinned", False):
        return
    launch = sim.FakeCUDAKernel.__call__
    local = os.environ.get("MPI_LOCALRANKID") or os.environ.get("OMPI_COMM_WORLD_LOCAL_RANK")
    slot = int(local) if local and local.isdigit() else os.getpid()

    def pinned(kernel, *args):
        if kernel._device or sim._kernel_context:
            return launch(kernel, *args)
        saved = os.sched_getaffinity(0)
        cpus = sorted(saved)
        try:
            os.sched_setaffinity(0, {cpus[slot % len(cpus)]})
        except OSError:
            return launch(kernel, *args)
        try:
            return launch(kernel, *args)
        finally:
            os.sched_setaffinity(0, saved)

    sim.FakeCUDAKernel.__call__ = pinned
    sim.FakeCUDAKernel._numdp_pinned = True


if getattr(config, "ENABLE_CUDASIM", 0):
    _pin_simulated_launches()


def grid(n: int) -> tuple[int, int]:
    """(blocks, threads) covering n threads, one element each."""
    n = max(1, int(n))
    return (n + BLOCK - 1) // BLOCK, BLOCK


def grid2(n: int, k: int) -> tuple[int, int]:
    """(blocks, threads) for a flat launch over an (n, k) array (kernels call `row_col(k)`)."""
    return grid(n * k)


# the simulator starts one Python thread per CUDA thread: grid-stride kernels run there on a fixed
# grid of two blocks of two (the block and the grid stride both exercised)
SIM_STRIDED = (2, 2)


def strided(n: int) -> tuple[int, int]:
    """(blocks, threads) for a grid-stride kernel over n elements (`for i in range(cuda.grid(1),
    n, cuda.gridsize(1))`): one element per thread on a GPU (as `grid`), SIM_STRIDED under the
    simulator.  The results do not depend on the grid: each element is one thread's fixed-order
    work."""
    return SIM_STRIDED if getattr(config, "ENABLE_CUDASIM", 0) else grid(n)


def strided2(n: int, k: int) -> tuple[int, int]:
    """`strided` over a flat (n, k) array."""
    return strided(n * k)


@cuda.jit(device=True)
def split(idx, k):
    """(row, column) of flat index idx over rows of k columns (grid-stride kernels)."""
    r = idx // k
    return r, idx - r * k


@cuda.jit(device=True)
def row_col(k):
    """(row, column) of this thread in a flat launch over rows of k columns."""
    i = cuda.grid(1)
    r = i // k
    return r, i - r * k


class LaunchCounter:
    """Counts kernel launches and explicit host<->device transfers while on (`counting()`).

    Launches: every @cuda.jit kernel launch (the dispatcher's launch entry on a GPU; the
    simulator's kernel call, device functions excluded).  Transfers: the calls of the CUDA
    backend's `to_device` / `to_host` (numdp.backend.CUDABackend), with their bytes and their wall
    time (on a GPU a device-to-host copy also waits for the kernels queued before it).  The MD
    step's scalar reads (numdp.md.device*) go through `to_host`, so they are counted; copies made
    inside other helpers' code without the backend (e.g. a CuPy scalar read) are not.  Switched
    on only by benchmarks (tools/bench_md.py): off, nothing is patched.
    """

    def __init__(self):
        self.launches = 0
        self.to_device = 0
        self.to_host = 0
        self.bytes_to_device = 0
        self.bytes_to_host = 0
        self.transfer_seconds = 0.0

    def reset(self) -> None:
        self.__init__()

    def counting(self):
        """Context manager: count while inside (patches and restores the launch and copy entries)."""
        import contextlib
        import time

        from ...backend import CUDABackend

        counter = self

        @contextlib.contextmanager
        def patched():
            undo = []

            def patch(owner, name, wrapper):
                original = getattr(owner, name)
                setattr(owner, name, wrapper(original))
                undo.append((owner, name, original))

            def count_launch(original):
                def launch(*args, **kwargs):
                    counter.launches += 1
                    return original(*args, **kwargs)
                return launch

            def count_copy(original, to_host: bool):
                def copy(be, a, *args, **kwargs):
                    t0 = time.perf_counter()
                    out = original(be, a, *args, **kwargs)
                    counter.transfer_seconds += time.perf_counter() - t0
                    nbytes = int(getattr(out, "nbytes", 0))
                    if to_host:
                        counter.to_host += 1
                        counter.bytes_to_host += nbytes
                    else:
                        counter.to_device += 1
                        counter.bytes_to_device += nbytes
                    return out
                return copy

            if getattr(config, "ENABLE_CUDASIM", 0):
                from numba.cuda.simulator import kernel as sim

                def sim_launch(original):
                    def launch(kernel, *args):
                        if not (kernel._device or sim._kernel_context):
                            counter.launches += 1
                        return original(kernel, *args)
                    return launch

                patch(sim.FakeCUDAKernel, "__call__", sim_launch)
            else:
                from numba.cuda import dispatcher

                patch(dispatcher.CUDADispatcher, "call", count_launch)
            patch(CUDABackend, "to_device", lambda f: count_copy(f, False))
            patch(CUDABackend, "to_host", lambda f: count_copy(f, True))
            try:
                yield counter
            finally:
                for owner, name, original in reversed(undo):
                    setattr(owner, name, original)

        return patched()


COUNTER = LaunchCounter()
