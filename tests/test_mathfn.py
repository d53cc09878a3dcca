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
