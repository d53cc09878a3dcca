"""Named scratch arrays that are reused from call to call.

An evaluation needs tens of megabytes of scratch per worker (G and dG/dx of a chunk alone take
~140 kB per atom).  Allocating it afresh for every chunk makes the C library map new pages from
the kernel and fault them in at first touch on every call: measured at 16 000-24 000 page faults
and 20-25 % of a 1 536-atom evaluation.  A Workspace keeps one growing buffer per name instead,
so after the first call an evaluation touches only memory it already owns.
"""
from __future__ import annotations

import threading

import numpy as np


class Workspace:
    """Scratch buffers by key (any hashable); `get` returns a view of the requested shape.

    Views of one key alias each other: a caller must not hold two live views of the same key.
    Buffers only grow (by 25 % headroom), so the memory held is bounded by the largest request.
    """

    def __init__(self) -> None:
        self._bufs: dict = {}

    def get(self, key, shape, dtype=np.float64) -> np.ndarray:
        """An uninitialised C-contiguous array of `shape` and `dtype` backed by buffer `key`."""
        # called tens of times per chunk: plain Python arithmetic, no NumPy helpers
        if not isinstance(shape, tuple):
            shape = (int(shape),)
        n = 1
        for s in shape:
            n *= s
        buf = self._bufs.get(key)
        if buf is None or buf.dtype != dtype or buf.size < n:
            buf = np.empty(max(n, int(n * 1.25) + 64), dtype)
            self._bufs[key] = buf
        return buf[:n].reshape(shape)

    def zeros(self, key, shape, dtype=np.float64) -> np.ndarray:
        """As `get`, filled with zeros."""
        a = self.get(key, shape, dtype)
        a.fill(0)
        return a

    @property
    def nbytes(self) -> int:
        """Bytes held by all buffers."""
        return sum(b.nbytes for b in self._bufs.values())


class ThreadWorkspaces:
    """One Workspace per thread, so that pool workers never share scratch memory."""

    def __init__(self) -> None:
        self._local = threading.local()

    def get(self) -> Workspace:
        """The calling thread's workspace (created on first use)."""
        ws = getattr(self._local, "ws", None)
        if ws is None:
            ws = self._local.ws = Workspace()
        return ws
