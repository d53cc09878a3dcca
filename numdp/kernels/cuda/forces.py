"""Deterministic force and virial assembly from per-pair force vectors (no atomics).

Each pair p writes f_p = dE/dd_p (3,) to its own slot (numdp.kernels.cuda.envmat.pair_forces);
then one thread per centre sums its own pairs in slot order (force += f), and one thread per
extended atom sums the pairs it is the neighbour of (force -= f, atom virial -= f ⊗ d) in the
order of a reverse index sorted by (neighbour, pair).  `fold_rows` then sums the rows of each
owned atom and its periodic images in a fixed order.  Same input, same bits, on every call.
"""
from numba import cuda

from .envmat import slot_of
from .launch import split


@cuda.jit
def start_totals(m, first, virial, force):
    """virial (9,) eV -= m (9,) eV (a chunk's fpair^T dvec); when `first` (the call's first chunk)
    virial starts from 0.0 and force (nall, 3) eV/Å is zeroed: the zeroed arrays and the in-place
    subtraction the call made before, in one launch, with the same bits (0.0 - m, not -m: the sign
    of a zero).  Grid-stride over max(9, nall)."""
    for i in range(cuda.grid(1), max(9, force.shape[0]), cuda.gridsize(1)):
        if i < 9:
            v = 0.0 if first else virial[i]
            virial[i] = v - m[i]
        if first and i < force.shape[0]:
            force[i, 0] = 0.0
            force[i, 1] = 0.0
            force[i, 2] = 0.0


@cuda.jit
def gather_centres(atoms, sec, fpair, force):
    """force[atoms[a]] += Σ_{slots p of a, block-major order} fpair[p].  One thread per atom."""
    na = atoms.shape[0]
    for a in range(cuda.grid(1), na, cuda.gridsize(1)):
        fx = 0.0
        fy = 0.0
        fz = 0.0
        for t in range(sec.shape[0] - 1):
            sel_t = sec[t + 1] - sec[t]
            base = na * sec[t] + a * sel_t
            for p in range(base, base + sel_t):
                fx += fpair[p, 0]
                fy += fpair[p, 1]
                fz += fpair[p, 2]
        i = atoms[a]
        force[i, 0] += fx
        force[i, 1] += fy
        force[i, 2] += fz


@cuda.jit
def gather_neighbours(snbr, rev, fpair, dvec, force, atom_virial, want_atom_virial):
    """One thread per sorted position q of the chunk's P pairs (rev sorts them by (neighbour,
    pair), snbr[q] = nbr[rev[q]]).  The thread at the start of a neighbour's segment (k = snbr[q]
    >= 0, and q == 0 or snbr[q - 1] != k) sums its pairs p = rev[q'], q <= q' < P while snbr[q'] ==
    k: force[k] -= Σ fpair[p], and when want_atom_virial atom_virial[k] (9,) += -Σ fpair[p] ⊗
    dvec[p] (DeePMD-kit's split: a pair's virial goes to its neighbour).  Every other thread
    returns at once.  The launch size is P, known without reading the device (no count of distinct
    neighbours).  The chunk's total virial is one matrix product, -fpair^T dvec (the caller's),
    not a sum of these shares: a (P, 9) array of shares summed along its long axis cost more
    than the rest of the force assembly (docs/gpu.md, "Launch cost")."""
    P = snbr.shape[0]
    for q in range(cuda.grid(1), P, cuda.gridsize(1)):
        k = snbr[q]
        if k < 0 or (q > 0 and snbr[q - 1] == k):
            continue
        fx = 0.0
        fy = 0.0
        fz = 0.0
        e = q
        while e < P and snbr[e] == k:
            p = rev[e]
            fx += fpair[p, 0]
            fy += fpair[p, 1]
            fz += fpair[p, 2]
            e += 1
        force[k, 0] -= fx
        force[k, 1] -= fy
        force[k, 2] -= fz
        if want_atom_virial:
            for a in range(3):
                for b in range(3):
                    v = 0.0
                    for f in range(q, e):
                        p = rev[f]
                        v += fpair[p, a] * dvec[p, b]
                    atom_virial[k, 3 * a + b] -= v


@cuda.jit
def scatter_atomic(atoms, sec, nbr, fpair, dvec, force, atom_virial, want_atom_virial):
    """The non-deterministic alternative to the gathers, for the benchmark's cost comparison only:
    one thread per slot adds its pair's force to the centre and the neighbour and, when
    want_atom_virial, its virial to the neighbour's row of atom_virial (nall, 9) with
    floating-point atomics (sum order follows thread timing).  Not used by default: numdp
    evaluates with the gathers."""
    na = atoms.shape[0]
    for p in range(cuda.grid(1), nbr.shape[0], cuda.gridsize(1)):
        j = nbr[p]
        if j < 0:
            continue
        _, a, _ = slot_of(p, na, sec)
        i = atoms[a]
        for c in range(3):
            cuda.atomic.add(force, (i, c), fpair[p, c])
            cuda.atomic.add(force, (j, c), -fpair[p, c])
        if not want_atom_virial:
            continue
        for c in range(3):
            for e in range(3):
                cuda.atomic.add(atom_virial, (j, 3 * c + e), -fpair[p, c] * dvec[p, e])


@cuda.jit
def fold_rows(ext, order, start, out):
    """out[i, :] = Σ ext[order[q], :] for q in [start[i], start[i + 1]): the rows (forces (nall, 3)
    or atomic virials (nall, 9)) of atom i and of its periodic images folded onto it, in the fixed
    order of `order` (extended atoms sorted by (owner, index): the atom itself first, then its
    images in index order, np.bincount's order on the CPU).  One thread per (owned atom, column)."""
    k = out.shape[1]
    for idx in range(cuda.grid(1), out.shape[0] * k, cuda.gridsize(1)):
        i, c = split(idx, k)
        s = 0.0
        for q in range(start[i], start[i + 1]):
            s += ext[order[q], c]
        out[i, c] = s


# -- the reverse index of a chunk's pairs (DeviceChunkEnv.reverse_index) ---------------------------
@cuda.jit
def pair_sort_keys(nbr, key):
    """key[p] = nbr[p] P + p (int64, P = nbr.shape[0] pairs): unique keys that order the pairs by
    (neighbour, pair), padding (-1) first.  One thread per pair."""
    P = nbr.shape[0]
    for p in range(cuda.grid(1), P, cuda.gridsize(1)):
        key[p] = nbr[p] * P + p


@cuda.jit
def sorted_neighbours(nbr, rev, snbr):
    """snbr[q] = nbr[rev[q]]: the neighbours in the sorted order of the pairs.  One thread per
    sorted position."""
    P = rev.shape[0]
    for q in range(cuda.grid(1), P, cuda.gridsize(1)):
        snbr[q] = nbr[rev[q]]
