"""Write ModelParams as a DeePMD-kit 3.x native `.dp` model file (reference §11).

The file mirrors what DeePMD-kit 3.2 writes itself (backend "DPModel"): the root attribute
`json` holds the model tree, serialised compactly; every array under an `@variables` key is
stored as a root dataset `variable_NNNN` (counter in depth-first order of the tree's keys) and
replaced in the tree by that dataset's path.  The keys, their order and the `@class`/`@version`
values are those of DeePMD-kit's own files, so `dp` (e.g. `dp convert-backend`, `dp compress`,
`DeepPot`) reads the result like one of its own; numdp adds no key of its own.

Values the parameters do not carry:
- `software` "deepmd-kit" and `version`: the version recorded in `params.info` when the model
  came from a DeePMD-kit file, else DP_FORMAT_VERSION ("3.2.0", the release whose layout this is).
- `model_def_script`: `params.info["model_def_script"]` when present, else rebuilt from the
  parameters (type_map, descriptor and fitting_net sections without seeds).
- top-level `@variables.min_nbor_dist`: `params.min_nbor_dist`, else DEFAULT_MIN_NBOR_DIST
  (0.5 Å).  DeePMD-kit uses it only to size the tables of `dp compress`; a smaller distance is
  conservative (the tables cover more) and 0.5 Å is below every bond length.
"""
from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..model.params import ModelParams
from .h5_model import atomic_h5_file

DP_FORMAT_VERSION = "3.2.0"
DEFAULT_MIN_NBOR_DIST = 0.5  # Å, see module docstring
PRECISION = "float64"


def _f64(a) -> np.ndarray:
    return np.array(a, dtype=np.float64)


def _layer(lay) -> dict:
    return {
        "@class": "Layer", "@version": 2, "bias": True, "use_timestep": lay.idt is not None,
        "activation_function": lay.activation, "resnet": bool(lay.resnet), "precision": PRECISION,
        "trainable": True,
        "@variables": {"w": _f64(lay.w), "b": _f64(lay.b).ravel(),
                       "idt": None if lay.idt is None else _f64(lay.idt).ravel()},
    }


def model_def_script(p: ModelParams) -> dict:
    """DeePMD-kit's model definition (type_map, descriptor, fitting_net) rebuilt from the
    parameters, for a model that has none recorded (`.dp` files, `DeepPot.get_model_def_script`)."""
    d, f = p.descriptor, p.fitting
    act_d, act_f = d.activation, f.activation
    script = {
        "type_map": list(p.type_map),
        "descriptor": {"type": "se_e2_a", "rcut": float(d.rcut), "rcut_smth": float(d.rcut_smth),
                       "sel": [int(s) for s in d.sel], "neuron": [int(n) for n in d.neuron],
                       "axis_neuron": int(d.axis_neuron), "resnet_dt": bool(d.resnet_dt),
                       "type_one_side": bool(d.type_one_side), "activation_function": act_d,
                       "precision": PRECISION},
        "fitting_net": {"type": "ener", "neuron": [int(n) for n in f.neuron],
                        "resnet_dt": bool(f.resnet_dt), "activation_function": act_f,
                        "precision": PRECISION},
    }
    if d.exclude_types:
        script["descriptor"]["exclude_types"] = [[int(ti), int(tj)] for ti, tj in d.exclude_types]
    if p.pair_exclude_types:
        script["pair_exclude_types"] = [[int(ti), int(tj)] for ti, tj in p.pair_exclude_types]
    if p.atom_exclude_types:
        script["atom_exclude_types"] = [int(t) for t in p.atom_exclude_types]
    if f.numb_fparam:
        script["fitting_net"]["numb_fparam"] = f.numb_fparam
        if f.default_fparam is not None:
            script["fitting_net"]["default_fparam"] = [float(v) for v in f.default_fparam]
    if f.numb_aparam:
        script["fitting_net"]["numb_aparam"] = f.numb_aparam
    return script


def _dp_table_data(tab) -> np.ndarray:
    """DeePMD-kit's (nspline, 6M) layout: coefficient of tau^c for output m at column 6m + c
    (cubic tables are written as quintics with zero 4th and 5th coefficients)."""
    coef = np.zeros((tab.coef.shape[0], 6, tab.coef.shape[2]))
    coef[:, :tab.coef.shape[1], :] = tab.coef
    return _f64(coef.transpose(0, 2, 1).reshape(coef.shape[0], -1))


def _table_info(tab) -> np.ndarray:
    """DeePMD-kit's compress_info [lower, upper, xmax, h0, h1, check_frequency] of a table, with
    `upper` such that int((upper - lower) / h0) is the table's n0, the fine-interval count that
    the readers (DeePMD-kit's and numdp's) derive from it (numdp.model.compress.dp_upper; tables
    compressed by earlier numdp versions may need the ulp)."""
    from ..model.compress import dp_upper

    return _f64([tab.lower, dp_upper(tab.lower, tab.upper, tab.h0, tab.n0), tab.xmax, tab.h0, tab.h1, -1.0])


def dp_tree(p: ModelParams) -> dict:
    """The `.dp` JSON tree of `p` with numpy arrays in place of dataset paths."""
    d, f = p.descriptor, p.fitting
    nt = p.ntypes
    type_map = list(p.type_map)
    sel = [int(s) for s in d.sel]
    neuron = [int(n) for n in d.neuron]
    fneuron = [int(n) for n in f.neuron]
    act_d, act_f = d.activation, f.activation
    nfp, nap = f.numb_fparam, f.numb_aparam
    embeddings = {
        "@class": "NetworkCollection", "@version": 1, "ndim": 1 if d.type_one_side else 2,
        "ntypes": nt, "network_type": "embedding_network",
        "networks": [{"@class": "EmbeddingNetwork", "@version": 2, "in_dim": 1, "neuron": neuron,
                      "activation_function": act_d, "resnet_dt": bool(d.resnet_dt), "bias": True,
                      "precision": PRECISION, "layers": [_layer(lay) for lay in net.layers]}
                     for net in d.embeddings],
    }
    descriptor = {
        "@class": "Descriptor", "type": "se_e2_a", "@version": 2,
        "rcut": float(d.rcut), "rcut_smth": float(d.rcut_smth), "sel": sel, "neuron": neuron,
        "axis_neuron": int(d.axis_neuron), "resnet_dt": bool(d.resnet_dt), "trainable": True,
        "type_one_side": bool(d.type_one_side),
        "exclude_types": [[int(ti), int(tj)] for ti, tj in d.exclude_types], "env_protection": 0.0,
        "set_davg_zero": False, "activation_function": act_d, "precision": PRECISION, "spin": None,
        "env_mat": {"rcut": float(d.rcut), "rcut_smth": float(d.rcut_smth), "protection": 0.0,
                    "use_exp_switch": False},
        "embeddings": embeddings,
        "@variables": {"davg": _f64(d.davg), "dstd": _f64(d.dstd)},
        "type_map": type_map,
    }
    if d.tables is not None:
        descriptor["@version"] = 3
        descriptor["compress"] = {"@variables": {
            "compress_data": [_dp_table_data(tab) for tab in d.tables],
            "compress_info": [_table_info(tab) for tab in d.tables]}}
    nets = {
        "@class": "NetworkCollection", "@version": 1, "ndim": 1, "ntypes": nt,
        "network_type": "fitting_network",
        "networks": [{"@class": "FittingNetwork", "@version": 1, "in_dim": int(d.dim_out) + nfp + nap,
                      "out_dim": 1, "neuron": fneuron, "activation_function": act_f,
                      "resnet_dt": bool(f.resnet_dt), "precision": PRECISION, "bias_out": True,
                      "layers": [_layer(lay) for lay in net.layers]}
                     for net in f.nets],
    }
    fitting = {
        "@class": "Fitting", "@version": 4, "var_name": "energy", "ntypes": nt,
        "dim_descrpt": int(d.dim_out), "neuron": fneuron, "resnet_dt": bool(f.resnet_dt),
        "numb_fparam": nfp, "numb_aparam": nap, "dim_case_embd": 0,
        "default_fparam": None if f.default_fparam is None else [float(v) for v in f.default_fparam],
        "rcond": None, "activation_function": act_f, "precision": PRECISION,
        "mixed_types": False, "exclude_types": [int(t) for t in p.atom_exclude_types], "nets": nets,
        "@variables": {"bias_atom_e": _f64(f.bias_atom_e).reshape(nt, 1), "case_embd": None,
                       "fparam_avg": None if nfp == 0 else _f64(f.fparam_avg),
                       "fparam_inv_std": None if nfp == 0 else _f64(f.fparam_inv_std),
                       "aparam_avg": None if nap == 0 else _f64(f.aparam_avg),
                       "aparam_inv_std": None if nap == 0 else _f64(f.aparam_inv_std)},
        "type_map": type_map, "tot_ener_zero": False, "trainable": [True] * (len(fneuron) + 1),
        "layer_name": None, "use_aparam_as_mask": False, "spin": None, "type": "ener",
        "dim_out": 1, "atom_ener": None,
    }
    model = {
        "type_map": type_map, "atom_exclude_types": [int(t) for t in p.atom_exclude_types],
        "pair_exclude_types": [[int(ti), int(tj)] for ti, tj in p.pair_exclude_types], "rcond": None,
        "preset_out_bias": None,
        "@variables": {"out_bias": _f64(p.out_bias).reshape(1, nt, 1),
                       "out_std": _f64(p.out_std).reshape(1, nt, 1)},
        "@class": "Model", "type": "standard", "@version": 2,
        "descriptor": descriptor, "fitting": fitting,
    }
    info = p.info or {}
    script = info.get("model_def_script")
    version = info.get("version") if info.get("software") == "deepmd-kit" else None
    mnd = DEFAULT_MIN_NBOR_DIST if p.min_nbor_dist is None else float(p.min_nbor_dist)
    return {
        "software": "deepmd-kit",
        "version": str(version) if version else DP_FORMAT_VERSION,
        "time": str(datetime.datetime.now(tz=datetime.timezone.utc)),
        "backend": "DPModel",
        "model": model,
        "model_def_script": script if isinstance(script, dict) else model_def_script(p),
        "@variables": {"min_nbor_dist": np.float64(mnd)},
    }


def _store_arrays(node, store, under_variables: bool = False):
    """Depth-first (in key order): replace each array under `@variables` by store(array)."""
    if isinstance(node, dict):
        return {k: _store_arrays(v, store, under_variables or k == "@variables")
                for k, v in node.items()}
    if isinstance(node, list):
        return [_store_arrays(v, store, under_variables) for v in node]
    if under_variables and node is not None:
        return store(np.asarray(node, dtype=np.float64))
    return node


def write_dp(params: ModelParams, path) -> None:
    """Write `params` as a DeePMD-kit `.dp` file, atomically (temporary name, then rename)."""
    path = Path(path)
    params.validate(f"model to be written to {path}")
    tree = dp_tree(params)
    with atomic_h5_file(path) as h5:
        counter = iter(range(10 ** 9))

        def store(arr):
            return h5.create_dataset(f"variable_{next(counter):04d}", data=arr).name

        tree = _store_arrays(tree, store)
        try:
            h5.attrs["json"] = json.dumps(tree, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise InputError(f"{path}: model_def_script cannot be stored as JSON ({exc})") from None
