"""Build a ready-to-run `Simulation` from validated settings (numdp.config.RunSettings).

Order: model -> state (start structure or checkpoint) -> thermostat / barostat -> integrator ->
force provider -> safety -> outputs.  Restart: a checkpoint given as `restart` (command line
`--restart`) or as [system] file restores the whole State, and the run continues up to step
[md] steps; the trajectory and the log are continued (trajectory frames after the checkpoint's
step are dropped first), so the result is bit for bit that of an uninterrupted run.  A new run
first backs up the outputs of a previous one (numdp.io.backup: `#traj.h5md.1#`, ...); they get
their names back if the run fails before its first report (Simulation.run).

An energy minimization ([minimize]) builds the same run with numdp.md.minimize.FireMinimizer in
the place of the integrator (no thermostat or barostat; [minimize] box relaxes the cell with the
line-search styles, numdp.md.boxrelax), its thermo columns (step pe fnorm fmax),
on the CPU only, up to [minimize] steps.  A checkpoint continues a run of its own kind only (MD or
minimization); given as [system] file to the other kind it is a start structure (numdp.md.start).

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
from ..io.h5md import is_checkpoint
from ..io.series import series_files
from ..io.trajectory import BoxOrigin, open_trajectory
from ..parallel.device_comm import bind_rank_gpu
from ..parallel.distribute import GlobalAtoms, scatter_state
from ..parallel.domain import Domain, check_grid, choose_grid, describe_grid
from ..parallel.threads import apply_threads, threads_per_rank
from ..parallel.world import World
from ..progress import counted
from ..system import State, zero_momentum
from .deviation import DeviationReporter, check_ensemble
from .barostat import StochasticCellRescaling
from .mtk import MTKBarostat
from .boxrelax import BoxRelax
from .device import check_device_run, device_md
from .forces import ForceProvider
from .integrator import VelocityVerlet
from .loop import Continuation, RunResult, Simulation, run_or_raise
from .linesearch import LineSearchMinimizer
from .minimize import FireMinimizer, FixedForces
from .ramp import Ramp
from .reporters import CheckpointReporter, Console, MinimizeThermoReporter, ThermoReporter, TrajectoryReporter
from .safety import SafetyMonitor
from .start import continues_run, read_start, start_velocities
from .thermostats import THERMOSTATS, NoseHooverChain


def _with_inputs(model, settings, file, name: str):
    """`model` for the run's [model] fparam (the model's default_fparam when not given) and
    aparam (every atom's); InputError naming the input and the model file when they do not fit."""
    try:
        model.set_fparam(settings.fparam)
        model.set_aparam(settings.aparam)
        model.use_inputs()
    except InputError as exc:
        keys = " / ".join(k for k, n in (("fparam", model.numb_fparam), ("aparam", model.numb_aparam)) if n)
        raise InputError(f"{name}: [model] {keys or 'fparam / aparam'}: {file}: {exc}") from None
    return model


def _give_atoms(writer, state: State, world: World) -> None:
    """Every atom's type and mass to rank 0's trajectory `writer` (None elsewhere), block by block
    in id order, when it needs them (a new file, or a text format).  Collective; a write error on
    rank 0 is agreed on after the last block, so that no rank waits for a block."""
    needs = world.bcast_object(writer is not None and writer.needs_atoms)
    if not needs:
        return
    atoms = GlobalAtoms(world, state, ("types", "masses"))
    error = None
    for item in atoms.blocks():
        if item is not None and error is None:
            start, arrays = item
            try:
                writer.set_atoms(start, arrays["types"], arrays["masses"])
            except Exception as exc:  # noqa: BLE001 - agreed on below
                error = exc
    world.agree(error)


def _stop_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(f"{checkpoint.stem}.stop{checkpoint.suffix or '.h5'}")


def build_simulation(settings: RunSettings, restart=None, model=None, screen=None,
                     world: World | None = None, continuation: Continuation | None = None) -> tuple[Simulation, int]:
    """(Simulation, end step) for `settings`; `restart`: checkpoint path or None; `model`: use
    this potential instead of loading [model] file (tests); `world`: the MPI ranks of the run
    (default: one rank); `continuation`: how a stopped run says it continues (numdp.md.loop;
    default numdp run's --restart).  Collective."""
    world = world if world is not None else World(None)
    name = settings.path.name
    md = settings.md
    mini = settings.minimize
    nthreads, thread_source = threads_per_rank(settings.model.threads, world)
    device = settings.model.device
    with world.agreement():
        if mini is not None and device != "cpu":
            raise InputError(f"{name}: [model] device = '{device}': an energy minimization ([minimize]) runs on "
                             f"the CPU only; use device = 'cpu' (or --device cpu)")
        check_device_run(device, md.ensemble if md else "", world, name,
                         "--" if settings.lammps else "[model] ")   # a LAMMPS script has no [model] table
    gpus = None   # GPU index per rank (several ranks on the GPU)
    if device != "cpu" and world.size > 1:
        gpus = world.counts_global(bind_rank_gpu(world)[1])
    with world.agreement():  # every rank loads the model; errors are reported once
        from .. import load_model

        if model is None:
            apply_threads(nthreads)
            model = _with_inputs(load_model(settings.model.file, nthreads=nthreads,
                                            precision=settings.model.precision, device=device),
                                 settings.model, settings.model.file, name)
        # (an ensemble always has [model_devi]: load_run_settings)
        devi_precision = settings.model_devi.precision if settings.model_devi else settings.model.precision
        others = [_with_inputs(load_model(f, nthreads=nthreads, precision=devi_precision, device=device),
                               settings.model, f, name)
                  for f in settings.model.deviation_files]
        check_ensemble([model] + others, settings.model.files, f"{name}: [model] file")
        from_file = False   # the start is a checkpoint given as [system] file (not --restart)
        if restart is None and settings.system.file is not None and settings.system.file.is_file() \
                and is_checkpoint(settings.system.file) \
                and continues_run(settings.system.file, settings):
            s = settings.system
            if s.velocities is not None or s.replicate != (1, 1, 1) or s.frame is not None:
                raise InputError(f"{name}: [system] file is a checkpoint, which restores the whole state; "
                                 f"remove velocities, replicate and frame")
            restart = settings.system.file
            from_file = True
    type_map = list(model.type_map)
    restarted = restart is not None

    start = notes = None
    with world.agreement():  # rank 0 opens the start state
        if world.is_root:
            start, notes = read_start(settings, restart, type_map,
                                      md.barostat.coupling if md is not None and md.barostat else None)
    box, pbc, notes, recorded = world.bcast_object(
        (start.light.box, start.light.pbc_flags, notes, start.light.neighbor.get("grid")) if world.is_root else None)
    with world.agreement():
        if settings.parallel.grid is not None:
            grid = check_grid(settings.parallel.grid, world.size, f"{name}: [parallel] grid", pbc)
        elif recorded is not None and int(np.prod(recorded)) == world.size and min(recorded) >= 1:
            # a restart on as many ranks as the run that wrote the checkpoint: its grid, so that the
            # continuation is bit for bit (choose_grid may pick another from a cell a barostat changed)
            grid = tuple(int(g) for g in recorded)
        else:
            grid = choose_grid(world.size, box, pbc)
    domain = Domain(grid, world.rank, periodic=box is not None)
    state = scatter_state(world, domain, start)
    del start
    end_step = settings.end_step
    if settings.minimizing and settings.minimize.anew:   # a new minimization from the start's state and step
        state.minimize = {}
        state.forces = None   # evaluated anew, as LAMMPS' minimize set-up: its fixed_directions may differ
        end_step = state.step + settings.minimize.steps
    if not restarted:
        start_velocities(state, settings, world)
    elif from_file and settings.system.momentum == "zero":   # a new run from a checkpoint's state
        zero_momentum(state.velocities, state.masses, world.sum_global)   # (numdp lmp: velocity all zero linear)

    thermostat = None
    if md is not None and md.thermostat is not None:
        th = md.thermostat
        cls = THERMOSTATS[th.kind]
        temperature = Ramp.of(th.temperature, md.steps)   # ramps run from step 0 to [md] steps (absolute)
        thermostat = (cls(temperature, th.tau, th.chain, world=world, form=th.form) if cls is NoseHooverChain
                      else cls(temperature, th.tau, world=world))
        thermostat.initialize(state)
    barostat = None
    if md is not None and md.barostat is not None:
        b = md.barostat
        if b.kind == MTKBarostat.kind:   # its chain's and mass's kT: the thermostat's target (nph: its own)
            reference = thermostat.temperature if thermostat is not None else Ramp.of(b.temperature)
            barostat = MTKBarostat(Ramp.of(b.pressure, md.steps), b.tau, b.coupling, reference, b.chain, world=world,
                                   form=b.form)
        else:
            barostat = StochasticCellRescaling(Ramp.of(b.pressure, md.steps), b.tau, b.compressibility,
                                               b.coupling, thermostat.temperature, world=world)   # the noise follows the thermostat
        barostat.initialize(state)
    if mini is not None:   # minimizer iterations in the place of the integrator (the CPU only: above)
        integrator = FireMinimizer(mini, world) if mini.style == "fire" else LineSearchMinimizer(mini, world)
        with world.agreement():
            if mini.box is not None:
                BoxRelax(mini.box).check_cell(state, name)
            try:
                integrator.initialize(state)   # a new minimization starts at rest; a restart keeps its state
            except InputError as err:   # a checkpoint of another minimizer
                raise InputError(f"{restart}: {err}") from None
        provider = FixedForces.around(ForceProvider(model, settings.neighbor.skin, world, domain), mini)
        # no bound on a minimization step's move: FIRE's half step back (x -= dt/2 v) is not bounded
        # by dmax, LAMMPS takes it whatever its size, and the provider rebuilds the list whenever an
        # atom moved skin/2, so the forces stay exact (the other checks stand)
        safety = SafetyMonitor(settings.safety.min_distance, math.inf, world)
    elif device == "cpu":
        integrator = VelocityVerlet(md.timestep, thermostat, barostat)
        provider = ForceProvider(model, settings.neighbor.skin, world, domain)
        safety = SafetyMonitor(settings.safety.min_distance, settings.neighbor.skin, world)
    else:  # the step on the GPU (numdp.md.device)
        integrator, provider, safety = device_md(device, state, model, md.timestep, thermostat, settings.neighbor.skin,
                                                 settings.safety.min_distance, world, domain, barostat)

    out = settings.output
    # a restart already at (or past) its end step runs nothing (run_md): it must not open, and so
    # cut back to the checkpoint's step, the trajectory and deviation file it would continue
    idle = restarted and state.step >= end_step
    backups = Backups.none()
    outputs = [out.trajectory, out.log, out.checkpoint, _stop_path(out.checkpoint),
               settings.model_devi.file if settings.model_devi else None]
    with world.agreement():
        if world.is_root:
            prepare_outputs(outputs)  # before any backup: a run that cannot write moves nothing
            if not restarted:  # a new run: keep the previous run's files under numbered names
                backups = Backups.move(outputs + series_files(out.trajectory) + series_files(out.checkpoint)
                                       + series_files(_stop_path(out.checkpoint)))
    # until the first report (Simulation.run) a failure gives them their names back
    with backups:
        console = Console(out.log, resume=restarted, screen=screen, enabled=world.is_root)
        origin = BoxOrigin.of_output(out.box_center, out.box_corner)   # LAMMPS' box corner (None: 0)
        reporters = [MinimizeThermoReporter(out.thermo_every, console, out.thermo_columns, out.thermo_header, world,
                                            origin)
                     if mini is not None
                     else ThermoReporter(out.thermo_every, console, out.thermo_columns, out.thermo_header, world,
                                         origin)]
        writer = None
        with world.agreement():  # rank 0 opens (or continues) the trajectory
            if world.is_root:
                if out.trajectory is not None and not idle:
                    writer = open_trajectory(out.format, out.trajectory, None, None, state.type_map,
                                             out.fields, state.pbc_flags if state.box is not None else False,
                                             out.force_unit, settings.text,
                                             resume_after=state.step if restarted else None,
                                             natoms=state.natoms_global, columns=out.columns,
                                             triclinic=out.triclinic_bounds,
                                             origin=origin)
        trajectory = None
        if out.trajectory is not None and not idle:
            _give_atoms(writer, state, world)
            trajectory = TrajectoryReporter(writer, out.every, out.trajectory, world, out.fields,
                                            end_frame=out.end_frame)
            reporters.append(trajectory)
        devi = settings.model_devi
        if devi is not None and not idle:
            reporters.append(DeviationReporter(provider, others, devi.every, devi.file, devi.atomic, devi.relative,
                                               devi.relative_v, state.step if restarted else None, world))
        checkpoint = CheckpointReporter(out.checkpoint, out.checkpoint_every, settings.text, out.force_unit, world)
        reporters.append(checkpoint)
        sim = Simulation(state, integrator, provider, safety, reporters, console,
                         out.progress if world.is_root else "none", trajectory, checkpoint,
                         _stop_path(out.checkpoint), restarted, backups, continuation)

        counts = world.sum_global(np.bincount(state.types, minlength=len(type_map)).astype(np.float64))
        console.line(f"numdp run {settings.path}: {counted(state.natoms_global, 'atom')} "
                     + ", ".join(f"{type_map[t]} {int(counts[t])}" for t in range(len(type_map)) if counts[t] > 0))
        console.line(f"  model {settings.model.file} (rcut {model.rcut} A"
                     + (", compressed" if getattr(model, "compressed", False) else "")
                     + (f", precision {model.precision}" if hasattr(model, "precision") else "")
                     + (f", device {device}" if device != "cpu" else "")
                     + f"), skin {settings.neighbor.skin} A, "
                     + (_describe_md(md) if md is not None else _describe_minimize(mini)))
        if devi is not None:
            shared = sum(1 for m in others if hasattr(model, "shares_environment") and model.shares_environment(m))
            console.line(f"  model deviation of {len(others) + 1} models every {devi.every} steps to {devi.file}"
                         + (" (per atom)" if devi.atomic else "")
                         + (f", {'model 1' if len(others) == 1 else f'models 1-{len(others)}'} in {devi_precision}"
                            if devi_precision != settings.model.precision else "")
                         + (f"; one environment matrix for {shared + 1} of them" if shared else ""))
        if world.size > 1:
            console.line(f"  {world.size} MPI ranks, grid {describe_grid(grid, box, provider.cutoff)}; "
                         f"{counted(getattr(model, 'nthreads', nthreads), 'thread')} per rank ({thread_source})")
        if gpus is not None:
            console.line(f"  one GPU per rank: rank -> GPU {gpus.tolist()} (node-local rank mod GPUs on the node)")
        if state.box is not None and not all(state.pbc_flags):
            console.line("  mixed boundary conditions: periodic along "
                         + ", ".join("abc"[k] for k in range(3) if state.pbc_flags[k]) + " only")
        if restarted:
            console.line(f"  restarted from {restart} at step {state.step} (time {state.time:.6g} ps)")
        for note in notes + _precision_notes(model, md):
            console.line("  " + note)
        if backups.moved:
            console.line("  " + backups.line())
    return sim, end_step


def _precision_notes(model, md) -> list[str]:
    """What the run line adds about the model's precision: mix16 without tables in a run without a
    thermostat heats (docs/compression.md#energy-conservation)."""
    if (md is None or md.ensemble not in ("nve", "nph") or getattr(model, "precision", None) != "mix16"
            or getattr(model, "compressed", False)):
        return []
    return ["note: mix16 with an uncompressed model does not conserve energy: its half-precision "
            "embedding nets give forces that are no gradient of the energy (water at 1 fs: +0.2 "
            "meV/atom/ps); compress the model or use a thermostat (docs/compression.md#energy-conservation)"]


def _describe_md(md) -> str:
    """The run line's account of [md]."""
    return (f"timestep {md.timestep} ps, ensemble {md.ensemble}"
            + (f", {md.thermostat.kind} thermostat {Ramp.of(md.thermostat.temperature, md.steps).describe('K')} "
               f"tau {md.thermostat.tau} ps" if md.thermostat else "")
            + (f", {md.barostat.kind} barostat {Ramp.of(md.barostat.pressure, md.steps).describe('bar')} "
               f"tau {md.barostat.tau} ps ({md.barostat.coupling})"
               + (f" reference {md.barostat.temperature} K" if md.barostat.temperature is not None else "")
               if md.barostat else ""))


def _describe_minimize(m) -> str:
    """The run line's account of [minimize] (LAMMPS' minimize and min_modify parameters)."""
    if m.style != "fire":
        return (f"minimize {m.style}: steps {m.steps}, ftol {m.ftol:g} eV/A (norm {m.norm.value}), etol {m.etol:g}, "
                f"line {m.line.value}, dmax {m.dmax:g} A, maxeval "
                f"{m.maxeval if m.maxeval is not None else 'none'}; "
                + (BoxRelax(m.box).describe() if m.box is not None else "the box is fixed")
                + (f"; forces zero along {', '.join(m.fixed_directions)}" if m.fixed_directions else ""))
    return (f"minimize {m.style}: steps {m.steps}, ftol {m.ftol:g} eV/A (norm {m.norm.value}), etol {m.etol:g}, "
            f"timestep {m.timestep:g} ps, dmax {m.dmax:g} A, tmax {m.tmax:g}, tmin {m.tmin:g}, delaystep "
            f"{m.delaystep}, dtgrow {m.dtgrow:g}, dtshrink {m.dtshrink:g}, alpha0 {m.alpha0:g}, alphashrink "
            f"{m.alphashrink:g}, integrator {m.integrator}, halfstepback {'yes' if m.halfstepback else 'no'}, "
            f"initialdelay {'yes' if m.initialdelay else 'no'}, vdfmax {m.vdfmax}; the box is fixed"
            + (f"; forces zero along {', '.join(m.fixed_directions)}" if m.fixed_directions else ""))


def run_md(settings: RunSettings, restart=None, model=None, screen=None,
           world: World | None = None, continuation: Continuation | None = None) -> RunResult | None:
    """Build and run (arguments as `build_simulation`); returns the RunResult (None when the
    checkpoint is already at [md] steps).  Collective on several ranks."""
    sim, end = build_simulation(settings, restart, model, screen, world, continuation)
    if sim.state.step >= end and not (sim.state.step == end == 0 and not sim.restarted):
        table = "minimize" if settings.minimizing else "md"
        sim.console.line(f"nothing to run: the state is at step {sim.state.step}, [{table}] steps = {end}")
        sim.close()
        return None
    return run_or_raise(sim, end)
