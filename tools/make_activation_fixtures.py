"""Write tests/data/activations/: small se_e2_a models built by DeePMD-kit itself with each of its
activation functions, saved as DeePMD-kit `.dp` files, and DeePMD-kit's own energies and atomic
energies of them on a few configurations, for tests/test_activations.py (the test suite imports no
DeePMD-kit).

DeePMD-kit's NumPy backend (deepmd.dpmodel) builds the models (`get_model`, random weights from
the seeds below), evaluates them (`EnergyModel.call`: energies, atomic energies; that backend has
no forces, so the tests take forces from finite differences) and writes them (`save_dp_model`).
It needs DeePMD-kit's Python sources only (a source tree: see tools/make_json_fixtures.py for the
packages and the two files a tree without a build needs):

    PYTHONPATH=DEEPMD_SRC python tools/make_activation_fixtures.py [--version V] [--out DIR]

Files: NAME.dp per activation of `ACTIVATIONS` (DeePMD-kit's name), and reference.npz holding,
per NAME, NAME_coord (NF, N, 3), NAME_box (NF, 3, 3), NAME_atype (N,), NAME_energy (NF,) and
NAME_atom_energy (NF, N); "meta" is the JSON of the versions and the model settings.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ACTIVATIONS = ["tanh", "gelu", "gelu_tf", "relu", "relu6", "softplus", "sigmoid", "silu", "linear"]
NF, N, L = 2, 12, 6.0
TYPES = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1])


def model_input(act: str, k: int) -> dict:
    """The model section: one-sided and two-sided layouts alternate; residual doublings in the
    embedding (4 -> 8 -> 16), same-width residuals with timestep in the fitting."""
    return {"type_map": ["O", "H"],
            "descriptor": {"type": "se_e2_a", "sel": [8, 16], "rcut": 4.0, "rcut_smth": 1.0,
                           "neuron": [4, 8, 16], "axis_neuron": 3, "resnet_dt": True,
                           "type_one_side": bool(k % 2), "activation_function": act, "seed": 10 + k},
            "fitting_net": {"neuron": [10, 10], "resnet_dt": True, "activation_function": act,
                            "seed": 20 + k}}


def randomize_statistics(model, rng) -> None:
    """davg/dstd and the energy bias away from their 0/1/0 defaults, so the tests see them used."""
    d = model.get_descriptor()
    nt, nnei, _ = np.shape(d.davg)
    block = np.repeat(np.arange(nt), d.get_sel())          # the neighbour type of each slot
    avg = np.zeros((nt, nt, 4))
    avg[..., 0] = rng.normal(0.0, 0.05, (nt, nt))            # shaped as real statistics: per slot
    std = np.repeat(rng.uniform(0.5, 1.5, (nt, nt, 2)), [1, 3], axis=2)   # block, radial / xyz
    d.set_stat_mean_and_stddev(avg[:, block], std[:, block])
    am = model.atomic_model
    am.set_out_bias(rng.normal(0.0, 1.0, np.shape(am.out_bias)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests/data/activations")
    ap.add_argument("--version", default=None, help="DeePMD-kit's version, when not installed")
    args = ap.parse_args()
    from deepmd import __version__
    from deepmd.dpmodel.model.model import get_model
    from deepmd.dpmodel.utils.serialization import save_dp_model

    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2026)
    ref = {}
    for k, act in enumerate(ACTIVATIONS):
        script = model_input(act, k)
        model = get_model(json.loads(json.dumps(script)))
        randomize_statistics(model, rng)
        coord = rng.uniform(0.0, L, (NF, N, 3))
        box = np.tile(np.diag([L, L + 0.4, L - 0.3]) + [[0, 0, 0], [0.5, 0, 0], [-0.3, 0.4, 0]], (NF, 1, 1))
        out = model.call(coord.reshape(NF, -1), np.tile(TYPES, (NF, 1)), box.reshape(NF, 9))
        ref.update({f"{act}_coord": coord, f"{act}_box": box, f"{act}_atype": TYPES,
                    f"{act}_energy": np.asarray(out["energy"]).reshape(NF),
                    f"{act}_atom_energy": np.asarray(out["atom_energy"]).reshape(NF, N)})
        save_dp_model(str(args.out / f"{act}.dp"), {"model": model.serialize(), "model_def_script": script})
    meta = {"deepmd-kit": args.version or __version__, "activations": ACTIVATIONS}
    np.savez_compressed(args.out / "reference.npz", meta=json.dumps(meta), **ref)


if __name__ == "__main__":
    main()
