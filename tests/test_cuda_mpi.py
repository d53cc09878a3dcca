"""`mpiexec -n 2 numdp run` with [model] device = "cuda": one GPU per rank, the ghost exchange, the
force return and the migration packed on the device (numdp.parallel.device_comm,
numdp.md.device_parallel), against the serial CPU run.

Under Numba's CUDA simulator (tests/conftest.py sets NUMBA_ENABLE_CUDASIM, which mpiexec passes
to the ranks): one simulated GPU, which both ranks use.  The system is tests/test_cuda_md.py's
16-atom tilted rocksalt crystal; two ranks split it along c into subdomains 2 A wide, thinner than
the ghost cutoff, so ghosts come over several hops, and the crystal's atoms sit on the subdomain
faces, so thermal motion makes atoms migrate at the (frequent, skin 0.005 A) rebuilds: the runs
count the atoms that left a rank, and the test requires some.  A device run on two ranks and the
serial CPU run differ only in the order of their sums, so they agree within test_mpi's
`same_run_bounds` (derived there from double round-off and the dynamics' growth).
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba_cuda")

from numdp.io.h5md import read_checkpoint  # noqa: E402
from test_cuda_md import LANGEVIN, assert_close_runs, assert_devi_rows_close, make_devi_run, make_run, run  # noqa: E402
from numdp.units import MVV2E  # noqa: E402
from test_mpi import C_ROUND, DT, GROWTH, MASS_MIN, MPIEXEC, TIMEOUT, U64, _mpi4py, frames, numdp_run  # noqa: E402

pytestmark = pytest.mark.skipif(MPIEXEC is None or not _mpi4py(),
                                reason="MPI tests need mpi4py and mpiexec (pip install -e '.[mpi]')")

# `numdp run md.toml` on every rank, then rank 0 prints the number of atoms that left a rank at
# the rebuilds (summed over ranks), so that the test knows the migration path ran.
RUN = textwrap.dedent("""
    import io
    import sys
    from numdp.config import load_run_settings
    from numdp.md.loop import run_or_raise
    from numdp.md.setup import build_simulation
    from numdp.parallel.world import create_world

    world = create_world()
    restart = sys.argv[1] if len(sys.argv) > 1 else None
    sim, end = build_simulation(load_run_settings("md.toml"), restart=restart, world=world, screen=io.StringIO())
    run_or_raise(sim, end)
    migrated = world.sum_global(float(sim.provider.migrated))
    if world.is_root:
        print(f"migrated {int(migrated)} rebuilds {sim.provider.rebuilds}")
""")


def run_two_gpu_ranks(toml: Path, grid: str = "1 x 1 x 2", restart: str | None = None) -> tuple[int, int]:
    """Run `toml` on two ranks (expected grid `grid`), from checkpoint `restart` if given;
    (atoms migrated, rebuilds)."""
    (toml.parent / "run.py").write_text(RUN)
    r = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "run.py", *([restart] if restart else [])],
                       cwd=toml.parent, capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    log = (toml.parent / "log.txt").read_text()
    assert f"2 MPI ranks, grid {grid}" in log and "device cuda" in log
    assert "one GPU per rank: rank -> GPU [0, 0]" in log  # the simulator has one GPU
    words = r.stdout.split()
    return int(words[words.index("migrated") + 1]), int(words[words.index("rebuilds") + 1])


def two_rank_velocity_bound(a: dict) -> np.ndarray:
    """Per-frame bound on the velocity difference between a thermostatted run on 2 GPU ranks and
    the serial CPU run (frames `a` of the latter): the force difference of same_run_bounds
    (2 EPS_F, amplified by GROWTH) acting for t gives dv <= GROWTH 2 EPS_F / m t; each step rounds
    the velocities in at most 8 operations (two kicks, two thermostat updates, two momentum
    removals, their sums): 8 u per step."""
    t = (a["step"] - a["step"][0]) * DT
    eps_f = C_ROUND * U64 * np.abs(a["force"]).max()
    return GROWTH * 2 * eps_f / (MASS_MIN * MVV2E) * t + 8 * (a["step"] + 1) * U64 * np.abs(a["velocity"]).max()


def first_frames(f: dict, n: int) -> dict:
    return {k: v[:n] for k, v in f.items()}


def test_two_gpu_ranks_equal_serial_cpu_and_their_checkpoint_restarts_on_one_cpu_rank(tmp_path):
    """NVE: 2 device ranks to step 4 equal the serial CPU run frame by frame; the checkpoint they
    wrote (gathered from both GPUs) continues on 1 CPU rank to step 6, equal to the CPU run."""
    kw = {"every": 2, "skin": 0.005}
    cpu = make_run(tmp_path / "cpu", "cpu", steps=6, **kw)
    run(cpu)
    gpu = make_run(tmp_path / "gpu", "cuda", steps=4, **kw)
    migrated, rebuilds = run_two_gpu_ranks(gpu)
    assert migrated > 0 and rebuilds > 1
    ref = frames(cpu.parent)
    assert_close_runs(first_frames(ref, 3), frames(gpu.parent), "nve, 2 GPU ranks")
    ck = read_checkpoint(gpu.parent / "ck.h5")
    assert ck.step == 4 and np.array_equal(ck.ids, np.arange(16))
    make_run(tmp_path / "gpu", "cpu", steps=6, **kw)      # the same input on the CPU, to step 6
    run(gpu, restart=gpu.parent / "ck.h5")
    assert_close_runs(ref, frames(gpu.parent), "2 GPU ranks, then 1 CPU rank")


def test_langevin_on_two_gpu_ranks_equals_serial_cpu(tmp_path):
    """Langevin draws its Philox numbers by (seed, step, global id), and its kinetic-energy and
    momentum sums are global, so the run is the same on two GPU ranks (after migrations) as on
    one CPU, to round-off (velocities included: no thermal-scale slack).  The GPU run stops at
    step 2 and continues from its checkpoint on two GPU ranks (the ranks rebuild the ghost shell
    of the checkpoint's neighbour record on their devices)."""
    kw = {"every": 2, "skin": 0.005}
    cpu = make_run(tmp_path / "cpu", "cpu", LANGEVIN, steps=4, **kw)
    run(cpu)
    gpu = make_run(tmp_path / "gpu", "cuda", LANGEVIN, steps=2, **kw)
    migrated, _ = run_two_gpu_ranks(gpu)
    make_run(tmp_path / "gpu", "cuda", LANGEVIN, steps=4, **kw)
    more, _ = run_two_gpu_ranks(gpu, restart="ck.h5")
    assert migrated + more > 0
    assert "restarted from ck.h5 at step 2" in (gpu.parent / "log.txt").read_text()
    a, b = frames(cpu.parent), frames(gpu.parent)
    assert_close_runs(a, b, "langevin, 2 GPU ranks")
    bound = two_rank_velocity_bound(a)
    assert (np.abs(a["velocity"] - b["velocity"]).max(axis=(1, 2)) <= bound).all()


def test_bind_rank_gpu_on_one_rank_uses_gpu_zero():
    from numdp.parallel.device_comm import bind_rank_gpu
    from numdp.parallel.world import World

    assert bind_rank_gpu(World(None)) == (0, 0, 1)


def test_safety_stop_on_two_gpu_ranks_is_reported_once(tmp_path):
    """A close contact (min_distance above the crystal's 2 A nearest distance) stops both GPU ranks
    at step 0: one message naming two atoms by global id (a ghost's id comes from its owner
    rank), exit status 2, and the stop checkpoint gathered from both devices."""
    toml = make_run(tmp_path, "cuda", steps=4)
    toml.write_text(toml.read_text() + "[safety]\nmin_distance = 2.01\n")
    r = numdp_run(tmp_path, 2, expect=2)
    lines = [line for line in r.stderr.splitlines() if "closer than [safety] min_distance = 2.01" in line]
    assert len(lines) == 1 and "step 0: atoms " in lines[0] and "Traceback" not in r.stderr
    ck = read_checkpoint(tmp_path / "ck.stop.h5")
    assert ck.step == 0 and np.array_equal(ck.ids, np.arange(16))


def test_model_deviation_on_two_gpu_ranks_equals_serial_cpu(tmp_path):
    """[model_devi] with device cuda on two ranks: the other models' ghost forces go back to their
    owners' ranks and their energies and virials are summed over the ranks, as model 0's; the rows
    equal the serial CPU run's within the bounds of test_cuda_md.assert_devi_rows_close."""
    run(make_devi_run(tmp_path / "cpu", "cpu"))
    run_two_gpu_ranks(make_devi_run(tmp_path / "gpu", "cuda"))
    assert_devi_rows_close(tmp_path / "cpu", tmp_path / "gpu")


@pytest.mark.parametrize("kind", ["c-rescale", "mtk"])
def test_npt_on_two_gpu_ranks_equals_serial_cpu(tmp_path, kind):
    """NPT (CSVR + triclinic cell rescaling, or the MTK barostat, whose cell momentum and chain are
    the same numbers on every rank) on two GPU ranks: the kinetic tensor and the virial are summed
    over ranks and every rank moves its atoms and its subdomain with the same cell, so the run
    equals the serial CPU run within same_run_bounds (cell included, as test_cuda_md's NPT test)."""
    from test_cuda_md import NPT

    md = NPT.format(coupling="triclinic")
    if kind == "mtk":
        md = md.replace("compressibility = 1e-3", 'kind = "mtk"').replace("tau = 0.2", "tau = 0.05")
    cpu = make_run(tmp_path / "cpu", "cpu", md, steps=4, every=2)
    run(cpu)
    gpu = make_run(tmp_path / "gpu", "cuda", md, steps=4, every=2)
    run_two_gpu_ranks(gpu)
    a, b = frames(cpu.parent), frames(gpu.parent)
    assert_close_runs(a, b, "npt, 2 GPU ranks")
    assert np.abs(a["box"][-1] - a["box"][0]).max() > 0


def test_nose_hoover_on_two_gpu_ranks_equals_serial_cpu(tmp_path):
    """On several ranks the Nosé-Hoover chain runs on the host from the kinetic energy summed over
    the ranks (numdp.md.device.DeviceVelocities.chain_on_device is false): two GPU ranks equal the
    serial CPU run within same_run_bounds, velocities within the bound of the Langevin test above
    (each step rounds the velocities in two kicks and two chain scalings, whose factors carry the
    kinetic sums' rounding: 8 u per step covers them)."""
    from test_cuda_md import NHC

    kw = {"every": 2, "skin": 0.005}
    cpu = make_run(tmp_path / "cpu", "cpu", NHC, steps=4, **kw)
    run(cpu)
    gpu = make_run(tmp_path / "gpu", "cuda", NHC, steps=4, **kw)
    run_two_gpu_ranks(gpu)
    a, b = frames(cpu.parent), frames(gpu.parent)
    assert_close_runs(a, b, "nose-hoover, 2 GPU ranks")
    bound = two_rank_velocity_bound(a)
    assert (np.abs(a["velocity"] - b["velocity"]).max(axis=(1, 2)) <= bound).all()
    ca, cb = read_checkpoint(cpu.parent / "ck.h5"), read_checkpoint(gpu.parent / "ck.h5")
    assert np.abs(ca.thermostat["vxi"]).min() > 0.0   # the chain acted
    rel = bound[-1] / np.abs(a["velocity"][-1]).max()
    for key in ("xi", "vxi"):
        assert np.abs(ca.thermostat[key] - cb.thermostat[key]).max() <= 2 * rel * np.abs(ca.thermostat[key]).max()


# RUN with the synchronising reads (copies to the host) of each step counted by phase on each rank
RUN_COUNTED = textwrap.dedent("""
    import io
    from numdp.config import load_run_settings
    from numdp.kernels.cuda.opcount import OpCounter
    from numdp.md.loop import run_or_raise
    from numdp.md.setup import build_simulation
    from numdp.parallel.world import create_world

    world = create_world()
    counter = OpCounter()
    reads = []
    phases = ("rebuild test", "reductions", "safety")
    with counter.counting():
        sim, end = build_simulation(load_run_settings("md.toml"), world=world, screen=io.StringIO())
        step, check = sim.integrator.step, sim.safety.check

        def snap():
            return [counter.counts[p]["to_host"] for p in phases] + [counter.to_host]

        def counted_step(state, forces):
            reads.append(snap())
            step(state, forces)

        def counted_check(state, provider, interrupted=False):
            got = check(state, provider, interrupted)
            if reads:
                reads[-1] = [b - a for a, b in zip(reads[-1], snap())]
            return got

        sim.integrator.step, sim.safety.check = counted_step, counted_check
        run_or_raise(sim, end)
    # one file per rank: the ranks' stdout reaches mpiexec's in pieces that may interleave
    with open(f"reads_{world.rank}.txt", "w") as out:
        out.write(f"rank {world.rank} rebuilds {sim.provider.rebuilds} reads {reads}\\n")
""")


def test_two_gpu_ranks_read_the_safety_records_with_the_totals(tmp_path):
    """On two GPU ranks the non-finite records come in the totals copy too (the parallel provider
    inherits DeviceForceProvider.launch / complete): per step and rank one read for the rebuild
    test, one for the totals, none for the safety check (the rest are the ghost exchange's and
    force return's host buffers).  2 NVE steps without rebuild or output."""
    import ast

    toml = make_run(tmp_path, "cuda", steps=2, every=100)
    (tmp_path / "run.py").write_text(RUN_COUNTED)
    r = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "run.py"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    lines = [(tmp_path / f"reads_{rank}.txt").read_text().strip() for rank in range(2)]
    for line in lines:
        words = line.split(" reads ")
        assert words[0].endswith("rebuilds 1"), line
        for rebuild_test, totals, safety, _ in ast.literal_eval(words[1]):
            assert (rebuild_test, totals, safety) == (1, 1, 0), line
    print("\n".join(lines))
