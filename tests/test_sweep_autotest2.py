"""DP-GEN autotest's relaxation (make_lammps_equi, change_box=True) through `numdp lmp`, against real LAMMPS.

tests/data/autotest2/equi_relax.in is the script DP-GEN writes for its relaxation task: `fix 1 all
box/relax iso 0.0` + `minimize`, then aniso, then tri, three minimizations in one script, 3
iterations each; equi_relax.log and equi_relax.dump what LAMMPS 22 Jul 2025 with DeePMD-kit 3.2's
pair_style deepmd wrote for it (tools/make_autotest2_fixtures.py), for the water model
tf_one_side_f64.pb and conf.lmp, the 192-atom triclinic water_tri.data without velocities (as
dpdata writes DP-GEN's conf.lmp: the atoms at rest, so LAMMPS' pressures are the virial's).

DP-GEN reads the result with auto_test/Lammps.py `compute` (d5ce577f, lines 290-427): the steps
of dump.relax's frames ("ITEM: TIMESTEP", the next line), then for each the first line of
log.lammps whose first word is that step and whose words are all numbers: pe = line[1], the
stress pxx pyy pzz pxy pxz pyz = line[2:8] (kbar after / 1000); it needs "Total wall time:" in the
log.  `dpgen_compute` below reproduces those lines; the prints (Final energy per atoms, ...) are
read as in tests/test_sweep_autotest.py (`parsed`).

Tolerances.  numdp evaluates the model as DeePMD-kit to relative 1e-10; over 9 cg iterations with
the cell relaxed numdp's minimizer follows LAMMPS' to PE_TOL = 1e-6 eV (tests/test_minimize_cg.py,
tests/test_box_relax.py), and the cell to the strain of that energy.  The thermo columns are
printed with LAMMPS' 8 significant digits and numdp's fixed decimals: half a unit of the coarser
digit, plus PE_TOL over the volume for a pressure.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from numdp.cli import main as cli_main
from numdp.errors import InputError
from numdp.lammps.translate import LAMMPS_NKTV2P, translate

from test_sweep_autotest import parsed

DATA = Path(__file__).parent / "data"
HERE = DATA / "autotest2"
MODEL = DATA / "tensorflow" / "tf_one_side_f64.pb"   # type_map O H
CONF = HERE / "conf.lmp"        # 192 atoms, triclinic, no velocities
PE_TOL = 1e-6   # eV
COLUMNS = ["step", "pe", "pxx", "pyy", "pzz", "pxy", "pxz", "pyz", "lx", "ly", "lz", "vol"]


def dump_steps(text: str) -> list[int]:
    """Lammps.compute's dumptime: the line after each "ITEM: TIMESTEP"."""
    lines = text.split("\n")
    return [int(lines[k + 1]) for k, ln in enumerate(lines) if ln == "ITEM: TIMESTEP"]


def thermo_line(text: str, step: int) -> list[float] | None:
    """Lammps.compute's thermo line of `step`: the first line whose first word is str(step) and whose
    words all parse as floats (None: there is none; Lammps.compute then reads nothing)."""
    for ln in text.split("\n"):
        line = ln.split()
        if len(line) and str(step) == line[0]:
            try:
                return [float(w) for w in line]
            except ValueError:
                continue
    return None


def dpgen_compute(log: str, dump: str) -> list[tuple[float, list[float]]]:
    """(energy, [pxx, pyy, pzz, pxy, pxz, pyz] in kbar) of each dump frame, as Lammps.compute reads them."""
    assert "Total wall time:" in log
    out = []
    for step in dump_steps(dump):
        line = thermo_line(log, step)
        if line is not None:
            out.append((line[1], [w / 1000.0 for w in line[2:8]]))
    return out


def _digit(v: float) -> float:
    """Half a unit of LAMMPS' 8th significant digit of `v`."""
    return 0.5 * 10.0 ** (len(str(int(abs(v)))) - 8) if abs(v) >= 1 else 0.5e-8


def run_task(folder: Path) -> tuple[str, str]:
    """`numdp lmp -i in.lammps` in `folder` (a DP-GEN task's files), as DP-GEN runs LAMMPS there:
    the texts of its log.lammps and dump.relax."""
    mp = pytest.MonkeyPatch()
    mp.chdir(folder)
    try:
        assert cli_main(["lmp", "-i", "in.lammps"]) == 0
    finally:
        mp.undo()
    return (folder / "log.lammps").read_text(), (folder / "dump.relax").read_text()


@pytest.fixture(scope="module")
def relaxed(tmp_path_factory):
    """numdp lmp's log.lammps and dump.relax for equi_relax.in."""
    folder = tmp_path_factory.mktemp("relax")
    shutil.copy(MODEL, folder / "model.pb")
    shutil.copy(CONF, folder / "conf.lmp")
    shutil.copy(HERE / "equi_relax.in", folder / "in.lammps")
    return run_task(folder)


def test_three_minimizes_print_what_lammps_prints(relaxed):
    """Each minimize starts where the one before stopped: steps 0-3, 3-6, 6-9 with a thermo line
    at each one's first and last step, as LAMMPS'; the prints after the last agree with LAMMPS'."""
    log, _ = relaxed
    lammps = (HERE / "equi_relax.log").read_text()
    ours, theirs = parsed(log), parsed(lammps)
    assert set(ours) == set(theirs) and ours["Total number of atoms"] == 192
    volume = theirs["Final volume per atoms"] * 192
    assert abs(ours["Final energy per atoms"] - theirs["Final energy per atoms"]) <= PE_TOL / 192
    # the cell moves with the energy: a volume error dV costs ~ P dV + B dV^2 / 2V; PE_TOL bounds
    # |P| dV with P the largest pressure the cell saw (LAMMPS: ~1000 bar)
    dv = PE_TOL / (max(abs(p) for p in theirs["stress"]) / LAMMPS_NKTV2P)
    assert abs(ours["Final volume per atoms"] - theirs["Final volume per atoms"]) <= dv / 192
    p_tol = PE_TOL / volume * LAMMPS_NKTV2P + max(abs(p) for p in theirs["stress"]) * dv / volume
    assert max(abs(a - b) for a, b in zip(ours["stress"], theirs["stress"])) <= p_tol
    assert [ln.split()[0] for ln in log.split("\n") if ln.split()[:1] == ["Step"]] == ["Step"] * 3
    for step in (0, 3, 6, 9):
        mine, lmp = thermo_line(log, step), thermo_line(lammps, step)
        assert mine is not None and len(mine) == len(lmp) - 1, (step, mine)   # (c_mype once)
        assert abs(mine[1] - lmp[1]) <= PE_TOL + 0.5e-6 + _digit(lmp[1])
        for a, b in zip(mine[2:8], lmp[2:8]):
            assert abs(a - b) <= p_tol + 0.5e-3 + _digit(b), (step, mine, lmp)
        for a, b in zip(mine[8:12], lmp[8:12]):   # lx ly lz vol
            assert abs(a - b) <= dv + 0.5e-3 + _digit(b), (step, mine, lmp)


def test_dpgen_compute_reads_what_it_reads_from_lammps(relaxed):
    """Lammps.compute on numdp's files reads, for every frame LAMMPS' dump.relax has, the pe and
    stress it reads from LAMMPS'.  (LAMMPS writes the last step of a minimize stopped by maxiter
    only at a multiple of the dump's N, here step 0 alone, and so does numdp lmp.)"""
    log, dump = relaxed
    lammps_log, lammps_dump = (HERE / "equi_relax.log").read_text(), (HERE / "equi_relax.dump").read_text()
    assert dump_steps(dump) == dump_steps(lammps_dump) == [0]
    ours, theirs = dpgen_compute(log, dump), dpgen_compute(lammps_log, lammps_dump)
    assert len(ours) == len(theirs) == 1
    for (e, s), (e0, s0) in zip(ours, theirs):
        assert abs(e - e0) <= PE_TOL + 0.5e-6 + _digit(e0)
        assert max(abs(a - b) for a, b in zip(s, s0)) <= (0.5e-3 + max(_digit(1000 * b) for b in s0)) / 1000
    for step, (e, _) in zip(dump_steps(dump), ours):
        assert abs(e - thermo_line(lammps_log, step)[1]) <= PE_TOL + 0.5e-6 + _digit(e)


def _translate(tmp_path, text: str):
    shutil.copy(MODEL, tmp_path / "model.pb")
    shutil.copy(CONF, tmp_path / "conf.lmp")
    return translate(text, "in.lammps", {}, tmp_path)


def test_minimize_after_minimize_translated(tmp_path):
    """A minimize after a minimize: a later numdp run from the final checkpoint, a new minimization
    ([minimize] anew) of maxiter iterations with the fix box/relax then in force; the thermo
    columns of thermo_style in each."""
    tr = _translate(tmp_path, (HERE / "equi_relax.in").read_text())
    assert len(tr.later) == 2
    couplings = [t["minimize"]["box"]["coupling"] for t in [tr.tables] + [t for t, _ in tr.later]]
    assert couplings == ["isotropic", "anisotropic", "triclinic"]
    for tables, _ in tr.later:
        assert tables["minimize"]["anew"] is True and tables["minimize"]["steps"] == 3
        assert tables["system"] == {"file": "checkpoint.h5"}
    for tables in [tr.tables] + [t for t, _ in tr.later]:
        assert tables["output"]["thermo_columns"] == COLUMNS


@pytest.mark.parametrize("change, expected", [
    ("minimize", r"in.lammps:\d+: minimize: minimize after a run"),
])
def test_minimize_after_md_refused(tmp_path, change, expected):
    text = (HERE / "equi_relax.in").read_text().replace(
        "min_style       cg\n", "min_style cg\nfix 2 all nve\nrun 2\nunfix 2\n")
    with pytest.raises(InputError, match=expected) as err:
        _translate(tmp_path, text)
    assert "\n" not in str(err.value)
