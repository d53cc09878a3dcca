"""Tests for the survivors of the twelfth round of mutation testing (the trainer's gradient path:
the hand-derived passes and their kernels, the loss, Adam and the loop's batches and clipping):
each fails on one plausible mistake that the rest of the suite let through (the mutant is named
in the test's docstring; 2026-12-07).  Small models and frames only.
"""
from __future__ import annotations

import dataclasses
import io
from fractions import Fraction

import numpy as np
import pytest

from numdp.kernels.cpu.train import ema_update
from numdp.neighbor import build_nlist, extend
from numdp.train.config import load_config
from numdp.train.flat import FlatParams
from numdp.train.loop import Trainer
from numdp.train.loss import LossStats, Prefactors
from numdp.train.optim import clip_scale
from numdp.train.passes import Frame, ModelPasses
from randmodel import random_config
from test_train_grad import (HYPER, _batch_case, _loss_and_grad, labels_for, make_case,
                             optimiser_states_fused_and_not)
from test_train_run import data_dir, make_input  # noqa: F401  (data_dir: fixture)
from tests_util import U64, order_bound


# --------------------------------------------------------------------------------------------------
# the clipping norm of a model with frozen fitting layers
# --------------------------------------------------------------------------------------------------


def _trainer(path) -> Trainer:
    return Trainer(load_config(path), nthreads=1, stream=io.StringIO())


def _batch_gradient(trainer: Trainer, k: int, idx: np.ndarray) -> tuple[float, np.ndarray]:
    """(loss, ∂L/∂θ) of frames idx of training system k as one batch, at step 0's prefactors."""
    _, pref = trainer.prefactors(0)
    stats = LossStats(trainer.loss_options)
    trainer.passes.zero_grad()
    trainer._batch_loss(trainer.train_sys, trainer.train_cache, k, idx, pref, stats, True)
    return stats.loss(), trainer.passes.total_grad()


def test_clipping_norm_leaves_the_frozen_fitting_layers_out(tmp_path, data_dir):
    """Mutant `grad_norm(self.passes.grads, self.passes.segments)` in Trainer._clip_scale (the
    frozen ranges not taken out): a fitting layer with trainable false still gets its gradient
    from the passes (only the descriptor's is skipped), and DeePMD-kit's clip_grad_norm_ sees
    no gradient for a parameter that does not require one, so the norm is that of the trained
    entries alone (docs: test_train_trainable's module docstring; there only the descriptor,
    whose gradient entries are 0, was frozen with clipping)."""
    path = make_input(tmp_path, data_dir, steps=1)
    text = path.read_text().replace("seed = 4\n", "seed = 4\ntrainable = [true, false, true]\n")
    path.write_text(text.replace("numb_steps = 1\n", "numb_steps = 1\ngradient_max_norm = 1e-3\n"))
    trainer = _trainer(path)
    try:
        # at the start only the output layers have a gradient (their weights start at 0): one
        # step first
        trainer.train_step(0, False)
        _, g = _batch_gradient(trainer, 0, np.array([0, 1]))
        frozen = np.zeros(g.shape[0], bool)
        for a, b in trainer.adam.frozen:
            frozen[a:b] = True
        # the frozen entries' share r = ‖g_frozen‖/‖g_trained‖ > 1e-3 would change the factor by
        # 1 - 1/√(1 + r²) > 4.9e-7, far above the tolerance below
        assert frozen.any() and np.linalg.norm(g[frozen]) > 1e-3 * np.linalg.norm(g[~frozen])
        want = clip_scale(float(np.linalg.norm(g[~frozen])), 1e-3)
        assert want < 1.0
        # both sides sum the same ~10³ squares in different orders (and the worker rows first)
        assert trainer._clip_scale(1, 1e-3) == pytest.approx(want, rel=order_bound(U64, g.shape[0]))
    finally:
        trainer.close()


# --------------------------------------------------------------------------------------------------
# atom_exclude_types: the excluded atoms' adjoints are zero whatever the workspace held
# --------------------------------------------------------------------------------------------------


def test_excluded_atoms_adjoint_is_zero_after_a_frame_that_used_their_rows():
    """Mutant: the loop `for a0, a1 in c.excluded: Tbar[a0:a1] = 0.0` removed from
    ModelPasses._backward_pass.  The gradient pass's T̄ lives in a reused workspace buffer and
    only the fitted atoms' rows are written; an atom_exclude_types atom has no energy, so its
    T̄ must be 0.  In one system those rows are never written: DeePMD-kit's water_excl fixture
    (test_train_deepmd_kit) catches the mutant only when the new buffer's uninitialised memory
    is not zero there (in one of two runs of this round); after a frame whose fitted atoms sat
    at those team rows (a frame of more atoms of the fitted type), their stale T̄ would go into
    the embedding gradient.  The gradient after such a frame must be bit for bit that of fresh
    passes (the same arithmetic in the same order)."""
    params, frame, _, _ = make_case(*HYPER[0], periodic=True)
    params = dataclasses.replace(params, atom_exclude_types=[1])
    d = params.descriptor
    n1 = int((frame.types == 1).sum())
    assert 0 < n1 and int((frame.types == 0).sum()) < 12
    pos, _, box = random_config(12, 1, box_len=6.0, tilt=0.3, seed=21)
    types = np.zeros(12, np.int32)
    ext = extend(pos, types, box, d.rcut)
    nl = build_nlist(ext, d.rcut, d.sel, d.ntypes)
    only0 = Frame(ext.positions, nl.nlist, types, ext.mapping)
    flat = FlatParams.bind(params)
    rng = np.random.default_rng(5)
    pref = Prefactors(0.5, 1.0, 0.5)
    used = ModelPasses(params, flat, 1)
    _loss_and_grad(used, flat, only0, labels_for(used.primal(only0), rng, True), pref)
    labels = labels_for(used.primal(frame), rng, True)
    _, g = _loss_and_grad(used, flat, frame, labels, pref)
    used.close()
    fresh = ModelPasses(params, flat, 1)
    _, g_fresh = _loss_and_grad(fresh, flat, frame, labels, pref)
    fresh.close()
    emb = [(a, b) for name, a, b in flat.names if name.startswith("embedding")]
    assert all(g[a:b].any() for a, b in emb)
    assert np.array_equal(g, g_fresh)


# --------------------------------------------------------------------------------------------------
# the passes' early weight update: only when every frame of the batch is shared by the workers
# --------------------------------------------------------------------------------------------------


def test_batch_of_a_whole_round_and_a_shared_frame_updates_as_the_optimiser():
    """Mutant `update if i == n - 1 else None` for `update if whole == 0 and i == n - 1 else
    None` in ModelPasses.frames: with 3 frames on 2 threads, frames 0 and 1 go whole to the two
    workers (gradient rows 0 and 1) and frame 2 is shared; the early update of the fitting
    hidden-layer weights (`Adam.row_update`, from row 0 alone: the shared frame's weight
    adjoints are formed there) would then miss worker 1's frame.  θ, m and v after three steps
    must be bit for bit those of the plain optimiser step after the pass (the existing test of
    the early update, test_train_grad, has one frame: no whole round)."""
    params, frames = _batch_case(3)

    def make_labels(passes):
        rng = np.random.default_rng(9)
        return [labels_for(passes.primal(fr), rng, True) for fr in frames]

    # (frames 0 and 1 whole: no worker steps a row early, so `updated` may stay empty)
    states = optimiser_states_fused_and_not(params, frames, make_labels, 3, check_updated=False)
    for a, b in zip(*states):
        assert np.array_equal(a, b)


# --------------------------------------------------------------------------------------------------
# enable_ema: DeePMD-kit's ModelEMA update, shadow.lerp_(θ, 1 - ema_decay), bit for bit
# --------------------------------------------------------------------------------------------------


def _torch_lerp(ema: np.ndarray, theta: np.ndarray, weight: float) -> np.ndarray:
    """PyTorch's lerp_(end=θ, weight) of `ema`, each entry rounded once: ATen's Lerp.h forms
    ema + weight·d for weight < 0.5 and θ − d·(1 − weight) otherwise (d = θ − ema, rounded),
    each as one fused multiply-add (its vectorised CPU kernel's fmadd / fnmadd; torch 2.13 in
    /tmp/dpk matched this exactly on 2000 random entries at weights 0.001, 0.1, 0.3, 0.5, 0.7
    and 0.9).  Fractions are exact, and float() of one rounds correctly: one rounding."""
    d = theta - ema
    if weight < 0.5:
        return np.array([float(Fraction(e) + Fraction(weight) * Fraction(x)) for e, x in zip(ema, d)])
    w1 = Fraction(1.0 - weight)
    return np.array([float(Fraction(t) - Fraction(x) * w1) for t, x in zip(theta, d)])


def test_ema_update_at_weight_one_half_takes_torchs_second_form():
    """Mutant `weight <= 0.5` for `weight < 0.5` in numdp.kernels.cpu.train.ema_update: at
    ema_decay 0.5 the average would be formed as ema + d/2 where PyTorch's lerp_ forms
    θ − d/2; with d = θ − ema rounded, the two differ in the last bit of many entries
    (the run's tests use decays 0.9 and 0.3 only).  The product by 1/2 is exact, so the second
    form is bit for bit `_torch_lerp`."""
    rng = np.random.default_rng(3)
    ema0, theta = rng.normal(size=400), rng.normal(size=400)
    want = _torch_lerp(ema0, theta, 0.5)
    assert np.any(want != ema0 + 0.5 * (theta - ema0))   # the mutant's form differs
    ema = ema0.copy()
    ema_update(ema, theta, 0.5, 0, ema.shape[0])
    assert np.array_equal(ema, want)


@pytest.mark.parametrize("weight", [0.1, 0.9])
def test_ema_update_rounds_once_as_torchs_lerp(weight):
    """ema_update's docstring promises DeePMD-kit's ModelEMA bits (shadow.lerp_(θ, 1 − decay));
    PyTorch's lerp_ rounds each entry once (a fused multiply-add, `_torch_lerp`); numdp rounded
    twice before 2026-12-07 (the product, then the sum): up to 1 ulp apart per update, in about
    a third of the entries."""
    rng = np.random.default_rng(4)
    ema0, theta = rng.normal(size=400), rng.normal(size=400)
    ema = ema0.copy()
    ema_update(ema, theta, weight, 0, ema.shape[0])
    assert np.array_equal(ema, _torch_lerp(ema0, theta, weight))
