"""`numdp test` / `numdp show` where a side-by-side sweep against DeePMD-kit 3.2's `dp test` /
`dp show` found them differing: detail-file names, the virial figures of non-periodic systems,
`show observed-type`.  Small random models and systems; no DeePMD-kit needed."""
import json

import numpy as np
import pytest

from numdp.cli import main
from numdp.io.model_file import write_model
from numdp.model.dp_model import load_model
from randmodel import random_config, random_params
from tests_util import write_system

N = 8          # atoms per frame
K = np.arange(9, dtype=np.float64).reshape(3, 3)


@pytest.fixture
def model_file(tmp_path):
    p = random_params(ntypes=2, sel=[8, 8], neuron=(4, 8), axis_neuron=2, fitting=(8, 8), seed=5)
    p.type_map = ["O", "H"]
    path = tmp_path / "m.h5"
    write_model(p, path)
    return path


def _system(tmp_path, model_path, name, periodic, virial_offset, seed):
    """Two frames of N random atoms whose labels are the model's own predictions, the virial
    label shifted by `virial_offset` (3, 3) eV: ΔΞ = -virial_offset exactly up to round-off."""
    model = load_model(model_path, nthreads=1)
    coords, boxes, types = [], [], None
    for f in range(2):
        pos, types, box = random_config(N, 2, box_len=7.0 if periodic else None, tilt=0.1, seed=seed + f)
        coords.append(pos)
        boxes.append(box)
    outs = [model.evaluate(c, types, b, atom_virial=False) for c, b in zip(coords, boxes)]
    return write_system(tmp_path / name, np.array(coords), np.array(boxes) if periodic else None, types,
                        ["O", "H"], energy=np.array([o.energy for o in outs]),
                        force=np.array([o.forces for o in outs]),
                        virial=np.array([o.virial + virial_offset for o in outs]))


def test_detail_file_prefix_suffix_is_replaced_as_dp_test(tmp_path, model_file, capsys, monkeypatch):
    """dp test names the files Path(PREFIX).with_suffix('.e.out'): `-d res.txt` gives res.e.out
    (numdp wrote res.txt.e.out); a prefix with no file name is one line and exit 2."""
    sysdir = _system(tmp_path, model_file, "p", True, 0.01 * K, seed=1)
    assert main(["test", "-m", str(model_file), "-s", str(sysdir), "-d", str(tmp_path / "res.txt")]) == 0
    for kind in ("e", "e_peratom", "f", "v", "v_peratom", "s"):
        assert (tmp_path / f"res.{kind}.out").is_file()
        assert not (tmp_path / f"res.txt.{kind}.out").exists()
    assert main(["test", "-m", str(model_file), "-s", str(sysdir), "-d", str(tmp_path / "r.a.b")]) == 0
    assert (tmp_path / "r.a.e.out").is_file()
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)
    assert main(["test", "-m", str(model_file), "-s", str(sysdir), "-d", "."]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "-d .: not a file name prefix" in err
    assert not (tmp_path / "..e.out").exists()


def test_nopbc_virial_left_out_of_the_figures_as_dp_test(tmp_path, model_file, capsys):
    """dp test 3.2 reports the virial (and stress) of periodic systems only; a non-periodic
    system's virial labels still go to the detail file.  Periodic system: ΔΞ_ab = -0.01 k_ab eV
    (k = 0..8), so RMSE = 1000 √(mean (0.01 k/N)²) meV/atom, MAE = 1000 · 0.01 · 4 / N; the
    non-periodic one's 5 eV offsets would change both if pooled."""
    per = _system(tmp_path, model_file, "per", True, 0.01 * K, seed=1)
    clu = _system(tmp_path, model_file, "clu", False, np.full((3, 3), 5.0), seed=11)
    out = tmp_path / "r.json"
    assert main(["test", "-m", str(model_file), "-s", str(per), str(clu), "--json", str(out),
                 "-d", str(tmp_path / "d")]) == 0
    fig = json.loads(out.read_text())
    rows = {r["system"]: r for r in fig["systems"]}
    assert rows[str(clu)]["rmse_virial"] is None and rows[str(clu)]["mae_virial"] is None
    assert rows[str(clu)]["rmse_energy"] < 1e-9           # energies and forces still tested
    rmse = 1000 * np.sqrt(np.mean((0.01 * K / N) ** 2))
    mae = 1000 * 0.01 * 4 / N
    for what in (rows[str(per)], fig["overall"]):
        assert what["rmse_virial"] == pytest.approx(rmse, rel=1e-9)
        assert what["mae_virial"] == pytest.approx(mae, rel=1e-9)
    assert fig["overall"]["rmse_virial_total"] == pytest.approx(1000 * np.sqrt(np.mean((0.01 * K) ** 2)),
                                                                rel=1e-9)
    # the detail file lists both systems' virials, labels as written (5 eV above the prediction)
    v = np.loadtxt(tmp_path / "d.v.out")
    assert v.shape == (4, 18)
    np.testing.assert_allclose(v[2:, :9] - v[2:, 9:], 5.0, rtol=0, atol=1e-9)
    assert open(tmp_path / "d.s.out").read().count("\n") == 1 + 2   # stress: periodic frames only


def test_show_observed_type_as_dp_show(tmp_path, capsys):
    """dp show MODEL observed-type: the types DeePMD-kit recorded (model_def_script's
    info.observed_type) as recorded, else those with |out_bias| > 1e-6 by atomic number (H 1,
    O 8, Cu 29); a model whose out_bias is all zero (TF graphs) by its bias_atom_e."""
    from numdp.commands.show import observed_types

    p = random_params(ntypes=3, sel=[4, 4, 4], neuron=(4,), axis_neuron=2, fitting=(4,), seed=2)
    p.type_map = ["Cu", "O", "H"]
    p.out_bias = np.array([1.0, 0.0, -2.0])
    write_model(p, tmp_path / "m.h5")
    assert main(["show", str(tmp_path / "m.h5"), "observed-type"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["This is a singletask model", "The observed types for this model:",
                   "Number of observed types: 2", "Observed types: ['H', 'Cu']"]
    assert main(["show", str(tmp_path / "m.h5")]) == 0          # all attributes: it is among them
    assert "Observed types: ['H', 'Cu']" in capsys.readouterr().out
    p.out_bias = np.zeros(3)
    p.fitting.bias_atom_e = np.array([0.5, -0.5, 0.0])
    assert observed_types(p) == ["O", "Cu"]
    p.info = {"model_def_script": {"type_map": p.type_map, "info": {"observed_type": ["O", "H", "Cu"]}}}
    assert observed_types(p) == ["O", "H", "Cu"]


def test_train_and_valid_data_systems_named_without_dotdot(tmp_path, model_file):
    """dp test --valid-data resolves the input's `../per` to the folder's own path, the name its
    report and detail-file headers carry; numdp printed /.../inp/../per."""
    per = _system(tmp_path, model_file, "per", True, 0.01 * K, seed=1)
    (tmp_path / "inp").mkdir()
    (tmp_path / "inp" / "input.json").write_text(json.dumps(
        {"training": {"training_data": {"systems": ["../per"]}, "validation_data": {"systems": "../per"}}}))
    for flag in ("--train-data", "--valid-data"):
        out = tmp_path / f"r{flag}.json"
        assert main(["test", "-m", str(model_file), flag, str(tmp_path / "inp" / "input.json"),
                     "--json", str(out), "-d", str(tmp_path / flag[2:])]) == 0
        assert [r["system"] for r in json.loads(out.read_text())["systems"]] == [str(per)]
        assert open(tmp_path / f"{flag[2:]}.e.out").readline() == f"# {per}: data_e pred_e\n"


def _to_hdf5(npy_dir, h5file, group):
    """Copy a one-set npy system into `group` of a deepmd/hdf5 file, as dpdata's
    to('deepmd/hdf5') lays it out: type.raw, type_map.raw datasets, set.000/<name>.npy datasets."""
    import h5py

    with h5py.File(h5file, "a") as h5:
        g = h5.require_group(group)
        g["type.raw"] = np.loadtxt(npy_dir / "type.raw", dtype=np.int64, ndmin=1)
        g["type_map.raw"] = np.array((npy_dir / "type_map.raw").read_text().split(), dtype="S")
        for f in sorted((npy_dir / "set.000").glob("*.npy")):
            g[f"set.000/{f.name}"] = np.load(f)


def test_model_devi_reads_deepmd_hdf5_systems(tmp_path, model_file):
    """dp model-devi -s data.h5 (or data.h5#/group) reads DeePMD-kit's HDF5 systems; numdp took
    every .h5 for H5MD ("not an H5MD file") and data.h5#/group for a missing file.  The rows
    equal those of the same frames as an npy system (same arithmetic)."""
    p2 = random_params(ntypes=2, sel=[8, 8], neuron=(4, 8), axis_neuron=2, fitting=(8, 8), seed=6)
    p2.type_map = ["O", "H"]
    write_model(p2, tmp_path / "m2.h5")
    per = _system(tmp_path, model_file, "per", True, 0.01 * K, seed=1)
    _to_hdf5(per, tmp_path / "data.h5", "/a/b")
    models = [str(model_file), str(tmp_path / "m2.h5")]
    assert main(["model-devi", "-m", *models, "-s", str(per), "-o", str(tmp_path / "npy.out")]) == 0
    ref = np.loadtxt(tmp_path / "npy.out")
    for spec in (f"{tmp_path / 'data.h5'}#/a/b", str(tmp_path / "data.h5")):
        out = tmp_path / "h5.out"
        out.unlink(missing_ok=True)
        assert main(["model-devi", "-m", *models, "-s", spec, "-o", str(out)]) == 0
        # the same frames and arithmetic; 7 printed digits: a last-digit flip is < 2e-6 relative
        np.testing.assert_allclose(np.loadtxt(out), ref, rtol=2e-6, atol=1e-12)
        assert out.read_text().splitlines()[0] == f"# {tmp_path / 'data.h5'}#/a/b"


def test_model_devi_reads_a_trajectory_whose_name_holds_a_hash(tmp_path, model_file):
    """A `#` makes a system name DeePMD-kit's HDF5 location (data.h5#/group) only when the part
    before it is a file: run#2.xyz, an existing extxyz file, was taken for data file 'run' (found
    by the review of the HDF5 change: 'run: HDF5 data file not found')."""
    from ase import Atoms
    from ase.io import write

    p2 = random_params(ntypes=2, sel=[8, 8], neuron=(4, 8), axis_neuron=2, fitting=(8, 8), seed=6)
    p2.type_map = ["O", "H"]
    write_model(p2, tmp_path / "m2.h5")
    pos, types, box = random_config(N, 2, box_len=7.0, tilt=0.1, seed=3)
    frame = Atoms([["O", "H"][t] for t in types], positions=pos, cell=box, pbc=True)
    models = [str(model_file), str(tmp_path / "m2.h5")]
    rows = []
    for name in ("run2.xyz", "run#2.xyz"):
        write(tmp_path / name, [frame, frame], format="extxyz")
        assert main(["model-devi", "-m", *models, "-s", str(tmp_path / name), "-o", str(tmp_path / f"{name}.out")]) == 0
        rows.append(np.loadtxt(tmp_path / f"{name}.out"))
    np.testing.assert_array_equal(rows[0], rows[1])


def test_model_devi_reads_an_lmdb_datasets_group(tmp_path, model_file):
    """`data.lmdb#nloc=N` (a group of an LMDB dataset, a directory) is a system location too: the
    rule for '#' (a location only where the part before it is data) first took only files."""
    pytest.importorskip("lmdb")
    from lmdb_util import write_lmdb

    p2 = random_params(ntypes=2, sel=[8, 8], neuron=(4, 8), axis_neuron=2, fitting=(8, 8), seed=6)
    p2.type_map = ["O", "H"]
    write_model(p2, tmp_path / "m2.h5")
    frames = []
    for f in range(2):
        pos, types, box = random_config(N, 2, box_len=7.0, seed=f)
        frames.append({"atom_types": np.asarray(types), "coords": pos, "cells": box, "energies": 1.0})
    write_lmdb(tmp_path / "d.lmdb", frames, {"type_map": ["O", "H"]})
    models = [str(model_file), str(tmp_path / "m2.h5")]
    rows = []
    for spec, out in ((tmp_path / "d.lmdb", "a.out"), (f"{tmp_path / 'd.lmdb'}#nloc={N}", "b.out")):
        assert main(["model-devi", "-m", *models, "-s", str(spec), "-o", str(tmp_path / out)]) == 0
        rows.append(np.loadtxt(tmp_path / out))
    np.testing.assert_array_equal(rows[0], rows[1])


def test_show_prints_a_deepmd_kit_files_recorded_parameters(capsys):
    """dp show prints the descriptor / fitting_net a DeePMD-kit file records; numdp rebuilt them
    and called a float32-trained model's precision float64.  The lines are dp show 3.2's on this
    fixture (the dicts of its model_def_script, in their order)."""
    from pathlib import Path

    model = Path(__file__).parent / "data" / "pytorch" / "se_a_two_side_f32.pth"
    assert main(["show", str(model), "descriptor", "fitting-net"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == (
        "The descriptor parameter is {'type': 'se_e2_a', 'sel': [46, 92], 'rcut_smth': 0.5, 'rcut': 6.0, "
        "'neuron': [4, 8], 'resnet_dt': False, 'axis_neuron': 4, 'type_one_side': False, "
        "'precision': 'float32', 'seed': 3, 'activation_function': 'tanh', 'trainable': True, "
        "'exclude_types': [], 'env_protection': 0.0, 'set_davg_zero': False}")
    assert out[2] == (
        "The fitting_net parameter is {'neuron': [8, 8], 'resnet_dt': True, 'precision': 'float32', "
        "'seed': 3, 'type': 'ener', 'numb_fparam': 0, 'numb_aparam': 0, 'default_fparam': None, "
        "'dim_case_embd': 0, 'activation_function': 'tanh', 'trainable': True, 'rcond': None, "
        "'atom_ener': [], 'use_aparam_as_mask': False}")


def test_repeated_system_options_add_up(tmp_path, model_file, capsys):
    """`numdp test -s a -s b` tested b alone (argparse kept the last -s); as `-s a b`, both."""
    a = _system(tmp_path, model_file, "a", True, 0.0 * K, seed=1)
    b = _system(tmp_path, model_file, "b", True, 0.0 * K, seed=3)
    outs = []
    for args in (["-s", str(a), "-s", str(b)], ["-s", str(a), str(b)]):
        capsys.readouterr()
        assert main(["test", "-m", str(model_file), *args]) == 0
        outs.append([line for line in capsys.readouterr().out.splitlines() if not line.endswith(" s")])
    names = [line.split()[0] for line in outs[0] if not line.startswith("#")]
    assert outs[0] == outs[1] and names[-1] == "overall" and [n[-2:] for n in names[:-1]] == ["/a", "/b"], outs[0]
