"""numdp.infer.DeepPot, DeePMD-kit's inference class: oracle numbers, DeePMD-kit's shapes, errors."""
from pathlib import Path

import numpy as np
import pytest

import numdp
from numdp.errors import InputError
from numdp.infer import DeepPot, DeepPotential

# The oracle's own bound (../shared/oracle/README.md, tests/test_oracle.py TOL): DeePMD-kit and
# numdp both evaluate in float64 with different summation orders; every value agrees to a
# relative error (max abs error / max abs value) of 1e-10.
TOL = 1e-10
CASES = [("water.dp", "water.npz"), ("water.dp", "water_triclinic.npz"),
         ("water.dp", "water_cluster.npz"), ("alloy5.dp", "alloy5.npz")]

# Shapes observed with DeePMD-kit 3.2 itself (/work/dpk/bin/python, PyTorch backend on
# water.dp converted by `dp convert-backend` to .pth, and the .dp backend) on 2 frames of
# water.npz (192 atoms): dp.eval(coords, cells, atype, atomic=True) returned float64 arrays of
# shapes (2, 1), (2, 192, 3), (2, 9), (2, 192, 1), (2, 192, 9) for coords given as (2, 576),
# (2, 192, 3) or one frame (576,) (then nframes 1); get_sel_type() == [0, 1]; the virial rows
# are the oracle's 3x3 virial flattened row-major.  The literals below are those shapes.
def dpk_shapes(nframes, natoms):
    return [(nframes, 1), (nframes, natoms, 3), (nframes, 9), (nframes, natoms, 1), (nframes, natoms, 9)]


def rel_err(a, b):
    return np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max()


@pytest.fixture(scope="module")
def pots(oracle_dir):
    return {name: DeepPot(oracle_dir / name) for name in ("water.dp", "alloy5.dp")}


@pytest.fixture(scope="module")
def water(oracle_dir):
    return np.load(oracle_dir / "water.npz")


def test_exports():
    assert numdp.DeepPot is DeepPot


@pytest.mark.parametrize("model_name,case", CASES)
def test_eval_matches_oracle(pots, oracle_dir, model_name, case):
    """All frames in one call, DeePMD-kit's flat input layout, atomic outputs included."""
    ref = np.load(oracle_dir / case)
    nf, n = ref["coord"].shape[:2]
    cells = ref["box"].reshape(nf, 9) if "box" in ref else None   # cluster: non-periodic
    out = pots[model_name].eval(ref["coord"].reshape(nf, n * 3), cells, ref["atype"], atomic=True)
    assert [o.shape for o in out] == dpk_shapes(nf, n)
    assert all(o.dtype == np.float64 for o in out)
    e, f, v, ae, av = out
    assert rel_err(e[:, 0], ref["energy"]) <= TOL
    assert rel_err(f, ref["force"]) <= TOL
    assert rel_err(v, ref["virial"].reshape(nf, 9)) <= TOL
    assert rel_err(ae[..., 0], ref["atom_energy"]) <= TOL
    assert rel_err(av, ref["atom_virial"]) <= TOL


@pytest.mark.parametrize("atomic", [False, True])
def test_frames_equal_evaluate_bit_for_bit(pots, water, atomic):
    dp = pots["water.dp"]
    out = dp.eval(water["coord"], water["box"], water["atype"], atomic=atomic)
    assert len(out) == (5 if atomic else 3)
    for f in range(water["coord"].shape[0]):
        r = dp.model.evaluate(water["coord"][f], water["atype"], water["box"][f], atom_virial=atomic)
        assert out[0][f, 0] == r.energy
        assert np.array_equal(out[1][f], r.forces)
        assert np.array_equal(out[2][f], r.virial.reshape(9))
        if atomic:
            assert np.array_equal(out[3][f, :, 0], r.atom_energies)
            assert np.array_equal(out[4][f], r.atom_virials)


def test_input_shape_variants(pots, water):
    """Every layout DeePMD-kit accepts gives the same numbers, bit for bit."""
    dp = pots["water.dp"]
    c, b, t = water["coord"][:2], water["box"][:2], water["atype"]
    n = t.size
    ref = dp.eval(c, b, t, atomic=True)
    variants = [
        (c.reshape(2, n * 3), b.reshape(2, 9), t, {}),
        (c.tolist(), b.tolist(), t.tolist(), {}),
        (c.astype(np.float32).astype(np.float64), b, t.astype(np.float64), {}),  # np.loadtxt types
        (c, b, t.astype(np.int32), {"fparam": None, "aparam": None, "efield": None}),
        (c, b, t, {"fparam": np.zeros((2, 0)), "aparam": np.zeros(0)}),          # empty: allowed
        (c, b, np.tile(t, (2, 1)), {"mixed_type": True}),
    ]
    for coords, cells, types, kw in variants:
        out = dp.eval(coords, cells, types, atomic=True, **kw)
        for a, r in zip(out, ref):
            assert a.shape == r.shape and np.array_equal(a, r)
    one = [x[:1] for x in ref]
    for coords, cells in [(c[0].ravel(), b[0].ravel()), (c[0], b[0]), (c[:1], b[:1]),
                          (c[0].ravel(), b[0]), (c[:1].reshape(1, -1), b[:1].reshape(1, 9))]:
        out = dp.eval(coords, cells, t, atomic=True)
        assert [o.shape for o in out] == dpk_shapes(1, n)
        for a, r in zip(out, one):
            assert np.array_equal(a, r)


def test_mixed_type_per_frame_types(pots, water):
    """With mixed_type=True each frame has its own types (here frame 1 swaps two atoms' types)."""
    dp = pots["water.dp"]
    c, b, t = water["coord"][:2], water["box"][:2], water["atype"]
    t1 = t.copy()
    t1[[0, 1]] = t[[1, 0]] if t[0] != t[1] else (1 - t[0], 1 - t[1])
    e, f, v = dp.eval(c, b, np.stack([t, t1]), mixed_type=True)
    r1 = dp.model.evaluate(c[1], t1, b[1], atom_virial=False)
    assert e[1, 0] == r1.energy and np.array_equal(f[1], r1.forces)
    assert e[0, 0] == dp.eval(c[0], b[0], t)[0][0, 0]
    assert e[1, 0] != dp.eval(c[1], b[1], t)[0][0, 0]


def test_non_periodic(pots, water):
    """cells=None is a non-periodic system: equal to evaluate(box=None), different from the box."""
    dp = pots["water.dp"]
    c, t = water["coord"][0], water["atype"]
    e, f, v = dp.eval(c.ravel(), None, t)
    r = dp.model.evaluate(c, t, None, atom_virial=False)
    assert e[0, 0] == r.energy and np.array_equal(f[0], r.forces)
    assert np.array_equal(v[0], r.virial.reshape(9))
    assert abs(e[0, 0] - water["energy"][0]) > 1e-3   # the periodic images matter in this box


def test_getters(pots, oracle_dir):
    w, a = pots["water.dp"], pots["alloy5.dp"]
    assert w.get_type_map() == ["O", "H"] and w.get_ntypes() == 2
    assert a.get_type_map() == ["Ni", "Cu", "Pd", "Ag", "Au"] and a.get_ntypes() == 5
    assert w.get_rcut() == 6.0 and isinstance(w.get_rcut(), float)
    assert (w.get_dim_fparam(), w.get_dim_aparam()) == (0, 0)
    assert w.get_sel_type() == [0, 1] and a.get_sel_type() == [0, 1, 2, 3, 4]  # DeePMD-kit 3.2's
    assert w.get_ntypes_spin() == 0 and not (w.has_efield or w.has_spin or w.has_hessian)
    script = w.get_model_def_script()   # the .dp file's own (DeePMD-kit 3.2: these three keys)
    assert sorted(script) == ["descriptor", "fitting_net", "type_map"]
    assert script["type_map"] == ["O", "H"] and script["descriptor"]["sel"] == [46, 92]
    script["type_map"].append("X")      # a copy: the model is untouched
    assert w.get_model_def_script()["type_map"] == ["O", "H"]
    with w as same:
        assert same is w


def test_model_def_script_of_numdp_file():
    """A numdp .h5 model has no stored script: it is rebuilt from the parameters."""
    dp = DeepPot(Path(__file__).resolve().parents[1] / "inputs" / "water" / "model.h5")
    script = dp.get_model_def_script()
    assert script["type_map"] == dp.get_type_map()
    assert script["descriptor"]["rcut"] == dp.get_rcut()


def test_numdp_options(oracle_dir):
    dp = DeepPot(oracle_dir / "water.dp", precision="mix32", threads=1)
    assert dp.model.precision == "mix32" and dp.model.nthreads == 1 and dp.model.device == "cpu"


def test_constructor_kwargs(oracle_dir):
    path = oracle_dir / "water.dp"
    DeepPot(path, auto_batch_size=False, neighbor_list=None, no_jit=True, nlist_backend="auto",
            head=None, load_prefix="load", default_tf_graph=False, input_map=None)
    assert type(DeepPotential(path, auto_batch_size=True)) is DeepPot
    with pytest.raises(InputError, match=r"^DeepPot: head='water' is not supported by numdp"):
        DeepPot(path, head="water")
    with pytest.raises(InputError, match=r"^DeepPot: unknown keyword argument 'batch'$"):
        DeepPot(path, batch=4)
    with pytest.raises(TypeError):
        DeepPot(path, "extra positional")
    with pytest.raises(InputError, match="model file not found"):
        DeepPot(oracle_dir / "missing.dp")


@pytest.mark.parametrize("method,args", [("get_model", ()), ("serialize", ()), ("eval_typeebd", ()),
                                         ("eval_fitting_last_layer", (None, None, None)),
                                         ("eval_embedding", (None, None, None))])
def test_unsupported_methods(pots, method, args):
    with pytest.raises(NotImplementedError, match=rf"^DeepPot\.{method} is not supported") as info:
        getattr(pots["water.dp"], method)(*args)
    assert "\n" not in str(info.value)


def test_observed_types_as_deepmd_kit(pots):
    """DeePMD-kit 3.2's DeepPot(...).get_observed_types() of the oracle's models (what its dp show
    prints): the types with a nonzero output bias, by atomic number."""
    assert pots["water.dp"].get_observed_types() == {"type_num": 2, "observed_type": ["H", "O"]}
    assert pots["alloy5.dp"].get_observed_types() == {"type_num": 5,
                                                       "observed_type": ["Ni", "Cu", "Pd", "Ag", "Au"]}


def _bad_inputs(w):
    c, b, t = w["coord"], w["box"], w["atype"]
    t_out = t.copy()
    t_out[3] = 2
    t_neg = t.copy()
    t_neg[7] = -2   # -1 is DeePMD-kit's virtual atom, taken (tests/test_sweep_api.py)
    c_nan = c.copy()
    c_nan[1, 4, 2] = np.nan
    return [
        ((c[:, :-1], b, t), {}, r"coords has shape \(3, 191, 3\); expected \(nframes, 576\)"),
        ((c.reshape(-1), b, t), {}, r"coords has shape \(1728,\)"),
        ((c, b[:1], t), {}, r"cells has 1 frames but coords has 3"),
        ((c, b[:, :2], t), {}, r"cells has shape \(3, 2, 3\)"),
        ((c, b, t_out), {}, r"atom_types: atom 3 has type 2, outside 0\.\.1 \(type_map \['O', 'H'\]\)"),
        ((c, b, t_neg), {}, r"atom_types: atom 7 has type -2"),
        ((c, b, t + 0.5), {}, r"atom_types must be integers, got float64"),
        ((c, b, np.tile(t, (3, 1))), {}, r"need mixed_type=True"),
        ((c, b, np.tile(t, (2, 1))), {"mixed_type": True}, r"atom_types has 2 frames but coords has 3"),
        ((c, b, np.stack([t, t, t_out])), {"mixed_type": True}, r"frame 2, atom 3 has type 2"),
        ((c, b, t), {"fparam": np.ones(1)}, r"fparam given but the model has no frame parameters"),
        ((c, b, t), {"aparam": np.ones((3, 192, 1))}, r"aparam given but the model has no atomic"),
        ((c, b, t), {"efield": np.zeros((3, 192, 3))}, r"efield given but the model takes no efield"),
        ((c, b, t), {"spin": np.zeros((3, 192, 3))}, r"spin given"),
        ((c, b, t), {"energy_only": True}, r"unknown keyword argument 'energy_only'"),
        ((c_nan, b, t), {}, r"frame 1: atom 4 has a non-finite position"),
        ((c, np.zeros((3, 9)), t), {}, r"frame 0: "),
    ]


def test_bad_input_errors(pots, water):
    """Each mistake is an InputError with one line naming the argument (and frame / atom)."""
    for args, kw, pattern in _bad_inputs(water):
        with pytest.raises(InputError, match=r"^DeepPot\.eval: .*" + pattern) as info:
            pots["water.dp"].eval(*args, **kw)
        assert "\n" not in str(info.value)


def test_docs_example_runs():
    """The example of docs/python-api.md's DeepPot section runs as written from the repository
    root, and its numbers are those of model.evaluate."""
    import os
    import re

    root = Path(__file__).resolve().parents[1]
    text = (root / "docs" / "python-api.md").read_text()
    section = text[text.index("## DeePMD-kit's `DeepPot`"):]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    ns: dict = {}
    cwd = os.getcwd()
    os.chdir(root)
    try:
        exec(compile(block, "docs/python-api.md", "exec"), ns)
    finally:
        os.chdir(cwd)
    e, f, v, ae, av = (ns[k] for k in ("e", "f", "v", "ae", "av"))
    assert [x.shape for x in (e, f, v, ae, av)] == dpk_shapes(2, 192)
    r = ns["dp"].model.evaluate(ns["coords"][1].reshape(-1, 3), ns["atype"], ns["cells"][1].reshape(3, 3))
    assert e[1, 0] == r.energy and np.array_equal(av[1], r.atom_virials)


def test_cuda_device(oracle_dir):
    """device="cuda" goes through the device model (Numba's CUDA simulator in CI, tests/conftest.py):
    host float64 arrays of DeePMD-kit's shapes, bit for bit the device model's evaluate per frame.
    Five atoms of the oracle's open cluster (the simulator runs every CUDA thread in Python)."""
    pytest.importorskip("numba_cuda")
    ref = np.load(oracle_dir / "water_cluster.npz")
    c, t = ref["coord"][0][:5], ref["atype"][:5]
    coords = np.stack([c, c + 0.1 * np.sin(np.arange(15)).reshape(5, 3)])   # two different frames
    dp = DeepPot(oracle_dir / "water.dp", device="cuda")
    out = dp.eval(coords, None, t, atomic=True)
    assert [o.shape for o in out] == dpk_shapes(2, 5)
    assert all(type(o) is np.ndarray and o.dtype == np.float64 for o in out)
    assert out[0][0, 0] != out[0][1, 0]
    r = dp.model.evaluate(coords[1], t, None)   # the second frame: not left over from the first
    assert out[0][1, 0] == r.energy and np.array_equal(out[1][1], r.forces)
    assert np.array_equal(out[2][1], np.asarray(r.virial).reshape(9))
    assert np.array_equal(out[3][1, :, 0], r.atom_energies) and np.array_equal(out[4][1], r.atom_virials)


def test_models_and_deeppot_pickle_and_copy(oracle_dir, water):
    """A DPModel (and so a DeepPot, and an ASE calculator holding one) pickles and deep-copies
    (multiprocessing pools, ASE's NEB recipe): the copy is the model rebuilt from its parameters
    with the same threads, chunk, precision and device, and evaluates bit for bit as the
    original; the evaluator's thread pool and lock are made anew, not copied."""
    import copy
    import pickle

    pot = DeepPot(oracle_dir / "water.dp", precision="mix32", threads=1)
    coords, cells, atype = water["coord"][:1], water["box"][:1], water["atype"]
    want = pot.eval(coords, cells, atype)
    for clone in (pickle.loads(pickle.dumps(pot)), copy.deepcopy(pot)):
        m, o = clone.model, pot.model
        assert m is not o and m._ev is not o._ev
        assert (m.nthreads, m.precision, m.device, m._ev.chunk) == (o.nthreads, o.precision, o.device, o._ev.chunk)
        for a, b in zip(clone.eval(coords, cells, atype), want):
            assert np.array_equal(a, b)
