"""`deepmd/hdf5` systems (numdp.io.h5_system): same arrays and `numdp test` figures as the npy
folders they are written from; recursive discovery; `file#/group`; one-line errors."""
import json
import pathlib

import h5py
import numpy as np
import pytest

from numdp.cli import main
from numdp.errors import InputError
from numdp.io.npy_system import find_systems, load_system
from numdp.io.structure import read_structure
from numdp.train.config import load_config
from test_npy_system import make_system, raises_naming
from test_train_run import data_dir  # noqa: F401  (fixture)

ROOT = pathlib.Path(__file__).resolve().parents[1]
WATER = ROOT / "inputs" / "water"


def write_h5_system(h5: h5py.File, group: str, npy_dir: pathlib.Path, dtype=None) -> None:
    """Copy the npy system `npy_dir` into group `group` in DeePMD-kit's / dpdata's HDF5 layout:
    type.raw an integer dataset, type_map.raw byte strings, nopbc a scalar True, one subgroup per
    set with its .npy files as datasets of the same name."""
    g = h5.require_group(group)
    g.create_dataset("type.raw", data=np.loadtxt(npy_dir / "type.raw", dtype=np.int64, ndmin=1))
    if (npy_dir / "type_map.raw").is_file():
        g.create_dataset("type_map.raw", data=np.array((npy_dir / "type_map.raw").read_text().split(), dtype="S"))
    if (npy_dir / "nopbc").exists():
        g.create_dataset("nopbc", data=True)
    for set_dir in sorted(npy_dir.glob("set.*")):
        sg = g.create_group(set_dir.name)
        for f in sorted(set_dir.glob("*.npy")):
            arr = np.load(f)
            sg.create_dataset(f.name, data=arr if dtype is None else arr.astype(dtype))


def same_system(a, b):
    assert a.type_map == b.type_map
    np.testing.assert_array_equal(a.types, b.types)
    for name in ("coords", "boxes", "energy", "forces", "virial"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("kw", [{}, {"nframes": (2, 3)}, {"nopbc": True}, {"type_map": None},
                                {"labels": ("energy",)}])
def test_h5_group_reads_like_npy_folder(tmp_path, kw):
    npy = make_system(tmp_path / "npy", **kw)
    with h5py.File(tmp_path / "d.h5", "w") as h5:
        write_h5_system(h5, "sys", npy)
    h = load_system(f"{tmp_path / 'd.h5'}#/sys")
    same_system(h, load_system(npy))
    assert str(h.path) == f"{tmp_path / 'd.h5'}#/sys"


def test_h5_root_group_and_float32(tmp_path):
    npy = make_system(tmp_path / "npy", dtype=np.float32)
    with h5py.File(tmp_path / "d.h5", "w") as h5:
        write_h5_system(h5, "/", npy)
    assert find_systems(tmp_path / "d.h5") == [pathlib.Path(f"{tmp_path / 'd.h5'}#/")]
    same_system(load_system(tmp_path / "d.h5"), load_system(npy))
    assert load_system(tmp_path / "d.h5").coords.dtype == np.float64


def test_recursive_discovery_and_group_selection(tmp_path):
    f = tmp_path / "d.h5"
    with h5py.File(f, "w") as h5:
        write_h5_system(h5, "/b/deep/s2", make_system(tmp_path / "s2", seed=2))
        write_h5_system(h5, "/a", make_system(tmp_path / "s1", seed=1))
        write_h5_system(h5, "/b/s3", make_system(tmp_path / "s3", seed=3))
        h5.create_group("/empty/nothing")
    loc = lambda g: pathlib.Path(f"{f}#{g}")  # noqa: E731
    assert find_systems(f) == [loc("/a"), loc("/b/deep/s2"), loc("/b/s3")]
    assert find_systems(f"{f}#/b") == [loc("/b/deep/s2"), loc("/b/s3")]
    assert find_systems(f"{f}#b/s3/") == [loc("/b/s3")]
    same_system(load_system(loc("/b/deep/s2")), load_system(tmp_path / "s2"))
    with raises_naming(pathlib.Path(f"{f}#/empty"), "no system"):
        find_systems(f"{f}#/empty")


def test_errors_name_file_group_and_dataset(tmp_path):
    f = tmp_path / "d.h5"
    npy = make_system(tmp_path / "npy")
    with h5py.File(f, "w") as h5:
        write_h5_system(h5, "ok", npy)
        write_h5_system(h5, "nocoord", npy)
        del h5["nocoord/set.000/coord.npy"]
        write_h5_system(h5, "nobox", npy)
        del h5["nobox/set.000/box.npy"]
        write_h5_system(h5, "notypes", npy)
        del h5["notypes/type.raw"]
        write_h5_system(h5, "groupcoord", npy)
        del h5["groupcoord/set.000/coord.npy"]
        h5.create_group("groupcoord/set.000/coord.npy")
        write_h5_system(h5, "nosets", npy)
        del h5["nosets/set.000"]
        write_h5_system(h5, "badshape", npy)
        del h5["badshape/set.000/force.npy"]
        h5["badshape/set.000/force.npy"] = np.zeros((2, 5))
    with raises_naming(pathlib.Path(f"{f}#/nocoord/set.000/coord.npy"), "missing"):
        load_system(f"{f}#/nocoord")
    with raises_naming(pathlib.Path(f"{f}#/nobox/set.000/box.npy"), "missing"):
        load_system(f"{f}#/nobox")
    with raises_naming(pathlib.Path(f"{f}#/notypes/type.raw"), "missing"):
        load_system(f"{f}#/notypes")
    with raises_naming(pathlib.Path(f"{f}#/groupcoord/set.000/coord.npy"), "group"):
        load_system(f"{f}#/groupcoord")
    with raises_naming(pathlib.Path(f"{f}#/nosets"), "no set.* groups"):
        load_system(f"{f}#/nosets")
    with raises_naming(pathlib.Path(f"{f}#/badshape/set.000/force.npy"), "shape (2, 5)"):
        load_system(f"{f}#/badshape")
    with raises_naming(f, "#/nope", "no such group"):
        load_system(f"{f}#/nope")
    with raises_naming(f, "#/ok/type.raw", "not a group"):
        find_systems(f"{f}#/ok/type.raw")
    with raises_naming(tmp_path / "missing.h5", "not found"):
        load_system(f"{tmp_path / 'missing.h5'}#/ok")
    (tmp_path / "text.h5").write_text("not hdf5\n")
    with raises_naming(tmp_path / "text.h5", "HDF5"):
        find_systems(f"{tmp_path / 'text.h5'}#/")
    with raises_naming(tmp_path / "text.h5", "neither a data directory nor an HDF5 file"):
        find_systems(tmp_path / "text.h5")
    with raises_naming(tmp_path / "text.h5", "neither a system directory nor an HDF5 file"):
        load_system(tmp_path / "text.h5")
    assert main(["test", "-m", str(WATER / "model.h5"), "-s", f"{f}#/nocoord"]) == 2


def water_h5(tmp_path) -> pathlib.Path:
    f = tmp_path / "water.h5"
    with h5py.File(f, "w") as h5:
        for d in find_systems(WATER / "data"):
            write_h5_system(h5, f"water/{d.name}", d)
    return f


def test_numdp_test_same_figures_from_h5(tmp_path, capsys):
    """The HDF5 copy of inputs/water/data gives exactly the `numdp test` figures of the npy folders
    (same arrays in, same arithmetic: equality, not a tolerance)."""
    f = water_h5(tmp_path)
    model = str(WATER / "model.h5")
    assert main(["test", "-m", model, "-s", str(WATER / "data"), "-n", "2", "--json", str(tmp_path / "n.json")]) == 0
    assert main(["test", "-m", model, "-s", str(f), "-n", "2", "--json", str(tmp_path / "h.json")]) == 0
    n = json.loads((tmp_path / "n.json").read_text())
    h = json.loads((tmp_path / "h.json").read_text())
    assert [s["frames"] for s in h["systems"]] == [2, 2, 2, 2]
    assert [s["system"] for s in h["systems"]] == [f"{f}#/water/data_{i}" for i in range(4)]
    for a, b in zip(n["systems"] + [n["overall"]], h["systems"] + [h["overall"]]):
        assert {k: v for k, v in a.items() if k != "system"} == {k: v for k, v in b.items() if k != "system"}
    assert n["overall"]["rmse_force"] > 0


def test_run_start_structure_and_train_systems_from_h5(tmp_path):
    f = water_h5(tmp_path)
    s = read_structure(f"{f}#/water/data_2", frame=3)
    ref = load_system(WATER / "data" / "data_2")
    np.testing.assert_array_equal(s.positions, ref.coords[3])
    np.testing.assert_array_equal(s.box, ref.boxes[3])
    assert s.elements[:3] == ["O", "O", "O"] and s.elements[-1] == "H"
    with pytest.raises(InputError, match="holds 4 systems"):
        read_structure(f)
    inp = tmp_path / "train.toml"
    inp.write_text('[model]\ntype_map = ["O", "H"]\n[model.descriptor]\n[training]\nsystems = ["water.h5#/water/data_1"]\n'
                   'numb_steps = 1\n[validation]\nsystems = ["water.h5"]\n')
    cfg = load_config(inp)
    assert cfg.training.systems == [pathlib.Path(f"{f}#/water/data_1")]
    assert len(cfg.validation.systems) == 4


def test_training_on_h5_copy_gives_the_same_learning_curve(tmp_path, data_dir):
    """`numdp train` with the HDF5 copy of the npy training and validation data: the same
    systems in the same order (sorted names), so the same seeds give the same lcurve, bit for bit."""
    from test_train_run import make_input, run

    path = make_input(tmp_path, data_dir, steps=4)
    run(path)
    npy_curve = (path.parent / "lcurve.out").read_text()
    with h5py.File(tmp_path / "data.h5", "w") as h5:
        for role in ("train", "valid"):
            for d in sorted((data_dir / role).iterdir()):
                write_h5_system(h5, f"{role}/{d.name}", d)
    text = path.read_text().replace('"data/train"', '"../data.h5#/train"').replace('"data/valid"', '"../data.h5#valid"')
    path.write_text(text)
    trainer, _ = run(path)
    h5 = path.parent / ".." / "data.h5"  # relative to the input file, as written
    assert [str(s.path) for s in trainer.train_sys] == [f"{h5}#/train/cluster", f"{h5}#/train/pbc"]
    assert [str(s.path) for s in trainer.valid_sys] == [f"{h5}#/valid/pbc"]
    assert (path.parent / "lcurve.out").read_text() == npy_curve
