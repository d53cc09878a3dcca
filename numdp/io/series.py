"""File series: an output name whose `*` stands for the step (LAMMPS' `dump ... traj/*.lammpstrj`
and `restart N ROOT` names), one file per step.  The one home of the pattern: the per-frame dump
writer (numdp.io.trajectory.LammpsDumpSeries), the checkpoint series (numdp.md.reporters), the
backups of a new run (numdp.md.setup) and `read_restart ROOT.*` (numdp.lammps)."""
from __future__ import annotations

import re
from pathlib import Path

MARK = "*"


def is_series(path) -> bool:
    """True when the file name of `path` (not its folder) holds the mark."""
    return path is not None and MARK in Path(path).name


def series_file(path, step: int) -> Path:
    """The file of `step`: the mark replaced by the step number; `path` itself if no series."""
    path = Path(path)
    return path.with_name(path.name.replace(MARK, str(int(step)))) if is_series(path) else path


def series_files(path) -> list[Path]:
    """The existing files of the series `path` (the mark matching a step number, digits only), in
    step order; [] when `path` is None or no series."""
    return [p for _, p in _steps(path)]


def latest_file(path) -> Path | None:
    """The file of the largest step of the series `path`, or None (LAMMPS' read_restart ROOT.*)."""
    found = _steps(path)
    return found[-1][1] if found else None


def _steps(path) -> list[tuple[int, Path]]:
    if not is_series(path):
        return []
    path = Path(path)
    if not path.parent.is_dir():
        return []
    head, tail = path.name.split(MARK, 1)
    pattern = re.compile(re.escape(head) + r"(\d+)" + re.escape(tail) + r"\Z")
    return sorted((int(m.group(1)), p) for p in path.parent.iterdir()
                  if p.is_file() and (m := pattern.match(p.name)))
