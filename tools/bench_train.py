#!/usr/bin/env python
"""Seconds per training step of `numdp train` on the water example, split by phase.

Builds the trainer of inputs/water/train.toml (192 atoms, batch 1; statistics as in a real run),
makes warm-up steps (compilation, buffers, neighbour-list cache), then times `--steps` steps:

    data       batch choice and the frame's neighbour list (cached after its first use)
    forward    primal pass: energies, forces, virial, loss seeds
    backward   tangent and reverse passes: the exact loss gradient
    optimizer  Adam update (and the reduction of the per-thread gradients)

and prints a table with the ratio to DeePMD-kit 3.2's 0.197 s/step on the same kind of machine
(PyTorch backend, 2 threads; shared/oracle/README.md).  The uncached neighbour-list build time
of a frame is printed too (paid once per frame per run).

    python tools/bench_train.py [--threads 2] [--steps 40] [--input inputs/water/train.toml]
"""
from __future__ import annotations

import argparse
import io
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEEPMD_S_PER_STEP = 0.197


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", default=str(ROOT / "inputs" / "water" / "train.toml"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=8)
    args = ap.parse_args(argv)

    from numdp.train.config import load_config
    from numdp.train.loop import PHASES, Trainer

    cfg = load_config(args.input)
    log = io.StringIO()
    trainer = Trainer(cfg, nthreads=args.threads, stream=log)
    try:
        sys_ = trainer.train_sys[0]
        t0 = time.perf_counter()
        nbuild = 5
        for f in range(nbuild):
            trainer.train_cache.build(0, f)
        t_build = (time.perf_counter() - t0) / nbuild
        for t in range(args.warmup):
            trainer.train_step(t, display=False)
        for p in PHASES:
            trainer.timings[p] = 0.0
        start = time.perf_counter()
        cpu0 = time.process_time()
        for t in range(args.warmup, args.warmup + args.steps):
            trainer.train_step(t, display=False)
        wall = (time.perf_counter() - start) / args.steps
        cpu = (time.process_time() - cpu0) / args.steps
    finally:
        trainer.close()

    rows = [(p, trainer.timings[p] / args.steps) for p in ("data", "forward", "backward", "optimizer")]
    other = wall - sum(v for _, v in rows)
    print(f"numdp train step: {cfg.source.name} ({sys_.natoms} atoms, batch {sys_.batch_size}), "
          f"{trainer.flat.size:,} parameters, {args.threads} thread(s), {args.steps} steps after "
          f"{args.warmup} warm-up steps")
    print(f"{'phase':<12}{'ms/step':>10}{'share':>9}")
    for name, v in rows + [("other", other)]:
        print(f"{name:<12}{v * 1e3:10.2f}{v / wall * 100:8.1f}%")
    print(f"{'total':<12}{wall * 1e3:10.2f}{100.0:8.1f}%   (CPU time {cpu * 1e3:.1f} ms/step, "
          f"load average {os.getloadavg()[0]:.2f})")
    print(f"neighbour list of one frame, uncached: {t_build * 1e3:.2f} ms (once per frame per run)")
    ratio = wall / DEEPMD_S_PER_STEP
    print(f"DeePMD-kit 3.2 (PyTorch, 2 threads): {DEEPMD_S_PER_STEP:.3f} s/step; "
          f"numdp / DeePMD-kit = {ratio:.3f} (target <= 0.5: {'met' if ratio <= 0.5 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
