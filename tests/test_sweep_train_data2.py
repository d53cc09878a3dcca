"""numdp train on awkward training data as DeePMD-kit users have it, against `dp --pt train` 3.2
on the same input.json and data (the second data sweep; the first is test_sweep_train_data.py).

The systems under tests/data/train_data2/ are slices of the shared water, copper and alloy5 data
(tools/make_train_data2_fixtures.py says how they were cut).  No DeePMD-kit at test time: what
dp 3.2 did with each is stated where it is used."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from numdp.errors import InputError
from numdp.io.npy_system import load_system

DATA = Path(__file__).parent / "data" / "train_data2"


def _copy(name: str, tmp_path: Path) -> Path:
    """A writable copy of fixture system `name`."""
    return Path(shutil.copytree(DATA / name, tmp_path / name))


def test_type_raw_in_numpys_default_float_format(tmp_path):
    """`np.savetxt("type.raw", types)` without fmt writes 0.000000000000000000e+00 per atom: dp
    --pt train 3.2 reads type.raw with np.loadtxt and casts to int32, and trained on such a water
    system (row 1 rmse_e 3.21e-03) where numdp stopped: "atom 0: '0.000000000000000000e+00' is
    not an integer type index".  A whole number in any float spelling is that index; a fraction
    (which dp truncates silently) stops with one line naming the atom."""
    root = _copy("w_crlf", tmp_path)
    ref = load_system(root).types
    np.savetxt(root / "type.raw", ref)
    assert np.array_equal(load_system(root).types, ref)
    (root / "type.raw").write_text(" ".join(f"{t:.1f}" for t in ref) + "\n")
    assert np.array_equal(load_system(root).types, ref)
    (root / "type.raw").write_text(" ".join(["0"] * 5 + ["1.5"] + ["1"] * (len(ref) - 6)))
    with pytest.raises(InputError, match=r"type.raw: atom 5: '1.5' is not a whole number"):
        load_system(root)


@pytest.mark.parametrize("dtype", [np.int64, np.int32])
def test_binary_type_raw_is_one_short_line(tmp_path, dtype):
    """type.raw written as binary (`types.astype(int64).tofile("type.raw")`): dp --pt train 3.2
    stops with np.loadtxt's traceback; numdp stopped with one line of 6204 characters (int64;
    3132 for int32) quoting every NUL byte as 'atom 0'.  The line now says what the file is."""
    root = _copy("w_crlf", tmp_path)
    types = load_system(root).types
    types.astype(dtype).tofile(root / "type.raw")
    with pytest.raises(InputError) as err:
        load_system(root)
    line = str(err.value)
    assert "\n" not in line and len(line) < 250, line
    assert line.startswith(f"{root / 'type.raw'}: binary data (NUL bytes), not text"), line


def test_a_long_word_is_quoted_short(tmp_path):
    """A type.raw of one long non-numeric word (a pasted line without spaces) is quoted cut."""
    root = _copy("w_crlf", tmp_path)
    (root / "type.raw").write_text("O," * 200 + "\n")
    with pytest.raises(InputError) as err:
        load_system(root)
    assert len(str(err.value)) < 250 and "atom 0: 'O,O,O," in str(err.value), str(err.value)


def dp_input(tmp_path: Path, systems: list[str], type_map: list[str], sel, steps: int,
             valid: list[str] | None = None) -> Path:
    """input.json of the dp --pt train runs compared below (tiny se_e2_a, float64, batch 1,
    energy, force and virial in the loss), with `systems` of the fixtures; written to tmp_path."""
    import json

    loss = {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000, "limit_pref_f": 1,
            "start_pref_v": 0.02, "limit_pref_v": 1}
    tree = {"model": {"type_map": type_map,
                      "descriptor": {"type": "se_e2_a", "sel": sel, "rcut": 4.0, "rcut_smth": 1.0, "neuron": [4, 8],
                                     "axis_neuron": 2, "type_one_side": False, "resnet_dt": False,
                                     "precision": "float64", "seed": 1},
                      "fitting_net": {"neuron": [8, 8], "resnet_dt": True, "precision": "float64", "seed": 1}},
            "learning_rate": {"type": "exp", "decay_steps": 100, "start_lr": 1e-3, "stop_lr": 1e-5},
            "loss": loss,
            "training": {"training_data": {"systems": [str(DATA / s) for s in systems], "batch_size": 1},
                         "numb_steps": steps, "seed": 10, "disp_file": "lcurve.out", "disp_freq": 1,
                         "save_freq": steps}}
    if valid:
        tree["training"]["validation_data"] = {"systems": [str(DATA / s) for s in valid], "batch_size": 1,
                                               "numb_btch": 1}
    path = tmp_path / "input.json"
    path.write_text(json.dumps(tree))
    return path


def _train(path: Path, monkeypatch, init_model: Path | None = None):
    """Run numdp train on `path` in its folder; (the trainer, lcurve.out's rows)."""
    import io

    from numdp.train.config import load_config
    from numdp.train.loop import Trainer

    monkeypatch.chdir(path.parent)
    trainer = Trainer(load_config(path), nthreads=1, stream=io.StringIO(), init_model=init_model)
    try:
        trainer.run()
    finally:
        trainer.close()
    return trainer, np.atleast_2d(np.loadtxt(path.parent / "lcurve.out"))


def test_a_type_no_training_atom_has(tmp_path, monkeypatch):
    """alloy5 frames without Au, type_map Ni Cu Pd Ag Au, sel "auto": dp --pt train 3.2 gives Au
    sel 0 (its neighbour count is 0), davg 0 and dstd 0.1 (its default for a type without
    environments, whatever data_stat_protect), out_bias 0 (the minimum-norm least squares), and
    for the other types the checkpoint's figures below; numdp agrees (davg/dstd to 6e-15), trains,
    and its model evaluates a frame with Au atoms (dp --pt test of it, converted, gave the same
    energy to 2e-15).  Tolerances: dp's figures as printed to 10 digits."""
    path = dp_input(tmp_path, ["alloy_noau_a", "alloy_noau_b"], ["Ni", "Cu", "Pd", "Ag", "Au"], "auto", 2,
                    valid=["alloy_full"])
    trainer, rows = _train(path, monkeypatch)
    p = trainer.params
    # the validation frame's Au atoms overflow Au's sel 0: the warning says why, not "sel too small"
    assert "sel 0 for Au (never within rcut in the training data)" in trainer.stream.getvalue()
    assert p.descriptor.sel == [8, 12, 8, 12, 0]
    assert np.all(p.descriptor.davg[4] == 0.0) and np.all(p.descriptor.dstd[4] == 0.1)
    dp_bias = [0.1329444579, 0.1329444579, 0.1329444579, 0.126901528, 0.0]
    assert np.asarray(p.out_bias).ravel() == pytest.approx(dp_bias, rel=1e-9, abs=1e-10)
    dp_davg = [0.03526148643400393, 0.03689001173937286, 0.034599359703919016, 0.03298776469804636]
    dp_dstd = [(0.06539318832803703, 0.04289283085189695), (0.06631064712958905, 0.04381009641639999),
               (0.06258253772880068, 0.04128635430492676), (0.060150270290131556, 0.039606513621993876)]
    for t in range(4):
        assert p.descriptor.davg[t, 0, 0] == pytest.approx(dp_davg[t], rel=1e-12)
        assert tuple(p.descriptor.dstd[t, 0, :2]) == pytest.approx(dp_dstd[t], rel=1e-12)
    assert np.isfinite(rows).all() and rows.shape[0] == 2
    from numdp.model.dp_model import DPModel

    frame = load_system(DATA / "alloy_full")
    types = frame.model_types(p.type_map)
    assert (types == 4).sum() == 21
    with pytest.warns(Warning, match="sel = 0"):
        r = DPModel(p, nthreads=1).evaluate(frame.coords[0], types, frame.boxes[0])
    assert np.isfinite(r.energy) and np.isfinite(r.forces).all()


# dp --pt train 3.2's row 1 of lcurve.out (rmse_trn rmse_e_trn rmse_f_trn rmse_v_trn) on copper
# frame 0 with its labels in part, every run from base_cu.h5 (-f): a missing label's term is out
# of the loss (find_* = 0) and its column nan
DP_ROW1 = {"cu_full": [1.47e+01, 8.31e-02, 4.64e-01, 8.65e-02],
           "cu_e": [1.22e-01, 8.31e-02, np.nan, np.nan],
           "cu_ef": [1.47e+01, 8.31e-02, 4.64e-01, np.nan],
           "cu_fv": [1.47e+01, np.nan, 4.64e-01, 8.65e-02]}


@pytest.mark.parametrize("system", sorted(DP_ROW1))
def test_missing_labels_each_system(tmp_path, monkeypatch, system):
    """Row 1 (the loss before the first update) from the same start as dp's: equal to dp's 3
    printed digits (rel 5e-3), nan where dp prints nan; the total rmse of cu_e is the energy
    term's alone (1.22e-01, not 1.47e+01)."""
    path = dp_input(tmp_path, [system], ["Cu"], [40], 1)
    _, rows = _train(path, monkeypatch, init_model=DATA / "base_cu.h5")
    row = rows[0, 1:5]
    assert np.array_equal(np.isnan(row), np.isnan(DP_ROW1[system])), row
    assert row[~np.isnan(row)] == pytest.approx(np.asarray(DP_ROW1[system])[~np.isnan(row)], rel=5e-3)


def test_energy_bias_from_the_systems_with_energy(tmp_path, monkeypatch):
    """Systems without energy.npy among others: dp --pt train 3.2 fits out_bias 0.0361960714 eV
    to the frames that have an energy (the same copper frame in cu_e, cu_ef, cu_full: E / 108)."""
    path = dp_input(tmp_path, ["cu_fv", "cu_e", "cu_ef", "cu_full"], ["Cu"], [40], 1)
    trainer, _ = _train(path, monkeypatch)
    energy = float(load_system(DATA / "cu_full").energy[0])
    assert float(trainer.params.out_bias[0]) == pytest.approx(0.0361960714, rel=1e-9)
    assert float(trainer.params.out_bias[0]) == pytest.approx(energy / 108, rel=1e-14)
