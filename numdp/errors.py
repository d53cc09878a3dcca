"""Exception types shared by all of numdp.

`InputError` marks a user's mistake (bad file, bad key, bad value, bad geometry).  The command
line catches it and prints its message as one line with exit status 2; internal bugs keep their
tracebacks.
"""


class InputError(Exception):
    """A problem with the user's input; the message names the file, key or atom concerned."""


def one_line(exc: BaseException) -> str:
    """An exception's text on one line (h5py and the OS spread some over several), else its type."""
    return " ".join(str(exc).split()) or type(exc).__name__


def require_file(path, what: str) -> None:
    """InputError unless `path` (a Path) is a regular file: "PATH: WHAT not found",
    "PATH: is a directory, not a WHAT" or "PATH: not a regular file (WHAT expected)"."""
    if not path.exists():
        raise InputError(f"{path}: {what} not found")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a {what}")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file ({what} expected)")
