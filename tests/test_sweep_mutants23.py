"""Tests added by mutation round 23 (energy minimization, second round: numdp.md.minimize's FIRE,
numdp.md.linesearch's cg / sd and their line searches, numdp.md.boxrelax's cell degrees of
freedom): each kills a plausible mistake that tests/test_minimize*.py, test_lmp_fidelity.py,
test_box_relax.py, test_lmp_box_relax_forms.py, the autotest sweeps and rounds 4 / 4b let through
(the mutant named in the test's docstring).  One atom (or a few) in closed-form energies, built
directly with no model file: the whole file runs in a second or two."""
from __future__ import annotations

import math

import numpy as np
import pytest

from numdp.config import LineSearch, MinimizeSettings, NormStyle
from numdp.md.linesearch import LineSearchMinimizer
from numdp.md.minimize import FireMinimizer, StopReason
from numdp.system import State
from test_sweep_mutants4b import _along_x

U = np.finfo(np.float64).eps / 2   # unit round-off


def _state(positions) -> State:
    """Atoms of mass 1 amu at `positions` (n, 3) Å, at rest, no cell."""
    x = np.array(positions, dtype=np.float64).reshape(-1, 3)
    n = len(x)
    return State(positions=x, velocities=np.zeros((n, 3)), types=np.zeros(n, np.int32), masses=np.ones(n),
                 box=None, type_map=["A"], ids=np.arange(n))


def _harmonic(k: float, offset: float = 0.0):
    """E = offset + ½ k |x|² (eV, x Å of every atom), F = -k x: a minimizer's force provider."""
    def provider(state):
        x = state.positions
        state.potential_energy = offset + 0.5 * k * float(np.sum(x * x))
        state.forces = -k * x
    return provider


def _linear(force):
    """E = -F·x with the constant force `force` (3,) eV/Å on one atom."""
    f = np.asarray(force, dtype=np.float64)

    def provider(state):
        state.potential_energy = -float(state.positions[0] @ f)
        state.forces = f[None, :].copy()
    return provider


def _fire(provider, x0, iterations: int, **settings):
    """FIRE from rest at x0 with `provider`; the state, the minimizer and P = F·v before each iteration."""
    state = _state(x0)
    m = FireMinimizer(MinimizeSettings(steps=50, style="fire", **{"ftol": 0.0, "dmax": 1.0, **settings}))
    m.initialize(state)
    provider(state)
    powers = []
    for _ in range(iterations):
        powers.append(float(np.sum(state.forces * state.velocities)))
        m.step(state, provider)
        if m.finished is not None:
            break
    return state, m, powers


# --- FIRE (min_fire.cpp) ------------------------------------------------------------------------

@pytest.mark.parametrize("x0, stops", [(1e-6, True), (1e-2, False)])
def test_fire_etol_adds_eps_energy_near_a_zero_energy(x0, stops):
    """min_fire: stop when |E - E_prev| < etol ½ (|E| + |E_prev| + EPS_ENERGY), EPS_ENERGY = 1e-8
    eV, so that the test is defined where E -> 0.  E = ½ k x² (k = 0.5 eV/Å², dt = 0.01 ps,
    delaystep 0: iteration 1 at rest is the last P <= 0 one, iteration 2 has P > 0 and is tested),
    etol = 0.01.  x0 = 1e-6 Å: E ~ 2.5e-13 eV, the change is a fraction of E, far below etol ½
    1e-8 = 5e-11 (stops) but above etol ½ (|E| + |E_prev|) (it would not without EPS_ENERGY);
    x0 = 1e-2 Å: E ~ 2.5e-5 eV, EPS_ENERGY negligible, the change (a few % of E) above 1 %: goes
    on.  Mutant killed: FIRE's etol test without EPS_ENERGY (the line searches': below)."""
    state, m, powers = _fire(_harmonic(0.5), [x0, 0.0, 0.0], 2, timestep=0.01, etol=0.01, delaystep=0,
                             initialdelay=False)
    assert len(powers) == 2 and powers[0] == 0.0 and powers[1] > 0.0
    e_prev, e = float(state.minimize["e_previous"]), state.potential_energy
    change = abs(e - e_prev)
    if stops:   # far from both thresholds (factors > 10), round-off cannot flip them
        assert change < 0.1 * 0.01 * 0.5 * 1e-8 and change > 10 * 0.01 * 0.5 * (abs(e) + abs(e_prev))
    else:
        assert change > 2 * 0.01 * 0.5 * (abs(e) + abs(e_prev) + 1e-8)
    assert (m.finished is StopReason.ETOL) is stops and (m.finished is None) is not stops


@pytest.mark.parametrize("norm, stops", [(NormStyle.INF, True), (NormStyle.MAX, False), (NormStyle.TWO, False)])
def test_fire_ftol_norms_inf_max_two(norm, stops):
    """LAMMPS' min_modify norm: inf = the largest force component (fnorm_inf), max = the largest
    |F_i| (fnorm_max), two = the 2-norm of the 3N vector.  A constant force (3, 4, 0) eV/Å on one
    atom: 4, 5 and 5 eV/Å, exactly; ftol = 4.5 stops the first iteration with inf only.
    Mutant killed: the inf norm as the largest |F_i| (and, by the max case, max as the largest
    component)."""
    state, m, _ = _fire(_linear([3.0, 4.0, 0.0]), [0.0, 0.0, 0.0], 1, ftol=4.5, norm=norm)
    assert m.last_norm == {NormStyle.INF: 4.0, NormStyle.MAX: 5.0, NormStyle.TWO: 5.0}[norm]
    assert (m.finished is StopReason.FTOL) is stops and (m.finished is None) is not stops


def test_fire_etol_is_checked_before_ftol():
    """min_fire returns ETOL before it computes the force norm: when both criteria hold after an
    iteration the run stops on etol.  E = ½ k x² (k = 0.5, dt = 0.01 ps, delaystep 0), etol = 10
    (any change passes from iteration 2 on, the first with P > 0) and ftol the geometric mean of
    the force after iterations 1 and 2 (no overshoot: |F| falls by a factor 1.35 in iteration 2,
    so ftol is 16 % from either, far above round-off): iteration 2 meets both.  Mutant killed: the ftol test
    overriding an etol stop (LAMMPS' order reversed)."""
    _, free, _ = _fire(_harmonic(0.5), [0.01, 0.0, 0.0], 1, timestep=0.01, delaystep=0, initialdelay=False,
                       ftol=1e-30)
    first = free.last_norm
    _, free, _ = _fire(_harmonic(0.5), [0.01, 0.0, 0.0], 2, timestep=0.01, delaystep=0, initialdelay=False,
                       ftol=1e-30)
    second = free.last_norm
    assert first > 1.3 * second > 0.0
    state, m, powers = _fire(_harmonic(0.5), [0.01, 0.0, 0.0], 2, timestep=0.01, etol=10.0,
                             ftol=math.sqrt(first * second), delaystep=0, initialdelay=False)
    assert len(powers) == 2 and powers[1] > 0.0
    assert m.finished is StopReason.ETOL


def test_fire_summary_reports_the_final_step_norms_and_counts():
    """The closing lines (FireMinimizer.final_lines, LAMMPS' "Minimization stats"): the force
    two-norm at the start and at the end, iterations and force evaluations, FIRE's final dt and
    alpha.  E = ½ k x² (k = 0.5, dt0 = 0.01 ps, delaystep 0, no initial delay), 2 iterations:
    the first (at rest, P = 0) halves dt and counts 2 evaluations (the one after the reset of v
    and the step's), the second (P > 0) grows it by 1.1 and shrinks alpha: dt = 0.0055 ps, alpha
    = 0.2475, 3 evaluations, |F| = k |x| now.  Mutants killed: the final dt printed as dt0, the
    final two-norm printed as the initial one."""
    x0 = 0.01
    state, m, _ = _fire(_harmonic(0.5), [x0, 0.0, 0.0], 2, timestep=0.01, delaystep=0, initialdelay=False)
    m.at_end(state, state.step)
    lines = m.final_lines(state)
    assert float(state.minimize["dt"]) == pytest.approx(0.0055, rel=4 * U) and state.positions[0, 0] != x0
    assert f"  Force two-norm initial, final = {0.5 * x0:.6g} {0.5 * abs(state.positions[0, 0]):.6g} eV/A" in lines
    assert "  Iterations, force evaluations = 2 3" in lines
    assert f"  Final FIRE timestep, alpha = {0.0055:.6g} ps {0.25 * 0.99:.6g}" in lines

# --- the line searches (min_linesearch.cpp linemin_quadratic / linemin_backtrack, min_cg.cpp) -----

def _line(provider, x0, iterations: int = 1, **settings):
    """cg (quadratic line search, dmax 1 Å, ftol and etol off unless given) from x0 with
    `provider`: the state and minimizer after `iterations` iterations (or the stop)."""
    return _iterate(_state(x0), provider, iterations, MinimizeSettings(steps=50, style="cg", **{
        "ftol": 0.0, "etol": 0.0, "dmax": 1.0, "line": LineSearch.QUADRATIC, **settings}))


def _iterate(state, provider, iterations: int, settings: MinimizeSettings):
    """A LineSearchMinimizer of `settings` started on `state` with `provider`, run for
    `iterations` iterations or to its stop: (state, minimizer)."""
    m = LineSearchMinimizer(settings)
    m.initialize(state)
    provider(state)
    for _ in range(iterations):
        m.step(state, provider)
        if m.finished is not None:
            break
    return state, m


def test_quadratic_search_stops_when_a_trial_lands_on_zero_projected_force():
    """linemin_quadratic: |fh| < EPS_QUAD (1e-28) or |fh - fh_prev| < EPS_QUAD at a trial goes
    back to x0 (an evaluation) and stops: "quadratic factors are zero".  E = ½ |x|² from x0 =
    (0.05, 0, 0) Å: h = F0 = -x0, alpha_max = 1 (dmax / |h| = 20), and the first trial x0 + h
    is x = 0 exactly, where F = 0, fh = 0 (its secant 1 is not below alpha_max, and its energy
    passes the sufficient-decrease test: without the |fh| check the search succeeds there).
    Mutant killed: only |fh - fh_prev| tested against EPS_QUAD."""
    x0 = [0.05, 0.0, 0.0]
    state, m = _line(_harmonic(1.0), x0)
    assert m.finished is StopReason.ZEROQUAD
    assert state.positions.tolist() == [x0] and float(state.minimize["evaluations"]) == 2.0


@pytest.mark.parametrize("x0, stops", [(1e-6, True), (1e-2, False)])
def test_line_search_etol_adds_eps_energy_near_a_zero_energy(x0, stops):
    """min_cg.cpp: etol's test |E - E_prev| < etol ½ (|E| + |E_prev| + EPS_ENERGY) with
    EPS_ENERGY = 1e-8 eV.  E = ½ |x|², backtrack: the first trial (alpha = 1) lands on x = 0, E = 0
    exactly, from E0 = ½ x0²; etol = 0.01.  x0 = 1e-6 Å: |E - E0| = 5e-13 eV < 0.01 ½ (5e-13 +
    1e-8) (stops) but not < 0.01 ½ 5e-13; x0 = 1e-2 Å: 5e-5 eV, far above 0.01 ½ 5e-5 (goes on).
    Mutant killed: the line searches' etol test without EPS_ENERGY."""
    state, m = _line(_harmonic(1.0), [x0, 0.0, 0.0], etol=0.01, line=LineSearch.BACKTRACK)
    assert state.positions[0, 0] == 0.0 and state.potential_energy == 0.0
    assert (m.finished is StopReason.ETOL) is stops and (m.finished is None) is not stops


def test_backtrack_that_backtracks_to_emach_after_a_lower_energy_stops_on_etol():
    """linemin_backtrack: when alpha reaches 0 or the ideal decrease 0.4 alpha F·h is below EMACH
    (1e-8 eV) the atoms go back to x0 (an evaluation) and the search returns ETOL when the last
    trial's energy was below E0, ZEROALPHA otherwise.  E = ¾ |x|² (k = 1.5 eV/Å²) from x0 =
    (1e-5, 0, 0) Å: h = F0 = -k x0, alpha_max = 1, the trial x0 (1 - 1.5) has E - E0 = -0.5625 x0²
    < 0 but misses the sufficient decrease (-0.4 k² x0² = -0.9 x0²), whose size 9e-11 eV is below
    EMACH: back to x0, ETOL.  Mutant killed: the backtrack's failure always ZEROALPHA."""
    x0 = [1e-5, 0.0, 0.0]
    state, m = _line(_harmonic(1.5), x0, line=LineSearch.BACKTRACK)
    assert m.finished is StopReason.ETOL
    assert state.positions.tolist() == [x0] and float(state.minimize["evaluations"]) == 2.0


@pytest.mark.parametrize("norm, stops", [(NormStyle.INF, True), (NormStyle.MAX, False), (NormStyle.TWO, False)])
def test_line_search_ftol_norms_inf_max_two(norm, stops):
    """min_cg.cpp's ftol test takes fnorm_inf / fnorm_max / fnorm_sqr by min_modify norm.  A
    constant force (3, 4, 0) eV/Å on one atom (E = -F·x, linear; backtrack: its first trial
    alpha_max = dmax / 4 succeeds): after the iteration 4 (inf), 5 (max), 5 (two) eV/Å, exactly; ftol = 4.5
    stops with inf only.  Mutant killed: cg / sd comparing the 2-norm whatever the norm."""
    state, m = _line(_linear([3.0, 4.0, 0.0]), [0.0, 0.0, 0.0], ftol=4.5, norm=norm,
                     line=LineSearch.BACKTRACK)
    assert float(state.minimize["evaluations"]) == 1.0
    assert (m.finished is StopReason.FTOL) is stops and (m.finished is None) is not stops


def test_line_search_maxeval_is_checked_before_etol():
    """min_cg.cpp after a line search: maxeval (neval >= max_eval), then etol, then ftol.  E = ½
    |x|² from (0.01, 0, 0), backtrack: one evaluation lands on the minimum; maxeval = 1 and etol =
    10 (any change passes) both hold: MAXEVAL.  Mutant killed: etol tested before maxeval."""
    state, m = _line(_harmonic(1.0), [0.01, 0.0, 0.0], etol=10.0, maxeval=1, line=LineSearch.BACKTRACK)
    assert float(state.minimize["evaluations"]) == 1.0 and m.finished is StopReason.MAXEVAL


def test_quadratic_model_is_relative_to_the_previous_trials_energy():
    """linemin_quadratic's relerr = |1 - (½ (alpha - alpha_prev)(fh + fh_prev) + E) / E_prev|
    with E_prev the previous trial's energy (engprev = ecurrent after each trial), not E0.
    E = 2.5 x² + x³/3 from x0 = 0.05 Å (h = F0 = -0.2525 eV/Å, alpha_max = 1): trial 1 (alpha =
    1, x = -0.2025) overshoots, relerr 0.43 > 0.1, no sufficient decrease; trial 2 (alpha = ½):
    relerr 0.0034 over E_prev = E(trial 1) (over E0 it would be 14.8): the secant step is taken
    and lowers E: three evaluations, alpha the secant, computed here by the rule.
    Mutant killed: relerr divided by E0 (no secant; backtracking to alpha = 1/8)."""
    x0 = 0.05
    provider, energy, force = _along_x(5.0, 1.0)
    f0 = force(x0)
    e0, fh0 = energy(x0), f0 * f0

    def trial(alpha):
        return energy(x0 + alpha * f0), force(x0 + alpha * f0) * f0

    e1, fh1 = trial(1.0)
    assert abs(1.0 - (0.5 * (fh1 + fh0) + e1) / e0) > 0.3 and not e1 - e0 <= -0.4 * fh0
    e2, fh2 = trial(0.5)
    model = 0.5 * (0.5 - 1.0) * (fh2 + fh1) + e2
    assert abs(1.0 - model / e1) < 0.01 and abs(1.0 - model / e0) > 10.0   # far from 0.1 either way
    secant = 0.5 - (0.5 - 1.0) * fh2 / (fh2 - fh1)
    assert 0.0 < secant < 1.0 and energy(x0 + secant * f0) < e0
    state, m = _line(provider, [x0, 0.0, 0.0])
    assert m.finished is None and float(state.minimize["evaluations"]) == 3.0
    assert float(state.minimize["alpha"]) == pytest.approx(secant, rel=64 * U)


def test_line_search_at_zero_force_stops_as_not_downhill():
    """linemin_quadratic / linemin_backtrack test F·h <= 0 (DOWNHILL) before h = 0 (ZEROFORCE):
    a minimization that starts where every force is exactly zero (E = ½ |x|² at x = 0: h = F =
    0, F·h = 0) stops at once with "search direction is not downhill", no evaluation, the atoms
    where they were.  Mutant killed: the downhill test F·h < 0 (then "forces are zero")."""
    for line in (LineSearch.QUADRATIC, LineSearch.BACKTRACK):
        state, m = _line(_harmonic(1.0), [0.0, 0.0, 0.0], line=line)
        assert m.finished is StopReason.DOWNHILL
        assert float(state.minimize["evaluations"]) == 0.0 and state.positions.tolist() == [[0.0, 0.0, 0.0]]


def test_line_search_continued_from_a_final_checkpoint_starts_with_h_equal_to_f():
    """At its end a line-search minimization sets h = 0 (the relaxed structure's checkpoint);
    continuing it (`--restart`: State.minimize's scalars held, g·g not NaN) starts with h = F
    again, as LAMMPS' next minimize command.  E = ¼ |x|² (k = 0.5), backtrack: from x0 each
    iteration's first trial (alpha = 1, h = F = -x / 2) halves x exactly and is taken (E - E0 =
    -0.1875 |x|² <= -0.4 alpha F·h = -0.1 |x|²), so one iteration, the end, and one continued
    iteration leave x0 / 4, bit for bit.  Mutant killed: h reset to F only when g·g is NaN (then F·h = 0: "search
    direction is not downhill" at once)."""
    x0 = np.array([[0.3, 0.1, 0.2]])
    provider = _harmonic(0.5)
    state, m = _line(provider, x0, line=LineSearch.BACKTRACK)
    assert m.finished is None and np.array_equal(state.positions, x0 / 2)
    m.at_end(state, state.step)
    assert not state.minimize["direction"].any()
    again = LineSearchMinimizer(m.settings)
    again.initialize(state)   # continues: the scalars are held
    provider(state)
    again.step(state, provider)
    assert again.finished is None and np.array_equal(state.positions, x0 / 4)

# --- fix box/relax (numdp.md.boxrelax) -------------------------------------------------------------

def test_triclinic_cell_forces_take_the_shear_virial_below_the_diagonal():
    """pair deepmd hands LAMMPS the virial's xy, xz, yz from the rows below the diagonal
    (dvirial[3], [6], [7]: W_yx, W_zx, W_zy), and fix box/relax tri's fextra[3..5] are P_yz lx ly
    ly_ref, P_xz lx ly lx_ref, P_xy lx lz lx_ref (P = W / V).  A model's virial need not be
    symmetric to the last bit; here W_ij = 10 i + j + 1 on the cell diag(2, 3, 4) Å (its own
    reference, V = 24 Å³): the three shear forces are W_21 3·2·3, W_20 2·3·2, W_10 2·4·2 over 24,
    to a few roundings.  Mutant killed: the shear pressures from the rows above the diagonal."""
    from numdp.config import BoxRelaxSettings
    from numdp.md.boxrelax import BoxRelax

    box = np.diag([2.0, 3.0, 4.0])
    state = _state([[0.5, 0.5, 0.5]])
    state.box = box.copy()
    state.virial = np.array([[10.0 * i + j + 1.0 for j in range(3)] for i in range(3)])
    relax = BoxRelax(BoxRelaxSettings(coupling="triclinic", pressure=0.0))
    f = relax.forces(state, box)
    w = state.virial
    expected = np.array([w[2, 1] * 3 * 2 * 3, w[2, 0] * 2 * 3 * 2, w[1, 0] * 2 * 4 * 2]) / 24.0
    assert np.allclose(f[3:], expected, rtol=8 * U, atol=0.0)
    assert np.allclose(f[:3], np.diag(w), rtol=8 * U, atol=0.0)   # (P_aa - 0) s s V_ref = W_aa at s = 1


def _volume_well(bulk: float, v_star: float):
    """A cell energy E(V) = ½ B (V - V*)² / V* (eV; B eV/Å³, V Å³) on atoms without forces: the
    pressure -dE/dV = -B (V - V*) / V* as the virial W = P V 1 (eV, LAMMPS' P = W / V)."""
    def provider(state):
        v = abs(float(np.linalg.det(state.box)))
        state.potential_energy = 0.5 * bulk * (v - v_star) ** 2 / v_star
        state.forces = np.zeros_like(state.positions)
        state.virial = np.eye(3) * (-bulk * (v - v_star) / v_star) * v
    return provider


def _cell_run(provider, iterations: int, pressure: float, vmax: float, **settings):
    """cg with fix box/relax iso (`pressure` bar, `vmax`) from the cube of 10 Å with one atom at
    its centre: the state and minimizer after `iterations` iterations (or the stop)."""
    from numdp.config import BoxRelaxSettings

    state = _state([[5.0, 5.0, 5.0]])
    state.box = np.eye(3) * 10.0
    return _iterate(state, provider, iterations, MinimizeSettings(steps=50, style="cg", **{
        "ftol": 0.0, "etol": 0.0, "line": LineSearch.BACKTRACK,
        "box": BoxRelaxSettings(coupling="isotropic", pressure=pressure, vmax=vmax), **settings}))


def test_cell_relaxation_etol_compares_the_enthalpy_like_objective():
    """With fix box/relax LAMMPS' ecurrent is the potential energy plus the fix's P_t (V - V_ref)
    (min_energy's fix contribution) in the etol test too.  A constant energy (1 eV, no virial)
    and a target of 1e4 bar (0.00624 eV/Å³): the cell shrinks by vmax = 1e-3 (the backtrack's
    first trial, E - E0 = P_t V_ref ((1 - vmax)³ - 1) = -0.0187 eV, below the ideal -1.2 vmax
    P_t V_ref = -0.0075 eV), a relative change of 0.019 > etol = 1e-6: goes on, while E_pot
    alone did not change (its change 0 would stop on any etol).
    Mutant killed: etol's test on the potential energy alone."""
    def flat(state):
        state.potential_energy = 1.0
        state.forces = np.zeros_like(state.positions)
        state.virial = np.zeros((3, 3))

    state, m = _cell_run(flat, 1, pressure=1e4, vmax=1e-3, etol=1e-6)
    assert state.box[0, 0] == pytest.approx(10.0 * (1 - 1e-3), rel=16 * U)
    assert state.potential_energy == 1.0 and m.finished is None


def test_cg_restart_after_an_overshoot_of_the_cell_resets_the_cell_direction():
    """min_cg.cpp: when the new direction is not downhill (F·h <= 0, the cell dofs' fextra·hextra
    included) h = F for the atoms and hextra = fextra for the fix.  E(V) = ½ B (V - V*)² / V*
    (B = 0.5 eV/Å³, V* = 990 Å³) from the 1000 Å³ cube, target 0, atoms without forces (h = 0):
    the cell dof's fextra = 3 P s² V_ref = -15.2 eV, vmax = 0.0037 lets the first trial shrink s
    by 0.0037, 10 % past s* = 0.99666 (sufficient decrease holds), so fextra changes sign; Polak-
    Ribière's beta then makes fextra·h < 0 (for one dof: -|f|³/|g|), and the restart h = fextra
    lets iteration 2 go on downhill.  Mutant killed: the restart resetting the atoms' h only
    (iteration 2: "search direction is not downhill")."""
    provider = _volume_well(0.5, 990.0)
    state, m = _cell_run(provider, 1, pressure=0.0, vmax=0.0037)
    assert m.finished is None and state.box[0, 0] == pytest.approx(10.0 * (1 - 0.0037), rel=16 * U)
    g = float(m._cell_forces(state)[0])
    assert g > 0.0 and float(state.minimize["box_direction"][0]) == g   # the restart: h = fextra
    m.step(state, provider)
    assert m.finished is None and float(state.minimize["evaluations"]) >= 2.0


def test_cell_summary_prints_the_pressure_in_bar():
    """BoxRelax.final_line: the pressure tensor in bar (LAMMPS' units metal), 1 eV/Å³ =
    1.602176634e6 bar.  The virial diag(1, 2, 3) eV with W_yx = 4, W_zx = 5, W_zy = 6 on the cell
    diag(2, 3, 4) Å (V = 24 Å³): P = W / V.  Mutant killed: the summary's pressure in eV/Å³."""
    from numdp.config import BoxRelaxSettings
    from numdp.md.boxrelax import BoxRelax

    state = _state([[0.5, 0.5, 0.5]])
    state.box = np.diag([2.0, 3.0, 4.0])
    state.virial = np.array([[1.0, 0.0, 0.0], [4.0, 2.0, 0.0], [5.0, 6.0, 3.0]])
    line = BoxRelax(BoxRelaxSettings(coupling="triclinic", pressure=0.0)).final_line(state, state.box)
    bar = np.array([1.0, 2.0, 3.0, 6.0, 5.0, 4.0]) / 24.0 * 1.602176634e6
    assert "pressure xx yy zz yz xz xy = " + " ".join(f"{x:.6g}" for x in bar) + " bar" in line
