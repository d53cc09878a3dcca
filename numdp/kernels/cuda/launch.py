"""Launch geometry and the CUDA copies of the shared scalar maths."""
import json
import math
import os
import sys
import types

import numpy as np
from numba import config, cuda

from ..dual import cuda_device
from ..math import compile_math


class _IEEEFloat(float):
    """A float by which a division follows IEEE 754 as on a GPU (x / 0.0 is ±inf, 0.0 / 0.0 nan)
    where Python raises ZeroDivisionError; Python calls a right operand's reflected method
    first when its type is a subclass of the left operand's, so `1.0 / r` comes here."""

    def __rtruediv__(self, other):
        if self == 0.0:
            other = float(other)
            if other == 0.0 or other != other:
                return math.nan
            return math.copysign(math.inf, other) * math.copysign(1.0, self)
        return float(other) / float(self)


def _ieee_sqrt(x):
    # only a zero root needs the subclass: any other is a plain float, which NumPy 2 takes as a
    # "weak" scalar (float32 * r stays float32, as on a GPU); the subclass would promote it
    r = math.sqrt(x)
    return _IEEEFloat(r) if r == 0.0 else r


# the simulator runs the shared scalar maths in Python: their `math` with a square root whose
# result divides as on a GPU (numdp.kernels.math.env_row and row_jacobian divide by r, which is 0
# for atoms on top of each other: inf on a GPU, where the step's safety check then names the pair
# as on the CPU, but a ZeroDivisionError in Python); the same bits otherwise (math.sqrt itself)
_SIM_MATH = types.SimpleNamespace(**{k: getattr(math, k) for k in dir(math) if not k.startswith("_")})
_SIM_MATH.sqrt = _ieee_sqrt


def _sim_device(fn):
    """cuda_device(fn) with fn's global `math` the simulator's `_SIM_MATH`."""
    if fn.__globals__.get("math") is math:
        g = dict(fn.__globals__)
        g["math"] = _SIM_MATH
        fn = types.FunctionType(fn.__code__, g, fn.__name__, fn.__defaults__, fn.__closure__)
    return cuda_device(fn)


MATH = compile_math(_sim_device if getattr(config, "ENABLE_CUDASIM", 0) else cuda_device)
# the simulator runs each thread as a Python thread (its start costs ~1 ms of GIL hand-over, more
# on a loaded or sandboxed machine), the whole block even past the end of the data: blocks of 2
# waste at most one per launch on the tiny systems simulated in tests and still index across
# blocks and threads (no kernel launched through `grid` depends on the block size)
BLOCK = 2 if getattr(config, "ENABLE_CUDASIM", 0) else 128


# the GIL's switch interval during a simulated launch, s (CPython's default is 5 ms): the launching
# thread polls the block's threads in a loop that holds the GIL, and a thread that wants it waits
# up to one interval, ~1 000 polls per block at 5 ms.  0.1 ms: the 200-step MD test of
# tests/test_cuda_md.py 48 s -> 12 s (1 ms: 18 s; 20 us: 12 s)
SIM_SWITCH_INTERVAL = 1e-4

SIM_CPU_SLOT: int | None = None
"""Which usable CPU (index modulo their number) simulated launches bind to; None: the process's MPI
local rank, else its pid.  Set it where several processes of one machine simulate at once and
know their order (tests/conftest.py: the pytest-xdist worker's number)."""


def _pin_simulated_launches() -> None:
    """Under the simulator, run each kernel launch with the GIL's switch interval at
    SIM_SWITCH_INTERVAL and, where affinity can be set, this thread bound to one CPU (both
    restored after the launch).

    The simulator runs a block's CUDA threads as Python threads while the launching thread polls
    them; they hand the GIL to each other thousands of times per launch, which costs about twice
    as much when the threads sit on different CPUs (the 200-step MD test of tests/test_cuda_md.py:
    25-28 s on one CPU against 43-60 s on two, on a loaded 2-core machine) and more on machines with
    many cores.  Linux binds only the calling thread (sched_setaffinity with pid 0), the threads it
    starts inherit that, and the previous mask is restored after the launch, so Numba's CPU worker
    threads and other threads keep their CPUs.  The MPI ranks of a node pick different CPUs (by
    local rank, else by pid).  Where affinity cannot be set, only the switch interval changes."""
    from numba.cuda.simulator import kernel as sim

    if getattr(sim.FakeCUDAKernel, "_numdp_pinned", False):
        return
    launch = sim.FakeCUDAKernel.__call__
    local = os.environ.get("MPI_LOCALRANKID") or os.environ.get("OMPI_COMM_WORLD_LOCAL_RANK")
    slot = int(local) if local and local.isdigit() else os.getpid()
    if SIM_CPU_SLOT is not None:
        slot = SIM_CPU_SLOT
    can_pin = hasattr(os, "sched_setaffinity")

    def pinned(kernel, *args):
        if kernel._device or sim._kernel_context:
            return launch(kernel, *args)
        interval = sys.getswitchinterval()
        sys.setswitchinterval(SIM_SWITCH_INTERVAL)
        saved = os.sched_getaffinity(0) if can_pin else None
        try:
            if saved is not None:
                try:
                    os.sched_setaffinity(0, {sorted(saved)[slot % len(saved)]})
                except OSError:
                    saved = None   # (nothing to restore)
            return launch(kernel, *args)
        finally:
            if saved is not None:
                os.sched_setaffinity(0, saved)
            sys.setswitchinterval(interval)

    sim.FakeCUDAKernel.__call__ = pinned
    sim.FakeCUDAKernel._numdp_pinned = True


FACTORY_ORIGINS: dict = {}
"""py_func -> (module, factory, args, index) of each kernel made by a factory (`made_by`), so that
tools/ptx_check.py can build the same kernel again in a process without the simulator."""


def made_by(kernel, module: str, factory: str, args: tuple, index=None):
    """Record that `kernel` is `module.factory(*args)` (item `index` of its result when that is a
    tuple); returns the kernel."""
    FACTORY_ORIGINS[kernel.py_func] = (module, factory, tuple(args), index)
    return kernel


def launch_record(kernel, args) -> dict:
    """What tools/ptx_check.py needs to compile a simulated launch for a GPU: where the kernel
    comes from, and each argument's Numba type as the device would see it (a simulated device
    array is a NumPy array: its dtype, dimensions and layout; a Python int is int64, a float
    float64, a bool boolean; NumPy scalars keep their type)."""
    fn = kernel.py_func
    origin = FACTORY_ORIGINS.get(fn)
    where = ({"module": origin[0], "factory": origin[1], "args": list(origin[2]), "index": origin[3]}
             if origin else {"module": fn.__module__, "name": fn.__name__})
    sig = []
    for a in args:
        a = getattr(a, "_ary", a)   # the simulator's FakeCUDAArray wraps a NumPy array
        if isinstance(a, np.ndarray) and a.ndim > 0:
            layout = "C" if a.flags.c_contiguous else "F" if a.flags.f_contiguous else "A"
            sig.append(["array", a.dtype.name, a.ndim, layout])
        elif isinstance(a, (bool, np.bool_)):
            sig.append(["scalar", "bool"])
        elif isinstance(a, int):
            sig.append(["scalar", "int64"])
        elif isinstance(a, float):
            sig.append(["scalar", "float64"])
        elif isinstance(a, np.generic):
            sig.append(["scalar", a.dtype.name])
        else:
            raise TypeError(f"{fn.__name__}: argument of type {type(a).__name__} cannot be recorded")
    return {"kernel": where, "sig": sig}


def _record_simulated_launches(path: str) -> None:
    """Append one JSON line per distinct (kernel, argument types) launched in this process to
    `path` (NUMDP_RECORD_LAUNCHES; MPI ranks and other processes append to the same file)."""
    from numba.cuda.simulator import kernel as sim

    launch = sim.FakeCUDAKernel.__call__
    seen = set()

    def recording(kernel, *args):
        if not (kernel._device or sim._kernel_context):
            line = json.dumps(launch_record(kernel, args), sort_keys=True)
            if line not in seen:
                seen.add(line)
                with open(path, "a") as f:
                    f.write(line + "\n")
        return launch(kernel, *args)

    sim.FakeCUDAKernel.__call__ = recording


def _lock_simulated_shared_arrays() -> None:
    """Under the simulator, make `cuda.shared.array` safe for the block's threads.

    The simulator keeps a block's shared arrays in a dict keyed by the calling line: a thread
    looks its line up and, when it is missing, makes an uninitialised array and stores it.  Its
    threads are Python threads, and one can lose the GIL between the look-up and the store (the
    more often, the shorter SIM_SWITCH_INTERVAL): two threads then each make an array, and the
    one whose array is replaced works on a private copy that the others never see; they read
    its entries uninitialised (seen: `block_scan` writing 281286400897424 into a cell count in
    tests/test_cuda_deviation.py, 1 run in several).  On a GPU a block has one copy.  Here the
    look-up and the store happen under one lock; the key is the caller's (file, line), as the
    simulator's own; dynamic shared memory (shape 0) is the simulator's, unchanged."""
    import threading

    from numba.core import types
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    cls = kernelapi.FakeCUDAShared
    if getattr(cls, "_numdp_locked", False):
        return
    original = cls.array
    lock = threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:
            return original(self, shape, dtype, alignment)
        frame = sys._getframe(1)
        caller = (frame.f_code.co_filename, frame.f_lineno)
        with lock:
            res = self._allocations.get(caller)
            if res is None:
                dt = numpy_support.as_dtype(dtype) if isinstance(dtype, types.Type) else np.dtype(dtype)
                res = self._allocations[caller] = np.empty(shape, dt)
        return res

    cls.array = array
    cls._numdp_locked = True


if getattr(config, "ENABLE_CUDASIM", 0):
    _pin_simulated_launches()
    _lock_simulated_shared_arrays()
    if os.environ.get("NUMDP_RECORD_LAUNCHES"):
        _record_simulated_launches(os.environ["NUMDP_RECORD_LAUNCHES"])


def grid(n: int) -> tuple[int, int]:
    """(blocks, threads) covering n threads, one element each."""
    n = max(1, int(n))
    return (n + BLOCK - 1) // BLOCK, BLOCK


def grid2(n: int, k: int) -> tuple[int, int]:
    """(blocks, threads) for a flat launch over an (n, k) array (kernels call `row_col(k)`)."""
    return grid(n * k)


# threads of a one-block launch (`one_block`) under the simulator: a thread takes several chunks
# of a tree level (the strided loops of the one-block kernels exercised)
SIM_ONE_BLOCK = 4


def one_block(n: int, most: int = 512) -> tuple[int, int]:
    """(1, threads) for a one-block kernel over n rows (numdp.kernels.cuda.md's one-block forms:
    thread t takes rows t, t + blockDim, ...): a thread per row, in whole warps, up to `most`;
    SIM_ONE_BLOCK threads under the simulator.  Their results do not depend on the block size.
    512 at most: those kernels take up to 65 registers per thread on sm_90 (tools/ptx_check.py),
    and a block may hold 65 536 registers (1 024 threads would need at most 64 each)."""
    if getattr(config, "ENABLE_CUDASIM", 0):
        return 1, SIM_ONE_BLOCK
    return 1, min(most, 32 * max(1, (int(n) + 31) // 32))


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


# team kernels (`teams`): one block, a team of TEAM threads, works on one centre atom at a time
# (blocks stride over the atoms), its threads sharing the atom's loads and splitting its channels.
# Under the simulator a team of 4 still splits the channels of the tests' small nets over threads
# and over more than one group of channels per thread.
TEAM = 4 if getattr(config, "ENABLE_CUDASIM", 0) else 32
# the team's threads in sub-teams of SUB, one slot per sub-team (tab_pair_forces_team): each load
# of a table row then reads SUB consecutive channels of TEAM // SUB rows
SUB = 2 if getattr(config, "ENABLE_CUDASIM", 0) else 8


def teams(n: int) -> tuple[int, int]:
    """(blocks, TEAM) for a team kernel over n atoms: a block per atom on a GPU, two blocks under
    the simulator (which runs each thread as a Python thread).  The results do not depend on it."""
    return (2, TEAM) if getattr(config, "ENABLE_CUDASIM", 0) else (max(1, int(n)), TEAM)


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

