"""Launch geometry and the CUDA copies of the shared scalar maths."""
from numba import config, cuda

from ..dual import cuda_device
from ..math import compile_math

MATH = compile_math(cuda_device)
# the simulator runs each thread as a Python thread, the whole block even past the end of the
# data: blocks of 8 waste fewer of them on the tiny systems simulated in tests (no kernel launched
# through `grid` depends on the block size)
BLOCK = 8 if getattr(config, "ENABLE_CUDASIM", 0) else 128


def grid(n: int) -> tuple[int, int]:
    """(blocks, threads) covering n threads, one element each."""
    n = max(1, int(n))
    return (n + BLOCK - 1) // BLOCK, BLOCK


def grid2(n: int, k: int) -> tuple[int, int]:
    """(blocks, threads) for a flat launch over an (n, k) array (kernels call `row_col(k)`)."""
    return grid(n * k)


@cuda.jit(device=True)
def row_col(k):
    """(row, column) of this thread in a flat launch over rows of k columns."""
    i = cuda.grid(1)
    r = i // k
    return r, i - r * k
