"""Atoms on top of each other: the threshold and the message shared by `DPModel.evaluate` and
the MD safety check.

The model divides by the pair distance r (s(r) = sw(r)/r and the unit vector r_ij/r), so two atoms
at the same place (or an atom and a periodic image at its place) give nan energies and forces.
Pairs closer than OVERLAP_DISTANCE = 2**-26 Å count as on top of each other: that is the distance
quantum of the neighbour list's sort keys (reference §10.1), below which the list cannot tell the
two positions apart, and it lies far above where the arithmetic breaks (random se_e2_a models
give finite results down to r = 1e-9 Å in double and mix32, compressed or not; nan from 1e-12 Å
for compressed mix32 and 1e-20 Å for double).  The check reads the nearest neighbour of each
type from the neighbour list the evaluation builds anyway (numdp.kernels.cpu.md.closest_pair):
O(N ntypes), no extra pair search.
"""
from __future__ import annotations

OVERLAP_DISTANCE = 2.0 ** -26  # Å


def overlap_message(dist: float, first: str, second: str) -> str:
    """One line naming two overlapping atoms; first/second are labels such as "3 (O)"."""
    return (f"atoms {first} and {second} are on top of each other ({dist:.3g} A apart): the model "
            f"divides by the distance, so atoms must be more than {OVERLAP_DISTANCE:.3g} A apart")
