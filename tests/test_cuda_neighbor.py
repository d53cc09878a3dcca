"""Neighbour search on the device (numba.cuda; under the CUDA simulator unless NUMDP_TEST_REAL_GPU=1)
against the CPU path: the list must be identical to build_nlist(extend(...)), kernel by kernel where
a CPU twin exists.  The simulator runs every CUDA thread in Python: systems are tiny."""

from dataclasses import replace

import numpy as np
import pytest
from numba import cuda

import numdp.neighbor.device as dev
from numdp.errors import InputError
from numdp.kernels.cpu import neighbor as kn
from numdp.kernels.cuda import neighbor as kc
from numdp.neighbor import build_nlist, extend
from numdp.neighbor.celllist import build_grid
from numdp.neighbor.device import build_nlist_cuda

TRICLINIC = np.array([[9.0, 0.0, 0.0], [6.5, 9.5, 0.0], [-5.0, 7.5, 10.0]])  # tilts 0.5-0.8
# Few threads per centre keep the simulator fast; one test runs a full warp (the list never
# depends on the block size).
THREADS = 4


def rotated(box, seed=3):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return box @ q


def random_system(seed, box, n, ntypes, spread=(0.0, 1.0)):
    rng = np.random.default_rng(seed)
    f = rng.uniform(spread[0], spread[1], size=(n, 3))
    return f @ np.asarray(box, dtype=float), rng.integers(0, ntypes, size=n)


def assert_same_as_cpu(x, t, box, rcut, sel, **kw):
    """The device list equals the CPU list exactly; returns both."""
    pbc = kw.pop("pbc", None)
    ext = extend(x, t, box, rcut, pbc=pbc)
    ref = build_nlist(ext, rcut, sel, len(sel))
    nl = build_nlist_cuda(x, t, box, rcut, sel, pbc=pbc, threads_per_centre=kw.pop("threads", THREADS), **kw)
    assert nl.nloc == ext.nloc and nl.nall == ext.nall
    np.testing.assert_array_equal(nl.mapping.copy_to_host(), ext.mapping)
    np.testing.assert_array_equal(nl.types.copy_to_host(), ext.types)
    # Wrapping and images are the same formulas (x @ box^-1, f - floor f, f @ box, x + n @ box);
    # NumPy's matrix product may round each 3-term dot product differently (FMA, order): a few
    # ulps of |f| |box| for each of the two products, i.e. <= 1e-13 Å for these boxes (|x| < 40 Å).
    np.testing.assert_allclose(nl.positions.copy_to_host(), ext.positions, rtol=0, atol=1e-13)
    np.testing.assert_array_equal(nl.nlist.copy_to_host(), ref.nlist)
    assert nl.nlist.dtype == np.int32 and nl.nlist.shape == ref.nlist.shape
    np.testing.assert_array_equal(nl.overflow, ref.overflow)
    np.testing.assert_array_equal(nl.max_count, ref.max_count)
    assert nl.overflow.dtype == np.int64 and nl.max_count.dtype == np.int64
    return nl, ref, ext


# --------------------------------------------------------------------------------------------------
# kernels against their CPU twins
# --------------------------------------------------------------------------------------------------


def test_packed_keys_both_ways():
    rng = np.random.default_rng(1)
    n = 300
    types = rng.integers(0, 128, size=n)
    dist = rng.uniform(0, 128, size=n)
    dist[:4] = [0.0, 127.99999999, 2.0**-26, 3.0 * 2.0**-26 - 1e-12]
    index = rng.integers(0, 2**24, size=n)
    index[:2] = [0, 2**24 - 1]
    cpu = np.empty(n, dtype=np.uint64)
    kn.pack_keys(types, dist, index, cpu)
    gpu = cuda.device_array(n, dtype=np.uint64)
    kc.pack_keys[(n + 63) // 64, 64](cuda.to_device(types), cuda.to_device(dist), cuda.to_device(index), gpu)
    np.testing.assert_array_equal(gpu.copy_to_host(), cpu)
    out = [cuda.device_array(n, dtype=np.int64) for _ in range(3)]
    kc.unpack_keys[(n + 63) // 64, 64](cuda.to_device(cpu), *out)  # CPU keys unpacked on the device
    np.testing.assert_array_equal(out[0].copy_to_host(), types)
    np.testing.assert_array_equal(out[1].copy_to_host(), np.floor(dist * 2.0**26).astype(np.int64))
    np.testing.assert_array_equal(out[2].copy_to_host(), index)
    back = [np.empty(n, dtype=np.int64) for _ in range(3)]
    kn.unpack_keys(gpu.copy_to_host(), *back)  # device keys unpacked on the CPU
    for a, b in zip(back, out):
        np.testing.assert_array_equal(a, b.copy_to_host())


@pytest.mark.parametrize("n", [1, 31, 32, 33, 1100, 32768, 32769, 40000])
def test_exclusive_scan(n):
    """The scan against np.cumsum: one block up to 32 768 entries, beyond that chunk sums, a block
    scan of the sums and the chunks written from their offsets."""
    v = np.random.default_rng(n).integers(0, 50, size=n).astype(np.int32)
    d = cuda.to_device(v)
    total = dev._exclusive_scan(d)
    assert total == int(v.sum())
    np.testing.assert_array_equal(d.copy_to_host(), np.concatenate([[0], np.cumsum(v)[:-1]]))


@pytest.mark.parametrize("threads", [1, 3, 32])
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_single_block_scan_any_block_size(threads, dtype):
    """scan_block: exclusive sums in place and the total, for any block size (chunks of n /
    threads entries, some threads with none) and both index types, equal to np.cumsum."""
    for n in (1, 2, 5, 97):
        v = np.random.default_rng(n).integers(0, 2**20, size=n).astype(dtype)
        d = cuda.to_device(v)
        tot = cuda.to_device(np.full(1, -1, dtype=np.int64))
        kc.scan_block[1, threads](d, tot)
        np.testing.assert_array_equal(d.copy_to_host(), np.concatenate([[0], np.cumsum(v)[:-1]]))
        assert tot.copy_to_host()[0] == int(v.sum())


def test_cell_binning_matches_cpu():
    """Device counting sort into cells: the CPU bin_atoms' cell offsets exactly, and per cell the same
    atoms (their order inside a cell is left to the atomics)."""
    x, t = random_system(2, TRICLINIC, 12, 2)
    ext = extend(x, t, TRICLINIC, 4.0)
    g = build_grid(ext.positions, ext.nloc, 4.0)
    nall = ext.nall
    ncell = int(np.prod(g.nbins))
    pos = cuda.to_device(ext.positions)
    cell = cuda.device_array(nall, dtype=np.int32)
    start = cuda.to_device(np.zeros(ncell + 1, dtype=np.int32))
    args = [cuda.to_device(a) for a in (g.lo, g.inv_width, g.nbins)]
    kc.bin_count[dev._grid(nall)](pos, *args, cell, start)
    dev._exclusive_scan(start)
    np.testing.assert_array_equal(start.copy_to_host(), g.cell_start)
    spos = cuda.device_array((nall, 3))
    sidx, stype, scell = (cuda.device_array(nall, dtype=np.int32) for _ in range(3))
    kc.bin_scatter[dev._grid(nall)](pos, cuda.to_device(ext.types), cell, start,
                                      cuda.to_device(np.zeros(ncell, np.int32)), spos, sidx, stype, scell)
    sidx = sidx.copy_to_host()
    np.testing.assert_array_equal(scell.copy_to_host(), g.scell)
    for c in range(ncell):
        a, b = g.cell_start[c], g.cell_start[c + 1]
        np.testing.assert_array_equal(np.sort(sidx[a:b]), np.sort(g.order[a:b]))
    np.testing.assert_array_equal(spos.copy_to_host(), ext.positions[sidx])
    np.testing.assert_array_equal(stype.copy_to_host(), ext.types[sidx])


@pytest.mark.parametrize("cap", [16, None])
def test_ties_beyond_24_index_bits(cap):
    """Extended indices >= 2**24 (beyond the packed keys' index field; the CPU refuses such
    systems): ties of (type, quantised distance) must still follow the full index.  The formatting
    kernel on a hand-made one-cell list: centre 0 at the origin, neighbours at r = 1 (exact ties)
    and r = 0.5, 2 types; packed-key order alone would put 2**25 (low bits 0) first."""
    big = 2**24
    j = np.array([0, 2**25, 5, big + 1, 7, big + 3, big + 9, 2**30 + 2], dtype=np.int32)
    pos = np.array([[0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0.5, 0, 0], [0, 0, 1],
                    [0, 0, -1]], dtype=np.float64)
    typ = np.array([0, 0, 0, 0, 0, 0, 1, 1], dtype=np.int32)
    sel = np.array([4, 3], dtype=np.int64)
    sec = np.array([0, 4, 7], dtype=np.int64)
    r = np.linalg.norm(pos, axis=1)
    order = np.lexsort((j[1:], np.floor(r[1:] * 2.0**26), typ[1:])) + 1
    expect = np.full(7, -1, dtype=np.int32)
    for t in range(2):
        js = j[order][typ[order] == t][: sel[t]]
        expect[sec[t]: sec[t] + len(js)] = js
    assert list(expect) == [big + 3, 5, 7, big + 1, big + 9, 2**30 + 2, -1]
    n = len(j)
    d = [cuda.to_device(a) for a in (pos, j, typ, np.zeros(n, np.int32), np.array([0, n], np.int32),
                                     np.ones(3, np.int64))]
    counts = cuda.device_array((1, 2), dtype=np.int32)
    nlist = cuda.device_array((1, 7), dtype=np.int32)
    err = cuda.to_device(np.zeros(1, dtype=np.int32))
    args = (*d, 1, cuda.to_device(np.zeros(1, np.int32)), 0, 0, 1.5**2, cuda.to_device(sel), cuda.to_device(sec),
            counts, nlist, err)
    if cap:
        kc.fill_nlist_shared(cap)[1, THREADS](*args)
    else:
        kc.fill_nlist_global[1, THREADS](*args, cuda.device_array((1, 8), np.uint64),
                                         cuda.device_array((1, 8), np.int32))
    assert err.copy_to_host()[0] == 0
    np.testing.assert_array_equal(nlist.copy_to_host()[0], expect)
    np.testing.assert_array_equal(counts.copy_to_host()[0], [5, 2])


# --------------------------------------------------------------------------------------------------
# whole lists against the CPU
# --------------------------------------------------------------------------------------------------


def test_orthorhombic_three_types():
    box = np.diag([9.3, 10.7, 12.1])
    x, t = random_system(10, box, 30, 3, spread=(-1.5, 2.5))  # also exercises wrapping
    nl, _, _ = assert_same_as_cpu(x, t, box, 5.0, [20, 20, 20])
    assert not nl.overflowed and nl.max_count.min() > 0


def test_triclinic_general_full_warp():
    box = rotated(TRICLINIC)
    assert np.all(np.abs(box) > 0.1)  # neither upper nor lower triangular
    x, t = random_system(11, box, 24, 2)
    assert_same_as_cpu(x, t, box, 5.5, [30, 40], threads=32)


def test_triclinic_left_handed_reach_one():
    x, t = random_system(12, TRICLINIC, 24, 2)
    assert_same_as_cpu(x, t, TRICLINIC[[1, 0, 2]], 5.0, [30, 40], reach=1)


def test_box_narrower_than_cutoff():
    """Cell faces 3.6-4.2 Å apart with rcut 6: two image shells, images of the centre itself."""
    box = np.array([[4.0, 0.0, 0.0], [1.0, 4.2, 0.0], [0.5, -0.7, 3.9]])
    x, t = random_system(13, box, 3, 2)
    nl, _, ext = assert_same_as_cpu(x, t, box, 6.0, [80, 80])
    row = nl.nlist.copy_to_host()[0]
    assert np.sum(ext.mapping[row[row >= 0]] == 0) >= 6


def test_one_type_equal_distance_ties():
    """Simple cubic lattice of one atom: 6 images at exactly the lattice constant, ordered by index;
    sel 3 truncates to the first three."""
    box = np.eye(3) * 3.0
    nl, _, _ = assert_same_as_cpu([[0.0, 0.0, 0.0]], [0], box, 3.5, [3])
    assert nl.overflow[0] == 1 and nl.max_count[0] == 6


def test_nonperiodic_cluster_with_virtual_atoms():
    rng = np.random.default_rng(15)
    x = rng.normal(scale=3.0, size=(30, 3))
    t = rng.integers(0, 3, size=30)
    t[[4, 9]] = -1
    nl, _, _ = assert_same_as_cpu(x, t, None, 4.5, [10, 10, 10])
    assert np.all(nl.nlist.copy_to_host()[[4, 9]] == -1)


def test_overflowing_blocks():
    box = np.diag([7.0, 7.5, 8.0])
    x, t = random_system(16, box, 30, 2)
    nl, _, _ = assert_same_as_cpu(x, t, box, 5.0, [3, 0])
    assert nl.overflow.min() > 0


def spy_fill(monkeypatch):
    """Record the `need` (key capacity asked for) of every formatting launch."""
    launches = []
    real = dev._fill

    def fill(grid, counts, nlist, err, need, caps, nthr):
        launches.append(need)
        real(grid, counts, nlist, err, need, caps, nthr)

    monkeypatch.setattr(dev, "_fill", fill)
    return launches


def test_global_key_buffer_chunked(monkeypatch):
    """Centres beyond the shared-memory capacities use the global key buffer, in chunks of centres."""
    box = np.diag([7.0, 7.5, 8.0])
    x, t = random_system(17, box, 10, 2)
    ext = extend(x, t, box, 5.0)
    need = int((build_nlist(ext, 5.0, [99, 99], 2).nlist >= 0).sum(1).max())  # keys of the fullest centre
    assert need > 8 and ext.nloc > 3 * 2  # beyond the capacity 8 given below, several chunks
    monkeypatch.setattr(dev, "_SCRATCH_BYTES", 12 * need * 3)  # 3 centres per chunk: 4 chunks
    launches = spy_fill(monkeypatch)
    assert_same_as_cpu(x, t, box, 5.0, [4, 30], shared_caps=(8,))
    assert launches == [0, need]  # capacity 8, then the global buffer sized to the largest count


def test_retry_with_larger_shared_buffer(monkeypatch):
    """A first launch with too small a buffer is repeated with the smallest capacity that fits."""
    box = np.diag([7.0, 7.5, 8.0])
    x, t = random_system(19, box, 8, 2)
    launches = spy_fill(monkeypatch)
    assert_same_as_cpu(x, t, box, 5.0, [10, 10], shared_caps=(4, 512))
    need = int((build_nlist(extend(x, t, box, 5.0), 5.0, [99, 99], 2).nlist >= 0).sum(1).max())
    assert 4 < need <= 512 and launches == [0, need]  # capacity 4, then 512


def test_independent_of_order_within_cells(monkeypatch):
    """The atomics leave the order of atoms inside a cell (and so the order in which a centre's keys
    are appended) to thread timing; the simulator's timing never varies, so shuffle each cell here:
    the list must not change."""
    rng = np.random.default_rng(20)
    real = kc.bin_scatter

    class Shuffled:
        def __getitem__(self, config):
            def launch(pos, types, cell, cell_start, cursor, spos, sidx, stype, scell):
                real[config](pos, types, cell, cell_start, cursor, spos, sidx, stype, scell)
                start = cell_start.copy_to_host()
                perm = np.arange(spos.shape[0])
                for c in range(start.shape[0] - 1):
                    perm[start[c]:start[c + 1]] = rng.permutation(perm[start[c]:start[c + 1]])
                for a in (spos, sidx, stype, scell):
                    a.copy_to_device(np.ascontiguousarray(a.copy_to_host()[perm]))
                shuffled.append(not np.array_equal(perm, np.arange(perm.shape[0])))
            return launch

    shuffled = []
    monkeypatch.setattr(kc, "bin_scatter", Shuffled())
    monkeypatch.setattr(dev, "ONE_BLOCK_SORT", 0)   # the seven launches: bin_scatter among them
    x, t = random_system(21, TRICLINIC, 16, 2)
    nl, _, _ = assert_same_as_cpu(x, t, TRICLINIC, 5.0, [3, 4])
    assert nl.overflow.min() > 0  # truncated blocks: which neighbours are kept depends on the order
    assert shuffled == [True]


def test_device_inputs():
    box = rotated(TRICLINIC)
    x, t = random_system(18, box, 12, 2)
    ext = extend(x, t, box, 5.0)
    ref = build_nlist(ext, 5.0, [20, 30], 2)
    nl = build_nlist_cuda(cuda.to_device(x), cuda.to_device(t.astype(np.int32)), cuda.to_device(box), 5.0,
                          [20, 30], threads_per_centre=THREADS)
    np.testing.assert_array_equal(nl.nlist.copy_to_host(), ref.nlist)
    np.testing.assert_array_equal(nl.max_count, ref.max_count)


def test_empty_system():
    nl = build_nlist_cuda(np.zeros((0, 3)), np.zeros(0, int), np.eye(3) * 5, 3.0, [4, 4])
    assert nl.nlist.shape == (0, 8) and nl.nall == 0
    np.testing.assert_array_equal(nl.max_count, [0, 0])


# --------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------


def test_input_errors():
    box = np.eye(3) * 8
    x = np.random.default_rng(0).random((5, 3)) * 8
    t = [0, 1, 0, 1, 2]
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(InputError, match=r"atom 3 has a non-finite"):
        build_nlist_cuda(bad, t, box, 4.0, [4, 4, 4])
    with pytest.raises(InputError, match=r"atom 3 has a non-finite"):
        build_nlist_cuda(cuda.to_device(bad), cuda.to_device(np.array(t, np.int32)), box, 4.0, [4, 4, 4])
    with pytest.raises(InputError, match="type 2, but the model has 2 types"):
        build_nlist_cuda(x, t, box, 4.0, [4, 4])
    with pytest.raises(InputError, match="atom 4 has type 2, but the model has 2 types"):
        build_nlist_cuda(cuda.to_device(x), cuda.to_device(np.array(t, np.int32)), None, 4.0, [4, 4])
    with pytest.raises(InputError, match="float64"):
        build_nlist_cuda(cuda.to_device(x.astype(np.float32)), t, box, 4.0, [4, 4, 4])
    with pytest.raises(InputError, match="int32"):
        build_nlist_cuda(x, cuda.to_device(np.array(t, np.int64)), box, 4.0, [4, 4, 4])
    with pytest.raises(InputError, match="non-negative"):
        build_nlist_cuda(x, t, box, 4.0, [4, -1, 3])
    with pytest.raises(InputError, match="sel: expected one entry"):
        build_nlist_cuda(x, t, box, 4.0, [[4, 4, 4]])
    with pytest.raises(InputError, match="rcut"):
        build_nlist_cuda(x, t, box, 0.0, [4, 4, 4])
    with pytest.raises(InputError, match="below 128 A"):
        build_nlist_cuda(x, t, box, 130.0, [4, 4, 4])
    with pytest.raises(InputError, match="atom types"):
        build_nlist_cuda(x, np.zeros(5, int), box, 4.0, [1] * 128)
    with pytest.raises(InputError, match="singular"):
        build_nlist_cuda(x, t, [[1, 1, 0], [2, 2, 0], [0, 0, 1]], 4.0, [4, 4, 4])
    with pytest.raises(InputError, match="shape"):
        build_nlist_cuda(x[:, :2], t, box, 4.0, [4, 4, 4])
    with pytest.raises(InputError, match="extended atoms"):  # ~ 3 * 1201**3 images > 2**31
        build_nlist_cuda(np.zeros((3, 3)), [0, 0, 0], np.eye(3) * 0.1, 60.0, [4])


@pytest.mark.parametrize("pbc", [(True, True, False), (False, True, False), (True, False, True)])
def test_mixed_boundary_conditions_match_cpu(pbc):
    """Slabs and a wire (numdp.kernels.cuda.neighbor.wrap_count_images_mixed): atoms spread to
    1.5 cells beyond the cell are wrapped along the periodic vectors only, and no image crosses an
    open face; the list equals the CPU `extend(pbc=...)` list exactly."""
    x, t = random_system(8, TRICLINIC, 14, 2, spread=(-0.5, 1.5))
    nl, ref, ext = assert_same_as_cpu(x, t, TRICLINIC, 4.5, [10, 12], pbc=pbc)
    open_dims = [k for k in range(3) if not pbc[k]]
    assert not ext.shifts[:, open_dims].any() and ext.nall > ext.nloc


# --------------------------------------------------------------------------------------------------
# the MD step's search: grid and key capacity fixed at the rebuild (plan_search, nlist_of_extended)
# --------------------------------------------------------------------------------------------------


def _planned(x, t, box, rcut, skin):
    """CPU extended atoms of width rcut + skin, their device copies and the device plan."""
    ext = extend(x, t, box, rcut + skin)
    pos = cuda.to_device(ext.positions)
    typ = cuda.to_device(ext.types.astype(np.int32))
    return ext, pos, typ, dev.plan_search(pos, typ, ext.nloc, rcut, skin)


def test_plan_capacity_is_the_largest_count_within_rcut_plus_skin():
    """The key capacity of a rebuild is the largest number of neighbours within rcut + skin of a
    centre (the CPU list with unlimited slots counts them), and the grid is the bounding box of
    the extended atoms widened by skin / 2."""
    x, t = random_system(30, TRICLINIC, 14, 2)
    ext, _, _, plan = _planned(x, t, TRICLINIC, 3.5, 1.0)
    full = build_nlist(ext, 4.5, [400, 400], 2)
    assert plan.need == int((full.nlist >= 0).sum(1).max()) > 0
    np.testing.assert_array_equal(plan.lo, ext.positions.min(0) - 0.5)
    np.testing.assert_array_equal(plan.hi, ext.positions.max(0) + 0.5)


@pytest.mark.parametrize("scale", [1.0, 1.3, 0.8])
def test_planned_search_is_exact_for_atoms_outside_the_grid(scale):
    """Extended atoms moved beyond the grid fixed at the rebuild (the whole configuration shifted
    by 10 skins, and scaled about its centre as a barostat's cell change would) are clamped into
    the edge cells; the list, counts and overflows stay exactly the CPU's for the moved atoms."""
    rcut, skin, sel = 3.5, 1.0, [2, 2]
    x, t = random_system(31, TRICLINIC, 24, 2)
    ext, _, typ, plan = _planned(x, t, TRICLINIC, rcut, skin)
    centre = ext.positions.mean(0)
    moved = centre + (ext.positions - centre) * scale + np.array([10.0, -10.0, 10.0]) * skin
    outside = ((moved < plan.lo) | (moved > plan.hi)).any(1)
    assert (moved < plan.lo).any() and (moved > plan.hi).any()
    assert outside.sum() > ext.nall // 5 and outside[:ext.nloc].any()   # centres too
    if scale < 1.0:   # more neighbours within rcut than at the rebuild: a larger buffer
        full = build_nlist(ext, rcut, [400, 400], 2, positions=moved)
        plan = replace(plan, need=int((full.nlist >= 0).sum(1).max()))
    ref = build_nlist(ext, rcut, sel, 2, positions=moved)
    nlist, stats, err = dev.nlist_of_extended(cuda.to_device(moved), typ, ext.nloc, rcut, sel, plan, THREADS)
    np.testing.assert_array_equal(nlist.copy_to_host(), ref.nlist)
    max_count, overflow = dev.search_flags(np.concatenate([stats.copy_to_host(), err.copy_to_host()]), 2)
    np.testing.assert_array_equal(max_count, ref.max_count)
    np.testing.assert_array_equal(overflow, ref.overflow)
    assert overflow.max() > 0 and max_count.min() > 0


def test_planned_search_flags_a_key_buffer_overflow():
    """A key capacity below a centre's count leaves that row empty and sets the flag (no
    relaunch in an MD step); search_flags raises then."""
    x, t = random_system(32, TRICLINIC, 10, 2)
    ext, pos, typ, plan = _planned(x, t, TRICLINIC, 3.5, 1.0)
    small = replace(plan, need=2, caps=(2,))
    nlist, stats, err = dev.nlist_of_extended(pos, typ, ext.nloc, 3.5, [8, 8], small, THREADS)
    values = np.concatenate([stats.copy_to_host(), err.copy_to_host()])
    assert values[-1] > 2
    assert (nlist.copy_to_host() == -1).all(1).any()   # the overflowing rows: empty, not garbage
    with pytest.raises(RuntimeError, match="more than the key buffer"):
        dev.search_flags(values, 2, small)
    _, stats, err = dev.nlist_of_extended(pos, typ, ext.nloc, 3.5, [8, 8], plan, THREADS)
    assert err.copy_to_host()[0] == 0
