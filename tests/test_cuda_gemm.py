"""numdp.kernels.cuda.gemm: matrix products as kernels (CUDABackend.kernel_products), which a force
call captured in a CUDA graph uses instead of cuBLAS (CuPy refuses cuBLAS calls while capturing).

Run under Numba's CUDA simulator unless NUMDP_TEST_REAL_GPU=1.  Bounds: each element of C is a
sum of m products formed in another order than the reference's, so the two differ by at most
2 gamma_m (|A| |B|) elementwise, gamma_m = m u / (1 - m u), u the unit round-off of the
accumulation (a float32 reference for float32 accumulation is formed in float64, exact to its
own rounding u |C|)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("numba_cuda")

from numdp.backend import get_backend, round_half_operand  # noqa: E402
from numdp.model.compress import compress  # noqa: E402
from numdp.model.dp_model import DPModel  # noqa: E402
from randmodel import random_config, random_params  # noqa: E402


def _gamma(u, m):
    return m * u / (1.0 - m * u)


def _kernel_backend():
    return dataclasses.replace(get_backend("cuda"), kernel_products=True)


def _operands(rng, n, m, k, dtype, a_layout, b_layout):
    A = rng.normal(size=(n, m)).astype(dtype)
    B = rng.normal(size=(m, k)).astype(dtype)
    if a_layout == "F":
        A = np.asfortranarray(A)
    if b_layout == "T":   # a transposed weight matrix: the F-ordered view of a (k, m) array
        B = np.ascontiguousarray(B.T).T
    return A, B


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(7, 5, 3), (9, 13, 6), (1, 1, 1), (5, 0, 4), (0, 3, 2)])
@pytest.mark.parametrize("layout", [("C", "C"), ("F", "T")])
def test_kernel_product_equals_numpy_within_round_off(dtype, shape, layout):
    be = _kernel_backend()
    n, m, k = shape
    A, B = _operands(np.random.default_rng(sum(shape)), n, m, k, dtype, *layout)
    C = be.to_host(be.matmul(be.xp.asarray(A), be.xp.asarray(B)))
    assert C.dtype == dtype and C.shape == (n, k)
    ref = A.astype(np.float64) @ B.astype(np.float64)
    u = np.finfo(dtype).eps / 2
    scale = np.abs(A).astype(np.float64) @ np.abs(B).astype(np.float64)
    bound = 2 * _gamma(u, max(m, 1)) * scale + u * np.abs(ref)
    assert np.all(np.abs(C - ref) <= bound)
    again = be.to_host(be.matmul(be.xp.asarray(A), be.xp.asarray(B)))
    assert np.array_equal(C, again)   # no atomics: the same bits every time


def test_kernel_product_writes_into_out_and_takes_half_operands():
    """out= is written in place (the fitting's dE/dD goes straight into its buffer); with half the
    operands are rounded to float16 and multiplied in float32, as MIX-16's cuBLAS product."""
    be = _kernel_backend()
    rng = np.random.default_rng(2)
    A, B = _operands(rng, 6, 11, 5, np.float32, "C", "T")
    out = np.full((6, 5), np.nan, np.float32)
    got = be.matmul(A, B, out=out, half=True)
    assert got is out
    Ah, Bh = (round_half_operand(np, x).astype(np.float64) for x in (A, B))
    ref = Ah @ Bh
    u = np.finfo(np.float32).eps / 2
    bound = 2 * _gamma(u, 11) * (np.abs(Ah) @ np.abs(Bh)) + u * np.abs(ref)
    assert np.all(np.abs(out - ref) <= bound)
    assert not np.allclose(out, A.astype(np.float64) @ B.astype(np.float64), rtol=1e-6, atol=0)   # rounded


@pytest.mark.parametrize("precision", ["double", "mix32", "mix16"])
def test_a_model_with_kernel_products_equals_its_cublas_evaluation(precision, monkeypatch):
    """A compressed model's evaluation with kernel products (the fitting nets and the virial)
    against the same model with the backend's products, to round-off: the fitting chain of a
    (8, 8) net on 2 x 12 descriptor inputs holds fewer than 50 accumulations per term, so
    order_bound(u, 50) relative to the largest force (u of the products' arithmetic)."""
    from tests_util import U32, U64, order_bound

    params = compress(random_params(ntypes=2, sel=[12, 14], neuron=(4, 8), fitting=(8, 8), rcut=3.5,
                                    rcut_smth=0.8, seed=21), dx=0.02, order=5, s_max=np.full(2, 1.5))[0]
    pos, typ, box = random_config(natoms=8, ntypes=2, box_len=4.0, tilt=0.2, seed=5)
    plain = DPModel(params, nthreads=1, device="cuda", precision=precision)
    kern = DPModel(params, nthreads=1, device="cuda", precision=precision)
    kern.use_kernel_products()
    from numdp.kernels.cuda import gemm

    made = []
    monkeypatch.setattr(gemm, "gemm_for", lambda dtype, f=gemm.gemm_for: made.append(dtype) or f(dtype))
    a = plain.evaluate(pos, typ, box)
    assert made == []
    b = kern.evaluate(pos, typ, box)
    # per centre type: 3 forward and 2 backward fitting products (in the nets' dtype); the
    # chunk's virial (float64 in every precision)
    nets = np.dtype(np.float64 if precision == "double" else np.float32)
    assert len(made) >= 11 and {np.dtype(t) for t in made} == {nets, np.dtype(np.float64)}
    u = U64 if precision == "double" else U32
    fmax = np.abs(a.forces).max()
    assert np.abs(a.forces - b.forces).max() <= order_bound(u, 50) * fmax
    assert abs(a.energy - b.energy) <= order_bound(u, 50) * np.abs(a.atom_energies).sum()
    assert np.abs(a.virial - b.virial).max() <= order_bound(u, 50) * np.abs(a.virial).max()
    with pytest.raises(Exception, match="device='cuda'"):
        DPModel(params, nthreads=1).use_kernel_products()
