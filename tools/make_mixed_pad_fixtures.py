"""Write tests/data/mixed_pad/: a tiny mixed-type system with virtual atoms (type -1, dpdata's
``atom_numb_pad`` padding) and DeePMD-kit 3.2's figures on it, for tests/test_sweep_mixed_pad.py.

Needs DeePMD-kit 3.2 with its PyTorch backend (not a numdp dependency; a separate virtualenv):

    python3 -m venv /tmp/dpk && /tmp/dpk/bin/pip install torch==2.13.0 deepmd-kit==3.2.0
    /tmp/dpk/bin/python tools/make_mixed_pad_fixtures.py --out tests/data/mixed_pad

(`dp` is taken from the same folder as the Python running this script.)

The system `sys/` (type.raw all 0, type_map.raw O H, one set): three frames of 12 slots built
from tests/data/dp32_models/reference.npz's water frames (4 O, 8 H; periodic 6 Å cell):
frame 0 all 12 atoms real; frame 1 reference frame 1 with its last 3 atoms virtual, at the
origin as dpdata pads them; frame 2 reference frame 0 shifted by 0.05 Å with atoms 3, 5 and 6
virtual, two of them placed 0.3 and 0.2 Å from real atoms (a reader that kept them would see
them).  Labels from a seeded generator: energies, forces (0 on virtual atoms, as dpdata pads
them), virials.

Models: gelu_relu.dp and softplus_sigmoid.dp of tests/data/dp32_models (O, H; rcut 3.5 Å),
converted to .pth by `dp convert-backend` (dp gives nan forces for .dp).  Written to OUT:
`dp.json`: `dp test` (model gelu_relu) figures from its log, in eV (energy and virial per atom,
force, each RMSE and MAE, and energy total), `model_devi` (the rows of `dp model-devi` of the two
models), `change_bias` (the new out_bias of `dp change-bias`, O and H, eV);
`desc.npy`: `dp eval-desc`'s (3, 12, 8) descriptors.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "tests" / "data" / "dp32_models"


def write_system(out: Path) -> None:
    r = np.load(MODELS / "reference.npz")
    rng = np.random.default_rng(7)
    n = 12
    coord = np.stack([r["coord"][0], r["coord"][1], r["coord"][0] + 0.05])
    types = np.stack([r["atype"]] * 3).astype(np.int64)
    types[1, 9:] = -1
    coord[1, 9:] = 0.0
    types[2, [3, 5, 6]] = -1
    coord[2, 3] = coord[2, 0] + 0.3
    coord[2, 5] = coord[2, 1] + 0.2
    force = rng.normal(size=(3, n, 3))
    force[types < 0] = 0.0
    s = out / "set.000"
    s.mkdir(parents=True)
    (out / "type.raw").write_text("0\n" * n)
    (out / "type_map.raw").write_text("O\nH\n")
    np.save(s / "coord.npy", coord.reshape(3, -1))
    np.save(s / "box.npy", np.stack([r["box"][0]] * 3).reshape(3, 9))
    np.save(s / "real_atom_types.npy", types)
    np.save(s / "energy.npy", np.array([-1885.0, -1318.0, -1414.0]))
    np.save(s / "force.npy", force.reshape(3, -1))
    np.save(s / "virial.npy", rng.normal(size=(3, 9)))


def dp(*args, cwd) -> str:
    exe = Path(sys.executable).parent / "dp"
    run = subprocess.run([str(exe), "--pt", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return run.stdout + run.stderr


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "mixed_pad")
    args = ap.parse_args()
    out = args.out
    shutil.rmtree(out / "sys", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    write_system(out / "sys")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in ("gelu_relu", "softplus_sigmoid"):
            dp("convert-backend", str(MODELS / f"{name}.dp"), f"{name}.pth", cwd=work)
        sysdir = str(out / "sys")
        log = dp("test", "-m", "gelu_relu.pth", "-s", sysdir, cwd=work)
        figures = {}
        for key, pat in (("mae_e", r"Energy MAE/Natoms\s*:\s*(\S+)"), ("rmse_e", r"Energy RMSE/Natoms\s*:\s*(\S+)"),
                         ("mae_e_total", r"Energy MAE\s*:\s*(\S+)"), ("rmse_e_total", r"Energy RMSE\s*:\s*(\S+)"),
                         ("mae_f", r"Force  MAE\s*:\s*(\S+)"), ("rmse_f", r"Force  RMSE\s*:\s*(\S+)"),
                         ("mae_v", r"Virial MAE/Natoms\s*:\s*(\S+)"), ("rmse_v", r"Virial RMSE/Natoms\s*:\s*(\S+)")):
            figures[key] = float(re.findall(pat, log)[-1])
        dp("model-devi", "-m", "gelu_relu.pth", "softplus_sigmoid.pth", "-s", sysdir, "-o", "md.out", cwd=work)
        devi = np.loadtxt(work / "md.out").tolist()
        log = dp("change-bias", "gelu_relu.pth", "-s", sysdir, "-o", "shifted.pth", cwd=work)
        bias = [float(x) for x in re.findall(r"to \[([^\]]*)\]", log)[-1].split()]
        dp("eval-desc", "-m", "gelu_relu.pth", "-s", sysdir, "-o", "desc", cwd=work)
        np.save(out / "desc.npy", np.load(work / "desc" / "sys.npy"))
    (out / "dp.json").write_text(json.dumps({"deepmd_version": "3.2.0", "test": figures, "model_devi": devi,
                                             "change_bias": bias}, indent=1) + "\n")


if __name__ == "__main__":
    main()
