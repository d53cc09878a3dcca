"""Shared fixtures: paths to the team's shared data and oracle, skipped cleanly when absent.  The
CUDA path runs in Numba's simulator unless NUMDP_TEST_REAL_GPU=1 (set before Numba is imported)."""
import os

if os.environ.get("NUMDP_TEST_REAL_GPU") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
ORACLE = SHARED / "oracle"
DATA = SHARED / "data"


def pytest_configure(config):
    """Under pytest-xdist (`-n 2`) each worker binds its simulated CUDA launches to its own CPU
    (by worker number, not pid, so that two workers never share one)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        from numdp.kernels.cuda import launch
        launch.SIM_CPU_SLOT = int(worker[2:])


@pytest.fixture(scope="session")
def oracle_dir():
    if not ORACLE.is_dir():
        pytest.skip("../shared/oracle not present")
    return ORACLE
