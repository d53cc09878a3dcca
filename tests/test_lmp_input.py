"""`numdp lmp`: the LAMMPS-language reader (numdp.lammps.script), the translation of commands into
numdp run's tables (numdp.lammps.translate), and DP-GEN's exploration script run end to end.

`dpgen_script` writes the script DP-GEN's make_lammps_input (dpgen/generator/lib/lammps.py)
writes for one ensemble, from reading that function (deepmodeling/dpgen, 2026), with its
restart lines: `numdp lmp -i input.lammps -v restart 0` must run it as numdp run runs the
equivalent TOML (the same code path, so the trajectories are equal byte for byte)."""
from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

from numdp.cli import main as cli_main
from numdp.errors import InputError
from numdp.io.model_file import write_model
from numdp.io.structure import read_lammps_data, write_lammps_data
from numdp.lammps.script import Command, Script
from numdp.lammps.translate import lammps_bar, lammps_kelvin, translate
from randmodel import random_params
from test_mpi import rocksalt


# -- the language ----------------------------------------------------------------------------------

def run_script(text, cli=None):
    """(commands handed on, the Script) of `text`."""
    seen = []
    script = Script("in.lammps", seen.append, cli)
    script.run(textwrap.dedent(text))
    return seen, script


@pytest.mark.parametrize("formula, value", [
    ("1 + 2*3", 7.0), ("(1 + 2)*3", 9.0), ("2^3^2", 64.0), ("-2^2", 4.0), ("10/4", 2.5), ("7 % 3", 1.0),
    ("2*PI", 2 * math.pi), ("sqrt(16) + abs(-1)", 5.0), ("1 < 2 && 3 >= 3", 1.0), ("!(1 == 1) || 0", 0.0),
    ("1e3*2.5e-1", 250.0), (".5 + 1.", 1.5), ("v_A * v_B - 1", 29.0),
])
def test_formulas(formula, value):
    _, script = run_script("variable A equal 5\nvariable B equal v_A+1\n")
    assert script.evaluate(formula) == pytest.approx(value, rel=1e-15)


def test_substitution_comments_continuation_and_quotes():
    seen, script = run_script("""
        variable  T equal 300.0/3   # a comment
        variable  N equal 2*5
        variable  x index abc
        fix 1 all nvt temp ${T} $(v_T*2) &
            0.1   # continued
        print "T = ${T}"   # printed, not handed on
        dump 1 all custom ${N} "traj/*.lammpstrj" id # type
        foo $x '${N}'
        """)
    assert seen == [Command(5, "fix", ("1", "all", "nvt", "temp", "100", "200", "0.1")),
                    Command(8, "dump", ("1", "all", "custom", "10", "traj/*.lammpstrj", "id")),
                    Command(9, "foo", ("abc", "${N}"))]
    assert script.printed == ["T = 100"]   # print substitutes the variables of its quoted text, as LAMMPS


def test_cli_variables_and_if_on_restart():
    text = """
        variable X index 5
        if "${restart} > 0" then "read_restart a.*" else "read_data conf.lmp" "mass 1 2"
        if "${restart} == 0" then "velocity all create ${X} 7"
        """
    seen, _ = run_script(text, {"restart": "0", "X": "3"})   # -v X 3 wins over the script's index X
    assert [(c.name, c.args) for c in seen] == [("read_data", ("conf.lmp",)), ("mass", ("1", "2")),
                                                ("velocity", ("all", "create", "3", "7"))]
    seen, _ = run_script(text, {"restart": "1"})
    assert [(c.name, c.args) for c in seen] == [("read_restart", ("a.*",))]
    seen, _ = run_script('if "${a} > 1" then "x 1" elif "${a} > 0" "x 2" else "x 3"', {"a": "0.5"})
    assert [c.args for c in seen] == [("2",)]


@pytest.mark.parametrize("text, message", [
    ("units metal\nread_data ${nope}\n", "in.lammps:2: read_data: variable nope is not defined (give it with -v nope VALUE)"),
    ('\n\nif "${again} > 0" then "x"\n', "in.lammps:3: if: variable again is not defined"),
    ("variable T equal '1 +'\n", "in.lammps:1: variable: formula '1 +' ends early"),
    ("variable T equal temp*2\n", "in.lammps:1: variable: 'temp' in formula 'temp*2': thermo keywords"),
    ("variable restart equal 1\n", "in.lammps:1: variable: cannot redefine variable restart as style equal"),
    ("variable a equal 1/0\nx ${a}\n", "in.lammps:2: x: division by zero"),
    ("label loop\n", "in.lammps:1: label: not supported by numdp lmp"),
])
def test_language_errors_name_the_line_and_the_command(text, message):
    with pytest.raises(InputError) as err:
        run_script(text, {"restart": "0"})
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


# -- DP-GEN's script -------------------------------------------------------------------------------

FIX = {"nvt": "fix             1 all nvt temp ${TEMP} ${TEMP} ${TAU_T}\n",
       "nve": "fix             1 all nve\n"}
FIX.update({ens: f"fix             1 all npt temp ${{TEMP}} ${{TEMP}} ${{TAU_T}} {style} ${{PRES}} ${{PRES}} "
                 f"${{TAU_P}}\n" for ens, style in (("npt-iso", "iso"), ("npt-a", "aniso"), ("npt-tri", "tri"))})


def dpgen_script(ensemble, models=("graph.000.h5", "graph.001.h5"), nsteps=10, trj_freq=5, temp=50.0,
                 pres=1.0, tau_t=0.1, tau_p=0.5, dt=0.001, seed=1234, masses=(12.0, 16.0), keywords="atomic "):
    """The script of DP-GEN's make_lammps_input (deepmd-kit >= 1, no PIMD, no D3, no PKA)."""
    s = f"variable        NSTEPS          equal {nsteps}\n"
    s += f"variable        THERMO_FREQ     equal {trj_freq}\n"
    s += f"variable        DUMP_FREQ       equal {trj_freq}\n"
    s += f"variable        TEMP            equal {temp:f}\n"
    s += f"variable        PRES            equal {pres:f}\n"
    s += f"variable        TAU_T           equal {tau_t:f}\n"
    s += f"variable        TAU_P           equal {tau_p:f}\n\n"
    s += "units           metal\nboundary        p p p\natom_style      atomic\n\n"
    s += "neighbor        1.0 bin\nneigh_modify    delay 10\n\nbox          tilt large\n"
    s += 'if "${restart} > 0" then "read_restart dpgen.restart.*" else "read_data conf.lmp"\n'
    s += "change_box   all triclinic\n"
    s += "".join(f"mass            {k + 1} {m:f}\n" for k, m in enumerate(masses))
    s += f"pair_style      deepmd {' '.join(models)} out_freq ${{THERMO_FREQ}} out_file model_devi.out {keywords}\n"
    s += "pair_coeff      * *\n\n"
    s += "thermo_style    custom step temp pe ke etotal press vol lx ly lz xy xz yz\n"
    s += "thermo          ${THERMO_FREQ}\n"
    s += "dump            1 all custom ${DUMP_FREQ} traj/*.lammpstrj id type x y z fx fy fz\n"
    s += "restart         10000 dpgen.restart\n\n"
    s += f'if "${{restart}} == 0" then "velocity        all create ${{TEMP}} {seed}"'
    s += "\n" + FIX[ensemble] + "\n"
    s += f"timestep        {dt:f}\nrun             ${{NSTEPS}} upto\n"
    return s


def expected_tables(ensemble):
    md = {"timestep": 0.001, "steps": 10, "ensemble": ensemble.split("-")[0], "seed": 1234}
    if ensemble != "nve":
        md["thermostat"] = {"kind": "nose-hoover", "temperature": lammps_kelvin(50.0), "tau": 0.1, "chain": 3,
                            "form": "lammps"}
    if ensemble.startswith("npt"):
        md["barostat"] = {"kind": "mtk", "pressure": lammps_bar(1.0), "tau": 0.5,
                          "coupling": {"npt-iso": "isotropic", "npt-a": "anisotropic", "npt-tri": "triclinic"}[ensemble],
                          "chain": 3, "form": "lammps"}
    return {"model": {"file": ["graph.000.h5", "graph.001.h5"]},
            "system": {"file": "conf.lmp", "momentum": "keep", "masses": {"A": 12.0, "B": 16.0},
                       "velocities": {"temperature": lammps_kelvin(50.0), "seed": 1234}},
            "md": md,
            "neighbor": {"skin": 1.0},
            "output": {"trajectory": "traj/*.lammpstrj", "format": "lammps-dump", "every": 5,
                       "columns": ["id", "type", "x", "y", "z", "fx", "fy", "fz"], "triclinic_bounds": True,
                       "end_frame": False, "thermo_every": 5,
                       "thermo_columns": ["step", "temp", "pe", "ke", "etotal", "press", "vol", "lx", "ly", "lz",
                                          "xy", "xz", "yz"], "thermo_header": "lammps",
                       "log": "log.lammps", "checkpoint": "dpgen.restart.*", "checkpoint_every": 10000},
            "safety": {"min_distance": 0.0},   # LAMMPS has no close-contact stop
            "model_devi": {"every": 5, "file": "model_devi.out", "atomic": True}}


def _model(seed, type_map=("A", "B")):
    params = random_params(ntypes=2, sel=[24, 24], neuron=(4, 8), axis_neuron=2, fitting=(8, 8), rcut=4.0,
                           rcut_smth=1.0, seed=seed)
    params.type_map = list(type_map)
    return params


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    """A DP-GEN task folder: two models and conf.lmp (a 64-atom triclinic rocksalt crystal)."""
    path = tmp_path_factory.mktemp("task")
    write_model(_model(2), path / "graph.000.h5")
    write_model(_model(3), path / "graph.001.h5")
    x, t, box = rocksalt((2, 2, 2))
    write_lammps_data(path / "conf.lmp", t, x, box)
    return path


def _folder(task, dest: Path) -> Path:
    dest.mkdir()
    for name in ("graph.000.h5", "graph.001.h5", "conf.lmp"):
        (dest / name).symlink_to(task / name)
    return dest


def numdp(folder, monkeypatch, *argv):
    monkeypatch.chdir(folder)
    return cli_main(list(argv))


def read_dump(path):
    """(step, box (3, 3) rows, columns, table) of a one-frame LAMMPS dump, parsed independently."""
    lines = path.read_text().splitlines()
    assert lines[0] == "ITEM: TIMESTEP" and lines[2] == "ITEM: NUMBER OF ATOMS"
    n = int(lines[3])
    assert lines[4].startswith("ITEM: BOX BOUNDS xy xz yz pp pp pp")
    (xlo_b, xhi_b, xy), (ylo_b, yhi_b, xz), (zlo, zhi, yz) = (list(map(float, ln.split())) for ln in lines[5:8])
    xlo, xhi = xlo_b - min(0.0, xy, xz, xy + xz), xhi_b - max(0.0, xy, xz, xy + xz)
    ylo, yhi = ylo_b - min(0.0, yz), yhi_b - max(0.0, yz)
    box = np.array([[xhi - xlo, 0, 0], [xy, yhi - ylo, 0], [xz, yz, zhi - zlo]])
    assert lines[8].startswith("ITEM: ATOMS ")
    table = np.array([[float(w) for w in ln.split()] for ln in lines[9:9 + n]])
    assert len(lines) == 9 + n
    return int(lines[1]), box, lines[8].split()[2:], table


@pytest.mark.parametrize("ensemble", ["nvt", "npt-iso", "npt-tri", "nve"])
def test_dpgen_script_runs_as_numdp_run_runs_its_tables(task, tmp_path, monkeypatch, capsys, ensemble):
    lmp = _folder(task, tmp_path / "lmp")
    (lmp / "input.lammps").write_text(dpgen_script(ensemble))
    tr = translate(dpgen_script(ensemble), "input.lammps", {"restart": "0"}, lmp)
    # LAMMPS' box centre (its fixed point under fix npt), conf.lmp's box being from 0
    center = tr.tables["output"].pop("box_center")
    assert center == pytest.approx(0.5 * np.diag(rocksalt((2, 2, 2))[2]), rel=1e-15)
    assert tr.tables == expected_tables(ensemble)
    assert numdp(lmp, monkeypatch, "lmp", "-i", "input.lammps", "-v", "restart", "0") == 0
    out = capsys.readouterr().out
    assert "fix npt: numdp's Martyna-Tobias-Klein barostat" not in out   # LAMMPS' equations now: no notice
    # numdp run on the printed equivalent input, in another folder
    ref = _folder(task, tmp_path / "run")
    assert numdp(lmp, monkeypatch, "lmp", "-i", "input.lammps", "-v", "restart", "0", "--print-toml") == 0
    (ref / "md.toml").write_text(capsys.readouterr().out)
    assert numdp(ref, monkeypatch, "run", "md.toml") == 0
    steps = (0, 5, 10)
    assert sorted(p.name for p in (lmp / "traj").iterdir()) == sorted(f"{s}.lammpstrj" for s in steps)
    for s in steps:
        a = (lmp / "traj" / f"{s}.lammpstrj").read_text()
        assert a == (ref / "traj" / f"{s}.lammpstrj").read_text()   # same code path: byte for byte
        step, box, columns, table = read_dump(lmp / "traj" / f"{s}.lammpstrj")
        assert step == s and columns == ["id", "type", "x", "y", "z", "fx", "fy", "fz"]
        assert np.array_equal(table[:, 0], np.arange(1, 65)) and set(table[:, 1]) == {1.0, 2.0}
        frac = np.linalg.solve(box.T, table[:, 2:5].T).T   # x y z: wrapped into the box
        assert np.all(frac >= -1e-12) and np.all(frac < 1 + 1e-12)
    devi = np.loadtxt(lmp / "model_devi.out", ndmin=2)
    assert devi[:, 0].tolist() == list(steps) and devi.shape[1] == 7 + 64   # atomic: one column per atom
    assert (lmp / "model_devi.out").read_text() == (ref / "model_devi.out").read_text()
    # LAMMPS' restart N ROOT names: ROOT.STEP (numdp writes one at the end of the run too)
    assert (lmp / "log.lammps").is_file() and (lmp / "dpgen.restart.10").is_file()


def test_dpgen_dump_parses_with_dpdata_and_matches_the_run_positions(task, tmp_path, monkeypatch, capsys):
    """dpdata (what DP-GEN reads the frames with) gets numdp run's own positions back, wrapped."""
    import dpdata   # a test dependency (pyproject's test extra)
    import h5py

    lmp = _folder(task, tmp_path / "lmp")
    (lmp / "input.lammps").write_text(dpgen_script("nvt"))
    assert numdp(lmp, monkeypatch, "lmp", "-i", "input.lammps", "-v", "restart", "0", "--print-toml") == 0
    toml = capsys.readouterr().out.replace('trajectory = "traj/*.lammpstrj"\nformat = "lammps-dump"',
                                           'trajectory = "traj.h5md"\nformat = "h5md"')
    toml = toml.replace('columns = ["id", "type", "x", "y", "z", "fx", "fy", "fz"]', 'fields = ["position"]')
    toml = toml.replace("triclinic_bounds = true\n", "")   # (lammps-dump's)
    ref = _folder(task, tmp_path / "ref")
    (ref / "md.toml").write_text(toml)
    assert numdp(lmp, monkeypatch, "lmp", "-i", "input.lammps", "-v", "restart", "0") == 0
    assert numdp(ref, monkeypatch, "run", "md.toml") == 0
    with h5py.File(ref / "traj.h5md", "r") as f:
        pos = f["particles/trajectory/position/value"][()]
        boxes = f["particles/trajectory/box/edges/value"][()]
    for k, s in enumerate((0, 5, 10)):
        system = dpdata.System(str(lmp / "traj" / f"{s}.lammpstrj"), fmt="lammps/dump", type_map=["A", "B"])
        assert system.get_natoms() == 64 and system["atom_names"] == ["A", "B"]
        np.testing.assert_allclose(system["cells"][0], boxes[k], rtol=0, atol=1e-12)   # already LAMMPS' form
        frac = np.linalg.solve(boxes[k].T, pos[k].T).T
        wrapped = (frac - np.floor(frac)) @ boxes[k]
        d = system["coords"][0] - wrapped   # equal up to the wrap's last bits (and a whole cell at a face)
        d -= np.round(np.linalg.solve(boxes[k].T, d.T).T) @ boxes[k]
        assert np.abs(d).max() < 1e-12


def test_restart_continues_from_the_checkpoint(task, tmp_path, monkeypatch, capsys):
    """-v restart 1 reads dpgen.restart.* (the numdp checkpoint of the largest step, as LAMMPS'
    read_restart picks) and runs up to NSTEPS; a later checkpoint joins the series."""
    lmp = _folder(task, tmp_path / "lmp")
    (lmp / "input.lammps").write_text(dpgen_script("nvt", nsteps=5))
    assert numdp(lmp, monkeypatch, "lmp", "-i", "input.lammps", "-v", "restart", "0") == 0
    (lmp / "input.lammps").write_text(dpgen_script("nvt", nsteps=10))
    tr = translate(dpgen_script("nvt", nsteps=10), "input.lammps", {"restart": "1"}, lmp)
    assert tr.tables["system"] == {"file": "dpgen.restart.5"} and tr.tables["md"]["steps"] == 10
    assert numdp(lmp, monkeypatch, "lmp", "-i", "input.lammps", "-v", "restart", "1") == 0
    full = _folder(task, tmp_path / "full")
    (full / "input.lammps").write_text(dpgen_script("nvt", nsteps=10))
    assert numdp(full, monkeypatch, "lmp", "-i", "input.lammps", "-v", "restart", "0") == 0
    assert (lmp / "traj" / "10.lammpstrj").read_text() == (full / "traj" / "10.lammpstrj").read_text()
    assert (lmp / "model_devi.out").read_text() == (full / "model_devi.out").read_text()
    assert sorted(p.name for p in lmp.glob("dpgen.restart.*")) == ["dpgen.restart.10", "dpgen.restart.5"]
    tr = translate(dpgen_script("nvt", nsteps=10), "input.lammps", {"restart": "1"}, lmp)
    assert tr.tables["system"] == {"file": "dpgen.restart.10"}   # the largest step, not the first name
    # a new run keeps the earlier run's frames as #N.lammpstrj.1# (LAMMPS would overwrite them)
    before = {p.name: p.read_text() for p in (lmp / "traj").iterdir()}
    assert numdp(lmp, monkeypatch, "lmp", "-i", "input.lammps", "-v", "restart", "0") == 0
    assert "0.lammpstrj to #0.lammpstrj.1#" in capsys.readouterr().out
    for name, text in before.items():
        assert (lmp / "traj" / f"#{name}.1#").read_text() == text
    assert sorted(p.name for p in (lmp / "traj").iterdir() if not p.name.startswith("#")) == sorted(before)
    # commands that would change the restored state are refused, not ignored
    for old_line, new_line, message in (
            ("mass            2 16.000000", "mass            2 17.000000", "input.lammps:20: mass: B 17.0 after read_restart: the checkpoint's B mass is 16.0"),
            ('if "${restart} == 0" then "velocity', 'if "${restart} >= 0" then "velocity',
             "input.lammps:29: velocity: velocity create after read_restart"),
            ("boundary        p p p", "boundary        p p f", "input.lammps: boundary p p f: the checkpoint")):
        with pytest.raises(InputError) as err:
            translate(dpgen_script("nvt").replace(old_line, new_line), "input.lammps", {"restart": "1"}, lmp)
        assert str(err.value).startswith(message)


def test_pair_coeff_elements_map_lammps_types_to_the_model(tmp_path, monkeypatch, capsys):
    """Data-file types 1 = H, 2 = O against a model whose type_map is [O, H]."""
    write_model(_model(2, ("O", "H")), tmp_path / "m.h5")
    x, t, box = rocksalt((2, 2, 2))
    write_lammps_data(tmp_path / "h2o.data", t, x, box)   # type 1 (t = 0): the H sites
    script = """
        units metal
        read_data h2o.data
        mass 1 2.0
        mass 2 16.0
        pair_style deepmd m.h5
        pair_coeff * * H O
        dump d all custom 1 one.lammpstrj id type element x y z
        velocity all create 300 5
        fix 1 all nve
        run 3
        write_data end.data nocoeff
        """
    (tmp_path / "in.lammps").write_text(textwrap.dedent(script))
    tr = translate(textwrap.dedent(script), "in.lammps", {}, tmp_path)
    assert tr.tables["system"] == {"file": "h2o.data", "momentum": "keep", "type_names": ["H", "O"],
                                   "masses": {"H": 2.0, "O": 16.0},
                                   "velocities": {"temperature": lammps_kelvin(300.0), "seed": 5}}
    assert "model_devi" not in tr.tables and tr.tables["model"] == {"file": "m.h5"}
    assert numdp(tmp_path, monkeypatch, "lmp", "-i", "in.lammps") == 0
    rows = [ln.split() for ln in (tmp_path / "one.lammpstrj").read_text().splitlines()[9:9 + len(t)]]   # frame 0
    assert [r[2] for r in rows] == [["H", "O"][k] for k in t]
    assert [r[1] for r in rows] == [["2", "1"][k] for k in t]   # the model's type index + 1
    # write_data: the final checkpoint's state with the script's types (1 = H), masses, velocities
    from numdp.io.h5md import read_frame
    from numdp.io.structure import lammps_box

    end, final = read_lammps_data(tmp_path / "end.data"), read_frame(tmp_path / "checkpoint.h5")
    assert final["step"] == 3 and end.type_ids.tolist() == t.tolist()
    assert end.masses.tolist() == [[2.0, 16.0][k] for k in t]
    h, q = lammps_box(final["box"])
    assert np.allclose(end.box, h, rtol=0, atol=1e-9)           # %.10f
    assert np.allclose(end.positions, final["positions"] @ q, rtol=0, atol=2e-9)
    assert np.allclose(end.velocities, final["velocities"] @ q, rtol=0, atol=1e-9)
    assert np.abs(end.velocities).max() > 1.0                   # the run's velocities, not zeros
    early = textwrap.dedent(script).replace("velocity all", "write_data early.data\nvelocity all")
    with pytest.raises(InputError, match="write_data before run / minimize"):
        translate(early, "in.lammps", {}, tmp_path)
    with pytest.raises(InputError, match="write_data: expected: write_data FILE"):
        translate(textwrap.dedent(script).replace("end.data nocoeff", "end.data pair ii"), "in.lammps", {}, tmp_path)


HEADER = """
    units metal
    read_data conf.lmp
    mass 1 12.0
    mass 2 16.0
    pair_style deepmd graph.000.h5
    pair_coeff * *
    """
"""The task fixture's system and model, the first lines of the hand-written scripts below."""

BASE = HEADER + """{line}
    run 10
    """


@pytest.mark.parametrize("line, message", [
    ("fix 1 all temp/berendsen 300 300 0.1", "in.lammps:8: fix: fix style 'temp/berendsen' is not supported"),
    ("compute 1 all msd", "in.lammps:8: compute: compute msd: numdp lmp accepts `compute ID all temp|pe|ke` only"),
    ("fix 1 all nvt temp 300 300 0.1 drag 1", "in.lammps:8: fix: drag 1: numdp lmp runs LAMMPS' default drag"),
    ("velocity all create 300 1 mom no", "in.lammps:8: velocity: keyword mom no is not supported"),
    ("dump 1 all custom 10 d.lammpstrj id type q", "in.lammps:8: dump: column 'q' is not supported"),
    ("neigh_modify exclude type 1 2", "in.lammps:8: neigh_modify: keyword 'exclude' is not supported"),
])
def test_commands_that_change_the_physics_are_refused_in_one_line(task, tmp_path, monkeypatch, capsys,
                                                                  line, message):
    folder = _folder(task, tmp_path / "t")
    (folder / "in.lammps").write_text(textwrap.dedent(BASE.format(line=line)))
    assert numdp(folder, monkeypatch, "lmp", "-i", "in.lammps") == 2
    err = capsys.readouterr().err
    assert err.startswith("numdp lmp: error: " + message) and err.count("\n") == 1


@pytest.mark.parametrize("text, message", [
    ("units lj\n", "in.lammps:1: units: numdp lmp runs units metal only"),
    ("read_data conf.lmp\nunits metal\n", "in.lammps:2: units: units after read_data"),
    ("units metal\npair_style lj/cut 2.5\n", "in.lammps:2: pair_style: numdp lmp runs pair_style deepmd only"),
    ("units metal\npair_style deepmd g.pb aparam_from_compute 1\n",
     "in.lammps:2: pair_style: keyword aparam_from_compute is not supported"),
    ("units metal\npair_style deepmd g.pb aparam out_freq 10\n",
     "in.lammps:2: pair_style: keyword aparam needs the model's atomic parameters (numbers)"),
    ("units metal\npair_style deepmd g.pb fparam out_freq 10\n",
     "in.lammps:2: pair_style: keyword fparam needs the model's frame parameters"),
    ("units metal\nread_data conf.lmp\npair_style deepmd g.h5\npair_coeff * *\nfix 1 all nve\n",
     "in.lammps: the script has no run or minimize command"),
    ("read_data conf.lmp\n", "in.lammps: the script sets no `units metal`"),
])
def test_translation_errors(tmp_path, text, message):
    with pytest.raises(InputError) as err:
        translate(text, "in.lammps", {}, tmp_path)
    assert str(err.value).startswith(message)


def test_defaults_of_a_hand_written_script(tmp_path):
    """LAMMPS' defaults: timestep 0.001 ps, skin 2 A, thermo 0 (first and last step), no dump, no
    restart; boundary p p f; a plain `run N`; fix nvt with tchain; DeePMD-kit's plugin load."""
    text = """
        plugin load /opt/deepmd/lib/libdeepmd_lmp.so
        units metal
        boundary p p f
        atom_modify map yes
        read_data conf.lmp
        pair_style deepmd a.h5
        pair_coeff * * Cu
        velocity all create 300 42 dist gaussian rot yes
        fix integrate all nvt temp 300 300 0.05 tchain 5
        run 200
        """
    tr = translate(textwrap.dedent(text), "in.lammps", {}, tmp_path)
    assert tr.tables["system"] == {"file": "conf.lmp", "momentum": "keep", "type_names": ["Cu"],
                                   "pbc": [True, True, False],
                                   "velocities": {"temperature": lammps_kelvin(300.0), "seed": 42}}
    assert tr.tables["md"] == {"timestep": 0.001, "steps": 200, "ensemble": "nvt", "seed": 42,
                               "thermostat": {"kind": "nose-hoover", "temperature": lammps_kelvin(300.0), "tau": 0.05,
                                              "chain": 5, "form": "lammps"}}
    assert tr.tables["neighbor"] == {"skin": 2.0}
    # LAMMPS' default thermo_style one
    assert tr.tables["output"] == {"trajectory": "", "thermo_every": 200,
                                   "thermo_columns": ["step", "temp", "epair", "emol", "etotal", "press"],
                                   "thermo_header": "lammps", "log": "log.lammps", "checkpoint_every": 0}
    assert any("angular momentum" in n for n in tr.notices)


def test_fix_npt_chains(tmp_path):
    """fix npt's tchain and pchain (LAMMPS' defaults 3) reach the thermostat's and the MTK
    barostat's chains (pchain 0: no chain, as LAMMPS); a zero tchain, a negative pchain and other
    keywords are refused in one line."""
    text = textwrap.dedent("""
        units metal
        read_data conf.lmp
        pair_style deepmd a.h5
        pair_coeff * * Cu
        fix 1 all npt temp 300 300 0.05 aniso 1.0 1.0 0.5 pchain 5 tchain 4
        run 20
        """)
    md = translate(text, "in.lammps", {}, tmp_path).tables["md"]
    assert md["thermostat"]["chain"] == 4
    assert md["barostat"] == {"kind": "mtk", "pressure": lammps_bar(1.0), "tau": 0.5, "coupling": "anisotropic", "chain": 5,
                              "form": "lammps"}
    assert translate(text.replace("pchain 5", "pchain 0"), "in.lammps", {}, tmp_path).tables["md"]["barostat"][
        "chain"] == 0
    for bad, message in (("pchain 5", "pchain: must be >= 0"), ("tchain 4", "tchain must be >= 1"),
                         ("tchain 4", "drag 0.2: numdp lmp runs LAMMPS' default drag 0.0 only")):
        edited = text.replace(bad, {"pchain: must be >= 0": "pchain -1", "tchain must be >= 1": "tchain 0",
                                    "drag 0.2: numdp lmp runs LAMMPS' default drag 0.0 only": "drag 0.2"}[message])
        with pytest.raises(InputError, match=message):
            translate(edited, "in.lammps", {}, tmp_path)
    with pytest.raises(InputError, match="keyword 'pchain' is not supported by numdp lmp \\(tchain is; drag, tloop at LAMMPS' defaults\\)"):
        translate(text.replace("npt temp 300 300 0.05 aniso 1.0 1.0 0.5", "nvt temp 300 300 0.05"), "in.lammps", {},
                  tmp_path)


def test_fix_nph_with_a_thermostat_fix_is_numdp_npt(tmp_path):
    """fix nph + fix langevin (or temp/csvr): numdp's npt with that thermostat and the MTK barostat
    (with a notice); a thermostat fix beside fix npt is refused in one line."""
    text = textwrap.dedent("""
        units metal
        read_data conf.lmp
        pair_style deepmd a.h5
        pair_coeff * * Cu
        fix 1 all nph tri 1.0 1.0 0.5 pchain 2
        fix 2 all langevin 300 300 0.1 42
        run 20
        """)
    tr = translate(text, "in.lammps", {}, tmp_path)
    md = tr.tables["md"]
    assert md["ensemble"] == "npt" and md["seed"] == 42
    assert md["thermostat"] == {"kind": "langevin", "temperature": lammps_kelvin(300.0), "tau": 0.1}
    assert md["barostat"] == {"kind": "mtk", "pressure": lammps_bar(1.0), "tau": 0.5, "coupling": "triclinic", "chain": 2,
                              "form": "lammps"}
    assert any(n.startswith("fix nph with fix langevin: numdp's npt") for n in tr.notices)
    with pytest.raises(InputError, match=r"two thermostats; numdp runs one \(use fix nve or nph with it\)"):
        translate(text.replace("nph tri 1.0 1.0 0.5 pchain 2", "npt temp 300 300 0.1 tri 1.0 1.0 0.5"),
                  "in.lammps", {}, tmp_path)
    with pytest.raises(InputError, match=r"expected: fix ID all nph iso\|aniso\|tri P P PDAMP \[ptemp T\] "
                                         r"\[pchain N\]"):
        translate(text.replace("nph tri 1.0 1.0 0.5", "nph temp 300 300 0.1"), "in.lammps", {}, tmp_path)


def test_fix_nph_alone_is_numdp_nph(tmp_path):
    """fix nph without a thermostat fix: numdp's nph (MTK barostat, no thermostat), the cell's
    reference temperature from ptemp, else from velocity create (with a notice: LAMMPS takes the
    start temperature, which velocity create sets), else refused in one line; pchain 0 (no chain)
    is LAMMPS' and numdp's; the tables pass numdp run's validator."""
    from numdp.config import run_settings

    text = textwrap.dedent("""
        units metal
        read_data conf.lmp
        pair_style deepmd a.h5
        pair_coeff * * Cu
        velocity all create 250 7
        fix 1 all nph aniso 1.0 1.0 0.5 pchain 0 ptemp 280
        run 20
        """)
    tr = translate(text, "in.lammps", {}, tmp_path)
    md = tr.tables["md"]
    assert md["ensemble"] == "nph" and "thermostat" not in md
    assert md["barostat"] == {"kind": "mtk", "pressure": lammps_bar(1.0), "tau": 0.5, "coupling": "anisotropic",
                              "chain": 0, "form": "lammps", "temperature": lammps_kelvin(280.0)}
    settings = run_settings(Path("in.lammps"), "", tr.tables, tmp_path)
    assert settings.md.ensemble == "nph" and settings.md.barostat.temperature == lammps_kelvin(280.0)
    assert settings.md.barostat.chain == 0 and settings.md.thermostat is None
    tr = translate(text.replace(" pchain 0 ptemp 280", ""), "in.lammps", {}, tmp_path)
    assert tr.tables["md"]["barostat"]["temperature"] == lammps_kelvin(250.0) and tr.tables["md"]["barostat"]["chain"] == 3
    assert any(n.startswith("fix nph without ptemp: the cell's mass and chain take the velocity create "
                            "temperature, 250.0 K") for n in tr.notices)
    with pytest.raises(InputError, match=r"fix 1 nph without ptemp or velocity create: numdp needs the temperature "
                                         r"of the cell's mass; add ptemp T to the fix"):
        translate(text.replace("velocity all create 250 7\n", "").replace(" ptemp 280", ""), "in.lammps", {},
                  tmp_path)
    with pytest.raises(InputError, match=r"ptemp"):
        translate(text.replace("ptemp 280", "ptemp 0"), "in.lammps", {}, tmp_path)


def test_ramps_become_numdp_run_ramps(tmp_path):
    """`fix npt temp T1 T2 ... iso P1 P2 ...` with T1 != T2, P1 != P2: numdp run's ramps
    ([md] thermostat.temperature / barostat.pressure = [start, stop], docs/md.md); equal ends
    stay numbers."""
    text = """
        units metal
        read_data conf.lmp
        pair_style deepmd a.h5
        pair_coeff * * Cu
        fix 1 all npt temp 300 1200 0.1 iso 1.0 5000.0 1.0
        run 1000
        """
    md = translate(textwrap.dedent(text), "in.lammps", {}, tmp_path).tables["md"]
    assert md["thermostat"]["temperature"] == [lammps_kelvin(300.0), lammps_kelvin(1200.0)]
    assert md["barostat"]["pressure"] == [lammps_bar(1.0), lammps_bar(5000.0)]
    md = translate(textwrap.dedent(text.replace("1200", "300")), "in.lammps", {}, tmp_path).tables["md"]
    assert md["thermostat"]["temperature"] == lammps_kelvin(300.0)


@pytest.mark.parametrize("fix, kind", [("langevin 300 600 0.2 77 zero yes", "langevin"),
                                       ("temp/csvr 300 600 0.2 77", "csvr")])
def test_thermostat_fixes_beside_fix_nve(tmp_path, fix, kind):
    """`fix nve` + `fix langevin|temp/csvr T1 T2 damp seed`: numdp's NVT with that thermostat
    (tau = damp, the fix's seed for its noise, a ramp when T1 != T2); beside fix nvt it is refused
    (two thermostats), alone it moves nothing (refused as LAMMPS would not integrate)."""
    text = """
        units metal
        read_data conf.lmp
        pair_style deepmd a.h5
        pair_coeff * * Cu
        velocity all create 300 42
        fix 1 all nve
        fix 2 all {fix}
        run 100
        """
    tr = translate(textwrap.dedent(text.format(fix=fix)), "in.lammps", {}, tmp_path)
    assert tr.tables["md"] == {"timestep": 0.001, "steps": 100, "ensemble": "nvt", "seed": 77,
                               "thermostat": {"kind": kind, "temperature": lammps_kelvin([300.0, 600.0]), "tau": 0.2}}
    assert any(n.startswith("fix langevin") for n in tr.notices) == (kind == "langevin")
    for swap, message in (("fix 1 all nvt temp 300 300 0.1", "two thermostats; numdp runs one"),
                          ("", "the script has no fix nve, nvt, npt or nph")):
        bad = textwrap.dedent(text.format(fix=fix)).replace("fix 1 all nve", swap)
        with pytest.raises(InputError, match=message):
            translate(bad, "in.lammps", {}, tmp_path)
    with pytest.raises(InputError, match="keyword 'tally' is not supported"):
        translate(textwrap.dedent(text.format(fix="langevin 300 300 0.2 7 tally yes")), "in.lammps", {}, tmp_path)


MINIMIZE = HEADER + """thermo 5
    dump 1 all custom 5 relax/*.lammpstrj id type x y z fx fy fz
    {style}
    min_modify dmax 0.05 norm max delaystep 10 halfstepback no
    timestep 0.002
    minimize 1e-12 1e-4 20 1000
    """


def test_minimize_with_min_style_fire(task, tmp_path, monkeypatch, capsys):
    """`min_style fire` + `min_modify` + `minimize etol ftol maxiter maxeval`: numdp's [minimize]
    (FIRE 2.0 as LAMMPS' min_style fire; `timestep` is FIRE's dt0), run by numdp run's code to the
    same dumps byte for byte; a min_style numdp lacks, a min_modify value numdp lacks and a command
    after minimize are refused in one line."""
    lmp = _folder(task, tmp_path / "lmp")
    script = textwrap.dedent(MINIMIZE.format(style="min_style fire"))
    (lmp / "in.lammps").write_text(script)
    tr = translate(script, "in.lammps", {}, lmp)
    assert "md" not in tr.tables
    assert tr.tables["minimize"] == {"style": "fire", "steps": 20, "etol": 1e-12, "ftol": 1e-4, "timestep": 0.002,
                                     "dmax": 0.05, "norm": "max", "delaystep": 10, "halfstepback": False}
    assert numdp(lmp, monkeypatch, "lmp", "-i", "in.lammps") == 0
    assert "Minimization stats:" in capsys.readouterr().out
    ref = _folder(task, tmp_path / "run")
    assert numdp(lmp, monkeypatch, "lmp", "-i", "in.lammps", "--print-toml") == 0
    (ref / "min.toml").write_text(capsys.readouterr().out)
    assert numdp(ref, monkeypatch, "run", "min.toml") == 0
    frames = sorted(p.name for p in (lmp / "relax").iterdir())
    assert frames and frames == sorted(p.name for p in (ref / "relax").iterdir())
    for name in frames:
        assert (lmp / "relax" / name).read_text() == (ref / "relax" / name).read_text()
    for change, message in (
            (("min_style fire", "min_style hftn"), "min_style: min_style hftn: not supported by numdp lmp"),
            (("norm max", "line forcezero"), "min_modify: min_modify line forcezero: not supported"),
            (("minimize 1e-12 1e-4 20 1000", "minimize 1e-12 1e-4 20 1000\nrun 10"),
             "run: run after min_style fire: LAMMPS' atoms start the run with FIRE's last velocities")):
        with pytest.raises(InputError, match=re.escape(message)):
            translate(script.replace(*change), "in.lammps", {}, lmp)


def test_script_from_standard_input_and_velocity_zero_linear(task, tmp_path, monkeypatch, capsys):
    """`numdp lmp < in.lammps` reads the script from standard input (named "stdin" in messages),
    as LAMMPS does; `velocity all zero linear` is accepted (numdp zeroes the momentum anyway),
    `velocity all zero angular` refused."""
    import io
    import sys

    lmp = _folder(task, tmp_path / "lmp")
    script = dpgen_script("nvt").replace('if "${restart} == 0" then "velocity',
                                         'velocity all zero linear\nif "${restart} == 0" then "velocity')
    monkeypatch.setattr(sys, "stdin", io.StringIO(script))
    assert numdp(lmp, monkeypatch, "lmp", "-v", "restart", "0", "--print-toml") == 0
    assert "equivalent to the LAMMPS script stdin" in capsys.readouterr().out
    monkeypatch.setattr(sys, "stdin", io.StringIO(script.replace("zero linear", "zero angular")))
    assert numdp(lmp, monkeypatch, "lmp", "-v", "restart", "0") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("numdp lmp: error: stdin:") and "velocity all zero linear" in err[0]


SEVERAL = HEADER + """    velocity all create 50 7
    fix 1 all nvt temp 50 50 0.1
    thermo 2
    dump 1 all custom 2 traj.lammpstrj id type x y z vx vy vz
    thermo_modify flush yes
    run 4
    write_data first.data
    unfix 1
    fix 2 all npt temp 50 50 0.1 iso 1 1 0.5
    thermo 1
    run 3
    write_restart equil.restart
    unfix 2
    fix 3 all nve
    run 8 upto
    write_data end.data
    """


def test_several_runs_continue_from_the_run_before(task, tmp_path, monkeypatch, capsys):
    """A script with three runs (nvt, then npt, then nve `upto`): each later run is numdp run's
    restart from the final checkpoint of the run before with the script's new fixes and thermo;
    numdp lmp gives byte for byte the dumps of the printed inputs run one after the other, the
    dump goes on across the runs (on its cadence, as LAMMPS': a run's last step off it gets no
    frame, [output] end_frame = false), write_data writes the last run's end."""
    from numdp.io.h5md import read_frame

    lmp = _folder(task, tmp_path / "lmp")
    script = textwrap.dedent(SEVERAL)
    (lmp / "in.lammps").write_text(script)
    tr = translate(script, "in.lammps", {}, lmp)
    runs = [tr.tables] + [t for t, _ in tr.later]
    assert [t["md"]["steps"] for t in runs] == [4, 7, 8]
    assert [t["md"]["ensemble"] for t in runs] == ["nvt", "npt", "nve"]
    assert [t["output"]["thermo_every"] for t in runs] == [2, 1, 1]
    assert [t["system"] for t in runs[1:]] == [{"file": "checkpoint.h5"}] * 2
    assert any("Nose-Hoover chain goes on" in n for n in tr.notices)
    assert numdp(lmp, monkeypatch, "lmp", "-i", "in.lammps") == 0
    out = capsys.readouterr().out
    assert out.count("restarted from") == 2 and "write_data: end.data (step 8)" in out
    # the states the runs ended with: write_data after run 1 (step 4), write_restart after run 2
    # (a numdp checkpoint, what read_restart reads) at step 7
    assert "write_data: first.data (step 4)" in out and "write_restart: equil.restart (step 7)" in out
    mid = read_frame(lmp / "equil.restart")
    assert mid["step"] == 7
    first = read_lammps_data(lmp / "first.data")
    assert first.velocities is not None and first.positions.shape == (64, 3)
    ref = _folder(task, tmp_path / "run")
    assert numdp(lmp, monkeypatch, "lmp", "-i", "in.lammps", "--print-toml") == 0
    parts = re.split(r"\n# ---- run \d: .*\n", capsys.readouterr().out)
    assert len(parts) == 3
    for k, text in enumerate(parts):
        (ref / f"r{k}.toml").write_text(text)
        assert numdp(ref, monkeypatch, "run", f"r{k}.toml") == 0
    capsys.readouterr()
    dump = (lmp / "traj.lammpstrj").read_text()
    assert dump == (ref / "traj.lammpstrj").read_text()
    steps = [int(b.split("\n", 1)[1].split("\n", 1)[0]) for b in dump.split("ITEM: TIMESTEP")[1:]]
    assert steps == [0, 2, 4, 6, 8]   # on the cadence only, a run's last step too (run 2's 7), as LAMMPS
    final = read_frame(lmp / "checkpoint.h5")
    end = read_lammps_data(lmp / "end.data")
    assert final["step"] == 8 and np.allclose(end.velocities, final["velocities"], rtol=0, atol=1e-9)
    assert (lmp / "log.lammps").read_text().count("numdp run in.lammps") == 3


def test_two_runs_equal_one_run_of_their_length(task, tmp_path, monkeypatch, capsys):
    """`run 6` twice with the fix (npt: thermostat chain, the cell's momentum and chain) kept is `run 12`: the
    later run starts from the exact state the first ended with, so the dumps are equal byte for
    byte (LAMMPS: a fix that persists keeps its state)."""
    texts = {}
    for name, runs in (("one", "run 12\n"), ("two", "run 6\nrun 6\n")):
        folder = _folder(task, tmp_path / name)
        script = textwrap.dedent(HEADER + """    velocity all create 50 7
            fix 1 all npt temp 50 50 0.1 iso 1 1 0.5
            dump 1 all custom 3 traj.lammpstrj id type x y z vx vy vz fx fy fz
            """) + runs
        (folder / "in.lammps").write_text(script)
        assert numdp(folder, monkeypatch, "lmp", "-i", "in.lammps") == 0
        texts[name] = (folder / "traj.lammpstrj").read_text()
    capsys.readouterr()
    assert texts["one"].count("ITEM: TIMESTEP") == 5 and texts["one"] == texts["two"]


@pytest.mark.parametrize("change, message", [
    (("unfix 1\n", "minimize 0 1e-3 10 100\n"), "in.lammps:15: minimize: minimize after a run"),
    (("fix 2 all npt temp 50 50", "fix 2 all npt temp 50 80"),
     "in.lammps: a ramp (50.0 -> 80.0) in a run after the first"),
    (("unfix 1\n", "dump 2 all custom 1 x.lammpstrj id\n"), "in.lammps:15: dump: after a run, numdp lmp accepts only"),
    (("unfix 1\n", "velocity all create 100 3\n"), "in.lammps:15: velocity: after a run, numdp lmp accepts only"),
    (("unfix 1\n", "thermo_modify norm yes\n"), "in.lammps:15: thermo_modify: thermo_modify norm yes: not supported"),
    (("write_restart equil.restart", "write_restart equil.*"), "in.lammps:19: write_restart: a file name with % or *"),
    (("unfix 1\nfix 2 all npt", "fix 1 all npt"), "in.lammps:15: fix: fix 1 is a fix nvt: a fix ID is re-specified"),
    (("unfix 1\n", "unfix 9\n"), "in.lammps:15: unfix: no fix with ID '9'"),
])
def test_several_runs_refusals(task, change, message):
    with pytest.raises(InputError) as err:
        translate(textwrap.dedent(SEVERAL).replace(*change, 1), "in.lammps", {}, task)
    assert str(err.value).startswith(message), str(err.value)


def test_dump_atom_and_scaled_columns(task, tmp_path, monkeypatch, capsys):
    """`dump ID all atom N FILE` is LAMMPS' `id type xs ys zs`; scaled columns on the triclinic
    task cell: xs ys zs times LAMMPS' cell are the wrapped x y z, xsu ysu zsu the unwrapped xu yu zu
    (a dump prints every digit: the differences are round-off), and the wrapped ones lie in
    [0, 1); image flags ix iy iz and masses."""
    tr = translate(textwrap.dedent(HEADER + "    fix 1 all nve\n    dump 1 all atom 5 traj.atom\n    run 10\n"),
                   "in.lammps", {}, task)
    assert tr.tables["output"]["columns"] == ["id", "type", "xs", "ys", "zs"]
    cols = "id type x y z xs ys zs xu yu zu xsu ysu zsu ix iy iz mass"
    folder = _folder(task, tmp_path / "t")
    (folder / "in.lammps").write_text(textwrap.dedent(
        HEADER + f"    velocity all create 300 5\n    fix 1 all nve\n    timestep 0.002\n"
                 f"    dump 1 all custom 10 d.lammpstrj {cols}\n    run 10\n"))
    assert numdp(folder, monkeypatch, "lmp", "-i", "in.lammps") == 0
    capsys.readouterr()
    text = (folder / "d.lammpstrj").read_text()
    last = "ITEM: TIMESTEP" + text.split("ITEM: TIMESTEP")[-1]
    (folder / "last.lammpstrj").write_text(last)
    step, box, columns, table = read_dump(folder / "last.lammpstrj")
    assert step == 10 and columns == cols.split() and abs(box[1, 0]) > 0
    x, s, xu, su, image = table[:, 2:5], table[:, 5:8], table[:, 8:11], table[:, 11:14], table[:, 14:17]
    # round-off: the cell rebuilt from BOX BOUNDS (a few ulps per entry), numdp's solve for the
    # fractional coordinates (residual ~ 3 eps |su| |H|) and the 3-term products here and there:
    # within 32 eps |H| per unit of |su| (+1), far below any error of meaning
    scale = np.abs(box).max() * (1.0 + np.abs(su).max())
    tol = 32 * np.finfo(float).eps * scale
    assert np.abs(s @ box - x).max() <= tol and np.abs(su @ box - xu).max() <= tol
    assert np.all(s >= 0) and np.all(s < 1) and not np.array_equal(s, su)
    # image flags: whole cells, xu = x + (ix, iy, iz) H (LAMMPS' definition); masses of the types
    assert np.array_equal(image, np.round(image)) and np.any(image != 0)
    assert np.abs(x + image @ box - xu).max() <= tol
    assert table[:, 17].tolist() == [{1: 12.0, 2: 16.0}[t] for t in table[:, 1]]


def test_states_written_after_a_minimization_that_stops_early(task, tmp_path, monkeypatch, capsys):
    """write_restart / write_data after a minimize that converges before maxiter, with
    `restart N ROOT` checkpoints: the state of its last checkpoint ROOT.STEP, STEP < maxiter."""
    from numdp.io.h5md import read_frame

    lmp = _folder(task, tmp_path / "lmp")
    script = textwrap.dedent(MINIMIZE.format(style="min_style fire")).replace(
        "minimize 1e-12 1e-4 20 1000", "restart 1000 min\n    minimize 0 0.5 500 1000\n"
                                       "    write_restart relaxed.restart\n    write_data relaxed.data")
    (lmp / "in.lammps").write_text(script)
    assert numdp(lmp, monkeypatch, "lmp", "-i", "in.lammps") == 0
    capsys.readouterr()
    steps = sorted(int(p.name.split(".")[1]) for p in lmp.glob("min.*"))
    relaxed = read_frame(lmp / "relaxed.restart")
    assert 0 < relaxed["step"] == steps[-1] < 500
    assert np.array_equal(relaxed["positions"], read_frame(lmp / f"min.{steps[-1]}")["positions"])
    assert read_lammps_data(lmp / "relaxed.data").positions.shape == relaxed["positions"].shape


def test_commands_after_the_last_run_leave_its_tables(task):
    """unfix and thermo_style after the only run change no run (LAMMPS runs nothing after them):
    the run's tables are those of the script at its run."""
    script = textwrap.dedent(HEADER + "    fix 1 all nvt temp 300 300 0.1\n    run 10\n    unfix 1\n"
                                      "    thermo_style custom step pe\n")
    tr = translate(script, "in.lammps", {}, task)
    assert tr.tables["md"]["ensemble"] == "nvt" and not tr.later
    assert tr.tables["output"]["thermo_columns"] == ["step", "temp", "epair", "emol", "etotal", "press"]
