"""The launch recorder behind tools/ptx_check.py, under the simulator: each simulated launch is
written down with the argument types a GPU would compile for, and the kernel can be found again
(module attribute or factory call) in another process."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba_cuda")

from numba import types  # noqa: E402
from numba.cuda.simulator import kernel as sim  # noqa: E402

from numdp.kernels.cuda import launch, neighbor, tabulated  # noqa: E402

_SPEC = importlib.util.spec_from_file_location(
    "ptx_check", Path(__file__).resolve().parent.parent / "tools" / "ptx_check.py")
ptx_check = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(ptx_check)


def test_argument_types_are_those_of_the_device_arrays():
    a = np.zeros((4, 3))
    rec = launch.launch_record(neighbor.bounds, (a, np.asfortranarray(a), a[:, 1], np.zeros(3, np.int32),
                                                 7, 0.5, True, np.float32(2.0)))
    assert rec["kernel"] == {"module": "numdp.kernels.cuda.neighbor", "name": "bounds"}
    assert rec["sig"] == [["array", "float64", 2, "C"], ["array", "float64", 2, "F"],
                          ["array", "float64", 1, "A"], ["array", "int32", 1, "C"],
                          ["scalar", "int64"], ["scalar", "float64"], ["scalar", "bool"],
                          ["scalar", "float32"]]
    assert [ptx_check.numba_type(e) for e in rec["sig"]] == [
        types.Array(types.float64, 2, "C"), types.Array(types.float64, 2, "F"),
        types.Array(types.float64, 1, "A"), types.Array(types.int32, 1, "C"),
        types.int64, types.float64, types.boolean, types.float32]
    with pytest.raises(TypeError, match="bounds: argument of type object"):
        launch.launch_record(neighbor.bounds, (object(),))


def test_kernels_are_found_again_by_module_name_or_factory_call():
    assert ptx_check.resolve(launch.launch_record(neighbor.pack_keys, ())["kernel"]) is neighbor.pack_keys
    fill = neighbor.fill_nlist_shared(8)
    where = launch.launch_record(fill, ())["kernel"]
    assert where == {"module": "numdp.kernels.cuda.neighbor", "factory": "fill_nlist_shared",
                     "args": [8], "index": None}
    assert ptx_check.resolve(where) is fill
    forces = tabulated.kernels_for("float32")[1]
    where = launch.launch_record(forces, ())["kernel"]
    assert where["factory"] == "kernels_for" and where["args"] == ["float32"] and where["index"] == 1
    assert ptx_check.resolve(where) is forces
    assert ptx_check.label(where) == "tabulated.kernels_for(float32)[1]"


def test_each_distinct_launch_is_written_once(tmp_path, monkeypatch):
    monkeypatch.setattr(sim.FakeCUDAKernel, "__call__", sim.FakeCUDAKernel.__call__)  # undone after
    path = tmp_path / "launches.jsonl"
    launch._record_simulated_launches(str(path))
    n = 3
    keys = np.zeros(n, np.uint64)
    args = (np.array([0, 1, 1]), np.array([1.0, 2.5, 3.0]), np.array([4, 5, 6]), keys)
    for _ in range(2):
        neighbor.pack_keys[launch.grid(n)](*args)
    neighbor.pack_keys[launch.grid(n)](np.array([0, 1, 1], np.int32), *args[1:])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 2
    assert [r["sig"][0] for r in lines] == [["array", "int64", 1, "C"], ["array", "int32", 1, "C"]]
    assert keys.any()   # the launches still ran
    assert ptx_check.load_records(str(path)) == sorted(lines, key=lambda r: json.dumps(r, sort_keys=True))


def test_host_calls_of_the_array_module_are_checked_against_cupy(monkeypatch, capsys):
    calls = ptx_check.cupy_calls()
    assert "linalg.norm" in calls and "searchsorted" in calls
    assert any(where.startswith("numdp/") for uses in calls.values() for _, _, where in uses)

    class Stand:   # a CuPy without `argsort` whose `searchsorted` takes one argument
        __version__ = "stand-in"

        def __getattr__(self, name):
            if name == "argsort":
                raise AttributeError(name)
            if name == "searchsorted":
                return lambda a: None
            return self   # any other function (or module: `linalg.norm`), taking anything

        def __call__(self, *args, **kwargs):
            return None

    monkeypatch.setitem(sys.modules, "cupy", Stand())
    assert ptx_check.check_cupy() == len(calls["argsort"]) + len(calls["searchsorted"])
    out = capsys.readouterr().out
    assert "cupy.argsort" in out and "MISSING" in out
    assert "cupy.searchsorted" in out and "does not take the call at numdp/" in out
