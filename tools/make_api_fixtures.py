"""Write tests/data/api/dp_reference.npz: what DeePMD-kit 3.2's Python `DeepPot` (PyTorch backend)
answers for the calls of tests/test_sweep_api.py, so that the suite needs no DeePMD-kit.

Run with a DeePMD-kit 3.2 environment (its `dp` and `python`):

    /tmp/dpk/bin/python tools/make_api_fixtures.py [--dp /tmp/dpk/bin/dp] [--out tests/data/api]

Models: tests/data/aparam/fparam_aparam.dp (numb_fparam 1, numb_aparam 2) and
tests/data/fparam/fparam.dp (numb_fparam 2), converted to .pth by `dp convert-backend` (DeePMD-kit's
PyTorch backend gives nan forces on .dp files).  Inputs are the first two frames of
tests/data/aparam/reference.npz (12 atoms, periodic box).

Keys: coord (2, 12, 3), box (2, 3, 3), atype (12,), fparam (2, 1), aparam (2, 12, 2);
virtual_atype (2, 12): per-frame types with -1 (DeePMD-kit's virtual atoms) in places, and
virtual_energy (2, 1), virtual_force (2, 12, 3), virtual_virial (2, 9), virtual_atom_energy
(2, 12, 1), virtual_atom_virial (2, 12, 9): dp.eval(coord, box, virtual_atype, atomic=True,
fparam=fparam, aparam=aparam, mixed_type=True); zero_energy (2, 1), zero_virial (2, 9): fparam.dp's
dp.eval of two frames of 0 atoms with fparam zero_fparam (2, 2); meta: JSON {"version", "getters": {model: {getter: value}}} with
get_model_size, has_chg_spin_ebd, has_default_chg_spin, use_spin of each model.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"fparam_aparam": ROOT / "tests/data/aparam/fparam_aparam.dp",
          "fparam": ROOT / "tests/data/fparam/fparam.dp"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dp", default="/tmp/dpk/bin/dp", help="DeePMD-kit's dp command")
    ap.add_argument("--out", default=str(ROOT / "tests/data/api"))
    args = ap.parse_args()
    import deepmd
    from deepmd.infer import DeepPot

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pots = {}
        for name, path in MODELS.items():
            pth = Path(tmp) / f"{name}.pth"
            subprocess.run([args.dp, "convert-backend", str(path), str(pth)], check=True)
            pots[name] = DeepPot(str(pth))
        ref = np.load(ROOT / "tests/data/aparam/reference.npz")
        coord, box, atype = ref["coord"][:2], ref["box"][:2], ref["atype"]
        rng = np.random.default_rng(20240)
        fparam = rng.normal(size=(2, 1))
        aparam = rng.normal(size=(2, atype.size, 2))
        virtual = np.stack([atype, atype])
        virtual[0, [2, 7]] = -1    # two atoms inside the list
        virtual[1, -3:] = -1       # padding at the end, as in mixed-type data
        dp = pots["fparam_aparam"]
        e, f, v, ae, av = dp.eval(coord, box, virtual, atomic=True, fparam=fparam, aparam=aparam,
                                  mixed_type=True)
        zero_fparam = rng.normal(size=(2, 2))
        ze, zf, zv = pots["fparam"].eval(np.zeros((2, 0)), box, np.zeros(0, dtype=int), fparam=zero_fparam)
        getters = {name: {"get_model_size": p.get_model_size(), "has_chg_spin_ebd": p.has_chg_spin_ebd(),
                          "has_default_chg_spin": p.has_default_chg_spin(), "use_spin": list(p.use_spin)}
                   for name, p in pots.items()}
    meta = {"version": deepmd.__version__, "getters": getters}
    np.savez(out / "dp_reference.npz", coord=coord, box=box, atype=atype, fparam=fparam, aparam=aparam,
             virtual_atype=virtual, virtual_energy=e, virtual_force=f, virtual_virial=v,
             virtual_atom_energy=ae, virtual_atom_virial=av, zero_fparam=zero_fparam, zero_energy=ze,
             zero_virial=zv,
             meta=json.dumps(meta))
    print(f"wrote {out / 'dp_reference.npz'} (DeePMD-kit {deepmd.__version__})")


if __name__ == "__main__":
    main()
