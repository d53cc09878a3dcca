"""Write tests/data/sel0/: DeePMD-kit se_e2_a models whose sel has a 0 (a type of type_map with no
neighbour slots, what DeePMD-kit's sel "auto" gives a type its training data never brings within
rcut of an atom), and DeePMD-kit's own evaluation of them, for tests/test_sweep_sel0.py.

Needs DeePMD-kit 3.x with its PyTorch backend (not a numdp dependency; a separate virtualenv):

    python3 -m venv /tmp/dpk && /tmp/dpk/bin/pip install torch==2.13.0 deepmd-kit==3.2.0
    /tmp/dpk/bin/python tools/make_sel0_fixtures.py --data ../shared/data --out tests/data/sel0

(`dp` is taken from the same folder as the Python running this script.)

For each case below, DeePMD-kit's own command line trains a tiny se_e2_a model (rcut 4 A,
neuron [4, 8], fitting [8, 8], float64) for 2 steps on water/data_0 (O and H only) with a third
type C in type_map whose sel is 0, first, in the middle or at the end (`dp --pt train`), freezes it (`dp --pt freeze`) and converts
the frozen model to its native format (`dp convert-backend`). Written to OUT, per case NAME:

- `NAME.dp.gz`: DeePMD-kit's conversion of the frozen model, gzipped (HDF5's per-dataset
  headers make a 12 kB model 43-58 kB; the tests unpack it);
- `NAME.pth.gz`: the frozen TorchScript model, gzipped, for the first case only (120 kB: the
  fixtures' size budget of 300 kB);
- in `reference.npz`, DeePMD-kit's evaluation (deepmd.infer.DeepPot on the frozen .pth, atomic=True)
  of two configurations, both with C atoms in them (a C atom has neighbours of its own, and is
  no atom's neighbour: its block has no slots):
  `pbc_*`: frame 0 of water/data_3 (192 atoms, periodic 12.44 A cube) with atoms PBC_C relabelled C;
  `open_*`: the 12 atoms of that frame nearest atom 0 (minimum image, unwrapped around atom 0),
  no box, with atoms OPEN_C relabelled C;
  per configuration `coord` (N, 3), `box` (3, 3; zeros for the open one), and `names` (N,) the
  element of each atom; per case and configuration `NAME_CONF_energy` (), `_atom_energy` (N,),
  `_force` (N, 3), `_virial` (9,), `_atom_virial` (N, 9) (DeePMD-kit's layouts); `meta` the JSON
  of the versions and the cases' type_map and sel.

`--cases NAME ...` builds only those cases (default: all; reference.npz then holds those only).
"""
from __future__ import annotations

import argparse
import copy
import gzip
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from make_pth_fixtures import BASE, run   # the same tiny model's training settings and runner

# name -> (type_map, sel, type_one_side, seed)
CASES = {
    "end_one_side": (["O", "H", "C"], [16, 32, 0], True, 11),
    "mid_two_side": (["O", "C", "H"], [16, 0, 32], False, 12),
    "first_one_side": (["C", "O", "H"], [0, 16, 32], True, 13),
    "end_two_side": (["O", "H", "C"], [16, 32, 0], False, 14),
}
PTH_CASES = ("end_one_side",)
PBC_C = (0, 5, 70)    # water/data_3 frame 0: two O and one H become C
OPEN_N = 12
OPEN_C = (3, 8)       # of the 12 nearest atom 0 (atom 0 first)


def build(name: str, type_map: list[str], sel: list[int], one_side: bool, seed: int, data: Path,
          work: Path, dp: str) -> Path:
    """Train, freeze and convert one case in work/name; return that folder."""
    cfg = copy.deepcopy(BASE)
    cfg["model"]["type_map"] = type_map
    cfg["model"]["descriptor"].update(sel=sel, rcut=4.0, rcut_smth=0.5, type_one_side=one_side, seed=seed)
    cfg["model"]["fitting_net"].update(seed=seed)
    cfg["training"]["training_data"] = {"systems": [str(data / "water" / "data_0")], "batch_size": 1}
    folder = work / name
    folder.mkdir()
    (folder / "input.json").write_text(json.dumps(cfg, indent=1))
    run([dp, "--pt", "train", "input.json"], folder)
    run([dp, "--pt", "freeze", "-c", "model.ckpt.pt", "-o", f"{name}.pth"], folder)
    run([dp, "convert-backend", f"{name}.pth", f"{name}.dp"], folder)
    return folder


def write_gz(src: Path, dst: Path) -> None:
    """dst = gzip -9 of src, with no time stamp (the same bytes for the same file)."""
    with open(dst, "wb") as raw, gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=raw,
                                               mtime=0) as gz:
        gz.write(src.read_bytes())


def configurations(data: Path) -> dict:
    """The two configurations: coord, box, element names."""
    system = data / "water" / "data_3"
    coord = np.load(system / "set.000" / "coord.npy")[0].reshape(-1, 3).astype(np.float64)
    box = np.load(system / "set.000" / "box.npy")[0].reshape(3, 3).astype(np.float64)
    type_map = (system / "type_map.raw").read_text().split()
    names = np.array([type_map[t] for t in np.loadtxt(system / "type.raw", dtype=np.int64).ravel()])
    pbc_names = names.copy()
    pbc_names[list(PBC_C)] = "C"
    d = coord - coord[0]
    d -= np.round(d @ np.linalg.inv(box)) @ box          # minimum image about atom 0
    near = np.argsort(np.linalg.norm(d, axis=1), kind="stable")[:OPEN_N]
    open_names = names[near].copy()
    open_names[list(OPEN_C)] = "C"
    return {"pbc": (coord, box, pbc_names), "open": (coord[0] + d[near], np.zeros((3, 3)), open_names)}


def evaluate(model: Path, confs: dict, prefix: str) -> dict:
    from deepmd.infer import DeepPot

    pot = DeepPot(str(model))
    tm = pot.get_type_map()
    out = {}
    for conf, (coord, box, names) in confs.items():
        atype = np.array([tm.index(n) for n in names])
        cell = None if not box.any() else box.reshape(1, -1)
        e, f, v, ae, av = pot.eval(coord.reshape(1, -1), cell, atype, atomic=True)
        n = len(names)
        key = f"{prefix}_{conf}"
        out.update({f"{key}_energy": np.float64(np.asarray(e).ravel()[0]),
                    f"{key}_atom_energy": np.asarray(ae, np.float64).reshape(n),
                    f"{key}_force": np.asarray(f, np.float64).reshape(n, 3),
                    f"{key}_virial": np.asarray(v, np.float64).reshape(9),
                    f"{key}_atom_virial": np.asarray(av, np.float64).reshape(n, 9)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="numdp's data folder (holds water/)")
    ap.add_argument("--out", type=Path, required=True, help="where the fixtures go")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--cases", nargs="+", help="build only these cases")
    args = ap.parse_args()
    import deepmd
    import torch

    dp = str(Path(sys.executable).with_name("dp"))
    data, out = args.data.resolve(), args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="sel0_fixtures_"))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    confs = configurations(data)
    ref = {}
    for conf, (coord, box, names) in confs.items():
        ref.update({f"{conf}_coord": coord, f"{conf}_box": box, f"{conf}_names": names})
    cases = {k: v for k, v in CASES.items() if not args.cases or k in args.cases}
    for name, (type_map, sel, one_side, seed) in cases.items():
        folder = build(name, type_map, sel, one_side, seed, data, work, dp)
        write_gz(folder / f"{name}.dp", out / f"{name}.dp.gz")
        if name in PTH_CASES:
            write_gz(folder / f"{name}.pth", out / f"{name}.pth.gz")
        ref.update(evaluate(folder / f"{name}.pth", confs, name))
        print(f"wrote {name}")
    meta = {"deepmd-kit": deepmd.__version__, "torch": torch.__version__,
            "cases": {k: {"type_map": v[0], "sel": v[1], "type_one_side": v[2]} for k, v in cases.items()}}
    np.savez_compressed(out / "reference.npz", meta=json.dumps(meta), **ref)
    if args.keep:
        print(f"work folder kept: {work}")
    else:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
