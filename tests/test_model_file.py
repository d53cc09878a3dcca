"""Tests for numdp's model files: numdp HDF5 (.h5), DeePMD-kit .dp writing, dispatch, convert."""

import copy
import json
import os
import pathlib

import h5py
import numpy as np
import pytest

from numdp.cli import main as cli_main
from numdp.errors import InputError
from numdp.io import h5_model
from numdp.io.dp_read import read_dp
from numdp.io.dp_write import DEFAULT_MIN_NBOR_DIST, write_dp
from numdp.io.h5_model import FORMAT, FORMAT_VERSION, read_h5_model, write_h5_model
from numdp.io.model_file import read_model, write_model

ORACLE = pathlib.Path("/work/shared/oracle")
MODELS = ["water", "alloy5"]

pytestmark = pytest.mark.skipif(not ORACLE.is_dir(), reason="oracle models not available")


# ---------------------------------------------------------------- helpers


def assert_params_equal(p, q):
    """Every field equal and every array bit-equal (same shape, dtype and values)."""

    def arr(a, b, what):
        if a is None or b is None:
            assert a is None and b is None, what
            return
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and a.dtype == b.dtype, what
        assert np.array_equal(a.view(np.uint8), b.view(np.uint8)), what  # bit-equal, NaN-safe

    def nets(n1, n2, what):
        assert len(n1) == len(n2), what
        for k, (a, b) in enumerate(zip(n1, n2)):
            assert len(a.layers) == len(b.layers), f"{what} {k}"
            for l, (x, y) in enumerate(zip(a.layers, b.layers)):
                w = f"{what} {k} layer {l}"
                arr(x.w, y.w, w + " w")
                arr(x.b, y.b, w + " b")
                arr(x.idt, y.idt, w + " idt")
                assert (x.activation, x.resnet) == (y.activation, y.resnet), w

    assert p.type_map == q.type_map
    assert p.pair_exclude_types == q.pair_exclude_types and p.atom_exclude_types == q.atom_exclude_types
    d, e = p.descriptor, q.descriptor
    for key in ("rcut", "rcut_smth", "sel", "neuron", "axis_neuron", "type_one_side", "resnet_dt",
                "exclude_types"):
        assert getattr(d, key) == getattr(e, key), key
        assert type(getattr(d, key)) is type(getattr(e, key)), key
    arr(d.davg, e.davg, "davg")
    arr(d.dstd, e.dstd, "dstd")
    nets(d.embeddings, e.embeddings, "embedding net")
    assert p.fitting.neuron == q.fitting.neuron and p.fitting.resnet_dt == q.fitting.resnet_dt
    arr(p.fitting.bias_atom_e, q.fitting.bias_atom_e, "bias_atom_e")
    nets(p.fitting.nets, q.fitting.nets, "fitting net")
    arr(p.out_bias, q.out_bias, "out_bias")
    arr(p.out_std, q.out_std, "out_std")
    assert p.min_nbor_dist == q.min_nbor_dist
    arr(p.s_range, q.s_range, "s_range")
    assert p.info == q.info


def dp_contents(path):
    """(JSON tree without `time`, {dataset name: (shape, dtype, array)}) of a .dp file."""
    with h5py.File(path, "r") as h5:
        text = h5.attrs["json"]
        tree = json.loads(text)
        arrays = {k: (h5[k].shape, h5[k].dtype, h5[k][()]) for k in h5.keys()}
        assert isinstance(text, str)
    tree.pop("time")
    return tree, arrays


def compare_trees(a, b, where="root"):
    """Key by key (and in the same key order), values equal with the same JSON types."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a.keys()) == list(b.keys()), f"{where}: keys {list(a)} != {list(b)}"
        for k in a:
            compare_trees(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), f"{where}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            compare_trees(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_dp_identical(path_a, path_b):
    ta, va = dp_contents(path_a)
    tb, vb = dp_contents(path_b)
    compare_trees(ta, tb)
    assert list(va) == list(vb)
    for k in va:
        assert va[k][0] == vb[k][0] and va[k][1] == vb[k][1], k
        assert np.array_equal(va[k][2], vb[k][2]), k


def assert_one_line_error(exc_info, path):
    msg = str(exc_info.value)
    assert "\n" not in msg
    assert str(path) in msg
    return msg


@pytest.fixture(scope="module")
def oracle_params():
    return {name: read_dp(ORACLE / f"{name}.dp") for name in MODELS}


@pytest.fixture(scope="module")
def converted(tmp_path_factory, oracle_params):
    """oracle .dp -> .h5 -> .dp for each model, through the CLI."""
    root = tmp_path_factory.mktemp("converted")
    out = {}
    for name in MODELS:
        h5, dp = root / f"{name}.h5", root / f"{name}.dp"
        assert cli_main(["convert", str(ORACLE / f"{name}.dp"), str(h5)]) == 0
        assert cli_main(["convert", str(h5), str(dp)]) == 0
        out[name] = (h5, dp)
    return out


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", MODELS)
def test_round_trip_params_identical(name, oracle_params, converted):
    h5, dp = converted[name]
    p0 = oracle_params[name]
    p1 = read_model(h5)
    p2 = read_model(dp)
    assert_params_equal(p0, p1)
    assert_params_equal(p0, p2)
    assert_params_equal(p0, read_h5_model(h5))
    assert_params_equal(p0, read_dp(dp))


@pytest.mark.parametrize("name", MODELS)
def test_written_dp_structurally_identical_to_oracle(name, oracle_params, converted, tmp_path):
    direct = tmp_path / f"{name}.dp"
    write_dp(oracle_params[name], direct)
    assert_dp_identical(ORACLE / f"{name}.dp", direct)
    assert_dp_identical(ORACLE / f"{name}.dp", converted[name][1])  # via numdp's .h5


def test_dp_variable_counter_is_depth_first(converted):
    with h5py.File(converted["water"][1], "r") as h5:
        text = h5.attrs["json"]
        names = sorted(h5.keys())
    assert names == [f"variable_{i:04d}" for i in range(len(names))]
    positions = [text.index(f'"/{n}"') for n in names]
    assert positions == sorted(positions)


@pytest.mark.parametrize("name", MODELS)
def test_converted_models_give_same_energy_forces(name, converted):
    from numdp.model.dp_model import load_model

    ref = np.load(ORACLE / f"{name}.npz")
    coord, atype, box = ref["coord"][0], ref["atype"].astype(int), ref["box"][0]
    outs = [load_model(p, nthreads=1).evaluate(coord, atype, box)
            for p in (ORACLE / f"{name}.dp", *converted[name])]
    base = outs[0]
    for out in outs[1:]:
        assert abs(out.energy - base.energy) <= 1e-12 * abs(base.energy)
        fscale = np.abs(base.forces).max()
        assert np.abs(out.forces - base.forces).max() <= 1e-12 * fscale
        assert np.abs(out.virial - base.virial).max() <= 1e-12 * np.abs(base.virial).max()
    # and the original model itself reproduces DeePMD-kit
    assert abs(base.energy - ref["energy"][0]) <= 1e-10 * abs(ref["energy"][0])
    assert np.abs(base.forces - ref["force"][0]).max() <= 1e-10 * np.abs(ref["force"][0]).max()


# ---------------------------------------------------------------- numdp file layout


def test_h5_layout(converted):
    with h5py.File(converted["water"][0], "r") as h5:
        a = h5.attrs
        assert a["format"] == FORMAT == "numdp-model"
        # a model without excluded type pairs is written as version 1, which older numdp reads
        # (version 2 only adds descriptor exclude_types: tests/test_exclude_types.py; version 3
        # the model-level exclusions: tests/test_model_exclusions.py)
        assert int(a["format_version"]) == 1 and FORMAT_VERSION == 3
        assert a["numdp_version"] and "T" in a["created"]
        assert [str(t) for t in a["type_map"]] == ["O", "H"]
        assert json.loads(a["info"])["model_def_script"]["type_map"] == ["O", "H"]
        d = h5["descriptor"]
        assert d.attrs["kind"] == "se_e2_a" and d.attrs["rcut"] == 6.0 and d.attrs["rcut_unit"] == "Å"
        assert list(d.attrs["sel"]) == [46, 92] and not d.attrs["type_one_side"]
        assert d["davg"].shape == (2, 138, 4) and d["davg"].attrs["unit"] == "1/Å"
        assert sorted(d["embedding"].keys()) == [f"net_{k}" for k in range(4)]
        lay = d["embedding/net_3/layer_2"]
        assert lay["w"].shape == (50, 100) and lay["b"].shape == (100,) and "idt" not in lay
        assert lay.attrs["activation"] == "tanh" and lay.attrs["resnet"]
        f = h5["fitting"]
        assert f["bias_atom_e"].shape == (2,) and f["bias_atom_e"].attrs["unit"] == "eV"
        assert f["net_1/layer_1/idt"].shape == (240,)
        assert f["net_1/layer_3"].attrs["activation"] == "none"
        assert h5["out_bias"].shape == (2,) and h5["min_nbor_dist"].shape == ()


def test_optional_fields_round_trip(oracle_params, tmp_path):
    p = copy.deepcopy(oracle_params["alloy5"])
    p.s_range = np.array([[0.01 * t, 1.5 + 0.1 * t] for t in range(5)])
    p.min_nbor_dist = None
    p.info = {"note": "trained by numdp", "lr": np.float64(1e-3), "steps": np.int64(10),
              "hist": np.arange(3.0)}
    write_model(p, tmp_path / "m.HDF5")
    q = read_model(tmp_path / "m.HDF5")
    assert q.info == {"note": "trained by numdp", "lr": 1e-3, "steps": 10, "hist": [0.0, 1.0, 2.0]}
    q.info = p.info
    assert_params_equal(p, q)
    # .dp: no min_nbor_dist -> the documented conservative default, model_def_script rebuilt
    write_model(p, tmp_path / "m.dp")
    with h5py.File(tmp_path / "m.dp", "r") as h5:
        tree = json.loads(h5.attrs["json"])
        assert h5[tree["@variables"]["min_nbor_dist"]][()] == DEFAULT_MIN_NBOR_DIST
    script = tree["model_def_script"]
    assert script["descriptor"]["sel"] == [30] * 5 and script["fitting_net"]["neuron"] == [64] * 3
    assert tree["software"] == "deepmd-kit" and tree["backend"] == "DPModel"
    r = read_dp(tmp_path / "m.dp")
    assert r.min_nbor_dist == DEFAULT_MIN_NBOR_DIST
    for key in ("min_nbor_dist", "s_range", "info"):
        setattr(r, key, getattr(p, key))
    assert_params_equal(p, r)


def test_unknown_extra_groups_are_ignored(converted, tmp_path):
    path = tmp_path / "extra.h5"
    path.write_bytes(converted["alloy5"][0].read_bytes())
    with h5py.File(path, "a") as h5:
        h5.create_group("future_feature").create_dataset("x", data=np.ones(3))
        h5["descriptor"].create_group("compressed_future")
        h5["descriptor"].attrs["future_key"] = 7
    assert_params_equal(read_model(converted["alloy5"][0]), read_model(path))


def test_write_is_atomic(oracle_params, tmp_path, monkeypatch):
    target = tmp_path / "m.h5"
    target.write_bytes(b"old contents")

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(h5_model, "_write_net", boom)
    with pytest.raises(RuntimeError):
        write_h5_model(oracle_params["alloy5"], target)
    assert target.read_bytes() == b"old contents"
    assert sorted(os.listdir(tmp_path)) == ["m.h5"]  # temporary file removed
    monkeypatch.undo()
    write_h5_model(oracle_params["alloy5"], target)
    assert sorted(os.listdir(tmp_path)) == ["m.h5"]
    assert_params_equal(oracle_params["alloy5"], read_model(target))


# ---------------------------------------------------------------- errors


def _bad_h5(converted, tmp_path, edit):
    path = tmp_path / "bad.h5"
    path.write_bytes(converted["alloy5"][0].read_bytes())
    with h5py.File(path, "a") as h5:
        edit(h5)
    return path


def _cli_error(capsys, argv, path):
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(path) in err
    return err


def test_missing_file(tmp_path, capsys):
    path = tmp_path / "nope.dp"
    with pytest.raises(InputError) as ei:
        read_model(path)
    assert "not found" in assert_one_line_error(ei, path)
    _cli_error(capsys, ["convert", str(path), str(tmp_path / "out.h5")], path)


def test_directory_as_model(tmp_path, capsys):
    """A directory was "not a regular file", without saying what was expected."""
    with pytest.raises(InputError) as ei:
        read_model(tmp_path)
    assert "is a directory, not a model file" in assert_one_line_error(ei, tmp_path)


def test_not_hdf5(tmp_path, capsys):
    """Bytes that are neither HDF5, a zip archive nor a TensorFlow graph, under a graph's name: the
    message says what was tried. (PyTorch .pt/.pth and TensorFlow .pb files are read:
    tests/test_pth_models.py, tests/test_pb_models.py.)"""
    path = tmp_path / "model.pb"
    path.write_bytes(b"\x0a\x0c not a graph, not HDF5")
    with pytest.raises(InputError) as ei:
        read_model(path)
    msg = assert_one_line_error(ei, path)
    assert "not a numdp or DeePMD-kit model (neither HDF5, a PyTorch zip archive nor a TensorFlow graph)" in msg
    _cli_error(capsys, ["convert", str(path), str(tmp_path / "out.h5")], path)


def test_hdf5_without_marker(tmp_path, capsys):
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("x", data=np.zeros(3))
    with pytest.raises(InputError) as ei:
        read_model(path)
    assert "not a numdp or DeePMD-kit model" in assert_one_line_error(ei, path)
    _cli_error(capsys, ["convert", str(path), str(tmp_path / "out.dp")], path)


@pytest.mark.parametrize("edit, expect", [
    (lambda h5: h5.__delitem__("fitting/net_2/layer_1/w"), "missing dataset '/fitting/net_2/layer_1/w'"),
    (lambda h5: h5.__delitem__("descriptor/dstd"), "missing dataset '/descriptor/dstd'"),
    (lambda h5: h5.__delitem__("descriptor/embedding/net_4"), "missing group '/descriptor/embedding/net_4"),
    (lambda h5: h5.attrs.__delitem__("type_map"), "missing attribute 'type_map'"),
    (lambda h5: h5.attrs.__setitem__("format_version", 4), "format version 4"),
    (lambda h5: h5.attrs.__setitem__("pair_exclude_types", [[0, 5]]),
     "pair_exclude_types: type index out of range 0..4 in [0, 5]"),
    (lambda h5: h5.attrs.__setitem__("atom_exclude_types", [7]), "atom_exclude_types: expected type indices 0..4"),
    (lambda h5: h5["descriptor"].attrs.__setitem__("exclude_types", [0, 1]), "attribute 'exclude_types'"),
    (lambda h5: h5["descriptor"].attrs.__setitem__("exclude_types", [[0, 5]]),
     "exclude_types: type index out of range 0..4 in [0, 5]"),
    (lambda h5: h5.attrs.__setitem__("format", "other-model"), "unknown format 'other-model'"),
    (lambda h5: (h5.__delitem__("out_bias"), h5.create_dataset("out_bias", data=np.zeros(4))),
     "'/out_bias' has shape (4,), expected (5,)"),
    (lambda h5: h5["descriptor"].attrs.__setitem__("sel", [30, 30, 30, 30, 31]), "davg"),
])
def test_malformed_numdp_file(converted, tmp_path, capsys, edit, expect):
    path = _bad_h5(converted, tmp_path, edit)
    with pytest.raises(InputError) as ei:
        read_model(path)
    assert expect in assert_one_line_error(ei, path)
    err = _cli_error(capsys, ["convert", str(path), str(tmp_path / "out.dp")], path)
    assert expect in err
    assert not (tmp_path / "out.dp").exists()


def test_truncated_file(converted, tmp_path, capsys):
    path = tmp_path / "cut.h5"
    path.write_bytes(converted["alloy5"][0].read_bytes()[:50_000])
    with pytest.raises(InputError) as ei:
        read_model(path)
    assert_one_line_error(ei, path)
    _cli_error(capsys, ["convert", str(path), str(tmp_path / "out.dp")], path)


def test_unknown_output_suffix(oracle_params, tmp_path, capsys):
    out = tmp_path / "model.yaml"
    with pytest.raises(InputError) as ei:
        write_model(oracle_params["alloy5"], out)
    assert ".dp" in assert_one_line_error(ei, out)
    _cli_error(capsys, ["convert", str(ORACLE / "alloy5.dp"), str(out)], out)
    assert not out.exists()
    noext = tmp_path / "model"
    _cli_error(capsys, ["convert", str(ORACLE / "alloy5.dp"), str(noext)], noext)


def test_unwritable_output(tmp_path, capsys):
    out = tmp_path / "missing_dir" / "m.h5"
    _cli_error(capsys, ["convert", str(ORACLE / "alloy5.dp"), str(out)], out)


def test_convert_prints_one_line(tmp_path, capsys):
    out = tmp_path / "a.h5"
    assert cli_main(["convert", str(ORACLE / "alloy5.dp"), str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and str(out) in lines[0] and "numdp" in lines[0]


def test_convert_and_compress_keep_an_existing_output(tmp_path, capsys):
    """`numdp convert` and `numdp compress` replaced an existing OUT silently; it is now kept as
    #OUT.1# (the earlier file, byte for byte) and one line says so."""
    out = tmp_path / "a.h5"
    assert cli_main(["convert", str(ORACLE / "alloy5.dp"), str(out)]) == 0
    first = out.read_bytes()
    assert cli_main(["convert", str(out), str(out)]) == 0  # a model into its own format
    assert f"backed up the existing {out} to #a.h5.1#" in capsys.readouterr().out
    assert (tmp_path / "#a.h5.1#").read_bytes() == first and out.is_file()
    cmp = tmp_path / "cmp.h5"
    cmp.write_text("an earlier result")
    assert cli_main(["compress", str(out), "-s", "0.05", "-o", str(cmp)]) == 0
    assert f"backed up the existing {cmp} to #cmp.h5.1#" in capsys.readouterr().out
    assert (tmp_path / "#cmp.h5.1#").read_text() == "an earlier result"


def _names(path):
    return sorted(p.name for p in path.iterdir())


@pytest.mark.parametrize("error", [InputError("disk full"), KeyboardInterrupt()])
def test_failed_convert_and_compress_give_the_existing_output_its_name_back(tmp_path, capsys, monkeypatch, error):
    """The model writer fails half way through the file (error, or Ctrl-C): the atomic writer
    leaves no partial file, and the earlier OUT is back under its name, byte for byte, with no
    #OUT.1#; the exit status is 2 (an error) or 130 (interrupted)."""
    status = 130 if isinstance(error, KeyboardInterrupt) else 2
    model = tmp_path / "model.h5"
    assert cli_main(["convert", str(ORACLE / "alloy5.dp"), str(model)]) == 0
    out, cmp = tmp_path / "a.h5", tmp_path / "cmp.h5"
    out.write_bytes(b"an earlier\x00result")
    cmp.write_bytes(b"an earlier\x00table")
    calls = []
    dataset = h5_model._dataset

    def failing(h5, *args, **kwargs):  # the third dataset of the file raises
        calls.append(1)
        if len(calls) == 3:
            raise error
        return dataset(h5, *args, **kwargs)

    monkeypatch.setattr(h5_model, "_dataset", failing)
    capsys.readouterr()
    assert cli_main(["convert", str(model), str(out)]) == status
    assert len(calls) == 3 and "backed up" not in capsys.readouterr().out
    calls.clear()
    assert cli_main(["compress", str(model), "-s", "0.05", "-o", str(cmp)]) == status
    assert len(calls) == 3 and "backed up" not in capsys.readouterr().out
    assert out.read_bytes() == b"an earlier\x00result" and cmp.read_bytes() == b"an earlier\x00table"
    assert _names(tmp_path) == ["a.h5", "cmp.h5", "model.h5"]


def test_failed_convert_removes_what_a_writer_left(tmp_path, monkeypatch):
    """A writer that wrote OUT in place and then failed: its partial file goes, the earlier OUT
    comes back (the rollback does not depend on the writer being atomic)."""
    import numdp.commands.convert as convert

    out = tmp_path / "a.h5"
    out.write_bytes(b"earlier")

    def partial(params, path):
        pathlib.Path(path).write_bytes(b"half a mod")
        raise InputError(f"{path}: cannot write")

    monkeypatch.setattr(convert, "write_model", partial)
    assert cli_main(["convert", str(ORACLE / "alloy5.dp"), str(out)]) == 2
    assert out.read_bytes() == b"earlier" and _names(tmp_path) == ["a.h5"]
