"""A thermostat's or barostat's target that is constant or ramps linearly over the run.

LAMMPS writes a ramp as `fix nvt all nvt temp 300 1000 0.1` or `fix npt ... iso 1 10000 1.0`: the
target of the step being made is

    target(n) = start + (stop - start) * (n - begin) / (end - begin)

with n = update->ntimestep, which Verlet::run increments *before* the step's initial_integrate;
fix_nh (compute_temp_target / compute_press_target at the start of initial_integrate), fix
langevin (post_force) and fix temp/csvr (end_of_step) all evaluate it there, so the step from n to
n + 1 uses target(n + 1) throughout: both thermostat half-steps, the chain masses, the barostat.
Their setup evaluates it at n = begin (target = start); a state at step n (a thermo line, a
checkpoint) goes with target(n).

numdp anchors every ramp at begin = 0 and end = [md] steps (absolute step numbers), the LAMMPS
run `run N start 0 stop N` of a run that started at step 0: a run interrupted and restarted from a
checkpoint follows the same schedule and repeats the uninterrupted run bit for bit, whatever step
it restarts at.  Changing [md] steps on a restart re-anchors the ramp (the target jumps to the new
schedule's value at the restart step).

Units are the caller's (K for a temperature, bar for a pressure).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Ramp:
    """Linear target from `start` at step 0 to `stop` at step `end` (absolute steps, end >= 0).

    A constant target has start == stop and gives `start` itself at every step (the same bits as
    a plain number).  Steps outside [0, end] give the nearest end's value; end = 0 (a run of no
    steps) gives `start` (LAMMPS: delta = 0 when ntimestep == beginstep).
    """

    start: float
    stop: float
    end: int = 0

    @classmethod
    def of(cls, value, end: int | None = None) -> "Ramp":
        """A Ramp from a number (constant), a (start, stop) pair (needs `end`, the step at which
        `stop` is reached: [md] steps) or a Ramp (returned as it is)."""
        if isinstance(value, Ramp):
            return value
        if isinstance(value, (tuple, list)):
            start, stop = (float(v) for v in value)
            if start != stop and end is None:
                raise ValueError("a ramp needs the step at which it ends")
            return cls(start, stop, int(end or 0))
        return cls(float(value), float(value), int(end or 0))

    @property
    def constant(self) -> bool:
        return self.start == self.stop

    def value(self, step: int) -> float:
        """The target at absolute step `step` (the state after `step` steps)."""
        if self.constant or self.end <= 0 or step <= 0:
            return self.start
        if step >= self.end:
            return self.stop
        return self.start + (step / self.end) * (self.stop - self.start)

    def in_step(self, step: int) -> float:
        """The target while the step from `step` to `step + 1` is made: value(step + 1)
        (LAMMPS evaluates it after incrementing ntimestep, see the module docstring)."""
        return self.value(step + 1)

    def describe(self, unit: str) -> str:
        """"300 K" for a constant, "300 -> 1000 K (steps 0 -> 10000)" for a ramp."""
        if self.constant:
            return f"{self.start} {unit}"
        return f"{self.start} -> {self.stop} {unit} (steps 0 -> {self.end})"
