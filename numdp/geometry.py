"""Periodic-cell geometry: validation, face distances, fractional coordinates and wrapping.

Conventions (reference §0, §1.1): lengths in Å; ``box`` is a 3×3 matrix whose **rows** are the cell
vectors a, b, c (a flat length-9 array in DeePMD-kit's row-major order is accepted too); Cartesian =
fractional · box (row vector times matrix).  A left-handed cell (negative determinant) is allowed; the
volume is ``|det(box)|``.  Plain functions over NumPy arrays; nothing here is compiled.
"""

from __future__ import annotations

import numpy as np

from numdp.errors import InputError

__all__ = [
    "check_box",
    "check_positions",
    "check_types",
    "face_distances",
    "wrap_fractional",
    "wrap_positions",
]

# A cell is called singular when |det(box)| / (|a| |b| |c|) falls below this value (the sine-like
# "flatness" of the cell; 1 for a rectangular cell).
_SINGULAR_TOL = 1e-10


def check_box(box, what: str = "box") -> np.ndarray:
    """Validate a periodic cell and return it as a (3, 3) float64 array (rows = cell vectors, Å).

    Accepts shape (3, 3) or (9,).  Raises `InputError` when the shape is wrong, an entry is not finite,
    or the cell is singular (zero volume, or flatter than |det| / (|a||b||c|) < 1e-10).  Left-handed
    cells are accepted.
    """
    try:
        b = np.asarray(box, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what}: cannot be read as a 3x3 array of numbers ({exc})") from None
    if b.shape == (9,):
        b = b.reshape(3, 3)
    if b.shape != (3, 3):
        raise InputError(f"{what}: expected shape (3, 3) or (9,), got {b.shape}")
    if not np.all(np.isfinite(b)):
        raise InputError(f"{what}: contains non-finite values (nan or inf): {b.tolist()}")
    lengths = np.sqrt(np.einsum("ij,ij->i", b, b))
    det = float(np.linalg.det(b))
    scale = float(np.prod(lengths))
    if scale == 0.0 or not abs(det) > _SINGULAR_TOL * scale:
        raise InputError(
            f"{what}: the cell is singular (volume {abs(det):.6g} A^3 with vector lengths "
            f"{lengths.tolist()}); rows must be three linearly independent cell vectors"
        )
    return np.ascontiguousarray(b)


def check_positions(positions, what: str = "positions") -> np.ndarray:
    """Validate coordinates and return them as a C-contiguous (natoms, 3) float64 array (Å).

    Raises `InputError` for a wrong shape or a non-finite coordinate (naming the first bad atom).
    """
    try:
        x = np.asarray(positions, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what}: cannot be read as an (natoms, 3) array of numbers ({exc})") from None
    if x.ndim != 2 or x.shape[1] != 3:
        raise InputError(f"{what}: expected shape (natoms, 3), got {x.shape}")
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise InputError(f"{what}: atom {bad} has a non-finite coordinate {x[bad].tolist()}")
    return np.ascontiguousarray(x)


def check_types(types, natoms: int, what: str = "types") -> np.ndarray:
    """Validate per-atom integer types and return them as a (natoms,) int32 array.

    Negative types mark virtual (padding) atoms and are allowed here; the upper bound is checked
    where the number of types is known.
    """
    t = np.asarray(types)
    if t.ndim != 1 or t.shape[0] != natoms:
        raise InputError(f"{what}: expected shape ({natoms},), got {t.shape}")
    if t.size and not np.issubdtype(t.dtype, np.integer):
        if not np.all(np.isfinite(t)) or not np.all(t == np.round(t)):
            raise InputError(f"{what}: atom types must be integers")
    if t.size and (t.max() >= 2**31 or t.min() < -(2**31)):
        raise InputError(f"{what}: atom type out of range")
    return np.ascontiguousarray(t, dtype=np.int32)


def face_distances(box) -> np.ndarray:
    """Perpendicular widths of the cell, shape (3,), Å.

    h_a = V/|b×c|, h_b = V/|c×a|, h_c = V/|a×b| with V = |det(box)| (reference §1.2): h_k is the
    distance between the two faces of the cell that are spanned by the other two vectors.
    """
    b = check_box(box)
    vol = abs(float(np.linalg.det(b)))
    areas = np.array(
        [
            np.linalg.norm(np.cross(b[1], b[2])),
            np.linalg.norm(np.cross(b[2], b[0])),
            np.linalg.norm(np.cross(b[0], b[1])),
        ]
    )
    return vol / areas


def wrap_fractional(frac: np.ndarray) -> np.ndarray:
    """Map fractional coordinates into [0, 1): f ← f − ⌊f⌋ (a new array).

    Round-off can turn a tiny negative f into exactly 1.0 (−1e-20 − (−1) == 1.0); such entries are set
    to 0.0, the same lattice point, so every result lies in [0, 1) exactly.
    """
    f = np.asarray(frac, dtype=np.float64)
    f = f - np.floor(f)
    f[f >= 1.0] = 0.0
    return f


def wrap_positions(positions, box) -> np.ndarray:
    """Wrap Cartesian coordinates (natoms, 3), Å, into the cell; returns a new (natoms, 3) array.

    f = x · box⁻¹, f ← f − ⌊f⌋ (each component in [0, 1), see `wrap_fractional`), x = f · box.
    Recomputing x · box⁻¹ from the result reproduces f up to round-off (~1e-16).
    """
    b = check_box(box)
    x = check_positions(positions)
    f = wrap_fractional(x @ np.linalg.inv(b))
    return f @ b
