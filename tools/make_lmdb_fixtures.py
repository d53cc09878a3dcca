"""Write tests/data/lmdb: a small DeePMD-kit LMDB dataset and what DeePMD-kit's own reader makes
of it (the oracle of tests/test_lmdb_system.py).

Run with DeePMD-kit importable (its NumPy-only modules suffice, with lmdb and msgpack):

    PYTHONPATH=DEEPMD_SOURCE python tools/make_lmdb_fixtures.py --version "DESCRIBE"

The dataset (seeded): 3 periodic frames of 6 atoms with energy, force and virial, stored in
float32, whose metadata type_map ["H", "O"] is not the model's ["O", "H"] (remapped by name);
2 periodic frames of 4 atoms, float64, energy and force, each frame with other atom types
(mixed types); 1 frame of 4 atoms without a cell, energy and force; dpdata's atom_names,
atom_numbs and orig in every frame.  deepmd_kit.npz holds, for every frame i, DeePMD-kit's
`LmdbTestData.get_test_by_indices([i])` arrays (coord, box, type in the model's type map,
energy, force, virial where present) as `{name}_{i}`.
"""
import argparse
import json
import pathlib
import shutil
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from lmdb_util import write_lmdb  # noqa: E402

MODEL_TYPE_MAP = ["O", "H"]


def frames() -> list[dict]:
    rng = np.random.default_rng(7)
    out = []
    for _ in range(3):       # metadata types: 0 = H, 1 = O
        atype = np.array([1, 0, 0, 1, 0, 0], dtype=np.int64)
        cell = (6.0 * np.eye(3) + rng.uniform(-0.3, 0.3, (3, 3))).astype(np.float32)
        out.append({"atom_names": ["H", "O"], "atom_numbs": [4, 2], "orig": np.zeros(3),
                    "atom_types": atype, "cells": cell,
                    "coords": rng.uniform(0, 6, (6, 3)).astype(np.float32),
                    "energies": np.array(rng.normal(-30.0, 1.0), dtype=np.float32),
                    "forces": rng.normal(size=(6, 3)).astype(np.float32),
                    "virials": rng.normal(size=(3, 3)).astype(np.float32)})
    for atype in ([0, 1, 1, 1], [1, 1, 0, 1]):
        out.append({"atom_types": np.array(atype, dtype=np.int32), "cells": 5.0 * np.eye(3),
                    "coords": rng.uniform(0, 5, (4, 3)), "energies": float(rng.normal(-20.0, 1.0)),
                    "forces": rng.normal(size=(4, 3))})
    out.append({"atom_types": np.array([1, 0, 0, 1], dtype=np.int64), "coords": rng.uniform(0, 5, (4, 3)),
                "energies": np.array([rng.normal(-20.0, 1.0)]), "forces": rng.normal(size=(4, 3))})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--version", required=True, help="the DeePMD-kit that read it (git describe)")
    ap.add_argument("--out", default=str(HERE.parent / "tests" / "data" / "lmdb"))
    args = ap.parse_args()
    from deepmd.dpmodel.utils.lmdb_data import LmdbTestData

    out = pathlib.Path(args.out)
    data = out / "small.lmdb"
    if data.exists():
        shutil.rmtree(data)
    out.mkdir(parents=True, exist_ok=True)
    written = frames()
    write_lmdb(data, written, {"type_map": ["H", "O"], "frame_nlocs": [len(f["atom_types"]) for f in written]})
    (data / "lock.mdb").unlink(missing_ok=True)
    reader = LmdbTestData(str(data), type_map=MODEL_TYPE_MAP, shuffle_test=False)
    for key, ndof, atomic in (("energy", 1, False), ("force", 3, True), ("virial", 9, False)):
        reader.add(key, ndof, atomic=atomic, must=False, high_prec=key == "energy")
    arrays = {}
    for i in range(len(written)):
        got = reader.get_test_by_indices([i])
        for name in ("coord", "box", "type", "energy", "force", "virial"):
            if name in got and (name in ("coord", "box", "type") or float(got.get(f"find_{name}", 0.0)) > 0):
                arrays[f"{name}_{i}"] = np.asarray(got[name])
    np.savez(out / "deepmd_kit.npz", **arrays)
    (out / "README.md").write_text(
        "# LMDB fixture\n\n`small.lmdb` and what DeePMD-kit's LMDB reader (`LmdbTestData`) makes of it,\n"
        f"written by `tools/make_lmdb_fixtures.py` with DeePMD-kit {args.version}.\n")
    print(json.dumps(sorted(arrays)))


if __name__ == "__main__":
    main()
