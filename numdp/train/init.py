"""Random initial networks for training (reference §3.3).

W ~ Normal(0, 1/sqrt(n_in + n_out)), b ~ Normal(0, 1), idt ~ Normal(0.1, 0.001) (the dpmodel /
PyTorch convention); the bias of the fitting nets' linear output layer starts at 0 because the
per-type energy offset is carried by the model's out_bias from the data statistics.  (The
trainer then also zeroes the output weights, see Trainer._data_init.)
A layer has idt iff resnet_dt is set and its residual applies (output width = input width or
twice it); the fitting output layer is linear without residual.
"""
from __future__ import annotations

import numpy as np

from ..model.params import Descriptor, Fitting, Layer, ModelParams, Net
from .config import TrainConfig


def _layer(rng: np.random.Generator, n_in: int, n_out: int, resnet_dt: bool, linear: bool) -> Layer:
    w = rng.normal(0.0, 1.0 / np.sqrt(n_in + n_out), (n_in, n_out))
    if linear:
        return Layer(w=w, b=np.zeros(n_out), idt=None, activation="none", resnet=False)
    b = rng.normal(0.0, 1.0, n_out)
    residual = n_out == n_in or n_out == 2 * n_in
    idt = rng.normal(0.1, 0.001, n_out) if (resnet_dt and residual) else None
    return Layer(w=w, b=b, idt=idt, activation="tanh", resnet=True)


def random_net(rng: np.random.Generator, widths: list[int], resnet_dt: bool, linear_out: bool) -> Net:
    """A net with layer widths `widths` (input first); the last layer linear if linear_out."""
    pairs = list(zip(widths[:-1], widths[1:]))
    return Net([_layer(rng, a, b, resnet_dt, linear_out and k == len(pairs) - 1)
                for k, (a, b) in enumerate(pairs)])


def initial_model(cfg: TrainConfig, sel: list[int], davg: np.ndarray, dstd: np.ndarray,
                  out_bias: np.ndarray, seed_fallback: int) -> ModelParams:
    """Model with random networks and the given statistics (davg/dstd (nt, nnei, 4), out_bias (nt,) eV).

    Descriptor and fitting seeds come from the input; when absent, `seed_fallback` (+1 for the
    fitting) is used, so a run is reproducible from the training seed alone.
    """
    nt = len(cfg.type_map)
    dc, fc = cfg.descriptor, cfg.fitting
    rng_d = np.random.default_rng(dc.seed if dc.seed is not None else seed_fallback)
    nnet = nt if dc.type_one_side else nt * nt
    embeds = [random_net(rng_d, [1, *dc.neuron], dc.resnet_dt, False) for _ in range(nnet)]
    rng_f = np.random.default_rng(fc.seed if fc.seed is not None else seed_fallback + 1)
    dim = dc.neuron[-1] * dc.axis_neuron
    fnets = [random_net(rng_f, [dim, *fc.neuron, 1], fc.resnet_dt, True) for _ in range(nt)]
    params = ModelParams(
        type_map=list(cfg.type_map),
        descriptor=Descriptor(rcut=dc.rcut, rcut_smth=dc.rcut_smth, sel=list(sel), neuron=list(dc.neuron),
                              axis_neuron=dc.axis_neuron, type_one_side=dc.type_one_side,
                              resnet_dt=dc.resnet_dt, davg=davg, dstd=dstd, embeddings=embeds),
        fitting=Fitting(neuron=list(fc.neuron), resnet_dt=fc.resnet_dt, nets=fnets,
                        bias_atom_e=np.zeros(nt)),
        out_bias=np.asarray(out_bias, dtype=np.float64), out_std=np.ones(nt))
    params.validate("initial model")
    return params
