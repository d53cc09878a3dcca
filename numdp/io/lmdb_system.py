"""DeePMD-kit's LMDB datasets (``dp --pt train`` with ``"systems": "data.lmdb"``), read as systems.

An LMDB dataset is a directory holding ``data.mdb`` (its name usually ends in ``.lmdb``) whose
records are msgpack maps:

    __metadata__      nframes (required); frame_idx_fmt (format of a frame's key, default
                      "012d"); type_map (element name of each type index, optional);
                      frame_nlocs (atoms of each frame, optional); others are not read
    000000000000 ...  one frame each, key format(i, frame_idx_fmt) for i < nframes:
        atom_types    (natoms,)        type index of each atom (into the metadata's type_map);
                      -1 marks a virtual atom (padding), as in real_atom_types.npy
        coords        (natoms, 3)  Å   required
        cells         (3, 3)       Å   rows are cell vectors; absent or all zero: non-periodic
        energies      ()           eV  optional label
        forces        (natoms, 3)  eV/Å
        virials       (3, 3)       eV
        atom_ener, atom_pref, atom_ener_coeff (natoms,); fparam (nfp,); aparam (natoms, nap):
                      as the npy files of those names (numdp.io.npy_system); an ``atomic_``
                      prefix reads as ``atom_``, and the singular names coord, box, energy,
                      force, virial, atype are read too, as DeePMD-kit does
        find_<label>  0 marks <label> as absent from the frame although stored

Each array is a map {type: NumPy dtype name, shape: [...], data: raw bytes}.  Other keys
(atom_names, atom_numbs, orig of dpdata's frames; spin) are not read: like DeePMD-kit, the atom
types index the metadata's type_map, else the model's.

Frames of one atom count and one set of labels (and cells or none) form one numdp `System`, as
DeePMD-kit's LMDB reader batches them (same atom count, same labels): its location is
``data.lmdb#nloc=N``, and ``data.lmdb#nloc=N:energy+force`` (``:nopbc`` for frames without a
cell) where frames of N atoms differ in their labels.  Frames of one group whose atoms have
different types, or with virtual atoms (type -1: frames padded to a common count, as
DeePMD-kit's LMDB reader takes them), form a mixed-type system (`System.frame_types`): readers
take each frame's real atoms only (numdp.io.npy_system.real_atoms).  `find_lmdb_systems` lists the
groups of a dataset; `load_lmdb_system` reads one.  Reading needs the ``lmdb`` and ``msgpack``
packages (``pip install 'numdp[lmdb]'``).
"""
from __future__ import annotations

import collections
import functools
import pathlib
from dataclasses import dataclass

import numpy as np

from numdp.errors import InputError
from numdp.io.location import DataLocation

_KEYS = {"coords": "coord", "cells": "box", "energies": "energy", "forces": "force",
         "atom_types": "atype", "virials": "virial"}
"""LMDB frame keys -> DeePMD-kit's data names (the singular names are read as they are)."""

LMDB_LABELS = ("energy", "force", "virial", "atom_ener", "atom_pref", "atom_ener_coeff", "fparam", "aparam")
"""The labels a frame may hold, in numdp.io.npy_system.LABELS' order."""


def is_lmdb(path) -> bool:
    """True if `path` (a location, ``#group`` allowed) names an LMDB dataset: a directory
    holding data.mdb, or a name ending in .lmdb (whose absence `load_lmdb_system` reports)."""
    root = DataLocation.parse(path).path
    return root.suffix.lower() == ".lmdb" or (root / "data.mdb").is_file()


def _modules(where=None):
    try:
        import lmdb
        import msgpack
    except ImportError as err:
        raise InputError(f"{'' if where is None else f'{where}: '}reading LMDB datasets needs the lmdb and "
                         f"msgpack packages ({err.name} is missing): pip install 'numdp[lmdb]'") from None
    return lmdb, msgpack


def _decode(value, where: str):
    """A frame value: an encoded array -> ndarray, anything else as it is."""
    if isinstance(value, dict):
        get = (lambda k: value.get(k, value.get(k.encode())))
        kind, data, shape = get("type"), get("data"), get("shape")
        if kind is not None and data is not None:
            try:
                dtype = np.dtype(kind.decode() if isinstance(kind, bytes) else kind)
                arr = np.frombuffer(data, dtype=dtype)
                return arr.reshape(tuple(shape)) if shape is not None else arr
            except (TypeError, ValueError) as err:
                raise InputError(f"{where}: not a readable array ({err})") from None
    return value


def _frame_names(frame: dict) -> dict:
    """The frame's keys under DeePMD-kit's data names (numdp.io.lmdb_system._KEYS, atomic_ -> atom_)."""
    out = {}
    for key, value in frame.items():
        key = key.decode() if isinstance(key, bytes) else str(key)
        name = _KEYS.get(key, key)
        if name.startswith("find_atomic_"):
            name = "find_atom_" + name[len("find_atomic_"):]
        elif name.startswith("atomic_"):
            name = "atom_" + name[len("atomic_"):]
        out[name] = value
    return out


def _present(frame: dict, name: str) -> bool:
    """Whether the frame holds label `name` (stored, and not marked absent by find_<name>)."""
    if name not in frame:
        return False
    flag = frame.get(f"find_{name}")
    if flag is None:
        return True
    flag = _decode(flag, name)
    return bool(float(np.asarray(flag).reshape(-1)[0]))


@dataclass(frozen=True)
class _Frame:
    """What grouping needs of one frame."""

    nloc: int
    pbc: bool
    labels: tuple[str, ...]


@dataclass
class _Dataset:
    """The metadata of a dataset and the frames of each group, keyed by group name."""

    root: pathlib.Path
    fmt: str
    type_map: list[str] | None
    groups: dict[str, list[int]]


def _check_root(root: pathlib.Path) -> None:
    if not root.is_dir():
        raise InputError(f"{root}: LMDB dataset (a directory holding data.mdb) does not exist")
    if not (root / "data.mdb").is_file():
        raise InputError(f"{root}: not an LMDB dataset (no data.mdb in it)")


def _open(root: pathlib.Path):
    lmdb, _ = _modules(root)
    _check_root(root)
    try:
        return lmdb.open(str(root), readonly=True, lock=False, readahead=False, subdir=True)
    except lmdb.Error as err:
        raise InputError(f"{root}: not a readable LMDB dataset ({err})") from None


def _metadata(root: pathlib.Path, txn, msgpack) -> tuple[int, str, list[str] | None]:
    raw = txn.get(b"__metadata__")
    if raw is None:
        raise InputError(f"{root}: no __metadata__ record (not a DeePMD-kit LMDB dataset)")
    meta = _frame_names(msgpack.unpackb(raw, raw=False))
    nframes = meta.get("nframes")
    if not isinstance(nframes, int) or nframes < 1:
        raise InputError(f"{root}: __metadata__ nframes is {nframes!r}, expected a positive integer")
    fmt = meta.get("frame_idx_fmt", "012d")
    try:
        format(0, fmt)
    except (TypeError, ValueError):
        raise InputError(f"{root}: __metadata__ frame_idx_fmt {fmt!r} is not an integer format") from None
    type_map = meta.get("type_map")
    if type_map is not None:
        if not (isinstance(type_map, list) and type_map and all(isinstance(n, str) for n in type_map)):
            raise InputError(f"{root}: __metadata__ type_map is {type_map!r}, expected element names")
        type_map = list(type_map)
    return nframes, fmt, type_map


def _read_frame(root: pathlib.Path, txn, msgpack, fmt: str, i: int) -> dict:
    key = format(i, fmt).encode()
    raw = txn.get(key)
    if raw is None:
        raise InputError(f"{root}: frame {i} (record {key.decode()}) is missing; __metadata__ gives "
                         "more frames than the dataset holds")
    try:
        frame = msgpack.unpackb(raw, raw=False)
    except Exception as err:   # msgpack raises several unrelated types for damaged records
        raise InputError(f"{root}: frame {i}: not a msgpack record ({err})") from None
    if not isinstance(frame, dict):
        raise InputError(f"{root}: frame {i}: not a map of arrays")
    return _frame_names(frame)


def _summary(root: pathlib.Path, i: int, frame: dict) -> _Frame:
    for name in ("coord", "atype"):
        if name not in frame:
            raise InputError(f"{root}: frame {i} has no {name} (every frame needs atom_types and coords)")
    atype = _decode(frame["atype"], f"{root}: frame {i}: atom_types")
    nloc = int(np.asarray(atype).size)
    if nloc == 0:
        raise InputError(f"{root}: frame {i} holds no atoms")
    pbc = "box" in frame and bool(np.any(np.asarray(_decode(frame["box"], f"{root}: frame {i}: cells")) != 0))
    return _Frame(nloc, pbc, tuple(n for n in LMDB_LABELS if _present(frame, n)))


def _scan(root: pathlib.Path) -> _Dataset:
    """Read the metadata and group every frame (numdp.io.lmdb_system module docstring); kept for
    the dataset's data.mdb as it is (path, size, modification time), so that loading each of
    many groups reads the frames once for the grouping."""
    _modules(root)
    _check_root(root)
    st = (root / "data.mdb").stat()
    return _scan_cached(str(root), str(root.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _scan_cached(text: str, resolved: str, size: int, mtime_ns: int) -> _Dataset:
    root = pathlib.Path(text)
    _, msgpack = _modules()
    env = _open(root)
    try:
        with env.begin() as txn:
            nframes, fmt, type_map = _metadata(root, txn, msgpack)
            summaries = [_summary(root, i, _read_frame(root, txn, msgpack, fmt, i)) for i in range(nframes)]
    finally:
        env.close()
    by_kind: dict[_Frame, list[int]] = {}
    for i, s in enumerate(summaries):
        by_kind.setdefault(s, []).append(i)
    kinds_per_nloc = collections.Counter(kind.nloc for kind in by_kind)
    groups = {}
    for kind in sorted(by_kind, key=lambda k: (k.nloc, not k.pbc, k.labels)):
        name = f"nloc={kind.nloc}"
        if kinds_per_nloc[kind.nloc] > 1:
            name += ":" + ("+".join(kind.labels) or "unlabelled") + ("" if kind.pbc else ":nopbc")
        groups[name] = by_kind[kind]
    return _Dataset(root, fmt, type_map, groups)


def _split(path) -> tuple[pathlib.Path, str | None]:
    """(dataset root, group name or None for the whole dataset: no location or an empty one)."""
    loc = DataLocation.parse(path)
    return loc.path, loc.location or None


def location(root: pathlib.Path, group: str) -> pathlib.Path:
    """The location of group `group` of the dataset at `root` (``root#group``)."""
    return DataLocation(pathlib.Path(root), group).as_path()


def find_lmdb_systems(path) -> list[pathlib.Path]:
    """The systems (groups of frames) of the LMDB dataset at `path`, in order of atom count;
    `path` itself if it names one group."""
    root, group = _split(path)
    data = _scan(root)
    if group is not None:
        _group_frames(data, group)
        return [location(root, group)]
    return [location(root, name) for name in data.groups]


def lmdb_groups(path) -> dict[str, list[int]]:
    """The groups of frames of the LMDB dataset at `path`: group name -> frame indices (in
    order), the groups in order of atom count."""
    return {name: list(frames) for name, frames in _scan(_split(path)[0]).groups.items()}


def _group_frames(data: _Dataset, group: str) -> list[int]:
    frames = data.groups.get(group)
    if frames is None:
        raise InputError(f"{data.root}#{group}: no such group of frames; the dataset has "
                         f"{', '.join(data.groups)}")
    return frames


def load_lmdb_system(path):
    """The `numdp.io.npy_system.System` of one group of an LMDB dataset (``data.lmdb#nloc=N``;
    ``data.lmdb`` alone when all its frames form one group)."""
    from numdp.io.npy_system import System

    root, group = _split(path)
    data = _scan(root)
    if group is None:
        if len(data.groups) > 1:
            raise InputError(f"{root}: holds {len(data.groups)} groups of frames ({', '.join(data.groups)}): "
                             f"name one as {root}#GROUP, or pass the dataset where several systems are read")
        group = next(iter(data.groups))
    frames = _group_frames(data, group)
    where = location(root, group)
    _, msgpack = _modules()
    env = _open(root)
    try:
        with env.begin() as txn:
            arrays = [_frame_arrays(root, i, _read_frame(root, txn, msgpack, data.fmt, i), data.type_map)
                      for i in frames]
    finally:
        env.close()
    for name, first in arrays[0].items():
        for i, a in zip(frames, arrays):
            if a[name].shape != first.shape:
                raise InputError(f"{root}: frame {i}: {name} has shape {a[name].shape}, frame {frames[0]} "
                                 f"{first.shape} (one width for the frames of {group})")
    stacked = {name: np.stack([a[name] for a in arrays]) for name in arrays[0]}
    atype = stacked.pop("atype")
    # virtual atoms (-1) make a mixed-type system even when every frame has them in one place:
    # readers find them through `System.frame_types` (`System.has_virtual`, `real_atoms`)
    same = bool((atype == atype[0]).all()) and not (atype < 0).any()
    return System(
        path=where,
        types=atype[0].copy(),
        type_map=data.type_map,
        coords=stacked["coord"],
        boxes=stacked.get("box"),
        energy=stacked.get("energy"),
        forces=stacked.get("force"),
        virial=stacked.get("virial"),
        atom_ener=stacked.get("atom_ener"),
        atom_pref=stacked.get("atom_pref"),
        atom_ener_coeff=stacked.get("atom_ener_coeff"),
        frame_types=None if same else atype,
        fparam=stacked.get("fparam"),
        aparam=stacked.get("aparam"),
        type_map_source=f"{root} (__metadata__ type_map)",
        types_source=f"{where} (atom_types)",
    )


_SHAPES = {"coord": ("n", 3), "box": (3, 3), "energy": (), "force": ("n", 3), "virial": (3, 3),
           "atom_ener": ("n",), "atom_pref": ("n",), "atom_ener_coeff": ("n",)}


def _real(root: pathlib.Path, i: int, name: str, value, nloc: int) -> np.ndarray:
    """Array `name` of frame i as float64 of its per-frame shape (fparam (nfp,), aparam
    (natoms, nap) of any width), finite; InputError naming the frame otherwise."""
    where = f"{root}: frame {i}: {name}"
    arr = np.asarray(_decode(value, where))
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{where}: holds {arr.dtype}, expected real numbers")
    if name == "fparam":
        shape = (arr.size,)
    elif name == "aparam":
        if arr.size % nloc:
            raise InputError(f"{where}: {arr.size} numbers for {nloc} atoms (expected nap per atom)")
        shape = (nloc, arr.size // nloc)
    else:
        shape = tuple(nloc if d == "n" else d for d in _SHAPES[name])
        if arr.size != int(np.prod(shape)):
            raise InputError(f"{where}: shape {arr.shape} does not fit {shape} for {nloc} atoms")
    arr = arr.astype(np.float64).reshape(shape)
    if not np.isfinite(arr).all():
        raise InputError(f"{where}: contains non-finite numbers (nan or inf)")
    return arr


def _frame_arrays(root: pathlib.Path, i: int, frame: dict, type_map: list[str] | None) -> dict:
    """The arrays of frame i (float64; atype int32), the labels it holds."""
    atype = np.asarray(_decode(frame["atype"], f"{root}: frame {i}: atom_types")).reshape(-1)
    if atype.dtype.kind not in "iu" and not (atype.dtype.kind == "f" and (atype == np.round(atype)).all()):
        raise InputError(f"{root}: frame {i}: atom_types holds {atype.dtype}, expected integer type indices")
    atype = atype.astype(np.int64)
    bad = np.flatnonzero(atype < -1)
    if bad.size:
        raise InputError(f"{root}: frame {i}, atom {bad[0]}: type {atype[bad[0]]} is not a type index "
                         "(-1 marks a virtual atom)")
    if type_map is not None:
        bad = np.flatnonzero(atype >= len(type_map))
        if bad.size:
            raise InputError(f"{root}: frame {i}, atom {bad[0]}: type {atype[bad[0]]} is not an index into "
                             f"the __metadata__ type_map's {len(type_map)} elements {type_map}")
    nloc = atype.size
    out = {"atype": atype.astype(np.int32), "coord": _real(root, i, "coord", frame["coord"], nloc)}
    if "box" in frame:
        box = _real(root, i, "box", frame["box"], nloc)
        if box.any():
            if abs(np.linalg.det(box)) <= 1e-6 * np.prod(np.linalg.norm(box, axis=1)):
                raise InputError(f"{root}: frame {i} has a degenerate cell (zero volume)")
            out["box"] = box
    for name in LMDB_LABELS:
        if _present(frame, name):
            out[name] = _real(root, i, name, frame[name], nloc)
    return out
