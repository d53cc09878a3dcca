"""`numdp test -m MODEL -s SYSTEM [SYSTEM ...]`: model errors against labelled data, like `dp test`.

Per system and overall: energy RMSE and MAE per atom (meV/atom), force RMSE and MAE over all
components (meV/Å) and virial RMSE and MAE per atom (meV/atom, where virial labels exist and the
system is periodic: dp test 3.2 leaves a nopbc system's virial out of its figures, though its
detail files list it).  Overall figures pool the squared (absolute) errors of all frames
(energy, virial) or all force components, as `dp test` weights them.  The systems: `-s`, `-f DATAFILE`, `--train-data INPUT` or
`--valid-data INPUT` (numdp.commands.systems); `-n N` tests the first N frames of each, or N
drawn at random without repetition with `--shuffle-test` (seed `-r`).  `-d PREFIX` writes `dp test`'s detail files (numdp.io.detail_files).
Detail and JSON files are written at the end, each atomically; existing ones are first kept as
#NAME.N# (numdp.io.backup) and get their names back if a write fails.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.model_file import MODEL_HELP
from ..model.dp_model import evaluate_real_atoms
from ..model.metrics import ErrorSums
from .options import add_evaluation_options
from .systems import add_system_options, system_paths


def configure(parser):
    parser.add_argument("-m", "--model", required=True, help=MODEL_HELP)
    add_system_options(parser, inputs=True)
    parser.add_argument("-S", "--set-prefix", default="set", metavar="PREFIX",
                        help="read the frames of each system from its PREFIX.* sets (default set, as dp test -S)")
    parser.add_argument("-n", "--numb-test", type=int, default=0,
                        help="frames per system (0 = all)")
    parser.add_argument("--shuffle-test", action="store_true",
                        help="test frames drawn at random, without repetition (-r), instead of the first ones")
    parser.add_argument("-r", "--rand-seed", type=int, default=None,
                        help="seed of the --shuffle-test draw (default: a fresh one each run)")
    parser.add_argument("-a", "--atomic", action="store_true",
                        help="also the atomic energy errors, against the systems' atom_ener.npy (as dp test -a)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("-d", "--detail-file", metavar="PREFIX",
                        help="write dp test's detail files PREFIX.e.out, .e_peratom.out, .f.out, "
                             ".v.out, .v_peratom.out, .s.out (data and prediction per frame / atom)")
    add_evaluation_options(parser)


@dataclass
class _Pooled:
    """Σ Δ², Σ |Δ| and the weight W of one dp test quantity (RMSE = √(Σ Δ²/W), MAE = Σ|Δ|/W)."""

    sq: float = 0.0
    abs: float = 0.0
    weight: float = 0.0

    def add(self, diff, weight=None) -> None:
        d = np.asarray(diff, dtype=np.float64)
        w = np.ones_like(d) if weight is None else np.broadcast_to(np.asarray(weight, dtype=np.float64), d.shape)
        self.sq += float(np.sum(w * d * d))
        self.abs += float(np.sum(w * np.abs(d)))
        self.weight += float(np.sum(w))

    def merge(self, other: "_Pooled") -> None:
        self.sq += other.sq
        self.abs += other.abs
        self.weight += other.weight

    def figures(self, scale: float) -> tuple[float | None, float | None]:
        """(RMSE, MAE) × scale, or (None, None) without data."""
        if not self.weight:
            return None, None
        return scale * math.sqrt(self.sq / self.weight), scale * self.abs / self.weight


EXTRA = (("energy_total", "meV"), ("virial_total", "meV"), ("stress", "meV/Angstrom^3"),
         ("force_weighted", "meV/Angstrom"), ("atom_energy", "meV"))
"""The other figures of DeePMD-kit 3.2's dp test (in its weighting), reported where there is data:
energy and virial not divided by the atom count, stress −Ξ/V (periodic frames), the force
weighted by atom_pref.npy (each atom's weight on its 3 components), atomic energies (-a, against
atom_ener.npy)."""


class _Accumulator(ErrorSums):
    """numdp.model.metrics.ErrorSums with the figures `numdp test` prints, and `EXTRA`'s."""

    def __init__(self):
        super().__init__()
        self.extra = {name: _Pooled() for name, _ in EXTRA}

    def merge(self, other: "_Accumulator") -> None:
        super().merge(other)
        for name, pooled in self.extra.items():
            pooled.merge(other.extra[name])

    def figures(self) -> dict:
        """RMSE and MAE in meV/atom (energy, virial) and meV/Å (force); None where no labels;
        then `EXTRA`'s (meV, meV/Å³, meV/Å), only those with data."""
        out = {}
        for k, rmse, mae, n in (("energy", self.rmse_e, self.mae_e, self.e_n),
                                ("force", self.rmse_f, self.mae_f, self.f_n),
                                ("virial", self.rmse_v, self.mae_v, self.v_n)):
            out[f"rmse_{k}"] = 1000.0 * rmse if n else None
            out[f"mae_{k}"] = 1000.0 * mae if n else None
        for name, _ in EXTRA:
            rmse, mae = self.extra[name].figures(1000.0)
            if rmse is not None:
                out[f"rmse_{name}"], out[f"mae_{name}"] = rmse, mae
        return out


def evaluate_system(model, system, nframes: int = 0, detail=None, atomic: bool = False) -> tuple[_Accumulator, int]:
    """Accumulate the errors of `model` on the first nframes frames (0 = all); `detail`
    (a numdp.io.detail_files.Predictions) collects the predictions for the detail files;
    `atomic`: the atomic energies against atom_ener.npy (InputError when the system has none).
    Virtual atoms (mixed-type padding, type -1) are left out of the evaluation with zero forces
    and atomic energies, and count as atoms, as in dp test 3.2: the per-atom figures divide by the
    padded atom count, and the force figures take their zero rows."""
    if atomic and system.atom_ener is None:
        raise InputError(f"{system.path}: -a/--atomic needs atomic energy labels (atom_ener.npy); the system "
                         f"has none")
    types = system.frame_model_types(model.type_map)
    fparams = system.model_fparam(model)
    aparams = system.model_aparam(model)
    n = system.natoms
    count = system.nframes if nframes <= 0 else min(nframes, system.nframes)
    acc = _Accumulator()
    x = acc.extra
    for f in range(count):
        box = None if system.boxes is None else system.boxes[f]
        try:
            out = evaluate_real_atoms(model, system.coords[f], types[f], box,
                                      fparam=None if fparams is None else fparams[f],
                                      aparam=None if aparams is None else aparams[f])
        except InputError as exc:
            if not system.has_virtual:
                raise
            raise InputError(f"{system.path}: frame {f} (its atoms counted without the virtual ones): {exc}") from None
        if system.energy is not None:
            acc.add_energy(out.energy - system.energy[f], n)
            x["energy_total"].add(out.energy - system.energy[f])
        if system.forces is not None:
            acc.add_forces(out.forces - system.forces[f])
            if system.atom_pref is not None:
                x["force_weighted"].add(out.forces - system.forces[f], system.atom_pref[f][:, None])
        if system.virial is not None and box is not None:   # dp test 3.2: periodic systems only
            dv = out.virial - system.virial[f]
            acc.add_virial(dv, n)
            x["virial_total"].add(dv)
            volume = abs(np.linalg.det(box))
            if volume > 0.0:
                x["stress"].add(-dv / volume)
        if atomic:
            x["atom_energy"].add(out.atom_energies - system.atom_ener[f])
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
        system = load_system(path, args.set_prefix)
        if rng is not None:
            system = system.select(rng.permutation(system.nframes))
        pred = Predictions() if detail is not None else None
        acc, count = evaluate_system(model, system, args.numb_test, pred, args.atomic)
        if detail is not None:
            detail.add_system(str(path), system, pred)
        total.merge(acc)
        fig = acc.figures()
        rows.append({"system": str(path), "frames": count, **fig})
        print(_row(str(path), count, fig))
    overall = total.figures()
    nfr = sum(r["frames"] for r in rows)
    print(_row("overall", nfr, overall))
    extra = [f"{name.replace('_', ' ')} {overall[f'rmse_{name}']:.3f} / {overall[f'mae_{name}']:.3f} "
             f"{unit.replace('Angstrom', 'A')}" for name, unit in EXTRA if f"rmse_{name}" in overall]
    if extra:
        print("# also, as dp test (overall RMSE / MAE): " + ", ".join(extra))
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
                                                ("virial", "meV/atom")) + EXTRA for m in ("rmse", "mae")}
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
