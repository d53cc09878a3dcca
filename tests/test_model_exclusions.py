"""DeePMD-kit's model-level `pair_exclude_types` and `atom_exclude_types` on every path of numdp.

The references are tests/data/pytorch/se_a_pair_excl_f64.* and se_a_atom_excl_f64.*
(tools/make_pth_fixtures.py): se_e2_a water models trained 2 steps by DeePMD-kit 3.2, one with
pair_exclude_types [[0, 1]] (O and H are not neighbours of each other: DeePMD-kit sets their
neighbour-list entries to -1 before the descriptor, so every slot of the block is padding),
one with atom_exclude_types [1] (two-sided embedding; the H atoms' energies, bias included,
are multiplied by 0), their .pt/.pth/.dp and DeePMD-kit's evaluation of a 192-atom water frame
(and, for the pair case, of an open O-H dimer).  Loading and the CPU evaluation of the three
files against DeePMD-kit are in tests/test_pth_models.py (both cases are in its CASES).
"""
import copy
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

import numdp
from numdp.cli import main as cli_main
from numdp.errors import InputError
from numdp.infer import DeepPot
from numdp.io.model_file import read_model, write_model
from numdp.model.compress import compress
from numdp.model.dp_model import DPModel, evaluate_ensemble
from numdp.model.evaluator import Evaluator
from numdp.kernels.math import SLOTS_PADDING, SLOTS_ZERO
from randmodel import random_config, random_params
from test_exclude_types import assert_device_equals_cpu, cuda_case
from test_model_file import assert_params_equal
from test_pth_models import TOL, rel_err
from tests_util import U32, assert_finite_differences, order_bound

DATA = Path(__file__).resolve().parent / "data" / "pytorch"
PAIR, ATOM = "se_a_pair_excl_f64", "se_a_atom_excl_f64"


@pytest.fixture(scope="module")
def models():
    return {case: (read_model(DATA / f"{case}.dp"), np.load(DATA / f"{case}.npz")) for case in (PAIR, ATOM)}


def _without(params):
    p = copy.deepcopy(params)
    p.pair_exclude_types, p.atom_exclude_types = [], []
    return p


def _evaluate(params, ref, **kw):
    return DPModel(params, nthreads=1, **kw).evaluate(ref["coord"], ref["atype"], ref["box"])


# ---------------------------------------------------------------- the models


@pytest.mark.parametrize("case", [PAIR, ATOM])
def test_the_exclusions_matter(models, case):
    """Without its exclusions the same networks give another result, by far more than TOL, so the
    agreement with DeePMD-kit (tests/test_pth_models.py) tests them; the excluded atoms' energies
    are exactly zero, every other atom's is not."""
    params, ref = models[case]
    out, plain = _evaluate(params, ref), _evaluate(_without(params), ref)
    assert rel_err(plain.forces, out.forces) > 1e3 * TOL
    zero = np.isin(ref["atype"], params.atom_exclude_types)
    assert np.all(out.atom_energies[zero] == 0.0) and np.all(out.atom_energies[~zero] != 0.0)
    assert zero.any() == (case == ATOM)


def test_slot_modes_and_precedence():
    """ModelParams.slot_modes: model-level pairs make padding blocks, descriptor exclude_types
    zero-row blocks; a pair in both is padding (DeePMD-kit empties the list before the descriptor
    masks its rows, and the mask leaves empty slots alone)."""
    params = random_params(ntypes=3, sel=[4, 4, 4], neuron=(4,), fitting=(4,), exclude_types=[[0, 1], [2, 2]])
    params.pair_exclude_types = [[1, 0], [1, 2]]
    modes = params.slot_modes
    assert modes[0, 1] == modes[1, 0] == SLOTS_PADDING and modes[1, 2] == modes[2, 1] == SLOTS_PADDING
    assert modes[2, 2] == SLOTS_ZERO and modes[0, 0] == modes[1, 1] == modes[0, 2] == 0


def test_dimer_against_deepmd_kit_and_no_jump(models):
    """An open O-H dimer with O-H excluded at the model level, as DeePMD-kit evaluates it: at every
    distance, inside and beyond rcut, each atom sees only padding (the same atomic energies bit
    for bit, zero forces), unlike the descriptor's exclude_types whose neighbour within rcut
    leaves a zero row instead of padding (an energy jump at rcut, tests/test_exclude_types.py)."""
    params, ref = models[PAIR]
    model = DPModel(params, nthreads=1)
    got = [model.evaluate(np.array([[0.0, 0, 0], [r, 0, 0]]), np.array([0, 1]), None) for r in ref["dimer_r"]]
    ae = np.array([g.atom_energies for g in got])
    assert rel_err(ae, ref["dimer_atom_energy"]) <= TOL
    assert all(np.array_equal(x, ae[0]) for x in ae)
    assert np.array_equal(np.array([g.forces for g in got]), ref["dimer_force"])   # all zero
    assert (ref["dimer_r"] < params.descriptor.rcut).any() and (ref["dimer_r"] > params.descriptor.rcut).any()


@pytest.mark.parametrize("case", [PAIR, ATOM])
def test_round_trips_are_bit_exact(models, tmp_path, case):
    """.dp -> .h5 -> .dp keeps every field (the exclusions too) bit for bit; the .h5 is written as
    format version 3 (an older numdp refuses it instead of evaluating another model) and carries
    them as attributes; DeePMD-kit's .dp keys (model and fitting) are written as DeePMD-kit does."""
    params, _ = models[case]
    write_model(params, tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as h5:
        assert int(h5.attrs["format_version"]) == 3
        assert ("pair_exclude_types" in h5.attrs) == (case == PAIR)
        assert ("atom_exclude_types" in h5.attrs) == (case == ATOM)
    back = read_model(tmp_path / "m.h5")
    assert_params_equal(back, params)
    write_model(back, tmp_path / "m.dp")
    assert_params_equal(read_model(tmp_path / "m.dp"), params)
    with h5py.File(tmp_path / "m.dp", "r") as h5:
        ours = json.loads(h5.attrs["json"])["model"]
    with h5py.File(DATA / f"{case}.dp", "r") as h5:
        theirs = json.loads(h5.attrs["json"])["model"]
    for key in ("pair_exclude_types", "atom_exclude_types"):
        assert ours[key] == theirs[key], key
    assert ours["fitting"]["exclude_types"] == theirs["fitting"]["exclude_types"]


@pytest.mark.parametrize("edit, msg", [
    (lambda m: m.__setitem__("pair_exclude_types", [[0, 2]]), "pair_exclude_types: type index out of range 0..1"),
    (lambda m: m.__setitem__("atom_exclude_types", [2]), "atom_exclude_types: expected a list of type indices 0..1"),
    (lambda m: m["fitting"].__setitem__("exclude_types", [0]),
     r"fitting exclude_types \[0\] differ from the model's atom_exclude_types \[1\]"),
])
def test_bad_exclusions_are_one_line_errors(models, tmp_path, edit, msg):
    path = tmp_path / "m.dp"
    write_model(models[ATOM][0], path)
    with h5py.File(path, "r+") as h5:
        tree = json.loads(h5.attrs["json"])
        edit(tree["model"])
        h5.attrs["json"] = json.dumps(tree)
    with pytest.raises(InputError, match=msg) as exc:
        read_model(path)
    assert "\n" not in str(exc.value) and str(path) in str(exc.value)


def test_deeppot_sel_type_and_show(models, capsys):
    """DeePMD-kit's DeepPot.get_sel_type: the types with an atomic contribution ([0] for the H
    exclusion, as DeePMD-kit 3.2 answers for this .pth); `numdp show` names the exclusions."""
    assert DeepPot(DATA / f"{ATOM}.pth").get_sel_type() == [0]
    assert DeepPot(DATA / f"{PAIR}.pth").get_sel_type() == [0, 1]
    assert cli_main(["show", str(DATA / f"{PAIR}.dp"), "type-map"]) == 0
    assert "The model excludes pair_exclude_types [[0, 1]], atom_exclude_types []" in capsys.readouterr().out


# ---------------------------------------------------------------- CPU evaluation

H = 1e-5


def _random_excluded(type_one_side, seed=5):
    params = random_params(ntypes=3, sel=[20, 20, 20], neuron=(4, 8), axis_neuron=2, type_one_side=type_one_side,
                           fitting=(8, 8), seed=seed, exclude_types=[[2, 2]])
    params.pair_exclude_types = [[0, 1]]
    params.atom_exclude_types = [2]
    return params


@pytest.mark.parametrize("type_one_side", [True, False], ids=["one-side", "two-side"])
def test_forces_and_virial_are_derivatives(type_one_side):
    """Random 3-type models with both model-level exclusions (and a descriptor exclusion), in a
    triclinic box: forces and virial against central differences (2e-7 of the scale, as
    tests/test_exclude_types.py), the total force zero, the excluded atoms' energies zero, and
    the exclusions change every atom's force."""
    params = _random_excluded(type_one_side)
    pos, types, box = random_config(14, 3, box_len=6.5, tilt=0.4, seed=3)
    out, scale = assert_finite_differences(DPModel(params, nthreads=1), pos, types, box, H)
    assert np.all(out.atom_energies[types == 2] == 0.0) and (types == 2).any()
    plain = DPModel(_without(params), nthreads=1).evaluate(pos, types, box)
    assert np.abs(plain.forces - out.forces).max() > 1e-3 * scale


@pytest.mark.parametrize("case", [PAIR, ATOM])
def test_compressed_and_mix32(models, case):
    """Compressed (order 5, dx 0.01) against uncompressed within 1e-6 eV and eV/Å
    (tests/test_compress.py); mix32 against double within half order_bound of the longest chain
    (tests/test_exclude_types.py); both keep the exclusions."""
    params, ref = models[case]
    cparams, _ = compress(params, dx=0.01, order=5)
    assert (cparams.pair_exclude_types, cparams.atom_exclude_types) == (params.pair_exclude_types,
                                                                         params.atom_exclude_types)
    a, b = _evaluate(params, ref), _evaluate(cparams, ref)
    assert abs(b.energy - a.energy) <= 1e-6 and np.abs(b.forces - a.forces).max() <= 1e-6
    assert np.abs(b.virial - a.virial).max() <= 1e-6
    d = params.descriptor
    tol = order_bound(U32, d.nnei + d.dim_out + sum(params.fitting.nets[0].widths[1:])) / 2
    low = _evaluate(params, ref, precision="mix32")
    assert 0 < np.abs(low.forces - a.forces).max() / np.abs(a.forces).max() < tol


def test_ensembles_share_the_environment_only_with_equal_pair_exclusions(models):
    """A model-level pair exclusion changes the environment matrix (padding counts), so models
    that differ in it do not share one; atom_exclude_types does not, so they do; evaluated
    together each equals its own evaluation."""
    params, ref = models[PAIR]
    assert not Evaluator(params).shares_environment(Evaluator(_without(params)))
    atom = copy.deepcopy(params)
    atom.pair_exclude_types, atom.atom_exclude_types = [[0, 1]], [0]
    assert Evaluator(params).shares_environment(Evaluator(atom))
    models_ = [DPModel(params, nthreads=1), DPModel(atom, nthreads=1)]
    args = (ref["coord"], ref["atype"], ref["box"])
    for m, r in zip(models_, evaluate_ensemble(models_, *args)):
        assert r.energy == m.evaluate(*args, atom_virial=False).energy


# ---------------------------------------------------------------- CUDA (simulator)


@pytest.mark.parametrize("compressed", [False, True], ids=["nets", "tables"])
@pytest.mark.parametrize("form", ["thread", "team"])
def test_cuda_matches_cpu(compressed, form):
    """The device path with both model-level exclusions against the CPU's: 1e-12 as
    tests/test_cuda_model.py, uncompressed and compressed, thread and team kernels, several
    chunks; and the exclusions change the result."""
    pytest.importorskip("numba_cuda")
    params, pos, typ, box = cuda_case([], compressed, pair_exclude_types=[[1, 1]], atom_exclude_types=[0])
    rc, rg = assert_device_equals_cpu(params, pos, typ, box, form)
    r0 = DPModel(_without(params), nthreads=1).evaluate(pos, typ, box)
    assert np.all(rg.atom_energies[typ == 0] == 0.0)
    assert np.abs(r0.forces - rc.forces).max() > 1e-3 * np.abs(rc.forces).max()


def test_cuda_water_centres_against_deepmd_kit(models):
    """The atom-exclusion fixture on the CUDA path, mix32 too: the first atom (O) and the last
    two (H) as centres among all their periodic neighbours (the CPU-built list; the whole frame
    is too slow for the simulator), atomic energies against DeePMD-kit's to TOL (double; the H
    atoms' exactly 0) and within tests/test_cuda_model.py's mix32 bound."""
    pytest.importorskip("numba_cuda")
    from test_cuda_model import _mixed_tolerance

    params, ref = models[ATOM]
    cpu = DPModel(params, nthreads=1)
    typ, ext, nl = cpu._prepare(ref["coord"], ref["atype"], ref["box"])
    n = len(typ)
    centres = np.array([0, n - 2, n - 1])
    assert list(typ[centres]) == [0, 1, 1]
    pos = np.concatenate([ext.positions[centres], ext.positions])   # the centres first, as locals
    nlist = np.where(nl.nlist[centres] >= 0, nl.nlist[centres] + 3, -1).astype(np.int32)
    raw = DPModel(params, device="cuda")._ev.compute(pos, nlist, typ[centres])
    assert rel_err(raw.atom_energy, ref["atom_energy"][centres]) <= TOL and np.all(raw.atom_energy[1:] == 0.0)
    low = DPModel(params, device="cuda", precision="mix32")._ev.compute(pos, nlist, typ[centres])
    assert abs(low.atom_energy[0] - raw.atom_energy[0]) <= _mixed_tolerance(U32, cpu) * abs(raw.atom_energy[0])


# ---------------------------------------------------------------- training and bias
# (the loss, its gradient and 8 training steps against DeePMD-kit's own trainer with both
# exclusions: tests/test_train_deepmd_kit.py, case water_excl)

WATER = Path(__file__).resolve().parents[2] / "shared" / "data" / "water"


def test_statistics_equal_deepmd_kits(models):
    """env_stats with the model-level pairs as zero rows on two water frames equals DeePMD-kit's
    EnvMatStatSe given the model's pair_exclude_types (the fixture's stat_davg, stat_dstd);
    without them the statistics differ."""
    from numdp.model.params import exclusion_mask
    from numdp.train.config import BatchSize
    from numdp.train.data import FrameCache, load_dataset
    from numdp.train.stats import env_stats

    params, ref = models[PAIR]
    d = params.descriptor
    systems = load_dataset([WATER / "data_3"], ["O", "H"], BatchSize(fixed=1))
    cache = FrameCache(systems, d.rcut, d.sel, 2)
    frames = [np.arange(int(ref["stat_nframes"]))]
    davg, dstd = env_stats(cache, frames, 2, d.sel, d.rcut, d.rcut_smth, exclusion_mask(params.pair_exclude_types, 2))
    assert np.allclose(davg, ref["stat_davg"], rtol=1e-12, atol=0)
    assert np.allclose(dstd, ref["stat_dstd"], rtol=1e-12, atol=0)
    davg0, _ = env_stats(cache, frames, 2, d.sel, d.rcut, d.rcut_smth)
    assert not np.allclose(davg0, ref["stat_davg"], rtol=1e-3)


def _input(tmp_path, **model):
    cfg = {"model": {"type_map": ["O", "H"],
                     "descriptor": {"type": "se_e2_a", "sel": [46, 92], "rcut_smth": 0.5, "rcut": 6.0,
                                    "neuron": [4, 8], "axis_neuron": 4, "type_one_side": True, "seed": 1},
                     "fitting_net": {"neuron": [8, 8], "seed": 1}, **model},
           "learning_rate": {"start_lr": 0.001, "decay_steps": 5}, "loss": {},
           "training": {"training_data": {"systems": [str(WATER / "data_0")], "batch_size": 1},
                        "numb_steps": 3, "seed": 1, "disp_freq": 1, "save_freq": 3, "data_stat_nbatch": 2}}
    (tmp_path / "input.json").write_text(json.dumps(cfg))
    return tmp_path / "input.json"


def test_training_writes_them_and_checks_them(models, tmp_path, monkeypatch):
    """numdp train with both keys: the model file keeps them, the H atoms' bias is 0 (left out of
    the least squares, as DeePMD-kit's masked natoms); --init-model checks them against the
    input (one line naming the key); a bad entry is one line naming the key."""
    from numdp.train.config import load_config
    from numdp.train.init_model import load_init_model

    monkeypatch.chdir(tmp_path)
    path = _input(tmp_path, pair_exclude_types=[[0, 0]], atom_exclude_types=[1])
    assert cli_main(["train", str(path), "--threads", "1"]) == 0
    model = read_model(tmp_path / "model.h5")
    assert model.pair_exclude_types == [[0, 0]] and model.atom_exclude_types == [1]
    assert model.out_bias[1] + model.fitting.bias_atom_e[1] == 0.0 and model.out_bias[0] != 0.0
    other = _input(tmp_path, pair_exclude_types=[[0, 1]], atom_exclude_types=[1])
    with pytest.raises(InputError, match=r"--init-model: \[model\] pair_exclude_types: the model has \[\[0, 0\]\]"):
        load_init_model(tmp_path / "model.h5", load_config(other))
    with pytest.raises(InputError, match=r"\[model\] atom_exclude_types: expected a list of type indices 0..1"):
        load_config(_input(tmp_path, atom_exclude_types=[2]))
    with pytest.raises(InputError, match=r"\[model\] pair_exclude_types: type index out of range 0..1"):
        load_config(_input(tmp_path, pair_exclude_types=[[0, 3]]))
    with pytest.raises(InputError, match=r"atom_exclude_types: excludes every type"):
        load_config(_input(tmp_path, atom_exclude_types=[0, 1]))


def test_change_bias_leaves_excluded_atoms_out(models, tmp_path, capsys):
    """numdp change-bias on the H-excluded model: the H atoms are not counted in the fit
    (DeePMD-kit masks them), so the whole shift goes to O and H's out_bias stays; the updated
    model's energies move by exactly n_O times O's shift."""
    params, ref = models[ATOM]
    water = Path(__file__).resolve().parents[2] / "shared" / "data" / "water" / "data_3"
    out = tmp_path / "m.dp"
    assert cli_main(["change-bias", str(DATA / f"{ATOM}.dp"), "-s", str(water), "-n", "2", "-o", str(out)]) == 0
    new = read_model(out)
    shift = new.out_bias - params.out_bias
    assert shift[1] == 0.0 and shift[0] != 0.0
    a, b = _evaluate(params, ref), _evaluate(new, ref)
    n_o = int((ref["atype"] == 0).sum())
    assert b.energy - a.energy == pytest.approx(n_o * shift[0], rel=1e-12)
    assert numdp.load_model(out).source_params.atom_exclude_types == [1]
