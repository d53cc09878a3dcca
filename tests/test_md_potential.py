"""An analytic test potential for the MD tests (shifted-force Lennard-Jones) and its own checks.

`LennardJones` has the interface that numdp.md.forces.ForceProvider expects from a model:
`rcut`, `type_map`, `sel` and `compute(ext_positions, nlist, types, atom_virial=False)` returning
atom_energy (nloc,) eV, force (nall, 3) eV/Å on the extended atoms and virial (3, 3) eV with the
DeePMD-kit sign.  Argon parameters (eps 0.0104 eV, sigma 3.40 Å, m 39.948 amu).
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from numdp.neighbor import build_nlist, extend
from numdp.system import State

EPS = 0.0104
SIGMA = 3.40
MASS_AR = 39.948


class LennardJones:
    """Shifted-force LJ: phi(r) - phi(rc) - (r - rc) phi'(rc) for r < rc (energy and force continuous)."""

    def __init__(self, eps=EPS, sigma=SIGMA, rcut=2.5 * SIGMA, sel=120):
        self.eps = eps
        self.sigma = sigma
        self.rcut = float(rcut)
        self.type_map = ["Ar"]
        self.sel = [sel]
        self.calls = 0
        self._phi_c, self._dphi_c = self._phi(np.array([self.rcut]))
        self._phi_c, self._dphi_c = float(self._phi_c[0]), float(self._dphi_c[0])

    def _phi(self, r):
        sr6 = (self.sigma / r) ** 6
        phi = 4.0 * self.eps * (sr6 * sr6 - sr6)
        dphi = 4.0 * self.eps * (-12.0 * sr6 * sr6 + 6.0 * sr6) / r
        return phi, dphi

    def compute(self, ext_positions, nlist, types, atom_virial=False):
        self.calls += 1
        nloc, nnei = nlist.shape
        nall = ext_positions.shape[0]
        j = nlist.reshape(-1)
        i = np.repeat(np.arange(nloc), nnei)
        keep = j >= 0
        i, j = i[keep], j[keep]
        d = ext_positions[j] - ext_positions[i]
        r = np.sqrt(np.einsum("ij,ij->i", d, d))
        inside = r < self.rcut
        i, j, d, r = i[inside], j[inside], d[inside], r[inside]
        phi, dphi = self._phi(r)
        e = phi - self._phi_c - (r - self.rcut) * self._dphi_c
        de = dphi - self._dphi_c
        atom_energy = 0.5 * np.bincount(i, weights=e, minlength=nloc)
        g = (0.5 * de / r)[:, None] * d  # dE/dd_ij of the half pair energy, eV/Å
        force = np.zeros((nall, 3))
        for k in range(3):
            force[:, k] += np.bincount(i, weights=g[:, k], minlength=nall)
            force[:, k] -= np.bincount(j, weights=g[:, k], minlength=nall)
        virial = -(g.T @ d)
        return SimpleNamespace(atom_energy=atom_energy, force=force, virial=virial, atom_virial=None)

    def energy_forces_virial(self, positions, box):
        """Direct evaluation (full rebuild) for checks: (E eV, F (N, 3) eV/Å, virial (3, 3) eV)."""
        types = np.zeros(len(positions), dtype=np.int32)
        ext = extend(positions, types, box, self.rcut)
        nl = build_nlist(ext, self.rcut, self.sel, 1)
        out = self.compute(ext.positions, nl.nlist, types)
        f = np.zeros((len(positions), 3))
        np.add.at(f, ext.mapping, out.force)
        return float(out.atom_energy.sum()), f, out.virial


def fcc(cells, a):
    """(positions (4 n³, 3) Å, box (3, 3) Å) of an fcc crystal of cells³ conventional cells."""
    basis = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    grid = np.array([[i, j, k] for i in range(cells) for j in range(cells) for k in range(cells)], float)
    return ((grid[:, None, :] + basis[None]).reshape(-1, 3)) * a, np.eye(3) * cells * a


def argon_state(cells=2, a=5.30, seed=3, jitter=0.05, box_strain=None) -> State:
    """A jittered fcc argon State (velocities zero, types 0, masses of Ar)."""
    x, box = fcc(cells, a)
    rng = np.random.default_rng(seed)
    x = x + rng.normal(scale=jitter, size=x.shape)
    if box_strain is not None:
        m = np.eye(3) + np.asarray(box_strain)
        x, box = x @ m, box @ m
    n = len(x)
    return State(positions=x, velocities=np.zeros((n, 3)), types=np.zeros(n, dtype=np.int32),
                 masses=np.full(n, MASS_AR), box=box, type_map=["Ar"], ids=np.arange(n, dtype=np.int64), seed=seed)


# -- checks of the test potential itself ---------------------------------------------------------


def test_lj_forces_are_minus_the_energy_gradient():
    lj = LennardJones()
    st = argon_state(cells=2, jitter=0.2)
    e0, f, _ = lj.energy_forces_virial(st.positions, st.box)
    h = 1e-5
    for atom, k in [(0, 0), (5, 1), (17, 2)]:
        xp = st.positions.copy()
        xp[atom, k] += h
        xm = st.positions.copy()
        xm[atom, k] -= h
        fd = -(lj.energy_forces_virial(xp, st.box)[0] - lj.energy_forces_virial(xm, st.box)[0]) / (2 * h)
        assert f[atom, k] == pytest.approx(fd, abs=1e-7)
    assert np.abs(f.sum(axis=0)).max() < 1e-12


def test_lj_virial_is_minus_the_strain_derivative():
    lj = LennardJones()
    st = argon_state(cells=2, jitter=0.2)
    _, _, w = lj.energy_forces_virial(st.positions, st.box)
    h = 1e-6
    for a, b in [(0, 0), (1, 2), (2, 1)]:
        eps = np.zeros((3, 3))
        eps[a, b] = h
        ep = lj.energy_forces_virial(st.positions @ (np.eye(3) + eps), st.box @ (np.eye(3) + eps))[0]
        em = lj.energy_forces_virial(st.positions @ (np.eye(3) - eps), st.box @ (np.eye(3) - eps))[0]
        assert w[b, a] == pytest.approx(-(ep - em) / (2 * h), abs=1e-7)
