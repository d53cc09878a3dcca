"""Energy minimization in `numdp run` ([minimize], numdp.md.minimize): FIRE 2.0 as LAMMPS'
`min_style fire` against a NumPy reference of the same algorithm, the stopping criteria, the
outputs (thermo columns, the checkpoint at rest that starts MD), restarts, input errors, and 2 MPI
ranks against the serial run."""
from __future__ import annotations

import io
import math
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from numdp.config import load_run_settings
from numdp.errors import InputError
from numdp.io.h5md import read_checkpoint
from numdp.io.structure import read_structure, write_extxyz, write_lammps_data
from numdp.kernels.cpu.md import fire_euler_step, force_norms
from numdp.md.reporters import CheckpointReporter
from numdp.md.setup import run_md
from numdp.system import to_arrays
from numdp.units import MVV2E
from test_md_potential import MASS_AR, LennardJones, fcc

MIN = """
[model]
file = "unused.h5"
[system]
file = "start.xyz"
[minimize]
steps = 400
ftol = 1e-4
[neighbor]
skin = 1.0
[output]
trajectory = "traj.h5md"
every = 10
thermo_every = 10
checkpoint = "ck.h5"
progress = "none"
"""


def cluster(path: Path, text=MIN, jitter=0.08, seed=1, **replace) -> Path:
    """An open cluster of 32 Ar atoms (an fcc block, jittered) and the input `text` in `path`."""
    path.mkdir(parents=True, exist_ok=True)
    x, _ = fcc(2, 5.3)
    x = x + np.random.default_rng(seed).normal(scale=jitter, size=x.shape)
    write_extxyz(path / "start.xyz", ["Ar"] * len(x), x)
    for key, value in replace.items():
        assert key in text, key
        text = text.replace(key, value)
    (path / "min.toml").write_text(text)
    return path / "min.toml"


def crystal(path: Path, text=MIN, jitter=0.1, seed=2, **replace) -> Path:
    """A periodic fcc Ar crystal of 32 atoms (jittered) as a LAMMPS data file, and the input."""
    path.mkdir(parents=True, exist_ok=True)
    x, box = fcc(2, 5.3)
    x = x + np.random.default_rng(seed).normal(scale=jitter, size=x.shape)
    write_lammps_data(path / "start.data", np.zeros(len(x), int), x, box, [MASS_AR])
    text = text.replace('file = "start.xyz"', 'file = "start.data"\ntype_names = ["Ar"]')
    for key, value in replace.items():
        assert key in text, key
        text = text.replace(key, value)
    (path / "min.toml").write_text(text)
    return path / "min.toml"


def run(toml, restart=None, model=None, screen=None):
    return run_md(load_run_settings(toml), restart=restart, model=model or LennardJones(),
                  screen=screen if screen is not None else io.StringIO())


def thermo_rows(log: str) -> list[list[float]]:
    """The rows of the thermo block under the `step pe fnorm fmax` header."""
    lines = log.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split() == ["step", "pe", "fnorm", "fmax"])
    rows = []
    for line in lines[start + 1:]:
        words = line.split()
        try:
            rows.append([float(w) for w in words])
        except ValueError:
            if line.startswith("Loop time"):
                break
    return [r for r in rows if len(r) == 4]


# -- the FIRE update against a NumPy reference -------------------------------------------------------------


def fire_reference(x, masses, p: dict, iterations: int, energy_forces):
    """FIRE 2.0 as docs/md.md ("Energy minimization") states it, in NumPy, for `iterations`
    iterations from rest: returns positions, velocities, dt, alpha and what happened (resets,
    steps limited by dmax, mixed steps, force evaluations)."""
    dt0 = p["timestep"]
    dt, alpha = dt0, p["alpha0"]
    last_negative = 0
    v = np.zeros_like(x)
    _, f = energy_forces(x)
    inv_m = 1.0 / (masses[:, None] * MVV2E)
    seen = {"resets": 0, "limited": 0, "mixed": 0, "evaluations": 0}
    for it in range(1, iterations + 1):
        power = float(np.sum(f * v))
        if power > 0:
            seen["mixed"] += 1
            keep = 1.0 - alpha
            ff = float(np.sum(f * f))
            towards_f = 0.0 if ff <= 1e-20 else alpha * math.sqrt(float(np.sum(v * v)) / ff)
            if it - last_negative > p["delaystep"]:
                dt = min(dt * p["dtgrow"], p["tmax"] * dt0)
                alpha *= p["alphashrink"]
            limit_v = v
        else:
            last_negative = it
            if it >= p["delaystep"]:   # initialdelay
                alpha = p["alpha0"]
                if dt * p["dtshrink"] >= p["tmin"] * dt0:
                    dt *= p["dtshrink"]
            if np.any(v != 0):
                seen["resets"] += 1
                x = x - 0.5 * dt * v
                _, f = energy_forces(x)
            seen["evaluations"] += 1   # LAMMPS evaluates (and counts) after every reset of v, the first too
            v = np.zeros_like(x)
            limit_v = dt * f * inv_m
        vmax = float(np.abs(limit_v).max())
        h = dt
        if dt * vmax > p["dmax"]:
            h = p["dmax"] / vmax
            seen["limited"] += 1
        v = v + h * f * inv_m
        if power > 0:
            v = keep * v + towards_f * f
        x = x + h * v
        _, f = energy_forces(x)
        seen["evaluations"] += 1
    return x, v, dt, alpha, seen


@pytest.mark.parametrize("params", [
    {},   # LAMMPS' defaults
    {"timestep": 0.01, "delaystep": 3, "dmax": 0.02, "tmax": 4.0},   # overshoots: resets, dmax limits
])
def test_fire_iterations_match_a_numpy_reference(tmp_path, params):
    """40 iterations on a jittered 32-atom Ar cluster (shifted-force Lennard-Jones injected as the
    model) give the positions, velocities, dt and alpha of the NumPy reference to round-off (the
    reference's forces are summed in another order)."""
    p = {"timestep": 0.001, "alpha0": 0.25, "alphashrink": 0.99, "delaystep": 20, "dtgrow": 1.1,
         "dtshrink": 0.5, "tmax": 10.0, "tmin": 0.02, "dmax": 0.1}
    p.update(params)
    keys = "".join(f"{k} = {v}\n" for k, v in params.items())
    toml = cluster(tmp_path, **{"steps = 400\nftol = 1e-4\n": f"steps = 40\nftol = 0.0\n{keys}",
                                "every = 10": "every = 40"})
    lj = LennardJones()
    run(toml, model=lj)
    x0 = np.asarray(read_structure(tmp_path / "start.xyz").positions)
    masses = np.full(len(x0), MASS_AR)
    x, v, dt, alpha, seen = fire_reference(x0, masses, p, 40, lambda y: lj.energy_forces_virial(y, None)[:2])
    # the first write of the run is the final checkpoint at rest; its trajectory frame at step 40 too
    ck = read_checkpoint(tmp_path / "ck.h5")
    assert ck.step == 40 and not ck.velocities.any()
    scale = np.abs(x).max()
    assert np.abs(ck.positions - x).max() <= 1e-11 * scale
    assert math.isclose(float(ck.minimize["dt"]), dt, rel_tol=1e-12)
    assert math.isclose(float(ck.minimize["alpha"]), alpha, rel_tol=1e-12)
    assert int(ck.minimize["evaluations"]) == seen["evaluations"]
    if params:
        assert seen["resets"] > 0 and seen["limited"] > 0 and seen["mixed"] > 0
    else:
        assert seen["mixed"] > 0


def test_fire_kernels_against_numpy():
    rng = np.random.default_rng(0)
    x, v, f = rng.normal(size=(7, 3)), rng.normal(size=(7, 3)), rng.normal(size=(7, 3))
    m = rng.uniform(1, 50, 7)
    x1, v1 = x.copy(), v.copy()
    fire_euler_step(x1, v1, f, m, 0.01, True, 0.8, 0.3)
    vr = v + 0.01 * f / (m[:, None] * MVV2E)
    vr = 0.8 * vr + 0.3 * f
    assert np.allclose(v1, vr, rtol=1e-14, atol=0) and np.allclose(x1, x + 0.01 * vr, rtol=1e-14, atol=0)
    ff, fmax2, finf = force_norms(f)
    assert math.isclose(ff, float(np.sum(f * f)), rel_tol=1e-14)
    assert fmax2 == np.max(np.sum(f * f, axis=1)) and finf == np.abs(f).max()


# -- stopping criteria and outputs ----------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["two", "max", "inf"])
def test_a_perturbed_crystal_relaxes_and_stops_on_ftol(tmp_path, norm):
    toml = crystal(tmp_path, **{"ftol = 1e-4": f"ftol = 1e-4\nnorm = \"{norm}\""})
    screen = io.StringIO()
    result = run(toml, screen=screen)
    log = (tmp_path / "log.txt").read_text()
    assert log.endswith(screen.getvalue()[-200:])
    ck = read_checkpoint(tmp_path / "ck.h5")
    assert 0 < ck.step < 400 and result.steps == ck.step
    e, f, _ = LennardJones().energy_forces_virial(ck.positions, ck.box)
    value = {"two": np.linalg.norm(f), "max": np.linalg.norm(f, axis=1).max(), "inf": np.abs(f).max()}[norm]
    assert value < 1e-4 * (1 + 1e-6)
    rows = thermo_rows(log)
    assert rows[0][0] == 0 and rows[-1][0] == ck.step
    assert e < rows[0][1] - 1e-3 and math.isclose(e, rows[-1][1], abs_tol=1e-6)
    assert [r[0] for r in rows[1:-1]] == list(range(10, ck.step, 10))
    assert f"Stopping criterion = force tolerance ([minimize] ftol): force norm ({norm})" in log
    last = log.strip().splitlines()
    assert last[-6].startswith("  Stopping criterion") and last[-1].startswith("  Final FIRE timestep")
    assert not ck.velocities.any() and np.array_equal(ck.box, np.eye(3) * 10.6)   # at rest, box fixed
    with h5py.File(tmp_path / "traj.h5md", "r") as h5:
        steps = h5["particles/trajectory/position/step"][()].tolist()
        assert steps == list(range(0, ck.step, 10)) + [ck.step]
        assert np.array_equal(h5["particles/trajectory/velocity/value"][-1], np.zeros((32, 3)))


def test_stops_on_steps_and_on_etol(tmp_path):
    steps = crystal(tmp_path / "steps", **{"steps = 400": "steps = 7"})
    run(steps)
    log = (tmp_path / "steps" / "log.txt").read_text()
    assert "Stopping criterion = max iterations ([minimize] steps): reached steps = 7 (not converged" in log
    assert "Iterations, force evaluations = 7 8" in log   # the first iteration's reset of v at rest counts one
    assert read_checkpoint(tmp_path / "steps" / "ck.h5").step == 7
    etol = crystal(tmp_path / "etol", **{"ftol = 1e-4": "ftol = 0.0\netol = 1e-6"})
    run(etol)
    log = (tmp_path / "etol" / "log.txt").read_text()
    assert "Stopping criterion = energy tolerance ([minimize] etol)" in log
    ck = read_checkpoint(tmp_path / "etol" / "ck.h5")
    e, e_prev = ck.potential_energy, float(ck.minimize["e_previous"])
    assert 0 < ck.step < 400
    assert abs(e - e_prev) < 1e-6 * 0.5 * (abs(e) + abs(e_prev) + 1e-8)
    assert float(ck.minimize["e_initial"]) > e


def test_the_final_checkpoint_starts_md_at_rest(tmp_path):
    toml = crystal(tmp_path)
    run(toml)
    ck = read_checkpoint(tmp_path / "ck.h5")
    md = tmp_path / "md.toml"
    md.write_text("""
[model]
file = "unused.h5"
[system]
file = "ck.h5"
[md]
timestep = 0.002
steps = 10
[neighbor]
skin = 1.0
[output]
trajectory = "md.h5md"
every = 5
log = "md.log"
checkpoint = "md_ck.h5"
progress = "none"
""")
    run(md)
    with h5py.File(tmp_path / "md.h5md", "r") as h5:
        g = h5["particles/trajectory"]
        assert g["position/step"][()].tolist() == [0, 5, 10]    # a new run from step 0
        assert np.array_equal(g["velocity/value"][0], np.zeros((32, 3)))
        assert np.array_equal(g["position/value"][0], ck.positions)
    assert "restarted" not in (tmp_path / "md.log").read_text()
    after = read_checkpoint(tmp_path / "md_ck.h5")
    assert after.step == 10 and not after.minimize
    # at the minimum the forces are below ftol, so 10 steps from rest hardly move the atoms
    assert np.abs(after.positions - ck.positions).max() < 1e-4
    # with [system] velocities the same checkpoint starts at a temperature
    md.write_text(md.read_text().replace('file = "ck.h5"', 'file = "ck.h5"\nvelocities = { temperature = 30.0 }'))
    run(md)
    with h5py.File(tmp_path / "md.h5md", "r") as h5:
        assert np.abs(h5["particles/trajectory/velocity/value"][0]).max() > 0
    # replicated: 2 x 1 x 1 copies of the relaxed cell
    md.write_text(md.read_text().replace("velocities = { temperature = 30.0 }", "replicate = [2, 1, 1]"))
    run(md)
    with h5py.File(tmp_path / "md.h5md", "r") as h5:
        assert h5["particles/trajectory/position/value"].shape[1] == 64
    # an MD checkpoint as the [system] file of a minimization is its start structure (step 0)
    again = tmp_path / "again.toml"
    again.write_text(toml.read_text().replace('file = "start.data"\ntype_names = ["Ar"]', 'file = "md_ck.h5"')
                     .replace('checkpoint = "ck.h5"', 'checkpoint = "ck2.h5"\nlog = "again.log"'))
    run(again)
    assert "restarted" not in (tmp_path / "again.log").read_text()
    assert read_checkpoint(tmp_path / "ck2.h5").minimize["start_step"] == 0
    # --restart with the minimization's checkpoint is refused by an MD input (one line)
    with pytest.raises(InputError, match=r"ck.h5: an energy minimization's checkpoint, which only a \[minimize\]"):
        run(md, restart=tmp_path / "ck.h5")
    # and an MD checkpoint by a minimization
    with pytest.raises(InputError, match=r"md_ck.h5: an MD checkpoint, which only an \[md\] input continues"):
        run(toml, restart=tmp_path / "md_ck.h5")


def test_restart_continues_the_minimization_bit_for_bit(tmp_path, monkeypatch):
    """A checkpoint written during the run (checkpoint_every) holds FIRE's state: restarting from
    it with the same input ends in the uninterrupted run's final checkpoint, bit for bit."""
    text = MIN.replace("steps = 400\nftol = 1e-4", "steps = 60\nftol = 0.0").replace(
        'checkpoint = "ck.h5"', 'checkpoint = "ck.h5"\ncheckpoint_every = 25')
    full = crystal(tmp_path / "full", text)
    part = crystal(tmp_path / "part", text)
    write = CheckpointReporter.write

    def keep_step_25(self, s, path):
        write(self, s, path)
        if s.step == 25:
            shutil.copy(path, Path(path).with_name("ck25.h5"))

    monkeypatch.setattr(CheckpointReporter, "write", keep_step_25)
    run(full)
    mid = read_checkpoint(tmp_path / "full" / "ck25.h5")
    assert mid.step == 25 and mid.velocities.any() and float(mid.minimize["dt"]) > 0
    shutil.copy(tmp_path / "full" / "ck25.h5", tmp_path / "part" / "ck.h5")
    screen = io.StringIO()
    run(part, restart=tmp_path / "part" / "ck.h5", screen=screen)
    assert "restarted from" in screen.getvalue()
    a = to_arrays(read_checkpoint(tmp_path / "full" / "ck.h5"))
    b = to_arrays(read_checkpoint(tmp_path / "part" / "ck.h5"))
    assert a.keys() == b.keys() and int(a["step"]) == 60
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    # the same input again: nothing to run at step 60
    screen = io.StringIO()
    assert run(part, restart=tmp_path / "part" / "ck.h5", screen=screen) is None
    assert "nothing to run: the state is at step 60, [minimize] steps = 60" in screen.getvalue()


# -- input errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("old, new, expected", [
    ("[minimize]", "[md]\ntimestep = 0.001\nsteps = 10\n[minimize]",
     "[md] and [minimize]: an input is either dynamics ([md]) or an energy minimization ([minimize]), not both"),
    ("[minimize]\nsteps = 400\nftol = 1e-4\n", "", "[md]: required table missing (or [minimize]"),
    ("steps = 400\n", "", "[minimize] steps: required"),
    ("steps = 400", 'steps = 400\nstyle = "bfgs"', "[minimize] style: 'bfgs' is not available; numdp implements 'fire'"),
    ("steps = 400", 'steps = 400\nintegrator = "verlet"', "[minimize] integrator: 'verlet' is not available"),
    ("steps = 400", 'steps = 400\nnorm = "one"', "[minimize] norm: must be one of 'two', 'max', 'inf', got 'one'"),
    ("ftol = 1e-4", "ftol = -1.0", "[minimize] ftol: must be >= 0"),
    ("steps = 400", "steps = 400\ntmax = 0.01", "[minimize] tmax: must be >= tmin = 0.02"),
    ("steps = 400", "steps = 400\ndtgrow = 0.9", "[minimize] dtgrow: must be >= 1"),
    ("steps = 400", "steps = 400\ntemperature = 3.0", "[minimize] temperature: unknown key"),
    ('file = "start.xyz"', 'file = "start.xyz"\nvelocities = { temperature = 10.0 }',
     "[system] velocities: not used by a minimization ([minimize]), which starts at rest"),
    ("[neighbor]", "[model_devi]\nevery = 10\n[neighbor]",
     "[model_devi]: model deviation is computed during MD ([md]); remove it from a minimization"),
])
def test_input_errors_are_one_line(tmp_path, old, new, expected):
    toml = cluster(tmp_path, **{old: new})
    with pytest.raises(InputError) as err:
        load_run_settings(toml)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_cuda_is_refused_in_one_line(tmp_path):
    toml = cluster(tmp_path, **{'file = "unused.h5"': 'file = "unused.h5"\ndevice = "cuda"'})
    with pytest.raises(InputError) as err:
        run(toml)
    assert str(err.value) == ("min.toml: [model] device = 'cuda': an energy minimization ([minimize]) runs on the "
                              "CPU only; use device = 'cpu' (or --device cpu)")


# -- MPI -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("style, steps", [("fire", 60), ("cg", 15)])
def test_two_mpi_ranks_equal_the_serial_run(tmp_path, style, steps):
    """`mpiexec -n 2 numdp run` of 60 FIRE iterations or 15 cg ones (a random model, a jittered rocksalt crystal
    in a tilted cell) gives the serial run's positions and energies to round-off (the global sums
    are added in another order).  (The crystal is a stationary point of the random model, not
    always a minimum: run longer, FIRE slides off it, so the test stops on steps.)"""
    from mpi_helpers import minimize_serial_and_on_two_ranks

    minimize = f"steps = {steps}\nftol = 0.0\n" + ("timestep = 0.002" if style == "fire" else f'style = "{style}"')
    runs = minimize_serial_and_on_two_ranks(tmp_path, minimize, thermo_every=10)
    for _, out in runs.values():
        assert out.strip().splitlines()[-1].startswith(
            "  Final FIRE timestep" if style == "fire" else "  Final line search alpha")
    (a, out1), (b, out2) = runs[1], runs[2]
    assert a.step == b.step == steps
    assert np.abs(a.positions - b.positions).max() < 1e-9
    assert math.isclose(a.potential_energy, b.potential_energy, rel_tol=1e-12)
    assert "2 MPI ranks" in out2
    e1 = [r[1] for r in thermo_rows(out1)]
    e2 = [r[1] for r in thermo_rows(out2)]
    assert len(e1) == len(e2) and e1[-1] < e1[0] and np.allclose(e1, e2, rtol=0, atol=1e-6)
