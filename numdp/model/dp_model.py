"""The public model object: `numdp.load_model(path).evaluate(positions, types, box)`."""
from __future__ import annotations

import threading
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..kernels.cpu.md import closest_pair
from ..neighbor import build_nlist, extend, kernel_threads, report_overflow
from ..neighbor.extended import check_pbc, complete_cell
from ..neighbor.threads import free_at_fork
from ..parallel.threads import default_threads
from ..neighbor.overlap import OVERLAP_DISTANCE, overlap_message
from .evaluator import Evaluator, compute_shared
from .params import (ModelParams, aparam_delta, aparam_weights, checked_aparam, checked_fparam,
                     first_layer_biases, fold_frame_inputs)


@dataclass
class Result:
    """Output of DPModel.evaluate for N atoms.

    energy: float eV; forces: (N, 3) eV/Å; virial: (3, 3) eV (DeePMD-kit sign, -stress*V);
    atom_energies: (N,) eV; atom_virials: (N, 9) eV (row-major 3x3, DeePMD-kit's split) or None.
    """

    energy: float
    forces: np.ndarray
    virial: np.ndarray
    atom_energies: np.ndarray
    atom_virials: np.ndarray | None

    def padded(self, keep: np.ndarray, natoms: int) -> Result:
        """This result of the atoms `keep` ((natoms,) bool) as a result of all natoms atoms: the
        others' (virtual atoms') forces, atomic energies and atomic virials 0."""
        def rows(a):
            if a is None:
                return None
            full = np.zeros((natoms,) + a.shape[1:])
            full[keep] = a
            return full

        return Result(self.energy, rows(self.forces), self.virial, rows(self.atom_energies), rows(self.atom_virials))


def evaluate_real_atoms(model, positions, types, box=None, atom_virial: bool = False, fparam=None, aparam=None,
                        pbc=None) -> Result:
    """`model.evaluate` of one frame whose types (N,) may mark virtual atoms with -1 (DeePMD-kit's
    mixed-type padding, numdp.io.npy_system.real_atoms): evaluated without them, as DeePMD-kit
    3.2 does, their rows of the (N, ...) per-atom results 0 (`Result.padded`)."""
    from ..io.npy_system import real_atoms

    keep = real_atoms(types)
    if isinstance(keep, slice):
        return model.evaluate(positions, types, box, atom_virial=atom_virial, pbc=pbc, fparam=fparam, aparam=aparam)
    out = model.evaluate(positions[keep], types[keep], box, atom_virial=atom_virial, pbc=pbc, fparam=fparam,
                         aparam=None if aparam is None else aparam[keep])
    return out.padded(keep, len(types))


def fold_to_owners(values: np.ndarray, mapping: np.ndarray, n: int) -> np.ndarray:
    """Sum per-extended-atom rows (nall, k) onto their n owners: (n, k)."""
    return np.stack([np.bincount(mapping, weights=values[:, c], minlength=n)
                     for c in range(values.shape[1])], axis=1)


class DPModel:
    """An se_e2_a energy model ready to evaluate.

    Attributes: type_map (list of element names), rcut (Å), params (ModelParams: the model
    evaluated; one with frame or atomic parameters with them folded into its first fitting layers,
    `numdp.model.params.fold_frame_inputs`), source_params (the model as read), numb_fparam,
    numb_aparam, fparam and aparam (the model's own frame parameters and atomic parameters shared
    by every atom, or None).

    A model with frame parameters (DeePMD-kit's numb_fparam) evaluates with `fparam` given here
    (or later `set_fparam`), else with its default_fparam; `evaluate(..., fparam=f)` with f for
    that call.  A model with atomic parameters (numb_aparam) likewise with `aparam` (numb_aparam,)
    given here or by `set_aparam`, the same for every atom (LAMMPS' `pair_style deepmd ... aparam`),
    or per call `evaluate(..., aparam=a)` with a (natoms, numb_aparam) (or one row for all).
    Each evaluation first gives the evaluator's first fitting layers the biases of the frame's
    parameters and the shared atomic ones when they differ from the last ones (`use_inputs`: a
    few hundred multiply-adds per net, no new evaluator); atomic parameters that differ between
    atoms add delta_i W_a of its type to atom i's first layer z (`aparam_delta`).  Without the parameters
    a model takes, evaluating is an InputError.
    """

    def __init__(self, params: ModelParams, nthreads: int | None = None, chunk: int | None = None,
                 precision: str = "double", device: str = "cpu", fparam=None, aparam=None):
        from ..validate import checked_threads

        nthreads = checked_threads(nthreads, "nthreads")   # (0 would silently mean the default)
        self.source_params = params
        f = params.fitting
        given = self._given_fparam(fparam)
        self.fparam = given if given is not None else self._given_fparam(f.default_fparam)
        self.aparam = self._given_aparam(aparam)
        # the parameters the evaluator's first-layer biases are of; without them the evaluator
        # is built at the averages, so that its properties answer (`use_inputs` stops every
        # evaluation)
        self._bias_of = None
        if f.numb_fparam or f.numb_aparam:
            self._bias_of = (self.fparam if self.fparam is not None or not f.numb_fparam else f.fparam_avg.copy(),
                             self.aparam if self.aparam is not None or not f.numb_aparam else f.aparam_avg.copy())
            params = fold_frame_inputs(params, *self._bias_of)
        self._shifted = False   # whether the evaluator adds per-atom rows (`use_inputs`)
        self._inputs_unknown = False   # whether the evaluator's biases may not be _bias_of's (`_inputs_orphaned`)
        # held from `use_inputs` to the end of the computation by every call, when the evaluator
        # has per-call state (first-layer biases, per-atom rows) or is a device's (its buffers)
        self._lock = threading.RLock() if (f.numb_fparam or f.numb_aparam or str(device).lower() != "cpu") else None
        if self._lock is not None:
            free_at_fork(self, self._lock, DPModel._inputs_orphaned)
        self._aparam_w = aparam_weights(self.source_params) if f.numb_aparam else None
        self.params = params
        kw = {} if chunk is None else {"chunk": chunk}
        self.device = str(device).lower()
        if self.device != "cpu":   # "cuda" (numdp.backend): InputError when it cannot run
            from ..backend import get_backend
            from .cuda_evaluator import CUDAEvaluator

            self._backend = get_backend(self.device)
            self._ev = CUDAEvaluator(params, self._backend, precision=precision, **kw)
            self._nthreads = nthreads or default_threads()   # for the CPU neighbour search
            return
        self._ev = Evaluator(params, nthreads or default_threads(), precision=precision, **kw)

    def __reduce__(self):
        """Pickle and copy.deepcopy as what builds the model again (its parameters as read, threads,
        chunk, precision, device, frame and atomic parameters): the evaluator holds a thread pool,
        a lock and scratch memory (device memory with CUDA), which are not copied but made anew.
        The copy evaluates bit for bit as the original."""
        return (_rebuilt, (self.source_params, self.nthreads, self._ev.chunk, self.precision, self.device,
                           self.fparam, self.aparam))

    @property
    def type_map(self) -> list[str]:
        return list(self.params.type_map)

    @property
    def numb_fparam(self) -> int:
        """Frame parameters the model takes (DeePMD-kit's numb_fparam; 0: none)."""
        return self.source_params.fitting.numb_fparam

    @property
    def numb_aparam(self) -> int:
        """Atomic parameters the model takes per atom (DeePMD-kit's numb_aparam; 0: none)."""
        return self.source_params.fitting.numb_aparam

    def _given_fparam(self, fparam) -> np.ndarray | None:
        """`fparam` checked against the model (`checked_fparam`); None for None or an empty array
        (as DeePMD-kit takes them: no parameters given); InputError for parameters given to a
        model that takes none."""
        if fparam is None or np.size(fparam) == 0:
            return None
        if self.numb_fparam == 0:
            raise InputError(f"the model takes no frame parameters (numb_fparam 0), got fparam "
                             f"{np.ravel(fparam).tolist()}")
        return checked_fparam(self.source_params, fparam)

    def _given_aparam(self, aparam, natoms: int | None = None) -> np.ndarray | None:
        """`aparam` checked against the model (`checked_aparam`: (numb_aparam,), or with natoms
        also (natoms, numb_aparam)); None for None or an empty array; InputError for parameters
        given to a model that takes none."""
        if aparam is None or np.size(aparam) == 0:
            return None
        if self.numb_aparam == 0:
            raise InputError(f"the model takes no atomic parameters (numb_aparam 0), got aparam "
                             f"of {np.size(aparam)} value(s)")
        return checked_aparam(self.source_params, aparam, natoms)

    def set_fparam(self, fparam) -> None:
        """The model's frame parameters (numb_fparam,) from now on (None: leave them)."""
        given = self._given_fparam(fparam)
        if given is not None:
            self.fparam = given

    def set_aparam(self, aparam) -> None:
        """The model's atomic parameters (numb_aparam,), the same for every atom, from now on
        (None: leave them)."""
        given = self._given_aparam(aparam)
        if given is not None:
            self.aparam = given

    def use_inputs(self, fparam=None, aparam=None, types=None) -> None:
        """Make the evaluator's first fitting layers those of frame parameters `fparam` and
        atomic parameters `aparam` (None: the model's own) for the evaluations that follow.
        aparam (numb_aparam,) is shared by every atom; (natoms, numb_aparam) (needs `types`,
        (natoms,)) gives each atom its own (rows that are all equal count as shared).  InputError
        when the model takes none and some are given, or takes some and has none (atomic
        parameters are not needed for a frame of no atoms, `types` of length 0)."""
        fp = self._given_fparam(fparam)
        natoms = None if types is None else int(np.shape(types)[0])
        ap = self._given_aparam(aparam, natoms)
        if self.numb_fparam == 0 and self.numb_aparam == 0:
            return
        f = fp if fp is not None else self.fparam
        if self.numb_fparam and f is None:
            raise InputError(f"the model takes {self.numb_fparam} frame parameter(s) (numb_fparam) and "
                             f"has no default_fparam: give fparam")
        a = ap if ap is not None else self.aparam
        if self.numb_aparam and a is None and natoms == 0:
            # no atom to take them (DeePMD-kit: an empty aparam, zero results): the last ones
            a = self._bias_of[1]
        if self.numb_aparam and a is None:
            raise InputError(f"the model takes {self.numb_aparam} atomic parameter(s) per atom "
                             f"(numb_aparam): give aparam")
        per_atom = a is not None and a.ndim == 2 and not np.all(a == a[:1])
        if per_atom:   # rows over the model's own shared set (as built): the same bits whatever came before
            shared = self.aparam if self.aparam is not None else self.source_params.fitting.aparam_avg
        elif a is not None and a.ndim == 2:   # equal rows (or no atoms): one set for every atom
            shared = a[0] if a.shape[0] else self._bias_of[1]
        else:
            shared = a
        key = (f, shared)
        if self._inputs_unknown or not all(np.array_equal(x, y) for x, y in zip(key, self._bias_of)):
            self._ev.set_first_layer_biases(first_layer_biases(self.source_params, *key))
            self._bias_of = key
            self._inputs_unknown = False
        if per_atom:
            self._ev.set_atom_parameters(aparam_delta(self.source_params, a, shared), self._aparam_w)
        elif self._shifted:
            self._ev.set_atom_parameters(None)
        self._shifted = per_atom

    @contextmanager
    def inputs(self, fparam=None, aparam=None, types=None):
        """`use_inputs(fparam, aparam, types)` and the evaluator for this thread alone until the
        block ends: what every evaluation does, so that threads sharing the model get their own
        parameters.  Models without frame or atomic parameters on the CPU take no lock (their
        calls run concurrently; the scratch memory is per thread); the others serialise their
        calls (an uncontended RLock, ~0.1 us a call)."""
        with self._lock or nullcontext():
            self.use_inputs(fparam, aparam, types)
            yield

    def _inputs_orphaned(self) -> None:
        """In a child forked while another thread of the parent held this model's lock (made free:
        numdp.neighbor.threads.free_at_fork; a child forked while another thread evaluated a model
        with parameters waited for ever at its first call): the evaluator's first-layer biases and
        per-atom rows, which that thread may have left half-set, set anew by the next call."""
        self._inputs_unknown = True
        self._shifted = True

    @property
    def rcut(self) -> float:
        return float(self.params.descriptor.rcut)

    @property
    def nthreads(self) -> int:
        return self._ev.nthreads if self.device == "cpu" else self._nthreads

    @property
    def precision(self) -> str:
        """"double", "mix32" or "mix16" (numdp.model.precision)."""
        return self._ev.precision.name

    @property
    def compressed(self) -> bool:
        return self._ev.compressed

    @property
    def beyond_table(self) -> int:
        """Pairs evaluated outside the tables of a compressed model so far (linear continuation)."""
        return self._ev.beyond_table

    def _prepare(self, positions, types, box, pbc=None):
        pos = np.ascontiguousarray(positions, dtype=np.float64)
        typ = np.ascontiguousarray(types)
        if pos.ndim != 2 or pos.shape[1] != 3:
            raise InputError(f"positions must have shape (N, 3), got {pos.shape}")
        if typ.shape != (pos.shape[0],):
            raise InputError(f"types must have shape ({pos.shape[0]},), got {typ.shape}")
        if not np.issubdtype(typ.dtype, np.integer):
            raise InputError(f"types must be integers, got {typ.dtype}")
        if typ.size and (typ.min() < 0 or typ.max() >= len(self.type_map)):
            bad = int(np.flatnonzero((typ < 0) | (typ >= len(self.type_map)))[0])
            raise InputError(f"atom {bad} has type {typ[bad]}, outside 0..{len(self.type_map) - 1} "
                             f"(type_map {self.type_map})")
        if not np.all(np.isfinite(pos)):
            bad = int(np.flatnonzero(~np.all(np.isfinite(pos), axis=1))[0])
            raise InputError(f"atom {bad} has a non-finite position {pos[bad]}")
        if box is not None:
            box = np.ascontiguousarray(box, dtype=np.float64)
            if pbc is not None and not all(check_pbc(pbc, box)):
                box = complete_cell(box, check_pbc(pbc, box))  # ASE's zero vacuum vectors
            if box.shape != (3, 3):
                raise InputError(f"box must have shape (3, 3) with rows = cell vectors, got {box.shape}")
        typ = typ.astype(np.int32)
        d = self.params.descriptor
        if self.device != "cpu":
            from .cuda_evaluator import device_neighbor_list

            dn = device_neighbor_list(self._backend, pos, typ, box, d.rcut, d.sel, self.nthreads, pbc=pbc)
            report_overflow(dn, d.sel, self.type_map)
            dist, i, j = self._ev.closest_pair(dn.positions, dn.nlist)   # a device reduction
            if i >= 0 and dist < OVERLAP_DISTANCE:
                self._overlap_error(dist, i, j, int(dn.types[i]), int(dn.types[j]), int(dn.mapping[j]),
                                    j >= dn.nloc)
            return typ, dn, dn
        with kernel_threads(pos.shape[0], self.nthreads):
            ext = extend(pos, typ, box, d.rcut, pbc=pbc)
            nl = build_nlist(ext, d.rcut, d.sel, d.ntypes)
        report_overflow(nl, d.sel, self.type_map)
        self._check_overlap(ext, nl)
        return typ, ext, nl

    def _check_overlap(self, ext, nl) -> None:
        """InputError naming two atoms closer than OVERLAP_DISTANCE (the nearest of each type is
        the first slot of its block of the neighbour list: no extra pair search)."""
        if ext.nloc == 0:
            return
        dist, i, j = closest_pair(ext.positions, nl.nlist, self.params.descriptor.sec)
        if i < 0 or not dist < OVERLAP_DISTANCE:
            return
        self._overlap_error(dist, i, j, ext.types[i], ext.types[j], int(ext.mapping[j]),
                            j >= ext.nloc and ext.shifts[j].any())

    def _overlap_error(self, dist, i, j, type_i, type_j, owner, image) -> None:
        """Raise the InputError naming centre i and extended atom j (its owner, and whether it is
        a periodic image) that are `dist` Å apart."""
        names = self.type_map
        second = f"{owner} ({names[type_j]})"
        if image:
            second = "a periodic image of " + ("itself" if owner == i else second)
        raise InputError(overlap_message(dist, f"{i} ({names[type_i]})", second))

    def evaluate(self, positions, types, box=None, atom_virial: bool = True, pbc=None,
                 fparam=None, aparam=None) -> Result:
        """Energy, forces and virial of one configuration.

        positions: (N, 3) Å; types: (N,) integers indexing type_map; box: (3, 3) Å with rows =
        cell vectors, or None for a non-periodic system; pbc: three booleans, periodicity along
        each cell vector (default all True with a box).  With mixed pbc (a slab) a zero
        non-periodic cell vector is allowed, and the virial is still -dE/dstrain with every atom
        strained, i.e. sum over pairs of -r_ij (x) dE/dr_ij (see docs/ase.md).  fparam:
        (numb_fparam,) frame parameters for this call, for a model that takes them (None: the
        model's own, `set_fparam`, else its default_fparam).  aparam: the atomic parameters for
        this call, (N, numb_aparam) (any array of N * numb_aparam values) or (numb_aparam,) for
        every atom (None: the model's own, `set_aparam`).
        """
        typ, ext, nl = self._prepare(positions, types, box, pbc)
        with self.inputs(fparam, aparam, typ):
            if self.device != "cpu":   # ghosts folded onto their owners on the device
                raw = self._ev.compute_owned(ext.positions, nl.nlist, typ, ext.mapping, atom_virial)
                return Result(float(raw.atom_energy.sum()), raw.force, raw.virial, raw.atom_energy,
                              raw.atom_virial)
            raw = self._ev.compute(ext.positions, nl.nlist, typ, want_force=True,
                                   want_atom_virial=atom_virial)
        n = typ.shape[0]
        forces = fold_to_owners(raw.force, ext.mapping, n)
        av = fold_to_owners(raw.atom_virial, ext.mapping, n) if atom_virial else None
        return Result(float(raw.atom_energy.sum()), forces, raw.virial, raw.atom_energy, av)

    @property
    def accepts_neighbor_rows(self) -> bool:
        """True when `compute` takes a `numdp.neighbor.NeighborRows` for nlist (the CPU model)."""
        return self.device == "cpu"

    def compute(self, ext_positions, nlist, types, atom_virial: bool = False):
        """Low-level evaluation on given extended atoms, for MD and domain decomposition.

        ext_positions: (nall, 3) Å with the nloc = len(types) local atoms first; nlist:
        (nloc, nnei) int32 extended indices in per-type blocks with -1 padding (numdp.neighbor
        format), or on the CPU a `numdp.neighbor.NeighborRows` (rows formatted chunk by chunk,
        never stored whole); types: (nloc,) int32.  Returns RawOutput: atom_energy (nloc,), force (nall, 3)
        on every extended atom (fold ghosts onto owners), virial (3, 3), atom_virial (nall, 9)
        or None.
        """
        with self.inputs():
            return self._ev.compute(ext_positions, nlist, types, want_force=True, want_atom_virial=atom_virial)

    def shares_environment(self, other: "DPModel") -> bool:
        """True when both models run on the same device and compute the same environment matrix
        (equal rcut, rcut_smth, sel, davg, dstd and excluded type pairs:
        numdp.model.evaluator.Evaluator.shares_environment;
        on a GPU also the same chunk size, CUDAEvaluator.shares_environment), so that
        `compute_ensemble` / `compute_device_ensemble` can share it."""
        return self.device == other.device and self._ev.shares_environment(other._ev)

    def use_kernel_products(self) -> None:
        """On a GPU: the model's matrix products (fitting nets, the virial) through numba kernels
        instead of cuBLAS from now on, as a force call captured in a CUDA graph needs
        (numdp.md.device_graph; CuPy refuses cuBLAS calls while capturing).  The results change
        by round-off (another summation order); they stay bitwise reproducible."""
        if self.device == "cpu":
            raise InputError("use_kernel_products needs a model loaded with device='cuda'")
        self._ev.use_kernel_products()

    def compute_device(self, ext_positions, nlist, types):
        """`compute` with the results left on the device (device="cuda" only; numdp.md.device):
        ext_positions (nall, 3) and nlist (nloc, nnei) device arrays (or a
        numdp.neighbor.device.DeviceRows that forms each chunk's rows when asked), types (nloc,)
        int32 host array.  Returns device arrays (atom_energy (nloc,) eV, force (nall, 3) eV/Å, virial (9,) eV)."""
        if self.device == "cpu":
            raise InputError("compute_device needs a model loaded with device='cuda'")
        with self.inputs():
            return self._ev.compute_device(ext_positions, nlist, types)

    def descriptor(self, positions, types, box=None, pbc=None) -> np.ndarray:
        """Descriptor rows D_i (N, M*M<) of reference §4 (no parameters needed: the fitting
        nets' inputs f̂ and â are not part of D)."""
        typ, ext, nl = self._prepare(positions, types, box, pbc)
        with self._lock or nullcontext():
            if self._shifted:   # the last call's per-atom rows belong to its atoms
                self._ev.set_atom_parameters(None)
                self._shifted = False
            raw = self._ev.compute(ext.positions, nl.nlist, typ, want_force=False, want_descriptor=True)
        return raw.descriptor


@contextmanager
def _models_inputs(models, fparam, aparam, types):
    """`DPModel.inputs` of several models at once (their locks taken in one global order, so that
    two threads locking overlapping ensembles cannot wait on each other)."""
    with ExitStack() as stack:
        for m in sorted(models, key=id):
            stack.enter_context(m.inputs(fparam, aparam, types))
        yield


def model_of(model, who: str, precision: str = "double", nthreads: int | None = None,
             device: str = "cpu") -> DPModel:
    """The DPModel `model` names, for the front ends that take a model (ASE, dpdata): a path (str
    or os.PathLike) loaded by `load_model` with the options; a DPModel, or the one of a
    numdp.DeepPot, as it is (the options must then be the defaults).  InputError naming `who`
    otherwise."""
    from os import PathLike

    from ..infer import DeepPot

    if isinstance(model, DeepPot):
        model = model.model
    if isinstance(model, DPModel):
        if (precision, nthreads, device) != ("double", None, "cpu"):
            raise InputError(f"{who}: precision, threads and device belong to the loaded model; give them "
                             f"to numdp.load_model, or pass a model file")
        return model
    if not isinstance(model, (str, PathLike)):
        raise InputError(f"{who}: the model is a {type(model).__name__}; expected a model file path, a "
                         f"model from numdp.load_model, or a numdp.DeepPot")
    return load_model(model, nthreads=nthreads, precision=precision, device=device)


def load_model(path, nthreads: int | None = None, precision: str = "double",
               device: str = "cpu", fparam=None, aparam=None) -> DPModel:
    """Load a numdp model file (.h5), a DeePMD-kit .dp file or a DeePMD-kit PyTorch .pt/.pth
    file (numdp.io.pt_read); precision "double", "mix32" or "mix16" (numdp.model.precision);
    device "cpu" or "cuda" (numdp.backend, docs/gpu.md); fparam, aparam: the frame parameters
    and the atomic parameters shared by every atom of a model that takes them (`DPModel`)."""
    from ..io.model_file import read_model

    if device != "cpu":   # fail on an unusable device before reading the file
        from ..backend import get_backend

        get_backend(device)
    return DPModel(read_model(Path(path)), nthreads=nthreads, precision=precision, device=device,
                   fparam=fparam, aparam=aparam)


def compute_ensemble(models, ext_positions, nlist, types, fparam=None, aparam=None) -> list:
    """`DPModel.compute` of several models on one configuration with the environment matrix
    computed once: the models must pairwise `shares_environment` with models[0] (ValueError
    otherwise).  Returns one RawOutput per model (host arrays).  On the CPU models[0]'s is
    bit-identical to its own compute and the others' equal theirs up to the summation order of
    forces and virials; on a GPU every model's is bit-identical to its own compute.  fparam: the
    frame parameters of models that take them, aparam: the atomic parameters ((nloc,
    numb_aparam) or one row for all; None: each model's own, `DPModel.use_inputs`)."""
    if any(m.device != models[0].device for m in models):
        raise ValueError("compute_ensemble: the models run on different devices")
    if models[0].device != "cpu":
        from .evaluator import RawOutput

        be = models[0]._backend
        return [RawOutput(be.to_host(e), be.to_host(f), be.to_host(v).reshape(3, 3), None)
                for e, f, v in compute_device_ensemble(models, ext_positions, nlist, types, fparam, aparam)]
    with _models_inputs(models, fparam, aparam, types):
        return compute_shared([m._ev for m in models], ext_positions, nlist, types, want_force=True)


def compute_device_ensemble(models, ext_positions, nlist, types, fparam=None, aparam=None) -> list:
    """`DPModel.compute_device` of several device models on one configuration with the environment
    matrix computed once per chunk (numdp.model.cuda_evaluator.compute_device_shared): the
    models must pairwise `shares_environment` with models[0] (ValueError otherwise).  Arguments
    as compute_device (and fparam, aparam as compute_ensemble); returns its (atom_energy, force, virial)
    device arrays per model, each bit for bit those of the model's own compute_device."""
    from .cuda_evaluator import compute_device_shared

    if any(m.device == "cpu" for m in models):
        raise ValueError("compute_device_ensemble: device models only")
    with _models_inputs(models, fparam, aparam, types):
        return [out[:3] for out in compute_device_shared([m._ev for m in models], ext_positions, nlist, types)]


def evaluate_ensemble(models, positions, types, box=None, pbc=None, fparam=None, aparam=None) -> list[Result]:
    """`DPModel.evaluate(..., atom_virial=False)` of each model on one configuration; the models
    that `shares_environment` with an earlier one are evaluated with it on one neighbour list and
    environment matrix (`compute_ensemble`), the others alone.  Arguments as evaluate; virtual
    atoms (type -1) as in `evaluate_real_atoms`."""
    from ..io.npy_system import real_atoms

    keep = real_atoms(types)
    if not isinstance(keep, slice):
        outs = evaluate_ensemble(models, positions[keep], types[keep], box, pbc, fparam,
                                 None if aparam is None else aparam[keep])
        return [o.padded(keep, len(types)) for o in outs]
    groups: list[list[int]] = []
    for k, m in enumerate(models):
        for g in groups:
            if models[g[0]].shares_environment(m):
                g.append(k)
                break
        else:
            groups.append([k])
    out: list = [None] * len(models)
    for g in groups:
        first = models[g[0]]
        if len(g) == 1:
            out[g[0]] = first.evaluate(positions, types, box, atom_virial=False, pbc=pbc, fparam=fparam,
                                       aparam=aparam)
            continue
        typ, ext, nl = first._prepare(positions, types, box, pbc)
        raws = compute_ensemble([models[k] for k in g], ext.positions, nl.nlist, typ, fparam, aparam)
        mapping = ext.mapping if first.device == "cpu" else np.asarray(first._backend.to_host(ext.mapping))
        for k, raw in zip(g, raws):
            out[k] = Result(float(raw.atom_energy.sum()), fold_to_owners(raw.force, mapping, typ.shape[0]),
                            raw.virial, raw.atom_energy, None)
    return out


def _rebuilt(params: ModelParams, nthreads: int, chunk: int, precision: str, device: str, fparam, aparam) -> DPModel:
    """The model `DPModel.__reduce__` describes."""
    return DPModel(params, nthreads=nthreads, chunk=chunk, precision=precision, device=device, fparam=fparam,
                   aparam=aparam)
