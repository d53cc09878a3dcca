"""The README's quick-start run (`numdp run inputs/water/md.toml`), shortened, through the CLI.

The shipped input, model and structure are copied to a temporary directory (so that no output
lands in inputs/) and run from the directory above it, as the README runs it from the repository
root; only the step count and output cadences are shortened.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WATER = ROOT / "inputs" / "water"

SHORTEN = {"steps = 400": "steps = 10", "\nevery = 50\n": "\nevery = 5\n", "thermo_every = 50": "thermo_every = 5",
           "checkpoint_every = 200": "checkpoint_every = 10"}


def test_readme_quick_start_runs(tmp_path):
    run_dir = tmp_path / "water"
    run_dir.mkdir()
    text = (WATER / "md.toml").read_text()
    for old, new in SHORTEN.items():
        assert text.count(old) == 1, f"inputs/water/md.toml no longer has {old!r}: update SHORTEN"
        text = text.replace(old, new)
    (run_dir / "md.toml").write_text(text)
    for name in ("model.h5", "start.xyz"):
        shutil.copy(WATER / name, run_dir / name)
    before = sorted(p.name for p in WATER.iterdir())
    r = subprocess.run([sys.executable, "-m", "numdp.cli", "run", "water/md.toml"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert sorted(p.name for p in WATER.iterdir()) == before  # nothing written into inputs/
    assert "192 atoms" in r.stdout and "Loop time of" in r.stdout
    with h5py.File(run_dir / "traj.h5md", "r") as f:
        assert f["particles/trajectory/position/step"][()].tolist() == [0, 5, 10]
        assert f["particles/trajectory/position/value"].shape == (3, 192, 3)
        temperature = f["observables/temperature/value"][()]
        energy = f["observables/total_energy/value"][()]
    assert np.isfinite(energy).all()
    # 330 K start from an equilibrated frame; over 5 fs of Nose-Hoover NVT the temperature stays
    # within 5 canonical fluctuations of 576 - 3 degrees of freedom (330 K sqrt(2/573) = 19.5 K)
    assert np.all(np.abs(temperature - 330.0) < 100.0)
    assert (run_dir / "checkpoint.h5").exists() and (run_dir / "log.txt").exists()
