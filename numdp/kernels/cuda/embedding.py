"""Fused per-pair embedding: the whole embedding net of one slot in one thread, the alternative to
batched matrix products + layer kernels (numdp.kernels.cuda.layers).  Which is faster depends on the
GPU (matrix-unit rate against the per-thread FMA rate and local-memory traffic): tools/bench_gpu.py
times both (`CUDAEvaluator.embedding = "gemm" | "fused"`).

Value and forward-mode slope of every layer are carried in per-thread local arrays of MAX_WIDTH
entries, in the nets' dtype (float64 or float32; mix16's half operands need the matrix products).
Same arithmetic as the batched path up to the summation order of each dot product.
"""
import numpy as np
from numba import cuda, float32, float64

from .launch import MATH, made_by

_activation = MATH.activation

MAX_WIDTH = 256   # widest layer the fused kernel takes (water.dp: 100)

_KERNELS: dict = {}


def embed_fused_for(dtype):
    """The fused kernel for nets of `dtype` (float64 or float32)."""
    key = np.dtype(dtype).name
    if key not in _KERNELS:
        _KERNELS[key] = made_by(_build(float32 if key == "float32" else float64), __name__,
                                "embed_fused_for", (key,))
    return _KERNELS[key]


def _build(nbtype):
    @cuda.jit
    def embed_fused(x, W, b, idt, woff, boff, widths, modes, acts, G, Gp):
        """G, Gp (n, M) = net(x) and d net/dx for x (n,); the net's layers packed flat: layer l
        has weights W[woff[l]:] (widths[l] x widths[l+1], row-major), b and idt at boff[l],
        residual mode modes[l], activation code acts[l] (numdp.model.activation).  One thread
        per row."""
        for p in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
            y = cuda.local.array((2, MAX_WIDTH), nbtype)
            s = cuda.local.array((2, MAX_WIDTH), nbtype)
            one = nbtype(1.0)
            y[0, 0] = x[p]
            s[0, 0] = one
            cur = 0
            n_in = 1
            for l in range(modes.shape[0]):
                n_out = widths[l + 1]
                nxt = 1 - cur
                w0 = woff[l]
                b0 = boff[l]
                mode = modes[l]
                act = acts[l]
                for c in range(n_out):
                    z = nbtype(0.0)
                    zs = nbtype(0.0)
                    for i in range(n_in):
                        w = W[w0 + i * n_out + c]
                        z += y[cur, i] * w
                        zs += s[cur, i] * w
                    h, d = _activation(act, z + b[b0 + c])
                    v = idt[b0 + c] * h
                    sl = idt[b0 + c] * (d * zs)
                    if mode == 1:
                        v += y[cur, c]
                        sl += s[cur, c]
                    elif mode == 2:
                        cc = c if c < n_in else c - n_in
                        v += y[cur, cc]
                        sl += s[cur, cc]
                    y[nxt, c] = v
                    s[nxt, c] = sl
                cur = nxt
                n_in = n_out
            for c in range(G.shape[1]):
                G[p, c] = y[cur, c]
                Gp[p, c] = s[cur, c]

    return embed_fused
