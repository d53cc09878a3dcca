"""Numba kernels of the MD loop: plain functions over arrays, filling outputs in place.

Units: positions Å, velocities Å/ps, forces eV/Å, masses amu, times ps.  No kernel raises or
reads configuration.  The kernels are serial on purpose: each is O(N) and memory-bound (well under
a millisecond at 10⁵ atoms), while a parallel launch costs up to milliseconds when the cores are
shared, so threads would only slow small systems down; results are trivially deterministic.
Ghost positions and the return of ghost forces are in numdp.kernels.cpu.comm and numdp.parallel.comm.
"""
from __future__ import annotations

import math

from numba import njit

from ..dual import cpu_inline
from ..mdmath import compile_mdmath
from .rng import normal_pair

# the per-atom maths of the MD step (numdp.kernels.mdmath), inlined here
(_kick_scale, _kicked, _drifted, _ou_noise_scale, _langevin_row, _transform_row,
 _displacement_sq, _closest_neighbour, _row_nonfinite) = compile_mdmath(cpu_inline, normal_pair)


@njit(cache=True, nogil=True)
def kick(velocities, forces, masses, h):
    """v += F / (m MVV2E) * h for all atoms (h: time in ps)."""
    for i in range(velocities.shape[0]):
        a = _kick_scale(h, masses[i])
        for k in range(3):
            velocities[i, k] = _kicked(velocities[i, k], forces[i, k], a)


@njit(cache=True, nogil=True)
def drift(positions, velocities, h):
    """x += v * h for all atoms (h: time in ps)."""
    for i in range(positions.shape[0]):
        for k in range(3):
            positions[i, k] = _drifted(positions[i, k], velocities[i, k], h)


@njit(cache=True, nogil=True)
def transform_rows(x, m):
    """x[i] = x[i] @ m in place for (n, 3) rows and a (3, 3) matrix."""
    for i in range(x.shape[0]):
        _transform_row(x, i, m)


@njit(cache=True, nogil=True)
def displacement_check(positions, previous, reference, strain):
    """Largest displacements, for the skin rebuild test and the per-step safety test.

    positions, previous, reference: (n, 3) Å (now, at the previous force call, at the last rebuild);
    strain (3, 3): the cell deformation since the rebuild (reference @ strain is where affine motion
    alone would have taken the reference positions).
    Returns (max |x - previous|², index of that atom, max |x - reference @ strain|²).
    """
    step_max = 0.0
    step_arg = -1
    ref_max = 0.0
    for i in range(positions.shape[0]):
        d, e = _displacement_sq(positions, previous, reference, strain, i)
        if d > step_max or step_arg < 0:
            step_max = d
            step_arg = i
        if e > ref_max:
            ref_max = e
    return step_max, step_arg, ref_max


@njit(cache=True, nogil=True)
def closest_pair(ext_positions, nlist, sec):
    """Shortest centre-neighbour distance in a DeePMD-kit neighbour list.

    ext_positions (nall, 3) Å; nlist (nloc, nnei) int32 with per-type blocks starting at sec[t]
    (sec: (ntypes + 1,) int64), each sorted by distance, so the first slot of each block is the
    nearest neighbour of that type; a block without slots (sel 0) is skipped.  Returns
    (distance Å, centre index, extended neighbour index); (inf, -1, -1) when no atom has a
    neighbour.
    """
    best = math.inf
    bi = -1
    bj = -1
    for i in range(nlist.shape[0]):
        d, j = _closest_neighbour(ext_positions, nlist, sec, i, i)
        if d < best:
            best = d
            bi = i
            bj = j
    return math.sqrt(best), bi, bj


@njit(cache=True, nogil=True)
def first_nonfinite_row(a):
    """Index of the first row of a (n, 3) array with a nan or inf, or -1."""
    for i in range(a.shape[0]):
        if _row_nonfinite(a, i):
            return i
    return -1


@njit(cache=True, nogil=True)
def langevin_update(velocities, masses, ids, c, kt, seed, step, stream):
    """Ornstein-Uhlenbeck step v = c v + sqrt((1 - c²) kT / (m MVV2E)) g, g ~ N(0, 1) per component.

    c = exp(-gamma h); kt in eV; the normal numbers are keyed by (seed, step, stream, ids[i]).
    """
    s = _ou_noise_scale(c)
    for i in range(velocities.shape[0]):
        velocities[i, 0], velocities[i, 1], velocities[i, 2] = _langevin_row(
            velocities[i, 0], velocities[i, 1], velocities[i, 2], c, s, kt, masses[i], seed, step, stream, ids[i])



# -- energy minimization (FIRE 2.0, numdp.md.minimize) -------------------------------------------


@njit(cache=True, nogil=True)
def fire_sums(velocities, forces):
    """(P = Σ v·F, Σ v·v, Σ F·F) over this rank's atoms: (eV/ps, Å²/ps², eV²/Å²)."""
    p = 0.0
    vv = 0.0
    ff = 0.0
    for i in range(velocities.shape[0]):
        for k in range(3):
            p += velocities[i, k] * forces[i, k]
            vv += velocities[i, k] * velocities[i, k]
            ff += forces[i, k] * forces[i, k]
    return p, vv, ff


@njit(cache=True, nogil=True)
def force_norms(forces):
    """(Σ F², max_i |F_i|², max_ik |F_ik|) over this rank's atoms (eV²/Å², eV²/Å², eV/Å): the
    squared 2-norm of the force vector, the squared largest force on an atom, the largest component."""
    ff = 0.0
    fmax2 = 0.0
    finf = 0.0
    for i in range(forces.shape[0]):
        f2 = 0.0
        for k in range(3):
            f2 += forces[i, k] * forces[i, k]
            a = abs(forces[i, k])
            if a > finf:
                finf = a
        ff += f2
        if f2 > fmax2:
            fmax2 = f2
    return ff, fmax2, finf


@njit(cache=True, nogil=True)
def largest_component(a):
    """max_ik |a_ik| of an (n, 3) array (0 for no rows)."""
    out = 0.0
    for i in range(a.shape[0]):
        for k in range(3):
            x = abs(a[i, k])
            if x > out:
                out = x
    return out


@njit(cache=True, nogil=True)
def fire_euler_step(positions, velocities, forces, masses, h, mix, scale_v, scale_f):
    """One semi-implicit Euler step of FIRE over h ps, atom by atom: v += F / (m MVV2E) h; when
    `mix`, v = scale_v v + scale_f F (FIRE's mixing (1 - α) v + α |v| F̂, with scale_v = 1 - α and
    scale_f = α |v| / |F| in (Å/ps) / (eV/Å)); then x += v h."""
    for i in range(positions.shape[0]):
        a = _kick_scale(h, masses[i])
        for k in range(3):
            v = _kicked(velocities[i, k], forces[i, k], a)
            if mix:
                v = scale_v * v + scale_f * forces[i, k]
            velocities[i, k] = v
            positions[i, k] = _drifted(positions[i, k], v, h)
