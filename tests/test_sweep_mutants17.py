"""Tests added by mutation round 17 (how an MD run starts, steps and restarts: numdp.md.start,
.setup, .loop, .integrator, numdp.system): each kills a plausible mistake that tests/test_md*.py,
test_nve*.py, test_start.py, test_sweep_md.py and the earlier mutation rounds let through (the
mutant named in the test's docstring).  Small states built directly, no model file: the whole
file runs in a second or two."""
from __future__ import annotations

import numpy as np

from numdp.config import load_run_settings
from numdp.md.reporters import snapshot
from numdp.md.start import maxwell_boltzmann, structure_atoms
from numdp.io.structure import write_extxyz
from numdp.system import State, kinetic_energy, kinetic_tensor
from numdp.units import KB

EPS = np.finfo(np.float64).eps


def _two_species(n: int = 100) -> State:
    """n H (1.008 amu) and n O (15.999 amu) in a 20 Å cube, velocities zero."""
    rng = np.random.default_rng(3)
    return State(positions=rng.uniform(0.0, 20.0, (2 * n, 3)), velocities=np.zeros((2 * n, 3)),
                 types=np.repeat(np.arange(2, dtype=np.int32), n),
                 masses=np.concatenate([np.full(n, 1.008), np.full(n, 15.999)]), box=np.eye(3) * 20.0,
                 type_map=["H", "O"], ids=np.arange(2 * n, dtype=np.int64), seed=7)


def test_drawn_velocities_of_two_species_have_zero_momentum_and_the_exact_temperature():
    """numdp.md.start.maxwell_boltzmann: zero total momentum Σ m v (mass-weighted: the centre of
    mass at rest), then an exact rescale to the target with N_f = 3N - 3.  With one species (the
    argon of tests/test_md_dynamics.py) equal weights and mass weights are the same thing; with H
    and O they are not.  Bounds from round-off: each component of Σ m v is a sum of 2n terms,
    zero up to (2n) ε Σ m |v| (twice that for the rescale after it); the temperature is K's sum
    (relative error <= 2n ε) computed twice (before and after the rescale): 4 (2n) ε.
    Mutants killed: the momentum in maxwell_boltzmann zeroed with equal weights
    (`zero_momentum(v, ones)`: Σ v = 0 but Σ m v != 0, and the rescale then counts the centre-of-
    mass motion), and numdp.system.zero_momentum subtracting the unweighted mean velocity."""
    st = _two_species()
    n2 = st.natoms
    maxwell_boltzmann(st, 300.0, 11)
    p = st.masses @ st.velocities
    scale = float(st.masses @ np.abs(st.velocities).sum(axis=1))
    assert np.abs(p).max() <= 2.0 * n2 * EPS * scale, p
    t = 2.0 * kinetic_energy(st.velocities, st.masses) / ((3 * n2 - 3) * KB)
    assert abs(t / 300.0 - 1.0) <= 4.0 * n2 * EPS
    # the unweighted mean velocity is not zero (a few % of the rms speed for these n: it is the
    # mass-weighted sum that vanishes), so the test tells the two weightings apart
    assert np.abs(st.velocities.mean(axis=0)).max() > 1e-3 * np.sqrt(np.mean(st.velocities ** 2))


def test_volume_and_pressure_of_a_left_handed_cell():
    """State.volume is |det(box)| (numdp.geometry.check_box accepts left-handed cells: two cell
    vectors swapped), and the thermo line's press is the virial pressure (2K + tr W) / (3V)
    (numdp.system.pressure; K = ½ Σ m v²; 1 eV/Å³ = 1.602176634e6 bar
    exactly, from e = 1.602176634e-19 C).  Two He atoms at ±10 Å/ps along x: Σ m v² = 800
    amu Å²/ps², tr W = 0.03 eV, V = 8 · 9 · 7 = 504 Å³ (numpy's det: an LU product, a few ε off).
    The expected pressure is a handful of roundings from the one numdp computes: rel 1e-12.
    Mutants killed: State.volume returning det(box) (a negative volume and pressure), and the
    scalar pressure taking K for 2K (the kinetic part halved)."""
    from numdp.units import MVV2E

    box = np.array([[0.0, 9.0, 0.0], [8.0, 0.0, 0.0], [0.0, 0.0, 7.0]])   # a and b of a 8 x 9 x 7 cell swapped
    assert np.linalg.det(box) < 0.0
    st = State(positions=np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
               velocities=np.array([[10.0, 0.0, 0.0], [-10.0, 0.0, 0.0]]), types=np.zeros(2, np.int32),
               masses=np.full(2, 4.0), box=box, type_map=["He"], ids=np.arange(2, dtype=np.int64),
               virial=np.eye(3) * 0.01, potential_energy=0.0)
    assert abs(st.volume - 504.0) <= 8 * EPS * 504.0
    s = snapshot(st)
    two_k = 800.0 * MVV2E   # eV
    assert abs(s.vol - 504.0) <= 8 * EPS * 504.0
    assert abs(s.press / ((two_k + 0.03) / (3.0 * 504.0) * 1.602176634e6) - 1.0) <= 1e-12


def test_kinetic_tensor_off_diagonal_is_the_full_sum_of_m_vi_vj():
    """numdp.system.kinetic_tensor = Σ m v ⊗ v (eV): compared element by element with the sum
    written out for three atoms.  Each element is a sum of 3 products (a product rounded once,
    the sum twice more): |error| <= 4 ε Σ |terms|.
    Mutant killed: the off-diagonal halved (a symmetrised product divided by 2 twice)."""
    from numdp.units import MVV2E

    v = np.array([[1.0, -2.0, 0.5], [0.3, 0.7, -1.1], [-0.9, 0.4, 2.0]])
    m = np.array([1.0, 12.0, 16.0])
    terms = (m * MVV2E)[:, None, None] * v[:, :, None] * v[:, None, :]
    want = terms.sum(axis=0)
    got = kinetic_tensor(v, m)
    assert np.all(np.abs(got - want) <= 4.0 * EPS * np.abs(terms).sum(axis=0))
    assert np.abs(want - np.diag(np.diag(want))).max() > 0.1 * np.abs(want).max()   # off-diagonals matter


LAMMPS_ORDER = """
[model]
file = "unused.h5"
[system]
file = "start.xyz"
replicate = [2, 2, 3]
replicate_order = "ORDER"
[md]
timestep = 0.001
steps = 1
"""


def test_lammps_replicate_order_numbers_the_replicas_a_fastest(tmp_path):
    """[system] replicate_order = "lammps": LAMMPS' replicate gives the copy (i, j, k) of atom a
    the id a + (i + na (j + nb k)) n (i over a fastest), at x_a + i A + j B + k C; "numdp" (ASE's
    repeat) numbers the copies with k fastest: a + (k + nc (j + nb i)) n.  2 x 2 x 3 copies of a
    2-atom triclinic cell, ids 0 .. 23 in order.  The shift is a matrix product of small integers
    and the cell, within 3 ε |x| + 3 ε Σ |shift terms| of the sum written out.
    Mutants killed: structure_atoms not passing [system] replicate_order on (every run in numdp's
    order, numdp lmp's replicate ids no longer LAMMPS'), and ReplicatedAtoms splitting an id as
    (i, replica) instead of (replica, i)."""
    box = np.array([[5.0, 0.0, 0.0], [1.0, 6.0, 0.0], [-0.5, 0.7, 7.0]])
    x = np.array([[0.5, 1.0, 1.5], [2.5, 3.5, 4.0]])
    write_extxyz(tmp_path / "start.xyz", ["Ar", "Ar"], x, box)
    reps = (2, 2, 3)
    for order in ("lammps", "numdp"):
        (tmp_path / f"{order}.toml").write_text(LAMMPS_ORDER.replace("ORDER", order))
        source = structure_atoms(load_run_settings(tmp_path / f"{order}.toml"), ["Ar"])
        got = np.concatenate([b["positions"] for b in source.blocks(5)])
        ids = np.concatenate([b["ids"] for b in source.blocks(5)])
        assert np.array_equal(ids, np.arange(24))
        for i in range(reps[0]):
            for j in range(reps[1]):
                for k in range(reps[2]):
                    r = i + 2 * (j + 2 * k) if order == "lammps" else k + 3 * (j + 2 * i)
                    shift = i * box[0] + j * box[1] + k * box[2]
                    bound = 3 * EPS * (np.abs(x) + np.abs(i * box[0]) + np.abs(j * box[1]) + np.abs(k * box[2]))
                    assert np.all(np.abs(got[2 * r: 2 * r + 2] - (x + shift)) <= bound), (order, i, j, k)


MASSES = """
[model]
file = "unused.h5"
[system]
file = "FILE"
MASSES
[md]
timestep = 0.001
steps = 1
"""


def test_masses_come_from_the_override_then_the_file_then_each_element(tmp_path):
    """numdp.md.start._masses, per species: [system] masses.ELEMENT wins over the structure
    file's masses, which win over the standard atomic weight of the atom's own element (IUPAC
    2021 abridged: H 1.008, O 15.999).  A LAMMPS data file of types 1 (H, file mass 2.014: a
    deuterium run) and 2 (O, file mass 17.0) with an override for O only; the same atoms from an
    extended XYZ file (no masses) without an override.  Exact: the masses are copied, not computed.
    Mutants killed: the file's mass winning over the override (the override applied only to a
    file without masses), and the standard mass looked up for type 0's element whatever the
    atom's species (every atom of a water run a hydrogen: the tests' argon has one species)."""
    from numdp.io.structure import write_lammps_data

    types = np.array([0, 1, 0, 1, 1])
    x = np.random.default_rng(5).uniform(0.0, 6.0, (5, 3))
    box = np.eye(3) * 6.0
    write_lammps_data(tmp_path / "start.data", types, x, box, [2.014, 17.0])
    write_extxyz(tmp_path / "start.xyz", [["H", "O"][t] for t in types], x, box)
    names = 'type_names = ["H", "O"]\n'   # the data file's types 1, 2
    cases = [("start.data", names + "masses = { O = 16.5 }", [2.014, 16.5]),
             ("start.data", names, [2.014, 17.0]),
             ("start.xyz", "", [1.008, 15.999])]
    for n, (file, masses, by_type) in enumerate(cases):
        (tmp_path / f"{n}.toml").write_text(MASSES.replace("FILE", file).replace("MASSES", masses))
        got = np.concatenate([b["masses"] for b in structure_atoms(load_run_settings(tmp_path / f"{n}.toml"),
                                                                   ["H", "O"]).blocks(8)])
        assert got.tolist() == [by_type[t] for t in types], (file, masses)


def test_a_run_ending_off_the_trajectory_cadence_ends_with_its_last_step_frame(tmp_path):
    """[output] every = 5 and [md] steps = 7: frames 0, 5 and 7 (numdp writes the end frame off
    the cadence too: TrajectoryReporter.write_end, [output] end_frame = true by default), the
    last one the state of the final checkpoint bit for bit.  The existing runs end on their
    cadence (60 or 40 steps, every 5), where the end frame is a regular one.
    The frames' and the checkpoint's time is step · dt ([md] timestep = 0.01 ps).
    Mutants killed: Simulation.run's end not writing the end frame (the last 2 steps lost from
    the trajectory; a restart from the checkpoint then continues a file that misses them), and
    VelocityVerlet.step advancing state.time by dt/2 (the restart tests compare two runs of the
    same integrator, so a wrong clock passed them)."""
    import h5py

    from numdp.io.h5md import read_checkpoint
    from test_md_run import argon_dir, run

    toml = argon_dir(tmp_path, KIND="csvr", **{"steps = 60": "steps = 7"})
    run(toml)
    ck = read_checkpoint(tmp_path / "ck.h5")
    assert ck.step == 7
    with h5py.File(tmp_path / "traj.h5md", "r") as f:
        assert f["particles/trajectory/position/step"][()].tolist() == [0, 5, 7]
        assert np.array_equal(f["particles/trajectory/position/value"][-1], ck.positions)
        times = f["particles/trajectory/position/time"][()]
    # the time is the sum of `step` timesteps of 0.01 ps: within step · ε · t of step · dt
    for step, t in zip((0, 5, 7, 7), times.tolist() + [ck.time]):
        assert abs(t - 0.01 * step) <= 8 * EPS * 0.07, (step, t)
    assert len(times) == 3


def test_a_restart_counts_only_its_own_steps(tmp_path):
    """A run restarted at step 5 and run to step 8 made 3 steps: RunResult.steps (the summary's
    "Loop time of ... for 3 steps", ns/day and µs/atom/step) counts the steps of this run, not
    the checkpoint's step counter.
    Mutant killed: RunResult(steps=state.step) (a restart at step 1e6 claiming a speed 1e6/3
    times too high)."""
    from test_md_run import argon_dir, run

    toml = argon_dir(tmp_path, KIND="csvr", **{"steps = 60": "steps = 5"})
    assert run(toml).steps == 5
    toml.write_text(toml.read_text().replace("steps = 5", "steps = 8"))
    assert run(toml, restart=tmp_path / "ck.h5").steps == 3
    assert "for 3 steps" in (tmp_path / "log.txt").read_text()
