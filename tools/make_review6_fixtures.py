"""Make tests/data/review6/*.npz (tests/test_sweep_review6.py) with a real LAMMPS, the oracle of
tools/make_box_relax_fixtures.py (its start structures, data file, log reader and LJ model):

    python tools/make_review6_fixtures.py [--lmp /tmp/dpk/bin/lmp]

- aniso_tilt: `fix box/relax aniso 0.0` on the 32-atom crystal with the sheared cell of the `tri`
  case (LAMMPS scales the tilts with the lengths: scalexy/scalexz/scaleyz on by default);
- tri_small: `fix box/relax tri 0.0 vmax 0.01` on one jittered fcc cell (4 atoms: cg restarts
  every 3N + 6 = 18 iterations, where beta > 0).
Each holds what make_box_relax_fixtures.py writes, with every thermo line's pe.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "tests" / "data" / "review6"
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "tests"))
import lammps_oracle  # noqa: E402
import make_box_relax_fixtures as base  # noqa: E402
from test_md_potential import fcc  # noqa: E402

SHEAR = np.array([[1.02, 0.0, 0.0], [0.04, 0.99, 0.0], [0.03, -0.02, 1.01]])


def small(strain):
    x, box = fcc(1, 5.3)
    x = x + np.random.default_rng(4).normal(scale=0.1, size=x.shape)
    return x @ strain, box @ strain


CASES = {"aniso_tilt": ("aniso", base.start(SHEAR), ""), "tri_small": ("tri", small(SHEAR), " vmax 0.01")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    lammps_oracle.add_arguments(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, (coupling, (x, box), extra) in CASES.items():
            base.write_data(work / "start.data", x, box)
            script = base.SCRIPT.format(coupling=coupling, pressure=0.0).replace("0.0\nminimize", f"0.0{extra}\nminimize")
            rows, stop, it, ev, final = base.read_log(lammps_oracle.run(args.lmp, work, script))
            np.savez_compressed(HERE / f"{name}.npz", coupling=coupling, pressure=0.0, box0=box, x0=x,
                                vmax=float(extra.split()[1]) if extra else 1e-4, steps=rows[:, 0].astype(int),
                                pe=rows[:, 1], final_pe=rows[-1, 1], vol=rows[-1, 2], p=rows[-1, 3:9], box=final,
                                stop=stop, iterations=it, evaluations=ev)
            print(name, stop, it, ev, rows[-1, 1])


if __name__ == "__main__":
    main()
