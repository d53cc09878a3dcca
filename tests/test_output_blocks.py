"""Trajectory frames and checkpoints written block by block (numdp.parallel.distribute.GlobalAtoms):
the files equal those written from whole arrays, in global id order, on one rank and on several.

An MPI run hands rank 0 its output in blocks of atoms in id order so that rank 0 never holds the
whole system; the same code runs on one rank.  Small blocks (2-4 atoms) and atoms stored out of
id order exercise the block boundaries and the sort."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from numdp.io.h5md import read_checkpoint, write_checkpoint
from numdp.io.trajectory import Frame, open_trajectory
from numdp.parallel.distribute import GlobalAtoms
from numdp.parallel.world import World
from numdp.system import State, atom_arrays
from test_mpi import MPIEXEC, TIMEOUT, _mpi4py

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ("position", "velocity", "force")
NAMES = ("positions", "velocities", "forces")
OBS = {"potential_energy": -3.5, "kinetic_energy": 1.25, "temperature": 12.0, "pressure": 2.0, "volume": 900.0}


def _state(n=11, box=True, seed=1):
    """A state of n atoms whose arrays are stored in a shuffled id order."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    cell = np.array([[9.0, 0.0, 0.0], [1.5, 10.0, 0.0], [-2.0, 1.0, 11.0]]) if box else None
    return State(positions=rng.normal(size=(n, 3)) * 3, velocities=rng.normal(size=(n, 3)),
                 types=rng.integers(0, 2, n).astype(np.int32), masses=rng.uniform(1, 20, n),
                 box=cell, type_map=["O", "H"], ids=perm.astype(np.int64), step=40, time=0.02, seed=5,
                 forces=rng.normal(size=(n, 3)), virial=rng.normal(size=(3, 3)), potential_energy=-3.5,
                 thermostat={"xi": np.array([0.1, 0.2])},
                 neighbor={"positions": rng.normal(size=(n, 3)), "cutoff": np.array([8.0])})


def _by_id(st: State) -> dict[str, np.ndarray]:
    order = np.argsort(st.ids)
    return {k: a[order] for k, a in atom_arrays(st).items()}


def _h5_datasets(path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def _assert_same_h5(a, b):
    da, db = _h5_datasets(a), _h5_datasets(b)
    assert sorted(da) == sorted(db)
    for name in da:
        assert da[name].dtype == db[name].dtype, name
        np.testing.assert_array_equal(da[name], db[name], err_msg=name)


@pytest.mark.parametrize("box", [True, False], ids=["triclinic", "open"])
@pytest.mark.parametrize("fmt", ["h5md", "extxyz", "lammps-dump"])
def test_a_frame_in_blocks_equals_the_frame_from_whole_arrays(tmp_path, fmt, box):
    st = _state(box=box)
    ref = _by_id(st)
    paths = []
    for how in ("whole", "blocks"):
        path = tmp_path / f"{how}.{fmt}"
        w = open_trajectory(fmt, path, ref["types"], ref["masses"], ["O", "H"], FIELDS, box, "eV Angstrom-1")
        for k in range(2):
            if how == "whole":
                w.append(st.step + k, st.time, ref["positions"] + k, ref["velocities"], ref["forces"], st.box, OBS)
            else:
                st.positions += k
                atoms = GlobalAtoms(World(None), st, NAMES, block=3)
                bounds = (ref["positions"].min(axis=0) + k, ref["positions"].max(axis=0) + k) if not box else None
                w.append_frame(Frame(st.step + k, st.time, atoms.natoms, st.box, OBS, NAMES, atoms.blocks(), bounds))
                st.positions -= k
        w.close()
        paths.append(path)
    if fmt == "h5md":
        _assert_same_h5(*paths)
    else:
        assert paths[0].read_text() == paths[1].read_text()


def test_a_checkpoint_in_blocks_equals_the_whole_one_in_id_order(tmp_path):
    st = _state(n=13)
    ordered = _state(n=13)
    for k, a in _by_id(st).items():
        if k == "neighbor/positions":
            ordered.neighbor["positions"] = a
        else:
            setattr(ordered, k, a)
    write_checkpoint(tmp_path / "whole.h5", ordered, OBS)
    write_checkpoint(tmp_path / "blocks.h5", st, OBS, atoms=GlobalAtoms(World(None), st, block=4))
    _assert_same_h5(tmp_path / "whole.h5", tmp_path / "blocks.h5")
    back = read_checkpoint(tmp_path / "blocks.h5")
    assert back.ids.tolist() == list(range(13))
    np.testing.assert_array_equal(back.positions, ordered.positions)
    np.testing.assert_array_equal(back.neighbor["positions"], ordered.neighbor["positions"])


def test_one_rank_in_id_order_hands_out_views():
    st = _state()
    st.ids = np.arange(st.natoms)
    (start, arrays), = list(GlobalAtoms(World(None), st).blocks())
    assert start == 0 and np.shares_memory(arrays["positions"], st.positions)


def test_ids_not_held_once_each_are_a_bug():
    st = _state(n=5)
    st.ids = np.array([0, 1, 1, 3, 4])
    with pytest.raises(RuntimeError, match="atom ids 0..4 are not held once each"):
        list(GlobalAtoms(World(None), st).blocks())


MPI_SCRIPT = """
import sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_output_blocks import FIELDS, NAMES, OBS, _state
from numdp.io.h5md import write_checkpoint
from numdp.io.trajectory import Frame, open_trajectory
from numdp.md.reporters import Snapshot
from numdp.parallel.distribute import GlobalAtoms
from numdp.parallel.world import create_world
from numdp.system import atom_arrays, set_atom_arrays

world = create_world()
st = _state(n=23, box={box})
mine = np.flatnonzero(np.arange(23) % world.size == (world.size - 1 - world.rank))  # rank 0 holds the fewest
arrays = {{k: a[mine] for k, a in atom_arrays(st).items()}}
set_atom_arrays(st, arrays)
st.natoms_global = 23
w = None
if world.is_root:
    full = _state(n=23, box={box})
    order = np.argsort(full.ids)
    w = open_trajectory("{fmt}", "mpi.{fmt}", full.types[order], full.masses[order], ["O", "H"], FIELDS,
                        {box}, "eV Angstrom-1")
atoms = GlobalAtoms(world, st, NAMES, block=4)
snap = Snapshot(st, st.step, st.time, 0, 0, 0, 0, 0, 0, 0, world)
bounds = snap.position_bounds() if st.box is None else None
if w is None:
    atoms.drain()
else:
    w.append_frame(Frame(st.step, st.time, atoms.natoms, st.box, OBS, NAMES, atoms.blocks(), bounds))
    w.close()
atoms = GlobalAtoms(world, st, block=5)
if world.is_root:
    write_checkpoint("mpi_ck.h5", st, OBS, atoms=atoms)
else:
    atoms.drain()
"""


@pytest.mark.skipif(MPIEXEC is None or not _mpi4py(), reason="MPI tests need mpi4py and mpiexec")
@pytest.mark.parametrize("fmt,box", [("h5md", True), ("lammps-dump", False)])
def test_three_ranks_write_what_one_rank_writes(tmp_path, fmt, box):
    """Atoms spread over 3 ranks (rank 0 holding the fewest), gathered in blocks of 4 and 5:
    the trajectory frame and the checkpoint equal the one-rank files of the whole state."""
    (tmp_path / "run.py").write_text(MPI_SCRIPT.format(tests=str(ROOT / "tests"), fmt=fmt, box=box))
    r = subprocess.run([MPIEXEC, "-n", "3", sys.executable, "run.py"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-3000:]
    st = _state(n=23, box=box)
    ref = _by_id(st)
    w = open_trajectory(fmt, tmp_path / f"one.{fmt}", ref["types"], ref["masses"], ["O", "H"], FIELDS, box,
                        "eV Angstrom-1")
    w.append(st.step, st.time, ref["positions"], ref["velocities"], ref["forces"], st.box, OBS)
    w.close()
    if fmt == "h5md":
        _assert_same_h5(tmp_path / f"one.{fmt}", tmp_path / f"mpi.{fmt}")
    else:
        assert (tmp_path / f"one.{fmt}").read_text() == (tmp_path / f"mpi.{fmt}").read_text()
    write_checkpoint(tmp_path / "one_ck.h5", st, OBS, atoms=GlobalAtoms(World(None), st, block=7))
    _assert_same_h5(tmp_path / "one_ck.h5", tmp_path / "mpi_ck.h5")
