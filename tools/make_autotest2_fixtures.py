"""Make tests/data/autotest2/: DP-GEN autotest's relaxation script and what real LAMMPS prints for it.

    python tools/make_autotest2_fixtures.py [--dpgen GIT_DIR] [--lmp /tmp/dpk/bin/lmp] [--tf /tmp/tf221]

The script is written by DP-GEN's own make_lammps_equi (dpgen/auto_test/lib/lammps.py at d5ce577f)
with change_box=True, its default: `fix 1 all box/relax iso 0.0` + `minimize`, then aniso, then
tri, three minimizations in one script (maxiter MAXITER each), for the water model
tests/data/tensorflow/tf_one_side_f64.pb (type_map O H) and the 192-atom triclinic box
tests/data/lammps_nh/water_tri.data without its Velocities section (DP-GEN's conf.lmp, written by
dpdata, has none) as OUT/conf.lmp (tools/make_autotest_fixtures.py does the same for DP-GEN's other
scripts, with the velocities).  LAMMPS 22 Jul 2025 with DeePMD-kit 3.2's pair_style deepmd runs
it; OUT/NAME.in is the script, OUT/NAME.log LAMMPS' whole log.lammps, OUT/NAME.dump its dump.relax.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import lammps_oracle

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "autotest2"
MODEL = ROOT / "tests" / "data" / "tensorflow" / "tf_one_side_f64.pb"
CONF = ROOT / "tests" / "data" / "lammps_nh" / "water_tri.data"
TYPE_MAP = {"O": 0, "H": 1}
MAXITER = 3   # iterations of each minimize (LAMMPS' and numdp's cg agree to round-off over so few)


def scripts(lammps) -> dict[str, str]:
    """NAME -> the script DP-GEN writes (model file model.pb, conf.lmp)."""
    param = {"model_name": ["model.pb"], "deepmd_version": "2.2.0"}
    return {"equi_relax": lammps.make_lammps_equi("conf.lmp", TYPE_MAP, lammps.inter_deepmd, param,
                                                  maxiter=MAXITER, change_box=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    lammps_oracle.add_arguments(parser, tf=True, dpgen=True)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "conf.lmp").write_text(lammps_oracle.without_velocities(CONF.read_text()))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        lammps = lammps_oracle.dpgen_lammps(args.dpgen, work)
        (work / "model.pb").write_bytes(MODEL.read_bytes())
        (work / "conf.lmp").write_text((OUT / "conf.lmp").read_text())
        for name, text in scripts(lammps).items():
            (OUT / f"{name}.in").write_text(text)
            log = lammps_oracle.run(args.lmp, work, text, tf=args.tf)
            (OUT / f"{name}.log").write_text(log)
            (OUT / f"{name}.dump").write_text((work / "dump.relax").read_text())
            print(name, [line for line in log.splitlines() if line.startswith("Final energy")])


if __name__ == "__main__":
    main()
