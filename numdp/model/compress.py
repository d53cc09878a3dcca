"""Model compression: tabulate every embedding net of a model (reference §9, PWMLFF's grid).

Table domain per net, in the normalised input x = (s - mu_r)/sigma_r of its centre type(s) and
its neighbour type's slot block:
lower = min(0, min over centre types of -mu_r/sigma_r) (the padding / r >= rcut value, so every
physical input is above it), upper = max over centre types of (s_max - mu_r)/sigma_r with s_max
the largest raw s = w(r)/r seen in the training data; fine step dx up to upper, then step 10 dx up
to extrapolate x upper (default 10; DeePMD-kit's dp compress: 5).  A centre type whose pair with
the net's neighbour type is excluded (descriptor exclude_types) feeds the net only its padding
value: it counts for lower, not for upper (DeePMD-kit's deepmd/utils/tabulate.py means to do the
same, but tests tuples against the pair lists it is given, which never match); a net fed by no
other centre type spans [lower, 0] ([0, dx] when lower is 0).  The compressed model keeps the
exclusions.

A table written in DeePMD-kit's `.dp` layout carries no count of fine intervals: DeePMD-kit and
numdp's reader take n0 = int((upper - lower) / h0).  `upper` is therefore stored as the double
nearest lower + n0 h0 for which that quotient gives n0 back (`dp_upper`); without it some nets
(the oracle water model's nets 1 and 3 at the default step) read back with n0 - 1, and every
input on the coarse grid was evaluated on the piece before its own.
"""
from __future__ import annotations

import copy
import math
import os

import numpy as np

from ..errors import InputError
from .params import ModelParams
from .tables import build_table, table_errors

EXTRAPOLATE = 10.0


def centre_types_of_net(params: ModelParams, k: int) -> list[int]:
    """Centre types whose environments feed embedding net k."""
    d = params.descriptor
    return list(range(d.ntypes)) if d.type_one_side else [k % d.ntypes]


def neighbour_type_of_net(params: ModelParams, k: int) -> int:
    """The neighbour type whose slots embedding net k embeds."""
    d = params.descriptor
    return k if d.type_one_side else k // d.ntypes


def s_max_from_params(params: ModelParams) -> np.ndarray:
    """(ntypes,) largest raw s per centre type: the stored training range, else 1/min_nbor_dist."""
    if params.s_range is not None:
        return np.asarray(params.s_range, dtype=np.float64)[:, 1]
    if params.min_nbor_dist:
        from ..kernels.cpu.envmat import switch

        r = float(params.min_nbor_dist)
        rcut = float(params.descriptor.rcut)
        if not (math.isfinite(r) and 0.0 < r < rcut):
            raise InputError(f"the model's min_nbor_dist {r:g} A is no range for the tables (it must be "
                             f"> 0 and < rcut {rcut:g} A): give the training input with -t or "
                             f"training systems with --data")
        w, _ = switch(r, params.descriptor.rcut_smth, params.descriptor.rcut)
        return np.full(params.ntypes, w / r)
    raise InputError("the model stores no range of s (s_range) nor min_nbor_dist: "
                     "give the training input with -t or training systems with --data")


def s_max_from_systems(params: ModelParams, paths) -> np.ndarray:
    """(ntypes,) largest raw s = w(r)/r per centre type over every frame of the given systems."""
    from ..io.npy_system import find_systems, load_system
    from ..neighbor import build_nlist, extend
    from ..neighbor.distances import DistanceStats

    d = params.descriptor
    stats = DistanceStats(params.ntypes, d.rcut, d.rcut_smth)
    for root in paths:
        for path in find_systems(root):
            system = load_system(path)
            frame_types = system.frame_model_types(params.type_map)
            for f in range(system.nframes):
                box = None if system.boxes is None else system.boxes[f]
                types = frame_types[f].copy()
                ext = extend(system.coords[f], types, box, d.rcut)
                stats.add_pairs(ext.positions, build_nlist(ext, d.rcut, d.sel, d.ntypes).nlist, types)
    return stats.s_range[:, 1]


def dp_upper(lower: float, upper: float, h0: float, n0: int) -> float:
    """`upper` (the end of the n0 fine intervals of step h0 from lower, in x) moved by the fewest
    ulps for which int((upper - lower) / h0) == n0, the count DeePMD-kit's lookup (and numdp's
    `.dp` reader) derives from a table's bounds; `upper` itself when no nearby double does."""
    u = float(upper)
    for direction in (math.inf, -math.inf):
        v = u
        for _ in range(64):
            q = int((v - lower) / h0)
            if q == n0:
                return v
            if (q < n0) != (direction > 0):
                break
            v = math.nextafter(v, direction)
    return u


def _physical_memory() -> float:
    """Bytes of physical memory of this machine (inf where the platform does not say)."""
    try:
        return float(os.sysconf("SC_PHYS_PAGES")) * float(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return math.inf


def _check_size(ranges, dx: float, order: int, extrapolate: float, width: int) -> None:
    """InputError, before any table is built, when the tables of `ranges` [(lower, upper), ...]
    would not fit in this machine's memory: the coefficients ((order+1) x width float64 per
    interval, all nets) plus the largest net's temporaries (about 12 (n, width) arrays of its
    forward-mode derivatives).  Counts in floats, so that an infinite or absurd grid is refused
    rather than overflowing."""
    total = peak = 0.0
    for lower, upper in ranges:
        n0 = max(1.0, math.ceil((upper - lower) / dx - 1e-9))
        up = lower + n0 * dx
        n1 = max(1.0, (extrapolate * max(up, dx) - up) / (10.0 * dx))
        n = n0 + n1 + 1.0
        total += n
        peak = max(peak, n)
    need = 8.0 * width * ((order + 1) * total + (order + 13) * peak)
    if not need <= _physical_memory():
        raise InputError(f"step {dx:g}, extrapolate {extrapolate:g}: the tables would need "
                         f"{need / 2 ** 30:.3g} GiB ({total:.3g} intervals over x up to "
                         f"{max(u for _, u in ranges):.3g}), more than this machine's memory; give "
                         f"a larger step (-s) or a smaller extrapolation factor (-e)")


def compress(params: ModelParams, dx: float = 0.01, order: int = 3, s_max=None,
             extrapolate: float = EXTRAPOLATE):
    """A copy of `params` whose embedding nets are tabulated, and a per-net report.

    s_max: (ntypes,) largest raw s per centre type (default: from the model); extrapolate: the
    coarse grid (step 10 dx) reaches extrapolate x upper (DeePMD-kit's `dp compress -e`).
    Returns (params, report) with report a list of dicts (net, lower, upper, xmax, intervals,
    errors of table_errors).
    """
    if order not in (3, 5):
        raise InputError(f"order must be 3 or 5, got {order}")
    if not (dx > 0 and math.isfinite(dx)):
        raise InputError(f"step must be > 0 and finite, got {dx}")
    if not (extrapolate > 1 and math.isfinite(extrapolate)):
        raise InputError(f"extrapolate must be > 1 and finite, got {extrapolate}")
    d = params.descriptor
    smax = s_max_from_params(params) if s_max is None else np.asarray(s_max, dtype=np.float64)
    out = copy.deepcopy(params)
    if not np.all(np.isfinite(smax)):
        raise InputError(f"the training range of s {smax.tolist()} is not finite: give the training "
                         f"input with -t or training systems with --data")
    tables, report = [], []
    excluded = d.excluded
    ranges = []
    block_mu, block_sd = d.block_stats()
    for k in range(len(d.embeddings)):
        cts = centre_types_of_net(params, k)
        nbr = neighbour_type_of_net(params, k)
        # the statistics of the net's slot block (DeePMD-kit's are per centre type); a block
        # without slots (sel 0) never reaches its net: its table spans [0, dx] (block_stats' 0, 1)
        mu, sd = block_mu[:, nbr, 0], block_sd[:, nbr, 0]
        lower = min(0.0, min(-mu[t] / sd[t] for t in cts))
        real = [t for t in cts if not excluded[t, nbr]] if d.sel[nbr] > 0 else []
        upper = max((smax[t] - mu[t]) / sd[t] for t in real) if real else 0.0
        if upper <= lower:
            upper = lower + dx
        ranges.append((float(lower), float(upper)))
    _check_size(ranges, dx, order, extrapolate, d.neuron[-1])
    for k, net in enumerate(d.embeddings):
        lower, upper = ranges[k]
        try:
            tab = build_table(net, lower, upper, dx, order, extrapolate)
        except MemoryError:
            raise InputError(f"step {dx:g}, extrapolate {extrapolate:g}: out of memory tabulating "
                             f"embedding net {k}; give a larger step (-s) or a smaller extrapolation "
                             f"factor (-e)") from None
        # the .dp layout's lookup derives n0 from the bounds: make them give it back
        tab.upper = dp_upper(tab.lower, tab.upper, tab.h0, tab.n0)
        tables.append(tab)
        report.append({"net": k, "lower": tab.lower, "upper": tab.upper, "xmax": tab.xmax,
                       "intervals": int(tab.coef.shape[0]), "errors": table_errors(net, tab)})
    out.descriptor.tables = tables
    out.info = dict(out.info, compression={"order": int(order), "dx": float(dx),
                                                     "extrapolate": float(extrapolate)})
    return out, report
