"""Live feedback of long loops (`numdp run` steps, `numdp train` updates): one progress reporter,
and the notice that Numba is compiling kernels.

`Progress` shows `step k/n (pct%) [detail] rate steps/s  elapsed  ETA`:

- on a terminal ("bar" mode) one line redrawn in place with '\\r', at most every `interval` s,
  optionally led by a `[####....]` bar;
- otherwise ("lines" mode) plain lines: every 10 % of the run, or at the steps the caller marks
  (`update(..., line=True)`, e.g. the display steps of training).

ETA rule: the rate is measured from the first `update` on, that is after the first completed
step.  Set-up and the first step, which on a first run include compiling Numba kernels (tens of
seconds), would otherwise make the first ETAs many times too long; until a second update there is
no ETA ("--").

`CompileNotice` says "compiling kernels (first run only)..." the moment Numba starts compiling
(Numba's `numba:compile` event fires only when a kernel is compiled, not when it is loaded from
the cache, so a warm run prints nothing), and when stopped, how long the block took.
"""
from __future__ import annotations

import math
import sys
import threading
import time


def hms(seconds: float) -> str:
    """h:mm:ss or m:ss; '--' when unknown."""
    if not math.isfinite(seconds):
        return "--"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def counted(n: int, noun: str) -> str:
    """'1 step', '2 steps': a whole count and its noun, plural (noun + 's') unless n is 1."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


class Progress:
    """Progress of a loop from step `start` to step `end` (see the module docstring).

    mode: "auto" (bar on a terminal, lines otherwise), "bar", "lines" or "none"; stream: where it
    goes (default stderr); bar_width: characters of the [####....] bar in bar mode (0: none);
    elapsed0: seconds already spent before `start` (a restarted run), added to the elapsed time
    shown; prefix: put before each plain line (lines mode); clock: seconds (tests pass a fake one).
    """

    def __init__(self, start: int, end: int, mode: str = "auto", stream=None, interval: float = 0.2,
                 bar_width: int = 30, elapsed0: float = 0.0, prefix: str = "", clock=time.perf_counter):
        self.stream = stream if stream is not None else sys.stderr
        if mode == "auto":
            mode = "bar" if getattr(self.stream, "isatty", lambda: False)() else "lines"
        if mode not in ("bar", "lines", "none"):
            raise ValueError(f"progress mode {mode!r}")
        self.mode = mode
        self.start = start
        self.end = end
        self.interval = interval
        self.bar_width = bar_width
        self.elapsed0 = elapsed0
        self.prefix = prefix
        self.clock = clock
        self.t0 = clock()
        self._ref: tuple[int, float] | None = None  # (step, time) of the first update
        self._last_draw = -math.inf
        self._next_fraction = 0.1
        self._drawn = 0  # characters of the line drawn in place (0: none)

    def rate(self, step: int, now: float) -> float:
        """Steps per second since the first update (nan before a second one)."""
        if self._ref is None or step <= self._ref[0] or now <= self._ref[1]:
            return math.nan
        return (step - self._ref[0]) / (now - self._ref[1])

    def eta(self, step: int, now: float) -> float:
        """Seconds left at the rate since the first update (nan when not known yet)."""
        r = self.rate(step, now)
        return (self.end - step) / r if r > 0 else math.nan

    def text(self, step: int, detail: str = "", now: float | None = None) -> str:
        now = self.clock() if now is None else now
        total = max(self.end - self.start, 1)
        pct = 100.0 * (step - self.start) / total
        r = self.rate(step, now)
        rate = f"{r:.2f} steps/s" if math.isfinite(r) else "-- steps/s"
        return (f"step {step:>{len(str(self.end))}d}/{self.end} ({pct:5.1f}%)" + (f"  {detail}" if detail else "")
                + f"  {rate}  elapsed {hms(self.elapsed0 + now - self.t0)}  ETA {hms(self.eta(step, now))}")

    def update(self, step: int, detail: str = "", line: bool | None = None) -> None:
        """Show the state after `step`.  line: in lines mode, whether to print a line for this
        step (None: every 10 % of the run); on a terminal a marked step is drawn at once."""
        if self.mode == "none" or self.end <= self.start:
            return
        now = self.clock()
        if self._ref is None:
            self._ref = (step, now)
        if self.mode == "bar":
            if not line and now - self._last_draw < self.interval and step < self.end:
                return
            self._last_draw = now
            text = self.text(step, detail, now)
            if self.bar_width:
                n = int(self.bar_width * (step - self.start) / (self.end - self.start))
                text = f"[{'#' * n}{'.' * (self.bar_width - n)}] " + text
            self.stream.write("\r" + text + " " * max(0, self._drawn - len(text)))
            self.stream.flush()
            self._drawn = len(text)
            return
        if line is None:
            done = (step - self.start) / (self.end - self.start)
            line = done >= self._next_fraction - 1e-12 or step == self.end
            while done >= self._next_fraction - 1e-12:
                self._next_fraction += 0.1
        if line:
            self.stream.write(self.prefix + self.text(step, detail, now) + "\n")
            self.stream.flush()

    def clear(self) -> None:
        """Erase the line drawn in place, so that other output can be printed."""
        if self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self.stream.flush()
            self._drawn = 0

    def finish(self) -> None:
        """End the line drawn in place (it stays on the screen)."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = 0


class CompileNotice:
    """Say when Numba compiles kernels during a block (see the module docstring).

    say: prints one line; clock: seconds.  Use `start()` ... `stop()` (or as a context manager);
    stop() is idempotent.
    """

    MESSAGE = "compiling kernels (first run only; later runs load them from the cache)..."

    def __init__(self, say, clock=time.perf_counter):
        self.say = say
        self.clock = clock
        self.compiled = False
        self._t0 = None
        self._lock = threading.Lock()
        self._listener = None

    def start(self) -> CompileNotice:
        from numba.core import event

        notice = self

        class _Listener(event.Listener):
            def on_start(self, ev):
                with notice._lock:
                    first = not notice.compiled
                    notice.compiled = True
                if first:
                    notice.say(notice.MESSAGE)

            def on_end(self, ev):
                pass

        self._t0 = self.clock()
        self._listener = _Listener()
        event.register("numba:compile", self._listener)
        return self

    def stop(self) -> None:
        if self._listener is None:
            return
        from numba.core import event

        event.unregister("numba:compile", self._listener)
        self._listener = None
        if self.compiled:
            self.say(f"kernels compiled; set-up and first step took {self.clock() - self._t0:.1f} s "
                     f"(not counted in the ETA)")

    def __enter__(self) -> CompileNotice:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
