"""Defects of `numdp run` / `numdp lmp` output found by a sweep of piped and MPI command lines.

- `numdp run md.toml | head`: the reader's exit made the next write raise BrokenPipeError, which
  ended the run at once (status 141) with no checkpoint to continue from.  A closed stdout now
  stops the run as SIGTERM does (numdp.signals.stdout_closed): the step is finished, the checkpoint
  written, the trajectory and log closed, one line on stderr names what happened and the checkpoint,
  status 141 (128 + SIGPIPE).  On two ranks only rank 0 writes stdout: the stop reaches every rank
  through the safety check's agreement and every rank exits 141.
- Counts in the run's lines: "1 builds", "1 threads per rank", "for 1 steps".
- `numdp plot` of a minimization's log titled it "thermo" and called it a "thermo log".
- `mpiexec -n 2 numdp test ...` printed its one-line refusal once per rank.

The runs are tests/test_mpi.py's random model on a 64-atom rocksalt crystal, with [md] steps far
beyond the step at which the reader leaves, so the run cannot end before it whatever the speed.
"""
from __future__ import annotations

import io
import os
import re
import select
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from numdp.md.loop import RunResult, Timers, summary_lines
from numdp.train.checkpoint import read_checkpoint
from test_interrupt import environment, set_steps
from test_mpi import MPIEXEC, TIMEOUT, _mpi4py, make_run
from test_train_run import data_dir, make_input  # noqa: F401 - data_dir is a fixture

CADENCE = 10       # trajectory frames and thermo lines
NOT_REACHED = 100000


def mpi_missing() -> bool:
    return MPIEXEC is None or not _mpi4py()


def setup_run(path: Path, steps: int = NOT_REACHED) -> Path:
    make_run(path, cells=(2, 2, 2), steps=steps, every=CADENCE)
    text = (path / "md.toml").read_text().replace("thermo_every = 50", f"thermo_every = {CADENCE}")
    (path / "md.toml").write_text(text)
    return path


def thermo_step(line: str) -> int | None:
    words = line.split()
    return int(words[0]) if len(words) == 8 and words[0].isdigit() else None


def read_until(proc, ready) -> list[str]:
    """Lines of proc.stdout up to the first for which ready(lines) is true; then the reader leaves."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if ready(seen):
            break
    proc.stdout.close()   # as `head` exits
    return seen


def finish(proc) -> tuple[int, str]:
    try:
        err = proc.stderr.read()
        proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


STOP_LINE = re.compile(r"numdp run: stdout closed \(its reader exited\): interrupted after step (\d+); "
                       r"checkpoint written to (\S+) \(continue with --restart \2\)")


def assert_stopped_with_checkpoint(path: Path, status: int, err: str, seen: list[str]) -> int:
    """The closed stdout's stop: status 141, one line on stderr, the checkpoint at the step it names,
    the trajectory readable with its frames on the cadence, the log closed with the stop's line."""
    assert status == 141, f"exit {status}\n{''.join(seen)}\n{err[-3000:]}"
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    match = STOP_LINE.fullmatch(lines[0])
    assert match and match.group(2) == str(path / "checkpoint.h5"), lines[0]
    k = int(match.group(1))
    with h5py.File(path / "checkpoint.h5", "r") as f:
        assert int(f["numdp/state/step"][()]) == k
    with h5py.File(path / "traj.h5md", "r") as f:
        assert f["particles/trajectory/position/step"][()].tolist() == list(range(0, k + 1, CADENCE))
        assert f["particles/trajectory/position/value"].shape[0] == k // CADENCE + 1
    log = (path / "log.txt").read_text()
    assert log.splitlines()[-1] == lines[0].removeprefix("numdp run: stdout closed (its reader exited): ")
    assert not [p.name for p in path.iterdir() if ".tmp" in p.name]
    return k


def restart_to(path: Path, k: int, ranks: int = 1) -> None:
    """Continue from the checkpoint two frames beyond step k: status 0, frames on the cadence."""
    end = (k // CADENCE + 2) * CADENCE
    set_steps(path, end)
    cmd = [sys.executable, "-m", "numdp.cli", "run", "md.toml", "--restart", "checkpoint.h5", "--threads", "1"]
    if ranks > 1:
        cmd = [MPIEXEC, "-n", str(ranks), *cmd]
    r = subprocess.run(cmd, cwd=path, capture_output=True, text=True, timeout=TIMEOUT, env=environment())
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"restarted from checkpoint.h5 at step {k}" in r.stdout
    with h5py.File(path / "traj.h5md", "r") as f:
        assert f["particles/trajectory/position/step"][()].tolist() == list(range(0, end + 1, CADENCE))


def start_run(path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "numdp.cli", "run", "md.toml", "--threads", "1"], cwd=path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment())


def test_closed_stdout_during_the_steps_stops_the_run_with_a_checkpoint(tmp_path):
    path = setup_run(tmp_path)
    proc = start_run(path)
    seen = read_until(proc, lambda lines: (thermo_step(lines[-1]) or 0) >= 2 * CADENCE)
    status, err = finish(proc)
    k = assert_stopped_with_checkpoint(path, status, err, seen)
    assert k > 2 * CADENCE   # the write after the reader left came at a later thermo line
    restart_to(path, k)


# stdout is a pipe whose reader leaves when numdp.md.loop's function NAME is called: `run` (the set-up
# is done, the first reports are to come) or `summary_lines` (the last step's files are written)
READER_LEAVES_AT = textwrap.dedent("""
    import os, sys
    import numdp.md.loop as loop
    r, w = os.pipe()
    os.dup2(w, 1)
    owner = loop.Simulation if sys.argv[1] == "run" else loop
    original = getattr(owner, sys.argv[1])

    def reader_leaves(*args, **kwargs):
        os.close(r)
        return original(*args, **kwargs)

    setattr(owner, sys.argv[1], reader_leaves)
    from numdp.cli import main
    sys.exit(main(["run", "md.toml", "--threads", "1"]))
""")


def run_reader_leaves_at(path: Path, name: str):
    return subprocess.run([sys.executable, "-c", READER_LEAVES_AT, name], cwd=path, capture_output=True, text=True,
                          timeout=TIMEOUT, env=environment())


def test_closed_stdout_before_the_steps_stops_after_the_first_step(tmp_path):
    """The reader left during the set-up (`| head -1`): the run goes on without a screen, and
    stops after its first step, as after a SIGTERM at that time."""
    path = setup_run(tmp_path)
    r = run_reader_leaves_at(path, "run")
    assert assert_stopped_with_checkpoint(path, r.returncode, r.stderr, []) == 1
    restart_to(path, 1)


def test_closed_stdout_after_the_last_step_completes_the_run(tmp_path):
    """The run has ended when its reader leaves: it completes, writes its summary to the log,
    prints nothing on stderr and reports the closed pipe (141)."""
    path = setup_run(tmp_path, steps=2 * CADENCE)
    r = run_reader_leaves_at(path, "summary_lines")
    assert r.returncode == 141 and r.stderr == "", f"exit {r.returncode}\n{r.stderr[-3000:]}"
    assert (path / "log.txt").read_text().splitlines()[-1].startswith("Other ")   # the summary's last row
    with h5py.File(path / "checkpoint.h5", "r") as f:
        assert int(f["numdp/state/step"][()]) == 2 * CADENCE


# Rank 0's stdout is the reader's pipe (out.fifo), as when a launcher hands it the terminal's:
# MPICH's mpiexec forwards the ranks' output itself and kills every rank when its own stdout
# closes (docs/md-run-outputs.md), which no rank can see coming.
RANK0_TO_FIFO = textwrap.dedent("""
    import os, sys
    if os.environ.get("PMI_RANK") == "0":
        os.dup2(os.open("out.fifo", os.O_WRONLY), 1)
    from numdp.cli import main
    sys.exit(main(["run", "md.toml", "--threads", "1"]))
""")


def read_fifo_until(fd: int, proc, ready) -> list[str]:
    """Lines from the FIFO `fd` (non-blocking) until ready(lines); a dead `proc` or TIMEOUT fails."""
    buffer, deadline = b"", time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        select.select([fd], [], [], 0.1)
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            chunk = b""
        if not chunk:
            time.sleep(0.02)   # no writer yet, or nothing written yet
            continue
        buffer += chunk
        lines = buffer.decode().splitlines(keepends=True)
        complete = [line for line in lines if line.endswith("\n")]
        if ready(complete):
            return complete
    pytest.fail(f"never ready; exit {proc.poll()}\n{buffer.decode()}\n{proc.stderr.read() if proc.poll() is not None else ''}")


@pytest.mark.skipif(mpi_missing(), reason="MPI tests need mpi4py and mpiexec (pip install -e '.[mpi]')")
def test_closed_stdout_of_rank_0_stops_every_rank(tmp_path):
    path = setup_run(tmp_path)
    os.mkfifo(path / "out.fifo")
    (path / "rank0.py").write_text(RANK0_TO_FIFO)
    proc = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, "rank0.py"], cwd=path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=environment(), start_new_session=True)
    fd = os.open(path / "out.fifo", os.O_RDONLY | os.O_NONBLOCK)
    try:
        seen = read_fifo_until(fd, proc, lambda lines: any((thermo_step(x) or 0) >= 2 * CADENCE for x in lines))
    finally:
        os.close(fd)   # the reader leaves
    status, err = finish(proc)
    assert "  2 MPI ranks, grid " in seen[2] and seen[2].endswith("; 1 thread per rank ([model] threads or --threads)\n")
    k = assert_stopped_with_checkpoint(path, status, err, seen)
    assert k >= 2 * CADENCE
    restart_to(path, k, ranks=2)


# -- counts in the run's lines ----------------------------------------------------------------------


def test_counts_of_one_are_singular():
    def summary(**kw):
        r = RunResult(natoms=1, timestep=0.002, timers=Timers(total=1.0), overflow_calls=0, **kw)
        return summary_lines(r, 1)

    lines = summary(steps=1, rebuilds=1, loop_rebuilds=0)
    assert lines[0].endswith(" for 1 step with 1 atom (1 thread)"), lines[0]
    assert lines[3] == "Neighbour list: 1 build (none during the 1 step)"
    lines = summary(steps=1, rebuilds=2, loop_rebuilds=1, ranks=2)
    assert lines[0].endswith(" for 1 step with 1 atom on 2 MPI ranks (1 thread per rank)"), lines[0]
    assert lines[3].startswith("Neighbour list: 2 builds (one per ")
    lines = summary(steps=1, rebuilds=1, loop_rebuilds=0, minimization=True)
    assert lines[0].endswith(" for 1 iteration with 1 atom (1 thread)") and lines[3].endswith("the 1 iteration)")
    lines = summary(steps=20, rebuilds=3, loop_rebuilds=2)
    assert lines[0].endswith(" for 20 steps with 1 atom (1 thread)") and lines[3].endswith("(one per 10.0 steps)")


# -- numdp plot of a minimization's log --------------------------------------------------------------


def test_plot_names_a_minimization_log(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from numdp.cli import main
    from numdp.md.reporters import Console, MinimizeThermoReporter
    from numdp.plots import figure_for, read_table

    class Snap:
        def __init__(self, step):
            self.step, self.pe = step, -1.0 - step
            self.state = type("S", (), {"forces": np.array([[0.5 / (1 + step), 0.0, 0.0]])})()
            self.world = None

    log = tmp_path / "log.txt"
    console = Console(log, screen=io.StringIO())
    th = MinimizeThermoReporter(1, console)
    th.start()
    for s in range(3):
        th.report(Snap(s))
    console.close()
    t = read_table(log)
    assert t.description == "minimization log"
    assert figure_for(t)._suptitle.get_text() == "log.txt: minimization"
    assert main(["plot", str(log), "-o", str(tmp_path / "min.png")]) == 0
    assert capsys.readouterr().out == f"minimization log: 3 rows of {log} -> {tmp_path / 'min.png'}\n"
    assert main(["plot", str(log), "--trust-lo", "0.1"]) == 2
    assert "--trust-lo/--trust-hi apply to model deviation files, this is a minimization log" in capsys.readouterr().err


# -- numdp test under mpiexec ------------------------------------------------------------------------


@pytest.mark.skipif(mpi_missing(), reason="MPI tests need mpi4py and mpiexec (pip install -e '.[mpi]')")
def test_one_process_refusal_is_printed_once(tmp_path):
    r = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "numdp.cli", "test", "-m", "model.h5", "-s", "."],
                       cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT, env=environment())
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        "numdp test: error: started on 2 MPI ranks, but numdp test runs as one process (each rank would run the "
        "whole job on the same files); only numdp run and numdp lmp use MPI: start it without mpiexec"], r.stderr
    assert r.stdout == ""


def test_launched_rank_reads_the_launchers_variables():
    from numdp.parallel.world import launched_rank

    assert launched_rank({}) == 0
    assert launched_rank({"PMI_RANK": "1", "PMI_SIZE": "2"}) == 1
    assert launched_rank({"OMPI_COMM_WORLD_RANK": "3"}) == 3


def test_closed_stdout_stops_training_with_a_checkpoint(tmp_path, data_dir):
    work = make_input(tmp_path, data_dir, steps=100000).parent
    proc = subprocess.Popen([sys.executable, "-m", "numdp.cli", "train", "input.toml", "--threads", "1"],
                            cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:            # the reader leaves at the first progress line
            if line.startswith("step ") and "ETA" in line:
                break
        proc.stdout.close()
        err = proc.stderr.read()
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 141, err[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    match = re.fullmatch(r"numdp train: stdout closed \(its reader exited\): interrupted after step (\d+); "
                         r"checkpoint written to (\S+) \(continue with --restart \2\)", lines[0])
    assert match, lines[0]
    assert read_checkpoint(work / match.group(2)).step == int(match.group(1))
    assert not [p.name for p in work.iterdir() if ".tmp" in p.name]
