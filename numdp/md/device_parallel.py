"""Forces for MD on the GPU on several MPI ranks: numdp.md.device_forces.DeviceForceProvider with
the ghost shell of numdp.md.forces.ForceProvider (spatial decomposition), on the device.

Each rank owns the atoms of its subdomain (numdp.parallel.domain), on its GPU
(numdp.parallel.device_comm.bind_rank_gpu).  Same rebuild test as the serial device run, its
largest displacement a max over ranks.  At a rebuild the atoms migrate to their owners
(`migrate_device`), the owned atoms' periodic images are taken on the device (their wrapped
copies: owner - image @ box) and the ghost shell of width rcut + skin is built by staged exchange
(`DeviceGhostComm.borders`, the swaps of numdp.parallel.comm on device arrays).  Every call the
owned atoms' wrapped copies move with them, the ghosts are refreshed from their owners
(`forward`), the list within rcut is formed on the device from the extended atoms, the model runs,
and the forces on ghosts go back to their owners (`reverse`).  Energy and virial are summed over
ranks in rank order (numdp.parallel.world.World.sum_global).

After a migration the host State's constant per-atom arrays (ids, types, masses) are replaced by
the new owned atoms' (they name atoms in safety messages); positions, velocities and forces come
to the host only when the State is read there (numdp.md.device.DeviceVelocityVerlet.sync_host).
"""
from __future__ import annotations

import numpy as np

from ..parallel.device_comm import DeviceGhostComm, migrate_device
from ..parallel.domain import Domain
from ..parallel.world import World
from ..system import State
from .device_forces import DeviceForceProvider
from .device_state import DeviceState


class DeviceParallelForceProvider(DeviceForceProvider):
    """DeviceForceProvider for this rank's subdomain `domain` of a run on the ranks of `world`."""

    def __init__(self, model, skin: float, dev: DeviceState, world: World, domain: Domain, pbc):
        super().__init__(model, skin, dev, world, pbc)
        self.domain = domain
        self.comm = DeviceGhostComm(world, domain, self.be)
        self._ext_ids = None
        self.migrated = 0   # atoms that left this rank at rebuilds (a diagnostic)

    def _migrate(self, state: State) -> None:
        dev = self.dev
        previous = self._prev if self._prev is not None else dev.positions
        (dev.positions, dev.velocities, dev.masses, dev.ids, dev.types,
         prev, left) = migrate_device(self.world, self.domain, self.be, dev.positions, dev.velocities, dev.masses,
                                      dev.ids, dev.types, previous, state.box)
        self.migrated += left
        dev.forces = None       # recomputed by this call
        dev.reference = None
        if self._prev is not None:
            self._prev = prev
        dev.ids_host = np.array(self.be.to_host(dev.ids), dtype=np.int64)
        dev.types_host = np.array(self.be.to_host(dev.types), dtype=np.int32)
        state.ids = dev.ids_host.copy()
        state.types = dev.types_host.copy()
        state.masses = np.array(self.be.to_host(dev.masses), dtype=np.float64)

    def _rebuild(self, state: State) -> None:
        self._migrate(state)
        super()._rebuild(state)

    def _build(self, reference, box) -> None:
        """Images, ghost shell and swaps for the configuration `reference` (device (nloc, 3) Å)."""
        from ..kernels.cuda import comm

        be, xp, dev = self.be, self.be.xp, self.dev
        box_h = np.ascontiguousarray(box, dtype=np.float64)
        inv = np.linalg.inv(box_h)
        nloc = dev.natoms
        images = xp.empty((nloc, 3))
        if nloc:
            comm.cell_images[self._grid(nloc)](reference, be.to_device(inv),
                                               be.to_device(np.array(self.pbc, dtype=np.int32)), images)
        self._mapping = xp.arange(nloc, dtype=np.int32)
        self._shift = -images
        owned = xp.empty((nloc, 3))
        if nloc:
            self._K.extended_positions[self._grid(nloc)](reference, self._mapping, self._shift,
                                                         be.to_device(box_h), owned)
        pos, typ, ids = self.comm.borders(owned, dev.types, dev.ids, box_h, self.cutoff, self.pbc)
        self._ext_types = typ
        self._ext_ids = ids
        self._ext_pos = xp.empty((int(pos.shape[0]), 3))
        self._plan_search(pos, typ)
        self._set_box(box_h)
        self._ref_box_inv = inv
        dev.reference = xp.array(reference, dtype=np.float64)

    def _extended_positions(self, state: State) -> None:
        nloc = self.dev.natoms
        box = np.ascontiguousarray(state.box, dtype=np.float64)
        if nloc:
            self._K.extended_positions[self._grid(nloc)](self.dev.positions, self._mapping, self._shift,
                                                         self.be.to_device(box), self._ext_pos[:nloc])
        self.comm.forward(self._ext_pos, box)

    def _fold(self, ext_force, out=None):
        """The ghosts' forces returned to their owners' ranks and added there (comm.reverse)."""
        ext_force = self.be.xp.ascontiguousarray(ext_force, dtype=np.float64)
        self.comm.reverse(ext_force)
        return self.be.xp.array(ext_force[:self.dev.natoms])

    def atom_label(self, ext_index: int) -> tuple[int, int]:
        """(global id, type) of extended atom `ext_index` (owned or ghost) of the current list."""
        return int(self._ext_ids[ext_index]), int(self._ext_types[ext_index])
