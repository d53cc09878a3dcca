"""Make tests/data/lmp_min_run/ with a real LAMMPS (the oracle of tests/test_lmp_min_run.py): a
`minimize` then a `run` in one script, which numdp lmp must repeat.

The LAMMPS is tools/lammps_oracle.py's (22 Jul 2025 update 2, DeePMD-kit 3.2's pair_style deepmd
loading TensorFlow graphs); the model is tests/data/tensorflow/tf_one_side_f64.dp converted to a
graph; the start structures are tests/data/lammps_nh/water.data (192 water atoms with Velocities)
and OUT/water_rest.data, written here: the same without its Velocities section.

    python tools/make_lmp_min_run_fixtures.py [--lmp /tmp/dpk/bin/lmp] [--dp /tmp/dpk/bin/dp] [--tf /tmp/tf221]
        [--cases NAME ...]   (only these cases; the stored ones were made before the dump_after* cases)

For each case of CASES LAMMPS runs HEAD (with the case's data file) and the case's lines, then
`write_data final.data`; OUT/CASE.npz holds `data` (the start file), `body` (the case's lines, as
numdp lmp is given them with model.dp for model.pb), `run` (the thermo table of the run: step pe ke
press vol, %.15g), `minimize` (the minimize's), `x` (N, 3) Å unwrapped (write_data's x + image
flags times the cell) and `v` (N, 3) Å/ps in id order, `box` (3,) Å (lx, ly, lz), `frames` the
steps of traj.dump's frames (none: empty), and for the cases of DUMP_X `frame_x` (frames, N, 3) Å,
the dump's x y z in id order (LAMMPS writes them with `dump_modify 1 format float %.15g`, a line
numdp lmp is not given: numdp writes every digit).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

import lammps_oracle

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from lammps_log import dump_frames, thermo_blocks  # noqa: E402  (tests/lammps_log.py: the tests read logs so too)

OUT = ROOT / "tests" / "data" / "lmp_min_run"
MODEL = ROOT / "tests" / "data" / "tensorflow" / "tf_one_side_f64.dp"
WATER = ROOT / "tests" / "data" / "lammps_nh" / "water.data"

HEAD = lammps_oracle.head("{data}", lammps_oracle.DEEPMD_PAIR) + """timestep 0.0005
thermo 5
thermo_style custom step pe ke press vol
thermo_modify format float %.15g
"""
MIN = "minimize 0 1e-3 5 1000\n"
NVT = "fix 1 all nvt temp 300 300 0.01\nrun 20\n"
CASES = {
    "create_after": ("water.data", MIN + "velocity all create 300 4928459 dist gaussian\n" + NVT),
    "at_rest": ("water_rest.data", MIN + "fix 1 all nve\nrun 20\n"),
    "reset": ("water.data", MIN + "reset_timestep 0\n" + NVT),
    "data_velocities": ("water.data", "dump 1 all custom 5 traj.dump id x y z\n" + MIN + NVT),
    "box_relax_npt": ("water.data", "fix 2 all box/relax iso 0.0 vmax 0.001\n" + MIN + "unfix 2\n"
                      "fix 1 all npt temp 300 300 0.01 iso 1000 1000 0.05\nrun 20\n"),
    # a dump defined after the minimize: the run's (LAMMPS writes its first frame at the run's
    # start step when N divides it, then every N steps), none of the minimize's
    "dump_after_reset": ("water.data", MIN + "reset_timestep 0\nfix 1 all nvt temp 300 300 0.01\n"
                         "dump 1 all custom 5 traj.dump id type x y z\nrun 20\n"),
    "dump_after": ("water.data", MIN + "fix 1 all nvt temp 300 300 0.01\n"
                   "dump 1 all custom 3 traj.dump id type x y z\nrun 20\n"),
}
DUMP_X = ("dump_after_reset", "dump_after")
PRECISE = "dump_modify 1 format float %.15g\n"   # after the case's `dump 1` line, for LAMMPS only


def lammps_body(name: str, body: str) -> str:
    """The lines LAMMPS runs for the case `name`: its body, with PRECISE after the dump of DUMP_X."""
    if name not in DUMP_X:
        return body
    lines = body.splitlines(keepends=True)
    k = next(i for i, ln in enumerate(lines) if ln.startswith("dump 1 "))
    return "".join(lines[:k + 1] + [PRECISE] + lines[k + 1:])


def read_final(path: Path):
    """(x unwrapped, v, (lx, ly, lz)) of LAMMPS' write_data file (orthogonal box), in id order."""
    lines = path.read_text().splitlines()
    lo_hi = [[float(w) for w in ln.split()[:2]] for ln in lines if ln.split()[2:3] in (["xlo"], ["ylo"], ["zlo"])]
    length = np.array([hi - lo for lo, hi in lo_hi])
    lo = np.array([lo for lo, _ in lo_hi])

    def section(title):
        k = next(i for i, ln in enumerate(lines) if ln.startswith(title))
        rows = []
        for ln in lines[k + 2:]:
            if not ln.strip():
                break
            rows.append([float(w) for w in ln.split()])
        rows.sort(key=lambda r: r[0])
        return np.array(rows)

    atoms, vel = section("Atoms"), section("Velocities")
    x = atoms[:, 2:5] - lo + atoms[:, 5:8] * length
    return x, vel[:, 1:4], length


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    lammps_oracle.add_arguments(parser, dp=True, tf=True)
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES),
                        help="the cases to make (default: all)")
    args = parser.parse_args()
    starts = {"water.data": WATER.read_text()}   # data file name: its text
    starts["water_rest.data"] = lammps_oracle.without_velocities(starts["water.data"])
    OUT.mkdir(parents=True, exist_ok=True)
    rest = OUT / "water_rest.data"
    if not rest.exists() or rest.read_text() != starts["water_rest.data"]:   # (the stored file: left as it is)
        rest.write_text(starts["water_rest.data"])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        lammps_oracle.graph(args.dp, MODEL, work, args.tf)
        for data, text in starts.items():
            (work / data).write_text(text)
        for name in args.cases:
            data, body = CASES[name]
            (work / "traj.dump").unlink(missing_ok=True)
            log = lammps_oracle.run(args.lmp, work, HEAD.format(data=data) + lammps_body(name, body)
                                    + "write_data final.data\n", tf=args.tf)
            (_, minimize), (_, run) = thermo_blocks(log)
            x, v, box = read_final(work / "final.data")
            frames, extra = [], {}
            if (work / "traj.dump").exists():
                dump = (work / "traj.dump").read_text().splitlines()
                frames = [int(dump[i + 1]) for i, ln in enumerate(dump) if ln == "ITEM: TIMESTEP"]
            if name in DUMP_X:
                frames, extra["frame_x"] = dump_frames(work / "traj.dump")
            np.savez_compressed(OUT / f"{name}.npz", data=data, body=body, run=run, minimize=minimize, x=x, v=v,
                                box=box, frames=np.array(frames, dtype=np.int64), **extra)
            print(name, "written", lammps_oracle.minimize_end(log))


if __name__ == "__main__":
    main()
