"""Scratch-buffer reuse: views have the asked shape and dtype, buffers only grow, and reusing
them across evaluations of different systems leaves no trace in the results."""
import numpy as np

from numdp.model.dp_model import DPModel
from numdp.model.workspace import Workspace
from randmodel import random_config, random_params


def test_get_shapes_dtypes_and_growth():
    ws = Workspace()
    a = ws.get("a", (3, 4))
    assert a.shape == (3, 4) and a.dtype == np.float64 and a.flags.c_contiguous
    held = ws.nbytes
    b = ws.get("a", (2, 2))
    assert b.shape == (2, 2) and ws.nbytes == held           # smaller request: same buffer
    assert np.shares_memory(a, b)
    c = ws.get("a", (10, 10))
    assert c.shape == (10, 10) and ws.nbytes > held          # larger request: grown
    d = ws.get("a", 5, np.int64)
    assert d.dtype == np.int64 and d.shape == (5,)           # another dtype: replaced
    z = ws.zeros("z", (4,), np.float32)
    assert z.dtype == np.float32 and not z.any()


def test_reused_scratch_leaves_no_trace():
    """A small system evaluated after a large one (stale scratch larger than needed) equals a
    fresh model's result bit for bit, with one and two threads and several chunks."""
    params = random_params(ntypes=2, sel=[24, 24], neuron=(4, 8), axis_neuron=3, rcut=4.0)
    big_pos, big_typ, big_box = random_config(60, 2, box_len=9.0, seed=1)
    pos, typ, box = random_config(24, 2, box_len=7.0, seed=2)
    for nthreads in (1, 2):
        fresh = DPModel(params, nthreads=nthreads, chunk=5).evaluate(pos, typ, box)
        model = DPModel(params, nthreads=nthreads, chunk=5)
        model.evaluate(big_pos, big_typ, big_box)
        again = model.evaluate(pos, typ, box)
        assert again.energy == fresh.energy
        np.testing.assert_array_equal(again.forces, fresh.forces)
        np.testing.assert_array_equal(again.virial, fresh.virial)
        np.testing.assert_array_equal(again.atom_virials, fresh.atom_virials)
