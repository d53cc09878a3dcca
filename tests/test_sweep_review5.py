"""Review of the cg / sd minimizer and the autotest epilogue (numdp lmp's lines after the last run):

- a checkpoint of another minimizer given as [system] file is a start structure (it was refused,
  telling the user to give it as [system] file);
- every command an `if` kept for after the runs may run (any branch) must be one numdp lmp can
  run then: a `write_data` in a branch was dropped silently, or written though LAMMPS would not;
- the probe of the kept lines (every thermo keyword 1) refused a formula dividing by `atoms - 1`;
- a kinetic keyword after a minimize whose velocities numdp lmp does not know (velocity create,
  min_style fire) is refused in one line before anything runs (it was refused after the run, saying
  the keyword is not supported).
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from numdp.errors import InputError
from numdp.io.h5md import read_checkpoint
from numdp.lammps.translate import FINAL_KEYWORDS, translate

DATA = Path(__file__).parent / "data"
AUTOTEST = DATA / "autotest"
MODEL = DATA / "tensorflow" / "tf_one_side_f64.pb"
CONF = DATA / "lammps_nh" / "water_tri.data"


# -- a checkpoint of another minimizer as [system] file ---------------------------------------------------


@pytest.mark.parametrize("first, second", [("fire", "cg"), ("cg", "fire")])
def test_another_minimizers_checkpoint_as_system_file_is_a_start_structure(tmp_path, first, second):
    """The refusal of a checkpoint of another minimizer says to give it as [system] file; given so,
    it is the start structure of a new minimization of the input's style (step 0)."""
    from test_minimize import crystal, run

    style = {"fire": "", "cg": '\nstyle = "cg"'}
    run(crystal(tmp_path / "a", **{"steps = 400": "steps = 12" + style[first]}))
    toml = crystal(tmp_path / "b", **{"steps = 400": "steps = 5" + style[second]})
    toml.write_text(toml.read_text().replace('file = "start.data"\ntype_names = ["Ar"]',
                                             f'file = "{tmp_path / "a" / "ck.h5"}"'))
    run(toml)
    end = read_checkpoint(tmp_path / "b" / "ck.h5")
    assert end.step == 5   # a new run from step 0 (a continued one would end at once: 12 >= 5)
    assert ("gg" in end.minimize) == (second == "cg") and ("dt" in end.minimize) == (second == "fire")


# -- the lines kept for after the runs --------------------------------------------------------------------


def _translate(tmp_path: Path, text: str):
    shutil.copy(MODEL, tmp_path / "model.pb")
    shutil.copy(CONF, tmp_path / "conf.lmp")
    return translate(text, "in.lammps", {}, tmp_path)


def _eval_script(lines: str) -> str:
    return (AUTOTEST / "eval.in").read_text().replace('print "All done"\n', lines + '\nprint "All done"\n')


@pytest.mark.parametrize("condition", ["${Epa} < 0", "${Epa} > 0"])
def test_a_run_command_in_an_if_after_the_run_is_refused_before_running(tmp_path, condition):
    """`if "${Epa} < 0" then "write_data neg.data"` after the last run: the probe (Epa = 1) did not
    take the branch and the real one dropped the write silently (exit 0, no neg.data); with `> 0`
    the probe's branch added the write to the translation, made whatever the real Epa is."""
    text = _eval_script(f'if "{condition}" then "print x" "write_data out.data"')
    with pytest.raises(InputError) as err:
        _translate(tmp_path, text)
    assert re.match(r"in.lammps:\d+: write_data: ", str(err.value)), str(err.value)
    assert "\n" not in str(err.value)


def test_deferrable_if_branches_still_run_after_the_run(tmp_path):
    """The other side: an `if` whose branches are prints (and a nested if) runs after the runs."""
    tr = _translate(tmp_path, _eval_script('if "${Epa} < 0" then "print neg" else "if \'${N} > 1\' then \'print many\'"'))
    values = dict.fromkeys(FINAL_KEYWORDS, 2.0)
    lines = tr.epilogue.lines(values)
    assert lines[0] == "many" and lines[1] == "All done"


def test_the_probe_does_not_refuse_a_division_by_atoms_minus_one(tmp_path):
    """The probe runs the kept lines with every keyword 1: `3*(${N}-1)` (the degrees of freedom of
    a temperature) divided by zero there and the script was refused ("division by zero"); LAMMPS
    runs it.  The real values give the real figure."""
    kb = 8.617343e-5
    tr = _translate(tmp_path, _eval_script(f'variable Tk equal 2*ke/(3*(${{N}}-1)*{kb!r})\nprint "T = ${{Tk}}"'))
    values = dict.fromkeys(FINAL_KEYWORDS, 0.0)
    values.update(atoms=192.0, ke=1.5)
    lines = tr.epilogue.lines(values)
    assert lines[0].startswith("T = ")
    t = float(lines[0].split("=")[1])
    expected = 2 * 1.5 / (3 * 191 * kb)
    assert abs(t - expected) <= 1e-14 * expected   # printed with 15 digits


@pytest.mark.parametrize("change", ["velocity all create 300 4928\nmin_style cg", "min_style fire"])
def test_kinetic_keywords_after_a_minimize_of_unknown_velocities_refused_before_running(tmp_path, change):
    """LAMMPS' pressure after a minimize counts the atoms' velocities: velocity create's are LAMMPS'
    own random numbers, and min_style fire zeroes them at its start and leaves its own (numdp lmp
    counted the data file's).  Refused in one line at translation (it was refused after the run,
    saying pxx is not supported)."""
    text = (AUTOTEST / "elastic.in").read_text().replace("min_style       cg", change)
    with pytest.raises(InputError) as err:
        _translate(tmp_path, text)
    assert re.match(r"in.lammps:\d+: print: 'pxx' after a minimize", str(err.value)), str(err.value)
    assert "\n" not in str(err.value)
    # the same script with cg from the data file's velocities is translated (its pressures counted)
    assert _translate(tmp_path, (AUTOTEST / "elastic.in").read_text()).epilogue is not None
