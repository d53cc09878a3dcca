"""The force call's merged launches for small systems (Numba's simulator) against the launches
they replace, forced by a module constant: the neighbour search's counting sort in one block
(numdp.neighbor.device.ONE_BLOCK_SORT = 0: seven launches).  Integer work gives the same lists
by construction; tested."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba_cuda")

from numba import cuda  # noqa: E402

import numdp.neighbor.device as dev  # noqa: E402
from numdp.neighbor import extend  # noqa: E402
from test_cuda_neighbor import TRICLINIC, random_system  # noqa: E402


def _seven_launches(monkeypatch):
    monkeypatch.setattr(dev, "ONE_BLOCK_SORT", 0)


@pytest.mark.parametrize("n, rcut", [(1, 3.0), (9, 4.0), (40, 3.0)])
def test_sort_cells_block_is_the_seven_launches(n, rcut, monkeypatch):
    """sort_cells_block gives the seven launches' cell starts, the same atoms in each cell (their
    order inside a cell is left to atomics in both), positions, types and cells consistent with
    its atom order, the same centres in each cell, and zeroed statistics and flag."""
    x, t = random_system(40 + n, TRICLINIC, n, 2)
    ext = extend(x, t, TRICLINIC, rcut)
    pos = cuda.to_device(ext.positions)
    typ = cuda.to_device(ext.types.astype(np.int32))
    lo, hi = dev._bounds(pos)
    cg = dev._cell_grid(lo, hi, ext.nall, rcut, 1)
    got = []
    for one_block in (True, False):
        with monkeypatch.context() as mp:
            if not one_block:
                _seven_launches(mp)
            stats = cuda.to_device(np.full(4, 7, np.int64))
            err = cuda.to_device(np.full(1, 7, np.int32))
            out = dev._sorted_cells(pos, typ, ext.nloc, cg, stats, err)
            got.append([a.copy_to_host() for a in out] + [stats.copy_to_host(), err.copy_to_host()])
    (spos, sidx, stype, scell, start, centres, stats, err), ref = got
    np.testing.assert_array_equal(start, ref[4])
    assert start[0] == 0 and start[-1] == ext.nall
    for c in range(start.shape[0] - 1):
        a, b = start[c], start[c + 1]
        assert sorted(sidx[a:b]) == sorted(ref[1][a:b])
        assert (scell[a:b] == c).all()
    np.testing.assert_array_equal(spos, ext.positions[sidx])
    np.testing.assert_array_equal(stype, ext.types[sidx])
    assert sorted(sidx) == list(range(ext.nall))
    np.testing.assert_array_equal(centres, np.flatnonzero(sidx < ext.nloc))
    np.testing.assert_array_equal(np.sort(scell[centres]), np.sort(ref[3][ref[5]]))
    assert not stats.any() and not err.any()


def _planned(x, t, rcut, skin):
    ext = extend(x, t, TRICLINIC, rcut + skin)
    pos = cuda.to_device(ext.positions)
    typ = cuda.to_device(ext.types.astype(np.int32))
    return ext, pos, typ, dev.plan_search(pos, typ, ext.nloc, rcut, skin)


def test_planned_lists_and_one_shot_lists_are_the_seven_launches_lists(monkeypatch):
    """An MD step's list (nlist_of_extended: list, statistics, flag) and the one-shot search
    (build_nlist_cuda) are the same with the one-block sort and with the seven launches,
    truncated blocks included."""
    rcut, skin, sel = 3.5, 1.0, [2, 3]
    x, t = random_system(33, TRICLINIC, 20, 2)
    ext, pos, typ, plan = _planned(x, t, rcut, skin)
    got = []
    for one_block in (True, False):
        with monkeypatch.context() as mp:
            if not one_block:
                _seven_launches(mp)
            nlist, stats, err = dev.nlist_of_extended(pos, typ, ext.nloc, rcut, sel, plan, 4)
            one = dev.build_nlist_cuda(x, t, TRICLINIC, rcut, sel, threads_per_centre=4)
            got.append((nlist.copy_to_host(), stats.copy_to_host(), err.copy_to_host(),
                        one.nlist.copy_to_host(), one.max_count, one.overflow))
    for a, b in zip(*got):
        np.testing.assert_array_equal(a, b)
    assert got[0][1][2:].max() > 0   # some blocks truncated
