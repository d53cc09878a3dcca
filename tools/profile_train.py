#!/usr/bin/env python
"""Where one training step's time goes, part by part, against each part's floating-point floor.

Builds the trainer of a training input (default: DeePMD-kit's water input, batch 1, 192 atoms)
on ONE thread (or `--threads N`: then every part's time is the CPU time of all threads together,
measured per thread, so that it can be set against the one-thread figure), wraps every kernel and network pass that `numdp.train.passes` calls with a CPU
timer, makes warm-up steps, then times `--steps` steps and prints per part: ms/step, share,
flops counted from the shapes (a multiply-add = 2 flops; tanh, divisions and square roots = 1,
which understates their cost), the achieved Gflop/s and the time the part would take at the
measured DGEMM rate of this machine (`floor ms`: a (512 x 50) @ (50 x 100) product in the same
BLAS, the shape class of the embedding and fitting products).

    python tools/profile_train.py [--input ../shared/oracle/training/water_2k_seed1.input.json]
                                  [--steps 20] [--warmup 5]
    PYTHONPATH=/tmp/base python tools/profile_train.py    # another source tree's numdp

Parts (forward = primal pass, backward = tangent and reverse over primal and tangent):
  env rows          env_pairs: pair vectors, switching function, normalised rows
  embedding fwd     G and dG/dx of every pair ([y; dy/dx] @ W per layer) + padding rows
  T, D, dE/dD->T    contract_T, contract_D, back_D (forward); tangent_T, contract_D_tangent,
                    back_D_pair, pair_adjoints (backward)
  fitting fwd       energy and dE/dD of the fitting nets (forward and seed-1 adjoint)
  pair forces       dE/dT -> forces and virial
  tangent rows      the loss's pair displacement through the environment rows
  fitting tangent   Ḋ through the fitting nets
  fitting reverse   reverse over primal and tangent: weight adjoints and D̄ (Ḋ̄ is dE/dD)
  embedding reverse reverse over primal and tangent of the embedding nets
  adam              Adam update
  ema               the parameters' moving average (`--ema`: [training] enable_ema on)
The remainder of the step (`other`) is Python: orchestration, loss seeds, data.
"""
from __future__ import annotations

import argparse
import io
import pathlib
import sys
import threading
import time
from collections import defaultdict

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]

TIMES: dict[str, float] = defaultdict(float)
FLOPS: dict[str, float] = defaultdict(float)
_LOCAL = threading.local()   # per thread: the stack of inner times of the wrapped calls
_LOCK = threading.Lock()


def _net_flops(widths, rows):
    """Multiply-add flops of the products of a net on `rows` input rows."""
    return sum(2.0 * rows * a * b for a, b in zip(widths[:-1], widths[1:]))


def _wrap(mod, name, part, flops=None):
    fn = getattr(mod, name)

    def timed(*args, **kw):
        stack = getattr(_LOCAL, "stack", None)
        if stack is None:
            stack = _LOCAL.stack = []
        stack.append(0.0)
        t0 = time.thread_time()
        out = fn(*args, **kw)
        dt = time.thread_time() - t0
        inner = stack.pop()
        if stack:
            stack[-1] += dt
        with _LOCK:
            TIMES[part] += dt - inner  # exclusive of the wrapped calls it makes
            if flops is not None:
                FLOPS[part] += flops(*args, **kw)
        return out

    setattr(mod, name, timed)


def _pair_adjoint_flops(u0, u1, ustart, pair_atom, rt, rtd, Tbar, *a):
    """26 flops per member pair and embedding column."""
    return (ustart[u1] - ustart[u0]) * Tbar.shape[2] * 26.0


def instrument(M: int, A: int):
    """Wrap the functions the passes call; M = embedding width, A = axis neurons."""
    import numdp.train.passes as P
    import numdp.train.loop as L
    import numdp.train.optim as O

    def emb_widths(net):
        return [1] + [l.n_out for l in net.layers]

    def fit_widths(net):
        return net.widths

    _wrap(P, "env_pairs", "env rows")
    # embedding forward: [y; dy/dx] (2 rows per pair) through layers 2.. (layer 1 is elementwise)
    _wrap(P, "embed_forward", "embedding fwd",
          lambda net, x, *a, **k: _net_flops(emb_widths(net)[1:], 2 * x.shape[0])
          + 8.0 * x.shape[0] * sum(emb_widths(net)[1:]))
    # T block by block inside the embedding forward, summed over each shared row's member pairs
    _wrap(P, "contract_T_members", "T, D (fwd)",
          lambda u0, u1, ulo, ustart, *a: 8.0 * (ustart[u1] - ustart[u0]) * a[-1].shape[2])
    _wrap(P, "reduce_T", "T, D (fwd)")
    _wrap(P, "contract_D", "T, D (fwd)", lambda T, naxis, *a: 8.0 * T.shape[0] * T.shape[2] * naxis)
    _wrap(P, "back_D", "T, D (fwd)", lambda T, gD, naxis, *a: 16.0 * T.shape[0] * T.shape[2] * naxis)
    _wrap(P, "fit_forward", "fitting fwd",
          lambda net, fc, *a: 2 * _net_flops(fit_widths(net)[:-1], fc.n) + 2.0 * fc.n * fit_widths(net)[-2])
    _wrap(P, "pair_forces_members", "pair forces", lambda u0, u1, ulo, t, ustart, *a:
          (ustart[u1] - ustart[u0]) * (18.0 * a[7].shape[1] + 60))
    _wrap(P.K, "tangent_rows", "tangent rows", lambda u0, u1, t, ustart, *a: (ustart[u1] - ustart[u0]) * 80.0)
    _wrap(P.K, "tangent_T", "T, D (bwd)", lambda u0, u1, ulo, ustart, pa, rt, rtd, G, *a:
          18.0 * (ustart[u1] - ustart[u0]) * G.shape[1])
    _wrap(P, "contract_D_tangent", "T, D (bwd)", lambda T, Td, naxis, Dd: 16.0 * T.shape[0] * T.shape[2] * naxis)
    _wrap(P.K, "back_D_pair", "T, D (bwd)", lambda T, *a: 32.0 * T.shape[0] * T.shape[2] * A)
    _wrap(P.K, "pair_adjoints", "T, D (bwd)", _pair_adjoint_flops)
    _wrap(P, "fit_tangent", "fitting tangent",
          lambda net, fc: _net_flops(fit_widths(net)[:-1], fc.n))
    # reverse: weight adjoint over 2n rows and input adjoint over n rows (the primal half: the
    # tangent half is the forward's seed-1 adjoint) for every hidden layer
    _wrap(P, "fit_reverse", "fitting reverse",
          lambda net, sl, fc, *a: _net_flops(fit_widths(net)[:-1], 2 * fc.n)
          + _net_flops(fit_widths(net)[:-1], fc.n))
    # reverse: weight adjoint for layers 2.., input adjoint for layers 2.. (2 rows per pair)
    _wrap(P, "embed_reverse", "embedding reverse",
          lambda net, sl, cache, *a: 2 * _net_flops(emb_widths(net)[1:], 2 * cache.n)
          + 4.0 * cache.n * emb_widths(net)[1])
    _wrap(O, "adam_update", "adam", lambda th, g, m, v, lo, hi, *a: 12.0 * (hi - lo))
    _wrap(L, "ema_update", "ema", lambda ema, th, w, lo, hi: 3.0 * (hi - lo))


def dgemm_rate() -> float:
    """Gflop/s of a (512 x 50) @ (50 x 100) product, best of several repeats."""
    a = np.random.default_rng(0).standard_normal((1024, 50))
    b = np.random.default_rng(1).standard_normal((50, 100))
    out = np.empty((1024, 100))
    best = np.inf
    for _ in range(5):
        t0 = time.process_time()
        for _ in range(200):
            np.matmul(a, b, out=out)
        best = min(best, (time.process_time() - t0) / 200)
    return 2.0 * 1024 * 50 * 100 / best / 1e9


def _default_input() -> str | None:
    """shared/oracle/training/water_2k_seed1.input.json next to or above this checkout."""
    rel = pathlib.Path("shared") / "oracle" / "training" / "water_2k_seed1.input.json"
    for base in (ROOT, *ROOT.parents):
        if (base / rel).is_file():
            return str(base / rel)
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", default=_default_input(),
                    help="training input (default: DeePMD-kit's water input from shared/oracle)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1,
                    help="worker threads; part times are then summed over the threads")
    ap.add_argument("--ema", action="store_true", help="train with [training] enable_ema (the `ema` row)")
    args = ap.parse_args(argv)
    if args.input is None:
        ap.error("no shared/oracle/training/water_2k_seed1.input.json found: give --input")

    from bench_train import load_input
    from numdp.blas import set_blas_threads
    from numdp.train.loop import Trainer

    cfg = load_input(args)
    cfg.training.enable_ema = args.ema
    d = cfg.descriptor
    instrument(d.neuron[-1], d.axis_neuron)
    trainer = Trainer(cfg, nthreads=args.threads, stream=io.StringIO())
    try:
        set_blas_threads(1)
        rate = dgemm_rate()
        for t in range(args.warmup):
            trainer.train_step(t, display=False)
        TIMES.clear()
        FLOPS.clear()
        cpu0 = time.process_time()
        for t in range(args.warmup, args.warmup + args.steps):
            trainer.train_step(t, display=False)
        cpu = (time.process_time() - cpu0) / args.steps
        team = trainer.passes._chunks[0].team
        npairs, nrows = team.npairs, team.nrows
        natoms = trainer.train_sys[0].natoms
    finally:
        trainer.close()
    FLOPS["env rows"] = 40.0 * npairs * args.steps
    n = args.steps
    import numdp
    print(f"numdp of {pathlib.Path(numdp.__file__).parent.parent}")
    print(f"{cfg.source.name}: {natoms} atoms, {npairs} occupied pairs ({npairs / natoms:.1f} per atom) "
          f"in {nrows} embedding rows, "
          f"{args.threads} thread(s) (CPU times summed over them), {n} steps after {args.warmup}; DGEMM (1024x50 @ 50x100) {rate:.1f} Gflop/s")
    print(f"{'part':<20}{'ms/step':>9}{'share':>8}{'Mflop':>9}{'Gflop/s':>9}{'floor ms':>10}{'x floor':>9}")
    tot_f = 0.0
    order = ["env rows", "embedding fwd", "T, D (fwd)", "fitting fwd", "pair forces", "tangent rows",
             "T, D (bwd)", "fitting tangent", "fitting reverse", "embedding reverse", "adam", "ema"]
    for part in order:
        t = TIMES[part] / n
        f = FLOPS[part] / n
        tot_f += f
        floor = f / (rate * 1e9)
        print(f"{part:<20}{t * 1e3:9.2f}{t / cpu * 100:7.1f}%{f / 1e6:9.1f}{f / max(t, 1e-12) / 1e9:9.1f}"
              f"{floor * 1e3:10.2f}{t / max(floor, 1e-12):9.2f}")
    other = cpu - sum(TIMES[p] for p in order) / n
    print(f"{'other (Python)':<20}{other * 1e3:9.2f}{other / cpu * 100:7.1f}%")
    print(f"{'step':<20}{cpu * 1e3:9.2f}{100.0:7.1f}%{tot_f / 1e6:9.1f}{tot_f / cpu / 1e9:9.1f}"
          f"{tot_f / rate / 1e6:10.2f}{cpu / (tot_f / rate / 1e9):9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
