"""DeePMD-kit's `deepmd/hdf5` systems: the npy system layout as groups and datasets of an HDF5 file.

A system is a group; each file of the npy layout (numdp.io.npy_system) is a member of that group
under the same name, as DeePMD-kit reads and dpdata writes them::

    type.raw          dataset (natoms,) integers
    type_map.raw      dataset (ntypes,) byte strings (optional)
    nopbc             any member (dpdata writes a scalar True); its presence marks non-periodic
    set.000/          subgroup holding datasets coord.npy (nframes, natoms*3), box.npy (nframes, 9),
                      energy.npy (nframes,), force.npy (nframes, natoms*3), virial.npy (nframes, 9)

A location is written ``data.h5#/group`` (DeePMD-kit's "#" convention, numdp.io.location);
``data.h5`` alone is the root group.  `find_h5_systems` returns every group at or below a
location that holds type.raw.
"""
from __future__ import annotations

import pathlib

import h5py
import numpy as np

from numdp.errors import InputError
from numdp.io.location import DataLocation


def h5_location(path) -> tuple[pathlib.Path, str] | None:
    """(file, group) if `path` names an HDF5 system location, else None.

    ``file.h5#/a/b`` (split by numdp.io.location) -> (file.h5, "/a/b") whether or not the file
    exists (opening it reports that; ``#a/b/`` is read as ``#/a/b``, an empty location as the
    root group "/"); a path without a location is HDF5 only if it is an existing HDF5 file
    (group "/").
    """
    loc = DataLocation.parse(path)
    if loc.location is not None:
        return loc.path, "/" + loc.location.strip("/")
    if loc.path.is_file() and h5py.is_hdf5(loc.path):
        return loc.path, "/"
    return None


def location(file: pathlib.Path, group: str) -> pathlib.Path:
    """The path that names group `group` of `file` (``file#/group``)."""
    return DataLocation(pathlib.Path(file), group).as_path()


class H5Group:
    """`numdp.io.npy_system.SystemStore` of one group of an HDF5 file (opened read-only)."""

    set_kind = "groups"

    def __init__(self, file: pathlib.Path, group: str = "/"):
        self.file = pathlib.Path(file)
        self.location = location(self.file, group)
        if not self.file.is_file():
            raise InputError(f"{self.file}: " + ("a folder: only an HDF5 file or an LMDB dataset holds a #LOCATION"
                                                 if self.file.is_dir() else "HDF5 data file not found"))
        try:
            self._h5 = h5py.File(self.file, "r")
        except OSError as err:
            raise InputError(f"{self.file}: not a readable HDF5 file ({err})") from None
        obj = self._h5.get(group)
        if not isinstance(obj, h5py.Group):
            self._h5.close()
            what = "no such group" if obj is None else "is a dataset, not a group"
            raise InputError(f"{self.file}#{group}: {what} in the HDF5 file")
        self.group = obj

    def _dataset(self, name: str) -> h5py.Dataset:
        obj = self.group.get(name)
        if obj is None:
            raise InputError(f"{self.location / name}: missing")
        if not isinstance(obj, h5py.Dataset):
            raise InputError(f"{self.location / name}: is a group, expected a dataset")
        return obj

    def has(self, name: str) -> bool:
        return name in self.group

    def words(self, name: str) -> list[str]:
        data = self._dataset(name)[()]
        try:
            if isinstance(data, (bytes, str)):
                return (data.decode() if isinstance(data, bytes) else data).split()
            arr = np.asarray(data).ravel()
            if arr.dtype.kind in "SO":
                return [w for x in arr for w in (x.decode() if isinstance(x, bytes) else str(x)).split()]
            if arr.dtype.kind == "U":
                return [w for x in arr for w in str(x).split()]
            if arr.dtype.kind in "biu":
                return [str(int(x)) for x in arr]
            return [str(x) for x in arr]
        except UnicodeDecodeError as err:
            raise InputError(f"{self.location / name}: cannot decode text ({err})") from None

    def array(self, name: str) -> np.ndarray:
        return np.asarray(self._dataset(name)[()])

    def set_names(self, prefix: str = "set") -> list[str]:
        return sorted(k for k, v in self.group.items() if k.startswith(prefix + ".") and isinstance(v, h5py.Group))

    def close(self) -> None:
        self._h5.close()


def find_h5_systems(file: pathlib.Path, group: str = "/") -> list[pathlib.Path]:
    """Locations of the systems at or below `group` of `file`: the group itself if it holds
    type.raw, else every group below it that does (sorted by name)."""
    store = H5Group(file, group)
    try:
        if "type.raw" in store.group:
            return [store.location]
        found: list[str] = []

        def visit(name, obj):
            if isinstance(obj, h5py.Group) and "type.raw" in obj:
                found.append(name)

        store.group.visititems(visit)
        trajectory = not found and ("h5md" in store._h5 or "particles" in store._h5)
    finally:
        store.close()
    if not found:
        what = (": an H5MD trajectory or checkpoint, not DeePMD data (numdp convert writes its frames "
                "as extxyz; label them, e.g. with dpdata, for DeePMD data)" if trajectory else "")
        raise InputError(f"{file}#{group}: no system (group holding type.raw) found{what}")
    base = group.rstrip("/")
    return [location(file, f"{base}/{name}") for name in sorted(found)]
