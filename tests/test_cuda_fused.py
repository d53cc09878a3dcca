"""Fused kernels of the GPU MD step (Numba's simulator) against the CPU twins or the array-library
chains they replace: the same bits (no arithmetic is reordered: picks, casts, additions in the
replaced order)."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest

pytest.importorskip("numba_cuda")


def _be():
    from numdp.backend import get_backend

    return get_backend("cuda")


@pytest.mark.parametrize("n", [1, 5, 32, 33, 1100])
def test_extreme_rows_tree_is_numpys_argmax_argmin_and_max(n):
    """tree_extreme_device: the first largest / smallest column 0 with its row's payload, and the
    max of the other columns, over 1, 2 and 3 levels of the tree; ties take the first row, a NaN
    counts as the extremum (the first NaN), max propagates NaN: NumPy's argmax / argmin / max."""
    from numdp.md.device_state import tree_extreme_device

    be = _be()
    rng = np.random.default_rng(n)
    for trial in range(4):
        rows = np.column_stack([rng.integers(0, 4, n).astype(np.float64), np.arange(n, dtype=np.float64),
                                rng.normal(size=n)])   # few values in column 0: ties
        if trial == 2 and n > 3:
            rows[[n // 2, n - 1], 0] = np.nan
            rows[n // 3, 2] = np.nan
        for minimum in (False, True):
            got = np.asarray(be.to_host(tree_extreme_device(be, be.to_device(rows), 2, minimum)))
            k = int(np.argmin(rows[:, 0]) if minimum else np.argmax(rows[:, 0]))
            want = np.array([rows[k, 0], k, np.max(rows[:, 2])])
            assert np.array_equal(got, want, equal_nan=True), (trial, minimum, got, want)


def test_displacement_rows_equal_the_cpu_displacement_check():
    """The rebuild test's records and tree give numdp.kernels.cpu.md.displacement_check's
    (max step², its atom, max ref²) bit for bit, ties included (the first atom)."""
    from numdp.kernels.cpu.md import displacement_check
    from numdp.kernels.cuda import launch, md
    from numdp.md.device_state import tree_extreme_device

    be = _be()
    rng = np.random.default_rng(3)
    n = 70
    pos = rng.uniform(0, 10, (n, 3))
    prev = pos + rng.normal(0, 0.01, (n, 3))
    prev[40] = prev[7] - pos[7] + pos[40]   # atoms 7 and 40 moved by the same vector: a tie
    ref = pos + rng.normal(0, 0.1, (n, 3))
    strain = np.eye(3) + rng.normal(0, 1e-3, (3, 3))
    rows = be.xp.empty((n, 3))
    md.displacement_rows[launch.grid(n)](be.to_device(pos), be.to_device(prev), be.to_device(ref),
                                         be.to_device(strain), rows)
    got = tuple(float(v) for v in be.to_host(tree_extreme_device(be, rows, 2)))
    assert got == tuple(float(v) for v in displacement_check(pos, prev, ref, strain))


def test_closest_pair_device_equals_the_cpu_closest_pair():
    """closest_pair (records + tree, read once) equals numdp.kernels.cpu.md.closest_pair on a list
    with two equally close pairs (the first centre wins) and centres without neighbours; no
    neighbour at all gives (inf, -1, -1) on both."""
    from numdp.kernels.cpu.md import closest_pair as cpu_closest
    from numdp.model.cuda_evaluator import closest_pair

    be = _be()
    rng = np.random.default_rng(5)
    ext = rng.uniform(0, 6, (50, 3))
    ext[33] = ext[3] + [0.3, 0.0, 0.0]
    ext[45] = ext[12] + [0.0, 0.3, 0.0]    # the same distance (exactly: one coordinate moved)
    sec = np.array([0, 2, 4], dtype=np.int64)
    nlist = np.full((20, 4), -1, dtype=np.int32)
    for i in range(20):
        if i % 5 == 4:
            continue   # no neighbour
        d = np.linalg.norm(ext - ext[i], axis=1)
        d[i] = np.inf
        order = np.argsort(d)
        nlist[i, 0], nlist[i, 2] = order[0], order[1]
    got = closest_pair(be, be.to_device(ext), be.to_device(nlist), be.to_device(sec))
    want = cpu_closest(ext, nlist, sec)
    assert got == (float(want[0]), int(want[1]), int(want[2])) and got[1] == 3
    nlist[:] = -1
    assert closest_pair(be, be.to_device(ext), be.to_device(nlist), be.to_device(sec)) == (math.inf, -1, -1)
    assert tuple(cpu_closest(ext, nlist, sec)) == (math.inf, -1, -1)


def _flagged(rng, n, bad_f, bad_v):
    """Random forces and velocities (n, 3) with a nan in force rows `bad_f` and a -inf in velocity
    rows `bad_v`."""
    f = rng.normal(size=(n, 3))
    v = rng.normal(size=(n, 3))
    for i in bad_f:
        f[i, i % 3] = np.nan
    for i in bad_v:
        v[i, 2] = -np.inf
    return f, v


def test_nonfinite_records_name_the_first_flagged_atom_of_each_array():
    """nonfinite_records + one tree: the first row with a nan / inf of forces and of velocities
    (numdp.kernels.cpu.md.first_nonfinite_row of each), -1 when none."""
    from numdp.kernels.cpu.md import first_nonfinite_row
    from numdp.kernels.cuda import launch, md
    from numdp.md.device_state import tree_extreme_device

    be = _be()
    rng = np.random.default_rng(2)
    n = 75
    for bad_f, bad_v in (((), ()), ((60, 9), ()), ((), (74,)), ((0,), (33, 40))):
        f, v = _flagged(rng, n, bad_f, bad_v)
        rows = be.xp.empty((n, 2))
        md.nonfinite_records[launch.grid(n)](be.to_device(f), be.to_device(v), rows)
        got = [n - int(g) if g else -1 for g in be.to_host(tree_extreme_device(be, rows, 0))]
        assert got == [int(first_nonfinite_row(f)), int(first_nonfinite_row(v))]
        assert got == [min(bad_f, default=-1), min(bad_v, default=-1)]


def test_kick_drift_is_kick_then_drift_bit_for_bit():
    """The fused half-kick and drift equals the device kick then drift and the CPU kick then
    drift, bit for bit."""
    from numdp.kernels.cpu import md as cpu
    from numdp.kernels.cuda import launch, md

    be = _be()
    rng = np.random.default_rng(4)
    n = 9
    x, v, f = rng.normal(size=(3, n, 3))
    m = rng.uniform(1.0, 20.0, n)
    xd, vd = be.to_device(x.copy()), be.to_device(v.copy())
    md.kick_drift[launch.grid(n)](vd, be.to_device(f), be.to_device(m), 0.00025, xd, 0.0005)
    x2, v2 = be.to_device(x.copy()), be.to_device(v.copy())
    md.kick[launch.grid(n)](v2, be.to_device(f), be.to_device(m), 0.00025)
    md.drift[launch.grid(n)](x2, v2, 0.0005)
    xc, vc = x.copy(), v.copy()
    cpu.kick(vc, f, m, 0.00025)
    cpu.drift(xc, vc, 0.0005)
    for a, b, c in ((xd, x2, xc), (vd, v2, vc)):
        assert np.array_equal(be.to_host(a), be.to_host(b)) and np.array_equal(be.to_host(a), c)


@pytest.mark.parametrize("chain, nloop", [(3, 1), (1, 1), (4, 2)])
def test_nose_hoover_chain_kernel_is_the_cpu_chain(chain, nloop):
    """The device's chain half-step (nose_hoover_chain_step on a kinetic sum in device memory, a
    one-row last level of the tree,
    then scale_rows_by reading the factor there) equals numdp.kernels.cpu.thermostat's over
    five half-steps: chain variables and scaled velocities, bit for bit under the simulator (the
    same scalar function; exp is the C library's on both).  On a GPU, exp is libdevice's
    (within 2 ulp of the true value where the CPU's is within 1) and the compiler may fuse
    multiply-adds, so each of the at most 5 x 3 x nloop x 2 x M x 8 roundings of the five calls
    may differ by 2u relative; the forces' cancellations are at most 2x here (2K = 2 N_f kT on
    entry and the chain moves K by under 10 %), and the link velocities feed each other M deep:
    relative bound 2 x 2u x count x 2^M."""
    from numdp.kernels.cpu.thermostat import nose_hoover_chain_half_step
    from numdp.kernels.cuda import launch, md
    from numdp.md.thermostats import NoseHooverChain
    from numdp.units import KB, MVV2E

    be = _be()
    rng = np.random.default_rng(chain + 10 * nloop)
    n, dof = 30, 87
    kt = KB * 300.0
    m = rng.uniform(1.0, 20.0, n)
    v = rng.normal(size=(n, 3))
    v *= np.sqrt(2 * dof * kt / (MVV2E * np.sum(m[:, None] * v * v)))   # 2K = 2 N_f kT
    q = np.full(chain, kt * 0.02 ** 2)
    q[0] *= dof
    w = NoseHooverChain._WEIGHTS
    xi, vxi = rng.normal(0, 0.1, chain), rng.normal(0, 20.0, chain)
    xi0, v0 = xi.copy(), v.copy()
    vd, xid, vxid = be.to_device(v.copy()), be.to_device(xi.copy()), be.to_device(vxi.copy())
    qd, wd, factor = be.to_device(q), be.to_device(w), be.xp.empty(1)
    for _ in range(5):
        s = float(np.sum(m * np.sum(v * v, axis=1)))
        md.nose_hoover_chain_step[1, 1](be.to_device(np.array([[s]])), dof, kt, qd, 0.0005, nloop, wd, xid, vxid,
                                        factor)
        md.scale_rows_by[launch.grid(n)](vd, factor)
        v *= nose_hoover_chain_half_step(2.0 * (0.5 * MVV2E * s), dof, kt, q, 0.0005, nloop, w, xi, vxi)
    # the chain acted: its variables moved and the velocities were scaled, by a few percent
    assert np.abs(xi - xi0).min() > 1e-4 and 1e-3 < np.abs(v / v0 - 1.0).max() < 0.1
    got = [np.asarray(be.to_host(a)) for a in (vd, xid, vxid)]
    if os.environ.get("NUMDP_TEST_REAL_GPU") == "1":
        rel = 2 * 2 * 2.0 ** -53 * (5 * 3 * nloop * 2 * chain * 8) * 2 ** chain
        for g, want in zip(got, (v, xi, vxi)):
            np.testing.assert_allclose(g, want, rtol=0, atol=rel * np.abs(want).max())
    else:
        for g, want in zip(got, (v, xi, vxi)):
            assert np.array_equal(g, want)


@pytest.mark.parametrize("n", [1, 40, 1057])
def test_nose_hoover_chain_kernel_finishes_the_kinetic_tree_with_its_bits(n):
    """DeviceVelocities.nose_hoover_chain runs the kinetic tree's last level inside the chain's
    one-thread kernel (one launch fewer per half-step): its factor and chain variables are those
    of the CPU chain on the full tree sum (tree_sum of the same per-atom terms), bit for bit under
    the simulator, for 1 atom (no tree level), 40 (one level before the kernel) and 1 057 (two).
    On a GPU the bound of the kernel test above applies to the chain; the sum is the same
    additions in the same order (`_column_sum`, shared with row_sums)."""
    from numdp.kernels.cpu.thermostat import nose_hoover_chain_half_step
    from numdp.kernels.cuda import launch, md
    from numdp.md.device import DeviceVelocities
    from numdp.md.device_state import DeviceState, tree_sum
    from numdp.md.thermostats import NoseHooverChain
    from numdp.system import State
    from numdp.units import KB, MVV2E

    be = _be()
    rng = np.random.default_rng(n)
    st = State(positions=rng.uniform(0, 9, (n, 3)), velocities=rng.normal(size=(n, 3)),
               types=np.zeros(n, np.int32), masses=rng.uniform(1.0, 20.0, n), box=None, type_map=["A"],
               ids=np.arange(n))
    dev = DeviceState.upload(be, st)
    kt, w = KB * 300.0, NoseHooverChain._WEIGHTS
    q = np.array([3 * n * kt * 0.02 ** 2, kt * 0.02 ** 2, kt * 0.02 ** 2])
    xi, vxi = rng.normal(0, 0.1, 3), rng.normal(0, 20.0, 3)
    st.thermostat = {"xi": xi.copy(), "vxi": vxi.copy()}
    # on a GPU: the kernel test's bound for 3 calls, nloop 1, M = 3
    rel = 0.0 if os.environ.get("NUMDP_TEST_REAL_GPU") != "1" else 2 * 2 * 2.0 ** -53 * (3 * 3 * 2 * 3 * 8) * 2 ** 3

    def same(got, want):
        got = np.asarray(be.to_host(got) if not isinstance(got, np.ndarray) else got)
        assert np.all(np.abs(got - want) <= rel * np.abs(want).max()), (got, want)

    ops = DeviceVelocities(dev)
    for _ in range(3):
        rows = be.xp.empty((n, md.KINETIC_COLUMNS))
        md.kinetic_terms[launch.grid(n)](dev.velocities, dev.masses, rows)
        s = float(tree_sum(be, rows)[0])
        want = nose_hoover_chain_half_step(2.0 * (0.5 * MVV2E * s), st.dof, kt, q, 0.0005, 1, w, xi, vxi)
        v = np.array(be.to_host(dev.velocities))
        ops.nose_hoover_chain(st, 0.0005, kt, q, 1, w)
        assert want != 1.0    # the chain acted
        same(ops._factor, np.array([want]))
        same(dev.velocities, v * want)
    dev.download(st)
    same(st.thermostat["xi"], xi)
    same(st.thermostat["vxi"], vxi)


def test_nose_hoover_chain_kernel_leaves_a_system_at_rest_alone():
    """2K = 0: factor 1 and the chain variables untouched (the host path returns early)."""
    from numdp.kernels.cuda import md
    from numdp.md.thermostats import NoseHooverChain

    be = _be()
    xid, vxid = be.to_device(np.array([0.5, -0.25])), be.to_device(np.array([3.0, 2.0]))
    factor = be.to_device(np.array([7.0]))
    md.nose_hoover_chain_step[1, 1](be.to_device(np.zeros((3, 5))), 3, 0.025, be.to_device(np.ones(2)), 0.0005, 1,
                                    be.to_device(NoseHooverChain._WEIGHTS), xid, vxid, factor)
    assert float(be.to_host(factor)[0]) == 1.0
    assert np.array_equal(be.to_host(xid), [0.5, -0.25]) and np.array_equal(be.to_host(vxid), [3.0, 2.0])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fit_energy_is_the_cast_add_add_scatter_chain(dtype):
    """fit_energy writes (float64(z) + fit bias) + atom bias at the type's atoms: the bits of the
    array-library chain it replaced (astype, two additions, a scatter)."""
    from numdp.kernels.cuda import launch, layers

    be = _be()
    rng = np.random.default_rng(6)
    z = rng.normal(size=(7, 1)).astype(dtype)
    atoms = rng.permutation(12)[:7].astype(np.int64)
    fb, ab = 0.123456789, np.float64(-93.3219876)
    want = np.full(12, 5.0)
    want[atoms] = z[:, 0].astype(np.float64) + fb + ab
    got = be.to_device(np.full(12, 5.0))
    layers.fit_energy[launch.strided(7)](be.to_device(z), be.to_device(atoms), fb, float(ab), got)
    assert np.array_equal(be.to_host(got), want)


@pytest.mark.parametrize("occupied", ["some", "none", "all"])
def test_reverse_index_equals_the_array_library_chain(occupied):
    """DeviceChunkEnv.reverse_index (keys, sort, sorted neighbours) gives the arrays of the chain
    it replaced: keys nbr P + p, argsort, the neighbours gathered in that order."""
    from numdp.model.cuda_evaluator import DeviceChunkEnv

    be = _be()
    rng = np.random.default_rng(7)
    P = 90
    nbr = rng.integers(0, 25, P).astype(np.int32)
    if occupied != "all":
        nbr[rng.random(P) < (1.0 if occupied == "none" else 0.4)] = -1
    env = DeviceChunkEnv(np.arange(3), None, None, None, None, be.to_device(nbr), np.array([0, 3]))
    rev, snbr = (np.asarray(be.to_host(a)) for a in env.reverse_index(be))
    key = nbr.astype(np.int64) * P + np.arange(P, dtype=np.int64)
    want_rev = np.argsort(key)
    assert np.array_equal(rev, want_rev) and np.array_equal(snbr, nbr[want_rev]) and snbr.dtype == np.int32


# -- one-block forms against the launches they replace (systems up to md.ONE_BLOCK_ROWS) -------------
# Atom counts straddle the tree's level boundaries (SUM_CHUNK = 32 rows per thread per level): 1
# (no level), 31 / 32 (one chunk), 33 (two chunks), 192 (6), 1 025 (33 chunks, then 2, then 1: the
# deepest tree of the one-block kernels' three levels).  The multi-launch forms are forced by
# setting md.ONE_BLOCK_ROWS to 0 (the host code reads it at each call).
BLOCK_SIZES = [1, 31, 32, 33, 192, 1025]


def _multi_launch(monkeypatch):
    from numdp.kernels.cuda import md

    monkeypatch.setattr(md, "ONE_BLOCK_ROWS", 0)


@pytest.mark.parametrize("n", BLOCK_SIZES)
def test_nose_hoover_chain_block_is_the_four_launches_bit_for_bit(n, monkeypatch):
    """DeviceVelocities.nose_hoover_chain in one block (nose_hoover_chain_block) and in four
    launches (kinetic_terms, row_sums levels, nose_hoover_chain_step, scale_rows_by): the same
    factor, velocities and chain variables, bit for bit, over three half-steps; the kernel alone
    gives them for blocks of 1, 3 and 64 threads too (a thread taking several chunks, or one)."""
    from numdp.kernels.cuda import md
    from numdp.md.device import DeviceVelocities
    from numdp.md.device_state import DeviceState
    from numdp.md.thermostats import NoseHooverChain
    from numdp.system import State
    from numdp.units import KB, MVV2E

    be = _be()
    rng = np.random.default_rng(n)
    kt, w = KB * 300.0, NoseHooverChain._WEIGHTS
    q = np.array([3 * n * kt * 0.02 ** 2, kt * 0.02 ** 2, kt * 0.02 ** 2])
    v0 = rng.normal(size=(n, 3))
    v0[n // 2] *= 30.0    # one fast atom: the sum's rounding depends on its order
    st = State(positions=rng.uniform(0, 9, (n, 3)), velocities=v0, types=np.zeros(n, np.int32),
               masses=rng.uniform(1.0, 20.0, n), box=None, type_map=["A"], ids=np.arange(n))
    v0 *= np.sqrt(2 * 3 * n * kt / (MVV2E * np.sum(st.masses[:, None] * v0 * v0)))   # 2K = 2 (3N) kT
    st.velocities = v0
    chain0 = {"xi": rng.normal(0, 0.1, 3), "vxi": rng.normal(0, 20.0, 3)}

    def run(multi):
        with monkeypatch.context() as mp:
            if multi:
                _multi_launch(mp)
            st.thermostat = {k: a.copy() for k, a in chain0.items()}
            dev = DeviceState.upload(be, st)
            ops = DeviceVelocities(dev)
            factors = []
            for _ in range(3):
                ops.nose_hoover_chain(st, 0.0005, kt, q, 1, w)
                factors.append(float(be.to_host(ops._factor)[0]))
            return factors, np.array(be.to_host(dev.velocities)), [np.array(be.to_host(dev.thermostat[k]))
                                                                   for k in ("xi", "vxi")]

    fused, multi = run(False), run(True)
    assert fused[0] == multi[0] and all(f != 1.0 for f in fused[0]), (fused[0], multi[0])
    assert np.array_equal(fused[1], multi[1]) and not np.array_equal(fused[1], v0)
    for a, b in zip(fused[2], multi[2]):
        assert np.array_equal(a, b)
    qd, wd = be.to_device(q), be.to_device(w)
    for threads in (1, 3, 64):
        vd, terms, factor = be.to_device(v0.copy()), be.xp.empty((n, 1)), be.xp.empty(1)
        xid, vxid = be.to_device(chain0["xi"].copy()), be.to_device(chain0["vxi"].copy())
        md.nose_hoover_chain_block[1, threads](vd, be.to_device(st.masses), terms, st.dof, kt, qd, 0.0005, 1, wd,
                                               xid, vxid, factor)
        assert float(be.to_host(factor)[0]) == multi[0][0], threads


def test_nose_hoover_chain_block_leaves_a_system_at_rest_alone():
    """2K = 0 in the one-block form: factor 1, velocities and chain variables untouched."""
    from numdp.kernels.cuda import launch, md
    from numdp.md.thermostats import NoseHooverChain

    be = _be()
    vd = be.xp.zeros((40, 3))
    xid, vxid = be.to_device(np.array([0.5, -0.25])), be.to_device(np.array([3.0, 2.0]))
    factor = be.to_device(np.array([7.0]))
    md.nose_hoover_chain_block[launch.one_block(40)](vd, be.to_device(np.ones(40)), be.xp.empty((40, 1)), 3, 0.025,
                                                     be.to_device(np.ones(2)), 0.0005, 1,
                                                     be.to_device(NoseHooverChain._WEIGHTS), xid, vxid, factor)
    assert float(be.to_host(factor)[0]) == 1.0 and not np.asarray(be.to_host(vd)).any()
    assert np.array_equal(be.to_host(xid), [0.5, -0.25]) and np.array_equal(be.to_host(vxid), [3.0, 2.0])


def _records(rng, n, trial):
    """(n, 3) records with ties in column 0 and, in trials 2 and 3, NaNs (column 0 and 2) and
    infinities."""
    rows = np.column_stack([rng.integers(0, 4, n).astype(np.float64), np.arange(n, dtype=np.float64),
                            rng.normal(size=n)])
    if trial >= 2 and n > 3:
        rows[[n // 2, n - 1], 0] = np.nan
        rows[n // 3, 2] = np.nan if trial == 2 else np.inf
        rows[1, 0] = -np.inf if trial == 3 else rows[1, 0]
    return rows


@pytest.mark.parametrize("n", BLOCK_SIZES[1:])
def test_extreme_block_is_the_levels_of_extreme_rows_bit_for_bit(n, monkeypatch):
    """tree_extreme_device in one launch (extreme_block) and in its levels of extreme_rows: the
    same record, NaNs and ties included, for argmax and argmin, 2 and 3 columns, npay 0 to 3;
    both are NumPy's argmax / argmin and max."""
    from numdp.md.device_state import tree_extreme_device

    be = _be()
    rng = np.random.default_rng(n)
    for trial in range(4):
        rows = _records(rng, n, trial)
        for ncol, npay, minimum in ((3, 2, False), (3, 2, True), (2, 0, False), (3, 3, True), (3, 1, False)):
            r = be.to_device(np.ascontiguousarray(rows[:, :ncol]))
            fused = np.asarray(be.to_host(tree_extreme_device(be, r, npay, minimum)))
            with monkeypatch.context() as mp:
                _multi_launch(mp)
                multi = np.asarray(be.to_host(tree_extreme_device(be, r, npay, minimum)))
            assert np.array_equal(fused, multi, equal_nan=True), (trial, ncol, npay, minimum, fused, multi)
            k = int(np.argmin(rows[:, 0]) if minimum else np.argmax(rows[:, 0]))
            want = [rows[k, c] if c < npay else np.max(rows[:, c]) for c in range(ncol)]
            assert np.array_equal(fused, want, equal_nan=True)


@pytest.mark.parametrize("n", BLOCK_SIZES)
def test_displacement_extreme_is_the_rebuild_tests_launches_bit_for_bit(n, monkeypatch):
    """The rebuild test in one launch (displacement_extreme) and as displacement_rows then the
    levels of extreme_rows: the same (max step², its atom, max ref²) and the same records, ties
    (the first atom) and a NaN position included; the CPU's displacement_check agrees without the
    NaN."""
    from numdp.kernels.cpu.md import displacement_check
    from numdp.kernels.cuda import launch, md
    from numdp.md.device_state import tree_extreme_device

    be = _be()
    rng = np.random.default_rng(n + 1)
    pos = rng.uniform(0, 10, (n, 3))
    prev = pos + rng.normal(0, 0.01, (n, 3))
    if n > 2:
        prev[n - 1] = prev[1] - pos[1] + pos[n - 1]   # the same move: a tie
    ref = pos + rng.normal(0, 0.1, (n, 3))
    strain = np.eye(3) + rng.normal(0, 1e-3, (3, 3))
    for bad in (None, n // 2):
        p = pos.copy()
        if bad is not None:
            p[bad, 1] = np.nan
        args = [be.to_device(a) for a in (p, prev, ref, strain)]
        rows_f, out = be.xp.empty((n, 3)), be.xp.empty(3)
        md.displacement_extreme[launch.one_block(n)](*args, rows_f, out)
        rows_m = be.xp.empty((n, 3))
        md.displacement_rows[launch.grid(n)](*args, rows_m)
        with monkeypatch.context() as mp:
            _multi_launch(mp)
            multi = np.asarray(be.to_host(tree_extreme_device(be, rows_m, 2)))
        fused = np.asarray(be.to_host(out))
        assert np.array_equal(fused, multi, equal_nan=True), (bad, fused, multi)
        assert np.array_equal(be.to_host(rows_f), be.to_host(rows_m), equal_nan=True)
        if bad is None:
            assert tuple(fused) == tuple(float(v) for v in displacement_check(p, prev, ref, strain))
        else:
            assert np.isnan(fused[0]) and int(fused[1]) == bad


@pytest.mark.parametrize("n", BLOCK_SIZES)
def test_nonfinite_extreme_is_the_safety_launches_bit_for_bit(n, monkeypatch):
    """The safety records in one launch (nonfinite_extreme) and as nonfinite_records then the
    levels of extreme_rows: the same (n - first non-finite force row, n - first velocity row),
    0 when none, and the first flagged rows of numdp.kernels.cpu.md.first_nonfinite_row."""
    from numdp.kernels.cpu.md import first_nonfinite_row
    from numdp.kernels.cuda import launch, md
    from numdp.md.device_state import tree_extreme_device

    be = _be()
    rng = np.random.default_rng(n + 2)
    cases = [((), ()), ((n - 1,), ()), ((), (0,)), ((n // 2, n - 1), (n // 3, n // 2))]
    for bad_f, bad_v in cases:
        f, v = _flagged(rng, n, bad_f, bad_v)
        fd, vd = be.to_device(f), be.to_device(v)
        out = be.xp.empty(2)
        md.nonfinite_extreme[launch.one_block(n)](fd, vd, be.xp.empty((n, 2)), out)
        rows = be.xp.empty((n, 2))
        md.nonfinite_records[launch.grid(n)](fd, vd, rows)
        with monkeypatch.context() as mp:
            _multi_launch(mp)
            multi = np.asarray(be.to_host(tree_extreme_device(be, rows, 0)))
        fused = np.asarray(be.to_host(out))
        assert np.array_equal(fused, multi), (fused, multi)
        got = [n - int(g) if g else -1 for g in fused]
        assert got == [int(first_nonfinite_row(f)), int(first_nonfinite_row(v))]
        assert got == [min(bad_f, default=-1), min(bad_v, default=-1)]


@pytest.mark.parametrize("n", BLOCK_SIZES[1:])
def test_sum_block_is_the_levels_of_row_sums_bit_for_bit(n, monkeypatch):
    """tree_sum_device in one launch (sum_block) and in its levels of row_sums: the same column
    sums, bit for bit, for 1 and 5 columns of mixed magnitudes (the rounding depends on the
    order) and with a NaN and an infinity."""
    from numdp.md.device_state import tree_sum_device

    be = _be()
    rng = np.random.default_rng(n + 3)
    for ncol in (1, 5):
        rows = rng.normal(size=(n, ncol)) * 10.0 ** rng.integers(-8, 9, (n, ncol))
        for trial in range(2):
            if trial:
                rows[n // 2, 0] = np.inf
                rows[n - 1, ncol - 1] = np.nan
            r = be.to_device(rows)
            fused = np.asarray(be.to_host(tree_sum_device(be, r)))
            with monkeypatch.context() as mp:
                _multi_launch(mp)
                multi = np.asarray(be.to_host(tree_sum_device(be, r)))
            assert np.array_equal(fused, multi, equal_nan=True), (ncol, trial, fused, multi)
            if not trial:
                assert np.allclose(fused, rows.sum(axis=0), rtol=1e-12, atol=1e-12 * np.abs(rows).sum(axis=0).max())
