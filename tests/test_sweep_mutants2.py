"""Tests for the survivors of the second round of mutation testing (compression, precision, I/O):
each fails on one plausible mistake that the rest of the suite let through (2026-12-07).

- a compressed table whose fine grid stops one step short of the data's range (`build_table`);
- mix32 summing the descriptor contraction T in float32 (numdp.model.precision: T in float64);
- a LAMMPS dump's triclinic x bounds missing the xy + xz corner (LAMMPS' xlo_bound);
- a `.dp` file written with the descriptor's resnet_dt flag lost;
- npy sets read in natural order (set.2 before set.10) instead of DeePMD-kit's sorted names;
- migration moving an atom one subdomain per dimension when it has crossed two.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from numdp.io.model_file import read_model, write_model
from numdp.io.npy_system import load_system
from numdp.io.trajectory import LammpsDumpWriter
from numdp.kernels.cpu.descriptor import contract_D, contract_T
from numdp.model.dp_model import DPModel
from numdp.model.tables import build_table
from numdp.model.workspace import Workspace
from randmodel import random_config, random_params
from test_mpi import MPIEXEC, _mpi4py


def test_fine_grid_reaches_the_end_of_the_data_range():
    """The fine step covers [lower, upper] (n0 = ceil((upper - lower) / dx) intervals): inputs
    just below upper must not fall in the 10x coarser extrapolation grid."""
    net = random_params(ntypes=1, seed=3).descriptor.embeddings[0]
    for lower, upper, dx in ((-0.3, 2.345, 0.01), (0.0, 1.0, 0.1), (-1.0, 0.05, 0.2)):
        tab = build_table(net, lower, upper, dx, 5)
        assert tab.h0 == dx
        assert upper <= tab.upper < upper + dx   # up to the round-off of lower + n0 dx (exact here)
        fine = tab.nodes[:tab.n0 + 1]
        # each node lower + i dx is within 2u |node| of its value: a step within 4u max|node|
        np.testing.assert_allclose(np.diff(fine), dx, rtol=0, atol=4 * 2.0 ** -53 * max(abs(lower), abs(tab.upper)))


def test_mix32_descriptor_contraction_sums_in_float64():
    """mix32 rounds G to float32 but forms T = R^T G / nnei in float64 (numdp.model.precision):
    the descriptor of a mix32 model equals the float64 contraction of its own float32 G.  One
    chunk, one embedding tile and one thread: the same G bit for bit, so the only difference a
    float64 T allows is the order of the D products (bound: order_bound's n u64, far below the
    ~1e-7 of float32 sums)."""
    params = random_params(ntypes=2, sel=[10, 10], seed=5)
    model = DPModel(params, nthreads=1, precision="mix32")
    pos, types, box = random_config(12, 2, box_len=6.0, tilt=0.1, seed=2)
    desc = model.descriptor(pos, types, box)
    typ, ext, nl = model._prepare(pos, types, box)
    ev, d = model._ev, params.descriptor
    atoms = np.argsort(typ, kind="stable").astype(np.int64)
    ws = Workspace()
    env = ev._env(ext.positions, nl.nlist, typ, atoms, ws)
    assert env.npairs <= 384   # one embedding tile
    G, _ = ev._embed(env.rt, env.npairs, env.poff, env.tb, False, ws)
    assert G.dtype == np.float32
    T = np.zeros((len(atoms), 4, d.neuron[-1]))
    contract_T(env.atypes, env.rt, G, env.poff, env.npad, ev.rt_pad, ev.G_pad, 1.0 / d.nnei, T)
    D = np.zeros((len(atoms), d.dim_out))
    contract_D(T, d.axis_neuron, False, D)
    scale = np.abs(D).max()
    assert np.abs(desc[atoms] - D).max() <= 4 * d.neuron[-1] * 2.0 ** -53 * scale


def test_lammps_dump_triclinic_bounds_enclose_the_cell(tmp_path):
    """LAMMPS' BOX BOUNDS of a tilted cell are the bounding box of its 8 corners (xlo_bound =
    xlo + min(0, xy, xz, xy + xz), ...): with both x tilts negative the corner a·0 + b + c sets
    xlo_bound.  A cell already in LAMMPS' form and of exact binary numbers: no rotation, exact."""
    box = np.array([[10.0, 0.0, 0.0], [-3.0, 9.0, 0.0], [-2.0, -1.5, 8.0]])
    path = tmp_path / "t.lammpstrj"
    w = LammpsDumpWriter(path, np.zeros(2, np.int64), np.full(2, 39.948), ["Ar"], ("position",), None)
    w.append(0, 0.0, np.array([[1.0, 1.0, 1.0], [4.0, 5.0, 6.0]]), None, None, box, {})
    w.close()
    lines = path.read_text().splitlines()
    assert lines[4] == "ITEM: BOX BOUNDS xy xz yz pp pp pp"
    rows = [[float(v) for v in ln.split()] for ln in lines[5:8]]
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], float) @ box
    for dim in (0, 1):
        assert rows[dim][:2] == [corners[:, dim].min(), corners[:, dim].max()]
    assert [r[2] for r in rows] == [-3.0, -2.0, -1.5]


def test_dp_file_keeps_the_resnet_dt_flags(tmp_path):
    """The descriptor's and the fitting net's resnet_dt go to the `.dp` file as they are (here
    the reverse of DeePMD-kit's defaults, descriptor False and fitting True)."""
    for desc_dt, fit_dt in ((True, False), (False, True)):
        params = random_params(ntypes=2, resnet_dt=desc_dt, fit_resnet_dt=fit_dt, seed=1)
        path = tmp_path / f"m{int(desc_dt)}.dp"
        write_model(params, path)
        back = read_model(path)
        assert back.descriptor.resnet_dt is desc_dt and back.fitting.resnet_dt is fit_dt


def test_npy_sets_are_read_in_sorted_name_order(tmp_path):
    """DeePMD-kit sorts a system's set folders by name (deepmd.utils.data: glob, then sort):
    set.10 comes before set.2."""
    (tmp_path / "type.raw").write_text("0\n0\n")
    for name, e in (("set.2", 2.0), ("set.10", 10.0), ("set.000", 0.0)):
        s = tmp_path / name
        s.mkdir()
        np.save(s / "coord.npy", np.full((1, 6), e))
        np.save(s / "box.npy", (10.0 * np.eye(3)).reshape(1, 9))
        np.save(s / "energy.npy", np.array([e]))
    system = load_system(tmp_path)
    np.testing.assert_array_equal(system.energy, [0.0, 10.0, 2.0])


def test_mix16_products_accumulate_in_float32():
    """mix16 rounds each product operand to half precision and accumulates in float32
    (numdp.model.precision; cuBLAS' CUBLAS_COMPUTE_32F on a GPU).  Linear layers of small
    binary numbers make every step exact in that arithmetic: inputs and weights exact in
    float16, every partial sum an integer below 2^24, so the net equals its float64 value
    exactly; sums above 2048 of odd integers are not float16 numbers, so half-precision
    accumulation would round them."""
    from numdp.model.nets import InferenceNet, embed_value
    from numdp.model.params import Layer, Net

    k = 64
    w1 = np.arange(1.0, k + 1.0).reshape(1, k)            # y1 = 3 w1 + 1: odd integers < 2048
    b1 = np.ones(k)
    w2 = np.array([[1.0, -1.0, 2.0, 3.0]] * k) + np.arange(k)[:, None] % 3
    b2 = np.zeros(4)
    net = Net([Layer(w=w1, b=b1, idt=None, activation="none", resnet=False),
               Layer(w=w2, b=b2, idt=None, activation="none", resnet=False)])
    x = np.array([3.0, -1.0, 0.5])
    exact = (x[:, None] * w1 + b1) @ w2 + b2
    assert np.abs(exact).max() > 2048
    for precision in ("mix16", "mix32", "double"):
        np.testing.assert_array_equal(embed_value(x, InferenceNet(net, precision)), exact)


MIGRATE = """
import numpy as np
from mpi4py import MPI
from numdp.parallel.domain import Domain, wrap_images
from numdp.parallel.exchange import migrate
from numdp.parallel.world import World

world = World(MPI.COMM_WORLD)
domain = Domain((4, 1, 1), world.rank)
box = np.diag([8.0, 5.0, 5.0])
# each rank starts with one atom in every subdomain (2 A wide along x), one of them an image
ids = 4 * world.rank + np.arange(4, dtype=np.int64)
x = 2.0 * np.arange(4) + 1.0 + 0.1 * world.rank
x[world.rank] += 8.0
pos = np.stack([x, np.full(4, 2.5), np.full(4, 2.5)], axis=1)
out = migrate(world, domain, {"positions": pos, "ids": ids}, box)
frac, _ = wrap_images(out["positions"], box)
owners = domain.owners(frac)
every = sorted(int(i) for part in MPI.COMM_WORLD.allgather(out["ids"].tolist()) for i in part)
print(world.rank, out["ids"].tolist(), owners.tolist(), flush=True)
assert (owners == world.rank).all() and every == list(range(16)), (world.rank, out["ids"], owners)
"""


@pytest.mark.skipif(MPIEXEC is None or not _mpi4py(), reason="needs mpiexec and mpi4py (pip install -e '.[mpi]')")
def test_migration_moves_atoms_across_several_subdomains(tmp_path):
    """Four subdomains along x: an atom two subdomains away from its owner (the farthest on a
    periodic ring of 4) arrives there in one `migrate` call, every atom once."""
    (tmp_path / "migrate.py").write_text(MIGRATE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "PMIX_", "MPI_"))}
    r = subprocess.run([MPIEXEC, "-n", "4", sys.executable, "migrate.py"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
