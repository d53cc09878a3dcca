"""Tests for the survivors of the fifteenth round of mutation testing (the evaluation on the
device: numdp.model.cuda_evaluator, numdp.kernels.cuda's model kernels, the products of
numdp.backend's CUDABackend): each fails on one plausible mistake that the rest of the suite let
through (the mutant is named in the test's docstring; 2026-12-07).  Under Numba's CUDA simulator
(tests/conftest.py), on a few atoms and nets a few channels wide.

The mixed precisions were tested only against double, with tolerances of the precision's size,
so an operand left unrounded (or a network array kept in float64) passed: the policy's rounding
is checked here where it is applied (docs/gpu.md, "Precisions: what each rounds").
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba_cuda")

from randmodel import random_config, random_params  # noqa: E402


def _half(a):
    return np.asarray(a, np.float32).astype(np.float16).astype(np.float32)


class _Spy:
    """Stands for a kernel: records each launch's arguments, then launches the kernel."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.calls = []

    def __getitem__(self, config):
        def launch(*args):
            self.calls.append(args)
            return self.kernel[config](*args)
        return launch


@pytest.mark.parametrize("precision", ["double", "mix32", "mix16"])
def test_each_precision_rounds_the_documented_operands_on_the_device(precision, monkeypatch):
    """Mutants in CUDAEvaluator: an embedding or fitting product (forward, last layer, backward)
    called without half=True in mix16; the embedding input x not rounded to float16 in mix16;
    D or dE/dD kept in float64 in mix32 (a float64 operand, or output, of a float32 product).
    Each changes the result by less than the mixed-precision tests' tolerance against double.
    docs/gpu.md: in mix32 every network product has float32 operands and result, in mix16 its
    operands are float16 values (held in float32, `half`), and the embedding input x is rounded
    to float32 / float16; the virial's product fpair^T dvec stays float64 in every precision.
    A model with hidden embedding and fitting layers (every kind of product runs)."""
    from numdp.backend import CUDABackend
    from numdp.kernels.cuda import layers
    from numdp.model.dp_model import DPModel

    params = random_params(ntypes=2, sel=[8, 9], neuron=(2, 4, 8), axis_neuron=2, fitting=(6, 6),
                           rcut=3.0, rcut_smth=0.8, seed=15)
    pos, typ, box = random_config(natoms=5, ntypes=2, box_len=4.0, seed=15)
    model = DPModel(params, nthreads=1, device="cuda", precision=precision)
    products = []
    real = CUDABackend.matmul

    def matmul(self, a, b, out=None, half=False):
        products.append((np.dtype(a.dtype), np.dtype(b.dtype), None if out is None else np.dtype(out.dtype),
                         half, b.shape[1]))
        return real(self, a, b, out=out, half=half)

    monkeypatch.setattr(CUDABackend, "matmul", matmul)
    spy = _Spy(layers.first_layer_tangent)
    monkeypatch.setattr(layers, "first_layer_tangent", spy)
    model.evaluate(pos, typ, box)
    f64, f32 = np.dtype(np.float64), np.dtype(np.float32)
    net = f64 if precision == "double" else f32
    half = precision == "mix16"
    # the chunk's virial, fpair^T dvec: the only product with 3 columns (no layer is 3 wide)
    virial = [p for p in products if p[4] == 3]
    nets = [p[:4] for p in products if p[4] != 3]
    assert virial and all(p[:4] == (f64, f64, None, False) for p in virial)
    # per centre type: 2 fitting products forward (and the last layer's), 2 backward; per
    # embedding net: 2 products
    assert len(nets) >= 8
    for a, b, out, h in nets:
        assert (a, b, h) == (net, net, half)
        assert out is None or out == net   # (not `in`: np.dtype(None) is float64)
    assert spy.calls
    for args in spy.calls:
        x = np.asarray(model._ev.be.to_host(args[1]))
        assert x.dtype == net
        if half:
            assert np.array_equal(x, _half(x))   # float16 values


def test_half_products_round_both_operands_to_float16():
    """Mutants in CUDABackend.matmul: under the simulator (the emulation of cublasGemmEx with
    CUDA_R_16F operands) one operand not rounded to float16.  In the evaluator the weights are
    float16 values already, so only a product of two unrounded operands shows it: here random
    float32 operands.  Bound: the product of the rounded operands accumulated in float32 in
    another order than the float64 reference differs by at most 2 gamma_m u32 (|A_h| |B_h|) + u32
    |C| elementwise (as tests/test_cuda_gemm.py); an unrounded operand moves each term by up to
    2^-11 relatively, far above it (checked: the unrounded product is outside the bound)."""
    from numdp.backend import get_backend
    from tests_util import U32

    be = get_backend("cuda")
    rng = np.random.default_rng(15)
    m = 9
    A = rng.normal(size=(5, m)).astype(np.float32)
    B = rng.normal(size=(m, 4)).astype(np.float32)
    C = be.to_host(be.matmul(be.to_device(A), be.to_device(B), half=True))
    Ah, Bh = _half(A).astype(np.float64), _half(B).astype(np.float64)
    ref = Ah @ Bh
    gamma = m * U32 / (1 - m * U32)
    bound = 2 * gamma * (np.abs(Ah) @ np.abs(Bh)) + U32 * np.abs(ref)
    assert C.dtype == np.float32
    assert np.all(np.abs(C - ref) <= bound)
    for a, b in ((A, Bh), (Ah, B)):   # one operand unrounded: outside the bound
        assert not np.all(np.abs(a.astype(np.float64) @ b.astype(np.float64) - ref) <= bound)


def test_kernel_products_accumulate_float32_in_float32():
    """Mutant in numdp.kernels.cuda.gemm: the float32 product kernel built with float64 shared
    tiles and accumulator (`_build(float64)` for every dtype), which only rounds the final sum:
    within every round-off bound of a float32 product, so tests/test_cuda_gemm.py passed.  The
    module promises C's dtype for the accumulation and the terms in increasing order of the inner
    index: a row 1, 2^-25, ..., 2^-25 (15 of them) times ones.  In float32 each partial sum
    1 + 2^-25 rounds back to 1 (2^-25 is a quarter of an ulp of 1: also with a fused
    multiply-add), so C = 1 exactly; accumulated in float64 the sum 1 + 15 2^-25 = 1 + 3.75 ulp
    rounds to 1 + 4 ulp.  A float64 product accumulates in float64: 1 + 15 2^-25 exactly."""
    import dataclasses

    from numdp.backend import get_backend

    be = dataclasses.replace(get_backend("cuda"), kernel_products=True)
    for dtype, want in ((np.float32, 1.0), (np.float64, 1.0 + 15 * 2.0 ** -25)):
        A = np.array([[1.0] + [2.0 ** -25] * 15, [2.0 ** -25] * 15 + [1.0]], dtype)
        B = np.ones((16, 3), dtype)
        C = be.to_host(be.matmul(be.xp.asarray(A), be.xp.asarray(B)))
        assert C.dtype == dtype
        assert np.all(C[0] == want)
        # the small terms first: 15 2^-25 is exact in float32 too, then 1 + 3.75 ulp -> 1 + 4 ulp
        assert np.all(C[1] == np.asarray(1.0 + 15 * 2.0 ** -25, dtype))


def test_a_last_chunk_of_one_atom_is_evaluated():
    """Mutant in compute_device_shared: the chunks' loop `range(0, nloc - 1, chunk)` (it drops
    the last chunk exactly when it holds one atom, nloc = 1 mod chunk, which no CUDA test had: 3,
    6, 7 and 8 atoms in chunks of 4).  5 atoms in chunks of 2 and of 4 (last chunks of one atom),
    against the CPU path: both evaluate the same float64 expressions, only summation orders differ
    (sums of at most nnei + M + width ~ 30 terms: ~1e-14 relative), so 1e-12 relative to each
    quantity's largest magnitude (tests/test_cuda_model.py); the dropped atom's energy, force
    and virial would be missing (O(1) relative)."""
    from numdp.model.dp_model import DPModel

    params = random_params(ntypes=2, sel=[8, 9], neuron=(2, 4), axis_neuron=2, fitting=(6,), rcut=3.0,
                           rcut_smth=0.8, seed=16)
    pos, typ, box = random_config(natoms=5, ntypes=2, box_len=4.0, seed=16)
    ref = DPModel(params, nthreads=1).evaluate(pos, typ, box)
    assert np.abs(ref.forces).max() > 1e-3   # a comparison of non-zeros
    for chunk in (2, 4):
        got = DPModel(params, nthreads=1, device="cuda", chunk=chunk).evaluate(pos, typ, box)
        for a, b in ((ref.atom_energies, got.atom_energies), (ref.forces, got.forces),
                     (ref.virial, got.virial), (ref.atom_virials, got.atom_virials)):
            assert np.abs(a - b).max() <= 1e-12 * np.abs(a).max()


def test_reverse_index_puts_each_neighbours_pairs_in_one_run():
    """Mutant in numdp.kernels.cuda.forces.pair_sort_keys: keys nbr (P - 1) + p instead of nbr P + p
    (the last pair of neighbour k ties with the first pair of neighbour k + 1, which an argsort
    may put first: k's pairs split into two runs, each summed by its own thread into force[k],
    in another order than promised: right to round-off, so the evaluation tests passed).
    DeviceChunkEnv.reverse_index promises the pairs sorted by (neighbour, pair): here the first
    pair's neighbour is 3 and the last one's 2 (P = 11: keys 3 x 10 + 0 = 2 x 10 + 10 under the
    mutant), with padding slots (-1) among them."""
    from numdp.backend import get_backend
    from numdp.model.cuda_evaluator import DeviceChunkEnv

    be = get_backend("cuda")
    nbr = np.array([3, 1, -1, 2, 0, 3, 1, 2, -1, 0, 2], np.int32)
    env = DeviceChunkEnv(np.arange(1), None, None, None, None, be.to_device(nbr), np.array([0, 1]))
    rev, snbr = (np.asarray(be.to_host(a)) for a in env.reverse_index(be))
    want = np.lexsort((np.arange(nbr.size), nbr))   # by neighbour, then by pair
    assert np.array_equal(rev, want)
    assert np.array_equal(snbr, nbr[want])
    # the keys themselves: unique (so that any sort, stable or not, gives that order; NumPy's
    # argsort may break the mutant's tie either way)
    K = be.kernels
    key = be.xp.empty(nbr.size, np.int64)
    K.forces.pair_sort_keys[K.launch.strided(nbr.size)](be.to_device(nbr), key)
    key = np.asarray(be.to_host(key))
    assert np.unique(key).size == nbr.size
    assert np.array_equal(np.argsort(key, kind="stable"), want)


def test_float32_tables_round_tau_to_float32():
    """Mutant in numdp.kernels.cuda.tabulated (`find`): tau not cast to the tables' dtype, so a
    float32 table's polynomial runs in float64 (under the simulator NumPy promotes float32 by a
    float64 tau): a round-off-sized change that the mix32 tests against double let through.
    The module promises the polynomials in the tables' dtype with tau rounded to it.  A one-slot
    atom and a linear piece v = c0 + c1 tau with c1 = 1, c0 = -fl32(0.1) at x = 0.1 (lower 0,
    one interval of width 1: tau = 0.1): in float32, Horner gives fl32(0.1) - fl32(0.1) = 0
    exactly (also with fused multiply-adds: 1 x fl32(0.1) is exact), so G = 0 and T = 0; with a
    float64 tau, G = 0.1 - fl32(0.1) ~ -1.5e-9 and T is not zero."""
    from numdp.kernels.cuda.launch import strided2
    from numdp.kernels.cuda.tabulated import kernels_for

    M = 2
    coef = np.zeros((1, 4, M), np.float32)
    coef[0, 0, :] = -np.float32(0.1)
    coef[0, 1, :] = 1.0
    coff = np.array([0, 1], np.int64)
    meta = np.array([[0.0, 1.0, 1.0, 1.0, 1.0, 1.0]])   # lower, upper, xmax, h0, h1, n0
    rt = np.array([[0.1, 0.5, -0.25, 2.0]])
    T = np.full((1, 4, M), np.nan)
    beyond = np.zeros(1, np.int64)
    fwd = kernels_for(np.float32)[0]
    fwd[strided2(1, M)](np.zeros(1, np.int64), rt, np.zeros(1, np.int32), np.array([0, 1], np.int64),
                        np.zeros((1, 1, M)), coef, coff, meta, np.zeros((1, 1), np.int64), 1.0, T, beyond)
    assert np.all(T == 0.0) and beyond[0] == 0


@pytest.mark.parametrize("kernel", ["post_tangent", "post_forward", "first_layer_tangent"])
def test_float32_layers_add_the_bias_in_float32(kernel):
    """Mutant in numdp.kernels.cuda.layers.post_tangent: the bias added in float64 (Z + float64(b))
    for float32 nets (mix32, mix16), one rounding fewer than documented (docs/gpu.md: biases in
    FP32): invisible to the mixed tests' tolerances.  Linear activation (h = z) and a residual
    -1: z = 1 + 2^-30 rounds to 1 in float32, so idt h + res = 1 - 1 = 0 exactly (also as a
    fused multiply-add); summed in float64 the output is 2^-30.  The other two kernels' sums
    (z + b, x w + b) are held to the same rounding."""
    from numdp.kernels.cuda import layers
    from numdp.kernels.cuda.launch import strided2
    from numdp.model.activation import Activation

    f32 = np.float32
    act = int(Activation.NONE)
    b, idt = np.array([2.0 ** -30], f32), np.array([1.0], f32)
    if kernel == "first_layer_tangent":   # y = x + idt act(x w + b), x = w = -1: residual mode 1
        out = np.full((2, 1), np.nan, f32)
        layers.first_layer_tangent[strided2(1, 1)](act, np.array([-1.0], f32), np.array([-1.0], f32), b,
                                                 idt, 1, out)
        assert out[0, 0] == 0.0
        return
    Z = np.array([[1.0], [0.0]], f32)     # the value's row, then the slope's row
    Y = np.array([[-1.0], [0.0]], f32)    # the residual (mode 1): -1
    if kernel == "post_tangent":
        val, slope = np.full((1, 1), np.nan, f32), np.full((1, 1), np.nan, f32)
        layers.post_tangent[strided2(1, 1)](act, Z, b, idt, Y, 1, val, slope)
    else:
        D, val = np.full((2, 1), np.nan, f32), np.full((2, 1), np.nan, f32)
        layers.post_forward[strided2(2, 1)](act, Z, b, idt, Y, 1, D, val)
    assert val[0, 0] == 0.0


def test_team_contraction_of_a_width_just_past_three_groups():
    """Mutant in numdp.kernels.cuda.descriptor.store_T4: `m0 + 3 step <= ncol` (the fourth
    channel of a team thread stored one past the last): the team tests' widths M = 4, 8, 21 never
    put a fourth channel exactly at M (team of 4 under the simulator: channels m0 + 4 k, m0 < 4,
    of 16 per group), M = 13 does (m0 = 1: 1 + 12 = 13).  contract_T_team promises contract_T's
    bits (the same ordered sums), and writes nothing outside T (NumPy raises on the simulator)."""
    from numdp.kernels.cuda import descriptor
    from numdp.kernels.cuda.launch import strided2, teams

    rng = np.random.default_rng(13)
    na, M = 2, 13
    sec = np.array([0, 2, 5], np.int64)
    P = na * 5
    rt = rng.normal(size=(P, 4))
    nbr = np.array([1, -1, 0, 3, 2, -1, -1, 4, 1, 0], np.int32)   # occupied and padding slots
    G = rng.normal(size=(P, M))
    G_pad = rng.normal(size=(2, 2, M))
    atypes = np.array([0, 1], np.int64)
    T1, T2 = np.full((na, 4, M), np.nan), np.full((na, 4, M), np.nan)
    descriptor.contract_T[strided2(na, M)](atypes, rt, G, nbr, sec, G_pad, 0.2, T1)
    descriptor.contract_T_team[teams(na)](atypes, rt, G, nbr, sec, G_pad, 0.2, T2)
    assert np.isfinite(T1).all()
    assert np.array_equal(T1, T2)
