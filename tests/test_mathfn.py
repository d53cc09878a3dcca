"""numdp's vectorisable tanh against libm over the whole double range."""
import numpy as np
from numba import njit

from numdp.kernels.cpu.mathfn import tanh


@njit(error_model="numpy", fastmath={"contract", "reassoc", "nsz"})
def _apply(x, out):
    for i in range(x.shape[0]):
        out[i] = tanh(x[i])


def test_tanh_relative_error_below_two_epsilon():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 3, 200000), np.linspace(-25, 25, 200001),
                        np.logspace(-300, 1.5, 20000), -np.logspace(-300, 1.5, 20000)])
    out = np.empty_like(x)
    _apply(x, out)
    ref = np.tanh(x)
    rel = np.abs(out - ref) / np.maximum(np.abs(ref), np.finfo(float).tiny)
    assert rel.max() <= 2.0 * np.finfo(float).eps


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
