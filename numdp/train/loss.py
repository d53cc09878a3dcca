"""The energy loss of DeePMD-kit 3.2 (`loss` type "ener"), its seeds for the gradient pass, and
RMSE metrics (reference §7.1).

For a batch of n_f frames f of N_f atoms each, N_b = Σ_f N_f (ΔX = prediction − label):

    L =   p_e  Σ_f ΔE_f² / N_f^k / n_f                         energy, eV² / N^k
        + p_f  Σ_f Σ_kα (ΔF_fkα s_fk)² / (3 N_b)              force, (eV/Å)² [relative: 1]
        + p_v  Σ_f Σ_ab ΔΞ_fab² / (9 N_f^k) / n_f              virial, eV² / N^k
        + p_ae Σ_f Σ_k Δe_fk² / N_b                            atomic energy, eV²
        + p_pf Σ_f Σ_kα w_fk (ΔF_fkα s_fk)² / (3 N_b)          weighted force (atom_pref w)

- the energy and virial terms are means over the frames of per-frame figures, the per-atom terms
  (force, atomic energy, weighted force) means over all the batch's atoms (components) pooled:
  DeePMD-kit 3.2's masked reductions.  The two agree while every frame has N atoms (N_b = n_f N);
  they differ when the frames' counts do — a mixed-type system padded with virtual atoms (type
  -1), whose frames count their real atoms only, or atom_exclude_types in a mixed-type system;

- k = 1, or 2 with `intensive_ener_virial`;
- E_f = Σ_k e_fk, or Σ_k c_fk e_fk with `enable_atom_ener_coeff` (c: atom_ener_coeff.npy, 1
  where a system has none); e_fk: the atomic energies, energy bias included;
- s_fk = 1, or 1/(|F̂_fk| + relative_f) with `relative_f` (|F̂_fk| the label's norm, eV/Å);
- with `use_huber`, the squares of the energy, force, virial and atomic-energy terms become
  H_δ(r) = r²/2 for |r| ≤ δ, δ(|r| − δ/2) beyond, of r = ΔE/N (δ_e), ΔF (δ_f; or per atom of
  |ΔF_k| over N instead of 3N components with `f_use_norm`), ΔΞ/N (δ_v), Δe (δ_e), each term
  then divided by its count only (frames, 3N_b or N_b, 9, N_b) — DeePMD-kit's `custom_huber_loss`;
- with loss_func "mae" (`LossFunc.MAE`), every square x² becomes |x| and k = 1 always:
  p_e Σ_f |ΔE_f|/(N_f n_f) + p_f Σ_f Σ_kα |ΔF_fkα s_fk|/(3N_b) + p_v Σ_f Σ_ab |ΔΞ_fab|/(9N_f n_f)
  + p_ae Σ_f Σ_k |Δe_fk|/N_b + p_pf Σ_f Σ_kα w_fk |ΔF_fkα s_fk|/(3N_b); with `f_use_norm`
  the force term is p_f Σ_f Σ_k |ΔF_fk s_fk| / N_b (the norm of each atom's error) — DeePMD-kit's
  `loss_func = "mae"`, whose derivative at a zero residual is 0 (torch's sign(0)).

A term whose label is missing from the system contributes nothing (DeePMD-kit's find_* = 0;
the weighted force term also needs the system's atom_pref.npy unless `use_default_pf`, w = 1).
The prefactors p are those of the step (numdp.train.schedule.PrefactorSchedule).

Seeds (reference §7.6; what `ModelPasses.gradient` takes): c_E = ∂L/∂e_k — one number for
every atom when only the frame energy is fitted, else a vector (nloc,) —; u and c_F with
∂L/∂F = c_F u (u = ΔF, c_F = 2 p_f/(3 N_b) in the plain case); ε and c_V with
∂L/∂Ξ = c_V ε (ε = ΔΞ, c_V = 2 p_v/(9 N_f^k n_f) in the plain case).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

from ..model.metrics import ErrorSums, mean, root_mean

if TYPE_CHECKING:
    from .passes import PrimalResult


@dataclass
class Prefactors:
    """Loss prefactors at one step: energy, force, virial, atomic energy, weighted force
    (dimensionless; 0 = term off)."""

    e: float
    f: float
    v: float
    ae: float = 0.0
    pf: float = 0.0


@dataclass(frozen=True)
class HuberDeltas:
    """Huber thresholds δ of the energy (eV/atom; also the atomic energy's, eV), force (eV/Å)
    and virial (eV/atom) terms."""

    e: float
    f: float
    v: float


class LossFunc(Enum):
    """[loss] loss_func: squared errors (DeePMD-kit's default) or absolute errors."""

    MSE = "mse"
    MAE = "mae"


@dataclass(frozen=True)
class LossOptions:
    """The [loss] choices besides the prefactors (module docstring; DeePMD-kit's names).

    relative_f: the shift of s_k (eV/Å), None = absolute force errors; atom_ener_coeff:
    enable_atom_ener_coeff; use_default_pf: w = 1 for systems without atom_pref.npy;
    intensive: intensive_ener_virial (1/N² for the energy and virial terms); huber: the deltas
    with use_huber, None without; f_use_norm: Huber (or with MAE the absolute value) of the norm
    of each atom's force error; loss_func: squares or absolute values.
    """

    relative_f: float | None = None
    atom_ener_coeff: bool = False
    use_default_pf: bool = False
    intensive: bool = False
    huber: HuberDeltas | None = None
    f_use_norm: bool = False
    loss_func: LossFunc = LossFunc.MSE

    @property
    def mae(self) -> bool:
        return self.loss_func is LossFunc.MAE


PLAIN = LossOptions()


@dataclass
class Labels:
    """Labels of one frame, None when absent: energy eV, forces (N, 3) eV/Å, virial (3, 3) eV,
    atom_ener (N,) eV, atom_pref (N,) weights, atom_ener_coeff (N,) coefficients."""

    energy: float | None
    forces: np.ndarray | None
    virial: np.ndarray | None
    atom_ener: np.ndarray | None = None
    atom_pref: np.ndarray | None = None
    atom_ener_coeff: np.ndarray | None = None


@dataclass
class Seeds:
    """Gradient seeds of one frame (see the module docstring): c_e 1/eV (a number, or (N,)),
    u (N, 3), eps (3, 3), c_f, c_v."""

    c_e: float | np.ndarray
    u: np.ndarray
    eps: np.ndarray
    c_f: float
    c_v: float


def huber(r: np.ndarray, delta: float) -> tuple[float, np.ndarray]:
    """(Σ H_δ(r), H_δ'(r)) elementwise: H_δ(r) = r²/2 for |r| ≤ δ, else δ(|r| − δ/2)."""
    a = np.abs(r)
    inside = a <= delta
    value = np.where(inside, 0.5 * r * r, delta * (a - 0.5 * delta))
    return float(value.sum()), np.where(inside, r, delta * np.sign(r))


class LossStats(ErrorSums):
    """Loss and errors accumulated over frames (and batches), for the loss `options`.

    loss(): mean over batches of the batch loss L; rmse_e, rmse_f, rmse_v, mae_e, mae_f, mae_v:
    the errors of numdp.model.metrics.ErrorSums (energy eV/atom, force eV/Å — of the relative
    errors ΔF·s with relative_f, as DeePMD-kit shows them —, virial eV/atom; nan when no frame
    had its label); rmse_ae / mae_ae eV, rmse_pf / mae_pf: √(mean Δe²), mean |Δe| and √(mean
    w (ΔF s)²), mean w |ΔF s| over the atoms (components) of the frames of the active
    atomic-energy and weighted-force terms.  `shown(name)` gives lcurve.out's figures by
    DeePMD-kit's names.
    """

    def __init__(self, options: LossOptions = PLAIN):
        super().__init__()
        self.options = options
        self.loss_sum = 0.0
        self.nbatch = 0
        self.ae_sq = 0.0
        self.ae_abs = 0.0
        self.ae_n = 0
        self.pf_sq = 0.0
        self.pf_abs = 0.0
        self.pf_n = 0
        self.fnorm_abs = 0.0   # Σ |ΔF_k| over atoms (MAE with f_use_norm: DeePMD-kit's mae_f)
        self.fnorm_n = 0
        self.batch_atoms = 0   # the atoms of the frames added since the last end_batch (its weight)
        self._mark = self._sums()   # the sums at the last end_batch
        self._weighted: dict[str, float] = {}   # Σ_b (atoms of b) · figure of b, per figure name
        self._weight = 0

    def add_frame(self, result: PrimalResult, labels: Labels, pref: Prefactors, nframes: int,
                  included: np.ndarray | None = None, batch_atoms: int | None = None) -> Seeds:
        """Add one frame of a batch of `nframes`; return its gradient seeds.  included: (N,)
        bool, the atoms the loss sees (None: all).  DeePMD-kit 3.2 treats the atoms of a model's
        atom_exclude_types as absent from the loss (its per-atom mask): N is the count of the
        others, and the per-atom terms (forces, atomic energies, weights) run over them only; the
        excluded atoms' seeds are 0.  batch_atoms: N_b, the atoms the loss sees summed over the
        batch's frames, the per-atom terms' divisor (module docstring); None: every frame of the
        batch has this one's count, N_b = N · nframes."""
        if included is not None and not included.all():
            def rows(a):
                return None if a is None else a[included]

            sub = self.add_frame(dataclasses.replace(result, forces=result.forces[included],
                                                     atom_energy=result.atom_energy[included]),
                                 dataclasses.replace(labels, forces=rows(labels.forces), atom_ener=rows(labels.atom_ener),
                                                     atom_pref=rows(labels.atom_pref),
                                                     atom_ener_coeff=rows(labels.atom_ener_coeff)),
                                 pref, nframes, batch_atoms=batch_atoms)
            u = np.zeros(result.forces.shape)
            u[included] = sub.u
            sub.u = u
            if isinstance(sub.c_e, np.ndarray):
                c = np.zeros(result.forces.shape[0])
                c[included] = sub.c_e
                sub.c_e = c
            # every atom weighs (`end_batch`), the excluded ones too: the call above counted the others
            self.batch_atoms += int(result.forces.shape[0] - np.count_nonzero(included))
            return sub
        self.batch_atoms += result.forces.shape[0]
        opt = self.options
        n = result.forces.shape[0]
        scale = 1.0 / (n * nframes)   # the per-frame terms' 1/(N_f n_f)
        atom_scale = 1.0 / (n * nframes if batch_atoms is None else batch_atoms)   # per-atom: 1/N_b
        seeds = Seeds(0.0, np.zeros((n, 3)), np.zeros((3, 3)), 0.0, 0.0)
        norm_ev = n if not opt.intensive else n * n   # N^k of the energy and virial terms
        if labels.energy is not None:
            coeff = labels.atom_ener_coeff if opt.atom_ener_coeff else None
            energy = result.energy if coeff is None else float(coeff @ result.atom_energy)
            de = energy - labels.energy
            self.add_energy(de, n)
            if pref.e:
                if opt.mae:
                    self.loss_sum += pref.e * abs(de) * scale
                    c = pref.e * float(np.sign(de)) * scale
                elif opt.huber is None:
                    self.loss_sum += pref.e * de * de / (norm_ev * nframes)
                    c = 2.0 * pref.e * de / (norm_ev * nframes)
                else:
                    h, dh = huber(np.array(de / n), opt.huber.e)
                    self.loss_sum += pref.e * h / nframes
                    c = pref.e * float(dh) * scale
                seeds.c_e = c if coeff is None else c * coeff
        if pref.ae and labels.atom_ener is not None:
            dae = result.atom_energy - labels.atom_ener
            sq = float(dae @ dae)
            ab = float(np.abs(dae).sum())
            self.ae_sq += sq
            self.ae_abs += ab
            self.ae_n += n
            if opt.mae:
                self.loss_sum += pref.ae * ab * atom_scale
                c_ae = pref.ae * atom_scale * np.sign(dae)
            elif opt.huber is None:
                self.loss_sum += pref.ae * sq * atom_scale
                c_ae = 2.0 * pref.ae * atom_scale * dae
            else:
                h, dh = huber(dae, opt.huber.e)
                self.loss_sum += pref.ae * h * atom_scale
                c_ae = pref.ae * atom_scale * dh
            seeds.c_e = seeds.c_e + c_ae
        if labels.forces is not None:
            self._forces(result, labels, pref, atom_scale, seeds)
        if labels.virial is not None:
            dv = result.virial - labels.virial
            sq = self.add_virial(dv, n)
            if pref.v:
                if opt.mae:
                    self.loss_sum += pref.v * float(np.abs(dv).sum()) * scale / 9.0
                    seeds.eps = np.sign(dv)
                    seeds.c_v = pref.v * scale / 9.0
                elif opt.huber is None:
                    self.loss_sum += pref.v * sq / (9.0 * norm_ev * nframes)
                    seeds.eps = dv
                    seeds.c_v = 2.0 * pref.v / (9.0 * norm_ev * nframes)
                else:
                    h, dh = huber(dv / n, opt.huber.v)
                    self.loss_sum += pref.v * h / (9.0 * nframes)
                    seeds.eps = dh
                    seeds.c_v = pref.v * scale / 9.0
        return seeds

    def _forces(self, result: PrimalResult, labels: Labels, pref: Prefactors, scale: float,
                seeds: Seeds) -> None:
        """The force and weighted-force terms of one frame (`add_frame`); scale: 1/N_b (1/atom)."""
        opt = self.options
        n = result.forces.shape[0]
        df = result.forces - labels.forces
        weighted = pref.pf and (labels.atom_pref is not None or opt.use_default_pf)
        norm_mae = opt.mae and opt.f_use_norm
        s = (1.0 if opt.relative_f is None else
             1.0 / (np.sqrt(np.einsum("ij,ij->i", labels.forces, labels.forces)) + opt.relative_f))
        r = df * (s[:, None] if opt.relative_f is not None else 1.0)
        if norm_mae:   # |ΔF_k s_k| per atom, and r_k/|r_k| (0 for a zero error: torch's norm' at 0)
            a = np.sqrt(np.einsum("ij,ij->i", r, r))
            unit = r * np.divide(1.0, a, out=np.zeros(n), where=a > 0.0)[:, None]
            self.fnorm_abs += float(a.sum())
            self.fnorm_n += n
        if opt.relative_f is None and not weighted:   # the plain path
            sq = self.add_forces(df)
            if pref.f:
                if norm_mae:
                    self.loss_sum += pref.f * float(a.sum()) * scale
                    seeds.u = unit
                    seeds.c_f = pref.f * scale
                elif opt.mae:
                    self.loss_sum += pref.f * float(np.abs(df).sum()) * scale / 3.0
                    seeds.u = np.sign(df)
                    seeds.c_f = pref.f * scale / 3.0
                elif opt.huber is None:
                    self.loss_sum += pref.f * sq * scale / 3.0
                    seeds.u = df
                    seeds.c_f = 2.0 * pref.f * scale / 3.0
                elif not opt.f_use_norm:
                    h, dh = huber(df, opt.huber.f)
                    self.loss_sum += pref.f * h * scale / 3.0
                    seeds.u = dh
                    seeds.c_f = pref.f * scale / 3.0
                else:
                    a = np.sqrt(np.einsum("ij,ij->i", df, df))
                    h, dh = huber(a, opt.huber.f)
                    self.loss_sum += pref.f * h * scale
                    seeds.u = df * np.divide(dh, a, out=np.zeros(n), where=a > 0.0)[:, None]
                    seeds.c_f = pref.f * scale
            return
        # MSE: ∂L/∂F_kα = (2/(3N_b)) (p_f + p_pf w_k) s_k² ΔF_kα, the (N,) factor on ΔF is `g`;
        # MAE: ∂L/∂F_kα = (1/(3N_b)) (p_f + p_pf w_k) s_k sign(ΔF_kα) (p_f's part 3 p_f s_k r_k/|r_k|
        # with f_use_norm, r_k = ΔF_k s_k: DeePMD-kit takes the norm of the relative error)
        sq_k = np.einsum("ij,ij->i", r, r)
        abs_k = np.abs(r).sum(axis=1)
        self.add_forces(r)
        g = np.full(n, 0.0 if norm_mae else pref.f)
        if norm_mae:
            self.loss_sum += pref.f * float(a.sum()) * scale
        else:
            self.loss_sum += pref.f * float((abs_k if opt.mae else sq_k).sum()) * scale / 3.0
        if weighted:
            w = labels.atom_pref if labels.atom_pref is not None else np.ones(n)
            self.pf_sq += float(w @ sq_k)
            self.pf_abs += float(w @ abs_k)
            self.pf_n += 3 * n
            self.loss_sum += pref.pf * float(w @ (abs_k if opt.mae else sq_k)) * scale / 3.0
            g += pref.pf * w
        if opt.mae:
            sr = s[:, None] if opt.relative_f is not None else 1.0
            seeds.u = np.sign(df) * (g * s)[:, None] + (3.0 * pref.f * sr * unit if norm_mae else 0.0)
            seeds.c_f = scale / 3.0
        else:
            seeds.u = df * (g * s * s)[:, None]
            seeds.c_f = 2.0 * scale / 3.0

    _SUMS = ("loss_sum", "e_sq", "e_n", "f_sq", "f_n", "v_sq", "v_n", "e_abs", "f_abs", "v_abs",
             "ae_sq", "ae_abs", "ae_n", "pf_sq", "pf_abs", "pf_n", "fnorm_abs", "fnorm_n")
    FIGURES = ("rmse", "rmse_e", "rmse_f", "rmse_v", "rmse_ae", "rmse_pf",
               "mae_e", "mae_f", "mae_v", "mae_ae", "mae_pf")

    def _sums(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in self._SUMS}

    def end_batch(self) -> None:
        """Close a batch: its figures (those of its frames alone) join the atom-weighted means
        `shown` gives, as DeePMD-kit's validation averages its numb_btch batches: Σ_b n_b x_b /
        Σ_b n_b, x_b the batch's √loss, RMSE or MAE, n_b the atoms of batch b summed over its
        frames (DeePMD-kit 3.2's (atype >= 0).sum(): atom_exclude_types' atoms counted)."""
        self.nbatch += 1
        now = self._sums()
        batch = LossStats(self.options)
        for k in self._SUMS:
            setattr(batch, k, now[k] - self._mark[k])
        batch.nbatch = 1
        for name in self.FIGURES:
            self._weighted[name] = self._weighted.get(name, 0.0) + self.batch_atoms * batch._pooled(name)
        self._weight += self.batch_atoms
        self.batch_atoms = 0
        self._mark = now

    def loss(self) -> float:
        return self.loss_sum / max(self.nbatch, 1)

    def rmse(self) -> float:
        """Square root of the mean batch loss (lcurve's rmse_val / rmse_trn)."""
        return math.sqrt(self.loss())

    @property
    def rmse_ae(self) -> float:
        return root_mean(self.ae_sq, self.ae_n)

    @property
    def rmse_pf(self) -> float:
        return root_mean(self.pf_sq, self.pf_n)

    @property
    def mae_ae(self) -> float:
        return mean(self.ae_abs, self.ae_n)

    @property
    def mae_pf(self) -> float:
        return mean(self.pf_abs, self.pf_n)

    def shown(self, name: str) -> float:
        """The figure DeePMD-kit shows as `name` in lcurve.out (numdp.train.report.lcurve_kinds):
        "rmse" (√loss), rmse_e / _f / _v / _ae / _pf, or with MAE mae_e / _f / _v / _ae / _pf
        (mae_f with f_use_norm: the mean of the atoms' force-error norms, eV/Å).  Over several
        batches (`end_batch`), the atom-weighted mean of the batches' figures, DeePMD-kit's (nan
        when a batch had none: a label missing there); a batch's own figures pool its frames."""
        if self._weight:
            return self._weighted[name] / self._weight
        return self._pooled(name)

    def _pooled(self, name: str) -> float:
        """The figure `name` (`shown`) of all the frames added, pooled as one batch."""
        figures = {
            "rmse": self.rmse, "rmse_e": lambda: self.rmse_e, "rmse_f": lambda: self.rmse_f,
            "rmse_v": lambda: self.rmse_v, "rmse_ae": lambda: self.rmse_ae, "rmse_pf": lambda: self.rmse_pf,
            "mae_e": lambda: self.mae_e, "mae_v": lambda: self.mae_v, "mae_ae": lambda: self.mae_ae,
            "mae_pf": lambda: self.mae_pf,
            "mae_f": lambda: (mean(self.fnorm_abs, self.fnorm_n) if self.options.f_use_norm else self.mae_f),
        }
        return figures[name]()
