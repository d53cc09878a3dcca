"""Installing and first use: the Numba cache of a read-only install, the source distribution's
contents, `python -m numdp` and importing numdp.__main__, one version number.

numdp installed read-only (by root, in an image) and run by a user with no writable home made
every command, `numdp --help` included, end in Numba's "cannot cache function ...: no locator
available" traceback; `numdp.numba_cache.ensure_numba_cache` now points Numba at a private folder in the
temporary directory first.  The sdist lacked tests/data, tests/conftest.py, docs/ and inputs/.
Importing numdp.__main__ (pydoc, pkgutil.walk_packages) ran the command line and exited.
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from numdp import numba_cache

ROOT = Path(__file__).resolve().parents[1]
# a path under a regular file: no one, root included, can make it a folder
BLOCKED = os.devnull + "/numdp-cache"


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_no_writable_cache_gets_private_temporary_folder(private_tmp):
    env = {}
    cache = numba_cache.ensure_numba_cache(env, tree_dirs=[BLOCKED], user_dir=BLOCKED)
    assert cache is not None and env["NUMBA_CACHE_DIR"] == cache
    assert Path(cache).parent == private_tmp and Path(cache).is_dir()
    assert stat.S_IMODE(os.stat(cache).st_mode) & 0o077 == 0
    # the same folder on the next run: kernels compiled once are loaded from it
    assert numba_cache.ensure_numba_cache({}, tree_dirs=[BLOCKED], user_dir=BLOCKED) == cache


def test_a_writable_cache_is_left_to_numba(tmp_path, private_tmp):
    env = {}
    assert numba_cache.ensure_numba_cache(env, tree_dirs=[str(tmp_path / "tree")], user_dir=BLOCKED) is None
    assert numba_cache.ensure_numba_cache(env, tree_dirs=[BLOCKED], user_dir=str(tmp_path / "user")) is None
    assert env == {}
    env = {"NUMBA_CACHE_DIR": "/somewhere/of/the/user"}
    assert numba_cache.ensure_numba_cache(env, tree_dirs=[BLOCKED], user_dir=BLOCKED) is None
    assert env == {"NUMBA_CACHE_DIR": "/somewhere/of/the/user"}


def test_a_shared_folder_someone_can_write_is_not_used(private_tmp):
    uid = os.getuid() if hasattr(os, "getuid") else os.getpid()
    planted = private_tmp / f"numdp-numba-cache-{uid}"
    planted.mkdir()
    planted.chmod(0o777)          # a cache holds pickled code: a world-writable one is never used
    cache = numba_cache.ensure_numba_cache({}, tree_dirs=[BLOCKED], user_dir=BLOCKED)
    assert cache is not None and Path(cache) != planted and Path(cache).parent == private_tmp
    planted.rmdir()
    planted.symlink_to(private_tmp)   # nor a link to somewhere else
    cache = numba_cache.ensure_numba_cache({}, tree_dirs=[BLOCKED], user_dir=BLOCKED)
    assert cache is not None and Path(cache) != planted


@pytest.mark.parametrize("use", ["cli", "library"])
def test_the_cache_is_set_before_numba_reads_it(tmp_path, use):
    """`numdp --version` (which loads the sub-commands' parsers, and so Numba) and
    `numdp.load_model` in a process whose package folder and home cannot hold a cache: Numba's
    CACHE_DIR is the private folder (numdp.kernels sets it when first imported)."""
    run = ("import numdp.cli as c\ntry:\n    c.main(['--version'])\nexcept SystemExit:\n    pass\n" if use == "cli"
           else f"import numdp\nnumdp.load_model({str(ROOT / 'inputs' / 'water' / 'model.h5')!r}, nthreads=1)\n"
                "print('numdp 0.1.0')\n")
    code = ("import numdp.numba_cache as nc\n"
            f"nc._tree_cache_dirs = lambda: [{BLOCKED!r}]\n"
            f"nc._user_cache_dir = lambda: {BLOCKED!r}\n" + run +
            "from numba.core import config\nprint('CACHE', config.CACHE_DIR)\n")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["TMPDIR"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["numdp 0.1.0", f"CACHE {tmp_path}/numdp-numba-cache-{os.getuid()}"]
    assert out.stderr == ""


def test_version_is_stated_once():
    """pyproject.toml's version and numdp.__version__ (`numdp --version`) agree."""
    import numdp

    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^version = "([^"]+)"', text, re.M).group(1) == numdp.__version__


def _git_files(prefix: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", prefix], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.split() if out.returncode == 0 else []


def _sdist_files(src: Path, dist: Path) -> set[str]:
    """The files of the sdist built from `src`: setuptools' own build where it is new enough for
    pyproject.toml (>= 77), else its MANIFEST.in machinery on the same tree (what the sdist adds
    beyond numdp/ and the metadata)."""
    import setuptools

    cwd = os.getcwd()
    os.chdir(src)
    try:
        if int(setuptools.__version__.split(".")[0]) >= 77:
            from setuptools import build_meta

            name = build_meta.build_sdist(str(dist))
            with tarfile.open(dist / name) as tar:
                return {m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name}
        from setuptools._distutils.text_file import TextFile
        from setuptools.command.egg_info import FileList

        files = FileList()
        files.findall()
        template = TextFile("MANIFEST.in" if Path("MANIFEST.in").exists() else os.devnull, strip_comments=1, skip_blanks=1, join_lines=1,
                            lstrip_ws=1, rstrip_ws=1, collapse_join=1)
        for line in template.readlines() if Path("MANIFEST.in").exists() else []:
            files.process_template_line(line)
        return {f.replace(os.sep, "/") for f in files.files}
    finally:
        os.chdir(cwd)


def test_sdist_carries_tests_docs_and_inputs(tmp_path):
    """The source distribution holds every tracked file of tests/ (conftest.py and the data too),
    docs/, inputs/ and tools/, and no caches nor the examples' outputs."""
    pytest.importorskip("setuptools")
    want = [f for p in ("tests", "docs", "inputs", "tools") for f in _git_files(p)]
    if not want:
        pytest.skip("needs the git checkout")
    src = tmp_path / "src"
    for name in _git_files(".") + ["MANIFEST.in"]:
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    (src / "tests" / "__pycache__").mkdir(exist_ok=True)
    (src / "tests" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"")
    (src / "inputs" / "water" / "traj.h5md").write_bytes(b"")   # an example's output
    (src / "inputs" / "water" / "#log.txt.1#").write_bytes(b"")  # and a kept earlier one
    names = _sdist_files(src, tmp_path / "dist")
    assert "tests/conftest.py" in want
    assert sorted(set(want) - names) == []
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert "inputs/water/traj.h5md" not in names and "inputs/water/#log.txt.1#" not in names


def test_importing_numdp_main_runs_nothing():
    """pydoc, pdoc and pkgutil.walk_packages import numdp.__main__: that parsed sys.argv and
    exited ("numdp: error: the following arguments are required: COMMAND")."""
    code = "import numdp.__main__; print('imported')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout, out.stderr) == (0, "imported\n", "")


def test_python_m_numdp_is_the_command_line():
    out = subprocess.run([sys.executable, "-m", "numdp", "--version"], capture_output=True, text=True,
                         timeout=60)
    assert (out.returncode, out.stdout) == (0, "numdp 0.1.0\n")
    out = subprocess.run([sys.executable, "-m", "numdp"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "required: COMMAND" in out.stderr


def test_a_missing_ase_names_the_extra():
    """numdp.ase (and numdp.calculator) without ASE said only "No module named 'ase'"."""
    code = ("import sys\nsys.modules['ase'] = None\n"
            "try:\n    import numdp.calculator\nexcept ModuleNotFoundError as e:\n    print(e.name, '|', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("ase | numdp.ase needs ASE: pip install 'numdp[ase]'"), out.stdout + out.stderr


def test_a_one_process_command_on_several_mpi_ranks_is_one_line():
    """`mpiexec -n 2 numdp train` ran two whole trainings on the same model.h5 and lcurve.out,
    exit 0: a sub-command that does not use MPI refuses a launcher's several ranks; numdp run
    and numdp lmp (spatial decomposition) are the ones that take them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "PMIX_", "MV2_"))}
    lines = {}
    for rank in ("0", "1"):   # the launcher's rank 0 says it, the others exit 2 quietly (printed once)
        env.update(PMI_SIZE="2", PMI_RANK=rank)
        out = subprocess.run([sys.executable, "-m", "numdp", "show", str(ROOT / "inputs" / "water" / "model.h5")],
                             env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and out.stdout == "", out.stdout + out.stderr
        lines[rank] = out.stderr.splitlines()
    assert lines == {"0": [
        "numdp show: error: started on 2 MPI ranks, but numdp show runs as one process (each rank would run "
        "the whole job on the same files); only numdp run and numdp lmp use MPI: start it without mpiexec"], "1": []}
