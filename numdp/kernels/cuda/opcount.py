"""Counting a GPU MD step's device operations by phase (benchmarks only: tools/bench_md.py).

On a GPU every one of these costs a launch or a copy, and Python and driver time (an H200 took
~190 µs per operation of a 192-atom MD step while numba synchronised on every array argument;
docs/gpu.md, "Launch cost"):

- "kernel": a numba.cuda kernel launch (device functions excluded);
- "array op": an operation of the array library (CuPy on a GPU) that runs work on the device:
  element-wise operators and ufuncs, reductions (sum, max, argmax, ...), sorts, searchsorted,
  nonzero / flatnonzero, concatenate / stack, astype / copy, arange, filled allocations (zeros,
  full: a memset), gathers by an array index (``a[k]``, k a device array) and writes into a slice
  (``a[...] = b``); views (reshape, basic slices, asarray of a device array) are free;
- "alloc": an allocation without a fill (empty, empty_like, numba's device_array): cheap (CuPy's
  and Numba's pools), counted apart;
- "to_device" / "to_host": copies between host and device: the CUDA backend's to_device /
  to_host, numba's to_device / copy_to_host, an array built from a host array, and the implicit
  read of a device scalar (``int(a.sum())``, ``float(a)``, ``bool(a)``: a synchronising copy).

Under Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1) the array library is NumPy: the counter
then hands out a counting stand-in for the backend's ``xp`` whose arrays (``_Tracked``, a NumPy
subclass) count their own methods, operators and indexing, so every operation the step's Python
code applies to a device array is seen, as CuPy would run it (a reduction gives a 0-d device
array, not a host scalar).  Only the launching (main) thread counts: the simulator runs the
kernels' threads as Python threads whose element accesses are not operations.  On a GPU the
stand-in counts the calls of ``cupy`` functions only (array methods, operators and indexing are
not seen there): the complete count is the simulator's, and the host code is the same.

Each count is filed under the phase of the MD step that made it, found from the calling
functions (`PHASES`: the innermost known function wins).
"""
from __future__ import annotations

import collections
import contextlib
import sys
import threading
import time
from types import ModuleType

import numpy as np
from numba import config

# function name (co_qualname) -> phase; the innermost match on the call stack names the phase
PHASES = {
    "DeviceVelocityVerlet.kick_half": "integrate",
    "DeviceVelocityVerlet.drift_for": "integrate",
    "DeviceVelocityVerlet.kick_drift": "integrate",
    "DeviceVelocities.kinetic_energy": "thermostat",
    "DeviceVelocities._sums": "thermostat",
    "DeviceVelocities.scale": "thermostat",
    "DeviceVelocities.langevin": "thermostat",
    "DeviceVelocities.zero_momentum": "thermostat",
    "DeviceVelocities.nose_hoover_chain": "thermostat",
    "DeviceVelocities.kinetic_tensor": "barostat",
    "DeviceVelocities.transform": "barostat",
    "DeviceForceProvider._check_motion": "rebuild test",
    "DeviceForceProvider._rebuild": "rebuild",
    "DeviceForceProvider._restore": "rebuild",
    "DeviceForceProvider._set_box": "rebuild",
    "DeviceForceProvider._extended_positions": "neighbour list",
    "DeviceForceProvider._list": "neighbour list",
    "closest_pair": "closest pair",
    "closest_pair_device": "closest pair",
    "DeviceForceProvider._compute_models": "model",
    "DPModel.compute_device": "model",
    "DeviceForceProvider._owned_forces": "fold",
    "DeviceForceProvider._fold": "fold",
    "DeviceForceProvider._totals": "reductions",
    "DeviceForceProvider._nonfinite_records": "safety",
    "DeviceForceProvider.nonfinite_force_atom": "safety",
    "DeviceSafetyMonitor.nonfinite_velocity_atom": "safety",
    "DeviceState.download": "output",
    "DeviceForceProvider.__call__": "force call (other)",
    "DeviceForceProvider.launch": "force call (other)",
    "DeviceForceProvider.complete": "reductions",
}
KINDS = ("kernel", "array op", "alloc", "to_device", "to_host")

# array-library functions that allocate without filling, and those that make views or no work
_ALLOC = frozenset({"empty", "empty_like"})
_FREE = frozenset({"reshape", "ravel", "atleast_1d", "atleast_2d", "squeeze", "broadcast_to", "shape",
                   "ndim", "result_type", "dtype", "iinfo", "finfo", "can_cast", "isscalar"})
# functions that take host data and make a device array of it (a copy to the device) or, given a
# device array, a view (asarray, ascontiguousarray) or a device copy (array)
_FROM_HOST = frozenset({"asarray", "ascontiguousarray", "array", "asanyarray"})


class _State(threading.local):
    depth = 0


class OpCounter:
    """Counts, by phase and kind (`KINDS`), the device operations made while `counting()`.

    `counts[phase][kind]` and the totals `launches` (kernels), `array_ops`, `allocs`,
    `to_device`, `to_host` (copies), with `bytes_to_device`, `bytes_to_host` and
    `transfer_seconds` (wall time inside the backend's copies; on a GPU a copy to the host also
    waits for the work queued before it).

    timed=True also times each counted kernel launch and array-library call: the device is
    synchronised before and after it, and the wall time between goes to `seconds[(kind, name)]`
    (s; the device's time for that operation plus its launch cost, with no overlap between
    operations: a profile of where a call's time goes, slower than the call itself).  Under the
    simulator the times are the simulator's and mean nothing."""

    def __init__(self, timed: bool = False):
        self.counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.names: collections.Counter = collections.Counter()   # (phase, kind, operation name)
        self.timed = timed
        self.seconds: collections.Counter = collections.Counter()   # (kind, operation name) -> s
        self.bytes_to_device = 0
        self.bytes_to_host = 0
        self.transfer_seconds = 0.0
        self._local = _State()
        self._main = threading.main_thread()

    def reset(self) -> None:
        """Forget the counts (the patches of an open `counting()` stay)."""
        self.counts = collections.defaultdict(collections.Counter)
        self.names = collections.Counter()
        self.bytes_to_device = 0
        self.bytes_to_host = 0
        self.transfer_seconds = 0.0
        self.seconds = collections.Counter()

    def total(self, kind: str) -> int:
        return sum(c[kind] for c in self.counts.values())

    @property
    def launches(self) -> int:
        return self.total("kernel")

    @property
    def array_ops(self) -> int:
        return self.total("array op")

    @property
    def allocs(self) -> int:
        return self.total("alloc")

    @property
    def to_device(self) -> int:
        return self.total("to_device")

    @property
    def to_host(self) -> int:
        return self.total("to_host")

    def table(self, steps: int = 1) -> str:
        """The counts per step by phase (rows) and kind (columns), with a total row."""
        head = f"{'phase':<20}" + "".join(f"{k:>10}" for k in KINDS) + f"{'launches':>10}"
        lines = [head, "-" * len(head)]
        order = sorted(self.counts, key=lambda p: (list(dict.fromkeys(PHASES.values())) + [p]).index(p))
        for phase in order + ["total"]:
            c = self.counts[phase] if phase != "total" else {k: self.total(k) for k in KINDS}
            row = [c.get(k, 0) / steps for k in KINDS]
            lines.append(f"{phase:<20}" + "".join(f"{v:>10.1f}" for v in row) + f"{row[0] + row[1]:>10.1f}")
        self.counts.pop("total", None)
        return "\n".join(lines)

    def time_table(self, calls: int = 1, top: int = 25) -> str:
        """With timed=True: the operations that took longest, per call (ms), with their share."""
        total = sum(self.seconds.values())
        count = collections.Counter()
        for (_, kind, name), n in self.names.items():
            count[(kind, name)] += n
        head = f"{'kind':<9} {'operation':<34} {'per call':>9} {'ms/call':>9} {'share':>7}"
        lines = [head, "-" * len(head)]
        for (kind, name), sec in self.seconds.most_common(top):
            lines.append(f"{kind:<9} {name[:34]:<34} {count[(kind, name)] / calls:>9.1f} "
                         f"{1e3 * sec / calls:>9.3f} {100 * sec / max(total, 1e-300):>6.1f}%")
        lines.append(f"{'all':<9} {len(self.seconds):>3} operations{'':<20} {'':>9} {1e3 * total / calls:>9.3f}")
        return "\n".join(lines)

    # -- recording -------------------------------------------------------------------------
    def _record(self, kind: str, nbytes: int = 0, name: str = "") -> None:
        phase = "other"
        f = sys._getframe(1)
        while f is not None:
            func = getattr(f.f_code, "co_qualname", f.f_code.co_name)
            if func in PHASES:
                phase = PHASES[func]
                break
            f = f.f_back
        self.counts[phase][kind] += 1
        self.names[(phase, kind, name)] += 1
        if kind == "to_device":
            self.bytes_to_device += nbytes
        elif kind == "to_host":
            self.bytes_to_host += nbytes

    def _outermost(self) -> bool:
        """True on the launching thread outside another counted operation."""
        return self._local.depth == 0 and threading.current_thread() is self._main

    def _counted(self, kind_of, fn, name: str = "", name_of=None):
        """fn, counting one operation of kind kind_of(args) (None: not counted) when outermost,
        named `name`, name_of(args) or fn's name."""
        counter = self

        def wrapper(*args, **kwargs):
            if not counter._outermost():
                return fn(*args, **kwargs)
            kind = kind_of(*args, **kwargs)
            label = name_of(*args) if name_of is not None else name or getattr(fn, "__name__", "")
            if kind is not None:
                counter._record(kind, name=label)
            timed = counter.timed and kind in ("kernel", "array op")
            if timed:
                _synchronize()
                t0 = time.perf_counter()
            counter._local.depth += 1
            try:
                return fn(*args, **kwargs)
            finally:
                counter._local.depth -= 1
                if timed:
                    _synchronize()
                    counter.seconds[(kind, label)] += time.perf_counter() - t0
        return wrapper

    # -- switching on ----------------------------------------------------------------------
    def counting(self):
        """Context manager: count while inside (patches and restores the launch entries, the
        backend's copies and its array module)."""
        from ...backend import CUDABackend

        counter = self

        @contextlib.contextmanager
        def patched():
            undo = []

            def patch(owner, name, value):
                undo.append((owner, name, owner.__dict__.get(name, _MISSING) if isinstance(owner, type)
                             else getattr(owner, name)))
                setattr(owner, name, value)

            def copy(original, to_host: bool):
                def wrapper(be, a, *args, **kwargs):
                    # a device array handed to to_device stays where it is (CuPy: no copy)
                    outer = counter._outermost() and (to_host or not _is_device(a))
                    t0 = time.perf_counter()
                    counter._local.depth += 1
                    try:
                        out = original(be, a, *args, **kwargs)
                    finally:
                        counter._local.depth -= 1
                    if outer:
                        counter.transfer_seconds += time.perf_counter() - t0
                        counter._record("to_host" if to_host else "to_device", int(getattr(out, "nbytes", 0)),
                                        "backend." + ("to_host" if to_host else "to_device"))
                    if be.simulator and not to_host:
                        out = _track(out)
                    return out
                return wrapper

            from numba import cuda

            sim = bool(getattr(config, "ENABLE_CUDASIM", 0))
            if sim:
                from numba.cuda.simulator import kernel as simk
                from numba.cuda.simulator.cudadrv import devicearray as simda

                launch = simk.FakeCUDAKernel.__call__

                def sim_launch(kernel, *args):
                    if kernel._device or simk._kernel_context or not counter._outermost():
                        return launch(kernel, *args)
                    label = getattr(kernel, "__name__", "")
                    counter._record("kernel", name=label)
                    t0 = time.perf_counter()
                    counter._local.depth += 1   # what the simulator does inside is the launch
                    try:
                        return launch(kernel, *args)
                    finally:
                        counter._local.depth -= 1
                        if counter.timed:
                            counter.seconds[("kernel", label)] += time.perf_counter() - t0

                patch(simk.FakeCUDAKernel, "__call__", sim_launch)
                patch(simda.FakeCUDAArray, "copy_to_host",
                      self._counted(lambda *a, **k: "to_host", simda.FakeCUDAArray.copy_to_host))
            else:
                from numba.cuda import dispatcher
                from numba.cuda.cudadrv import devicearray

                from . import fastlaunch

                # the launch path numdp uses, in place before this patch: the backend, when made
                # while counting, must not put it over the counting (restored without it after)
                if fastlaunch.enabled():
                    fastlaunch.install()
                call = dispatcher.CUDADispatcher.call
                patch(dispatcher.CUDADispatcher, "call", self._counted(
                    lambda *a, **k: "kernel", call,
                    name_of=lambda d, *a, **k: getattr(getattr(d, "py_func", None), "__name__", "kernel")))
                patch(devicearray.DeviceNDArrayBase, "copy_to_host",
                      self._counted(lambda *a, **k: "to_host", devicearray.DeviceNDArrayBase.copy_to_host))
            for name, kind in (("to_device", "to_device"), ("device_array", "alloc"),
                               ("device_array_like", "alloc")):
                fn = getattr(cuda, name)
                patch(cuda, name, self._counted(lambda *a, _k=kind, **k: _k, fn, "cuda." + name))
            patch(CUDABackend, "to_device", copy(CUDABackend.to_device, False))
            patch(CUDABackend, "to_host", copy(CUDABackend.to_host, True))
            xp_property = CUDABackend.__dict__["xp"]
            proxies: dict = {}

            def xp(be):
                module = xp_property.__get__(be)
                if id(module) not in proxies:
                    proxies[id(module)] = _CountingModule(module, counter, tracked=be.simulator)
                return proxies[id(module)]

            patch(CUDABackend, "xp", property(xp))
            _ACTIVE.append(counter)
            try:
                yield counter
            finally:
                _ACTIVE.remove(counter)
                for owner, name, original in reversed(undo):
                    if original is _MISSING:
                        delattr(owner, name)
                    else:
                        setattr(owner, name, original)

        return patched()


_MISSING = object()
_ACTIVE: list[OpCounter] = []   # the counter of an open `counting()` (what _Tracked reports to)


def _synchronize() -> None:
    """Wait for the device's queued work (numba.cuda and CuPy share the primary context)."""
    from numba import cuda

    cuda.synchronize()


def _active() -> OpCounter | None:
    c = _ACTIVE[-1] if _ACTIVE else None
    return c if c is not None and c._outermost() else None


def _is_device(a) -> bool:
    """A device array: a counted (_Tracked) array, a numba device array, or a CuPy array."""
    return isinstance(a, _Tracked) or hasattr(a, "copy_to_host") or type(a).__module__.startswith("cupy")


def _track(a):
    """a as a counted device array (simulator: a _Tracked view; anything else unchanged)."""
    if isinstance(a, np.ndarray) and not isinstance(a, _Tracked):
        return a.view(_Tracked)
    if isinstance(a, np.generic):
        return np.asarray(a).view(_Tracked)
    return a


def _plain(a):
    return a.view(np.ndarray) if isinstance(a, _Tracked) else a


class _CountingModule(ModuleType):
    """The backend's array module with its functions counted (`OpCounter`); under the simulator
    (tracked) their array results are _Tracked, as CuPy's are device arrays."""

    def __init__(self, module, counter: OpCounter, tracked: bool):
        super().__init__(module.__name__)
        self._module = module
        self._counter = counter
        self._tracked = tracked
        self._cache: dict = {}

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        obj = getattr(self._module, name)
        if not callable(obj) or isinstance(obj, type):
            return obj
        if name not in self._cache:
            self._cache[name] = self._wrap(name, obj)
        return self._cache[name]

    def _wrap(self, name, fn):
        counter, tracked = self._counter, self._tracked

        def kind(*args, **kwargs):
            if name in _ALLOC:
                return "alloc"
            if name in _FREE:
                return None
            if name in _FROM_HOST:
                src = args[0] if args else kwargs.get("a", kwargs.get("obj"))
                if not _is_device(src):
                    return "to_device"   # host data to the device
                return "array op" if name == "array" else None   # array copies; asarray views
            return "array op"

        counted = counter._counted(kind, fn, "xp." + name)
        if not tracked:
            return counted

        def wrapper(*args, **kwargs):
            return _track(counted(*args, **kwargs))
        return wrapper


# methods of a device array that run work on the device (CuPy: a kernel each), and those that
# read it to the host
_OP_METHODS = ("astype", "copy", "argsort", "sort", "argmax", "argmin", "nonzero", "cumsum", "fill", "take",
               "clip", "round", "dot", "repeat", "searchsorted", "flatten", "any", "all", "sum", "max", "min",
               "prod", "mean")
_READ_METHODS = ("item", "tolist", "__float__", "__int__", "__index__", "__bool__", "__complex__")


class _Tracked(np.ndarray):
    """A NumPy array standing for a device array under the simulator while an OpCounter counts:
    its operators, ufuncs, reductions, sorts, copies, array-indexed gathers and slice writes are
    counted as array ops, its scalar reads as copies to the host; the results stay _Tracked.
    Values are NumPy's: counting never changes a result."""

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        c = _active()
        if c is not None:
            c._record("array op", name=f"{ufunc.__name__}.{method}")
        args = tuple(_plain(x) for x in inputs)
        if out is not None:
            kwargs["out"] = tuple(_plain(o) for o in out)
        _enter(c)
        try:
            res = getattr(ufunc, method)(*args, **kwargs)
        finally:
            _leave(c)
        if out is not None:
            return out[0] if len(out) == 1 else out
        if c is None:
            return res
        if isinstance(res, tuple):
            return tuple(_track(r) for r in res)
        return _track(res)

    def __getitem__(self, idx):
        c = _active()
        if c is not None and _advanced(idx):
            c._record("array op", name="getitem")
        res = np.ndarray.__getitem__(self, _plain_index(idx))
        return _track(res) if c is not None else res   # CuPy: a[i] is a 0-d device array

    def __setitem__(self, idx, value):
        c = _active()
        if c is not None:
            c._record("array op", name="setitem")
        np.ndarray.__setitem__(self, _plain_index(idx), _plain(value))


def _enter(c):
    if c is not None:
        c._local.depth += 1


def _leave(c):
    if c is not None:
        c._local.depth -= 1


def _advanced(idx) -> bool:
    """True when idx indexes with an array (a gather on the device), not only ints and slices."""
    items = idx if isinstance(idx, tuple) else (idx,)
    return any(isinstance(i, (np.ndarray, list, np.generic)) and not isinstance(i, bool) for i in items)


def _plain_index(idx):
    if isinstance(idx, tuple):
        return tuple(_plain(i) for i in idx)
    return _plain(idx)


def _method(name, kind):
    base = getattr(np.ndarray, name)

    def method(self, *args, **kwargs):
        c = _active()
        if c is not None:
            c._record(kind, name="." + name)
        _enter(c)
        try:
            res = base(self.view(np.ndarray), *args, **kwargs)
        finally:
            _leave(c)
        if kind == "to_host" or c is None:
            return res
        return tuple(_track(r) for r in res) if isinstance(res, tuple) else _track(res)
    method.__name__ = name
    return method


for _name in _OP_METHODS:
    setattr(_Tracked, _name, _method(_name, "array op"))
for _name in _READ_METHODS:
    setattr(_Tracked, _name, _method(_name, "to_host"))
del _name
