"""Evaluation precision policies (model files always stay float64).

- double: everything in float64.
- mix32:  embedding nets, tables and fitting nets in float32 (weights, activations, products);
          environment matrix, descriptor contraction T = R^T G / nnei, D = T^T T<, the back-
          propagation through D and T, forces, virials and energy sums in float64.
- mix16:  as mix32, and additionally every operand of a network matrix product (layer inputs,
          back-propagated adjoints, weights) is rounded to IEEE half precision before the product,
          which accumulates in float32.  Biases, timesteps (idt) and tables stay float32.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class Precision:
    name: str
    dtype: type          # dtype of network arithmetic
    half_operands: bool  # round product operands to float16


PRECISIONS = {
    "double": Precision("double", np.float64, False),
    "mix32": Precision("mix32", np.float32, False),
    "mix16": Precision("mix16", np.float32, True),
}


def get_precision(name) -> Precision:
    """The policy called `name` (or `name` itself if it is already a Precision)."""
    if isinstance(name, Precision):
        return name
    try:
        return PRECISIONS[str(name)]
    except KeyError:
        raise InputError(f"precision '{name}' is not one of {', '.join(PRECISIONS)}") from None


def round_half(a: np.ndarray) -> np.ndarray:
    """A float32 copy of a whose values are rounded to the nearest float16."""
    return a.astype(np.float16).astype(np.float32)
