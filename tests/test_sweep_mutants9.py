"""Tests for the survivors of the ninth round of mutation testing (the MD step on the GPU:
numdp.kernels.cuda.md, numdp.md.device*, numdp.parallel.device_comm, numdp.kernels.cuda.comm):
each fails on one plausible mistake that the rest of the suite let through (the mutant is named
in the test's docstring; 2026-12-07).  Under Numba's CUDA simulator (tests/conftest.py); no model
and no MD run: the device pieces are called directly on a few atoms, against their CPU twins.
"""
from __future__ import annotations

import numpy as np
import pytest
from tests_util import documented_langevin_normals

pytest.importorskip("numba_cuda")


def _be():
    from numdp.backend import get_backend

    return get_backend("cuda")


def test_device_ghost_shell_takes_the_cpus_atoms_on_the_slab_limits():
    """Mutant `f <= limit` for `f < limit` in numdp.kernels.cuda.comm.slab_flags (an atom exactly
    on the inner limit lo + reach of a slab sent downwards becomes a ghost on the device only: the
    ghost shell, and so the lists, are no longer the CPU path's, which numdp.parallel.device_comm
    promises).  One rank, a cubic cell of 8 A: x · box⁻¹ = x / 8 is exact for x = 8 f (powers of
    two), so atoms put at the fractional limits f = reach and f = 1 - reach of each direction sit
    exactly on them, on both devices; DeviceGhostComm.borders then gives GhostComm.borders' rows."""
    from numdp.parallel.comm import GhostComm
    from numdp.parallel.device_comm import DeviceGhostComm
    from numdp.parallel.domain import Domain, ghost_reach
    from numdp.parallel.world import World

    be = _be()
    box = np.diag([8.0, 8.0, 8.0])
    cutoff = 1.5
    reach = float(ghost_reach(box, cutoff)[0])
    frac = [[reach, 0.5, 0.5], [1.0 - reach, 0.5, 0.5], [0.5, reach, 0.5], [0.5, 0.5, 1.0 - reach],
            [0.5, 0.5, 0.5], [reach, reach, 1.0 - reach]]
    owned = np.array(frac) * 8.0
    assert np.array_equal(owned @ np.linalg.inv(box), np.array(frac))   # exactly on the limits
    types = np.array([0, 1, 0, 1, 0, 1], dtype=np.int32)
    ids = np.arange(6, dtype=np.int64)
    world, domain = World(None), Domain((1, 1, 1), 0)
    cpu = GhostComm(world, domain).borders(owned, types, ids, box, cutoff)
    pos, typ, gid = DeviceGhostComm(world, domain, be).borders(be.to_device(owned), be.to_device(types),
                                                                be.to_device(ids), box, cutoff)
    assert cpu.nall > 6   # the limits' atoms have images
    assert np.array_equal(np.asarray(be.to_host(gid)), cpu.ids)
    assert np.array_equal(np.asarray(be.to_host(typ)), cpu.types)
    assert np.array_equal(np.asarray(be.to_host(pos)), cpu.positions)


def _rank0_of_two():
    """Rank 0 of a stand-in world of 2 ranks whose other rank sends nothing: what rank 0 sends
    is kept in `sent` (no MPI; every collective a rank-0 run would see is answered alike)."""
    from numdp.parallel.world import World

    class Rank0(World):
        def __init__(self):
            super().__init__(None)
            self.size = 2
            self.sent = []

        def exchange_rows(self, send, dest, source, tag):
            send = np.asarray(send, dtype=np.float64)
            if len(send):
                self.sent.append((dest, send.copy()))
            return np.empty((0, send.shape[1]))

        def max_global(self, value):
            return float(value)

    return Rank0()


def test_device_migration_routes_by_position_as_the_cpu():
    """Mutant `host[:, 3:6]` for `host[:, 0:3]` in migrate_device's route_rows call (the leaving
    atoms routed by their velocities: an atom whose velocity reads as a fractional coordinate of
    rank 0's half stays on rank 0 although its position is in rank 1's), and mutant `xp.arange`
    for `xp.argsort(rows[:, 7])` (the atoms left unsorted by id, unlike the CPU's, whose order
    the ghost shell and the lists follow; both survived tests/test_cuda_mpi.py).  Two ranks along c of a
    cubic 8 A cell, rank 0 owning c in [0, 1/2): of 6 atoms (ids shuffled) the 3 in the upper half
    are sent to rank 1 and the others stay, sorted by id, on both devices (numdp.parallel.exchange
    .migrate the twin); every velocity is 0.1 A/ps (fractional 0.0125, rank 0's half)."""
    from numdp.parallel.device_comm import migrate_device
    from numdp.parallel.domain import Domain
    from numdp.parallel.exchange import migrate

    be = _be()
    box = np.diag([8.0, 8.0, 8.0])
    pos = np.array([[1.0, 1.0, 5.0], [2.0, 3.0, 1.0], [4.0, 4.0, 7.5], [3.0, 5.0, 2.0], [5.0, 6.0, 4.5],
                    [6.0, 7.0, 3.0]])
    vel = np.full((6, 3), 0.1)
    masses = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    ids = np.array([5, 3, 0, 4, 1, 2], dtype=np.int64)
    types = np.array([0, 1, 0, 1, 0, 1], dtype=np.int32)
    prev = pos - 0.01
    domain = Domain((1, 1, 2), 0)
    cpu_world, dev_world = _rank0_of_two(), _rank0_of_two()
    cpu = migrate(cpu_world, domain, {"positions": pos, "velocities": vel, "masses": masses, "ids": ids,
                                      "types": types}, box)
    got = migrate_device(dev_world, domain, be, *(be.to_device(a) for a in (pos, vel, masses, ids, types, prev)),
                         box)
    stay = pos[:, 2] < 4.0
    assert got[-1] == 3
    assert np.array_equal(cpu["ids"], np.sort(ids[stay]))
    for key, value in zip(("positions", "velocities", "masses", "ids", "types"), got[:5]):
        assert np.array_equal(np.asarray(be.to_host(value)), cpu[key]), key
    assert np.array_equal(np.asarray(be.to_host(got[5])), prev[stay][np.argsort(ids[stay])])
    sent = [(dest, rows) for dest, rows in dev_world.sent]
    assert [dest for dest, _ in sent] == [1] and np.array_equal(np.sort(sent[0][1][:, 7]), np.sort(ids[~stay]))


def test_device_langevin_noise_follows_the_documented_philox_key():
    """Mutant `t & _MASK` for `t >> _S32` in numdp.kernels.rng.philox_block_of_key (the counter's
    third word the step's low bits again instead of its high bits: the CPU and the GPU draw the
    same, wrong, numbers, so every CPU-against-GPU test passes).  The device's Langevin update of
    two atoms (ids 7 and 2**32 + 3, steps 12 and 2**32 + 9) equals v c + sqrt(1 - c²) sqrt(kT /
    (m MVV2E)) g with g from the documented key.  Bound: the same operations on doubles in the
    same order; a GPU's log / cos / sin may differ from the host's by an ulp or two, which the
    noise term (|g| < 6, sigma ~ 1) and c v carry as a few ulps of |v| + 6 sigma: 1e-13 relative
    to max(|v|, sigma) is far above that and far below a changed draw (order sigma)."""
    import math

    from numdp.kernels.cuda import launch, md
    from numdp.units import MVV2E

    be = _be()
    seed, stream, c, kt = 2**40 + 12345, 3, 0.9, 0.025
    masses = np.array([1.5, 16.0])
    ids = np.array([7, 2**32 + 3], dtype=np.int64)
    v0 = np.array([[0.3, -1.2, 2.0], [-0.5, 0.25, 0.75]])
    for step in (12, 2**32 + 9):
        v = be.to_device(v0.copy())
        md.langevin_update[launch.grid(2)](v, be.to_device(masses), be.to_device(ids), c, kt,
                                           np.int64(seed), np.int64(step), np.int64(stream))
        got = np.asarray(be.to_host(v))
        for i in range(2):
            sigma = math.sqrt(1.0 - c * c) * math.sqrt(kt / (masses[i] * MVV2E))
            want = c * v0[i] + sigma * np.array(documented_langevin_normals(seed, step, stream, int(ids[i])))
            scale = max(np.abs(v0[i]).max(), sigma)
            assert np.abs(got[i] - want).max() <= 1e-13 * scale, (step, i, got[i], want)
