"""Review of the stop-during-the-last-step commits (47dc7db, add1221).

- numdp lmp: a stop during the last step of a script's run ended the run complete, but the
  script's `write_data` after that run was not written, and a script with later runs said
  nothing about them (its stop line had no "continue with"): rerunning the script starts over.
  LAMMPS' own stop of this kind (a `timer timeout`) skips later runs but still executes the
  script's other commands.  Now the completed run's write_data / write_restart are written and the
  line names the command that continues with the later runs.
"""
from __future__ import annotations

import re
import signal

from test_lmp_input import _folder, task  # noqa: F401 - task is a fixture
from test_train_run import data_dir  # noqa: F401 - a fixture
from test_sweep_stop import ARGS, SCRIPT, STEPS, lmp, sigterm_after


def test_lmp_stop_during_the_last_step_writes_the_runs_data_and_names_the_later_runs(task, tmp_path,  # noqa: F811
                                                                                     monkeypatch, capfd):
    folder = _folder(task, tmp_path / "run")
    (folder / "input.lammps").write_text(SCRIPT + "write_data final.data\nrun 2\n")
    sigterm_after(monkeypatch, STEPS - 1)
    assert lmp(folder, monkeypatch, ARGS) == 128 + signal.SIGTERM
    out, err = capfd.readouterr()
    assert "interrupted" not in out + err
    # the completed run's own write_data (LAMMPS' order: the state at its last step)
    assert (folder / "final.data").is_file(), out[-2000:]
    assert f"numdp lmp: write_data: final.data (step {STEPS})" in out
    last = err.splitlines()[-1]
    assert last.startswith(f"numdp lmp: SIGTERM received during the last step: the run is complete (step {STEPS})")
    # the script's second run is not run; the line says how it continues
    match = re.search(r"continue with numdp run on the inputs that (.*) --print-toml prints: run 2's", last)
    assert match and match.group(1) == "numdp lmp -i input.lammps -v restart 0 --threads 1", last
    assert not (folder / f"dpgen.restart.{STEPS + 2}").exists()


def test_log_path_on_the_ema_model_is_refused(tmp_path, data_dir, monkeypatch, capsys):  # noqa: F811
    """81bbd3c refused `-l` on the run's lcurve, checkpoint, model and input, but not on the
    moving-average model that enable_ema writes (model_ema.h5): the new run's backup moved the
    open log away and the model replaced it.  One line, nothing written."""
    from numdp.cli import main as cli_main
    from test_sweep_train_restart import INPUT, write_input

    text = INPUT.format(steps=2, tos="true").replace("[training]", "[training]\nenable_ema = true")
    path = write_input(tmp_path, data_dir, text)
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert cli_main(["train", str(path), "-l", "model_ema.h5", "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "-l/--log-path" in err and "training.enable_ema" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
