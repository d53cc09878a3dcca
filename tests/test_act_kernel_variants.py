"""The any-activation kernels (numdp.kernels.cpu.layers.by_activation): a model compiles only the
kernel variant of its activation, and the variants, closures that share one Numba cache file, each
come back from the cache as their own activation's.

Before the variants, every *_act kernel held the bodies of all activations (gelu, silu and sigmoid
with the code a constant, and the run-time 8-way switch) in one function: a gelu model's first
training run compiled all of them (95 s of one CI test, most of it spent on code it never ran)."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np

from numdp.kernels.cpu import layers as L
from numdp.kernels.cpu import train as T
from numdp.kernels.math import ACT_GELU, ACT_SIGMOID, ACT_SILU, CPU

# Compiles, in a fresh cache, what a gelu model's evaluation and training reverse run, and lists
# the libm functions named in the machine code of every kernel that was compiled.  softplus is the
# only activation that calls log1p: its presence means the run-time switch was compiled too.
GELU_ONLY = textwrap.dedent("""\
    import json, re
    import numpy as np
    from numba.core import event
    compiled = []

    class Listener(event.Listener):
        def on_start(self, ev):
            compiled.append(ev.data["dispatcher"])

        def on_end(self, ev):
            pass

    event.register("numba:compile", Listener())
    from numdp.kernels.cpu import layers as L, train as T
    from numdp.kernels.math import ACT_GELU
    rng = np.random.default_rng(0)
    n, k = 3, 4
    a = lambda *s: rng.normal(size=s)
    L.post_forward_act(ACT_GELU, a(n, k), a(k), a(k), a(n, k), 1, np.empty((n, k)), np.empty((n, k)))
    T.layer_back_pair_act(ACT_GELU, a(n, k), a(n, k), a(n, k), a(n, k), a(k), True, True,
                          np.empty((2 * n, k)), np.zeros(k), np.zeros(k), a(2 * n, k), 1)
    names = {}
    for d in compiled:
        for sig in d.signatures:
            ir = d.inspect_llvm(sig)
            names[d.py_func.__qualname__] = sorted(set(re.findall(r"declare [^@]*@([\\w.]+)", ir)))
    print(json.dumps(names))
    """)

# Runs post_forward_act for every activation code; prints the outputs and the variants' cache hits.
EVERY_CODE = textwrap.dedent("""\
    import json
    import numpy as np
    from numdp.kernels.cpu import layers as L
    rng = np.random.default_rng(1)
    n, k = 5, 9
    Z, b, idt, Y = 4.0 * rng.normal(size=(n, k)), rng.normal(size=k), rng.normal(size=k), rng.normal(size=(n, k))
    out = {}
    for act in range(8):
        D, o = np.empty((n, k)), np.empty((n, k))
        L.post_forward_act(act, Z, b, idt, Y, 0, D, o)
        out[act] = [D.tolist(), o.tolist()]
    hits = {str(c): sum(v.stats.cache_hits.values()) for c, v in L.post_forward_act.variants.items()}
    print(json.dumps({"out": out, "hits": hits}))
    """)


def _run(code, cache):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_gelu_model_compiles_no_other_activation(tmp_path):
    """Fresh cache, gelu only: the kernels compiled hold no softplus code (log1p).  The tree
    before the variants compiled one kernel of all activations: log1p in both kernels."""
    names = _run(GELU_ONLY, tmp_path)
    assert names, "nothing was compiled"
    for name, libm in names.items():
        assert "log1p" not in libm, f"{name} compiled the run-time activation switch for gelu"


def test_variants_come_back_from_the_cache_as_their_own_activation(tmp_path):
    """The four variants of a kernel share one cache file (one qualname and line); a second
    process loads each from it and gets exactly the first process's outputs for all 8 codes."""
    first = _run(EVERY_CODE, tmp_path)
    second = _run(EVERY_CODE, tmp_path)
    assert all(h == 0 for h in first["hits"].values())
    assert all(h >= 1 for h in second["hits"].values()), second["hits"]   # every variant loaded
    assert second["out"] == first["out"]
    outs = {json.dumps(v) for v in first["out"].values()}
    assert len(outs) == 8   # eight different activations: a variant mixed up would repeat one


def test_each_code_runs_its_variant():
    """run(act, ...) calls the variant of gelu, silu and sigmoid for those codes, the run-time one
    for the others, and the kernels agree with the scalar activation they inline."""
    for fam in (L.first_layer_tangent_act, L.first_layer_tangent_keep_act, L.post_tangent_act,
                L.post_tangent_keep_act, L.rebuild_tangent_act, L.post_forward_act,
                L.post_forward_keep_act, L.back_act_z, T.layer_tangent_out_act,
                T.layer_back_pair_act, T.layer_back_primal_act):
        v = fam.variants
        assert len({id(v[c]) for c in (ACT_GELU, ACT_SILU, ACT_SIGMOID, "any")}) == 4, fam.__name__
    rng = np.random.default_rng(2)
    n, k = 4, 6
    Z, b, idt = 3.0 * rng.normal(size=(n, k)), rng.normal(size=k), rng.normal(size=k)
    for act in range(8):
        D, o = np.empty((n, k)), np.empty((n, k))
        L.post_forward_act(act, Z, b, idt, np.zeros((n, k)), 0, D, o)
        want = np.array([[CPU.activation(act, z) for z in row] for row in Z + b])
        # same scalar expressions, up to the contraction of a product and a sum into one FMA:
        # a few units of round-off in h and h' (each a handful of operations on O(1) values)
        eps = np.finfo(float).eps
        assert np.allclose(D, want[..., 1], rtol=0, atol=64 * eps * (1 + np.abs(want[..., 1]).max()))
        assert np.allclose(o, idt * want[..., 0], rtol=0,
                           atol=64 * eps * (1 + np.abs(idt * want[..., 0]).max()))
