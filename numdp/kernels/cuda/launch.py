"""Launch geometry and the CUDA copies of the shared scalar maths."""
from numba import config, cuda

from ..dual import cuda_device
from ..math import compile_math

MATH = compile_math(cuda_device)
# the simulator runs each thread in Python: small blocks are faster there
BLOCK = 32 if getattr(config, "ENABLE_CUDASIM", 0) else 128


def grid(n: int) -> tuple[int, int]:
    """(blocks, threads) covering n threads, one element each."""
    n = max(1, int(n))
    return (n + BLOCK - 1) // BLOCK, BLOCK


def grid2(n: int, k: int) -> tuple[int, int]:
    """(blocks, threads) for a flat launch over an (n, k) array (kernels call `row_col(k)`)."""
    return grid(n * k)


# the simulator starts one Python thread per CUDA thread (~0.25 ms each): grid-stride kernels run
# there on a fixed small grid of two blocks of eight (both strides exercised), ~25x faster
SIM_STRIDED = (2, 8)


def strided(n: int) -> tuple[int, int]:
    """(blocks, threads) for a grid-stride kernel over n elements (`for i in range(cuda.grid(1),
    n, cuda.gridsize(1))`): one element per thread on a GPU (as `grid`), SIM_STRIDED under the
    simulator.  The results do not depend on the grid: each element is one thread's fixed-order
    work."""
    return SIM_STRIDED if getattr(config, "ENABLE_CUDASIM", 0) else grid(n)


def strided2(n: int, k: int) -> tuple[int, int]:
    """`strided` over a flat (n, k) array."""
    return strided(n * k)


@cuda.jit(device=True)
def split(idx, k):
    """(row, column) of flat index idx over rows of k columns (grid-stride kernels)."""
    r = idx // k
    return r, idx - r * k


@cuda.jit(device=True)
def row_col(k):
    """(row, column) of this thread in a flat launch over rows of k columns."""
    i = cuda.grid(1)
    r = i // k
    return r, i - r * k
