"""Training feedback: the learning curve file (lcurve.out).  The live progress line is
numdp.progress.Progress, shared with `numdp run`."""
from __future__ import annotations

from pathlib import Path

from ..io.atomic import atomic_path


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
        with atomic_path(self.path, "learning curve") as tmp:
            tmp.write_text("".join(lines))
        self._fh = open(self.path, "a")

    def row(self, step: int, values: list[float]) -> None:
        """Append one row: values in the order of `columns` (lr last)."""
        *metrics, lr = values
        text = f"{step:7d}" + "".join(f" {v:13.6e}" for v in metrics) + f" {lr:13.6e}\n"
        self._fh.write(text)
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()
