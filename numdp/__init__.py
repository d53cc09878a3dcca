"""numdp: Deep Potential (se_e2_a) models and molecular dynamics with Numba kernels."""

__version__ = "0.1.0"
