"""numdp as the engine of DP-GEN's exploration step: what DP-GEN 0.14 and dpdata 1.1 read back.

Facts found by running DP-GEN's own `make_lammps_input` scripts through `numdp lmp` and reading
the outputs with dpdata's `lammps/dump` reader and DP-GEN's `_read_model_devi_file` /
`_select_by_model_devi_standard` (and `dp model-devi` of DeePMD-kit 3.2 on the same frames);
the tests below need neither DP-GEN nor DeePMD-kit (dpdata is in the test extra)."""
from __future__ import annotations

import numpy as np
import pytest

from numdp.errors import InputError
from numdp.io.trajectory import open_trajectory
from numdp.lammps.translate import translate
from test_lmp_input import _folder, dpgen_script, numdp, task  # noqa: F401  (task: a fixture)

MERGED = "dump            1 all custom ${DUMP_FREQ} all.lammpstrj id type x y z fx fy fz\n" \
         'if "${restart} > 0" then "dump_modify     1 append yes"\n'


def merged_script(nsteps):
    """DP-GEN's script with `model_devi_merge_traj: true`: one all.lammpstrj, appended on restart."""
    series = "dump            1 all custom ${DUMP_FREQ} traj/*.lammpstrj id type x y z fx fy fz\n"
    text = dpgen_script("nvt", nsteps=nsteps, trj_freq=2)
    assert series in text
    return text.replace(series, MERGED)


def dump_steps(path):
    lines = path.read_text().splitlines()
    return [int(lines[k + 1]) for k, line in enumerate(lines) if line == "ITEM: TIMESTEP"]


def test_open_system_dump_keeps_every_atom_where_it_is_for_dpdata(tmp_path):
    """An open system's dump (`boundary f f f`, DP-GEN's model_devi_nopbc) had its `ss` bounds on
    the outermost atoms: dpdata's reader takes positions modulo the box, so the atom on each
    upper bound came back moved by the whole extent (fraction exactly 1 -> 0), and DP-GEN labelled
    a broken cluster.  With LAMMPS' shrink-wrap margin every fraction is below 1."""
    import dpdata

    rng = np.random.default_rng(5)
    pos = rng.uniform(-4.0, 9.0, size=(12, 3))
    path = tmp_path / "open.lammpstrj"
    w = open_trajectory("lammps-dump", path, np.array([0, 1] * 6), np.ones(12), ["O", "H"], ("position",),
                        False, "eV Angstrom-1", columns=("id", "type", "x", "y", "z"))
    w.append(3, 0.003, pos, None, None, None, {})
    w.close()
    lines = path.read_text().splitlines()
    assert lines[4] == "ITEM: BOX BOUNDS ss ss ss"
    lo, hi = (np.array([float(ln.split()[k]) for ln in lines[5:8]]) for k in (0, 1))
    extent = pos.max(0) - pos.min(0)
    np.testing.assert_allclose(pos.min(0) - lo, 1e-4 * extent, rtol=1e-9)
    np.testing.assert_allclose(hi - pos.max(0), 1e-4 * extent, rtol=1e-9)
    got = dpdata.System(str(path), fmt="lammps/dump", type_map=["O", "H"])["coords"][0]
    # dpdata moves the origin to the lower bound: a rigid translation by -lo, nothing else.
    # Round-off of x - lo through the fractions: a few ulps of the extent (< 16 Å here)
    np.testing.assert_allclose(got, pos - lo, rtol=0, atol=1e-13)


def test_merged_trajectory_restart_appends_to_all_lammpstrj(task, tmp_path, monkeypatch, capsys):  # noqa: F811
    """DP-GEN's merged trajectory restarts with `dump_modify 1 append yes`, which was refused, so a
    task interrupted after dpgen.restart.10000 failed for good.  numdp's restart continues the dump
    (frames after the checkpoint's step dropped): all.lammpstrj has frame k at step k * trj_freq,
    which is how DP-GEN indexes it (int(step / trj_freq)), and equals an uninterrupted run's file."""
    lmp = _folder(task, tmp_path / "lmp")
    (lmp / "input.lammps").write_text(merged_script(4))
    assert numdp(lmp, monkeypatch, "lmp", "-i", "input.lammps", "-v", "restart", "0") == 0
    (lmp / "input.lammps").write_text(merged_script(8))
    assert numdp(lmp, monkeypatch, "lmp", "-i", "input.lammps", "-v", "restart", "1") == 0
    assert "note: dump_modify" not in capsys.readouterr().out
    assert dump_steps(lmp / "all.lammpstrj") == [0, 2, 4, 6, 8]
    assert np.loadtxt(lmp / "model_devi.out", ndmin=2)[:, 0].tolist() == [0, 2, 4, 6, 8]
    full = _folder(task, tmp_path / "full")
    (full / "input.lammps").write_text(merged_script(8))
    assert numdp(full, monkeypatch, "lmp", "-i", "input.lammps", "-v", "restart", "0") == 0
    assert (lmp / "all.lammpstrj").read_text() == (full / "all.lammpstrj").read_text()
    assert (lmp / "model_devi.out").read_text() == (full / "model_devi.out").read_text()


@pytest.mark.parametrize("line, message", [
    ("dump_modify 2 append yes", "in.lammps:9: dump_modify: no dump with ID '2'"),
    ("dump_modify 1 append maybe", "in.lammps:9: dump_modify: numdp lmp accepts `dump_modify ID sort id`, "),
    ("dump_modify 1 format line %g", "in.lammps:9: dump_modify: numdp lmp accepts `dump_modify ID sort id`, "),
    ("dump_modify 1 sort", "in.lammps:9: dump_modify: numdp lmp accepts"),
])
def test_dump_modify_refusals(tmp_path, line, message):
    text = ("units metal\nread_data conf.lmp\npair_style deepmd g.h5\npair_coeff * *\nfix 1 all nve\n"
            "dump 1 all custom 5 d.lammpstrj id type x y z\ndump_modify 1 sort id\n"
            "dump_modify 1 append no sort id\n" + line + "\nrun 10\n")
    with pytest.raises(InputError) as err:
        translate(text, "in.lammps", {}, tmp_path)
    assert str(err.value).startswith(message)


def test_dump_modify_append_in_a_new_run_is_a_notice(tmp_path):
    text = ("units metal\nread_data conf.lmp\npair_style deepmd g.h5\npair_coeff * *\nfix 1 all nve\n"
            "dump 1 all custom 5 d.lammpstrj id type x y z\ndump_modify 1 append yes\nrun 10\n")
    tr = translate(text, "in.lammps", {}, tmp_path)
    assert tr.tables["output"]["trajectory"] == "d.lammpstrj"
    assert any(n.startswith("dump_modify append yes: a new run keeps") for n in tr.notices)


@pytest.mark.parametrize("pbc", [(True, True, False), (False, True, True)])
def test_slab_dump_grows_its_box_to_hold_atoms_that_left_it(tmp_path, pbc):
    """numdp lets atoms leave a slab's cell along its open vector (`boundary p p f`; LAMMPS would
    lose them); the dump said `pp pp ff` with the cell's bounds, and dpdata, which takes the
    fractions modulo 1, moved those atoms by a whole cell vector.  The box is now grown along the
    open vector (flag `mm`): dpdata reads every atom rigidly translated by the new origin, and the
    scaled columns are fractions of the written box."""
    import dpdata

    box = np.array([[6.0, 0.0, 0.0], [1.0, 6.0, 0.0], [0.5, -0.7, 8.0]])
    frac = np.array([[0.1, 0.2, 0.5], [0.5, 0.5, 1.05], [0.3, 0.9, -0.1], [0.7, 0.1, 0.3]])
    if not pbc[0]:
        frac = frac[:, [2, 1, 0]]   # the open vector is a
    pos = frac @ box
    columns = ("id", "type", "x", "y", "z", "xs", "ys", "zs")
    path = tmp_path / "slab.lammpstrj"
    w = open_trajectory("lammps-dump", path, np.array([0, 1, 1, 0]), np.ones(4), ["O", "H"], ("position",), pbc,
                        "eV Angstrom-1", columns=columns)
    w.append(0, 0.0, pos, None, None, box, {})
    w.append(1, 0.001, frac.clip(0.05, 0.95) @ box, None, None, box, {})   # inside: written as before
    w.close()
    lines = path.read_text().splitlines()
    open_flag = "mm" if pbc[2] is False else "mm pp pp"
    assert lines[4].startswith("ITEM: BOX BOUNDS xy xz yz") and open_flag in lines[4]
    assert lines[13 + 4].endswith("pp pp ff" if pbc[2] is False else "ff pp pp")
    assert lines[13 + 7].startswith("0.0 ")   # zlo of a cell that holds its atoms
    system = dpdata.System(str(path), fmt="lammps/dump", type_map=["O", "H"])
    shift = system["coords"][0] - pos   # the box's origin, the same for every atom
    # round-off: positions of |x| < 10 Å through fractions of the grown box, a few ulps
    np.testing.assert_allclose(shift - shift[0], 0.0, rtol=0, atol=1e-13)
    table = np.array([[float(v) for v in ln.split()[2:]] for ln in lines[9:13]])
    d = 0 if not pbc[0] else 2
    np.testing.assert_allclose(table[:, :3], pos, rtol=0, atol=1e-13)   # x y z: the positions themselves
    assert np.all(table[:, 3 + d] > 0.0) and np.all(table[:, 3 + d] < 1.0)
    # the fractions of the periodic vectors are those of the cell: 1e-15 of their unit size
    periodic = [k for k in range(3) if k != d]
    np.testing.assert_allclose(table[:, [3 + k for k in periodic]], frac[:, periodic], rtol=0, atol=1e-14)


def test_dump_types_that_are_not_lammps_types_are_refused(task):  # noqa: F811
    """DP-GEN 0.14 writes `pair_coeff * * TYPE_MAP` and reads the dump's `type` column with that
    type_map; numdp writes the model's type index + 1 there.  With the elements in another order
    than the model's type_map (here models [A, B], pair_coeff B A) every frame DP-GEN labelled got
    the wrong elements, silently: the script is refused in one line instead."""
    text = dpgen_script("nvt").replace("pair_coeff      * *\n", "pair_coeff      * * B A\n")
    with pytest.raises(InputError) as err:
        translate(text, "input.lammps", {"restart": "0"}, task)
    assert str(err.value).startswith("input.lammps:26: dump: column type: numdp writes the model's type numbers "
                                     "(type_map A B), and pair_coeff * * B A numbers the elements otherwise "
                                     "(B: LAMMPS type 1, numdp 2, A: LAMMPS type 2, numdp 1)")
    assert "\n" not in str(err.value)
    for same in ("A B", "A B C"):   # the model's order: LAMMPS' types
        translate(dpgen_script("nvt").replace("pair_coeff      * *\n", f"pair_coeff      * * {same}\n"),
                  "input.lammps", {"restart": "0"}, task)
    named = text.replace("id type x y z fx fy fz", "id type element x y z fx fy fz")   # the names are in the file
    assert translate(named, "input.lammps", {"restart": "0"}, task).tables["output"]["columns"][2] == "element"


def test_a_variable_given_twice_on_the_command_line_keeps_its_first_value(task, monkeypatch):  # noqa: F811
    """LAMMPS ignores a later index definition of a name (Variable::set), so `-v restart 0 -v
    restart 1` runs a new run; numdp took the last value and restarted."""
    from types import SimpleNamespace

    from numdp.commands.lmp import translate_file

    (task / "twice.lammps").write_text(dpgen_script("nvt"))
    monkeypatch.chdir(task)
    args = SimpleNamespace(input="twice.lammps", variables=[["restart", "0"], ["restart", "1"]], log=None)
    assert translate_file(args).tables["system"]["file"] == "conf.lmp"
