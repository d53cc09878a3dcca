"""numdp.md.device_graph: the device work of MD force calls replayed from a CUDA graph.

Under the simulator the graph is emulated (`EmulatedGraphs`: a replay runs the call again and
copies its results into the arrays the capture returned, as a replayed graph rewrites the
buffers it was captured with), so the bookkeeping (when to warm up, capture, replay, start over)
and the run's use of the reused output arrays are tested against the run without graphs, bit for
bit.  On a GPU (NUMDP_TEST_REAL_GPU=1, tools/gpu_check.sh) the same run uses real CUDA graphs."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

pytest.importorskip("numba_cuda")

from numdp.md import device as md_device  # noqa: E402
from numdp.md.device_graph import ForceCallGraph, _Stage, enabled  # noqa: E402
from test_cuda_md import NHC, cluster_frames, make_cluster, run  # noqa: E402

REAL_GPU = os.environ.get("NUMDP_TEST_REAL_GPU") == "1"


class _CountingEngine:
    def __init__(self, fail_capture=False):
        self.calls = []
        self.fail_capture = fail_capture

    def warm(self, fn):
        self.calls.append("warm")
        return fn()

    def capture(self, fn):
        self.calls.append("capture")
        if self.fail_capture:
            raise RuntimeError("operation not permitted when stream is capturing")
        self.fn = fn
        return fn()

    def replay(self):
        self.calls.append("replay")
        return self.fn()

    def reset(self):
        self.calls.append("reset")


def test_the_switch_reads_the_environment():
    assert not enabled({})
    assert enabled({"NUMDP_CUDA_GRAPH": "1"}) and enabled({"NUMDP_CUDA_GRAPH": " on"})
    assert not enabled({"NUMDP_CUDA_GRAPH": "0"})


def test_fresh_warm_capture_replay_and_start_over_on_a_new_key():
    eng = _CountingEngine()
    g = ForceCallGraph(eng)
    made = []

    def fn():
        made.append(1)
        return (len(made),)

    keys = ["a", "a", "a", "a", "a", "b", "b", "a"]
    outs = [g.run(fn, k) for k in keys]
    assert [o[0] for o in outs] == list(range(1, 9))   # every call computed (the fake replays by calling)
    assert eng.calls == ["reset", "warm", "capture", "replay", "replay", "reset", "warm", "reset"]
    assert g.captures == 1 and g.replays == 2 and g.stage is _Stage.FRESH and g.key == "a"


def test_a_failed_capture_warns_once_and_the_run_goes_on_without_graphs():
    eng = _CountingEngine(fail_capture=True)
    g = ForceCallGraph(eng)
    with pytest.warns(RuntimeWarning, match="capture of the force call failed .*without graphs"):
        outs = [g.run(lambda: (7,), "k") for _ in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        outs += [g.run(lambda: (7,), "k") for _ in range(3)]
    assert outs == [(7,)] * 6 and g.failed and g.captures == 0
    assert eng.calls == ["reset", "warm", "capture", "reset"]


class EmulatedGraphs:
    """A GraphEngine without a GPU: the capture keeps fn and the arrays of its outputs; a replay
    runs fn again and copies its results into those arrays (a graph's replay rewrites the buffers
    it was captured with), so a caller that held on to something else of a call would read stale
    values, as it would after a real replay."""

    def __init__(self):
        self.log = []

    def warm(self, fn):
        self.log.append("warm")
        return fn()

    def capture(self, fn):
        self.log.append("capture")
        self.fn = fn
        self.outputs = tuple(np.array(a) for a in fn())
        return self.outputs

    def replay(self):
        self.log.append("replay")
        for kept, new in zip(self.outputs, self.fn()):
            kept[...] = new
        return self.outputs

    def reset(self):
        self.log.append("reset")


def compress_model(path) -> None:
    """Replace the model file with its compressed form (graphs need one: the uncompressed
    embedding reads counts to the host)."""
    from numdp.io.model_file import read_model, write_model
    from numdp.model.compress import compress

    params = read_model(path)
    # s = 1/r below 1/1.4 here: tables to s = 2 hold every pair of the run
    write_model(compress(params, dx=0.02, order=5, s_max=np.full(params.descriptor.ntypes, 2.0))[0], path)


# The graph holds the force call only; the Nose-Hoover run does all an NVE run does (the
# thermostat's kernels run outside the graph), so under the simulator (37 s a run) only it runs;
# on a GPU both do.
GRAPH_RUNS = {"nose-hoover": NHC, **({"nve": ""} if REAL_GPU else {})}


@pytest.mark.parametrize("md", list(GRAPH_RUNS.values()), ids=list(GRAPH_RUNS))
def test_md_with_graphs_equals_md_without(tmp_path, monkeypatch, md):
    """30 steps of the 3-atom cluster (compressed model) with a skin small enough for several
    ghost-shell rebuilds: the run whose force calls go through ForceCallGraph (emulated under the
    simulator, real CUDA graphs on a GPU) writes the same trajectory bits as the run without,
    both with the model's products as kernels (`use_graphs` switches them on: CuPy refuses
    cuBLAS while capturing)."""
    kw = {"steps": 30, "every": 5, "timestep": 0.0002, "skin": 0.02}
    plain = make_cluster(tmp_path / "plain", "cuda", md, **kw)
    compress_model(plain.parent / "model.h5")
    monkeypatch.setattr(md_device, "_maybe_use_graphs", lambda provider, be: provider.model.use_kernel_products())
    run(plain)
    providers = []

    def use_graphs(provider, be):
        provider.use_graphs(None if REAL_GPU else EmulatedGraphs())
        providers.append(provider)

    monkeypatch.setattr(md_device, "_maybe_use_graphs", use_graphs)
    graphed = make_cluster(tmp_path / "graphed", "cuda", md, **kw)
    compress_model(graphed.parent / "model.h5")
    run(graphed)
    a, b = cluster_frames(plain.parent), cluster_frames(graphed.parent)
    for name in a:
        assert np.array_equal(a[name], b[name]), name
    (provider,) = providers
    assert provider.model._ev.be.kernel_products
    graph = provider.graph
    assert provider.rebuilds >= 3, provider.rebuilds          # the graph started over several times
    assert graph.captures >= 2 and graph.replays >= 10, (graph.captures, graph.replays)
    if not REAL_GPU:
        log = graph.engine.log
        assert log.count("capture") == graph.captures and log.count("replay") == graph.replays
    # the graph holds the cached device constants its call read: the chunk atoms and the neighbour
    # search's constants, so emptying those caches cannot free what a replay reads
    from numdp.neighbor.device import _CONSTANTS

    kept = {id(v) for v in graph.kept}
    assert kept & {id(v) for v in provider.model._ev._chunk_atoms._held.values()}
    assert kept & {id(v) for v in _CONSTANTS._held.values()}


def test_the_simulator_ignores_the_switch_with_a_warning(monkeypatch):
    from numdp.backend import get_backend

    be = get_backend("cuda")
    if not be.simulator:
        pytest.skip("the simulator's case")
    monkeypatch.setenv("NUMDP_CUDA_GRAPH", "1")

    class Provider:
        graph = None

        def use_graphs(self):
            raise AssertionError("no graphs under the simulator")

    with pytest.warns(RuntimeWarning, match="ignored under the CUDA simulator"):
        md_device._maybe_use_graphs(Provider(), be)


def test_graphs_need_a_compressed_model(tmp_path, monkeypatch):
    toml = make_cluster(tmp_path, "cuda", steps=1)
    seen = []
    monkeypatch.setattr(md_device, "_maybe_use_graphs", lambda provider, be: seen.append(provider))
    run(toml)
    with pytest.raises(RuntimeError, match="need a compressed model"):
        seen[0].use_graphs(EmulatedGraphs())
