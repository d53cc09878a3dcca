"""CUDA kernels for the neighbour search on the device: ghost images, cell list, packed-key lists.

The device twin of `numdp.kernels.cpu.neighbor` (driver: `numdp.neighbor.device`).  Every kernel is
a plain function over device arrays: inputs, then outputs (filled in place); no kernel allocates.
Lengths are Å.  The kernels use only global and shared memory, `syncthreads` and integer (or
float min / max) atomics, nothing warp-level, so Numba's CUDA simulator runs them unchanged.

Pipeline (one launch each):

    wrap_count_images   fractional coordinates, wrapping, ghost-image count per local atom
    exclusive scan      scan_block (one launch up to 32 768 entries), else scan_chunk_sums, a
                        scan of the chunk sums, scan_chunk_write (deterministic integer sums)
    fill_images         locals then ghosts, atom-major, shifts ascending (= numdp.neighbor.extend)
    copy_locals         the non-periodic twin of the two above (no ghosts)
    bounds              bounding box of the extended atoms (grid-stride partials, float atomics)
    clear_counters      zero the cell counts, cursors, statistics and key-overflow flag
    bin_count           cell of every atom, atoms per cell (integer atomics)
    bin_scatter         counting sort into cells (atomic cursor: order within a cell arbitrary)
    mark_centres, compact_centres   sorted positions of the local atoms (flag, scan, scatter)
    sort_cells_block    the seven launches from clear_counters to here in one block (small searches)
    fill_nlist_*        one block per centre: keys within rcut -> rank sort -> DeePMD-kit slots;
                        a centre with more keys than the buffer holds reports its count, and the
                        one-shot driver reruns the launch with a buffer that holds the largest (an
                        MD step sizes the buffer at the rebuild and never reruns)
    count_stats         largest count and number of truncated blocks per type
    count_within        neighbours of each centre within a radius (an MD rebuild sizes the key
                        buffer of the steps that follow from it, `plan_search`)

Determinism: atomics only decide where an atom lands inside its cell and in which order a centre's
keys are appended; the slots come from the rank of each key among the centre's keys, and the keys
are distinct (distinct indices), so the lists do not depend on thread timing.

Indices: the packed keys hold 24 index bits (reference §10.1); ties of (type, quantised distance)
are broken by the full extended index kept beside each key, so the order is the packed keys' order
for nall < 2**24 and stays exact up to the int32 limit nall < 2**31 (the CPU kernels' order too).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, int32, uint64

from numdp.kernels.dual import cuda_device
from numdp.kernels.keys import (
    INDEX_MASK,
    KEY_DIST_SHIFT,
    KEY_MAX_TYPES,
    KEY_TYPE_SHIFT,
    pack_key,
    unpack_key,
)

from .launch import MATH, made_by

pack_key_gpu = cuda_device(pack_key)
unpack_key_gpu = cuda_device(unpack_key)
# image shifts and cell-list stencil, shared with the CPU kernels (numdp.kernels.math)
_shift_range = MATH.shift_range
_write_images = MATH.write_images
_stencil_bounds = MATH.stencil_bounds


# --------------------------------------------------------------------------------------------------
# Packed keys (vector forms, for tests and tools)
# --------------------------------------------------------------------------------------------------


@cuda.jit
def pack_keys(types, dist, index, keys):
    """keys[k] = pack_key(types[k], dist[k], index[k]); types, index int, dist (Å) float64, keys uint64."""
    k = cuda.grid(1)
    if k < keys.shape[0]:
        keys[k] = pack_key_gpu(types[k], dist[k], index[k])


@cuda.jit
def unpack_keys(keys, types, qdist, index):
    """(types, qdist, index)[k] = unpack_key(keys[k]), each int64."""
    k = cuda.grid(1)
    if k < keys.shape[0]:
        t, q, j = unpack_key_gpu(keys[k])
        types[k] = t
        qdist[k] = q
        index[k] = j


# --------------------------------------------------------------------------------------------------
# Exclusive scan (prefix sums) of integers: chunks of `chunk` entries, one thread per chunk
# --------------------------------------------------------------------------------------------------


@cuda.jit
def scan_chunk_sums(values, chunk, sums):
    """sums[c] = values[c*chunk : (c+1)*chunk].sum() for every chunk c (values (n,), sums (nchunk,))."""
    c = cuda.grid(1)
    if c < sums.shape[0]:
        n = values.shape[0]
        acc = values[0] - values[0]  # zero of the values' type
        for e in range(c * chunk, min(n, (c + 1) * chunk)):
            acc += values[e]
        sums[c] = acc


@cuda.jit
def scan_chunk_write(values, chunk, offsets, out):
    """out[e] = offsets[c] + sum of values[c*chunk : e] for e in chunk c (exclusive; out may be values)."""
    c = cuda.grid(1)
    if c < offsets.shape[0]:
        n = values.shape[0]
        acc = offsets[c]
        for e in range(c * chunk, min(n, (c + 1) * chunk)):
            v = values[e]
            out[e] = acc
            acc += v


# Entries of the block-wide partial sums of `scan_block` (its largest block).
SCAN_BLOCK_THREADS = 1024


@cuda.jit(device=True)
def block_scan(values, part):
    """Exclusive prefix sums of values (n,) int in place, by every thread of one block together
    (up to SCAN_BLOCK_THREADS threads; part: a shared (SCAN_BLOCK_THREADS,) int64 scratch array);
    returns the sum of all entries to every thread.  Entries are written when it returns, but
    other threads see them only after a barrier.

    Thread k sums its contiguous chunk (ceil(n / blockDim) entries), the block's partial sums are
    scanned in shared memory (Hillis-Steele: log2(blockDim) steps, each a barrier), then each
    thread writes its chunk from its offset.  Integer sums: the result is exact and the same for
    any block size (any n works; one block suits n up to ~32 chunks per thread)."""
    tid = cuda.threadIdx.x
    nthr = cuda.blockDim.x
    n = values.shape[0]
    chunk = (n + nthr - 1) // nthr
    e0 = min(n, tid * chunk)
    e1 = min(n, e0 + chunk)
    acc = np.int64(0)
    for e in range(e0, e1):
        acc += values[e]
    part[tid] = acc
    cuda.syncthreads()
    step = 1
    while step < nthr:
        v = np.int64(0)
        if tid >= step:
            v = part[tid - step]
        cuda.syncthreads()
        part[tid] += v
        cuda.syncthreads()
        step *= 2
    run = part[tid] - acc   # the exclusive offset of this thread's chunk
    for e in range(e0, e1):
        v = values[e]
        values[e] = run
        run += v
    return part[nthr - 1]


@cuda.jit
def scan_block(values, total):
    """Exclusive prefix sums of values (n,) in place, by one block of up to SCAN_BLOCK_THREADS
    threads (`block_scan`); total (1,) receives the sum of all entries."""
    part = cuda.shared.array(SCAN_BLOCK_THREADS, dtype=np.int64)
    s = block_scan(values, part)
    if cuda.threadIdx.x == cuda.blockDim.x - 1:
        total[0] = s


# --------------------------------------------------------------------------------------------------
# Ghost images
# --------------------------------------------------------------------------------------------------


@cuda.jit
def wrap_count_images(x, inv, box, lo, hi, frac, xw, counts):
    """Wrap the local atoms into the cell and count their ghost images (the CPU `count_images`).

    x (nloc, 3) Å; inv (3, 3) = box^-1; box (3, 3) rows = cell vectors (Å); lo, hi (3,) fractional
    region bounds (lo <= 0, hi >= 1).  Out: frac (nloc, 3) fractional coordinates in [0, 1) (f - floor(f),
    1.0 from round-off set to 0.0, as `numdp.geometry.wrap_fractional`); xw (nloc, 3) = frac @ box;
    counts (nloc,) int64 number of non-zero shifts n with lo_k <= frac_k + n_k < hi_k.
    """
    i = cuda.grid(1)
    if i < x.shape[0]:
        for k in range(3):
            f = x[i, 0] * inv[0, k] + x[i, 1] * inv[1, k] + x[i, 2] * inv[2, k]
            f = f - math.floor(f)
            if f >= 1.0:
                f = 0.0
            frac[i, k] = f
        c = 1
        for k in range(3):
            xw[i, k] = frac[i, 0] * box[0, k] + frac[i, 1] * box[1, k] + frac[i, 2] * box[2, k]
            nmin, nmax = _shift_range(frac[i, k], lo[k], hi[k])
            c *= nmax - nmin + 1
        counts[i] = c - 1


@cuda.jit
def wrap_count_images_mixed(x, inv, box, periodic, lo, hi, frac, xw, counts):
    """`wrap_count_images` for mixed boundary conditions (the CPU `extend` with pbc): along a
    periodic vector (periodic[k] != 0) f is wrapped into [0, 1) and the atom moved by the whole
    cell vectors m_k = round(f_raw - f) only (xw = x - m @ box, so an atom keeps its exact
    coordinates along the open directions); along a non-periodic vector frac = 1/2 with lo = 0,
    hi = 1 (the caller's bounds): shift 0 only, no images across that face."""
    i = cuda.grid(1)
    if i < x.shape[0]:
        m0 = 0.0
        m1 = 0.0
        m2 = 0.0
        for k in range(3):
            raw = x[i, 0] * inv[0, k] + x[i, 1] * inv[1, k] + x[i, 2] * inv[2, k]
            if periodic[k] != 0:
                f = raw - math.floor(raw)
                if f >= 1.0:
                    f = 0.0
                m = math.floor(raw - f + 0.5)   # raw - f is an integer up to round-off
            else:
                f = 0.5
                m = 0.0
            frac[i, k] = f
            if k == 0:
                m0 = m
            elif k == 1:
                m1 = m
            else:
                m2 = m
        c = 1
        for k in range(3):
            xw[i, k] = x[i, k] - (m0 * box[0, k] + m1 * box[1, k] + m2 * box[2, k])
            nmin, nmax = _shift_range(frac[i, k], lo[k], hi[k])
            c *= nmax - nmin + 1
        counts[i] = c - 1


@cuda.jit
def fill_images(xw, frac, types, box, lo, hi, excl, out_pos, out_types, out_map):
    """Locals, then their ghost images (the CPU `fill_images` order: atom-major, shifts ascending).

    xw, frac (nloc, 3) from `wrap_count_images`; types (nloc,) int32; box (3, 3); lo, hi (3,);
    excl (nloc,) int64 exclusive scan of the image counts: atom i's images start at row nloc + excl[i].
    Out: out_pos (nall, 3) Å (row i = xw[i]; image rows = xw[i] + n @ box), out_types (nall,) int32,
    out_map (nall,) int32 owning local atom.
    """
    i = cuda.grid(1)
    if i < xw.shape[0]:
        for k in range(3):
            out_pos[i, k] = xw[i, k]
        out_types[i] = types[i]
        out_map[i] = i
        # no shifts kept on the device: out_pos stands in for out_shift, never written (False)
        _write_images(xw, frac, types, box, lo, hi, i, xw.shape[0] + excl[i], out_pos, out_types, out_map,
                      out_pos, False)


@cuda.jit
def copy_locals(x, types, out_pos, out_types, out_map):
    """Non-periodic extended atoms: out_pos = x (nloc, 3), out_types = types, out_map[i] = i."""
    i = cuda.grid(1)
    if i < x.shape[0]:
        for k in range(3):
            out_pos[i, k] = x[i, k]
        out_types[i] = types[i]
        out_map[i] = i


# --------------------------------------------------------------------------------------------------
# Input checks (device inputs)
# --------------------------------------------------------------------------------------------------


@cuda.jit
def first_bad_atom(x, types, ntypes, bad):
    """bad[0] = min index of an atom with a non-finite coordinate, bad[1] = min index of an atom with
    type >= ntypes (both must start at a value > any index; min is order-independent)."""
    i = cuda.grid(1)
    if i < x.shape[0]:
        if not (math.isfinite(x[i, 0]) and math.isfinite(x[i, 1]) and math.isfinite(x[i, 2])):
            cuda.atomic.min(bad, 0, i)
        if types[i] >= ntypes:
            cuda.atomic.min(bad, 1, i)


# --------------------------------------------------------------------------------------------------
# Cell list
# --------------------------------------------------------------------------------------------------


@cuda.jit
def bounds(pos, lohi):
    """lohi[k] = min_i pos[i, k], lohi[3 + k] = max_i pos[i, k] (k = 0, 1, 2).

    lohi (6,) float64 must start at (+inf x3, -inf x3).  Grid-stride loop: each thread reduces its
    share, then one float atomic min / max per component (exact: min and max do not round).
    """
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    n = pos.shape[0]
    if start < n:
        for k in range(3):
            a = pos[start, k]
            b = a
            for i in range(start + stride, n, stride):
                v = pos[i, k]
                a = min(a, v)
                b = max(b, v)
            cuda.atomic.min(lohi, k, a)
            cuda.atomic.max(lohi, 3 + k, b)


@cuda.jit(device=True, inline=True)
def _clear_counter(i, cell_count, cursor, stats, err):
    if i < cell_count.shape[0]:
        cell_count[i] = 0
    if i < cursor.shape[0]:
        cursor[i] = 0
    if i < stats.shape[0]:
        stats[i] = 0
    if i < err.shape[0]:
        err[i] = 0


@cuda.jit
def clear_counters(cell_count, cursor, stats, err):
    """Zero the counters of one search (int arrays of any lengths): cell_count (ncell + 1,),
    cursor (ncell,), stats (2 ntypes,), err (1,); one thread per entry of the longest."""
    _clear_counter(cuda.grid(1), cell_count, cursor, stats, err)


@cuda.jit(device=True, inline=True)
def _bin_atom(i, pos, lo, inv_width, nbins, cell, cell_count):
    nx = nbins[0]
    ny = nbins[1]
    nz = nbins[2]
    cx = min(max(int((pos[i, 0] - lo[0]) * inv_width[0]), 0), nx - 1)
    cy = min(max(int((pos[i, 1] - lo[1]) * inv_width[1]), 0), ny - 1)
    cz = min(max(int((pos[i, 2] - lo[2]) * inv_width[2]), 0), nz - 1)
    c = (cz * ny + cy) * nx + cx
    cell[i] = c
    cuda.atomic.add(cell_count, c, 1)


@cuda.jit
def bin_count(pos, lo, inv_width, nbins, cell, cell_count):
    """cell[i] = linear cell of atom i, (cz * ny + cy) * nx + cx, clamped into the grid (as the CPU
    `bin_atoms`); cell_count[c] += atoms in cell c (cell_count (ncell + 1,) int32, zeroed).

    An atom outside the grid (the MD step's grid is fixed at a rebuild, numdp.neighbor.device
    `plan_search`, and atoms may leave it) lands in the nearest edge cell, and the lists stay
    exact: along each axis the unclamped cell indices of two atoms within the cutoff differ by at
    most `reach` (cells are >= cutoff / reach wide), and clamping into [0, n - 1] never moves two
    indices farther apart (|clamp(a) - clamp(b)| <= |a - b|), so every neighbour still lies in the
    stencil of its centre; the stencil only skips cells from which a clamped atom is farther still.
    Nothing downstream uses the cell for more than choosing which atoms to test."""
    i = cuda.grid(1)
    if i < pos.shape[0]:
        _bin_atom(i, pos, lo, inv_width, nbins, cell, cell_count)


@cuda.jit(device=True, inline=True)
def _scatter_atom(i, pos, types, cell, cell_start, cursor, spos, sidx, stype, scell):
    c = cell[i]
    p = cell_start[c] + cuda.atomic.add(cursor, c, 1)
    for k in range(3):
        spos[p, k] = pos[i, k]
    sidx[p] = i
    stype[p] = types[i]
    scell[p] = c


@cuda.jit
def bin_scatter(pos, types, cell, cell_start, cursor, spos, sidx, stype, scell):
    """Counting-sort scatter: atom i goes to sorted position cell_start[c] + (atomic cursor of c).

    cursor (ncell,) int32 zeroed.  Out (nall,): spos (nall, 3) sorted coordinates, sidx int32 atom
    index, stype int32 type, scell int32 cell.  Within a cell the order depends on thread timing;
    nothing downstream depends on it.
    """
    i = cuda.grid(1)
    if i < pos.shape[0]:
        _scatter_atom(i, pos, types, cell, cell_start, cursor, spos, sidx, stype, scell)


@cuda.jit
def mark_centres(sidx, nloc, flags):
    """flags[p] = 1 if the atom at sorted position p is local (sidx[p] < nloc), else 0."""
    p = cuda.grid(1)
    if p < sidx.shape[0]:
        flags[p] = 1 if sidx[p] < nloc else 0


@cuda.jit
def compact_centres(sidx, nloc, slot, centres):
    """centres[slot[p]] = p for the local atoms (slot = exclusive scan of `mark_centres` flags):
    the sorted positions of the local atoms, ascending (cell order, for locality)."""
    p = cuda.grid(1)
    if p < sidx.shape[0]:
        if sidx[p] < nloc:
            centres[slot[p]] = p


@cuda.jit
def sort_cells_block(pos, types, nloc, lo, inv_width, nbins, cell, cell_start, cursor, stats, err,
                     spos, sidx, stype, scell, slot, centres):
    """The counting sort of a small search in one block (up to SCAN_BLOCK_THREADS threads): the
    launches clear_counters, bin_count, scan_block (cell_start), bin_scatter, mark_centres,
    scan_block (slot) and compact_centres, one after the other with a barrier between, each
    thread taking atoms (cells, entries) tid, tid + blockDim, ...  Arguments as those kernels':
    pos (nall, 3) Å, types (nall,) int32; cell (nall,), cell_start (ncell + 1,), cursor (ncell,),
    slot (nall,) int32 scratch; out spos (nall, 3), sidx, stype, scell (nall,), centres (nloc,),
    cell_start (exclusive scan of the cell counts); stats (2 ntypes,) int64 and err (1,) int32
    zeroed.  Integer work: the same cell_start and centres as the seven launches (within a cell
    the order depends on thread timing there too; nothing downstream depends on it)."""
    part = cuda.shared.array(SCAN_BLOCK_THREADS, dtype=np.int64)
    tid = cuda.threadIdx.x
    nthr = cuda.blockDim.x
    nall = pos.shape[0]
    longest = max(cell_start.shape[0], stats.shape[0], err.shape[0])
    for i in range(tid, longest, nthr):
        _clear_counter(i, cell_start, cursor, stats, err)
    cuda.syncthreads()
    for i in range(tid, nall, nthr):
        _bin_atom(i, pos, lo, inv_width, nbins, cell, cell_start)
    cuda.syncthreads()
    block_scan(cell_start, part)
    cuda.syncthreads()
    for i in range(tid, nall, nthr):
        _scatter_atom(i, pos, types, cell, cell_start, cursor, spos, sidx, stype, scell)
    cuda.syncthreads()
    for p in range(tid, nall, nthr):
        slot[p] = 1 if sidx[p] < nloc else 0
    cuda.syncthreads()
    block_scan(slot, part)
    cuda.syncthreads()
    for p in range(tid, nall, nthr):
        if sidx[p] < nloc:
            centres[slot[p]] = p


@cuda.jit(device=True, inline=True)
def _pair_r2(spos, p, q):
    """Squared distance (Å²) between sorted atoms p and q, in the CPU kernels' order of operations
    (a GPU compiler may fuse the multiply-adds; the simulator does not)."""
    dx = spos[q, 0] - spos[p, 0]
    dy = spos[q, 1] - spos[p, 1]
    dz = spos[q, 2] - spos[p, 2]
    return dx * dx + dy * dy + dz * dz


@cuda.jit(device=True, inline=True)
def _key_r2(spos, stype, p, q, r2max):
    """r² (Å², `_pair_r2`) when sorted atom q is a key of centre p's row for the radius
    sqrt(r2max) (q != p, type >= 0, r² <= r2max), else -1.0: the test of `_fill_row`, which
    `count_within` counts."""
    if q == p or stype[q] < 0:
        return -1.0
    r2 = _pair_r2(spos, p, q)
    return r2 if r2 <= r2max else -1.0


@cuda.jit(device=True, inline=True)
def _fill_row(keys, js, cap, nkeys, tcount, spos, sidx, stype, scell, cell_start, nbins, reach, p, out_row,
              rcut2, sel, sec, counts, nlist, err):
    """One block formats the centre at sorted position p into nlist[out_row] (all threads of the block
    call); its neighbour counts go to counts[sidx[p]] (the centre's atom index).

    keys (cap,) uint64 and js (cap,) int32 scratch (shared memory, or global rows); nkeys (1,) and
    tcount (>= ntypes,) int32 shared.  1. zero the counters; 2. the threads stride over the stencil
    rows and append, for every neighbour within rcut, its packed key (reference §10.1, index field
    j mod 2**24) and its extended index j (atomic cursor, so in arbitrary order); 3. each thread
    ranks its keys among all n by (type and quantised distance = key >> 24, then j): distinct, so
    the ranks are the sorted order, the order of the packed keys whenever nall < 2**24, and exact
    for larger j too; key a of type t goes to slot sec[t] + rank(a) - (keys of types < t) if that
    is < sel[t] (DeePMD-kit's truncation: the first sel[t] in sorted order); 4. -1 padding, counts.
    err (1,) int32: atomic max of the key counts that exceed cap (such a row is left empty, -1;
    `build_nlist_cuda` relaunches with a larger buffer; an MD step, whose buffer holds the bound
    fixed at the rebuild, reports a bug).
    """
    tid = cuda.threadIdx.x
    nthr = cuda.blockDim.x
    ntypes = sel.shape[0]
    nnei = nlist.shape[1]
    i = sidx[p]
    if tid == 0:
        nkeys[0] = 0
    for t in range(tid, ntypes, nthr):
        tcount[t] = 0
    cuda.syncthreads()
    if stype[p] >= 0:
        nx = nbins[0]
        ny = nbins[1]
        x0, x1, y0, y1, z0, z1 = _stencil_bounds(scell[p], nx, ny, nbins[2], reach)
        for z in range(z0, z1 + 1):
            for y in range(y0, y1 + 1):
                row = (z * ny + y) * nx
                for q in range(cell_start[row + x0] + tid, cell_start[row + x1 + 1], nthr):
                    r2 = _key_r2(spos, stype, p, q, rcut2)
                    if r2 >= 0.0:
                        tq = stype[q]
                        s = cuda.atomic.add(nkeys, 0, 1)
                        if s < cap:
                            j = sidx[q]
                            keys[s] = pack_key_gpu(tq, math.sqrt(r2), j & INDEX_MASK)
                            js[s] = j
                        cuda.atomic.add(tcount, tq, 1)
    cuda.syncthreads()
    n = nkeys[0]
    if n > cap:   # an empty row (never garbage indices for a kernel that runs before the check)
        if tid == 0:
            cuda.atomic.max(err, 0, n)
        for s in range(tid, nnei, nthr):
            nlist[out_row, s] = -1
        return
    for a in range(tid, n, nthr):
        ka = keys[a] >> uint64(KEY_DIST_SHIFT)
        ja = js[a]
        rank = 0
        for b in range(n):
            kb = keys[b] >> uint64(KEY_DIST_SHIFT)
            if kb < ka or (kb == ka and js[b] < ja):
                rank += 1
        t = int32(ka >> uint64(KEY_TYPE_SHIFT - KEY_DIST_SHIFT))
        for u in range(t):
            rank -= tcount[u]
        if rank < sel[t]:
            nlist[out_row, sec[t] + rank] = ja
    for s in range(tid, nnei, nthr):
        t = 0
        while s >= sec[t + 1]:
            t += 1
        if s - sec[t] >= tcount[t]:
            nlist[out_row, s] = -1
    for t in range(tid, ntypes, nthr):
        counts[i, t] = tcount[t]


_FILL_KERNELS = {}


def fill_nlist_shared(cap: int):
    """The block-per-centre formatting kernel with shared-memory buffers for `cap` keys.

    Signature: (spos, sidx, stype, scell, cell_start, nbins, reach, centres, m0, local, rcut2, sel,
    sec, counts, nlist, err); block b formats the centre at sorted position centres[m0 + b] (see
    `_fill_row`) into row m0 + b of nlist when `local` (the rows of some centres only:
    `DeviceRows`), else into the row of its atom index (the whole list); 12 cap bytes of shared
    memory per block (keys and indices).
    """
    kernel = _FILL_KERNELS.get(cap)
    if kernel is None:

        @cuda.jit
        def kernel(spos, sidx, stype, scell, cell_start, nbins, reach, centres, m0, local, rcut2, sel,
                   sec, counts, nlist, err):
            keys = cuda.shared.array(cap, dtype=uint64)
            js = cuda.shared.array(cap, dtype=int32)
            nkeys = cuda.shared.array(1, dtype=int32)
            tcount = cuda.shared.array(KEY_MAX_TYPES, dtype=int32)
            m = m0 + cuda.blockIdx.x
            p = centres[m]
            _fill_row(keys, js, cap, nkeys, tcount, spos, sidx, stype, scell, cell_start, nbins, reach,
                      p, m if local else sidx[p], rcut2, sel, sec, counts, nlist, err)

        _FILL_KERNELS[cap] = made_by(kernel, __name__, "fill_nlist_shared", (cap,))
    return kernel


@cuda.jit
def fill_nlist_global(spos, sidx, stype, scell, cell_start, nbins, reach, centres, m0, local, rcut2, sel,
                      sec, counts, nlist, err, gkeys, gjs):
    """`fill_nlist_shared` with the buffers in global memory: block b uses rows gkeys[b], gjs[b]
    (gkeys (nblock, cap) uint64, gjs (nblock, cap) int32), for centres with more neighbours than
    shared memory holds."""
    nkeys = cuda.shared.array(1, dtype=int32)
    tcount = cuda.shared.array(KEY_MAX_TYPES, dtype=int32)
    b = cuda.blockIdx.x
    m = m0 + b
    p = centres[m]
    _fill_row(gkeys[b], gjs[b], gkeys.shape[1], nkeys, tcount, spos, sidx, stype, scell, cell_start,
              nbins, reach, p, m if local else sidx[p], rcut2, sel, sec, counts, nlist, err)


@cuda.jit
def centre_slots(sidx, centres, where):
    """where[sidx[p]] = p for every centre p = centres[m]: the sorted position of each local atom
    (`DeviceRows` picks a chunk's centres with it)."""
    m = cuda.grid(1)
    if m < centres.shape[0]:
        p = centres[m]
        where[sidx[p]] = p


@cuda.jit
def chunk_centres(where, atoms, out):
    """out[a] = where[atoms[a]]: the sorted positions of a chunk's centre atoms."""
    a = cuda.grid(1)
    if a < atoms.shape[0]:
        out[a] = where[atoms[a]]


@cuda.jit
def count_within(spos, stype, scell, cell_start, nbins, reach, centres, r2max, counts):
    """counts[m, 0] = number of atoms q != p with type >= 0 within sqrt(r2max) Å of the centre
    p = centres[m] (0 for a virtual centre): the keys `_fill_row` would append for that radius.
    One thread per centre; counts (nloc, 1) int32 (for `count_stats`)."""
    m = cuda.grid(1)
    if m < centres.shape[0]:
        p = centres[m]
        n = 0
        if stype[p] >= 0:
            nx = nbins[0]
            ny = nbins[1]
            x0, x1, y0, y1, z0, z1 = _stencil_bounds(scell[p], nx, ny, nbins[2], reach)
            for z in range(z0, z1 + 1):
                for y in range(y0, y1 + 1):
                    row = (z * ny + y) * nx
                    for q in range(cell_start[row + x0], cell_start[row + x1 + 1]):
                        if _key_r2(spos, stype, p, q, r2max) >= 0.0:
                            n += 1
        counts[m, 0] = n


@cuda.jit
def count_stats(counts, sel, max_count, overflow):
    """max_count[t] = max_i counts[i, t]; overflow[t] = #{i : counts[i, t] > sel[t]}.

    counts (nloc, ntypes) int32; sel (ntypes,) int64; max_count, overflow (ntypes,) int64 zeroed.
    Grid-stride loop; per block, shared-memory atomics, then one global atomic per type (integer
    max and sum: exact and order-independent).
    """
    smax = cuda.shared.array(KEY_MAX_TYPES, dtype=int32)
    sover = cuda.shared.array(KEY_MAX_TYPES, dtype=int32)
    tid = cuda.threadIdx.x
    ntypes = counts.shape[1]
    for t in range(tid, ntypes, cuda.blockDim.x):
        smax[t] = 0
        sover[t] = 0
    cuda.syncthreads()
    for i in range(cuda.grid(1), counts.shape[0], cuda.gridsize(1)):
        for t in range(ntypes):
            c = counts[i, t]
            cuda.atomic.max(smax, t, c)
            if c > sel[t]:
                cuda.atomic.add(sover, t, 1)
    cuda.syncthreads()
    for t in range(tid, ntypes, cuda.blockDim.x):
        cuda.atomic.max(max_count, t, np.int64(smax[t]))
        cuda.atomic.add(overflow, t, np.int64(sover[t]))
