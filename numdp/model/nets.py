"""Network evaluation for inference: BLAS products, NumPy tanh, fused Numba element-wise kernels.

Embedding nets have a scalar input, so their derivative dG/dx is propagated in forward mode
next to the value (one stacked product per layer, no activations kept); fitting nets are
evaluated forward, then back-propagated to their input (reference §6.1).
"""
from __future__ import annotations

import numpy as np

from ..kernels.cpu.layers import add_residual_adjoint, back_tanh, post_forward, post_tangent
from .params import Net, RESIDUAL_NONE

_NO_IDT = np.ones(1)


def _idt(layer):
    return (layer.idt, True) if layer.idt is not None else (_NO_IDT, False)


def embed_value_and_slope(x: np.ndarray, net: Net) -> tuple[np.ndarray, np.ndarray]:
    """G (n, M) and dG/dx (n, M) for inputs x (n,) of one embedding net."""
    n = x.shape[0]
    Y = np.empty((2 * n, 1))
    Y[:n, 0] = x
    Y[n:, 0] = 1.0
    for layer in net.layers:
        Z = Y @ layer.w
        H = Z[:n]
        H += layer.b
        np.tanh(H, out=H)
        idt, use_idt = _idt(layer)
        out = np.empty_like(Z)
        post_tangent(H, Z[n:], idt, use_idt, Y, layer.residual, out)
        Y = out
    return Y[:n], Y[n:]


def embed_value(x: np.ndarray, net: Net) -> np.ndarray:
    """G (n, M) for inputs x (n,)."""
    y = x.reshape(-1, 1)
    for layer in net.layers:
        H = y @ layer.w
        H += layer.b
        np.tanh(H, out=H)
        idt, use_idt = _idt(layer)
        out = np.empty_like(H)
        post_forward(H, idt, use_idt, y, layer.residual, out)
        y = out
    return y


def fit_energy_and_grad(D: np.ndarray, net: Net, want_grad: bool = True):
    """Atomic network energies (n,) and their gradient dE/dD (n, dim) for inputs D (n, dim).

    Hidden layers use tanh with the width-tested residual; the last layer is linear.
    """
    y = D
    cache = []
    hidden, last = net.layers[:-1], net.layers[-1]
    for layer in hidden:
        H = y @ layer.w
        H += layer.b
        np.tanh(H, out=H)
        idt, use_idt = _idt(layer)
        out = np.empty_like(H)
        post_forward(H, idt, use_idt, y, layer.residual, out)
        cache.append((H, y.shape[1]))
        y = out
    energy = (y @ last.w)[:, 0] + last.b[0]
    if not want_grad:
        return energy, None
    gy = np.broadcast_to(last.w[:, 0], (D.shape[0], last.w.shape[0]))
    for layer, (H, n_in) in zip(reversed(hidden), reversed(cache)):
        idt, use_idt = _idt(layer)
        gZ = np.empty_like(H)
        back_tanh(gy, H, idt, use_idt, gZ)
        gx = gZ @ layer.w.T
        if layer.residual != RESIDUAL_NONE:
            add_residual_adjoint(np.ascontiguousarray(gy), layer.residual, gx)
        gy = gx
    return energy, gy
