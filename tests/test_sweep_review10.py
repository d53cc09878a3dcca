"""Review of the box-origin commits (98ab3c2, 5b2aab1) against real LAMMPS 22 Jul 2025
(tests/data/review10/, tools/make_review10_fixtures.py): a data file's box from (-5.3, 2.0, 0.7)
where numdp lmp's output still held numdp's box from 0, 5.3 Å off in x:

- `write_data` of a slab (`boundary p p f`): write_lammps_data added LAMMPS' corner to a fully
  periodic box only;
- `dump xyz` (numdp's extxyz): open_trajectory gave the corner to the lammps-dump writer only.

Bounds (tests/test_lmp_fidelity.py's): positions agree to POS_TOL = 1e-11 Å (the forces agree
with LAMMPS' to 1e-11 eV/Å, which over 10 steps of 0.5 fs moves an H atom by at most
1e-11 / 1.008 * 9648.5 * 0.005² / 2 ~ 1.2e-12 Å; LAMMPS prints %.15g, 1e-14 Å at 15 Å); the box's
bounds are lo + length in both codes, one rounding of 15 Å apart, and LAMMPS' write_data prints
%.16e: BOX_TOL = 1e-13 Å (under fix npt too: the fidelity test's npt bounds hold to it).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from numdp.cli import main as cli_main
from numdp.io.h5md import read_frame

from lammps_log import data_file
from test_lmp_fidelity import HEAD   # (the numdp lmp script head of these tests)

DATA = Path(__file__).parent / "data"
FIXTURES = DATA / "review10"
MODEL = DATA / "tensorflow" / "tf_one_side_f64.dp"
POS_TOL = 1e-11   # Å (module docstring)
BOX_TOL = 1e-13   # Å

CASES = {"slab": ("p p f", "ortho.data"), "tri_npt": ("p p p", "tri.data")}   # (the tool's)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{case: (its run directory, its fixture)}: numdp lmp on each case's script, run once."""
    out = {}
    for name, (boundary, data) in CASES.items():
        ref = np.load(FIXTURES / f"{name}.npz")
        work = tmp_path_factory.mktemp(name)
        shutil.copyfile(MODEL, work / "model.dp")
        shutil.copyfile(DATA / "lmp_fidelity" / data, work / data)
        (work / "in.lammps").write_text(HEAD.format(boundary=boundary, data=data) + str(ref["body"]))
        cwd = Path.cwd()
        try:
            os.chdir(work)
            assert cli_main(["lmp", "-i", "in.lammps"]) == 0
        finally:
            os.chdir(cwd)
        out[name] = (work, ref)
    return out


def _cell(work: Path) -> np.ndarray:
    """The run's last cell (3, 3) Å (the data files' cells are LAMMPS' restricted form already)."""
    frame = read_frame(work / "checkpoint.h5")
    assert frame["step"] == 10
    return np.asarray(frame["box"], float)


def _modulo_cell(d: np.ndarray, h: np.ndarray, periodic) -> np.ndarray:
    """Differences `d` (n, 3) Å less whole cell vectors along the periodic ones (LAMMPS wraps at
    its reneighbouring only, numdp's extxyz holds unwrapped positions)."""
    f = np.linalg.solve(h.T, d.T).T
    f[:, periodic] -= np.round(f[:, periodic])
    return f @ h


def _read_xyz(path: Path, keep: int):
    """(steps, atoms 1..keep's positions (frames, keep, 3)) of numdp's extxyz."""
    lines = path.read_text().splitlines()
    steps, atoms, i = [], [], 0
    while i < len(lines):
        n = int(lines[i])
        steps.append(int(next(w for w in lines[i + 1].split() if w.startswith("step=")).split("=")[1]))
        atoms.append([[float(v) for v in ln.split()[1:4]] for ln in lines[i + 2:i + 2 + keep]])
        i += n + 2
    return steps, np.array(atoms)


def test_write_data_of_a_slab_off_the_origin_is_lammps(runs):
    """`boundary p p f` from a data file's box from (-5.3, 2.0, 0.7): LAMMPS' write_data holds its
    bounds and coordinates from that corner, the fixed z bounds as the periodic ones; numdp wrote
    the box from 0 (0 12.44 xlo xhi) and positions 5.3 Å off in x."""
    work, ref = runs["slab"]
    h = _cell(work)
    keep = ref["data_x"].shape[0]
    bounds, x, image = data_file(work / "final.data")
    x, image = x[:keep], image[:keep]
    assert np.abs(bounds - ref["data_bounds"]).max() <= BOX_TOL
    # (each code's unwrapped positions: LAMMPS wraps at reneighbouring, numdp at writing)
    d = (x + image @ h) - (ref["data_x"] + ref["data_image"] @ h)
    assert np.abs(d).max() <= POS_TOL


@pytest.mark.parametrize("case", list(CASES))
def test_dump_xyz_off_the_origin_is_lammps(case, runs):
    """`dump xyz` (numdp's extxyz) of a box off the origin holds LAMMPS' x y z, from its corner
    (under fix npt tri the corner moving with the box about its centre); numdp wrote them from 0."""
    work, ref = runs[case]
    h = _cell(work)
    keep = ref["xyz_atoms"].shape[1]
    steps, atoms = _read_xyz(work / "a.xyz", keep)
    assert steps == ref["xyz_steps"].tolist() == [0, 5, 10]
    periodic = [b == "p" for b in CASES[case][0].split()]
    d = _modulo_cell(atoms[-1] - ref["xyz_atoms"][-1], h, periodic)
    assert np.abs(d).max() <= POS_TOL
    d0 = atoms[0] - ref["xyz_atoms"][0]   # (the data file's positions: no wrapping to undo)
    assert np.abs(d0).max() <= POS_TOL
