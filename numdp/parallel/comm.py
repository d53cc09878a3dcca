"""Ghost atoms of a subdomain (LAMMPS' Comm): borders, forward and reverse communication.

`borders` (at every neighbour rebuild) builds the ghost shell of width `cutoff` around this rank's
subdomain by staged exchange: along a, then b, then c, each rank sends to its lower and upper
neighbour the atoms it holds (owned ones and the ghosts of the earlier stages, so corners and
edges come for free) that lie within the receiver's reach.  When a subdomain is thinner than the
reach the stage repeats (hop m forwards what arrived at hop m - 1), and a direction with one rank
exchanges with itself, which makes the periodic self-images.  Each swap crossing the periodic
boundary adds ±1 cell vector to the positions it sends.  Ghosts are appended in swap order after
the owned atoms ("owned first, then ghosts, in the same arrays").

`forward` (every step) refreshes the ghost positions from their owners, swap by swap in the same
order, with the current cell (so a barostat's cell change reaches the ghosts); `reverse` (every
step) sends the forces on ghosts back to their owners, swaps in reverse order, and adds them up
there.  Both move contiguous float64 buffers with MPI Sendrecv; a swap with itself is a copy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .domain import Domain, ghost_reach
from ..kernels.cpu.comm import accumulate_rows, as_index, pack_shifted, select_slab
from .world import World

# Columns of a ghost row sent by `borders`: x, y, z, type, id, shift_a, shift_b, shift_c.
_GHOST_COLUMNS = 8


@dataclass
class Swap:
    """One exchange of one stage: this rank sends `send_idx` atoms to `send_rank` and receives
    `count` ghosts, stored at rows first..first+count-1, from `recv_rank`.

    dim: 0, 1, 2 (a, b, c); sign: -1 towards the lower neighbour, +1 towards the upper;
    pbc: multiple (-1, 0, 1) of cell vector `dim` added to the positions sent.
    """

    dim: int
    sign: int
    send_rank: int
    recv_rank: int
    pbc: int
    send_idx: np.ndarray
    first: int
    count: int
    tag: int
    buffer: np.ndarray | None  # (len(send_idx), 3): positions out, forces in; None: a swap with itself


@dataclass
class Ghosts:
    """Owned atoms followed by ghosts, as built by `GhostComm.borders`.

    positions (nall, 3) Å; types (nall,) int32; ids (nall,) int64 global atom ids; shifts (nall, 3)
    int32 total cell shift of each row relative to its owner's wrapped position; nlocal owned rows.
    """

    positions: np.ndarray
    types: np.ndarray
    ids: np.ndarray
    shifts: np.ndarray
    nlocal: int

    @property
    def nall(self) -> int:
        return int(self.positions.shape[0])


class GhostComm:
    """Ghost exchange of one rank: `borders` at rebuilds, then `forward` / `reverse` per step."""

    def __init__(self, world: World, domain: Domain):
        self.world = world
        self.domain = domain
        self.swaps: list[Swap] = []
        self.nlocal = 0
        self.nall = 0

    # -- rebuild ---------------------------------------------------------------------------------
    def borders(self, owned: np.ndarray, types: np.ndarray, ids: np.ndarray, box, cutoff: float,
                periodic=(True, True, True)) -> Ghosts:
        """Build the swaps and the ghost shell of width `cutoff` (Å) for the owned atoms.

        owned (nloc, 3) Å wrapped positions of this rank's atoms; types (nloc,); ids (nloc,);
        box (3, 3) rows = cell vectors, or None (no cell: no ghosts); periodic: periodicity along each
        cell vector; a non-periodic direction has one subdomain (numdp.parallel.domain) and no
        exchange at all (no periodic images across it).  Collective.
        """
        nloc = owned.shape[0]
        rows = np.zeros((nloc, _GHOST_COLUMNS))
        rows[:, :3] = owned
        rows[:, 3] = types
        rows[:, 4] = ids
        pos = np.ascontiguousarray(owned, dtype=np.float64)
        self.swaps = []
        if box is not None and self.domain.periodic:
            box = np.asarray(box, dtype=np.float64)
            inv = np.linalg.inv(box)
            reach = ghost_reach(box, cutoff)
            d = self.domain
            for k in range(3):
                if not periodic[k]:
                    if d.grid[k] != 1:
                        raise ValueError(f"direction {k} is not periodic but split into {d.grid[k]} subdomains")
                    continue
                g = int(d.grid[k])
                hops = max(1, math.ceil(reach[k] * g))
                start = rows.shape[0]
                sources = {-1: np.arange(start, dtype=np.int64), 1: np.arange(start, dtype=np.int64)}
                inv_col = np.ascontiguousarray(inv[:, k])
                for _ in range(hops):
                    for sign in (-1, 1):
                        src = sources[sign]
                        limit = d.lo[k] + reach[k] if sign < 0 else d.hi[k] - reach[k]
                        picked = np.empty(src.shape[0], dtype=np.int64)
                        n = select_slab(pos, src, inv_col, limit, sign < 0, picked)
                        picked = picked[:n].copy()
                        pbc = 1 if (sign < 0 and d.coords[k] == 0) else (-1 if (sign > 0 and d.coords[k] == g - 1) else 0)
                        send = rows[picked]
                        if pbc:
                            send[:, :3] += pbc * box[k]
                            send[:, 5 + k] += pbc
                        dest, source = d.neighbor(k, sign), d.neighbor(k, -sign)
                        tag = 16 * len(self.swaps)
                        got = self.world.exchange_rows(send, dest, source, tag)
                        first = rows.shape[0]
                        rows = np.concatenate([rows, got])
                        pos = np.ascontiguousarray(rows[:, :3])
                        sources[sign] = np.arange(first, first + got.shape[0], dtype=np.int64)
                        local = dest == self.world.rank
                        self.swaps.append(Swap(k, sign, dest, source, pbc, as_index(picked), first, got.shape[0],
                                               tag, None if local else np.empty((n, 3))))
        self.nlocal = nloc
        self.nall = rows.shape[0]
        return Ghosts(positions=pos.copy(), types=rows[:, 3].astype(np.int32), ids=rows[:, 4].astype(np.int64),
                      shifts=rows[:, 5:8].astype(np.int32), nlocal=nloc)

    # -- every step ------------------------------------------------------------------------------
    def forward(self, ext_positions: np.ndarray, box) -> None:
        """Fill the ghost rows of ext_positions (nall, 3) Å, C-contiguous, whose first nlocal rows
        hold the owned atoms' current wrapped positions; `box` the current cell.  Collective."""
        with self.world.timed():
            for s in self.swaps:
                shift = s.pbc * np.asarray(box[s.dim], dtype=np.float64)
                if s.buffer is None:
                    pack_shifted(ext_positions, s.send_idx, shift, ext_positions[s.first:s.first + s.count])
                else:
                    pack_shifted(ext_positions, s.send_idx, shift, s.buffer)
                    self.world.sendrecv(s.buffer, s.send_rank, ext_positions[s.first:s.first + s.count],
                                        s.recv_rank, s.tag + 2)

    def reverse(self, ext_forces: np.ndarray) -> None:
        """Add the forces (nall, 3) eV/Å on ghost rows to the rows they were copied from, swaps in
        reverse order, so that the first nlocal rows end up with the total force on each owned
        atom.  ext_forces must be C-contiguous float64 (modified in place).  Collective."""
        with self.world.timed():
            for s in reversed(self.swaps):
                ghosts = ext_forces[s.first:s.first + s.count]
                if s.buffer is None:
                    accumulate_rows(ext_forces, s.send_idx, ghosts)
                else:
                    self.world.sendrecv(np.ascontiguousarray(ghosts), s.recv_rank, s.buffer, s.send_rank, s.tag + 3)
                    accumulate_rows(ext_forces, s.send_idx, s.buffer)
