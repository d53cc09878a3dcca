"""The force call's merged launches for small systems (Numba's simulator) against the launches
they replace, forced by a module constant: the neighbour search's counting sort in one block
(numdp.neighbor.device.ONE_BLOCK_SORT = 0: seven launches) and the model's outputs zeroed by its
first chunk's kernel, with the fitting nets' adjoint seeds kept (numdp.model.cuda_evaluator
.FOLD_TOTALS = False: the array library's operations).  Integer work gives the same lists by
construction, the model the same bits; both tested."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba_cuda")

from numba import cuda  # noqa: E402

import numdp.neighbor.device as dev  # noqa: E402
from numdp.backend import cuda_simulator_enabled  # noqa: E402
from numdp.kernels.cuda.opcount import OpCounter  # noqa: E402
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


def _evaluators(compressed):
    from numdp.model.compress import compress
    from numdp.model.dp_model import DPModel
    from randmodel import random_params

    params = random_params(ntypes=2, sel=[6, 6], neuron=(4,), axis_neuron=2, fitting=(8, 8), rcut=3.5,
                           rcut_smth=1.0, seed=4)
    if compressed:
        params.min_nbor_dist = 0.5
        params = compress(params, dx=0.05)[0]
    return DPModel(params, nthreads=1, device="cuda")._ev


@pytest.mark.parametrize("compressed", [False, True], ids=["uncompressed", "compressed"])
def test_fold_totals_keeps_the_model_bits(compressed, monkeypatch):
    """compute_device_shared with the outputs zeroed by start_totals and the cached adjoint
    seeds gives the array-library path's energies, forces (every extended atom), virial and
    atomic virials bit for bit, over 1 and 3 chunks (the first chunk zeroes, the others add),
    for two models sharing the environment; and 4 fewer operations per call with 2 types."""
    import numdp.model.cuda_evaluator as ce

    x, t = random_system(35, TRICLINIC, 18, 2)
    ext = extend(x, t, TRICLINIC, 3.5)
    types = ext.types[:ext.nloc]
    ev = _evaluators(compressed)
    nl = dev.build_nlist_cuda(x, t, TRICLINIC, 3.5, [6, 6], threads_per_centre=4).nlist.copy_to_host()
    for chunk in (64, 7):
        monkeypatch.setattr(ev, "chunk", chunk)
        got, ops = {}, {}
        for fold in (True, False):
            with monkeypatch.context() as mp:
                mp.setattr(ce, "FOLD_TOTALS", fold)
                for want_atom_virial in (False, True):
                    for call in range(2):   # the second call: the seeds kept
                        counter = OpCounter()
                        with counter.counting():
                            pos = ev.be.to_device(ext.positions)
                            nlist = ev.be.to_device(nl)
                            counter.reset()
                            outs = ce.compute_device_shared([ev, ev], pos, nlist, types,
                                                            want_atom_virial=want_atom_virial)
                        ops[fold, want_atom_virial] = counter.launches + counter.array_ops
                        # the atomic virials' placeholder row is unset unless asked for
                        got[fold, want_atom_virial] = [np.asarray(ev.be.to_host(a)) for out in outs
                                                       for a in out[:4 if want_atom_virial else 3]]
        for w in (False, True):
            for a, b in zip(got[True, w], got[False, w]):
                assert a.dtype == b.dtype and a.shape == b.shape
                assert a.tobytes() == b.tobytes()
            # per model: zeroing (2) and a subtraction per chunk -> start_totals per chunk; the
            # seed's fill per type of each chunk -> none
            order = np.argsort(types, kind="stable")
            groups = sum(len(set(types[order[c:c + chunk]].tolist())) for c in range(0, ext.nloc, chunk))
            if cuda_simulator_enabled():   # on a GPU the counter sees CuPy's functions only
                assert ops[False, w] - ops[True, w] == 2 * (2 + groups), (chunk, ops)


def test_md_run_is_the_replaced_launches_run_bit_for_bit(tmp_path, monkeypatch):
    """A periodic Nosé-Hoover GPU run (4 steps, a list formed at every force call, output every 2)
    ends with the same trajectory, bit for bit, as the run with the seven sort launches and the
    array library's zeroing, subtraction and seed fills.  Five force calls each: any bit the merged
    launches change shows in the first call's forces, virial (the pressure) and energy, and the
    later calls reuse the kept seeds and the merged totals' buffers."""
    import numdp.model.cuda_evaluator as ce
    from test_cuda_md import NHC, make_run, run
    from test_mpi import frames

    got = []
    for merged in (True, False):
        with monkeypatch.context() as mp:
            if not merged:
                _seven_launches(mp)
                mp.setattr(ce, "FOLD_TOTALS", False)
            toml = make_run(tmp_path / str(merged), "cuda", NHC, steps=4, every=2)
            run(toml)
            got.append(frames(toml.parent))
    for key in got[0]:
        a, b = np.asarray(got[0][key]), np.asarray(got[1][key])
        assert a.tobytes() == b.tobytes(), key


def test_large_adjoint_seeds_are_made_per_call_with_the_same_bits(monkeypatch):
    """Seeds above SEED_KEPT_ELEMENTS (here: every seed) are made at each call, not kept (a large
    chunk's would hold tens of MB of device memory per size): the same results, nothing kept."""
    import numdp.model.cuda_evaluator as ce

    x, t = random_system(35, TRICLINIC, 18, 2)
    ext = extend(x, t, TRICLINIC, 3.5)
    types = ext.types[:ext.nloc]
    nl = dev.build_nlist_cuda(x, t, TRICLINIC, 3.5, [6, 6], threads_per_centre=4).nlist.copy_to_host()
    got = {}
    for limit in (ce.SEED_KEPT_ELEMENTS, 0):
        ev = _evaluators(True)
        monkeypatch.setattr(ce, "SEED_KEPT_ELEMENTS", limit)
        for _ in range(2):
            outs = ce.compute_device_shared([ev], ev.be.to_device(ext.positions), ev.be.to_device(nl), types)
        got[limit] = [np.asarray(ev.be.to_host(a)).tobytes() for a in outs[0][:3]]
        assert (len(ev._fit_seeds) > 0) == (limit > 0)
    assert got[ce.SEED_KEPT_ELEMENTS] == got[0]
