"""numdp at run time in a real process: forks while other threads hold its locks, Numba's
threading layer read once, and the BLAS thread pools of NumPy and SciPy.

Each case runs in a fresh Python (its own threading layer, its own imports) under a timeout, so
that a child that hangs fails the test instead of hanging the suite.  The model is the small
DeePMD-kit .dp file of tests/data/fparam (numb_fparam 3 with a default: a model with a lock) on the
12-atom frame of tests/data/api/dp_reference.npz.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numba
import numpy as np

from numdp.neighbor import threads

DATA = Path(__file__).parent / "data"

_PRELUDE = f"""
import json, os, signal, sys, threading, time
import numpy as np
from numdp.errors import InputError
from numdp.model import dp_model
from numdp.neighbor import build_nlist, extend
from numdp.neighbor.threads import one_launcher
REF = np.load({str(DATA / "api" / "dp_reference.npz")!r})
model = dp_model.load_model({str(DATA / "fparam" / "fparam_default.dp")!r}, nthreads=2)
pos, box, typ = REF["coord"][0], REF["box"][0], REF["atype"].astype(np.int32)


def in_child(fn, timeout=20.0):
    '''fn() in a forked child: its text, "hung" (killed after `timeout` s) or "died <status>".'''
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            try:
                text = fn()
            except InputError as exc:
                text = "InputError: " + str(exc)
            os.write(w, text.encode())
        finally:
            os._exit(0)
    os.close(w)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.read(r, 1 << 16).decode() if status == 0 else f"died {{status}}"
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return "hung"


def hold(*contexts):
    '''Start a thread that enters `contexts` (callables giving context managers) and stays.'''
    held = threading.Event()

    def run():
        from contextlib import ExitStack
        with ExitStack() as stack:
            for c in contexts:
                stack.enter_context(c())
            held.set()
            threading.Event().wait()

    threading.Thread(target=run, daemon=True).start()
    held.wait()
"""


def _run(body: str, env: dict | None = None, timeout: float = 60.0) -> dict:
    """Run _PRELUDE + body in a fresh Python; the JSON its last output line prints."""
    full = {**os.environ, **(env or {})}
    out = subprocess.run([sys.executable, "-c", _PRELUDE + textwrap.dedent(body)], env=full,
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- fork while another thread holds a lock -------------------------------------------------------

def test_child_forked_while_another_thread_sets_a_models_parameters_computes_right():
    """A thread of the parent inside a call of a model with parameters (its lock held, the
    first-layer biases half-set) when another forks: the child's `compute` waited for ever on the
    lock.  It must give the parent's numbers: the lock free and the biases set anew."""
    got = _run("""
        d = model.params.descriptor
        ext = extend(pos, typ, box, d.rcut)
        nl = build_nlist(ext, d.rcut, d.sel, d.ntypes)
        want = model.compute(ext.positions, nl.nlist, typ).atom_energy

        class HalfSet:   # a use_inputs stopped between writing the biases and recording them
            def __enter__(self):
                model._lock.acquire()
                model._ev.fit[0].layers[0].b[...] += 1.0
            def __exit__(self, *exc):
                model._lock.release()

        hold(HalfSet)
        def child():
            e = model.compute(ext.positions, nl.nlist, typ).atom_energy
            return "same" if np.array_equal(e, want) else f"differs by {np.abs(e - want).max()}"
        print(json.dumps({"child": in_child(child)}))
    """)
    assert got["child"] == "same", got


def test_child_forked_on_workqueue_while_others_search_and_evaluate_evaluates_right():
    """On Numba's workqueue layer (fork-safe; its fallback without TBB or OpenMP) a thread of
    the parent in a neighbour search (`one_launcher` held) and in a call of the model (its lock
    held) when another forks: the child's first evaluation waited for ever.  It must give the
    parent's energy (the same bits: same model, threads and frame)."""
    got = _run("""
        want = model.evaluate(pos, typ, box).energy
        hold(one_launcher, lambda: model.inputs(fparam=[0.5, 0.5, 0.5], types=typ))
        def child():
            return repr(model.evaluate(pos, typ, box).energy)
        print(json.dumps({"child": in_child(child), "want": repr(want)}))
    """, env={"NUMBA_THREADING_LAYER": "workqueue"})
    assert got["child"] == got["want"], got


def test_forking_thread_keeps_the_lock_it_holds():
    """A thread that forks inside a model's call (its own lock held) goes on in the child and
    releases the lock there: the child must not have freed it under that thread (the release
    would raise RuntimeError), and the model must then evaluate."""
    got = _run("""
        want = model.evaluate(pos, typ, box).energy
        model._lock.acquire()   # as inside a call of the model
        def child():
            model._lock.release()   # the forking thread leaves that call
            return repr(model.evaluate(pos, typ, box).energy)
        text = in_child(child)
        model._lock.release()
        print(json.dumps({"child": text, "want": repr(want)}))
    """, env={"NUMBA_THREADING_LAYER": "workqueue"})
    assert got["child"] == got["want"], got


# --- the threading layer, read once -------------------------------------------------------------

def test_workqueue_launches_stay_one_at_a_time_from_the_first_call():
    """`one_launcher` reads Numba's threading layer once, at its first call: two threads making
    that first call together on the workqueue layer (not thread-safe) must still enter one at a
    time, as must later calls."""
    got = _run("""
        barrier, inside, most, lock = threading.Barrier(2), [0], [0], threading.Lock()
        def caller():
            for k in range(3):
                if k == 0:
                    barrier.wait()
                with one_launcher():
                    with lock:
                        inside[0] += 1
                        most[0] = max(most[0], inside[0])
                    time.sleep(0.05)
                    with lock:
                        inside[0] -= 1
        ts = [threading.Thread(target=caller) for _ in range(2)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        import numba
        print(json.dumps({"most": most[0], "layer": numba.threading_layer()}))
    """, env={"NUMBA_THREADING_LAYER": "workqueue"})
    assert got == {"most": 1, "layer": "workqueue"}, got


def test_one_launcher_is_free_on_a_thread_safe_layer():
    """In this process: the lock is taken exactly when the layer is workqueue."""
    ctx = threads.one_launcher()
    with ctx:
        pass
    assert (ctx is threads._ONE_CALLER) == (numba.threading_layer() == "workqueue")


# --- BLAS threads ---------------------------------------------------------------------------------

_OPENBLAS_THREADS = """
import ctypes
def openblas_threads(n=None):
    '''{library file: its thread count} of every OpenBLAS mapped into this process (read from
    /proc/self/maps, independently of numdp.blas), each first set to n when given.'''
    paths = sorted({line.split()[-1] for line in open("/proc/self/maps")
                    if "openblas" in line.rsplit("/", 1)[-1] and ".so" in line})
    out = {}
    for path in paths:
        lib = ctypes.CDLL(path)
        for stem in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                get = getattr(lib, f"{stem}_get_num_threads{suffix}", None)
                if get is not None:
                    if n is not None:
                        getattr(lib, f"{stem}_set_num_threads{suffix}")(ctypes.c_int(n))
                    out[os.path.basename(path)] = int(get())
                    break
            else:
                continue
            break
    return out
"""


def test_scipys_openblas_gets_one_thread_like_numpys():
    """NumPy and SciPy wheels bundle an OpenBLAS each (Numba's kernels load SciPy's when the model
    is loaded); numdp set only NumPy's to one thread, so SciPy's (ASE's cell filters call
    scipy.linalg) kept one per core and oversubscribed numdp's workers.  After an evaluation every
    OpenBLAS of the process must have one thread, whatever it had before."""
    got = _run(_OPENBLAS_THREADS + textwrap.dedent("""
        import scipy.linalg
        scipy.linalg.expm(np.eye(3))
        set_to_2 = openblas_threads(2)
        model.evaluate(pos, typ, box)
        print(json.dumps({"set_to_2": set_to_2, "after": openblas_threads()}))
    """))
    assert len(got["set_to_2"]) == 2 and set(got["set_to_2"].values()) == {2}, got
    assert set(got["after"].values()) == {1}, got


# --- Numba's cache and rebound globals ------------------------------------------------------------

def test_each_cached_kernel_is_compiled_with_one_set_of_globals():
    """Numba's on-disk cache keys a kernel by its module, name, line, bytecode and closure, not by
    its globals; numdp.kernels.math._rebind compiles one function's code with other globals (the
    compiled helpers of a target).  Two `cache=True` compilations of one function with different
    globals in a process (say a second CPU tier with another tanh) would share one cache entry,
    and a later run would load either's machine code for both.  Every `cache=True` function of
    numdp.kernels (all of them imported) must be compiled with one set of the globals it reads."""
    script = textwrap.dedent("""
        import collections, importlib, json, pkgutil
        import numba
        import numdp.kernels.dual as dual
        seen, njit = collections.defaultdict(set), numba.njit
        def spy(*args, **kwargs):
            compile_ = njit(*args, **kwargs)
            if not kwargs.get("cache"):
                return compile_
            def record(fn):
                key = f"{fn.__module__}.{fn.__qualname__}:{fn.__code__.co_firstlineno}"
                seen[key].add(tuple(sorted((n, id(v)) for n, v in fn.__globals__.items()
                                           if n in fn.__code__.co_names)))
                return compile_(fn)
            return record
        numba.njit = dual.njit = spy
        import numdp.kernels as kernels
        for m in pkgutil.walk_packages(kernels.__path__, "numdp.kernels."):
            if ".cuda" not in m.name:   # (numba.cuda's device functions are never cached)
                importlib.import_module(m.name)
        print(json.dumps({"n": len(seen), "rebound": len([k for k in seen if "numdp.kernels.math." in k]),
                          "twice": sorted(k for k, v in seen.items() if len(v) > 1)}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["rebound"] >= 10 and got["twice"] == [], got
