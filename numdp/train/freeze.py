"""A training checkpoint's model (`numdp freeze`, DeePMD-kit's `dp freeze`): the networks of the
checkpoint's own input with its θ and statistics."""
from __future__ import annotations

from pathlib import Path

from .. import __version__
from ..errors import InputError
from ..model.params import ModelParams
from .checkpoint import read_checkpoint
from .config import model_config
from .flat import FlatParams
from .init import initial_model


def model_from_checkpoint(path, ema: bool = False) -> ModelParams:
    """The model a training checkpoint holds: the input's networks (read from the input text the
    checkpoint carries, so neither the input file nor the data is needed), the checkpoint's θ
    (with `ema`, its moving average of θ: a run with enable_ema), sel, davg/dstd, energy bias,
    s range and min_nbor_dist; info names the checkpoint's step."""
    path = Path(path)
    ck = read_checkpoint(path)
    if ck.precond_scale is not None:
        raise InputError(f"{path}: checkpoint of a run with the removed [training] precondition option: "
                         f"its weights are scaled; numdp cannot freeze it")
    mc = model_config(ck.input_text, f"{path.name} (its training input)")
    if len(ck.sel) != len(mc.type_map):
        raise InputError(f"{path}: sel {ck.sel} has {len(ck.sel)} types, its input's type_map "
                         f"{mc.type_map} {len(mc.type_map)}: the checkpoint is damaged")
    params = initial_model(mc, list(ck.sel), ck.davg, ck.dstd, ck.out_bias, 0, ck.input_stats)
    flat = FlatParams.bind(params)
    if ck.theta.shape != flat.theta.shape:
        raise InputError(f"{path}: {ck.theta.size} parameters, the networks of its input have "
                         f"{flat.size}: the checkpoint is damaged")
    if ema and ck.theta_ema is None:
        raise InputError(f"{path}: holds no moving average of the parameters (its run had no "
                         f"[training] enable_ema); freeze it without --ema")
    flat.theta[:] = ck.theta_ema if ema else ck.theta
    params.s_range = ck.s_range
    params.min_nbor_dist = ck.min_nbor_dist
    params.info = {"software": "numdp", "version": __version__, "training_input": ck.input_text,
                   "step": ck.step, "frozen_from": path.name, **({"ema": True} if ema else {})}
    return params
