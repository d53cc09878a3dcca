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

Keys that only concern DeePMD-kit's bookkeeping are dropped, each listed in `IGNORED` with the
values for which dropping it leaves the result unchanged (any value, or only the values that
equal what numdp does); any other value, and any key numdp does not implement, is a one-line
InputError naming the key (by the validator, or here for the `*_data` tables).

Paths (systems and outputs) are resolved against the working directory, as DeePMD-kit does.
"""
from __future__ import annotations

from typing import Any

from ..errors import InputError
from ..validate import TRAIN_WORDING, Table, read_input_text, show_value

ANY: Any = object()
"""Marks an ignored key whose every value is harmless."""

IGNORED: dict[str, dict[str, Any]] = {
    "": {"validating": ({},)},
    "model": {"type": ("standard",), "data_bias_nsample": (10,),
              "srtab_add_bias": (True,),
              "model_branch_alias": ([],), "info": ANY,
              # short-range bridging (ZBL) off, as dp train 3.2 writes it to out.json; its radii
              # are unused then
              "bridging_method": ("None", "none"), "bridging_r_inner": ANY, "bridging_r_outer": ANY,
              "enable_tf32": ANY},
    "model.descriptor": {"precision": ("float64", "default"), "env_protection": (0.0,)},
    "model.fitting_net": {"precision": ("float64", "default"), "atom_ener": ([],), "dim_case_embd": (0,)},
    "learning_rate": {"scale_by_worker": ANY},
    "training": {"stat_file": ANY, "max_ckpt_keep": ANY, "time_training": ANY, "profiling": ANY,
                 "profiling_file": ANY, "enable_profiler": ANY, "tensorboard": ANY,
                 "tensorboard_log_dir": ANY, "tensorboard_freq": ANY, "save_ckpt_keep": ANY,
                 "opt_type": ("Adam",), "warmup_steps": (0,), "stat_file_mode": ANY,
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

DATA_KEYS = ("systems", "batch_size", "numb_btch", "set_prefix", "auto_prob", "auto_prob_style",
             "sys_probs", "sys_weights", "rglob_patterns", "min_pair_dist")
"""Keys of ``training_data`` / ``validation_data`` (numb_btch only in validation_data,
min_pair_dist only in training_data)."""

DATA_ALIASES = {"auto_prob_style": "auto_prob", "sys_weights": "sys_probs"}
"""DeePMD-kit's other names of ``*_data`` keys: alias → main name."""


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
    allowed = tuple(k for k in DATA_KEYS if k != ("min_pair_dist" if validation else "numb_btch"))
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
    _drop_ignored(data, "", file)
    model = data.get("model")
    if isinstance(model, dict):
        _drop_ignored(model, "model", file)
        if "preset_out_bias" in model:
            model["preset_out_bias"] = _preset_by_element(model["preset_out_bias"], model.get("type_map"), file)
            if not model["preset_out_bias"]:
                del model["preset_out_bias"]
        for sub in ("descriptor", "fitting_net"):
            if isinstance(model.get(sub), dict):
                _drop_ignored(model[sub], f"model.{sub}", file)
    for name in ("learning_rate", "loss", "optimizer"):
        if isinstance(data.get(name), dict):
            _drop_ignored(data[name], name, file)
    training = data.get("training")
    if isinstance(training, dict):
        _drop_ignored(training, "training", file)
        if isinstance(model, dict) and "data_stat_nbatch" in model:
            training["data_stat_nbatch"] = model.pop("data_stat_nbatch")
        if "systems" in training:
            raise InputError(f"{file}: [training] systems: give the systems in training.training_data")
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


def parse_json_text(text: str, name: str) -> Any:
    """The parsed tree of JSON `text`; InputError naming `name` if invalid."""
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{name}: not valid JSON ({exc})") from None
