"""Data statistics before step 0: auto sel, davg/dstd with padding, energy bias, distance range."""
import pathlib

import numpy as np
import pytest

from numdp.neighbor import build_nlist, extend
from numdp.train.config import BatchSize
from numdp.train.data import DataSystem, FrameCache, load_dataset
from numdp.kernels.cpu.envmat import switch
from numdp.neighbor.distances import DistanceStats
from numdp.train.stats import auto_sel, energy_bias, env_stats, max_neighbour_counts
from randmodel import random_config

WATER = pathlib.Path("/work/shared/data/water")


def synthetic_systems(nsys=2, natoms=10, nframes=4, ntypes=2, periodic=True, seed=0):
    out = []
    rng = np.random.default_rng(seed)
    for k in range(nsys):
        coords, boxes = [], []
        for f in range(nframes):
            pos, types, box = random_config(natoms, ntypes, box_len=5.5 if periodic else None,
                                            tilt=0.2, seed=seed + 10 * k + f)
            coords.append(pos)
            boxes.append(box)
        types = np.roll(types, k).astype(np.int32)
        out.append(DataSystem(pathlib.Path(f"sys{k}"), types, np.array(coords),
                              np.array(boxes) if periodic else None, rng.normal(size=nframes) - 3.0 * natoms,
                              None, None, 1))
    return out


def brute_env_stats(systems, ntypes, sel, rcut, rcut_smth):
    """Loop over every atom and slot; padding slots are zero rows."""
    nnei = sum(sel)
    sums = np.zeros((ntypes, 4))
    counts = np.zeros(ntypes)
    for s in systems:
        for f in range(s.nframes):
            ext = extend(s.coords[f], s.types, s.box(f), rcut)
            nl = build_nlist(ext, rcut, sel, ntypes).nlist
            for i in range(s.natoms):
                t = s.types[i]
                counts[t] += nnei
                for j in nl[i]:
                    if j < 0:
                        continue
                    d = ext.positions[j] - ext.positions[i]
                    r = np.linalg.norm(d)
                    sr = switch(r, rcut_smth, rcut)[0] / r
                    row = np.array([sr, *(sr * d / r)])
                    sums[t] += [row[0], row[0] ** 2, row[1:].sum(), (row[1:] ** 2).sum()]
    mean_r = sums[:, 0] / counts
    std_r = np.sqrt(sums[:, 1] / counts - mean_r ** 2)
    mean_a = sums[:, 2] / (3 * counts)
    std_a = np.sqrt(sums[:, 3] / (3 * counts) - mean_a ** 2)
    return mean_r, np.maximum(std_r, 1e-2), np.maximum(std_a, 1e-2)


@pytest.mark.parametrize("periodic", [True, False])
def test_env_stats_match_brute_force(periodic):
    systems = synthetic_systems(periodic=periodic)
    sel, rcut, rs = [9, 11], 4.0, 1.0
    cache = FrameCache(systems, rcut, sel, 2)
    frames = [np.arange(s.nframes) for s in systems]
    davg, dstd = env_stats(cache, frames, 2, sel, rcut, rs)
    mr, sr, sa = brute_env_stats(systems, 2, sel, rcut, rs)
    assert davg.shape == dstd.shape == (2, 20, 4)
    for t in range(2):
        assert np.allclose(davg[t, :, 0], mr[t], rtol=1e-12)
        assert np.all(davg[t, :, 1:] == 0.0)
        assert np.allclose(dstd[t, :, 0], sr[t], rtol=1e-10)
        assert np.allclose(dstd[t, :, 1:], sa[t], rtol=1e-10)


def test_std_protection_and_empty_type():
    systems = synthetic_systems(ntypes=1)
    cache = FrameCache(systems, 4.0, [12, 12, 12], 3)
    davg, dstd = env_stats(cache, [np.arange(4)] * 2, 3, [12, 12, 12], 4.0, 1.0)
    assert np.all(dstd >= 1e-2)
    assert np.all(davg[1:] == 0.0) and np.all(dstd[1:] == 0.1)   # types never seen


def test_energy_bias_minimum_norm_when_rank_deficient():
    """Every frame has the same composition (like water): b_t = mean(E) n_t / Σ n_t² (reference §5.3)."""
    systems = synthetic_systems(nsys=1, natoms=9, nframes=6)
    s = systems[0]
    s.types = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1], dtype=np.int32)
    frames = [np.arange(6)]
    b = energy_bias(systems, frames, 2)
    n = np.array([3.0, 6.0])
    assert np.allclose(b, s.energy.mean() * n / (n @ n), rtol=1e-12)


def test_energy_bias_full_rank_recovers_per_type_energies():
    systems = synthetic_systems(nsys=2, natoms=8, nframes=3)
    systems[1].types = np.array([0, 0, 0, 0, 0, 0, 1, 1], dtype=np.int32)
    systems[0].types = np.array([0, 0, 1, 1, 1, 1, 1, 1], dtype=np.int32)
    truth = np.array([-1.5, -4.0])
    for s in systems:
        s.energy = np.full(s.nframes, np.bincount(s.types, minlength=2) @ truth)
    b = energy_bias(systems, [np.arange(3)] * 2, 2)
    assert np.allclose(b, truth, rtol=1e-12)


def test_auto_sel_rounds_up_to_multiples_of_four():
    assert auto_sel(np.array([35, 67, 0, 4]), 1.1) == [40, 76, 0, 4]
    assert auto_sel(np.array([40]), 1.0) == [40]


def test_neighbour_counts_and_distance_range():
    systems = synthetic_systems(periodic=True)
    rcut, rs = 4.0, 1.0
    counts = max_neighbour_counts(systems, rcut, 2)
    sel = auto_sel(counts, 1.0)
    cache = FrameCache(systems, rcut, sel, 2)
    dist = DistanceStats(2, rcut, rs)
    rmin = np.full(2, np.inf)
    rmax = np.zeros(2)
    brute_counts = np.zeros(2, dtype=int)
    for k, s in enumerate(systems):
        for f in range(s.nframes):
            dist.add(cache.frame(k, f))
            # brute force over images within rcut
            box = s.boxes[f]
            shifts = np.array([[a, b, c] for a in range(-2, 3) for b in range(-2, 3) for c in range(-2, 3)])
            for i in range(s.natoms):
                n_t = np.zeros(2, dtype=int)
                for j in range(s.natoms):
                    d = s.coords[f, j] + shifts @ box - s.coords[f, i]
                    r = np.linalg.norm(d, axis=1)
                    ok = (r < rcut) & (r > 1e-9)
                    n_t[s.types[j]] += ok.sum()
                    if ok.any():
                        t = s.types[i]
                        rmin[t] = min(rmin[t], r[ok].min())
                        rmax[t] = max(rmax[t], r[ok].max())
                brute_counts = np.maximum(brute_counts, n_t)
    assert counts.tolist() == brute_counts.tolist()
    assert cache.overflow.sum() == 0
    assert np.allclose(dist.rrange[:, 0], rmin, rtol=1e-12)
    assert np.allclose(dist.rrange[:, 1], rmax, rtol=1e-12)
    assert dist.min_nbor_dist == pytest.approx(rmin.min(), rel=1e-12)
    s_range = dist.s_range
    for t in range(2):
        assert s_range[t, 1] == pytest.approx(switch(rmin[t], rs, rcut)[0] / rmin[t], rel=1e-12)
        assert s_range[t, 0] == pytest.approx(switch(rmax[t], rs, rcut)[0] / rmax[t], rel=1e-12)


@pytest.mark.skipif(not WATER.is_dir(), reason="water data not available")
def test_water_bias_equals_deepmd_kit_convention():
    """data_0 alone: b_O = Ē/320, b_H = Ē/160 (reference §5.3)."""
    systems = load_dataset([WATER / "data_0"], ["O", "H"], BatchSize())
    frames = [np.arange(systems[0].nframes)]
    b = energy_bias(systems, frames, 2)
    e = systems[0].energy.mean()
    assert np.allclose(b, [e / 320, e / 160], rtol=1e-12)
    assert b[0] == pytest.approx(-93.57, abs=0.01) and b[1] == pytest.approx(-187.15, abs=0.01)
