"""Learning-rate schedule and loss prefactors tied to it (reference §7.1, §7.2)."""
from __future__ import annotations

from dataclasses import dataclass

from .loss import Prefactors


def effective_decay_steps(decay_steps: int, numb_steps: int) -> int:
    """DeePMD-kit's reset rule: a decay_steps >= numb_steps becomes 100 when numb_steps // 10 > 100,
    else numb_steps // 100 + 1."""
    if decay_steps < numb_steps:
        return decay_steps
    return 100 if numb_steps // 10 > 100 else numb_steps // 100 + 1


@dataclass(frozen=True)
class ExpDecay:
    """lr(t) = max(start_lr · rate^⌊t / decay_steps⌋, stop_lr),
    rate = (stop_lr / start_lr)^(decay_steps / numb_steps)."""

    start_lr: float
    stop_lr: float
    decay_steps: int
    numb_steps: int

    @classmethod
    def create(cls, start_lr: float, stop_lr: float, decay_steps: int, numb_steps: int) -> "ExpDecay":
        return cls(start_lr, stop_lr, effective_decay_steps(decay_steps, numb_steps), numb_steps)

    @property
    def decay_rate(self) -> float:
        return (self.stop_lr / self.start_lr) ** (self.decay_steps / self.numb_steps)

    def lr(self, step: int) -> float:
        return max(self.start_lr * self.decay_rate ** (step // self.decay_steps), self.stop_lr)


@dataclass(frozen=True)
class PrefactorSchedule:
    """p(t) = limit + (start - limit) · lr(t) / lr(0) for energy, force and virial.

    A term is active only when both its start and limit prefactors are non-zero (DeePMD-kit).
    """

    start_e: float
    limit_e: float
    start_f: float
    limit_f: float
    start_v: float
    limit_v: float

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

    def at(self, lr: float, lr0: float) -> Prefactors:
        x = lr / lr0

        def p(start, limit, on):
            return limit + (start - limit) * x if on else 0.0

        return Prefactors(p(self.start_e, self.limit_e, self.has_e),
                          p(self.start_f, self.limit_f, self.has_f),
                          p(self.start_v, self.limit_v, self.has_v))
