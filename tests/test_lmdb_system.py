"""DeePMD-kit's LMDB datasets (numdp.io.lmdb_system): read as DeePMD-kit's own reader reads them
(tests/data/lmdb, tools/make_lmdb_fixtures.py); the same arrays, `numdp test` figures and
training run as the npy systems they are written from; frames grouped by atom count, labels and
cell; one-line errors."""
import json
import pathlib
import sys

import numpy as np
import pytest

from lmdb_util import write_lmdb
from numdp.cli import main
from numdp.errors import InputError
from numdp.io.lmdb_system import lmdb_groups
from numdp.io.npy_system import find_systems, load_system
from test_h5_system import same_system
from test_npy_system import make_system, raises_naming
from test_train_run import data_dir  # noqa: F401  (fixture)

ROOT = pathlib.Path(__file__).resolve().parents[1]
WATER = ROOT / "inputs" / "water"
FIXTURE = ROOT / "tests" / "data" / "lmdb"

NPY_TO_LMDB = {"coord": "coords", "box": "cells", "energy": "energies", "force": "forces", "virial": "virials"}


def lmdb_copy(path: pathlib.Path, *npy_dirs: pathlib.Path, dtype=None, meta=None) -> pathlib.Path:
    """The frames of the npy systems `npy_dirs`, in order, as one LMDB dataset at `path` (type_map
    of the first system in the metadata; arrays under DeePMD-kit's LMDB names, stored in `dtype`)."""
    frames = []
    type_map = None
    for d in npy_dirs:
        s = load_system(d)
        type_map = type_map or s.type_map
        for f in range(s.nframes):
            frame = {"atom_types": s.types.astype(np.int64)}
            for npy, key in NPY_TO_LMDB.items():
                arr = {"coord": s.coords, "box": s.boxes, "energy": s.energy, "force": s.forces,
                       "virial": s.virial}[npy]
                if arr is not None:
                    frame[key] = arr[f] if dtype is None else arr[f].astype(dtype)
            for name in ("atom_pref", "fparam", "aparam"):
                arr = getattr(s, name)
                if arr is not None:
                    frame[name] = arr[f]
            frames.append(frame)
    return write_lmdb(path, frames, {"type_map": type_map} if meta is None else meta)


def test_reads_what_deepmd_kit_reads():
    """Every frame of the fixture as DeePMD-kit's LmdbTestData gives it (coordinates, cells, types
    remapped by name to the model's type map, labels): float32 storage widened exactly, a frame
    without a cell non-periodic (DeePMD-kit: a zero cell), per-frame types of one atom count a
    mixed-type system."""
    ref = np.load(FIXTURE / "deepmd_kit.npz")
    data = FIXTURE / "small.lmdb"
    groups = lmdb_groups(data)
    assert groups == {"nloc=4:energy+force": [3, 4], "nloc=4:energy+force:nopbc": [5],
                      "nloc=6": [0, 1, 2]}
    assert find_systems(data) == [pathlib.Path(f"{data}#{g}") for g in groups]
    seen = []
    for name, frames in groups.items():
        s = load_system(f"{data}#{name}")
        assert s.nframes == len(frames)
        types = s.frame_model_types(["O", "H"])
        for k, i in enumerate(frames):
            np.testing.assert_array_equal(s.coords[k], ref[f"coord_{i}"].reshape(-1, 3))
            np.testing.assert_array_equal(types[k], ref[f"type_{i}"].reshape(-1))
            if s.boxes is None:
                assert not ref[f"box_{i}"].any()
            else:
                np.testing.assert_array_equal(s.boxes[k], ref[f"box_{i}"].reshape(3, 3))
            np.testing.assert_array_equal(s.energy[k], ref[f"energy_{i}"].item())
            np.testing.assert_array_equal(s.forces[k], ref[f"force_{i}"].reshape(-1, 3))
            if f"virial_{i}" in ref:
                np.testing.assert_array_equal(s.virial[k], ref[f"virial_{i}"].reshape(3, 3))
            else:
                assert s.virial is None
            seen.append(i)
        assert (s.frame_types is None) == (name != "nloc=4:energy+force")
    assert sorted(seen) == list(range(6))


@pytest.mark.parametrize("kw", [{}, {"nopbc": True}, {"labels": ("energy",)}, {"type_map": None}])
def test_lmdb_copy_reads_like_the_npy_system(tmp_path, kw):
    npy = make_system(tmp_path / "npy", nframes=(2, 3), **kw)
    copy = lmdb_copy(tmp_path / "d.lmdb", npy, meta={} if kw.get("type_map", 1) is None else None)
    s = load_system(copy)
    same_system(s, load_system(npy))
    assert s.frame_types is None and str(s.path) == f"{copy}#nloc=3"
    assert find_systems(copy) == [s.path]


def test_labels_parameters_and_singular_names(tmp_path):
    """atom_pref / atomic_pref, fparam and aparam (any width, one per frame of a group), find_<label>
    = 0 marking a stored label absent, and DeePMD-kit's singular names (coord, box, energy)."""
    rng = np.random.default_rng(1)
    frames = []
    for i in range(2):
        frames.append({"atom_types": np.array([0, 1, 1]), "coord": rng.uniform(0, 4, (3, 3)),
                       "box": 4.0 * np.eye(3), "energy": float(i), "forces": rng.normal(size=(3, 3)),
                       "virials": rng.normal(size=(3, 3)), "find_virial": np.array(0.0, dtype=np.float32),
                       ("atomic_pref" if i else "atom_pref"): rng.uniform(size=3),
                       "fparam": np.array([0.5, i]), "aparam": rng.uniform(size=(3, 2))})
    path = write_lmdb(tmp_path / "p.lmdb", frames, {"type_map": ["O", "H"]})
    s = load_system(path)
    assert s.virial is None and s.energy.tolist() == [0.0, 1.0]
    np.testing.assert_array_equal(s.atom_pref, np.stack([frames[0]["atom_pref"], frames[1]["atomic_pref"]]))
    np.testing.assert_array_equal(s.fparam, np.stack([f["fparam"] for f in frames]))
    np.testing.assert_array_equal(s.aparam, np.stack([f["aparam"] for f in frames]))
    assert s.fparam_rows(2, None, "the model").shape == (2, 2) and s.aparam_rows(2, "the model").shape == (2, 3, 2)


def test_numdp_test_same_figures_as_the_npy_systems(tmp_path):
    """inputs/water/data copied into one LMDB dataset (all frames of 192 atoms, one group): `numdp
    test` gives the figures of the npy systems taken together, exactly (same arrays, same
    arithmetic), with the model's type map reached through the metadata's by name."""
    dirs = find_systems(WATER / "data")[:2]
    copy = lmdb_copy(tmp_path / "w.lmdb", *dirs)
    model = str(WATER / "model.h5")
    assert main(["test", "-m", model, "-s", *map(str, dirs), "-n", "3", "--json", str(tmp_path / "n.json")]) == 0
    n = json.loads((tmp_path / "n.json").read_text())
    assert main(["test", "-m", model, "-s", str(copy), "--json", str(tmp_path / "l.json")]) == 0
    lm = json.loads((tmp_path / "l.json").read_text())
    assert [s["system"] for s in lm["systems"]] == [f"{copy}#nloc=192"]
    assert lm["overall"]["frames"] == sum(load_system(d).nframes for d in dirs)
    # the first three frames of the LMDB are the first system's first three
    assert main(["test", "-m", model, "-s", str(copy), "-n", "3", "--json", str(tmp_path / "l3.json")]) == 0
    l3 = json.loads((tmp_path / "l3.json").read_text())
    assert {k: v for k, v in l3["overall"].items() if k != "system"} == \
           {k: v for k, v in n["systems"][0].items() if k != "system"}


def test_training_on_the_lmdb_copy_gives_the_same_learning_curve(tmp_path, data_dir):
    """`numdp train` with an LMDB copy of each npy training and validation system: the same systems
    in the same order (one group each), so the same seeds give the same lcurve, bit for bit."""
    from test_train_run import make_input, run

    path = make_input(tmp_path, data_dir, steps=4)
    run(path)
    npy_curve = (path.parent / "lcurve.out").read_text()
    for role in ("train", "valid"):
        for d in sorted((data_dir / role).iterdir()):
            lmdb_copy(tmp_path / role / f"{d.name}.lmdb", d)
    text = path.read_text().replace('"data/train"', '"../train"').replace('"data/valid"', '"../valid"')
    path.write_text(text)
    trainer, _ = run(path)
    assert [str(s.path) for s in trainer.train_sys] == [
        f"{path.parent}/../train/{n}.lmdb#nloc={load_system(data_dir / 'train' / n).natoms}" for n in ("cluster", "pbc")]
    assert (path.parent / "lcurve.out").read_text() == npy_curve


def test_several_groups_of_one_dataset(tmp_path):
    """Frames of 3 and 5 atoms: two systems; naming the dataset where one system is read is
    refused in one line listing its groups; a group reads alone; an unknown group is named."""
    a = make_system(tmp_path / "a", types=(0, 1, 1), nframes=(2,))
    b = make_system(tmp_path / "b", types=(0, 1, 1, 1, 0), nframes=(3,), seed=1)
    copy = lmdb_copy(tmp_path / "m.lmdb", b, a)
    assert lmdb_groups(copy) == {"nloc=3": [3, 4], "nloc=5": [0, 1, 2]}
    same_system(load_system(f"{copy}#nloc=5"), load_system(b))
    same_system(load_system(f"{copy}#nloc=3"), load_system(a))
    with raises_naming(copy, "2 groups of frames", "nloc=3, nloc=5"):
        load_system(copy)
    with raises_naming(copy, "#nloc=4: no such group", "nloc=3, nloc=5"):
        find_systems(f"{copy}#nloc=4")


def test_start_structure_and_descriptor_files_from_a_dataset(tmp_path):
    """A frame of a group as `numdp run`'s start structure (a mixed-type group: that frame's
    elements); `numdp eval-desc` names each group's file STEM_GROUP."""
    from numdp.io.structure import read_structure

    data = FIXTURE / "small.lmdb"
    s = read_structure(f"{data}#nloc=4:energy+force", frame=1)
    ref = np.load(FIXTURE / "deepmd_kit.npz")
    assert s.elements == [["O", "H"][t] for t in ref["type_4"].ravel()] == ["O", "O", "H", "O"]
    np.testing.assert_array_equal(s.positions, ref["coord_4"].reshape(-1, 3))
    with pytest.raises(InputError, match="holds 3 systems"):
        read_structure(data)
    model = str(WATER / "model.h5")
    assert main(["eval-desc", "-m", model, "-s", str(data), "-o", str(tmp_path / "d")]) == 0
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [
        "small_nloc=4_energy+force.npy", "small_nloc=4_energy+force_nopbc.npy", "small_nloc=6.npy"]
    assert np.load(tmp_path / "d" / "small_nloc=6.npy").shape[:2] == (3, 6)


def _frame(**kw):
    f = {"atom_types": np.array([0, 1]), "coords": np.zeros((2, 3)) + [[0, 0, 0], [1, 0, 0]],
         "cells": 3.0 * np.eye(3), "energies": 1.0}
    f.update(kw)
    return {k: v for k, v in f.items() if v is not None}


@pytest.mark.parametrize("frames,meta,fragments", [
    ([_frame()], {"nframes": 2}, ("frame 1 (record 000000000001) is missing",)),
    ([_frame(atom_types=np.array([0, -2]))], {}, ("frame 0, atom 1: type -2 is not a type index",)),
    ([_frame(atom_types=np.array([0, 2]))], {"type_map": ["O", "H"]}, ("frame 0, atom 1: type 2",)),
    ([_frame(coords=np.zeros(5))], {}, ("frame 0: coord: shape (5,) does not fit (2, 3)",)),
    ([_frame(forces=np.full((2, 3), np.nan))], {}, ("frame 0: force: contains non-finite",)),
    ([_frame(cells=np.diag([3.0, 3.0, 0.0]) + [[0, 0, 0], [0, 0, 0], [3.0, 0, 0]])], {},
     ("frame 0 has a degenerate cell",)),
    ([_frame(coords=None)], {}, ("frame 0 has no coord",)),
    ([_frame(), _frame(fparam=np.ones(2)), _frame(fparam=np.ones(3))], {},
     ("frame 2: fparam has shape (3,), frame 1 (2,)",)),
    ([_frame()], {"nframes": 0}, ("__metadata__ nframes is 0",)),
    ([_frame()], {"type_map": "O H"}, ("__metadata__ type_map is 'O H'",)),
])
def test_errors_name_the_dataset_and_frame(tmp_path, frames, meta, fragments):
    path = write_lmdb(tmp_path / "bad.lmdb", frames, meta)
    with raises_naming(path, *fragments):
        for p in find_systems(path):
            load_system(p)


def test_missing_dataset_metadata_and_packages(tmp_path, monkeypatch):
    with raises_naming(tmp_path / "none.lmdb", "does not exist"):
        find_systems(tmp_path / "none.lmdb")
    (tmp_path / "empty.lmdb").mkdir()
    with raises_naming(tmp_path / "empty.lmdb", "no data.mdb"):
        load_system(tmp_path / "empty.lmdb")
    import lmdb

    env = lmdb.open(str(tmp_path / "nometa.lmdb"))
    env.close()
    with raises_naming(tmp_path / "nometa.lmdb", "no __metadata__ record"):
        load_system(tmp_path / "nometa.lmdb")
    monkeypatch.setitem(sys.modules, "msgpack", None)
    with raises_naming(FIXTURE / "small.lmdb", "needs the lmdb and msgpack packages (msgpack is missing): "
                                               "pip install 'numdp[lmdb]'"):
        load_system(FIXTURE / "small.lmdb#nloc=6")


@pytest.mark.parametrize("name", ["lmdb", "lmdb.out"])
def test_deepmd_kit_lmdb_example_input_trains(tmp_path, monkeypatch, name):
    """DeePMD-kit's examples/lmdb_downsample_data/input_lmdb.json (as published, and as `dp train`
    normalises it; tests/data/deepmd_kit_inputs) with numb_steps 100 -> 2, on LMDB copies of
    inputs/water/data: the datasets are read as one system each, and the run trains and
    validates; auto_prob blocks over a dataset are refused in one line."""
    monkeypatch.chdir(tmp_path)
    data = sorted(find_systems(WATER / "data"))
    lmdb_copy(tmp_path / "water_training.lmdb", *data[:3])
    lmdb_copy(tmp_path / "water_validation.lmdb", data[3])
    inp = json.loads((ROOT / "tests" / "data" / "deepmd_kit_inputs" / f"{name}.json").read_text())
    inp["training"]["numb_steps"] = 2
    inp["training"]["disp_freq"] = 1
    (tmp_path / "input.json").write_text(json.dumps(inp))
    from numdp.train.config import load_config

    cfg = load_config("input.json")
    assert cfg.training.systems == [tmp_path / "water_training.lmdb#nloc=192"]
    assert cfg.validation.systems == [tmp_path / "water_validation.lmdb#nloc=192"]
    assert main(["train", "input.json", "--threads", "1"]) == 0
    rows = [line.split() for line in (tmp_path / "lcurve.out").read_text().splitlines() if not line.startswith("#")]
    assert [int(r[0]) for r in rows] == [1, 2] and all(np.isfinite(float(v)) for r in rows for v in r)
    inp["training"]["training_data"]["auto_prob"] = "prob_sys_size;0:1:1.0"
    (tmp_path / "input.json").write_text(json.dumps(inp))
    with pytest.raises(InputError, match=r"auto_prob: weights per system are not read with an LMDB dataset"):
        load_config("input.json")
