"""Feature combinations of `numdp run` (tools/combos.py: a pairwise covering design over ensemble,
precision, model kind, system, trajectory format, thermo columns, checkpoint cadence, ranks and
restart).  Here: one test per finding of that sweep and a small slice of the design."""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import combos  # noqa: E402
from numdp.config import load_run_settings  # noqa: E402
from numdp.errors import InputError  # noqa: E402
from numdp.md.mtk import MTKBarostat  # noqa: E402
from numdp.md.setup import run_md  # noqa: E402
from numdp.system import State  # noqa: E402
from numdp.units import MVV2E  # noqa: E402


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    """The sweep's models (random se_e2_a, type_map O H; a compressed twin; one with fparam and
    aparam; a second for model deviation) and start structures (rocksalt, <= 64 atoms)."""
    path = tmp_path_factory.mktemp("fixtures")
    combos.make_fixtures(path)
    return path


def design_run(**levels) -> dict:
    run = {name: values[0] for name, values in combos.FACTORS.items()}
    run.update(levels)
    assert all(run[k] in combos.FACTORS[k] for k in run)
    return run


def run_in_process(path: Path, fixtures: Path, run: dict, steps: int, restart=None):
    combos.prepare(path, fixtures, run, steps)
    return run_md(load_run_settings(path / "md.toml"), restart=restart, screen=io.StringIO())


def split_and_straight(tmp_path, fixtures, run, middle):
    """Run 0 -> STEPS, and 0 -> middle continued to STEPS with --restart (the same input)."""
    run_in_process(tmp_path / "full", fixtures, run, combos.STEPS)
    run_in_process(tmp_path / "part", fixtures, run, middle)
    return run_in_process(tmp_path / "part", fixtures, run, combos.STEPS, restart=tmp_path / "part" / "ck.h5")


# -- finding: an isotropic MTK barostat's restart was not bit for bit ----------------------------------

def test_restored_isotropic_strain_rate_keeps_its_bits():
    """MTKBarostat.initialize made a restored isotropic μ = ν I into (tr μ / 3) I: (ν + ν + ν) / 3
    is not ν for about one ν in six (here 0.7002730583367989 -> ...799), so a restart from a
    checkpoint left the uninterrupted run by one ulp of the cell's momentum."""
    nu = 0.7002730583367989
    assert (nu + nu + nu) / 3 != nu     # the value does exercise the rounding
    state = State(positions=np.zeros((1, 3)), velocities=np.zeros((1, 3)), masses=np.ones(1),
                  types=np.zeros(1, dtype=np.int32), type_map=["O"], ids=np.zeros(1, dtype=np.int64),
                  box=np.eye(3) * 10.0)
    state.barostat = {"nu": np.eye(3) * nu, "xi": np.zeros(3), "vxi": np.zeros(3)}
    MTKBarostat(1.0, 1.0, "isotropic", 300.0).initialize(state)
    assert state.barostat["nu"][0, 0] == nu
    assert np.array_equal(state.barostat["nu"], np.eye(3) * nu)


def test_isotropic_mtk_npt_restart_is_bit_for_bit(tmp_path, fixtures):
    """docs/md.md (Restart; mtk: "restarts continue bit for bit"): 0 -> 16 against 0 -> 10 -> 16
    with the same input, isotropic mtk NPT (the sweep's run that found it: 16 = 8 + 8 on 2 ranks).
    (The stopped run wrote a last frame at step 10, off the cadence: only the checkpoints compare.)"""
    run = design_run(ensemble="npt-mtk-iso")
    split_and_straight(tmp_path, fixtures, run, 10)
    diffs = combos.compare_runs(tmp_path / "full", tmp_path / "part", run)
    assert [d for d in diffs if d.startswith("checkpoint")] == []


# -- finding: NPH on a slab was refused as 'npt' --------------------------------------------------------

@pytest.mark.parametrize("system", ["slab", "cluster"])
def test_nph_without_a_periodic_cell_is_refused_naming_nph(tmp_path, fixtures, system):
    """The refusal named `ensemble = 'npt'` for an input that says 'nph'."""
    with pytest.raises(InputError, match=r"\[md\] ensemble = 'nph' needs"):
        run_in_process(tmp_path, fixtures, design_run(ensemble="nph", system=system), combos.STEPS)


# -- a slice of the design ------------------------------------------------------------------------------

def verlet_omega_max(fixtures: Path, model: str) -> float:
    """1/ps: the highest angular frequency of the crystal (the cubic 64-atom start), from the
    mass-weighted Hessian by central differences of the forces (step 1e-4 Å: its truncation error
    is 1e-8 relative, its round-off 1e-12 eV/Å over 1e-4 Å, both far below the eigenvalue)."""
    import numdp
    from numdp.io.structure import read_structure
    s = read_structure(fixtures / "cubic.xyz")
    m = numdp.load_model(fixtures / f"{model}.h5")
    x, h = s.positions, 1e-4
    types = np.array([("O", "H").index(e) for e in s.elements], dtype=np.int32)
    hess = np.empty((x.size, x.size))
    for i in range(x.size):
        xp, xm = x.copy(), x.copy()
        xp.flat[i] += h
        xm.flat[i] -= h
        hess[i] = -(m.evaluate(xp, types, s.box).forces - m.evaluate(xm, types, s.box).forces).ravel() / (2 * h)
    mass = np.array([combos.MASSES[("O", "H")[t]] for t in types]).repeat(3)
    d = 0.5 * (hess + hess.T) / np.sqrt(np.outer(mass, mass)) / MVV2E
    return float(np.sqrt(np.linalg.eigvalsh(d)[-1]))


def test_nve_compressed_mix32_triclinic_extxyz_custom_columns(tmp_path, fixtures):
    """NVE with the compressed model in mix32 on the tilted cell: the total energy (every step
    in the log's thermo lines) stays within velocity Verlet's band f / (1 - f) (E - U_min),
    f = (w_max dt / 2)^2, E - U_min <= 2 max K near the harmonic lattice (tools/combos.py), plus
    the log's 1e-6 eV digits and mix32's energy round-off (64 atoms x 100 u32 x |e_atom| per
    evaluation, twice); the extxyz trajectory reads back in ASE with its energies and step."""
    run = design_run(model="compressed", precision="mix32", system="triclinic", traj="extxyz", thermo="custom")
    run_in_process(tmp_path, fixtures, {**run, "thermo": "default"}, combos.STEPS)
    head, rows = combos.thermo_rows(tmp_path)
    e, k, pe = (rows[:, head.index(c)] for c in ("etotal", "ke", "pe"))
    omega = verlet_omega_max(fixtures, "plain")
    band = combos.verlet_band(e, k.max(), omega)
    roundoff = 2 * 100 * 2.0 ** -24 * np.abs(pe).max()
    assert np.abs(e - e[0]).max() <= band + 2e-6 + roundoff, (np.abs(e - e[0]).max(), band, roundoff)
    assert np.abs(e - e[0]).max() > 0     # the atoms did move
    frames = ase.io.read(tmp_path / "traj.extxyz", ":")
    assert [a.info["step"] for a in frames] == list(range(0, combos.STEPS + 1, 4))
    assert np.allclose([a.info["total_energy"] for a in frames], e[::4], atol=1e-6)
    # custom LAMMPS columns on the same run
    run_in_process(tmp_path / "custom", fixtures, run, 4)
    head, rows = combos.thermo_rows(tmp_path / "custom")
    assert head == json.loads(combos.CUSTOM_COLUMNS.split("=", 1)[1]) and np.isfinite(rows).all()


def test_csvr_deviation_replicated_lammps_dump_restarts_bit_for_bit(tmp_path, fixtures):
    """CSVR, a two-model ensemble with [model_devi], a replicated cell, a LAMMPS dump, a checkpoint
    every 4 steps: stopped at 8 and continued, the checkpoint, the dump and the deviation file
    equal the uninterrupted run's; the dump reads in ASE."""
    run = design_run(ensemble="nvt-csvr", model="devi", system="replicated", traj="lammps-dump", checkpoint=4)
    split_and_straight(tmp_path, fixtures, run, 8)
    assert combos.compare_runs(tmp_path / "full", tmp_path / "part", run) == []
    frames = ase.io.read(tmp_path / "full" / "traj.lammpstrj", ":", format="lammps-dump-text")
    assert len(frames) == 5 and len(frames[0]) == 32
    assert len((tmp_path / "full" / "devi.out").read_text().splitlines()) == 1 + 5


def test_mtk_on_two_ranks_restarts_bit_for_bit(tmp_path, fixtures):
    """The sweep's run 1 (isotropic mtk NPT, compressed model, 2 ranks, a checkpoint every 4
    steps): 0 -> 16 against 0 -> 8 -> 16, bit for bit on the same rank count (docs/mpi.md)."""
    from test_mpi import MPIEXEC, _mpi4py

    if MPIEXEC is None or not _mpi4py():
        pytest.skip("MPI tests need mpi4py and mpiexec (pip install -e '.[mpi]'), as tests/test_mpi.py")
    run = design_run(ensemble="npt-mtk-iso", model="compressed", checkpoint=4, ranks=2)
    for name, steps in (("full", combos.STEPS), ("part", 8)):
        combos.prepare(tmp_path / name, fixtures, run, steps)
        assert combos.numdp_run(tmp_path / name, 2).returncode == 0
    (tmp_path / "part" / "md.toml").write_text(combos.input_text(run, combos.STEPS))
    r = combos.numdp_run(tmp_path / "part", 2, "--restart", "ck.h5")
    assert r.returncode == 0, r.stderr
    assert combos.compare_runs(tmp_path / "full", tmp_path / "part", run) == []


def test_a_cluster_on_two_ranks_is_one_line(tmp_path, fixtures):
    """docs/mpi.md#limits: an open system runs on one rank; on two, one line and exit status 2."""
    run = design_run(system="cluster", ranks=2)
    combos.prepare(tmp_path, fixtures, run)
    r = combos.numdp_run(tmp_path, 2)
    assert combos.single_error_line(r) and "start it without mpiexec" in r.stderr, r.stderr
