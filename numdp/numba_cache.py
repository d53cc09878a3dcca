"""A Numba cache folder numdp can write, also when it is installed read-only.

Numba caches each `cache=True` kernel in the __pycache__ beside its source, else in the user's
cache folder (~/.cache/numba).  When neither can be written (numdp installed by root or in an
image, run by a user whose home is read-only or absent), the first `@njit(cache=True)` raises
RuntimeError("cannot cache function ...: no locator available") at import, and every numdp command
(`numdp --help` too) and `numdp.load_model` end in that traceback.  `ensure_numba_cache` then
points NUMBA_CACHE_DIR at a private folder in the temporary directory.  numdp.kernels calls it when
it is first imported, before any kernel module (every kernel lives under numdp/kernels).

Numba checks a cached kernel against the stamp (a content hash) of the one file that defines it, not
of the functions it inlines from other modules nor of the constants it froze: after an edit of
numdp/kernels/math.py alone (a `git pull` in an editable install), every kernel elsewhere that
inlines its functions would load its old machine code.  `drop_stale_kernels` (called next) keeps,
in each folder where Numba caches numdp's kernels, the digests of the sources under numdp/kernels
it was made from (STAMP), and removes the cached kernels of every module that imports, directly or
through others, a source that changed since.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys

STAMP = "numdp-kernel-sources.json"
"""The file, in each cache folder of numdp's kernels, holding {module: SHA-1 of its source} of the
sources its kernels were made from."""


def _kernel_folders(root: str | None = None):
    """(folder, package: "kernels", "kernels.cpu", ...) of every source folder of numdp/kernels
    under the numdp package at `root` (default this one)."""
    root = os.path.abspath(_numdp_root() if root is None else root)
    for folder, dirs, files in os.walk(os.path.join(root, "kernels")):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        yield folder, os.path.relpath(folder, root).replace(os.sep, ".")


def _tree_cache_dirs() -> list[str]:
    """The __pycache__ folders where Numba caches numdp's `cache=True` kernels beside their source."""
    return [os.path.join(folder, "__pycache__") for folder, _ in _kernel_folders()]


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


def _numdp_root() -> str:
    return os.path.dirname(os.path.abspath(__file__))


KERNEL_SOURCES = ("kernels", "units.py")
"""What numdp's kernels are compiled from, under the numdp package: every module of numdp/kernels,
and numdp/units.py, whose constants kernels freeze."""


def _kernel_sources(root: str) -> dict[str, str]:
    """{module name under numdp ("kernels.cpu.envmat", "units"): path} of the KERNEL_SOURCES."""
    out = {}
    for entry in KERNEL_SOURCES:
        path = os.path.join(root, entry)
        if entry.endswith(".py"):
            if os.path.isfile(path):
                out[entry[:-3]] = path
            continue
        for folder, dirs, files in os.walk(path):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in files:
                if name.endswith(".py"):
                    rel = os.path.relpath(os.path.join(folder, name), root)[:-3]
                    out[rel.replace(os.sep, ".")] = os.path.join(folder, name)
    return out


_FROM = re.compile(r"^[ \t]*from[ \t]+(\.+|numdp\.?)([\w.]*)[ \t]+import[ \t]+(\([^)]*\)|(?:[^\n]*\\\n)*[^\n]*)",
                   re.M)
_IMPORT = re.compile(r"^[ \t]*import[ \t]+((?:[^\n]*\\\n)*[^\n]*)", re.M)


def _module_of(words: list[str], modules) -> str | None:
    """The module of `modules` that importing the dotted name `words` runs: a module, or a
    package's __init__ (its names come from there)."""
    for name in (".".join(words), ".".join(words + ["__init__"])):
        if name in modules:
            return name
    return None


def _imports(module: str, text: str, modules) -> set[str]:
    """The modules of `modules` (dotted, under numdp) that `module` imports from, in any form:
    `import numdp.kernels.x`, `from .x import a`, `from . import (x, y)` over several lines, from
    inside functions too; names taken from a package count as its __init__'s."""
    package = module.split(".")[:-1]   # (of a package's __init__ too: the package itself)
    found = [w.split(".") for names in _IMPORT.findall(text) for w in re.findall(r"\bnumdp\.([\w.]+)", names)]
    for dots, name, names in _FROM.findall(text):
        words = name.split(".") if name else []
        base = words if dots.startswith("numdp") else package[:len(package) - (len(dots) - 1)] + words
        found += [base] + [base + [w] for w in re.findall(r"\w+", names)]   # the named submodules too
    return {m for m in (_module_of(words, modules) for words in found) if m is not None}


def kernel_sources_digests(root: str | None = None) -> tuple[dict[str, str], dict[str, set[str]]]:
    """({module: SHA-1 of its source}, {module: the modules it imports}) of the KERNEL_SOURCES of
    the numdp package at `root` (default this one)."""
    sources = _kernel_sources(_numdp_root() if root is None else root)
    digests, deps = {}, {}
    for module, path in sources.items():
        with open(path, "rb") as f:
            data = f.read()
        digests[module] = hashlib.sha1(data).hexdigest()
        deps[module] = _imports(module, data.decode("utf-8", "replace"), sources)
    return digests, deps


def stale_modules(old: dict[str, str], new: dict[str, str], deps: dict[str, set[str]]) -> set[str]:
    """The modules whose compiled kernels may differ from what `new` sources give: those whose
    source changed since `old` (or is new, or gone), and every module importing one of them."""
    stale = {m for m in set(old) | set(new) if old.get(m) != new.get(m)}
    grew = True
    while grew:
        more = {m for m, d in deps.items() if m not in stale and d & stale}
        stale |= more
        grew = bool(more)
    return stale


def kernel_cache_dirs(environ=None, root: str | None = None) -> dict[str, str]:
    """{cache folder: the package ("kernels", "kernels.cpu") whose sources it caches}: where Numba may keep the
    compiled kernels of numdp/kernels and its sub-packages: beside the sources (__pycache__), under
    NUMBA_CACHE_DIR and under Numba's user-wide folder, each as Numba names it (numba.core.caching's
    locators: the folder's name and the SHA-1 of its absolute path)."""
    environ = os.environ if environ is None else environ
    bases = [environ.get("NUMBA_CACHE_DIR") or None]
    try:
        bases.append(_user_cache_dir())
    except Exception:   # no home folder at all
        pass
    out = {}
    for folder, package in _kernel_folders(root):
        sub = "_".join([os.path.basename(folder), hashlib.sha1(folder.encode()).hexdigest()])
        out[os.path.join(folder, "__pycache__")] = package
        out.update({os.path.join(b, sub): package for b in bases if b})
    return out


def _numba_caches_in(d: str, dirs: dict[str, str], environ=None) -> bool:
    """Whether Numba will cache kernels in the folder `d` of `dirs` (kernel_cache_dirs) though its
    parents may not exist yet: under NUMBA_CACHE_DIR when that is set (Numba then uses nothing
    else), else under Numba's user-wide folder when the sources' __pycache__ cannot be written."""
    environ = os.environ if environ is None else environ
    base = environ.get("NUMBA_CACHE_DIR")
    if base:
        return os.path.abspath(d).startswith(os.path.join(os.path.abspath(base), ""))
    try:
        user = _user_cache_dir()
    except Exception:   # no home folder at all
        return False
    if not os.path.abspath(d).startswith(os.path.join(os.path.abspath(user), "")):
        return False
    tree = [t for t, package in dirs.items() if package == dirs[d] and os.path.basename(t) == "__pycache__"]
    return not any(_writable(t) for t in tree)


def drop_stale_kernels(dirs: dict[str, str] | None = None, root: str | None = None) -> dict[str, set[str]]:
    """Remove Numba's cached kernels (.nbi index and .nbc data files, named MODULE.FUNCTION-LINE...)
    of the `stale_modules` from each existing folder of `dirs` (default `kernel_cache_dirs()`)
    against the digests in its STAMP (none: every module is stale), then write the sources'
    digests to STAMP; return {folder: the modules whose files were removed} for the folders that
    were stale.  A folder that cannot be written is left as it is (a read-only install does not
    change)."""
    dirs = kernel_cache_dirs(root=root) if dirs is None else dirs
    found, out = None, {}
    for d, package in dirs.items():
        if not os.path.isdir(d):
            try:   # stamped now, or what Numba caches there in this run would be stale in the next
                if _numba_caches_in(d, dirs):
                    os.makedirs(d)
                else:
                    os.mkdir(d)   # (only where its parent is: a package, NUMBA_CACHE_DIR, ~/.cache/numba)
            except OSError:
                continue
        if found is None:
            found = kernel_sources_digests(root)
        digests, deps = found
        stamp = os.path.join(d, STAMP)
        try:
            with open(stamp) as f:
                old = json.load(f)
        except (OSError, ValueError):
            old = {}
        if old == digests:
            continue
        prefix = f"{package}."
        stale = {m[len(prefix):] for m in stale_modules(old, digests, deps)
                 if m.startswith(prefix) and "." not in m[len(prefix):]}
        try:
            for name in os.listdir(d):
                if name.endswith((".nbi", ".nbc")) and name.split(".", 1)[0] in stale:
                    try:
                        os.remove(os.path.join(d, name))
                    except FileNotFoundError:   # another process removed it first
                        pass
            tmp = f"{stamp}.{os.getpid()}"
            with open(tmp, "w") as f:
                json.dump(digests, f, sort_keys=True)
            os.replace(tmp, stamp)
        except OSError:
            continue
        out[d] = stale
    return out
