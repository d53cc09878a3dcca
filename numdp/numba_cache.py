"""A Numba cache folder numdp can write, also when it is installed read-only.

Numba caches each `cache=True` kernel in the __pycache__ beside its source, else in the user's
cache folder (~/.cache/numba).  When neither can be written (numdp installed by root or in an
image, run by a user whose home is read-only or absent), the first `@njit(cache=True)` raises
RuntimeError("cannot cache function ...: no locator available") at import, and every numdp command
(`numdp --help` too) and `numdp.load_model` end in that traceback.  `ensure_numba_cache` then
points NUMBA_CACHE_DIR at a private folder in the temporary directory.  numdp.kernels calls it when
it is first imported, before any kernel module (every kernel lives under numdp/kernels).
"""
from __future__ import annotations

import os
import sys


def _tree_cache_dirs() -> list[str]:
    """The __pycache__ folders where Numba caches numdp's `cache=True` kernels beside their source."""
    here = os.path.dirname(os.path.abspath(__file__))
    return [os.path.join(here, "kernels", "__pycache__"), os.path.join(here, "kernels", "cpu", "__pycache__")]


def _user_cache_dir() -> str:
    """Numba's user-wide cache folder (its fallback when the source's __pycache__ is read-only)."""
    from numba.misc.appdirs import AppDirs

    return AppDirs(appname="numba", appauthor=False).user_cache_dir


def _writable(path: str) -> bool:
    """Numba's own test of a cache folder: it can be made and a file written in it."""
    import tempfile

    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
        return True
    except OSError:
        return False


def _private_dir(path: str) -> bool:
    """`path` is (now) a real folder of this user that nobody else can write into: a cache holds
    pickled code, so a folder someone else made or can write to in a shared /tmp is never used."""
    import stat

    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return False
    try:
        st = os.lstat(path)
    except OSError:
        return False
    owner = os.getuid() if hasattr(os, "getuid") else st.st_uid
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == owner and not st.st_mode & 0o022
            and _writable(path))


def ensure_numba_cache(environ=None, tree_dirs=None, user_dir=None) -> str | None:
    """Give Numba a cache folder it can write when it would have none, and return it (else None).

    Numba caches each `cache=True` kernel in the __pycache__ beside its source, else in the user's
    cache folder (~/.cache/numba); when neither can be written (numdp installed read-only, by root
    or in an image, run by a user whose home is read-only or absent) the first `@njit(cache=True)`
    raises RuntimeError("cannot cache function ...: no locator available") at import, and every
    numdp command, `numdp --help` too, ends in that traceback.  Then NUMBA_CACHE_DIR is set to a
    private folder in the temporary directory (numdp-numba-cache-UID), silently, as Numba itself
    falls back to ~/.cache.  A NUMBA_CACHE_DIR the user set is left alone.  Must run before numba
    is imported, or numba.config.CACHE_DIR is updated too.
    """
    import tempfile

    environ = os.environ if environ is None else environ
    if environ.get("NUMBA_CACHE_DIR"):
        return None
    dirs = _tree_cache_dirs() if tree_dirs is None else tree_dirs
    if all(_writable(d) for d in dirs):
        return None
    try:
        user = _user_cache_dir() if user_dir is None else user_dir
    except Exception:   # no home folder at all (no HOME, no passwd entry)
        user = None
    if user is not None and _writable(user):
        return None
    uid = os.getuid() if hasattr(os, "getuid") else os.getpid()
    cache = os.path.join(tempfile.gettempdir(), f"numdp-numba-cache-{uid}")
    if not _private_dir(cache):   # someone else's, or not a folder: a fresh one for this process
        try:
            cache = tempfile.mkdtemp(prefix="numdp-numba-cache-")
        except OSError:
            return None   # nowhere to write at all: Numba's own error is the truthful one
    environ["NUMBA_CACHE_DIR"] = cache
    if environ is os.environ and "numba.core.config" in sys.modules:   # numba read it already
        sys.modules["numba.core.config"].CACHE_DIR = cache
    return cache
