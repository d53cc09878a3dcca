"""Adam optimiser over the flat parameter vector (reference §7.3, PyTorch form)."""
from __future__ import annotations

import math

import numpy as np

from ..kernels.cpu.train import adam_update, grad_absmax, grad_sumsq


class Adam:
    """Adam (PyTorch's Adam, or AdamW with `decoupled`) with β1, β2, ε and a weight decay;
    `t` counts the updates done so far.

    weight_decay: Adam adds weight_decay·θ to the gradient (an L2 penalty); AdamW scales θ by
    1 - lr·weight_decay before the update.  m, v: first and second moment estimates, same
    shape as θ.  frozen: (start, stop) ranges of θ that no update touches (DeePMD-kit's
    `trainable` false; their m and v stay zero).
    """

    def __init__(self, size: int, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.0, decoupled: bool = False, frozen=()):
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.weight_decay, self.decoupled = weight_decay, decoupled
        self.frozen = list(frozen)
        self.m = np.zeros(size)
        self.v = np.zeros(size)
        self.t = 0

    def _args(self, lr: float) -> tuple:
        """adam_update's (lr, β1, β2, ε, bc1, bc2, l2, shrink) for the next update (t + 1)."""
        t = self.t + 1
        wd = self.weight_decay
        l2, shrink = (0.0, 1.0 - lr * wd) if self.decoupled else (wd, 1.0)
        return (lr, self.beta1, self.beta2, self.eps, 1.0 - self.beta1 ** t, 1.0 - self.beta2 ** t,
                l2, shrink)

    def row_update(self, theta: np.ndarray, grads: np.ndarray, lr: float):
        """update(lo, hi, j=1): the next update (as `step` will make it) of entries lo..hi-1
        whose gradient is the sum of the first j rows of grads (k, n), made ahead of `step`
        (which is then told to skip them); any thread may call it, on disjoint ranges."""
        args = self._args(lr)
        g2 = grads.reshape(1, -1) if grads.ndim == 1 else grads

        def update(lo: int, hi: int, j: int = 1) -> None:
            for a, b, _ in without_ranges([(lo, hi, j)], self.frozen):
                adam_update(theta, g2[:j], self.m, self.v, a, b, *args)
        return update

    def step(self, theta: np.ndarray, grads: np.ndarray, lr: float, split=None,
             segments=None, skip=(), scale: float = 1.0) -> None:
        """θ ← θ - lr · m̂ / (√v̂ + ε) in place (with the weight decay, class docstring).

        grads: (n,) gradient, or (k, n) rows whose sum is the gradient (per-worker accumulators).
        split: optional split(fn, n) that calls fn(lo, hi) over ranges covering 0..n (threads).
        segments: optional [(start, stop, j)] covering 0..n: entries start..stop-1 are the sum
        of the first j rows alone (`ModelPasses.segments`); by default every row counts.
        skip: (start, stop) ranges already updated by a `row_update` of this step.
        scale: the gradient's factor (`clip_scale`), applied to the summed gradient before the
        weight decay's L2 term, as PyTorch clips p.grad before the optimiser adds it; 1 is
        the update without clipping, bit for bit.
        """
        g2 = grads.reshape(1, -1) if grads.ndim == 1 else grads
        args = self._args(lr) + (scale,)
        segs = segments if segments is not None else [(0, theta.shape[0], g2.shape[0])]
        skip = list(skip) + self.frozen
        if skip:
            segs = without_ranges(segs, skip)
            if sum(b - a for a, b, _ in segs) < SERIAL_ENTRIES:
                split = None  # a few thousand entries: not worth waking the threads

        def update(lo, hi):
            for a, b, j in segs:
                a, b = max(a, lo), min(b, hi)
                if a < b:
                    adam_update(theta, g2[:j], self.m, self.v, a, b, *args)

        if split is None:
            update(0, theta.shape[0])
        else:
            split(update, theta.shape[0])
        self.t += 1


CLIP_EPS = 1e-6
"""PyTorch's clip_grad_norm_ guard: the factor is max_norm / (‖g‖ + 1e-6)."""


def grad_norm(grads: np.ndarray, segments=None) -> float:
    """‖g‖₂ of the gradient g whose entries start..stop-1 are the sum of the first j rows of
    grads (k, n) for each (start, stop, j) of `segments` (`Adam.step`'s meaning; default: every
    row counts); inf or nan when an entry is.  A finite gradient whose sum of squares overflows
    is measured again in units of its largest entry (DeePMD-kit's stable norm does the same)."""
    g2 = grads.reshape(1, -1) if grads.ndim == 1 else grads
    segs = segments if segments is not None else [(0, g2.shape[1], g2.shape[0])]
    total = sum(grad_sumsq(g2[:j], a, b, 1.0) for a, b, j in segs)
    if math.isinf(total):  # an infinite entry, or finite ones whose squares overflow
        amax = max(grad_absmax(g2[:j], a, b) for a, b, j in segs)
        if math.isfinite(amax):
            return amax * math.sqrt(sum(grad_sumsq(g2[:j], a, b, 1.0 / amax) for a, b, j in segs))
    return math.sqrt(total)


def clip_scale(norm: float, max_norm: float) -> float:
    """torch.nn.utils.clip_grad_norm_'s factor min(1, max_norm / (norm + 1e-6)) of a gradient
    of 2-norm `norm` (finite) for [training] gradient_max_norm = max_norm > 0."""
    return min(1.0, max_norm / (norm + CLIP_EPS))


SERIAL_ENTRIES = 65536
"""Below this many entries left to update, `step` runs in the calling thread."""


def without_ranges(segs, skip):
    """segments [(a, b, j)] minus the (start, stop) ranges of skip."""
    out = []
    for a, b, j in segs:
        pieces = [(a, b)]
        for s0, s1 in skip:
            nxt = []
            for p0, p1 in pieces:
                if s1 <= p0 or s0 >= p1:
                    nxt.append((p0, p1))
                    continue
                if p0 < s0:
                    nxt.append((p0, s0))
                if s1 < p1:
                    nxt.append((s1, p1))
            pieces = nxt
        out += [(p0, p1, j) for p0, p1 in pieces]
    return out
