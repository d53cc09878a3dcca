"""A neighbour list that is never stored whole: rows formatted on demand from a cell list.

A formatted DeePMD-kit list costs 4 bytes per slot, sum(sel) slots per atom (552 bytes for the
water model's sel [46, 92]).  `NeighborRows` holds only the cell list of the extended atoms
(about 50 bytes per extended atom) and formats the rows of the centre atoms a caller asks for,
into the caller's buffer: the model evaluator asks chunk by chunk (numdp.model.evaluator), so the
list never exists for more than one chunk per worker thread.  Every row equals the row of
`build_nlist` on the same coordinates, bit for bit (the same kernel body,
`numdp.kernels.cpu.neighbor.scan_rows`).

Overflow counts and the closest pair are gathered while the rows are formatted, so they are
complete once every row has been asked for once (one model evaluation).
"""
from __future__ import annotations

import math
import threading

import numpy as np

from numdp.kernels.cpu import neighbor as _k
from numdp.neighbor.celllist import build_grid
from numdp.neighbor.extended import Extended, _check_cutoff, check_extended_positions
from numdp.neighbor.nlist import _check_sel, check_key_limits, slot_offsets

__all__ = ["NeighborRows"]


class NeighborRows:
    """Rows of the neighbour list within rcut of ext's local atoms, formatted on request.

    ext: extended atoms built for a cutoff >= rcut (Å); positions: optional (nall, 3) Å to use
    instead of ext.positions (kept by reference: they must not change while rows are asked for);
    sel: (ntypes,) slots per type.
    Attributes: nnei = sum(sel); overflow (ntypes,) int64 centre atoms whose type-t block was
    truncated and max_count (ntypes,) int64 largest type-t count, over the rows formatted so far
    (each row should be asked for once); closest: (distance Å, centre, extended neighbour) of the
    nearest first-slot neighbour so far, as `numdp.kernels.cpu.md.closest_pair` of the whole list.
    """

    def __init__(self, ext: Extended, rcut, sel, ntypes: int, positions=None):
        rc = _check_cutoff(rcut, "rcut")
        ntypes = int(ntypes)
        if rc > ext.cutoff * (1.0 + 1e-12):
            raise ValueError(f"rcut {rc} A exceeds the cutoff {ext.cutoff} A the extended atoms were built for")
        check_key_limits(ext.nall, rc, ntypes)
        self.sel = _check_sel(sel, ntypes)
        self.sec = slot_offsets(self.sel)
        self.nnei = int(self.sec[-1])
        self.nloc = ext.nloc
        self.rcut2 = rc * rc
        self.types = ext.types
        self.positions = check_extended_positions(ext, positions)
        self.grid = build_grid(self.positions, ext.nloc, rc)
        self.where = np.empty(ext.nloc, dtype=np.int32)
        _k.sorted_positions(self.grid.order, ext.nloc, self.where)
        self.overflow = np.zeros(ntypes, dtype=np.int64)
        self.max_count = np.zeros(ntypes, dtype=np.int64)
        self._closest = (math.inf, -1, -1)  # (squared distance, centre, neighbour)
        self._lock = threading.Lock()

    @property
    def overflowed(self) -> bool:
        """True when at least one block of the rows formatted so far was truncated."""
        return bool(self.overflow.any())

    @property
    def closest(self) -> tuple[float, int, int]:
        d2, i, j = self._closest
        return math.sqrt(d2), i, j

    def rows(self, atoms: np.ndarray, out: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
        """Fill out (len(atoms), nnei) int32 with the rows of local atoms `atoms` ((na,) int64, any
        order) and return it.  counts: optional (na, ntypes) int32 scratch.  Thread-safe: workers
        may ask for disjoint atoms at the same time."""
        g = self.grid
        na = atoms.shape[0]
        if counts is None:
            counts = np.empty((na, self.sel.shape[0]), dtype=np.int32)
        closest = np.empty(3)
        _k.scan_rows(atoms, self.where, self.positions, g.sx, g.sy, g.sz, g.order, g.scell, g.cell_start, g.nbins,
                     g.reach, self.types, self.rcut2, self.sel, self.sec, out, counts, closest)
        over = (counts > self.sel).sum(axis=0)
        most = counts.max(axis=0) if na else np.zeros_like(self.max_count)
        with self._lock:
            self.overflow += over
            np.maximum(self.max_count, most, out=self.max_count)
            d2, i, j = float(closest[0]), int(closest[1]), int(closest[2])
            b2, bi, _ = self._closest
            if i >= 0 and (d2 < b2 or (d2 == b2 and i < bi)):
                self._closest = (d2, i, j)
        return out

    def release(self) -> None:
        """Drop the cell list (no more rows can be asked for)."""
        self.grid = None
        self.where = None
