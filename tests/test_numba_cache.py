"""numdp.numba_cache.drop_stale_kernels: Numba checks a cached kernel against its own file's stamp
only, so a kernel that inlines a function of another module kept its old machine code after an
edit of that module alone (found by mutation testing: a mutant of numdp/kernels/math.py ran the
kernels of the pristine tree)."""
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import numdp
from numdp.numba_cache import drop_stale_kernels, kernel_sources_digests, stale_modules

HELPER = "from numba import njit\n\n\n@njit(inline='always')\ndef helper(x):\n    return x + {value}\n"
KERNEL = textwrap.dedent("""\
    from numba import njit

    from ..math import helper


    @njit(cache=True)
    def kernel(x):
        return helper(x)
    """)
RUN = textwrap.dedent("""\
    import sys
    sys.path.insert(0, {parent!r})
    from numdp.numba_cache import drop_stale_kernels
    if {drop}:
        drop_stale_kernels(root={root!r})
    from fake.kernels.cpu.k import kernel
    print(kernel(1.0))
    """)


def _tree(tmp_path):
    """A package `fake` laid out as numdp (kernels/math.py inlined into kernels/cpu/k.py)."""
    root = tmp_path / "fake"
    (root / "kernels" / "cpu").mkdir(parents=True)
    for init in (root, root / "kernels", root / "kernels" / "cpu"):
        (init / "__init__.py").write_text("")
    (root / "kernels" / "math.py").write_text(HELPER.format(value=1.0))
    (root / "kernels" / "cpu" / "k.py").write_text(KERNEL)
    return root


def _run(root, drop: bool) -> float:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}   # the in-tree cache
    code = RUN.format(parent=str(root.parent), root=str(root), drop=drop)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def test_an_edit_of_an_inlined_module_recompiles_its_users(tmp_path):
    root = _tree(tmp_path)
    assert _run(root, drop=True) == 2.0   # compiled and cached
    time.sleep(0.01)
    (root / "kernels" / "math.py").write_text(HELPER.format(value=10.0))
    assert _run(root, drop=False) == 2.0   # Numba alone: k.py's stamp is unchanged, its old code loads
    assert _run(root, drop=True) == 11.0   # the kernels of modules that import math.py are dropped
    assert _run(root, drop=True) == 11.0   # and cached again (the stamp now holds the new sources)
    cache = root / "kernels" / "cpu" / "__pycache__"
    assert any(p.suffix == ".nbi" for p in cache.iterdir())


def test_stale_modules_follow_the_imports_of_numdps_kernels():
    digests, deps = kernel_sources_digests()
    assert "kernels.math" in deps["kernels.cpu.envmat"] and "units" in deps["kernels.mdmath"]
    stale = stale_modules({**digests, "units": "edited"}, digests, deps)
    assert {"units", "kernels.mdmath", "kernels.cpu.md", "kernels.cpu.thermostat"} <= stale
    assert "kernels.cpu.layers" not in stale
    assert stale_modules(digests, digests, deps) == set()


def test_a_folder_that_is_not_stale_is_left_alone(tmp_path):
    root = _tree(tmp_path)
    cache = root / "kernels" / "cpu" / "__pycache__"
    cache.mkdir()
    (cache / "k.kernel-7.py311.nbi").write_text("index")
    dirs = {str(cache): "kernels.cpu"}
    assert drop_stale_kernels(dirs, root=str(root)) == {str(cache): {"__init__", "k"}}   # no stamp: all stale
    assert not (cache / "k.kernel-7.py311.nbi").exists()
    (cache / "k.kernel-7.py311.nbi").write_text("index")
    assert drop_stale_kernels(dirs, root=str(root)) == {}
    assert (cache / "k.kernel-7.py311.nbi").exists()


# -- the review's findings: import forms, the first run's folders, where kernels may live ----------

USERS = {
    "kernels/a.py": "import numdp.kernels.math\n",
    "kernels/b.py": "import numdp.kernels.math as m\n",
    "kernels/c.py": "from . import (\n    dual,\n    math,\n)\n",
    "kernels/d.py": "from numdp.kernels import (\n    math as m,\n)\n",
    "kernels/cpu/e.py": "from . import helper\n",   # helper: defined in cpu/__init__.py
    "kernels/cpu/f.py": "from ..cpu import helper\n",
    "kernels/cpu/g.py": "def f():\n    if True:\n        from .. import math\n",  # already right
    "kernels/cpu/h.py": "from numdp.kernels.dual import a, \\\n    b\nfrom ..math import (\n    X)\n",
}


def _import_tree(tmp_path):
    root = tmp_path / "numdp"
    (root / "kernels" / "cpu").mkdir(parents=True)
    (root / "kernels" / "__init__.py").write_text("")
    (root / "kernels" / "math.py").write_text("X = 1\n")
    (root / "kernels" / "dual.py").write_text("")
    (root / "kernels" / "cpu" / "__init__.py").write_text("from ..math import X as helper\n")
    for path, text in USERS.items():
        (root / path).write_text(text)
    return root


@pytest.mark.parametrize("path", sorted(USERS))
def test_an_edit_of_math_makes_each_importer_stale(tmp_path, path):
    digests, deps = kernel_sources_digests(str(_import_tree(tmp_path)))
    stale = stale_modules({**digests, "kernels.math": "edited"}, digests, deps)
    assert path[:-3].replace("/", ".") in stale


def test_the_kernels_of_this_tree_keep_their_imports():
    """The scan of numdp's own kernels: a fix must not lose an edge the old scan had."""
    digests, deps = kernel_sources_digests(os.path.dirname(numdp.__file__))
    assert {"kernels.math", "kernels.dual"} <= deps["kernels.cpu.neighbor"]
    assert {"kernels.mdmath", "kernels.rng", "units"} <= deps["kernels.cuda.md"]
    assert "kernels.cuda.fastlaunch" in deps["kernels.cuda.opcount"]   # inside a function


KERNEL_X = "from numba import njit\n\nfrom ..math import X\n\n\n@njit(cache=True)\ndef kernel(x):\n    return x + X\n"


def _tree_x(tmp_path):
    """A fresh package `fake` (no __pycache__ yet): kernels/cpu/k.py reads a constant of kernels/math.py."""
    root = tmp_path / "fake"
    (root / "kernels" / "cpu").mkdir(parents=True)
    for init in (root, root / "kernels", root / "kernels" / "cpu"):
        (init / "__init__.py").write_text("")
    (root / "kernels" / "math.py").write_text("X = 1.0\n")
    (root / "kernels" / "cpu" / "k.py").write_text(KERNEL_X)
    return root


def test_the_kernels_cached_by_the_first_run_are_kept_by_the_second(tmp_path):
    """A fresh tree (no __pycache__ under kernels/cpu yet): the first import stamps no folder,
    Numba then caches there, and the second import found kernels without a stamp and dropped them
    all (a fresh clone or install compiles every CPU kernel twice; CI's first subprocess too)."""
    root = _tree_x(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    code = RUN.format(parent=str(tmp_path), root=str(root), drop=True)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert float(out.stdout.split()[-1]) == 2.0
    cache = root / "kernels" / "cpu" / "__pycache__"
    cached = [p for p in cache.iterdir() if p.suffix in (".nbi", ".nbc")]
    assert cached
    assert drop_stale_kernels({str(cache): "kernels.cpu"}, root=str(root)) == {}
    assert all(p.exists() for p in cached)


def test_a_numba_cache_dir_that_does_not_exist_yet_is_stamped_by_the_first_run(tmp_path):
    """NUMBA_CACHE_DIR not made yet (CI's, a user's fresh one): the first import could not make
    its folders (their parent missing) and stamped none, Numba then made them and cached there,
    and the second import found kernels without a stamp and dropped them all (the first MD run
    and the second both compiled: 20 s each, the third 7.5 s)."""
    from numdp.numba_cache import kernel_cache_dirs

    root = _tree_x(tmp_path)
    base = tmp_path / "not" / "yet"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(base))
    code = RUN.format(parent=str(tmp_path), root=str(root), drop=True)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert float(out.stdout.split()[-1]) == 2.0
    cache = [d for d, package in kernel_cache_dirs(env, root=str(root)).items()
             if package == "kernels.cpu" and d.startswith(str(base))]
    assert len(cache) == 1
    cached = [p for p in Path(cache[0]).iterdir() if p.suffix in (".nbi", ".nbc")]
    assert cached
    assert drop_stale_kernels({cache[0]: "kernels.cpu"}, root=str(root)) == {}
    assert all(p.exists() for p in cached)


def test_every_cached_kernel_and_what_it_reads_is_where_the_cache_check_looks():
    """drop_stale_kernels looks only at the cache folders of numdp/kernels and hashes only
    KERNEL_SOURCES: a `cache=True` kernel elsewhere in numdp, or a kernel module importing another
    numdp module (its constants frozen in), would escape it silently."""
    root = Path(numdp.__file__).parent
    outside = [str(p.relative_to(root)) for p in root.rglob("*.py")
               if "kernels" not in p.relative_to(root).parts and "cache=True" in p.read_text()
               and p.name != "numba_cache.py"]
    assert outside == []
    allowed = {"units", "numba_cache", "backend"}   # backend: opcount's CUDA launch counter, not kernels
    read = set()
    for p in (root / "kernels").rglob("*.py"):
        depth = len(p.relative_to(root).parts) - 1   # dots of `from ..x` reaching numdp itself
        for first in re.findall(rf"^\s*from\s+(?:numdp\.|\.{{{depth + 1}}})(\w+)", p.read_text(), re.M):
            read.add(first)
    assert read - {"kernels"} <= allowed, read


def test_numba_caches_in_the_folder_it_will_use(tmp_path):
    from numdp.numba_cache import _numba_caches_in, _user_cache_dir

    user = os.path.join(_user_cache_dir(), "cpu_0")
    mine = str(tmp_path / "mine" / "cpu_0")
    tree = str(tmp_path / "cpu" / "__pycache__")
    dirs = {tree: "kernels.cpu", mine: "kernels.cpu", user: "kernels.cpu"}
    set_ = {"NUMBA_CACHE_DIR": str(tmp_path / "mine")}
    assert _numba_caches_in(mine, dirs, set_) and not _numba_caches_in(user, dirs, set_)
    (tmp_path / "cpu").mkdir()   # the sources' folder can be written: Numba caches beside them
    assert not _numba_caches_in(user, dirs, {}) and not _numba_caches_in(mine, dirs, {})
    (tmp_path / "file").write_text("")   # a __pycache__ that cannot be made: Numba takes the user-wide one
    unwritable = {str(tmp_path / "file" / "__pycache__"): "kernels.cpu", user: "kernels.cpu"}
    assert _numba_caches_in(user, unwritable, {})
