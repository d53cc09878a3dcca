"""SIGINT (Ctrl-C) and SIGTERM during `numdp run` and `numdp train`: stop cleanly, or abort at once.

    first signal:  `StopRequest.requested` becomes True; the command finishes its current step,
                   writes its checkpoint and exits with status 128 + the signal's number (the
                   caller does this, `exit_status`): 130 for SIGINT, 143 for SIGTERM.
    second signal: abort at once (the same signal within REPEAT_WINDOW = 1 s of the first is a
                   copy of it, see below): every temporary that an atomic write (numdp.io.atomic) is
                   writing is removed, one line goes to stderr and the process ends with status
                   128 + the second signal's number through os._exit.  Nothing is unwound, so no
                   `except`/`finally` and no library callback can swallow the abort or print a
                   traceback, and no file is
                   left half-written: checkpoints and model files are replaced atomically, and
                   trajectory frames and log lines are flushed as they are written, and a
                   signal arriving while a frame is written (inside `whole_write()`) aborts once
                   the frame is complete, so every element of a trajectory holds the same frames.

Under `mpiexec` the launcher forwards SIGINT and SIGTERM to every rank (MPICH's Hydra does; a
terminal's Ctrl-C reaches only the launcher, whose ranks run in process groups of their own), so
every rank sees one signal per keystroke; `numdp run` agrees on the stop across ranks
(numdp.md.safety).  A batch system may signal the ranks and the launcher at once (Slurm sends
SIGTERM to every process of a job at its time limit) and the launcher then forwards its copy: so
the same signal again within `REPEAT_WINDOW` seconds of the first counts as the same request, not
as a second one.  Handlers can only be installed in the main thread: elsewhere `StopRequest`
does nothing and the signals keep their previous handlers.

The statuses are the shell's for a process that a signal ends (128 + its number), so that a
command reports the same status whenever the signal comes: before the handlers are installed
(Python's SIGINT: KeyboardInterrupt; SIGTERM's default action) and after they are restored (a
second signal while the command exits) as while they are active.

A closed stdout (`numdp run input.toml | head`: the reader exited, and the next write raises
BrokenPipeError) is a stop request too, as if SIGPIPE had come first: the lines of a run go through
`StdoutGuard`, which points stdout at /dev/null (`silence_stdout`) and asks the innermost active
`StopRequest` to stop (`stdout_closed`); a StopRequest entered after that (stdout closed during a
run's set-up) starts stopped.  The command then ends as after a first signal, with status 141
(128 + SIGPIPE) and its one line on stderr, since stdout is gone (`agreed_stop`).
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import contextmanager

EXIT_STATUS = 128 + signal.SIGINT  # 130: status of a command stopped by SIGINT (SIGTERM: 143)
SIGNALS = (signal.SIGINT, signal.SIGTERM)
REPEAT_WINDOW = 1.0  # s: the same signal again this soon is a forwarded copy, not a second request


STDOUT_CLOSED = "stdout closed (its reader exited)"  # what a closed stdout's stop says it was
PIPE_CLOSED = 128 + signal.SIGPIPE  # 141: status after stdout's reader exited, as the shell reports it

_writing = 0  # depth of whole_write() blocks in progress (signal handlers run in the main thread)
_deferred: list = []  # the abort requested inside such a block, run when the outermost one ends
_active: list = []  # the StopRequests inside their `with` block, innermost last
_stdout_closed = False  # stdout's reader exited: stdout points at /dev/null (for the process's life)


@contextmanager
def whole_write():
    """Defer an abort (a second signal) to the end of the block: the block's writes land whole.

    For writes of milliseconds whose parts must agree (the datasets of one trajectory frame), not
    for long ones: the abort waits for the block.  Python runs a signal handler between bytecodes,
    so without this an abort could fall between the growth of two datasets of one frame.
    """
    global _writing
    _writing += 1
    try:
        yield
    finally:
        _writing -= 1
        if not _writing and _deferred:
            _deferred.pop()()


def exit_status(exc: BaseException | None = None) -> int:
    """Exit status of a command that `exc` (KeyboardInterrupt, or a command's own "interrupted"
    exception) ended: 128 + the number of the signal that a `StopRequest` it left through received
    first, else 130 (a KeyboardInterrupt from Python's own SIGINT handler)."""
    return getattr(exc, "signal_status", EXIT_STATUS)


def agreed_stop(line: str, status: int) -> KeyboardInterrupt:
    """The agreed end of a command after its stop request (a signal, a closed stdout): the
    KeyboardInterrupt that Ctrl-C raises in Python (callers of the API catch that), whose str is
    the line numdp.cli prints on stderr after "numdp COMMAND: " and whose signal_status is the exit
    status (128 + the signal's number; 141 for a closed stdout), the same on every MPI rank."""
    exc = KeyboardInterrupt(line)
    exc.signal_status = int(status)
    return exc


def silence_stdout() -> None:
    """Point stdout at /dev/null, so that later writes, and the interpreter's final flush, into the
    closed pipe raise nothing (the Python documentation's recipe for SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file descriptor (tests)
        pass


def stdout_closed() -> None:
    """stdout's reader exited (a write raised BrokenPipeError): silence stdout and ask the innermost
    active StopRequest to stop, as a first SIGPIPE would; a StopRequest entered later starts stopped."""
    global _stdout_closed
    silence_stdout()
    _stdout_closed = True
    if _active:
        _active[-1].stdout_closed()


def stdout_was_closed() -> bool:
    """Whether stdout's reader exited during this process (`stdout_closed`)."""
    return _stdout_closed


class StdoutGuard:
    """A text stream writing to `stream` (None: sys.stdout, looked up at each write) on which a
    BrokenPipeError becomes `stdout_closed()`: the text is dropped, and a run stops after its step.
    The one way numdp run's and numdp lmp's lines (and numdp train's) reach stdout."""

    def __init__(self, stream=None):
        self._stream = stream

    @property
    def stream(self):
        return self._stream if self._stream is not None else sys.stdout

    def write(self, text: str) -> int:
        try:
            self.stream.write(text)
        except BrokenPipeError:
            stdout_closed()
        return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            stdout_closed()

    def isatty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())


def _write_stderr(text: str) -> None:
    """Unbuffered write, safe inside a signal handler (no re-entry into sys.stderr's buffer)."""
    try:
        os.write(2, text.encode())
    except OSError:
        pass


class StopRequest:
    """Context manager catching SIGINT and SIGTERM (see the module docstring).

    command: the sub-command name for messages ("run", "train"); announce: print the one-line
    notices (False on MPI ranks other than 0, so that a notice appears once).
    """

    def __init__(self, command: str, announce: bool = True):
        self.command = command
        self.announce = announce
        self.requested = False
        self.signame: str | None = None
        self._first: tuple[int, float] | None = None  # (signal, monotonic time) of the first one
        self._previous: dict = {}

    def _handler(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        now = time.monotonic()
        if self._first is not None:
            if signum == self._first[0] and now - self._first[1] < REPEAT_WINDOW:
                return  # a forwarded copy of the first signal
            self.abort(name)   # ends the process, or defers the abort to the end of a whole write
            return
        self._first = (signum, now)
        self.requested = True
        self.signame = name
        if self.announce:
            _write_stderr(f"numdp {self.command}: {name} received: stopping after this step "
                          f"(a second one aborts at once)\n")

    def stdout_closed(self) -> None:
        """A closed stdout (`stdout_closed`): a stop request as if SIGPIPE had come, unless a
        signal asked first.  Nothing is announced: the command's stop line says it (`agreed_stop`)."""
        if self._first is None:
            self._first = (signal.SIGPIPE, time.monotonic())
            self.requested = True
            self.signame = signal.SIGPIPE.name

    @property
    def signum(self) -> int:
        """The number of what asked first (SIGPIPE: a closed stdout), 0 while nothing did."""
        return 0 if self._first is None else int(self._first[0])

    @property
    def by_closed_stdout(self) -> bool:
        """Whether the stop was asked by a closed stdout (then stdout cannot show the stop's line)."""
        return self.signum == signal.SIGPIPE

    def abort(self, name: str) -> None:
        """Remove the temporaries of atomic writes in progress and end the process (status 128 +
        the number of the signal `name`)."""
        from .io.atomic import remove_pending

        if _writing:
            _deferred[:] = [lambda: self.abort(name)]
            return

        remove_pending()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a stream being written by the interrupted code
                pass
        if self.announce:
            _write_stderr(f"numdp {self.command}: second {name}: aborted at once; files hold their "
                          f"last completed writes\n")
        os._exit(128 + signal.Signals[name])

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handler)
        _active.append(self)
        if _stdout_closed:
            self.stdout_closed()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self in _active:
            _active.remove(self)
        # the stop this request asked for, unless the command set the status its ranks agreed on
        if exc is not None and self._first is not None and getattr(exc, "signal_status", None) is None:
            exc.signal_status = 128 + self._first[0]
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


@contextmanager
def sigterm_interrupts():
    """While active (main thread only: handlers cannot be installed elsewhere), SIGTERM (`kill`, a
    batch system's time limit) ends a command that has nothing to save (numdp ipi's client) as
    Ctrl-C does: a KeyboardInterrupt out of whatever blocks (`agreed_stop`), which numdp.cli prints
    as one line ("terminated by SIGTERM") with status 143 (128 + 15), instead of Python's default,
    a silent death."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise agreed_stop("terminated by SIGTERM", 128 + signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
