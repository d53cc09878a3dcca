"""MD on the GPU ([model] device = "cuda", `numdp run --device cuda`): what runs where.

On the device, every step: the velocity-Verlet half-steps (`kick`, `drift`:
numdp.kernels.cuda.md, twins of numdp.kernels.cpu.md), the thermostats' work on the velocities
(Langevin's Ornstein-Uhlenbeck update with the CPU's Philox numbers, the kinetic energy and the
momentum as fixed-order tree sums, rescaling by CSVR, whose few scalars stay on the host, and the
whole Nosé-Hoover chain, its variables included, on one rank: `DeviceVelocities`), the barostat's
per-atom work (the kinetic tensor as a fixed-order tree sum, the scaling of positions and
velocities by the cell move; the cell maths of numdp.md.barostat stays on the host, from the
virial the force call brings back), the skin test, the ghost shell and the neighbour list, the
model, the fold of ghost forces, the potential-energy sum, and the safety checks'
per-atom parts (non-finite forces and velocities, closest pair, largest move).  The host keeps
the scalars (step, time, box, energy, virial, the stochastic thermostats' variables) and receives
per step only a handful of numbers (the reductions above: two synchronising copies, the rebuild
test's and the force call's totals with the safety records, `DeviceVelocityVerlet.step`); the
per-atom arrays and the chain's variables come to the host only when the State is read there:
thermo, trajectory and checkpoint steps, and a stop (`sync_host`).

On several MPI ranks each rank runs its subdomain on its own GPU (numdp.md.device_parallel,
numdp.parallel.device_comm); the thermostats' and the barostat's sums are then summed over ranks
in rank order on the host (the Nosé-Hoover chain then runs on the host, as on the CPU).
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..parallel.world import World
from ..system import State
from ..units import MVV2E
from .device_forces import DeviceForceProvider
from .device_state import DeviceState, first_flagged, tree_levels_device, tree_sum, tree_sum_device
from .integrator import VelocityVerlet
from .safety import SafetyMonitor
from .thermostats import host_nose_hoover_chain


def check_device_run(device: str, ensemble: str, world: World, where: str, key: str = "[model] ") -> None:
    """InputError (one line, naming the input `where` and `key`, the prefix of the setting's
    name: "[model] " for a numdp run input, "--" for numdp lmp's --device) when this run cannot run on
    `device` (only "cuda" is checked): CUDA unusable (numdp.backend.get_backend's errors).  Several
    MPI ranks run with one GPU each (numdp.parallel.device_comm.bind_rank_gpu); every ensemble runs
    on the device."""
    if device == "cpu":
        return
    from ..backend import get_backend

    try:
        get_backend(device)
    except InputError as exc:
        raise InputError(f"{where}: {key}{exc}") from None


class DeviceVelocities:
    """numdp.md.thermostats.HostVelocities on the device arrays of a DeviceState (one rank).

    chain_on_device: whether the Nosé-Hoover chain's half-step runs on the device (one rank: its
    kinetic sum, the chain's scalar maths and the scaling stay there, the host reads nothing) or
    on the host (several ranks: the kinetic energy is summed over the ranks by world.sum_global,
    then the host runs the chain's maths, as a CPU run does).  Both paths do the same arithmetic
    (numdp.kernels.mdmath.nose_hoover_chain) on the same global sum."""

    def __init__(self, dev: DeviceState, world: World | None = None):
        from ..kernels.cuda import launch, md

        self.dev = dev
        self.world = world if world is not None else World(None)
        self.chain_on_device = self.world.size == 1
        self._K = md
        self._grid = launch.grid
        self._factor = None     # (1,) device array: the chain's scale factor
        self._chain_consts = None   # (q, weights) on the host and (q, weights) on the device
        self._terms = None      # (N, 1) device scratch of nose_hoover_chain_block (m v.v per atom)
        self._one_block = launch.one_block

    def _kinetic_rows(self):
        """(m v.v, m vx, m vy, m vz, m) per atom of this rank, a (N, 5) device array."""
        dev = self.dev
        rows = dev.be.xp.empty((dev.natoms, self._K.KINETIC_COLUMNS))
        if dev.natoms:
            self._K.kinetic_terms[self._grid(dev.natoms)](dev.velocities, dev.masses, rows)
        return rows

    def _sums_device(self):
        """(Σ m v.v, Σ m v (3), Σ m) of this rank's atoms, a (5,) device array: one fixed-order
        tree sum (`tree_sum_device`)."""
        return tree_sum_device(self.dev.be, self._kinetic_rows())

    def _sums(self) -> np.ndarray:
        """`_sums_device` on the host, then summed over ranks in rank order."""
        return self.world.sum_global(np.array(self.dev.be.to_host(self._sums_device()), dtype=np.float64))

    def kinetic_energy(self, state: State) -> float:
        return 0.5 * MVV2E * float(self._sums()[0])

    def scale(self, state: State, factor: float) -> None:
        self._K.scale_rows[self._grid(self.dev.natoms)](self.dev.velocities, float(factor))

    def langevin(self, state: State, c: float, kt: float, stream: int) -> None:
        dev = self.dev
        self._K.langevin_update[self._grid(dev.natoms)](dev.velocities, dev.masses, dev.ids, float(c), float(kt),
                                                        np.int64(state.seed), np.int64(state.step),
                                                        np.int64(stream))

    def zero_momentum(self, state: State) -> None:
        s = self._sums()
        vcm = self.dev.be.to_device(np.ascontiguousarray(s[1:4] / s[4]))
        self._K.subtract_row[self._grid(self.dev.natoms)](self.dev.velocities, vcm)

    def nose_hoover_chain(self, state: State, h: float, kt: float, q: np.ndarray, nloop: int,
                          weights: np.ndarray) -> None:
        """HostVelocities.nose_hoover_chain with the chain variables on the device
        (DeviceState.thermostat, uploaded from state.thermostat at the first call): the kinetic
        tree sum left on the device, its last level and the chain's maths in one one-thread
        kernel that writes the scale factor to device memory, and the scaling that reads it
        there; up to ONE_BLOCK_ROWS atoms all of it in one launch of one block
        (`nose_hoover_chain_block`, the same bits).  kt is an argument of each launch and the
        chain masses q are uploaded again whenever they differ from the last ones (every step of a
        ramped target, numdp.md.ramp).  On several ranks (not chain_on_device) the host path of
        numdp.md.thermostats."""
        if not self.chain_on_device:
            host_nose_hoover_chain(self, state, h, kt, q, nloop, weights)
            return
        dev = self.dev
        be = dev.be
        chain = dev.thermostat
        if not chain:
            for key in ("xi", "vxi"):
                chain[key] = be.xp.array(state.thermostat[key], dtype=np.float64)   # a copy, never an alias
        if self._factor is None:
            self._factor = be.xp.empty(1)
        consts = self._chain_consts
        if consts is None or not (np.array_equal(consts[0], q) and np.array_equal(consts[1], weights)):
            consts = (q.copy(), weights.copy(), be.xp.array(q, dtype=np.float64),
                      be.xp.array(weights, dtype=np.float64))
            self._chain_consts = consts
        n = dev.natoms
        if n <= self._K.ONE_BLOCK_ROWS:   # the four launches below in one block, with their bits
            if self._terms is None or self._terms.shape[0] != n:
                self._terms = be.xp.empty((n, 1))
            self._K.nose_hoover_chain_block[self._one_block(n)](
                dev.velocities, dev.masses, self._terms, int(state.dof), float(kt), consts[2], float(h), int(nloop),
                consts[3], chain["xi"], chain["vxi"], self._factor)
            return
        # the kinetic tree down to one chunk; its last level runs in the chain's one thread
        rows = tree_levels_device(be, self._kinetic_rows(), self._K.SUM_CHUNK)
        self._K.nose_hoover_chain_step[1, 1](rows, int(state.dof), float(kt), consts[2], float(h), int(nloop),
                                             consts[3], chain["xi"], chain["vxi"], self._factor)
        self._K.scale_rows_by[self._grid(dev.natoms)](dev.velocities, self._factor)

    def kinetic_tensor(self, state: State) -> np.ndarray:
        """Σ m v ⊗ v (3, 3) eV of the whole system on the host: one fixed-order tree sum of this
        rank's per-atom products, then the sum over ranks in rank order."""
        dev = self.dev
        rows = dev.be.xp.empty((dev.natoms, self._K.TENSOR_COLUMNS))
        if dev.natoms:
            self._K.kinetic_tensor_terms[self._grid(dev.natoms)](dev.velocities, dev.masses, rows)
        return self.world.sum_global(tree_sum(dev.be, rows)).reshape(3, 3)

    def transform(self, state: State, m: np.ndarray, mv: np.ndarray) -> None:
        """Positions r -> r @ m and velocities v -> v @ mv on the device (one launch)."""
        dev = self.dev
        to = dev.be.to_device
        self._K.transform_rows2[self._grid(dev.natoms)](dev.positions, to(np.ascontiguousarray(m, dtype=np.float64)),
                                                        dev.velocities, to(np.ascontiguousarray(mv, dtype=np.float64)))


class DeviceVelocityVerlet(VelocityVerlet):
    """VelocityVerlet (same step sequence) whose half-steps run on the arrays of `dev`; the
    thermostat's and the barostat's per-atom operations are pointed at the device (`.ops`)."""

    def __init__(self, dt: float, dev: DeviceState, thermostat=None, barostat=None, world: World | None = None):
        from ..kernels.cuda import launch, md

        super().__init__(dt, thermostat, barostat)
        self.dev = dev
        self._K = md
        self._grid = launch.grid
        for coupled in (thermostat, barostat):
            if coupled is not None:
                coupled.ops = DeviceVelocities(dev, world)

    def step(self, state: State, forces) -> None:
        """VelocityVerlet.step; with a device force provider (`DeviceForceProvider`) its host read
        waits for the end of the step: `forces.launch` at the force call, `forces.complete` once
        the second half-kick and the thermostat's half-step have run.  Nothing in that second half
        reads the force call's host results (the energy and virial go to the thermo rows, the
        safety check and the next step's barostat; the closest pair and the list statistics to
        the safety check), so the read can wait, and the non-finite records of the step's final
        forces and velocities, the arrays the safety check tests after the step (as on the CPU),
        come in the same copy: no read of their own (a stop names the same atom at the same step
        as before and as the CPU run).  Any other callable is called as by VelocityVerlet, and so
        is the provider with a barostat of its own momentum (numdp.md.mtk), whose second half
        needs the force call's virial: its `__call__` launches and completes at once (the step's
        final velocities then get the safety monitor's own reduction)."""
        if not isinstance(forces, DeviceForceProvider) or (self.barostat is not None and self.barostat.extended):
            super().step(state, forces)
            return
        super().step(state, forces.launch)
        forces.complete(state)

    def kick_half(self, state: State) -> None:
        dev = self.dev
        self._K.kick[self._grid(dev.natoms)](dev.velocities, dev.forces, dev.masses, 0.5 * self.dt)

    def drift_for(self, state: State, h: float) -> None:
        dev = self.dev
        self._K.drift[self._grid(dev.natoms)](dev.positions, dev.velocities, float(h))

    def kick_drift(self, state: State, h: float) -> None:
        dev = self.dev
        self._K.kick_drift[self._grid(dev.natoms)](dev.velocities, dev.forces, dev.masses, 0.5 * self.dt,
                                                   dev.positions, float(h))

    def sync_host(self, state: State) -> None:
        """Copy positions, velocities, forces, the neighbour record and the device-held thermostat
        variables (the Nosé-Hoover chain's) to the host State."""
        self.dev.download(state)


class DeviceSafetyMonitor(SafetyMonitor):
    """SafetyMonitor on the device arrays.  The non-finite forces and velocities of a step are
    found by its force provider's `complete`, read with the step's totals (DeviceState.nonfinite:
    no read of their own); the velocity test reduces on the device and reads only without that
    record (a restart's first check)."""

    def __init__(self, min_distance: float, skin: float, dev: DeviceState, world: World | None = None):
        from ..kernels.cuda import launch, md

        super().__init__(min_distance, skin, world)
        self.dev = dev
        self._K = md
        self._grid = launch.grid

    def nonfinite_velocity_atom(self, state: State) -> int:
        dev = self.dev
        if dev.nonfinite is not None and dev.nonfinite[0] == state.step:
            k = dev.nonfinite[2]   # read with the totals of the force call that ended this step
        else:
            flag = dev.be.xp.empty(dev.natoms, np.int32)
            self._K.nonfinite_rows[self._grid(dev.natoms)](dev.velocities, flag)
            k = first_flagged(dev.be, flag)
        if k >= 0:
            dev.download(state)
        return k


def _maybe_use_graphs(provider, be) -> None:
    """NUMDP_CUDA_GRAPH=1: the force calls' device work from CUDA graphs (numdp.md.device_graph),
    on a GPU; a one-line warning where that cannot be (the simulator, a missing piece)."""
    import warnings

    from . import device_graph

    if not device_graph.enabled():
        return
    if be.simulator:
        warnings.warn("NUMDP_CUDA_GRAPH=1 is ignored under the CUDA simulator (graphs need a GPU)",
                      RuntimeWarning, stacklevel=3)
        return
    try:
        provider.use_graphs()
    except (RuntimeError, ImportError) as exc:
        warnings.warn(f"NUMDP_CUDA_GRAPH=1: {exc}; the run goes on without graphs", RuntimeWarning, stacklevel=3)


def device_md(device: str, state: State, model, dt: float, thermostat, skin: float, min_distance: float,
              world: World, domain=None, barostat=None):
    """(integrator, force provider, safety monitor) of a run whose step runs on `device`; the
    state's arrays (this rank's atoms) are uploaded here.  `model` must have been loaded with this
    device; on several ranks `domain` is this rank's subdomain (numdp.parallel.domain.Domain)."""
    from ..backend import get_backend

    if getattr(model, "device", "cpu") != device:
        raise InputError(f"the model was loaded for device '{getattr(model, 'device', 'cpu')}', "
                         f"not '{device}'")
    dev = DeviceState.upload(get_backend(device), state)
    if world.size > 1:
        from .device_parallel import DeviceParallelForceProvider

        provider = DeviceParallelForceProvider(model, skin, dev, world, domain, state.pbc_flags)
    else:
        provider = DeviceForceProvider(model, skin, dev, world, state.pbc_flags if state.box is not None else None)
        _maybe_use_graphs(provider, dev.be)
    return (DeviceVelocityVerlet(dt, dev, thermostat, barostat, world), provider,
            DeviceSafetyMonitor(min_distance, skin, dev, world))
