"""Write tests/data/dp32_models/: se_e2_a energy models in the variants a DeePMD-kit 3.2 user
trains, in every file DeePMD-kit writes, with DeePMD-kit's own evaluation of them, for
tests/test_sweep_model_files.py (which needs no DeePMD-kit).

Needs DeePMD-kit 3.2 with its PyTorch backend in a separate virtualenv (not a numdp dependency):

    python3 -m venv /tmp/dpk && /tmp/dpk/bin/pip install torch==2.13.0 deepmd-kit==3.2.0
    /tmp/dpk/bin/python tools/make_dp32_model_fixtures.py --data ../shared/data --out tests/data/dp32_models

(`dp` is taken from the folder of the Python running this script.)  With `--tf PATH` (a folder
holding TensorFlow 2.21, e.g. `pip install --target /tmp/tf221 tensorflow-cpu==2.21.0`) each
case is also converted to a TensorFlow graph (`dp convert-backend NAME.pth NAME.pb` with PATH
on PYTHONPATH); without it no .pb is written.

For each case of CASES (changes to BASE), DeePMD-kit's command line trains a tiny model for 2
steps (`dp --pt train`, seeds fixed in BASE and the case) on water/data_0 (given random frame
parameters fparam.npy (nframes, 2) and atomic parameters aparam.npy (nframes, natoms) from
numpy's default_rng(0), used by the cases that take them), freezes it (`dp --pt freeze`) and
converts the frozen model (`dp convert-backend NAME.pth NAME.dp`).  Kept per case, as `KEEP`
says (the TorchScript .pth is ~135 kB of code whatever the nets, a .pb ~100 kB, a .pt ~50 kB
with its optimizer state, a .dp ~25 kB; every file of every case was checked when they were
made, the tests keep a few):
NAME.pth, NAME.pt (the checkpoint), NAME.dp, NAME.pb; `--work DIR` keeps every file of every
case in DIR/NAME/.

reference.npz holds the configurations (2 frames of 12 atoms, 4 O + 8 H, random positions at
least 1 Å apart in a triclinic periodic cell, default_rng(1)): coord (2, 12, 3), box (2, 3, 3),
atype (12,), fparam (2, 2), aparam (2, 12, 1) and, per case NAME, DeePMD-kit's evaluation
(deepmd.infer.DeepPot on NAME.pth, atomic=True, with fparam / aparam when the model takes them):
NAME_energy (2,), NAME_force (2, 12, 3), NAME_virial (2, 3, 3), NAME_atom_energy (2, 12),
NAME_atom_virial (2, 12, 9); "meta": JSON of the versions, the cases' inputs and the files kept.
Cases DeePMD-kit 3.2 cannot build are left out and named in meta["failed"]; those whose
files it writes but cannot evaluate are kept without outputs, named in meta["eval_failed"].  `--cases NAME ...`
builds only those, keeping the other cases of an existing reference.npz.
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

import lammps_oracle

BASE = {
    "model": {
        "type_map": ["O", "H"],
        "descriptor": {"type": "se_e2_a", "sel": [12, 24], "rcut_smth": 0.5, "rcut": 3.5,
                       "neuron": [2, 4], "resnet_dt": False, "axis_neuron": 2,
                       "type_one_side": True, "precision": "float64", "seed": 1},
        "fitting_net": {"neuron": [4, 4], "resnet_dt": True, "precision": "float64", "seed": 1},
    },
    "learning_rate": {"type": "exp", "decay_steps": 2, "start_lr": 0.001, "stop_lr": 1e-5},
    "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000, "limit_pref_f": 1},
    "training": {"numb_steps": 2, "seed": 1, "disp_freq": 1, "save_freq": 2},
}

# name -> {"model": model-level keys, "descriptor": ..., "fitting_net": ...} changes to BASE
CASES = {
    "fparam": {"fitting_net": {"numb_fparam": 2, "seed": 2}},
    "aparam": {"fitting_net": {"numb_aparam": 1, "seed": 3}},
    "fparam_aparam_default": {"fitting_net": {"numb_fparam": 2, "numb_aparam": 1, "default_fparam": [0.3, -0.2],
                                              "seed": 4}},
    "aparam_mask": {"fitting_net": {"numb_aparam": 1, "use_aparam_as_mask": True, "seed": 5}},
    "fit_f32": {"fitting_net": {"precision": "float32", "seed": 6}},
    "desc_f32": {"descriptor": {"precision": "float32", "seed": 7}},
    "gelu_relu": {"descriptor": {"activation_function": "gelu", "seed": 8},
                  "fitting_net": {"activation_function": "relu", "seed": 8}},
    "softplus_sigmoid": {"descriptor": {"activation_function": "softplus", "seed": 9},
                         "fitting_net": {"activation_function": "sigmoid", "seed": 9}},
    "linear_relu6": {"descriptor": {"activation_function": "linear", "seed": 10},
                     "fitting_net": {"activation_function": "relu6", "seed": 10}},
    "gelutf_silu": {"descriptor": {"activation_function": "gelu_tf", "seed": 11},
                    "fitting_net": {"activation_function": "silu", "seed": 11}},
    # two-sided, descriptor exclusions, timestep residuals in the embedding, none in the fitting
    "two_side_excl": {"descriptor": {"type_one_side": False, "exclude_types": [[1, 1]], "resnet_dt": True,
                                     "seed": 12},
                      "fitting_net": {"resnet_dt": False, "seed": 12}},
    # widths that neither repeat nor double (no residual), and some that do
    "odd_widths": {"descriptor": {"neuron": [3, 5, 10], "axis_neuron": 3, "resnet_dt": True, "seed": 13},
                   "fitting_net": {"neuron": [5, 7, 7], "seed": 13}},
    "rcond_trainable": {"descriptor": {"trainable": False, "seed": 14},
                        "fitting_net": {"rcond": 1e-3, "trainable": [True, False, True], "seed": 14}},
    # DeePMD-kit 3.2's PyTorch evaluation fails on it (an in-place subtraction of the net at a
    # zero descriptor under autograd): kept unevaluated, for numdp's refusal
    "atom_ener": {"fitting_net": {"atom_ener": [1.5, None], "seed": 19}},
    "davg_zero": {"descriptor": {"set_davg_zero": True, "seed": 15}, "fitting_net": {"seed": 15}},
    # a type absent from the data (C): its sel, nets and statistics stay untrained
    "absent_type": {"model": {"type_map": ["O", "H", "C"]},
                    "descriptor": {"sel": [12, 24, 4], "type_one_side": False, "seed": 16},
                    "fitting_net": {"seed": 16}},
    "env_protection": {"descriptor": {"env_protection": 0.01, "seed": 17}},
    "model_excl": {"model": {"pair_exclude_types": [[0, 0]], "atom_exclude_types": [0]},
                   "descriptor": {"type_one_side": False, "seed": 18}, "fitting_net": {"seed": 18}},
}
KEEP = {name: (".dp",) for name in CASES}
KEEP.update({"fparam": (".pth", ".pt", ".dp"), "aparam": (".pth", ".dp", ".pb"),
             "fparam_aparam_default": (".pth", ".dp"), "atom_ener": (".pt", ".dp")})
NF, N = 2, 12
OUTPUTS = ("energy", "force", "virial", "atom_energy", "atom_virial")


def merged(base: dict, change: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in change.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def run(cmd: list[str], cwd: Path, env=None) -> bool:
    with open(cwd / "log.txt", "a") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        done = subprocess.run(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env)
    return done.returncode == 0


def training_system(data: Path, work: Path) -> Path:
    """water/data_0 with random fparam.npy (nframes, 2) and aparam.npy (nframes, natoms)."""
    system = work / "system"
    shutil.copytree(data / "water" / "data_0", system)
    rng = np.random.default_rng(0)
    nframes, natoms = np.load(system / "set.000" / "coord.npy").shape[0], len((system / "type.raw").read_text().split())
    np.save(system / "set.000" / "fparam.npy", rng.normal(size=(nframes, 2)))
    np.save(system / "set.000" / "aparam.npy", rng.normal(size=(nframes, natoms)))
    return system


def configurations() -> dict:
    """NF frames of N random atoms (4 O, 8 H), >= 1 Å apart (minimum image), in a triclinic cell."""
    rng = np.random.default_rng(1)
    box = np.array([[6.0, 0.0, 0.0], [0.7, 5.8, 0.0], [-0.4, 0.5, 6.2]])
    coords = []
    while len(coords) < NF:
        frac = rng.random((N, 3))
        d = frac[:, None] - frac[None]
        d -= np.round(d)
        r = np.linalg.norm(d @ box, axis=-1) + 9 * np.eye(N)
        if r.min() >= 1.0:
            coords.append(frac @ box)
    return {"coord": np.array(coords), "box": np.tile(box, (NF, 1, 1)), "atype": np.array([0] * 4 + [1] * 8),
            "fparam": rng.normal(size=(NF, 2)), "aparam": rng.normal(size=(NF, N, 1))}


def evaluate(pth: Path, conf: dict) -> dict:
    """DeePMD-kit's energy, forces, virial, atomic energies and virials of each frame."""
    from deepmd.infer import DeepPot

    pot = DeepPot(str(pth))
    keys = OUTPUTS
    out = {k: [] for k in keys}
    for f in range(NF):
        extra = {}
        if pot.get_dim_fparam():
            extra["fparam"] = conf["fparam"][f][: pot.get_dim_fparam()].reshape(1, -1)
        if pot.get_dim_aparam():
            extra["aparam"] = conf["aparam"][f].reshape(1, -1)
        e, force, v, ae, av = pot.eval(conf["coord"][f].reshape(1, -1), conf["box"][f].reshape(1, -1),
                                       conf["atype"], atomic=True, **extra)
        for key, val, shape in zip(keys, (e, force, v, ae, av), ((), (N, 3), (3, 3), (N,), (N, 9))):
            out[key].append(np.asarray(val, np.float64).reshape(shape))
    return {k: np.array(v) for k, v in out.items()}


def build(name: str, change: dict, system: Path, work: Path, dp: str, tf: Path | None) -> Path | None:
    """Train, freeze and convert one case in work/name; the folder, or None where DeePMD-kit fails."""
    sections = {k: v for k, v in change.items() if k != "model"}
    cfg = merged(BASE, {"model": {**change.get("model", {}), **sections}})
    cfg["training"]["training_data"] = {"systems": [str(system)], "batch_size": 1}
    folder = work / name
    folder.mkdir()
    (folder / "input.json").write_text(json.dumps(cfg, indent=1))
    if not run([dp, "--pt", "train", "input.json"], folder):
        return None
    shutil.copyfile((folder / "model.ckpt.pt").resolve(), folder / f"{name}.pt")
    if not (run([dp, "--pt", "freeze", "-c", f"{name}.pt", "-o", f"{name}.pth"], folder)
            and run([dp, "convert-backend", f"{name}.pth", f"{name}.dp"], folder)):
        return None
    if tf is not None:   # DeePMD-kit's TensorFlow backend refuses some (default_fparam): no .pb then
        run([dp, "convert-backend", f"{name}.pth", f"{name}.pb"], folder, env=lammps_oracle.environment(str(tf)))
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="numdp's data folder (holds water/)")
    ap.add_argument("--out", type=Path, required=True, help="where the fixtures go")
    ap.add_argument("--tf", type=Path, help="a folder holding TensorFlow, for the .pb conversions")
    ap.add_argument("--work", type=Path, help="work folder (default: a new temporary one, removed)")
    ap.add_argument("--cases", nargs="+", help="build only these cases")
    args = ap.parse_args()
    import deepmd
    import torch

    dp = str(Path(sys.executable).with_name("dp"))
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = args.work.resolve() if args.work else Path(tempfile.mkdtemp(prefix="dp32_fixtures_"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    system = training_system(args.data.resolve(), work)
    conf = configurations()
    ref = dict(conf)
    meta = {"deepmd_version": deepmd.__version__, "torch_version": torch.__version__, "base": BASE,
            "cases": {}, "files": {}, "failed": {}, "eval_failed": {}}
    if args.cases and (out / "reference.npz").exists():   # rebuild those cases, keep the others
        with np.load(out / "reference.npz") as old:
            redo = {f"{c}_{key}" for c in args.cases for key in OUTPUTS}
            ref.update({k: old[k] for k in old.files if k != "meta" and k not in redo})
            meta = json.loads(str(old["meta"]))
        for part in ("cases", "files", "failed", "eval_failed"):
            meta[part] = {k: v for k, v in meta[part].items() if k not in args.cases}
    for name, change in CASES.items():
        if args.cases and name not in args.cases:
            continue
        folder = build(name, change, system, work, dp, args.tf)
        if folder is None:
            log = (work / name / "log.txt").read_text().strip().splitlines()
            meta["failed"][name] = log[-1] if log else "?"
            print(f"{name}: DeePMD-kit failed: {meta['failed'][name]}")
            continue
        try:
            ref.update({f"{name}_{key}": val for key, val in evaluate(folder / f"{name}.pth", conf).items()})
        except Exception as exc:   # noqa: BLE001 - DeePMD-kit's own failure, recorded
            meta["eval_failed"][name] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1]}"
            print(f"{name}: DeePMD-kit's evaluation failed: {meta['eval_failed'][name]}")
        kept = [s for s in KEEP[name] if (folder / f"{name}{s}").exists()]
        for suffix in kept:
            shutil.copyfile(folder / f"{name}{suffix}", out / f"{name}{suffix}")
        meta["cases"][name], meta["files"][name] = change, kept
        print(f"{name}: wrote {', '.join(kept)}")
    ref["meta"] = np.array(json.dumps(meta))
    np.savez(out / "reference.npz", **ref)
    if not args.work:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
