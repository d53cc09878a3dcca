"""Write tests/data/deepmd_kit_loss/ener_loss.npz: DeePMD-kit 3.2's own energy loss
(`deepmd.pt.loss.ener.EnergyStdLoss`) and its derivatives with respect to the predictions, by
PyTorch's autograd, on small random batches, for tests/test_train_loss_options.py to check
numdp.train.loss against (the test suite imports neither torch nor deepmd).

Needs DeePMD-kit's PyTorch backend (not a numdp dependency; see
tools/deepmd_kit_training_oracle.py for the virtualenv):

    /tmp/dpk/bin/python tools/make_loss_fixture.py [--out tests/data/deepmd_kit_loss/ener_loss.npz]

Each case (`CASES`: [loss] keys, which labels the system has) is one batch of NF frames of N
atoms: predictions (energy = Σ atomic energies, forces, virial) and labels drawn at random,
the loss evaluated as DeePMD-kit's trainer calls it (atom types given, so its per-frame masked
reductions run) at learning rate LR with start_lr LR0.  Stored per case k, prefix "k_":
pred_e (NF,), pred_ae (NF, N), pred_f (NF, N, 3), pred_v (NF, 3, 3); label_* likewise, with
label_pref and label_coeff (NF, N); has_* (which label files the system has); loss; grad_e,
grad_ae, grad_f, grad_v (∂L/∂ of each prediction); shown_<key> (DeePMD-kit's display values:
rmse, rmse_e, rmse_f, rmse_v, rmse_ae, rmse_pf where it shows them; with loss_func "mae"
mae_e, mae_f, mae_v, mae_ae, mae_pf).  "cases" holds the JSON
of CASES and the versions.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

NF, N = 2, 5
LR, LR0 = 3e-4, 1e-3

BASE = {"start_pref_e": 0.5, "limit_pref_e": 2.0, "start_pref_f": 30.0, "limit_pref_f": 1.0,
        "start_pref_v": 0.0, "limit_pref_v": 0.0}
ALL = ("energy", "force", "virial", "atom_ener", "atom_pref", "atom_ener_coeff")
CASES = [
    # (name, loss keys over BASE, label files present)
    ("plain", {"start_pref_v": 0.2, "limit_pref_v": 0.7}, ALL),
    ("ae_pf", {"start_pref_ae": 3.0, "limit_pref_ae": 0.5, "start_pref_pf": 4.0, "limit_pref_pf": 1.5}, ALL),
    ("pf_only", {"start_pref_f": 0.0, "start_pref_pf": 4.0, "limit_pref_pf": 1.5}, ALL),
    ("relative_f_pf", {"relative_f": 0.3, "start_pref_pf": 4.0, "limit_pref_pf": 1.5}, ALL),
    ("coeff_intensive", {"enable_atom_ener_coeff": True, "intensive_ener_virial": True,
                         "start_pref_v": 0.2, "limit_pref_v": 0.7}, ALL),
    ("huber", {"use_huber": True, "huber_delta": [0.05, 0.4, 0.02], "start_pref_v": 0.2,
               "limit_pref_v": 0.7, "start_pref_ae": 3.0, "limit_pref_ae": 0.5}, ALL),
    ("huber_norm", {"use_huber": True, "f_use_norm": True, "huber_delta": 0.6}, ALL),
    ("missing_ae_pref", {"start_pref_ae": 3.0, "limit_pref_ae": 0.5, "start_pref_pf": 4.0,
                         "limit_pref_pf": 1.5}, ("energy", "force")),
    ("default_pf", {"start_pref_pf": 4.0, "limit_pref_pf": 1.5, "use_default_pf": True}, ("energy", "force")),
    ("mae", {"loss_func": "mae", "start_pref_v": 0.2, "limit_pref_v": 0.7, "start_pref_ae": 3.0,
             "limit_pref_ae": 0.5}, ALL),
    ("mae_relative_pf_coeff", {"loss_func": "mae", "relative_f": 0.3, "start_pref_pf": 4.0, "limit_pref_pf": 1.5,
                               "enable_atom_ener_coeff": True, "intensive_ener_virial": True,
                               "start_pref_v": 0.2, "limit_pref_v": 0.7}, ALL),
    ("mae_norm_pf", {"loss_func": "mae", "f_use_norm": True, "start_pref_pf": 4.0, "limit_pref_pf": 1.5}, ALL),
    ("mae_missing_ae_pref", {"loss_func": "mae", "start_pref_ae": 3.0, "limit_pref_ae": 0.5,
                             "start_pref_pf": 4.0, "limit_pref_pf": 1.5}, ("energy", "force")),
]


def one_case(keys: dict, present, rng) -> dict:
    import torch

    from deepmd.pt.loss.ener import EnergyStdLoss

    ae = rng.normal(-1.0, 0.3, (NF, N))
    pred = {"energy": ae.sum(axis=1), "atom_energy": ae, "force": rng.normal(0, 1, (NF, N, 3)),
            "virial": rng.normal(0, 2, (NF, 3, 3))}
    lab = {"energy": pred["energy"] + rng.normal(0, 0.4, NF),
           "atom_ener": ae + rng.normal(0, 0.2, (NF, N)),
           "force": pred["force"] + rng.normal(0, 0.7, (NF, N, 3)),
           "virial": pred["virial"] + rng.normal(0, 1.0, (NF, 3, 3)),
           "atom_pref": rng.uniform(0.2, 3.0, (NF, N)),
           "atom_ener_coeff": rng.choice([-1.0, 0.5, 1.0, 2.0], (NF, N))}
    tpred = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in pred.items()}

    class Model(torch.nn.Module):
        def forward(self, **kw):
            return {"energy": tpred["energy"].reshape(NF, 1),
                    "atom_energy": tpred["atom_energy"].reshape(NF, N, 1),
                    "force": tpred["force"], "virial": tpred["virial"].reshape(NF, 9)}

    shape = {"energy": (NF, 1), "force": (NF, N, 3), "virial": (NF, 9), "atom_ener": (NF, N),
             "atom_pref": (NF, N), "atom_ener_coeff": (NF, N)}
    label = {}
    for k, v in lab.items():
        if k not in present and k in ("atom_pref", "atom_ener_coeff"):
            v = np.ones_like(v)   # DeePMD-kit's default of a missing file
        v = v.reshape(shape[k])
        if k == "atom_pref":
            v = np.repeat(v, 3, axis=1)   # DeePMD-kit's repeat=3
        label[k] = torch.tensor(v, dtype=torch.float64)
        label[f"find_{k}"] = 1.0 if k in present else 0.0
    loss_fn = EnergyStdLoss(starter_learning_rate=LR0, **{**BASE, **keys})
    inputs = {"atype": torch.zeros((NF, N), dtype=torch.long), "coord": torch.zeros((NF, N, 3))}
    _, loss, more = loss_fn(inputs, Model(), label, N, LR)
    loss.backward()
    out = {"loss": np.array(float(loss.detach()))}
    for k, v in pred.items():
        out[f"pred_{k}"] = v
        g = tpred[k].grad
        out[f"grad_{k}"] = np.zeros_like(v) if g is None else g.numpy().reshape(v.shape)
    for k, v in lab.items():
        out[f"label_{k}"] = v
        out[f"has_{k}"] = np.array(k in present)
    for k, v in more.items():
        if k.startswith(("rmse", "mae")):
            out[f"shown_{k}"] = np.array(float(v))
    return out


def main() -> None:
    import deepmd
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tests/data/deepmd_kit_loss/ener_loss.npz")
    args = ap.parse_args()
    rng = np.random.default_rng(2024)
    arrays = {}
    for k, (_, keys, present) in enumerate(CASES):
        for name, v in one_case(keys, present, rng).items():
            arrays[f"{k}_{name}"] = v
    meta = {"cases": [{"name": n, "loss": {**BASE, **keys}, "present": list(p)} for n, keys, p in CASES],
            "nframes": NF, "natoms": N, "lr": LR, "start_lr": LR0,
            "deepmd_kit": deepmd.__version__, "torch": torch.__version__}
    arrays["cases"] = np.array(json.dumps(meta))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out}: {len(CASES)} cases, DeePMD-kit {deepmd.__version__}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
