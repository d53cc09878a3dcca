"""`numdp train --init-model MODEL`: a new run starts from a trained model's weights and
statistics with a fresh optimiser (numdp.train.init_model)."""
import io

import numpy as np
import pytest

from numdp.cli import main as cli_main
from numdp.errors import InputError
from numdp.io.model_file import read_model, write_model
from numdp.train.config import load_config
from numdp.train.flat import FlatParams
from numdp.model.dp_model import DPModel
from numdp.model.metrics import ErrorSums
from numdp.train.data import BatchSampler, load_dataset, system_probs
from numdp.train.loop import Trainer
from test_train_run import data_dir, make_input, run  # noqa: F401  (data_dir is a fixture)
from tests_util import shift_fit_bound


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):  # noqa: F811
    """A model trained 8 steps (model.h5 in the run folder) and its input."""
    path = make_input(tmp_path_factory.mktemp("base"), data_dir, steps=8)
    run(path)
    return path


def layers(params):
    return [(l.w, l.b, l.idt) for net in params.descriptor.embeddings + params.fitting.nets for l in net.layers]


def test_starts_from_the_model_with_a_fresh_optimiser(tmp_path, data_dir, trained):  # noqa: F811
    model_path = trained.parent / "model.h5"
    model = read_model(model_path)
    path = make_input(tmp_path, data_dir, steps=4)
    trainer = Trainer(load_config(path), init_model=model_path, nthreads=1, stream=io.StringIO())
    try:
        p = trainer.params
        d, m = p.descriptor, model.descriptor
        assert d.sel == m.sel
        assert np.array_equal(d.davg, m.davg) and np.array_equal(d.dstd, m.dstd)
        assert np.array_equal(p.out_bias, model.out_bias) and np.array_equal(p.fitting.bias_atom_e, model.fitting.bias_atom_e)
        assert p.min_nbor_dist == model.min_nbor_dist
        # the weights are the model's, exactly
        for a, b in zip(layers(p), layers(model)):
            for x, y in zip(a, b):
                if x is None:
                    assert y is None
                else:
                    assert np.array_equal(x, y)
        assert np.array_equal(trainer.flat.theta, FlatParams.bind(read_model(model_path)).theta)
        assert not trainer.adam.m.any() and not trainer.adam.v.any() and trainer.adam.t == 0
        assert trainer.start_step == 0
        history = trainer.run()
    finally:
        trainer.close()
    rows = np.loadtxt(path.parent / "lcurve.out")
    assert rows[:, 0].tolist() == [1, 4] and np.isfinite(rows).all()
    del history


def test_first_lcurve_line_is_the_models_errors_on_that_batch(tmp_path, data_dir, trained):  # noqa: F811
    """The training RMSEs of lcurve's first row (row 1: step 0's batch, before its update) of a
    run from a .dp copy of the model equal the model's errors, evaluated by numdp's MD evaluator
    (another code path), on the batch the sampler draws first."""
    dp = tmp_path / "model.dp"
    model = read_model(trained.parent / "model.h5")
    write_model(model, dp)
    path = make_input(tmp_path, data_dir, steps=4)
    assert cli_main(["train", str(path), "--init-model", str(dp), "--threads", "1"]) == 0
    row = np.loadtxt(path.parent / "lcurve.out")[0]
    cfg = load_config(path)
    systems = load_dataset(cfg.training.systems, cfg.type_map, cfg.training.batch_size)
    prob = system_probs([s.nbatches for s in systems], cfg.training.auto_prob, cfg.training.sys_probs)
    k, idx = BatchSampler(systems, [cfg.training.seed, 1], prob).next()  # the trainer's first draw
    s, evaluator, sums = systems[k], DPModel(model, nthreads=1), ErrorSums()
    for f in idx:
        r = evaluator.evaluate(s.coords[f], s.types, None if s.boxes is None else s.boxes[f], atom_virial=False)
        sums.add_energy(r.energy - s.energy[f], s.natoms)
        sums.add_forces(r.forces - s.forces[f])
    # lcurve.out holds 7 significant digits (%13.6e): relative rounding <= 5e-7
    assert row[4] == pytest.approx(sums.rmse_e, rel=1e-6)
    assert row[6] == pytest.approx(sums.rmse_f, rel=1e-6)


def test_deepmd_kits_option_names():
    """DeePMD-kit's --init-frz-model (start from a frozen model, DP-GEN's
    training_init_frozen_model) is numdp's --init-model."""
    import argparse

    from numdp.commands.train import configure

    parser = argparse.ArgumentParser()
    configure(parser)
    # dp train 3.2's names: -i --init-model, -f --init-frz-model, -t --finetune, -r --restart
    for flag in ("--init-model", "--init-frz-model", "-i", "-f"):
        assert parser.parse_args(["in.json", flag, "old/init.pb"]).init_model == "old/init.pb"
    # and DP-GEN's --skip-neighbor-stat (accepted)
    args = parser.parse_args(["in.json", "-t", "old/init.pb", "--skip-neighbor-stat"])
    assert (args.finetune, args.skip_neighbor_stat) == ("old/init.pb", True)
    assert parser.parse_args(["in.json", "-r", "model.ckpt"]).restart == "model.ckpt"


def test_mismatch_and_conflicts_are_one_line_errors(tmp_path, data_dir, trained, capsys):  # noqa: F811
    model_path = trained.parent / "model.h5"
    path = make_input(tmp_path, data_dir, steps=4)
    path.write_text(path.read_text().replace("[model.fitting]\nneuron = [8, 8]", "[model.fitting]\nneuron = [8, 6]"))
    with pytest.raises(InputError, match=r"--init-model: \[model.fitting\] neuron: the model has \[8, 8\], "
                                         r"input.toml has \[8, 6\]"):
        Trainer(load_config(path), init_model=model_path, nthreads=1, stream=io.StringIO())
    assert cli_main(["train", str(path), "--init-model", str(model_path)]) == 2
    assert cli_main(["train", str(path), "--init-model", str(model_path), "--restart", "x.h5"]) == 2
    err = capsys.readouterr().err
    assert "--restart and --init-model" in err


def test_finetune_moves_the_bias_to_the_data(tmp_path, data_dir, trained, capsys):  # noqa: F811
    """--finetune = --init-model, then the model's out_bias shifted by the least-squares fit of
    its energy errors over the statistics frames: a model whose bias is off by δ comes back to
    the trained model's bias up to that fit of its own errors; weights are the model's."""
    from numdp.model.bias import fit_type_shift
    from numdp.train.stats import stat_frames

    model = read_model(trained.parent / "model.h5")
    off = read_model(trained.parent / "model.h5")
    off.out_bias = model.out_bias + np.array([0.4, -0.3])
    write_model(off, tmp_path / "off.h5")
    path = make_input(tmp_path, data_dir, steps=4)
    cfg = load_config(path)
    trainer = Trainer(cfg, init_model=tmp_path / "off.h5", finetune=True, nthreads=1, stream=io.StringIO())
    try:
        # the shift the trained model itself would get on these frames: the finetuned bias is
        # the trained model's plus that (δ cancels exactly: errors are linear in the bias)
        frames = stat_frames(trainer.train_sys, cfg.training.data_stat_nbatch,
                             np.random.default_rng([cfg.training.seed, 3]))
        ev = DPModel(model, nthreads=1)
        counts, err = [], []
        for s, idx in zip(trainer.train_sys, frames):
            for f in idx:
                r = ev.evaluate(s.coords[f], s.types, None if s.boxes is None else s.boxes[f], atom_virial=False)
                counts.append(np.bincount(s.types, minlength=2))
                err.append(s.energy[f] - r.energy)
        expect = model.out_bias + fit_type_shift(np.array(counts), np.array(err))
        # the trainer's passes against the evaluator: chains of nloc * nnei + dim_out terms at most
        # (tests/test_train_grad.py), in each frame's energy
        d = model.descriptor
        n_terms = max(s.natoms for s in trainer.train_sys) * d.nnei + d.dim_out
        assert np.allclose(trainer.params.out_bias, expect, rtol=0,
                           atol=shift_fit_bound(counts, [s.energy[f] for s, idx in zip(trainer.train_sys, frames)
                                                         for f in idx], n_terms))
        assert not np.allclose(trainer.params.out_bias, off.out_bias, rtol=0, atol=1e-3)
        assert np.array_equal(trainer.flat.theta, FlatParams.bind(read_model(tmp_path / "off.h5")).theta)
    finally:
        trainer.close()
    assert cli_main(["train", str(path), "--finetune", str(tmp_path / "off.h5"), "--init-model", "x.h5"]) == 2
    assert "--finetune with --restart or --init-model" in capsys.readouterr().err
    assert cli_main(["train", str(path), "--finetune", str(tmp_path / "off.h5"), "--threads", "1"]) == 0
    other = read_model(trained.parent / "model.h5")
    other.type_map = ["B", "A"]   # (DeePMD-kit's --finetune maps types; numdp refuses, naming the option)
    write_model(other, tmp_path / "other.h5")
    assert cli_main(["train", str(path), "--finetune", str(tmp_path / "other.h5"), "--threads", "1"]) == 2
    assert "other.h5: --finetune: [model] type_map: the model has ['B', 'A']" in capsys.readouterr().err
