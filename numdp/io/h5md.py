"""H5MD 1.1 trajectories and numdp checkpoints.

Layout written by `H5MDWriter` (H5MD 1.1, https://www.nongnu.org/h5md/h5md.html)::

    /h5md                       attrs version = [1, 1]
        author/                 attrs name
        creator/                attrs name = "numdp", version
    /particles/trajectory/
        species                 (N,) int32 model type index of each atom (time-independent)
        mass                    (N,) float64 amu (time-independent)
        box/                    attrs dimension = 3, boundary = ["periodic"] * 3 (or "none")
            edges/              step (T,) int64, time (T,) float64 [ps], value (T, 3, 3) [Angstrom]
        position/               step, time, value (T, N, 3) [Angstrom], unwrapped
        velocity/               step, time, value (T, N, 3) [Angstrom ps-1]
        force/                  step, time, value (T, N, 3) [kJ mol-1 Angstrom-1 or eV Angstrom-1]
    /observables/
        potential_energy, kinetic_energy, total_energy, conserved_energy [eV], temperature [K],
        pressure [bar], volume [Angstrom3]:      step, time, value (T,)
                                (volume only with a cell periodic along a, b and c)
        virial [eV]             step, time, value (T, 3, 3): W, DeePMD-kit's sign (P = (Σ m v vᵀ + W) / V)
        pressure_tensor [bar]   step, time, value (T, 3, 3): (Σ m v vᵀ + W) / V in the frame of the
                                positions (nan without a cell periodic along a, b and c)
    /parameters/numdp           attrs type_map, input (the TOML text of the run)

All time-dependent elements are sampled at the same steps and share one `step` and one `time`
dataset (hard links, allowed by H5MD).  The group is named "trajectory" because MDAnalysis looks
for that name when it builds a topology from the file alone, and forces default to kJ mol-1
Angstrom-1 because MDAnalysis rejects force units it does not know (eV Angstrom-1 is one of them).

A frame is written in the order step/time, observables, box, velocity, force (then the file is
flushed), position (flushed again), so a run killed at any moment (kill -9) leaves a file whose
other elements hold at least the frames of `position/value`; a second SIGINT / SIGTERM waits for
the frame in progress (numdp.signals.whole_write), so every element then holds the same frames.

A checkpoint (`write_checkpoint`) is a one-frame H5MD file of the same layout plus `/numdp/state`,
the whole `numdp.system.State` as datasets (bit-exact float64).  It is written atomically
(numdp.io.atomic: unique temporary name in the same directory, fsync, rename, fsync of the
directory), so a crash or a failed write never leaves a half-written checkpoint or a temporary.
"""
from __future__ import annotations

import getpass
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import h5py
import numpy as np

from ..errors import InputError, one_line
from ..system import ATOM_DTYPES, State, atom_arrays, from_arrays, to_arrays, whole_state
from ..units import EV_TO_KJ_PER_MOL
from ..signals import whole_write
from .atomic import atomic_path, cannot_write, special_target
from .trajectory import FIELD_ARRAYS, Frame, whole_frame

H5MD_VERSION = (1, 1)
GROUP = "trajectory"
FIELDS = ("position", "velocity", "force")
FIELD_UNITS = {"position": "Angstrom", "velocity": "Angstrom ps-1"}
FORCE_UNITS = {"kJ mol-1 Angstrom-1": EV_TO_KJ_PER_MOL, "eV Angstrom-1": 1.0}
DEFAULT_FORCE_UNIT = "kJ mol-1 Angstrom-1"  # MDAnalysis rejects eV Angstrom-1 (module docstring)
OBSERVABLES = {
    "potential_energy": "eV",
    "kinetic_energy": "eV",
    "total_energy": "eV",
    "conserved_energy": "eV",
    "temperature": "K",
    "pressure": "bar",
    "volume": "Angstrom3",   # H5MD units: a symbol followed by its power
    "virial": "eV",
    "pressure_tensor": "bar",
}
OBSERVABLE_SHAPES = {"virial": (3, 3), "pressure_tensor": (3, 3)}
"""The shape of one frame of each observable that is not a scalar."""



def _author() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "unknown"


def _write_header(h5: h5py.File, type_map, input_text: str) -> None:
    from .. import __version__

    g = h5.create_group("h5md")
    g.attrs["version"] = np.array(H5MD_VERSION, dtype=np.int32)
    g.create_group("author").attrs["name"] = _author()
    c = g.create_group("creator")
    c.attrs["name"] = "numdp"
    c.attrs["version"] = __version__
    p = h5.create_group("parameters").create_group("numdp")
    p.attrs["type_map"] = list(type_map)
    p.attrs["input"] = input_text


def _time_element(parent: h5py.Group, name: str, shape, unit: str | None, clock, rows: int = 1):
    """Create a time-dependent element {step, time, value} with value (0, *shape), growable, in
    chunks of `rows` frames (scalars: 1024)."""
    g = parent.create_group(name)
    if clock is None:
        step = g.create_dataset("step", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(1024,))
        time = g.create_dataset("time", shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(1024,))
        time.attrs["unit"] = "ps"
        clock = (step, time)
    else:
        g["step"] = clock[0]
        g["time"] = clock[1]
    chunk = (rows, *shape) if shape else (1024,)
    value = g.create_dataset("value", shape=(0, *shape), maxshape=(None, *shape), dtype=np.float64,
                             chunks=chunk)
    if unit is not None:
        value.attrs["unit"] = unit
    return g, clock


class H5MDWriter:
    """Append frames to an H5MD file.

    path: file name; species (N,) int model types; masses (N,) amu (both None with `natoms`: the
    caller fills the datasets); type_map: element names;
    fields: subset of FIELDS; periodic: whether the box is periodic (one bool, or three for mixed
    boundary conditions: H5MD boundary "periodic" / "none" per vector); force_unit: a key of
    FORCE_UNITS; input_text: stored in /parameters/numdp.  `resume_after` = k opens an existing
    file instead, drops its frames with step > k and appends after them (restarts).  what: the
    kind of file in messages ("H5MD trajectory", "checkpoint").
    """

    def __init__(self, path, species, masses, type_map, fields=FIELDS, periodic=True,
                 force_unit=DEFAULT_FORCE_UNIT, input_text="", resume_after: int | None = None,
                 natoms: int | None = None, what: str = "H5MD trajectory"):
        self.path = Path(path)
        self.fields = tuple(fields)
        self.force_scale = FORCE_UNITS[force_unit]
        natoms = len(species) if species is not None else int(natoms)
        if resume_after is not None and self.path.exists():
            self._open_existing(natoms, resume_after, force_unit)
            return
        special_target(self.path, what, hdf5=True)   # a FIFO: one line (HDF5 seeks)
        try:
            self.h5 = h5py.File(self.path, "w")
        except OSError as exc:
            raise cannot_write(self.path, what, exc) from None
        _write_header(self.h5, type_map, input_text)
        part = self.h5.create_group(f"particles/{GROUP}")
        self.needs_atoms = species is None
        if species is None:  # written by the caller block by block (`set_atoms`)
            part.create_dataset("species", shape=(natoms,), dtype=np.int32)
            part.create_dataset("mass", shape=(natoms,), dtype=np.float64).attrs["unit"] = "u"
        else:
            part.create_dataset("species", data=np.asarray(species, dtype=np.int32))
            part.create_dataset("mass", data=np.asarray(masses, dtype=np.float64)).attrs["unit"] = "u"
        box = part.create_group("box")
        box.attrs["dimension"] = np.int32(3)
        flags = (bool(periodic),) * 3 if np.ndim(periodic) == 0 else tuple(bool(p) for p in periodic)
        box.attrs["boundary"] = ["periodic" if p else "none" for p in flags]
        periodic = any(flags)   # the cell is written when any direction is periodic (a slab's too)
        clock = None
        self.elements = {}
        if periodic:
            self.elements["box"], clock = _time_element(box, "edges", (3, 3), "Angstrom", clock)
        for name in self.fields:
            unit = force_unit if name == "force" else FIELD_UNITS[name]
            self.elements[name], clock = _time_element(part, name, (natoms, 3), unit, clock)
        obs = self.h5.create_group("observables")
        for name, unit in OBSERVABLES.items():
            if name == "volume" and not all(flags):   # a slab's cell volume is arbitrary: none
                continue
            # a (3, 3) observable in chunks of 64 frames (4.6 kB): 1024 made a one-frame checkpoint 2x larger
            self.elements[name], clock = _time_element(obs, name, OBSERVABLE_SHAPES.get(name, ()), unit, clock,
                                                       rows=64)
        self.clock = clock
        self._cache_values()
        self.h5.flush()

    def _cache_values(self) -> None:
        """Dataset objects of the `value`s in write order (looking them up per frame costs time)."""
        order = (*OBSERVABLES, "box", "velocity", "force", "position")
        self.values = [(name, self.elements[name]["value"]) for name in order if name in self.elements]

    def set_atoms(self, start: int, types: np.ndarray, masses: np.ndarray) -> None:
        """The model types (n,) and masses (n,) amu of atoms start .. start + n - 1."""
        part = self.h5[f"particles/{GROUP}"]
        part["species"][start:start + len(types)] = types
        part["mass"][start:start + len(types)] = masses

    def _open_existing(self, natoms: int, resume_after: int, force_unit: str = DEFAULT_FORCE_UNIT) -> None:
        """Reopen the trajectory of the run being continued (its atoms, fields and force unit must be
        the input's: one dataset holds one unit), drop its frames with step > resume_after."""
        self.needs_atoms = False
        try:
            self.h5 = h5py.File(self.path, "a")
        except OSError as exc:
            raise InputError(f"{self.path}: cannot reopen the trajectory to continue it ({exc})") from None
        part = self.h5.get(f"particles/{GROUP}")
        if part is None or "species" not in part or part["species"].shape[0] != natoms:
            self.h5.close()
            raise InputError(f"{self.path}: not a numdp trajectory of {natoms} atoms; move it away "
                             f"or choose another [output] trajectory to continue from a checkpoint")
        self.elements = {}
        if "edges" in part["box"]:
            self.elements["box"] = part["box/edges"]
        for name in FIELDS:
            if name in part:
                self.elements[name] = part[name]
        if tuple(n for n in FIELDS if n in part) != self.fields:
            self.h5.close()
            raise InputError(f"{self.path}: holds fields {[n for n in FIELDS if n in part]}, the input asks "
                             f"for {list(self.fields)}; cannot continue it")
        if "force" in part:
            stored = part["force/value"].attrs.get("unit", DEFAULT_FORCE_UNIT)
            stored = stored.decode() if isinstance(stored, bytes) else str(stored)
            if stored != force_unit:
                self.h5.close()
                raise InputError(f"{self.path}: holds forces in '{stored}', the input asks for [output] "
                                 f"force_unit = '{force_unit}'; cannot continue it (set force_unit = "
                                 f"'{stored}' to continue this trajectory)")
        for name in OBSERVABLES:
            if name in self.h5.get("observables", {}):
                self.elements[name] = self.h5[f"observables/{name}"]
        first = next(iter(self.elements.values()))
        self.clock = (first["step"], first["time"])
        steps = self.clock[0][()]
        keep = int(np.searchsorted(steps, resume_after, side="right"))
        for g in self.elements.values():
            g["value"].resize(keep, axis=0)
        self.clock[0].resize(keep, axis=0)
        self.clock[1].resize(keep, axis=0)
        self._cache_values()
        self.h5.flush()

    @property
    def nframes(self) -> int:
        return int(self.clock[0].shape[0])

    def last_step(self) -> int | None:
        n = self.nframes
        return int(self.clock[0][n - 1]) if n else None

    def append(self, step: int, time: float, positions, velocities, forces, box, observables: dict) -> None:
        """Write one frame (arrays in Å, Å/ps, eV/Å; box (3, 3) Å or None; observables by name,
        in OBSERVABLES' units and OBSERVABLE_SHAPES' shapes)."""
        self.append_frame(whole_frame(step, time, positions, velocities, forces, box, observables))

    def append_frame(self, frame: Frame) -> None:
        """Write one frame whose atoms arrive in blocks (numdp.io.trajectory.Frame); a field the
        frame does not carry is stored as zeros, an observable it does not give as nan."""
        data = {"box": frame.box, **frame.observables}
        with whole_write():  # an abort (second SIGINT / SIGTERM) waits for the whole frame
            n = self.nframes
            for ds, v in ((self.clock[0], frame.step), (self.clock[1], frame.time)):
                ds.resize(n + 1, axis=0)
                ds[n] = v
            atoms = []
            for name, value in self.values:
                if name == "position":
                    # everything else of the frame reaches the file before `position` grows: HDF5
                    # may write a dataset's new extent out of order before a flush, and a run
                    # killed (kill -9) then would leave more positions than temperatures
                    self.h5.flush()
                value.resize(n + 1, axis=0)
                if name in FIELD_ARRAYS:
                    atoms.append((value, FIELD_ARRAYS[name], self.force_scale if name == "force" else None))
                else:
                    value[n] = data.get(name, np.nan)
            for start, arrays in frame.blocks:
                stop = start + len(arrays["positions"])
                for value, key, scale in atoms:
                    a = arrays.get(key)
                    if a is None:
                        value[n, start:stop] = 0.0
                    else:
                        value[n, start:stop] = a if scale is None else np.asarray(a) * scale
            self.h5.flush()

    def close(self) -> None:
        if self.h5:
            self.h5.close()
            self.h5 = None


# -- reading -------------------------------------------------------------------------------------


def open_for_reading(path: Path, what: str) -> h5py.File:
    """h5py.File(path, "r"), or InputError "{path}: cannot open {what} (reason)"."""
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: cannot open {what} ({one_line(exc)})") from None


def _fixed_clock(ds: h5py.Dataset, k: int):
    """Step or time of row k of H5MD's fixed step and time storage: a scalar dataset holding the
    increment, its optional attribute `offset` the value of row 0 (s(k) = k step + offset)."""
    increment = ds[()]
    offset = ds.attrs.get("offset", 0)
    if np.issubdtype(np.asarray(increment).dtype, np.integer):
        return int(k * int(increment) + int(offset))
    return float(k * float(increment) + float(offset))


def read_frame(path, frame: int = -1) -> dict:
    """One frame of an H5MD file (numdp's or another program's, first particles group).

    Returns a dict with positions (N, 3) Å, box (3, 3) Å or None, velocities (N, 3) Å/ps or None,
    species (N,) int or None, masses (N,) amu or None, type_map list or None, step, time ps.
    Lengths in nm are converted; other length units are rejected.
    """
    path = Path(path)
    with open_for_reading(path, "as HDF5") as h5:
        return frame_of(h5, path, frame)


def _particles(h5: h5py.File, path: Path) -> h5py.Group:
    """The particles group read (numdp's, else the first), InputError without one or its positions."""
    if "particles" not in h5 or not len(h5["particles"]):
        raise InputError(f"{path}: not an H5MD file (no /particles group)")
    name = GROUP if GROUP in h5["particles"] else next(iter(h5["particles"]))
    part = h5["particles"][name]
    if "position" not in part:
        raise InputError(f"{path}: particles/{name} has no position element")
    return part


def frame_count(h5: h5py.File, path: Path) -> int:
    """The number of frames of the H5MD file `path` open as `h5` (1 for time-independent positions)."""
    pos = _particles(h5, path)["position"]
    return pos["value"].shape[0] if isinstance(pos, h5py.Group) else 1


def frame_of(h5: h5py.File, path: Path, frame: int = -1) -> dict:
    """`read_frame` of the H5MD file `path` already open as `h5` (a reader of many frames opens
    the file once)."""
    part = _particles(h5, path)
    pos = part["position"]
    nframes = frame_count(h5, path)
    if nframes == 0:
        raise InputError(f"{path}: the trajectory has no frames")
    if not -nframes <= frame < nframes:
        raise InputError(f"{path}: frame {frame} does not exist (the file has {nframes} frames)")
    k = frame % nframes

    def element(g, what, scale_units):
        value = g if isinstance(g, h5py.Dataset) else g["value"]   # time-independent: the dataset
        unit = value.attrs.get("unit", None)
        scale = 1.0
        if unit is not None:
            unit = unit.decode() if isinstance(unit, bytes) else str(unit)
            if unit not in scale_units:
                raise InputError(f"{path}: {what} unit '{unit}' is not supported "
                                 f"(expected one of {sorted(scale_units)})")
            scale = scale_units[unit]
        if isinstance(g, h5py.Dataset):
            return np.asarray(g[()], dtype=np.float64) * scale, None, None
        step = g["step"]
        time = g["time"] if "time" in g else None
        s = int(step[k]) if step.shape else _fixed_clock(step, k)
        t = None if time is None else (float(time[k]) if time.shape else _fixed_clock(time, k))
        return np.asarray(value[k], dtype=np.float64) * scale, s, t

    lengths = {"Angstrom": 1.0, "angstrom": 1.0, "A": 1.0, "nm": 10.0}
    positions, step, time = element(pos, "position", lengths)
    velocities = None
    if "velocity" in part:
        velocities = element(part["velocity"], "velocity",
                             {"Angstrom ps-1": 1.0, "A ps-1": 1.0, "nm ps-1": 10.0})[0]
    box = None
    if "box" in part and "edges" in part["box"]:
        edges = element(part["box"]["edges"], "box", lengths)[0]
        box = np.diag(edges) if edges.shape == (3,) else edges
    pbc = None
    if box is not None and "boundary" in part["box"].attrs:
        flags = [str(b.decode() if isinstance(b, bytes) else b) == "periodic" for b in part["box"].attrs["boundary"]]
        if len(flags) == 3 and not all(flags):
            pbc = tuple(flags)
    def per_atom(name):   # a time-independent dataset, or a time-dependent element's frame k
        g = part[name]
        return np.asarray(g[()] if isinstance(g, h5py.Dataset) else g["value"][min(k, g["value"].shape[0] - 1)])

    species = per_atom("species").astype(np.int64) if "species" in part else None
    masses = per_atom("mass").astype(np.float64) if "mass" in part else None
    type_map = None
    if "parameters/numdp" in h5:
        type_map = [str(t) for t in h5["parameters/numdp"].attrs["type_map"]]
    return {"positions": positions, "velocities": velocities, "box": box, "pbc": pbc, "species": species,
            "masses": masses, "type_map": type_map, "step": step or 0, "time": time or 0.0}


def is_checkpoint(path) -> bool:
    """True when `path` is an HDF5 file holding a numdp MD state (/numdp/state)."""
    return checkpoint_problem(path) is None


def checkpoint_problem(path) -> str | None:
    """Why the existing file `path` is not a numdp checkpoint, in words for a message ("not an
    HDF5 file", "truncated or corrupt HDF5 file (reason)", ...), or None when it is one."""
    if not h5py.is_hdf5(path):
        return "not an HDF5 file (a numdp checkpoint is one)"
    try:
        with h5py.File(path, "r") as h5:
            return None if "numdp/state" in h5 else "not a numdp checkpoint (no /numdp/state group)"
    except OSError as exc:
        return f"truncated or corrupt HDF5 file ({one_line(exc)})"


# -- checkpoints -----------------------------------------------------------------------------------


class AtomBlocks(Protocol):
    """Per-atom arrays of a whole system in id order, block by block
    (numdp.parallel.distribute.GlobalAtoms): natoms, and blocks() yielding (start, arrays)."""

    natoms: int

    def blocks(self) -> Iterator[tuple[int, dict[str, np.ndarray]]]: ...


class _WholeState:
    """`AtomBlocks` of a State that holds the whole system: one block, its arrays as they are."""

    def __init__(self, state: State):
        self.natoms = state.natoms
        self._arrays = atom_arrays(state)

    def blocks(self):
        yield 0, self._arrays


def write_checkpoint(path, state: State, observables: dict, input_text: str = "",
                     force_unit: str = DEFAULT_FORCE_UNIT, atoms: AtomBlocks | None = None) -> None:
    """Write the whole State atomically (numdp.io.atomic: temporary name, fsync, rename).

    atoms: the per-atom arrays of the whole system block by block (an MPI run's rank 0 passes
    its `GlobalAtoms`; `state` then gives the global fields only); by default `state`'s own.
    """
    atoms = atoms if atoms is not None else _WholeState(state)
    per_atom = set(atom_arrays(state)) | {"neighbor/positions"}   # (written from the blocks when valid)
    with atomic_path(path, "checkpoint") as tmp:
        writer = H5MDWriter(tmp, None, None, state.type_map, FIELDS,
                            state.pbc_flags if state.box is not None else False,
                            force_unit, input_text, natoms=atoms.natoms, what="checkpoint")
        try:
            g = writer.h5.create_group("numdp/state")
            for key, value in to_arrays(state).items():
                if key in per_atom:
                    continue
                if isinstance(value, np.ndarray) and value.dtype == object:
                    g.create_dataset(key, data=np.array([str(v) for v in value], dtype=h5py.string_dtype()))
                else:
                    g.create_dataset(key, data=value)

            def blocks():
                for start, arrays in atoms.blocks():
                    stop = start + len(arrays["positions"])
                    writer.set_atoms(start, arrays["types"], arrays["masses"])
                    for key, a in arrays.items():
                        if key not in g:
                            g.create_dataset(key, shape=(atoms.natoms, *a.shape[1:]), dtype=a.dtype)
                        g[key][start:stop] = a
                    yield start, arrays

            names = tuple(FIELD_ARRAYS[f] for f in FIELDS if FIELD_ARRAYS[f] in per_atom)
            writer.append_frame(Frame(state.step, state.time, atoms.natoms, state.box, dict(observables),
                                      names, blocks()))
        finally:
            writer.close()


class CheckpointAtoms:
    """The State of a checkpoint as an `numdp.system.AtomSource`: its global fields (`light`) read at
    opening, its per-atom datasets read slice by slice, a block at a time (`blocks`), so that a
    run's rank 0 never holds the whole system.  InputError when the file is not a numdp checkpoint."""

    def __init__(self, path):
        self.path = Path(path)
        arrays = {}
        self._per_atom: list[str] = []
        with open_for_reading(self.path, "the checkpoint") as h5:
            if "numdp/state" not in h5:
                raise InputError(f"{self.path}: not a numdp checkpoint (no /numdp/state group)")
            g = h5["numdp/state"]
            n = g["positions"].shape[0] if isinstance(g.get("positions"), h5py.Dataset) else None

            def visit(name, obj):
                if not isinstance(obj, h5py.Dataset):
                    return
                if name in ATOM_DTYPES and n is not None and obj.ndim and obj.shape[0] == n:
                    self._per_atom.append(name)
                    arrays[name] = np.empty((0, *obj.shape[1:]), dtype=ATOM_DTYPES[name])
                    return
                if name in ATOM_DTYPES and name != "neighbor/positions" and n is not None:
                    raise InputError(f"{self.path}: /numdp/state/{name} has shape {obj.shape}, not one row for "
                                     f"each of the {n} atoms of positions (a damaged checkpoint)")
                data = obj[()]
                if obj.dtype.kind in ("O", "S"):
                    data = np.array([d.decode() if isinstance(d, bytes) else str(d) for d in data], dtype=object)
                arrays[name] = data

            g.visititems(visit)
        self.natoms = int(n or 0)
        self.light = from_arrays(arrays, what=str(self.path))
        self.light.natoms_global = self.natoms

    def blocks(self, block: int, names: tuple[str, ...] | None = None) -> Iterator[dict[str, np.ndarray]]:
        names = self._per_atom if names is None else [k for k in names if k in self._per_atom]
        with open_for_reading(self.path, "the checkpoint") as h5:
            g = h5["numdp/state"]
            for start in range(0, self.natoms, max(1, int(block))):
                yield {k: np.ascontiguousarray(g[k][start:start + block], dtype=ATOM_DTYPES[k]) for k in names}


def read_checkpoint(path) -> State:
    """The State stored by `write_checkpoint` (InputError when the file is not a numdp checkpoint)."""
    return whole_state(CheckpointAtoms(path))
