"""DeePMD-kit TensorFlow frozen models (.pb) read without TensorFlow.

Fixtures in tests/data/tensorflow, written by tools/make_pb_fixtures.py with DeePMD-kit 3.2 and
TensorFlow 2.21: per case the frozen graph of a 2-step TensorFlow training, DeePMD-kit's own
`dp convert-backend` of it to `.dp`, and DeePMD-kit's evaluation of one water frame with the
graph; a graph converted from a PyTorch fixture (output bias and scale), and graphs of kinds
numdp refuses.  Other damaged or foreign graphs are made here by editing a fixture's nodes
(a GraphDef is a list of `node` fields: dropping or appending one is a byte-level edit).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import numdp
from numdp.cli import main as cli_main
from numdp.errors import InputError
from numdp.io import protobuf as pb
from numdp.io.model_file import KIND_PB, model_kind, read_model
from numdp.io.pb_read import Graph, _tensor
from test_model_file import assert_params_equal
from test_pth_models import cli_error, one_line
from tests_util import assert_matches_deepmd, write_system

DATA = Path(__file__).resolve().parent / "data" / "tensorflow"
CASES = ["tf_one_side_f64", "tf_two_side_f64", "tf_two_side_f32"]
FLOAT64 = ["tf_one_side_f64", "tf_two_side_f64"]
TOL = 1e-10   # DeePMD-kit's float64 oracle requirement (../shared/oracle/README.md)


def rel_err(a, b):
    return np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max()


# ------------------------------------------------------------------ protobuf writing (tests only)
def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes | int, wire: int = pb.BYTES) -> bytes:
    if wire == pb.VARINT:
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | pb.BYTES) + _varint(len(payload)) + payload


def _const_node(name: str, tensor: bytes, op: str = "Const") -> bytes:
    """A GraphDef `node` field: NodeDef(name, op, attr {"value": AttrValue(tensor)})."""
    attr = _field(1, b"value") + _field(2, _field(8, tensor))
    return _field(1, _field(1, name.encode()) + _field(2, op.encode()) + _field(5, attr))


def _string_tensor(text: str) -> bytes:
    return _field(1, 7, pb.VARINT) + _field(2, b"") + _field(8, text.encode())


def _int_tensor(value: int) -> bytes:
    return _field(1, 3, pb.VARINT) + _field(2, b"") + _field(7, _varint(value))


def _edit(data: bytes, drop=lambda name: False, add: bytes = b"") -> bytes:
    """The GraphDef `data` without the nodes whose name `drop` accepts, plus the nodes `add`."""
    out = bytearray()
    for number, wire, value in pb.fields(memoryview(data)):
        if number == 1 and wire == pb.BYTES:
            name = next(bytes(v).decode() for f, w, v in pb.fields(value) if f == 1)
            if drop(name):
                continue
        out += _field(number, bytes(value)) if wire == pb.BYTES else _field(number, value, wire)
    return bytes(out) + add


@pytest.fixture(scope="module")
def dp_params():
    return {case: read_model(DATA / f"{case}.dp") for case in CASES}


# ------------------------------------------------------------------ the model read
@pytest.mark.parametrize("case", CASES)
def test_arrays_equal_deepmd_kits_own_conversion(dp_params, case):
    """Every array (davg, dstd, every w/b/idt, bias_atom_e, out_bias, out_std) and every
    hyper-parameter equals what DeePMD-kit's `dp convert-backend` wrote to the .dp, bit for bit."""
    path = DATA / f"{case}.pb"
    assert model_kind(path) == KIND_PB
    params = read_model(path)
    ref = dp_params[case]
    assert params.info["model_def_script"] == ref.info["model_def_script"]
    assert params.info["source"] == "deepmd-kit tensorflow frozen model"
    params.info = ref.info
    assert_params_equal(params, ref)
    assert params.min_nbor_dist is not None


def test_fixtures_cover_the_layouts(dp_params):
    """One-sided (filter_type_all, ntypes nets) and two-sided (ntypes**2) embeddings, idt in the
    embedding and in the fitting nets, float32 constants: the fixtures hold what the tests claim."""
    one, two, f32 = (dp_params[c] for c in CASES)
    assert one.descriptor.type_one_side and len(one.descriptor.embeddings) == 2
    assert not two.descriptor.type_one_side and len(two.descriptor.embeddings) == 4
    assert any(lay.idt is not None for net in two.descriptor.embeddings for lay in net.layers)
    assert any(lay.idt is not None for net in one.fitting.nets for lay in net.layers)
    graph = Graph((DATA / "tf_one_side_f64.pb").read_bytes())
    assert graph.has("filter_type_all/matrix_1_0") and graph.has("fitting_attr/t_bias_atom_e")
    assert np.any(graph.array("fitting_attr/t_bias_atom_e") != 0)
    f32_graph = Graph((DATA / "tf_two_side_f32.pb").read_bytes())
    w = f32_graph.array("filter_type_1/matrix_2_0")
    assert w.dtype == np.float32 and w.shape == (4, 8)


@pytest.mark.parametrize("case", CASES)
def test_evaluation_equals_the_dp_and_deepmd_kit(case):
    """numdp's energy, forces and virial from the .pb equal those from the .dp exactly (bit-equal
    arrays, the same code on one thread), and DeePMD-kit's evaluation of the graph to TOL
    (float64) or, for the float32 model that TensorFlow evaluates in float32, to
    order_bound(U32, n), n the longest summation chain (slots + descriptor width + atoms)."""
    ref = np.load(DATA / f"{case}.npz")
    out = {s: numdp.load_model(DATA / f"{case}{s}", nthreads=1).evaluate(ref["coord"], ref["atype"], ref["box"])
           for s in (".dp", ".pb")}
    assert out[".pb"].energy == out[".dp"].energy
    for key in ("forces", "virial", "atom_energies"):
        assert np.array_equal(getattr(out[".pb"], key), getattr(out[".dp"], key)), key
    assert_matches_deepmd(out[".pb"], ref, read_model(DATA / f"{case}.dp").descriptor, case in FLOAT64)


def test_converted_graph_keeps_the_output_bias():
    """A graph DeePMD-kit 3 converted from a PyTorch model holds its out_bias / out_std (under
    model_attr/model_attr/): read, the model equals the source .dp array for array."""
    src = Path(__file__).resolve().parent / "data" / "pytorch" / "se_a_one_side_f64.dp"
    params, ref = read_model(DATA / "converted_one_side_f64.pb"), read_model(src)
    assert np.any(ref.out_bias != 0)
    assert params.info["model_def_script"] == ref.info["model_def_script"]
    params.info = ref.info
    assert_params_equal(params, ref)


def test_graph_without_bias_atom_e(tmp_path):
    """Graphs of DeePMD-kit < 2.2 have no fitting_attr/t_bias_atom_e (the bias is inside the
    output layer's): bias_atom_e 0, so each atom's energy drops by its type's bias exactly."""
    data = (DATA / "tf_one_side_f64.pb").read_bytes()
    bias = Graph(data).array("fitting_attr/t_bias_atom_e")
    path = tmp_path / "old.pb"
    path.write_bytes(_edit(data, drop=lambda n: n == "fitting_attr/t_bias_atom_e"))
    assert np.all(read_model(path).fitting.bias_atom_e == 0)
    ref = np.load(DATA / "tf_one_side_f64.npz")
    out = numdp.load_model(path, nthreads=1).evaluate(ref["coord"], ref["atype"], ref["box"])
    assert rel_err(out.atom_energies + bias[ref["atype"]], ref["atom_energy"]) <= TOL


def test_kind_is_read_from_the_content(tmp_path):
    """A graph under any name is a graph; other bytes are not."""
    path = tmp_path / "graph.000"
    path.write_bytes((DATA / "tf_two_side_f64.pb").read_bytes())
    assert model_kind(path) == KIND_PB
    assert read_model(path).descriptor.ntypes == 2
    junk = tmp_path / "junk.pb"
    junk.write_bytes(b"\x00\x01 not protobuf")
    with pytest.raises(InputError) as ei:
        read_model(junk)
    assert "not a numdp or DeePMD-kit model" in one_line(ei, junk)


# ------------------------------------------------------------------ refused and damaged graphs
@pytest.mark.parametrize("name,holds", [("se_e2_r.pb", "a 'se_e2_r' descriptor")])
def test_unsupported_kinds_from_deepmd_kit(tmp_path, capsys, name, holds):
    """Real graphs frozen by DeePMD-kit: an se_e2_r descriptor."""
    path = DATA / name
    with pytest.raises(InputError) as ei:
        read_model(path)
    assert f"not a DeePMD-kit se_e2_a energy model: it holds {holds}" in one_line(ei, path)
    cli_error(capsys, ["convert", str(path), str(tmp_path / "o.h5")], path)


def test_frame_parameter_graph_is_read():
    """A graph with a frame parameter (numb_fparam 1, all ones in training): its statistics
    fitting_attr/t_fparam_avg, t_fparam_istd are read (tests/test_sweep_model_files.py checks
    such graphs against DeePMD-kit's evaluation)."""
    fit = read_model(DATA / "fparam.pb").fitting
    assert fit.numb_fparam == 1 and fit.numb_aparam == 0
    assert fit.fparam_avg.tolist() == [1.0] and fit.fparam_inv_std.tolist() == [100.0]


@pytest.mark.parametrize("edit,expect", [
    (dict(add=_const_node("filter_type_all/TabulateFusionSeA", b"", op="TabulateFusionSeA")),
     "it holds a compressed model (TabulateFusionSeA: dp compress)"),
    (dict(add=_const_node("model_attr/model_type", _string_tensor("dipole"))), "it holds a 'dipole' model"),
    (dict(add=_const_node("fitting_attr/daparam", _int_tensor(2))), "numb_aparam 2"),
    (dict(drop=lambda n: n == "train_attr/training_script"), "without DeePMD-kit's train_attr/training_script"),
    (dict(drop=lambda n: n == "train_attr/training_script",
          add=_const_node("train_attr/training_script", _string_tensor("{not json"))), "not valid JSON"),
    (dict(drop=lambda n: n.startswith("filter_type_all/") and n.endswith("_1")),
     "embedding net of neighbour type 1 is missing"),
    (dict(drop=lambda n: n == "layer_1_type_1/matrix"), "node layer_1_type_1/matrix (fitting net of type 1, H) is missing"),
    (dict(drop=lambda n: n == "descrpt_attr/t_avg"), "node descrpt_attr/t_avg is missing"),
])
def test_edited_graphs_are_named(tmp_path, edit, expect):
    """Kinds and damage made by editing a real graph's nodes: one line naming the file and what
    is wrong."""
    path = tmp_path / "edited.pb"
    path.write_bytes(_edit((DATA / "tf_one_side_f64.pb").read_bytes(), **edit))
    with pytest.raises(InputError) as ei:
        read_model(path)
    assert expect in one_line(ei, path)


def test_truncated_graph(tmp_path, capsys):
    data = (DATA / "tf_two_side_f64.pb").read_bytes()
    path = tmp_path / "cut.pb"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as ei:
        read_model(path)
    assert "malformed DeePMD-kit TensorFlow model: not a readable TensorFlow GraphDef" in one_line(ei, path)
    cli_error(capsys, ["test", "-m", str(path), "-s", str(tmp_path)], path)


# ------------------------------------------------------------------ the wire format
def test_varints_and_fields():
    for n in (0, 1, 127, 128, 300, 2**32, 2**63 - 1):
        assert pb.varint(memoryview(_varint(n)), 0) == (n, len(_varint(n)))
    assert pb.signed(pb.varint(memoryview(_varint(-5)), 0)[0]) == -5   # 10-byte two's complement
    msg = _field(1, 150, pb.VARINT) + _field(2, b"abc") + _varint(3 << 3 | pb.FIXED64) \
        + np.float64(2.5).tobytes() + _varint(4 << 3 | pb.FIXED32) + np.float32(1.5).tobytes()
    got = [(f, w, bytes(v) if isinstance(v, memoryview) else v) for f, w, v in pb.fields(memoryview(msg))]
    assert got[:2] == [(1, pb.VARINT, 150), (2, pb.BYTES, b"abc")]
    assert np.frombuffer(got[2][2].to_bytes(8, "little"), np.float64)[0] == 2.5
    assert np.frombuffer(got[3][2].to_bytes(4, "little"), np.float32)[0] == 1.5
    for bad in (b"\x80", _field(2, b"abcdef")[:-2], _varint(1 << 3 | 3) + b"\x00", b"\x00\x00"):
        with pytest.raises(ValueError):
            list(pb.fields(memoryview(bad)))


def _shape(*dims) -> bytes:
    return b"".join(_field(2, _field(1, d, pb.VARINT)) for d in dims)


def test_tensor_value_forms():
    """tensor_content; packed and unpacked listed values; TensorFlow's shorthand of fewer listed
    values than the shape holds (the last repeats); negative integers; strings."""
    content = np.arange(6, dtype="<f8")
    t = _field(1, 2, pb.VARINT) + _field(2, _shape(2, 3)) + _field(4, content.tobytes())
    assert np.array_equal(_tensor(memoryview(t)), content.reshape(2, 3))
    packed = _field(1, 2, pb.VARINT) + _field(2, _shape(3)) + _field(6, np.array([1.5, -2.0], "<f8").tobytes())
    assert np.array_equal(_tensor(memoryview(packed)), [1.5, -2.0, -2.0])
    unpacked = (_field(1, 1, pb.VARINT) + _field(2, _shape(2)) + _varint(5 << 3 | pb.FIXED32)
                + np.float32(0.25).tobytes() + _varint(5 << 3 | pb.FIXED32) + np.float32(4.0).tobytes())
    got = _tensor(memoryview(unpacked))
    assert got.dtype == np.float32 and np.array_equal(got, [0.25, 4.0])
    ints = _field(1, 3, pb.VARINT) + _field(2, _shape(3)) + _field(7, _varint(7) + _varint(-3))
    assert np.array_equal(_tensor(memoryview(ints)), [7, -3, -3])
    scalar = _field(1, 2, pb.VARINT) + _field(2, b"")
    assert _tensor(memoryview(scalar)).shape == () and _tensor(memoryview(scalar)) == 0.0
    assert _tensor(memoryview(_string_tensor("O H"))) == [b"O H"]
    wrong = _field(1, 2, pb.VARINT) + _field(2, _shape(4)) + _field(4, content.tobytes())
    with pytest.raises(ValueError):
        _tensor(memoryview(wrong))


# ------------------------------------------------------------------ commands
def test_commands_take_a_graph(tmp_path, capsys):
    """numdp test on the graph gives round-off errors against DeePMD-kit's own predictions;
    numdp convert writes the .dp DeePMD-kit's conversion holds; numdp show names the model."""
    pbf = DATA / "tf_two_side_f64.pb"
    ref = np.load(DATA / "tf_two_side_f64.npz")
    system = write_system(tmp_path / "sys", ref["coord"][None], ref["box"][None], ref["atype"],
                          [str(t) for t in ref["type_map"]], energy=ref["energy"].reshape(1),
                          force=ref["force"][None], virial=ref["virial"][None])
    assert cli_main(["test", "-m", str(pbf), "-s", str(system), "--json", str(tmp_path / "t.json")]) == 0
    fig = json.loads((tmp_path / "t.json").read_text())["overall"]
    n = len(ref["atype"])
    assert fig["rmse_energy"] <= 1e3 * TOL * abs(ref["energy"]) / n
    assert fig["rmse_force"] <= 1e3 * TOL * np.abs(ref["force"]).max()
    dp = tmp_path / "m.dp"
    assert cli_main(["convert", str(pbf), str(dp)]) == 0
    assert "DeePMD-kit TensorFlow model" in capsys.readouterr().out
    back, ref_dp = read_model(dp), read_model(DATA / "tf_two_side_f64.dp")
    back.info = ref_dp.info
    assert_params_equal(back, ref_dp)
    assert cli_main(["show", str(pbf)]) == 0
    assert "type_map is ['O', 'H']" in capsys.readouterr().out


def test_dpgen_task_with_graphs(tmp_path, monkeypatch, capsys):
    """A DP-GEN exploration task as DeePMD-kit 2.x users have it: `pair_style deepmd graph.000.pb
    graph.001.pb` in DP-GEN's script, run by `numdp lmp`. Its dumps and model_devi.out are byte
    for byte those of the same task with DeePMD-kit's `.dp` conversions of the graphs."""
    from numdp.io.structure import write_lammps_data
    from test_lmp_input import dpgen_script

    ref = np.load(DATA / "tf_one_side_f64.npz")
    outputs = []
    for suffix in (".pb", ".dp"):
        folder = tmp_path / suffix[1:]
        folder.mkdir()
        models = []
        for k, case in enumerate(("tf_one_side_f64", "tf_two_side_f64")):
            models.append(f"graph.00{k}{suffix}")
            (folder / models[-1]).write_bytes((DATA / f"{case}{suffix}").read_bytes())
        write_lammps_data(folder / "conf.lmp", ref["atype"], ref["coord"], ref["box"])
        (folder / "input.lammps").write_text(dpgen_script("nvt", models=models, nsteps=4, trj_freq=2,
                                                          masses=(15.999, 1.008)))
        monkeypatch.chdir(folder)
        assert cli_main(["lmp", "-i", "input.lammps", "-v", "restart", "0"]) == 0
        capsys.readouterr()
        outputs.append([(folder / "model_devi.out").read_text()]
                       + [(folder / "traj" / f"{s}.lammpstrj").read_text() for s in (0, 2, 4)])
    assert outputs[0] == outputs[1]
    devi = np.loadtxt(tmp_path / "pb" / "model_devi.out", ndmin=2)
    assert devi[:, 0].tolist() == [0, 2, 4] and np.all(devi[:, 4] > 0)   # max force deviation
