"""The device work of an MD force call replayed from a CUDA graph (one GPU, one rank;
experimental: off unless NUMDP_CUDA_GRAPH=1, and never under the simulator).

Why: a 192-atom water step on the GPU is ~65 device operations, each ~20 µs of host time even
through numdp's cached launches (docs/gpu.md, "Launch cost"), while the H200 replays a captured
graph at ~1.2 µs per kernel.  Issue 14's 50 ns/day at 192 atoms needs a step under 864 µs.

What is captured: `DeviceForceProvider._device_call`, the part of a force call between the
rebuild test and the host read: extended positions, neighbour list, closest pair, model 0 and
the fold of the ghost forces.  Nothing there reads the device from the host, and the host-side
choices it makes (chunks, kernels, grid sizes) depend only on what stays fixed between two
rebuilds of the ghost shell.  The rebuild test, the integrator, the thermostat and the host read
(`complete`) run as before.

When (`ForceCallGraph.run`, per call, with a key naming the call's input buffers and the
rebuild count):
- a call whose key differs from the last one's (after a rebuild, a barostat's new cell buffer,
  a restart) runs as usual (FRESH);
- the next one with the same key runs on the graph's stream under a private CuPy memory pool
  (WARM): the pool then caches a block of every size the call takes, so that the capture takes
  no new device memory and no array outside the graph ever gets the graph's memory;
- the next one is captured on that stream (numba's launches sent there by
  numdp.kernels.cuda.fastlaunch.launching_on, numba's allocations taken from CuPy's current
  allocator by numdp.kernels.cuda.numba_pool) and the graph launched once (CAPTURED); its
  outputs are the arrays made during the capture, kept with the graph;
- every later call with that key launches the graph.
A capture that fails warns once (one line) and the run goes on without graphs.  The graph's
stream is a blocking stream, so the work before and after it on CUDA's default stream is
ordered with it as on one stream.

CuPy (14.2) refuses cuBLAS calls on a capturing stream, so with graphs model 0's matrix products
are numba kernels in every call of the run (`DPModel.use_kernel_products`; docs/gpu.md, "What
will stop it on a GPU").  Not yet run on a GPU.
"""
from __future__ import annotations

import contextlib
import enum
import os
import warnings
from typing import Callable, Protocol

from ..backend import retaining


def enabled(environ=os.environ) -> bool:
    """NUMDP_CUDA_GRAPH: "1" (or true / yes / on) replays force calls from CUDA graphs."""
    return environ.get("NUMDP_CUDA_GRAPH", "0").strip().lower() in ("1", "true", "yes", "on")


class GraphEngine(Protocol):
    """Runs a call three ways: `warm` (eagerly, filling what the capture will use), `capture`
    (recorded, then run once) and `replay` (the recorded call again); `reset` forgets the record."""

    def warm(self, fn: Callable[[], tuple]) -> tuple: ...
    def capture(self, fn: Callable[[], tuple]) -> tuple: ...
    def replay(self) -> tuple: ...
    def reset(self) -> None: ...


class CuPyGraphs:
    """GraphEngine of a GPU: a private CuPy memory pool and a stream per record."""

    def __init__(self):
        import cupy

        from ..kernels.cuda import fastlaunch, numba_pool

        if not fastlaunch.installed() or not numba_pool.install():
            raise RuntimeError("CUDA graphs need numdp's cached launches and numba's allocations from CuPy's pool")
        self._cupy = cupy
        self._launching_on = fastlaunch.launching_on
        self.reset()

    def _on_stream(self):
        stack = contextlib.ExitStack()
        stack.enter_context(self._cupy.cuda.using_allocator(self._pool.malloc))
        stack.enter_context(self._stream)
        stack.enter_context(self._launching_on(self._stream.ptr))
        return stack

    def warm(self, fn):
        self._pool = self._cupy.cuda.MemoryPool()
        self._stream = self._cupy.cuda.Stream()   # blocking: ordered with the default stream
        with self._on_stream():
            return fn()

    def capture(self, fn):
        with self._on_stream():
            self._stream.begin_capture()
            try:
                out = fn()
            finally:
                graph = self._stream.end_capture()
        self._graph, self._outputs = graph, out
        return self.replay()

    def replay(self):
        self._graph.launch(self._stream)
        return self._outputs

    def reset(self):
        self._graph = self._outputs = self._pool = self._stream = None


class _Stage(enum.Enum):
    FRESH = "fresh"
    WARM = "warm"
    CAPTURED = "captured"


class ForceCallGraph:
    """The FRESH → WARM → CAPTURED sequence of the module docstring over a GraphEngine.
    Counters: `captures`, `replays` (launches of a captured graph after the first).  `kept`: the
    cached device constants the captured call read (numdp.backend.retaining), held as long as
    its graph, since a replay reads them at the captured addresses."""

    def __init__(self, engine: GraphEngine):
        self.engine = engine
        self.stage = _Stage.FRESH
        self.key = None
        self.failed = False
        self.captures = 0
        self.replays = 0
        self.kept: list = []

    def reset(self) -> None:
        self.engine.reset()
        self.stage = _Stage.FRESH
        self.key = None
        self.kept = []

    def run(self, fn: Callable[[], tuple], key: tuple) -> tuple:
        """fn()'s outputs, computed by fn, by the warm-up, the capture or a replay (see above)."""
        if self.failed:
            return fn()
        if key != self.key:
            self.reset()
            self.key = key
            return fn()
        if self.stage is _Stage.FRESH:
            self.stage = _Stage.WARM
            return self.engine.warm(fn)
        if self.stage is _Stage.WARM:
            try:
                with retaining([]) as kept:
                    out = self.engine.capture(fn)
            except Exception as exc:  # noqa: BLE001 - any failure: run on without graphs
                self.failed = True
                self.engine.reset()
                warnings.warn(f"CUDA graph capture of the force call failed ({type(exc).__name__}: "
                              f"{' '.join(str(exc).split())[:200]}); the run goes on without graphs",
                              RuntimeWarning, stacklevel=3)
                return fn()
            self.stage = _Stage.CAPTURED
            self.kept = kept
            self.captures += 1
            return out
        self.replays += 1
        return self.engine.replay()


def address(a) -> int:
    """The device (or, under the simulator, host) address of array `a`'s data (0 for None): a
    key part."""
    if a is None:
        return 0
    face = getattr(a, "__cuda_array_interface__", None) or a.__array_interface__
    return int(face["data"][0])
