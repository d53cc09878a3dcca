"""Numba kernel of the thermostats' scalar maths on the host: the Nosé-Hoover chain's half-step
(numdp.kernels.mdmath.nose_hoover_chain, the same function numdp.kernels.cuda.md compiles for the
device).  Units: 2K eV, kT eV, chain masses eV ps², times ps, chain velocities 1/ps.
"""
from __future__ import annotations

from numba import njit

from ..dual import cpu_inline
from ..mdmath import nose_hoover_chain

_nose_hoover_chain = cpu_inline(nose_hoover_chain)


@njit(cache=True, nogil=True, error_model="numpy")
def nose_hoover_chain_half_step(k2, dof, kt, q, h, nloop, weights, xi, vxi):
    """The chain's half-step h (ps) from 2K = k2 (eV, > 0) of the whole system: updates xi, vxi
    (M,) in place and returns the velocities' scale factor (numdp.kernels.mdmath.nose_hoover_chain;
    q (M,) chain masses, weights (w,) the Suzuki-Yoshida weights, nloop sub-cycles)."""
    return _nose_hoover_chain(k2, dof, kt, q, h, nloop, weights, xi, vxi)
