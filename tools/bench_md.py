#!/usr/bin/env python
"""Benchmark `numdp run`: water NVT (0.5 fs, masses O 16 H 2) from 192 to 98 304 atoms.

For each replica of the 192-atom box it builds the run exactly as `numdp run` does (neighbour list
with a 2 Å skin, Nose-Hoover chain, thermo and H5MD output every 10 steps), runs a few steps after
one untimed warm-up run, and prints ns/day, µs/atom/step and the time split of the loop.

    python tools/bench_md.py                         # shipped model, all sizes
    python tools/bench_md.py --sizes 192 1536 --steps 40 8
    python tools/bench_md.py --model ../shared/oracle/water.dp   # any water model (timing only)
    python tools/bench_md.py --sizes 1536 --devi-models 4        # 4-model deviation every step vs 1 model
    python tools/bench_md.py --device cuda --model water.dp --budget 200   # the whole step on the GPU
    python tools/bench_md.py --device cuda --model water.dp --compress --sizes 192   # compressed

With --device cuda (issue 14 item 6) the default sizes are 192, 12 288, 98 304, ~1 M and ~10 M
atoms; a size that does not fit (device memory) or that would overrun --budget seconds is skipped
with one line.  Extra columns: `xfer%`, the wall time per step inside the CUDA backend's
to_device / to_host calls (in the counted run, against the timed run's step;
numdp.kernels.cuda.opcount.OpCounter; on a GPU a copy to the host also waits for the kernels
queued before it, so this overlaps the other columns), and per step the number of
numba.cuda kernel launches, of host<->device copies and of the array library's operations
(`xpops`: element-wise, reductions, sorts, ...; numdp.kernels.cuda.opcount, complete under the
simulator, CuPy's functions only on a GPU), counted from the first step to the end of the run,
reports and the final output included, divided by its steps; --phases prints them by phase of the
step (integrate, rebuild test, neighbour list, model, fold, reductions, output, ...).  The counts
come from a separate run of min(steps, 10) steps before the timed one: counting costs a few µs of
host time per operation (it finds the phase on the call stack), which the timed run does not pay.
The counted run also reads the device memory in use after each step (`dev MiB`, the driver's
total - free, CuPy's pool emptied before the run), and the last lines give its slope in bytes
per atom between the two largest sizes run (issue 14: <= 1 kB per atom).
    python tools/bench_md.py --sizes 1536 --devi-models 4 --repeat 3   # 1- and 4-model runs interleaved 3x
    python tools/bench_md.py --sizes 1536 --devi-models 4 --no-share   # the 4 models without sharing
    python tools/bench_md.py --sizes 1536 --devi-models 4 --devi-precision mix32   # models 1-3 in mix32
    python tools/bench_md.py --device cuda --sizes 12288 --devi-models 4   # on the GPU, with launches per step

Targets (issue 15): with --devi-models 4 (deviation computed every step; the ensemble is the
given model loaded 4 times, which costs what 4 different models of that architecture cost), a
step costs <= 3.6x a step with one model.

Targets (issue): >= 1.6 ns/day at 192 atoms; integrate + neighbour + output <= 10 % of the step
time at 12 288 atoms.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import io
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from numdp.config import load_run_settings  # noqa: E402
from numdp.md.setup import build_simulation  # noqa: E402

REPLICAS = {192: (1, 1, 1), 1536: (2, 2, 2), 12288: (4, 4, 4), 98304: (8, 8, 8),
            998784: (17, 17, 18), 9988800: (37, 37, 38)}   # ~1 M and ~10 M atoms (GPU sizes)
DEFAULT_STEPS = {192: 100, 1536: 20, 12288: 5, 98304: 2, 998784: 2, 9988800: 2}
CPU_SIZES = [192, 1536, 12288, 98304]
CUDA_SIZES = [192, 12288, 98304, 998784, 9988800]


# the [output] table of the benchmark runs: positions every 10 steps to H5MD, thermo every 10
OUTPUT = """
trajectory = "traj.h5md"
every = 10
fields = ["position"]
thermo_every = 10
checkpoint_every = 0
progress = "none"
"""


def write_input(folder: Path, model: Path, reps, steps: int, precision: str = "double", devi_models: int = 1,
                device: str = "cpu", output: str = OUTPUT, devi_precision: str | None = None) -> Path:
    """folder/md.toml: water NVT (the 192-atom box replicated reps (3,), 330 K, 0.5 fs, Nosé-Hoover,
    2 Å skin), `devi_models` copies of `model` (more than one: [model_devi] every step, the
    deviation models in `devi_precision` if given), `output` the lines of its [output] table
    (tools/bench_memory.py passes its own)."""
    files = ", ".join(f'"{model}"' for _ in range(devi_models))
    devi = (f"[model_devi]\nevery = 1\nfile = \"{folder / 'model_devi.out'}\"\n"
            + (f"precision = \"{devi_precision}\"\n" if devi_precision else "")) if devi_models > 1 else ""
    text = textwrap.dedent(f"""
        [model]
        file = [{files}]
        precision = "{precision}"
        device = "{device}"
        [system]
        file = "{ROOT / 'inputs' / 'water' / 'start.xyz'}"
        replicate = [{reps[0]}, {reps[1]}, {reps[2]}]
        velocities = {{ temperature = 330.0, seed = 1 }}
        masses = {{ O = 16.0, H = 2.0 }}
        [md]
        timestep = 0.0005
        steps = {steps}
        ensemble = "nvt"
        thermostat = {{ kind = "nose-hoover", temperature = 330.0, tau = 0.1 }}
        [neighbor]
        skin = 2.0
        [safety]
        min_distance = 0.0
    """) + "[output]" + output + devi
    path = folder / "md.toml"
    path.write_text(text)
    return path


COUNT_STEPS = 10   # steps of the separate counted run on a GPU


def run_size(model: Path, natoms: int, steps: int, model_obj=None, precision: str = "double", devi_models: int = 1,
             device: str = "cpu", devi_precision: str | None = None):
    """Run `steps` MD steps of the replicated water box; returns (run result, the model object).
    model_obj: an already loaded model to reuse (JIT caches and thread pools stay warm).  On
    device "cuda" a first run of min(steps, COUNT_STEPS) steps counts the kernel launches and
    host<->device copies (result.extra["counter"]: numdp.kernels.cuda.opcount.OpCounter, over
    result.extra["counted_steps"] steps), and the timed run that follows counts nothing."""
    counted = None
    if device != "cpu":
        counted, model_obj = _run(model, natoms, min(steps, COUNT_STEPS), model_obj, precision, devi_models,
                                  device, count=True, devi_precision=devi_precision)
    result, model_obj = _run(model, natoms, steps, model_obj, precision, devi_models, device, count=False,
                             devi_precision=devi_precision)
    if counted is not None:
        result.extra["counter"] = counted.extra["counter"]
        result.extra["counted_steps"] = counted.steps
        result.extra["device_bytes"] = counted.extra["device_bytes"]
    return result, model_obj


def _run(model: Path, natoms: int, steps: int, model_obj, precision: str, devi_models: int, device: str,
         count: bool, devi_precision: str | None = None):
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        toml = write_input(Path(tmp), model, REPLICAS[natoms], steps, precision, devi_models, device,
                           devi_precision=devi_precision)
        counter = None
        if count:
            from numdp.kernels.cuda.opcount import OpCounter

            from bench_gpu import free_pool
            from numdp.backend import get_backend

            # CuPy's cached blocks of earlier runs returned: the memory read below is this run's
            free_pool(get_backend(device))
            # switched on before the run is built, so that its device arrays are known as such
            # (the array operations on them are counted); reset at the first step
            counter = OpCounter()
            stack.enter_context(counter.counting())
        sim, end = build_simulation(load_run_settings(toml), model=model_obj, screen=io.StringIO())
        try:
            if counter is None:
                result = sim.run(end)
                # the final state's fingerprint: two runs of the same input that should give the same
                # bits (a GPU run with and without CUDA graphs) print the same one
                sim.integrator.sync_host(sim.state)
                state = sim.state
                result.extra["state_sha1"] = hashlib.sha1(np.ascontiguousarray(state.positions).tobytes() +
                                                          np.ascontiguousarray(state.velocities).tobytes()).hexdigest()
                graph = getattr(sim.provider, "graph", None)   # NUMDP_CUDA_GRAPH=1 (numdp.md.device_graph)
                if graph is not None:
                    result.extra["graph"] = (graph.captures, graph.replays, graph.failed)
                return result, sim.provider.model
            step = sim.integrator.step
            peak = 0
            first = True

            def counted_step(state, forces):
                nonlocal peak, first
                if first:   # count the steps, not the setup's force call
                    counter.reset()
                    first = False
                step(state, forces)
                peak = max(peak, _device_bytes_used())

            sim.integrator.step = counted_step
            result = sim.run(end)
            result.extra["counter"] = counter
            result.extra["device_bytes"] = peak
            return result, sim.provider.model
        finally:
            sim.close()


def _device_bytes_used() -> int:
    """Device memory in use (total - free, the driver's figure: live arrays of numba and CuPy,
    CuPy's cached blocks, the context); 0 under the simulator.  Read after each step of the counted
    run: CuPy's pool, emptied before the run, then holds the most the run's arrays needed."""
    from numdp.backend import get_backend

    if get_backend("cuda").simulator:
        return 0
    import cupy

    free, total = cupy.cuda.runtime.memGetInfo()
    return int(total - free)


@contextlib.contextmanager
def sharing(on: bool):
    """While inside with on=False, no two models share the environment matrix
    (DPModel.shares_environment is False): the ensemble is evaluated model by model."""
    from numdp.model.dp_model import DPModel

    if on:
        yield
        return
    saved = DPModel.shares_environment
    DPModel.shares_environment = lambda self, other: False
    try:
        yield
    finally:
        DPModel.shares_environment = saved


def compressed_copy(model: Path, folder: Path) -> Path:
    """`model` compressed with `numdp compress` defaults (order 3, dx 0.01) into `folder`."""
    out = Path(folder) / "model-compressed.h5"
    r = subprocess.run([sys.executable, "-m", "numdp.cli", "compress", str(model), "-o", str(out)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"numdp compress {model} failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=ROOT / "inputs" / "water" / "model.h5")
    p.add_argument("--sizes", type=int, nargs="+", default=None, choices=list(REPLICAS),
                   help=f"atoms (default: {CPU_SIZES} on the CPU, {CUDA_SIZES} with --device cuda)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--budget", type=float, default=None,
                   help="seconds: skip the sizes that would start after this much time (GPU runs)")
    p.add_argument("--warmup-steps", type=int, default=5)
    p.add_argument("--steps", type=int, nargs="+", default=None, help="steps per size (default: by size)")
    p.add_argument("--precision", default="double", choices=["double", "mix32", "mix16"])
    p.add_argument("--phases", action="store_true",
                   help="with --device cuda: print the device operations per step by phase and kind")
    p.add_argument("--compress", action="store_true",
                   help="benchmark the model compressed with `numdp compress` defaults (order 3, dx 0.01)")
    p.add_argument("--devi-models", type=int, default=1,
                   help="K > 1: also run each size with K models and [model_devi] every = 1, print the cost ratio")
    p.add_argument("--no-share", action="store_true",
                   help="with --devi-models: evaluate the K models without sharing the environment matrix "
                        "(DPModel.shares_environment switched off), to measure what the sharing saves")
    p.add_argument("--devi-precision", default=None, choices=["double", "mix32", "mix16"],
                   help="with --devi-models: [model_devi] precision, the deviation models' precision "
                        "(default: --precision, as model 0)")
    p.add_argument("--repeat", type=int, default=1,
                   help="with --devi-models: run the 1-model and K-model runs interleaved this many times "
                        "(a shared machine's load drifts) and print each ratio and their spread")
    args = p.parse_args(argv)
    if not args.model.exists():
        print(f"model {args.model} not found; pass --model", file=sys.stderr)
        return 2
    args.model = args.model.resolve()   # the run's input file is written in a temporary folder
    if args.compress:
        tmp = tempfile.TemporaryDirectory()   # lives until main returns
        args.model = compressed_copy(args.model, Path(tmp.name))
    sizes = args.sizes or (CUDA_SIZES if args.device == "cuda" else CPU_SIZES)
    steps = args.steps or [DEFAULT_STEPS[n] for n in sizes]
    if len(steps) == 1:
        steps = steps * len(sizes)
    cuda = args.device == "cuda"
    t_start = time.perf_counter()
    model = None
    _, model = run_size(args.model, 192, args.warmup_steps, precision=args.precision,
                        device=args.device)  # warm-up: JIT caches, thread pools
    print(f"model {args.model}, {args.precision}, device {args.device}, {model.nthreads} threads; water NVT, "
          "dt 0.5 fs, skin 2 A, output every 10 steps")
    head = (f"{'atoms':>7} {'steps':>5} {'s/step':>9} {'ns/day':>9} {'us/atom/step':>12} "
            f"{'neigh%':>7} {'force%':>7} {'integ%':>7} {'output%':>8} {'other%':>7} {'builds':>6}"
            + (f" {'xfer%':>6} {'launch/step':>11} {'copies/step':>11} {'xpops/step':>10} {'dev MiB':>9}"
               if cuda else ""))
    print(head)
    print("-" * len(head))
    rows = {}
    last = None   # (atoms, setup s, loop s per step) of the last size run, to predict the next one
    for n, k in zip(sizes, steps):
        if args.budget is not None and last is not None:
            spent = time.perf_counter() - t_start
            # setup and each step taken to grow in proportion to the atoms (an overestimate where
            # a small size is bound by launches or Python, as on a GPU at 192 atoms)
            predicted = (last[1] + last[2] * k) * n / last[0]
            if spent + predicted > args.budget:
                print(f"{n:>7} skipped: ~{predicted:.0f} s predicted, {args.budget - spent:.0f} s of --budget left",
                      flush=True)
                continue
        t0 = time.perf_counter()
        try:
            r, _ = run_size(args.model, n, k, model, args.precision, device=args.device)
        except MemoryError as exc:
            print(f"{n:>7} skipped: does not fit ({' '.join(str(exc).split())[:120]})", flush=True)
            continue
        except Exception as exc:   # CuPy's OutOfMemoryError is no MemoryError
            if "OutOfMemory" not in type(exc).__name__:
                raise
            print(f"{n:>7} skipped: does not fit in device memory ({' '.join(str(exc).split())[:120]})", flush=True)
            continue
        t = r.timers
        last = (n, max(0.0, time.perf_counter() - t0 - t.total), t.total / max(r.steps, 1))
        pct = {name: 100 * v / t.total for name, v in t.rows()}
        rows[n] = (r, pct)
        extra = ""
        if cuda:
            c = r.extra["counter"]
            cs = r.extra["counted_steps"]
            extra = (f" {100 * c.transfer_seconds / cs / (t.total / r.steps):>6.2f} {c.launches / cs:>11.1f} "
                     f"{(c.to_device + c.to_host) / cs:>11.1f} {c.array_ops / cs:>10.1f} "
                     f"{r.extra['device_bytes'] / 2**20:>9.1f}")
        print(f"{n:>7} {r.steps:>5} {t.total / r.steps:>9.4f} {r.ns_per_day:>9.4f} {r.us_per_atom_step:>12.2f} "
              f"{pct['Neigh']:>7.2f} {pct['Force']:>7.2f} {pct['Integrate']:>7.2f} {pct['Output']:>8.2f} "
              f"{pct['Other']:>7.2f} {r.rebuilds:>6}" + extra, flush=True)
        print(f"        final positions and velocities: sha1 {r.extra['state_sha1'][:16]}", flush=True)
        if "graph" in r.extra:
            captures, replays, failed = r.extra["graph"]
            print(f"        CUDA graphs of the force call: {captures} captured, {replays} replays"
                  f"{' (capture FAILED: ran without graphs)' if failed else ''}", flush=True)
        if r.stopped:
            print(f"        (the run stopped early: {r.stopped.split(';')[0]})")
        if cuda and args.phases:
            print(f"  device operations per step at {n} atoms, by phase (launches = kernels + array ops):")
            print("\n".join("    " + line for line in r.extra["counter"].table(r.extra["counted_steps"]).splitlines()),
                  flush=True)
        if args.devi_models > 1:
            devi_run = functools.partial(run_size, args.model, devi_models=args.devi_models, device=args.device,
                                         devi_precision=args.devi_precision)
            with sharing(not args.no_share):
                devi_run(192, 2, model, args.precision)  # warm-up of the deviation path
            ratios, cpu_ratios = [], []
            for rep in range(args.repeat):
                r1 = r if rep == 0 else run_size(args.model, n, k, model, args.precision, device=args.device)[0]
                with sharing(not args.no_share):
                    rd, _ = devi_run(n, k, model, args.precision)
                one, many = r1.timers.total / r1.steps, rd.timers.total / rd.steps
                ratios.append(many / one)
                # CPU time of the loop: on a shared machine it tracks the work done where wall time
                # tracks the other users' load too
                cpu_ratios.append((rd.cpu_seconds / rd.steps) / (r1.cpu_seconds / r1.steps))
                print(f"{n:>7} {rd.steps:>5} {many:>9.4f}  with {args.devi_models} models, deviation every step: "
                      f"{ratios[-1]:.2f}x the 1-model step ({one:.4f} s), CPU time {cpu_ratios[-1]:.2f}x "
                      f"(force {100 * rd.timers.force / rd.timers.total:.1f} % vs "
                      f"{100 * r1.timers.force / r1.timers.total:.1f} %)"
                      + (f"; {rd.extra['counter'].launches / rd.extra['counted_steps']:.1f} vs "
                         f"{r1.extra['counter'].launches / r1.extra['counted_steps']:.1f} launches per step"
                         if cuda else "")
                      + ("; environment matrix not shared" if args.no_share else "")
                      + (f"; deviation models in {args.devi_precision}" if args.devi_precision else ""),
                      flush=True)
            for name, x in (("wall", ratios), ("CPU", cpu_ratios)):
                med = sorted(x)[len(x) // 2]
                print(f"{n:>7} {name} time ratio median {med:.2f}x, range {min(x):.2f}-{max(x):.2f}x over {len(x)} "
                      f"interleaved pairs (target <= 3.6x: {'met' if med <= 3.6 else 'NOT met'})", flush=True)
    print()
    if cuda:
        from numdp.backend import get_backend

        if get_backend("cuda").simulator:
            print("Numba's CUDA simulator: the timings above mean nothing (launch and copy counts do)")
            return 0
        big = sorted(rows)[-2:]
        if len(big) == 2:
            (a, b), dev = big, [rows[n][0].extra["device_bytes"] for n in big]
            per_atom = (dev[1] - dev[0]) / (b - a)
            print(f"device memory: {per_atom:.0f} B per atom (slope of the memory in use from {a} to {b} atoms; "
                  f"issue 14 target <= 1 kB: {'met' if per_atom <= 1024 else 'NOT met'})")
        if 192 in rows:
            nsd = rows[192][0].ns_per_day
            print(f"192 atoms: {nsd:.3f} ns/day (issue 14 target >= 50 with a compressed model: "
                  f"{'met' if nsd >= 50 else 'NOT met'})")
        for n in (998784, 9988800):
            if n in rows:
                ratio = 100.0 / rows[n][1]["Force"]
                print(f"{n} atoms: step = {ratio:.3f} x the force evaluation (target <= 1.15: "
                      f"{'met' if ratio <= 1.15 else 'NOT met'})")
        return 0
    if 192 in rows:
        nsd = rows[192][0].ns_per_day
        print(f"192 atoms: {nsd:.3f} ns/day (target >= 1.6: {'met' if nsd >= 1.6 else 'NOT met'})")
    if 12288 in rows:
        pct = rows[12288][1]
        share = pct["Integrate"] + pct["Neigh"] + pct["Output"]
        print(f"12288 atoms: integrate + neighbour + output = {share:.2f} % of the step "
              f"(target <= 10 %: {'met' if share <= 10 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
