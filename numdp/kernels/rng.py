"""Philox4x32-10 counter-based random numbers as scalar maths, written once for both targets.

The plain functions below use only scalar NumPy integer types and `math`; `compile_rng` builds
them for one target with numdp.kernels.dual (`cpu_inline` for the @njit kernels of
numdp.kernels.cpu.rng, `cuda_device` for the @cuda.jit kernels of numdp.kernels.cuda.md), so the
CPU and the GPU draw the same numbers for the same key.  The counter layout and the streams are
described in numdp.kernels.cpu.rng.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .math import _rebind

_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint64(0x9E3779B9)
_W1 = np.uint64(0xBB67AE85)
_MASK = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_TWO_PI = 2.0 * math.pi
_INV53 = 1.0 / 9007199254740992.0  # 2**-53


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


def philox_block_of_key(seed, step, stream, index, block):
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


def normal_pair(seed, step, stream, index, block):
    """Two independent N(0, 1) numbers for one key (Box-Muller on two 53-bit uniforms)."""
    x0, x1, x2, x3 = philox_block_of_key(seed, step, stream, index, block)
    u1 = 1.0 - np.float64((x0 << np.uint64(21)) | (x1 >> np.uint64(11))) * _INV53  # (0, 1]
    u2 = np.float64((x2 << np.uint64(21)) | (x3 >> np.uint64(11))) * _INV53        # [0, 1)
    r = math.sqrt(-2.0 * math.log(u1))
    return r * math.cos(_TWO_PI * u2), r * math.sin(_TWO_PI * u2)


@dataclass(frozen=True)
class PhiloxMath:
    """The functions above compiled for one target (see `compile_rng`)."""

    philox4x32: object
    block: object
    normal_pair: object


def compile_rng(compile_fn) -> PhiloxMath:
    """philox4x32, philox_block_of_key and normal_pair compiled with compile_fn (each bound to
    the compiled copies of the functions it calls)."""
    ph = compile_fn(philox4x32)
    blk = compile_fn(_rebind(philox_block_of_key, philox4x32=ph))
    return PhiloxMath(philox4x32=ph, block=blk, normal_pair=compile_fn(_rebind(normal_pair, philox_block_of_key=blk)))
