"""Training feedback: the learning curve file (lcurve.out) and the live progress line."""
from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path


def lcurve_columns(has_valid: bool, has_v: bool) -> list[str]:
    """DeePMD-kit's column names after `step`: rmse_val rmse_trn rmse_e_val rmse_e_trn
    rmse_f_val rmse_f_trn [rmse_v_val rmse_v_trn] lr (the _val ones only with validation data)."""
    kinds = ["", "_e", "_f"] + (["_v"] if has_v else [])
    cols = []
    for k in kinds:
        if has_valid:
            cols.append(f"rmse{k}_val")
        cols.append(f"rmse{k}_trn")
    return cols + ["lr"]


class Lcurve:
    """lcurve.out writer: one row per display step, flushed at once.

    Units: rmse_val/rmse_trn √loss; rmse_e eV/atom; rmse_f eV/Å; rmse_v eV/atom; lr.
    With `restart_step`, rows of an existing file with step >= restart_step are dropped first,
    so a continued run leaves the same file as an uninterrupted one.
    """

    def __init__(self, path: Path, columns: list[str], restart_step: int | None = None):
        self.path = Path(path)
        self.columns = columns
        header = "#" + f"{'step':>6}" + "".join(f" {c:>13}" for c in columns) + "\n"
        lines = [header]
        if restart_step is not None and self.path.is_file():
            for line in self.path.read_text().splitlines(keepends=True):
                if line.startswith("#") or not line.strip():
                    continue
                if int(line.split()[0]) < restart_step:
                    lines.append(line if line.endswith("\n") else line + "\n")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        tmp.write_text("".join(lines))
        os.replace(tmp, self.path)
        self._fh = open(self.path, "a")

    def row(self, step: int, values: list[float]) -> None:
        """Append one row: values in the order of `columns` (lr last)."""
        *metrics, lr = values
        text = f"{step:7d}" + "".join(f" {v:13.6e}" for v in metrics) + f" {lr:13.6e}\n"
        self._fh.write(text)
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Progress line: step, loss, RMSEs, lr, elapsed time and ETA.

    On a terminal the line is rewritten in place with '\\r' (at most every `interval` s);
    otherwise a plain line is printed at every display step.
    """

    def __init__(self, total: int, stream=None, interval: float = 0.2):
        self.total = total
        self.stream = stream if stream is not None else sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval
        self._last = 0.0
        self._width = 0

    def text(self, step: int, loss: float, rmse_e: float, rmse_f: float, lr: float,
             elapsed: float, eta: float) -> str:
        pct = 100.0 * step / self.total if self.total else 100.0
        return (f"step {step:>{len(str(self.total))}d}/{self.total} ({pct:5.1f}%)  loss {loss:9.3e}  "
                f"e {rmse_e * 1e3:8.3f} meV/atom  f {rmse_f * 1e3:8.2f} meV/A  lr {lr:8.2e}  "
                f"elapsed {_hms(elapsed)}  ETA {_hms(eta)}")

    def update(self, step: int, display: bool, **kw) -> None:
        """Show the state after `step`; `display` marks lcurve steps (printed when not a tty)."""
        now = time.monotonic()
        if self.tty:
            if display or now - self._last >= self.interval or step == self.total:
                line = self.text(step, **kw)
                pad = max(0, self._width - len(line))
                self.stream.write("\r" + line + " " * pad)
                self.stream.flush()
                self._width = len(line)
                self._last = now
        elif display:
            self.stream.write(self.text(step, **kw) + "\n")
            self.stream.flush()

    def message(self, text: str) -> None:
        """Print a full line (ending an in-place progress line first)."""
        if self.tty and self._width:
            self.stream.write("\n")
            self._width = 0
        self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0
