"""Review 8 (5b83601..25c1fbc): fix setforce ([minimize] fixed_directions) across runs, and
read_restart's triclinic dump header.

LAMMPS' minimize and run both evaluate the forces anew in their set-up (Min::setup, Verlet::setup)
and then apply the fixes then defined (fix setforce's min_setup / setup call its post_force): the
forces a run starts from are those of the fixes of that run, never the stored ones of the run
before.  numdp keeps a checkpoint's forces when it continues one (a restart, bit for bit); a new
minimization from a checkpoint ([minimize] anew, LAMMPS' minimize after a minimize) and the MD
start numdp lmp writes after a minimize are new runs, so a fix setforce given or removed between
them must act on their first iteration / step.
"""
from __future__ import annotations

import io
import math
import shutil
from pathlib import Path

import numpy as np

from numdp.config import load_run_settings
from numdp.io.h5md import read_checkpoint
from numdp.md.setup import run_md
from test_md_potential import LennardJones
from test_setforce import LJ_EPS, setup_case

HERE = Path(__file__).parent
UNIT = np.finfo(float).eps / 2


def _run(toml: Path):
    return run_md(load_run_settings(toml), model=LennardJones(eps=LJ_EPS), screen=io.StringIO())


def _anew(folder: Path, first_fixed: str, second_fixed: str, steps: int = 10) -> tuple[Path, Path]:
    """A cg minimization of `steps` iterations with `first_fixed`, then a new
    one ([minimize] anew) from its checkpoint with `second_fixed` (each a [minimize] line, or "");
    (first checkpoint, second folder)."""
    first = setup_case(folder / "first", "cg", every=steps, steps=steps)
    first.write_text(first.read_text().replace('fixed_directions = ["x", "y"]', first_fixed))
    _run(first)
    ck = folder / "first" / "ck.h5"
    second = setup_case(folder / "second", "cg", steps=steps)
    second.write_text(second.read_text()
                      .replace('file = "start.data"', f'file = "{ck.as_posix()}"')
                      .replace("[minimize]\n", "[minimize]\nanew = true\n")
                      .replace('fixed_directions = ["x", "y"]', second_fixed))
    _run(second)
    return ck, folder / "second"


def test_anew_minimize_with_setforce_after_one_without_holds_x_and_y(tmp_path):
    """minimize; fix 1 all setforce 0 0 NULL; minimize: the second minimization's first line search
    used the checkpoint's unfixed forces, so the atoms moved along x and y (1.2e-3 A here); LAMMPS'
    second minimize evaluates the forces anew with the fix: x and y stay bit for bit."""
    ck, second = _anew(tmp_path, "", 'fixed_directions = ["x", "y"]')
    a, b = read_checkpoint(ck), read_checkpoint(second / "ck.h5")
    assert b.step == a.step + 10
    assert np.array_equal(b.positions[:, :2], a.positions[:, :2]), np.abs(b.positions[:, :2] - a.positions[:, :2]).max()
    assert np.abs(b.positions[:, 2] - a.positions[:, 2]).max() > 0.0


def test_anew_minimize_without_setforce_after_one_with_starts_from_the_whole_forces(tmp_path):
    """fix setforce; minimize; unfix; minimize: the second minimization started from the stored
    forces, zero along x and y (its initial force norm the fixed one); LAMMPS' starts from the
    model's whole forces.  The summary's initial norm is printed to 6 significant digits (%g)."""
    ck, second = _anew(tmp_path, 'fixed_directions = ["x", "y"]', "")
    a = read_checkpoint(ck)
    _, f, _ = LennardJones(eps=LJ_EPS).energy_forces_virial(a.positions, a.box)
    want = float(np.linalg.norm(f))
    assert want > 2 * float(np.linalg.norm(f[:, 2]))   # (the fixed norm is far from it)
    line = next(s for s in (second / "log.txt").read_text().splitlines() if "Force two-norm initial" in s)
    got = float(line.split("=")[1].split()[0])
    assert math.isclose(got, want, rel_tol=1e-5), (line, want)


def test_md_after_a_minimize_with_setforce_unfixed_starts_from_the_whole_forces(tmp_path, monkeypatch):
    """fix setforce 0 0 NULL; minimize; unfix; run: numdp lmp's MD start (the minimize's final state)
    kept the minimize's forces, zero along x and y, so the first velocity-Verlet half kick left
    v_x = v_y = 0 and the first step x_1 = x_0 bit for bit; LAMMPS' run evaluates the forces anew
    (the fix gone): from rest, x_1 - x_0 = dt^2 F(x_0) / (2 m) along every axis.

    Bound: the dump gives F(x_1), which differs from F(x_0) by the Hessian times the step: at most
    |H|_row |dx|max, |H|_row <= 10 neighbours x 50 eV/A^2 (O-H, tests/test_lmp_min_run.py) with
    |dx| <= dt^2 |F|max / (2 m_H) ~ 1e-4 A: 5% of F; 10% of the largest predicted step."""
    from numdp.cli import main as cli_main
    from numdp.units import MVV2E

    shutil.copyfile(HERE / "data" / "tensorflow" / "tf_one_side_f64.dp", tmp_path / "model.dp")
    water = (HERE / "data" / "lammps_nh" / "water.data").read_text()
    (tmp_path / "water.data").write_text(water[:water.index("Velocities")])   # at rest: v_0 = 0
    dt = 0.0005
    (tmp_path / "in.lammps").write_text(
        "units metal\nboundary p p p\natom_style atomic\nread_data water.data\npair_style deepmd model.dp\n"
        f"pair_coeff * *\nneighbor 1.0 bin\ntimestep {dt}\nthermo 1\nmin_style cg\n"
        "dump 1 all custom 1 d.dump id type x y z fx fy fz\nfix 1 all setforce 0 0 NULL\nminimize 0 0 3 100\n"
        "unfix 1\nfix 2 all nve\nrun 1\n")
    monkeypatch.chdir(tmp_path)
    assert cli_main(["lmp", "-i", "in.lammps"]) == 0
    frames = _dump_frames(tmp_path / "d.dump")
    (s0, a0), (s1, a1) = frames[-2], frames[-1]
    assert s1 == s0 + 1
    masses = np.where(a1[:, 0] == 1, 15.999, 1.008)[:, None]
    predicted = dt ** 2 * a1[:, 4:7] / (2 * masses * MVV2E)
    moved = a1[:, 1:4] - a0[:, 1:4]
    assert np.abs(moved - predicted).max() <= 0.1 * np.abs(predicted).max(), \
        (np.abs(moved - predicted).max(axis=0), np.abs(predicted).max())


def _dump_frames(path: Path) -> list[tuple[int, np.ndarray]]:
    """(step, the columns after id (N, k) in id order) of each frame of a LAMMPS dump."""
    lines = path.read_text().splitlines()
    frames, i = [], 0
    while i < len(lines):
        step = int(lines[i + 1])
        n = int(lines[i + 3])
        rows = np.array([[float(w) for w in s.split()] for s in lines[i + 9:i + 9 + n]])
        frames.append((step, rows[np.argsort(rows[:, 0]), 1:]))
        i += 9 + n
    return frames


def test_read_restart_of_a_run_without_dump_keeps_lammps_triclinic_dump_header(tmp_path, monkeypatch):
    """A data file with an `xy xz yz` line makes LAMMPS' box triclinic, and its restart file keeps it so:
    a dump after read_restart writes `BOX BOUNDS xy xz yz pp pp pp`.  _checkpoint_output read it
    from the first run's [output] triclinic_bounds, written only when that run had a dump: a first
    run without one gave the continued dump the orthogonal header."""
    from numdp.cli import main as cli_main
    from numdp.lammps.translate import translate

    shutil.copyfile(HERE / "data" / "autotest3" / "eos_conf.lmp", tmp_path / "conf.lmp")   # has xy xz yz
    shutil.copyfile(HERE.parent / "inputs" / "cu" / "model.h5", tmp_path / "cu.h5")
    head = "units metal\nboundary p p p\natom_style atomic\n"
    tail = "pair_style deepmd cu.h5\npair_coeff * *\nmass 1 63.546\nfix 1 all nve\n"
    (tmp_path / "in.lammps").write_text(head + "read_data conf.lmp\n" + tail
                                        + "velocity all create 300 1\nrestart 2 r\nrun 2\n")
    monkeypatch.chdir(tmp_path)
    assert cli_main(["lmp", "-i", "in.lammps"]) == 0
    again = head + "read_restart r.2\n" + tail + "dump 1 all custom 1 d.dump id type x y z\nrun 4 upto\n"
    tables = translate(again, "in.lammps", {}, tmp_path).tables
    assert tables["output"].get("triclinic_bounds") is True
