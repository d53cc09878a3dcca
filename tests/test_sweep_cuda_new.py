"""The features of the 2026-12-06/07 session on the CUDA path (device="cuda"), each against the CPU.

- frame / atomic parameters read from DeePMD-kit .pth/.pt/.pb files (tests/data/dp32_models);
- DeepPot.eval with virtual atoms (type -1) and frames of no (real) atoms, evaluate_ensemble and
  `numdp test --device cuda` on mixed-type padded data (tests/data/mixed_pad);
- the H5MD pressure tensor and virial of a device MD run (the device state synced at output steps);
- a closed stdout and a SIGTERM during the last step of a device run: the checkpoint written and
  restartable on either device.

Defect found (on both devices): a frame with no real atoms (zero atoms, or only virtual ones) of a
model with atomic parameters stopped DeePMD-kit-style evaluation with "give aparam": its aparam has
no rows, so it read as "not given".  DeePMD-kit 3.2 returns zeros for such a frame.

Under Numba's CUDA simulator (tests/conftest.py) unless NUMDP_TEST_REAL_GPU=1; tiny systems.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba_cuda")

import numdp  # noqa: E402
import numdp.md.loop as loop  # noqa: E402
from numdp import signals  # noqa: E402
from numdp.cli import main  # noqa: E402
from numdp.infer import DeepPot  # noqa: E402
from numdp.io.h5md import read_checkpoint  # noqa: E402
from numdp.io.npy_system import load_system  # noqa: E402
from numdp.model.dp_model import evaluate_ensemble  # noqa: E402
from numdp.system import kinetic_tensor, to_arrays  # noqa: E402
from numdp.units import EV_PER_A3_TO_BAR  # noqa: E402
from test_cuda_md import MTK_NPT, make_run, thermostatted_velocity_bound  # noqa: E402
from test_cuda_model import _mixed_tolerance  # noqa: E402
from test_mpi import frames, same_run_bounds  # noqa: E402
from tests_util import U32, U64  # noqa: E402

MODELS = Path(__file__).resolve().parent / "data" / "dp32_models"
PADDED = Path(__file__).resolve().parent / "data" / "mixed_pad" / "sys"
REF = np.load(MODELS / "reference.npz")
# CUDA double against CPU double: the same float64 expressions summed in other orders
# (tests/test_cuda_model.py's argument: ~50 terms of unit condition, two orders of margin)
REL64 = 1e-12


def _rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def _params(dp: DeepPot, frames_: slice) -> dict:
    kw = {}
    if dp.get_dim_fparam():
        kw["fparam"] = REF["fparam"][frames_, : dp.get_dim_fparam()]
    if dp.get_dim_aparam():
        kw["aparam"] = REF["aparam"][frames_]
    return kw


# -- 1. frame and atomic parameters of DeePMD-kit's files on the device ------------------------------

@pytest.mark.parametrize("name", ["fparam.pth", "fparam.pt", "aparam.pb", "fparam_aparam_default.pth"])
def test_frame_and_atomic_parameters_of_deepmd_kit_files_on_the_device(name):
    """Two frames with their own fparam (the device evaluator's first-layer biases change between
    them) and per-atom aparam (the device's per-atom delta rows): double on the device equals the CPU
    to REL64; mix32 on the device equals CPU double within tests/test_cuda_model's float32 bound
    (the network part of the atomic energies: the per-type biases are exact)."""
    cpu = DeepPot(MODELS / name, threads=1)
    kw = _params(cpu, slice(0, 2))
    want = cpu.eval(REF["coord"], REF["box"], REF["atype"], atomic=True, **kw)
    got = DeepPot(MODELS / name, device="cuda").eval(REF["coord"], REF["box"], REF["atype"], atomic=True, **kw)
    for g, w in zip(got, want):
        assert _rel(g, w) <= REL64
    assert want[0][0, 0] != want[0][1, 0]   # the frames' parameters differ
    gpu32 = DeepPot(MODELS / name, device="cuda", precision="mix32")
    low = gpu32.eval(REF["coord"], REF["box"], REF["atype"], atomic=True, **kw)
    tol = _mixed_tolerance(U32, cpu.model)
    bias = cpu.model._ev.atom_bias[REF["atype"]][None, :, None]
    assert _rel(low[3] - bias, want[3] - bias) <= tol
    for k in (1, 2, 4):   # force, virial, atomic virials
        assert _rel(low[k], want[k]) <= tol
    assert _rel(low[1], want[1]) > 1e-3 * U32   # float32 was used
    if cpu.has_default_fparam():   # no fparam: the model's default on both devices
        kw.pop("fparam")
        a = cpu.eval(REF["coord"], REF["box"], REF["atype"], **kw)
        b = DeepPot(MODELS / name, device="cuda").eval(REF["coord"], REF["box"], REF["atype"], **kw)
        assert all(_rel(x, y) <= REL64 for x, y in zip(b, a))


# -- 2. virtual atoms and empty frames ---------------------------------------------------------------

def _padded_frame():
    """Frame 0 of the reference with two virtual atoms inserted after atom 3 (coordinates, types,
    aparam (1, 14, 1)) and the mask of real atoms."""
    x = REF["coord"][0].reshape(12, 3)
    at = np.insert(REF["atype"], 4, [-1, -1])
    pos = np.insert(x, 4, [[0.0, 0.0, 0.0], x[0]], axis=0)   # one on top of a real atom
    ap = np.insert(REF["aparam"][0], 4, [[5.0], [5.0]], axis=0)
    return pos[None], at, ap[None], at >= 0


def test_virtual_atoms_on_the_device_equal_the_cpu_without_them():
    """DeepPot.eval of a frame with virtual atoms on the device: the CPU evaluation of its real
    atoms alone (REL64), zero rows for the virtual ones; fparam and per-atom aparam given."""
    name = MODELS / "fparam_aparam_default.pth"
    pos, at, ap, real = _padded_frame()
    fp = REF["fparam"][0]
    got = DeepPot(name, device="cuda").eval(pos, REF["box"][0], at, atomic=True, fparam=fp, aparam=ap)
    want = DeepPot(name, threads=1).eval(pos[:, real], REF["box"][0], at[real], atomic=True, fparam=fp,
                                         aparam=ap[:, real])
    for k, (g, w) in enumerate(zip(got, want)):
        if k in (1, 3, 4):   # per-atom
            assert not g[0, ~real].any()
            g = g[:, real]
        assert _rel(g, w) <= REL64


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_frames_of_no_real_atoms_of_a_model_with_atomic_parameters(device):
    """DeePMD-kit 3.2 evaluates a frame of zero atoms, or of virtual atoms only, of an aparam model
    to zeros (its aparam has no rows).  numdp stopped with 'give aparam' on both devices."""
    dp = DeepPot(MODELS / "aparam.pth", device=device, threads=1)
    e, f, v, ae, av = dp.eval(np.zeros((2, 0)), REF["box"], np.zeros(0, int), atomic=True,
                              aparam=np.zeros((2, 0)))
    assert (e.shape, f.shape, v.shape, ae.shape, av.shape) == ((2, 1), (2, 0, 3), (2, 9), (2, 0, 1), (2, 0, 9))
    assert not e.any() and not v.any()
    pos, at, ap, real = _padded_frame()
    types = np.stack([at, np.full_like(at, -1)])    # frame 1: virtual atoms only
    e, f, v = dp.eval(np.concatenate([pos, pos]), REF["box"], types, mixed_type=True,
                      aparam=np.concatenate([ap, ap]))
    assert e[1, 0] == 0.0 and not f[1].any() and not v[1].any()
    alone = dp.eval(pos[:, real], REF["box"][0], at[real], aparam=ap[:, real])
    assert e[0, 0] == alone[0][0, 0] and np.array_equal(f[0][real], alone[1][0])


def test_padded_data_through_numdp_test_and_an_ensemble_on_the_device(tmp_path):
    """tests/data/mixed_pad through `numdp test --device cuda` (every figure as the CPU's, REL64),
    and an ensemble of device models (two sharing one descriptor: compute_device_ensemble) on each
    padded frame as on the CPU (numdp model-devi --device cuda: tests/test_cuda_commands.py)."""
    figures = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.json"
        assert main(["test", "-m", str(MODELS / "gelu_relu.dp"), "-s", str(PADDED), "--json", str(out),
                     "--device", device, "--threads", "1"]) == 0
        figures[device] = json.loads(out.read_text())["overall"]
    numbers = [k for k, v in figures["cpu"].items() if isinstance(v, float)]
    assert len(numbers) >= 8
    for k in numbers:
        assert figures["cuda"][k] == pytest.approx(figures["cpu"][k], rel=REL64, abs=0), k
    names = ("gelu_relu.dp", "softplus_sigmoid.dp", "gelu_relu.dp")
    models = {d: [numdp.load_model(MODELS / n, device=d, nthreads=1) for n in names] for d in ("cpu", "cuda")}
    s = load_system(PADDED)
    types = s.frame_model_types(models["cpu"][0].type_map)
    assert (types < 0).any(axis=1).sum() == 2
    for f in range(s.nframes):
        want = evaluate_ensemble(models["cpu"], s.coords[f], types[f], s.boxes[f])
        got = evaluate_ensemble(models["cuda"], s.coords[f], types[f], s.boxes[f])
        for g, w in zip(got, want):
            assert g.energy == pytest.approx(w.energy, rel=REL64, abs=0)
            assert _rel(g.forces, w.forces) <= REL64 and _rel(g.virial, w.virial) <= REL64
            assert not g.forces[types[f] < 0].any()


def _numdp_run(folder: Path, *args: str) -> int:
    """`numdp run md.toml --threads 1 ARGS` in `folder`; its exit status."""
    here = os.getcwd()
    try:
        os.chdir(folder)
        return main(["run", "md.toml", "--threads", "1", *args])
    finally:
        os.chdir(here)


# -- 3. the H5MD pressure tensor and virial of a device run ------------------------------------------

def test_h5md_pressure_tensor_and_virial_of_a_device_npt_run(tmp_path):
    """An MTK NPT run on the device (the cell moves: the tensor needs the synced cell, velocities and
    virial of the very step): each frame's virial is the CPU model's at the frame's stored positions
    and cell (REL64), and its pressure tensor is (kinetic tensor of the stored velocities + virial)
    / volume, to the round-off of those few operations."""
    import h5py

    toml = make_run(tmp_path, "cuda", md=MTK_NPT, steps=3, every=1)
    assert _numdp_run(tmp_path) == 0
    cpu = numdp.load_model(toml.parent / "model.h5", nthreads=1)
    with h5py.File(tmp_path / "traj.h5md", "r") as f:
        g, obs = f["particles/trajectory"], f["observables"]
        steps = g["position/step"][()]
        x, v, box = g["position/value"][()], g["velocity/value"][()], g["box/edges/value"][()]
        types, mass = g["species"][()], g["mass"][()]
        p, w, vol = obs["pressure_tensor/value"][()], obs["virial/value"][()], obs["volume/value"][()]
    assert steps.tolist() == [0, 1, 2, 3]
    assert np.abs(box[-1] - box[0]).max() > 0   # the cell moved
    for k in range(len(steps)):
        r = cpu.evaluate(x[k], types[k] if types.ndim == 2 else types, box[k], atom_virial=False)
        assert _rel(w[k], r.virial) <= REL64, steps[k]
        expect = (kinetic_tensor(v[k], mass[k] if mass.ndim == 2 else mass) + w[k]) / vol[k] * EV_PER_A3_TO_BAR
        assert np.abs(p[k] - expect).max() <= 50 * U64 * np.abs(p[k]).max()


# -- 4. a closed stdout and a SIGTERM during the last step of a device run ---------------------------

STEPS = 4


def _state(path: Path) -> dict:
    return to_arrays(read_checkpoint(path))


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """The uninterrupted device run (NVE, STEPS steps, a frame every 2, a thermo line every step)."""
    toml = make_run(tmp_path_factory.mktemp("whole"), "cuda", steps=STEPS, every=2)
    toml.write_text(toml.read_text().replace("thermo_every = 50", "thermo_every = 1"))
    assert _numdp_run(toml.parent) == 0
    return toml.parent


def test_sigterm_during_the_last_device_step_completes_the_run(whole, tmp_path, monkeypatch, capfd):
    """SIGTERM after step STEPS - 1's report: the check after the last step sees it; the run ends
    complete with status 143, its final checkpoint and trajectory the uninterrupted run's bit for bit."""
    folder = tmp_path / "run"
    shutil.copytree(whole, folder, ignore=shutil.ignore_patterns("*.h5md", "ck.h5", "log.txt"))

    class Signalling(loop.Progress):
        def update(self, now: int) -> None:
            super().update(now)
            if now == STEPS - 1:
                os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(loop, "Progress", Signalling)
    assert _numdp_run(folder) == 128 + signal.SIGTERM
    out, err = capfd.readouterr()
    assert f"SIGTERM received during the last step: the run is complete (step {STEPS})" in err
    a, b = _state(whole / "ck.h5"), _state(folder / "ck.h5")
    assert int(b["step"]) == STEPS and a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    fa, fb = frames(whole), frames(folder)
    for key in fa:
        assert np.array_equal(fa[key], fb[key]), key


class _ClosingStdout(io.StringIO):
    """stdout whose reader leaves after the thermo line of step 1: later writes raise BrokenPipeError."""

    def write(self, text: str) -> int:
        if any(line.split()[:1] == ["1"] for line in self.getvalue().splitlines()):
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(text)


def test_closed_stdout_stops_a_device_run_with_a_checkpoint_both_devices_continue(whole, tmp_path, monkeypatch,
                                                                                capfd):
    """The device run's stdout closes during step 2's report: the run stops after the next step's check
    with status 141 and a checkpoint; continued on the device it ends on the uninterrupted run's
    final state bit for bit, on the CPU within test_mpi's same_run_bounds (position) and
    test_cuda_md's velocity bound."""
    folder = tmp_path / "run"
    shutil.copytree(whole, folder, ignore=shutil.ignore_patterns("*.h5md", "ck.h5", "log.txt"))
    monkeypatch.setattr(signals, "_stdout_closed", False)   # restored when the test ends
    monkeypatch.setattr(sys, "stdout", _ClosingStdout())
    assert _numdp_run(folder) == 141
    _, err = capfd.readouterr()
    assert "stdout closed (its reader exited): interrupted after step 3; checkpoint written to" in err
    assert int(_state(folder / "ck.h5")["step"]) == 3
    monkeypatch.undo()
    monkeypatch.setattr(signals, "_stdout_closed", False)
    bound = same_run_bounds(frames(whole), U64)[0][-1], thermostatted_velocity_bound(frames(whole))[-1]
    want = _state(whole / "ck.h5")
    for device in ("cuda", "cpu"):
        cont = tmp_path / device
        shutil.copytree(folder, cont)
        toml = cont / "md.toml"
        toml.write_text(toml.read_text().replace('device = "cuda"', f'device = "{device}"'))
        assert _numdp_run(cont, "--restart", "ck.h5") == 0
        got = _state(cont / "ck.h5")
        assert int(got["step"]) == STEPS
        if device == "cuda":
            assert all(np.array_equal(got[k], want[k]) for k in want)
        else:
            assert np.abs(got["positions"] - want["positions"]).max() <= bound[0]
            assert np.abs(got["velocities"] - want["velocities"]).max() <= bound[1]
