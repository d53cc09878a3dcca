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
(numdp.io.trajectory), `numdp test`'s detail and JSON files and `numdp plot`'s PNG.  `LineFile`
is the other kind of output: a text file appended line by line (logs, lcurve.out).  The earlier
file of a new output is kept by numdp.io.backup.Backups, which relies on this: a failed write
leaves no partial file at the output's name.

An output that exists and is not a regular file is never renamed over (as root, a rename over
`/dev/null` would replace the device with a plain file): a character device (`/dev/null`) or a
FIFO is written into as it is, with no temporary, fsync, chmod or rename; a block device or a
socket is refused (`special_target`), and so is a FIFO for an HDF5 file, which needs to seek.
"""
from __future__ import annotations

import contextlib
import os
import stat
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


_KINDS = ((stat.S_ISCHR, "character device"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISBLK, "block device"),
          (stat.S_ISSOCK, "socket"))


def special_target(path, what: str = "file", hdf5: bool = False) -> str | None:
    """The kind of node an output `path` names when it exists and is neither a regular file nor a
    directory (symlinks followed): "character device" or "FIFO", which an output is written
    into as it is; None when it is absent, a regular file or a directory.

    InputError (one line naming `path`) for a block device or a socket, never an output, and with
    `hdf5` for a FIFO too (an HDF5 file is written with seeks).  what: the output's kind.
    """
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # absent, a dangling link, or not reachable: the writer says why
        return None
    kind = next((name for test, name in _KINDS if test(mode)), None)
    if kind in ("block device", "socket"):
        raise InputError(f"{path}: is a {kind}; give the {what} a regular file (or /dev/null)")
    if kind == "FIFO" and hdf5:
        raise InputError(f"{path}: is a FIFO; an HDF5 {what} needs a regular file "
                         f"(or a character device such as /dev/null)")
    return kind


def cannot_write(path, what: str, exc: OSError) -> InputError:
    """The one-line error for an OSError `exc` raised while writing the output `path`: the
    system's words for its errno (h5py's own text spans lines and repeats the path)."""
    reason = os.strerror(exc.errno) if exc.errno else (exc.strerror or one_line(exc))
    return InputError(f"{path}: cannot write {what} ({reason})")


@contextlib.contextmanager
def atomic_path(path, what: str = "file", hdf5: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; on success it replaces `path` (see module).

    what: names the kind of file in error messages ("cannot write <what>").  Problems creating,
    syncing or renaming the file raise InputError naming `path`.  When `path` is a character
    device or a FIFO (`special_target`; hdf5: refuse a FIFO) `path` itself is yielded, and an
    OSError of the block becomes InputError naming it.
    """
    path = Path(path)
    if special_target(path, what, hdf5) is not None:
        # written into as it is: renaming over a device or FIFO would replace the node
        try:
            yield path
        except OSError as exc:
            raise cannot_write(path, what, exc) from None
        return
    directory = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, cannot write a {what} there")
    if not directory.is_dir():
        raise InputError(f"{path}: cannot write {what} (directory {directory} does not exist)")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise cannot_write(path, what, exc) from None
    os.close(fd)
    PENDING.add(tmp)
    try:
        yield Path(tmp)
        try:
            _fsync(tmp)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates mode 0600
            os.replace(tmp, path)
        except OSError as exc:
            raise cannot_write(path, what, exc) from None
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
    it is closed before the file is synced and renamed.  A character device (`/dev/null`) is
    written into directly; a FIFO is refused (InputError)."""
    with atomic_path(path, what, hdf5=True) as tmp:
        try:
            h5 = h5py.File(tmp, "w")
        except OSError as exc:
            raise cannot_write(path, what, exc) from None
        with h5:
            yield h5


def remove_pending() -> None:
    """Remove every temporary that an `atomic_path` block is writing now (before os._exit)."""
    for tmp in list(PENDING):
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        PENDING.discard(tmp)


class LineFile:
    """A text output written line by line, each write flushed (a run's log, lcurve.out, a
    model-deviation file), opened with `mode` ("w" or "a").  Opening, writing and closing raise
    the one-line InputError of `cannot_write` naming `path` (`what`: the kind of file) when the
    OS refuses (disk full, a folder that takes no file); after a failed write the file is closed
    quietly and later writes do nothing, so lines written while that error unwinds cannot fail
    again (closing would retry the failed flush)."""

    def __init__(self, path, what: str, mode: str = "w"):
        self.path, self.what = Path(path), what
        try:
            self._fh = open(self.path, mode)
        except OSError as exc:
            raise cannot_write(self.path, what, exc) from None

    def write(self, text: str) -> None:
        if self._fh is None:
            return
        try:
            self._fh.write(text)
            self._fh.flush()
        except OSError as exc:
            fh, self._fh = self._fh, None
            with contextlib.suppress(OSError):
                fh.close()
            raise cannot_write(self.path, self.what, exc) from None

    def close(self) -> None:
        if self._fh is not None:
            fh, self._fh = self._fh, None
            try:
                fh.close()
            except OSError as exc:
                raise cannot_write(self.path, self.what, exc) from None
