"""numdp's vectorisable tanh over the whole double range, against tanh in extended precision."""
import numpy as np
from numba import njit

from numdp.kernels.cpu.mathfn import tanh


@njit(error_model="numpy", fastmath={"contract", "reassoc", "nsz"})
def _apply(x, out):
    for i in range(x.shape[0]):
        out[i] = tanh(x[i])


def test_tanh_relative_error_within_its_bound():
    """Relative error <= 2.85 eps, the first-order bound numdp.kernels.cpu.mathfn derives from
    its roundings (rounded up to 2.9 for the second-order terms), plus the reference's own error:
    NumPy's tanh of np.longdouble (x86-64: 64-bit significand, libm's tanhl within 2 of its ulps,
    2 longdouble eps; where long double is double, libm's tanh, the same 2 ulps = 2 eps).  Dense
    in [0.17, 0.18], where the bound is reached (n = 1, r near -ln2/2).  Comparing with libm's
    double tanh and 2 eps, as this test did until 2026-12-07, was not a bound: numdp's tanh and
    libm's err in opposite directions by 2.1 eps at some points of [0.17, 0.6]."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 3, 200000), np.linspace(-25, 25, 200001),
                        np.logspace(-300, 1.5, 20000), -np.logspace(-300, 1.5, 20000),
                        rng.uniform(0.17, 0.18, 200000)])
    out = np.empty_like(x)
    _apply(x, out)
    wide = np.longdouble
    ref = np.tanh(x.astype(wide))
    rel = np.abs(out.astype(wide) - ref) / np.maximum(np.abs(ref), wide(np.finfo(float).tiny))
    assert float(rel.max()) <= 2.9 * np.finfo(float).eps + 2.0 * float(np.finfo(wide).eps)


def test_tanh_special_values():
    x = np.array([0.0, 1e-320, 19.0, 30.0, -30.0, np.inf, -np.inf, np.nan])
    out = np.empty_like(x)
    _apply(x, out)
    assert out[0] == 0.0 and out[1] == 1e-320
    assert abs(out[2] - np.tanh(19.0)) <= np.finfo(float).eps
    assert list(out[3:7]) == [1.0, -1.0, 1.0, -1.0]
    assert np.isnan(out[7])


def test_float32_tanh_relative_error_below_three_float32_epsilons():
    """A float32 argument selects the float32 version (no promotion to float64)."""
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 3, 200000), np.linspace(-25, 25, 200001),
                        np.logspace(-37, 1.5, 20000), -np.logspace(-37, 1.5, 20000)]).astype(np.float32)
    out = np.empty_like(x)
    _apply(x, out)
    ref = np.tanh(x.astype(np.float64))
    rel = np.abs(out - ref) / np.maximum(np.abs(ref), np.finfo(np.float32).tiny)
    assert rel.max() <= 3.0 * np.finfo(np.float32).eps
    assert 0.5 * np.finfo(np.float32).eps < rel.max()   # float32 round-off, not a float64 result
    sp = np.array([0.0, 9.5, 30.0, -30.0, np.inf, -np.inf, np.nan], np.float32)
    o = np.empty_like(sp)
    _apply(sp, o)
    assert o[0] == 0.0 and list(o[2:6]) == [1.0, -1.0, 1.0, -1.0] and np.isnan(o[6])
    assert abs(o[1] - np.tanh(9.5)) <= np.finfo(np.float32).eps
