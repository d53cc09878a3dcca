"""All trainable parameters (W, b, idt of every embedding and fitting layer) in one flat vector.

`FlatParams.bind(params)` copies the arrays of a ModelParams into one float64 vector θ and
replaces the layers' arrays by views of θ, so an optimiser step on θ updates the model in place.
A gradient buffer of the same length is addressed through `LayerSlots` (one per layer) that give
the views of W, b and idt in any vector of that layout.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model.params import Layer, ModelParams


@dataclass(frozen=True)
class LayerSlots:
    """Positions of one layer's arrays in the flat vector (idt is None when absent)."""

    w: tuple[int, int, tuple[int, int]]
    b: tuple[int, int]
    idt: tuple[int, int] | None

    def views(self, vec: np.ndarray):
        """(W (n_in, n_out), b (n_out,), idt (n_out,) or None) as views of `vec`."""
        w0, w1, shape = self.w
        W = vec[w0:w1].reshape(shape)
        b = vec[self.b[0]:self.b[1]]
        idt = None if self.idt is None else vec[self.idt[0]:self.idt[1]]
        return W, b, idt


@dataclass
class FlatParams:
    """The flat parameter vector θ and the slot tables of every net.

    theta: (n,) float64.  embedding[k][l], fitting[k][l]: LayerSlots of layer l of net k.
    names: (name, start, stop) of every array, e.g. ("embedding[1].layer[2].idt", 120, 128).
    """

    theta: np.ndarray
    embedding: list[list[LayerSlots]]
    fitting: list[list[LayerSlots]]
    names: list[tuple[str, int, int]]

    @property
    def size(self) -> int:
        return int(self.theta.shape[0])

    @classmethod
    def bind(cls, params: ModelParams) -> "FlatParams":
        """Copy every trainable array of `params` into θ and make the layers views of θ."""
        nets = [("embedding", params.descriptor.embeddings), ("fitting", params.fitting.nets)]
        total = 0
        for _, group in nets:
            for net in group:
                for layer in net.layers:
                    total += layer.w.size + layer.b.size + (0 if layer.idt is None else layer.idt.size)
        theta = np.empty(total)
        names: list[tuple[str, int, int]] = []
        tables: dict[str, list[list[LayerSlots]]] = {}
        pos = 0

        def place(arr: np.ndarray, name: str) -> tuple[int, int]:
            nonlocal pos
            start, stop = pos, pos + arr.size
            theta[start:stop] = arr.ravel()
            names.append((name, start, stop))
            pos = stop
            return start, stop

        for kind, group in nets:
            tables[kind] = []
            for k, net in enumerate(group):
                slots = []
                for l, layer in enumerate(net.layers):
                    base = f"{kind}[{k}].layer[{l}]"
                    w0, w1 = place(layer.w, base + ".w")
                    b = place(layer.b, base + ".b")
                    idt = None if layer.idt is None else place(layer.idt, base + ".idt")
                    slot = LayerSlots((w0, w1, layer.w.shape), b, idt)
                    _rebind(layer, slot, theta)
                    slots.append(slot)
                tables[kind].append(slots)
        return cls(theta, tables["embedding"], tables["fitting"], names)

    def zeros(self) -> np.ndarray:
        """A zero vector of the same layout (a gradient buffer)."""
        return np.zeros_like(self.theta)


def frozen_ranges(flat: FlatParams, embedding_trainable: bool = True,
                  fitting_trainable: list[bool] | None = None) -> list[tuple[int, int]]:
    """The (start, stop) ranges of θ that do not train (DeePMD-kit's `trainable`): every
    embedding net's arrays unless `embedding_trainable`, and layer l of every fitting net where
    fitting_trainable[l] is False (None: all train); adjacent ranges merged."""
    layers = [s for net in flat.embedding for s in net] if not embedding_trainable else []
    if fitting_trainable is not None:
        layers += [s for net in flat.fitting for l, s in enumerate(net) if not fitting_trainable[l]]
    spans = sorted(r for s in layers for r in (s.w[:2], s.b, s.idt) if r is not None)
    out: list[tuple[int, int]] = []
    for a, b in spans:
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _rebind(layer: Layer, slot: LayerSlots, theta: np.ndarray) -> None:
    W, b, idt = slot.views(theta)
    layer.w, layer.b, layer.idt = W, b, idt
