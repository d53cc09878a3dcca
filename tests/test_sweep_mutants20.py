"""Tests added by mutation round 20 (the CPU neighbour search and the geometry it stands on, second
round: numdp.neighbor.celllist, .extended, .nlist, .distances, .rows, .overlap, .threads,
numdp.geometry, numdp.parallel.distribute, numdp.kernels.cpu.mathfn): each kills a plausible
mistake that tests/test_neighbor*.py, test_pbc_mixed.py, test_overlap.py, test_md_memory.py,
test_fork_registry.py, test_sweep_mutants5.py and the rest of the suite let through (the mutant
named in the test's docstring).  58 mutants: 41 killed by the suite, 2 equivalent (tanh's
series one term shorter, and tanh32's reduction without the 1/2: both still inside the documented
error bounds), 14 gaps killed here, and one (to_fractional's inverse transposed) removed with
the function, which nothing called.  Exact constructions (integer and half-integer coordinates, so
that no rounding decides a result, save the one test built on a rounding), a few atoms each: the
whole file runs in about two seconds."""
from __future__ import annotations

import threading
import warnings

import numba
import numpy as np
import pytest

from numdp.errors import InputError
from numdp.geometry import check_types
from numdp.kernels.cpu import neighbor as kn
from numdp.kernels.cpu.md import closest_pair
from numdp.neighbor import build_nlist, extend, find_candidates, report_overflow
from numdp.neighbor.distances import NeighborCensus
from numdp.neighbor.extended import complete_cell
from numdp.neighbor.overlap import OVERLAP_DISTANCE
from numdp.neighbor.rows import NeighborRows
from numdp.neighbor.threads import SERIAL_NEIGHBOR_BELOW, kernel_threads, orphaned_lock
from numdp.io.h5md import CheckpointAtoms, write_checkpoint
from numdp.parallel.distribute import scatter_state
from numdp.parallel.world import World
from numdp.system import State, atom_arrays

EPS = np.finfo(np.float64).eps
TRICLINIC = np.array([[9.0, 0.0, 0.0], [6.5, 9.5, 0.0], [-5.0, 7.5, 10.0]])  # tilts 0.5-0.8


# --------------------------------------------------------------------------------------------------
# numdp.neighbor.celllist: the argument checks of find_candidates
# --------------------------------------------------------------------------------------------------


def test_find_candidates_refuses_a_cutoff_beyond_the_ghosts_and_a_zero_reach():
    """find_candidates must refuse a search radius larger than the cutoff the ghosts were built
    for (the images beyond it are missing, so pairs would be lost silently) and a stencil reach
    below 1.  Mutants killed: the `c > ext.cutoff` check removed (test_neighbor.py checks it for
    build_nlist and format_nlist only) and `int(reach) < 1` as `< 0` (reach 0 then ends in a bare
    ZeroDivisionError in grid_dims)."""
    x = np.array([[1.0, 1.0, 1.0], [3.0, 1.0, 1.0]])
    ext = extend(x, [0, 0], np.eye(3) * 8.0, 3.0)
    with pytest.raises(ValueError, match="exceeds the cutoff"):
        find_candidates(ext, 3.5)
    with pytest.raises(ValueError, match="reach must be >= 1"):
        find_candidates(ext, 3.0, reach=0)
    assert find_candidates(ext, 3.0, reach=1).counts().tolist() == [1, 1]


def test_cells_keep_their_margin_when_the_extent_is_a_whole_number_of_cells():
    """The cell grid widens its cells by 1e-8 (_CELL_MARGIN) so that round-off in the cell index
    can never put two atoms within the cutoff more than `reach` cells apart.  A 12 Å row of atoms,
    cutoff 6 Å, reach 2: without the margin the grid has 4 cells of exactly 3 Å (cells per Å
    4 / 12 = 1/3 rounded down), atom 1 at 3 - 4.4e-16 Å lands in cell 0 (its index 0.99999999999999989)
    and atom 2 at 9 Å in cell 3, three cells apart; their distance 9 - (3 - 4.4e-16) rounds to
    6.0 exactly, so r² = 36 <= rcut² and the pair must be listed (reference §1.3: r <= r_c).  With
    the margin the grid has 3 cells of 4 Å.  Mutant killed: `width = cutoff / reach` in grid_dims
    (found by an exhaustive search over extents near whole multiples of the cell width)."""
    xa = np.nextafter(3.0, 0.0)
    x = np.array([[0.0, 0.0, 0.0], [xa, 0.0, 0.0], [9.0, 0.0, 0.0], [12.0, 0.0, 0.0]])
    assert (9.0 - xa) ** 2 == 36.0
    ext = extend(x, np.zeros(4, dtype=np.int64), None, 6.0)
    cand = find_candidates(ext, 6.0)
    assert sorted(cand.indices[cand.offsets[1]:cand.offsets[2]].tolist()) == [0, 2]
    assert sorted(cand.indices[cand.offsets[2]:cand.offsets[3]].tolist()) == [1, 3]
    rows = [sorted(int(j) for j in row if j >= 0) for row in build_nlist(ext, 6.0, [4], 1).nlist]
    assert rows == [[1], [0, 2], [1, 3], [2]]


# --------------------------------------------------------------------------------------------------
# numdp.neighbor.extended: mixed boundary conditions
# --------------------------------------------------------------------------------------------------


def test_a_zero_periodic_cell_vector_is_refused_with_mixed_pbc():
    """Only a zero NON-periodic vector is completed (`complete_cell`); a zero periodic vector is a
    singular cell (InputError), as it is with pbc all True.  Mutant killed: complete_cell's
    `if pbc[k] or np.any(b[k] != 0.0)` without `pbc[k]`, which silently makes a unit-length
    periodic vector (1 Å images of every atom) out of the missing one."""
    x = np.array([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])
    box = np.array([[0.0, 0.0, 0.0], [0.0, 6.0, 0.0], [0.0, 0.0, 6.0]])
    with pytest.raises(InputError, match="singular"):
        extend(x, [0, 0], box, 3.0, pbc=[True, True, False])
    np.testing.assert_array_equal(complete_cell(box, [True, True, False])[0], 0.0)


def test_a_completed_vacuum_vector_is_a_unit_vector_orthogonal_to_the_tilted_slab():
    """complete_cell's promise: the replaced row is a unit vector orthogonal to the other rows,
    here a slab whose two periodic vectors are tilted out of every coordinate plane.  Each dot
    product is a sum of 3 products of O(3) numbers computed from a Gram-Schmidt basis accurate to
    a few eps: |a . c| <= 3 * 3 * 8 eps is a generous bound (the mutant is off by ~0.1).
    Mutant killed: the Gram-Schmidt step (`v = v - (v @ e) * e`) dropped, which projects onto a
    non-orthonormal basis and returns a vector that is not orthogonal to the slab."""
    box = np.array([[3.0, 0.0, 1.0], [1.0, 3.0, 1.0], [0.0, 0.0, 0.0]])
    c = complete_cell(box, [True, True, False])
    np.testing.assert_array_equal(c[:2], box[:2])
    assert abs(np.linalg.norm(c[2]) - 1.0) <= 4 * EPS
    for k in range(2):
        assert abs(c[2] @ c[k]) <= 72 * EPS, (k, c[2] @ c[k])


# --------------------------------------------------------------------------------------------------
# numdp.neighbor.nlist: a block filled exactly is not an overflow
# --------------------------------------------------------------------------------------------------


def test_a_block_filled_exactly_is_not_an_overflow():
    """One atom in a 3 Å simple cubic cell, rcut 3.5 Å: exactly 6 neighbours (the images at 3 Å).
    sel = 6 holds them all: no overflow, no warning; sel = 5 drops one: one centre overflowed.
    Mutant killed: `overflow = (counts >= sel)` in _neighbor_list (the suite's overflow tests have
    no centre whose count equals its sel)."""
    ext = extend([[0.0, 0.0, 0.0]], [0], np.eye(3) * 3.0, 3.5)
    full = build_nlist(ext, 3.5, [6], 1)
    assert (full.nlist[0] >= 0).all()
    assert full.overflow.tolist() == [0] and not full.overflowed
    assert full.max_count.tolist() == [6]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report_overflow(full, [6])
    short = build_nlist(ext, 3.5, [5], 1)
    assert short.overflow.tolist() == [1] and short.overflowed


# --------------------------------------------------------------------------------------------------
# numdp.neighbor.rows: the closest pair of rows asked for in any order
# --------------------------------------------------------------------------------------------------


def test_rows_closest_pair_tie_goes_to_the_lower_centre_whatever_the_chunk_order():
    """Two pairs exactly 1 Å apart (integer coordinates: r² = 1 exactly for both), far from each
    other.  The whole list's closest pair (`closest_pair`, a scan in centre order) is centre 0;
    rows asked for in two chunks, the later centres first (as the evaluator's workers may), must
    give the same answer.  Mutant killed: NeighborRows.rows merging chunks with `d2 < b2` only
    (the tie rule `d2 == b2 and i < bi` dropped: the first chunk asked for wins)."""
    x = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [10.0, 0.0, 0.0], [11.0, 0.0, 0.0]])
    t = np.zeros(4, dtype=np.int64)
    ext = extend(x, t, None, 2.0)
    whole = build_nlist(ext, 2.0, [2], 1)
    expect = closest_pair(ext.positions, whole.nlist, np.array([0, 2]))
    assert expect == (1.0, 0, 1)
    rows = NeighborRows(ext, 2.0, [2], 1)
    out = np.empty((4, 2), dtype=np.int32)
    rows.rows(np.array([2, 3], dtype=np.int64), out[2:])
    rows.rows(np.array([0, 1], dtype=np.int64), out[:2])
    np.testing.assert_array_equal(out, whole.nlist)
    assert rows.closest == expect


# --------------------------------------------------------------------------------------------------
# numdp.neighbor.distances: the frame of the closest pair
# --------------------------------------------------------------------------------------------------


def test_census_names_the_first_frame_of_a_tied_closest_pair():
    """NeighborCensus.closest names the frame where the closest pair was first seen (the same
    first-wins rule as every other tie of the search: lower index, lower centre); a later frame
    with the same distance does not take it over.  Mutant killed: `now <= before` in
    NeighborCensus.add (the last of equal frames named)."""
    x = np.array([[1.0, 1.0, 1.0], [2.5, 1.0, 1.0], [5.0, 5.0, 5.0]])
    census = NeighborCensus(1, 3.0)
    census.add(x, [0, 0, 0], np.eye(3) * 10.0, label="first")
    census.add(x + 1.0, [0, 0, 0], np.eye(3) * 10.0, label="second")   # the same pairs, moved
    assert census.closest == (1.5, "first")


# --------------------------------------------------------------------------------------------------
# numdp.neighbor.overlap: the threshold is the sort keys' distance quantum
# --------------------------------------------------------------------------------------------------


def test_overlap_distance_is_the_quantum_of_the_sort_keys():
    """OVERLAP_DISTANCE is documented as the distance quantum of the packed keys (2**-26 Å,
    reference §10.1): the distance below which the list cannot tell two positions apart.  A key
    of OVERLAP_DISTANCE holds one quantum, one just below it zero.  (test_overlap.py places its
    pairs at multiples of the constant itself, so it follows any value.)  Mutant killed:
    OVERLAP_DISTANCE = 2**-27."""
    assert OVERLAP_DISTANCE == 2.0 ** -26
    dist = np.array([OVERLAP_DISTANCE, np.nextafter(OVERLAP_DISTANCE, 0.0)])
    keys = np.empty(2, dtype=np.uint64)
    kn.pack_keys(np.zeros(2, dtype=np.int64), dist, np.zeros(2, dtype=np.int64), keys)
    t, q, j = (np.empty(2, dtype=np.int64) for _ in range(3))
    kn.unpack_keys(keys, t, q, j)
    assert q.tolist() == [1, 0]


# --------------------------------------------------------------------------------------------------
# numdp.neighbor.threads
# --------------------------------------------------------------------------------------------------


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two Numba threads")
def test_kernel_threads_one_below_the_serial_size_and_at_most_max_threads():
    """kernel_threads: one thread below SERIAL_NEIGHBOR_BELOW atoms, else min(max_threads, the
    current setting); the setting is restored on exit.  Mutants killed: `max(previous,
    max_threads or previous)` (max_threads = 1 ignored) and `natoms > SERIAL_NEIGHBOR_BELOW` (the
    serial rule inverted).  The lists do not depend on the thread count, so only the count itself
    tells these apart."""
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(2)
        with kernel_threads(SERIAL_NEIGHBOR_BELOW - 1):
            assert numba.get_num_threads() == 1
        with kernel_threads(SERIAL_NEIGHBOR_BELOW):
            assert numba.get_num_threads() == 2
        with kernel_threads(SERIAL_NEIGHBOR_BELOW, 1):
            assert numba.get_num_threads() == 1
        assert numba.get_num_threads() == 2
    finally:
        numba.set_num_threads(before)


def test_orphaned_lock_only_for_a_lock_held_by_another_thread():
    """orphaned_lock (run in a forked child): False for a free lock and for an RLock held by the
    calling thread (which goes on in the child); True, and the lock made free, for one held by a
    thread that is gone.  Mutant killed: `return True` after the successful try (every free
    lock reported orphaned: free_at_fork's on_orphaned then marks every registered owner
    half-updated in every child)."""
    free = threading.Lock()
    assert orphaned_lock(free) is False
    assert free.acquire(blocking=False)
    free.release()
    mine = threading.RLock()
    with mine:
        assert orphaned_lock(mine) is False
    gone = threading.Lock()
    th = threading.Thread(target=gone.acquire)
    th.start()
    th.join()
    assert orphaned_lock(gone) is True
    assert gone.acquire(blocking=False)


# --------------------------------------------------------------------------------------------------
# numdp.geometry
# --------------------------------------------------------------------------------------------------


def test_check_types_refuses_fractional_types():
    """check_types accepts integer-valued floats (a type read from a text file) and refuses 0.5
    (it would be truncated to type 0 silently).  Mutant killed: the `t == np.round(t)` test
    dropped."""
    assert check_types(np.array([0.0, 1.0, 2.0]), 3).tolist() == [0, 1, 2]
    with pytest.raises(InputError, match="integers"):
        check_types([0, 0.5], 2)


# --------------------------------------------------------------------------------------------------
# numdp.parallel.distribute: one rank sorts by id too
# --------------------------------------------------------------------------------------------------


def test_one_rank_receives_a_shuffled_checkpoint_in_id_order(tmp_path):
    """scatter_state hands every rank its atoms sorted by id, one rank included: a checkpoint
    whose arrays are stored in a shuffled id order (write_checkpoint keeps the state's order)
    starts a serial run in id order, as the ranks of an MPI run start theirs, so that the serial
    and parallel runs sum the same atoms in the same order.  Mutant killed: the one-rank branch
    without `sort_by_id` (the MPI tests start from sources already in id order)."""
    rng = np.random.default_rng(2)
    n = 7
    ids = rng.permutation(n).astype(np.int64)
    state = State(positions=rng.uniform(0.0, 9.0, (n, 3)), velocities=rng.normal(size=(n, 3)),
                  types=rng.integers(0, 2, n).astype(np.int32), masses=rng.uniform(1.0, 20.0, n),
                  box=np.eye(3) * 9.0, type_map=["O", "H"], ids=ids, seed=5)
    assert not np.all(np.diff(ids) > 0)
    write_checkpoint(tmp_path / "ck.h5", state, {})
    local = scatter_state(World(None), None, CheckpointAtoms(tmp_path / "ck.h5"))
    np.testing.assert_array_equal(local.ids, np.arange(n))
    order = np.argsort(ids)
    for k, a in atom_arrays(state).items():
        np.testing.assert_array_equal(atom_arrays(local)[k], a[order], err_msg=k)
    assert local.natoms_global == n
