"""Build a ready-to-run `Simulation` from validated settings (numdp.config.RunSettings).

Order: model -> state (start structure or checkpoint) -> thermostat / barostat -> integrator ->
force provider -> safety -> outputs.  Restart: a checkpoint given as `restart` (command line
`--restart`) or as [system] file restores the whole State, and the run continues up to step
[md] steps; the trajectory and the log are continued (trajectory frames after the checkpoint's
step are dropped first), so the result is bit for bit that of an uninterrupted run.  A new run
first backs up the outputs of a previous one (numdp.io.backup: `#traj.h5md.1#`, ...); they get
their names back if the run fails before its first report (Simulation.run).

On several MPI ranks (numdp.parallel) every rank builds the same objects: rank 0 reads the start
structure or checkpoint, the grid of subdomains is chosen (or taken from [parallel] grid), and
each rank receives the atoms of its subdomain; Maxwell-Boltzmann velocities are drawn per atom id
with global sums, so they do not depend on the rank count.  A checkpoint is read the same way
whatever rank count wrote it.  Errors found while setting up are agreed on by all ranks and
reported once.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..config import RunSettings
from ..errors import InputError
from ..io.backup import Backups, prepare_outputs
from ..io.h5md import is_checkpoint, read_checkpoint
from ..io.trajectory import open_trajectory
from ..io.structure import assign_types, read_structure, replicate
from ..neighbor.extended import complete_cell
from ..parallel.device_comm import bind_rank_gpu
from ..parallel.distribute import scatter_state
from ..parallel.domain import Domain, check_grid, choose_grid, describe_grid
from ..parallel.threads import apply_threads, threads_per_rank
from ..parallel.world import World
from ..system import State, kinetic_energy, temperature, zero_momentum
from ..units import KB, MVV2E, standard_mass
from .deviation import DeviationReporter, check_ensemble
from .barostat import StochasticCellRescaling, is_lower_triangular, lower_triangular_rotation
from .device import check_device_run, device_md
from .forces import ForceProvider
from .integrator import VelocityVerlet
from .loop import RunResult, Simulation, run_or_raise
from .reporters import CheckpointReporter, Console, ThermoReporter, TrajectoryReporter
from ..kernels.cpu.rng import STREAM_VELOCITY_INIT, normals
from .safety import SafetyMonitor
from .thermostats import THERMOSTATS, NoseHooverChain


def maxwell_boltzmann(state: State, temperature_k: float, seed: int, world: World | None = None) -> None:
    """Velocities from the Maxwell-Boltzmann distribution at `temperature_k` (K), zero total
    momentum, then scaled so that the instantaneous temperature (N_f = 3N - 3) is exactly the target.
    Random numbers keyed by (seed, atom id), so the result does not depend on the atom order or
    on how the atoms are spread over ranks (sums over `world`; collective)."""
    world = world if world is not None else World(None)
    g = normals(seed, 0, STREAM_VELOCITY_INIT, state.ids, 3)
    state.velocities = g * np.sqrt(KB * temperature_k / (state.masses * MVV2E))[:, None]
    zero_momentum(state.velocities, state.masses, world.sum_global)
    t = temperature(world.sum_global(kinetic_energy(state.velocities, state.masses)), state.dof)
    if t > 0.0:
        state.velocities *= math.sqrt(temperature_k / t)


def _masses(settings: RunSettings, types: np.ndarray, type_map: list[str], file_masses) -> np.ndarray:
    """(N,) amu: [system] masses override, else the masses in the file, else standard masses."""
    where = f"{settings.path.name}: [system] masses"
    overrides = settings.system.masses
    for element in overrides:
        if element not in type_map:
            raise InputError(f"{where}.{element}: not an element of the model's type_map {type_map}")
    out = np.empty(types.shape[0])
    for t in np.unique(types):
        element = type_map[t]
        mask = types == t
        if element in overrides:
            out[mask] = overrides[element]
        elif file_masses is not None:
            out[mask] = file_masses[mask]
        else:
            out[mask] = standard_mass(element, where)
    return out


def state_from_structure(settings: RunSettings, type_map: list[str], draw_velocities: bool = True) -> State:
    """The start State from [system]: structure file, replicas, types, masses, velocities
    (draw_velocities=False leaves [system] velocities to the caller: `start_velocities`)."""
    s = settings.system
    structure = read_structure(s.file, s.frame)
    if s.pbc is not None:  # the key overrides what the file says
        if structure.box is None and any(s.pbc):
            raise InputError(f"{settings.path.name}: [system] pbc: {list(s.pbc)} asks for periodic directions "
                             f"but {s.file} has no cell")
        structure.pbc = tuple(s.pbc)
    if structure.pbc is not None:
        if not any(structure.pbc):
            structure.box = None     # periodic along no vector: an open cluster
        elif all(structure.pbc):
            structure.pbc = None
        else:   # a zero-length non-periodic cell vector (a 2D cell) gets a unit length
            structure.box = complete_cell(structure.box, structure.pbc)
    structure = replicate(structure, s.replicate)
    types = assign_types(structure, type_map, s.type_names, f"{settings.path.name}: [system]")
    masses = _masses(settings, types, type_map, structure.masses)
    n = structure.natoms
    state = State(positions=np.ascontiguousarray(structure.positions, dtype=np.float64),
                  velocities=np.zeros((n, 3)), types=types, masses=masses,
                  box=None if structure.box is None else np.ascontiguousarray(structure.box, dtype=np.float64),
                  type_map=list(type_map), ids=np.arange(n, dtype=np.int64), seed=settings.md.seed,
                  pbc=structure.pbc)
    if structure.velocities is not None and s.velocities is None:
        state.velocities = np.ascontiguousarray(structure.velocities, dtype=np.float64)
    if draw_velocities:
        start_velocities(state, settings)
    return state


def start_velocities(state: State, settings: RunSettings, world: World | None = None) -> None:
    """[system] velocities (Maxwell-Boltzmann) if asked for, then zero total momentum.  Collective."""
    world = world if world is not None else World(None)
    v = settings.system.velocities
    if v is not None:
        maxwell_boltzmann(state, v.temperature, v.seed, world)
    zero_momentum(state.velocities, state.masses, world.sum_global)


def rotate_state(state: State, q: np.ndarray) -> None:
    """Rotate positions, velocities, forces and the cell by the orthogonal matrix q (x -> x q)."""
    state.positions = state.positions @ q
    state.velocities = state.velocities @ q
    state.box = state.box @ q
    if state.forces is not None:
        state.forces = state.forces @ q
    if state.virial is not None:
        state.virial = q.T @ state.virial @ q


def _stop_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(f"{checkpoint.stem}.stop{checkpoint.suffix or '.h5'}")


def _read_start(settings: RunSettings, restart, type_map: list[str], barostat_coupling) -> tuple[State, list[str]]:
    """The whole start state (rank 0 only) and notes for the log: a checkpoint or the [system]
    structure (velocities not drawn yet), rotated to a lower-triangular cell for triclinic NPT."""
    name = settings.path.name
    if restart is not None:
        state = read_checkpoint(restart)
        if state.type_map != type_map:
            raise InputError(f"{restart}: the checkpoint's type_map {state.type_map} differs from the "
                             f"model's {type_map}")
    else:
        state = state_from_structure(settings, type_map, draw_velocities=False)
    notes = []
    if barostat_coupling is not None:
        if state.box is None:
            raise InputError(f"{name}: [md] ensemble = 'npt' needs a periodic cell; {settings.system.file} has none")
        if not all(state.pbc_flags):
            raise InputError(f"{name}: [md] ensemble = 'npt' needs a cell periodic along all three vectors; "
                             f"the system has pbc {list(state.pbc_flags)} (use 'nvt' or 'nve' for a slab)")
        if barostat_coupling == "triclinic" and not is_lower_triangular(state.box):
            rotate_state(state, lower_triangular_rotation(state.box))
            notes.append("the cell was rotated to lower-triangular form (a along x, b in the xy plane) "
                         "for triclinic coupling")
    return state, notes


def build_simulation(settings: RunSettings, restart=None, model=None, screen=None,
                     world: World | None = None) -> tuple[Simulation, int]:
    """(Simulation, end step) for `settings`; `restart`: checkpoint path or None; `model`: use
    this potential instead of loading [model] file (tests); `world`: the MPI ranks of the run
    (default: one rank).  Collective."""
    world = world if world is not None else World(None)
    name = settings.path.name
    md = settings.md
    nthreads, thread_source = threads_per_rank(settings.model.threads, world)
    device = settings.model.device
    with world.agreement():
        check_device_run(device, md.ensemble, world, name)
    gpus = None   # GPU index per rank (several ranks on the GPU)
    if device != "cpu" and world.size > 1:
        gpus = world.counts_global(bind_rank_gpu(world)[1])
    with world.agreement():  # every rank loads the model; errors are reported once
        from .. import load_model

        if model is None:
            apply_threads(nthreads)
            model = load_model(settings.model.file, nthreads=nthreads, precision=settings.model.precision,
                               device=device)
        # (an ensemble always has [model_devi]: load_run_settings)
        devi_precision = settings.model_devi.precision if settings.model_devi else settings.model.precision
        others = [load_model(f, nthreads=nthreads, precision=devi_precision, device=device)
                  for f in settings.model.deviation_files]
        check_ensemble([model] + others, settings.model.files, f"{name}: [model] file")
        if restart is None and settings.system.file.is_file() and is_checkpoint(settings.system.file):
            s = settings.system
            if s.velocities is not None or s.replicate != (1, 1, 1) or s.frame is not None:
                raise InputError(f"{name}: [system] file is a checkpoint, which restores the whole state; "
                                 f"remove velocities, replicate and frame")
            restart = settings.system.file
    type_map = list(model.type_map)
    restarted = restart is not None

    start = notes = None
    with world.agreement():  # rank 0 reads the start state
        if world.is_root:
            start, notes = _read_start(settings, restart, type_map, md.barostat.coupling if md.barostat else None)
    box, pbc, notes = world.bcast_object((start.box, start.pbc_flags, notes) if world.is_root else None)
    with world.agreement():
        if settings.parallel.grid is not None:
            grid = check_grid(settings.parallel.grid, world.size, f"{name}: [parallel] grid", pbc)
        else:
            grid = choose_grid(world.size, box, pbc)
    domain = Domain(grid, world.rank, periodic=box is not None)
    header = None  # (species, masses) of all atoms in id order, for the trajectory (rank 0)
    if world.is_root:
        order = np.argsort(start.ids, kind="stable")
        header = (start.types[order], start.masses[order])
    state = scatter_state(world, domain, start)
    del start
    if not restarted:
        start_velocities(state, settings, world)

    thermostat = None
    if md.thermostat is not None:
        th = md.thermostat
        cls = THERMOSTATS[th.kind]
        thermostat = (cls(th.temperature, th.tau, th.chain, world=world) if cls is NoseHooverChain
                      else cls(th.temperature, th.tau, world=world))
        thermostat.initialize(state)
    barostat = None
    if md.barostat is not None:
        b = md.barostat
        barostat = StochasticCellRescaling(b.pressure, b.tau, b.compressibility, b.coupling,
                                           md.thermostat.temperature, world=world)
        barostat.initialize(state)
    if device == "cpu":
        integrator = VelocityVerlet(md.timestep, thermostat, barostat)
        provider = ForceProvider(model, settings.neighbor.skin, world, domain)
        safety = SafetyMonitor(settings.safety.min_distance, settings.neighbor.skin, world)
    else:  # the step on the GPU (numdp.md.device)
        integrator, provider, safety = device_md(device, state, model, md.timestep, thermostat, settings.neighbor.skin,
                                                 settings.safety.min_distance, world, domain, barostat)

    out = settings.output
    backups = Backups.none()
    outputs = [out.trajectory, out.log, out.checkpoint, _stop_path(out.checkpoint),
               settings.model_devi.file if settings.model_devi else None]
    with world.agreement():
        if world.is_root:
            prepare_outputs(outputs)  # before any backup: a run that cannot write moves nothing
            if not restarted:  # a new run: keep the previous run's files under numbered names
                backups = Backups.move(outputs)
    # until the first report (Simulation.run) a failure gives them their names back
    with backups:
        console = Console(out.log, resume=restarted, screen=screen, enabled=world.is_root)
        reporters = [ThermoReporter(out.thermo_every, console)]
        writer = None
        with world.agreement():  # rank 0 opens (or continues) the trajectory
            if world.is_root:
                if out.trajectory is not None:
                    species, masses = header
                    writer = open_trajectory(out.format, out.trajectory, species, masses, state.type_map,
                                             out.fields, state.pbc_flags if state.box is not None else False,
                                             out.force_unit, settings.text,
                                             resume_after=state.step if restarted else None)
        trajectory = None
        if out.trajectory is not None:
            trajectory = TrajectoryReporter(writer, out.every, out.trajectory, world, out.fields)
            reporters.append(trajectory)
        devi = settings.model_devi
        if devi is not None:
            reporters.append(DeviationReporter(provider, others, devi.every, devi.file, devi.atomic, devi.relative,
                                               devi.relative_v, state.step if restarted else None, world))
        checkpoint = CheckpointReporter(out.checkpoint, out.checkpoint_every, settings.text, out.force_unit, world)
        reporters.append(checkpoint)
        sim = Simulation(state, integrator, provider, safety, reporters, console,
                         out.progress if world.is_root else "none", trajectory, checkpoint,
                         _stop_path(out.checkpoint), restarted, backups)

        counts = world.sum_global(np.bincount(state.types, minlength=len(type_map)).astype(np.float64))
        console.line(f"numdp run {settings.path}: {state.natoms_global} atoms "
                     + ", ".join(f"{type_map[t]} {int(counts[t])}" for t in range(len(type_map)) if counts[t] > 0))
        console.line(f"  model {settings.model.file} (rcut {model.rcut} A"
                     + (", compressed" if getattr(model, "compressed", False) else "")
                     + (f", precision {model.precision}" if hasattr(model, "precision") else "")
                     + (f", device {device}" if device != "cpu" else "")
                     + f"), skin {settings.neighbor.skin} A, "
                     f"timestep {md.timestep} ps, ensemble {md.ensemble}"
                     + (f", {md.thermostat.kind} thermostat {md.thermostat.temperature} K tau {md.thermostat.tau} ps"
                        if md.thermostat else "")
                     + (f", {md.barostat.kind} barostat {md.barostat.pressure} bar tau {md.barostat.tau} ps "
                        f"({md.barostat.coupling})" if md.barostat else ""))
        if devi is not None:
            shared = sum(1 for m in others if hasattr(model, "shares_environment") and model.shares_environment(m))
            console.line(f"  model deviation of {len(others) + 1} models every {devi.every} steps to {devi.file}"
                         + (" (per atom)" if devi.atomic else "")
                         + (f", {'model 1' if len(others) == 1 else f'models 1-{len(others)}'} in {devi_precision}"
                            if devi_precision != settings.model.precision else "")
                         + (f"; one environment matrix for {shared + 1} of them" if shared else ""))
        if world.size > 1:
            console.line(f"  {world.size} MPI ranks, grid {describe_grid(grid, box, provider.cutoff)}; "
                         f"{getattr(model, 'nthreads', nthreads)} threads per rank ({thread_source})")
        if gpus is not None:
            console.line(f"  one GPU per rank: rank -> GPU {gpus.tolist()} (node-local rank mod GPUs on the node)")
        if state.box is not None and not all(state.pbc_flags):
            console.line("  mixed boundary conditions: periodic along "
                         + ", ".join("abc"[k] for k in range(3) if state.pbc_flags[k]) + " only")
        if restarted:
            console.line(f"  restarted from {restart} at step {state.step} (time {state.time:.6g} ps)")
        for note in notes:
            console.line("  " + note)
        if backups.moved:
            console.line("  " + backups.line())
    return sim, md.steps


def run_md(settings: RunSettings, restart=None, model=None, screen=None,
           world: World | None = None) -> RunResult | None:
    """Build and run; returns the RunResult (None when the checkpoint is already at [md] steps).
    Collective on several ranks."""
    sim, end = build_simulation(settings, restart, model, screen, world)
    if sim.state.step >= end and not (sim.state.step == end == 0 and not sim.restarted):
        sim.console.line(f"nothing to run: the state is at step {sim.state.step}, [md] steps = {end}")
        sim.close()
        return None
    return run_or_raise(sim, end)
