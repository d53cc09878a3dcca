"""numba.cuda's device allocations served by CuPy's memory pool (GPU only; experimental, off
unless NUMDP_CUDA_NUMBA_POOL=1).

The device neighbour search (numdp.neighbor.device) allocates its arrays with numba
(`cuda.device_array`, `cuda.to_device`): the neighbour-list phase of a 192-atom MD step makes 15
allocations (OpCounter's "alloc" column), each a cuMemAlloc, and numba's deferred frees end in
cuMemFree calls, which wait for the device.  CuPy's pool hands out cached blocks instead.
`install()` gives the current numba context (and the contexts made after it) an External Memory Management plugin whose
`memalloc` takes a block from CuPy's current allocator and keeps it until numba's array is
collected; both libraries then run on CUDA's legacy default stream, so a block freed by one and
reused by the other is ordered by the launch order, as CuPy's own arrays are.

Off by default until a GPU run has measured it (tools/gpu_check.sh runs the MD benchmark with it
on and the CUDA tests' `tests/test_cuda_numba_pool.py` checks it there); the simulator never
installs it (its arrays are NumPy's).
"""
from __future__ import annotations

import os


def enabled(environ=os.environ) -> bool:
    """NUMDP_CUDA_NUMBA_POOL: "1" (or true / yes / on) installs the plugin; default off."""
    return environ.get("NUMDP_CUDA_NUMBA_POOL", "0").strip().lower() in ("1", "true", "yes", "on")


_MANAGER: list = []   # the plugin class, once made


def _keep(block):
    """A finalizer that holds CuPy's `block` until numba's pointer is collected (then the block
    goes back to CuPy's pool)."""
    def release():
        return block
    return release


def manager_class():
    """The EMM plugin class (made once: it subclasses numba-cuda's bases, imported on use)."""
    if _MANAGER:
        return _MANAGER[0]
    import cupy
    from numba import cuda
    from numba.cuda.cudadrv import driver

    class CuPyPoolMemoryManager(cuda.GetIpcHandleMixin, cuda.HostOnlyCUDAMemoryManager):
        """numba's device allocations from CuPy's current allocator (its default pool)."""

        def initialize(self):
            pass

        def memalloc(self, size):
            block = cupy.cuda.alloc(size)
            ptr = driver.binding.CUdeviceptr(int(block.ptr))
            return driver.MemoryPointer(self.context, ptr, size, finalizer=_keep(block))

        def get_memory_info(self):
            free, total = cupy.cuda.runtime.memGetInfo()
            return driver.MemoryInfo(free=free, total=total)

        @property
        def interface_version(self):
            return 1

    _MANAGER.append(CuPyPoolMemoryManager)
    return CuPyPoolMemoryManager


def install() -> bool:
    """Serve numba's device allocations from CuPy's pool in the current context and in contexts
    made later; False (nothing changed) when numba-cuda lacks the plugin interface."""
    from numba import cuda

    if not all(hasattr(cuda, n) for n in ("set_memory_manager", "HostOnlyCUDAMemoryManager",
                                          "GetIpcHandleMixin")):
        return False
    cls = manager_class()
    cuda.set_memory_manager(cls)
    ctx = cuda.current_context()
    if not isinstance(ctx.memory_manager, cls):   # the context existed before: swap its manager
        ctx.memory_manager = cls(context=ctx)
        ctx.memory_manager.initialize()
    return True
