"""numdp's own model file: a self-describing, versioned HDF5 file (suffix .h5 or .hdf5).

Layout of format version 2 (every array float64; units in `unit` / `<name>_unit` attributes)::

    /                         attrs: format = "numdp-model", format_version = 1, 2 or 3, numdp_version,
                                     created (ISO 8601, UTC), type_map (strings), info (JSON string),
                                     and (version 3, only when non-empty) pair_exclude_types (n, 2)
                                     int64 and atom_exclude_types (n,) int64: DeePMD-kit's
                                     model-level exclusions
      out_bias   (ntypes,)    eV, added to every atomic energy of that type
      out_std    (ntypes,)    eV
      min_nbor_dist ()        Å, optional (smallest pair distance seen in training data)
      s_range    (ntypes, 2)  1/Å, optional (range of the raw radial entry s per centre type)
      descriptor/             attrs: kind = "se_e2_a", rcut, rcut_smth (Å), sel, neuron,
                                     axis_neuron, type_one_side, resnet_dt, and (version 2,
                                     only when non-empty) exclude_types (n, 2) int64: the
                                     excluded type index pairs as DeePMD-kit gives them
        davg, dstd (ntypes, sum(sel), 4)   1/Å, normalisation of the environment matrix
        embedding/net_{k}/layer_{l}/       k = neighbour type (type_one_side) or
                                           centre + ntypes * neighbour; l = 0 .. len(neuron)-1
            w (n_in, n_out), b (n_out,), idt (n_out,) only when the layer has a timestep
            attrs: activation (numdp.model.activation.NAMES: "tanh", "gelu", ..., "none"), resnet (bool)
        tables/net_{k}/                    only in a compressed model (`numdp compress`):
            coef (nint, order+1, M)        piecewise polynomial coefficients, tau^c at [l, c, m]
            attrs: lower, upper, xmax, h0, h1 (grid in the normalised input x), n0 (fine intervals)
        tables attrs: order, dx, extrapolate (the compression settings)
      fitting/                attrs: kind = "ener", neuron, resnet_dt
        bias_atom_e (ntypes,) eV
        fparam_avg, fparam_inv_std (nfp,)  only in a model with frame parameters (DeePMD-kit's
                              numb_fparam; the first layers' inputs are [D, (f - avg) * inv_std])
        default_fparam (nfp,) optional: the frame parameters of a frame that gives none
        aparam_avg, aparam_inv_std (nap,)  only in a model with atomic parameters (numb_aparam;
                              the inputs go on with (a_i - avg) * inv_std, after f)
        net_{t}/layer_{l}/    t = centre type; l = 0 .. len(neuron) (last layer: activation none)

Versioning: `format_version` is raised whenever a change would make an older numdp misread a
file (a new required group or attribute, a changed meaning); an older numdp refuses a newer
version with a clear message instead of guessing.  Version 2 added `exclude_types`, which an
older numdp would ignore and so evaluate a different model: a file is written as version 2 only
when its model excludes type pairs, as version 1 otherwise (a file without the attribute reads
as no exclusion).  Version 3 added the model-level pair_exclude_types and atom_exclude_types, for
the same reason, and is written only when the model has them.  A reader ignores groups, datasets and
attributes it does not know, so a future addition such as per-embedding-net tables of a
compressed model (e.g. `descriptor/compressed/net_{k}/...`) coexists with the plain nets.
"""
from __future__ import annotations

import datetime
import json
from pathlib import Path

import h5py
import numpy as np

from ..errors import InputError, require_file
from ..errors import one_line as _one_line
from .atomic import atomic_h5
from ..model.activation import NAMES as ACTIVATIONS
from ..model.params import Descriptor, Fitting, Layer, ModelParams, Net
from ..model.tables import Table

FORMAT = "numdp-model"
FORMAT_VERSION = 3          # the newest version read and written
EXCLUSION_VERSION = 2       # the first version with descriptor exclude_types
MODEL_EXCLUSION_VERSION = 3   # the first version with model-level pair_exclude_types / atom_exclude_types
ANGSTROM, INV_ANGSTROM, EV = "Å", "1/Å", "eV"
FPARAM_ARRAYS = ("fparam_avg", "fparam_inv_std", "default_fparam", "aparam_avg", "aparam_inv_std")
"""The fitting's optional frame- and atomic-parameter arrays (their units are the data's: none
recorded)."""


def atomic_h5_file(path):
    """An h5py.File at a temporary name that replaces `path` when complete (numdp.io.atomic)."""
    return atomic_h5(path, "model file")


# ---------------------------------------------------------------- writing


def _json_default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"info value of type {type(obj).__name__} is not JSON serialisable")


def _dataset(group, name: str, data, unit: str | None = None):
    ds = group.create_dataset(name, data=np.asarray(data, dtype=np.float64))
    if unit:
        ds.attrs["unit"] = unit
    return ds


def _write_net(group, net: Net) -> None:
    for l, lay in enumerate(net.layers):
        g = group.create_group(f"layer_{l}")
        g.attrs["activation"] = lay.activation
        g.attrs["resnet"] = bool(lay.resnet)
        _dataset(g, "w", lay.w)
        _dataset(g, "b", np.ravel(lay.b))
        if lay.idt is not None:
            _dataset(g, "idt", np.ravel(lay.idt))


def _write_tables(group, tables, settings: dict) -> None:
    for key in ("order", "dx", "extrapolate"):
        if key in settings:
            group.attrs[key] = settings[key]
    for k, tab in enumerate(tables):
        t = group.create_group(f"net_{k}")
        for key in ("lower", "upper", "xmax", "h0", "h1"):
            t.attrs[key] = float(getattr(tab, key))
        t.attrs["n0"] = np.int64(tab.n0)
        t.create_dataset("coef", data=np.asarray(tab.coef, dtype=np.float64))


def write_h5_model(params: ModelParams, path) -> None:
    """Write `params` as a numdp model file (format above), atomically."""
    from .. import __version__

    path = Path(path)
    params.validate(f"model to be written to {path}")
    try:
        info = json.dumps(params.info or {}, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: model info cannot be stored ({_one_line(exc)})") from None
    d, f = params.descriptor, params.fitting
    with atomic_h5_file(path) as h5:
        a = h5.attrs
        a["format"] = FORMAT
        a["format_version"] = np.int64(MODEL_EXCLUSION_VERSION if params.model_exclusions
                                       else EXCLUSION_VERSION if d.exclude_types else 1)
        a["numdp_version"] = __version__
        a["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        a.create("type_map", data=[str(t) for t in params.type_map], dtype=h5py.string_dtype())
        a["info"] = info
        if params.pair_exclude_types:
            a["pair_exclude_types"] = np.asarray(params.pair_exclude_types, dtype=np.int64).reshape(-1, 2)
        if params.atom_exclude_types:
            a["atom_exclude_types"] = np.asarray(params.atom_exclude_types, dtype=np.int64).reshape(-1)
        _dataset(h5, "out_bias", np.ravel(params.out_bias), EV)
        _dataset(h5, "out_std", np.ravel(params.out_std), EV)
        if params.min_nbor_dist is not None:
            _dataset(h5, "min_nbor_dist", float(params.min_nbor_dist), ANGSTROM)
        if params.s_range is not None:
            _dataset(h5, "s_range", params.s_range, INV_ANGSTROM)

        g = h5.create_group("descriptor")
        g.attrs["kind"] = "se_e2_a"
        g.attrs["rcut"] = float(d.rcut)
        g.attrs["rcut_unit"] = ANGSTROM
        g.attrs["rcut_smth"] = float(d.rcut_smth)
        g.attrs["rcut_smth_unit"] = ANGSTROM
        g.attrs["sel"] = np.asarray(d.sel, dtype=np.int64)
        g.attrs["neuron"] = np.asarray(d.neuron, dtype=np.int64)
        g.attrs["axis_neuron"] = np.int64(d.axis_neuron)
        g.attrs["type_one_side"] = bool(d.type_one_side)
        g.attrs["resnet_dt"] = bool(d.resnet_dt)
        if d.exclude_types:
            g.attrs["exclude_types"] = np.asarray(d.exclude_types, dtype=np.int64).reshape(-1, 2)
        _dataset(g, "davg", d.davg, INV_ANGSTROM)
        _dataset(g, "dstd", d.dstd, INV_ANGSTROM)
        emb = g.create_group("embedding")
        for k, net in enumerate(d.embeddings):
            _write_net(emb.create_group(f"net_{k}"), net)
        if d.tables is not None:
            _write_tables(g.create_group("tables"), d.tables, params.info.get("compression", {}))

        g = h5.create_group("fitting")
        g.attrs["kind"] = "ener"
        g.attrs["neuron"] = np.asarray(f.neuron, dtype=np.int64)
        g.attrs["resnet_dt"] = bool(f.resnet_dt)
        _dataset(g, "bias_atom_e", np.ravel(f.bias_atom_e), EV)
        for name in FPARAM_ARRAYS:
            if getattr(f, name) is not None:
                _dataset(g, name, getattr(f, name))
        for t, net in enumerate(f.nets):
            _write_net(g.create_group(f"net_{t}"), net)


# ---------------------------------------------------------------- reading


class _Reader:
    """Typed access to one open numdp model file; every problem is an InputError naming it."""

    def __init__(self, h5: h5py.File, path: Path):
        self.h5, self.path = h5, path

    def fail(self, msg: str):
        raise InputError(f"{self.path}: {msg}")

    def group(self, name: str) -> h5py.Group:
        obj = self.h5.get(name)
        if not isinstance(obj, h5py.Group):
            self.fail(f"missing group '/{name}' (truncated or malformed numdp model file)")
        return obj

    def attr(self, obj, name: str):
        if name not in obj.attrs:
            where = obj.name if obj.name != "/" else "root"
            self.fail(f"missing attribute '{name}' of {where} (truncated or malformed numdp model file)")
        return obj.attrs[name]

    def array(self, name: str, shape: tuple | None = None, optional: bool = False):
        obj = self.h5.get(name)
        if obj is None and optional:
            return None
        if not isinstance(obj, h5py.Dataset):
            self.fail(f"missing dataset '/{name}' (truncated or malformed numdp model file)")
        try:
            arr = np.asarray(obj[()], dtype=np.float64)
        except (OSError, TypeError, ValueError) as exc:
            self.fail(f"cannot read dataset '/{name}' ({_one_line(exc)})")
        if shape is not None and (arr.ndim != len(shape)
                                  or any(s is not None and s != n for s, n in zip(shape, arr.shape))):
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
            self.fail(f"dataset '/{name}' has shape {arr.shape}, expected {want}")
        if not np.all(np.isfinite(arr)):
            self.fail(f"dataset '/{name}' contains non-finite values")
        return arr

    def int_list(self, obj, name: str) -> list[int]:
        val = np.atleast_1d(np.asarray(self.attr(obj, name)))
        if val.ndim != 1 or not np.issubdtype(val.dtype, np.integer):
            self.fail(f"attribute '{name}' of {obj.name} must be a list of integers, got {val!r}")
        return [int(v) for v in val]

    def scalar(self, obj, name: str, kind):
        val = np.asarray(self.attr(obj, name))
        if val.ndim != 0:
            self.fail(f"attribute '{name}' of {obj.name} must be a scalar, got {val!r}")
        try:
            return kind(val.item())
        except (TypeError, ValueError):
            self.fail(f"attribute '{name}' of {obj.name} has invalid value {val!r}")

    def pairs(self, obj, name: str) -> list[list[int]]:
        """An optional (n, 2) integer attribute as a list of pairs ([] when absent)."""
        if name not in obj.attrs:
            return []
        val = np.asarray(obj.attrs[name])
        if val.ndim != 2 or val.shape[1] != 2 or not np.issubdtype(val.dtype, np.integer):
            self.fail(f"attribute '{name}' of {obj.name} must be an (n, 2) integer array, got {val!r}")
        return [[int(a), int(b)] for a, b in val]

    def string(self, obj, name: str, default: str | None = None) -> str:
        if default is not None and name not in obj.attrs:
            return default
        val = self.attr(obj, name)
        if isinstance(val, bytes):
            val = val.decode("utf-8", "replace")
        if not isinstance(val, str):
            self.fail(f"attribute '{name}' of {obj.name} must be a string, got {val!r}")
        return val

    def net(self, base: str, nlayers: int, what: str) -> Net:
        layers, n_in = [], None
        for l in range(nlayers):
            name = f"{base}/layer_{l}"
            g = self.group(name)
            w = self.array(f"{name}/w", (n_in, None))
            n_out = w.shape[1]
            b = self.array(f"{name}/b", (n_out,))
            idt = self.array(f"{name}/idt", (n_out,), optional=True)
            act = self.string(g, "activation")
            if act not in ACTIVATIONS:
                self.fail(f"{what} layer {l}: activation '{act}' is not one of {', '.join(ACTIVATIONS)}")
            layers.append(Layer(w=w, b=b, idt=idt, activation=act,
                                resnet=self.scalar(g, "resnet", bool)))
            n_in = n_out
        return Net(layers)


def _check_header(h5: h5py.File, path: Path) -> None:
    fmt = h5.attrs.get("format")
    if isinstance(fmt, bytes):
        fmt = fmt.decode("utf-8", "replace")
    if fmt is None:
        raise InputError(f"{path}: not a numdp model file (no 'format' attribute)")
    if fmt != FORMAT:
        raise InputError(f"{path}: unknown format '{fmt}' (expected '{FORMAT}')")
    if "format_version" not in h5.attrs:
        raise InputError(f"{path}: missing attribute 'format_version' (malformed numdp model file)")
    ver = np.asarray(h5.attrs["format_version"])
    if ver.ndim != 0 or not np.issubdtype(ver.dtype, np.integer) or int(ver) < 1:
        raise InputError(f"{path}: invalid format_version {ver!r}")
    if int(ver) > FORMAT_VERSION:
        written = h5.attrs.get("numdp_version", "a newer numdp")
        raise InputError(f"{path}: numdp model format version {int(ver)} (written by numdp "
                         f"{written}) is newer than this numdp reads ({FORMAT_VERSION}); upgrade numdp")


def _read(h5: h5py.File, path: Path) -> ModelParams:
    _check_header(h5, path)
    r = _Reader(h5, path)
    tm = np.atleast_1d(np.asarray(r.attr(h5, "type_map")))
    type_map = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in tm]
    nt = len(type_map)
    if nt == 0:
        r.fail("type_map is empty")

    g = r.group("descriptor")
    kind = r.string(g, "kind", default="se_e2_a")
    if kind != "se_e2_a":
        r.fail(f"descriptor kind '{kind}' is not supported (se_e2_a only)")
    sel = r.int_list(g, "sel")
    if len(sel) != nt:
        r.fail(f"descriptor sel has {len(sel)} entries but type_map has {nt}")
    neuron = r.int_list(g, "neuron")
    type_one_side = r.scalar(g, "type_one_side", bool)
    nnei = sum(sel)
    nnet = nt if type_one_side else nt * nt
    embeddings = [r.net(f"descriptor/embedding/net_{k}", len(neuron), f"embedding net {k}")
                  for k in range(nnet)]
    tables = None
    if "tables" in g:
        tables = []
        for k in range(nnet):
            t = r.group(f"descriptor/tables/net_{k}")
            coef = r.array(f"descriptor/tables/net_{k}/coef", (None, None, neuron[-1]))
            tables.append(Table(**{key: r.scalar(t, key, float) for key in ("lower", "upper", "xmax", "h0", "h1")},
                                n0=r.scalar(t, "n0", int), coef=coef))
    descriptor = Descriptor(
        rcut=r.scalar(g, "rcut", float), rcut_smth=r.scalar(g, "rcut_smth", float),
        sel=sel, neuron=neuron, axis_neuron=r.scalar(g, "axis_neuron", int),
        type_one_side=type_one_side, resnet_dt=r.scalar(g, "resnet_dt", bool),
        davg=r.array("descriptor/davg", (nt, nnei, 4)), dstd=r.array("descriptor/dstd", (nt, nnei, 4)),
        embeddings=embeddings, tables=tables, exclude_types=r.pairs(g, "exclude_types"))

    g = r.group("fitting")
    kind = r.string(g, "kind", default="ener")
    if kind != "ener":
        r.fail(f"fitting kind '{kind}' is not supported (ener only)")
    fneuron = r.int_list(g, "neuron")
    fitting = Fitting(neuron=fneuron, resnet_dt=r.scalar(g, "resnet_dt", bool),
                      nets=[r.net(f"fitting/net_{t}", len(fneuron) + 1, f"fitting net {t}")
                            for t in range(nt)],
                      bias_atom_e=r.array("fitting/bias_atom_e", (nt,)),
                      **{name: r.array(f"fitting/{name}", (None,), optional=True) for name in FPARAM_ARRAYS})

    mnd = r.array("min_nbor_dist", (), optional=True)
    info_text = r.string(h5, "info", default="{}")
    try:
        info = json.loads(info_text)
    except ValueError as exc:
        r.fail(f"attribute 'info' is not valid JSON ({_one_line(exc)})")
    if not isinstance(info, dict):
        r.fail("attribute 'info' must hold a JSON object")
    return ModelParams(type_map=type_map, descriptor=descriptor, fitting=fitting,
                       out_bias=r.array("out_bias", (nt,)), out_std=r.array("out_std", (nt,)),
                       min_nbor_dist=None if mnd is None else float(mnd),
                       s_range=r.array("s_range", (nt, 2), optional=True), info=info,
                       pair_exclude_types=r.pairs(h5, "pair_exclude_types"),
                       atom_exclude_types=r.int_list(h5, "atom_exclude_types") if "atom_exclude_types" in h5.attrs
                       else [])


def is_h5_model(h5: h5py.File) -> bool:
    """True if the open HDF5 file carries numdp's `format` marker."""
    return "format" in h5.attrs


def read_h5_model(path) -> ModelParams:
    """Read and validate a numdp model file; every problem raises one-line InputError naming it."""
    path = Path(path)
    require_file(path, "model file")
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: cannot read as HDF5 ({_one_line(exc)})") from None
    try:
        with h5:
            params = _read(h5, path)
    except (OSError, KeyError, RuntimeError) as exc:  # damaged file: h5py fails while reading
        raise InputError(f"{path}: damaged numdp model file ({_one_line(exc)})") from None
    params.validate(str(path))
    return params
