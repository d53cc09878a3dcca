"""Safety stops: the run ends with a clear message instead of producing garbage.

Checked after every step: the potential energy and every force are finite, no two atoms are
closer than `min_distance` (Å; from the first slot of each per-type neighbour block, which holds
the nearest neighbour of that type), and no atom moved more than the neighbour skin (Å) in one
step.  The loop then writes the state to a separate checkpoint and leaves the trajectory readable.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import InputError
from ..system import State


class SafetyStop(InputError):
    """The run was stopped because the dynamics became unphysical; the message says where."""


class SafetyMonitor:
    """min_distance: Å (0 disables the close-contact test); skin: Å, the largest move per step."""

    def __init__(self, min_distance: float, skin: float):
        self.min_distance = float(min_distance)
        self.skin = float(skin)

    @staticmethod
    def _atom(state: State, i: int) -> str:
        return f"{i} ({state.type_map[int(state.types[i])]})"

    def check(self, state: State, provider) -> str | None:
        """A message naming the step and the atoms when the state is unsafe, else None."""
        step = state.step
        if not math.isfinite(state.potential_energy):
            return f"step {step}: the potential energy is {state.potential_energy}"
        bad = provider.nonfinite_force_atom(state)
        if bad >= 0:
            return f"step {step}: atom {self._atom(state, bad)} has a non-finite force {state.forces[bad].tolist()}"
        dist, i, j = provider.closest
        if i >= 0 and dist < self.min_distance:
            jo = provider.owner(j)
            return (f"step {step}: atoms {self._atom(state, i)} and {self._atom(state, jo)} are {dist:.4f} A "
                    f"apart, closer than [safety] min_distance = {self.min_distance} A")
        moved, k = provider.step_displacement
        if k >= 0 and moved > self.skin:
            return (f"step {step}: atom {self._atom(state, k)} moved {moved:.4f} A in one step, more than "
                    f"the neighbour skin {self.skin} A (reduce [md] timestep)")
        if not np.isfinite(state.velocities).all():
            k = int(np.flatnonzero(~np.isfinite(state.velocities).all(axis=1))[0])
            return f"step {step}: atom {self._atom(state, k)} has a non-finite velocity"
        return None
