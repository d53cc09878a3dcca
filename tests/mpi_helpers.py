"""A minimization (`numdp run` of a [minimize] input) run serially and on 2 MPI ranks, for the
tests that compare the two (tests/test_minimize.py, tests/test_box_relax.py).  The launcher is
tests/test_mpi.py's (`numdp_run`); the tests skip where it cannot run (no mpi4py or mpiexec)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from numdp.io.h5md import read_checkpoint
from numdp.io.model_file import write_model
from numdp.io.structure import write_extxyz
from randmodel import random_params
from test_mpi import MPIEXEC, _mpi4py, numdp_run, rocksalt


INPUT = """
[model]
file = "model.h5"
[system]
file = "start.xyz"
masses = {{ A = 12.0, B = 16.0 }}
[minimize]
{minimize}
[neighbor]
skin = 1.0
[output]
every = 10
thermo_every = {thermo_every}
progress = "none"
"""


def minimize_serial_and_on_two_ranks(tmp_path: Path, minimize: str, thermo_every: int) -> dict:
    """ranks (1, 2) -> (checkpoint.h5 at the end (numdp.io.h5md.read_checkpoint), stdout) of
    `numdp run md.toml` in tmp_path/r1 and tmp_path/r2, INPUT with the [minimize] lines
    `minimize` and a thermo line every `thermo_every` iterations: a random model (2 types, rcut
    4 Å) and the rocksalt crystal of 2x2x2 cells in a tilted cell (test_mpi.rocksalt), jittered by
    0.05 Å (default_rng(5)).  Each run must stop on [minimize] steps.  Skips the test where MPI
    cannot run."""
    if MPIEXEC is None or not _mpi4py():
        pytest.skip("MPI tests need mpi4py and mpiexec")
    x, t, box = rocksalt((2, 2, 2))
    x = x + np.random.default_rng(5).normal(scale=0.05, size=x.shape)
    runs = {}
    for ranks in (1, 2):
        path = tmp_path / f"r{ranks}"
        path.mkdir()
        write_model(random_params(ntypes=2, sel=[24, 24], neuron=(4, 8), axis_neuron=2, fitting=(8, 8), rcut=4.0,
                                  rcut_smth=1.0, seed=2), path / "model.h5")
        write_extxyz(path / "start.xyz", [["A", "B"][i] for i in t], x, box)
        (path / "md.toml").write_text(INPUT.format(minimize=minimize, thermo_every=thermo_every))
        r = numdp_run(path, ranks)
        assert "Stopping criterion = max iterations ([minimize] steps)" in r.stdout, r.stdout[-2000:]
        runs[ranks] = (read_checkpoint(path / "checkpoint.h5"), r.stdout)
    return runs
