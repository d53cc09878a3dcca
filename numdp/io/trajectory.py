"""Trajectory writers behind `numdp run`'s trajectory reporter: H5MD, extended XYZ, LAMMPS dump.

Every writer has the interface of `TrajectoryWriter`: ``append_frame`` writes one `Frame`, whose
atoms arrive in blocks in id order (an MPI run gathers them on rank 0 block by block:
numdp.parallel.distribute.GlobalAtoms), ``append`` one frame from whole arrays, and both flush it
to the operating system (a killed run leaves every complete frame readable), ``last_step`` is the
step of the last frame, and ``resume_after = k`` reopens an existing file, drops its frames with
step > k (and an incomplete last frame) and appends after them (restarts).

Formats (`FORMATS`; `open_trajectory` picks the writer):

``h5md``
    numdp.io.h5md.H5MDWriter (forces in `force_unit`).
``extxyz``
    One frame per block, read by ``ase.io.read(path, ":")`` and by numdp's structure reader::

        N
        Lattice="ax ay az bx by bz cx cy cz" Properties=species:S:1:pos:R:3:masses:R:1:momenta:R:3:forces:R:3 energy=E stress="sxx sxy sxz syx syy syz szx szy szz" step=S time=T ... pbc="T T T"
        O  x y z  m  px py pz  fx fy fz

    Å, eV, eV/Å (ASE's units); the masses (amu) always, velocities as ASE momenta (amu Å per ASE
    time unit), so that ASE's ``get_velocities()`` and numdp's reader get them back; the
    observables (potential energy as ``energy``, kinetic_energy, temperature, pressure [bar],
    ...) in the comment line; the virial as ASE's ``stress`` (`ase_stress`: eV/Å³, the sign of
    a tension, without the kinetic part, which ASE adds from the momenta with
    ``get_stress(include_ideal_gas=True)``).  No Lattice and ``pbc="F F F"`` for an open system.
``lammps-dump``
    LAMMPS' text dump (`units metal`: Å, Å/ps, eV/Å)::

        ITEM: TIMESTEP / ITEM: NUMBER OF ATOMS / ITEM: BOX BOUNDS xy xz yz pp pp pp /
        ITEM: ATOMS id type element xu yu zu vx vy vz fx fy fz

    `type` is the model type index + 1 and `element` its name (the type-to-element map; dpdata's
    ``lammps/dump`` reader takes the names as ``type_map=`` the model's type_map).  Positions
    are unwrapped (``xu``).  LAMMPS stores a *restricted* triclinic box (a along x, b in the
    xy plane, c with positive z); a general cell is rotated into that form, positions,
    velocities and forces with it (fractional coordinates unchanged).  An orthogonal box is
    written as ``ITEM: BOX BOUNDS pp pp pp``; an open system as ``ss ss ss`` bounds around the
    atoms, 1e-4 of the extent beyond the outermost ones as LAMMPS' shrink-wrapping
    (`shrink_wrap_bounds`); a slab's box (``pp pp ff``) grown along its open vector to hold atoms
    that left it, flagged ``mm`` (`frame_cell`), so that readers which map positions into the
    box (dpdata) move no atom.  ``columns`` (`DUMP_COLUMNS`, LAMMPS' ``dump custom`` keywords)
    chooses the ATOMS columns in place of the default ones, e.g. DP-GEN's ``id type x y z fx fy
    fz``: ``x y z`` are the positions wrapped into the box along its periodic vectors (LAMMPS
    wraps at reneighbouring only, so its ``x`` may lie slightly outside), ``xu yu zu``
    unwrapped.  A `*` in the file name writes one file per frame, the `*` replaced by the step
    (LAMMPS' dump file name with a `*`; `LammpsDumpSeries`).  numdp's cell starts at 0; a
    `BoxOrigin` (numdp lmp: a data file's box from xlo ylo zlo) adds LAMMPS' lower corner to the
    BOX BOUNDS and to the x y z / xu yu zu columns (the scaled ones stay), so that the dump holds
    LAMMPS' numbers (an extxyz's positions too: numdp lmp's `dump xyz`).
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import InputError
from ..signals import whole_write
from .series import MARK as FRAME_SERIES_MARK
from .series import series_file
from .structure import lammps_box
from ..units import ASE_TIME_IN_PS

FORMATS = ("h5md", "extxyz", "lammps-dump")
SUFFIXES = {"h5md": ".h5md", "extxyz": ".extxyz", "lammps-dump": ".lammpstrj"}
"""Default trajectory file suffix of each format."""
FIELD_ARRAYS = {"position": "positions", "velocity": "velocities", "force": "forces"}
"""The per-atom array (`Frame.arrays`, numdp.system.atom_arrays) of each trajectory field."""
DUMP_COLUMNS = {"id": None, "type": None, "element": None, "mass": None,
                "x": "position", "y": "position", "z": "position",
                "xu": "position", "yu": "position", "zu": "position",
                "xs": "position", "ys": "position", "zs": "position",
                "xsu": "position", "ysu": "position", "zsu": "position",
                "ix": "position", "iy": "position", "iz": "position",
                "vx": "velocity", "vy": "velocity", "vz": "velocity",
                "fx": "force", "fy": "force", "fz": "force"}
"""The LAMMPS `dump custom` columns a lammps-dump trajectory can hold, and the field each needs
(xs ys zs: fractional coordinates in LAMMPS' box, wrapped; xsu ysu zsu: unwrapped; ix iy iz:
the image flags, xu = x + ix a + iy b + iz c; mass: amu)."""
SCALED_COLUMNS = ("xs", "ys", "zs", "xsu", "ysu", "zsu", "ix", "iy", "iz")
"""The columns defined by the cell (refused without one)."""


@dataclass(frozen=True)
class BoxOrigin:
    """Where LAMMPS holds the lower corner (xlo, ylo, zlo) of a box numdp holds from 0: at
    `fixed` - `fraction` * (lx, ly, lz) Å, (lx, ly, lz) the current box's lengths in LAMMPS'
    frame.  LAMMPS scales a changing box (fix npt, fix box/relax) about a fixed point, by default
    the box's centre (`fraction` 1/2 of each length below it); numdp about its corner at 0, which
    is the same cell and the same fractional coordinates, one rigid shift apart.  For a box that
    never changes the corner is the data file's xlo ylo zlo (`of_box`)."""

    fixed: tuple[float, float, float]   # Å, LAMMPS' fixed point of box changes
    fraction: tuple[float, float, float] = (0.5, 0.5, 0.5)   # of each box length below it

    @classmethod
    def of_box(cls, lo, lengths) -> "BoxOrigin":
        """The origin of a box from `lo` (3,) Å with lengths (lx, ly, lz) (3,) Å, its centre fixed."""
        return cls(tuple(float(a) + 0.5 * float(b) for a, b in zip(lo, lengths)))

    @classmethod
    def at_corner(cls, lo) -> "BoxOrigin":
        """The origin of a box LAMMPS never changes (an open system's): its corner `lo` (3,) Å
        itself (fraction 0)."""
        return cls(tuple(float(v) for v in lo), (0.0, 0.0, 0.0))

    @classmethod
    def of_output(cls, box_center=None, box_corner=None) -> "BoxOrigin | None":
        """The origin that `[output] box_center` or `box_corner` (three numbers, Å; not both)
        gives, None for neither (the box from 0); `output_key` names the key that gives it back."""
        if box_center is not None:
            return cls(tuple(float(v) for v in box_center))
        return None if box_corner is None else cls.at_corner(box_corner)

    @property
    def output_key(self) -> str:
        """The [output] key that holds `fixed` (`of_output`): box_corner for a fixed corner
        (fraction 0), box_center otherwise."""
        return "box_center" if any(self.fraction) else "box_corner"

    def corner(self, h: np.ndarray) -> np.ndarray:
        """(xlo, ylo, zlo) (3,) Å of the box whose LAMMPS cell (lammps_box's lower-triangular
        rows) is `h` (3, 3) Å."""
        return np.asarray(self.fixed, dtype=np.float64) - np.asarray(self.fraction, dtype=np.float64) * np.diag(h)

    def open_corner(self) -> np.ndarray | None:
        """(xlo, ylo, zlo) (3,) Å for a frame without a cell (an open system, LAMMPS' `boundary f f
        f`, whose box LAMMPS never changes): `fixed` where it is the corner itself (fraction 0:
        `[output] box_corner`); None where it is a changing box's centre (`box_center`)."""
        return None if any(self.fraction) else np.asarray(self.fixed, dtype=np.float64)


def dump_fields(columns) -> tuple[str, ...]:
    """The trajectory fields ("position", "velocity", "force") that dump `columns` need."""
    needed = {DUMP_COLUMNS[c] for c in columns} | {"position"}
    return tuple(f for f in FIELD_ARRAYS if f in needed)


@dataclass
class Frame:
    """One trajectory frame whose atoms arrive in blocks.

    step; time ps; natoms N; box (3, 3) Å, rows = cell vectors, or None; observables by name
    (numdp.io.h5md.OBSERVABLES: eV, K, bar, Å³; floats, and (3, 3) arrays for the virial and the
    pressure tensor); arrays: the per-atom arrays each block carries ("positions" Å, and
    "velocities" Å/ps, "forces" eV/Å when present); blocks: (start, {name: (n, 3)}) for atoms
    start .. start + n - 1, in order, covering all N atoms once; bounds: (lo, hi) (3,) Å of the
    positions, for a LAMMPS dump of a system without a cell (None otherwise).
    """

    step: int
    time: float
    natoms: int
    box: np.ndarray | None
    observables: dict
    arrays: tuple[str, ...]
    blocks: Iterable[tuple[int, dict[str, np.ndarray]]]
    bounds: tuple[np.ndarray, np.ndarray] | None = None


def whole_frame(step, time, positions, velocities, forces, box, observables) -> Frame:
    """A `Frame` of one block from whole arrays (velocities, forces may be None)."""
    pos = np.asarray(positions, dtype=np.float64)
    arrays = {"positions": pos}
    for name, a in (("velocities", velocities), ("forces", forces)):
        if a is not None:
            arrays[name] = np.asarray(a, dtype=np.float64)
    bounds = (pos.min(axis=0), pos.max(axis=0)) if box is None and len(pos) else None
    return Frame(int(step), float(time), len(pos), None if box is None else np.asarray(box, dtype=np.float64),
                 dict(observables), tuple(arrays), [(0, arrays)], bounds)


class TrajectoryWriter(Protocol):
    path: Path
    needs_atoms: bool
    """Whether `set_atoms` must give every atom's type and mass before the first frame."""

    def last_step(self) -> int | None: ...

    def set_atoms(self, start: int, types: np.ndarray, masses: np.ndarray) -> None:
        """The model types (n,) and masses (n,) amu of atoms start .. start + n - 1."""

    def append_frame(self, frame: Frame) -> None:
        """Write `frame` (its blocks are consumed once, in order) and flush it."""

    def append(self, step: int, time: float, positions, velocities, forces, box, observables: dict) -> None:
        """One frame from whole arrays: positions (N, 3) Å, velocities (N, 3) Å/ps, forces (N, 3)
        eV/Å, box (3, 3) Å rows = cell vectors or None, observables by name (eV, K, bar, Å³)."""

    def close(self) -> None: ...


def format_of_path(path: Path) -> str | None:
    """The trajectory format a file name suggests (None if none)."""
    suffix = path.suffix.lower()
    return {".h5md": "h5md", ".h5": "h5md", ".extxyz": "extxyz", ".xyz": "extxyz",
            ".lammpstrj": "lammps-dump", ".dump": "lammps-dump"}.get(suffix)


def open_trajectory(fmt: str, path, species, masses, type_map, fields, periodic,
                    force_unit: str, input_text: str = "", resume_after: int | None = None,
                    natoms: int | None = None, columns: tuple[str, ...] | None = None,
                    triclinic: bool = False, origin: BoxOrigin | None = None) -> TrajectoryWriter:
    """The writer of format `fmt` (see the module docstring) for atoms of model types `species`
    (N,) and `masses` (N,) amu; `fields` selects velocity and force (positions always);
    `periodic`: False (no cell), True (periodic along every cell vector) or three booleans.
    With species and masses None, `natoms` atoms whose types and masses the caller gives block by
    block (`set_atoms`) before the first frame, where the writer `needs_atoms`.  `columns`: a
    lammps-dump's ATOMS columns (`DUMP_COLUMNS`; None: the default ones); a `*` in a lammps-dump
    file name: one file per frame (`LammpsDumpSeries`); `triclinic`: a lammps-dump box always as
    LAMMPS' triclinic bounds (`xy xz yz`, zero tilts too); `origin`: a lammps-dump's or an
    extxyz's box corner as LAMMPS' (`BoxOrigin`; None: at 0; an H5MD file keeps numdp's)."""
    if fmt == "lammps-dump":
        cls = LammpsDumpSeries if FRAME_SERIES_MARK in Path(path).name else LammpsDumpWriter
        return cls(path, species, masses, type_map, fields, resume_after, periodic, natoms, columns=columns,
                   triclinic=triclinic, origin=origin)
    if fmt == "h5md":
        from .h5md import H5MDWriter

        return H5MDWriter(path, species, masses, type_map, fields, periodic, force_unit, input_text,
                          resume_after=resume_after, natoms=natoms)
    return ExtxyzWriter(path, species, masses, type_map, fields, resume_after, periodic, natoms, origin=origin)


class _TextWriter:
    """A text trajectory appended frame by frame (subclasses: `_header_text`, `_atoms_text`, `_read_header`);
    `origin` (`BoxOrigin`; None: at 0): LAMMPS' box corner, where its box is not from 0 (`_corner`)."""

    def __init__(self, path, species, masses, type_map, fields, resume_after: int | None,
                 periodic=True, natoms: int | None = None, origin: BoxOrigin | None = None):
        self.path = Path(path)
        self.origin = origin
        flags = np.broadcast_to(np.asarray(periodic, dtype=bool), (3,))
        self.pbc = tuple(bool(f) for f in flags)   # per cell vector (ignored for frames without a box)
        self.needs_atoms = species is None
        if species is None:   # filled by `set_atoms` before the first frame
            species, masses = np.zeros(int(natoms), dtype=np.int64), np.zeros(int(natoms))
        self.species = np.asarray(species, dtype=np.int64)
        self.masses = np.asarray(masses, dtype=np.float64)
        self._names = np.array(list(type_map), dtype=object)   # element of each model type
        self.fields = tuple(fields)
        self._last: int | None = None
        self._open(resume_after)

    def _corner(self, box) -> np.ndarray:
        """(3,) Å: LAMMPS' lower corner of the cell `box` in LAMMPS' frame (of the cell itself, not
        of one grown along an open vector by `frame_cell`), 0 without `self.origin`."""
        return np.zeros(3) if self.origin is None else self.origin.corner(lammps_box(box)[0])

    def _open_corner(self) -> np.ndarray:
        """LAMMPS' corner of a frame without a cell (`BoxOrigin.open_corner`), 0 without one."""
        corner = None if self.origin is None else self.origin.open_corner()
        return np.zeros(3) if corner is None else corner

    def _open(self, resume_after: int | None) -> None:
        if resume_after is not None and self.path.exists():
            self._truncate(resume_after)
            self.fh = open(self.path, "a")
        else:
            self.fh = open(self.path, "w")

    def set_atoms(self, start: int, types: np.ndarray, masses: np.ndarray) -> None:
        """The model types and masses (amu) of atoms start .. start + len(types) - 1."""
        stop = start + len(types)
        self.species[start:stop] = types
        self.masses[start:stop] = masses

    def _truncate(self, resume_after: int) -> None:
        """Keep the frames with step <= resume_after, drop the rest (and an incomplete last frame).
        The file is scanned line by line, never held in memory whole (the trajectory of a large
        run may be larger than memory)."""
        keep_bytes = 0
        with open(self.path, "rb") as fh:
            try:
                for end, step, natoms in self._scan(fh):
                    if natoms != len(self.species):
                        raise InputError(f"{self.path}: holds frames of {natoms} atoms, the run has "
                                         f"{len(self.species)}; cannot continue it")
                    if step > resume_after:
                        break
                    keep_bytes = end
                    self._last = step
            except (ValueError, IndexError, UnicodeDecodeError):
                raise InputError(f"{self.path}: not a numdp {self.FORMAT} trajectory; move it away to "
                                 f"continue from a checkpoint") from None
        os.truncate(self.path, keep_bytes)

    def _scan(self, fh):
        """(end byte offset, step, natoms) of every complete frame of the binary file `fh`, in
        order, read line by line; a frame that cannot be parsed ends the scan (an incomplete last
        frame), unless it is the first (ValueError)."""
        def readline() -> str:
            line = fh.readline()
            if not line.endswith(b"\n"):   # the end of the file, or a last line cut short
                raise IndexError("incomplete frame")
            return line.decode()

        first = True
        while fh.peek(1):   # an empty file (a run stopped before its first frame) holds no frame
            try:
                step, n = self._read_header(readline)
                for _ in range(n):
                    readline()
            except (ValueError, IndexError, StopIteration, UnicodeDecodeError):
                if first:
                    raise ValueError("no complete frame") from None
                return
            first = False
            yield fh.tell(), step, n

    def last_step(self) -> int | None:
        return self._last

    def append(self, step, time, positions, velocities, forces, box, observables) -> None:
        self.append_frame(whole_frame(step, time, positions, velocities, forces, box, observables))

    def append_frame(self, frame: Frame) -> None:
        vel, frc = (f in self.fields and FIELD_ARRAYS[f] in frame.arrays for f in ("velocity", "force"))
        # a signal handler may run inside write() (EINTR): the frame lands whole
        with whole_write():
            self.fh.write(self._header_text(frame, vel, frc))
            for start, a in frame.blocks:
                self.fh.write(self._atoms_text(start, a["positions"], a["velocities"] if vel else None,
                                               a["forces"] if frc else None, frame.box))
            self.fh.flush()
        self._last = int(frame.step)

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


def float_text(v: float) -> str:
    """The shortest text that reads back as the same float64 (17 significant digits at most)."""
    return repr(float(v))


def ase_stress(virial, box, pbc) -> np.ndarray | None:
    """ASE's stress of a frame, (3, 3) eV/Å³: -W / V for the virial W (3, 3) eV (DeePMD-kit's
    sign, numdp.system.State.virial) and the cell `box` (3, 3) Å periodic along `pbc` (3 bools);
    the configurational part only, as an ASE calculator's stress (ASE adds the kinetic part,
    -Σ m v vᵀ / V, from the momenta: ``get_stress(include_ideal_gas=True)``).  None without a
    virial or a cell periodic along a, b and c (a stress needs a volume)."""
    if virial is None or box is None or not all(pbc):
        return None
    w = np.asarray(virial, dtype=np.float64)
    if not np.all(np.isfinite(w)):
        return None
    return -w / abs(float(np.linalg.det(np.asarray(box, dtype=np.float64))))


class ExtxyzWriter(_TextWriter):
    """An extended XYZ trajectory; `origin` (`BoxOrigin`, numdp lmp's `dump xyz` of a box off the
    origin): the positions from LAMMPS' box corner, as that dump's (the Lattice stays: extxyz
    has no corner)."""

    FORMAT = "extxyz"

    def _header_text(self, frame: Frame, vel: bool, frc: bool) -> str:
        # masses whenever known (a reader's default ones may differ), and with the momenta; decided
        # here, once per frame, for the frame's atom blocks (`_atoms_text`)
        self._with_masses = vel or bool(np.all(self.masses > 0.0))
        props = "species:S:1:pos:R:3" + (":masses:R:1" if self._with_masses else "")
        if vel:
            props += ":momenta:R:3"
        if frc:
            props += ":forces:R:3"
        head = []
        if frame.box is not None:
            head.append('Lattice="' + " ".join(float_text(v) for v in frame.box.ravel()) + '"')
        head.append(f"Properties={props}")
        obs = dict(frame.observables)
        if "potential_energy" in obs:
            head.append(f"energy={float_text(obs.pop('potential_energy'))}")
        stress = ase_stress(obs.pop("virial", None), frame.box, self.pbc)
        if stress is not None:
            head.append('stress="' + " ".join(float_text(v) for v in stress.ravel()) + '"')
        obs.pop("pressure_tensor", None)   # the stress and the momenta give it (`ase_stress`)
        head.append(f"step={frame.step} time={float_text(frame.time)}")
        head += [f"{k}={float_text(v)}" for k, v in obs.items() if np.ndim(v) == 0 and math.isfinite(v)]
        flags = self.pbc if frame.box is not None else (False,) * 3
        head.append('pbc="' + " ".join("T" if f else "F" for f in flags) + '"')
        return f"{frame.natoms}\n{' '.join(head)}\n"

    def _atoms_text(self, start, pos, vel, frc, box) -> str:
        n = len(pos)
        if self.origin is not None and box is not None:   # LAMMPS' corner, rotated into numdp's frame
            pos = pos + self._corner(box) @ lammps_box(box)[1].T
        elif box is None:
            pos = pos + self._open_corner()
        masses = self.masses[start:start + n, None]
        cols = [self._names[self.species[start:start + n]][:, None], pos]
        if self._with_masses:
            cols.append(masses)
        if vel is not None:
            cols.append(vel * masses * ASE_TIME_IN_PS)
        if frc is not None:
            cols.append(frc)
        table = np.concatenate([np.asarray(c, dtype=object) for c in cols], axis=1)
        return "".join(" ".join(str(x) if k == 0 else float_text(x) for k, x in enumerate(r)) + "\n" for r in table)

    @staticmethod
    def _read_header(readline):
        """(step, natoms) of the frame whose header `readline()` reads (its atom lines follow)."""
        n = int(readline().split()[0])
        step = int(next(w for w in readline().split() if w.startswith("step=")).split("=")[1])
        return step, n


# dump column -> (array of LammpsDumpWriter._atoms_text, component)
_DUMP_VECTOR_COLUMNS = {name: (array, d) for array, names in (("wrapped", "x y z"), ("unwrapped", "xu yu zu"),
                                                            ("scaled", "xs ys zs"), ("scaled_unwrapped", "xsu ysu zsu"),
                                                            ("velocity", "vx vy vz"), ("force", "fx fy fz"))
                        for d, name in enumerate(names.split())}


SHRINK_WRAP_MARGIN = 1.0e-4
"""LAMMPS' shrink-wrap margin (its `SMALL`), relative to the extent: an ``ss`` box reaches this far
beyond the outermost atoms."""


def shrink_wrap_bounds(lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """The ``ss ss ss`` bounds of an open system whose positions span lo .. hi ((3,) Å each): widened
    on both sides by SHRINK_WRAP_MARGIN times the extent (at least 1 Å), as LAMMPS' shrink-wrapped
    box is, so that no atom lies on the upper bound.  A reader that maps positions into the box
    (dpdata's ``lammps/dump``: fractional coordinates modulo 1) would otherwise move the
    outermost atom of each direction by the whole extent."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    margin = SHRINK_WRAP_MARGIN * np.maximum(hi - lo, 1.0)
    return lo - margin, hi + margin


def frame_cell(box, pbc, positions) -> tuple:
    """(H, Q, origin, grown) of a dump frame of a cell periodic along some vectors only (a slab):
    LAMMPS' restricted cell H (3, 3) and rotation Q of `lammps_box`, the cell's origin (3,) Å in
    the rotated frame and the indices of the non-periodic vectors it was grown along.  numdp lets
    atoms leave the cell along a non-periodic vector (docs/md.md, slabs), where LAMMPS loses them;
    a reader that maps positions into the written box (dpdata's ``lammps/dump``: fractions modulo
    1) would move such an atom by a whole cell vector.  So along a non-periodic vector d whose
    fractions f of `positions` (a list of (n, 3) Å blocks) leave [0, 1), the box is grown to
    [min(0, f_min - m), max(1, f_max + m)] of it, m = SHRINK_WRAP_MARGIN times that span (as
    LAMMPS' ``m`` boundary grows a box to hold its atoms): H's row d scaled, the origin moved
    along it.  A cell that holds every atom is written unchanged."""
    h, q = lammps_box(box)
    origin, grown = np.zeros(3), []
    open_dims = [d for d in range(3) if not pbc[d]]
    frac = [np.linalg.solve(h.T, (p @ q).T).T[:, open_dims] for p in positions if len(p)]
    if not frac:
        return h, q, origin, ()
    frac = np.concatenate(frac)
    h = h.copy()
    for k, d in enumerate(open_dims):
        lo, hi = float(frac[:, k].min()), float(frac[:, k].max())
        if lo >= 0.0 and hi < 1.0:
            continue
        margin = SHRINK_WRAP_MARGIN * (max(1.0, hi) - min(0.0, lo))
        lo, hi = min(0.0, lo - margin), max(1.0, hi + margin)
        origin += lo * h[d]
        h[d] *= hi - lo
        grown.append(d)
    return h, q, origin, tuple(grown)


class LammpsDumpWriter(_TextWriter):
    FORMAT = "lammps-dump"

    def __init__(self, path, species, masses, type_map, fields, resume_after: int | None,
                 periodic=True, natoms: int | None = None, columns: tuple[str, ...] | None = None,
                 triclinic: bool = False, origin: BoxOrigin | None = None):
        self.columns = None if columns is None else tuple(columns)   # None: by the fields (module docstring)
        self.triclinic = triclinic   # every box as `BOX BOUNDS xy xz yz` (LAMMPS' triclinic box), zero tilts too
        if periodic is False and self.columns is not None and set(self.columns) & set(SCALED_COLUMNS):
            raise InputError(f"{path}: dump columns {' '.join(c for c in self.columns if c in SCALED_COLUMNS)}: "
                             f"scaled coordinates and image flags need a cell; this system has none")
        super().__init__(path, species, masses, type_map, fields, resume_after, periodic, natoms, origin)
        self._cell: tuple | None = None   # (H, Q, origin, grown) of the frame being written, see `frame_cell`

    def _frame_cell(self, box) -> tuple:
        """(H, Q, origin, grown) of `frame_cell` for the frame being written (the cell of `box`,
        origin 0, where the box holds its atoms), with LAMMPS' corner (`_corner`) added to the origin."""
        h, q, o, grown = self._cell if self._cell is not None else (*lammps_box(box), np.zeros(3), ())
        return h, q, (o if self.origin is None else o + self._corner(box)), grown

    def _columns(self, vel: bool, frc: bool) -> tuple[str, ...]:
        if self.columns is not None:
            return self.columns
        return ("id", "type", "element", "xu", "yu", "zu") + (("vx", "vy", "vz") if vel else ()) \
            + (("fx", "fy", "fz") if frc else ())

    def _header_text(self, frame: Frame, vel: bool, frc: bool) -> str:
        out = [f"ITEM: TIMESTEP\n{frame.step}\nITEM: NUMBER OF ATOMS\n{frame.natoms}\n"]
        if frame.box is None:
            lo, hi = shrink_wrap_bounds(*(frame.bounds if frame.bounds is not None else (np.zeros(3), np.zeros(3))))
            corner = self._open_corner()
            lo, hi = lo + corner, hi + corner
            out.append("ITEM: BOX BOUNDS ss ss ss\n"
                       + "".join(f"{float_text(lo[d])} {float_text(hi[d])}\n" for d in range(3)))
        else:
            h, _, o, grown = self._frame_cell(frame.box)
            xy, xz, yz = h[1, 0], h[2, 0], h[2, 1]
            # LAMMPS: p periodic, f fixed, m fixed but grown to hold the atoms
            bounds = " ".join("pp" if f else ("mm" if d in grown else "ff") for d, f in enumerate(self.pbc))
            moved = bool(grown) or self.origin is not None   # (else the lower bounds are 0.0)
            if xy == 0 and xz == 0 and yz == 0 and not self.triclinic:
                out.append(f"ITEM: BOX BOUNDS {bounds}\n"
                           + "".join(f"{float_text(o[d]) if moved else '0.0'} {float_text(o[d] + h[d, d])}\n" for d in range(3)))
            else:
                xlo = o[0] + min(0.0, xy, xz, xy + xz)
                xhi = o[0] + h[0, 0] + max(0.0, xy, xz, xy + xz)
                out.append(f"ITEM: BOX BOUNDS xy xz yz {bounds}\n"
                           f"{float_text(xlo)} {float_text(xhi)} {float_text(xy)}\n"
                           f"{float_text(o[1] + min(0.0, yz))} {float_text(o[1] + h[1, 1] + max(0.0, yz))} {float_text(xz)}\n"
                           f"{float_text(o[2]) if moved else '0.0'} {float_text(o[2] + h[2, 2])} {float_text(yz)}\n")
        out.append(f"ITEM: ATOMS {' '.join(self._columns(vel, frc))}\n")
        return "".join(out)

    def _atoms_text(self, start, pos, vel, frc, box) -> str:
        if box is None:
            pos = pos + self._open_corner()
        wrapped = scaled = unscaled = pos
        if box is not None:
            h, q, o, grown = self._cell if self._cell is not None else (*lammps_box(box), np.zeros(3), ())
            pos, vel, frc = (None if v is None else v @ q for v in (pos, vel, frc))
            columns = self._columns(vel is not None, frc is not None)
            if any(c in ("x", "y", "z", *SCALED_COLUMNS) for c in columns):   # fractional coordinates
                unscaled = np.linalg.solve(h.T, (pos - o if grown else pos).T).T   # pos = origin + frac h
                scaled = unscaled.copy()
                periodic = np.array(self.pbc)
                scaled[:, periodic] -= np.floor(scaled[:, periodic])
                wrapped = o + scaled @ h if grown else scaled @ h
            else:
                wrapped = pos
            if self.origin is not None:   # numdp's coordinates from 0 to LAMMPS' from its corner
                corner = self._corner(box)
                pos, wrapped = pos + corner, wrapped + corner
        species = self.species[start:start + len(pos)]
        names = self._names[species]
        arrays = {"wrapped": wrapped, "unwrapped": pos, "scaled": scaled, "scaled_unwrapped": unscaled,
                  "velocity": vel, "force": frc}
        text = []
        for c in self._columns(vel is not None, frc is not None):
            if c == "id":
                text.append([str(start + k + 1) for k in range(len(pos))])
            elif c in ("ix", "iy", "iz"):   # the whole cells between the unwrapped and wrapped positions
                d = "xyz".index(c[1])
                text.append([str(int(v)) for v in np.floor(unscaled[:, d])] if self.pbc[d] else ["0"] * len(pos))
            elif c == "mass":
                text.append([float_text(m) for m in self.masses[start:start + len(pos)]])
            elif c == "type":
                text.append([str(t + 1) for t in species])
            elif c == "element":
                text.append(list(names))
            else:
                name, d = _DUMP_VECTOR_COLUMNS[c]
                text.append([float_text(v) for v in arrays[name][:, d]])
        return "".join(" ".join(row) + "\n" for row in zip(*text))

    def append_frame(self, frame: Frame) -> None:
        if frame.box is None or all(self.pbc):
            super().append_frame(frame)
            return
        blocks = [(start, dict(a)) for start, a in frame.blocks]   # read once: the cell depends on them all
        self._cell = frame_cell(frame.box, self.pbc, [a["positions"] for _, a in blocks])
        try:
            super().append_frame(replace(frame, blocks=blocks))
        finally:
            self._cell = None

    @staticmethod
    def _read_header(readline):
        """(step, natoms) of the frame whose header `readline()` reads (its atom lines follow)."""
        line = readline()
        if line.strip() != "ITEM: TIMESTEP":
            raise ValueError(line)
        step = int(readline())
        readline()   # ITEM: NUMBER OF ATOMS
        n = int(readline())
        while not readline().startswith("ITEM: ATOMS"):
            pass
        return step, n



class LammpsDumpSeries(LammpsDumpWriter):
    """One LAMMPS dump file per frame: the `*` of the file name replaced by the step (LAMMPS'
    ``dump ... traj/*.lammpstrj``, what DP-GEN reads).  A restart rewrites the files of the steps
    it reaches again; a new run first keeps an earlier run's files as #NAME.N# (numdp.io.series,
    numdp.md.setup), where LAMMPS would overwrite them."""

    def _open(self, resume_after: int | None) -> None:
        self.fh = None
        if resume_after is not None and self.frame_path(resume_after).is_file():
            self._last = resume_after   # a restart: its start frame is there (written once)

    def frame_path(self, step: int) -> Path:
        """The file of the frame at `step`."""
        return series_file(self.path, step)

    def append_frame(self, frame: Frame) -> None:
        with whole_write():
            self.fh = open(self.frame_path(frame.step), "w")
        try:
            super().append_frame(frame)
        finally:
            self.close()


# -- conversion -------------------------------------------------------------------------------------


def is_h5md_trajectory(path) -> bool:
    """True for an H5MD file (a numdp trajectory or checkpoint, or another program's)."""
    import h5py

    path = Path(path)
    try:
        if not path.is_file() or not h5py.is_hdf5(path):
            return False
        with h5py.File(path, "r") as h5:
            return "particles" in h5
    except OSError:  # unreadable: the model reader says why
        return False


def _standard_masses(frame: dict) -> np.ndarray:
    """(N,) amu: the standard masses of the frame's elements, for an H5MD file that stores no
    masses (LAMMPS' dump h5md); zeros where a type is named by no element (the extxyz writer then
    leaves the masses column out: `ExtxyzWriter`)."""
    from ..units import STANDARD_MASSES

    by_type = np.array([STANDARD_MASSES.get(str(name), 0.0) for name in frame["type_map"]])
    return by_type[np.asarray(frame["species"], dtype=np.int64)]


def convert_trajectory(src, dst, fmt: str) -> int:
    """Write every frame of the H5MD file `src` to `dst` in format `fmt` (replaced atomically);
    returns the number of frames.  Forces (converted to eV/Å) and numdp's observables are
    carried over when present; species are named through numdp's stored type_map.  Frames are
    read one at a time (a trajectory may be far larger than memory)."""
    import h5py

    from .atomic import atomic_path
    from .h5md import FORCE_UNITS, GROUP, OBSERVABLE_SHAPES, OBSERVABLES, frame_of, read_frame

    src, dst = Path(src), Path(dst)
    first = read_frame(src, 0)
    if first["species"] is None or first["type_map"] is None:
        raise InputError(f"{src}: the H5MD file has no species with numdp's type_map; cannot name the atoms")
    with h5py.File(src, "r") as h5:
        part = h5["particles"][GROUP if GROUP in h5["particles"] else next(iter(h5["particles"]))]
        nframes = part["position/value"].shape[0]
        forces, scale = None, 1.0
        if "force" in part:
            unit = part["force/value"].attrs.get("unit", "eV Angstrom-1")
            unit = unit.decode() if isinstance(unit, bytes) else str(unit)
            if unit not in FORCE_UNITS:
                raise InputError(f"{src}: force unit '{unit}' is not supported (expected one of {sorted(FORCE_UNITS)})")
            forces, scale = part["force/value"], FORCE_UNITS[unit]
        obs = {}   # numdp's observables, where they have a value for every frame in numdp's shape
        for name in OBSERVABLES:
            value = h5.get(f"observables/{name}/value")
            if isinstance(value, h5py.Dataset) and value.shape == (nframes, *OBSERVABLE_SHAPES.get(name, ())):
                obs[name] = value[()]
        fields = ("position",) + (("velocity",) if first["velocities"] is not None else ()) \
            + (("force",) if forces is not None else ())
        masses = first["masses"] if first["masses"] is not None else _standard_masses(first)
        with atomic_path(dst, "trajectory") as tmp:
            w = open_trajectory(fmt, tmp, first["species"], masses, first["type_map"], fields,
                                False if first["box"] is None else (first["pbc"] or True), "eV Angstrom-1")
            try:
                for k in range(nframes):
                    f = first if k == 0 else frame_of(h5, src, k)
                    w.append(f["step"], f["time"], f["positions"], f["velocities"],
                             None if forces is None else forces[k] / scale, f["box"],
                             {name: float(v[k]) if v.ndim == 1 else v[k] for name, v in obs.items()})
            finally:
                w.close()
    return nframes
