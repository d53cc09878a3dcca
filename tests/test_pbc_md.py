"""Mixed boundary conditions in `numdp run` and MPI (issue 15 item 2): a slab periodic along a and b
only against the same slab in a cell with vacuum along z, two ranks against serial, NVE energy
conservation, and the errors (NPT, a grid that splits a non-periodic direction, bad pbc values).

The slab is test_mpi's rocksalt crystal, 3 x 3 x 2 cubic cells (4 atomic layers, z from 0 to 6 Å)
in its tilted cell; model rcut 4 Å, skin 1 Å.  The vacuum cell keeps a and b and has c = (0, 0,
40 Å): the periodic images along c are > 30 Å away, far beyond rcut + skin, so both runs see the
same pairs and differ only in the order of sums (ghost order)."""
from __future__ import annotations

import re

import h5py
import numpy as np
import pytest

from numdp.config import load_run_settings
from numdp.errors import InputError
from numdp.io.structure import read_structure, write_extxyz
from numdp.md.setup import build_simulation
from test_mpi import MPIEXEC, U64, assert_same_run, frames, make_run, numdp_run, rocksalt

CELLS = (3, 3, 2)
STEPS = 60


def slab_dir(path, vacuum: bool, pbc_key: bool = True, steps=STEPS, extra=""):
    """A run directory with the slab: pbc [T, T, F] through [system] pbc (pbc_key) or the extxyz
    header; or (vacuum) fully periodic with 40 Å of cell along z."""
    make_run(path, cells=CELLS, steps=steps, every=10, extra=extra)
    x, t, box = rocksalt(CELLS)
    elements = [["A", "B"][i] for i in t]
    if vacuum:
        box = box.copy()
        box[2] = (0.0, 0.0, 40.0)
        write_extxyz(path / "start.xyz", elements, x, box)
    elif pbc_key:
        write_extxyz(path / "start.xyz", elements, x, box)
        text = (path / "md.toml").read_text().replace('file = "start.xyz"',
                                                      'file = "start.xyz"\npbc = [true, true, false]')
        (path / "md.toml").write_text(text)
    else:
        write_extxyz(path / "start.xyz", elements, x, box, pbc=(True, True, False))
    return path


@pytest.fixture(scope="module")
def vacuum_run(tmp_path_factory):
    path = slab_dir(tmp_path_factory.mktemp("vacuum"), vacuum=True)
    numdp_run(path, 1)
    return frames(path)


@pytest.fixture(scope="module")
def slab_run(tmp_path_factory):
    path = slab_dir(tmp_path_factory.mktemp("slab"), vacuum=False)
    r = numdp_run(path, 1)
    assert "mixed boundary conditions: periodic along a, b only" in r.stdout
    return frames(path)


def test_slab_equals_the_slab_in_a_vacuum_box(slab_run, vacuum_run):
    # same_run_bounds (test_mpi): two runs that differ only in the order of sums, in double
    assert_same_run(vacuum_run, {**slab_run, "box": vacuum_run["box"]}, u=U64)
    # the slab really is open along c: in the periodic crystal every force vanishes by symmetry
    # (test_mpi), so the outer layers' z forces at step 0 (4.6e-3 eV/Å with this model) show
    # that no image across c was seen
    assert np.abs(slab_run["force"][0][:, 2]).max() > 1e-3


def test_slab_nve_conserves_energy(tmp_path):
    """Velocity Verlet's energy error is O(dt^2): halving dt must divide the fluctuation of the
    total energy by about 4 (between 3 and 5.3 with the O(dt^4) term); a force inconsistent
    with the energy (e.g. a periodic image in one and not the other) gives an error that does
    not scale so."""
    fluct = {}
    for dt, steps in ((0.002, 40), (0.001, 80)):
        path = slab_dir(tmp_path / f"dt{dt}", vacuum=False, steps=steps)
        text = (path / "md.toml").read_text().replace("timestep = 0.001", f"timestep = {dt}")
        text = text.replace("temperature = 20.0", "temperature = 100.0")
        (path / "md.toml").write_text(text)
        numdp_run(path, 1)
        with h5py.File(path / "traj.h5md", "r") as h5:
            e = h5["observables/total_energy/value"][()]
        fluct[dt] = np.abs(e - e[0]).max()
    ratio = fluct[0.002] / fluct[0.001]
    assert 3.0 < ratio < 5.3, (fluct, ratio)


def test_extxyz_pbc_is_read_and_the_key_overrides(tmp_path):
    x, t, box = rocksalt((1, 1, 1))
    write_extxyz(tmp_path / "s.xyz", ["A"] * 8, x, box, pbc=(True, False, True))
    assert read_structure(tmp_path / "s.xyz").pbc == (True, False, True)
    write_extxyz(tmp_path / "c.xyz", ["A"] * 8, x, box, pbc=(False, False, False))
    assert read_structure(tmp_path / "c.xyz").box is None


@pytest.mark.skipif(MPIEXEC is None, reason="needs mpiexec")
def test_two_ranks_equal_serial_for_a_slab(slab_run, tmp_path):
    path = slab_dir(tmp_path, vacuum=False, pbc_key=False)   # pbc="T T F" read from the extxyz file
    r = numdp_run(path, 2)
    assert re.search(r"grid [12] x [12] x 1,", r.stdout)     # c, not periodic, is never split
    assert_same_run(slab_run, frames(path), u=U64)


def _settings(path, replace):
    text = (path / "md.toml").read_text()
    for a, b in replace:
        text = text.replace(a, b)
    (path / "md.toml").write_text(text)
    return load_run_settings(path / "md.toml")


def test_errors(tmp_path):
    path = slab_dir(tmp_path / "npt", vacuum=False)
    npt = ('ensemble = "npt"\nthermostat = { kind = "langevin", temperature = 20.0, tau = 0.1 }\n'
           'barostat = { pressure = 1.0, tau = 1.0 }\n[neighbor]')
    with pytest.raises(InputError, match=r"\[md\] ensemble = 'npt' needs a cell periodic along all three vectors"):
        build_simulation(_settings(path, [("[neighbor]", npt)]))
    path = slab_dir(tmp_path / "grid", vacuum=False)
    from numdp.parallel.domain import check_grid, choose_grid
    with pytest.raises(InputError, match=r"grid \[1, 1, 2\] splits direction c, which is not periodic"):
        check_grid([1, 1, 2], 2, "md.toml: [parallel] grid", (True, True, False))
    assert choose_grid(4, np.diag([10.0, 10.0, 100.0]), (True, True, False))[2] == 1
    with pytest.raises(InputError, match=r"\[system\] pbc: expected three booleans"):
        _settings(path, [("pbc = [true, true, false]", 'pbc = "T T F"')])


def test_model_devi_reads_the_slab_pbc(tmp_path):
    """`numdp model-devi` on a pbc="T T F" extxyz evaluates the slab, not the periodic crystal."""
    from numdp.cli import main
    from numdp.io.model_file import read_model, write_model
    from numdp.model.deviation import frame_deviation
    from numdp.model.dp_model import DPModel
    from randmodel import random_params

    x, t, box = rocksalt(CELLS)
    write_extxyz(tmp_path / "slab.xyz", [["A", "B"][i] for i in t], x, box, pbc=(True, True, False))
    paths = []
    for seed in (2, 3):
        paths.append(str(tmp_path / f"m{seed}.h5"))
        write_model(random_params(ntypes=2, sel=[24, 24], neuron=(4, 8), axis_neuron=2, fitting=(8, 8), rcut=4.0,
                                  seed=seed), paths[-1])
    assert main(["model-devi", "-m", *paths, "-s", str(tmp_path / "slab.xyz"), "-o", str(tmp_path / "d.out")]) == 0
    row = np.loadtxt(tmp_path / "d.out")
    models = [DPModel(read_model(p), nthreads=1) for p in paths]

    def devi(pbc):
        outs = [m.evaluate(x, t, box, pbc=pbc) for m in models]
        d = frame_deviation([o.energy for o in outs], [o.forces for o in outs], [o.virial for o in outs])
        return np.array([d.max_devi_v, d.min_devi_v, d.avg_devi_v, d.max_devi_f, d.min_devi_f, d.avg_devi_f, d.devi_e])

    slab, bulk = devi((True, True, False)), devi(None)
    # printed with 7 significant digits: within 5e-7 relative (+ round-off of the sums, far below)
    assert np.allclose(row[1:], slab, rtol=1e-6, atol=1e-12)
    assert not np.allclose(row[1:], bulk, rtol=1e-3, atol=1e-6)


def test_checkpoint_and_trajectory_keep_the_boundary_conditions(tmp_path):
    from numdp.io.h5md import read_checkpoint

    path = slab_dir(tmp_path, vacuum=False, steps=10)
    numdp_run(path, 1)
    assert read_checkpoint(path / "checkpoint.h5").pbc == (True, True, False)
    with h5py.File(path / "traj.h5md", "r") as h5:
        assert [str(b.decode() if isinstance(b, bytes) else b) for b in h5["particles/trajectory/box"].attrs["boundary"]] \
            == ["periodic", "periodic", "none"]
    assert read_structure(path / "traj.h5md").pbc == (True, True, False)
    # a restart without the key keeps the checkpoint's pbc
    (path / "md.toml").write_text((path / "md.toml").read_text().replace("pbc = [true, true, false]\n", "")
                                  .replace("steps = 10", "steps = 20"))
    r = numdp_run(path, 1, "--restart", "checkpoint.h5")
    assert "mixed boundary conditions: periodic along a, b only" in r.stdout
