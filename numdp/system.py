"""The MD state: everything needed to continue a run bit for bit.

`State` holds the atoms (positions, velocities, types, masses, global ids), the cell, the step
counter, the forces/virial/energy of the current positions (so that a restart needs no force
call and repeats the uninterrupted run exactly), the variables of the thermostat and barostat,
and the seed of the counter-based random numbers (whose other keys are the step and the global
atom id, so the seed is the whole RNG state).  `to_arrays` / `from_arrays` turn it into a flat
dict of NumPy arrays for checkpoints.

Units: Å, Å/ps, amu, eV, eV/Å, ps.  Positions are *unwrapped* (continuous in time).
"""
from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .errors import InputError
from .units import KB, MVV2E

# Version of the state arrays of a checkpoint (/numdp/state), raised whenever an older numdp would
# misread a newer file.  1: the original layout (periodic along all three cell vectors whenever
# there is a box); 2: adds `pbc` (mixed boundary conditions), which a version-1 reader would
# ignore and so run a slab as a periodic crystal.  Version-1 files are still read (no `pbc`:
# periodic with a box, as they were written).
STATE_FORMAT_VERSION = 2


@dataclass
class State:
    """Dynamic state of an MD run.

    positions: (N, 3) float64 Å, unwrapped.
    velocities: (N, 3) float64 Å/ps.
    types: (N,) int32 index into `type_map`.
    masses: (N,) float64 amu.
    box: (3, 3) float64 Å, rows = cell vectors, or None (non-periodic).
    type_map: element name of each type index.
    ids: (N,) int64 global atom ids (keys of the per-atom random numbers).
    step: number of completed timesteps since the start of the original run.
    time: simulated time, ps.
    seed: seed of the counter-based random numbers.
    forces: (N, 3) eV/Å at `positions`, or None before the first force call.
    virial: (3, 3) eV at `positions` (DeePMD-kit sign), or None.
    potential_energy: eV at `positions` (nan before the first force call).
    thermostat: named float64 arrays of the thermostat (e.g. chain positions and velocities).
    barostat: named float64 arrays of the barostat.
    neighbor: the configuration of the last neighbour-list build ("positions" (N, 3), "box",
        "cutoff"): forces depend on it at the round-off level, so a bit-exact restart needs it.
    minimize: named float64 arrays of an energy minimization's FIRE state (numdp.md.minimize:
        its timestep, mixing factor, counters and start values), empty for MD: a checkpoint that
        has them is a minimization's, which `numdp run --restart` continues.
    pbc: periodicity along each cell vector (mixed boundary conditions, e.g. a slab (True, True,
        False)), or None: periodic along all three with a box (`pbc_flags` gives the flags).
    natoms_global: atoms of the whole system.  In a run on several MPI ranks each rank's State
        holds the atoms it owns (N of them, sorted by id) and the global scalars (step, box,
        thermostat, ...) identical on every rank; 0 at construction means "all atoms are here".
    """

    positions: np.ndarray
    velocities: np.ndarray
    types: np.ndarray
    masses: np.ndarray
    box: np.ndarray | None
    type_map: list[str]
    ids: np.ndarray
    step: int = 0
    time: float = 0.0
    seed: int = 0
    forces: np.ndarray | None = None
    virial: np.ndarray | None = None
    potential_energy: float = float("nan")
    thermostat: dict[str, np.ndarray] = field(default_factory=dict)
    barostat: dict[str, np.ndarray] = field(default_factory=dict)
    neighbor: dict[str, np.ndarray] = field(default_factory=dict)
    minimize: dict[str, np.ndarray] = field(default_factory=dict)
    natoms_global: int = 0
    pbc: tuple[bool, bool, bool] | None = None

    def __post_init__(self):
        if self.natoms_global <= 0:
            self.natoms_global = int(self.positions.shape[0])

    @property
    def pbc_flags(self) -> tuple[bool, bool, bool]:
        """Periodicity along the three cell vectors: `pbc`, or all True with a box and all False
        without one when `pbc` is None."""
        if self.pbc is None:
            return (self.box is not None,) * 3
        return tuple(bool(p) for p in self.pbc)

    @property
    def natoms(self) -> int:
        """Atoms held in this State (on several ranks: the atoms this rank owns)."""
        return int(self.positions.shape[0])

    @property
    def periodic(self) -> bool:
        return self.box is not None

    @property
    def volume(self) -> float:
        """|det(box)|, Å³ (nan without a box)."""
        return abs(float(np.linalg.det(self.box))) if self.box is not None else float("nan")

    @property
    def dof(self) -> int:
        """Degrees of freedom N_f = 3N - 3 of the whole system (the total momentum is held at zero)."""
        return max(3 * self.natoms_global - 3, 1)


def kinetic_energy(velocities: np.ndarray, masses: np.ndarray) -> float:
    """K = 0.5 Σ m v², eV, for velocities (N, 3) Å/ps and masses (N,) amu."""
    return 0.5 * MVV2E * float(np.einsum("i,ij,ij->", masses, velocities, velocities))


def kinetic_tensor(velocities: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Σ m v ⊗ v, (3, 3) eV (twice the kinetic energy tensor)."""
    mv = velocities * (masses * MVV2E)[:, None]
    return mv.T @ velocities


def temperature(kinetic: float, dof: int) -> float:
    """Instantaneous temperature 2K / (N_f kB), K."""
    return 2.0 * kinetic / (dof * KB)


def pressure_tensor(velocities, masses, virial, volume) -> np.ndarray:
    """Instantaneous pressure tensor (Σ m v⊗v + virial) / V, (3, 3) eV/Å³."""
    return (kinetic_tensor(velocities, masses) + virial) / volume


def pressure(kinetic: float, virial: np.ndarray, volume: float) -> float:
    """Scalar pressure (2K + tr virial) / (3V), eV/Å³."""
    return (2.0 * kinetic + float(np.trace(virial))) / (3.0 * volume)


def _local(value):
    return value


def zero_momentum(velocities: np.ndarray, masses: np.ndarray, sum_global=_local) -> None:
    """Subtract the centre-of-mass velocity in place so that Σ m v = 0.

    sum_global: sums a float64 array over MPI ranks (numdp.parallel.world.World.sum_global) when
    the atoms are spread over ranks; the default sums this rank's atoms only."""
    total = sum_global(np.append(masses @ velocities, masses.sum()))
    velocities -= total[:3] / total[3]


# -- per-atom arrays -------------------------------------------------------------------------------

def atom_arrays(state: State) -> dict[str, np.ndarray]:
    """Every per-atom array of the state by name (first axis = atom): positions, velocities,
    types, masses, ids, and forces, "neighbor/positions" and a minimizer's per-atom arrays
    ("minimize/direction", ...: MINIMIZE_ATOM_ARRAYS) when present.  Moving these moves atoms."""
    out = {name: getattr(state, name) for name in _ARRAYS}
    if state.forces is not None:
        out["forces"] = state.forces
    ref = state.neighbor.get("positions")
    if ref is not None and ref.shape == state.positions.shape:
        out["neighbor/positions"] = ref
    for key in MINIMIZE_ATOM_ARRAYS:
        if key in state.minimize:
            out[f"minimize/{key}"] = state.minimize[key]
    return out


def set_atom_arrays(state: State, arrays: dict[str, np.ndarray]) -> None:
    """Replace the per-atom arrays of `state` by `arrays` (keys as returned by atom_arrays)."""
    for name in _ARRAYS:
        setattr(state, name, arrays[name])
    state.forces = arrays.get("forces")
    if "neighbor/positions" in arrays:
        state.neighbor["positions"] = arrays["neighbor/positions"]
    for key in MINIMIZE_ATOM_ARRAYS:
        if f"minimize/{key}" in arrays:
            state.minimize[key] = arrays[f"minimize/{key}"]
        else:
            state.minimize.pop(key, None)


MINIMIZE_ATOM_ARRAYS = ("direction", "start", "start_forces")
"""The per-atom (N, 3) arrays a line-search minimization keeps in `State.minimize` beside its
scalars (numdp.md.linesearch): the search direction (eV/Å; between iterations, so a checkpoint
carries it) and, during an iteration, its start positions (Å) and forces there (eV/Å)."""

ATOM_DTYPES = {"positions": np.float64, "velocities": np.float64, "types": np.int32, "masses": np.float64,
               "ids": np.int64, "forces": np.float64, "neighbor/positions": np.float64,
               **{f"minimize/{key}": np.float64 for key in MINIMIZE_ATOM_ARRAYS}}
"""The dtype of each per-atom array a State may carry (keys as returned by atom_arrays)."""


def without_atoms(state: State) -> State:
    """A copy of `state`'s global fields whose per-atom arrays (those of atom_arrays) have no rows;
    `set_atom_arrays` fills them in.  Small: for broadcasting, and the `light` of an AtomSource."""
    light = copy.copy(state)
    light.neighbor = dict(state.neighbor)
    light.minimize = dict(state.minimize)
    empty = {name: np.asarray(a)[:0] for name, a in atom_arrays(state).items()}
    light.neighbor.pop("positions", None)
    set_atom_arrays(light, empty)
    light.thermostat = dict(state.thermostat)
    light.barostat = dict(state.barostat)
    light.natoms_global = state.natoms_global
    return light


class AtomSource(Protocol):
    """A whole system's start state, its atoms handed out block by block (rank 0 of a run reads a
    checkpoint or builds replicas this way, so that it never holds the whole system).

    light: the global fields (box, step, thermostat, ...), with per-atom arrays of no rows whose
    names, dtypes and trailing shapes are those of the blocks (`atom_arrays(light)`);
    natoms: atoms of the system; blocks(block, names): the per-atom arrays of atoms
    start .. start + n - 1 of the source's order (n <= block), every array or only `names`."""

    light: State
    natoms: int

    def blocks(self, block: int, names: tuple[str, ...] | None = None) -> Iterator[dict[str, np.ndarray]]: ...


def whole_state(source: AtomSource, block: int = 1 << 20) -> State:
    """The State of every atom of `source`, in the source's order (its arrays concatenated)."""
    state = copy.copy(source.light)   # not without_atoms: a stale neighbour record of another length stays
    state.neighbor = dict(source.light.neighbor)
    state.thermostat = dict(source.light.thermostat)
    state.barostat = dict(source.light.barostat)
    state.minimize = dict(source.light.minimize)
    n = int(source.natoms)
    whole = {name: np.empty((n, *a.shape[1:]), dtype=a.dtype) for name, a in atom_arrays(source.light).items()}
    start = 0
    for arrays in source.blocks(block):
        stop = start + len(arrays["positions"])
        for name, a in arrays.items():
            whole[name][start:stop] = a
        start = stop
    if start != n:
        raise RuntimeError(f"an atom source of {n} atoms handed out {start} (a bug)")
    set_atom_arrays(state, whole)
    state.natoms_global = n
    return state


# -- serialisation ------------------------------------------------------------------------------

_ARRAYS = ("positions", "velocities", "types", "masses", "ids")
GROUPS = ("thermostat", "barostat", "neighbor", "minimize")
"""The State's groups of named arrays, stored as "group/name" by `to_arrays`."""


def to_arrays(state: State) -> dict[str, np.ndarray]:
    """Flat dict of arrays (keys like "positions", "thermostat/xi") holding the whole State."""
    out: dict[str, np.ndarray] = {name: np.asarray(getattr(state, name)) for name in _ARRAYS}
    out["format_version"] = np.int64(STATE_FORMAT_VERSION)
    out["type_map"] = np.array(state.type_map, dtype=object)
    out["step"] = np.int64(state.step)
    out["time"] = np.float64(state.time)
    out["seed"] = np.int64(state.seed)
    out["potential_energy"] = np.float64(state.potential_energy)
    if state.box is not None:
        out["box"] = np.asarray(state.box)
    if state.forces is not None:
        out["forces"] = np.asarray(state.forces)
    if state.virial is not None:
        out["virial"] = np.asarray(state.virial)
    for group in GROUPS:
        for key, value in getattr(state, group).items():
            out[f"{group}/{key}"] = np.asarray(value)
    if state.pbc is not None:
        out["pbc"] = np.array(state.pbc, dtype=np.int8)
    return out


def from_arrays(arrays: dict[str, np.ndarray], what: str = "checkpoint") -> State:
    """Inverse of `to_arrays`; raises InputError naming `what` when a required array is missing."""
    missing = [k for k in (*_ARRAYS, "type_map", "step", "time", "seed") if k not in arrays]
    if missing:
        raise InputError(f"{what}: not a numdp MD state (missing {', '.join(missing)})")
    version = int(arrays.get("format_version", 1))
    if version > STATE_FORMAT_VERSION:
        raise InputError(f"{what}: state format version {version} is newer than this numdp supports "
                         f"({STATE_FORMAT_VERSION})")

    def f64(name):
        return np.ascontiguousarray(arrays[name], dtype=np.float64)

    def atom(name):   # a per-atom array in its State dtype
        return np.ascontiguousarray(arrays[name], dtype=ATOM_DTYPES[name])

    type_map = [t.decode() if isinstance(t, bytes) else str(t) for t in np.asarray(arrays["type_map"]).tolist()]
    groups: dict[str, dict[str, np.ndarray]] = {group: {} for group in GROUPS}
    for key, value in arrays.items():
        head, _, tail = key.partition("/")
        if head in groups and tail:
            groups[head][tail] = np.array(value, dtype=np.float64)
    return State(
        positions=atom("positions"),
        velocities=atom("velocities"),
        types=atom("types"),
        masses=atom("masses"),
        box=f64("box") if "box" in arrays else None,
        type_map=type_map,
        ids=atom("ids"),
        step=int(arrays["step"]),
        time=float(arrays["time"]),
        seed=int(arrays["seed"]),
        forces=atom("forces") if "forces" in arrays else None,
        virial=f64("virial") if "virial" in arrays else None,
        potential_energy=float(arrays.get("potential_energy", np.nan)),
        thermostat=groups["thermostat"],
        barostat=groups["barostat"],
        neighbor=groups["neighbor"],
        minimize=groups["minimize"],
        pbc=tuple(bool(p) for p in np.asarray(arrays["pbc"]).tolist()) if "pbc" in arrays else None,
    )
