import os
if os.environ.get("NUMDP_TEST_REAL_GPU") != "1": os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
"""Shared fixtures: paths to the team's shared data and oracle, skipped cleanly when absent."""
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
ORACLE = SHARED / "oracle"
DATA = SHARED / "data"


@pytest.fixture(scope="session")
def oracle_dir():
    if not ORACLE.is_dir():
        pytest.skip("../shared/oracle not present")
    return ORACLE
