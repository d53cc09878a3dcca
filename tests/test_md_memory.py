"""MD with a neighbour list that is never stored whole (numdp.neighbor.NeighborRows) equals MD
with the stored list bit for bit: the rows are the same, so the forces and the trajectory are."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from numdp import load_model
from numdp.config import load_run_settings
from numdp.md.setup import build_simulation

ROOT = Path(__file__).resolve().parents[1]

WATER = f"""
[model]
file = "{ROOT / 'inputs' / 'water' / 'model.h5'}"
[system]
file = "{ROOT / 'inputs' / 'water' / 'start.xyz'}"
velocities = {{ temperature = 600.0, seed = 3 }}
masses = {{ O = 16.0, H = 2.0 }}
[md]
timestep = 0.001
steps = 12
ensemble = "nvt"
thermostat = {{ kind = "langevin", temperature = 600.0, tau = 0.05 }}
[neighbor]
skin = 0.1
[output]
trajectory = ""
thermo_every = 100
checkpoint_every = 0
progress = "none"
[safety]
min_distance = 0.0
"""


def run_water(tmp_path: Path, model, streams: bool):
    folder = tmp_path / ("rows" if streams else "list")
    folder.mkdir()
    (folder / "md.toml").write_text(WATER)
    sim, end = build_simulation(load_run_settings(folder / "md.toml"), model=model, screen=io.StringIO())
    assert sim.provider.streams  # numdp's CPU model formats its rows chunk by chunk by default
    sim.provider.streams = streams
    result = sim.run(end)
    sim.close()
    return sim.state, result, sim.provider.closest


def test_rows_formatted_in_chunks_equal_the_stored_list(tmp_path):
    # 600 K, 1 fs and a 0.1 A skin: the list is rebuilt every few steps; small chunks and two
    # threads so that the rows of one call come from many chunks on both workers
    model = load_model(ROOT / "inputs" / "water" / "model.h5", nthreads=2)
    model._ev.chunk = 16
    a, ra, ca = run_water(tmp_path, model, streams=True)
    b, rb, cb = run_water(tmp_path, model, streams=False)
    assert ca == cb  # the closest pair (safety check) of the last step
    assert ra.rebuilds == rb.rebuilds >= 3
    for name in ("positions", "velocities", "forces", "virial"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.potential_energy == b.potential_energy
