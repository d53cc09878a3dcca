"""SIGINT / SIGTERM through the command line (numdp.signals): an interrupted `numdp run` continued
with --restart leaves files identical, dataset by dataset and bit for bit, to an uninterrupted run
(serially and on two MPI ranks); a second signal aborts at once, leaving no temporary file and no
traceback; `numdp train` stops on SIGTERM as on SIGINT.

The signal is sent once the run's output shows a given step, to a run whose [md] steps is far
beyond it, so the run cannot end before the signal arrives whatever the machine's speed; the
restart and the uninterrupted reference then run to a common end step after the interruption.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from numdp.io import atomic
from numdp.signals import EXIT_STATUS, StopRequest
from test_mpi import MPIEXEC, TIMEOUT, _mpi4py, make_run
from test_train_run import data_dir, make_input  # noqa: F401 - data_dir is a fixture

LANGEVIN = 'ensemble = "nvt"\nthermostat = { kind = "langevin", temperature = 20.0, tau = 0.05 }'
CADENCE = 10  # [output] every (trajectory frames) and thermo_every (the lines the test waits for)
SIGNAL_AFTER = 20  # the step whose thermo line triggers the signal
END = 200  # common end step of the restart and the reference (later if the interrupt came later)
NOT_REACHED = 100000  # [md] steps of the interrupted run


def setup_run(path: Path, steps: int) -> Path:
    make_run(path, steps=steps, every=CADENCE, md=LANGEVIN)
    text = (path / "md.toml").read_text().replace("thermo_every = 50", f"thermo_every = {CADENCE}")
    (path / "md.toml").write_text(text)
    return path


def set_steps(path: Path, steps: int) -> None:
    text = (path / "md.toml").read_text()
    (path / "md.toml").write_text(re.sub(r"(?m)^steps = \d+$", f"steps = {steps}", text))


def command(ranks: int, *args):
    cmd = [sys.executable, "-m", "numdp.cli", *args]
    return [MPIEXEC, "-n", str(ranks), *cmd] if ranks > 1 else cmd


def environment():
    return {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "PMIX_", "MPI_"))}


def start_and_signal(cmd, cwd: Path, ready, signals, pause=False):
    """Start `cmd`, read its stdout until ready(line), then send `signals` (to the launcher under
    MPI: it forwards them to every rank, as it does a terminal's Ctrl-C).  pause: stop the process
    while the signals are sent, so that all of them are pending together when it continues.
    Returns (exit status, stdout, stderr)."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=environment())
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if ready(line):
                break
        else:
            out, err = proc.communicate(timeout=TIMEOUT)
            pytest.fail(f"never ready; exit {proc.returncode}\n{''.join(seen)}{out}\n{err}")
        if pause:
            os.kill(proc.pid, signal.SIGSTOP)
        for sig in signals:
            os.kill(proc.pid, sig)
        if pause:
            os.kill(proc.pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, "".join(seen) + out, err


def thermo_step_at_least(step: int):
    def ready(line: str) -> bool:
        words = line.split()
        return len(words) == 8 and words[0].isdigit() and int(words[0]) >= step
    return ready


def datasets(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        out = {}
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def assert_identical_files(a: Path, b: Path) -> None:
    da, db = datasets(a), datasets(b)
    assert da.keys() == db.keys(), (a.name, sorted(set(da) ^ set(db)))
    for key in da:
        x, y = np.asarray(da[key]), np.asarray(db[key])
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), (a.name, key)


def no_temporaries(path: Path) -> None:
    left = [p.name for p in path.iterdir() if p.name.endswith(".tmp") or ".tmp-" in p.name]
    assert not left, left


_references: dict = {}


def reference(tmp_path_factory, ranks: int, end: int) -> Path:
    """The uninterrupted run 0 -> end on `ranks` ranks (made once per (ranks, end))."""
    if (ranks, end) not in _references:
        path = setup_run(tmp_path_factory.mktemp(f"reference{ranks}"), end)
        r = subprocess.run(command(ranks, "run", "md.toml"), cwd=path, capture_output=True, text=True,
                           timeout=TIMEOUT, env=environment())
        assert r.returncode == 0, r.stderr[-3000:]
        _references[ranks, end] = path
    return _references[ranks, end]


@pytest.mark.parametrize("ranks", [1, 2])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_then_restart_reproduces_the_uninterrupted_run(tmp_path, tmp_path_factory, ranks, sig):
    if ranks > 1 and (MPIEXEC is None or not _mpi4py()):
        pytest.skip("MPI tests need mpi4py and mpiexec (pip install -e '.[mpi]')")
    path = setup_run(tmp_path / "run", NOT_REACHED)
    status, out, err = start_and_signal(command(ranks, "run", "md.toml"), path,
                                        thermo_step_at_least(SIGNAL_AFTER), [sig])
    assert status == 128 + sig, f"{out[-2000:]}\n{err[-2000:]}"
    assert "Traceback" not in err and "STOPPED" not in out
    match = re.search(r"interrupted after step (\d+); checkpoint written to \S*checkpoint.h5", out)
    assert match, out[-2000:]
    k = int(match.group(1))
    assert SIGNAL_AFTER <= k < NOT_REACHED
    with h5py.File(path / "checkpoint.h5", "r") as f:
        assert int(f["numdp/state/step"][()]) == k
    with h5py.File(path / "traj.h5md", "r") as f:  # frames on the output cadence only
        assert f["particles/trajectory/position/step"][()].tolist() == list(range(0, k + 1, CADENCE))
    assert err.count(f"{sig.name} received") == 1  # announced once, by rank 0
    no_temporaries(path)

    end = max(END, (k // CADENCE + 5) * CADENCE)
    set_steps(path, end)
    r = subprocess.run(command(ranks, "run", "md.toml", "--restart", "checkpoint.h5"), cwd=path,
                       capture_output=True, text=True, timeout=TIMEOUT, env=environment())
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"restarted from checkpoint.h5 at step {k}" in r.stdout
    assert not [p for p in path.iterdir() if p.name.startswith("#")]  # a restart backs nothing up
    ref = reference(tmp_path_factory, ranks, end)
    assert_identical_files(ref / "traj.h5md", path / "traj.h5md")
    assert_identical_files(ref / "checkpoint.h5", path / "checkpoint.h5")


def test_second_signal_aborts_the_run_at_once(tmp_path):
    path = setup_run(tmp_path / "run", NOT_REACHED)
    # SIGINT then SIGTERM, both pending when the process continues: the second is handled at once
    status, out, err = start_and_signal(command(1, "run", "md.toml"), path, thermo_step_at_least(SIGNAL_AFTER),
                                        [signal.SIGINT, signal.SIGTERM], pause=True)
    second = re.search("second (SIGINT|SIGTERM): aborted at once", err)  # pending: delivered in signal order
    assert second, err
    assert status == 128 + signal.Signals[second.group(1)]
    assert "Traceback" not in err and "interrupted after step" not in out
    no_temporaries(path)
    with h5py.File(path / "traj.h5md", "r") as f:  # readable, frames on the cadence
        steps = f["particles/trajectory/position/step"][()]
        assert steps[0] == 0 and np.all(np.diff(steps) == CADENCE)
        assert f["particles/trajectory/position/value"].shape[0] == steps.size


WRITER = textwrap.dedent("""
    import os, signal, sys, time
    from numdp.io.atomic import atomic_path
    from numdp.signals import REPEAT_WINDOW, StopRequest
    target = sys.argv[1]
    with StopRequest("test"):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the new")
            os.kill(os.getpid(), signal.SIGINT)  # asks to stop: the write goes on
            os.kill(os.getpid(), signal.SIGINT)  # within 1 s: a copy of the first (forwarded)
            time.sleep(REPEAT_WINDOW)
            os.kill(os.getpid(), signal.SIGINT)  # a second request: aborts in the middle of the write
            tmp.write_text("the whole new file")
    print("not reached")
""")


def test_second_signal_during_an_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "checkpoint.h5"
    target.write_text("old")
    r = subprocess.run([sys.executable, "-c", WRITER, str(target)], capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert r.returncode == EXIT_STATUS
    assert "not reached" not in r.stdout and "Traceback" not in r.stderr
    assert "SIGINT received: stopping after this step" in r.stderr
    assert "second SIGINT: aborted at once" in r.stderr
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.h5"]


FRAME_WRITER = textwrap.dedent("""
    import os, signal, sys, time
    import numpy as np
    from numdp.io.h5md import H5MDWriter
    from numdp.signals import REPEAT_WINDOW, StopRequest

    w = H5MDWriter(sys.argv[1], [0, 1], [16.0, 1.0], ["O", "H"], input_text="x = 1")
    x = np.zeros((2, 3))
    w.append(0, 0.0, x, x, x, np.eye(3) * 10, {"temperature": 300.0})
    flush = w.h5.flush

    def flush_then_signal():  # the flush before `position` grows: the frame is half written
        flush()
        os.kill(os.getpid(), signal.SIGINT)

    with StopRequest("run"):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(REPEAT_WINDOW)
        w.h5.flush = flush_then_signal
        w.append(10, 1.0, x + 1, x, x, np.eye(3) * 10, {"temperature": 310.0})
        print("not reached")
""")


def test_second_signal_inside_a_trajectory_frame_waits_for_the_whole_frame(tmp_path):
    path = tmp_path / "traj.h5md"
    r = subprocess.run([sys.executable, "-c", FRAME_WRITER, str(path)], capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert r.returncode == EXIT_STATUS, r.stderr
    assert "second SIGINT: aborted at once" in r.stderr and "not reached" not in r.stdout
    # the deferred abort is the second signal's only effect (not a new stop request)
    assert r.stderr.count("received: stopping after this step") == 1, r.stderr
    with h5py.File(path, "r") as f:
        part = f["particles/trajectory"]
        assert part["position/step"][()].tolist() == [0, 10]
        for name in ("position", "velocity", "force", "box/edges"):
            assert part[name]["value"].shape[0] == 2, name
        assert part["position/value"][1, 0, 0] == 1.0
        assert f["observables/temperature/value"][()].tolist() == [300.0, 310.0]


def test_first_signal_only_asks_to_stop_and_handlers_are_restored():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with StopRequest("test", announce=False) as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signame == "SIGTERM"
        os.kill(os.getpid(), signal.SIGTERM)  # a copy within REPEAT_WINDOW (launcher forwarding): no abort
        assert stop.requested
    assert {s: signal.getsignal(s) for s in before} == before
    assert not atomic.PENDING


# -- numdp train ---------------------------------------------------------------------------------


@pytest.fixture()
def train_input(tmp_path, data_dir):
    return make_input(tmp_path, data_dir, steps=NOT_REACHED).parent


def progress_line(line: str) -> bool:
    return line.startswith("step ") and "ETA" in line


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_train_stops_on_a_signal_with_a_checkpoint(train_input, sig):
    from numdp.train.checkpoint import read_checkpoint

    status, out, err = start_and_signal(command(1, "train", "input.toml", "--threads", "1"), train_input,
                                        progress_line, [sig])
    assert status == 128 + sig, err[-3000:]
    assert "Traceback" not in err
    match = re.search(r"interrupted after step (\d+); checkpoint written to \S*model.ckpt.h5", err)
    assert match, err[-2000:]
    assert read_checkpoint(train_input / "model.ckpt.h5").step == int(match.group(1))
    no_temporaries(train_input)


def test_second_signal_aborts_training_at_once(train_input):
    status, out, err = start_and_signal(command(1, "train", "input.toml", "--threads", "1"), train_input,
                                        progress_line, [signal.SIGTERM, signal.SIGINT], pause=True)
    second = re.search("second (SIGINT|SIGTERM): aborted at once", err)
    assert second, err
    assert status == 128 + signal.Signals[second.group(1)]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "interrupted after" not in err
    no_temporaries(train_input)
