"""Write the DeePMD-kit training references that tests/test_train_deepmd_kit.py checks numdp against.

Needs DeePMD-kit's PyTorch backend (not a numdp dependency; run it in a separate virtualenv):

    python3 -m venv /tmp/dpk && /tmp/dpk/bin/pip install torch==2.13.0 deepmd-kit==3.2.0 mpich e3nn
    /tmp/dpk/bin/python tools/deepmd_kit_training_oracle.py --data ../shared/data --out tests/data/deepmd_kit_training

(deepmd-kit 3.2.0's wheel carries C++ operators built for torch 2.11; se_e2_a training does not use
them: if loading them fails on another torch, move `deepmd/lib/libdeepmd_op_pt.so` aside.)

For each case (small networks, so that the files stay small; DeePMD-kit's loss, learning-rate
and Adam settings), DeePMD-kit's own trainer is built from the case's input.json and writes:

- `init.dp`: the model after DeePMD-kit's data statistics (davg/dstd, energy bias), before any
  update: DeePMD-kit's random initial networks;
- `grad.dp`: the same model with every trainable array replaced by ∂L/∂θ of the loss at step 0
  (prefactors at the start learning rate) on one training frame (`grad_frame`), by PyTorch's
  autograd; `loss`: that loss;
- `final.dp`: the model after `steps` updates of DeePMD-kit's training loop, whose frames are
  recorded (`sequence`: [system index, frame index] per step).

`case.json` holds the input (systems relative to the data folder), the frame, the loss, the
sequence and the versions.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from pathlib import Path

CASES = {
    # water: two types, one-sided embedding, fitting with timestep residuals, energy + force loss
    "water": {
        "systems": ["water/data_0", "water/data_1", "water/data_2"],
        "validation": ["water/data_3"],
        "model": {
            "type_map": ["O", "H"],
            "descriptor": {"type": "se_e2_a", "sel": [46, 92], "rcut_smth": 0.5, "rcut": 6.0,
                           "neuron": [4, 8, 16], "resnet_dt": False, "axis_neuron": 4,
                           "type_one_side": True, "precision": "float64", "seed": 7},
            "fitting_net": {"neuron": [16, 16, 16], "resnet_dt": True, "precision": "float64", "seed": 7},
        },
        "learning_rate": {"type": "exp", "decay_steps": 2, "start_lr": 0.001, "stop_lr": 3.51e-08},
        "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000,
                 "limit_pref_f": 1, "start_pref_v": 0, "limit_pref_v": 0},
        "numb_steps": 40, "steps": 8, "seed": 70,
    },
    # copper: one type, a two-sided embedding with timestep residuals, energy + force + virial
    "cu": {
        "systems": ["cu/train/fcc_300K", "cu/train/strain", "cu/train/vacancy_107"],
        "validation": ["cu/valid/strain"],
        "model": {
            "type_map": ["Cu"],
            "descriptor": {"type": "se_e2_a", "sel": [90], "rcut_smth": 2.0, "rcut": 6.0,
                           "neuron": [4, 8, 16], "resnet_dt": True, "axis_neuron": 4,
                           "type_one_side": False, "precision": "float64", "seed": 3},
            "fitting_net": {"neuron": [16, 16], "resnet_dt": False, "precision": "float64", "seed": 3},
        },
        "learning_rate": {"type": "exp", "decay_steps": 2, "start_lr": 0.001, "stop_lr": 3.51e-08},
        "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000,
                 "limit_pref_f": 1, "start_pref_v": 0.02, "limit_pref_v": 1},
        "numb_steps": 40, "steps": 8, "seed": 30,
    },
}
# copper again with DeePMD-kit 3.2's absolute-error loss (loss_func "mae") on every term
CASES["cu_mae"] = {**CASES["cu"], "loss": {**CASES["cu"]["loss"], "loss_func": "mae"}}
# water with the model-level exclusions: O-O pairs are not neighbours (their slots padding), the H
# atoms' energies are zero (their fitting net untrained); two-sided embedding
CASES["water_excl"] = {**CASES["water"], "model": {
    **CASES["water"]["model"], "pair_exclude_types": [[0, 0]], "atom_exclude_types": [1],
    "descriptor": {**CASES["water"]["model"]["descriptor"], "type_one_side": False, "seed": 8}}}


def case_input(case: dict, data: Path | None) -> dict:
    """DeePMD-kit input.json of a case; systems under `data` (None: relative to the data folder)."""
    def where(s):
        return str(data / s) if data is not None else s

    return {
        "model": copy.deepcopy(case["model"]),
        "learning_rate": dict(case["learning_rate"]),
        "loss": dict(case["loss"]),
        "training": {
            "training_data": {"systems": [where(s) for s in case["systems"]], "batch_size": 1},
            "validation_data": {"systems": [where(s) for s in case["validation"]], "batch_size": 1,
                                "numb_btch": 1},
            "numb_steps": case["numb_steps"], "seed": case["seed"], "disp_file": "lcurve.out",
            "disp_freq": 1000, "save_freq": 1000,
        },
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path, help="the shared data folder (water/, cu/)")
    ap.add_argument("--out", required=True, type=Path, help="output folder (one sub-folder per case)")
    ap.add_argument("--cases", nargs="+", choices=sorted(CASES), default=sorted(CASES),
                    help="the cases to write (default: all)")
    args = ap.parse_args(argv)
    os.environ["SAMPLER_RECORD"] = "1"   # read by deepmd.pt.utils.env at import
    import torch
    import deepmd
    from deepmd.dpmodel.utils.serialization import save_dp_model
    from deepmd.pt.entrypoints.main import get_trainer
    from deepmd.utils.argcheck import normalize
    from deepmd.utils.compat import update_deepmd_input

    torch.set_num_threads(1)
    data = args.data.resolve()
    for name in args.cases:
        case = CASES[name]
        out = (args.out / name).resolve()
        out.mkdir(parents=True, exist_ok=True)
        cwd = os.getcwd()
        os.chdir(out)
        try:
            cfg = normalize(update_deepmd_input(case_input(case, data), warning=False))
            trainer = get_trainer(cfg)
            model = trainer.model

            def save(path, serialized):
                save_dp_model(path, {"backend": "PyTorch", "pt_version": torch.__version__,
                                     "model": serialized, "model_def_script": cfg["model"],
                                     "@variables": {}})

            save("init.dp", model.serialize())
            # the loss and its gradient at step 0 on the first frame the sampler gives
            input_dict, label_dict, log = trainer._next_training_batch("Default")
            lr0 = trainer.lr_schedule.value(0)
            trainer.optimizer.zero_grad(set_to_none=True)
            _, loss, _ = trainer.wrapper(**input_dict, cur_lr=lr0, label=label_dict, task_key="Default")
            loss.backward()
            frame = [int(log["sid"]), int(log["fid"][0])]
            keep = {n: p.detach().clone() for n, p in trainer.wrapper.named_parameters()}
            with torch.no_grad():
                for n, p in trainer.wrapper.named_parameters():
                    p.copy_(p.grad if p.grad is not None else torch.zeros_like(p))
            save("grad.dp", model.serialize())
            with torch.no_grad():
                for n, p in trainer.wrapper.named_parameters():
                    p.copy_(keep[n])
            trainer.optimizer.zero_grad(set_to_none=True)
            # `steps` updates of DeePMD-kit's own loop (its sampler continues after the frame above)
            trainer.num_steps = case["steps"]
            trainer.run()
            save("final.dp", model.serialize())
            sequence = []
            for line in Path("Sample_rank_0.txt").read_text().splitlines():
                head, frames = line.split("frame")
                sequence.append([int(head.split("system")[1]), int(frames.strip(" []"))])
            for junk in ("Sample_rank_0.txt", "lcurve.out", "checkpoint", "input_v2_compat.json",
                         "out.json") + tuple(str(p) for p in Path(".").glob("model.ckpt*")):
                Path(junk).unlink(missing_ok=True)
            info = {"input": case_input(case, None), "grad_frame": frame, "loss": float(loss.item()),
                    "start_lr": lr0, "steps": case["steps"], "sequence": sequence,
                    "deepmd_kit": deepmd.__version__, "torch": torch.__version__}
            Path("case.json").write_text(json.dumps(info, indent=1) + "\n")
            print(f"{name}: loss {info['loss']:.6e} on system {frame[0]} frame {frame[1]}; "
                  f"{len(sequence)} steps -> {out}")
        finally:
            os.chdir(cwd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
