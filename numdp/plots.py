"""Figures of numdp's (and DeePMD-kit's, LAMMPS's, DP-GEN's) column files, for `numdp plot`.

Three kinds of file, told apart by their header line (`read_table`):

- learning curve (`lcurve.out` of numdp or DeePMD-kit): ``# step rmse_val rmse_trn rmse_e_val
  rmse_e_trn rmse_f_val rmse_f_trn [rmse_v_val rmse_v_trn] lr`` (the _val columns only with
  validation data); RMSEs in √loss, eV/atom, eV/Å, eV/atom; with DeePMD-kit's loss_func "mae"
  ``mae_e_val mae_e_trn ...`` (mean absolute errors, same units) before ``rmse_val rmse_trn``.
- thermo log (`numdp run`'s log file, numdp.md.reporters.ThermoReporter): a header line ``step time
  temp pe ke etotal press vol`` (ps, K, eV, eV, eV, bar, Å³) followed by rows of numbers, amid other
  text lines (the first-run compile notice falls between the first rows); a resumed run appends
  another header and block, which starts again at its checkpoint's step: its rows replace those
  of the earlier blocks from that step on.  An energy minimization's log has ``step pe fnorm
  fmax`` (eV, eV/Å, eV/Å: numdp.md.reporters.MinimizeThermoReporter) instead: the force norms
  are drawn on a log scale.
- model deviation (`model_devi.out` of DeePMD-kit's LAMMPS plugin, DP-GEN, `numdp model-devi`):
  ``# step max_devi_v min_devi_v avg_devi_v max_devi_f min_devi_f avg_devi_f [...]`` (eV/atom-
  scaled virial, eV/Å); with `--atomic` the header ends in ``atm_devi_f(N)`` and each row in one
  column per atom, which are read past.

The figure builders return a `matplotlib.figure.Figure` drawn with the Agg canvas (no display, no
pyplot state); matplotlib is imported only there (it is the optional `plot` extra).
"""
from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .md.thermo import FROM_TITLE as THERMO_TITLES, KEYWORDS as THERMO_KEYWORDS


class MatplotlibMissing(ImportError):
    """matplotlib (the optional `plot` extra) is not installed."""


class Kind(enum.Enum):
    LCURVE = "learning curve"
    THERMO = "thermo log"
    MODEL_DEVI = "model deviation"


@dataclass
class Table:
    """Columns of a file: kind, names and data (nrows, ncols) float64 (nan where a file says nan)."""

    path: Path
    kind: Kind
    names: list[str]
    data: np.ndarray

    def column(self, name: str) -> np.ndarray:
        return self.data[:, self.names.index(name)]

    @property
    def minimization(self) -> bool:
        """A thermo log of an energy minimization (step pe fnorm fmax)."""
        return _minimization(self.kind, self.names)

    @property
    def description(self) -> str:
        """What the file is, for messages and titles: its kind, or "minimization log"."""
        return _description(self.kind, self.names)


def _minimization(kind: Kind, names: list[str]) -> bool:
    return kind is Kind.THERMO and "fnorm" in names


def _description(kind: Kind, names: list[str]) -> str:
    return "minimization log" if _minimization(kind, names) else kind.value


_PROGRESS = re.compile(r"\d+/\d+")
"""The second word of a progress line of numdp train's log (``step  101/5000 ( 2.0%) loss ...``)."""


def _header_kind(tokens: list[str]) -> Kind | None:
    """The kind a header line's column names announce (tokens without the leading '#'; a thermo
    header of LAMMPS' titles as its keywords)."""
    if not tokens or tokens[0] != "step":
        return None
    if "max_devi_f" in tokens:
        return Kind.MODEL_DEVI
    if "lr" in tokens or any(t.startswith("rmse") for t in tokens):
        return Kind.LCURVE
    if "temp" in tokens or "fnorm" in tokens or set(tokens) <= set(THERMO_KEYWORDS):
        return Kind.THERMO
    return None


def _numbers(words: list[str]) -> list[float] | None:
    try:
        return [float(w) for w in words]
    except ValueError:
        return None


def read_table(path) -> Table:
    """Read a learning curve, thermo log or model deviation file (module docstring)."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    kind = names = None
    atomic = False  # model deviation with the per-atom columns after the named ones
    rows: list[list[float]] = []
    block_start = False  # the next thermo row is the first of a block
    for no, line in enumerate(lines, 1):
        words = line.split()
        header = line.strip().lstrip("#").split()
        if kind is None and len(header) > 1 and header[0] == "step" and _PROGRESS.fullmatch(header[1]):
            raise InputError(f"{path}:{no}: numdp train's progress log, not a column file: plot its learning "
                             "curve ([training] disp_file, lcurve.out by default)")
        if header and header[0] == "Step" and all(h in THERMO_TITLES for h in header):
            header = [THERMO_TITLES[h] for h in header]   # LAMMPS' titles (numdp lmp's log.lammps)
        found = _header_kind(header)
        if found is not None:
            if found is Kind.MODEL_DEVI and header[-1].startswith("atm_devi_f"):
                header = header[:-1]  # --atomic: one more column per atom, not plotted
                atomic = True
            if kind is None:
                kind, names = found, header
            elif found != kind or header != names:
                raise InputError(f"{path}:{no}: a second header with other columns ({' '.join(header)})")
            block_start = True
            continue
        if kind is None or not words or words[0].startswith("#"):
            continue
        values = _numbers(words)
        if kind is Kind.THERMO:
            # rows of numbers amid text lines (notices, the summary); a resumed block's first
            # step replaces the earlier rows from that step on
            if values is not None and len(values) == len(names):
                if block_start:
                    rows = [r for r in rows if r[0] < values[0]]
                    block_start = False
                rows.append(values)
            continue
        if atomic and values is not None and len(values) > len(names):
            values = values[:len(names)]
        if values is None or len(values) != len(names):
            got = line.strip()
            got = got if len(got) <= 80 else got[:77] + "..."
            raise InputError(f"{path}:{no}: expected {len(names)} numbers ({' '.join(names)}"
                             f"{' and one per atom' if atomic else ''}), got {got!r}")
        rows.append(values)
    if kind is None:
        raise InputError(f"{path}: not a learning curve (lcurve.out), thermo log or model deviation file "
                         "(no header line starting with 'step' and naming rmse/lr, temp, fnorm or max_devi_f)")
    if not rows:
        raise InputError(f"{path}: the {_description(kind, names)} file has a header but no rows of numbers")
    return Table(path, kind, list(names), np.array(rows, dtype=np.float64))


def _figure(nrows: int, ncols: int = 1, height: float = 2.2, width: float = 7.5, sharex: bool = False):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MatplotlibMissing("matplotlib is not installed") from None
    fig = Figure(figsize=(width, 0.6 + height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=sharex)
    return fig, axes


_LCURVE_PANELS = (("", "loss", "√loss"), ("_e", "energy", "eV/atom"), ("_f", "force", "eV/Å"),
                  ("_v", "virial", "eV/atom"), ("_ae", "atomic energy", "eV"),
                  ("_pf", "weighted force", "eV/Å"))


def plot_lcurve(t: Table):
    """Learning curve: one panel per quantity (loss, energy, force, virial RMSE, or MAE with
    DeePMD-kit's loss_func "mae"; train solid, validation dashed) and one for the learning rate,
    on log y axes against the step."""
    step = t.column("step")
    panels = []
    for suffix, title, unit in _LCURVE_PANELS:
        for error in ("rmse", "mae") if suffix else ("rmse",):
            cols = [c for c in (f"{error}{suffix}_trn", f"{error}{suffix}_val") if c in t.names
                    and np.isfinite(t.column(c)).any() and (t.column(c) > 0).any()]
            if cols:
                panels.append((f"{title} MAE" if error == "mae" else title, unit, cols))
    if "lr" in t.names:
        panels.append(("learning rate", "", ["lr"]))
    if not panels:
        raise InputError(f"{t.path}: no rmse or lr column with positive values to plot")
    fig, axes = _figure(len(panels), sharex=True)
    for ax, (title, unit, cols) in zip(axes[:, 0], panels):
        for c in cols:
            ax.plot(step, t.column(c), "--" if c.endswith("_val") else "-", lw=1.2,
                    label={"_trn": "train", "_val": "validation"}.get(c[-4:], c))
        ax.set_yscale("log")
        ax.set_ylabel(f"{title} ({unit})" if unit else title)
        ax.grid(True, which="both", alpha=0.3)
        if len(cols) > 1:
            ax.legend(loc="upper right", fontsize="small")
    axes[-1, 0].set_xlabel("step")
    fig.suptitle(f"{t.path.name}: learning curve")
    return fig


_THERMO_UNITS = {**{k: kw.unit for k, kw in THERMO_KEYWORDS.items() if kw.unit}, "fnorm": "eV/Å", "fmax": "eV/Å"}
_LOG_SCALE = ("fnorm", "fmax")
"""Columns that span decades (a minimization's force norms): drawn on a log scale when positive."""


def plot_thermo(t: Table):
    """Thermo log: one panel per column against time (ps), or against step without a time column."""
    xname = "time" if "time" in t.names else "step"
    x = t.column(xname)
    ycols = [c for c in t.names if c not in ("step", "time")]
    fig, axes = _figure(len(ycols), height=1.6, sharex=True)
    for ax, c in zip(axes[:, 0], ycols):
        y = t.column(c)
        ax.plot(x, y, lw=1.0)
        if c in _LOG_SCALE and np.all(y > 0):
            ax.set_yscale("log")
        else:
            ax.ticklabel_format(axis="y", useOffset=False)
        unit = _THERMO_UNITS.get(c)
        ax.set_ylabel(f"{c} ({unit})" if unit else c)
        ax.grid(True, alpha=0.3)
    axes[-1, 0].set_xlabel(f"{xname} ({_THERMO_UNITS[xname]})" if xname == "time" else xname)
    fig.suptitle(f"{t.path.name}: {'minimization' if t.minimization else 'thermo'}")
    return fig


def devi_classes(max_devi_f: np.ndarray, trust_lo: float | None, trust_hi: float | None):
    """Counts (accurate, candidate, failed): max_devi_f < lo, lo <= . < hi, >= hi (DP-GEN's rule)."""
    lo = -math.inf if trust_lo is None else trust_lo
    hi = math.inf if trust_hi is None else trust_hi
    acc = int(np.count_nonzero(max_devi_f < lo))
    fail = int(np.count_nonzero(max_devi_f >= hi))
    return acc, len(max_devi_f) - acc - fail, fail


def plot_model_devi(t: Table, trust_lo: float | None = None, trust_hi: float | None = None):
    """Model deviation: a histogram of max_devi_f (top) and max_devi_f, avg_devi_f against step
    (bottom), trust levels as dashed lines, the fractions of accurate / candidate / failed frames
    in the title."""
    step, f = t.column("step"), t.column("max_devi_f")
    fig, axes = _figure(2, 1, height=2.6)
    hist, series = axes[0, 0], axes[1, 0]
    hist.hist(f[np.isfinite(f)], bins=min(60, max(10, len(f) // 5)), color="C0", alpha=0.8)
    hist.set_xlabel("max_devi_f (eV/Å)")
    hist.set_ylabel("frames")
    series.plot(step, f, ".-", ms=3, lw=0.6, color="C0", label="max_devi_f")
    if "avg_devi_f" in t.names:
        series.plot(step, t.column("avg_devi_f"), lw=0.6, color="C2", alpha=0.7, label="avg_devi_f")
    series.set_xlabel("step")
    series.set_ylabel("force deviation (eV/Å)")
    for level, name, color in ((trust_lo, "trust_lo", "C1"), (trust_hi, "trust_hi", "C3")):
        if level is not None:
            hist.axvline(level, color=color, ls="--", label=f"{name} {level:g}")
            series.axhline(level, color=color, ls="--", label=f"{name} {level:g}")
    for ax in (hist, series):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize="small")
    title = f"{t.path.name}: {len(f)} frames"
    if trust_lo is not None or trust_hi is not None:
        acc, cand, fail = devi_classes(f, trust_lo, trust_hi)
        n = len(f)
        title += (f"; accurate {100 * acc / n:.1f}%, candidate {100 * cand / n:.1f}%, "
                  f"failed {100 * fail / n:.1f}%")
    fig.suptitle(title)
    return fig


def figure_for(t: Table, trust_lo: float | None = None, trust_hi: float | None = None):
    """The figure of table `t` by its kind."""
    if t.kind is Kind.LCURVE:
        return plot_lcurve(t)
    if t.kind is Kind.THERMO:
        return plot_thermo(t)
    return plot_model_devi(t, trust_lo, trust_hi)
