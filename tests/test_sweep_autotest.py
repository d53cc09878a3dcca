"""DP-GEN autotest's LAMMPS scripts (dpgen/auto_test/lib/lammps.py) through `numdp lmp`, against real LAMMPS.

tests/data/autotest/NAME.in are the scripts DP-GEN's own functions write (make_lammps_eval: `run 0`;
make_lammps_equi with change_box=False: the fixed-box cg relaxation of EOS and elastic tasks;
make_lammps_elastic), NAME.log what LAMMPS 22 Jul 2025 with DeePMD-kit 3.2's pair_style deepmd
wrote to log.lammps for them (tools/make_autotest_fixtures.py), for the water model
tf_one_side_f64.pb and the 192-atom triclinic water_tri.data as DP-GEN's conf.lmp.

DP-GEN reads the printed figures with lib/lammps.py's get_nev / get_stress / get_base_area (the
first line holding the key and not the word print; the number after '='), reproduced in `parsed`,
and Lammps.compute (auto_test/Lammps.py) needs "Total wall time:" in log.lammps and reads, for each
dump frame's step, the thermo line starting with it: pe = line[1], pxx pyy pzz pxy pxz pyz =
line[2:8].

Tolerances.  numdp evaluates the model as DeePMD-kit to relative 1e-10 (energies, virials:
/work/shared/oracle/README.md); the figures are printed with %.15g.  After `run 0` the energy per
atom and the stress agree to REL = 1e-10 of their size.  After 3 cg iterations numdp's minimizer
agrees with LAMMPS' to PE_TOL = 1e-6 eV (tests/test_minimize_cg.py's docstring): the energy per
atom to PE_TOL / N, the stress to the stress of PE_TOL over the volume, PE_TOL / V * nktv2p.
LAMMPS' thermo line prints 8 significant digits, numdp's pressures 3 decimals (CODATA's bar,
8.4e-8 relatively above LAMMPS' constant): half a unit of the coarser digit plus that.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from numdp.cli import main as cli_main
from numdp.errors import InputError
from numdp.lammps.translate import LAMMPS_NKTV2P, translate

DATA = Path(__file__).parent / "data"
AUTOTEST = DATA / "autotest"
MODEL = DATA / "tensorflow" / "tf_one_side_f64.pb"   # type_map O H
CONF = DATA / "lammps_nh" / "water_tri.data"        # 192 atoms, triclinic
REL = 1e-10
PE_TOL = 1e-6   # eV
KEYS = ("Total number of atoms", "Final energy per atoms", "Final volume per atoms", "Final Base area")


def parsed(text: str) -> dict:
    """What DP-GEN's lib/lammps.py (d5ce577f, lines 424-475: _get_epa, _get_vpa, _get_natoms,
    get_base_area, get_stress) reads from a log: for each key the first number after '=' on the
    first line that holds it and not 'print' (get_stress: the last such line, all its numbers)."""
    lines = text.split("\n")
    out = {}
    for key in KEYS:
        found = [ln for ln in lines if key in ln and "print" not in ln]
        if found:
            out[key] = float(found[0].split("=")[1].split()[0])
    stress = [ln for ln in lines if "Final Stress" in ln and "print" not in ln]
    if stress:
        out["stress"] = [float(w) for w in stress[-1].split("=")[1].split()]
    return out


def thermo_at(text: str, step: int) -> list[float]:
    """Lammps.compute's thermo line of `step` (auto_test/Lammps.py: the first line whose first word
    is the step and whose words are all numbers)."""
    for ln in text.split("\n"):
        words = ln.split()
        if words and words[0] == str(step):
            try:
                return [float(w) for w in words]
            except ValueError:
                continue
    raise AssertionError(f"no thermo line of step {step}")


def run_script(name: str, folder: Path, monkeypatch) -> str:
    shutil.copy(MODEL, folder / "model.pb")
    shutil.copy(CONF, folder / "conf.lmp")
    shutil.copy(AUTOTEST / f"{name}.in", folder / "in.lammps")
    monkeypatch.chdir(folder)
    assert cli_main(["lmp", "-i", "in.lammps"]) == 0
    return (folder / "log.lammps").read_text()


@pytest.mark.parametrize("name, iterations", [("eval", 0), ("equi_fixed_box", 3), ("elastic", 3)])
def test_prints_what_lammps_prints(tmp_path, monkeypatch, capsys, name, iterations):
    log = run_script(name, tmp_path, monkeypatch)
    screen = capsys.readouterr().out
    lammps = (AUTOTEST / f"{name}.log").read_text()
    ours, theirs = parsed(log), parsed(lammps)
    assert parsed(screen) == ours and set(ours) == set(theirs), (ours, theirs)
    natoms, volume = theirs["Total number of atoms"], theirs["Final volume per atoms"] * 192
    assert ours["Total number of atoms"] == natoms == 192
    e_tol = REL * abs(theirs["Final energy per atoms"]) if iterations == 0 else PE_TOL / natoms
    assert abs(ours["Final energy per atoms"] - theirs["Final energy per atoms"]) <= e_tol
    for key in ("Final volume per atoms", "Final Base area"):   # the box is fixed: to the print's digits
        if key in theirs:
            assert abs(ours[key] - theirs[key]) <= 1e-14 * theirs[key]
    scale = max(abs(p) for p in theirs["stress"])
    p_tol = REL * scale if iterations == 0 else PE_TOL / volume * LAMMPS_NKTV2P
    assert len(ours["stress"]) == 6
    assert max(abs(a - b) for a, b in zip(ours["stress"], theirs["stress"])) <= p_tol
    # LAMMPS' order: the thermo lines, then the prints, then the wall time, last
    tail = log.split("\n")
    assert tail[-2].startswith("Total wall time: ") and "Total wall time:" in screen
    first = next(k for k, ln in enumerate(tail) if ln == "All done")
    assert [ln.split(" =")[0] for ln in tail[first + 1:first + 3]] == ["Total number of atoms", "Final energy per atoms"]
    # the minimizes stop at maxiter (3 iterations, LAMMPS' logs): LAMMPS' Min::run then writes no
    # frame off the dump's cadence (every 100), so step 0 alone, as for `run 0`
    assert (tmp_path / "dump.relax").read_text().count("ITEM: TIMESTEP") == 1


def test_run_0_thermo_line_as_lammps(tmp_path, monkeypatch):
    """Lammps.compute's figures of `run 0`: thermo_style custom step pe pxx ... vol c_mype, whose
    c_mype repeats pe (numdp prints it once, last: the columns DP-GEN reads keep their places)."""
    ours, theirs = thermo_at(run_script("eval", tmp_path, monkeypatch), 0), thermo_at((AUTOTEST / "eval.log").read_text(), 0)
    assert len(ours) == len(theirs) - 1
    assert abs(ours[1] - theirs[1]) <= 0.5e-6 + 0.5e-3   # pe: numdp .6f, LAMMPS 8 digits (-30021.006)
    for a, b in zip(ours[2:8], theirs[2:8]):
        assert abs(a - b) <= 0.5e-3 + 0.5 * 10 ** (len(str(int(abs(b)))) - 8) + 8.5e-8 * abs(b)


def _translate(tmp_path, text: str):
    shutil.copy(MODEL, tmp_path / "model.pb")
    shutil.copy(CONF, tmp_path / "conf.lmp")
    return translate(text, "in.lammps", {}, tmp_path)


@pytest.mark.parametrize("change, expected", [
    ("variable Epa equal ${E}/${N}\nwrite_data out.data",
     r"in.lammps:33: write_data: after in.lammps:29 \(variable\), which needs the state the last run ended with"),
    ("variable bad equal cella\nprint \"${bad}\"", r"in.lammps:32: variable: 'cella' in formula 'cella': thermo keywords \(but dt, step and, after the last run"),
    ("variable n equal count(water)\nprint \"${n}\"", r"in.lammps:32: variable: count\(water\): numdp lmp counts group all"),
])
def test_refused_in_one_line_before_running(tmp_path, change, expected):
    text = (AUTOTEST / "eval.in").read_text().replace("print \"All done\"\n", change + "\n")
    with pytest.raises(InputError) as err:
        _translate(tmp_path, text)
    assert re.match(expected, str(err.value)) and "\n" not in str(err.value), str(err.value)


def test_box_relax_translated(tmp_path):
    """make_lammps_equi's `fix 1 all box/relax iso 0.0` before its minimize is [minimize] box
    (tests/test_box_relax.py checks the relaxation against LAMMPS; DP-GEN's change_box=True script,
    iso then aniso then tri, each with its minimize: tests/test_sweep_autotest2.py)."""
    text = (AUTOTEST / "elastic.in").read_text().replace("min_style       cg\n", "min_style cg\nfix 1 all box/relax iso 0.0\n")
    tr = _translate(tmp_path, text)
    assert tr.tables["minimize"]["box"] == {"coupling": "isotropic", "pressure": 0.0}


def test_translation_keeps_the_lines_after_the_run(tmp_path):
    """The script's lines from the first that needs the final state on run after numdp has run;
    `run 0` without a fix is an evaluation (numdp's nve of 0 steps)."""
    tr = _translate(tmp_path, (AUTOTEST / "eval.in").read_text())
    assert tr.tables["md"]["steps"] == 0 and tr.tables["md"]["ensemble"] == "nve"
    assert tr.epilogue is not None
    assert tr.tables["output"]["thermo_columns"] == ["step", "pe", "pxx", "pyy", "pzz", "pxy", "pxz", "pyz", "lx",
                                                     "ly", "lz", "vol"]
