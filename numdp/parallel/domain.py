"""Spatial decomposition of the periodic cell into a 3D grid of subdomains (LAMMPS' Domain).

Subdomains are boxes in fractional coordinates f = x · box⁻¹ (rows of `box` are the cell vectors):
rank (cx, cy, cz) of a (gx, gy, gz) grid owns the atoms whose wrapped f lies in
[c_k / g_k, (c_k + 1) / g_k) for k = 0, 1, 2.  Fractional slabs are parallelepipeds for a
triclinic cell, and they follow the cell when a barostat changes it, so the decomposition never
has to be redrawn.  The grid is chosen to minimise the ghost surface (Σ_k g_k / h_k, h_k the
perpendicular width of the cell across direction k) or given by the input ([parallel] grid).

Mixed boundary conditions (a slab: pbc = (True, True, False)): a non-periodic direction is never
split (one subdomain along it, `choose_grid` / `check_grid`), positions are not wrapped along it
(`wrap_images`) and no ghosts are exchanged across its faces (numdp.parallel.comm), so the grid
only ever wraps around along periodic directions.

A rank's ghost region in direction k is [lo_k - ρ_k, hi_k + ρ_k) with ρ_k = cutoff / h_k: a point
within `cutoff` (Å) of the subdomain differs from it by at most ρ_k in fractional coordinate k.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import InputError
from ..geometry import face_distances

# Relative widening of the ghost reach against round-off at the region boundaries (an extra ghost
# beyond the cutoff is harmless, a missing one is not).
REACH_MARGIN = 1e-8


def factor_triples(n: int) -> list[tuple[int, int, int]]:
    """All (gx, gy, gz) of positive integers with gx gy gz = n."""
    out = []
    for gx in range(1, n + 1):
        if n % gx:
            continue
        for gy in range(1, n // gx + 1):
            if (n // gx) % gy == 0:
                out.append((gx, gy, n // (gx * gy)))
    return out


def choose_grid(nranks: int, box, pbc=(True, True, True)) -> tuple[int, int, int]:
    """Grid of `nranks` subdomains with the least ghost surface for the cell `box` (3, 3), Å.

    The surface of one subdomain is proportional to Σ_k g_k / h_k (h_k = face distances); ties go
    to the grid that splits x first, then y.  A non-periodic system (box None) runs on one rank;
    a direction that is not periodic (`pbc`, mixed boundary conditions) is not split.
    """
    if box is None:
        if nranks != 1:
            raise InputError(f"a non-periodic system (no cell, or pbc false along a, b and c) runs on one MPI "
                             f"rank only, not {nranks}: start it without mpiexec")
        return (1, 1, 1)
    h = face_distances(box)
    triples = [g for g in factor_triples(nranks) if all(pbc[k] or g[k] == 1 for k in range(3))]
    if not triples:
        raise InputError(f"no periodic direction to split among {nranks} MPI ranks (pbc {list(pbc)})")
    best = min(triples,
               key=lambda g: (round(sum(g[k] / h[k] for k in range(3)), 9), -g[0], -g[1]))
    return tuple(int(v) for v in best)


def check_grid(grid, nranks: int, where: str, pbc=(True, True, True)) -> tuple[int, int, int]:
    """`grid` as a tuple, or InputError (naming `where`) unless it has three entries >= 1 whose
    product is `nranks` and 1 along every direction that is not periodic (`pbc`)."""
    g = tuple(int(v) for v in grid)
    if len(g) != 3 or min(g) < 1 or math.prod(g) != nranks:
        raise InputError(f"{where}: grid {list(grid)} does not fit the {nranks} MPI rank(s) of this run "
                         f"(three integers >= 1 whose product is {nranks})")
    for k in range(3):
        if g[k] > 1 and not pbc[k]:
            raise InputError(f"{where}: grid {list(grid)} splits direction {'abc'[k]}, which is not periodic "
                             f"(pbc {list(pbc)}); a non-periodic direction has one subdomain")
    return g


def ghost_reach(box: np.ndarray, cutoff: float) -> np.ndarray:
    """(3,) fractional reach ρ_k = cutoff (1 + REACH_MARGIN) / h_k of the ghost region."""
    return cutoff * (1.0 + REACH_MARGIN) / face_distances(box)


class Domain:
    """This rank's place in the grid.

    grid: (3,) int64 subdomains along a, b, c; rank: this rank (x-major numbering:
    rank = (cx gy + cy) gz + cz); coords: (3,) int64 (cx, cy, cz); lo, hi: (3,) fractional bounds
    of the subdomain; periodic: False for a system without a cell (then grid must be 1 x 1 x 1
    and nothing is ever exchanged).
    """

    def __init__(self, grid, rank: int, periodic: bool = True):
        self.grid = np.asarray(grid, dtype=np.int64)
        self.rank = int(rank)
        self.periodic = bool(periodic)
        self.coords = self.coords_of(self.rank)
        self.lo = self.coords / self.grid
        self.hi = (self.coords + 1) / self.grid

    @property
    def nranks(self) -> int:
        return int(np.prod(self.grid))

    def coords_of(self, rank: int) -> np.ndarray:
        g = self.grid
        return np.array([rank // (g[1] * g[2]), (rank // g[2]) % g[1], rank % g[2]], dtype=np.int64)

    def rank_of(self, coords) -> int:
        """Rank of grid coordinates (taken periodically)."""
        c = np.mod(np.asarray(coords, dtype=np.int64), self.grid)
        return int((c[0] * self.grid[1] + c[1]) * self.grid[2] + c[2])

    def neighbor(self, dim: int, step: int) -> int:
        """Rank `step` subdomains away along `dim` (periodic; may be this rank)."""
        c = self.coords.copy()
        c[dim] += step
        return self.rank_of(c)

    def cells_of(self, frac: np.ndarray) -> np.ndarray:
        """(n, 3) int64 grid coordinates of the subdomains holding wrapped fractional coordinates
        `frac` (n, 3) (values just outside [0, 1) from round-off are clamped)."""
        c = np.floor(np.asarray(frac) * self.grid).astype(np.int64)
        return np.clip(c, 0, self.grid - 1)

    def owners(self, frac: np.ndarray) -> np.ndarray:
        """(n,) int64 rank owning each wrapped fractional coordinate (n, 3)."""
        c = self.cells_of(frac)
        return (c[:, 0] * self.grid[1] + c[:, 1]) * self.grid[2] + c[:, 2]


def wrap_images(positions: np.ndarray, box: np.ndarray, pbc=(True, True, True)):
    """(wrapped fractional coordinates (n, 3), integer images (n, 3) float64) of unwrapped
    positions (n, 3) Å: f = x · box⁻¹ = f_wrapped + image, f_wrapped in [0, 1) up to round-off
    along the periodic directions (`pbc`); along a non-periodic one the image is 0 (no wrapping)."""
    f = positions @ np.linalg.inv(box)
    image = np.floor(f)
    for k in range(3):
        if not pbc[k]:
            image[:, k] = 0.0
    return f - image, image


def describe_grid(grid, box, cutoff: float) -> str:
    """One line: the grid and the subdomain widths (Å), with a note when one is under the cutoff."""
    g = np.asarray(grid)
    if box is None:
        return "1 x 1 x 1 (no cell)"
    widths = face_distances(box) / g
    text = f"{g[0]} x {g[1]} x {g[2]}, subdomain widths {', '.join(f'{w:.2f}' for w in widths)} A"
    thin = [k for k in range(3) if g[k] > 1 and widths[k] < cutoff]
    if thin:
        text += f" (thinner than the ghost cutoff {cutoff:.2f} A along {', '.join('abc'[k] for k in thin)}: " \
                f"ghosts come over several hops)"
    return text

