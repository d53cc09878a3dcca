"""The activation functions of DeePMD-kit's networks, by name and by kernel code.

A layer's `activation` (numdp.model.params.Layer) is one of `NAMES`, DeePMD-kit's names of the
functions (`ALIASES` maps its other spellings).  The kernels take the integer code `code(name)`
and evaluate h = act(z) and dh/dz with the scalar function `numdp.kernels.math.activation`;
`derivatives` below gives h, h' and h'' (`numdp.kernels.math.activation_curvature`) for the
compressed model's tables.

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

from ..kernels import math as _codes


class Activation(IntEnum):
    """Kernel codes of the activation functions (numdp.kernels.math.activation)."""

    TANH = _codes.ACT_TANH
    GELU = _codes.ACT_GELU
    RELU = _codes.ACT_RELU
    RELU6 = _codes.ACT_RELU6
    SOFTPLUS = _codes.ACT_SOFTPLUS
    SIGMOID = _codes.ACT_SIGMOID
    SILU = _codes.ACT_SILU
    NONE = _codes.ACT_NONE


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
    """(h, dh/dz, d²h/dz²) of activation `name` at z, float64 arrays of z's shape: the kernels'
    scalar `numdp.kernels.math.activation_curvature`, element by element."""
    from ..kernels.cpu.layers import activation_values

    z = np.asarray(z, dtype=np.float64)
    out = np.empty((3,) + z.shape)
    activation_values(code(name), z.reshape(-1), out.reshape(3, -1))
    return out[0], out[1], out[2]
