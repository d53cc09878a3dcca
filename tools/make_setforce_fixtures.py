"""Make tests/data/setforce/ with a real LAMMPS (the oracle of tests/test_setforce.py): LAMMPS'
`fix 1 all setforce 0 0 NULL` (the atoms relax along z only, as DP-GEN's autotest gamma property)
with `min_style cg` and `min_style fire` on a slab, which numdp's [minimize] fixed_directions =
["x", "y"] (numdp.md.minimize.FixedForces) must relax along the same iterations to the same state.

The oracle is the LAMMPS of tools/lammps_oracle.py (22 Jul 2025 update 2); no DeePMD model: the
shifted-force Lennard-Jones of tests/test_md_potential.py (LAMMPS `pair_style lj/smooth/linear
8.5`, `pair_coeff * * 1.0 3.40`, tools/lj_cases.py).  The slab: the 32-atom fcc block of
tests/test_minimize.py's crystal (a = 5.3 Å, Gaussian jitter 0.1 Å, seed 2) moved by
(a/4, a/4, 5 Å + a/4) into a periodic 10.6 x 10.6 x 20.6 Å box (10 Å of vacuum along z, more than
the cutoff; every atom well inside the box, so neither code wraps one):

    python tools/make_setforce_fixtures.py [--lmp /tmp/dpk/bin/lmp]

OUT/CASE.npz holds `style` (cg / fire), `box` (3, 3) and `x0` (32, 3) the start (Å), per thermo
line (thermo 1, every iteration) `steps`, `pe` eV and `fnorm` eV/Å, and at the end `x` (32, 3) the
final positions (Å, ordered by atom id), `stop`, `iterations`, `evaluations`.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import lammps_oracle
import lj_cases

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "setforce"
A = lj_cases.A
BOX = np.diag([2 * A, 2 * A, 2 * A + 10.0])
CASES = {"cg": "min_style cg", "fire": "min_style fire"}

SCRIPT = lj_cases.head() + """thermo_style custom step pe fnorm fmax
thermo_modify format float %.17g
thermo 1
{style}
fix 1 all setforce 0 0 NULL
minimize 0 1e-10 5000 100000
write_dump all custom final.dump id x y z modify format float %.17g sort id
"""


def start() -> np.ndarray:
    """The slab's start positions (32, 3) Å (module docstring)."""
    x, _ = lj_cases.crystal()
    return x + np.array([A / 4, A / 4, 5.0 + A / 4])


def write_data(path: Path, x: np.ndarray) -> None:
    lines = ["setforce slab", "", f"{len(x)} atoms", "1 atom types", "", f"0.0 {float(BOX[0, 0])!r} xlo xhi",
             f"0.0 {float(BOX[1, 1])!r} ylo yhi", f"0.0 {float(BOX[2, 2])!r} zlo zhi", "", "Masses", "",
             f"1 {lj_cases.MASS!r}", "", "Atoms # atomic", ""]
    lines += [f"{i + 1} 1 {float(p[0])!r} {float(p[1])!r} {float(p[2])!r}" for i, p in enumerate(x)]
    path.write_text("\n".join(lines) + "\n")


def read_dump(path: Path) -> np.ndarray:
    lines = path.read_text().splitlines()
    at = lines.index(next(line for line in lines if line.startswith("ITEM: ATOMS")))
    rows = np.array([[float(v) for v in line.split()] for line in lines[at + 1:]])
    return rows[np.argsort(rows[:, 0]), 1:4]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    lammps_oracle.add_arguments(parser)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    x0 = start()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, style in CASES.items():
            write_data(work / "start.data", x0)
            log = lammps_oracle.run(args.lmp, work, SCRIPT.format(style=style))
            rows = lammps_oracle.thermo(log, ["Step", "PotEng", "Fnorm"])
            stop, it, ev = lammps_oracle.minimize_end(log)
            x = read_dump(work / "final.dump")
            np.savez_compressed(OUT / f"{name}.npz", style=name, box=BOX, x0=x0, steps=rows[:, 0].astype(int),
                                pe=rows[:, 1], fnorm=rows[:, 2], x=x, stop=stop, iterations=it, evaluations=ev)
            print(name, stop, it, ev, f"pe {rows[0, 1]:.10g} -> {rows[-1, 1]:.10g}, "
                  f"x, y unchanged: {np.array_equal(x[:, :2], x0[:, :2])}, max |dz| {np.abs(x - x0)[:, 2].max():.3g}")


if __name__ == "__main__":
    main()
