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


class LossStats:
    """Loss and squared errors accumulated over frames (and batches).

    loss(): mean over batches of the batch loss L; rmse_e: sqrt(mean_f (ΔE_f/N_f)²) eV/atom;
    rmse_f: sqrt(mean of ΔF²) eV/Å; rmse_v: sqrt(mean_f mean_ab (ΔΞ_fab/N_f)²) eV/atom.
    A metric is nan when no frame had its label.
    """

    def __init__(self):
        self.loss_sum = 0.0
        self.nbatch = 0
        self.e_sq = 0.0
        self.e_n = 0
        self.f_sq = 0.0
        self.f_n = 0
        self.v_sq = 0.0
        self.v_n = 0

    def add_frame(self, result: PrimalResult, labels: Labels, pref: Prefactors, nframes: int) -> Seeds:
        """Add one frame of a batch of `nframes`; return its gradient seeds."""
        n = result.forces.shape[0]
        scale = 1.0 / (n * nframes)
        seeds = Seeds(0.0, np.zeros((n, 3)), np.zeros((3, 3)), 0.0, 0.0)
        if labels.energy is not None:
            de = result.energy - labels.energy
            self.e_sq += (de / n) ** 2
            self.e_n += 1
            if pref.e:
                self.loss_sum += pref.e * de * de * scale
                seeds.c_e = 2.0 * pref.e * de * scale
        if labels.forces is not None:
            df = result.forces - labels.forces
            sq = float(np.einsum("ij,ij->", df, df))
            self.f_sq += sq
            self.f_n += df.size
            if pref.f:
                self.loss_sum += pref.f * sq * scale / 3.0
                seeds.u = df
                seeds.c_f = 2.0 * pref.f * scale / 3.0
        if labels.virial is not None:
            dv = result.virial - labels.virial
            sq = float(np.einsum("ij,ij->", dv, dv))
            self.v_sq += sq / (n * n * 9.0)
            self.v_n += 1
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

    @property
    def rmse_e(self) -> float:
        return math.sqrt(self.e_sq / self.e_n) if self.e_n else math.nan

    @property
    def rmse_f(self) -> float:
        return math.sqrt(self.f_sq / self.f_n) if self.f_n else math.nan

    @property
    def rmse_v(self) -> float:
        return math.sqrt(self.v_sq / self.v_n) if self.v_n else math.nan
