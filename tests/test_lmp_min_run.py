"""`numdp lmp` on the commonest hand-written pattern, a `minimize` then a `run` in one script, against
real LAMMPS (tests/data/lmp_min_run/CASE.npz, tools/make_lmp_min_run_fixtures.py): the run starts
from the state and step the minimize stopped at (or reset_timestep's), with LAMMPS' velocities
(a data file's Velocities, which cg leaves alone; none; velocity create after the minimize).

Bounds.  The minimize (5 cg iterations, each moving an atom at most dmax = 0.1 Å) agrees with
LAMMPS' to the relative round-off of its line-search step, which comes from force dot products:
|δF| / |F| <= 1e-11 / 0.08 ~ 1e-10 (forces to 1e-11 eV/Å: tests/test_sweep_lammps_nh.py), so the
positions to 5 * 0.1 * 1e-10 = 5e-11 Å.  20 MD steps (0.01 ps) carry such a difference as an
oscillation of the stiffest mode (O-H, k ~ 50 eV/Å², ω = sqrt(k / m) ~ 700 /ps, ωt ~ 7 radians):
velocities to ω δx ~ 4e-8 Å/ps, positions to δx + δv t ~ 4e-10 Å, plus the MD's own 1e-11 Å and
1e-9 Å/ps: POS_TOL = 1e-9 Å, VEL_TOL = 1e-7 Å/ps.  The thermo lines are printed by numdp to 6
decimals (pe, ke: 5e-7 eV), and pe moves by |F| δx N ~ 1.4 * 1e-9 * 192 = 3e-7 eV: 2e-6 eV; press
differs by the bar constants' ratio (8e-8 relative, docs/lammps-input.md): 1e-6 relative.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from numdp.cli import main as cli_main
from numdp.errors import InputError
from numdp.io.h5md import read_frame
from numdp.lammps.translate import translate

from lammps_log import dump_frames, thermo_blocks

DATA = Path(__file__).parent / "data"
FIXTURES = DATA / "lmp_min_run"
MODEL = DATA / "tensorflow" / "tf_one_side_f64.dp"
WATER = DATA / "lammps_nh" / "water.data"
POS_TOL = 1e-9    # Å (module docstring)
VEL_TOL = 1e-7    # Å/ps
ENERGY_TOL = 2e-6   # eV
PRESS_RTOL = 1e-6

HEAD = """units metal
boundary p p p
atom_style atomic
read_data {data}
pair_style deepmd model.dp
pair_coeff * *
neighbor 1.0 bin
timestep 0.0005
thermo 5
thermo_style custom step pe ke press vol
"""


def _folder(tmp_path: Path, data: str) -> Path:
    shutil.copyfile(MODEL, tmp_path / "model.dp")
    shutil.copyfile(FIXTURES / data if data == "water_rest.data" else WATER, tmp_path / data)
    return tmp_path


def _run(folder: Path, script: str, monkeypatch) -> None:
    (folder / "in.lammps").write_text(script)
    monkeypatch.chdir(folder)
    assert cli_main(["lmp", "-i", "in.lammps"]) == 0


def _compare(folder: Path, ref, positions: bool = True) -> None:
    _, run = thermo_blocks((folder / "log.lammps").read_text())[-1]
    want = ref["run"]
    assert run[:, 0].tolist() == want[:, 0].tolist()   # the run's steps, as LAMMPS'
    rows = slice(None) if positions else slice(0, 1)   # (velocity create: numdp's draw, its first line only)
    assert np.abs(run[rows, 1] - want[rows, 1]).max() <= ENERGY_TOL
    assert np.abs(run[rows, 2] - want[rows, 2]).max() <= ENERGY_TOL
    assert np.allclose(run[rows, 3], want[rows, 3], rtol=PRESS_RTOL, atol=1e-3)
    assert np.abs(run[:, 4] - want[:, 4]).max() <= 0.05   # (numdp prints the volume to 0.1 Å³)
    if not positions:
        return
    frame = read_frame(folder / "checkpoint.h5")
    box = np.diag(np.asarray(frame["box"], float))
    assert np.abs(box - ref["box"]).max() <= POS_TOL
    d = np.asarray(frame["positions"], float) - ref["x"]
    d -= np.round(d / box) * box
    assert np.abs(d).max() <= POS_TOL
    assert np.abs(np.asarray(frame["velocities"], float) - ref["v"]).max() <= VEL_TOL


@pytest.mark.parametrize("case", ["data_velocities", "at_rest", "reset", "box_relax_npt"])
def test_run_after_minimize_as_lammps(case, tmp_path, monkeypatch):
    """The run goes on from the minimized state with the data file's Velocities (cg leaves them
    alone), at rest without any, after reset_timestep 0 at step 0, and after a fix box/relax
    minimize with fix npt: thermo lines (steps included), final positions, velocities and cell as
    LAMMPS'; the dump's frames at LAMMPS' steps plus the minimize's last (docs/lammps-input.md)."""
    ref = np.load(FIXTURES / f"{case}.npz")
    folder = _folder(tmp_path, str(ref["data"]))
    _run(folder, HEAD.format(data=ref["data"]) + str(ref["body"]).replace("model.pb", "model.dp"), monkeypatch)
    _compare(folder, ref)
    if ref["frames"].size:
        text = (folder / "traj.dump").read_text().splitlines()
        steps = [int(text[i + 1]) for i, ln in enumerate(text) if ln == "ITEM: TIMESTEP"]
        assert steps == sorted(set(ref["frames"].tolist()) | {5})


def test_velocity_create_after_minimize(tmp_path, monkeypatch):
    """velocity create after the minimize replaces the velocities: numdp's draw (not LAMMPS'
    numbers), so the run's first line is LAMMPS' (pe of the minimized state, ke of exactly 300 K
    with LAMMPS' kB) and the steps are LAMMPS'."""
    ref = np.load(FIXTURES / "create_after.npz")
    folder = _folder(tmp_path, "water.data")
    _run(folder, HEAD.format(data="water.data") + str(ref["body"]), monkeypatch)
    _compare(folder, ref, positions=False)


def refusal(tmp_path, text: str) -> str:
    shutil.copyfile(WATER, tmp_path / "water.data")
    shutil.copyfile(MODEL, tmp_path / "model.dp")
    with pytest.raises(InputError) as err:
        translate(HEAD.format(data="water.data") + text, "in.lammps", {}, tmp_path)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_what_cannot_be_made_exact_is_refused(tmp_path):
    """FIRE's last velocities (numdp's FIRE ends at rest), reset_timestep with a dump (LAMMPS
    refuses it too), a minimize after such a reset: one line each, saying what to write."""
    assert "add `velocity all create T SEED` after the minimize" in refusal(
        tmp_path, "min_style fire\nminimize 0 1e-3 5 1000\nfix 1 all nve\nrun 10\n")
    assert "Cannot reset timestep with active dump" in refusal(
        tmp_path, "dump 1 all atom 5 d.dump\nminimize 0 1e-3 5 1000\nreset_timestep 0\nfix 1 all nve\nrun 10\n")
    assert "a file per frame" in refusal(   # LAMMPS takes it with a multi-file dump: not "LAMMPS refuses it too"
        tmp_path, "dump 1 all custom 5 t/*.dump id type x y z\nminimize 0 1e-3 5 1000\nreset_timestep 0\n"
        "fix 1 all nve\nrun 10\n")
    assert "velocity all create" in refusal(   # what is taken after a minimize, named in full
        tmp_path, "minimize 0 1e-3 5 1000\nlattice fcc 3.6\nfix 1 all nve\nrun 10\n")
    # a minimize after reset_timestep after a minimize (DP-GEN 0.14's relaxation) runs on from the
    # step the one before stopped at, with a notice (tests/test_sweep_autotest3.py)
    tr = translate(HEAD.format(data="water.data") + "minimize 0 1e-3 5 1000\nreset_timestep 0\n"
                   "minimize 0 1e-3 5 1000\n", "in.lammps", {}, tmp_path)
    assert any("reset_timestep 0 before a minimize" in n for n in tr.notices), tr.notices


def test_the_steps_count_from_where_the_minimize_stopped(tmp_path):
    """Before it ran, the run's steps take MAXITER iterations (--print-toml); numdp lmp translates
    again with the step the minimize stopped at: the run's end and the later runs' follow it."""
    shutil.copyfile(WATER, tmp_path / "water.data")
    shutil.copyfile(MODEL, tmp_path / "model.dp")
    text = HEAD.format(data="water.data") + "minimize 0 1e-3 50 1000\nfix 1 all nve\nrun 10\nrun 5\n"
    assert [t["md"]["steps"] for t, _ in translate(text, "in.lammps", {}, tmp_path).later] == [60, 65]
    again = translate(text, "in.lammps", {}, tmp_path, minimize_stop=7)
    assert [t["md"]["steps"] for t, _ in again.later] == [17, 22]
    assert again.later[0][0]["system"]["file"] == "checkpoint.minimized.h5"


def test_a_second_script_run_keeps_the_first_runs_start_and_says_so(tmp_path, monkeypatch, capsys):
    """The run's start state (ROOT.minimized.h5) of an earlier run of the script in the same
    folder is kept as #FILE.1# and the line says so, as every output numdp replaces."""
    folder = _folder(tmp_path, "water.data")
    script = HEAD.format(data="water.data") + "minimize 0 1e-3 3 1000\nfix 1 all nve\nrun 2\n"
    _run(folder, script, monkeypatch)
    first = (folder / "checkpoint.minimized.h5").read_bytes()
    capsys.readouterr()
    _run(folder, script, monkeypatch)
    assert "#checkpoint.minimized.h5.1#" in capsys.readouterr().out
    assert (folder / "#checkpoint.minimized.h5.1#").read_bytes() == first


@pytest.mark.parametrize("case", ["dump_after_reset", "dump_after"])
def test_a_dump_defined_after_the_minimize_is_the_runs(case, tmp_path, monkeypatch):
    """`dump` after the minimize (after reset_timestep 0: N = 5, the run's start step 0 a multiple;
    without: N = 3 from the step the minimize stopped at, 5): LAMMPS' frames, none of the
    minimize's, the first at the run's start step when N divides it (and none of the run's
    last step off the cadence, as LAMMPS); each frame's positions as LAMMPS' to
    POS_TOL (LAMMPS' %.15g adds 1e-14 Å), as the run's thermo lines and final state."""
    ref = np.load(FIXTURES / f"{case}.npz")
    folder = _folder(tmp_path, str(ref["data"]))
    _run(folder, HEAD.format(data=ref["data"]) + str(ref["body"]), monkeypatch)
    _compare(folder, ref)
    steps, x = dump_frames(folder / "traj.dump")
    assert steps == ref["frames"].tolist()
    box = ref["box"]
    d = x[[steps.index(k) for k in ref["frames"].tolist()]] - ref["frame_x"]
    d -= np.round(d / box) * box   # (both wrapped into the cell: an atom may sit at opposite faces)
    assert np.abs(d).max() <= POS_TOL


def test_a_dump_after_the_minimize_starts_anew(tmp_path, monkeypatch, capsys):
    """The run after the minimize restarts from ROOT.minimized.h5, yet a dump defined after the
    minimize is new: a file of that name from an earlier run of the script is kept as #FILE.1#
    (not continued: a restart would cut it back to the start step and append), and the run
    writes its own first frame again."""
    folder = _folder(tmp_path, "water.data")
    script = (HEAD.format(data="water.data") + "minimize 0 1e-3 3 1000\nreset_timestep 0\nfix 1 all nve\n"
              "dump 1 all custom 2 traj.dump id type x y z\nrun 4\n")
    _run(folder, script, monkeypatch)
    first = (folder / "traj.dump").read_text()
    assert dump_frames(folder / "traj.dump")[0] == [0, 2, 4]
    capsys.readouterr()
    _run(folder, script, monkeypatch)
    assert "#traj.dump.1#" in capsys.readouterr().out
    assert (folder / "#traj.dump.1#").read_text() == first
    assert (folder / "traj.dump").read_text() == first   # the same run again: the same frames


def test_what_a_dump_after_the_minimize_cannot_be(tmp_path):
    """A second dump (one before the minimize, one after), reset_timestep after such a dump
    (LAMMPS refuses it too), a minimize after it (the dump belongs to the run after the last
    minimize): one line each.  A file per frame takes reset_timestep after it (LAMMPS too)."""
    assert "a second dump (1 is one, defined before the minimize)" in refusal(
        tmp_path, "dump 1 all atom 5 a.dump\nminimize 0 1e-3 5 1000\ndump 2 all atom 5 b.dump\nfix 1 all nve\n"
        "run 10\n")
    assert "Cannot reset timestep with active dump" in refusal(
        tmp_path, "minimize 0 1e-3 5 1000\ndump 1 all atom 5 d.dump\nreset_timestep 0\nfix 1 all nve\nrun 10\n")
    assert "belongs to the run after the last minimize" in refusal(
        tmp_path, "minimize 0 1e-3 5 1000\ndump 1 all atom 5 d.dump\nminimize 0 1e-3 5 1000\nfix 1 all nve\n"
        "run 10\n")
    tr = translate(HEAD.format(data="water.data") + "minimize 0 1e-3 5 1000\ndump 1 all custom 5 t/*.dump id x\n"
                   "dump_modify 1 sort id\nreset_timestep 0\nfix 1 all nve\nrun 10\n", "in.lammps", {}, tmp_path)
    assert tr.md_start.dump == "t/*.dump" and tr.md_start.step == 0
    assert tr.tables["output"]["trajectory"] == ""   # the minimize's: no dump
    assert tr.later[0][0]["output"]["trajectory"] == "t/*.dump"


def test_a_restarted_frame_series_knows_its_start_frame(tmp_path):
    """A restart of a one-file-per-frame dump (traj/*.lammpstrj) finds the file of its start step
    (the run's loop then writes that frame once; only a run whose trajectory is new, as numdp
    lmp's dump after a minimize, writes it at its start)."""
    from numdp.io.trajectory import open_trajectory

    path = tmp_path / "traj" / "*.lammpstrj"
    path.parent.mkdir()
    box = np.eye(3) * 5.0
    w = open_trajectory("lammps-dump", path, np.array([0, 1]), np.ones(2), ["O", "H"], ("position",), True,
                        "eV Angstrom-1")
    for step in (0, 5):
        w.append(step, 0.0, np.zeros((2, 3)) + step * 0.1, None, None, box, {})
    w.close()
    again = open_trajectory("lammps-dump", path, np.array([0, 1]), np.ones(2), ["O", "H"], ("position",), True,
                            "eV Angstrom-1", resume_after=5)
    assert again.last_step() == 5
    again.close()
    fresh = open_trajectory("lammps-dump", path, np.array([0, 1]), np.ones(2), ["O", "H"], ("position",), True,
                            "eV Angstrom-1", resume_after=7)
    assert fresh.last_step() is None
    fresh.close()
