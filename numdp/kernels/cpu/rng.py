"""Counter-based random numbers: Philox4x32-10 keyed by (seed, step, stream, atom id, block).

A draw is a pure function of its key, so results do not depend on the order of evaluation, the
number of threads or ranks, or on whether the run was restarted: the seed *is* the RNG state.

Philox4x32-10 (Salmon et al., SC11): a 4×32-bit counter and a 2×32-bit key, ten rounds of

    (c0, c1, c2, c3) -> (hi(M1*c2) ^ c1 ^ k0, lo(M1*c2), hi(M0*c0) ^ c3 ^ k1, lo(M0*c0))

with M0 = 0xD2511F53, M1 = 0xCD9E8D57 and the key bumped by (0x9E3779B9, 0xBB67AE85) between
rounds.  numdp's counter layout: c0 = atom id (or draw index), c1 / c2 = low / high 32 bits of the
step, c3 = stream << 16 | block; key = low / high 32 bits of the seed.  One block gives two
uniform doubles (53 bits each) and, by Box-Muller, two standard normal numbers.  The scalar
maths is numdp.kernels.rng, compiled here for the CPU and in numdp.kernels.cuda.md for the GPU.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..dual import cpu_inline
from ..rng import compile_rng

# Streams: one per use, so that no two uses ever share a key.
STREAM_VELOCITY_INIT = 1
STREAM_THERMOSTAT_START = 2   # thermostat half-step at the start of a step
STREAM_THERMOSTAT_END = 3     # thermostat half-step at the end of a step
STREAM_BAROSTAT = 4

_CPU = compile_rng(cpu_inline)
philox4x32 = _CPU.philox4x32
normal_pair = _CPU.normal_pair   # (seed, step, stream, index, block) -> two N(0, 1) numbers


@njit(cache=True, nogil=True)
def fill_normals(seed, step, stream, ids, out):
    """out[i, k] = k-th standard normal number of atom ids[i] (out: (n, m) float64)."""
    m = out.shape[1]
    for i in range(ids.shape[0]):
        for b in range((m + 1) // 2):
            g0, g1 = normal_pair(seed, step, stream, ids[i], b)
            out[i, 2 * b] = g0
            if 2 * b + 1 < m:
                out[i, 2 * b + 1] = g1


@njit(cache=True, nogil=True)
def sum_of_squared_normals(seed, step, stream, count):
    """Σ g_k² over `count` standard normal numbers (draw indices 0..count-1): a χ² variate."""
    total = 0.0
    for k in range((count + 1) // 2):
        g0, g1 = normal_pair(seed, step, stream, k, 1)
        total += g0 * g0
        if 2 * k + 1 < count:
            total += g1 * g1
    return total


@njit(cache=True, nogil=True)
def _raw_block(c0, c1, c2, c3, k0, k1, out):
    a, b, c, d = philox4x32(np.uint64(c0), np.uint64(c1), np.uint64(c2), np.uint64(c3),
                            np.uint64(k0), np.uint64(k1))
    out[0] = a
    out[1] = b
    out[2] = c
    out[3] = d


def philox_block(counter, key) -> tuple[int, int, int, int]:
    """Philox4x32-10 of a 4-word counter and a 2-word key (Python ints < 2**32); for tests."""
    out = np.empty(4, dtype=np.uint64)
    _raw_block(*[int(c) for c in counter], *[int(k) for k in key], out)
    return tuple(int(v) for v in out)


def normals(seed: int, step: int, stream: int, ids: np.ndarray, m: int) -> np.ndarray:
    """(len(ids), m) standard normal numbers keyed by (seed, step, stream, id)."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    out = np.empty((ids.shape[0], m), dtype=np.float64)
    if ids.shape[0]:
        fill_normals(np.int64(seed), np.int64(step), np.int64(stream), ids, out)
    return out
