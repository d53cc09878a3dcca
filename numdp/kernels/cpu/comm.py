"""Numba kernels of the domain decomposition: plain functions over arrays, filling outputs.

Per-step (forward and reverse communication) they pack rows into send buffers and add received
rows back; at neighbour rebuilds they select the atoms of a slab.  Units: positions Å, forces eV/Å.
Serial on purpose: each is O(atoms near a subdomain face) and memory-bound.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def pack_shifted(src, idx, shift, out):
    """out[i] = src[idx[i]] + shift for (n, 3) out; src (nall, 3); idx (n,) int64; shift (3,)."""
    for i in range(idx.shape[0]):
        j = idx[i]
        for k in range(3):
            out[i, k] = src[j, k] + shift[k]


@njit(cache=True, nogil=True)
def accumulate_rows(dst, idx, rows):
    """dst[idx[i]] += rows[i] for (n, 3) rows, in order i = 0, 1, ... (deterministic)."""
    for i in range(idx.shape[0]):
        j = idx[i]
        for k in range(3):
            dst[j, k] += rows[i, k]


@njit(cache=True, nogil=True)
def select_slab(positions, candidates, inv_col, limit, below, out):
    """Candidates whose fractional coordinate f = positions[c] · inv_col is < limit (below) or
    >= limit (not below).  positions (nall, 3) Å; candidates (n,) int64; inv_col (3,) a column of
    box⁻¹.  Writes the selected indices, in candidate order, to out[:count]; returns count."""
    count = 0
    for i in range(candidates.shape[0]):
        c = candidates[i]
        f = positions[c, 0] * inv_col[0] + positions[c, 1] * inv_col[1] + positions[c, 2] * inv_col[2]
        if (f < limit) if below else (f >= limit):
            out[count] = c
            count += 1
    return count


@njit(cache=True, nogil=True)
def owned_positions(positions, images, box, out):
    """out[i] = positions[i] - images[i] · box: the wrapped copy of each owned atom (n, 3) Å,
    moved along with it since the last rebuild (images (n, 3) float64 integers)."""
    for i in range(positions.shape[0]):
        for k in range(3):
            out[i, k] = positions[i, k] - (images[i, 0] * box[0, k] + images[i, 1] * box[1, k]
                                           + images[i, 2] * box[2, k])


def as_index(a) -> np.ndarray:
    """Contiguous int64 index array."""
    return np.ascontiguousarray(a, dtype=np.int64)
