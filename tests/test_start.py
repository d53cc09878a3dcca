"""The start state handed out block by block (numdp.system.AtomSource): a checkpoint read slice
by slice, a replicated structure generated from its base cell, a cell rotated for triclinic
coupling.  Blocks of any size give the same arrays, bit for bit, as the whole state; the
replicas are those of numdp.io.structure.replicate; on three MPI ranks every atom reaches the
rank that owns it, and the trajectory's species and masses come out in id order."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from numdp.config import load_run_settings
from numdp.errors import InputError
from numdp.io.h5md import CheckpointAtoms, read_checkpoint, write_checkpoint
from numdp.io.structure import assign_types, read_structure, replicate, write_extxyz
from numdp.io.model_file import write_model
from numdp.md.barostat import lower_triangular_rotation
from numdp.md.start import RotatedAtoms, rotate_rows, structure_atoms
from numdp.system import atom_arrays, whole_state
from randmodel import random_params
from test_mpi import MPIEXEC, TIMEOUT, _mpi4py
from test_output_blocks import _state

ROOT = Path(__file__).resolve().parents[1]
U = np.finfo(np.float64).eps / 2

RUN = """
[model]
file = "model.h5"
[system]
file = "start.xyz"
replicate = [2, 1, 3]
masses = {{ A = 12.0, B = 16.5 }}
[md]
timestep = 0.001
steps = 2
{extra}
[output]
progress = "none"
"""


def make_input(path: Path, extra: str = "") -> Path:
    """A 5-atom triclinic cell with velocities, replicated 2 x 1 x 3 (30 atoms)."""
    path.mkdir(parents=True, exist_ok=True)
    write_model(random_params(ntypes=2, sel=[8, 8], neuron=(4, 8), axis_neuron=2, fitting=(8, 8), rcut=3.0,
                              rcut_smth=1.0, seed=1), path / "model.h5")
    rng = np.random.default_rng(4)
    box = np.array([[6.0, 0.5, -0.3], [1.0, 6.5, 0.2], [-1.2, 0.8, 7.0]])
    write_extxyz(path / "start.xyz", ["A", "B", "A", "B", "B"], rng.uniform(0, 6, (5, 3)), box,
                 velocities=rng.normal(size=(5, 3)))
    (path / "md.toml").write_text(RUN.format(extra=extra))
    return path / "md.toml"


def concatenated(source, block, names=None):
    parts = list(source.blocks(block, names))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@pytest.mark.parametrize("block", [1, 4, 7, 30, 1000])
def test_replicas_made_block_by_block_are_those_of_replicate(tmp_path, block):
    settings = load_run_settings(make_input(tmp_path))
    source = structure_atoms(settings, ["A", "B"])
    got = concatenated(source, block)
    s = replicate(read_structure(tmp_path / "start.xyz"), (2, 1, 3))
    types = assign_types(s, ["A", "B"])
    assert source.natoms == 30 and np.array_equal(source.light.box, s.box)
    assert np.array_equal(got["positions"], s.positions)   # bit for bit
    assert np.array_equal(got["velocities"], s.velocities)
    assert np.array_equal(got["types"], types) and got["types"].dtype == np.int32
    assert np.array_equal(got["masses"], np.where(types == 1, 16.5, 12.0))
    assert np.array_equal(got["ids"], np.arange(30))
    only = concatenated(source, block, ("positions",))
    assert list(only) == ["positions"] and np.array_equal(only["positions"], s.positions)


def test_a_checkpoint_read_block_by_block_is_the_whole_file(tmp_path):
    state = _state(n=23)
    write_checkpoint(tmp_path / "ck.h5", state, {"potential_energy": -3.5})
    source = CheckpointAtoms(tmp_path / "ck.h5")
    assert source.natoms == 23 and source.light.natoms == 0 and source.light.natoms_global == 23
    assert source.light.step == 40 and np.array_equal(source.light.virial, state.virial)
    with h5py.File(tmp_path / "ck.h5", "r") as f:
        stored = {k: f["numdp/state"][k][()] for k in atom_arrays(state)}
    for block in (1, 5, 23, 64):
        got = concatenated(source, block)
        assert set(got) == set(stored)
        for k, a in stored.items():
            assert np.array_equal(got[k], a) and got[k].dtype == atom_arrays(state)[k].dtype, k
    whole = read_checkpoint(tmp_path / "ck.h5")
    for k, a in atom_arrays(state).items():
        assert np.array_equal(atom_arrays(whole)[k], stored[k]), k
    assert whole.natoms_global == 23 and whole.thermostat["xi"].tolist() == [0.1, 0.2]


def test_a_checkpoint_with_a_short_per_atom_array_is_refused_by_name(tmp_path):
    write_checkpoint(tmp_path / "ck.h5", _state(n=7), {})
    with h5py.File(tmp_path / "ck.h5", "a") as f:
        v = f["numdp/state/velocities"][()]
        del f["numdp/state/velocities"]
        f["numdp/state/velocities"] = v[:6]
    with pytest.raises(InputError, match=r"ck.h5: /numdp/state/velocities has shape \(6, 3\), not one row for "
                                         r"each of the 7 atoms"):
        CheckpointAtoms(tmp_path / "ck.h5")


def test_a_rotated_source_rotates_vectors_and_cell_the_same_in_any_block(tmp_path):
    settings = load_run_settings(make_input(tmp_path))
    source = structure_atoms(settings, ["A", "B"])
    q = lower_triangular_rotation(source.light.box)
    rotated = RotatedAtoms(source, q)
    ref = concatenated(rotated, 1000)
    for block in (1, 7):
        got = concatenated(rotated, block)
        for k in ref:
            assert np.array_equal(got[k], ref[k]), k
    box = rotated.light.box
    assert abs(box[0, 1]) + abs(box[0, 2]) + abs(box[1, 2]) < 1e-12 * np.abs(box).max()
    plain = concatenated(source, 1000)
    # each element is a sum of 3 products: within 3 u sum_k |x_k q_kj| of the exact x @ q (+ the
    # product's own rounding, the same bound)
    for k in ("positions", "velocities"):
        bound = 2 * 3 * U * (np.abs(plain[k]) @ np.abs(q)) * (1 + 1e-12)
        assert np.all(np.abs(ref[k] - plain[k] @ q) <= bound), k
    # fractional coordinates are unchanged by the rotation
    frac0 = plain["positions"] @ np.linalg.inv(source.light.box)
    frac1 = ref["positions"] @ np.linalg.inv(box)
    assert np.abs(frac1 - frac0).max() < 1e-13
    assert np.array_equal(rotate_rows(plain["positions"][:3], np.eye(3)), plain["positions"][:3])


def test_the_whole_state_of_a_source_is_the_state_itself(tmp_path):
    state = _state(n=9)
    write_checkpoint(tmp_path / "ck.h5", state, {})
    whole = whole_state(CheckpointAtoms(tmp_path / "ck.h5"), block=2)
    for k, a in atom_arrays(state).items():
        assert np.array_equal(atom_arrays(whole)[k], a), k
    assert whole.natoms_global == 9 and whole.step == state.step


SCATTER = textwrap.dedent("""
    import sys
    import numpy as np
    from numdp.config import load_run_settings
    from numdp.io.h5md import CheckpointAtoms
    from numdp.io.trajectory import open_trajectory
    from numdp.md.barostat import lower_triangular_rotation
    from numdp.md.setup import _give_atoms
    from numdp.md.start import RotatedAtoms, structure_atoms
    from numdp.parallel import distribute
    from numdp.parallel.domain import Domain, choose_grid
    from numdp.parallel.world import create_world
    from numdp.system import atom_arrays, whole_state

    distribute.BLOCK_ATOMS = 4
    world = create_world()
    settings = load_run_settings("md.toml")

    def sources():
        s = structure_atoms(settings, ["A", "B"])
        yield "replicas", s
        yield "rotated", RotatedAtoms(s, lower_triangular_rotation(s.light.box))
        yield "checkpoint", CheckpointAtoms("ck.h5")

    def check(name, source):
        domain = Domain(choose_grid(world.size, source.light.box, (True,) * 3), world.rank, periodic=True)
        local = distribute.scatter_state(world, domain, source if world.is_root else None)
        mine = distribute._owners(domain, local, atom_arrays(local))
        assert np.all(mine == world.rank), (name, world.rank, mine)   # each atom on its owner
        got = {k: world.comm.gather(a) for k, a in atom_arrays(local).items()}
        counts = world.comm.gather(local.natoms)
        if world.is_root:
            assert min(counts) > 0, (name, counts)   # every rank owns atoms
            whole = whole_state(source)
            order = np.argsort(whole.ids)
            for k, a in atom_arrays(whole).items():
                b = np.concatenate(got[k])
                b = b[np.argsort(np.concatenate(got["ids"]))]
                assert np.array_equal(b, a[order]), (name, k)
            assert local.natoms_global == whole.natoms
        writer = None
        if world.is_root:
            writer = open_trajectory("h5md", f"{name}.h5md", None, None, ["A", "B"], ("position",), True,
                                     "eV Angstrom-1", natoms=local.natoms_global)
        _give_atoms(writer, local, world)
        if writer is not None:
            writer.close()

    for name, source in sources():
        try:
            check(name, source)
        except BaseException:
            import traceback
            traceback.print_exc()
            sys.stdout.flush()
            world.comm.Abort(1)
    print("ok", world.rank)
""")


@pytest.mark.skipif(MPIEXEC is None or not _mpi4py(), reason="needs mpi4py and mpiexec")
def test_three_ranks_receive_every_atom_of_each_source_in_small_blocks(tmp_path):
    toml = make_input(tmp_path)
    state = whole_state(structure_atoms(load_run_settings(toml), ["A", "B"]))
    state.ids = state.ids[::-1].copy()   # a checkpoint whose atoms are not in id order
    write_checkpoint(tmp_path / "ck.h5", state, {})
    (tmp_path / "scatter.py").write_text(SCATTER)
    r = subprocess.run([MPIEXEC, "-n", "3", sys.executable, "scatter.py"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert r.stdout.count("ok") == 3
    for name in ("replicas", "rotated", "checkpoint"):
        # in id order: the replicas' ids are their order, the checkpoint's run backwards
        order = np.argsort(state.ids) if name == "checkpoint" else np.arange(state.natoms)
        with h5py.File(tmp_path / f"{name}.h5md", "r") as f:
            g = f["particles/trajectory"]
            assert np.array_equal(g["species"][()], state.types[order]), name
            assert np.array_equal(g["mass"][()], state.masses[order]), name
