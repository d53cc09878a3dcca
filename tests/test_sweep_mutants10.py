"""Tests for the survivors of the tenth round of mutation testing (numdp lmp's reading of LAMMPS'
input language, numdp.lammps.script, and its translation, numdp.lammps.translate): each fails on
one plausible mistake that the rest of the suite let through (the mutant is named in the test's
docstring; 2026-12-07).  LAMMPS' own answers are tests/data/mutants10/ (tools/make_mutants10_fixtures.py
ran real LAMMPS) or its documented behaviour.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from numdp.errors import InputError
from numdp.io.h5md import write_checkpoint
from numdp.lammps.script import Command, Script
from numdp.lammps.translate import translate
from numdp.system import State

DATA = Path(__file__).parent / "data" / "mutants10"
MODEL_OH = Path(__file__).parent / "data" / "activations" / "linear.dp"   # type_map O H


def _printed(text: str, cli: dict[str, str] | None = None) -> list[str]:
    """The texts of the print commands of the language-only script `text` as numdp lmp reads it
    (a command that is not the language's fails the test)."""
    def handler(c: Command) -> None:
        raise AssertionError(f"not a language command: {c}")

    script = Script("in.lammps", handler, cli)
    script.run(text)
    return script.printed


def test_language_prints_what_lammps_prints():
    """LAMMPS' own output of tests/data/mutants10/language.in (run with -var cli 7).  Survivors it
    kills: a # in single quotes taken as a comment, only double quotes tracked (L01); && below ||
    in precedence, LAMMPS' && binding tighter (L03); an if's Boolean compared as strings before
    as numbers, "1.0 == 1" being true (L05); `print ... universe no` taken as `screen no` (L08);
    `variable NAME delete` a no-op, its redefinition as another style then refused (L11).  The
    other lines pin LAMMPS' answers to mistakes the suite kills elsewhere (fmod, log10, an
    exponent's sign, if/elif's first true branch only, nested $( ), an equal-style variable
    evaluated at each use and substituted %.15g, -var over the script's index variable)."""
    expected = (DATA / "language.txt").read_text().splitlines()
    assert _printed((DATA / "language.in").read_text(), {"cli": "7"}) == expected


def test_loop_variables_are_refused_in_one_line():
    """Mutant `loop` among the accepted variable styles (`variable i loop 3` then fails outside
    numdp's errors, where LAMMPS would loop: numdp lmp refuses loops, LOOP_MESSAGE)."""
    with pytest.raises(InputError) as err:
        _printed("print a\nvariable i loop 3\n")
    assert str(err.value).startswith("in.lammps:2: variable: variable style 'loop' is not supported")


# --------------------------------------------------------------------------------------------------
# numdp.lammps.translate: what a command may say, and what it means
# --------------------------------------------------------------------------------------------------

HEAD = "units metal\nread_data conf.data\npair_style deepmd model.h5\npair_coeff * * O H\n"


def _tables(tmp_path, body: str, head: str = HEAD) -> dict:
    """numdp run's tables of the script `head` + `body` (no file is read: the elements are pair_coeff's)."""
    return translate(head + body, "in.lammps", {}, tmp_path).tables


@pytest.mark.parametrize("line, message", [
    # mutant: units real read as metal (LAMMPS' real: fs, kcal/mol; numdp lmp runs metal only)
    ("units real", "in.lammps:1: units: numdp lmp runs units metal only, got 'real'"),
    # mutant: dump_modify sort with any value taken as numdp's id order (-1: descending ids)
    ("dump 1 all custom 5 d.dump id x\ndump_modify 1 sort -1", "in.lammps:6: dump_modify: numdp lmp accepts"),
    # mutant: seed 0 accepted (LAMMPS: the seed must be a positive integer)
    ("velocity all create 300 0", "in.lammps:5: velocity: seed must be > 0"),
])
def test_lines_numdp_cannot_follow_are_refused(tmp_path, line, message):
    head = HEAD if not line.startswith("units") else ""
    with pytest.raises(InputError) as err:
        _tables(tmp_path, line + "\nfix 1 all nve\nrun 10\n", head)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_thermo_0_prints_a_later_run_at_its_ends_only(tmp_path):
    """LAMMPS' thermo 0 (its default) prints the first and the last step of each run; numdp prints
    every step that is a multiple of thermo_every (numdp.md.reporters), so for the second run,
    steps 10-35, no step strictly between them may be one.  Mutant: thermo_every from the run's
    length (25: step 25 printed mid-run) in place of its last step (35)."""
    later, _ = translate(HEAD + "fix 1 all nve\nrun 10\nrun 25\n", "in.lammps", {}, tmp_path).later[0]
    every = later["output"]["thermo_every"]
    assert later["md"]["steps"] == 35 and 35 % every == 0
    assert not [step for step in range(11, 35) if step % every == 0]


def test_a_types_prefix_of_the_models_elements_names_the_dump_elements(tmp_path):
    """Without pair_coeff elements, type k is the model's type_map[k-1], and a system may have
    fewer types than the model (LAMMPS' dump_modify element names each of the system's types):
    `element O` for one type with a model of O H is right (mutant: the whole type_map required)."""
    head = f"units metal\nread_data conf.data\npair_style deepmd {MODEL_OH}\npair_coeff * *\n"
    body = "dump 1 all custom 5 d.dump id element x y z\ndump_modify 1 element O\nfix 1 all nve\nrun 10\n"
    assert _tables(tmp_path, body, head)["output"]["columns"] == ["id", "element", "x", "y", "z"]
    with pytest.raises(InputError, match="in.lammps:6: dump_modify: element H"):
        _tables(tmp_path, body.replace("element O", "element H"), head)


def test_step_after_read_restart_is_the_checkpoints(tmp_path):
    """`step` before the first run is read_restart's step (LAMMPS' timestep of the restart file):
    `run $(step+20) upto` from a checkpoint of step 100 runs to 120 (mutant: step 0 before a run,
    then 20 upto is refused as behind the restart)."""
    state = State(positions=np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]), velocities=np.zeros((2, 3)),
                  types=np.zeros(2, np.int32), masses=np.full(2, 16.0), box=np.eye(3) * 5.0, type_map=["O"],
                  ids=np.arange(1, 3))
    state.step = 100
    write_checkpoint(tmp_path / "ck.h5", state, {})
    head = "units metal\nread_restart ck.h5\npair_style deepmd model.h5\npair_coeff * *\n"
    assert _tables(tmp_path, "fix 1 all nve\nrun $(step+20) upto\n", head)["md"]["steps"] == 120


def test_write_data_with_one_element_for_two_types_is_refused(tmp_path):
    """numdp keeps each atom's element, not its LAMMPS type: with `pair_coeff * * O O` it cannot
    write the types back (mutant: the check dropped, the data file then says type 1 for both)."""
    with pytest.raises(InputError, match="in.lammps:7: write_data: pair_coeff gives one element to several types"):
        _tables(tmp_path, "fix 1 all nve\nrun 10\nwrite_data out.data\n", HEAD.replace("O H", "O O"))


def test_a_replicated_box_keeps_the_data_files_corner(tmp_path):
    """LAMMPS' replicate keeps the box's lower corner (xlo ylo zlo of the data file) and multiplies
    its lengths, so the centre it changes a box about (BoxOrigin: [output] box_center) is
    lo + (replicas x lengths) / 2: x -1 + 2 x 5 / 2 = 4 (mutant: the lengths of one replica, 1.5).
    Exact: halves of small integers."""
    (tmp_path / "conf.data").write_text(
        "test\n\n2 atoms\n1 atom types\n\n-1 4 xlo xhi\n0 6 ylo yhi\n2 9 zlo zhi\n\nMasses\n\n1 16\n\n"
        "Atoms # atomic\n\n1 1 0 1 3\n2 1 1 2 4\n")
    out = _tables(tmp_path, "replicate 2 1 1\nfix 1 all nve\nrun 10\n")["output"]
    assert out["box_center"] == [4.0, 3.0, 5.5]


def test_a_thermo_keyword_named_twice_is_one_column(tmp_path):
    """thermo_style custom step pe pe: numdp prints a quantity once, in its first column (a notice
    says so; mutant: the column list kept with pe twice)."""
    tr = translate(HEAD + "thermo_style custom step pe ke pe\nfix 1 all nve\nrun 10\n", "in.lammps", {}, tmp_path)
    assert tr.tables["output"]["thermo_columns"] == ["step", "pe", "ke"]
    assert any("printed once" in n for n in tr.notices)


def test_continuation_and_equal_variables_in_formulas_as_lammps():
    """LAMMPS' output of tests/data/mutants10/differences.in: `&` joins the next line with no
    space (its manual: the next line is concatenated "removing the & character and line break":
    `ab&` + `cd` is abcd, where numdp lmp read `ab cd`, so `variable joined string ab&` failed
    with two values), and v_NAME of an equal-style variable in a formula is its value as %.15g
    text (LAMMPS' Variable::retrieve: 1/3 is 0.333333333333333, so v_d*3 == 1 is false)."""
    expected = (DATA / "differences.txt").read_text().splitlines()
    assert _printed((DATA / "differences.in").read_text()) == expected


def test_triple_quotes_are_refused_in_one_line():
    """LAMMPS' triple quotes (\"\"\"...\"\"\": a word with quotes in it, or over several lines) were
    split as empty and double-quoted words: `print \"\"\"L20 "quoted" text\"\"\"` printed
    ' L20  quoted" text\"\"\"' where LAMMPS prints 'L20 "quoted" text'.  Refused, in one line."""
    for text in ('print """L20 "quoted" text"""\n', 'print """\nL22 two\nlines"""\n'):
        with pytest.raises(InputError) as err:
            _printed(text)
        assert str(err.value).startswith("in.lammps:1: print: triple quotes")
