"""Tests added by mutation round 24 (numdp lmp a second time: numdp.lammps.translate's commands,
numdp.lammps.script's variables and substitution, numdp.commands.lmp's command line): each kills a
plausible mistake that tests/test_lmp*.py, test_sweep_lmp*.py, test_sweep_lammps*.py,
test_sweep_dpgen*.py, test_sweep_autotest*.py and test_sweep_mutants10.py let through (the mutant
named in the test's docstring).  LAMMPS' own answers are tests/data/mutants24/ (made by
tools/make_mutants24_fixtures.py with real LAMMPS) or its documented behaviour.  Mostly translation
and parsing; three tests evaluate an 8-atom system with a small random model (tests/randmodel.py),
two of them through `numdp lmp` (3 + 3 MD steps; a 3-iteration minimize): about 1.5 s with
compiled kernels (about 20 s when the model's kernels compile first).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from numdp.cli import build_parser
from numdp.commands.lmp import _variables, script_text, translate_file
from numdp.errors import InputError
from numdp.lammps.script import Command, Script
from numdp.lammps.translate import translate

DATA = Path(__file__).parent / "data" / "mutants24"
HEAD = "units metal\nread_data conf.data\npair_style deepmd model.h5\npair_coeff * * O H\n"


def _tables(tmp_path, body: str, head: str = HEAD) -> dict:
    """numdp run's tables of the script `head` + `body` (no file is read: the elements are pair_coeff's)."""
    return translate(head + body, "in.lammps", {}, tmp_path).tables


def _refused(tmp_path, body: str, head: str = HEAD) -> str:
    """The one-line message with which numdp lmp refuses the script `head` + `body`."""
    with pytest.raises(InputError) as err:
        _tables(tmp_path, body, head)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_dollar_name_is_one_character_and_the_first_minus_var_wins(tmp_path, monkeypatch):
    """LAMMPS' output of tests/data/mutants24/language.in run as `lmp -in language.in -var cli 1
    -var cli 2`, here through numdp lmp's own command line (numdp.cli's parser, `script_text`,
    `_variables`).  Mutants killed: `$xy` read as the variable xy (LAMMPS: $x then the letter y,
    its manual's one-character form: 5y, where ${xy} is 9), in a quoted print text and outside
    quotes alike; the last of two -var NAME taken (LAMMPS keeps the first: an index variable is
    not redefined); -in or -var dropped as spellings of -i / -v (LAMMPS' own switch names, which
    DP-GEN's and autotest's command lines may use)."""
    monkeypatch.chdir(DATA)
    args = build_parser().parse_args(["lmp", "-in", "language.in", "-var", "cli", "1", "-var", "cli", "2"])
    text, name = script_text(args)

    def handler(c: Command) -> None:
        raise AssertionError(f"not a language command: {c}")

    script = Script(name, handler, _variables(args))
    script.run(text)
    assert script.printed == (DATA / "language.txt").read_text().splitlines()


@pytest.mark.parametrize("head, body, message", [
    # mutant: boundary s (shrink-wrapped) and m accepted as f: docs/lammps-input.md refuses them
    ("units metal\nboundary p p s\n", "read_data conf.data\n",
     "in.lammps:2: boundary: numdp lmp supports p (periodic) and f (non-periodic) per direction, got 'p p s'"),
    # mutant: out_freq 0 accepted (numdp run's [model_devi] every must be > 0: refused at the script's line)
    (HEAD.replace("model.h5", "a.h5 b.h5 out_freq 0"), "",
     "in.lammps:3: pair_style: out_freq must be > 0"),
])
def test_lines_numdp_lmp_cannot_follow_are_refused_at_their_line(tmp_path, head, body, message):
    rest = "" if "pair_style" in head else "pair_style deepmd model.h5\npair_coeff * * O H\n"
    assert _refused(tmp_path, body + rest + "fix 1 all nve\nrun 10\n", head).startswith(message)


def test_mass_of_one_type_sets_that_type_only(tmp_path):
    """`mass 1 15.999` with two types (pair_coeff * * O H) is type 1's mass, O's (LAMMPS' type
    range: N alone is N..N).  Mutant: a lone N read as the open range N* (every type from N: H too
    would get 15.999)."""
    system = _tables(tmp_path, "mass 1 15.999\nfix 1 all nve\nrun 10\n")["system"]
    assert system["masses"] == {"O": 15.999}
    system = _tables(tmp_path, "mass 2* 2.014\nfix 1 all nve\nrun 10\n")["system"]
    assert system["masses"] == {"H": 2.014}


def test_relative_and_relative_v_are_two_levels(tmp_path):
    """pair_style deepmd's relative (forces, eV/Å) and relative_v (virials, eV) are two keys of
    [model_devi] (DeePMD-kit's pair style: two levels).  Mutant: relative_v stored as relative (the
    force level overwritten, the virial one lost)."""
    head = HEAD.replace("model.h5", "a.h5 b.h5 out_freq 10 relative 1.5 relative_v 0.25 atomic")
    devi = _tables(tmp_path, "fix 1 all nve\nrun 10\n", head)["model_devi"]
    assert devi == {"every": 10, "file": "model_devi.out", "atomic": True, "relative": 1.5, "relative_v": 0.25}


@pytest.mark.parametrize("keywords", ["loop geom", "loop all", "loop local", "dist uniform mom yes rot no loop geom"])
def test_velocity_create_takes_each_loop_style(tmp_path, keywords):
    """LAMMPS' velocity create loop all|local|geom: three ways to draw the same distribution
    (geom: by each atom's position, independent of the processors); numdp draws per atom id
    whichever is named, so each is accepted and gives the same [system] velocities.  Mutant:
    loop geom refused."""
    system = _tables(tmp_path, f"velocity all create 300 4928459 {keywords}\nfix 1 all nve\nrun 10\n")["system"]
    assert system["velocities"]["seed"] == 4928459


def test_minus_log_none_writes_no_log(tmp_path, monkeypatch):
    """`numdp lmp -log none` (LAMMPS' -log none: no log file) is [output] log = "" (none), a
    `log FILE` command after it wins.  Mutant: -log's value passed as is (a log file named none)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.lammps").write_text(HEAD + "fix 1 all nve\nrun 10\n")
    args = build_parser().parse_args(["lmp", "-in", "in.lammps", "-log", "none"])
    assert translate_file(args).tables["output"]["log"] == ""
    (tmp_path / "in.lammps").write_text(HEAD + "log run.log\nfix 1 all nve\nrun 10\n")
    args = build_parser().parse_args(["lmp", "-in", "in.lammps", "-log", "none"])
    assert translate_file(args).tables["output"]["log"] == "run.log"


def test_restart_0_stops_the_periodic_checkpoints(tmp_path):
    """`restart 0` after `restart 10 ck` turns LAMMPS' periodic restart files off again: [output]
    checkpoint_every 0 (mutant: restart 0 ignored when a restart N came before it, numdp then
    checkpointing every 10 steps)."""
    out = _tables(tmp_path, "restart 10 ck\nrestart 0\nfix 1 all nve\nrun 20\n")["output"]
    assert out["checkpoint_every"] == 0
    assert _tables(tmp_path, "restart 10 ck\nfix 1 all nve\nrun 20\n")["output"]["checkpoint_every"] == 10


def test_final_etotal_is_pe_plus_ke(tmp_path):
    """The epilogue's etotal (a `print "${etotal}"` after the last run, LAMMPS' thermo etotal =
    pe + ke, what DP-GEN's autotest scripts print) is final_values' pe plus its ke, the kinetic
    energy ½ Σ m v² of the frame's velocities (LAMMPS' metal mvv2e, numdp's).  pe + ke is one
    addition of the two values returned: compared exactly; ke against the sum written out, to
    the round-off of 3N squares (16 ε relative, as tests/test_sweep_mutants4b.py).
    Mutant killed: etotal = pe (the kinetic energy left out)."""
    from numdp.io.model_file import write_model
    from numdp.lammps.translate import final_values
    from numdp.units import MVV2E
    from randmodel import random_params

    params = random_params(ntypes=2, sel=[8, 8], neuron=(4, 8), axis_neuron=2, fitting=(8, 8), rcut=4.0,
                           rcut_smth=1.0, seed=5)
    params.type_map = ["A", "B"]
    write_model(params, tmp_path / "m.h5")
    rng = np.random.default_rng(12)
    masses = np.array([2.0, 7.0, 2.0, 7.0])
    v = rng.normal(scale=3.0, size=(4, 3))   # Å/ps: ke of order 0.1 eV, far above pe's round-off
    frame = {"type_map": ["A", "B"], "species": np.array([0, 1, 0, 1]), "masses": masses,
             "positions": rng.uniform(0.0, 3.0, size=(4, 3)), "box": None, "pbc": None, "velocities": v, "step": 3}
    out = final_values(frame, str(tmp_path / "m.h5"))
    ke = 0.5 * MVV2E * float(np.sum(masses[:, None] * v * v))
    assert out["ke"] == pytest.approx(ke, rel=16 * np.finfo(float).eps)
    assert out["ke"] > 0.01
    assert out["etotal"] == out["pe"] + out["ke"]


def _eight_atoms(folder: Path, body: str) -> None:
    """folder/in.lammps: 8 atoms A B (2 and 7 amu) near a 3 Å grid in a 6 Å cube (conf.data), a
    small random model m.h5 (tests/randmodel.py, rcut 3 Å), then the script's `body`."""
    from numdp.io.model_file import write_model
    from numdp.io.structure import write_lammps_data
    from randmodel import random_params

    params = random_params(ntypes=2, sel=[8, 8], neuron=(4, 8), axis_neuron=2, fitting=(8, 8), rcut=3.0,
                           rcut_smth=1.0, seed=5)
    params.type_map = ["A", "B"]
    write_model(params, folder / "m.h5")
    rng = np.random.default_rng(4)
    grid = np.array([[i, j, k] for i in range(2) for j in range(2) for k in range(2)], float) * 3.0
    write_lammps_data(folder / "conf.data", np.array([0, 1] * 4), grid + rng.uniform(-0.2, 0.2, (8, 3)),
                      np.eye(3) * 6.0, masses_by_type=[2.0, 7.0])
    (folder / "in.lammps").write_text("units metal\nread_data conf.data\npair_style deepmd m.h5\npair_coeff * * A B\n"
                                      + body)


def test_lines_after_the_last_of_several_runs_read_the_last_runs_state(tmp_path, monkeypatch):
    """A `print` after a script's second run that needs its final state (`$(pe)`: kept for after the
    runs, numdp.commands.lmp._finish) reads the state the LAST run ended with: with `restart 3 ck`
    the runs end in ck.3 and ck.6, and $(step) is 6 there, as LAMMPS prints at that point (its
    current step).  Mutant killed: the epilogue evaluated with run 0's tables and final checkpoint
    (ck.3: step 3; with one checkpoint file that both runs overwrite the two are the same file,
    hence the restart command here)."""
    from numdp.cli import main as cli_main

    _eight_atoms(tmp_path, "velocity all create 300 7\nfix 1 all nve\nrestart 3 ck\nrun 3\nrun 3\n"
                           "print \"after $(step) $(pe:%.3f)\"\n")
    monkeypatch.chdir(tmp_path)
    assert cli_main(["lmp", "-i", "in.lammps"]) == 0
    printed = [ln for ln in (tmp_path / "log.lammps").read_text().splitlines() if ln.startswith("after ")]
    assert len(printed) == 1 and printed[0].split()[1] == "6", printed


def test_a_kinetic_keyword_after_a_minimize_of_unknown_velocities_is_refused_after_it(tmp_path, monkeypatch, capsys):
    """After a minimize LAMMPS' atoms keep velocity create's velocities (LAMMPS' random numbers,
    which numdp lmp does not know), so `temp` there has no value numdp could print.  A line using it
    in a branch the translation's dry run (every keyword 1: "1 != 1" false) does not take is
    refused when the real values take it, in one line, after the minimize (numdp.commands.lmp._finish
    drops the kinetic keywords).  Mutant killed: the kinetic keywords kept, `print` then giving
    temp 0 (numdp's minimization at rest), where LAMMPS prints the velocities' temperature."""
    from numdp.cli import main as cli_main

    _eight_atoms(tmp_path, "velocity all create 300 7\nminimize 0 1e-8 3 10\n"
                           "if \"$(pe) != 1\" then \"print 'temp $(temp)'\"\n")
    monkeypatch.chdir(tmp_path)
    assert cli_main(["lmp", "-i", "in.lammps"]) != 0
    out = capsys.readouterr()
    assert "'temp' after a minimize" in out.err + out.out and "temp 0" not in out.out
