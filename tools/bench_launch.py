"""What one device operation costs the host, apart from any work: numba.cuda launches and CuPy calls.

On an H200 every device operation of numdp cost 188-294 µs (docs/gpu.md, "Launch cost"), at every
system size: a fixed cost per operation, not the device's work.  This script takes that cost
apart on tiny arrays (the device's work is nil), µs per operation over `--n` operations, the
device synchronised once at the end:

  empty kernel            a kernel without arguments: the floor of a numba.cuda launch
  8 numba arrays          a kernel over 8 numba device arrays
  8 cupy args             the same kernel over 8 CuPy arrays, as numdp launches them (through
                          numdp.kernels.cuda.fastlaunch unless NUMDP_CUDA_FAST_LAUNCH=0)
  8 cupy args, numba's path   the same through numba-cuda's own launch (the fast path removed)
  ..., sync on            numba's path with NUMBA_CUDA_ARRAY_INTERFACE_SYNC's wait switched on
  8 numba views of cupy   the CuPy arrays as numba DeviceNDArray views made once
  cupy a += b, a.sum(), a @ a, float(a.sum())   one CuPy elementwise op, reduction, cuBLAS product,
                          and a reduction read back on the host (a device round trip)
  graph of K kernels      the 8-array kernel K times captured in a CUDA graph on a CuPy stream,
                          replayed: µs per kernel inside a replay (and whether capture works)

Usage: python tools/bench_launch.py [--n 2000] [--json FILE].  Under the simulator
(NUMBA_ENABLE_CUDASIM=1) it runs tiny counts and the CuPy rows are skipped: a dry run only."""
import argparse
import json
import time

import numpy as np
from numba import config, cuda

SIM = bool(getattr(config, "ENABLE_CUDASIM", 0))


@cuda.jit
def empty():
    pass


@cuda.jit
def eight(a, b, c, d, e, f, g, h):
    i = cuda.grid(1)
    if i < a.shape[0]:
        a[i] += b[i] + c[i] + d[i] + e[i] + f[i] + g[i] + h[i]


def _sync():
    cuda.synchronize()


def per_op(fn, n: int) -> float:
    """µs per call of fn() over n calls (after 3 warm-up calls), the device drained before and after."""
    for _ in range(3):
        fn()
    _sync()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    _sync()
    return (time.perf_counter() - t) / n * 1e6


def _cuda_sync_config():
    from numba.cuda.core import config as cuda_config   # numba-cuda's own config (the CUDA target)
    return cuda_config


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20 if SIM else 2000, help="operations per row")
    ap.add_argument("--graph-kernels", type=int, default=4 if SIM else 64)
    ap.add_argument("--json", help="write the rows here too")
    args = ap.parse_args(argv)
    n = args.n
    rows: dict[str, float | str] = {}

    def row(name, value):
        rows[name] = value
        print(f"{name:<34} {value:>10.2f} us" if isinstance(value, float) else f"{name:<34} {value}",
              flush=True)

    try:
        from numdp.backend import get_backend
        get_backend("cuda")   # numdp's settings of numba (the per-array synchronisation off)
    except Exception as exc:  # noqa: BLE001 - the rows below still mean something
        print(f"numdp's CUDA backend not loaded ({type(exc).__name__}: {exc})")
    cupy = None
    if not SIM:
        try:
            import cupy
        except ImportError:
            print("CuPy not importable: the CuPy rows are skipped")
    L = 1024
    row("empty kernel", per_op(lambda: empty[1, 32](), n))
    host = [np.ones(L) for _ in range(8)]
    dev = [cuda.to_device(h) for h in host]
    blocks = (L + 127) // 128
    row("8 numba arrays", per_op(lambda: eight[blocks, 128](*dev), n))
    if cupy is not None:
        cp = [cupy.asarray(h) for h in host]
        from numba.cuda import dispatcher

        from numdp.kernels.cuda import fastlaunch

        fast = fastlaunch.installed() and getattr(dispatcher.CUDADispatcher.call, "_numdp_fast", False)
        row("8 cupy args" + (" (numdp's fast path)" if fast else " (numba's path)"),
            per_op(lambda: eight[blocks, 128](*cp), n))
        fastlaunch.uninstall()
        try:
            row("8 cupy args, numba's path", per_op(lambda: eight[blocks, 128](*cp), n))
            cfg = _cuda_sync_config()
            saved = cfg.CUDA_ARRAY_INTERFACE_SYNC
            cfg.CUDA_ARRAY_INTERFACE_SYNC = True
            try:
                row("8 cupy args, numba's, sync on", per_op(lambda: eight[blocks, 128](*cp), n))
            finally:
                cfg.CUDA_ARRAY_INTERFACE_SYNC = saved
            print(f"(numba's CUDA_ARRAY_INTERFACE_SYNC as numdp left it: {saved})")
        finally:
            if fast:
                fastlaunch.install()
        views = [cuda.as_cuda_array(x, sync=False) for x in cp]
        row("8 numba views of cupy", per_op(lambda: eight[blocks, 128](*views), n))
        a, b = cp[0], cp[1]
        m = cupy.ones((64, 64))
        row("cupy a += b", per_op(lambda: a.__iadd__(b), n))
        row("cupy a.sum()", per_op(lambda: a.sum(), n))
        row("cupy 64x64 @", per_op(lambda: m @ m, n))
        row("cupy float(a.sum())", per_op(lambda: float(a.sum()), max(1, n // 4)))
        row("cupy empty(1024)", per_op(lambda: cupy.empty(L), n))
        k = args.graph_kernels
        try:
            stream = cupy.cuda.Stream(non_blocking=True)
            nstream = cuda.external_stream(stream.ptr)
            x = cupy.zeros(L)
            with stream:
                stream.begin_capture()
                for _ in range(k):
                    eight[blocks, 128, nstream](x, *cp[1:])
                graph = stream.end_capture()
            stream.synchronize()
            graph.launch(stream)
            stream.synchronize()
            ok = float(x[0].get()) == float(7 * k)   # each replayed kernel adds 7 to x
            t = per_op(lambda: graph.launch(stream), max(1, n // k))
            stream.synchronize()
            row(f"graph of {k} kernels, per kernel", t / k)
            row("graph replay, per replay", t)
            row("graph result right", "yes" if ok else f"NO: x[0] = {float(x[0].get())}, expected {7 * k}")
        except Exception as exc:  # noqa: BLE001 - whether capture works is itself the finding
            row("graph capture", f"FAILED: {type(exc).__name__}: {exc}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
