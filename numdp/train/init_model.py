"""`numdp train --init-model MODEL`: start from a trained model instead of random networks.

The model's weights and statistics (sel, davg/dstd, energy bias, min_nbor_dist, s range, the
frame and atomic parameters' mean and deviation) are taken as they are; the optimiser starts
fresh (Adam moments zero, step 0), as DP-GEN does between iterations with DeePMD-kit's
``dp train --init-model``.  The path may also be a training checkpoint of `numdp train` (its
model, as `numdp freeze` writes it) and, as DeePMD-kit's, a checkpoint prefix: DP-GEN's
``--init-model old/model.ckpt`` finds old/model.ckpt, else old/model.ckpt.h5 or .pt
(numdp.train.checkpoint.resolve_checkpoint).  The networks the input declares must be
the model's: each difference is a one-line InputError naming the key.
"""
from __future__ import annotations

import copy

from ..errors import InputError
from ..model.params import ModelParams, excluded_pairs, exclusion_mask
from .config import TrainConfig


def load_init_model(path, cfg: TrainConfig, option: str = "--init-model") -> ModelParams:
    """The model file `path` (any format numdp.io.model_file reads) or training checkpoint (or
    its prefix), checked against the input `cfg`; `option` (--init-model or --finetune) names the
    option in messages."""
    from ..io.model_file import read_model
    from .checkpoint import is_checkpoint, resolve_checkpoint

    path = resolve_checkpoint(path)
    if is_checkpoint(path):   # DP-GEN's --init-model old/model.ckpt: the previous run's checkpoint
        from .freeze import model_from_checkpoint

        params = model_from_checkpoint(path)
    else:
        params = copy.deepcopy(read_model(path))
    d, dc, fc = params.descriptor, cfg.descriptor, cfg.fitting
    if d.tables is not None:
        raise InputError(f"{path}: {option}: a compressed model cannot be trained further; "
                         f"give the model before compression")
    checks = [
        ("model", "type_map", params.type_map, cfg.type_map),
        ("model.descriptor", "rcut", d.rcut, dc.rcut),
        ("model.descriptor", "rcut_smth", d.rcut_smth, dc.rcut_smth),
        ("model.descriptor", "sel", list(d.sel), list(d.sel) if dc.sel is None else dc.sel),
        ("model.descriptor", "neuron", list(d.neuron), dc.neuron),
        ("model.descriptor", "axis_neuron", d.axis_neuron, dc.axis_neuron),
        ("model.descriptor", "type_one_side", d.type_one_side, dc.type_one_side),
        ("model.descriptor", "resnet_dt", d.resnet_dt, dc.resnet_dt),
        ("model.descriptor", "exclude_types", excluded_pairs(d.excluded),
         excluded_pairs(exclusion_mask(dc.exclude_types, d.ntypes))),
        ("model.fitting", "neuron", list(params.fitting.neuron), fc.neuron),
        ("model.fitting", "resnet_dt", params.fitting.resnet_dt, fc.resnet_dt),
        ("model.descriptor", "activation_function", d.activation, dc.activation),
        ("model.fitting", "activation_function", params.fitting.activation, fc.activation),
        ("model.fitting", "numb_fparam", params.fitting.numb_fparam, fc.numb_fparam),
        ("model.fitting", "numb_aparam", params.fitting.numb_aparam, fc.numb_aparam),
        ("model", "pair_exclude_types", excluded_pairs(exclusion_mask(params.pair_exclude_types, d.ntypes)),
         excluded_pairs(exclusion_mask(cfg.pair_exclude_types, d.ntypes))),
        ("model", "atom_exclude_types", sorted(set(params.atom_exclude_types)), list(cfg.atom_exclude_types)),
    ]
    for table, key, model_value, input_value in checks:
        if model_value != input_value:
            raise InputError(f"{path}: {option}: [{table}] {key}: the model has {model_value!r}, "
                             f"{cfg.source.name} has {input_value!r}; the networks must match")
    return params
