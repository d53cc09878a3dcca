"""Tests added by mutation round 25 (the training loop's bookkeeping: numdp.train.loss's loss and
figures, numdp.train.report's lcurve.out, numdp.train.loop's step loop, numdp.train.data's
batches): each kills a plausible mistake that tests/test_train*.py, test_sweep_loss.py,
test_sweep_mixed_loss.py, test_sweep_train*.py, test_output_targets.py and the earlier mutation
rounds (6, 12, 16) let through (the mutant named in the test's docstring): lcurve's rmse_val /
rmse_trn (√loss) columns, its alignment, LossStats.loss() over batches, change_bias_after_training
on a restart with no update left, a zero sys_probs entry beside a negative one.  A 7-step and a
3-step run on test_train_run.py's tiny data (and a restart of each), the rest built directly:
under 2 s with a warm Numba cache.
"""
from __future__ import annotations

import io
import math
import re

import numpy as np

from numdp.model.dp_model import DPModel
from numdp.train.config import AutoProb, load_config
from numdp.train.data import BatchSampler, system_probs
from numdp.train.loop import Trainer
from numdp.train.loss import Labels, LossStats, Prefactors
from numdp.train.passes import PrimalResult
from numdp.train.report import Lcurve, lcurve_columns
from test_train_run import data_dir, make_input, train_recording  # noqa: F401  (data_dir: fixture)
from tests_util import U64, order_bound


def _batch_loss(params, batch, systems, pref: Prefactors) -> tuple[float, int]:
    """(L, n_b) of one batch (system k, frame indices) for the model `params`, written from
    DeePMD-kit 3.2's EnergyStdLoss (deepmd/pt/loss/ener.py) with numdp's MD evaluator:
    L = p_e mean_f ΔE_f²/N + p_f mean ΔF² (components) + p_v mean_f Σ_ab ΔΞ_fab²/(9N) (the virial
    term only where the system has virial.npy), n_b = N × frames, the batch's weight in
    log_loss_valid's mean."""
    k, idx = batch
    s = systems[k]
    model = DPModel(params, nthreads=1)
    e, f, v = [], [], []
    for i in idx:
        r = model.evaluate(s.coords[i], s.types, None if s.boxes is None else s.boxes[i], atom_virial=False)
        e.append((r.energy - s.energy[i]) ** 2 / s.natoms)
        f.append(np.mean((r.forces - s.forces[i]) ** 2))
        if s.virial is not None:
            v.append(np.sum((r.virial - s.virial[i]) ** 2) / (9.0 * s.natoms))
    loss = pref.e * np.mean(e) + pref.f * np.mean(f) + (pref.v * np.mean(v) if v else 0.0)
    return float(loss), s.natoms * len(idx)


def test_rmse_val_and_rmse_trn_are_the_root_loss_with_the_steps_prefactors(tmp_path, data_dir):
    """lcurve.out's rmse_val and rmse_trn columns (√L) as DeePMD-kit 3.2 writes them
    (deepmd/pt/train/training.py): row k (after k updates) has rmse_trn = √L of the k-th training
    batch at θ_{k-1}, and rmse_val = Σ_b n_b √L_b / Σ_b n_b over numb_btch validation batches at
    θ_k, both with the prefactors of step k - 1 (DeePMD-kit's `pref_lr = cur_lr` of that step,
    passed to the validation's wrapper too): p = limit + (start - limit) lr(k-1)/start_lr.
    test_train_run.py checks the rmse_e / _f / _v columns of these rows, not the √L ones.
    decay_steps 1 gives every step its own rate (and prefactors: lr falls by (1e-4/5e-3)^(1/7)
    ≈ 0.57 a step), numb_btch 2 batches of 2 frames.  Two code paths (MD evaluator, training
    passes) sum the same errors in other orders: round-off far below the 1e-9 relative used.
    Then a restart from the checkpoint after step 3 reports the 4 steps it made.
    Mutants killed: the validation taking the prefactors of the next step
    (`self.validate(self.prefactors(step + 1)[1])`), the validation frames' batch size counted
    over all numb_btch batches (`sizes.append(len(batches) * len(idx))`: n_f and N_b doubled in
    the validation's per-frame and per-atom divisors), and a restart's summary counting the steps
    from 0 (`nsteps = total`: 'trained 7 steps')."""
    trainer, history, models, path = train_recording(tmp_path, data_dir)
    work = path.parent
    assert sorted(history.rows) == [1, 3, 6]
    assert history.columns[:2] == ["rmse_val", "rmse_trn"]
    start_lr = 5e-3   # the input's [learning_rate] and [loss] (test_train_run.INPUT)

    def prefs(lr):
        x = lr / start_lr
        return Prefactors(1.0 + (0.2 - 1.0) * x, 1.0 + (100.0 - 1.0) * x, 1.0 + (0.1 - 1.0) * x)

    seed, nb = trainer.seed, trainer.cfg.validation.numb_btch
    assert nb == 2
    train_draws = BatchSampler(trainer.train_sys, [seed, 1], trainer.sampler.prob)
    train_batches = [train_draws.next() for _ in range(7)]
    valid_draws = BatchSampler(trainer.valid_sys, [seed, 2], trainer.valid_sampler.prob)
    for k in (1, 3, 6):
        row = history.rows[k]
        pref = prefs(trainer.sched.lr(k - 1))
        assert row[-1] == trainer.sched.lr(k - 1)
        losses = [_batch_loss(models[k], valid_draws.next(), trainer.valid_sys, pref) for _ in range(nb)]
        want_val = sum(n * math.sqrt(x) for x, n in losses) / sum(n for _, n in losses)
        want_trn = math.sqrt(_batch_loss(models[k - 1], train_batches[k - 1], trainer.train_sys, pref)[0])
        assert abs(row[0] - want_val) <= 1e-9 * want_val, (k, row[0], want_val)
        assert abs(row[1] - want_trn) <= 1e-9 * want_trn, (k, row[1], want_trn)
    out = io.StringIO()
    again = Trainer(load_config(path), restart=work / "ck3.h5", nthreads=2, stream=out)
    try:
        again.run()
    finally:
        again.close()
    assert re.search(r"^trained 4 steps in ", out.getvalue(), re.M), out.getvalue()


def test_lcurve_rows_line_up_under_the_header(tmp_path):
    """lcurve.out's rows line up under its header: the step in 7 characters (`%7d`, DeePMD-kit's)
    under `#  step`, and each value's 13-character field ending where its name's does (DeePMD-kit
    right-aligns its names over its values too, `%11s` over `%11.2e`; numdp's fields are wider,
    13.6e), so that a person, or a reader going by columns, sees each number under its name.
    Steps of 1 to 7 digits.  Mutants killed: the row's step written `{step:6d}` (every column
    shifted one left of its name) and the header's `{'step':>7}` (the names one right)."""
    columns = lcurve_columns(True, True)
    lc = Lcurve(tmp_path / "lcurve.out", columns)
    steps = [1, 30, 400, 5000, 60000, 700000, 8000000]
    for step in steps:
        lc.row(step, [-1.25e-3 * (i + 1) for i in range(len(columns))])
    lc.close()
    header, *rows = (tmp_path / "lcurve.out").read_text().splitlines()
    assert header.startswith("#") and len(rows) == len(steps)
    names = [(m.group(), m.end()) for m in re.finditer(r"[^\s#]+", header)]
    assert [n for n, _ in names] == ["step"] + columns
    for step, row in zip(steps, rows):
        fields = [(m.group(), m.end()) for m in re.finditer(r"\S+", row)]
        assert int(fields[0][0]) == step
        assert [end for _, end in fields] == [end for _, end in names], (header, row)


def test_loss_over_several_batches_is_the_mean_of_the_batch_losses():
    """LossStats.loss() (and rmse() = √loss()) is the mean over the batches closed by end_batch of
    each batch's L, its documented meaning.  Two batches of one frame of 3 atoms (energy term
    only, p_e = 1): L_b = ΔE_b²/3, loss() = (L_1 + L_2)/2.  A few roundings in each, the
    expected values formed from the same differences: tests_util.order_bound(U64, 8).
    Mutant killed: loss() returning the sum of the batch losses (`self.loss_sum`, no division by
    nbatch); numdp's only caller (the progress line's running loss) passes one batch, so only
    this contract sees it."""
    pref = Prefactors(1.0, 0.0, 0.0)
    stats = LossStats()
    want = []
    for de in (0.3, -1.1):
        res = PrimalResult(2.0 + de, np.zeros((3, 3)), np.zeros((3, 3)), np.full(3, (2.0 + de) / 3.0))
        stats.add_frame(res, Labels(2.0, None, None), pref, 1)
        stats.end_batch()
        want.append((2.0 + de - 2.0) ** 2 / 3.0)
    tol = order_bound(U64, 8)
    mean = (want[0] + want[1]) / 2.0
    assert abs(stats.loss() - mean) <= tol * mean
    assert abs(stats.rmse() - math.sqrt(mean)) <= tol * math.sqrt(mean)


def test_a_restart_at_the_last_step_leaves_the_bias_alone(tmp_path, data_dir):
    """change_bias_after_training moves the energy bias after a run's updates only: DeePMD-kit 3.2
    (deepmd/pt/train/training.py) changes it when `num_steps > start_step`, so a --restart from a
    checkpoint already at numb_steps (no update left) writes the checkpoint's model as it is.  A
    3-step run without the option, then a restart from its final checkpoint with the option on:
    the model file's bias is the checkpoint's, bit for bit, and no bias line is said.
    Mutant killed: `if tr.change_bias_after_training:` without `and nsteps` (the bias refitted
    and the checkpoint rewritten on a restart that made no update)."""
    from numdp.io.model_file import read_model
    from numdp.train.checkpoint import read_checkpoint

    path = make_input(tmp_path, data_dir, steps=3)
    first = Trainer(load_config(path), nthreads=2, stream=io.StringIO())
    try:
        first.run()
    finally:
        first.close()
    ckpt = path.parent / "model.ckpt.h5"
    bias = read_checkpoint(ckpt).out_bias.copy()
    path.write_text(path.read_text().replace("numb_steps = 3", "numb_steps = 3\nchange_bias_after_training = true"))
    out = io.StringIO()
    again = Trainer(load_config(path), restart=ckpt, nthreads=2, stream=out)
    try:
        again.run()
    finally:
        again.close()
    assert "change_bias_after_training" not in out.getvalue(), out.getvalue()
    assert np.array_equal(read_model(path.parent / "model.h5").out_bias, bias)
    assert np.array_equal(read_checkpoint(ckpt).out_bias, bias)


def test_a_zero_sys_probs_entry_is_never_drawn_beside_a_negative_one():
    """sys_probs as DeePMD-kit's process_sys_probs (deepmd/utils/data_system.py) reads it: the
    entries >= 0 are probabilities as given, 0 included (that system is never drawn), and only
    the negative ones share 1 - Σ(entries >= 0) in proportion to their systems' batches.
    [0.5, 0, -1] over systems of 2, 3 and 5 batches: [0.5, 0, 0.5] exactly (1 - 0.5 and
    0.5 · 5/5 are exact).  Mutant killed: `share = given <= 0` (the zero entry shares the rest:
    [0.5, 0.1875, 0.3125]); with no negative entry the two agree, which is why the suite's
    sys_probs cases let it through."""
    prob = system_probs([2, 3, 5], AutoProb(), [0.5, 0.0, -1.0])
    assert prob.tolist() == [0.5, 0.0, 0.5]
