"""`numdp lmp` on users' own LAMMPS templates: DP-GEN's `template: {lmp: ...}` with `rev_mat`
(dpgen/generator/run.py `_make_model_devi_revmat`) and DeePMD-kit's example inputs.

The templates in tests/data/lmp_templates/ are verbatim copies: dpgen_enhance_sampling.lammps is
DP-GEN's examples/run/dp-lammps-enhance_sampling/lmp/input.lammps, dpgen_generator.lammps its
tests/generator/lmp/input.lammps (DP-GEN d5ce577f), deepmd_kit_water.lammps DeePMD-kit's
examples/water/lmp/in.lammps (bc902daf).  `dpgen_task_script` writes the script DP-GEN writes into a
task folder from a template (re-implemented from DP-GEN's description of it; DP-GEN is not needed).

What LAMMPS does (LAMMPS 22 Jul 2025 with DeePMD-kit 3.2's pair_style deepmd, by hand):
- `run_style verlet` is its default integrator, velocity Verlet, the one numdp runs;
- `fix ID all momentum N linear 0 0 0` zeroes no component: 5 NVE steps of 192 water atoms whose
  velocities carry a drift gave a dump equal byte for byte to the run without the fix;
- `compute ID all temp|pe|ke` print, as `c_ID`, the same 15 digits as thermo's temp, pe, ke;
- `timer` changes what LAMMPS times and prints, but `timer timeout T` ends the run early;
- a bare `fix dpgen_plm` (DP-GEN writes it out only with model_devi_plumed) and a bare
  `pair_coeff` are errors ("Illegal fix command", "Illegal pair_coeff command").
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from numdp.cli import main as cli_main
from numdp.errors import InputError
from numdp.lammps.translate import translate

DATA = Path(__file__).parent / "data"
TEMPLATES = DATA / "lmp_templates"
MODEL = DATA / "tensorflow" / "tf_one_side_f64.pb"   # type_map O H
CONF = DATA / "lammps_nh" / "water.data"              # 192 water atoms, types 1 (O) and 2 (H)


def dpgen_task_script(template: str, rev: dict, models=("../graph.000.pb", "../graph.001.pb"), trj_freq=5,
                      plumed=False) -> str:
    """DP-GEN's input.lammps of a model_devi task made from `template` (deepmd-kit >= 1, no D3):
    the pair_style deepmd line is rewritten with the models, `out_freq trj_freq` and model_devi.out
    (unless the template wrote a complete one), the `dump dpgen_dump` line becomes a custom dump of
    `id type x y z` to traj/*.lammpstrj every trj_freq steps, each key of `rev` (rev_mat's lmp keys)
    is replaced by its value wherever it occurs, and with `plumed` (model_devi_plumed) the `fix
    dpgen_plm` line becomes fix plumed."""
    lines = template.splitlines(keepends=True)
    pair = [k for k, ln in enumerate(lines) if not ln.startswith("#") and "pair_style" in ln and "deepmd" in ln]
    if not pair or len(lines[pair[-1]].split()) != len(models) + 6:
        (k,) = [k for k, ln in enumerate(lines) if ln.split()[:2] == ["pair_style", "deepmd"]]
        lines[k] = f"pair_style      deepmd {' '.join(models)} out_freq {trj_freq} out_file model_devi.out \n"
    (k,) = [k for k, ln in enumerate(lines) if ln.split()[:2] == ["dump", "dpgen_dump"]]
    lines[k] = f"dump            dpgen_dump all custom {trj_freq} traj/*.lammpstrj id type x y z\n"
    for key, value in rev.items():
        lines = [ln.replace(key, str(value)) for ln in lines]
    if plumed:
        (k,) = [k for k, ln in enumerate(lines) if ln.split()[:2] == ["fix", "dpgen_plm"]]
        lines[k] = "fix            dpgen_plm all plumed plumedfile input.plumed outfile output.plumed\n"
    return "".join(lines)


REV = {"V_NSTEPS": 10, "V_TEMP": 300, "V_PRES": 1}   # rev_mat of DP-GEN's enhance-sampling example (shorter)


def refusal(text: str, base: Path) -> str:
    with pytest.raises(InputError) as err:
        translate(text, "input.lammps", {}, base)
    assert "\n" not in str(err.value)
    return str(err.value)


def without(text: str, *starts: str) -> str:
    """`text` without the lines that begin with one of `starts` (what a user deletes)."""
    return "".join(ln for ln in text.splitlines(keepends=True) if not ln.lstrip().startswith(starts))


def test_dpgen_template_placeholders_are_refused_in_one_line(tmp_path):
    """DP-GEN's enhance-sampling template through DP-GEN's substitution: with model_devi_plumed the
    fix plumed is refused by name; without it DP-GEN leaves its bare `fix dpgen_plm`, which LAMMPS
    refuses too: the line says what it is (before: "only group 'all' is supported").  The generator
    template's bare `pair_coeff` is refused in one line (LAMMPS refuses it too)."""
    enhance = (TEMPLATES / "dpgen_enhance_sampling.lammps").read_text()
    assert refusal(dpgen_task_script(enhance, REV, plumed=True), tmp_path) == (
        "input.lammps:32: fix: fix style 'plumed' is not supported by numdp lmp (nve, nvt, npt, nph, langevin, "
        "temp/csvr, momentum, recenter, box/relax, setforce)")
    message = refusal(without(dpgen_task_script(enhance, REV), "run_style"), tmp_path)
    assert message.startswith("input.lammps:31: fix: `fix dpgen_plm` is DP-GEN's template placeholder")
    assert "model_devi_plumed" in message and "delete it" in message
    assert refusal("units metal\nfix 3\n", tmp_path) == (
        "input.lammps:2: fix: expected: fix ID GROUP STYLE ... (LAMMPS refuses it too)")
    generator = dpgen_task_script((TEMPLATES / "dpgen_generator.lammps").read_text(), REV)
    assert refusal(generator, tmp_path).startswith("input.lammps:22: pair_coeff: ")


def test_run_style_verlet_and_momentum_linear_0_0_0_change_nothing(tmp_path):
    """`run_style verlet` (LAMMPS' default) and `fix momentum 1 linear 0 0 0` (a fix that zeroes no
    component) were refused; they are accepted and the tables are those of the script without
    them: the data file's momentum kept.  Other run styles and partial `linear` flags, which would
    change the dynamics, are refused in one line."""
    enhance = without(dpgen_task_script((TEMPLATES / "dpgen_enhance_sampling.lammps").read_text(), REV),
                      "fix            dpgen_plm", "fix            3")
    task = tmp_path / "task"
    task.mkdir()
    shutil.copy(MODEL, tmp_path / "graph.000.pb")
    (task / "conf.lmp").write_text(CONF.read_text())
    tables = translate(enhance, "input.lammps", {}, task).tables
    plain = translate(without(enhance, "run_style", "fix            2"), "input.lammps", {}, task).tables
    assert tables == plain
    assert tables["system"]["momentum"] == "keep"
    assert tables["output"]["columns"] == ["id", "type", "x", "y", "z"]
    head = "units metal\nread_data conf.lmp\npair_style deepmd model.pb\npair_coeff * *\n"
    assert refusal(head + "run_style respa 2 2\n", tmp_path) == (
        "input.lammps:5: run_style: run_style respa 2 2: numdp integrates with velocity Verlet "
        "(run_style verlet, LAMMPS' default) only")
    for line in ("fix 2 all momentum 1 linear 1 1 0", "fix 2 all momentum 1 linear 1 1 1 angular",
                 "fix 2 all momentum 1 linear 0 0 0 rescale"):
        assert refusal(head + line + "\n", tmp_path).startswith(
            "input.lammps:5: fix: numdp lmp accepts `fix ID all momentum N linear 1 1 1` (and `linear 0 0 0`")
    assert refusal(head + "fix 2 all momentum 0 linear 0 0 0\n", tmp_path).endswith("N must be > 0 (as LAMMPS)")


SCRIPT = """units metal
atom_style atomic
read_data conf.lmp
pair_style deepmd model.pb
pair_coeff * *
{extra}
fix 1 all nvt temp 300 300 0.1
run 10
"""


def tables_of(tmp_path, extra: str) -> dict:
    (tmp_path / "conf.lmp").write_text(CONF.read_text())
    shutil.copy(MODEL, tmp_path / "model.pb")
    return translate(SCRIPT.format(extra=extra), "in.lammps", {}, tmp_path).tables


def test_timer_is_accepted_but_its_timeout(tmp_path):
    """timer only changes LAMMPS' timing output (was refused); `timer timeout T` ends LAMMPS' run
    early, which numdp does not do: refused."""
    plain = tables_of(tmp_path, "")
    for line in ("timer off", "timer full sync every 100", "timer timeout off", "timer loop nosync"):
        assert tables_of(tmp_path, line) == plain
    with pytest.raises(InputError, match=r"^in.lammps:6: timer: timer timeout 23:50:00: numdp lmp runs every "
                                         r"step of the run"):
        tables_of(tmp_path, "timer timeout 23:50:00 every 100")


def test_computes_of_thermo_keywords_in_thermo_style(tmp_path):
    """`compute ID all temp|pe|ke` printed as c_ID (was refused at `compute`) are thermo's temp, pe,
    ke (LAMMPS prints the same digits); LAMMPS' own thermo_temp / thermo_press / thermo_pe too.
    Other computes, keywords and a compute ID defined twice are refused in one line."""
    extra = "compute myT all temp\ncompute mype all pe\ncompute kk all ke\n" \
            "thermo_style custom step c_myT c_mype c_kk c_thermo_press etotal"
    assert tables_of(tmp_path, extra)["output"]["thermo_columns"] == ["step", "temp", "pe", "ke", "press", "etotal"]
    for line, message in [("compute 1 all msd", "compute msd: numdp lmp accepts `compute ID all temp|pe|ke` only"),
                          ("compute 1 all pe pair", "compute pe pair: numdp lmp accepts"),
                          ("compute thermo_temp all temp", "compute ID 'thermo_temp' is defined already"),
                          ("compute 1 real_atom temp", "only group 'all' is supported")]:
        with pytest.raises(InputError, match="^in.lammps:6: compute: " + message.replace("|", r"\|")):
            tables_of(tmp_path, line)
    # a compute of another style, or an undefined one, still gives numdp's own columns and a notice
    tr = translate(SCRIPT.format(extra="thermo_style custom step c_nope"), "in.lammps", {}, tmp_path)
    assert "thermo_columns" not in tr.tables["output"]


def test_enhance_sampling_template_runs_and_writes_what_dpgen_reads(tmp_path, monkeypatch, capsys):
    """DP-GEN's enhance-sampling template, substituted as DP-GEN does, without its PLUMED
    placeholder: numdp lmp runs it (run_style verlet, fix momentum linear 0 0 0 and fix recenter accepted)
    and writes what DP-GEN reads: traj/STEP.lammpstrj every trj_freq steps with `id type x y z`,
    model_devi.out with a row every out_freq steps from 0, and thermo with the template's columns."""
    task = tmp_path / "iter.000000" / "01.model_devi" / "task.000.000000"
    (task / "traj").mkdir(parents=True)
    for name in ("graph.000.pb", "graph.001.pb"):
        shutil.copy(MODEL, task.parent / name)
    (task / "conf.lmp").write_text(CONF.read_text())
    text = without(dpgen_task_script((TEMPLATES / "dpgen_enhance_sampling.lammps").read_text(), REV),
                   "fix            dpgen_plm")
    (task / "input.lammps").write_text(text)
    monkeypatch.chdir(task)
    assert cli_main(["lmp", "-i", "input.lammps", "-v", "restart", "0"]) == 0
    assert sorted(int(p.stem) for p in (task / "traj").glob("*.lammpstrj")) == [0, 5, 10]
    frame = (task / "traj" / "10.lammpstrj").read_text().splitlines()
    assert frame[:2] == ["ITEM: TIMESTEP", "10"] and frame[8] == "ITEM: ATOMS id type x y z"
    assert len(frame) == 9 + 192
    rows = np.loadtxt(task / "model_devi.out", ndmin=2)
    assert rows[:, 0].tolist() == [0, 5, 10] and rows.shape[1] == 7
    log = (task / "log.lammps").read_text().splitlines()
    assert any(ln.split() == ["Step", "Temp", "PotEng", "TotEng", "Press"] for ln in log)


@pytest.mark.parametrize("name", ["deepmd_kit_water.lammps"])
def test_deepmd_kit_examples_translate_as_they_are(tmp_path, name):
    """DeePMD-kit's example input runs as written (its neigh_modify every 10 delay 0 check no
    accepted: numdp's list is always complete), its dump and thermo columns the script's."""
    (tmp_path / "water.lmp").write_text(CONF.read_text())
    shutil.copy(MODEL, tmp_path / "frozen_model.pb")
    tables = translate((TEMPLATES / name).read_text(), "in.lammps", {}, tmp_path).tables
    assert tables["output"]["trajectory"] == "water.dump"
    assert tables["output"]["columns"] == ["id", "type", "x", "y", "z"]
    assert tables["output"]["thermo_columns"] == ["step", "pe", "ke", "etotal", "temp", "press", "vol"]
    assert tables["md"]["steps"] == 1000 and tables["md"]["timestep"] == 0.0005
