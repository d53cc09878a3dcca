"""Back up a previous run's outputs before a new run writes files of the same names (GROMACS style).

An existing `traj.h5md` is renamed to `#traj.h5md.1#` (the first free number: `#traj.h5md.2#`
when `#traj.h5md.1#` exists, and so on), in the same directory, so a new run never destroys an
earlier one's output.  The `#` makes the backups sort apart and shell globs such as `*.h5md`
skip them.  `prepare_outputs` comes first: it makes the output directories and refuses an output
that cannot be written, so a run that cannot write fails before it moves anything.

`Backups` is the one way a command backs up its outputs: it renames them (`back_up`) and, when
the new run fails before it has written anything of its own, removes what it left at those names
and gives the backups their names back.  Used by `numdp run` (trajectory, log, checkpoints:
rolled back until the first report), `numdp train` (learning curve, model file, checkpoint:
until the first step), `numdp model-devi`, `numdp convert`, `numdp compress`, `numdp test -d`
and `numdp plot` (rolled back on any failure).  A restart continues its files and backs nothing
up.  Only regular files are backed up: an output that is a character device or a FIFO
(`/dev/null`) is written into as it is (numdp.io.atomic), never moved or removed.
docs/md-run-outputs.md says which command rolls back when.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..errors import InputError
from .atomic import special_target


def backup_name(path: Path, number: int) -> Path:
    """`#name.number#` beside `path`."""
    return path.with_name(f"#{path.name}.{number}#")


def prepare_outputs(paths) -> None:
    """Make the directory of each output file among `paths` (None entries ignored); InputError
    (one line naming the file) when a directory cannot be made or written, the output is a
    directory, a block device or a socket, a character device or FIFO it names is not writable,
    or a file cannot be created at a free name (a folder such as /proc: made empty and removed
    again).  Call it before `back_up`, so that nothing is renamed for a run that cannot write
    its files."""
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
        kind = special_target(path, "output")
        if kind is not None:  # /dev/null: written into, never moved
            if not os.access(path, os.W_OK):
                raise InputError(f"{path}: cannot write the {kind} (permission denied)")
            continue
        if not os.access(directory, os.W_OK | os.X_OK):
            raise InputError(f"{path}: cannot write in the output directory {directory} (permission denied)")
        if not os.path.lexists(path):
            _try_create(path)


def _try_create(path: Path) -> None:
    """Create `path` empty and remove it again; InputError when the folder refuses (/proc: the
    access check above passes there)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except FileExistsError:  # made meanwhile by someone else: not ours to remove
        return
    except OSError as exc:
        raise InputError(f"{path}: cannot create the output file ({exc.strerror or exc})") from None
    with contextlib.suppress(OSError):
        os.unlink(path)


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
            _rename_back(moved)  # all or nothing: the files renamed so far get their names back
            raise InputError(f"{path}: cannot back up the previous run's file to {target.name} "
                             f"({exc.strerror or exc})") from None
        moved.append((path, target))
    return moved


def _rename_back(moved: list[tuple[Path, Path]]) -> None:
    """Give each backup of `moved` its old name back, unless something else holds that name now."""
    for old, backup in moved:
        if not os.path.lexists(old):
            with contextlib.suppress(OSError):  # the backup stays, under its #name.N#
                backup.rename(old)


def backup_line(moved: list[tuple[Path, Path]], whose: str = "the previous run's") -> str:
    """One line naming what `back_up` renamed ("" when nothing was); `whose` qualifies the files."""
    if not moved:
        return ""
    shown = ", ".join(f"{old} to {new.name}" for old, new in moved[:LINE_FILES])
    more = len(moved) - LINE_FILES
    return f"backed up {whose} {shown}" + (f" and {more} more files the same way" if more > 0 else "")


LINE_FILES = 6
"""Files `backup_line` names one by one (a per-frame dump series can be thousands)."""


class Backups:
    """The earlier outputs a new run moved aside, and the way back when the run fails early.

    `Backups.move(paths)` renames the existing files among `paths` to their backup names
    (`back_up`: all or nothing).  Used as a context manager, an exception in the block
    (anything, KeyboardInterrupt included) before `keep()` was called runs `restore()`: the
    files the new run made at those names are removed and the backups get their names back;
    then the exception propagates.  After `keep()` (the run has written real data) or a normal
    end, both the new files and the backups stay.  `line()` is the one line to print::

        with Backups.move([out], "the existing") as backups:
            write(out)
        if backups.moved:
            print(backups.line())

    Only regular files are moved and only files the run created are removed: an output that
    is something else (`/dev/null`) is left alone.
    """

    def __init__(self, moved: list[tuple[Path, Path]], fresh: list[Path], whose: str):
        self.moved = moved    # (old, backup) pairs as `back_up` returns them
        self.fresh = fresh    # outputs free when the run began: what is there on failure is the run's
        self.whose = whose
        self.settled = False  # keep() or restore() was called: nothing more to undo

    @classmethod
    def move(cls, paths, whose: str = "the previous run's") -> Backups:
        """Back up the existing files among `paths` (None entries ignored) now."""
        paths = [Path(p) for p in paths if p is not None]
        moved = back_up(paths)
        return cls(moved, [p for p in paths if not os.path.lexists(p)], whose)

    @classmethod
    def none(cls) -> Backups:
        """Nothing moved (a restart, or an MPI rank other than 0)."""
        return cls([], [], "")

    def keep(self) -> None:
        """The run has written data of its own: from now on a failure keeps both."""
        self.settled = True

    def restore(self) -> None:
        """Remove the files the run made at the output names, give the backups their names back
        (nothing once `keep()` was called)."""
        if self.settled:
            return
        for path in self.fresh:
            if path.is_file() and not path.is_symlink():
                with contextlib.suppress(OSError):
                    path.unlink()
        _rename_back(self.moved)
        self.settled = True

    def line(self) -> str:
        """One line naming what was backed up ("" when nothing was)."""
        return backup_line(self.moved, self.whose)

    def __enter__(self) -> Backups:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            self.restore()
        return False
