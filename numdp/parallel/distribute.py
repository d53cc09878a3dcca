"""Whole states between rank 0 and the ranks that own the atoms: start-up and output.

`scatter_state` hands every rank the atoms of its subdomain (rank 0 has read the start structure
or checkpoint); `gather_state` collects all atoms on rank 0 in global id order for the trajectory
and checkpoints.  These are the only places where one rank holds every atom: rank 0, at start-up
and at output steps, transiently (O(N) memory there); the MD steps themselves never do.
"""
from __future__ import annotations

import copy

import numpy as np

from ..system import State, atom_arrays, set_atom_arrays
from .atoms import layout_of, pack, unpack, unpack_by_id, width
from .domain import Domain, wrap_images
from .exchange import sort_by_id
from .world import World


def _without_atoms(state: State) -> State:
    """A copy of `state`'s global fields with empty per-atom arrays (small: for broadcasting)."""
    empty = {name: np.asarray(a)[:0] for name, a in atom_arrays(state).items()}
    light = copy.copy(state)
    light.neighbor = dict(state.neighbor)
    set_atom_arrays(light, empty)
    light.neighbor.pop("positions", None)
    light.thermostat = dict(state.thermostat)
    light.barostat = dict(state.barostat)
    return light


def ownership_positions(state: State):
    """(positions (N, 3), box) that decide which rank owns each atom: the configuration of the
    last neighbour-list build when the state records one (a restart then rebuilds exactly the
    subdomains of the run that wrote it), else the current one."""
    ref = state.neighbor.get("positions")
    if ref is not None and ref.shape == state.positions.shape and ("box" in state.neighbor) == (state.box is not None):
        return ref, state.neighbor.get("box")
    return state.positions, state.box


def scatter_state(world: World, domain: Domain, state: State | None) -> State:
    """This rank's part of the global `state` (given on rank 0 only; ignored elsewhere): the atoms
    of its subdomain sorted by id, with the global fields of the whole state.  Collective."""
    if world.size == 1:
        arrays = sort_by_id(atom_arrays(state))
        set_atom_arrays(state, arrays)
        state.natoms_global = state.natoms
        return state
    rows = counts = None
    meta = None
    if world.is_root:
        arrays = atom_arrays(state)
        layout = layout_of(arrays)
        positions, box = ownership_positions(state)
        owners = (np.zeros(state.natoms, dtype=np.int64) if box is None
                  else domain.owners(wrap_images(positions, box)[0]))
        order = np.lexsort((state.ids, owners))
        counts = np.bincount(owners, minlength=world.size)
        rows = pack(arrays, layout, order)
        meta = (layout, _without_atoms(state), state.natoms)
    layout, light, natoms = world.bcast_object(meta)
    mine = world.scatter_rows(rows, counts, width(layout))
    local = light if not world.is_root else _without_atoms(state)
    set_atom_arrays(local, unpack(mine, layout))
    local.natoms_global = int(natoms)
    return local


def gather_state(world: World, state: State) -> State | None:
    """On rank 0: the whole state, atoms in ascending id order, global fields from rank 0's
    `state`; None on the other ranks.  Collective."""
    arrays = atom_arrays(state)
    if world.size == 1:
        return state
    layout = layout_of(arrays)
    rows = world.gather_rows(pack(arrays, layout))
    if not world.is_root:
        return None
    full = _without_atoms(state)
    # rank 0 holds the received rows and the arrays gathered from them in id order, no third copy
    set_atom_arrays(full, unpack_by_id(rows, layout))
    full.natoms_global = full.natoms
    return full
