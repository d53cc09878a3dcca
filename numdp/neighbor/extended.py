"""Extended atoms: the local atoms followed by the periodic images (ghosts) that can be neighbours.

Reference §1.2.  For a periodic cell the local atoms are wrapped into the cell (fractional f in
[0, 1)) and an image f + n (n an integer shift) is kept when, in every direction k,

    -cutoff / h_k <= f_k + n_k < 1 + cutoff / h_k          (h_k = perpendicular cell width)

A point within `cutoff` of a local atom differs from it by at most cutoff / h_k in fractional
coordinate k, so this set holds every image within `cutoff` of any local atom, whatever the tilt and
however small the cell (several images of one atom, and images of a centre atom itself, then appear
as distinct neighbours), while the ghost count grows with the surface of the cell, not 27×.

Mixed boundary conditions (ASE's ``pbc=[True, True, False]``, LAMMPS' ``boundary p p f``): along a
non-periodic cell vector k there are no images (n_k = 0 only) and the atoms are not wrapped, so
they may lie anywhere along it; that vector only has to make the cell non-singular.  A zero
non-periodic vector (as ASE uses for a slab without vacuum) is replaced by a unit vector completing
the cell (`complete_cell`); it never changes a result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from numdp.errors import InputError
from numdp.geometry import check_box, check_positions, check_types, face_distances, wrap_fractional
from numdp.kernels.cpu import neighbor as _k
from numdp.neighbor.threads import one_launcher

# extended atoms (local + ghost) at most: neighbour lists and the cell list's order are int32
MAX_EXTENDED = 2**31 - 1

EXTENDED_BYTES = 44 + 50
"""Bytes per extended atom while a neighbour list is built: the `Extended` arrays (positions 24,
type 4, mapping 4, shift 12) and the transient cell list (about 50, `build_nlist`)."""

__all__ = ["Extended", "check_extended_positions", "check_pbc", "complete_cell", "extend",
           "extended_positions"]

# Relative widening of the ghost region, so that round-off in f and in the image positions can
# never drop an image that lies exactly at the cutoff.  Extra images beyond the cutoff are harmless.
_REGION_MARGIN = 1e-8


@dataclass
class Extended:
    """Local atoms followed by their ghost images.

    positions: (nall, 3) float64, Å. Rows 0..nloc-1 are the local atoms (wrapped into the cell for a
        periodic system, unchanged otherwise); the rest are ghost images.
    types: (nall,) int32 atom types (negative = virtual atom).
    mapping: (nall,) int32 index of the owning local atom (mapping[i] == i for i < nloc).
    shifts: (nall, 3) int32 integer cell shift n: positions[g] = positions[mapping[g]] + n @ box.
    nloc: number of local atoms.
    cutoff: the cutoff (Å) the ghost set is complete for (inf for a non-periodic system).
    """

    positions: np.ndarray
    types: np.ndarray
    mapping: np.ndarray
    shifts: np.ndarray
    nloc: int
    cutoff: float = math.inf

    @property
    def nall(self) -> int:
        """Number of extended atoms (local + ghost)."""
        return int(self.positions.shape[0])

    @property
    def nghost(self) -> int:
        """Number of ghost images."""
        return self.nall - self.nloc


def _check_cutoff(cutoff, what: str = "cutoff") -> float:
    try:
        c = float(cutoff)
    except (TypeError, ValueError):
        raise InputError(f"{what}: expected a number, got {cutoff!r}") from None
    if not (math.isfinite(c) and c > 0.0):
        raise InputError(f"{what}: must be a finite positive distance in Angstrom, got {cutoff!r}")
    return c


def check_pbc(pbc, box) -> tuple[bool, bool, bool]:
    """Periodicity along the three cell vectors: None means all periodic when a box is given (and
    none without one); otherwise three booleans.  A periodic direction without a box is an
    InputError."""
    if pbc is None:
        return (box is not None,) * 3
    flags = np.asarray(pbc)
    if flags.shape == ():
        flags = np.repeat(flags, 3)
    if flags.shape != (3,) or flags.dtype.kind not in "bi" or not np.isin(flags, (0, 1)).all():
        raise InputError(f"pbc: expected three booleans (one per cell vector), got {pbc!r}")
    out = tuple(bool(f) for f in flags)
    if box is None and any(out):
        raise InputError(f"pbc: {list(out)} asks for periodic directions but no box (cell) was given")
    return out


def complete_cell(box, pbc) -> np.ndarray:
    """The cell (3, 3), Å, with every zero-length non-periodic row replaced by a unit vector that
    makes the cell non-singular (orthogonal to the other rows).  Other rows are unchanged."""
    b = np.array(box, dtype=np.float64)
    if b.shape == (9,):
        b = b.reshape(3, 3)
    if b.shape != (3, 3):
        raise InputError(f"box: expected shape (3, 3) or (9,), got {b.shape}")
    for k in range(3):
        if pbc[k] or np.any(b[k] != 0.0):
            continue
        others = [b[j] for j in range(3) if j != k and np.any(b[j] != 0.0)]
        basis = []
        for v in others:  # Gram-Schmidt over the other rows
            for e in basis:
                v = v - (v @ e) * e
            if np.linalg.norm(v) > 0.0:
                basis.append(v / np.linalg.norm(v))
        best = None
        for e in np.eye(3):  # the axis farthest from the span of the other rows
            r = e - sum(((e @ u) * u for u in basis), np.zeros(3))
            if best is None or np.linalg.norm(r) > np.linalg.norm(best):
                best = r
        b[k] = best / np.linalg.norm(best)
    return b


def extend(positions, types, box, cutoff, pbc=None) -> Extended:
    """Build the extended atoms of a configuration.

    Args:
        positions: (nloc, 3) Cartesian coordinates, Å.
        types: (nloc,) integer atom types.
        box: (3, 3) cell, rows = cell vectors, Å (or flat (9,)); None for a non-periodic system.
        cutoff: Å; every image within `cutoff` of any local atom is included.
        pbc: three booleans, periodicity along each cell vector (None: all True with a box).
            Along a non-periodic vector there are no images and no wrapping; all False is the
            same as box=None.
    Returns:
        `Extended`: for a periodic box the wrapped local atoms, then the ghosts, atom-major (all
        images of local atom 0, then of atom 1, ...; shifts ascending lexicographically); for
        box=None the unchanged positions and no ghosts.  With mixed pbc the local atoms are
        shifted by whole periodic cell vectors only (x - m @ box, m integer, zero along
        non-periodic vectors) and `shifts` are zero along non-periodic vectors.
    Raises:
        InputError: bad shapes, non-finite coordinates, a singular cell or a non-positive cutoff.
    """
    x = check_positions(positions)
    nloc = x.shape[0]
    t = check_types(types, nloc)
    c = _check_cutoff(cutoff)
    periodic = check_pbc(pbc, box)
    if box is None or not any(periodic):
        return Extended(
            positions=x.copy(),
            types=t.copy(),
            mapping=np.arange(nloc, dtype=np.int32),
            shifts=np.zeros((nloc, 3), dtype=np.int32),
            nloc=nloc,
            cutoff=math.inf,
        )
    if all(periodic):
        b = check_box(box)
        h = face_distances(b)
        frac = np.ascontiguousarray(wrap_fractional(x @ np.linalg.inv(b)))
        xw = np.ascontiguousarray(frac @ b)
        reach = c * (1.0 + _REGION_MARGIN) / h
    else:
        b = check_box(complete_cell(box, periodic))
        mask = np.array(periodic)
        raw = x @ np.linalg.inv(b)
        frac = raw.copy()
        frac[:, mask] = wrap_fractional(raw[:, mask])
        # Move each atom by whole periodic cell vectors only, so an unwrapped atom keeps its exact
        # coordinates; along a non-periodic vector the kernels see f = 1/2 in [0, 1): shift 0 only.
        m = np.zeros_like(raw)
        m[:, mask] = np.round(raw[:, mask] - frac[:, mask])
        xw = np.ascontiguousarray(x - m @ b)
        frac[:, ~mask] = 0.5
        frac = np.ascontiguousarray(frac)
        h = face_distances(b)
        reach = np.where(mask, c * (1.0 + _REGION_MARGIN) / h, 0.0)
    expected = nloc * math.prod(1.0 + 2.0 * float(r) for r in reach)   # Python floats: inf, no warning, where
    # the int64 count overflows (cutoff 1e300 A)
    if expected > 2.0 * MAX_EXTENDED:
        raise InputError(
            f"the periodic system needs about {expected:.3g} extended atoms (local + ghost images) for a "
            f"cutoff of {c:g} A in a cell with face widths {np.round(h, 4).tolist()} A; at most "
            f"{MAX_EXTENDED} are supported (int32 indices): is the cutoff right?"
        )
    lo = np.ascontiguousarray(-reach)
    hi = np.ascontiguousarray(1.0 + reach)

    counts = np.empty(nloc, dtype=np.int64)
    if nloc:
        with one_launcher():
            _k.count_images(frac, lo, hi, counts)
    start = np.empty(nloc, dtype=np.int64)
    if nloc:
        start[0] = nloc
        np.cumsum(counts[:-1], out=start[1:])
        start[1:] += nloc
    nall = nloc + int(counts.sum())
    if nall > MAX_EXTENDED:
        raise InputError(
            f"the periodic system needs {nall} extended atoms (local + ghost images) for a cutoff of "
            f"{c} A in a cell with face widths {np.round(h, 4).tolist()} A; at most "
            f"{MAX_EXTENDED} are supported (int32 indices)"
        )
    need, avail = nall * EXTENDED_BYTES, available_memory()
    if avail is not None and need > avail:
        raise InputError(
            f"the periodic system needs {nall} extended atoms (local + ghost images) for a cutoff of "
            f"{c} A in a cell with face widths {np.round(h, 4).tolist()} A: about {need / 2**30:.1f} GiB, "
            f"more than the {avail / 2**30:.1f} GiB of memory available; is the cutoff right?"
        )
    out_pos = np.empty((nall, 3), dtype=np.float64)
    out_types = np.empty(nall, dtype=np.int32)
    out_map = np.empty(nall, dtype=np.int32)
    out_shift = np.empty((nall, 3), dtype=np.int32)
    out_pos[:nloc] = xw
    out_types[:nloc] = t
    out_map[:nloc] = np.arange(nloc, dtype=np.int32)
    out_shift[:nloc] = 0
    if nloc:
        with one_launcher():
            _k.fill_images(xw, frac, t, b, lo, hi, start, out_pos, out_types, out_map, out_shift)
    return Extended(
        positions=out_pos, types=out_types, mapping=out_map, shifts=out_shift, nloc=nloc, cutoff=c
    )


def available_memory() -> int | None:
    """Bytes of memory the system can still give without swapping (Linux's MemAvailable), or
    None where /proc/meminfo does not tell."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_extended_positions(ext: Extended, positions) -> np.ndarray:
    """`positions` (nall, 3), Å, as C-contiguous float64, or ext.positions when None.

    Raises ValueError for a wrong shape and InputError for a non-finite coordinate (naming the
    local atom that owns the offending row).
    """
    if positions is None:
        return ext.positions
    pos = np.ascontiguousarray(positions, dtype=np.float64)
    if pos.shape != (ext.nall, 3):
        raise ValueError(f"positions: expected shape ({ext.nall}, 3), got {pos.shape}")
    if not np.isfinite(pos).all():
        bad = int(np.flatnonzero(~np.isfinite(pos).all(axis=1))[0])
        raise InputError(
            f"positions: atom {int(ext.mapping[bad])} has a non-finite coordinate {pos[bad].tolist()}"
            + (f" (in its periodic image, extended row {bad})" if bad >= ext.nloc else "")
        )
    return pos


def extended_positions(ext: Extended, local_positions, box) -> np.ndarray:
    """Extended coordinates (nall, 3), Å, for moved local atoms, keeping the ghost set of `ext`.

    positions[g] = local_positions[mapping[g]] + shifts[g] @ box.  For MD between neighbour-list
    rebuilds: `local_positions` (nloc, 3) must be continuous with ext.positions[:nloc] (the wrapped
    coordinates at the last rebuild, plus displacements; not re-wrapped).  box None = no ghosts.
    """
    x = check_positions(local_positions)
    if x.shape[0] != ext.nloc:
        raise ValueError(f"expected {ext.nloc} local positions, got {x.shape[0]}")
    if box is None:
        return x[ext.mapping]
    b = check_box(box)
    return x[ext.mapping] + ext.shifts @ b
