"""Optional preconditioning of the first fitting layers (`[training] precondition = true`).

The se_e2_a descriptor entries are small (RMS ~2e-2 with the usual normalisation), so Adam —
whose steps have about the same size in every parameter — changes the first fitting layer's
pre-activation z = D W0 + b0 slowly compared with the rest of the network.  With
`precondition`, the optimiser works on W' = s_t W0 instead of W0, where s_t is the RMS of the
descriptor entries of centre type t on the statistics frames (measured with the initial
networks): the first layer then sees an input of unit RMS, z = (D / s_t) W' + b0.

The model is unchanged (plain W0 = W' / s_t; inference knows nothing of this); only the
optimiser's variable differs.  θ holds W' in the slots of the first fitting layers and the
model's W0 is a separate array refreshed after every update; gradients map as
∂L/∂W' = ∂L/∂W0 / s_t.  The initial W' is the usual random matrix N(0, 1/sqrt(n_in + n_out)),
i.e. the usual scale for a unit-RMS input.

Measured effect (inputs/water 2000 steps, inputs/cu 5000 steps): water (diverse molecular
environments) gains a lot (validation about 1.8 meV/atom and 172 meV/Å instead of 4.6 meV/atom
and 253 meV/Å), fcc copper (nearly identical environments) loses (5.4 meV/atom, 156 meV/Å
instead of about 1 meV/atom and 39 meV/Å).  The default is therefore false (plain Adam on W0,
as DeePMD-kit).
"""
from __future__ import annotations

import numpy as np

from ..model.params import ModelParams
from .flat import FlatParams


class FittingPreconditioner:
    """Optimiser coordinates W' = s_t W0 for the first layer of each fitting net.

    scale: (ntypes,) s_t, the RMS of the descriptor entries of centre type t.
    """

    def __init__(self, params: ModelParams, flat: FlatParams, scale):
        self.params, self.flat = params, flat
        self.scale = np.asarray(scale, dtype=np.float64).reshape(params.ntypes)
        if not np.all(self.scale > 0) or not np.all(np.isfinite(self.scale)):
            raise ValueError(f"preconditioner scales must be positive, got {self.scale}")
        self.slots = [flat.fitting[t][0] for t in range(params.ntypes)]
        for net in params.fitting.nets:
            net.layers[0].w = np.array(net.layers[0].w)  # W0 is no longer a view of θ

    @classmethod
    def from_descriptors(cls, params: ModelParams, flat: FlatParams, D: dict[int, np.ndarray]):
        """s_t = RMS of the descriptor rows D[t] (n, M*M<); 1 for a type without rows."""
        scale = []
        for t in range(params.ntypes):
            rows = D.get(t)
            rms = float(np.sqrt(np.mean(rows * rows))) if rows is not None and rows.size else 0.0
            scale.append(rms if rms > 0 else 1.0)
        return cls(params, flat, scale)

    def adopt_model_as_primed(self) -> None:
        """Take the model's current random first-layer W0 as the optimiser's W' (the usual
        scale for a unit-RMS input) and set the model's W0 = W' / s_t."""
        for t, net in enumerate(self.params.fitting.nets):
            Wp = self.slots[t].views(self.flat.theta)[0]
            Wp[:] = net.layers[0].w
        self.refresh_model()

    def adopt_model_unchanged(self) -> None:
        """Keep the model's first-layer W0 (a trained model, --init-model): W' = s_t W0, so the
        model's W0 = W' / s_t is W0 up to one rounding (1 ulp)."""
        for t, net in enumerate(self.params.fitting.nets):
            Wp = self.slots[t].views(self.flat.theta)[0]
            np.multiply(net.layers[0].w, self.scale[t], out=Wp)
        self.refresh_model()

    def refresh_model(self) -> None:
        """Model W0 = W' / s_t from θ (after every optimiser update)."""
        for t, net in enumerate(self.params.fitting.nets):
            Wp = self.slots[t].views(self.flat.theta)[0]
            np.multiply(Wp, 1.0 / self.scale[t], out=net.layers[0].w)

    def map_gradient_row(self, row: np.ndarray) -> None:
        """In place on one gradient row (flat layout): ∂L/∂W0 → ∂L/∂W' = ∂L/∂W0 / s_t."""
        for t in range(self.params.ntypes):
            gW = self.slots[t].views(row)[0]
            gW *= 1.0 / self.scale[t]
