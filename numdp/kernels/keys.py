"""Packed 64-bit neighbour sort keys (reference §10.1), written once for the CPU and CUDA kernels.

One unsigned 64-bit integer per (centre, neighbour) pair::

    key = (type << 57) | (floor(r * 2**26) << 24) | index
    bits 57..63 type (< 128), bits 24..56 distance in units of 2**-26 Å (0 <= r < 128 Å),
    bits 0..23 extended index (< 2**24)

so that sorting the keys of one centre orders its neighbours by (type, quantised distance, index);
the keys of one centre are distinct (distinct indices), so every sort gives the same order.  The
kernels put in the index field what keeps that order exact beyond 2**24 extended atoms: the CUDA
kernels the index modulo 2**24 with the full index beside the key, the CPU kernels the neighbour's
ordinal among its centre's keys (numdp.kernels.cpu.neighbor); both then order ties of (type,
quantised distance) by the full index.

`pack_key` and `unpack_key` are plain scalar Python (NumPy scalar types only); `pack_key_cpu` and
`unpack_key_cpu` are their CPU builds (inlined into @njit callers).  The CUDA kernels build their own
with `numdp.kernels.dual.cuda_device`, so importing this module never imports numba.cuda.
"""

from __future__ import annotations

import numpy as np

from numdp.kernels.dual import cpu_inline

__all__ = [
    "KEY_DIST_SCALE",
    "KEY_DIST_SHIFT",
    "KEY_MAX_DIST",
    "KEY_MAX_TYPES",
    "KEY_TYPE_SHIFT",
    "pack_key",
    "pack_key_cpu",
    "unpack_key",
    "unpack_key_cpu",
]

KEY_TYPE_SHIFT = 57
KEY_DIST_SHIFT = 24
KEY_DIST_SCALE = 67108864.0  # 2**26: distance quantum 2**-26 Å
KEY_MAX_TYPES = 128  # 2**(64 - 57)
KEY_MAX_DIST = 128.0  # 2**33 quanta of 2**-26 Å
INDEX_MASK = 16777215  # 2**24 - 1
DIST_MASK = 8589934591  # 2**33 - 1


def pack_key(t, r, j):
    """Packed key of a neighbour: type t (0..127), distance r (Å, 0 <= r < 128), index j (< 2**24)."""
    q = np.uint64(np.int64(r * KEY_DIST_SCALE))
    return (
        (np.uint64(t) << np.uint64(KEY_TYPE_SHIFT))
        | (q << np.uint64(KEY_DIST_SHIFT))
        | np.uint64(j)
    )


def unpack_key(key):
    """Inverse of `pack_key`: (type, quantised distance floor(r * 2**26), index) as int64 values."""
    t = np.int64(key >> np.uint64(KEY_TYPE_SHIFT))
    q = np.int64((key >> np.uint64(KEY_DIST_SHIFT)) & np.uint64(DIST_MASK))
    j = np.int64(key & np.uint64(INDEX_MASK))
    return t, q, j


pack_key_cpu = cpu_inline(pack_key)
unpack_key_cpu = cpu_inline(unpack_key)
