"""Tests for the survivors of the fifth round of mutation testing (the neighbour search on both
targets, the packed keys, the shared scalar maths and the CUDA kernels under Numba's simulator):
each fails on one plausible mistake that the rest of the suite let through (the mutant is named
in the test's docstring; 2026-12-07).  Tiny systems: the simulator runs every CUDA thread in
Python.
"""
from __future__ import annotations

import numpy as np
import pytest
from numba import cuda

from numdp.kernels.cuda import neighbor as kc
from numdp.neighbor import build_nlist, extend, find_candidates, format_nlist
from numdp.neighbor.device import build_nlist_cuda

THREADS = 4   # threads per centre of the device lists (the list never depends on it)


def _rows(nl) -> list[list[int]]:
    """Occupied slots of each row of a host nlist (n, nnei)."""
    return [[int(j) for j in row if j >= 0] for row in nl]


def _distances(ext, nlist) -> list[np.ndarray]:
    """Sorted neighbour distances (Å) of each centre of a host nlist over extended atoms ext."""
    out = []
    for i, row in enumerate(nlist):
        js = row[row >= 0]
        out.append(np.sort(np.linalg.norm(ext.positions[js] - ext.positions[i], axis=1)))
    return out


# --------------------------------------------------------------------------------------------------
# a neighbour at exactly r = rcut is in the list (r <= rcut), on both CPU paths and on the device
# --------------------------------------------------------------------------------------------------


def test_neighbour_at_exactly_rcut_is_listed_by_every_path():
    """Mutants `h += r2 < cutoff2` in the cell-list scan (kernels/cpu/neighbor._scan_hits: the
    candidates and build_nlist) and `r2 < rcut2` in format_nlist: the lists hold the neighbours
    with r <= rcut (reference §1.3: candidates r_ij <= r_c), and build_nlist equals
    format_nlist(find_candidates(...)).  Atoms 3 Å and 1.5 Å from atom 0 along the axes:
    r² = 9.0 = rcut² exactly (integers and halves: no rounding anywhere)."""
    x = np.array([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [0.0, 1.5, 0.0]])
    t = np.zeros(3, dtype=np.int64)
    ext = extend(x, t, None, 3.0)
    expect = [[2, 1], [0], [0]]   # (distance, index) order: 1.5 Å before 3 Å
    assert _rows(build_nlist(ext, 3.0, [4], 1).nlist) == expect
    assert find_candidates(ext, 3.0).counts().tolist() == [2, 1, 1]
    assert _rows(format_nlist(ext, find_candidates(ext, 3.0), 3.0, [4], 1).nlist) == expect
    nl = build_nlist_cuda(x, t, None, 3.0, [4], threads_per_centre=THREADS)
    assert _rows(nl.nlist.copy_to_host()) == expect


# --------------------------------------------------------------------------------------------------
# the ghost region's round-off margin
# --------------------------------------------------------------------------------------------------


def test_image_at_the_cutoff_survives_the_fractional_round_off():
    """Mutant `reach = c / h` (numdp.neighbor.extended.extend without its relative margin
    _REGION_MARGIN): atom 1 at x = 6.91 Å in a 10 Å cube has its image at x = -3.09 Å, r = 3.09
    = the cutoff as computed from the wrapped positions, but its fractional coordinate
    0.691 - 1 rounds below -3.09 / 10, so without the margin the image is not made and atom 0
    loses a neighbour within rcut (found by a search over boxes and positions).  The device
    search (numdp.neighbor.device) uses the same margin."""
    box = np.eye(3) * 10.0
    x = np.array([[0.0, 1.0, 1.0], [6.91, 1.0, 1.0]])
    t = np.zeros(2, dtype=np.int64)
    rc = 3.09
    ext = extend(x, t, box, rc)
    nl = build_nlist(ext, rc, [4], 1).nlist
    (j,) = [int(v) for v in nl[0] if v >= 0]
    assert ext.mapping[j] == 1 and ext.shifts[j].tolist() == [-1, 0, 0]
    assert np.linalg.norm(ext.positions[j] - ext.positions[0]) <= rc
    dnl = build_nlist_cuda(x, t, box, rc, [4], threads_per_centre=THREADS)
    np.testing.assert_array_equal(dnl.nlist.copy_to_host(), nl)


# --------------------------------------------------------------------------------------------------
# wrapping an atom a round-off below a periodic face
# --------------------------------------------------------------------------------------------------

_TINY_BOX = np.eye(3) * 10.0
# atom 0 a round-off below the x = 0 face: f = -1e-18 wraps to 1 - 1e-18 = 1.0, set to 0.0
_TINY_X = np.array([[-1e-17, 5.0, 5.0], [1.2, 5.0, 5.0], [8.1, 5.0, 5.0], [9.0, 6.0, 5.0]])
_TINY_T = np.array([0, 1, 0, 1])


def test_atom_a_round_off_below_a_periodic_face_wraps_onto_it_on_the_cpu():
    """Mutant `m = floor(raw - f)` for `round(raw - f)` (numdp.neighbor.extended.extend with
    mixed boundary conditions): raw - f = -1e-18 is the integer 0 up to round-off, and floor
    makes it -1, moving atom 0 by a whole cell to x = 10 Å while its fractional coordinate says 0:
    its images then cover the wrong region.  The slab (pbc x, y) keeps atom 0 where it is and
    its neighbour distances equal those of the same atoms under full periodicity (z: 10 Å cell,
    atoms at z = 5, cutoff 3.5 Å: no neighbour across z in either case)."""
    rc, sel = 3.5, [8, 8]
    full = extend(_TINY_X, _TINY_T, _TINY_BOX, rc)
    slab = extend(_TINY_X, _TINY_T, _TINY_BOX, rc, pbc=(True, True, False))
    np.testing.assert_allclose(slab.positions[0], _TINY_X[0], rtol=0, atol=1e-15)
    d_full = _distances(full, build_nlist(full, rc, sel, 2).nlist)
    d_slab = _distances(slab, build_nlist(slab, rc, sel, 2).nlist)
    # atom 0: 1.2 Å, and across x = 0 1.9 Å and 1.41 Å (atoms 2, 3)
    assert [len(d) for d in d_full] == [3, 3, 3, 3]
    for a, b in zip(d_full, d_slab):
        # the same pair vectors up to the rounding of x + n L (|x| <= 20 Å: a few ulps, 1e-13 Å)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-13)


@pytest.mark.parametrize("pbc", [None, (True, True, False)])
def test_atom_a_round_off_below_a_periodic_face_on_the_device(pbc):
    """Mutants of numdp.kernels.cuda.neighbor: `wrap_count_images` without `if f >= 1.0: f = 0.0`
    (f = -1e-18 - floor(-1e-18) rounds to 1.0: atom 0 is put at x = 10 Å and its images cover
    fractional [1 - reach, 2 + reach), beyond the region the other atoms' ghosts are made for)
    and `wrap_count_images_mixed` with `m = floor(raw - f)` (atom 0 moved by a whole cell): the
    device's extended atoms and list equal the CPU's."""
    rc, sel = 3.5, [8, 8]
    ext = extend(_TINY_X, _TINY_T, _TINY_BOX, rc, pbc=pbc)
    ref = build_nlist(ext, rc, sel, 2)
    nl = build_nlist_cuda(_TINY_X, _TINY_T, _TINY_BOX, rc, sel, pbc=pbc, threads_per_centre=THREADS)
    assert nl.nall == ext.nall
    # the same formulas as the CPU (module docstring of tests/test_cuda_neighbor.py): <= 1e-13 Å
    np.testing.assert_allclose(nl.positions.copy_to_host(), ext.positions, rtol=0, atol=1e-13)
    np.testing.assert_array_equal(nl.nlist.copy_to_host(), ref.nlist)


# --------------------------------------------------------------------------------------------------
# the CUDA formatting kernel: index field of the keys beyond 2**24
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cap", [8, None])
def test_index_beyond_24_bits_never_reaches_the_distance_field(cap):
    """Mutant `pack_key_gpu(tq, r, j)` for `j & INDEX_MASK` (numdp.kernels.cuda.neighbor._fill_row):
    an index >= 2**24 ORs its high bits into the quantised distance.  Neighbour A at r = 0.5 Å
    (q = 2**25, even) with index 2**24 + 1 would get q | 1, the quantum of neighbour B at
    r = 0.5 + 2**-26 Å (exact: 0.25 + 2**-26 + 2**-52 is a double, its root too) with index 3: a
    false tie that the index breaks for B.  The order is by distance: A, then B (the existing
    test's ties only ever gain bits that keep the order)."""
    jA, jB = 2**24 + 1, 3
    j = np.array([0, jA, jB], dtype=np.int32)
    pos = np.array([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.5 + 2.0**-26, 0.0]])
    assert np.floor(np.linalg.norm(pos[1:], axis=1) * 2.0**26).tolist() == [2**25, 2**25 + 1]
    typ = np.zeros(3, dtype=np.int32)
    sel = np.array([2], dtype=np.int64)
    sec = np.array([0, 2], dtype=np.int64)
    d = [cuda.to_device(a) for a in (pos, j, typ, np.zeros(3, np.int32), np.array([0, 3], np.int32),
                                     np.ones(3, np.int64))]
    counts = cuda.device_array((1, 1), dtype=np.int32)
    nlist = cuda.device_array((1, 2), dtype=np.int32)
    err = cuda.to_device(np.zeros(1, dtype=np.int32))
    args = (*d, 1, cuda.to_device(np.zeros(1, np.int32)), 0, 0, 1.0, cuda.to_device(sel), cuda.to_device(sec),
            counts, nlist, err)
    if cap:
        kc.fill_nlist_shared(cap)[1, THREADS](*args)
    else:
        kc.fill_nlist_global[1, THREADS](*args, cuda.device_array((1, 3), np.uint64),
                                         cuda.device_array((1, 3), np.int32))
    assert err.copy_to_host()[0] == 0
    assert nlist.copy_to_host()[0].tolist() == [jA, jB]


# --------------------------------------------------------------------------------------------------
# the bounding box kernel
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, grid", [(1, (1, 1)), (7, (1, 2)), (7, (2, 4)), (13, (1, 4)), (13, (2, 8))])
def test_bounds_is_min_and_max_of_every_atom(n, grid):
    """Mutant `range(start + stride, n - 1, stride)` in numdp.kernels.cuda.neighbor.bounds (the
    grid-stride tail misses the last atom): the lists stay exact whatever the box (an atom
    outside the grid is clamped into an edge cell, bin_count's docstring), so only the kernel's
    own answer shows it.  The extreme coordinates are put on the last atom; min and max do not
    round, so the result is exact.  Grids smaller than n (several atoms per thread) and larger."""
    rng = np.random.default_rng(n)
    pos = rng.uniform(-5.0, 5.0, size=(n, 3))
    pos[-1] = [-9.0, 9.0, -9.5]
    lohi = cuda.to_device(np.array([np.inf] * 3 + [-np.inf] * 3))
    kc.bounds[grid](cuda.to_device(pos), lohi)
    np.testing.assert_array_equal(lohi.copy_to_host(), np.concatenate([pos.min(axis=0), pos.max(axis=0)]))


# --------------------------------------------------------------------------------------------------
# the order of the ghost images
# --------------------------------------------------------------------------------------------------


def test_ghost_images_are_atom_major_with_shifts_ascending():
    """Mutant `for n0 in range(b0, a0 - 1, -1)` in numdp.kernels.math.write_images (shared by the
    CPU and CUDA kernels, so the device list still equals the CPU's): the extended atoms are the
    locals, then the images of atom 0, of atom 1, ..., each atom's shifts n ascending
    lexicographically (numdp.neighbor.extend's contract; the extended indices break the ties of
    equal distances, so the order decides which neighbour a full block keeps).  Face widths
    below the 5 Å cutoff: images on both sides along every vector (at least the 26 of n in
    {-1, 0, 1}^3)."""
    box = np.array([[4.0, 0.0, 0.0], [1.0, 4.5, 0.0], [-0.5, 0.8, 5.0]])
    x = np.random.default_rng(5).uniform(0.0, 4.0, size=(3, 3))
    ext = extend(x, [0, 1, 0], box, 5.0)
    assert ext.mapping[:3].tolist() == [0, 1, 2]
    ghosts = slice(ext.nloc, ext.nall)
    owner, shift = ext.mapping[ghosts], ext.shifts[ghosts].astype(np.int64)
    assert np.all(np.diff(owner) >= 0)
    for i in range(3):
        s = shift[owner == i]
        assert len(s) >= 26 and s[:, 0].min() < 0 < s[:, 0].max()
        np.testing.assert_array_equal(np.lexsort(s.T[::-1]), np.arange(len(s)))
        np.testing.assert_allclose(ext.positions[ghosts][owner == i], ext.positions[i] + s @ box, rtol=0,
                                   atol=1e-13)


# --------------------------------------------------------------------------------------------------
# the MD step's record trees: NumPy's first NaN
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("minimum", [0, 1])
@pytest.mark.parametrize("n", [5, 70])
def test_record_trees_pick_the_first_nan_as_numpy(n, minimum):
    """Mutant `if v != v: return True` for `return best == best` in numdp.kernels.cuda.md._beats (a
    later NaN replacing an earlier one): with NaNs at rows 1 and 3 (and at 40 for n = 70, a
    second chunk of SUM_CHUNK rows), the record is row 1's, as np.argmax / np.argmin pick the
    first NaN; column 2 is the NaN-propagating max.  One launch per level (`extreme_rows`) and
    the one-block form (`extreme_block`); both reduce in a fixed order, so the result is exact."""
    from numdp.kernels.cuda import md

    rows = np.zeros((n, 3))
    rows[:, 0] = np.random.default_rng(n).uniform(-1.0, 1.0, size=n)
    rows[:, 1] = np.arange(n)
    rows[:, 2] = np.linspace(0.0, 1.0, n)
    rows[[1, 3], 0] = np.nan
    if n > 40:
        rows[40, 0] = np.nan
    first = int(np.argmin(rows[:, 0]) if minimum else np.argmax(rows[:, 0]))
    assert first == 1
    expect = [np.nan, 1.0, 1.0]
    out = cuda.device_array(3)
    md.extreme_block[1, 4](cuda.to_device(rows), 2, minimum, out)
    np.testing.assert_array_equal(out.copy_to_host(), expect)
    level = cuda.to_device(rows)
    while level.shape[0] > 1:
        nch = (level.shape[0] + md.SUM_CHUNK - 1) // md.SUM_CHUNK
        nxt = cuda.device_array((nch, 3))
        md.extreme_rows[nch, 1](level, md.SUM_CHUNK, 2, minimum, nxt)
        level = nxt
    np.testing.assert_array_equal(level.copy_to_host()[0], expect)


def test_displacement_record_names_the_atom_that_moved_most():
    """Mutant `_extreme_tree(rows, n, 1, 3, 0, out)` (npay 1 for 2) in
    numdp.kernels.cuda.md.displacement_extreme: the atom column is then reduced by a plain max
    (the last atom) instead of travelling with the largest step.  Every atom moves 0.0625 Å along
    x, atom 2 also 0.25 Å along y (the largest step), atom 7 most since the rebuild; the record is
    (atom 2's squared step, 2, the largest squared move from the reference).  The arithmetic on
    the host and the device is the same (differences, squares, three-term sums in order): exact."""
    from numdp.kernels.cuda import md

    n = 40
    previous = np.random.default_rng(3).uniform(0.0, 8.0, size=(n, 3))
    positions = previous.copy()
    positions[:, 0] += 0.0625
    positions[2, 1] += 0.25
    reference = previous.copy()
    reference[7, 2] -= 1.0
    step2 = ((positions - previous) ** 2).sum(axis=1)
    ref2 = ((positions - reference) ** 2).sum(axis=1)
    assert int(np.argmax(step2)) == 2 and int(np.argmax(ref2)) == 7
    out = cuda.device_array(3)
    md.displacement_extreme[1, 4](cuda.to_device(positions), cuda.to_device(previous), cuda.to_device(reference),
                                  cuda.to_device(np.eye(3)), cuda.device_array((n, 3)), out)
    np.testing.assert_array_equal(out.copy_to_host(), [step2[2], 2.0, ref2.max()])
