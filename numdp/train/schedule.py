"""Learning-rate schedules and the loss prefactors tied to them (reference §7.1, §7.2).

DeePMD-kit 3.2's schedules: an optional linear warmup, then an exponential ("exp", stepped or
smooth), cosine or warmup-stable-decay ("wsd") decay from start_lr to stop_lr over the steps
left.  The loss prefactors follow lr(t) / start_lr, start_lr being the rate at the end of the
warmup (so during a warmup from 0 they start at their limit values, as in DeePMD-kit).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from .loss import Prefactors


class LRType(Enum):
    """`[learning_rate] type`: the decay after the warmup (DeePMD-kit 3.2's schedules)."""

    EXP = "exp"
    COSINE = "cosine"
    WSD = "wsd"


class WSDRule(Enum):
    """`[learning_rate] decay_type` of a "wsd" schedule: the curve of its decay phase."""

    INVERSE_LINEAR = "inverse_linear"
    COSINE = "cosine"
    LINEAR = "linear"


def effective_decay_steps(decay_steps: int, numb_steps: int) -> int:
    """DeePMD-kit's reset rule: a decay_steps >= numb_steps becomes 100 when numb_steps // 10 > 100,
    else numb_steps // 100 + 1 (numb_steps: the steps of the decay phase, after any warmup)."""
    if decay_steps < numb_steps:
        return decay_steps
    return 100 if numb_steps // 10 > 100 else numb_steps // 100 + 1


class Decay(Protocol):
    """The learning rate of the decay phase, t steps after its start (t >= 0)."""

    start_lr: float
    stop_lr: float

    def lr(self, t: int) -> float: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class ExpDecay:
    """lr(t) = max(start_lr · rate^k, stop_lr), k = ⌊t / decay_steps⌋ (t / decay_steps when
    `smooth`), rate = (stop_lr / start_lr)^(decay_steps / numb_steps) unless given (`rate`).

    numb_steps: the steps of the decay phase (the run's steps less the warmup)."""

    start_lr: float
    stop_lr: float
    decay_steps: int
    numb_steps: int
    rate: float | None = None
    smooth: bool = False

    @classmethod
    def create(cls, start_lr: float, stop_lr: float, decay_steps: int, numb_steps: int,
               rate: float | None = None, smooth: bool = False) -> "ExpDecay":
        """With DeePMD-kit's reset of a decay_steps >= numb_steps (only when no rate is given)."""
        if rate is None:
            decay_steps = effective_decay_steps(decay_steps, numb_steps)
        return cls(start_lr, stop_lr, decay_steps, numb_steps, rate, smooth)

    @property
    def decay_rate(self) -> float:
        if self.rate is not None:
            return self.rate
        if self.numb_steps == 0:
            return 1.0
        # DeePMD-kit floors the target at 1e-10 here (the clip below still uses stop_lr)
        return (max(self.stop_lr, 1e-10) / self.start_lr) ** (self.decay_steps / self.numb_steps)

    def lr(self, t: int) -> float:
        k = t / self.decay_steps if self.smooth else t // self.decay_steps
        return max(self.start_lr * self.decay_rate ** k, self.stop_lr)

    def describe(self) -> str:
        how = "continuously" if self.smooth else "every"
        return f"exp, decay {how} {self.decay_steps} steps by {self.decay_rate:.6f}"


@dataclass(frozen=True)
class CosineDecay:
    """lr(t) = stop_lr + (start_lr − stop_lr)·(1 + cos(π t / numb_steps)) / 2, stop_lr from
    t = numb_steps on (written as DeePMD-kit writes it: start_lr·(α + (1 − α)(1 + cos)/2),
    α = stop_lr / start_lr)."""

    start_lr: float
    stop_lr: float
    numb_steps: int

    def lr(self, t: int) -> float:
        if self.numb_steps == 0:
            return self.start_lr
        if t >= self.numb_steps:
            return self.stop_lr
        a = self.stop_lr / self.start_lr
        return self.start_lr * (a + 0.5 * (1.0 - a) * (1.0 + math.cos(math.pi * (t / self.numb_steps))))

    def describe(self) -> str:
        return f"cosine over {self.numb_steps} steps"


@dataclass(frozen=True)
class WSDDecay:
    """Warmup-stable-decay: start_lr for the first numb_steps − decay_steps steps, then from
    start_lr to stop_lr along `rule` over decay_steps steps (τ = the fraction of them done):
    inverse_linear 1 / (τ / stop_lr + (1 − τ) / start_lr), cosine stop_lr + (start_lr −
    stop_lr)(1 + cos πτ) / 2, linear start_lr + (stop_lr − start_lr) τ; stop_lr from t =
    numb_steps on.  decay_steps = max(1, min(⌊decay_phase_ratio · run steps⌋, numb_steps))."""

    start_lr: float
    stop_lr: float
    numb_steps: int
    decay_steps: int
    rule: WSDRule

    @classmethod
    def create(cls, start_lr: float, stop_lr: float, numb_steps: int, run_steps: int,
               decay_phase_ratio: float, rule: WSDRule) -> "WSDDecay":
        """numb_steps: the decay phase's steps (after the warmup); run_steps: the run's steps,
        of which the decay phase takes the fraction `decay_phase_ratio`."""
        steps = max(1, min(int(decay_phase_ratio * run_steps), numb_steps))
        return cls(start_lr, stop_lr, numb_steps, steps, rule)

    def lr(self, t: int) -> float:
        if t >= self.numb_steps:
            return self.stop_lr
        stable = self.numb_steps - self.decay_steps
        if t < stable:
            return self.start_lr
        tau = min(max((t - stable) / self.decay_steps, 0.0), 1.0)
        lo, hi = self.stop_lr, self.start_lr
        if self.rule is WSDRule.INVERSE_LINEAR:
            return 1.0 / (tau / lo + (1.0 - tau) / hi)
        if self.rule is WSDRule.COSINE:
            return lo + (hi - lo) * 0.5 * (1.0 + math.cos(math.pi * tau))
        return hi + (lo - hi) * tau

    def describe(self) -> str:
        return (f"wsd, stable {self.numb_steps - self.decay_steps} steps, "
                f"{self.rule.value} decay over {self.decay_steps}")


@dataclass(frozen=True)
class Schedule:
    """The learning rate of step t of a run: a linear warmup from warmup_start_lr to the decay's
    start_lr over warmup_steps steps, then `decay` (its t counted from the warmup's end).

    lr(t) = warmup_start_lr + (start_lr − warmup_start_lr)·t / warmup_steps for t < warmup_steps,
    else decay.lr(t − warmup_steps) (DeePMD-kit 3.2's schedules with their warmup)."""

    decay: Decay
    warmup_steps: int = 0
    warmup_start_lr: float = 0.0

    @property
    def start_lr(self) -> float:
        """The learning rate at the end of the warmup: the loss prefactors' reference."""
        return self.decay.start_lr

    @property
    def stop_lr(self) -> float:
        return self.decay.stop_lr

    def lr(self, step: int) -> float:
        if step < self.warmup_steps:
            w0 = self.warmup_start_lr
            return w0 + (self.decay.start_lr - w0) * (step / self.warmup_steps)
        return self.decay.lr(step - self.warmup_steps)

    def describe(self) -> str:
        """One line for the run's log: the rates, the warmup, the decay."""
        warm = (f", warmup {self.warmup_steps} steps from {self.warmup_start_lr:.3g}"
                if self.warmup_steps else "")
        return f"lr {self.start_lr:.3g} -> {self.stop_lr:.3g}{warm}, {self.decay.describe()}"


@dataclass(frozen=True)
class PrefactorSchedule:
    """p(t) = limit + (start - limit) · lr(t) / lr(0) for energy, force, virial, atomic energy
    and weighted force.

    A term is active only when both its start and limit prefactors are non-zero (DeePMD-kit).
    """

    start_e: float
    limit_e: float
    start_f: float
    limit_f: float
    start_v: float
    limit_v: float
    start_ae: float = 0.0
    limit_ae: float = 0.0
    start_pf: float = 0.0
    limit_pf: float = 0.0

    @staticmethod
    def _active(start: float, limit: float) -> bool:
        return start != 0.0 and limit != 0.0

    @property
    def has_e(self) -> bool:
        return self._active(self.start_e, self.limit_e)

    @property
    def has_f(self) -> bool:
        return self._active(self.start_f, self.limit_f)

    @property
    def has_v(self) -> bool:
        return self._active(self.start_v, self.limit_v)

    @property
    def has_ae(self) -> bool:
        return self._active(self.start_ae, self.limit_ae)

    @property
    def has_pf(self) -> bool:
        return self._active(self.start_pf, self.limit_pf)

    def at(self, lr: float, lr0: float) -> Prefactors:
        x = lr / lr0

        def p(start, limit, on):
            return limit + (start - limit) * x if on else 0.0

        return Prefactors(p(self.start_e, self.limit_e, self.has_e),
                          p(self.start_f, self.limit_f, self.has_f),
                          p(self.start_v, self.limit_v, self.has_v),
                          p(self.start_ae, self.limit_ae, self.has_ae),
                          p(self.start_pf, self.limit_pf, self.has_pf))
