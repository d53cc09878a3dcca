"""numdp.numba_cache.drop_stale_kernels: Numba checks a cached kernel against its own file's stamp
only, so a kernel that inlines a function of another module kept its old machine code after an
edit of that module alone (found by mutation testing: a mutant of numdp/kernels/math.py ran the
kernels of the pristine tree)."""
import os
import subprocess
import sys
import textwrap
import time

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
