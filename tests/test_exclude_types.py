"""DeePMD-kit's descriptor `exclude_types` (excluded type pairs) on every path of numdp.

The reference is tests/data/pytorch/se_a_excl_f64.* (tools/make_pth_fixtures.py): a one-sided
se_e2_a water model trained 2 steps by DeePMD-kit 3.2 with exclude_types [[0, 1]] (O-H pairs
excluded both ways), its .pt/.pth/.dp, DeePMD-kit's evaluation of a 192-atom water frame and
DeePMD-kit's descriptor statistics (EnvMatStatSe) of two water frames under that exclusion.  In
DeePMD-kit's PyTorch se_a an excluded neighbour within rcut keeps its slot but its normalised
row is multiplied by 0, while the block's padding slots are not masked (they still add the
padding row); the statistics count excluded neighbours as zero rows.  The loading, conversion
and CPU evaluation against DeePMD-kit are in tests/test_pth_models.py (the case is in its CASES).
"""
import copy
import io
import json
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

import numdp
from numdp.cli import main as cli_main
from numdp.errors import InputError
from numdp.io.model_file import read_model, write_model
from numdp.model.compress import compress, s_max_from_params
from numdp.model.dp_model import DPModel, evaluate_ensemble
from numdp.model.evaluator import Evaluator
from numdp.model.params import exclusion_mask
from numdp.train.config import BatchSize, load_config
from numdp.train.data import FrameCache, load_dataset
from numdp.train.stats import env_stats
from randmodel import random_config, random_params
from test_model_file import assert_params_equal
from test_pth_models import TOL, rel_err
from tests_util import U32, assert_finite_differences, order_bound

DATA = Path(__file__).resolve().parent / "data" / "pytorch"
CASE = "se_a_excl_f64"
WATER = Path(__file__).resolve().parents[2] / "shared" / "data" / "water"


@pytest.fixture(scope="module")
def fixture():
    return read_model(DATA / f"{CASE}.dp"), np.load(DATA / f"{CASE}.npz")


def _without_exclusion(params):
    p = copy.deepcopy(params)
    p.descriptor.exclude_types = []
    return p


# ---------------------------------------------------------------- the model


def test_fixture_excludes_o_h_and_the_exclusion_matters(fixture):
    """The three files carry the exclusion; without it the same networks give another energy
    (by far more than TOL), so the agreement with DeePMD-kit tests the exclusion."""
    params, ref = fixture
    for suffix in (".dp", ".pt", ".pth"):
        assert read_model(DATA / f"{CASE}{suffix}").descriptor.exclude_types == [[0, 1]]
    assert np.array_equal(params.descriptor.excluded, [[False, True], [True, False]])
    args = (ref["coord"], ref["atype"], ref["box"])
    with_ = DPModel(params, nthreads=1).evaluate(*args)
    without = DPModel(_without_exclusion(params), nthreads=1).evaluate(*args)
    assert rel_err(with_.energy, ref["energy"]) <= TOL
    assert rel_err(without.energy, ref["energy"]) > 1e-4
    assert rel_err(without.forces, ref["force"]) > 1e-2


@pytest.mark.parametrize("pairs,msg", [([[0, 2]], "type index out of range 0..1 in [0, 2]"),
                                       ([[0]], "expected pairs of type indices [ti, tj], got [0]"),
                                       ([[0, 1.0]], "expected pairs of type indices"),
                                       ([[True, 0]], "expected pairs of type indices")])
def test_bad_pairs_are_one_line_errors(fixture, tmp_path, pairs, msg):
    params = copy.deepcopy(fixture[0])
    params.descriptor.exclude_types = pairs
    with pytest.raises(InputError) as ei:
        params.validate("m")
    assert str(ei.value).startswith("m: exclude_types: ") and msg in str(ei.value)
    # the same entry in a .dp file and in a numdp file
    good = tmp_path / "good.dp"
    write_model(fixture[0], good)
    with h5py.File(good, "r+") as h5:
        tree = json.loads(h5.attrs["json"])
        tree["model"]["descriptor"]["exclude_types"] = pairs
        h5.attrs["json"] = json.dumps(tree)
    with pytest.raises(InputError) as ei:
        read_model(good)
    assert msg in str(ei.value) and str(good) in str(ei.value) and "\n" not in str(ei.value)


def test_round_trips_are_bit_exact(fixture, tmp_path):
    """.dp -> .h5 -> .dp -> .h5: the exclusions as given, every array bit for bit; a numdp file
    with exclusions is format version 2 (an older numdp refuses it instead of ignoring them),
    one without is still version 1 and reads as no exclusion."""
    params = fixture[0]
    write_model(params, tmp_path / "a.h5")
    a = read_model(tmp_path / "a.h5")
    assert_params_equal(a, params)
    write_model(a, tmp_path / "b.dp")
    b = read_model(tmp_path / "b.dp")
    assert_params_equal(b, params)
    with h5py.File(tmp_path / "b.dp") as h5:
        assert json.loads(h5.attrs["json"])["model"]["descriptor"]["exclude_types"] == [[0, 1]]
    with h5py.File(tmp_path / "a.h5") as h5:
        assert int(h5.attrs["format_version"]) == 2
        assert h5["descriptor"].attrs["exclude_types"].tolist() == [[0, 1]]
    # an unusual spelling ([1, 0] and a repeat) is kept as given, and means the same
    spelled = copy.deepcopy(params)
    spelled.descriptor.exclude_types = [[1, 0], [0, 1]]
    for name in ("c.h5", "c.dp"):
        write_model(spelled, tmp_path / name)
        assert read_model(tmp_path / name).descriptor.exclude_types == [[1, 0], [0, 1]]
    plain = _without_exclusion(params)
    write_model(plain, tmp_path / "plain.h5")
    with h5py.File(tmp_path / "plain.h5") as h5:
        assert int(h5.attrs["format_version"]) == 1 and "exclude_types" not in h5["descriptor"].attrs
    assert read_model(tmp_path / "plain.h5").descriptor.exclude_types == []


# ---------------------------------------------------------------- CPU evaluation


def test_compressed_within_the_compression_tolerance(fixture):
    """Compressed (order 5, dx 0.01) against uncompressed: 1e-6 eV and eV/Å, as
    tests/test_compress.py; the compressed model keeps the exclusion, and the table of net H
    (one-sided: H neighbours) spans only the H centres' range of real pairs."""
    params, ref = fixture
    cparams, report = compress(params, dx=0.01, order=5)
    assert cparams.descriptor.exclude_types == [[0, 1]]
    args = (ref["coord"], ref["atype"], ref["box"])
    a = DPModel(params, nthreads=2).evaluate(*args)
    model = DPModel(cparams, nthreads=2)
    b = model.evaluate(*args)
    assert abs(b.energy - a.energy) <= 1e-6
    assert np.abs(b.forces - a.forces).max() <= 1e-6
    assert np.abs(b.virial - a.virial).max() <= 1e-6
    assert model.beyond_table == 0
    d = params.descriptor
    s_max = s_max_from_params(params)
    upper = [(s_max[t] - d.davg[t, 0, 0]) / d.dstd[t, 0, 0] for t in range(2)]
    assert abs(upper[0] - upper[1]) > 0.1
    assert report[1]["upper"] == pytest.approx(upper[1], abs=0.011)   # the grid's last node
    assert report[0]["upper"] == pytest.approx(upper[0], abs=0.011)
    # the same model compressed without the exclusion is another model
    c0, _ = compress(_without_exclusion(params), dx=0.01, order=5)
    assert abs(DPModel(c0, nthreads=2).evaluate(*args).energy - b.energy) > 1e-2


# mix32: chains of n = nnei + D width + fitting widths, half of order_bound (one low evaluation);
# mix16: 2e-2 (tests/test_compress.py::test_precision_policies_stay_close_to_double)
@pytest.mark.parametrize("compressed", [False, True], ids=["nets", "tables"])
@pytest.mark.parametrize("precision", ["mix32", "mix16"])
def test_precisions_with_exclusions(fixture, precision, compressed):
    params, ref = fixture
    if compressed:
        params, _ = compress(params, dx=0.01, order=5)
    d = params.descriptor
    tol = (order_bound(U32, d.nnei + d.dim_out + sum(params.fitting.nets[0].widths[1:])) / 2
           if precision == "mix32" else 2e-2)
    args = (ref["coord"], ref["atype"], ref["box"])
    double = DPModel(params, nthreads=1).evaluate(*args)
    low = DPModel(params, nthreads=1, precision=precision).evaluate(*args)
    err = np.abs(low.forces - double.forces).max() / np.abs(double.forces).max()
    assert 0 < err < tol
    assert rel_err(double.forces, ref["force"]) <= (TOL if not compressed else 1e-5)


H = 1e-5


@pytest.mark.parametrize("type_one_side", [True, False], ids=["one-side", "two-side"])
@pytest.mark.parametrize("exclude", [[[0, 1]], [[1, 1], [0, 2]]], ids=["0-1", "1-1+0-2"])
def test_forces_and_virial_are_derivatives(type_one_side, exclude):
    """Random 3-type models with exclusions, triclinic box: forces and virial against central
    differences (as tests/test_model_physics.py: 2e-7 of the scale); the exclusion changes
    the forces of every atom near an excluded pair."""
    params = random_params(ntypes=3, sel=[20, 20, 20], neuron=(4, 8), axis_neuron=2,
                           type_one_side=type_one_side, fitting=(8, 8), seed=5, exclude_types=exclude)
    pos, types, box = random_config(14, 3, box_len=6.5, tilt=0.4, seed=3)
    out, scale = assert_finite_differences(DPModel(params, nthreads=1), pos, types, box, H)
    plain = DPModel(_without_exclusion(params), nthreads=1).evaluate(pos, types, box)
    assert np.abs(plain.forces - out.forces).max() > 1e-3 * scale


def test_dimer_against_deepmd_kit_and_the_jump_at_rcut(fixture):
    """An open O-H dimer (O-H excluded) as DeePMD-kit evaluates it (the fixture's dimer_*): within
    rcut the neighbour adds nothing at all (the same atomic energies, bit for bit, at every
    distance; zero forces), beyond rcut its slot is padding again, so the energy jumps at rcut,
    in DeePMD-kit as in numdp."""
    params, ref = fixture
    model = DPModel(params, nthreads=1)
    rcut = params.descriptor.rcut
    got = [model.evaluate(np.array([[0.0, 0, 0], [r, 0, 0]]), np.array([0, 1]), None) for r in ref["dimer_r"]]
    ae = np.array([g.atom_energies for g in got])
    assert rel_err(ae, ref["dimer_atom_energy"]) <= TOL
    assert np.array_equal(np.array([g.forces for g in got]), ref["dimer_force"])   # all zero
    inside = ref["dimer_r"] < rcut
    assert inside.any() and (~inside).any()
    assert all(np.array_equal(x, ae[inside][0]) for x in ae[inside])
    assert all(np.array_equal(x, ae[~inside][0]) for x in ae[~inside])
    assert np.abs(ae[inside][0] - ae[~inside][0]).min() > 1e-5          # the jump
    assert np.abs(ref["dimer_atom_energy"][0] - ref["dimer_atom_energy"][-1]).min() > 1e-5


def test_shared_environment_needs_equal_exclusions(fixture):
    """Models that differ only in their exclusions do not share one environment matrix (its
    padding counts differ): each is evaluated alone, and equals its own evaluation."""
    params, ref = fixture
    a, b = Evaluator(params), Evaluator(_without_exclusion(params))
    assert not a.shares_environment(b) and a.shares_environment(Evaluator(copy.deepcopy(params)))
    models = [DPModel(params, nthreads=1), DPModel(_without_exclusion(params), nthreads=1)]
    args = (ref["coord"], ref["atype"], ref["box"])
    for m, r in zip(models, evaluate_ensemble(models, *args)):
        assert r.energy == m.evaluate(*args, atom_virial=False).energy


# ---------------------------------------------------------------- CUDA (simulator)


def test_cuda_water_centres_against_deepmd_kit(fixture):
    """The fixture's model on the CUDA path: the first three atoms (O, H, H) as centres among all
    their periodic neighbours (the CPU-built list; the whole 192-atom frame is too slow for the
    simulator), atomic energies against DeePMD-kit's to TOL."""
    pytest.importorskip("numba_cuda")
    params, ref = fixture
    cpu = DPModel(params, nthreads=1)
    gpu = DPModel(params, device="cuda")
    typ, ext, nl = cpu._prepare(ref["coord"], ref["atype"], ref["box"])
    raw = gpu._ev.compute(ext.positions, nl.nlist[:3], typ[:3])
    assert rel_err(raw.atom_energy, ref["atom_energy"][:3]) <= TOL


def cuda_case(exclude, compressed, pair_exclude_types=(), atom_exclude_types=()):
    """(params, pos, types, box): a random 2-type model (one-sided and compressed, or two-sided)
    with the descriptor's `exclude` and the model-level exclusions, on 7 atoms in a triclinic box."""
    params = random_params(ntypes=2, sel=[8, 8], neuron=(4, 8), fitting=(8, 8), rcut=3.0, rcut_smth=0.8,
                           seed=9, type_one_side=compressed, exclude_types=exclude)
    params.pair_exclude_types = [list(p) for p in pair_exclude_types]
    params.atom_exclude_types = list(atom_exclude_types)
    if compressed:
        params, _ = compress(params, dx=0.02, order=5, s_max=np.full(2, 1.5))
    pos, typ, box = random_config(7, 2, box_len=4.5, tilt=0.3, seed=3)
    return params, pos, typ, box


@pytest.mark.parametrize("compressed", [False, True], ids=["nets", "tables"])
@pytest.mark.parametrize("form", ["thread", "team"])
def test_cuda_matches_cpu_with_exclusions(compressed, form):
    """The device's third slot state (SLOT_EXCLUDED: zero row, no force, not padding) against
    the CPU's (neither a pair nor padding): 1e-12 as tests/test_cuda_model.py, uncompressed and
    compressed, thread and team kernels, several chunks; and the exclusion changes the result."""
    pytest.importorskip("numba_cuda")
    params, pos, typ, box = cuda_case([[0, 1]], compressed)
    rc, _ = assert_device_equals_cpu(params, pos, typ, box, form)
    r0 = DPModel(_without_exclusion(params), nthreads=1).evaluate(pos, typ, box)
    assert np.abs(r0.forces - rc.forces).max() > 1e-3 * np.abs(rc.forces).max()


def assert_device_equals_cpu(params, pos, typ, box, form):
    """The CUDA evaluation (chunks of 4 atoms, `form` "thread" or "team" kernels; no overflow
    warning) of `params` against the CPU's to 1e-12 relative, as tests/test_cuda_model.py;
    returns (cpu, device) results."""
    from numdp.model import cuda_evaluator as ce

    gpu = DPModel(params, device="cuda", chunk=4)
    gpu._ev.kernel_form = ce.KernelForm.TEAM if form == "team" else ce.KernelForm.THREAD
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # no overflow: every block has padding
        rc, rg = DPModel(params, nthreads=1).evaluate(pos, typ, box), gpu.evaluate(pos, typ, box)
    assert rg.energy == pytest.approx(rc.energy, rel=1e-12, abs=0)
    for key in ("atom_energies", "forces", "virial", "atom_virials"):
        a, b = getattr(rc, key), getattr(rg, key)
        assert np.abs(a - b).max() <= 1e-12 * np.abs(a).max(), key
    return rc, rg


def test_cuda_mix32_with_exclusions():
    """mix32 on the device against double on the CPU, tests/test_cuda_model.py's bound."""
    pytest.importorskip("numba_cuda")
    from test_cuda_model import _mixed_tolerance

    params, pos, typ, box = cuda_case([[1, 1]], False)
    cpu = DPModel(params, nthreads=1)
    rc = cpu.evaluate(pos, typ, box)
    rg = DPModel(params, device="cuda", precision="mix32").evaluate(pos, typ, box)
    err = np.abs(rc.forces - rg.forces).max() / np.abs(rc.forces).max()
    assert 0 < err <= _mixed_tolerance(U32, cpu)


# ---------------------------------------------------------------- training


def test_statistics_equal_deepmd_kits(fixture):
    """env_stats with the exclusion on two water frames equals DeePMD-kit's EnvMatStatSe on the
    same frames (tools/make_pth_fixtures.py: stat_davg, stat_dstd): excluded neighbours are
    zero rows that count; without the exclusion the statistics differ."""
    params, ref = fixture
    d = params.descriptor
    systems = load_dataset([WATER / "data_3"], ["O", "H"], BatchSize(fixed=1))
    cache = FrameCache(systems, d.rcut, d.sel, 2)
    frames = [np.arange(int(ref["stat_nframes"]))]
    davg, dstd = env_stats(cache, frames, 2, d.sel, d.rcut, d.rcut_smth, d.excluded)
    assert np.allclose(davg, ref["stat_davg"], rtol=1e-12, atol=0)
    assert np.allclose(dstd, ref["stat_dstd"], rtol=1e-12, atol=0)
    davg0, _ = env_stats(cache, frames, 2, d.sel, d.rcut, d.rcut_smth)
    assert not np.allclose(davg0, ref["stat_davg"], rtol=1e-3)


@pytest.fixture(scope="module")
def excl_run(tmp_path_factory):
    """A run of tests/test_train_run.py's input with exclude_types [[0, 1]], 8 steps."""
    from test_train_run import make_input, run, write_system

    root = tmp_path_factory.mktemp("excldata")
    teacher = random_params(ntypes=2, sel=[30, 30], neuron=(4, 8), axis_neuron=2, fitting=(8, 8),
                            rcut=4.0, rcut_smth=1.0, seed=42)
    write_system(root / "train" / "pbc", teacher, 12, 8, True, 100)
    write_system(root / "valid" / "pbc", teacher, 12, 4, True, 300)
    path = _with_exclusion(make_input(tmp_path_factory.mktemp("exclrun"), root, steps=8))
    run(path)
    return path, root


def _with_exclusion(path, pairs="[[0, 1]]"):
    text = path.read_text()
    path.write_text(text.replace("[model.descriptor]\n", f"[model.descriptor]\nexclude_types = {pairs}\n", 1))
    return path


def test_training_with_exclusions(excl_run, tmp_path):
    """The trained model keeps the exclusion, its davg/dstd are the statistics with it, and a run
    started from it (--init-model, the same input) reports in lcurve's row 1 (step 0's batch,
    before its update) the training errors numdp's evaluator (another code path) gives on the
    first batch (as tests/test_train_init_model.py)."""
    from numdp.model.metrics import ErrorSums
    from numdp.train.data import BatchSampler, system_probs
    from test_train_run import make_input

    path, root = excl_run
    model = read_model(path.parent / "model.h5")
    assert model.descriptor.exclude_types == [[0, 1]]
    cfg = load_config(path)
    assert cfg.descriptor.exclude_types == [[0, 1]]
    systems = load_dataset(cfg.training.systems, cfg.type_map, cfg.training.batch_size)
    new = _with_exclusion(make_input(tmp_path, root, steps=4))
    assert cli_main(["train", str(new), "--init-model", str(path.parent / "model.h5"), "--threads", "1"]) == 0
    row = np.loadtxt(new.parent / "lcurve.out")[0]
    cfg = load_config(new)
    prob = system_probs([s.nbatches for s in systems], cfg.training.auto_prob, cfg.training.sys_probs)
    k, idx = BatchSampler(systems, [cfg.training.seed, 1], prob).next()
    s, evaluator, sums = systems[k], DPModel(model, nthreads=1), ErrorSums()
    for f in idx:
        r = evaluator.evaluate(s.coords[f], s.types, s.boxes[f], atom_virial=False)
        sums.add_energy(r.energy - s.energy[f], s.natoms)
        sums.add_forces(r.forces - s.forces[f])
    assert row[4] == pytest.approx(sums.rmse_e, rel=1e-6)
    assert row[6] == pytest.approx(sums.rmse_f, rel=1e-6)
    # and that batch's errors are not those of the model without its exclusion
    plain = DPModel(_without_exclusion(model), nthreads=1)
    e0 = [plain.evaluate(s.coords[f], s.types, s.boxes[f], atom_virial=False).energy for f in idx]
    assert not np.allclose(e0, [evaluator.evaluate(s.coords[f], s.types, s.boxes[f]).energy for f in idx],
                           rtol=1e-6)


def test_statistics_of_a_run_use_the_exclusion(excl_run):
    """The run's davg/dstd are env_stats with the exclusion over its statistics frames."""
    from numdp.train.loop import Trainer

    path, _ = excl_run
    trainer = Trainer(load_config(path), nthreads=1, stream=io.StringIO())
    try:
        d = trainer.params.descriptor
        frames = trainer._stat_frames
        davg, dstd = env_stats(trainer.train_cache, frames, 2, d.sel, d.rcut, d.rcut_smth, d.excluded)
        assert np.array_equal(d.davg, davg) and np.array_equal(d.dstd, dstd)
        davg0, _ = env_stats(trainer.train_cache, frames, 2, d.sel, d.rcut, d.rcut_smth)
        assert not np.allclose(davg0, davg)
        assert d.exclude_types == [[0, 1]]
    finally:
        trainer.close()


def test_init_model_needs_the_same_exclusions(excl_run, tmp_path):
    """--init-model compares the exclusions by meaning ([[1, 0]] is [[0, 1]]); another set is a
    one-line error naming the key."""
    from numdp.train.loop import Trainer
    from test_train_run import make_input

    path, root = excl_run
    model = path.parent / "model.h5"
    (tmp_path / "same").mkdir()
    (tmp_path / "other").mkdir()
    same = _with_exclusion(make_input(tmp_path / "same", root, steps=4), "[[1, 0]]")
    Trainer(load_config(same), init_model=model, nthreads=1, stream=io.StringIO()).close()
    other = _with_exclusion(make_input(tmp_path / "other", root, steps=4), "[[0, 0]]")
    with pytest.raises(InputError, match=r"--init-model: \[model.descriptor\] exclude_types: the model has "
                                         r"\[\[0, 1\]\], input.toml has \[\[0, 0\]\]"):
        Trainer(load_config(other), init_model=model, nthreads=1, stream=io.StringIO())


@pytest.mark.parametrize("value,msg", [("[[0, 2]]", "type index out of range 0..1 in [0, 2]"),
                                       ("[0, 1]", "expected pairs of type indices [ti, tj], got 0"),
                                       ("[[0, 1, 1]]", "expected pairs of type indices"),
                                       ('"0-1"', "expected a list of type index pairs")])
def test_config_errors(tmp_path, value, msg):
    from test_train_run import INPUT

    path = tmp_path / "input.toml"
    path.write_text(INPUT.format(steps=2, tos="true"))
    _with_exclusion(path, value)
    with pytest.raises(InputError) as ei:
        load_config(path)
    text = str(ei.value)
    assert text.startswith("input.toml: [model.descriptor] exclude_types: ") and msg in text and "\n" not in text


def test_input_json_key(tmp_path, monkeypatch):
    """input.json's model.descriptor.exclude_types reaches the config (no longer dropped), with
    the TOML key's checks."""
    from test_train_json import REPO, UPSTREAM_WATER

    (tmp_path / "inputs").symlink_to(REPO / "inputs")
    monkeypatch.chdir(tmp_path)
    tree = json.loads(UPSTREAM_WATER)
    tree["model"]["descriptor"]["exclude_types"] = [[0, 1]]
    (tmp_path / "input.json").write_text(json.dumps(tree))
    assert load_config(tmp_path / "input.json").descriptor.exclude_types == [[0, 1]]
    tree["model"]["descriptor"]["exclude_types"] = [[0, 5]]
    (tmp_path / "input.json").write_text(json.dumps(tree))
    with pytest.raises(InputError, match=r"\[model.descriptor\] exclude_types: type index out of range"):
        load_config(tmp_path / "input.json")


def test_show_names_the_exclusions(fixture):
    from numdp.commands.show import describe

    line = describe(fixture[0], ["descriptor"])[0]
    assert "'exclude_types': [[0, 1]]" in line
    # the recorded model_def_script (dp show prints it) follows the model's own exclusions
    assert "[[0, 1]]" not in describe(_without_exclusion(fixture[0]), ["descriptor"])[0]


def test_exclusion_mask():
    m = exclusion_mask([[2, 0], [1, 1]], 3)
    assert m.tolist() == [[False, False, True], [False, True, False], [True, False, False]]
    assert not exclusion_mask([], 2).any()
    assert numdp.load_model(DATA / f"{CASE}.pth").params.descriptor.exclude_types == [[0, 1]]
