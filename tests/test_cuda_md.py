"""MD with the step on the GPU ([model] device = "cuda", numdp.md.device) against the CPU run.

Under Numba's CUDA simulator (tests/conftest.py) unless NUMDP_TEST_REAL_GPU=1.  The system is the
rocksalt crystal of tests/test_mpi.py (2 x 1 x 1 cells, 16 atoms, tilted cell, random model), run
for 4-5 GPU steps (a force call on the device costs ~3 s in the simulator): a GPU run and a CPU run
of the same input differ only in the order of their sums (device reductions, gathers, the
neighbour fold), so they agree within test_mpi's `same_run_bounds` (derived there from the
round-off of double arithmetic and the dynamics' growth), and the Langevin run draws the same
Philox numbers on both devices.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba_cuda")

from numdp.config import load_run_settings  # noqa: E402
from numdp.errors import InputError  # noqa: E402
from numdp.io.h5md import read_checkpoint  # noqa: E402
from numdp.io.model_file import read_model, write_model  # noqa: E402
from numdp.io.structure import write_extxyz  # noqa: E402
from numdp.md.device import check_device_run  # noqa: E402
from numdp.md.setup import run_md  # noqa: E402
from numdp.model.dp_model import DPModel  # noqa: E402
from numdp.parallel.world import World  # noqa: E402
from randmodel import random_params  # noqa: E402
from numdp.system import to_arrays  # noqa: E402
from numdp.units import MVV2E  # noqa: E402
from test_mpi import DT, INPUT, MASS_MIN, U32, U64, frames, rocksalt, same_run_bounds  # noqa: E402

LANGEVIN = 'ensemble = "nvt"\nthermostat = { kind = "langevin", temperature = 20.0, tau = 0.05 }\nseed = 11'


def make_run(path: Path, device: str, md: str = "", steps: int = 10, every: int = 5, skin: float = 0.5) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    write_model(random_params(ntypes=2, sel=[14, 14], neuron=(4,), axis_neuron=2, fitting=(8,), rcut=2.9,
                              rcut_smth=1.0, seed=2), path / "model.h5")
    x, t, box = rocksalt((2, 1, 1))
    write_extxyz(path / "start.xyz", [["A", "B"][i] for i in t], x, box)
    text = INPUT.format(steps=steps, every=every, md=md, extra="")
    # every run ends with a checkpoint (ck.h5), which the restarts below continue from
    text = text.replace("skin = 1.0", f"skin = {skin}").replace("checkpoint_every = 0", 'checkpoint = "ck.h5"')
    text = text.replace('file = "model.h5"', f'file = "model.h5"\ndevice = "{device}"')
    (path / "md.toml").write_text(text)
    return path / "md.toml"


def run(toml: Path, restart=None):
    settings = load_run_settings(toml)
    model = DPModel(read_model(toml.parent / "model.h5"), nthreads=1, device=settings.model.device)
    return run_md(settings, restart=restart, model=model, screen=io.StringIO())


def assert_close_runs(a, b, what):
    """Positions, velocities, forces and energies of every frame within same_run_bounds (double)."""
    assert np.array_equal(a["step"], b["step"])
    pos, force, energy = same_run_bounds(a, U64)
    for name, got, bound in (("position", np.abs(a["position"] - b["position"]).max(axis=(1, 2)), pos),
                             ("force", np.abs(a["force"] - b["force"]).max(axis=(1, 2)), force),
                             ("pe", np.abs(a["pe"] - b["pe"]), energy)):
        bound = np.broadcast_to(bound, got.shape)
        bad = np.flatnonzero(got > bound)
        assert bad.size == 0, f"{what}: {name} differs by {got[bad[0]]:.3g} > {bound[bad[0]]:.3g}"
    # the runs moved: a device that did nothing (or only forces) would fail the position bound
    assert np.abs(a["position"][-1] - a["position"][0]).max() > 1e3 * pos[-1]


def thermostatted_velocity_bound(a: dict) -> np.ndarray:
    """Per-frame bound on the velocity difference of two thermostatted runs of one start (frames
    `a` of one of them): the per-frame force bound of same_run_bounds acting for t on the lightest
    mass, plus the rounding of each step's kicks, thermostat updates and momentum removals (a few
    u |v| each: 10 u per step); a different random number would change them by the thermal scale,
    ~|v|."""
    _, force, _ = same_run_bounds(a, U64)
    t = (a["step"] - a["step"][0]) * DT
    return force * t / (MASS_MIN * MVV2E) + 10 * (a["step"] + 8) * U64 * np.abs(a["velocity"]).max()


def assert_restart_continues_bit_for_bit(part_dir: Path, whole: Path, md: str, kw: dict) -> None:
    """The GPU run of `whole`'s input stopped at step 2 and restarted on the GPU from its
    checkpoint repeats the uninterrupted run `whole` bit for bit: frames and final checkpoint."""
    part = make_run(part_dir, "cuda", md, **{**kw, "steps": 2})
    run(part)
    make_run(part_dir, "cuda", md, **kw)
    run(part, restart=part.parent / "ck.h5")
    fw, fp = frames(whole.parent), frames(part.parent)
    for key in fw:
        assert np.array_equal(fw[key], fp[key]), key
    cw = to_arrays(read_checkpoint(whole.parent / "ck.h5"))
    cp = to_arrays(read_checkpoint(part.parent / "ck.h5"))
    assert cw.keys() == cp.keys() and int(cw["step"]) == kw["steps"]
    for key in cw:
        assert np.array_equal(cw[key], cp[key]), key


def test_gpu_nve_run_equals_cpu_run_and_restarts_bit_for_bit(tmp_path):
    """NVE on the GPU for 4 steps equals the CPU run to round-off, with the same rebuilds (a skin
    of 0.005 A: the atoms move up to ~0.003 A per step at 20 K, so the skin test fires every few
    steps and the
    ghost shell is rebuilt on the device from moved positions); the same GPU run stopped at step
    2 and restarted on the GPU from its checkpoint (the device rebuilds the ghost shell from the
    checkpoint's record) repeats the uninterrupted one bit for bit: frames and checkpoints."""
    kw = {"steps": 4, "every": 2, "skin": 0.005}
    cpu = make_run(tmp_path / "cpu", "cpu", **kw)
    on_cpu = run(cpu)
    whole = make_run(tmp_path / "whole", "cuda", **kw)
    result = run(whole)
    assert result.steps == 4 and result.rebuilds == on_cpu.rebuilds > 1
    assert "device cuda" in (whole.parent / "log.txt").read_text()
    assert_close_runs(frames(cpu.parent), frames(whole.parent), "nve")
    assert_restart_continues_bit_for_bit(tmp_path / "part", whole, "", kw)


def test_langevin_checkpoints_move_between_devices(tmp_path):
    """CPU to step 5, its checkpoint continued on the GPU to step 10, that checkpoint (the device
    state copied to the host) continued on the CPU to step 15: every frame equals the CPU run of
    the whole input to round-off.  Langevin draws the same Philox numbers on both devices, so the
    velocities agree to round-off too, not only to the thermal scale."""
    full = make_run(tmp_path / "full", "cpu", LANGEVIN, steps=15)
    run(full)
    part = make_run(tmp_path / "part", "cpu", LANGEVIN, steps=5)
    run(part)
    make_run(tmp_path / "part", "cuda", LANGEVIN, steps=10)
    run(part, restart=part.parent / "ck.h5")
    ck = read_checkpoint(part.parent / "ck.h5")
    assert ck.step == 10 and ck.forces is not None and ck.neighbor["positions"].shape == ck.positions.shape
    make_run(tmp_path / "part", "cpu", LANGEVIN, steps=15)
    run(part, restart=part.parent / "ck.h5")
    a, b = frames(full.parent), frames(part.parent)
    assert_close_runs(a, b, "langevin")
    vbound = thermostatted_velocity_bound(a)
    got = np.abs(a["velocity"] - b["velocity"]).max(axis=(1, 2))
    assert (got <= vbound).all(), (got, vbound)
    log = (part.parent / "log.txt").read_text()
    assert "device cuda" in log and "restarted from" in log


def test_device_check_passes_every_gpu_run_and_refuses_unknown_devices(tmp_path):
    check_device_run("cuda", "npt", World(None), "md.toml")   # NPT runs on the GPU

    class TwoRanks:
        size = 2

    check_device_run("cuda", "nvt", TwoRanks(), "md.toml")   # one GPU per rank (test_cuda_mpi.py)
    check_device_run("cpu", "npt", TwoRanks(), "md.toml")   # nothing to check on the CPU
    toml = make_run(tmp_path, "gpu")
    with pytest.raises(InputError, match=r"\[model\] device.*'cpu', 'cuda'"):
        load_run_settings(toml)


@pytest.mark.skipif(os.environ.get("NUMDP_TEST_REAL_GPU") == "1", reason="a GPU is present")
def test_cli_device_cuda_without_gpu_exits_2(tmp_path):
    """`numdp run --device cuda` overrides [model] device = "cpu" and, with no GPU and the
    simulator off, stops with one line and exit status 2 before anything is written."""
    toml = make_run(tmp_path, "cpu")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    out = subprocess.run([sys.executable, "-m", "numdp.cli", "run", str(toml), "--device", "cuda"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert out.returncode == 2, out.stderr
    msg = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    assert len(msg) == 1 and "no usable NVIDIA GPU" in msg[0], msg
    assert not (tmp_path / "traj.h5md").exists()


# -- the device's velocity operations and half-steps against their CPU twins (cheap: no model) -------

def _state(n=40, seed=0):
    from numdp.system import State

    rng = np.random.default_rng(seed)
    return State(positions=rng.uniform(0, 10, (n, 3)), velocities=rng.normal(0, 2.0, (n, 3)),
                 types=rng.integers(0, 2, n).astype(np.int32), masses=rng.uniform(1.0, 30.0, n),
                 box=None, type_map=["A", "B"], ids=rng.permutation(n).astype(np.int64), step=7, seed=12345,
                 forces=rng.normal(0, 1.0, (n, 3)))


def _device(state):
    from numdp.backend import get_backend
    from numdp.md.device_state import DeviceState

    return DeviceState.upload(get_backend("cuda"), state)


@pytest.mark.parametrize("kind", ["langevin", "csvr", "nose-hoover"])
def test_thermostat_half_step_on_the_device_equals_the_cpu(kind):
    """Every thermostat's half-step through DeviceVelocities equals the host one to round-off
    (Langevin: the same Philox numbers per atom id; CSVR: the same host scalars from a device
    kinetic energy; the chain: its scalar maths compiled for the device, on a device kinetic energy
    (a GPU's exp may differ from the CPU's by an ulp or two per call, far below this bound)).  Bound: the device sums the same per-atom terms in another order
    (chains of at most n = 40 atoms x 5 terms), so the kinetic energy differs by a relative
    2 gamma_n (no cancellation: all terms >= 0), which the scaling factors and the scaled
    velocities inherit; the momentum sums do cancel (Σ m v ~ 0), so the removed centre-of-mass
    velocity differs by up to gamma_n Σ m |v| / Σ m <= gamma_n max|v|; order_bound(u, n,
    cancel=10) covers both, relative to max|v|, over the three half-steps.  The
    Ornstein-Uhlenbeck update is the same arithmetic per atom on both devices."""
    from numdp.md.device import DeviceVelocities
    from numdp.md.thermostats import THERMOSTATS, NoseHooverChain
    from tests_util import order_bound

    cls = THERMOSTATS[kind]
    host = _state()
    dev_state = _state()
    dev = _device(dev_state)
    a = cls(300.0, 0.05, 3) if cls is NoseHooverChain else cls(300.0, 0.05)
    b = cls(300.0, 0.05, 3) if cls is NoseHooverChain else cls(300.0, 0.05)
    b.ops = DeviceVelocities(dev)
    for th, st in ((a, host), (b, dev_state)):
        th.initialize(st)
        for stream in (2, 3, 2):
            th.half_step(st, 0.0005, stream)
    dev.download(dev_state)
    bound = order_bound(2.0 ** -53, 40 * 5, cancel=10.0) * np.abs(host.velocities).max()
    assert np.abs(host.velocities - dev_state.velocities).max() <= bound
    assert np.abs(host.velocities - _state().velocities).max() > 1e6 * bound   # the thermostat acted
    for key in host.thermostat:
        np.testing.assert_allclose(dev_state.thermostat[key], host.thermostat[key], rtol=1e-12, atol=1e-15)


def test_nose_hoover_chain_on_several_ranks_runs_on_the_host():
    """With several ranks DeviceVelocities runs the chain on the host, from the kinetic energy
    summed by world.sum_global (a stand-in world of 2 ranks whose other rank holds no atoms, so
    that the global sum is this rank's): the chain's variables stay in state.thermostat and none
    goes to the device, and the result equals the one-rank device path's to the half-step test's
    bound.  With one rank the variables go to the device and the host copy is left as it was until
    a download."""
    from numdp.md.device import DeviceVelocities
    from numdp.md.thermostats import NoseHooverChain
    from tests_util import order_bound

    class TwoRanks(World):
        size = 2
        calls = 0

        def sum_global(self, value):
            TwoRanks.calls += 1
            return value

    results = []
    for world in (TwoRanks(None), World(None)):
        st = _state()
        dev = _device(st)
        th = NoseHooverChain(300.0, 0.05, 3)
        th.ops = DeviceVelocities(dev, world)
        assert th.ops.chain_on_device == (world.size == 1)
        th.initialize(st)
        for stream in (2, 3, 2):
            th.half_step(st, 0.0005, stream)
        if world.size == 1:
            assert set(dev.thermostat) == {"xi", "vxi"} and not st.thermostat["vxi"].any()
            dev.download(st)
        else:
            assert dev.thermostat == {} and TwoRanks.calls == 3 and st.thermostat["vxi"].all()
            dev.download(st)
        results.append(st)
    bound = order_bound(2.0 ** -53, 40 * 5, cancel=10.0) * np.abs(results[0].velocities).max()
    assert np.abs(results[0].velocities - results[1].velocities).max() <= bound
    for key in ("xi", "vxi"):
        np.testing.assert_allclose(results[0].thermostat[key], results[1].thermostat[key], rtol=1e-12, atol=1e-15)


def test_kick_drift_and_reductions_equal_their_cpu_twins():
    """kick and drift do the CPU kernels' arithmetic per atom (bit for bit); the kinetic energy
    tree sum is deterministic and equals NumPy's sum to round-off."""
    from numdp.kernels.cpu.md import drift, kick
    from numdp.md.device import DeviceVelocities
    from numdp.system import kinetic_energy

    host = _state()
    dev_state = _state()
    dev = _device(dev_state)
    kick(host.velocities, host.forces, host.masses, 0.0005)
    drift(host.positions, host.velocities, 0.001)
    from numdp.kernels.cuda import launch, md

    md.kick[launch.grid(40)](dev.velocities, dev.forces, dev.masses, 0.0005)
    md.drift[launch.grid(40)](dev.positions, dev.velocities, 0.001)
    dev.download(dev_state)
    assert np.array_equal(host.velocities, dev_state.velocities)
    assert np.array_equal(host.positions, dev_state.positions)
    ops = DeviceVelocities(dev)
    k1, k2 = ops.kinetic_energy(dev_state), ops.kinetic_energy(dev_state)
    assert k1 == k2
    assert abs(k1 - kinetic_energy(host.velocities, host.masses)) <= 1e-13 * k1


def test_device_safety_names_the_atom_with_a_non_finite_velocity_or_force():
    """The device reductions find the first bad row; the state is copied to the host to name it."""
    from numdp.md.device import DeviceSafetyMonitor

    st = _state()
    dev = _device(st)
    dev.velocities[17, 1] = np.nan   # NumPy arrays under the simulator; CuPy on a GPU
    monitor = DeviceSafetyMonitor(0.0, 1.0, dev)
    assert monitor.nonfinite_velocity_atom(st) == 17
    assert np.isnan(st.velocities[17, 1])     # copied to the host to name it

    from numdp.md.device_forces import DeviceForceProvider

    class Potential:   # what the provider reads before any force call
        rcut = 3.0
        sel = [8, 8]
        type_map = ["A", "B"]

    st = _state()
    dev = _device(st)
    provider = DeviceForceProvider(Potential(), 0.5, dev)
    assert provider.nonfinite_force_atom(st) == -1
    dev.forces[5, 2] = np.inf
    dev.forces[30, 0] = np.nan
    assert provider.nonfinite_force_atom(st) == 5
    assert np.isinf(st.forces[5, 2])
    st.potential_energy = -1.0
    problem = monitor.local_problem(st, provider)
    assert problem.startswith(f"step 7: atom {st.ids[5]} (") and "has a non-finite force" in problem

    # in a run the force call's completion reads both results with the step's totals
    # (DeviceState.nonfinite, for that step): the checks of that step then read nothing more, and
    # copy the state only to name the atom; a record of another step is not used
    from numdp.kernels.cuda.opcount import OpCounter

    st = _state()
    dev = _device(st)
    dev.velocities[9, 0] = -np.inf
    provider = DeviceForceProvider(Potential(), 0.5, dev)
    dev.nonfinite = (st.step, *provider._first_nonfinite(dev.be.to_host(provider._nonfinite_records())))
    assert dev.nonfinite == (7, -1, 9)
    counter = OpCounter()
    with counter.counting():
        assert provider.nonfinite_force_atom(st) == -1
        assert counter.to_host == 0 and np.isfinite(st.velocities).all()     # nothing read or copied
        assert DeviceSafetyMonitor(0.0, 1.0, dev).nonfinite_velocity_atom(st) == 9
    assert np.isinf(st.velocities[9, 0])
    dev.nonfinite = (6, -1, -1)
    assert DeviceSafetyMonitor(0.0, 1.0, dev).nonfinite_velocity_atom(st) == 9


def make_devi_run(folder: Path, device: str, devi_extra: str = "") -> Path:
    """make_run with a 3-model ensemble (model 2 with another sel) and [model_devi] every 2,
    atomic (and the lines `devi_extra`); 4 steps."""
    toml = make_run(folder, device, steps=4, every=2)
    for k, sel in ((1, [14, 14]), (2, [12, 16])):
        write_model(random_params(ntypes=2, sel=sel, neuron=(4,), axis_neuron=2, fitting=(8,), rcut=2.9,
                                  rcut_smth=1.0, seed=2 + k), toml.parent / f"m{k}.h5")
    text = toml.read_text().replace('file = "model.h5"', 'file = ["model.h5", "m1.h5", "m2.h5"]', 1)
    toml.write_text(text + '\n[model_devi]\nevery = 2\natomic = true\n' + devi_extra)
    return toml


def assert_devi_rows_close(cpu: Path, other: Path, u_devi: float = U64) -> None:
    """The model_devi rows of the runs in `other` and the CPU run in `cpu` (make_devi_run) agree.
    The runs differ by the order of their sums: model 0's frames within same_run_bounds (force
    bound `force`, position bound `pos`), the other models' forces within `force` scaled by their
    largest |F| over model 0's (the bound of arithmetic of round-off u_devi: U32 for mix32
    deviation models); a force deviation (a seminorm of the models' forces) moves by at most
    that, a virial per atom by NNEI (rcut dF + |F| dx); printed values by 5e-7 relative each."""
    from test_md_deviation import read_devi

    one, two = read_devi(cpu), read_devi(other)
    assert one[0] == two[0]
    one, two = one[1], two[1]
    assert np.array_equal(one[:, 0], [0, 2, 4]) and np.array_equal(two[:, 0], one[:, 0])
    traj = frames(cpu)
    pos, force, _ = same_run_bounds(traj, U64)
    force = max(force, same_run_bounds(traj, u_devi)[1])
    fmax0 = np.abs(traj["force"]).max()
    types = np.tile([0, 0, 0, 0, 1, 1, 1, 1], traj["position"].shape[1] // 8)   # rocksalt()
    models = [DPModel(read_model(cpu / f"m{k}.h5"), nthreads=1) for k in (1, 2)]
    fall = max([fmax0] + [np.abs(m.evaluate(p, types, b).forces).max()
                          for p, b in zip(traj["position"], traj["box"]) for m in models])
    df = force * fall / fmax0
    dv = 28 * (2.9 * df + fall * pos)
    bound = 2 * 5e-7 * np.abs(one[:, 1:]) + np.column_stack([dv] * 3 + [np.full_like(dv, df)] * (one.shape[1] - 4))
    assert np.all(np.abs(one[:, 1:] - two[:, 1:]) <= bound), np.abs(one[:, 1:] - two[:, 1:]).max()
    assert one[-1, 4] > 1e-3   # the models disagree: the comparison is not of zeros


@pytest.fixture(scope="module")
def devi_runs(tmp_path_factory):
    """make_devi_run's input run once on the CPU and once on the GPU (whole list, kept search
    arrays: the defaults) for the tests that only read the two runs' outputs: (folder holding
    cpu/ and cuda/, the GPU run's force providers)."""
    root = tmp_path_factory.mktemp("devi")
    run(make_devi_run(root / "cpu", "cpu"))
    with pytest.MonkeyPatch.context() as mp:
        providers = _providers(mp)
        run(make_devi_run(root / "cuda", "cuda"))
    return root, providers


def test_gpu_model_deviation_equals_cpu(devi_runs):
    """[model_devi] on the device (models 1 and 2 evaluated on the device provider's extended atoms,
    model 2 with another sel, so a second list is formed on the device) gives the CPU run's rows."""
    root, _ = devi_runs
    assert_devi_rows_close(root / "cpu", root / "cuda")


def test_gpu_mix32_deviation_models_equal_cpu(tmp_path):
    """[model_devi] precision = "mix32" on the device: models 1 and 2 in mix32 beside model 0 in
    double give the CPU run's rows (within float32 round-off for the deviation models)."""
    for device in ("cpu", "cuda"):
        toml = make_devi_run(tmp_path / device, device, 'precision = "mix32"\n')
        settings = load_run_settings(toml)
        screen = io.StringIO()
        run_md(settings, model=DPModel(read_model(toml.parent / "model.h5"), nthreads=1, device=device),
               screen=screen)
        assert "models 1-2 in mix32" in screen.getvalue()
    assert_devi_rows_close(tmp_path / "cpu", tmp_path / "cuda", u_devi=U32)


# -- NPT: the stochastic cell-rescaling barostat with its per-atom work on the device ---------------

NPT = ('ensemble = "npt"\nthermostat = {{ kind = "csvr", temperature = 20.0, tau = 0.05 }}\nseed = 11\n'
       'barostat = {{ pressure = 1000.0, tau = 0.2, coupling = "{coupling}", compressibility = 1e-3 }}')


@pytest.mark.parametrize("coupling", ["isotropic", "anisotropic", "triclinic"])
def test_barostat_step_on_the_device_equals_the_cpu(coupling):
    """Three barostat steps through DeviceVelocities (the kinetic tensor as a device tree sum,
    positions and velocities moved by one device kernel) equal the host ones to round-off, for
    every coupling.  Bound: the device sums the n = 40 per-atom products (v_a m) v_b in another
    order than the host's matrix product, so the kinetic tensor differs by gamma_n of Σ |m v_a v_b|
    (<= the trace: order_bound with cancel = 10 covers the off-diagonal cancellation); the pressure
    tensor, the cell move and the scaled rows inherit that relative error, times the drift's
    sensitivity (beta dt / tau * P_kin ~ 1e-3 here, well below 1), relative to max|x| and max|v|.
    The per-atom transform is the same arithmetic on both devices."""
    from numdp.md.barostat import StochasticCellRescaling
    from numdp.md.device import DeviceVelocities
    from tests_util import order_bound

    box = np.array([[10.0, 0.0, 0.0], [1.0, 9.0, 0.0], [-2.0, 1.5, 11.0]])
    host, dev_state = _state(), _state()
    for st in (host, dev_state):
        st.box = box.copy()
        st.virial = np.array([[0.3, 0.05, -0.02], [0.05, -0.1, 0.01], [-0.02, 0.01, 0.2]])
    dev = _device(dev_state)
    a = StochasticCellRescaling(1000.0, 0.2, 1e-3, coupling, 300.0)
    b = StochasticCellRescaling(1000.0, 0.2, 1e-3, coupling, 300.0)
    b.ops = DeviceVelocities(dev)
    for baro, st in ((a, host), (b, dev_state)):
        baro.initialize(st)
        for step in range(3):
            st.step = 7 + step
            baro.step(st, 0.002)
    dev.download(dev_state)
    rel = 3 * order_bound(2.0 ** -53, 40 * 9, cancel=10.0)
    assert np.abs(host.box - dev_state.box).max() <= rel * np.abs(box).max()
    assert np.abs(host.positions - dev_state.positions).max() <= rel * np.abs(host.positions).max()
    assert np.abs(host.velocities - dev_state.velocities).max() <= rel * np.abs(host.velocities).max()
    # the cell moved, and the atoms with it, by far more than the bound
    assert np.abs(host.box - box).max() > 1e6 * rel * np.abs(box).max()
    assert np.abs(host.positions - _state().positions).max() > 1e6 * rel * np.abs(host.positions).max()
    if coupling == "triclinic":   # the shear moved too (tilt factors are driven by the off-diagonal stress)
        shear = host.box / np.diag(host.box)[None, :] - box / np.diag(box)[None, :]
        assert np.abs(np.tril(shear, -1)).max() > 1e6 * rel


def test_gpu_npt_run_equals_cpu_run_and_restarts_bit_for_bit(tmp_path):
    """NPT (CSVR + triclinic stochastic cell rescaling) on the GPU for 4 steps equals the CPU run
    to round-off (positions, cell, forces, energies within test_mpi's same_run_bounds: the runs
    differ only in the order of their sums, and the cell follows from the same virial and a
    kinetic tensor summed in another order); the GPU run stopped at step 2 and restarted on the GPU
    from its checkpoint repeats the uninterrupted one bit for bit (frames and checkpoint)."""
    md = NPT.format(coupling="triclinic")
    kw = {"steps": 4, "every": 2}
    _, whole = assert_npt_runs_agree(tmp_path, md, kw, "npt")
    assert_restart_continues_bit_for_bit(tmp_path / "part", whole, md, kw)


def assert_npt_runs_agree(tmp_path, md: str, kw: dict, what: str) -> tuple[Path, Path]:
    """The CPU and the GPU run of `md` (make_run's keywords `kw`) within same_run_bounds, and the
    cell moved by far more than the bound; returns their inputs (cpu, gpu)."""
    from test_mpi import assert_same_run

    cpu = make_run(tmp_path / "cpu", "cpu", md, **kw)
    run(cpu)
    gpu = make_run(tmp_path / "whole", "cuda", md, **kw)
    run(gpu)
    a, b = frames(cpu.parent), frames(gpu.parent)
    assert_same_run(a, b)
    assert_close_runs(a, b, what)
    pos = same_run_bounds(a, U64)[0]
    assert np.abs(a["box"][-1] - a["box"][0]).max() > 1e3 * pos[-1]     # the cell moved
    return cpu, gpu


# -- whole runs on a tiny cluster (3 atoms, sel [2, 1]: ~0.3 s per GPU step in the simulator) --------

CLUSTER = np.array([[0.0, 0.0, 0.0], [1.6, 0.2, 0.0], [0.3, 1.7, 0.1]])   # Å, types A B A: no cell
CSVR = 'ensemble = "nvt"\nthermostat = { kind = "csvr", temperature = 20.0, tau = 0.05 }\nseed = 11'
NHC = 'ensemble = "nvt"\nthermostat = { kind = "nose-hoover", temperature = 20.0, tau = 0.05 }'
# ramped targets (numdp.md.ramp): the device gets the step's kT and chain masses at every half-step
CSVR_RAMP = CSVR.replace("temperature = 20.0", "temperature = [20.0, 200.0]")
NHC_RAMP = NHC.replace("temperature = 20.0", "temperature = [20.0, 200.0]")


def make_cluster(path: Path, device: str, md: str = "", steps: int = 10, every: int = 5, skin: float = 0.5,
                 velocities=None, safety: str = "", timestep: float = DT) -> Path:
    """make_run's input on a non-periodic 3-atom cluster with a model of sel [2, 1] (no overflow);
    `velocities` (3, 3) Å/ps replace the input's 20 K draw.  The random model (seed 6) keeps the
    three atoms 1.45-3.4 A apart, interacting, for 200 steps of 0.0002 ps."""
    toml = make_run(path, device, md, steps=steps, every=every, skin=skin)
    write_model(random_params(ntypes=2, sel=[2, 1], neuron=(4,), axis_neuron=2, fitting=(8,), rcut=2.9,
                              rcut_smth=1.0, seed=6), path / "model.h5")
    write_extxyz(path / "start.xyz", ["A", "B", "A"], CLUSTER, None, velocities)
    text = toml.read_text().replace(f"timestep = {DT}", f"timestep = {timestep}")
    if velocities is not None:
        text = text.replace("velocities = { temperature = 20.0, seed = 3 }\n", "")
    toml.write_text(text + safety)
    return toml


def cluster_frames(path: Path) -> dict:
    """test_mpi.frames without the cell (a cluster has none)."""
    import h5py

    with h5py.File(path / "traj.h5md", "r") as f:
        g = f["particles/trajectory"]
        return {"step": g["position/step"][()], "position": g["position/value"][()],
                "velocity": g["velocity/value"][()], "force": g["force/value"][()],
                "pe": f["observables/potential_energy/value"][()]}


MTK_NPT = ('ensemble = "npt"\nthermostat = { kind = "nose-hoover", temperature = 20.0, tau = 0.05 }\n'
           'barostat = { kind = "mtk", pressure = 1000.0, tau = 0.05, coupling = "triclinic" }')
MTK_NPH = ('ensemble = "nph"\nbarostat = { kind = "mtk", pressure = 1000.0, tau = 0.05, coupling = "triclinic", '
           'chain = 0, temperature = 20.0 }')
# LAMMPS' form of both (what numdp lmp runs for fix npt: one chain pass, 1/(3N), remap's tilts)
MTK_NPT_LAMMPS = MTK_NPT.replace(' }', ', form = "lammps" }')


@pytest.mark.parametrize("md", [MTK_NPT, MTK_NPH, MTK_NPT_LAMMPS], ids=["npt", "nph", "npt-lammps-form"])
def test_gpu_mtk_npt_run_equals_cpu_run(tmp_path, md):
    """The Martyna-Tobias-Klein barostat (triclinic; NPT with a Nosé-Hoover chain on the atoms, or
    NPH without a thermostat nor a chain) on the GPU for 3 steps equals the CPU run within
    same_run_bounds: its per-atom work goes through DeviceVelocities (the kinetic tensor as a
    device tree sum, the velocity and cell maps as device kernels), its few scalars stay on the
    host, and the force call completes before the step's second half, which needs its virial
    (numdp.md.device.DeviceVelocityVerlet.step).  Its variables reach the checkpoint as on the
    CPU."""
    cpu, gpu = assert_npt_runs_agree(tmp_path, md, {"steps": 3, "every": 1}, "mtk")
    pos = same_run_bounds(frames(cpu.parent), U64)[0]
    ca, cb = read_checkpoint(cpu.parent / "ck.h5"), read_checkpoint(gpu.parent / "ck.h5")
    # the cell moves by box·(ν dt) a step, so two runs whose cells agree within pos (each step's,
    # checked above) have strain rates within 2 pos / (shortest cell edge · dt)
    dnu = np.abs(ca.barostat["nu"] - cb.barostat["nu"]).max()
    assert dnu <= 2 * pos[-1] / (np.linalg.norm(ca.box, axis=1).min() * DT)
    assert np.abs(ca.barostat["nu"]).max() > 1e3 * dnu


def test_gpu_200_steps_equal_the_cpu_run(tmp_path):
    """Issue 14 item 2: 200 NVE steps in double on the GPU equal the CPU run: positions within
    1e-8 A and potential energies within 1e-10 relative.  Both follow from the derived
    same_run_bounds (test_mpi: the runs differ only in the order of their sums), which this
    asserts, and which lie below the issue's figures here (asserted too, so the issue's target
    is what is proven, not a looser one).  The timestep is 0.0002 ps, so that the random model's
    three atoms stay together (1.45-3.4 A) over the 200 steps; same_run_bounds counts time with
    test_mpi's DT = 0.001 ps, 5x longer, which only loosens it (it grows with t)."""
    kw = {"steps": 200, "every": 20, "timestep": 0.0002}
    cpu = make_cluster(tmp_path / "cpu", "cpu", **kw)
    run(cpu)
    gpu = make_cluster(tmp_path / "gpu", "cuda", **kw)
    run(gpu)
    a, b = cluster_frames(cpu.parent), cluster_frames(gpu.parent)
    assert a["step"][-1] == 200
    d = np.linalg.norm(a["position"][:, :, None] - a["position"][:, None, :], axis=-1)[:, [0, 0, 1], [1, 2, 2]]
    assert d.min() > 1.4 and d.max() < 3.5      # interacting (rcut 2.9 A) for the whole run
    assert_close_runs(a, b, "nve 200 steps")
    pos, _, energy = same_run_bounds(a, U64)
    assert (pos <= 1e-8).all() and (energy <= 1e-10 * np.abs(a["pe"])).all()
    assert np.abs(a["position"] - b["position"]).max() <= 1e-8
    assert (np.abs(a["pe"] - b["pe"]) <= 1e-10 * np.abs(a["pe"])).all()


@pytest.mark.parametrize("md", [CSVR, NHC, CSVR_RAMP, NHC_RAMP],
                         ids=["csvr", "nose-hoover", "csvr-ramp", "nose-hoover-ramp"])
def test_gpu_thermostatted_runs_equal_the_cpu_runs(tmp_path, md):
    """CSVR and the Nosé-Hoover chain as whole runs (10 steps) on the GPU against the CPU run, at a
    constant target and ramped 20 -> 200 K (the chain's masses change at every step: the device
    must use each step's, not the first ones it was given):
    positions, forces, energies within same_run_bounds, velocities within the bound of
    test_langevin_checkpoints_move_between_devices (the same scalar maths on device sums);
    NVE, Langevin and NPT whole runs are the tests above."""
    cpu = make_cluster(tmp_path / "cpu", "cpu", md)
    run(cpu)
    gpu = make_cluster(tmp_path / "gpu", "cuda", md)
    run(gpu)
    a, b = cluster_frames(cpu.parent), cluster_frames(gpu.parent)
    assert_close_runs(a, b, md)
    vbound = thermostatted_velocity_bound(a)
    assert (np.abs(a["velocity"] - b["velocity"]).max(axis=(1, 2)) <= vbound).all()


class PoisonedDevice(DPModel):
    """The device model with a nan in the energy or in one force of extended atom 1 (owned atom 1 of a
    cluster: its extended atoms are the owned ones, in order) from its `after`-th call on."""

    def __init__(self, params, what: str, after: int):
        super().__init__(params, nthreads=1, device="cuda")
        self.what, self.after, self.ncalls = what, after, 0

    def compute_device(self, ext_positions, nlist, types):
        energy, force, virial = super().compute_device(ext_positions, nlist, types)
        self.ncalls += 1
        if self.ncalls > self.after:
            (energy if self.what == "energy" else force)[1] = np.nan   # NumPy under the simulator
        return energy, force, virial


def _stop_message(toml, model=None):
    from numdp.md.safety import SafetyStop

    settings = load_run_settings(toml)
    model = model if model is not None else DPModel(read_model(toml.parent / "model.h5"), nthreads=1,
                                                    device=settings.model.device)
    with pytest.raises(SafetyStop) as exc:
        run_md(settings, model=model, screen=io.StringIO())
    return str(exc.value).split(";")[0]


@pytest.mark.skipif(os.environ.get("NUMDP_TEST_REAL_GPU") == "1", reason="poisons NumPy arrays")
def test_gpu_safety_stops_name_the_atoms_as_on_the_cpu(tmp_path):
    """The safety stops during a GPU run: a close contact, an atom moving more than the skin (one
    atom 900 A/ps fast, 630 A/ps once the run removes the centre-of-mass velocity: 0.63 A in a
    step of 0.001 ps, more than the 0.5 A skin; the others move 0.27 A), a non-finite
    energy and a non-finite force; the first two give the CPU run's message word for word (same
    step, same atoms, same distances to the printed digits), and every stop writes the state."""
    contact = "[safety]\nmin_distance = 1.7\n"     # the cluster's closest pair is 1.61 A apart
    msg = {d: _stop_message(make_cluster(tmp_path / f"c{d}", d, safety=contact)) for d in ("cpu", "cuda")}
    assert msg["cuda"] == msg["cpu"] and msg["cuda"].startswith("step 0: atoms 0 (A) and 1 (B) are 1.61")
    v = np.zeros((3, 3))
    v[2] = [0.0, 0.0, 900.0]
    fast = {d: _stop_message(make_cluster(tmp_path / f"f{d}", d, velocities=v,
                                          safety="[safety]\nmin_distance = 0.0\n")) for d in ("cpu", "cuda")}
    assert fast["cuda"] == fast["cpu"]
    assert fast["cuda"].startswith("step 1: atom 2 (A) moved 0.63")
    assert "more than the neighbour skin 0.5 A" in fast["cuda"]
    assert read_checkpoint(tmp_path / "fcuda" / "ck.stop.h5").step == 1
    for what, expected in (("energy", "step 2: the potential energy is nan"),
                           ("force", "step 2: atom 1 (B) has a non-finite force")):
        toml = make_cluster(tmp_path / what, "cuda", safety="[safety]\nmin_distance = 0.0\n")
        got = _stop_message(toml, PoisonedDevice(read_model(toml.parent / "model.h5"), what, after=2))
        assert got.startswith(expected), got
        assert read_checkpoint(tmp_path / what / "ck.stop.h5").step == 2


@pytest.mark.skipif(os.environ.get("NUMDP_TEST_REAL_GPU") == "1", reason="poisons NumPy arrays")
def test_a_non_finite_velocity_stops_the_step_that_made_it_on_both_devices(tmp_path, monkeypatch):
    """The velocity test sees the step's final velocities: on the GPU their non-finite records
    come in the totals copy, which DeviceVelocityVerlet.step completes after the second
    half-kick.  A nan put into atom 2's velocity by the second half-kick of step 2 (after the force
    call; positions, forces and energy stay finite) stops both runs at step 2 with the same line
    and step 2's stop checkpoint.  A check one phase later would see the nan only at step 3,
    after it moved the atom (a non-finite energy there)."""
    from numdp.io.h5md import read_checkpoint as read_ck
    from numdp.md.device import DeviceVelocityVerlet
    from numdp.md.integrator import VelocityVerlet

    first_half = []   # inside kick_drift (the CPU's calls kick_half)

    def poison_second_kick(cls):
        kick, kick_drift = cls.kick_half, cls.kick_drift

        def kick_half(self, state):
            kick(self, state)
            if state.step == 1 and not first_half:   # step 2's second half-kick
                v = self.dev.velocities if isinstance(self, DeviceVelocityVerlet) else state.velocities
                v[2, 1] = np.nan

        def kick_then_drift(self, state, h):
            first_half.append(True)
            try:
                kick_drift(self, state, h)
            finally:
                first_half.pop()

        monkeypatch.setattr(cls, "kick_half", kick_half)
        monkeypatch.setattr(cls, "kick_drift", kick_then_drift)

    poison_second_kick(VelocityVerlet)
    poison_second_kick(DeviceVelocityVerlet)
    msg = {d: _stop_message(make_cluster(tmp_path / d, d, safety="[safety]\nmin_distance = 0.0\n"))
           for d in ("cpu", "cuda")}
    assert msg["cuda"] == msg["cpu"] == "step 2: atom 2 (A) has a non-finite velocity"
    for d in ("cpu", "cuda"):
        ck = read_ck(tmp_path / d / "ck.stop.h5")
        assert ck.step == 2 and np.isnan(ck.velocities[2, 1]) and np.isfinite(ck.positions).all()


def per_step_counts(sim, end: int, measure) -> list[np.ndarray]:
    """Run `sim` (build_simulation's) to step `end`; for each step, `measure()` (numbers) after
    the step's safety check minus before the step (the setup's check not counted)."""
    counts = []
    step, check = sim.integrator.step, sim.safety.check

    def counted_step(state, forces):
        counts.append(np.asarray(measure()))
        step(state, forces)

    def counted_check(state, provider, interrupted=False):
        got = check(state, provider, interrupted)
        if counts:
            counts[-1] = np.asarray(measure()) - counts[-1]
        return got

    sim.integrator.step, sim.safety.check = counted_step, counted_check
    try:
        sim.run(end)
    finally:
        sim.close()
    return counts


def test_npt_step_reads_and_launches(tmp_path, kind="mtk", reads=7, kernels=48):
    """Host reads and kernel launches of a simulated GPU NPT step with the MTK barostat (the
    rocksalt cell, uncompressed model, Nosé-Hoover chain on the device, triclinic coupling; steps
    without a rebuild or output), counted by OpCounter: the rebuild test, the force call's totals,
    the model's occupied-slot count (one chunk), the kinetic tensor twice, and as its force call
    completes before the second kick (its second half needs the virial) the safety check's own
    reductions of the final forces and velocities (2 reads): 7 (c-rescale, with kind="c-rescale":
    4 reads and 42 launches, measured 2026-12-06)."""
    from numdp.kernels.cuda.opcount import OpCounter
    from numdp.md.setup import build_simulation

    md = ('ensemble = "npt"\nthermostat = { kind = "nose-hoover", temperature = 20.0, tau = 0.05 }\n'
          f'barostat = {{ kind = "{kind}", pressure = 1000.0, tau = 0.2, coupling = "triclinic" }}')
    toml = make_run(tmp_path, "cuda", md, steps=3, every=100)
    counter = OpCounter()
    with counter.counting():
        sim, end = build_simulation(load_run_settings(toml), screen=io.StringIO(),
                                    model=DPModel(read_model(toml.parent / "model.h5"), nthreads=1, device="cuda"))
        counts = per_step_counts(sim, end, lambda: (counter.to_host,
                                                    sum(c["kernel"] for c in counter.counts.values())))
    assert sim.provider.rebuilds == 1 and sim.state.step == 3
    assert [c.tolist() for c in counts] == [[reads, kernels]] * 3


@pytest.mark.parametrize("compressed", [False, True], ids=["uncompressed", "compressed"])
@pytest.mark.parametrize("md", ["", NHC], ids=["nve", "nose-hoover"])
def test_a_gpu_step_reads_the_device_twice(tmp_path, md, compressed):
    """Issue 14 (the host receives data only at output steps): a step without a rebuild or output
    on one GPU rank makes 2 synchronising copies to the host (OpCounter's to_host): the rebuild
    decision, and the force call's totals with the safety records (energy, virial, closest pair,
    first non-finite force and velocity, the list's statistics); the safety check reads nothing of
    its own, nor does the Nosé-Hoover chain.  An uncompressed model reads once more per chunk of
    centre atoms (one here): its nets' counts of occupied slots, which size their matrix products.
    3 steps of the cluster, output only at the start.  Kernel launches per step of the phases
    with one-block forms (numdp.kernels.cuda.md: up to ONE_BLOCK_ROWS atoms): the Nosé-Hoover
    chain 1 per half-step, the rebuild test 1, the safety records 1, the closest pair 2 (its
    per-centre records, then one tree launch), the reductions 1 (the energy's tree sum); and the
    neighbour list 4 (numdp.neighbor.device: up to ONE_BLOCK_SORT atoms): the extended positions,
    the counting sort into cells in one block, the list, its statistics.  A compressed model's
    array operations: its matrix products and one sort (outputs zeroed by its kernels).  The
    neighbour list allocates nothing in these steps: its arrays are kept with the rebuild's
    SearchPlan (numdp.neighbor.device.KEEP_SEARCH_BUFFERS), made by the setup's first call."""
    from numdp.kernels.cuda.opcount import OpCounter
    from numdp.md.setup import build_simulation
    from numdp.model.compress import compress

    toml = make_cluster(tmp_path, "cuda", md, steps=3, every=100)
    counter = OpCounter()
    phases = ("thermostat", "rebuild test", "safety", "closest pair", "reductions", "neighbour list")

    def launched():
        return np.array([counter.counts[p]["kernel"] for p in phases] + [counter.counts["model"]["array op"],
                                                                           counter.counts["neighbour list"]["alloc"]])
    with counter.counting():   # on before the run is built, so that its device arrays are seen
        settings = load_run_settings(toml)
        params = read_model(toml.parent / "model.h5")
        if compressed:
            params.min_nbor_dist = 1.0   # the cluster's atoms stay 1.45-3.4 A apart
            params = compress(params, dx=0.05)[0]
        model = DPModel(params, nthreads=1, device="cuda")
        sim, end = build_simulation(settings, model=model, screen=io.StringIO())
        counts = per_step_counts(sim, end, lambda: np.concatenate([[counter.to_host], launched()]))
    reads = [int(c[0]) for c in counts]
    kernels = [c[1:] for c in counts]
    assert sim.provider.rebuilds == 1 and sim.state.step == 3
    assert reads == [2, 2, 2] if compressed else [3, 3, 3]
    # the model's array operations (last): with 2 types and one hidden fitting layer, 3 products
    # per type, the virial's product and the reverse index's sort (compressed; the uncompressed
    # embedding adds its own)
    assert [k.tolist()[:-2] for k in kernels] == [[2 if md else 0, 1, 1, 2, 1, 4]] * 3, (phases, kernels)
    assert not compressed or [k[-2] for k in kernels] == [8] * 3, kernels
    assert [k[-1] for k in kernels] == [0] * 3, kernels   # the neighbour list's allocations


def test_a_collapsing_cell_stops_with_one_line_on_both_devices(tmp_path):
    """A barostat set far too soft (tau 0.01 ps, 30 kbar on a crystal at -6 kbar) shrinks the cell
    from 128 to 3.3 A^3 in its first step (39x, beyond numdp.md.barostat.MAX_STEP_FACTOR = 10);
    instead of failing later in the neighbour search (a bare SystemError from fill_candidates),
    the run stops with one line naming the step and both cells, the same on both devices (the
    cell maths runs on the host for either)."""
    from numdp.md.barostat import CellCollapse

    md = NPT.format(coupling="isotropic").replace("pressure = 1000.0, tau = 0.2", "pressure = 3e4, tau = 0.01")
    msg = {}
    for device in ("cpu", "cuda"):
        with pytest.raises(CellCollapse) as exc:
            run(make_run(tmp_path / device, device, md, steps=4, every=2))
        msg[device] = str(exc.value)
        assert "\n" not in msg[device]
        assert isinstance(exc.value, InputError)                # exit status 2 and one line in the CLI
    assert msg["cuda"] == msg["cpu"]
    assert msg["cpu"].startswith("step 1: the barostat moved the cell from volume 128 A^3 (lengths [8.")
    assert "to 3.25" in msg["cpu"] and "more than a factor 10" in msg["cpu"]
    from numdp.md.barostat import check_cell_move

    box = np.diag([8.0, 9.0, 10.0])
    check_cell_move(box, box * 2.0 ** (1 / 3), 5)           # twice the volume: allowed
    for bad in (box * np.nan, box * 0.0, box * 0.4, np.diag([8.0, 9.0, 101.0])):
        with pytest.raises(CellCollapse, match="^step 5: the barostat moved the cell"):
            check_cell_move(box, bad, 5)


def test_launch_counter_counts_kernels_and_copies_and_unpatches():
    """tools/bench_md.py --device cuda reports launches and copies per step from OpCounter:
    two kernel launches (their device functions not counted), one copy each way with its bytes;
    nothing is counted once the context has ended."""
    from numdp.backend import get_backend
    from numdp.kernels.cuda import launch, md
    from numdp.kernels.cuda.opcount import OpCounter

    be = get_backend("cuda")
    st = _state()
    dev = _device(st)
    counter = OpCounter()
    with counter.counting():
        md.kick[launch.grid(40)](dev.velocities, dev.forces, dev.masses, 0.0005)
        md.langevin_update[launch.grid(40)](dev.velocities, dev.masses, dev.ids, 0.9, 0.02, np.int64(1),
                                            np.int64(2), np.int64(3))   # calls the Philox device functions
        box = be.to_device(np.eye(3))
        be.to_host(dev.velocities)
    assert (counter.launches, counter.to_device, counter.to_host) == (2, 1, 1)
    assert (counter.bytes_to_device, counter.bytes_to_host) == (72, 40 * 3 * 8)
    md.kick[launch.grid(40)](dev.velocities, dev.forces, dev.masses, 0.0005)
    be.to_host(box)
    assert (counter.launches, counter.to_device, counter.to_host) == (2, 1, 1)


def _providers(monkeypatch) -> list:
    """The force providers of the device runs that follow (through the graphs hook, which does
    nothing else without NUMDP_CUDA_GRAPH)."""
    from numdp.md import device as md_device

    got = []
    monkeypatch.setattr(md_device, "_maybe_use_graphs", lambda provider, be: got.append(provider))
    return got


def _chunked_run(toml: Path, chunk: int):
    settings = load_run_settings(toml)
    model = DPModel(read_model(toml.parent / "model.h5"), nthreads=1, chunk=chunk, device=settings.model.device)
    return run_md(settings, model=model, screen=io.StringIO())


def _assert_same_run(a: Path, b: Path) -> None:
    """Frames and final checkpoint of the runs in `a` and `b`, bit for bit."""
    fa, fb = frames(a), frames(b)
    for key in fa:
        assert np.array_equal(fa[key], fb[key]), key
    ca, cb = to_arrays(read_checkpoint(a / "ck.h5")), to_arrays(read_checkpoint(b / "ck.h5"))
    assert ca.keys() == cb.keys()
    for key in ca:
        assert np.array_equal(ca[key], cb[key]), key


def test_list_rows_and_kept_search_buffers_give_the_whole_list_run(tmp_path, monkeypatch):
    """Above WHOLE_LIST_BYTES the device forms the list's rows chunk by chunk as the model asks for
    them (numdp.neighbor.device.DeviceRows) instead of the whole list: the same rows; and the MD
    step's search arrays kept with the rebuild's SearchPlan and reused by every step
    (numdp.neighbor.device.KEEP_SEARCH_BUFFERS) are the fresh arrays' values.  So the four runs
    (whole list or rows, kept or fresh arrays) are one run bit for bit (frames, checkpoint,
    rebuilds, the last closest pair): NVE with rebuilds (skin 0.005 Å), model chunks of 3
    centres (16 atoms: 6 chunks)."""
    import numdp.md.device_forces as mdf
    import numdp.neighbor.device as nd
    from numdp.neighbor.device import DeviceRows

    kw = {"steps": 4, "every": 1, "skin": 0.005}
    providers = _providers(monkeypatch)
    runs = {}
    for whole in (True, False):
        monkeypatch.setattr(mdf, "WHOLE_LIST_BYTES", mdf.WHOLE_LIST_BYTES if whole else 0)
        for keep in (True, False):
            monkeypatch.setattr(nd, "KEEP_SEARCH_BUFFERS", keep)
            folder = tmp_path / f"{'whole' if whole else 'rows'}-{'kept' if keep else 'fresh'}"
            runs[folder] = _chunked_run(make_run(folder, "cuda", **kw), 3).rebuilds
    first = next(iter(runs))
    assert len(set(runs.values())) == 1 and runs[first] > 1
    for folder in runs:
        _assert_same_run(first, folder)
    assert [isinstance(p._nlist, DeviceRows) for p in providers] == [False, False, True, True]
    assert [bool(p._plan.kept) for p in providers] == [True, False, True, False]
    assert all(p.closest == providers[0].closest for p in providers) and providers[0].closest[1] >= 0


def test_model_deviation_on_list_rows_and_kept_buffers_equals_the_whole_list(tmp_path, monkeypatch, devi_runs):
    """[model_devi] with a model of another sel (two lists of one plan side by side) on rows formed
    chunk by chunk, with kept and with fresh search arrays: the model_devi.out and trajectory of
    the whole-list run, bit for bit."""
    import numdp.md.device_forces as mdf
    import numdp.neighbor.device as nd

    whole = devi_runs[0] / "cuda"   # the whole-list run (test_gpu_model_deviation_equals_cpu's)
    providers = _providers(monkeypatch)
    monkeypatch.setattr(mdf, "WHOLE_LIST_BYTES", 0)
    for keep in (True, False):
        monkeypatch.setattr(nd, "KEEP_SEARCH_BUFFERS", keep)
        run(make_devi_run(tmp_path / f"rows-{keep}", "cuda"))
    for other in ("rows-True", "rows-False"):
        assert (whole / "model_devi.out").read_text() == (tmp_path / other / "model_devi.out").read_text()
        fw, fr = frames(whole), frames(tmp_path / other)
        for key in fw:
            assert np.array_equal(fw[key], fr[key]), key
    assert [bool(p._plan.kept) for p in devi_runs[1] + providers] == [True, True, False]
    assert providers[0].closest == providers[1].closest


@pytest.mark.parametrize("whole_list", [True, False], ids=["whole-list", "list-rows"])
def test_gpu_overflow_warning_comes_once_with_the_cpu_text(tmp_path, monkeypatch, whole_list):
    """Model 0's list statistics reach the host in the step's totals copy: a model with too small
    a sel (the cluster's B atom has two A neighbours, sel 1) warns once per run on the GPU, with
    the CPU run's text (numdp.neighbor.report_overflow), and every call is counted; also where
    the rows are formed chunk by chunk (the statistics launched after the model ran)."""
    import warnings

    import numdp.md.device_forces as mdf
    from numdp.neighbor import NeighborOverflowWarning

    if not whole_list:
        monkeypatch.setattr(mdf, "WHOLE_LIST_BYTES", 0)

    texts = {}
    for device in ("cpu", "cuda"):
        toml = make_cluster(tmp_path / device, device, steps=4, every=2)
        write_model(random_params(ntypes=2, sel=[1, 1], neuron=(4,), axis_neuron=2, fitting=(8,), rcut=2.9,
                                  rcut_smth=1.0, seed=6), toml.parent / "model.h5")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run(toml)
        texts[device] = [str(w.message) for w in caught if issubclass(w.category, NeighborOverflowWarning)]
    assert len(texts["cuda"]) == 1 and texts["cuda"] == texts["cpu"]
    assert "more than sel = 1" in texts["cuda"][0] and "largest count 2" in texts["cuda"][0]


def test_gpu_key_buffer_overflow_is_a_runtime_error(tmp_path, monkeypatch):
    """The per-step search never relaunches: its key buffer holds the bound fixed at the rebuild
    (numdp.neighbor.device.plan_search).  A buffer made too small on purpose (1 key; every centre
    of the cluster has 2 neighbours within rcut) sets the flag read with the totals, and the run
    stops with a RuntimeError (a bug check, not a user error)."""
    from dataclasses import replace

    import numdp.neighbor.device as nd

    real = nd.plan_search
    monkeypatch.setattr(nd, "plan_search", lambda *a, **kw: replace(real(*a, **kw), need=1, caps=(1,)))
    toml = make_cluster(tmp_path / "gpu", "cuda", steps=2, every=1)
    with pytest.raises(RuntimeError, match="neighbour search: a centre has 2 neighbours within rcut"):
        run(toml)


def _checkpoint(path: Path) -> dict:
    return to_arrays(read_checkpoint(path / "ck.h5"))


def _observables(path: Path) -> dict:
    import h5py

    with h5py.File(path / "traj.h5md", "r") as f:
        return {name: g["value"][()] for name, g in f["observables"].items()}


def test_nose_hoover_chain_state_lives_on_the_device_and_moves_between_devices(tmp_path):
    """The Nosé-Hoover chain's variables stay on the device during a one-rank GPU run and come
    to the host at output steps: (1) the GPU run stopped at step 5 and restarted on the GPU from
    its checkpoint repeats the uninterrupted GPU run bit for bit (frames, the conserved energy of
    every frame, which reads the chain's variables, and the final checkpoint with them); (2) CPU
    to step 5, GPU to 10, CPU to 15 from each other's checkpoints equals the CPU run of 15 steps
    within same_run_bounds and the velocity bound of the thermostatted runs above, and its chain
    variables equal the CPU run's to that bound's relative size (they integrate 2K, which the
    velocities' relative difference bounds, twice over): a chain left on the host, stale, or
    lost at a checkpoint would differ by the variables' own size."""
    kw = {"steps": 10, "every": 5}
    whole = make_cluster(tmp_path / "whole", "cuda", NHC, **kw)
    run(whole)
    part = make_cluster(tmp_path / "part", "cuda", NHC, steps=5, every=5)
    run(part)
    make_cluster(tmp_path / "part", "cuda", NHC, **kw)
    run(part, restart=part.parent / "ck.h5")
    fw, fp = cluster_frames(whole.parent), cluster_frames(part.parent)
    for key in fw:
        assert np.array_equal(fw[key], fp[key]), key
    ow, op = _observables(whole.parent), _observables(part.parent)
    assert np.array_equal(ow["conserved_energy"], op["conserved_energy"])
    cw, cp = _checkpoint(whole.parent), _checkpoint(part.parent)
    assert cw.keys() == cp.keys() and int(cw["step"]) == 10 and "thermostat/vxi" in cw
    for key in cw:
        assert np.array_equal(cw[key], cp[key]), key
    assert np.abs(cw["thermostat/vxi"]).min() > 0.0 and np.abs(cw["thermostat/xi"]).min() > 0.0

    full = make_cluster(tmp_path / "full", "cpu", NHC, steps=15)
    run(full)
    mixed = make_cluster(tmp_path / "mixed", "cpu", NHC, steps=5)
    run(mixed)
    make_cluster(tmp_path / "mixed", "cuda", NHC, steps=10)
    run(mixed, restart=mixed.parent / "ck.h5")
    make_cluster(tmp_path / "mixed", "cpu", NHC, steps=15)
    run(mixed, restart=mixed.parent / "ck.h5")
    a, b = cluster_frames(full.parent), cluster_frames(mixed.parent)
    assert_close_runs(a, b, "nose-hoover cpu-gpu-cpu")
    vbound = thermostatted_velocity_bound(a)
    assert (np.abs(a["velocity"] - b["velocity"]).max(axis=(1, 2)) <= vbound).all()
    ca, cb = _checkpoint(full.parent), _checkpoint(mixed.parent)
    rel = 2 * vbound[-1] / np.abs(a["velocity"][-1]).max()
    for key in ("thermostat/xi", "thermostat/vxi"):
        d = np.abs(ca[key] - cb[key]).max()
        assert d <= rel * np.abs(ca[key]).max(), key


def test_kept_search_buffers_give_the_fresh_buffers_npt_run(tmp_path, monkeypatch):
    """The MD step's search arrays kept with the rebuild's SearchPlan and reused by every step
    (numdp.neighbor.device.KEEP_SEARCH_BUFFERS) give the run of fresh arrays every step bit for
    bit in NPT, where the cell moves (frames, checkpoint, closest pair; rows formed chunk by chunk,
    3-centre chunks; skin 0.3 Å, several rebuilds); the whole list and [model_devi]: the two
    tests above."""
    import numdp.md.device_forces as mdf
    import numdp.neighbor.device as nd

    monkeypatch.setattr(mdf, "WHOLE_LIST_BYTES", 0)
    providers = _providers(monkeypatch)
    got = []
    for keep in (True, False):
        monkeypatch.setattr(nd, "KEEP_SEARCH_BUFFERS", keep)
        # NPT's atoms move up to 0.27 A a step (the safety check's bound: the skin)
        toml = make_run(tmp_path / str(keep), "cuda", NPT.format(coupling="triclinic"), steps=4, every=1, skin=0.3)
        got.append(_chunked_run(toml, 3).rebuilds)
    assert got[0] == got[1] > 1
    _assert_same_run(tmp_path / "True", tmp_path / "False")
    kept, fresh = providers
    assert kept.closest == fresh.closest
    assert kept._plan.kept and not fresh._plan.kept   # the kept run did keep arrays with its plan
    assert isinstance(kept._nlist, nd.DeviceRows)


def test_gpu_checkpoints_record_the_grid_of_their_run(tmp_path):
    """The neighbour record of a checkpoint names the MPI grid (a restart on as many ranks takes
    it again, numdp.md.setup), on the device as on the host: the device provider's record had no
    grid, so an NPT run on GPU ranks restarted on the grid choose_grid picks for the changed cell.
    A restart restores the recorded list without a build (a wide skin here), and its checkpoint
    names its own grid, not the one read (here, of a run on 2 x 1 x 1 ranks)."""
    import h5py

    toml = make_run(tmp_path, "cuda", steps=2, every=2, skin=1.0)
    run(toml)
    ck = read_checkpoint(tmp_path / "ck.h5")
    assert ck.neighbor["grid"].tolist() == [1.0, 1.0, 1.0]
    with h5py.File(tmp_path / "ck.h5", "r+") as f:
        f["numdp/state/neighbor/grid"][...] = [2.0, 1.0, 1.0]
    toml.write_text(toml.read_text().replace("steps = 2", "steps = 3"))
    result = run(toml, restart=tmp_path / "ck.h5")
    assert result.rebuilds == 0
    assert read_checkpoint(tmp_path / "ck.h5").neighbor["grid"].tolist() == [1.0, 1.0, 1.0]
