"""Safety stops: the run ends with a clear message instead of producing garbage.

Checked after every step: no two atoms are on top of each other (numdp.neighbor.overlap; named
before the nan energy they cause), the potential energy and every force are finite, no two atoms are
closer than `min_distance` (Å; from the first slot of each per-type neighbour block, which holds
the nearest neighbour of that type), and no atom moved more than the neighbour skin (Å) in one
step.  Atoms are named by global id.  On several ranks each rank checks its own atoms and the
ranks agree (one small reduction per step): the message of the lowest rank with a problem
stops all of them at the same step.  The loop then writes the state to a separate checkpoint and
leaves the trajectory readable.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import InputError
from ..neighbor.overlap import OVERLAP_DISTANCE, overlap_message
from ..parallel.world import World
from ..system import State


class SafetyStop(InputError):
    """The run was stopped because the dynamics became unphysical; the message says where."""


class SafetyMonitor:
    """min_distance: Å (0 disables the close-contact test); skin: Å, the largest move per step;
    move_hint: what the too-large-move message advises (the key that bounds a step's move)."""

    def __init__(self, min_distance: float, skin: float, world: World | None = None,
                 move_hint: str = "reduce [md] timestep"):
        self.min_distance = float(min_distance)
        self.skin = float(skin)
        self.world = world if world is not None else World(None)
        self.move_hint = move_hint

    @staticmethod
    def _label(state: State, atom_id: int, atom_type: int) -> str:
        return f"{atom_id} ({state.type_map[atom_type]})"

    def _atom(self, state: State, i: int) -> str:
        return self._label(state, int(state.ids[i]), int(state.types[i]))

    def local_problem(self, state: State, provider) -> str | None:
        """A message naming the step and the atoms when this rank's atoms are unsafe, else None."""
        step = state.step
        dist, i, j = provider.closest
        if i >= 0 and dist < OVERLAP_DISTANCE:
            return f"step {step}: " + overlap_message(dist, self._atom(state, i),
                                                      self._label(state, *provider.atom_label(j)))
        if not math.isfinite(state.potential_energy):
            return f"step {step}: the potential energy is {state.potential_energy}"
        bad = provider.nonfinite_force_atom(state)
        if bad >= 0:
            return f"step {step}: atom {self._atom(state, bad)} has a non-finite force {state.forces[bad].tolist()}"
        if i >= 0 and dist < self.min_distance:
            return (f"step {step}: atoms {self._atom(state, i)} and {self._label(state, *provider.atom_label(j))} "
                    f"are {dist:.4f} A apart, closer than [safety] min_distance = {self.min_distance} A")
        moved, k = provider.step_displacement
        if k >= 0 and moved > self.skin:
            return (f"step {step}: atom {self._atom(state, k)} moved {moved:.4f} A in one step, more than "
                    f"the neighbour skin {self.skin} A ({self.move_hint})")
        k = self.nonfinite_velocity_atom(state)
        if k >= 0:
            return f"step {step}: atom {self._atom(state, k)} has a non-finite velocity"
        return None

    def nonfinite_velocity_atom(self, state: State) -> int:
        """Local index of the first atom with a non-finite velocity, or -1 (numdp.md.device
        overrides it with a device reduction)."""
        if np.isfinite(state.velocities).all():
            return -1
        return int(np.flatnonzero(~np.isfinite(state.velocities).all(axis=1))[0])

    def check(self, state: State, provider, interrupted: int = 0) -> tuple[str | None, int]:
        """(message of the lowest rank with a problem or None, the stop request of the ranks: the
        largest signal number any rank's request has (numdp.signals.StopRequest.signum; SIGPIPE: a
        closed stdout, which only rank 0 writes), 0 when none).  Collective: every rank gets the
        same answer."""
        problem = self.local_problem(state, provider)
        flags = self.world.flags_global([problem is not None, int(interrupted)])
        if flags[0] and self.world.size > 1:
            ranks = self.world.counts_global(int(problem is not None))
            first = int(np.flatnonzero(ranks)[0])
            problem = self.world.bcast_object(problem, root=first)
        return problem, int(flags[1])
