"""numdp as DP-GEN 0.14's training command (`train_command`): the commands its run stage
(dpgen/generator/run.py run_train_dp) runs in iter.N/00.train/00k, and the files its make_train /
post_train read and link, as with DeePMD-kit 3.2's `dp`.

Found by a sweep acting as DP-GEN's 00.train over water and Cu chains (3 iterations, 2 models,
reuse from iteration 1, dp_compress): iteration 1's `numdp train input.json --init-model
old/model.ckpt` (old/model.ckpt: a link to the previous iteration's checkpoint) was refused
("unknown format 'numdp-train-checkpoint'"); `numdp freeze` wrote frozen_model.h5, so
post_train's graph.00N.pb -> 00N/frozen_model.pb pointed at nothing; `numdp compress` without
arguments was refused (dp compress reads frozen_model.pb, writes frozen_model_compressed.pb)."""
import json
import os

import numpy as np
import pytest

from numdp.cli import main as cli_main
from numdp.io.model_file import read_model
from numdp.train.checkpoint import read_checkpoint
from numdp.train.config import load_config
from numdp.train.flat import FlatParams
from numdp.train.loop import Trainer

from test_train_run import data_dir  # noqa: F401  (the fixture)


def dpgen_input(systems, seed, steps=4, save_ckpt="model.ckpt", reuse=None):
    """An input.json as DP-GEN's make_train writes it: its default_training_param with the
    systems, per-system batch sizes, the seeds, a type_map longer than the data's (C absent);
    `reuse`: DP-GEN's training_reuse_* edits (auto_prob blocks, start_lr, start prefactors)."""
    tree = {
        "model": {"type_map": ["A", "B", "C"],
                  "descriptor": {"type": "se_e2_a", "sel": [30, 30, 2], "rcut": 4.0, "rcut_smth": 1.0,
                                 "neuron": [4, 8], "axis_neuron": 2, "resnet_dt": False, "seed": seed},
                  "fitting_net": {"neuron": [8, 8], "resnet_dt": True, "seed": seed + 1}},
        "learning_rate": {"type": "exp", "start_lr": 1e-3, "stop_lr": 1e-5, "decay_steps": 2},
        "loss": {"start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000, "limit_pref_f": 1,
                 "start_pref_v": 0.0, "limit_pref_v": 0.0},
        "training": {"numb_steps": steps, "disp_file": "lcurve.out", "disp_freq": 2, "save_freq": 2,
                     "seed": seed + 2, "disp_training": True, "time_training": True,
                     "training_data": {"systems": systems, "batch_size": [1] * len(systems),
                                       "set_prefix": "set"}},
    }
    if save_ckpt is not None:
        tree["training"]["save_ckpt"] = save_ckpt
    if reuse is not None:
        old = reuse
        tree["training"]["training_data"]["auto_prob"] = (
            f"prob_sys_size; 0:{old}:0.500000; {old}:{len(systems)}:0.500000")
        tree["learning_rate"]["start_lr"] = 1e-4
        tree["loss"].update(start_pref_e=0.1, start_pref_f=100)
    return tree


def task(root, it, model, data_dir, tree):  # noqa: F811
    """iter.IT/00.train/MODEL with data.init linked and input.json written (make_train)."""
    work = root / f"iter.{it:06d}" / "00.train"
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "data.init").exists():
        os.symlink(data_dir, work / "data.init")
    t = work / f"{model:03d}"
    t.mkdir()
    (t / "input.json").write_text(json.dumps(tree, indent=4))
    return t


def link_old(prev, t):
    """make_train's _link_old_models: old/ holds links to the previous task's model.ckpt*."""
    (t / "old").mkdir()
    for f in sorted(prev.glob("model.ckpt*")):
        os.symlink(os.path.relpath(f, t / "old"), t / "old" / f.name)


def post_train(work, model, name):
    """post_train: graph.00N.pb -> 00N/frozen_model.pb (frozen_model_compressed.pb)."""
    graph = work / f"graph.{model:03d}{os.path.splitext(name)[1]}"
    os.symlink(os.path.join(f"{model:03d}", name), graph)
    return graph


def theta(path):
    return FlatParams.bind(read_model(path)).theta


def test_dpgen_reuse_chain_init_model_freeze_compress(tmp_path, data_dir, monkeypatch, capsys):  # noqa: F811
    """Iteration 0: `numdp train input.json`, `numdp freeze`, `numdp compress` as DP-GEN runs
    them (no -o, no -i); the frozen model is frozen_model.pb (numdp's HDF5 model, read by content),
    the compressed one frozen_model_compressed.pb, both reachable through post_train's
    graph.000.pb.  Iteration 1 (training_reuse_iter 1): `--init-model old/model.ckpt` starts from
    the previous iteration's checkpoint's weights and statistics, at reuse's start_lr."""
    root = tmp_path / "dpgen"
    sys0 = ["../data.init/train/pbc"]
    t0 = task(root, 0, 0, data_dir, dpgen_input(sys0, 7))
    monkeypatch.chdir(t0)
    assert cli_main(["train", "input.json"]) == 0
    assert cli_main(["freeze"]) == 0
    assert "wrote frozen_model.pb (step 4 of model.ckpt; numdp's HDF5 model" in capsys.readouterr().out
    assert np.array_equal(theta(t0 / "frozen_model.pb"), theta(t0 / "model.h5"))
    assert cli_main(["compress"]) == 0
    assert "wrote frozen_model_compressed.pb" in capsys.readouterr().out
    work0 = t0.parent
    graph = post_train(work0, 0, "frozen_model_compressed.pb")
    assert read_model(graph).descriptor.tables is not None
    (work0 / "graph.000.pb").unlink()   # without dp_compress: the frozen model
    assert np.array_equal(theta(post_train(work0, 0, "frozen_model.pb")), theta(t0 / "model.h5"))

    # iteration 1: the earlier data and a new system; reuse from this iteration on
    sys1 = sys0 + ["../data.init/train/cluster"]
    t1 = task(root, 1, 0, data_dir, dpgen_input(sys1, 17, steps=2, reuse=1))
    link_old(t0, t1)
    monkeypatch.chdir(t1)
    ck = read_checkpoint(t0 / "model.ckpt")
    trainer = Trainer(load_config(t1 / "input.json"), nthreads=1, init_model="old/model.ckpt",
                      stream=__import__("io").StringIO())
    try:
        assert np.array_equal(trainer.flat.theta, ck.theta)
        assert np.array_equal(trainer.params.descriptor.davg, ck.davg)
        assert trainer.sched.lr(0) == pytest.approx(1e-4)
    finally:
        trainer.close()
    assert cli_main(["train", "input.json", "--init-model", "old/model.ckpt"]) == 0
    assert "initialised from old/model.ckpt" in capsys.readouterr().out
    assert cli_main(["freeze"]) == 0
    assert (t1 / "frozen_model.pb").is_file()
    # DP-GEN re-running the task: the earlier outputs kept, the model frozen again
    assert cli_main(["train", "input.json", "--init-model", "old/model.ckpt"]) == 0
    assert cli_main(["freeze"]) == 0
    assert (t1 / "#frozen_model.pb.1#").is_file() and (t1 / "#lcurve.out.1#").is_file()


def test_checkpoint_options_take_deepmd_kits_prefix(tmp_path, data_dir, monkeypatch, capsys):  # noqa: F811
    """`--restart model.ckpt` and `--init-model old/model.ckpt` (DP-GEN's command lines) are
    DeePMD-kit's checkpoint prefixes: with numdp's default save_ckpt the file is model.ckpt.h5;
    `numdp freeze -c model.ckpt` too."""
    t0 = task(tmp_path, 0, 0, data_dir, dpgen_input(["../data.init/train/pbc"], 3, save_ckpt=None))
    monkeypatch.chdir(t0)
    assert cli_main(["train", "input.json"]) == 0
    assert (t0 / "model.ckpt.h5").is_file() and not (t0 / "model.ckpt").exists()
    assert cli_main(["train", "input.json", "--restart", "model.ckpt"]) == 0   # at its last step
    assert "continuing from model.ckpt.h5 at step 4" in capsys.readouterr().out
    assert cli_main(["freeze", "-c", "model.ckpt", "-o", "f.h5"]) == 0
    assert "step 4 of model.ckpt.h5" in capsys.readouterr().out
    t1 = task(tmp_path, 1, 0, data_dir, dpgen_input(["../data.init/train/pbc", "../data.init/train/cluster"],
                                                     5, steps=2, reuse=1))
    link_old(t0, t1)
    monkeypatch.chdir(t1)
    assert cli_main(["train", "input.json", "--init-model", "old/model.ckpt"]) == 0
    assert "initialised from old/model.ckpt.h5" in capsys.readouterr().out
    assert cli_main(["train", "input.json", "--init-model", "old/nothing"]) == 2
    assert capsys.readouterr().err.startswith("numdp train: error: old/nothing: model file")


def test_freeze_and_compress_default_names_follow_dp_backend(tmp_path, data_dir, monkeypatch, capsys):  # noqa: F811
    """DP-GEN's train_backend "pytorch" links frozen_model.pth: with DeePMD-kit's PyTorch backend
    chosen (DP_BACKEND, as dp reads it; `numdp --pt` on the command line) freeze writes
    frozen_model.pth and compress frozen_model_compressed.pth; another backend numdp has no name
    for is one line."""
    t0 = task(tmp_path, 0, 0, data_dir, dpgen_input(["../data.init/train/pbc"], 3, steps=2))
    monkeypatch.chdir(t0)
    assert cli_main(["train", "input.json"]) == 0
    monkeypatch.setenv("DP_BACKEND", "pytorch")
    assert cli_main(["freeze"]) == 0
    assert cli_main(["compress"]) == 0
    assert read_model(t0 / "frozen_model_compressed.pth").descriptor.tables is not None
    assert np.array_equal(theta(t0 / "frozen_model.pth"), theta(t0 / "model.h5"))
    assert not (t0 / "frozen_model.pb").exists()
    monkeypatch.setenv("DP_BACKEND", "jax")
    capsys.readouterr()
    assert cli_main(["freeze"]) == 2
    assert capsys.readouterr().err.startswith("numdp freeze: error: DP_BACKEND jax: numdp writes models")
    monkeypatch.delenv("DP_BACKEND")
    assert cli_main(["compress", "-i", "missing.pb"]) == 2
    # what the review found: a directory under the default output name was found only after the
    # tabulation; --restart of a folder said 'checkpoint not found'; -o x.pb's refusal contradicted
    # the default names
    assert cli_main(["freeze"]) == 0
    (t0 / "frozen_model_compressed.pb").mkdir()
    capsys.readouterr()
    assert cli_main(["compress"]) == 2
    err = capsys.readouterr()
    assert err.err == "numdp compress: error: frozen_model_compressed.pb: is a directory; name the output model with -o\n"
    assert "table" not in err.out + err.err
    (t0 / "ckdir").mkdir()
    assert cli_main(["train", "input.json", "--restart", "ckdir"]) == 2
    assert capsys.readouterr().err.startswith("numdp train: error: ckdir: is a directory, not a checkpoint file")
    assert cli_main(["freeze", "-o", "x.pb"]) == 2
    assert "only under dp freeze's and dp compress's default names" in capsys.readouterr().err


def test_dp_backend_options_choose_the_default_names(tmp_path, data_dir, monkeypatch):  # noqa: F811
    """DP-GEN's train_backend "pytorch" runs `dp --pt train` / `dp --pt freeze` / `dp --pt
    compress`: numdp takes dp's backend options before the command; --pt gives the .pth names."""
    t0 = task(tmp_path, 0, 0, data_dir, dpgen_input(["../data.init/train/pbc"], 3, steps=2))
    monkeypatch.chdir(t0)
    assert cli_main(["--pt", "train", "input.json", "--skip-neighbor-stat"]) == 0
    assert cli_main(["--pt", "freeze"]) == 0 and (t0 / "frozen_model.pth").is_file()
    assert cli_main(["--pt", "compress"]) == 0 and (t0 / "frozen_model_compressed.pth").is_file()
    assert cli_main(["-b", "tensorflow", "freeze"]) == 0 and (t0 / "frozen_model.pb").is_file()
