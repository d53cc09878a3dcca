"""ASE calculator for numdp models: ``from numdp.ase import DPCalculator`` (extra ``numdp[ase]``).

    atoms.calc = DPCalculator("model.h5", precision="double", device="cpu", threads=None)

Properties (ASE units, eV and Å): energy, free_energy (= energy), forces (N, 3), virial (3, 3)
eV (DeePMD-kit's sign, -stress * volume, as its ASE calculator reports it), stress (6,)
Voigt xx yy zz yz xz xy in eV/Å³ with ASE's sign (stress = -virial / V, symmetrised), energies
(N,) per atom and stresses (N, 6) per atom (-atom_virial_i / V of the whole cell, symmetrised, so
that stresses.sum(axis=0) == stress as ASE's Calculator.get_stresses documents).  Elements map
through the model's type_map.  ``atoms.pbc`` is honoured: periodic along some cell vectors only
(a slab) is evaluated as such (numdp.neighbor.extend), no pbc at all as a cluster.  Results are
cached by ASE's Calculator machinery until the atoms (or atoms.info's fparam / aparam) change;
the calculator can be deep-copied and pickled (its model rebuilds itself: DPModel.__reduce__).
See docs/ase.md.

``DP`` is DeePMD-kit's calculator class (``deepmd.calculator.DP``) on numdp: the same
constructor (model, label, type_dict, neighbor_list, head, nlist_backend), so that
``from numdp.calculator import DP`` is the only change a DeePMD-kit ASE script needs.
"""
from __future__ import annotations

import copy
import inspect
from os import PathLike

import numpy as np
try:
    from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
    from ase.stress import full_3x3_to_voigt_6_stress
except ImportError as exc:   # name the extra that installs it
    raise ModuleNotFoundError(f"numdp.ase needs ASE: pip install 'numdp[ase]' ({exc})", name="ase") from exc

from .errors import InputError
from .io.type_map import type_indices
from .infer import DeepPot
from .model.dp_model import DPModel, model_of

__all__ = ["DP", "DPCalculator"]


# The keywords ASE's Calculator.__init__ takes itself; any other keyword it would store as a
# calculation parameter (Calculator.set), which numdp's calculators do not have: a misspelled
# numdp keyword (precison=) would then be ignored without a word.
ASE_KEYWORDS = tuple(name for name, par in inspect.signature(Calculator.__init__).parameters.items()
                     if name != "self" and par.kind is not inspect.Parameter.VAR_KEYWORD)


def _check_keywords(who: str, kwargs: dict, own: tuple) -> None:
    """InputError for the first keyword of `kwargs` that is not one of ASE's Calculator
    (ASE_KEYWORDS); `own` lists the calculator's own keywords for the message."""
    ase = [k for k in ASE_KEYWORDS if k not in own and k != "ignore_bad_restart_file"]   # deprecated by ASE
    for key in kwargs:
        if key not in ASE_KEYWORDS:
            raise InputError(f"{who}: unknown keyword argument '{key}' (numdp's: {', '.join(own)}; "
                             f"ASE's: {', '.join(ase)})")


class DPCalculator(Calculator):
    """ASE calculator evaluating a numdp or DeePMD-kit se_e2_a model.

    model: path of a .h5 (numdp) or .dp (DeePMD-kit) model, a loaded numdp DPModel or a
    numdp.DeepPot (then precision, device and threads are the model's own and must be left at
    their defaults; `numdp.model.dp_model.model_of`).
    precision: "double", "mix32" or "mix16"; device: "cpu" or "cuda"; threads: worker threads (None:
    numdp's default, see numdp.model.dp_model.default_threads).  A model with frame parameters
    (numb_fparam) takes them from ``atoms.info["fparam"]`` (as DeePMD-kit's calculator), else
    uses its default_fparam; one with atomic parameters (numb_aparam) from
    ``atoms.info["aparam"]``: (natoms, numb_aparam) (any array of natoms * numb_aparam values)
    or (numb_aparam,) for every atom, else the model's own (`DPModel.set_aparam`).
    Other keywords: those of ASE's Calculator (ASE_KEYWORDS: restart, label, atoms, directory);
    any other is an InputError, as is any keyword to `set` (the calculator has no ASE
    parameters: precision, device and threads are fixed when the model is loaded).
    """

    implemented_properties = ["energy", "free_energy", "forces", "virial", "stress", "energies", "stresses"]
    type_dict: dict[str, int] | None = None
    """Element → model type index used instead of the model's type_map (DP's `type_dict`)."""
    _own_keywords = ("model", "precision", "device", "threads")
    """The constructor's own keywords, as unknown-keyword messages list them."""
    _inputs_used: dict = {}
    """Copies of atoms.info["fparam"] and ["aparam"] of the last calculation (`check_state`)."""

    def __init__(self, model: str | PathLike | DPModel | DeepPot, precision: str = "double",
                 device: str = "cpu", threads: int | None = None, **kwargs):
        from .validate import checked_threads

        who = type(self).__name__
        _check_keywords(who, kwargs, self._own_keywords)
        threads = checked_threads(threads, f"{who}: threads")
        super().__init__(**kwargs)
        self.model = model_of(model, who, precision, threads, device)

    def set(self, **kwargs):
        """ASE's parameter setter: numdp's calculators have no ASE parameters, so any keyword is
        an InputError (ASE's Calculator.__init__ calls it with none); returns {} (nothing changed)."""
        if kwargs:
            raise InputError(f"{type(self).__name__}.set: unknown keyword argument '{next(iter(kwargs))}' "
                             f"(precision, device and threads are fixed when the model is loaded)")
        return {}

    def check_state(self, atoms, tol: float = 1e-15) -> list[str]:
        """ASE's changes since the last calculation (positions, numbers, cell, pbc, ...), plus
        "fparam" / "aparam" when ``atoms.info["fparam"]`` / ``["aparam"]`` (the model's frame
        and atomic parameters, which change its results) differ from the last calculation's:
        ASE's own check does not look at atoms.info, so cached results would be returned."""
        changes = super().check_state(atoms, tol)
        for key, used in self._inputs_used.items():   # copies: ASE's atoms.copy() shares info's arrays
            if not np.array_equal(np.asarray(used, dtype=object),
                                  np.asarray(atoms.info.get(key), dtype=object)):
                changes.append(key)
        return changes

    def types_of(self, atoms) -> np.ndarray:
        """Model type index (N,) int32 of each atom of `atoms`; InputError for an unknown element."""
        symbols = atoms.get_chemical_symbols()
        if self.type_dict is None:
            return type_indices(symbols, self.model.type_map, type(self).__name__)
        out = np.empty(len(symbols), dtype=np.int32)
        for i, s in enumerate(symbols):
            if s not in self.type_dict:
                raise InputError(f"{type(self).__name__}: atom {i} is {s!r}, an element not in "
                                 f"type_dict {self.type_dict}")
            out[i] = self.type_dict[s]
        return out

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        self._inputs_used = {key: copy.deepcopy(atoms.info.get(key)) for key in ("fparam", "aparam")}
        pbc = tuple(bool(p) for p in atoms.pbc)
        box = np.array(atoms.cell.array) if any(pbc) else None
        want_atomic_stress = "stresses" in properties
        out = self.model.evaluate(atoms.positions, self.types_of(atoms), box,
                                  atom_virial=want_atomic_stress, pbc=pbc if any(pbc) else None,
                                  fparam=atoms.info.get("fparam"), aparam=atoms.info.get("aparam"))
        self.results = {
            "energy": out.energy,
            "free_energy": out.energy,
            "energies": out.atom_energies.copy(),
            "forces": out.forces,
            "virial": np.asarray(out.virial).reshape(3, 3).copy(),
        }
        volume = abs(float(np.linalg.det(atoms.cell.array)))
        if volume > 0.0:
            self.results["stress"] = _voigt(-out.virial / volume)
            if want_atomic_stress:
                per_atom = -out.atom_virials.reshape(-1, 3, 3) / volume
                self.results["stresses"] = np.array([_voigt(s) for s in per_atom])
        elif "stress" in properties or "stresses" in properties:
            raise PropertyNotImplementedError(
                "stress needs a cell with non-zero volume; these atoms have cell "
                f"{atoms.cell.array.tolist()} (pbc {list(pbc)})")


def _voigt(s: np.ndarray) -> np.ndarray:
    """Symmetrised 3x3 -> Voigt (xx, yy, zz, yz, xz, xy)."""
    return full_3x3_to_voigt_6_stress(0.5 * (s + s.T))


class DP(DPCalculator):
    """DeePMD-kit's ASE calculator (``deepmd.calculator.DP``) on numdp.

    model: a model file (anything numdp.load_model reads); label: the calculator's label;
    type_dict: element → model type index (default: the model's type_map); neighbor_list (an ASE
    NeighborList) and nlist_backend change only how DeePMD-kit finds neighbours, never the
    result: accepted and unused; head: None (numdp models are single-task).  Keyword arguments
    precision, device and threads are numdp's (DPCalculator); restart, atoms and directory go to
    ASE's Calculator; any other is an InputError.
    ``atoms.info["fparam"]`` and ``["aparam"]``: the frame and atomic parameters of a model that
    takes them (DPCalculator); charge_spin is refused: numdp reads no model that takes it.
    """

    name = "DP"
    """ASE's calculator name (DeePMD-kit's; ASE's default would be the lower-case class name)."""
    _own_keywords = ("model", "label", "type_dict", "neighbor_list", "head", "nlist_backend",
                     "precision", "device", "threads")

    def __init__(self, model, label: str = "DP", type_dict: dict[str, int] | None = None,
                 neighbor_list=None, head: str | None = None, nlist_backend: str = "auto", **kwargs):
        del neighbor_list, nlist_backend
        if head is not None:
            raise InputError(f"DP: head={head!r}: numdp models are single-task; leave it out")
        super().__init__(model, label=label, **kwargs)
        if type_dict:
            ntypes = len(self.model.type_map)
            if not isinstance(type_dict, dict) or not all(
                    isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in type_dict.values()):
                raise InputError(f"DP: type_dict must map element names to integer model types, "
                                 f"got {type_dict!r}")
            bad = {k: v for k, v in type_dict.items() if not 0 <= int(v) < ntypes}
            if bad:
                raise InputError(f"DP: type_dict {bad}: type indices must be in 0..{ntypes - 1} "
                                 f"(type_map {self.model.type_map})")
            self.type_dict = {str(k): int(v) for k, v in type_dict.items()}

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        source = atoms if atoms is not None else self.atoms
        value = None if source is None else source.info.get("charge_spin")
        if value is not None and np.size(value) != 0:
            raise InputError("DP: atoms.info['charge_spin'] given but the model takes no charge_spin")
        super().calculate(atoms, properties, system_changes)
