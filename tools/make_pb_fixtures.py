"""Write the DeePMD-kit TensorFlow model fixtures that tests/test_pb_models.py reads numdp against.

Needs DeePMD-kit 3.x with its TensorFlow backend (not a numdp dependency; a separate virtualenv):

    python3 -m venv /tmp/dptf && /tmp/dptf/bin/pip install "deepmd-kit[cpu]==3.2.0"
    /tmp/dptf/bin/python tools/make_pb_fixtures.py --data ../shared/data --out tests/data/tensorflow

(`dp` is taken from the same folder as the Python running this script.)

For each case below, DeePMD-kit's own command line trains a tiny se_e2_a model for 2 steps on
water/data_0 with its TensorFlow backend (`dp --tf train`), freezes it (`dp --tf freeze`) and
converts the frozen graph to its native format (`dp convert-backend`). Written to OUT, per case
NAME:

- `NAME.pb`: the frozen graph (a TensorFlow GraphDef, the file DP-GEN and LAMMPS' `pair_style
  deepmd` of DeePMD-kit 2.x use);
- `NAME.dp`: DeePMD-kit's own conversion of NAME.pb;
- `NAME.npz`: DeePMD-kit's evaluation (deepmd.infer.DeepPot on NAME.pb) of frame 0 of
  water/data_3 (192 atoms, periodic): coord (natoms, 3), box (3, 3), atype, type_map, energy (),
  atom_energy (natoms,), force (natoms, 3), virial (3, 3), plus the DeePMD-kit and TensorFlow
  versions.

Also:

- `converted_one_side_f64.pb`: `dp convert-backend` of the PyTorch fixture
  tests/data/pytorch/se_a_one_side_f64.dp into a graph (`--pth-fixtures`, default
  tests/data/pytorch): a graph with the output bias and scale (`t_out_bias`, `t_out_std`) that
  DeePMD-kit 3 writes when it converts a model of another backend.  No evaluation is stored:
  DeePMD-kit 3.2's TensorFlow backend evaluates this converted graph 2.7 eV (forces 6 meV/Å) away
  from its PyTorch backend's evaluation of the source model (and of the .pth it came from), while
  it evaluates its own graphs and the converted oracle water.dp to round-off; the test compares
  the arrays with the source .dp instead;
- `se_e2_r.pb` (an se_e2_r descriptor: a refused kind) and `fparam.pb` (an energy model with one
  frame parameter: read, its statistics checked).  A compressed graph (`dp --tf compress`, 1.1 MB for the first case) is not
  stored: the test adds a TabulateFusionSeA node to a graph instead.

`--cases NAME ...` builds only those (default: all).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from make_pth_fixtures import BASE, deepmd_reference, run   # the same tiny model, runner, evaluation

# name -> (descriptor changes, fitting changes)
CASES = {
    # one-sided embedding (filter_type_all/...: one net per neighbour type), fitting with idt
    "tf_one_side_f64": ({}, {}),
    # two-sided embedding (filter_type_I/..._J: ntypes**2 nets) with idt, plain fitting
    "tf_two_side_f64": ({"type_one_side": False, "resnet_dt": True, "seed": 2},
                        {"resnet_dt": False, "seed": 2}),
    # float32 constants throughout
    "tf_two_side_f32": ({"type_one_side": False, "precision": "float32", "seed": 3},
                        {"precision": "float32", "seed": 3}),
}
REFUSED = {
    "se_e2_r": ({"type": "se_e2_r", "sel": [46, 92], "rcut_smth": 0.5, "rcut": 6.0, "neuron": [4, 8],
                 "precision": "float64", "seed": 4}, {}, True),
    "fparam": ({}, {"numb_fparam": 1, "seed": 5}, False),
}


def build(name: str, desc: dict, fit: dict, data: Path, work: Path, dp: str, replace_desc: bool) -> Path:
    """Train and freeze one case in work/name; return the .pb."""
    cfg = copy.deepcopy(BASE)
    if replace_desc:
        cfg["model"]["descriptor"] = desc
    else:
        cfg["model"]["descriptor"].update(desc)
    cfg["model"]["fitting_net"].update(fit)
    folder = work / name
    shutil.copytree(data / "water" / "data_0", folder / "system")
    if fit.get("numb_fparam"):
        nframes = np.load(folder / "system" / "set.000" / "coord.npy").shape[0]
        np.save(folder / "system" / "set.000" / "fparam.npy", np.ones((nframes, 1)))
    cfg["training"]["training_data"] = {"systems": ["system"], "batch_size": 1}
    (folder / "input.json").write_text(json.dumps(cfg, indent=1))
    run([dp, "--tf", "train", "input.json"], folder)
    run([dp, "--tf", "freeze", "-o", f"{name}.pb"], folder)
    return folder / f"{name}.pb"


def reference(pb: Path, data: Path) -> dict:
    """DeePMD-kit's energy, forces and virial of frame 0 of water/data_3 with the graph `pb`."""
    import tensorflow as tf

    return {**deepmd_reference(pb, data), "tensorflow_version": np.array(tf.__version__)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="numdp's data folder (holds water/)")
    ap.add_argument("--out", type=Path, required=True, help="where the fixtures go")
    ap.add_argument("--pth-fixtures", type=Path, default=Path(__file__).resolve().parents[1] / "tests" / "data" / "pytorch")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--cases", nargs="+", help="build only these cases")
    args = ap.parse_args()
    wanted = set(args.cases or [*CASES, *REFUSED, "converted_one_side_f64"])
    dp = str(Path(sys.executable).with_name("dp"))
    data, out = args.data.resolve(), args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="pb_fixtures_"))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    for name, (desc, fit) in CASES.items():
        if name not in wanted:
            continue
        pb = build(name, desc, fit, data, work, dp, replace_desc=False)
        run([dp, "convert-backend", pb.name, f"{name}.dp"], pb.parent)
        for suffix in (".pb", ".dp"):
            shutil.copyfile(pb.with_suffix(suffix), out / f"{name}{suffix}")
        np.savez(out / f"{name}.npz", **reference(pb, data))
        print(f"wrote {name}.pb/.dp/.npz")
    if "converted_one_side_f64" in wanted:
        folder = work / "converted"
        folder.mkdir()
        shutil.copyfile(args.pth_fixtures / "se_a_one_side_f64.dp", folder / "source.dp")
        run([dp, "convert-backend", "source.dp", "converted_one_side_f64.pb"], folder)
        shutil.copyfile(folder / "converted_one_side_f64.pb", out / "converted_one_side_f64.pb")
        print("wrote converted_one_side_f64.pb")
    for name, (desc, fit, replace) in REFUSED.items():
        if name not in wanted:
            continue
        pb = build(name, desc, fit, data, work, dp, replace_desc=replace)
        shutil.copyfile(pb, out / f"{name}.pb")
        print(f"wrote {name}.pb")
    if args.keep:
        print(f"work folder kept: {work}")
    else:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
