"""The `numdp` command line as a whole: `python -m numdp`, every sub-command's --help, and the
options checked once for every sub-command."""
import subprocess
import sys

import pytest

from numdp.cli import COMMANDS, main


def test_python_dash_m_numdp_runs_the_cli():
    r = subprocess.run([sys.executable, "-m", "numdp", "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("numdp "), r.stderr


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert f"usage: numdp {command}" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["train", "in.toml"], ["test", "-m", "m.h5", "-s", "sys"],
                                  ["model-devi", "-m", "a.h5", "b.h5", "-s", "sys"],
                                  ["ipi", "-m", "m.h5", "--unix", "x", "--types", "O"], ["run", "md.toml"]])
def test_threads_below_one_are_refused_in_one_line(argv, capsys):
    assert main(argv + ["--threads", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"numdp {argv[0]}: error: --threads: expected a whole number of worker threads >= 1, got 0"]


def test_run_threads_option_overrides_the_input(tmp_path, monkeypatch):
    """`numdp run --threads N`, like train, test, model-devi and ipi (it had no such option)."""
    import numdp.md.setup

    from test_config_md import GOOD

    seen = {}
    monkeypatch.setattr(numdp.md.setup, "run_md", lambda settings, restart=None, world=None, continuation=None:
                        seen.setdefault("threads", settings.model.threads))
    toml = tmp_path / "md.toml"
    toml.write_text(GOOD.replace('file = "model.h5"', 'file = "model.h5"\nthreads = 2'))
    assert main(["run", str(toml), "--threads", "1"]) == 0
    assert seen["threads"] == 1
    seen.clear()
    assert main(["run", str(toml)]) == 0
    assert seen["threads"] == 2


def test_closed_pipe_is_no_traceback(tmp_path, oracle_dir):
    """`numdp test ... | head -1` printed a BrokenPipeError traceback once head had left."""
    import numpy as np

    from tests_util import write_system

    ORACLE = oracle_dir
    ref = np.load(ORACLE / "water_cluster.npz")
    sysdir = write_system(tmp_path / "c", ref["coord"], None, ref["atype"], ["O", "H"],
                          energy=ref["energy"], force=ref["force"])
    code = ("import os, sys\n"
            "r, w = os.pipe()\n"
            "os.close(r)\n"  # stdout is a pipe nobody reads any more, as after `| head -1`
            "os.dup2(w, 1)\n"
            "from numdp.cli import main\n"
            f"sys.exit(main(['test', '-m', {str(ORACLE / 'water.dp')!r}, '-s', {str(sysdir)!r}]))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 141 and "Traceback" not in r.stderr, r.stderr


def test_an_input_given_to_the_wrong_command_says_which_one(tmp_path, capsys):
    """A training input given to run, an MD input or a DeePMD-kit input.json given to the other
    command: the message names the right command (it said "[learning_rate]: unknown table",
    "[system]: unknown section" or "not valid TOML")."""
    from test_config_md import GOOD
    from test_train_config import MINIMAL

    md, tr, js = tmp_path / "md.toml", tmp_path / "train.toml", tmp_path / "input.json"
    md.write_text(GOOD)
    tr.write_text(MINIMAL)
    js.write_text('{"model": {}, "training": {}}')
    for argv, message in ((["run", str(tr)], "train.toml: a training input ([training], [loss], ...): run it with numdp train"),
                          (["train", str(md)], "md.toml: an MD input ([md], [system], ...): run it with numdp run"),
                          (["run", str(js)], "input.json: numdp run reads a TOML input (docs/md.md); a DeePMD-kit "
                                             "input.json is a training input: numdp train")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


@pytest.mark.parametrize("value", ["abc", "2.5", "0", "-1"])
def test_bad_thread_variable_is_one_line(value, monkeypatch, capsys, oracle_dir):
    """NUMDP_NUM_THREADS=abc was a ValueError traceback (int()), and 0 or -1 silently meant 1."""
    ORACLE = oracle_dir
    monkeypatch.setenv("NUMDP_NUM_THREADS", value)
    assert main(["test", "-m", str(ORACLE / "water.dp"), "-s", str(ORACLE)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"numdp test: error: NUMDP_NUM_THREADS={value!r}: expected a whole number of threads >= 1"]
