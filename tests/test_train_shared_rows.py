"""Shared embedding rows of the training passes: pairs of one embedding net whose inputs agree
(the two directions of a pair of atoms of one type) are evaluated once; the grouping rule, the
count on a periodic one-type frame, and results and gradients against passes that share only
equal inputs."""
import numpy as np
import pytest

from numdp.kernels.cpu.train import merge_inputs
from numdp.neighbor import build_nlist, extend
from numdp.train.flat import FlatParams
from numdp.train.loss import Labels, LossStats, Prefactors
from numdp.train.passes import MERGE_TOL, Frame, ModelPasses
from randmodel import random_config, random_params


def test_merge_inputs_groups_within_the_window_of_each_rows_first_input():
    tol = 1e-12
    x = np.array([0.7, 0.5 + 2.0e-12, 0.5, 0.7, 0.5 + 1.0e-12, -1.0])
    order = np.argsort(x, kind="stable")
    p0, u0 = 10, 3
    xu = np.full(12, np.nan)
    ustart = np.full(12, -1, dtype=np.int64)
    mem = np.full(20, -1, dtype=np.int64)
    nu = merge_inputs(x, order, p0, tol, xu, ustart, mem, u0)
    # 0.5 opens a row reaching 0.5 + 1.5e-12: 0.5 + 1e-12 joins, 0.5 + 2e-12 opens the next
    assert nu == 4
    assert xu[u0:u0 + nu].tolist() == [-1.0, 0.5, 0.5 + 2.0e-12, 0.7]
    assert ustart[u0:u0 + nu + 1].tolist() == [10, 11, 13, 14, 16]
    assert mem[10:16].tolist() == [15, 12, 14, 11, 10, 13]   # p0 + the sorted positions


def _one_type_case(merge_tol, nthreads=1):
    params = random_params(ntypes=1, sel=[60], neuron=(4, 8), axis_neuron=2, type_one_side=False,
                           resnet_dt=True, fitting=(8, 8), rcut=4.0, rcut_smth=1.0, seed=3)
    pos, types, box = random_config(16, 1, box_len=6.0, tilt=0.3, seed=4)
    d = params.descriptor
    ext = extend(pos, types, box, d.rcut)
    nl = build_nlist(ext, d.rcut, d.sel, d.ntypes)
    assert not nl.overflowed   # every pair's mirror is in the list
    frame = Frame(ext.positions, nl.nlist, types, ext.mapping)
    flat = FlatParams.bind(params)
    return ModelPasses(params, flat, nthreads, merge_tol=merge_tol), flat, frame


@pytest.mark.parametrize("nthreads", [1, 2])
def test_one_type_periodic_frame_evaluates_each_pair_of_atoms_once(nthreads):
    """Images included (the 6 Å box is smaller than 2 rcut): i→j and j→i share a row, so the
    rows are half the pairs; with no tolerance only bitwise-equal inputs share (the images'
    inputs differ by rounding), and the results agree to the tolerance's bound."""
    shared, flat, frame = _one_type_case(MERGE_TOL, nthreads)
    exact, _, _ = _one_type_case(0.0, nthreads)
    res = shared.primal(frame)
    team = shared._chunks[0].team
    npairs, nrows = team.npairs, team.nrows
    assert npairs % 2 == 0 and nrows == npairs // 2
    ref = exact.primal(frame)
    rows_exact = exact._chunks[0].team.nrows
    assert nrows < rows_exact < npairs    # some mirrors are bitwise equal, not all
    x = team.xu[:nrows]
    # a shared row moves G by at most MERGE_TOL (1 + |x|) |dG/dx| of the pair: the result by
    # that relative amount through the nets' gains (10 allowed)
    rel = 10 * MERGE_TOL * (1 + np.abs(x).max())
    assert abs(res.energy - ref.energy) <= rel * abs(ref.atom_energy).sum()
    assert np.abs(res.forces - ref.forces).max() <= rel * np.abs(ref.forces).max() * npairs ** 0.5
    rng = np.random.default_rng(5)
    labels = Labels(ref.energy + 0.3, ref.forces + rng.normal(0.0, 0.5, ref.forces.shape),
                    ref.virial + rng.normal(0.0, 0.5, (3, 3)))
    grads = []
    for passes in (shared, exact):
        passes.zero_grad()
        out = passes.primal(frame)
        s = LossStats().add_frame(out, labels, Prefactors(0.5, 1.0, 0.5), 1)
        passes.gradient(s.c_e, s.u, s.eps, s.c_f, s.c_v)
        grads.append(passes.total_grad())
        passes.close()
    g, g0 = grads
    assert np.abs(g).max() > 0
    assert np.abs(g - g0).max() <= rel * np.abs(g0).max() * npairs ** 0.5


def test_worker_error_in_the_primal_pass_is_raised_not_a_hang():
    """An error in one worker before the primal pass's barriers breaks them for the others: the
    call raises that error, and the passes work again afterwards."""
    passes, _, frame = _one_type_case(MERGE_TOL, 2)
    e0 = passes.primal(frame).energy
    real = passes._forward_steps

    def failing(w, *a):
        if w == 1:
            raise ValueError("worker 1 failed")
        return real(w, *a)

    passes._forward_steps = failing
    with pytest.raises(ValueError, match="worker 1 failed"):
        passes.primal(frame)
    passes._forward_steps = real
    assert passes.primal(frame).energy == e0
    passes.close()
