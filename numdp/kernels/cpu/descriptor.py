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
def contract_T_members(u0, u1, ulo, ustart, pair_atom, rt, G, T):
    """T[a] (4, M) += rt[p] (x) G[u - ulo] for every member pair ustart[u] <= p < ustart[u+1] of
    the shared embedding rows u0..u1-1, a = pair_atom[p] (`numdp.kernels.cpu.train.merge_inputs`,
    `order_members`): `contract_T`'s pair sums, one block of rows at a time (the training passes
    call it right after the block's embedding, while G is in cache); `reduce_T` then adds the
    workers' sums and the padding."""
    M = T.shape[2]
    for u in range(u0, u1):
        r = u - ulo
        for p in range(ustart[u], ustart[u + 1]):
            a = pair_atom[p]
            for c in range(4):
                rc = rt[p, c]
                for m in range(M):
                    T[a, c, m] += rc * G[r, m]


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def reduce_T(parts, a0, a1, atypes, npad, rt_pad, G_pad, padding, inv_nnei, T):
    """T[a] = inv_nnei (Σ_w parts[w, a] + [padding] Σ_t npad[a, t] rt_pad[t_a, t] (x) G_pad[t_a, t])
    for chunk atoms a0..a1-1: the workers' pair sums (`contract_T_members`, in worker order)
    and the padding slots of every block.  parts: (nw, na, 4, M); T: (na, 4, M)."""
    nw = parts.shape[0]
    ntypes = npad.shape[1]
    M = T.shape[2]
    for a in range(a0, a1):
        for c in range(4):
            for m in range(M):
                T[a, c, m] = parts[0, a, c, m]
        for w in range(1, nw):
            for c in range(4):
                for m in range(M):
                    T[a, c, m] += parts[w, a, c, m]
        if padding:
            ti = atypes[a]
            for t in range(ntypes):
                add_padding(T[a], npad[a, t], rt_pad[ti, t], G_pad[ti, t])
        scale(T[a], inv_nnei)


@njit(cache=True, nogil=True, inline="always")
def folded_rows(naxis, width):
    """(M, offset of row naxis) of a D layout of `width` columns per atom, full or folded.

    Full layout: D[m * naxis + k] for m < M, k < naxis.  Folded layout (the block m, k < naxis
    of D is symmetric, so its lower triangle is dropped): first the upper triangle of that block
    row by row (m <= k, naxis (naxis + 1) / 2 entries), then the rows m >= naxis column by column
    (D[m, k] at offset + k (M - naxis) + m - naxis), so that the kernels run along m without
    horizontal sums.
    """
    nb = naxis * (naxis + 1) // 2
    return naxis + (width - nb) // naxis, nb


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def contract_D(T, naxis, folded, D):
    """D (na, width): D[m, k] = sum_c T[a, c, m] T[a, c, k], summed in float64 and stored in
    D's dtype, in the full (width = M*naxis) or folded layout (`folded_rows`).  T: (na, 4, Mp)
    with Mp >= M (columns past M, the padding of compressed models, are ignored)."""
    if folded:   # a constant in each inlined copy of the body (as a run-time flag: 40 % slower)
        _contract_D(T, T, naxis, True, D, False)
    else:
        _contract_D(T, T, naxis, False, D, False)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def contract_D_tangent(T, Td, naxis, Dd):
    """Dd (na, M*naxis), full layout: the tangent Ḋ = Ṫᵀ T< + Tᵀ Ṫ< of D = Tᵀ T< (`contract_D`)
    for the tangent Td (na, 4, M) of T (the training passes)."""
    _contract_D(Td, T, naxis, False, Dd, False)
    _contract_D(T, Td, naxis, False, Dd, True)


@njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH, error_model="numpy")
def _contract_D(T, B, naxis, folded, D, add):
    """Body of contract_D for the bilinear form D[m, k] (+)= sum_c T[a, c, m] B[a, c, k] (B is T
    for D itself): rows m of D one by one (row m < naxis starts at k = m when folded).  folded
    and add are constants in each inlined copy; folded needs B = T (symmetric block)."""
    if folded:
        M, rest = folded_rows(naxis, D.shape[1])
    else:
        M, rest = D.shape[1] // naxis, 0
    for a in range(T.shape[0]):
        Da = D[a]
        Ta = T[a]
        Ba = B[a]
        for m in range(M):
            if folded and m >= naxis:
                break
            if folded:
                start, k0 = m * naxis - m * (m - 1) // 2, m
            else:
                start, k0 = m * naxis, 0
            row = Da[start:start + naxis - k0]
            t0 = Ta[0, m]
            t1 = Ta[1, m]
            t2 = Ta[2, m]
            t3 = Ta[3, m]
            a0 = Ba[0, k0:naxis]
            a1 = Ba[1, k0:naxis]
            a2 = Ba[2, k0:naxis]
            a3 = Ba[3, k0:naxis]
            if add:
                for k in range(naxis - k0):
                    row[k] += t0 * a0[k] + t1 * a1[k] + t2 * a2[k] + t3 * a3[k]
            else:
                for k in range(naxis - k0):
                    row[k] = t0 * a0[k] + t1 * a1[k] + t2 * a2[k] + t3 * a3[k]
        if folded:
            R = M - naxis
            b0 = Ta[0, naxis:M]
            b1 = Ta[1, naxis:M]
            b2 = Ta[2, naxis:M]
            b3 = Ta[3, naxis:M]
            for k in range(naxis):
                col = Da[rest + k * R:rest + (k + 1) * R]
                t0 = Ta[0, k]
                t1 = Ta[1, k]
                t2 = Ta[2, k]
                t3 = Ta[3, k]
                for i in range(R):
                    col[i] = t0 * b0[i] + t1 * b1[i] + t2 * b2[i] + t3 * b3[i]


@njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH, error_model="numpy")
def _row_dots(row, A0, A1, A2, A3):
    """(sum_k row[k] A_c[k] for c = 0..3) over k < len(row), in float64."""
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    for k in range(row.shape[0]):
        r = np.float64(row[k])
        s0 += r * A0[k]
        s1 += r * A1[k]
        s2 += r * A2[k]
        s3 += r * A3[k]
    return s0, s1, s2, s3


@njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH, error_model="numpy")
def _put(out, m, scale, s0, s1, s2, s3, add):
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


@njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH, error_model="numpy")
def back_D_row(A, g, naxis, folded, scale, out, acc, add):
    """One atom's adjoint of T from that of D = AᵀA<, with A (4, M) held fixed on the other factor:
    out[c, m] (+)= scale (sum_k g[m, k] A[c, k] + [m < naxis] sum_m' g[m', m] A[c, m']).

    g: dE/dD of the atom in the full (M*naxis,) or folded layout (`folded_rows`; a folded entry
    of the symmetric block is the adjoint of both D[m, k] and D[k, m]), any float dtype (sums run
    in float64); out: (4, M), overwritten unless `add`; acc: (4 + naxis, naxis) float64 scratch.
    A and out may have more than M columns (padding); only the first M are read or written.
    Rows m < naxis use S = g< + g<ᵀ (the symmetric block's adjoint, both terms at once); the
    other rows are read once: a dot product per (c, m), and the second term accumulates in acc.
    """
    S = acc[4:]
    if folded:
        M, rest = folded_rows(naxis, g.shape[0])
        pos = 0
        for m in range(naxis):
            S[m, m] = 2.0 * np.float64(g[pos])
            for k in range(m + 1, naxis):
                v = np.float64(g[pos + k - m])
                S[m, k] = v
                S[k, m] = v
            pos += naxis - m
    else:
        M, rest = g.shape[0] // naxis, naxis * naxis
        for m in range(naxis):
            for k in range(naxis):
                S[m, k] = np.float64(g[m * naxis + k]) + np.float64(g[k * naxis + m])
    A0 = A[0]
    A1 = A[1]
    A2 = A[2]
    A3 = A[3]
    for m in range(naxis):
        s0, s1, s2, s3 = _row_dots(S[m], A0, A1, A2, A3)
        _put(out, m, scale, s0, s1, s2, s3, add)
    if folded:
        _back_D_columns(A, g, naxis, M, rest, scale, out, add)
        return
    B = acc[:4]
    B[:, :] = 0.0
    B0 = B[0]
    B1 = B[1]
    B2 = B[2]
    B3 = B[3]
    for m in range(naxis, M):
        row = g[rest + (m - naxis) * naxis:rest + (m - naxis + 1) * naxis]
        t0 = A0[m]
        t1 = A1[m]
        t2 = A2[m]
        t3 = A3[m]
        s0, s1, s2, s3 = _row_dots(row, A0, A1, A2, A3)
        for k in range(naxis):
            r = np.float64(row[k])
            B0[k] += r * t0
            B1[k] += r * t1
            B2[k] += r * t2
            B3[k] += r * t3
        _put(out, m, scale, s0, s1, s2, s3, add)
    for c in range(4):
        for k in range(naxis):
            out[c, k] += scale * B[c, k]


@njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH, error_model="numpy")
def _back_D_columns(A, g, naxis, M, rest, scale, out, add):
    """back_D_row's rows m >= naxis in the folded layout, one column k at a time: out[c, m]
    (+)= scale sum_k g[m, k] A[c, k] runs along m (no horizontal sums), and the second term
    out[c, k] += scale sum_m g[m, k] A[c, m] is one dot product per (c, k)."""
    R = M - naxis
    O0 = out[0, naxis:M]
    O1 = out[1, naxis:M]
    O2 = out[2, naxis:M]
    O3 = out[3, naxis:M]
    if not add:
        for i in range(R):
            O0[i] = 0.0
            O1[i] = 0.0
            O2[i] = 0.0
            O3[i] = 0.0
    b0 = A[0, naxis:M]
    b1 = A[1, naxis:M]
    b2 = A[2, naxis:M]
    b3 = A[3, naxis:M]
    for k in range(naxis):
        col = g[rest + k * R:rest + (k + 1) * R]
        w0 = scale * A[0, k]
        w1 = scale * A[1, k]
        w2 = scale * A[2, k]
        w3 = scale * A[3, k]
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        for i in range(R):
            r = np.float64(col[i])
            O0[i] += w0 * r
            O1[i] += w1 * r
            O2[i] += w2 * r
            O3[i] += w3 * r
            s0 += r * b0[i]
            s1 += r * b1[i]
            s2 += r * b2[i]
            s3 += r * b3[i]
        out[0, k] += scale * s0
        out[1, k] += scale * s1
        out[2, k] += scale * s2
        out[3, k] += scale * s3


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def back_D(T, gD, naxis, folded, inv_nnei, Tbar):
    """From dE/dD (na, width), full or folded layout (`folded_rows`), to
    Tbar = inv_nnei * dE/dT (na, 4, Mp).

    dE/dT[c, m] = sum_k gD[m, k] T[c, k] + [m < naxis] sum_m' gD[m', m] T[c, m'].
    T and Tbar may carry Mp > M columns (compressed models pad M to a whole number of SIMD
    vectors); Tbar's padding columns are set to zero.
    """
    acc = np.empty((4 + naxis, naxis))
    if folded:
        M = folded_rows(naxis, gD.shape[1])[0]
    else:
        M = gD.shape[1] // naxis
    for a in range(T.shape[0]):
        back_D_row(T[a], gD[a], naxis, folded, inv_nnei, Tbar[a], acc, False)
        for c in range(4):
            for m in range(M, Tbar.shape[2]):
                Tbar[a, c, m] = 0.0
