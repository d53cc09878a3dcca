"""Velocity Verlet composed of named half-steps.

One step of dt (ps) is the symmetric sequence

    thermostat(dt/2) · kick(dt/2) · drift(dt/2) · barostat(dt) · drift(dt/2) · force ·
    kick(dt/2) · thermostat(dt/2)

(drift(dt/2)·drift(dt/2) is a single drift(dt) without a barostat).  With no thermostat and no
barostat this is plain velocity Verlet (NVE); with a Langevin thermostat it is the OBABO scheme;
with a Nose-Hoover chain it is the Trotter split of Martyna et al. (1996).  A barostat with a
momentum of its own (`extended`: numdp.md.mtk, Martyna–Tobias–Klein) has its own sequence
around the same kick, drift and thermostat half-steps (`_extended_step`).  The integrator knows
nothing about the potential: `forces(state)` must fill state.forces, state.virial and
state.potential_energy for the current positions and cell.
"""
from __future__ import annotations

from typing import Callable

from ..system import State
from ..kernels.cpu.md import drift, kick
from ..kernels.cpu.rng import STREAM_THERMOSTAT_END, STREAM_THERMOSTAT_START


class VelocityVerlet:
    """dt: timestep, ps; thermostat / barostat: objects of numdp.md.thermostats / .barostat or None."""

    minimizing = False   # (numdp.md.minimize.FireMinimizer takes this place in a minimization)
    finished = None      # dynamics runs to the loop's end step: no other stop

    def __init__(self, dt: float, thermostat=None, barostat=None):
        self.dt = float(dt)
        self.thermostat = thermostat
        self.barostat = barostat

    # -- named half-steps ----------------------------------------------------------------------
    def thermostat_half(self, state: State, stream: int) -> None:
        if self.thermostat is not None:
            self.thermostat.half_step(state, 0.5 * self.dt, stream)

    def kick_half(self, state: State) -> None:
        kick(state.velocities, state.forces, state.masses, 0.5 * self.dt)

    def drift_for(self, state: State, h: float) -> None:
        drift(state.positions, state.velocities, h)

    def kick_drift(self, state: State, h: float) -> None:
        """kick_half then drift_for(h), atom by atom the same arithmetic (the GPU twin fuses the
        two into one launch)."""
        self.kick_half(state)
        self.drift_for(state, h)

    def barostat_full(self, state: State) -> None:
        self.barostat.step(state, self.dt)

    def sync_host(self, state: State) -> None:
        """Make the State's arrays current before it is read on the host (reports, checkpoints,
        stops).  Nothing to do here: this integrator works on the host arrays (the GPU twin,
        numdp.md.device.DeviceVelocityVerlet, copies its device arrays)."""

    def at_end(self, state: State, end_step: int) -> None:
        """The run reached its end step (the minimizer's hook; nothing to do for dynamics)."""

    def final_lines(self, state: State) -> list[str]:
        """Lines for the end of the log after the summary (the minimizer's statistics; none here)."""
        return []

    # -- one step --------------------------------------------------------------------------------
    def step(self, state: State, forces: Callable[[State], None]) -> None:
        """Advance `state` by dt; `forces(state)` is called once, after the positions moved."""
        baro = self.barostat
        if baro is not None and baro.extended:
            self._extended_step(state, forces, baro)
            return
        self.thermostat_half(state, STREAM_THERMOSTAT_START)
        if baro is None:
            self.kick_drift(state, self.dt)
        else:
            self.kick_half(state)
            self.drift_for(state, 0.5 * self.dt)
            self.barostat_full(state)
            self.drift_for(state, 0.5 * self.dt)
        forces(state)
        self.kick_half(state)
        self.thermostat_half(state, STREAM_THERMOSTAT_END)
        state.step += 1
        state.time += self.dt

    def _extended_step(self, state: State, forces: Callable[[State], None], baro) -> None:
        """The step with a barostat of its own momentum (numdp.md.mtk: the palindrome of its
        docstring); the second half needs the force call's virial."""
        h = 0.5 * self.dt
        baro.chain_half(state, h)
        self.thermostat_half(state, STREAM_THERMOSTAT_START)
        baro.momentum_half(state, h)
        baro.scale_velocities(state, h)
        self.kick_half(state)
        baro.scale_cell(state, h)
        self.drift_for(state, self.dt)
        baro.scale_cell(state, h)
        forces(state)
        self.kick_half(state)
        baro.scale_velocities(state, h)
        baro.momentum_half(state, h)
        self.thermostat_half(state, STREAM_THERMOSTAT_END)
        baro.chain_half(state, h, end=True)
        state.step += 1
        state.time += self.dt
