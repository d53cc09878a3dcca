"""Pairwise (all-pairs) feature-combination sweep of `numdp run`.

    python tools/combos.py OUTDIR [--only N,M,...] [--list]

Factors and levels (docs/md.md): ensemble x precision x model x system x trajectory format x
thermo columns x checkpoint cadence x ranks x restart.  A greedy covering design (each new run
takes the values that cover the most level pairs not yet covered) gives every pair of levels of
two factors at least one run; pairs the docs refuse (a slab or a cluster under a barostat) are
left out of the main design and covered by refusal runs of their own.

Each run is made in OUTDIR/runNN (tiny rocksalt crystals of <= 64 atoms and the random models of
tests/randmodel.py), run with `python -m numdp.cli run` (under `mpiexec -n 2` for ranks = 2) and
checked: exit status 0 and no traceback (or, for a refused combination, exit status 2 and one
`numdp run: error:` line); outputs readable by numdp's, ASE's and h5py's readers; a run stopped at
step 8 and continued with --restart equal to the uninterrupted run bit for bit (checkpoint state,
trajectory, deviation file); NVE energy within the velocity-Verlet band (see `verlet_band`).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

FACTORS = {
    "ensemble": ["nve", "nvt-nh", "nvt-csvr", "nvt-langevin", "npt-cr-iso", "npt-cr-aniso", "npt-cr-tri",
                 "npt-mtk-iso", "npt-mtk-tri", "nph"],
    "precision": ["double", "mix32", "mix16"],
    "model": ["plain", "compressed", "devi", "fparam"],
    "system": ["cubic", "triclinic", "slab", "cluster", "replicated"],
    "traj": ["h5md", "extxyz", "lammps-dump"],
    "thermo": ["default", "custom"],
    "checkpoint": [0, 4],
    "ranks": [1, 2],
    "restart": ["straight", "split"],
}
NAMES = list(FACTORS)


def refused(run: dict) -> bool:
    """Combinations docs/md.md refuses: a barostat on a system not periodic along a, b and c."""
    return ((run["system"] in ("slab", "cluster") and run["ensemble"].startswith(("npt", "nph")))
            or (run["system"] == "cluster" and run["ranks"] > 1))   # docs/mpi.md#limits


def pairs_of(run: dict):
    for a, b in itertools.combinations(NAMES, 2):
        yield (a, run[a], b, run[b])


def greedy_design(seed=0, candidates=60) -> list[dict]:
    """AETG-style greedy all-pairs design over FACTORS, without refused pairs."""
    rng = np.random.default_rng(seed)
    allowed = {}
    for a, b in itertools.combinations(NAMES, 2):
        for x in FACTORS[a]:
            for y in FACTORS[b]:
                allowed[(a, x, b, y)] = not refused({**{n: FACTORS[n][0] for n in NAMES}, a: x, b: y})
    uncovered = {p for p, ok in allowed.items() if ok}
    design = []
    while uncovered:
        best, best_gain = None, -1
        for _ in range(candidates):
            a, x, b, y = sorted(uncovered)[rng.integers(len(uncovered))]
            run = {a: x, b: y}
            for name in rng.permutation(NAMES):
                if name in run:
                    continue
                scores = []
                for level in FACTORS[name]:
                    trial = {**run, name: level}
                    if all(k in trial for k in ("system", "ensemble", "ranks")) and refused(trial):
                        scores.append(-1)
                        continue
                    scores.append(sum((n1, trial[n1], n2, trial[n2]) in uncovered
                                      for n1, n2 in itertools.combinations([n for n in NAMES if n in trial], 2)
                                      if name in (n1, n2)))
                run[name] = FACTORS[name][int(np.argmax(scores))]
            gain = sum(p in uncovered for p in pairs_of(run))
            if gain > best_gain:
                best, best_gain = run, gain
        design.append({n: best[n] for n in NAMES})
        uncovered -= set(pairs_of(best))
    refusals = [{**design[0], "system": s, "ensemble": e, "ranks": 1, "restart": "straight"}
                for s in ("slab", "cluster") for e in FACTORS["ensemble"] if e.startswith(("npt", "nph"))]
    refusals.append({**design[0], "system": "cluster", "ensemble": "nve", "ranks": 2, "restart": "straight"})
    return design + refusals


# -- fixtures --------------------------------------------------------------------------------------

A = 4.0          # Å, rocksalt lattice constant (tests/test_mpi.py)
DT = 0.01        # ps (the random models' highest frequency is ~6.6 /ps: (w dt / 2)^2 ~ 1e-3)
STEPS, MIDDLE = 16, 8
MASSES = {"O": 12.0, "H": 16.0}
OMEGA = 6.7      # 1/ps, the plain model's highest frequency in the crystal (mass-weighted Hessian)


def rocksalt(cells, tilt=False):
    grid = np.array([[i, j, k] for i in range(cells[0]) for j in range(cells[1]) for k in range(cells[2])], float)
    basis = np.array([[0, 0, 0], [.5, .5, 0], [.5, 0, .5], [0, .5, .5],
                      [.5, 0, 0], [0, .5, 0], [0, 0, .5], [.5, .5, .5]])
    x = (grid[:, None] + basis[None]).reshape(-1, 3) * A
    types = np.tile([0, 0, 0, 0, 1, 1, 1, 1], len(grid))
    box = np.diag(np.array(cells, float) * A)
    if tilt:
        box[1, 0], box[2, 0], box[2, 1] = A, -A, A
    return x, types, box


def make_fixtures(dest: Path) -> None:
    from numdp.io.model_file import write_model
    from numdp.io.structure import write_extxyz
    from randmodel import random_params

    dest.mkdir(parents=True, exist_ok=True)
    arch = dict(ntypes=2, sel=[24, 24], neuron=(4, 8), axis_neuron=2, fitting=(8, 8), rcut=4.0, rcut_smth=1.0)
    for name, extra in (("plain", dict(seed=2)), ("devi1", dict(seed=3)),
                        ("fparam", dict(seed=2, numb_fparam=1, numb_aparam=2))):
        p = random_params(**arch, **extra)
        p.type_map = ["O", "H"]
        p.min_nbor_dist = 1.0     # no training data: the nearest pairs here are 2 A (cluster: more)
        write_model(p, dest / f"{name}.h5")
    subprocess.run([sys.executable, "-m", "numdp.cli", "compress", str(dest / "plain.h5"), "-o",
                    str(dest / "compressed.h5")], check=True, capture_output=True)
    el = lambda t: [["O", "H"][i] for i in t]   # noqa: E731
    x, t, box = rocksalt((2, 2, 2))
    write_extxyz(dest / "cubic.xyz", el(t), x, box)
    write_extxyz(dest / "slab.xyz", el(t), x, box, pbc=(True, True, False))
    write_extxyz(dest / "cluster.xyz", el(t), x, None)
    x, t, box = rocksalt((2, 2, 2), tilt=True)
    write_extxyz(dest / "triclinic.xyz", el(t), x, box)
    x, t, box = rocksalt((1, 1, 1))
    write_extxyz(dest / "replicated.xyz", el(t), x, box)


ENSEMBLE = {
    "nve": "",
    "nvt-nh": 'ensemble = "nvt"\nthermostat = { kind = "nose-hoover", temperature = 30.0, tau = 0.05 }',
    "nvt-csvr": 'ensemble = "nvt"\nthermostat = { kind = "csvr", temperature = 30.0, tau = 0.05 }',
    "nvt-langevin": 'ensemble = "nvt"\nthermostat = { kind = "langevin", temperature = 30.0, tau = 0.05 }',
    "npt-cr-iso": 'ensemble = "npt"\nthermostat = { kind = "csvr", temperature = 30.0, tau = 0.05 }\n'
                  'barostat = { kind = "c-rescale", pressure = 100.0, tau = 0.2, coupling = "isotropic", compressibility = 1e-4 }',
    "npt-cr-aniso": 'ensemble = "npt"\nthermostat = { kind = "langevin", temperature = 30.0, tau = 0.05 }\n'
                    'barostat = { kind = "c-rescale", pressure = 100.0, tau = 0.2, coupling = "anisotropic", compressibility = 1e-4 }',
    "npt-cr-tri": 'ensemble = "npt"\nthermostat = { kind = "nose-hoover", temperature = 30.0, tau = 0.05 }\n'
                  'barostat = { kind = "c-rescale", pressure = 100.0, tau = 0.2, coupling = "triclinic", compressibility = 1e-4 }',
    "npt-mtk-iso": 'ensemble = "npt"\nthermostat = { kind = "nose-hoover", temperature = 30.0, tau = 0.05 }\n'
                   'barostat = { kind = "mtk", pressure = 100.0, tau = 0.2, coupling = "isotropic" }',
    "npt-mtk-tri": 'ensemble = "npt"\nthermostat = { kind = "csvr", temperature = 30.0, tau = 0.05 }\n'
                   'barostat = { kind = "mtk", pressure = 100.0, tau = 0.2, coupling = "triclinic" }',
    "nph": 'ensemble = "nph"\nbarostat = { kind = "mtk", pressure = 100.0, tau = 0.2, coupling = "anisotropic", temperature = 30.0 }',
}
TRAJ = {"h5md": 'trajectory = "traj.h5md"\nforce_unit = "eV Angstrom-1"', "extxyz": 'trajectory = "traj.extxyz"',
        "lammps-dump": 'trajectory = "traj.lammpstrj"'}
CUSTOM_COLUMNS = ('thermo_columns = ["step", "temp", "pe", "etotal", "econserve", "press", "pxy", "lx", "xy", '
                  '"cellgamma", "density", "enthalpy", "atoms"]')


def input_text(run: dict, steps: int = STEPS) -> str:
    model = {"plain": '"plain.h5"', "compressed": '"compressed.h5"', "devi": '["plain.h5", "devi1.h5"]',
             "fparam": '"fparam.h5"\nfparam = [0.3]\naparam = [0.2, -0.4]'}[run["model"]]
    system = f'file = "{run["system"]}.xyz"' + ("\nreplicate = [2, 2, 1]" if run["system"] == "replicated" else "")
    devi = '\n[model_devi]\nevery = 4\nfile = "devi.out"\n' if run["model"] == "devi" else ""
    return f"""[model]
file = {model}
precision = "{run["precision"]}"
threads = 1
[system]
{system}
velocities = {{ temperature = 30.0, seed = 3 }}
masses = {{ O = {MASSES["O"]}, H = {MASSES["H"]} }}
[md]
timestep = {DT}
steps = {steps}
seed = 7
{ENSEMBLE[run["ensemble"]]}
[neighbor]
skin = 1.0
[output]
{TRAJ[run["traj"]]}
every = 4
thermo_every = 1
{CUSTOM_COLUMNS if run["thermo"] == "custom" else ""}
checkpoint = "ck.h5"
checkpoint_every = {run["checkpoint"]}
progress = "none"
{devi}"""


def mpiexec():
    here = Path(sys.executable).parent / "mpiexec"
    return str(here) if here.exists() else shutil.which("mpiexec")


def numdp_run(path: Path, ranks: int, *args, threads=1):
    cmd = [sys.executable, "-m", "numdp.cli", "run", "md.toml", "--threads", str(threads), *args]
    if ranks > 1:
        cmd = [mpiexec(), "-n", str(ranks), *cmd]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "PMIX_", "MPI_"))}
    return subprocess.run(cmd, cwd=path, capture_output=True, text=True, timeout=600, env=env)


def prepare(path: Path, fixtures: Path, run: dict, steps=STEPS) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for f in fixtures.iterdir():
        if not (path / f.name).exists():
            os.symlink(f.resolve(), path / f.name)
    (path / "md.toml").write_text(input_text(run, steps))
    return path


# -- checks ----------------------------------------------------------------------------------------

def h5_arrays(path: Path) -> dict:
    import h5py
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def checkpoint_arrays(path: Path) -> dict:
    from numdp.io.h5md import read_checkpoint
    from numdp.system import to_arrays
    return to_arrays(read_checkpoint(path))


def read_outputs(path: Path, run: dict) -> dict:
    """Read every output with numdp's, ASE's and h5py's readers; returns energies per frame."""
    import ase.io
    from numdp.io.structure import read_structure
    out = {}
    if run["traj"] == "h5md":
        import h5py
        with h5py.File(path / "traj.h5md", "r") as f:
            out["etotal"] = f["observables/total_energy/value"][()]
            out["steps"] = f["particles/trajectory/position/step"][()]
        read_structure(path / "traj.h5md")
    elif run["traj"] == "extxyz":
        frames = ase.io.read(path / "traj.extxyz", ":")
        out["etotal"] = np.array([a.info["total_energy"] for a in frames])
        out["steps"] = np.array([a.info["step"] for a in frames])
        read_structure(path / "traj.extxyz", frame=-1)
    else:
        frames = ase.io.read(path / "traj.lammpstrj", ":", format="lammps-dump-text")
        out["steps"] = np.array([int(s) for s in re.findall(r"ITEM: TIMESTEP\n(\d+)", (path / "traj.lammpstrj").read_text())])
        assert len(frames) == len(out["steps"])
    checkpoint_arrays(path / "ck.h5")
    read_structure(path / "ck.h5")
    return out


def thermo_rows(path: Path) -> tuple[list[str], np.ndarray]:
    """The last block of thermo rows of log.txt: (column names, rows)."""
    lines = (path / "log.txt").read_text().splitlines()
    heads = [i for i, l in enumerate(lines) if l.split()[:1] == ["step"]]
    head = lines[heads[-1]].split()
    rows = []
    for l in lines[heads[-1] + 1:]:
        parts = l.split()
        if len(parts) != len(head):
            break
        try:
            rows.append([float(p) for p in parts])
        except ValueError:
            break
    return head, np.array(rows)


def single_error_line(r) -> bool:
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    return r.returncode == 2 and len(lines) == 1 and lines[0].startswith("numdp run: error:")


def compare_runs(full: Path, part: Path, run: dict) -> list[str]:
    """Differences between two runs' final checkpoints, trajectories and deviation files."""
    bad = []
    a, b = checkpoint_arrays(full / "ck.h5"), checkpoint_arrays(part / "ck.h5")
    for key in sorted(set(a) | set(b)):
        if key not in a or key not in b:
            bad.append(f"checkpoint key {key} only in one")
        elif not np.array_equal(a[key], b[key]):
            d = np.max(np.abs(np.asarray(a[key], float) - np.asarray(b[key], float))) if np.shape(a[key]) == np.shape(b[key]) else "shape"
            bad.append(f"checkpoint {key} differs ({d})")
    name = {"h5md": "traj.h5md", "extxyz": "traj.extxyz", "lammps-dump": "traj.lammpstrj"}[run["traj"]]
    if run["traj"] == "h5md":
        ta, tb = h5_arrays(full / name), h5_arrays(part / name)
        for key in sorted(set(ta) | set(tb)):
            if key.startswith(("h5md", "numdp/input")) or key not in ta or key not in tb:
                if key not in ta or key not in tb:
                    bad.append(f"trajectory {key} only in one")
                continue
            if ta[key].dtype.kind in "fiu" and not np.array_equal(ta[key], tb[key]):
                bad.append(f"trajectory {key} differs")
    else:
        if (full / name).read_bytes() != (part / name).read_bytes():
            bad.append("trajectory text differs")
    if run["model"] == "devi" and (full / "devi.out").read_text() != (part / "devi.out").read_text():
        bad.append("devi.out differs")
    return bad


def verlet_band(etotal: np.ndarray, kinetic_max: float, omega: float) -> float:
    """Velocity Verlet on a harmonic mode of angular frequency w conserves a shadow energy within
    f / (1 - f) of the true one, f = (w dt / 2)^2; summed over modes, the total energy stays within
    f / (1 - f) of E - U_min <= 2 max K (equipartition in the near-harmonic crystal) of its start."""
    f = (omega * DT / 2) ** 2
    return f / (1 - f) * 2 * kinetic_max


def check(path: Path, fixtures: Path, run: dict) -> dict:
    res = {"run": run, "problems": []}
    P = res["problems"]
    full = prepare(path / "full", fixtures, run)
    r = numdp_run(full, run["ranks"])
    res["rc"] = r.returncode
    if "Traceback" in r.stderr or "Traceback" in r.stdout:
        P.append("traceback: " + r.stderr[-800:])
    if refused(run):
        if not single_error_line(r):
            P.append(f"expected one-line refusal, got rc {r.returncode}: {r.stderr[-500:]!r}")
        res["stderr"] = r.stderr.strip()
        return res
    if r.returncode != 0:
        if single_error_line(r):
            P.append("refused: " + r.stderr.strip())
        else:
            P.append(f"rc {r.returncode}: {r.stderr[-1500:]}")
        return res
    for w in ("warning", "Warning", "overflow"):
        if w in r.stderr:
            P.append("stderr: " + r.stderr[-500:])
            break
    try:
        out = read_outputs(full, run)
        head, rows = thermo_rows(full)
        res["steps"] = out["steps"].tolist()
        if out["steps"].tolist() != list(range(0, STEPS + 1, 4)):
            P.append(f"trajectory steps {out['steps'].tolist()}")
        if rows[:, head.index("step")].tolist() != list(range(STEPS + 1)):
            P.append(f"thermo steps {rows[:, 0].tolist()}")
        cell_cols = ("press", "vol", "density", "enthalpy", "pxy", "lx", "xy", "cellgamma")
        finite = [i for i, h in enumerate(head) if run["system"] not in ("slab", "cluster") or h not in cell_cols]
        if not np.isfinite(rows[:, finite]).all():
            P.append("non-finite thermo value")
    except Exception as e:  # noqa: BLE001
        P.append(f"reading outputs: {type(e).__name__}: {e}")
        return res
    if run["ensemble"] == "nve":
        e, k = rows[:, head.index("etotal")], rows[:, head.index("ke")] if "ke" in head else None
        res["etotal_dev"] = float(np.abs(e - e[0]).max())
        if k is not None:
            res["band"] = verlet_band(e, k.max(), OMEGA) + 2e-6   # + the log's printed digits
            if res["etotal_dev"] > res["band"]:
                P.append(f"NVE energy moved {res['etotal_dev']:.3g} eV > band {res['band']:.3g} eV")
    if run["restart"] == "split":
        part = prepare(path / "part", fixtures, run, steps=MIDDLE)
        r1 = numdp_run(part, run["ranks"])
        (part / "md.toml").write_text(input_text(run, STEPS))
        r2 = numdp_run(part, run["ranks"], "--restart", "ck.h5")
        if r1.returncode or r2.returncode:
            P.append(f"split run rc {r1.returncode} {r2.returncode}: {r1.stderr[-800:]} {r2.stderr[-800:]}")
        else:
            diffs = compare_runs(full, part, run)
            if diffs:
                P.append("restart != straight: " + "; ".join(diffs[:8]))
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--only", default="")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    design = greedy_design()
    if args.list:
        for i, run in enumerate(design):
            print(i, json.dumps(run))
        print(len(design), "runs")
        return
    fixtures = args.outdir / "fixtures"
    if not fixtures.exists():
        make_fixtures(fixtures)
    only = [int(s) for s in args.only.split(",") if s] or range(len(design))
    for i in only:
        path = args.outdir / f"run{i:02d}"
        shutil.rmtree(path, ignore_errors=True)
        res = check(path, fixtures, design[i])
        print(i, json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
