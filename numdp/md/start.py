"""The start state of a run: a checkpoint or the [system] structure, as an `AtomSource`.

A checkpoint continues the run that wrote it (MD or an energy minimization, numdp.md.minimize)
only with an input of the same kind; given as [system] file to the other kind it is a start
structure (its H5MD frame, read by numdp.io.structure like any H5MD file): MD starts from a
minimization's final checkpoint at step 0 with its (zero) velocities.

Rank 0 of a run reads the start and hands its atoms to the ranks block by block
(numdp.parallel.distribute.scatter_state), so that no rank ever holds the whole system: a
checkpoint's per-atom datasets are read slice by slice (numdp.io.h5md.CheckpointAtoms), and a
replicated structure is generated block by block from its base cell (`ReplicatedAtoms`: rank 0
holds the base cell, not the replicas).  For triclinic NPT a general cell is rotated to lower-
triangular form block by block too (`RotatedAtoms`).  Velocities are drawn after the atoms
reached their ranks (`start_velocities`), keyed by atom id.
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from ..config import RunSettings
from ..errors import InputError
from ..geometry import check_box, check_positions
from ..io.h5md import CheckpointAtoms
from ..io.structure import assign_types, read_structure, replica_shifts
from ..lattice import lattice_structure
from ..kernels.cpu.rng import STREAM_VELOCITY_INIT, normals
from ..neighbor.extended import complete_cell
from ..parallel.world import World
from ..system import (AtomSource, State, atom_arrays, kinetic_energy, temperature, whole_state, without_atoms,
                      zero_momentum)
from ..units import KB, MVV2E, standard_mass
from .barostat import is_lower_triangular, lower_triangular_rotation
from .minimize import FIRE_STATE


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


def start_velocities(state: State, settings: RunSettings, world: World | None = None) -> None:
    """[system] velocities (Maxwell-Boltzmann) if asked for, then zero total momentum, unless
    [system] momentum = "keep" (numdp lmp: LAMMPS keeps a data file's velocities as they are; drawn
    velocities have none anyway).  Collective."""
    world = world if world is not None else World(None)
    v = settings.system.velocities
    if v is not None:
        maxwell_boltzmann(state, v.temperature, v.seed, world)
    if settings.system.momentum != "keep":
        zero_momentum(state.velocities, state.masses, world.sum_global)


def _masses(settings: RunSettings, types: np.ndarray, type_map: list[str], file_masses,
            source: str = "the structure file") -> np.ndarray:
    """(N,) amu: [system] masses override, else the masses in the file (`source` names it in the
    message when one is not a positive number), else standard masses."""
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
            given = np.asarray(file_masses, dtype=np.float64)[mask]
            bad = np.flatnonzero(~(np.isfinite(given) & (given > 0.0)))
            if bad.size:
                atom = int(np.flatnonzero(mask)[bad[0]])
                raise InputError(f"{source}: atom {atom} ({element}) has the mass {float(given[bad[0]])!r}; a mass must be "
                                 f"a positive number (amu), or set it with [system] masses.{element}")
            out[mask] = given
        else:
            out[mask] = standard_mass(element, where)
    return out


class ReplicatedAtoms:
    """The `AtomSource` of a cell tiled by replicas: atom r * n + i (replica r, atom i of the n
    atoms of `base`, ids 0 .. n - 1) at base.positions[i] + shifts[r], with atom i's other arrays;
    the same numbers as numdp.io.structure.replicate, made a block at a time.

    base: the State of one cell; shifts (R, 3) Å, or None for one replica (the base as it is);
    box: the tiled cell (3, 3) Å or None."""

    def __init__(self, base: State, shifts: np.ndarray | None, box: np.ndarray | None):
        self.base = base
        self.shifts = shifts
        self.natoms = base.natoms * (1 if shifts is None else len(shifts))
        self.light = without_atoms(base)
        self.light.box = box
        self.light.natoms_global = self.natoms

    def blocks(self, block: int, names: tuple[str, ...] | None = None) -> Iterator[dict[str, np.ndarray]]:
        base = atom_arrays(self.base)
        names = tuple(base) if names is None else names
        n = self.base.natoms
        for start in range(0, self.natoms, max(1, int(block))):
            ids = np.arange(start, min(start + block, self.natoms), dtype=np.int64)
            replica, i = np.divmod(ids, n)
            out = {}
            for name in names:
                if name == "ids":
                    out[name] = ids
                elif name == "positions" and self.shifts is not None:
                    out[name] = base[name][i] + self.shifts[replica]
                else:
                    out[name] = base[name][i]
            yield out


def rotate_rows(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    """x @ q for rows x (n, 3) and q (3, 3), element by element (each row's result does not depend
    on the other rows, as a BLAS product's may at the edges of its blocks)."""
    return x[:, 0:1] * q[0] + x[:, 1:2] * q[1] + x[:, 2:3] * q[2]


ROTATED = ("positions", "velocities", "forces")
"""Per-atom arrays that `RotatedAtoms` rotates (vectors of the atoms; the neighbour record keeps
the frame it was built in, with its own box, as ownership only needs fractional coordinates)."""


class RotatedAtoms:
    """`source` with its cell, vectors and virial rotated by the orthogonal q (x -> x q)."""

    def __init__(self, source: AtomSource, q: np.ndarray):
        self.source = source
        self.q = np.asarray(q, dtype=np.float64)
        self.natoms = source.natoms
        light = without_atoms(source.light)
        light.box = light.box @ self.q
        if light.virial is not None:
            light.virial = self.q.T @ light.virial @ self.q
        self.light = light

    def blocks(self, block: int, names: tuple[str, ...] | None = None) -> Iterator[dict[str, np.ndarray]]:
        for arrays in self.source.blocks(block, names):
            yield {k: rotate_rows(a, self.q) if k in ROTATED else a for k, a in arrays.items()}


def structure_atoms(settings: RunSettings, type_map: list[str]) -> ReplicatedAtoms:
    """The [system] structure with its replicas, types and masses (velocities from the file or
    zero; [system] velocities are drawn later, `start_velocities`)."""
    s = settings.system
    if s.lattice is not None:
        structure = lattice_structure(s.lattice, f"{settings.path.name}: [system] lattice")
    else:
        structure = read_structure(s.file, s.frame)
    if s.pbc is not None:  # the key overrides what the file says
        if structure.box is None and any(s.pbc):
            raise InputError(f"{settings.path.name}: [system] pbc: {list(s.pbc)} asks for periodic directions "
                             f"but {structure.source} has no cell")
        structure.pbc = tuple(s.pbc)
    if structure.pbc is not None:
        if not any(structure.pbc):
            structure.box = None     # periodic along no vector: an open cluster
        elif all(structure.pbc):
            structure.pbc = None
        else:   # a zero-length non-periodic cell vector (a 2D cell) gets a unit length
            structure.box = complete_cell(structure.box, structure.pbc)
    if structure.box is not None:   # messages name the file (the readers check what they can name by line)
        check_box(structure.box, str(structure.source))
    check_positions(structure.positions, f"{structure.source}: positions")
    shifts, box = replica_shifts(structure, s.replicate, s.replicate_order)
    if settings.lammps:   # numdp lmp: pair_coeff's elements became [system] type_names
        types = assign_types(structure, type_map, s.type_names, f"{settings.path.name}:", "pair_coeff",
                             "pair_coeff * * ELEMENT ..., one element per atom type")
    else:
        types = assign_types(structure, type_map, s.type_names, f"{settings.path.name}: [system]")
    masses = _masses(settings, types, type_map, structure.masses, str(structure.source))
    n = structure.natoms
    velocities = np.zeros((n, 3))
    if structure.velocities is not None and s.velocities is None:
        velocities = np.ascontiguousarray(structure.velocities, dtype=np.float64)
    base = State(positions=np.ascontiguousarray(structure.positions, dtype=np.float64),
                 velocities=velocities, types=types, masses=masses,
                 box=None if structure.box is None else np.ascontiguousarray(structure.box, dtype=np.float64),
                 type_map=list(type_map), ids=np.arange(n, dtype=np.int64), seed=settings.seed,
                 pbc=structure.pbc)
    return ReplicatedAtoms(base, None if len(shifts) == 1 else shifts,
                           None if box is None else np.ascontiguousarray(box, dtype=np.float64))


def state_from_structure(settings: RunSettings, type_map: list[str], draw_velocities: bool = True) -> State:
    """The whole start State from [system]: structure file, replicas, types, masses, velocities
    (draw_velocities=False leaves [system] velocities to the caller: `start_velocities`)."""
    state = whole_state(structure_atoms(settings, type_map))
    if draw_velocities:
        start_velocities(state, settings)
    return state


def continues_run(path, settings: RunSettings) -> bool:
    """Whether the numdp checkpoint `path` holds the state of a run that `settings` continues: an
    MD run's for [md], for [minimize] a minimization by the same minimizer (FIRE's state for style
    "fire", a line search's for "cg" / "sd"), or with [minimize] anew by any minimizer (its state
    and step; setup drops the minimizer's own variables).  Otherwise it is a start structure (its
    frame)."""
    kept = CheckpointAtoms(path).light.minimize
    if settings.minimizing and settings.minimize.anew:   # any minimizer's: its state and step, a new minimizer
        return bool(kept)
    if not settings.minimizing or not kept:
        return not settings.minimizing and not kept
    return all(key in kept for key in FIRE_STATE) == (settings.minimize.style == "fire")


def read_start(settings: RunSettings, restart, type_map: list[str],
               barostat_coupling: str | None) -> tuple[AtomSource, list[str]]:
    """The start state (rank 0 only) and notes for the log: a checkpoint or the [system]
    structure (velocities not drawn yet), rotated to a lower-triangular cell for triclinic NPT."""
    name = settings.path.name
    source: AtomSource
    if restart is not None:
        source = CheckpointAtoms(restart)
        if source.light.type_map != type_map:
            raise InputError(f"{restart}: the checkpoint's type_map {source.light.type_map} differs from the "
                             f"model's {type_map}")
        if bool(source.light.minimize) != settings.minimizing:   # continue only a run of the same kind
            if source.light.minimize:
                raise InputError(f"{restart}: an energy minimization's checkpoint, which only a [minimize] input "
                                 f"continues; to start MD from its structure, give it as [system] file")
            raise InputError(f"{restart}: an MD checkpoint, which only an [md] input continues; to minimize "
                             f"its structure, give it as [system] file")
    else:
        source = structure_atoms(settings, type_map)
    notes = []
    if restart is not None and settings.system.masses:
        notes.append(f"[system] masses is not applied on a restart: the atoms keep the checkpoint's masses "
                     f"({restart})")
    light = source.light
    if barostat_coupling is not None:
        ensemble = settings.md.ensemble if settings.md is not None else "npt"   # 'npt' or 'nph'
        if light.box is None:
            raise InputError(f"{name}: [md] ensemble = '{ensemble}' needs a periodic cell; "
                             f"{settings.system.file or '[system] lattice'} has none")
        if not all(light.pbc_flags):
            raise InputError(f"{name}: [md] ensemble = '{ensemble}' needs a cell periodic along all three vectors; "
                             f"the system has pbc {list(light.pbc_flags)} (use 'nvt' or 'nve' for a slab)")
        if barostat_coupling == "triclinic" and not is_lower_triangular(light.box):
            source = RotatedAtoms(source, lower_triangular_rotation(light.box))
            notes.append("the cell was rotated to lower-triangular form (a along x, b in the xy plane) "
                         "for triclinic coupling")
    return source, notes
