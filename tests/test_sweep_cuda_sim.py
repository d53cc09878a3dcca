"""Defects found by the CUDA sweep (device = "cuda" used as DP users would, against the CPU path of
the same input), each pinned by a test that failed before its fix.

Under Numba's CUDA simulator (tests/conftest.py) unless NUMDP_TEST_REAL_GPU=1.  Systems are the
16-atom rocksalt cell of tests/test_mpi.py with the small random model of tests/test_cuda_md.py
(a GPU step costs ~0.5 s in the simulator).
"""
from __future__ import annotations

import io
import math
import os

import numpy as np
import pytest

pytest.importorskip("numba_cuda")

from numdp.config import load_run_settings  # noqa: E402
from numdp.io.model_file import read_model  # noqa: E402
from numdp.io.structure import write_extxyz  # noqa: E402
from numdp.md.safety import SafetyStop  # noqa: E402
from numdp.md.setup import run_md  # noqa: E402
from numdp.model.dp_model import DPModel  # noqa: E402
from test_cuda_md import make_run  # noqa: E402
from test_mpi import rocksalt  # noqa: E402

REAL_GPU = os.environ.get("NUMDP_TEST_REAL_GPU") == "1"


def _stop(toml) -> str:
    settings = load_run_settings(toml)
    model = DPModel(read_model(toml.parent / "model.h5"), nthreads=1, device=settings.model.device)
    with pytest.raises(SafetyStop) as exc:
        run_md(settings, model=model, screen=io.StringIO())
    return str(exc.value).split(";")[0]


# -- atoms exactly on top of each other during a GPU run ---------------------------------------------
# On a GPU 1.0 / 0.0 is inf (IEEE, no trap), so the environment row of a pair at r = 0 is non-finite
# and the step's safety check names the pair (numdp.neighbor.overlap), as on the CPU.  The simulator
# ran the shared scalar maths (numdp.kernels.math.env_row: r = math.sqrt(...), a Python float) in
# Python, where 1.0 / 0.0 raises ZeroDivisionError: a traceback instead of the one-line stop.


@pytest.mark.skipif(REAL_GPU, reason="calls device functions from the host (simulator only)")
def test_simulated_env_row_divides_by_zero_as_a_gpu():
    """env_row at r = 0 gives the GPU's IEEE results (r 0, s0 = s1 = inf: w(0) = 1), and so does
    row_jacobian, instead of raising; at r > 0 the very same bits as the CPU twin."""
    from numdp.kernels.cpu import envmat  # noqa: F401  (compiles the CPU copies)
    from numdp.kernels.cuda.launch import MATH
    from numdp.kernels.math import CPU

    r, s0, s1 = MATH.env_row(0.0, 0.0, 0.0, 1.0, 2.9)
    assert r == 0.0 and s0 == math.inf and s1 == math.inf
    a0, a1, b = MATH.row_jacobian(0.0, 0.0, 0.0, 1.0, 2.9)
    assert math.isnan(a0) and math.isnan(a1) and b == math.inf   # w' = 0: 0 * inf is nan
    for d in ((0.3, -1.1, 2.0), (1e-9, 0.0, 0.0), (2.5, 0.1, 0.2)):
        assert MATH.env_row(*d, 1.0, 2.9) == tuple(float(v) for v in CPU.env_row(*d, 1.0, 2.9))
        assert MATH.row_jacobian(*d, 1.0, 2.9) == tuple(float(v) for v in CPU.row_jacobian(*d, 1.0, 2.9))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")   # 0 x inf, as on a GPU
@pytest.mark.parametrize("image", [False, True], ids=["same-place", "periodic-image"])
def test_atoms_on_top_of_each_other_stop_a_gpu_run_as_a_cpu_run(tmp_path, image):
    """Atom 4 placed exactly on atom 0 (or on its periodic image one cell vector away): the GPU run
    stops at step 0 with the CPU run's message word for word, not a ZeroDivisionError."""
    x, t, box = rocksalt((2, 1, 1))
    x[4] = x[0] + (box[0] if image else 0.0)
    msg = {}
    for device in ("cpu", "cuda"):
        toml = make_run(tmp_path / device, device, steps=2, every=1)
        write_extxyz(toml.parent / "start.xyz", [["A", "B"][i] for i in t], x, box)
        msg[device] = _stop(toml)
    assert msg["cpu"].startswith("step 0: atoms 0 (A) and 4 (B) are on top of each other (0 A apart)")
    assert msg["cuda"] == msg["cpu"]


# -- the unavailable device names the input file and key ---------------------------------------------
# check_device_run was given the input's name (`where`) and did not use it: `numdp run md.toml`
# with device = "cuda" on a machine without a GPU said "numdp run: error: device 'cuda': no usable
# NVIDIA GPU ..." without naming the file or the key, where every other input error names both.


@pytest.mark.skipif(REAL_GPU, reason="a GPU is present")
@pytest.mark.parametrize("how", ["key", "option"])
def test_unavailable_device_names_the_file_and_key_in_one_line(tmp_path, how):
    import subprocess
    import sys

    toml = make_run(tmp_path, "cuda" if how == "key" else "cpu")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    out = subprocess.run([sys.executable, "-m", "numdp.cli", "run", "md.toml",
                          *(["--device", "cuda"] if how == "option" else [])],
                         capture_output=True, text=True, env=env, cwd=toml.parent, timeout=120)
    assert out.returncode == 2, out.stderr
    msg = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    assert len(msg) == 1, msg
    assert msg[0].startswith("numdp run: error: md.toml: [model] device 'cuda': no usable NVIDIA GPU"), msg
    assert not (tmp_path / "traj.h5md").exists()


@pytest.mark.skipif(REAL_GPU, reason="a GPU is present")
def test_unavailable_device_of_numdp_lmp_names_its_option(tmp_path):
    """numdp lmp --device cuda without a GPU: a LAMMPS script has no [model] table, so the line
    names the option (it blamed '[model] device', a key the user never wrote)."""
    import subprocess
    import sys

    make_run(tmp_path, "cpu")   # the model file
    (tmp_path / "in.lammps").write_text(
        "units metal\nlattice fcc 4.0\nregion box block 0 1 0 1 0 1\ncreate_box 1 box\n"
        "create_atoms 1 box\nmass 1 20.0\npair_style deepmd model.h5\npair_coeff * * A\n"
        "fix 1 all nve\nrun 1\n")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    out = subprocess.run([sys.executable, "-m", "numdp.cli", "lmp", "-i", "in.lammps", "--device", "cuda"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert out.returncode == 2, out.stderr
    msg = [line for line in (out.stdout + out.stderr).splitlines() if line.strip() and "error" in line]
    assert len(msg) == 1 and msg[0].startswith(
        "numdp lmp: error: in.lammps: --device 'cuda': no usable NVIDIA GPU"), msg
