"""DeePMD-kit's own training input (`input.json`, the v2/v3 layout) read as numdp's train input.

`to_train_tables(data, file)` rearranges the parsed JSON tree into the tables of the TOML input
(numdp.train.config), which then validates it: there is one validator, and every key keeps the
name and the checks it has in TOML.  The rearrangement:

- ``training.training_data`` {systems, batch_size, auto_prob, sys_probs, rglob_patterns,
  min_pair_dist} → ``[training]``
  (DeePMD-kit's aliases auto_prob_style, sys_weights under their main names)
- ``training.validation_data`` {systems, batch_size, numb_btch, auto_prob, sys_probs} →
  ``[validation]``
- ``model.data_stat_nbatch`` → ``[training] data_stat_nbatch``
- the other ``training`` keys → ``[training]`` as they are, DeePMD-kit's aliases included
  (numb_steps's num_steps, numb_step, num_step and v1's stop_batch; numb_epoch's num_epochs,
  num_epoch, numb_epochs: the validator reads them, `STEPS_NAMES`, `EPOCH_NAMES`)
- a JSON ``null`` is an absent key (DeePMD-kit's default applies, as in DeePMD-kit)
- every key that starts with ``_`` (``_comment``, ``_comment7``, ``_note``, ...) is dropped at
  every level, and so is ``$schema``: DeePMD-kit trims the keys matching ``_*`` before its strict
  check (dargs' ``trim_pattern``), and dargs lets ``$schema`` (a JSON-schema editor's key) pass
- the conversions `dp train` 3.2 makes before its checks (``deepmd.utils.compat.update_deepmd_input``),
  `_compat`: the v1 layout (``training.systems``, ``set_prefix``, ``batch_size``, ``auto_prob``,
  ``sys_probs`` ... → ``training.training_data``; v1's ``learning_rate.decay_rate`` → ``stop_lr``
  over the run's steps), ``training.numb_test`` dropped, the warmup keys of ``training`` moved to
  ``learning_rate``, the optimizer keys of ``training`` (3.1's ``opt_type``, ``weight_decay``,
  ``adam_beta1``, ...) moved to ``optimizer`` (over its own keys), and an Adam / AdamW ``optimizer``
  completed with 3.2's defaults (betas 0.9, 0.999, ``weight_decay`` 0: also for AdamW, whose
  argcheck default, 0.001, `dp train` therefore never applies)
- DeePMD-kit's other names of keys (`KEY_ALIASES`: ``n_axis_neuron``, ``n_neuron``, and
  ``numb_batch`` of ``validation_data``) under their main names

Keys that only concern DeePMD-kit's bookkeeping are dropped, each listed in `IGNORED` with the
values for which dropping it leaves the result unchanged (any value, or only the values that
equal what numdp does); any other value, and any key numdp does not implement, is a one-line
InputError naming the key (by the validator, or here for the `*_data` tables).

Paths (systems and outputs) are resolved against the working directory, as DeePMD-kit does.
"""
from __future__ import annotations

import math
from typing import Any

from ..errors import InputError
from ..validate import TRAIN_WORDING, Table, read_input_text, show_value

ANY: Any = object()
"""Marks an ignored key whose every value is harmless."""

IGNORED: dict[str, dict[str, Any]] = {
    "": {"validating": ({},)},
    "model": {"type": ("standard",),
              # the TensorFlow backend's frames for a change of the bias; DeePMD-kit's PyTorch
              # backend, which numdp follows, does not read it
              "data_bias_nsample": ANY,
              "srtab_add_bias": (True,),
              "model_branch_alias": ([],), "info": ANY,
              # short-range bridging (ZBL) off, as dp train 3.2 writes it to out.json; its radii
              # are unused then
              "bridging_method": ("None", "none"), "bridging_r_inner": ANY, "bridging_r_outer": ANY,
              "enable_tf32": ANY},
    "model.descriptor": {"precision": ("float64", "default"), "env_protection": (0.0,)},
    "model.fitting_net": {"precision": ("float64", "default"), "atom_ener": ([],), "dim_case_embd": (0,),
                          # the bias fit's least squares without a cutoff, as numdp's (numdp.model.bias)
                          "rcond": (None,)},
    "learning_rate": {"scale_by_worker": ANY},
    "training": {"numb_test": ANY,   # dropped by dp train since v2.0 (deprecate_numb_test)
                 "stat_file": ANY, "max_ckpt_keep": ANY, "time_training": ANY, "profiling": ANY,
                 "profiling_file": ANY, "enable_profiler": ANY, "tensorboard": ANY,
                 "tensorboard_log_dir": ANY, "tensorboard_freq": ANY, "save_ckpt_keep": ANY,
                 "stat_file_mode": ANY,
                 # where DeePMD-kit writes its numbered checkpoints; numdp keeps one, save_ckpt,
                 # where DeePMD-kit leaves its link to the latest (the working directory)
                 "save_dir": ANY,
                 "ckpt_keep_ratio": ANY, "ema_ckpt_keep": ANY,
                 "acc_freq": (1,), "zero_stage": (0,), "neighbor_graph_method": ANY,
                 "enable_compile": ANY,
                 # TF32 products on CUDA: numdp trains in float64 on the CPU
                 "enable_tf32": ANY,
                 # TensorFlow-only mixed-precision training: DeePMD-kit's PyTorch backend, which
                 # numdp follows, ignores it too (both train in the model's precision)
                 "mixed_precision": ANY},
}
"""Per JSON table: keys dropped, with their accepted values (`ANY`, or a tuple)."""

DATA_KEYS = ("systems", "batch_size", "numb_btch", "numb_batch", "set_prefix", "auto_prob", "auto_prob_style",
             "sys_probs", "sys_weights", "rglob_patterns", "min_pair_dist")
"""Keys of ``training_data`` / ``validation_data`` (numb_btch and its alias numb_batch only in
validation_data, min_pair_dist only in training_data)."""

DATA_ALIASES = {"auto_prob_style": "auto_prob", "sys_weights": "sys_probs", "numb_batch": "numb_btch"}
"""DeePMD-kit's other names of ``*_data`` keys: alias → main name (numb_batch only in
validation_data)."""

KEY_ALIASES: dict[str, dict[str, str]] = {
    "model.descriptor": {"n_axis_neuron": "axis_neuron"},
    "model.fitting_net": {"n_neuron": "neuron"},
}
"""Per JSON table: DeePMD-kit's other names of keys (its argcheck's aliases), alias → main name."""

V1_DATA_KEYS = ("systems", "set_prefix", "batch_size", "sys_prob", "sys_probs", "auto_prob", "sys_weights",
                "auto_prob_style")
"""The v1 ``training`` keys that `dp train` moves into ``training.training_data``
(convert_input_v1_v2; sys_probs, a v1 name too, with them)."""

WARMUP_KEYS = ("warmup_steps", "warmup_ratio", "warmup_start_factor")
"""``training`` keys that `dp train` 3.2 moves to ``learning_rate`` (migrate_training_warmup)."""

V31_OPTIMIZER_KEYS = ("opt_type", "kf_blocksize", "kf_start_pref_e", "kf_limit_pref_e", "kf_start_pref_f",
                      "kf_limit_pref_f", "weight_decay", "momentum", "muon_momentum", "adam_beta1",
                      "adam_beta2", "lr_adjust", "lr_adjust_coeff", "muon_2d_only", "min_2d_dim")
"""``training`` keys of DeePMD-kit 3.1 that `dp train` 3.2 moves to ``optimizer``
(convert_optimizer_v31_to_v32; opt_type as type)."""

ADAM_DEFAULTS = {"adam_beta1": 0.9, "adam_beta2": 0.999, "weight_decay": 0.0}
"""What `dp train` 3.2 fills into an Adam or AdamW ``optimizer`` without them (before its
argcheck, whose AdamW weight_decay default of 0.001 it thus never reaches)."""


def _trimmed(v):
    """`v` without JSON nulls (absent keys) and without the keys DeePMD-kit trims or lets pass
    unchecked (``_*`` and ``$schema``), at every level."""
    if isinstance(v, dict):
        return {k: _trimmed(x) for k, x in v.items()
                if x is not None and not (isinstance(k, str) and (k.startswith("_") or k == "$schema"))}
    if isinstance(v, list):
        return [_trimmed(x) for x in v]
    return v


def _same(value, accepted) -> bool:
    if isinstance(value, bool) or isinstance(accepted, bool):
        return value is accepted
    return value == accepted


def _rename_aliases(table: dict, name: str, file: str, aliases: dict[str, str]) -> None:
    """Put the keys of `table` (JSON table `name`) given under an alias under their main names;
    InputError when both are given."""
    for alias, main in aliases.items():
        if alias in table:
            if main in table:
                raise InputError(f"{file}: [{name}] {alias}: give {main} or its alias {alias}, not both")
            table[main] = table.pop(alias)


def _compat(data: dict, file: str) -> None:
    """The conversions `dp train` 3.2 makes before its checks (update_deepmd_input; module
    docstring), in place on the trimmed tree `data`."""
    training, lr = data.get("training"), data.get("learning_rate")
    if not isinstance(training, dict):
        return
    if "systems" in training:   # the v1 layout (convert_input_v1_v2)
        if "training_data" in training:
            raise InputError(f"{file}: [training] systems: v1's training.systems and v2's training.training_data "
                             f"are both given: give the systems in training.training_data")
        training["training_data"] = {k: training.pop(k) for k in V1_DATA_KEYS if k in training}
        steps = [training[k] for k in ("stop_batch", "numb_steps", "num_steps", "numb_step", "num_step")
                 if k in training]
        if isinstance(lr, dict) and "decay_rate" in lr and len(steps) == 1:
            # remove_decay_rate: the rate's stop_lr over the run's steps (then derived again)
            rate, start = lr.pop("decay_rate"), lr.get("start_lr", 1e-3)
            try:
                lr["stop_lr"] = math.exp(math.log(rate) * steps[0] / lr.get("decay_steps", 5000)) * start
            except (TypeError, ValueError, ZeroDivisionError):
                raise InputError(f"{file}: [learning_rate] decay_rate: expected a number > 0 with numbers "
                                 f"start_lr, decay_steps and training.stop_batch, got {show_value(rate)}") from None
    moved = [k for k in WARMUP_KEYS if k in training]   # migrate_training_warmup
    if moved:
        if lr is None:
            lr = data["learning_rate"] = {}
        if not isinstance(lr, dict):   # (the validator names the table's mistake)
            return
        for k in moved:
            if k in lr:
                raise InputError(f"{file}: [training] {k}: also given in learning_rate: give it in "
                                 f"learning_rate only")
            lr[k] = training.pop(k)
    opt = data.get("optimizer", {})   # convert_optimizer_v31_to_v32
    if not isinstance(opt, dict):
        return
    legacy = {k: training.pop(k) for k in V31_OPTIMIZER_KEYS if k in training}
    if "opt_type" in legacy:
        legacy["type"] = legacy.pop("opt_type")
    opt = {**opt, **legacy}
    opt.setdefault("type", "Adam")
    if opt["type"] in ("Adam", "AdamW"):
        for k, v in ADAM_DEFAULTS.items():
            opt.setdefault(k, v)
    data["optimizer"] = opt


def _drop_ignored(table: dict, name: str, file: str) -> None:
    for key, accepted in IGNORED.get(name, {}).items():
        if key not in table:
            continue
        value = table.pop(key)
        if accepted is not ANY and not any(_same(value, a) for a in accepted):
            where = f"[{name}] " if name else "[root] "
            ok = " or ".join(repr(a) for a in accepted)
            raise InputError(f"{file}: {where}{key}: numdp supports only {ok} (what numdp does), "
                             f"got {show_value(value)}")


def _data_table(training: dict, key: str, file: str, validation: bool) -> dict:
    """The ``training_data`` / ``validation_data`` table as numdp's keys (systems, batch_size,
    numb_btch, auto_prob, sys_probs, rglob_patterns, min_pair_dist)."""
    t = Table(file, f"training.{key}", training.pop(key), TRAIN_WORDING)
    allowed = tuple(k for k in DATA_KEYS if k not in (("min_pair_dist",) if validation else ("numb_btch", "numb_batch")))
    t.check_keys(allowed)
    prefix = t.string("set_prefix", "set")
    if prefix != "set":
        raise t.error("set_prefix", f'numdp reads only set.* folders (set_prefix "set"), got {prefix!r}')
    out = {k: t.data[k] for k in ("systems", "batch_size", "numb_btch", "auto_prob", "sys_probs", "rglob_patterns",
                                  "min_pair_dist") if k in t.data}
    for alias, name in DATA_ALIASES.items():
        if t.has(alias):
            if name in out:
                raise t.error(alias, f"give {name} or its alias {alias}, not both")
            out[name] = t.data[alias]
    if "systems" not in out:
        raise t.error("systems", TRAIN_WORDING.required)
    return out


def _preset_by_element(value, type_map, file: str) -> dict:
    """DeePMD-kit's preset_out_bias {"energy": [b_0 or null, ...]} (one entry per type; a number
    or a one-number list) as numdp's {element: b}."""
    where = f"{file}: [model] preset_out_bias"
    if not isinstance(value, dict) or set(value) != {"energy"}:
        raise InputError(f"{where}: expected {{\"energy\": [one bias or null per type]}} (an energy model's), "
                         f"got {show_value(value)}")
    biases = value["energy"]
    if not isinstance(type_map, list) or not isinstance(biases, list) or len(biases) != len(type_map):
        raise InputError(f"{where}: energy needs one entry per type of type_map {type_map}, got {show_value(biases)}")
    out = {}
    for name, b in zip(type_map, biases):
        if isinstance(b, list) and len(b) == 1:
            b = b[0]
        if b is None:
            continue
        if isinstance(b, bool) or not isinstance(b, (int, float)):
            raise InputError(f"{where}: energy: {name}: expected a number or null, got {show_value(b)}")
        out[name] = float(b)
    return out


def to_train_tables(data, file: str) -> dict:
    """The JSON tree `data` of DeePMD-kit input `file` as the tables of numdp's TOML input."""
    if not isinstance(data, dict):
        raise InputError(f"{file}: expected a JSON object at the top level")
    data = _trimmed(data)
    if isinstance(data.get("model"), dict) and "model_dict" in data["model"]:
        raise InputError(f"{file}: [model] model_dict: a multi-task input (model_dict, training.data_dict); "
                         f"numdp trains one model: give its model and training_data")
    _compat(data, file)
    _drop_ignored(data, "", file)
    model = data.get("model")
    if isinstance(model, dict):
        _drop_ignored(model, "model", file)
        fitting = model.get("fitting_net")
        if isinstance(fitting, dict) and isinstance(fitting.get("atom_ener"), list) \
                and all(x is None for x in fitting["atom_ener"]):
            fitting["atom_ener"] = []   # no type's vacuum energy given: DeePMD-kit's default, []
        if "preset_out_bias" in model:
            model["preset_out_bias"] = _preset_by_element(model["preset_out_bias"], model.get("type_map"), file)
            if not model["preset_out_bias"]:
                del model["preset_out_bias"]
        for sub in ("descriptor", "fitting_net"):
            if isinstance(model.get(sub), dict):
                _rename_aliases(model[sub], f"model.{sub}", file, KEY_ALIASES[f"model.{sub}"])
                _drop_ignored(model[sub], f"model.{sub}", file)
    for name in ("learning_rate", "loss", "optimizer"):
        if isinstance(data.get(name), dict):
            _drop_ignored(data[name], name, file)
    training = data.get("training")
    if isinstance(training, dict):
        _drop_ignored(training, "training", file)
        if isinstance(model, dict) and "data_stat_nbatch" in model:
            training["data_stat_nbatch"] = model.pop("data_stat_nbatch")
        if "training_data" not in training:
            raise InputError(f"{file}: [training] training_data: required key is missing")
        if isinstance(training["training_data"], dict):
            _drop_ignored(training["training_data"], "training.training_data", file)
        training.update(_data_table(training, "training_data", file, validation=False))
        if "validation_data" in training:
            data["validation"] = _data_table(training, "validation_data", file, validation=True)
    return data


def load_json(path) -> tuple[str, Any]:
    """(text, parsed tree) of the JSON file `path`; InputError if missing, unreadable or invalid."""
    text = read_input_text(path)
    return text, parse_json_text(text, path.name)


def load_yaml(path) -> tuple[str, Any]:
    """(text, parsed tree) of DeePMD-kit's input `path` written in YAML (``.yaml`` / ``.yml``,
    which `dp train` reads as its JSON); the text is the tree as JSON, what a checkpoint keeps
    and `numdp freeze` reads back.  InputError if missing, unreadable, invalid, or PyYAML is not
    installed."""
    import json

    text = read_input_text(path)
    try:
        import yaml
    except ImportError:
        raise InputError(f"{path.name}: a YAML input needs PyYAML (pip install 'numdp[yaml]'), or give it as "
                         f"input.json") from None
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{path.name}: not valid YAML ({' '.join(str(exc).split())})") from None
    try:
        return json.dumps(tree, indent=2), tree
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path.name}: not an input DeePMD-kit reads ({exc})") from None


def parse_json_text(text: str, name: str) -> Any:
    """The parsed tree of JSON `text`; InputError naming `name` if invalid."""
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{name}: not valid JSON ({exc})") from None
