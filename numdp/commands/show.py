"""`numdp show MODEL [type-map] [descriptor] [fitting-net] [size] [observed-type] [info]`: what a
model file holds, like DeePMD-kit's `dp show` (all attributes when none is named).  The
descriptor and fitting-net parameters of a DeePMD-kit file are those it records, printed as dp
show prints them; numdp's own files' are rebuilt from the arrays.

observed-type, as dp show 3.2 finds them: the elements DeePMD-kit recorded in the model's
definition (`info.observed_type`, written by its training), else those whose output bias is
nonzero (|out_bias| > 1e-6; for a model that keeps its whole bias in the fitting's bias_atom_e,
as TensorFlow graphs do, that one), ordered by atomic number."""
from __future__ import annotations

import math

import numpy as np

from ..io.model_file import MODEL_HELP

ATTRIBUTES = ("type-map", "descriptor", "fitting-net", "size", "observed-type", "info")
DP_ONLY_ATTRIBUTES = {
    "model-branch": "the branches of a multi-task model, and numdp reads single-task models only",
    "serialization-tree": "DeePMD-kit's tree of its serialized model classes, which numdp does not build",
}
"""dp show 3.2's attributes that numdp show refuses, and why."""


def configure(parser):
    parser.add_argument("model", help=MODEL_HELP)
    parser.add_argument("attributes", nargs="*", metavar="ATTRIBUTE",
                        help=f"any of {', '.join(ATTRIBUTES)} (default: all)")


def _net_size(nets) -> int:
    """Weights, biases and idt of `nets` (numdp.model.params.Net)."""
    return sum(lay.w.size + lay.b.size + (0 if lay.idt is None else lay.idt.size)
               for net in nets for lay in net.layers)


def _atomic_number(symbol: str) -> float:
    from ..units import STANDARD_MASSES   # keyed in the order of the atomic numbers

    order = list(STANDARD_MASSES)
    return order.index(symbol) + 1 if symbol in STANDARD_MASSES else math.inf


def observed_types(params) -> list[str]:
    """dp show's observed types of a model (numdp.model.params.ModelParams): see the module."""
    script = (params.info or {}).get("model_def_script")
    if isinstance(script, dict):
        recorded = (script.get("info") or {}).get("observed_type")
        if recorded is not None:
            return [str(t) for t in recorded]
    bias = np.asarray(params.out_bias, dtype=np.float64)
    if not bias.any():
        bias = bias + np.asarray(params.fitting.bias_atom_e, dtype=np.float64)
    seen = [t for t, b in zip(params.type_map, bias) if abs(b) > 1e-6]
    return sorted(seen, key=_atomic_number)


DESCRIPTOR_HELD = ("rcut", "rcut_smth", "sel", "neuron", "axis_neuron", "resnet_dt", "type_one_side")
FITTING_HELD = ("neuron", "resnet_dt")
"""Parameters the model's arrays hold, printed from them over a recorded model_def_script (which
a model changed after DeePMD-kit wrote it, by numdp or by a script, no longer describes); the
recorded precision, seeds, activation name and the rest are printed as recorded."""


def _recorded(recorded: dict, rebuilt: dict, held: tuple[str, ...], **more) -> dict:
    """`recorded` in its own order, its entries of `held` (and of `more`, where recorded) replaced
    by the values the model holds (`rebuilt`, `more`)."""
    out = dict(recorded)
    for key in held:
        if key in out and key in rebuilt:
            out[key] = rebuilt[key]
    for key, value in more.items():
        if key in out:
            out[key] = value
    return out


def _recorded_script(params) -> dict:
    """The model definition a DeePMD-kit file records (its model_def_script), which dp show
    prints verbatim (the precision it was trained in, seeds, ...); {} for numdp's own files,
    whose parameters are rebuilt from the arrays."""
    info = params.info or {}
    script = info.get("model_def_script")
    if str(info.get("source", "")).startswith("deepmd-kit") and isinstance(script, dict):
        return script
    return {}


def describe(params, attributes=ATTRIBUTES) -> list[str]:
    """The lines `numdp show` prints for `attributes` of a model (numdp.model.params.ModelParams)."""
    d, f = params.descriptor, params.fitting
    lines = []
    if "type-map" in attributes:
        lines.append(f"The type_map is {list(params.type_map)}")
        if params.model_exclusions:
            lines.append(f"The model excludes pair_exclude_types {[list(p) for p in params.pair_exclude_types]}, "
                         f"atom_exclude_types {list(params.atom_exclude_types)}")
    script = _recorded_script(params)
    if "descriptor" in attributes:
        desc = {"type": "se_e2_a", "rcut": d.rcut, "rcut_smth": d.rcut_smth, "sel": list(d.sel),
                "neuron": list(d.neuron), "axis_neuron": d.axis_neuron, "resnet_dt": d.resnet_dt,
                "type_one_side": d.type_one_side, "activation_function": d.activation, "precision": "float64"}
        if d.exclude_types:
            desc["exclude_types"] = [list(pair) for pair in d.exclude_types]
        if isinstance(script.get("descriptor"), dict):
            desc = _recorded(script["descriptor"], desc, DESCRIPTOR_HELD,
                             exclude_types=[list(pair) for pair in d.exclude_types])
        lines.append(f"The descriptor parameter is {desc}")
        if d.tables is not None:
            t = d.tables[0]
            lines.append(f"The embedding nets are tabulated (compressed): order {t.order}, "
                         f"step {t.h0:g} up to x = {t.upper:g}, {t.h1:g} up to x = {t.xmax:g}")
    if "fitting-net" in attributes:
        fit = {"type": "ener", "neuron": list(f.neuron), "resnet_dt": f.resnet_dt,
               "activation_function": f.activation, "precision": "float64"}
        if f.numb_fparam:
            fit["numb_fparam"] = f.numb_fparam
            if f.default_fparam is not None:
                fit["default_fparam"] = f.default_fparam.tolist()
        if f.numb_aparam:
            fit["numb_aparam"] = f.numb_aparam
        if isinstance(script.get("fitting_net"), dict):
            fit = _recorded(script["fitting_net"], fit, FITTING_HELD, numb_fparam=f.numb_fparam,
                            numb_aparam=f.numb_aparam)
        lines.append(f"The fitting_net parameter is {fit}")
        lines.append("The energy bias (eV per atom) is " + ", ".join(
            f"{n} {b:.10g}" for n, b in zip(params.type_map, f.bias_atom_e + params.out_bias)))
    if "size" in attributes:
        nd, nf = _net_size(d.embeddings), _net_size(f.nets)
        lines += ["Parameter counts:", f"Parameters in descriptor: {nd:,}",
                  f"Parameters in fitting-net: {nf:,}", f"Parameters in total: {nd + nf:,}"]
    if "observed-type" in attributes:
        seen = observed_types(params)
        lines += ["The observed types for this model:", f"Number of observed types: {len(seen)}",
                  f"Observed types: {seen}"]
    if "info" in attributes:
        info = params.info or {}
        keys = [k for k in ("software", "version", "numb_steps", "step", "seed", "frozen_from")
                if info.get(k) is not None]   # (a field the file leaves empty is left out)
        what = ", ".join(f"{k} {info[k]}" for k in keys) if keys else "none"
        if info.get("source") == "deepmd-kit":
            what += " (the DeePMD-kit file's own fields: numdp writes .dp files in DeePMD-kit's name)"
        lines.append(f"Metadata: {what}" + (f"; smallest training pair distance {params.min_nbor_dist:.4g} A"
                                             if params.min_nbor_dist is not None else ""))
    return lines


def main(args) -> int:
    from pathlib import Path

    from ..errors import InputError
    from ..io.model_file import read_model

    for a in args.attributes:
        if a in DP_ONLY_ATTRIBUTES:
            raise InputError(f"{a!r}: {DP_ONLY_ATTRIBUTES[a]} (numdp show knows {', '.join(ATTRIBUTES)})")
        if a not in ATTRIBUTES:
            raise InputError(f"{a!r}: not an attribute numdp show knows (any of {', '.join(ATTRIBUTES)})")
    params = read_model(Path(args.model))
    print("This is a singletask model")   # dp show's first line (numdp reads no multi-task model)
    for line in describe(params, args.attributes or ATTRIBUTES):
        print(line)
    return 0
