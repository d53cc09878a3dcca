"""Numba CPU kernels for ghost images, the cell list, candidate pairs and DeePMD slot formatting.

Every kernel is a plain function over arrays: inputs, then outputs (filled in place), then nothing
else; no kernel raises, allocates its results or reads configuration.  Lengths are Å.  Work is split
over `prange` so that each iteration writes only its own rows; the results never depend on the
number of threads.  Drivers live in `numdp.neighbor`.

Packed sort keys (reference §10.1): `numdp.kernels.keys` (one scalar definition shared with the
CUDA kernels), re-exported here as `pack_key` / `unpack_key` (their CPU builds).
The index field of a CPU key holds the neighbour's ordinal among its centre's keys (distinct, so
every sort gives the same order), and ties of (type, quantised distance) are then ordered by the
extended index itself (`_fill_row`): the order of §10.1's keys for nall < 2**24, and exact for any
int32 index.  `format_nlist` uses a counting sort on coarse (type, r³) labels plus an insertion sort
(`_sort_keys`), measured ~3x faster than np.sort on the ~100 keys of a water atom, with np.sort as
the fallback for crowded labels.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from numdp.kernels.keys import (  # noqa: F401  (KEY_* re-exported for numdp.neighbor)
    KEY_DIST_SCALE,
    KEY_DIST_SHIFT,
    KEY_MAX_DIST,
    KEY_MAX_TYPES,
    KEY_TYPE_SHIFT,
    INDEX_MASK,
)
from numdp.kernels.keys import pack_key_cpu as pack_key
from numdp.kernels.keys import unpack_key_cpu as unpack_key
from numdp.kernels.dual import cpu_inline
from numdp.kernels.math import CPU
from numdp.kernels.mdmath import closest_neighbour

# nearest listed neighbour of one row (numdp.kernels.mdmath, shared with the MD safety test)
_closest_neighbour = cpu_inline(closest_neighbour)
# image shifts and cell-list stencil, shared with the CUDA kernels (numdp.kernels.math)
_shift_range = CPU.shift_range
_write_images = CPU.write_images
_stencil_bounds = CPU.stencil_bounds

KEY_DIST_SHIFT_U = np.uint64(KEY_DIST_SHIFT)
INDEX_MASK_U = np.uint64(INDEX_MASK)

# Rows handled by one prange iteration (one scratch buffer each); any value gives the same result.
_CHUNK = 64

# Largest label population that `_sort_keys` insertion-sorts; more falls back to np.sort.
_MAX_BUCKET = 64


@njit(cache=True, nogil=True)
def pack_keys(types, dist, index, keys):
    """Vector form of `pack_key` (tests, tools): types (n,), dist (n,) Å, index (n,) -> keys (n,) uint64."""
    for k in range(keys.shape[0]):
        keys[k] = pack_key(types[k], dist[k], index[k])


@njit(cache=True, nogil=True)
def unpack_keys(keys, types, qdist, index):
    """Vector form of `unpack_key`: keys (n,) uint64 -> types, qdist, index, each (n,) int64."""
    for k in range(keys.shape[0]):
        t, q, j = unpack_key(keys[k])
        types[k] = t
        qdist[k] = q
        index[k] = j


# --------------------------------------------------------------------------------------------------
# Ghost images
# --------------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True, parallel=True)
def count_images(frac, lo, hi, counts):
    """Number of ghost images of each atom inside the fractional region [lo, hi).

    frac (nloc, 3) wrapped fractional coordinates in [0, 1); lo, hi (3,) region bounds with lo <= 0
    and hi >= 1 (so the zero shift is always inside and is not counted).  counts (nloc,) int64 out:
    the number of non-zero integer shifts n with lo_k <= frac_k + n_k < hi_k for k = 0, 1, 2.
    """
    for i in prange(frac.shape[0]):
        c = np.int64(1)
        for k in range(3):
            nmin, nmax = _shift_range(frac[i, k], lo[k], hi[k])
            c *= nmax - nmin + 1
        counts[i] = c - 1


@njit(cache=True, nogil=True, parallel=True)
def fill_images(pos, frac, types, box, lo, hi, start, out_pos, out_types, out_map, out_shift):
    """Write the ghost images counted by `count_images` (atom-major; shifts n0, n1, n2 ascending).

    pos (nloc, 3) wrapped Cartesian positions (Å); frac (nloc, 3) their fractional coordinates;
    types (nloc,) int32; box (3, 3) rows = cell vectors (Å); lo, hi (3,) as in `count_images`;
    start (nloc,) int64 first output row of each atom's images.
    Out: out_pos (nall, 3) = pos[i] + n @ box, out_types (nall,), out_map (nall,) = i,
    out_shift (nall, 3) = n, each at rows start[i] ... start[i] + counts[i] - 1.
    """
    for i in prange(frac.shape[0]):
        _write_images(pos, frac, types, box, lo, hi, i, start[i], out_pos, out_types, out_map, out_shift, True)


# --------------------------------------------------------------------------------------------------
# Cell list
# --------------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True, parallel=True)
def bin_atoms(pos, lo, inv_width, nbins, nloc, cell_start, order, sx, sy, sz, scell, centres):
    """Counting sort of atoms into a Cartesian grid of cells (stable: ascending index within a cell).

    pos (nall, 3) Å; lo (3,) grid origin; inv_width (3,) cells per Å along x, y, z; nbins (3,) int64
    cells along x, y, z (linear cell = (cz * ny + cy) * nx + cx, clamped into the grid); nloc: atoms
    0..nloc-1 are centres.
    Out: cell_start (ncell + 1,) int64 CSR offsets into the sorted order; order (nall,) int32 sorted
    position -> atom; sx, sy, sz (nall,) sorted coordinates; scell (nall,) int64 sorted cell index;
    centres (nloc,) int64 sorted positions of atoms < nloc, ascending (cell order).
    """
    nall = pos.shape[0]
    nx, ny, nz = nbins[0], nbins[1], nbins[2]
    ncell = nx * ny * nz
    cell = np.empty(nall, np.int64)
    for i in prange(nall):
        cx = min(max(np.int64((pos[i, 0] - lo[0]) * inv_width[0]), 0), nx - 1)
        cy = min(max(np.int64((pos[i, 1] - lo[1]) * inv_width[1]), 0), ny - 1)
        cz = min(max(np.int64((pos[i, 2] - lo[2]) * inv_width[2]), 0), nz - 1)
        cell[i] = (cz * ny + cy) * nx + cx
    for c in range(ncell + 1):
        cell_start[c] = 0
    for i in range(nall):
        cell_start[cell[i] + 1] += 1
    for c in range(ncell):
        cell_start[c + 1] += cell_start[c]
    cursor = cell_start[:ncell].copy()
    for i in range(nall):
        c = cell[i]
        p = cursor[c]
        cursor[c] = p + 1
        order[p] = i
        sx[p] = pos[i, 0]
        sy[p] = pos[i, 1]
        sz[p] = pos[i, 2]
        scell[p] = c
    m = 0
    for p in range(nall):
        if order[p] < nloc:
            centres[m] = p
            m += 1


@njit(cache=True, nogil=True, inline="always")
def _scan_hits(p, sx, sy, sz, scell, cell_start, nbins, reach, cutoff2, hits, hr2, keep_hits, keep_r2):
    """The atoms within the cutoff of the atom at sorted position p (p itself included: r = 0),
    in cell-scan order: their number and, if keep_hits, their sorted positions q, and if also
    keep_r2, their squared distances (Å²).  keep_hits and keep_r2 are constants at each call
    site: without hits the scan only counts (`count_candidates`: the stores compiled out, as
    storing made counting 5-50 % slower).

    hits (int64) and hr2 (float64) are scratch of any size: they are replaced by larger arrays
    when the scan needs more room.  Returns (number of hits, hits, hr2); the hits are compacted
    branch-free to the front of the buffers.
    """
    nx, ny = nbins[0], nbins[1]
    x0, x1, y0, y1, z0, z1 = _stencil_bounds(scell[p], nx, ny, nbins[2], reach)
    xi = sx[p]
    yi = sy[p]
    zi = sz[p]
    h = 0
    for z in range(z0, z1 + 1):
        for y in range(y0, y1 + 1):
            row = (z * ny + y) * nx
            q0 = cell_start[row + x0]
            q1 = cell_start[row + x1 + 1]
            if keep_hits and h + (q1 - q0) > hits.shape[0]:
                grow = 2 * (h + (q1 - q0))
                grown_hits = np.empty(grow, np.int64)
                grown_r2 = np.empty(grow)
                for u in range(h):   # (element by element: a slice copy here trips parfors' size checks)
                    grown_hits[u] = hits[u]
                    grown_r2[u] = hr2[u]
                hits = grown_hits
                hr2 = grown_r2
            for q in range(q0, q1):
                dx = sx[q] - xi
                dy = sy[q] - yi
                dz = sz[q] - zi
                r2 = dx * dx + dy * dy + dz * dz
                if keep_hits:
                    hits[h] = q  # branch-free compaction: kept only if h advances
                    if keep_r2:
                        hr2[h] = r2
                h += r2 <= cutoff2
    return h, hits, hr2


@njit(cache=True, nogil=True, parallel=True)
def count_candidates(sx, sy, sz, order, scell, cell_start, nbins, reach, centres, cutoff2, counts):
    """Number of atoms j != i within the cutoff of each centre atom i (cell-list scan).

    Inputs are the outputs of `bin_atoms`; reach (int) is the stencil half-width in cells (cells must
    be at least cutoff / reach wide); cutoff2 = cutoff**2 (Å²).  counts (nloc,) int64 out, indexed by
    the local atom.  The pair test is r_ij**2 <= cutoff2 on Cartesian coordinates.
    """
    no_hits = np.empty(0, np.int64)   # never written: the scan only counts
    no_r2 = np.empty(0)
    for m in prange(centres.shape[0]):
        p = centres[m]
        cnt, _, _ = _scan_hits(p, sx, sy, sz, scell, cell_start, nbins, reach, cutoff2, no_hits, no_r2, False,
                               False)
        counts[order[p]] = cnt - 1  # the centre itself (r = 0) was counted once


@njit(cache=True, nogil=True, parallel=True)
def fill_candidates(sx, sy, sz, order, scell, cell_start, nbins, reach, centres, cutoff2, offsets, indices):
    """Write the candidates counted by `count_candidates` in CSR form.

    Same inputs as `count_candidates` plus offsets (nloc + 1,) int64 (prefix sums of its counts).
    indices (offsets[-1],) int32 out: for local atom i, indices[offsets[i]:offsets[i+1]] are the
    extended indices j != i with r_ij <= cutoff, in cell-scan order (deterministic).
    """
    nc = centres.shape[0]
    nchunk = (nc + _CHUNK - 1) // _CHUNK
    for ch in prange(nchunk):
        hits = np.empty(256, np.int64)  # sorted positions of the hits of one centre
        hr2 = np.empty(256)             # unused here (distances not kept)
        for m in range(ch * _CHUNK, min(nc, (ch + 1) * _CHUNK)):
            p = centres[m]
            k, hits, hr2 = _scan_hits(p, sx, sy, sz, scell, cell_start, nbins, reach, cutoff2, hits,
                                      hr2, True, False)
            o = offsets[order[p]]
            for s in range(k):
                q = hits[s]
                if q != p:  # the centre itself (r = 0) is always among the hits
                    indices[o] = order[q]
                    o += 1


@njit(cache=True, nogil=True, parallel=True)
def bounding_box(pos, lo, hi):
    """Componentwise minimum lo (3,) and maximum hi (3,) of pos (n >= 1, 3), Å."""
    for k in prange(3):
        a = pos[0, k]
        b = pos[0, k]
        for i in range(1, pos.shape[0]):
            v = pos[i, k]
            a = min(a, v)
            b = max(b, v)
        lo[k] = a
        hi[k] = b


# --------------------------------------------------------------------------------------------------
# DeePMD slot formatting
# --------------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True, inline="always")
def _sort_keys(keys, bucket, n, nbucket, cnt, out):
    """out[:n] = keys[:n] in ascending order (the same result as np.sort: the keys are distinct).

    bucket[:n] holds coarse labels in [0, nbucket) that should grow with the key (here: type and a
    bin of r³).  A counting sort on the labels leaves the keys nearly sorted and a final insertion
    sort finishes the job; the result is sorted whatever the labels (they only affect the speed),
    and is ~3x faster than np.sort for the ~100 keys of one atom.  Falls back to np.sort when one
    label holds more than _MAX_BUCKET keys (bounding the insertion sort's quadratic worst case).
    cnt: (nbucket + 1,) int64 scratch; out: (>= n,) uint64.
    """
    for b in range(nbucket + 1):
        cnt[b] = 0
    for s in range(n):
        cnt[bucket[s] + 1] += 1
    big = 0
    for b in range(nbucket):
        big = max(big, cnt[b + 1])
        cnt[b + 1] += cnt[b]
    if big > _MAX_BUCKET:
        for s in range(n):
            out[s] = keys[s]
        view = out[:n]
        view.sort()
        return
    for s in range(n):
        b = bucket[s]
        out[cnt[b]] = keys[s]
        cnt[b] += 1
    for s in range(1, n):
        v = out[s]
        u = s - 1
        while u >= 0 and out[u] > v:
            out[u + 1] = out[u]
            u -= 1
        out[u + 1] = v


@njit(cache=True, nogil=True, inline="always")
def _fill_row(i, keys, bucket, n, nbucket, cnt, skeys, js, base, sel, sec, nlist, counts):
    """Sort the n keys of centre i and write its slots: block t of nlist[i] gets the first sel[t]
    type-t neighbours; counts[i, t] = how many there were (the row was reset to -1 / 0).

    The keys carry in their index field the neighbour's ordinal u < n, its extended index being
    js[base + u]: after the sort, each run of keys with equal (type, quantised distance) (a tie,
    rare) is put in ascending order of that index.  The order is (type, quantised distance,
    index): the order of keys packing the index itself (reference §10.1) whenever nall < 2**24,
    and exact for any int32 index (as the CUDA kernels' ranks)."""
    _sort_keys(keys, bucket, n, nbucket, cnt, skeys)
    k = 0
    while k < n:
        e = k + 1
        while e < n and (skeys[e] >> KEY_DIST_SHIFT_U) == (skeys[k] >> KEY_DIST_SHIFT_U):
            e += 1
        for a in range(k + 1, e):   # insertion sort of the tie's keys by extended index
            v = skeys[a]
            jv = js[base + np.int64(v & INDEX_MASK_U)]
            b = a - 1
            while b >= k and js[base + np.int64(skeys[b] & INDEX_MASK_U)] > jv:
                skeys[b + 1] = skeys[b]
                b -= 1
            skeys[b + 1] = v
        k = e
    for k in range(n):
        t, q, u = unpack_key(skeys[k])
        c = counts[i, t]
        if c < sel[t]:
            nlist[i, sec[t] + c] = js[base + u]
        counts[i, t] = c + 1


@njit(cache=True, nogil=True)
def distance_labels(expected, ntypes, rcut2):
    """(labels per type, label scale) for `_sort_keys`: about one key per label when a centre has
    `expected` neighbours within rcut (only the speed of the sort depends on it)."""
    nb = 8
    while nb < 1024 and nb * ntypes < expected:
        nb *= 2
    return nb, nb / (rcut2 * math.sqrt(rcut2))


@njit(cache=True, nogil=True, inline="always")
def _scan_centre(p, r, sx, sy, sz, order, scell, cell_start, nbins, reach, types, rcut2, sel, sec, nb,
                 label_scale, nlist, counts, hits, hr2, keys, bucket, skeys, cnt):
    """Write row r of nlist and counts for the centre atom at sorted position p (cell-list scan,
    keys, sort: the body of `scan_nlist` and `scan_rows`).  hits ... cnt are scratch (grown when
    needed); returns (hits, hr2, keys, bucket, skeys), the buffers to use for the next centre."""
    nnei = nlist.shape[1]
    ntypes = sel.shape[0]
    i = order[p]
    for s in range(nnei):
        nlist[r, s] = -1
    for t in range(ntypes):
        counts[r, t] = 0
    if types[i] < 0:
        return hits, hr2, keys, bucket, skeys
    h, hits, hr2 = _scan_hits(p, sx, sy, sz, scell, cell_start, nbins, reach, rcut2, hits, hr2, True, True)
    if keys.shape[0] < h:
        keys = np.empty(hits.shape[0], np.uint64)
        bucket = np.empty(hits.shape[0], np.int64)
        skeys = np.empty(hits.shape[0], np.uint64)
    n = 0
    for u in range(h):
        q = hits[u]
        j = order[q]
        tj = types[j]
        if q != p and tj >= 0:
            r2 = hr2[u]
            rr = math.sqrt(r2)
            keys[n] = pack_key(tj, rr, n)
            bucket[n] = tj * nb + min(nb - 1, np.int64(r2 * rr * label_scale))
            hits[n] = j   # the ordinal's extended index (hits[n] was read: n <= u)
            n += 1
    _fill_row(r, keys, bucket, n, nbucket_of(nb, ntypes), cnt, skeys, hits, 0, sel, sec, nlist, counts)
    return hits, hr2, keys, bucket, skeys


@njit(cache=True, nogil=True, inline="always")
def nbucket_of(nb, ntypes):
    """Number of sort labels: nb distance bins per type."""
    return nb * ntypes


@njit(cache=True, nogil=True, inline="always")
def _expected(sel):
    expected = 0
    for t in range(sel.shape[0]):
        expected += sel[t]
    return expected


@njit(cache=True, nogil=True, parallel=True)
def scan_nlist(sx, sy, sz, order, scell, cell_start, nbins, reach, centres, types, rcut2, sel, sec,
               nlist, counts):
    """`format_nlist` straight from a cell-list scan (no candidate CSR in between).

    Cell-list inputs as in `count_candidates` (built for a cutoff >= rcut); types (nall,) int32
    (negative = virtual atom); rcut2, sel, sec, nlist and counts as in `format_nlist`, whose
    result this reproduces exactly: same pairs (r_ij**2 <= rcut2 on the same coordinates), same
    keys, same order.
    """
    nloc = nlist.shape[0]
    ntypes = sel.shape[0]
    expected = _expected(sel)
    nb, label_scale = distance_labels(expected, ntypes, rcut2)
    nchunk = (nloc + _CHUNK - 1) // _CHUNK
    for ch in prange(nchunk):
        cap = max(64, 4 * expected)
        hits = np.empty(cap, np.int64)    # scanned atoms, the hits compacted to the front
        hr2 = np.empty(cap)               # their squared distances
        keys = np.empty(cap, np.uint64)
        bucket = np.empty(cap, np.int64)
        skeys = np.empty(cap, np.uint64)
        cnt = np.empty(nb * ntypes + 1, np.int64)
        for m in range(ch * _CHUNK, min(nloc, (ch + 1) * _CHUNK)):
            p = centres[m]
            hits, hr2, keys, bucket, skeys = _scan_centre(
                p, order[p], sx, sy, sz, order, scell, cell_start, nbins, reach, types, rcut2, sel, sec, nb,
                label_scale, nlist, counts, hits, hr2, keys, bucket, skeys, cnt)


@njit(cache=True, nogil=True)
def scan_rows(atoms, where, pos, sx, sy, sz, order, scell, cell_start, nbins, reach, types, rcut2, sel,
              sec, nlist, counts, closest):
    """Rows of `scan_nlist` for some centre atoms only (one thread; the model evaluator's chunks).

    atoms (na,) int64 local atom indices, any order; where (nloc,) int32 sorted position of each
    local atom in the cell list; pos (nall, 3) Å, the coordinates the cell list was built from;
    other inputs as in `scan_nlist`.  Out: nlist (na, sec[-1]) int32 and counts (na, ntypes) int32,
    row a for atom atoms[a], equal to rows atoms[a] of `scan_nlist`; closest (3,) float64:
    (squared distance Å², centre, neighbour) of the nearest first-slot neighbour of these rows
    (blocks without slots, sel 0, skipped),
    ties to the lower centre, then the lower type block, as `numdp.kernels.cpu.md.closest_pair`
    over the rows in atom order; (inf, -1, -1) when no row has a neighbour.
    """
    ntypes = sel.shape[0]
    expected = _expected(sel)
    nb, label_scale = distance_labels(expected, ntypes, rcut2)
    cap = max(64, 4 * expected)
    hits = np.empty(cap, np.int64)
    hr2 = np.empty(cap)
    keys = np.empty(cap, np.uint64)
    bucket = np.empty(cap, np.int64)
    skeys = np.empty(cap, np.uint64)
    cnt = np.empty(nb * ntypes + 1, np.int64)
    best = math.inf
    bi = -1
    bj = -1
    for a in range(atoms.shape[0]):
        i = atoms[a]
        hits, hr2, keys, bucket, skeys = _scan_centre(
            where[i], a, sx, sy, sz, order, scell, cell_start, nbins, reach, types, rcut2, sel, sec, nb,
            label_scale, nlist, counts, hits, hr2, keys, bucket, skeys, cnt)
        d, j = _closest_neighbour(pos, nlist, sec, a, i)
        if d < best or (d == best and i < bi):
            best = d
            bi = i
            bj = j
    closest[0] = best
    closest[1] = bi
    closest[2] = bj


@njit(cache=True, nogil=True)
def sorted_positions(order, nloc, where):
    """where (nloc,) int32 out: the sorted position of each local atom (inverse of order < nloc)."""
    for p in range(order.shape[0]):
        i = order[p]
        if i < nloc:
            where[i] = p


@njit(cache=True, nogil=True, parallel=True)
def format_nlist(pos, types, offsets, indices, rcut2, sel, sec, nlist, counts):
    """Per-type, distance-sorted neighbour slots (reference §1.3 with the packed keys of §10.1).

    pos (nall, 3) Å; types (nall,) int32 (< 128; negative = virtual atom: never a neighbour, and a
    virtual centre gets an empty row); offsets (nloc + 1,) int64 and indices (npair,) int32: candidate
    CSR (extended indices, each candidate within 128 Å or beyond rcut); rcut2 = rcut**2 (Å²,
    rcut < 128); sel (ntypes,) int64 slots per type; sec (ntypes + 1,) int64 first slot of each block.
    Out: nlist (nloc, sec[-1]) int32: block t holds the first sel[t] type-t neighbours with
    r <= rcut in ascending packed-key order, i.e. (quantised distance, index), then -1;
    counts (nloc, ntypes) int64: number of type-t neighbours within rcut (the block overflowed, and
    its farthest were dropped, where counts > sel).
    The keys of one atom are sorted by `_sort_keys` (labels: type and a bin of r³, which is
    uniform for a homogeneous system), giving exactly the order of np.sort.
    """
    nloc = nlist.shape[0]
    nnei = nlist.shape[1]
    ntypes = sel.shape[0]
    maxdeg = 1
    for i in range(nloc):
        maxdeg = max(maxdeg, offsets[i + 1] - offsets[i])
    nb, label_scale = distance_labels(maxdeg, ntypes, rcut2)
    nbucket = nb * ntypes
    nchunk = (nloc + _CHUNK - 1) // _CHUNK
    for ch in prange(nchunk):
        keys = np.empty(maxdeg, np.uint64)
        bucket = np.empty(maxdeg, np.int64)
        skeys = np.empty(maxdeg, np.uint64)
        cnt = np.empty(nbucket + 1, np.int64)
        for i in range(ch * _CHUNK, min(nloc, (ch + 1) * _CHUNK)):
            for s in range(nnei):
                nlist[i, s] = -1
            for t in range(ntypes):
                counts[i, t] = 0
            if types[i] < 0:
                continue
            xi = pos[i, 0]
            yi = pos[i, 1]
            zi = pos[i, 2]
            n = 0
            for k in range(offsets[i], offsets[i + 1]):
                j = indices[k]
                tj = types[j]
                dx = pos[j, 0] - xi
                dy = pos[j, 1] - yi
                dz = pos[j, 2] - zi
                r2 = dx * dx + dy * dy + dz * dz
                if r2 <= rcut2 and tj >= 0:
                    r = math.sqrt(r2)
                    keys[n] = pack_key(tj, r, k - offsets[i])
                    bucket[n] = tj * nb + min(nb - 1, np.int64(r2 * r * label_scale))
                    n += 1
            _fill_row(i, keys, bucket, n, nbucket, cnt, skeys, indices, offsets[i], sel, sec, nlist, counts)
