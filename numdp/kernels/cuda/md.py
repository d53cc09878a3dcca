"""@cuda.jit kernels of the MD step: the device twins of numdp.kernels.cpu.md (same names and
argument order where the algorithm allows), the deterministic reductions the step needs, and
the ghost-shell upkeep of a serial run on the device (numdp.md.device).

Units: positions Å, velocities Å/ps, forces eV/Å, masses amu, times ps.  One thread per atom (or
per row); every output element is written by one thread; sums run in a fixed order (`row_sums`:
a thread sums a fixed chunk of rows, and chunks are summed again the same way), never with
floating-point atomics, so every result is the same bits on every call.  The Philox normal
numbers are the shared scalar maths of numdp.kernels.rng compiled for the device: the same
numbers as the CPU kernels draw for the same (seed, step, stream, atom id).
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda

from ...units import MVV2E
from ..dual import cuda_device
from ..mdmath import compile_mdmath, nose_hoover_chain
from ..rng import compile_rng

normal_pair = compile_rng(cuda_device).normal_pair
# the per-atom maths of the MD step (numdp.kernels.mdmath), as on the CPU
(_kick_scale, _kicked, _drifted, _ou_noise_scale, _langevin_row, _transform_row,
 _displacement_sq, _closest_neighbour, _row_nonfinite) = compile_mdmath(cuda_device, normal_pair)

# the Nosé-Hoover chain's half-step (numdp.kernels.mdmath), as numdp.kernels.cpu.thermostat compiles it
_nose_hoover_chain = cuda_device(nose_hoover_chain)

# rows summed by one thread of `row_sums` (the fan-in of the reduction tree)
SUM_CHUNK = 32
# columns of the per-atom terms of `kinetic_terms`: m v.v, m vx, m vy, m vz, m
KINETIC_COLUMNS = 5
# The one-block kernels (`nose_hoover_chain_block`, `sum_block`, `extreme_block`,
# `displacement_extreme`, `nonfinite_extreme`) run the same fixed-order trees as the launches of
# `row_sums` / `extreme_rows` they replace, inside one block: the first level's partial rows (one per
# SUM_CHUNK rows) are kept in shared memory of BLOCK_MAX rows, the level after it (at most
# SUM_CHUNK rows) in a second shared array.  ONE_BLOCK_ROWS = SUM_CHUNK x BLOCK_MAX = 32 768 rows
# is the largest system they take: up to it the tree has at most 3 levels (32 768 -> 1 024 -> 32
# -> 1), the first level's chunks are at most the 1 024 threads a block may have (launched with
# `launch.one_block`'s at most 512, a thread takes two), and the shared arrays fit: with
# EXTREME_COLUMNS = 3 the records' take (1 024 + 32) x 3 x 8 B = 25.3 kB of the 48 kB a block may
# declare statically, the chain's (1 024 + 32 + 1) x 8 B = 8.5 kB.
BLOCK_MAX = 1024
ONE_BLOCK_ROWS = SUM_CHUNK * BLOCK_MAX
# largest number of columns of the records reduced by the one-block kernels, and of the rows
# summed by `sum_block` ((1 024 + 32) x 5 x 8 B = 42.2 kB of shared memory)
EXTREME_COLUMNS = 3
SUM_COLUMNS = 5
# columns of the per-atom terms of `kinetic_tensor_terms`: (m MVV2E v_a) v_b, row-major (a, b)
TENSOR_COLUMNS = 9


@cuda.jit
def kick(velocities, forces, masses, h):
    """v += F / (m MVV2E) * h for all atoms (h: time in ps)."""
    i = cuda.grid(1)
    if i >= velocities.shape[0]:
        return
    a = _kick_scale(h, masses[i])
    for k in range(3):
        velocities[i, k] = _kicked(velocities[i, k], forces[i, k], a)


@cuda.jit
def drift(positions, velocities, h):
    """x += v * h for all atoms (h: time in ps)."""
    i = cuda.grid(1)
    if i >= positions.shape[0]:
        return
    for k in range(3):
        positions[i, k] = _drifted(positions[i, k], velocities[i, k], h)


@cuda.jit
def kick_drift(velocities, forces, masses, hk, positions, hd):
    """`kick` (hk) then `drift` (hd) of each atom in one launch: v += F / (m MVV2E) hk, then
    x += v hd with the kicked v (the same arithmetic as the two kernels, atom by atom)."""
    i = cuda.grid(1)
    if i >= velocities.shape[0]:
        return
    a = _kick_scale(hk, masses[i])
    for k in range(3):
        v = _kicked(velocities[i, k], forces[i, k], a)
        velocities[i, k] = v
        positions[i, k] = _drifted(positions[i, k], v, hd)


@cuda.jit
def scale_rows(x, factor):
    """x *= factor for an (n, 3) array (velocity rescaling)."""
    i = cuda.grid(1)
    if i >= x.shape[0]:
        return
    for k in range(3):
        x[i, k] *= factor


@cuda.jit
def scale_rows_by(x, factor):
    """x *= factor[0] for an (n, 3) array: `scale_rows` with the factor in device memory (written
    by a kernel before it, so that the host reads nothing)."""
    i = cuda.grid(1)
    if i >= x.shape[0]:
        return
    s = factor[0]
    for k in range(3):
        x[i, k] *= s


@cuda.jit
def nose_hoover_chain_step(rows, dof, kt, q, h, nloop, weights, xi, vxi, factor):
    """One thread: the last level of the kinetic tree sum, then the Nosé-Hoover chain's half-step
    h (ps) from it.  rows (r <= SUM_CHUNK, k): `kinetic_terms` reduced by `row_sums` to at most
    one chunk (numdp.md.device_state.tree_levels_device); their column 0 is summed here as
    `row_sums` sums a chunk (`_column_sum`: the same additions in the same order), giving the
    whole system's Σ m v.v (amu Å²/ps²) with the bits of the full tree sum.  The chain variables
    xi, vxi (M,) stay in device memory; the velocities' scale factor goes to factor[0] (1.0 for a
    system at rest, which a chain cannot heat: the variables are left as they are).  dof: N_f;
    kt: eV; q (M,): chain masses, eV ps²; weights (w,): Suzuki-Yoshida weights; nloop sub-cycles
    (numdp.kernels.mdmath.nose_hoover_chain; 2K = 2 (MVV2E Σ m v.v / 2) as on the host)."""
    if cuda.grid(1) != 0:
        return
    k2 = 2.0 * (0.5 * MVV2E * _column_sum(rows, 0, rows.shape[0], 0))
    if k2 == 0.0:
        factor[0] = 1.0
        return
    factor[0] = _nose_hoover_chain(k2, dof, kt, q, h, nloop, weights, xi, vxi)


@cuda.jit
def subtract_row(x, row):
    """x[i] -= row for every i: (n, 3) and (3,) (removing the centre-of-mass velocity)."""
    i = cuda.grid(1)
    if i >= x.shape[0]:
        return
    for k in range(3):
        x[i, k] -= row[k]


@cuda.jit
def langevin_update(velocities, masses, ids, c, kt, seed, step, stream):
    """Ornstein-Uhlenbeck step v = c v + sqrt((1 - c²) kT / (m MVV2E)) g, g ~ N(0, 1) per component.

    c = exp(-gamma h); kt in eV; the normal numbers are keyed by (seed, step, stream, ids[i]).
    """
    i = cuda.grid(1)
    if i >= velocities.shape[0]:
        return
    v0, v1, v2 = _langevin_row(velocities[i, 0], velocities[i, 1], velocities[i, 2], c, _ou_noise_scale(c), kt,
                               masses[i], seed, step, stream, ids[i])
    velocities[i, 0] = v0
    velocities[i, 1] = v1
    velocities[i, 2] = v2


@cuda.jit(device=True)
def _mvv(m, vx, vy, vz):
    """m v.v (amu Å²/ps²): column 0 of `kinetic_terms`, also computed by `nose_hoover_chain_block`
    (one expression, so both kernels round it alike)."""
    return m * (vx * vx + vy * vy + vz * vz)


@cuda.jit
def kinetic_terms(velocities, masses, out):
    """out[i] = (m v.v, m vx, m vy, m vz, m) of atom i (amu Å²/ps², amu Å/ps, amu): summed by
    `row_sums`, they give 2K / MVV2E, the momentum and the total mass."""
    i = cuda.grid(1)
    if i >= velocities.shape[0]:
        return
    m = masses[i]
    vx = velocities[i, 0]
    vy = velocities[i, 1]
    vz = velocities[i, 2]
    out[i, 0] = _mvv(m, vx, vy, vz)
    out[i, 1] = m * vx
    out[i, 2] = m * vy
    out[i, 3] = m * vz
    out[i, 4] = m


@cuda.jit
def kinetic_tensor_terms(velocities, masses, out):
    """out[i, 3a + b] = (v_a m MVV2E) v_b of atom i, eV: summed by `row_sums`, the kinetic tensor
    Σ m v ⊗ v (the per-atom products of numdp.system.kinetic_tensor)."""
    i = cuda.grid(1)
    if i >= velocities.shape[0]:
        return
    m = masses[i] * MVV2E
    for a in range(3):
        mva = velocities[i, a] * m
        for b in range(3):
            out[i, 3 * a + b] = mva * velocities[i, b]


@cuda.jit
def transform_rows2(x, mx, y, my):
    """x[i] = x[i] @ mx and y[i] = y[i] @ my in place, (n, 3) rows and (3, 3) matrices: the twin
    of numdp.kernels.cpu.md.transform_rows applied to two arrays in one launch (the barostat's
    positions and velocities)."""
    i = cuda.grid(1)
    if i >= x.shape[0]:
        return
    _transform_row(x, i, mx)
    _transform_row(y, i, my)


@cuda.jit
def row_sums(rows, chunk, out):
    """out[c, k] = Σ rows[r, k] over r in [c chunk, (c + 1) chunk), in increasing r.  One thread
    per chunk: one level of a fixed-order reduction tree."""
    c = cuda.grid(1)
    if c >= out.shape[0]:
        return
    r0 = c * chunk
    r1 = min(r0 + chunk, rows.shape[0])
    for k in range(rows.shape[1]):
        out[c, k] = _column_sum(rows, r0, r1, k)


@cuda.jit(device=True)
def _column_sum(rows, r0, r1, k):
    """Σ rows[r, k] for r in [r0, r1), in increasing r from 0.0: one chunk of the reduction tree
    (`row_sums`, and the last level inside `nose_hoover_chain_step`)."""
    s = 0.0
    for r in range(r0, r1):
        s += rows[r, k]
    return s


@cuda.jit
def nonfinite_rows(a, flag):
    """flag[i] = 1 when row i of a (n, 3) array holds a nan or inf, else 0."""
    i = cuda.grid(1)
    if i >= a.shape[0]:
        return
    flag[i] = 1 if _row_nonfinite(a, i) else 0


@cuda.jit
def lattice_shifts(ext_positions, positions, mapping, box_inv, shift):
    """shift[j] = nearest integers to (ext_positions[j] - positions[mapping[j]]) @ box_inv: the whole lattice
    vector (in cell units) that takes the owner's unwrapped position to extended atom j."""
    j = cuda.grid(1)
    if j >= ext_positions.shape[0]:
        return
    o = mapping[j]
    d0 = ext_positions[j, 0] - positions[o, 0]
    d1 = ext_positions[j, 1] - positions[o, 1]
    d2 = ext_positions[j, 2] - positions[o, 2]
    for k in range(3):
        shift[j, k] = math.floor(d0 * box_inv[0, k] + d1 * box_inv[1, k] + d2 * box_inv[2, k] + 0.5)


@cuda.jit
def extended_positions(positions, mapping, shift, box, ext_positions):
    """ext_positions[j] = positions[mapping[j]] + shift[j] @ box: the extended atoms (locals
    wrapped, ghost images) moved along with their owners since the ghost shell was built."""
    j = cuda.grid(1)
    if j >= ext_positions.shape[0]:
        return
    o = mapping[j]
    s0 = shift[j, 0]
    s1 = shift[j, 1]
    s2 = shift[j, 2]
    for k in range(3):
        ext_positions[j, k] = positions[o, k] + (s0 * box[0, k] + s1 * box[1, k] + s2 * box[2, k])


# -- reductions that pick rows (max / argmax, min / argmin, first flagged), one tree each ---------
# A record is a row of float64 numbers: column 0 is the value an arg-extremum picks, columns
# [0, npay) travel with it (the index, a payload); columns [npay, k) are reduced by a plain max.
# Indices up to 2^53 are exact in float64.  These replace chains of array-library reductions
# (max, argmax, a gather, astype, stack: five launches) by the levels of one tree (two launches
# up to SUM_CHUNK² rows), with NumPy's answers: the first extremum, a NaN counting as the extremum
# (the first NaN), max propagating NaN.


@cuda.jit(device=True)
def _beats(v, best, minimum):
    """v replaces best as the extremum (NumPy's argmax / argmin: the first NaN wins)."""
    if v != v:
        return best == best
    if minimum:
        return v < best
    return v > best


@cuda.jit
def extreme_rows(rows, chunk, npay, minimum, out):
    """out[c] = the reduction of rows [c chunk, (c + 1) chunk): columns [0, npay) of the first row
    whose column 0 is the largest (minimum = 0) or smallest (1), columns [npay, k) their max
    (NaN-propagating).  One thread per chunk, rows in increasing order: one level of a fixed-order
    tree whose result is the first extremum of all rows."""
    c = cuda.grid(1)
    if c >= out.shape[0]:
        return
    r0 = c * chunk
    _extreme_chunk(rows, r0, min(r0 + chunk, rows.shape[0]), npay, rows.shape[1], minimum, out, c)


@cuda.jit(device=True)
def _extreme_chunk(rows, r0, r1, npay, ncol, minimum, out, c):
    """out[c, :ncol] = the record of rows [r0, r1) (r1 > r0), in increasing order: columns
    [0, npay) of the first extremum of column 0, columns [npay, ncol) their NaN-propagating max
    (one chunk of `extreme_rows`, and of the one-block kernels' levels)."""
    if npay > 0:
        b = r0
        for r in range(r0 + 1, r1):
            if _beats(rows[r, 0], rows[b, 0], minimum):
                b = r
        for k in range(npay):
            out[c, k] = rows[b, k]
    for k in range(npay, ncol):
        m = rows[r0, k]
        for r in range(r0 + 1, r1):
            v = rows[r, k]
            if v != v or v > m:
                if m == m:
                    m = v
        out[c, k] = m


@cuda.jit(device=True)
def _put_record(rows, i, value, last):
    """rows[i] = (value, i, last): thread i's record of three columns for `extreme_rows`."""
    rows[i, 0] = value
    rows[i, 1] = i
    rows[i, 2] = last


@cuda.jit
def displacement_rows(positions, previous, reference, strain, rows):
    """rows[i] = (|x - previous|², i, |x - reference @ strain|²) for the skin rebuild test and the
    per-step safety test (the twin of numdp.kernels.cpu.md.displacement_check): records for
    `extreme_rows` with npay = 2 (the largest step and its atom, the largest move since the
    rebuild)."""
    i = cuda.grid(1)
    if i >= positions.shape[0]:
        return
    step2, ref2 = _displacement_sq(positions, previous, reference, strain, i)
    _put_record(rows, i, step2, ref2)


@cuda.jit
def closest_records(ext_positions, nlist, sec, rows):
    """rows[i] = (d², i, j): the squared distance d² and extended index j of centre i's nearest
    neighbour in a DeePMD-kit list (first slot of each per-type block; the twin of
    numdp.kernels.cpu.md.closest_pair), records for `extreme_rows` with npay = 3, minimum (d² =
    inf and j = -1 for a centre without a neighbour)."""
    i = cuda.grid(1)
    if i >= nlist.shape[0]:
        return
    best, bj = _closest_neighbour(ext_positions, nlist, sec, i, i)
    _put_record(rows, i, best, bj)


@cuda.jit
def closest_records_rows(ext_positions, nlist, atoms, sec, rows):
    """`closest_records` of the chunk atoms atoms (na,), whose neighbours are the rows 0..na-1 of
    nlist (numdp.neighbor.device.DeviceRows): rows[atoms[a]] = (d², atoms[a], j)."""
    a = cuda.grid(1)
    if a >= atoms.shape[0]:
        return
    i = atoms[a]
    best, bj = _closest_neighbour(ext_positions, nlist, sec, a, i)
    _put_record(rows, i, best, bj)


@cuda.jit
def nonfinite_records(a, b, rows):
    """rows[i, 0] = n - i when row i of a holds a nan or inf, else 0; rows[i, 1] the same for b:
    with `extreme_rows` (npay = 0) the max of each column is n - (the first flagged row), 0 when
    none.  Forces and velocities of the safety check in one launch."""
    i = cuda.grid(1)
    if i >= a.shape[0]:
        return
    _put_nonfinite(a, b, rows, i)


@cuda.jit(device=True)
def _put_nonfinite(a, b, rows, i):
    """Row i of `nonfinite_records`' records (n = a.shape[0])."""
    n = a.shape[0]
    rows[i, 0] = n - i if _row_nonfinite(a, i) else 0.0
    rows[i, 1] = n - i if _row_nonfinite(b, i) else 0.0


# -- one-block forms (systems up to ONE_BLOCK_ROWS atoms): one launch instead of 2-4 -------------
# Each replays, inside one block, the launches it replaces: the per-atom kernel's rows (written to
# global memory, as before, then a barrier), then the levels of the same fixed-order tree (chunk
# c of a level = rows [c SUM_CHUNK, (c + 1) SUM_CHUNK) of the level below, reduced by one thread in
# increasing order, by the same device function), so the results are the same bits.  Any block
# size gives them (a thread takes chunks t, t + blockDim, ...); launch with `one_block(n)`.


@cuda.jit(device=True)
def _level(src, count, npay, ncol, minimum, dst):
    """One level of a fixed-order tree by the block over src's first `count` rows: with npay < 0
    a level of `row_sums` (dst[c, k] = Σ src[r, k] over chunk c, k < ncol), else one of
    `extreme_rows` (dst[c] = the record of chunk c: `_extreme_chunk`); returns the level's row
    count.  Ends with a barrier."""
    nch = (count + SUM_CHUNK - 1) // SUM_CHUNK
    for c in range(cuda.threadIdx.x, nch, cuda.blockDim.x):
        r0 = c * SUM_CHUNK
        r1 = min(r0 + SUM_CHUNK, count)
        if npay < 0:
            for k in range(ncol):
                dst[c, k] = _column_sum(src, r0, r1, k)
        else:
            _extreme_chunk(src, r0, r1, npay, ncol, minimum, dst, c)
    cuda.syncthreads()
    return nch


@cuda.jit(device=True)
def _block_tree(rows, n, npay, ncol, minimum, part, part2, out):
    """out[:ncol] = the root of `_level`'s tree over rows' first n rows (1 <= n <= ONE_BLOCK_ROWS):
    the column sums (npay < 0) or the record (npay >= 0), by the whole block (called by all its
    threads after a barrier that follows the writes to rows); part (BLOCK_MAX, >= ncol) and part2
    (SUM_CHUNK, >= ncol) are the block's shared arrays for the levels."""
    t = cuda.threadIdx.x
    count = _level(rows, n, npay, ncol, minimum, part)
    if count > 1:
        count = _level(part, count, npay, ncol, minimum, part2)
        if count > 1:
            _level(part2, count, npay, ncol, minimum, part)
        elif t == 0:
            for k in range(ncol):
                out[k] = part2[0, k]
            return
    if t == 0:
        for k in range(ncol):
            out[k] = part[0, k]


@cuda.jit
def sum_block(rows, out):
    """out (k,) = the column sums of rows (n, k), 1 <= n <= ONE_BLOCK_ROWS, k <= SUM_COLUMNS: all
    levels of `row_sums` (numdp.md.device_state.tree_sum_device) in one block, the same bits."""
    part = cuda.shared.array((BLOCK_MAX, SUM_COLUMNS), np.float64)
    part2 = cuda.shared.array((SUM_CHUNK, SUM_COLUMNS), np.float64)
    _block_tree(rows, rows.shape[0], -1, rows.shape[1], 0, part, part2, out)


@cuda.jit
def nose_hoover_chain_block(velocities, masses, terms, dof, kt, q, h, nloop, weights, xi, vxi, factor):
    """One Nosé-Hoover chain half-step h (ps) of n <= ONE_BLOCK_ROWS atoms in one block: what
    `kinetic_terms` (column 0), the levels of `row_sums` down to SUM_CHUNK rows
    (numdp.md.device_state.tree_levels_device), `nose_hoover_chain_step` and `scale_rows_by` do in
    four launches, with their bits.  velocities (n, 3) Å/ps, scaled in place; masses (n,) amu;
    terms (n, 1) float64 scratch (m v.v per atom, amu Å²/ps²); the other arguments are
    `nose_hoover_chain_step`'s (xi, vxi (M,) updated in place; factor (1,) receives the factor)."""
    part = cuda.shared.array((BLOCK_MAX, 1), np.float64)
    part2 = cuda.shared.array((SUM_CHUNK, 1), np.float64)
    scale = cuda.shared.array(1, np.float64)
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    n = velocities.shape[0]
    for i in range(t, n, nt):
        # through global memory and a barrier, as between `kinetic_terms` and `row_sums`: the
        # product is rounded before the sum (the compiler cannot fuse it into the addition)
        terms[i, 0] = _mvv(masses[i], velocities[i, 0], velocities[i, 1], velocities[i, 2])
    cuda.syncthreads()
    s = 0.0
    if n > SUM_CHUNK:
        count = _level(terms, n, -1, 1, 0, part)
        if count > SUM_CHUNK:
            count = _level(part, count, -1, 1, 0, part2)
            if t == 0:
                s = _column_sum(part2, 0, count, 0)
        elif t == 0:
            s = _column_sum(part, 0, count, 0)
    elif t == 0:
        s = _column_sum(terms, 0, n, 0)
    if t == 0:
        k2 = 2.0 * (0.5 * MVV2E * s)
        f = 1.0
        if k2 != 0.0:
            f = _nose_hoover_chain(k2, dof, kt, q, h, nloop, weights, xi, vxi)
        factor[0] = f
        scale[0] = f
    cuda.syncthreads()
    f = scale[0]
    for i in range(t, n, nt):
        for k in range(3):
            velocities[i, k] *= f


@cuda.jit(device=True)
def _extreme_tree(rows, n, npay, ncol, minimum, out):
    """out[:ncol] = numdp.md.device_state.tree_extreme_device of rows (n, >= ncol), 1 <= n <=
    ONE_BLOCK_ROWS, ncol <= EXTREME_COLUMNS, by the whole block (`_block_tree` of records)."""
    part = cuda.shared.array((BLOCK_MAX, EXTREME_COLUMNS), np.float64)
    part2 = cuda.shared.array((SUM_CHUNK, EXTREME_COLUMNS), np.float64)
    _block_tree(rows, n, npay, ncol, minimum, part, part2, out)


@cuda.jit
def extreme_block(rows, npay, minimum, out):
    """out (k,) = the record of rows (n, k), 1 <= n <= ONE_BLOCK_ROWS, k <= EXTREME_COLUMNS: all
    levels of `extreme_rows` (numdp.md.device_state.tree_extreme_device) in one block."""
    _extreme_tree(rows, rows.shape[0], npay, rows.shape[1], minimum, out)


@cuda.jit
def displacement_extreme(positions, previous, reference, strain, rows, out):
    """`displacement_rows` then its tree (npay = 2) in one block, n = positions.shape[0] in
    [1, ONE_BLOCK_ROWS]: out (3,) = (max |x - previous|² Å², its first atom, max |x - reference @
    strain|² Å²); rows (n, 3) float64 scratch (the records)."""
    n = positions.shape[0]
    for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
        step2, ref2 = _displacement_sq(positions, previous, reference, strain, i)
        _put_record(rows, i, step2, ref2)
    cuda.syncthreads()
    _extreme_tree(rows, n, 2, 3, 0, out)


@cuda.jit
def nonfinite_extreme(a, b, rows, out):
    """`nonfinite_records` then its tree (npay = 0) in one block, n = a.shape[0] in [1,
    ONE_BLOCK_ROWS]: out (2,) = n - (the first row of a, of b, with a nan or inf), 0 when none;
    rows (n, 2) float64 scratch (the records)."""
    n = a.shape[0]
    for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
        _put_nonfinite(a, b, rows, i)
    cuda.syncthreads()
    _extreme_tree(rows, n, 0, 2, 0, out)
