"""Crystal lattices as start structures: `[system] lattice` (numdp run), LAMMPS' `lattice`,
`region ... block`, `create_box` and `create_atoms ... box` (numdp lmp).

A lattice of style s and constant a has an orthogonal unit cell of edges a x (1, ry, rz) (LAMMPS'
lattice spacings; ry = √3, rz = √(8/3) for hcp, 1 otherwise) and basis atoms at fractional
positions of that cell, LAMMPS' (src/lattice.cpp) in LAMMPS' order.  `cells` = (nx, ny, nz) unit
cells fill the box; atoms are made in LAMMPS' create_atoms order on one process: unit cells with x
fastest, then y, then z, the basis atoms fastest of all (the atom ids LAMMPS gives them).
tests/test_lattice.py compares every style with data files LAMMPS 22 Jul 2025 wrote
(tools/make_lattice_fixtures.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_FCC = ((0.0, 0.0, 0.0), (0.5, 0.5, 0.0), (0.5, 0.0, 0.5), (0.0, 0.5, 0.5))
BASES: dict[str, tuple[tuple[float, float, float], ...]] = {
    "sc": ((0.0, 0.0, 0.0),),
    "bcc": ((0.0, 0.0, 0.0), (0.5, 0.5, 0.5)),
    "fcc": _FCC,
    "hcp": ((0.0, 0.0, 0.0), (0.5, 0.5, 0.0), (0.5, 5.0 / 6.0, 0.5), (0.0, 1.0 / 3.0, 0.5)),
    "diamond": ((0.0, 0.0, 0.0), (0.0, 0.5, 0.5), (0.5, 0.0, 0.5), (0.5, 0.5, 0.0),
                (0.25, 0.25, 0.25), (0.25, 0.75, 0.75), (0.75, 0.25, 0.75), (0.75, 0.75, 0.25)),
}
STYLES = tuple(BASES)


def spacings(style: str, a: float) -> np.ndarray:
    """(3,) Å: the unit cell's edges (LAMMPS' xlattice, ylattice, zlattice)."""
    if style == "hcp":
        return np.array([a, a * math.sqrt(3.0), a * math.sqrt(8.0 / 3.0)])
    return np.array([a, a, a])


@dataclass(frozen=True)
class Lattice:
    """style (STYLES), a (Å), cells (nx, ny, nz) unit cells, elements: one element for every
    basis atom, or one per basis atom (LAMMPS' create_atoms `basis M T`)."""

    style: str
    a: float
    cells: tuple[int, int, int]
    elements: tuple[str, ...]

    @property
    def nbasis(self) -> int:
        return len(BASES[self.style])

    def build(self):
        """(positions (N, 3) Å, elements (N,), box (3, 3) diagonal) in LAMMPS' create_atoms order."""
        nx, ny, nz = self.cells
        edge = spacings(self.style, self.a)
        basis = np.array(BASES[self.style]) * edge
        k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
        origins = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1) * edge   # x fastest
        positions = (origins[:, None, :] + basis[None, :, :]).reshape(-1, 3)
        per_basis = self.elements if len(self.elements) == self.nbasis else self.elements * self.nbasis
        elements = list(per_basis) * (nx * ny * nz)
        return positions, elements, np.diag(edge * np.array(self.cells, dtype=np.float64))


def lattice_structure(lattice: Lattice, source: str):
    """The lattice as a numdp.io.structure.Structure (periodic box, no velocities)."""
    from .io.structure import Structure

    positions, elements, box = lattice.build()
    return Structure(positions=positions, box=box, elements=elements, type_ids=None, velocities=None,
                     masses=None, source=source)
