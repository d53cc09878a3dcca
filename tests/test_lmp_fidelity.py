"""numdp lmp's observable output against real LAMMPS where the two were seen to differ
(tests/data/lmp_fidelity/, tools/make_lmp_fidelity_fixtures.py): FIRE's count of force evaluations
and its next-to-last energy, the dump frames at a minimize's end, and a data file's box that does
not start at 0 (dump bounds and coordinates, the thermo keywords xlo ... zhi after the run).

Bounds.  Positions: the forces agree with LAMMPS' to 1e-11 eV/Å (tests/test_sweep_lammps_nh.py),
which over 10 steps of 0.5 fs (t = 0.005 ps) moves an H atom by at most δF/m t² / 2 =
1e-11 / 1.008 * 9648.5 * 0.005² / 2 ~ 1.2e-12 Å; the start positions agree to their 17 digits
(2e-15 Å) and LAMMPS prints %.15g (1e-14 Å at 15 Å): POS_TOL = 1e-11 Å.  The box: lo + length
in both codes, one rounding of 15 Å (2e-15 Å) apart and LAMMPS' %.16e: BOX_TOL = 1e-13 Å.
Energies: numdp prints the summary's energies with 10 significant digits (3e4 eV: 5e-6 eV), over
a FIRE path whose per-iteration difference is LAMMPS' force round-off (1e-11 eV/Å) times the
step (< dmax = 0.1 Å) per atom: ENERGY_TOL = 1e-5 eV.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from numdp.cli import main as cli_main
from numdp.io.h5md import read_frame
from numdp.io.trajectory import LammpsDumpWriter
from numdp.lammps.translate import translate
from numdp.md.reporters import TrajectoryReporter

from lammps_log import data_file, thermo_blocks

DATA = Path(__file__).parent / "data"
FIXTURES = DATA / "lmp_fidelity"
MODEL = DATA / "tensorflow" / "tf_one_side_f64.dp"
WATER = DATA / "lammps_nh" / "water.data"
POS_TOL = 1e-11     # Å (module docstring)
BOX_TOL = 1e-13     # Å
ENERGY_TOL = 1e-5   # eV

HEAD = """units metal
boundary {boundary}
atom_style atomic
read_data {data}
pair_style deepmd model.dp
pair_coeff * *
neighbor 1.0 bin
timestep 0.0005
"""
LATTICE = ("units metal\nboundary p p p\natom_style atomic\nlattice fcc 5.0\nregion box block -1 2 0 3 2 5\n"
           "create_box 2 box\ncreate_atoms 1 box\nmass 1 15.999\nmass 2 1.008\npair_style deepmd model.dp\n"
           "pair_coeff * *\nneighbor 1.0 bin\ntimestep 0.0005\n")   # (the tool's LATTICE)


def _run(tmp_path: Path, data: Path | None, body: str, monkeypatch, boundary: str = "p p p") -> str:
    """numdp lmp on HEAD (the data file `data`, a periodic box unless `boundary` says otherwise;
    None: LATTICE's crystal) + body in tmp_path; its log's text."""
    shutil.copyfile(MODEL, tmp_path / "model.dp")
    if data is None:
        head = LATTICE
    else:
        shutil.copyfile(data, tmp_path / data.name)
        head = HEAD.format(boundary=boundary, data=data.name)
    (tmp_path / "in.lammps").write_text(head + body)
    monkeypatch.chdir(tmp_path)
    assert cli_main(["lmp", "-i", "in.lammps"]) == 0
    return (tmp_path / "log.lammps").read_text()


@pytest.mark.parametrize("case", ["fire_maxiter", "fire_halfstep", "fire_no_halfstep", "fire_long"])
def test_fire_counts_evaluations_as_lammps(case, tmp_path, monkeypatch):
    """LAMMPS' FIRE evaluates the forces after every reset of the velocities (the first iteration,
    every P <= 0, with a half step back or without) and counts it: 5 iterations from rest make 6
    evaluations.  numdp counted those only after a half step back (5 5).  Its next-to-last energy
    is the one before the half step back (fire_halfstep's last iteration is such a reset).
    fire_long: 120 iterations, LAMMPS' 127 evaluations and energies; numdp stopped at iteration
    44, whose half step back moved an H atom 1.56 A, with its MD safety stop (a move larger than
    the skin), which LAMMPS does not have and a minimization does not need."""
    ref = np.load(FIXTURES / f"{case}.npz")
    log = _run(tmp_path, WATER, str(ref["body"]), monkeypatch)
    assert f"Iterations, force evaluations = {int(ref['iterations'])} {int(ref['evaluations'])}\n" in log
    energies = re.search(r"Energy initial, next-to-last, final = (\S+) (\S+) (\S+) eV", log).groups()
    assert np.abs(np.array([float(e) for e in energies]) - ref["energies"]).max() <= ENERGY_TOL


class _Step:
    """The one thing TrajectoryReporter's end decision reads of a Snapshot: its step."""

    def __init__(self, step: int):
        self.step = step


@pytest.mark.parametrize("case", ["cg_maxiter", "fire_maxiter", "cg_etol", "fire_etol"])
def test_a_minimize_ends_its_dump_as_lammps(case, monkeypatch):
    """LAMMPS writes a minimize's frames every N steps and the step it stopped at when that was
    before its last iteration (etol: 1 and 22, off the cadence), none more at maxiter (5, with
    N = 2).  TrajectoryReporter.write_end without end_frame gives LAMMPS' steps; numdp run's
    own minimization (without it) also writes the last step at maxiter."""
    ref = np.load(FIXTURES / f"{case}.npz")
    every = int(re.search(r"^dump 1 all custom (\d+)", str(ref["body"]), re.M).group(1))
    maxiter = int(re.search(r"^minimize \S+ \S+ (\d+)", str(ref["body"]), re.M).group(1))
    stop = int(ref["iterations"])
    for lammps in (True, False):
        written = []
        monkeypatch.setattr(TrajectoryReporter, "report", lambda self, s: written.append(s.step))
        reporter = TrajectoryReporter(None, every, "d.dump", end_frame=not lammps)
        for step in range(stop + 1):
            if reporter.wants(step):
                reporter.report(_Step(step))
                reporter.last_step = step
        reporter.write_end(_Step(stop), maxiter)
        expected = ref["frames"].tolist() if lammps else sorted(set(ref["frames"].tolist()) | {stop})
        assert written == expected


def _dump_frame(path: Path):
    """(bounds (3, 3), the coordinate columns of atoms 1..k (k, 3)) of a one-frame text dump."""
    lines = path.read_text().splitlines()
    rows = [[float(v) for v in lines[5 + k].split()] for k in range(3)]
    bounds = np.array([r + [0.0] * (3 - len(r)) for r in rows])
    atoms = np.array(sorted([float(v) for v in r.split()] for r in lines[9:]))[:, 2:5]
    return bounds, atoms


@pytest.mark.parametrize("box", ["ortho", "tri"])
def test_a_box_off_the_origin_is_dumped_as_lammps(box, tmp_path, monkeypatch):
    """A data file's box from xlo = -5.3, ylo = 2.0, zlo = 0.7 (and tilted): numdp holds it from 0;
    the translation's origin makes its dump LAMMPS' (BOX BOUNDS, x y z and xu yu zu shifted by
    LAMMPS' corner, dump atom's xs ys zs as they are), and `print` after the run gives LAMMPS'
    xlo ... zhi.  Without the origin the bounds and coordinates were 5.3 Å (x) off."""
    ref = np.load(FIXTURES / f"origin_{box}.npz")
    body = ("thermo 5\nfix 1 all nve\nrun 10\n"
            + "".join(f"variable {k} equal {k}\nprint \"{k} ${{{k}}}\"\n" for k in ("xlo", "xhi", "ylo", "yhi",
                                                                                   "zlo", "zhi")))
    _run(tmp_path, FIXTURES / f"{box}.data", body, monkeypatch)
    out = (tmp_path / "log.lammps").read_text()
    titles = ["Step", "PotEng", "Xlo", "Xhi", "Ylo", "Yhi", "Zlo", "Zhi", "Lx", "Ly", "Lz"]
    last = ref["thermo"][-1]
    for k, key in enumerate(("xlo", "xhi", "ylo", "yhi", "zlo", "zhi")):
        printed = float(re.search(rf"^{key} (\S+)$", out, re.M).group(1))
        assert abs(printed - last[titles.index(key.capitalize())]) <= BOX_TOL, key
    origin = translate(HEAD.format(boundary="p p p", data=f"{box}.data") + body, "in.lammps", {}, tmp_path).origin
    frame = read_frame(tmp_path / "checkpoint.h5")
    assert frame["step"] == 10
    columns = {"x": ("id", "type", "x", "y", "z"), "xu": ("id", "type", "xu", "yu", "zu"),
               "atom": ("id", "type", "xs", "ys", "zs")}
    n = ref["x_atoms"].shape[1]
    for dump, cols in columns.items():
        path = tmp_path / f"{dump}.dump"
        w = LammpsDumpWriter(path, frame["species"], frame["masses"], frame["type_map"], ("position",), None,
                             columns=cols, triclinic=box == "tri", origin=origin)
        w.append(10, 0.005, frame["positions"], None, None, frame["box"], {})
        w.close()
        bounds, atoms = _dump_frame(path)
        assert ref[f"{dump}_steps"][-1] == 10
        assert np.abs(bounds - ref[f"{dump}_bounds"][-1]).max() <= BOX_TOL, dump
        d = atoms[:n] - ref[f"{dump}_atoms"][-1]
        h = np.asarray(frame["box"], float)   # (the data file's cell: LAMMPS' restricted form already)
        if dump == "atom":
            d -= np.round(d)   # (LAMMPS wraps at its reneighbouring only, numdp every frame)
        elif dump == "x":
            f = np.linalg.solve(h.T, d.T).T
            d = (f - np.round(f)) @ h
        assert np.abs(d).max() <= (POS_TOL / 12.0 if dump == "atom" else POS_TOL), dump


def _last_frame(path: Path):
    """`_dump_frame` of the last frame of the dump `path` (copied beside it as PATH.last)."""
    text = path.read_text()
    last = path.with_suffix(".last")
    last.write_text(text[text.rindex("ITEM: TIMESTEP"):])
    return _dump_frame(last)


def _dump_steps(path: Path) -> list[int]:
    lines = path.read_text().splitlines()
    return [int(lines[k + 1]) for k, ln in enumerate(lines) if ln == "ITEM: TIMESTEP"]


@pytest.mark.parametrize("case", ["cg_maxiter", "fire_maxiter", "cg_etol", "fire_etol"])
def test_numdp_lmp_dumps_a_minimize_at_lammps_steps(case, tmp_path, monkeypatch):
    """End to end: numdp lmp's dump of the case's minimize holds LAMMPS' frames (the maxiter
    cases' last step, off the cadence, left out; the etol cases' stop step written)."""
    ref = np.load(FIXTURES / f"{case}.npz")
    log = _run(tmp_path, WATER, str(ref["body"]), monkeypatch)
    assert f"Iterations, force evaluations = {int(ref['iterations'])} " in log
    assert _dump_steps(tmp_path / "d.dump") == ref["frames"].tolist()


ORIGIN_FIXES = {"ortho": "fix 1 all nve", "tri": "fix 1 all nve",
                "npt": "fix 1 all npt temp 330 330 0.05 iso 20000 20000 0.05",
                "npt0": "fix 1 all npt temp 330 330 0.05 iso 20000 20000 0.05",
                "lattice": "fix 1 all npt temp 330 330 0.05 iso 20000 20000 0.05"}   # (the tool's)
ORIGIN_DATA = {"npt": FIXTURES / "ortho.data", "npt0": WATER, "lattice": None}   # (the tool's ORIGIN_DATA)


@pytest.mark.parametrize("box", ["ortho", "tri", "npt", "npt0", "lattice"])
@pytest.mark.parametrize("d", ["x", "xu"])
def test_numdp_lmp_dumps_a_box_off_the_origin_as_lammps(box, d, tmp_path, monkeypatch):
    """End to end: numdp lmp's own dump (custom x y z, or xu yu zu, every 5 steps) of the box from
    xlo = -5.3, ylo = 2.0, zlo = 0.7 holds LAMMPS' steps, BOX BOUNDS and coordinates at the run's
    last step (the translation passes LAMMPS' box centre to the writer: [output] box_center);
    `npt`: the orthogonal box under fix npt, whose corner LAMMPS moves with the box about its
    centre; `npt0`: water.data's box from 0 under the same fix, whose corner LAMMPS moves as well
    (0.130 Å in 10 steps: numdp lmp kept it at 0 before 2026-12-07); `lattice`: create_box's fcc
    crystal from a region off the origin under that fix (numdp lmp dumped it from 0 before)."""
    ref = np.load(FIXTURES / f"origin_{box}.npz")
    spec = {"x": "custom 5 x.dump id type x y z", "xu": "custom 5 xu.dump id type xu yu zu"}[d]
    data = ORIGIN_DATA.get(box, FIXTURES / f"{box}.data")
    _run(tmp_path, data, f"dump {d} all {spec}\n{ORIGIN_FIXES[box]}\nrun 10\n", monkeypatch)
    h = np.asarray(read_frame(tmp_path / "checkpoint.h5")["box"], float)
    n = ref["x_atoms"].shape[1]
    path = tmp_path / f"{d}.dump"
    assert _dump_steps(path) == ref[f"{d}_steps"].tolist() == [0, 5, 10]
    bounds, atoms = _last_frame(path)
    assert np.abs(bounds - ref[f"{d}_bounds"][-1]).max() <= BOX_TOL
    diff = atoms[:n] - ref[f"{d}_atoms"][-1]
    if d == "x":   # (LAMMPS wraps at its reneighbouring only, numdp every frame)
        f = np.linalg.solve(h.T, diff.T).T
        diff = (f - np.round(f)) @ h
    assert np.abs(diff).max() <= POS_TOL


@pytest.mark.parametrize("box", ["ortho", "tri", "npt", "npt0", "lattice"])
def test_thermo_and_write_data_of_a_box_off_the_origin_as_lammps(box, tmp_path, monkeypatch):
    """The thermo columns xlo ... zhi at every thermo step and write_data's bounds, coordinates
    and image flags after the run are LAMMPS' for the box from (-5.3, 2.0, 0.7) (numdp's from 0
    plus LAMMPS' corner; under fix npt the corner moves with the box about its centre).  Both were
    numdp's from 0 (5.3 A off in x)."""
    ref = np.load(FIXTURES / f"origin_{box}.npz")
    data = ORIGIN_DATA.get(box, FIXTURES / f"{box}.data")
    log = _run(tmp_path, data, "thermo 5\nthermo_style custom step pe xlo xhi ylo yhi zlo zhi lx ly lz\n"
               f"thermo_modify format float %.15g\n{ORIGIN_FIXES[box]}\nrun 10\nwrite_data final.data\n",
               monkeypatch)
    (titles, rows), = thermo_blocks(log)
    assert rows[:, 0].tolist() == ref["thermo"][:, 0].tolist() == [0, 5, 10]
    for key in ("Xlo", "Xhi", "Ylo", "Yhi", "Zlo", "Zhi"):   # numdp prints 6 decimals (its own formats)
        k = titles.index(key)
        assert np.abs(rows[:, k] - ref["thermo"][:, k]).max() <= 0.5e-6 + BOX_TOL, key
    bounds, x, image = data_file(tmp_path / "final.data")
    assert np.abs(bounds - ref["data_bounds"]).max() <= BOX_TOL
    n = ref["data_x"].shape[0]
    # an atom within round-off of a face may be wrapped to the other one by either code
    unwrapped = x[:n] + image[:n] @ np.asarray(read_frame(tmp_path / "checkpoint.h5")["box"], float)
    lammps = ref["data_x"] + ref["data_image"] @ np.asarray(read_frame(tmp_path / "checkpoint.h5")["box"], float)
    assert np.abs(unwrapped - lammps).max() <= POS_TOL
    # wrapped alike, but for an atom on a face (the lattice's: one code may hold it on the other face)
    h = np.asarray(read_frame(tmp_path / "checkpoint.h5")["box"], float)
    on_face = np.abs(np.linalg.solve(h.T, (ref["data_x"] - ref["data_bounds"][:3, 0]).T).T % 1.0 - 0.5) \
        >= 0.5 - POS_TOL
    assert np.all((np.abs(x[:n] - ref["data_x"]) <= POS_TOL) | on_face)
    assert box == "lattice" or not on_face.any()


def test_a_box_off_the_origin_keeps_its_corner_after_read_restart(tmp_path, monkeypatch):
    """A script continued from write_restart's checkpoint (read_restart) dumps and prints the box
    from LAMMPS' corner, which LAMMPS' restart file keeps: numdp reads it from the [output]
    box_center of the run input the checkpoint stores.  Under fix nve the box does not change, so
    the continued dump's bounds are LAMMPS' of the first run."""
    ref = np.load(FIXTURES / "origin_ortho.npz")
    _run(tmp_path, FIXTURES / "ortho.data", "fix 1 all nve\nrun 10\nwrite_restart ck.h5\n", monkeypatch)
    (tmp_path / "in2.lammps").write_text(
        "units metal\nboundary p p p\natom_style atomic\nread_restart ck.h5\npair_style deepmd model.dp\n"
        "pair_coeff * *\nneighbor 1.0 bin\ntimestep 0.0005\ndump x all custom 5 x2.dump id type x y z\n"
        "thermo 5\nthermo_style custom step pe xlo xhi\nfix 1 all nve\nrun 5\n")
    assert cli_main(["lmp", "-i", "in2.lammps"]) == 0
    text = (tmp_path / "x2.dump").read_text()
    first = tmp_path / "x2.first"
    first.write_text(text[:text.index("ITEM: TIMESTEP", 1)])
    bounds, _ = _dump_frame(first)
    assert _dump_steps(first) == [10]
    assert np.abs(bounds - ref["x_bounds"][-1]).max() <= BOX_TOL
    titles, rows = thermo_blocks((tmp_path / "log.lammps").read_text())[-1]
    assert rows[0, 0] == 10 and abs(rows[0, titles.index("Xlo")] - ref["thermo"][-1, 2]) <= 0.5e-6 + BOX_TOL


def test_an_open_system_off_the_origin_is_dumped_and_written_as_lammps(tmp_path, monkeypatch):
    """`boundary f f f` with a data file's box from -10 to 25 Å (tests/data/lmp_fidelity/
    cluster.data, 24 atoms): numdp holds the open system without a cell, its positions from the
    box's corner at 0; the translation gives LAMMPS' fixed corner ([output] box_corner), so the
    dumps' x y z and xu yu zu and write_data's box and coordinates are LAMMPS' (before 2026-12-07
    the dumps were 10 Å off and write_data refused a system without a cell).  The dumps' bounds
    stay numdp's shrink-wrapped ones (docs/lammps-input.md), around LAMMPS' atoms."""
    ref = np.load(FIXTURES / "origin_cluster.npz")
    n = ref["x_atoms"].shape[1]
    for d, columns in (("x", "x y z"), ("xu", "xu yu zu")):   # (numdp lmp writes one dump a run)
        work = tmp_path / d
        work.mkdir()
        _run(work, FIXTURES / "cluster.data", f"dump {d} all custom 5 {d}.dump id type {columns}\n"
             "fix 1 all nve\nrun 10\nwrite_data final.data\n", monkeypatch, boundary="f f f")
        path = work / f"{d}.dump"
        assert _dump_steps(path) == ref[f"{d}_steps"].tolist() == [0, 5, 10]
        bounds, atoms = _last_frame(path)
        assert np.abs(atoms[:n] - ref[f"{d}_atoms"][-1]).max() <= POS_TOL, d
        assert np.all(bounds[:, 0] < atoms.min(axis=0)) and np.all(bounds[:, 1] > atoms.max(axis=0)), d
    bounds, x, image = data_file(tmp_path / "x" / "final.data")
    assert np.abs(bounds - ref["data_bounds"]).max() <= BOX_TOL
    assert np.abs(x[:n] - ref["data_x"]).max() <= POS_TOL
    assert not image.any() and not ref["data_image"].any()


def test_an_open_systems_box_keywords_after_the_run_are_lammps(tmp_path, monkeypatch):
    """xlo ... zhi and lx ly lz in formulas after the run of the open system (boundary f f f, box
    -10..25 Å): LAMMPS' fixed box (its thermo at step 10), which numdp lmp refused before
    2026-12-07 (numdp holds the system without a cell; Translation.open_cell)."""
    ref = np.load(FIXTURES / "origin_cluster.npz")
    keys = ("xlo", "xhi", "ylo", "yhi", "zlo", "zhi", "lx", "ly", "lz")
    body = "fix 1 all nve\nrun 10\n" + "".join(f"variable {k} equal {k}\nprint \"{k} ${{{k}}}\"\n" for k in keys)
    out = _run(tmp_path, FIXTURES / "cluster.data", body, monkeypatch, boundary="f f f")
    titles = ["Step", "PotEng", "Xlo", "Xhi", "Ylo", "Yhi", "Zlo", "Zhi", "Lx", "Ly", "Lz"]
    for k in keys:
        printed = float(re.search(rf"^{k} (\S+)$", out, re.M).group(1))
        assert abs(printed - ref["thermo"][-1][titles.index(k.capitalize())]) <= BOX_TOL, k
