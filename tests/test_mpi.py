"""`mpiexec -n K numdp run` against the serial run (numdp.parallel: domain decomposition).

Each test writes a small random se_e2_a model (tests/randmodel.py) and a rocksalt crystal of two
types in a tilted (triclinic) cell, runs `python -m numdp.cli run` serially and under
`mpiexec -n K` (K = 2, 3 and an oversubscribed 4 on this 2-core machine) and compares: energies,
forces and positions after up to 200 steps within bounds derived from the round-off of the
arithmetic (`assert_same_run`), restarts on other rank counts, and the failure paths (an error is
printed once and every rank exits, never a hang: every subprocess has a timeout).  The crystal is
a stationary point of any potential, so at 20 K the random model stays stable for the few hundred
steps used here.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from numdp.io.h5md import read_checkpoint
from numdp.io.model_file import write_model
from numdp.io.structure import write_extxyz
from numdp.units import MVV2E
from randmodel import random_params

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 180  # s per subprocess: a hang fails the test instead of hanging CI


def _mpiexec():
    here = Path(sys.executable).parent / "mpiexec"
    return str(here) if here.exists() else shutil.which("mpiexec")


def _mpi4py():
    try:
        import mpi4py  # noqa: F401
        return True
    except ImportError:
        return False


MPIEXEC = _mpiexec()
pytestmark = pytest.mark.skipif(MPIEXEC is None or not _mpi4py(),
                                reason="MPI tests need mpi4py and mpiexec (pip install -e '.[mpi]')")


def rocksalt(cells, a=4.0):
    """(positions, types, box) of a two-type rocksalt crystal of cells = (na, nb, nc) cubic cells
    in a cell tilted by lattice vectors (so the crystal is unchanged, the cell triclinic)."""
    grid = np.array([[i, j, k] for i in range(cells[0]) for j in range(cells[1]) for k in range(cells[2])], float)
    basis = np.array([[0, 0, 0], [.5, .5, 0], [.5, 0, .5], [0, .5, .5],
                      [.5, 0, 0], [0, .5, 0], [0, 0, .5], [.5, .5, .5]])
    x = (grid[:, None] + basis[None]).reshape(-1, 3) * a
    types = np.tile([0, 0, 0, 0, 1, 1, 1, 1], len(grid))
    box = np.diag(np.array(cells, float) * a)
    box[1, 0], box[2, 0], box[2, 1] = a, -a, a
    return x, types, box


INPUT = """
[model]
file = "model.h5"
[system]
file = "start.xyz"
velocities = {{ temperature = 20.0, seed = 3 }}
masses = {{ A = 12.0, B = 16.0 }}
[md]
timestep = 0.001
steps = {steps}
{md}
[neighbor]
skin = 1.0
[output]
every = {every}
thermo_every = 50
checkpoint_every = 0
force_unit = "eV Angstrom-1"
progress = "none"
{extra}
"""


def make_run(path: Path, cells=(3, 3, 3), steps=200, every=10, md="", extra="", model_seed=2) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    write_model(random_params(ntypes=2, sel=[24, 24], neuron=(4, 8), axis_neuron=2, fitting=(8, 8), rcut=4.0,
                              rcut_smth=1.0, seed=model_seed), path / "model.h5")
    x, t, box = rocksalt(cells)
    write_extxyz(path / "start.xyz", [["A", "B"][i] for i in t], x, box)
    (path / "md.toml").write_text(INPUT.format(steps=steps, every=every, md=md, extra=extra))
    return path


def numdp_run(path: Path, ranks: int, *args, expect: int = 0):
    """Run `numdp run md.toml` in `path` on `ranks` ranks (1: plain python, no MPI launcher)."""
    cmd = [sys.executable, "-m", "numdp.cli", "run", "md.toml", *args]
    if ranks > 1:
        cmd = [MPIEXEC, "-n", str(ranks), *cmd]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "PMIX_", "MPI_"))}
    r = subprocess.run(cmd, cwd=path, capture_output=True, text=True, timeout=TIMEOUT, env=env)
    if expect is not None:
        assert r.returncode == expect, f"exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def frames(path: Path, name="traj.h5md"):
    with h5py.File(path / name, "r") as f:
        g = f["particles/trajectory"]
        return {"step": g["position/step"][()], "position": g["position/value"][()],
                "velocity": g["velocity/value"][()], "force": g["force/value"][()],
                "pe": f["observables/potential_energy/value"][()], "box": g["box/edges/value"][()],
                "pressure": f["observables/pressure/value"][()]}


# -- tolerances, derived from the arithmetic -----------------------------------------------------------
# Runs that differ only in the order of their sums (rank or thread decomposition, chunk sizes, the
# BLAS kernel's blocking) agree to round-off, not bit for bit.
#
# One force evaluation.  Every force is a sum of pair terms, each built through chains of at most
# ~100 accumulations (compressed tables: a 5th-order Horner step and 16-wide sums over the padded
# M outputs; fitting nets: 16-wide inputs, 8-wide hidden layers, forward and back), so each term
# carries a relative error of at most gamma_100 ~ 100 u, u the unit round-off of that arithmetic
# (2^-53 in double; 2^-24 for the float32 networks and tables of mix32).  In this near-equilibrium
# crystal the pair terms are up to ~10x the largest net force, so one evaluation is within
# EPS_F = C_ROUND u max|F| of the exact forces with C_ROUND = 1000, and two runs within 2 EPS_F.
# (Realized: 60 u max|F| in double, 1 u max|F| in mix32, under both BLAS kernels.)
#
# Trajectories.  A force error dF acting for a time t moves an atom by at most dF/m t^2/2 while
# the dynamics is stable (a mode of frequency w responds to forcing through sin(w s)/w <= s).
# Growth beyond that (chaos, unstable modes) was measured by rerunning the serial double run with
# every start position moved by up to 1e-8 A: the separation grew by 1.01x over 60 steps and
# 1.07x over 200 steps (the 20 K crystal is nearly harmonic), so GROWTH = 2 bounds it.  Positions
# are also rounded at every step and when wrapped into the cell: + (steps + 8) u64 max|x|.
# The forces of later frames also differ through that displacement (K dx for force constant K):
# by the same mode argument m w^2 dx <= w t m da, which stays below ~2 EPS_F GROWTH over these
# short runs, so the force bound per frame is 2 EPS_F (1 + 2 GROWTH).
# A decomposition bug (a missing ghost, a pair counted twice, a migrated atom's wrong velocity)
# changes a force by a whole pair term, which in this crystal is as large as max|F| or larger
# (its net forces are small sums of larger pair terms): far outside the force bounds, 1e4 u
# max|F| = 1.1e-12 max|F| in double and 6e-4 max|F| in mix32.
U64 = 2.0 ** -53
U32 = 2.0 ** -24
C_ROUND = 1000
GROWTH = 2.0
DT = 0.001          # ps, [md] timestep of INPUT
MASS_MIN = 12.0     # amu, the lighter of the two types in INPUT


def same_run_bounds(a, u=U64):
    """Per-frame bounds (positions Å, forces eV/Å, energy eV) on the difference between run `a`
    and a run that differs from it only in the order of sums done in arithmetic of round-off u."""
    t = (a["step"] - a["step"][0]) * DT                             # ps since the common start
    fmax = np.abs(a["force"]).max()
    eps_f = C_ROUND * u * fmax                                      # eV/Å, one evaluation
    accel = 2 * eps_f / (MASS_MIN * MVV2E)                          # Å/ps², two runs
    steps = a["step"] - a["step"][0]
    pos = GROWTH * accel * t ** 2 / 2 + (steps + 8) * U64 * np.abs(a["position"]).max()
    force = 2 * eps_f * (1 + 2 * GROWTH)
    # energies: C_ROUND u per atom energy (their sum is at most N max|e| ~ |E|), plus F . dx
    natoms = a["force"].shape[1]
    energy = 2 * C_ROUND * u * np.abs(a["pe"]).max() + natoms * fmax * pos
    return pos, force, energy


def assert_same_run(a, b, u=U64):
    """Same steps; positions, cell, forces and energies of every frame within same_run_bounds."""
    assert np.array_equal(a["step"], b["step"])
    pos, force, energy = same_run_bounds(a, u)
    for name, got, bound in (("position", np.abs(a["position"] - b["position"]).max(axis=(1, 2)), pos),
                             ("box", np.abs(a["box"] - b["box"]).max(axis=(1, 2)), pos),
                             ("force", np.abs(a["force"] - b["force"]).max(axis=(1, 2)), force),
                             ("pe", np.abs(a["pe"] - b["pe"]), energy)):
        bound = np.broadcast_to(bound, got.shape)
        bad = np.flatnonzero(got > bound)
        assert bad.size == 0, f"{name} differs by {got[bad[0]]:.3g} > {bound[bad[0]]:.3g} at step {a['step'][bad[0]]}"


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    """The serial 200-step reference run (it also warms Numba's cache for the MPI runs)."""
    path = make_run(tmp_path_factory.mktemp("serial"))
    numdp_run(path, 1)
    return frames(path)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    path = make_run(tmp_path_factory.mktemp("two"))
    r = numdp_run(path, 2)
    return path, r


def test_two_ranks_reproduce_the_serial_trajectory(serial, two_ranks):
    path, r = two_ranks
    assert "2 MPI ranks, grid 1 x 1 x 2" in r.stdout
    # NUMDP_NUM_THREADS / NUMBA_NUM_THREADS when set (the suite runs with 1 and 2), else the cores
    # shared by the two ranks (numdp.parallel.threads)
    env = [os.environ.get(v, "").strip() for v in ("NUMDP_NUM_THREADS", "NUMBA_NUM_THREADS")]
    threads = int(next((v for v in env if v), 0)) or max(1, len(os.sched_getaffinity(0)) // 2)
    assert f" {threads} thread{'s' if threads != 1 else ''} per rank" in r.stdout
    assert r.stdout.count("Loop time of") == 1 and "on 2 MPI ranks" in r.stdout  # rank 0 prints
    assert "Comm" in r.stdout
    run = frames(path)
    assert run["step"].tolist() == list(range(0, 201, 10))
    assert np.abs(run["position"][-1] - run["position"][0]).max() > 0.01  # the atoms did move
    assert_same_run(serial, run)
    log = (path / "log.txt").read_text()
    assert log.count("numdp run md.toml") == 1


SMALL_BLOCKS = textwrap.dedent("""
    import sys
    from numdp.cli import main
    from numdp.parallel import distribute

    distribute.BLOCK_ATOMS = 7   # 216 atoms: 31 blocks at start-up, per frame and per checkpoint
    sys.exit(main(["run", "md.toml"]))
""")


def test_atoms_moved_in_small_blocks_give_the_same_bits(two_ranks, tmp_path):
    """A 2-rank run whose start structure is handed out, and whose trajectory and checkpoint reach
    rank 0, in blocks of 7 atoms instead of one: the same files, bit for bit (only the moving of
    the atoms differs)."""
    path = make_run(tmp_path)
    (path / "small.py").write_text(SMALL_BLOCKS)
    r = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "small.py"], cwd=path, capture_output=True,
                       text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-3000:]
    ref, got = frames(two_ranks[0]), frames(path)
    for name in ref:
        assert np.array_equal(ref[name], got[name]), name
    a, b = read_checkpoint(two_ranks[0] / "checkpoint.h5"), read_checkpoint(path / "checkpoint.h5")
    for name in ("positions", "velocities", "forces", "types", "masses", "ids"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert np.array_equal(a.neighbor["positions"], b.neighbor["positions"])


def test_a_positions_only_trajectory_on_two_ranks(serial, tmp_path):
    """[output] fields = ["position"]: only positions are gathered and written, and they are the
    serial run's."""
    path = make_run(tmp_path, extra='fields = ["position"]')
    numdp_run(path, 2)
    with h5py.File(path / "traj.h5md", "r") as f:
        g = f["particles/trajectory"]
        assert "velocity" not in g and "force" not in g
        pos = g["position/value"][()]
    bound = same_run_bounds(serial)[0]
    assert np.all(np.abs(pos - serial["position"]).max(axis=(1, 2)) <= bound)


def test_restart_on_other_rank_counts_and_bitwise_on_the_same(serial, two_ranks, tmp_path):
    path = make_run(tmp_path / "r", steps=80)
    numdp_run(path, 2)  # 0 -> 80 on 2 ranks
    text = (path / "md.toml").read_text()
    shutil.copy(path / "checkpoint.h5", path / "ck80.h5")
    (path / "md.toml").write_text(text.replace("steps = 80", "steps = 140"))
    r = numdp_run(path, 3, "--restart", "ck80.h5")  # 80 -> 140 on 3 ranks
    assert "restarted from ck80.h5 at step 80" in r.stdout
    (path / "md.toml").write_text(text.replace("steps = 80", "steps = 200"))
    numdp_run(path, 1, "--restart", "checkpoint.h5")  # 140 -> 200 serially
    run = frames(path)
    assert_same_run(serial, run)
    final = read_checkpoint(path / "checkpoint.h5")
    assert final.step == 200 and np.array_equal(final.ids, np.arange(216))
    assert np.abs(final.positions - serial["position"][-1]).max() <= same_run_bounds(serial)[0][-1]
    # the same rank count repeats the uninterrupted run bit for bit
    (path / "md.toml").write_text(text.replace("steps = 80", "steps = 200"))
    shutil.copy(path / "ck80.h5", path / "again.h5")
    numdp_run(path, 2, "--restart", "again.h5")
    uninterrupted = read_checkpoint(two_ranks[0] / "checkpoint.h5")
    again = read_checkpoint(path / "checkpoint.h5")
    for name in ("positions", "velocities", "forces"):
        assert np.array_equal(getattr(uninterrupted, name), getattr(again, name)), name


def test_thin_subdomains_and_periodic_self_images_on_four_ranks(tmp_path):
    """A cell 4 A thick along c (one rank there: self-images over two hops) split into four
    subdomains 4 A wide along a (ghosts over two hops), oversubscribed on two cores."""
    ref = make_run(tmp_path / "serial", cells=(4, 3, 1), steps=100)
    numdp_run(ref, 1)
    path = make_run(tmp_path / "mpi", cells=(4, 3, 1), steps=100, extra="[parallel]\ngrid = [4, 1, 1]")
    r = numdp_run(path, 4)
    assert "grid 4 x 1 x 1" in r.stdout and "ghosts come over several hops" in r.stdout
    assert_same_run(frames(ref), frames(path))


def test_npt_triclinic_with_langevin_matches_serial(tmp_path):
    """The cell changes every step (ghosts follow with the current cell); Langevin noise is keyed
    by atom id, so it is the same on any number of ranks.  The thermo columns that sum over the
    ranks (density, the pressure tensor) agree with the serial run's to their printed digits."""
    md = ('ensemble = "npt"\nthermostat = { kind = "langevin", temperature = 20.0, tau = 0.05 }\n'
          'barostat = { pressure = 1000.0, tau = 0.2, coupling = "triclinic", compressibility = 1e-3 }')
    columns = 'thermo_columns = ["step", "press", "pxx", "pyy", "pzz", "pxy", "pxz", "pyz", "density", "lx", "xy"]'
    ref = make_run(tmp_path / "serial", steps=100, md=md, extra=columns)
    numdp_run(ref, 1)
    path = make_run(tmp_path / "mpi", steps=100, md=md, extra=columns + "\n[parallel]\ngrid = [1, 2, 1]")
    numdp_run(path, 2)
    rows = [np.array([[float(w) for w in ln.split()] for ln in (p / "log.txt").read_text().splitlines()
                      if ln.split() and ln.split()[0].isdigit() and len(ln.split()) == 11]) for p in (ref, path)]
    assert rows[0].shape == (3, 11) and rows[0][:, 0].tolist() == [0, 50, 100]
    # printed with 3 decimals (pressures) or 6: two half-units of the last place, plus the 1e-8
    # relative bound of the pressure below
    assert np.all(np.abs(rows[0] - rows[1]) <= 1e-3 + 1e-8 * np.abs(rows[0]))
    assert np.allclose(rows[0][:, 2:5].mean(axis=1), rows[0][:, 1], rtol=0, atol=1e-3)
    a, b = frames(ref), frames(path)
    assert np.abs(a["box"][-1] - a["box"][0]).max() > 0.05  # the cell did move
    assert_same_run(a, b)
    # P = (2K + tr W)/(3V): the virial sums ~N nnei pair terms r_ij f_ij, each with relative
    # round-off <= C_ROUND u64 ~ 1e-13; 1e-8 of max|P| leaves 1e5 for the ratio of sum |r_ij f_ij|
    # to 3V max|P| (the sum cancels to a small pressure) and for the kinetic term's dv.
    assert np.abs(a["pressure"] - b["pressure"]).max() <= 1e-8 * np.abs(a["pressure"]).max()


def test_ramped_nose_hoover_npt_on_two_ranks_matches_serial(tmp_path):
    """Temperature 20 -> 60 K and pressure 1000 -> 2e4 bar ramped over the run: the target is a
    function of the step alone, so every rank uses the same one (the chain's masses with it) and
    the two-rank run stays within same_run_bounds of the serial run."""
    md = ('ensemble = "npt"\nthermostat = { kind = "nose-hoover", temperature = [20.0, 60.0], tau = 0.05 }\n'
          'barostat = { pressure = [1000.0, 2e4], tau = 0.2, coupling = "triclinic", compressibility = 1e-3 }')
    ref = make_run(tmp_path / "serial", steps=60, md=md)
    r = numdp_run(ref, 1)
    assert "nose-hoover thermostat 20.0 -> 60.0 K (steps 0 -> 60)" in r.stdout
    path = make_run(tmp_path / "mpi", steps=60, md=md, extra="[parallel]\ngrid = [1, 2, 1]")
    numdp_run(path, 2)
    a, b = frames(ref), frames(path)
    assert np.abs(a["box"][-1] - a["box"][0]).max() > 0.01  # the cell did move
    assert_same_run(a, b)


MTK_NPT = ('ensemble = "npt"\nthermostat = { kind = "nose-hoover", temperature = [20.0, 40.0], tau = 0.05 }\n'
           'barostat = { kind = "mtk", pressure = [1000.0, 2e4], tau = 0.1, coupling = "triclinic" }')
MTK_NPH = ('ensemble = "nph"\nbarostat = { kind = "mtk", pressure = [1000.0, 2e4], tau = 0.1, coupling = "triclinic", '
           'chain = 0, temperature = 30.0 }')


@pytest.mark.parametrize("md", [MTK_NPT, MTK_NPH], ids=["npt", "nph"])
def test_mtk_npt_on_two_ranks_matches_serial_and_restarts_bit_for_bit(tmp_path, md):
    """The Martyna-Tobias-Klein barostat (triclinic, pressure and temperature ramped, its chain
    and cell momentum the same numbers on every rank; NPH: no thermostat and no chain, whose
    empty variables the checkpoint keeps too): two ranks within same_run_bounds of the serial
    run; the serial run continued from its step-30 checkpoint (cell momentum and chain restored
    from the "barostat/" group) repeats the uninterrupted one bit for bit."""
    ref = make_run(tmp_path / "serial", steps=60, md=md)
    numdp_run(ref, 1)
    path = make_run(tmp_path / "mpi", steps=60, md=md, extra="[parallel]\ngrid = [1, 2, 1]")
    numdp_run(path, 2)
    a, b = frames(ref), frames(path)
    assert np.abs(a["box"][-1] - a["box"][0]).max() > 0.01  # the cell did move
    assert_same_run(a, b)
    # (a ramp spans [md] steps, so the restart runs at constant targets)
    fixed = md.replace("[20.0, 40.0]", "30.0").replace("[1000.0, 2e4]", "5000.0")
    whole_dir = make_run(tmp_path / "whole", steps=60, md=fixed)
    numdp_run(whole_dir, 1)
    part = make_run(tmp_path / "part", steps=30, md=fixed)
    numdp_run(part, 1)
    text = (part / "md.toml").read_text()
    (part / "md.toml").write_text(text.replace("steps = 30", "steps = 60"))
    numdp_run(part, 1, "--restart", "checkpoint.h5")
    whole, again = read_checkpoint(whole_dir / "checkpoint.h5"), read_checkpoint(part / "checkpoint.h5")
    for name in ("positions", "velocities", "forces", "box"):
        assert np.array_equal(getattr(whole, name), getattr(again, name)), name
    assert set(whole.barostat) == {"nu", "xi", "vxi"}
    for key in whole.barostat:
        assert np.array_equal(whole.barostat[key], again.barostat[key]), key


# -- failures: printed once, every rank exits, no hang ------------------------------------------------

def test_input_error_on_one_rank_is_reported_once(tmp_path):
    path = make_run(tmp_path, steps=10)
    (path / "md.toml").write_text((path / "md.toml").read_text().replace("start.xyz", "missing.xyz"))
    r = numdp_run(path, 2, expect=2)  # rank 0 alone reads the structure
    assert r.stderr.count("missing.xyz: structure file not found") == 1
    assert "Traceback" not in r.stderr
    path.joinpath("md.toml").write_text(path.joinpath("md.toml").read_text().replace(
        "missing.xyz", "start.xyz") + "[parallel]\ngrid = [3, 1, 1]\n")
    r = numdp_run(path, 2, expect=2)
    assert r.stderr.count("[parallel] grid: grid [3, 1, 1] does not fit the 2 MPI rank(s)") == 1


def test_bad_thread_variable_is_reported_once(tmp_path, monkeypatch):
    """NUMDP_NUM_THREADS=abc: one line from rank 0, not one per rank followed by MPI_Abort."""
    path = make_run(tmp_path, steps=10)
    monkeypatch.setenv("NUMDP_NUM_THREADS", "abc")
    r = numdp_run(path, 2, expect=2)
    assert r.stderr.count("NUMDP_NUM_THREADS='abc': expected a whole number of threads >= 1") == 1
    assert "MPI_Abort" not in r.stderr and "Traceback" not in r.stderr


def test_safety_stop_on_one_rank_stops_all_at_the_serial_step(tmp_path):
    extra = "[safety]\nmin_distance = 1.93"
    ref = make_run(tmp_path / "serial", steps=200, extra=extra)
    rs = numdp_run(ref, 1, expect=2)
    path = make_run(tmp_path / "mpi", steps=200, extra=extra)
    r = numdp_run(path, 2, expect=2)
    message = [line for line in rs.stderr.splitlines() if "closer than [safety] min_distance" in line]
    assert len(message) == 1 and "step " in message[0]
    assert r.stderr.count("closer than [safety] min_distance = 1.93") == 1
    step = message[0].split("step ")[1].split(":")[0]
    assert f"step {step}:" in r.stderr
    assert read_checkpoint(path / "checkpoint.stop.h5").step == int(step)
    assert frames(path)["step"][-1] == int(step)


CRASH = textwrap.dedent("""
    import os, sys
    import numdp
    from numdp.cli import main

    load = numdp.load_model

    def crashing(*args, **kwargs):
        model = load(*args, **kwargs)
        inner, calls = model.compute, [0]

        def compute(*a, **k):
            calls[0] += 1
            if os.environ.get("PMI_RANK") == "1" and calls[0] == 20:
                raise RuntimeError("injected failure")
            return inner(*a, **k)

        model.compute = compute
        return model

    numdp.load_model = crashing
    sys.exit(main(["run", "md.toml"]))
""")


def test_an_unexpected_error_on_one_rank_aborts_every_rank(tmp_path):
    path = make_run(tmp_path, steps=200)
    (path / "crash.py").write_text(CRASH)
    r = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "crash.py"], cwd=path, capture_output=True,
                       text=True, timeout=TIMEOUT)
    assert r.returncode != 0
    assert r.stderr.count("numdp run: error on MPI rank 1 of 2") == 1
    assert "RuntimeError: injected failure" in r.stderr


# -- pieces, in-process on one rank ------------------------------------------------------------------

def test_unpack_in_a_given_row_order_equals_unpack_then_reorder():
    """numdp.parallel.atoms.unpack(matrix, layout, rows): each array gathered in the order `rows`
    (gather_state's and migrate's id order, `unpack_by_id`) equals unpacking everything and
    reordering it, dtypes and shapes included."""
    from numdp.parallel.atoms import column_of, layout_of, pack, unpack, unpack_by_id

    rng = np.random.default_rng(3)
    n = 7
    arrays = {"positions": rng.normal(size=(n, 3)), "types": rng.integers(0, 3, n).astype(np.int32),
              "ids": rng.permutation(n).astype(np.int64) + 2**40, "virial": rng.normal(size=(n, 3, 3))}
    layout = layout_of(arrays)
    matrix = pack(arrays, layout)
    order = np.argsort(matrix[:, column_of(layout, "ids")], kind="stable")
    got = unpack(matrix, layout, order)
    ref = {k: v[np.argsort(arrays["ids"])] for k, v in arrays.items()}
    by_id = unpack_by_id(matrix, layout)
    for k in arrays:
        assert got[k].dtype == arrays[k].dtype and got[k].flags.c_contiguous
        np.testing.assert_array_equal(got[k], ref[k])
        np.testing.assert_array_equal(by_id[k], ref[k])
    with pytest.raises(KeyError):
        column_of(layout, "masses")


def test_grid_choice_follows_the_cell():
    from numdp.errors import InputError
    from numdp.parallel.domain import Domain, check_grid, choose_grid

    assert choose_grid(2, np.eye(3) * 10) == (2, 1, 1)
    assert choose_grid(4, np.diag([10.0, 40.0, 10.0])) == (1, 4, 1)
    assert choose_grid(8, np.eye(3) * 10) == (2, 2, 2)
    assert choose_grid(6, np.diag([30.0, 20.0, 10.0])) == (3, 2, 1)
    assert choose_grid(1, None) == (1, 1, 1)
    with pytest.raises(InputError, match="non-periodic"):
        choose_grid(2, None)
    with pytest.raises(InputError, match="does not fit the 4 MPI rank"):
        check_grid([2, 1, 1], 4, "md.toml: [parallel] grid")
    d = Domain((2, 3, 4), 17)
    assert d.rank_of(d.coords) == 17 and d.neighbor(2, 1) == d.rank_of(d.coords + [0, 0, 1])
    assert d.neighbor(0, 1) == d.neighbor(0, -1)  # two subdomains along a: the same neighbour
    frac = np.array([[0.0, 0.0, 0.0], [0.99, 0.99, 0.99], [0.5, 0.34, 0.25]])
    assert d.owners(frac).tolist() == [0, 23, 17]


def test_one_rank_ghost_shell_has_every_periodic_image_within_the_cutoff():
    """Staged self-exchange of a thin triclinic cell gives the neighbours that numdp.neighbor.extend
    gives (the reference image search), distance by distance."""
    from numdp.neighbor import extend, find_candidates
    from numdp.parallel.comm import GhostComm
    from numdp.parallel.domain import Domain, wrap_images
    from numdp.parallel.world import World

    rng = np.random.default_rng(0)
    box = np.array([[7.0, 0.0, 0.0], [2.5, 3.0, 0.0], [-1.0, 1.5, 4.5]])
    x = rng.uniform(0, 1, (40, 3)) @ box + rng.normal(0, 3.0, (40, 3))
    types = np.zeros(40, dtype=np.int32)
    cutoff = 5.0
    frac, images = wrap_images(x, box)
    comm = GhostComm(World(None), Domain((1, 1, 1), 0))
    ghosts = comm.borders(frac @ box, types, np.arange(40), box, cutoff)
    ref = extend(x, types, box, cutoff)
    assert sorted(zip(ghosts.ids.tolist(), map(tuple, ghosts.shifts.tolist()))) == \
        sorted(zip(ref.mapping.tolist(), map(tuple, ref.shifts.tolist())))

    def distances(pos, cand):
        out = []
        for i in range(40):
            j = cand.indices[cand.offsets[i]:cand.offsets[i + 1]]
            out.append(np.sort(np.linalg.norm(pos[j] - pos[i], axis=1)))
        return out

    from numdp.neighbor import Extended
    ext = Extended(ghosts.positions, ghosts.types, np.zeros(ghosts.nall, np.int32), ghosts.shifts, 40, cutoff)
    mine = distances(ghosts.positions, find_candidates(ext, cutoff))
    theirs = distances(ref.positions, find_candidates(ref, cutoff))
    for a, b in zip(mine, theirs):
        np.testing.assert_allclose(a, b, atol=1e-12)
    # forward moves ghosts with their owners under a new cell; reverse folds ghost forces back
    new_box = box @ np.array([[1.02, 0.0, 0.0], [0.01, 0.98, 0.0], [0.0, 0.03, 1.01]])
    pos = np.empty((ghosts.nall, 3))
    pos[:40] = frac @ new_box
    comm.forward(pos, new_box)
    np.testing.assert_allclose(pos, (frac[ghosts.ids] + ghosts.shifts) @ new_box, atol=1e-12)
    force = rng.normal(size=(ghosts.nall, 3))
    expected = np.zeros((40, 3))
    np.add.at(expected, ghosts.ids, force)
    comm.reverse(force)
    np.testing.assert_allclose(force[:40], expected, atol=1e-12)


def test_threads_per_rank_precedence():
    from numdp.parallel.threads import cpu_quota, threads_per_rank, usable_cores
    from numdp.parallel.world import World

    assert threads_per_rank(3, World(None), {"NUMDP_NUM_THREADS": "2"})[0] == 3
    assert threads_per_rank(None, World(None), {"NUMDP_NUM_THREADS": "2", "NUMBA_NUM_THREADS": "5"})[0] == 2
    assert threads_per_rank(None, World(None), {"NUMBA_NUM_THREADS": "5"})[0] == 5
    assert threads_per_rank(None, World(None), {})[0] == usable_cores(len(os.sched_getaffinity(0)), cpu_quota())


def test_compressed_mix32_model_on_two_ranks_matches_serial(tmp_path):
    """A compressed model under mix32 runs through `numdp run` and MPI like any other model."""
    from numdp.io.model_file import read_model
    from numdp.model.compress import compress

    runs = {}
    for ranks in (1, 2):
        path = make_run(tmp_path / f"r{ranks}", steps=60)
        params = read_model(path / "model.h5")
        params.min_nbor_dist = 1.5     # no training data: the nearest pairs of the crystal are 2 A
        cparams, report = compress(params, dx=0.01, order=5)
        # the quintic tables (|G| ~ 1) are exact to below float32 round-off, so the bounds of
        # same_run_bounds cover compression as well
        assert max(max(r["errors"]["between_grid"]["value_fine"], r["errors"]["between_grid"]["slope_fine"])
                   for r in report) < U32
        write_model(cparams, path / "model.h5")
        text = (path / "md.toml").read_text().replace('file = "model.h5"', 'file = "model.h5"\nprecision = "mix32"')
        (path / "md.toml").write_text(text)
        r = numdp_run(path, ranks)
        assert "compressed, precision mix32" in r.stdout
        assert "beyond its tables" not in r.stdout
        runs[ranks] = frames(path)
    # the same run up to float32 round-off: the per-atom networks run in float32 on other sets of
    # atoms (another GEMM blocking), so same_run_bounds with u = 2^-24
    assert_same_run(runs[1], runs[2], u=U32)
    # and the same physics as the uncompressed double model, within the same float32 bounds
    ref = make_run(tmp_path / "ref", steps=60)
    numdp_run(ref, 1)
    assert_same_run(frames(ref), runs[1], u=U32)


def test_a_container_cpu_limit_caps_the_default_threads(tmp_path):
    """cgroup v2 cpu.max and v1 cfs quota/period: `docker run --cpus 2.5` on a host whose affinity
    mask lists 64 cores keeps 3 threads, not 64; no limit (or an unreadable one) leaves the mask."""
    from numdp.parallel.threads import cpu_quota, thread_count, usable_cores

    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("250000 100000\n")
    assert cpu_quota(v2) == 2.5 and usable_cores(64, cpu_quota(v2)) == 3
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cpu_quota(v2) is None and usable_cores(64, None) == 64
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_quota(v1) == 2.0 and usable_cores(64, cpu_quota(v1)) == 2
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cpu_quota(v1) is None
    assert cpu_quota(tmp_path / "missing") is None
    assert usable_cores(2, 0.5) == 1 and usable_cores(4, 8.0) == 4
    # two ranks sharing the capped cores split them
    assert thread_count(None, {}, usable_cores(64, 2.5), sharing=2)[0] == 1


def test_frame_and_atomic_parameters_on_two_ranks_match_serial(tmp_path):
    """[model] fparam and aparam (every atom's) reach each rank's model: two ranks equal the
    serial run (same_run_bounds), and the parameters change the trajectory (so a rank that
    dropped them would fail)."""
    runs = {}
    for name, ranks, aparam in (("r1", 1, [0.3, -1.2]), ("r2", 2, [0.3, -1.2]), ("other", 1, [2.0, 1.0])):
        path = make_run(tmp_path / name, steps=30)
        write_model(random_params(ntypes=2, sel=[24, 24], neuron=(4, 8), axis_neuron=2, fitting=(8, 8), rcut=4.0,
                                  rcut_smth=1.0, seed=2, numb_fparam=1, numb_aparam=2), path / "model.h5")
        text = (path / "md.toml").read_text().replace(
            'file = "model.h5"', f'file = "model.h5"\nfparam = [0.5]\naparam = {aparam}')
        (path / "md.toml").write_text(text)
        numdp_run(path, ranks)
        runs[name] = frames(path)
    assert_same_run(runs["r1"], runs["r2"])
    f0, f1 = runs["r1"]["force"][0], runs["other"]["force"][0]
    assert np.abs(f1 - f0).max() > 1e-3 * np.abs(f0).max()


def test_a_slab_on_two_ranks_matches_serial(tmp_path):
    """A slab (pbc T T F) on 2 ranks: the grid splits a periodic direction only, and the run is
    the serial run's within `same_run_bounds` (the serial slab equals a padded periodic cell:
    tests/test_pbc_md.py).  The open direction is the longest, the one a grid for a periodic
    cell would split; the subdomains along a are 4 Å wide, thinner than the ghost cutoff (ghosts
    over several hops).  The slab, 3 cells (12 Å) thick, fills its cell's c vector exactly and
    starts shifted by -0.3 c, so a third of its atoms lie outside the cell along the open
    direction (owned by the one subdomain along c, not wrapped); were c treated as periodic
    anywhere (a ghost across the open face, a wrap along it), the top and bottom layers would be
    one layer spacing (2 Å) apart through the face and every surface force would change by a whole
    pair term, far outside the bounds.  The c vector is tilted: ghosts crossing a periodic face
    carry its shifts."""
    path = make_run(tmp_path / "serial", cells=(2, 2, 3), steps=100)
    x, t, box = rocksalt((2, 2, 3))
    x = x - 0.3 * box[2]
    write_extxyz(path / "start.xyz", [["A", "B"][i] for i in t], x, box, pbc=(True, True, False))
    two = tmp_path / "two"
    shutil.copytree(path, two)
    numdp_run(path, 1)
    r = numdp_run(two, 2)
    assert "2 MPI ranks, grid 2 x 1 x 1" in r.stdout or "2 MPI ranks, grid 1 x 2 x 1" in r.stdout
    a, b = frames(path), frames(two)
    frac_c = np.linalg.solve(box.T, a["position"][0].T)[2]
    assert (frac_c < 0).sum() >= len(frac_c) // 4          # atoms outside the cell along c
    assert np.abs(a["position"][-1] - a["position"][0]).max() > 0.01   # the atoms did move
    assert_same_run(a, b)
