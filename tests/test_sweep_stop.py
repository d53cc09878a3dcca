"""How a stopped MD run ends, found by a sweep of stopped `numdp lmp` runs.

- A `numdp lmp` run stopped by SIGTERM said "continue with --restart CHECKPOINT", an option numdp
  lmp does not have (argparse refused it, status 2): a script continues through its own
  `read_restart` (DP-GEN: `-v restart 1`).  The line now names the command that continues the
  script, and following it literally ends on the uninterrupted run's files; the notice of the
  signal names numdp lmp too (it said "numdp run").
- A stop asked during the last step ended the run as "interrupted" (no final checkpoint, no
  summary) though every step was done.  As in LAMMPS, whose Verlet loop checks its
  stop request (a timeout) before each step, the run now ends complete (final checkpoint,
  summary), with the stop's status (143 for SIGTERM: docs/md-run-outputs.md).

The signal is sent in-process from the loop's progress update after a chosen step (the hook is
deterministic: the step after it is the one the stop follows).
"""
from __future__ import annotations

import os
import re
import shlex
import signal

import h5py
import numpy as np
import pytest

import numdp.md.loop as loop
from numdp.cli import main as cli_main
from test_lmp_input import _folder, dpgen_script, task  # noqa: F401 - task is a fixture

STEPS = 12        # the run's end: off the dump cadence (no frame there, as LAMMPS)
CADENCE = 5       # DP-GEN's trj_freq: thermo, dump and model_devi.out every 5 steps
SCRIPT = dpgen_script("nvt", nsteps=STEPS, trj_freq=CADENCE)
ARGS = ["lmp", "-i", "input.lammps", "-v", "restart", "0", "--threads", "1"]
FRAMES = [0, 5, 10]   # the uninterrupted run's dump: its cadence (LAMMPS': not the last step off it)


def sigterm_after(monkeypatch, step: int) -> None:
    """Send SIGTERM to this process once the run has reported `step` (inside its StopRequest)."""
    class Signalling(loop.Progress):
        def update(self, now: int) -> None:
            super().update(now)
            if now == step:
                os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(loop, "Progress", Signalling)


def lmp(folder, monkeypatch, argv) -> int:
    monkeypatch.chdir(folder)
    return cli_main(list(argv))


def state(path) -> dict:
    """The checkpoint's state datasets (its input text differs between a run and its restart)."""
    with h5py.File(path, "r") as f:
        out = {}
        f["numdp/state"].visititems(lambda name, obj: out.__setitem__(name, obj[()])
                                    if isinstance(obj, h5py.Dataset) else None)
    return out


def assert_same_run(folder, ref) -> None:
    """The dump frames, model_devi.out and the final state of `folder` are the reference's."""
    assert sorted(p.name for p in (folder / "traj").iterdir()) == sorted(f"{s}.lammpstrj" for s in FRAMES)
    for s in FRAMES:
        assert (folder / "traj" / f"{s}.lammpstrj").read_text() == (ref / "traj" / f"{s}.lammpstrj").read_text()
    assert (folder / "model_devi.out").read_text() == (ref / "model_devi.out").read_text()
    a, b = state(folder / f"dpgen.restart.{STEPS}"), state(ref / f"dpgen.restart.{STEPS}")
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(np.asarray(a[key]), np.asarray(b[key])), key


@pytest.fixture(scope="module")
def reference(task, tmp_path_factory):  # noqa: F811
    """The uninterrupted run of the script."""
    folder = _folder(task, tmp_path_factory.mktemp("stop") / "reference")
    (folder / "input.lammps").write_text(SCRIPT)
    mp = pytest.MonkeyPatch()
    try:
        assert lmp(folder, mp, ARGS) == 0
    finally:
        mp.undo()
    return folder


def test_lmp_stop_names_the_command_that_continues_the_script(task, reference, tmp_path, monkeypatch,  # noqa: F811
                                                              capfd):
    folder = _folder(task, tmp_path / "run")
    (folder / "input.lammps").write_text(SCRIPT)
    sigterm_after(monkeypatch, 3)
    assert lmp(folder, monkeypatch, ARGS) == 128 + signal.SIGTERM
    out, err = capfd.readouterr()
    match = re.search(r"^interrupted after step 4; checkpoint written to (\S+) \(continue with (.*)\)$", out, re.M)
    assert match and match.group(1) == str(folder / "dpgen.restart.4"), out[-2000:]
    advice = match.group(2)
    assert advice == "numdp lmp -i input.lammps -v restart 1 --threads 1"   # DP-GEN's restart switch
    assert "numdp lmp: SIGTERM received: stopping after this step" in err   # it said numdp run
    monkeypatch.undo()   # the continuation runs unhooked, as the user types it
    words = shlex.split(advice)
    assert words[:2] == ["numdp", "lmp"]
    assert lmp(folder, monkeypatch, words[1:]) == 0
    out, _ = capfd.readouterr()
    assert f"restarted from {folder / 'dpgen.restart.4'} at step 4" in out
    assert_same_run(folder, reference)


def test_stop_during_the_last_step_completes_the_run(task, reference, tmp_path, monkeypatch, capfd):  # noqa: F811
    """The request comes after step 11's report: the check after step 12, the last, sees it."""
    folder = _folder(task, tmp_path / "run")
    (folder / "input.lammps").write_text(SCRIPT)
    sigterm_after(monkeypatch, STEPS - 1)
    assert lmp(folder, monkeypatch, ARGS) == 128 + signal.SIGTERM   # the signal's status, every step done
    out, err = capfd.readouterr()
    assert "interrupted" not in out + err
    assert "Loop time of " in out and f"for {STEPS} steps" in out   # the summary
    line = f"SIGTERM received during the last step: the run is complete (step {STEPS})"
    assert out.splitlines()[-1] == line and err.splitlines()[-1] == f"numdp lmp: {line}"
    assert (folder / "log.lammps").read_text().splitlines()[-1] == line
    assert_same_run(folder, reference)   # the final checkpoint at step 12 included


def test_lmp_script_without_a_restart_switch_continues_through_its_toml(task, tmp_path, monkeypatch,  # noqa: F811
                                                                         capfd):
    """A script that always reads its data file: the advice is numdp run on its --print-toml input
    with --restart; followed literally (the shell's `>` and `&&` done here) it ends on the
    uninterrupted run's files."""
    script = (SCRIPT.replace('if "${restart} > 0" then "read_restart dpgen.restart.*" else "read_data conf.lmp"',
                             "read_data conf.lmp")
              .replace('if "${restart} == 0" then "velocity        all create ${TEMP} 1234"',
                       "velocity all create ${TEMP} 1234"))
    assert "restart}" not in script
    argv = ["lmp", "-i", "in.lammps", "--threads", "1"]
    ref = _folder(task, tmp_path / "ref")
    (ref / "in.lammps").write_text(script)
    assert lmp(ref, monkeypatch, argv) == 0
    folder = _folder(task, tmp_path / "run")
    (folder / "in.lammps").write_text(script)
    sigterm_after(monkeypatch, 6)
    assert lmp(folder, monkeypatch, argv) == 128 + signal.SIGTERM
    out, _ = capfd.readouterr()
    match = re.search(r"^interrupted after step 7; checkpoint written to (\S+) \(continue with (.*)\)$", out, re.M)
    checkpoint = folder / "dpgen.restart.7"
    assert match and match.group(1) == str(checkpoint), out[-2000:]
    assert match.group(2) == ("numdp lmp -i in.lammps --threads 1 --print-toml > in.lammps.toml && "
                              f"numdp run in.lammps.toml --restart {checkpoint} --threads 1")
    monkeypatch.undo()
    first, second = match.group(2).split(" && ")
    printing, toml = first.split(" > ")
    assert lmp(folder, monkeypatch, shlex.split(printing)[1:]) == 0
    (folder / toml).write_text(capfd.readouterr().out)
    assert lmp(folder, monkeypatch, shlex.split(second)[1:]) == 0
    assert_same_run(folder, ref)
