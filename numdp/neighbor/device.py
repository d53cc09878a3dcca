"""Neighbour search on an NVIDIA GPU: the DeePMD-kit list built from positions on the device.

    nl = build_nlist_cuda(positions, types, box, rcut, sel)    # DeviceNeighborList, arrays on the device

The same list as the CPU `build_nlist(extend(positions, types, box, rcut), rcut, sel, len(sel))`:
the same extended atoms in the same order (locals wrapped into the cell, then the ghost images
atom-major with shifts ascending), the same (type, 2**-26 Å distance, index) order in each slot
block, DeePMD-kit's truncation rule, the same overflow and max counts.  Kernels:
`numdp.kernels.cuda.neighbor` (their order and the determinism argument are in its docstring).

    plan = plan_search(ext_positions, ext_types, nloc, rcut, skin)          # at an MD rebuild
    nlist, stats, err = nlist_of_extended(ext_positions, ext_types, nloc, rcut, sel, plan)  # a step

The MD step's search: the cell grid and key capacity fixed at the ghost-shell rebuild, so that a
step reads nothing from the device; its statistics stay there until the step's totals are read
(`search_flags`).

Device memory, bytes per local atom (L = nall / nloc: about 1.2 for 10**6 water atoms, 1.9 at
12 288, up to ~8 for a cell just wider than the cutoff; nnei = sum(sel); ntypes types):
  kept (returned):   positions 24 L + types 4 L + mapping 4 L + nlist 4 nnei
  inputs:            28 when given as host arrays (the uploaded copy lives during the call)
  temporaries:       wrapping 56 (periodic) + cell list 44 L + centres 4 + counts 4 ntypes
                     + 8 per cell (cells of rcut / 2: about 0.4 cells per atom in water)
  candidate keys:    none in global memory: each centre's keys (8 bytes) and indices (4) live in
                     its block's shared memory (up to 3072 keys, 36 kB per block); only centres
                     with more than 3072 neighbours inside rcut use a global buffer, chunked over
                     centres to 64 MiB.
Water (sel [46, 92], L = 1.2): 590 kept (552 of it the nlist) + at most ~130 during the call.

Limits: rcut < 128 Å and ntypes <= 127 (the packed keys, `check_key_limits`); nall < 2**31 (int32
indices), as on the CPU: both break ties of equal (type, quantised distance) by the full extended
index (the device keeps it beside each key, the CPU keys carry an ordinal that points to it), so the
two give the same lists for any nall, equal to the packed keys' order whenever nall < 2**24.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from numdp.backend import DeviceConstants
from numdp.errors import InputError
from numdp.geometry import check_box, check_positions, check_types, face_distances
from numdp.neighbor.celllist import DEFAULT_REACH, grid_dims
from numdp.neighbor.extended import _REGION_MARGIN, _check_cutoff, check_pbc, complete_cell
from numdp.neighbor.nlist import _check_sel, check_key_limits

__all__ = ["DeviceNeighborList", "build_nlist_cuda", "nlist_of_extended", "plan_search", "search_flags", "SearchPlan",
           "extend_cuda", "is_device_array",
           "SHARED_CAPS"]

# Entries summed by one scan thread.
_SCAN_CHUNK = 32
# Largest array scanned by one launch of the single-block scan (32 entries per thread of 1024).
_SCAN_BLOCK_MAX = 32 * 1024
# Largest search (extended atoms, and cells + 1) whose counting sort is one launch of
# `sort_cells_block` instead of seven (tests lower it to 0 to compare with the seven launches).
ONE_BLOCK_SORT = _SCAN_BLOCK_MAX
# Key capacities (keys per centre) of the shared-memory formatting kernels, smallest first: a launch
# uses the smallest that holds every centre's neighbours within rcut (12 bytes a key: 3-36 kB,
# under the 48 kB of static shared memory per block).
SHARED_CAPS = (256, 1024, 3072)
# Extended atoms are indexed with int32.
MAX_NALL = 2**31 - 1
# Global-memory key buffer for centres beyond the largest shared capacity (bytes, all chunks alike).
_SCRATCH_BYTES = 64 << 20
# Threads per centre in the formatting kernel (one warp on a GPU; any value gives the same list).
THREADS_PER_CENTRE = 32
# The MD step's search arrays kept with its SearchPlan (`SearchPlan.buffers`): made at the plan's
# first step and reused by every step until the next rebuild, none allocated per step; False: fresh
# device arrays every step (tests compare the two: the same bits, every kernel writing its outputs
# in full before they are read in the same step, as it must for a fresh uninitialised array).
KEEP_SEARCH_BUFFERS = True


@dataclass
class DeviceNeighborList:
    """A DeePMD-kit neighbour list on the device (numba.cuda device arrays).

    positions: (nall, 3) float64 device array, Å: the local atoms (wrapped into the cell when
        periodic), then the ghost images.
    types: (nall,) int32 device array (negative = virtual atom).
    mapping: (nall,) int32 device array: local owner of every extended atom.
    nlist: (nloc, sum(sel)) int32 device array, DeePMD-kit layout: per-type blocks of sel[t] slots,
        each sorted by (distance quantised to 2**-26 Å, index), -1 padding.
    nloc: number of local atoms.
    overflow: (ntypes,) int64 host array: centre atoms whose type-t block was truncated.
    max_count: (ntypes,) int64 host array: largest number of type-t neighbours within rcut.
    """

    positions: object
    types: object
    mapping: object
    nlist: object
    nloc: int
    overflow: np.ndarray
    max_count: np.ndarray

    @property
    def nall(self) -> int:
        return int(self.positions.shape[0])

    @property
    def overflowed(self) -> bool:
        return bool(self.overflow.any())

    @property
    def nbytes(self) -> int:
        """Device bytes held by the four arrays."""
        return int(sum(a.size * a.dtype.itemsize for a in (self.positions, self.types, self.mapping,
                                                          self.nlist)))


def is_device_array(a) -> bool:
    """True for a CUDA device array (numba, CuPy, ... via __cuda_array_interface__; the simulator's
    fake device arrays under NUMBA_ENABLE_CUDASIM=1)."""
    from numba import cuda

    if hasattr(cuda, "is_cuda_array"):
        return bool(cuda.is_cuda_array(a))
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    return isinstance(a, FakeCUDAArray)


class _Buffers:
    """Device arrays by name for one kind of search (`SearchPlan.buffers`): `get` returns the kept
    array of that name, shape and dtype, allocating it the first time (or when the shape differs);
    with keep=False (`_FRESH`) a new numba device array every time."""

    def __init__(self, keep: bool):
        self._kept = {} if keep else None

    def get(self, name: str, shape, dtype):
        from numba import cuda

        shape = (int(shape),) if np.isscalar(shape) else tuple(int(n) for n in shape)
        if self._kept is None:
            return cuda.device_array(shape, dtype=dtype)
        a = self._kept.get(name)
        if a is None or a.shape != shape or a.dtype != np.dtype(dtype):
            a = self._kept[name] = cuda.device_array(shape, dtype=dtype)
        return a


_FRESH = _Buffers(False)   # the searches made once (build_nlist_cuda, plan_search)


_CONSTANTS = DeviceConstants()   # read-only device copies of small host arrays (`_device_constant`)


def _device_constant(a: np.ndarray):
    """A device copy of the small host array `a` that kernels only read, uploaded once per value
    (the MD step's per-call constants: sel, its offsets, a zero offset)."""
    from numba import cuda

    return _CONSTANTS.get((a.dtype.str, a.shape, a.tobytes()), lambda: cuda.to_device(a))


def _grid(n: int) -> tuple[int, int]:
    """numdp.kernels.cuda.launch.grid (imported on use: this module loads without numba.cuda)."""
    from numdp.kernels.cuda.launch import grid

    return grid(n)


def _scan_threads() -> int:
    """Threads of the single-block scan: a full block on a GPU; 4 under the simulator, which runs
    every thread in Python (the result does not depend on it)."""
    from numba import config
    from numdp.kernels.cuda import neighbor as kc

    return 4 if getattr(config, "ENABLE_CUDASIM", 0) else kc.SCAN_BLOCK_THREADS


def _exclusive_scan(values, total: bool = True, bufs: _Buffers = _FRESH, name: str = "scan") -> int | None:
    """Exclusive prefix sums of a 1-D integer device array, in place; returns the total (host int;
    None without `total`: no copy to the host, the MD step's scans need none).

    Up to _SCAN_BLOCK_MAX entries (32 per thread of a 1024-thread block): one launch of
    `scan_block`.  Beyond: chunks of _SCAN_CHUNK entries, one thread each: chunk sums, the sums
    scanned recursively (one block up to ~10**6 entries), then each chunk written from its
    offset.  Integer sums: exact, the same result either way.  Scratch arrays from `bufs`, named
    after `name` (one name per scanned array of a search).
    """
    from numdp.kernels.cuda import neighbor as kc

    n = values.shape[0]
    if n == 0:
        return 0 if total else None
    if n <= _SCAN_BLOCK_MAX:
        tot = bufs.get(name + " total", 1, np.int64)
        kc.scan_block[1, _scan_threads()](values, tot)
        return int(tot.copy_to_host()[0]) if total else None
    nch = (n + _SCAN_CHUNK - 1) // _SCAN_CHUNK
    sums = bufs.get(name + " sums", nch, values.dtype)
    kc.scan_chunk_sums[_grid(nch)](values, _SCAN_CHUNK, sums)
    total = _exclusive_scan(sums, total, bufs, name + " sums")
    kc.scan_chunk_write[_grid(nch)](values, _SCAN_CHUNK, sums, values)
    return total


def _inputs(positions, types, ntypes: int):
    """(device positions (nloc, 3) float64, device types (nloc,) int32, nloc), validated."""
    from numba import cuda
    from numdp.kernels.cuda import neighbor as kc

    if is_device_array(positions):
        x = positions if hasattr(positions, "copy_to_host") else cuda.as_cuda_array(positions)
        if x.ndim != 2 or x.shape[1] != 3 or x.dtype != np.float64:
            raise InputError(f"positions: expected a (natoms, 3) float64 array, got {x.shape} {x.dtype}")
    else:
        x = cuda.to_device(check_positions(positions))
    nloc = int(x.shape[0])
    if is_device_array(types):
        t = types if hasattr(types, "copy_to_host") else cuda.as_cuda_array(types)
        if t.shape != (nloc,) or t.dtype != np.int32:
            raise InputError(f"types: expected a ({nloc},) int32 array, got {t.shape} {t.dtype}")
    else:
        t = cuda.to_device(check_types(types, nloc))
    if nloc:
        bad = cuda.to_device(np.full(2, nloc, dtype=np.int64))
        kc.first_bad_atom[_grid(nloc)](x, t, ntypes, bad)
        b = bad.copy_to_host()
        if b[0] < nloc:
            row = x[int(b[0])].copy_to_host().tolist()
            raise InputError(f"positions: atom {int(b[0])} has a non-finite coordinate {row}")
        if b[1] < nloc:
            raise InputError(
                f"atom {int(b[1])} has type {int(t[int(b[1])])}, but the model has {ntypes} types"
            )
    return x, t, nloc


def extend_cuda(positions, types, box, cutoff: float, pbc=None):
    """Extended atoms on the device as `build_nlist_cuda` forms them (locals wrapped into the cell,
    then the ghost images within `cutoff` Å of the cell): (positions (nall, 3) float64, types
    (nall,) int32, mapping (nall,) int32 owner of each) device arrays.  positions (nloc, 3) float64
    and types (nloc,) int32 are device arrays, not validated; box (3, 3) host array or None; pbc
    three booleans (None: all True with a box), as for `build_nlist_cuda`."""
    return _extended(positions, types, int(positions.shape[0]), box, float(cutoff), pbc)[:3]


def _check_nall(nall: int, cutoff: float, widths) -> None:
    if nall > MAX_NALL:
        raise InputError(
            f"the periodic system needs {nall} extended atoms (local + ghost images) for a cutoff of "
            f"{cutoff} A in a cell with face widths {np.round(widths, 4).tolist()} A; at most {MAX_NALL} "
            f"are supported on the device (int32 indices)"
        )


def _extended(x, t, nloc: int, box, cutoff: float, pbc=None):
    """Extended atoms on the device: (positions (nall, 3), types (nall,), mapping (nall,), nall).
    With mixed pbc (numdp.neighbor.extended.extend): no wrapping and no images along a
    non-periodic cell vector (a zero-length one is completed first, `complete_cell`)."""
    from numba import cuda
    from numdp.kernels.cuda import neighbor as kc

    if box is not None and pbc is not None:
        box = box.copy_to_host() if hasattr(box, "copy_to_host") else box
        periodic = check_pbc(pbc, box)
        if not any(periodic):
            box = None
        elif not all(periodic):
            return _images(x, t, nloc, complete_cell(box, periodic), cutoff, periodic)
    if box is None:
        pos = cuda.device_array((nloc, 3), dtype=np.float64)
        typ = cuda.device_array(nloc, dtype=np.int32)
        mp = cuda.device_array(nloc, dtype=np.int32)
        kc.copy_locals[_grid(nloc)](x, t, pos, typ, mp)
        return pos, typ, mp, nloc
    return _images(x, t, nloc, box.copy_to_host() if hasattr(box, "copy_to_host") else box, cutoff)


def _images(x, t, nloc: int, box, cutoff: float, periodic=None):
    """`_extended` with a cell: the locals wrapped into `box` (3, 3) host array, then their ghost
    images within `cutoff` Å.  periodic None: periodic along all three cell vectors (kernel
    wrap_count_images); three booleans: along those only (wrap_count_images_mixed, no wrapping
    and no images along an open vector)."""
    from numba import cuda
    from numdp.kernels.cuda import neighbor as kc

    b = check_box(box)
    h = face_distances(b)
    reach = cutoff * (1.0 + _REGION_MARGIN) / h
    if periodic is not None:
        reach = np.where(np.array(periodic), reach, 0.0)
    lo = cuda.to_device(np.ascontiguousarray(-reach))
    hi = cuda.to_device(np.ascontiguousarray(1.0 + reach))
    d_box = cuda.to_device(b)
    d_inv = cuda.to_device(np.ascontiguousarray(np.linalg.inv(b)))
    frac = cuda.device_array((nloc, 3), dtype=np.float64)
    xw = cuda.device_array((nloc, 3), dtype=np.float64)
    excl = cuda.device_array(nloc, dtype=np.int64)
    if periodic is None:
        kc.wrap_count_images[_grid(nloc)](x, d_inv, d_box, lo, hi, frac, xw, excl)
    else:
        kc.wrap_count_images_mixed[_grid(nloc)](x, d_inv, d_box, cuda.to_device(np.array(periodic, dtype=np.int32)),
                                                lo, hi, frac, xw, excl)
    nall = nloc + _exclusive_scan(excl)
    _check_nall(nall, cutoff, h)
    pos = cuda.device_array((nall, 3), dtype=np.float64)
    typ = cuda.device_array(nall, dtype=np.int32)
    mp = cuda.device_array(nall, dtype=np.int32)
    kc.fill_images[_grid(nloc)](xw, frac, t, d_box, lo, hi, excl, pos, typ, mp)
    return pos, typ, mp, nall


def _fill(grid, counts, nlist, err, need: int, caps, nthr: int, local: bool = False,
          bufs: _Buffers = _FRESH) -> None:
    """Launch the formatting kernel for every row of nlist with a key buffer of at least `need`
    keys: the smallest shared-memory capacity that holds them, else a global buffer chunked over
    centres.  grid[7] holds the sorted positions of the centres; row m of nlist is centre m's when
    `local` (`DeviceRows`), else each centre's row is its atom index (the whole list).  The
    global key buffers from `bufs`."""
    from numdp.kernels.cuda import neighbor as kc

    nrow = nlist.shape[0]
    if nrow == 0:
        return
    cap = next((c for c in caps if c >= need), None)
    if cap is not None:
        kc.fill_nlist_shared(cap)[nrow, nthr](*grid[:8], 0, int(local), *grid[8:], counts, nlist, err)
        return
    need = max(1, need)
    chunk = max(1, min(nrow, _SCRATCH_BYTES // (12 * need)))
    gkeys = bufs.get("global keys", (chunk, need), np.uint64)
    gjs = bufs.get("global key atoms", (chunk, need), np.int32)
    for m0 in range(0, nrow, chunk):
        nb = min(chunk, nrow - m0)
        kc.fill_nlist_global[nb, nthr](*grid[:8], m0, int(local), *grid[8:], counts, nlist, err, gkeys, gjs)


def build_nlist_cuda(positions, types, box, rcut, sel, *, pbc=None, reach: int = DEFAULT_REACH,
                     threads_per_centre: int = THREADS_PER_CENTRE,
                     shared_caps=SHARED_CAPS) -> DeviceNeighborList:
    """Build the DeePMD-kit neighbour list of one configuration on the device.

    Args:
        positions: (nloc, 3) Å, a host (NumPy) or device array (device: float64).
        types: (nloc,) integer atom types (device: int32); negative = virtual atom (never a
            neighbour, empty row).
        box: (3, 3) or (9,) cell, rows = cell vectors, Å (host or device); None = non-periodic.
        rcut: cutoff radius, Å (< 128); every periodic image within rcut is a neighbour, whatever
            the tilt and however small the cell.
        sel: (ntypes,) slots per type (ntypes = len(sel) <= 127).
        pbc: three booleans, periodicity along each cell vector (None: all True with a box); a
            slab (True, True, False) has no images across its open faces, as the CPU `extend`.
        reach, threads_per_centre, shared_caps: tuning knobs (stencil half-width in cells, threads
            of the formatting block, shared-memory key capacities); the list never depends on them.
    Returns:
        `DeviceNeighborList` (the arrays stay on the device; overflow and max_count on the host).
    Raises:
        InputError: bad shapes, non-finite coordinates, a type >= len(sel), a singular cell, a
            non-positive rcut, rcut >= 128 Å or more than 127 types (`check_key_limits`), or more
            than 2**31 - 1 extended atoms.
        RuntimeError: a centre's key count changed between two launches (a bug, never a
            property of the input).
    """
    from numba import cuda

    rc = _check_cutoff(rcut, "rcut")
    s_arr = np.asarray(sel)
    if s_arr.ndim != 1 or s_arr.size == 0:
        raise InputError(f"sel: expected one entry per atom type, got {s_arr.tolist()}")
    ntypes = int(s_arr.shape[0])
    s = _check_sel(s_arr, ntypes)
    check_key_limits(0, rc, ntypes)
    if int(reach) < 1 or int(threads_per_centre) < 1:
        raise ValueError(f"reach and threads_per_centre must be >= 1, got {reach}, {threads_per_centre}")
    sec = np.zeros(ntypes + 1, dtype=np.int64)
    np.cumsum(s, out=sec[1:])
    nnei = int(sec[-1])

    x, t, nloc = _inputs(positions, types, ntypes)
    if box is not None and nloc == 0:
        check_box(box.copy_to_host() if hasattr(box, "copy_to_host") else box)
    if nloc == 0:
        return DeviceNeighborList(
            positions=cuda.device_array((0, 3), dtype=np.float64),
            types=cuda.device_array(0, dtype=np.int32), mapping=cuda.device_array(0, dtype=np.int32),
            nlist=cuda.device_array((0, nnei), dtype=np.int32), nloc=0,
            overflow=np.zeros(ntypes, dtype=np.int64), max_count=np.zeros(ntypes, dtype=np.int64),
        )
    pos, typ, mp, nall = _extended(x, t, nloc, box, rc, pbc)
    nlist, max_count, overflow = _search(pos, typ, nloc, rc, s, sec, int(reach), int(threads_per_centre),
                                         shared_caps)
    return DeviceNeighborList(positions=pos, types=typ, mapping=mp, nlist=nlist, nloc=nloc,
                              overflow=overflow, max_count=max_count)


@dataclass(frozen=True)
class _CellGrid:
    """A cell grid on the device: origin lo (3,) float64 Å, cells per Å inv_width (3,) float64,
    cell counts nbins (3,) int64 (device arrays); ncell = prod(nbins) (host)."""

    lo: object
    inv_width: object
    nbins: object
    ncell: int


def _bounds(pos) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) (3,) host arrays, Å: the bounding box of the device positions pos (nall >= 1, 3)
    (one launch and one synchronising read)."""
    from numba import cuda
    from numdp.kernels.cuda import neighbor as kc

    lohi = cuda.to_device(np.array([np.inf] * 3 + [-np.inf] * 3))
    nblock, tpb = _grid(int(pos.shape[0]))
    kc.bounds[min(nblock, 1024), tpb](pos, lohi)
    lh = lohi.copy_to_host()
    return lh[:3].copy(), lh[3:].copy()


def _cell_grid(lo, hi, nall: int, rc: float, reach: int) -> _CellGrid:
    """The grid of the CPU search (`celllist.grid_dims`) over [lo, hi] (Å) for nall atoms and a
    search radius rc (Å), uploaded (host arithmetic on 6 numbers, three small copies)."""
    from numba import cuda

    lo = np.ascontiguousarray(lo, dtype=np.float64)
    inv_width, nbins = grid_dims(lo, np.asarray(hi, dtype=np.float64), max(nall, 1), rc, reach)
    return _CellGrid(cuda.to_device(lo), cuda.to_device(np.ascontiguousarray(inv_width)),
                     cuda.to_device(nbins), int(np.prod(nbins)))


def _sorted_cells(pos, typ, nloc: int, cg: _CellGrid, stats, err, bufs: _Buffers = _FRESH):
    """Counting sort of the extended atoms (pos (nall, 3), typ (nall,)) into the cells of `cg`, and
    the sorted positions of the first nloc (the centres); zeroes `stats` and `err` in the same
    launch as the cell counters.  Up to ONE_BLOCK_SORT atoms and cells one launch
    (`sort_cells_block`), else seven.  Returns (spos, sidx, stype, scell, cell_start, centres),
    all from `bufs` (int32 but spos (nall, 3) float64 Å; cell_start (ncell + 1,), centres
    (nloc,), the rest (nall,))."""
    from numdp.kernels.cuda import neighbor as kc

    nall = int(pos.shape[0])
    cell = bufs.get("cell", nall, np.int32)
    cell_start = bufs.get("cell start", cg.ncell + 1, np.int32)
    cursor = bufs.get("cursor", cg.ncell, np.int32)
    spos = bufs.get("sorted positions", (nall, 3), np.float64)
    sidx = bufs.get("sorted indices", nall, np.int32)
    stype = bufs.get("sorted types", nall, np.int32)
    scell = bufs.get("sorted cells", nall, np.int32)
    slot = bufs.get("centre slots", nall, np.int32)
    centres = bufs.get("centres", nloc, np.int32)
    if max(nall, cg.ncell + 1) <= ONE_BLOCK_SORT:
        kc.sort_cells_block[1, _scan_threads()](pos, typ, nloc, cg.lo, cg.inv_width, cg.nbins, cell, cell_start,
                                                cursor, stats, err, spos, sidx, stype, scell, slot, centres)
        return spos, sidx, stype, scell, cell_start, centres
    kc.clear_counters[_grid(max(cg.ncell + 1, int(stats.shape[0]), 1))](cell_start, cursor, stats, err)
    kc.bin_count[_grid(nall)](pos, cg.lo, cg.inv_width, cg.nbins, cell, cell_start)
    _exclusive_scan(cell_start, False, bufs, "cell start")
    kc.bin_scatter[_grid(nall)](pos, typ, cell, cell_start, cursor, spos, sidx, stype, scell)
    kc.mark_centres[_grid(nall)](sidx, nloc, slot)
    _exclusive_scan(slot, False, bufs, "centre slots")
    kc.compact_centres[_grid(nall)](sidx, nloc, slot, centres)
    return spos, sidx, stype, scell, cell_start, centres


def _launch_stats(counts, sel_d, stats) -> None:
    """stats (2 ntypes,) int64, zeroed: max_count then overflow per type of counts (nloc, ntypes)."""
    from numdp.kernels.cuda import neighbor as kc

    ntypes = int(counts.shape[1])
    nblock, tpb = _grid(max(int(counts.shape[0]), 1))
    kc.count_stats[min(nblock, 1024), tpb](counts, sel_d, stats[:ntypes], stats[ntypes:])


def _search(pos, typ, nloc: int, rc: float, s, sec, reach: int, threads_per_centre: int, shared_caps):
    """(nlist, max_count, overflow) of the first nloc of the extended atoms (pos, typ) on the device,
    one configuration (`build_nlist_cuda`): the grid sized from the atoms' bounding box (a host
    read), and a relaunch with a larger key buffer when a centre's keys overflow (a host read)."""
    from numba import cuda

    nall = int(pos.shape[0])
    ntypes = int(s.shape[0])
    lo, hi = _bounds(pos)
    cg = _cell_grid(lo, hi, nall, rc, reach)
    stats = cuda.device_array(2 * ntypes, dtype=np.int64)
    err = cuda.device_array(1, dtype=np.int32)
    sorted_cells = _sorted_cells(pos, typ, nloc, cg, stats, err)
    grid, counts, nlist = _fill_args(sorted_cells, cg, reach, nloc, rc, s, sec)
    # keys -> rank sort -> slots, one block per centre; a centre whose keys overflow the buffer
    # reports its count and the launch is repeated with a buffer that holds the largest
    caps = sorted(int(c) for c in shared_caps)
    need = 0
    for attempt in range(2):
        if attempt:
            err = cuda.to_device(np.zeros(1, dtype=np.int32))
        _fill(grid, counts, nlist, err, need, caps, threads_per_centre)
        need = int(err.copy_to_host()[0])
        if need == 0:
            break
    else:
        raise RuntimeError(f"neighbour search: a centre has {need} keys after the buffer was sized")
    _launch_stats(counts, grid[9], stats)
    got = stats.copy_to_host()
    return nlist, got[:ntypes].copy(), got[ntypes:].copy()


def _fill_args(sorted_cells, cg: _CellGrid, reach: int, nloc: int, rc: float, s, sec, whole: bool = True,
               bufs: _Buffers = _FRESH):
    """(grid arguments of the formatting kernels, counts (nloc, ntypes) int32, nlist (nloc,
    sum(sel)) int32 or None unless `whole`), the last two from `bufs`."""

    spos, sidx, stype, scell, cell_start, centres = sorted_cells
    grid = (spos, sidx, stype, scell, cell_start, cg.nbins, reach, centres, rc * rc,
            _device_constant(np.ascontiguousarray(s, dtype=np.int64)),
            _device_constant(np.ascontiguousarray(sec, dtype=np.int64)))
    counts = bufs.get("counts", (nloc, int(s.shape[0])), np.int32)
    nlist = bufs.get("nlist", (nloc, int(sec[-1])), np.int32) if whole else None
    return grid, counts, nlist


# Relative widening of the radius within which an MD rebuild counts the keys of the steps that
# follow (`plan_search`): the rebuild test's bound (a pair within rcut now was within rcut + skin
# at the rebuild) holds in exact arithmetic; positions and distances carry round-off of ~1e-16
# relative, far inside this margin.
_PLAN_MARGIN = 1e-8


@dataclass(frozen=True)
class SearchPlan:
    """What the per-step neighbour search of an MD run (`nlist_of_extended`) fixes at a ghost-shell
    rebuild, so that a step reads nothing from the device to size its launches (`plan_search`).

    lo, hi: (3,) host arrays, Å: the corners of the cell grid (the extended atoms' bounding box at
        the rebuild, widened by skin / 2 on every side).
    grid: that grid on the device, for cells of rcut / reach.
    reach: stencil half-width in cells.
    need: key capacity per centre: the largest number of extended atoms within rcut + skin of a
        centre at the rebuild, an upper bound of its neighbours within rcut until the next
        rebuild (numdp.md.forces: the rebuild test).
    caps: shared-memory key capacities (`SHARED_CAPS`); the fill uses the smallest >= need.
    kept: the steps' device arrays (`buffers`), per kind of search.
    """

    lo: np.ndarray
    hi: np.ndarray
    grid: _CellGrid
    reach: int
    need: int
    caps: tuple
    kept: dict = field(default_factory=dict, compare=False, repr=False)

    def buffers(self, *kind) -> _Buffers:
        """The device arrays of the steps' searches of one `kind` (nloc, nall, sel, whole list or
        rows) until the next rebuild: every size is fixed by the plan, so each step reuses the
        arrays of the first (KEEP_SEARCH_BUFFERS; else fresh ones).  A kind's arrays are
        overwritten by its next search: a list (and its stats and err) is valid until the next
        search of the same kind, a step's lists of different sels live side by side."""
        if not KEEP_SEARCH_BUFFERS:
            return _FRESH
        return self.kept.setdefault(kind, _Buffers(True))


def plan_search(ext_positions, ext_types, nloc: int, rcut: float, skin: float, *,
                reach: int = DEFAULT_REACH, shared_caps=SHARED_CAPS) -> SearchPlan:
    """The `SearchPlan` of the extended atoms of an MD rebuild (device arrays: positions (nall, 3)
    float64 Å, the ghost shell of width rcut + skin; types (nall,) int32; the first nloc are the
    centres).  Two host reads, at the rebuild only: the bounding box and the largest count.

    The grid: between rebuilds an atom moves by less than skin / 2 (fixed cell; the rebuild test),
    and so do its images, so the grid over the bounding box widened by skin / 2 holds every
    extended atom of every step until the next rebuild, except where a barostat's cell change
    carries images farther (the test bounds the cell's shrinking, not its growth).  An atom
    outside the grid is binned into the nearest edge cell and the list stays exact
    (numdp.kernels.cuda.neighbor.bin_count says why); it only makes the edge cells fuller.

    The key capacity: the neighbours of each centre within (rcut + skin) (1 + 1e-8), counted by
    `count_within` on a grid of cells of that radius / reach (same bounding box)."""
    from numba import cuda
    from numdp.kernels.cuda import neighbor as kc

    nall = int(ext_positions.shape[0])
    reach = int(reach)
    if nall:
        lo, hi = _bounds(ext_positions)
    else:
        lo, hi = np.zeros(3), np.zeros(3)
    need = 0
    if nloc:
        radius = (float(rcut) + float(skin)) * (1.0 + _PLAN_MARGIN)
        cg = _cell_grid(lo, hi, nall, radius, reach)
        stats = cuda.device_array(2, dtype=np.int64)
        err = cuda.device_array(1, dtype=np.int32)
        spos, _, stype, scell, cell_start, centres = _sorted_cells(ext_positions, ext_types, nloc, cg, stats, err)
        counts = cuda.device_array((nloc, 1), dtype=np.int32)
        kc.count_within[_grid(nloc)](spos, stype, scell, cell_start, cg.nbins, reach, centres, radius * radius,
                                     counts)
        _launch_stats(counts, _device_constant(np.array([np.iinfo(np.int64).max])), stats)
        need = int(stats.copy_to_host()[0])
    margin = 0.5 * float(skin)
    glo, ghi = lo - margin, hi + margin
    return SearchPlan(lo=glo, hi=ghi, grid=_cell_grid(glo, ghi, nall, float(rcut), reach), reach=reach, need=need,
                      caps=tuple(sorted(int(c) for c in shared_caps)))


def nlist_of_extended(ext_positions, ext_types, nloc: int, rcut: float, sel, plan: SearchPlan,
                      threads_per_centre: int = THREADS_PER_CENTRE):
    """The DeePMD-kit list of the first `nloc` of given extended atoms (device arrays: positions
    (nall, 3) float64 Å, types (nall,) int32), within rcut, as `build_nlist_cuda` forms it after its
    own ghost images: for an MD step whose ghost shell (of width rcut + skin) was built at the last
    rebuild and moved along since (numdp.md.device), with the grid and key capacity of that
    rebuild's `plan` (nall unchanged since).  No host read and no copy: one pass of launches.

    Returns (nlist (nloc, sum(sel)) int32, stats (2 ntypes,) int64, err (1,) int32), device arrays:
    stats = max_count then overflow per type, err = 0 unless a centre had more keys than the
    plan's capacity (a bug: `search_flags` raises).  Read stats and err with the step's other
    numbers (`search_flags` decodes them).  Inputs are not validated; threads_per_centre is a
    tuning knob (the list never depends on it).  The arrays are the plan's (`SearchPlan.buffers`):
    valid until the next call with the same plan, nloc, nall and sel."""
    s = np.asarray(sel, dtype=np.int64)
    ntypes = int(s.shape[0])
    sec = np.zeros(ntypes + 1, dtype=np.int64)
    np.cumsum(s, out=sec[1:])
    bufs = plan.buffers("list", int(nloc), int(ext_positions.shape[0]), tuple(s.tolist()))
    stats = bufs.get("stats", 2 * ntypes, np.int64)
    err = bufs.get("err", 1, np.int32)
    sorted_cells = _sorted_cells(ext_positions, ext_types, int(nloc), plan.grid, stats, err, bufs)
    grid, counts, nlist = _fill_args(sorted_cells, plan.grid, plan.reach, int(nloc), float(rcut), s, sec,
                                     bufs=bufs)
    if nloc:
        _fill(grid, counts, nlist, err, plan.need, plan.caps, int(threads_per_centre), bufs=bufs)
        _launch_stats(counts, grid[9], stats)
    return nlist, stats, err


class DeviceRows:
    """The DeePMD-kit list of an MD call's extended atoms, formatted chunk by chunk as the CUDA
    evaluator asks for its chunks' rows (`rows`), instead of stored whole: the whole list holds
    4 sum(sel) bytes per atom (552 for water), this keeps the call's cell list of the extended
    atoms (~60 B per extended atom), each centre's neighbour counts (4 ntypes B) and closest-pair
    record (24 B), and one (chunk, sum(sel)) int32 buffer.  Made by `rows_of_extended`; the
    evaluator (numdp.model.cuda_evaluator.compute_device_shared) asks for every centre once per
    model group; `finish` then launches the statistics.  A row is the row of `nlist_of_extended`
    bit for bit (the same formatting kernel for the same centre).

    shape: (nloc, sum(sel)), as the list it stands for.  stats, err: as `nlist_of_extended`'s,
    valid after `finish`.  closest: (nloc, 3) float64 records of
    numdp.kernels.cuda.md.closest_records for every centre whose rows were formed.  Its arrays
    come from `bufs` (the plan's: reused by the next DeviceRows of the same kind).
    """

    def __init__(self, grid, counts, stats, err, where, nloc: int, nnei: int, need: int, caps, nthr: int,
                 ext_positions, bufs: _Buffers = _FRESH):
        self._grid_args = grid
        self.counts = counts
        self.stats = stats
        self.err = err
        self._where = where
        self.shape = (int(nloc), int(nnei))
        self._need = int(need)
        self._caps = caps
        self._nthr = int(nthr)
        self._ext_positions = ext_positions
        self._bufs = bufs
        self.closest = bufs.get("closest", (max(1, int(nloc)), 3), np.float64)
        self._buf = None
        self._centres = None
        self.rows_formed = 0

    def rows(self, atoms):
        """(na, sum(sel)) int32 device array: the rows of the centre atoms `atoms` ((na,) int64
        device array of local indices), in that order; their counts and closest records are kept.
        The buffers (rows and the centres' sorted positions) are reused by the next call (the
        launches are ordered on one stream)."""
        from numdp.kernels.cuda import neighbor as kc
        from numdp.kernels.cuda.md import closest_records_rows

        na = int(atoms.shape[0])
        if self._buf is None or self._buf.shape[0] < na:
            self._buf = self._bufs.get("rows", (na, self.shape[1]), np.int32)
            self._centres = self._bufs.get("row centres", na, np.int32)
        out = self._buf[:na]
        if na:
            centres = self._centres[:na]
            kc.chunk_centres[_grid(na)](self._where, atoms, centres)
            g = self._grid_args
            _fill((*g[:7], centres, *g[8:]), self.counts, out, self.err, self._need, self._caps, self._nthr,
                  local=True, bufs=self._bufs)
            closest_records_rows[_grid(na)](self._ext_positions, out, atoms, g[10], self.closest)
        self.rows_formed += na
        return out

    def finish(self) -> None:
        """Launch the list's statistics (max count and overflow per type) into `stats`, once every
        centre's rows were formed (RuntimeError otherwise: a caller's bug)."""
        if self.rows_formed < self.shape[0]:
            raise RuntimeError(f"DeviceRows.finish: rows of {self.rows_formed} of {self.shape[0]} centres formed")
        if self.shape[0]:
            _launch_stats(self.counts, self._grid_args[9], self.stats)


def rows_of_extended(ext_positions, ext_types, nloc: int, rcut: float, sel, plan: SearchPlan,
                     threads_per_centre: int = THREADS_PER_CENTRE) -> DeviceRows:
    """`nlist_of_extended` without the whole list: a `DeviceRows` that formats the rows of chunks
    of centres when asked (same arguments).  One pass of launches, no host read; the arrays are
    the plan's, valid until the next call with the same plan, nloc, nall and sel."""
    from numdp.kernels.cuda import neighbor as kc

    s = np.asarray(sel, dtype=np.int64)
    ntypes = int(s.shape[0])
    sec = np.zeros(ntypes + 1, dtype=np.int64)
    np.cumsum(s, out=sec[1:])
    nloc = int(nloc)
    bufs = plan.buffers("rows", nloc, int(ext_positions.shape[0]), tuple(s.tolist()))
    stats = bufs.get("stats", 2 * ntypes, np.int64)
    err = bufs.get("err", 1, np.int32)
    sorted_cells = _sorted_cells(ext_positions, ext_types, nloc, plan.grid, stats, err, bufs)
    grid, counts, _ = _fill_args(sorted_cells, plan.grid, plan.reach, nloc, float(rcut), s, sec, whole=False,
                                 bufs=bufs)
    where = bufs.get("where", max(1, nloc), np.int32)
    if nloc:
        kc.centre_slots[_grid(nloc)](grid[1], grid[7], where)
    return DeviceRows(grid, counts, stats, err, where, nloc, int(sec[-1]), plan.need, plan.caps,
                      int(threads_per_centre), ext_positions, bufs)


def search_flags(values, ntypes: int, plan: SearchPlan | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(max_count, overflow) (ntypes,) int64 host arrays from the host copy `values` of
    `nlist_of_extended`'s (stats, err) (2 ntypes + 1 numbers, any numeric dtype).

    Raises:
        RuntimeError: err is set: a centre had more neighbours within rcut than the key capacity
            sized at the rebuild (the rebuild test's bound broken: a bug, never the input's fault;
            its row was left empty, -1).
    """
    v = np.asarray(values)
    err = int(v[2 * ntypes])
    if err:
        cap = "" if plan is None else f" (bound {plan.need} at the rebuild)"
        raise RuntimeError(f"neighbour search: a centre has {err} neighbours within rcut, more than the key buffer "
                           f"sized at the ghost-shell rebuild holds{cap}; a bug")
    return v[:ntypes].astype(np.int64), v[ntypes:2 * ntypes].astype(np.int64)
