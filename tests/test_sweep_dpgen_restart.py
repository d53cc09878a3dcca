"""DP-GEN 0.14's restart and reuse branches of its training stage with numdp as `train_command`.

DP-GEN (dpgen/generator/run.py run_train_dp) runs in each task folder
`/bin/sh -c '{ if [ ! -f model.ckpt.pt ]; then numdp --pt train input.json [--init-model
old/model.ckpt]; else numdp --pt train input.json --restart model.ckpt; fi }'` (TensorFlow:
`model.ckpt.index`, no --pt), hands dpdispatcher the backward_files frozen_model.pth, lcurve.out,
train.log, `checkpoint` and model.ckpt.pt (TensorFlow: model.ckpt.meta / .index /
.data-00000-of-00001) and, with training_init_model or training_reuse_iter, the forward file
old/model.ckpt.pt (or the three TensorFlow files), where make_train linked old/ to the previous
task's model.ckpt*.  numdp wrote none of these names: a task interrupted by its batch system
started over on its re-run, dpdispatcher's download stopped at the first missing backward file
(FileNotFoundError), and a reuse iteration's upload at the missing old/model.ckpt.pt.  Found by
acting the branch out, and through dpdispatcher 1.1's LocalContext over two iterations.
"""
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from numdp.cli import main as cli_main
from numdp.io.model_file import read_model
from numdp.train import checkpoint as ckmod
from numdp.train.checkpoint import DeepmdNames, read_checkpoint
from numdp.train.config import load_config
from numdp.train.flat import FlatParams
from numdp.train.loop import Trainer

from test_sweep_dpgen_train import dpgen_input, task
from test_train_run import data_dir  # noqa: F401  (the fixture)

ROOT = Path(__file__).resolve().parents[1]
TF_FILES = ["model.ckpt.meta", "model.ckpt.index", "model.ckpt.data-00000-of-00001"]
BACKENDS = {   # DP-GEN's train_backend: (numdp's option, the file its test looks for, its ckpt files)
    "pytorch": (["--pt"], "model.ckpt.pt", ["model.ckpt.pt"]),
    "tensorflow": ([], "model.ckpt.index", TF_FILES),
}


def dpgen_line(backend, init=False):
    """run_train_dp's first command, with numdp for dp."""
    options, test_file, _ = BACKENDS[backend]
    cmd = " ".join(["numdp", *options, "train", "input.json"])
    init_flag = " --init-model old/model.ckpt" if init else ""
    return (f"{{ if [ ! -f {test_file} ]; then {cmd}{init_flag}; "
            f"else {cmd} --restart model.ckpt; fi }}")


def backward_files(backend):
    suffix = ".pth" if backend == "pytorch" else ".pb"
    return [f"frozen_model{suffix}", "lcurve.out", "checkpoint", *BACKENDS[backend][2]]


def theta(path):
    return FlatParams.bind(read_model(path)).theta


def shell_env(tmp_path):
    """PATH with a `numdp` that runs this interpreter's numdp (the tree under test), one thread."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "numdp"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m numdp "$@"\n')
    shim.chmod(0o755)
    return dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", NUMDP_NUM_THREADS="1",
                PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


def lcurve_rows(path):
    return [line for line in path.read_text().splitlines() if line and not line.startswith("#")]


def test_dpgen_restart_branch_continues_a_task_its_batch_system_stopped(tmp_path, data_dir, monkeypatch):  # noqa: F811
    """The pytorch branch acted out: the command line run under /bin/sh, SIGTERM to its process
    group (a batch system's stop) after the first lcurve row, the same line run again.  The
    re-run takes the --restart branch (model.ckpt.pt is there) and ends on the uninterrupted
    run's learning curve and parameters, bit for bit (one thread: sums in one order)."""
    steps = 200
    tree = dpgen_input(["../data.init/train/pbc"], 7, steps=steps)
    tree["training"].update(disp_freq=1, save_freq=50)
    t = task(tmp_path / "a", 0, 0, data_dir, tree)
    env = shell_env(tmp_path)
    line = ["/bin/sh", "-c", dpgen_line("pytorch")]
    with open(t / "train.log", "w") as log:
        proc = subprocess.Popen(line, cwd=t, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while not ((t / "lcurve.out").exists() and lcurve_rows(t / "lcurve.out")):
                assert proc.poll() is None and time.monotonic() < deadline, (t / "train.log").read_text()
                time.sleep(0.01)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)   # the shell and numdp, as a batch system does
        proc.wait()
        while True:   # the shell dies at once; numdp finishes its step and writes the checkpoint
            try:
                os.killpg(proc.pid, 0)
                time.sleep(0.01)
            except ProcessLookupError:
                break
    first = (t / "train.log").read_text()
    assert "interrupted after step" in first, first
    stopped = read_checkpoint(t / "model.ckpt").step
    assert 0 < stopped < steps and (t / "model.ckpt.pt").is_file()
    assert (t / "checkpoint").read_text() == "model.ckpt.pt"
    again = subprocess.run(line, cwd=t, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"continuing from model.ckpt at step {stopped}" in again.stdout
    assert not list(t.glob("#*#"))   # a restart backs nothing up
    whole = task(tmp_path / "b", 0, 0, data_dir, tree)
    monkeypatch.chdir(whole)
    assert cli_main(["--pt", "train", "input.json", "--threads", "1"]) == 0
    assert (t / "lcurve.out").read_text() == (whole / "lcurve.out").read_text()
    assert np.array_equal(theta(t / "model.h5"), theta(whole / "model.h5"))
    assert read_checkpoint(t / "model.ckpt.pt").step == steps


def interrupt_at(monkeypatch, step):
    """SIGTERM to this process after update `step` of the next run (as a batch system's)."""
    original = Trainer.train_step

    def train_step(self, s, display):
        out = original(self, s, display)
        if s + 1 == step:
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(Trainer, "train_step", train_step)


def download(remote, local, files):
    """dpdispatcher's download of `files` from `remote` to `local`: each must exist (else its
    FileNotFoundError); links are copied by content (LocalContext's copyfile, SSH's tar -h)."""
    local.mkdir(parents=True)
    for name in files:
        assert (remote / name).is_file(), f"dpdispatcher: cannot find download file {remote / name}"
        shutil.copyfile(remote / name, local / name)


@pytest.mark.parametrize("backend", ["tensorflow", "pytorch"])
def test_reuse_iteration_starts_from_the_files_dpgen_brings_and_sends(backend, tmp_path, data_dir,
                                                                      monkeypatch, capsys):  # noqa: F811
    """Iteration 0 runs remotely, is stopped by SIGTERM at step 3 and re-run by DP-GEN's line
    (the --restart branch); its backward_files come back (each must exist); `numdp freeze` of
    the brought-back folder alone follows its `checkpoint`.  Iteration 1 (training_reuse_iter):
    make_train links old/ to those files, its forward_files go to a fresh remote folder, and
    `--init-model old/model.ckpt` starts from iteration 0's last parameters."""
    options = BACKENDS[backend][0]
    remote0 = task(tmp_path / "remote", 0, 0, data_dir, dpgen_input(["../data.init/train/pbc"], 7, steps=6))
    monkeypatch.chdir(remote0)
    interrupt_at(monkeypatch, 3)
    assert cli_main([*options, "train", "input.json"]) == 143
    assert read_checkpoint(remote0 / BACKENDS[backend][1]).step == 3
    monkeypatch.undo()
    monkeypatch.chdir(remote0)
    assert cli_main([*options, "train", "input.json", "--restart", "model.ckpt"]) == 0
    assert "continuing from model.ckpt at step 3" in capsys.readouterr().out
    assert cli_main([*options, "freeze"]) == 0
    final = read_checkpoint(remote0 / "model.ckpt")
    assert final.step == 6

    local0 = tmp_path / "local" / "iter.000000" / "00.train" / "000"
    download(remote0, local0, backward_files(backend))
    monkeypatch.chdir(local0)
    (local0 / backward_files(backend)[0]).unlink()
    assert cli_main([*options, "freeze"]) == 0   # model.ckpt is not there: dp's `checkpoint` names it
    assert f"(step 6 of {BACKENDS[backend][1]}" in capsys.readouterr().out
    assert np.array_equal(theta(local0 / backward_files(backend)[0]), final.theta)

    local1 = tmp_path / "local" / "iter.000001" / "00.train" / "000"
    (local1 / "old").mkdir(parents=True)
    for f in sorted(local0.glob("model.ckpt*")):   # make_train's _link_old_models
        os.symlink(os.path.relpath(f, local1 / "old"), local1 / "old" / f.name)
    remote1 = task(tmp_path / "remote", 1, 0, data_dir,
                   dpgen_input(["../data.init/train/pbc", "../data.init/train/cluster"], 17, steps=2, reuse=1))
    (remote1 / "old").mkdir()
    for name in BACKENDS[backend][2]:
        assert (local1 / "old" / name).is_file(), f"dpdispatcher: cannot find upload file old/{name}"
        shutil.copyfile(local1 / "old" / name, remote1 / "old" / name)
    monkeypatch.chdir(remote1)
    trainer = Trainer(load_config(remote1 / "input.json"), nthreads=1, init_model="old/model.ckpt",
                      stream=__import__("io").StringIO())
    try:
        assert np.array_equal(trainer.flat.theta, final.theta)
    finally:
        trainer.close()
    assert cli_main([*options, "train", "input.json", "--init-model", "old/model.ckpt"]) == 0
    assert f"initialised from old/{BACKENDS[backend][1]}" in capsys.readouterr().out
    assert all((remote1 / name).is_file() for name in backward_files(backend)[1:])


def test_dp_names_only_for_input_json_and_the_backend_chosen(tmp_path, data_dir, monkeypatch, capsys):  # noqa: F811
    """dp's names are left for DeePMD-kit's input.json, for dp's backend: none for a TOML input;
    .index and its placeholders by default (dp's tensorflow) and with -b tf; .pt with --pt or
    DP_BACKEND=pytorch; none for jax.  A new run backs them up with the checkpoint they name; an
    unknown DP_BACKEND and a save_ckpt on dp's pointer file are one line each."""
    from test_train_run import INPUT

    toml = tmp_path / "toml"
    toml.mkdir()
    os.symlink(data_dir, toml / "data")
    (toml / "input.toml").write_text(INPUT.format(steps=2, tos="true"))
    monkeypatch.chdir(toml)
    assert cli_main(["--pt", "train", "input.toml"]) == 0
    assert sorted(p.name for p in toml.iterdir()) == ["data", "input.toml", "lcurve.out", "model.ckpt.h5", "model.h5"]

    names = {"tf": ["checkpoint", *TF_FILES], "pt": ["checkpoint", "model.ckpt.pt"], "jax": []}
    runs = [("default", [], {}, "tf"), ("b", ["-b", "tf"], {}, "tf"), ("env", [], {"DP_BACKEND": "pytorch"}, "pt"),
            ("jax", ["--jax"], {}, "jax")]
    for label, options, env, kind in runs:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        t = task(tmp_path / label, 0, 0, data_dir, dpgen_input(["../data.init/train/pbc"], 3, steps=2, save_ckpt=None))
        monkeypatch.chdir(t)
        assert cli_main([*options, "train", "input.json"]) == 0
        got = sorted(p.name for p in t.iterdir())
        assert got == sorted(["input.json", "lcurve.out", "model.ckpt.h5", "model.h5", *names[kind]]), label
        for key in env:
            monkeypatch.delenv(key)
    # a new run in the DP_BACKEND=pytorch folder keeps the earlier run's files
    t = tmp_path / "env" / "iter.000000" / "00.train" / "000"
    monkeypatch.chdir(t)
    before = read_checkpoint(t / "model.ckpt.h5").theta
    assert cli_main(["--pt", "train", "input.json"]) == 0
    assert np.array_equal(read_checkpoint(t / "#model.ckpt.pt.1#").theta, before)
    assert (t / "#checkpoint.1#").is_file() and os.path.samefile(t / "model.ckpt.pt", t / "model.ckpt.h5")
    # --restart model.ckpt: the prefix, numdp's model.ckpt.h5 first
    assert cli_main(["--pt", "train", "input.json", "--restart", "model.ckpt"]) == 0
    capsys.readouterr()
    monkeypatch.setenv("DP_BACKEND", "pytroch")
    assert cli_main(["train", "input.json"]) == 2
    assert capsys.readouterr().err.startswith("numdp train: error: DP_BACKEND pytroch: not a DeePMD-kit backend")
    monkeypatch.delenv("DP_BACKEND")
    # dp's pointer file would write over a checkpoint named `checkpoint`: refused before the run
    t = task(tmp_path / "clash", 0, 0, data_dir, dpgen_input(["../data.init/train/pbc"], 3, steps=2,
                                                              save_ckpt="checkpoint"))
    monkeypatch.chdir(t)
    assert cli_main(["train", "input.json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("numdp train: error: input.json: DeePMD-kit's checkpoint name checkpoint: names the "
                          "same file as training.save_ckpt") and sorted(p.name for p in t.iterdir()) == ["input.json"]


def test_publish_copies_where_hard_links_are_refused_and_writes_dp_pointers(tmp_path, monkeypatch):
    """DeepmdNames.publish: model.ckpt.pt / .index a hard link to the checkpoint, a copy of the same
    bytes where the file system refuses links; the pointer files as dp's (pytorch: the name;
    tensorflow: TensorFlow's text format); a republish after the next checkpoint follows it."""
    monkeypatch.chdir(tmp_path)
    ck = tmp_path / "model.ckpt"
    ck.write_bytes(b"first")
    pt = DeepmdNames.of(tmp_path / "model.ckpt", "pytorch")
    pt.publish(ck)
    assert os.path.samefile(tmp_path / "model.ckpt.pt", ck)
    assert (tmp_path / "checkpoint").read_text() == "model.ckpt.pt"
    ck.unlink()
    ck.write_bytes(b"second")   # a new file at the name, as the atomic rename leaves it
    monkeypatch.setattr(ckmod.os, "link", lambda *a: (_ for _ in ()).throw(OSError(1, "no links here")))
    pt.publish(ck)
    assert (tmp_path / "model.ckpt.pt").read_bytes() == b"second"
    assert not os.path.samefile(tmp_path / "model.ckpt.pt", ck)
    assert not list(tmp_path.glob(".*tmp"))
    tf = DeepmdNames.of(tmp_path / "sub" / "model.ckpt", "tensorflow")
    (tmp_path / "sub").mkdir()
    tf.publish(ck)
    assert (tmp_path / "sub" / "checkpoint").read_text() == (
        'model_checkpoint_path: "model.ckpt"\nall_model_checkpoint_paths: "model.ckpt"\n')
    assert "model.ckpt.index" in (tmp_path / "sub" / "model.ckpt.meta").read_text()
    assert DeepmdNames.of(None, "pytorch") is None and DeepmdNames.of(tmp_path / "m", "jax") is None
