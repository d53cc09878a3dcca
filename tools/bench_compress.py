#!/usr/bin/env python
"""Compression and precision benchmark (issue: model compression and mixed precision).

Part 1, for trained Cu and five-element alloy models: energy and force RMSE against the
validation labels, the largest force difference from the uncompressed model, and the speed
(µs/atom/step, energy + forces + virial, neighbour search included) of the uncompressed model
and of 3rd- and 5th-order tables at dx 0.01 and 0.001.
Part 2, for the water model: the same figures for the precision policies double / mix32 / mix16,
uncompressed and compressed (5th order, dx 0.01), with speed at 1 536 and 12 288 atoms.

usage: python tools/bench_compress.py [--cu M] [--alloy M] [--water M] [--threads 2] [--frames 20]

`--speed-runs N` measures only the compressed-water speed targets, N times `--pause` seconds
apart, and prints their median and range (the machine's speed drifts over minutes); its tables
are order 3 (`numdp compress`'s default) and order 5 (DeePMD-kit's scheme) at dx 0.01, measured
in turn within each run (`--series-order 3` or `5` for one of them).

The alloy5 model is not shipped: train it first with `numdp train inputs/alloy5/train.toml`
(about 4 minutes on 2 cores); a missing model is reported and skipped (exit status 2).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from numdp.io.model_file import read_model  # noqa: E402
from numdp.io.npy_system import find_systems, load_system  # noqa: E402
from numdp.model.compress import compress  # noqa: E402
from numdp.model.dp_model import DPModel  # noqa: E402

# The alloy5 model is not shipped (20 MB); training it takes about 4 minutes on 2 cores.
TRAIN_HINT = {"alloy": " (train it with `numdp train inputs/alloy5/train.toml`, about 4 minutes "
                       "on 2 cores, or pass --alloy MODEL)"}

VARIANTS = [("uncompressed", None, None), ("order 3, dx 0.01", 3, 0.01), ("order 5, dx 0.01", 5, 0.01),
            ("order 3, dx 0.001", 3, 0.001), ("order 5, dx 0.001", 5, 0.001)]


def load_frames(root: Path, type_map, nframes: int):
    """Up to nframes evenly spread frames of every system under root: list of (pos, types, box, E, F)."""
    frames = []
    for path in find_systems(root):
        s = load_system(path)
        types = s.model_types(type_map)
        for f in np.linspace(0, s.nframes - 1, min(nframes, s.nframes)).astype(int):
            frames.append((s.coords[f], types, None if s.boxes is None else s.boxes[f],
                           s.energy[f], s.forces[f]))
    return frames


def errors(model: DPModel, frames, ref_forces=None):
    """Energy RMSE (meV/atom), force RMSE (meV/Å) and max |F - F_ref| (eV/Å) over frames."""
    se_e, se_f, nf = 0.0, 0.0, 0
    dmax = 0.0
    forces = []
    for k, (pos, types, box, e, f) in enumerate(frames):
        out = model.evaluate(pos, types, box, atom_virial=False)
        se_e += ((out.energy - e) / len(types)) ** 2
        se_f += np.sum((out.forces - f) ** 2)
        nf += f.size
        forces.append(out.forces)
        if ref_forces is not None:
            dmax = max(dmax, float(np.abs(out.forces - ref_forces[k]).max()))
    return 1000 * np.sqrt(se_e / len(frames)), 1000 * np.sqrt(se_f / nf), dmax, forces


def replicated(frame, natoms_target: int):
    """The frame's periodic cell replicated (k x k x k) to at least natoms_target atoms."""
    pos, types, box = frame[:3]
    k = max(1, int(np.ceil((natoms_target / len(types)) ** (1 / 3))))
    shifts = np.array([(a, b, c) for a in range(k) for b in range(k) for c in range(k)], float)
    big = (pos[None] + (shifts @ box)[:, None]).reshape(-1, 3)
    return big, np.tile(types, len(shifts)), box * k


def _evaluation_times(model: DPModel, system, least: int, seconds: float = 0.0) -> list[float]:
    """Wall times (s) of repeated evaluations of system = (positions, types, box) after a
    warm-up: at least `least` of them, and more until `seconds` have passed."""
    pos, types, box = system
    model.evaluate(pos, types, box, atom_virial=False)
    times = []
    start = time.perf_counter()
    while len(times) < least or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        model.evaluate(pos, types, box, atom_virial=False)
        times.append(time.perf_counter() - t)
    return times


def speed(model: DPModel, system, repeats: int = 3) -> float:
    """µs per atom per step (best of `repeats` after a warm-up)."""
    return min(_evaluation_times(model, system, repeats)) / len(system[1]) * 1e6


def speed_median(model: DPModel, system, seconds: float = 1.0, least: int = 3) -> float:
    """µs per atom per step: the median of evaluations repeated for `seconds` (at least `least`)
    after a warm-up.  Over a fixed time, a small system is sampled as long as a large one, and
    the median rides out the machine's bursts of slowness (a best-of-3 of 1 536 atoms spans
    only 0.1 s)."""
    return float(np.median(_evaluation_times(model, system, least, seconds))) / len(system[1]) * 1e6


def part1(name, model_path, valid, threads, nframes):
    params = read_model(model_path)
    frames = load_frames(valid, params.type_map, nframes)
    system = replicated(frames[0], 1500)
    print(f"\n## {name}: {model_path} on {valid} ({len(frames)} frames); speed at {len(system[1])} atoms, "
          f"{threads} threads")
    print(f"| variant | E RMSE meV/atom | F RMSE meV/Å | max abs(ΔF) vs uncompressed eV/Å | µs/atom/step |")
    print("|---|---:|---:|---:|---:|")
    ref = None
    for label, order, dx in VARIANTS:
        p = params if order is None else compress(params, dx=dx, order=order)[0]
        model = DPModel(p, nthreads=threads)
        e, f, dmax, forces = errors(model, frames, ref)
        if ref is None:
            ref = forces
        us = speed(model, system)
        print(f"| {label} | {e:.3f} | {f:.2f} | {'-' if order is None else f'{dmax:.1e}'} | {us:.1f} |",
              flush=True)


def part2(model_path, valid, threads, nframes):
    params = read_model(model_path)
    frames = load_frames(valid, params.type_map, nframes)
    cparams = compress(params, dx=0.01, order=5)[0]
    sizes = {n: replicated(frames[0], n) for n in (1536, 12288)}
    print(f"\n## water precision policies: {model_path} on {valid} ({len(frames)} frames), {threads} threads")
    print("| model | precision | E RMSE meV/atom | F RMSE meV/Å | ΔF RMSE vs double | "
          "µs/atom 1 536 | µs/atom 12 288 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for label, p in (("uncompressed", params), ("compressed o5 0.01", cparams)):
        base = None
        for prec in ("double", "mix32", "mix16"):
            model = DPModel(p, nthreads=threads, precision=prec)
            e, f, _, _ = errors(model, frames)
            base = f if base is None else base
            rel = 100 * (f - base) / base
            us = [speed(model, sizes[n], repeats=5) for n in (1536, 12288)]
            print(f"| {label} | {prec} | {e:.3f} | {f:.2f} | {rel:+.2f} % | {us[0]:.1f} | {us[1]:.1f} |",
                  flush=True)


TARGETS = {"double": 40.0, "mix32": 25.0}  # µs/atom/step, compressed water, 1 536 and 12 288 atoms


def gemm_rate(threads: int, seconds: float = 0.3) -> float:
    """The machine's float64 GEMM rate right now, GFLOP/s per core: `threads` threads at once
    multiply (384 x 1480) @ (1480 x 240), the first fitting layer of a chunk of water atoms.
    Printed next to each speed run so that a slow run can be told from a slow machine."""
    from concurrent.futures import ThreadPoolExecutor

    from numdp.blas import set_blas_threads

    set_blas_threads(1)
    rng = np.random.default_rng(0)
    a, b = rng.random((384, 1480)), rng.random((1480, 240))

    def one(_):
        out = np.empty((384, 240))
        np.matmul(a, b, out=out)
        count, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            np.matmul(a, b, out=out)
            count += 1
        return 2.0 * a.shape[0] * a.shape[1] * b.shape[1] * count / (time.perf_counter() - t0) / 1e9

    with ThreadPoolExecutor(threads) as pool:
        return float(np.mean(list(pool.map(one, range(threads)))))


def speed_series(model_path, valid, threads, runs, pause, orders=(3, 5)):
    """The compressed-speed targets measured `runs` times, `pause` s apart (the machine's speed
    drifts over minutes): each run, then per figure the median, range and runs meeting the target.
    Tables of each given order at dx 0.01 (3: `numdp compress`'s default; 5: DeePMD-kit's
    scheme), measured in turn within every run (in reverse order every other run) so that the
    orders see the same machine."""
    params = read_model(model_path)
    frames = load_frames(valid, params.type_map, 1)
    sizes = {n: replicated(frames[0], n) for n in (1536, 12288)}
    models = {}
    for order in orders:
        cparams = compress(params, dx=0.01, order=order)[0]
        for prec in TARGETS:
            models[order, prec] = DPModel(cparams, nthreads=threads, precision=prec)
    print(f"\n## compressed water speed series: {model_path}, orders {', '.join(map(str, orders))}, dx 0.01, "
          f"{threads} threads, {runs} runs {pause:g} s apart (each: the median of >= 1 s of evaluations), "
          f"µs/atom/step")
    table = {(order, prec, n): [] for order in orders for prec in TARGETS for n in sizes}
    rates = []
    for run in range(runs):
        if run:
            time.sleep(pause)
        rates.append(gemm_rate(threads))
        # every other run in reverse order, so that no figure always comes first or last
        for order, prec, n in (reversed(list(table)) if run % 2 else list(table)):
            table[order, prec, n].append(speed_median(models[order, prec], sizes[n]))
        print(f"run {run + 1}: " + ", ".join(f"o{o} {p} {n}: {v[-1]:.1f}" for (o, p, n), v in table.items())
              + f"; machine GEMM {rates[-1]:.1f} GFLOP/s per core", flush=True)
    print(f"machine float64 GEMM rate ({threads} threads at once): median {np.median(rates):.1f}, "
          f"range {min(rates):.1f}-{max(rates):.1f} GFLOP/s per core")
    print("| tables | figure | median | range | runs meeting the target |")
    print("|---|---|---:|---:|---:|")
    for (order, prec, n), values in table.items():
        ok = sum(v <= TARGETS[prec] for v in values)
        print(f"| order {order} | {prec} {n} (target {TARGETS[prec]:g}) | {np.median(values):.2f} | "
              f"{min(values):.1f}-{max(values):.1f} | {ok} of {len(values)} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cu", default=str(ROOT / "inputs/cu/model.h5"))
    ap.add_argument("--cu-valid", default=str(ROOT / "inputs/cu/data/valid"))
    ap.add_argument("--alloy", default=str(ROOT / "inputs/alloy5/model.h5"))
    ap.add_argument("--alloy-valid", default=str(ROOT / "inputs/alloy5/data/valid"))
    ap.add_argument("--water", default=str(ROOT / "inputs/water/model.h5"))
    ap.add_argument("--water-valid", default=str(ROOT / "inputs/water/data/data_3"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frames", type=int, default=20, help="validation frames per system")
    ap.add_argument("--skip", nargs="*", default=[], choices=["cu", "alloy", "water"])
    ap.add_argument("--speed-runs", type=int, default=0, metavar="N",
                    help="only measure the compressed water speed targets, N times (default: off)")
    ap.add_argument("--pause", type=float, default=20.0, help="seconds between speed runs")
    ap.add_argument("--series-order", type=int, nargs="+", default=[3, 5], choices=[3, 5],
                    help="table orders of the speed series (dx 0.01; default both: 3 is numdp "
                         "compress's default, 5 DeePMD-kit's scheme)")
    args = ap.parse_args()
    if args.speed_runs > 0:
        if not Path(args.water).is_file():
            print(f"bench_compress: model file {args.water} not found", file=sys.stderr)
            return 2
        speed_series(args.water, Path(args.water_valid), args.threads, args.speed_runs, args.pause,
                     args.series_order)
        return 0
    missing = 0
    parts = [("cu", args.cu, lambda: part1("Cu", args.cu, Path(args.cu_valid), args.threads, args.frames)),
             ("alloy", args.alloy,
              lambda: part1("alloy5", args.alloy, Path(args.alloy_valid), args.threads, args.frames)),
             ("water", args.water, lambda: part2(args.water, Path(args.water_valid), args.threads, args.frames))]
    for name, model, run in parts:
        if name in args.skip:
            continue
        if not Path(model).is_file():
            hint = TRAIN_HINT.get(name, "")
            print(f"bench_compress: skipping {name}: model file {model} not found{hint}", file=sys.stderr)
            missing += 1
            continue
        run()
    return 2 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
