"""Forces for MD: a neighbour list with a skin, kept between rebuilds, plus the model call.

At a rebuild the ghost images and the candidate pairs are built for rcut + skin
(`numdp.neighbor.extend`, `find_candidates`).  Between rebuilds the positions stay unwrapped; each
force call moves the ghosts with their owners (owner + shift @ box, for the current box, so this
also holds while a barostat changes the cell), re-formats the DeePMD-kit neighbour list for r <= rcut
from the candidates (cheap) and calls `model.compute`; ghost forces are then folded onto owners.

Rebuild test: with d the largest displacement since the rebuild not explained by the cell
deformation F = h_build⁻¹ h (rows convention) and s_min the smallest singular value of F, a pair
that was farther than rcut + skin can have come within rcut only if (rcut + 2 d) / s_min >= rcut + skin;
the list is rebuilt before that can happen (for a fixed cell: when an atom moved more than skin/2).
The same bound keeps the ghost set complete.  A rebuild can also be requested (e.g. after a
restart whose record does not fit).  The configuration of the last rebuild is kept in
state.neighbor, so a checkpoint carries it and a restarted run rebuilds exactly the same list and
repeats the uninterrupted run bit for bit.

The model must provide `rcut` (Å), `type_map`, per-type slots (`sel`, or `params.descriptor.sel`)
and `compute(ext_positions, nlist, types, atom_virial=False)` returning atom_energy (nloc,) eV,
force (nall, 3) eV/Å and virial (3, 3) eV.
"""
from __future__ import annotations

import math
import time

import numpy as np

from ..neighbor import extend, find_candidates, format_nlist, kernel_threads, report_overflow
from ..system import State
from .kernels import closest_pair, displacement_check, first_nonfinite_row, fold_forces, ghost_positions


def model_sel(model) -> list[int]:
    """Per-type neighbour slots of a model: `model.sel` or `model.params.descriptor.sel`."""
    sel = getattr(model, "sel", None)
    if sel is None:
        sel = model.params.descriptor.sel
    return [int(s) for s in sel]


class ForceProvider:
    """Evaluates the model for an MD state, rebuilding the neighbour list only when needed.

    Attributes after each call: `closest` = (distance Å, atom i, atom j) of the closest pair within
    rcut; `step_displacement` = (largest move since the previous call, Å, that atom).
    Counters: `rebuilds`, `overflow_calls` (calls in which a neighbour block overflowed), `calls`.
    Timers (s): `time_neigh` (rebuilds, ghost update, formatting), `time_force` (model, folding).
    """

    def __init__(self, model, skin: float):
        self.model = model
        self.skin = float(skin)
        self.rcut = float(model.rcut)
        self.sel = np.asarray(model_sel(model), dtype=np.int64)
        self.ntypes = len(self.sel)
        self.sec = np.zeros(self.ntypes + 1, dtype=np.int64)
        np.cumsum(self.sel, out=self.sec[1:])
        self.rebuilds = 0
        self.overflow_calls = 0
        self.calls = 0
        self.time_neigh = 0.0
        self.time_force = 0.0
        self.closest = (math.inf, -1, -1)
        self.step_displacement = (0.0, -1)
        self._force_rebuild = False
        self._ext = None
        self._cand = None
        self._ext_pos = None
        self._images = None
        self._shifts = None
        self._ref_positions = None
        self._ref_box_inv = None
        self._prev_positions = None
        self._overflow_warned = False

    @property
    def cutoff(self) -> float:
        """Cutoff of the candidate list, rcut + skin (Å)."""
        return self.rcut + self.skin

    def request_rebuild(self) -> None:
        """Rebuild the neighbour list at the next call."""
        self._force_rebuild = True

    # -- neighbour list ------------------------------------------------------------------------
    def _check_motion(self, state: State) -> bool:
        """Update `step_displacement`; True when the neighbour list must be rebuilt."""
        self.step_displacement = (0.0, -1)
        if self._ext is None:
            return True
        if state.box is None:
            strain = np.eye(3)
            smin = 1.0
        else:
            strain = self._ref_box_inv @ state.box
            smin = float(np.linalg.svd(strain, compute_uv=False)[-1])
        previous = self._prev_positions if self._prev_positions is not None else state.positions
        step2, arg, ref2 = displacement_check(state.positions, previous, self._ref_positions, strain)
        if self._prev_positions is not None:
            self.step_displacement = (math.sqrt(step2), int(arg))
        if self._force_rebuild:
            return True
        return (self.rcut + 2.0 * math.sqrt(ref2)) / smin >= self.rcut + self.skin

    def _build(self, state: State, positions: np.ndarray, box) -> None:
        """Ghosts and candidates for the configuration (positions, box) (the current one at a
        rebuild, or the one recorded in state.neighbor after a restart)."""
        with kernel_threads(state.natoms):
            ext = extend(positions, state.types, box, self.cutoff)
            cand = find_candidates(ext, self.cutoff)
        nloc = state.natoms
        if box is None:
            images = np.zeros((nloc, 3))
        else:
            images = np.rint((positions - ext.positions[:nloc]) @ np.linalg.inv(box))
        self._ext = ext
        self._cand = cand
        self._images = np.ascontiguousarray(images)
        self._shifts = np.ascontiguousarray(ext.shifts, dtype=np.float64)
        self._ext_pos = np.empty((ext.nall, 3))
        self._ref_positions = positions.copy()
        self._ref_box_inv = None if box is None else np.linalg.inv(box)

    def _rebuild(self, state: State) -> None:
        self._build(state, state.positions, state.box)
        self._force_rebuild = False
        self.rebuilds += 1
        state.neighbor = {"positions": self._ref_positions, "cutoff": np.array([self.cutoff])}
        if state.box is not None:
            state.neighbor["box"] = state.box.copy()

    def _restore(self, state: State) -> bool:
        """Rebuild exactly the list of the run that wrote the checkpoint (same reference
        configuration), so that a restart repeats its round-off bit for bit.  False when the
        state has no usable record (e.g. the skin changed)."""
        ref = state.neighbor
        if not ref or "positions" not in ref or ref["positions"].shape != state.positions.shape:
            return False
        if float(ref["cutoff"][0]) != self.cutoff or ("box" in ref) != (state.box is not None):
            return False
        self._build(state, ref["positions"], ref.get("box"))
        return True

    def _formatted(self, state: State):
        box = state.box if state.box is not None else np.zeros((3, 3))
        ghost_positions(state.positions, self._images, self._ext.mapping, self._shifts, box, self._ext_pos)
        with kernel_threads(state.natoms):
            nl = format_nlist(self._ext, self._cand, self.rcut, self.sel, self.ntypes, positions=self._ext_pos)
        if nl.overflowed:
            self.overflow_calls += 1
            if not self._overflow_warned:
                self._overflow_warned = True
                report_overflow(nl, self.sel, getattr(self.model, "type_map", None))
        return nl

    # -- one evaluation --------------------------------------------------------------------------
    def __call__(self, state: State) -> None:
        """Fill state.forces (N, 3) eV/Å, state.virial (3, 3) eV, state.potential_energy eV."""
        t0 = time.perf_counter()
        if self._ext is None:
            self._restore(state)
        if self._check_motion(state):
            self._rebuild(state)
        nl = self._formatted(state)
        self.closest = closest_pair(self._ext_pos, nl.nlist, self.sec)
        t1 = time.perf_counter()
        out = self.model.compute(self._ext_pos, nl.nlist, state.types)
        nloc = state.natoms
        if state.forces is None or state.forces.shape != (nloc, 3):
            state.forces = np.empty((nloc, 3))
        fold_forces(out.force, self._ext.mapping, nloc, state.forces)
        state.virial = np.array(out.virial, dtype=np.float64).reshape(3, 3)
        state.potential_energy = float(np.sum(out.atom_energy))
        self._prev_positions = state.positions.copy()
        self.calls += 1
        t2 = time.perf_counter()
        self.time_neigh += t1 - t0
        self.time_force += t2 - t1

    def nonfinite_force_atom(self, state: State) -> int:
        """Index of the first atom with a non-finite force, or -1."""
        return int(first_nonfinite_row(state.forces))

    def owner(self, ext_index: int) -> int:
        """Local atom that owns extended atom `ext_index`."""
        return int(self._ext.mapping[ext_index])

