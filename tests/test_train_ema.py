"""DeePMD-kit's exponential moving average of the parameters ([training] enable_ema, ema_decay):
its recurrence bit for bit (PyTorch's lerp, both of its forms), a run it leaves unchanged, its
model file, checkpoint, restart, `numdp freeze --ema` and validation line."""
import io
import json
import re
import shutil
from fractions import Fraction

import numpy as np
import pytest

from numdp.cli import main
from numdp.errors import InputError
from numdp.io.model_file import read_model
from numdp.train.checkpoint import read_checkpoint
from numdp.train.config import load_config
from numdp.train.flat import FlatParams
from numdp.train.loop import Trainer
from test_train_run import data_dir, make_input  # noqa: F401  (fixture)


def ema_input(tmp_path, data_dir, steps=4, decay=0.9, ema=True):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = make_input(tmp_path, data_dir, steps=steps)
    if ema:
        path.write_text(path.read_text().replace("seed = 11\n", f"seed = 11\nenable_ema = true\nema_decay = {decay}\n"))
    return path


def train(path, restart=None, thetas=None):
    """Run the input at `path`; θ after every update appended to `thetas` (θ at the start first)."""
    trainer = Trainer(load_config(path), restart=restart, nthreads=2, stream=io.StringIO(),
                      on_step=None if thetas is None else (lambda s: thetas.append(trainer.flat.theta.copy())))
    if thetas is not None:
        thetas.append(trainer.flat.theta.copy())
    try:
        trainer.run()
    finally:
        trainer.close()
    return trainer


def lerp(e, theta, w):
    """torch.Tensor.lerp_(theta, w) on e: its two forms, by w, each a fused multiply-add (one
    rounding: exact fractions, rounded once by float())."""
    d = theta - e
    if w < 0.5:
        return np.array([float(Fraction(a) + Fraction(w) * Fraction(x)) for a, x in zip(e, d)])
    return np.array([float(Fraction(t) - Fraction(x) * Fraction(1.0 - w)) for t, x in zip(theta, d)])


@pytest.mark.parametrize("decay", [0.9, 0.3])
def test_ema_recurrence_model_file_and_unchanged_run(tmp_path, data_dir, decay):
    """θ_ema = lerp(θ_ema, θ_t, 1 - decay) after each update t, from θ_0 (DeePMD-kit's ModelEMA),
    bit for bit; the run's learning curve and model are those of the run without it; the EMA
    model file is the model with θ_ema (statistics and bias the model's); the checkpoint holds
    θ_ema; the last lines give the validation of the average."""
    thetas = []
    trainer = train(ema_input(tmp_path / "ema", data_dir, decay=decay), thetas=thetas)
    expect = thetas[0]
    for theta in thetas[1:]:
        expect = lerp(expect, theta, 1.0 - decay)
    assert len(thetas) == 5 and not np.array_equal(thetas[-1], thetas[0])
    np.testing.assert_array_equal(trainer.theta_ema, expect)
    assert not np.array_equal(trainer.theta_ema, thetas[-1])

    run_dir = tmp_path / "ema" / "run"
    plain = train(ema_input(tmp_path / "plain", data_dir, ema=False))
    assert plain.theta_ema is None and not (tmp_path / "plain" / "run" / "model_ema.h5").exists()
    assert (run_dir / "lcurve.out").read_text() == (tmp_path / "plain" / "run" / "lcurve.out").read_text()
    np.testing.assert_array_equal(FlatParams.bind(read_model(run_dir / "model.h5")).theta, thetas[-1])

    avg = read_model(run_dir / "model_ema.h5")
    np.testing.assert_array_equal(FlatParams.bind(avg).theta, expect)
    model = read_model(run_dir / "model.h5")
    np.testing.assert_array_equal(avg.out_bias, model.out_bias)
    np.testing.assert_array_equal(avg.descriptor.davg, model.descriptor.davg)
    np.testing.assert_array_equal(read_checkpoint(run_dir / "model.ckpt.h5").theta_ema, expect)
    assert trainer.final_test_ema.rmse_f != trainer.final_test.rmse_f


def test_restart_continues_the_average_and_freeze_ema(tmp_path, data_dir, capsys):
    """A 6-step run restarted from its step-5 checkpoint ends with the uninterrupted run's
    average bit for bit (the same updates in the same order; an average restarted from θ at
    step 5 would differ by the average's lag, ~1e-3); `numdp freeze --ema` writes the
    checkpoint's average; --ema on a checkpoint without one is one line."""
    path = ema_input(tmp_path / "whole", data_dir, steps=6)
    copy = path.parent / "ck5.h5"
    trainer = Trainer(load_config(path), nthreads=2, stream=io.StringIO(),
                      on_step=lambda s: s == 5 and shutil.copy(path.parent / "model.ckpt.h5", copy))
    try:
        trainer.run()
    finally:
        trainer.close()
    whole = trainer
    assert read_checkpoint(copy).step == 5
    resumed = train(path, restart=copy)
    np.testing.assert_array_equal(resumed.theta_ema, whole.theta_ema)
    assert not np.allclose(read_checkpoint(copy).theta, whole.theta_ema, rtol=1e-6, atol=1e-8)

    run_dir = tmp_path / "whole" / "run"
    out = tmp_path / "frozen_ema.h5"
    assert main(["freeze", "-c", str(run_dir / "model.ckpt.h5"), "-o", str(out), "--ema"]) == 0
    np.testing.assert_array_equal(FlatParams.bind(read_model(out)).theta, whole.theta_ema)
    plain = train(ema_input(tmp_path / "plain", data_dir, ema=False))
    del plain
    capsys.readouterr()
    assert main(["freeze", "-c", str(tmp_path / "plain" / "run" / "model.ckpt.h5"), "-o", str(out), "--ema"]) == 2
    err = capsys.readouterr().err
    assert "holds no moving average of the parameters" in err and err.count("\n") == 1


def test_ema_keys_in_toml_and_input_json(tmp_path, data_dir, monkeypatch):
    path = make_input(tmp_path, data_dir)
    tr = load_config(path).training
    assert (tr.enable_ema, tr.ema_decay) == (False, 0.999)
    for bad, fragment in (("ema_decay = 1.0", "[training] ema_decay: must be in [0, 1), got 1"),
                          ("ema_decay = -0.1", "[training] ema_decay"),
                          ('enable_ema = "yes"', "[training] enable_ema")):
        path.write_text(make_input(tmp_path, data_dir).read_text().replace("seed = 11\n", f"seed = 11\n{bad}\n"))
        with pytest.raises(InputError, match=re.escape(fragment)):
            load_config(path)
    path.write_text(make_input(tmp_path, data_dir).read_text().replace(
        'model_file', 'x').replace("seed = 11\n", 'seed = 11\nenable_ema = true\nsave_ckpt = "model_ema.h5"\n'))
    with pytest.raises(InputError, match=r"the moving average's model \(\[training\] enable_ema\)"):
        load_config(path)
    monkeypatch.chdir(tmp_path / "run")
    (tmp_path / "run" / "input.json").write_text(json.dumps({
        "model": {"type_map": ["A", "B"], "descriptor": {"type": "se_e2_a"}, "fitting_net": {}},
        "training": {"training_data": {"systems": ["data/train"]}, "numb_steps": 1, "enable_ema": True,
                     "ema_decay": 0.99, "ema_ckpt_keep": 3}}))
    tr = load_config("input.json").training
    assert (tr.enable_ema, tr.ema_decay) == (True, 0.99)
