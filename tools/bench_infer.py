#!/usr/bin/env python
"""Inference benchmark: µs per atom per step for DeePMD-kit's water.dp on replicated water boxes.

For 192, 1 536, 12 288 and 98 304 atoms (the 192-atom box of ../shared/oracle/water.npz
replicated) and 1 and 2 threads, prints (medians of up to 9 repetitions): the whole evaluation (neighbour search + energy +
forces + virial), the neighbour search alone, peak memory per atom, and the ratio of the measured
time to the FLOP floor = multiply-adds of the model per atom x 2 / (float64 GEMM rate measured in
this run x threads).  Each configuration runs in its own process so that its peak memory is its
own.  Reference: DeePMD-kit 3.2 on this kind of machine, 408 / 512 / 1 328 µs at 192 / 1 536 /
12 288 atoms (../shared/oracle/README.md).

usage: python tools/bench_infer.py [--model PATH] [--sizes 1 8 64 512] [--threads 1 2]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "oracle"
DEEPMD_US = {192: 408.0, 1536: 512.0, 12288: 1328.0}


def replicate(n: int, oracle: Path = SHARED):
    """The oracle's 192-atom water frame replicated to n = 192 k^3 atoms."""
    import numpy as np

    ref = np.load(oracle / "water.npz")
    pos0, box0, typ0 = ref["coord"][0], ref["box"][0], ref["atype"]
    k = round((n // len(typ0)) ** (1 / 3))
    shifts = np.array([(a, b, c) for a in range(k) for b in range(k) for c in range(k)], float)
    pos = (pos0[None, :, :] + (shifts @ box0)[:, None, :]).reshape(-1, 3)
    return pos, np.tile(typ0, len(shifts)), box0 * k


def gemm_rate(threads: int) -> float:
    """float64 GEMM FLOP/s on `threads` BLAS threads (2048^3 product, best of 3)."""
    import numpy as np

    from numdp.blas import set_blas_threads

    set_blas_threads(threads)
    a = np.random.default_rng(0).random((2048, 2048))
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t)
    set_blas_threads(1)
    return 2 * 2048 ** 3 / best


def macs_per_atom(model, pairs_per_atom: float) -> float:
    """Multiply-adds per atom of energy + forces + virial for the model's nets and contractions."""
    d = model.params.descriptor
    M, Ma = d.neuron[-1], d.axis_neuron
    emb = model.params.descriptor.embeddings[0]
    fwd = sum(lay.w.size for lay in emb.layers)           # value
    tan = sum(lay.w.size for lay in emb.layers[1:])       # forward-mode slope
    pair = fwd + tan + 4 * M + 9 * M + 12                 # + T contraction + backward + geometry
    fit = model.params.fitting.nets[0]
    fit_fwd = sum(lay.w.size for lay in fit.layers)
    fit_bwd = sum(lay.w.size for lay in fit.layers[:-1])
    return pairs_per_atom * pair + 4 * M * Ma * 3 + fit_fwd + fit_bwd


def one(n: int, threads: int, model_path: str, oracle: Path) -> dict:
    """Run one configuration in this process and return its figures."""
    import numpy as np

    import numdp
    from numdp.neighbor import build_nlist, extend

    model = numdp.load_model(model_path, nthreads=threads)
    pos, typ, box = replicate(n, oracle)
    d = model.params.descriptor
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    model.evaluate(pos, typ, box, atom_virial=False)  # warm-up (and first-touch of buffers)
    reps = max(2, min(9, int(20000 // n)))
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        model.evaluate(pos, typ, box, atom_virial=False)
        times.append(time.perf_counter() - t)
    total = float(np.median(times))  # the median resists the noise of a shared machine
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        ext = extend(pos, typ.astype(np.int32), box, d.rcut)
        nl = build_nlist(ext, d.rcut, d.sel, d.ntypes)
        times.append(time.perf_counter() - t)
    neigh = float(np.median(times))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    pairs = float(np.count_nonzero(nl.nlist >= 0)) / n
    return {"atoms": n, "threads": threads, "us_per_atom": total / n * 1e6,
            "neigh_us_per_atom": neigh / n * 1e6, "bytes_per_atom": (peak - rss0) / n,
            "pairs_per_atom": pairs, "macs_per_atom": macs_per_atom(model, pairs)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--oracle", default=str(SHARED), help="folder holding water.dp and water.npz")
    ap.add_argument("--model", default=None, help="model (default ORACLE/water.dp)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 64, 512],
                    help="replicas of the 192-atom box (cubes)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--one", nargs=2, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.model = args.model or str(Path(args.oracle) / "water.dp")
    if args.one:
        print(json.dumps(one(args.one[0], args.one[1], args.model, Path(args.oracle))))
        return 0
    rates = {t: gemm_rate(t) for t in args.threads}
    print(f"# model {args.model}")
    print("# float64 GEMM rate: " + ", ".join(f"{t} thread(s) {r / 1e9:.1f} GFLOP/s" for t, r in rates.items()))
    print(f"# {'atoms':>7} {'thr':>3} {'us/atom':>8} {'neigh':>7} {'B/atom':>8} {'pairs':>6} "
          f"{'MFLOP/at':>8} {'floor us':>8} {'x floor':>7} {'vs DeePMD':>9}")
    rows = []
    for reps in args.sizes:
        n = 192 * reps
        for t in args.threads:
            env = dict(os.environ, NUMDP_NUM_THREADS=str(t))
            res = subprocess.run([sys.executable, __file__, "--model", args.model, "--oracle", args.oracle,
                                  "--one", str(n), str(t)],
                                 capture_output=True, text=True, env=env, check=True)
            r = json.loads(res.stdout.strip().splitlines()[-1])
            floor = 2 * r["macs_per_atom"] / rates[t] * 1e6  # rates[t] already spans t cores
            ref = DEEPMD_US.get(n)
            vs = f"{ref / r['us_per_atom']:8.1f}x" if ref else "        -"
            print(f"  {n:7d} {t:3d} {r['us_per_atom']:8.1f} {r['neigh_us_per_atom']:7.2f} "
                  f"{r['bytes_per_atom']:8.0f} {r['pairs_per_atom']:6.1f} {2 * r['macs_per_atom'] / 1e6:8.2f} "
                  f"{floor:8.1f} {r['us_per_atom'] / floor:7.2f} {vs}", flush=True)
            rows.append(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
