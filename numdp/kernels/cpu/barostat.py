"""Numba kernel of the barostats' host maths (numdp.md.mtk): the exponential of the (3, 3) strain
map of a step, a few hundred of which a step needs no more than a microsecond each."""
from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _mul3(a, b, out):
    for i in range(3):
        for j in range(3):
            s = 0.0
            for k in range(3):
                s += a[i, k] * b[k, j]
            out[i, j] = s


@njit(cache=True, nogil=True)
def expm3(x):
    """exp(x) of a (3, 3) float64 matrix: the Taylor series of y = x / 2^s (‖y‖∞ ≤ 1/8), summed
    until a term falls below 2^-60 (the remainder is then below an ulp of the identity: 5 terms
    for the ‖x‖ ~ 1e-4 of a barostat step), squared s times.  A lower-triangular x gives an
    exactly lower-triangular result (the products add exact zeros above the diagonal)."""
    norm = 0.0
    for i in range(3):
        row = abs(x[i, 0]) + abs(x[i, 1]) + abs(x[i, 2])
        norm = max(norm, row)
    s = 0
    if norm > 0.0:
        s = max(0, int(math.ceil(math.log2(norm * 8.0))))
    y = x / (2.0 ** s)
    term = np.eye(3)
    out = np.eye(3)
    nxt = np.empty((3, 3))
    for k in range(1, 30):
        _mul3(term, y, nxt)
        big = 0.0
        for i in range(3):
            for j in range(3):
                term[i, j] = nxt[i, j] / k
                out[i, j] += term[i, j]
                big = max(big, abs(term[i, j]))
        if big <= 2.0 ** -60:
            break
    for _ in range(s):
        _mul3(out, out, nxt)
        out[:, :] = nxt
    return out
