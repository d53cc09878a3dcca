"""Model deviation of an ensemble of models on one frame: the maths of LAMMPS `pair_style deepmd`
and `dp model-devi` (DeePMD-kit), shared by `numdp model-devi` and (later) `numdp run`.

For n_m models k = 1..n_m and <.> the mean over models (population statistics, 1/n_m):

    force, per atom i:   e_f,i = sqrt(< |F_i,k - <F_i>|^2 >)                         (eV/Å)
        --relative L:    e_f,i / (|<F_i>| + L)                                        (no unit)
    virial, per component ab of the virial per atom W = Xi / N:
                         e_v,ab = sqrt(< (W_ab,k - <W_ab>)^2 >)                       (eV)
        --relative_v L:  e_v,ab / (|<W_ab>| + L)   (per component, as LAMMPS does)
    energy per atom:     devi_e = sqrt(< (E_k / N - <E / N>)^2 >)                     (eV)

    max/min/avg_devi_f: max, min and mean of e_f,i over the atoms;
    max/min_devi_v: max, min of e_v,ab over the 9 components; avg_devi_v: sqrt(mean of e_v,ab^2)
    (the root mean square, as both LAMMPS and DeePMD-kit define it).

With labels (`dp model-devi --real_error`, `Reference`): the same formulas with the label in
the place of the mean over models, <.> then the mean of the squared distances to the label (the
RMS error of the models), and the relative levels divide by the label's magnitude.

DeePMD-kit's Python `--relative_v` divides by the norm of the whole mean virial instead (and its
broadcasting fails for sets with more than one frame); numdp follows LAMMPS (docs/model-deviation.md).

Arrays: forces (n_m, N, 3), virials (n_m, 3, 3) or (n_m, 9), energies (n_m,).  Under domain
decomposition `atom_force_deviation` is local per atom; the virials and the max/min/mean over atoms
need global reductions (`summarize_force` returns the partial sums that reduce).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError

__all__ = ["FrameDeviation", "Reference", "atom_force_deviation", "energy_deviation",
           "ensemble_deviations", "frame_deviation", "summarize_force", "virial_deviation"]


@dataclass
class FrameDeviation:
    """The deviations of one frame (see the module docstring); atom_devi_f (N,)."""

    max_devi_v: float
    min_devi_v: float
    avg_devi_v: float
    max_devi_f: float
    min_devi_f: float
    avg_devi_f: float
    devi_e: float
    atom_devi_f: np.ndarray


@dataclass
class Reference:
    """Labels of one frame to measure the models against instead of their mean (`--real_error`):
    energy eV, forces (N, 3) eV/Å, virial (3, 3) eV (DeePMD-kit sign)."""

    energy: float
    forces: np.ndarray
    virial: np.ndarray


def _check_level(value, name: str) -> float | None:
    if value is None:
        return None
    v = float(value)
    if not (np.isfinite(v) and v >= 0.0):
        raise InputError(f"{name}: the level must be a finite number >= 0, got {value!r}")
    return v


def _std(x: np.ndarray, xp=np, center=None) -> np.ndarray:
    """Population standard deviation over axis 0 (the models), two-pass; with `center`, the
    root mean square distance to it instead of to the mean."""
    return xp.sqrt(xp.mean((x - (x.mean(axis=0) if center is None else center)) ** 2, axis=0))


def atom_force_deviation(forces, relative: float | None = None, xp=np, reference=None) -> np.ndarray:
    """e_f,i (N,) from forces (n_m, N, 3) eV/Å; divided by |<F_i>| + relative when given.
    xp: the array module of `forces` (NumPy, or CuPy for forces on the GPU: computed there).
    reference: label forces (N, 3) eV/Å to measure against instead of the mean (module)."""
    f = xp.asarray(forces, dtype=np.float64)
    if f.ndim != 3 or f.shape[2] != 3 or f.shape[0] < 1:
        raise ValueError(f"forces: expected (n_models, natoms, 3), got {f.shape}")
    ref = None if reference is None else xp.asarray(reference, dtype=np.float64).reshape(f.shape[1:])
    devi = xp.sqrt(xp.sum(_std(f, xp, ref) ** 2, axis=-1))
    level = _check_level(relative, "relative")
    if level is not None:
        devi = devi / (xp.linalg.norm(f.mean(axis=0) if ref is None else ref, axis=-1) + level)
    return devi


def summarize_force(atom_devi: np.ndarray) -> tuple[float, float, float, int]:
    """(max, min, sum, count) of per-atom deviations: what a global reduction combines into
    max_devi_f, min_devi_f and avg_devi_f = sum / count (count 0: max 0, min +inf)."""
    a = np.asarray(atom_devi, dtype=np.float64)
    if a.size == 0:
        return 0.0, np.inf, 0.0, 0
    return float(a.max()), float(a.min()), float(a.sum()), int(a.size)


def virial_deviation(virials, natoms: int, relative_v: float | None = None,
                     reference=None) -> np.ndarray:
    """e_v (9,) row-major from total virials (n_m, 3, 3) or (n_m, 9) in eV over `natoms` atoms;
    reference: the label's total virial (3, 3) or (9,) eV to measure against (module)."""
    v = np.asarray(virials, dtype=np.float64)
    v = v.reshape(v.shape[0], 9) / float(natoms)
    ref = None if reference is None else np.asarray(reference, dtype=np.float64).reshape(9) / float(natoms)
    devi = _std(v, center=ref)
    level = _check_level(relative_v, "relative_v")
    if level is not None:
        devi = devi / (np.abs(v.mean(axis=0) if ref is None else ref) + level)
    return devi


def energy_deviation(energies, natoms: int, reference: float | None = None) -> float:
    """devi_e: standard deviation over models of E / N, eV (DeePMD-kit's definition); with
    `reference` (the label's total energy, eV) the RMS distance of E / N to its E / N."""
    e = np.asarray(energies, dtype=np.float64) / float(natoms)
    return float(_std(e, center=None if reference is None else float(reference) / float(natoms)))


def frame_deviation(energies, forces, virials, relative: float | None = None,
                    relative_v: float | None = None, reference: Reference | None = None) -> FrameDeviation:
    """All deviations of one frame: energies (n_m,) eV, forces (n_m, N, 3) eV/Å, virials (n_m, 3, 3)
    eV (DeePMD-kit sign; any sign convention gives the same deviations); with `reference`, the
    models' RMS errors against its labels instead (module)."""
    forces = np.asarray(forces, dtype=np.float64)
    natoms = forces.shape[1]
    ref = reference
    fa = atom_force_deviation(forces, relative, reference=None if ref is None else ref.forces)
    fmax, fmin, fsum, n = summarize_force(fa)
    ev = virial_deviation(virials, natoms, relative_v, reference=None if ref is None else ref.virial)
    return FrameDeviation(
        max_devi_v=float(ev.max()), min_devi_v=float(ev.min()),
        avg_devi_v=float(np.sqrt(np.mean(ev ** 2))),
        max_devi_f=fmax, min_devi_f=fmin, avg_devi_f=fsum / n if n else 0.0,
        devi_e=energy_deviation(energies, natoms, None if ref is None else ref.energy), atom_devi_f=fa)


def ensemble_deviations(models, frames, relative=None, relative_v=None):
    """FrameDeviation of each (positions (N, 3), types (N,), box (3, 3) or None, pbc, reference
    or None[, fparam or None[, aparam or None]]) frame, the models (numdp DPModel) evaluated by
    numdp.model.dp_model.evaluate_ensemble (models with equal rcut, rcut_smth, sel, davg and dstd
    share the neighbour list and the environment matrix), with the frame's parameters when it
    gives them.  Used by `numdp model-devi` and numdp.infer.calc_model_devi."""
    from .dp_model import evaluate_ensemble

    for frame in frames:
        pos, types, box, pbc, reference = frame[:5]
        outs = evaluate_ensemble(models, pos, types, box, pbc, frame[5] if len(frame) > 5 else None,
                                 frame[6] if len(frame) > 6 else None)
        yield frame_deviation([o.energy for o in outs], np.stack([o.forces for o in outs]),
                              np.stack([o.virial for o in outs]), relative, relative_v, reference)
