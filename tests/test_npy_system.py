"""Tests for numdp.io.npy_system (DeePMD-kit npy system reader)."""

import contextlib
import pathlib

import numpy as np
import pytest

from numdp.errors import InputError
from numdp.io.npy_system import System, find_systems, load_system

DATA = pathlib.Path("/work/shared/data")
ALLOY5_MAP = ["Ni", "Cu", "Pd", "Ag", "Au"]

needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="shared data sets not available")


# ---------------------------------------------------------------- helpers


def make_system(
    root: pathlib.Path,
    types=(0, 1, 1),
    type_map=("O", "H"),
    nframes=(2,),
    labels=("energy", "force", "virial"),
    nopbc=False,
    dtype=np.float64,
    seed=0,
) -> pathlib.Path:
    """Write a small synthetic system with one set per entry of `nframes`."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "type.raw").write_text("\n".join(str(t) for t in types) + "\n")
    if type_map is not None:
        (root / "type_map.raw").write_text("\n".join(type_map) + "\n")
    if nopbc:
        (root / "nopbc").write_text("")
    natoms = len(types)
    for i, n in enumerate(nframes):
        d = root / f"set.{i:03d}"
        d.mkdir()
        arrays = {
            "coord": rng.uniform(0, 5, (n, natoms * 3)),
            "box": np.tile((5.0 * np.eye(3)).ravel(), (n, 1)),
            "energy": rng.normal(size=n),
            "force": rng.normal(size=(n, natoms * 3)),
            "virial": rng.normal(size=(n, 9)),
        }
        for name, arr in arrays.items():
            if name in ("coord", "box") or name in labels:
                if not (nopbc and name == "box"):
                    np.save(d / f"{name}.npy", arr.astype(dtype))
    return root


@contextlib.contextmanager
def raises_naming(file: pathlib.Path, *fragments: str):
    """Expect an InputError whose one-line message names `file` (full path) and `fragments`."""
    with pytest.raises(InputError) as info:
        yield
    msg = str(info.value)
    assert str(file) in msg, msg
    assert "\n" not in msg, msg
    for fragment in fragments:
        assert fragment in msg, msg


# ---------------------------------------------------------------- real data


@needs_data
@pytest.mark.parametrize("name", ["data_0", "data_1", "data_2", "data_3"])
def test_water_shapes_and_dtypes(name):
    s = load_system(DATA / "water" / name)
    nframes = 160 if name == "data_1" else 80
    assert s.natoms == 192
    assert s.nframes == nframes
    assert s.type_map == ["O", "H"]
    assert s.types.dtype == np.int32 and s.types.shape == (192,)
    assert s.coords.shape == (nframes, 192, 3)
    assert s.boxes.shape == (nframes, 3, 3)
    assert s.energy.shape == (nframes,)
    assert s.forces.shape == (nframes, 192, 3)
    assert s.virial is None
    assert not s.nopbc
    for arr in (s.coords, s.boxes, s.energy, s.forces):
        assert arr.dtype == np.float64


@needs_data
def test_water_two_sets_concatenate_in_order():
    path = DATA / "water" / "data_1"
    s = load_system(path)
    parts = [np.load(path / d / "coord.npy") for d in ("set.000", "set.001")]
    expected = np.concatenate(parts).astype(np.float64).reshape(-1, 192, 3)
    np.testing.assert_array_equal(s.coords, expected)
    energies = [np.load(path / d / "energy.npy") for d in ("set.000", "set.001")]
    np.testing.assert_array_equal(s.energy, np.concatenate(energies).astype(np.float64))


@needs_data
@pytest.mark.parametrize("dataset", ["cu", "alloy5"])
def test_emt_train_systems(dataset):
    paths = find_systems(DATA / dataset / "train")
    assert len(paths) == (7 if dataset == "cu" else 6)
    assert paths == sorted(paths)
    for path in paths:
        s = load_system(path)
        n, natoms = s.nframes, s.natoms
        assert natoms == (107 if path.name == "vacancy_107" else 108)
        assert s.coords.shape == (n, natoms, 3) and s.coords.dtype == np.float64
        assert s.boxes.shape == (n, 3, 3)
        assert s.energy.shape == (n,)
        assert s.forces.shape == (n, natoms, 3)
        assert s.virial.shape == (n, 3, 3)
        raw = np.load(path / "set.000" / "box.npy")
        np.testing.assert_array_equal(s.boxes[0], raw[0].reshape(3, 3))


@needs_data
def test_cu_remaps_into_alloy5_type_map():
    s = load_system(DATA / "cu" / "train" / "fcc_300K")
    assert s.type_map == ["Cu"]
    mapped = s.model_types(ALLOY5_MAP)
    assert mapped.dtype == np.int32
    assert mapped.shape == (108,)
    assert np.all(mapped == 1)


@needs_data
def test_alloy5_model_types_identity():
    s = load_system(DATA / "alloy5" / "train" / "fcc_300K")
    np.testing.assert_array_equal(s.model_types(ALLOY5_MAP), s.types)
    assert np.bincount(s.types).tolist() == [22, 22, 22, 21, 21]


@needs_data
def test_find_systems_on_a_system_returns_itself():
    path = DATA / "water" / "data_0"
    assert find_systems(path) == [path]
    assert len(find_systems(DATA / "water")) == 4


# ---------------------------------------------------------------- synthetic systems


def test_float32_comes_back_float64(tmp_path):
    path = make_system(tmp_path / "s", dtype=np.float32)
    s = load_system(path)
    for arr in (s.coords, s.boxes, s.energy, s.forces, s.virial):
        assert arr.dtype == np.float64
    raw = np.load(path / "set.000" / "force.npy")
    np.testing.assert_array_equal(s.forces.reshape(2, 9), raw.astype(np.float64))


def test_layout_of_atoms_and_cells(tmp_path):
    path = make_system(tmp_path / "s", types=(0, 1), nframes=(1,))
    np.save(path / "set.000" / "coord.npy", np.arange(6.0)[None])
    np.save(path / "set.000" / "virial.npy", np.arange(9.0)[None])
    s = load_system(path)
    np.testing.assert_array_equal(s.coords[0], [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(s.virial[0], [[0, 1, 2], [3, 4, 5], [6, 7, 8]])


def test_energy_column_vector_accepted(tmp_path):
    path = make_system(tmp_path / "s", nframes=(3,))
    np.save(path / "set.000" / "energy.npy", np.arange(3.0)[:, None])
    s = load_system(path)
    np.testing.assert_array_equal(s.energy, [0.0, 1.0, 2.0])


def test_nopbc_system(tmp_path):
    path = make_system(tmp_path / "s", nopbc=True)
    s = load_system(path)
    assert s.nopbc and s.boxes is None
    assert s.coords.shape == (2, 3, 3)


def test_nopbc_ignores_present_box(tmp_path):
    path = make_system(tmp_path / "s", nopbc=True)
    np.save(path / "set.000" / "box.npy", np.zeros((7, 2)))
    assert load_system(path).boxes is None


def test_labels_absent(tmp_path):
    s = load_system(make_system(tmp_path / "s", labels=()))
    assert s.energy is None and s.forces is None and s.virial is None
    assert s.nframes == 2


def test_several_sets_and_type_raw_on_one_line(tmp_path):
    path = make_system(tmp_path / "s", nframes=(2, 3, 1))
    (path / "type.raw").write_text("0 1 1")
    s = load_system(path)
    assert s.nframes == 6
    assert s.types.tolist() == [0, 1, 1]
    first = np.load(path / "set.002" / "coord.npy")
    np.testing.assert_array_equal(s.coords[-1].ravel(), first[0])


def test_no_type_map(tmp_path):
    s = load_system(make_system(tmp_path / "s", types=(0, 2, 1), type_map=None))
    assert s.type_map is None
    assert s.model_types(["A", "B", "C"]).tolist() == [0, 2, 1]
    with raises_naming(s.path / "type.raw", "type index 2", "['A', 'B']"):
        s.model_types(["A", "B"])


def test_model_types_remaps_by_name(tmp_path):
    s = load_system(make_system(tmp_path / "s", types=(0, 1, 1, 0), type_map=("O", "H")))
    assert s.model_types(["H", "C", "O"]).tolist() == [2, 0, 0, 2]


def test_model_types_ignores_unused_elements(tmp_path):
    s = load_system(make_system(tmp_path / "s", types=(1, 1), type_map=("X", "H")))
    assert s.model_types(["H"]).tolist() == [0, 0]


def test_model_types_unknown_element(tmp_path):
    s = load_system(make_system(tmp_path / "s", type_map=("O", "H")))
    with raises_naming(s.path / "type_map.raw", "'H'", "['O', 'C']"):
        s.model_types(["O", "C"])


def test_find_systems_recursive_sorted(tmp_path):
    for name in ("b/sys2", "a/sys1", "a/deeper/sys0"):
        make_system(tmp_path / name)
    (tmp_path / "empty").mkdir()
    assert find_systems(tmp_path) == [
        tmp_path / "a" / "deeper" / "sys0",
        tmp_path / "a" / "sys1",
        tmp_path / "b" / "sys2",
    ]
    assert find_systems(str(tmp_path / "a" / "sys1")) == [tmp_path / "a" / "sys1"]


def test_system_is_a_dataclass(tmp_path):
    s = load_system(str(make_system(tmp_path / "s")))
    assert isinstance(s, System)
    assert isinstance(s.path, pathlib.Path)
    assert s.natoms == 3 and s.nframes == 2


# ---------------------------------------------------------------- errors


def test_find_systems_none_found(tmp_path):
    (tmp_path / "x").mkdir()
    with raises_naming(tmp_path, "no system"):
        find_systems(tmp_path)
    with raises_naming(tmp_path / "missing", "does not exist"):
        find_systems(tmp_path / "missing")


def test_missing_directory(tmp_path):
    with raises_naming(tmp_path / "nope", "does not exist"):
        load_system(tmp_path / "nope")


def test_missing_type_raw(tmp_path):
    path = make_system(tmp_path / "s")
    (path / "type.raw").unlink()
    with raises_naming(path / "type.raw", "missing"):
        load_system(path)


def test_no_sets(tmp_path):
    path = tmp_path / "s"
    path.mkdir()
    (path / "type.raw").write_text("0\n")
    with raises_naming(path, "set."):
        load_system(path)


@pytest.mark.parametrize("name", ["coord", "box"])
def test_missing_required_array(tmp_path, name):
    path = make_system(tmp_path / "s")
    file = path / "set.000" / f"{name}.npy"
    file.unlink()
    with raises_naming(file, "missing"):
        load_system(path)


def test_unreadable_npy(tmp_path):
    path = make_system(tmp_path / "s")
    file = path / "set.000" / "force.npy"
    file.write_bytes(b"this is not an npy file")
    with raises_naming(file, "not a readable .npy"):
        load_system(path)


def test_truncated_npy(tmp_path):
    path = make_system(tmp_path / "s")
    file = path / "set.000" / "coord.npy"
    file.write_bytes(file.read_bytes()[:-8])
    with raises_naming(file, "not a readable .npy"):
        load_system(path)


def test_non_numeric_npy(tmp_path):
    path = make_system(tmp_path / "s")
    file = path / "set.000" / "energy.npy"
    np.save(file, np.array(["a", "b"]))
    with raises_naming(file, "real-valued"):
        load_system(path)


def test_coord_not_divisible_into_atoms(tmp_path):
    path = make_system(tmp_path / "s")
    file = path / "set.000" / "coord.npy"
    np.save(file, np.zeros((2, 8)))
    with raises_naming(file, "(2, 8)", "9", "3 atoms"):
        load_system(path)


def test_coord_without_frames(tmp_path):
    path = make_system(tmp_path / "s")
    file = path / "set.000" / "coord.npy"
    np.save(file, np.zeros((0, 9)))
    with raises_naming(file, "no frames"):
        load_system(path)


@pytest.mark.parametrize(
    "name, bad_shape, expected",
    [
        ("force", (2, 8), "(2, 9)"),
        ("force", (3, 9), "(2, 9)"),
        ("box", (1, 9), "(2, 9)"),
        ("virial", (2, 6), "(2, 9)"),
        ("energy", (3,), "(2,)"),
        ("energy", (2, 2), "(2,)"),
    ],
)
def test_wrong_label_shape(tmp_path, name, bad_shape, expected):
    path = make_system(tmp_path / "s")
    file = path / "set.000" / f"{name}.npy"
    np.save(file, np.ones(bad_shape))
    with raises_naming(file, str(bad_shape), f"expected {expected}"):
        load_system(path)


def test_label_in_some_sets_only(tmp_path):
    path = make_system(tmp_path / "s", nframes=(2, 2))
    file = path / "set.001" / "virial.npy"
    file.unlink()
    with raises_naming(file, "missing", "set.000"):
        load_system(path)


def test_negative_type_index(tmp_path):
    path = make_system(tmp_path / "s")
    (path / "type.raw").write_text("0\n-1\n1\n")
    with raises_naming(path / "type.raw", "atom 1", "-1"):
        load_system(path)


def test_type_index_beyond_type_map(tmp_path):
    path = make_system(tmp_path / "s", types=(0, 2, 1))
    with raises_naming(path / "type.raw", "atom 1", "type index 2", "type_map.raw"):
        load_system(path)


def test_non_integer_type(tmp_path):
    path = make_system(tmp_path / "s")
    (path / "type.raw").write_text("0\nH\n1\n")
    with raises_naming(path / "type.raw", "'H'"):
        load_system(path)


def test_empty_type_raw(tmp_path):
    path = make_system(tmp_path / "s")
    (path / "type.raw").write_text("\n")
    with raises_naming(path / "type.raw", "no atoms"):
        load_system(path)


@pytest.mark.parametrize("name", ["coord", "box", "force"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_numbers(tmp_path, name, bad):
    path = make_system(tmp_path / "s")
    file = path / "set.000" / f"{name}.npy"
    arr = np.load(file)
    arr[1, 4] = bad
    np.save(file, arr)
    with raises_naming(file, "non-finite"):
        load_system(path)


def test_degenerate_box(tmp_path):
    path = make_system(tmp_path / "s")
    file = path / "set.000" / "box.npy"
    arr = np.load(file)
    arr[1] = [5, 0, 0, 0, 5, 0, 5, 5, 0]
    np.save(file, arr)
    with raises_naming(file, "frame 1", "degenerate"):
        load_system(path)


def test_unfit_parameters_are_an_error_only_where_a_model_takes_them(tmp_path):
    """DeePMD-kit reads fparam.npy / aparam.npy only for a model with numb_fparam / numb_aparam
    > 0 (its examples/fparam data holds an aparam.npy of shape (1, natoms * 100) beside 100
    frames, unused by input.json): such a file stops nothing until a model takes the parameters,
    and then its message names the file and the shapes."""
    root = make_system(tmp_path / "s", nframes=(2, 3))
    for d in ("set.000", "set.001"):
        np.save(root / d / "aparam.npy", np.zeros((1, 3 * 7)))   # one row for all frames
        np.save(root / d / "fparam.npy", np.ones((2 if d == "set.000" else 3, 2)))
    s = load_system(root)
    assert s.aparam is None and list(s.unfit) == ["aparam"]
    assert s.aparam_rows(0, "the model") is None
    assert s.fparam_rows(2, None, "the model").shape == (5, 2)
    with raises_naming(root / "set.000" / "aparam.npy", "(1, 21)"):
        s.aparam_rows(7, "the model")
    assert s.select([0, 4]).unfit == s.unfit


def test_an_unfit_parameter_file_in_one_set_stops_only_a_model_that_takes_them(tmp_path):
    """The same holds when another set's file fits: the unfit set's placeholder was compared with
    the fitting set's width ('aparam.npy has [0, 2] parameters per atom in different sets'), so the
    system was refused for every model."""
    root = make_system(tmp_path / "s", nframes=(2, 3))
    np.save(root / "set.000" / "aparam.npy", np.zeros((2, 3 * 2)))   # fits: 2 per atom
    np.save(root / "set.001" / "aparam.npy", np.zeros((1, 3 * 7)))   # does not fit 3 frames
    s = load_system(root)
    assert s.aparam is None and list(s.unfit) == ["aparam"]
    assert s.aparam_rows(0, "the model") is None
    with raises_naming(root / "set.001" / "aparam.npy", "(1, 21)"):
        s.aparam_rows(2, "the model")
