"""Training models with atomic parameters (DeePMD-kit's fitting `numb_aparam`): atom i's fitting
input is [D_i, f̂, â_i] with â_i = (a_i - aparam_avg) * aparam_inv_std.  The passes' loss gradient
against central differences of the loss of numdp's evaluator (numdp.model.dp_model.DPModel, which
adds the per-atom rows its own way, `aparam_delta`); each atom's parameters reach that atom's
energy only; a run with aparam.npy whose model file evaluates like the passes, carries the data's
statistics, restarts on the same curve and freezes to the same model; missing or mis-sized
aparam.npy named in one line; DeePMD-kit's example input_aparam.json read (as published and as
`dp train` normalises it) and trained."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

import numdp
from numdp.errors import InputError
from numdp.model.dp_model import DPModel
from numdp.train.config import load_config
from numdp.train.flat import FlatParams
from numdp.train.loop import Trainer
from numdp.train.loss import LossStats, Prefactors
from numdp.train.passes import ModelPasses, PrimalResult
from randmodel import random_config, random_params
from test_train_grad import HYPER, _ids, _loss_and_grad, labels_for, make_case
from test_train_run import INPUT, assert_model_is_the_passes, read_lcurve, run, run_keeping, write_system

INPUTS = Path(__file__).resolve().parent / "data" / "deepmd_kit_inputs"


def aparam_case(hyper, nfp, nap, seed=0):
    """make_case's periodic model and frame with nfp frame and nap atomic parameters (random
    statistics, normal(0, 2) values for each atom): (params, frame, positions, types, box)."""
    params, frame, _, _ = make_case(*hyper, True, seed=seed, numb_fparam=nfp + nap)
    f = params.fitting   # the random model's nfp + nap input rows: the last nap become atomic
    avg, inv_std = f.fparam_avg, f.fparam_inv_std
    f.fparam_avg, f.fparam_inv_std = (avg[:nfp], inv_std[:nfp]) if nfp else (None, None)
    f.aparam_avg, f.aparam_inv_std = avg[nfp:], inv_std[nfp:]
    params.validate()
    assert (f.numb_fparam, f.numb_aparam) == (nfp, nap)
    frame.fparam = frame.fparam[:nfp] if nfp else None
    frame.aparam = np.random.default_rng(seed + 3).normal(0.0, 2.0, (frame.nloc, nap))
    pos, types, box = random_config(hyper[5], hyper[0], box_len=6.0, tilt=0.3, seed=seed + 1)
    assert np.array_equal(types, frame.types) and not np.all(np.diff(types) >= 0)  # not type-sorted
    return params, frame, pos, types, box


def reference(params, frame, pos, types, box) -> PrimalResult:
    """The frame by numdp's evaluator (a new DPModel: it copies the networks it folds)."""
    r = DPModel(params, nthreads=1).evaluate(pos, types, box, atom_virial=False, fparam=frame.fparam,
                                             aparam=frame.aparam)
    return PrimalResult(r.energy, r.forces, r.virial, r.atom_energies)


@pytest.mark.parametrize("nfp, nap", [(0, 2), (1, 2)], ids=["aparam", "fparam+aparam"])
@pytest.mark.parametrize("hyper", [HYPER[0], HYPER[1]], ids=_ids)
def test_gradient_against_the_evaluator(hyper, nfp, nap):
    """The passes' primal equals the evaluator's; their loss gradient equals central differences
    of the loss of the evaluator's energy, forces and virial, for a few entries of every array and
    for every weight row of the atomic parameters (the passes' input columns of â, each atom's
    own row, and their weights' adjoint; a zero tangent)."""
    params, frame, *config = aparam_case(hyper, nfp, nap)
    flat = FlatParams.bind(params)
    passes = ModelPasses(params, flat, nthreads=2)
    res, ref = passes.primal(frame), reference(params, frame, *config)
    assert np.allclose(res.atom_energy, ref.atom_energy, rtol=0, atol=1e-12 * abs(ref.atom_energy).max())
    assert np.allclose(res.forces, ref.forces, rtol=0, atol=1e-12 * abs(ref.forces).max())
    assert np.allclose(res.virial, ref.virial, rtol=0, atol=1e-12 * abs(ref.virial).max())
    rng = np.random.default_rng(7)
    labels = labels_for(res, rng, True)
    pref = Prefactors(e=0.7, f=2.0, v=0.3)
    theta0 = flat.theta.copy()
    _, g = _loss_and_grad(passes, flat, frame, labels, pref)
    passes.close()
    gscale = np.abs(g).max()

    def loss_at(theta):
        flat.theta[:] = theta
        st = LossStats()
        st.add_frame(reference(params, frame, *config), labels, pref, 1)
        return st.loss_sum

    def check(k, h=1e-6):
        tp, tm = theta0.copy(), theta0.copy()
        tp[k] += h
        tm[k] -= h
        fd = (loss_at(tp) - loss_at(tm)) / (2 * h)
        assert abs(fd - g[k]) <= 1e-6 * gscale + 1e-5 * abs(fd), (k, fd, g[k])

    rows = params.descriptor.dim_out + nfp
    for name, a, b in flat.names:
        for k in rng.choice(np.arange(a, b), size=min(2, b - a), replace=False):
            check(k)
        if name.startswith("fitting[") and name.endswith(".layer[0].w"):
            n_out = params.fitting.nets[0].layers[0].n_out
            ks = a + np.arange(rows * n_out, b - a)   # the rows of â (row-major)
            assert np.abs(g[ks]).min() > 0
            for k in rng.choice(ks, size=4, replace=False):
                check(k)
    v = rng.normal(size=theta0.shape)   # one directional derivative over all parameters at once
    h = 1e-6 / np.sqrt(v.size)
    fd = (loss_at(theta0 + h * v) - loss_at(theta0 - h * v)) / (2 * h)
    assert abs(fd - g @ v) <= 1e-6 * abs(g @ v) + 1e-8 * np.abs(g).sum(), (fd, g @ v)


def test_each_atom_gets_its_own_parameters():
    """Changing atom j's parameters changes atom j's energy and no other (the passes take the
    rows through their type-sorted atom order), by the evaluator's amount."""
    params, frame, *config = aparam_case(HYPER[1], 0, 2)
    passes = ModelPasses(params, FlatParams.bind(params), nthreads=2)
    e0 = passes.primal(frame).atom_energy.copy()
    for j in (1, 6, int(np.flatnonzero(frame.types == 1)[-1])):
        frame.aparam[j] += 0.5
        e1 = passes.primal(frame).atom_energy.copy()
        others = np.arange(frame.nloc) != j
        assert abs(e1[j] - e0[j]) > 1e-6 and np.array_equal(e1[others], e0[others])
        assert e1[j] == pytest.approx(reference(params, frame, *config).atom_energy[j], rel=1e-12)
        frame.aparam[j] -= 0.5
    passes.close()


def write_aparam(system, rng, nap, natoms):
    """A random aparam.npy (nframes, natoms * nap) in `system`'s set.000."""
    nframes = np.load(system / "set.000" / "coord.npy").shape[0]
    np.save(system / "set.000" / "aparam.npy", rng.normal(1.0, 0.5, (nframes, natoms * nap)))


def test_train_freeze_restart_with_atomic_parameters(tmp_path):
    """numb_fparam 1 and numb_aparam 2 with fparam.npy and aparam.npy: the run learns; the model
    file carries the atomic parameters' statistics over every atom of the statistics frames and
    evaluates with each atom's parameters like the trainer's passes; a restart continues the same
    curve; numdp freeze gives the same model; --init-model compares numb_aparam."""
    from numdp.io.model_file import read_model
    from numdp.train.freeze import model_from_checkpoint
    from numdp.train.init_model import load_init_model

    teacher = random_params(ntypes=2, sel=[30, 30], neuron=(4, 8), axis_neuron=2, fitting=(8, 8),
                            rcut=4.0, rcut_smth=1.0, seed=43, numb_fparam=1)
    rng = np.random.default_rng(5)
    work = tmp_path / "run"
    for name, nframes, seed in (("train", 8, 500), ("valid", 4, 600)):
        write_system(work / "data" / name, teacher, 12, nframes, True, seed,
                     fparam=rng.normal(1.0, 0.5, (nframes, 1)))
        write_aparam(work / "data" / name, rng, 2, 12)
    path = work / "input.toml"
    path.write_text(INPUT.format(steps=12, tos="true").replace(
        "seed = 4\n", "seed = 4\nnumb_fparam = 1\nnumb_aparam = 2\n"))
    trainer, history, ck5 = run_keeping(path, 5)
    _, rows = read_lcurve(work / "lcurve.out")
    assert rows[-1, 2] < rows[0, 2]
    p = read_model(work / "model.h5")
    f = p.fitting
    assert (f.numb_fparam, f.numb_aparam) == (1, 2)
    assert f.nets[0].layers[0].w.shape[0] == p.descriptor.dim_out + 3
    frames = trainer._statistics_frames()
    stat = np.concatenate([s.aparam[idx].reshape(-1, 2) for s, idx in zip(trainer.train_sys, frames)])
    assert stat.shape[0] == 12 * sum(len(idx) for idx in frames)
    assert np.allclose(f.aparam_avg, stat.mean(axis=0), rtol=1e-14)
    assert np.allclose(1.0 / f.aparam_inv_std, stat.std(axis=0), rtol=1e-12)
    model = numdp.load_model(work / "model.h5", nthreads=1)
    assert_model_is_the_passes(model, trainer)
    frozen = model_from_checkpoint(work / "model.ckpt.h5")
    assert np.array_equal(frozen.fitting.aparam_avg, f.aparam_avg)
    assert np.array_equal(frozen.fitting.aparam_inv_std, f.aparam_inv_std)
    assert np.array_equal(frozen.fitting.nets[1].layers[0].w, f.nets[1].layers[0].w)
    full_theta = trainer.flat.theta.copy()
    trainer2, history2 = run(path, restart=ck5)
    assert np.allclose(trainer2.flat.theta, full_theta, rtol=1e-12, atol=1e-14)
    assert np.array_equal(trainer2.params.fitting.aparam_avg, f.aparam_avg)
    for step in history2.rows:
        assert np.allclose(history2.rows[step], history.rows[step], rtol=1e-10)
    assert load_init_model(work / "model.h5", load_config(path)).fitting.numb_aparam == 2
    path.write_text(path.read_text().replace("numb_aparam = 2\n", "numb_aparam = 1\n"))
    with pytest.raises(InputError, match=r"model.h5: --init-model: \[model.fitting\] numb_aparam: the model "
                                         r"has 2, input.toml has 1; the networks must match$"):
        load_init_model(work / "model.h5", load_config(path))


def test_aparam_npy_missing_or_of_another_width(tmp_path):
    """A training or validation system without aparam.npy, or with another number of parameters
    per atom, stops the run before anything else in one line naming the system and numb_aparam."""
    teacher = random_params(ntypes=2, sel=[30, 30], neuron=(4, 8), axis_neuron=2, fitting=(8, 8),
                            rcut=4.0, rcut_smth=1.0, seed=42)
    work = tmp_path / "run"
    rng = np.random.default_rng(1)
    write_system(work / "data" / "train", teacher, 9, 3, True, 10)
    write_system(work / "data" / "valid", teacher, 9, 2, True, 20)
    write_aparam(work / "data" / "train", rng, 1, 9)
    path = work / "input.toml"
    path.write_text(INPUT.format(steps=2, tos="true").replace("seed = 4\n", "seed = 4\nnumb_aparam = 1\n"))
    cfg = load_config(path)
    assert cfg.fitting.numb_aparam == 1
    valid = re.escape(str(work / "data" / "valid"))
    with pytest.raises(InputError, match=rf"^{valid}: the input takes 1 atomic parameter\(s\) per atom "
                                         r"\(numb_aparam\); the system has no aparam.npy$"):
        Trainer(cfg, nthreads=1)
    write_aparam(work / "data" / "valid", rng, 2, 9)
    with pytest.raises(InputError, match=rf"^{valid}: aparam.npy has 2 parameter\(s\) per atom, the input "
                                         r"takes 1 \(numb_aparam\)$"):
        Trainer(load_config(path), nthreads=1)


def test_numb_aparam_keys(tmp_path):
    """numb_aparam is an integer >= 0 ([model.fitting]); use_aparam_as_mask false is accepted
    and true refused in one line naming the key, in TOML and in DeePMD-kit's input.json."""
    data = Path(__file__).resolve().parents[1] / "inputs" / "water" / "data" / "data_0"
    tree = {"model": {"type_map": ["O", "H"], "descriptor": {"type": "se_e2_a", "sel": [8, 16]},
                      "fitting_net": {"neuron": [10, 10], "numb_aparam": 3, "use_aparam_as_mask": False}},
            "learning_rate": {"start_lr": 1e-3}, "loss": {},
            "training": {"training_data": {"systems": [str(data)]}, "numb_steps": 1}}
    path = tmp_path / "input.json"
    path.write_text(json.dumps(tree))
    assert load_config(path).fitting.numb_aparam == 3
    tree["model"]["fitting_net"]["use_aparam_as_mask"] = True
    path.write_text(json.dumps(tree))
    with pytest.raises(InputError, match=r"^input.json: \[model.fitting_net\] use_aparam_as_mask: true .* "
                                         r"not supported; numdp feeds them to the fitting nets \(false\)$"):
        load_config(path)
    toml = tmp_path / "input.toml"
    for line, message in (("numb_aparam = -1", r"numb_aparam: "),
                          ("numb_aparam = 1.5", r"numb_aparam: expected an integer"),
                          ("use_aparam_as_mask = true", r"use_aparam_as_mask: true .* not supported")):
        toml.write_text(f'[model]\ntype_map = ["O", "H"]\n[model.descriptor]\nsel = [8, 16]\n'
                        f'[model.fitting]\n{line}\n[training]\nsystems = ["{data}"]\nnumb_steps = 1\n')
        with pytest.raises(InputError, match=r"^input.toml: \[model.fitting\] " + message):
            load_config(toml)


def test_deepmd_kit_aparam_example(tmp_path, monkeypatch):
    """DeePMD-kit's own example input examples/fparam/train/input_aparam.json (Be, numb_aparam 1;
    tests/data/deepmd_kit_inputs): it gives no type_map, which numdp needs (as DeePMD-kit's
    PyTorch backend does: its data loader takes model.type_map) and names in one line; with the
    type_map of its sibling input.json (["Be"]) it reads as published and as DeePMD-kit
    normalises it (aparam.out.json: the same TrainConfig; numb_aparam 1, the example's networks)
    and trains (run shortened to 3 steps) on systems laid out as the
    example's, each atom with its own parameter; the model file holds their statistics."""
    from numdp.cli import main
    from numdp.io.model_file import read_model

    raw = json.loads((INPUTS / "aparam.json").read_text())
    full = json.loads((INPUTS / "aparam.out.json").read_text())
    teacher = random_params(ntypes=1, sel=[60], neuron=(4, 8), axis_neuron=2, fitting=(8, 8), rcut=6.0,
                            rcut_smth=1.8, seed=9)
    teacher.type_map = ["Be"]
    rng = np.random.default_rng(3)
    per_atom = rng.normal(1.0, 0.5, (2, 8))   # each system's atoms' parameters, in both of its frames
    for k, name in enumerate(("e3000_i2000", "e8000_i2000")):
        write_system(tmp_path / "data" / name, teacher, 8, 2, True, 70 + 10 * k, ntypes=1)
        np.save(tmp_path / "data" / name / "set.000" / "aparam.npy", np.tile(per_atom[k], (2, 1)))
    work = tmp_path / "train"
    work.mkdir()
    monkeypatch.chdir(work)
    raw["training"]["stop_batch"] = 3
    (work / "input.json").write_text(json.dumps(raw))
    with pytest.raises(InputError, match=r"^input.json: \[model\] type_map: required key is missing$"):
        load_config("input.json")
    raw["model"]["type_map"] = full["model"]["type_map"] = ["Be"]
    full["training"]["numb_steps"] = 3
    (work / "input.json").write_text(json.dumps(raw))
    (work / "out.json").write_text(json.dumps(full))
    cfg, normalised = load_config("input.json"), load_config("out.json")
    normalised.text, normalised.source = cfg.text, cfg.source
    assert cfg == normalised
    assert (cfg.fitting.numb_aparam, cfg.fitting.numb_fparam, cfg.fitting.neuron) == (1, 0, [120, 120, 120])
    assert (cfg.descriptor.neuron, cfg.descriptor.sel, cfg.training.numb_steps) == ([25, 50, 100], [60], 3)
    assert main(["train", "input.json"]) == 0
    f = read_model(work / "model.h5").fitting   # (statistics frames: one per system, any gives per_atom)
    assert f.aparam_avg[0] == pytest.approx(per_atom.mean(), rel=1e-12)
    assert 1.0 / f.aparam_inv_std[0] == pytest.approx(per_atom.std(), rel=1e-9)


def test_data_stat_protect_bounds_the_parameters_std(tmp_path):
    """[model] data_stat_protect (DeePMD-kit's, 0.01 by default; input.json's model key): the
    least standard deviation the statistics give a frame parameter: a column that varies less
    takes it, one that varies more keeps its own."""
    import io

    teacher = random_params(ntypes=2, sel=[30, 30], neuron=(4, 8), axis_neuron=2, fitting=(8, 8),
                            rcut=4.0, rcut_smth=1.0, seed=43, numb_fparam=2)
    rng = np.random.default_rng(6)
    work = tmp_path / "run"
    for name, nframes, seed in (("train", 8, 500), ("valid", 4, 600)):
        fp = np.column_stack([rng.normal(1.0, 0.05, nframes), rng.normal(0.0, 2.0, nframes)])
        write_system(work / "data" / name, teacher, 12, nframes, True, seed, fparam=fp)
    path = work / "input.toml"
    text = INPUT.format(steps=2, tos="true").replace("seed = 4\n", "seed = 4\nnumb_fparam = 2\n")
    for protect in (None, 0.3):
        path.write_text(text if protect is None else
                        text.replace('type_map = ["A", "B"]\n', f'type_map = ["A", "B"]\ndata_stat_protect = {protect}\n'))
        trainer = Trainer(load_config(path), nthreads=1, stream=io.StringIO())
        try:
            frames = trainer._statistics_frames()
            rows = np.concatenate([s.fparam[idx] for s, idx in zip(trainer.train_sys, frames)])
            std = rows.std(axis=0)
            assert std[0] < 0.3 < std[1] and std[0] > 0.01
            want = 1.0 / np.maximum(std, 0.01 if protect is None else protect)
            np.testing.assert_allclose(trainer.params.fitting.fparam_inv_std, want, rtol=1e-12)
        finally:
            trainer.close()
    tree = {"model": {"type_map": ["A", "B"], "data_stat_protect": 0.05,
                      "descriptor": {"type": "se_e2_a", "sel": [30, 30]}, "fitting_net": {"numb_fparam": 2}},
            "training": {"training_data": {"systems": [str(work / "data" / "train")]}, "numb_steps": 1}}
    (tmp_path / "input.json").write_text(json.dumps(tree))
    assert load_config(tmp_path / "input.json").fitting.data_stat_protect == 0.05
    tree["model"]["data_stat_protect"] = 0
    (tmp_path / "input.json").write_text(json.dumps(tree))
    with pytest.raises(InputError, match=r"^input.json: \[model\] data_stat_protect: must be > 0, got 0$"):
        load_config(tmp_path / "input.json")
