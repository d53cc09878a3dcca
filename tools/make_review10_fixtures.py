"""Make tests/data/review10/ with a real LAMMPS (the oracle of tests/test_sweep_review10.py): a data
file's box off the origin where numdp lmp's output was not LAMMPS' after the box-origin commits
(98ab3c2, 5b2aab1): `write_data` of a slab (`boundary p p f`) and `dump xyz`.

The LAMMPS, model and atoms are tools/make_lmp_fidelity_fixtures.py's (tests/data/lmp_fidelity/
ortho.data and tri.data: 192 water atoms in a box from (-5.3, 2.0, 0.7), the second tilted).

    python tools/make_review10_fixtures.py [--lmp /tmp/dpk/bin/lmp] [--dp /tmp/dpk/bin/dp] [--tf /tmp/tf221]

OUT/CASE.npz for each case of CASES (BOUNDARY, data file, fix; BODY: 10 steps with a `dump xyz`
every 5, then `write_data`): `body` (the lines after read_data and the pair, as numdp lmp is given
them), `xyz_steps`, `xyz_atoms` (frames, KEEP, 3: the coordinates of atoms 1..KEEP, %.15g) and
`data_bounds` (4, 3), `data_x` (KEEP, 3), `data_image` (KEEP, 3) of write_data's file.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

import lammps_oracle
from make_lmp_fidelity_fixtures import KEEP, MODEL, data_table

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "review10"
FIDELITY = ROOT / "tests" / "data" / "lmp_fidelity"

HEAD = lammps_oracle.head("{data}", lammps_oracle.DEEPMD_PAIR, "{boundary}") + "timestep 0.0005\n"
BODY = "{fix}\ndump 1 all xyz 5 a.xyz\ndump_modify 1 sort id\nrun 10\nwrite_data final.data\n"
PRECISE = 'dump_modify 1 format line "%s %.15g %.15g %.15g"\n'   # (LAMMPS only: numdp writes 17 digits)
CASES = {   # name: (boundary, data file, fix)
    # a slab: LAMMPS' fixed z bounds are the data file's, from its corner as x and y
    "slab": ("p p f", "ortho.data", "fix 1 all nve"),
    # a tilted box changing about its centre: the xyz positions follow LAMMPS' moving corner
    "tri_npt": ("p p p", "tri.data", "fix 1 all npt temp 330 330 0.05 tri 20000 20000 0.05"),
}


def xyz_table(path: Path):
    """(steps, atoms 1..KEEP's x y z (frames, KEEP, 3)) of a LAMMPS `dump xyz` sorted by id."""
    lines = path.read_text().splitlines()
    steps, atoms, i = [], [], 0
    while i < len(lines):
        n = int(lines[i])
        steps.append(int(lines[i + 1].split()[-1]))
        atoms.append([[float(v) for v in ln.split()[1:4]] for ln in lines[i + 2:i + 2 + KEEP]])
        i += n + 2
    return np.array(steps), np.array(atoms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    lammps_oracle.add_arguments(parser, dp=True, tf=True)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        lammps_oracle.graph(args.dp, MODEL, work, args.tf)
        for name, (boundary, data, fix) in CASES.items():
            (work / data).write_text((FIDELITY / data).read_text())
            body = BODY.format(fix=fix)
            script = HEAD.format(boundary=boundary, data=data) + body.replace("sort id\n", "sort id\n" + PRECISE)
            lammps_oracle.run(args.lmp, work, script, tf=args.tf)
            steps, atoms = xyz_table(work / "a.xyz")
            bounds, x, image = data_table(work / "final.data")
            np.savez_compressed(OUT / f"{name}.npz", body=body, xyz_steps=steps, xyz_atoms=atoms,
                                data_bounds=bounds, data_x=x, data_image=image)
            print(name, steps.tolist(), bounds[:3, 0].tolist())


if __name__ == "__main__":
    sys.exit(main())
