#!/usr/bin/env python
"""Seconds per training step of `numdp train` on the water example, split by phase.

Builds the trainer of inputs/water/train.toml (192 atoms, batch 1; statistics as in a real run),
makes warm-up steps (compilation, buffers, neighbour-list cache), then times `--steps` steps:

    data       batch choice and the frame's neighbour list (cached after its first use)
    forward    primal pass: energies, forces, virial, loss seeds
    backward   tangent and reverse passes: the exact loss gradient
    optimizer  Adam update (and the reduction of the per-thread gradients)

and prints a table with the ratio to DeePMD-kit 3.2's 0.197 s/step measured on another machine
(seed-1 run of shared/oracle/training, Intel, PyTorch backend, 2 threads): a rough guide only,
since machines differ by tens of per cent; `--deepmd` measures DeePMD-kit on this machine in the
same run instead.  The uncached neighbour-list build time of a frame is printed too (paid once
per frame per run).

    python tools/bench_train.py [--threads 2] [--steps 40] [--input inputs/water/train.toml]

With `--budget SECONDS` it trains instead for a wall-clock budget (set-up, statistics and
compilation included, as in DeePMD-kit's wall times) and then reports the RMSE over every
validation frame (as `dp test`; its time is printed separately), so that numdp at equal time can be read against DeePMD-kit's learning
curves (shared/oracle/training/).  The learning-rate and prefactor schedules are the input's,
over its numb_steps (or `--numb-steps N`): choose N to fit the budget, since a run cut by the
budget stops before its learning rate has decayed.

    python tools/bench_train.py --budget 565 [--numb-steps 4000]

`--batch N` overrides the input's training batch size.  A DeePMD-kit input.json is read as
`dp train` reads it, with its system paths relative to the working directory: the benchmark
resolves them against the file's own folder (shared/oracle/training/*.input.json work as they
are).  `--ab OTHER_SOURCE_TREE` measures before/after in one run: it alternates this timing
in fresh processes with the numdp of OTHER_SOURCE_TREE (A) and of this tree (B), `--rounds`
times each, and prints every run and the median, minimum and maximum s/step of each side
(the machine's load changes between runs: read the spread, not one figure).

    python tools/bench_train.py --ab /tmp/base --rounds 5 --batch 4 \
        --input ../shared/oracle/training/water_2k_seed1.input.json

With `--lockstep N` the two sides are two long-lived processes instead, each building its
trainer once (and making --warmup steps); they then take turns (A B, B A, A B, ...) making N
steps at a time, `--rounds` turns each, and the per-turn ratio B / A is reported (median and
quartiles, wall and CPU time).  Adjacent turns see nearly the same machine load, so on a
machine shared with other jobs this resolves differences of a few per cent that whole runs
minutes apart cannot.

    python tools/bench_train.py --ab /tmp/base --lockstep 5 --rounds 24 \
        --input ../shared/oracle/training/cu_5k_seed1.input.json

`--deepmd DP` (the path of DeePMD-kit's `dp` executable, installed elsewhere: it is not a numdp
dependency) measures the baseline in the same run: it alternates this timing (fresh processes)
with `dp --pt train` of the same DeePMD-kit input (`--input` must be a .json) for
`--deepmd-steps` steps (default 300) in a temporary folder, with the same number of threads
(OMP_NUM_THREADS, DP_INTRA_OP_PARALLELISM_THREADS = --threads, one inter-op thread), `--rounds`
times each, and reads DeePMD-kit's own "average training time" (its first `disp_freq` steps excluded, which
needs more than 2 x disp_freq steps; its validation every `disp_freq` steps included, 3 frames
per 100 steps for the water input; numdp's timing leaves its validation out, about 1 % of a
step at that rate: its time is printed).
It prints every run, the medians and their ratio against the issue's target (<= 0.25), and the
ratio of each round's two adjacent runs (median and range).

    python tools/bench_train.py --deepmd /path/to/venv/bin/dp --rounds 3 \
        --input ../shared/oracle/training/water_2k_seed1.input.json
"""
from __future__ import annotations

import argparse
import io
import importlib
import json
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEEPMD_S_PER_STEP = 0.197   # oracle seed-1 run, another (Intel) machine
TARGET_RATIO = 0.25          # issue 17: numdp's step <= 0.25x DeePMD-kit's on the same machine


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
    ap.add_argument("--batch", type=int, default=None, help="training batch size (frames)")
    ap.add_argument("--ab", default=None, metavar="SOURCE_TREE",
                    help="alternate runs with the numdp of SOURCE_TREE (A) and of this tree (B)")
    ap.add_argument("--rounds", type=int, default=3, help="with --ab or --deepmd: runs of each side")
    ap.add_argument("--lockstep", type=int, default=None, metavar="N",
                    help="with --ab: two long-lived processes taking turns of N steps")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # a --lockstep side
    ap.add_argument("--deepmd", default=None, metavar="DP",
                    help="alternate runs with DeePMD-kit's `dp --pt train` (path of `dp`) on the same input")
    ap.add_argument("--deepmd-steps", type=int, default=300, help="with --deepmd: steps of each DeePMD-kit run")
    args = ap.parse_args(argv)
    if args.ab is not None and args.deepmd is not None:
        ap.error("--ab and --deepmd are separate comparisons: give one")
    if args.deepmd is not None:
        return deepmd_run(args, argv if argv is not None else sys.argv[1:])
    if args.serve:
        return serve(args)
    if args.ab is not None and args.lockstep is not None:
        return lockstep_run(args, argv if argv is not None else sys.argv[1:])
    if args.ab is not None:
        return ab_run(args, argv if argv is not None else sys.argv[1:])
    if args.budget is not None:
        return budget_run(args)

    from numdp.train.loop import PHASES, Trainer

    cfg = load_input(args)
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
        t_valid = None
        if trainer.valid_sys:
            _, pref = trainer.prefactors(0)
            trainer.validate(pref)
            nv = 5
            t0 = time.perf_counter()
            for _ in range(nv):
                trainer.validate(pref)
            t_valid = (time.perf_counter() - t0) / nv
    finally:
        trainer.close()

    rows = [(p, trainer.timings[p] / args.steps) for p in ("data", "forward", "backward", "optimizer")]
    other = wall - sum(v for _, v in rows)
    print(f"numdp train step: {cfg.source.name} ({sys_.natoms} atoms, batch {sys_.batch_size}), "
          f"{trainer.flat.size:,} parameters, {args.threads} thread(s), {args.steps} steps after "
          f"{args.warmup} warm-up steps; {numpy_blas()}")
    print(f"{'phase':<12}{'ms/step':>10}{'share':>9}")
    for name, v in rows + [("other", other)]:
        print(f"{name:<12}{v * 1e3:10.2f}{v / wall * 100:8.1f}%")
    print(f"{'total':<12}{wall * 1e3:10.2f}{100.0:8.1f}%   (CPU time {cpu * 1e3:.1f} ms/step, "
          f"load average {os.getloadavg()[0]:.2f})")
    print(f"neighbour list of one frame, uncached: {t_build * 1e3:.2f} ms (once per frame per run)")
    if t_valid is not None:
        print(f"validation ({cfg.validation.numb_btch} batches of {trainer.valid_sys[0].batch_size} "
              f"frame(s), at every display step): {t_valid * 1e3:.2f} ms")
    ratio = wall / DEEPMD_S_PER_STEP
    print(f"DeePMD-kit 3.2 (PyTorch, 2 threads) on another machine: {DEEPMD_S_PER_STEP:.3f} s/step; "
          f"numdp / that = {ratio:.3f} (a guide only: --deepmd measures it on this machine)")
    return 0


def numpy_blas() -> str:
    """NumPy's BLAS and the kernel it chose for this CPU (OPENBLAS_CORETYPE overrides the choice;
    SkylakeX's AVX-512 products are ~1.3x Haswell's AVX2 ones on the AMD EPYC machines), read
    through threadpoolctl when it is installed."""
    importlib.import_module("numpy")   # threadpoolctl lists the libraries loaded so far

    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}"
    for lib in threadpool_info():
        if lib.get("user_api") == "blas":
            return f"{lib.get('internal_api')} {lib.get('version')}, {lib.get('architecture')} kernel"
    return "BLAS unknown"


def load_input(args):
    """The training input of args.input (a DeePMD-kit .json: systems relative to its folder),
    with args.batch applied."""
    from numdp.train.config import BatchSize, load_config

    path = pathlib.Path(args.input).resolve()
    cwd = os.getcwd()
    if path.suffix == ".json":
        os.chdir(path.parent)
    try:
        cfg = load_config(path)
    finally:
        os.chdir(cwd)
    if args.batch is not None:
        cfg.training.batch_size = BatchSize(fixed=args.batch)
    return cfg


_STEP = re.compile(r"^total\s+([0-9.]+)", re.M)
_DP_AVERAGE = re.compile(r"average training time: ([0-9.]+) s/batch")


def _without(argv: list[str], options: tuple[str, ...]) -> list[str]:
    """argv without the given options (each taking one value, as `--opt V` or `--opt=V`)."""
    rest, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in options:
            skip = True
            continue
        if a.startswith(tuple(o + "=" for o in options)):
            continue
        rest.append(a)
    return rest


def _numdp_step_ms(rest: list[str], pythonpath: str) -> tuple[float, float, str]:
    """(ms/step, CPU ms/step, validation line or "") of one timing in a fresh process."""
    env = dict(os.environ, PYTHONPATH=pythonpath)
    out = subprocess.run([sys.executable, __file__, *rest], env=env, capture_output=True,
                         text=True, check=True).stdout
    valid = re.search(r"^validation .*: ([0-9.]+) ms", out, re.M)
    return (float(_STEP.search(out).group(1)),
            float(re.search(r"CPU time ([0-9.]+) ms/step", out).group(1)),
            f", validation {valid.group(1)} ms" if valid else "")


def deepmd_run(args, argv: list[str]) -> int:
    """Alternate numdp's timing (fresh processes) with DeePMD-kit's `dp --pt train` of the same
    input on this machine; print every run, the medians and their ratio."""
    src = pathlib.Path(args.input).resolve()
    if src.suffix != ".json":
        print(f"{args.input}: --deepmd needs a DeePMD-kit input.json (both programs train the same input)",
              file=sys.stderr)
        return 2
    if args.batch is not None:
        print("--batch: not applied to DeePMD-kit's run; edit the input.json instead", file=sys.stderr)
        return 2
    dp = shutil.which(args.deepmd) or args.deepmd
    if not os.access(dp, os.X_OK):
        print(f"--deepmd {args.deepmd}: not an executable DeePMD-kit `dp`", file=sys.stderr)
        return 2
    cfg = json.loads(src.read_text())
    train = cfg["training"]
    disp = int(train.get("disp_freq", 1000))
    if args.deepmd_steps <= 2 * disp:   # DeePMD-kit then averages over every step, start-up included
        print(f"--deepmd-steps {args.deepmd_steps}: must exceed 2 x disp_freq ({2 * disp}) so that "
              f"DeePMD-kit's average leaves out its first {disp} steps", file=sys.stderr)
        return 2
    train["numb_steps"] = args.deepmd_steps
    train["save_freq"] = args.deepmd_steps + 1
    for key in ("training_data", "validation_data"):   # dp resolves them against its working folder
        if key in train:
            train[key]["systems"] = [str((src.parent / s).resolve()) for s in train[key]["systems"]]
    rest = _without(argv, ("--deepmd", "--deepmd-steps", "--rounds"))
    threads = str(args.threads)
    env = dict(os.environ, OMP_NUM_THREADS=threads, DP_INTRA_OP_PARALLELISM_THREADS=threads,
               DP_INTER_OP_PARALLELISM_THREADS="1")
    times: dict[str, list[float]] = {"numdp": [], "DeePMD-kit": []}
    with tempfile.TemporaryDirectory(prefix="bench_train_dp_") as tmp:
        (pathlib.Path(tmp) / "input.json").write_text(json.dumps(cfg, indent=1))
        for r in range(args.rounds):
            for side in (("numdp", "DeePMD-kit") if r % 2 == 0 else ("DeePMD-kit", "numdp")):
                if side == "numdp":
                    ms, cpu, valid = _numdp_step_ms(rest, str(ROOT))
                    note = f" (CPU {cpu:.1f}){valid}"
                else:
                    run = subprocess.run([dp, "--pt", "train", "input.json"], cwd=tmp, env=env,
                                         capture_output=True, text=True)
                    got = _DP_AVERAGE.search(run.stdout + run.stderr)
                    if run.returncode != 0 or got is None:
                        tail = (run.stdout + run.stderr).strip().splitlines()[-3:]
                        print(f"{dp} --pt train failed (exit {run.returncode}): {' | '.join(tail)}", file=sys.stderr)
                        return 1
                    ms, note = 1e3 * float(got.group(1)), f" ({args.deepmd_steps} steps, first 100 excluded)"
                times[side].append(ms)
                print(f"round {r + 1} {side:<10}: {ms:8.2f} ms/step{note}  "
                      f"(load average {os.getloadavg()[0]:.2f})", flush=True)
    print(f"{src.name}, {threads} thread(s); numdp {ROOT} ({numpy_blas()}), DeePMD-kit {dp}")
    for side, t in times.items():
        print(f"{side:<10}: median {statistics.median(t):8.2f} ms/step, min {min(t):8.2f}, "
              f"max {max(t):8.2f} over {len(t)} runs")
    ratio = statistics.median(times["numdp"]) / statistics.median(times["DeePMD-kit"])
    print(f"numdp / DeePMD-kit (medians): {ratio:.3f} (target <= {TARGET_RATIO}: "
          f"{'met' if ratio <= TARGET_RATIO else 'NOT met'})")
    # each round's two runs are adjacent in time: their ratio leaves out the machine's slow drift
    # (not its changes within a run)
    pairs = sorted(a / b for a, b in zip(times["numdp"], times["DeePMD-kit"]))
    print(f"numdp / DeePMD-kit per round (adjacent runs): median {statistics.median(pairs):.3f}, "
          f"range {pairs[0]:.3f}-{pairs[-1]:.3f}")
    return 0


def ab_run(args, argv: list[str]) -> int:
    """Alternate the timing in subprocesses: A = numdp of args.ab, B = this tree's."""
    rest = _without(argv, ("--ab", "--rounds"))
    sides = {"A": str(pathlib.Path(args.ab).resolve()), "B": str(ROOT)}
    times: dict[str, list[float]] = {"A": [], "B": []}
    cpus: dict[str, list[float]] = {"A": [], "B": []}
    for r in range(args.rounds):
        for side in (("A", "B") if r % 2 == 0 else ("B", "A")):
            ms, cpu, valid = _numdp_step_ms(rest, sides[side])
            times[side].append(ms)
            cpus[side].append(cpu)
            print(f"round {r + 1} {side}: {ms:8.2f} ms/step (CPU {cpu:.1f}){valid}"
                  f"  (load average {os.getloadavg()[0]:.2f})", flush=True)
    print(f"A = {sides['A']}, B = {sides['B']}; {' '.join(rest)}")
    for side in ("A", "B"):
        t = times[side]
        print(f"{side}: median {statistics.median(t):8.2f} ms/step, min {min(t):8.2f}, "
              f"max {max(t):8.2f} over {len(t)} runs; CPU time median "
              f"{statistics.median(cpus[side]):.1f} ms/step")
    print(f"B / A (medians): {statistics.median(times['B']) / statistics.median(times['A']):.3f}")
    return 0


def serve(args) -> int:
    """A --lockstep side: build the trainer, make the warm-up steps, print "ready"; then for every
    line N read from stdin make N steps and print "wall_s cpu_s" per step; N = 0 ends."""
    from numdp.train.loop import Trainer

    trainer = Trainer(load_input(args), nthreads=args.threads, stream=io.StringIO())
    try:
        step = 0
        for _ in range(args.warmup):
            trainer.train_step(step, display=False)
            step += 1
        print("ready", flush=True)
        for line in sys.stdin:
            n = int(line)
            if n <= 0:
                break
            cpu0 = time.process_time()
            t0 = time.perf_counter()
            for _ in range(n):
                trainer.train_step(step, display=False)
                step += 1
            print(f"{(time.perf_counter() - t0) / n} {(time.process_time() - cpu0) / n}", flush=True)
    finally:
        trainer.close()
    return 0


def lockstep_run(args, argv: list[str]) -> int:
    """--ab with --lockstep: the two sides as long-lived processes taking turns of N steps."""
    rest = _without(argv, ("--ab", "--rounds", "--lockstep"))
    sides = {"A": str(pathlib.Path(args.ab).resolve()), "B": str(ROOT)}
    procs = {}
    try:
        for side, tree in sides.items():
            procs[side] = subprocess.Popen(
                [sys.executable, str(pathlib.Path(__file__).resolve()), *rest, "--serve"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                env=dict(os.environ, PYTHONPATH=tree))
            line = procs[side].stdout.readline().strip()
            if line != "ready":
                raise SystemExit(f"side {side} ({tree}) did not start: {line!r}")
        turns: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
        for r in range(args.rounds):
            for side in (("A", "B") if r % 2 == 0 else ("B", "A")):
                p = procs[side]
                p.stdin.write(f"{args.lockstep}\n")
                p.stdin.flush()
                wall, cpu = (float(x) for x in p.stdout.readline().split())
                turns[side].append((wall, cpu))
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.stdin.write("0\n")
                p.stdin.flush()
                p.wait()
    print(f"A = {sides['A']}, B = {sides['B']}; {' '.join(rest)}; {args.rounds} turns of "
          f"{args.lockstep} steps each (load average {os.getloadavg()[0]:.2f})")
    for side in ("A", "B"):
        w = [t[0] * 1e3 for t in turns[side]]
        c = [t[1] * 1e3 for t in turns[side]]
        print(f"{side}: wall median {statistics.median(w):8.2f} ms/step (min {min(w):.2f}), "
              f"CPU time median {statistics.median(c):.2f} ms/step")
    for k, what in ((0, "wall"), (1, "CPU time")):
        ratios = [b[k] / a[k] for a, b in zip(turns["A"], turns["B"])]
        q = statistics.quantiles(ratios, n=4)
        print(f"B / A per pair of turns, {what}: median {statistics.median(ratios):.3f} "
              f"(quartiles {q[0]:.3f}-{q[2]:.3f})")
    return 0


def budget_run(args) -> int:
    """Train args.input for args.budget wall-clock seconds; print steps done and validation RMSEs."""
    from numdp.train.loop import Trainer

    start = time.perf_counter()
    cfg = load_input(args)
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
