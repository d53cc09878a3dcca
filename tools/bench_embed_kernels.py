#!/usr/bin/env python
"""Per-block times of the embedding layers' element-wise training kernels, one thread.

For each layer of an embedding net (default the cu input's (25, 50, 100): layers 25 -> 50 and
50 -> 100, both with the doubling residual), on a block of `--block` pairs of random data, the
best of `--rounds` rounds of `--repeat` calls each, in µs per block:

    post      post_tangent_keep: bias, tanh, idt and residual after the forward's product
    rebuild   rebuild_tangent: the same outputs again from the kept [h; z'] (the reverse)
    back+res  the reverse step of a layer whose output adjoint still lacks the residual share of
              the layer above: layer_back_pair with that share (R, rmode) in trees that have
              it, add_residual_adjoint then layer_back_pair in trees before (99662ac and older)

    python tools/bench_embed_kernels.py [--block 512] [--widths 25 50 100]
    PYTHONPATH=/other/tree python tools/bench_embed_kernels.py   # another source tree's kernels

Run two trees in turns in the same minutes to compare them: the machine's speed moves by
10-20 % between minutes (`git show 111e835`: the table of 99662ac against 2de309b measured
this way; where these kernels stand in a training step: docs/training-vs-deepmd-kit.md).
"""
from __future__ import annotations

import argparse
import inspect
import pathlib
import time

import numpy as np


def _best(fn, repeat: int, rounds: int) -> float:
    """Best mean time of `repeat` calls over `rounds` rounds, µs."""
    fn()
    best = np.inf
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - t0) / repeat)
    return best * 1e6


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--block", type=int, default=512, help="pairs per block (the trainer's EMBED_BLOCK)")
    ap.add_argument("--widths", type=int, nargs="+", default=[25, 50, 100], help="embedding widths")
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)

    import numdp
    from numdp.blas import set_blas_threads
    from numdp.kernels.cpu import train as K
    from numdp.kernels.cpu.layers import add_residual_adjoint, post_tangent_keep, rebuild_tangent

    set_blas_threads(1)
    fused = "rmode" in inspect.signature(K.layer_back_pair.py_func).parameters
    print(f"numdp of {pathlib.Path(numdp.__file__).parent.parent}; {args.block} pairs per block, "
          f"1 thread; back+res {'fused (R, rmode)' if fused else 'add_residual_adjoint + layer_back_pair'}")
    print(f"{'layer':<12}{'post':>9}{'rebuild':>9}{'back+res':>10}   (µs per block)")
    rng = np.random.default_rng(0)
    m = args.block
    ones = np.ones(1)
    for n_in, k in zip(args.widths[:-1], args.widths[1:]):
        mode = 1 if k == n_in else 2 if k == 2 * n_in else 0
        Y = rng.standard_normal((2 * m, n_in))
        Z0 = rng.standard_normal((2 * m, k))
        Z = Z0.copy()
        b = rng.standard_normal(k)
        idt = np.ones(k)
        out = np.empty((2 * m, k))

        def post():
            Z[:] = Z0  # post_tangent_keep overwrites Z's top half with h
            post_tangent_keep(Z, b, idt, Y, mode, out[:m], out[m:])

        t_copy = _best(lambda: Z.__setitem__(slice(None), Z0), args.repeat, args.rounds)
        t_post = _best(post, args.repeat, args.rounds) - t_copy
        t_rebuild = _best(lambda: rebuild_tangent(Z, idt, Y, mode, False, out[:m], out[m:]),
                          args.repeat, args.rounds)
        R = rng.standard_normal((2 * m, 2 * k))  # the layer above's [ō; ȱ] (it doubles k)
        O = rng.standard_normal((2 * m, k))
        ZB = np.empty((2 * m, k))
        gb = np.zeros(k)
        if fused:
            def back():
                K.layer_back_pair(O[:m], O[m:], Z[:m], Z[m:], ones, False, False, ZB, ones, gb, R, 2)
        else:
            def back():
                add_residual_adjoint(R, 2, O)
                K.layer_back_pair(O[:m], O[m:], Z[:m], Z[m:], ones, False, False, ZB, ones, gb)
        t_back = _best(back, args.repeat, args.rounds)
        print(f"{f'{n_in} -> {k}':<12}{t_post:9.1f}{t_rebuild:9.1f}{t_back:10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
