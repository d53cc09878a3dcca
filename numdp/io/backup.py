"""Back up a previous run's outputs before a new run writes files of the same names (GROMACS style).

An existing `traj.h5md` is renamed to `#traj.h5md.1#` (the first free number: `#traj.h5md.2#`
when `#traj.h5md.1#` exists, and so on), in the same directory, so a new run never destroys an
earlier one's output.  The `#` makes the backups sort apart and shell globs such as `*.h5md`
skip them.  Used by `numdp run` (trajectory, log, checkpoints) and `numdp train` (learning
curve, model file, checkpoint) when they start a new run; a restart continues its files and
backs nothing up.  `prepare_outputs` comes first: it makes the output directories and refuses
an output that cannot be written, so a run that cannot write fails before it moves anything.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError


def backup_name(path: Path, number: int) -> Path:
    """`#name.number#` beside `path`."""
    return path.with_name(f"#{path.name}.{number}#")


def prepare_outputs(paths) -> None:
    """Make the directory of each output file among `paths` (None entries ignored); InputError
    (one line naming the file) when a directory cannot be made or written, or the output is a
    directory.  Call it before `back_up`, so that nothing is renamed for a run that cannot
    write its files."""
    for path in paths:
        if path is None:
            continue
        path = Path(path)
        directory = path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"{path}: cannot create the output directory {directory} "
                             f"({exc.strerror or exc})") from None
        if path.is_dir():
            raise InputError(f"{path}: is a directory, not an output file")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise InputError(f"{path}: cannot write in the output directory {directory} (permission denied)")


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


def backup_line(moved: list[tuple[Path, Path]], whose: str = "the previous run's") -> str:
    """One line naming what `back_up` renamed ("" when nothing was); `whose` qualifies the files."""
    if not moved:
        return ""
    return f"backed up {whose} " + ", ".join(f"{old} to {new.name}" for old, new in moved)


def back_up_existing(path: Path) -> str:
    """Keep an existing single output `path` (`numdp convert`, `numdp compress`) as its first free
    backup before it is rewritten; returns the line to print ("" when there was none)."""
    return backup_line(back_up([path]), "the existing")
