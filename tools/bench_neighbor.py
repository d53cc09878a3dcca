"""Benchmark the neighbour search: extend + candidates + format, µs per local atom.

Water (frame 0 of /work/shared/data/water/data_0, 192 atoms, rcut 6 Å, sel [46, 92]) replicated
n×n×n times (192, 1536, 12288, 98304 atoms), each stage timed (best of several runs) with 1 and 2
numba threads, followed by the memory per atom of the arrays each stage produces.

    python tools/bench_neighbor.py [--sizes 1 2 4 8] [--threads 1 2] [--reach 2] [--repeat 5] [--data DIR]

With --device cuda the device search (numdp.neighbor.device.build_nlist_cuda, positions already on
the device) is timed instead, whole (ghosts, cell list, counts, keys, slots), µs per local atom, with
the device bytes per atom of the returned arrays; --check compares each list with the CPU's (slow
at large sizes).  Sizes for 12 288 / 98 304 / 1.12 M / 10.5 M atoms: --sizes 4 8 18 38.
Under NUMBA_ENABLE_CUDASIM=1 only a smoke run is sensible: --sizes 1 --repeat 1 --tpc 4.
"""

from __future__ import annotations

import argparse
import os
import time

import numba
import numpy as np

from numdp.neighbor import extend, find_candidates, format_nlist

DATA = "/work/shared/data/water/data_0"


def load_water(frame: int = 0, data: str = DATA):
    """Positions (192, 3) Å, types (192,), box (3, 3) Å of one frame of the water data set."""
    coord = np.load(os.path.join(data, "set.000", "coord.npy"))[frame].reshape(-1, 3)
    box = np.load(os.path.join(data, "set.000", "box.npy"))[frame].reshape(3, 3)
    types = np.loadtxt(os.path.join(data, "type.raw"), dtype=np.int32).reshape(-1)
    return coord, types, box


def replicate(x, t, box, n):
    """n×n×n supercell: positions (n³ natoms, 3), types, box (3, 3)."""
    shifts = np.array([(i, j, k) for i in range(n) for j in range(n) for k in range(n)], dtype=float)
    xs = (x[None, :, :] + (shifts @ box)[:, None, :]).reshape(-1, 3)
    return xs, np.tile(t, n**3), box * n


def best_time(fn, repeat):
    best = np.inf
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8], help="replication factors n")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reach", type=int, default=None, help="cell-list stencil half-width (cells)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--rcut", type=float, default=6.0)
    ap.add_argument("--data", default=DATA, help="DeePMD npy system holding the water frame")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--check", action="store_true", help="cuda: compare each list with the CPU list")
    ap.add_argument("--tpc", type=int, default=None, help="cuda: threads per centre (default 32)")
    args = ap.parse_args()
    sel = [46, 92]
    x0, t0, box0 = load_water(data=args.data)
    if args.device == "cuda":
        bench_cuda(args, x0, t0, box0, sel)
        return
    kw = {} if args.reach is None else {"reach": args.reach}

    # warm up (compile or load the numba cache)
    e = extend(x0, t0, box0, args.rcut)
    format_nlist(e, find_candidates(e, args.rcut, **kw), args.rcut, sel, 2)

    print(f"rcut {args.rcut} A, sel {sel}, numba threading layer: {numba.threading_layer()}")
    print(f"{'natoms':>7} {'thr':>3} {'nall/nloc':>9} {'cand/atom':>9} {'extend':>8} {'cands':>8} "
          f"{'format':>8} {'total':>8}   us/atom")
    mem_rows = []
    for n in args.sizes:
        x, t, box = replicate(x0, t0, box0, n)
        nloc = len(x)
        repeat = max(2, args.repeat if nloc <= 20000 else args.repeat // 2)
        for nt in args.threads:
            numba.set_num_threads(nt)
            te, ext = best_time(lambda: extend(x, t, box, args.rcut), repeat)
            tc, cand = best_time(lambda: find_candidates(ext, args.rcut, **kw), repeat)
            tf, nl = best_time(lambda: format_nlist(ext, cand, args.rcut, sel, 2), repeat)
            us = 1e6 / nloc
            print(
                f"{nloc:>7} {nt:>3} {ext.nall / nloc:>9.2f} {cand.indices.size / nloc:>9.1f} "
                f"{te * us:>8.3f} {tc * us:>8.3f} {tf * us:>8.3f} {(te + tc + tf) * us:>8.3f}"
            )
        ext_bytes = sum(a.nbytes for a in (ext.positions, ext.types, ext.mapping, ext.shifts))
        cand_bytes = cand.offsets.nbytes + cand.indices.nbytes
        nl_bytes = nl.nlist.nbytes + nl.overflow.nbytes + nl.max_count.nbytes
        mem_rows.append((nloc, ext_bytes / nloc, cand_bytes / nloc, nl_bytes / nloc, nl.overflow.tolist(),
                         nl.max_count.tolist()))
    print()
    print(f"{'natoms':>7} {'Extended':>9} {'Candidates':>10} {'NeighborList':>12}   bytes/atom; "
          "overflow, max_count")
    for nloc, eb, cb, lb, ov, mc in mem_rows:
        print(f"{nloc:>7} {eb:>9.1f} {cb:>10.1f} {lb:>12.1f}   {ov} {mc}")


def bench_cuda(args, x0, t0, box0, sel):
    """Time build_nlist_cuda on replicated water (positions and types already on the device)."""
    from numba import cuda

    from numdp.neighbor import build_nlist
    from numdp.neighbor.device import build_nlist_cuda

    simulated = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
    if not simulated and not cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device (or driver) available")
    kw = {}
    if args.reach is not None:
        kw["reach"] = args.reach
    if args.tpc is not None:
        kw["threads_per_centre"] = args.tpc
    dev = "CUDA simulator" if simulated else cuda.get_current_device().name
    dev = dev.decode() if isinstance(dev, bytes) else dev
    build_nlist_cuda(x0, t0, box0, args.rcut, sel, **kw)  # warm up: compile the kernels
    print(f"rcut {args.rcut} A, sel {sel}, device: {dev}")
    print(f"{'natoms':>9} {'nall/nloc':>9} {'search':>9} {'kept B/atom':>11}   us/atom; max_count, overflow"
          + ("; equal to CPU" if args.check else ""))
    for n in args.sizes:
        x, t, box = replicate(x0, t0, box0, n)
        nloc = len(x)
        dx = cuda.to_device(x)
        dt = cuda.to_device(t.astype(np.int32))
        repeat = max(1, args.repeat if nloc <= 2_000_000 else args.repeat // 2)
        ts, nl = best_time(lambda: build_nlist_cuda(dx, dt, box, args.rcut, sel, **kw), repeat)
        line = (f"{nloc:>9} {nl.nall / nloc:>9.3f} {ts * 1e6 / nloc:>9.4f} {nl.nbytes / nloc:>11.1f}   "
                f"{nl.max_count.tolist()} {nl.overflow.tolist()}")
        if args.check:
            ref = build_nlist(extend(x, t, box, args.rcut), args.rcut, sel, 2)
            line += f"; {bool(np.array_equal(nl.nlist.copy_to_host(), ref.nlist))}"
        print(line, flush=True)
        nl = dx = dt = None  # free the device arrays before the next size


if __name__ == "__main__":
    main()
