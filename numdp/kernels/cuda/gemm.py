"""Matrix products as numba.cuda kernels, for where cuBLAS cannot be called: inside a CUDA graph
capture, since CuPy (14.2) refuses every cuBLAS call on a capturing stream (numdp.md.device_graph,
`CUDABackend.kernel_products`).

C (n, k) = A (n, m) @ B (m, k) for arrays of any strides (a transposed weight matrix is a view),
accumulated in C's dtype (float64; float32 for MIX-32 and for MIX-16's float16-rounded operands).
Tiles of TILE x TILE elements of A and B pass through shared memory; each thread forms one element
of C and adds its m products in increasing order of the inner index, so the bits do not depend on
the tile or the grid (TILE is smaller under the simulator, which runs each thread in Python).
Made for the small products of a small system's force call, where launches, not flops, take the
time: it has none of cuBLAS's register blocking or tensor cores, so on large products it is many
times slower.
"""
import numpy as np
from numba import config, cuda, float32, float64

from .launch import made_by

TILE = 4 if getattr(config, "ENABLE_CUDASIM", 0) else 16

_KERNELS: dict = {}


def gemm_for(dtype):
    """The product kernel accumulating in `dtype` (float64 or float32)."""
    key = np.dtype(dtype).name
    if key not in _KERNELS:
        _KERNELS[key] = made_by(_build(float32 if key == "float32" else float64), __name__, "gemm_for", (key,))
    return _KERNELS[key]


def launch_dims(n: int, k: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(grid, block) of `gemm_for` for an (n, k) result: a block of TILE x TILE threads per tile."""
    return ((k + TILE - 1) // TILE, (n + TILE - 1) // TILE), (TILE, TILE)


def _build(nbtype):
    @cuda.jit
    def gemm(A, B, C):
        """C (n, k) = A (n, m) @ B (m, k); one thread per element of C (launch_dims)."""
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        row = cuda.blockIdx.y * TILE + ty
        col = cuda.blockIdx.x * TILE + tx
        n = A.shape[0]
        m = A.shape[1]
        k = B.shape[1]
        As = cuda.shared.array((TILE, TILE), nbtype)
        Bs = cuda.shared.array((TILE, TILE), nbtype)
        zero = nbtype(0.0)
        acc = zero
        for t0 in range(0, m, TILE):
            i = t0 + tx
            As[ty, tx] = A[row, i] if row < n and i < m else zero
            j = t0 + ty
            Bs[ty, tx] = B[j, col] if j < m and col < k else zero
            cuda.syncthreads()
            # the tile's products in order (of the last tile, its first m - t0)
            for q in range(min(TILE, m - t0)):
                acc += As[ty, q] * Bs[q, tx]
            cuda.syncthreads()
        if row < n and col < k:
            C[row, col] = acc

    return gemm
