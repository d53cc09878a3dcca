"""Forces for MD on this rank's subdomain: neighbour list with a skin, ghost exchange, model call.

The serial run is the parallel run with one rank (numdp.parallel): at a rebuild the atoms migrate
to the rank owning their wrapped position (`migrate`), the ghost shell of width rcut + skin is
built by staged exchange (`GhostComm.borders`, periodic self-images included).  Between
rebuilds the positions stay unwrapped; each force call moves the owned atoms' wrapped copies
along (owner - image @ box, with the current box, so this also holds while a barostat changes
the cell), refreshes the ghosts from their owners (`forward`), formats the DeePMD-kit neighbour
list for r <= rcut from a cell list of the current extended positions (`build_nlist`), calls
`model.compute` for the owned centre atoms, and sends the forces on ghosts back to their owners
(`reverse`).  Energies and virials are summed over ranks.

No candidate list within rcut + skin is stored: it would cost 4 bytes per candidate, 860 bytes
per water atom (8 Å), more than everything else a step holds (docs/performance.md#memory).  The
list formatted from the cell list is the one the candidates would give, bit for bit: the same
pairs r <= rcut (every pair within rcut now was within rcut + skin at the rebuild, by the rebuild
test below), the same squared distances from the same coordinates, and the same packed-key order.
A model that accepts `NeighborRows` (numdp's CPU models: `accepts_neighbor_rows`) does not get a
stored list either: it formats the rows chunk by chunk from the cell list while it evaluates
(552 bytes per water atom saved), with the same rows, so the same forces bit for bit.

Rebuild test: with d the largest displacement since the rebuild (over all ranks) not explained by
the cell deformation F = h_build⁻¹ h (rows convention) and s_min the smallest singular value of F,
a pair that was farther than rcut + skin can have come within rcut only if
(rcut + 2 d) / s_min >= rcut + skin; the list is rebuilt before that can happen (for a fixed cell:
when an atom moved more than skin/2).  The same bound keeps the ghost shell complete, since an
image left out at the rebuild was farther than rcut + skin from every point of the subdomain.  A
rebuild can also be requested.  The configuration of the last rebuild is kept in state.neighbor,
so a checkpoint carries it and a restarted run rebuilds exactly the same subdomains and lists and
repeats the uninterrupted run bit for bit (same rank count and threads).

The model must provide `rcut` (Å), `type_map`, per-type slots (`sel`, or `params.descriptor.sel`)
and `compute(ext_positions, nlist, types, atom_virial=False)` returning atom_energy (nloc,) eV,
force (nall, 3) eV/Å and virial (3, 3) eV of the nloc centre atoms given.
"""
from __future__ import annotations

import math
import time

import numpy as np

from ..neighbor import Extended, NeighborRows, OverflowWarnings, build_nlist, kernel_threads, slot_offsets
from ..parallel.comm import GhostComm
from ..parallel.domain import Domain, wrap_images
from ..parallel.exchange import migrate
from ..kernels.cpu.comm import owned_positions
from ..parallel.world import World
from ..system import State, atom_arrays, set_atom_arrays
from ..kernels.cpu.md import closest_pair, displacement_check, first_nonfinite_row


def cell_strain(box, ref_box_inv) -> tuple[np.ndarray, float]:
    """(F = h_build⁻¹ h (3, 3), its smallest singular value) of the cell deformation since the
    rebuild (rows convention); the identity and 1 without a cell."""
    if box is None:
        return np.eye(3), 1.0
    strain = ref_box_inv @ box
    return strain, float(np.linalg.svd(strain, compute_uv=False)[-1])


def needs_rebuild(rcut: float, skin: float, max_ref_disp2: float, smin: float) -> bool:
    """The rebuild test of the module docstring: a pair farther than rcut + skin at the rebuild can
    have come within rcut once (rcut + 2 d) / s_min >= rcut + skin, with d² = max_ref_disp2 (Å²)
    the largest displacement since the rebuild not explained by the cell deformation."""
    return (rcut + 2.0 * math.sqrt(max_ref_disp2)) / smin >= rcut + skin


def model_sel(model) -> list[int]:
    """Per-type neighbour slots of a model: `model.sel` or `model.params.descriptor.sel`."""
    sel = getattr(model, "sel", None)
    if sel is None:
        sel = model.params.descriptor.sel
    return [int(s) for s in sel]


def environment_groups(models) -> list[tuple[tuple[int, ...], list[int]]]:
    """[(sel, indices into `models`)]: the models grouped by neighbour list (sel), and within one
    sel by environment matrix, each group's members sharing it with its first
    (`shares_environment`: equal rcut, rcut_smth, sel, davg and dstd); groups in order of their
    first model, members in model order."""
    groups: list[tuple[tuple[int, ...], list[int]]] = []
    for k, model in enumerate(models):
        sel = tuple(model_sel(model))
        for g_sel, members in groups:
            first = models[members[0]]
            if g_sel == sel and hasattr(first, "shares_environment") and first.shares_environment(model):
                members.append(k)
                break
        else:
            groups.append((sel, [k]))
    return groups


class ForceProviderBase:
    """What the host and device force providers share (ForceProvider here,
    numdp.md.device_forces.DeviceForceProvider): the counters and timers they report, the
    rebuild request and test, the check of a checkpoint's list record, and the hand-over of a
    deviation step's models (`evaluate_next_with`, then `evaluate_others`)."""

    def __init__(self, model, skin: float, world: World | None):
        self.model = model
        self.skin = float(skin)
        self.rcut = float(model.rcut)
        self.world = world if world is not None else World(None)
        self.sel = np.asarray(model_sel(model), dtype=np.int64)
        self.sec = slot_offsets(self.sel)
        self.rebuilds = 0
        self.overflow_calls = 0
        self.calls = 0
        self.shared_env = 0   # model evaluations that reused another model's environment matrix
        self.time_neigh = 0.0
        self.time_force = 0.0
        self.closest = (math.inf, -1, -1)
        self.step_displacement = (0.0, -1)
        self._force_rebuild = False
        self._overflows = OverflowWarnings()   # model 0's lists and the deviation models', per sel
        self._ensemble_next = None   # models to evaluate with model 0 at the next call
        self._ensemble_done = None   # (calls, models, results) of the last such call
        self.domain: Domain | None = None   # this rank's subdomain (None: one rank owning everything)

    def _record_grid(self, state: State) -> None:
        """Put the MPI grid this run's lists are built on into state.neighbor["grid"] ((3,) float64,
        as HDF5 groups read back; (1, 1, 1) on one rank), at a rebuild and at a restart's restore
        (the record read from a checkpoint names the grid of the run that wrote it, maybe on other
        ranks): a restart on as many ranks takes it again (numdp.md.setup)."""
        grid = (1, 1, 1) if self.domain is None else self.domain.grid
        state.neighbor["grid"] = np.asarray(grid, dtype=np.float64)

    @property
    def cutoff(self) -> float:
        """Width of the ghost shell, rcut + skin (Å)."""
        return self.rcut + self.skin

    def request_rebuild(self) -> None:
        """Rebuild at the next call (with several ranks, all must request it)."""
        self._force_rebuild = True

    def _rebuild_due(self, max_ref_disp2: float, smin: float) -> bool:
        """The rebuild test over all ranks (`needs_rebuild`) for this rank's largest squared
        displacement since the rebuild (Å²), infinite when a rebuild was requested.  Collective."""
        ref2 = self.world.max_global(math.inf if self._force_rebuild else max_ref_disp2)
        return needs_rebuild(self.rcut, self.skin, ref2, smin)

    def _record_usable(self, state: State) -> bool:
        """True when state.neighbor records the reference configuration of a list this provider
        can rebuild exactly (same atoms, same cutoff, a cell when the state has one)."""
        ref = state.neighbor
        usable = bool(ref) and "positions" in ref and ref["positions"].shape == state.positions.shape
        return usable and float(ref["cutoff"][0]) == self.cutoff and ("box" in ref) == (state.box is not None)

    def evaluate_next_with(self, models) -> None:
        """Evaluate `models` (same rcut and type_map) together with model 0 at the next call,
        sharing the environment matrix where they can; `evaluate_others` then returns those
        results without evaluating again (None: the next call evaluates model 0 only).  Every
        rank must ask alike (the call is collective).  numdp.md.deviation.DeviationReporter asks
        this the step before a deviation step."""
        self._ensemble_next = None if models is None else list(models)

    def _ensemble_result(self, models):
        """The results of `models` from the last call when it was asked for exactly these
        (`evaluate_next_with`), else None."""
        done = self._ensemble_done
        if done is not None and done[0] == self.calls and len(done[1]) == len(models) \
                and all(a is b for a, b in zip(done[1], models)):
            return done[2]
        return None


class ForceProvider(ForceProviderBase):
    """Evaluates the model for this rank's atoms of an MD state, rebuilding only when needed.

    world / domain: the ranks and this rank's subdomain (default: one rank owning everything).
    Attributes after each call: `closest` = (distance Å, owned atom i, extended atom j) of the
    closest pair within rcut on this rank; `step_displacement` = (largest move of an owned atom
    since the previous call, Å, that atom's local index).  Counters: `rebuilds`, `overflow_calls`
    (calls in which a neighbour block overflowed on this rank), `calls`.  Timers (s), without
    communication: `time_neigh` (rebuilds, ghost positions, cell list, formatting), `time_force`
    (model; with `streams`, the rows formatted chunk by chunk inside it too).  Communication (migration, ghosts, reductions) is counted in world.comm_time.
    """

    def __init__(self, model, skin: float, world: World | None = None, domain: Domain | None = None):
        super().__init__(model, skin, world)
        self.domain = domain if domain is not None else Domain((1, 1, 1), 0)
        self.comm = GhostComm(self.world, self.domain)
        # the model formats neighbour rows chunk by chunk (numdp.neighbor.NeighborRows)
        self.streams = bool(getattr(model, "accepts_neighbor_rows", False))
        self.ntypes = len(self.sel)
        self._ext = None
        self._ghosts = None
        self._ext_pos = None
        self._images = None
        self._ref_positions = None
        self._ref_box_inv = None
        self._prev_positions = None
        self._nl = None

    # -- neighbour list ------------------------------------------------------------------------
    def _check_motion(self, state: State) -> bool:
        """Update `step_displacement`; True when the neighbour list must be rebuilt.  Collective."""
        self.step_displacement = (0.0, -1)
        if self._ext is None:
            return True
        strain, smin = cell_strain(state.box, self._ref_box_inv)
        previous = self._prev_positions if self._prev_positions is not None else state.positions
        step2, arg, ref2 = displacement_check(state.positions, previous, self._ref_positions, strain)
        if self._prev_positions is not None:
            self.step_displacement = (math.sqrt(step2), int(arg))
        return self._rebuild_due(ref2, smin)

    def _release(self) -> None:
        """Drop the arrays of the previous build, so that a rebuild's transients do not add to them."""
        self._ext = self._ghosts = self._ext_pos = self._images = self._nl = None

    def _build(self, state: State, positions: np.ndarray, box) -> None:
        """Ghosts for the configuration (positions, box) of this rank's atoms (the current one at
        a rebuild, or the one recorded in state.neighbor after a restart)."""
        self._release()
        nloc = state.natoms
        if box is None:
            images = np.zeros((nloc, 3))
            owned = np.ascontiguousarray(positions, dtype=np.float64)
        else:
            images = wrap_images(positions, box, state.pbc_flags)[1]
            owned = np.empty((nloc, 3))
            owned_positions(positions, images, np.asarray(box, dtype=np.float64), owned)
        ghosts = self.comm.borders(owned, state.types, state.ids, box, self.cutoff, state.pbc_flags)
        mapping = np.full(ghosts.nall, -1, dtype=np.int32)  # ghosts may be owned by other ranks
        mapping[:nloc] = np.arange(nloc, dtype=np.int32)
        # the ghost positions of the build become the buffer of the current extended positions
        # (overwritten at each call): no second (nall, 3) copy
        ext = Extended(positions=ghosts.positions, types=ghosts.types, mapping=mapping, shifts=ghosts.shifts,
                       nloc=nloc, cutoff=self.cutoff)
        self._ext = ext
        self._ghosts = ghosts
        self._images = np.ascontiguousarray(images)
        self._ext_pos = ghosts.positions
        self._ref_positions = positions.copy()
        self._ref_box_inv = None if box is None else np.linalg.inv(box)

    def _rebuild(self, state: State) -> None:
        self._release()
        arrays = atom_arrays(state)
        if self._prev_positions is not None:
            arrays["previous"] = self._prev_positions
        arrays = migrate(self.world, self.domain, arrays, state.box)
        self._prev_positions = arrays.pop("previous", None)
        set_atom_arrays(state, arrays)
        self._build(state, state.positions, state.box)
        self._force_rebuild = False
        self.rebuilds += 1
        state.neighbor = {"positions": self._ref_positions, "cutoff": np.array([self.cutoff])}
        # the decomposition the list was built on: a restart on as many ranks takes it again,
        # whatever a barostat did to the cell (numdp.md.setup)
        self._record_grid(state)
        if state.box is not None:
            state.neighbor["box"] = state.box.copy()

    def _restore(self, state: State) -> bool:
        """Rebuild exactly the list of the run that wrote the checkpoint (same reference
        configuration, owned atoms distributed by it), so that a restart repeats its round-off
        bit for bit.  False when the state has no usable record (e.g. the skin changed): then
        the first call rebuilds.  Collective: the record is the same on every rank."""
        if not self._record_usable(state):
            return False
        ref = state.neighbor
        self._build(state, ref["positions"], ref.get("box"))
        self._record_grid(state)   # this run's grid from now on, not the checkpoint's
        return True

    def _formatted(self, state: State):
        box = state.box if state.box is not None else np.zeros((3, 3))
        nloc = state.natoms
        owned_positions(state.positions, self._images, box, self._ext_pos[:nloc])
        self.comm.forward(self._ext_pos, box)
        self._nl = None  # the previous list goes before the new one is made
        with kernel_threads(self._ext.nall):
            if self.streams:   # rows formatted by the model, chunk by chunk (overflow known after it)
                return NeighborRows(self._ext, self.rcut, self.sel, self.ntypes, positions=self._ext_pos)
            nl = build_nlist(self._ext, self.rcut, self.sel, self.ntypes, positions=self._ext_pos)
        self._count_overflow(nl)
        return nl

    def _count_overflow(self, nl) -> None:
        """Count a call whose list dropped neighbours (not a sel-0 type's, left out by design) and
        warn about each overflowing type once (numdp.neighbor.OverflowWarnings)."""
        if nl.overflowed and self._overflows.seen(nl, self.sel, getattr(self.model, "type_map", None)):
            self.overflow_calls += 1

    # -- one evaluation --------------------------------------------------------------------------
    def __call__(self, state: State) -> None:
        """Fill state.forces (N, 3) eV/Å of the owned atoms, state.virial (3, 3) eV and
        state.potential_energy eV of the whole system.  Collective."""
        c0 = self.world.comm_time
        t0 = time.perf_counter()
        if self._ext is None:
            self._restore(state)
        if self._check_motion(state):
            self._rebuild(state)
        nl = self._nl = self._formatted(state)
        if not self.streams:
            self.closest = closest_pair(self._ext_pos, nl.nlist, self.sec)
        c1 = self.world.comm_time
        t1 = time.perf_counter()
        others, self._ensemble_next = self._ensemble_next, None
        if others is None:
            out = self.model.compute(self._ext_pos, nl if self.streams else nl.nlist, state.types)
        else:
            raws = self._compute_models([self.model] + others, state, nl)
            out = raws[0]
        t2 = time.perf_counter()
        if self.streams:
            nl.release()
            self.closest = nl.closest
            self._count_overflow(nl)
        state.forces, state.potential_energy, state.virial = self._reduce(out, state)
        if others is not None:
            self._ensemble_done = (self.calls + 1, others, [self._reduce(r, state) for r in raws[1:]])
        if self._prev_positions is None or self._prev_positions.shape != state.positions.shape:
            self._prev_positions = np.empty_like(state.positions)
        np.copyto(self._prev_positions, state.positions)  # in place: no second (N, 3) array per step
        self.calls += 1
        t3 = time.perf_counter()
        self.time_neigh += (t1 - t0) - (c1 - c0)
        self.time_force += (t2 - t1) + (t3 - t2) - (self.world.comm_time - c1)

    def _reduce(self, out, state: State) -> tuple[np.ndarray, float, np.ndarray]:
        """(forces (nloc, 3) eV/Å on the owned atoms with the ghost forces returned to their
        owners, potential energy eV and virial (3, 3) eV of the whole system) of one model's
        RawOutput.  Collective."""
        force = np.ascontiguousarray(out.force, dtype=np.float64)
        self.comm.reverse(force)
        totals = self.world.sum_global(np.concatenate(([np.sum(out.atom_energy)],
                                                       np.asarray(out.virial, dtype=np.float64).reshape(9))))
        return force[:state.natoms].copy(), float(totals[0]), np.array(totals[1:], dtype=np.float64).reshape(3, 3)

    def _neighbors_for(self, models, sel) -> tuple[object, object]:
        """(the neighbour argument of `models`' compute for `sel`, the NeighborRows to release
        after it or None): rows formatted chunk by chunk inside the call when every model takes
        them (numdp's CPU models), else a whole list built from a cell list of the ghosts."""
        sel_a = np.asarray(sel, dtype=np.int64)
        if self.streams and all(getattr(m, "accepts_neighbor_rows", False) for m in models):
            rows = NeighborRows(self._ext, self.rcut, sel_a, self.ntypes, positions=self._ext_pos)
            return rows, rows
        with kernel_threads(self._ext.nall):
            nl = build_nlist(self._ext, self.rcut, sel_a, self.ntypes, positions=self._ext_pos)
        if nl.overflowed:
            self._other_overflow(nl, sel_a, models[0])
        return nl.nlist, None

    def _other_overflow(self, nl, sel, model) -> None:
        """Warn about an overflow of a deviation model's list `nl` for `sel`, each type once per
        sel as model 0's (model 0's sel: model 0's warnings)."""
        self._overflows.seen(nl, sel, getattr(model, "type_map", None))

    def _compute_models(self, models, state: State, current=None) -> list:
        """RawOutputs of `models` (same rcut and type_map as model 0) on the last configuration.
        `current`: the neighbour argument of this call for model 0's sel (the formatted list or
        the NeighborRows of __call__), or None (evaluate_others: formatted again).  The models of
        one sel that share the environment matrix (equal rcut_smth, davg, dstd:
        `shares_environment`) are evaluated together by
        numdp.model.dp_model.compute_ensemble, computing it once."""
        from ..model.dp_model import compute_ensemble

        sel0 = tuple(self.sel.tolist())
        groups = environment_groups(models)   # each group shares one environment matrix
        raws = [None] * len(models)
        lists = {}
        if current is not None:
            lists[sel0] = current if self.streams else current.nlist
        for sel, members in groups:
            group = [models[k] for k in members]
            rows = None
            if sel in lists and not (sel == sel0 and self.streams and current is not None and members[0] != 0):
                arg = lists[sel]
            else:   # NeighborRows are consumed by one call: the other groups of sel0 format theirs
                arg, rows = self._neighbors_for(group, sel)
                if rows is None:
                    lists[sel] = arg
            if len(members) == 1:
                raws[members[0]] = group[0].compute(self._ext_pos, arg, state.types)
            else:
                self.shared_env += len(members) - 1
                for k, r in zip(members, compute_ensemble(group, self._ext_pos, arg, state.types)):
                    raws[k] = r
            if rows is not None:
                rows.release()
                if rows.overflowed:
                    self._other_overflow(rows, sel, group[0])
        return raws

    device_backend = None   # forces on the host (numdp.md.device_forces: on the GPU)

    def evaluate_others(self, state: State, models) -> list[tuple[np.ndarray, float, np.ndarray]]:
        """Evaluate more `models` (same rcut and type_map as this provider's) on the configuration
        of the last call, sharing its ghosts (see `_compute_models`).  When the last call was asked
        for these models (`evaluate_next_with`) its results are returned.
        Per model: (forces (nloc, 3) eV/Å on the owned atoms, ghost forces returned to their
        owners; potential energy eV and virial (3, 3) eV of the whole system).  Collective."""
        done = self._ensemble_result(models)
        if done is not None:
            return done
        c0 = self.world.comm_time
        t0 = time.perf_counter()
        current = None if self.streams else self._nl
        out = [self._reduce(r, state) for r in self._compute_models(list(models), state, current)]
        self.time_force += (time.perf_counter() - t0) - (self.world.comm_time - c0)
        return out

    def nonfinite_force_atom(self, state: State) -> int:
        """Local index of the first owned atom with a non-finite force, or -1."""
        return int(first_nonfinite_row(state.forces))

    def atom_label(self, ext_index: int) -> tuple[int, int]:
        """(global id, type) of extended atom `ext_index` (owned or ghost) of the current list."""
        return int(self._ghosts.ids[ext_index]), int(self._ghosts.types[ext_index])
