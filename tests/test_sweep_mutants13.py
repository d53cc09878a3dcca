"""Tests for the survivors of the thirteenth round of mutation testing (the CPU evaluation path: the
environment rows and their normalisation, the descriptor contraction and its adjoint, the fused
layer kernels, the compressed tables, numdp.model.evaluator's chunks and workspaces, the type bias):
each fails on one plausible mistake that the rest of the suite let through (the mutant is named in
the test's docstring; 2026-12-07).  Small random models and frames only.
"""
from __future__ import annotations

import numpy as np

from numdp.kernels.cpu.descriptor import back_D
from numdp.model.bias import fit_type_shift
from numdp.model.dp_model import DPModel
from randmodel import random_config, random_params
from tests_util import U32, U64, fd_force, order_bound, shift_fit_bound


# --------------------------------------------------------------------------------------------------
# the normalisation of each column of the environment row by its own dstd
# --------------------------------------------------------------------------------------------------


def _column_std_model(swap_xy: bool):
    """A two-type model whose dstd differs between the x, y and z columns (DeePMD-kit's own
    statistics give the three one value, which is why a model file is free to hold any); with
    swap_xy the x and y columns' values exchanged."""
    params = random_params(ntypes=2, sel=[10, 10], neuron=(4, 8), axis_neuron=2, fitting=(8,), seed=13)
    cols = np.array([0.12, 0.31, 0.2])[[1, 0, 2] if swap_xy else [0, 1, 2]]
    params.descriptor.dstd[:, :, 1:] = cols
    return DPModel(params, nthreads=1)


def test_each_xyz_column_has_its_own_std():
    """Mutants `(s1 * dx - mu[ti, t, 1]) / sd[ti, t, 2]` in write_pair_row (the x column scaled by
    the y column's dstd) and `g1 / sd[ti, t, 2]` in scatter_pair (the same in the adjoint): every
    model of the suite (DeePMD-kit's statistics and tests/randmodel.py) has one dstd for the x, y
    and z columns.  Mirroring the frame through x <-> y and exchanging the x and y columns' dstd
    permutes the rows of T = R^T G / nnei, which leaves D = T^T T< (a sum over the four rows)
    unchanged: the same energy, and forces mirrored (reference §2, §4).  Central differences
    check the adjoint of the forward alone."""
    pos, types, _ = random_config(12, 2, seed=5)
    swap = [1, 0, 2]
    a = _column_std_model(False).evaluate(pos, types, None, atom_virial=False)
    model_b = _column_std_model(True)
    b = model_b.evaluate(pos[:, swap], types, None, atom_virial=False)
    # the same sums with the rows c = 1, 2 of T taken in the other order: the chains of the
    # descriptor (nnei + dim_out terms) and of the 12 atoms' energies
    tol = order_bound(U64, 20 + 16 + 12)
    assert abs(a.energy - b.energy) <= tol * max(1.0, abs(a.energy))
    scale = np.abs(a.forces).max()
    assert np.abs(a.forces - b.forces[:, swap]).max() <= tol * scale
    # central differences, step h = 1e-5 Å: truncation h² |E'''| / 6 and round-off
    # u |E| / h, both below 1e-7 of the force scale for these smooth, O(1) eV terms
    fd = np.array([fd_force(model_b, pos[:, swap], types, None, 0, c, 1e-5) for c in range(3)])
    assert np.abs(b.forces[0] - fd).max() <= 1e-7 * max(1.0, scale)


# --------------------------------------------------------------------------------------------------
# dE/dD back to dE/dT: the padding columns of a compressed model's Tbar
# --------------------------------------------------------------------------------------------------


def test_back_d_zeroes_every_padding_column_of_tbar():
    """Mutant `for m in range(M + 1, Tbar.shape[2])` in back_D (the first padding column left as
    the workspace held it): the table kernels multiply Tbar's padding columns by zero table
    coefficients, which gives 0 for any finite leftover but NaN for a NaN or an infinity (a
    workspace's buffers are np.empty).  back_D's contract: Tbar (na, 4, Mp) past M is zero."""
    rng = np.random.default_rng(3)
    na, M, Mp, naxis = 3, 6, 8, 2
    T = rng.normal(size=(na, 4, Mp))
    for folded, width in ((False, M * naxis), (True, naxis * (naxis + 1) // 2 + (M - naxis) * naxis)):
        gD = rng.normal(size=(na, width))
        Tbar = np.full((na, 4, Mp), np.nan)
        back_D(T, gD, naxis, folded, 0.1, Tbar)
        assert np.isfinite(Tbar[:, :, :M]).all()
        assert (Tbar[:, :, M:] == 0.0).all()


# --------------------------------------------------------------------------------------------------
# the type bias: DeePMD-kit's least squares keeps every singular value
# --------------------------------------------------------------------------------------------------


def test_type_shift_solves_an_ill_conditioned_composition_exactly():
    """Mutant `rcond=1e-3` in fit_type_shift (small singular values cut off): frames of 1 000 atoms
    of one type and 1 or 2 of another have singular values 1 414 and 0.707 (ratio 5e-4), so a
    cut-off at 1e-3 replaces the exact solution by the minimum-norm one of rank 1 (about
    [-2.99, -0.004] instead of [-3, 5]).  DeePMD-kit's lstsq (rcond None: machine precision
    times the larger dimension) recovers b; the bound is that of tests_util.shift_fit_bound
    (lstsq's backward error amplified by the condition number, 2e3)."""
    counts = np.array([[1000.0, 1.0], [1000.0, 2.0]])
    b = np.array([-3.0, 5.0])
    energies = counts @ b
    got = fit_type_shift(counts, energies)
    assert np.abs(got - b).max() <= shift_fit_bound(counts, energies, 2)


# --------------------------------------------------------------------------------------------------
# mix16: product operands rounded to half precision
# --------------------------------------------------------------------------------------------------


def test_mix16_rounds_weights_and_layer_inputs_to_half():
    """Mutant `a.astype(np.float32)` in round_half (mix16 evaluated as mix32): the suite's mix16
    checks are tolerances around double, which mix32 meets as well.  Under mix16 every weight is
    a float16 value (numdp.model.precision), and the fitting net's energy is the float32
    arithmetic on float16-rounded inputs and weights: against the same evaluation without the
    rounding, a random net differs by about the half-precision step 2^-11 of its terms."""
    from numdp.model.nets import InferenceNet, fit_energy_and_grad
    params = random_params(ntypes=1, neuron=(4, 8), axis_neuron=2, fitting=(8,), seed=7)
    net = params.fitting.nets[0]
    h16 = InferenceNet(net, "mix16")
    h32 = InferenceNet(net, "mix32")
    for lay in h16.layers:
        assert lay.w.dtype == np.float32
        assert np.array_equal(lay.w, lay.w.astype(np.float16).astype(np.float32))
    w32 = h32.layers[0].w
    assert not np.array_equal(w32, w32.astype(np.float16).astype(np.float32))
    D = np.random.default_rng(1).normal(size=(6, net.layers[0].n_in))
    e16, _ = fit_energy_and_grad(D, h16, want_grad=False)
    e32, _ = fit_energy_and_grad(D, h32, want_grad=False)
    # both are float32 chains of 16 + 8 terms: apart from the half rounding (relative 2^-12 of
    # each of 16 inputs and weights) they would agree within order_bound(U32, 24) (3e-5 of |e|)
    assert np.abs(e16 - e32).max() > order_bound(U32, 16 + 8) * np.abs(e32).max()
