"""End-to-end `numdp train` on tiny synthetic data labelled by a random 'teacher' model:
outputs, learning curve, model file, exact restart from checkpoints and Ctrl-C."""
import dataclasses
import math
import os
import shutil
import signal

import h5py
import numpy as np
import pytest

import numdp
from numdp.cli import main as cli_main
from numdp.model.dp_model import DPModel
from numdp.neighbor import build_nlist, extend
from numdp.train.checkpoint import read_checkpoint, write_checkpoint
from numdp.train.config import load_config
from numdp.train.loop import Trainer, TrainingInterrupted
from numdp.train.passes import Frame
from randmodel import random_config, random_params
from tests_util import U64, order_bound

INPUT = """
[model]
type_map = ["A", "B"]
[model.descriptor]
rcut = 4.0
rcut_smth = 1.0
sel = "auto"
neuron = [4, 8]
axis_neuron = 2
type_one_side = {tos}
resnet_dt = true
seed = 3
[model.fitting]
neuron = [8, 8]
seed = 4
[learning_rate]
start_lr = 5e-3
stop_lr = 1e-4
decay_steps = 4
[loss]
start_pref_e = 0.2
limit_pref_e = 1
start_pref_f = 100
limit_pref_f = 1
start_pref_v = 0.1
limit_pref_v = 1
[training]
systems = ["data/train"]
batch_size = 2
numb_steps = {steps}
seed = 11
disp_freq = 4
save_freq = 5
data_stat_nbatch = 2
[validation]
systems = ["data/valid"]
numb_btch = 2
"""


def write_system(root, teacher, natoms, nframes, periodic, seed, fparam=None, ntypes=2):
    """A system of `nframes` random frames of `ntypes` elements (the teacher's type_map) labelled
    by `teacher`; fparam (nframes, nfp): each frame's parameters for a teacher that takes them
    (written as fparam.npy)."""
    model = DPModel(teacher, nthreads=1)
    root.mkdir(parents=True)
    coords, boxes, energy, forces, virial = [], [], [], [], []
    for f in range(nframes):
        pos, types, box = random_config(natoms, ntypes, box_len=6.0 if periodic else None, tilt=0.2,
                                        seed=seed + f)
        r = model.evaluate(pos, types, box, atom_virial=False, fparam=None if fparam is None else fparam[f])
        coords.append(pos.ravel())
        boxes.append(box.ravel() if periodic else None)
        energy.append(r.energy)
        forces.append(r.forces.ravel())
        virial.append(r.virial.ravel())
    (root / "type.raw").write_text(" ".join(str(t) for t in types))
    (root / "type_map.raw").write_text(" ".join(teacher.type_map))
    s = root / "set.000"
    s.mkdir()
    np.save(s / "coord.npy", np.array(coords))
    np.save(s / "energy.npy", np.array(energy))
    np.save(s / "force.npy", np.array(forces))
    if periodic:
        np.save(s / "box.npy", np.array(boxes))
        np.save(s / "virial.npy", np.array(virial))
    else:
        (root / "nopbc").write_text("")
    if fparam is not None:
        np.save(s / "fparam.npy", np.asarray(fparam))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("traindata")
    teacher = random_params(ntypes=2, sel=[30, 30], neuron=(4, 8), axis_neuron=2, fitting=(8, 8),
                            rcut=4.0, rcut_smth=1.0, seed=42)
    write_system(root / "train" / "pbc", teacher, 12, 8, True, 100)
    write_system(root / "train" / "cluster", teacher, 9, 6, False, 200)
    write_system(root / "valid" / "pbc", teacher, 12, 4, True, 300)
    return root


def make_input(tmp_path, data_dir, steps=12, tos="true"):
    work = tmp_path / "run"
    work.mkdir(exist_ok=True)
    if not (work / "data").exists():
        os.symlink(data_dir, work / "data")
    path = work / "input.toml"
    path.write_text(INPUT.format(steps=steps, tos=tos))
    return path


def run(path, restart=None, on_step=None, stream=None):
    import io

    trainer = Trainer(load_config(path), restart=restart, nthreads=2, on_step=on_step,
                      stream=stream or io.StringIO())
    try:
        history = trainer.run()
    finally:
        trainer.close()
    return trainer, history


def run_keeping(path, step):
    """`run`, keeping a copy of the checkpoint written at `step` (`ckSTEP.h5` beside the input):
    (trainer, history, the copy's path)."""
    copy = path.parent / f"ck{step}.h5"

    def keep(s):
        if s == step:
            shutil.copy(path.parent / "model.ckpt.h5", copy)

    trainer, history = run(path, on_step=keep)
    return trainer, history, copy


def assert_model_is_the_passes(model, trainer):
    """The model file (loaded as `model`) evaluates frame 1 of the first validation system (with
    its frame and atomic parameters, if any) like the trainer's passes: energy, forces and virial
    to the round-off of two summation orders."""
    s = trainer.valid_sys[0]
    fparam = None if s.fparam is None else s.fparam[1]
    aparam = None if s.aparam is None else s.aparam[1]
    r = model.evaluate(s.coords[1], s.types, s.boxes[1], fparam=fparam, aparam=aparam)
    ext = extend(s.coords[1], s.types, s.boxes[1], 4.0)
    nl = build_nlist(ext, 4.0, model.params.descriptor.sel, 2)
    q = trainer.passes.primal(Frame(ext.positions, nl.nlist, s.types, ext.mapping, fparam, aparam))
    assert r.energy == pytest.approx(q.energy, rel=1e-12)
    assert np.allclose(r.forces, q.forces, rtol=0, atol=1e-12 * abs(q.forces).max())
    assert np.allclose(r.virial, q.virial, rtol=0, atol=1e-12 * abs(q.virial).max())


def read_lcurve(path):
    lines = path.read_text().splitlines()
    return lines[0], np.loadtxt(path)


def test_warmup_and_cosine_schedule_in_a_run(tmp_path, data_dir):
    """DeePMD-kit 3.2's schedules drive the run: the schedule is the warmup from 0, then the
    cosine decay from start_lr to stop_lr over the steps left, and lcurve's lr column of row k is
    the rate of the k-th update, lr(k - 1); a zero rate leaves the model as it was (step 0's
    update), and the model learns once the rate is up.  [optimizer] reaches the trainer's Adam."""
    path = make_input(tmp_path, data_dir, steps=12)
    text = path.read_text().replace("decay_steps = 4", 'type = "cosine"\nwarmup_steps = 4')
    path.write_text(text)
    trainer, history = run(path)
    header, rows = read_lcurve(path.parent / "lcurve.out")
    assert rows[:, 0].tolist() == [1, 4, 8, 12]
    sched = trainer.sched
    assert [sched.lr(s) for s in (0, 1, 2, 3, 4)] == [0.0, 1.25e-3, 2.5e-3, 3.75e-3, 5e-3]
    assert sched.lr(8) == pytest.approx(0.5 * (5e-3 + 1e-4), rel=1e-15) and sched.lr(12) == 1e-4
    assert rows[0, -1] == 0.0 and rows[1, -1] == 3.75e-3
    # lcurve prints 7 significant digits (%13.6e)
    assert rows[:, -1] == pytest.approx([sched.lr(k - 1) for k in (1, 4, 8, 12)], rel=1e-6)
    # step 0's update at lr 0 leaves θ as it was, AdamW's decay too (1 - 0·wd); step 1's moves
    # it (on_step(s): after s updates)
    path.write_text(text + '\n[optimizer]\ntype = "AdamW"\nadam_beta1 = 0.8\n')
    thetas = {}
    trainer2 = Trainer(load_config(path), nthreads=1, stream=__import__("io").StringIO(),
                       on_step=lambda s: thetas.setdefault(s, trainer2.flat.theta.copy()))
    theta0 = trainer2.flat.theta.copy()
    try:
        trainer2.run()
    finally:
        trainer2.close()
    assert np.array_equal(thetas[1], theta0) and not np.array_equal(thetas[2], theta0)
    assert (trainer2.adam.beta1, trainer2.adam.weight_decay, trainer2.adam.decoupled) == (0.8, 0.001, True)
    assert rows[-1, 5] < rows[0, 5]   # validation force RMSE


def test_set_davg_zero_and_change_bias_after_training(tmp_path, data_dir):
    """set_davg_zero: davg stays 0, dstd is what it would have been.  change_bias_after_training:
    after the last update the energy bias moves by the least-squares shift of the statistics
    frames' errors, so that those errors are orthogonal to the per-type atom counts (before it
    they are not); model file and checkpoint carry the new bias."""
    import io

    from numdp.io.model_file import read_model
    from numdp.train.checkpoint import read_checkpoint
    from numdp.train.stats import stat_frames

    path = make_input(tmp_path, data_dir, steps=4)
    plain, _ = run(path)
    text = path.read_text()
    path.write_text(text.replace("seed = 3\n", "seed = 3\nset_davg_zero = true\n")
                    .replace("numb_steps = 4", "numb_steps = 4\nchange_bias_after_training = true"))
    out = io.StringIO()
    changed, _ = run(path, stream=out)
    d0, d1 = plain.params.descriptor, changed.params.descriptor
    assert np.all(d1.davg == 0.0) and np.any(d0.davg != 0.0)
    assert np.array_equal(d1.dstd, d0.dstd)
    assert "change_bias_after_training: energy bias" in out.getvalue()
    # the errors over the statistics frames after the change: orthogonal to the count columns
    frames = stat_frames(changed.train_sys, changed.cfg.training.data_stat_nbatch,
                         np.random.default_rng([changed.seed, 3]))
    rows, err = [], []
    for k, (s, idx) in enumerate(zip(changed.train_sys, frames)):
        res = changed.passes.frames([changed.train_cache.frame(k, int(f)) for f in idx])
        for f, r in zip(idx, res):
            rows.append(np.bincount(s.types, minlength=2))
            err.append(s.energy[f] - r.energy)
    rows, err = np.array(rows, float), np.array(err)
    # exactly orthogonal for the exact least squares; here (a) the predictions after the change
    # differ from those of the fit plus A·delta by the bias added per atom and summed again:
    # order_bound(U64, nloc) of |E| per frame, and (b) lstsq's backward error, order_bound(U64,
    # nframes) of |A||E|, |E| counting the residual and A·delta too (x 3)
    energies = np.array([s.energy[f] for s, idx in zip(changed.train_sys, frames) for f in idx])
    norm_e = np.sqrt(len(err)) * np.abs(energies).max()
    nloc = max(s.natoms for s in changed.train_sys)
    bound = (np.linalg.norm(rows, axis=0) * order_bound(U64, nloc)
             + 3 * order_bound(U64, len(err)) * np.linalg.norm(rows)) * norm_e
    assert np.all(np.abs(rows.T @ err) <= bound)
    assert not np.array_equal(changed.params.out_bias, plain.params.out_bias)   # (davg does not move it)
    model = read_model(changed.cfg.training.model_file)
    assert np.array_equal(model.out_bias, changed.params.out_bias)
    assert np.array_equal(read_checkpoint(changed.cfg.training.save_ckpt).out_bias, changed.params.out_bias)


def test_freeze_writes_a_checkpoints_model(tmp_path, data_dir, capsys, monkeypatch):
    """numdp freeze: the final checkpoint's model is the run's model.h5, bit for bit (every
    array), and a mid-run checkpoint (step 5) freezes to θ as it was after update 5; the input
    file and the data are not needed (both moved away)."""
    from numdp.io.model_file import read_model
    from numdp.train.flat import FlatParams
    from test_model_file import assert_params_equal

    path = make_input(tmp_path, data_dir, steps=12)
    work = path.parent
    thetas = {}
    trainer = Trainer(load_config(path), nthreads=1, stream=__import__("io").StringIO(),
                      on_step=lambda s: (thetas.setdefault(s, trainer.flat.theta.copy()),
                                         s == 5 and shutil.copy(work / "model.ckpt.h5", work / "ck5.h5")))
    try:
        trainer.run()
    finally:
        trainer.close()
    (work / "data").unlink()
    path.rename(work / "moved.toml")
    assert cli_main(["freeze", "-c", str(work / "model.ckpt.h5"), "-o", str(work / "frozen.h5")]) == 0
    a, b = read_model(work / "frozen.h5"), read_model(work / "model.h5")
    assert a.info["training_input"] == b.info["training_input"] and a.info["step"] == 12
    a.info = b.info
    assert_params_equal(a, b)
    assert (a.s_range == b.s_range).all() and a.min_nbor_dist == b.min_nbor_dist
    assert cli_main(["freeze", "-c", str(work / "ck5.h5"), "-o", str(work / "frozen5.dp")]) == 0
    assert "step 5 of" in capsys.readouterr().out
    assert np.array_equal(FlatParams.bind(read_model(work / "frozen5.dp")).theta, thetas[5])
    assert cli_main(["freeze", "-c", str(work / "model.ckpt.h5"), "-o", str(work / "frozen.pb")]) == 2
    assert "frozen.pb: cannot choose a model format" in capsys.readouterr().err
    assert cli_main(["freeze", "-c", str(work / "nothing.h5")]) == 2
    # without -c: model.ckpt.h5 (numdp's save_ckpt), else model.ckpt (DeePMD-kit inputs' name)
    monkeypatch.chdir(work)
    (work / "model.ckpt.h5").rename(work / "model.ckpt")
    capsys.readouterr()
    assert cli_main(["freeze", "-o", "f.h5"]) == 0
    assert "step 12 of model.ckpt)" in capsys.readouterr().out
    # -c FOLDER (DeePMD-kit's --checkpoint-folder): the checkpoint in it
    monkeypatch.chdir(tmp_path)
    assert cli_main(["freeze", "--checkpoint-folder", str(work), "-o", "g.h5"]) == 0
    assert f"step 12 of {work / 'model.ckpt'})" in capsys.readouterr().out
    assert cli_main(["freeze", "-c", str(tmp_path)]) == 2
    assert f"no model.ckpt.h5 or model.ckpt in {tmp_path}: name" in capsys.readouterr().err
    monkeypatch.chdir(work)
    (work / "model.ckpt").unlink()
    assert cli_main(["freeze"]) == 2
    assert "no model.ckpt.h5 or model.ckpt here: name the training checkpoint with -c" in capsys.readouterr().err


def test_outputs_and_model_file(tmp_path, data_dir):
    path = make_input(tmp_path, data_dir)
    trainer, history = run(path)
    work = path.parent
    header, rows = read_lcurve(work / "lcurve.out")
    assert header.split() == ["#", "step", "rmse_val", "rmse_trn", "rmse_e_val", "rmse_e_trn",
                              "rmse_f_val", "rmse_f_trn", "rmse_v_val", "rmse_v_trn", "lr"]
    assert rows[:, 0].tolist() == [1, 4, 8, 12]
    assert np.all(np.isfinite(rows))
    assert np.allclose(rows, np.array([[s, *history.rows[s]] for s in (1, 4, 8, 12)]), rtol=1e-6)
    # learning rate column = the schedule's rate of the row's last update; learning happens
    assert rows[0, -1] == 5e-3 and rows[-1, -1] == pytest.approx(5e-3 * 0.02 ** (2 / 3), rel=1e-6)
    assert rows[-1, 2] < rows[0, 2]
    # the model file carries the statistics and evaluates like the trainer
    model = numdp.load_model(work / "model.h5", nthreads=1)
    p = model.params
    assert p.min_nbor_dist == pytest.approx(trainer.params.min_nbor_dist)
    assert p.s_range.shape == (2, 2) and np.all(p.s_range[:, 1] > p.s_range[:, 0])
    assert p.descriptor.sel == trainer.params.descriptor.sel and sum(p.descriptor.sel) % 4 == 0
    assert np.all(p.fitting.bias_atom_e == 0.0) and np.any(p.out_bias != 0.0)
    assert_model_is_the_passes(model, trainer)
    ck = read_checkpoint(work / "model.ckpt.h5")
    assert ck.step == 12 and ck.adam_t == 12
    assert np.array_equal(ck.theta, trainer.flat.theta)
    assert not [f for f in os.listdir(work) if f.endswith(".tmp")]


@pytest.mark.parametrize("tos", ["true", "false"])
def test_restart_continues_the_same_learning_curve(tmp_path, data_dir, tos):
    path = make_input(tmp_path, data_dir, tos=tos)
    work = path.parent
    copies = {}

    def keep(step):
        if step in (5, 10):
            copies[step] = work / f"ck{step}.h5"
            shutil.copy(work / "model.ckpt.h5", copies[step])

    trainer, history = run(path, on_step=keep)
    full_curve = (work / "lcurve.out").read_text()
    full_theta = trainer.flat.theta.copy()
    for step in (5, 10):
        trainer2, history2 = run(path, restart=copies[step])
        assert trainer2.start_step == step
        _, rows_full = read_lcurve_text(full_curve)
        _, rows = read_lcurve(work / "lcurve.out")
        assert rows.shape == rows_full.shape
        assert np.allclose(rows, rows_full, rtol=1e-10, atol=0)
        assert np.allclose(trainer2.flat.theta, full_theta, rtol=1e-12, atol=1e-14)
        for s in history2.rows:
            assert np.allclose(history2.rows[s], history.rows[s], rtol=1e-10)


def read_lcurve_text(text):
    import io

    return text.splitlines()[0], np.loadtxt(io.StringIO(text))


def test_ctrl_c_writes_checkpoint_and_restart_finishes(tmp_path, data_dir):
    path = make_input(tmp_path, data_dir)
    work = path.parent
    # the handler the run must give back: Python's default, or SIG_IGN when the test process
    # was started with SIGINT ignored (a background job of a non-interactive shell)
    handler_before = signal.getsignal(signal.SIGINT)
    _, history = run(path)
    theta_full = read_checkpoint(work / "model.ckpt.h5").theta
    os.unlink(work / "model.ckpt.h5")

    def interrupt(step):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted) as err:
        run(path, on_step=interrupt)
    assert err.value.step == 3
    assert "interrupted after step 3" in str(err.value) and "\n" not in str(err.value)
    ck = read_checkpoint(work / "model.ckpt.h5")
    assert ck.step == 3
    assert signal.getsignal(signal.SIGINT) is handler_before
    trainer, history2 = run(path, restart=work / "model.ckpt.h5")
    assert np.allclose(trainer.flat.theta, theta_full, rtol=1e-12, atol=1e-14)
    assert np.allclose(history2.rows[12], history.rows[12], rtol=1e-10)


def test_cli_train_and_plain_progress_lines(tmp_path, data_dir, capsys):
    path = make_input(tmp_path, data_dir, steps=8)
    assert cli_main(["train", str(path), "--threads", "1"]) == 0
    out = capsys.readouterr().out
    lines = [l for l in out.splitlines() if l.startswith("step ")]
    assert len(lines) == 3 and "ETA" in lines[0] and "\r" not in out   # lcurve's rows 1, 4, 8
    assert [l.split()[1] for l in lines] == ["1/8", "4/8", "8/8"]
    assert "validation over 4 frames" in out
    with h5py.File(path.parent / "model.h5", "r") as h5:
        assert h5.attrs["format"] == "numdp-model"


def test_restart_rejects_other_networks(tmp_path, data_dir):
    path = make_input(tmp_path, data_dir, steps=5)
    run(path)
    path.write_text(INPUT.format(steps=5, tos="true").replace("neuron = [8, 8]", "neuron = [8, 6]"))
    with pytest.raises(numdp.errors.InputError, match="networks differ"):
        run(path, restart=path.parent / "model.ckpt.h5")


def test_restart_refuses_a_checkpoint_of_the_removed_precondition(tmp_path, data_dir):
    """A checkpoint written with `precondition` (θ held W' = s W0, not the model's W0) is refused
    with one line, instead of continuing from the wrong first-layer weights."""
    path = make_input(tmp_path, data_dir, steps=5)
    run(path)
    ck_path = path.parent / "model.ckpt.h5"
    ck = read_checkpoint(ck_path)
    write_checkpoint(dataclasses.replace(ck, step=3, precond_scale=np.array([0.02, 0.03])), ck_path)
    with pytest.raises(numdp.errors.InputError, match="precondition.*no longer support"):
        run(path, restart=ck_path)


def test_initial_model_is_the_energy_bias(tmp_path, data_dir):
    """The output layers start at zero: energies = Σ out_bias, no forces."""
    path = make_input(tmp_path, data_dir, steps=1)
    import io

    trainer = Trainer(load_config(path), nthreads=1, stream=io.StringIO())
    s = trainer.train_sys[0]
    res = trainer.passes.primal(trainer.train_cache.frame(0, 0))
    assert res.energy == pytest.approx(trainer.params.out_bias[s.types].sum(), rel=1e-14)
    assert np.abs(res.forces).max() == 0.0
    trainer.close()


def _first_layer_preactivations(trainer):
    """Per type, z = D W + b of the fitting nets' first layers over the statistics frames' atoms."""
    out = {}
    for t, D in trainer.stat_descriptors().items():
        first = trainer.params.fitting.nets[t].layers[0]
        out[t] = (D, first.w.copy(), first.b.copy())
    return out


@pytest.mark.parametrize("tos", ["true", "false"])
def test_first_layers_start_spread_across_the_statistics_atoms(tmp_path, data_dir, tos):
    """The fitting nets' first-layer pre-activations start with spread `init_spread` (RMS over
    units of the std over atoms) on the statistics frames, the mean atom at the drawn biases;
    init_spread = 0 keeps the draw (W and b as `initial_model` draws them)."""
    import io

    from numdp.train.init import initial_model

    path = make_input(tmp_path, data_dir, steps=1, tos=tos)
    cfg = load_config(path)
    assert cfg.training.init_spread == 0.15
    trainer = Trainer(cfg, nthreads=2, stream=io.StringIO())
    try:
        drawn = initial_model(cfg, trainer.params.descriptor.sel, trainer.params.descriptor.davg,
                              trainer.params.descriptor.dstd, trainer.params.out_bias, cfg.training.seed)
        for t, (D, w, b) in _first_layer_preactivations(trainer).items():
            z = D @ w + b
            # the std's relative round-off is ~16 eps max|z| / 0.15 (16-term sums in double):
            # 1e-12 holds for max|z| up to ~40, z being O(1) here (biases N(0, 1), spread 0.15)
            assert np.sqrt(np.mean(z.std(axis=0) ** 2)) == pytest.approx(0.15, rel=1e-12)
            w0, b0 = drawn.fitting.nets[t].layers[0].w, drawn.fitting.nets[t].layers[0].b
            assert np.allclose(z.mean(axis=0), b0, rtol=0, atol=1e-12)  # mean atom at the drawn bias
            x = w[0, 0] / w0[0, 0]
            assert x > 0.0 and np.allclose(w, x * w0, rtol=1e-14, atol=0)  # a rescaled draw
    finally:
        trainer.close()

    path.write_text(path.read_text().replace("data_stat_nbatch = 2", "data_stat_nbatch = 2\ninit_spread = 0"))
    cfg = load_config(path)
    trainer = Trainer(cfg, nthreads=1, stream=io.StringIO())
    try:
        drawn = initial_model(cfg, trainer.params.descriptor.sel, trainer.params.descriptor.davg,
                              trainer.params.descriptor.dstd, trainer.params.out_bias, cfg.training.seed)
        for a, b in zip(trainer.params.fitting.nets, drawn.fitting.nets):
            assert np.array_equal(a.layers[0].w, b.layers[0].w) and np.array_equal(a.layers[0].b, b.layers[0].b)
    finally:
        trainer.close()


def test_spread_first_layers_skips_absent_types():
    """A type with no atom in the statistics frames keeps its draw; the others get spread/σ."""
    from numdp.train.init import random_net, spread_first_layers

    rng = np.random.default_rng(5)
    nets = [random_net(rng, [6, 4, 1], True, True) for _ in range(2)]
    w1 = nets[1].layers[0].w.copy()
    D = rng.normal(0.3, 0.01, (50, 6))
    sigma = np.sqrt(np.mean(((D - D.mean(0)) @ nets[0].layers[0].w).std(axis=0) ** 2))
    factors = spread_first_layers(nets, {0: D}, 0.5)
    assert list(factors) == [0] and factors[0] == pytest.approx(0.5 / sigma, rel=1e-14)
    assert np.array_equal(nets[1].layers[0].w, w1)


def test_spread_first_layers_bounds_the_factor_for_alike_environments():
    """Atoms whose descriptors are all alike (a perfect crystal) give σ at round-off: the
    rescaling stops at MAX_SPREAD_FACTOR instead of blowing the weights up."""
    from numdp.train.init import MAX_SPREAD_FACTOR, random_net, spread_first_layers

    rng = np.random.default_rng(6)
    nets = [random_net(rng, [6, 4, 1], True, True)]
    w0 = nets[0].layers[0].w.copy()
    D = np.tile(rng.normal(0.3, 0.01, 6), (40, 1)) * (1.0 + 1e-15 * rng.standard_normal((40, 1)))
    factors = spread_first_layers(nets, {0: D}, 0.1)
    assert factors[0] == MAX_SPREAD_FACTOR
    assert np.array_equal(nets[0].layers[0].w, w0 * MAX_SPREAD_FACTOR)


def test_restart_from_a_checkpoint_of_another_type_map_names_it(tmp_path, data_dir):
    """A checkpoint of a run with another number of types (a Cu checkpoint for a two-element
    input) was reported as 'initial model: sel has 1 entries but type_map has 2'."""
    from numdp.errors import InputError
    from numdp.train.checkpoint import Checkpoint, write_checkpoint

    path = make_input(tmp_path, data_dir, steps=2)
    ck = tmp_path / "other.ckpt.h5"
    z = np.zeros(3)
    write_checkpoint(Checkpoint(step=1, theta=z, adam_m=z, adam_v=z, adam_t=1, sel=[8], davg=np.zeros((1, 8, 4)),
                                dstd=np.ones((1, 8, 4)), out_bias=np.zeros(1), s_range=None, min_nbor_dist=None,
                                sampler={}, valid_sampler=None, input_text="", elapsed=0.0), ck)
    with pytest.raises(InputError, match=r"other.ckpt.h5: checkpoint of a run with 1 atom type\(s\) \(sel \[8\]\), "
                                         r"input.toml has 2 \(type_map \['A', 'B'\]\): not a checkpoint of this input"):
        Trainer(load_config(path), restart=ck, nthreads=1)


def test_element_missing_from_the_input_type_map_names_the_input(tmp_path, data_dir):
    """Data with an element the input's type_map lacks said "not in the model's type_map", though
    no model exists yet: the message names the input's [model] type_map."""
    from numdp.errors import InputError

    path = make_input(tmp_path, data_dir, steps=2)
    path.write_text(path.read_text().replace('type_map = ["A", "B"]', 'type_map = ["A"]'))
    with pytest.raises(InputError, match=r"type_map.raw: atom \d+ is 'B', an element not in input.toml's \[model\] "
                                         r"type_map \['A'\]"):
        Trainer(load_config(path), nthreads=1)


def deepmd_kit_run(tmp_path, data_dir, monkeypatch, training_data, validation_data):
    """A Trainer of a DeePMD-kit input.json over data_dir (12 steps, disp_freq 4) whose samplers
    record their draws: (trainer, {"train": [...], "valid": [...]}), a draw being (system, number
    of frames, number of distinct frames)."""
    import json

    work = tmp_path / "run"
    work.mkdir()
    os.symlink(data_dir, work / "data")
    tree = {
        "model": {"type_map": ["A", "B"],
                  "descriptor": {"type": "se_e2_a", "rcut": 4.0, "rcut_smth": 1.0, "sel": "auto",
                                 "neuron": [4, 8], "axis_neuron": 2, "seed": 3},
                  "fitting_net": {"neuron": [8, 8], "seed": 4}},
        "learning_rate": {"type": "exp", "start_lr": 5e-3, "stop_lr": 1e-4, "decay_steps": 4},
        "loss": {"type": "ener", "start_pref_e": 0.2, "limit_pref_e": 1, "start_pref_f": 100,
                 "limit_pref_f": 1},
        "training": {"training_data": training_data, "validation_data": validation_data,
                     "numb_steps": 12, "seed": 11, "disp_freq": 4, "save_freq": 100},
    }
    (work / "input.json").write_text(json.dumps(tree))
    monkeypatch.chdir(work)
    cfg = load_config("input.json")
    trainer = Trainer(cfg, nthreads=1, stream=__import__("io").StringIO())
    drawn = {"train": [], "valid": []}
    for name, sampler in (("train", trainer.sampler), ("valid", trainer.valid_sampler)):
        def record(inner=sampler.next, out=drawn[name]):
            k, idx = inner()
            out.append((k, len(idx), len(set(idx.tolist()))))
            return k, idx
        sampler.next = record
    return trainer, drawn


def test_per_system_batch_size_list_in_deepmd_kit_input(tmp_path, data_dir, monkeypatch):
    """DeePMD-kit's list form of training_data/validation_data batch_size: system i's batches
    have batch_size[i] frames, and a system is drawn with probability ∝ its number of batches
    ⌊nframes_i / batch_size[i]⌋ (DeePMD-kit's "prob_sys_size")."""
    # pbc: 8 frames, cluster: 6 frames (data_dir)
    trainer, drawn = deepmd_kit_run(
        tmp_path, data_dir, monkeypatch,
        {"systems": ["data/train/pbc", "data/train/cluster"], "batch_size": [1, 3]},
        {"systems": ["data/valid/pbc"], "batch_size": [2], "numb_btch": 2})
    try:
        trainer.run()
    finally:
        trainer.close()
    assert [s.batch_size for s in trainer.train_sys] == [1, 3]
    assert trainer.sampler.prob.tolist() == pytest.approx([8 / 10, 2 / 10])  # 8//1 : 6//3
    assert len(drawn["train"]) == 12  # one batch per update, none more
    assert {k for k, _, _ in drawn["train"]} == {0, 1}  # both systems drawn at this seed
    assert all(n == (1, 3)[k] and distinct == n for k, n, distinct in drawn["train"])
    assert drawn["valid"] and all(b == (0, 2, 2) for b in drawn["valid"])
    rows = np.loadtxt(tmp_path / "run" / "lcurve.out")
    assert rows[:, 0].tolist() == [1, 4, 8, 12] and np.all(np.isfinite(rows))


def test_auto_prob_blocks_draw_only_their_systems(tmp_path, data_dir, monkeypatch):
    """auto_prob "prob_sys_size;0:1:1": system 1 is in no block, so only system 0 is drawn; the
    validation batches follow validation_data's own auto_prob (DP-GEN's spacing)."""
    trainer, drawn = deepmd_kit_run(
        tmp_path, data_dir, monkeypatch,
        {"systems": ["data/train/pbc", "data/train/cluster"], "batch_size": 1,
         "auto_prob": "prob_sys_size;0:1:1"},
        {"systems": ["data/train/cluster", "data/valid/pbc"], "batch_size": 2, "numb_btch": 2,
         "auto_prob_style": "prob_sys_size; 1:2:1"})
    try:
        trainer.run()
    finally:
        trainer.close()
    assert trainer.sampler.prob.tolist() == [1.0, 0.0]
    assert trainer.valid_sampler.prob.tolist() == [0.0, 1.0]
    assert len(drawn["train"]) == 12 and all(k == 0 for k, _, _ in drawn["train"])
    assert len(drawn["valid"]) == 8 and all(k == 1 for k, _, _ in drawn["valid"])   # rows 1, 4, 8, 12


def epoch_input(tmp_path, data_dir, extra=""):
    """make_input with numb_epoch 0.3 instead of numb_steps, over the systems of data/train in
    sorted order (cluster: 6 frames, pbc: 8) with batch sizes [3, 1] (nbatch 2, 8) drawn 3 : 1
    by blocks (p 0.75, 0.25): max(2 / 0.75, 8 / 0.25) = 32 batches per epoch (prob_sys_size
    would give 2 + 8), ⌈0.3 · 32⌉ = ⌈9.6⌉ = 10 steps."""
    path = make_input(tmp_path, data_dir)
    text = path.read_text().replace("numb_steps = 12", "numb_epoch = 0.3" + extra).replace(
        "batch_size = 2", 'batch_size = [3, 1]\nauto_prob = "prob_sys_size;0:1:3;1:2:1"')
    path.write_text(text)
    return path


def test_numb_epoch_run_ends_at_its_steps_and_restarts_bit_for_bit(tmp_path, data_dir):
    """numb_epoch is resolved into numb_steps once the data is loaded: the log names the steps,
    the schedule, lcurve, progress, checkpoint and model file use them, and a restart from a
    checkpoint (same data, same resolution) continues bit for bit to the same last step."""
    import io

    path = epoch_input(tmp_path, data_dir)
    work = path.parent
    copies = {}

    def keep(step):
        if step == 5:
            copies[step] = work / "ck5.h5"
            shutil.copy(work / "model.ckpt.h5", copies[step])

    out = io.StringIO()
    trainer, history = run(path, on_step=keep, stream=out)
    tr = trainer.cfg.training
    assert [s.nbatches for s in trainer.train_sys] == [2, 8]
    assert trainer.sampler.prob.tolist() == [0.75, 0.25]
    assert (tr.numb_epoch, tr.numb_steps) == (0.3, 10) == (0.3, math.ceil(0.3 * max(2 / 0.75, 8 / 0.25)))
    assert "; 10 steps (numb_epoch 0.3 x 32 batches per epoch); lr 0.005 -> 0.0001" in out.getvalue()
    lines = [line.split()[1] for line in out.getvalue().splitlines() if line.startswith("step ")]
    assert lines == ["1/10", "4/10", "8/10"]   # lcurve's rows
    assert trainer.sched.decay.numb_steps == 10
    full_curve = (work / "lcurve.out").read_text()
    _, rows = read_lcurve_text(full_curve)
    # rows 1, 4, 8 (DeePMD-kit writes none for steps 9 and 10); the exp decay spans the 10 steps:
    # row 8's rate lr(7) = 5e-3 · (1e-4 / 5e-3)^(4/10 · 1)
    assert rows[:, 0].tolist() == [1, 4, 8] and rows[-1, -1] == pytest.approx(5e-3 * 0.02 ** 0.4, rel=1e-6)
    ck = read_checkpoint(work / "model.ckpt.h5")
    assert ck.step == ck.adam_t == 10
    assert numdp.load_model(work / "model.h5", nthreads=1).params.info["numb_steps"] == 10
    full_theta = trainer.flat.theta.copy()
    trainer2, history2 = run(path, restart=copies[5])
    assert trainer2.start_step == 5 and trainer2.cfg.training.numb_steps == 10
    assert (work / "lcurve.out").read_text() == full_curve
    assert np.array_equal(trainer2.flat.theta, full_theta)
    assert sorted(history2.rows) == [8]
    assert np.array_equal(history2.rows[8], history.rows[8], equal_nan=True)


def test_gradient_clipping_that_does_not_trigger_changes_nothing(tmp_path, data_dir):
    """gradient_max_norm above every step's gradient norm: factor 1, and the run equals one
    without the key bit for bit, at batch 1 on 2 threads too (where without clipping the passes
    update θ block by block as their gradient completes, and with clipping `Adam.step` does it
    all after the norm)."""
    path = make_input(tmp_path, data_dir, steps=6)
    text = path.read_text().replace("batch_size = 2", "batch_size = 1")
    path.write_text(text)
    plain, _ = run(path)
    curve = (path.parent / "lcurve.out").read_text()
    path.write_text(text.replace("numb_steps = 6", "numb_steps = 6\ngradient_max_norm = 1e300"))
    clipped, _ = run(path)
    assert clipped.cfg.training.gradient_max_norm == 1e300
    assert np.array_equal(clipped.flat.theta, plain.flat.theta)
    assert np.array_equal(clipped.adam.m, plain.adam.m) and np.array_equal(clipped.adam.v, plain.adam.v)
    assert (path.parent / "lcurve.out").read_text() == curve


def test_small_gradient_max_norm_scales_the_gradient_and_moves_theta_less(tmp_path, data_dir):
    """With gradient_max_norm the whole gradient (the worker rows summed as `segments` says) is
    scaled by max / (‖g‖₂ + 1e-6) before the update: its factor is torch's, and a small max
    makes the first update move θ less (Adam's steps are ~lr·g/(|g| + ε): small only for g
    near ε)."""
    import io

    path = make_input(tmp_path, data_dir, steps=2)
    text = path.read_text().replace("batch_size = 2", "batch_size = 1")
    moves = {}
    for max_norm in (0.0, 1e-9):
        path.write_text(text.replace("numb_steps = 2", f"numb_steps = 2\ngradient_max_norm = {max_norm}"))
        trainer = Trainer(load_config(path), nthreads=2, stream=io.StringIO())
        try:
            theta0 = trainer.flat.theta.copy()
            seen = []
            step = trainer.adam.step

            def spy(theta, grads, lr, split, segments, skip, scale=1.0):
                seen.append((np.linalg.norm(trainer.passes.total_grad()), scale))
                step(theta, grads, lr, split, segments, skip, scale)

            trainer.adam.step = spy
            trainer.train_step(0, display=False)
            moves[max_norm] = np.linalg.norm(trainer.flat.theta - theta0)
        finally:
            trainer.close()
        norm, scale = seen[0]
        if max_norm == 0.0:
            assert scale == 1.0
        else:
            assert scale == pytest.approx(max_norm / (norm + 1e-6), rel=1e-13) and norm > 1e-3
    assert 0.0 < moves[1e-9] < 0.3 * moves[0.0]


def test_nan_gradient_with_clipping_stops_with_one_line(tmp_path, data_dir):
    """A non-finite gradient norm stops the run before that step's update with one line naming
    the step (an InputError: `numdp train` prints it and exits 2); θ is left as after the
    step before."""
    import io

    from numdp.train.loop import TrainingDiverged

    path = make_input(tmp_path, data_dir, steps=6)
    path.write_text(path.read_text().replace("numb_steps = 6", "numb_steps = 6\ngradient_max_norm = 10"))
    thetas = {}
    trainer = Trainer(load_config(path), nthreads=2, stream=io.StringIO(),
                      on_step=lambda s: thetas.setdefault(s, trainer.flat.theta.copy()))
    batch_loss = trainer._batch_loss
    calls = []

    def poisoned(*args, **kw):
        batch_loss(*args, **kw)
        calls.append(args[6])          # grad
        if sum(calls) == 3:            # the gradient of step 2
            trainer.passes.grads[-1, 7] = np.nan

    trainer._batch_loss = poisoned
    try:
        with pytest.raises(TrainingDiverged) as err:
            trainer.run()
    finally:
        trainer.close()
    text = str(err.value)
    assert text.startswith("step 2: the gradient norm is nan: training has diverged") and "\n" not in text
    assert isinstance(err.value, numdp.errors.InputError)
    assert sorted(thetas) == [1, 2] and np.array_equal(trainer.flat.theta, thetas[2])


def train_recording(tmp_path, data_dir):
    """7 steps of make_input's training with disp_freq 3, save_freq 3 and a new learning rate
    every step (decay_steps 1), the parameters copied after every step (models[k]: θ after k
    updates) and the checkpoint of step 3 kept as ck3.h5: (trainer, history, models, input path)."""
    import copy
    import io

    path = make_input(tmp_path, data_dir, steps=7)
    path.write_text(path.read_text().replace("decay_steps = 4", "decay_steps = 1")
                    .replace("disp_freq = 4", "disp_freq = 3").replace("save_freq = 5", "save_freq = 3"))
    work = path.parent
    models = {}
    trainer = Trainer(load_config(path), nthreads=2, stream=io.StringIO(),
                      on_step=lambda s: (models.setdefault(s, copy.deepcopy(trainer.params)),
                                         s == 3 and shutil.copy(work / "model.ckpt.h5", work / "ck3.h5")))
    models[0] = copy.deepcopy(trainer.params)
    try:
        history = trainer.run()
    finally:
        trainer.close()
    return trainer, history, models, path


def test_lcurve_rows_are_deepmd_kits(tmp_path, data_dir):
    """lcurve.out's rows mean what DeePMD-kit 3.2's mean (deepmd/pt/train/training.py: after step
    t, row k = t + 1 when k % disp_freq == 0 or k == 1).  7 steps, disp_freq 3: rows 1, 3, 6 and
    none for step 7; row k's lr is lr(k - 1), the rate of the k-th update (decay_steps 1: a new
    rate every step); its validation columns are the errors of θ after k updates on the next
    numb_btch validation batches, its training columns those of θ after k - 1 updates on the
    k-th training batch, each evaluated here by numdp's MD evaluator on models copied at those
    steps.  A restart from the checkpoint at step 3 (a row's step: DeePMD-kit's restart would
    redo that step and write row 3 again) leaves the uninterrupted run's file, rows 1, 3, 6."""
    from numdp.model.metrics import ErrorSums
    from numdp.train.data import BatchSampler

    trainer, history, models, path = train_recording(tmp_path, data_dir)
    work = path.parent
    assert sorted(history.rows) == [1, 3, 6] and sorted(models) == list(range(8))
    _, rows = read_lcurve(work / "lcurve.out")
    assert rows[:, 0].tolist() == [1, 3, 6]
    assert history.columns == ["rmse_val", "rmse_trn", "rmse_e_val", "rmse_e_trn", "rmse_f_val", "rmse_f_trn",
                               "rmse_v_val", "rmse_v_trn", "lr"]
    sched = trainer.sched
    assert len({sched.lr(t) for t in range(8)}) == 8
    assert [history.rows[k][-1] for k in (1, 3, 6)] == [sched.lr(k - 1) for k in (1, 3, 6)]

    def errors(params, batches, systems):
        # DeePMD-kit's log_loss_valid: each batch's own figures, averaged with its atoms as weights
        model, total, weight = DPModel(params, nthreads=1), 0.0, 0
        for k, idx in batches:
            s, sums = systems[k], ErrorSums()
            for f in idx:
                r = model.evaluate(s.coords[f], s.types, None if s.boxes is None else s.boxes[f], atom_virial=False)
                sums.add_energy(r.energy - s.energy[f], s.natoms)
                sums.add_forces(r.forces - s.forces[f])
                if s.virial is not None:
                    sums.add_virial(r.virial - s.virial[f], s.natoms)
            total = total + len(idx) * s.natoms * np.array([sums.rmse_e, sums.rmse_f, sums.rmse_v])
            weight += len(idx) * s.natoms
        return total / weight

    seed, nb = trainer.seed, trainer.cfg.validation.numb_btch
    train_draws = BatchSampler(trainer.train_sys, [seed, 1], trainer.sampler.prob)
    train_batches = [train_draws.next() for _ in range(7)]      # step t's batch: train_batches[t]
    valid_draws = BatchSampler(trainer.valid_sys, [seed, 2], trainer.valid_sampler.prob)
    for k in (1, 3, 6):
        row = np.array(history.rows[k])
        vbatches = [valid_draws.next() for _ in range(nb)]
        val = errors(models[k], vbatches, trainer.valid_sys)
        before = errors(models[k - 1], vbatches, trainer.valid_sys)   # (DeePMD-kit validates after)
        assert not np.allclose(row[[2, 4]], before[:2], rtol=1e-6)
        trn = errors(models[k - 1], [train_batches[k - 1]], trainer.train_sys)
        # two code paths (MD evaluator, training passes): round-off
        assert np.allclose(row[[2, 4, 6]], val, rtol=1e-9, atol=0, equal_nan=True), (k, row, val)
        assert np.allclose(row[[3, 5, 7]], trn, rtol=1e-9, atol=0, equal_nan=True), (k, row, trn)
        for other in (k - 2, k):   # one update off either way: other errors
            if other >= 0:
                off = errors(models[other], [train_batches[k - 1]], trainer.train_sys)
                assert not np.allclose(row[[3, 5]], off[:2], rtol=1e-6)
    full_curve = (work / "lcurve.out").read_text()
    _, history2 = run(path, restart=work / "ck3.h5")
    assert sorted(history2.rows) == [6] and history2.rows[6] == history.rows[6]
    assert (work / "lcurve.out").read_text() == full_curve


def test_disp_avg_averages_the_training_columns_over_the_interval(tmp_path, data_dir):
    """disp_avg (DeePMD-kit's): each row's training columns are the mean of the per-step figures
    since the previous row (this row's step included: row 1 is step 0's alone, row 3 the mean of
    steps 1 and 2); the validation columns are unchanged.  The per-step figures come from the same
    run with disp_freq = 1, whose row k holds step k - 1's (displayed steps update through the same
    arithmetic, so the trajectories agree bit for bit)."""
    paths = {}
    for name, extra in (("every", "disp_freq = 1"), ("avg", "disp_freq = 3\ndisp_avg = true"),
                        ("plain", "disp_freq = 3")):
        (tmp_path / name).mkdir()
        paths[name] = make_input(tmp_path / name, data_dir, steps=6)
        paths[name].write_text(paths[name].read_text().replace("disp_freq = 4", extra))
    histories = {name: run(path)[1] for name, path in paths.items()}
    by_step = {s: np.array(r) for s, r in histories["every"].rows.items()}   # full precision
    rows = {s: np.array(r) for s, r in histories["avg"].rows.items()}
    assert sorted(rows) == [1, 3, 6] and sorted(by_step) == [1, 2, 3, 4, 5, 6]
    ncol = len(rows[1]) - 1                      # rmse_val, rmse_trn, ..., lr: training columns odd
    trn, val = list(range(1, ncol, 2)), list(range(0, ncol, 2))
    for step, steps in ((1, [1]), (3, [2, 3]), (6, [4, 5, 6])):   # (by_step's labels)
        mean = np.mean([by_step[s][trn] for s in steps], axis=0)
        # the same figures added in another order: a few ulps; nan where a batch had no virial
        assert np.allclose(rows[step][trn], mean, rtol=1e-13, atol=0, equal_nan=True), (rows[step][trn], mean)
        # validation as without disp_avg (disp_freq = 1 draws other validation batches)
        assert np.array_equal(rows[step][val], np.array(histories["plain"].rows[step])[val], equal_nan=True)
    assert not np.allclose(rows[3][trn][:2], by_step[3][trn][:2], rtol=1e-6)   # not the last step's


def test_disp_training_false_writes_no_rows_and_trains_the_same(tmp_path, data_dir):
    """disp_training = false (DeePMD-kit's): no validation and no lcurve row during the run, and
    the same parameters (validation draws from its own sampler)."""
    paths = {}
    for name, extra in (("shown", ""), ("quiet", "disp_training = false\n")):
        (tmp_path / name).mkdir()
        paths[name] = make_input(tmp_path / name, data_dir, steps=5)
        paths[name].write_text(paths[name].read_text().replace("[training]\n", "[training]\n" + extra))
    runs = {name: run(path) for name, path in paths.items()}
    assert sorted(runs["shown"][1].rows) == [1, 4] and runs["quiet"][1].rows == {}
    lines = (paths["quiet"].parent / "lcurve.out").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("#")
    assert np.array_equal(runs["shown"][0].flat.theta, runs["quiet"][0].flat.theta)


def test_other_activations_train_evaluate_and_restart(tmp_path, data_dir):
    """activation_function gelu (embedding) and softplus (fitting): the run learns, the model
    file carries both functions and evaluates like the trainer's passes, and a restart from a
    checkpoint continues the same curve (the checkpoint's networks are the input's)."""
    path = make_input(tmp_path, data_dir)
    text = path.read_text()
    text = text.replace("seed = 3\n", 'seed = 3\nactivation_function = "gelu"\n')
    text = text.replace("seed = 4\n", 'seed = 4\nactivation_function = "softplus"\n')
    path.write_text(text)
    work = path.parent
    trainer, history, ck5 = run_keeping(path, 5)
    _, rows = read_lcurve(work / "lcurve.out")
    assert rows[-1, 2] < rows[0, 2]
    model = numdp.load_model(work / "model.h5", nthreads=1)
    p = model.params
    assert (p.descriptor.activation, p.fitting.activation) == ("gelu", "softplus")
    assert all(lay.activation == "gelu" for net in p.descriptor.embeddings for lay in net.layers)
    assert_model_is_the_passes(model, trainer)
    full_theta = trainer.flat.theta.copy()
    trainer2, history2 = run(path, restart=ck5)
    assert trainer2.start_step == 5
    assert np.allclose(trainer2.flat.theta, full_theta, rtol=1e-12, atol=1e-14)
    for step in history2.rows:
        assert np.allclose(history2.rows[step], history.rows[step], rtol=1e-10)


def test_frame_parameters_train_freeze_restart_and_test(tmp_path):
    """numb_fparam 1 with fparam.npy (labels from a teacher with a frame parameter): the run
    learns; the model file carries the parameters' statistics (those of the statistics frames)
    and evaluates with each frame's parameter like the trainer's passes; a restart continues the
    same curve; numdp freeze gives the same model; numdp test reads the parameters; a system
    without fparam.npy is named, unless default_fparam is given."""
    from numdp.cli import main
    from numdp.io.model_file import read_model
    from numdp.train.freeze import model_from_checkpoint

    teacher = random_params(ntypes=2, sel=[30, 30], neuron=(4, 8), axis_neuron=2, fitting=(8, 8),
                            rcut=4.0, rcut_smth=1.0, seed=43, numb_fparam=1)
    rng = np.random.default_rng(5)
    work = tmp_path / "run"
    for name, nframes, seed in (("train", 8, 500), ("valid", 4, 600)):
        fp = rng.normal(1.0, 0.5, (nframes, 1))
        write_system(work / "data" / name, teacher, 12, nframes, True, seed, fparam=fp)
    path = work / "input.toml"
    text = INPUT.format(steps=12, tos="true").replace("seed = 4\n", "seed = 4\nnumb_fparam = 1\n")
    path.write_text(text)
    trainer, history, ck5 = run_keeping(path, 5)
    _, rows = read_lcurve(work / "lcurve.out")
    assert rows[-1, 2] < rows[0, 2]
    p = read_model(work / "model.h5")
    f = p.fitting
    assert f.numb_fparam == 1 and f.default_fparam is None
    stat = np.concatenate([s.fparam[idx] for s, idx in zip(trainer.train_sys, trainer._statistics_frames())])
    assert np.allclose(f.fparam_avg, stat.mean(axis=0), rtol=1e-14)
    assert np.allclose(1.0 / f.fparam_inv_std, stat.std(axis=0), rtol=1e-12)
    model = numdp.load_model(work / "model.h5", nthreads=1)
    assert_model_is_the_passes(model, trainer)
    frozen = model_from_checkpoint(work / "model.ckpt.h5")
    assert np.array_equal(frozen.fitting.fparam_avg, f.fparam_avg)
    assert np.array_equal(frozen.fitting.nets[0].layers[0].w, f.nets[0].layers[0].w)
    full_theta = trainer.flat.theta.copy()
    trainer2, history2 = run(path, restart=ck5)
    assert np.allclose(trainer2.flat.theta, full_theta, rtol=1e-12, atol=1e-14)
    for step in history2.rows:
        assert np.allclose(history2.rows[step], history.rows[step], rtol=1e-10)
    assert main(["test", "-m", str(work / "model.h5"), "-s", str(work / "data" / "valid"),
                 "--json", str(tmp_path / "t.json")]) == 0
    import json

    got = json.loads((tmp_path / "t.json").read_text())["overall"]
    own = trainer2.test(trainer2.valid_sys, trainer2.valid_cache)   # the trainer's passes, same frames
    assert got["frames"] == own.nframes == 4
    assert got["rmse_energy"] == pytest.approx(own.rmse_e * 1e3, rel=1e-9)
    assert got["rmse_force"] == pytest.approx(own.rmse_f * 1e3, rel=1e-9)
    (work / "data" / "valid" / "set.000" / "fparam.npy").unlink()
    with pytest.raises(numdp.errors.InputError, match=r"valid: the input takes 1 frame parameter\(s\) \(numb_fparam\) "
                                                      r"and has no default_fparam; the system has no fparam.npy$"):
        run(path)
    path.write_text(text.replace("numb_fparam = 1\n", "numb_fparam = 1\ndefault_fparam = [1.0]\n"))
    trainer3, _ = run(path)
    assert np.all(trainer3.valid_sys[0].fparam == 1.0)
    assert read_model(work / "model.h5").fitting.default_fparam.tolist() == [1.0]


def test_sel_auto_gives_a_type_absent_from_the_data_no_slots(tmp_path, data_dir):
    """DeePMD-kit's sel "auto" gives sel 0 to an element of type_map that the training data never
    holds (a type_map for later data, DP-GEN's); numdp gives it 0 too, says so, and the run
    trains and writes a model that loads and evaluates a configuration with that element."""
    import io
    import warnings

    path = make_input(tmp_path, data_dir, steps=2)
    path.write_text(path.read_text().replace('type_map = ["A", "B"]', 'type_map = ["A", "B", "C"]'))
    out = io.StringIO()
    trainer, _ = run(path, stream=out)
    sel = trainer.params.descriptor.sel
    assert sel[2] == 0 and min(sel[:2]) > 4
    assert ("sel auto: C never within rcut of an atom in the training data: sel 0 for it, as DeePMD-kit"
            in out.getvalue())
    model = numdp.load_model(path.parent / "model.h5", nthreads=1)
    assert model.params.descriptor.sel == sel
    pos = np.array([[0.0, 0, 0], [1.5, 0, 0], [0, 1.5, 0], [0, 0, 1.5]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # C within rcut of the others: no slots for it
        r = model.evaluate(pos, np.array([0, 1, 2, 0]), None)
    assert np.isfinite(r.energy) and np.isfinite(r.forces).all()
    assert abs(r.forces.sum(axis=0)).max() < 1e-12


def test_a_model_with_a_type_of_no_slots_validates_and_a_negative_sel_is_refused():
    """A DeePMD-kit model whose sel gives a type 0 slots (its sel "auto" for a type absent from
    the data) is a model numdp evaluates (tests/test_sweep_sel0.py); a negative entry, or no
    slots at all, is refused in one line."""
    from numdp.errors import InputError

    p = random_params(ntypes=2, sel=[12, 12])
    p.descriptor.sel = [24, 0]
    p.validate("water.dp")
    p.descriptor.sel = [25, -1]
    with pytest.raises(InputError, match=r"^water\.dp: sel \[25, -1\]: type B has a negative number of neighbour slots$"):
        p.validate("water.dp")


def test_sel_auto_below_one_gives_zero_as_deepmd_kit(tmp_path, data_dir):
    """"auto:F" with F < 1: a count x F below 1 gives 0, as DeePMD-kit's wrap_up_4(int(c F))."""
    import io

    path = make_input(tmp_path, data_dir, steps=2)
    text = path.read_text().replace('type_map = ["A", "B"]', 'type_map = ["A", "B", "C"]')
    assert 'sel = "auto"\n' in text
    path.write_text(text.replace('sel = "auto"\n', 'sel = "auto:0.5"\n', 1))
    out = io.StringIO()
    trainer, _ = run(path, stream=out)
    sel = trainer.params.descriptor.sel
    assert sel[2] == 0 and min(sel[:2]) > 0
    assert "sel auto: C never within rcut of an atom in the training data: sel 0 for it" in out.getvalue()
