"""`numdp test`: figures per system and overall, JSON output, errors."""
import json

import numpy as np
import pytest

from numdp.cli import main
from tests_util import write_system


def test_numdp_test_matches_direct_evaluation(tmp_path, oracle_dir, capsys):
    ref = np.load(oracle_dir / "alloy5.npz")
    sysdir = write_system(tmp_path / "sys", ref["coord"], ref["box"], ref["atype"],
                          ["Ni", "Cu", "Pd", "Ag", "Au"],
                          energy=ref["energy"] + np.array([0.108, -0.216]),
                          force=ref["force"] + 0.001,
                          virial=ref["virial"] - 0.0108 * np.arange(9).reshape(3, 3))
    out = tmp_path / "r.json"
    assert main(["test", "-m", str(oracle_dir / "alloy5.dp"), "-s", str(sysdir), "--json", str(out)]) == 0
    fig = json.loads(out.read_text())
    n = 108
    e_rmse = 1000 * np.sqrt(np.mean((np.array([0.108, -0.216]) / n) ** 2))
    v_rmse = 1000 * np.sqrt(np.mean((0.0108 * np.arange(9) / n) ** 2))
    assert fig["overall"]["rmse_energy"] == pytest.approx(e_rmse, rel=1e-6)
    assert fig["overall"]["rmse_force"] == pytest.approx(1.0, rel=1e-6)
    assert fig["overall"]["rmse_virial"] == pytest.approx(v_rmse, rel=1e-6)
    assert fig["systems"][0]["frames"] == 2
    assert "overall" in capsys.readouterr().out


def test_numdp_test_without_virial_and_missing_model(tmp_path, oracle_dir, capsys):
    ref = np.load(oracle_dir / "water_cluster.npz")
    sysdir = write_system(tmp_path / "c", ref["coord"], None, ref["atype"], ["O", "H"],
                          energy=ref["energy"], force=ref["force"])
    out = tmp_path / "r.json"
    assert main(["test", "-m", str(oracle_dir / "water.dp"), "-s", str(sysdir), "--json", str(out)]) == 0
    fig = json.loads(out.read_text())["overall"]
    assert fig["rmse_virial"] is None
    assert fig["rmse_energy"] < 1e-9 and fig["rmse_force"] < 1e-9
    assert main(["test", "-m", str(tmp_path / "nope.dp"), "-s", str(sysdir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.dp" in err[0]
