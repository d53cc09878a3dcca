"""Tests added by mutation round 14 (the CPU spatial decomposition under MPI, numdp.parallel):
each kills a plausible mistake that tests/test_mpi.py, test_sweep_mpi*.py and the earlier
mutation rounds let through (the mutant named in the test's docstring).  The MPI test starts one
small `mpiexec -n 3 python` script (tests/test_mpi.py's launcher), not a whole `numdp run`."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from test_mpi import MPIEXEC, TIMEOUT, _mpi4py

REDUCTIONS = textwrap.dedent("""
    import json
    import numpy as np
    from mpi4py import MPI
    from numdp.parallel.world import World

    world = World(MPI.COMM_WORLD)
    r = world.rank
    # rank-dependent terms whose float sum depends on the order: (1 - 1) + 1e-20 = 1e-20 but
    # (1e-20 + 1) - 1 = 0
    scalar = [1.0, -1.0, 1e-20][r]
    array = np.array([[1.0, 2.0 ** -53], [-1.0, 1.0], [1e-20, 2.0 ** -53]])[r] * [1.0, 1.0]
    out = {"sum": world.sum_global(scalar).hex(),
           "sum_array": [float(v).hex() for v in world.sum_global(array)],
           "max": world.max_global(float([3.0, -7.0, 5.0][r])),
           "flags": world.flags_global([r == 1, 0, [2, 0, 1][r]]).tolist(),
           "counts": world.counts_global(10 + r).tolist()}
    # migration (numdp.parallel.exchange.migrate) on a 3 x 1 x 1 grid of a 9 A cube: atom i at
    # x = 0.75 i + 0.3 A starts on rank i % 3, so most atoms move, some through the periodic boundary
    from numdp.parallel.domain import Domain
    from numdp.parallel.exchange import migrate

    ids = np.arange(r, 12, 3)
    x = np.zeros((ids.size, 3)) + 4.5
    x[:, 0] = 0.75 * ids + 0.3
    got = migrate(world, Domain((3, 1, 1), r), {"positions": x, "ids": ids, "tag": 10.0 * ids}, np.eye(3) * 9.0)
    out["migrated"] = [got["ids"].tolist(), got["positions"][:, 0].tolist(), got["tag"].tolist()]
    every = MPI.COMM_WORLD.gather(out, root=0)
    if r == 0:
        print(json.dumps(every))
""")


@pytest.mark.skipif(MPIEXEC is None or not _mpi4py(), reason="MPI tests need mpi4py and mpiexec")
def test_global_reductions_are_the_rank_order_sum_with_the_same_bits_on_every_rank(tmp_path):
    """numdp.parallel.world.World on 3 ranks: sum_global adds the per-rank values in rank order,
    so every rank gets the same bits (the thermostat, barostat and rebuild decisions of every rank
    are taken from these numbers: ranks that disagree in the last bit move their cells apart);
    max_global and flags_global are the maxima over all ranks.  The terms 1, -1, 1e-20 are chosen
    so that the order shows: (1 + (-1)) + 1e-20 = 1e-20 exactly, while a sum starting from this
    rank's own term gives 0 on rank 2.  Exact comparisons: every result is one correctly rounded
    floating-point expression of the inputs.
    Mutants killed: each rank adding the others' terms to its own (the same value on 2 ranks, as
    float addition commutes, not on 3); the sum leaving out the last rank; the max reduced with
    MPI.MIN (migration hops and the rebuild test taken from the smallest displacement); the flags
    reduced with MIN (a rank's problem not stopping the others).  The same script migrates atoms
    to both neighbours (one the short way round through the periodic boundary): each rank must end with the atoms of its subdomain in ascending
    id order (numdp.parallel.exchange's docstring).  Mutant killed: the arrivals appended after
    the atoms that stayed (`unpack` instead of `unpack_by_id`), which makes the atom order, and
    so the round-off of every sum, depend on the migration history: a restart on the same ranks
    is no longer bit for bit."""
    (tmp_path / "reduce.py").write_text(REDUCTIONS)
    r = subprocess.run([MPIEXEC, "-n", "3", sys.executable, "reduce.py"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-3000:]
    every = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(every) == 3
    expected = {"sum": ((1.0 + -1.0) + 1e-20).hex(),
                "sum_array": [((1.0 + -1.0) + 1e-20).hex(), ((2.0 ** -53 + 1.0) + 2.0 ** -53).hex()],
                "max": 5.0, "flags": [1, 0, 2], "counts": [10, 11, 12]}
    assert ((1.0 + -1.0) + 1e-20) != ((1e-20 + 1.0) + -1.0)   # the order matters for these terms
    for rank, out in enumerate(every):
        ids, x, tag = out.pop("migrated")
        assert out == expected, (rank, out)
        # each rank ends with exactly the atoms of its subdomain [3 rank, 3 rank + 3) A, ascending
        # by id (so the order of every later sum is a function of the configuration alone)
        mine = [i for i in range(12) if 3 * rank <= 0.75 * i + 0.3 < 3 * rank + 3]
        assert ids == mine, (rank, ids)
        assert x == [0.75 * i + 0.3 for i in mine] and tag == [10.0 * i for i in mine]


def test_the_ghost_shell_holds_every_image_just_inside_the_cutoff_of_a_face():
    """numdp.parallel.comm.GhostComm.borders on one rank (the periodic self-exchange) of a
    triclinic cell: an atom at a perpendicular distance cutoff (1 - 1e-9) from the far side of a
    face (fractional distance rho (1 - 1e-9) from it, rho = cutoff / h_k the ghost reach of
    numdp.parallel.domain) lies within the cutoff of the subdomain, so its periodic image across
    that face must be a ghost; one at cutoff (1 + 1e-6) must not (the shell is no wider than the
    cutoff plus its round-off margin, REACH_MARGIN = 1e-8).  The fractional coordinates are
    computed from positions of size <= 10 Å, a few roundings each (relative error ~1e-15, far
    below 1e-9).  Mutant killed: the round-off margin of `ghost_reach` with the wrong sign
    (cutoff (1 - REACH_MARGIN)), which drops images just inside the cutoff."""
    from numdp.geometry import face_distances
    from numdp.parallel.comm import GhostComm
    from numdp.parallel.domain import Domain
    from numdp.parallel.world import World

    box = np.array([[9.0, 0.0, 0.0], [2.0, 8.0, 0.0], [-1.5, 1.0, 10.0]])
    cutoff = 2.5
    h = face_distances(box)
    for k in range(3):
        rho = cutoff / h[k]
        frac = np.full((4, 3), 0.5)
        frac[:, k] = [rho * (1 - 1e-9), 1 - rho * (1 - 1e-9), rho * (1 + 1e-6), 1 - rho * (1 + 1e-6)]
        comm = GhostComm(World(None), Domain((1, 1, 1), 0))
        g = comm.borders(frac @ box, np.zeros(4, np.int32), np.arange(4), box, cutoff)
        shift = np.zeros(3, np.int32)
        ghosts = {(int(i), int(s[k])) for i, s in zip(g.ids[g.nlocal:], g.shifts[g.nlocal:])
                  if np.array_equal(np.delete(s, k), np.delete(shift, k))}
        assert (0, 1) in ghosts and (1, -1) in ghosts, (k, ghosts)   # just inside: images across the face
        assert not ghosts & {(2, 1), (3, -1)}, (k, ghosts)            # beyond the margin: none
