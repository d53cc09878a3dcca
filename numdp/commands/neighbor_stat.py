"""`numdp neighbor-stat [-s SYSTEM ...] -r RCUT [-t O H]`: neighbour statistics, like `dp neighbor-stat`
(-s defaults to the current folder, as dp's).

Over every frame of the systems (npy folders, data.h5 or data.h5#/group): the largest number of
neighbours of each type within rcut of any atom (`max_nbor_size`, DeePMD-kit's order: one entry
per type of the type map), the smallest pair distance (`min_nbor_dist`, with the system and frame
where it occurs, to spot bad frames), and the `sel` DeePMD-kit's "auto" would choose
(numdp.train.stats.auto_sel: ⌈⌊count · 1.1⌋ / 4⌉ · 4, as numdp train's "auto").  The
`min_nbor_dist:` and `max_nbor_size:` lines are printed as DeePMD-kit logs them, so that scripts
reading them read either.  Atoms are typed by element name through
`-t` (default: the names of the systems' type_map.raw, in order of appearance).  Virtual atoms
(mixed-type padding, type -1) are left out: no neighbours, not neighbours, no distance (dp
neighbor-stat 3.2 measures their distances, and stops at dpdata's padding, all at the origin,
as overlapping atoms).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ..errors import InputError
from .systems import add_system_argument, system_roots


def configure(parser):
    add_system_argument(parser)
    parser.add_argument("-r", "--rcut", type=float, required=True, help="cutoff radius (Angstrom)")
    parser.add_argument("-t", "--type-map", nargs="+", metavar="ELEMENT",
                        help="element of each type index (default: the systems' type_map.raw)")
    parser.add_argument("--factor", type=float, default=1.1,
                        help="sel safety factor, as sel = \"auto:FACTOR\" (default 1.1)")
    parser.add_argument("--one-type", "--mixed-type", action="store_true",
                        help="count the neighbours of all elements together (one sel), as dp "
                             "neighbor-stat --mixed-type does for se_atten-like descriptors")


def _type_map(systems, given: list[str] | None) -> list[str]:
    """The type map: `given`, else the names of the systems' type_map.raw in order of appearance;
    systems without type_map.raw (all of them) keep their indices, named by number."""
    if given:
        if len(set(given)) != len(given):
            raise InputError(f"-t {' '.join(given)}: element names must be unique")
        return list(given)
    named = [s for s in systems if s.type_map is not None]
    if named and len(named) != len(systems):
        bare = next(s for s in systems if s.type_map is None)
        raise InputError(f"{bare.path / 'type_map.raw'}: missing while other systems name their "
                         "elements; give the type map with -t")
    if not named:
        return [str(t) for t in range(max(int(s.types.max()) for s in systems) + 1)]
    names: list[str] = []
    for s in systems:
        names += [n for n in s.type_map if n not in names]
    return names


def neighbor_census(systems, type_map: list[str], rcut: float, whose: str = "the type map",
                    one_type: bool = False):
    """`numdp.neighbor.distances.NeighborCensus` of every frame of `systems` (labels (path, frame));
    `whose` names `type_map` in messages; `one_type`: every atom counted as type 0 (the atoms
    are still checked against `type_map`)."""
    from ..io.npy_system import real_atoms
    from ..neighbor.distances import NeighborCensus

    census = NeighborCensus(1 if one_type else len(type_map), rcut)
    for s in systems:
        types = s.frame_model_types(type_map, whose)   # (also checks every atom's element)
        if one_type:
            types = np.where(types < 0, -1, 0).astype(np.int32)
        for f in range(s.nframes):
            keep = real_atoms(types[f])   # virtual atoms (padding) are neither centres nor neighbours
            census.add(s.coords[f][keep], types[f][keep], None if s.boxes is None else s.boxes[f], (s.path, f))
    return census


def main(args) -> int:
    from ..io.npy_system import find_systems, load_system
    from ..train.stats import auto_sel

    if not (math.isfinite(args.rcut) and args.rcut > 0):
        raise InputError(f"-r {args.rcut:g}: the cutoff must be a positive number of Angstrom")
    if not (math.isfinite(args.factor) and args.factor > 0):
        raise InputError(f"--factor {args.factor:g}: must be > 0")
    t0 = time.perf_counter()
    systems = [load_system(p) for root in system_roots(args) for p in find_systems(Path(root))]
    type_map = _type_map(systems, args.type_map)
    census = neighbor_census(systems, type_map, args.rcut,
                             "the type map given with -t" if args.type_map else "the type map", args.one_type)
    if args.one_type:
        type_map = ["all"]
    sel = auto_sel(census.max_count, args.factor)
    nfr = sum(s.nframes for s in systems)
    print(f"# {len(systems)} system{'s' if len(systems) > 1 else ''}, {nfr} frames, rcut {args.rcut:g} A")
    print(f"# {'type':<8} {'max_nbor':>8} {'sel':>6} {'min_dist_A':>11}")
    for t, name in enumerate(type_map):
        r = census.rmin[t]
        print(f"  {name:<8} {census.max_count[t]:8d} {sel[t]:6d} "
              + (f"{r:11.4f}" if math.isfinite(r) else f"{'-':>11}"))
    if census.closest is None:
        print(f"min_nbor_dist: none (no pair within {args.rcut:g} A)")
    else:
        r, (path, frame) = census.closest
        print(f"# closest pair: {path} frame {frame}")
        print(f"min_nbor_dist: {r:f}")
    print(f"max_nbor_size: [{' '.join(str(int(c)) for c in census.max_count)}]")
    print(f"sel: {sel}   # auto:{args.factor:g} (DeePMD-kit's and numdp train's), type_map {type_map}")
    print(f"# {time.perf_counter() - t0:.1f} s")
    return 0
