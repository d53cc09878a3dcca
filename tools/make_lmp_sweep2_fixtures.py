"""Make tests/data/lmp_sweep2/ with a real LAMMPS (the oracle of tests/test_sweep_lmp_more2.py):
LAMMPS' `fix recenter INIT INIT INIT` run that numdp lmp must repeat to round-off.

The LAMMPS, the model conversion and the start structure are those of
tools/make_lammps_nh_fixtures.py (LAMMPS 22 Jul 2025 update 2 with DeePMD-kit 3.2's pair_style
deepmd; tests/data/lammps_nh/water_drift.data, 192 water atoms whose velocities carry a total
momentum):

    python tools/make_lmp_sweep2_fixtures.py [--lmp /tmp/dpk/bin/lmp] [--dp /tmp/dpk/bin/dp] [--tf /tmp/tf221]

For each case of CASES LAMMPS runs that tool's SCRIPT (20 steps of 0.5 fs, a dump of id x y z vx
vy vz at step 20) with the case's commands in place of its fix line, and OUT/CASE.npz holds what
that tool's fixtures hold (`fix`, `data`, `steps`, `x` (N, 3) Å minus (xlo, ylo, zlo), `v` (N, 3)
Å/ps, `box` (3, 3) Å, `lo` (3,) Å).
"""
from __future__ import annotations

import argparse
import importlib.util
import tempfile
from pathlib import Path

import numpy as np

import lammps_oracle

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "lmp_sweep2"
NH_DATA = ROOT / "tests" / "data" / "lammps_nh"

CASES = {
    # the drift zeroed, then the Nose-Hoover chain with LAMMPS' recenter of the centre of mass
    "nvt_recenter": ("water_drift.data", "velocity all zero linear\nfix 1 all nvt temp 300 300 0.01\n"
                                         "fix 2 all recenter INIT INIT INIT"),
}


def nh_tool():
    spec = importlib.util.spec_from_file_location("make_lammps_nh_fixtures", ROOT / "tools" / "make_lammps_nh_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    lammps_oracle.add_arguments(parser, dp=True, tf=True)
    args = parser.parse_args()
    nh = nh_tool()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        lammps_oracle.graph(args.dp, nh.MODEL, work, args.tf)
        for name, (data, fix) in CASES.items():
            (work / data).write_text((NH_DATA / data).read_text())
            lammps_oracle.run(args.lmp, work, nh.SCRIPT.format(data=data, fix=fix, steps=nh.STEPS), tf=args.tf)
            x, v, cell, lo = nh.read_dump(work / "final.dump")
            np.savez_compressed(OUT / f"{name}.npz", fix=fix, data=data, steps=nh.STEPS, x=x, v=v, box=cell, lo=lo)
            print(name, "written")


if __name__ == "__main__":
    main()
