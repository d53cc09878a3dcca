"""Scalar maths of the MD step shared by the CPU and CUDA kernels, written once: the velocity-
Verlet kick and drift and the Langevin (Ornstein-Uhlenbeck) update of one atom, the cell change
applied to one row, one atom's squared displacements (skin and safety tests) and its nearest
listed neighbour and whether a row holds a nan or inf (safety test); and, called once per half-step rather than per atom, the
Nosé-Hoover chain's half-step (`nose_hoover_chain`, compiled on its own by numdp.kernels.cpu.thermostat
and numdp.kernels.cuda.md).

Plain Python on scalars (the row functions index the caller's arrays, which both targets compile
alike), compiled for each target with numdp.kernels.dual (`compile_mdmath`):
numdp.kernels.cpu.md inlines the `cpu_inline` copies into its @njit loops, numdp.kernels.cuda.md
calls the `cuda_device` copies from its one-thread-per-atom kernels, so both do the same
arithmetic per atom.  Units: positions Å, velocities Å/ps, forces eV/Å, masses amu, times ps,
kT eV.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from ..units import MVV2E
from .math import _rebind


def kick_scale(h, mass):
    """h / (m MVV2E): the velocity change per unit force over h ps, (Å/ps) / (eV/Å)."""
    return h / (mass * MVV2E)


def kicked(v, f, a):
    """v + f a: one velocity component after a kick (a = kick_scale)."""
    return v + f * a


def drifted(x, v, h):
    """x + v h: one position component after a drift of h ps."""
    return x + v * h


def ou_noise_scale(c):
    """sqrt(1 - c²) for the decay c = exp(-h / tau) of an Ornstein-Uhlenbeck step."""
    return math.sqrt(1.0 - c * c)


def langevin_row(v0, v1, v2, c, s, kt, mass, seed, step, stream, atom):
    """One atom's velocity after the Ornstein-Uhlenbeck step v = c v + s sqrt(kT / (m MVV2E)) g,
    g ~ N(0, 1) per component from the Philox numbers keyed by (seed, step, stream, atom id)
    (s = ou_noise_scale(c))."""
    sigma = s * math.sqrt(kt / (mass * MVV2E))
    g0, g1 = normal_pair(seed, step, stream, atom, 0)
    g2, _ = normal_pair(seed, step, stream, atom, 1)
    return c * v0 + sigma * g0, c * v1 + sigma * g1, c * v2 + sigma * g2


def transform_row(x, i, m):
    """x[i] = x[i] @ m in place: row i of an (n, 3) array (positions or velocities) and a (3, 3)
    matrix (the barostat's cell change)."""
    a = x[i, 0]
    b = x[i, 1]
    c = x[i, 2]
    for k in range(3):
        x[i, k] = a * m[0, k] + b * m[1, k] + c * m[2, k]


def displacement_sq(positions, previous, reference, strain, i):
    """(|x - previous|², |x - reference @ strain|²) of atom i (Å²): its move since the previous
    force call and since the last rebuild beyond the affine motion of the cell (positions,
    previous, reference (n, 3) Å; strain (3, 3) the cell deformation since the rebuild)."""
    d = 0.0
    e = 0.0
    for k in range(3):
        a = positions[i, k] - previous[i, k]
        d += a * a
        r = reference[i, 0] * strain[0, k] + reference[i, 1] * strain[1, k] + reference[i, 2] * strain[2, k]
        b = positions[i, k] - r
        e += b * b
    return d, e


def closest_neighbour(ext_positions, nlist, sec, row, centre):
    """(d², j): the squared distance (Å²) and extended index of the nearest neighbour in row `row`
    of a DeePMD-kit list (nlist (rows, nnei) with per-type blocks from sec[t], each sorted by
    distance, so only each block's first slot is read) of the atom ext_positions[centre]; ties to
    the lower type block; (inf, -1) for a row without neighbours."""
    best = math.inf
    bj = -1
    for t in range(sec.shape[0] - 1):
        if sec[t + 1] == sec[t]:   # a block without slots (sel 0)
            continue
        j = nlist[row, sec[t]]
        if j < 0:
            continue
        d = 0.0
        for k in range(3):
            a = ext_positions[j, k] - ext_positions[centre, k]
            d += a * a
        if d < best:
            best = d
            bj = j
    return best, bj


def row_nonfinite(a, i):
    """True when row i of a (n, k) holds a nan or inf (forces, velocities: the safety test)."""
    for k in range(a.shape[1]):
        if not math.isfinite(a[i, k]):
            return True
    return False


def nose_hoover_chain(k2, dof, kt, q, h, nloop, weights, xi, vxi):
    """One half-step h (ps) of a Nosé-Hoover chain (numdp.md.thermostats.NoseHooverChain): the
    chain's Trotter split, `nloop` sub-cycles of the Suzuki-Yoshida `weights` (w,), each moving
    the chain velocities down the chain by half the sub-step, the positions and the particles'
    scale by the whole sub-step, and the velocities up the chain by half again.  Updates xi (M,)
    and vxi (M,) 1/ps in place and returns the factor (dimensionless) by which the particles'
    velocities are to be multiplied.

    k2: 2K = Σ m v² of the whole system, eV (> 0); dof: N_f; kt: eV; q (M,): the chain masses,
    eV ps².  The arithmetic, operation by operation and in the same order, of the host Python
    this replaced (so CPU trajectories kept their bits); the chain force on link 0 is
    (k2 s² - N_f kT) / Q_0 with the scale s so far, on link j > 0 (Q_{j-1} vξ_{j-1}² - kT) / Q_j."""
    m = q.shape[0]
    scale = 1.0
    for _ in range(nloop):
        for w in range(weights.shape[0]):
            d = weights[w] * h / nloop
            for sweep in range(2):
                for i in range(m):
                    j = m - 1 - i if sweep == 0 else i   # down the chain, then up
                    if j == 0:
                        g = (k2 * scale * scale - dof * kt) / q[0]
                    else:
                        g = (q[j - 1] * (vxi[j - 1] * vxi[j - 1]) - kt) / q[j]
                    if j == m - 1:
                        vxi[j] += g * d / 2
                    else:
                        f = math.exp(-vxi[j + 1] * d / 4)
                        vxi[j] = (vxi[j] * f + g * d / 2) * f
                if sweep == 0:
                    for j in range(m):
                        xi[j] += vxi[j] * d
                    scale *= math.exp(-vxi[0] * d)
    return scale


def normal_pair(seed, step, stream, index, block):  # pragma: no cover - replaced by compile_mdmath
    raise NotImplementedError("bound to numdp.kernels.rng.normal_pair of the target by compile_mdmath")


class MDMath(NamedTuple):
    """The functions above compiled for one target (see `compile_mdmath`); a named tuple, so
    that a kernel module binds them all to its globals in one unpacking (the @njit and @cuda.jit
    kernels call module globals, not attributes)."""

    kick_scale: object
    kicked: object
    drifted: object
    ou_noise_scale: object
    langevin_row: object
    transform_row: object
    displacement_sq: object
    closest_neighbour: object
    row_nonfinite: object


def compile_mdmath(compile_fn, normal_pair_compiled) -> MDMath:
    """Every function of this module compiled with compile_fn (dual.cpu_inline or
    dual.cuda_device); langevin_row calls `normal_pair_compiled` (numdp.kernels.rng compiled for
    the same target)."""
    return MDMath(kick_scale=compile_fn(kick_scale), kicked=compile_fn(kicked), drifted=compile_fn(drifted),
                  ou_noise_scale=compile_fn(ou_noise_scale),
                  langevin_row=compile_fn(_rebind(langevin_row, normal_pair=normal_pair_compiled)),
                  transform_row=compile_fn(transform_row), displacement_sq=compile_fn(displacement_sq),
                  closest_neighbour=compile_fn(closest_neighbour), row_nonfinite=compile_fn(row_nonfinite))
