"""The domain decomposition with the atoms on the GPU: one GPU per rank, ghosts, force return and
migration packed and unpacked on the device (numdp.md.device_parallel runs the MD step with it).

Every exchange is: a device kernel gathers the rows to send into one contiguous device buffer
(numdp.kernels.cuda.comm.gather_rows), one copy to the host, MPI (the host buffers and calls of
numdp.parallel.world), one copy back to the device, and a device kernel or copy puts the rows in
place (`add_rows` for returned forces).  A swap of a rank with itself (the periodic self-images
along a direction with one subdomain) never leaves the device.  MPI always sees host buffers:
numdp does not detect or use GPU-aware ("CUDA-aware") MPI.

- `DeviceGhostComm`: numdp.parallel.comm.GhostComm on device arrays: the same swaps (stage by
  stage, hop by hop, the same slab test and the same order of ghosts and of the force sums), so a
  run's ghosts, and so its neighbour lists, are those of the CPU path.
- `migrate_device`: numdp.parallel.exchange.migrate for the per-atom device arrays: the atoms
  that stay are kept on the device, those that leave are packed on the device and routed by the
  host's `route_rows`; arrivals are unpacked on the device, and the atoms are sorted by id.
- `bind_rank_gpu`: rank r uses GPU (node-local rank) mod (GPUs on its node).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..backend import Backend
from .domain import Domain, ghost_reach
from .exchange import route_rows
from .world import World

# Columns of a ghost row on the device: x, y, z, type, id (numdp.parallel.comm's rows less its
# shift columns, which nothing on the device reads: each swap's cell shift is added by `_gather`).
_GHOST_COLUMNS = 5


def bind_rank_gpu(world: World) -> tuple[int, int, int]:
    """Select this rank's GPU: (node-local rank) mod (GPUs visible on the node), for Numba and
    CuPy, before any device memory is allocated.  Returns (node-local rank, GPU index, GPUs on the
    node).  Under Numba's CUDA simulator there is one simulated GPU, which every rank uses."""
    from numba import cuda

    from ..backend import cuda_simulator_enabled

    local = world.local_rank()
    ngpu = max(1, len(cuda.gpus))
    gpu = local % ngpu
    if not cuda_simulator_enabled():
        cuda.select_device(gpu)
        import cupy

        cupy.cuda.Device(gpu).use()
    return local, gpu, ngpu


@dataclass
class DeviceSwap:
    """One exchange of one stage (numdp.parallel.comm.Swap) with device index and buffers.

    send_idx: (n,) int64 device rows sent; first, count: rows of the received ghosts; pbc:
    multiple of cell vector `dim` added to the positions sent; local: a swap with itself (no MPI);
    dev_send (n, 3) device buffer; host_send (n, 3), host_recv (count, 3): the host buffers MPI
    moves (positions out and forces back use the same ones)."""

    dim: int
    send_rank: int
    recv_rank: int
    pbc: int
    send_idx: object
    first: int
    count: int
    tag: int
    local: bool
    dev_send: object = None
    host_send: np.ndarray | None = None
    host_recv: np.ndarray | None = None


class DeviceGhostComm:
    """Ghost exchange of one rank on device arrays: `borders` at rebuilds, `forward` / `reverse`
    every step (numdp.parallel.comm.GhostComm explains the scheme)."""

    def __init__(self, world: World, domain: Domain, be: Backend):
        from ..kernels.cuda import comm, launch

        self.world = world
        self.domain = domain
        self.be = be
        self._K = comm
        self._grid = launch.grid
        self._grid2 = launch.grid2
        self.swaps: list[DeviceSwap] = []
        self.nlocal = 0
        self.nall = 0

    def _gather(self, src, idx, shift, out) -> None:
        n, m = out.shape
        if n:
            self._K.gather_rows[self._grid2(n, m)](src, idx, float(shift[0]), float(shift[1]), float(shift[2]), out)

    # -- rebuild ---------------------------------------------------------------------------------
    def borders(self, owned, types, ids, box, cutoff: float, periodic=(True, True, True)):
        """Ghost shell of width `cutoff` (Å) around the owned atoms: (positions (nall, 3) Å,
        types (nall,) int32, ids (nall,) int64), device arrays, owned rows first.

        owned (nloc, 3) device wrapped positions; types, ids (nloc,) device; box (3, 3) host (a
        cell is required); periodic: no exchange across a non-periodic direction.  Collective."""
        be, xp, d = self.be, self.be.xp, self.domain
        nloc = int(owned.shape[0])
        rows = xp.zeros((nloc, _GHOST_COLUMNS))
        rows[:, :3] = owned
        rows[:, 3] = types
        rows[:, 4] = ids
        self.swaps = []
        box = np.asarray(box, dtype=np.float64)
        inv = np.linalg.inv(box)
        reach = ghost_reach(box, cutoff)
        zero = np.zeros(3)
        for k in range(3):
            if not periodic[k]:
                continue
            g = int(d.grid[k])
            hops = max(1, math.ceil(reach[k] * g))
            start = int(rows.shape[0])
            sources = {-1: (0, start), 1: (0, start)}
            for _ in range(hops):
                for sign in (-1, 1):
                    a, b = sources[sign]
                    limit = d.lo[k] + reach[k] if sign < 0 else d.hi[k] - reach[k]
                    flag = xp.empty(b - a, np.int32)
                    if b > a:
                        self._K.slab_flags[self._grid(b - a)](rows, a, float(inv[0, k]), float(inv[1, k]),
                                                              float(inv[2, k]), float(limit), sign < 0, flag)
                    picked = (xp.flatnonzero(flag) + a).astype(np.int64)
                    n = int(picked.shape[0])
                    pbc = 1 if (sign < 0 and d.coords[k] == 0) else (-1 if (sign > 0 and d.coords[k] == g - 1) else 0)
                    send = xp.empty((n, _GHOST_COLUMNS))
                    self._gather(rows, picked, pbc * box[k] if pbc else zero, send)
                    dest, source = d.neighbor(k, sign), d.neighbor(k, -sign)
                    tag = 16 * len(self.swaps)
                    local = dest == self.world.rank
                    if local:  # a periodic self-image: stays on the device
                        got = send
                    else:
                        got = be.to_device(self.world.exchange_rows(be.to_host(send), dest, source, tag))
                    first = int(rows.shape[0])
                    count = int(got.shape[0])
                    rows = xp.concatenate([rows, got])
                    sources[sign] = (first, first + count)
                    swap = DeviceSwap(k, dest, source, pbc, picked, first, count, tag, local)
                    if not local:
                        swap.dev_send = xp.empty((n, 3))
                        swap.host_send = np.empty((n, 3))
                        swap.host_recv = np.empty((count, 3))
                    self.swaps.append(swap)
        self.nlocal = nloc
        self.nall = int(rows.shape[0])
        return (xp.ascontiguousarray(rows[:, :3]), rows[:, 3].astype(np.int32), rows[:, 4].astype(np.int64))

    # -- every step ------------------------------------------------------------------------------
    def forward(self, ext_positions, box) -> None:
        """Fill the ghost rows of the device array ext_positions (nall, 3) Å, whose first nlocal
        rows hold the owned atoms' current wrapped positions; `box` the current cell.  Collective."""
        be, xp = self.be, self.be.xp
        box = np.asarray(box, dtype=np.float64)
        with self.world.timed():
            for s in self.swaps:
                shift = s.pbc * box[s.dim]
                target = ext_positions[s.first:s.first + s.count]
                if s.local:
                    self._gather(ext_positions, s.send_idx, shift, target)
                    continue
                self._gather(ext_positions, s.send_idx, shift, s.dev_send)
                s.host_send[...] = be.to_host(s.dev_send)
                self.world.sendrecv(s.host_send, s.send_rank, s.host_recv, s.recv_rank, s.tag + 2)
                target[...] = xp.asarray(s.host_recv)

    def reverse(self, ext_forces) -> None:
        """Add the forces on ghost rows of the device array ext_forces (nall, 3) eV/Å to the rows
        they were copied from, swaps in reverse order (the CPU's order of the sums), so that the
        first nlocal rows hold the total force on each owned atom.  In place.  Collective."""
        be, xp = self.be, self.be.xp
        with self.world.timed():
            for s in reversed(self.swaps):
                ghosts = ext_forces[s.first:s.first + s.count]
                if s.local:
                    rows = ghosts
                else:
                    s.host_recv[...] = be.to_host(ghosts)
                    self.world.sendrecv(s.host_recv, s.recv_rank, s.host_send, s.send_rank, s.tag + 3)
                    s.dev_send[...] = xp.asarray(s.host_send)
                    rows = s.dev_send
                n = int(rows.shape[0])
                if n:
                    self._K.add_rows[self._grid2(n, 3)](ext_forces, s.send_idx, rows)


# -- migration -----------------------------------------------------------------------------------

# Columns of an atom row on the device: position (3), velocity (3), mass, id, type, previous
# position (3: the positions of the last force call, for the per-step displacement test).
MIGRATE_COLUMNS = 12


def migrate_device(world: World, domain: Domain, be: Backend, positions, velocities, masses, ids, types,
                   previous, box):
    """The per-atom device arrays (positions (n, 3) unwrapped Å, velocities (n, 3) Å/ps, masses (n,)
    amu, ids (n,) int64, types (n,) int32, previous (n, 3) Å) of the atoms this rank owns for the
    cell `box` (3, 3) host, sorted by id, as a tuple in that order, then the number of atoms
    that left this rank.  Collective."""
    from ..kernels.cuda import comm, launch

    xp = be.xp
    n = int(positions.shape[0])
    rows = xp.empty((n, MIGRATE_COLUMNS))
    rows[:, 0:3] = positions
    rows[:, 3:6] = velocities
    rows[:, 6] = masses
    rows[:, 7] = ids
    rows[:, 8] = types
    rows[:, 9:12] = previous
    box = np.asarray(box, dtype=np.float64)
    flag = xp.empty(n, np.int32)
    if n:
        comm.stays_here[launch.grid(n)](positions, be.to_device(np.linalg.inv(box)),
                                        be.to_device(domain.grid.astype(np.int64)),
                                        be.to_device(domain.coords.astype(np.int64)), flag)
    zero = (0.0, 0.0, 0.0)

    def gathered(idx):
        out = xp.empty((int(idx.shape[0]), MIGRATE_COLUMNS))
        if out.shape[0]:
            comm.gather_rows[launch.grid2(*out.shape)](rows, idx, *zero, out)
        return out

    leave = gathered(xp.flatnonzero(flag == 0).astype(np.int64))
    stay = gathered(xp.flatnonzero(flag).astype(np.int64))
    host = be.to_host(leave)
    arrived = route_rows(world, domain, host, host[:, 0:3], box)
    rows = xp.concatenate([stay, be.to_device(arrived)])
    rows = gathered(xp.argsort(rows[:, 7]).astype(np.int64))   # ids are unique: any sort is stable
    return (xp.ascontiguousarray(rows[:, 0:3]), xp.ascontiguousarray(rows[:, 3:6]),
            xp.ascontiguousarray(rows[:, 6]), rows[:, 7].astype(np.int64), rows[:, 8].astype(np.int32),
            xp.ascontiguousarray(rows[:, 9:12]), int(leave.shape[0]))
