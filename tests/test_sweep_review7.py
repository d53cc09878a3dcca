"""Review of numdp lmp's run after a minimize, DP-GEN 0.14's undump / dump again, and the
triclinic dump header (commits 6c2725b..46d37f5): what LAMMPS does in each case, from its source
(Update::reset_timestep, Input::timestep, Output::reset_timestep, FixBoxRelax, region block).

- A lattice script (create_box on a `region block`, LAMMPS' box orthogonal) with a `dump custom`
  translates (the triclinic-header check read the data file of a script without one).
- A run after `undump`, `reset_timestep N`, the same dump with `append yes`: LAMMPS' file keeps the
  minimize's frames and adds the run's from step N; numdp's dump goes on from the run's
  checkpoint (step N) and dropped the minimize's frames after N: refused in one line.
- FIRE, `velocity create`, FIRE again, run: LAMMPS' atoms start the run with the second FIRE's last
  velocities, which numdp does not keep: refused as a run after FIRE without a velocity create.
- LAMMPS' time at the run's start: the minimize's steps at the timestep it ran with (`timestep`
  adds the time so far before changing dt); `reset_timestep` to an earlier step zeroes it.
  The checkpoint numdp lmp writes for the run holds it: stop * dt is one product of the same two
  doubles either way, so equal to 1 ulp (TIME_TOL, far below the 5e-4 ps the old value was off by).
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from numdp.cli import main as cli_main
from numdp.errors import InputError
from numdp.io.h5md import read_frame
from numdp.lammps.translate import translate

DATA = Path(__file__).parent / "data"
MODEL = DATA / "tensorflow" / "tf_one_side_f64.dp"
WATER = DATA / "lammps_nh" / "water.data"
TIME_TOL = 1e-17   # ps (module docstring: one ulp of 2e-3 ps is 4e-19)

HEAD = """units metal
boundary p p p
atom_style atomic
read_data water.data
pair_style deepmd model.dp
pair_coeff * *
neighbor 1.0 bin
timestep 0.0005
thermo 1
thermo_style custom step time pe
"""


def _folder(tmp_path: Path) -> Path:
    shutil.copyfile(MODEL, tmp_path / "model.dp")
    shutil.copyfile(WATER, tmp_path / "water.data")
    return tmp_path


def _refusal(tmp_path: Path, body: str) -> str:
    with pytest.raises(InputError) as err:
        translate(HEAD + body, "in.lammps", {}, _folder(tmp_path))
    assert "\n" not in str(err.value)
    return str(err.value)


def test_a_lattice_script_with_a_custom_dump_translates(tmp_path):
    """create_box on a block region (LAMMPS' box orthogonal: no tilt header) with `dump custom`:
    it raised TypeError (no data file to look for an `xy xz yz` line in)."""
    shutil.copyfile(MODEL, tmp_path / "model.dp")
    script = ("units metal\nboundary p p p\natom_style atomic\nlattice fcc 3.6\nregion box block 0 2 0 2 0 2\n"
              "create_box 2 box\ncreate_atoms 1 box\nmass 1 16\nmass 2 1\npair_style deepmd model.dp\n"
              "pair_coeff * * O H\nvelocity all create 300 1\nfix 1 all nve\n"
              "dump 1 all custom 10 d.dump id type x y z\nrun 10\n")
    out = translate(script, "in.lammps", {}, tmp_path).tables["output"]
    assert out["format"] == "lammps-dump" and "triclinic_bounds" not in out


REDUMP = "undump 1\n{reset}dump 1 all custom 5 traj.dump id type x y z\ndump_modify 1 append yes\n"


def test_reset_timestep_with_the_dump_reopened_before_a_run_is_refused(tmp_path):
    """minimize, undump, reset_timestep 0, the same dump with append yes, run: the run restarted
    from step 0 and its dump kept only the frames up to step 0 (the minimize's 5 and 7 gone, the
    file's step 0 the positions before the minimize); LAMMPS' file has both.  Without the
    reset_timestep the dump goes on after the minimize's last frame, as before."""
    dump = "dump 1 all custom 5 traj.dump id type x y z\n"
    run = "minimize 0 1e-3 7 1000\n{redump}fix 1 all nve\nrun 10\n"
    message = _refusal(tmp_path, dump + run.format(redump=REDUMP.format(reset="reset_timestep 0\n")))
    assert "reset_timestep 0 with dump 1" in message, message
    tr = translate(HEAD + dump + run.format(redump=REDUMP.format(reset="")), "in.lammps", {}, tmp_path)
    assert tr.md_start is not None and tr.md_start.step is None


def test_fire_again_after_a_velocity_create_then_a_run_is_refused(tmp_path):
    """The velocity create between two FIRE minimizes is not what LAMMPS' atoms have after the
    second (FIRE's own last velocities): the run is refused as after one FIRE minimize."""
    body = ("min_style fire\nminimize 0 1e-3 5 1000\nvelocity all create 300 1\nminimize 0 1e-3 5 1000\n"
            "fix 1 all nve\nrun 10\n")
    assert "add `velocity all create T SEED` after the minimize" in _refusal(tmp_path, body)


def _stop(log: str) -> int:
    """The step the minimize stopped at: its iterations (numdp's minimization summary, from step 0)."""
    return int(re.search(r"Iterations, force evaluations = (\d+)", log).group(1))


@pytest.mark.parametrize("reset", ["", "reset_timestep 1\n"])
def test_the_run_starts_at_lammps_time(tmp_path, monkeypatch, reset):
    """minimize at dt 0.0005, `timestep 0.001`, run: LAMMPS' time at the run's start is the
    minimize's steps times 0.0005 (numdp wrote them times 0.001); after `reset_timestep 1`, back
    from where the minimize stopped, it is 0 (numdp wrote 1 * 0.001)."""
    folder = _folder(tmp_path)
    (folder / "in.lammps").write_text(HEAD + f"minimize 0 1e-12 3 1000\n{reset}timestep 0.001\nfix 1 all nve\nrun 1\n")
    monkeypatch.chdir(folder)
    assert cli_main(["lmp", "-i", "in.lammps"]) == 0
    stop = _stop((folder / "log.lammps").read_text())
    start = read_frame(folder / "checkpoint.minimized.h5")
    if reset:
        assert stop > 1 and start["step"] == 1
        assert abs(start["time"]) <= TIME_TOL
    else:
        assert start["step"] == stop > 0
        assert abs(start["time"] - stop * 0.0005) <= TIME_TOL


def test_read_restart_keeps_lammps_triclinic_dump_header(tmp_path, monkeypatch):
    """LAMMPS' restart file keeps its box triclinic, so a dump continued after read_restart keeps
    the `BOX BOUNDS xy xz yz` header the first run wrote (DP-GEN's `-v restart 1` of a conf.lmp
    with an xy xz yz line): the checkpoint's stored input says whether the first run wrote it."""
    import shutil

    from numdp.cli import main as cli_main
    from numdp.lammps.translate import translate

    here = Path(__file__).parent
    shutil.copyfile(here / "data" / "autotest3" / "eos_conf.lmp", tmp_path / "conf.lmp")   # has xy xz yz
    shutil.copyfile(here.parent / "inputs" / "cu" / "model.h5", tmp_path / "cu.h5")
    head = "units metal\nboundary p p p\natom_style atomic\n"
    tail = ("pair_style deepmd cu.h5\npair_coeff * *\nmass 1 63.546\nvelocity all create 300 1\n"
            "fix 1 all nve\ndump 1 all custom 1 d.dump id type x y z\nrestart 2 r\nrun 2\n")
    (tmp_path / "in.lammps").write_text(head + "read_data conf.lmp\n" + tail)
    monkeypatch.chdir(tmp_path)
    assert cli_main(["lmp", "-i", "in.lammps"]) == 0
    again = head + "read_restart r.2\n" + tail.replace("velocity all create 300 1\n", "").replace("run 2", "run 2 upto")
    tables = translate(again.replace("run 2 upto", "run 4 upto"), "in.lammps", {}, tmp_path).tables
    assert tables["output"].get("triclinic_bounds") is True
    (tmp_path / "ortho.lmp").write_text((tmp_path / "conf.lmp").read_text().replace("xy xz yz", "").replace(
        "   0.0000000000    0.0000000000   -0.0000000000 \n", ""))
    (tmp_path / "in2.lammps").write_text(head + "read_data ortho.lmp\n" + tail.replace("restart 2 r", "restart 2 q"))
    assert cli_main(["lmp", "-i", "in2.lammps"]) == 0
    tables = translate(again.replace("r.2", "q.2").replace("run 2 upto", "run 4 upto"), "in.lammps", {}, tmp_path).tables
    assert "triclinic_bounds" not in tables["output"]
