"""Per-atom arrays packed as rows of one float64 matrix, for moving atoms between ranks.

Migration, start-up distribution and output gathering all move whole atoms: every per-atom array
(positions (n, 3), velocities (n, 3), types (n,), ids (n,), ...) becomes columns of one (n, m)
float64 matrix, sent as one buffer.  Integer arrays travel exactly (atom ids up to 2**53).
"""
from __future__ import annotations

import numpy as np

Layout = list  # [(name, ncols, dtype, trailing shape)]


def layout_of(arrays: dict[str, np.ndarray]) -> Layout:
    """The column layout of a dict of per-atom arrays (first axis = atom), in key order."""
    out = []
    for name, a in arrays.items():
        a = np.asarray(a)
        out.append((name, int(np.prod(a.shape[1:], dtype=np.int64)), a.dtype.str, tuple(a.shape[1:])))
    return out


def width(layout: Layout) -> int:
    return sum(cols for _, cols, _, _ in layout)


def pack(arrays: dict[str, np.ndarray], layout: Layout, rows=None) -> np.ndarray:
    """(n, width) float64 matrix of the arrays (optionally only atoms `rows`)."""
    n = len(next(iter(arrays.values()))) if rows is None else len(rows)
    out = np.empty((n, width(layout)))
    c = 0
    for name, cols, _, _ in layout:
        a = np.asarray(arrays[name])
        if rows is not None:
            a = a[rows]
        out[:, c:c + cols] = a.reshape(n, cols)
        c += cols
    return out


def unpack(matrix: np.ndarray, layout: Layout, rows=None) -> dict[str, np.ndarray]:
    """Inverse of `pack`: C-contiguous arrays of the recorded dtypes and shapes (optionally of the
    matrix rows `rows`, in that order: each array gathered straight from the matrix, so the
    matrix is not copied whole)."""
    n = matrix.shape[0] if rows is None else len(rows)
    out = {}
    c = 0
    for name, cols, dtype, shape in layout:
        block = matrix[:, c:c + cols] if rows is None else matrix[rows, c:c + cols]
        out[name] = np.ascontiguousarray(block.reshape((n, *shape)), dtype=np.dtype(dtype))
        c += cols
    return out


def unpack_by_id(matrix: np.ndarray, layout: Layout) -> dict[str, np.ndarray]:
    """`unpack` in ascending order of the "ids" column (ids are exact in float64 below 2**53):
    each array gathered in that order straight from the matrix, with no sorted copy after it."""
    return unpack(matrix, layout, np.argsort(matrix[:, column_of(layout, "ids")], kind="stable"))


def column_of(layout: Layout, name: str) -> int:
    """The first matrix column of array `name` in `layout`."""
    c = 0
    for key, cols, _, _ in layout:
        if key == name:
            return c
        c += cols
    raise KeyError(name)
