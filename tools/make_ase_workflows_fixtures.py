"""Write tests/data/ase_workflows/dp_calculator.npz: what DeePMD-kit 3.2's ASE calculator
(``deepmd.calculator.DP``, PyTorch backend) answers for Atoms whose element order differs from the
model's type_map, so that tests/test_sweep_ase_workflows.py needs no DeePMD-kit.

Run with a DeePMD-kit 3.2 environment (its `dp` and `python`, with ASE):

    /tmp/dpk/bin/python tools/make_ase_workflows_fixtures.py [--dp /tmp/dpk/bin/dp] [--out tests/data/ase_workflows]

Model: tests/data/fparam/fparam.dp (type_map ["O", "H"], numb_fparam 2), converted to .pth by
`dp convert-backend` (DeePMD-kit's PyTorch backend gives nan forces on .dp files).  Atoms: frame 0
of tests/data/fparam/reference.npz (4 O then 8 H, triclinic periodic cell) reordered so that the
H atoms come first and the O atoms are interleaved (order below), with atoms.info["fparam"].

Keys: symbols (12,) str, positions (12, 3) Å, cell (3, 3) Å, fparam (2,); periodic: energy () eV,
forces (12, 3) eV/Å, stress (6,) eV/Å^3 (ASE Voigt), virial (3, 3) eV; cluster_* the same Atoms
with pbc False (DeePMD-kit evaluates without a cell): cluster_energy, cluster_forces.
"""
from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "tests/data/fparam/fparam.dp"
ORDER = [4, 5, 0, 6, 7, 8, 1, 9, 2, 10, 11, 3]   # H H O H H H O H O H H O


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dp", default="/tmp/dpk/bin/dp", help="DeePMD-kit's dp command")
    ap.add_argument("--out", default=str(ROOT / "tests/data/ase_workflows"))
    args = ap.parse_args()
    from ase import Atoms
    from deepmd.calculator import DP

    ref = np.load(ROOT / "tests/data/fparam/reference.npz")
    symbols = np.array(["O", "H"])[ref["atype"]][ORDER]
    positions, cell = ref["coord"][0][ORDER], ref["box"][0]
    fparam = np.array([0.7, -0.4])
    out = {"symbols": symbols, "positions": positions, "cell": cell, "fparam": fparam}
    with tempfile.TemporaryDirectory() as tmp:
        pth = Path(tmp) / "fparam.pth"
        subprocess.run([args.dp, "convert-backend", str(MODEL), str(pth)], check=True)
        for prefix, pbc in (("", True), ("cluster_", False)):
            atoms = Atoms(symbols=list(symbols), positions=positions, cell=cell, pbc=pbc)
            atoms.info["fparam"] = fparam
            atoms.calc = DP(str(pth))
            out[prefix + "energy"] = np.float64(atoms.get_potential_energy())
            out[prefix + "forces"] = atoms.get_forces()
            if pbc:
                out["stress"] = atoms.get_stress()
                out["virial"] = np.asarray(atoms.calc.results["virial"]).reshape(3, 3)
    dest = Path(args.out)
    dest.mkdir(parents=True, exist_ok=True)
    np.savez(dest / "dp_calculator.npz", **out)
    print("wrote", dest / "dp_calculator.npz")


if __name__ == "__main__":
    main()
