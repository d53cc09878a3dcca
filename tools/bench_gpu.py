"""GPU benchmark: µs per atom per step of DeePMD-kit's water.dp on the CUDA backend.

    PYTHONPATH=. python tools/bench_gpu.py --model .gpu/water.dp [--sizes 12288 98304 ...]

For each model variant (uncompressed; compressed at dx 0.01, order 5), precision (double, mix32,
mix16) and size (water boxes of 12 288, 98 304, ~1 M and ~10 M atoms, built as a lattice of
molecules at liquid density, so that no data file is needed), it times, best of --repeat after a
warm-up:
  total   = DPModel.evaluate (neighbour search + evaluation + copies back)
  search  = the neighbour list alone (the device search numdp.neighbor.device.build_nlist_cuda,
            as model.evaluate calls it)
  eval    = the evaluation alone on a prebuilt list (DPModel.compute), and for uncompressed
            double / mix32 also with the fused per-pair embedding kernel instead of batched
            matrix products ("fused" column: keep the faster as the default), and with
            floating-point atomics instead of the deterministic gathers ("atomic" column: the cost
            of determinism; issue 13 keeps the gathers unless they cost more than 10 %)
and reads the device memory held (CuPy's pool) to report bytes per atom (slope between sizes,
i.e. beyond the fixed scratch), the largest box that fits, and the FLOP floor: the multiply-adds
per atom divided by the matrix-product rate measured in the same run.  A size whose projected
time would overrun --budget seconds is skipped (and said so).  A short table is printed last;
--json writes every figure, rewritten after each configuration (a run cut short keeps what it
had), and `--table FILE` prints the table of such a file without a device.  Under
NUMBA_ENABLE_CUDASIM=1 it runs too (tools/gpu_check.sh --sim: --sizes 3 --quick): the figures are
then the simulator's and mean nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

SIZES = [12288, 98304, 1_048_576, 10_077_696]


def water_box(n: int):
    """~n atoms of water (O type 0, H type 1) as a cubic lattice of molecules at 0.0334 Å⁻³,
    with a deterministic pseudo-random orientation per molecule.  Returns pos, types, box."""
    nmol = max(1, n // 3)
    k = max(1, round(nmol ** (1 / 3)))
    a = (1 / 0.0334) ** (1 / 3)    # lattice spacing, Å
    g = np.stack(np.meshgrid(*[np.arange(k)] * 3, indexing="ij"), -1).reshape(-1, 3) * a
    rng = np.random.default_rng(0)
    u = rng.normal(size=(len(g), 3))
    u /= np.linalg.norm(u, axis=1)[:, None]
    v = np.cross(u, rng.normal(size=(len(g), 3)))
    v /= np.linalg.norm(v, axis=1)[:, None]
    th = np.deg2rad(104.5) / 2
    h1 = g + 0.9572 * (np.cos(th) * u + np.sin(th) * v)
    h2 = g + 0.9572 * (np.cos(th) * u - np.sin(th) * v)
    pos = np.stack([g, h1, h2], 1).reshape(-1, 3)
    types = np.tile(np.array([0, 1, 1], np.int32), len(g))
    return pos, types, np.eye(3) * k * a


def sync(be):
    if not be.simulator:
        import cupy

        cupy.cuda.Device().synchronize()


def held_bytes(be) -> int:
    if be.simulator:
        return 0
    import cupy

    return int(cupy.get_default_memory_pool().total_bytes())


def free_pool(be) -> None:
    """Return CuPy's cached blocks, so that the memory held next is one configuration's."""
    if not be.simulator:
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()


def free_bytes(be) -> int:
    if be.simulator:
        return 0
    import cupy

    return int(cupy.cuda.runtime.memGetInfo()[0] + cupy.get_default_memory_pool().free_bytes())


def matmul_rates(be, n: int) -> dict:
    """FLOP/s of an n x n x n product in float64, float32 and float16→float32 (best of 3)."""
    xp = be.xp
    a = xp.asarray(np.random.default_rng(0).random((n, n)))
    out = {}
    for name, dt, half in [("double", np.float64, False), ("mix32", np.float32, False), ("mix16", np.float32, True)]:
        x = a.astype(dt)
        try:
            be.matmul(x, x, half=half)
        except Exception as exc:  # noqa: BLE001 - report and go on
            print(f"# FAILED matrix product {name}: {type(exc).__name__}: {exc}")
            out[name] = float("nan")
            continue
        sync(be)
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            be.matmul(x, x, half=half)
            sync(be)
            best = min(best, time.perf_counter() - t)
        out[name] = 2 * n ** 3 / best
    return out


def neighbour_search(be, model, pos, types, box):
    """(DeviceNeighborList with the backend's arrays, "device"): the list `model.evaluate` builds
    (numdp.model.cuda_evaluator.device_neighbor_list, the device search)."""
    from numdp.model.cuda_evaluator import device_neighbor_list

    d = model.params.descriptor
    return device_neighbor_list(be, pos, types, box, d.rcut, d.sel), "device"


WARMUP = 1   # untimed calls before the timed ones (JIT compilation, memory pool growth)


def best_of(fn, repeat, be):
    for _ in range(WARMUP):
        fn()
    sync(be)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        sync(be)
        best = min(best, time.perf_counter() - t)
    return best


def write_results(path, rates, rows, simulator: bool, free: int | None, complete: bool) -> None:
    """Every figure so far to `path` (JSON; written to a temporary file, then renamed, after each
    configuration: a run killed by its time limit leaves the figures it had)."""
    if not path:
        return
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(dict(rates=rates, rows=rows, simulator=simulator, free_bytes=free,
                                   complete=complete), indent=1))
    os.replace(tmp, path)


def print_summary(rows, free: int | None, simulator: bool) -> None:
    """The short table: per (variant, precision, size) the µs/atom/step figures, bytes per atom
    beyond the fixed scratch (slope of the device memory held between the two largest sizes) and
    the largest system that fits (the free memory spent at that slope)."""
    print("\n# summary (µs/atom/step, best of runs; bytes/atom = slope of device memory held)")
    print(f"# {'variant':>12} {'prec':>6} {'atoms':>9} {'total':>8} {'eval':>8} {'fused':>8} {'atomic':>8} {'team':>8} "
          f"{'search':>8} "
          f"{'floor':>8} {'B/atom':>8} {'max atoms (est.)':>16}")
    combos = list(dict.fromkeys((r["variant"], r["precision"]) for r in rows))
    for variant, prec in combos:
        rs = [r for r in rows if r["variant"] == variant and r["precision"] == prec]
        slope = None
        if len(rs) >= 2 and rs[-1]["atoms"] > rs[-2]["atoms"] and not simulator:
            slope = (rs[-1]["held_bytes"] - rs[-2]["held_bytes"]) / (rs[-1]["atoms"] - rs[-2]["atoms"])
        # the largest system that fits: the free memory at the end of the run spent at `slope`
        # bytes per atom on top of the largest run (its fixed scratch is already held)
        nmax = int(rs[-1]["atoms"] + free / slope) if slope and slope > 0 and free else None
        for r in rs:
            r["bytes_per_atom"] = slope
            r["max_atoms_estimate"] = nmax
            fused = "-" if r["us_eval_fused"] is None else f"{r['us_eval_fused']:8.3f}"
            atomic = "-" if r.get("us_eval_atomic") is None else f"{r['us_eval_atomic']:8.3f}"
            team = "-" if r.get("us_eval_team") is None else f"{r['us_eval_team']:8.3f}"
            print(f"  {variant:>12} {prec:>6} {r['atoms']:>9} {r['us_total']:8.3f} {r['us_eval']:8.3f} "
                  f"{fused:>8} {atomic:>8} {team:>8} {r['us_search']:8.3f} {r['flop_floor_us']:8.4f} "
                  f"{'-' if slope is None else f'{slope:8.0f}':>8} {'-' if nmax is None else nmax:>16}")
    if not rows:
        print("  (no configuration finished)")


def print_table_file(path) -> int:
    """`--table FILE`: the summary of a (possibly partial) --json file, without a device."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        print(f"# no benchmark figures: {path}: {exc}")
        return 1
    state = "complete" if data.get("complete") else "PARTIAL (the run stopped early)"
    rates = data.get("rates") or {}
    print(f"# bench_gpu results {path}: {state}; {'SIMULATOR: figures meaningless' if data.get('simulator') else 'GPU'}")
    print("# matrix-product rate (TFLOP/s): " + ", ".join(f"{k} {v / 1e12:.2f}" for k, v in rates.items()))
    print_summary(data.get("rows", []), data.get("free_bytes"), bool(data.get("simulator")))
    return 0


def profile(be, params, chunk, args) -> int:
    """--profile: per variant, precision and size, one warm-up evaluate, then one with every
    device operation timed apart; the operations that took longest, per call.  chunk: centre
    atoms per chunk by variant."""
    from numdp.kernels.cuda.opcount import OpCounter
    from numdp.model.cuda_evaluator import KernelForm
    from numdp.model.dp_model import DPModel

    forms = [KernelForm.THREAD] + ([] if args.no_team else [KernelForm.TEAM])
    for n in args.sizes:
        pos, types, box = water_box(n)
        for variant in args.variants:
            for prec in args.precisions:
                model = DPModel(params[variant], precision=prec, device="cuda", chunk=chunk[variant])
                for form in forms:
                    model._ev.kernel_form = form
                    model.evaluate(pos, types, box, atom_virial=False)   # compiles, fills the pools
                    sync(be)
                    counter = OpCounter(timed=True)
                    t = time.perf_counter()
                    with counter.counting():
                        model.evaluate(pos, types, box, atom_virial=False)
                        sync(be)
                    wall = time.perf_counter() - t
                    print(f"\n# profile {variant} {prec} {len(types)} atoms, kernel form {form.value}: "
                          f"{1e3 * wall:.3f} ms with every operation synchronised "
                          f"({1e6 * wall / len(types):.3f} µs/atom)")
                    print(counter.time_table(), flush=True)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / ".gpu" / "water.dp"))
    ap.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    ap.add_argument("--precisions", nargs="+", help="default: double mix32 mix16 (--quick: mix32)")
    ap.add_argument("--variants", nargs="+", help="default: compressed uncompressed (--quick: compressed)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--budget", type=float, default=300.0, help="seconds for all timings")
    ap.add_argument("--quick", action="store_true",
                    help="one call per timing, no warm-up, compressed mix32 unless --variants / "
                    "--precisions say otherwise (simulator check)")
    ap.add_argument("--no-fused", action="store_true", help="skip the fused per-pair embedding timing")
    ap.add_argument("--no-atomic", action="store_true", help="skip the floating-point atomics timing")
    ap.add_argument("--no-team", action="store_true",
                    help="skip the timing with the experimental team kernels (KernelForm.TEAM)")
    ap.add_argument("--chunk-scale", type=int, default=1,
                    help="centre atoms per chunk = this x the evaluator's default (4 096 uncompressed, "
                    "32 768 compressed): fewer launches per call for a larger fixed scratch")
    ap.add_argument("--json", help="write all figures here (rewritten after each configuration)")
    ap.add_argument("--profile", action="store_true",
                    help="instead of the timings: one model.evaluate per variant, precision and size with "
                    "each kernel and array operation timed apart (device synchronised around each: "
                    "numdp.kernels.cuda.opcount.OpCounter(timed=True)); prints where the time goes")
    ap.add_argument("--table", metavar="JSON", help="only print the summary table of a --json file "
                    "(a partial one too) and exit; needs no device")
    args = ap.parse_args(argv)
    if args.table:
        return print_table_file(args.table)
    if args.quick:   # one timed call each, no warm-up: a check that the script runs
        global WARMUP
        args.repeat, WARMUP = 1, 0
        args.precisions = args.precisions or ["mix32"]
        args.variants = args.variants or ["compressed"]
    args.precisions = args.precisions or ["double", "mix32", "mix16"]
    args.variants = args.variants or ["compressed", "uncompressed"]
    warnings.simplefilter("ignore")

    import numdp
    from numdp.backend import get_backend
    from numdp.model.compress import compress
    from numdp.model.cuda_evaluator import DEFAULT_CHUNK, DEFAULT_CHUNK_COMPRESSED, KernelForm
    from numdp.model.dp_model import DPModel
    from bench_infer import macs_per_atom

    be = get_backend("cuda")
    print(f"# backend cuda ({'SIMULATOR: figures meaningless' if be.simulator else 'GPU'}), model {args.model}")
    base = numdp.load_model(args.model, nthreads=1).params
    params = {"uncompressed": base}
    if "compressed" in args.variants:
        params["compressed"] = compress(base, dx=0.01, order=5)[0]
    chunk = {"uncompressed": DEFAULT_CHUNK * args.chunk_scale, "compressed": DEFAULT_CHUNK_COMPRESSED * args.chunk_scale}
    print(f"# centre atoms per chunk: uncompressed {chunk['uncompressed']}, compressed {chunk['compressed']}")
    if args.profile:
        return profile(be, params, chunk, args)
    rates = matmul_rates(be, 64 if be.simulator else 4096)
    print("# matrix-product rate (TFLOP/s): " + ", ".join(f"{k} {v / 1e12:.2f}" for k, v in rates.items()))
    rows = []
    write_results(args.json, rates, rows, be.simulator, None, complete=False)
    t_start = time.perf_counter()
    models = {(v, pr): DPModel(params[v], precision=pr, device="cuda", chunk=chunk[v])
              for v in args.variants for pr in args.precisions}
    last = {}   # per-atom time of each combination at its last size
    # sizes outermost: every combination gets its small sizes before any gets the largest
    for n in args.sizes:
        pos, types, box = water_box(n)
        natoms = len(types)
        for (variant, prec), model in models.items():
            fused = variant == "uncompressed" and prec != "mix16" and not args.no_fused
            elapsed = time.perf_counter() - t_start
            if (variant, prec) in last:   # projected: every timing below, (repeat + WARMUP) runs each
                proj = last[variant, prec] * natoms * (args.repeat + WARMUP) * (3 + fused + (not args.no_atomic)
                                                                                + (not args.no_team))
                if elapsed + proj > args.budget:
                    print(f"# skip {variant} {prec} {natoms}: projected {proj:.0f} s beyond the budget")
                    continue
            try:   # one failing configuration must not cost the rest of a GPU session
                free_pool(be)
                nl, how = neighbour_search(be, model, pos, types, box)
                t_nl = best_of(lambda: neighbour_search(be, model, pos, types, box), args.repeat, be)
                t_ev = best_of(lambda: model.compute(nl.positions, nl.nlist, types), args.repeat, be)
                t_fused = None   # the fused per-pair embedding kernel instead of batched products
                if fused:
                    model._ev.embedding = "fused"
                    t_fused = best_of(lambda: model.compute(nl.positions, nl.nlist, types), args.repeat, be)
                    model._ev.embedding = "gemm"
                t_atomic = None   # what determinism costs: the same evaluation with floating-point atomics
                if not args.no_atomic:
                    model._ev.assembly = "atomic"
                    t_atomic = best_of(lambda: model.compute(nl.positions, nl.nlist, types), args.repeat, be)
                    model._ev.assembly = "gather"
                t_team = None   # the experimental team kernels and batched back_D (KernelForm.TEAM)
                if not args.no_team:
                    model._ev.kernel_form = KernelForm.TEAM
                    t_team = best_of(lambda: model.compute(nl.positions, nl.nlist, types), args.repeat, be)
                    model._ev.kernel_form = KernelForm.THREAD
                t_all = best_of(lambda: model.evaluate(pos, types, box, atom_virial=False), args.repeat, be)
                held = held_bytes(be)
                pairs = float(np.mean(np.asarray(be.to_host(nl.nlist)) >= 0, axis=0).sum())
                flops = 2 * macs_per_atom(model, pairs)
                row = dict(variant=variant, precision=prec, atoms=natoms, search=how,
                           us_total=1e6 * t_all / natoms, us_eval=1e6 * t_ev / natoms,
                           us_search=1e6 * t_nl / natoms, held_bytes=held,
                           us_eval_fused=None if t_fused is None else 1e6 * t_fused / natoms,
                           us_eval_atomic=None if t_atomic is None else 1e6 * t_atomic / natoms,
                           us_eval_team=None if t_team is None else 1e6 * t_team / natoms,
                           chunk=chunk[variant],
                           pairs_per_atom=pairs, flop_floor_us=1e6 * flops / rates[prec],
                           beyond_table=model.beyond_table)
                rows.append(row)
                write_results(args.json, rates, rows, be.simulator, free_bytes(be), complete=False)
                last[variant, prec] = t_all / natoms
                print(f"{variant:>12} {prec:>6} {natoms:>9} total {row['us_total']:8.3f} eval "
                      f"{row['us_eval']:8.3f} (fused embedding: "
                      f"{'-' if t_fused is None else format(row['us_eval_fused'], '.3f')}; with atomics: "
                      f"{'-' if t_atomic is None else format(row['us_eval_atomic'], '.3f')}; team kernels: "
                      f"{'-' if t_team is None else format(row['us_eval_team'], '.3f')}) "
                      f"search({how}) {row['us_search']:8.3f} µs/atom/step; "
                      f"held {held / 2**20:9.1f} MiB; floor {row['flop_floor_us']:.4f}", flush=True)
                nl = None   # free the list before the next configuration
            except Exception as exc:  # noqa: BLE001 - report and go on
                print(f"# FAILED {variant} {prec} {natoms}: {type(exc).__name__}: {exc}", flush=True)
                last[variant, prec] = float("inf")   # skips its larger sizes
                model._ev.embedding, model._ev.assembly = "gemm", "gather"
                model._ev.kernel_form = KernelForm.THREAD
    free = free_bytes(be)
    print_summary(rows, free, be.simulator)   # (adds bytes_per_atom, max_atoms_estimate to rows)
    write_results(args.json, rates, rows, be.simulator, free, complete=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
