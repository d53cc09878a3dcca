"""Whole states between rank 0 and the ranks that own the atoms: start-up and output.

`scatter_state` hands every rank the atoms of its subdomain (rank 0 reads them from the start
structure or checkpoint, `numdp.system.AtomSource`); `GlobalAtoms` hands rank 0 the atoms of
every rank in global id order for the trajectory and checkpoints.  Both move the atoms in blocks
of at most `BLOCK_ATOMS`, so that their buffers hold one block, not the whole system.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..system import AtomSource, State, atom_arrays, set_atom_arrays, whole_state, without_atoms
from .atoms import Layout, layout_of, pack, unpack_by_id, width
from .domain import Domain, wrap_images
from .exchange import ids_ascending, sort_by_id
from .world import World


def ownership_positions(light: State, arrays: dict[str, np.ndarray]):
    """(positions (n, 3), box) that decide which rank owns each atom of a block `arrays` of a
    system whose global fields are `light`: the configuration of the last neighbour-list build
    when the state records one (a restart then rebuilds exactly the subdomains of the run that
    wrote it), else the current one."""
    ref = arrays.get("neighbor/positions")
    if ref is not None and ("box" in light.neighbor) == (light.box is not None):
        return ref, light.neighbor.get("box")
    return arrays["positions"], light.box


def _owners(domain: Domain, light: State, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The rank owning each atom of the block `arrays` (rank 0 without a cell)."""
    positions, box = ownership_positions(light, arrays)
    if box is None:
        return np.zeros(positions.shape[0], dtype=np.int64)
    return domain.owners(wrap_images(positions, box)[0])


def scatter_state(world: World, domain: Domain, source: AtomSource | None) -> State:
    """This rank's part of the system `source` (given on rank 0 only; ignored elsewhere): the
    atoms of its subdomain sorted by id, with the global fields of the whole state.  Collective.

    Rank 0 reads the source's atoms in blocks of `BLOCK_ATOMS` twice: once to count each rank's
    atoms (the ownership positions only), then to hand them out, so that it holds one block (and
    its packed rows), not the whole system; each rank fills its rows block by block.  On one rank
    the whole state is assembled (`whole_state`)."""
    if world.size == 1:
        state = whole_state(source)
        set_atom_arrays(state, sort_by_id(atom_arrays(state)))
        state.natoms_global = state.natoms
        return state
    meta = None
    block = BLOCK_ATOMS
    if world.is_root:
        light = source.light
        empty = atom_arrays(light)
        layout = layout_of(empty)
        owner_names = ("positions",) + (("neighbor/positions",) if "neighbor/positions" in empty else ())
        totals = np.zeros(world.size, dtype=np.int64)
        for arrays in source.blocks(block, owner_names):
            totals += np.bincount(_owners(domain, light, arrays), minlength=world.size)
        meta = (layout, without_atoms(light), source.natoms, totals, block)
    layout, light, natoms, totals, block = world.bcast_object(meta)
    m = width(layout)
    mine = np.empty((int(totals[world.rank]), m))
    filled = 0
    blocks = source.blocks(block) if world.is_root else None
    for _ in range(0, natoms, block):
        rows = counts = None
        if world.is_root:
            arrays = next(blocks)
            owners = _owners(domain, light, arrays)
            counts = np.bincount(owners, minlength=world.size)
            rows = pack(arrays, layout, np.argsort(owners, kind="stable"))
        got = world.scatter_rows(rows, counts, m)
        mine[filled:filled + got.shape[0]] = got
        filled += got.shape[0]
    local = without_atoms(light)
    set_atom_arrays(local, unpack_by_id(mine, layout))
    local.natoms_global = int(natoms)
    return local


BLOCK_ATOMS = 1 << 18
"""Atoms per block of `scatter_state` and `GlobalAtoms`: rank 0 holds one block's rows (and, for
output, its arrays) at a time, ~60 MB of state, instead of the whole system's."""


class GlobalAtoms:
    """The per-atom arrays of every rank's atoms in ascending global id order, for the writers.

    state: this rank's State, whose ids are 0 .. natoms_global - 1 over all ranks; names: the
    arrays to hand over (keys of `numdp.system.atom_arrays`; default all of them); block: atoms
    per block (default `BLOCK_ATOMS`).
    `blocks()` yields, on rank 0, (start, arrays) for ids start .. start + n - 1, n <= block,
    in order, and None on the other ranks; it is collective: every rank must run through it
    (the writers of rank 0 consume it, the other ranks `drain` it).  On one rank the blocks are
    views of the state's arrays when they are in id order already (no copy).
    """

    def __init__(self, world: World, state: State, names: tuple[str, ...] | None = None,
                 block: int | None = None):
        arrays = atom_arrays(state)
        if names is not None:
            arrays = {k: arrays[k] for k in names if k in arrays}
        arrays.setdefault("ids", state.ids)
        self.world = world
        self.natoms = int(state.natoms_global if world.size > 1 else state.natoms)
        self.block = max(1, int(block if block is not None else BLOCK_ATOMS))
        self._arrays = arrays
        self.layout: Layout = layout_of(arrays)
        """Name, columns, dtype and trailing shape of each array (the same on every rank)."""

    @property
    def names(self) -> tuple[str, ...]:
        """The arrays each block carries: those of `names` the state has, and "ids"."""
        return tuple(name for name, _, _, _ in self.layout)

    def blocks(self) -> Iterator[tuple[int, dict[str, np.ndarray]] | None]:
        ids = self._arrays["ids"]
        order = None if ids_ascending(ids) else np.argsort(ids, kind="stable")
        sorted_ids = ids if order is None else ids[order]
        for start in range(0, self.natoms, self.block):
            stop = min(start + self.block, self.natoms)
            lo, hi = np.searchsorted(sorted_ids, [start, stop])
            if self.world.size == 1:
                rows = slice(lo, hi) if order is None else order[lo:hi]
                part = {k: a[rows] for k, a in self._arrays.items()}
            else:
                got = self.world.gather_rows(pack(self._arrays, self.layout,
                                                  np.arange(lo, hi) if order is None else order[lo:hi]))
                if not self.world.is_root:
                    yield None
                    continue
                part = unpack_by_id(got, self.layout)
            if not np.array_equal(part["ids"], np.arange(start, stop)):
                raise RuntimeError(f"atom ids {start}..{stop - 1} are not held once each by the ranks (a bug)")
            yield start, part

    def drain(self) -> None:
        """Take part in `blocks` without using them (ranks other than 0)."""
        for _ in self.blocks():
            pass
