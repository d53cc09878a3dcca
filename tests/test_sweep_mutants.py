"""Tests added by a mutation sweep of the physics (2026-12): each kills a plausible mistake that
the rest of the suite let through (the mutant named in the test's docstring)."""
from __future__ import annotations

import numpy as np
import pytest

from numdp.md.forces import ForceProvider
from numdp.system import State
from test_md_potential import LennardJones

U = np.finfo(float).eps / 2   # unit round-off


@pytest.mark.parametrize("case", ["skin", "shell"])
def test_a_pair_entering_the_cutoff_through_a_periodic_face_is_seen_without_a_fresh_list(case):
    """Two atoms approach each other across the cell face x = 0 (each through the other's periodic
    image), and the MD force provider must give the forces of a full rebuild at every call.

    "skin": the pair starts beyond rcut + skin (B's image outside the ghost shell) and each atom
    moves 0.6 skin toward the other: the pair ends 0.36 Å inside rcut.  The list must be rebuilt,
    since a pair can close by twice the largest displacement (numdp.md.forces.needs_rebuild: 2d >=
    skin).  Mutant killed: the test d >= skin (skin instead of skin/2), which keeps the old ghosts.
    "shell": the pair starts at rcut + 0.2 skin + 0.65 Å, B's image 0.2 skin beyond rcut from the
    face, and each atom moves 0.3 skin (no rebuild due): the image comes within rcut of A, so it
    must be in the ghost shell from the start.  Mutant killed: a shell of width rcut instead of
    rcut + skin.

    Bound: both evaluations take the pair vector from positions of size <= L that differ by a
    lattice vector, a few roundings each (|δr| <= 8 u L); the shifted-force LJ force vanishes
    linearly at rcut, so |δF|/|F| <= |δr| / (rcut - r).  Either mutant drops the pair from A's
    side (half the pair's force or all of it missing)."""
    lj = LennardJones()
    rc, skin, length = lj.rcut, 2.0, 30.0
    box = np.eye(3) * length
    if case == "skin":
        xa, gap, move = 0.01, rc + 1.02 * skin, 0.6 * skin   # gap: A to B's image at the start
    else:
        xa, gap, move = 0.05 + 0.3 * skin, rc + 0.2 * skin + 0.05 + 0.3 * skin, 0.3 * skin
    pos = np.array([[xa, 15.0, 15.0], [xa - gap + length, 15.0, 15.0]])
    st = State(positions=pos, velocities=np.zeros((2, 3)), types=np.zeros(2, dtype=np.int32),
               masses=np.full(2, 39.948), box=box, type_map=["Ar"], ids=np.arange(2), seed=1)
    fp = ForceProvider(lj, skin)
    fp(st)
    assert np.all(st.forces == 0.0)   # beyond rcut: no pair at the start
    st.positions = st.positions + np.array([[-move, 0.0, 0.0], [move, 0.0, 0.0]])
    fp(st)
    r = gap - 2.0 * move
    assert r < rc - 0.1
    energy, forces, virial = lj.energy_forces_virial(st.positions, box)
    assert abs(forces[0, 0]) > 0.0 and forces[0, 0] == -forces[1, 0]
    bound = 8.0 * U * length / (rc - r)
    assert np.abs(st.forces - forces).max() <= bound * np.abs(forces).max()
    assert abs(st.potential_energy - energy) <= bound * abs(energy)
    assert fp.rebuilds == (2 if case == "skin" else 1)


def test_a_neighbour_at_exactly_rcut_is_listed_as_deepmd_kit_lists_it():
    """DeePMD-kit's neighbour list keeps the pairs with r <= rcut (deepmd.pt.utils.nlist masks
    rr > rcut), and numdp's docstrings say the same (format_nlist: r <= rcut); a lattice puts
    whole shells at exactly rcut.  Simple cubic, a = 2 Å, 4³ cells (L = 8 Å), rcut = 4 Å: every
    atom has the 6 + 12 + 8 + 6 = 32 images with i² + j² + k² <= 4 (the last 6 at exactly rcut;
    fractional coordinates are multiples of 1/4 and the cell a power of two, so the wrapped and
    image coordinates and the squared distances are exact in floating point).  Mutant
    killed: the strict test r² < rcut² (26 neighbours), which changes the counts that overflow
    warnings and neighbour statistics report (the model's output is the same: a row at r = rcut
    has w = 0 and equals a padding row)."""
    from numdp.neighbor import build_nlist, extend, find_candidates, format_nlist

    g = np.arange(4) * 2.0
    pos = np.array([[x, y, z] for x in g for y in g for z in g])
    types = np.zeros(len(pos), dtype=np.int32)
    box = np.eye(3) * 8.0
    ext = extend(pos, types, box, 4.0)
    wide = extend(pos, types, box, 5.0)   # an MD list's candidates within rcut + skin
    for e, nl in ((ext, build_nlist(ext, 4.0, [40], 1)),
                  (wide, format_nlist(wide, find_candidates(wide, 5.0), 4.0, [40], 1))):
        assert (nl.nlist >= 0).sum(axis=1).tolist() == [32] * len(pos)
        assert nl.max_count.tolist() == [32]
        for i in (0, 21):
            d = e.positions[nl.nlist[i, :32]] - e.positions[i]
            assert sorted(np.einsum("ij,ij->i", d, d).tolist()).count(16.0) == 6


def test_hydrostatic_pressure_does_not_shear_a_tilted_cell():
    """Stochastic cell rescaling, triclinic coupling: the drift of a tilt T_ij (i > j) is
    (β_T/3τ) L_j (h⁻ᵀ P_int)_ij (numdp.md.barostat's docstring), and h⁻ᵀ is upper-triangular for a
    lower-triangular h, so a hydrostatic P_int = p I drives no tilt at all.  At T = 0 (no noise)
    and p = P0 one step must leave the tilts T = h diag(L)⁻¹ as they are, up to round-off: the
    entries of h⁻ᵀ below the diagonal come out of the inversion at the level u |h⁻¹| and the
    tilts are recomputed from h (a few roundings of |T| <= 1).  Mutant killed: (h⁻ᵀ P)_ji for
    (h⁻ᵀ P)_ij, which agrees for a cubic cell without tilt (so the liquid-argon test passes) but
    shears a tilted cell under plain pressure (here by about 1e-2)."""
    from numdp.md.barostat import StochasticCellRescaling
    from numdp.units import EV_PER_A3_TO_BAR

    box = np.array([[10.0, 0.0, 0.0], [3.0, 11.0, 0.0], [-2.0, 4.0, 12.0]])
    volume = float(np.linalg.det(box))
    p0, dt, tau, beta = 1000.0, 0.1, 1.0, 1e-3   # bar, ps, ps, 1/bar
    st = State(positions=np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), velocities=np.zeros((2, 3)),
               types=np.zeros(2, dtype=np.int32), masses=np.full(2, 39.948), box=box.copy(),
               type_map=["Ar"], ids=np.arange(2), seed=5)
    st.virial = np.eye(3) * (p0 / EV_PER_A3_TO_BAR * volume)   # P_int = P0 I, eV
    baro = StochasticCellRescaling(p0, tau, beta, "triclinic", 0.0)
    baro.initialize(st)
    new = baro.new_box(st, dt)
    tilt = box / np.diag(box)[None, :]
    new_tilt = new / np.diag(new)[None, :]
    rate_dt = beta * p0 * dt / (3.0 * tau)   # (β_T p / 3τ) dt, dimensionless
    bound = 16.0 * U * (1.0 + rate_dt * box.max() * np.abs(np.linalg.inv(box)).max())
    below = np.tril_indices(3, -1)
    assert np.abs(new_tilt[below] - tilt[below]).max() <= bound
    np.testing.assert_array_equal(np.triu(new, 1), 0.0)


def test_maxwell_boltzmann_start_gives_each_species_the_target_temperature():
    """Velocities drawn with the variance kT/m of each atom's own mass (LAMMPS' `velocity create`
    also scales each atom's random velocity by 1/sqrt(m)): the light and the heavy species start
    at the same temperature.  2000 H (1.008 amu) and 2000 O (15.999 amu) at 300 K:
    the total is exact (rescaled), each species' temperature T_s / T - 1 = (δ_H - δ_O) / 2 with
    δ_s the relative error of a χ² of 3n dof (variance 2/(3n)), so its standard deviation is
    sqrt(1/(3n)) = 0.013; 5σ = 0.065.  Mutant killed: one velocity scale for all masses (the
    species' temperatures then go as their masses: 0.11 T and 1.89 T)."""
    from numdp.md.start import maxwell_boltzmann
    from numdp.system import kinetic_energy
    from numdp.units import KB

    n, temp = 2000, 300.0
    masses = np.concatenate([np.full(n, 1.008), np.full(n, 15.999)])
    rng = np.random.default_rng(2)
    st = State(positions=rng.uniform(0.0, 40.0, (2 * n, 3)), velocities=np.zeros((2 * n, 3)),
               types=np.repeat(np.arange(2, dtype=np.int32), n), masses=masses, box=np.eye(3) * 40.0,
               type_map=["H", "O"], ids=np.arange(2 * n), seed=7)
    maxwell_boltzmann(st, temp, 11)
    sigma = (1.0 / (3.0 * n)) ** 0.5
    for s in (slice(0, n), slice(n, 2 * n)):
        t_s = 2.0 * kinetic_energy(st.velocities[s], masses[s]) / (3 * n * KB)
        assert abs(t_s / temp - 1.0) <= 5.0 * sigma
