"""Random initial networks for training (reference §3.3).

W ~ Normal(0, 1/sqrt(n_in + n_out)), b ~ Normal(0, 1), idt ~ Normal(0.1, 0.001) (the dpmodel /
PyTorch convention); the bias of the fitting nets' linear output layer starts at 0 because the
per-type energy offset is carried by the model's out_bias from the data statistics.  (The
trainer then also zeroes the output weights, see Trainer._data_init.)
A layer has idt iff resnet_dt is set and its residual applies (output width = input width or
twice it); the fitting output layer is linear without residual.

`spread_first_layers` then rescales each fitting net's first layer from the descriptors of the
statistics frames (numdp's data-dependent start, docs/training.md): the descriptor entries are
small (centred RMS 0.004-0.013 on water and copper), so with the draw above the first-layer
pre-activations vary across atoms by ~0.005 against biases of order 1, and the fitting nets start
almost blind to the atoms' environments.
"""
from __future__ import annotations

import numpy as np

from ..model.params import Descriptor, Fitting, Layer, ModelParams, Net
from .config import ModelConfig, TrainConfig


def _layer(rng: np.random.Generator, n_in: int, n_out: int, resnet_dt: bool, linear: bool,
           activation: str) -> Layer:
    w = rng.normal(0.0, 1.0 / np.sqrt(n_in + n_out), (n_in, n_out))
    if linear:
        return Layer(w=w, b=np.zeros(n_out), idt=None, activation="none", resnet=False)
    b = rng.normal(0.0, 1.0, n_out)
    residual = n_out == n_in or n_out == 2 * n_in
    idt = rng.normal(0.1, 0.001, n_out) if (resnet_dt and residual) else None
    return Layer(w=w, b=b, idt=idt, activation=activation, resnet=True)


def random_net(rng: np.random.Generator, widths: list[int], resnet_dt: bool, linear_out: bool,
               activation: str = "tanh") -> Net:
    """A net with layer widths `widths` (input first) and activation `activation`
    (numdp.model.activation.NAMES); the last layer linear if linear_out."""
    pairs = list(zip(widths[:-1], widths[1:]))
    return Net([_layer(rng, a, b, resnet_dt, linear_out and k == len(pairs) - 1, activation)
                for k, (a, b) in enumerate(pairs)])


def initial_model(cfg: TrainConfig | ModelConfig, sel: list[int], davg: np.ndarray, dstd: np.ndarray,
                  out_bias: np.ndarray, seed_fallback: int, input_stats: dict | None = None) -> ModelParams:
    """Model with random networks and the given statistics (davg/dstd (nt, nnei, 4), out_bias (nt,) eV;
    input_stats: the Fitting's fparam_avg and fparam_inv_std (numb_fparam,) for a model with frame
    parameters, aparam_avg and aparam_inv_std (numb_aparam,) for one with atomic parameters; the
    input's default_fparam is added).  The fitting nets take [D, f̂, â]: dim + numb_fparam +
    numb_aparam inputs.

    Descriptor and fitting seeds come from the input; when absent, `seed_fallback` (+1 for the
    fitting) is used, so a run is reproducible from the training seed alone.
    """
    nt = len(cfg.type_map)
    dc, fc = cfg.descriptor, cfg.fitting
    input_stats = dict(input_stats or {})
    if fc.numb_fparam and fc.default_fparam is not None:
        input_stats["default_fparam"] = np.asarray(fc.default_fparam, dtype=np.float64)
    rng_d = np.random.default_rng(dc.seed if dc.seed is not None else seed_fallback)
    nnet = nt if dc.type_one_side else nt * nt
    embeds = [random_net(rng_d, [1, *dc.neuron], dc.resnet_dt, False, dc.activation) for _ in range(nnet)]
    rng_f = np.random.default_rng(fc.seed if fc.seed is not None else seed_fallback + 1)
    dim = dc.neuron[-1] * dc.axis_neuron
    width_in = dim + fc.numb_fparam + fc.numb_aparam
    fnets = [random_net(rng_f, [width_in, *fc.neuron, 1], fc.resnet_dt, True, fc.activation) for _ in range(nt)]
    params = ModelParams(
        type_map=list(cfg.type_map),
        descriptor=Descriptor(rcut=dc.rcut, rcut_smth=dc.rcut_smth, sel=list(sel), neuron=list(dc.neuron),
                              axis_neuron=dc.axis_neuron, type_one_side=dc.type_one_side,
                              resnet_dt=dc.resnet_dt, davg=davg, dstd=dstd, embeddings=embeds,
                              exclude_types=[list(pair) for pair in dc.exclude_types]),
        fitting=Fitting(neuron=list(fc.neuron), resnet_dt=fc.resnet_dt, nets=fnets,
                        bias_atom_e=np.zeros(nt), **input_stats),
        out_bias=np.asarray(out_bias, dtype=np.float64), out_std=np.ones(nt),
        pair_exclude_types=[list(pair) for pair in cfg.pair_exclude_types],
        atom_exclude_types=list(cfg.atom_exclude_types))
    params.validate("initial model")
    return params


MAX_SPREAD_FACTOR = 100.0
"""Bound on the first-layer rescaling: atoms of a type whose environments in the statistics frames
are (nearly) all alike, as in a perfect crystal, give σ → 0 and would otherwise get weights of
any size.  The factors seen on real data are 6-30 (docs/training.md)."""


def spread_first_layers(nets: list[Net], descriptors: dict[int, np.ndarray], spread: float) -> dict[int, float]:
    """Rescale the first layer of each fitting net so that its pre-activations spread by `spread`
    across the atoms of `descriptors`, keeping the operating points the biases were drawn at.

    descriptors: per centre type t, the descriptor rows D (n_t, M·M<) of the statistics frames
    under the initial embedding nets.  With μ the mean row and σ the RMS over the layer's units of
    the standard deviation over atoms of (D − μ)W, the layer becomes W' = (spread/σ)·W,
    b' = b − μ·W' (z = (D − μ)W' + b: the mean atom sits at the drawn biases, b ~ N(0, 1)).  A
    type absent from `descriptors` (no atom of it in those frames) or with σ = 0 keeps its draw;
    the factor is at most MAX_SPREAD_FACTOR.  The arrays are changed in place (they may be views
    of θ).  Returns the factor per type scaled.
    """
    factors = {}
    for t, net in enumerate(nets):
        D = descriptors.get(t)
        if D is None or len(D) == 0:
            continue
        first = net.layers[0]
        mu = D.mean(axis=0)
        sigma = float(np.sqrt(np.mean(((D - mu) @ first.w).std(axis=0) ** 2)))
        if not sigma > 0.0:
            continue
        factors[t] = min(spread / sigma, MAX_SPREAD_FACTOR)
        first.w *= factors[t]
        first.b -= mu @ first.w
    return factors
