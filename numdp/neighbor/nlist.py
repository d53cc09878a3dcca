"""DeePMD-kit neighbour lists: per-type slot blocks sorted by distance (reference §1.3, §10.1).

Layout of one row (N_c = sum(sel) slots): [type-0 block of sel[0] slots | type-1 block | ...]; each
block lists the type-t neighbours with r <= rcut in ascending (distance, index) order, distance
quantised to 2**-26 Å as in DeePMD-kit's packed 64-bit sort keys, then -1 padding.  When a block
has more than sel[t] neighbours the farthest are dropped (DeePMD-kit's C++ rule: keep the first
sel[t] in sorted order); `NeighborList` counts such overflows, `report_overflow` warns about them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from numdp.errors import InputError
from numdp.neighbor.celllist import Candidates, build_grid
from numdp.neighbor.extended import MAX_EXTENDED, Extended, _check_cutoff, check_extended_positions
from numdp.kernels.cpu import neighbor as _k
from numdp.neighbor.threads import one_launcher

__all__ = [
    "NeighborList",
    "NeighborOverflowWarning",
    "build_nlist",
    "format_nlist",
    "report_overflow",
    "check_key_limits",
]


class NeighborOverflowWarning(UserWarning):
    """Some centre atoms had more neighbours of a type than `sel` reserves; the farthest were dropped."""


@dataclass
class NeighborList:
    """Formatted neighbour list.

    nlist: (nloc, sum(sel)) int32 extended indices, -1 padding (layout: module docstring).
    overflow: (ntypes,) int64 number of centre atoms whose type-t block was truncated.
    max_count: (ntypes,) int64 largest number of type-t neighbours within rcut of any centre atom.
    """

    nlist: np.ndarray
    overflow: np.ndarray
    max_count: np.ndarray

    @property
    def overflowed(self) -> bool:
        """True when at least one block was truncated."""
        return bool(self.overflow.any())


def check_key_limits(nall: int, rcut: float, ntypes: int) -> None:
    """Raise `InputError` when the packed sort keys or the int32 lists cannot represent the problem.

    Limits: extended atoms nall < 2**31 (int32 indices; the keys' 24-bit index field holds each
    neighbour's ordinal among its centre's keys, so it does not bound nall), rcut < 128 Å,
    ntypes <= 127 (reference §10.1).
    """
    if nall > MAX_EXTENDED:
        raise InputError(
            f"{nall} extended atoms (local + ghost); neighbour lists hold int32 indices, so at most "
            f"{MAX_EXTENDED} are supported: split the system over more domains (mpiexec)"
        )
    if not rcut < _k.KEY_MAX_DIST:
        raise InputError(
            f"rcut = {rcut} A is too large: neighbour distances must be below {_k.KEY_MAX_DIST:g} A "
            f"(they are packed into 33 bits of 2**-26 A)"
        )
    if not 1 <= ntypes <= _k.KEY_MAX_TYPES - 1:
        raise InputError(f"ntypes = {ntypes}: between 1 and {_k.KEY_MAX_TYPES - 1} atom types are supported")


def slot_offsets(sel) -> np.ndarray:
    """(ntypes+1,) int64 first slot of each neighbour type's block in an nlist row ("sec"):
    0, sel[0], sel[0]+sel[1], ...; the last entry is the row length nnei."""
    sec = np.zeros(len(sel) + 1, dtype=np.int64)
    np.cumsum(np.asarray(sel, dtype=np.int64), out=sec[1:])
    return sec


def _check_sel(sel, ntypes: int) -> np.ndarray:
    s = np.asarray(sel)
    if s.ndim != 1 or s.shape[0] != ntypes:
        raise InputError(f"sel: expected {ntypes} entries (one per type), got {s.tolist()}")
    if s.size and (not np.issubdtype(s.dtype, np.integer) or s.min() < 0):
        raise InputError(f"sel: entries must be non-negative integers, got {s.tolist()}")
    return np.ascontiguousarray(s, dtype=np.int64)


def _prepare_slots(ext: Extended, rc: float, sel, ntypes: int):
    """Validate (key limits, sel, types) and allocate: (sel, sec, nlist, counts)."""
    check_key_limits(ext.nall, rc, ntypes)
    s = _check_sel(sel, ntypes)
    if ext.nall and int(ext.types.max()) >= ntypes:
        bad = int(np.flatnonzero(ext.types >= ntypes)[0])
        raise InputError(
            f"atom {int(ext.mapping[bad])} has type {int(ext.types[bad])}, but the model has {ntypes} types"
        )
    sec = slot_offsets(s)
    nlist = np.empty((ext.nloc, int(sec[-1])), dtype=np.int32)
    counts = np.empty((ext.nloc, ntypes), dtype=np.int32)  # transient: 4 bytes per atom and type
    return s, sec, nlist, counts


def _neighbor_list(nlist: np.ndarray, counts: np.ndarray, sel: np.ndarray) -> NeighborList:
    overflow = (counts > sel).sum(axis=0).astype(np.int64)
    max_count = counts.max(axis=0) if nlist.shape[0] else np.zeros(sel.shape[0], dtype=np.int64)
    return NeighborList(nlist=nlist, overflow=overflow, max_count=max_count.astype(np.int64))


def format_nlist(
    ext: Extended, cand: Candidates, rcut, sel, ntypes: int, positions=None
) -> NeighborList:
    """Format candidate pairs into DeePMD-kit slots for a cutoff rcut <= cand.cutoff.

    Args:
        ext: extended atoms (types < ntypes; negative types are virtual atoms: never neighbours, and
            a virtual centre gets an all -1 row).
        cand: candidates of ext.nloc centres within cand.cutoff (e.g. rcut + skin in MD).
        rcut: Å, < 128.
        sel: (ntypes,) slots per type.
        ntypes: number of atom types (<= 127).
        positions: optional (nall, 3) coordinates (Å) to use instead of ext.positions (MD: current
            positions between rebuilds).
    Returns:
        `NeighborList` with nlist (nloc, sum(sel)) int32.
    """
    rc = _check_cutoff(rcut, "rcut")
    ntypes = int(ntypes)
    if rc > cand.cutoff * (1.0 + 1e-12):
        raise ValueError(f"rcut {rc} A exceeds the candidate cutoff {cand.cutoff} A")
    if cand.nloc != ext.nloc:
        raise ValueError(f"candidates are for {cand.nloc} centres, extended atoms have {ext.nloc}")
    s, sec, nlist, counts = _prepare_slots(ext, rc, sel, ntypes)
    pos = check_extended_positions(ext, positions)
    if ext.nloc:
        with one_launcher():
            _k.format_nlist(pos, ext.types, cand.offsets, cand.indices, rc * rc, s, sec, nlist, counts)
    return _neighbor_list(nlist, counts, s)


def build_nlist(ext: Extended, rcut, sel, ntypes: int, positions=None) -> NeighborList:
    """The neighbour list within rcut straight from a cell-list scan (one call for the model
    evaluator): the same result as `format_nlist(ext, find_candidates(ext, rcut), ...)` without
    the candidate CSR (one scan of the cells instead of two, and no second pass over the pairs).

    ext must have been built with a cutoff >= rcut (Å).  positions: optional (nall, 3) coordinates
    (Å) to use instead of ext.positions (MD: the current positions between rebuilds; the result
    then equals `format_nlist` of the candidates within rcut + skin of the rebuild, bit for bit,
    as long as no pair has come from beyond rcut + skin to within rcut).  The cell list is
    transient: about 50 bytes per extended atom while the call runs.  Returns `NeighborList`.
    """
    rc = _check_cutoff(rcut, "rcut")
    ntypes = int(ntypes)
    if rc > ext.cutoff * (1.0 + 1e-12):
        raise ValueError(f"rcut {rc} A exceeds the cutoff {ext.cutoff} A the extended atoms were built for")
    s, sec, nlist, counts = _prepare_slots(ext, rc, sel, ntypes)
    pos = check_extended_positions(ext, positions)
    if ext.nloc:
        g = build_grid(pos, ext.nloc, rc)
        with one_launcher():
            _k.scan_nlist(g.sx, g.sy, g.sz, g.order, g.scell, g.cell_start, g.nbins, g.reach, g.centres,
                          ext.types, rc * rc, s, sec, nlist, counts)
    return _neighbor_list(nlist, counts, s)


def report_overflow(nl: NeighborList, sel, type_map=None, stacklevel: int = 2) -> None:
    """Warn (`NeighborOverflowWarning`) about each type whose block overflowed; silent otherwise.

    The message names the type (from type_map when given), its sel, how many centre atoms lost
    neighbours and the largest neighbour count seen, which is the sel that would have sufficed.
    A type whose sel is 0 (DeePMD-kit's sel "auto" for a type absent from the training data) is
    no atom's neighbour by the model's design, as in DeePMD-kit: its neighbours within rcut are
    told apart from an overflow, in a sentence of their own.
    """
    s = np.asarray(sel, dtype=np.int64)
    parts, unseen = [], []
    for t in np.flatnonzero(nl.overflow > 0):
        t = int(t)
        name = f"'{type_map[t]}' (type {t})" if type_map is not None else f"type {t}"
        if s[t] == 0:
            unseen.append(f"{name}: {int(nl.overflow[t])} centre atom(s) have neighbours of this type "
                          f"within rcut, which sel = 0 leaves out")
            continue
        parts.append(
            f"{name}: {int(nl.overflow[t])} centre atom(s) have more than sel = {int(s[t])} "
            f"neighbours of this type (largest count {int(nl.max_count[t])})"
        )
    if parts:
        warnings.warn(
            "neighbour list overflow, the farthest neighbours were dropped: " + "; ".join(parts)
            + ". Increase sel to at least the largest count.",
            NeighborOverflowWarning,
            stacklevel=stacklevel,
        )
    if unseen:
        warnings.warn(
            "; ".join(unseen) + ", as DeePMD-kit does (a type without neighbour slots: DeePMD-kit's "
            "sel \"auto\" for a type its training data never brought within rcut of an atom).",
            NeighborOverflowWarning,
            stacklevel=stacklevel,
        )


class OverflowWarnings:
    """The overflow warnings of a run's successive lists (MD: one list per rebuild, per model sel):
    `report_overflow` for each (sel, type) the first time that type's block overflows, so that a
    type overflowing later in the run is still reported after another's warning (a sel-0 type's
    neighbours within rcut are there at every call); `seen` tells a call whose list dropped
    neighbours of a type with slots (a real overflow) from one that only left out a sel-0 type's."""

    def __init__(self):
        self._warned: set[tuple[tuple[int, ...], int]] = set()

    def seen(self, nl, sel, type_map=None) -> bool:
        """Warn about the types of `nl` (anything with per-type `overflow` and `max_count`) not
        yet reported for `sel`; True if a type with sel > 0 overflowed."""
        s = np.asarray(sel, dtype=np.int64)
        overflow = np.asarray(nl.overflow)
        over = [int(t) for t in np.flatnonzero(overflow > 0)]
        key = tuple(int(v) for v in s)
        new = [t for t in over if (key, t) not in self._warned]
        if new:
            self._warned.update((key, t) for t in new)
            only = np.zeros_like(overflow)
            only[new] = overflow[new]   # the types warned about before are not repeated
            report_overflow(OverflowCounts(only, np.asarray(nl.max_count)), s, type_map, stacklevel=3)
        return any(s[t] > 0 for t in over)


@dataclass
class OverflowCounts:
    """What `report_overflow` and `OverflowWarnings` read of a list: (ntypes,) per-type counts of
    centre atoms that lost neighbours, and the largest neighbour counts (a device list's, or a
    selection of a list's types)."""

    overflow: np.ndarray
    max_count: np.ndarray

