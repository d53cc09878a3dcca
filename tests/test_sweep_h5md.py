"""numdp's trajectories as other tools read them: H5MD 1.1 structure checked against the
specification with h5py (no reader needed), the pressure tensor in trajectories (H5MD observables,
extxyz `stress` in ASE's convention) against the thermo log, and H5MD files written by others
(tests/data/h5md, made by tools/make_h5md_fixtures.py with MDAnalysis' H5MDWriter)."""
from __future__ import annotations

import io
import re
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from numdp.config import load_run_settings
from numdp.errors import InputError
from numdp.io.h5md import H5MDWriter, read_frame
from numdp.io.structure import lammps_box, read_structure, write_extxyz
from numdp.io.trajectory import convert_trajectory
from numdp.md.setup import run_md
from numdp.system import kinetic_tensor
from numdp.units import EV_PER_A3_TO_BAR
from test_md_potential import MASS_AR, LennardJones, fcc

DATA = Path(__file__).resolve().parent / "data" / "h5md"
EPS = np.finfo(np.float64).eps
TENSOR = ("pxx", "pyy", "pzz", "pxy", "pxz", "pyz")
LOWER = {"pxx": (0, 0), "pyy": (1, 1), "pzz": (2, 2), "pxy": (1, 0), "pxz": (2, 0), "pyz": (2, 1)}


def _general_cell_run(path: Path, fmt: str = "h5md") -> tuple[Path, str]:
    """A 10-step NVT run of 32 LJ argon atoms in a sheared and rotated cell (not LAMMPS' restricted
    form: the thermo log's tensor is in another frame than the trajectory's); returns (trajectory,
    screen text with the pressure-tensor columns)."""
    path.mkdir(parents=True, exist_ok=True)
    x, box = fcc(2, 5.3)
    shear = np.array([[1.0, 0.0, 0.0], [0.08, 1.0, 0.0], [-0.05, 0.06, 1.0]])
    c, s = np.cos(0.4), np.sin(0.4)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    cell = shear @ box @ rot.T
    frac = np.linalg.solve(box.T, x.T).T
    write_extxyz(path / "start.xyz", ["Ar"] * len(x), frac @ cell, cell)
    traj = path / ("traj.h5md" if fmt == "h5md" else "traj.extxyz")
    (path / "md.toml").write_text(textwrap.dedent(f"""
        [model]
        file = "unused.h5"
        [system]
        file = "start.xyz"
        masses = {{ Ar = {MASS_AR} }}
        velocities = {{ temperature = 80.0, seed = 3 }}
        [md]
        timestep = 0.01
        steps = 10
        ensemble = "nvt"
        thermostat = {{ kind = "csvr", temperature = 80.0, tau = 0.1 }}
        [neighbor]
        skin = 1.0
        [output]
        trajectory = "{traj.name}"
        format = "{fmt}"
        every = 5
        thermo_every = 5
        thermo_columns = ["step", "press", {", ".join(f'"{k}"' for k in TENSOR)}]
        checkpoint = "ck.h5"
        progress = "none"
        """))
    screen = io.StringIO()
    run_md(load_run_settings(path / "md.toml"), model=LennardJones(), screen=screen)
    return traj, screen.getvalue()


def _thermo_rows(text: str) -> dict[int, dict[str, float]]:
    """step -> {column: value} of the thermo lines under the `step press pxx ...` header."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["step", "press"])
    rows = {}
    for line in lines[start + 1:]:
        words = line.split()
        if len(words) != 2 + len(TENSOR) or not re.fullmatch(r"\d+", words[0]):
            break
        rows[int(words[0])] = dict(zip(("press", *TENSOR), map(float, words[1:])))
    return rows


def _assert_as_logged(p: np.ndarray, box: np.ndarray, row: dict[str, float]) -> None:
    """The tensor p (3, 3) bar of a frame with cell `box`, turned into LAMMPS' frame (Qᵀ P Q),
    equals the logged pxx ... pyz to their printed digits (0.0005 bar) plus the rotation's
    round-off (a few ulp of |P|)."""
    _, q = lammps_box(box)
    lmp = q.T @ p @ q
    tol = 5e-4 + 20 * EPS * np.abs(p).max()
    for key, (a, b) in LOWER.items():
        assert abs(lmp[a, b] - row[key]) <= tol, (key, lmp[a, b], row[key])


def test_h5md_observables_hold_the_pressure_tensor_and_virial_of_the_thermo_log(tmp_path):
    traj, text = _general_cell_run(tmp_path)
    rows = _thermo_rows(text)
    with h5py.File(traj, "r") as f:
        obs = f["observables"]
        steps = f["particles/trajectory/position/step"][()]
        assert steps.tolist() == [0, 5, 10] and sorted(rows) == [0, 5, 10]
        for name, unit in (("pressure_tensor", "bar"), ("virial", "eV")):
            g = obs[name]
            assert g["value"].shape == (3, 3, 3) and g["value"].attrs["unit"] == unit
            # one clock for every element (H5MD: hard links to the same step and time datasets)
            assert g["step"] == f["particles/trajectory/position/step"]
            assert g["time"] == f["particles/trajectory/position/time"]
        p, w = obs["pressure_tensor/value"][()], obs["virial/value"][()]
        boxes, vol = f["particles/trajectory/box/edges/value"][()], obs["volume/value"][()]
        v, m = f["particles/trajectory/velocity/value"][()], f["particles/trajectory/mass"][()]
        press = obs["pressure/value"][()]
    for k, step in enumerate(steps):
        _assert_as_logged(p[k], boxes[k], rows[step])
        assert abs(np.trace(p[k]) / 3 - press[k]) <= 20 * EPS * np.abs(p[k]).max()
        # the pressure tensor is the kinetic part plus the stored virial over the volume
        expect = (kinetic_tensor(v[k], m) + w[k]) / vol[k] * EV_PER_A3_TO_BAR
        np.testing.assert_allclose(p[k], expect, rtol=0, atol=50 * EPS * np.abs(p[k]).max())
    assert np.abs(p[:, 0, 1]).max() > 1.0   # a sheared cell: the off-diagonal terms are not all 0


def _extxyz_frames(path: Path) -> list[dict]:
    """Per frame: Lattice (3, 3), stress (3, 3), step, masses (N,), momenta (N, 3)."""
    lines = path.read_text().splitlines()
    frames, i = [], 0
    while i < len(lines):
        n = int(lines[i])
        head = lines[i + 1]
        cell = np.array(re.search(r'Lattice="([^"]*)"', head).group(1).split(), float).reshape(3, 3)
        stress = re.search(r'stress="([^"]*)"', head)
        table = [line.split() for line in lines[i + 2:i + 2 + n]]
        frames.append({"cell": cell, "step": int(re.search(r"\bstep=(\d+)", head).group(1)),
                       "stress": None if stress is None else np.array(stress.group(1).split(), float).reshape(3, 3),
                       "masses": np.array([r[4] for r in table], float),
                       "momenta": np.array([r[5:8] for r in table], float)})
        i += 2 + n
    return frames


def test_extxyz_stress_is_ases_configurational_stress_and_convert_writes_the_same(tmp_path):
    """ASE: stress = -W / V (eV/Å³) without the kinetic part, which get_stress(include_ideal_gas=
    True) subtracts from it as Σ p pᵀ / (m V); the sum is minus the pressure tensor of the log."""
    traj, text = _general_cell_run(tmp_path / "x", fmt="extxyz")
    h5, _ = _general_cell_run(tmp_path / "h")
    rows = _thermo_rows(text)
    converted = tmp_path / "c.extxyz"
    convert_trajectory(h5, converted, "extxyz")
    for run_frame, conv_frame in zip(_extxyz_frames(traj), _extxyz_frames(converted), strict=True):
        for f in (run_frame, conv_frame):
            vol = abs(np.linalg.det(f["cell"]))
            p, m = f["momenta"], f["masses"]
            ideal = (p / m[:, None]).T @ p / vol   # eV/Å³ (ASE's momenta: amu Å / ASE time unit)
            pressure = (ideal - f["stress"]) * EV_PER_A3_TO_BAR
            _assert_as_logged(pressure, f["cell"], rows[f["step"]])
        # convert carries the stress of the run (H5MD stores it as the virial, to the last bit)
        np.testing.assert_array_equal(run_frame["stress"], conv_frame["stress"])


def test_extxyz_of_an_open_system_has_no_stress(tmp_path):
    """A stress needs a volume: none for a frame without a periodic cell, and no nan in the line."""
    w = H5MDWriter(tmp_path / "t.h5md", [0, 0], [1.0, 1.0], ["Ar"], periodic=False)
    w.append(0, 0.0, np.eye(2, 3), np.zeros((2, 3)), np.zeros((2, 3)), None,
             {"potential_energy": -1.0, "virial": np.eye(3), "pressure_tensor": np.full((3, 3), np.nan)})
    w.close()
    convert_trajectory(tmp_path / "t.h5md", tmp_path / "t.extxyz", "extxyz")
    head = (tmp_path / "t.extxyz").read_text().splitlines()[1]
    assert "stress" not in head and "nan" not in head and "pressure_tensor" not in head


def test_fixed_step_and_time_storage_counts_from_the_offset(tmp_path):
    """H5MD 1.1, fixed step and time storage: scalar `step` and `time` hold the increments, their
    attribute `offset` the values of row 0: s(i) = i step + offset."""
    path = tmp_path / "fixed.h5md"
    with h5py.File(path, "w") as f:
        f.create_group("h5md").attrs["version"] = [1, 1]
        part = f.create_group("particles/all")
        box = part.create_group("box")
        box.attrs["dimension"] = 3
        box.attrs["boundary"] = ["periodic"] * 3
        box["edges"] = [10.0, 11.0, 12.0]   # time-independent cuboid
        pos = part.create_group("position")
        pos["value"] = np.arange(18.0).reshape(3, 2, 3)
        pos["step"] = 50
        pos["step"].attrs["offset"] = 1000
        pos["time"] = 0.25
        pos["time"].attrs["offset"] = 2.0
        part["species"] = [0, 0]
    frame = read_frame(path, 2)
    assert frame["step"] == 1100 and frame["time"] == 2.5
    np.testing.assert_array_equal(frame["positions"], np.arange(12.0, 18.0).reshape(2, 3))
    np.testing.assert_array_equal(frame["box"], np.diag([10.0, 11.0, 12.0]))


def test_mdanalysis_h5md_files_are_read_or_refused_in_one_line(tmp_path):
    """MDAnalysis' H5MDWriter: float32 positions, a (3, 3) box per frame, units, no species."""
    for name, velocities in (("mdanalysis_full.h5md", True), ("mdanalysis_positions.h5md", False)):
        path = DATA / name
        with h5py.File(path, "r") as f:
            part = f["particles/trajectory"]
            pos, box = part["position/value"][1], part["box/edges/value"][1]
        frame = read_frame(path, 1)
        np.testing.assert_array_equal(frame["positions"], pos.astype(np.float64))
        np.testing.assert_array_equal(frame["box"], box.astype(np.float64))
        assert frame["step"] == 10 and frame["time"] == 0.5
        assert (frame["velocities"] is not None) == velocities and frame["species"] is None
        with pytest.raises(InputError, match=f"{name}: the H5MD file has no species"):
            read_structure(path)
        with pytest.raises(InputError, match=f"{name}: the H5MD file has no species"):
            convert_trajectory(path, tmp_path / "x.extxyz", "extxyz")


def test_an_h5md_trajectory_given_as_deepmd_data_says_what_it_is(tmp_path):
    """`numdp test -s traj.h5md` (any reader of DeePMD systems): the one line says the file is a
    trajectory, not DeePMD data, where it said only that no group holds type.raw."""
    from numdp.io.npy_system import find_systems

    w = H5MDWriter(tmp_path / "t.h5md", [0, 0], [1.0, 1.0], ["Ar"], periodic=False)
    w.append(0, 0.0, np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 3)), None, {})
    w.close()
    with pytest.raises(InputError, match=r"t\.h5md#/: no system .* an H5MD trajectory or checkpoint, not DeePMD data"):
        find_systems(tmp_path / "t.h5md")
