"""Adam optimiser over the flat parameter vector (reference §7.3, PyTorch form)."""
from __future__ import annotations

import numpy as np

from ..kernels.cpu.train import adam_update


class Adam:
    """Adam with β1, β2, ε and no weight decay; `t` counts the updates done so far.

    m, v: first and second moment estimates, same shape as θ.
    """

    def __init__(self, size: int, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m = np.zeros(size)
        self.v = np.zeros(size)
        self.t = 0

    def step(self, theta: np.ndarray, grads: np.ndarray, lr: float, split=None,
             segments=None) -> None:
        """θ ← θ - lr · m̂ / (√v̂ + ε) in place.

        grads: (n,) gradient, or (k, n) rows whose sum is the gradient (per-worker accumulators).
        split: optional split(fn, n) that calls fn(lo, hi) over ranges covering 0..n (threads).
        segments: optional [(start, stop, j)] covering 0..n: entries start..stop-1 are the sum
        of the first j rows alone (`ModelPasses.segments`); by default every row counts.
        """
        g2 = grads.reshape(1, -1) if grads.ndim == 1 else grads
        t = self.t + 1
        bc1 = 1.0 - self.beta1 ** t
        bc2 = 1.0 - self.beta2 ** t
        args = (lr, self.beta1, self.beta2, self.eps, bc1, bc2)
        segs = segments if segments is not None else [(0, theta.shape[0], g2.shape[0])]

        def update(lo, hi):
            for a, b, j in segs:
                a, b = max(a, lo), min(b, hi)
                if a < b:
                    adam_update(theta, g2[:j], self.m, self.v, a, b, *args)

        if split is None:
            update(0, theta.shape[0])
        else:
            split(update, theta.shape[0])
        self.t = t
