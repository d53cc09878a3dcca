"""Element names onto a model's type_map: the one place where atoms get their model types.

Every reader that meets element names (structure files, DeePMD-kit npy systems, ASE atoms, dpdata
systems, i-PI's ``--types``) maps them here, so an unknown element is the same one-line
InputError everywhere: where it came from, the element, the first atom that has it, and the
type_map it is missing from.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InputError


def type_indices(names: Sequence[str], type_map: Sequence[str], where: str,
                 whose: str = "the model's type_map") -> np.ndarray:
    """(len(names),) int32 index into `type_map` of each atom's element name.

    where: the source named at the start of the error line (a file, an option, a class);
    whose: how the type map is named in it.
    """
    lookup = {name: k for k, name in enumerate(type_map)}
    out = np.empty(len(names), dtype=np.int32)
    for i, name in enumerate(names):
        k = lookup.get(name)
        if k is None:
            raise _unknown(where, i, name, type_map, whose)
        out[i] = k
    return out


def table_types(atom_names: Sequence[str], atom_types, type_map: Sequence[str], where: str,
                whose: str = "the model's type_map") -> np.ndarray:
    """(natoms,) int32 model type of each atom of a system that stores a table of element
    names and, per atom, an index into that table (DeePMD-kit's type_map.raw / type.raw,
    dpdata's atom_names / atom_types).

    Only the names that atoms use must be in `type_map` (a dpdata MultiSystems gives every
    system all of its names, most with no atoms); the error names the first atom of an unknown
    element.
    """
    atom_types = np.asarray(atom_types, dtype=np.int64)
    lookup = np.full(len(atom_names), -1, dtype=np.int32)
    for t in np.unique(atom_types):
        if atom_names[t] not in type_map:
            first = int(np.flatnonzero(atom_types == t)[0])
            raise _unknown(where, first, atom_names[t], type_map, whose)
        lookup[t] = list(type_map).index(atom_names[t])
    return lookup[atom_types]


def _unknown(where: str, atom: int, name: str, type_map: Sequence[str], whose: str) -> InputError:
    return InputError(f"{where}: atom {atom} is {name!r}, an element not in {whose} "
                      f"{list(type_map)}")
