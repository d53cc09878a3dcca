"""The folded layout of D: its symmetric naxis x naxis block stored once, and the fitting nets'
first layers summed over the mirrored rows (numdp.model.nets.fold_symmetric_input)."""
import numpy as np
import pytest

import numdp.model.evaluator as evaluator_module
from numdp.kernels.cpu.descriptor import back_D, contract_D, folded_rows
from numdp.model.dp_model import DPModel
from randmodel import random_config, random_params
from tests_util import U32, U64, fd_force, order_bound


def _fold_index(M, naxis):
    """Full-layout column of each folded column, and of its mirror (-1 when none)."""
    idx, mirror = [], []
    for m in range(naxis):
        for k in range(m, naxis):
            idx.append(m * naxis + k)
            mirror.append(k * naxis + m if k != m else -1)
    idx += [m * naxis + k for k in range(naxis) for m in range(naxis, M)]   # column by column
    mirror += [-1] * (M - naxis) * naxis
    return np.array(idx), np.array(mirror)


@pytest.mark.parametrize("M,naxis,Mp", [(10, 3, 10), (7, 7, 8), (12, 4, 16)])
def test_folded_kernels_match_the_full_layout(M, naxis, Mp):
    """contract_D folded = the kept full columns; back_D of a folded adjoint = back_D of the full
    adjoint whose mirrored entries share the folded value (padding columns of T ignored, of
    Tbar zeroed)."""
    rng = np.random.default_rng(3)
    na = 5
    T = rng.normal(size=(na, 4, Mp))
    idx, mirror = _fold_index(M, naxis)
    assert folded_rows(naxis, idx.size) == (M, naxis * (naxis + 1) // 2)
    full = np.zeros((na, M * naxis))
    contract_D(T, naxis, False, full)
    folded = np.zeros((na, idx.size))
    contract_D(T, naxis, True, folded)
    np.testing.assert_allclose(folded, full[:, idx], rtol=1e-14, atol=1e-14)
    assert np.allclose(full[:, mirror[mirror >= 0]], full[:, idx[mirror >= 0]])  # symmetric block

    gR = rng.normal(size=(na, idx.size))
    gD = np.zeros((na, M * naxis))
    gD[:, idx] = gR
    keep = mirror >= 0
    gD[:, idx[keep]] = 0.3 * gR[:, keep]          # any split of a folded adjoint between the
    gD[:, mirror[keep]] = 0.7 * gR[:, keep]       # two mirrored entries gives the same Tbar
    a = np.full((na, 4, Mp), np.nan)
    b = np.full((na, 4, Mp), np.nan)
    back_D(T, gD, naxis, False, 0.25, a)
    back_D(T, gR, naxis, True, 0.25, b)
    np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)
    assert np.all(b[:, :, M:] == 0.0)


def _evaluate(params, pos, types, box, fold, monkeypatch, precision="double"):
    with monkeypatch.context() as mp:
        if not fold:
            mp.setattr(evaluator_module, "fold_symmetric_input", lambda *a: None)
        model = DPModel(params, nthreads=2, chunk=7, precision=precision)
        assert model._ev.folded is fold
        return model.evaluate(pos, types, box)


@pytest.mark.parametrize("precision,u", [("double", U64), ("mix32", U32)])
def test_folded_model_equals_unfolded(precision, u, monkeypatch):
    params = random_params(ntypes=2, sel=[14, 14], neuron=(4, 8), axis_neuron=3, fitting=(12, 12), seed=9)
    # the layouts sum the first fitting layer's 24 (full) or 12 (folded) inputs in another order;
    # chains: 28 neighbours + 24 inputs + 2 x 12 hidden + 20 atoms < 100 terms
    tol = order_bound(u, 100)
    pos, types, box = random_config(20, 2, box_len=7.0, tilt=0.3, seed=2)
    a = _evaluate(params, pos, types, box, False, monkeypatch, precision)
    b = _evaluate(params, pos, types, box, True, monkeypatch, precision)
    scale = np.abs(a.forces).max()
    assert abs(b.energy - a.energy) <= tol * abs(a.energy)
    assert np.abs(b.forces - a.forces).max() <= tol * scale
    assert np.abs(b.virial - a.virial).max() <= tol * np.abs(a.virial).max()
    assert np.abs(b.atom_virials - a.atom_virials).max() <= tol * np.abs(a.atom_virials).max()
    assert np.abs(b.atom_energies - a.atom_energies).max() <= tol * np.abs(a.atom_energies).max()


def test_a_first_layer_with_a_residual_keeps_the_full_layout():
    """dim = 8 * 2 = 16 = the first fitting width: that layer has a shortcut, so D stays full;
    its forces still equal the energy's finite differences."""
    params = random_params(ntypes=2, sel=[14, 14], neuron=(4, 8), axis_neuron=2, fitting=(16, 12), seed=4)
    pos, types, box = random_config(12, 2, box_len=6.5, tilt=0.2, seed=1)
    model = DPModel(params, nthreads=1)
    assert not model._ev.folded
    out = model.evaluate(pos, types, box)
    h = 1e-5
    for i, c in [(0, 0), (3, 1), (7, 2)]:
        fd = fd_force(model, pos, types, box, i, c, h)
        assert abs(fd - out.forces[i, c]) <= 1e-7 * max(1.0, abs(out.forces[i, c]))


def test_descriptor_output_stays_in_the_full_layout(monkeypatch):
    params = random_params(ntypes=2, sel=[14, 14], neuron=(4, 8), axis_neuron=3, seed=9)
    pos, types, box = random_config(16, 2, box_len=7.0, tilt=0.1, seed=5)
    full = None
    for fold in (False, True):
        with monkeypatch.context() as mp:
            if not fold:
                mp.setattr(evaluator_module, "fold_symmetric_input", lambda *a: None)
            D = DPModel(params, nthreads=1).descriptor(pos, types, box)
        assert D.shape == (16, 8 * 3)
        full = D if full is None else full
    np.testing.assert_allclose(D, full, rtol=1e-13, atol=1e-13)
