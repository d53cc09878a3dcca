"""`numdp train` restarts, checkpoints and outputs as a user of `dp train` (DeePMD-kit 3.2)
meets them.

Found by a sweep against `dp --pt train` on the water data (interrupts by SIGINT, SIGTERM and
kill -9 between and inside checkpoint writes, restarts from the latest and from earlier
checkpoints, a changed input, a run without training.seed): a run without a seed drew a new one
on restart, so its model file recorded a seed that repeats nothing and its
change_bias_after_training used other statistics frames than the uninterrupted run; a restart
from an earlier checkpoint dropped the later rows of lcurve.out without a trace (dp appends and
keeps them); a mistyped --restart file was reported only after the data had been read.

One worker thread throughout: the sums then run in one order, so a restart continues bit for bit.
"""
import io
import os
import shutil
import signal

import numpy as np
import pytest

import numdp
from numdp.errors import InputError
from numdp.train.checkpoint import read_checkpoint
from numdp.train.config import load_config
from numdp.train.loop import Trainer, TrainingInterrupted

from test_train_run import INPUT, data_dir  # noqa: F401  (the fixture)


def write_input(work, data_dir, text):  # noqa: F811
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "data").exists():
        os.symlink(data_dir, work / "data")
    path = work / "input.toml"
    path.write_text(text)
    return path


def trainer(path, restart=None, on_step=None):
    return Trainer(load_config(path), restart=restart, nthreads=1, on_step=on_step, stream=io.StringIO())


def run(path, restart=None, on_step=None):
    """(trainer, history, log text) of a whole run of `path`."""
    t = trainer(path, restart, on_step)
    try:
        history = t.run()
    finally:
        t.close()
    return t, history, t.stream.getvalue()


def interrupt_at(step):
    def on_step(s):
        if s == step:
            os.kill(os.getpid(), signal.SIGINT)
    return on_step


def test_a_seedless_run_restarts_with_its_own_seed(tmp_path, data_dir):  # noqa: F811
    """Without training.seed the seed drawn is in the log, the checkpoint and the model file; a
    restart takes the checkpoint's, and ends as the uninterrupted run with that seed given
    (change_bias_after_training draws its statistics frames from the seed again at the end)."""
    text = INPUT.format(steps=6, tos="true").replace("seed = 11\n", "change_bias_after_training = true\n")
    assert "change_bias_after_training" in text and "\nseed = 11" not in text
    path = write_input(tmp_path / "a", data_dir, text)
    first = trainer(path, on_step=interrupt_at(3))
    try:
        with pytest.raises(TrainingInterrupted):
            first.run()
    finally:
        first.close()
    seed = first.seed
    assert f"seed {seed} (drawn at random: [training] seed = {seed} repeats this run)" in first.stream.getvalue()
    assert read_checkpoint(path.parent / "model.ckpt.h5").seed == seed
    restarted, _, log = run(path, restart=path.parent / "model.ckpt.h5")
    assert restarted.seed == seed and f"; seed {seed}\n" in log
    model = numdp.load_model(path.parent / "model.h5", nthreads=1)
    assert model.params.info["seed"] == seed

    given = write_input(tmp_path / "b", data_dir, text.replace("[validation]", f"seed = {seed}\n[validation]"))
    whole, _, _ = run(given)
    assert np.array_equal(restarted.params.out_bias, whole.params.out_bias)
    assert np.array_equal(restarted.flat.theta, whole.flat.theta)


def test_restart_from_an_earlier_checkpoint_keeps_the_rows_it_drops(tmp_path, data_dir):  # noqa: F811
    """A restart from step 5 of a 12-step run rewrites lcurve.out from row 8 on (the same rows,
    bit for bit): the file as it was is kept as #lcurve.out.1#, and the log says so; a restart
    with no row beyond its checkpoint backs nothing up."""
    path = write_input(tmp_path, data_dir, INPUT.format(steps=12, tos="true"))
    copy = tmp_path / "ck5.h5"

    def keep(s):
        if s == 5:
            shutil.copy(tmp_path / "model.ckpt.h5", copy)

    run(path, on_step=keep)
    full = (tmp_path / "lcurve.out").read_text()
    _, history, log = run(path, restart=copy)
    assert (tmp_path / "#lcurve.out.1#").read_text() == full
    assert (tmp_path / "lcurve.out").read_text() == full
    assert sorted(history.rows) == [8, 12]
    assert "2 row(s) of steps 8-12, beyond the checkpoint's step 5, left out" in log
    assert "#lcurve.out.1#" in log

    _, history, log = run(path, restart=tmp_path / "model.ckpt.h5")   # at step 12: nothing beyond
    assert history.rows == {} and "left out" not in log
    assert not (tmp_path / "#lcurve.out.2#").exists()
    assert (tmp_path / "lcurve.out").read_text() == full


def test_a_missing_restart_checkpoint_is_named_before_the_data_is_read(tmp_path, data_dir):  # noqa: F811
    """`--restart model.ckpt.pt` (DeePMD-kit's name) where numdp wrote model.ckpt.h5: one line
    naming both, before the data is loaded; without any checkpoint, the plain line."""
    path = write_input(tmp_path, data_dir, INPUT.format(steps=2, tos="true"))
    stream = io.StringIO()
    with pytest.raises(InputError, match=r"^\S*nothing\.h5: checkpoint not found$"):
        Trainer(load_config(path), restart=tmp_path / "nothing.h5", nthreads=1, stream=stream)
    assert "training data" not in stream.getvalue()
    run(path)
    with pytest.raises(InputError) as err:
        Trainer(load_config(path), restart=tmp_path / "model.ckpt.pt", nthreads=1, stream=stream)
    msg = str(err.value)
    assert msg.startswith(f"{tmp_path / 'model.ckpt.pt'}: checkpoint not found")
    assert f"--restart {tmp_path / 'model.ckpt.h5'}" in msg and "\n" not in msg
    assert "training data" not in stream.getvalue()


def test_init_frz_model_errors_name_the_option_given(tmp_path, data_dir, capsys):  # noqa: F811
    """DeePMD-kit's -f / --init-frz-model is numdp's --init-model; its one-line errors name the
    option the user typed."""
    from numdp.cli import main as cli_main

    path = write_input(tmp_path, data_dir, INPUT.format(steps=2, tos="true"))
    run(path)
    shutil.copy(tmp_path / "model.h5", tmp_path / "init.h5")
    path.write_text(path.read_text().replace("[model.fitting]\nneuron = [8, 8]", "[model.fitting]\nneuron = [8, 6]"))
    for flag in ("-f", "--init-frz-model"):
        assert cli_main(["train", str(path), flag, str(tmp_path / "init.h5"), "--threads", "1"]) == 2
        err = capsys.readouterr().err
        assert "init.h5: --init-frz-model: [model.fitting] neuron: the model has [8, 8]" in err
        assert cli_main(["train", str(path), flag, "x.h5", "--restart", "model.ckpt.h5"]) == 2
        assert "--restart and --init-frz-model: give one" in capsys.readouterr().err
    assert cli_main(["train", str(path), "-i", str(tmp_path / "init.h5"), "--threads", "1"]) == 2
    assert "init.h5: --init-model: [model.fitting]" in capsys.readouterr().err


def test_log_path_copies_the_run_and_keeps_an_earlier_log(tmp_path, data_dir, monkeypatch, capsys):  # noqa: F811
    """`-l train.log` (DeePMD-kit's `dp train -l`): the log gets what the run prints, step and lr
    of every row included; a new run keeps the earlier log as #train.log.1#, a restart appends."""
    from numdp.cli import main as cli_main

    path = write_input(tmp_path, data_dir, INPUT.format(steps=4, tos="true"))
    monkeypatch.chdir(tmp_path)
    assert cli_main(["train", str(path), "-l", "train.log", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    log = (tmp_path / "train.log").read_text()
    assert log == out and "; seed 11\n" in log
    assert [l.split()[1] for l in log.splitlines() if l.startswith("step ")] == ["1/4", "4/4"]
    assert "lr 5.00e-03" in log
    assert cli_main(["train", str(path), "--log-path", "train.log", "--threads", "1"]) == 0
    assert (tmp_path / "#train.log.1#").read_text() == log
    assert "backed up the previous run's train.log to #train.log.1#" in (tmp_path / "train.log").read_text()
    first = (tmp_path / "train.log").read_text()
    assert cli_main(["train", str(path), "-l", "train.log", "--restart", "model.ckpt", "--threads", "1"]) == 0
    text = (tmp_path / "train.log").read_text()
    assert text.startswith(first) and "continuing from model.ckpt.h5 at step 4" in text[len(first):]
    assert not (tmp_path / "#train.log.2#").exists()


def test_restart_of_a_checkpoint_without_a_seed_says_it_records_none(tmp_path, data_dir):  # noqa: F811
    """A checkpoint of an earlier numdp version holds no seed: a seedless restart of it draws one,
    and the log must not claim that [training] seed = N repeats the run (the run began with
    another seed, which nothing recorded)."""
    import h5py

    text = INPUT.format(steps=4, tos="true").replace("seed = 11\n", "")
    path = write_input(tmp_path, data_dir, text)
    first = trainer(path, on_step=interrupt_at(2))
    try:
        with pytest.raises(TrainingInterrupted):
            first.run()
    finally:
        first.close()
    ckpt = path.parent / "model.ckpt.h5"
    with h5py.File(ckpt, "r+") as h5:   # as the previous version wrote it
        h5_attrs = h5.attrs if "seed" in h5.attrs else next(g.attrs for g in h5.values() if "seed" in g.attrs)
        del h5_attrs["seed"]
    assert read_checkpoint(ckpt).seed is None
    _, _, log = run(path, restart=ckpt)
    assert "records no seed" in log and "repeats this run" not in log


@pytest.mark.parametrize("target", ["lcurve.out", "input.toml", "model.ckpt.h5"])
def test_log_path_on_another_file_of_the_run_is_refused(tmp_path, data_dir, monkeypatch, capsys, target):  # noqa: F811
    """`-l lcurve.out` (or the input, or the checkpoint) would write the log into that file: one
    line naming both, before anything is written."""
    from numdp.cli import main as cli_main

    path = write_input(tmp_path, data_dir, INPUT.format(steps=2, tos="true"))
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert cli_main(["train", str(path), "-l", target, "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "-l/--log-path" in err and "names the same file as" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_stop_during_the_last_step_completes_training(tmp_path, data_dir):  # noqa: F811
    """SIGINT during the last step: every step is done, so the model file is written (it was not:
    the run ended as interrupted with only the checkpoint) and the run ends with the signal's
    status, as numdp run does (tests/test_sweep_stop.py)."""
    path = write_input(tmp_path, data_dir, INPUT.format(steps=4, tos="true"))
    t = trainer(path, on_step=interrupt_at(4))
    try:
        with pytest.raises(KeyboardInterrupt) as ei:
            t.run()
    finally:
        t.close()
    assert ei.value.signal_status == 130
    assert "SIGINT received during the last step: training is complete (step 4" in str(ei.value)
    whole, _, _ = run(write_input(tmp_path / "b", data_dir, INPUT.format(steps=4, tos="true")))
    model = numdp.load_model(path.parent / "model.h5", nthreads=1)
    reference = numdp.load_model(tmp_path / "b" / "model.h5", nthreads=1)
    pos = np.random.default_rng(0).uniform(0, 6, (6, 3))
    types = np.array([0, 1, 1, 0, 1, 1])
    assert model.evaluate(pos, types, np.eye(3) * 6).energy == reference.evaluate(pos, types, np.eye(3) * 6).energy
