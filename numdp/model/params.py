"""Parameters of an se_e2_a energy model, as plain dataclasses of float64 arrays.

Every file format (numdp's HDF5 file, DeePMD-kit's `.dp`) reads into and writes from these
classes; the evaluator, trainer and compressor only ever see them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..kernels.math import SLOTS_PADDING, SLOTS_PAIRS, SLOTS_ZERO
from ..neighbor.nlist import slot_offsets
from .activation import NAMES as ACTIVATIONS

RESIDUAL_NONE, RESIDUAL_SAME, RESIDUAL_DOUBLE = 0, 1, 2


def exclusion_mask(pairs, ntypes: int) -> np.ndarray:
    """(ntypes, ntypes) bool, symmetric: True where DeePMD-kit's descriptor `exclude_types`
    `pairs` ([[ti, tj], ...], type indices) exclude the (centre type, neighbour type) pair, in
    either order.  ValueError, one line naming the bad entry, unless every entry is a pair of
    integers in 0..ntypes-1."""
    mask = np.zeros((ntypes, ntypes), dtype=bool)
    for pair in pairs:
        if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                or any(isinstance(t, bool) or not isinstance(t, (int, np.integer)) for t in pair)):
            raise ValueError(f"expected pairs of type indices [ti, tj], got {pair!r}")
        if not all(0 <= t < ntypes for t in pair):
            raise ValueError(f"type index out of range 0..{ntypes - 1} in {list(pair)!r}")
        ti, tj = int(pair[0]), int(pair[1])
        mask[ti, tj] = mask[tj, ti] = True
    return mask


def excluded_pairs(mask: np.ndarray) -> list[list[int]]:
    """The pairs [ti, tj] (ti <= tj, in order) excluded by a symmetric `exclusion_mask`: one
    canonical list for every spelling of the same exclusions."""
    n = mask.shape[0]
    return [[ti, tj] for ti in range(n) for tj in range(ti, n) if mask[ti, tj]]


@dataclass
class Layer:
    """One dense layer y' = rho(y) + idt * act(y @ w + b).

    w: (n_in, n_out); b: (n_out,); idt: (n_out,) or None.  `activation` is one of
    numdp.model.activation.NAMES ("tanh", "gelu", ..., "none").
    `resnet` is the serialized flag; the shortcut applies only when n_out equals n_in or 2*n_in.
    """

    w: np.ndarray
    b: np.ndarray
    idt: np.ndarray | None = None
    activation: str = "tanh"
    resnet: bool = True

    @property
    def n_in(self) -> int:
        return self.w.shape[0]

    @property
    def n_out(self) -> int:
        return self.w.shape[1]

    @property
    def residual(self) -> int:
        """RESIDUAL_SAME, RESIDUAL_DOUBLE or RESIDUAL_NONE by the width test of reference §3.2."""
        if not self.resnet:
            return RESIDUAL_NONE
        if self.n_out == self.n_in:
            return RESIDUAL_SAME
        if self.n_out == 2 * self.n_in:
            return RESIDUAL_DOUBLE
        return RESIDUAL_NONE


@dataclass
class Net:
    """A stack of layers; embedding nets map R -> R^M, fitting nets R^(M*M<) -> R."""

    layers: list[Layer]

    @property
    def widths(self) -> list[int]:
        return [self.layers[0].n_in] + [lay.n_out for lay in self.layers]


@dataclass
class Descriptor:
    """se_e2_a descriptor settings, statistics and embedding nets.

    davg, dstd: (ntypes, nnei, 4) normalisation of the environment matrix by centre type.
    embeddings: flat list; index = neighbour type (type_one_side) or centre + ntypes*neighbour.
    tables: tabulated embedding nets (same indexing) of a compressed model, else None.
    exclude_types: DeePMD-kit's descriptor `exclude_types`, type pairs [ti, tj] as given
        (symmetric; `excluded` is the mask): a neighbour of type tj within rcut of a centre of
        type ti, or the reverse, keeps its slot but its normalised row is zero (no energy, no
        force); the block's padding slots still add the padding row.
    """

    rcut: float
    rcut_smth: float
    sel: list[int]
    neuron: list[int]
    axis_neuron: int
    type_one_side: bool
    resnet_dt: bool
    davg: np.ndarray
    dstd: np.ndarray
    embeddings: list[Net]
    tables: list | None = None  # list[numdp.model.tables.Table], one per embedding net, if compressed
    exclude_types: list[list[int]] = field(default_factory=list)

    @property
    def ntypes(self) -> int:
        return len(self.sel)

    @property
    def excluded(self) -> np.ndarray:
        """(ntypes, ntypes) bool: True where (centre type, neighbour type) is excluded."""
        return exclusion_mask(self.exclude_types, self.ntypes)

    @property
    def nnei(self) -> int:
        return int(sum(self.sel))

    @property
    def sec(self) -> np.ndarray:
        """(ntypes+1,) first slot of each type block."""
        return slot_offsets(self.sel)

    def block_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """(mu, sd), each (ntypes, ntypes, 4): davg and dstd of each (centre type, neighbour
        block), constant over a block's slots (`ModelParams.validate`).  A block without slots
        (sel 0: DeePMD-kit's sel "auto" for a type never within rcut in its training data) has
        no entries to read; it gets mu 0 and sd 1, which no row uses (the block has neither
        pairs nor padding)."""
        nt = self.ntypes
        sec = self.sec
        mu = np.zeros((nt, nt, 4))
        sd = np.ones((nt, nt, 4))
        for t in range(nt):
            if sec[t + 1] > sec[t]:
                mu[:, t, :] = self.davg[:, sec[t], :]
                sd[:, t, :] = self.dstd[:, sec[t], :]
        return mu, sd

    @property
    def dim_out(self) -> int:
        return self.neuron[-1] * self.axis_neuron

    @property
    def activation(self) -> str:
        """The embedding nets' activation (DeePMD-kit's activation_function; one per descriptor)."""
        return self.embeddings[0].layers[0].activation if self.embeddings else "tanh"

    def net_index(self, centre_type: int, neighbour_type: int) -> int:
        if self.type_one_side:
            return neighbour_type
        return centre_type + self.ntypes * neighbour_type

    def net_spans(self, neighbour_type: int, tb) -> list[tuple[int, int, int]]:
        """(a0, a1, k) for the pairs with neighbours of `neighbour_type`: centre atoms a0..a1-1
        (sorted by type; tb (ntypes+1,) their type boundaries) go through embedding net k; one
        span of every atom for type_one_side, else one per centre type (possibly empty)."""
        t = neighbour_type
        if self.type_one_side:
            return [(0, int(tb[-1]), t)]
        return [(int(tb[ti]), int(tb[ti + 1]), self.net_index(ti, t)) for ti in range(self.ntypes)]


@dataclass
class Fitting:
    """Energy fitting: one net per centre type; bias_atom_e (ntypes,) eV.

    Frame parameters (DeePMD-kit's numb_fparam): each net's input is [D, (f - fparam_avg) *
    fparam_inv_std] for the frame's parameters f (nfp,); fparam_avg, fparam_inv_std (nfp,) or
    None without them; default_fparam (nfp,) or None: the f of a frame that gives none.
    Atomic parameters (DeePMD-kit's numb_aparam): the input of atom i's net goes on with
    (a_i - aparam_avg) * aparam_inv_std for its parameters a_i (nap,); aparam_avg,
    aparam_inv_std (nap,) or None without them.  The first layers' weight rows are those of D,
    then of f, then of a (DeePMD-kit's order).  `fold_frame_inputs` turns such a model into one
    without them for a given f and an a shared by every atom.
    """

    neuron: list[int]
    resnet_dt: bool
    nets: list[Net]
    bias_atom_e: np.ndarray
    fparam_avg: np.ndarray | None = None
    fparam_inv_std: np.ndarray | None = None
    default_fparam: np.ndarray | None = None
    aparam_avg: np.ndarray | None = None
    aparam_inv_std: np.ndarray | None = None

    @property
    def numb_fparam(self) -> int:
        """Frame parameters the nets take (0: none)."""
        return 0 if self.fparam_avg is None else int(self.fparam_avg.shape[0])

    @property
    def numb_aparam(self) -> int:
        """Atomic parameters the nets take per atom (0: none)."""
        return 0 if self.aparam_avg is None else int(self.aparam_avg.shape[0])

    @property
    def activation(self) -> str:
        """The hidden layers' activation (DeePMD-kit's activation_function; the output layer is linear)."""
        layers = self.nets[0].layers if self.nets else []
        return layers[0].activation if len(layers) > 1 else "tanh"


@dataclass
class ModelParams:
    """A complete se_e2_a energy model.

    out_bias, out_std: (ntypes,) eV; E_i = fit(D_i) + bias_atom_e[t_i] + out_bias[t_i].
    min_nbor_dist: smallest pair distance seen in training data (Å), or None.
    s_range: (ntypes, 2) range of the raw radial entry s = w(r)/r seen per centre type in the
        training data (1/Å), or None; model compression uses it.
    info: free-form metadata (software, training input, ...).
    pair_exclude_types: DeePMD-kit's model-level pair_exclude_types, type pairs [ti, tj] as given
        (symmetric): atoms of these types are not neighbours of each other; every slot of the
        block is padding (its padding row adds to T; unlike the descriptor's exclude_types, whose
        neighbours within rcut add a zero row).
    atom_exclude_types: DeePMD-kit's model-level atom_exclude_types, type indices: the atomic
        energy of an atom of these types is zero (bias included), so it adds no energy and no
        force through its own descriptor; it is still a neighbour of the others.
    """

    type_map: list[str]
    descriptor: Descriptor
    fitting: Fitting
    out_bias: np.ndarray
    out_std: np.ndarray
    min_nbor_dist: float | None = None
    s_range: np.ndarray | None = None
    info: dict = field(default_factory=dict)
    pair_exclude_types: list[list[int]] = field(default_factory=list)
    atom_exclude_types: list[int] = field(default_factory=list)

    @property
    def ntypes(self) -> int:
        return len(self.type_map)

    @property
    def slot_modes(self) -> np.ndarray:
        """(ntypes, ntypes) int8 per (centre type, neighbour type) block: SLOTS_PAIRS, SLOTS_ZERO
        (descriptor exclude_types) or SLOTS_PADDING (model-level pair_exclude_types, which
        DeePMD-kit applies to the neighbour list before the descriptor sees it)."""
        modes = np.where(self.descriptor.excluded, SLOTS_ZERO, SLOTS_PAIRS).astype(np.int8)
        modes[exclusion_mask(self.pair_exclude_types, self.ntypes)] = SLOTS_PADDING
        return modes

    @property
    def atom_excluded(self) -> np.ndarray:
        """(ntypes,) bool: True for the types of atom_exclude_types (atomic energy zero)."""
        mask = np.zeros(self.ntypes, dtype=bool)
        mask[list(self.atom_exclude_types)] = True
        return mask

    @property
    def model_exclusions(self) -> bool:
        """True when the model excludes type pairs or atom types at the model level."""
        return bool(self.pair_exclude_types or self.atom_exclude_types)

    def validate(self, source: str = "model") -> None:
        """Check shapes and the assumptions the kernels make; raise InputError naming `source`."""
        d, f = self.descriptor, self.fitting
        nt = self.ntypes
        if d.ntypes != nt:
            raise InputError(f"{source}: sel has {d.ntypes} entries but type_map has {nt}")
        if self.min_nbor_dist is not None and not np.isfinite(self.min_nbor_dist):
            raise InputError(f"{source}: min_nbor_dist: must be a finite distance in Angstrom, got "
                             f"{float(self.min_nbor_dist)!r}")
        negative = [t for t in range(nt) if d.sel[t] < 0]
        if negative:
            raise InputError(f"{source}: sel {[int(x) for x in d.sel]}: type {self.type_map[negative[0]]} has a "
                             f"negative number of neighbour slots")
        if d.nnei == 0:
            raise InputError(f"{source}: sel {[int(x) for x in d.sel]}: no type has neighbour slots")
        if not (np.isfinite(d.rcut) and d.rcut > 0):
            raise InputError(f"{source}: rcut: must be a finite positive distance in Angstrom, got {float(d.rcut)!r}")
        if not np.isfinite(d.rcut_smth):
            raise InputError(f"{source}: rcut_smth: must be a finite distance in Angstrom, got {float(d.rcut_smth)!r}")
        nnet = nt if d.type_one_side else nt * nt
        try:
            exclusion_mask(d.exclude_types, nt)
        except ValueError as exc:
            raise InputError(f"{source}: exclude_types: {exc}") from None
        try:
            exclusion_mask(self.pair_exclude_types, nt)
        except ValueError as exc:
            raise InputError(f"{source}: pair_exclude_types: {exc}") from None
        for t in self.atom_exclude_types:
            if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < nt:
                raise InputError(f"{source}: atom_exclude_types: expected type indices 0..{nt - 1}, got {t!r}")
        if len(d.embeddings) != nnet:
            raise InputError(f"{source}: expected {nnet} embedding nets, found {len(d.embeddings)}")
        for k, net in enumerate(d.embeddings):
            if net.widths != [1] + list(d.neuron):
                raise InputError(f"{source}: embedding net {k} has widths {net.widths}, "
                                 f"expected {[1] + list(d.neuron)}")
        for name, arr in (("davg", d.davg), ("dstd", d.dstd)):
            if arr.shape != (nt, d.nnei, 4):
                raise InputError(f"{source}: {name} has shape {arr.shape}, expected {(nt, d.nnei, 4)}")
        if not np.all(d.dstd != 0):
            raise InputError(f"{source}: dstd contains zeros")
        sec = d.sec
        for t in range(nt):
            for arr, name in ((d.davg, "davg"), (d.dstd, "dstd")):
                blk = arr[:, sec[t]:sec[t + 1], :]
                if blk.shape[1] and not np.all(blk == blk[:, :1, :]):
                    raise InputError(f"{source}: {name} varies inside the slot block of type "
                                     f"{self.type_map[t]}; numdp needs it constant per block")
        if d.tables is not None:
            if len(d.tables) != nnet:
                raise InputError(f"{source}: expected {nnet} embedding tables, found {len(d.tables)}")
            for k, tab in enumerate(d.tables):
                if tab.coef.ndim != 3 or tab.coef.shape[2] != d.neuron[-1] or tab.order not in (3, 5):
                    raise InputError(f"{source}: embedding table {k} has coefficient shape "
                                     f"{tab.coef.shape}, expected (nint, 4 or 6, {d.neuron[-1]})")
        for k, net in enumerate(d.embeddings):
            bad = [a for a in (lay.activation for lay in net.layers) if a not in ACTIVATIONS]
            if bad:
                raise InputError(f"{source}: embedding net {k}: activation {bad[0]!r} is not one of "
                                 f"{', '.join(ACTIVATIONS)}")
        for k, net in enumerate(f.nets):
            acts = [lay.activation for lay in net.layers]
            if any(a not in ACTIVATIONS for a in acts[:-1]) or acts[-1] != "none":
                raise InputError(f"{source}: fitting net {k}: expected hidden layers with one of "
                                 f"{', '.join(ACTIVATIONS)} and a linear output layer, got {acts}")
        if d.axis_neuron > d.neuron[-1]:
            raise InputError(f"{source}: axis_neuron {d.axis_neuron} > last embedding width")
        if len(f.nets) != nt:
            raise InputError(f"{source}: expected {nt} fitting nets, found {len(f.nets)}")
        nfp, nap = f.numb_fparam, f.numb_aparam
        for k, net in enumerate(f.nets):
            if net.widths[0] != d.dim_out + nfp + nap or net.widths[-1] != 1:
                raise InputError(f"{source}: fitting net {k} maps {net.widths[0]} -> "
                                 f"{net.widths[-1]}, expected {d.dim_out + nfp + nap} -> 1")
            if nfp + nap and net.layers[0].residual != RESIDUAL_NONE:
                raise InputError(f"{source}: fitting net {k}: a residual shortcut over the frame or "
                                 f"atomic parameters (first layer {net.widths[0]} -> {net.widths[1]}) "
                                 f"is not supported")
        for kind, n, extra in (("fparam", nfp, ("default_fparam",)), ("aparam", nap, ())):
            avg, inv = f"{kind}_avg", f"{kind}_inv_std"
            if n:
                for name in (avg, inv, *extra):
                    arr = getattr(f, name)
                    if arr is not None and arr.shape != (n,):
                        raise InputError(f"{source}: {name} has shape {arr.shape}, expected ({n},)")
                if getattr(f, inv) is None:
                    raise InputError(f"{source}: {avg} without {inv}")
            elif any(getattr(f, name) is not None for name in (inv, *extra)):
                raise InputError(f"{source}: {' or '.join((inv, *extra))} without {avg}")
        for arr, name in ((f.bias_atom_e, "bias_atom_e"), (self.out_bias, "out_bias")):
            if arr.shape != (nt,):
                raise InputError(f"{source}: {name} has shape {arr.shape}, expected ({nt},)")


def checked_fparam(params: ModelParams, fparam) -> np.ndarray:
    """`fparam` as the (numb_fparam,) float64 frame parameters of model `params`; InputError when
    it has another size or a non-finite entry."""
    nfp = params.fitting.numb_fparam
    fp = np.asarray(fparam, dtype=np.float64).reshape(-1)
    if fp.shape != (nfp,):
        raise InputError(f"the model takes {nfp} frame parameter(s) (numb_fparam), got {fp.size}")
    if not np.all(np.isfinite(fp)):
        raise InputError(f"frame parameters must be finite, got {fp.tolist()}")
    return fp


def checked_aparam(params: ModelParams, aparam, natoms: int | None = None) -> np.ndarray:
    """`aparam` as float64 atomic parameters of model `params`: (numb_aparam,) (one set for every
    atom) or, given natoms, also (natoms, numb_aparam) from any array of natoms * numb_aparam
    values; InputError for another size or a non-finite entry."""
    nap = params.fitting.numb_aparam
    ap = np.asarray(aparam, dtype=np.float64)
    if ap.size == nap:
        ap = ap.reshape(nap)
    elif natoms is not None and nap and ap.size == natoms * nap:
        ap = ap.reshape(natoms, nap)
    else:
        per_atom = "" if natoms is None else f" or {natoms} x {nap} for {natoms} atoms"
        raise InputError(f"the model takes {nap} atomic parameter(s) per atom (numb_aparam), got "
                         f"{ap.size} values (expected {nap}{per_atom})")
    if not np.all(np.isfinite(ap)):
        raise InputError(f"atomic parameters must be finite, got {ap.ravel()[:8].tolist()}")
    return ap


def first_layer_biases(params: ModelParams, fparam=None, aparam=None) -> list[np.ndarray]:
    """Each fitting net's first-layer bias b' = b + f̂ W_f + â W_a (n_out,) for frame parameters
    `fparam` (numb_fparam,) and atomic parameters `aparam` (numb_aparam,) shared by every atom,
    each of a model that takes them (`fold_frame_inputs`)."""
    f = params.fitting
    dim, nfp = params.descriptor.dim_out, f.numb_fparam
    biases = [net.layers[0].b.copy() for net in f.nets]
    if nfp:
        fhat = (checked_fparam(params, fparam) - f.fparam_avg) * f.fparam_inv_std
        for b, net in zip(biases, f.nets):
            b += fhat @ net.layers[0].w[dim:dim + nfp]
    if f.numb_aparam:
        ahat = (checked_aparam(params, aparam) - f.aparam_avg) * f.aparam_inv_std
        for b, net in zip(biases, f.nets):
            b += ahat @ net.layers[0].w[dim + nfp:]
    return biases


def aparam_weights(params: ModelParams) -> list[np.ndarray]:
    """Each fitting net's first-layer weight rows W_a (numb_aparam, n_out) of the atomic
    parameters (float64, contiguous)."""
    rows = params.descriptor.dim_out + params.fitting.numb_fparam
    return [np.ascontiguousarray(net.layers[0].w[rows:]) for net in params.fitting.nets]


def aparam_delta(params: ModelParams, aparam: np.ndarray, shared: np.ndarray) -> np.ndarray:
    """(natoms, numb_aparam) float64: (a_i - shared) * aparam_inv_std for atomic parameters
    `aparam` (natoms, numb_aparam) of a model folded at `shared` (numb_aparam,)
    (`first_layer_biases`): atom i's first fitting layer z gains delta_i W_a of its type
    (`aparam_weights`)."""
    return np.ascontiguousarray((aparam - shared) * params.fitting.aparam_inv_std)


def fold_frame_inputs(params: ModelParams, fparam=None, aparam=None) -> ModelParams:
    """The model that `params` is for frame parameters `fparam` (numb_fparam,) and atomic
    parameters `aparam` (numb_aparam,) shared by every atom (each only for a model that takes
    them): every fitting net's first layer z = [D, f̂, â] W + b with f̂ = (f - fparam_avg) *
    fparam_inv_std, â = (a - aparam_avg) * aparam_inv_std becomes z = D W_D + b' with b' = b +
    f̂ W_f + â W_a (`first_layer_biases`), so that every evaluation path runs it unchanged.  The
    arrays not changed are shared."""
    f = params.fitting
    dim = params.descriptor.dim_out
    nets = []
    for net, b in zip(f.nets, first_layer_biases(params, fparam, aparam)):
        first = net.layers[0]
        folded = Layer(w=np.ascontiguousarray(first.w[:dim]), b=b,
                       idt=first.idt, activation=first.activation, resnet=False)
        nets.append(Net([folded] + list(net.layers[1:])))
    fitting = Fitting(neuron=list(f.neuron), resnet_dt=f.resnet_dt, nets=nets, bias_atom_e=f.bias_atom_e)
    info = dict(params.info)
    if f.numb_fparam:
        info["fparam"] = checked_fparam(params, fparam).tolist()
    if f.numb_aparam:
        info["aparam"] = checked_aparam(params, aparam).tolist()
    return ModelParams(type_map=list(params.type_map), descriptor=params.descriptor, fitting=fitting,
                       out_bias=params.out_bias, out_std=params.out_std,
                       min_nbor_dist=params.min_nbor_dist, s_range=params.s_range, info=info,
                       pair_exclude_types=params.pair_exclude_types,
                       atom_exclude_types=params.atom_exclude_types)
