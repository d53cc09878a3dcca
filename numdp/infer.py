"""`numdp.infer.DeepPot`: DeePMD-kit 3.x's Python inference class for energy models, on numdp.

A script written for DeePMD-kit migrates with one import::

    from numdp.infer import DeepPot          # was: from deepmd.infer import DeepPot
    dp = DeepPot("model.dp")
    e, f, v = dp.eval(coords, cells, atom_types)

`eval` takes DeePMD-kit's argument shapes and returns its shapes, dtypes (float64) and signs;
frames are evaluated one after another by `numdp.model.dp_model.DPModel.evaluate`.  Keyword
arguments of DeePMD-kit that change nothing in numdp are accepted (table ACCEPTED_KWARGS), those
that would change the result are refused unless they hold DeePMD-kit's default (REFUSED_KWARGS),
anything else is an InputError naming it.  docs/python-api.md has the whole contract.
"""
from __future__ import annotations

import copy
from types import MappingProxyType
from typing import Any

import numpy as np

from .errors import InputError

# Constructor keyword arguments of DeePMD-kit that change only speed or memory in DeePMD-kit (the
# neighbour list an ASE class would build holds the same neighbours as numdp's own: same rcut,
# same sel truncation), so accepting and ignoring them cannot change a result.
ACCEPTED_KWARGS = frozenset({"auto_batch_size", "neighbor_list", "no_jit", "nlist_backend"})

# Constructor keyword arguments that select something numdp models do not have (a multi-task
# head, TensorFlow graph plumbing): accepted only with DeePMD-kit's default value.
REFUSED_KWARGS = MappingProxyType({"head": None, "load_prefix": "load", "default_tf_graph": False,
                                   "input_map": None})

# `eval` keyword arguments of DeePMD-kit for inputs numdp's se_e2_a energy models do not take;
# None (DeePMD-kit's default) is accepted, anything else refused.
NONE_ONLY_EVAL_KWARGS = ("efield", "spin", "charge_spin")

DESCRIPTOR_DTYPES = MappingProxyType({"native": None, "fp32": np.float32, "fp64": np.float64})
"""`eval_descriptor`'s output dtypes (DeePMD-kit's names; native = the model's, float64)."""


def _numbers(who: str, name: str, value) -> np.ndarray:
    """`value` as an array of numbers in its own dtype (a view of a NumPy array of integers or
    floats: frames are converted to float64 one at a time by `DPModel.evaluate`, so that nframes
    float32 frames are not copied whole); anything else converted to float64."""
    arr = np.asarray(value)
    if arr.dtype.kind in "iuf":
        return arr
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{who}: {name} is not an array of numbers ({exc})") from None


def _net_size(nets) -> int:
    """Number of trainable numbers (weights, biases, idt) of the nets `nets`."""
    return sum(layer.w.size + layer.b.size + (0 if layer.idt is None else layer.idt.size)
               for net in nets for layer in net.layers)


def _standard_params(who: str, name: str, value, full: tuple) -> np.ndarray | None:
    """`value` (the frame or atomic parameters `name` of DeepPot.eval) as a float64 array of shape
    `full` = (nframes, ..., width): any array whose size is that of a trailing part of `full`
    ((width,), (natoms, width), the whole), repeated over the leading axes; None when the model
    takes none (width 0) or none are given (None or empty)."""
    if full[-1] == 0 or value is None or np.size(value) == 0:
        return None
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{who}: {name} is not an array of numbers ({exc})") from None
    for k in range(len(full) - 1, -1, -1):
        if arr.size == int(np.prod(full[k:])):
            return np.broadcast_to(arr.reshape(full[k:]), full)
    # (nframes, natoms * width) as DeePMD-kit writes it, then the trailing parts but the last
    shapes = [(full[0], int(np.prod(full[1:])))] + [full[k:] for k in range(1, len(full) - 1)]
    expected = ", ".join(str(sh) for sh in shapes)
    getter = "get_dim_fparam" if name == "fparam" else "get_dim_aparam"
    raise InputError(f"{who}: {name} has shape {arr.shape}; expected {expected} or ({full[-1]},) "
                     f"({getter}() == {full[-1]})")


class DeepPot:
    """A DeePMD-kit-compatible evaluator of a numdp (.h5) or DeePMD-kit (.dp) energy model.

    model_file: path of the model (anything `numdp.load_model` reads).  Keyword-only numdp
    options: precision "double" | "mix32" | "mix16", device "cpu" | "cuda", threads (worker
    threads, default as numdp.load_model).  DeePMD-kit's other keyword arguments: see the module
    docstring.  Every mistake is a numdp.errors.InputError with a one-line message.
    """

    def __init__(self, model_file, *, precision: str = "double", device: str = "cpu",
                 threads: int | None = None, **kwargs: Any):
        for key, value in kwargs.items():
            if key in ACCEPTED_KWARGS:
                continue
            if key in REFUSED_KWARGS:
                if value != REFUSED_KWARGS[key]:
                    raise InputError(f"DeepPot: {key}={value!r} is not supported by numdp "
                                     f"(single-task se_e2_a energy models only); leave it out")
                continue
            raise InputError(f"DeepPot: unknown keyword argument '{key}'")
        from . import load_model
        from .validate import checked_threads

        self.model_file = model_file
        self.model = load_model(model_file, nthreads=checked_threads(threads, "DeepPot: threads"),
                                precision=precision, device=device)

    # --- getters of DeePMD-kit's DeepEval -------------------------------------------------------

    def get_type_map(self) -> list[str]:
        """Element names; atom types index this list."""
        return self.model.type_map

    def get_ntypes(self) -> int:
        return len(self.model.type_map)

    def get_rcut(self) -> float:
        """Cutoff radius, Å."""
        return self.model.rcut

    def get_dim_fparam(self) -> int:
        """Frame parameters the model takes (DeePMD-kit's numb_fparam; 0: none)."""
        return self.model.numb_fparam

    def get_dim_aparam(self) -> int:
        """Atomic parameters the model takes per atom (DeePMD-kit's numb_aparam; 0: none)."""
        return self.model.numb_aparam

    def has_default_fparam(self) -> bool:
        """Whether the model has a default_fparam (used by `eval` without fparam)."""
        return self.model.source_params.fitting.default_fparam is not None

    def get_sel_type(self) -> list[int]:
        """Types with an atomic contribution: those not in the model's atom_exclude_types (what
        DeePMD-kit 3.2 returns for an energy model; excluded type pairs, of the descriptor or the
        model, leave every type its contribution)."""
        excluded = set(self.model.source_params.atom_exclude_types)
        return [t for t in range(self.get_ntypes()) if t not in excluded]

    def get_ntypes_spin(self) -> int:
        return 0

    def has_chg_spin_ebd(self) -> bool:
        """Whether the model embeds a charge/spin input (never, for se_e2_a energy models)."""
        return False

    def has_default_chg_spin(self) -> bool:
        return False

    @property
    def use_spin(self) -> list[bool]:
        """Per-type spin usage; empty: the model has no spin (DeePMD-kit's value for such models)."""
        return []

    @property
    def has_efield(self) -> bool:
        return False

    @property
    def has_spin(self) -> bool:
        return False

    @property
    def has_hessian(self) -> bool:
        return False

    def get_model_def_script(self) -> dict:
        """The model's definition (type_map, descriptor, fitting_net), as DeePMD-kit stores it:
        the file's own for a DeePMD-kit .dp, else rebuilt from the parameters (no seeds)."""
        from .io.dp_write import model_def_script

        script = self.model.params.info.get("model_def_script")
        return copy.deepcopy(script) if isinstance(script, dict) else model_def_script(self.model.params)

    def close(self) -> None:
        """Nothing to release (DeePMD-kit's TensorFlow session has no numdp counterpart)."""

    def __enter__(self) -> "DeepPot":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- DeePMD-kit methods numdp does not offer: one-line errors, never a wrong answer ---------

    def _unsupported(self, name: str, hint: str = ""):
        raise NotImplementedError(f"DeepPot.{name} is not supported by numdp.infer.DeepPot{hint} "
                                  f"(see docs/python-api.md)")

    def get_model(self):
        self._unsupported("get_model", " (dp.model is numdp's DPModel)")

    def serialize(self):
        self._unsupported("serialize")

    def eval_fitting_last_layer(self, *args, **kwargs):
        self._unsupported("eval_fitting_last_layer")

    def eval_embedding(self, *args, **kwargs):
        self._unsupported("eval_embedding")

    def eval_typeebd(self):
        self._unsupported("eval_typeebd", ": se_e2_a has no type embedding")

    def get_model_size(self) -> dict:
        """Trainable parameter counts, DeePMD-kit's {'descriptor': n, 'fitting-net': n, 'total': n}:
        the weights, biases and resnet timesteps (idt) of the embedding nets and of the fitting
        nets (whose first layers include the fparam / aparam rows); statistics and energy
        biases are not parameters."""
        params = self.model.source_params   # as read: fparam / aparam not folded into the biases
        sizes = {"descriptor": _net_size(params.descriptor.embeddings),
                 "fitting-net": _net_size(params.fitting.nets)}
        return {**sizes, "total": sizes["descriptor"] + sizes["fitting-net"]}

    def get_observed_types(self) -> dict:
        """DeePMD-kit's {'type_num': n, 'observed_type': [...]}: the elements the model's training
        recorded, else those with a nonzero output bias, by atomic number (as `numdp show`)."""
        from .commands.show import observed_types

        seen = observed_types(self.model.params)
        return {"type_num": len(seen), "observed_type": seen}

    # --- evaluation -----------------------------------------------------------------------------

    def eval(self, coords, cells, atom_types, atomic: bool = False, fparam=None, aparam=None,
             mixed_type: bool = False, **kwargs: Any) -> tuple[np.ndarray, ...]:
        """Energy, force and virial of nframes configurations, DeePMD-kit's way.

        coords: (nframes, natoms*3), (nframes, natoms, 3), or one frame (natoms*3,) / (natoms, 3),
        Å.  cells: (nframes, 9) or (nframes, 3, 3) (one frame: (9,) or (3, 3)), rows = cell
        vectors, Å; None = non-periodic.  atom_types: (natoms,) integers indexing get_type_map(),
        or (nframes, natoms) with mixed_type=True.  fparam: the frame parameters of a model that
        takes them (get_dim_fparam() > 0): (nframes, dim_fparam), or (dim_fparam,) for every
        frame; None uses the model's default_fparam.  aparam: the atomic parameters of a model that
        takes them (get_dim_aparam() > 0): (nframes, natoms * dim_aparam) or (nframes, natoms,
        dim_aparam), (natoms, dim_aparam) for every frame, or (dim_aparam,) for every atom of
        every frame.

        An atom of type -1 is DeePMD-kit's virtual atom (the padding of mixed-type data): the
        frame is evaluated without it, and its force, atomic energy and atomic virial are 0.

        Returns float64 arrays energy (nframes, 1) eV, force (nframes, natoms, 3) eV/Å, virial
        (nframes, 9) eV (row-major 3x3, -stress*volume); with atomic=True also atom_energy
        (nframes, natoms, 1) eV and atom_virial (nframes, natoms, 9) eV (DeePMD-kit's split).
        """
        from .model.dp_model import evaluate_real_atoms

        atomic = bool(atomic)
        pos, types, boxes = self._standard_input("DeepPot.eval", coords, cells, atom_types, fparam,
                                                 aparam, mixed_type, kwargs, virtual=True)
        nframes, natoms = pos.shape[:2]
        fparams = self._standard_fparam("DeepPot.eval", fparam, nframes)
        aparams = self._standard_aparam("DeepPot.eval", aparam, nframes, natoms)
        energy = np.empty((nframes, 1))
        force = np.zeros((nframes, natoms, 3))
        virial = np.empty((nframes, 9))
        atom_energy = np.zeros((nframes, natoms, 1)) if atomic else None
        atom_virial = np.zeros((nframes, natoms, 9)) if atomic else None
        for f in range(nframes):
            t = types[min(f, types.shape[0] - 1)]
            try:
                out = evaluate_real_atoms(self.model, pos[f], t, None if boxes is None else boxes[f],
                                          atom_virial=atomic, fparam=None if fparams is None else fparams[f],
                                          aparam=None if aparams is None else aparams[f])
            except InputError as exc:
                where = f"frame {f}" + ("" if (t >= 0).all() else " (atoms counted without the virtual ones)")
                raise InputError(f"DeepPot.eval: {where}: {exc}") from None
            energy[f, 0] = out.energy
            force[f] = out.forces
            virial[f] = np.asarray(out.virial).reshape(9)
            if atomic:
                atom_energy[f, :, 0] = out.atom_energies
                atom_virial[f] = out.atom_virials
        if atomic:
            return energy, force, virial, atom_energy, atom_virial
        return energy, force, virial

    def eval_descriptor(self, coords, cells, atom_types, fparam=None, aparam=None,
                        mixed_type: bool = False, dtype: str = "native", **kwargs: Any) -> np.ndarray:
        """The se_e2_a descriptor rows D_i (reference §4) of nframes configurations, DeePMD-kit's
        `eval_descriptor`: arguments as `eval`; returns (nframes, natoms, M*M<) in the model's
        output precision (dtype "native": float64), or as "fp32" / "fp64"."""
        if dtype not in DESCRIPTOR_DTYPES:
            raise InputError(f"DeepPot.eval_descriptor: dtype must be one of "
                             f"{', '.join(DESCRIPTOR_DTYPES)}, got {dtype!r}")
        pos, types, boxes = self._standard_input("DeepPot.eval_descriptor", coords, cells, atom_types,
                                                 fparam, aparam, mixed_type, kwargs)
        nframes, natoms = pos.shape[:2]
        out = None
        for f in range(nframes):
            try:
                rows = self.model.descriptor(pos[f], types[min(f, types.shape[0] - 1)],
                                             None if boxes is None else boxes[f])
            except InputError as exc:
                raise InputError(f"DeepPot.eval_descriptor: frame {f}: {exc}") from None
            if out is None:
                out = np.empty((nframes, natoms, rows.shape[1]),
                               DESCRIPTOR_DTYPES[dtype] or rows.dtype)
            out[f] = rows
        return out

    def _standard_input(self, who: str, coords, cells, atom_types, fparam, aparam, mixed_type: bool,
                        kwargs: dict, virtual: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The arguments of `eval` (see there) checked and standardised for method `who`: positions
        (nframes, natoms, 3), types (nframes or 1, natoms) int32 and cells (nframes, 3, 3) or None.
        virtual: whether type -1 (DeePMD-kit's virtual atom) is allowed."""
        for key, value in kwargs.items():
            if key not in NONE_ONLY_EVAL_KWARGS:
                raise InputError(f"{who}: unknown keyword argument '{key}'")
            if value is not None:
                raise InputError(f"{who}: {key} given but the model takes no {key} input")
        for name, value, getter in (("fparam", fparam, "get_dim_fparam"),
                                    ("aparam", aparam, "get_dim_aparam")):
            if value is not None and np.size(value) != 0 and getattr(self, getter)() == 0:
                raise InputError(f"{who}: {name} given but the model has no "
                                 f"{'frame' if name == 'fparam' else 'atomic'} parameters "
                                 f"({getter}() == 0)")
        types = self._standard_types(who, atom_types, mixed_type, virtual)
        pos = self._standard_coords(who, coords, types.shape[1])
        nframes = pos.shape[0]
        if types.shape[0] != 1 and types.shape[0] != nframes:
            raise InputError(f"{who}: atom_types has {types.shape[0]} frames but coords has {nframes}")
        return pos, types, self._standard_cells(who, cells, nframes)

    def _standard_fparam(self, who: str, fparam, nframes: int) -> np.ndarray | None:
        """fparam as (nframes, dim_fparam) float64 (one row repeated when one is given), or None
        (the model takes none, or uses its default)."""
        return _standard_params(who, "fparam", fparam, (nframes, self.get_dim_fparam()))

    def _standard_aparam(self, who: str, aparam, nframes: int, natoms: int) -> np.ndarray | None:
        """aparam as (nframes, natoms, dim_aparam) float64 (from any of the shapes `eval` takes),
        or None (the model takes none, or none given: the model's own)."""
        return _standard_params(who, "aparam", aparam, (nframes, natoms, self.get_dim_aparam()))

    def _standard_types(self, who: str, atom_types, mixed_type: bool, virtual: bool = False) -> np.ndarray:
        """atom_types as an int32 array (nframes or 1, natoms), checked against the type map;
        virtual: type -1 (a virtual atom) is allowed too."""
        try:
            raw = np.asarray(atom_types)
        except (TypeError, ValueError) as exc:   # ragged nested lists
            raise InputError(f"{who}: atom_types is not an array of integers ({exc})") from None
        if raw.dtype.kind == "f" and np.all(np.isfinite(raw)) and np.all(raw == np.round(raw)):
            raw = raw.astype(np.int64)   # types read with np.loadtxt(...) without dtype=int
        if raw.dtype.kind not in "iu":
            raise InputError(f"{who}: atom_types must be integers, got {raw.dtype}")
        if raw.ndim == 2 and not mixed_type:
            raise InputError(f"{who}: atom_types has shape {raw.shape}; per-frame types "
                             f"(nframes, natoms) need mixed_type=True")
        if raw.ndim not in (1, 2):
            raise InputError(f"{who}: atom_types must have shape (natoms,)"
                             f"{' or (nframes, natoms)' if mixed_type else ''}, got {raw.shape}")
        types = raw.reshape(1, -1) if raw.ndim == 1 else raw
        ntypes = self.get_ntypes()
        bad = np.argwhere((types < (-1 if virtual else 0)) | (types >= ntypes))
        if bad.size:
            f, i = (int(v) for v in bad[0])
            where = f"frame {f}, atom {i}" if raw.ndim == 2 else f"atom {i}"
            note = (" (type -1, DeePMD-kit's virtual atom, is taken by DeepPot.eval only)"
                    if types[f, i] == -1 else "")
            raise InputError(f"{who}: atom_types: {where} has type {types[f, i]}, outside "
                             f"0..{ntypes - 1} (type_map {self.get_type_map()}){note}")
        return types.astype(np.int32)

    @staticmethod
    def _standard_coords(who: str, coords, natoms: int) -> np.ndarray:
        """coords as an array (nframes, natoms, 3) of numbers (`_numbers`: float64 per frame)."""
        c = _numbers(who, "coords", coords)
        if c.shape in ((natoms * 3,), (natoms, 3)):
            return c.reshape(1, natoms, 3)
        if c.ndim in (2, 3) and c.shape[1:] in ((natoms * 3,), (natoms, 3)) and c.shape[0] > 0:
            return c.reshape(c.shape[0], natoms, 3)
        hint = ""
        if c.ndim == 1 and natoms and c.size % (natoms * 3) == 0:   # DeePMD-kit would take it
            hint = (f"; for {c.size // (natoms * 3)} frames pass coords.reshape({c.size // (natoms * 3)}, "
                    f"{natoms * 3}) (numdp does not split a flat array into frames: with a wrong "
                    f"atom_types it would evaluate other frames)")
        raise InputError(f"{who}: coords has shape {c.shape}; expected (nframes, {natoms * 3}), "
                         f"(nframes, {natoms}, 3) or ({natoms * 3},) for {natoms} atoms "
                         f"(the length of atom_types){hint}")

    @staticmethod
    def _standard_cells(who: str, cells, nframes: int) -> np.ndarray | None:
        """cells as an array (nframes, 3, 3) of numbers (`_numbers`: float64 per frame), or None
        (non-periodic).  A cell of zeros is refused with the cells=None to pass (DeePMD-kit 3.2
        returns NaN for it)."""
        if cells is None:
            return None
        c = _numbers(who, "cells", cells)
        if (nframes == 1 and c.shape == (3, 3)) or c.shape == (nframes * 9,):
            c = c.reshape(nframes, 3, 3)
        elif c.ndim in (2, 3) and c.shape[1:] in ((9,), (3, 3)):
            if c.shape[0] != nframes:
                raise InputError(f"{who}: cells has {c.shape[0]} frames but coords has {nframes}")
            c = c.reshape(nframes, 3, 3)
        else:
            raise InputError(f"{who}: cells has shape {c.shape}; expected ({nframes}, 9), "
                             f"({nframes}, 3, 3) or ({nframes * 9},), or None for a non-periodic system")
        zero = np.flatnonzero(~c.reshape(nframes, 9).any(axis=1))
        if zero.size:
            raise InputError(f"{who}: frame {zero[0]}: the cell is all zeros; pass cells=None for a "
                             f"non-periodic system")
        return c


def DeepPotential(model_file, **kwargs: Any) -> DeepPot:
    """DeePMD-kit's factory name; numdp models are energy models, so this is DeepPot."""
    return DeepPot(model_file, **kwargs)


__all__ = ["DeepPot", "DeepPotential"]


def calc_model_devi(coord, box, atype, models, fname=None, frequency: int = 1,
                    mixed_type: bool = False, fparam=None, aparam=None, real_data: dict | None = None,
                    atomic: bool = False, relative: float | None = None,
                    relative_v: float | None = None) -> np.ndarray:
    """DeePMD-kit's `deepmd.infer.model_devi.calc_model_devi` on numdp `DeepPot` models.

    coord, box, atype, mixed_type, fparam, aparam: as `DeepPot.eval` (nframes frames).
    real_data: None, or DeePMD-kit's dict of labels {"energy": (nframes,) eV per atom, "force":
    (nframes, natoms, 3) eV/Å, "virial": (nframes, 9) eV per atom}: the models' RMS errors against
    them instead of their deviation.  relative / relative_v: the levels of
    numdp.model.deviation (relative_v per virial component, as LAMMPS and `numdp model-devi`).
    Returns (nframes, 8) float64: step (= frame index × frequency), max/min/avg_devi_v,
    max/min/avg_devi_f, devi_e; with atomic, natoms more columns (each atom's force deviation).
    fname: the rows are appended to this file in the model_devi.out format (a header first).
    """
    from .io.model_devi_file import write_block
    from .model.deviation import Reference, ensemble_deviations

    models = list(models)
    if not models or not all(isinstance(m, DeepPot) for m in models):
        raise InputError("calc_model_devi: models must be a non-empty list of numdp.infer.DeepPot")
    for m in models[1:]:
        if m.get_type_map() != models[0].get_type_map():
            raise InputError(f"calc_model_devi: type_map {m.get_type_map()} of {m.model_file} differs "
                             f"from {models[0].get_type_map()} of {models[0].model_file}")
    if int(frequency) < 1:
        raise InputError(f"calc_model_devi: frequency must be >= 1, got {frequency}")
    pos, types, boxes = models[0]._standard_input("calc_model_devi", coord, box, atype, fparam, aparam,
                                                  mixed_type, {})
    nframes, natoms = pos.shape[:2]
    refs = [None] * nframes
    if real_data is not None:
        try:
            e = np.asarray(real_data["energy"], dtype=np.float64).reshape(nframes) * natoms
            f = np.asarray(real_data["force"], dtype=np.float64).reshape(nframes, natoms, 3)
            v = np.asarray(real_data["virial"], dtype=np.float64).reshape(nframes, 3, 3) * natoms
        except KeyError as exc:
            raise InputError(f"calc_model_devi: real_data has no {exc.args[0]!r}") from None
        except ValueError as exc:
            raise InputError(f"calc_model_devi: real_data does not fit {nframes} frames of {natoms} "
                             f"atoms ({exc})") from None
        refs = [Reference(e[k], f[k], v[k]) for k in range(nframes)]
    fparams = models[0]._standard_fparam("calc_model_devi", fparam, nframes)
    aparams = models[0]._standard_aparam("calc_model_devi", aparam, nframes, natoms)
    frames = ((pos[k], types[min(k, types.shape[0] - 1)], None if boxes is None else boxes[k], None, refs[k],
               None if fparams is None else fparams[k], None if aparams is None else aparams[k])
              for k in range(nframes))
    rows = []
    devi = ensemble_deviations([m.model for m in models], frames, relative, relative_v)
    for k in range(nframes):
        try:
            rows.append(next(devi))
        except InputError as exc:
            raise InputError(f"calc_model_devi: frame {k}: {exc}") from None
    steps = np.arange(nframes, dtype=np.int64) * int(frequency)
    table = np.array([[s, d.max_devi_v, d.min_devi_v, d.avg_devi_v, d.max_devi_f, d.min_devi_f,
                       d.avg_devi_f, d.devi_e] + (d.atom_devi_f.tolist() if atomic else [])
                      for s, d in zip(steps, rows)], dtype=np.float64).reshape(nframes, -1)
    if fname:
        try:
            with open(fname, "a") as fp:
                write_block(fp, zip(steps, rows), energy=True, atomic=bool(atomic))
        except OSError as exc:
            raise InputError(f"{fname}: cannot write ({exc.strerror})") from None
    return table
