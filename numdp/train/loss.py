"""Energy/force/virial loss, its seeds for the gradient pass, and RMSE metrics (reference §7.1).

For a batch of n_f frames of N atoms:

    L = Σ_f [ p_e ΔE_f² / N + p_f Σ_kα ΔF_fkα² / (3N) + p_v Σ_ab ΔΞ_fab² / (9N) ] / n_f

(ΔX = prediction - label; energy and virial scaled by 1/N, DeePMD-kit's default).  A term whose
label is missing from the system contributes nothing.  Seeds (reference §7.6):
c_E = 2 p_e ΔE/(N n_f) for every atom, u = ΔF, c_F = 2 p_f/(3N n_f), ε = ΔΞ, c_V = 2 p_v/(9N n_f).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..model.metrics import ErrorSums
from .passes import PrimalResult


@dataclass
class Prefactors:
    """Loss prefactors at one step: energy, force, virial (dimensionless)."""

    e: float
    f: float
    v: float


@dataclass
class Labels:
    """Labels of one frame: energy eV, forces (N, 3) eV/Å, virial (3, 3) eV; None when absent."""

    energy: float | None
    forces: np.ndarray | None
    virial: np.ndarray | None


@dataclass
class Seeds:
    """Gradient seeds of one frame (see the module docstring)."""

    c_e: float
    u: np.ndarray
    eps: np.ndarray
    c_f: float
    c_v: float


class LossStats(ErrorSums):
    """Loss and squared errors accumulated over frames (and batches).

    loss(): mean over batches of the batch loss L; rmse_e, rmse_f, rmse_v: the RMSEs of
    numdp.model.metrics.ErrorSums (energy eV/atom, force eV/Å, virial eV/atom; nan when no frame
    had its label).
    """

    def __init__(self):
        super().__init__()
        self.loss_sum = 0.0
        self.nbatch = 0

    def add_frame(self, result: PrimalResult, labels: Labels, pref: Prefactors, nframes: int) -> Seeds:
        """Add one frame of a batch of `nframes`; return its gradient seeds."""
        n = result.forces.shape[0]
        scale = 1.0 / (n * nframes)
        seeds = Seeds(0.0, np.zeros((n, 3)), np.zeros((3, 3)), 0.0, 0.0)
        if labels.energy is not None:
            de = result.energy - labels.energy
            self.add_energy(de, n)
            if pref.e:
                self.loss_sum += pref.e * de * de * scale
                seeds.c_e = 2.0 * pref.e * de * scale
        if labels.forces is not None:
            df = result.forces - labels.forces
            sq = self.add_forces(df)
            if pref.f:
                self.loss_sum += pref.f * sq * scale / 3.0
                seeds.u = df
                seeds.c_f = 2.0 * pref.f * scale / 3.0
        if labels.virial is not None:
            dv = result.virial - labels.virial
            sq = self.add_virial(dv, n)
            if pref.v:
                self.loss_sum += pref.v * sq * scale / 9.0
                seeds.eps = dv
                seeds.c_v = 2.0 * pref.v * scale / 9.0
        return seeds

    def end_batch(self) -> None:
        self.nbatch += 1

    def loss(self) -> float:
        return self.loss_sum / max(self.nbatch, 1)

    def rmse(self) -> float:
        """Square root of the mean batch loss (lcurve's rmse_val / rmse_trn)."""
        return math.sqrt(self.loss())
