"""`--device cuda` of the commands that evaluate models outside MD: `numdp model-devi` and `numdp
ipi` (`numdp test` and `numdp eval-desc`: tests/test_cuda_model.py, tests/test_sweep_cuda_new.py).

Under Numba's CUDA simulator (tests/conftest.py), tiny random models on a few atoms.  Each test
checks that the option reaches the model (the device every load_model call was given) and that
the command's output is the CPU run's.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba_cuda")

import numdp  # noqa: E402
from numdp.cli import main  # noqa: E402
from numdp.io.model_file import write_model  # noqa: E402
from numdp.units import IPI_BOHR_PER_ANGSTROM, IPI_HARTREE_PER_EV  # noqa: E402
from randmodel import random_config, random_params  # noqa: E402
from test_ipi import _one_step_server  # noqa: E402
from tests_util import write_system  # noqa: E402

KW = dict(ntypes=2, sel=[6, 8], neuron=(2, 4), axis_neuron=2, fitting=(4, 4), rcut=3.0, rcut_smth=0.5)
# CUDA double against CPU double: the same float64 expressions summed in other orders
# (tests/test_cuda_model.py's argument, as tests/test_sweep_cuda_new.py's REL64)
REL64 = 1e-12


@pytest.fixture
def devices_seen(monkeypatch):
    """The `device` of every numdp.load_model call (the commands import it from numdp)."""
    seen = []
    real = numdp.load_model

    def load_model(*args, **kwargs):
        seen.append(kwargs.get("device", "cpu"))
        return real(*args, **kwargs)

    monkeypatch.setattr(numdp, "load_model", load_model)
    return seen


def _models(tmp_path):
    paths = []
    for seed in (3, 4):
        params = random_params(seed=seed, **KW)
        params.type_map = ["A", "B"]
        paths.append(tmp_path / f"m{seed}.h5")
        write_model(params, paths[-1])
    return paths


def test_model_devi_on_the_device_writes_the_cpus_file(tmp_path, devices_seen):
    """numdp model-devi --device cuda: two models, a periodic system of two frames; the file's rows
    are the CPU run's to its printed digits.  Each value is printed as %.6e: two values within
    REL64 of each other print the same or one unit of the sixth decimal apart, at most 1e-6 of
    the value."""
    models = _models(tmp_path)
    frames = [random_config(6, 2, box_len=5.0, seed=s) for s in (1, 2)]
    system = write_system(tmp_path / "sys", np.stack([f[0] for f in frames]), np.stack([f[2] for f in frames]),
                          frames[0][1], ["A", "B"])
    tables = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.out"
        assert main(["model-devi", "-m", *map(str, models), "-s", str(system), "-o", str(out),
                     "--device", device, "--threads", "1"]) == 0
        tables[device] = np.loadtxt(out, ndmin=2)
    assert devices_seen == ["cpu", "cpu", "cuda", "cuda"]
    cpu, cuda = tables["cpu"], tables["cuda"]
    assert cpu.shape == cuda.shape == (2, 8) and np.all(cpu[:, 4] > 0)   # a force deviation to compare
    assert np.all(np.abs(cuda - cpu) <= 1e-6 * np.abs(cpu)), (cpu, cuda)


def test_ipi_client_on_the_device_returns_the_cpus_forces(tmp_path, devices_seen):
    """numdp ipi --device cuda answers one i-PI step with the CPU model's energy and forces: the
    binary doubles of the protocol, Ha and Ha/Bohr converted back with the same factors (a few
    ulps), within REL64 of the largest value."""
    model = _models(tmp_path)[0]
    pos, types, box = random_config(6, 2, box_len=5.0, seed=5)
    result = {}
    thread = _one_step_server(tmp_path / "s_dev", box, pos, result)
    elements = [["A", "B"][t] for t in types]
    assert main(["ipi", "-m", str(model), "--unix", "dev", "--sockets-prefix", f"{tmp_path}/s_", "--types",
                 *elements, "--device", "cuda", "--threads", "1", "--wait", "30"]) == 0
    thread.join(timeout=60)
    assert devices_seen == ["cuda"]
    ref = numdp.load_model(model, nthreads=1).evaluate(pos, types, box)
    energy = result["energy"] / IPI_HARTREE_PER_EV
    forces = result["forces"] * IPI_BOHR_PER_ANGSTROM / IPI_HARTREE_PER_EV
    assert abs(energy - ref.energy) <= REL64 * abs(ref.energy)
    assert np.abs(forces - ref.forces).max() <= REL64 * np.abs(ref.forces).max()
