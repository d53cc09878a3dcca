"""Back up a previous run's outputs before a new run writes files of the same names (GROMACS style).

An existing `traj.h5md` is renamed to `#traj.h5md.1#` (the first free number: `#traj.h5md.2#`
when `#traj.h5md.1#` exists, and so on), in the same directory, so a new run never destroys an
earlier one's output.  The `#` makes the backups sort apart and shell globs such as `*.h5md`
skip them.  Used by `numdp run` (trajectory, log, checkpoints) and `numdp train` (learning
curve, model file, checkpoint) when they start a new run; a restart continues its files and
backs nothing up.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError


def backup_name(path: Path, number: int) -> Path:
    """`#name.number#` beside `path`."""
    return path.with_name(f"#{path.name}.{number}#")


def back_up(paths) -> list[tuple[Path, Path]]:
    """Rename each existing file among `paths` (None entries and repeats ignored) to its first
    free backup name; returns the (old, new) pairs in the order given."""
    moved = []
    seen = set()
    for path in paths:
        if path is None:
            continue
        path = Path(path)
        key = path.resolve()
        if key in seen or not path.is_file():
            continue
        seen.add(key)
        number = 1
        while backup_name(path, number).exists():
            number += 1
        target = backup_name(path, number)
        try:
            path.rename(target)
        except OSError as exc:
            raise InputError(f"{path}: cannot back up the previous run's file to {target.name} "
                             f"({exc.strerror or exc})") from None
        moved.append((path, target))
    return moved


def backup_line(moved: list[tuple[Path, Path]]) -> str:
    """One line naming what `back_up` renamed ("" when nothing was)."""
    if not moved:
        return ""
    return "backed up the previous run's " + ", ".join(f"{old} to {new.name}" for old, new in moved)
