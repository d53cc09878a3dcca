"""The activation functions of DeePMD-kit's networks, by name and by kernel code.

A layer's `activation` (numdp.model.params.Layer) is one of `NAMES`, DeePMD-kit's names of the
functions (`ALIASES` maps its other spellings).  The kernels take the integer code `code(name)`
and evaluate h = act(z) and dh/dz with the scalar function `numdp.kernels.math.activation`;
`derivatives` below gives h, h' and h'' in NumPy for the compressed model's tables.

Definitions (DeePMD-kit's, deepmd/dpmodel/utils/network.py), with σ(z) = 1 / (1 + e^-z):

| name | h(z) |
|---|---|
| tanh | tanh z |
| gelu | z/2 (1 + tanh(c (z + a z³))), c = √(2/π), a = 0.044715 (the tanh form; DeePMD-kit's gelu and gelu_tf) |
| relu | max(z, 0) |
| relu6 | min(max(z, 0), 6) |
| softplus | ln(1 + e^z) |
| sigmoid | σ(z) |
| silu | z σ(z) |
| none | z (DeePMD-kit's "linear" and "none"; also the fitting nets' output layer) |
"""
from __future__ import annotations

from enum import IntEnum

import numpy as np

from ..kernels.math import GELU_A, GELU_C


class Activation(IntEnum):
    """Kernel codes of the activation functions (numdp.kernels.math.activation)."""

    TANH = 0
    GELU = 1
    RELU = 2
    RELU6 = 3
    SOFTPLUS = 4
    SIGMOID = 5
    SILU = 6
    NONE = 7


NAMES = tuple(a.name.lower() for a in Activation)
"""numdp's names, those a layer's `activation` holds: DeePMD-kit's main names."""

ALIASES = {"gelu_tf": "gelu", "linear": "none"}
"""DeePMD-kit's other names of the same functions."""


def canonical(name) -> str | None:
    """numdp's name of DeePMD-kit's activation `name` (None, "" and "linear" are "none"), or None
    when numdp does not implement it."""
    if name is None or name == "":
        return "none"
    key = str(name).lower()
    key = ALIASES.get(key, key)
    return key if key in NAMES else None


def code(name: str) -> int:
    """The kernel code of numdp's activation name."""
    return int(Activation[name.upper()])


def derivatives(name: str, z: np.ndarray):
    """(h, dh/dz, d²h/dz²) of activation `name` at z, float64 arrays of z's shape."""
    z = np.asarray(z, dtype=np.float64)
    one, zero = np.ones_like(z), np.zeros_like(z)
    if name == "tanh":
        h = np.tanh(z)
        g = 1.0 - h * h
        return h, g, -2.0 * h * g
    if name == "gelu":
        u = GELU_C * (z + GELU_A * z ** 3)
        du = GELU_C * (1.0 + 3.0 * GELU_A * z * z)
        t = np.tanh(u)
        s = 1.0 - t * t                                   # tanh'(u)
        h = 0.5 * z * (1.0 + t)
        d1 = 0.5 * (1.0 + t) + 0.5 * z * s * du
        d2 = s * du + 0.5 * z * (-2.0 * t * s * du * du + s * 6.0 * GELU_C * GELU_A * z)
        return h, d1, d2
    if name == "relu":
        pos = z > 0.0
        return np.where(pos, z, 0.0), np.where(pos, one, zero), zero
    if name == "relu6":
        inside = (z > 0.0) & (z < 6.0)
        return np.clip(z, 0.0, 6.0), np.where(inside, one, zero), zero
    sig = 0.5 * (1.0 + np.tanh(0.5 * z))                   # σ(z) without overflow
    if name == "softplus":
        return np.logaddexp(0.0, z), sig, sig * (1.0 - sig)
    if name == "sigmoid":
        ds = sig * (1.0 - sig)
        return sig, ds, ds * (1.0 - 2.0 * sig)
    if name == "silu":
        ds = sig * (1.0 - sig)
        return z * sig, sig + z * ds, ds * (2.0 + z * (1.0 - 2.0 * sig))
    if name == "none":
        return z.copy(), one, zero
    raise ValueError(f"unknown activation {name!r}")
