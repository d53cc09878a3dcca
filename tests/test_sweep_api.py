"""Sweep of numdp.infer.DeepPot and numdp.calculator.DP against DeePMD-kit 3.2's Python API:
the calls a DeePMD-kit script makes that numdp refused or answered differently.

DeePMD-kit's answers are in tests/data/api/dp_reference.npz (tools/make_api_fixtures.py, PyTorch
backend on the same models converted to .pth).
"""
import json
from pathlib import Path

import numpy as np
import pytest

from numdp.errors import InputError
from numdp.infer import DeepPot, calc_model_devi

DATA = Path(__file__).parent / "data"
REF = np.load(DATA / "api" / "dp_reference.npz")
META = json.loads(str(REF["meta"]))
MODELS = {"fparam_aparam": DATA / "aparam" / "fparam_aparam.dp", "fparam": DATA / "fparam" / "fparam.dp"}

# DeePMD-kit and numdp both evaluate in float64 with different summation orders; on these
# 12-atom frames (at most ~10^2 terms per sum, O(1) condition) the relative difference is a few
# hundred units of round-off (2.2e-16): 1e-10 is the project's oracle bound (tests/test_oracle.py).
TOL = 1e-10


def rel_err(a, b):
    return np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max()


@pytest.fixture(scope="module")
def pots():
    return {name: DeepPot(path, threads=1) for name, path in MODELS.items()}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_getters_deepmd_kit_has(pots, name):
    """get_model_size (was NotImplementedError), has_chg_spin_ebd, has_default_chg_spin and
    use_spin (were AttributeError) answer as DeePMD-kit 3.2 for the same model."""
    dp, ref = pots[name], META["getters"][name]
    assert dp.get_model_size() == ref["get_model_size"]
    assert dp.has_chg_spin_ebd() is ref["has_chg_spin_ebd"] is False
    assert dp.has_default_chg_spin() is ref["has_default_chg_spin"] is False
    assert dp.use_spin == ref["use_spin"] == []


def test_model_size_is_the_architecture_count(pots):
    """The count follows from the model definition alone: embedding nets 1 -> n1 -> n2 ..., fitting
    nets (descriptor + fparam + aparam inputs) -> ... -> 1, each layer a -> b with a*b weights, b
    biases, and with resnet_dt b timesteps where it has a shortcut (b == a or b == 2a, DeePMD-kit's
    rule) -- independent of the parameter arrays read."""
    dp = pots["fparam_aparam"]
    script = dp.get_model_def_script()
    desc, fit = script["descriptor"], script["fitting_net"]
    ntypes = len(script["type_map"])

    def size(widths, resnet_dt):
        pairs = list(zip(widths, widths[1:]))
        return sum(a * b + b + (b if resnet_dt and b in (a, 2 * a) else 0) for a, b in pairs)

    per_net = size([1] + list(desc["neuron"]), desc["resnet_dt"])
    nets = ntypes if desc["type_one_side"] else ntypes * ntypes
    m_axis = desc["neuron"][-1] * desc["axis_neuron"]
    fw = [m_axis + dp.get_dim_fparam() + dp.get_dim_aparam()] + list(fit["neuron"]) + [1]
    per_fit = size(fw, fit["resnet_dt"])
    assert dp.get_model_size() == {"descriptor": nets * per_net, "fitting-net": ntypes * per_fit,
                                   "total": nets * per_net + ntypes * per_fit}


def test_virtual_atoms_as_deepmd_kit(pots):
    """Type -1 (DeePMD-kit's virtual atom, the padding of mixed-type data) was refused; it is
    evaluated as absent, with zero force, atomic energy and atomic virial, as DeePMD-kit does
    (its aparam rows are dropped with it)."""
    dp = pots["fparam_aparam"]
    out = dp.eval(REF["coord"], REF["box"], REF["virtual_atype"], atomic=True, fparam=REF["fparam"],
                  aparam=REF["aparam"], mixed_type=True)
    names = ["energy", "force", "virial", "atom_energy", "atom_virial"]
    for got, name in zip(out, names):
        want = REF[f"virtual_{name}"]
        assert got.shape == want.shape and got.dtype == np.float64
        assert rel_err(got, want) <= TOL, name
    virtual = REF["virtual_atype"] < 0
    assert not out[1][virtual].any() and not out[3][virtual].any() and not out[4][virtual].any()
    # frame 1 is the same as evaluating its real atoms alone, bit for bit
    keep = ~virtual[1]
    r = dp.model.evaluate(REF["coord"][1][keep], REF["virtual_atype"][1][keep], REF["box"][1],
                          fparam=REF["fparam"][1], aparam=REF["aparam"][1][keep])
    assert out[0][1, 0] == r.energy and np.array_equal(out[1][1][keep], r.forces)


def test_virtual_atoms_refused_where_undefined(pots):
    """eval_descriptor (DeePMD-kit returns rows of no meaning for virtual atoms) and
    calc_model_devi keep refusing type -1, naming it."""
    dp = pots["fparam_aparam"]
    with pytest.raises(InputError, match=r"type -1, DeePMD-kit's virtual atom, is taken by DeepPot.eval only"):
        dp.eval_descriptor(REF["coord"], REF["box"], REF["virtual_atype"], mixed_type=True)
    with pytest.raises(InputError, match=r"calc_model_devi: atom_types: frame 0, atom 2 has type -1"):
        calc_model_devi(REF["coord"], REF["box"], REF["virtual_atype"], [dp], mixed_type=True,
                        fparam=REF["fparam"], aparam=REF["aparam"])
    with pytest.raises(InputError, match=r"atom 2 has type -2, outside 0..1"):
        dp.eval(REF["coord"], REF["box"], np.where(np.arange(12) == 2, -2, REF["atype"]))


def test_frames_of_zero_atoms(pots):
    """Frames without atoms were refused ("atom_types is empty"); DeePMD-kit answers energy 0
    and virial 0 with (nframes, 0, 3) forces."""
    dp = pots["fparam"]
    out = dp.eval(np.zeros((2, 0)), REF["box"], [], atomic=True, fparam=REF["zero_fparam"])
    assert [o.shape for o in out] == [(2, 1), (2, 0, 3), (2, 9), (2, 0, 1), (2, 0, 9)]
    assert np.array_equal(out[0], REF["zero_energy"]) and np.array_equal(out[2], REF["zero_virial"])
    assert dp.eval_descriptor(np.zeros((1, 0)), None, []).shape[:2] == (1, 0)


def test_flat_multi_frame_cells(pots):
    """cells flattened over frames, (nframes * 9,), which DeePMD-kit reshapes, was refused; the
    frame count comes from coords, so it is unambiguous: same numbers as (nframes, 9)."""
    dp = pots["fparam"]
    c, b, t = REF["coord"], REF["box"], REF["atype"]
    ref = dp.eval(c, b.reshape(2, 9), t, fparam=REF["zero_fparam"])
    out = dp.eval(c, b.ravel(), t, fparam=REF["zero_fparam"])
    assert all(np.array_equal(a, r) for a, r in zip(out, ref))
    with pytest.raises(InputError, match=r"cells has shape \(9,\); expected \(2, 9\), \(2, 3, 3\) or \(18,\)"):
        dp.eval(c, b[0].ravel(), t, fparam=REF["zero_fparam"])


def test_flat_multi_frame_coords_message_says_how(pots):
    """numdp keeps refusing coords flattened over frames (a wrong atom_types would split it into
    other frames silently), and the message now gives the reshape DeePMD-kit did implicitly."""
    dp = pots["fparam"]
    with pytest.raises(InputError, match=r"for 2 frames pass coords.reshape\(2, 36\)"):
        dp.eval(REF["coord"].ravel(), REF["box"], REF["atype"], fparam=REF["zero_fparam"])


def test_dp_calculator_name():
    """ASE's calc.name (written by ase.io to trajectories, used in messages) is DeePMD-kit's "DP",
    not ASE's default, the lower-case class name "dp"."""
    pytest.importorskip("ase")
    from numdp.calculator import DP

    assert DP(MODELS["fparam"]).name == "DP"
