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


_writing = 0  # depth of whole_write() blocks in progress (signal handlers run in the main thread)
_deferred: list = []  # the abort requested inside such a block, run when the outermost one ends


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
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is not None and self._first is not None:   # the stop this request asked for
            exc.signal_status = 128 + self._first[0]
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
