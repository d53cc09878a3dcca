"""`numdp lmp` on hand-written scripts: commands earlier refused that numdp runs as LAMMPS does
(`thermo_modify lost ignore|warn`, `temp ID`, `clear` before the box, the thermo keyword `step` in
formulas, `group` definitions, `fix recenter INIT INIT INIT`) and the one-line refusals, with what
to write instead, of those it cannot run (loops, a fix / dump / velocity on a group other than all,
`thermo_modify norm yes`).

What LAMMPS does (22 Jul 2025 update 2 with DeePMD-kit 3.2's pair_style deepmd, by hand): it
accepts `clear` as the first command, `thermo_modify lost ignore`, `lost/bond ignore`, `temp ID` of
a `compute ID all temp`, and `group O type 1` definitions; `$(step)` and an equal-style variable of
`step` read the current step between runs (3 after `run 3`) and are an error before the box exists
("Variable evaluation before simulation box is defined").  `fix recenter INIT INIT INIT` of a
system whose total momentum is zero moves the atoms by round-off only: 20 steps of fix nvt with and
without it end 1.6e-14 Å and 4e-14 Å/ps apart in LAMMPS; tests/data/lmp_sweep2/nvt_recenter.npz is
LAMMPS' run with it (tools/make_lmp_sweep2_fixtures.py), compared with the bounds of
tests/test_sweep_lammps_nh.py (its docstring derives them: 1e-11 Å, 1e-9 Å/ps).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from numdp.cli import main as cli_main
from numdp.errors import InputError
from numdp.lammps.translate import translate

DATA = Path(__file__).parent / "data"
MODEL = DATA / "tensorflow" / "tf_one_side_f64.dp"   # type_map O H
NH = DATA / "lammps_nh"
VEL_TOL = 1e-9    # Å/ps (tests/test_sweep_lammps_nh.py's bound)
POS_TOL = 1e-11   # Å

HEAD = "units metal\nread_data conf.data\npair_style deepmd model.dp\npair_coeff * *\n"
RUN = "fix 1 all nve\nrun 10\n"


def tables(tmp_path, text: str) -> dict:
    return translate(text, "in.lammps", {}, tmp_path).tables


def refusal(tmp_path, text: str) -> str:
    with pytest.raises(InputError) as err:
        translate(text, "in.lammps", {}, tmp_path)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_thermo_modify_lost_ignore_and_temp_of_a_temp_compute(tmp_path):
    """lost ignore|warn and lost/bond (numdp loses no atom and has no bonds) and temp / press of
    computes that are thermo's own change nothing; norm yes (per-atom energies) is refused."""
    plain = tables(tmp_path, HEAD + RUN)
    for line in ("thermo_modify lost ignore flush yes", "thermo_modify lost warn norm no",
                 "thermo_modify lost/bond ignore", "compute myT all temp\nthermo_modify temp myT press thermo_press"):
        assert tables(tmp_path, HEAD + line + "\n" + RUN) == plain, line
    assert refusal(tmp_path, HEAD + "thermo_modify norm yes\n" + RUN).startswith(
        "in.lammps:5: thermo_modify: thermo_modify norm yes: not supported by numdp lmp: numdp prints extensive "
        "quantities as totals")
    assert refusal(tmp_path, HEAD + "compute e all pe\nthermo_modify temp e\n" + RUN).startswith(
        "in.lammps:6: thermo_modify: temp e: numdp's temp is thermo_temp's")


def test_clear_before_the_box_and_refused_after(tmp_path):
    """clear resets LAMMPS' settings (units back to lj) but keeps the variables; after read_data it
    would delete the system: refused."""
    plain = tables(tmp_path, HEAD + RUN)
    assert tables(tmp_path, "variable n equal 10\nclear\n" + HEAD + "fix 1 all nve\nrun ${n}\n") == plain
    assert refusal(tmp_path, "units metal\nclear\nread_data conf.data\npair_style deepmd model.dp\n"
                             "pair_coeff * *\n" + RUN).startswith("in.lammps: the script sets no `units metal`")
    assert refusal(tmp_path, HEAD + "clear\n" + RUN).startswith(
        "in.lammps:5: clear: after read_data / read_restart / create_box numdp lmp runs one system per script")


def test_step_in_formulas_is_the_current_step(tmp_path):
    """$(step) and v_NAME of `variable NAME equal step` are the step where they are evaluated: 0
    before the first run, then the step the run before ended at; before the box LAMMPS refuses them."""
    tr = translate(HEAD + "variable s equal step\nprint \"start ${s}\"\nfix 1 all nve\nrun 5\n"
                   "run $(2*v_s) upto\nprint \"end $(step) $(v_s+1)\"\n", "in.lammps", {}, tmp_path)
    assert tr.tables["md"]["steps"] == 5 and tr.later[0][0]["md"]["steps"] == 10
    assert [n for n in tr.notices if n.startswith("print:")] == ["print: start 0", "print: end 10 11"]
    assert refusal(tmp_path, "units metal\nprint \"$(step)\"\n").startswith(
        "in.lammps:2: print: step before read_data / read_restart / create_box (LAMMPS refuses it too)")
    assert refusal(tmp_path, HEAD + "variable t equal pe\nprint \"${t}\"\n").startswith(
        "in.lammps:6: print: 'pe' in formula: numdp lmp evaluates formulas before it runs")


def test_loops_are_refused_with_what_to_write(tmp_path):
    for line in ("label loop", "next a", "jump SELF loop"):
        message = refusal(tmp_path, HEAD + line + "\n" + RUN)
        assert message.startswith(f"in.lammps:5: {line.split()[0]}: not supported by numdp lmp: write the loop's "
                                  "commands out"), message


def test_groups_are_defined_but_only_all_runs(tmp_path):
    """A group definition changes nothing; a fix, compute, dump or velocity on it is refused,
    DP-GEN's PKA (group first id 1, velocity first set) with what to write instead."""
    plain = tables(tmp_path, HEAD + RUN)
    assert tables(tmp_path, HEAD + "group O type 1\ngroup H type 2\ngroup both union O H\n" + RUN) == plain
    assert refusal(tmp_path, HEAD + "group O type 1\nfix 1 O nve\nrun 10\n").startswith(
        "in.lammps:6: fix: only group 'all' is supported by numdp lmp: group 'O' is defined, but")
    assert refusal(tmp_path, HEAD + "group O type 1\ndump 1 O custom 1 d.lammpstrj id x y z\n" + RUN).startswith(
        "in.lammps:6: dump: only group 'all' is supported by numdp lmp: group 'O' is defined, but")
    message = refusal(tmp_path, HEAD + "group first id 1\nvelocity first set 1.0 2.0 3.0\n" + RUN)
    assert message.startswith("in.lammps:6: velocity: only group 'all' is supported by numdp lmp: group 'first'")
    assert "Velocities section" in message
    assert refusal(tmp_path, HEAD + "fix 1 nope nve\nrun 10\n").startswith(
        "in.lammps:5: fix: only group 'all' is supported by numdp lmp, and group 'nope' is not defined")


def test_fix_recenter_translation(tmp_path):
    """fix recenter INIT|NULL on all keeps the centre of mass where it is, which numdp's dynamics
    do already when the total momentum is zero (velocity create, velocity all zero linear, fix
    momentum): accepted then, refused otherwise with what to add; another target is refused."""
    plain = tables(tmp_path, HEAD + "velocity all zero linear\n" + RUN)
    for extra in ("fix c all recenter INIT INIT INIT", "fix c all recenter INIT NULL INIT units box shift all"):
        assert tables(tmp_path, HEAD + "velocity all zero linear\n" + extra + "\n" + RUN) == plain, extra
    assert "velocities" in tables(tmp_path, HEAD + "velocity all create 300 7\nfix c all recenter INIT INIT INIT\n"
                                  + RUN)["system"]
    assert refusal(tmp_path, HEAD + "fix c all recenter INIT INIT INIT\n" + RUN).startswith(
        "in.lammps:5: fix: recenter: numdp keeps the centre of mass in place when the total momentum is zero: "
        "add `velocity all zero linear`")
    assert refusal(tmp_path, HEAD + "velocity all zero linear\nfix c all recenter 0 0 0\n" + RUN).startswith(
        "in.lammps:6: fix: recenter 0 0 0: numdp moves no atom to a point")
    tr = translate(HEAD + "velocity all zero linear\nfix c all recenter INIT INIT INIT\n" + RUN
                   + "unfix c\nrun 5\n", "in.lammps", {}, tmp_path)
    assert tr.later[0][0]["md"]["steps"] == 15
    assert not any(n.startswith("fix recenter") for n in tr.notices)
    npt = translate(HEAD + "velocity all zero linear\nfix c all recenter INIT INIT INIT\n"
                    "fix 1 all npt temp 300 300 0.1 iso 1 1 1\nrun 10\n", "in.lammps", {}, tmp_path)
    assert any(n.startswith("fix recenter with fix npt / nph") for n in npt.notices)   # a shift, not round-off


def test_fix_recenter_repeats_lammps(tmp_path, monkeypatch):
    """LAMMPS' fix nvt + fix recenter INIT INIT INIT after velocity all zero linear, 20 steps of
    192 water atoms whose data file carries a drift: numdp lmp ends at LAMMPS' positions and
    velocities to round-off."""
    case = np.load(DATA / "lmp_sweep2" / "nvt_recenter.npz")
    data = str(case["data"])
    (tmp_path / data).write_text((NH / data).read_text())
    (tmp_path / "in.lammps").write_text(
        f"units metal\nboundary p p p\natom_style atomic\nread_data {data}\npair_style deepmd {MODEL}\n"
        f"pair_coeff * *\nneighbor 1.0 bin\ntimestep 0.0005\nthermo 1\n{case['fix']}\n"
        f"dump 1 all custom {int(case['steps'])} final.dump id x y z vx vy vz\nrun {int(case['steps'])}\n")
    monkeypatch.chdir(tmp_path)
    assert cli_main(["lmp", "-i", "in.lammps"]) == 0
    lines = (tmp_path / "final.dump").read_text().splitlines()
    k = max(i for i, ln in enumerate(lines) if ln == "ITEM: TIMESTEP")
    a = np.array([[float(w) for w in ln.split()] for ln in lines[k + 9:]])
    a = a[np.argsort(a[:, 0])]
    ds = np.linalg.solve(case["box"].T, (case["x"] - a[:, 1:4]).T).T   # fractional, minimum image
    ds -= np.round(ds)
    assert np.abs(ds @ case["box"]).max() <= POS_TOL
    assert np.abs(case["v"] - a[:, 4:7]).max() <= VEL_TOL


@pytest.mark.parametrize("keywords, lammps", [("", "zero no"), (" zero no", "zero no"), (" zero yes", "zero yes")])
def test_langevin_notice_names_lammps_zero(tmp_path, keywords, lammps):
    """numdp's Langevin keeps the total momentum zero; LAMMPS' default zero no does not (its
    centre of mass diffuses and its temp reads 3N/(3N-3) of the target on average): the notice
    says which LAMMPS behaviour the script asked for."""
    tr = translate(HEAD + f"fix 1 all nve\nfix 2 all langevin 300 300 0.1 5{keywords}\nrun 10\n", "in.lammps", {},
                   tmp_path)
    (notice,) = [n for n in tr.notices if n.startswith("fix langevin")]
    assert lammps in notice
    if lammps == "zero no":
        assert "3N/(3N-3)" in notice


def test_enhance_sampling_template_keeps_its_fix_recenter(tmp_path):
    """DP-GEN's enhance-sampling template (velocity create ... mom yes, fix nvt, fix momentum 1
    linear 0 0 0, fix recenter INIT INIT INIT) translates with its recenter line once its bare
    PLUMED placeholder is deleted (before: "fix style 'recenter' is not supported")."""
    import shutil

    from test_sweep_lmp_templates import MODEL as PB, REV, TEMPLATES, dpgen_task_script, without

    task = tmp_path / "task"
    task.mkdir()
    for name in ("graph.000.pb", "graph.001.pb"):
        shutil.copy(PB, tmp_path / name)
    text = without(dpgen_task_script((TEMPLATES / "dpgen_enhance_sampling.lammps").read_text(), REV),
                   "fix            dpgen_plm")
    assert "recenter INIT INIT INIT" in text
    tr = translate(text, "input.lammps", {}, task)
    assert tr.tables["md"]["ensemble"] == "nvt" and "velocities" in tr.tables["system"]
