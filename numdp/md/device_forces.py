"""Forces for MD on the GPU (one rank): the device twin of numdp.md.forces.ForceProvider.

Same interface (`__call__(state)`, `closest`, `step_displacement`, `rebuilds`, `overflow_calls`,
`calls`, `time_neigh`, `time_force`, `cutoff`, `request_rebuild`, `nonfinite_force_atom`,
`atom_label`; `__call__` is `launch` then `complete`, which an MD step on the device calls apart)
and the same rebuild policy, on the arrays of a `DeviceState`:

- Rebuild test (every call, on the device): with d the largest displacement since the rebuild
  and s_min the smallest singular value of the cell deformation, rebuild when
  (rcut + 2 d) / s_min >= rcut + skin (numdp.md.forces explains the bound).  The per-atom
  squared displacements come from `displacement_rows`; their max and argmax are one tree of
  `extreme_rows` on the device (max is exact in any order; up to ONE_BLOCK_ROWS atoms records and
  tree are one launch, `displacement_extreme`); the host receives the two numbers and an index.
- At a rebuild: the ghost shell of width rcut + skin is built on the device
  (numdp.neighbor.device.extend_cuda, the images of `build_nlist_cuda`), the neighbour search of
  the steps until the next rebuild is planned (numdp.neighbor.device.plan_search: the cell grid
  over the shell's bounding box widened by skin / 2, and the key capacity per centre from the
  neighbours within rcut + skin, the bound the rebuild test guarantees), with the whole lattice
  vector that takes each owner to each of its extended atoms (`lattice_shifts`), and the fixed
  order in which ghost forces are folded onto their owners (extended atoms sorted by (owner,
  index): numdp.model.cuda_evaluator.fold_order).  The reference configuration is kept in the
  DeviceState (State.neighbor["positions"] at downloads), so a checkpoint written from the GPU
  restarts on either device with the same list.
- Every call: the extended atoms move with their owners (`extended_positions`: owner + shift @
  box, with the current box: a barostat's cell move uploads its 9 numbers), the DeePMD-kit list
  within rcut is formed from them on the device
  (numdp.neighbor.device.nlist_of_extended: a cell-list pass over the extended atoms on the
  planned grid, no stored candidate list and no host read: its statistics and key-overflow flag
  come with the totals), the model runs on the device (DPModel.compute_device), forces are folded onto
  the owned atoms (numdp.kernels.cuda.forces.fold_rows, as CUDAEvaluator.compute_owned does), the
  closest pair is found (numdp.model.cuda_evaluator.closest_pair), and the potential energy (a
  fixed-order tree sum) and the virial (9 numbers) come to the host.
- One host read per call besides the rebuild test's: `launch` runs the call on the device and
  `complete` brings the energy, virial, closest pair, list statistics and the safety check's
  non-finite records (the first atom with a non-finite force, and with a non-finite velocity) in
  one copy.  `__call__` does both; an MD step on the device (numdp.md.device.DeviceVelocityVerlet)
  completes after its second half-kick and thermostat half-step, so that the velocities checked
  are the step's final ones, as on the CPU.
- At a deviation step ([model_devi], `evaluate_next_with` the step before) the other models are
  evaluated in the same call on the same extended atoms; those that share the environment matrix
  with another (numdp.md.forces.environment_groups) get it computed once per chunk
  (numdp.model.dp_model.compute_device_ensemble), every model keeping the bits of its own
  evaluation.

Deterministic: no floating-point atomics; the same input gives the same bits on every call.
"""
from __future__ import annotations

import math
import time

import numpy as np

from ..neighbor import OverflowCounts
from ..parallel.world import World
from ..system import State
from .device_graph import address
from .device_state import DeviceState, tree_extreme_device, tree_sum_device
from .forces import ForceProviderBase, cell_strain

# Largest neighbour list (bytes) a force call forms whole; beyond, the list's rows are formed chunk
# by chunk as the model asks for them (`DeviceForceProvider._list`): 1 GiB is ~1.9 M water atoms.
WHOLE_LIST_BYTES = 2**30


class DeviceForceProvider(ForceProviderBase):
    """Evaluates a device="cuda" model (numdp.model.dp_model.DPModel) on the atoms of `dev`,
    rebuilding the ghost shell only when needed.  One rank; numdp.md.device_parallel extends it to
    several (the ghost shell then comes from the ranks, `_build`, `_extended_positions`,
    `_owned_forces`).  The counters, the rebuild request and test, the checkpoint record's check
    and the deviation hand-over are numdp.md.forces.ForceProviderBase's, as on the host."""

    def __init__(self, model, skin: float, dev: DeviceState, world: World | None = None, pbc=None):
        from ..kernels.cuda import forces, launch, md

        super().__init__(model, skin, world)
        self.pbc = None if pbc is None else tuple(bool(p) for p in pbc)  # None: periodic with a cell
        self.dev = dev
        self.be = dev.be
        self._K = md
        self._grid = launch.grid
        self._strided2 = launch.strided2
        self._one_block = launch.one_block
        self._fold_rows = forces.fold_rows
        self._sec_d = self.be.to_device(np.asarray(self.sec, dtype=np.int64))
        self._ext_pos = None
        self._ext_types = None
        self._plan = None    # the neighbour search's grid and key capacity of the last rebuild
        self._nlist = None   # the list of the last call (model 0's sel), for evaluate_others
        # the list formed whole (True), chunk by chunk as the model asks for its rows (False: see
        # `_list`), or by its size (None: whole up to WHOLE_LIST_BYTES)
        self.whole_list: bool | None = None
        self._mapping = None
        self._shift = None
        self._order = None
        self._start = None
        self._box_d = None
        self._box_h = None
        self._ref_box_inv = None
        self._prev = None
        self._strain = (None, None)   # (host, device) cell strain of the last rebuild test
        self._pending = None   # a launched call's device results (energy, virial, closest, stats, err)
        self.graph = None      # ForceCallGraph when the force calls replay a CUDA graph (`use_graphs`)

    def use_graphs(self, engine=None) -> None:
        """Replay the device work of the force calls from CUDA graphs (numdp.md.device_graph;
        one rank only).  engine: a device_graph.GraphEngine (default: CuPy's, on a GPU)."""
        from .device_graph import CuPyGraphs, ForceCallGraph

        if self.world.size != 1:
            raise RuntimeError("CUDA graphs of the force call run on one rank only")
        if not getattr(self.model, "compressed", False):
            # the uncompressed embedding reads its nets' occupied-slot counts to the host per chunk
            raise RuntimeError("CUDA graphs of the force call need a compressed model")
        # CuPy refuses cuBLAS calls on a capturing stream: model 0's products become kernels,
        # in every call of the run (fresh, warm, captured), so that all its steps take one arithmetic
        self.model.use_kernel_products()
        self.graph = ForceCallGraph(engine if engine is not None else CuPyGraphs())

    # -- ghost shell -----------------------------------------------------------------------------
    def _check_motion(self, state: State) -> bool:
        """Update `step_displacement`; True when the ghost shell must be rebuilt."""
        self.step_displacement = (0.0, -1)
        if self._ext_pos is None:
            return True
        be, xp, dev = self.be, self.be.xp, self.dev
        strain, smin = cell_strain(state.box, self._ref_box_inv)
        n = dev.natoms
        ref_max = 0.0
        if n:   # one tree of records (step², atom, ref²), one copy: (max step², argmax, max ref²)
            rows = xp.empty((n, 3))
            previous = self._prev if self._prev is not None else dev.positions
            if n <= self._K.ONE_BLOCK_ROWS:   # records and tree in one launch, the same bits
                record = xp.empty(3)
                self._K.displacement_extreme[self._one_block(n)](dev.positions, previous, dev.reference,
                                                                 self._strain_device(strain), rows, record)
            else:
                self._K.displacement_rows[self._grid(n)](dev.positions, previous, dev.reference,
                                                         self._strain_device(strain), rows)
                record = tree_extreme_device(be, rows, 2)
            step_max, kf, ref_max = (float(v) for v in be.to_host(record))
            if self._prev is not None:
                self.step_displacement = (math.sqrt(step_max), int(kf))
        return self._rebuild_due(ref_max, smin)

    def _strain_device(self, strain: np.ndarray):
        """The cell strain (3, 3) on the device, uploaded only when it changed (a barostat)."""
        host, device = self._strain
        if host is None or not np.array_equal(host, strain):
            self._strain = (np.array(strain, dtype=np.float64), self.be.to_device(np.ascontiguousarray(strain)))
        return self._strain[1]

    def _build(self, reference, box) -> None:
        """Ghost shell, lattice shifts and fold order for the configuration `reference` (device
        (N, 3) Å: the current positions at a rebuild, the checkpoint's record after a restart)."""
        from ..model.cuda_evaluator import fold_order
        from ..neighbor.device import extend_cuda

        be, xp, dev = self.be, self.be.xp, self.dev
        box_h = None if box is None else np.ascontiguousarray(box, dtype=np.float64)
        pos, typ, mp = extend_cuda(reference, dev.types, box_h, self.cutoff, self.pbc)
        pos, typ, mp = xp.asarray(pos), xp.asarray(typ), xp.asarray(mp)
        nall = int(pos.shape[0])
        nloc = dev.natoms
        if box_h is None:
            shift = xp.zeros((nall, 3))
            self._set_box(np.zeros((3, 3)))
            self._ref_box_inv = None
        else:
            shift = xp.empty((nall, 3))
            inv = np.linalg.inv(box_h)
            self._K.lattice_shifts[self._grid(nall)](pos, reference, mp, be.to_device(inv), shift)
            self._set_box(box_h)
            self._ref_box_inv = inv
        self._order, self._start = fold_order(xp, mp, nloc)
        self._mapping = mp
        self._ext_types = typ
        self._shift = shift
        self._ext_pos = xp.empty((nall, 3))
        self._plan_search(pos, typ)
        dev.reference = xp.array(reference, dtype=np.float64)

    def _plan_search(self, pos, typ) -> None:
        """Fix the per-step neighbour search until the next rebuild from the extended atoms of
        this one (`pos` (nall, 3), `typ` (nall,) device arrays): its cell grid and key capacity
        (numdp.neighbor.device.plan_search; two host reads here, none in the steps)."""
        from ..neighbor.device import plan_search

        self._plan = plan_search(pos, typ, self.dev.natoms, self.rcut, self.skin)

    def _set_box(self, box: np.ndarray) -> None:
        """The cell that moves the extended atoms with their owners (host copy kept to compare)."""
        self._box_h = np.array(box, dtype=np.float64)
        self._box_d = self.be.to_device(self._box_h)

    def _rebuild(self, state: State) -> None:
        self._build(self.dev.positions, state.box)
        self._force_rebuild = False
        self.rebuilds += 1
        state.neighbor = {"cutoff": np.array([self.cutoff])}   # "positions": DeviceState.download
        self._record_grid(state)   # the MPI grid, as on the host (numdp.md.forces)
        if state.box is not None:
            state.neighbor["box"] = state.box.copy()

    def _restore(self, state: State) -> bool:
        """The ghost shell of the run that wrote the checkpoint (numdp.md.forces, `_restore`)."""
        if not self._record_usable(state):
            return False
        ref = state.neighbor
        self._build(self.be.xp.array(ref["positions"], dtype=np.float64), ref.get("box"))
        self._record_grid(state)
        return True

    # -- one evaluation --------------------------------------------------------------------------
    def __call__(self, state: State) -> None:
        """Fill dev.forces (N, 3) eV/Å (device), state.virial (3, 3) eV and
        state.potential_energy eV (host): `launch` then `complete` (one host read)."""
        self.launch(state)
        self.complete(state)

    def launch(self, state: State) -> None:
        """The force call up to its host read: the rebuild test (its own read), the list, the
        model and the fold; dev.forces (N, 3) eV/Å is filled on the device, and the energy,
        virial, closest pair and list statistics wait on the device for `complete`, which must
        follow before the next launch.  numdp.md.device.DeviceVelocityVerlet.step launches at the
        force call and completes at the end of the step, so that the non-finite records of the
        step's final velocities come in the same copy."""
        if self._pending is not None:
            raise RuntimeError("DeviceForceProvider.launch: the previous force call was not completed")
        xp, dev = self.be.xp, self.dev
        c0 = self.world.comm_time
        t0 = time.perf_counter()
        if self._ext_pos is None:
            self._restore(state)
        if self._check_motion(state):
            self._rebuild(state)
        if state.box is not None and not np.array_equal(state.box, self._box_h):
            self._set_box(state.box)   # a barostat moved the cell: 9 numbers to the device
        nloc = dev.natoms
        others, self._ensemble_next = self._ensemble_next, None
        if others is None and self.graph is not None:   # the device work from a graph
            key = (self.rebuilds, address(dev.positions), address(dev.forces), address(self._box_d),
                   address(self._ext_pos))
            t1 = time.perf_counter()
            c1 = self.world.comm_time
            # the last call's list released first: a capture then finds its block free in the
            # graph's pool (the warm-up's), instead of taking new device memory while capturing
            self._nlist = None
            self._nlist, *pending = self.graph.run(lambda: self._device_call(state), key)
            self._pending = tuple(pending)
        else:
            nlist, stats, err = self._search(state)   # stats, err, closest: read with the totals
            self._nlist = nlist
            c1 = self.world.comm_time
            t1 = time.perf_counter()
            energy, virial = self._evaluate(nlist, others)
            self._pending = (energy, virial, self._closest(nlist), stats, err)
        if self._prev is None:
            self._prev = xp.empty((nloc, 3))
        self._prev[...] = dev.positions
        self.calls += 1
        t2 = time.perf_counter()
        self.time_neigh += (t1 - t0) - (c1 - c0)
        self.time_force += (t2 - t1) - (self.world.comm_time - c1)

    def _search(self, state: State) -> tuple:
        """This call's extended positions and their list for model 0's sel: (nlist or DeviceRows,
        stats, err), device arrays (`_list`)."""
        self._extended_positions(state)
        return self._list(self.sel)

    def _closest(self, nlist):
        """The device record of this call's closest pair, after the model ran: a DeviceRows wrote
        its centres' records, and gets its statistics launched, as the model formed its rows."""
        from ..model.cuda_evaluator import closest_pair_device
        from ..neighbor.device import DeviceRows

        if isinstance(nlist, DeviceRows):
            nlist.finish()
        return closest_pair_device(self.be, self._ext_pos, nlist, self._sec_d)

    def _evaluate(self, nlist, others) -> tuple:
        """Model 0 on this call's list, and with `others` (a deviation step) the other models too,
        sharing what they can; model 0's forces folded onto dev.forces.  Returns model 0's device
        (atom energies, virial)."""
        if others is None:
            energy, ext_force, virial = self.model.compute_device(self._ext_pos, nlist, self.dev.types_host)
        else:
            outs = self._compute_models([self.model] + others)
            energy, ext_force, virial = outs[0]
        self._owned_forces(ext_force)
        if others is not None:
            self._ensemble_done = (self.calls + 1, others, [self._reduce(out) for out in outs[1:]])
        return energy, virial

    def _device_call(self, state: State) -> tuple:
        """The device work of a force call without deviation models, what a CUDA graph captures
        (numdp.md.device_graph): `_search` and `_evaluate`.  Returns device arrays (nlist,
        energy, virial, closest, stats, err)."""
        nlist, stats, err = self._search(state)
        energy, virial = self._evaluate(nlist, None)
        return nlist, energy, virial, self._closest(nlist), stats, err

    def complete(self, state: State) -> None:
        """The host read of the launched force call, with the safety records of the arrays as
        they are now: one copy brings the potential energy and the virial (summed over ranks:
        state.potential_energy eV, state.virial (3, 3) eV), the closest pair (`closest`), the
        first atoms with a non-finite force and velocity (dev.nonfinite, for this state.step: what
        `nonfinite_force_atom` and numdp.md.device.DeviceSafetyMonitor read), and the list's
        statistics and key-overflow flag (`_check_list`)."""
        from ..model.cuda_evaluator import closest_pair_of

        if self._pending is None:
            raise RuntimeError("DeviceForceProvider.complete: no force call was launched")
        energy, virial, closest, stats, err = self._pending
        self._pending = None
        c0 = self.world.comm_time
        t0 = time.perf_counter()
        totals = self._totals(energy, virial, closest, (self._nonfinite_records(), stats, err))
        self.closest = closest_pair_of(totals[10:13])
        self.dev.nonfinite = (state.step, *self._first_nonfinite(totals[13:15]))
        self._check_list(totals[15:], self.sel)
        state.potential_energy = float(totals[0])
        state.virial = totals[1:10].reshape(3, 3)
        self.time_force += (time.perf_counter() - t0) - (self.world.comm_time - c0)

    def _list(self, sel: np.ndarray):
        """(nlist, stats (2 ntypes,) int64, err (1,) int32), device arrays, of the extended atoms of
        this call within rcut, DeePMD-kit's sorted slots for `sel`, with the grid and key capacity
        fixed at the rebuild (no host read; stats and err are read with the totals and checked by
        `_check_list`).  nlist: the whole list (nloc, sum(sel)) int32 up to WHOLE_LIST_BYTES
        (`whole_list`), else a numdp.neighbor.device.DeviceRows that formats each chunk's rows as
        the model asks for them (same rows; its stats are launched by `_closest`, after the model):
        4 sum(sel) bytes per atom less held (552 for water), one formatting per model group."""
        from ..neighbor.device import THREADS_PER_CENTRE, nlist_of_extended, rows_of_extended

        n = self.dev.natoms
        whole = self.whole_list
        if whole is None:
            whole = 4 * n * int(np.sum(sel)) <= WHOLE_LIST_BYTES
        # the simulator runs each thread in Python: one thread per centre there (same list)
        tpc = 1 if self.be.simulator else THREADS_PER_CENTRE
        xp = self.be.xp
        if not whole:
            rows = rows_of_extended(self._ext_pos, self._ext_types, n, self.rcut, sel, self._plan, tpc)
            return rows, xp.asarray(rows.stats), xp.asarray(rows.err)
        nlist, stats, err = nlist_of_extended(self._ext_pos, self._ext_types, n, self.rcut, sel, self._plan, tpc)
        return xp.asarray(nlist), xp.asarray(stats), xp.asarray(err)

    def _check_list(self, values, sel, model=None) -> None:
        """The host copy `values` of a list's (stats, err): RuntimeError if a centre overflowed the
        key buffer (a bug); the overflow warnings (numdp.neighbor.OverflowWarnings: each type
        once per sel; model 0's calls counted where a type with slots overflowed)."""
        from ..neighbor.device import search_flags

        max_count, overflow = search_flags(values, len(sel), self._plan)
        if not overflow.any():
            return
        real = self._overflows.seen(OverflowCounts(overflow, max_count), np.asarray(sel),
                                    getattr(self.model if model is None else model, "type_map", None))
        if model is None and real:
            self.overflow_calls += 1

    def _extended_positions(self, state: State) -> None:
        """Fill the extended positions (nall, 3) of this call: owners + lattice shift @ box."""
        nall = int(self._ext_pos.shape[0])
        self._K.extended_positions[self._grid(nall)](self.dev.positions, self._mapping, self._shift, self._box_d,
                                                     self._ext_pos)

    def _owned_forces(self, ext_force) -> None:
        """dev.forces (nloc, 3) eV/Å: the forces on the extended atoms folded onto their owners."""
        self.dev.forces = self._fold(ext_force, self.dev.forces)

    def _totals(self, energy, virial, closest=None, more=()) -> np.ndarray:
        """(E, virial (9)) eV on the host, summed over ranks: the atomic energies `energy` (nloc,)
        as a fixed-order tree sum and the device virial (3, 3) come over in one copy (10 numbers);
        with `closest` (a device record of closest_pair_device) its 3 numbers follow, this rank's,
        then the entries of the device arrays `more` (this rank's; integers, exact as float64 up to
        2**53: the neighbour list's stats and key-overflow flag)."""
        xp, nloc = self.be.xp, self.dev.natoms
        parts = [tree_sum_device(self.be, energy.reshape(nloc, 1)), virial.reshape(9)]
        if closest is not None:
            parts.append(closest)
        parts.extend(more)
        got = np.array(self.be.to_host(xp.concatenate(parts)), dtype=np.float64)
        return np.concatenate([self.world.sum_global(got[:10]), got[10:]])

    def _fold(self, ext_force, out=None):
        """The forces (nloc, 3) eV/Å on the owned atoms from those on the extended atoms
        `ext_force` (nall, 3), a device array (`out` when it has the right shape)."""
        nloc = self.dev.natoms
        if out is None or out.shape[0] != nloc:
            out = self.be.xp.empty((nloc, 3))
        self._fold_rows[self._strided2(nloc, 3)](ext_force, self._order, self._start, out)
        return out

    @property
    def device_backend(self):
        """The backend whose arrays `device_forces` and `evaluate_others`' forces are."""
        return self.be

    @property
    def device_forces(self):
        """Model 0's forces (nloc, 3) eV/Å of the last call, on the device (DeviceState.forces)."""
        return self.dev.forces

    def evaluate_others(self, state: State, models) -> list[tuple[np.ndarray, float, np.ndarray]]:
        """Evaluate more device models (same rcut and type_map) on the configuration of the last
        call ([model_devi]): its extended atoms, its list for model 0's sel, one more list per other
        sel.  Per model: (forces (nloc, 3) eV/Å on the owned atoms, a device array like
        `device_forces`; potential energy eV; virial (3, 3) eV), folded and summed as model 0's.
        When the last call was asked for these models (`evaluate_next_with`) its results are
        returned; otherwise they are evaluated now (sharing the environment matrix among them)."""
        done = self._ensemble_result(models)
        if done is not None:
            return done
        t0 = time.perf_counter()
        out = [self._reduce(r) for r in self._compute_models(list(models))]
        self.time_force += time.perf_counter() - t0
        return out

    def _reduce(self, out) -> tuple:
        """(forces (nloc, 3) eV/Å on the owned atoms (device), energy eV, virial (3, 3) eV) of one
        model's compute_device output, folded and summed as model 0's."""
        energy, ext_force, virial = out
        totals = self._totals(energy, virial)
        return self._fold(ext_force), float(totals[0]), totals[1:].reshape(3, 3)

    def _compute_models(self, models) -> list[tuple]:
        """compute_device outputs (atom_energy, force, virial) of `models` (same rcut and type_map
        as model 0) on the extended atoms of this call: model 0's sel on this call's list, one more
        list per other sel; the models of one sel that share the environment matrix
        (numdp.md.forces.environment_groups) are evaluated together by
        numdp.model.dp_model.compute_device_ensemble, which computes it once per chunk and gives
        each model the bits of its own compute_device."""
        from ..model.dp_model import compute_device_ensemble
        from ..neighbor.device import DeviceRows
        from .forces import environment_groups

        types = self.dev.types_host
        lists = {tuple(self.sel.tolist()): self._nlist}
        made = {}   # the lists of the other sels: (stats, err, the first model) to check after use
        outs = [None] * len(models)
        for sel, members in environment_groups(models):
            group = [models[k] for k in members]
            if sel not in lists:
                lists[sel], stats, err = self._list(np.asarray(sel, dtype=np.int64))
                made[sel] = (stats, err, group[0])
            if len(members) == 1:
                outs[members[0]] = group[0].compute_device(self._ext_pos, lists[sel], types)
                continue
            self.shared_env += len(members) - 1
            for k, out in zip(members, compute_device_ensemble(group, self._ext_pos, lists[sel], types)):
                outs[k] = out
        for sel, (stats, err, model) in made.items():   # a DeviceRows has its statistics once used
            if isinstance(lists[sel], DeviceRows):
                lists[sel].finish()
            self._check_list(self.be.to_host(self.be.xp.concatenate([stats, err])), sel, model)
        return outs

    def _nonfinite_records(self):
        """(2,) float64 device array: n - i for the first owned atom i with a non-finite force,
        the same for the velocities, 0 when there is none (one launch and one fixed-order tree:
        `nonfinite_records`, `extreme_rows`; one launch up to ONE_BLOCK_ROWS atoms:
        `nonfinite_extreme`)."""
        dev = self.dev
        n = dev.natoms
        if not n:
            return self.be.xp.zeros(2)
        rows = self.be.xp.empty((n, 2))
        if n <= self._K.ONE_BLOCK_ROWS:   # records and tree in one launch, the same bits
            out = self.be.xp.empty(2)
            self._K.nonfinite_extreme[self._one_block(n)](dev.forces, dev.velocities, rows, out)
            return out
        self._K.nonfinite_records[self._grid(n)](dev.forces, dev.velocities, rows)
        return tree_extreme_device(self.be, rows, 0)

    def _first_nonfinite(self, got) -> tuple[int, int]:
        """(first atom with a non-finite force, with a non-finite velocity; -1 when none) from the
        host copy of `_nonfinite_records`."""
        n = self.dev.natoms
        return tuple(n - int(g) if g else -1 for g in got)

    def nonfinite_force_atom(self, state: State) -> int:
        """Local index of the first owned atom with a non-finite force, or -1; when there is one,
        the state is copied to the host to name it.  Read with the totals of the force call that
        ended this step (dev.nonfinite); without one (a restart's first check, whose forces came
        from the checkpoint) a device reduction read now."""
        dev = self.dev
        if dev.nonfinite is not None and dev.nonfinite[0] == state.step:
            k = dev.nonfinite[1]
        else:
            k = self._first_nonfinite(self.be.to_host(self._nonfinite_records()))[0]
        if k >= 0:
            dev.download(state)
        return k

    def atom_label(self, ext_index: int) -> tuple[int, int]:
        """(global id, type) of extended atom `ext_index` of the current list."""
        owner = int(self._mapping[ext_index])
        return int(self.dev.ids_host[owner]), int(self.dev.types_host[owner])
