"""Training feedback: the learning curve file (lcurve.out).  The live progress line is
numdp.progress.Progress, shared with `numdp run`."""
from __future__ import annotations

from pathlib import Path

from ..io.atomic import LineFile, atomic_path, cannot_write, special_target
from ..io.backup import back_up


def lcurve_kinds(has_v: bool, has_ae: bool = False, has_pf: bool = False, mae: bool = False, *,
                 has_e: bool = True, has_f: bool = True) -> list[str]:
    """The quantities of lcurve.out's columns, DeePMD-kit's names in its (sorted) order: "rmse"
    (√loss) always, "rmse_ae", "rmse_e", "rmse_f", "rmse_pf", "rmse_v" when their loss terms are
    on (non-zero start and limit prefactors: DeePMD-kit's has_e, ...; a force-less or energy-less
    run has no rmse_f or rmse_e column); with loss_func "mae" the same terms as "mae_*" (and
    "rmse", √loss, last)."""
    prefix = "mae" if mae else "rmse"
    off = {"_ae": not has_ae, "_e": not has_e, "_f": not has_f, "_pf": not has_pf, "_v": not has_v}
    terms = [f"{prefix}{k}" for k in ("_ae", "_e", "_f", "_pf", "_v") if not off.get(k, False)]
    return sorted(terms + ["rmse"])


def lcurve_columns(has_valid: bool, has_v: bool, has_ae: bool = False, has_pf: bool = False,
                   mae: bool = False, *, has_e: bool = True, has_f: bool = True) -> list[str]:
    """DeePMD-kit's column names after `step`: rmse_val rmse_trn [rmse_ae_val rmse_ae_trn]
    [rmse_e_val rmse_e_trn] [rmse_f_val rmse_f_trn] [rmse_pf_val rmse_pf_trn] [rmse_v_val
    rmse_v_trn] lr (the _val ones only with validation data; with `mae` the terms' columns are
    mae_*_val mae_*_trn, before rmse_val rmse_trn; `lcurve_kinds`)."""
    cols = []
    for k in lcurve_kinds(has_v, has_ae, has_pf, mae, has_e=has_e, has_f=has_f):
        if has_valid:
            cols.append(f"{k}_val")
        cols.append(f"{k}_trn")
    return cols + ["lr"]


class Lcurve:
    """lcurve.out writer: one row per display step, flushed at once.

    A row's step is DeePMD-kit's label, the number of updates made (numdp.train.loop).
    Units: rmse_val/rmse_trn √loss; rmse_e / mae_e eV/atom; rmse_f / mae_f eV/Å; rmse_v / mae_v
    eV/atom; rmse_ae / mae_ae eV; rmse_pf / mae_pf eV/Å (numdp.train.loss.LossStats); lr.
    With `restart_step` (the checkpoint's updates), the rows of an existing file labelled
    beyond it are dropped first, so a continued run leaves the same file as an uninterrupted one
    (when there are such rows, of steps whose state the checkpoint does not hold, the file as it
    was is kept first as `#lcurve.out.N#`: `dropped` lists their steps, `backup` names it);
    rows under a header of other columns (an earlier numdp's rmse_e / rmse_f of a term that is
    off) are rewritten to `columns` by name, nan where they had none.  A character device or FIFO
    at `path` (/dev/null) is written into as it is, opened once.  A write the OS refuses (disk
    full) raises InputError naming the file.
    """

    def __init__(self, path: Path, columns: list[str], restart_step: int | None = None):
        self.path = Path(path)
        self.columns = columns
        self._fh = None
        self.dropped: list[int] = []
        self.backup: Path | None = None
        header = "#" + f"{'step':>6}" + "".join(f" {c:>13}" for c in columns) + "\n"
        if special_target(self.path, "learning curve") is not None:
            self._fh = LineFile(self.path, "learning curve")   # opened once: a FIFO's reader
            self._fh.write(header)                             # sees end-of-file at a close
            return
        lines = [header]
        if restart_step is not None and self.path.is_file():
            old = None   # the kept rows' columns, when their header names others (an earlier
            for line in self.path.read_text().splitlines(keepends=True):   # version, another loss)
                words = line.lstrip("#").split()
                if line.startswith("#"):
                    if words[:1] == ["step"] and words[1:] != columns:
                        old = words[1:]
                    continue
                if not words:
                    continue
                if int(words[0]) > restart_step:
                    self.dropped.append(int(words[0]))
                    continue
                if old is not None and len(words) == len(old) + 1:   # by name, nan for a new one
                    by_name = dict(zip(old, words[1:]))
                    line = f"{words[0]:>7}" + "".join(f" {by_name.get(c, 'nan'):>13}" for c in columns)
                lines.append(line if line.endswith("\n") else line + "\n")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.dropped:
            [(_, self.backup)] = back_up([self.path])
        with atomic_path(self.path, "learning curve") as tmp:
            try:
                tmp.write_text("".join(lines))
            except OSError as exc:
                raise cannot_write(self.path, "learning curve", exc) from None
        self._fh = LineFile(self.path, "learning curve", "a")

    def row(self, step: int, values: list[float]) -> None:
        """Append one row: values in the order of `columns` (lr last)."""
        *metrics, lr = values
        text = f"{step:7d}" + "".join(f" {v:13.6e}" for v in metrics) + f" {lr:13.6e}\n"
        self._fh.write(text)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
