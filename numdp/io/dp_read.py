"""Read DeePMD-kit's native `.dp` model file (HDF5 + JSON tree, reference §11) into ModelParams."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from ..errors import InputError, one_line
from ..model.activation import NAMES, canonical
from ..model.params import Descriptor, Fitting, Layer, ModelParams, Net, exclusion_mask
from ..model.tables import Table


def _resolve(node, h5: h5py.File, path: Path, names: dict, under_variables: bool = False):
    """Replace dataset path strings under `@variables` keys by the arrays they name (float64),
    recording in `names` id(array) -> "dataset '/variable_0030'" for messages; InputError naming
    the dataset when one is missing or unreadable."""
    if isinstance(node, dict):
        if node.get("@is_variable"):
            return np.asarray(node["value"], dtype=np.float64)
        return {k: _resolve(v, h5, path, names, under_variables or k == "@variables") for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, h5, path, names, under_variables) for v in node]
    if under_variables and isinstance(node, str):
        try:
            obj = h5.get(node)
        except (KeyError, ValueError, TypeError):
            obj = None
        if not isinstance(obj, h5py.Dataset):
            raise InputError(f"{path}: dataset '{node}' named in the model's JSON is missing "
                             f"(truncated or malformed .dp file)")
        try:
            arr = np.asarray(obj[()], dtype=np.float64)
        except (OSError, KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: cannot read dataset '{node}' ({one_line(exc)})") from None
        names[id(arr)] = f"dataset '{node}'"
        return arr
    return node


def _array(value, what: str, path: Path, names: dict, shape: tuple | None = None,
           flat: bool = False) -> np.ndarray:
    """`value` (an array of the resolved tree) as a finite float64 array of `shape` (when given;
    `flat`: its values raveled first, so that (n, 1) passes for (n,)); else InputError naming
    `what` and, from `names` (id -> dataset or tensor name), where it is stored."""
    where = f" ({names[id(value)]})" if id(value) in names else ""
    if value is None:
        raise InputError(f"{path}: {what} is missing")
    arr = np.asarray(value, dtype=np.float64)
    if flat:
        arr = arr.ravel()
    if shape is not None and arr.shape != tuple(shape):
        raise InputError(f"{path}: {what}{where} has shape {np.shape(value)}, expected {tuple(shape)}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{path}: {what}{where} contains non-finite values")
    return arr


def _layer(d: dict, what: str, n_in: int, n_out: int, path: Path, names: dict) -> Layer:
    """Layer `what` ("fitting net 0 layer 1") of the tree, checked to map n_in -> n_out."""
    _check(isinstance(d, dict) and isinstance(d.get("@variables"), dict), path, f"{what}: no @variables")
    var = d["@variables"]
    idt = var.get("idt")
    given = d.get("activation_function", "tanh")
    act = canonical(given)
    if act is None:
        raise InputError(f"{path}: {what}: activation '{given}' is not supported (numdp runs {', '.join(NAMES)})")
    return Layer(w=_array(var.get("w"), f"{what}: w", path, names, (n_in, n_out)),
                 b=_array(var.get("b"), f"{what}: b", path, names, (n_out,), flat=True),
                 idt=None if idt is None else _array(idt, f"{what}: idt", path, names, (n_out,), flat=True),
                 activation=act,
                 resnet=bool(d.get("resnet", True)))


def _net(d: dict | None, what: str, widths: list[int], path: Path, names: dict) -> Net:
    """Net `what` of the tree, checked against the architecture: `widths` [n_in, n_1, ..., n_out]."""
    if d is None:
        raise InputError(f"{path}: {what} is missing (numdp needs every net, also those of excluded "
                         f"type pairs, whose padding slots still use it)")
    layers = d.get("layers") if isinstance(d, dict) else None
    _check(isinstance(layers, list), path, f"{what}: no list of layers")
    _check(len(layers) == len(widths) - 1, path,
           f"{what} has {len(layers)} layers, expected {len(widths) - 1} (widths {widths})")
    return Net([_layer(lay, f"{what} layer {l}", widths[l], widths[l + 1], path, names)
                for l, lay in enumerate(layers)])


def _fine_intervals(lower: float, upper: float, xmax: float, h0: float, h1: float, nint: int) -> int:
    """The number n0 of fine intervals of a `.dp` table: int((upper - lower) / h0), as DeePMD-kit's
    lookup takes it; one more for a table that numdp before its `dp_upper` wrote with upper a few
    ulps short of lower + n0 h0 (the quotient within 1e-9 below an integer, and the rows one more
    than that integer plus the coarse intervals from upper to xmax)."""
    q = (upper - lower) / h0
    n0 = int(q)
    if round(q) == n0 + 1 and n0 + 1 - q < 1e-9 and nint == n0 + 1 + round((xmax - upper) / h1):
        return n0 + 1
    return n0


def _tables(compress: dict | None, M: int, path: Path):
    """Tables of a compressed `.dp` descriptor (reference §9.4): per net, data (nspline, 6M) with
    the coefficient of tau^c for output m at column 6m + c, and info [lower, upper, xmax, h0, h1,
    check_frequency]."""
    if not compress:
        return None
    var = compress["@variables"]
    tables = []
    for k, (data, info) in enumerate(zip(var["compress_data"], var["compress_info"])):
        data = np.asarray(data, dtype=np.float64)
        info = np.asarray(info, dtype=np.float64).ravel()
        _check(data.ndim == 2 and data.shape[1] == 6 * M and info.size >= 5, path,
               f"compressed table {k} has shape {data.shape}, expected (nspline, {6 * M})")
        lower, upper, xmax, h0, h1 = (float(v) for v in info[:5])
        coef = data.reshape(data.shape[0], M, 6).transpose(0, 2, 1)
        tables.append(Table(lower=lower, upper=upper, xmax=xmax, h0=h0, h1=h1,
                            n0=_fine_intervals(lower, upper, xmax, h0, h1, data.shape[0]),
                            coef=np.ascontiguousarray(coef)))
    return tables


def _exclude_types(pairs, nt: int, path: Path, what: str = "descriptor exclude_types") -> list[list[int]]:
    """Excluded type pairs ([[ti, tj], ...], or null/absent for none; the descriptor's
    exclude_types or the model's pair_exclude_types, `what`), checked."""
    pairs = [] if pairs is None else pairs
    _check(isinstance(pairs, list), path, f"{what} is not a list: {pairs!r}")
    try:
        exclusion_mask(pairs, nt)
    except ValueError as exc:
        raise InputError(f"{path}: {what}: {exc}") from None
    return [[int(ti), int(tj)] for ti, tj in pairs]


def _atom_exclude_types(types, nt: int, path: Path) -> list[int]:
    """The model's atom_exclude_types ([t, ...], or null/absent for none), checked."""
    types = [] if types is None else types
    _check(isinstance(types, list) and all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < nt
                                           for t in types), path,
           f"atom_exclude_types: expected a list of type indices 0..{nt - 1}, got {types!r}")
    return sorted(set(int(t) for t in types))


def _check(cond: bool, path: Path, msg: str) -> None:
    if not cond:
        raise InputError(f"{path}: {msg}")


def _input_stats(fit: dict, path: Path) -> dict:
    """The fitting's frame- and atomic-parameter statistics (and default frame parameters) as
    `Fitting` fields (empty without numb_fparam and numb_aparam).  fparam_avg / aparam_avg must
    hold numb_fparam / numb_aparam entries; `ModelParams.validate` checks the others against it."""
    var = fit["@variables"]
    arrays = {}
    for kind, extra in (("fparam", ("default_fparam",)), ("aparam", ())):
        n = int(fit.get(f"numb_{kind}") or 0)
        if n == 0:
            continue
        avg = var.get(f"{kind}_avg")
        _check(avg is not None, path, f"numb_{kind} {n} without the fitting's {kind}_avg")
        avg = np.asarray(avg, dtype=np.float64).reshape(-1)
        _check(avg.shape == (n,), path, f"fitting {kind}_avg has {avg.size} entries, numb_{kind} {n}")
        arrays[f"{kind}_avg"] = avg
        for key, value in ((f"{kind}_inv_std", var.get(f"{kind}_inv_std")),
                           *((name, fit.get(name)) for name in extra)):
            if value is not None:
                arrays[key] = np.asarray(value, dtype=np.float64).reshape(-1)
    return arrays


def params_from_dp_tree(tree: dict, path: Path, names: dict | None = None) -> ModelParams:
    """Build ModelParams from the resolved JSON tree of a `.dp` file, checking every network
    array's shape against the architecture the tree describes.  names: id(array) -> where the
    array is stored ("dataset '/variable_0030'", "tensor ..."), for messages."""
    names = {} if names is None else names
    model = tree["model"]
    _check(model.get("type", "standard") == "standard", path, f"model type {model.get('type')} not supported")
    desc, fit = model["descriptor"], model["fitting"]
    _check(desc.get("type") in ("se_e2_a", "se_a"), path, f"descriptor {desc.get('type')} not supported (se_e2_a only)")
    _check(fit.get("type") == "ener", path, f"fitting {fit.get('type')} not supported (ener only)")
    _check(float(desc.get("env_protection", 0.0)) == 0.0, path, "env_protection != 0 is not supported")
    _check(not (fit.get("numb_aparam") and fit.get("use_aparam_as_mask")), path,
           "atomic parameters used as a mask (use_aparam_as_mask) are not supported")
    _check(not fit.get("dim_case_embd"), path, "case embeddings (dim_case_embd, multi-task models) are not supported")
    _check(not fit.get("mixed_types", False), path, "mixed_types fitting is not supported")
    atom_ener = fit.get("atom_ener") or []
    _check(all(e is None for e in atom_ener), path,
           f"fitting atom_ener {atom_ener!r} is not supported (DeePMD-kit subtracts, for those types, "
           f"the fitting net's output at a zero descriptor)")
    type_map = list(model["type_map"])
    nt = len(type_map)
    var = desc["@variables"]
    neuron, fneuron = [int(n) for n in desc["neuron"]], [int(n) for n in fit["neuron"]]
    _check(len(neuron) > 0, path, "descriptor neuron is empty")
    embeds = [_net(n, f"embedding net {k}", [1] + neuron, path, names)
              for k, n in enumerate(desc["embeddings"]["networks"])]
    tables = _tables(desc.get("compress"), neuron[-1], path)
    fit_in = neuron[-1] * int(desc["axis_neuron"]) + int(fit.get("numb_fparam") or 0) + int(fit.get("numb_aparam") or 0)
    fnets = [_net(n, f"fitting net {k}", [fit_in] + fneuron + [1], path, names)
             for k, n in enumerate(fit["nets"]["networks"])]
    fit_var = fit["@variables"]

    def per_type(value, what, default):
        return np.full(nt, default) if value is None else _array(value, what, path, names, (nt,), flat=True)

    bias_atom_e = per_type(fit_var.get("bias_atom_e"), "fitting bias_atom_e", 0.0)
    stats = _input_stats(fit, path)
    mvar = model.get("@variables", {})
    out_bias = per_type(mvar.get("out_bias"), "out_bias", 0.0)
    out_std = per_type(mvar.get("out_std"), "out_std", 1.0)
    top = tree.get("@variables", {})
    mnd = top.get("min_nbor_dist")
    if mnd is not None:   # sizes the tables of a compression: a NaN or inf is a damaged file
        mnd = _array(mnd, "min_nbor_dist", path, names, flat=True)
        _check(mnd.size == 1, path, f"min_nbor_dist has {mnd.size} values, expected 1")
    params = ModelParams(
        type_map=type_map,
        descriptor=Descriptor(
            rcut=float(desc["rcut"]), rcut_smth=float(desc["rcut_smth"]), sel=[int(s) for s in desc["sel"]],
            neuron=neuron, axis_neuron=int(desc["axis_neuron"]),
            type_one_side=bool(desc["type_one_side"]), resnet_dt=bool(desc.get("resnet_dt", False)),
            davg=_array(var.get("davg"), "descriptor davg", path, names),
            dstd=_array(var.get("dstd"), "descriptor dstd", path, names),
            embeddings=embeds, tables=tables, exclude_types=_exclude_types(desc.get("exclude_types"), nt, path)),
        fitting=Fitting(neuron=fneuron, resnet_dt=bool(fit.get("resnet_dt", True)),
                        nets=fnets, bias_atom_e=bias_atom_e, **stats),
        out_bias=out_bias, out_std=out_std,
        min_nbor_dist=None if mnd is None else float(np.asarray(mnd).ravel()[0]),
        info={"source": "deepmd-kit", "software": tree.get("software"), "version": tree.get("version"),
              "model_def_script": tree.get("model_def_script")},
        pair_exclude_types=_exclude_types(model.get("pair_exclude_types"), nt, path, "pair_exclude_types"),
        atom_exclude_types=_atom_exclude_types(model.get("atom_exclude_types"), nt, path),
    )
    # DeePMD-kit's fitting zeroes the atoms of its own exclude_types, its model sets them to the
    # model's atom_exclude_types; other fitting exclusions (out_bias only) are not read
    _check(_atom_exclude_types(fit.get("exclude_types"), nt, path) in ([], params.atom_exclude_types), path,
           f"fitting exclude_types {fit.get('exclude_types')!r} differ from the model's atom_exclude_types "
           f"{params.atom_exclude_types!r}; numdp reads the model's only")
    params.validate(str(path))
    return params


def read_dp(path) -> ModelParams:
    """Load a DeePMD-kit `.dp` file; InputError names the file on any problem."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: model file not found")
    names: dict = {}
    try:
        with h5py.File(path, "r") as h5:
            if "json" not in h5.attrs:
                raise InputError(f"{path}: not a DeePMD-kit .dp file (no 'json' attribute)")
            try:
                tree = json.loads(h5.attrs["json"])
            except (TypeError, ValueError) as exc:
                raise InputError(f"{path}: root attribute 'json' is not valid JSON ({one_line(exc)})") from None
            _check(isinstance(tree, dict), path, f"root attribute 'json' holds a {type(tree).__name__}, "
                                                 f"not a JSON object")
            try:
                tree = _resolve(tree, h5, path, names)
            except (KeyError, TypeError, ValueError) as exc:
                raise InputError(f"{path}: malformed .dp model ({type(exc).__name__}: {one_line(exc)})") from None
    except (OSError, RuntimeError) as exc:
        raise InputError(f"{path}: cannot read as HDF5 ({one_line(exc)})") from None
    try:
        return params_from_dp_tree(tree, path, names)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise InputError(f"{path}: malformed .dp model ({type(exc).__name__}: {one_line(exc)})") from None
