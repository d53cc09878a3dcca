"""`numdp change-bias` (DeePMD-kit's `dp change-bias`): the per-type energy bias fitted to data."""
import numpy as np
import pytest

from numdp.cli import main as cli_main
from numdp.io.model_file import read_model, write_model
from numdp.io.npy_system import load_system
from numdp.model.dp_model import DPModel
from randmodel import random_params
from tests_util import shift_fit_bound, write_labelled_systems, write_system

COMPOSITIONS = ((7, 3), (2, 6))   # two independent compositions: the fit fixes both types
NNEI, DIM_OUT = 40, 16   # the teacher's slots (sel [20, 20]) and descriptor width (8 x 2)


def fit_bound(root) -> float:
    """shift_fit_bound of the 3 + 3 labelled frames: chains of natoms (nnei + dim_out) terms (two
    evaluations of the same model in other orders, or with another bias per atom)."""
    counts, energies = [], []
    for k, (na, nb) in enumerate(COMPOSITIONS):
        e = load_system(root / "data" / f"sys{k}").energy
        counts += [(na, nb)] * len(e)
        energies += list(e)
    return shift_fit_bound(counts, energies, (na + nb) * (NNEI + DIM_OUT))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A teacher model, and two systems labelled with its energies (3 frames each)."""
    root = tmp_path_factory.mktemp("change_bias")
    teacher = random_params(ntypes=2, sel=[20, 20], neuron=(4, 8), axis_neuron=2, fitting=(8, 8), seed=7)
    teacher.type_map = ["A", "B"]
    teacher.out_bias = np.array([-1.5, -3.25])
    write_model(teacher, root / "teacher.h5")
    write_labelled_systems(root / "data", DPModel(teacher, nthreads=1), COMPOSITIONS, 3, 6.0, 100)
    return root, teacher


def test_change_recovers_a_shifted_bias(setup, tmp_path):
    """A model whose out_bias is off by δ, fitted to its teacher's energies: the shift of its
    errors is −δ exactly (up to the round-off of the least squares), weights untouched."""
    root, teacher = setup
    shifted = read_model(root / "teacher.h5")
    shifted.out_bias = teacher.out_bias + np.array([0.3, -0.2])
    write_model(shifted, tmp_path / "m.h5")
    assert cli_main(["change-bias", str(tmp_path / "m.h5"), "-s", str(root / "data"), "--threads", "1"]) == 0
    out = read_model(tmp_path / "m_updated.h5")
    assert np.allclose(out.out_bias, teacher.out_bias, rtol=0, atol=fit_bound(root))
    for a, b in zip(out.fitting.nets[0].layers, shifted.fitting.nets[0].layers):
        assert np.array_equal(a.w, b.w)
    # -m set fits the labels themselves: E = model energy, not a sum of per-type constants, so
    # the fit differs from the bias but reproduces the frames' mean energies per composition
    assert cli_main(["change-bias", str(tmp_path / "m.h5"), "-s", str(root / "data"), "-m", "set",
                     "-o", str(tmp_path / "set.dp")]) == 0
    fit = read_model(tmp_path / "set.dp").out_bias
    for k, (na, nb) in enumerate(COMPOSITIONS):
        s = load_system(root / "data" / f"sys{k}")
        # least squares with 2 compositions and 2 unknowns: the fit passes through each
        # composition's mean label
        assert na * fit[0] + nb * fit[1] == pytest.approx(s.energy.mean(), rel=1e-12)


def test_given_values_and_frame_draw(setup, tmp_path, capsys):
    root, teacher = setup
    model = str(root / "teacher.h5")
    assert cli_main(["change-bias", model, "-b", "1.5", "-2", "-o", str(tmp_path / "b.h5")]) == 0
    out = read_model(tmp_path / "b.h5")
    assert out.out_bias.tolist() == [1.5, -2.0]
    assert np.array_equal(out.fitting.bias_atom_e, teacher.fitting.bias_atom_e)
    capsys.readouterr()
    assert cli_main(["change-bias", model, "-s", str(root / "data" / "sys0"), str(root / "data" / "sys1"),
                     "-n", "2", "-o", str(tmp_path / "n.h5")]) == 0
    assert "over 4 frames of 2 system(s)" in capsys.readouterr().out
    # the teacher on its own labels: nothing to shift
    assert np.allclose(read_model(tmp_path / "n.h5").out_bias, teacher.out_bias, rtol=0, atol=fit_bound(root))
    # a second write keeps the first output as #n.h5.1#
    (tmp_path / "list.txt").write_text(f"{root / 'data' / 'sys0'}\n\n{root / 'data' / 'sys1'}\n")
    assert cli_main(["change-bias", model, "-f", str(tmp_path / "list.txt"), "-o", str(tmp_path / "n.h5")]) == 0
    assert (tmp_path / "#n.h5.1#").is_file()


@pytest.mark.parametrize("extra, message", [
    (["-b", "1.0"], "-b: 1 values for the 2 types of the model's type_map ['A', 'B']"),
    (["-n", "-1"], "-n -1: the number of frames per system must be >= 0"),
    (["-o", "out.txt"], "cannot choose a model format"),
    (["-s", "nowhere"], "nowhere: data directory (or HDF5 file) does not exist"),
])
def test_errors_are_one_line(setup, tmp_path, capsys, extra, message, monkeypatch):
    root, _ = setup
    monkeypatch.chdir(tmp_path)
    assert cli_main(["change-bias", str(root / "teacher.h5"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_pytorch_model_needs_an_output_and_labels(setup, tmp_path, capsys):
    root, _ = setup
    assert cli_main(["change-bias", str(tmp_path / "model.pth"), "-b", "1", "2"]) == 2
    assert "numdp does not write PyTorch models: give -o NAME.h5 or NAME.dp" in capsys.readouterr().err
    nolabel = tmp_path / "nolabel"
    write_system(nolabel, np.zeros((1, 3, 3)) + np.arange(9).reshape(1, 3, 3), None, [0, 1, 1], ["A", "B"])
    assert cli_main(["change-bias", str(root / "teacher.h5"), "-s", str(nolabel), "-o",
                     str(tmp_path / "x.h5")]) == 2
    assert "none of the systems has energy labels" in capsys.readouterr().err
