"""DeePMD-kit 3.2's energy-loss options in `numdp train` (numdp.train.loss): atomic-energy and
weighted-force terms, relative_f, enable_atom_ener_coeff, intensive_ener_virial, Huber.

- the loss, its derivatives with respect to the predictions and the values DeePMD-kit shows
  equal DeePMD-kit's own EnergyStdLoss under PyTorch's autograd on the same numbers
  (tests/data/deepmd_kit_loss/ener_loss.npz, written by tools/make_loss_fixture.py);
- the full parameter gradient with the new terms equals central differences of the loss;
- a short run from an input.json with the new keys writes DeePMD-kit's lcurve columns, whose
  first row is the initial model's errors; bad label files and keys stop with one line.
"""
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest

from numdp.errors import InputError
from numdp.io.npy_system import load_system
from numdp.model.dp_model import DPModel
from numdp.neighbor import build_nlist, extend
from numdp.train.config import _loss, load_config
from numdp.train.flat import FlatParams
from numdp.train.loop import Trainer
from numdp.train.loss import Labels, LossStats
from numdp.train.passes import Frame, ModelPasses, PrimalResult
from numdp.validate import TRAIN_WORDING, Table
from randmodel import random_config, random_params
from tests_util import U64, order_bound

FIXTURE = Path(__file__).parent / "data" / "deepmd_kit_loss" / "ener_loss.npz"
REF = np.load(FIXTURE)
META = json.loads(str(REF["cases"]))
# Both sides form each value from at most NF·N·3 = 30 squared residuals per term and 5 terms,
# each through a few products (prefactor, 1/N, weights, s_k): chains of < 64 operations in
# float64, in different orders; a mistake (a weight, a factor of N or 2 missing) is O(1).
TOL = order_bound(U64, 64)


def _config(keys: dict):
    return _loss(Table("fixture", "loss", dict(keys), TRAIN_WORDING))


def _case(k: int):
    case = META["cases"][k]
    a = {name[len(f"{k}_"):]: REF[name] for name in REF.files if name.startswith(f"{k}_")}
    return case, a


@pytest.mark.parametrize("k", range(len(META["cases"])), ids=[c["name"] for c in META["cases"]])
def test_loss_and_derivatives_equal_deepmd_kits(k):
    case, a = _case(k)
    oc = _config(case["loss"])
    pref = oc.prefactors().at(META["lr"], META["start_lr"])
    stats = LossStats(oc.options)
    nf, n = META["nframes"], META["natoms"]
    has = {name: bool(a[f"has_{name}"]) for name in
           ("energy", "force", "virial", "atom_ener", "atom_pref", "atom_ener_coeff")}
    for f in range(nf):
        res = PrimalResult(float(a["pred_energy"][f]), a["pred_force"][f], a["pred_virial"][f],
                           a["pred_atom_energy"][f])
        labels = Labels(*(a[f"label_{name}"][f] if has[name] else None for name in has))
        if labels.energy is not None:
            labels.energy = float(labels.energy)
        seeds = stats.add_frame(res, labels, pref, nf)
        # numdp's E is Σ e_k: its per-atom seed is DeePMD-kit's ∂L/∂E + ∂L/∂e_k
        want_e = a["grad_energy"][f] + a["grad_atom_energy"][f]
        got_e = np.broadcast_to(seeds.c_e, (n,))
        assert np.abs(got_e - want_e).max() <= TOL * np.abs(want_e).max(), (got_e, want_e)
        for got, want in ((seeds.c_f * seeds.u, a["grad_force"][f]), (seeds.c_v * seeds.eps, a["grad_virial"][f])):
            assert np.abs(got - want).max() <= TOL * max(np.abs(want).max(), 1e-300), (got, want)
    stats.end_batch()
    assert abs(stats.loss() - float(a["loss"])) <= TOL * float(a["loss"])
    shown = {name[len("shown_"):]: float(v) for name, v in a.items() if name.startswith("shown_")}
    assert "rmse" in shown
    for key, want in shown.items():
        got = stats.shown(key)
        if np.isnan(want):
            assert np.isnan(got), key
        else:
            assert abs(got - want) <= TOL * want, (key, got, want)


def test_fixture_exercises_every_option():
    """The fixture's cases switch every option on, and the Huber case has residuals on both
    sides of its thresholds (quadratic and linear parts)."""
    keys = set().union(*(c["loss"] for c in META["cases"]))
    assert {"start_pref_ae", "start_pref_pf", "relative_f", "enable_atom_ener_coeff",
            "intensive_ener_virial", "use_huber", "f_use_norm", "use_default_pf", "loss_func"} <= keys
    # the MAE cases show DeePMD-kit's mae_* figures (every term's) and not its rmse_* ones
    shown = {name.split("_shown_")[1] for name in REF.files if "_shown_" in name}
    assert {"mae_e", "mae_f", "mae_v", "mae_ae", "mae_pf"} <= shown
    k = [c["name"] for c in META["cases"]].index("huber")
    _, a = _case(k)
    df = np.abs(a["pred_force"] - a["label_force"])
    delta_f = META["cases"][k]["loss"]["huber_delta"][1]
    assert (df < delta_f).any() and (df > delta_f).any()
    # a term whose labels are missing contributes nothing: DeePMD-kit's loss of that case is
    # the energy and force terms alone
    k = [c["name"] for c in META["cases"]].index("missing_ae_pref")
    _, a = _case(k)
    assert np.all(a["grad_atom_energy"] == 0.0)


def _frame_case(seed=0):
    params = random_params(ntypes=2, sel=[24, 24], neuron=(4, 8), axis_neuron=2, type_one_side=False,
                           resnet_dt=True, fitting=(8, 8), rcut=4.0, rcut_smth=1.0, seed=seed)
    pos, types, box = random_config(14, 2, box_len=6.0, tilt=0.3, seed=seed + 1)
    d = params.descriptor
    ext = extend(pos, types, box, d.rcut)
    nl = build_nlist(ext, d.rcut, d.sel, d.ntypes)
    return params, Frame(ext.positions, nl.nlist, types, ext.mapping)


LOSSES = {
    "ae_pf_relative_coeff_intensive": {
        "start_pref_e": 0.7, "limit_pref_e": 0.7, "start_pref_f": 2.0, "limit_pref_f": 2.0,
        "start_pref_v": 0.3, "limit_pref_v": 0.3, "start_pref_ae": 1.5, "limit_pref_ae": 1.5,
        "start_pref_pf": 3.0, "limit_pref_pf": 3.0, "relative_f": 0.5, "enable_atom_ener_coeff": True,
        "intensive_ener_virial": True},
    "huber_f_use_norm": {
        "start_pref_e": 0.7, "limit_pref_e": 0.7, "start_pref_f": 2.0, "limit_pref_f": 2.0,
        "start_pref_v": 0.3, "limit_pref_v": 0.3, "start_pref_ae": 1.5, "limit_pref_ae": 1.5,
        "use_huber": True, "f_use_norm": True, "huber_delta": [0.02, 0.3, 0.05]},
    "mae_ae_pf_relative_coeff": {
        "start_pref_e": 0.7, "limit_pref_e": 0.7, "start_pref_f": 2.0, "limit_pref_f": 2.0,
        "start_pref_v": 0.3, "limit_pref_v": 0.3, "start_pref_ae": 1.5, "limit_pref_ae": 1.5,
        "start_pref_pf": 3.0, "limit_pref_pf": 3.0, "relative_f": 0.5, "enable_atom_ener_coeff": True,
        "loss_func": "mae"},
    "mae_f_use_norm_pf": {
        "start_pref_e": 0.7, "limit_pref_e": 0.7, "start_pref_f": 2.0, "limit_pref_f": 2.0,
        "start_pref_v": 0.3, "limit_pref_v": 0.3, "start_pref_ae": 1.5, "limit_pref_ae": 1.5,
        "start_pref_pf": 3.0, "limit_pref_pf": 3.0, "f_use_norm": True, "loss_func": "mae"},
}


@pytest.mark.parametrize("name", LOSSES)
def test_gradient_with_new_terms_matches_finite_differences(name):
    params, frame = _frame_case()
    flat = FlatParams.bind(params)
    passes = ModelPasses(params, flat, nthreads=2)
    oc = _config(LOSSES[name])
    pref = oc.prefactors().at(1.0, 1.0)
    rng = np.random.default_rng(5)
    res = passes.primal(frame)
    n = frame.nloc
    labels = Labels(res.energy + 0.4, res.forces + rng.normal(0, 0.5, (n, 3)),
                    res.virial + rng.normal(0, 0.5, (3, 3)), res.atom_energy + rng.normal(0, 0.1, n),
                    rng.uniform(0.2, 3.0, n), rng.choice([-1.0, 0.5, 2.0], n))

    def loss_at(theta, grad=False):
        flat.theta[:] = theta
        st = LossStats(oc.options)
        seeds = st.add_frame(passes.primal(frame), labels, pref, 1)
        if grad:
            passes.zero_grad()
            passes.gradient(seeds.c_e, seeds.u, seeds.eps, seeds.c_f, seeds.c_v)
        return st.loss_sum, seeds

    theta0 = flat.theta.copy()
    L0, seeds = loss_at(theta0, grad=True)
    g = passes.total_grad()
    assert isinstance(seeds.c_e, np.ndarray)   # the per-atom energy seed is exercised
    # one directional derivative per parameter array, and one over all of θ.
    # Central differences D(h) = g·v + T h² + R, |R| ≤ ε L / h with ε = order_bound(U64, 2000)
    # the loss's rounding (chains of ≤ nloc·nnei + fitting terms < 2000); T from D(h) and D(2h):
    # D(2h) − D(h) = 3 T h² + (≤ 2 R), so |T h²| ≤ (|D(2h) − D(h)| + 2 |R|) / 3.
    eps = order_bound(U64, 2000)
    for nm, a, b in [*flat.names, ("all", 0, theta0.size)]:
        v = np.zeros_like(theta0)
        v[a:b] = rng.normal(size=b - a)
        h = 1e-4 / np.linalg.norm(v)

        def D(step):
            return (loss_at(theta0 + step * v)[0] - loss_at(theta0 - step * v)[0]) / (2 * step)

        d1, d2 = D(h), D(2 * h)
        R = eps * L0 / h
        tol = R + (abs(d2 - d1) + 2 * R) / 3
        gv = float(g @ v)
        assert abs(d1 - gv) <= tol, (nm, d1, gv, tol)
    # sharp enough to see a term left out of the gradient: without the atomic-energy term's
    # seed, the derivative along v is off by far more than the tolerance
    assert tol <= 1e-3 * abs(gv), (tol, gv)
    flat.theta[:] = theta0
    st = LossStats(oc.options)
    wrong = st.add_frame(passes.primal(frame), dataclasses.replace(labels, atom_ener=None), pref, 1)
    passes.zero_grad()
    passes.gradient(wrong.c_e, wrong.u, wrong.eps, wrong.c_f, wrong.c_v)
    assert abs(float(passes.total_grad() @ v) - gv) > 10 * tol
    passes.close()


# ---------------------------------------------------------------- a run, and bad input

def _write(root, teacher, natoms, nframes, seed, atom_pref_shape=None):
    model = DPModel(teacher, nthreads=1)
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    rows = {k: [] for k in ("coord", "box", "energy", "force", "atom_ener")}
    for f in range(nframes):
        pos, types, box = random_config(natoms, 2, box_len=6.0, tilt=0.2, seed=seed + f)
        r = model.evaluate(pos, types, box, atom_virial=False)
        rows["coord"].append(pos.ravel())
        rows["box"].append(box.ravel())
        rows["energy"].append(r.energy)
        rows["force"].append(r.forces.ravel())
        rows["atom_ener"].append(r.atom_energies + rng.normal(0, 0.05, natoms))
    (root / "type.raw").write_text(" ".join(str(t) for t in types))
    (root / "type_map.raw").write_text("A B")
    s = root / "set.000"
    s.mkdir()
    for k, v in rows.items():
        np.save(s / f"{k}.npy", np.array(v))
    np.save(s / "atom_pref.npy", rng.uniform(0.5, 2.0, atom_pref_shape or (nframes, natoms)))
    return root


INPUT = {
    "model": {"type_map": ["A", "B"],
              "descriptor": {"type": "se_e2_a", "sel": [30, 30], "rcut": 4.0, "rcut_smth": 1.0,
                             "neuron": [4, 8], "axis_neuron": 2, "seed": 3},
              "fitting_net": {"neuron": [8, 8], "seed": 4}},
    "learning_rate": {"type": "exp", "start_lr": 5e-3, "stop_lr": 1e-4, "decay_steps": 2},
    "loss": {"type": "ener", "start_pref_e": 0.2, "limit_pref_e": 1, "start_pref_f": 100, "limit_pref_f": 1,
             "start_pref_ae": 2.0, "limit_pref_ae": 1.0, "start_pref_pf": 5.0, "limit_pref_pf": 1.0,
             "relative_f": 0.5},
    "training": {"training_data": {"systems": ["data"], "batch_size": 4},
                 "numb_steps": 2, "seed": 11, "disp_freq": 1, "save_freq": 10,
                 "disp_file": "lcurve.out", "save_ckpt": "model.ckpt"},
}


@pytest.fixture(scope="module")
def teacher():
    return random_params(ntypes=2, sel=[30, 30], neuron=(4, 8), axis_neuron=2, fitting=(8, 8),
                         rcut=4.0, rcut_smth=1.0, seed=42)


@pytest.mark.parametrize("loss_func", ["mse", "mae"])
def test_run_with_the_new_keys_writes_deepmd_kits_columns(tmp_path, teacher, monkeypatch, loss_func):
    """input.json with pref_ae, pref_pf and relative_f: lcurve.out has DeePMD-kit's columns
    (sorted keys: rmse_* with "mse", mae_* then rmse with "mae"), and the training columns of
    its first row (row 1: step 0's batch = all 4 frames, before the update) are the initial
    model's loss and errors computed here from the formulas of the module docstring."""
    data = _write(tmp_path / "data", teacher, 8, 4, 7)
    (tmp_path / "input.json").write_text(json.dumps({**INPUT, "loss": {**INPUT["loss"], "loss_func": loss_func}}))
    monkeypatch.chdir(tmp_path)
    trainer = Trainer(load_config(tmp_path / "input.json"), nthreads=1, stream=io.StringIO())
    try:
        s = trainer.train_sys[0]
        res = trainer.passes.frames([trainer.train_cache.frame(0, f) for f in range(4)])
        pref = trainer.prefactors(0)[1]
        history = trainer.run()
    finally:
        trainer.close()
    header = (tmp_path / "lcurve.out").read_text().splitlines()[0].split()[1:]
    sysd = load_system(data)
    n = s.natoms
    dae = np.array([r.atom_energy for r in res]) - sysd.atom_ener
    Fl = sysd.forces
    rel = (np.array([r.forces for r in res]) - Fl) / (np.linalg.norm(Fl, axis=2, keepdims=True) + 0.5)
    w = sysd.atom_pref[:, :, None]
    de = np.array([r.energy for r in res]) - sysd.energy
    if loss_func == "mse":
        assert header == ["step", "rmse_trn", "rmse_ae_trn", "rmse_e_trn", "rmse_f_trn", "rmse_pf_trn", "lr"]
        loss = (pref.e * np.mean(de ** 2) / n + pref.f * np.mean(rel ** 2) + pref.ae * np.mean(dae ** 2)
                + pref.pf * np.mean(w * rel ** 2))
        want = [np.sqrt(loss), np.sqrt(np.mean(dae ** 2)), np.sqrt(np.mean((de / n) ** 2)),
                np.sqrt(np.mean(rel ** 2)), np.sqrt(np.mean(w * rel ** 2))]
    else:
        assert header == ["step", "mae_ae_trn", "mae_e_trn", "mae_f_trn", "mae_pf_trn", "rmse_trn", "lr"]
        loss = (pref.e * np.mean(np.abs(de)) / n + pref.f * np.mean(np.abs(rel)) + pref.ae * np.mean(np.abs(dae))
                + pref.pf * np.mean(w * np.abs(rel)))
        want = [np.mean(np.abs(dae)), np.mean(np.abs(de / n)), np.mean(np.abs(rel)),
                np.mean(w * np.abs(rel)), np.sqrt(loss)]
    row = history.rows[1]   # training columns only (no validation data)
    # lcurve's rows hold the values themselves (History); sums of < 100 terms each
    assert np.allclose(row[:5], want, rtol=order_bound(U64, 100), atol=0), (row, want)
    assert pref.ae > 0 and pref.pf > 0 and np.isfinite(history.rows[2]).all()


@pytest.mark.parametrize("edit, message", [
    (lambda d: np.save(d / "set.000" / "atom_pref.npy", np.ones((4, 24))),
     r"atom_pref.npy: shape \(4, 24\) does not match 4 frames of 8 atoms \(expected \(4, 8\)\)"),
    (lambda d: np.save(d / "set.000" / "atom_ener.npy", np.ones(4)),
     r"atom_ener.npy: shape \(4,\) does not match 4 frames of 8 atoms \(expected \(4, 8\)\)"),
    (lambda d: np.save(d / "set.000" / "atom_ener_coeff.npy", np.ones((3, 8))),
     r"atom_ener_coeff.npy: shape \(3, 8\) does not match 4 frames"),
])
def test_bad_label_files_stop_with_one_line(tmp_path, teacher, edit, message):
    data = _write(tmp_path / "data", teacher, 8, 4, 7)
    edit(data)
    with pytest.raises(InputError, match=message) as err:
        load_system(data)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("keys, message", [
    ({"huber_delta": [0.1, 0.2]}, r"\[loss\] huber_delta: expected a number > 0 or a list of three"),
    ({"huber_delta": -1.0}, r"\[loss\] huber_delta: expected a number > 0"),
    ({"f_use_norm": True}, r"\[loss\] f_use_norm: needs use_huber = true or loss_func = \"mae\""),
    ({"loss_func": "mae", "use_huber": True}, r"\[loss\] use_huber: not with loss_func = \"mae\""),
    ({"loss_func": "l1"}, r"\[loss\] loss_func: "),
    ({"use_huber": True, "start_pref_pf": 1.0, "limit_pref_pf": 1.0}, r"\[loss\] start_pref_pf: not with use_huber"),
    ({"start_pref_h": 1.0}, r"\[loss\] start_pref_h: the Hessian loss term is not supported by numdp"),
    ({"numb_generalized_coord": 2}, r"\[loss\] numb_generalized_coord: the generalized-force loss term"),
    ({"relative_f": 0.0}, r"\[loss\] relative_f: must be > 0"),
    ({"start_pref_e": 0, "start_pref_f": 0, "start_pref_ae": 1.0}, r"\[loss\]: every term is off"),
    ({"use_default_pf": 1}, r"\[loss\] use_default_pf: expected true or false"),
])
def test_bad_loss_keys_stop_with_one_line(keys, message):
    with pytest.raises(InputError, match=message) as err:
        _config(keys)
    assert "\n" not in str(err.value)


def test_keys_and_defaults_read_as_deepmd_kit():
    oc = _config({"start_pref_ae": 2, "limit_pref_ae": 1, "huber_delta": 0.2, "use_huber": True,
                  "enable_atom_ener_coeff": True, "start_pref_gf": 0, "start_pref_h": 0.0})
    o = oc.options
    assert (oc.start_pref_ae, oc.limit_pref_ae, oc.start_pref_pf, oc.limit_pref_pf) == (2.0, 1.0, 0.0, 0.0)
    assert o.huber is not None and (o.huber.e, o.huber.f, o.huber.v) == (0.2, 0.2, 0.2)
    assert o.atom_ener_coeff and not o.intensive and o.relative_f is None and not o.use_default_pf
    p = oc.prefactors()
    assert p.has_ae and not p.has_pf
    assert p.at(0.25, 1.0).ae == pytest.approx(1.0 + (2.0 - 1.0) * 0.25, rel=U64 * 4)
    assert _config({}).options.huber is None


def test_per_atom_labels_read_from_npy_and_hdf5(tmp_path, teacher):
    """atom_ener / atom_pref / atom_ener_coeff are read per set and concatenated, from an npy
    folder and from the same system as an HDF5 group; a set lacking one that another has is
    refused (a label is in every set or in none)."""
    import h5py

    from test_h5_system import write_h5_system

    data = _write(tmp_path / "npy", teacher, 8, 4, 7)
    coeff = np.arange(32.0).reshape(4, 8)
    np.save(data / "set.000" / "atom_ener_coeff.npy", coeff)
    with h5py.File(tmp_path / "d.h5", "w") as h5:
        write_h5_system(h5, "sys", data)
    a, b = load_system(data), load_system(f"{tmp_path / 'd.h5'}#/sys")
    assert np.array_equal(a.atom_ener_coeff, coeff) and a.atom_pref.shape == (4, 8)
    for name in ("atom_ener", "atom_pref", "atom_ener_coeff"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    s1 = data / "set.001"
    s1.mkdir()
    for f in (data / "set.000").glob("*.npy"):
        if f.name != "atom_pref.npy":
            np.save(s1 / f.name, np.load(f))
    with pytest.raises(InputError, match=r"set.001/atom_pref.npy: missing, but set.000 has it"):
        load_system(data)
