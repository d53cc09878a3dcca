"""Tabulated (compressed) embedding, fused: G is never stored (twins of kernels/cpu/tabulated.py).

Packed tables as on the CPU: coef (Σ nint, order+1, M), coff, meta[k] = [lower, upper, xmax, h0,
h1, n0], netidx[ti, t].  Polynomials are evaluated in the tables' dtype (tau rounded to it);
contractions and the per-pair sums over m run in float64.  Outside [lower, xmax] a piece continues
linearly (value + excess * slope); the forward kernel adds the occupied slots beyond xmax to the
running count `beyond` (1,) int64 (integer atomics: exact in any order, deterministic).
"""
import numpy as np
from numba import cuda, float32, float64

from .descriptor import add_padding, add_padding4, add_slot, add_slot4, block_slots, store_T, store_T4
from .envmat import (SLOT_PAD, add_channel, row4, scatter_value, slot_of, team_finish, team_put, team_slot,
                     zero_pair)
from .launch import MATH, SUB, TEAM, made_by, split

locate_piece = MATH.locate_piece
poly3_at = MATH.poly3_at
poly5_at = MATH.poly5_at

_KERNELS: dict = {}


def kernels_for(dtype):
    """(tab_contract_T, tab_pair_forces, tab_contract_T_team, tab_pair_forces_team) for tables of
    `dtype` (float64 or float32)."""
    key = np.dtype(dtype).name
    if key not in _KERNELS:
        kernels = _build(_to_f32 if key == "float32" else _to_f64)
        _KERNELS[key] = tuple(made_by(k, __name__, "kernels_for", (key,), i) for i, k in enumerate(kernels))
    return _KERNELS[key]


@cuda.jit(device=True)
def _to_f32(x):
    return float32(x)


@cuda.jit(device=True)
def _to_f64(x):
    return float64(x)


def _build(cast):
    @cuda.jit(device=True)
    def piece(coef, row, m, tau, order):
        c = coef[row]
        if order == 5:
            return poly5_at(c[0, m], c[1, m], c[2, m], c[3, m], c[4, m], c[5, m], tau)
        return poly3_at(c[0, m], c[1, m], c[2, m], c[3, m], tau)

    @cuda.jit(device=True)
    def find(x, coef, coff, meta, k):
        base = coff[k]
        nint = coff[k + 1] - base
        l, tau, ex = locate_piece(x, meta[k, 0], meta[k, 1], meta[k, 2], meta[k, 3], meta[k, 4],
                                  int(meta[k, 5]), nint)
        return base + l, cast(tau), ex

    @cuda.jit(device=True)
    def table_g(coef, row, m, tau, order, ex):
        """G of channel m at a located piece, in float64: value + excess * slope (the linear
        continuation beyond the table; ex = 0 inside it)."""
        v, d = piece(coef, row, m, tau, order)
        return v * 1.0 + ex * d

    @cuda.jit
    def tab_contract_T(atypes, rt, nbr, sec, G_pad, coef, coff, meta, netidx, inv_nnei, T, beyond):
        """T (na, 4, M) float64 from the tables, summed as contract_T (padding slots as one term
        through G_pad); beyond[0] += the occupied slots beyond the table (counted by the m = 0
        threads).  One thread per (atom, m)."""
        na = T.shape[0]
        ncol = T.shape[2]
        for idx in range(cuda.grid(1), na * ncol, cuda.gridsize(1)):
            a, m = split(idx, ncol)
            order = coef.shape[1] - 1
            ti = atypes[a]
            s0 = s1 = s2 = s3 = 0.0
            for t in range(sec.shape[0] - 1):
                k = netidx[ti, t]
                p0, p1 = block_slots(na, a, sec, t)
                npad = 0
                ppad = p0
                for p in range(p0, p1):
                    if nbr[p] >= 0:
                        row, tau, ex = find(rt[p, 0], coef, coff, meta, k)
                        s0, s1, s2, s3 = add_slot(s0, s1, s2, s3, rt, p, table_g(coef, row, m, tau, order, ex))
                        if m == 0 and ex > 0.0:
                            cuda.atomic.add(beyond, 0, 1)
                    elif nbr[p] == SLOT_PAD:
                        npad += 1
                        ppad = p
                s0, s1, s2, s3 = add_padding(s0, s1, s2, s3, rt, ppad, npad, G_pad[ti, t, m])
            store_T(T, a, m, s0, s1, s2, s3, inv_nnei)

    @cuda.jit(device=True)
    def table_channel(coef, row, m, tau, order, ex, Tbar, a, r0, r1, r2, r3, g0, g1, g2, g3, gx):
        """add_channel of channel m at a located piece: G = value + excess * slope and dG/ds =
        slope, both in float64."""
        v, d = piece(coef, row, m, tau, order)
        d = d * 1.0
        return add_channel(Tbar, a, m, v * 1.0 + ex * d, d, r0, r1, r2, r3, g0, g1, g2, g3, gx)

    @cuda.jit
    def tab_pair_forces(atypes, rt, dvec, nbr, sec, coef, coff, meta, netidx, Tbar, sd, rcut,
                        rcut_smth, fpair):
        """fpair (P, 3) = dE/dd of every slot from Tbar = dE/dT / nnei, re-evaluating the tables
        (value + excess * slope, and slope).  One thread per slot; sums over m in float64."""
        na = atypes.shape[0]
        for p in range(cuda.grid(1), nbr.shape[0], cuda.gridsize(1)):
            if nbr[p] < 0:
                zero_pair(fpair, p)
                continue
            t, a, s = slot_of(p, na, sec)
            order = coef.shape[1] - 1
            row, tau, ex = find(rt[p, 0], coef, coff, meta, netidx[atypes[a], t])
            r0, r1, r2, r3 = row4(rt, p)
            g0 = g1 = g2 = g3 = gx = 0.0
            for m in range(Tbar.shape[2]):
                g0, g1, g2, g3, gx = table_channel(coef, row, m, tau, order, ex, Tbar, a, r0, r1, r2, r3,
                                                   g0, g1, g2, g3, gx)
            scatter_value(p, atypes[a], t, g0 + gx, g1, g2, g3, dvec, sd, rcut, rcut_smth, fpair)

    @cuda.jit(device=True)
    def table_g4(coef, row, m, tau, order, ex):
        """table_g, or 0 for a channel past the last."""
        return table_g(coef, row, m, tau, order, ex) if m < coef.shape[2] else 0.0

    @cuda.jit
    def tab_contract_T_team(atypes, rt, nbr, sec, G_pad, coef, coff, meta, netidx, inv_nnei, T, beyond):
        """tab_contract_T by teams (launch.teams): a block per atom, each thread the channels
        m0 + k team (k < 4, m0 = mg + lane) of each group mg of 4 * team channels, so that a
        slot's table lookup (`find`: two divisions) and its loads serve four channels and the
        four channels' pieces are independent loads.  Each T[a, c, m] is the same ordered sum as
        in tab_contract_T: the same bits."""
        na = T.shape[0]
        order = coef.shape[1] - 1
        team = cuda.blockDim.x
        for a in range(cuda.blockIdx.x, na, cuda.gridDim.x):
            ti = atypes[a]
            for mg in range(0, T.shape[2], 4 * team):
                m0 = mg + cuda.threadIdx.x
                counts = m0 == 0   # the thread that counts the pairs beyond the table
                acc = (0.0,) * 16
                for t in range(sec.shape[0] - 1):
                    k = netidx[ti, t]
                    p0, p1 = block_slots(na, a, sec, t)
                    npad = 0
                    ppad = p0
                    for p in range(p0, p1):
                        if nbr[p] >= 0:
                            row, tau, ex = find(rt[p, 0], coef, coff, meta, k)
                            acc = add_slot4(acc, rt, p, table_g4(coef, row, m0, tau, order, ex),
                                            table_g4(coef, row, m0 + team, tau, order, ex),
                                            table_g4(coef, row, m0 + 2 * team, tau, order, ex),
                                            table_g4(coef, row, m0 + 3 * team, tau, order, ex))
                            if counts and ex > 0.0:
                                cuda.atomic.add(beyond, 0, 1)
                        elif nbr[p] == SLOT_PAD:
                            npad += 1
                            ppad = p
                    acc = add_padding4(acc, rt, ppad, npad, G_pad, ti, t, m0, team)
                store_T4(T, a, m0, team, acc, inv_nnei)

    slots = TEAM // SUB   # slots per round of tab_pair_forces_team

    @cuda.jit
    def tab_pair_forces_team(atypes, rt, dvec, nbr, sec, coef, coff, meta, netidx, Tbar, sd, rcut,
                             rcut_smth, fpair):
        """tab_pair_forces by teams (launch.teams: a block of TEAM threads per atom): the atom's
        slots in rounds of TEAM // SUB, one per sub-team of SUB threads, each thread the
        channels m = u, u + SUB, ... (u its place in the sub-team), so that a load of the
        table reads SUB consecutive channels of a row where the one-thread-per-slot kernel reads
        one channel of 32 rows.  The sub-team's SUB partial sums meet in shared memory and its
        first thread adds them in order: deterministic, and the same terms as tab_pair_forces
        summed in another order."""
        part = cuda.shared.array((slots, 5, SUB), float64)
        na = atypes.shape[0]
        nnei = sec[sec.shape[0] - 1]
        ncol = Tbar.shape[2]
        order = coef.shape[1] - 1
        q = cuda.threadIdx.x // SUB
        u = cuda.threadIdx.x - q * SUB
        for a in range(cuda.blockIdx.x, na, cuda.gridDim.x):
            ti = atypes[a]
            for base in range(0, nnei, slots):
                s = base + q
                t = p = 0
                if s < nnei:
                    t, p = team_slot(na, a, sec, s)
                    g0 = g1 = g2 = g3 = gx = 0.0
                    if nbr[p] >= 0:
                        row, tau, ex = find(rt[p, 0], coef, coff, meta, netidx[ti, t])
                        r0, r1, r2, r3 = row4(rt, p)
                        for m in range(u, ncol, SUB):
                            g0, g1, g2, g3, gx = table_channel(coef, row, m, tau, order, ex, Tbar, a, r0, r1,
                                                               r2, r3, g0, g1, g2, g3, gx)
                    team_put(part, q, u, g0, g1, g2, g3, gx)
                team_finish(part, q, u, s, nnei, nbr, p, ti, t, dvec, sd, rcut, rcut_smth, fpair)

    return tab_contract_T, tab_pair_forces, tab_contract_T_team, tab_pair_forces_team
