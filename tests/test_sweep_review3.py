"""Findings of the review of the 2026-12-07 (second) session's commits, each failing on the tree
before its fix: threads sharing a model on Numba's workqueue layer, repeated -s / -m / --rename
options, the ASE calculator given a numdp.DeepPot, and the memory check of many float32 frames
shown able to fail."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import numdp
from numdp import infer
from numdp.ase import DPCalculator
from numdp.cli import build_parser
from numdp.errors import InputError

TESTS = Path(__file__).resolve().parent
DATA = TESTS / "data"
MODEL = DATA / "fparam" / "fparam_default.dp"
REF = np.load(DATA / "api" / "dp_reference.npz")

CHILD = r"""
import sys
from concurrent.futures import ThreadPoolExecutor
import numpy as np
import numba
from numdp.infer import DeepPot
REF = np.load(sys.argv[1] + "/api/dp_reference.npz")
dp = DeepPot(sys.argv[1] + "/fparam/fparam_default.dp", threads=1)
coords, box, atype = REF["coord"][0], REF["box"][0], REF["atype"]
want = dp.eval(coords, box, atype)
with ThreadPoolExecutor(4) as pool:
    got = list(pool.map(lambda _: dp.eval(coords, box, atype), range(64)))
assert all(all(np.array_equal(g, w) for g, w in zip(one, want)) for one in got)
print(numba.threading_layer())
"""


def test_threads_share_a_model_on_numbas_workqueue_layer():
    """docs/python-api.md: one model may be called from several threads at once.  Numba's
    workqueue layer (its fallback without TBB or an OpenMP runtime, e.g. macOS without libomp)
    is not thread-safe: two threads in a parallel neighbour kernel at once aborted the process
    (SIGABRT).  64 evaluations from 4 threads: each the serial result, exit status 0."""
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue")
    out = subprocess.run([sys.executable, "-c", CHILD, str(DATA)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "workqueue", (out.returncode, out.stderr[-600:])


@pytest.mark.parametrize("argv", [
    ["test", "-m", "m.dp", "-s", "a", "-s", "b", "c"],
    ["eval-desc", "-m", "m.dp", "-s", "a", "-s", "b", "c"],
    ["model-devi", "-m", "m1.dp", "m2.dp", "-s", "a", "-s", "b", "c"],
    ["neighbor-stat", "-r", "6", "-s", "a", "-s", "b", "c"],
])
def test_every_system_option_adds_its_systems(argv):
    """Each -s adds its systems, in order, in every command that takes -s SYSTEM ... (model-devi
    and neighbor-stat declare their own -s)."""
    assert build_parser().parse_args(argv).system == ["a", "b", "c"]


def test_every_models_option_adds_its_models():
    """model-devi -m a -m b: both models (argparse kept b alone: one model, a deviation of 0)."""
    args = build_parser().parse_args(["model-devi", "-m", "m1.dp", "-m", "m2.dp", "-s", "a"])
    assert args.models == ["m1.dp", "m2.dp"]


def test_every_rename_option_adds_its_renames():
    """numdp ipi --rename OW=O --rename HW=H kept HW=H alone (and the unknown-label line then asked
    for the --rename the user gave)."""
    parser = build_parser()
    argv = ["ipi", "-m", "m.dp", "--unix", "x", "--init", "s.xyz", "--rename", "OW=O", "--rename", "HW=H"]
    assert parser.parse_args(argv).rename == ["OW=O", "HW=H"]
    assert parser.parse_args(argv[:-4]).rename == []


def test_calculator_takes_a_deeppot_and_refuses_other_objects():
    """The dpdata driver took a numdp.DeepPot; the ASE calculator (a second copy of the model
    argument's resolution, now numdp.model.dp_model.model_of) still failed with a TypeError."""
    from ase import Atoms

    atoms = Atoms(numbers=[8 if t == 0 else 1 for t in REF["atype"]], positions=REF["coord"][0].reshape(-1, 3),
                  cell=REF["box"][0].reshape(3, 3), pbc=True)
    dp = numdp.DeepPot(MODEL)
    atoms.calc = DPCalculator(dp)
    assert atoms.calc.model is dp.model
    e = atoms.get_potential_energy()
    atoms.calc = DPCalculator(MODEL)
    assert e == atoms.get_potential_energy()
    with pytest.raises(InputError, match=r"^DPCalculator: the model is a int; expected a model file path"):
        DPCalculator(42)


def test_the_memory_check_fails_on_a_whole_copy(monkeypatch):
    """tests/test_sweep_api_robust.py's bound on the memory of many float32 frames (half a whole
    float64 copy of the extra frames' inputs) with the inputs converted whole, as before: broken."""
    import test_sweep_api_robust as robust

    monkeypatch.setattr(infer, "_numbers", lambda who, name, value: np.asarray(value, dtype=np.float64))
    growth, copy = robust.memory_growth()
    assert not growth < copy / 2, (growth, copy)


NEIGHBOUR_CHILD = r"""
from concurrent.futures import ThreadPoolExecutor
import numpy as np
import numba
from numdp.neighbor import extend
rng = np.random.default_rng(0)
pos = rng.uniform(0, 12.0, (300, 3)); types = np.zeros(300, np.int32); box = np.eye(3) * 12.0
want = extend(pos, types, box, 6.0).positions
with ThreadPoolExecutor(4) as pool:
    got = list(pool.map(lambda _: extend(pos, types, box, 6.0).positions, range(64)))
assert all(np.array_equal(g, want) for g in got)
print(numba.threading_layer())
"""


def test_threads_calling_the_public_neighbour_search_on_numbas_workqueue_layer():
    """numdp.neighbor.extend is public (docs/ase.md); the workqueue lock guarded only the callers
    that use kernel_threads (DPModel, MD), so 4 threads calling extend aborted the process.  Each
    launch of a parallel neighbour kernel now takes it (numdp.neighbor.threads.one_launcher)."""
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue", NUMBA_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", NEIGHBOUR_CHILD], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "workqueue", (out.returncode, out.stderr[-400:])
