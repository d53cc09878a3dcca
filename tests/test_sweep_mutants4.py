"""Tests for the survivors of the fourth round of mutation testing (minimizers, thermostats and
barostats, numdp lmp's translation, the ASE calculator and the i-PI driver): each fails on one
plausible mistake that the rest of the suite let through (the mutant is named in the test's
docstring; 2026-12-07).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from numdp.config import BoxRelaxSettings, LineSearch, MinimizeSettings
from numdp.md.boxrelax import BoxRelax
from numdp.md.linesearch import LineSearchMinimizer
from numdp.md.minimize import StopReason
from numdp.md.thermostats import Langevin, StochasticVelocityRescaling
from numdp.system import State, kinetic_energy
from numdp.units import KB

U = np.finfo(float).eps / 2   # unit round-off


def _state(positions: np.ndarray, velocities=None, masses=None, box=None) -> State:
    n = len(positions)
    return State(positions=np.array(positions, dtype=np.float64),
                 velocities=np.zeros((n, 3)) if velocities is None else np.array(velocities, dtype=np.float64),
                 types=np.zeros(n, np.int32), masses=np.ones(n) if masses is None else np.asarray(masses, float),
                 box=box, type_map=["A"], ids=np.arange(n))


def _well(k: np.ndarray, target: np.ndarray):
    """A separable harmonic well E = ½ Σ k_c (x - x*)_c² (eV, k (3,) eV/Å² per Cartesian axis):
    the force provider of a line-search minimizer."""
    def forces(state):
        d = state.positions - target
        state.potential_energy = 0.5 * float(np.sum(k * d * d))
        state.forces = -k * d
    return forces


def _backtrack_run(k, x0, steps: int, **settings) -> tuple[State, LineSearchMinimizer, list]:
    """cg with `line backtrack` in the well of `k` from x0 (1, 3) Å (its minimum at 0); (h, F)
    after each iteration."""
    target = np.zeros((1, 3))
    forces = _well(np.asarray(k, float), target)
    state = _state(x0)
    m = LineSearchMinimizer(MinimizeSettings(steps=steps, style="cg", ftol=0.0, etol=0.0,
                                             line=LineSearch.BACKTRACK, **settings))
    m.initialize(state)
    forces(state)
    directions = []   # (h, F) after each iteration
    for _ in range(steps):
        m.step(state, forces)
        directions.append((state.minimize["direction"].copy(), state.forces.copy()))
        if m.finished is not None:
            break
    return state, m, directions


def test_maxeval_stops_when_the_evaluations_reach_it():
    """LAMMPS' minimizers stop when neval >= maxeval (min_cg.cpp: `if (neval >= update->max_eval)
    return MAXEVAL`), checked after each line search.  One evaluation per iteration here: with
    k <= 1 every steepest-descent step shrinks every force component, F·g > F·F, so beta = 0 and
    h = F; its first trial, alpha = ALPHA_MAX = 1 Å²/eV (dmax / max|h| >= 10), lowers E by
    ½ Σ k² (2 - k) x² >= 0.5 F·h, more than 0.4 F·h.  So maxeval = 3 stops after the third
    iteration.  Mutant killed: `evaluations > maxeval` (a fourth iteration)."""
    state, m, _ = _backtrack_run([0.3, 0.5, 0.7], [[0.01, -0.008, 0.006]], steps=10, maxeval=3)
    assert m.finished is StopReason.MAXEVAL
    assert state.step == 3 and float(state.minimize["evaluations"]) == 3.0


def test_cg_restarts_with_steepest_descent_every_3n_iterations():
    """LAMMPS' cg sets beta = 0 when (niter + 1) % ndof == 0 (niter: the iterations so far, the
    current one included; ndof = 3N): with one atom the direction left by the second iteration
    is the force itself (a copy: exact), and the third iteration's is the Polak-Ribière F + beta h
    with beta = (F·F - F·g) / g·g > 0 here (the stiff axis, k > 1, overshoots).  Mutant killed:
    the restart one iteration late (iteration % 3N == 0: h = F after the third)."""
    _, m, directions = _backtrack_run([0.3, 0.3, 1.2], [[0.01, 0.01, 0.01]], steps=4)
    assert m.finished is None and len(directions) == 4
    (h2, f2), (h3, f3) = directions[1], directions[2]
    assert np.array_equal(h2, f2)
    beta = (float(np.sum(f3 * f3)) - float(np.sum(f3 * f2))) / float(np.sum(f2 * f2))
    assert beta > 0.0 and float(np.sum(f3 * (f3 + beta * h2))) > 0.0   # a downhill cg direction
    # beta to 4u (|F·F| + |F·g|) / g·g (the sums' rounding), then two roundings of F + beta h
    ff, fg, gg = float(np.sum(f3 * f3)), float(np.sum(f3 * f2)), float(np.sum(f2 * f2))
    tol = 4 * U * (abs(ff) + abs(fg)) / gg * float(np.abs(h2).max()) \
        + 2 * U * float(np.abs(f3).max() + beta * np.abs(h2).max())
    assert np.allclose(h3, f3 + beta * h2, rtol=0.0, atol=tol)


def test_the_max_norm_of_a_box_relaxation_includes_the_cell_forces():
    """LAMMPS' fnorm_max and fnorm_inf take the largest of the atoms' and the fix's extra global
    dofs (fextra) together (min.cpp), as numdp's docstring says: with the atoms at rest in their
    forces (F = 0) and a cell under pressure, the max and inf norms are the cell's largest
    generalized force, and the 2-norm its length.  Mutant killed: the max (per-atom) norm
    without the cell forces."""
    box = np.diag([4.0, 4.5, 5.0])
    state = _state([[0.0, 0.0, 0.0], [2.0, 2.25, 2.5]], box=box)
    state.forces = np.zeros((2, 3))
    state.virial = np.diag([3.0, 1.0, 2.0])   # eV
    state.potential_energy = 0.0
    m = LineSearchMinimizer(MinimizeSettings(steps=5, style="cg", box=BoxRelaxSettings("anisotropic", 0.0)))
    m.initialize(state)
    fe = m.box.forces(state, state.minimize["box_reference"])
    assert np.all(np.abs(fe) > 0.0)
    norms = m.norms(state)
    assert norms.atom == norms.component == float(np.abs(fe).max())
    assert norms.two == pytest.approx(float(np.linalg.norm(fe)), rel=4 * U)


def test_anisotropic_cell_moves_keep_the_tilt_to_length_ratios():
    """fix box/relax aniso (LAMMPS' defaults scalexy, scalexz, scaleyz yes): the tilts follow the
    length they lean along, xy / ly, xz / lz and yz / lz stay the reference's; the lengths move by
    ds times the reference's.  Bound: a few roundings of the ratio (4 u relative).  Mutant killed:
    the tilts left as they were."""
    ref = np.array([[4.0, 0.0, 0.0], [1.2, 4.5, 0.0], [-0.7, 0.9, 5.0]])
    relax = BoxRelax(BoxRelaxSettings("anisotropic", 0.0))
    new = relax.cell_at(ref, ref, np.array([0.05, -0.03, 0.08]))
    assert np.diag(new) == pytest.approx(np.diag(ref) * np.array([1.05, 0.97, 1.08]), rel=4 * U)
    for (i, j), along in (((1, 0), 1), ((2, 0), 2), ((2, 1), 2)):
        assert new[i, j] / new[along, along] == pytest.approx(ref[i, j] / ref[along, along], rel=4 * U)


def test_langevin_half_step_at_zero_temperature_is_the_friction_alone():
    """The Ornstein-Uhlenbeck half-step of friction 1/tau (LAMMPS' fix langevin damp = tau: the
    velocities relax over tau) towards T = 0 has no noise: v -> exp(-h/tau) v exactly (a zero
    total momentum stays zero), and the bath takes K0 (1 - exp(-2h/tau)).  Bound: one rounding
    of the factor and of the product (3 u).  Mutant killed: friction 2/tau."""
    v0 = np.array([[1.0, -2.0, 0.5], [-1.0, 2.0, -0.5], [3.0, 0.0, 1.0], [-3.0, 0.0, -1.0]])
    state = _state(np.zeros((4, 3)), velocities=v0, masses=np.full(4, 2.0))
    th = Langevin(0.0, tau=0.1)
    th.initialize(state)
    th.half_step(state, 0.01, 0)
    c = math.exp(-0.1)
    assert np.allclose(state.velocities, c * v0, rtol=3 * U, atol=0.0)
    k0 = kinetic_energy(v0, state.masses)
    assert float(state.thermostat["heat"][0]) == pytest.approx(k0 * (1.0 - c * c), rel=64 * U)


def test_csvr_with_tau_far_below_the_step_draws_the_canonical_kinetic_energy():
    """Bussi, Donadio & Parrinello (2007, eq. A7) with c = exp(-h/tau) = 0: the new kinetic energy
    is K̄ (R1² + Σ_{i=2}^{N_f} R_i²) / N_f, a canonical draw (mean K̄ = N_f kT / 2, whatever the
    old K), and the velocities' component along the old ones has the sign of R1: reversed in half
    of the draws.  N_f = 3 (two atoms), M = 2000 draws (steps): the mean of K / K̄ has standard
    deviation sqrt(2 / (N_f M)) = 0.018 and the reversed fraction sqrt(1/(4M)) = 0.011; both are
    checked to 6 sigma.  Mutants killed: N_f instead of N_f - 1 squared normals besides R1 (mean
    (N_f + 1)/N_f: +33 %), and the sign of R1 ignored (no reversal)."""
    t, nf, draws = 300.0, 3, 2000
    v0 = np.array([[1.0, 2.0, -1.0], [-1.0, -2.0, 1.0]])
    th = StochasticVelocityRescaling(t, tau=1e-6)   # h / tau = 1e4: c = 0
    ratios, reversed_ = [], 0
    target = 0.5 * nf * KB * t
    for step in range(draws):
        state = _state(np.zeros((2, 3)), velocities=v0)
        state.step = step
        th.initialize(state)
        assert state.dof == nf
        th.half_step(state, 0.01, 0)
        scale = state.velocities[0, 0] / v0[0, 0]
        assert np.allclose(state.velocities, scale * v0, rtol=4 * U, atol=0.0)
        ratios.append(kinetic_energy(state.velocities, state.masses) / target)
        reversed_ += scale < 0.0
    assert abs(np.mean(ratios) - 1.0) < 6 * math.sqrt(2.0 / (nf * draws))
    assert abs(reversed_ / draws - 0.5) < 6 * math.sqrt(0.25 / draws)


def test_triclinic_cell_rescaling_drives_each_tilt_with_the_length_it_multiplies():
    """numdp.md.barostat, triclinic: h = T diag(L) (T unit lower-triangular), so ∂h_ab/∂T_ij =
    δ_ai δ_bj L_j and ∂(K + U)/∂T_ij = -V L_j (h⁻ᵀ P_int)_ij; with D = kT β_T / (3 V τ) the drift
    is dT_ij = (β_T / (3τ)) L_j (h⁻ᵀ P_int)_ij dt.  At T = 0 (no noise, no kT/V) and at rest
    (P_int = Ξ / V), one step moves T_ij by exactly that.  Bound: a few roundings of h⁻ᵀ P and of
    the products (64 u of the largest term, as the cell is built back from T and L).  Mutant
    killed: L_i instead of L_j (the cell here has L_x = 3, L_y = 6, L_z = 9)."""
    from numdp.md.barostat import StochasticCellRescaling
    from numdp.units import EV_PER_A3_TO_BAR

    box = np.array([[3.0, 0.0, 0.0], [0.9, 6.0, 0.0], [-0.6, 1.2, 9.0]])
    state = _state(np.array([[0.5, 0.5, 0.5], [2.0, 3.0, 4.0]]), box=box)
    virial = np.array([[2.0, 0.4, -0.3], [0.4, 1.0, 0.7], [-0.3, 0.7, 3.0]])   # eV
    state.virial = virial
    tau, beta, dt = 0.5, 4.5e-5, 0.002
    baro = StochasticCellRescaling(0.0, tau, beta, "triclinic", 0.0)
    baro.initialize(state)
    new = baro.new_box(state, dt)
    lengths, new_lengths = np.diag(box), np.diag(new)
    p_int = virial / abs(np.linalg.det(box))
    drive = np.linalg.inv(box).T @ p_int
    rate = beta * EV_PER_A3_TO_BAR / (3.0 * tau)
    for i, j in ((1, 0), (2, 0), (2, 1)):
        change = new[i, j] / new_lengths[j] - box[i, j] / lengths[j]
        expected = rate * lengths[j] * drive[i, j] * dt
        assert change == pytest.approx(expected, abs=64 * U * (abs(box[i, j] / lengths[j]) + abs(expected)))


@pytest.mark.parametrize("formula, value", [
    ("round(2.5)", 3.0), ("round(-2.5)", -2.0), ("round(0.49999)", 0.0),   # LAMMPS' MYROUND: halves go up
    ("-7 % 3", -1.0), ("7 % -3", 1.0),                                     # fmod: the dividend's sign
    ("2 * 3 ^ 2", 18.0), ("12 / 2 ^ 2", 3.0),                              # ^ binds tighter than * and /
])
def test_lammps_formula_rules(formula, value):
    """LAMMPS' equal-style formulas (its variable command doc and variable.cpp): round() rounds
    halves up (MYROUND: floor(x) + 1 when x - floor(x) >= 0.5), x % y is C's fmod (the sign of
    x), and ^ has a higher precedence than * and /.  Exact: small integers.  Mutants killed:
    round with > 0.5, Python's modulo, ^ on the level of * and /."""
    from numdp.lammps.script import Script

    assert Script("in.test", lambda c: None).evaluate(formula) == value
