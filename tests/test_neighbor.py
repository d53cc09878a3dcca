"""Neighbour search against a naive O(N^2) reference over explicitly enumerated periodic images."""

import itertools
import warnings

import numba
import numpy as np
import pytest

from numdp.errors import InputError
from numdp.geometry import check_box, face_distances, wrap_fractional, wrap_positions
from numdp.kernels.cpu import neighbor as kn
from numdp.kernels.cpu.md import closest_pair
from numdp.neighbor import (
    NeighborOverflowWarning,
    NeighborRows,
    build_nlist,
    check_key_limits,
    extend,
    extended_positions,
    find_candidates,
    format_nlist,
    report_overflow,
)

# --------------------------------------------------------------------------------------------------
# Naive reference
# --------------------------------------------------------------------------------------------------


def naive_neighbors(x, box, rc):
    """Per centre i: (owners, displacements d (k, 3), distances r) of all images j within rc, j-image != i.

    Written independently of numdp: wraps with numpy, enumerates every shift n in
    [-nbuff, nbuff]^3 with nbuff_k = ceil(rc / h_k), h_k = 1 / |column k of box^-1|.
    """
    x = np.asarray(x, dtype=float)
    n = len(x)
    if box is None:
        base = x
        shifts = np.zeros((1, 3))
    else:
        box = np.asarray(box, dtype=float)
        inv = np.linalg.inv(box)
        f = x @ inv
        f = f - np.floor(f)
        base = f @ box
        h = 1.0 / np.linalg.norm(inv, axis=0)
        nbuff = np.ceil(rc / h).astype(int)
        shifts = np.array(
            list(itertools.product(*[range(-m, m + 1) for m in nbuff])), dtype=float
        )
    images = shifts @ box if box is not None else shifts
    zero = np.flatnonzero(np.all(shifts == 0, axis=1))[0]
    out = []
    for i in range(n):
        d = base[None, :, :] + images[:, None, :] - base[i]  # (nimg, n, 3)
        r = np.sqrt((d * d).sum(-1))
        keep = r <= rc
        keep[zero, i] = False
        s_idx, j_idx = np.nonzero(keep)
        out.append((j_idx, d[s_idx, j_idx], r[s_idx, j_idx]))
    return out


def canonical(owners, d):
    """Rows (owner, d) sorted lexicographically by owner, then d rounded to 1e-7 Å."""
    owners = np.asarray(owners)
    d = np.asarray(d).reshape(-1, 3)
    q = np.round(d * 1e7).astype(np.int64)
    o = np.lexsort((q[:, 2], q[:, 1], q[:, 0], owners))
    return owners[o], d[o]


def assert_same_pairs(owners_a, d_a, owners_b, d_b, what=""):
    oa, da = canonical(owners_a, d_a)
    ob, db = canonical(owners_b, d_b)
    assert len(oa) == len(ob), f"{what}: {len(oa)} pairs vs {len(ob)} in the reference"
    np.testing.assert_array_equal(oa, ob, err_msg=what)
    np.testing.assert_allclose(da, db, rtol=0, atol=1e-9, err_msg=what)


def check_candidates_against_naive(x, types, box, rc):
    ext = extend(x, types, box, rc)
    cand = find_candidates(ext, rc)
    ref = naive_neighbors(x, box, rc)
    for i in range(len(x)):
        js = cand.indices[cand.offsets[i] : cand.offsets[i + 1]]
        assert np.all(js != i)
        assert len(np.unique(js)) == len(js)
        d = ext.positions[js] - ext.positions[i]
        assert_same_pairs(ext.mapping[js], d, ref[i][0], ref[i][1], what=f"centre {i}")
    return ext, cand, ref


def random_system(rng, box, n, ntypes=2, spread=(0.0, 1.0)):
    f = rng.uniform(spread[0], spread[1], size=(n, 3))
    x = f @ np.asarray(box, dtype=float)
    t = rng.integers(0, ntypes, size=n)
    return x, t


TRICLINIC = np.array([[9.0, 0.0, 0.0], [6.5, 9.5, 0.0], [-5.0, 7.5, 10.0]])  # tilts 0.5-0.8


def rotated(box, seed=3):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return box @ q, q


# --------------------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------------------


def test_face_distances():
    np.testing.assert_allclose(face_distances(np.diag([3.0, 4.0, 5.0])), [3.0, 4.0, 5.0])
    box, _ = rotated(TRICLINIC)
    inv = np.linalg.inv(box)
    np.testing.assert_allclose(face_distances(box), 1.0 / np.linalg.norm(inv, axis=0), rtol=1e-12)
    np.testing.assert_allclose(face_distances(box.ravel()), face_distances(box))
    # left-handed cell: same widths
    np.testing.assert_allclose(face_distances(box[[1, 0, 2]]), face_distances(box)[[1, 0, 2]])


def test_wrap_positions():
    rng = np.random.default_rng(1)
    box, _ = rotated(TRICLINIC)
    f = rng.uniform(-3, 4, size=(200, 3))
    f[:3] = [[-1e-20, 0.0, 1.0], [1.0 - 1e-17, -0.0, 2.0], [-1e-300, -1.0, 3.0 - 1e-16]]
    x = f @ box
    w = wrap_positions(x, box)
    fw = wrap_fractional(x @ np.linalg.inv(box))
    assert np.all((fw >= 0.0) & (fw < 1.0))
    np.testing.assert_allclose(w, fw @ box)
    # same lattice point: the difference is an integer combination of the cell vectors
    n = (x - w) @ np.linalg.inv(box)
    np.testing.assert_allclose(n, np.round(n), atol=1e-9)
    np.testing.assert_allclose((w @ np.linalg.inv(box)), fw, atol=1e-12)


def test_geometry_errors():
    with pytest.raises(InputError, match="singular"):
        check_box([[1, 0, 0], [2, 0, 0], [0, 0, 1]])
    with pytest.raises(InputError, match="singular"):
        check_box(np.zeros((3, 3)))
    with pytest.raises(InputError, match="non-finite"):
        check_box([[np.nan, 0, 0], [0, 1, 0], [0, 0, 1]])
    with pytest.raises(InputError, match="shape"):
        check_box(np.eye(2))
    with pytest.raises(InputError, match="atom 1 has a non-finite"):
        wrap_positions([[0, 0, 0], [np.inf, 0, 0]], np.eye(3))
    with pytest.raises(InputError, match="singular"):
        extend(np.zeros((2, 3)), [0, 0], [[1, 1, 0], [2, 2, 0], [0, 0, 1]], 3.0)
    with pytest.raises(InputError, match="cutoff"):
        extend(np.zeros((2, 3)), [0, 0], np.eye(3) * 5, -1.0)
    with pytest.raises(InputError, match="shape"):
        extend(np.zeros((2, 3)), [0, 0, 0], np.eye(3) * 5, 3.0)
    check_box(np.diag([1.0, 1.0, -1.0]))  # left-handed is fine


# --------------------------------------------------------------------------------------------------
# extended atoms and candidates vs the naive reference
# --------------------------------------------------------------------------------------------------


def check_extended_invariants(ext, x, types, box, rc):
    nloc = len(x)
    assert ext.nloc == nloc
    assert ext.positions.dtype == np.float64 and ext.positions.shape == (ext.nall, 3)
    assert ext.types.dtype == np.int32 and ext.mapping.dtype == np.int32 and ext.shifts.dtype == np.int32
    np.testing.assert_array_equal(ext.mapping[:nloc], np.arange(nloc))
    np.testing.assert_array_equal(ext.types, np.asarray(types)[ext.mapping])
    if box is None:
        assert ext.nall == nloc
        np.testing.assert_array_equal(ext.positions, x)
        return
    box = np.asarray(box, dtype=float)
    inv = np.linalg.inv(box)
    f_loc = ext.positions[:nloc] @ inv
    assert np.all(f_loc > -1e-12) and np.all(f_loc < 1 + 1e-12)
    np.testing.assert_array_equal(ext.shifts[:nloc], 0)
    np.testing.assert_allclose(
        ext.positions, ext.positions[ext.mapping] + ext.shifts @ box, rtol=0, atol=1e-12
    )
    # each (owner, shift) once; ghosts within the region -rc/h <= f < 1 + rc/h
    pairs = np.concatenate([ext.mapping[:, None], ext.shifts], axis=1)
    assert len(np.unique(pairs, axis=0)) == ext.nall
    reach = rc / face_distances(box)
    f = ext.positions @ inv
    assert np.all(f >= -reach - 1e-6) and np.all(f < 1 + reach + 1e-6)


@pytest.mark.parametrize("rc", [4.5, 6.0])
def test_orthorhombic(rc):
    rng = np.random.default_rng(10)
    box = np.diag([9.3, 10.7, 12.1])
    x, t = random_system(rng, box, 80, spread=(-1.5, 2.5))  # also exercises wrapping
    ext, _, _ = check_candidates_against_naive(x, t, box, rc)
    check_extended_invariants(ext, x, t, box, rc)


def test_triclinic_tilted():
    rng = np.random.default_rng(11)
    x, t = random_system(rng, TRICLINIC, 70, spread=(-0.5, 1.5))
    ext, _, _ = check_candidates_against_naive(x, t, TRICLINIC, 6.0)
    check_extended_invariants(ext, x, t, TRICLINIC, 6.0)


def test_triclinic_rotated_general():
    rng = np.random.default_rng(12)
    box, _ = rotated(TRICLINIC)
    assert np.all(np.abs(box) > 0.1)  # neither upper nor lower triangular
    x, t = random_system(rng, box, 70)
    ext, _, _ = check_candidates_against_naive(x, t, box, 5.5)
    check_extended_invariants(ext, x, t, box, 5.5)
    # left-handed version of the same cell
    check_candidates_against_naive(x, t, box[[1, 0, 2]], 5.5)


def test_box_smaller_than_cutoff_all_directions():
    rng = np.random.default_rng(13)
    box = np.array([[4.0, 0.0, 0.0], [1.0, 4.2, 0.0], [0.5, -0.7, 3.9]])
    x, t = random_system(rng, box, 3)
    ext, cand, ref = check_candidates_against_naive(x, t, box, 6.0)
    check_extended_invariants(ext, x, t, box, 6.0)
    for i in range(3):
        js = cand.indices[cand.offsets[i] : cand.offsets[i + 1]]
        owners = ext.mapping[js]
        assert np.sum(owners == i) >= 6  # images of the centre itself are neighbours
        assert np.bincount(owners, minlength=3).min() > 1  # several images of each atom


def test_box_smaller_than_cutoff_one_direction():
    rng = np.random.default_rng(14)
    box = np.diag([3.1, 13.0, 14.0])
    x, t = random_system(rng, box, 40)
    ext, _, _ = check_candidates_against_naive(x, t, box, 6.0)
    check_extended_invariants(ext, x, t, box, 6.0)


def test_single_atom_tiny_box():
    box = np.eye(3) * 2.0
    x = np.array([[0.3, 0.2, 0.1]])
    ext, cand, ref = check_candidates_against_naive(x, [0], box, 4.5)
    assert cand.offsets[1] == len(ref[0][0]) > 40  # ~ (4/3) pi 4.5^3 / 8


def test_nonperiodic_cluster():
    rng = np.random.default_rng(15)
    x = rng.normal(scale=4.0, size=(90, 3))
    t = rng.integers(0, 3, size=90)
    ext, _, _ = check_candidates_against_naive(x, t, None, 5.0)
    check_extended_invariants(ext, x, t, None, 5.0)


def test_nonperiodic_sparse_and_flat():
    rng = np.random.default_rng(16)
    x = np.concatenate([rng.uniform(-1e4, 1e4, size=(30, 3)), rng.normal(size=(20, 3))])
    x[:, 2] = np.where(np.arange(50) < 10, 0.0, x[:, 2])
    check_candidates_against_naive(x, np.zeros(50, int), None, 2.5)
    flat = np.concatenate([rng.uniform(0, 20, size=(40, 2)), np.zeros((40, 1))], axis=1)
    check_candidates_against_naive(flat, np.zeros(40, int), None, 3.0)


def test_candidate_reach_and_threads_deterministic():
    rng = np.random.default_rng(17)
    x, t = random_system(rng, TRICLINIC, 150)
    ext = extend(x, t, TRICLINIC, 6.0)
    ref = find_candidates(ext, 6.0)
    before = numba.get_num_threads()
    try:
        for nt in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(nt)
            again = find_candidates(ext, 6.0)
            np.testing.assert_array_equal(again.offsets, ref.offsets)
            np.testing.assert_array_equal(again.indices, ref.indices)
            nl_a = build_nlist(ext, 6.0, [30, 60], 2)
            if nt == 1:
                nl_1 = nl_a
            np.testing.assert_array_equal(nl_a.nlist, nl_1.nlist)
    finally:
        numba.set_num_threads(before)
    for reach in (1, 3):
        other = find_candidates(ext, 6.0, reach=reach)
        np.testing.assert_array_equal(other.offsets, ref.offsets)
        for i in range(ext.nloc):
            a = np.sort(other.indices[other.offsets[i] : other.offsets[i + 1]])
            b = np.sort(ref.indices[ref.offsets[i] : ref.offsets[i + 1]])
            np.testing.assert_array_equal(a, b)


def test_empty_system():
    ext = extend(np.zeros((0, 3)), np.zeros(0, int), np.eye(3) * 5, 3.0)
    assert ext.nall == 0
    nl = build_nlist(ext, 3.0, [4, 4], 2)
    assert nl.nlist.shape == (0, 8)
    np.testing.assert_array_equal(nl.max_count, [0, 0])


# --------------------------------------------------------------------------------------------------
# slot layout, ordering, overflow
# --------------------------------------------------------------------------------------------------


def qdist(r):
    return np.floor(np.asarray(r) * 2.0**26).astype(np.int64)


def check_layout(ext, nl, x, types, box, rcut, sel):
    """Exact slot layout against the naive reference (sel large enough: no overflow)."""
    ref = naive_neighbors(x, box, rcut)
    types = np.asarray(types)
    sec = np.concatenate([[0], np.cumsum(sel)])
    assert nl.nlist.dtype == np.int32 and nl.nlist.shape == (len(x), sec[-1])
    for i in range(len(x)):
        row = nl.nlist[i]
        for t in range(len(sel)):
            block = row[sec[t] : sec[t + 1]]
            filled = block[block >= 0]
            k = len(filled)
            assert np.all(block[k:] == -1), "padding must be at the end of the block"
            assert np.all(ext.types[filled] == t)
            d = ext.positions[filled] - ext.positions[i]
            r = np.linalg.norm(d, axis=1)
            # ascending (quantised distance, index)
            key = qdist(r) * 2**24 + filled
            assert np.all(np.diff(key) > 0)
            owners, dref, rref = ref[i]
            m = types[owners] == t
            assert_same_pairs(ext.mapping[filled], d, owners[m], dref[m], what=f"centre {i} type {t}")
            np.testing.assert_allclose(r, np.sort(rref[m]), rtol=0, atol=1e-10)


@pytest.mark.parametrize("case", ["ortho", "triclinic", "small", "cluster"])
def test_slot_layout(case):
    rng = np.random.default_rng(20)
    if case == "ortho":
        box = np.diag([10.0, 11.0, 12.0])
        x, t = random_system(rng, box, 60, ntypes=3)
    elif case == "triclinic":
        box, _ = rotated(TRICLINIC)
        x, t = random_system(rng, box, 60, ntypes=3)
    elif case == "small":
        box = np.array([[4.0, 0.0, 0.0], [2.0, 4.0, 0.0], [1.0, 1.5, 4.5]])
        x, t = random_system(rng, box, 4, ntypes=3)
    else:
        box = None
        x = rng.normal(scale=3.0, size=(50, 3))
        t = rng.integers(0, 3, size=50)
    rcut = 5.5
    ext = extend(x, t, box, rcut)
    sel = [200, 200, 200]
    nl = build_nlist(ext, rcut, sel, 3)
    assert not nl.overflowed
    check_layout(ext, nl, x, t, box, rcut, sel)
    ref = naive_neighbors(x, box, rcut)
    counts = np.array([np.bincount(np.asarray(t)[o], minlength=3) for o, _, _ in ref])
    np.testing.assert_array_equal(nl.max_count, counts.max(axis=0))
    np.testing.assert_array_equal(nl.overflow, 0)
    # build_nlist scans the cells directly; the candidate route must give the identical list,
    # with and without overflowing blocks
    for s in (sel, [3, 1, 2]):
        direct = build_nlist(ext, rcut, s, 3)
        staged = format_nlist(ext, find_candidates(ext, rcut), rcut, s, 3)
        np.testing.assert_array_equal(direct.nlist, staged.nlist)
        np.testing.assert_array_equal(direct.overflow, staged.overflow)
        np.testing.assert_array_equal(direct.max_count, staged.max_count)


def test_format_smaller_rcut_equals_build():
    """Candidates with rcut + skin, re-formatted at rcut, give exactly the build_nlist result."""
    rng = np.random.default_rng(21)
    box, _ = rotated(TRICLINIC)
    x, t = random_system(rng, box, 80)
    ext = extend(x, t, box, 7.0)
    cand = find_candidates(ext, 7.0)
    for rcut in (4.0, 5.5, 7.0):
        a = format_nlist(ext, cand, rcut, [40, 60], 2)
        b = build_nlist(ext, rcut, [40, 60], 2)
        np.testing.assert_array_equal(a.nlist, b.nlist)
        np.testing.assert_array_equal(a.max_count, b.max_count)
    # positions override (MD between rebuilds): moved local atoms, ghosts follow their owners
    moved = ext.positions[: ext.nloc] + rng.normal(scale=0.05, size=(ext.nloc, 3))
    pos = extended_positions(ext, moved, box)
    np.testing.assert_allclose(pos[: ext.nloc], moved)
    a = format_nlist(ext, cand, 5.0, [40, 60], 2, positions=pos)
    check_layout(extend(moved, t, box, 7.0), build_nlist(extend(moved, t, box, 7.0), 5.0, [40, 60], 2),
                 moved, t, box, 5.0, [40, 60])
    ref = naive_neighbors(moved, box, 5.0)
    for i in range(ext.nloc):
        js = a.nlist[i][a.nlist[i] >= 0]
        assert_same_pairs(ext.mapping[js], pos[js] - pos[i], ref[i][0], ref[i][1])


def test_neighbor_rows_equal_build_nlist():
    """Rows formatted on request (chunks in any order, as the evaluator asks) are the rows of
    build_nlist bit for bit, and the overflow counts, largest counts and closest pair gathered on
    the way are those of the whole list; also for moved positions (MD between rebuilds)."""
    rng = np.random.default_rng(26)
    box, _ = rotated(TRICLINIC)
    x, t = random_system(rng, box, 120)
    t[[5, 17]] = -1  # virtual atoms: empty rows, never neighbours
    ext = extend(x, t, box, 7.0)
    moved = extended_positions(ext, ext.positions[: ext.nloc] + rng.normal(scale=0.1, size=(ext.nloc, 3)), box)
    for pos in (None, moved):
        for sel in ([60, 80], [4, 9]):  # the second overflows
            whole = build_nlist(ext, 5.5, sel, 2, positions=pos)
            rows = NeighborRows(ext, 5.5, sel, 2, positions=pos)
            atoms = rng.permutation(ext.nloc).astype(np.int64)
            got = np.empty((ext.nloc, sum(sel)), np.int32)
            for a0 in range(0, ext.nloc, 37):
                rows.rows(atoms[a0:a0 + 37], got[a0:a0 + 37])
            np.testing.assert_array_equal(got, whole.nlist[atoms])
            np.testing.assert_array_equal(rows.overflow, whole.overflow)
            np.testing.assert_array_equal(rows.max_count, whole.max_count)
            assert rows.overflowed == whole.overflowed == (sel[0] == 4)
            assert rows.closest == closest_pair(ext.positions if pos is None else pos, whole.nlist,
                                                np.array([0, sel[0], sum(sel)]))


def test_overflow_truncation_keeps_nearest():
    rng = np.random.default_rng(22)
    box = np.diag([9.0, 9.5, 10.0])
    x, t = random_system(rng, box, 90)
    rcut = 6.0
    ext = extend(x, t, box, rcut)
    full = build_nlist(ext, rcut, [300, 300], 2)
    sel = [7, 12]
    small = build_nlist(ext, rcut, sel, 2)
    counts = np.stack([(ext.types[np.where(full.nlist >= 0, full.nlist, 0)] == tt) & (full.nlist >= 0)
                       for tt in range(2)]).sum(-1).T
    for tt in range(2):
        fb = full.nlist[:, 300 * tt : 300 * tt + sel[tt]]
        sb = small.nlist[:, sum(sel[:tt]) : sum(sel[: tt + 1])]
        np.testing.assert_array_equal(sb, fb)  # the first sel[t] in (distance, index) order
    np.testing.assert_array_equal(small.overflow, (counts > np.array(sel)).sum(0))
    np.testing.assert_array_equal(small.max_count, counts.max(0))
    np.testing.assert_array_equal(small.max_count, full.max_count)
    assert small.overflow.min() > 0
    with pytest.warns(NeighborOverflowWarning) as rec:
        report_overflow(small, sel, ["O", "H"])
    msg = str(rec[0].message)
    assert "'O' (type 0)" in msg and "sel = 7" in msg and f"largest count {small.max_count[0]}" in msg
    assert "'H' (type 1)" in msg and "sel = 12" in msg
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report_overflow(full, [300, 300], ["O", "H"])


@pytest.mark.parametrize("sel", [[1, 1], [10, 10]])
def test_scan_buffers_grow_in_dense_boxes(sel):
    """A dense box (0.23 atoms/A^3) and small sel: the cell scan finds more atoms than its
    scratch holds (4 sum(sel), at least 64) and grows it, several times per centre; the rows are
    still the nearest sel[t] of the whole list.  (The growth once copied its buffers by slices,
    which Numba's parallel loop checked against the wrong sizes: "Sizes of ... do not match".)"""
    rng = np.random.default_rng(24)
    box = np.array([[6.0, 0.0, 0.0], [1.2, 6.0, 0.0], [-0.6, 0.8, 6.0]])
    x, t = random_system(rng, box, 50)
    rcut = 6.0
    ext = extend(x, t, box, rcut)
    full = build_nlist(ext, rcut, [400, 400], 2)
    small = build_nlist(ext, rcut, sel, 2)
    for tt in range(2):
        np.testing.assert_array_equal(small.nlist[:, sum(sel[:tt]):sum(sel[:tt + 1])],
                                      full.nlist[:, 400 * tt:400 * tt + sel[tt]])
    np.testing.assert_array_equal(small.max_count, full.max_count)
    assert full.max_count.sum() > 4 * sum(sel)


def test_overflow_one_type_only_and_zero_sel():
    rng = np.random.default_rng(23)
    box = np.diag([8.0, 8.0, 8.0])
    x, t = random_system(rng, box, 40)
    ext = extend(x, t, box, 5.0)
    nl = build_nlist(ext, 5.0, [0, 200], 2)
    assert nl.nlist.shape == (40, 200)
    assert nl.overflow[0] > 0 and nl.overflow[1] == 0
    with pytest.warns(NeighborOverflowWarning, match=r"type 0: .* sel = 0") as rec:
        report_overflow(nl, [0, 200])
    assert "type 1" not in str(rec[0].message)


def test_equal_distance_ties_sorted_by_index():
    # simple cubic lattice of one atom: 6 images at exactly the lattice constant
    box = np.eye(3) * 3.0
    ext = extend([[0.0, 0.0, 0.0]], [0], box, 3.5)
    nl = build_nlist(ext, 3.5, [10], 1)
    row = nl.nlist[0]
    filled = row[row >= 0]
    assert len(filled) == 6 and np.all(np.diff(filled) > 0)
    nl3 = build_nlist(ext, 3.5, [3], 1)
    np.testing.assert_array_equal(nl3.nlist[0], filled[:3])
    assert nl3.overflow[0] == 1 and nl3.max_count[0] == 6


def test_virtual_atoms():
    rng = np.random.default_rng(24)
    box = np.diag([9.0, 9.0, 9.0])
    x, t = random_system(rng, box, 30)
    t[[3, 7]] = -1
    ext = extend(x, t, box, 5.0)
    nl = build_nlist(ext, 5.0, [100, 100], 2)
    assert np.all(nl.nlist[[3, 7]] == -1)
    used = nl.nlist[nl.nlist >= 0]
    assert not np.isin(ext.mapping[used], [3, 7]).any()


# --------------------------------------------------------------------------------------------------
# packed keys and errors
# --------------------------------------------------------------------------------------------------


def test_packed_key_round_trip_and_order():
    rng = np.random.default_rng(25)
    n = 5000
    types = rng.integers(0, 128, size=n)
    dist = rng.uniform(0, 128, size=n)
    dist[:4] = [0.0, 127.99999999, 2.0**-26, 3.0 * 2.0**-26 - 1e-12]
    dist[4:40] = np.round(dist[4:40], 1)  # exact ties
    index = rng.integers(0, 2**24, size=n)
    index[:2] = [0, 2**24 - 1]
    keys = np.empty(n, dtype=np.uint64)
    kn.pack_keys(types, dist, index, keys)
    t2, q2, j2 = (np.empty(n, dtype=np.int64) for _ in range(3))
    kn.unpack_keys(keys, t2, q2, j2)
    np.testing.assert_array_equal(t2, types)
    np.testing.assert_array_equal(q2, qdist(dist))
    np.testing.assert_array_equal(j2, index)
    assert q2[2] == 1 and q2[3] == 2
    order = np.argsort(keys, kind="stable")
    ref = np.lexsort((index, qdist(dist), types))
    np.testing.assert_array_equal(keys[order], keys[ref])


def test_key_limit_errors():
    with pytest.raises(InputError, match="at most 2147483647"):
        check_key_limits(2**31, 6.0, 2)
    check_key_limits(2**24, 6.0, 2)   # the keys' 24-bit index field holds ordinals, not indices
    with pytest.raises(InputError, match="below 128 A"):
        check_key_limits(10, 128.0, 2)
    with pytest.raises(InputError, match="atom types"):
        check_key_limits(10, 6.0, 128)
    box = np.eye(3) * 50
    ext = extend(np.zeros((2, 3)), [0, 1], box, 130.0)
    with pytest.raises(InputError, match="below 128 A"):
        build_nlist(ext, 130.0, [4, 4], 2)
    with pytest.raises(InputError, match="extended atoms"):
        extend(np.zeros((3, 3)), [0, 0, 0], np.eye(3) * 0.5, 250.0)  # ~ 3 * 1001**3 images


def test_argument_errors():
    box = np.eye(3) * 8
    ext = extend(np.random.default_rng(0).random((5, 3)) * 8, [0, 1, 0, 1, 2], box, 4.0)
    with pytest.raises(InputError, match="sel: expected 2 entries"):
        build_nlist(ext, 4.0, [4], 2)
    with pytest.raises(InputError, match="type 2, but the model has 2 types"):
        build_nlist(ext, 4.0, [4, 4], 2)
    with pytest.raises(InputError, match="non-negative"):
        build_nlist(ext, 4.0, [4, -1, 3], 3)
    with pytest.raises(InputError, match="rcut"):
        build_nlist(ext, 0.0, [4, 4, 4], 3)
    with pytest.raises(ValueError, match="exceeds the cutoff"):
        build_nlist(ext, 5.0, [4, 4, 4], 3)
    cand = find_candidates(ext, 3.0)
    with pytest.raises(ValueError, match="exceeds the candidate cutoff"):
        format_nlist(ext, cand, 3.5, [4, 4, 4], 3)


def test_sort_keys_matches_np_sort():
    """The bucketed insertion sort used by format_nlist equals np.sort for any labels."""
    rng = np.random.default_rng(26)
    for n, labels in [
        (0, "mono"), (1, "mono"), (90, "mono"), (90, "random"), (60, "reversed"), (200, "same"),
        (64, "same"),
    ]:
        keys = rng.integers(0, 2**63, size=n, dtype=np.uint64)
        nbucket = 16
        if labels == "mono":
            edges = np.sort(keys)[:: max(1, n // nbucket)][1:nbucket]
            bucket = np.searchsorted(edges, keys, side="right")  # labels must lie in [0, nbucket)
        elif labels == "random":
            bucket = rng.integers(0, nbucket, size=n)
        elif labels == "reversed":
            keys = np.sort(keys)[::-1].copy()
            bucket = np.zeros(n, dtype=np.int64)  # insertion sort's worst case
        else:
            bucket = np.full(n, 3)  # one label: insertion sort (64) or the np.sort fallback (200)
        bucket = np.ascontiguousarray(bucket, dtype=np.int64)
        assert n == 0 or 0 <= bucket.min() <= bucket.max() < nbucket
        out = np.empty(n, dtype=np.uint64)
        kn._sort_keys(keys, bucket, n, nbucket, np.empty(nbucket + 1, dtype=np.int64), out)
        np.testing.assert_array_equal(out, np.sort(keys), err_msg=labels)


def test_positions_override_errors():
    box = np.eye(3) * 6
    ext = extend(np.random.default_rng(1).random((4, 3)) * 6, [0, 1, 0, 1], box, 4.0)
    cand = find_candidates(ext, 4.0)
    pos = ext.positions.copy()
    g = ext.nloc + 5
    pos[g, 1] = np.nan
    with pytest.raises(InputError, match=rf"atom {ext.mapping[g]} has a non-finite .* extended row {g}"):
        format_nlist(ext, cand, 4.0, [10, 10], 2, positions=pos)
    with pytest.raises(InputError, match="non-finite"):
        find_candidates(ext, 4.0, positions=pos)
    with pytest.raises(ValueError, match="expected shape"):
        format_nlist(ext, cand, 4.0, [10, 10], 2, positions=pos[:-1])


def test_dense_cluster_grows_the_scan_buffers():
    """600 atoms in a 3.4 A cube, all within the 6 A cutoff of each other: one centre's scan holds
    more hits than the initial scratch, so the buffers grow inside the parallel scans; the pairs
    equal the naive ones and the rows formatted for MD equal the whole list."""
    rng = np.random.default_rng(17)
    x = rng.uniform(-1.7, 1.7, size=(600, 3))
    t = rng.integers(0, 2, size=600)
    check_candidates_against_naive(x, t, None, 6.0)
    ext = extend(x, t, None, 6.0)
    sel = [300, 300]
    whole = build_nlist(ext, 6.0, sel, 2)
    assert whole.overflowed
    got = np.empty((ext.nloc, sum(sel)), np.int32)
    NeighborRows(ext, 6.0, sel, 2).rows(np.arange(ext.nloc, dtype=np.int64), got)   # the MD path
    np.testing.assert_array_equal(got, whole.nlist)


def test_ties_beyond_24_index_bits():
    """Extended indices >= 2**24, beyond the packed keys' 24-bit index field (the CPU keys carry
    each neighbour's ordinal there and order ties by the index itself): ties of (type, quantised
    distance) follow the full index, as on the GPU (tests/test_cuda_neighbor.py, same layout).
    scan_nlist on a hand-made one-cell list: centre 0 at the origin, neighbours at r = 1 (exact
    ties) and r = 0.5, 2 types; ordering by the low 24 bits would put 2**24 + 3 before 5 and
    2**24 before 7."""
    big = 2**24
    j = np.array([0, big, 5, big + 1, 7, big + 3, big + 9, big + 12], dtype=np.int32)
    pos = np.array([[0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0.5, 0, 0], [0, 0, 1],
                    [0, 0, -1]], dtype=np.float64)
    typ = np.array([0, 0, 0, 0, 0, 0, 1, 1], dtype=np.int32)
    types = np.full(big + 13, -1, dtype=np.int32)   # indexed by extended index (67 MB)
    types[j] = typ
    sel = np.array([4, 3], dtype=np.int64)
    sec = np.array([0, 4, 7], dtype=np.int64)
    r = np.linalg.norm(pos, axis=1)
    order = np.lexsort((j[1:], qdist(r[1:]), typ[1:])) + 1
    expect = np.full(7, -1, dtype=np.int32)
    for t in range(2):
        js = j[order][typ[order] == t][: sel[t]]
        expect[sec[t]: sec[t] + len(js)] = js
    assert list(expect) == [big + 3, 5, 7, big, big + 9, big + 12, -1]
    nlist = np.empty((1, 7), dtype=np.int32)
    counts = np.empty((1, 2), dtype=np.int32)
    kn.scan_nlist(pos[:, 0].copy(), pos[:, 1].copy(), pos[:, 2].copy(), j, np.zeros(8, np.int64),
                  np.array([0, 8], np.int64), np.ones(3, np.int64), 1, np.zeros(1, np.int64), types, 1.5**2,
                  sel, sec, nlist, counts)
    np.testing.assert_array_equal(nlist[0], expect)
    np.testing.assert_array_equal(counts[0], [5, 2])
