"""DP-GEN 0.14.0's autotest (PyPI) end to end with `numdp lmp`: fcc Cu, the scripts its `make` wrote.

tests/data/autotest3 (tools/make_autotest3_fixtures.py): relax.in, the relaxation script of
`dpgen autotest make relax.json` (make_lammps_equi with change_box: box/relax iso, aniso, tri, and
between the minimizes `undump 1`, `reset_timestep 0`, the same `dump 1 ...` and `dump_modify 1
append yes`, which d5ce577f of tests/test_sweep_autotest2.py does not write); relax_conf.lmp, the
4-atom cubic cell (a = 3.61 Å) with the `xy xz yz` line DP-GEN's data files always have; eos.in /
eos_conf.lmp, the EOS task at 0.9 V0 of the relaxed cell (one minimize, fixed box); dpk.json,
DeePMD-kit 3.2's figures for the model (its DP calculator): the lattice constant a0, the energy per
atom e0 there, the EOS cell's energy and pressure tensor.  The model is inputs/cu/model.h5, whose
DeePMD-kit conversion gave those figures.

DP-GEN's Lammps.compute reads dump.relax: for each frame the step, the three BOX BOUNDS lines as
`lo hi tilt` (LAMMPS' triclinic header: its box is triclinic whenever the data file has an `xy xz
yz` line, zero tilts too), the scaled positions; then the first thermo line of each step (pe,
pxx..pyz); CONTCAR is the last frame.  `dpgen_compute` (tests/test_sweep_autotest2.py) does it.

Tolerances.  numdp evaluates the model as DeePMD-kit to relative 1e-10 (tests/test_oracle.py) on
energies and virials whose terms are ~0.2 eV per atom (the energy bias): ETOL = 1e-10 eV per atom.
The relaxed cell: cg stops at ftol 1e-10 eV/Å on a force that includes the cell's, V dP; with the
bulk modulus B > 0.5 eV/Å³ the strain is then off by < (1e-10 + ETOL) / (B V) with V = 46 Å³,
< 1e-11: ATOL = 1e-10 Å on a0.  The thermo lines print pe with 6 decimals and pressures with 3:
half a unit of the last digit more.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from numdp.errors import InputError
from numdp.lammps.translate import LAMMPS_NKTV2P, translate
from numdp.units import EV_PER_A3_TO_BAR

from test_sweep_autotest import parsed
from test_sweep_autotest2 import dpgen_compute, dump_steps, run_task

HERE = Path(__file__).parent / "data" / "autotest3"
MODEL = Path(__file__).parent.parent / "inputs" / "cu" / "model.h5"
DPK = json.loads((HERE / "dpk.json").read_text())
ETOL = 1e-10    # eV per atom
ATOL = 1e-10    # Å
PE_PRINT = 0.5e-6   # eV: half the last digit of numdp's thermo pe
P_PRINT = 0.5e-3    # bar


def _folder(tmp_path: Path, script: str, conf: str) -> Path:
    shutil.copy(MODEL, tmp_path / "model.h5")
    shutil.copy(HERE / conf, tmp_path / "conf.lmp")
    shutil.copy(HERE / script, tmp_path / "in.lammps")
    return tmp_path


def dpgen_frames(dump: str) -> list[tuple[list[float], list[list[float]]]]:
    """(box diagonal xx yy zz, scaled positions) of each frame as Lammps.compute reads them: the
    bounds lines as `lo hi tilt` (an orthogonal header's two numbers raise IndexError there)."""
    lines, out = dump.split("\n"), []
    for k, ln in enumerate(lines):
        if ln != "ITEM: TIMESTEP":
            continue
        natoms = int(lines[k + 3])
        (xlo, xhi, xy), (ylo, yhi, xz), (zlo, zhi, yz) = ([float(w) for w in lines[k + 5 + d].split()[:3]]
                                                          for d in range(3))
        xx = xhi - max(0, xy, xz, xy + xz) - (xlo - min(0, xy, xz, xy + xz))
        yy = yhi - max(0, yz) - (ylo - min(0, yz))
        frac = [[float(w) for w in lines[k + 9 + i].split()[2:5]] for i in range(natoms)]
        out.append(([xx, yy, zhi - zlo], frac))
    return out


@pytest.fixture(scope="module")
def relaxed(tmp_path_factory):
    return run_task(_folder(tmp_path_factory.mktemp("relax"), "relax.in", "relax_conf.lmp"))


def test_dpgen_014_relaxation_runs(relaxed):
    """The script runs (it was refused at `undump 1`); the prints give DeePMD-kit's a0 and e0."""
    log, _ = relaxed
    p = parsed(log)
    assert p["Total number of atoms"] == 4
    assert abs(p["Final energy per atoms"] - DPK["e0"]) <= ETOL
    v0 = DPK["a0"] ** 3 / 4
    assert abs(p["Final volume per atoms"] - v0) <= 3 * v0 * ATOL / DPK["a0"]
    assert abs(p["Final Base area"] - DPK["a0"] ** 2) <= 2 * DPK["a0"] * ATOL


def test_dpgen_reads_the_relaxation(relaxed):
    """Lammps.compute reads every frame: triclinic bounds (the data file has `xy xz yz`), a
    thermo line for each step (numdp's steps go on over reset_timestep 0, so each step is one
    frame's); the last frame, DP-GEN's CONTCAR, is the fcc cell of DeePMD-kit's a0."""
    log, dump = relaxed
    steps = dump_steps(dump)
    assert len(steps) == 4 and steps == sorted(set(steps))   # step 0 and each minimize's last
    frames = dpgen_frames(dump)
    read = dpgen_compute(log, dump)
    assert len(read) == len(frames) == 4
    box, frac = frames[-1]
    assert max(abs(x - DPK["a0"]) for x in box) <= ATOL
    fcc = [(0, 0, 0), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0)]   # by symmetry the atoms do not move:
    for got, want in zip(sorted(map(tuple, frac)), fcc):   # round-off of the ~50 cell scalings only
        assert got == pytest.approx(want, abs=1e-13)
    energy, stress = read[-1]
    assert abs(energy - 4 * DPK["e0"]) <= 4 * ETOL + PE_PRINT
    assert max(abs(s) for s in stress) <= P_PRINT / 1000   # kbar, the relaxed cell at 0 bar


def test_dpgen_reads_the_eos_task(tmp_path):
    """DP-GEN's EOS task at 0.9 V0: the energy and stress it reads are DeePMD-kit's."""
    log, dump = run_task(_folder(tmp_path, "eos.in", "eos_conf.lmp"))
    assert all(len(frame[0]) == 3 for frame in dpgen_frames(dump))
    energy, stress = dpgen_compute(log, dump)[-1]
    assert abs(energy - DPK["eos_energy"]) <= 4 * ETOL + PE_PRINT
    # the thermo lines in numdp's bar (CODATA 2018), the prints in LAMMPS' (nktv2p): 8.4e-8 apart,
    # as docs/lammps-input.md says
    thermo_bar = [p * EV_PER_A3_TO_BAR for p in DPK["eos_pressure_ev_a3"]]   # ~1.6e5 bar
    for mine, ref in zip(stress, thermo_bar):
        assert abs(1000 * mine - ref) <= 1e-10 * max(map(abs, thermo_bar)) + P_PRINT
    bar = [p * LAMMPS_NKTV2P for p in DPK["eos_pressure_ev_a3"]]
    p = parsed(log)
    assert abs(p["Final energy per atoms"] - DPK["eos_energy"] / 4) <= ETOL
    assert max(abs(a - b) for a, b in zip(p["stress"], bar)) <= 1e-10 * max(map(abs, bar))


def _translate(tmp_path: Path, text: str, conf: str = "relax_conf.lmp"):
    folder = _folder(tmp_path, "relax.in", conf)
    return translate(text, "in.lammps", {}, folder)


@pytest.mark.parametrize("with_tilts", [True, False])
def test_triclinic_bounds_follow_the_data_file(tmp_path, with_tilts):
    """LAMMPS' box is triclinic when the data file has an `xy xz yz` line (DP-GEN's always do),
    orthogonal without one: the dump's BOX BOUNDS header follows, zero tilts or not."""
    text = (HERE / "eos.in").read_text()
    folder = _folder(tmp_path, "eos.in", "eos_conf.lmp")
    if not with_tilts:
        conf = folder / "conf.lmp"
        conf.write_text(re.sub(r".* xy xz yz\n", "", conf.read_text()))
    tables = translate(text, "in.lammps", {}, folder).tables
    assert tables["output"].get("triclinic_bounds", False) is with_tilts


def test_reset_timestep_after_minimize_translated(tmp_path):
    """The three minimizes: numdp's steps go on (a notice says so); the dump is one trajectory."""
    tr = _translate(tmp_path, (HERE / "relax.in").read_text())
    assert len(tr.later) == 2
    assert any(n.startswith("reset_timestep 0") and "numdp's steps go on" in n for n in tr.notices)
    for tables in [tr.tables] + [t for t, _ in tr.later]:
        assert tables["output"]["trajectory"] == "dump.relax"


REDUMP = ("undump          1\nreset_timestep  0\ndump            1 all custom 100 dump.relax id type xs ys zs "
          "fx fy fz\ndump_modify     1 append yes\n")


DUMP = "dump            1 all custom 100 dump.relax id type xs ys zs fx fy fz\n"


@pytest.mark.parametrize("bad, expected", [
    (REDUMP.replace("dump_modify     1 append yes\n", ""),
     r"minimize: dump 1 after a run without `dump_modify 1 append yes`"),
    (REDUMP.replace(DUMP + "dump_modify     1 append yes\n", ""), r"minimize: undump 1 \(line \d+\) after a run"),
    (REDUMP.replace("dump.relax", "dump.other"), r"dump: dump after a run differs from dump 1"),
    (REDUMP.replace("undump          1\n", ""), r"reset_timestep: reset_timestep with dump 1 defined \(LAMMPS"),
    ("dump_modify     1 append yes\n", r"dump_modify: after a minimize, numdp lmp accepts only"),
    (REDUMP.replace(DUMP + "dump_modify     1 append yes\n", "dump_modify     1 append yes\n" + DUMP),
     r"dump_modify: dump_modify append after undump 1: give the same `dump 1 ...` first"),
])
def test_redump_mistakes_refused(tmp_path, bad, expected):
    """After a minimize numdp's dump goes on: the same dump again with append yes, or a one-line
    refusal (a minimize with the dump closed, another file, no append yes, no undump)."""
    text = (HERE / "relax.in").read_text()
    assert REDUMP in text and DUMP in REDUMP
    with pytest.raises(InputError, match=expected) as err:
        _translate(tmp_path, text.replace(REDUMP, bad, 1))
    assert "\n" not in str(err.value)


def test_reset_timestep_after_md_still_refused(tmp_path):
    """After an MD run the step counts (ramps, restart files): reset_timestep to another step is refused."""
    text = (HERE / "eos.in").read_text().replace("min_style       cg\nminimize        0.000000e+00 1.000000e-10 "
                                                 "5000 500000\n", "fix 2 all nve\nrun 2\nreset_timestep 0\n")
    with pytest.raises(InputError, match=r"reset_timestep: reset_timestep 0: numdp lmp cannot renumber"):
        translate(text, "in.lammps", {}, _folder(tmp_path, "eos.in", "eos_conf.lmp"))
