"""Launch geometry and the CUDA copies of the shared scalar maths."""
from numba import config

from ..dual import cuda_device
from ..math import compile_math

MATH = compile_math(cuda_device)
# the simulator runs each thread in Python: small blocks are faster there
BLOCK = 32 if getattr(config, "ENABLE_CUDASIM", 0) else 128


def grid(n: int) -> tuple[int, int]:
    """(blocks, threads) covering n threads, one element each."""
    n = max(1, int(n))
    return (n + BLOCK - 1) // BLOCK, BLOCK
