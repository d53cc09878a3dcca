"""Compile every CUDA kernel of the model evaluator to PTX without a GPU (a check that the code
the simulator runs also types and compiles for the device), with the argument types the
evaluator passes (numdp/model/cuda_evaluator.py) in each precision's dtypes.

Needs numba-cuda and the NVVM wheel (pip install nvidia-cuda-nvcc nvidia-cuda-nvrtc, CUDA 13);
run without NUMBA_ENABLE_CUDASIM.  Prints one line per kernel (PTX size and the number of fused
multiply-adds the compiler made) and exits 1 on any failure.

    python tools/ptx_evaluator.py [--cc 9.0]
"""
from __future__ import annotations

import argparse
import os
import sys


def kernels():
    """(name, kernel, argument types) of every evaluator kernel launch."""
    from numba import types as nt
    from numba.core.types import Array

    from numdp.kernels.cuda import descriptor, embedding, envmat, forces, layers, md, tabulated

    def arr(dt, nd):
        return Array(dt, nd, "C")

    f8, i4, i8 = nt.float64, nt.int32, nt.int64
    out = []
    for dt in (nt.float64, nt.float32):
        v1, v2 = arr(dt, 1), arr(dt, 2)
        tag = dt.name
        out += [
            (f"first_layer_tangent {tag}", layers.first_layer_tangent, (v1, v1, v1, v1, i8, v2)),
            (f"post_tangent {tag}", layers.post_tangent, (v2, v1, v1, v2, i8, v2, v2)),
            (f"post_forward {tag}", layers.post_forward, (v2, v1, v1, v2, i8, v2, v2)),
            (f"back_tanh {tag}", layers.back_tanh, (v2, v2, v1, v2)),
            (f"add_residual_adjoint {tag}", layers.add_residual_adjoint, (v2, i8, v2)),
            (f"contract_T {tag}", descriptor.contract_T,
             (arr(i8, 1), arr(f8, 2), v2, arr(i4, 1), arr(i8, 1), arr(f8, 3), f8, arr(f8, 3))),
            (f"contract_D {tag}", descriptor.contract_D, (arr(f8, 3), arr(i8, 1), arr(i8, 1), v2)),
            (f"back_D {tag}", descriptor.back_D,
             (arr(f8, 3), v2, arr(i8, 1), arr(i8, 1), arr(i8, 1), f8, arr(f8, 3))),
            (f"pair_forces {tag}", envmat.pair_forces,
             (arr(i8, 1), arr(f8, 2), arr(f8, 2), arr(i4, 1), arr(i8, 1), v2, v2, arr(f8, 3),
              arr(f8, 3), f8, f8, arr(f8, 2))),
            (f"embed_fused {tag}", embedding.embed_fused_for(dt.name),
             (v1, v1, v1, v1, arr(i8, 1), arr(i8, 1), arr(i8, 1), arr(i8, 1), v2, v2)),
        ]
        fwd, bwd = tabulated.kernels_for(dt.name)
        tab = (arr(dt, 3), arr(i8, 1), arr(f8, 2), arr(i8, 2))
        out += [
            (f"tab_contract_T {tag}", fwd, (arr(i8, 1), arr(f8, 2), arr(i4, 1), arr(i8, 1), arr(f8, 3))
             + tab + (f8, arr(f8, 3), arr(i4, 1))),
            (f"tab_pair_forces {tag}", bwd, (arr(i8, 1), arr(f8, 2), arr(f8, 2), arr(i4, 1), arr(i8, 1))
             + tab + (arr(f8, 3), arr(f8, 3), f8, f8, arr(f8, 2))),
        ]
    out += [
        ("env_pairs", envmat.env_pairs,
         (arr(f8, 2), arr(i4, 2), arr(i8, 1), arr(i8, 1), arr(i8, 1), arr(f8, 3), arr(f8, 3), f8, f8,
          arr(f8, 3), arr(f8, 2), arr(f8, 2), arr(i4, 1))),
        ("gather_centres", forces.gather_centres, (arr(i8, 1), arr(i8, 1), arr(f8, 2), arr(f8, 2))),
        ("gather_neighbours", forces.gather_neighbours,
         (arr(i8, 1), arr(i8, 1), arr(i4, 1), arr(i8, 1), arr(f8, 2), arr(f8, 2), arr(f8, 2), arr(f8, 2),
          arr(f8, 2), nt.boolean)),
        ("scatter_atomic", forces.scatter_atomic,
         (arr(i8, 1), arr(i8, 1), arr(i4, 1), arr(f8, 2), arr(f8, 2), arr(f8, 2), arr(f8, 2))),
        ("fold_rows", forces.fold_rows, (arr(f8, 2), arr(i8, 1), arr(i8, 1), arr(f8, 2))),
        ("closest_records (md)", md.closest_records, (arr(f8, 2), arr(i4, 2), arr(i8, 1), arr(f8, 2))),
        ("extreme_rows (md)", md.extreme_rows, (arr(f8, 2), i8, i8, i8, arr(f8, 2))),
    ]
    return out


def check(kernel_list, description: str) -> int:
    """Compile every (name, kernel, argument types) of kernel_list() to PTX for the compute
    capability given by --cc; one line per kernel (PTX size, fused multiply-adds made), then a
    count.  Exit status: 0 all compiled, 1 any failed, 2 under the simulator.  The command line of
    this script and of tools/ptx_neighbor.py."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--cc", default="9.0", help="compute capability, e.g. 9.0 (H100/H200)")
    args = ap.parse_args()
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        print("unset NUMBA_ENABLE_CUDASIM: the simulator does not compile", file=sys.stderr)
        return 2
    from numba import cuda
    from numba.cuda import dispatcher

    cc = tuple(int(v) for v in args.cc.split("."))

    class _Device:   # device functions are compiled for the current device's capability: no
        compute_capability = cc   # GPU here, so name the one asked for

    dispatcher.get_current_device = lambda: _Device
    kernels = kernel_list()
    failed = 0
    for name, kernel, sig in kernels:
        try:
            ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=cc)
            print(f"{name:30s} ok   {len(ptx):7d} chars of PTX, {ptx.count('fma.rn'):3d} fma")
        except Exception as exc:  # report every kernel, then fail
            failed += 1
            print(f"{name:30s} FAILED {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    print(f"{len(kernels) - failed} of {len(kernels)} kernels compiled for sm_{cc[0]}{cc[1]}")
    return 1 if failed else 0


def main() -> int:
    return check(kernels, __doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
