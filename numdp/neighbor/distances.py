"""Range of neighbour distances per centre type, accumulated over frames.

Training stores it in the model (min_nbor_dist, and s_range for compression); `numdp compress
--data` measures it on given systems.  Kernel: numdp.kernels.cpu.envmat.pair_distance_range.
"""
from __future__ import annotations

import math

import numpy as np

from ..kernels.cpu.envmat import pair_distance_range, switch


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
