"""Review 9 (c91166e..4f5a12e): a restarted run writes its start frame only when its trajectory
does not hold one (numdp.md.loop.Simulation._report: `r.last_step == step`).

Every trajectory format (H5MD, extxyz, one LAMMPS dump, a `*` series) continued after a run that
ended off its output cadence (numdp writes the last step's frame), with the cadence changed on the
restart so that the start step is on the new one: each step appears once, in order, and the
frames are those of the first run up to its end then the new cadence's after it.
"""
from __future__ import annotations

import re
from pathlib import Path

import h5py
import pytest

from test_md_run import argon_dir, run


def _steps(folder: Path, name: str) -> list[int]:
    """The frame steps of trajectory `name` in `folder`, in file order (a series: by file step)."""
    path = folder / name
    if name.endswith(".h5md"):
        with h5py.File(path, "r") as f:
            return f["particles/trajectory/position/step"][()].tolist()
    if "*" in name:
        return sorted(int(p.name.split(".")[0]) for p in folder.glob(name))
    text = path.read_text()
    if name.endswith(".xyz"):
        return [int(s) for s in re.findall(r"\bstep=(\d+)", text)]
    return [int(s) for s in re.findall(r"ITEM: TIMESTEP\n(\d+)", text)]


@pytest.mark.parametrize("name", ["traj.h5md", "traj.xyz", "traj.lammpstrj", "*.lammpstrj"])
def test_a_restart_whose_start_frame_is_on_the_new_cadence_writes_it_once(tmp_path, name):
    """First run: 12 steps, a frame every 5 (0, 5, 10 and the last step's, 12).  The restart to 20
    with a frame every 3: 12 is on that cadence and already in the file, so it is not written again;
    then 15, 18 and the last step, 20."""
    toml = argon_dir(tmp_path, KIND="langevin", **{"steps = 60": "steps = 12",
                                                   'trajectory = "traj.h5md"': f'trajectory = "{name}"'})
    run(toml)
    assert _steps(tmp_path, name) == [0, 5, 10, 12]
    start = tmp_path / "12.lammpstrj"   # a series: the start frame's file is not written again
    stamp = start.stat().st_mtime_ns if "*" in name else None
    toml.write_text(toml.read_text().replace("steps = 12", "steps = 20").replace("every = 5\n", "every = 3\n"))
    run(toml, restart=tmp_path / "ck.h5")
    assert _steps(tmp_path, name) == [0, 5, 10, 12, 15, 18, 20]
    assert stamp is None or start.stat().st_mtime_ns == stamp
