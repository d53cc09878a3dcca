"""``PATH#LOCATION`` texts (numdp.io.location): one split for every reader of data systems.

Each case below once had two answers among numdp's readers (HDF5 and LMDB readers, model-devi,
eval-desc, the start structure): a "#" in a folder's or a file's own name, an empty location.
"""
import pathlib
import shutil

import h5py
import numpy as np
import pytest

from numdp.errors import InputError

from numdp.commands.eval_desc import system_name
from numdp.commands.model_devi import frames_of
from numdp.io.npy_system import find_systems, load_system
from numdp.io.structure import read_structure
from test_h5_system import same_system, write_h5_system
from test_npy_system import make_system, raises_naming

FIXTURE = pathlib.Path(__file__).resolve().parent / "data" / "lmdb" / "small.lmdb"
GROUPS = ("nloc=4:energy+force", "nloc=4:energy+force:nopbc", "nloc=6")  # its groups of frames (test_lmdb_system)


@pytest.fixture
def tree(tmp_path):
    """tmp_path with an npy system `npy` (3 atoms, 2 frames), HDF5 copies of it as groups /a/s0
    and /a/s1 of d.h5, runs#2/d.h5 and run#2.h5 (a "#" in a folder's and in a file's name), and
    the npy system again as the folder sys#1."""
    npy = make_system(tmp_path / "npy")
    for name in ("d.h5", "runs#2/d.h5", "run#2.h5"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        with h5py.File(tmp_path / name, "w") as h5:
            write_h5_system(h5, "/a/s0", npy)
            write_h5_system(h5, "/a/s1", npy)
    shutil.copytree(npy, tmp_path / "sys#1")
    (tmp_path / "runs").mkdir()  # a folder named as the part before the first "#" of runs#2/...
    return tmp_path


def test_parse_rule(tree):
    from numdp.io.location import DataLocation

    def parse(text):
        loc = DataLocation.parse(f"{tree}/{text}")
        return loc.path.relative_to(tree).as_posix(), loc.location

    assert parse("d.h5#/a/s0") == ("d.h5", "/a/s0")
    assert parse("d.h5") == ("d.h5", None)
    assert parse("d.h5#") == ("d.h5", "")
    assert parse("d.h5#/a#b") == ("d.h5", "/a#b")          # a group name may hold a "#"
    assert parse("runs#2/d.h5#/a/s0") == ("runs#2/d.h5", "/a/s0")
    assert parse("run#2.h5") == ("run#2.h5", None)          # an existing file is that file
    assert parse("sys#1") == ("sys#1", None)                # an existing folder too
    assert parse("gone.h5#/a#b") == ("gone.h5", "/a#b")     # nothing exists: the first "#"
    assert str(DataLocation(pathlib.Path("x.h5"), "/g")) == "x.h5#/g"
    assert str(DataLocation.parse("x.lmdb#nloc=6")) == "x.lmdb#nloc=6"


def test_hdf5_file_whose_name_holds_a_hash(tree):
    """run#2.h5 is that file, read whole or by group (was: "run: HDF5 data file not found")."""
    f = tree / "run#2.h5"
    assert find_systems(f) == [pathlib.Path(f"{f}#/a/s0"), pathlib.Path(f"{f}#/a/s1")]
    same_system(load_system(f"{f}#/a/s1"), load_system(tree / "npy"))
    titles = [title for title, _ in frames_of(f, ["O", "H"])]  # numdp model-devi
    assert titles == [f"{f}#/a/s0", f"{f}#/a/s1"]


def test_hdf5_file_in_a_folder_whose_name_holds_a_hash(tree):
    """runs#2/d.h5#/a/s0 is group /a/s0 of runs#2/d.h5 (was: "runs: HDF5 data file not found")."""
    f = tree / "runs#2" / "d.h5"
    same_system(load_system(f"{f}#/a/s0"), load_system(tree / "npy"))
    assert find_systems(f) == [pathlib.Path(f"{f}#/a/s0"), pathlib.Path(f"{f}#/a/s1")]
    assert [t for t, _ in frames_of(pathlib.Path(f"{f}#/a/s0"), ["O", "H"])] == [f"{f}#/a/s0"]
    s = read_structure(f"{f}#/a/s0", frame=1)
    np.testing.assert_array_equal(s.positions, load_system(tree / "npy").coords[1])


def test_eval_desc_names_a_folder_whose_name_holds_a_hash_by_its_name(tree):
    """dp eval-desc saves sys#1 as sys#1.npy (the folder's base name); numdp said 1.npy."""
    assert system_name(tree / "sys#1") == "sys#1"
    assert system_name(pathlib.Path(f"{tree}/runs#2/d.h5#/a/s0")) == "s0"
    assert system_name(pathlib.Path(f"{tree}/runs#2/d.h5#/")) == "d"


def test_missing_structure_file_whose_name_holds_a_hash_is_named_whole(tree):
    with raises_naming(tree / "run#3.xyz", "structure file not found"):
        read_structure(tree / "run#3.xyz")


def test_location_on_a_plain_folder_says_so(tree):
    with raises_naming(tree / "npy", "a folder"):
        load_system(f"{tree / 'npy'}#/a")


def test_lmdb_dataset_in_a_folder_whose_name_holds_a_hash(tmp_path):
    """A dataset below a folder named set#1 is found and read by group (was: not an LMDB dataset,
    then "set: HDF5 data file not found")."""
    data = tmp_path / "set#1" / "small.lmdb"
    shutil.copytree(FIXTURE, data)
    assert [str(g) for g in find_systems(data)] == [f"{data}#{name}" for name in GROUPS]
    assert load_system(f"{data}#nloc=6").nframes == 3
    assert [t for t, _ in frames_of(pathlib.Path(f"{data}#nloc=6"), ["O", "H"])] == [f"{data}#nloc=6"]


def test_lmdb_dataset_with_an_empty_location_is_the_whole_dataset(tmp_path):
    """data.lmdb# names the whole dataset, as data.h5# the whole file (was: "no such group ''")."""
    data = shutil.copytree(FIXTURE, tmp_path / "small.lmdb")
    assert [str(g) for g in find_systems(f"{data}#")] == [f"{data}#{name}" for name in GROUPS]
    with raises_naming(data, "holds 3 groups"):
        load_system(f"{data}#")


def test_input_json_hint_for_a_location_in_a_folder_whose_name_holds_a_hash(tree, monkeypatch):
    """input.json naming runs#2/d.h5#/a/s0, beside it, run from elsewhere: the hint says to run
    from the input's folder (the file part was taken as "runs", so no hint)."""
    import json

    from numdp.train.config import load_config

    (tree / "runs").rmdir()  # "runs", the text before the first "#", exists nowhere
    inp = tree / "input.json"
    inp.write_text(json.dumps({"model": {"type_map": ["O", "H"], "descriptor": {"type": "se_e2_a", "sel": [4, 4],
                                          "rcut": 4.0, "rcut_smth": 1.0}, "fitting_net": {}},
                               "training": {"training_data": {"systems": ["runs#2/d.h5#/a/s0"]}, "numb_steps": 1}}))
    away = tree / "away"
    away.mkdir()
    monkeypatch.chdir(away)
    with pytest.raises(InputError, match=r"run numdp train from"):
        load_config(inp)
