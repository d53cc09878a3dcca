"""Neighbour search for the Deep Potential evaluator, MD and domain decomposition.

Pipeline (reference §1, §13 steps 1-3), each step a plain function:

    ext  = extend(positions, types, box, cutoff)        # wrapped locals + ghost images (Extended)
    cand = find_candidates(ext, cutoff)                 # CSR pairs within cutoff, O(N) cell list
    nl   = format_nlist(ext, cand, rcut, sel, ntypes)   # DeePMD-kit slots (NeighborList), rcut <= cutoff
    nl   = build_nlist(ext, rcut, sel, ntypes)          # the last two in one call, cutoff = rcut
    rows = NeighborRows(ext, rcut, sel, ntypes)         # or never stored: rows on request (MD)
    report_overflow(nl, sel, type_map)                  # NeighborOverflowWarning when sel was too small

Kernels: numdp.kernels.cpu.neighbor.  Lengths in Å throughout.
"""

from numdp.neighbor.celllist import Candidates, find_candidates
from numdp.neighbor.extended import Extended, extend, extended_positions
from numdp.neighbor.threads import SERIAL_NEIGHBOR_BELOW, kernel_threads
from numdp.neighbor.rows import NeighborRows
from numdp.neighbor.nlist import (
    NeighborList,
    NeighborOverflowWarning,
    OverflowCounts,
    OverflowWarnings,
    build_nlist,
    check_key_limits,
    format_nlist,
    report_overflow,
    slot_offsets,
)

__all__ = [
    "Candidates",
    "Extended",
    "NeighborList",
    "NeighborOverflowWarning",
    "NeighborRows",
    "OverflowCounts",
    "OverflowWarnings",
    "build_nlist",
    "check_key_limits",
    "extend",
    "extended_positions",
    "find_candidates",
    "format_nlist",
    "kernel_threads",
    "SERIAL_NEIGHBOR_BELOW",
    "report_overflow",
    "slot_offsets",
]
