"""Damaged and invalid model files: one line naming the file and what is wrong (InputError; exit
status 2 from every command), never a traceback, and never a model that loads but fails later.

The `.dp` cases are the oracle's water.dp edited with h5py (variable_0028..0037 are fitting net
0: layer 0 w (1600, 240) and b, layer 1 w (240, 240), b and idt (240,), ...)."""
import copy
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

import numdp
from numdp.cli import main as cli_main
from numdp.errors import InputError
from numdp.io import protobuf as pb
from numdp.io import pt_read
from numdp.io.model_file import read_model
from numdp.io.torch_archive import read_torch_archive
from test_pb_models import DATA as PB_DATA
from test_pb_models import _const_node, _edit, _field, _shape
from test_pth_models import cli_error

PT_DATA = Path(__file__).resolve().parent / "data" / "pytorch"


def _edit_json(change):
    def edit(h5):
        tree = json.loads(h5.attrs["json"])
        change(tree["model"])
        h5.attrs["json"] = json.dumps(tree)
    return edit


def _replace(name, value):
    def edit(h5):
        del h5[name]
        if value is not None:
            h5[name] = value
    return edit


def _nan_at(name, index):
    def edit(h5):
        data = h5[name][()]
        data[index] = np.nan
        h5[name][...] = data
    return edit


def _layers(which, k=0):
    def get(model):
        part = model["descriptor"]["embeddings"] if which == "embedding" else model["fitting"]["nets"]
        return part["networks"][k]["layers"]
    return get


def _all_embedding_activations(name):
    def change(model):
        for net in model["descriptor"]["embeddings"]["networks"]:
            for layer in net["layers"]:
                layer["activation_function"] = name
    return change


DP_CASES = [
    ("bad json", lambda h5: h5.attrs.__setitem__("json", '{"model": '),
     "root attribute 'json' is not valid JSON"),
    ("json list", lambda h5: h5.attrs.__setitem__("json", "[1, 2]"),
     "root attribute 'json' holds a list, not a JSON object"),
    ("missing dataset", _replace("variable_0030", None),
     "dataset '/variable_0030' named in the model's JSON is missing"),
    ("group for dataset", lambda h5: (h5.__delitem__("variable_0030"), h5.create_group("variable_0030")),
     "dataset '/variable_0030' named in the model's JSON is missing"),
    ("fitting w shape", _replace("variable_0030", np.zeros((10, 10))),
     "fitting net 0 layer 1: w (dataset '/variable_0030') has shape (10, 10), expected (240, 240)"),
    ("fitting first w rows", _replace("variable_0028", np.zeros((1599, 240))),
     "fitting net 0 layer 0: w (dataset '/variable_0028') has shape (1599, 240), expected (1600, 240)"),
    ("fitting b shape", _replace("variable_0029", np.zeros(7)),
     "fitting net 0 layer 0: b (dataset '/variable_0029') has shape (7,), expected (240,)"),
    ("fitting idt shape", _replace("variable_0032", np.ones(3)),
     "fitting net 0 layer 1: idt (dataset '/variable_0032') has shape (3,), expected (240,)"),
    ("embedding w shape", _replace("variable_0004", np.zeros((25, 49))),
     "embedding net 0 layer 1: w (dataset '/variable_0004') has shape (25, 49), expected (25, 50)"),
    ("non-finite weight", _nan_at("variable_0030", (3, 4)),
     "fitting net 0 layer 1: w (dataset '/variable_0030') contains non-finite values"),
    ("out_bias shape", _replace("variable_0000", np.zeros((1, 3, 1))),
     "out_bias (dataset '/variable_0000') has shape (1, 3, 1), expected (2,)"),
    ("davg non-finite", _nan_at("variable_0026", (0, 0, 0)),
     "descriptor davg (dataset '/variable_0026') contains non-finite values"),
    ("layer dropped", _edit_json(lambda m: _layers("fitting")(m).pop(1)),
     "fitting net 0 has 3 layers, expected 4 (widths [1600, 240, 240, 240, 1])"),
    ("rcut", _edit_json(lambda m: m["descriptor"].__setitem__("rcut", -1.0)),
     "rcut: must be a finite positive distance in Angstrom, got -1.0"),
    ("rcut_smth", _edit_json(lambda m: m["descriptor"].__setitem__("rcut_smth", float("nan"))),
     "rcut_smth: must be a finite distance in Angstrom, got nan"),
    ("activation", _edit_json(_all_embedding_activations("foo")),
     "embedding net 0 layer 0: activation 'foo' is not supported (numdp runs tanh"),
]


@pytest.fixture
def edited_dp(oracle_dir, tmp_path):
    def make(edit):
        path = tmp_path / "water.dp"
        shutil.copy(oracle_dir / "water.dp", path)
        with h5py.File(path, "a") as h5:
            edit(h5)
        return path
    return make


def _one_line(exc_info, path) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg and msg.startswith(f"{path}: "), msg
    return msg


@pytest.mark.parametrize("edit, expect", [case[1:] for case in DP_CASES], ids=[case[0] for case in DP_CASES])
def test_damaged_dp_is_one_line_naming_file_and_variable(edited_dp, capsys, edit, expect):
    path = edited_dp(edit)
    with pytest.raises(InputError) as ei:
        read_model(path)
    assert expect in _one_line(ei, path)
    with pytest.raises(InputError) as ei:
        numdp.load_model(path)
    assert expect in _one_line(ei, path)
    # `show` reads with the same checks as the commands that evaluate the model
    assert expect in cli_error(capsys, ["show", str(path)], path)


def test_wrong_weight_shape_stops_test_and_convert_at_reading(edited_dp, tmp_path, capsys):
    """Before: `show` printed the model and `test` crashed in the fitting net's matmul."""
    path = edited_dp(_replace("variable_0030", np.zeros((10, 10))))
    expect = "w (dataset '/variable_0030') has shape (10, 10), expected (240, 240)"
    assert expect in cli_error(capsys, ["test", "-m", str(path), "-s", str(tmp_path)], path)
    assert expect in cli_error(capsys, ["convert", str(path), str(tmp_path / "out.h5")], path)
    assert not (tmp_path / "out.h5").exists()


def test_rcut_of_h5_model_is_named(oracle_dir, tmp_path, capsys):
    """The check is the model's (ModelParams.validate): numdp's own .h5 files too."""
    path = tmp_path / "m.h5"
    assert cli_main(["convert", str(oracle_dir / "water.dp"), str(path)]) == 0
    with h5py.File(path, "a") as h5:
        h5["descriptor"].attrs["rcut"] = np.inf
    capsys.readouterr()
    err = cli_error(capsys, ["show", str(path)], path)
    assert f"{path}: rcut: must be a finite positive distance in Angstrom, got inf" in err


# ---------------------------------------------------------------- PyTorch and TensorFlow files


@pytest.fixture(scope="module")
def checkpoint_root():
    return read_torch_archive(PT_DATA / "se_a_one_side_f64.pt").root


FIT1 = "model.Default.atomic_model.fitting_net.filter_layers.networks.1.layers."


@pytest.mark.parametrize("key, value, expect", [
    (FIT1 + "1.matrix", np.zeros((8, 5)),
     f"fitting net 1 layer 1: w (tensor {FIT1[len('model.Default.'):]}1.matrix) has shape (8, 5), expected (8, 8)"),
    (FIT1 + "1.idt", np.zeros(5),
     f"fitting net 1 layer 1: idt (tensor {FIT1[len('model.Default.'):]}1.idt) has shape (5,), expected (8,)"),
    (FIT1 + "0.bias", np.full(8, np.inf),
     f"fitting net 1 layer 0: b (tensor {FIT1[len('model.Default.'):]}0.bias) contains non-finite values"),
])
def test_pytorch_tensor_shapes_are_checked(checkpoint_root, key, value, expect):
    root = copy.deepcopy(checkpoint_root)
    assert key in root["model"]
    root["model"][key] = value
    path = Path("m.pt")
    model, tensors = pt_read._from_checkpoint(root, path)
    with pytest.raises(InputError) as ei:
        pt_read.params_from_torch(model, tensors, path, "test")
    assert expect in _one_line(ei, path)


def _float_node(name: str, value: np.ndarray) -> bytes:
    tensor = _field(1, 2, pb.VARINT) + _field(2, _shape(*value.shape)) + _field(4, value.astype("<f8").tobytes())
    return _const_node(name, tensor)


def test_tensorflow_node_shapes_are_checked(tmp_path, capsys):
    path = tmp_path / "edited.pb"
    path.write_bytes(_edit((PB_DATA / "tf_one_side_f64.pb").read_bytes(),
                           drop=lambda n: n == "layer_1_type_1/matrix",
                           add=_float_node("layer_1_type_1/matrix", np.ones((8, 3)))))
    expect = "fitting net 1 layer 1: w (node layer_1_type_1/matrix) has shape (8, 3), expected (8, 8)"
    with pytest.raises(InputError) as ei:
        read_model(path)
    assert expect in _one_line(ei, path)
    assert expect in cli_error(capsys, ["show", str(path)], path)
