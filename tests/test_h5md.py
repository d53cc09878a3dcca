"""H5MD trajectories (layout per H5MD 1.1, readers, killed runs) and atomic checkpoints."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from numdp.errors import InputError
from numdp.io import h5md
from numdp.io.h5md import H5MDWriter, read_checkpoint, write_checkpoint
from numdp.system import State

TESTS = Path(__file__).resolve().parent


def _frames(path, n, natoms=4, fields=("position", "velocity", "force")):
    w = H5MDWriter(path, [0, 1, 1, 0], [16.0, 1.0, 1.0, 16.0], ["O", "H"], fields, input_text="x = 1")
    for k in range(n):
        x = np.full((natoms, 3), float(k))
        w.append(5 * k, 0.5 * k, x, x + 0.5, x * 0 + 1.0, np.eye(3) * (10 + k),
                 {"potential_energy": -k, "kinetic_energy": 1.0, "total_energy": 1.0 - k, "temperature": 300.0,
                  "pressure": 1.0, "volume": (10.0 + k) ** 3})
    return w


def test_layout_follows_h5md_1_1(tmp_path):
    _frames(tmp_path / "t.h5md", 3).close()
    with h5py.File(tmp_path / "t.h5md", "r") as f:
        assert f["h5md"].attrs["version"].tolist() == [1, 1]
        assert f["h5md/author"].attrs["name"]
        assert f["h5md/creator"].attrs["name"] == "numdp" and f["h5md/creator"].attrs["version"]
        part = f["particles/trajectory"]
        assert part["box"].attrs["dimension"] == 3
        assert list(part["box"].attrs["boundary"]) == ["periodic"] * 3
        for name, unit in (("position", "Angstrom"), ("velocity", "Angstrom ps-1"),
                           ("force", "kJ mol-1 Angstrom-1"), ("box/edges", "Angstrom")):
            g = part[name]
            assert g["step"][()].tolist() == [0, 5, 10]
            assert g["time"].attrs["unit"] == "ps"
            np.testing.assert_allclose(g["time"][()], [0.0, 0.5, 1.0])
            assert g["value"].attrs["unit"] == unit
            assert g["value"].shape[0] == 3
        assert part["position/value"].shape == (3, 4, 3)
        assert part["box/edges/value"].shape == (3, 3, 3)
        assert part["species"][()].tolist() == [0, 1, 1, 0]
        np.testing.assert_allclose(part["force/value"][0], 96.48533212331002)  # 1 eV/A in kJ/mol/A
        for name in ("potential_energy", "kinetic_energy", "total_energy", "temperature", "pressure", "volume"):
            g = f["observables"][name]
            assert g["value"].shape == (3,) and g["step"][()].tolist() == [0, 5, 10]
        assert f["observables/pressure/value"].attrs["unit"] == "bar"
        assert list(f["parameters/numdp"].attrs["type_map"]) == ["O", "H"]


def test_resume_drops_frames_after_the_checkpoint_step(tmp_path):
    _frames(tmp_path / "t.h5md", 5).close()
    w = H5MDWriter(tmp_path / "t.h5md", [0, 1, 1, 0], [16.0, 1.0, 1.0, 16.0], ["O", "H"], resume_after=10)
    assert w.nframes == 3 and w.last_step() == 10
    w.append(15, 1.5, np.zeros((4, 3)), np.zeros((4, 3)), np.zeros((4, 3)), np.eye(3), {})
    w.close()
    with h5py.File(tmp_path / "t.h5md", "r") as f:
        assert f["particles/trajectory/position/step"][()].tolist() == [0, 5, 10, 15]
        assert f["observables/temperature/value"].shape == (4,)
    with pytest.raises(InputError, match="not a numdp trajectory of 7 atoms"):
        H5MDWriter(tmp_path / "t.h5md", [0] * 7, [1.0] * 7, ["O"], resume_after=0)



def test_every_unit_string_follows_the_h5md_units_grammar(tmp_path):
    """H5MD's units module: a unit string is unit factors separated by spaces, each a symbol
    optionally followed by a signed non-zero integer power ("Angstrom3", "kJ mol-1"), with at most
    one leading number; no "^", "/" or "*"."""
    import re

    _frames(tmp_path / "t.h5md", 1).close()
    factor = r"[A-Za-z]+(?:[+-]?[1-9][0-9]*)?"
    grammar = re.compile(rf"^(?:[0-9]+(?:\.[0-9]+)? )?{factor}(?: {factor})*$")
    units = {}
    with h5py.File(tmp_path / "t.h5md", "r") as f:
        f.visititems(lambda name, obj: units.__setitem__(name, obj.attrs["unit"]) if "unit" in obj.attrs else None)
    assert units["observables/volume/value"] == "Angstrom3"
    bad = {name: unit for name, unit in units.items() if not grammar.match(str(unit))}
    assert not bad


def test_resume_with_another_force_unit_is_refused(tmp_path):
    """One dataset holds one unit: a restart whose input asks for other force units than the
    trajectory holds is one line naming the file and both units, and the file is left as it was
    (before, the new frames were appended in the new unit under the old unit attribute)."""
    _frames(tmp_path / "t.h5md", 3).close()   # kJ mol-1 Angstrom-1, the default
    before = (tmp_path / "t.h5md").read_bytes()
    with pytest.raises(InputError, match=r"t\.h5md: holds forces in 'kJ mol-1 Angstrom-1', the input asks for "
                                         r"\[output\] force_unit = 'eV Angstrom-1'"):
        H5MDWriter(tmp_path / "t.h5md", [0, 1, 1, 0], [16.0, 1.0, 1.0, 16.0], ["O", "H"],
                   force_unit="eV Angstrom-1", resume_after=5)
    assert (tmp_path / "t.h5md").read_bytes() == before
    w = H5MDWriter(tmp_path / "t.h5md", [0, 1, 1, 0], [16.0, 1.0, 1.0, 16.0], ["O", "H"], resume_after=5)
    assert w.nframes == 2
    w.close()

def _state(n=6):
    rng = np.random.default_rng(1)
    return State(positions=rng.normal(size=(n, 3)) * 3, velocities=rng.normal(size=(n, 3)),
                 types=np.array([0, 1] * (n // 2), dtype=np.int32), masses=np.array([16.0, 2.0] * (n // 2)),
                 box=np.diag([9.0, 10.0, 11.0]), type_map=["O", "H"], ids=np.arange(n), step=123, time=0.0615,
                 seed=99, forces=rng.normal(size=(n, 3)), virial=rng.normal(size=(3, 3)), potential_energy=-1.25,
                 thermostat={"xi": np.array([0.1, 0.2, 0.3]), "vxi": np.array([1e-3, 2e-3, 3e-3])},
                 neighbor={"positions": rng.normal(size=(n, 3)), "cutoff": np.array([8.0])})


def test_checkpoint_roundtrip_is_bit_exact(tmp_path):
    st = _state()
    write_checkpoint(tmp_path / "ck.h5", st, {"temperature": 300.0})
    assert not (tmp_path / "ck.h5.tmp").exists()
    back = read_checkpoint(tmp_path / "ck.h5")
    for name in ("positions", "velocities", "masses", "box", "forces", "virial"):
        assert np.array_equal(getattr(back, name), getattr(st, name)), name
    assert back.types.tolist() == st.types.tolist() and back.ids.tolist() == st.ids.tolist()
    assert (back.step, back.time, back.seed, back.potential_energy) == (123, 0.0615, 99, -1.25)
    assert back.type_map == ["O", "H"]
    assert all(np.array_equal(back.thermostat[k], st.thermostat[k]) for k in st.thermostat)
    assert np.array_equal(back.neighbor["positions"], st.neighbor["positions"])
    with h5py.File(tmp_path / "ck.h5", "r") as f:  # also a one-frame H5MD file
        assert f["particles/trajectory/position/value"].shape == (1, 6, 3)


def test_state_format_version_2_carries_pbc_and_version_1_is_still_read(tmp_path):
    """A slab checkpoint is written as state format 2 (which added `pbc`, so that a version-1
    reader refuses it instead of running the slab as a periodic crystal); a version-1 checkpoint
    (no `pbc`) still reads, as periodic along all cell vectors; a newer version is refused."""
    from numdp.system import STATE_FORMAT_VERSION

    st = _state()
    st.pbc = (True, True, False)
    write_checkpoint(tmp_path / "ck.h5", st, {})
    with h5py.File(tmp_path / "ck.h5", "r") as f:
        assert int(f["numdp/state/format_version"][()]) == STATE_FORMAT_VERSION == 2
        assert f["numdp/state/pbc"][()].tolist() == [1, 1, 0]
    assert read_checkpoint(tmp_path / "ck.h5").pbc == (True, True, False)
    with h5py.File(tmp_path / "ck.h5", "r+") as f:   # what numdp wrote before format 2
        del f["numdp/state/format_version"], f["numdp/state/pbc"]
        f["numdp/state/format_version"] = np.int64(1)
    old = read_checkpoint(tmp_path / "ck.h5")
    assert old.pbc is None and old.pbc_flags == (True, True, True) and old.step == 123
    assert np.array_equal(old.positions, st.positions)
    with h5py.File(tmp_path / "ck.h5", "r+") as f:
        f["numdp/state/format_version"][()] = 3
    with pytest.raises(InputError, match="state format version 3 is newer than this numdp supports \\(2\\)"):
        read_checkpoint(tmp_path / "ck.h5")


def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    st = _state()
    write_checkpoint(tmp_path / "ck.h5", st, {})
    st.step = 200

    def broken(state):
        raise RuntimeError("disk full")

    monkeypatch.setattr(h5md, "to_arrays", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_checkpoint(tmp_path / "ck.h5", st, {})
    assert read_checkpoint(tmp_path / "ck.h5").step == 123


def test_not_a_checkpoint(tmp_path):
    _frames(tmp_path / "t.h5md", 1).close()
    with pytest.raises(InputError, match="not a numdp checkpoint"):
        read_checkpoint(tmp_path / "t.h5md")
    assert not h5md.is_checkpoint(tmp_path / "t.h5md")


KILLED_RUN = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from test_md_potential import LennardJones
    from numdp.config import load_run_settings
    from numdp.md.setup import run_md
    run_md(load_run_settings({toml!r}), model=LennardJones())
""")


@pytest.mark.slow
def test_a_killed_run_leaves_a_readable_trajectory(tmp_path):
    from test_md_potential import fcc
    from numdp.io.structure import write_lammps_data

    x, box = fcc(2, 5.3)
    write_lammps_data(tmp_path / "start.data", np.zeros(len(x), int), x, box, [39.948])
    (tmp_path / "md.toml").write_text(textwrap.dedent("""
        [model]
        file = "unused.h5"
        [system]
        file = "start.data"
        type_names = ["Ar"]
        velocities = { temperature = 80.0, seed = 1 }
        [md]
        timestep = 0.005
        steps = 10000000
        ensemble = "nvt"
        thermostat = { kind = "langevin", temperature = 80.0, tau = 0.1 }
        [neighbor]
        skin = 1.0
        [output]
        trajectory = "traj.h5md"
        every = 1
        thermo_every = 100000
        checkpoint_every = 0
        progress = "none"
    """))
    script = KILLED_RUN.format(tests=str(TESTS), toml=str(tmp_path / "md.toml"))
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    traj = tmp_path / "traj.h5md"
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            time.sleep(0.5)
            if traj.exists() and traj.stat().st_size > 200_000:
                break
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with h5py.File(traj, "r") as f:
        n = f["particles/trajectory/position/value"].shape[0]
        assert n > 10
        pos = f["particles/trajectory/position/value"][()]
        assert np.isfinite(pos).all() and np.abs(pos).max() > 0
        assert f["particles/trajectory/position/step"].shape[0] >= n
        assert f["observables/temperature/value"].shape[0] >= n
    import MDAnalysis as mda  # the `test` extra installs it: MDAnalysis reads the killed run's file too

    u = mda.Universe(str(traj))
    assert u.atoms.n_atoms == 32 and len(u.trajectory) == n


def test_mdanalysis_and_pyh5md_read_the_trajectory(tmp_path):
    _frames(tmp_path / "t.h5md", 3).close()
    import MDAnalysis as mda  # both readers come with the `test` extra (pyproject.toml): never skipped
    import pyh5md

    u = mda.Universe(str(tmp_path / "t.h5md"))
    assert len(u.trajectory) == 3 and u.atoms.n_atoms == 4
    u.trajectory[2]
    np.testing.assert_allclose(u.atoms.positions, 2.0)
    np.testing.assert_allclose(u.trajectory.ts.dimensions[:3], 12.0)
    assert u.trajectory.ts.data["temperature"] == 300.0
    np.testing.assert_allclose(u.atoms.forces, 96.48533212331002, rtol=1e-6)  # MDAnalysis: kJ/(mol A)
    f = pyh5md.File(str(tmp_path / "t.h5md"), "r")
    pos = pyh5md.element(f.particles_group("trajectory"), "position")
    assert pos.value.shape == (3, 4, 3) and pos.step[:].tolist() == [0, 5, 10]
    f.close()
