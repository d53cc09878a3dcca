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
                 whose: str = "the model's type_map", atoms: Sequence[int] | None = None) -> np.ndarray:
    """(len(names),) int32 index into `type_map` of each atom's element name.

    where: the source named at the start of the error line (a file, an option, a class);
    whose: how the type map is named in it; atoms: the atom number the error gives for
    names[i] (default i).
    """
    lookup = {name: k for k, name in enumerate(type_map)}
    out = np.empty(len(names), dtype=np.int32)
    for i, name in enumerate(names):
        k = lookup.get(name)
        if k is None:
            raise InputError(f"{where}: atom {i if atoms is None else int(atoms[i])} is {name!r}, "
                             f"an element not in {whose} {list(type_map)}")
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
    used, first = np.unique(atom_types, return_index=True)
    lookup = np.full(len(atom_names), -1, dtype=np.int32)
    lookup[used] = type_indices([atom_names[t] for t in used], type_map, where, whose, atoms=first)
    return lookup[atom_types]
