"""Compile every CUDA kernel launch of the test suite to PTX for a real GPU, without a GPU.

Numba's CUDA simulator runs kernels as Python: it never types or compiles them, so code that the
simulated tests pass can still fail to compile for a device (an unsupported call, a type that
does not unify, a local array of non-constant shape).  This check closes that gap in two steps:

1. record: the CUDA tests run under the simulator with NUMDP_RECORD_LAUNCHES set, so every
   process (MPI ranks included) appends each distinct (kernel, argument types) it launches to a
   file (`numdp.kernels.cuda.launch.launch_record`: a simulated device array is a NumPy array, so
   its dtype, dimensions and layout are those the device array would have);
2. compile: in a process without the simulator, each recorded launch is compiled to PTX for the
   compute capability asked for (default 9.0, H100/H200) with exactly the recorded types, through
   NVVM (no driver needed); then the kernels of numdp.kernels.cuda that no test launched are
   listed (untested on the device path);
3. CuPy (when it is installed; it imports without a GPU): every call `xp.NAME(...)` or
   `cupy.NAME(...)` in numdp's host code, where the simulator has NumPy stand in for CuPy, must
   name a CuPy function that accepts the call's positional count and keywords.

Needs numba-cuda with the NVVM wheel (`pip install "numba-cuda[cu13]"`, which brings
nvidia-nvvm) and pytest; run without NUMBA_ENABLE_CUDASIM:

    python tools/ptx_check.py                   # record from tests/test_cuda*.py, then compile
    python tools/ptx_check.py -k neighbor       # only the tests pytest -k selects
    python tools/ptx_check.py --record FILE     # compile launches recorded earlier
    python tools/ptx_check.py --keep FILE       # record into FILE (kept) and compile

Prints one line per distinct launch (PTX size, fused multiply-adds) and exits 1 if any failed to
compile (or the recording tests failed), 2 on a usage problem.
"""
from __future__ import annotations

import argparse
import glob
import importlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def record(path: str, select: str | None) -> int:
    """Run the CUDA tests under the simulator, recording launches into `path`; pytest's status."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", NUMDP_RECORD_LAUNCHES=path)
    env.pop("NUMDP_TEST_REAL_GPU", None)
    tests = sorted(glob.glob(str(ROOT / "tests" / "test_cuda*.py")))
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    if select:
        cmd += ["-k", select]
    print(f"recording: python -m pytest -q -x on {len(tests)} test files (tests/test_cuda*.py)"
          + (f", -k {select}" if select else ""), flush=True)
    return subprocess.call(cmd, cwd=ROOT, env=env)


def load_records(path: str) -> list[dict]:
    """The distinct records of `path`, in a stable order."""
    lines = {line.strip() for line in Path(path).read_text().splitlines() if line.strip()}
    return [json.loads(line) for line in sorted(lines)]


def numba_type(entry):
    """The Numba type of one recorded argument."""
    import numpy as np
    from numba import from_dtype, types

    if entry[0] == "array":
        _, dtype, ndim, layout = entry
        return types.Array(from_dtype(np.dtype(dtype)), ndim, layout)
    name = entry[1]
    return types.boolean if name == "bool" else from_dtype(np.dtype(name))


def resolve(where: dict):
    """The kernel a record names: a module attribute, or an item of a factory's result."""
    module = importlib.import_module(where["module"])
    if "factory" in where:
        made = getattr(module, where["factory"])(*where["args"])
        return made if where["index"] is None else made[where["index"]]
    return getattr(module, where["name"])


def label(where: dict) -> str:
    short = where["module"].rsplit(".", 1)[-1]
    if "factory" in where:
        item = "" if where["index"] is None else f"[{where['index']}]"
        return f"{short}.{where['factory']}({', '.join(map(str, where['args']))}){item}"
    return f"{short}.{where['name']}"


def defined_kernels() -> dict[str, object]:
    """label -> kernel for every module-level kernel (not device function) of numdp.kernels.cuda."""
    from numba.cuda.dispatcher import CUDADispatcher

    import numdp.kernels.cuda as pkg

    out = {}
    for path in sorted(Path(pkg.__file__).parent.glob("*.py")):
        name = f"{pkg.__name__}.{path.stem}"
        module = importlib.import_module(name)
        for attr, obj in vars(module).items():
            if (isinstance(obj, CUDADispatcher) and not obj.targetoptions.get("device")
                    and getattr(obj.py_func, "__module__", None) == name):
                out[label({"module": name, "name": attr})] = obj
    return out


def find_ptxas() -> str | None:
    """ptxas of the CUDA wheels (nvidia-cuda-nvcc), of $PTXAS, or on PATH; None if none."""
    import shutil

    if os.environ.get("PTXAS"):
        return os.environ["PTXAS"]
    try:
        import nvidia

        for root in nvidia.__path__:
            for found in sorted(Path(root).glob("cu*/bin/ptxas")):
                return str(found)
    except ImportError:
        pass
    return shutil.which("ptxas")


def resources(ptxas: str, ptx: str, cc: tuple[int, int]) -> str:
    """ptxas's resource line for one kernel: registers per thread, spills and stack (bytes),
    static shared memory (bytes); the assembler's first error line if it fails."""
    import re

    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
        f.write(ptx)
    try:
        out = subprocess.run([ptxas, f"-arch=sm_{cc[0]}{cc[1]}", "-v", f.name, "-o", os.devnull],
                             capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    if out.returncode:
        raise RuntimeError("ptxas: " + (out.stderr.strip().splitlines() or ["failed"])[0])

    def field(pattern):
        m = re.search(pattern, out.stderr)
        return int(m.group(1)) if m else 0

    regs, spill = field(r"Used (\d+) registers"), field(r"(\d+) bytes spill stores")
    stack, smem = field(r"(\d+) bytes stack frame"), field(r"(\d+) bytes smem")
    return f"{regs:3d} regs, {spill:4d} B spilled, {stack:4d} B stack, {smem:5d} B smem"


def compile_all(records: list[dict], cc: tuple[int, int]) -> int:
    """Compile each record to PTX (and, where ptxas is found, assemble it for the device and
    report its resources); the number that failed."""
    from numba import cuda
    from numba.cuda import dispatcher

    class _Device:   # device functions compile for the current device's capability: there is no
        compute_capability = cc   # device here, so name the one asked for

    dispatcher.get_current_device = lambda: _Device
    ptxas = find_ptxas()
    print(f"assembler: {ptxas}" if ptxas else "no ptxas (pip install nvidia-cuda-nvcc): PTX only, no resources")
    failed = 0
    signatures = {}
    for rec in records:
        signatures[label(rec["kernel"])] = signatures.get(label(rec["kernel"]), 0) + 1
    for rec in records:
        where = rec["kernel"]
        sig = tuple(numba_type(e) for e in rec["sig"])
        name = label(where)
        if signatures[name] > 1:   # tell a kernel's signatures apart by their array dtypes
            name += " " + ",".join(e[1] for e in rec["sig"] if e[0] == "array")
        try:
            kernel = resolve(where)
            ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=cc)
            used = ", " + resources(ptxas, ptx, cc) if ptxas else ""
            print(f"{name:44s} ok  {len(ptx):7d} chars of PTX, {ptx.count('fma.rn'):3d} fma{used}")
        except Exception as exc:  # report every launch, then fail
            failed += 1
            print(f"{name:44s} FAILED {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
            print("    argument types:", ", ".join(str(t) for t in sig))
    return failed


def cupy_calls() -> dict[str, set[tuple[int, tuple[str, ...], str]]]:
    """NAME -> {(positional count, keyword names, file:line)} of every `xp.NAME(...)` and
    `cupy.NAME(...)` call in numdp (NAME may be dotted: `xp.linalg.norm`)."""
    import ast

    import numdp

    calls: dict = {}
    root = Path(numdp.__file__).parent
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            parts, f = [], node.func
            while isinstance(f, ast.Attribute):
                parts.append(f.attr)
                f = f.value
            if isinstance(f, ast.Name) and f.id in ("xp", "cupy") and parts:
                where = f"{path.relative_to(root.parent)}:{node.lineno}"
                keywords = tuple(sorted(k.arg for k in node.keywords if k.arg))
                calls.setdefault(".".join(reversed(parts)), set()).add((len(node.args), keywords, where))
    return calls


def check_cupy() -> int:
    """Check `cupy_calls` against the installed CuPy; the number of bad calls (-1: no CuPy)."""
    import inspect

    try:
        import cupy
    except ImportError:
        print("CuPy not installed: host array calls not checked")
        return -1
    bad = 0
    calls = cupy_calls()
    for name, uses in sorted(calls.items()):
        obj = cupy
        for part in name.split("."):
            obj = getattr(obj, part, None)
        if obj is None:
            bad += len(uses)
            print(f"cupy.{name:36s} MISSING, called at " + ", ".join(sorted(u[2] for u in uses)))
            continue
        try:
            sig = inspect.signature(obj)
        except (TypeError, ValueError):   # a compiled function or class without a signature
            sig = None
        for nargs, keywords, where in sorted(uses):
            if sig is None:
                continue
            try:
                sig.bind(*range(nargs), **dict.fromkeys(keywords))
            except TypeError as exc:
                bad += 1
                print(f"cupy.{name:36s} does not take the call at {where}: {exc}")
    print(f"{len(calls)} CuPy functions called by numdp's host code, {bad} bad calls (CuPy {cupy.__version__})")
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cc", default="9.0", help="compute capability, e.g. 9.0 (H100/H200)")
    ap.add_argument("--record", help="compile the launches recorded in this file (no test run)")
    ap.add_argument("--keep", help="record into this file and keep it")
    ap.add_argument("-k", dest="select", help="pytest -k expression for the recording run")
    args = ap.parse_args()
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        print("ptx_check: unset NUMBA_ENABLE_CUDASIM: the simulator does not compile", file=sys.stderr)
        return 2
    cc = tuple(int(v) for v in args.cc.split("."))
    status = 0
    if args.record:
        path = args.record
        if not Path(path).is_file():
            print(f"ptx_check: {path}: no such record file", file=sys.stderr)
            return 2
    else:
        path = args.keep or tempfile.mkstemp(prefix="numdp-launches-", suffix=".jsonl")[1]
        Path(path).write_text("")
        status = record(path, args.select)
        if status:
            print(f"ptx_check: the recording tests failed (pytest status {status}); compiling what was recorded")
    records = load_records(path)
    if not records:
        print(f"ptx_check: {path}: no launch recorded", file=sys.stderr)
        return 2
    failed = compile_all(records, cc)
    launched = {label(r["kernel"]) for r in records if "factory" not in r["kernel"]}
    never = sorted(set(defined_kernels()) - launched)
    print(f"{len(records) - failed} of {len(records)} distinct launches "
          f"({len({label(r['kernel']) for r in records})} kernels) compiled for sm_{cc[0]}{cc[1]}")
    if never:
        print(f"{len(never)} kernels of numdp.kernels.cuda were not launched in the recorded run: " + ", ".join(never))
    if not args.record and not args.keep:
        os.unlink(path)
    bad = check_cupy()
    return 1 if failed or status or bad > 0 else 0


if __name__ == "__main__":
    sys.exit(main())
