"""Environment-matrix kernels (reference §2): switching function, normalised rows, and the
pair-force assembly that consumes the gradient with respect to those rows (§6).

Pairs are stored flat, grouped by neighbour-type block, then centre atom, then slot:
pair p of block t for chunk atom a lies in poff[t, a] <= p < poff[t, a + 1].
"""
import numpy as np
from numba import njit

from ..math import CPU, SLOTS_PADDING, SLOTS_PAIRS

FASTMATH = {"reassoc", "contract", "nsz"}


switch = CPU.switch            # (w, dw/dr) of the switching function (numdp.kernels.math)
write_pair_row = CPU.write_pair_row
row_grad_to_dvec = CPU.row_grad_to_dvec
row_tangent = CPU.row_tangent


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def env_pairs(pos, nlist, atoms, atypes, sec, mu, sd, excl, rcut, rcut_smth, rt, dvec, nbr, poff, npad):
    """`env_pairs_rows` with the rows of a whole list: nlist (nloc, nnei), row atoms[a] for chunk
    atom a."""
    return env_pairs_rows(pos, nlist, atoms, atoms, atypes, sec, mu, sd, excl, rcut, rcut_smth, rt, dvec,
                          nbr, poff, npad)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def env_pairs_rows(pos, nlist, rows, atoms, atypes, sec, mu, sd, excl, rcut, rcut_smth,
                   rt, dvec, nbr, poff, npad):
    """Collect the occupied slots of chunk atoms and their normalised rows.

    pos: (nall, 3) extended positions Å (locals first); nlist: (nrows, nnei) int32;
    rows: (na,) the row of nlist of each chunk atom (atoms itself for a whole list of the nloc
    local atoms, 0..na-1 for the chunk's own rows); atoms: (na,) local indices of the chunk;
    atypes: (na,) their types;
    sec: (ntypes+1,) slot block starts; mu, sd: (ntypes, ntypes, 4) normalisation per
    (centre type, neighbour block); excl: (ntypes, ntypes) the slot mode of each (centre type,
    neighbour type) block (ModelParams.slot_modes: SLOTS_PAIRS, SLOTS_ZERO, SLOTS_PADDING of
    numdp.kernels.math; a bool Descriptor.excluded reads as pairs / zero rows).  Outputs: rt (>=npairs, 4) normalised rows, dvec
    (>=npairs, 3) pair vectors d = r_j - r_i, nbr (>=npairs,) extended neighbour index,
    poff (ntypes, na+1) pair offsets, npad (na, ntypes) padding-slot counts.
    Neighbours at r >= rcut have an all-zero raw row, identical to padding, and are counted
    as padding.  A neighbour within rcut of an excluded pair (SLOTS_ZERO) is neither a pair nor
    padding (its row is zero, DeePMD-kit's exclusion mask): it is told apart by write_pair_row
    itself, whose row (at slot p, overwritten by the next pair) is dropped, so that "within
    rcut" is the very test that makes a pair.  Every slot of a SLOTS_PADDING block is padding (a
    neighbour list without these pairs).  Returns the number of pairs.
    """
    ntypes = sec.shape[0] - 1
    na = atoms.shape[0]
    p = 0
    for t in range(ntypes):
        for a in range(na):
            poff[t, a] = p
            i = atoms[a]
            ti = atypes[a]
            n_real = 0
            mode = excl[ti, t]
            row = rows[a]
            for s in range(sec[t], sec[t + 1] if mode != SLOTS_PADDING else sec[t]):
                j = nlist[row, s]
                if j < 0:
                    break
                if not write_pair_row(pos, i, j, ti, t, mu, sd, rcut_smth, rcut, p, rt, dvec, nbr):
                    continue
                n_real += 1   # a slot taken: a pair, or an excluded neighbour (row dropped)
                if mode == SLOTS_PAIRS:
                    p += 1
            npad[a, t] = sec[t + 1] - sec[t] - n_real
        poff[t, na] = p
    return p


@njit(cache=True, nogil=True, inline="always", error_model="numpy", fastmath=FASTMATH)
def scatter_pair(i, j, g0, g1, g2, g3, dx, dy, dz, ti, t, sd, rcut, rcut_smth,
                 force, virial, atom_virial, want_atom_virial):
    """Turn dE/drt (g0..g3) of one pair into dE/dd and scatter forces and virials.

    dE/dR (raw row) = dE/drt / sd; the Jacobian dR/dd is reference §2.3.  Force on the centre
    i is +dE/dd, on the neighbour j is -dE/dd; virial -= dE/dd (x) d, attributed to j.
    """
    gxv, gyv, gzv = row_grad_to_dvec(g0 / sd[ti, t, 0], g1 / sd[ti, t, 1], g2 / sd[ti, t, 2],
                                     g3 / sd[ti, t, 3], dx, dy, dz, rcut_smth, rcut)
    force[i, 0] += gxv
    force[i, 1] += gyv
    force[i, 2] += gzv
    force[j, 0] -= gxv
    force[j, 1] -= gyv
    force[j, 2] -= gzv
    v00 = gxv * dx
    v01 = gxv * dy
    v02 = gxv * dz
    v10 = gyv * dx
    v11 = gyv * dy
    v12 = gyv * dz
    v20 = gzv * dx
    v21 = gzv * dy
    v22 = gzv * dz
    virial[0, 0] -= v00
    virial[0, 1] -= v01
    virial[0, 2] -= v02
    virial[1, 0] -= v10
    virial[1, 1] -= v11
    virial[1, 2] -= v12
    virial[2, 0] -= v20
    virial[2, 1] -= v21
    virial[2, 2] -= v22
    if want_atom_virial:
        atom_virial[j, 0] -= v00
        atom_virial[j, 1] -= v01
        atom_virial[j, 2] -= v02
        atom_virial[j, 3] -= v10
        atom_virial[j, 4] -= v11
        atom_virial[j, 5] -= v12
        atom_virial[j, 6] -= v20
        atom_virial[j, 7] -= v21
        atom_virial[j, 8] -= v22


@njit(cache=True, nogil=True, inline="always", error_model="numpy", fastmath=FASTMATH)
def row_grad(rt, p, G, Gp, q, Tbar, a):
    """dE/drt of pair p (4 values) whose embedding output and dG/dx are rows q of G, Gp (M):
    dE/drt_c = Σ_m G[q, m] Tbar[a, c, m], plus, in column 0 (the embedding's input x = rt_0),
    Σ_m Gp[q, m] Σ_c rt[p, c] Tbar[a, c, m]."""
    g0 = 0.0
    g1 = 0.0
    g2 = 0.0
    g3 = 0.0
    gx = 0.0
    r0 = rt[p, 0]
    r1 = rt[p, 1]
    r2 = rt[p, 2]
    r3 = rt[p, 3]
    for m in range(G.shape[1]):
        t0 = Tbar[a, 0, m]
        t1 = Tbar[a, 1, m]
        t2 = Tbar[a, 2, m]
        t3 = Tbar[a, 3, m]
        gm = G[q, m]
        g0 += gm * t0
        g1 += gm * t1
        g2 += gm * t2
        g3 += gm * t3
        gx += Gp[q, m] * (r0 * t0 + r1 * t1 + r2 * t2 + r3 * t3)
    return g0 + gx, g1, g2, g3


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def pair_forces(atoms, atypes, rt, dvec, nbr, poff, G, Gp, Tbar, sd, rcut, rcut_smth,
                force, virial, atom_virial, want_atom_virial):
    """Back-propagate dE/dT to pair vectors and scatter forces and virials.

    G, Gp: (npairs, M) embedding output and its derivative with respect to the input x;
    Tbar: (na, 4, M) dE/dT_i with the 1/nnei factor already applied, so that
    dE/dG_jm = sum_a rt_ja Tbar[a, m] and dE/drt_ja = sum_m G_jm Tbar[a, m].
    Accumulates into force (nall, 3) eV/Å, virial (3, 3) eV, and atom_virial (nall, 9) eV
    when want_atom_virial (DeePMD-kit convention: the pair term goes to the neighbour).
    """
    ntypes = poff.shape[0]
    na = atoms.shape[0]
    for t in range(ntypes):
        for a in range(na):
            i = atoms[a]
            ti = atypes[a]
            for p in range(poff[t, a], poff[t, a + 1]):
                g0, g1, g2, g3 = row_grad(rt, p, G, Gp, p, Tbar, a)
                scatter_pair(i, nbr[p], g0, g1, g2, g3, dvec[p, 0], dvec[p, 1], dvec[p, 2],
                             ti, t, sd, rcut, rcut_smth, force, virial, atom_virial, want_atom_virial)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def pair_forces_members(u0, u1, ulo, t, ustart, pair_atom, atoms, atypes, rt, dvec, nbr, G, Gp,
                        Tbar, sd, rcut, rcut_smth, force, virial):
    """`pair_forces` for the member pairs of shared embedding rows u0..u1-1 of neighbour block t
    (`numdp.kernels.cpu.train.merge_inputs`; members ustart[u] <= p < ustart[u+1],
    `order_members`): row u's G, Gp at u - ulo, pair p's centre chunk
    atom pair_atom[p] (local atom atoms[a] of type atypes[a]); no per-atom virial."""
    for u in range(u0, u1):
        q = u - ulo
        for p in range(ustart[u], ustart[u + 1]):
            a = pair_atom[p]
            g0, g1, g2, g3 = row_grad(rt, p, G, Gp, q, Tbar, a)
            scatter_pair(atoms[a], nbr[p], g0, g1, g2, g3, dvec[p, 0], dvec[p, 1], dvec[p, 2],
                         atypes[a], t, sd, rcut, rcut_smth, force, virial, virial, False)


@njit(cache=True, nogil=True)
def pair_distance_range(pos, nlist, types, rcut, rrange):
    """rrange (ntypes, 2) ← min / max of neighbour distances r < rcut (Å) per centre type.

    pos (nall, 3) extended positions; nlist (nloc, nnei); types (nloc,).  Entries start at
    (inf, -inf) and are updated in place so that several frames accumulate.
    """
    nloc, nnei = nlist.shape
    for i in range(nloc):
        ti = types[i]
        for s in range(nnei):
            j = nlist[i, s]
            if j < 0:
                continue
            dx = pos[j, 0] - pos[i, 0]
            dy = pos[j, 1] - pos[i, 1]
            dz = pos[j, 2] - pos[i, 2]
            r = np.sqrt(dx * dx + dy * dy + dz * dz)
            if r >= rcut:
                continue
            if r < rrange[ti, 0]:
                rrange[ti, 0] = r
            if r > rrange[ti, 1]:
                rrange[ti, 1] = r
