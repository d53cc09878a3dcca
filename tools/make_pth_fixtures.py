"""Write the DeePMD-kit PyTorch model fixtures that tests/test_pth_models.py reads numdp against.

Needs DeePMD-kit 3.x with its PyTorch backend (not a numdp dependency; a separate virtualenv):

    python3 -m venv /tmp/dpk && /tmp/dpk/bin/pip install torch==2.13.0 deepmd-kit==3.2.0
    /tmp/dpk/bin/python tools/make_pth_fixtures.py --data ../shared/data --out tests/data/pytorch

(`dp` is taken from the same folder as the Python running this script.)

For each case below, DeePMD-kit's own command line trains a tiny se_e2_a model for 2 steps on
water/data_0 (`dp --pt train`), freezes it (`dp --pt freeze`) and converts the frozen model to
its native format (`dp convert-backend`). Written to OUT, per case NAME:

- `NAME.pt`: the training checkpoint as DeePMD-kit saved it (model and optimizer state);
- `NAME.pth`: the frozen TorchScript model;
- `NAME.dp`: DeePMD-kit's own conversion of NAME.pth;
- `NAME.npz`: DeePMD-kit's evaluation (deepmd.infer.DeepPot on NAME.pth) of one configuration,
  frame 0 of water/data_3 (192 atoms, periodic): coord (natoms, 3), box (3, 3), atype, type_map,
  energy (), atom_energy (natoms,), force (natoms, 3), virial (3, 3), plus the DeePMD-kit and
  torch versions; for a case with descriptor `exclude_types` also DeePMD-kit's descriptor
  statistics (DescrptSeA.compute_input_stats, EnvMatStatSe) of frames 0 and 1 of water/data_3
  under that descriptor: stat_nframes (2), stat_davg, stat_dstd (ntypes, nnei, 4); and its
  evaluation of an open O-H dimer at the distances dimer_r (5,) Å, inside and outside rcut:
  dimer_atom_energy (5, 2), dimer_force (5, 2, 3) (an excluded neighbour within rcut adds
  nothing, one beyond it leaves a padding slot: the energy jumps at rcut); the same dimer for
  the case with the model-level `pair_exclude_types` (an excluded neighbour is a padding slot
  at every distance: no jump), with DeePMD-kit's descriptor statistics of those frames under
  that exclusion (stat_*).

Unsupported kinds, for the refusal tests: `se_e2_r.pth` (an se_e2_r descriptor, frozen) and
`multitask.pt` (the checkpoint of a two-branch multi-task training, water_a and water_b, sharing
one se_e2_a descriptor) and `dipole.pth` (se_e2_a + dipole fitting, frozen; trained 2 steps on
water/data_0's frames with random dipole labels, as only the file's kind matters).

`--cases NAME ...` builds only those cases (default: all).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

BASE = {
    "model": {
        "type_map": ["O", "H"],
        "descriptor": {"type": "se_e2_a", "sel": [46, 92], "rcut_smth": 0.5, "rcut": 6.0,
                       "neuron": [4, 8], "resnet_dt": False, "axis_neuron": 4,
                       "type_one_side": True, "precision": "float64", "seed": 1},
        "fitting_net": {"neuron": [8, 8], "resnet_dt": True, "precision": "float64", "seed": 1},
    },
    "learning_rate": {"type": "exp", "decay_steps": 2, "start_lr": 0.001, "stop_lr": 1e-5},
    "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000, "limit_pref_f": 1},
    "training": {"numb_steps": 2, "seed": 1, "disp_freq": 1, "save_freq": 2},
}

# name -> (descriptor changes, fitting changes)
CASES = {
    # one-sided embedding (one net per neighbour type), fitting with timestep residuals (idt)
    "se_a_one_side_f64": ({}, {}),
    # two-sided embedding (ntypes**2 nets) with timestep residuals (4 -> 8 doubles: idt), plain fitting
    "se_a_two_side_f64": ({"type_one_side": False, "resnet_dt": True, "seed": 2},
                          {"resnet_dt": False, "seed": 2}),
    # float32 tensors throughout
    "se_a_two_side_f32": ({"type_one_side": False, "precision": "float32", "seed": 3},
                          {"precision": "float32", "seed": 3}),
    # one-sided, O-H pairs excluded (descriptor exclude_types: both O-centred H neighbours and
    # H-centred O neighbours contribute nothing, their padding slots still do)
    "se_a_excl_f64": ({"exclude_types": [[0, 1]], "seed": 8}, {"seed": 8}),
    # model-level exclusions (MODEL_KEYS): O-H pairs are not neighbours (their slots are padding)
    "se_a_pair_excl_f64": ({"seed": 9}, {"seed": 9}),
    # model-level: the H atoms' energies are left out (two-sided embedding)
    "se_a_atom_excl_f64": ({"type_one_side": False, "seed": 10}, {"seed": 10}),
}
MODEL_KEYS = {"se_a_pair_excl_f64": {"pair_exclude_types": [[0, 1]]},
              "se_a_atom_excl_f64": {"atom_exclude_types": [1]}}
"""Model-level keys of a case (besides the descriptor and fitting changes of CASES)."""
UNSUPPORTED = {"se_e2_r": ({"type": "se_e2_r", "sel": [46, 92], "rcut_smth": 0.5, "rcut": 6.0,
                            "neuron": [4, 8], "precision": "float64", "seed": 4}, {})}


def run(cmd: list[str], cwd: Path) -> None:
    with open(cwd / "log.txt", "a") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        done = subprocess.run(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed in {cwd} (see {cwd / 'log.txt'})")


def build(name: str, desc: dict, fit: dict, data: Path, work: Path, dp: str, replace_desc: bool) -> Path:
    """Train, freeze and convert one case in work/name; return that folder."""
    cfg = copy.deepcopy(BASE)
    if replace_desc:
        cfg["model"]["descriptor"] = desc
    else:
        cfg["model"]["descriptor"].update(desc)
    cfg["model"]["fitting_net"].update(fit)
    cfg["model"].update(MODEL_KEYS.get(name, {}))
    cfg["training"]["training_data"] = {"systems": [str(data / "water" / "data_0")], "batch_size": 1}
    folder = work / name
    folder.mkdir()
    (folder / "input.json").write_text(json.dumps(cfg, indent=1))
    run([dp, "--pt", "train", "input.json"], folder)
    ckpt = (folder / "model.ckpt.pt").resolve()  # a link to model.ckpt-2.pt
    shutil.copyfile(ckpt, folder / f"{name}.pt")
    run([dp, "--pt", "freeze", "-c", f"{name}.pt", "-o", f"{name}.pth"], folder)
    return folder


def build_multitask(data: Path, work: Path, dp: str) -> Path:
    """A two-branch multi-task training (shared descriptor); return its checkpoint."""
    single = BASE["model"]
    loss = dict(BASE["loss"], type="ener")
    cfg = {
        "model": {"shared_dict": {"tmap": single["type_map"], "desc": dict(single["descriptor"], seed=5)},
                  "model_dict": {b: {"type_map": "tmap", "descriptor": "desc",
                                     "fitting_net": {"neuron": [8, 8], "seed": seed}}
                                 for b, seed in (("water_a", 5), ("water_b", 6))}},
        "learning_rate": BASE["learning_rate"],
        "loss_dict": {"water_a": loss, "water_b": loss},
        "training": {"model_prob": {"water_a": 0.5, "water_b": 0.5},
                     "data_dict": {b: {"training_data": {"systems": [str(data / "water" / d)], "batch_size": 1}}
                                   for b, d in (("water_a", "data_0"), ("water_b", "data_2"))},
                     "numb_steps": 2, "seed": 1, "disp_freq": 1, "save_freq": 2},
    }
    folder = work / "multitask"
    folder.mkdir()
    (folder / "input.json").write_text(json.dumps(cfg, indent=1))
    run([dp, "--pt", "train", "input.json"], folder)
    return (folder / "model.ckpt.pt").resolve()


def build_dipole(data: Path, work: Path, dp: str) -> Path:
    """A frozen se_e2_a + dipole-fitting model; return the .pth."""
    folder = work / "dipole"
    shutil.copytree(data / "water" / "data_0", folder / "system")
    nframes = np.load(folder / "system" / "set.000" / "coord.npy").shape[0]
    np.save(folder / "system" / "set.000" / "dipole.npy", np.random.default_rng(0).normal(size=(nframes, 3)))
    cfg = copy.deepcopy(BASE)
    cfg["model"]["fitting_net"] = {"type": "dipole", "neuron": [8, 8], "seed": 7}
    cfg["loss"] = {"type": "tensor", "pref": 1.0, "pref_atomic": 0.0}
    cfg["training"]["training_data"] = {"systems": ["system"], "batch_size": 1}
    (folder / "input.json").write_text(json.dumps(cfg, indent=1))
    run([dp, "--pt", "train", "input.json"], folder)
    run([dp, "--pt", "freeze", "-c", "model.ckpt.pt", "-o", "dipole.pth"], folder)
    return folder / "dipole.pth"


def reference(pth: Path, data: Path) -> dict:
    """DeePMD-kit's energy, forces and virial of frame 0 of water/data_3 with model `pth`."""
    import torch

    return {**deepmd_reference(pth, data), "torch_version": np.array(torch.__version__)}


def deepmd_reference(model: Path, data: Path) -> dict:
    """DeePMD-kit's evaluation (deepmd.infer.DeepPot, any backend) of frame 0 of water/data_3 with
    `model`, and DeePMD-kit's version (tools/make_pb_fixtures.py uses it too)."""
    import deepmd
    from deepmd.infer import DeepPot

    system = data / "water" / "data_3"
    coord = np.load(system / "set.000" / "coord.npy")[0].reshape(-1, 3)
    box = np.load(system / "set.000" / "box.npy")[0].reshape(3, 3)
    atype = np.loadtxt(system / "type.raw", dtype=np.int64).ravel()
    type_map = (system / "type_map.raw").read_text().split()
    pot = DeepPot(str(model))
    assert pot.get_type_map() == type_map, (pot.get_type_map(), type_map)
    e, f, v, ae, _ = pot.eval(coord.reshape(1, -1), box.reshape(1, -1), atype, atomic=True)
    return {"coord": coord, "box": box, "atype": atype, "type_map": np.array(type_map),
            "energy": np.float64(np.asarray(e).ravel()[0]), "atom_energy": np.asarray(ae, np.float64).ravel(),
            "force": np.asarray(f, np.float64).reshape(-1, 3), "virial": np.asarray(v, np.float64).reshape(3, 3),
            "deepmd_version": np.array(deepmd.__version__)}


def env_stat_reference(desc: dict, data: Path, nframes: int = 2, pair_exclude_types=None) -> dict:
    """DeePMD-kit's davg/dstd (DescrptSeA.compute_input_stats) of the first `nframes` frames of
    water/data_3 for the descriptor settings `desc` (BASE's, changed by the case); with the
    model-level `pair_exclude_types`, given to the statistics as DeePMD-kit's model gives them
    (the sample's "pair_exclude_types")."""
    import torch
    from deepmd.pt.model.descriptor.se_a import DescrptSeA

    system = data / "water" / "data_3"
    # float64 as DeePMD-kit's data loader gives them to the statistics (the files hold float32)
    coord = np.load(system / "set.000" / "coord.npy")[:nframes].astype(np.float64)
    box = np.load(system / "set.000" / "box.npy")[:nframes].astype(np.float64)
    atype = np.loadtxt(system / "type.raw", dtype=np.int64).ravel()
    keys = ("rcut", "rcut_smth", "sel", "neuron", "axis_neuron", "type_one_side", "exclude_types")
    descriptor = DescrptSeA(**{k: desc[k] for k in keys if k in desc}, precision="float64")
    sample = {"coord": torch.tensor(coord.reshape(nframes, len(atype), 3)),
              "atype": torch.tensor(np.tile(atype, (nframes, 1))), "box": torch.tensor(box.reshape(nframes, 9))}
    if pair_exclude_types:
        sample["pair_exclude_types"] = pair_exclude_types
    descriptor.compute_input_stats([sample])
    davg, dstd = descriptor.get_stat_mean_and_stddev()
    return {"stat_nframes": np.int64(nframes), "stat_davg": davg.detach().cpu().numpy(),
            "stat_dstd": dstd.detach().cpu().numpy()}


def dimer_reference(pth: Path) -> dict:
    """DeePMD-kit's atomic energies and forces of an open O-H dimer (types 0, 1) along x."""
    from deepmd.infer import DeepPot

    pot = DeepPot(str(pth))
    dist = np.array([1.0, 3.0, 5.99, 6.01, 8.0])
    ae, force = [], []
    for r in dist:
        _, f, _, e, _ = pot.eval(np.array([0.0, 0.0, 0.0, r, 0.0, 0.0]).reshape(1, -1), None, [0, 1], atomic=True)
        ae.append(np.asarray(e, np.float64).ravel())
        force.append(np.asarray(f, np.float64).reshape(2, 3))
    return {"dimer_r": dist, "dimer_atom_energy": np.array(ae), "dimer_force": np.array(force)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="numdp's data folder (holds water/)")
    ap.add_argument("--out", type=Path, required=True, help="where the fixtures go")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--cases", nargs="+", help="build only these cases")
    args = ap.parse_args()
    wanted = set(args.cases or [*CASES, *UNSUPPORTED, "multitask", "dipole"])
    dp = str(Path(sys.executable).with_name("dp"))
    data, out = args.data.resolve(), args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="pth_fixtures_"))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    for name, (desc, fit) in CASES.items():
        if name not in wanted:
            continue
        folder = build(name, desc, fit, data, work, dp, replace_desc=False)
        run([dp, "convert-backend", f"{name}.pth", f"{name}.dp"], folder)
        for suffix in (".pt", ".pth", ".dp"):
            shutil.copyfile(folder / f"{name}{suffix}", out / f"{name}{suffix}")
        ref = reference(folder / f"{name}.pth", data)
        if desc.get("exclude_types"):
            ref.update(env_stat_reference(dict(BASE["model"]["descriptor"], **desc), data))
            ref.update(dimer_reference(folder / f"{name}.pth"))
        pairs = MODEL_KEYS.get(name, {}).get("pair_exclude_types")
        if pairs:
            ref.update(env_stat_reference(dict(BASE["model"]["descriptor"], **desc), data, pair_exclude_types=pairs))
            ref.update(dimer_reference(folder / f"{name}.pth"))
        np.savez(out / f"{name}.npz", **ref)
        print(f"wrote {name}.pt/.pth/.dp/.npz")
    for name, (desc, fit) in UNSUPPORTED.items():
        if name not in wanted:
            continue
        folder = build(name, desc, fit, data, work, dp, replace_desc=True)
        shutil.copyfile(folder / f"{name}.pth", out / f"{name}.pth")
        print(f"wrote {name}.pth")
    if "multitask" in wanted:
        shutil.copyfile(build_multitask(data, work, dp), out / "multitask.pt")
        print("wrote multitask.pt")
    if "dipole" in wanted:
        shutil.copyfile(build_dipole(data, work, dp), out / "dipole.pth")
        print("wrote dipole.pth")
    if args.keep:
        print(f"work folder kept: {work}")
    else:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
