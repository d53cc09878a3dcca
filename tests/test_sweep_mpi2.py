"""`mpiexec -n N numdp run` / `numdp lmp` as users run them: empty subdomains, atoms that cross
several subdomains between rebuilds, odd rank counts, DP-GEN scripts (tests/test_mpi.py's random
model and helpers; each run is small, so that the file stays within a few tens of seconds).

- Empty subdomains and fast atoms: a slab with a 30 A vacuum gap in a strongly tilted cell, with
  free gas atoms, on 5 ranks (grid 5 x 1 x 1, subdomains 1.26 A wide, ghosts over many hops, a
  gas atom crossing two or more subdomains between rebuilds) continued on 4 (grid 1 x 1 x 4: the
  upper subdomains empty, one emptied by a gas atom leaving it) with a CSVR thermostat: the
  serial run to round-off (checked right: no defect).
- `numdp lmp` with DP-GEN's script under mpiexec: model_devi.out and the dumps are the serial
  run's, written once.
- A `write_data` between two runs that fails on rank 0 (a missing folder) left the other ranks
  waiting forever in the next run's first collective: the job hung instead of stopping with the
  serial run's one line and status 2.
- `numdp lmp --print-toml` under mpiexec printed the equivalent input once per rank.
- An open system (pbc F F F) on several ranks: its one line said "(no cell)" of a file with a cell,
  and not what to do.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from numdp.io.model_file import write_model
from numdp.io.structure import write_extxyz, write_lammps_data
from test_lmp_input import _model, dpgen_script
from test_mpi import MPIEXEC, TIMEOUT, _mpi4py, assert_same_run, frames, make_run, numdp_run, rocksalt

pytestmark = pytest.mark.skipif(MPIEXEC is None or not _mpi4py(),
                                reason="MPI tests need mpi4py and mpiexec (pip install -e '.[mpi]')")

# -- a slab, a vacuum gap and free gas atoms in a tilted cell ---------------------------------------

CELL = np.array([[8.0, 0.0, 0.0], [6.0, 8.0, 0.0], [-5.0, 4.0, 40.0]])   # rows: a, b, c (Å)
SKIN = 6.0   # Å: an atom moves up to SKIN / 2 = 3 Å between rebuilds
# Gas atoms (Cartesian Å, Å/ps): each more than rcut (4 Å) in z from the slab (z 1..7 Å, its image
# at 41..47 Å) and from the other gas atom along its whole path, so they feel no forces (the
# thermostat scales their velocities).
GAS = np.array([[2.0, 3.0, 15.0], [4.0, 4.0, 21.0]])
A_NORMAL = np.cross(CELL[1], CELL[2]) / np.linalg.norm(np.cross(CELL[1], CELL[2]))   # normal to the a faces
GAS_V = np.vstack([300.0 * A_NORMAL,        # across the a faces: 2.4 subdomains of 5 x 1 x 1 per rebuild
                   [100.0, 0.0, 275.0]])    # up c: from the third subdomain of 1 x 1 x 4 into the fourth


def gas_run(path, steps: int, grid=None):
    """A run directory: a 64-atom rocksalt slab at 20 K plus GAS, CSVR at 20 K."""
    md = 'ensemble = "nvt"\nthermostat = { kind = "csvr", temperature = 20.0, tau = 0.1 }'
    extra = "" if grid is None else f"[parallel]\ngrid = {list(grid)}"
    run = make_run(path, steps=steps, every=5, md=md, extra=extra)
    x, t, _ = rocksalt((2, 2, 2))
    frac = x / 8.0
    frac[:, 2] = (x[:, 2] + 1.0) / 40.0
    pos = np.vstack([frac @ CELL, GAS])
    types = np.concatenate([t, [0, 1]])
    v = np.vstack([np.random.default_rng(5).normal(0.0, 0.5, (64, 3)), GAS_V])
    write_extxyz(run / "start.xyz", [["A", "B"][i] for i in types], pos, CELL, velocities=v)
    text = (run / "md.toml").read_text().replace("velocities = { temperature = 20.0, seed = 3 }", 'momentum = "keep"')
    (run / "md.toml").write_text(text.replace("skin = 1.0", f"skin = {SKIN}"))
    return run


def subdomain(positions, grid):
    """(n, 3) grid coordinates of the subdomains holding `positions` (n, 3) Å of CELL."""
    f = positions @ np.linalg.inv(CELL)
    return np.floor((f - np.floor(f)) * np.asarray(grid)).astype(int)


def test_empty_subdomains_and_atoms_crossing_several_on_5_then_4_ranks(tmp_path):
    """0 -> 20 on 5 ranks (grid 5 x 1 x 1), 20 -> 40 restarted on 4 (1 x 1 x 4, the vacuum's
    subdomains empty): within same_run_bounds of the serial 0 -> 40 run, and the scenario is the
    intended one (read from the serial trajectory)."""
    ref = gas_run(tmp_path / "serial", 40)
    numdp_run(ref, 1)
    a = frames(ref)
    run = gas_run(tmp_path / "mpi", 20, grid=(5, 1, 1))
    r = numdp_run(run, 5)
    assert "5 MPI ranks, grid 5 x 1 x 1" in r.stdout and "ghosts come over several hops" in r.stdout
    text = (run / "md.toml").read_text()
    (run / "md.toml").write_text(text.replace("steps = 20", "steps = 40").replace("[5, 1, 1]", "[1, 1, 4]"))
    r = numdp_run(run, 4, "--restart", "checkpoint.h5")
    assert "4 MPI ranks, grid 1 x 1 x 4" in r.stdout and "restarted from checkpoint.h5 at step 20" in r.stdout
    b = frames(run)
    assert_same_run(a, b)
    # Gas atom 64, the fastest atom (the thermostat scales every velocity alike), triggers the
    # rebuilds: it moves SKIN / 2 across the a faces between two, 2.4 subdomains of 5 x 1 x 1, so
    # each rebuild migrates it over two or three ranks.
    v = b["velocity"][:, 64]
    assert np.all(np.argmax(np.linalg.norm(b["velocity"], axis=2), axis=1) == 64)
    assert np.abs(v / np.linalg.norm(v, axis=1)[:, None] - A_NORMAL).max() < 1e-12   # no force on it
    width = 1.0 / np.linalg.norm(np.linalg.inv(CELL)[:, 0]) / 5   # Å, a subdomain across a
    assert SKIN / 2 / width > 2
    # 1 x 1 x 4: at step 20 subdomain 3 is empty and subdomain 2 holds gas atom 65 alone; at
    # step 40 it has left subdomain 2 (empty) for subdomain 3
    at20 = subdomain(a["position"][list(a["step"]).index(20)], (1, 1, 4))[:, 2]
    at40 = subdomain(a["position"][-1], (1, 1, 4))[:, 2]
    assert np.bincount(at20, minlength=4).tolist() == [64, 1, 1, 0] and at20[65] == 2
    assert np.bincount(at40, minlength=4).tolist() == [64, 1, 0, 1]


# -- numdp lmp under mpiexec ---------------------------------------------------------------------------

MODELS = ("graph.000.h5", "graph.001.h5", "graph.002.h5")


def lmp_task(path, script: str):
    """A DP-GEN task folder: three random models, conf.lmp (64 atoms, a 40 Å vacuum cell) and `script`."""
    path.mkdir()
    for k, name in enumerate(MODELS):
        write_model(_model(2 + k), path / name)
    x, t, _ = rocksalt((2, 2, 2))
    write_lammps_data(path / "conf.lmp", t, x + [0.0, 0.0, 1.0], np.diag([8.0, 8.0, 40.0]))
    (path / "input.lammps").write_text(script)
    return path


def numdp_lmp(path, ranks: int, *args, timeout: float = TIMEOUT):
    """`numdp lmp -i input.lammps -v restart 0 ARGS` in `path` on `ranks` ranks; a run that has not
    ended after `timeout` s is killed with its ranks and fails the test (a hang)."""
    cmd = [sys.executable, "-m", "numdp.cli", "lmp", "-i", "input.lammps", "-v", "restart", "0", *args]
    if ranks > 1:
        cmd = [MPIEXEC, "-n", str(ranks), *cmd]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "PMIX_", "MPI_"))}
    p = subprocess.Popen(cmd, cwd=path, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        pytest.fail(f"numdp lmp on {ranks} ranks did not end within {timeout} s (a rank left waiting)\n{err[-2000:]}")
    return p.returncode, out, err


def numbers(path):
    """The numbers of a text output, line by line (words that are not numbers kept as they are)."""
    def word(w):
        try:
            return float(w)
        except ValueError:
            return w
    return [[word(w) for w in line.split()] for line in path.read_text().splitlines()]


def assert_close_text(a, b, bound: float):
    """Two text outputs with the same lines and words, numbers within `bound` (absolute)."""
    la, lb = numbers(a), numbers(b)
    assert len(la) == len(lb), (a, len(la), len(lb))
    for ra, rb in zip(la, lb):
        assert len(ra) == len(rb), (a, ra[:4], rb[:4])
        for wa, wb in zip(ra, rb):
            assert (wa == wb) if isinstance(wa, str) or isinstance(wb, str) else abs(wa - wb) <= bound, (a, wa, wb)


def test_dpgen_script_on_three_ranks_writes_the_serial_outputs_once(tmp_path):
    """DP-GEN's NVT script (three models, `atomic`, dump every 5 steps) on 3 ranks (grid 1 x 1 x 3:
    two subdomains of vacuum): model_devi.out and traj/*.lammpstrj equal the serial run's to
    round-off, same rows, atom order and columns; one summary (rank 0 prints and writes).  Bound:
    these 20 steps of a 20 K crystal move atoms by ~0.05 Å; positions and forces differ by the
    order of sums only, C_ROUND u64 max|F| (test_mpi) ~ 1e-13 * 0.01 eV/Å, deviations likewise;
    1e-12 (absolute, every value below 50) is far above that and far below a misplaced atom."""
    script = dpgen_script("nvt", models=MODELS, nsteps=20, trj_freq=5)
    serial, mpi = lmp_task(tmp_path / "serial", script), lmp_task(tmp_path / "mpi", script)
    assert numdp_lmp(serial, 1)[0] == 0
    rc, out, err = numdp_lmp(mpi, 3)
    assert rc == 0, err[-2000:]
    assert "3 MPI ranks, grid 1 x 1 x 3" in out and out.count("Loop time of") == 1
    dumps = sorted(p.name for p in (serial / "traj").iterdir())
    assert dumps == sorted(f"{s}.lammpstrj" for s in (0, 5, 10, 15, 20)) == sorted(p.name for p in (mpi / "traj").iterdir())
    for name in dumps:
        assert_close_text(serial / "traj" / name, mpi / "traj" / name, 1e-12)
    assert len(numbers(serial / "model_devi.out")) == 6   # header and steps 0, 5, ..., 20
    assert_close_text(serial / "model_devi.out", mpi / "model_devi.out", 1e-12)


TWO_RUNS = ("run             ${NSTEPS} upto\n",
            "run 4\nwrite_data {target}\nunfix 1\nfix 2 all nve\nrun 4\n")


@pytest.mark.parametrize("ranks", [1, 2])
def test_a_write_data_that_fails_between_runs_stops_every_rank(tmp_path, ranks):
    """write_data into a missing folder after the first of two runs: one line and status 2, as the
    serial run says it; on 2 ranks rank 1 went on into the second run and waited there for rank 0
    (which had stopped) forever."""
    script = dpgen_script("nvt", models=MODELS, nsteps=4, trj_freq=2).replace(
        TWO_RUNS[0], TWO_RUNS[1].format(target="missing/mid.data"))
    path = lmp_task(tmp_path / "task", script)
    rc, out, err = numdp_lmp(path, ranks, timeout=60)
    assert rc == 2, err[-2000:]
    lines = [ln for ln in err.splitlines() if "error" in ln]
    assert lines == ["numdp lmp: error: missing/mid.data: cannot write LAMMPS data file (directory missing does "
                     "not exist)"], err[-2000:]
    assert "Traceback" not in err


def test_print_toml_under_mpiexec_prints_the_input_once(tmp_path):
    script = dpgen_script("nvt", models=MODELS, nsteps=4, trj_freq=2)
    path = lmp_task(tmp_path / "task", script)
    rc, serial, _ = numdp_lmp(path, 1, "--print-toml")
    assert rc == 0 and serial.count("[model]") == 1
    rc, out, err = numdp_lmp(path, 2, "--print-toml")
    assert rc == 0, err[-2000:]
    assert out == serial


def test_an_open_system_on_two_ranks_says_to_start_it_without_mpiexec(tmp_path):
    """A cluster whose file has a cell but pbc F F F (DP-GEN's model_devi_nopbc) on 2 ranks: the line
    said "(no cell)", wrong for this file, and not what to do."""
    run = make_run(tmp_path, steps=2)
    x, t, _ = rocksalt((1, 1, 1))
    write_extxyz(run / "start.xyz", [["A", "B"][i] for i in t], x, np.diag([20.0] * 3), pbc=(False,) * 3)
    r = numdp_run(run, 2, expect=2)
    assert r.stderr.splitlines() == ["numdp run: error: a non-periodic system (no cell, or pbc false along a, b "
                                     "and c) runs on one MPI rank only, not 2: start it without mpiexec"], r.stderr
