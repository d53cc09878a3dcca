"""Tests added by mutation round 19 (how a model is scored against labelled data and how that data
is read: numdp.model.metrics, numdp.io.detail_files, numdp.commands.test, numdp.io.npy_system,
numdp.io.h5_system, numdp.train.optim): each kills a plausible mistake that tests/test_metrics.py,
test_cli_test.py, test_sweep_cli_test.py, test_npy_system.py, test_h5_system.py, test_fparam.py,
test_aparam.py, test_mixed_systems.py, test_train_schedule.py and the earlier mutation rounds let
through (the mutant named in the test's docstring).  Their labelled frames all share one cell
volume, their sets sort the same way as strings and as numbers and no folder beside the sets
looks like one, so a stress divided by the wrong frame's volume, or sets read in another order
or from a set_old/, went unseen.  Systems built directly and a stub model (numbers chosen so
every expected figure is exact): the whole file runs in a second."""
from __future__ import annotations

import math
import pathlib
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from numdp.commands.test import evaluate_system
from numdp.io.detail_files import DetailFiles, Predictions
from numdp.io.npy_system import System, load_system
from numdp.model.metrics import ErrorSums

# Two periodic frames of one atom: a right-handed 10 Å cube (V = 1000 Å³) and a left-handed cell
# (rows x and y swapped: det = -11·12·9 = -1188, V = |det| = 1188 Å³).  DeePMD-kit 3.2
# (deepmd/utils/eval_metrics.py) takes V = |det(box)| of each frame for the stress -Ξ/V.
BOXES = np.array([np.diag([10.0, 10.0, 10.0]),
                  [[0.0, 12.0, 0.0], [11.0, 0.0, 0.0], [0.0, 0.0, 9.0]]])
VOLUMES = np.array([1000.0, 1188.0])


def _system(virial: np.ndarray) -> System:
    """The two frames of BOXES, one atom of type 0, zero energy and force labels, `virial`."""
    return System(path=pathlib.Path("two_cells"), types=np.zeros(1, dtype=np.int32), type_map=None,
                  coords=np.array([[[0.0, 0.0, 0.0]], [[1.0, 0.0, 0.0]]]), boxes=BOXES.copy(),
                  energy=np.zeros(2), forces=np.zeros((2, 1, 3)), virial=virial)


class _StubModel:
    """What evaluate_system asks of a model, predicting zero energy and forces and the virial
    PRED[f] for frame f (told by its atom's x coordinate, 0 or 1)."""

    type_map = ["X"]
    numb_fparam = numb_aparam = 0
    source_params = SimpleNamespace(fitting=SimpleNamespace(default_fparam=None))
    PRED = np.array([np.full((3, 3), 1.0), np.full((3, 3), 2.376)])

    def evaluate(self, positions, types, box, **_):
        f = int(positions[0, 0])
        return SimpleNamespace(energy=0.0, forces=np.zeros((1, 3)), virial=self.PRED[f].copy(),
                               atom_energies=np.zeros(1))


def test_detail_stress_divides_each_frame_by_its_own_cell_volume(tmp_path):
    """numdp.io.detail_files: the .s.out rows are -Ξ_f / |det(box_f)|, frame by frame.
    Mutants killed: the volume of the first frame for every frame (`boxes[:1]`: 1188 Å³ read as
    1000), and det(box) without abs (the left-handed frame's volume negative: the stress block
    silently left out).  Each entry is one division of the stored numbers by a det computed by LU
    of a permuted diagonal (exact, or within an ulp or two): rel 1e-14."""
    virial = np.arange(18.0).reshape(2, 3, 3) - 4.0
    pred = Predictions()
    for f in range(2):
        pred.add(0.0, np.zeros((1, 3)), virial[f] + 0.5)
    detail = DetailFiles(tmp_path / "res")
    detail.add_system("two_cells", _system(virial), pred)
    detail.write()
    s = np.loadtxt(tmp_path / "res.s.out")
    expected = -np.column_stack([virial.reshape(2, 9), virial.reshape(2, 9) + 0.5]) / VOLUMES[:, None]
    np.testing.assert_allclose(s, expected, rtol=1e-14, atol=0)


def test_summary_stress_divides_each_frame_by_its_own_cell_volume():
    """numdp.commands.test.evaluate_system: the pooled stress figure (dp test 3.2's `stress`)
    takes -ΔΞ_f / |det(box_f)| for each frame.  Zero virial labels, predictions 1 eV and 2.376 eV
    in every component: stresses 1e-3 and 2.376/1188 = 2e-3 eV/Å³, so RMSE = 1000·√((9·1e-6 +
    9·4e-6)/18) = 1000·√2.5e-6 meV/Å³, MAE = 1.5 meV/Å³; a handful of roundings: rel 1e-12.
    Mutants killed: the volume of frame 0 for every frame (2.376e-3 for the second), and det(box)
    without abs (the left-handed frame's stress left out of the figure: RMSE 1)."""
    acc, count = evaluate_system(_StubModel(), _system(np.zeros((2, 3, 3))))
    fig = acc.figures()
    assert count == 2
    assert fig["rmse_stress"] == pytest.approx(1000.0 * math.sqrt(2.5e-6), rel=1e-12)
    assert fig["mae_stress"] == pytest.approx(1.5, rel=1e-12)
    # the virial per atom of the same frames, for contrast: no volume in it (1 atom)
    assert fig["rmse_virial"] == pytest.approx(1000.0 * math.sqrt((1.0 + 2.376 ** 2) / 2), rel=1e-12)


def _write_set(root: pathlib.Path, name: str, x: float) -> None:
    d = root / name
    d.mkdir(parents=True)
    np.save(d / "coord.npy", np.array([[x, 0.0, 0.0]]))
    np.save(d / "box.npy", np.array([np.eye(3).ravel() * 20.0]))
    np.save(d / "energy.npy", np.array([x]))


def test_sets_are_read_in_string_order_as_deepmd_kit(tmp_path):
    """numdp.io.npy_system: DeePMD-kit's DeepmdData sorts the set.* paths as strings
    (`dirs.sort()`), so set.10 comes before set.9 (and set.000 before both); the frame order is
    what -n, the detail files and the batches follow.  Mutant killed: the sets in natural
    (numeric) order.  The coordinates are the sets' numbers, stored exactly."""
    (tmp_path / "type.raw").write_text("0\n")
    for name, x in (("set.9", 9.0), ("set.10", 10.0), ("set.000", 0.0)):
        _write_set(tmp_path, name, x)
    system = load_system(tmp_path)
    assert system.coords[:, 0, 0].tolist() == [0.0, 10.0, 9.0]
    assert system.energy.tolist() == [0.0, 10.0, 9.0]


def test_hdf5_sets_are_read_in_name_order_whatever_the_files_link_order(tmp_path):
    """numdp.io.h5_system.H5Group.set_names: a file written with track_order=True lists its groups
    in creation order (h5py iterates a group that way then); DeePMD-kit sorts the set paths by
    name.  Mutant killed: set_names taking the group's iteration order (set.001 then set.000
    here, a by-name file hid it).  Coordinates are the set numbers, exact."""
    path = tmp_path / "data.h5"
    with h5py.File(path, "w", track_order=True) as h5:
        sys_ = h5.create_group("sys", track_order=True)
        sys_.create_dataset("type.raw", data=np.zeros(1, dtype=np.int64))
        for name, x in (("set.001", 1.0), ("set.000", 0.0)):
            g = sys_.create_group(name, track_order=True)
            g.create_dataset("coord.npy", data=np.array([[x, 0.0, 0.0]]))
            g.create_dataset("box.npy", data=np.array([np.eye(3).ravel() * 20.0]))
        assert list(sys_) == ["type.raw", "set.001", "set.000"]   # the premise: creation order
    system = load_system(f"{path}#/sys")
    assert system.coords[:, 0, 0].tolist() == [0.0, 1.0]


def test_select_reorders_every_per_frame_array():
    """numdp.io.npy_system.System.select (numdp test --shuffle-test, change-bias -n draws): every
    array with a frame axis follows the drawn order, the cells and the frame and atomic
    parameters included.  Mutants killed: PER_FRAME without "boxes" (every frame then keeps the
    cell of its old position: a shuffled test evaluates frame 2's atoms in frame 0's cell), and
    without "fparam"/"aparam" (a model with frame or atomic parameters given another frame's).
    Each frame f of three holds the number f everywhere, so the selection is read off exactly."""
    n, nf = 2, 3
    per = np.arange(nf, dtype=np.float64)

    def frames(*shape):
        return np.broadcast_to(per.reshape((nf,) + (1,) * len(shape)), (nf,) + shape).copy()

    system = System(path=pathlib.Path("s"), types=np.zeros(n, dtype=np.int32), type_map=["X", "Y"],
                    coords=frames(n, 3), boxes=frames(3, 3) + np.eye(3) * 10.0, energy=frames(),
                    forces=frames(n, 3), virial=frames(3, 3), atom_ener=frames(n), atom_pref=frames(n),
                    atom_ener_coeff=frames(n), frame_types=np.array([[0, 0], [0, 1], [1, 1]], dtype=np.int32),
                    fparam=frames(2), aparam=frames(n, 1))
    order = [2, 0, 1]
    picked = system.select(order)
    for name in ("coords", "boxes", "energy", "forces", "virial", "atom_ener", "atom_pref",
                 "atom_ener_coeff", "frame_types", "fparam", "aparam"):
        got = getattr(picked, name)
        want = getattr(system, name)[order]
        np.testing.assert_array_equal(got, want, err_msg=name)
    assert picked.nframes == nf and picked.types is system.types


def test_detail_rows_are_the_first_frames_tested(tmp_path):
    """numdp.io.detail_files.DetailFiles.add_system with `numdp test -n 1` on a system of two
    frames: every file's data columns are those of the tested (first) frame, beside its
    prediction.  Mutants killed: the data of the last nf frames (`virial[len - nf:]`, and the
    same for the energy and forces): test_detail_files tested every frame, where both are the
    same rows.  Stored numbers written with %.18e and read back: exact."""
    virial = np.arange(18.0).reshape(2, 3, 3) + 1.0
    system = _system(virial)
    system.energy = np.array([3.0, 7.0])
    system.forces = np.array([[[1.0, 2.0, 3.0]], [[4.0, 5.0, 6.0]]])
    pred = Predictions()
    pred.add(-1.0, np.full((1, 3), -2.0), np.full((3, 3), -3.0))
    detail = DetailFiles(tmp_path / "res")
    detail.add_system("two_cells", system, pred)
    detail.write()
    assert np.loadtxt(tmp_path / "res.e.out").tolist() == [3.0, -1.0]
    assert np.loadtxt(tmp_path / "res.f.out").tolist() == [1.0, 2.0, 3.0, -2.0, -2.0, -2.0]
    assert np.loadtxt(tmp_path / "res.v.out").tolist() == list(range(1, 10)) + [-3.0] * 9
    np.testing.assert_allclose(np.loadtxt(tmp_path / "res.s.out"),
                               -np.r_[np.arange(1.0, 10.0), [-3.0] * 9] / 1000.0, rtol=1e-15, atol=0)


def test_an_mae_without_labels_is_nan_like_the_rmse():
    """numdp.model.metrics.mean: an MAE of no frame is nan, as its RMSE (tests/test_metrics.py
    checks the RMSEs only), so a batch without energy or virial labels shows nan there (lcurve,
    numdp.train.loss.LossStats) rather than a perfect 0.  Mutant killed: `mean` giving 0.0 for
    n = 0.  Forces of 1 eV/Å: MAE 1 exactly."""
    acc = ErrorSums()
    acc.add_forces(np.ones((2, 3)))
    assert acc.mae_f == 1.0
    assert math.isnan(acc.mae_e) and math.isnan(acc.mae_v)


def test_only_prefix_dot_folders_are_sets(tmp_path):
    """numdp.io.npy_system.NpyFolder.set_names and h5_system.H5Group.set_names: the sets are the
    SET_PREFIX.* members (DeePMD-kit globs `set_prefix + ".*"`); a set_old/ or settings folder
    beside them is not one.  Mutants killed: the glob `set*` (npy) and `startswith("set")` (HDF5)
    without the dot, which read set_old's frames too."""
    npy = tmp_path / "npy"
    (npy).mkdir()
    (npy / "type.raw").write_text("0\n")
    _write_set(npy, "set.000", 0.0)
    _write_set(npy, "set_old", 5.0)
    assert load_system(npy).coords[:, 0, 0].tolist() == [0.0]
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("type.raw", data=np.zeros(1, dtype=np.int64))
        for name, x in (("set.000", 0.0), ("set_old", 5.0)):
            g = h5.create_group(name)
            g.create_dataset("coord.npy", data=np.array([[x, 0.0, 0.0]]))
            g.create_dataset("box.npy", data=np.array([np.eye(3).ravel() * 20.0]))
    assert load_system(path).coords[:, 0, 0].tolist() == [0.0]
