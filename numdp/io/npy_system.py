"""Reader for DeePMD-kit's "system" data, stored as npy folders or as HDF5 groups.

A system holds a fixed number and order of atoms::

    type.raw        natoms integers, 0-based type index of each atom (required)
    type_map.raw    element name of each type index (optional)
    nopbc           empty file marking a non-periodic system (optional)
    set.000/ ...    blocks of frames, read in lexicographic order:
        coord.npy   (nframes, natoms*3)  Å     required
        box.npy     (nframes, 9)         Å     rows are cell vectors; required unless nopbc
        energy.npy  (nframes,)           eV    optional label
        force.npy   (nframes, natoms*3)  eV/Å  optional label
        virial.npy  (nframes, 9)         eV    optional label
        atom_ener.npy        (nframes, natoms)  eV  optional: atomic energies (loss pref_ae)
        atom_pref.npy        (nframes, natoms)      optional: force weights (loss pref_pf)
        atom_ener_coeff.npy  (nframes, natoms)      optional: energy coefficients c_i of
                                                    E = Σ c_i e_i (enable_atom_ener_coeff)
        fparam.npy           (nframes, nfp)         optional: frame parameters, the input of a
                                                    model with numb_fparam = nfp
        aparam.npy           (nframes, natoms*nap)  optional: atomic parameters, nap per atom in
                                                    type.raw's order, the input of a model with
                                                    numb_aparam = nap

DeePMD-kit's mixed-type layout (dpdata's ``deepmd/npy/mixed``, ``deepmd/hdf5/mixed``) gives each
frame its own atom types: every set holds ``real_atom_types.npy`` (nframes, natoms), indices into
type_map.raw (required then), and type.raw only fixes the number of atoms.  `System.frame_types`
holds them; `frame_model_types` gives every reader the types of each frame, of either layout.
Type -1 marks a virtual atom (dpdata's padding, ``atom_numb_pad``: frames of fewer atoms filled
up to a common count): it stays -1 in `frame_model_types`, and a reader takes each frame's real
atoms only (`real_atoms`), as DeePMD-kit 3.2 evaluates such a frame without them.

A label must be present in every set or in none.  Arrays may be stored as any real dtype and are
returned as float64.  Every problem raises `numdp.errors.InputError` naming the offending file.

Two stores hold that layout (`SystemStore`): a directory of files (`deepmd/npy`), or a group of an
HDF5 file (`deepmd/hdf5`, numdp.io.h5_system), where each file name above is a dataset or subgroup
name of the group.  A system location is a path: a directory, or ``data.h5#/group`` (``data.h5``
alone is its root group), or a group of frames of a DeePMD-kit LMDB dataset, ``data.lmdb#nloc=N``
(numdp.io.lmdb_system).  `load_system` and `find_systems` take any of them, so callers never
branch.
"""

from __future__ import annotations

import glob
import pathlib
import dataclasses
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from numdp.errors import InputError
from numdp.io.type_map import table_types

LABELS = ("energy", "force", "virial", "atom_ener", "atom_pref", "atom_ener_coeff", "fparam", "aparam")
ATOM_LABELS = ("atom_ener", "atom_pref", "atom_ener_coeff")
"""The labels of one number per atom, (nframes, natoms) (DeePMD-kit's training loss options)."""
_INT32_MAX = np.iinfo(np.int32).max


@dataclass
class System:
    """All frames of one system (npy or HDF5), concatenated over its sets in order.

    Attributes:
        path: the system location: its directory, or ``file.h5#/group`` for an HDF5 system.
        types: (natoms,) int32 type index of each atom, as stored in type.raw.
        type_map: element name of each type index, from type_map.raw; None if that file is absent.
        coords: (nframes, natoms, 3) float64 positions in Å.
        boxes: (nframes, 3, 3) float64 cells in Å, rows are the cell vectors; None if nopbc.
        energy: (nframes,) float64 total energies in eV; None if not labelled.
        forces: (nframes, natoms, 3) float64 forces in eV/Å; None if not labelled.
        virial: (nframes, 3, 3) float64 virials in eV (DeePMD sign: -stress * volume);
            None if not labelled.
        atom_ener: (nframes, natoms) float64 atomic energies in eV; None if not labelled.
        atom_pref: (nframes, natoms) float64 force-loss weights per atom; None if absent.
        atom_ener_coeff: (nframes, natoms) float64 coefficients of the frame energy
            E = Σ_i c_i e_i; None if absent.
        frame_types: (nframes, natoms) int32 type index (into type_map) of each atom of each
            frame, for a mixed-type system (real_atom_types.npy); None otherwise (every frame has
            `types`).
        fparam: (nframes, nfp) float64 frame parameters (fparam.npy), the input of a model with
            numb_fparam = nfp; None if absent.
        aparam: (nframes, natoms, nap) float64 atomic parameters (aparam.npy), the input of a
            model with numb_aparam = nap; None if absent.
        type_map_source, types_source: where `type_map` and the atom types were read, for
            messages; None for the npy / HDF5 layout (type_map.raw, type.raw or
            real_atom_types.npy).
        unfit: "fparam" / "aparam" → the message saying why that file does not fit the frames
            (its attribute is then None): raised only where a model takes those parameters, as
            DeePMD-kit reads them only then (`fparam_rows`, `aparam_rows`).
    """

    path: pathlib.Path
    types: np.ndarray
    type_map: list[str] | None
    coords: np.ndarray
    boxes: np.ndarray | None
    energy: np.ndarray | None
    forces: np.ndarray | None
    virial: np.ndarray | None
    atom_ener: np.ndarray | None = None
    atom_pref: np.ndarray | None = None
    atom_ener_coeff: np.ndarray | None = None
    frame_types: np.ndarray | None = None
    fparam: np.ndarray | None = None
    aparam: np.ndarray | None = None
    type_map_source: str | None = None
    types_source: str | None = None
    unfit: dict[str, str] = dataclasses.field(default_factory=dict)

    PER_FRAME = ("coords", "boxes", "energy", "forces", "virial") + ATOM_LABELS + ("frame_types", "fparam",
                                                                                   "aparam")
    """The attributes indexed by frame (first axis), absent ones None."""

    @property
    def natoms(self) -> int:
        """Number of atoms per frame."""
        return len(self.types)

    def select(self, frames) -> System:
        """The system of the frames `frames` (indices, in that order)."""
        idx = np.asarray(frames, dtype=np.int64)
        return dataclasses.replace(self, **{k: None if getattr(self, k) is None else getattr(self, k)[idx]
                                            for k in self.PER_FRAME})

    def fparam_rows(self, nfp: int, default, owner: str) -> np.ndarray | None:
        """The frame parameters (nframes, nfp) of this system's frames for `owner` (a model or a
        training input, named in messages) that takes nfp of them: fparam.npy, else `default`
        ((nfp,) or None) in every row; None when nfp is 0 (fparam.npy is then not read, as
        DeePMD-kit does).  InputError naming the system when both are missing or fparam.npy has
        another width."""
        if nfp == 0:
            return None
        if "fparam" in self.unfit:
            raise InputError(self.unfit["fparam"])
        if self.fparam is None:
            if default is None:
                raise InputError(f"{self.path}: {owner} takes {nfp} frame parameter(s) (numb_fparam) and has "
                                 f"no default_fparam; the system has no fparam.npy")
            return np.tile(np.asarray(default, dtype=np.float64), (self.nframes, 1))
        if self.fparam.shape[1] != nfp:
            raise InputError(f"{self.path}: fparam.npy has {self.fparam.shape[1]} parameter(s) per frame, "
                             f"{owner} takes {nfp} (numb_fparam)")
        return self.fparam

    def aparam_rows(self, nap: int, owner: str) -> np.ndarray | None:
        """The atomic parameters (nframes, natoms, nap) of this system's frames for `owner` (a
        model or a training input, named in messages) that takes nap per atom: aparam.npy; None
        when nap is 0 (aparam.npy is then not read, as DeePMD-kit does).  InputError naming the
        system when it is missing or has another width."""
        if nap == 0:
            return None
        if "aparam" in self.unfit:
            raise InputError(self.unfit["aparam"])
        if self.aparam is None:
            raise InputError(f"{self.path}: {owner} takes {nap} atomic parameter(s) per atom (numb_aparam); "
                             f"the system has no aparam.npy")
        if self.aparam.shape[2] != nap:
            raise InputError(f"{self.path}: aparam.npy has {self.aparam.shape[2]} parameter(s) per atom, "
                             f"{owner} takes {nap} (numb_aparam)")
        return self.aparam

    def model_fparam(self, model) -> np.ndarray | None:
        """`fparam_rows` for `model` (a numdp DPModel): its numb_fparam and default_fparam."""
        return self.fparam_rows(model.numb_fparam, model.source_params.fitting.default_fparam, "the model")

    def model_aparam(self, model) -> np.ndarray | None:
        """`aparam_rows` for `model` (a numdp DPModel): its numb_aparam."""
        return self.aparam_rows(model.numb_aparam, "the model")

    @property
    def nframes(self) -> int:
        """Number of frames over all sets."""
        return len(self.coords)

    @property
    def nopbc(self) -> bool:
        """True for a non-periodic system (no boxes)."""
        return self.boxes is None

    def model_types(self, model_type_map: list[str], whose: str = "the model's type_map") -> np.ndarray:
        """(natoms,) int32 type of each atom as an index into `model_type_map`.

        With a type_map.raw the atoms are mapped by element name; only elements that atoms
        actually use must appear in `model_type_map`.  Without one the stored indices are used
        as they are and must be smaller than len(model_type_map).  `whose` names the type map
        in messages.  A mixed-type system has no such vector: `frame_model_types` serves both.
        """
        if self.frame_types is not None:
            raise TypeError(f"{self.path}: a mixed-type system has types per frame (frame_model_types)")
        if self.type_map is None:
            return self._unmapped_types(model_type_map, whose)
        return table_types(self.type_map, self.types, model_type_map,
                           self.type_map_source or str(self.path / "type_map.raw"), whose)

    def frame_model_types(self, model_type_map: list[str], whose: str = "the model's type_map") -> np.ndarray:
        """(nframes, natoms) int32 type of each atom of each frame as an index into
        `model_type_map`: `model_types` for every frame (a read-only broadcast view), or a
        mixed-type system's per-frame types mapped by element name."""
        if self.frame_types is None:
            return np.broadcast_to(self.model_types(model_type_map, whose), (self.nframes, self.natoms))
        if self.type_map is None:
            return self._unmapped_types(model_type_map, whose, self.frame_types)
        flat = self.frame_types.reshape(-1)
        virtual = flat < 0
        if virtual.all():
            return np.full(self.frame_types.shape, -1, dtype=np.int32)
        # virtual atoms looked up as a real atom's element (the same message for an unknown one), then -1
        out = table_types(self.type_map, np.where(virtual, flat[np.argmin(virtual)], flat), model_type_map,
                          self.types_source or str(self.path / "set.*" / "real_atom_types.npy"), whose)
        out[virtual] = -1
        return out.reshape(self.frame_types.shape)

    @property
    def has_virtual(self) -> bool:
        """Whether some frame has virtual atoms (type -1 in real_atom_types.npy)."""
        return self.frame_types is not None and bool((self.frame_types < 0).any())

    def _unmapped_types(self, model_type_map: list[str], whose: str, types: np.ndarray | None = None) -> np.ndarray:
        types = self.types if types is None else types
        top = int(types.max())
        if top >= len(model_type_map):
            where = self.types_source or str(self.path / 'type.raw')
            raise InputError(
                f"{where}: type index {top} is out of range for {whose} "
                f"{list(model_type_map)} (no type map to map element names)"
            )
        return types.copy()


def real_atoms(types: np.ndarray) -> slice | np.ndarray:
    """The real atoms of one frame whose types (N,) may mark virtual atoms with -1 (mixed-type
    padding): slice(None) when every atom is real (indexing then gives views), else the (N,)
    bool mask types >= 0."""
    real = np.asarray(types) >= 0
    return slice(None) if real.all() else real


class SystemStore(Protocol):
    """Where the members of one system live: a directory (npy) or an HDF5 group.

    Member names are relative paths such as ``type.raw`` or ``set.000/coord.npy``.
    """

    location: pathlib.Path
    """The system location, used in messages as ``location / member``."""
    set_kind: str
    """What a set is called in messages ("directories" or "groups")."""

    def has(self, name: str) -> bool:
        """True if member `name` exists (file or dataset, or for ``nopbc`` anything)."""

    def words(self, name: str) -> list[str]:
        """Whitespace-separated words of a ``.raw`` member (InputError if unreadable)."""

    def array(self, name: str) -> np.ndarray:
        """The array of a ``.npy`` member as stored (InputError if missing or unreadable)."""

    def set_names(self, prefix: str = "set") -> list[str]:
        """Names of the ``PREFIX.*`` subfolders or subgroups (``set.*``), sorted."""


class NpyFolder:
    """`SystemStore` of a `deepmd/npy` system directory."""

    set_kind = "directories"

    def __init__(self, path: pathlib.Path):
        self.location = pathlib.Path(path)

    def has(self, name: str) -> bool:
        return (self.location / name).exists()

    def words(self, name: str) -> list[str]:
        file = self.location / name
        try:
            text = file.read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise InputError(f"{file}: cannot read ({err})") from None
        if "\0" in text:   # ndarray.tofile or np.save under this name: no text to split
            raise InputError(f"{file}: binary data (NUL bytes), not text: write one entry per line as text "
                             f"(np.savetxt(..., fmt=\"%d\") for type indices)")
        return text.split()

    def array(self, name: str) -> np.ndarray:
        file = self.location / name
        if not file.is_file():
            raise InputError(f"{file}: missing")
        try:
            return np.load(file, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise InputError(f"{file}: not a readable .npy file ({err})") from None

    def set_names(self, prefix: str = "set") -> list[str]:
        return sorted(d.name for d in self.location.glob(f"{glob.escape(prefix)}.*") if d.is_dir())


def load_system(path, set_prefix: str = "set") -> System:
    """Read the system at `path`: an npy directory, ``file.h5[#/group]`` or ``data.lmdb[#group]``
    (module docstring),
    its frames from the ``SET_PREFIX.*`` sets (DeePMD-kit's `dp test -S`)."""
    from numdp.io.h5_system import H5Group, h5_location
    from numdp.io.lmdb_system import is_lmdb, load_lmdb_system

    if is_lmdb(path):
        return load_lmdb_system(path)
    path = pathlib.Path(path)
    located = None if path.is_dir() else h5_location(path)
    if located is None:
        if path.is_file():
            raise InputError(f"{path}: neither a system directory nor an HDF5 file")
        if not path.is_dir():
            raise InputError(f"{path}: system directory does not exist")
        return read_system(NpyFolder(path), set_prefix)
    store = H5Group(*located)
    try:
        return read_system(store, set_prefix)
    finally:
        store.close()


def read_system(store: SystemStore, set_prefix: str = "set") -> System:
    """Read one system from `store` (see the module docstring for the layout), its frames from
    the ``SET_PREFIX.*`` sets."""
    type_map = _read_type_map(store)
    types = _read_types(store, type_map)
    nopbc = store.has("nopbc")
    set_names = store.set_names(set_prefix)
    if not set_names:
        raise InputError(f"{store.location}: no {set_prefix}.* {store.set_kind} with frames")
    unfit: dict[str, str] = {}
    sets = [_read_set(store, d, len(types), nopbc, unfit) for d in set_names]
    for name in unfit:   # unusable in every set (the first message tells why), before the checks
        for arrays in sets:   # across sets, which the placeholders would fail (width 0)
            arrays.pop(name, None)
    _check_labels_consistent(store, set_names, sets)
    frame_types = _read_frame_types(store, set_names, sets, type_map)
    arrays = {name: np.concatenate([s[name] for s in sets]) for name in sets[0]}
    return System(
        path=store.location,
        types=types,
        type_map=type_map,
        coords=arrays["coord"],
        boxes=arrays.get("box"),
        energy=arrays.get("energy"),
        forces=arrays.get("force"),
        virial=arrays.get("virial"),
        **{name: arrays.get(name) for name in ATOM_LABELS},
        frame_types=frame_types,
        fparam=arrays.get("fparam"),
        aparam=arrays.get("aparam"),
        unfit=unfit,
    )


def _read_frame_types(store: SystemStore, set_names: list[str], sets: list[dict[str, np.ndarray]],
                      type_map: list[str] | None) -> np.ndarray | None:
    """(nframes, natoms) int32 per-frame types of a mixed-type system (every set holds
    real_atom_types.npy), or None for a standard one."""
    member = "real_atom_types.npy"
    having = [d for d in set_names if store.has(f"{d}/{member}")]
    if not having:
        return None
    lacking = [d for d in set_names if d not in having]
    if lacking:
        raise InputError(f"{store.location / lacking[0] / member}: missing, but {having[0]} has it "
                         "(a mixed-type system has per-frame types in every set)")
    if type_map is None:
        raise InputError(f"{store.location / 'type_map.raw'}: missing (a mixed-type system's "
                         f"{member} are indices into it)")
    out = []
    for d, arrays in zip(set_names, sets):
        file = store.location / d / member
        coord = arrays["coord"]
        raw = _load_npy(store, f"{d}/{member}")
        if coord.shape[0] == 1 and raw.ndim == 1:
            raw = raw.reshape(1, -1)   # one frame without its frame axis, as in _read_set
        t = _shaped(file, raw, coord.shape[0], coord.shape[1], (coord.shape[1],))
        bad = np.argwhere((t != np.round(t)) | (t < -1) | (t >= len(type_map)))
        if bad.size:
            f, a = (int(i) for i in bad[0])
            raise InputError(f"{file}: frame {f}, atom {a}: type {t[f, a]:g} is not an index into "
                             f"type_map.raw's {len(type_map)} elements {type_map}")
        out.append(t.astype(np.int32))
    return np.concatenate(out)


def find_systems(root, patterns: list[str] | None = None) -> list[pathlib.Path]:
    """Systems at or below `root`: `root` itself if it holds type.raw, else every directory below
    it that does and every LMDB dataset below it (sorted by path); for an HDF5 file
    ``file.h5[#/group]``, every group holding type.raw; an LMDB dataset gives its groups of
    frames (numdp.io.lmdb_system).  With `patterns` (DeePMD-kit's ``rglob_patterns``) `root` must
    be a folder: the systems are the folders below it that match a pattern (``Path.rglob``) and
    hold type.raw or are LMDB datasets, sorted (DeePMD-kit's order is a set's)."""
    from numdp.io.h5_system import find_h5_systems, h5_location
    from numdp.io.lmdb_system import find_lmdb_systems, is_lmdb

    if patterns is not None:
        return _find_matching(pathlib.Path(root), patterns)
    if is_lmdb(root):
        return find_lmdb_systems(root)
    root = pathlib.Path(root)
    located = None if root.is_dir() else h5_location(root)
    if located is not None:
        return find_h5_systems(*located)
    if root.is_file():
        raise InputError(f"{root}: neither a data directory nor an HDF5 file")
    if not root.is_dir():
        raise InputError(f"{root}: data directory (or HDF5 file) does not exist")
    if (root / "type.raw").is_file():
        return [root]
    found = sorted({p.parent for name in ("type.raw", "data.mdb") for p in root.rglob(name) if p.is_file()})
    if not found:
        raise InputError(f"{root}: no system (directory holding type.raw, or LMDB dataset) found")
    return _with_lmdb_groups(found)


def _with_lmdb_groups(folders: list[pathlib.Path]) -> list[pathlib.Path]:
    """`folders` (npy systems and LMDB datasets, in order) with each dataset replaced by its
    groups of frames."""
    from numdp.io.lmdb_system import find_lmdb_systems, is_lmdb

    return [s for p in folders for s in (find_lmdb_systems(p) if is_lmdb(p) else [p])]


def _find_matching(root: pathlib.Path, patterns: list[str]) -> list[pathlib.Path]:
    """`find_systems` with DeePMD-kit's rglob_patterns."""
    from numdp.io.lmdb_system import is_lmdb

    if not root.is_dir() or is_lmdb(root):
        raise InputError(f"{root}: rglob_patterns {patterns} search the folders below a folder; this is "
                         f"{'not a folder' if not root.exists() or not root.is_dir() else 'an LMDB dataset'}")
    found = sorted({d for pattern in patterns for d in root.rglob(pattern)
                    if d.is_dir() and ((d / "type.raw").is_file() or is_lmdb(d))})
    if not found:
        raise InputError(f"{root}: no system (folder holding type.raw, or LMDB dataset) below it matches "
                         f"rglob_patterns {patterns}")
    return _with_lmdb_groups(found)


def _read_type_map(store: SystemStore) -> list[str] | None:
    if not store.has("type_map.raw"):
        return None
    names = store.words("type_map.raw")
    if not names:
        raise InputError(f"{store.location / 'type_map.raw'}: holds no element names")
    return names


def _read_types(store: SystemStore, type_map: list[str] | None) -> np.ndarray:
    file = store.location / "type.raw"
    if not store.has("type.raw"):
        raise InputError(f"{file}: missing (every system needs one type index per atom)")
    words = store.words("type.raw")
    if not words:
        raise InputError(f"{file}: holds no atoms")
    types = [_type_index(file, atom, w) for atom, w in enumerate(words)]
    if type_map is not None:
        for atom, t in enumerate(types):
            if t >= len(type_map):
                raise InputError(
                    f"{file}: atom {atom} has type index {t}, but type_map.raw "
                    f"lists only {len(type_map)} elements {type_map}"
                )
    return np.asarray(types, dtype=np.int32)


def _type_index(file: pathlib.Path, atom: int, word: str) -> int:
    """The type index `word` of atom `atom`: an integer, or a whole number in a float spelling
    (``np.savetxt`` without fmt writes ``1.000000000000000000e+00``; DeePMD-kit reads type.raw
    with np.loadtxt and casts, so it trains on such files).  A fraction, which DeePMD-kit would
    truncate, is refused."""
    try:
        t = int(word)
    except ValueError:
        try:
            value = float(word)
        except ValueError:
            raise InputError(f"{file}: atom {atom}: {_quoted(word)} is not an integer type index") from None
        if not value.is_integer():
            raise InputError(f"{file}: atom {atom}: {_quoted(word)} is not a whole number (a type index)") from None
        t = int(value)
    if not 0 <= t <= _INT32_MAX:
        raise InputError(f"{file}: atom {atom} has invalid type index {t} (must be >= 0, int32)")
    return t


def _quoted(word: str, limit: int = 24) -> str:
    """repr(word), cut to its first `limit` characters and "..." when longer (a message's line)."""
    return repr(word) if len(word) <= limit else repr(word[:limit]) + "..."


def _read_set(store: SystemStore, set_name: str, natoms: int, nopbc: bool,
              unfit: dict[str, str]) -> dict[str, np.ndarray]:
    """Arrays of one set keyed by file stem, each shaped (nframes, *per-frame shape).  An
    fparam.npy / aparam.npy whose shape does not fit the frames is kept with a placeholder (an
    empty array) and its message put in `unfit` (the first per name), for `System.unfit`."""
    coord = _one_frame(_load_npy(store, f"{set_name}/coord.npy"), natoms * 3)
    nframes = _frame_count(store.location / set_name / "coord.npy", coord, natoms)
    names = ["coord"] if nopbc else ["coord", "box"]
    names += [name for name in LABELS if store.has(f"{set_name}/{name}.npy")]
    out = {}
    for name in names:
        member = f"{set_name}/{name}.npy"
        arr = coord if name == "coord" else _load_npy(store, member)
        if nframes == 1 and (arr.ndim == 0 or arr.shape[0] != 1) and (
                name in ("fparam", "aparam") or arr.size == int(np.prod(_frame_shape(name, natoms)))):
            arr = arr.reshape(1, -1)   # one frame stored without its frame axis (see _one_frame)
        shape = _frame_shape(name, natoms)
        if name == "fparam" and arr.ndim and arr.shape[0] == nframes:
            shape = (int(arr[0].size),)   # the model's numb_fparam, checked where it is used
        if name == "aparam" and arr.ndim and arr.shape[0] == nframes and natoms and arr[0].size % natoms == 0:
            shape = (natoms, int(arr[0].size) // natoms)   # numb_aparam per atom, checked where used
        try:
            out[name] = _shaped(store.location / member, arr, nframes, natoms, shape)
        except InputError as exc:
            if name not in ("fparam", "aparam"):
                raise
            unfit.setdefault(name, str(exc))
            out[name] = np.zeros(0)
    if "box" in out:
        _check_cells(store.location / set_name / "box.npy", out["box"])
    return out


def _frame_shape(name: str, natoms: int) -> tuple[int, ...]:
    """Shape of one frame of array `name` (coord, box, a label)."""
    if name in ("coord", "force"):
        return (natoms, 3)
    if name in ATOM_LABELS:
        return (natoms,)
    return (3, 3) if name in ("box", "virial") else ()


def _load_npy(store: SystemStore, name: str) -> np.ndarray:
    """A real-valued, finite array from member `name` of `store`, as float64."""
    file = store.location / name
    arr = store.array(name)
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        kind = arr.dtype if isinstance(arr, np.ndarray) else type(arr).__name__
        raise InputError(f"{file}: holds {kind}, expected a real-valued array")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise InputError(f"{file}: contains non-finite numbers (nan or inf)")
    return arr


def _check_cells(file: pathlib.Path, boxes: np.ndarray) -> None:
    """Every cell must span a volume: rows linearly independent."""
    volumes = np.abs(np.linalg.det(boxes))
    flat = np.flatnonzero(volumes <= 1e-6 * np.linalg.norm(boxes, axis=2).prod(axis=1))
    if flat.size:
        hint = (": all zero; a system without periodic boundaries has an empty file nopbc beside "
                "type.raw (its box.npy is not read)" if not boxes[flat[0]].any() else "")
        raise InputError(f"{file}: frame {flat[0]} has a degenerate cell (zero volume){hint}")


def _one_frame(coord: np.ndarray, size: int) -> np.ndarray:
    """A coord.npy of one frame stored without the frame axis ((natoms*3,), `size` numbers) as
    (1, natoms*3): DeePMD-kit reads a 1-D coord.npy as one frame and every other array of that
    set as that frame's numbers, whatever their shape (``np.save`` of one frame's arrays)."""
    return coord.reshape(1, size) if coord.ndim == 1 and coord.size == size else coord


def _frame_count(file: pathlib.Path, coord: np.ndarray, natoms: int) -> int:
    """Number of frames in coord.npy, which must be (nframes, natoms*3)."""
    if coord.ndim != 2 or coord.shape[1] != natoms * 3:
        raise InputError(
            f"{file}: shape {coord.shape} is not (nframes, {natoms * 3}) for {natoms} atoms"
        )
    if coord.shape[0] == 0:
        raise InputError(f"{file}: holds no frames")
    return coord.shape[0]


def _shaped(
    file: pathlib.Path, arr: np.ndarray, nframes: int, natoms: int, per_frame: tuple
) -> np.ndarray:
    """`arr` reshaped to (nframes, *per_frame); any layout with nframes rows of the right size."""
    size = int(np.prod(per_frame))
    if arr.ndim == 0 or arr.shape[0] != nframes or arr[0].size != size:
        flat = (nframes,) if per_frame == () else (nframes, size)
        raise InputError(
            f"{file}: shape {arr.shape} does not match {nframes} frames of {natoms} atoms "
            f"(expected {flat})"
        )
    return arr.reshape((nframes, *per_frame))


def _check_labels_consistent(
    store: SystemStore, set_names: list[str], sets: list[dict[str, np.ndarray]]
) -> None:
    """Each label must be in every set or in none."""
    for name in LABELS:
        having = [d for d, s in zip(set_names, sets) if name in s]
        lacking = [d for d, s in zip(set_names, sets) if name not in s]
        if having and lacking:
            raise InputError(
                f"{store.location / lacking[0] / (name + '.npy')}: missing, but {having[0]} has it "
                "(a label must be in every set or in none)"
            )
    for name, per in (("fparam", "frame"), ("aparam", "atom")):
        widths = {s[name].shape[-1] for s in sets if name in s}
        if len(widths) > 1:
            raise InputError(f"{store.location}: {name}.npy has {sorted(widths)} parameters per {per} in "
                             f"different sets (one width for the whole system)")
