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

from numba import cuda

from ...units import MVV2E
from ..dual import cuda_device
from ..mdmath import compile_mdmath
from ..rng import compile_rng

normal_pair = compile_rng(cuda_device).normal_pair
# the per-atom maths of the MD step (numdp.kernels.mdmath), as on the CPU
(_kick_scale, _kicked, _drifted, _ou_noise_scale, _langevin_row, _transform_row,
 _displacement_sq) = compile_mdmath(cuda_device, normal_pair)

# rows summed by one thread of `row_sums` (the fan-in of the reduction tree)
SUM_CHUNK = 32
# columns of the per-atom terms of `kinetic_terms`: m v.v, m vx, m vy, m vz, m
KINETIC_COLUMNS = 5
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
def scale_rows(x, factor):
    """x *= factor for an (n, 3) array (velocity rescaling)."""
    i = cuda.grid(1)
    if i >= x.shape[0]:
        return
    for k in range(3):
        x[i, k] *= factor


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
    out[i, 0] = m * (vx * vx + vy * vy + vz * vz)
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
        s = 0.0
        for r in range(r0, r1):
            s += rows[r, k]
        out[c, k] = s


@cuda.jit
def displacement_sq(positions, previous, reference, strain, step2, ref2):
    """Per-atom squared displacements for the skin rebuild test and the per-step safety test
    (the twin of numdp.kernels.cpu.md.displacement_check, whose max and argmax the caller takes):
    step2[i] = |x - previous|², ref2[i] = |x - reference @ strain|²."""
    i = cuda.grid(1)
    if i >= positions.shape[0]:
        return
    step2[i], ref2[i] = _displacement_sq(positions, previous, reference, strain, i)


@cuda.jit
def closest_rows(ext_positions, nlist, sec, dist2, nbr):
    """Per centre i: the squared distance dist2[i] (inf when none) and extended index nbr[i] of
    its nearest neighbour in a DeePMD-kit list (first slot of each per-type block; the twin of
    numdp.kernels.cpu.md.closest_pair, whose argmin the caller takes)."""
    i = cuda.grid(1)
    if i >= nlist.shape[0]:
        return
    best = math.inf
    bj = -1
    for t in range(sec.shape[0] - 1):
        j = nlist[i, sec[t]]
        if j < 0:
            continue
        d = 0.0
        for k in range(3):
            a = ext_positions[j, k] - ext_positions[i, k]
            d += a * a
        if d < best:
            best = d
            bj = j
    dist2[i] = best
    nbr[i] = bj


@cuda.jit
def nonfinite_rows(a, flag):
    """flag[i] = 1 when row i of a (n, 3) array holds a nan or inf, else 0."""
    i = cuda.grid(1)
    if i >= a.shape[0]:
        return
    bad = 0
    for k in range(a.shape[1]):
        if not math.isfinite(a[i, k]):
            bad = 1
    flag[i] = bad


@cuda.jit
def nonfinite_rows2(a, b, flag):
    """flag[i, 0] = 1 when row i of a holds a nan or inf, flag[i, 1] the same for b (two (n, 3)
    arrays, one launch: the safety check's forces and velocities)."""
    i = cuda.grid(1)
    if i >= a.shape[0]:
        return
    bad_a = 0
    bad_b = 0
    for k in range(a.shape[1]):
        if not math.isfinite(a[i, k]):
            bad_a = 1
        if not math.isfinite(b[i, k]):
            bad_b = 1
    flag[i, 0] = bad_a
    flag[i, 1] = bad_b


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
