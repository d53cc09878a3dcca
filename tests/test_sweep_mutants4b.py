"""Tests for the survivors of round 4b of mutation testing (round 4's designed mutants that had not
run: minimizers, thermostats and barostats, numdp lmp's translation and thermo columns): each fails
on one plausible mistake that the rest of the suite let through (the mutant is named in the test's
docstring; 2026-12-07).
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

U = np.finfo(float).eps / 2   # unit round-off

# LAMMPS' units metal constants (update.cpp, set_units "metal"): boltz eV/K, mvv2e eV/(amu Å²/ps²)
LAMMPS_METAL_BOLTZ = 8.617343e-5
LAMMPS_METAL_MVV2E = 1.0364269e-4


def _rotation(seed: int) -> np.ndarray:
    """A proper rotation (3, 3), rows orthonormal, det +1."""
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def test_cell_angles_are_lammps_alpha_beta_gamma():
    """LAMMPS' thermo keywords cellalpha, cellbeta, cellgamma (thermo_style doc; thermo.cpp
    compute_cellalpha: cos alpha = (xy xz + ly yz) / (|b| |c|)) are the crystallographic angles:
    alpha between b and c, beta between a and c, gamma between a and b.  The cell is built from
    (a, b, c, alpha, beta, gamma) by LAMMPS' Howto triclinic formulas and held rotated.  Bound:
    a few roundings of the cosine (64 u) over sin(angle), in degrees.  Mutant killed: alpha and
    beta from the pairs (a, c) and (b, c)."""
    from numdp.md.thermo import values

    a, b, c = 4.0, 5.0, 6.0
    alpha, beta, gamma = 70.0, 80.0, 100.0
    ca, cb, cg = (math.cos(math.radians(x)) for x in (alpha, beta, gamma))
    xy, xz = b * cg, c * cb
    ly = math.sqrt(b * b - xy * xy)
    yz = (b * c * ca - xy * xz) / ly
    lz = math.sqrt(c * c - xz * xz - yz * yz)
    box = np.array([[a, 0.0, 0.0], [xy, ly, 0.0], [xz, yz, lz]]) @ _rotation(3)
    state = SimpleNamespace(box=box, pbc_flags=(True, True, True))
    snap = SimpleNamespace(world=None, state=state)
    got = values(snap, ["cellalpha", "cellbeta", "cellgamma"])
    for value, angle in zip(got, (alpha, beta, gamma)):
        tol = math.degrees(64 * U / math.sin(math.radians(angle)))
        assert value == pytest.approx(angle, abs=tol)


def test_final_temperature_counts_3n_minus_3_degrees_of_freedom(tmp_path):
    """LAMMPS' compute temp (its thermo `temp`) divides 2 KE by dof kB with dof = 3N - 3 (compute
    temp's extra_dof defaults to the dimension, compute_modify extra/dof 3): numdp lmp's final
    values (translate.final_values, the thermo line LAMMPS prints at a run's end) the same, with
    LAMMPS' metal boltz and mvv2e.  Bound: the sum of 3N squares and the quotients (16 u).  Mutant
    killed: 3N degrees of freedom."""
    from numdp.io.model_file import write_model
    from numdp.lammps.translate import final_values
    from randmodel import random_params

    params = random_params(ntypes=2, sel=[8, 8], neuron=(4, 8), axis_neuron=2, fitting=(8, 8), rcut=4.0,
                           rcut_smth=1.0, seed=5)
    params.type_map = ["A", "B"]
    write_model(params, tmp_path / "m.h5")
    rng = np.random.default_rng(11)
    n = 4
    masses = np.array([2.0, 7.0, 2.0, 7.0])
    v = rng.normal(scale=3.0, size=(n, 3))   # Å/ps
    frame = {"type_map": ["A", "B"], "species": np.array([0, 1, 0, 1]), "masses": masses,
             "positions": rng.uniform(0.0, 3.0, size=(n, 3)), "box": None, "pbc": None,
             "velocities": v, "step": 7}
    out = final_values(frame, str(tmp_path / "m.h5"))
    mv2 = float(np.sum(masses[:, None] * v * v))
    assert out["temp"] == pytest.approx(mv2 * LAMMPS_METAL_MVV2E / ((3 * n - 3) * LAMMPS_METAL_BOLTZ), rel=16 * U)


# --- LAMMPS' line searches (min_linesearch.cpp linemin_quadratic, min_cg.cpp) --------------------

def _line_state(x0: float):
    """One atom of mass 1 at (x0, 0, 0) Å, no cell."""
    from numdp.system import State

    return State(positions=np.array([[x0, 0.0, 0.0]]), velocities=np.zeros((1, 3)), types=np.zeros(1, np.int32),
                 masses=np.ones(1), box=None, type_map=["A"], ids=np.arange(1))


def _along_x(k: float, g: float, offset: float = 0.0):
    """E = offset + k x²/2 + g x³/3 (eV; x Å, the atom's x), force -(k x + g x²) along x: the force
    provider of a line-search minimizer, and E, F as functions of x."""
    def energy(x):
        return offset + 0.5 * k * x * x + g / 3.0 * x ** 3

    def force(x):
        return -(k * x + g * x * x)

    def provider(state):
        x = float(state.positions[0, 0])
        state.potential_energy = energy(x)
        state.forces = np.array([[force(x), 0.0, 0.0]])
    return provider, energy, force


def _one_iteration(provider, x0: float, **settings):
    """The state and minimizer after one cg iteration (its first direction h = F) from x0."""
    from numdp.config import LineSearch, MinimizeSettings
    from numdp.md.linesearch import LineSearchMinimizer

    state = _line_state(x0)
    m = LineSearchMinimizer(MinimizeSettings(steps=5, style="cg", ftol=0.0, **{"line": LineSearch.QUADRATIC,
                                                                               "dmax": 1.0, **settings}))
    m.initialize(state)
    provider(state)
    m.step(state, provider)
    return state, m


def test_quadratic_line_search_takes_the_secant_step_on_a_quadratic():
    """linemin_quadratic: at a trial alpha, with the previous trial's (alpha_prev, fh_prev, E_prev)
    (at first 0, F·h, E0), the secant step alpha' = alpha - (alpha - alpha_prev) fh / (fh -
    fh_prev) is tried when |1 - (½ (alpha - alpha_prev)(fh + fh_prev) + E) / E_prev| <= 0.1: the
    trapezoid rule, exact on a quadratic.  E = 0.95 x² from x0 = 0.1: the first trial (alpha = 1,
    x = -0.09) fails the sufficient-decrease test, the model's relative error is round-off and the
    secant (linear fh: the exact minimizer alpha' = 1/k) lands on x = 0: two evaluations, x to a
    few roundings of x0 (8 u).  Mutant killed: the model with fh - fh_prev (relative error 3.8:
    no secant at the first trial, a third evaluation)."""
    provider, _, _ = _along_x(1.9, 0.0)
    state, _ = _one_iteration(provider, 0.1)
    assert float(state.minimize["evaluations"]) == 2.0
    assert abs(state.positions[0, 0]) <= 8 * U * 0.1
    assert float(state.minimize["alpha"]) == pytest.approx(1.0 / 1.9, rel=8 * U)


def test_quadratic_line_search_refuses_the_secant_step_above_a_tenth():
    """linemin_quadratic's QUADRATIC_TOL = 0.1: with E = 0.6 x² + (2/3) x³ from x0 = 0.1 (h = F0 =
    -0.14, alpha_max = 1: dmax = 1 Å), the first trial (x = -0.04) fails the sufficient-decrease
    test (E - E0 <= -0.4 alpha F·h) and the quadratic model is off by 0.137 > 0.1: no secant
    there; the halved trial (alpha = 0.5) goes through the same two tests, computed here by the
    rule.  Mutant killed: QUADRATIC_TOL = 0.2 (the first trial's secant taken: alpha 0.758)."""
    k, g, x0 = 1.2, 2.0, 0.1
    provider, energy, force = _along_x(k, g)
    f0 = force(x0)
    e0, fh0 = energy(x0), f0 * f0

    def trial(alpha):
        x = x0 + alpha * f0
        return energy(x), force(x) * f0

    e1, fh1 = trial(1.0)
    assert not e1 - e0 <= -0.4 * fh0
    relerr1 = abs(1.0 - (0.5 * (fh1 + fh0) + e1) / e0)
    assert 0.12 < relerr1 < 0.16 and 0.0 < 1.0 - fh1 / (fh1 - fh0) < 1.0   # a secant in range, if taken
    e2, fh2 = trial(0.5)
    relerr2 = abs(1.0 - (0.5 * (0.5 - 1.0) * (fh2 + fh1) + e2) / e1)
    secant2 = 0.5 - (0.5 - 1.0) * fh2 / (fh2 - fh1)
    assert abs(relerr2 - 0.1) > 0.01   # away from the threshold: round-off cannot flip it
    expected = secant2 if relerr2 <= 0.1 and 0.0 < secant2 < 1.0 else 0.5
    state, _ = _one_iteration(provider, x0)
    assert float(state.minimize["alpha"]) == pytest.approx(expected, rel=64 * U)
    assert float(state.minimize["evaluations"]) == (3.0 if expected != 0.5 else 2.0)


@pytest.mark.parametrize("ratio, stops", [(0.75, False), (1.25, True)])
def test_etol_compares_the_change_with_half_the_energies(ratio, stops):
    """min_cg.cpp: stop when |E - E_prev| < etol ½ (|E| + |E_prev| + EPS_ENERGY), EPS_ENERGY =
    1e-8 eV.  E = 5 + ½ |x|² from x0 = 0.05 (backtrack: the first trial alpha = 1 lands on x = 0
    exactly, E = 5): with r = |E - E_prev| / (½ (|E| + |E_prev| + 1e-8)), etol = 0.75 r goes on
    and 1.25 r stops after the first iteration (25 % from the threshold: far above round-off).
    Mutant killed: the test without the ½ (stops at 0.75 r)."""
    from numdp.config import LineSearch
    from numdp.md.minimize import StopReason

    provider, energy, _ = _along_x(1.0, 0.0, offset=5.0)
    e0, e1 = energy(0.05), energy(0.0)
    r = abs(e1 - e0) / (0.5 * (abs(e1) + abs(e0) + 1e-8))
    state, m = _one_iteration(provider, 0.05, line=LineSearch.BACKTRACK, etol=ratio * r)
    assert state.positions[0, 0] == 0.0 and state.potential_energy == e1
    assert (m.finished is StopReason.ETOL) is stops
    if not stops:
        assert m.finished is None


# --- FIRE 2.0 as LAMMPS' min_style fire (min_fire.cpp; numdp.md.minimize) ------------------------

def _fire(k: float, x0: float, iterations: int, **settings):
    """FIRE on one atom of mass 1 amu in E = ½ k x² from rest at x0 (dmax 1 Å: never limiting here);
    the state, the minimizer and (P = F·v, dt) before each iteration."""
    from numdp.config import MinimizeSettings
    from numdp.md.minimize import FireMinimizer

    provider, _, _ = _along_x(k, 0.0)
    state = _line_state(x0)
    m = FireMinimizer(MinimizeSettings(steps=50, style="fire", ftol=0.0, **{"dmax": 1.0, **settings}))
    m.initialize(state)
    provider(state)
    seen = []
    for _ in range(iterations):
        seen.append((float(np.sum(state.forces * state.velocities)), float(state.minimize["dt"])))
        m.step(state, provider)
        if m.finished is not None:
            break
    return state, m, seen


@pytest.mark.parametrize("settings, factor", [
    ({"initialdelay": True, "delaystep": 1}, 0.5),     # 1 iteration made, not fewer than 1: shrinks
    ({"initialdelay": True, "delaystep": 2}, 1.0),     # fewer than 2: no change
    ({"initialdelay": False, "tmin": 0.6}, 1.0),       # 0.5 dt0 would be below tmin dt0: no change
    ({"initialdelay": False, "tmin": 0.5}, 0.5),       # exactly tmin dt0: allowed
])
def test_fire_first_iteration_dt_follows_initialdelay_and_tmin(settings, factor):
    """The first iteration starts at rest, P = F·v = 0 <= 0: LAMMPS' min_fire shrinks dt by dtshrink
    (0.5) unless initialdelay and ntimestep - ntimestep_start < delaystep (here 1, the iteration's
    own step), and only when dt dtshrink >= tmin dt0.  Exact: powers of two.  Mutants killed: the
    initialdelay test with <= (no shrink at delaystep 1) and the tmin test on dt before the
    shrink (0.5 dt0 < 0.6 dt0 taken)."""
    state, m, _ = _fire(0.5, 0.01, 1, timestep=0.002, **settings)
    assert m.finished is None and state.step == 1
    assert float(state.minimize["dt"]) == 0.002 * factor


def test_fire_vdfmax_stops_after_more_than_vdfmax_uphill_iterations_in_a_row():
    """min_fire: each iteration with P <= 0 counts (the counter is reset by one with P > 0), and the
    run stops (before moving) when the count exceeds vdfmax.  vdfmax = 1, E = ½ k x² with
    dt² k / (m mvv2e) = 1.93 (k = 2 eV/Å², dt = 0.01 ps): the first iteration (at rest, P = 0)
    counts 1 and moves past the minimum (x0 -> -0.93 x0), so the second has P < 0: count 2 > 1,
    stop.  Mutant killed: count >= vdfmax (stops at the first)."""
    from numdp.md.minimize import StopReason

    state, m, seen = _fire(2.0, 0.01, 3, timestep=0.01, vdfmax=1, halfstepback=False)
    assert len(seen) == 2 and seen[0][0] == 0.0 and seen[1][0] < 0.0
    assert m.finished is StopReason.VDFMAX and state.step == 2


def test_fire_uphill_count_is_reset_by_a_downhill_iteration():
    """The count of P <= 0 iterations in a row (vdfmax's) goes back to 0 at an iteration with
    P > 0.  k = 0.5 eV/Å², dt = 0.01 ps (dt² k / m mvv2e = 0.48: no overshoot): the first
    iteration (P = 0) counts 1, the second has P > 0.  Mutant killed: the count kept."""
    state, m, seen = _fire(0.5, 0.01, 2, timestep=0.01)
    assert seen[1][0] > 0.0 and m.finished is None
    assert float(state.minimize["negatives"]) == 0.0


@pytest.mark.parametrize("delaystep, stops", [(20, False), (0, True)])
def test_fire_etol_waits_for_delaystep_iterations_after_an_uphill_one(delaystep, stops):
    """min_fire checks etol only when ntimestep - last_negative > delaystep.  etol = 10 (any
    change passes the energy test); iteration 1 (P = 0) is the last negative one, iteration 2 has
    P > 0 (k = 0.5, dt = 0.01 ps): 2 - 1 > 0 stops with delaystep 0, not with 20 (LAMMPS'
    default).  Mutant killed: etol tested without the delaystep condition."""
    from numdp.md.minimize import StopReason

    state, m, seen = _fire(0.5, 0.01, 2, timestep=0.01, etol=10.0, delaystep=delaystep, initialdelay=False)
    assert len(seen) == 2 and seen[1][0] > 0.0
    assert (m.finished is StopReason.ETOL) is stops and (m.finished is None) is not stops


@pytest.mark.parametrize("formula, value", [
    ("1 < 2 == 1", 1.0), ("2 > 1 != 1", 0.0),   # (1 < 2) == 1; == above <: 1 < (2 == 1) = 0
    ("log(1000)", 3.0), ("ln(1)", 0.0),          # log is base 10, ln natural
])
def test_lammps_formula_comparisons_and_log(formula, value):
    """LAMMPS' variable command doc: the comparisons < <= > >= bind tighter than == and != (its
    precedence list), and log(x) is the base-10 logarithm (ln(x) the natural one).  Exact: log10
    of a power of ten and small integers.  Mutants killed: == and != above <, log natural."""
    from numdp.lammps.script import Script

    assert Script("in.test", lambda c: None).evaluate(formula) == value
