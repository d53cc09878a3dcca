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
"""
from numba import njit

from .descriptor import add_padding, scale
from .envmat import FASTMATH, scatter_pair

FLAGS = dict(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)


@njit(inline="always", **FLAGS)
def locate(x, meta, nint):
    """Interval index l, local coordinate tau and the excess beyond the table for input x."""
    lower = meta[0]
    upper = meta[1]
    xmax = meta[2]
    xc = x
    if xc < lower:
        xc = lower
    elif xc > xmax:
        xc = xmax
    if xc < upper:
        l = int((xc - lower) / meta[3])
        node = lower + l * meta[3]
    else:
        l = int(meta[5]) + int((xc - upper) / meta[4])
        if l > nint - 1:
            l = nint - 1
        node = upper + (l - int(meta[5])) * meta[4]
    return l, xc - node, x - xc


@njit(inline="always", **FLAGS)
def poly_at(c, m, tau, order):
    """Value and slope at tau of output m of the piece c (order+1, M) (Horner, unrolled)."""
    if order == 5:
        c5 = c[5, m]
        c4 = c[4, m]
        c3 = c[3, m]
        c2 = c[2, m]
        c1 = c[1, m]
        v = ((((c5 * tau + c4) * tau + c3) * tau + c2) * tau + c1) * tau + c[0, m]
        d = (((5.0 * c5 * tau + 4.0 * c4) * tau + 3.0 * c3) * tau + 2.0 * c2) * tau + c1
    else:
        c3 = c[3, m]
        c2 = c[2, m]
        c1 = c[1, m]
        v = ((c3 * tau + c2) * tau + c1) * tau + c[0, m]
        d = (3.0 * c3 * tau + 2.0 * c2) * tau + c1
    return v, d


@njit(**FLAGS)
def tab_contract_T(atypes, rt, poff, npad, rt_pad, G_pad, coef, coff, meta, netidx, inv_nnei,
                   T, beyond):
    """T (na, 4, M) from tables; padding through G_pad (ntypes, ntypes, M).
    beyond[0] += pairs beyond the end of the table."""
    ntypes = poff.shape[0]
    na = T.shape[0]
    M = T.shape[2]
    order = coef.shape[1] - 1
    nb = 0
    for a in range(na):
        ti = atypes[a]
        Ta = T[a]
        T0 = Ta[0]
        T1 = Ta[1]
        T2 = Ta[2]
        T3 = Ta[3]
        for c in range(4):
            for m in range(M):
                Ta[c, m] = 0.0
        for t in range(ntypes):
            k = netidx[ti, t]
            nint = (coff[k + 1] - coff[k])
            for p in range(poff[t, a], poff[t, a + 1]):
                l, tau, ex = locate(rt[p, 0], meta[k], nint)
                if ex > 0.0:
                    nb += 1
                cl = coef[coff[k] + l]
                r0 = rt[p, 0]
                r1 = rt[p, 1]
                r2 = rt[p, 2]
                r3 = rt[p, 3]
                for m in range(M):
                    v, d = poly_at(cl, m, tau, order)
                    v = v + ex * d
                    T0[m] += r0 * v
                    T1[m] += r1 * v
                    T2[m] += r2 * v
                    T3[m] += r3 * v
            add_padding(Ta, npad[a, t], rt_pad[ti, t], G_pad[ti, t])
        scale(Ta, inv_nnei)
    beyond[0] += nb


@njit(**FLAGS)
def tab_pair_forces(atoms, atypes, rt, dvec, nbr, poff, coef, coff, meta, netidx, Tbar, sd,
                    rcut, rcut_smth, force, virial, atom_virial, want_atom_virial):
    """Forces and virials from Tbar (na, 4, M) = dE/dT / nnei, re-evaluating the tables."""
    ntypes = poff.shape[0]
    na = atoms.shape[0]
    M = Tbar.shape[2]
    order = coef.shape[1] - 1
    for t in range(ntypes):
        for a in range(na):
            i = atoms[a]
            ti = atypes[a]
            k = netidx[ti, t]
            nint = (coff[k + 1] - coff[k])
            Tb = Tbar[a]
            T0 = Tb[0]
            T1 = Tb[1]
            T2 = Tb[2]
            T3 = Tb[3]
            for p in range(poff[t, a], poff[t, a + 1]):
                r0 = rt[p, 0]
                l, tau, ex = locate(r0, meta[k], nint)
                cl = coef[coff[k] + l]
                r1 = rt[p, 1]
                r2 = rt[p, 2]
                r3 = rt[p, 3]
                g0 = 0.0
                g1 = 0.0
                g2 = 0.0
                g3 = 0.0
                gx = 0.0
                for m in range(M):
                    v, d = poly_at(cl, m, tau, order)
                    v = v + ex * d
                    t0 = T0[m]
                    t1 = T1[m]
                    t2 = T2[m]
                    t3 = T3[m]
                    g0 += v * t0
                    g1 += v * t1
                    g2 += v * t2
                    g3 += v * t3
                    gx += d * (r0 * t0 + r1 * t1 + r2 * t2 + r3 * t3)
                scatter_pair(i, nbr[p], g0 + gx, g1, g2, g3, dvec[p, 0], dvec[p, 1], dvec[p, 2],
                             ti, t, sd, rcut, rcut_smth, force, virial, atom_virial, want_atom_virial)
