"""What numdp changes in Numba's CUDA simulator for its own tests (numdp.kernels.cuda.launch):
a block's shared arrays are one per calling line even when the block's threads (Python threads)
switch between the simulator's look-up of the line and its store of a new array."""
import threading
import time

import numpy as np
import pytest
from numba import config, cuda

pytest.importorskip("numba_cuda")
if not getattr(config, "ENABLE_CUDASIM", 0):
    pytest.skip("simulator behaviour (a GPU has one copy of a block's shared array)", allow_module_level=True)

import numdp.kernels.cuda.launch as launch  # noqa: E402
from numba.cuda.simulator import kernelapi  # noqa: E402


class _SwitchingNumPy:
    """NumPy whose `empty` sleeps first: the thread making a shared array gives up the GIL
    between the look-up of its line and the store, where the simulator's own code lets another
    thread of the block make a second array."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def empty(*args, **kwargs):
        time.sleep(0.002)
        return np.empty(*args, **kwargs)


def test_threads_of_a_block_get_one_shared_array_per_line(monkeypatch):
    monkeypatch.setattr(launch, "np", _SwitchingNumPy())
    shared = kernelapi.FakeCUDAShared(0)
    got = [None] * 8

    def thread(k):
        a = shared.array(16, np.int64)
        b = shared.array(16, np.float64)
        got[k] = (a, b)

    threads = [threading.Thread(target=thread, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(a) for a, _ in got}) == 1
    assert len({id(b) for _, b in got}) == 1
    a, b = got[0]
    assert a is not b and a.dtype == np.int64 and b.dtype == np.float64 and a.shape == (16,)


@cuda.jit
def _sum_through_shared(out):
    part = cuda.shared.array(64, dtype=np.int64)
    tid = cuda.threadIdx.x
    part[tid] = tid + 1
    cuda.syncthreads()
    acc = 0
    for k in range(cuda.blockDim.x):
        acc += part[k]
    out[tid] = acc


def test_a_launch_sums_what_every_thread_wrote_to_shared_memory(monkeypatch):
    """Every thread writes its entry and reads all of them after the barrier: each must read
    n (n + 1) / 2, with a thread switch forced inside every shared-array allocation."""
    monkeypatch.setattr(launch, "np", _SwitchingNumPy())
    n = 8
    out = np.zeros(n, np.int64)
    _sum_through_shared[1, n](out)
    assert np.array_equal(out, np.full(n, n * (n + 1) // 2))
