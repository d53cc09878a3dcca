"""Make tests/data/mutants24/ with a real LAMMPS (the oracle of tests/test_sweep_mutants24.py):
what LAMMPS' input language and command line give where numdp lmp's reading of them
(numdp.lammps.script, numdp.commands.lmp) let a plausible mistake through.

The LAMMPS is tools/lammps_oracle.py's (22 Jul 2025 update 2); no atoms and no model: the script
is language only, every `print` text starting with a tag MNN.

    python tools/make_mutants24_fixtures.py [--lmp /tmp/dpk/bin/lmp]

OUT/language.in: the script (LANGUAGE), run as `lmp -in language.in -var cli 1 -var cli 2`
(CLI: a name given twice); OUT/language.txt: the lines LAMMPS' print commands wrote, in order (the
log's lines that start with a tag).
"""
from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

import lammps_oracle

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "mutants24"
CLI = ("-var", "cli", "1", "-var", "cli", "2")   # numdp lmp's -v / -var: LAMMPS keeps the first

LANGUAGE = """\
# numdp lmp's reading of LAMMPS' language, against LAMMPS' own (tests/test_sweep_mutants24.py)
variable x string 5
variable xy string 9
print M01:$xy:${xy}
print "M02 $xy ${x}y"
print "M03 ${cli}"
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    lammps_oracle.add_arguments(parser)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        log = lammps_oracle.run(args.lmp, Path(tmp), LANGUAGE, name="language.in", args=CLI)
        printed = [ln for ln in log.splitlines() if re.match(r"M\d\d", ln)]
    (OUT / "language.in").write_text(LANGUAGE)
    (OUT / "language.txt").write_text("\n".join(printed) + "\n")
    print(f"language: {len(printed)} lines")


if __name__ == "__main__":
    main()
