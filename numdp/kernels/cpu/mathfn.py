"""Vectorisable elementary functions for Numba kernels.

Without Intel SVML, Numba lowers `math.tanh` to a scalar libm call (about 12 ns here) that
blocks loop vectorisation.  `tanh` below uses only arithmetic, selects and bit casts, so LLVM
vectorises loops that call it (about 1.2 ns per element).  Accuracy: relative error below three
machine epsilons over the whole double range (tests/test_mathfn.py, against tanh in extended
precision; the largest seen is 1.6 eps, near x = 0.175).

`tanh` dispatches on the argument's type: float32 arguments (mix32 / mix16 networks) use
`tanh32`, which computes in float32 with a shorter polynomial (relative error below three
float32 epsilons), everything else `tanh64`.

Method: tanh(|x|) = e / (e + 2) with e = expm1(2|x|); expm1(y) = 2^n (expm1(r) + 1) - 1 with
y = n ln2 + r, |r| <= ln2/2, expm1(r) from its Taylor series to r^14 (truncation < 1e-19), and
2^n assembled in the exponent bits (n = floor(y/ln2 + 1/2), safe under fast-math reassociation).  2|x| is clamped at 40, where tanh is 1 in double.

The bound, to first order in the unit round-off u = eps/2, for the operations as written (n ln2_hi
and y - n ln2_hi exact, 2^n em exact, the series' truncation and ln2_lo's rounding negligible):
r carries one rounding (u); em = r + r·r·p carries u + (3.3 u |r² p| + u |r| e^r) / |em| (p within
1.3 u from its Horner steps and C3's rounding, r·r and the product one rounding each), at most
2.72 u (r = +ln2/2) and 2.44 u (r = -ln2/2); e = 2^n em + (2^n - 1) adds one rounding and
multiplies em's error by 2^n |em| / e; t = e / (e + 2) scales e's error by 2 / (e + 2) and adds
two roundings.  The worst case is n = 1, r = -ln2/2 (x just above ln2/4 = 0.173): e = 0.414,
e's error 1 + 1.41·2.44 = 4.45 u, t's 0.828·4.45 + 2 = 5.7 u = 2.85 eps (n = 0: at most 2.13 eps;
n >= 2: at most 1.7 eps).  The same steps in float32 give `tanh32` the same 2.85 float32 eps.
Kernels that call it must use error_model="numpy" (Python's model inserts a zero-division test
that prevents vectorisation).
"""
import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload


def _bitcast(src, dst, llvm_type):
    """An intrinsic reinterpreting the bits of a `src` scalar as a `dst` scalar (same width)."""
    @intrinsic
    def cast(typingctx, x):
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], llvm_type)

        return dst(src), codegen

    return cast


i64_as_f64 = _bitcast(types.int64, types.float64, ir.DoubleType())
i32_as_f32 = _bitcast(types.int32, types.float32, ir.FloatType())


@intrinsic
def fma64(typingctx, a, b, c):
    """a·b + c of float64s rounded once (LLVM's llvm.fma.f64: exact on every target, one
    instruction where the CPU has FMA), as PyTorch's fused kernels round."""
    def codegen(context, builder, signature, args):
        d = ir.DoubleType()
        fn = builder.module.declare_intrinsic("llvm.fma", [d], ir.FunctionType(d, [d, d, d]))
        return builder.call(fn, args)

    return types.float64(types.float64, types.float64, types.float64), codegen


_LN2_HI = 6.93147180369123816490e-01  # ln 2 rounded so that n * _LN2_HI is exact for |n| < 2^11
_LN2_LO = math.log(2.0) - _LN2_HI
_INV_LN2 = 1.0 / math.log(2.0)
_C = [1.0 / math.factorial(k) for k in range(2, 15)]
_C2, _C3, _C4, _C5, _C6, _C7, _C8, _C9, _C10, _C11, _C12, _C13, _C14 = _C


@njit(cache=True, inline="always", error_model="numpy", fastmath={"contract"})
def tanh64(x):
    """tanh(x) of a float64 with relative error < 3 eps (the module's bound: 2.85 eps), vectorisable;
    NaN propagates."""
    a = x if x >= 0.0 else -x
    y = 2.0 * a
    y = y if y < 40.0 else 40.0
    n = np.floor(y * _INV_LN2 + 0.5)
    r = (y - n * _LN2_HI) - n * _LN2_LO
    p = _C14
    p = p * r + _C13
    p = p * r + _C12
    p = p * r + _C11
    p = p * r + _C10
    p = p * r + _C9
    p = p * r + _C8
    p = p * r + _C7
    p = p * r + _C6
    p = p * r + _C5
    p = p * r + _C4
    p = p * r + _C3
    p = p * r + _C2
    em = r + r * r * p
    s = i64_as_f64((np.int64(n) + 1023) << 52)
    e = s * em + (s - 1.0)
    t = e / (e + 2.0)
    t = t if x >= 0.0 else -t
    return t if x == x else x


# float32 constants (a float64 constant would promote the whole computation to float64)
_F1 = np.float32(1.0)
_F2 = np.float32(2.0)
_F0 = np.float32(0.0)
_F_HALF = np.float32(0.5)
_F_YMAX = np.float32(20.0)                 # tanh(10) rounds to 1 in float32
_F_LN2_HI = np.float32(0.693359375)        # 9 significant bits: n * _F_LN2_HI exact for n <= 29
_F_LN2_LO = np.float32(math.log(2.0) - 0.693359375)
_F_INV_LN2 = np.float32(1.0 / math.log(2.0))
_FC2, _FC3, _FC4, _FC5, _FC6, _FC7, _FC8 = [np.float32(1.0 / math.factorial(k)) for k in range(2, 9)]


@njit(cache=True, inline="always", error_model="numpy", fastmath={"contract"})
def tanh32(x):
    """tanh(x) of a float32 computed in float32 (twice the vector width of tanh64, half the
    polynomial): the same method with expm1(r) to r^8 (truncation < 3e-10 relative) and 2|x|
    clamped at 20; relative error below three float32 epsilons (the module's bound: 2.85); NaN
    propagates."""
    a = x if x >= _F0 else -x
    y = _F2 * a
    y = y if y < _F_YMAX else _F_YMAX
    n = np.floor(y * _F_INV_LN2 + _F_HALF)
    r = (y - n * _F_LN2_HI) - n * _F_LN2_LO
    p = _FC8
    p = p * r + _FC7
    p = p * r + _FC6
    p = p * r + _FC5
    p = p * r + _FC4
    p = p * r + _FC3
    p = p * r + _FC2
    em = r + r * r * p
    s = i32_as_f32((np.int32(n) + np.int32(127)) << np.int32(23))
    e = s * em + (s - _F1)
    t = e / (e + _F2)
    t = t if x >= _F0 else -t
    return t if x == x else x


def cast_like(x, a):
    """x converted to the element type of array a (inside Numba kernels: float32 for float32
    arrays, float64 otherwise), e.g. to keep float32 arithmetic from promoting to float64."""
    return a.dtype.type(x)


@overload(cast_like, inline="always")
def _cast_like(x, a):
    if a.dtype == types.float32:
        return lambda x, a: np.float32(x)
    return lambda x, a: np.float64(x)


def tanh(x):
    """tanh in the precision of its argument, for Numba kernels: tanh32 for float32, tanh64
    otherwise (NumPy's tanh when called from Python)."""
    return np.tanh(x)


@overload(tanh)
def _tanh_by_type(x):
    if x == types.float32:
        return lambda x: tanh32(x)
    return lambda x: tanh64(x)
