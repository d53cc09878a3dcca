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
    and stored in D's dtype."""
    na, _, M = T.shape
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


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def back_D(T, gD, naxis, inv_nnei, Tbar):
    """From dE/dD (na, M*naxis) to Tbar = inv_nnei * dE/dT (na, 4, M).

    dE/dT[c, m] = sum_k gD[m, k] T[c, k] + [m < naxis] sum_m' gD[m', m] T[c, m'].
    One pass over gD per atom: the first sum is a dot product per (c, m); the second
    accumulates in a (4, naxis) buffer.  Sums run in float64 whatever gD's dtype.
    """
    na, _, M = T.shape
    acc = np.empty((4, naxis))
    for a in range(na):
        Ta = T[a]
        Tb = Tbar[a]
        g = gD[a]
        T0 = Ta[0]
        T1 = Ta[1]
        T2 = Ta[2]
        T3 = Ta[3]
        acc[:, :] = 0.0
        A0 = acc[0]
        A1 = acc[1]
        A2 = acc[2]
        A3 = acc[3]
        for m in range(M):
            row = g[m * naxis:(m + 1) * naxis]
            t0 = T0[m]
            t1 = T1[m]
            t2 = T2[m]
            t3 = T3[m]
            s0 = 0.0
            s1 = 0.0
            s2 = 0.0
            s3 = 0.0
            for k in range(naxis):
                r = np.float64(row[k])
                s0 += r * T0[k]
                s1 += r * T1[k]
                s2 += r * T2[k]
                s3 += r * T3[k]
                A0[k] += r * t0
                A1[k] += r * t1
                A2[k] += r * t2
                A3[k] += r * t3
            Tb[0, m] = s0
            Tb[1, m] = s1
            Tb[2, m] = s2
            Tb[3, m] = s3
        for c in range(4):
            for k in range(naxis):
                Tb[c, k] += acc[c, k]
            for m in range(M):
                Tb[c, m] *= inv_nnei
