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

With `--budget SECONDS` it trains instead for a wall-clock budget (set-up, statistics and
compilation included, as in DeePMD-kit's wall times) and then reports the RMSE over every
validation frame (as `dp test`; its time is printed separately), so that numdp at equal time can be read against DeePMD-kit's learning
curves (shared/oracle/training/).  The learning-rate and prefactor schedules are the input's,
over its numb_steps (or `--numb-steps N`): choose N to fit the budget, since a run cut by the
budget stops before its learning rate has decayed.

    python tools/bench_train.py --budget 565 [--numb-steps 4000]
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
    ap.add_argument("--budget", type=float, default=None,
                    help="train for this many wall-clock seconds and report validation RMSEs")
    ap.add_argument("--numb-steps", type=int, default=None,
                    help="with --budget: schedule length (default: the input's numb_steps)")
    args = ap.parse_args(argv)
    if args.budget is not None:
        return budget_run(args)

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


def budget_run(args) -> int:
    """Train args.input for args.budget wall-clock seconds; print steps done and validation RMSEs."""
    from numdp.train.config import load_config
    from numdp.train.loop import Trainer

    start = time.perf_counter()
    cfg = load_config(args.input)
    if args.numb_steps is not None:
        cfg.training.numb_steps = args.numb_steps
    if not cfg.validation.systems:
        print(f"{cfg.source}: no [validation] systems to report an RMSE on", file=sys.stderr)
        return 2
    trainer = Trainer(cfg, nthreads=args.threads, stream=io.StringIO())
    try:
        setup = time.perf_counter() - start
        step = 0
        # the budget covers set-up and steps (as DeePMD-kit's training wall time; its `dp test`
        # is separate): no step is started that would end past it at the mean step time
        per_step = 0.0
        while step < cfg.training.numb_steps:
            now = time.perf_counter()
            if now - start + per_step > args.budget:
                break
            trainer.train_step(step, display=False)
            step += 1
            per_step = (time.perf_counter() - start - setup) / step
        train_end = time.perf_counter()
        res = trainer.test(trainer.valid_sys, trainer.valid_cache)
        valid = time.perf_counter() - train_end
        total = time.perf_counter() - start
    finally:
        trainer.close()
    lr = trainer.sched.lr(step)
    print(f"numdp train for a budget of {args.budget:g} s: {cfg.source.name}, {args.threads} thread(s), "
          f"load average "
          f"{os.getloadavg()[0]:.2f}")
    print(f"set-up {setup:.1f} s; {step} of {cfg.training.numb_steps} steps in {train_end - start - setup:.1f} s "
          f"({(train_end - start - setup) / max(step, 1):.4f} s/step; lr reached {lr:.3g}); "
          f"validation {valid:.1f} s; total {total:.1f} s")
    line = (f"validation RMSE over {res.nframes} frames: energy {res.rmse_e * 1e3:.3f} meV/atom, "
            f"force {res.rmse_f * 1e3:.1f} meV/A")
    if res.rmse_v == res.rmse_v:  # not nan
        line += f", virial {res.rmse_v * 1e3:.2f} meV/atom"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
