"""Compile every neighbour-search CUDA kernel to PTX without a GPU (a check that the code the
simulator runs also types and compiles for the device).

Needs numba-cuda and the NVVM / NVRTC wheels (pip install nvidia-cuda-nvcc nvidia-cuda-nvrtc,
CUDA 13); run without NUMBA_ENABLE_CUDASIM.  Prints one line per kernel (PTX size
and the number of fused multiply-adds the compiler made) and exits 1 on any failure.

    python tools/ptx_neighbor.py [--cc 9.0]
"""

from __future__ import annotations

import sys


def kernels():
    """(name, kernel, argument types) of every neighbour-search kernel launch."""
    from numba import types as nt
    from numba.core.types import Array

    from numdp.kernels.cuda import neighbor as kc

    f8_1, f8_2 = Array(nt.float64, 1, "C"), Array(nt.float64, 2, "C")
    i4_1, i4_2 = Array(nt.int32, 1, "C"), Array(nt.int32, 2, "C")
    i8_1 = Array(nt.int64, 1, "C")
    u8_1, u8_2 = Array(nt.uint64, 1, "C"), Array(nt.uint64, 2, "C")
    grid = (f8_2, i4_1, i4_1, i4_1, i4_1, i8_1, nt.int64, i4_1)
    fill = grid + (nt.int64, nt.float64, i8_1, i8_1, i4_2, i4_2, i4_1)
    return [
        ("pack_keys", kc.pack_keys, (i8_1, f8_1, i8_1, u8_1)),
        ("unpack_keys", kc.unpack_keys, (u8_1, i8_1, i8_1, i8_1)),
        ("scan_chunk_sums int32", kc.scan_chunk_sums, (i4_1, nt.int64, i4_1)),
        ("scan_chunk_write int64", kc.scan_chunk_write, (i8_1, nt.int64, i8_1, i8_1)),
        ("scan_block int32", kc.scan_block, (i4_1, i8_1)),
        ("scan_block int64", kc.scan_block, (i8_1, i8_1)),
        ("wrap_count_images", kc.wrap_count_images, (f8_2, f8_2, f8_2, f8_1, f8_1, f8_2, f8_2, i8_1)),
        ("wrap_count_images_mixed", kc.wrap_count_images_mixed,
         (f8_2, f8_2, f8_2, i4_1, f8_1, f8_1, f8_2, f8_2, i8_1)),
        ("fill_images", kc.fill_images, (f8_2, f8_2, i4_1, f8_2, f8_1, f8_1, i8_1, f8_2, i4_1, i4_1)),
        ("copy_locals", kc.copy_locals, (f8_2, i4_1, f8_2, i4_1, i4_1)),
        ("first_bad_atom", kc.first_bad_atom, (f8_2, i4_1, nt.int64, i8_1)),
        ("bounds", kc.bounds, (f8_2, f8_1)),
        ("clear_counters", kc.clear_counters, (i4_1, i4_1, i8_1, i4_1)),
        ("bin_count", kc.bin_count, (f8_2, f8_1, f8_1, i8_1, i4_1, i4_1)),
        ("bin_scatter", kc.bin_scatter, (f8_2, i4_1, i4_1, i4_1, i4_1, f8_2, i4_1, i4_1, i4_1)),
        ("mark_centres", kc.mark_centres, (i4_1, nt.int64, i4_1)),
        ("compact_centres", kc.compact_centres, (i4_1, nt.int64, i4_1, i4_1)),
        ("count_stats", kc.count_stats, (i4_2, i8_1, i8_1, i8_1)),
        ("count_within", kc.count_within, (f8_2, i4_1, i4_1, i4_1, i8_1, nt.int64, i4_1, nt.float64, i4_2)),
        ("fill_nlist_global", kc.fill_nlist_global, fill + (u8_2, i4_2)),
    ] + [(f"fill_nlist_shared({c})", kc.fill_nlist_shared(c), fill) for c in (256, 1024, 3072)]


def main() -> int:
    from ptx_evaluator import check

    return check(kernels, __doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
