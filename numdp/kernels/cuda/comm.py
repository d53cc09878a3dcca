"""@cuda.jit kernels of the domain decomposition on the GPU (numdp.parallel.device_comm): the
device twins of numdp.kernels.cpu.comm and of the host's wrap / owner arithmetic.

They gather the rows a rank sends into one contiguous device buffer (copied to the host once,
moved by MPI, copied back once) and add received force rows back; at neighbour rebuilds they
select the atoms of a slab, the periodic images of the owned atoms, and the atoms that stay on
this rank.  Fractional coordinates are formed as x0 inv[0, k] + x1 inv[1, k] + x2 inv[2, k],
the expression of numdp.kernels.cpu.comm.select_slab.  Units: positions Å, forces eV/Å.
"""
from __future__ import annotations

import math

from numba import cuda

from .launch import row_col


@cuda.jit
def gather_rows(src, idx, s0, s1, s2, out):
    """out[i, c] = src[idx[i], c] (+ s_c for the first three columns): (n, m) out, src (nall, m),
    idx (n,) int64; s0, s1, s2 a cell-vector shift, Å.  Flat launch over n x m (launch.grid2)."""
    i, c = row_col(out.shape[1])
    if i >= out.shape[0]:
        return
    v = src[idx[i], c]
    if c == 0:
        v += s0
    elif c == 1:
        v += s1
    elif c == 2:
        v += s2
    out[i, c] = v


@cuda.jit
def add_rows(dst, idx, rows):
    """dst[idx[i], c] += rows[i, c] for (n, 3) rows; the idx of one swap are distinct, so no two
    threads write one element (no atomics, the same bits on every call).  Flat over n x 3."""
    i, c = row_col(3)
    if i >= rows.shape[0]:
        return
    dst[idx[i], c] += rows[i, c]


@cuda.jit
def slab_flags(rows, start, inv0, inv1, inv2, limit, below, flag):
    """flag[i] = 1 when row start + i of rows (nall, >= 3; positions in columns 0-2, Å) has the
    fractional coordinate f = x . (inv0, inv1, inv2) < limit (below) or >= limit (not below)."""
    i = cuda.grid(1)
    if i >= flag.shape[0]:
        return
    r = start + i
    f = rows[r, 0] * inv0 + rows[r, 1] * inv1 + rows[r, 2] * inv2
    if below:
        flag[i] = 1 if f < limit else 0
    else:
        flag[i] = 1 if f >= limit else 0


@cuda.jit
def cell_images(positions, inv, pbc, images):
    """images[i, k] = floor(f_k) along the periodic directions (pbc[k] != 0), else 0, with
    f = positions[i] @ inv: the integer cell of each unwrapped position (float64 integers)."""
    i = cuda.grid(1)
    if i >= positions.shape[0]:
        return
    for k in range(3):
        f = positions[i, 0] * inv[0, k] + positions[i, 1] * inv[1, k] + positions[i, 2] * inv[2, k]
        images[i, k] = math.floor(f) if pbc[k] != 0 else 0.0


@cuda.jit
def stays_here(positions, inv, grid, coords, flag):
    """flag[i] = 1 when atom i's wrapped fractional coordinate lies in the subdomain `coords` (3,)
    of the grid `grid` (3,) (numdp.parallel.domain.Domain.cells_of, values clamped), else 0."""
    i = cuda.grid(1)
    if i >= positions.shape[0]:
        return
    here = 1
    for k in range(3):
        f = positions[i, 0] * inv[0, k] + positions[i, 1] * inv[1, k] + positions[i, 2] * inv[2, k]
        f -= math.floor(f)
        c = int(math.floor(f * grid[k]))
        c = min(max(c, 0), grid[k] - 1)
        if c != coords[k]:
            here = 0
    flag[i] = here
