"""Environment rows of every neighbour slot of a chunk of centre atoms (reference §2).

Device layout of the slots (the CPU compacts occupied slots; the GPU keeps every slot so that a
thread finds its pair by arithmetic): block-major, slot p of centre a in neighbour-type block t is
p = na * sec[t] + a * sel[t] + (s - sec[t]).  Each slot is in one of three states, told by nbr:
an occupied slot holds its extended neighbour (nbr >= 0); padding slots and neighbours at r >=
rcut get the padding row rt_pad[ti, t] and nbr = SLOT_PAD, so that they add exactly the padding
term to T and nothing to forces; a neighbour within rcut of an excluded (centre type, neighbour
type) pair (descriptor exclude_types) gets a zero row and nbr = SLOT_EXCLUDED: it adds nothing to
T (the contractions skip it, neither a pair nor padding) and nothing to forces; every slot of a
block of the model-level pair_exclude_types is padding (numdp.model.params.slot_modes).
"""
from numba import cuda, float64

from ..math import SLOTS_PADDING, SLOTS_ZERO
from .launch import MATH, SUB, TEAM

SLOT_PAD = -1        # nbr of a padding slot (or a neighbour at r >= rcut)
SLOT_EXCLUDED = -2   # nbr of a neighbour within rcut of an excluded type pair

write_pair_row = MATH.write_pair_row


@cuda.jit(device=True)
def slot_of(p, na, sec):
    """(block t, chunk atom a, slot s) of pair index p in the block-major layout."""
    nt = sec.shape[0] - 1
    t = 0
    while t < nt - 1 and p >= na * sec[t + 1]:
        t += 1
    sel_t = sec[t + 1] - sec[t]
    q = p - na * sec[t]
    a = q // sel_t
    return t, a, sec[t] + q - a * sel_t


@cuda.jit
def env_pairs(pos, nlist, rows, atoms, atypes, sec, mu, sd, excl, rcut, rcut_smth, rt_pad, rt, dvec, nbr):
    """rt (P, 4) normalised rows, dvec (P, 3) d = r_j - r_i (Å), nbr (P,) int32 extended index,
    SLOT_PAD or SLOT_EXCLUDED, for the P = na * nnei slots of chunk atoms `atoms` (na,) of types
    `atypes`, whose neighbours are row rows[a] of nlist (the twin of the CPU `env_pairs_rows`:
    rows = atoms for a whole list, 0..na-1 for the chunk's own rows,
    numdp.neighbor.device.DeviceRows).

    pos: (nall, 3) Å; nlist: (nloc or na, nnei) int32; sec: (ntypes+1,) int64 block starts;
    mu, sd, rt_pad: (ntypes, ntypes, 4) per (centre type, block); excl: (ntypes, ntypes) int8
    slot mode per (centre type, neighbour type) block (ModelParams.slot_modes: SLOTS_PAIRS,
    SLOTS_ZERO, SLOTS_PADDING of numdp.kernels.math).  A neighbour is within rcut when
    write_pair_row writes it (the CPU's test).  One thread per slot.
    """
    na = atoms.shape[0]
    for p in range(cuda.grid(1), na * nlist.shape[1], cuda.gridsize(1)):
        t, a, s = slot_of(p, na, sec)
        i = atoms[a]
        ti = atypes[a]
        j = nlist[rows[a], s]
        mode = excl[ti, t]
        if j >= 0 and mode != SLOTS_PADDING and write_pair_row(pos, i, j, ti, t, mu, sd, rcut_smth, rcut, p, rt,
                                                               dvec, nbr):
            if mode == SLOTS_ZERO:
                for c in range(4):
                    rt[p, c] = 0.0
                dvec[p, 0] = 0.0
                dvec[p, 1] = 0.0
                dvec[p, 2] = 0.0
                nbr[p] = SLOT_EXCLUDED
            continue
        for c in range(4):
            rt[p, c] = rt_pad[ti, t, c]
        dvec[p, 0] = 0.0
        dvec[p, 1] = 0.0
        dvec[p, 2] = 0.0
        nbr[p] = SLOT_PAD


row_grad_to_dvec = MATH.row_grad_to_dvec


@cuda.jit(device=True)
def scatter_value(p, ti, t, g0, g1, g2, g3, dvec, sd, rcut, rcut_smth, fpair):
    """fpair[p] = dE/dd of pair p from dE/drt (g0..g3) (the CPU's scatter_pair, without the
    scatter: the gather kernels of numdp.kernels.cuda.forces sum fpair deterministically)."""
    gx, gy, gz = row_grad_to_dvec(g0 / sd[ti, t, 0], g1 / sd[ti, t, 1], g2 / sd[ti, t, 2],
                                  g3 / sd[ti, t, 3], dvec[p, 0], dvec[p, 1], dvec[p, 2],
                                  rcut_smth, rcut)
    fpair[p, 0] = gx
    fpair[p, 1] = gy
    fpair[p, 2] = gz


@cuda.jit(device=True)
def zero_pair(fpair, p):
    """fpair[p] = 0: a padding slot's force."""
    fpair[p, 0] = 0.0
    fpair[p, 1] = 0.0
    fpair[p, 2] = 0.0


@cuda.jit(device=True)
def row4(rt, p):
    """The four entries of row p of rt (P, 4)."""
    return rt[p, 0], rt[p, 1], rt[p, 2], rt[p, 3]


@cuda.jit(device=True)
def add_channel(Tbar, a, m, v, d, r0, r1, r2, r3, g0, g1, g2, g3, gx):
    """Embedding channel m's share of dE/drt of one pair of chunk atom a: (g0..g3) + v Tbar[a, :, m]
    and gx + d (rt · Tbar[a, :, m]), with v = G and d = dG/ds of the pair (float64) and rt =
    (r0, r1, r2, r3) its row.  The loop body of pair_forces and tab_pair_forces."""
    t0 = Tbar[a, 0, m]
    t1 = Tbar[a, 1, m]
    t2 = Tbar[a, 2, m]
    t3 = Tbar[a, 3, m]
    return (g0 + v * t0, g1 + v * t1, g2 + v * t2, g3 + v * t3,
            gx + d * (r0 * t0 + r1 * t1 + r2 * t2 + r3 * t3))


@cuda.jit
def pair_forces(atypes, rt, dvec, nbr, sec, G, Gp, Tbar, sd, rcut, rcut_smth, fpair):
    """fpair (P, 3) = dE/dd of every slot (zero on padding) from Tbar (na, 4, M) = dE/dT / nnei:
    dE/drt_c = Σ_m G[p, m] Tbar[a, c, m] + [c = 0] Σ_m Gp[p, m] Σ_c' rt_c' Tbar[a, c', m].
    One thread per slot; sums over m in float64."""
    na = atypes.shape[0]
    for p in range(cuda.grid(1), nbr.shape[0], cuda.gridsize(1)):
        if nbr[p] < 0:
            zero_pair(fpair, p)
            continue
        t, a, s = slot_of(p, na, sec)
        r0, r1, r2, r3 = row4(rt, p)
        g0 = g1 = g2 = g3 = gx = 0.0
        for m in range(Tbar.shape[2]):
            g0, g1, g2, g3, gx = add_channel(Tbar, a, m, G[p, m] * 1.0, Gp[p, m] * 1.0, r0, r1, r2, r3,
                                             g0, g1, g2, g3, gx)
        scatter_value(p, atypes[a], t, g0 + gx, g1, g2, g3, dvec, sd, rcut, rcut_smth, fpair)


@cuda.jit(device=True)
def team_slot(na, a, sec, s):
    """(block t, pair index p) of slot s (0 <= s < sec[-1]) of chunk atom a (block-major layout)."""
    t = 0
    while s >= sec[t + 1]:
        t += 1
    return t, na * sec[t] + a * (sec[t + 1] - sec[t]) + s - sec[t]


@cuda.jit(device=True)
def team_put(part, q, u, g0, g1, g2, g3, gx):
    """Thread u of sub-team q leaves its partial dE/drt (and the slope term) in shared memory."""
    part[q, 0, u] = g0
    part[q, 1, u] = g1
    part[q, 2, u] = g2
    part[q, 3, u] = g3
    part[q, 4, u] = gx


@cuda.jit(device=True)
def team_sum(part, q):
    """The sub-team's partials added in thread order (deterministic): (g0, g1, g2, g3, gx)."""
    g0 = g1 = g2 = g3 = gx = 0.0
    for w in range(part.shape[2]):
        g0 += part[q, 0, w]
        g1 += part[q, 1, w]
        g2 += part[q, 2, w]
        g3 += part[q, 3, w]
        gx += part[q, 4, w]
    return g0, g1, g2, g3, gx


@cuda.jit(device=True)
def team_finish(part, q, u, s, nnei, nbr, p, ti, t, dvec, sd, rcut, rcut_smth, fpair):
    """The end of a round of the team pair-force kernels, every thread of the block: once all
    partials are in `part`, sub-team q's first thread writes its slot s (pair p, block t) of
    fpair (zero for padding; scatter_value of the partials summed in order), then the block waits
    again before the next round writes `part`."""
    cuda.syncthreads()
    if u == 0 and s < nnei:
        if nbr[p] < 0:
            zero_pair(fpair, p)
        else:
            g0, g1, g2, g3, gx = team_sum(part, q)
            scatter_value(p, ti, t, g0 + gx, g1, g2, g3, dvec, sd, rcut, rcut_smth, fpair)
    cuda.syncthreads()


_SLOTS = TEAM // SUB


@cuda.jit
def pair_forces_team(atypes, rt, dvec, nbr, sec, G, Gp, Tbar, sd, rcut, rcut_smth, fpair):
    """pair_forces by teams (launch.teams, KernelForm.TEAM): the block's sub-teams of SUB threads
    take one slot each per round, each thread the channels u, u + SUB, ..., so that a load of
    G or G' reads SUB consecutive channels of a row where one thread per slot reads one channel
    of 32 rows; the partials meet in shared memory (`team_put`, `team_finish`)."""
    part = cuda.shared.array((_SLOTS, 5, SUB), float64)
    na = atypes.shape[0]
    nnei = sec[sec.shape[0] - 1]
    q = cuda.threadIdx.x // SUB
    u = cuda.threadIdx.x - q * SUB
    for a in range(cuda.blockIdx.x, na, cuda.gridDim.x):
        for base in range(0, nnei, _SLOTS):
            s = base + q
            t = p = 0
            if s < nnei:
                t, p = team_slot(na, a, sec, s)
                g0 = g1 = g2 = g3 = gx = 0.0
                if nbr[p] >= 0:
                    r0, r1, r2, r3 = row4(rt, p)
                    for m in range(u, Tbar.shape[2], SUB):
                        g0, g1, g2, g3, gx = add_channel(Tbar, a, m, G[p, m] * 1.0, Gp[p, m] * 1.0, r0, r1,
                                                         r2, r3, g0, g1, g2, g3, gx)
                team_put(part, q, u, g0, g1, g2, g3, gx)
            team_finish(part, q, u, s, nnei, nbr, p, atypes[a], t, dvec, sd, rcut, rcut_smth, fpair)


@cuda.jit
def occupied_rows(nbr, cs, rows):
    """rows[cs[p] - 1] = p for every occupied slot p (nbr[p] >= 0), cs the inclusive running count
    of occupied slots (P,): the occupied slots in increasing order, so that the slots of any range
    [p0, p1) are rows[cs[p0 - 1] : cs[p1 - 1]] (cs[-1] read as 0), the same indices as
    flatnonzero(nbr[p0:p1] >= 0) + p0 without a host read per range."""
    for p in range(cuda.grid(1), nbr.shape[0], cuda.gridsize(1)):
        if nbr[p] >= 0:
            rows[cs[p] - 1] = p
