"""Descriptor contractions and their adjoints (reference §4, §6.1), twins of kernels/cpu/descriptor.py.

T_a = (1/nnei) Σ_slots rt ⊗ G (padding slots through G_pad, one row per (centre type, block));
D_a[col] = Σ_c T_a[c, m_col] T_a[c, k_col] for the column map of the layout in use (full or
folded, see numdp.kernels.cpu.descriptor.folded_rows); the adjoint of T follows a per-column
adjacency list (x, col, other) sorted by x, so each Tbar element is one thread's ordered sum.
"""
from numba import cuda

from .launch import row_col


@cuda.jit
def contract_T(atypes, rt, G, nbr, sec, G_pad, inv_nnei, T):
    """T (na, 4, M) float64 = inv_nnei Σ_p rt[p] ⊗ G[p] over the block-major slots of each atom
    (G[p] replaced by G_pad[ti, t] on padding slots, nbr < 0).  One thread per (atom, m)."""
    na = T.shape[0]
    a, m = row_col(T.shape[2])
    if a >= na:
        return
    ti = atypes[a]
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    for t in range(sec.shape[0] - 1):
        sel_t = sec[t + 1] - sec[t]
        base = na * sec[t] + a * sel_t
        for p in range(base, base + sel_t):
            if nbr[p] >= 0:
                g = G[p, m] * 1.0
            else:
                g = G_pad[ti, t, m]
            s0 += rt[p, 0] * g
            s1 += rt[p, 1] * g
            s2 += rt[p, 2] * g
            s3 += rt[p, 3] * g
    T[a, 0, m] = s0 * inv_nnei
    T[a, 1, m] = s1 * inv_nnei
    T[a, 2, m] = s2 * inv_nnei
    T[a, 3, m] = s3 * inv_nnei


@cuda.jit
def contract_D(T, colm, colk, D):
    """D (na, width) = Σ_c T[a, c, colm] T[a, c, colk], summed in float64 and stored in D's dtype."""
    a, col = row_col(D.shape[1])
    if a >= D.shape[0]:
        return
    m = colm[col]
    k = colk[col]
    D[a, col] = T[a, 0, m] * T[a, 0, k] + T[a, 1, m] * T[a, 1, k] + \
        T[a, 2, m] * T[a, 2, k] + T[a, 3, m] * T[a, 3, k]


@cuda.jit
def back_D(T, gD, adj_start, adj_col, adj_other, inv_nnei, Tbar):
    """Tbar (na, 4, M) = inv_nnei dE/dT from gD = dE/dD (na, width):
    dE/dT[c, x] = Σ_{(col, other) adjacent to x} gD[col] T[c, other], in float64.
    One thread per (atom, c * M + x)."""
    M = Tbar.shape[2]
    a, cx = row_col(4 * M)
    if a >= Tbar.shape[0]:
        return
    c = cx // M
    x = cx - c * M
    s = 0.0
    for q in range(adj_start[x], adj_start[x + 1]):
        s += gD[a, adj_col[q]] * 1.0 * T[a, c, adj_other[q]]
    Tbar[a, c, x] = s * inv_nnei
