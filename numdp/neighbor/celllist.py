"""Candidate pairs within a cutoff, found with an O(N) cell list.

The cell list is a Cartesian grid over the bounding box of the extended atoms (periodic or not:
ghosts make the periodic search an open-boundary one).  Cells are at least cutoff / reach wide along
x, y and z and each centre scans the (2 reach + 1)³ cells around its own; rows of cells along x are
contiguous in the sorted order, so the scan is (2 reach + 1)² contiguous ranges.  Cubic cells fit a
sphere better than the skewed cells of a tilted lattice, so the Cartesian grid also suits triclinic
boxes (its only cost there is some empty cells in the corners of the bounding box).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from numdp.neighbor.extended import Extended, _check_cutoff, check_extended_positions
from numdp.kernels.cpu import neighbor as _k
from numdp.neighbor.threads import one_launcher

__all__ = ["Candidates", "CellGrid", "find_candidates", "grid_dims", "DEFAULT_REACH"]

# Stencil half-width in cells (cells >= cutoff / reach wide).  Measured with tools/bench_neighbor.py
# on liquid water (rcut 6 Å, 12288 atoms): reach 1 / 2 / 3 scan about 7.1 / 4.1 / 3.3 atoms per
# neighbour found; candidate search 2.9 / 2.1 / 2.2 µs per atom on one thread: reach 2 is fastest.
DEFAULT_REACH = 2

# Relative widening of the cells against round-off at cell boundaries.
_CELL_MARGIN = 1e-8


@dataclass
class Candidates:
    """Candidate neighbours of each local atom in CSR form.

    offsets: (nloc + 1,) int64; indices: (offsets[-1],) int32 extended indices.  For local atom i,
    indices[offsets[i]:offsets[i+1]] are all extended atoms j != i with r_ij <= cutoff (any type),
    in a deterministic (cell-scan) order.  cutoff: Å.
    """

    offsets: np.ndarray
    indices: np.ndarray
    cutoff: float

    @property
    def nloc(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def counts(self) -> np.ndarray:
        """(nloc,) int64 number of candidates of each local atom."""
        return np.diff(self.offsets)


@dataclass
class CellGrid:
    """Atoms sorted into a Cartesian grid (outputs of `numdp.kernels.cpu.neighbor.bin_atoms`).

    lo (3,) Å origin; inv_width (3,) cells per Å; nbins (3,) int64 cells along x, y, z;
    cell_start (ncell + 1,) int64; order (nall,) int32; sx, sy, sz (nall,) sorted coordinates;
    scell (nall,) int64 sorted cell index; centres (nloc,) int64 sorted positions of local atoms;
    reach: stencil half-width in cells.
    """

    lo: np.ndarray
    inv_width: np.ndarray
    nbins: np.ndarray
    cell_start: np.ndarray
    order: np.ndarray
    sx: np.ndarray
    sy: np.ndarray
    sz: np.ndarray
    scell: np.ndarray
    centres: np.ndarray
    reach: int


def grid_shape(positions: np.ndarray, cutoff: float, reach: int):
    """Origin (3,), cells per Å (3,) and cell counts (3,) int64 of the grid over `positions` (nall, 3).

    Cells are at least cutoff * (1 + 1e-8) / reach wide; the number of cells is capped near
    4 nall (wider cells are still correct, only slower) so that sparse systems stay O(N).
    """
    nall = positions.shape[0]
    if nall == 0:
        return np.zeros(3), np.zeros(3), np.ones(3, dtype=np.int64)
    lo = np.empty(3)
    hi = np.empty(3)
    with one_launcher():
        _k.bounding_box(positions, lo, hi)
    inv_width, nb = grid_dims(lo, hi, nall, cutoff, reach)
    return lo, inv_width, nb


def grid_dims(lo: np.ndarray, hi: np.ndarray, nall: int, cutoff: float, reach: int):
    """Cells per Å (3,) and cell counts (3,) int64 of the grid over the bounding box [lo, hi] (Å) of
    nall >= 1 atoms (rules: `grid_shape`; shared with the CUDA neighbour search)."""
    extent = hi - lo
    width = cutoff * (1.0 + _CELL_MARGIN) / reach
    limit = 4.0 * nall + 27.0
    nb = np.clip(np.floor(extent / width), 1.0, limit)  # float: no integer overflow in the product
    while float(np.prod(nb)) > limit:
        factor = (float(np.prod(nb)) / limit) ** (1.0 / 3.0)
        nb = np.maximum(1.0, np.floor(nb / max(factor, 1.01)))
    nb = nb.astype(np.int64)
    inv_width = np.where(extent > 0.0, nb / np.where(extent > 0.0, extent, 1.0), 0.0)
    return inv_width, nb


def build_grid(positions: np.ndarray, nloc: int, cutoff: float, reach: int = DEFAULT_REACH) -> CellGrid:
    """Sort extended atoms (nall, 3), Å, into cells for a search radius `cutoff` (Å)."""
    pos = np.ascontiguousarray(positions, dtype=np.float64)
    nall = pos.shape[0]
    lo, inv_width, nb = grid_shape(pos, cutoff, reach)
    ncell = int(np.prod(nb))
    cell_start = np.empty(ncell + 1, dtype=np.int64)
    order = np.empty(nall, dtype=np.int32)
    sx = np.empty(nall)
    sy = np.empty(nall)
    sz = np.empty(nall)
    scell = np.empty(nall, dtype=np.int64)
    centres = np.empty(nloc, dtype=np.int64)
    with one_launcher():
        _k.bin_atoms(pos, lo, inv_width, nb, nloc, cell_start, order, sx, sy, sz, scell, centres)
    return CellGrid(lo, inv_width, nb, cell_start, order, sx, sy, sz, scell, centres, reach)


def find_candidates(ext: Extended, cutoff, positions=None, reach: int = DEFAULT_REACH) -> Candidates:
    """All pairs (i local, j extended, j != i) with r_ij <= cutoff, as CSR `Candidates`.

    Args:
        ext: extended atoms; its ghost set must be complete for `cutoff` (cutoff <= ext.cutoff).
        cutoff: search radius, Å (for MD: rcut + skin).
        positions: optional (nall, 3) coordinates (Å) to use instead of ext.positions.
        reach: stencil half-width in cells (a tuning knob; every value gives the same pairs).
    """
    c = _check_cutoff(cutoff)
    if c > ext.cutoff * (1.0 + 1e-12):
        raise ValueError(
            f"cutoff {c} A exceeds the cutoff {ext.cutoff} A the extended atoms were built for"
        )
    if int(reach) < 1:
        raise ValueError(f"reach must be >= 1, got {reach}")
    pos = check_extended_positions(ext, positions)
    nloc = ext.nloc
    grid = build_grid(pos, nloc, c, int(reach))
    counts = np.empty(nloc, dtype=np.int64)
    c2 = c * c
    args = (grid.sx, grid.sy, grid.sz, grid.order, grid.scell, grid.cell_start, grid.nbins, grid.reach,
            grid.centres, c2)
    if nloc:
        with one_launcher():
            _k.count_candidates(*args, counts)
    offsets = np.zeros(nloc + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    indices = np.empty(int(offsets[-1]), dtype=np.int32)
    if nloc:
        with one_launcher():
            _k.fill_candidates(*args, offsets, indices)
    return Candidates(offsets=offsets, indices=indices, cutoff=c)
