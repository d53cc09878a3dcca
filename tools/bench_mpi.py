"""MPI domain decomposition: strong and weak scaling of `numdp run`, and the communication share.

    python tools/bench_mpi.py [--steps 10] [--big-steps 4] [--skip-big] [--json out.json]

Water (the 192-atom box of inputs/water/start.xyz replicated) with the model inputs/water/model.h5
when it exists, else ../shared/oracle/water.dp; NVE at 330 K, 0.5 fs, one thread per rank.  Each
case is a separate `numdp run` (under `mpiexec -n N` for N > 1); the step time is the loop time
without output (read from the run's summary), the communication share is its "Comm" row
(migration, ghost exchange, force return and global reductions, waiting included).

    strong scaling: 12 288 and 98 304 atoms on 1 and 2 ranks, efficiency = t1 / (2 t2)
    weak scaling:   12 288 atoms on 1 rank vs 24 576 atoms on 2 ranks, efficiency = t1 / t2
    contention:     two independent 1-rank runs of 6 144 atoms at the same time (no MPI): the
                    step time the two cores give two half-size jobs under the current load, so
                    t_pair / t2 is the 2-rank efficiency with the machine's own slowdown taken out
    CPU-time efficiency: (t1 c1) / (2 t2 c2) with c the fraction of a core each rank actually got
                    (the run's "% CPU use", MPI waiting included): the extra work that the
                    decomposition costs, whatever share of the cores other jobs take

The machine is shared: the load average before and after each case is printed with it.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START = ROOT / "inputs" / "water" / "start.xyz"
MODELS = (ROOT / "inputs" / "water" / "model.h5", ROOT.parent / "shared" / "oracle" / "water.dp")

INPUT = """
[model]
file = "{model}"
threads = 1
[system]
file = "{start}"
replicate = {replicate}
velocities = {{ temperature = 330.0, seed = 1 }}
masses = {{ O = 16.0, H = 2.0 }}
[md]
timestep = 0.0005
steps = {steps}
[neighbor]
skin = 2.0
[output]
trajectory = ""
log = ""
thermo_every = {steps}
checkpoint_every = 0
checkpoint = "checkpoint.h5"
progress = "none"
{parallel}
"""


def mpiexec() -> str:
    here = Path(sys.executable).parent / "mpiexec"
    found = str(here) if here.exists() else shutil.which("mpiexec")
    if found is None:
        sys.exit("bench_mpi: mpiexec not found (pip install -e '.[mpi]')")
    return found


def parse_summary(text: str) -> dict:
    """Loop time, steps and the per-section seconds of a `numdp run` summary."""
    m = re.search(r"Loop time of ([\d.]+) s for (\d+) steps with (\d+) atoms", text)
    if m is None:
        raise RuntimeError("no summary in the output:\n" + text[-3000:])
    out = {"total": float(m.group(1)), "steps": int(m.group(2)), "atoms": int(m.group(3))}
    c = re.search(r"([\d.]+)% CPU use", text)
    out["cpu"] = float(c.group(1)) / 100.0 if c else float("nan")
    for name in ("Neigh", "Force", "Comm", "Integrate", "Output", "Other"):
        s = re.search(rf"^{name}\s+\|\s+([\d.]+)", text, re.M)
        out[name.lower()] = float(s.group(1)) if s else 0.0
    return out


def _start(model: Path, replicate, ranks: int, steps: int, work: Path) -> subprocess.Popen:
    work.mkdir(parents=True, exist_ok=True)
    (work / "md.toml").write_text(INPUT.format(model=model, start=START, replicate=list(replicate), steps=steps,
                                               parallel=""))
    cmd = [sys.executable, "-m", "numdp.cli", "run", "md.toml"]
    if ranks > 1:
        cmd = [mpiexec(), "-n", str(ranks), *cmd]
    env = dict(os.environ, NUMDP_NUM_THREADS="1", NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1")
    return subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _finish(proc: subprocess.Popen, ranks: int) -> dict:
    out, err = proc.communicate(timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(proc.args)} failed:\n{out[-2000:]}\n{err[-2000:]}")
    s = parse_summary(out)
    s["step"] = (s["total"] - s["output"]) / s["steps"]
    s["comm_share"] = s["comm"] / (s["total"] - s["output"])
    s["ranks"] = ranks
    return s


def run_case(model: Path, replicate, ranks: int, steps: int, work: Path, copies: int = 1) -> dict:
    """One `numdp run` on `ranks` ranks (or `copies` independent 1-rank runs at the same time,
    averaged); returns the parsed summary plus the step time (s) and load averages."""
    load0 = os.getloadavg()[0]
    procs = [_start(model, replicate, ranks, steps, work / str(c)) for c in range(copies)]
    runs = [_finish(p, ranks) for p in procs]
    s = {k: sum(r[k] for r in runs) / copies for k in runs[0]}
    s.update(ranks=ranks, atoms=runs[0]["atoms"], steps=runs[0]["steps"], copies=copies,
             load_before=load0, load_after=os.getloadavg()[0])
    return s


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10, help="MD steps per case at 12 288 / 24 576 atoms")
    ap.add_argument("--big-steps", type=int, default=4, help="MD steps per case at 98 304 atoms")
    ap.add_argument("--skip-big", action="store_true", help="leave out the 98 304-atom cases")
    ap.add_argument("--json", default=None, help="write the results to this file")
    args = ap.parse_args(argv)
    model = next((m for m in MODELS if m.exists()), None)
    if model is None:
        sys.exit("bench_mpi: no water model (inputs/water/model.h5 or ../shared/oracle/water.dp)")
    print(f"model {model}; {os.cpu_count()} cores; load average at start {os.getloadavg()}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cases = [("12288 x1", (4, 4, 4), 1, args.steps, 1), ("12288 x2", (4, 4, 4), 2, args.steps, 1),
                 ("6144 pair", (4, 4, 2), 1, args.steps, 2), ("24576 x2", (8, 4, 4), 2, args.steps, 1)]
        if not args.skip_big:
            cases += [("98304 x1", (8, 8, 8), 1, args.big_steps, 1), ("98304 x2", (8, 8, 8), 2, args.big_steps, 1)]
        print(f"\n{'case':<10} {'atoms':>7} {'ranks':>5} {'step (s)':>9} {'us/atom/step':>12} {'force':>7} "
              f"{'neigh':>7} {'comm':>7} {'comm %':>7} {'CPU %':>6} {'load':>11}")
        for name, rep, ranks, steps, copies in cases:
            s = run_case(model, rep, ranks, steps, tmp / name.replace(" ", "_"), copies)
            results[name] = s
            per = s["steps"]
            print(f"{name:<10} {s['atoms']:>7} {ranks:>5} {s['step']:>9.3f} "
                  f"{1e6 * s['step'] * ranks / s['atoms']:>12.2f} {s['force'] / per:>7.3f} {s['neigh'] / per:>7.3f} "
                  f"{s['comm'] / per:>7.3f} {100 * s['comm_share']:>6.1f}% {100 * s['cpu']:>5.1f}% "
                  f"{s['load_before']:>5.2f}/{s['load_after']:<5.2f}", flush=True)
    print("\n(us/atom/step counts rank-seconds: step time x ranks / atoms; '6144 pair' = two independent "
          "1-rank runs at once, averaged; load = 1-min load average before/after the case, on a 2-core "
          "machine shared with other jobs)")
    ratios = {}
    for n in ("12288", "98304"):
        if f"{n} x1" in results and f"{n} x2" in results:
            one, two = results[f"{n} x1"], results[f"{n} x2"]
            ratios[f"strong scaling efficiency 1 -> 2 ranks, {n} atoms"] = one["step"] / (2 * two["step"])
            ratios[f"  same, in CPU time (cores obtained taken out), {n} atoms"] = \
                one["step"] * one["cpu"] / (2 * two["step"] * two["cpu"])
    ratios["weak scaling efficiency 12288 atoms/rank, 1 -> 2 ranks"] = \
        results["12288 x1"]["step"] / results["24576 x2"]["step"]
    ratios["2-rank efficiency at 12288 atoms vs two concurrent 6144-atom jobs"] = \
        results["6144 pair"]["step"] / results["12288 x2"]["step"]
    for name in results:
        if results[name]["ranks"] > 1 and results[name]["copies"] == 1:
            ratios[f"communication share of the step, {name}"] = results[name]["comm_share"]
    print()
    for k, v in ratios.items():
        print(f"{k:<58} {100 * v:6.1f} %")
    target_s = ratios["strong scaling efficiency 1 -> 2 ranks, 12288 atoms"]
    target_c = results["12288 x2"]["comm_share"]
    print(f"\ntargets: strong scaling >= 85 % at 12288 atoms: {'met' if target_s >= 0.85 else 'NOT met'} "
          f"({100 * target_s:.1f} %); communication <= 10 % of the step: "
          f"{'met' if target_c <= 0.10 else 'NOT met'} ({100 * target_c:.1f} %)")
    if args.json:
        Path(args.json).write_text(json.dumps({"cases": results, "ratios": ratios}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
