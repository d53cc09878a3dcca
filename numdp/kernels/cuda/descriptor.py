"""Descriptor contractions and their adjoints (reference §4, §6.1), twins of kernels/cpu/descriptor.py.

T_a = (1/nnei) Σ_slots rt ⊗ G (padding slots through G_pad, one row per (centre type, block),
added as npad times one term as on the CPU);
D_a[col] = Σ_c T_a[c, m_col] T_a[c, k_col] for the column map of the layout in use (full or
folded, see numdp.kernels.cpu.descriptor.folded_rows); the adjoint of T follows a per-column
adjacency list (x, col, other) sorted by x, so each Tbar element is one thread's ordered sum.
"""
from numba import cuda, float64

from .launch import split


@cuda.jit(device=True)
def add_padding(s0, s1, s2, s3, rt, ppad, npad, g_pad):
    """(s0, s1, s2, s3) + npad * rt[ppad] * g_pad: the npad padding slots of one type block (each
    holds the padding row rt[ppad] = rt_pad[ti, t]) as one term, as the CPU's add_padding does
    (a component whose npad * rt_c is zero adds nothing)."""
    if npad > 0:
        r0 = npad * rt[ppad, 0]
        r1 = npad * rt[ppad, 1]
        r2 = npad * rt[ppad, 2]
        r3 = npad * rt[ppad, 3]
        if r0 != 0.0:
            s0 += r0 * g_pad
        if r1 != 0.0:
            s1 += r1 * g_pad
        if r2 != 0.0:
            s2 += r2 * g_pad
        if r3 != 0.0:
            s3 += r3 * g_pad
    return s0, s1, s2, s3


@cuda.jit(device=True)
def add_slot(s0, s1, s2, s3, rt, p, g):
    """(s0, s1, s2, s3) + rt[p] * g: one occupied slot's term of T[a, :, m] (g = G[p, m])."""
    return s0 + rt[p, 0] * g, s1 + rt[p, 1] * g, s2 + rt[p, 2] * g, s3 + rt[p, 3] * g


@cuda.jit(device=True)
def block_slots(na, a, sec, t):
    """(first, end) slot indices of chunk atom a's type-t block in the block-major layout."""
    sel_t = sec[t + 1] - sec[t]
    base = na * sec[t] + a * sel_t
    return base, base + sel_t


@cuda.jit(device=True)
def store_T(T, a, m, s0, s1, s2, s3, inv_nnei):
    """T[a, :, m] = (s0, s1, s2, s3) * inv_nnei."""
    T[a, 0, m] = s0 * inv_nnei
    T[a, 1, m] = s1 * inv_nnei
    T[a, 2, m] = s2 * inv_nnei
    T[a, 3, m] = s3 * inv_nnei


@cuda.jit
def contract_T(atypes, rt, G, nbr, sec, G_pad, inv_nnei, T):
    """T (na, 4, M) float64 = inv_nnei Σ_p rt[p] ⊗ G[p] over the block-major slots of each atom:
    per type block the occupied slots (nbr >= 0) in slot order, then the padding slots as one term
    npad rt_pad ⊗ G_pad[ti, t] (`add_padding`; the CPU's order).  Padding rows of G are never
    read.  One thread per (atom, m)."""
    na = T.shape[0]
    ncol = T.shape[2]
    for idx in range(cuda.grid(1), na * ncol, cuda.gridsize(1)):
        a, m = split(idx, ncol)
        ti = atypes[a]
        s0 = s1 = s2 = s3 = 0.0
        for t in range(sec.shape[0] - 1):
            p0, p1 = block_slots(na, a, sec, t)
            npad = 0
            ppad = p0
            for p in range(p0, p1):
                if nbr[p] >= 0:
                    s0, s1, s2, s3 = add_slot(s0, s1, s2, s3, rt, p, G[p, m] * 1.0)
                else:
                    npad += 1
                    ppad = p
            s0, s1, s2, s3 = add_padding(s0, s1, s2, s3, rt, ppad, npad, G_pad[ti, t, m])
        store_T(T, a, m, s0, s1, s2, s3, inv_nnei)


@cuda.jit
def contract_T_team(atypes, rt, G, nbr, sec, G_pad, inv_nnei, T):
    """contract_T by teams (launch.teams, KernelForm.TEAM): a block per atom, each thread the
    channels m0..m3 = mg + lane + (0, 1, 2, 3) * team of each group mg of 4 * team channels, so
    that a slot's loads of nbr and rt serve four channels and its four loads of G are
    independent.  Each T[a, c, m] is the same ordered sum as in contract_T: the same bits."""
    na = T.shape[0]
    ncol = T.shape[2]
    lane = cuda.threadIdx.x
    team = cuda.blockDim.x
    for a in range(cuda.blockIdx.x, na, cuda.gridDim.x):
        ti = atypes[a]
        for mg in range(0, ncol, 4 * team):
            m0 = mg + lane
            m1 = m0 + team
            m2 = m1 + team
            m3 = m2 + team
            a0 = a1 = a2 = a3 = 0.0
            b0 = b1 = b2 = b3 = 0.0
            c0 = c1 = c2 = c3 = 0.0
            d0 = d1 = d2 = d3 = 0.0
            for t in range(sec.shape[0] - 1):
                p0, p1 = block_slots(na, a, sec, t)
                npad = 0
                ppad = p0
                for p in range(p0, p1):
                    if nbr[p] >= 0:
                        if m0 < ncol:
                            a0, a1, a2, a3 = add_slot(a0, a1, a2, a3, rt, p, G[p, m0] * 1.0)
                        if m1 < ncol:
                            b0, b1, b2, b3 = add_slot(b0, b1, b2, b3, rt, p, G[p, m1] * 1.0)
                        if m2 < ncol:
                            c0, c1, c2, c3 = add_slot(c0, c1, c2, c3, rt, p, G[p, m2] * 1.0)
                        if m3 < ncol:
                            d0, d1, d2, d3 = add_slot(d0, d1, d2, d3, rt, p, G[p, m3] * 1.0)
                    else:
                        npad += 1
                        ppad = p
                if m0 < ncol:
                    a0, a1, a2, a3 = add_padding(a0, a1, a2, a3, rt, ppad, npad, G_pad[ti, t, m0])
                if m1 < ncol:
                    b0, b1, b2, b3 = add_padding(b0, b1, b2, b3, rt, ppad, npad, G_pad[ti, t, m1])
                if m2 < ncol:
                    c0, c1, c2, c3 = add_padding(c0, c1, c2, c3, rt, ppad, npad, G_pad[ti, t, m2])
                if m3 < ncol:
                    d0, d1, d2, d3 = add_padding(d0, d1, d2, d3, rt, ppad, npad, G_pad[ti, t, m3])
            if m0 < ncol:
                store_T(T, a, m0, a0, a1, a2, a3, inv_nnei)
            if m1 < ncol:
                store_T(T, a, m1, b0, b1, b2, b3, inv_nnei)
            if m2 < ncol:
                store_T(T, a, m2, c0, c1, c2, c3, inv_nnei)
            if m3 < ncol:
                store_T(T, a, m3, d0, d1, d2, d3, inv_nnei)


@cuda.jit
def contract_D(T, colm, colk, D):
    """D (na, width) = Σ_c T[a, c, colm] T[a, c, colk], summed in float64 and stored in D's dtype."""
    ncol = D.shape[1]
    for idx in range(cuda.grid(1), D.shape[0] * ncol, cuda.gridsize(1)):
        a, col = split(idx, ncol)
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
    ncol = 4 * M
    for idx in range(cuda.grid(1), Tbar.shape[0] * ncol, cuda.gridsize(1)):
        a, cx = split(idx, ncol)
        c = cx // M
        x = cx - c * M
        s = 0.0
        for q in range(adj_start[x], adj_start[x + 1]):
            s += gD[a, adj_col[q]] * 1.0 * T[a, c, adj_other[q]]
        Tbar[a, c, x] = s * inv_nnei


@cuda.jit
def unfold_gD(gD, colmap, scale, Gm):
    """Gm[a, m, k] = scale * gD[a, colmap[m, k]] in float64, zero where colmap is -1 (the folded
    layout's dropped lower triangle): the adjoint of D as an (M, naxis) matrix per atom, for
    back_D as two batched matrix products (numdp.model.cuda_evaluator.back_D_products)."""
    M = Gm.shape[1]
    naxis = Gm.shape[2]
    ncol = M * naxis
    for idx in range(cuda.grid(1), Gm.shape[0] * ncol, cuda.gridsize(1)):
        a, mk = split(idx, ncol)
        m = mk // naxis
        k = mk - m * naxis
        col = colmap[m, k]
        # float64() first: under the simulator (NumPy's promotion) a Python float times a float32
        # stays float32
        Gm[a, m, k] = float64(gD[a, col]) * scale if col >= 0 else 0.0
