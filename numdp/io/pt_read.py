"""Read DeePMD-kit 3.x PyTorch-backend models (se_e2_a + energy fitting) without torch.

Two files, both PyTorch zip archives (numdp.io.torch_archive):

- the training checkpoint `model.ckpt*.pt` (`torch.save` of {"model": state dict, "optimizer": ...}):
  the state dict maps "model.<branch>.<module path>" to tensors and holds, under `_extra_state`,
  {"model_params": the normalised model section of input.json, "train_infos": ...};
- the frozen model `frozen_model.pth` (`dp --pt freeze`, a TorchScript archive): the module tree
  of DeePMD-kit's EnergyModel, whose attribute `model_def_script` is the same normalised model
  section as a JSON string and whose tensors are module attributes at the same module paths.

Both give (model section, {module path: array}); `params_from_torch` maps them onto the tree a
`.dp` file holds (the `model.serialize()` layout DeePMD-kit's `dp convert-backend` writes) and
builds ModelParams through the `.dp` reader, so the two formats share every check.

Module paths read (relative to the model, A = "atomic_model."):
  A+"descriptor.sea.mean" / ".stddev"                     -> davg / dstd, (ntypes, nnei, 4)
  A+"descriptor.sea.filter_layers.networks.{k}.layers.{l}.{matrix,bias,idt}"
                                                          -> embedding net k (ntypes nets when
                                                             type_one_side, else ntypes**2), layer l
  A+"descriptor.sea.compress_data.{k}"                    -> must be empty (compressed: refused)
  A+"fitting_net.bias_atom_e"                             -> bias_atom_e, (ntypes, 1)
  A+"fitting_net.{fparam,aparam}_{avg,inv_std}"           -> (numb_fparam,) / (numb_aparam,), when
                                                             the fitting takes frame / atomic parameters
  A+"fitting_net.default_fparam_tensor"                   -> default_fparam, (numb_fparam,), when given
  A+"fitting_net.filter_layers.networks.{t}.layers.{l}.{matrix,bias,idt}" -> fitting net t
  A+"out_bias" / A+"out_std"                              -> (1, ntypes, 1)
  "min_nbor_dist"                                         -> scalar, when recorded
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..model.params import ModelParams
from .dp_read import params_from_dp_tree
from .torch_archive import ScriptObject, read_torch_archive

WHAT = "not a DeePMD-kit se_e2_a energy model"
ATOMIC = "atomic_model."
SEA = ATOMIC + "descriptor.sea."
FIT = ATOMIC + "fitting_net."


def refuse(path: Path, holds: str) -> InputError:
    """The one-line error for a model file of a kind numdp does not run (`holds`: what it is)."""
    return InputError(f"{path}: {WHAT}: it holds {holds}")


def _flatten(obj, prefix: str, out: dict) -> None:
    """Collect the arrays of a TorchScript module tree as {dotted attribute path: array}."""
    if isinstance(obj, ScriptObject):
        obj = obj.state
    if isinstance(obj, np.ndarray):
        out[prefix[:-1]] = obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(key, str) and isinstance(value, (ScriptObject, dict, np.ndarray)):
                _flatten(value, f"{prefix}{key}.", out)


def _from_checkpoint(root, path: Path) -> tuple[dict, dict]:
    """(model section, tensors) of a training checkpoint."""
    if not isinstance(root, dict):
        raise InputError(f"{path}: {WHAT}: a PyTorch file holding a {type(root).__name__}, not a checkpoint dict")
    state = root.get("model", root)
    extra = state.get("_extra_state") if isinstance(state, dict) else None
    if not isinstance(extra, dict) or not isinstance(extra.get("model_params"), dict):
        raise InputError(f"{path}: {WHAT}: a PyTorch file without DeePMD-kit's model._extra_state.model_params "
                         f"(not a DeePMD-kit training checkpoint)")
    model = extra["model_params"]
    if "model_dict" in model:
        raise refuse(path, f"a multi-task model (branches {', '.join(map(str, model['model_dict']))}); "
                            f"freeze one branch with `dp --pt freeze --head BRANCH`")
    branches = sorted({k.split(".")[1] for k in state if isinstance(k, str) and k.startswith("model.")
                       and k.count(".") >= 2})
    if len(branches) != 1:
        raise refuse(path, f"{len(branches)} model branches ({', '.join(branches)})")
    head = f"model.{branches[0]}."
    tensors = {k[len(head):]: v for k, v in state.items()
               if isinstance(k, str) and k.startswith(head) and isinstance(v, np.ndarray)}
    return model, tensors


def _from_frozen(root, path: Path) -> tuple[dict, dict]:
    """(model section, tensors) of a TorchScript frozen model."""
    if not isinstance(root, ScriptObject) or not isinstance(root.state, dict):
        raise InputError(f"{path}: {WHAT}: a TorchScript archive without a module")
    script = root.state.get("model_def_script")
    if not isinstance(script, str):
        raise refuse(path, f"a TorchScript module {root.class_name} without DeePMD-kit's model_def_script")
    try:
        model = json.loads(script)
    except ValueError:
        raise InputError(f"{path}: {WHAT}: its model_def_script is not valid JSON") from None
    if not isinstance(model, dict):
        raise InputError(f"{path}: {WHAT}: its model_def_script is not a JSON object")
    if root.class_name != "EnergyModel":
        kind = model.get("fitting_net", {}).get("type") if isinstance(model.get("fitting_net"), dict) else None
        raise refuse(path, f"a {root.class_name}" + (f" ({kind} fitting)" if kind else ""))
    tensors: dict = {}
    _flatten(root, "", tensors)
    return model, tensors


def _array(tensors: dict, key: str, path: Path, shape=None, kind: str = "PyTorch") -> np.ndarray:
    if key not in tensors:
        raise InputError(f"{path}: malformed DeePMD-kit {kind} model: tensor {key} is missing")
    arr = tensors[key]
    if shape is not None and arr.shape != tuple(shape):
        raise InputError(f"{path}: malformed DeePMD-kit {kind} model: tensor {key} has shape {arr.shape}, "
                         f"expected {tuple(shape)}")
    return arr


def _net(tensors: dict, base: str, n_layers: int, activation: str, final_linear: bool, path: Path,
         kind: str = "PyTorch") -> dict:
    """One net in the `.dp` tree layout: layers of {activation_function, resnet, @variables}."""
    layers = []
    for l in range(n_layers):
        key = f"{base}.layers.{l}."
        last = final_linear and l == n_layers - 1
        layers.append({
            "activation_function": "none" if last else activation,
            "resnet": not last,
            "@variables": {"w": _array(tensors, key + "matrix", path, kind=kind),
                           "b": _array(tensors, key + "bias", path, kind=kind),
                           "idt": tensors.get(key + "idt")},
        })
    extra = f"{base}.layers.{n_layers}.matrix"
    if extra in tensors:
        raise InputError(f"{path}: malformed DeePMD-kit {kind} model: {base} has more than {n_layers} layers")
    return {"layers": layers}


def check_model_section(model: dict, path: Path) -> tuple[dict, dict]:
    """(descriptor, fitting_net) of DeePMD-kit's model section, when it is an se_e2_a energy model
    numdp runs; else InputError naming what it holds (numdp.io.pb_read checks a graph's with it)."""
    # the dispatch of DeePMD-kit's get_model: a "spin" section, a "use_srtab" table (DP + ZBL) or
    # an active "bridging_method" (a linear_ener composition) make other models than EnergyModel
    if "spin" in model:
        raise refuse(path, "a spin model")
    mtype = model.get("type", "standard")
    if mtype != "standard":
        raise refuse(path, f"a '{mtype}' model")
    if "use_srtab" in model:
        raise refuse(path, "a DP + ZBL model (use_srtab)")
    if str(model.get("bridging_method", "none")).lower() not in ("none", ""):
        raise refuse(path, f"a model bridged to an inner potential (bridging_method "
                            f"'{model['bridging_method']}')")
    desc, fit = model.get("descriptor"), model.get("fitting_net")
    if not isinstance(desc, dict) or not isinstance(fit, dict):
        raise InputError(f"{path}: {WHAT}: its model section has no descriptor/fitting_net")
    dtype = desc.get("type")
    if dtype not in ("se_e2_a", "se_a"):
        raise refuse(path, f"a '{dtype}' descriptor")
    ftype = fit.get("type", "ener")
    if ftype != "ener":
        raise refuse(path, f"a '{ftype}' fitting")
    if int(fit.get("dim_case_embd", 0) or 0):
        raise refuse(path, "a fitting net with case embedding (dim_case_embd)")
    return desc, fit


def _input_stats(tensors: dict, fit: dict, path: Path, kind: str) -> dict:
    """The fitting's statistics of its frame and atomic parameters: {fparam_avg, fparam_inv_std}
    (numb_fparam,) when it takes frame parameters, {aparam_avg, aparam_inv_std} (numb_aparam,)
    when it takes atomic ones (DeePMD-kit's buffers of the same names; none read for atomic
    parameters used as a mask, which the `.dp` reader refuses)."""
    out = {}
    for what in ("fparam", "aparam"):
        n = int(fit.get(f"numb_{what}", 0) or 0)
        if n and not (what == "aparam" and fit.get("use_aparam_as_mask")):
            for stat in ("avg", "inv_std"):
                out[f"{what}_{stat}"] = _array(tensors, f"{FIT}{what}_{stat}", path, (n,), kind)
    return out


def params_from_torch(model: dict, tensors: dict, path: Path, source: str, kind: str = "PyTorch",
                      names: dict | None = None) -> ModelParams:
    """ModelParams from DeePMD-kit's normalised model section and the model's tensors under the
    module paths of the PyTorch backend (numdp.io.pb_read maps a TensorFlow graph's onto them);
    `kind` names the backend in the messages; names: id(tensor) -> where it is stored, for
    messages (default "tensor <module path>")."""
    if names is None:
        names = {id(v): f"tensor {k}" for k, v in tensors.items()}
    desc, fit = check_model_section(model, path)
    if any(np.size(v) for k, v in tensors.items() if k.startswith(SEA + "compress_data.")):
        raise refuse(path, "a compressed model (dp --pt compress); give numdp the uncompressed model "
                            "and compress it with numdp compress")
    try:
        type_map = [str(t) for t in model["type_map"]]
        nt = len(type_map)
        type_one_side = bool(desc.get("type_one_side", False))
        neuron = [int(n) for n in desc["neuron"]]
        fneuron = [int(n) for n in fit["neuron"]]
        act, fact = desc.get("activation_function", "tanh"), fit.get("activation_function", "tanh")
        n_embed = nt if type_one_side else nt * nt
        embeddings = [_net(tensors, f"{SEA}filter_layers.networks.{k}", len(neuron), act, False, path, kind)
                      for k in range(n_embed)]
        fnets = [_net(tensors, f"{FIT}filter_layers.networks.{t}", len(fneuron) + 1, fact, True, path, kind)
                 for t in range(nt)]
        nnei = sum(int(s) for s in desc["sel"])
        tree = {
            "model": {
                "type": "standard", "type_map": type_map,
                "atom_exclude_types": model.get("atom_exclude_types", []),
                "pair_exclude_types": model.get("pair_exclude_types", []),
                "@variables": {"out_bias": _array(tensors, ATOMIC + "out_bias", path, (1, nt, 1), kind),
                               "out_std": _array(tensors, ATOMIC + "out_std", path, (1, nt, 1), kind)},
                "descriptor": {
                    **{k: desc[k] for k in ("rcut", "rcut_smth", "sel", "axis_neuron")},
                    "type": "se_e2_a", "neuron": neuron, "type_one_side": type_one_side,
                    "resnet_dt": bool(desc.get("resnet_dt", False)),
                    "exclude_types": desc.get("exclude_types", []),
                    "env_protection": desc.get("env_protection", 0.0),
                    "@variables": {"davg": _array(tensors, SEA + "mean", path, (nt, nnei, 4), kind),
                                   "dstd": _array(tensors, SEA + "stddev", path, (nt, nnei, 4), kind)},
                    "embeddings": {"networks": embeddings},
                },
                "fitting": {
                    "type": "ener", "neuron": fneuron, "resnet_dt": bool(fit.get("resnet_dt", True)),
                    "numb_fparam": fit.get("numb_fparam", 0), "numb_aparam": fit.get("numb_aparam", 0),
                    "use_aparam_as_mask": bool(fit.get("use_aparam_as_mask", False)),
                    "atom_ener": fit.get("atom_ener"),
                    "default_fparam": tensors.get(FIT + "default_fparam_tensor", fit.get("default_fparam")),
                    "mixed_types": False,
                    "@variables": {"bias_atom_e": _array(tensors, FIT + "bias_atom_e", path, (nt, 1), kind),
                                   **_input_stats(tensors, fit, path, kind)},
                    "nets": {"networks": fnets},
                },
            },
            "@variables": {"min_nbor_dist": tensors.get("min_nbor_dist")},
            "software": "deepmd-kit", "version": None, "model_def_script": model,
        }
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise InputError(f"{path}: malformed DeePMD-kit {kind} model ({type(exc).__name__}: {exc})") from None
    try:
        params = params_from_dp_tree(tree, path, names)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise InputError(f"{path}: malformed DeePMD-kit {kind} model ({type(exc).__name__}: {exc})") from None
    params.info["source"] = source
    return params


def read_pt(path) -> ModelParams:
    """Load a DeePMD-kit PyTorch checkpoint (.pt) or frozen model (.pth), whatever its name."""
    path = Path(path)
    archive = read_torch_archive(path)
    if archive.scripted:
        model, tensors = _from_frozen(archive.root, path)
        source = "deepmd-kit pytorch frozen model"
    else:
        model, tensors = _from_checkpoint(archive.root, path)
        source = "deepmd-kit pytorch checkpoint"
    return params_from_torch(model, tensors, path, source)
