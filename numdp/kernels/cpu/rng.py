"""Counter-based random numbers: Philox4x32-10 keyed by (seed, step, stream, atom id, block).

A draw is a pure function of its key, so results do not depend on the order of evaluation, the
number of threads or ranks, or on whether the run was restarted: the seed *is* the RNG state.

Philox4x32-10 (Salmon et al., SC11): a 4×32-bit counter and a 2×32-bit key, ten rounds of

    (c0, c1, c2, c3) -> (hi(M1*c2) ^ c1 ^ k0, lo(M1*c2), hi(M0*c0) ^ c3 ^ k1, lo(M0*c0))

with M0 = 0xD2511F53, M1 = 0xCD9E8D57 and the key bumped by (0x9E3779B9, 0xBB67AE85) between
rounds.  numdp's counter layout: c0 = atom id (or draw index), c1 / c2 = low / high 32 bits of the
step, c3 = stream << 16 | block; key = low / high 32 bits of the seed.  One block gives two
uniform doubles (53 bits each) and, by Box-Muller, two standard normal numbers.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

# Streams: one per use, so that no two uses ever share a key.
STREAM_VELOCITY_INIT = 1
STREAM_THERMOSTAT_START = 2   # thermostat half-step at the start of a step
STREAM_THERMOSTAT_END = 3     # thermostat half-step at the end of a step
STREAM_BAROSTAT = 4

_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint64(0x9E3779B9)
_W1 = np.uint64(0xBB67AE85)
_MASK = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_TWO_PI = 2.0 * math.pi
_INV53 = 1.0 / 9007199254740992.0  # 2**-53


@njit(cache=True, nogil=True, inline="always")
def philox4x32(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 block: four uint64 words holding 32-bit values each (counter, key as uint64)."""
    for r in range(10):
        if r > 0:
            k0 = (k0 + _W0) & _MASK
            k1 = (k1 + _W1) & _MASK
        p0 = _M0 * c0
        p1 = _M1 * c2
        n0 = ((p1 >> _S32) ^ c1 ^ k0) & _MASK
        n1 = p1 & _MASK
        n2 = ((p0 >> _S32) ^ c3 ^ k1) & _MASK
        n3 = p0 & _MASK
        c0, c1, c2, c3 = n0, n1, n2, n3
    return c0, c1, c2, c3


@njit(cache=True, nogil=True, inline="always")
def _block(seed, step, stream, index, block):
    s = np.uint64(seed)
    t = np.uint64(step)
    return philox4x32(
        np.uint64(index) & _MASK,
        t & _MASK,
        t >> _S32,
        (np.uint64(stream) << np.uint64(16)) | (np.uint64(block) & np.uint64(0xFFFF)),
        s & _MASK,
        s >> _S32,
    )


@njit(cache=True, nogil=True, inline="always")
def normal_pair(seed, step, stream, index, block):
    """Two independent N(0, 1) numbers for one key (Box-Muller on two 53-bit uniforms)."""
    x0, x1, x2, x3 = _block(seed, step, stream, index, block)
    u1 = 1.0 - np.float64((x0 << np.uint64(21)) | (x1 >> np.uint64(11))) * _INV53  # (0, 1]
    u2 = np.float64((x2 << np.uint64(21)) | (x3 >> np.uint64(11))) * _INV53        # [0, 1)
    r = math.sqrt(-2.0 * math.log(u1))
    return r * math.cos(_TWO_PI * u2), r * math.sin(_TWO_PI * u2)


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
