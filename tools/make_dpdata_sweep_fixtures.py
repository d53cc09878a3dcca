"""Write tests/data/dpdata_sweep/dp_driver.npz: what DeePMD-kit 3.2's dpdata driver ("dp",
``deepmd.driver.DPDriver``, PyTorch backend) labels, so that tests/test_sweep_dpdata.py needs no
DeePMD-kit.

Run with a DeePMD-kit 3.2 environment that can import dpdata (DeePMD-kit's own driver then
replaces dpdata's "dp"):

    /tmp/dpk/bin/python tools/make_dpdata_sweep_fixtures.py [--out tests/data/dpdata_sweep]

Model: tests/data/pytorch/se_a_two_side_f64.pth (type_map ["O", "H"]; the .dp beside it holds the
same parameters).  Systems, each given to dpdata with atom_names ["H", "C", "O"] (the reverse of
the model's order, and an element with no atoms):
- ``small``: atoms 0-3 (O) and 64-71 (H) of tests/data/pytorch/se_a_two_side_f64.npz in its cubic
  12.44 Å box, two frames (the second displaced by 0.05 * sin(k) Å), periodic;
- ``small_nopbc``: the same frames without a box (dpdata nopbc);
- ``one``: one O atom in a 4 Å cube, periodic (its neighbours are its own images).

Keys: <name>_coords (nframes, natoms, 3) Å, <name>_cells (nframes, 3, 3) Å, <name>_types (natoms,)
indices into atom_names, <name>_energies (nframes,) eV, <name>_forces (nframes, natoms, 3) eV/Å,
<name>_virials (nframes, 3, 3) eV (DeePMD-kit's sign; DeePMD-kit gives them for nopbc too).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "tests/data/pytorch/se_a_two_side_f64.pth"
NAMES = ["H", "C", "O"]


def systems() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, bool]]:
    """name -> (coords, cells, types into NAMES, nopbc)."""
    ref = np.load(ROOT / "tests/data/pytorch/se_a_two_side_f64.npz")
    pick = np.r_[0:4, 64:72]
    c0 = ref["coord"].reshape(-1, 3)[pick]
    coords = np.stack([c0, c0 + 0.05 * np.sin(np.arange(c0.size)).reshape(c0.shape)])
    cells = np.repeat(ref["box"].reshape(1, 3, 3), 2, axis=0)
    types = np.where(ref["atype"][pick] == 0, 2, 0)   # O -> 2, H -> 0 in NAMES
    return {"small": (coords, cells, types, False),
            "small_nopbc": (coords, np.zeros_like(cells), types, True),
            "one": (np.full((1, 1, 3), 0.3), 4.0 * np.eye(3)[None], np.array([2]), False)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "tests/data/dpdata_sweep"))
    args = ap.parse_args()
    import dpdata

    out = {}
    for name, (coords, cells, types, nopbc) in systems().items():
        data = {"atom_names": NAMES, "atom_numbs": [int((types == i).sum()) for i in range(3)],
                "atom_types": types, "orig": np.zeros(3), "coords": coords, "cells": cells}
        if nopbc:
            data["nopbc"] = True
        ls = dpdata.System(data=data).predict(str(MODEL), driver="dp")
        out.update({f"{name}_coords": coords, f"{name}_cells": cells, f"{name}_types": types,
                    f"{name}_energies": ls["energies"], f"{name}_forces": ls["forces"],
                    f"{name}_virials": ls["virials"]})
    Path(args.out).mkdir(parents=True, exist_ok=True)
    np.savez(Path(args.out) / "dp_driver.npz", **out)


if __name__ == "__main__":
    main()
