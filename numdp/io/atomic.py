"""Atomic file replacement: the one way numdp writes a file that must never be half-written.

`atomic_path(path)` yields a temporary name in the directory of `path` (unique: mkstemp), and when
the enclosed block has written it: fsync the file, give it the permissions an ordinary open()
would, rename it over `path` (atomic on POSIX file systems) and fsync the directory so that the
rename itself survives a crash.  If the block raises anything (KeyboardInterrupt included) the
temporary is removed and `path` is untouched.  Readers of `path` therefore see either the old
file or the complete new one, never a mixture.

Temporaries being written are listed in `PENDING`, so that an abort that cannot unwind the stack
(numdp.signals: a second Ctrl-C ends the process with os._exit) removes them first
(`remove_pending`).

Used by the model writers (numdp.io.h5_model, numdp.io.dp_write), the training checkpoint
(numdp.train.checkpoint), the MD checkpoint (numdp.io.h5md.write_checkpoint), the rewrite of
lcurve.out when training continues (numdp.train.report), `numdp convert`'s trajectories
(numdp.io.trajectory), `numdp test`'s detail and JSON files and `numdp plot`'s PNG.  The earlier
file of a new output is kept by numdp.io.backup.Backups, which relies on this: a failed write
leaves no partial file at the output's name.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import h5py

from ..errors import InputError, one_line

PENDING: set[str] = set()


def _umask() -> int:
    """The process umask, read without changing it where the system allows."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # pragma: no cover - non-Linux
    os.umask(mask)
    return mask


def _fsync(path, flags=os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path, what: str = "file") -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; on success it replaces `path` (see module).

    what: names the kind of file in error messages ("cannot write <what>").  Problems creating,
    syncing or renaming the file raise InputError naming `path`.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, cannot write a {what} there")
    if not directory.is_dir():
        raise InputError(f"{path}: cannot write {what} (directory {directory} does not exist)")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise InputError(f"{path}: cannot write {what} ({exc.strerror or one_line(exc)})") from None
    os.close(fd)
    PENDING.add(tmp)
    try:
        yield Path(tmp)
        try:
            _fsync(tmp)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates mode 0600
            os.replace(tmp, path)
        except OSError as exc:
            raise InputError(f"{path}: cannot write {what} ({exc.strerror or one_line(exc)})") from None
        with contextlib.suppress(OSError):  # not every file system lets a directory be synced
            _fsync(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        PENDING.discard(tmp)


@contextlib.contextmanager
def atomic_h5(path, what: str = "file") -> Iterator[h5py.File]:
    """`atomic_path` for an HDF5 file: yield an h5py.File open for writing at the temporary name;
    it is closed before the file is synced and renamed."""
    with atomic_path(path, what) as tmp:
        try:
            h5 = h5py.File(tmp, "w")
        except OSError as exc:
            raise InputError(f"{path}: cannot write {what} ({one_line(exc)})") from None
        with h5:
            yield h5


def remove_pending() -> None:
    """Remove every temporary that an `atomic_path` block is writing now (before os._exit)."""
    for tmp in list(PENDING):
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        PENDING.discard(tmp)
