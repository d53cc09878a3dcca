"""numdp.kernels.cuda.opcount: the count of a GPU step's device operations (Numba's simulator)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba_cuda")


def test_op_counter_counts_array_ops_copies_and_phases_without_changing_values():
    """Under the simulator the counter's array module and its arrays count what CuPy would run on
    the device: operators, reductions, array-indexed gathers and slice writes are array ops, basic
    slices and reshapes are free, empty is an allocation, int() of a device scalar is a copy to
    the host; a kernel launched by DeviceVelocityVerlet.kick_half is filed under "integrate".
    Values are NumPy's; after the context nothing is counted and the backend's xp is NumPy."""
    from numdp.backend import get_backend
    from numdp.kernels.cuda.opcount import OpCounter
    from numdp.md.device import DeviceVelocityVerlet
    from numdp.md.device_state import DeviceState
    from numdp.system import State

    be = get_backend("cuda")
    rng = np.random.default_rng(1)
    host = rng.normal(size=(6, 3))
    c = OpCounter()
    with c.counting():
        xp = be.xp
        a = xp.array(host)                 # host data to the device
        b = xp.empty((6, 3))               # allocation
        b[...] = a                         # a copy on the device
        s = (a * 2.0 + b).sum(axis=0)      # two element-wise ops and a reduction
        k = xp.argmax(a[:, 0])             # a free view, a reduction
        g = a[k]                           # a gather by a device index
        n = int((a[:, 1] > 0).sum())       # an op, a reduction and a read to the host
        v = a.reshape(18)[2:5]             # free
        first = (c.launches, c.array_ops, c.allocs, c.to_device, c.to_host)
        st = State(positions=host.copy(), velocities=host.copy(), types=np.zeros(6, np.int32),
                   masses=np.ones(6), box=None, type_map=["A"], ids=np.arange(6), forces=host.copy())
        dev = DeviceState.upload(be, st)   # 6 arrays to the device
        c.reset()
        DeviceVelocityVerlet(0.001, dev).kick_half(st)
        integrate = dict(c.counts["integrate"])
        c.reset()
        s = (a * 2.0 + b).sum(axis=0)
        n = int((a[:, 1] > 0).sum())
        g = a[k]
    assert first == (0, 8, 1, 1, 1)
    assert integrate == {"kernel": 1}
    assert (c.launches, c.array_ops, c.allocs, c.to_device, c.to_host) == (0, 6, 0, 0, 1)
    assert np.array_equal(np.asarray(s), (host * 2.0 + host).sum(axis=0))
    assert n == int((host[:, 1] > 0).sum()) and np.array_equal(np.asarray(g), host[np.argmax(host[:, 0])])
    assert np.array_equal(np.asarray(v), host.reshape(18)[2:5])
    assert be.xp is np
    (np.asarray(a) + 1.0).sum()
    assert c.array_ops == 6


def test_op_counter_counts_each_kind_once():
    """Nested operations count once (np.argmax calling the array's argmax); the backend's
    to_device of an array already on the device is no copy; numba's to_device and copy_to_host
    (the neighbour search's copies) are copies, device_array an allocation."""
    from numba import cuda

    from numdp.backend import get_backend
    from numdp.kernels.cuda.opcount import OpCounter

    be = get_backend("cuda")
    c = OpCounter()
    with c.counting():
        a = be.to_device(np.arange(5.0))
        be.to_device(a)
        be.xp.argmax(a)
        d = cuda.to_device(np.zeros(3))
        cuda.device_array(4)
        d.copy_to_host()
    assert (c.to_device, c.array_ops, c.allocs, c.to_host) == (2, 1, 1, 1)
    assert c.bytes_to_device == 40


def test_nose_hoover_half_step_on_one_rank_copies_nothing_to_the_host(monkeypatch):
    """The Nosé-Hoover chain's half-step on one GPU rank (issue 14: the host receives data only at
    output steps): the first call uploads the chain's variables, masses and weights (4 copies to
    the device); every call is 1 kernel in the "thermostat" phase (`nose_hoover_chain_block`: the
    per-atom kinetic terms, the tree sum of 40 atoms, the chain and the scaling in one block; 4
    kernels in the multi-launch form of systems above md.ONE_BLOCK_ROWS atoms, forced here by
    lowering it: per-atom terms, the tree's first level, the one-thread kernel that sums the last
    level and runs the chain, the scaling) and no copy to the host; the chain's variables reach the
    host State only by a download."""
    from numdp.backend import get_backend
    from numdp.kernels.cuda import md
    from numdp.kernels.cuda.opcount import OpCounter
    from numdp.md.device import DeviceVelocities
    from numdp.md.device_state import DeviceState
    from numdp.md.thermostats import NoseHooverChain
    from numdp.system import State

    be = get_backend("cuda")
    for kernels, limit in ((1, md.ONE_BLOCK_ROWS), (4, 0)):
        monkeypatch.setattr(md, "ONE_BLOCK_ROWS", limit)
        rng = np.random.default_rng(2)
        st = State(positions=rng.uniform(0, 9, (40, 3)), velocities=rng.normal(size=(40, 3)),
                   types=np.zeros(40, np.int32), masses=rng.uniform(1, 20, 40), box=None, type_map=["A"],
                   ids=np.arange(40))
        dev = DeviceState.upload(be, st)
        th = NoseHooverChain(300.0, 0.05, 3)
        th.ops = DeviceVelocities(dev)
        th.initialize(st)
        c = OpCounter()
        with c.counting():
            th.half_step(st, 0.0005, 2)
            first = (c.launches, c.to_device, c.to_host)
            c.reset()
            th.half_step(st, 0.0005, 3)
            th.half_step(st, 0.0005, 2)
            later = dict(c.counts["thermostat"])
        assert first == (kernels, 4, 0)
        assert later.get("kernel") == 2 * kernels and not later.get("to_host") and not later.get("to_device")
        assert not st.thermostat["vxi"].any()       # the host copy waits for a download
        dev.download(st)
        assert st.thermostat["vxi"].all()


def test_timed_counter_times_kernels_and_array_functions_by_name():
    """OpCounter(timed=True) files the wall time of each kernel launch and array-library call
    under its kind and name (the simulator's times: positive, meaningless); the default counter
    times nothing; the table names the operations."""
    from numdp.backend import get_backend
    from numdp.kernels.cuda import forces
    from numdp.kernels.cuda.opcount import OpCounter

    be = get_backend("cuda")
    nbr = np.array([2, -1, 0, 2], np.int32)
    seconds = []
    for timed in (True, False):
        c = OpCounter(timed=timed)
        with c.counting():
            key = be.xp.empty(4, np.int64)
            forces.pair_sort_keys[1, 32](be.to_device(nbr), key)
            rev = be.xp.argsort(key)
        assert np.array_equal(np.asarray(rev), [1, 2, 0, 3])
        seconds.append(dict(c.seconds))
    assert set(seconds[0]) == {("kernel", "pair_sort_keys"), ("array op", "xp.argsort")}
    assert all(t > 0 for t in seconds[0].values()) and seconds[1] == {}
    c = OpCounter(timed=True)
    with c.counting():
        forces.pair_sort_keys[1, 32](be.to_device(nbr), be.xp.empty(4, np.int64))
    assert "pair_sort_keys" in c.time_table()
