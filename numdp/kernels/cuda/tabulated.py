"""Tabulated (compressed) embedding, fused: G is never stored (twins of kernels/cpu/tabulated.py).

Packed tables as on the CPU: coef (Σ nint, order+1, M), coff, meta[k] = [lower, upper, xmax, h0,
h1, n0], netidx[ti, t].  Polynomials are evaluated in the tables' dtype (tau rounded to it);
contractions and the per-pair sums over m run in float64.  Outside [lower, xmax] a piece continues
linearly (value + excess * slope); pairs beyond xmax are flagged in `beyond` (P,) int32 by the
forward kernel and counted by the caller (an integer sum: deterministic).
"""
import numpy as np
from numba import cuda, float32, float64

from .descriptor import add_padding, add_slot, block_slots, store_T
from .envmat import add_channel, row4, scatter_value, slot_of, zero_pair
from .launch import MATH, made_by, split

locate_piece = MATH.locate_piece
poly3_at = MATH.poly3_at
poly5_at = MATH.poly5_at

_KERNELS: dict = {}


def kernels_for(dtype):
    """(tab_contract_T, tab_pair_forces) for tables of `dtype` (float64 or float32)."""
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

    @cuda.jit
    def tab_contract_T(atypes, rt, nbr, sec, G_pad, coef, coff, meta, netidx, inv_nnei, T, beyond):
        """T (na, 4, M) float64 from the tables, summed as contract_T (padding slots as one term
        through G_pad); beyond[p] = 1 for an occupied slot beyond the table (written by the
        m = 0 threads).  One thread per (atom, m)."""
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
                        v, d = piece(coef, row, m, tau, order)
                        s0, s1, s2, s3 = add_slot(s0, s1, s2, s3, rt, p, v * 1.0 + ex * d)
                        if m == 0:
                            beyond[p] = 1 if ex > 0.0 else 0
                    else:
                        npad += 1
                        ppad = p
                        if m == 0:
                            beyond[p] = 0
                s0, s1, s2, s3 = add_padding(s0, s1, s2, s3, rt, ppad, npad, G_pad[ti, t, m])
            store_T(T, a, m, s0, s1, s2, s3, inv_nnei)

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
                v, d = piece(coef, row, m, tau, order)
                d = d * 1.0
                g0, g1, g2, g3, gx = add_channel(Tbar, a, m, v * 1.0 + ex * d, d, r0, r1, r2, r3,
                                                 g0, g1, g2, g3, gx)
            scatter_value(p, atypes[a], t, g0 + gx, g1, g2, g3, dvec, sd, rcut, rcut_smth, fpair)

    return tab_contract_T, tab_pair_forces
