"""Atoms on top of each other are named (numdp.neighbor.overlap): by `model.evaluate` (InputError)
and by `numdp run` (a safety stop, exit 2), instead of a silent or anonymous nan."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from numdp.errors import InputError
from numdp.io.model_file import write_model
from numdp.io.structure import write_extxyz
from numdp.model.dp_model import DPModel
from numdp.neighbor.overlap import OVERLAP_DISTANCE
from randmodel import random_params

BOX = np.eye(3) * 6.0


def small_system(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.5, 5.5, (10, 3))
    return x, np.array([0, 1] * 5)


@pytest.fixture(scope="module")
def model():
    return DPModel(random_params(ntypes=2, sel=[12, 12], seed=1), nthreads=1)


def test_two_atoms_at_the_same_place_are_named(model):
    x, t = small_system()
    x[7] = x[2]
    with pytest.raises(InputError) as err:
        model.evaluate(x, t, BOX)
    msg = str(err.value)
    assert "\n" not in msg
    assert "2 (A)" in msg and "7 (B)" in msg and "on top of each other (0 A apart)" in msg
    # non-periodic too, and the descriptor path
    with pytest.raises(InputError, match=r"atoms 2 \(A\) and 7 \(B\)"):
        model.descriptor(x, t, None)


def test_an_atom_on_a_periodic_image_of_another_is_named(model):
    x, t = small_system()
    x[4] = x[1] + BOX[0]  # an image of atom 1 lies on atom 4 (positions are wrapped first)
    with pytest.raises(InputError, match=r"atoms 1 \(B\) and 4 \(A\)|atoms 4 \(A\) and 1 \(B\)"):
        model.evaluate(x, t, BOX)


def test_the_threshold_is_the_overlap_distance_and_finite_just_above(model):
    """Just above the threshold the model is still finite (the threshold leaves a margin to where
    its arithmetic breaks); just below it the pair is refused."""
    x, t = small_system()
    x[7] = x[2] + [2 * OVERLAP_DISTANCE, 0.0, 0.0]
    out = model.evaluate(x, t, BOX)
    assert np.isfinite(out.energy) and np.isfinite(out.forces).all()
    x[7] = x[2] + [0.5 * OVERLAP_DISTANCE, 0.0, 0.0]
    with pytest.raises(InputError, match="on top of each other"):
        model.evaluate(x, t, BOX)


INPUT = """
[model]
file = "model.h5"
[system]
file = "start.xyz"
velocities = { temperature = 10.0, seed = 3 }
masses = { A = 12.0, B = 16.0 }
[md]
timestep = 0.001
steps = 5
[output]
every = 1
checkpoint_every = 0
progress = "none"
"""


def test_numdp_run_names_the_overlapping_atoms(tmp_path):
    write_model(random_params(ntypes=2, sel=[12, 12], seed=1), tmp_path / "model.h5")
    x, t = small_system()
    x[7] = x[2]
    write_extxyz(tmp_path / "start.xyz", [["A", "B"][i] for i in t], x, BOX)
    (tmp_path / "md.toml").write_text(INPUT)
    r = subprocess.run([sys.executable, "-m", "numdp.cli", "run", "md.toml"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if "on top of each other" in line]
    assert len(lines) == 1, r.stderr
    assert "step 0:" in lines[0] and "2 (A)" in lines[0] and "7 (B)" in lines[0] and "0 A apart" in lines[0]
    assert "potential energy is nan" not in r.stderr and "Traceback" not in r.stderr
