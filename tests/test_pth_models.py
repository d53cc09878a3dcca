"""DeePMD-kit PyTorch model files (.pt checkpoint, .pth frozen TorchScript) read without torch.

Fixtures in tests/data/pytorch, written by tools/make_pth_fixtures.py with DeePMD-kit 3.2: per
case the checkpoint, the frozen model, DeePMD-kit's own `dp convert-backend` of it to `.dp`, and
DeePMD-kit's evaluation of one water frame.
"""
from __future__ import annotations

import collections
import copy
import io
import json
import pickle
import sys
import types
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

import numdp
from numdp.cli import main as cli_main
from numdp.errors import InputError
from numdp.io import pt_read
from numdp.io.model_file import KIND_PT, model_kind, read_model
from numdp.io.torch_archive import ScriptObject, read_torch_archive
from numdp.io.structure import write_extxyz
from test_model_file import assert_params_equal
from tests_util import assert_matches_deepmd, write_system

DATA = Path(__file__).resolve().parent / "data" / "pytorch"
CASES = ["se_a_one_side_f64", "se_a_two_side_f64", "se_a_two_side_f32", "se_a_excl_f64", "se_a_pair_excl_f64",
         "se_a_atom_excl_f64"]
FLOAT64 = ["se_a_one_side_f64", "se_a_two_side_f64", "se_a_excl_f64", "se_a_pair_excl_f64", "se_a_atom_excl_f64"]
# DeePMD-kit's float64 oracle requirement (../shared/oracle/README.md, tests/test_oracle.py)
TOL = 1e-10


def rel_err(a, b):
    return np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max()


def one_line(exc_info, path) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


def cli_error(capsys, argv, path) -> str:
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(path) in err, err
    return err


@pytest.fixture(scope="module")
def dp_params():
    return {case: read_model(DATA / f"{case}.dp") for case in CASES}


# ---------------------------------------------------------------- the model read


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_arrays_equal_deepmd_kits_own_conversion(dp_params, case, suffix):
    """Every array (davg, dstd, every w/b/idt, bias_atom_e, out_bias, out_std) and every
    hyper-parameter equals what DeePMD-kit's `dp convert-backend` wrote to the .dp, bit for bit."""
    path = DATA / f"{case}{suffix}"
    assert model_kind(path) == KIND_PT
    params = read_model(path)
    ref = dp_params[case]
    assert params.info["model_def_script"] == ref.info["model_def_script"]
    params.info = ref.info   # only the provenance differs (file kind, DeePMD-kit version)
    assert_params_equal(params, ref)
    assert params.min_nbor_dist is not None


def test_fixtures_cover_the_layouts(dp_params):
    """One-sided (ntypes nets) and two-sided (ntypes**2) embeddings, idt in embedding and fitting
    nets, float32 storage, excluded type pairs (tests/test_exclude_types.py), model-level
    excluded pairs and atom types (tests/test_model_exclusions.py): the fixtures hold what the
    tests claim."""
    one, two, f32, excl, pair, atom = (dp_params[c] for c in CASES)
    assert excl.descriptor.exclude_types == [[0, 1]] and excl.descriptor.type_one_side
    assert all(not p.descriptor.exclude_types for p in (one, two, f32, pair, atom))
    assert pair.pair_exclude_types == [[0, 1]] and not pair.atom_exclude_types
    assert atom.atom_exclude_types == [1] and not atom.pair_exclude_types and not atom.descriptor.type_one_side
    assert all(not p.model_exclusions for p in (one, two, f32, excl))
    assert one.descriptor.type_one_side and len(one.descriptor.embeddings) == 2
    assert not two.descriptor.type_one_side and len(two.descriptor.embeddings) == 4
    assert any(lay.idt is not None for net in two.descriptor.embeddings for lay in net.layers)
    assert any(lay.idt is not None for net in one.fitting.nets for lay in net.layers)
    state = read_torch_archive(DATA / "se_a_two_side_f32.pt").root["model"]
    net = "model.Default.atomic_model.descriptor.sea.filter_layers.networks.3.layers.1.matrix"
    assert state[net].dtype == np.float32 and state[net].shape == (4, 8)


@pytest.mark.parametrize("case", CASES)
def test_evaluation_equals_the_dp_and_deepmd_kit(case):
    """numdp's energy, forces and virial from the .pt and the .pth equal those from the .dp
    exactly (the arrays are bit-equal, the evaluation is the same code with one thread), and
    DeePMD-kit's own evaluation of the .pth to TOL (float64) or, for the float32 model that
    DeePMD-kit evaluates in float32, to order_bound(U32, n) with n the longest summation chain
    (neighbour slots + descriptor width + atoms), as in tests/test_oracle.py."""
    ref = np.load(DATA / f"{case}.npz")
    out = {s: numdp.load_model(DATA / f"{case}{s}", nthreads=1).evaluate(ref["coord"], ref["atype"], ref["box"])
           for s in (".dp", ".pt", ".pth")}
    for s in (".pt", ".pth"):
        assert out[s].energy == out[".dp"].energy
        for key in ("forces", "virial", "atom_energies"):
            assert np.array_equal(getattr(out[s], key), getattr(out[".dp"], key)), (s, key)
    assert_matches_deepmd(out[".pth"], ref, read_model(DATA / f"{case}.dp").descriptor, case in FLOAT64)


# ---------------------------------------------------------------- commands


@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_convert_round_trip(tmp_path, capsys, suffix):
    """numdp convert X.pth X.h5 -> .dp: the same model as DeePMD-kit's own .dp at every step."""
    src = DATA / f"se_a_two_side_f64{suffix}"
    h5 = tmp_path / "m.h5"
    assert cli_main(["convert", str(src), str(h5)]) == 0
    assert "DeePMD-kit PyTorch model" in capsys.readouterr().out
    from_pt, from_h5 = read_model(src), read_model(h5)
    assert_params_equal(from_h5, from_pt)
    dp = tmp_path / "m.dp"
    assert cli_main(["convert", str(h5), str(dp)]) == 0
    back = read_model(dp)
    ref = read_model(DATA / "se_a_two_side_f64.dp")
    back.info = ref.info
    assert_params_equal(back, ref)


def test_test_compress_and_run_accept_a_pth(tmp_path, capsys):
    """numdp test, compress and run take the .pth; `run` gives the .dp's trajectory bit for bit."""
    pth, dp = DATA / "se_a_one_side_f64.pth", DATA / "se_a_one_side_f64.dp"
    ref = np.load(DATA / "se_a_one_side_f64.npz")
    # the frame labelled with DeePMD-kit's own predictions: numdp test's errors are round-off
    system = write_system(tmp_path / "sys", ref["coord"][None], ref["box"][None], ref["atype"],
                          [str(t) for t in ref["type_map"]], energy=ref["energy"].reshape(1),
                          force=ref["force"][None], virial=ref["virial"][None])
    assert cli_main(["test", "-m", str(pth), "-s", str(system), "--json", str(tmp_path / "t.json")]) == 0
    fig = json.loads((tmp_path / "t.json").read_text())["overall"]
    # each error is at most TOL times the largest reference value (test above); meV, per atom
    n = len(ref["atype"])
    assert fig["rmse_energy"] <= 1e3 * TOL * abs(ref["energy"]) / n
    assert fig["rmse_force"] <= 1e3 * TOL * np.abs(ref["force"]).max()
    assert fig["rmse_virial"] <= 1e3 * TOL * np.abs(ref["virial"]).max() / n
    assert cli_main(["compress", str(pth), "-s", "0.05", "-o", str(tmp_path / "cmp.h5")]) == 0
    assert read_model(tmp_path / "cmp.h5").descriptor.tables is not None
    finals = []
    for model in (pth, dp):
        folder = tmp_path / model.suffix[1:]
        folder.mkdir()
        elements = [str(ref["type_map"][t]) for t in ref["atype"]]
        write_extxyz(folder / "start.extxyz", elements, ref["coord"], ref["box"])
        (folder / "md.toml").write_text(
            f'[model]\nfile = "{model}"\nthreads = 1\n[system]\nfile = "start.extxyz"\n'
            f'[md]\ntimestep = 0.0005\nsteps = 3\nensemble = "nve"\n'
            f'[output]\ntrajectory = "traj.h5md"\nevery = 3\nthermo_every = 3\nprogress = "none"\n')
        assert cli_main(["run", str(folder / "md.toml")]) == 0
        with h5py.File(folder / "traj.h5md") as h5:
            finals.append(h5["particles/trajectory/position/value"][-1])
    capsys.readouterr()
    assert np.array_equal(finals[0], finals[1])
    assert not np.array_equal(finals[0], ref["coord"])


# ---------------------------------------------------------------- bad files


def test_damaged_zip(tmp_path, capsys):
    """A flipped byte inside a tensor's storage fails the zip's CRC; a truncated archive has no
    central directory. Both: one line naming the file."""
    raw = bytearray((DATA / "se_a_one_side_f64.pth").read_bytes())
    with zipfile.ZipFile(DATA / "se_a_one_side_f64.pth") as zf:
        info = zf.getinfo("se_a_one_side_f64/data/3")  # the torch.jit.save prefix: the file's stem
    assert info.compress_type == zipfile.ZIP_STORED
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start + 100] ^= 0xFF
    flipped = tmp_path / "flipped.pth"
    flipped.write_bytes(bytes(raw))
    with pytest.raises(InputError) as ei:
        read_model(flipped)
    assert "damaged" in one_line(ei, flipped)
    cli_error(capsys, ["convert", str(flipped), str(tmp_path / "o.h5")], flipped)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(bytes(raw[: len(raw) // 2]))
    with pytest.raises(InputError) as ei:
        read_model(cut)
    assert "damaged zip archive" in one_line(ei, cut)


def test_zip_that_is_not_a_torch_archive(tmp_path, capsys):
    path = tmp_path / "model.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("notes.txt", "hello")
    with pytest.raises(InputError) as ei:
        read_model(path)
    assert "not a PyTorch archive" in one_line(ei, path)
    cli_error(capsys, ["test", "-m", str(path), "-s", str(tmp_path)], path)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_forbidden_global_is_refused_and_never_called(tmp_path, capsys):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("evil/data.pkl", pickle.dumps({"model": _Evil(marker)}, protocol=2))
        zf.writestr("evil/byteorder", "little")
    with pytest.raises(InputError) as ei:
        read_model(path)
    msg = one_line(ei, path)
    assert "refused" in msg and "system" in msg
    cli_error(capsys, ["convert", str(path), str(tmp_path / "o.h5")], path)
    assert not marker.exists()


def test_damaged_pickle_and_foreign_checkpoint(tmp_path):
    src = DATA / "se_a_one_side_f64.pt"
    with zipfile.ZipFile(src) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    key = next(n for n in members if n.endswith("/data.pkl"))
    for name, pkl, expect in (("cut.pt", members[key][:-200], "data.pkl cannot be read"),
                              ("other.pt", pickle.dumps({"weights": [1.0, 2.0]}, protocol=2),
                               "not a DeePMD-kit training checkpoint")):
        path = tmp_path / name
        with zipfile.ZipFile(path, "w") as zf:
            for n, b in members.items():
                zf.writestr(n, pkl if n == key else b)
        with pytest.raises(InputError) as ei:
            read_model(path)
        assert expect in one_line(ei, path)


@pytest.mark.parametrize("name,holds", [("se_e2_r.pth", "a 'se_e2_r' descriptor"),
                                        ("dipole.pth", "a DipoleModel (dipole fitting)")])
def test_unsupported_kinds_from_deepmd_kit(tmp_path, capsys, name, holds):
    """Real models frozen by DeePMD-kit: an se_e2_r descriptor, a dipole fitting."""
    path = DATA / name
    with pytest.raises(InputError) as ei:
        read_model(path)
    assert f"not a DeePMD-kit se_e2_a energy model: it holds {holds}" in one_line(ei, path)
    cli_error(capsys, ["convert", str(path), str(tmp_path / "o.h5")], path)


def test_multi_task_checkpoint_from_deepmd_kit(tmp_path, capsys):
    """A real two-branch multi-task checkpoint: the message names the branches and the way out."""
    path = DATA / "multitask.pt"
    with pytest.raises(InputError) as ei:
        read_model(path)
    msg = one_line(ei, path)
    assert "it holds a multi-task model (branches water_a, water_b)" in msg and "--head" in msg
    cli_error(capsys, ["convert", str(path), str(tmp_path / "o.h5")], path)


@pytest.fixture(scope="module")
def checkpoint_root():
    return read_torch_archive(DATA / "se_a_one_side_f64.pt").root


@pytest.mark.parametrize("change,holds", [
    (lambda m: m["fitting_net"].update(type="dipole"), "a 'dipole' fitting"),
    (lambda m: m["descriptor"].update(type="dpa1"), "a 'dpa1' descriptor"),
    (lambda m: m.update(spin={"use_spin": [True, False]}), "a spin model"),
    (lambda m: m.update(type="linear_ener"), "a 'linear_ener' model"),
    (lambda m: m.update(use_srtab="table.txt", sw_rmin=0.5, sw_rmax=1.0), "a DP + ZBL model (use_srtab)"),
    (lambda m: m.update(bridging_method="zbl"), "a model bridged to an inner potential"),
    (lambda m: m["fitting_net"].update(dim_case_embd=2), "a fitting net with case embedding"),
    (lambda m: m.update(model_dict={"water": {}, "ice": {}}), "a multi-task model (branches water, ice)"),
])
def test_other_model_kinds_are_named(checkpoint_root, change, holds):
    """The checkpoint's own model section, edited to other kinds DeePMD-kit writes there."""
    root = copy.deepcopy(checkpoint_root)
    change(root["model"]["_extra_state"]["model_params"])
    path = Path("x.pt")
    with pytest.raises(InputError) as ei:
        model, tensors = pt_read._from_checkpoint(root, path)
        pt_read.params_from_torch(model, tensors, path, "test")
    assert f"not a DeePMD-kit se_e2_a energy model: it holds {holds}" in one_line(ei, path)


def test_compressed_and_non_energy_frozen_models_are_named(checkpoint_root):
    root = copy.deepcopy(checkpoint_root)
    state = root["model"]
    state["model.Default.atomic_model.descriptor.sea.compress_data.0"] = np.ones((4, 48))
    model, tensors = pt_read._from_checkpoint(root, Path("c.pt"))
    with pytest.raises(InputError) as ei:
        pt_read.params_from_torch(model, tensors, Path("c.pt"), "test")
    assert "it holds a compressed model" in one_line(ei, "c.pt")
    frozen = read_torch_archive(DATA / "se_a_one_side_f64.pth").root
    dipole = type("DipoleModel", (ScriptObject,), {"torch_class": "__torch__.deepmd.pt.model.model.DipoleModel"})()
    dipole.state = frozen.state
    with pytest.raises(InputError) as ei:
        pt_read._from_frozen(dipole, Path("d.pth"))
    assert "it holds a DipoleModel" in one_line(ei, "d.pth")


def test_missing_tensor_is_named(checkpoint_root):
    root = copy.deepcopy(checkpoint_root)
    del root["model"]["model.Default.atomic_model.fitting_net.filter_layers.networks.1.layers.2.bias"]
    model, tensors = pt_read._from_checkpoint(root, Path("m.pt"))
    with pytest.raises(InputError) as ei:
        pt_read.params_from_torch(model, tensors, Path("m.pt"), "test")
    assert "fitting_net.filter_layers.networks.1.layers.2.bias is missing" in one_line(ei, "m.pt")


# ---------------------------------------------------------------- the archive format itself


class _Storage:
    def __init__(self, key, kind, data):
        self.key, self.kind, self.data = key, kind, data


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return (sys.modules["torch._utils"]._rebuild_tensor_v2, self.args)


class _TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", obj.kind, obj.key, "cpu", obj.data.size)
        return None


def _write_archive(path, build, byteorder, monkeypatch):
    """A torch.save-style archive written without torch: stand-in torch modules give the pickle
    the global names torch writes (torch._utils._rebuild_tensor_v2, torch.DoubleStorage, ...);
    build(torch) -> (object to save, storages to write). torch 2.13's torch.load(weights_only=True)
    reads these archives (both byte orders) to the same tensors (checked once by hand)."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    for name in ("DoubleStorage", "FloatStorage", "BFloat16Storage"):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    obj, storages = build(torch)
    buf = io.BytesIO()
    _TorchPickler(buf, protocol=2).dump(obj)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/byteorder", byteorder)
        zf.writestr("archive/version", "3\n")
        for s in storages:
            order = "<" if byteorder == "little" else ">"
            zf.writestr(f"archive/data/{s.key}", s.data.astype(s.data.dtype.newbyteorder(order)).tobytes())


@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_tensor_layouts_offsets_strides_and_byte_order(tmp_path, monkeypatch, byteorder):
    """Tensors that view part of a shared storage (offset, transposed strides, a scalar) come
    back as the numpy arrays they denote, in either byte order."""
    base = np.arange(12, dtype=np.float64) * 0.5 - 1.0
    f32 = np.linspace(-1.0, 1.0, 5, dtype=np.float32)

    def build(torch):
        sd, sf = _Storage("0", torch.DoubleStorage, base), _Storage("1", torch.FloatStorage, f32)
        return ({"t": _Tensor(sd, 2, (2, 3), (1, 2)), "row": _Tensor(sd, 1, (4,), (3,)), "s": _Tensor(sd, 11, (), ()),
                 "f": _Tensor(sf, 0, (5,), (1,)), "e": _Tensor(sd, 0, (0, 3), (3, 1))}, [sd, sf])

    path = tmp_path / "t.pt"
    _write_archive(path, build, byteorder, monkeypatch)
    got = read_torch_archive(path).root
    expect = {"t": np.lib.stride_tricks.as_strided(base[2:], (2, 3), (8, 16)), "row": base[1::3],
              "s": base[11], "f": f32, "e": np.zeros((0, 3))}
    for key, value in expect.items():
        assert got[key].dtype == value.dtype and got[key].dtype.isnative, key
        assert got[key].shape == np.shape(value) and np.array_equal(got[key], value), key


def test_unsupported_storage_and_overrun_are_named(tmp_path, monkeypatch):
    path = tmp_path / "bf16.pt"
    _write_archive(path, lambda torch: ({"t": _Tensor(_Storage("0", torch.BFloat16Storage, np.zeros(2, np.uint16)),
                                                      0, (2,), (1,))}, []), "little", monkeypatch)
    with pytest.raises(InputError) as ei:
        read_model(path)
    assert "BFloat16Storage tensors, which numdp does not read" in one_line(ei, path)
    path = tmp_path / "over.pt"

    def build(torch):
        storage = _Storage("0", torch.DoubleStorage, np.zeros(4))
        return {"t": _Tensor(storage, 2, (3,), (1,))}, [storage]

    _write_archive(path, build, "little", monkeypatch)
    with pytest.raises(InputError) as ei:
        read_model(path)
    assert "runs past its storage" in one_line(ei, path)


def test_freeze_and_restart_take_deepmd_kits_checkpoints(tmp_path, capsys):
    """dp train's PyTorch checkpoints: numdp freeze -c writes their model (named directly, or a
    folder whose `checkpoint` file names the latest, as dp freeze -c reads it); numdp train
    --restart, which needs numdp's own optimiser state, says what to do instead in one line."""
    import shutil

    case = "se_a_two_side_f64"
    folder = tmp_path / "run"
    folder.mkdir()
    shutil.copy(DATA / f"{case}.pt", folder / "model.ckpt-7.pt")
    (folder / "checkpoint").write_text("model.ckpt-7.pt")
    want = read_model(DATA / f"{case}.pt")
    for source in (folder, folder / "model.ckpt-7.pt"):
        out = tmp_path / f"frozen{len(str(source))}.h5"
        assert cli_main(["freeze", "-c", str(source), "-o", str(out)]) == 0
        assert "DeePMD-kit's checkpoint" in capsys.readouterr().out
        got = read_model(out)
        assert got.info.pop("frozen_from") == "model.ckpt-7.pt"
        assert_params_equal(got, want)
    assert cli_main(["freeze", "-c", str(folder), "--ema", "-o", str(tmp_path / "e.h5")]) == 2
    from numdp.train.checkpoint import read_checkpoint

    with pytest.raises(InputError, match=r"not an HDF5 file\); a DeePMD-kit checkpoint: start from its "
                                         r"weights with --init-model"):
        read_checkpoint(folder / "model.ckpt-7.pt")
