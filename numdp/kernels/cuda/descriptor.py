"""Descriptor contractions and their adjoints (reference §4, §6.1), twins of kernels/cpu/descriptor.py.

T_a = (1/nnei) Σ_slots rt ⊗ G (padding slots through G_pad, one row per (centre type, block),
added as npad times one term as on the CPU; slots of excluded type pairs, nbr = SLOT_EXCLUDED,
add nothing);
D_a[col] = Σ_c T_a[c, m_col] T_a[c, k_col] for the column map of the layout in use (full or
folded, see numdp.kernels.cpu.descriptor.folded_rows); the adjoint of T follows a per-column
adjacency list (x, col, other) sorted by x, so each Tbar element is one thread's ordered sum.
"""
from numba import cuda, float64

from .envmat import SLOT_PAD
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
    per type block the occupied slots (nbr >= 0) in slot order, then the padding slots (nbr =
    SLOT_PAD) as one term npad rt_pad ⊗ G_pad[ti, t] (`add_padding`; the CPU's order); excluded
    slots are skipped.  Padding rows of G are never read.  One thread per (atom, m)."""
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
                elif nbr[p] == SLOT_PAD:
                    npad += 1
                    ppad = p
            s0, s1, s2, s3 = add_padding(s0, s1, s2, s3, rt, ppad, npad, G_pad[ti, t, m])
        store_T(T, a, m, s0, s1, s2, s3, inv_nnei)


@cuda.jit(device=True)
def add_slot4(acc, rt, p, g0, g1, g2, g3):
    """A team thread's 16 sums (T[a, 0..3, m] * nnei of its channels m0..m3, channel by channel)
    plus one occupied slot's terms rt[p] * g_k: add_slot for each channel (a channel past the
    last gets g = 0 and is never stored)."""
    r0 = rt[p, 0]
    r1 = rt[p, 1]
    r2 = rt[p, 2]
    r3 = rt[p, 3]
    return (acc[0] + r0 * g0, acc[1] + r1 * g0, acc[2] + r2 * g0, acc[3] + r3 * g0,
            acc[4] + r0 * g1, acc[5] + r1 * g1, acc[6] + r2 * g1, acc[7] + r3 * g1,
            acc[8] + r0 * g2, acc[9] + r1 * g2, acc[10] + r2 * g2, acc[11] + r3 * g2,
            acc[12] + r0 * g3, acc[13] + r1 * g3, acc[14] + r2 * g3, acc[15] + r3 * g3)


@cuda.jit(device=True)
def _pad_channel(s0, s1, s2, s3, rt, ppad, npad, G_pad, ti, t, m):
    if m < G_pad.shape[2]:
        return add_padding(s0, s1, s2, s3, rt, ppad, npad, G_pad[ti, t, m])
    return s0, s1, s2, s3


@cuda.jit(device=True)
def add_padding4(acc, rt, ppad, npad, G_pad, ti, t, m0, step):
    """add_padding for a team thread's channels m0 + k step (k < 4) of one type block."""
    a0, a1, a2, a3 = _pad_channel(acc[0], acc[1], acc[2], acc[3], rt, ppad, npad, G_pad, ti, t, m0)
    b0, b1, b2, b3 = _pad_channel(acc[4], acc[5], acc[6], acc[7], rt, ppad, npad, G_pad, ti, t, m0 + step)
    c0, c1, c2, c3 = _pad_channel(acc[8], acc[9], acc[10], acc[11], rt, ppad, npad, G_pad, ti, t, m0 + 2 * step)
    d0, d1, d2, d3 = _pad_channel(acc[12], acc[13], acc[14], acc[15], rt, ppad, npad, G_pad, ti, t, m0 + 3 * step)
    return a0, a1, a2, a3, b0, b1, b2, b3, c0, c1, c2, c3, d0, d1, d2, d3


@cuda.jit(device=True)
def store_T4(T, a, m0, step, acc, inv_nnei):
    """store_T of a team thread's channels m0 + k step (k < 4) that exist."""
    ncol = T.shape[2]
    if m0 < ncol:
        store_T(T, a, m0, acc[0], acc[1], acc[2], acc[3], inv_nnei)
    if m0 + step < ncol:
        store_T(T, a, m0 + step, acc[4], acc[5], acc[6], acc[7], inv_nnei)
    if m0 + 2 * step < ncol:
        store_T(T, a, m0 + 2 * step, acc[8], acc[9], acc[10], acc[11], inv_nnei)
    if m0 + 3 * step < ncol:
        store_T(T, a, m0 + 3 * step, acc[12], acc[13], acc[14], acc[15], inv_nnei)


@cuda.jit(device=True)
def _g(G, p, m):
    """G[p, m] in float64, or 0 for a channel past the last."""
    return G[p, m] * 1.0 if m < G.shape[1] else 0.0


@cuda.jit
def contract_T_team(atypes, rt, G, nbr, sec, G_pad, inv_nnei, T):
    """contract_T by teams (launch.teams, KernelForm.TEAM): a block per atom, each thread the
    channels m0 + k team (k < 4, m0 = mg + lane) of each group mg of 4 * team channels, so that
    a slot's loads of nbr and rt serve four channels and its four loads of G are independent.
    Each T[a, c, m] is the same ordered sum as in contract_T: the same bits."""
    na = T.shape[0]
    team = cuda.blockDim.x
    for a in range(cuda.blockIdx.x, na, cuda.gridDim.x):
        ti = atypes[a]
        for mg in range(0, T.shape[2], 4 * team):
            m0 = mg + cuda.threadIdx.x
            acc = (0.0,) * 16
            for t in range(sec.shape[0] - 1):
                p0, p1 = block_slots(na, a, sec, t)
                npad = 0
                ppad = p0
                for p in range(p0, p1):
                    if nbr[p] >= 0:
                        acc = add_slot4(acc, rt, p, _g(G, p, m0), _g(G, p, m0 + team), _g(G, p, m0 + 2 * team),
                                        _g(G, p, m0 + 3 * team))
                    elif nbr[p] == SLOT_PAD:
                        npad += 1
                        ppad = p
                acc = add_padding4(acc, rt, ppad, npad, G_pad, ti, t, m0, team)
            store_T4(T, a, m0, team, acc, inv_nnei)


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
