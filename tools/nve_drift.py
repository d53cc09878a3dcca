#!/usr/bin/env python
"""Energy conservation (NVE) of every CPU model path: double / mix32 / mix16 precision, each
uncompressed and compressed (quintic and cubic tables at dx 0.01), on water.

For each path and time step it runs `numdp run` (in this process, through numdp's command line)
on the 64-H2O box of inputs/water (masses O 16, H 2, Maxwell-Boltzmann velocities at 330 K, NVE)
for --time ps, reads the H5MD observables written every step and prints, per path and time
step, in meV/atom:

- `E std`: the standard deviation of the total energy E(t) over the run;
- `drift`: the slope of a least-squares line through E(t), meV/atom/ps, and `± se`, its
  standard error from the line through 10 block means (E(t) is correlated over tens of fs, so the
  slope's standard error from the individual steps would be far too small; 10 blocks of
  >= 0.1 ps are nearly independent: 8 degrees of freedom);
- `K std`: the standard deviation of the kinetic energy, the scale of the energy that flows
  between K and U (E std / K std is the integrator's relative error);
- `ratio`: E std at this dt over E std at the smallest dt (4 per halving for velocity Verlet with
  forces that are the gradient of the energy: the shadow-Hamiltonian argument of
  tests/test_nve_paths.py).

The model is the shipped water model (inputs/water/model.h5; DeePMD-kit's water example trained by
numdp). DeePMD-kit's own water.dp in ../shared/oracle has random weights: its atoms collapse
within ~20 steps (its README says so), so it cannot run an NVE of picoseconds.

    python tools/nve_drift.py                         # 9 paths x dt 0.5, 1.0 fs, 1 ps each
    python tools/nve_drift.py --time 0.2 --paths double-none mix32-quintic
    python tools/nve_drift.py --replicate 2 2 2       # 1 536 atoms (8x the time)

Output: one line per run as it finishes, then the table; the compressed models and run outputs
go to a temporary folder (--keep DIR keeps them there).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import math
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from numdp.cli import main as numdp_main  # noqa: E402

PRECISIONS = ("double", "mix32", "mix16")
TABLES = {"none": None, "quintic": 5, "cubic": 3}   # `numdp compress --order`, dx 0.01
ALL_PATHS = [f"{p}-{t}" for t in TABLES for p in PRECISIONS]
NBLOCKS = 10


@dataclass
class Figures:
    """NVE figures of one run; energies per atom."""
    path: str
    dt_fs: float
    steps: int
    e_std: float        # meV/atom
    drift: float        # meV/atom/ps
    drift_se: float     # meV/atom/ps
    k_std: float        # meV/atom
    wall: float         # s


def drift_fit(t: np.ndarray, e: np.ndarray, nblocks: int = NBLOCKS) -> tuple[float, float]:
    """(slope, standard error) of e(t): the slope of the least-squares line through every sample,
    its standard error from the line through `nblocks` block means (samples correlated within a
    block, blocks nearly independent)."""
    slope = np.polyfit(t, e, 1)[0]
    n = len(t) // nblocks * nblocks
    tb = t[:n].reshape(nblocks, -1).mean(axis=1)
    eb = e[:n].reshape(nblocks, -1).mean(axis=1)
    coef = np.polyfit(tb, eb, 1)
    resid = eb - np.polyval(coef, tb)
    se = math.sqrt(resid @ resid / (nblocks - 2) / ((tb - tb.mean()) @ (tb - tb.mean())))
    return float(slope), se


def quiet(argv: list[str]) -> None:
    """numdp's command line in this process, its output kept unless it fails."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        status = numdp_main(argv)
    if status != 0:
        sys.exit(f"numdp {' '.join(argv)} failed ({status}):\n{out.getvalue()}")


def compress_models(model: Path, work: Path) -> dict[str, Path]:
    """The model file of each table kind: the model itself, and `numdp compress` at dx 0.01."""
    files = {"none": model}
    for kind, order in TABLES.items():
        if order is not None:
            files[kind] = work / f"model_{kind}.h5"
            quiet(["compress", str(model), "-o", str(files[kind]), "-s", "0.01", "--order", str(order)])
    return files


def run_nve(model: Path, precision: str, dt_fs: float, steps: int, args, folder: Path):
    """(time ps, total energy eV, kinetic energy eV) of every step of one NVE run."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "md.toml").write_text(textwrap.dedent(f"""
        [model]
        file = "{model}"
        precision = "{precision}"
        threads = {args.threads}
        [system]
        file = "{args.start.resolve()}"
        replicate = {list(args.replicate)}
        velocities = {{ temperature = {args.temperature}, seed = {args.seed} }}
        masses = {{ O = 16.0, H = 2.0 }}
        [md]
        timestep = {dt_fs * 1e-3}
        steps = {steps}
        ensemble = "nve"
        [output]
        every = 1
        fields = ["velocity"]
        thermo_every = {steps}
        checkpoint_every = 0
        progress = "none"
    """))
    quiet(["run", str(folder / "md.toml")])
    with h5py.File(folder / "traj.h5md", "r") as f:
        obs = f["observables"]
        return (obs["total_energy/time"][()], obs["total_energy/value"][()],
                obs["kinetic_energy/value"][()])


def natoms_of(args) -> int:
    with open(args.start) as f:
        return int(f.readline()) * int(np.prod(args.replicate))


def table(rows: list[Figures]) -> str:
    """The figures as a Markdown table, with E std relative to the smallest dt of each path."""
    smallest = {}
    for r in rows:
        if r.path not in smallest or r.dt_fs < smallest[r.path].dt_fs:
            smallest[r.path] = r
    lines = ["| path | dt fs | steps | E std meV/atom | drift meV/atom/ps | ± se | K std meV/atom | "
             "E std / K std | ratio to smallest dt | wall s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (ALL_PATHS.index(r.path), r.dt_fs)):
        ratio = r.e_std / smallest[r.path].e_std
        lines.append(f"| {r.path} | {r.dt_fs:g} | {r.steps} | {r.e_std:.2e} | {r.drift:+.2e} | "
                     f"{r.drift_se:.1e} | {r.k_std:.3f} | {r.e_std / r.k_std:.1e} | "
                     f"{ratio:.2f} | {r.wall:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "inputs" / "water" / "model.h5")
    ap.add_argument("--start", type=Path, default=ROOT / "inputs" / "water" / "start.xyz",
                    help="extxyz start structure of water (O, H)")
    ap.add_argument("--replicate", type=int, nargs=3, default=(1, 1, 1))
    ap.add_argument("--paths", nargs="+", default=ALL_PATHS, choices=ALL_PATHS, metavar="PATH",
                    help=f"PRECISION-TABLES, of {' '.join(ALL_PATHS)} (default all)")
    ap.add_argument("--dt", type=float, nargs="+", default=(0.5, 1.0), help="time steps, fs")
    ap.add_argument("--time", type=float, default=1.0, help="length of each run, ps")
    ap.add_argument("--temperature", type=float, default=330.0, help="K, the start's velocities")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep", type=Path, help="put the compressed models and run outputs here")
    args = ap.parse_args(argv)
    natoms = natoms_of(args)
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        work = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nve_drift_")))
        work.mkdir(parents=True, exist_ok=True)
        kinds = {p.split("-")[1] for p in args.paths}
        files = compress_models(args.model.resolve(), work) if kinds - {"none"} else {"none": args.model.resolve()}
        print(f"# {args.model}, {natoms} atoms, NVE from {args.temperature:g} K, {args.time:g} ps per run, "
              f"{args.threads} threads; compressed in {time.perf_counter() - started:.0f} s", flush=True)
        rows = []
        for dt in args.dt:
            steps = int(round(args.time / (dt * 1e-3)))
            for path in args.paths:
                precision, kind = path.split("-")
                t0 = time.perf_counter()
                t, e, k = run_nve(files[kind], precision, dt, steps, args, work / f"{path}_{dt:g}fs")
                wall = time.perf_counter() - t0
                slope, se = drift_fit(t, e / natoms * 1e3)
                rows.append(Figures(path, dt, steps, e.std() / natoms * 1e3, slope, se,
                                    k.std() / natoms * 1e3, wall))
                r = rows[-1]
                print(f"{path:15s} dt {dt:g} fs: E std {r.e_std:.2e} meV/atom, drift {r.drift:+.2e} "
                      f"± {r.drift_se:.1e} meV/atom/ps, K std {r.k_std:.3f} meV/atom ({wall:.0f} s)", flush=True)
    print()
    print(table(rows))
    print(f"\n# total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
