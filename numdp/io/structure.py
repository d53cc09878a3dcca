"""Start structures for MD: extended XYZ, LAMMPS data files, DeePMD systems, H5MD files.

`read_structure(path, frame)` picks the reader from the file (a directory is a DeePMD npy system;
``data.h5#/group``, or an HDF5 file without H5MD groups, is a DeePMD HDF5 system; other HDF5 is
H5MD; `.xyz`/`.extxyz` is (extended) XYZ; a file whose header names "atoms" and "atom types" is
a LAMMPS data file; any other file is read through `ase.io.read` when ASE is installed: POSCAR,
CIF, PDB, ...) and returns a `Structure`.  `replicate` tiles it;
`assign_types` maps it onto a model's type_map.

Units: positions and cells in Å; velocities in Å/ps.  extxyz velocities are read from a column
named `velo`, `vel` or `velocities` (taken as Å/ps) or from ASE's `momenta` (amu Å per ASE time
unit, converted).  LAMMPS data files are read in `units metal` (Velocities in Å/ps).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..errors import InputError
from .location import DataLocation
from .type_map import type_indices
from ..units import ASE_TIME_IN_PS


@dataclass
class Structure:
    """One configuration read from a file.

    positions: (N, 3) float64 Å; box: (3, 3) Å rows = cell vectors, or None (non-periodic);
    elements: element name of each atom, or None when the file has only numeric types;
    type_ids: (N,) int 0-based numeric types (None when `elements` is given);
    velocities: (N, 3) Å/ps or None; masses: (N,) amu or None (as given in the file);
    source: description for messages; pbc: periodicity along each cell vector when the file says
    (extxyz `pbc="T T F"`), None otherwise (periodic along all three when there is a box);
    first_type: the number the file writes for type_ids 0 (1 for LAMMPS types 1, 2, ..., 0 for
    DeePMD's type.raw), so that messages quote the file's numbers.
    """

    positions: np.ndarray
    box: np.ndarray | None
    elements: list[str] | None
    type_ids: np.ndarray | None
    velocities: np.ndarray | None
    masses: np.ndarray | None
    source: str
    pbc: tuple[bool, bool, bool] | None = None  # as given by the file (extxyz pbc="T T F"); None: all periodic with a box
    first_type: int = 0

    @property
    def natoms(self) -> int:
        return int(self.positions.shape[0])


def read_structure(path, frame: int | None = None) -> Structure:
    """Read one frame of `path` (frame None: the first, or the last of an H5MD trajectory)."""
    path = Path(path)
    loc = DataLocation.parse(path)
    if loc.location is not None and loc.path.exists():  # a group of DeePMD data: data.h5#/group
        return read_npy_frame(path, 0 if frame is None else frame)
    if not path.exists():
        raise InputError(f"{path}: structure file not found")
    if path.is_dir():
        return read_npy_frame(path, 0 if frame is None else frame)
    if h5py.is_hdf5(path):
        if _is_h5md(path):
            return read_h5md_structure(path, -1 if frame is None else frame)
        return read_npy_frame(path, 0 if frame is None else frame)
    if path.suffix.lower() in (".xyz", ".extxyz"):
        return read_extxyz(path, 0 if frame is None else frame)
    if _looks_like_lammps_data(path):
        if frame not in (None, 0, -1):
            raise InputError(f"{path}: a LAMMPS data file holds one frame; remove [system] frame")
        return read_lammps_data(path)
    return read_with_ase(path, 0 if frame is None else frame)


def read_with_ase(path: Path, frame: int = 0) -> Structure:
    """Frame `frame` of any file `ase.io.read` knows (POSCAR, CIF, PDB, ...); positions and cell
    in Å (the cell when ASE says the file is periodic along any vector; mixed periodicity is kept
    as Structure.pbc), velocities from ASE's momenta (converted to Å/ps), masses only when the
    file sets them."""
    try:
        import ase.io
    except ImportError:
        raise InputError(f"{path}: unknown structure format (expected .xyz/.extxyz, a LAMMPS data "
                         f"file, a DeePMD npy system directory, a DeePMD HDF5 system or an H5MD file; "
                         f"install ASE (pip install 'numdp[ase]') to read POSCAR, CIF and other "
                         f"formats)") from None
    try:
        atoms = ase.io.read(path, index=frame)
    except Exception as exc:  # ASE raises many kinds; any of them means: not readable
        text = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise InputError(f"{path}: unknown structure format (neither numdp's readers nor ASE "
                         f"read it: {text})") from None
    flags = tuple(bool(p) for p in atoms.get_pbc())
    if any(flags) and np.allclose(np.asarray(atoms.get_cell()), np.eye(3), atol=1e-9) and _is_pdb(path):
        flags = (False, False, False)   # PDB's CRYST1 1 1 1 90 90 90 P 1: "no unit cell", not a 1 Å box
    box = np.array(atoms.get_cell(), dtype=np.float64) if any(flags) else None
    pbc = None if all(flags) or not any(flags) else flags   # mixed: a slab, as extxyz pbc="T T F"
    velocities = None
    if "momenta" in atoms.arrays:
        velocities = np.asarray(atoms.get_velocities(), dtype=np.float64) / ASE_TIME_IN_PS
    masses = np.asarray(atoms.arrays["masses"], dtype=np.float64) if "masses" in atoms.arrays else None
    return Structure(np.asarray(atoms.get_positions(), dtype=np.float64), box,
                     atoms.get_chemical_symbols(), None, velocities, masses,
                     f"{path} frame {frame} (read by ASE)", pbc)


def _is_pdb(path: Path) -> bool:
    """True when ASE reads `path` as a PDB file."""
    try:
        from ase.io.formats import filetype

        return filetype(str(path), guess=False) == "proteindatabank"
    except Exception:   # ASE cannot tell: not a PDB file for this purpose
        return False


def _is_h5md(path: Path) -> bool:
    """True for an H5MD file (numdp trajectory or checkpoint); False for DeePMD HDF5 data."""
    try:
        with h5py.File(path, "r") as h5:
            return "h5md" in h5 or "particles" in h5
    except OSError as exc:
        raise InputError(f"{path}: cannot read the HDF5 file ({exc})") from None


# -- extended XYZ --------------------------------------------------------------------------------

_KV = re.compile(r"""(\w+)\s*=\s*("[^"]*"|'[^']*'|\S+)""")


def _comment_fields(line: str) -> dict[str, str]:
    return {k.lower(): v.strip("\"'") for k, v in _KV.findall(line)}


def _properties(spec: str, where: str) -> list[tuple[str, str, int]]:
    parts = spec.split(":")
    if len(parts) % 3:
        raise InputError(f"{where}: malformed Properties '{spec}' (expected name:type:count triples)")
    out = []
    for i in range(0, len(parts), 3):
        try:
            count = int(parts[i + 2])
        except ValueError:
            raise InputError(f"{where}: malformed Properties '{spec}'") from None
        out.append((parts[i].lower(), parts[i + 1].upper(), count))
    return out


def read_extxyz(path, frame: int = 0) -> Structure:
    """Frame `frame` (0-based; negative counts from the end) of an (extended) XYZ file."""
    path = Path(path)
    lines = path.read_text().splitlines()
    starts = _xyz_frame_starts(path, lines)
    if not -len(starts) <= frame < len(starts):
        raise InputError(f"{path}: frame {frame} does not exist (the file has {len(starts)} frames)")
    return _xyz_frame(path, lines, starts[frame], frame)


def iter_extxyz(path):
    """Every frame of an (extended) XYZ file in order, as Structures (the file is read once)."""
    path = Path(path)
    lines = path.read_text().splitlines()
    for k, start in enumerate(_xyz_frame_starts(path, lines)):
        yield _xyz_frame(path, lines, start, k)


def _xyz_frame_starts(path: Path, lines: list[str]) -> list[int]:
    """Line index of the atom-count line of every frame."""
    starts = []
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        try:
            n = int(lines[i].split()[0])
        except ValueError:
            raise InputError(f"{path}:{i + 1}: expected the number of atoms, got '{lines[i].strip()}'") from None
        if i + 2 + n > len(lines):
            raise InputError(f"{path}:{i + 1}: the file ends inside a frame of {n} atoms")
        starts.append(i)
        i += 2 + n
    if not starts:
        raise InputError(f"{path}: no frame found")
    return starts


def _xyz_frame(path: Path, lines: list[str], start: int, frame: int) -> Structure:
    natoms = int(lines[start].split()[0])
    where = f"{path}:{start + 2}"
    info = _comment_fields(lines[start + 1])
    props = _properties(info.get("properties", "species:S:1:pos:R:3"), where)
    box = None
    pbc = None
    if "lattice" in info:
        try:
            box = np.array([float(v) for v in info["lattice"].split()]).reshape(3, 3)
        except ValueError:
            raise InputError(f"{where}: Lattice must hold 9 numbers, got '{info['lattice']}'") from None
        words = info.get("pbc", "T T T").split()
        flags = [{"T": True, "TRUE": True, "1": True, "F": False, "FALSE": False, "0": False}.get(w.upper())
                 for w in words]
        if len(flags) != 3 or None in flags:
            raise InputError(f"{where}: pbc = '{info['pbc']}': expected three of T / F, like pbc=\"T T F\"")
        if not any(flags):
            box = None      # a cell that is periodic along no vector: an open cluster
        elif not all(flags):
            pbc = tuple(flags)
    for name, _, count in props:
        want = {"pos": 3, "velo": 3, "vel": 3, "velocities": 3, "momenta": 3, "masses": 1}.get(name)
        if want is not None and count != want:
            raise InputError(f"{where}: Properties column '{name}' has {count} components, expected {want}")
    columns: dict[str, list] = {name: [] for name, _, _ in props}
    for a in range(natoms):
        line_no = start + 3 + a
        words = lines[line_no - 1].split()
        if len(words) < sum(c for _, _, c in props):
            raise InputError(f"{path}:{line_no}: expected {sum(c for _, _, c in props)} columns, got {len(words)}")
        k = 0
        for name, kind, count in props:
            columns[name].append(words[k:k + count])
            k += count

    def real(name):
        try:
            values = np.array(columns[name], dtype=np.float64)
        except ValueError:
            raise InputError(f"{where}: column '{name}' holds non-numbers") from None
        bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
        if bad.size:
            a = int(bad[0])
            what = "coordinate" if name == "pos" else f"'{name}' value"
            raise InputError(f"{path}:{start + 3 + a}: atom {a} has a non-finite {what} "
                             f"{' '.join(columns[name][a])}")
        return values

    species_key = next((k for k in ("species", "element", "symbols") if k in columns), None)
    if species_key is None or "pos" not in columns:
        raise InputError(f"{where}: Properties must include species:S:1 and pos:R:3")
    elements = [w[0] for w in columns[species_key]]
    type_ids = None
    if all(e.isascii() and e.isdigit() for e in elements):
        # numeric species, as LAMMPS's `dump xyz` writes atom types 1, 2, ...: numeric types,
        # named by [system] type_names like those of a LAMMPS data file
        numbers = np.array([int(e) for e in elements], dtype=np.int64)
        if natoms and numbers.min() < 1:
            raise InputError(f"{where}: numeric species are atom types 1, 2, ... (as LAMMPS writes "
                             f"them), got {int(numbers.min())}")
        elements, type_ids = None, numbers - 1
    positions = real("pos")
    velocities = None
    masses = real("masses")[:, 0] if "masses" in columns else None
    for key in ("velo", "vel", "velocities"):
        if key in columns:
            velocities = real(key)
    if velocities is None and "momenta" in columns:
        if masses is None and elements is None:
            raise InputError(f"{where}: momenta with numeric species need a masses column")
        if masses is None:
            from ..units import standard_mass

            masses_for_p = np.array([standard_mass(e, str(path)) for e in elements])
        else:
            masses_for_p = masses
        velocities = real("momenta") / masses_for_p[:, None] / ASE_TIME_IN_PS
    return Structure(positions, box, elements, type_ids, velocities, masses, f"{path} frame {frame}", pbc,
                     first_type=0 if type_ids is None else 1)


def write_extxyz(path, elements, positions, box=None, velocities=None, pbc=(True, True, True)) -> None:
    """Write one frame of extended XYZ (Å, velocities Å/ps in a `vel` column); `pbc`: the
    periodicity along each cell vector written with a box."""
    positions = np.asarray(positions, dtype=np.float64)
    props = "species:S:1:pos:R:3" + (":vel:R:3" if velocities is not None else "")
    head = f'Properties={props}'
    if box is not None:
        b = np.asarray(box, dtype=np.float64).ravel()
        head = 'Lattice="' + " ".join(f"{v:.10f}" for v in b) + '" ' + head + ' pbc="' + " ".join("T" if p else "F" for p in pbc) + '"'
    rows = []
    for i, e in enumerate(elements):
        cols = [f"{e:2s}"] + [f"{v:16.10f}" for v in positions[i]]
        if velocities is not None:
            cols += [f"{v:16.10f}" for v in velocities[i]]
        rows.append(" ".join(cols))
    Path(path).write_text(f"{len(elements)}\n{head}\n" + "\n".join(rows) + "\n")


# -- LAMMPS data -----------------------------------------------------------------------------------

_SECTIONS = ("Atoms", "Velocities", "Masses", "Ellipsoids", "Lines", "Triangles", "Bodies", "Bonds",
             "Angles", "Dihedrals", "Impropers", "Pair Coeffs", "PairIJ Coeffs", "Bond Coeffs",
             "Angle Coeffs", "Dihedral Coeffs", "Improper Coeffs", "BondBond Coeffs", "BondAngle Coeffs",
             "MiddleBondTorsion Coeffs", "EndBondTorsion Coeffs", "AngleTorsion Coeffs",
             "AngleAngleTorsion Coeffs", "BondBond13 Coeffs", "AngleAngle Coeffs", "Atom Type Labels",
             "Bond Type Labels", "Angle Type Labels", "Dihedral Type Labels", "Improper Type Labels")
"""Every section keyword of LAMMPS' read_data (a section's lines end at the next keyword)."""
_HEADER = ("atoms", "atom types", "xlo xhi", "ylo yhi", "zlo zhi", "xy xz yz", "avec", "bvec", "cvec",
           "abc origin")
# atom style -> (index of the type word, index of the x word) in an Atoms line (word 0 = atom id)
_STYLES = {"atomic": (1, 2), "charge": (1, 3), "full": (2, 4), "molecular": (2, 3), "bond": (2, 3),
           "angle": (2, 3)}


def _looks_like_lammps_data(path: Path) -> bool:
    try:
        head = path.read_text(errors="replace")[:4000]
    except OSError:
        return False
    return bool(re.search(r"^\s*\d+\s+atoms\s*(#.*)?$", head, re.M)) and bool(
        re.search(r"^\s*\d+\s+atom\s+types\s*(#.*)?$", head, re.M))


def read_lammps_data(path) -> Structure:
    """A LAMMPS data file (units metal; atom styles atomic, charge, full, molecular, bond, angle;
    image flags applied; type labels).

    Restricted triclinic: the cell origin (xlo, ylo, zlo) is moved to 0; rows a = (lx, 0, 0),
    b = (xy, ly, 0), c = (xz, yz, lz).  General triclinic (LAMMPS' `avec`, `bvec`, `cvec`,
    `abc origin` header lines; coordinates and velocities in that frame): rows a, b, c as given,
    the origin moved to 0.  Atoms are sorted by id; LAMMPS type k becomes type_id k - 1; a type
    written as its label (`Atom Type Labels` section) is that label's number.
    """
    path = Path(path)
    raw = path.read_text().splitlines()
    header: dict[str, list[float]] = {}
    sections: dict[str, list[tuple[int, list[str]]]] = {}
    style = None
    current = None
    for no, line in enumerate(raw[1:], start=2):
        text, _, comment = line.partition("#")
        words = text.split()
        if not words:
            continue
        name = " ".join(words)
        if name in _SECTIONS:
            current = name
            sections[current] = []
            if current == "Atoms" and comment.strip():
                style = comment.strip().split()[0]
            continue
        if current is None:
            for key in _HEADER:
                n = len(key.split())
                if " ".join(words[-n:]) == key:
                    try:
                        header[key] = [float(w) for w in words[:-n]]
                    except ValueError:
                        raise InputError(f"{path}:{no}: cannot read '{line.strip()}'") from None
                    if not np.all(np.isfinite(header[key])):
                        raise InputError(f"{path}:{no}: non-finite number in '{line.strip()}'")
                    if len(header[key]) != {"atoms": 1, "atom types": 1, "xy xz yz": 3}.get(key, 3 if key in (
                            "avec", "bvec", "cvec", "abc origin") else 2):
                        raise InputError(f"{path}:{no}: wrong count of numbers in '{line.strip()}'")
            continue
        sections[current].append((no, words))
    general = [key for key in ("avec", "bvec", "cvec", "abc origin") if key in header]
    if general and len(general) < 4:
        raise InputError(f"{path}: a general triclinic box needs the header lines avec, bvec, cvec and "
                         f"abc origin; found only {', '.join(general)}")
    for key in ("atoms",) + (() if general else ("xlo xhi", "ylo yhi", "zlo zhi")):
        if key not in header:
            raise InputError(f"{path}: header line '{key}' missing")
    natoms = int(header["atoms"][0])
    atoms = sections.get("Atoms")
    if atoms is None or len(atoms) != natoms:
        raise InputError(f"{path}: Atoms section has {0 if atoms is None else len(atoms)} lines, "
                         f"the header says {natoms} atoms")
    if style is None:
        ncol = len(atoms[0][1])
        if ncol in (5, 8):
            style = "atomic"
        else:
            raise InputError(f"{path}: Atoms lines have {ncol} columns; name the atom style in the "
                             f"section header, e.g. 'Atoms # full'")
    if style not in _STYLES:
        raise InputError(f"{path}: atom style '{style}' is not supported ({', '.join(_STYLES)})")
    labels: dict[str, int] = {}
    for no, w in sections.get("Atom Type Labels", []):
        try:
            labels[w[1]] = int(w[0])
            if len(w) != 2:
                raise IndexError
        except (ValueError, IndexError):
            raise InputError(f"{path}:{no}: cannot read an Atom Type Labels line (expected 'type label')") from None

    def atom_type(word: str, no: int) -> int:
        """The numeric type of `word`: a number, or a label of the Atom Type Labels section."""
        if word in labels:
            return labels[word]
        try:
            return int(word)
        except ValueError:
            raise InputError(f"{path}:{no}: atom type '{word}' is neither a number nor a label of the "
                             f"Atom Type Labels section") from None

    tcol, xcol = _STYLES[style]
    if general:
        lo = np.array(header["abc origin"])
        box = np.array([header["avec"], header["bvec"], header["cvec"]], dtype=np.float64)
    else:
        lo = np.array([header["xlo xhi"][0], header["ylo yhi"][0], header["zlo zhi"][0]])
        hi = np.array([header["xlo xhi"][1], header["ylo yhi"][1], header["zlo zhi"][1]])
        xy, xz, yz = header.get("xy xz yz", [0.0, 0.0, 0.0])
        box = np.array([[hi[0] - lo[0], 0, 0], [xy, hi[1] - lo[1], 0], [xz, yz, hi[2] - lo[2]]], dtype=np.float64)
    ids = np.empty(natoms, dtype=np.int64)
    types = np.empty(natoms, dtype=np.int64)
    pos = np.empty((natoms, 3))
    image = np.zeros((natoms, 3))
    for k, (no, w) in enumerate(atoms):
        try:
            ids[k] = int(w[0])
            types[k] = atom_type(w[tcol], no)
            pos[k] = [float(v) for v in w[xcol:xcol + 3]]
            if len(w) not in (xcol + 3, xcol + 6):   # the style's columns, with or without image flags
                raise IndexError
            if len(w) == xcol + 6:
                image[k] = [int(v) for v in w[xcol + 3:xcol + 6]]
        except (ValueError, IndexError):
            raise InputError(f"{path}:{no}: cannot read an '{style}' atom line: {' '.join(w)}") from None
        if not np.isfinite(pos[k]).all():
            raise InputError(f"{path}:{no}: atom {ids[k]} has a non-finite coordinate "
                             f"{' '.join(w[xcol:xcol + 3])}")
    order = np.argsort(ids, kind="stable")
    if np.any(np.diff(ids[order]) == 0):
        raise InputError(f"{path}: duplicate atom ids")
    pos = (pos - lo + image @ box)[order]
    types = types[order]
    ntypes = int(header.get("atom types", [types.max()])[0])
    if types.min() < 1 or types.max() > ntypes:
        raise InputError(f"{path}: atom types must lie in 1..{ntypes}")
    masses = None
    if "Masses" in sections:
        table = {}
        for no, w in sections["Masses"]:
            if len(w) < 2:
                raise InputError(f"{path}:{no}: cannot read a Masses line")
            try:
                table[atom_type(w[0], no)] = float(w[1])
            except ValueError:
                raise InputError(f"{path}:{no}: cannot read a Masses line") from None
            if not (np.isfinite(float(w[1])) and float(w[1]) > 0.0):
                raise InputError(f"{path}:{no}: the mass of type {w[0]} must be a positive number (amu), got {w[1]}")
        if all(t in table for t in np.unique(types)):
            masses = np.array([table[t] for t in types])
    velocities = None
    if "Velocities" in sections:
        vel = {}
        for no, w in sections["Velocities"]:
            try:
                vel[int(w[0])] = [float(v) for v in w[1:4]]
                if len(w) < 4:
                    raise IndexError
            except (ValueError, IndexError):
                raise InputError(f"{path}:{no}: cannot read a Velocities line") from None
            if not np.isfinite(vel[int(w[0])]).all():
                raise InputError(f"{path}:{no}: atom {w[0]} has a non-finite velocity {' '.join(w[1:4])}")
        extra = sorted(set(vel) - set(int(i) for i in ids))
        if extra:
            raise InputError(f"{path}: Velocities has a line for atom id {extra[0]}, which is not in the Atoms section")
        missing = [int(i) for i in ids if int(i) not in vel]
        if missing:
            raise InputError(f"{path}: Velocities has no line for atom id {missing[0]}")
        velocities = np.array([vel[int(i)] for i in ids[order]])
    return Structure(pos, box, None, types - 1, velocities, masses, str(path), first_type=1)


def lammps_box(box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(restricted triclinic cell H' (3, 3) lower-triangular with positive diagonal, Q (3, 3))
    with H' = H Q for the cell `box` H (rows = vectors): vectors v (rows) map to v Q."""
    import math

    a, b, c = box
    ax = np.linalg.norm(a)
    bx = b @ a / ax
    by = math.sqrt(max(b @ b - bx * bx, 0.0))
    cx = c @ a / ax
    cy = (b @ c - bx * cx) / by
    cz = math.sqrt(max(c @ c - cx * cx - cy * cy, 0.0))
    h = np.array([[ax, 0.0, 0.0], [bx, by, 0.0], [cx, cy, cz]])
    if np.linalg.det(box) < 0:
        raise InputError("a left-handed cell cannot be written as a LAMMPS box")
    if box[0, 1] == 0 and box[0, 2] == 0 and box[1, 2] == 0 and np.all(np.diag(box) > 0):
        return box.copy(), np.eye(3)  # already LAMMPS' form: no round-off from a rotation
    return h, np.linalg.solve(box, h)


def write_lammps_data(path, type_ids, positions, box, masses_by_type=None, comment="numdp",
                      velocities=None, pbc=(True, True, True), origin=None) -> None:
    """Write an `atomic` LAMMPS data file (units metal), as LAMMPS' write_data.

    type_ids (N,) 0-based (LAMMPS type = id + 1; the file declares max + 1 types, or
    len(masses_by_type)); positions (N, 3) Å; box (3, 3) rows = cell vectors, any right-handed
    cell: rotated into LAMMPS' restricted triclinic form (`lammps_box`), positions and
    velocities with it; positions wrapped into the box along the periodic vectors `pbc`, with
    image flags when any is non-zero; along a non-periodic vector the box is grown to hold atoms
    that left the cell (a slab; numdp.io.trajectory.frame_cell, as a dump's ``mm`` bounds), its
    origin then no longer 0, so that LAMMPS' read_data assigns every atom; masses_by_type (ntypes,)
    amu; velocities (N, 3) Å/ps: a Velocities section; origin: LAMMPS' box corner
    (numdp.io.trajectory.BoxOrigin; None: 0), added to the bounds and the positions (a slab's
    too: LAMMPS' fixed bounds are from its corner as the periodic ones).
    Numbers are written with 17 significant digits (float64 read back exactly, as LAMMPS'
    write_data's %.16e)."""
    from .trajectory import float_text as num, frame_cell

    box = np.asarray(box, dtype=np.float64)
    periodic = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    pos = np.asarray(positions, dtype=np.float64)
    h, q, o, _ = frame_cell(box, periodic, [pos])   # fully periodic: lammps_box's cell, origin 0
    pos = pos @ q
    frac = np.linalg.solve(h.T, (pos - o).T).T
    image = np.where(periodic, np.floor(frac), 0.0)
    moved = np.any(image != 0.0, axis=1)   # the other atoms keep their coordinates bit for bit
    pos[moved] -= image[moved] @ h
    if origin is not None:   # numdp's box from 0 to LAMMPS' from its corner (that of the cell, not
        corner = origin.corner(lammps_box(box)[0])   # of one grown along an open vector: frame_cell)
        o, pos = o + corner, pos + corner

    ntypes = max(int(np.max(type_ids)) + 1, 0 if masses_by_type is None else len(masses_by_type))
    lines = [f"# {comment}", "", f"{len(type_ids)} atoms", f"{ntypes} atom types", ""]
    lines += [f"{num(o[d])} {num(o[d] + h[d, d])} {'xyz'[d]}lo {'xyz'[d]}hi" for d in range(3)]
    if np.any(h[[1, 2, 2], [0, 0, 1]] != 0.0):
        lines.append(f"{num(h[1, 0])} {num(h[2, 0])} {num(h[2, 1])} xy xz yz")
    if masses_by_type is not None:
        lines += ["", "Masses", ""] + [f"{t + 1} {num(m)}" for t, m in enumerate(masses_by_type)]
    lines += ["", "Atoms # atomic", ""]
    flags = np.any(image != 0)
    for i, (t, x, n) in enumerate(zip(type_ids, pos, image.astype(np.int64))):
        lines.append(f"{i + 1} {int(t) + 1} {num(x[0])} {num(x[1])} {num(x[2])}"
                     + (f" {n[0]} {n[1]} {n[2]}" if flags else ""))
    if velocities is not None:
        vel = np.asarray(velocities, dtype=np.float64) @ q
        lines += ["", "Velocities", ""] + [f"{i + 1} {num(v[0])} {num(v[1])} {num(v[2])}"
                                           for i, v in enumerate(vel)]
    Path(path).write_text("\n".join(lines) + "\n")


def write_frame_lammps_data(path, frame: dict, lammps_types=None, comment: str = "numdp", origin=None) -> None:
    """Write a frame of numdp.io.h5md.read_frame (a checkpoint's, a trajectory's) as a LAMMPS data
    file, atomically.  lammps_types: (ntypes,) the LAMMPS type (0-based) of each model type index
    of the frame's species (default: the same index, numdp's "type 1 = type_map[0]").  Each
    type's mass is its atoms' (a type without atoms: the standard mass of its element); origin:
    LAMMPS' box corner (`write_lammps_data`)."""
    from ..units import standard_mass
    from .atomic import atomic_path

    species, type_map = frame["species"], frame["type_map"]
    if species is None or type_map is None:
        raise InputError(f"{path}: the frame has no species with a type_map; cannot write LAMMPS types")
    if frame["box"] is None:
        raise InputError(f"{path}: a LAMMPS data file needs a box; the frame has none (a cluster)")
    order = np.arange(len(type_map)) if lammps_types is None else np.asarray(lammps_types, dtype=np.int64)
    types = order[np.asarray(species, dtype=np.int64)]
    names = [""] * (int(order.max()) + 1)
    for k, t in enumerate(order):
        names[t] = type_map[k]
    masses = []
    for t, name in enumerate(names):
        present = np.flatnonzero(types == t)
        masses.append(float(frame["masses"][present[0]]) if present.size and frame["masses"] is not None
                      else standard_mass(name, f"{path}: the mass of type {t + 1}"))
    with atomic_path(path, "LAMMPS data file") as tmp:
        write_lammps_data(tmp, types, frame["positions"], frame["box"], masses, comment,
                          velocities=frame["velocities"], pbc=frame["pbc"] or (True, True, True), origin=origin)


# -- DeePMD npy system and H5MD --------------------------------------------------------------------


def read_npy_frame(path, frame: int = 0) -> Structure:
    """Frame `frame` of a DeePMD system: npy directory, HDF5 ``file.h5[#/group]`` or LMDB
    ``data.lmdb[#group]`` (numdp.io.npy_system); the location must hold exactly one system.  A
    mixed-type frame's virtual atoms (type -1, padding) are left out, as dpdata's reader does
    (LAMMPS has no such atom): the structure holds the frame's real atoms in their order."""
    from .npy_system import find_systems, load_system

    found = find_systems(path)
    if len(found) != 1:
        raise InputError(f"{path}: holds {len(found)} systems ({found[0]}, {found[1]}, ...); "
                         f"name one of them as the start structure")
    system = load_system(found[0])
    if not -system.nframes <= frame < system.nframes:
        raise InputError(f"{path}: frame {frame} does not exist (the system has {system.nframes} frames)")
    box = None if system.boxes is None else system.boxes[frame]
    types = system.types if system.frame_types is None else system.frame_types[frame]
    keep = types >= 0   # virtual atoms (mixed-type padding, type -1) left out, as dpdata reads the frame
    source = f"{path} frame {frame}" + ("" if keep.all() else f" ({int((~keep).sum())} virtual atoms left out)")
    if not keep.any():
        raise InputError(f"{path}: frame {frame} has only virtual atoms (type -1 in real_atom_types.npy); "
                         "it holds no structure")
    positions = system.coords[frame][keep]
    if system.type_map is not None:
        elements = [system.type_map[t] for t in types[keep]]
        return Structure(positions, box, elements, None, None, None, source)
    return Structure(positions, box, None, types[keep].astype(np.int64), None, None, source)


def read_h5md_structure(path, frame: int = -1) -> Structure:
    """Frame `frame` of an H5MD file (species mapped to names through numdp's stored type_map)."""
    from .h5md import read_frame

    return _h5md_structure(read_frame(path, frame), path, frame)


def iter_h5md_structures(path):
    """Every frame of an H5MD file as `read_h5md_structure` reads it, the file opened once."""
    from .h5md import frame_count, frame_of, open_for_reading

    path = Path(path)
    with open_for_reading(path, "as HDF5") as h5:
        for k in range(frame_count(h5, path)):
            yield _h5md_structure(frame_of(h5, path, k), path, k)


def _h5md_structure(f: dict, path, frame: int) -> Structure:
    """The Structure of frame `frame` of `path`, `f` as numdp.io.h5md.read_frame returns it."""
    elements = None
    type_ids = f["species"]
    if f["type_map"] is not None and type_ids is not None:
        elements = [f["type_map"][t] for t in type_ids]
        type_ids = None
    if elements is None and type_ids is None:
        raise InputError(f"{path}: the H5MD file has no species; cannot assign atom types")
    return Structure(f["positions"], f["box"], elements, type_ids, f["velocities"], f["masses"],
                     f"{path} frame {frame}", f.get("pbc"))


# -- operations ------------------------------------------------------------------------------------


MAX_ATOMS = 2**31 - 1
"""The most atoms a replicated start structure may have (LAMMPS' atom ids are 32-bit by default);
a replicate of more is a typo, which would otherwise fill the memory for minutes."""


def replica_shifts(s: Structure, reps, order: str = "numdp") -> tuple[np.ndarray, np.ndarray | None]:
    """(shifts (R, 3) Å, box) of tiling `s` reps = (na, nb, nc) times along its cell vectors: the
    offset of each replica, and the tiled cell.  order "numdp" (the default; ASE's Atoms.repeat):
    image-major, i over a slowest, k over c fastest; "lammps": i over a fastest, k over c slowest,
    LAMMPS' replicate (its new atom ids: id + (i + na (j + nb k)) * natoms).
    Replica r's atom i is atom r * natoms + i of the tiled structure, at s.positions[i] + shifts[r].
    InputError when reps repeats a vector that is not periodic."""
    reps = [int(r) for r in reps]
    if reps == [1, 1, 1]:
        return np.zeros((1, 3)), s.box
    total = s.natoms * math.prod(reps)
    if total > MAX_ATOMS:
        raise InputError(f"{s.source}: replicate {reps} makes {total:.4g} atoms, more than {MAX_ATOMS} "
                         f"(2^31 - 1, LAMMPS' limit on atom ids)")
    if s.box is None:
        raise InputError(f"{s.source}: replicate needs a periodic cell")
    for k in range(3):
        if reps[k] > 1 and s.pbc is not None and not s.pbc[k]:
            raise InputError(f"{s.source}: replicate {reps} repeats cell vector {'abc'[k]}, which is not periodic")
    if order == "lammps":
        images = [[i, j, k] for k in range(reps[2]) for j in range(reps[1]) for i in range(reps[0])]
    elif order == "numdp":
        images = [[i, j, k] for i in range(reps[0]) for j in range(reps[1]) for k in range(reps[2])]
    else:
        raise ValueError(f"replicate order {order!r}: expected 'numdp' or 'lammps'")
    shifts = np.array(images, dtype=np.float64) @ s.box
    return shifts, s.box * np.array(reps, dtype=np.float64)[:, None]


def replicate(s: Structure, reps, order: str = "numdp") -> Structure:
    """Tile a periodic structure reps = (na, nb, nc) times along its cell vectors (the replicas in
    `order`, "numdp" image-major or "lammps": `replica_shifts`)."""
    reps = [int(r) for r in reps]
    if reps == [1, 1, 1]:
        return s
    shifts, box = replica_shifts(s, reps, order)
    n = len(shifts)

    def tile(a):
        return None if a is None else np.tile(a, (n,) + (1,) * (a.ndim - 1))

    positions = (s.positions[None, :, :] + shifts[:, None, :]).reshape(-1, 3)
    return Structure(
        positions=positions,
        box=box,
        elements=None if s.elements is None else s.elements * n,
        type_ids=tile(s.type_ids),
        velocities=tile(s.velocities),
        masses=tile(s.masses),
        source=f"{s.source} x {reps[0]}x{reps[1]}x{reps[2]}",
        pbc=s.pbc,
        first_type=s.first_type,
    )


def assign_types(s: Structure, type_map: list[str], type_names: list[str] | None = None,
                 what: str = "[system]", key: str = "type_names",
                 hint: str = "[system] type_names") -> np.ndarray:
    """(N,) int32 model type of each atom.

    Atoms with element names are matched by name; numeric types are named by `type_names`
    (type_names[k] is the element of numeric type k, LAMMPS type k + 1) or, without it, used as
    model indices.  `type_names` for a structure whose atoms are named is an InputError: it would
    be ignored.  Messages: ``{what} {key}: ...`` for a bad `type_names` (what: the input, e.g.
    "md.toml: [system]"; key: how the input spells type_names, "pair_coeff" for numdp lmp);
    "name them with {hint}" for numeric types beyond the type_map.
    """
    names = s.elements
    if names is not None and type_names is not None:
        shown = ", ".join(dict.fromkeys(names))
        raise InputError(f"{what} {key}: {s.source} names its elements ({shown}); {key} "
                         f"names numeric atom types only: remove it")
    if names is None and type_names is not None:
        top = int(s.type_ids.max()) if s.natoms else -1
        if top >= len(type_names):
            raise InputError(f"{what} {key}: {len(type_names)} names, but {s.source} uses "
                             f"{top + 1} atom types")
        names = [type_names[t] for t in s.type_ids]
    if names is not None:
        return type_indices(names, type_map, str(s.source))
    if s.natoms and s.type_ids.min() < 0:
        raise InputError(f"{s.source}: negative atom type {int(s.type_ids.min()) + s.first_type}")
    top = int(s.type_ids.max()) if s.natoms else -1
    if top >= len(type_map):
        raise InputError(f"{s.source}: numeric atom types up to {top + s.first_type} do not fit the model's "
                         f"type_map {type_map}; name them with {hint}")
    return s.type_ids.astype(np.int32)
