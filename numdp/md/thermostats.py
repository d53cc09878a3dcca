"""Thermostats: objects that act on the velocities for half a timestep.

Each thermostat provides

    initialize(state)              put its variables into state.thermostat (if not restored)
    half_step(state, h, stream)    act for h ps (the integrator calls it at the start and the end
                                   of every step, with a different random stream each time)
    reservoir_energy(state)        energy (eV) that the thermostat has taken out of the system, so
                                   that E_total + reservoir is conserved up to integration error

Sums over atoms (kinetic energy, momentum) are global: a thermostat holds the run's `world`
(numdp.parallel.world.World) and its variables are identical on every rank.  Every operation on
the velocities goes through `thermostat.ops` (HostVelocities here: NumPy arrays of the State;
numdp.md.device.DeviceVelocities for a run on the GPU), so the thermostat's scalar maths is the
same on both devices (the barostat, numdp.md.barostat, uses the same `ops`).

All three sample the canonical ensemble of the N_f = 3N - 3 degrees of freedom left when the
total momentum is zero (the run loop zeroes it at the start; every thermostat here keeps it zero).
Temperatures in K, times in ps, energies in eV.

The target temperature is a numdp.md.ramp.Ramp (a number is a constant one): a half-step of the
step from n to n + 1 uses `temperature.in_step(n)`, the reservoir energy of a state at step n
`temperature.value(n)` (LAMMPS' t_target, see numdp.md.ramp).
"""
from __future__ import annotations

import math

import numpy as np

from ..parallel.world import World
from ..system import State, kinetic_energy, kinetic_tensor, zero_momentum
from ..units import KB
from ..kernels.cpu.md import langevin_update, transform_rows
from ..kernels.cpu.rng import normal_pair, sum_of_squared_normals
from ..kernels.cpu.thermostat import nose_hoover_chain_half_step
from .ramp import Ramp


class HostVelocities:
    """The operations a thermostat applies to the velocities, on the State's host arrays.
    Sums are global over the run's ranks (`world`)."""

    def __init__(self, world: World | None = None):
        self.world = world if world is not None else World(None)

    def kinetic_energy(self, state: State) -> float:
        """K = 0.5 Σ m v² of the whole system, eV."""
        return self.world.sum_global(kinetic_energy(state.velocities, state.masses))

    def scale(self, state: State, factor: float) -> None:
        """v *= factor."""
        state.velocities *= factor

    def langevin(self, state: State, c: float, kt: float, stream: int) -> None:
        """Ornstein-Uhlenbeck update v = c v + sqrt((1 - c²) kT / m) g (numdp.kernels.cpu.md)."""
        langevin_update(state.velocities, state.masses, state.ids, c, kt,
                        np.int64(state.seed), np.int64(state.step), np.int64(stream))

    def zero_momentum(self, state: State) -> None:
        """Subtract the centre-of-mass velocity (Σ m v = 0 over the whole system)."""
        zero_momentum(state.velocities, state.masses, self.world.sum_global)

    def kinetic_tensor(self, state: State) -> np.ndarray:
        """Σ m v ⊗ v of the whole system, (3, 3) eV (the barostat's kinetic pressure)."""
        return self.world.sum_global(kinetic_tensor(state.velocities, state.masses))

    def transform(self, state: State, m: np.ndarray, mv: np.ndarray) -> None:
        """Positions r -> r @ m and velocities v -> v @ mv (the barostat's cell move; (3, 3))."""
        transform_rows(state.positions, m)
        transform_rows(state.velocities, mv)

    def nose_hoover_chain(self, state: State, h: float, kt: float, q: np.ndarray, nloop: int,
                          weights: np.ndarray) -> None:
        """The Nosé-Hoover chain's half-step h (ps) on state.thermostat["xi"], ["vxi"] (M,) and the
        velocities (NoseHooverChain.half_step; kt eV, q (M,) chain masses eV ps²)."""
        host_nose_hoover_chain(self, state, h, kt, q, nloop, weights)


def host_nose_hoover_chain(ops, state: State, h: float, kt: float, q: np.ndarray, nloop: int,
                           weights: np.ndarray) -> None:
    """The chain's half-step with its variables on the host (state.thermostat) and the
    velocities behind `ops`: the global kinetic energy (ops.kinetic_energy), the chain's
    scalar maths (numdp.kernels.cpu.thermostat), then ops.scale.  A system at rest is left as
    it is (a chain cannot heat it)."""
    k2 = 2.0 * ops.kinetic_energy(state)
    if k2 == 0.0:
        return
    factor = float(nose_hoover_chain_half_step(k2, state.dof, kt, q, h, nloop, weights,
                                               state.thermostat["xi"], state.thermostat["vxi"]))
    if not (math.isfinite(factor) and np.all(np.isfinite(state.thermostat["vxi"]))):
        raise ChainDiverged(0.5 * k2)
    ops.scale(state, factor)


SUZUKI_YOSHIDA_3 = np.array([1.0 / (2.0 - 2.0 ** (1.0 / 3.0)),
                             1.0 - 2.0 / (2.0 - 2.0 ** (1.0 / 3.0)),
                             1.0 / (2.0 - 2.0 ** (1.0 / 3.0))])
"""The weights of the Suzuki-Yoshida order-3 composition of a Nosé-Hoover chain's half-step."""

SINGLE_PASS = np.array([1.0])
"""One pass of the chain's half-step (LAMMPS' fix nvt/npt/nph: nhc_temp_integrate and
nhc_press_integrate with tloop = ploop = 1 have no Suzuki-Yoshida composition)."""

FORMS = ("numdp", "lammps")
"""`form` of NoseHooverChain and numdp.md.mtk.MTKBarostat: numdp's own splitting, or LAMMPS'."""


class ChainDiverged(ArithmeticError):
    """The chain's half-step on the host gave a non-finite scale factor or chain velocity (a
    timestep far above tau); NoseHooverChain.half_step turns it into a SafetyStop.  On one GPU
    rank the chain runs on the device and the host checks nothing per step: the non-finite
    velocities it leaves are the device safety reduction's stop (numdp.md.device)."""

    def __init__(self, kinetic: float):
        super().__init__(kinetic)
        self.kinetic = kinetic


class NoseHooverChain:
    """Nosé-Hoover chain (Martyna, Klein, Tuckerman 1992) with the reversible Trotter split of
    Martyna, Tuckerman, Tobias, Klein (1996): Suzuki-Yoshida order 3, `nloop` sub-cycles.

    form "numdp" (numdp run's default) composes each half-step of three Suzuki-Yoshida sub-steps;
    form "lammps" (numdp lmp's fix nvt / npt) makes one pass, LAMMPS' nhc_temp_integrate with its
    default tloop 1, so that the trajectory is LAMMPS' to round-off (checked against LAMMPS 22 Jul
    2025: tests/test_sweep_lammps_nh.py).  Both are time-reversible second-order splittings of
    the same equations, with the same conserved energy (reservoir_energy).

    Masses Q_1 = N_f kT tau², Q_j = kT tau² (j > 1), as LAMMPS' fix nvt with Tdamp = tau (ps): the
    chain oscillates with a period of about 4.4 tau.  With a ramped target the masses follow the
    target of the step (LAMMPS recomputes eta_mass from t_target in every nhc_temp_integrate),
    and so does the reservoir energy, which is then not conserved (the schedule does work).  The conserved energy (reservoir_energy) is
    Σ Q_j vξ_j² / 2 + N_f kT ξ_1 + kT Σ_{j>1} ξ_j.  Variables: state.thermostat["xi"] (M,) positions (dimensionless),
    ["vxi"] (M,) velocities (1/ps).

    The half-step's maths is numdp.kernels.mdmath.nose_hoover_chain, run by
    `ops.nose_hoover_chain`: on the host (HostVelocities, numdp.kernels.cpu.thermostat) or, in a
    one-rank GPU run, on the device with the variables kept there (numdp.md.device.DeviceVelocities):
    state.thermostat is then current only after the integrator's sync_host.
    """

    kind = "nose-hoover"
    _WEIGHTS = SUZUKI_YOSHIDA_3   # form "numdp"

    def __init__(self, temperature: float | Ramp, tau: float, chain: int = 3, nloop: int = 1,
                 world: World | None = None, form: str = "numdp"):
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {form!r}")
        self.form = form
        self._weights = SINGLE_PASS if form == "lammps" else self._WEIGHTS
        self.world = world if world is not None else World(None)
        self.ops = HostVelocities(self.world)
        self.temperature = Ramp.of(temperature)
        self.tau = float(tau)
        self.chain = int(chain)
        self.nloop = int(nloop)

    def chain_masses(self, dof: int, kt: float) -> np.ndarray:
        """Chain masses (M,) eV ps² at the target kt (eV): Q_1 = N_f kT tau², Q_j = kT tau²."""
        q = np.full(self.chain, kt * self.tau ** 2)
        q[0] *= dof
        return q

    def initialize(self, state: State) -> None:
        for key in ("xi", "vxi"):
            if key not in state.thermostat or state.thermostat[key].shape != (self.chain,):
                state.thermostat[key] = np.zeros(self.chain)

    def half_step(self, state: State, h: float, stream: int) -> None:
        kt = KB * self.temperature.in_step(state.step)
        try:
            self.ops.nose_hoover_chain(state, h, kt, self.chain_masses(state.dof, kt), self.nloop, self._weights)
        except ChainDiverged as e:  # the same numbers on every rank (global kinetic energy): all stop alike
            from ..parallel.world import mark_agreed
            from .safety import SafetyStop

            raise mark_agreed(SafetyStop(
                f"step {state.step + 1}: the Nose-Hoover chain diverged in a half-step of {h:g} ps (kinetic "
                f"energy {e.kinetic:.6g} eV); the timestep is too large for [md] thermostat.tau = {self.tau:g} ps "
                f"or the dynamics exploded: use a timestep well below tau"), self.world.is_root) from None

    def reservoir_energy(self, state: State) -> float:
        xi = state.thermostat["xi"]
        v = state.thermostat["vxi"]
        kt = KB * self.temperature.value(state.step)
        q = self.chain_masses(state.dof, kt)
        return float(0.5 * np.sum(q * v * v) + state.dof * kt * xi[0] + kt * np.sum(xi[1:]))


class _HeatBath:
    """Shared part of the stochastic thermostats: target temperature (K, a Ramp or a number), time
    constant tau (ps), and the energy given to the bath, state.thermostat["heat"] (1,) eV."""

    def __init__(self, temperature: float | Ramp, tau: float, world: World | None = None):
        self.world = world if world is not None else World(None)
        self.ops = HostVelocities(self.world)
        self.temperature = Ramp.of(temperature)
        self.tau = float(tau)

    def initialize(self, state: State) -> None:
        state.thermostat.setdefault("heat", np.zeros(1))

    def reservoir_energy(self, state: State) -> float:
        return float(state.thermostat["heat"][0])


class Langevin(_HeatBath):
    """Langevin thermostat: exact Ornstein-Uhlenbeck velocity update (friction 1/tau) at both ends
    of a step (the OBABO scheme of Bussi & Parrinello 2007), followed by removing the centre-of-mass
    velocity, which keeps the canonical distribution of the remaining 3N - 3 degrees of freedom.

    Variables: state.thermostat["heat"] (1,) energy given to the bath, eV.
    """

    kind = "langevin"

    def half_step(self, state: State, h: float, stream: int) -> None:
        ops = self.ops
        k0 = ops.kinetic_energy(state)
        ops.langevin(state, math.exp(-h / self.tau), KB * self.temperature.in_step(state.step), stream)
        ops.zero_momentum(state)
        state.thermostat["heat"][0] += k0 - ops.kinetic_energy(state)


class StochasticVelocityRescaling(_HeatBath):
    """Canonical sampling through velocity rescaling (Bussi, Donadio, Parrinello 2007).

    The kinetic energy is drawn exactly from the Ornstein-Uhlenbeck process of relaxation time tau
    (ps) whose stationary law is the canonical one for N_f degrees of freedom; velocities are scaled
    to it.  Variables: state.thermostat["heat"] (1,) energy given to the bath, eV.
    """

    kind = "csvr"

    def half_step(self, state: State, h: float, stream: int) -> None:
        k = self.ops.kinetic_energy(state)
        if k == 0.0:
            return  # no direction to scale along
        dof = state.dof
        target = 0.5 * dof * KB * self.temperature.in_step(state.step)
        c = math.exp(-h / self.tau)
        key = (np.int64(state.seed), np.int64(state.step), np.int64(stream))
        r1, _ = normal_pair(*key, np.int64(0), np.int64(0))
        rest = sum_of_squared_normals(*key, np.int64(dof - 1))  # χ² with N_f - 1 degrees of freedom
        k_new = (c * k + (1.0 - c) * target * (r1 * r1 + rest) / dof
                 + 2.0 * r1 * math.sqrt(c * (1.0 - c) * target * k / dof))
        alpha = math.sqrt(k_new / k)
        if r1 + math.sqrt(c * dof * k / ((1.0 - c) * target)) < 0.0:
            alpha = -alpha  # the component along the old velocity changed sign
        self.ops.scale(state, alpha)
        state.thermostat["heat"][0] += k - k_new


THERMOSTATS = {
    "nose-hoover": NoseHooverChain,
    "langevin": Langevin,
    "csvr": StochasticVelocityRescaling,
}
