"""Make tests/data/lmp_fidelity/ with a real LAMMPS (the oracle of tests/test_lmp_fidelity.py): what
LAMMPS writes where numdp lmp was seen to differ.

The LAMMPS is tools/lammps_oracle.py's (22 Jul 2025 update 2, DeePMD-kit 3.2's pair_style deepmd
loading TensorFlow graphs); the model is tests/data/tensorflow/tf_one_side_f64.dp converted to a
graph; the atoms are tests/data/lammps_nh/water.data's (192 water atoms, box 12.44 Å from 0).

    python tools/make_lmp_fidelity_fixtures.py [--lmp /tmp/dpk/bin/lmp] [--dp /tmp/dpk/bin/dp] [--tf /tmp/tf221]
                                               [--cases NAME ...]   (only these of MINIMIZE and ORIGIN_FIXES)

Minimize cases (MINIMIZE: water.data, a dump every DUMP_EVERY of the case, thermo every step):
OUT/CASE.npz holds `body` (the case's lines as numdp lmp is given them), `stop`, `iterations`,
`evaluations` (LAMMPS' "Stopping criterion", "Iterations, force evaluations"), `energies` (its
"Energy initial, next-to-last, final", eV, %.15g), `frames` the dump's steps.

Box origin cases (ORIGIN: the same atoms in a box from ORIGIN_LO, orthogonal and with TILTS; their
data files OUT/ortho.data, OUT/tri.data are written here): 10 steps of fix nve (ORIGIN_FIXES; and
`npt`: ortho.data under fix npt iso, a box changing about its centre; `npt0`: water.data, its box
from 0, under the same fix: LAMMPS moves that corner too; `lattice`: LATTICE, an fcc crystal of O
atoms at rest made by create_box from a region off the origin, under that fix; `cluster`: an open
system, OUT/cluster.data (water.data's first CLUSTER atoms in a box from -10 to 25 Å), `boundary
f f f`, under fix nve) with a dump every 5
of each style of DUMPS, thermo `step pe xlo xhi ylo yhi zlo zhi lx ly lz` every 5, then
`write_data`.  OUT/origin_BOX.npz holds `thermo` (the table, %.15g), for each dump D of DUMPS
`D_steps`, `D_bounds` (frames, 3, 3: the BOX BOUNDS lines; tilts as the third number of a
triclinic box) and `D_atoms` (frames, KEEP, 3) the coordinate columns of atoms 1..KEEP (%.15g), and
`data_bounds` (4, 3: xlo xhi / ylo yhi / zlo zhi / xy xz yz), `data_x` (KEEP, 3) write_data's
Atoms coordinates of atoms 1..KEEP and `data_image` (KEEP, 3) their image flags.
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

import lammps_oracle

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from lammps_log import data_file, thermo_blocks  # noqa: E402  (tests/lammps_log.py: the tests read logs so too)

OUT = ROOT / "tests" / "data" / "lmp_fidelity"
MODEL = ROOT / "tests" / "data" / "tensorflow" / "tf_one_side_f64.dp"
WATER = ROOT / "tests" / "data" / "lammps_nh" / "water.data"

HEAD = lammps_oracle.head("{data}", lammps_oracle.DEEPMD_PAIR) + "timestep 0.0005\n"
MIN_THERMO = "thermo 1\nthermo_style custom step pe fnorm\n"
DUMP = "dump 1 all custom {every} d.dump id type x y z\n"
MINIMIZE = {   # name: (dump every, lines)
    # maxiter stops off the dump's cadence: LAMMPS writes no frame of the last step
    "cg_maxiter": (2, "min_style cg\nminimize 0 0 5 100\n"),
    "fire_maxiter": (2, "min_style fire\nminimize 0 0 5 100\n"),
    # etol stops: LAMMPS writes the last step's frame (off the cadence too)
    "cg_etol": (4, "min_style cg\nminimize 1e-5 0 50 1000\n"),
    "fire_etol": (4, "min_style fire\nminimize 1e-5 0 60 1000\n"),
    # FIRE's evaluation count: its last iteration a reset with a half step back; resets without
    "fire_halfstep": (50, "min_style fire\nminimize 0 0 43 10000\n"),
    "fire_no_halfstep": (50, "min_style fire\nmin_modify halfstepback no\nminimize 0 0 100 10000\n"),
    # past iteration 44, whose half step back moves an H atom 1.56 A (more than the skin): LAMMPS goes on
    "fire_long": (50, "min_style fire\nminimize 0 0 120 10000\n"),
}
ORIGIN_LO = (-5.3, 2.0, 0.7)   # Å, the data files' xlo ylo zlo
TILTS = (1.0, -0.5, 0.8)       # Å, xy xz yz of tri.data
KEEP = 12                      # atoms 1..KEEP stored per frame
DUMPS = {"x": "custom 5 x.dump id type x y z", "xu": "custom 5 xu.dump id type xu yu zu",
         "atom": "atom 5 atom.dump"}
PRECISE = {"x": "format float %.15g", "xu": "format float %.15g",
           "atom": 'format line "%d %d %.15g %.15g %.15g"'}   # (dump atom takes no `format float`)
ORIGIN_BODY = ("thermo 5\nthermo_style custom step pe xlo xhi ylo yhi zlo zhi lx ly lz\n"
               "thermo_modify format float %.15g\n{fix}\n{dumps}run 10\nwrite_data final.data\n")
ORIGIN_FIXES = {"ortho": "fix 1 all nve", "tri": "fix 1 all nve",
                # a box that changes about its centre (LAMMPS' default fixed point): ortho.data's start
                "npt": "fix 1 all npt temp 330 330 0.05 iso 20000 20000 0.05",
                "npt0": "fix 1 all npt temp 330 330 0.05 iso 20000 20000 0.05",
                "lattice": "fix 1 all npt temp 330 330 0.05 iso 20000 20000 0.05",
                "cluster": "fix 1 all nve"}
CLUSTER = 24                   # atoms of cluster.data: water.data's first 8 molecules
CLUSTER_BOX = (-10.0, 25.0)    # Å, its xlo xhi (and y, z)
ORIGIN_DATA = {"npt": "ortho.data", "npt0": "water.data"}   # a case's data file, if not BOX.data
LATTICE = ("units metal\nboundary p p p\natom_style atomic\nlattice fcc 5.0\nregion box block -1 2 0 3 2 5\n"
           "create_box 2 box\ncreate_atoms 1 box\nmass 1 15.999\nmass 2 1.008\n"
           f"{lammps_oracle.DEEPMD_PAIR}\nneighbor 1.0 bin\ntimestep 0.0005\n")   # the `lattice` case's head


def shifted_data(text: str, tilts: tuple[float, float, float]) -> str:
    """water.data's atoms (fractional coordinates kept) in a box from ORIGIN_LO with `tilts`."""
    out, section = [], None
    bounds = dict(zip(("xlo", "ylo", "zlo"), ORIGIN_LO))
    length = None
    for line in text.splitlines():
        w = line.split()
        if w[2:3] in (["xlo"], ["ylo"], ["zlo"]):
            length = float(w[1]) - float(w[0])
            lo = bounds[w[2]]
            out.append(f"{lo!r} {lo + length!r} {w[2]} {w[3]}")
            if w[2] == "zlo" and any(tilts):
                out.append(f"{tilts[0]!r} {tilts[1]!r} {tilts[2]!r} xy xz yz")
            continue
        if line[:1].isalpha():
            section = w[0]
        if section == "Atoms" and len(w) == 5:
            h = np.array([[length, 0, 0], [tilts[0], length, 0], [tilts[1], tilts[2], length]])
            x = np.array(ORIGIN_LO) + (np.array([float(v) for v in w[2:]]) / length) @ h
            line = f"{w[0]} {w[1]} " + " ".join(repr(float(v)) for v in x)
        out.append(line)
    return "\n".join(out) + "\n"


def cluster_data(text: str) -> str:
    """water.data's first CLUSTER atoms and velocities, as they are, in the box CLUSTER_BOX along x, y and z."""
    out, section = [], None
    for line in text.splitlines():
        w = line.split()
        if w[2:3] in (["xlo"], ["ylo"], ["zlo"]):
            out.append(f"{CLUSTER_BOX[0]!r} {CLUSTER_BOX[1]!r} {w[2]} {w[3]}")
            continue
        if line[:1].isalpha():
            section = w[0]
        if w[1:3] == ["atoms"]:
            line = f"{CLUSTER} atoms"
        if section in ("Atoms", "Velocities") and len(w) in (4, 5) and int(w[0]) > CLUSTER:
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def dump_table(path: Path):
    """(steps, bounds (frames, 3, 3), atoms 1..KEEP's three coordinate columns (frames, KEEP, 3))."""
    lines = path.read_text().splitlines()
    steps, bounds, atoms = [], [], []
    for i, ln in enumerate(lines):
        if ln == "ITEM: TIMESTEP":
            steps.append(int(lines[i + 1]))
            n = int(lines[i + 3])
            rows = [[float(v) for v in lines[i + 5 + k].split()] for k in range(3)]
            bounds.append([r + [0.0] * (3 - len(r)) for r in rows])
            table = sorted([float(v) for v in r.split()] for r in lines[i + 9:i + 9 + n])
            atoms.append([r[2:5] for r in table[:KEEP]])
    return np.array(steps), np.array(bounds), np.array(atoms)


def data_table(path: Path):
    """(bounds (4, 3), x (KEEP, 3), image flags (KEEP, 3)) of LAMMPS' write_data file."""
    bounds, x, image = data_file(path)
    return bounds, x[:KEEP], image[:KEEP]

def summary(log: str) -> dict:
    """LAMMPS' minimize summary: stop, iterations, evaluations, energies (initial, next-to-last, final)."""
    stop, iterations, evaluations = lammps_oracle.minimize_end(log)
    energies = re.search(r"Energy initial, next-to-last, final = \n\s*(\S+)\s+(\S+)\s+(\S+)", log).groups()
    return dict(stop=stop, iterations=iterations, evaluations=evaluations,
                energies=np.array([float(e) for e in energies]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    lammps_oracle.add_arguments(parser, dp=True, tf=True)
    parser.add_argument("--cases", nargs="+", metavar="NAME", choices=[*MINIMIZE, *ORIGIN_FIXES],
                        help="make these cases' files only (default: all)")
    args = parser.parse_args()
    cases = set(args.cases or [*MINIMIZE, *ORIGIN_FIXES])
    OUT.mkdir(parents=True, exist_ok=True)
    water = WATER.read_text()
    starts = {"ortho": shifted_data(water, (0.0, 0.0, 0.0)), "tri": shifted_data(water, TILTS),
              "cluster": cluster_data(water)}
    for box, text in starts.items():
        (OUT / f"{box}.data").write_text(text)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        lammps_oracle.graph(args.dp, MODEL, work, args.tf)
        (work / "water.data").write_text(water)
        for name, (every, lines) in MINIMIZE.items():
            if name not in cases:
                continue
            (work / "d.dump").unlink(missing_ok=True)
            body = MIN_THERMO + DUMP.format(every=every) + lines
            lmp_body = body.replace("id type x y z\n", "id type x y z\ndump_modify 1 format float %.15g\n")
            log = lammps_oracle.run(args.lmp, work, HEAD.format(data="water.data") + lmp_body, tf=args.tf)
            frames = dump_table(work / "d.dump")[0]
            np.savez_compressed(OUT / f"{name}.npz", body=body, frames=frames, **summary(log))
            print(name, lammps_oracle.minimize_end(log), frames.tolist())
        for box, text in starts.items():
            (work / f"{box}.data").write_text(text)
        for box, fix in ORIGIN_FIXES.items():
            if box not in cases:
                continue
            head = (LATTICE if box == "lattice" else
                    lammps_oracle.head("cluster.data", lammps_oracle.DEEPMD_PAIR, "f f f") + "timestep 0.0005\n"
                    if box == "cluster" else HEAD.format(data=ORIGIN_DATA.get(box, f"{box}.data")))
            dumps = "".join(f"dump {d} all {spec}\ndump_modify {d} {PRECISE[d]}\n" for d, spec in DUMPS.items())
            log = lammps_oracle.run(args.lmp, work, head + ORIGIN_BODY.format(fix=fix, dumps=dumps), tf=args.tf)
            (_, thermo), = thermo_blocks(log)
            tables = {"thermo": thermo}
            for d in DUMPS:
                tables[f"{d}_steps"], tables[f"{d}_bounds"], tables[f"{d}_atoms"] = dump_table(work / f"{d}.dump")
            tables["data_bounds"], tables["data_x"], tables["data_image"] = data_table(work / "final.data")
            np.savez_compressed(OUT / f"origin_{box}.npz", **tables)
            print(box, "written")


if __name__ == "__main__":
    main()
