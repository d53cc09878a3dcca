"""Descriptor contraction kernels (reference §4 and §6.1).

T_i = (1/nnei) sum_slots rt_j (x) G_j, padding slots included through one constant row per
(centre type, neighbour block); D_i = T_i^T T_i[:, :M<].
"""
import numpy as np
from numba import njit

from .envmat import FASTMATH


@njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH, error_model="numpy")
def add_padding(Ta, npd, rt_pad, G_pad):
    """Ta (4, M) += npd * rt_pad (4,) (x) G_pad (M,): the padding slots of one type block."""
    if npd > 0:
        for c in range(4):
            rc = npd * rt_pad[c]
            if rc != 0.0:
                row = Ta[c]
                for m in range(row.shape[0]):
                    row[m] += rc * G_pad[m]


@njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH, error_model="numpy")
def scale(Ta, factor):
    """Ta (4, M) *= factor."""
    for c in range(4):
        row = Ta[c]
        for m in range(row.shape[0]):
            row[m] *= factor


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def contract_T(atypes, rt, G, poff, npad, rt_pad, G_pad, inv_nnei, T):
    """T (na, 4, M) = inv_nnei * (sum over pairs rt (x) G + npad * rt_pad (x) G_pad).

    rt: (npairs, 4); G: (npairs, M); poff: (ntypes, na+1); npad: (na, ntypes);
    rt_pad: (ntypes, ntypes, 4) and G_pad: (ntypes, ntypes, M) indexed [centre, block].
    """
    ntypes = poff.shape[0]
    na = T.shape[0]
    M = T.shape[2]
    for a in range(na):
        ti = atypes[a]
        for c in range(4):
            for m in range(M):
                T[a, c, m] = 0.0
        for t in range(ntypes):
            for p in range(poff[t, a], poff[t, a + 1]):
                for c in range(4):
                    rc = rt[p, c]
                    for m in range(M):
                        T[a, c, m] += rc * G[p, m]
            add_padding(T[a], npad[a, t], rt_pad[ti, t], G_pad[ti, t])
        scale(T[a], inv_nnei)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def contract_D(T, naxis, D):
    """D (na, M*naxis): D[a, m*naxis + k] = sum_c T[a, c, m] T[a, c, k], summed in float64
    and stored in D's dtype.  T: (na, 4, Mp) with Mp >= M (columns past M, the padding of
    compressed models, are ignored)."""
    na = T.shape[0]
    M = D.shape[1] // naxis
    for a in range(na):
        Da = D[a]
        Ta = T[a]
        for m in range(M):
            row = Da[m * naxis:(m + 1) * naxis]
            t0 = Ta[0, m]
            t1 = Ta[1, m]
            t2 = Ta[2, m]
            t3 = Ta[3, m]
            a0 = Ta[0]
            a1 = Ta[1]
            a2 = Ta[2]
            a3 = Ta[3]
            for k in range(naxis):
                row[k] = t0 * a0[k] + t1 * a1[k] + t2 * a2[k] + t3 * a3[k]


@njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH, error_model="numpy")
def back_D_row(A, g, naxis, scale, out, acc, add):
    """One atom's adjoint of T from that of D = AᵀA<, with A (4, M) held fixed on the other factor:
    out[c, m] (+)= scale (sum_k g[m, k] A[c, k] + [m < naxis] sum_m' g[m', m] A[c, m']).

    g: (M*naxis,) dE/dD of the atom (any float dtype; sums run in float64); out: (4, M),
    overwritten unless `add`; acc: (4, naxis) float64 scratch.  One pass over g: the first sum
    is a dot product per (c, m), the second accumulates in acc.  A and out may have more than
    M columns (padding); only the first M are read or written.
    """
    M = g.shape[0] // naxis
    A0 = A[0]
    A1 = A[1]
    A2 = A[2]
    A3 = A[3]
    acc[:, :] = 0.0
    B0 = acc[0]
    B1 = acc[1]
    B2 = acc[2]
    B3 = acc[3]
    for m in range(M):
        row = g[m * naxis:(m + 1) * naxis]
        t0 = A0[m]
        t1 = A1[m]
        t2 = A2[m]
        t3 = A3[m]
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        for k in range(naxis):
            r = np.float64(row[k])
            s0 += r * A0[k]
            s1 += r * A1[k]
            s2 += r * A2[k]
            s3 += r * A3[k]
            B0[k] += r * t0
            B1[k] += r * t1
            B2[k] += r * t2
            B3[k] += r * t3
        if add:
            out[0, m] += scale * s0
            out[1, m] += scale * s1
            out[2, m] += scale * s2
            out[3, m] += scale * s3
        else:
            out[0, m] = scale * s0
            out[1, m] = scale * s1
            out[2, m] = scale * s2
            out[3, m] = scale * s3
    for c in range(4):
        for k in range(naxis):
            out[c, k] += scale * acc[c, k]


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def back_D(T, gD, naxis, inv_nnei, Tbar):
    """From dE/dD (na, M*naxis) to Tbar = inv_nnei * dE/dT (na, 4, Mp).

    dE/dT[c, m] = sum_k gD[m, k] T[c, k] + [m < naxis] sum_m' gD[m', m] T[c, m'].
    T and Tbar may carry Mp > M columns (compressed models pad M to a whole number of SIMD
    vectors); Tbar's padding columns are set to zero.
    """
    acc = np.empty((4, naxis))
    M = gD.shape[1] // naxis
    for a in range(T.shape[0]):
        back_D_row(T[a], gD[a], naxis, inv_nnei, Tbar[a], acc, False)
        for c in range(4):
            for m in range(M, Tbar.shape[2]):
                Tbar[a, c, m] = 0.0
