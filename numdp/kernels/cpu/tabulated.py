"""Fused kernels for tabulated (compressed) embedding nets, reference §9.6.

Table lookup, polynomial evaluation and the contraction with the environment rows happen per
pair, so G (npairs, M) is never stored: the forward kernel accumulates T = (1/nnei) R^T G, the
backward kernel re-evaluates the polynomial and its slope and scatters forces and virials.

Packed tables: coef (sum of nint, order+1, M); net k's intervals start at coff[k];
meta[k] = [lower, upper, xmax, h0, h1, n0]; netidx[ti, t] is the net of centre type ti and
neighbour block t.  Outside [lower, xmax] the table continues linearly (value + slope * excess);
pairs beyond xmax (closer than 10x the training range allows) are counted in `beyond` (one count
per pair and call).  Inputs below `lower` arise only from round-off at r -> rcut and are not
counted.

Polynomials are evaluated in the tables' dtype (float32 under mix32).  The forward contraction
T accumulates in float64; the backward's per-pair sums over the M outputs (sum_m Tbar v and
sum_m Tbar d) run in the tables' dtype, with Tbar given in that dtype: under mix32 they are
100-term float32 sums (relative round-off ~1e-6), a third faster than mixed float32/float64 code.
The forward kernel takes four pairs of one centre atom at a time, so that each row of T is
loaded and stored once per four pairs, and skips the slope when no pair of the group lies outside
the table; the backward kernel takes two pairs at a time and shares the loads of Tbar.
"""
import numpy as np
from numba import njit

from .descriptor import add_padding, scale
from .envmat import FASTMATH, scatter_pair
from .mathfn import cast_like
from ..math import CPU

locate_piece = CPU.locate_piece
poly3_value = CPU.poly3_value
poly5_value = CPU.poly5_value
poly3_at = CPU.poly3_at
poly5_at = CPU.poly5_at

FLAGS = dict(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)


@njit(inline="always", **FLAGS)
def locate(x, meta, nint):
    """Interval index l, local coordinate tau and the excess beyond the table for input x."""
    return locate_piece(x, meta[0], meta[1], meta[2], meta[3], meta[4], int(meta[5]), nint)


@njit(inline="always", **FLAGS)
def poly_value(c, m, tau, order):
    """Value at tau of output m of the piece c (order+1, M) (Horner)."""
    if order == 5:
        return poly5_value(c[0, m], c[1, m], c[2, m], c[3, m], c[4, m], c[5, m], tau)
    return poly3_value(c[0, m], c[1, m], c[2, m], c[3, m], tau)


@njit(inline="always", **FLAGS)
def poly_at(c, m, tau, order):
    """Value and slope at tau of output m of the piece c (order+1, M), in the dtype of c when
    tau has it."""
    if order == 5:
        return poly5_at(c[0, m], c[1, m], c[2, m], c[3, m], c[4, m], c[5, m], tau)
    return poly3_at(c[0, m], c[1, m], c[2, m], c[3, m], tau)


@njit(inline="always", **FLAGS)
def _acc_pair(Ta, rt, p, cl, tau, ex, order):
    """Ta (4, M) += rt[p] (x) (v + ex * d) of one pair (any position relative to the table)."""
    r0 = rt[p, 0]
    r1 = rt[p, 1]
    r2 = rt[p, 2]
    r3 = rt[p, 3]
    T0 = Ta[0]
    T1 = Ta[1]
    T2 = Ta[2]
    T3 = Ta[3]
    for m in range(Ta.shape[1]):
        v, d = poly_at(cl, m, tau, order)
        g = np.float64(v) + ex * np.float64(d)
        T0[m] += r0 * g
        T1[m] += r1 * g
        T2[m] += r2 * g
        T3[m] += r3 * g


@njit(inline="always", **FLAGS)
def _values(c, tau, order, out):
    """out (M,) = the piece c (order+1, M) at tau, in c's dtype."""
    for m in range(out.shape[0]):
        out[m] = poly_value(c, m, tau, order)


@njit(inline="always", **FLAGS)
def _acc_four(Ta, rt, p, ca, cb, cc, cd, ta, tb, tc, td, order, vbuf):
    """Ta (4, M) += sum over pairs p..p+3 of rt (x) v, all four inside their tables.

    The four pieces are first evaluated into vbuf (4, M) in the tables' dtype, then accumulated
    in float64: for float32 tables the pure-float32 loops run at twice the vector width of one
    mixed loop (15-25 % faster), and for float64 tables the split is as fast or faster (measured
    in place against the single-loop form: contraction 8.8-9.0 against 9.1-9.6 µs/atom)."""
    va = vbuf[0]
    vb = vbuf[1]
    vc = vbuf[2]
    vd = vbuf[3]
    _values(ca, ta, order, va)
    _values(cb, tb, order, vb)
    _values(cc, tc, order, vc)
    _values(cd, td, order, vd)
    T0 = Ta[0]
    T1 = Ta[1]
    T2 = Ta[2]
    T3 = Ta[3]
    a0, a1, a2, a3 = rt[p, 0], rt[p, 1], rt[p, 2], rt[p, 3]
    b0, b1, b2, b3 = rt[p + 1, 0], rt[p + 1, 1], rt[p + 1, 2], rt[p + 1, 3]
    c0, c1, c2, c3 = rt[p + 2, 0], rt[p + 2, 1], rt[p + 2, 2], rt[p + 2, 3]
    d0, d1, d2, d3 = rt[p + 3, 0], rt[p + 3, 1], rt[p + 3, 2], rt[p + 3, 3]
    for m in range(Ta.shape[1]):
        xa = np.float64(va[m])
        xb = np.float64(vb[m])
        xc = np.float64(vc[m])
        xd = np.float64(vd[m])
        T0[m] += a0 * xa + b0 * xb + c0 * xc + d0 * xd
        T1[m] += a1 * xa + b1 * xb + c1 * xc + d1 * xd
        T2[m] += a2 * xa + b2 * xb + c2 * xc + d2 * xd
        T3[m] += a3 * xa + b3 * xb + c3 * xc + d3 * xd


def tab_contract_T(atypes, rt, poff, npad, rt_pad, G_pad, coef, coff, meta, netidx, inv_nnei,
                   T, beyond):
    """T (na, 4, M) from tables; padding through G_pad (ntypes, ntypes, M).
    beyond[0] += pairs beyond the end of the table.  M may include zero padding columns
    (coef, G_pad and T then all carry them).  The tables' order picks one of two kernels, the
    order a compile-time constant of each (with a run-time order the polynomial branch stays
    inside the vectorised loop; one kernel holding both bodies took twice as long to compile
    as one alone, and a model's tables have one order)."""
    kernel = _tab_contract_T5 if coef.shape[1] == 6 else _tab_contract_T3
    kernel(atypes, rt, poff, npad, rt_pad, G_pad, coef, coff, meta, netidx, inv_nnei, T, beyond)


@njit(**FLAGS)
def _tab_contract_T5(atypes, rt, poff, npad, rt_pad, G_pad, coef, coff, meta, netidx, inv_nnei, T, beyond):
    """tab_contract_T of quintic tables."""
    beyond[0] += _contract_T(atypes, rt, poff, npad, rt_pad, G_pad, coef, coff, meta, netidx, inv_nnei, T, 5)


@njit(**FLAGS)
def _tab_contract_T3(atypes, rt, poff, npad, rt_pad, G_pad, coef, coff, meta, netidx, inv_nnei, T, beyond):
    """tab_contract_T of cubic tables."""
    beyond[0] += _contract_T(atypes, rt, poff, npad, rt_pad, G_pad, coef, coff, meta, netidx, inv_nnei, T, 3)


@njit(inline="always", **FLAGS)
def _contract_T(atypes, rt, poff, npad, rt_pad, G_pad, coef, coff, meta, netidx, inv_nnei, T, order):
    """Body of tab_contract_T for a given polynomial order; returns the count beyond the table."""
    ntypes = poff.shape[0]
    na = T.shape[0]
    M = T.shape[2]
    nb = 0
    vbuf = np.empty((4, M), coef.dtype)
    for a in range(na):
        ti = atypes[a]
        Ta = T[a]
        for c in range(4):
            for m in range(M):
                Ta[c, m] = 0.0
        for t in range(ntypes):
            k = netidx[ti, t]
            base = coff[k]
            nint = coff[k + 1] - base
            mk = meta[k]
            p = poff[t, a]
            pend = poff[t, a + 1]
            while p < pend:
                if p + 4 <= pend:
                    la, ta, ea = locate(rt[p, 0], mk, nint)
                    lb, tb, eb = locate(rt[p + 1, 0], mk, nint)
                    lc, tc, ec = locate(rt[p + 2, 0], mk, nint)
                    ld, td, ed = locate(rt[p + 3, 0], mk, nint)
                    if ea == 0.0 and eb == 0.0 and ec == 0.0 and ed == 0.0:
                        _acc_four(Ta, rt, p, coef[base + la], coef[base + lb], coef[base + lc],
                                  coef[base + ld], cast_like(ta, coef), cast_like(tb, coef),
                                  cast_like(tc, coef), cast_like(td, coef), order, vbuf)
                        p += 4
                        continue
                l, tau, ex = locate(rt[p, 0], mk, nint)
                if ex > 0.0:
                    nb += 1
                _acc_pair(Ta, rt, p, coef[base + l], cast_like(tau, coef), ex, order)
                p += 1
            add_padding(Ta, npad[a, t], rt_pad[ti, t], G_pad[ti, t])
        scale(Ta, inv_nnei)
    return nb


@njit(inline="always", **FLAGS)
def _pair_grads(Tb, ca, ta, ea, cb, tb, eb, ra, rb, order, out):
    """dE/drt (4,) of two pairs a and b into out[0], out[1]: g_c = sum_m Tb[c, m] (v + ex d)
    plus, on column 0, sum_m d_m (sum_c r_c Tb[c, m])."""
    T0 = Tb[0]
    T1 = Tb[1]
    T2 = Tb[2]
    T3 = Tb[3]
    z = cast_like(0.0, ca)
    ga0 = ga1 = ga2 = ga3 = ha0 = ha1 = ha2 = ha3 = z
    gb0 = gb1 = gb2 = gb3 = hb0 = hb1 = hb2 = hb3 = z
    eaa = cast_like(ea, ca)
    ebb = cast_like(eb, ca)
    inside = ea == 0.0 and eb == 0.0   # loop-invariant: LLVM unswitches it (2 FMA fewer per m)
    for m in range(Tb.shape[1]):
        va, da = poly_at(ca, m, ta, order)
        vb, db = poly_at(cb, m, tb, order)
        if not inside:
            va = va + eaa * da
            vb = vb + ebb * db
        t0 = T0[m]
        t1 = T1[m]
        t2 = T2[m]
        t3 = T3[m]
        ga0 += va * t0
        ga1 += va * t1
        ga2 += va * t2
        ga3 += va * t3
        ha0 += da * t0
        ha1 += da * t1
        ha2 += da * t2
        ha3 += da * t3
        gb0 += vb * t0
        gb1 += vb * t1
        gb2 += vb * t2
        gb3 += vb * t3
        hb0 += db * t0
        hb1 += db * t1
        hb2 += db * t2
        hb3 += db * t3
    out[0, 0] = ga0 + ra[0] * ha0 + ra[1] * ha1 + ra[2] * ha2 + ra[3] * ha3
    out[0, 1] = ga1
    out[0, 2] = ga2
    out[0, 3] = ga3
    out[1, 0] = gb0 + rb[0] * hb0 + rb[1] * hb1 + rb[2] * hb2 + rb[3] * hb3
    out[1, 1] = gb1
    out[1, 2] = gb2
    out[1, 3] = gb3


def tab_pair_forces(atoms, atypes, rt, dvec, nbr, poff, coef, coff, meta, netidx, Tbar, sd,
                    rcut, rcut_smth, force, virial, atom_virial, want_atom_virial):
    """Forces and virials from Tbar (na, 4, M) = dE/dT / nnei in the tables' dtype,
    re-evaluating the tables (M may include zero padding columns, as in tab_contract_T; one
    kernel per order, as there)."""
    kernel = _tab_pair_forces5 if coef.shape[1] == 6 else _tab_pair_forces3
    kernel(atoms, atypes, rt, dvec, nbr, poff, coef, coff, meta, netidx, Tbar, sd, rcut, rcut_smth, force,
           virial, atom_virial, want_atom_virial)


@njit(**FLAGS)
def _tab_pair_forces5(atoms, atypes, rt, dvec, nbr, poff, coef, coff, meta, netidx, Tbar, sd,
                      rcut, rcut_smth, force, virial, atom_virial, want_atom_virial):
    """tab_pair_forces of quintic tables."""
    _pair_forces(atoms, atypes, rt, dvec, nbr, poff, coef, coff, meta, netidx, Tbar, sd, rcut,
                 rcut_smth, force, virial, atom_virial, want_atom_virial, 5)


@njit(**FLAGS)
def _tab_pair_forces3(atoms, atypes, rt, dvec, nbr, poff, coef, coff, meta, netidx, Tbar, sd,
                      rcut, rcut_smth, force, virial, atom_virial, want_atom_virial):
    """tab_pair_forces of cubic tables."""
    _pair_forces(atoms, atypes, rt, dvec, nbr, poff, coef, coff, meta, netidx, Tbar, sd, rcut,
                 rcut_smth, force, virial, atom_virial, want_atom_virial, 3)


@njit(inline="always", **FLAGS)
def _pair_forces(atoms, atypes, rt, dvec, nbr, poff, coef, coff, meta, netidx, Tbar, sd, rcut,
                 rcut_smth, force, virial, atom_virial, want_atom_virial, order):
    """Body of tab_pair_forces for a given polynomial order."""
    ntypes = poff.shape[0]
    na = atoms.shape[0]
    g = np.empty((2, 4))
    for t in range(ntypes):
        for a in range(na):
            i = atoms[a]
            ti = atypes[a]
            k = netidx[ti, t]
            base = coff[k]
            nint = coff[k + 1] - base
            mk = meta[k]
            Tb = Tbar[a]
            p0 = poff[t, a]
            pend = poff[t, a + 1]
            for p in range(p0, pend, 2):
                q = p + 1 if p + 1 < pend else p   # an odd last pair is paired with itself
                la, ta, ea = locate(rt[p, 0], mk, nint)
                lb, tb, eb = locate(rt[q, 0], mk, nint)
                _pair_grads(Tb, coef[base + la], cast_like(ta, coef), ea, coef[base + lb],
                            cast_like(tb, coef), eb, rt[p], rt[q], order, g)
                scatter_pair(i, nbr[p], g[0, 0], g[0, 1], g[0, 2], g[0, 3], dvec[p, 0], dvec[p, 1],
                             dvec[p, 2], ti, t, sd, rcut, rcut_smth, force, virial, atom_virial,
                             want_atom_virial)
                if q != p:
                    scatter_pair(i, nbr[q], g[1, 0], g[1, 1], g[1, 2], g[1, 3], dvec[q, 0], dvec[q, 1],
                                 dvec[q, 2], ti, t, sd, rcut, rcut_smth, force, virial, atom_virial,
                                 want_atom_virial)
