"""`numdp run` end to end: restarts bit for bit, safety stops, outputs, examples, trained models."""
from __future__ import annotations

import io
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from numdp.config import load_run_settings
from numdp.errors import InputError
from numdp.io.h5md import read_checkpoint
from numdp.io.structure import write_extxyz, write_lammps_data
from numdp.md.safety import SafetyStop
from numdp.md.loop import run_or_raise
from numdp.md.setup import build_simulation, run_md
from numdp.system import to_arrays
from test_md_potential import MASS_AR, LennardJones, fcc

ROOT = Path(__file__).resolve().parents[1]
ORACLE = ROOT.parent / "shared" / "oracle"

ARGON = """
[model]
file = "unused.h5"
[system]
file = "start.data"
type_names = ["Ar"]
velocities = { temperature = 80.0, seed = 4 }
[md]
timestep = 0.01
steps = 60
ensemble = "npt"
seed = 5
thermostat = { kind = "KIND", temperature = 80.0, tau = 0.1 }
barostat = { pressure = 100.0, tau = 0.5, coupling = "triclinic", compressibility = 1e-4 }
[neighbor]
skin = 1.0
[output]
trajectory = "traj.h5md"
every = 5
thermo_every = 10
checkpoint = "ck.h5"
checkpoint_every = 25
progress = "none"
"""


def argon_dir(path: Path, text=ARGON, cells=2, a=5.3, **replace) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    x, box = fcc(cells, a)
    write_lammps_data(path / "start.data", np.zeros(len(x), int), x, box, [MASS_AR])
    for key, value in replace.items():
        text = text.replace(key, value)
    (path / "md.toml").write_text(text)
    return path / "md.toml"


def run(toml, restart=None, model=None):
    return run_md(load_run_settings(toml), restart=restart, model=model or LennardJones(), screen=io.StringIO())


def trajectory_arrays(path):
    with h5py.File(path, "r") as f:
        out = {}
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) and ("value" in name or name.endswith("step")) else None)
    return out


def assert_same_run(full: Path, part: Path, step: int) -> dict:
    """The checkpoints ck.h5 (at `step`) and trajectories traj.h5md of runs in folders `full` and
    `part` are equal bit for bit; returns the checkpoint's arrays."""
    a, b = to_arrays(read_checkpoint(full / "ck.h5")), to_arrays(read_checkpoint(part / "ck.h5"))
    assert a.keys() == b.keys() and int(a["step"]) == step
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    ta, tb = trajectory_arrays(full / "traj.h5md"), trajectory_arrays(part / "traj.h5md")
    assert ta.keys() == tb.keys()
    for key in ta:
        assert np.array_equal(ta[key], tb[key]), key
    return a


@pytest.mark.parametrize("kind", ["langevin", "csvr", "nose-hoover"])
def test_restart_reproduces_the_uninterrupted_run_bit_for_bit(tmp_path, kind):
    full = argon_dir(tmp_path / "full", KIND=kind)
    run(full)
    # the same run stopped at step 40 (its final checkpoint is not a multiple of checkpoint_every) ...
    part = argon_dir(tmp_path / "part", KIND=kind, **{"steps = 60": "steps = 40"})
    run(part)
    assert read_checkpoint(tmp_path / "part" / "ck.h5").step == 40
    # ... and continued to step 60 with the full input (appends to the same trajectory)
    shutil.copy(full, part)
    run(part, restart=tmp_path / "part" / "ck.h5")
    assert_same_run(tmp_path / "full", tmp_path / "part", 60)
    with h5py.File(tmp_path / "part" / "traj.h5md", "r") as f:
        assert f["particles/trajectory/position/step"][()].tolist() == list(range(0, 61, 5))
    log = (tmp_path / "part" / "log.txt").read_text()
    assert "restarted from" in log and "at step 40" in log


def test_a_restart_says_that_system_masses_are_not_applied(tmp_path):
    """[system] masses on a restart: the checkpoint's masses stay (a restart continues its run),
    and the log says so instead of ignoring the key without a word."""
    part = argon_dir(tmp_path, KIND="csvr", **{"steps = 60": "steps = 5"})
    run(part)
    part.write_text(part.read_text().replace('type_names = ["Ar"]', 'type_names = ["Ar"]\nmasses = { Ar = 20.0 }')
                    .replace("steps = 5", "steps = 10"))
    run(part, restart=tmp_path / "ck.h5")
    log = (tmp_path / "log.txt").read_text()
    assert "[system] masses is not applied on a restart" in log
    assert np.allclose(read_checkpoint(tmp_path / "ck.h5").masses, MASS_AR)


@pytest.mark.parametrize("kind", ["langevin", "csvr", "nose-hoover"])
def test_a_run_interrupted_in_a_ramp_restarts_bit_for_bit(tmp_path, kind):
    """Temperature 80 -> 160 K and pressure 100 -> 5000 bar ramped over steps 0 -> 60: the run
    stopped at step 40 (its input still says steps = 60, as after a signal) and continued from its
    checkpoint repeats the uninterrupted run bit for bit, because the ramp is anchored at absolute
    steps.  The run line names the ramps."""
    ramps = {"temperature = 80.0, tau": "temperature = [80.0, 160.0], tau", "pressure = 100.0": "pressure = [100.0, 5e3]"}
    full = argon_dir(tmp_path / "full", KIND=kind, **ramps)
    run(full)
    part = argon_dir(tmp_path / "part", KIND=kind, **ramps)
    sim, end = build_simulation(load_run_settings(part), model=LennardJones(), screen=io.StringIO())
    assert end == 60
    run_or_raise(sim, 40)
    assert read_checkpoint(tmp_path / "part" / "ck.h5").step == 40
    run(part, restart=tmp_path / "part" / "ck.h5")
    a = assert_same_run(tmp_path / "full", tmp_path / "part", 60)
    log = (tmp_path / "full" / "log.txt").read_text()
    assert "thermostat 80.0 -> 160.0 K (steps 0 -> 60) tau 0.1 ps" in log
    assert "barostat 100.0 -> 5000.0 bar (steps 0 -> 60) tau 0.5 ps" in log
    # the ramp did act: the same run at constant targets ends elsewhere
    run(argon_dir(tmp_path / "constant", KIND=kind))
    assert not np.array_equal(read_checkpoint(tmp_path / "constant" / "ck.h5").velocities, a["velocities"])


def test_checkpoint_as_system_file_restarts_and_conflicting_keys_are_rejected(tmp_path):
    nve = ARGON.replace('ensemble = "npt"', 'ensemble = "nve"').replace(
        'thermostat = { kind = "KIND", temperature = 80.0, tau = 0.1 }\n', "").replace(
        'barostat = { pressure = 100.0, tau = 0.5, coupling = "triclinic", compressibility = 1e-4 }\n', "")
    full = argon_dir(tmp_path / "full", nve)
    run(full)
    part = argon_dir(tmp_path / "part", nve, **{"steps = 60": "steps = 25"})
    run(part)
    shutil.copy(tmp_path / "part" / "ck.h5", tmp_path / "part" / "start.h5")
    restart_text = nve.replace('file = "start.data"\ntype_names = ["Ar"]\nvelocities = { temperature = 80.0, seed = 4 }',
                               'file = "start.h5"')
    (tmp_path / "part" / "md.toml").write_text(restart_text)
    run(tmp_path / "part" / "md.toml")
    assert np.array_equal(read_checkpoint(tmp_path / "full" / "ck.h5").positions,
                          read_checkpoint(tmp_path / "part" / "ck.h5").positions)
    (tmp_path / "part" / "md.toml").write_text(restart_text.replace('file = "start.h5"',
                                                                    'file = "start.h5"\nreplicate = [2, 1, 1]'))
    with pytest.raises(InputError, match="checkpoint, which restores the whole state"):
        run(tmp_path / "part" / "md.toml")


def test_close_contact_stops_with_checkpoint_and_readable_trajectory(tmp_path):
    toml = argon_dir(tmp_path, ARGON.replace("progress", "checkpoint_every = 0\nprogress").replace(
        "checkpoint_every = 25\n", "") + "[safety]\nmin_distance = 3.3\n", KIND="langevin")
    with pytest.raises(SafetyStop) as exc:
        run(toml)
    msg = str(exc.value)
    assert "step " in msg and "atoms " in msg and "(Ar)" in msg and "min_distance = 3.3" in msg
    stop = read_checkpoint(tmp_path / "ck.stop.h5")
    assert f"step {stop.step}:" in msg
    with h5py.File(tmp_path / "traj.h5md", "r") as f:
        assert f["particles/trajectory/position/step"][-1] == stop.step
        assert np.isfinite(f["particles/trajectory/position/value"][-1]).all()
    assert not (tmp_path / "ck.h5").exists()  # no regular checkpoint was due


class Exploding(LennardJones):
    """LJ that returns nan energies from its 20th call on."""

    def compute(self, *args, **kwargs):
        out = super().compute(*args, **kwargs)
        if self.calls >= 20:
            out.atom_energy[3] = np.nan
            out.force[3] = np.nan
        return out


def test_nonfinite_forces_and_too_large_steps_stop_the_run(tmp_path):
    toml = argon_dir(tmp_path / "nan", KIND="csvr")
    with pytest.raises(SafetyStop, match=r"step 19: the potential energy is nan"):
        run(toml, model=Exploding())
    assert read_checkpoint(tmp_path / "nan" / "ck.stop.h5").step == 19
    assert not (tmp_path / "nan" / "ck.h5").exists()  # the last good regular checkpoint is never overwritten
    # one atom 300 A/ps fast: 3 A in one step of 0.01 ps, more than the 1 A skin
    x, box = fcc(2, 5.3)
    v = np.zeros_like(x)
    v[7] = [300.0, 0.0, 0.0]
    fast = tmp_path / "fast"
    fast.mkdir()
    write_extxyz(fast / "start.xyz", ["Ar"] * len(x), x, box, v)
    text = ARGON.replace('file = "start.data"\ntype_names = ["Ar"]\nvelocities = { temperature = 80.0, seed = 4 }',
                         'file = "start.xyz"').replace("KIND", "csvr")
    (fast / "md.toml").write_text(text + "[safety]\nmin_distance = 0.0\n")
    with pytest.raises(SafetyStop, match=r"step 1: atom 7 \(Ar\) moved 2\.9\d+ A in one step, more than the neighbour skin"):
        run(fast / "md.toml")


def test_replicate_scales_the_energy_and_triclinic_rotation_keeps_it(tmp_path):
    energies = {}
    for rep in ("[1, 1, 1]", "[2, 1, 2]"):
        toml = argon_dir(tmp_path / rep[1:-1].replace(", ", ""), KIND="csvr",
                         **{'type_names = ["Ar"]': f'type_names = ["Ar"]\nreplicate = {rep}'})
        sim, _ = build_simulation(load_run_settings(toml), model=LennardJones(), screen=io.StringIO())
        sim.provider(sim.state)
        energies[rep] = sim.state.potential_energy
        sim.close()
    assert energies["[2, 1, 2]"] == pytest.approx(4 * energies["[1, 1, 1]"], rel=1e-12)
    # a general (rotated) cell is turned lower-triangular for triclinic coupling, energy unchanged
    x, box = fcc(2, 5.3)
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
    d = tmp_path / "rot"
    d.mkdir()
    write_extxyz(d / "start.xyz", ["Ar"] * len(x), x @ q, box @ q)
    (d / "md.toml").write_text(ARGON.replace("KIND", "csvr").replace(
        'file = "start.data"\ntype_names = ["Ar"]', 'file = "start.xyz"'))
    screen = io.StringIO()
    sim, _ = build_simulation(load_run_settings(d / "md.toml"), model=LennardJones(), screen=screen)
    sim.provider(sim.state)
    assert "rotated to lower-triangular" in screen.getvalue()
    assert abs(sim.state.box[0, 1]) + abs(sim.state.box[0, 2]) + abs(sim.state.box[1, 2]) < 1e-12
    assert sim.state.potential_energy == pytest.approx(energies["[1, 1, 1]"], rel=1e-10)
    sim.close()


def test_non_periodic_cluster_runs_nve(tmp_path):
    x, _ = fcc(2, 5.3)
    cluster = x[np.linalg.norm(x - x.mean(axis=0), axis=1) < 5.0]
    write_extxyz(tmp_path / "start.xyz", ["Ar"] * len(cluster), cluster)
    text = textwrap.dedent("""
        [model]
        file = "unused.h5"
        [system]
        file = "start.xyz"
        velocities = { temperature = 20.0, seed = 2 }
        [md]
        timestep = 0.005
        steps = 200
        [output]
        every = 50
        thermo_every = 50
        progress = "none"
    """)
    (tmp_path / "md.toml").write_text(text)
    run(tmp_path / "md.toml")
    with h5py.File(tmp_path / "traj.h5md", "r") as f:
        assert list(f["particles/trajectory/box"].attrs["boundary"]) == ["none"] * 3
        assert "edges" not in f["particles/trajectory/box"]
        e = f["observables/total_energy/value"][()]
        assert np.isnan(f["observables/pressure/value"][()]).all()
    assert np.ptp(e) < 1e-4


def test_setup_errors_name_the_key(tmp_path, capsys):
    toml = argon_dir(tmp_path / "m", KIND="csvr", **{'type_names = ["Ar"]': 'type_names = ["Ar"]\nmasses = { Xe = 131.3 }'})
    with pytest.raises(InputError, match=r"\[system\] masses.Xe: not an element of the model's type_map \['Ar'\]"):
        run(toml)
    toml = argon_dir(tmp_path / "t", KIND="csvr", **{'type_names = ["Ar"]': 'type_names = ["Kr"]'})
    with pytest.raises(InputError, match="atom 0 is 'Kr', an element not in the model's type_map"):
        run(toml)
    toml = argon_dir(tmp_path / "o", KIND="csvr", **{'trajectory = "traj.h5md"': 'trajectory = "out/deep/traj.h5md"'})
    run(toml)
    assert (tmp_path / "o" / "out" / "deep" / "traj.h5md").exists()
    from numdp.cli import main

    assert main(["run", str(toml), "--restart", str(tmp_path / "o" / "out" / "deep" / "traj.h5md")]) == 2
    assert "not a numdp checkpoint (no /numdp/state group)" in capsys.readouterr().err
    # a directory was reported as "file not found"
    assert main(["run", str(toml), "--restart", str(tmp_path / "o" / "out")]) == 2
    assert "out: is a directory, not a checkpoint file" in capsys.readouterr().err


def test_example_inputs_are_valid():
    for name in ("water", "cu"):
        s = load_run_settings(ROOT / "inputs" / name / "md.toml")
        assert s.model.file.name == "model.h5"
        assert s.system.file.exists()
    water = load_run_settings(ROOT / "inputs" / "water" / "md.toml")
    assert water.system.masses == {"O": 16.0, "H": 2.0} and water.md.timestep == 0.0005
    assert water.md.thermostat.temperature == 330.0
    assert load_run_settings(ROOT / "inputs" / "cu" / "md.toml").md.ensemble == "npt"


@pytest.mark.skipif(not (ORACLE / "water.dp").exists(), reason="shared/oracle/water.dp not present")
def test_cli_runs_a_deepmd_model_file(tmp_path):
    """Plumbing only (random-weight model): the command line loads a .dp file and writes outputs."""
    text = textwrap.dedent(f"""
        [model]
        file = "{ORACLE / 'water.dp'}"
        [system]
        file = "{ROOT / 'inputs' / 'water' / 'start.xyz'}"
        velocities = {{ temperature = 300.0, seed = 1 }}
        masses = {{ O = 16.0, H = 2.0 }}
        [md]
        timestep = 0.0005
        steps = 4
        [output]
        every = 2
        thermo_every = 2
        progress = "lines"
    """)
    (tmp_path / "md.toml").write_text(text)
    r = subprocess.run([sys.executable, "-m", "numdp.cli", "run", str(tmp_path / "md.toml")], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "step       time       temp" in r.stdout and "ns/day" in r.stdout and "us/atom/step" in r.stdout
    assert "Integrate" in r.stdout and "progress:" in r.stderr
    with h5py.File(tmp_path / "traj.h5md", "r") as f:
        assert f["particles/trajectory/position/step"][()].tolist() == [0, 2, 4]
    assert (tmp_path / "log.txt").read_text().count("\n") > 8
    assert read_checkpoint(tmp_path / "checkpoint.h5").step == 4


WATER_MODEL = ROOT / "inputs" / "water" / "model.h5"
CU_MODEL = ROOT / "inputs" / "cu" / "model.h5"


def nve_energies(tmp_path, model, start, masses, temperature, dt, steps, extra=""):
    """(total, kinetic) energy series, eV, of an NVE run of a shipped model, one frame per step."""
    text = textwrap.dedent(f"""
        [model]
        file = "{model}"
        [system]
        file = "{start}"
        velocities = {{ temperature = {temperature}, seed = 3 }}
        {masses}
        {extra}
        [md]
        timestep = {dt}
        steps = {steps}
        [output]
        every = 1
        fields = ["position"]
        thermo_every = {steps}
        checkpoint_every = 0
        progress = "none"
    """)
    (tmp_path / "md.toml").write_text(text)
    run_md(load_run_settings(tmp_path / "md.toml"), screen=io.StringIO())
    with h5py.File(tmp_path / "traj.h5md", "r") as f:
        return f["observables/total_energy/value"][()], f["observables/kinetic_energy/value"][()]


def check_nve(e, k, natoms, dt, fluct_per_atom, drift_per_atom_ps):
    assert np.isfinite(e).all()
    assert e.std() / natoms < fluct_per_atom  # eV/atom
    assert e.std() < 0.05 * k.std()  # energy flows between K and U, the sum stays put
    t = np.arange(len(e)) * dt
    assert abs(np.polyfit(t, e, 1)[0]) / natoms < drift_per_atom_ps  # eV/atom/ps
    assert np.abs(e - e[0]).max() < 10 * e.std() + 1e-12


@pytest.mark.slow
@pytest.mark.skipif(not WATER_MODEL.exists(), reason="inputs/water/model.h5 (trained model) not present yet")
def test_nve_energy_conservation_with_the_trained_water_model(tmp_path):
    """0.5 fs, masses O 16 H 2, 330 K, 300 steps (0.15 ps) of 64 H2O."""
    e, k = nve_energies(tmp_path, WATER_MODEL, ROOT / "inputs" / "water" / "start.xyz",
                        "masses = { O = 16.0, H = 2.0 }", 330.0, 0.0005, 300)
    check_nve(e, k, 192, 0.0005, fluct_per_atom=5e-5, drift_per_atom_ps=1e-3)


@pytest.mark.slow
@pytest.mark.skipif(not CU_MODEL.exists(), reason="inputs/cu/model.h5 (trained model) not present yet")
def test_nve_energy_conservation_with_the_trained_cu_model(tmp_path):
    """2 fs, fcc Cu at 600 K (EMT itself: 5e-6 eV/atom fluctuation, shared/data/README.md)."""
    e, k = nve_energies(tmp_path, CU_MODEL, ROOT / "inputs" / "cu" / "start.data", "", 600.0, 0.002, 300,
                        extra='type_names = ["Cu"]')
    check_nve(e, k, 108, 0.002, fluct_per_atom=5e-5, drift_per_atom_ps=1e-3)


@pytest.mark.slow
def test_sigint_finishes_the_step_and_writes_a_checkpoint(tmp_path):
    import os
    import signal
    import time

    toml = argon_dir(tmp_path, KIND="langevin", **{"steps = 60": "steps = 10000000", "every = 5": "every = 1000000"})
    script = (f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r})\n"
              "from test_md_potential import LennardJones\n"
              "from numdp.config import load_run_settings\n"
              "from numdp.md.setup import run_md\n"
              f"run_md(load_run_settings({str(toml)!r}), model=LennardJones())\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    log = tmp_path / "log.txt"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and log.read_text().count("\n") > 6):
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert "KeyboardInterrupt" in err
    assert "interrupted after step" in out
    state = read_checkpoint(tmp_path / "ck.h5")
    assert state.step > 0 and f"interrupted after step {state.step}" in out
    with h5py.File(tmp_path / "traj.h5md", "r") as f:  # no frame off the cadence (every = 1000000)
        assert f["particles/trajectory/position/step"][()].tolist() == [0]


def test_new_run_of_zero_steps_evaluates_step_zero(tmp_path, capsys):
    """[md] steps = 0 in a new run is LAMMPS' `run 0`: the start's energy in the thermo output, a
    trajectory frame and a checkpoint at step 0 (it printed "nothing to run" after backing up the
    previous outputs, and wrote nothing).  No speed is claimed for it (it printed 0.0000 ns/day)."""
    toml = argon_dir(tmp_path, KIND="csvr", **{"steps = 60": "steps = 0", 'progress = "none"': 'progress = "lines"'})
    result = run(toml)
    assert result is not None and result.steps == 0
    log = (tmp_path / "log.txt").read_text()
    assert "Performance: n/a (no step was made)" in log
    assert "ns/day" not in log and "us/atom/step" not in log
    assert "steps/s" not in capsys.readouterr().err  # no progress line either
    with h5py.File(tmp_path / "traj.h5md", "r") as f:
        assert f["particles/trajectory/position/step"][()].tolist() == [0]
    assert (tmp_path / "ck.h5").is_file()
    rows = [l.split() for l in (tmp_path / "log.txt").read_text().splitlines() if l.split()[:1] == ["0"]]
    assert len(rows) == 1 and np.isfinite(float(rows[0][3]))  # the potential energy at step 0
    # a restart at its end step still has nothing to do
    assert run(toml, restart=tmp_path / "ck.h5") is None


def test_type_names_name_the_numeric_species_of_an_xyz_start(tmp_path):
    """[system] type_names applies to an xyz start whose species are numeric types (LAMMPS
    `dump xyz`), as to a LAMMPS data file; it was ignored."""
    from numdp.md.start import state_from_structure

    x, box = fcc(1, 5.3)
    lattice = " ".join(f"{v:.10f}" for v in box.ravel())
    rows = "\n".join(f"1 {p[0]:.10f} {p[1]:.10f} {p[2]:.10f}" for p in x)
    (tmp_path / "start.xyz").write_text(f'{len(x)}\nLattice="{lattice}"\n{rows}\n')
    toml = argon_dir(tmp_path, KIND="csvr", **{'file = "start.data"': 'file = "start.xyz"'})
    state = state_from_structure(load_run_settings(toml), ["Xe", "Ar"])
    assert state.types.tolist() == [1] * len(x)  # type 1 is Ar (model type 1), not Xe (index 0)
    # an xyz that names its elements: type_names cannot apply, one line says so
    write_extxyz(tmp_path / "start.xyz", ["Ar"] * len(x), x, box)
    with pytest.raises(InputError, match=r"md.toml: \[system\] type_names: .*start.xyz frame 0 names its "
                                         r"elements \(Ar\); type_names names numeric atom types only"):
        state_from_structure(load_run_settings(toml), ["Xe", "Ar"])


def test_the_last_step_has_a_thermo_line_off_the_cadence(tmp_path):
    """A run whose last step is not a multiple of thermo_every ends with that step's thermo line,
    as LAMMPS prints the last step of every run (a 25-step run with thermo_every = 10 printed
    0, 10, 20 and no energy of its final state); a restart's last step likewise, and a step on
    the cadence is printed once.  A restart also starts with its first step's line off the
    cadence (LAMMPS prints the first step of every run), under a header of its own."""
    def logged_steps():
        return [int(l.split()[0]) for l in (tmp_path / "log.txt").read_text().splitlines()
                if l.split()[:1] and l.split()[0].isdigit()]

    toml = argon_dir(tmp_path, KIND="csvr", **{"steps = 60": "steps = 25"})
    run(toml)
    assert logged_steps() == [0, 10, 20, 25]
    ck = read_checkpoint(tmp_path / "ck.h5")
    toml.write_text(toml.read_text().replace("steps = 25", "steps = 40"))
    run(toml, restart=tmp_path / "ck.h5")
    assert logged_steps() == [0, 10, 20, 25, 25, 30, 40]
    assert ck.step == 25
    lines = (tmp_path / "log.txt").read_text().splitlines()
    rows = [l for l in lines if l.split()[:1] and l.split()[0].isdigit()]
    assert rows[3] == rows[4]  # the restart's first line is the state the first run ended with
    second = len(lines) - 1 - lines[::-1].index(rows[4])
    assert lines[second - 1].split()[0] == "step"  # right under its header


def test_checkpoint_series_one_file_per_step(tmp_path):
    """[output] checkpoint = "ck.*": one checkpoint per due step, ck.25, ck.50 and the end, ck.60
    (LAMMPS' `restart N ROOT` names); a restart from ck.25 ends bit for bit on the uninterrupted
    run's state; a new run keeps the earlier series as #ck.N.1#; a safety stop writes ck.stop.STEP;
    a * in the folder is refused."""
    series = ARGON.replace('checkpoint = "ck.h5"', 'checkpoint = "ck.*"')
    full = argon_dir(tmp_path / "full", series, KIND="csvr")
    run(full)
    assert sorted(p.name for p in (tmp_path / "full").glob("ck.*")) == ["ck.25", "ck.50", "ck.60"]
    assert [read_checkpoint(tmp_path / "full" / f"ck.{s}").step for s in (25, 50, 60)] == [25, 50, 60]
    part = argon_dir(tmp_path / "part", series, KIND="csvr")
    shutil.copy(tmp_path / "full" / "ck.25", tmp_path / "part" / "ck.25")
    run(part, restart=tmp_path / "part" / "ck.25")
    a = to_arrays(read_checkpoint(tmp_path / "full" / "ck.60"))
    b = to_arrays(read_checkpoint(tmp_path / "part" / "ck.60"))
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    before = (tmp_path / "full" / "ck.50").read_bytes()
    run(full)
    assert (tmp_path / "full" / "#ck.50.1#").read_bytes() == before
    stop = argon_dir(tmp_path / "stop", series.replace("checkpoint_every = 25\n", "checkpoint_every = 0\n")
                     + "[safety]\nmin_distance = 3.3\n", KIND="langevin")
    with pytest.raises(SafetyStop) as exc:
        run(stop)
    (written,) = (tmp_path / "stop").glob("ck.stop.*")
    assert f"state written to {written}" in str(exc.value)
    assert read_checkpoint(written).step == int(written.name.split(".")[-1])
    with pytest.raises(InputError, match=r"\[output\] checkpoint: a '\*' \(one checkpoint per step\) belongs in the file name"):
        load_run_settings(argon_dir(tmp_path / "bad", ARGON.replace('checkpoint = "ck.h5"', 'checkpoint = "ck*/ck.h5"'),
                                    KIND="csvr"))
