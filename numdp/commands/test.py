"""`numdp test -m MODEL -s SYSTEM [SYSTEM ...]`: model errors against labelled data, like `dp test`.

Per system and overall: energy RMSE per atom (meV/atom), force RMSE over all components
(meV/Å) and virial RMSE per atom (meV/atom, where virial labels exist).  Overall figures pool the
squared errors of all frames (energy, virial) or all force components, as `dp test` weights them.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..errors import InputError


def configure(parser):
    parser.add_argument("-m", "--model", required=True, help="numdp (.h5) or DeePMD-kit (.dp) model")
    parser.add_argument("-s", "--system", nargs="+", required=True,
                        help="DeePMD npy systems, or folders searched for them")
    parser.add_argument("-n", "--numb-test", type=int, default=0,
                        help="frames per system (0 = all)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--threads", type=int, default=None, help="worker threads (default: all cores)")
    parser.add_argument("--precision", default="double", choices=["double", "mix32", "mix16"],
                        help="evaluation precision (default double)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="evaluate on the CPU or an NVIDIA GPU (cuda extra, docs/gpu.md)")


class _Accumulator:
    """Sums of squared errors and counts for energy/atom, force components and virial/atom."""

    def __init__(self):
        self.se = {"energy": 0.0, "force": 0.0, "virial": 0.0}
        self.n = {"energy": 0, "force": 0, "virial": 0}

    def add(self, key, sq_err_sum, count):
        self.se[key] += float(sq_err_sum)
        self.n[key] += int(count)

    def merge(self, other):
        for k in self.se:
            self.add(k, other.se[k], other.n[k])

    def figures(self) -> dict:
        """RMSE in meV/atom (energy, virial) and meV/Å (force); None where no labels."""
        return {f"rmse_{k}": (1000.0 * np.sqrt(self.se[k] / self.n[k]) if self.n[k] else None)
                for k in self.se}


def evaluate_system(model, system, nframes: int = 0) -> tuple[_Accumulator, int]:
    """Accumulate the squared errors of `model` on the first nframes frames (0 = all)."""
    types = system.model_types(model.type_map)
    n = system.natoms
    count = system.nframes if nframes <= 0 else min(nframes, system.nframes)
    acc = _Accumulator()
    for f in range(count):
        box = None if system.boxes is None else system.boxes[f]
        out = model.evaluate(system.coords[f], types, box, atom_virial=False)
        if system.energy is not None:
            acc.add("energy", ((out.energy - system.energy[f]) / n) ** 2, 1)
        if system.forces is not None:
            acc.add("force", np.sum((out.forces - system.forces[f]) ** 2), 3 * n)
        if system.virial is not None:
            acc.add("virial", np.sum(((out.virial - system.virial[f]) / n) ** 2), 9)
    return acc, count


def _fmt(value):
    return "      -" if value is None else f"{value:9.3f}"


def main(args) -> int:
    from ..io.npy_system import find_systems, load_system
    from ..model.dp_model import load_model

    model = load_model(args.model, nthreads=args.threads, precision=args.precision, device=args.device)
    paths = [p for root in args.system for p in find_systems(Path(root))]
    total = _Accumulator()
    rows = []
    t0 = time.perf_counter()
    print(f"# model {args.model}  type_map {' '.join(model.type_map)}  precision {model.precision}"
          + ("  (compressed)" if model.compressed else ""))
    print(f"# {'system':<48} {'frames':>6} {'E meV/at':>9} {'F meV/A':>9} {'V meV/at':>9}")
    for path in paths:
        system = load_system(path)
        acc, count = evaluate_system(model, system, args.numb_test)
        total.merge(acc)
        fig = acc.figures()
        rows.append({"system": str(path), "frames": count, **fig})
        print(f"  {str(path)[-48:]:<48} {count:6d} {_fmt(fig['rmse_energy'])} "
              f"{_fmt(fig['rmse_force'])} {_fmt(fig['rmse_virial'])}")
    overall = total.figures()
    nfr = sum(r["frames"] for r in rows)
    print(f"  {'overall':<48} {nfr:6d} {_fmt(overall['rmse_energy'])} "
          f"{_fmt(overall['rmse_force'])} {_fmt(overall['rmse_virial'])}")
    print(f"# {time.perf_counter() - t0:.1f} s")
    if model.beyond_table:
        print(f"# warning: {model.beyond_table} neighbour pairs fell outside the model's tables "
              "(closer than any training pair); they were extrapolated linearly")
    if args.json:
        try:
            Path(args.json).write_text(json.dumps({"model": str(args.model), "units": {
                "rmse_energy": "meV/atom", "rmse_force": "meV/Angstrom", "rmse_virial": "meV/atom"},
                "systems": rows, "overall": {"frames": nfr, **overall}}, indent=2) + "\n")
        except OSError as exc:
            raise InputError(f"{args.json}: cannot write ({exc.strerror})") from None
    return 0
