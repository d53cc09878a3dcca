"""The se_e2_a energy models a DeePMD-kit 3.2 user trains, in the files DeePMD-kit writes (.pth
frozen TorchScript, .pt checkpoint, .dp from `dp convert-backend`, .pb from the same with
TensorFlow 2.21), read by numdp and evaluated against DeePMD-kit's own evaluation of the .pth.

Fixtures in tests/data/dp32_models, written by tools/make_dp32_model_fixtures.py (its docstring
lists the cases: frame and atomic parameters, default_fparam, float32 fitting or descriptor,
every activation, two-sided embedding with exclusions, widths without residuals, atom_ener /
rcond / trainable lists, set_davg_zero, a type absent from the data, model-level exclusions).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import numdp
from numdp.errors import InputError
from numdp.io.model_file import read_model
from test_model_file import assert_params_equal
from tests_util import U32, U64, order_bound

DATA = Path(__file__).resolve().parent / "data" / "dp32_models"
REF = np.load(DATA / "reference.npz")
META = json.loads(str(REF["meta"]))
NF = REF["coord"].shape[0]
OUTPUTS = ("energy", "force", "virial", "atom_energy", "atom_virial")
# numdp does not run these (one line naming the file and the key); DeePMD-kit 3.2's PyTorch
# backend runs the first two and fails on its own atom_ener model
REFUSED = {"env_protection": r"env_protection != 0 is not supported",
           "aparam_mask": r"atomic parameters used as a mask \(use_aparam_as_mask\) are not supported",
           "atom_ener": r"fitting atom_ener \[1\.5, None\] is not supported"}
STATS = ("fparam_avg", "fparam_inv_std", "default_fparam", "aparam_avg", "aparam_inv_std")
FILES = [(case, suffix) for case, kept in META["files"].items() for suffix in kept]


def _float32(case: str) -> bool:
    """True when DeePMD-kit evaluates part of the model in float32."""
    change = META["cases"][case]
    return any(change.get(part, {}).get("precision") == "float32" for part in ("descriptor", "fitting_net"))


def _inputs(model, f: int) -> dict:
    """The frame and atomic parameters DeePMD-kit was given for frame f (those the model takes)."""
    out = {}
    if model.numb_fparam:
        out["fparam"] = REF["fparam"][f][: model.numb_fparam]
    if model.numb_aparam:
        out["aparam"] = REF["aparam"][f]
    return out


@pytest.mark.parametrize("case,suffix", [cs for cs in FILES if cs[0] not in REFUSED])
def test_matches_deepmd_kit(case, suffix):
    """Energy, forces, virial, atomic energies and atomic virials of two periodic frames equal
    DeePMD-kit's to round-off: relative to each output's largest entry, order_bound(u, n) for
    sums of n = neighbour slots + descriptor width + atoms terms in another order, u float64's
    round-off, or float32's where DeePMD-kit evaluates part of the model in float32."""
    model = numdp.load_model(DATA / f"{case}{suffix}", nthreads=1)
    d = model.params.descriptor
    u = U32 if _float32(case) else U64
    tol = order_bound(u, d.nnei + d.dim_out + len(REF["atype"]))
    for f in range(NF):
        out = model.evaluate(REF["coord"][f], REF["atype"], REF["box"][f], **_inputs(model, f))
        got = (out.energy, out.forces, out.virial, out.atom_energies, out.atom_virials)
        for value, key in zip(got, OUTPUTS):
            want = REF[f"{case}_{key}"][f]
            err = np.abs(np.asarray(value) - want).max() / np.abs(want).max()
            assert err <= tol, (case, suffix, f, key, err, tol)


@pytest.mark.parametrize("case", sorted({c for c, _ in FILES if c not in REFUSED}))
def test_every_file_of_a_model_reads_the_same(case):
    """Each file DeePMD-kit wrote of one model reads into the same parameters, bit for bit
    (frame and atomic parameter statistics and default_fparam included)."""
    suffixes = META["files"][case]
    ref = read_model(DATA / f"{case}{suffixes[0]}")
    for suffix in suffixes[1:]:
        params = read_model(DATA / f"{case}{suffix}")
        params.info = ref.info   # only the provenance differs
        assert_params_equal(params, ref)
        for key in STATS:
            a, b = getattr(params.fitting, key), getattr(ref.fitting, key)
            assert (a is None and b is None) or np.array_equal(a, b), (suffix, key, a, b)


@pytest.mark.parametrize("case,suffix", [cs for cs in FILES if cs[0] in REFUSED])
def test_refused_in_one_line(case, suffix):
    """What numdp does not run: one line naming the file and the key."""
    path = DATA / f"{case}{suffix}"
    with pytest.raises(InputError, match=REFUSED[case]) as ei:
        read_model(path)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(str(path)), msg


def test_graph_with_atomic_parameters_as_a_mask(tmp_path):
    """A TensorFlow graph whose atomic parameters are a mask (use_aparam_as_mask) holds no
    statistics for them: refused for the mask, as from the other files, not as a damaged graph.
    Made from aparam.pb by editing its training script and dropping its aparam statistics."""
    from numdp.io.pb_read import Graph
    from test_pb_models import _const_node, _edit, _string_tensor

    data = (DATA / "aparam.pb").read_bytes()
    script = json.loads(Graph(data).array("train_attr/training_script")[0].decode())
    script["model"]["fitting_net"]["use_aparam_as_mask"] = True
    path = tmp_path / "mask.pb"
    dropped = lambda n: n.startswith("fitting_attr/t_aparam") or n == "train_attr/training_script"  # noqa: E731
    path.write_bytes(_edit(data, drop=dropped,
                           add=_const_node("train_attr/training_script", _string_tensor(json.dumps(script)))))
    with pytest.raises(InputError, match=REFUSED["aparam_mask"]) as ei:
        read_model(path)
    assert str(ei.value).startswith(str(path))
