"""The Lennard-Jones cases of the fixture tools that need no DeePMD model (the LJ cases of
tools/make_minimize_cg_fixtures.py, tools/make_box_relax_fixtures.py, tools/make_setforce_fixtures.py):
one home for the potential's LAMMPS lines and the jittered crystal they start from.

The potential is tests/test_md_potential.py's shifted-force LennardJones(eps=1.0) (sigma 3.40 Å,
cutoff 8.5 Å), LAMMPS' `pair_style lj/smooth/linear 8.5`, `pair_coeff * * 1.0 3.40`; the crystal is
tests/test_minimize.py's: the 32-atom fcc block of lattice constant A = 5.3 Å (box 10.6 Å) with a
Gaussian jitter of 0.1 Å (numpy's default_rng(2)); the mass MASS g/mol is argon's.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import lammps_oracle

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from test_md_potential import MASS_AR, fcc  # noqa: E402  (tests/ is on the path from here)

MASS = MASS_AR   # g/mol (argon)

A = 5.3   # Å, the fcc lattice constant
PAIR = "pair_style lj/smooth/linear 8.5\npair_coeff * * 1.0 3.40"


def head(data: str = "start.data") -> str:
    """The first lines of an LJ case's LAMMPS script (lammps_oracle.head with PAIR)."""
    return lammps_oracle.head(data, PAIR)


def crystal() -> tuple[np.ndarray, np.ndarray]:
    """(positions (32, 3) Å, cell (3, 3) Å, rows a, b, c) of the jittered fcc crystal."""
    x, box = fcc(2, A)
    return x + np.random.default_rng(2).normal(scale=0.1, size=x.shape), box
