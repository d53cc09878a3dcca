"""Mixed boundary conditions (a slab, a wire) on the device: the CUDA neighbour search
(numdp.neighbor.device, `wrap_count_images_mixed`) and the MD step with device = "cuda", against
the CPU path of tests/test_pbc_mixed.py.

Under Numba's CUDA simulator (tests/conftest.py): tiny systems.  Tolerances:
- model.evaluate on the device against the CPU, 1e-12 relative: the argument of
  tests/test_cuda_model.py (same float64 expressions, other summation orders: ~50 eps).
- the MD runs: test_mpi's `same_run_bounds` (double round-off and the dynamics' growth).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba_cuda")

from numdp.model.dp_model import DPModel  # noqa: E402
from randmodel import random_config, random_params  # noqa: E402
from test_cuda_md import assert_close_runs, make_run, run  # noqa: E402
from test_cuda_mpi import run_two_gpu_ranks  # noqa: E402
from test_mpi import MPIEXEC, _mpi4py, frames  # noqa: E402

SLAB = (True, True, False)


def _models():
    params = random_params(ntypes=2, sel=[16, 16], neuron=(4, 8), fitting=(8, 8), rcut=3.5, rcut_smth=0.8, seed=5)
    return DPModel(params, nthreads=1), DPModel(params, nthreads=1, device="cuda", chunk=4)


def _close(a, b, rel=1e-12):
    scale = max(np.abs(a).max(), 1e-300)
    assert np.abs(np.asarray(a) - np.asarray(b)).max() <= rel * scale


def _same(cpu, gpu, pos, typ, box, pbc):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = cpu.evaluate(pos, typ, box, pbc=pbc)
        rg = gpu.evaluate(pos, typ, box, pbc=pbc)
    assert rg.energy == pytest.approx(rc.energy, rel=1e-12, abs=0)
    for name in ("atom_energies", "forces", "virial", "atom_virials"):
        _close(getattr(rc, name), getattr(rg, name))
    assert np.abs(rc.forces).max() > 1e-3
    return rc


def test_slab_and_wire_evaluate_on_the_device_as_on_the_cpu():
    cpu, gpu = _models()
    pos, typ, box = random_config(natoms=8, ntypes=2, box_len=4.0, tilt=0.3, seed=3)
    # some atoms far outside the cell along every vector: wrapped along periodic ones only
    pos = pos + np.outer(np.arange(8) % 3 - 1, box[2] * 2.5) + np.outer(np.arange(8) % 2, box[0] * 3.0)
    slab = _same(cpu, gpu, pos, typ, box, SLAB)
    full = cpu.evaluate(pos, typ, box)
    assert abs(full.energy - slab.energy) > 1e-3     # the slab is not the periodic cell
    flat = box.copy()
    flat[2] = 0.0                                    # ASE's slab cell: a zero vacuum vector
    _close(slab.forces, _same(cpu, gpu, pos, typ, flat, SLAB).forces)
    _same(cpu, gpu, pos, typ, box, (False, True, False))    # a wire
    cluster = _same(cpu, gpu, pos, typ, box, (False, False, False))
    assert cluster.energy == pytest.approx(cpu.evaluate(pos, typ, None).energy, rel=1e-12, abs=0)


def _slab_run(path: Path, device: str) -> Path:
    toml = make_run(path, device, steps=4, every=2, skin=0.005)
    toml.write_text(toml.read_text().replace('file = "start.xyz"', 'file = "start.xyz"\npbc = [true, true, false]', 1))
    return toml


def test_slab_md_on_the_device_equals_the_cpu_run(tmp_path):
    """A slab (the 16-atom crystal open along c) for 4 steps with rebuilds: device == CPU to
    round-off, and not the periodic crystal's run."""
    cpu = _slab_run(tmp_path / "cpu", "cpu")
    run(cpu)
    gpu = _slab_run(tmp_path / "gpu", "cuda")
    result = run(gpu)
    assert result.rebuilds > 1
    assert "mixed boundary conditions: periodic along a, b only" in (gpu.parent / "log.txt").read_text()
    a, b = frames(cpu.parent), frames(gpu.parent)
    assert_close_runs(a, b, "slab")
    periodic = make_run(tmp_path / "periodic", "cpu", steps=4, every=2, skin=0.005)
    run(periodic)
    assert np.abs(frames(periodic.parent)["pe"] - a["pe"]).max() > 1e-3


@pytest.mark.skipif(MPIEXEC is None or not _mpi4py(), reason="MPI tests need mpi4py and mpiexec")
def test_slab_on_two_gpu_ranks_equals_the_serial_cpu_run(tmp_path):
    """The slab split along a (the open direction c is never split): no ghost crosses the open
    faces on either GPU rank; equal to the serial CPU slab run to round-off."""
    cpu = _slab_run(tmp_path / "cpu", "cpu")
    run(cpu)
    gpu = _slab_run(tmp_path / "gpu", "cuda")
    run_two_gpu_ranks(gpu, grid="2 x 1 x 1")
    assert_close_runs(frames(cpu.parent), frames(gpu.parent), "slab, 2 GPU ranks")
