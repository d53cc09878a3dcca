"""Element-wise parts of dense layers, fused after the BLAS matrix product.

tanh itself is left to NumPy's vectorised ufunc (Numba without SVML calls libm per element,
about 7x slower here); these kernels fuse everything that follows it.
Residual modes: 0 none, 1 same width (y' = y + ...), 2 doubled width (y' = [y, y] + ...).
"""
from numba import njit

from .envmat import FASTMATH


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def post_tangent(H, Zp, idt, use_idt, Y, mode, out):
    """Embedding layer with forward-mode derivative.

    H: (n, k) tanh(z); Zp: (n, k) dz/dx; Y: (2n, n_in) previous [y; dy/dx];
    out: (2n, k) new [y'; dy'/dx] = residual + idt * [h; (1 - h^2) z'].
    """
    n, k = H.shape
    n_in = Y.shape[1]
    for r in range(n):
        for c in range(k):
            h = H[r, c]
            hp = (1.0 - h * h) * Zp[r, c]
            if use_idt:
                h *= idt[c]
                hp *= idt[c]
            if mode == 1:
                h += Y[r, c]
                hp += Y[n + r, c]
            elif mode == 2:
                cc = c if c < n_in else c - n_in
                h += Y[r, cc]
                hp += Y[n + r, cc]
            out[r, c] = h
            out[n + r, c] = hp


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def post_forward(H, idt, use_idt, Y, mode, out):
    """Fitting layer forward: out (n, k) = residual(Y) + idt * H, H = tanh(z)."""
    n, k = H.shape
    n_in = Y.shape[1]
    for r in range(n):
        for c in range(k):
            h = H[r, c]
            if use_idt:
                h *= idt[c]
            if mode == 1:
                h += Y[r, c]
            elif mode == 2:
                h += Y[r, c if c < n_in else c - n_in]
            out[r, c] = h


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def back_tanh(gY, H, idt, use_idt, gZ):
    """gZ (n, k) = (1 - H^2) * idt * gY: adjoint of z from the adjoint of the layer output."""
    n, k = H.shape
    for r in range(n):
        for c in range(k):
            g = gY[r, c]
            if use_idt:
                g *= idt[c]
            h = H[r, c]
            gZ[r, c] = (1.0 - h * h) * g


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def add_residual_adjoint(gY, mode, gX):
    """gX (n, n_in) += transpose of the residual map applied to gY (n, k)."""
    n, k = gY.shape
    n_in = gX.shape[1]
    if mode == 1:
        for r in range(n):
            for c in range(k):
                gX[r, c] += gY[r, c]
    elif mode == 2:
        for r in range(n):
            for c in range(k):
                gX[r, c if c < n_in else c - n_in] += gY[r, c]
