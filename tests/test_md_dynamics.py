"""Integrator, thermostat and barostat physics on the analytic Lennard-Jones test potential.

The statistical tests compare averages with their exact values within Z standard errors and also
require the standard error to be small, so that a test cannot pass by noise.  Standard errors come
from 10 block averages, so (mean - exact) / error follows a t distribution with 9 degrees of
freedom: Z = 5 gives a false-alarm rate below 1e-3 per comparison.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from numdp.md.barostat import StochasticCellRescaling, is_lower_triangular
from numdp.md.forces import ForceProvider
from numdp.md.integrator import VelocityVerlet
from numdp.md.start import maxwell_boltzmann
from numdp.md.thermostats import THERMOSTATS
from numdp.system import State, kinetic_energy, pressure_tensor
from numdp.units import EV_PER_A3_TO_BAR, KB
from test_md_potential import LennardJones, argon_state

T = 80.0  # K (argon)
Z = 5.0


def block_error(x, nblocks=10):
    """Standard error of the mean of a correlated series from `nblocks` block averages."""
    n = len(x) // nblocks
    b = np.asarray(x[: n * nblocks]).reshape(nblocks, n).mean(axis=1)
    return b.std(ddof=1) / math.sqrt(nblocks)


def simulate(state, steps, dt, thermostat=None, barostat=None, skin=1.0):
    """Run `steps` steps; returns dict of per-step series (K eV, E eV, econs eV, P tensor bar, V Å³)."""
    integ = VelocityVerlet(dt, thermostat, barostat)
    fp = ForceProvider(LennardJones(), skin)
    fp(state)
    out = {"K": [], "E": [], "econs": [], "P": [], "V": []}
    for _ in range(steps):
        integ.step(state, fp)
        k = kinetic_energy(state.velocities, state.masses)
        res = thermostat.reservoir_energy(state) if thermostat is not None else 0.0
        out["K"].append(k)
        out["E"].append(k + state.potential_energy)
        out["econs"].append(k + state.potential_energy + res)
        out["P"].append(pressure_tensor(state.velocities, state.masses, state.virial, state.volume) * EV_PER_A3_TO_BAR)
        out["V"].append(state.volume)
    out = {k: np.array(v) for k, v in out.items()}
    out["provider"] = fp
    return out


def thermalised_argon(seed=3, cells=2, a=5.30):
    st = argon_state(cells=cells, a=a, seed=seed)
    maxwell_boltzmann(st, T, seed)
    return st


def test_maxwell_boltzmann_start_has_exact_temperature_and_zero_momentum():
    st = thermalised_argon()
    k = kinetic_energy(st.velocities, st.masses)
    assert 2 * k / (st.dof * KB) == pytest.approx(T, rel=1e-12)
    assert np.abs(st.masses @ st.velocities).max() < 1e-12


def test_nve_energy_error_shrinks_as_dt_squared():
    fluct = []
    for dt, steps in ((0.01, 400), (0.005, 800)):
        r = simulate(thermalised_argon(), steps, dt)
        e = r["E"]
        fluct.append(e.std())
        # no drift beyond the (bounded) oscillation of the shadow energy
        assert abs(e[-steps // 4:].mean() - e[: steps // 4].mean()) < 3 * e.std()
    assert 3.0 < fluct[0] / fluct[1] < 5.0  # second order: ratio 4
    assert fluct[1] / r["K"].mean() < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["nose-hoover", "langevin", "csvr"])
def test_thermostat_samples_the_canonical_kinetic_energy(kind):
    st = thermalised_argon(seed=5)
    th = THERMOSTATS[kind](T, 0.05)
    th.initialize(st)
    k = simulate(st, 6000, 0.01, th)["K"][1000:]
    kbar = 0.5 * st.dof * KB * T  # <K> = N_f kT / 2
    var = 0.5 * st.dof * (KB * T) ** 2  # Var K = N_f (kT)² / 2 (Gamma distribution)
    mean_err = block_error(k) / kbar
    assert mean_err < 0.01
    assert abs(k.mean() / kbar - 1) < Z * mean_err
    dk2 = (k - kbar) ** 2
    var_err = block_error(dk2) / var
    assert var_err < 0.1
    assert abs(dk2.mean() / var - 1) < Z * var_err


@pytest.mark.parametrize("kind", ["nose-hoover", "langevin", "csvr"])
def test_thermostat_energy_bookkeeping_is_conserved(kind):
    """E + reservoir (NHC: chain energy; Langevin / CSVR: heat given to the bath) stays constant up to
    the integration error, while E itself changes by much more."""
    st = thermalised_argon(seed=7)
    st.velocities *= 1.5  # start hot so that the thermostat must remove energy
    th = THERMOSTATS[kind](T, 0.1)
    th.initialize(st)
    r = simulate(st, 600, 0.005, th)
    exchanged = r["E"].max() - r["E"].min()
    assert exchanged > 50 * r["econs"].std()
    assert r["econs"].std() / r["K"].mean() < 2e-3


@pytest.mark.parametrize("kind", ["nose-hoover", "langevin", "csvr", None])
def test_total_momentum_stays_zero(kind):
    st = thermalised_argon(seed=2)
    th = THERMOSTATS[kind](T, 0.1) if kind else None
    if th:
        th.initialize(st)
    baro = StochasticCellRescaling(100.0, 0.5, 1e-4, "triclinic", T) if kind else None
    simulate(st, 100, 0.01, th, baro)
    p = st.masses @ st.velocities
    assert np.abs(p).max() < 1e-10 * np.abs(st.masses[:, None] * st.velocities).sum()


# -- barostat ----------------------------------------------------------------------------------------


def _cold_state(virial, box=None):
    """A state with zero velocities and a chosen virial (eV), for the deterministic barostat part."""
    st = argon_state(cells=2)
    if box is not None:
        m = np.linalg.solve(st.box, box)
        st.positions = st.positions @ m
        st.box = box
    st.virial = np.asarray(virial, dtype=float)
    return st


def test_barostat_moves_the_cell_toward_the_target_pressure():
    v = 10.0 * np.eye(3)  # positive internal pressure (13 kbar); T ~ 0: no noise
    iso = StochasticCellRescaling(0.0, 1.0, 1e-4, "isotropic", 1e-20)
    st = _cold_state(v)
    assert iso.new_box(st, 0.01)[0, 0] > st.box[0, 0]
    aniso = StochasticCellRescaling(0.0, 1.0, 1e-4, "anisotropic", 1e-20)
    st = _cold_state(np.diag([10.0, 0.0, -10.0]))
    grown = np.diag(aniso.new_box(st, 0.01)) / np.diag(st.box)
    assert grown[0] > 1.0 and grown[1] == pytest.approx(1.0, abs=1e-12) and grown[2] < 1.0
    tri = StochasticCellRescaling(0.0, 1.0, 1e-4, "triclinic", 1e-20)
    shear = np.zeros((3, 3))
    shear[0, 1] = shear[1, 0] = 10.0  # positive xy stress tilts b along +x
    st = _cold_state(shear)
    new = tri.new_box(st, 0.01)
    assert new[1, 0] > 0 and is_lower_triangular(new)


def test_barostat_step_keeps_fractional_coordinates_and_scaled_momenta():
    box = np.array([[10.6, 0.0, 0.0], [0.8, 10.4, 0.0], [-0.5, 0.3, 10.9]])
    st = _cold_state(np.diag([300.0, -100.0, 50.0]) + 40.0 * (1 - np.eye(3)), box)
    st.velocities = np.random.default_rng(0).normal(size=st.positions.shape)
    s0 = st.positions @ np.linalg.inv(st.box)
    pi0 = st.velocities @ st.box.T  # p h^T is invariant (scaled momenta)
    StochasticCellRescaling(0.0, 1.0, 1e-4, "triclinic", T).step(st, 0.05)
    assert not np.allclose(st.box, box)
    assert is_lower_triangular(st.box)
    np.testing.assert_allclose(st.positions @ np.linalg.inv(st.box), s0, atol=1e-12)
    np.testing.assert_allclose(st.velocities @ st.box.T, pi0, atol=1e-10)


class NoInteraction:
    """An ideal gas: the potential is zero (interface of numdp.md.forces.ForceProvider).  The
    cutoff is tiny so that even a cell compressed a thousandfold has few periodic images."""

    rcut = 0.1
    type_map = ["Ar"]
    sel = [16]

    def compute(self, ext_positions, nlist, types, atom_virial=False):
        return SimpleNamespace(atom_energy=np.zeros(len(types)), force=np.zeros_like(ext_positions),
                               virial=np.zeros((3, 3)), atom_virial=None)


def ideal_gas_npt(n, p0, coupling, thermostat, steps, tau=0.25, seed=1, barostat=None):
    """Run n non-interacting argon atoms at T under the barostat (β_T = 1/P0, the gas's own
    compressibility, so the cell relaxes in about tau); returns (V Å³, P tensor eV/Å³) per step
    after the first tenth.  dt/tau = 0.04: the Euler-Maruyama bias of <P0 V/kT> measured below
    0.03 (within its noise) for four atoms over three runs of 40000 steps.  `barostat`: another
    barostat object instead (coupling and tau are then its own)."""
    kt, p = KB * T, p0 / EV_PER_A3_TO_BAR
    length = ((n + 1) * kt / p) ** (1 / 3)
    rng = np.random.default_rng(seed)
    st = State(positions=rng.uniform(0, length, (n, 3)), velocities=np.zeros((n, 3)),
               types=np.zeros(n, dtype=np.int32), masses=np.full(n, 39.948), box=np.eye(3) * length,
               type_map=["Ar"], ids=np.arange(n), seed=seed)
    maxwell_boltzmann(st, T, seed)
    th = THERMOSTATS[thermostat](T, 0.1)
    th.initialize(st)
    baro = barostat if barostat is not None else StochasticCellRescaling(p0, tau, 1.0 / p0, coupling, T)
    baro.initialize(st)
    integ = VelocityVerlet(0.01, th, baro)
    fp = ForceProvider(NoInteraction(), 1.0)  # a wide skin: few rebuilds
    fp(st)
    v, ptens = np.empty(steps), np.empty((steps, 3, 3))
    for k in range(steps):
        integ.step(st, fp)
        v[k] = st.volume
        ptens[k] = pressure_tensor(st.velocities, st.masses, st.virial, st.volume)
    return v[steps // 10:], ptens[steps // 10:]


# The ideal-gas tests below decide between hypotheses one unit of their statistic apart (a
# Jacobian off by one power of V, or the kT/V drift missing or doubled): each requires its
# standard error below 1/Z = 0.2 and the mean within Z errors of the exact value, so a wrong
# hypothesis could pass only by a 5-sigma fluctuation, and never while the error bound holds.
# Four atoms make the effect half the noise of one sample (P0 V/kT ~ Gamma(5): mean 5, standard
# deviation 2.2) while keeping the cell away from the tiny volumes where one Euler step of the
# cell (variance ~ 1/V) is no longer small.  With the kT/V drift removed these runs give
# <P0 V/kT> = 4.02 +- 0.06 and <V (P0 - P)>/kT = 1.02-1.06 +- 0.07, as derived.

@pytest.mark.slow
def test_npt_ideal_gas_volume_distribution():
    """Exact isothermal-isobaric result for N ideal-gas atoms: P0 V / kT ~ Gamma(N + 1), so
    <P0 V / kT> = N + 1 (N or N + 2 would mean a wrong Jacobian in the cell move, e.g. the
    barostat's kT/V drift missing or doubled; numdp.md.barostat derives it)."""
    n, p0 = 4, 100.0
    v, _ = ideal_gas_npt(n, p0, "isotropic", "langevin", 40000)
    x = v * (p0 / EV_PER_A3_TO_BAR) / (KB * T)
    err = block_error(x)
    assert err < 1.0 / Z  # measured 0.06-0.07
    assert abs(x.mean() - (n + 1)) < Z * err


@pytest.mark.slow
@pytest.mark.parametrize("coupling", ["isotropic", "anisotropic"])
def test_npt_holds_the_target_pressure(coupling):
    """Stochastic cell rescaling with N_f = 3N - 3 samples <V (P0 - P_kk)> = 2 kT per scaled
    direction with P = (2K + tr W)/(3V) (numdp.md.barostat); kT would mean a missing kT/V drift
    (or the full 3N kinetic degrees of freedom), 3 kT a doubled one."""
    p0 = 100.0
    v, ptens = ideal_gas_npt(4, p0, coupling, "csvr", 40000)
    y = v[:, None] * (p0 / EV_PER_A3_TO_BAR - np.einsum("tkk->tk", ptens)) / (KB * T)  # V (P0 - P_kk) / kT
    mean = y.mean(axis=1)
    err = block_error(mean)
    assert err < 1.0 / Z  # measured 0.07-0.10
    assert abs(mean.mean() - 2.0) < Z * err
    if coupling == "anisotropic":  # each direction too (noisier: errors 0.07-0.19, no bound)
        for k in range(3):
            assert abs(y[:, k].mean() - 2.0) < Z * block_error(y[:, k])
    assert v.max() > 2 * v.min()  # the cell did move


@pytest.mark.slow
def test_npt_triclinic_liquid_argon_keeps_the_pressure_and_no_shear():
    """32 atoms of liquid argon with triclinic coupling: the shear stress averages to zero, the
    cell stays lower-triangular and the pressure is P0 - 2 kT/<V> within the noise (the 2 kT/V,
    17 bar here, is below that noise: the ideal-gas tests above check it)."""
    p0 = 500.0
    st = thermalised_argon(seed=11, a=5.45)
    th = THERMOSTATS["csvr"](T, 0.1)
    th.initialize(st)
    baro = StochasticCellRescaling(p0, 0.5, 1e-4, "triclinic", T)
    r = simulate(st, 6000, 0.01, th, baro)
    assert_pressure_and_no_shear(r["V"][1000:], r["P"][1000:], p0)
    assert is_lower_triangular(st.box)
    assert r["V"][-1] != r["V"][0]


def assert_pressure_and_no_shear(v, p, p0):
    """V P_kk / <V> (v Å³, p (n, 3, 3) bar per step) averages to P0 − 2 kT/<V> (bar) in each
    direction and on the mean of the three, within Z block errors (that of the mean below 60 bar),
    and the shear stress to zero."""
    target = p0 - 2 * KB * T / v.mean() * EV_PER_A3_TO_BAR
    pv = np.einsum("tkk,t->tk", p, v) / v.mean()  # V P_kk / <V>, bar
    series = pv.mean(axis=1)
    err = block_error(series)
    assert err < 60.0
    assert abs(series.mean() - target) < Z * err
    for k in range(3):
        assert abs(pv[:, k].mean() - target) < Z * block_error(pv[:, k])
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert abs(p[:, a, b].mean()) < Z * block_error(p[:, a, b])


def test_diverging_nose_hoover_chain_is_a_safety_stop():
    """A timestep far above tau made the chain's exp() overflow: an OverflowError traceback from
    `numdp run` (timestep 0.05 ps, tau 0.1 ps on water). It is now a SafetyStop (one line, exit 2)."""
    from numdp.md.safety import SafetyStop

    st = thermalised_argon()
    st.velocities *= 0.01  # far below the target: the chain's first force is -(1 - 1e-4) / tau^2
    th = THERMOSTATS["nose-hoover"](T, 0.1)
    th.initialize(st)
    with pytest.raises(SafetyStop, match=r"step 1: the Nose-Hoover chain diverged in a half-step of 10 ps .*"
                                         r"thermostat.tau = 0.1 ps"):
        th.half_step(st, 10.0, 0)
    # a sane half-step of the same state is untouched by the check
    st2 = thermalised_argon()
    st2.velocities *= 0.01
    th.initialize(st2)
    th.half_step(st2, 0.005, 0)
    assert np.all(np.isfinite(st2.velocities))
