"""Range of neighbour distances per centre type, and neighbour counts, accumulated over frames.

Training stores the range in the model (min_nbor_dist, and s_range for compression); `numdp
compress --data` measures it on given systems.  `NeighborCensus` gives the largest neighbour count
per neighbour type (the trainer's "auto" sel) and the closest pair (`numdp neighbor-stat`).
Kernel: numdp.kernels.cpu.envmat.pair_distance_range.
"""
from __future__ import annotations

import math

import numpy as np

from ..kernels.cpu.envmat import pair_distance_range, switch
from .extended import extend
from .nlist import build_nlist


class DistanceStats:
    """Neighbour distance range per centre type.

    rrange: (ntypes, 2) min / max distance (Å) of neighbours within rcut, (inf, -inf) until seen.
    """

    def __init__(self, ntypes: int, rcut: float, rcut_smth: float):
        self.rcut, self.rcut_smth = rcut, rcut_smth
        self.rrange = np.empty((ntypes, 2))
        self.rrange[:, 0] = np.inf
        self.rrange[:, 1] = -np.inf

    def add_pairs(self, ext_pos: np.ndarray, nlist: np.ndarray, types: np.ndarray) -> None:
        """Include the pairs of one frame: extended positions (nall, 3) Å, neighbour list
        (nloc, nnei) with -1 padding, centre types (nloc,)."""
        pair_distance_range(ext_pos, nlist, types, self.rcut, self.rrange)

    def add(self, frame) -> None:
        """Include a frame object with ext_pos, nlist and types (as the trainer's frames)."""
        self.add_pairs(frame.ext_pos, frame.nlist, frame.types)

    @property
    def min_nbor_dist(self) -> float | None:
        """Smallest neighbour distance seen (Å), or None."""
        r = float(self.rrange[:, 0].min())
        return r if math.isfinite(r) else None

    @property
    def s_range(self) -> np.ndarray:
        """(ntypes, 2) min / max of s = w(r)/r (1/Å) per centre type; zeros for unseen types."""
        out = np.zeros_like(self.rrange)
        for t, (rmin, rmax) in enumerate(self.rrange):
            if math.isfinite(rmin):
                out[t, 0] = switch(rmax, self.rcut_smth, self.rcut)[0] / rmax
                out[t, 1] = switch(rmin, self.rcut_smth, self.rcut)[0] / rmin
        return out


class NeighborCensus:
    """Largest neighbour counts and smallest pair distances within `rcut` (Å) over frames.

    max_count: (ntypes,) int64 largest number of type-t neighbours of any atom in any frame.
    rmin: (ntypes,) smallest distance (Å) from an atom of type t (as centre) to any neighbour,
        inf until seen.
    closest: (distance Å, label of the frame) of the closest pair seen, or None.

    Each frame costs one O(N) neighbour list with one slot per type: the count of every block is
    still measured (`NeighborList.max_count`), and the slot keeps the nearest neighbour of that
    type, so the nearest pair of every atom is among the kept ones.
    """

    def __init__(self, ntypes: int, rcut: float):
        self.ntypes, self.rcut = ntypes, rcut
        self.max_count = np.zeros(ntypes, dtype=np.int64)
        self._dist = DistanceStats(ntypes, rcut, 0.0)
        self.closest: tuple[float, object] | None = None

    def add(self, positions: np.ndarray, types: np.ndarray, box, label=None) -> None:
        """Include one frame: positions (N, 3) Å, types (N,) int32, box (3, 3) Å or None."""
        ext = extend(positions, types, box, self.rcut)
        nl = build_nlist(ext, self.rcut, [1] * self.ntypes, self.ntypes)
        np.maximum(self.max_count, nl.max_count, out=self.max_count)
        before = self._dist.min_nbor_dist
        self._dist.add_pairs(ext.positions, nl.nlist, np.asarray(types, dtype=np.int32))
        now = self._dist.min_nbor_dist
        if now is not None and (before is None or now < before):
            self.closest = (now, label)

    @property
    def rmin(self) -> np.ndarray:
        return self._dist.rrange[:, 0].copy()

    @property
    def min_nbor_dist(self) -> float | None:
        """Smallest pair distance within rcut seen (Å), or None."""
        return self._dist.min_nbor_dist
