"""Model errors against labelled frames: the one RMSE accumulator (`numdp test`, lcurve.out).

For frames f of N_f atoms, with Δ = prediction - label:

    rmse_e = sqrt(mean_f (ΔE_f / N_f)²)                      eV/atom
    rmse_f = sqrt(mean over all force components ΔF²)        eV/Å
    rmse_v = sqrt(mean_f mean_ab (ΔΞ_fab / N_f)²)            eV/atom

as DeePMD-kit's `dp test` weights them (frames of different sizes: energy and virial per frame,
forces per component); the MAEs (mean absolute errors) weight |Δ| the same way.  A metric is nan
when no frame had its label.
"""
from __future__ import annotations

import math

import numpy as np


def root_mean(sq: float, n: int) -> float:
    """√(sq / n): the RMS of n terms whose squares sum to sq; nan for none."""
    return math.sqrt(sq / n) if n else math.nan


def mean(total: float, n: int) -> float:
    """total / n: the mean of n terms summing to total; nan for none."""
    return total / n if n else math.nan


class ErrorSums:
    """Sums of squared and of absolute errors and their counts; `merge` pools two accumulators.

    e_sq, e_n: Σ_f (ΔE_f/N_f)² (eV²/atom²) over e_n frames; f_sq, f_n: Σ ΔF² (eV²/Å²) over f_n
    force components; v_sq, v_n: Σ_f Σ_ab ΔΞ_fab² / (9 N_f²) (eV²/atom²) over v_n frames;
    e_abs, f_abs, v_abs: the same sums of |Δ| (eV/atom, eV/Å, eV/atom).
    """

    def __init__(self):
        self.e_sq = 0.0
        self.e_n = 0
        self.f_sq = 0.0
        self.f_n = 0
        self.v_sq = 0.0
        self.v_n = 0
        self.e_abs = 0.0
        self.f_abs = 0.0
        self.v_abs = 0.0

    def add_energy(self, de: float, natoms: int) -> None:
        """One frame's energy error ΔE (eV) for `natoms` atoms."""
        self.e_sq += (de / natoms) ** 2
        self.e_abs += abs(de / natoms)
        self.e_n += 1

    def add_forces(self, df: np.ndarray) -> float:
        """One frame's force errors ΔF (N, 3) eV/Å; returns Σ ΔF² (the loss uses it)."""
        sq = float(np.einsum("ij,ij->", df, df))
        self.f_sq += sq
        self.f_abs += float(np.abs(df).sum())
        self.f_n += df.size
        return sq

    def add_virial(self, dv: np.ndarray, natoms: int) -> float:
        """One frame's virial error ΔΞ (3, 3) eV for `natoms` atoms; returns Σ ΔΞ² (eV²)."""
        sq = float(np.einsum("ij,ij->", dv, dv))
        self.v_sq += sq / (natoms * natoms * 9.0)
        self.v_abs += float(np.abs(dv).sum()) / (natoms * 9.0)
        self.v_n += 1
        return sq

    def merge(self, other: "ErrorSums") -> None:
        """Pool `other`'s frames into these sums."""
        self.e_sq += other.e_sq
        self.e_n += other.e_n
        self.f_sq += other.f_sq
        self.f_n += other.f_n
        self.v_sq += other.v_sq
        self.v_n += other.v_n
        self.e_abs += other.e_abs
        self.f_abs += other.f_abs
        self.v_abs += other.v_abs

    @property
    def rmse_e(self) -> float:
        return root_mean(self.e_sq, self.e_n)

    @property
    def rmse_f(self) -> float:
        return root_mean(self.f_sq, self.f_n)

    @property
    def rmse_v(self) -> float:
        return root_mean(self.v_sq, self.v_n)

    @property
    def mae_e(self) -> float:
        return mean(self.e_abs, self.e_n)

    @property
    def mae_f(self) -> float:
        return mean(self.f_abs, self.f_n)

    @property
    def mae_v(self) -> float:
        return mean(self.v_abs, self.v_n)
