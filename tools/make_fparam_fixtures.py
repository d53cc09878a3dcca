"""Write tests/data/fparam/: small se_e2_a models with frame parameters (DeePMD-kit's fitting
`numb_fparam`), built by DeePMD-kit itself, and DeePMD-kit's own energies and atomic energies of
them, for tests/test_fparam.py (the test suite imports no DeePMD-kit).

DeePMD-kit's NumPy backend (deepmd.dpmodel) builds the models (`get_model`, random weights from
the seeds below; fparam_avg / fparam_inv_std, davg / dstd and the energy bias set away from their
defaults), evaluates them (`EnergyModel.call` with each frame's fparam; that backend has no
forces) and writes them (`save_dp_model`).  It needs DeePMD-kit's Python sources only (see
tools/make_json_fixtures.py):

    PYTHONPATH=DEEPMD_SRC python tools/make_fparam_fixtures.py [--version V] [--out DIR]

Files: fparam.dp (numb_fparam 2), fparam_default.dp (numb_fparam 3 with default_fparam), and
reference.npz: coord (NF, N, 3), box (NF, 3, 3), atype (N,), and per model NAME_fparam
(NF, nfp), NAME_energy (NF,), NAME_atom_energy (NF, N); default_energy / default_atom_energy
are fparam_default.dp's without fparam (its default); "meta" is the JSON of the versions.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from make_activation_fixtures import randomize_statistics as randomize_descriptor_and_bias

NF, N, L = 3, 12, 6.0
TYPES = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1])
MODELS = {"fparam": {"numb_fparam": 2},
          "fparam_default": {"numb_fparam": 3, "default_fparam": [0.7, -1.2, 3.0]}}


def model_input(extra: dict, k: int) -> dict:
    return {"type_map": ["O", "H"],
            "descriptor": {"type": "se_e2_a", "sel": [8, 16], "rcut": 4.0, "rcut_smth": 1.0,
                           "neuron": [4, 8, 16], "axis_neuron": 3, "resnet_dt": True,
                           "type_one_side": bool(k % 2), "seed": 30 + k},
            "fitting_net": {"neuron": [10, 10], "resnet_dt": True, "seed": 40 + k, **extra}}


def randomize_statistics(model, rng) -> None:
    """davg/dstd and the energy bias (make_activation_fixtures' draw) and the fparam statistics
    away from their defaults."""
    randomize_descriptor_and_bias(model, rng)
    fit = model.atomic_model.fitting_net
    nfp = fit.numb_fparam
    fit.fparam_avg = rng.normal(0.5, 1.0, nfp)
    fit.fparam_inv_std = rng.uniform(0.5, 2.0, nfp)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests/data/fparam")
    ap.add_argument("--version", default=None, help="DeePMD-kit's version, when not installed")
    args = ap.parse_args()
    from deepmd import __version__
    from deepmd.dpmodel.model.model import get_model
    from deepmd.dpmodel.utils.serialization import save_dp_model

    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2027)
    coord = rng.uniform(0.0, L, (NF, N, 3))
    box = np.tile(np.diag([L, L + 0.4, L - 0.3]) + [[0, 0, 0], [0.5, 0, 0], [-0.3, 0.4, 0]], (NF, 1, 1))
    ref = {"coord": coord, "box": box, "atype": TYPES}
    at = np.tile(TYPES, (NF, 1))
    for k, (name, extra) in enumerate(MODELS.items()):
        script = model_input(extra, k)
        model = get_model(json.loads(json.dumps(script)))
        randomize_statistics(model, rng)
        fparam = rng.normal(0.0, 2.0, (NF, extra["numb_fparam"]))
        out = model.call(coord.reshape(NF, -1), at, box.reshape(NF, 9), fparam=fparam)
        ref.update({f"{name}_fparam": fparam, f"{name}_energy": np.asarray(out["energy"]).reshape(NF),
                    f"{name}_atom_energy": np.asarray(out["atom_energy"]).reshape(NF, N)})
        if "default_fparam" in extra:
            out = model.call(coord.reshape(NF, -1), at, box.reshape(NF, 9))
            ref.update({"default_energy": np.asarray(out["energy"]).reshape(NF),
                        "default_atom_energy": np.asarray(out["atom_energy"]).reshape(NF, N)})
        save_dp_model(str(args.out / f"{name}.dp"), {"model": model.serialize(), "model_def_script": script})
    meta = {"deepmd-kit": args.version or __version__, "models": list(MODELS)}
    np.savez_compressed(args.out / "reference.npz", meta=json.dumps(meta), **ref)


if __name__ == "__main__":
    main()
