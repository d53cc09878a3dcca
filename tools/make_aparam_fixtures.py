"""Write tests/data/aparam/: small se_e2_a models with atomic parameters (DeePMD-kit's fitting
`numb_aparam`), built by DeePMD-kit itself, and DeePMD-kit's own energies and atomic energies of
them, for the aparam tests (the test suite imports no DeePMD-kit).

DeePMD-kit's NumPy backend (deepmd.dpmodel) builds the models (`get_model`, random weights from
the seeds of make_fparam_fixtures.model_input, shifted by `K0`; aparam_avg / aparam_inv_std,
fparam_avg / fparam_inv_std, davg / dstd and the energy bias set away from their defaults),
evaluates them (`EnergyModel.call` with each frame's per-atom aparam, shape (NF, N, nap), and
fparam where the model has it; that backend has no forces) and writes them (`save_dp_model`).
It needs DeePMD-kit's Python sources only (see tools/make_json_fixtures.py):

    PYTHONPATH=DEEPMD_SRC python tools/make_aparam_fixtures.py [--version V] [--out DIR]

Files: aparam.dp (numb_aparam 2), fparam_aparam.dp (numb_fparam 1 and numb_aparam 2: the
fitting's input is [descriptor, fparam, aparam]), and reference.npz: coord (NF, N, 3),
box (NF, 3, 3), atype (N,), and per model NAME_aparam (NF, N, nap) (a different value per atom),
NAME_fparam (NF, nfp) where the model has fparam, NAME_energy (NF,), NAME_atom_energy (NF, N);
aparam_uniform_aparam (NF, nap) is one vector per frame given to every atom of aparam.dp (the
LAMMPS `pair_style deepmd ... aparam V` case) and aparam_uniform_energy /
aparam_uniform_atom_energy are aparam.dp's with it; "meta" is the JSON of the versions.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from make_activation_fixtures import randomize_statistics as randomize_descriptor_and_bias
from make_fparam_fixtures import L, N, NF, TYPES, model_input
from make_fparam_fixtures import randomize_statistics as randomize_with_fparam

MODELS = {"aparam": {"numb_aparam": 2},
          "fparam_aparam": {"numb_fparam": 1, "numb_aparam": 2}}
K0 = 2   # model_input's index offset: seeds apart from the fparam fixtures', type_one_side alternates


def randomize_statistics(model, rng) -> None:
    """davg/dstd and the energy bias, the fparam statistics where the model has fparam
    (make_fparam_fixtures' draw) and the aparam statistics away from their defaults."""
    fit = model.atomic_model.fitting_net
    if fit.numb_fparam > 0:
        randomize_with_fparam(model, rng)
    else:   # keep fparam_avg None: no empty arrays in the .dp file
        randomize_descriptor_and_bias(model, rng)
    nap = fit.numb_aparam
    fit.aparam_avg = rng.normal(0.5, 1.0, nap)
    fit.aparam_inv_std = rng.uniform(0.5, 2.0, nap)


def energies(model, coord, at, box, fparam, aparam) -> tuple[np.ndarray, np.ndarray]:
    out = model.call(coord.reshape(NF, -1), at, box.reshape(NF, 9), fparam=fparam, aparam=aparam)
    return np.asarray(out["energy"]).reshape(NF), np.asarray(out["atom_energy"]).reshape(NF, N)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests/data/aparam")
    ap.add_argument("--version", default=None, help="DeePMD-kit's version, when not installed")
    args = ap.parse_args()
    from deepmd import __version__
    from deepmd.dpmodel.model.model import get_model
    from deepmd.dpmodel.utils.serialization import save_dp_model

    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2028)
    coord = rng.uniform(0.0, L, (NF, N, 3))
    box = np.tile(np.diag([L, L + 0.4, L - 0.3]) + [[0, 0, 0], [0.5, 0, 0], [-0.3, 0.4, 0]], (NF, 1, 1))
    ref = {"coord": coord, "box": box, "atype": TYPES}
    at = np.tile(TYPES, (NF, 1))
    for k, (name, extra) in enumerate(MODELS.items()):
        script = model_input(extra, K0 + k)
        model = get_model(json.loads(json.dumps(script)))
        randomize_statistics(model, rng)
        nfp, nap = extra.get("numb_fparam", 0), extra["numb_aparam"]
        fparam = rng.normal(0.0, 2.0, (NF, nfp)) if nfp else None
        aparam = rng.normal(0.0, 2.0, (NF, N, nap))
        ref[f"{name}_aparam"] = aparam
        if fparam is not None:
            ref[f"{name}_fparam"] = fparam
        ref[f"{name}_energy"], ref[f"{name}_atom_energy"] = energies(model, coord, at, box, fparam, aparam)
        if name == "aparam":
            uniform = rng.normal(0.0, 2.0, (NF, nap))
            ref["aparam_uniform_aparam"] = uniform
            ref["aparam_uniform_energy"], ref["aparam_uniform_atom_energy"] = energies(
                model, coord, at, box, None, np.repeat(uniform[:, None, :], N, axis=1))
        save_dp_model(str(args.out / f"{name}.dp"), {"model": model.serialize(), "model_def_script": script})
    meta = {"deepmd-kit": args.version or __version__, "models": list(MODELS)}
    np.savez_compressed(args.out / "reference.npz", meta=json.dumps(meta), **ref)


if __name__ == "__main__":
    main()
