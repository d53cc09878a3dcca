"""The run loop (after LAMMPS' Verlet::run) with a timer per phase and the final summary.

    setup:  forces of the start state unless a checkpoint brought them; first reports
    loop:   integrator.step (thermostat, kick, drift, barostat, neighbour update, force, kick,
            thermostat) -> safety check -> reporters that want this step -> progress, until the end
            step or until the integrator is `finished` (a minimization's stopping criterion)
    end:    integrator.at_end, the last step's thermo line (off the cadence too), final checkpoint
            and trajectory frame, summary (ns/day, µs/atom/step, time split), the integrator's
            final lines

An energy minimization runs the same loop with a minimizer (numdp.md.minimize.FireMinimizer,
numdp.md.linesearch.LineSearchMinimizer) in the place of the integrator (one iteration per step);
its summary counts iterations.

Phases: neigh (rebuilds, ghost positions, list formatting), force (model), comm (migration, ghost
exchange, force return, global reductions: numdp.parallel), integrate (everything else in a step),
output (reporters: thermo, trajectory, checkpoint, gathering included), other (progress, checks).

On several MPI ranks every rank runs this loop in lock step: the safety check is collective, so a
stop or a signal (SIGINT/SIGTERM, numdp.signals) ends every rank at the same step.  A signal ends
the run after the current step with a checkpoint and no extra trajectory frame (so that a restart
reproduces the uninterrupted run's files); a second signal aborts at once.  A closed stdout
(`numdp run ... | head`; rank 0 writes it) stops the run the same way, with status 141 on every
rank and the stop's line on stderr.  A stop that the last step's check sees (the request came during
the last step) finds every step done: the run ends as a complete one (the end above, summary
included), and then with the stop's status (LAMMPS' Verlet checks its stop request, a timeout,
before each step: one during the last step leaves the run complete).

The command that runs the loop says how its stopped run continues (`Continuation`: numdp run's
--restart, numdp lmp's script), since a run's settings do not know which command gave them.
"""
from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..io.backup import Backups
from ..parallel.world import mark_agreed
from ..signals import STDOUT_CLOSED, StopRequest, agreed_stop
from ..system import State
from ..progress import CompileNotice, Progress, counted
from .deviation import DeviationReporter
from .reporters import CheckpointReporter, Console, ThermoReporter, TrajectoryReporter, snapshot
from .safety import SafetyMonitor, SafetyStop


@dataclass
class Timers:
    """Seconds spent per phase."""

    neigh: float = 0.0
    force: float = 0.0
    comm: float = 0.0
    integrate: float = 0.0
    output: float = 0.0
    other: float = 0.0
    total: float = 0.0

    def rows(self):
        return [("Neigh", self.neigh), ("Force", self.force), ("Comm", self.comm), ("Integrate", self.integrate),
                ("Output", self.output), ("Other", self.other)]


@dataclass
class RunResult:
    """What a finished (or stopped) run reports."""

    steps: int
    natoms: int
    timestep: float  # ps
    timers: Timers
    rebuilds: int             # neighbour-list builds of this process's run, set-up included
    overflow_calls: int
    stopped: str | None = None
    ranks: int = 1
    cpu_seconds: float = 0.0  # CPU time of the loop per rank (mean over ranks), s
    beyond_table: int = 0     # pair evaluations outside a compressed model's tables (all ranks)
    minimization: bool = False  # steps are minimizer iterations (numdp.md.minimize, .linesearch): no ns/day
    extra: dict = field(default_factory=dict)
    loop_rebuilds: int | None = None   # builds during the steps (None: rebuilds - 1, a set-up build)

    @property
    def timed(self) -> bool:
        """Whether a speed can be given: at least one step made, in a measured time."""
        return bool(self.steps and self.timers.total > 0)

    @property
    def ns_per_day(self) -> float:
        """Simulated ns per day of the loop's wall time; nan when no step was made."""
        return self.steps * self.timestep * 1e-3 / (self.timers.total / 86400.0) if self.timed else math.nan

    @property
    def us_per_atom_step(self) -> float:
        """Wall µs per atom and step; nan when no step was made."""
        return 1e6 * self.timers.total / (self.steps * self.natoms) if self.timed and self.natoms else math.nan


def summary_lines(r: RunResult, nthreads: int | None = None) -> list[str]:
    t = r.timers
    unit = "iteration" if r.minimization else "step"
    if not r.timed:
        performance = f"Performance: n/a (no {unit} was made)"
    elif r.minimization:
        performance = (f"Performance: {r.steps / t.total:.3f} iterations/s, "
                       f"{r.us_per_atom_step:.2f} us/atom/iteration")
    else:
        performance = (f"Performance: {r.ns_per_day:.4f} ns/day, {r.steps / t.total:.3f} timesteps/s, "
                       f"{r.us_per_atom_step:.2f} us/atom/step")
    lines = [
        f"Loop time of {t.total:.3f} s for {counted(r.steps, unit)} with {counted(r.natoms, 'atom')}"
        + (f" on {r.ranks} MPI ranks" if r.ranks > 1 else "")
        + (f" ({counted(nthreads, 'thread')}{' per rank' if r.ranks > 1 else ''})" if nthreads else ""),
        performance,
        f"{100.0 * r.cpu_seconds / (t.total * (nthreads or 1)) if t.total else 0.0:.1f}% CPU use with "
        f"{r.ranks} MPI rank(s) x {nthreads or 1} thread(s)",
        f"Neighbour list: {counted(r.rebuilds, 'build')}"
        + (_rebuild_rate(r, unit) if r.steps else "")
        + (f", {r.overflow_calls} force calls with neighbour overflow" if r.overflow_calls else ""),
        *([f"Compressed model: {r.beyond_table} pair evaluations beyond its tables (continued linearly; "
           f"atoms closer than any training pair allows)"] if r.beyond_table else []),
        f"{'Section':<10} | {'time (s)':>10} | {'%total':>7}",
        "-" * 33,
    ]
    for name, value in t.rows():
        pct = 100.0 * value / t.total if t.total else 0.0
        lines.append(f"{name:<10} | {value:>10.4f} | {pct:>7.2f}")
    return lines


def _rebuild_rate(r: RunResult, unit: str) -> str:
    """' (one per X steps)' over the builds made during the steps (a restart restores its list
    without a build, a new run builds one in its set-up), or ' (none during the N steps)'."""
    during = r.loop_rebuilds if r.loop_rebuilds is not None else max(r.rebuilds - 1, 0)
    return f" (one per {r.steps / during:.1f} {unit}s)" if during else f" (none during the {counted(r.steps, unit)})"


def restart_option(checkpoint: Path) -> str:
    """numdp run's way on from a stopped run's checkpoint: its input again with --restart."""
    return f"--restart {checkpoint}"


@dataclass(frozen=True)
class Continuation:
    """The command a run belongs to, as its stop lines say it: `command`, the sub-command's name
    ("numdp COMMAND: SIGTERM received ..."), and `advice(checkpoint)`, the text after "continue
    with " that continues the run from the checkpoint a stop wrote (numdp run: `restart_option`;
    numdp lmp: what continues its script, numdp.commands.lmp)."""

    command: str = "run"
    advice: Callable[[Path], str] = restart_option
    completed: Callable[[], str] = lambda: ""
    """Called on every rank when a stop finds the run complete (during its last step), after its
    final files: does the command's own work after a complete run that such a stop keeps (numdp
    lmp: the run's write_data), and returns what continues the command's remaining work after
    "continue with " ('' if none: numdp run)."""


def _stop_name(signum: int) -> str:
    """What asked the agreed stop `signum` (numdp.md.safety: SIGPIPE is a closed stdout)."""
    return STDOUT_CLOSED if signum == signal.SIGPIPE else f"{signal.Signals(signum).name} received"


class Simulation:
    """A ready-to-run MD: state + integrator + force provider + safety + reporters.

    reporters: ordered list of objects with wants(step) / report(snapshot) / close();
    trajectory / checkpoint: the TrajectoryReporter / CheckpointReporter among them (or None);
    stop_path: where the state is written when a safety check stops the run;
    backups: the previous run's outputs a new run moved aside (rank 0): given their names back if
    the run fails before its first report, kept from then on (numdp.io.backup).
    """

    def __init__(self, state: State, integrator, provider, safety: SafetyMonitor, reporters,
                 console: Console, progress_mode: str = "none", trajectory: TrajectoryReporter | None = None,
                 checkpoint: CheckpointReporter | None = None, stop_path=None, restarted: bool = False,
                 backups: Backups | None = None, continuation: Continuation | None = None):
        self.world = provider.world  # the run's MPI ranks (numdp.parallel.world.World)
        self.continuation = continuation if continuation is not None else Continuation()
        self.state = state
        self.integrator = integrator
        self.provider = provider
        self.safety = safety
        self.reporters = list(reporters)
        self.console = console
        self.progress_mode = progress_mode
        self.trajectory = trajectory
        self.checkpoint = checkpoint
        self.stop_path = stop_path
        self.restarted = restarted
        self.backups = backups if backups is not None else Backups.none()

    def _snapshot(self):
        self.integrator.sync_host(self.state)  # a GPU run copies its device arrays here only
        return snapshot(self.state, self.integrator.thermostat, self.world, self.integrator.barostat)

    def _report(self, step: int, initial: bool, timers: Timers) -> None:
        t0 = time.perf_counter()
        f0 = self.provider.time_force  # the deviation models' evaluation counts as force
        wanting = [r for r in self.reporters if r.wants(step)
                   or (initial and isinstance(r, ThermoReporter))]  # LAMMPS: every run's first step
        if initial:  # no checkpoint at the start; no frame or deviation row twice after a restart
            # (a restart's trajectory holds the start frame unless it is new: numdp lmp's dump after a minimize)
            wanting = [r for r in wanting if not isinstance(r, CheckpointReporter)
                       and not (isinstance(r, DeviationReporter) and self.restarted)
                       and not (isinstance(r, TrajectoryReporter) and self.restarted and r.last_step == step)]
        if wanting:
            snap = self._snapshot()
            for r in wanting:
                r.report(snap)
        timers.output += time.perf_counter() - t0 - (self.provider.time_force - f0)

    def _stop(self, message: str, timers: Timers) -> str:
        snap = self._snapshot()
        written = []
        if self.trajectory is not None:
            self.trajectory.write_now(snap)
            written.append(f"trajectory {self.trajectory.path} is readable")
        if self.checkpoint is not None and self.stop_path is not None:
            self.checkpoint.write(snap, self.stop_path)
            last = self.checkpoint.last_written
            written.append(f"state written to {self.checkpoint.file_for(snap.step, self.stop_path)}"
                           + (f" (last regular checkpoint: step {last})" if last is not None else ""))
        return message + ("; " + ", ".join(written) if written else "")

    def run(self, end_step: int) -> RunResult:
        """Run until state.step == end_step; returns the timings.  Raises SafetyStop on a stop."""
        state = self.state
        timers = Timers()
        start_step = state.step
        progress = Progress(start_step, end_step, self.progress_mode, prefix="progress: ")
        self.console.progress = progress
        t_start = time.perf_counter()
        # a first run compiles the kernels in the first force evaluation and the first step: say so
        # (on the screen: in the log the second line would fall between thermo rows 0 and 1)
        notice = CompileNotice(self.console.screen_line).start()
        try:
            if state.forces is None:
                self.provider(state)
            for r in self.reporters:
                if hasattr(r, "start"):
                    r.start()
            problem, _ = self.safety.check(state, self.provider)
            stopped = None
            if problem is None:
                self._report(state.step, True, timers)
        except BaseException:
            notice.stop()
            self.backups.restore()  # nothing of the new run's own yet: the previous files come back
            raise
        self.backups.keep()  # the first frame is written (or a safety stop writes its state)
        timers = Timers()  # the loop's split starts here (setup and first reports excluded)
        n0, f0 = self.provider.time_neigh, self.provider.time_force
        builds0 = self.provider.rebuilds   # the set-up's build (a new run) is not one of the steps'
        b0 = getattr(self.provider.model, "beyond_table", 0)
        world = self.world
        t_loop = time.perf_counter()
        cpu_loop = time.process_time()
        signalled = False
        continuation = self.continuation
        with StopRequest(continuation.command, announce=world.is_root) as stop:
            while (problem is None and state.step < end_step and not signalled
                   and self.integrator.finished is None):
                t0 = time.perf_counter()
                tn, tf, tc = self.provider.time_neigh, self.provider.time_force, world.comm_time
                try:
                    self.integrator.step(state, self.provider)
                finally:
                    notice.stop()  # after the first step (idempotent)
                t1 = time.perf_counter()
                step_comm = world.comm_time - tc
                timers.integrate += ((t1 - t0) - (self.provider.time_neigh - tn) - (self.provider.time_force - tf)
                                     - step_comm)
                tc = world.comm_time
                problem, signalled = self.safety.check(state, self.provider, stop.signum)
                timers.comm += step_comm + (world.comm_time - tc)
                if problem is not None:
                    break
                self._report(state.step, False, timers)
                progress.update(state.step)
            # a stop that the last step's check sees (or a converged minimization's) finds the run complete
            complete = state.step >= end_step or self.integrator.finished is not None
            if signalled and problem is None and not complete:   # (a safety stop on the same step wins)
                # No trajectory frame here: the file keeps the output cadence, and a restart from
                # the checkpoint appends the frames an uninterrupted run would have written.  The
                # checkpoint is written with the handlers still active, so a second signal during
                # the write aborts at once (the atomic write leaves the previous checkpoint).
                progress.finish()
                snap = self._snapshot()
                if self.checkpoint is not None and self.checkpoint.last_written != state.step:
                    self.checkpoint.write(snap, self.checkpoint.path)
                file = self.checkpoint.file_for(state.step) if self.checkpoint else None
                line = (f"interrupted after step {state.step}"
                        + (f"; checkpoint written to {file} (continue with {continuation.advice(file)})"
                           if file is not None else ""))
                self.console.line(line)
                # numdp.cli prints the stop on stderr: after a closed stdout (rank 0's) all of it
                said = f"{STDOUT_CLOSED}: {line}" if signalled == signal.SIGPIPE else "interrupted"   # the agreed stop
                raise mark_agreed(agreed_stop(said, 128 + signalled), self.world.is_root)
        notice.stop()
        progress.finish()
        if problem is not None:
            stopped = self._stop(problem, timers)
        else:
            t0 = time.perf_counter()
            self.integrator.at_end(state, end_step)   # a minimization: the relaxed structure at rest
            snap = self._snapshot()
            if state.step > start_step:  # the last step's thermo line, off the cadence too (LAMMPS)
                for r in self.reporters:
                    if isinstance(r, ThermoReporter) and not r.wants(state.step):
                        r.report(snap)
            if self.trajectory is not None:
                self.trajectory.write_end(snap, end_step)
            if self.checkpoint is not None and self.checkpoint.last_written != state.step:
                self.checkpoint.write(snap, self.checkpoint.path)
            timers.output += time.perf_counter() - t0
        timers.neigh = self.provider.time_neigh - n0
        timers.force = self.provider.time_force - f0
        timers.total = time.perf_counter() - t_loop
        cpu = world.sum_global(time.process_time() - cpu_loop) / world.size
        beyond = int(world.sum_global(float(getattr(self.provider.model, "beyond_table", 0) - b0)))
        timers.other = max(timers.total - timers.neigh - timers.force - timers.comm - timers.integrate
                           - timers.output, 0.0)
        result = RunResult(steps=state.step - start_step, natoms=state.natoms_global, timestep=self.integrator.dt,
                           timers=timers, rebuilds=self.provider.rebuilds,
                           overflow_calls=self.provider.overflow_calls, stopped=stopped, ranks=world.size,
                           cpu_seconds=cpu, beyond_table=beyond, minimization=self.integrator.minimizing,
                           loop_rebuilds=self.provider.rebuilds - builds0)
        result.extra["wall"] = time.perf_counter() - t_start
        for line in summary_lines(result, getattr(self.provider.model, "nthreads", None)):
            self.console.line(line)
        if stopped is not None:
            self.console.line(f"STOPPED: {stopped}")
        else:
            for line in self.integrator.final_lines(state):
                self.console.line(line)
            if signalled:   # complete, yet asked to stop: the stop's status (numdp.signals), every rank
                line = f"{_stop_name(signalled)} during the last step: the run is complete (step {state.step})"
                rest = continuation.completed()
                line += f"; continue with {rest}" if rest else ""
                self.console.line(line)
                raise mark_agreed(agreed_stop(line, 128 + signalled), world.is_root)
        return result

    def close(self) -> None:
        for r in self.reporters:
            r.close()
        self.console.close()


def run_or_raise(sim: Simulation, end_step: int) -> RunResult:
    """Run, close the outputs, and raise SafetyStop when a safety check ended the run."""
    try:
        result = sim.run(end_step)
    finally:
        sim.close()
    if result.stopped is not None:
        raise mark_agreed(SafetyStop(result.stopped), sim.world.is_root)
    return result
