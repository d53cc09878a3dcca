"""Data statistics computed before step 0 (reference §1.3 "auto" sel, §2.5 davg/dstd, §5.3 bias).

- `auto_sel`: the largest number of type-t neighbours within rcut over all training frames,
  times a factor, truncated and rounded up to a multiple of 4 (DeePMD-kit's rule).
- the smallest pair distance (min_nbor_dist) and the range of s = w(r)/r per centre type come from
  `numdp.neighbor.distances.DistanceStats` (model compression needs both).
- `env_stats`: davg/dstd from the raw environment matrices of sampled frames, padding slots
  and the neighbours of excluded type pairs counted as zero rows (DeePMD-kit's EnvMatStatSe
  multiplies their rows by its exclusion mask and keeps counting them), σ protected from below
  by 1e-2.
- `param_stats`: mean and σ (protected from below by 1e-2) of each frame parameter over the
  sampled frames (models with numb_fparam), or of each atomic parameter over every atom of the
  sampled frames (models with numb_aparam).
- `energy_bias`: per-type energies b minimising Σ_f (Σ_t n_ft b_t - E_f)² over sampled frames,
  minimum-norm solution of numpy.linalg.lstsq.
"""
from __future__ import annotations

import math

import numpy as np

from ..io.npy_system import real_atoms
from ..kernels.cpu.envmat import env_pairs
from ..model.bias import fit_type_shift
from ..neighbor import slot_offsets
from ..neighbor.distances import NeighborCensus
from .data import DataSystem, FrameCache
from ..kernels.cpu.train import env_stat_sums

PROTECTION = 1e-2
EMPTY_TYPE_STD = 0.1


def max_neighbour_counts(systems: list[DataSystem], rcut: float, ntypes: int) -> np.ndarray:
    """(ntypes,) largest count of type-t neighbours within rcut (Å) of any atom in any frame."""
    census = NeighborCensus(ntypes, rcut)
    for s in systems:
        for f in range(s.nframes):
            census.add(*s.atoms_of(f), s.box(f))
    return census.max_count


def auto_sel(max_count: np.ndarray, factor: float) -> list[int]:
    """⌈⌊count · factor⌋ / 4⌉ · 4 per type: the sel DeePMD-kit's "auto:factor" writes (its
    wrap_up_4(count · factor): truncated, then rounded up to a multiple of 4; for a count of 4
    and factor 1.1: 4).  Never below the count for factor ≥ 1."""
    return [4 * ((int(c * factor) + 3) // 4) for c in max_count]


def stat_frames(systems: list[DataSystem], nbatch: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Frame indices sampled per system: nbatch batches, at most all frames, without repetition."""
    out = []
    for s in systems:
        n = min(s.nframes, nbatch * s.batch_size)
        out.append(np.sort(rng.choice(s.nframes, size=n, replace=False)))
    return out


def env_stats(cache: FrameCache, frames: list[np.ndarray], ntypes: int, sel: list[int],
              rcut: float, rcut_smth: float, excluded: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """davg, dstd (ntypes, nnei, 4) from the raw environment rows of the sampled frames (rcut,
    rcut_smth Å); excluded: (ntypes, ntypes) bool excluded type pairs (Descriptor.excluded;
    None: none), whose neighbours count as zero rows, like padding."""
    nnei = int(sum(sel))
    sec = slot_offsets(sel)
    excl = np.zeros((ntypes, ntypes), dtype=bool) if excluded is None else np.asarray(excluded, dtype=bool)
    mu0 = np.zeros((ntypes, ntypes, 4))
    sd1 = np.ones((ntypes, ntypes, 4))
    sums = np.zeros((ntypes, 4))
    natoms = np.zeros(ntypes, dtype=np.int64)
    for k, idx in enumerate(frames):
        for f in idx:
            fr = cache.frame(k, int(f))
            na = fr.nloc
            atoms = np.arange(na, dtype=np.int64)
            atypes = fr.types.astype(np.int64)
            cap = na * nnei
            rt = np.empty((cap, 4))
            dvec = np.empty((cap, 3))
            nbr = np.empty(cap, np.int64)
            poff = np.empty((ntypes, na + 1), np.int64)
            npad = np.empty((na, ntypes), np.int64)
            env_pairs(fr.ext_pos, fr.nlist, atoms, atypes, sec, mu0, sd1, excl, rcut, rcut_smth,
                      rt, dvec, nbr, poff, npad)
            env_stat_sums(atypes, rt, poff, sums)
            natoms += np.bincount(atypes, minlength=ntypes)
    davg = np.zeros((ntypes, nnei, 4))
    dstd = np.full((ntypes, nnei, 4), EMPTY_TYPE_STD)
    for t in range(ntypes):
        if natoms[t] == 0:
            continue
        nr = float(natoms[t] * nnei)
        na_ = 3.0 * nr
        mr = sums[t, 0] / nr
        sr = math.sqrt(max(sums[t, 1] / nr - mr * mr, 0.0))
        ma = sums[t, 2] / na_
        sa = math.sqrt(max(sums[t, 3] / na_ - ma * ma, 0.0))
        davg[t, :, 0] = mr
        dstd[t, :, 0] = max(sr, PROTECTION)
        dstd[t, :, 1:] = max(sa, PROTECTION)
    return davg, dstd


def param_stats(values: list[np.ndarray], frames: list[np.ndarray],
                protection: float = PROTECTION) -> tuple[np.ndarray, np.ndarray]:
    """(avg, inv_std), each (n,): the mean and the inverse standard deviation (the deviation at
    least `protection`, DeePMD-kit's data_stat_protect) of each parameter over the statistics
    frames `frames` (indices per system), as DeePMD-kit's fitting takes them
    (compute_input_stats).  values: per system its frame parameters (nf, n), one row per frame,
    or its atomic parameters (nf, N, n), one row per atom of each frame."""
    rows = np.concatenate([v[idx].reshape(-1, v.shape[-1]) for v, idx in zip(values, frames)])
    avg = rows.mean(axis=0)
    std = np.sqrt(np.maximum((rows * rows).mean(axis=0) - avg * avg, 0.0))
    return avg, 1.0 / np.maximum(std, protection)


def energy_bias(systems: list[DataSystem], frames: list[np.ndarray], ntypes: int,
                predicted: list[np.ndarray] | None = None, preset: list[float | None] | None = None,
                excluded: np.ndarray | None = None) -> np.ndarray:
    """(ntypes,) eV per atom of each type: minimum-norm least squares over the sampled frames
    of the energy labels, or, with `predicted` (per system, the energies in eV of its sampled
    frames, in the order of `frames`; None for a system without energy labels), of the labels'
    errors (label − predicted).  `preset` (per type, eV or None; DeePMD-kit's preset_out_bias):
    those types take their preset value, their atoms' share is taken from the energies first
    and the other types are fitted to the rest (DeePMD-kit's compute_stats_from_redu with an
    assigned bias).  `excluded` (ntypes,) bool: the model's atom_exclude_types, whose atoms are
    not counted (DeePMD-kit masks them: their energy is zero whatever the bias; their bias comes
    out 0 unless preset)."""
    rows, energies = [], []
    for k, (s, idx) in enumerate(zip(systems, frames)):
        if s.energy is None:
            continue
        for i, f in enumerate(idx):
            t = s.types_of(f)   # virtual atoms (-1, mixed-type padding) are not counted
            rows.append(np.bincount(t[real_atoms(t)], minlength=ntypes).astype(np.float64))
            energies.append(s.energy[f] - (0.0 if predicted is None else predicted[k][i]))
    preset = [None] * ntypes if preset is None else preset
    fixed = np.array([p is not None for p in preset])
    values = np.array([0.0 if p is None else p for p in preset])
    if not rows:
        return values
    counts, energies = np.array(rows), np.array(energies)
    if excluded is not None:
        counts[:, np.asarray(excluded, dtype=bool)] = 0.0
    if fixed.any():
        energies = energies - counts[:, fixed] @ values[fixed]
        counts[:, fixed] = 0.0
    bias = fit_type_shift(counts, energies)
    bias[fixed] = values[fixed]
    return bias
