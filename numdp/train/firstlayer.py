"""The first fitting layer's optimiser coordinates W' = c_t W0, c_t = K s_t (issue 17).

The se_e2_a descriptor entries are small: their RMS s_t per centre type t is about 0.01-0.02
with DeePMD-kit's normalisation (davg/dstd).  Adam's steps have about the same size, lr, in
every parameter, so the first fitting layer's pre-activations z = D W0 + b0 move about 1/s_t
times less per step than they would for an input of unit RMS, and that layer learns slowly
(docs/training.md: on water it makes some seeds stall).  The trainer's Adam therefore works on

    W' = c_t W0,    c_t = K s_t,

in the first fitting layer of each centre type t, and on every other array as it is:

- the gradient maps as ∂L/∂W' = ∂L/∂W0 / c_t;
- Adam on W' is Adam on W0 with learning rate lr / c_t and ε c_t: W0's steps are
  1 / (K s_t) times the other layers' (on DeePMD-kit's inputs, seed 1: 4.1 for water's O,
  5.2 for its H, 3.3 for copper);
- a new run draws W' as every other weight matrix (N(0, 1/sqrt(n_in + n_out))), so W0 starts
  at W' / c_t: the first layer starts in the same units it learns in;
- s_t is the RMS of the descriptor entries of centre type t on the statistics frames (the
  frames of davg/dstd), with the initial networks; c_t = 1 (plain Adam) for a type without
  atoms there.

K = FIRST_LAYER_K = 14 is measured, not derived: on DeePMD-kit's own water and copper inputs
K = 10 meets DeePMD-kit's water errors but not copper's virial, K = 20 meets copper but not
water's energy, and their geometric mean 14 meets both (docs/training.md, "Against issue 17's
target").  K → ∞ is plain Adam (DeePMD-kit's optimiser); K = 1 was the removed `precondition`
option, which hurt copper badly.

The model is unchanged: an se_e2_a model whose W0 is a separate array, W0 = W' / c_t, refreshed
after every update (inference, model files and --init-model know nothing of this).  θ holds W'
in the first fitting layers' W slots; checkpoints hold θ and c_t, so a restart continues bit for
bit.
"""
from __future__ import annotations

import numpy as np

from ..model.params import ModelParams
from .flat import FlatParams

FIRST_LAYER_K = 14.0


class FirstLayerCoordinates:
    """Optimiser coordinates W' = c_t W0 of the first layer of each fitting net.

    scale: (ntypes,) c_t > 0.  After construction the model's first-layer W0 arrays are no longer
    views of θ; `refresh_model` recomputes them from θ.
    """

    def __init__(self, params: ModelParams, flat: FlatParams, scale):
        self.params, self.flat = params, flat
        self.scale = np.asarray(scale, dtype=np.float64).reshape(params.ntypes)
        if not np.all(np.isfinite(self.scale)) or not np.all(self.scale > 0):
            raise ValueError(f"first-layer scales must be positive and finite, got {self.scale}")
        self.slots = [flat.fitting[t][0] for t in range(params.ntypes)]
        for net in params.fitting.nets:
            net.layers[0].w = np.array(net.layers[0].w)  # W0 is no longer a view of θ

    @staticmethod
    def scales(D: dict[int, np.ndarray], ntypes: int, k: float = FIRST_LAYER_K) -> np.ndarray:
        """c_t = k · RMS of the descriptor rows D[t] (n, M*M<); 1 for a type without rows."""
        out = np.ones(ntypes)
        for t in range(ntypes):
            rows = D.get(t)
            rms = float(np.sqrt(np.mean(rows * rows))) if rows is not None and rows.size else 0.0
            if rms > 0:
                out[t] = rms * k
        return out

    def adopt_model_as_drawn(self) -> None:
        """A new run: the model's random first-layer W0 becomes W' (drawn like every weight
        matrix), and the model's W0 = W' / c_t."""
        for t, net in enumerate(self.params.fitting.nets):
            Wp = self.slots[t].views(self.flat.theta)[0]
            Wp[:] = net.layers[0].w
        self.refresh_model()

    def adopt_model_unchanged(self) -> None:
        """A trained model (--init-model): W' = c_t W0.  The model's W0 stays exactly as given
        until the first update (W' / c_t would differ from it by one rounding)."""
        for t, net in enumerate(self.params.fitting.nets):
            Wp = self.slots[t].views(self.flat.theta)[0]
            np.multiply(net.layers[0].w, self.scale[t], out=Wp)

    def refresh_model(self) -> None:
        """The model's W0 = W' / c_t from θ (after every optimiser update and on restart)."""
        for t, net in enumerate(self.params.fitting.nets):
            Wp = self.slots[t].views(self.flat.theta)[0]
            np.multiply(Wp, 1.0 / self.scale[t], out=net.layers[0].w)

    def map_gradient_row(self, row: np.ndarray) -> None:
        """In place on one gradient row (θ's layout): ∂L/∂W0 → ∂L/∂W' = ∂L/∂W0 / c_t."""
        for t in range(self.params.ntypes):
            gW = self.slots[t].views(row)[0]
            gW *= 1.0 / self.scale[t]
