"""Build a ready-to-run `Simulation` from validated settings (numdp.config.RunSettings).

Order: model -> state (start structure or checkpoint) -> thermostat / barostat -> integrator ->
force provider -> safety -> outputs.  Restart: a checkpoint given as `restart` (command line
`--restart`) or as [system] file restores the whole State, and the run continues up to step
[md] steps; the trajectory and the log are continued (trajectory frames after the checkpoint's
step are dropped first), so the result is bit for bit that of an uninterrupted run.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..config import RunSettings
from ..errors import InputError
from ..io.h5md import H5MDWriter, is_checkpoint, read_checkpoint
from ..io.structure import assign_types, read_structure, replicate
from ..system import State, kinetic_energy, temperature, zero_momentum
from ..units import KB, MVV2E, standard_mass
from .barostat import StochasticCellRescaling, is_lower_triangular, lower_triangular_rotation
from .forces import ForceProvider
from .integrator import VelocityVerlet
from .loop import RunResult, Simulation, run_or_raise
from .reporters import CheckpointReporter, Console, ThermoReporter, TrajectoryReporter
from .rng import STREAM_VELOCITY_INIT, normals
from .safety import SafetyMonitor
from .thermostats import THERMOSTATS


def maxwell_boltzmann(state: State, temperature_k: float, seed: int) -> None:
    """Velocities from the Maxwell-Boltzmann distribution at `temperature_k` (K), zero total
    momentum, then scaled so that the instantaneous temperature (N_f = 3N - 3) is exactly the target.
    Random numbers keyed by (seed, atom id), so the result does not depend on the atom order."""
    g = normals(seed, 0, STREAM_VELOCITY_INIT, state.ids, 3)
    state.velocities = g * np.sqrt(KB * temperature_k / (state.masses * MVV2E))[:, None]
    zero_momentum(state.velocities, state.masses)
    t = temperature(kinetic_energy(state.velocities, state.masses), state.dof)
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


def state_from_structure(settings: RunSettings, type_map: list[str]) -> State:
    """The start State from [system]: structure file, replicas, types, masses, velocities."""
    s = settings.system
    structure = replicate(read_structure(s.file, s.frame), s.replicate)
    types = assign_types(structure, type_map, s.type_names, f"{settings.path.name}: [system]")
    masses = _masses(settings, types, type_map, structure.masses)
    n = structure.natoms
    state = State(positions=np.ascontiguousarray(structure.positions, dtype=np.float64),
                  velocities=np.zeros((n, 3)), types=types, masses=masses,
                  box=None if structure.box is None else np.ascontiguousarray(structure.box, dtype=np.float64),
                  type_map=list(type_map), ids=np.arange(n, dtype=np.int64), seed=settings.md.seed)
    if s.velocities is not None:
        maxwell_boltzmann(state, s.velocities.temperature, s.velocities.seed)
    elif structure.velocities is not None:
        state.velocities = np.ascontiguousarray(structure.velocities, dtype=np.float64)
    zero_momentum(state.velocities, state.masses)
    return state


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


def build_simulation(settings: RunSettings, restart=None, model=None, screen=None) -> tuple[Simulation, int]:
    """(Simulation, end step) for `settings`; `restart`: checkpoint path or None; `model`: use
    this potential instead of loading [model] file (tests)."""
    name = settings.path.name
    if model is None:
        from .. import load_model

        model = load_model(settings.model.file, nthreads=settings.model.threads,
                           precision=settings.model.precision)
    type_map = list(model.type_map)
    md = settings.md

    if restart is None and settings.system.file.is_file() and is_checkpoint(settings.system.file):
        s = settings.system
        if s.velocities is not None or s.replicate != (1, 1, 1) or s.frame is not None:
            raise InputError(f"{name}: [system] file is a checkpoint, which restores the whole state; "
                             f"remove velocities, replicate and frame")
        restart = settings.system.file
    if restart is not None:
        state = read_checkpoint(restart)
        if state.type_map != type_map:
            raise InputError(f"{restart}: the checkpoint's type_map {state.type_map} differs from the "
                             f"model's {type_map}")
    else:
        state = state_from_structure(settings, type_map)
    restarted = restart is not None

    thermostat = None
    if md.thermostat is not None:
        th = md.thermostat
        cls = THERMOSTATS[th.kind]
        thermostat = cls(th.temperature, th.tau, th.chain) if th.kind == "nose-hoover" else cls(th.temperature, th.tau)
        thermostat.initialize(state)
    barostat = None
    notes = []
    if md.barostat is not None:
        if state.box is None:
            raise InputError(f"{name}: [md] ensemble = 'npt' needs a periodic cell; {settings.system.file} has none")
        b = md.barostat
        if b.coupling == "triclinic" and not is_lower_triangular(state.box):
            rotate_state(state, lower_triangular_rotation(state.box))
            notes.append("the cell was rotated to lower-triangular form (a along x, b in the xy plane) "
                         "for triclinic coupling")
        barostat = StochasticCellRescaling(b.pressure, b.tau, b.compressibility, b.coupling, md.thermostat.temperature)
        barostat.initialize(state)
    integrator = VelocityVerlet(md.timestep, thermostat, barostat)
    provider = ForceProvider(model, settings.neighbor.skin)
    safety = SafetyMonitor(settings.safety.min_distance, settings.neighbor.skin)

    out = settings.output
    for path in (out.log, out.trajectory, out.checkpoint):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
    console = Console(out.log, resume=restarted, screen=screen)
    reporters = [ThermoReporter(out.thermo_every, console)]
    trajectory = None
    if out.trajectory is not None:
        writer = H5MDWriter(out.trajectory, state.types, state.masses, state.type_map, out.fields,
                            state.box is not None, out.force_unit, settings.text,
                            resume_after=state.step if restarted else None)
        trajectory = TrajectoryReporter(writer, out.every)
        reporters.append(trajectory)
    checkpoint = CheckpointReporter(out.checkpoint, out.checkpoint_every, settings.text, out.force_unit)
    reporters.append(checkpoint)
    sim = Simulation(state, integrator, provider, safety, reporters, console, out.progress, trajectory,
                     checkpoint, _stop_path(out.checkpoint), restarted)

    console.line(f"numdp run {settings.path}: {state.natoms} atoms "
                 + ", ".join(f"{type_map[t]} {int(np.sum(state.types == t))}" for t in range(len(type_map))
                             if np.any(state.types == t)))
    console.line(f"  model {settings.model.file} (rcut {model.rcut} A), skin {settings.neighbor.skin} A, "
                 f"timestep {md.timestep} ps, ensemble {md.ensemble}"
                 + (f", {md.thermostat.kind} thermostat {md.thermostat.temperature} K tau {md.thermostat.tau} ps"
                    if md.thermostat else "")
                 + (f", c-rescale barostat {md.barostat.pressure} bar tau {md.barostat.tau} ps "
                    f"({md.barostat.coupling})" if md.barostat else ""))
    if restarted:
        console.line(f"  restarted from {restart} at step {state.step} (time {state.time:.6g} ps)")
    for note in notes:
        console.line("  " + note)
    return sim, md.steps


def run_md(settings: RunSettings, restart=None, model=None, screen=None) -> RunResult | None:
    """Build and run; returns the RunResult (None when the checkpoint is already at [md] steps)."""
    sim, end = build_simulation(settings, restart, model, screen)
    if sim.state.step >= end:
        sim.console.line(f"nothing to run: the state is at step {sim.state.step}, [md] steps = {end}")
        sim.close()
        return None
    return run_or_raise(sim, end)
