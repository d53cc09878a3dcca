"""Make tests/data/autotest3: DP-GEN 0.14.0's autotest scripts for fcc Cu and DeePMD-kit's figures.

Needs DP-GEN (PyPI dpgen 0.14.0, in its own venv) and DeePMD-kit 3.2 (/tmp/dpk).  In a work folder:

    numdp convert inputs/cu/model.h5 cu.dp && /tmp/dpk/bin/dp convert-backend cu.dp cu.pth
    confs/std-fcc/POSCAR: ase.build.bulk("Cu", "fcc", a=3.61, cubic=True), vasp format
    relax.json: {"structures": ["confs/std-fcc"], "interaction": {"type": "deepmd", "model": "cu.pth",
                 "deepmd_version": "3.2.0", "type_map": {"Cu": 0}}, "relaxation": {}}
    dpgen autotest make relax.json       (then run + post with machine.json's command "numdp lmp")
    prop_eos.json: the same with "properties": [{"type": "eos", "vol_start": 0.9, "vol_end": 1.1,
                 "vol_step": 0.05}]; dpgen autotest make prop_eos.json

then `/tmp/dpk/bin/python tools/make_autotest3_fixtures.py WORK` copies the scripts DP-GEN wrote:
relax.in / relax_conf.lmp (confs/std-fcc/relaxation/relax_task: in.lammps, conf.lmp; `pair_style
deepmd cu.pth` becomes `model.h5`, numdp's copy of the same weights) and eos.in / eos_conf.lmp
(eos_00/task.000000, the 0.9 V0 cell of the relaxed structure), and writes dpk.json: DeePMD-kit's
lattice constant a0 (Å; the cubic cell's stress bisected to zero) and energy per atom e0 (eV),
and the energy (eV) and pressure tensor (eV/Å³: LAMMPS' pxx pyy pzz pxy pxz pyz / nktv2p, positive
under compression) of eos_conf.lmp.
"""
import json
import re
import shutil
import sys
from pathlib import Path

from ase.build import bulk
from ase.io import read
from deepmd.calculator import DP

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "autotest3"


def copy_script(src: Path, dst: Path) -> None:
    text = re.sub(r"^pair_style deepmd \S+", "pair_style deepmd model.h5", src.read_text(), flags=re.M)
    dst.write_text(text)


def main(work: Path) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    conf = work / "confs" / "std-fcc"
    copy_script(conf / "relaxation" / "relax_task" / "in.lammps", OUT / "relax.in")
    shutil.copy(conf / "relaxation" / "relax_task" / "conf.lmp", OUT / "relax_conf.lmp")
    copy_script(conf / "eos_00" / "task.000000" / "in.lammps", OUT / "eos.in")
    shutil.copy(conf / "eos_00" / "task.000000" / "conf.lmp", OUT / "eos_conf.lmp")
    calc = DP(str(work / "cu.pth"))

    def cubic(a):
        at = bulk("Cu", "fcc", a=a, cubic=True)
        at.calc = calc
        return at

    lo, hi = 3.5, 3.7
    for _ in range(60):   # ASE's stress is negative under compression: a below a0
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if cubic(mid).get_stress()[0] < 0 else (lo, mid)
    a0 = 0.5 * (lo + hi)
    eos = read(OUT / "eos_conf.lmp", format="lammps-data", atom_style="atomic")
    eos.set_chemical_symbols(["Cu"] * len(eos))
    eos.calc = calc
    s = -eos.get_stress(voigt=False)
    ref = {"a0": a0, "e0": cubic(a0).get_potential_energy() / 4,
           "eos_energy": eos.get_potential_energy(),
           "eos_pressure_ev_a3": [s[0, 0], s[1, 1], s[2, 2], s[0, 1], s[0, 2], s[1, 2]],
           "source": "DeePMD-kit 3.2 deepmd.calculator.DP on cu.pth (inputs/cu/model.h5 converted)"}
    (OUT / "dpk.json").write_text(json.dumps(ref, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
