#!/usr/bin/env python
"""Peak memory per atom of `numdp run` (CPU): water NVT, compressed model, MIX-32 by default.

Each size runs in a fresh child process (a process's peak RSS never goes down), which builds the
run exactly as `numdp run` does from an input file (replicated 192-atom water box, 0.5 fs,
Nosé-Hoover, 2 Å skin, thermo every 10 steps, no trajectory, the final checkpoint written) and
reports the peak resident memory (VmHWM from /proc/self/status, reset between phases through
/proc/self/clear_refs) of three phases: start-up (imports, model, one 192-atom warm-up run that
compiles or loads the kernels), setup (`build_simulation`: structure, replicas, velocities) and
the run (first force call, the steps, the final checkpoint).  Then a table of what each array of
the run costs per atom, read from the live objects after the run (state, ghosts, neighbour lists,
evaluator scratch), and between two sizes the slope of the peak (bytes per atom).

    python tools/bench_memory.py                          # 12 288 and 98 304 atoms
    python tools/bench_memory.py --reps 8 20 --steps 4    # 98 304 and 1 536 000 atoms
    python tools/bench_memory.py --reps 47 --steps 1 --slope S --base B   # 19 934 016 atoms

--reps R replicates the box R x R x R (192 R^3 atoms); --ranks N runs it under mpiexec (the peaks
of the ranks are summed; each rank's setup and run peaks are printed below the row).  Before a size over 2 M atoms the script
predicts its peak from the slope of the two smallest sizes measured in the same call (or from
--slope / --base, bytes per atom and bytes) and refuses to start it unless the prediction leaves
--reserve GiB (default 3) of MemAvailable.

The model (default inputs/water/model.h5) is compressed with `numdp compress` defaults (order 3,
dx 0.01) into a temporary file unless --no-compress (give an already compressed model).
Target (issue 14): peak slope <= 1 kB per atom.
"""
from __future__ import annotations

import argparse
import io
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GiB = 1024 ** 3


def proc_status(key: str) -> int:
    """A /proc/self/status memory field (VmRSS, VmHWM, ...) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def write_input(folder: Path, model: Path, rep: int, steps: int, precision: str) -> Path:
    """tools/bench_md.py's water NVT input, the box replicated rep x rep x rep, with no trajectory
    and the final checkpoint and the log written into folder."""
    from bench_md import write_input as md_input

    output = textwrap.dedent(f"""
        trajectory = ""
        thermo_every = 10
        checkpoint = "{folder / 'checkpoint.h5'}"
        checkpoint_every = 0
        progress = "none"
        log = "{folder / 'log.txt'}"
    """)
    return md_input(folder, model, (rep, rep, rep), steps, precision, output=output)


def nbytes(*arrays) -> int:
    return sum(int(a.nbytes) for a in arrays if a is not None and hasattr(a, "nbytes"))


def accounting(sim) -> list[tuple[str, int, int, str]]:
    """(what, bytes, per how many rows, note) of the arrays a CPU run holds between steps."""
    st = sim.state
    p = sim.provider
    nloc = st.natoms
    rows = []
    rows.append(("state: positions, velocities, forces, masses, types, ids",
                 nbytes(st.positions, st.velocities, st.forces, st.masses, st.types, st.ids), nloc, "owned atoms"))
    rows.append(("state: neighbour reference positions, previous positions",
                 nbytes(st.neighbor.get("positions"), p._prev_positions), nloc, "owned atoms"))
    g = p._ghosts
    ext = p._ext
    nall = ext.nall
    ghost = nbytes(g.positions, g.types, g.ids, g.shifts)
    if ext.mapping is not None:
        ghost += nbytes(ext.mapping)
    ghost += nbytes(p._ext_pos, p._images)
    ghost += sum(nbytes(s.send_idx, s.buffer) for s in p.comm.swaps)
    rows.append((f"ghosts: extended rows ({nall / nloc:.3f} per owned atom), images, swaps", ghost, nloc,
                 "per owned atom"))
    cand = getattr(p, "_cand", None)
    rows.append(("candidate list within rcut + skin (CSR)",
                 nbytes(cand.offsets, cand.indices) if cand is not None else 0, nloc, "owned atoms"))
    grid = getattr(p, "_grid", None)
    if grid is not None:
        rows.append(("cell list (sorted coordinates, cells, order)",
                     nbytes(grid.sx, grid.sy, grid.sz, grid.scell, grid.order, grid.centres, grid.cell_start),
                     nloc, "owned atoms"))
    nl = p._nl
    stored = getattr(nl, "nlist", None)  # NeighborRows (rows formatted chunk by chunk) store none
    rows.append(("formatted neighbour list (nloc, sum(sel)) int32", nbytes(stored), nloc, "owned atoms"))
    nw = int(getattr(p.model, "nthreads", 1))
    rows.append((f"during a force call: force buffers of {nw} workers (nall, 3) f64, atomic energies, type order",
                 nw * 24 * nall + 16 * nloc, nloc, "transient"))
    rows.append(("during a force call: cell list of the extended atoms (sorted coordinates, cells, order, "
                 "centres, row index)", (24 + 8 + 4) * nall + 12 * nloc, nloc, "transient"))
    ev = getattr(p.model, "_ev", None)
    if ev is not None:
        # every worker thread's Workspace (threading.local): find them through the pool's threads
        held = 0
        import gc

        from numdp.model.workspace import Workspace
        for obj in gc.get_objects():
            if isinstance(obj, Workspace):
                held += obj.nbytes
        rows.append((f"evaluator scratch (all Workspaces; chunk {ev.chunk} atoms)", held, nloc,
                     "bounded by the chunk"))
    return rows


def device_accounting(n: int, nall: float, nnei: int, ntypes: int, ncell: float) -> list[tuple[str, float, str]]:
    """Bytes of device memory of a GPU MD run (numdp.md.device*, numdp.neighbor.device) by array
    sizes read from the code (not measured): (what, bytes, when) for n local atoms and nall
    extended atoms in ncell cells.  The chunk scratch of the evaluator is fixed by its chunk size
    (docs/gpu.md); so is the buffer of a list formed chunk by chunk (above WHOLE_LIST_BYTES)."""
    from numdp.md.device_forces import WHOLE_LIST_BYTES

    if 4 * nnei * n <= WHOLE_LIST_BYTES:
        nlist = [("neighbour list (N, sum(sel)) i32, whole", 4 * nnei * n, "every step")]
    else:
        nlist = [("neighbour list formed chunk by chunk (DeviceRows): sorted position of each centre (N,) i32",
                  4 * n, "every step")]
    return nlist + [
        ("DeviceState: positions, velocities, forces (N, 3) f64; masses f64; ids i64; types i32",
         n * (3 * 24 + 8 + 8 + 4), "held"),
        ("DeviceState.reference (N, 3) f64 (positions of the last rebuild)", 24 * n, "held"),
        ("previous positions (N, 3) f64 (step displacement)", 24 * n, "held"),
        ("extended positions (nall, 3) f64, lattice shifts (nall, 3) f64", 48 * nall, "held"),
        ("extended types, mapping (nall,) i32; fold order (nall,) i64; fold starts (N + 1,) i64",
         16 * nall + 8 * n, "held"),
        ("rebuild test: squared displacements since the step and since the rebuild (N,) f64", 16 * n,
         "every step, transient, before the search"),
        ("search: sorted positions (nall, 3) f64; sorted index, type, cell, cell id (nall,) i32; "
         "cell starts (one per 27 A^3 cell of 3 A) i32", 24 * nall + 16 * nall + 4 * ncell, "every step, transient"),
        ("search: centres (N,) i32, slot (nall,) i32, counts (N, ntypes) i32", 4 * n + 4 * nall + 4 * ntypes * n,
         "every step, transient"),
        ("evaluator outputs: forces on extended atoms (nall, 3) f64, atomic energies (N,) f64",
         24 * nall + 8 * n, "every step"),
        ("closest-pair records (N, 3) f64", 24 * n, "every step"),
    ]


def shared_input(world, folder: Path, model: Path, rep: int, steps: int, precision: str) -> Path:
    """`write_input` on rank 0 only, the other ranks waiting for it (two ranks writing the same
    file at once let one of them read it half written)."""
    path = write_input(folder, model, rep, steps, precision) if world.is_root else None
    return Path(world.bcast_object(str(path) if path is not None else None))


def child(args) -> dict:
    from numdp import load_model
    from numdp.config import load_run_settings
    from numdp.md.setup import build_simulation
    from numdp.parallel.threads import apply_threads, threads_per_rank
    from numdp.parallel.world import create_world

    world = create_world()  # one rank, or the ranks of mpiexec
    nthreads = apply_threads(threads_per_rank(None, world)[0])
    out = {"rep": args.child, "natoms": 192 * args.child ** 3, "rank": world.rank, "ranks": world.size,
           "threads": nthreads}
    model = load_model(args.model, nthreads=nthreads, precision=args.precision)
    # warm-up: compile / load the kernels (each rank in its own folder, rank 0's name broadcast)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(world.bcast_object(tmp if world.is_root else None))
        sim, end = build_simulation(load_run_settings(shared_input(world, folder, args.model, 1, 3, args.precision)),
                                    model=model, screen=io.StringIO(), world=world)
        sim.run(end)
        sim.close()
    del sim
    out["startup_rss"] = proc_status("VmRSS")
    out["startup_peak"] = proc_status("VmHWM")
    resettable = reset_peak()
    out["resettable"] = resettable
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(world.bcast_object(tmp if world.is_root else None))
        settings = load_run_settings(shared_input(world, folder, args.model, args.child, args.steps, args.precision))
        sim, end = build_simulation(settings, model=model, screen=io.StringIO(), world=world)
        out["setup_peak"] = proc_status("VmHWM")
        out["setup_rss"] = proc_status("VmRSS")
        reset_peak()
        r = sim.run(end)
        out["run_peak"] = proc_status("VmHWM")
        out["run_rss"] = proc_status("VmRSS")
        out["steps"] = r.steps
        out["us_per_atom_step"] = r.us_per_atom_step
        out["neigh_us"] = 1e6 * r.timers.neigh / (r.steps * r.natoms)
        out["force_us"] = 1e6 * r.timers.force / (r.steps * r.natoms)
        out["rebuilds"] = r.rebuilds
        out["accounting"] = accounting(sim)
        out["maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        sim.close()
    out["peak"] = max(out["setup_peak"], out["run_peak"]) if resettable else out["maxrss"]
    return out


def run_child(rep: int, steps: int, args) -> dict:
    """Run one size in a fresh process (under `mpiexec -n ranks` for ranks > 1); the peaks of the
    ranks are added up (an upper bound of their peak together), the rest is rank 0's."""
    cmd = [sys.executable, __file__, "--child", str(rep), "--steps", str(steps), "--model", str(args.model),
           "--precision", args.precision]
    if args.ranks > 1:
        mpiexec = shutil.which("mpiexec")
        if mpiexec is None:
            sys.exit("bench_memory: --ranks needs mpiexec on PATH (the mpi extra's mpich puts it in the venv's bin)")
        cmd = [mpiexec, "-n", str(args.ranks)] + cmd
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"child for {rep}^3 replicas failed (exit {proc.returncode})")
    ranks = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    ranks.sort(key=lambda r: r["rank"])
    res = dict(ranks[0])
    res["rank_peaks"] = [(r["setup_peak"], r["run_peak"]) for r in ranks]
    for key in ("startup_peak", "setup_peak", "run_peak", "peak", "run_rss", "startup_rss", "setup_rss"):
        res[key] = sum(r[key] for r in ranks)
    res["wall"] = time.perf_counter() - t0
    return res


def mib(b: float) -> str:
    return f"{b / 2 ** 20:,.1f}"


def neighbor_cost(rep: int, repeats: int, chunk: int = 512) -> None:
    """µs per atom of the per-step neighbour work, old against new, on the same configuration in
    one process (interleaved, best of `repeats`): formatting the stored candidates within
    rcut + skin (`format_nlist`, the old per-step work; the candidates themselves were found at
    each rebuild, `find_candidates`) against a cell list of the current positions with the rows
    formatted chunk by chunk (`NeighborRows`, the new per-step work) and `build_nlist` (the whole
    list from a cell list, for models that take no NeighborRows)."""
    import numba
    import numpy as np

    from numdp import load_model
    from numdp.io.structure import read_structure, replicate
    from numdp.neighbor import NeighborRows, build_nlist, extend, find_candidates, format_nlist

    model = load_model(ROOT / "inputs" / "water" / "model.h5")
    s = replicate(read_structure(ROOT / "inputs" / "water" / "start.xyz"), (rep, rep, rep))
    types = np.array([model.type_map.index(e) for e in s.elements], dtype=np.int32)
    d = model.params.descriptor
    ext = extend(s.positions, types, s.box, d.rcut + 2.0)
    n = ext.nloc
    sel = np.asarray(d.sel, dtype=np.int64)
    out = np.empty((chunk, int(sum(d.sel))), np.int32)
    order = np.argsort(types, kind="stable").astype(np.int64)

    def candidates():
        find_candidates(ext, d.rcut + 2.0)

    cand = find_candidates(ext, d.rcut + 2.0)

    def stored():
        format_nlist(ext, cand, d.rcut, sel, 2)

    def whole():
        build_nlist(ext, d.rcut, sel, 2)

    def rows():
        r = NeighborRows(ext, d.rcut, sel, 2)
        for a in range(0, n, chunk):
            r.rows(order[a:a + chunk], out[:min(chunk, n - a)])

    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=2)
    outs = [np.empty_like(out) for _ in range(2)]

    def rows2():  # two workers taking chunks round-robin, as the evaluator does
        r = NeighborRows(ext, d.rcut, sel, 2)
        starts = list(range(0, n, chunk))

        def work(w):
            for a in starts[w::2]:
                r.rows(order[a:a + chunk], outs[w][:min(chunk, n - a)])

        for f in [pool.submit(work, w) for w in range(2)]:
            f.result()

    def grid_only():
        NeighborRows(ext, d.rcut, sel, 2)

    cases = [("find_candidates within rcut + skin (old, at each rebuild)", candidates),
             ("format_nlist from the stored candidates (old, every step)", stored),
             ("build_nlist from a cell list (new, models without NeighborRows)", whole),
             ("NeighborRows: cell list + rows in 512-atom chunks, 1 worker", rows),
             ("NeighborRows: cell list + rows in 512-atom chunks, 2 workers (new, every step, as in MD)", rows2),
             ("  of which the cell list", grid_only)]
    for _, f in cases:
        f()  # compile / warm
    best = {name: float("inf") for name, _ in cases}
    for _ in range(repeats):
        for name, f in cases:
            t0 = time.perf_counter()
            f()
            best[name] = min(best[name], time.perf_counter() - t0)
    print(f"per-step neighbour work, water {n} atoms ({ext.nall} extended), {numba.get_num_threads()} threads for the "
          f"parallel kernels, best of {repeats} (µs per atom):")
    for name, _ in cases:
        print(f"  {1e6 * best[name] / n:>7.2f}  {name}")


def print_device_accounting(sizes) -> None:
    """Device bytes per atom of water (sel [46, 92], density 0.0996 / Å³, ghost shell rcut + skin
    = 8 Å around a cubic box) by array sizes."""
    nnei, ntypes, shell, density = 138, 2, 8.0, 0.0996
    for n in sizes:
        side = (n / density) ** (1.0 / 3.0)
        nall = n * ((side + 2.0 * shell) / side) ** 3
        rows = device_accounting(n, nall, nnei, ntypes, nall / (density * 27.0))
        print(f"\nGPU MD, water, {n:,} atoms ({nall / n:.3f} extended atoms per atom), by array sizes (bytes per atom):")
        peak = 0.0
        for what, b, when in rows:
            peak += b if "before the search" not in when else 0.0
            print(f"  {b / n:>7.1f}  {what} [{when}]")
        print(f"  {peak / n:>7.1f}  at the force call if nothing transient were freed yet (all rows but the "
              f"rebuild test's), + the evaluator's fixed chunk scratch")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=ROOT / "inputs" / "water" / "model.h5")
    p.add_argument("--no-compress", action="store_true", help="the model is already compressed")
    p.add_argument("--precision", default="mix32", choices=["double", "mix32", "mix16"])
    p.add_argument("--reps", type=int, nargs="+", default=[4, 8], help="box replicas per direction (192 R^3 atoms)")
    p.add_argument("--steps", type=int, default=4, help="MD steps per size")
    p.add_argument("--slope", type=float, default=None, help="bytes per atom, to predict sizes over 2 M atoms")
    p.add_argument("--base", type=float, default=None, help="bytes at zero atoms, with --slope")
    p.add_argument("--reserve", type=float, default=3.0, help="GiB of MemAvailable a large run must leave")
    p.add_argument("--ranks", type=int, default=1, help="MPI ranks (mpiexec -n)")
    p.add_argument("--device-accounting", type=float, nargs="*", default=None, metavar="N",
                   help="print the GPU run's bytes per atom by array sizes for N atoms (default 1e6 1e8) and exit")
    p.add_argument("--neighbor-cost", type=int, default=None, metavar="R",
                   help="time the per-step neighbour work (old: stored candidates; new: cell list + rows) at "
                        "192 R^3 atoms and exit")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.neighbor_cost is not None:
        neighbor_cost(args.neighbor_cost, 7)
        return 0
    if args.child is not None:
        from numdp.parallel.world import create_world

        world = create_world()
        try:
            out = child(args)
            # one line per rank, printed by rank 0 (lines printed by two ranks at once can interleave)
            lines = world.comm.gather(out, root=0) if world.size > 1 else [out]
            for r in lines if world.is_root else []:
                print(json.dumps(r))
        except BaseException:   # under mpiexec: one rank's error must not leave the others waiting
            import traceback

            traceback.print_exc()
            sys.stderr.flush()
            world.abort(1)
        return 0
    if args.device_accounting is not None:
        print_device_accounting([int(n) for n in args.device_accounting] or [1_000_000, 100_000_000])
        return 0
    if not args.model.exists():
        print(f"bench_memory: model {args.model} not found", file=sys.stderr)
        return 2
    tmp = tempfile.TemporaryDirectory()
    if not args.no_compress:
        from bench_md import compressed_copy

        args.model = compressed_copy(args.model, Path(tmp.name))
    import numba

    print(f"water NVT, {args.precision}, compressed model, {args.ranks} rank(s) sharing {numba.get_num_threads()} "
          f"threads, {args.steps} steps per size; peak RSS per phase (MiB{', summed over ranks' if args.ranks > 1 else ''})")
    head = (f"{'atoms':>10} {'startup':>9} {'setup':>9} {'run':>9} {'peak':>9} {'us/atom/step':>12} "
            f"{'neigh us':>9} {'force us':>9}")
    results = []
    slope, base = args.slope, args.base
    for rep in sorted(args.reps):
        n = 192 * rep ** 3
        if n > 2_000_000:
            if slope is None or base is None:
                print(f"{n} atoms: no slope measured yet (measure two sizes <= 2 M first or give --slope/--base)")
                continue
            predicted = base + slope * n
            avail = mem_available()
            if predicted > avail - args.reserve * GiB:
                print(f"{n} atoms: predicted peak {predicted / GiB:.2f} GiB leaves less than {args.reserve} GiB of "
                      f"the {avail / GiB:.2f} GiB available: not run")
                continue
            print(f"{n} atoms: predicted peak {predicted / GiB:.2f} GiB of {avail / GiB:.2f} GiB available")
        r = run_child(rep, args.steps, args)
        results.append(r)
        if len(results) == 1:
            print(head)
            print("-" * len(head))
        print(f"{r['natoms']:>10} {mib(r['startup_peak']):>9} {mib(r['setup_peak']):>9} {mib(r['run_peak']):>9} "
              f"{mib(r['peak']):>9} {r['us_per_atom_step']:>12.2f} {r['neigh_us']:>9.2f} {r['force_us']:>9.2f}",
              flush=True)
        if args.ranks > 1:
            print(" " * 11 + "per rank, setup / run MiB: "
                  + ", ".join(f"rank {k} {mib(a)} / {mib(b)}" for k, (a, b) in enumerate(r["rank_peaks"])), flush=True)
        if len(results) >= 2 and args.slope is None:
            a, b = results[0], results[-1]
            slope = (b["peak"] - a["peak"]) / (b["natoms"] - a["natoms"])
            base = a["peak"] - slope * a["natoms"]
    if len(results) >= 2:
        a, b = results[0], results[-1]
        dn = b["natoms"] - a["natoms"]
        print()
        print(f"slope {a['natoms']} -> {b['natoms']} atoms (bytes per atom): peak "
              f"{(b['peak'] - a['peak']) / dn:.0f}, setup phase {(b['setup_peak'] - a['setup_peak']) / dn:.0f}, "
              f"run phase {(b['run_peak'] - a['run_peak']) / dn:.0f}; base {base / 2 ** 20:.0f} MiB "
              f"(target <= 1000 B/atom: {'met' if (b['peak'] - a['peak']) / dn <= 1000 else 'NOT met'})")
    if results:
        r = results[-1]
        n = r["natoms"]
        n = r["accounting"][0][2]  # rank 0's owned atoms
        print(f"\narrays of the run at {r['natoms']} atoms (bytes per owned atom{' of rank 0' if args.ranks > 1 else ''}; "
              f"read from the live objects, the transient rows from their sizes):")
        held = transient = 0
        for what, b, _rows, note in r["accounting"]:
            if note == "bounded by the chunk":
                print(f"  {b / 2 ** 20:>8.1f}  MiB, fixed: {what}")
                continue
            if note == "transient":
                transient += b
            else:
                held += b
            print(f"  {b / n:>8.1f}  {what}")
        print(f"  {held / n:>8.1f}  held between steps (RSS after the run: {mib(r['run_rss'])} MiB); "
              f"{(held + transient) / n:.1f} during a force call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
