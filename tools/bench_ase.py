#!/usr/bin/env python
"""ASE calculator overhead (issue 15 target: <= 10 % of model.evaluate at 192 atoms).

The overhead is measured on its own, not as the difference of two noisy timings: the calculator's
model is replaced by one that returns a precomputed result at once, so what is timed is only
ASE's state check and atoms copy, the element lookup and the unit work of `DPCalculator` for
energy + forces + stress after each move.  It is printed next to model.evaluate's own time.

usage: python tools/bench_ase.py [--model inputs/water/model.h5] [--structure inputs/water/start.xyz]
                                 [--threads 2] [--repeat 300]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "inputs/water/model.h5"))
    p.add_argument("--structure", default=str(ROOT / "inputs/water/start.xyz"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=300)
    args = p.parse_args()

    from ase.io import read

    import numdp
    from numdp.ase import DPCalculator

    model = numdp.load_model(args.model, nthreads=args.threads)
    atoms = read(args.structure)
    calc = DPCalculator(model)
    atoms.calc = calc
    types = calc.types_of(atoms)
    box = atoms.cell.array
    rng = np.random.default_rng(0)

    evals = []
    for _ in range(max(20, args.repeat // 10)):
        x = atoms.positions + rng.normal(0.0, 1e-3, atoms.positions.shape)
        t = time.perf_counter()
        result = model.evaluate(x, types, box, atom_virial=False)
        evals.append(time.perf_counter() - t)

    class Instant:
        type_map = model.type_map

        def evaluate(self, *a, **k):
            return result

    calc.model = Instant()
    over = []
    for _ in range(args.repeat):
        atoms.positions = atoms.positions + rng.normal(0.0, 1e-3, atoms.positions.shape)
        t = time.perf_counter()
        atoms.get_potential_energy()
        atoms.get_forces()
        atoms.get_stress()
        over.append(time.perf_counter() - t)
    e, o = np.median(evals), np.median(over)
    print(f"{len(atoms)} atoms, {args.threads} threads: model.evaluate median {e * 1e3:.2f} ms; "
          f"calculator overhead median {o * 1e3:.3f} ms = {o / e:.1%} of evaluate")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
