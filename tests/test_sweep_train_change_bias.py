"""`numdp change-bias` on a checkpoint of `numdp train`, as `dp change-bias` takes DeePMD-kit's
checkpoints (`dp --pt change-bias model.ckpt.pt -s data`): before, numdp stopped with
"unknown format 'numdp-train-checkpoint' (expected 'numdp-model')".  The output is the same
checkpoint with the new out_bias (to continue with --restart); its model is the frozen model's
with that bias, the bias numdp change-bias gives the frozen model."""
import numpy as np

from numdp.cli import main as cli_main
from numdp.io.model_file import read_model
from numdp.model.dp_model import DPModel
from numdp.train.checkpoint import Checkpoint, read_checkpoint, write_checkpoint
from numdp.train.config import model_config
from numdp.train.flat import FlatParams
from numdp.train.init import initial_model
from tests_util import write_labelled_systems

INPUT = """[model]
type_map = ["A", "B"]
[model.descriptor]
rcut = 4.0
rcut_smth = 1.0
sel = [20, 20]
neuron = [4, 8]
axis_neuron = 2
seed = 3
[model.fitting]
neuron = [8, 8]
seed = 4
[training]
systems = ["data"]
numb_steps = 10
"""


def _checkpoint(tmp_path):
    """A checkpoint of INPUT's networks (random weights, bias [-1.5, -3.25] eV) at step 5, and
    two systems labelled by its model with the bias [-1.2, -3.5] eV."""
    mc = model_config(INPUT, "input.toml")
    nnei = 40
    davg, dstd = np.zeros((2, nnei, 4)), np.full((2, nnei, 4), 0.5)
    params = initial_model(mc, [20, 20], davg, dstd, np.array([-1.5, -3.25]), 0)
    flat = FlatParams.bind(params)
    flat.theta[:] = np.random.default_rng(5).normal(0.0, 0.3, flat.theta.shape)
    rng = np.random.default_rng(6)
    ck = Checkpoint(step=5, theta=flat.theta.copy(), adam_m=rng.normal(size=flat.size),
                    adam_v=rng.uniform(size=flat.size), adam_t=5, sel=[20, 20], davg=davg, dstd=dstd,
                    out_bias=params.out_bias.copy(), s_range=None, min_nbor_dist=None, sampler={"k": 1},
                    valid_sampler=None, input_text=INPUT, elapsed=1.5)
    write_checkpoint(ck, tmp_path / "model.ckpt.h5")
    params.out_bias = np.array([-1.2, -3.5])
    write_labelled_systems(tmp_path / "data", DPModel(params, nthreads=1), ((5, 3), (2, 6)), 2, 5.0, 50)
    return ck


def test_change_bias_of_a_training_checkpoint(tmp_path, monkeypatch, capsys):
    ck = _checkpoint(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert cli_main(["change-bias", "model.ckpt.h5", "-s", "data", "--threads", "1"]) == 0
    assert "wrote model.ckpt_updated.h5" in capsys.readouterr().out
    out = read_checkpoint(tmp_path / "model.ckpt_updated.h5")
    assert np.allclose(out.out_bias, [-1.2, -3.5], rtol=0, atol=1e-9)
    for name in ("theta", "adam_m", "adam_v", "davg", "dstd"):
        assert np.array_equal(getattr(out, name), getattr(ck, name)), name
    assert (out.step, out.adam_t, out.sel, out.sampler, out.input_text) == (5, 5, [20, 20], {"k": 1}, INPUT)
    # the same bias as numdp change-bias on the frozen model
    assert cli_main(["freeze", "-c", "model.ckpt.h5", "-o", "frozen.h5"]) == 0
    assert cli_main(["change-bias", "frozen.h5", "-s", "data", "--threads", "1"]) == 0
    assert np.array_equal(read_model(tmp_path / "frozen_updated.h5").out_bias, out.out_bias)
    assert cli_main(["change-bias", "model.ckpt.h5", "-b", "-1", "-2", "-o", "given.ckpt.h5"]) == 0
    assert np.array_equal(read_checkpoint(tmp_path / "given.ckpt.h5").out_bias, [-1.0, -2.0])


def test_a_checkpoint_output_named_as_a_model_is_refused(tmp_path, monkeypatch, capsys):
    """The output of a checkpoint is a checkpoint: `-o out.dp` wrote an HDF5 checkpoint under a
    .dp name, which every model reader then refused ("unknown format 'numdp-train-checkpoint'").
    Now one line naming -o before anything is written."""
    _checkpoint(tmp_path)
    monkeypatch.chdir(tmp_path)
    for name in ("out.dp", "out.pth"):
        assert cli_main(["change-bias", "model.ckpt.h5", "-b", "-1", "-2", "-o", name]) == 2
        err = capsys.readouterr().err
        assert f"-o {name}: model.ckpt.h5 is a training checkpoint" in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / name).exists()
