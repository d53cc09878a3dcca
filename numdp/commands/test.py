"""`numdp test -m MODEL -s SYSTEM [SYSTEM ...]`: model errors against labelled data, like `dp test`.

Per system and overall: energy RMSE and MAE per atom (meV/atom), force RMSE and MAE over all
components (meV/Å) and virial RMSE and MAE per atom (meV/atom, where virial labels exist).  Overall
figures pool the squared (absolute) errors of all frames (energy, virial) or all force components,
as `dp test` weights them.  The systems: `-s`, `-f DATAFILE`, `--train-data INPUT` or
`--valid-data INPUT` (numdp.commands.systems); `-n N` tests the first N frames of each, or N
drawn at random without repetition with `--shuffle-test` (seed `-r`).  `-d PREFIX` writes `dp test`'s detail files (numdp.io.detail_files).
Detail and JSON files are written at the end, each atomically; existing ones are first kept as
#NAME.N# (numdp.io.backup) and get their names back if a write fails.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..model.metrics import ErrorSums
from ..model.precision import PRECISIONS
from .systems import add_system_options, system_paths


def configure(parser):
    parser.add_argument("-m", "--model", required=True, help="numdp (.h5) or DeePMD-kit (.dp, PyTorch .pt/.pth) model")
    add_system_options(parser, inputs=True)
    parser.add_argument("-n", "--numb-test", type=int, default=0,
                        help="frames per system (0 = all)")
    parser.add_argument("--shuffle-test", action="store_true",
                        help="test frames drawn at random, without repetition (-r), instead of the first ones")
    parser.add_argument("-r", "--rand-seed", type=int, default=None,
                        help="seed of the --shuffle-test draw (default: a fresh one each run)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("-d", "--detail-file", metavar="PREFIX",
                        help="write dp test's detail files PREFIX.e.out, .e_peratom.out, .f.out, "
                             ".v.out, .v_peratom.out (data and prediction per frame / atom)")
    parser.add_argument("--threads", type=int, default=None, help="worker threads (default: all cores)")
    parser.add_argument("--precision", default="double", choices=list(PRECISIONS),
                        help="evaluation precision (default double)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="evaluate on the CPU or an NVIDIA GPU (cuda extra, docs/gpu.md)")


class _Accumulator(ErrorSums):
    """numdp.model.metrics.ErrorSums with the figures `numdp test` prints."""

    def figures(self) -> dict:
        """RMSE and MAE in meV/atom (energy, virial) and meV/Å (force); None where no labels."""
        out = {}
        for k, rmse, mae, n in (("energy", self.rmse_e, self.mae_e, self.e_n),
                                ("force", self.rmse_f, self.mae_f, self.f_n),
                                ("virial", self.rmse_v, self.mae_v, self.v_n)):
            out[f"rmse_{k}"] = 1000.0 * rmse if n else None
            out[f"mae_{k}"] = 1000.0 * mae if n else None
        return out


def evaluate_system(model, system, nframes: int = 0, detail=None) -> tuple[_Accumulator, int]:
    """Accumulate the errors of `model` on the first nframes frames (0 = all); `detail`
    (a numdp.io.detail_files.Predictions) collects the predictions for the detail files."""
    types = system.model_types(model.type_map)
    n = system.natoms
    count = system.nframes if nframes <= 0 else min(nframes, system.nframes)
    acc = _Accumulator()
    for f in range(count):
        box = None if system.boxes is None else system.boxes[f]
        out = model.evaluate(system.coords[f], types, box, atom_virial=False)
        if system.energy is not None:
            acc.add_energy(out.energy - system.energy[f], n)
        if system.forces is not None:
            acc.add_forces(out.forces - system.forces[f])
        if system.virial is not None:
            acc.add_virial(out.virial - system.virial[f], n)
        if detail is not None:
            detail.add(out.energy, out.forces, out.virial)
    return acc, count


def _fmt(value):
    return "        -" if value is None else f"{value:9.3f}"


def _row(name: str, frames: int, fig: dict) -> str:
    return f"  {name[-48:]:<48} {frames:6d}" + "".join(
        f" {_fmt(fig[f'rmse_{k}'])} {_fmt(fig[f'mae_{k}'])}" for k in ("energy", "force", "virial"))


def main(args) -> int:
    from ..io.atomic import atomic_path
    from ..io.backup import Backups
    from ..io.detail_files import DetailFiles, Predictions
    from ..io.npy_system import load_system
    from ..model.dp_model import load_model

    if args.numb_test < 0:
        raise InputError(f"-n {args.numb_test}: the number of frames per system must be >= 0 (0 = all)")
    if args.rand_seed is not None and args.rand_seed < 0:
        raise InputError(f"-r {args.rand_seed}: the seed must be >= 0")
    detail = DetailFiles(args.detail_file) if args.detail_file else None
    if detail is not None and not detail.path("e").parent.is_dir():
        raise InputError(f"-d {args.detail_file}: directory {detail.path('e').parent} does not exist")
    if args.json and not Path(args.json).parent.is_dir():  # checked before the evaluation, not after
        raise InputError(f"--json {args.json}: directory {Path(args.json).parent} does not exist")
    if args.json and Path(args.json).is_dir():
        raise InputError(f"--json {args.json}: is a directory, not a file")
    model = load_model(args.model, nthreads=args.threads, precision=args.precision, device=args.device)
    paths = system_paths(args)
    rng = np.random.default_rng(args.rand_seed) if args.shuffle_test else None
    total = _Accumulator()
    rows = []
    t0 = time.perf_counter()
    print(f"# model {args.model}  type_map {' '.join(model.type_map)}  precision {model.precision}"
          + ("  (compressed)" if model.compressed else ""))
    print(f"# {'':<48} {'':>6} {'energy meV/atom':>19} {'force meV/A':>19} {'virial meV/atom':>19}")
    print(f"# {'system':<48} {'frames':>6}" + f" {'RMSE':>9} {'MAE':>9}" * 3)
    for path in paths:
        system = load_system(path)
        if rng is not None:
            system = system.select(rng.permutation(system.nframes))
        pred = Predictions() if detail is not None else None
        acc, count = evaluate_system(model, system, args.numb_test, pred)
        if detail is not None:
            detail.add_system(str(path), system, pred)
        total.merge(acc)
        fig = acc.figures()
        rows.append({"system": str(path), "frames": count, **fig})
        print(_row(str(path), count, fig))
    overall = total.figures()
    nfr = sum(r["frames"] for r in rows)
    print(_row("overall", nfr, overall))
    print(f"# {time.perf_counter() - t0:.1f} s")
    if model.beyond_table:
        print(f"# warning: {model.beyond_table} neighbour pairs fell outside the model's tables "
              "(closer than any training pair); they were extrapolated linearly")
    # the outputs: earlier files kept as #NAME.N#, and given their names back if a write fails
    outputs = (detail.paths() if detail is not None else []) + ([Path(args.json)] if args.json else [])
    with Backups.move(outputs, "the existing") as backups:
        if detail is not None:
            written = detail.write()
            print("# detail files: " + (" ".join(str(p) for p in written) if written else
                                        "none (the systems have no energy, force or virial labels)"))
        if args.json:
            units = {f"{m}_{k}": u for k, u in (("energy", "meV/atom"), ("force", "meV/Angstrom"),
                                                ("virial", "meV/atom")) for m in ("rmse", "mae")}
            text = json.dumps({"model": str(args.model), "units": units,
                               "systems": rows, "overall": {"frames": nfr, **overall}}, indent=2) + "\n"
            with atomic_path(args.json, "JSON file") as tmp:
                try:
                    tmp.write_text(text)
                except OSError as exc:
                    raise InputError(f"{args.json}: cannot write ({exc.strerror})") from None
    if backups.moved:
        print("# " + backups.line())
    return 0
