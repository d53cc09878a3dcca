"""Ramped thermostat and barostat targets (numdp.md.ramp): the schedule, where in a step it is
evaluated (LAMMPS: target(n + 1) for the step from n to n + 1), the Nosé-Hoover chain masses, and
the kinetic temperature of strongly coupled stochastic thermostats following a ramp.

The restart through a ramp is tests/test_md_run.py's, two ranks against one tests/test_mpi.py's,
the GPU path against the CPU tests/test_cuda_md.py's."""
from __future__ import annotations

import math

import numpy as np
import pytest

from numdp.md.barostat import StochasticCellRescaling
from numdp.md.integrator import VelocityVerlet
from numdp.md.ramp import Ramp
from numdp.md.start import maxwell_boltzmann
from numdp.md.thermostats import THERMOSTATS, HostVelocities, NoseHooverChain
from numdp.system import State, kinetic_energy
from numdp.units import KB
from test_md_potential import argon_state


def test_ramp_schedule_at_given_steps():
    r = Ramp(300.0, 1000.0, 100)
    assert [r.value(s) for s in (0, 1, 25, 50, 99, 100)] == [300.0, 307.0, 475.0, 650.0, 993.0, 1000.0]
    assert r.value(-5) == 300.0 and r.value(150) == 1000.0          # outside 0..end: the nearest end
    assert r.in_step(0) == r.value(1) == 307.0 and r.in_step(99) == 1000.0   # the step being made
    down = Ramp.of((1e4, 1.0), 4)                                   # a pressure ramp down
    assert [down.value(s) for s in range(5)] == [1e4, 1e4 - 2499.75, 1e4 - 4999.5, 1e4 - 7499.25, 1.0]
    assert Ramp.of((300.0, 1000.0), 0).value(0) == 300.0            # a run of no steps: the start
    # a constant is the number itself, at every step, whatever end
    c = Ramp.of(330.1, 7)
    assert c.constant and all(c.value(s) == 330.1 for s in range(-1, 9))
    assert Ramp.of(c) is c and Ramp.of((5.0, 5.0)).value(3) == 5.0
    with pytest.raises(ValueError, match="needs the step at which it ends"):
        Ramp.of((300.0, 1000.0))
    assert c.describe("K") == "330.1 K" and Ramp(1.0, 1e4, 50).describe("bar") == "1.0 -> 10000.0 bar (steps 0 -> 50)"


class RecordingOps(HostVelocities):
    """HostVelocities that records the chain's kT and masses."""

    def nose_hoover_chain(self, state, h, kt, q, nloop, weights):
        self.seen = (kt, q.copy())
        super().nose_hoover_chain(state, h, kt, q, nloop, weights)


def _warm_state(seed=3):
    st = argon_state(cells=2, seed=seed)
    maxwell_boltzmann(st, 80.0, seed)
    st.forces = np.zeros_like(st.positions)
    return st


def test_nose_hoover_chain_masses_follow_the_target_of_the_step():
    """At state.step = 39 of a ramp 100 -> 500 K over 100 steps the half-step uses T(40) = 260 K:
    kT and Q_1 = N_f kT tau², Q_j = kT tau² (LAMMPS recomputes eta_mass from t_target); the
    reservoir energy of the state at step 39 uses T(39) = 256 K."""
    st = _warm_state()
    st.step = 39
    th = NoseHooverChain(Ramp(100.0, 500.0, 100), 0.2, chain=3)
    th.ops = RecordingOps()
    th.initialize(st)
    th.half_step(st, 0.005, 2)
    kt, q = th.ops.seen
    assert kt == KB * 260.0
    assert q == pytest.approx(np.array([st.dof, 1.0, 1.0]) * KB * 260.0 * 0.2 ** 2, rel=1e-14)
    xi, vxi = st.thermostat["xi"], st.thermostat["vxi"]
    kt39 = KB * 256.0
    expected = 0.5 * np.sum(th.chain_masses(st.dof, kt39) * vxi * vxi) + st.dof * kt39 * xi[0] + kt39 * xi[1:].sum()
    assert th.reservoir_energy(st) == expected
    assert vxi[0] != 0.0    # the chain moved


@pytest.mark.parametrize("kind", ["nose-hoover", "langevin", "csvr"])
def test_a_ramped_half_step_is_the_constant_half_step_at_the_next_steps_target(kind):
    """Bit for bit: the half-steps of the step from n to n + 1 under a ramp are those of a constant
    target T(n + 1), at the start and at the end of the step (the same random streams)."""
    for step in (0, 17, 99):
        ramp = Ramp(50.0, 400.0, 100)
        a, b = _warm_state(), _warm_state()
        a.step = b.step = step
        ta, tb = THERMOSTATS[kind](ramp, 0.1), THERMOSTATS[kind](ramp.in_step(step), 0.1)
        for th, st in ((ta, a), (tb, b)):
            th.initialize(st)
            th.half_step(st, 0.005, 2)
            th.half_step(st, 0.005, 3)
        assert np.array_equal(a.velocities, b.velocities), step
        assert not np.array_equal(a.velocities, _warm_state().velocities)


def test_the_barostat_uses_the_ramped_pressure_and_temperature_of_the_step():
    """new_box of the step from n to n + 1 under pressure and temperature ramps equals that of
    constants P(n + 1), T(n + 1) bit for bit, and differs from P(n)'s (the pressure counts)."""
    st = _warm_state()
    st.virial = np.diag([0.3, 0.2, 0.25])
    st.step = 24
    p, t = Ramp(1.0, 5e4, 50), Ramp(80.0, 300.0, 50)
    for coupling in ("isotropic", "triclinic"):
        ramped = StochasticCellRescaling(p, 0.5, 1e-3, coupling, t).new_box(st, 0.01)
        fixed = StochasticCellRescaling(p.value(25), 0.5, 1e-3, coupling, t.value(25)).new_box(st, 0.01)
        assert np.array_equal(ramped, fixed), coupling
        earlier = StochasticCellRescaling(p.value(24), 0.5, 1e-3, coupling, t.value(25)).new_box(st, 0.01)
        colder = StochasticCellRescaling(p.value(25), 0.5, 1e-3, coupling, t.value(24)).new_box(st, 0.01)
        assert not np.array_equal(ramped, earlier) and not np.array_equal(ramped, colder)


def _no_forces(state: State) -> None:
    state.forces = np.zeros_like(state.positions)
    state.virial = np.zeros((3, 3))
    state.potential_energy = 0.0


# The kinetic temperature under a ramp.  On an ideal gas (no forces) the mean kinetic energy of
# both stochastic thermostats obeys, per step from n to n + 1 (both half-steps at T(n + 1)),
#
#     E[T_{n+1}] = a E[T_n] + (1 - a) T(n + 1)
#
# exactly: CSVR draws K from its Ornstein-Uhlenbeck law, whose mean relaxes with rate 1/tau
# (a = exp(-dt/tau)); Langevin relaxes each velocity as exp(-t/tau), so m v² with rate 2/tau
# (a = exp(-2 dt/tau)), and removing the centre-of-mass velocity keeps E[K] = N_f kT/2 on the
# N_f = 3N - 3 remaining degrees of freedom.  For a ramp of rate r (K/ps) the mean lags the
# target by r tau_K (tau_K = tau or tau/2) once the start transient exp(-t/tau_K) has died.
# The fluctuation about it is the canonical sigma_T = T sqrt(2/N_f) per sample, correlated over
# tau_K; a mean over a window of length L has variance sigma_T² (2 tau_K/L)(1 - tau_K/L (1 -
# exp(-L/tau_K))) (the Ornstein-Uhlenbeck correlation exp(-|t|/tau_K)).  Each window mean must lie
# within Z of these of E[T] (Z = 5, 20 windows: false alarm ~1e-5).  A target that does not ramp,
# ramps over the wrong steps or the wrong way is off by 30-100 sigma in the later windows.
NATOMS = 1000
DT, TAU, STEPS, WINDOWS, Z = 0.01, 0.05, 400, 20, 5.0


def ideal_gas_under_a_ramp(kind: str, ramp: Ramp):
    """(kinetic temperature per step 1..STEPS, the state) of NATOMS free argon atoms."""
    rng = np.random.default_rng(4)
    st = State(positions=rng.uniform(0, 50.0, (NATOMS, 3)), velocities=np.zeros((NATOMS, 3)),
               types=np.zeros(NATOMS, dtype=np.int32), masses=np.full(NATOMS, 39.948), box=None,
               type_map=["Ar"], ids=np.arange(NATOMS, dtype=np.int64), seed=9)
    maxwell_boltzmann(st, ramp.value(0), 9)
    th = THERMOSTATS[kind](ramp, TAU)
    th.initialize(st)
    integ = VelocityVerlet(DT, th)
    _no_forces(st)
    temp = np.empty(STEPS)
    for k in range(STEPS):
        integ.step(st, _no_forces)
        temp[k] = 2.0 * kinetic_energy(st.velocities, st.masses) / (st.dof * KB)
    return temp, st


@pytest.mark.parametrize("kind,rate_factor", [("csvr", 1.0), ("langevin", 2.0)])
@pytest.mark.parametrize("start,stop", [(300.0, 1000.0), (800.0, 100.0)])
def test_kinetic_temperature_follows_the_ramp(kind, rate_factor, start, stop):
    ramp = Ramp(start, stop, STEPS)
    temp, st = ideal_gas_under_a_ramp(kind, ramp)
    a = math.exp(-rate_factor * DT / TAU)
    expected = np.empty(STEPS)
    e = ramp.value(0)                     # the start velocities are exactly at T(0)
    for n in range(STEPS):
        e = a * e + (1 - a) * ramp.in_step(n)
        expected[n] = e
    tau_k = TAU / rate_factor
    target = np.array([ramp.value(n + 1) for n in range(STEPS)])
    rate = (stop - start) / (STEPS * DT)                          # K/ps
    # the expected mean is the target less the lag once the start transient (exp(-100 dt/tau_K)
    # here) has died: r dt a/(1 - a) for the discrete filter, r (tau_K - dt/2) + O(dt²/tau_K)
    lag = rate * DT * a / (1 - a)
    assert abs(lag - rate * (tau_k - DT / 2)) <= abs(rate) * DT ** 2 / tau_k
    late = slice(STEPS // 4, None)
    assert np.abs(expected[late] - (target[late] - lag)).max() <= 1e-6 * abs(lag)
    width = STEPS // WINDOWS
    window_t = width * DT
    var_factor = (2 * tau_k / window_t) * (1 - tau_k / window_t * (1 - math.exp(-window_t / tau_k)))
    for w in range(WINDOWS):
        cut = slice(w * width, (w + 1) * width)
        sigma = expected[cut].max() * math.sqrt(2.0 / st.dof) * math.sqrt(var_factor)
        got = temp[cut].mean()
        assert abs(got - expected[cut].mean()) <= Z * sigma, (w, got, expected[cut].mean(), sigma)
    # and it got there: the last sample within Z sigma_T of the end of the ramp (less the lag)
    assert abs(temp[-1] - (stop - lag)) <= Z * stop * math.sqrt(2.0 / st.dof)
