"""numdp.progress: one progress reporter for `numdp run` and `numdp train` (ETA without the
set-up and first step, which compile kernels on a first run; '\\r' on a terminal, plain lines
otherwise) and the notice that kernels are being compiled."""
from __future__ import annotations

import io

import numba
import numpy as np

from numdp.progress import CompileNotice, Progress, hms


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_eta_leaves_out_the_setup_and_first_step():
    clock, out = Clock(), io.StringIO()
    p = Progress(0, 100, "lines", out, clock=clock)
    clock.now = 30.0  # set-up + first step: 30 s of compilation
    p.update(1, line=True)
    assert "ETA --" in out.getvalue()  # no rate known yet
    clock.now = 31.0  # then one step per second
    p.update(2, line=True)
    # 98 steps left at 1 step/s; counted from the start the ETA would be 98 * 31 / 2 s = 25 min
    assert out.getvalue().splitlines()[-1].endswith("1.00 steps/s  elapsed 0:31  ETA 1:38")
    assert hms(3725.0) == "1:02:05" and hms(float("nan")) == "--"


def test_plain_lines_every_tenth_or_where_marked():
    clock, out = Clock(), io.StringIO()
    p = Progress(100, 200, "auto", out, prefix="progress: ", clock=clock)  # not a terminal: lines
    for step in range(101, 201):
        clock.now += 0.5
        p.update(step, "x 1")
    lines = out.getvalue().splitlines()
    assert [int(l.split()[2].split("/")[0]) for l in lines] == list(range(110, 201, 10))
    assert all(l.startswith("progress: step ") and "x 1" in l for l in lines)
    assert "\r" not in out.getvalue()
    out = io.StringIO()
    p = Progress(0, 8, "lines", out, clock=clock)
    for step in range(1, 9):
        p.update(step, line=step % 4 == 1)
    assert len(out.getvalue().splitlines()) == 2


def test_terminal_line_is_redrawn_in_place_and_cleared():
    clock, out = Clock(), Terminal()
    p = Progress(0, 50, "auto", out, interval=1.0, clock=clock)
    for step in range(1, 51):
        clock.now += 0.25
        p.update(step)
    text = out.getvalue()
    assert "\n" not in text and text.count("\r") == 14  # steps 1, 5, 9, ..., 49 (every 1 s) and 50
    assert "[##############################] step 50/50 (100.0%)" in text
    p.clear()
    assert out.getvalue().endswith("\r")
    p.update(50, line=True)  # a marked step is drawn at once
    p.finish()
    assert out.getvalue().endswith("\n")
    out = Terminal()
    Progress(0, 10, "none", out).update(3)
    assert out.getvalue() == ""


def test_compile_notice_only_when_numba_compiles():
    said = []

    @numba.njit
    def fresh(x):  # a new function: compiled on its first call, never cached
        return x * 2.0 + 1.0

    with CompileNotice(said.append) as notice:
        fresh(np.ones(3))
        fresh(np.ones(3, dtype=np.float32))  # a second compilation: no second notice
    assert notice.compiled and said[0] == CompileNotice.MESSAGE and len(said) == 2
    assert said[1].startswith("kernels compiled; set-up and first step took ")
    said.clear()
    with CompileNotice(said.append) as notice:
        fresh(np.ones(4))  # already compiled
    assert not notice.compiled and said == []
    notice.stop()  # idempotent


def test_training_summary_leaves_out_a_first_step_that_compiled():
    """A first training run compiles kernels in its first step (tens of seconds): the summary's
    time per step and phase table are over the steps after it, and say so; without a compile
    (or with one step) every step counts."""
    from types import SimpleNamespace

    from numdp.train.loop import PHASES, Trainer

    t = SimpleNamespace(timings=dict.fromkeys(PHASES, 0.0), _compile_notice=SimpleNamespace(compiled=True))
    t.timings["forward"] = 11.0
    first = (9.5, {**dict.fromkeys(PHASES, 0.0), "forward": 9.0})
    assert Trainer._first_step(t, first, 3) == first
    assert "forward 1000.0" in Trainer.timing_table(t, 3, first[1])       # (11 - 9) / 2 steps
    assert Trainer.timing_table(t, 3, first[1]).startswith("time per step after the first (ms)")
    assert Trainer._first_step(t, first, 1) is None                       # one step: nothing to leave out
    t._compile_notice.compiled = False
    assert Trainer._first_step(t, first, 3) is None
    assert "forward 3666.7" in Trainer.timing_table(t, 3)                 # 11 / 3 steps


def test_a_compile_during_the_first_step_is_said_on_the_screen_not_in_the_log(tmp_path, monkeypatch):
    """A first run (cold Numba cache) compiles kernels in its first step, after the thermo row of
    step 0: the notice's second line went to log.txt too, between rows 0 and 1, so a parser of the
    thermo block (LAMMPS log readers, tools/combos.thermo_rows) saw one row; found when
    test_sweep_combos' NVE test ran first in a fresh cache, 2026-12-07.  Now both lines are on the
    screen only and the log's block is whole.  The compile is forced: the first step calls a new
    Numba function."""
    import shutil
    from pathlib import Path

    from numdp.config import load_run_settings
    from numdp.md import integrator
    from numdp.md.setup import run_md

    water = Path(__file__).resolve().parents[1] / "inputs" / "water"
    for name in ("model.h5", "start.xyz"):
        shutil.copy(water / name, tmp_path / name)
    text = (water / "md.toml").read_text().replace("steps = 400", "steps = 3")
    text = text.replace('trajectory = "traj.h5md"', "").replace("thermo_every = 50", "thermo_every = 1")
    (tmp_path / "md.toml").write_text(text)
    original = integrator.VelocityVerlet.step

    def step(self, state, forces):
        numba.njit(lambda x: x + 1.0)(1.0)   # a new function: compiled during this step
        return original(self, state, forces)

    monkeypatch.setattr(integrator.VelocityVerlet, "step", step)
    screen = io.StringIO()
    run_md(load_run_settings(tmp_path / "md.toml"), screen=screen)
    assert CompileNotice.MESSAGE in screen.getvalue() and "kernels compiled; " in screen.getvalue()
    log = (tmp_path / "log.txt").read_text().splitlines()
    assert not any(line == CompileNotice.MESSAGE or line.startswith("kernels compiled; ") for line in log)
    head = next(i for i, line in enumerate(log) if line.split()[:1] == ["step"])
    assert [int(line.split()[0]) for line in log[head + 1:head + 5]] == [0, 1, 2, 3]
