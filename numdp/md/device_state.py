"""The per-atom MD arrays of a run on the GPU, and the deterministic reductions over them.

A serial run with [model] device = "cuda" keeps positions, velocities and forces on the device
(CuPy arrays on a GPU, NumPy arrays under Numba's CUDA simulator); the host `State` keeps the
scalars (step, time, box, energies, the stochastic thermostats' variables) and the constant
per-atom data (types, ids, masses), and receives the arrays and the Nosé-Hoover chain's variables
only when it is read on the host (`download`: reports, checkpoints, stops).  numdp.md.device describes what runs where.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..backend import Backend
from ..system import State


@dataclass
class DeviceState:
    """Device copies of a State's per-atom arrays (N atoms).

    positions (N, 3) float64 Å (unwrapped, as in State); velocities (N, 3) float64 Å/ps; forces
    (N, 3) float64 eV/Å, or None before the first force call; masses (N,) float64 amu; ids (N,)
    int64; types (N,) int32; reference (N, 3) float64 Å: the positions of the last neighbour
    rebuild (State.neighbor["positions"]), or None before it.  types_host / ids_host: host copies
    of the constant arrays (for naming atoms and for the evaluator's per-type ordering).
    """

    be: Backend
    positions: object
    velocities: object
    forces: object
    masses: object
    ids: object
    types: object
    types_host: np.ndarray
    ids_host: np.ndarray
    reference: object = None
    # (step, first atom with a non-finite force, first with a non-finite velocity; -1 when none)
    # of the arrays as they were at the end of that step: read with the totals of the force call
    # that ended it (numdp.md.device_forces.DeviceForceProvider.complete), for the safety check
    nonfinite: tuple | None = None
    # State.thermostat entries that a device kernel updates during the run (the Nosé-Hoover
    # chain's "xi", "vxi": numdp.md.device.DeviceVelocities.nose_hoover_chain puts them here at
    # its first half-step); the device copy is the current one, `download` brings it to the host
    thermostat: dict = field(default_factory=dict)

    @classmethod
    def upload(cls, be: Backend, state: State) -> "DeviceState":
        """Copies of `state`'s arrays on the device (never aliases of the host arrays)."""
        xp = be.xp
        forces = None if state.forces is None else xp.array(state.forces, dtype=np.float64)
        return cls(be, xp.array(state.positions, dtype=np.float64), xp.array(state.velocities, dtype=np.float64),
                   forces, xp.array(state.masses, dtype=np.float64), xp.array(state.ids, dtype=np.int64),
                   xp.array(state.types, dtype=np.int32), np.array(state.types, dtype=np.int32),
                   np.array(state.ids, dtype=np.int64))

    @property
    def natoms(self) -> int:
        return int(self.positions.shape[0])

    def download(self, state: State) -> None:
        """Make state's positions, velocities, forces, neighbour record and device-held thermostat
        variables current (host copies)."""
        host = self.be.to_host
        state.positions = np.array(host(self.positions), dtype=np.float64)
        state.velocities = np.array(host(self.velocities), dtype=np.float64)
        if self.forces is not None:
            state.forces = np.array(host(self.forces), dtype=np.float64)
        if self.reference is not None:
            state.neighbor["positions"] = np.array(host(self.reference), dtype=np.float64)
        for key, value in self.thermostat.items():
            state.thermostat[key] = np.array(host(value), dtype=np.float64)


def tree_sum(be: Backend, rows) -> np.ndarray:
    """Column sums (k,) float64 on the host of a device array rows (n, k): a fixed-order tree
    (numdp.kernels.cuda.md.row_sums, SUM_CHUNK rows per thread per level), no atomics, so the
    same bits on every call."""
    return np.array(be.to_host(tree_sum_device(be, rows)), dtype=np.float64)


def tree_sum_device(be: Backend, rows):
    """`tree_sum` left on the device: a (k,) device array (to join other results in one copy);
    up to ONE_BLOCK_ROWS rows of up to SUM_COLUMNS columns one launch (`sum_block`)."""
    from ..kernels.cuda import launch, md

    n, k = rows.shape
    if n == 0:
        return be.xp.zeros(k)
    if 1 < n <= md.ONE_BLOCK_ROWS and k <= md.SUM_COLUMNS:   # all levels in one launch, the same bits
        out = be.xp.empty(k)
        md.sum_block[launch.one_block(n)](rows, out)
        return out
    return tree_levels_device(be, rows, 1)[0]


def tree_levels_device(be: Backend, rows, last: int):
    """The levels of `tree_sum`'s fixed-order tree over device rows (n, k) until at most `last`
    rows are left (device array (<= last, k); `rows` itself when n <= last): with last =
    SUM_CHUNK, what a one-thread kernel finishes as one more `row_sums` chunk (the Nosé-Hoover
    chain's `nose_hoover_chain_step`), with the full tree's bits."""
    from ..kernels.cuda import launch, md

    xp = be.xp
    k = rows.shape[1]
    while rows.shape[0] > last:
        nch = (rows.shape[0] + md.SUM_CHUNK - 1) // md.SUM_CHUNK
        out = xp.empty((nch, k))
        md.row_sums[launch.grid(nch)](rows, md.SUM_CHUNK, out)
        rows = out
    return rows


def tree_extreme_device(be: Backend, rows, npay: int, minimum: bool = False):
    """The record (k,) on the device of rows (n >= 1, k) float64 with the first largest (or,
    with `minimum`, smallest) column 0, columns [0, npay) taken from that row and columns
    [npay, k) the max of theirs: the levels of one fixed-order tree
    (numdp.kernels.cuda.md.extreme_rows), NumPy's argmax / argmin and max (NaN included); up to
    ONE_BLOCK_ROWS rows of up to EXTREME_COLUMNS columns, all levels in one launch
    (`extreme_block`, the same bits)."""
    from ..kernels.cuda import launch, md

    xp = be.xp
    k = rows.shape[1]
    if 1 < rows.shape[0] <= md.ONE_BLOCK_ROWS and k <= md.EXTREME_COLUMNS:   # all levels in one launch
        out = xp.empty(k)
        md.extreme_block[launch.one_block(rows.shape[0])](rows, npay, int(minimum), out)
        return out
    while rows.shape[0] > 1:
        nch = (rows.shape[0] + md.SUM_CHUNK - 1) // md.SUM_CHUNK
        out = xp.empty((nch, k))
        md.extreme_rows[launch.grid(nch)](rows, md.SUM_CHUNK, npay, int(minimum), out)
        rows = out
    return rows[0]


def first_flagged(be: Backend, flag) -> int:
    """Index of the first non-zero entry of a device int array, or -1 (argmax: first maximum)."""
    if flag.shape[0] == 0:
        return -1
    xp = be.xp
    i, value = (int(v) for v in be.to_host(xp.stack([xp.argmax(flag), xp.max(flag).astype(np.int64)])))
    return i if value else -1
