"""Migration of atoms to the rank that owns them (LAMMPS' Comm::exchange), at neighbour rebuilds.

Each atom goes to the subdomain holding its wrapped fractional coordinate.  Stage by stage (a, then
b, then c) an atom moves to the lower or upper neighbour, whichever is the shorter way round the
periodic ring, and is forwarded until it arrives; all ranks run as many hops as the farthest
atom needs (one max-reduction per stage), so atoms may move any distance between rebuilds.
Every per-atom array travels in one float64 buffer per hop and direction; afterwards each rank's
atoms are sorted by global id, which makes the atom order (and so the round-off of every sum over
atoms) a function of the configuration alone.
"""
from __future__ import annotations

import numpy as np

from .atoms import layout_of, pack, unpack_by_id
from .domain import Domain, wrap_images
from .world import World


def ids_ascending(ids: np.ndarray) -> bool:
    """Whether the ids (n,) are strictly ascending."""
    return bool(ids.shape[0] < 2 or np.all(ids[1:] > ids[:-1]))


def sort_by_id(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The per-atom arrays in ascending order of arrays["ids"] (unchanged when already sorted)."""
    ids = arrays["ids"]
    if ids_ascending(ids):
        return arrays
    order = np.argsort(ids, kind="stable")
    return {name: np.ascontiguousarray(a[order]) for name, a in arrays.items()}


def migrate(world: World, domain: Domain, arrays: dict[str, np.ndarray], box) -> dict[str, np.ndarray]:
    """Per-atom arrays (first axis = atom; "positions" (n, 3) unwrapped Å and "ids" required) of the
    atoms this rank owns for the cell `box` (3, 3) (None: no cell, nothing moves), sorted by id.
    Collective."""
    if box is None or domain.nranks == 1:
        return sort_by_id(arrays)
    layout = layout_of(arrays)
    rows = route_rows(world, domain, pack(arrays, layout), arrays["positions"], box)
    return unpack_by_id(rows, layout)


def route_rows(world: World, domain: Domain, rows: np.ndarray, positions: np.ndarray, box) -> np.ndarray:
    """Send every row of `rows` (n, m) float64 (one atom each, at unwrapped `positions` (n, 3) Å)
    hop by hop to the rank owning it for the cell `box`; returns the rows that end on this rank
    (its own that stay, then arrivals, unsorted).  The GPU path (numdp.parallel.device_comm)
    passes only the rows of the atoms that leave.  Collective."""
    frac, _ = wrap_images(positions, np.asarray(box, dtype=np.float64))
    rows = np.hstack([rows, domain.cells_of(frac).astype(np.float64)])
    for k in range(3):
        g = int(domain.grid[k])
        if g == 1:
            continue
        c = int(domain.coords[k])

        def steps(r):
            d = (r[:, -3 + k].astype(np.int64) - c) % g
            return np.where(d <= g // 2, d, d - g)

        hops = int(world.max_global(float(np.abs(steps(rows)).max(initial=0))))
        for hop in range(hops):
            st = steps(rows)
            tag = 64 * k + 4 * hop
            from_upper = world.exchange_rows(rows[st < 0], domain.neighbor(k, -1), domain.neighbor(k, 1), tag)
            from_lower = world.exchange_rows(rows[st > 0], domain.neighbor(k, 1), domain.neighbor(k, -1), tag + 2)
            rows = np.concatenate([rows[st == 0], from_upper, from_lower])
    return np.ascontiguousarray(rows[:, :-3])
