"""Can the model's device evaluation be captured in a CUDA graph, and what does a replay cost?

Issue 14's 50 ns/day at 192 atoms needs a step of <= 864 µs; a step makes ~90 device operations
at ~20 µs of host time each even through numdp's cached launches (docs/gpu.md, "Launch cost"),
while a replayed graph costs the H200 ~1.2 µs per kernel.  This is the experiment before any
change to the MD step: the evaluation of a compressed water model on a prebuilt neighbour list
(`numdp.model.cuda_evaluator.compute_device_shared`, what the MD force call runs; the
compressed path reads nothing back to the host) is

1. timed as it runs today (best of --repeat calls, the device drained after each);
2. captured on a CuPy stream (`Stream.begin_capture` / `end_capture`): CuPy's operations follow
   the stream (`with stream:`), numba's launches are sent to it by
   `numdp.kernels.cuda.fastlaunch.launching_on`, and the call's arrays come from a memory pool of
   its own (`cupy.cuda.using_allocator`), filled by two warm-up calls on that stream so that the
   capture allocates nothing new and no later allocation reuses the graph's buffers;
3. replayed, and its energy, forces and virial compared bit for bit with a direct call, then
   again after the positions were moved in place (what an MD step does between calls);
4. the replay timed (best of --repeat, the device drained after each).

Prints one line per size and precision: direct µs per call, replay µs per call, and whether the
replay's results equal the direct call's, or where capture failed (the first exception's line).

Usage: python tools/bench_graph.py [--model .gpu/water.dp] [--sizes 192 12288]
                                   [--precisions double mix32] [--repeat 20]
Under the simulator only step 1 runs (capture needs a GPU and CuPy): a dry run of the script."""
import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=".gpu/water.dp")
    ap.add_argument("--sizes", type=int, nargs="+", default=[192, 12288])
    ap.add_argument("--precisions", nargs="+", default=["double", "mix32"])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--dx", type=float, default=0.01, help="table step of the compressed model")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")

    import numdp
    from numdp.backend import get_backend
    from numdp.model.compress import compress
    from numdp.model.cuda_evaluator import compute_device_shared
    from numdp.model.dp_model import DPModel
    from bench_gpu import best_of, neighbour_search, sync, water_box

    be = get_backend("cuda")
    print(f"# backend cuda ({'SIMULATOR: figures meaningless, no capture' if be.simulator else 'GPU'}), "
          f"model {args.model} compressed (dx {args.dx}, order 5)")
    params = compress(numdp.load_model(args.model, nthreads=1).params, dx=args.dx, order=5)[0]

    def best(fn, repeat):
        """µs of the fastest of `repeat` calls after a warm-up, the device drained after each."""
        return 1e6 * best_of(fn, repeat, be)

    print(f"{'atoms':>7} {'precision':>9} {'direct us':>10} {'replay us':>10}  result")
    for n in args.sizes:
        pos, types, box = water_box(n)
        for prec in args.precisions:
            model = DPModel(params, precision=prec, device="cuda")
            ev = model._ev
            nl, _ = neighbour_search(be, model, pos, types, box)
            ext = nl.positions

            def call():
                return compute_device_shared([ev], ext, nl.nlist, types)[0]

            t_direct = best(call, args.repeat)
            line = f"{len(types):>7} {prec:>9} {t_direct:>10.1f}"
            if be.simulator:
                print(line + f" {'-':>10}  capture needs a GPU", flush=True)
                continue
            try:
                t_replay, verdict = capture_and_replay(be.xp, call, ext, args.repeat, best, lambda: sync(be))
            except Exception as exc:  # noqa: BLE001 - where capture fails is the finding
                print(line + f" {'-':>10}  capture FAILED: {type(exc).__name__}: "
                      f"{' '.join(str(exc).split())[:200]}", flush=True)
                continue
            print(line + f" {t_replay:>10.1f}  {verdict}", flush=True)
    return 0


def capture_and_replay(cupy, call, ext, repeat, best, drain):
    """(µs per replay, verdict) for `call` captured on a stream of its own (module docstring)."""
    from numdp.kernels.cuda import fastlaunch

    def host(out):
        energy, force, virial = out[0], out[1], out[2]
        return [np.asarray(a.get()) for a in (energy, force, virial)]

    pool = cupy.cuda.MemoryPool()   # the graph's buffers: nothing else allocates from it
    stream = cupy.cuda.Stream(non_blocking=True)
    with cupy.cuda.using_allocator(pool.malloc), stream, fastlaunch.launching_on(stream.ptr):
        for _ in range(2):   # compile nothing new, grow the pool to the call's needs
            call()
        stream.synchronize()
        stream.begin_capture()
        try:
            out = call()
        finally:
            graph = stream.end_capture()
    graph.launch(stream)
    stream.synchronize()
    got = host(out)
    ref = host(call())
    same = all(np.array_equal(a, b) for a, b in zip(got, ref))
    moved = ext + 1e-3 * cupy.sin(cupy.arange(ext.size, dtype=np.float64).reshape(ext.shape))
    ext[...] = moved   # in place: the graph reads this buffer
    drain()
    graph.launch(stream)
    stream.synchronize()
    got2 = host(out)
    ref2 = host(call())
    same2 = all(np.array_equal(a, b) for a, b in zip(got2, ref2)) and not np.array_equal(got2[1], got[1])

    def replay():
        graph.launch(stream)
        stream.synchronize()

    t = best(replay, repeat)
    verdict = ("replay == direct, bit for bit, before and after moving the atoms" if same and same2 else
               f"replay DIFFERS from direct (before moving: {'same' if same else 'differs'}, after: "
               f"{'same' if same2 else 'differs'}; max |dF| {np.abs(got2[1] - ref2[1]).max():.3g} eV/A)")
    return t, verdict


if __name__ == "__main__":
    raise SystemExit(main())
