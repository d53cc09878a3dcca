"""`mpiexec -n N numdp run` as a user runs it: defects found by the MPI sweep, each checked through
the command line (tests/test_mpi.py's small rocksalt crystal and random model).

- A SIGINT or SIGTERM that arrives before the MD loop (imports, reading, loading the model, the
  first force evaluation and its compilation) cannot be agreed on by the ranks: it must still end
  every rank with one line and status 130 / 143 (numdp.parallel.world.abort_on_signal), not a
  KeyboardInterrupt traceback from each rank and MPI_Abort with status 3 (SIGINT), nor a silent
  status 15 (SIGTERM).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from test_mpi import MPIEXEC, TIMEOUT, _mpi4py, make_run

pytestmark = pytest.mark.skipif(MPIEXEC is None or not _mpi4py(),
                                reason="MPI tests need mpi4py and mpiexec (pip install -e '.[mpi]')")

# Every rank writes its pid to pid.RANK and then spends 60 s loading the model (a slow file system, a long
# compilation): a signal sent now reaches the ranks before the MD loop's handlers exist.
SLOW_SETUP = textwrap.dedent("""
    import os, sys, time
    import numdp
    from numdp.cli import main

    load = numdp.load_model

    def slow(*args, **kwargs):
        with open(f"pid.{os.environ.get('PMI_RANK')}.tmp", "w") as f:
            f.write(str(os.getpid()))
        os.replace(f"pid.{os.environ.get('PMI_RANK')}.tmp", f"pid.{os.environ.get('PMI_RANK')}")
        time.sleep(60)
        return load(*args, **kwargs)

    numdp.load_model = slow
    sys.exit(main(["run", "md.toml"]))
""")


def _start_slow_setup(path):
    (path / "slow.py").write_text(SLOW_SETUP)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "PMIX_", "MPI_"))}
    p = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, "slow.py"], cwd=path, env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and p.poll() is None \
            and not all((path / f"pid.{r}").exists() for r in (0, 1)):
        time.sleep(0.05)
    assert p.poll() is None, p.communicate()
    return p, {r: int((path / f"pid.{r}").read_text()) for r in (0, 1)}


def _finish(p):
    try:
        out, err = p.communicate(timeout=30)   # the ranks would sleep 60 s more: a hang fails here
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        pytest.fail("the ranks did not stop on the signal")
    return p.returncode, out, err


@pytest.mark.parametrize("target, sig, status", [("mpiexec", signal.SIGINT, 130), ("rank 1", signal.SIGTERM, 143)],
                         ids=["sigint-to-mpiexec", "sigterm-to-rank-1"])
def test_a_signal_before_the_steps_ends_every_rank_with_one_line(tmp_path, target, sig, status):
    """Ctrl-C to the launcher (forwarded to every rank) or SIGTERM to one rank during set-up: one
    line, status 128 + the signal's number, no traceback, no rank left waiting."""
    path = make_run(tmp_path, steps=10)
    p, pids = _start_slow_setup(path)
    os.kill(p.pid if target == "mpiexec" else pids[1], sig)
    rc, out, err = _finish(p)
    assert rc == status, f"exit {rc}\n{out[-2000:]}\n{err[-3000:]}"
    lines = [ln for ln in err.splitlines() if ln.startswith("numdp run:")]
    assert len(lines) == 1 and "interrupted" in lines[0] and signal.Signals(sig).name in lines[0], err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


# -- restart of an NPT run on the same rank count ------------------------------------------------------

NPT = ('ensemble = "npt"\nthermostat = { kind = "langevin", temperature = 20.0, tau = 0.05 }\n'
       'barostat = { pressure = 1000.0, tau = 0.2, coupling = "anisotropic", compressibility = 1e-3 }')


def _npt_halves(path, grid_line: str = ""):
    """(uninterrupted 0 -> 60 checkpoint, 0 -> 30 -> 60 checkpoint, the restart's stdout) of an
    anisotropic NPT run on two ranks in a cubic cell (three equal widths: the automatic grid of the
    start is a tie, broken towards a)."""
    from numdp.io.h5md import read_checkpoint
    from numdp.io.structure import write_extxyz
    from test_mpi import numdp_run, rocksalt

    out = []
    for name, steps in (("whole", 60), ("part", 30)):
        run = make_run(path / name, steps=steps, md=NPT, extra=grid_line)
        x, t, _ = rocksalt((3, 3, 3))
        write_extxyz(run / "start.xyz", [["A", "B"][i] for i in t], x, np.diag([12.0, 12.0, 12.0]))
        numdp_run(run, 2)
        out.append(run)
    whole, part = out
    (part / "md.toml").write_text((part / "md.toml").read_text().replace("steps = 30", "steps = 60"))
    r = numdp_run(part, 2, "--restart", "checkpoint.h5")
    return read_checkpoint(whole / "checkpoint.h5"), read_checkpoint(part / "checkpoint.h5"), r.stdout


def _bitwise(a, b) -> bool:
    return all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("positions", "velocities", "forces", "box"))


def test_npt_restart_with_a_given_grid_is_bit_for_bit(tmp_path):
    """docs/mpi.md: with `[parallel] grid` a restart on the same rank count repeats the
    uninterrupted NPT run bit for bit (a given grid is taken over the one the checkpoint records)."""
    whole, again, _ = _npt_halves(tmp_path, "[parallel]\ngrid = [2, 1, 1]")
    assert np.abs(whole.box - np.diag([12.0] * 3)).max() > 1e-3   # the cell did move
    assert _bitwise(whole, again)


def test_npt_restart_with_the_automatic_grid_is_bit_for_bit(tmp_path):
    """Without `[parallel] grid` a restart on as many ranks takes the grid the checkpoint records
    (neighbor/grid): choose_grid on the cell the barostat left would pick 1 x 1 x 2 here, and the
    continuation would differ by round-off (1.8e-15 A)."""
    whole, again, stdout = _npt_halves(tmp_path)
    assert "grid 2 x 1 x 1" in stdout, stdout   # the grid of the uninterrupted run
    assert _bitwise(whole, again)


def test_a_launcher_of_another_mpi_is_one_line_not_n_copies_of_the_job(tmp_path):
    """A launcher that announces 2 ranks (here Open MPI's variables) to processes whose mpi4py
    MPI gives each a world of one: every process ran the whole job, racing on the same outputs,
    exit 0.  Now each stops with one line naming the mismatch, exit 2."""
    run = make_run(tmp_path / "r", steps=2)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "PMIX_", "MPI_", "MV2_"))}
    env.update(OMPI_COMM_WORLD_SIZE="2", OMPI_COMM_WORLD_RANK="1")
    r = subprocess.run([sys.executable, "-m", "numdp", "run", "md.toml"], cwd=run, env=env, text=True,
                       capture_output=True, timeout=TIMEOUT)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "numdp run: error: the launcher started 2 ranks, but each sees an MPI world of one"), r.stderr
    assert not (run / "log.txt").exists()
