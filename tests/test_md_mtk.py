"""The Martyna–Tobias–Klein barostat (numdp.md.mtk, `kind = "mtk"`) on the analytic Lennard-Jones
test potential and on an ideal gas.

- its conserved energy H' (`econs`: the thermostat's and the barostat's reservoirs included) is
  conserved to second order in dt, while the cell and the energy it exchanges move far more;
- on an ideal gas it samples the isothermal-isobaric ensemble at zero total momentum that
  stochastic cell rescaling samples: P0 V / kT ~ Gamma(N + 1); LAMMPS' kinetic coupling
  (c = 1/N_f instead of 2/N_f) gives N (module docstring of numdp.md.mtk);
- on liquid argon with triclinic coupling the pressure holds P0 − 2 kT/<V> and the shear stress
  averages zero; the cell stays lower-triangular;
- the matrix exponential, the total momentum, the checkpoint's variables and restarts.

Statistical tests as in tests/test_md_dynamics.py (Z = 5 standard errors from 10 block averages,
with a bound on the error so that a wrong hypothesis one unit away cannot pass by noise).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from numdp.md.forces import ForceProvider
from numdp.md.integrator import VelocityVerlet
from numdp.kernels.cpu.barostat import expm3
from numdp.md.mtk import MTKBarostat
from numdp.md.barostat import is_lower_triangular
from numdp.md.thermostats import THERMOSTATS
from numdp.system import kinetic_energy, pressure_tensor
from numdp.units import EV_PER_A3_TO_BAR, KB
from test_md_dynamics import T, Z, assert_pressure_and_no_shear, block_error, ideal_gas_npt, thermalised_argon
from test_md_potential import LennardJones


def run_mtk(state, steps, dt, thermostat, barostat):
    """Per-step series: K, E = K + U, econs (+ both reservoirs), V, P tensor (bar); thermostat
    None: NPH."""
    if thermostat is not None:
        thermostat.initialize(state)
    barostat.initialize(state)
    integ = VelocityVerlet(dt, thermostat, barostat)
    fp = ForceProvider(LennardJones(), 1.0)
    fp(state)
    out = {k: [] for k in ("K", "E", "econs", "V", "P")}
    for _ in range(steps):
        integ.step(state, fp)
        k = kinetic_energy(state.velocities, state.masses)
        e = k + state.potential_energy
        out["K"].append(k)
        out["E"].append(e)
        bath = thermostat.reservoir_energy(state) if thermostat is not None else 0.0
        out["econs"].append(e + bath + barostat.reservoir_energy(state))
        out["V"].append(state.volume)
        out["P"].append(pressure_tensor(state.velocities, state.masses, state.virial, state.volume) * EV_PER_A3_TO_BAR)
    return {k: np.array(v) for k, v in out.items()}


@pytest.mark.parametrize("coupling", ["isotropic", "anisotropic", "triclinic"])
def test_conserved_energy_error_shrinks_as_dt_squared(coupling):
    """32 argon atoms at 2 kbar (the crystal starts near 0 bar: the cell works), Nosé–Hoover chain
    on the atoms: the fluctuation of H' falls by 4 when dt halves (second order; a missing term
    of H' or of the equations leaves an O(1) error that does not shrink), with no drift, while
    K + U + P0 V changes by far more."""
    fluct = []
    for dt, steps in ((0.01, 400), (0.005, 800)):
        st = thermalised_argon(seed=11, a=5.45)
        baro = MTKBarostat(2000.0, 0.3, coupling, T)
        r = run_mtk(st, steps, dt, THERMOSTATS["nose-hoover"](T, 0.1), baro)
        e = r["econs"]
        fluct.append(e.std())
        assert abs(e[-steps // 4:].mean() - e[: steps // 4].mean()) < 3 * e.std()
        exchanged = np.ptp(r["E"] + 2000.0 / EV_PER_A3_TO_BAR * r["V"])
        assert exchanged > 50 * e.std()
        assert np.ptp(r["V"]) > 0.02 * r["V"].mean()   # the cell moved
        if coupling == "triclinic":
            assert is_lower_triangular(st.box) and np.abs(np.tril(st.box, -1)).max() > 1e-3
    assert 3.0 < fluct[0] / fluct[1] < 5.0


@pytest.mark.parametrize("coupling, chain", [("isotropic", 0), ("triclinic", 0), ("triclinic", 3)])
def test_nph_enthalpy_error_shrinks_as_dt_squared(coupling, chain):
    """NPH (no thermostat on the atoms; LAMMPS' fix nph): without a chain on the cell the enthalpy
    K + U + P0 V + K_b is conserved, with one (LAMMPS' default pchain 3) H' with the chain's
    reservoir; either to second order in dt (the fluctuation falls by 4 when dt halves; a term
    missing from the equations or from H' leaves an O(1) error), while K + U + P0 V moves far
    more."""
    fluct = []
    for dt, steps in ((0.01, 400), (0.005, 800)):
        st = thermalised_argon(seed=11, a=5.45)
        baro = MTKBarostat(2000.0, 0.3, coupling, T, chain=chain)
        r = run_mtk(st, steps, dt, None, baro)
        e = r["econs"]
        fluct.append(e.std())
        assert abs(e[-steps // 4:].mean() - e[: steps // 4].mean()) < 3 * e.std()
        # the undamped cell swings by 20-26 % in volume (31x the error at dt = 0.01 ps without a chain)
        assert np.ptp(r["E"] + 2000.0 / EV_PER_A3_TO_BAR * r["V"]) > 20 * e.std()
        assert np.ptp(r["V"]) > 0.1 * r["V"].mean()
        if chain == 0:
            assert st.barostat["xi"].shape == (0,) and baro.reservoir_energy(st) == pytest.approx(
                0.5 * baro.mass(st) * np.sum(st.barostat["nu"] ** 2) + 2000.0 / EV_PER_A3_TO_BAR * st.volume,
                rel=1e-14)
    assert 3.0 < fluct[0] / fluct[1] < 5.0


@pytest.mark.slow
def test_nph_pressure_follows_the_kinetic_temperature():
    """4 argon atoms in NPH (isotropic, no chain), started at 1.5x the 80 K of thermalised_argon:
    the cell's momentum stays bounded, so its equation of motion averages to zero, <V (P0 − P)> =
    c <2K> = 2 k <T_kin> (T_kin = 2K / (N_f k), the atoms' own temperature), i.e. V P / <V> +
    2 k T_kin / <V> averages to P0 within Z block errors.  LAMMPS' kinetic coupling (c = 1/N_f)
    moves that average by d = k <T_kin> / <V> (about 70 bar: the small cell makes it large); the
    error is held below d / (2 Z), so that coupling cannot pass by noise."""
    p0 = 500.0
    st = thermalised_argon(seed=11, a=5.45, cells=1)
    st.velocities *= 1.5
    r = run_mtk(st, 8000, 0.01, None, MTKBarostat(p0, 0.5, "isotropic", T, chain=0))
    v, p, kin = r["V"][1000:], r["P"][1000:], r["K"][1000:]
    kt = 2.0 * kin / st.dof   # k T_kin per step, eV
    series = (np.einsum("tkk,t->t", p, v) / 3 + 2.0 * kt * EV_PER_A3_TO_BAR) / v.mean()   # bar
    err = block_error(series)
    assert Z * err < 0.5 * kt.mean() / v.mean() * EV_PER_A3_TO_BAR
    assert abs(series.mean() - p0) < Z * err


def ideal_gas_mtk(n, p0, steps, coupling_c=None):
    """P0 V / kT per step (after the first tenth) of n ideal-gas atoms under isotropic MTK (tau
    0.25 ps) with a Langevin thermostat (test_md_dynamics.ideal_gas_npt); coupling_c: the kinetic
    coupling c N_f (None: numdp's 2; 1: LAMMPS')."""
    baro = MTKBarostat(p0, 0.25, "isotropic", T)
    if coupling_c is not None:
        baro._kinetic_coupling = lambda s: coupling_c / s.dof
    v, _ = ideal_gas_npt(n, p0, "isotropic", "langevin", steps, barostat=baro)
    return v * (p0 / EV_PER_A3_TO_BAR) / (KB * T)


@pytest.mark.slow
def test_ideal_gas_volume_distribution():
    """Four ideal-gas atoms: with numdp's coupling (c = 2/N_f) <P0 V/kT> = N + 1 = 5, the exact
    isothermal-isobaric value (stochastic cell rescaling's, tests/test_md_dynamics.py).  LAMMPS'
    coupling (c ≈ 1/N_f, `ideal_gas_mtk(..., coupling_c=1.0)`) leaves one power of V out of the
    flow's invariant measure: it gives N = 4 (measured 3.95-4.04 +- 0.04-0.08), one unit away,
    which this test refuses (5 bounded standard errors: measured 0.08 at 16 000 steps)."""
    x = ideal_gas_mtk(4, 100.0, 16000)
    err = block_error(x)
    assert err < 1.0 / Z
    assert abs(x.mean() - 5.0) < Z * err


@pytest.mark.slow
def test_triclinic_liquid_argon_keeps_the_pressure_and_no_shear():
    """32 atoms of liquid argon, triclinic MTK and a CSVR thermostat: V P_kk / <V> averages to
    P0 − 2 kT/<V> in each direction (the stationary cell momentum: <V (P0 − P_kk)> = c <2K> =
    2 kT), the shear stress to zero, and the cell stays lower-triangular."""
    p0 = 500.0
    st = thermalised_argon(seed=11, a=5.45)
    r = run_mtk(st, 6000, 0.01, THERMOSTATS["csvr"](T, 0.1), MTKBarostat(p0, 0.5, "triclinic", T))
    assert_pressure_and_no_shear(r["V"][1000:], r["P"][1000:], p0)
    assert is_lower_triangular(st.box)


def test_total_momentum_stays_zero_and_restart_variables():
    """The velocity scaling and the kicks keep Σ m v = 0; the barostat's variables (μ, the chain)
    live in state.barostat (the checkpoint's "barostat/" group) and a fresh barostat object keeps
    them (a restart continues the same dynamics), projecting them on its coupling."""
    st = thermalised_argon(seed=2)
    baro = MTKBarostat(3000.0, 0.3, "triclinic", T)
    run_mtk(st, 100, 0.01, THERMOSTATS["nose-hoover"](T, 0.1), baro)
    p = st.masses @ st.velocities
    assert np.abs(p).max() < 1e-10 * np.abs(st.masses[:, None] * st.velocities).sum()
    nu = st.barostat["nu"].copy()
    assert np.abs(np.tril(nu, -1)).max() > 0 and np.all(np.triu(nu, 1) == 0)
    assert st.barostat["xi"].shape == (3,) and np.abs(st.barostat["vxi"]).max() > 0
    MTKBarostat(3000.0, 0.3, "triclinic", T).initialize(st)
    assert np.array_equal(st.barostat["nu"], nu)
    MTKBarostat(3000.0, 0.3, "isotropic", T).initialize(st)
    assert np.array_equal(st.barostat["nu"], np.eye(3) * (np.trace(nu) / 3))


def test_thermo_conserved_energy_includes_the_barostat():
    """The run's thermo snapshot (econs, LAMMPS' econserve) is E + the thermostat's and the
    barostat's reservoirs, which test_conserved_energy_error_shrinks_as_dt_squared holds constant."""
    from numdp.md.reporters import snapshot

    st = thermalised_argon(seed=6)
    th, baro = THERMOSTATS["nose-hoover"](T, 0.1), MTKBarostat(3000.0, 0.3, "isotropic", T)
    run_mtk(st, 20, 0.01, th, baro)
    snap = snapshot(st, th, barostat=baro)
    terms = (snap.etotal, th.reservoir_energy(st), baro.reservoir_energy(st))
    # the same three terms summed in another order: they differ by at most 2 roundings of the
    # partial sums (u = 2^-53 each)
    bound = 2 * 2.0 ** -53 * sum(abs(x) for x in terms) * 2
    assert abs(snap.econs - sum(terms)) <= bound and terms[2] != 0.0


def test_restart_from_the_state_continues_bit_for_bit():
    """Two runs of 60 steps, the second stopped at 30 and continued with new thermostat and
    barostat objects on the same State (what a checkpoint restores): the same bits."""
    def fresh():
        return THERMOSTATS["nose-hoover"](T, 0.1), MTKBarostat(3000.0, 0.3, "anisotropic", T)

    whole = thermalised_argon(seed=4)
    run_mtk(whole, 60, 0.01, *fresh())
    part = thermalised_argon(seed=4)
    run_mtk(part, 30, 0.01, *fresh())
    run_mtk(part, 30, 0.01, *fresh())
    assert np.array_equal(whole.positions, part.positions)
    assert np.array_equal(whole.velocities, part.velocities)
    assert np.array_equal(whole.box, part.box)
    for key in ("nu", "xi", "vxi"):
        assert np.array_equal(whole.barostat[key], part.barostat[key]), key


def test_a_runaway_cell_stops_with_one_line():
    """A cell far too light (tau 0.5 fs at 10 Mbar) collapses in its first step: CellCollapse names
    the step and both cells, and the MTK barostat's remedy (not c-rescale's compressibility)."""
    from numdp.md.barostat import CellCollapse

    st = thermalised_argon(seed=3)
    with pytest.raises(CellCollapse, match=r"^step 1: the barostat moved the cell from volume .* raise \[md\] "
                                           r"barostat tau \(the cell's mass\), or check the pressure$"):
        run_mtk(st, 5, 0.01, THERMOSTATS["nose-hoover"](T, 0.1), MTKBarostat(1e7, 0.0005, "isotropic", T))


def test_expm3_of_triangular_and_diagonal_matrices():
    """expm3 against the closed form of a lower-triangular exponential (divided differences of exp
    on the diagonal) and exp of a diagonal; a lower-triangular argument gives exact zeros above."""
    d = np.array([0.3, -0.2, 0.05])
    low = np.array([[0.0, 0.0, 0.0], [0.4, 0.0, 0.0], [-0.7, 0.25, 0.0]])
    x = np.diag(d) + low
    e = np.exp(d)

    def dd(a, b):
        return (math.exp(a) - math.exp(b)) / (a - b)

    want = np.diag(e)
    want[1, 0] = low[1, 0] * dd(d[1], d[0])
    want[2, 1] = low[2, 1] * dd(d[2], d[1])
    want[2, 0] = low[2, 0] * dd(d[2], d[0]) + low[2, 1] * low[1, 0] * (dd(d[2], d[1]) - dd(d[1], d[0])) / (d[2] - d[0])
    got = expm3(x)
    assert np.all(np.triu(got, 1) == 0.0)
    # a Taylor sum of ~15 terms and ≤ 3 squarings: a few tens of roundings of O(1) numbers
    np.testing.assert_allclose(got, want, rtol=0, atol=64 * 2.0 ** -52)
    np.testing.assert_allclose(expm3(np.diag(d)), np.diag(e), rtol=64 * 2.0 ** -52, atol=0)
    np.testing.assert_allclose(expm3(x) @ expm3(-x), np.eye(3), rtol=0, atol=64 * 2.0 ** -52)
