"""Make tests/data/mutants10/ with a real LAMMPS (the oracle of tests/test_sweep_mutants10.py):
what LAMMPS' input language gives where numdp lmp's reading of it (numdp.lammps.script) let a
plausible mistake through.

The LAMMPS is tools/lammps_oracle.py's (22 Jul 2025 update 2); no atoms and no model: each script
is language only (variables, formulas, `if`, `print`, comments, quotes, `&`), every `print` text
starting with a tag LNN.

    python tools/make_mutants10_fixtures.py [--lmp /tmp/dpk/bin/lmp]

OUT/NAME.in: the script (SCRIPTS), run as `lmp -in NAME.in -var cli 7` (CLI_VARIABLES);
OUT/NAME.txt: the lines LAMMPS' print commands wrote, in order (the log's lines that start with a tag).
"""
from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from pathlib import Path

import lammps_oracle

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "mutants10"
CLI_VARIABLES = {"cli": "7"}   # -var NAME VALUE (numdp lmp's -v)

LANGUAGE = """\
# the input language numdp lmp reads, against LAMMPS' own (tests/test_sweep_mutants10.py)
print 'L01 # in single quotes' # a comment
print "L02 a # b"   # c
print "L03 $(1 || 0 && 0) $(0 && 1 || 1) $(0 == 1 < 2) $(1 + 2 * 3 ^ 2)"
print "L04 $(-7.5 % 2) $(7 % -3) $(log(1000)) $(ln(exp(2))) $(2.5e-1*4) $(2.5E+1)"
if "1.0 == 1" then "print L05yes" else "print L05no"
if "1 == 1" then "print L06a" elif "1 == 1" "print L06b" else "print L06c"
if "0 > 1" then "print L07a" elif "2 > 1" "print L07b" "print L07c" else "print L07d"
print "L08 universe" universe no
print "L09 $((1+2)*(3+4)) $(sqrt((2+2))*(1+1))"
variable a equal 2
variable b equal v_a*10
variable a equal 3
print "L10 ${b}"
variable c string x
variable c delete
variable c equal 4
print "L11 ${c}"
variable cli index 9
print "L12 ${cli}"
variable d equal 1/3
print "L13 ${d} $(v_a/3:%.3f)"
"""
# where numdp lmp read LAMMPS' language otherwise (the fixes proposed with tests/test_sweep_mutants10.py):
# `&` joins the next line with no space (LAMMPS' manual: "removing the & character and line break"), and
# v_NAME of an equal-style variable in a formula is its value as %.15g text (LAMMPS' Variable::retrieve)
DIFFERENCES = """\
variable joined string ab&
cd
print "L01 [${joined}] [ab&
cd] [ab &
cd]"
variable d equal 1/3
print "L02 $(v_d) $(v_d*3 == 1)"
"""
SCRIPTS = {"language": LANGUAGE, "differences": DIFFERENCES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    lammps_oracle.add_arguments(parser)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    cli = [w for k, v in CLI_VARIABLES.items() for w in ("-var", k, v)]
    for name, script in SCRIPTS.items():
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            (work / f"{name}.in").write_text(script)
            done = subprocess.run([args.lmp, "-in", f"{name}.in", "-log", "log.lammps", *cli], cwd=work,
                                  env=lammps_oracle.environment(None), capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"{name}: LAMMPS failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
            printed = [ln for ln in (work / "log.lammps").read_text().splitlines() if re.match(r"L\d\d", ln)]
        (OUT / f"{name}.in").write_text(script)
        (OUT / f"{name}.txt").write_text("\n".join(printed) + "\n")
        print(f"{name}: {len(printed)} lines")


if __name__ == "__main__":
    main()
