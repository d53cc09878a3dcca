"""numdp.train.loss against DeePMD-kit 3.2's EnergyStdLoss (deepmd/pt/loss/ener.py) and its
trainer (deepmd/pt/train/training.py), on points the fixture of test_train_loss_options.py does
not reach; the expected numbers are written from DeePMD-kit's formulas, not from a run of it.

- relative_f with f_use_norm and loss_func "mae": DeePMD-kit divides ΔF_k by |F̂_k| + relative_f
  first and then takes each atom's norm (|ΔF_k s_k|), for the loss and for mae_f;
- validation over numb_btch batches: DeePMD-kit's log_loss_valid shows Σ_b n_b x_b / Σ_b n_b,
  x_b a batch's own figure (√loss, rmse_*, mae_*), n_b its atoms over its frames ((atype >=
  0).sum() in DeePMD-kit 3.2.0: atom_exclude_types' atoms counted) — not the errors pooled over
  the batches;
- lcurve.out has the rmse_e / rmse_f columns only when the energy / force term is on (both
  prefactors non-zero), as DeePMD-kit's `more_loss` has those keys only then.
"""
import math

import numpy as np
import pytest

from numdp.train.config import _loss
from numdp.train.loss import Labels, LossStats
from numdp.train.passes import PrimalResult
from numdp.train.report import lcurve_columns, lcurve_kinds
from numdp.validate import TRAIN_WORDING, Table
from tests_util import U64, order_bound

TOL = order_bound(U64, 64)


def _config(keys: dict):
    return _loss(Table("t", "loss", dict(keys), TRAIN_WORDING))


def _frame(rng, n):
    ae = rng.normal(-1.0, 0.3, n)
    res = PrimalResult(float(ae.sum()), rng.normal(0, 1, (n, 3)), rng.normal(0, 2, (3, 3)), ae)
    lab = Labels(res.energy + float(rng.normal(0, 0.4)), res.forces + rng.normal(0, 0.7, (n, 3)),
                 res.virial + rng.normal(0, 1.0, (3, 3)))
    return res, lab


def test_relative_f_with_f_use_norm_and_mae_is_the_norm_of_the_relative_error():
    """DeePMD-kit accepts relative_f with f_use_norm and "mae" (numdp refused it, saying the
    relative shift was ignored): loss p_e |ΔE|/N + p_f mean_k |ΔF_k s_k|, mae_f = mean_k |ΔF_k s_k|,
    ∂L/∂F_k = p_f s_k r_k / (N |r_k|)."""
    keys = {"loss_func": "mae", "f_use_norm": True, "relative_f": 0.3, "start_pref_e": 0.5,
            "limit_pref_e": 2.0, "start_pref_f": 30.0, "limit_pref_f": 1.0}
    oc = _config(keys)
    pref = oc.prefactors().at(3e-4, 1e-3)
    assert pref.f == pytest.approx(1.0 + 29.0 * 0.3, rel=4 * U64)
    rng = np.random.default_rng(5)
    n = 4
    res, lab = _frame(rng, n)
    stats = LossStats(oc.options)
    seeds = stats.add_frame(res, lab, pref, 1)
    stats.end_batch()
    s = 1.0 / (np.linalg.norm(lab.forces, axis=1) + 0.3)
    r = (res.forces - lab.forces) * s[:, None]
    a = np.linalg.norm(r, axis=1)
    de = res.energy - lab.energy
    want = pref.e * abs(de) / n + pref.f * a.mean()
    assert abs(stats.loss() - want) <= TOL * want
    assert abs(stats.shown("mae_f") - a.mean()) <= TOL * a.mean()
    # the absolute-error norm (what the refusal claimed DeePMD-kit computes) is far from it
    assert abs(np.linalg.norm(res.forces - lab.forces, axis=1).mean() - a.mean()) > 0.1
    grad = seeds.c_f * seeds.u
    want_g = pref.f * s[:, None] * r / (n * a[:, None])
    assert np.abs(grad - want_g).max() <= TOL * np.abs(want_g).max()


def test_validation_over_batches_is_deepmd_kits_atom_weighted_mean_of_batch_figures():
    """Two batches (2 frames of 3 atoms, then 1 frame of 5): every figure is
    (6 x_1 + 5 x_2) / 11 of the batches' own figures (DeePMD-kit 3.2.0's n_b = (atype >= 0).sum()
    over the batch's frames; the repository's later code weighs one frame's atoms)."""
    keys = {"start_pref_e": 0.5, "limit_pref_e": 2.0, "start_pref_f": 30.0, "limit_pref_f": 1.0,
            "start_pref_v": 0.2, "limit_pref_v": 0.7}
    oc = _config(keys)
    pref = oc.prefactors().at(3e-4, 1e-3)
    rng = np.random.default_rng(11)
    batches = [[_frame(rng, 3), _frame(rng, 3)], [_frame(rng, 5)]]
    stats = LossStats(oc.options)
    figures = []
    for frames in batches:
        nf = len(frames)
        loss = 0.0
        e2 = f2 = v2 = 0.0
        fn = 0
        for res, lab in frames:
            stats.add_frame(res, lab, pref, nf)
            n = res.forces.shape[0]
            de = res.energy - lab.energy
            df = res.forces - lab.forces
            dv = res.virial - lab.virial
            loss += (pref.e * de ** 2 / n + pref.f * (df ** 2).mean() + pref.v * (dv ** 2).mean() / n) / nf
            e2 += (de / n) ** 2 / nf
            f2 += (df ** 2).sum()
            fn += df.size
            v2 += (dv ** 2).mean() / n ** 2 / nf
        stats.end_batch()
        figures.append({"rmse": math.sqrt(loss), "rmse_e": math.sqrt(e2), "rmse_f": math.sqrt(f2 / fn),
                        "rmse_v": math.sqrt(v2)})
    for name in ("rmse", "rmse_e", "rmse_f", "rmse_v"):
        want = (6 * figures[0][name] + 5 * figures[1][name]) / 11
        got = stats.shown(name)
        assert abs(got - want) <= TOL * want, (name, got, want)
    # pooled errors (what numdp showed) differ at this data's scale
    pooled = math.sqrt((2 * figures[0]["rmse_e"] ** 2 + figures[1]["rmse_e"] ** 2) / 3)
    assert abs(pooled - stats.shown("rmse_e")) > 1e-3 * pooled



def test_a_batch_weighs_all_its_atoms_with_atom_exclude_types():
    """DeePMD-kit weighs a validation batch by every real atom of its frames, also those of
    atom_exclude_types (out of the loss): batches of 1 frame of 4 atoms (2 excluded) and 1 frame
    of 4 atoms (none) weigh 4 : 4, not 2 : 4."""
    oc = _config({})
    pref = oc.prefactors().at(1e-3, 1e-3)
    rng = np.random.default_rng(7)
    stats = LossStats(oc.options)
    figures = []
    for included in (np.array([True, False, True, False]), None):
        res, lab = _frame(rng, 4)
        stats.add_frame(res, lab, pref, 1, included)
        stats.end_batch()
        one = LossStats(oc.options)
        one.add_frame(res, lab, pref, 1, included)
        one.end_batch()
        figures.append(one.shown("rmse_f"))
    want = (figures[0] + figures[1]) / 2
    assert abs(stats.shown("rmse_f") - want) <= TOL * want
    assert abs(figures[0] - figures[1]) > 0.01 * want   # the weights tell

def test_one_batch_figures_are_its_pooled_errors_and_a_missing_label_is_nan():
    """With one batch (the training columns) the figures are the batch's own; a validation batch
    without virial labels makes rmse_v nan, as DeePMD-kit's nan · n_b in its sum."""
    oc = _config({"start_pref_v": 1.0, "limit_pref_v": 1.0})
    pref = oc.prefactors().at(1e-3, 1e-3)
    rng = np.random.default_rng(3)
    res, lab = _frame(rng, 4)
    one = LossStats(oc.options)
    one.add_frame(res, lab, pref, 1)
    one.end_batch()
    assert one.shown("rmse_e") == pytest.approx(abs(res.energy - lab.energy) / 4, rel=TOL)
    assert one.shown("rmse") == pytest.approx(math.sqrt(one.loss()), rel=TOL)
    two = LossStats(oc.options)
    two.add_frame(res, lab, pref, 1)
    two.end_batch()
    res2, lab2 = _frame(rng, 4)
    lab2.virial = None
    two.add_frame(res2, lab2, pref, 1)
    two.end_batch()
    assert math.isnan(two.shown("rmse_v")) and math.isfinite(two.shown("rmse_e"))


@pytest.mark.parametrize("keys, absent", [
    ({"start_pref_e": 0.0, "limit_pref_e": 1.0}, "rmse_e"),
    ({"start_pref_e": 0.02, "limit_pref_e": 0.0}, "rmse_e"),
    ({"limit_pref_f": 0.0, "start_pref_pf": 1.0, "limit_pref_pf": 1.0}, "rmse_f"),
])
def test_lcurve_has_no_column_of_a_term_that_is_off(keys, absent):
    """DeePMD-kit's has_e / has_f need both prefactors non-zero; its more_loss has no rmse_e /
    rmse_f otherwise, so neither has lcurve.out."""
    p = _config(keys).prefactors()
    kinds = lcurve_kinds(p.has_v, p.has_ae, p.has_pf, False, has_e=p.has_e, has_f=p.has_f)
    assert absent not in kinds and "rmse" in kinds
    cols = lcurve_columns(True, p.has_v, p.has_ae, p.has_pf, False, has_e=p.has_e, has_f=p.has_f)
    assert f"{absent}_val" not in cols and f"{absent}_trn" not in cols
    assert lcurve_kinds(False, mae=True, has_e=False) == ["mae_f", "rmse"]


def test_huber_delta_list_has_three_items():
    """DeePMD-kit's resolve_huber_deltas refuses a list that is not [energy, force, virial]
    (numdp took [δ] as δ)."""
    from numdp.errors import InputError

    with pytest.raises(InputError, match=r"\[loss\] huber_delta: expected a number > 0 or a list of three") as err:
        _config({"use_huber": True, "huber_delta": [0.1]})
    assert "\n" not in str(err.value)
    d = _config({"use_huber": True, "huber_delta": 0.1}).options.huber
    assert (d.e, d.f, d.v) == (0.1, 0.1, 0.1)


def test_a_restart_keeps_an_earlier_versions_rows_under_the_new_columns(tmp_path):
    """An lcurve.out of an earlier numdp (rmse_e columns with the energy term off) continued by
    a restart: its rows kept had one number more than the new header (numdp plot refused the
    file); they are rewritten by column name."""
    from numdp.plots import read_table
    from numdp.train.report import Lcurve

    path = tmp_path / "lcurve.out"
    old = Lcurve(path, lcurve_columns(True, False))    # the earlier columns: rmse_e always
    for step in (1, 2, 3):
        old.row(step, [1.0, 2.0, 3.0, 4.0, 5.0 * step, 6.0, 1e-3])
    old.close()
    new = lcurve_columns(True, False, has_e=False)
    lc = Lcurve(path, new, restart_step=2)
    lc.row(3, [7.0, 8.0, 9.0, 10.0, 1e-3])
    lc.close()
    t = read_table(path)
    assert t.names == ["step"] + new
    assert t.data.tolist() == [[1.0, 1.0, 2.0, 5.0, 6.0, 1e-3], [2.0, 1.0, 2.0, 10.0, 6.0, 1e-3],
                               [3.0, 7.0, 8.0, 9.0, 10.0, 1e-3]]
