"""Make tests/data/autotest/: DP-GEN autotest's LAMMPS scripts and what real LAMMPS prints for them.

    python tools/make_autotest_fixtures.py [--dpgen GIT_DIR] [--lmp /tmp/dpk/bin/lmp] [--tf /tmp/tf221]

The scripts are written by DP-GEN's own functions (dpgen/auto_test/lib/lammps.py at d5ce577f:
make_lammps_eval, make_lammps_equi with change_box=False, the fixed-box relaxation that EOS and
elastic tasks run, and make_lammps_elastic), taken from a bare git mirror of DP-GEN (its `requests`
import stubbed: only the script writers are used), for the water model
tests/data/tensorflow/tf_one_side_f64.pb (type_map O H) and the 192-atom triclinic box
tests/data/lammps_nh/water_tri.data as DP-GEN's conf.lmp.  LAMMPS 22 Jul 2025 with DeePMD-kit 3.2's
pair_style deepmd runs each; OUT/NAME.in is the script, OUT/NAME.log the lines of LAMMPS'
log.lammps from its first thermo header on (thermo lines, prints, Total wall time).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import lammps_oracle

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "autotest"
MODEL = ROOT / "tests" / "data" / "tensorflow" / "tf_one_side_f64.pb"
CONF = ROOT / "tests" / "data" / "lammps_nh" / "water_tri.data"
TYPE_MAP = {"O": 0, "H": 1}
MAXITER = 3   # minimize iterations (LAMMPS' and numdp's cg agree to round-off over so few)


def scripts(lammps) -> dict[str, str]:
    """NAME -> the script DP-GEN writes (model file model.pb, conf.lmp)."""
    param = {"model_name": ["model.pb"], "deepmd_version": "2.2.0"}
    return {
        "eval": lammps.make_lammps_eval("conf.lmp", TYPE_MAP, lammps.inter_deepmd, param),
        "equi_fixed_box": lammps.make_lammps_equi("conf.lmp", TYPE_MAP, lammps.inter_deepmd, param, maxiter=MAXITER,
                                                  change_box=False),
        "elastic": lammps.make_lammps_elastic("conf.lmp", TYPE_MAP, lammps.inter_deepmd, param, maxiter=MAXITER),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    lammps_oracle.add_arguments(parser, tf=True, dpgen=True)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        lammps = lammps_oracle.dpgen_lammps(args.dpgen, work)
        (work / "model.pb").write_bytes(MODEL.read_bytes())
        (work / "conf.lmp").write_text(CONF.read_text())
        for name, text in scripts(lammps).items():
            (OUT / f"{name}.in").write_text(text)
            log = lammps_oracle.run(args.lmp, work, text, tf=args.tf).splitlines()
            first = next(k for k, line in enumerate(log) if line.split()[:1] == ["Step"])
            (OUT / f"{name}.log").write_text("\n".join(log[first:]) + "\n")
            print(name, [line for line in log if line.startswith("Final energy")])


if __name__ == "__main__":
    main()
