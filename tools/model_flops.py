#!/usr/bin/env python
"""Floating-point operations of one se_e2_a force evaluation, by part (issue 15: what sharing the
environment matrix between the models of a deviation ensemble can save at best).

Counts multiply-adds as 2 flops and tanh as 1 (its cost in time is larger, which only lowers
the environment matrix's share further), for the occupied pairs (r < rcut) of the replicated
water box of tools/bench_md.py:

    python tools/model_flops.py                          # shipped water model, 1 536 and 12 288 atoms
    python tools/model_flops.py --model other.h5 --sizes 1536
    python tools/model_flops.py --sizes 1536 --time water_compressed.h5   # + measured time share

Parts (numdp.model.evaluator, per pair p and per centre atom a; M = neuron[-1], A = axis_neuron):
  envmat      env_pairs: pair vector, r, switching function, 4 normalised rows (~40 / p), plus the
              rows' derivative recomputed in the pair-force kernel (~60 / p)
  embedding   uncompressed: G and dG/dx through the net (value and tangent rows of one GEMM per
              layer: 2 x 2 n_in n_out / p, + tanh and its derivative); compressed: the quintic
              table's value and derivative (~2 x 12 M / p)
  descriptor  T = rows^T G / nnei (8 M / p), D = T^T T< (8 M A / a)
  fitting     forward and dE/dD through the fitting net (2 x 2 n_in n_out / a)
  backward    dE/dT (16 M A / a), dE/d(rows) and the pair forces from G and dG/dx (~14 M / p)

Only `envmat` is identical across the models of a DP-GEN ensemble (same rcut, rcut_smth, sel,
davg, dstd); every other part uses the model's own networks.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from numdp import load_model  # noqa: E402
from numdp.io.structure import read_structure, replicate  # noqa: E402
from numdp.neighbor import build_nlist, extend  # noqa: E402

REPLICAS = {192: (1, 1, 1), 1536: (2, 2, 2), 12288: (4, 4, 4)}
ENV_ROWS, ENV_GRAD = 40, 60


def water_list(model, natoms: int):
    """(types (natoms,) int32, extended atoms, neighbour list) of the replicated water box for
    `model`'s rcut and sel."""
    s = replicate(read_structure(ROOT / "inputs" / "water" / "start.xyz"), REPLICAS[natoms])
    types = np.array([model.type_map.index(e) for e in s.elements], np.int32)
    d = model.params.descriptor
    ext = extend(np.asarray(s.positions, float), types, np.asarray(s.box, float), d.rcut)
    return types, ext, build_nlist(ext, d.rcut, d.sel, d.ntypes)


def occupied_pairs(model, natoms: int) -> int:
    _, ext, nl = water_list(model, natoms)
    d = model.params.descriptor
    idx = nl.nlist
    valid = idx >= 0
    rij = ext.positions[np.where(valid, idx, 0)] - ext.positions[:natoms, None, :]
    return int(np.count_nonzero(valid & (np.linalg.norm(rij, axis=-1) < d.rcut)))


def part_flops(model, natoms: int, npairs: int, compressed: bool) -> dict[str, float]:
    d = model.params.descriptor
    M, A = d.neuron[-1], d.axis_neuron
    if compressed:
        embed = 2 * 12 * M * npairs
    else:
        widths = [1, *d.neuron]
        per_pair = sum(2 * 2 * a * b + 3 * b for a, b in zip(widths[:-1], widths[1:]))
        embed = per_pair * npairs
    fit = model.params.fitting.nets[0]
    widths = [model._ev.d_width] + [lay.n_out for lay in fit.layers]  # D as the evaluator stores it
    fit_per_atom = 2 * sum(2 * a * b for a, b in zip(widths[:-1], widths[1:]))
    return {
        "envmat": (ENV_ROWS + ENV_GRAD) * npairs,
        "embedding": embed,
        "descriptor": 8 * M * npairs + 8 * M * A * natoms,
        "fitting": fit_per_atom * natoms,
        "backward": 16 * M * A * natoms + 14 * M * npairs,
    }


def _row_gradients():
    """A measuring loop, not engine code: dE/dd of every pair from its row as the pair-force
    kernels compute it (numdp.kernels.cpu.envmat.row_grad_to_dvec: the rows' derivative,
    recomputed by each model), with the rows themselves standing in for dE/drows."""
    from numba import njit

    from numdp.kernels.cpu.envmat import FASTMATH, row_grad_to_dvec

    @njit(nogil=True, fastmath=FASTMATH, error_model="numpy")
    def row_gradients(rt, dvec, npairs, rmin, rmax, out):
        for p in range(npairs):
            gx, gy, gz = row_grad_to_dvec(rt[p, 0], rt[p, 1], rt[p, 2], rt[p, 3], dvec[p, 0], dvec[p, 1],
                                          dvec[p, 2], rmin, rmax)
            out[p, 0] = gx
            out[p, 1] = gy
            out[p, 2] = gz

    return row_gradients


def env_time_share(model, natoms: int, repeat: int = 5) -> tuple[float, float]:
    """(environment rows, their derivative): the CPU time of env_pairs over the chunks (as
    Evaluator.compute calls it) and of the rows' derivative over all pairs (`_row_gradients`: the
    arithmetic the pair-force kernel repeats for each model, read and written as a separate loop,
    so an upper bound of what sharing it could save), each over the CPU time of a whole
    evaluation; one thread, interleaved, medians of `repeat`."""
    import time

    types, ext, nl = water_list(model, natoms)
    ev = model._ev
    d = model.params.descriptor
    order = np.argsort(types, kind="stable").astype(np.int64)
    chunks = [order[i:i + ev.chunk] for i in range(0, natoms, ev.chunk)]
    ws = ev._scratch.get()
    model.compute(ext.positions, nl.nlist, types)   # warm-up: compilation, scratch
    pairs = []
    for c in chunks:
        env = ev._env(ext.positions, nl.nlist, types, c, ws)
        pairs.append((env.rt[:env.npairs].copy(), env.dvec[:env.npairs].copy(), env.npairs))
    grads = _row_gradients()
    out = np.empty((max(p[2] for p in pairs), 3))
    grads(*pairs[0], d.rcut_smth, d.rcut, out)   # compilation
    rows, derivative = [], []
    for _ in range(repeat):
        t0 = time.process_time()
        for c in chunks:
            ev._env(ext.positions, nl.nlist, types, c, ws)
        t1 = time.process_time()
        for rt, dvec, npairs in pairs:
            grads(rt, dvec, npairs, d.rcut_smth, d.rcut, out)
        t2 = time.process_time()
        model.compute(ext.positions, nl.nlist, types)
        t3 = time.process_time()
        rows.append((t1 - t0) / (t3 - t2))
        derivative.append((t2 - t1) / (t3 - t2))
    return sorted(rows)[len(rows) // 2], sorted(derivative)[len(derivative) // 2]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=ROOT / "inputs" / "water" / "model.h5")
    p.add_argument("--sizes", type=int, nargs="+", default=[1536, 12288], choices=list(REPLICAS))
    p.add_argument("--time", type=Path, default=None, metavar="COMPRESSED",
                   help="also measure the CPU-time share of the environment rows in an evaluation of "
                        "--model and of this compressed model (numdp compress)")
    args = p.parse_args(argv)
    model = load_model(args.model, nthreads=1)
    for n in args.sizes:
        npairs = occupied_pairs(model, n)
        print(f"{n} atoms, {npairs / n:.1f} occupied pairs per atom")
        for compressed in (False, True):
            f = part_flops(model, n, npairs, compressed)
            total = sum(f.values())
            share = f["envmat"] / total
            k = 4
            print(f"  {'compressed' if compressed else 'uncompressed':>12}: {total / n / 1e6:.2f} Mflop/atom; "
                  + ", ".join(f"{name} {100 * v / total:.1f} %" for name, v in f.items())
                  + f"; {k} models sharing envmat: >= {k - (k - 1) * share:.3f}x one model's force flops")
    if args.time is not None:
        for path in (args.model, args.time):
            m = load_model(path, nthreads=1)
            for n in args.sizes:
                rows, derivative = env_time_share(m, n)
                print(f"{path.name}, {n} atoms: environment rows take {100 * rows:.1f} %, their derivative (as a "
                      f"separate loop) {100 * derivative:.1f} % of the CPU time of an evaluation (1 thread, "
                      "medians of 5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
