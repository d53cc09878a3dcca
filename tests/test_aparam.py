"""Models with atomic parameters (DeePMD-kit's fitting `numb_aparam`): models built and evaluated
by DeePMD-kit itself (tests/data/aparam, tools/make_aparam_fixtures.py) against numdp's paths
(CPU double, mix32, mix16, compressed, CUDA) with per-atom and shared parameters, forces and
virial as derivatives, the file formats, and every place a user gives the parameters:
`DPModel.evaluate`, `DeepPot.eval`, `calc_model_devi`, `numdp test` / `model-devi` /
`change-bias` (aparam.npy), `numdp run` ([model] aparam), `numdp lmp` (pair_style deepmd ...
aparam), the ASE calculator (atoms.info["aparam"]), numdp ipi (refused)."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

import numdp
from numdp.errors import InputError
from numdp.infer import DeepPot, calc_model_devi
from numdp.io.model_file import read_model, write_model
from numdp.model.compress import compress
from numdp.model.dp_model import DPModel
from numdp.model.params import aparam_delta, aparam_weights, first_layer_biases
from test_oracle import TOL
from tests_util import (U32, U64, assert_model_reproduces_labels, fd_force, fd_virial, order_bound, rel,
                        run_step0_energy)
from tests_util import write_system as write_npy_system

DATA = Path(__file__).resolve().parent / "data" / "aparam"
REF = np.load(DATA / "reference.npz")
MODELS = json.loads(str(REF["meta"]))["models"]
NF = REF["coord"].shape[0]


def frame(f):
    return REF["coord"][f], REF["atype"], REF["box"][f]


def inputs(name, f):
    """The keyword arguments of frame f of model `name`'s reference: its per-atom aparam and,
    where the model takes them, its fparam."""
    kw = {"aparam": REF[f"{name}_aparam"][f]}
    if f"{name}_fparam" in REF:
        kw["fparam"] = REF[f"{name}_fparam"][f]
    return kw


@pytest.mark.parametrize("name", MODELS)
def test_deepmd_kit_energies(name):
    """Each atom with its own parameters, as DeePMD-kit evaluated it (the oracle's 1e-10); the
    rows also as one flat array of natoms * nap values."""
    model = numdp.load_model(DATA / f"{name}.dp", nthreads=1)
    assert model.numb_aparam == REF[f"{name}_aparam"].shape[2]
    for f in range(NF):
        out = model.evaluate(*frame(f), **inputs(name, f))
        assert abs(out.energy - REF[f"{name}_energy"][f]) <= TOL * abs(REF[f"{name}_energy"][f])
        assert rel(out.atom_energies, REF[f"{name}_atom_energy"][f]) <= TOL
    kw = inputs(name, 0)
    flat = model.evaluate(*frame(0), **{**kw, "aparam": kw["aparam"].ravel()})
    assert flat.energy == model.evaluate(*frame(0), **kw).energy
    # the descriptor takes no parameters, also right after a call with per-atom ones, on
    # another number of atoms
    pos, types, box = frame(0)
    assert model.descriptor(pos[:7], types[:7], box).shape[0] == 7


def test_shared_parameters():
    """One set for every atom (LAMMPS' `aparam` keyword): given per call as (nap,), as equal rows,
    or to load_model, DeePMD-kit's energies; the three are the same folded biases, bit for bit."""
    for f in range(NF):
        a = REF["aparam_uniform_aparam"][f]
        model = numdp.load_model(DATA / "aparam.dp", nthreads=1, aparam=a)
        own = model.evaluate(*frame(f))
        assert abs(own.energy - REF["aparam_uniform_energy"][f]) <= TOL * abs(REF["aparam_uniform_energy"][f])
        assert rel(own.atom_energies, REF["aparam_uniform_atom_energy"][f]) <= TOL
        other = numdp.load_model(DATA / "aparam.dp", nthreads=1)
        for given in (a, np.tile(a, (len(REF["atype"]), 1))):
            out = other.evaluate(*frame(f), aparam=given)
            assert out.energy == own.energy and np.array_equal(out.forces, own.forces)


def test_missing_and_wrong_parameters():
    """Without parameters, with another count, non-finite, or given to a model without them: one
    line each."""
    model = numdp.load_model(DATA / "aparam.dp", nthreads=1)
    with pytest.raises(InputError, match=r"^the model takes 2 atomic parameter\(s\) per atom \(numb_aparam\): "
                                         r"give aparam$"):
        model.evaluate(*frame(0))
    with pytest.raises(InputError, match=r"takes 2 atomic parameter\(s\) per atom \(numb_aparam\), got 3 values "
                                         r"\(expected 2 or 12 x 2 for 12 atoms\)$"):
        model.evaluate(*frame(0), aparam=[1.0, 2.0, 3.0])
    with pytest.raises(InputError, match=r"atomic parameters must be finite"):
        model.evaluate(*frame(0), aparam=[1.0, np.inf])
    plain = numdp.load_model(Path(__file__).resolve().parent / "data" / "activations" / "tanh.dp", nthreads=1)
    with pytest.raises(InputError, match=r"takes no atomic parameters \(numb_aparam 0\), got aparam of 2 value"):
        plain.evaluate(*frame(0), aparam=[1.0, 2.0])
    both = numdp.load_model(DATA / "fparam_aparam.dp", nthreads=1)
    with pytest.raises(InputError, match=r"takes 1 frame parameter\(s\) \(numb_fparam\) and has no default_fparam"):
        both.evaluate(*frame(0), aparam=REF["fparam_aparam_aparam"][0])


def test_forces_and_virial_are_derivatives():
    """Per-atom parameters enter the first fitting layer's z only: forces and virial stay the
    energy's derivatives (central differences, h = 1e-5: O(h²) ≈ 1e-10 of the forces' scale)."""
    a = REF["aparam_aparam"][1]
    pos, types, box = frame(1)

    class AtTheseParameters:   # fd_force / fd_virial call evaluate(positions, types, box)
        model = numdp.load_model(DATA / "aparam.dp", nthreads=1)

        def evaluate(self, p, t, b, **kw):
            return self.model.evaluate(p, t, b, aparam=a, **kw)

    at = AtTheseParameters()
    out = at.evaluate(pos, types, box)
    shared = at.model.evaluate(pos, types, box, aparam=a[0])
    assert rel(shared.forces, out.forces) > 1e-3   # the atoms' own parameters change the forces
    for i, c in [(0, 0), (5, 1), (11, 2)]:
        assert abs(fd_force(at, pos, types, box, i, c, 1e-5) - out.forces[i, c]) < 2e-7 * np.abs(out.forces).max()
    vir = fd_virial(at, pos, types, box, 1e-5)
    assert np.abs(out.virial - vir).max() < 2e-7 * max(1.0, np.abs(out.virial).max())


def test_shift_is_the_concatenated_input():
    """first_layer_biases + aparam_delta W_a equal the first layer on [D, f̂, â_i] (NumPy), for
    any shared set the biases were folded at."""
    params = read_model(DATA / "fparam_aparam.dp")
    f, dim = params.fitting, params.descriptor.dim_out
    fp, A = REF["fparam_aparam_fparam"][0], REF["fparam_aparam_aparam"][0]
    types = REF["atype"]
    rng = np.random.default_rng(3)
    D = rng.normal(size=(types.shape[0], dim))
    x = np.hstack([D, np.tile((fp - f.fparam_avg) * f.fparam_inv_std, (types.shape[0], 1)),
                   (A - f.aparam_avg) * f.aparam_inv_std])
    for shared in (f.aparam_avg, np.array([0.3, -1.0])):
        biases = first_layer_biases(params, fp, shared)
        delta, weights = aparam_delta(params, A, shared), aparam_weights(params)
        for t, net in enumerate(f.nets):
            sel = types == t
            lay = net.layers[0]
            assert np.allclose(x[sel] @ lay.w + lay.b, D[sel] @ lay.w[:dim] + biases[t] + delta[sel] @ weights[t],
                               rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("precision, device", [("double", "cpu"), ("mix32", "cpu"), ("double", "cuda")])
def test_parameters_switched_per_call(precision, device):
    """Per-atom rows, shared sets and the model's own alternate between calls: each call equals
    the same call on a freshly loaded model bit for bit (rows set and dropped, biases kept)."""
    if device == "cuda":
        pytest.importorskip("numba_cuda")
    kw = dict(nthreads=1, precision=precision, device=device)
    own = REF["aparam_uniform_aparam"][0]
    model = numdp.load_model(DATA / "aparam.dp", aparam=own, **kw)
    calls = [(1, "aparam_aparam"), (0, None), (2, "aparam_uniform_aparam"), (1, "aparam_aparam"),
             (2, "aparam_aparam"), (0, None)]
    if device == "cuda":   # (the simulator is slow: per-atom rows set, dropped, set again)
        calls = calls[:2] + calls[3:4]
    fresh = {}   # each distinct call on a freshly loaded model
    for f, key in calls:
        a = None if key is None else REF[key][f]
        out = model.evaluate(*frame(f), aparam=a)
        if (f, key) not in fresh:
            fresh[f, key] = numdp.load_model(DATA / "aparam.dp", aparam=own, **kw).evaluate(*frame(f), aparam=a)
        assert out.energy == fresh[f, key].energy and np.array_equal(out.forces, fresh[f, key].forces)
    # per-atom rows on a model folded at another shared set: the same numbers to round-off; on a
    # model without its own set they are taken over its averages whatever call came before
    bare = numdp.load_model(DATA / "aparam.dp", **kw)
    other = bare.evaluate(*frame(1), aparam=REF["aparam_aparam"][1])
    bare.evaluate(*frame(2), aparam=REF["aparam_uniform_aparam"][2])
    again = bare.evaluate(*frame(1), aparam=REF["aparam_aparam"][1])
    assert again.energy == other.energy and np.array_equal(again.forces, other.forces)
    assert abs(other.energy - REF["aparam_energy"][1]) <= (1e-12 if precision == "double" else 1e-5) \
        * abs(REF["aparam_energy"][1])


@pytest.mark.parametrize("precision", ["mix32", "mix16"])
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_every_path_takes_the_parameters(precision, device):
    """mix32 / mix16 on either device against the CPU's double (test_fparam's bounds), and CUDA
    double against CPU double to 1e-12 (test_cuda_model's bound), with per-atom parameters."""
    if device == "cuda":
        pytest.importorskip("numba_cuda")
    params = read_model(DATA / "fparam_aparam.dp")
    kw = inputs("fparam_aparam", 2)
    pos, types, box = frame(2)
    double = DPModel(params, nthreads=1).evaluate(pos, types, box, **kw)
    low = DPModel(params, nthreads=1, precision=precision, device=device).evaluate(pos, types, box, **kw)
    d = params.descriptor
    tol = order_bound(U32, d.nnei + d.dim_out + sum(params.fitting.nets[0].widths[1:])) / 2 \
        if precision == "mix32" else 2e-2
    assert 0 < rel(low.forces, double.forces) < tol
    assert 0 < rel(low.atom_energies, double.atom_energies) < tol
    if device == "cuda" and precision == "mix32":
        gpu = DPModel(params, nthreads=1, device="cuda").evaluate(pos, types, box, **kw)
        assert rel(gpu.energy, double.energy) < 1e-12 and rel(gpu.forces, double.forces) < 1e-12
        assert rel(gpu.atom_energies, double.atom_energies) < 1e-12


def test_compressed_and_file_formats(tmp_path, capsys):
    """numdp compress keeps the parameters (the compressed model equals the network to round-off,
    test_fparam's bound); .dp and .h5 round trips keep aparam_avg and aparam_inv_std; show names
    numb_aparam."""
    params = read_model(DATA / "fparam_aparam.dp")
    params.min_nbor_dist = 0.5
    cparams, _ = compress(params, dx=0.001, order=5)
    kw = inputs("fparam_aparam", 0)
    exact = DPModel(params, nthreads=1).evaluate(*frame(0), **kw)
    d = params.descriptor
    n = d.nnei + d.dim_out + sum(params.fitting.nets[0].widths[1:])
    for name in ("c.dp", "c.h5"):
        write_model(cparams, tmp_path / name)
        model = numdp.load_model(tmp_path / name, nthreads=1)
        assert model.compressed and (model.numb_fparam, model.numb_aparam) == (1, 2)
        out = model.evaluate(*frame(0), **kw)
        assert np.abs(out.forces - exact.forces).max() < order_bound(U64, n) * max(1.0, np.abs(exact.forces).max())
        back = read_model(tmp_path / name).fitting
        for key in ("fparam_avg", "fparam_inv_std", "aparam_avg", "aparam_inv_std"):
            assert np.array_equal(getattr(back, key), getattr(params.fitting, key))
    from numdp.cli import main

    assert main(["show", str(tmp_path / "c.dp"), "fitting-net"]) == 0
    assert "'numb_fparam': 1, 'numb_aparam': 2" in capsys.readouterr().out


def test_deeppot_eval_and_model_devi():
    """DeepPot.eval takes aparam as (nframes, natoms * nap), (natoms, nap) or (nap,), as
    DeePMD-kit; calc_model_devi passes it to every model."""
    dp = DeepPot(str(DATA / "aparam.dp"))
    assert dp.get_dim_aparam() == 2 and dp.get_dim_fparam() == 0
    coords = REF["coord"].reshape(NF, -1)
    cells = REF["box"].reshape(NF, 9)
    e, f, v = dp.eval(coords, cells, REF["atype"], aparam=REF["aparam_aparam"].reshape(NF, -1))
    assert rel(e[:, 0], REF["aparam_energy"]) <= TOL
    e1, _, _ = dp.eval(coords, cells, REF["atype"], aparam=REF["aparam_aparam"][1])
    assert abs(e1[1, 0] - REF["aparam_energy"][1]) <= TOL * abs(REF["aparam_energy"][1])
    e2, _, _ = dp.eval(coords[:1], cells[:1], REF["atype"], aparam=REF["aparam_uniform_aparam"][0])
    assert abs(e2[0, 0] - REF["aparam_uniform_energy"][0]) <= TOL * abs(REF["aparam_uniform_energy"][0])
    with pytest.raises(InputError, match=r"DeepPot.eval: aparam has shape \(3,\); expected \(3, 24\), \(12, 2\) "
                                         r"or \(2,\)"):
        dp.eval(coords, cells, REF["atype"], aparam=[1.0, 2.0, 3.0])
    with pytest.raises(InputError, match=r"DeepPot.eval: frame 0: the model takes 2 atomic parameter"):
        dp.eval(coords, cells, REF["atype"])
    table = calc_model_devi(coords, cells, REF["atype"], [dp, dp], aparam=REF["aparam_aparam"])
    assert table.shape == (NF, 8) and np.all(table[:, 1:] == 0.0)   # one model twice: no deviation


def write_system(root, with_aparam=True):
    return write_npy_system(root, REF["coord"], REF["box"], REF["atype"], ["O", "H"], REF["aparam_energy"],
                            aparam=REF["aparam_aparam"] if with_aparam else None)


def test_numdp_test_model_devi_and_change_bias_read_aparam_npy(tmp_path, capsys):
    """aparam.npy (nframes, natoms * nap) gives each atom's parameters: numdp test on DeePMD-kit's
    energies gives a zero error, model-devi of a model against itself zero, change-bias no
    shift; a system without it, or of another width, is named."""
    from numdp.cli import main

    sysdir = write_system(tmp_path / "sys")
    model = str(DATA / "aparam.dp")
    assert_model_reproduces_labels(model, sysdir, NF, tmp_path)
    capsys.readouterr()
    bare = write_system(tmp_path / "bare", with_aparam=False)
    assert main(["test", "-m", model, "-s", str(bare)]) == 2
    assert re.search(r"bare: the model takes 2 atomic parameter\(s\) per atom \(numb_aparam\); the system has "
                     r"no aparam.npy$", capsys.readouterr().err.strip())
    np.save(bare / "set.000" / "aparam.npy", np.zeros((NF, 12 * 3)))
    assert main(["test", "-m", model, "-s", str(bare)]) == 2
    assert re.search(r"bare: aparam.npy has 3 parameter\(s\) per atom, the model takes 2 \(numb_aparam\)$",
                     capsys.readouterr().err.strip())
    np.save(bare / "set.000" / "aparam.npy", np.zeros((NF, 25)))
    assert main(["test", "-m", model, "-s", str(bare)]) == 2
    assert re.search(r"aparam.npy: shape \(3, 25\) does not match 3 frames of 12 atoms", capsys.readouterr().err)


def test_md_run_lammps_ase_and_ipi(tmp_path, capsys):
    """[model] aparam (every atom's) drives a run (its step-0 energy is DeePMD-kit's with those
    parameters on every atom); without them the input is named; `pair_style deepmd ... aparam`
    (DP-GEN's `aparam ${ELE_TEMP}` too) becomes [model] aparam; the ASE calculator reads
    atoms.info["aparam"]; numdp ipi refuses a model with atomic parameters before connecting."""
    from numdp.cli import main
    from numdp.io.structure import write_extxyz, write_lammps_data
    from numdp.lammps.translate import translate

    names = np.array(["O", "H"])[REF["atype"]]
    pos, types, box = frame(0)
    write_extxyz(tmp_path / "start.xyz", names, pos, box)
    a = REF["aparam_uniform_aparam"][0]
    text = (f'[model]\nfile = "{DATA / "aparam.dp"}"\naparam = {a.tolist()}\n'
            '[system]\nfile = "start.xyz"\nmasses = { O = 16.0, H = 2.0 }\n'
            '[md]\ntimestep = 0.0005\nsteps = 0\nensemble = "nve"\n'
            '[output]\nlog = "log.txt"\nthermo_every = 1\n')
    toml = tmp_path / "md.toml"
    pe = run_step0_energy(toml, text)
    ref = REF["aparam_uniform_energy"][0]
    assert abs(pe - ref) <= 1e-6 * abs(ref)   # the log's digits
    toml.write_text(text.replace(f"aparam = {a.tolist()}\n", ""))
    capsys.readouterr()
    assert main(["run", str(toml)]) == 2
    assert re.search(r"md.toml: \[model\] aparam: .*aparam.dp: the model takes 2 atomic parameter\(s\) per atom "
                     r"\(numb_aparam\): give aparam$", capsys.readouterr().err.strip())
    toml.write_text(text.replace(f"aparam = {a.tolist()}", "aparam = [1.0, 2.0, 3.0]"))
    assert main(["run", str(toml)]) == 2
    assert "[model] aparam: " in capsys.readouterr().err

    write_lammps_data(tmp_path / "conf.lmp", REF["atype"], pos, box, [16.0, 2.0])
    tr = translate("units metal\nboundary p p p\natom_style atomic\nread_data conf.lmp\n"
                   f"pair_style deepmd {DATA / 'aparam.dp'} aparam 0.5 -1.5 out_freq 10\npair_coeff * * O H\n"
                   "fix 1 all nve\nrun 10\n", "in.lmp", {}, tmp_path)
    assert tr.tables["model"]["aparam"] == [0.5, -1.5]
    # DP-GEN's exploration script of a model trained with use_ele_temp 2 (its electronic
    # temperature as every atom's parameter)
    from test_lmp_input import dpgen_script

    script = "variable        ELE_TEMP        equal 0.750000\n" + dpgen_script(
        "nvt", models=(str(DATA / "aparam.dp"),), keywords="atomic aparam ${ELE_TEMP}")
    assert translate(script, "input.lammps", {"restart": "0"}, tmp_path).tables["model"]["aparam"] == [0.75]

    assert main(["ipi", "-m", str(DATA / "aparam.dp"), "--unix", "nobody", "--types", "O", "H",
                 "--wait", "0"]) == 2
    assert re.search(r"aparam.dp: the model takes 2 atomic parameter\(s\) per atom \(numb_aparam\), and i-PI "
                     r"passes none: numdp ipi cannot serve it$", capsys.readouterr().err.strip())

    ase = pytest.importorskip("ase")
    from numdp.calculator import DP

    atoms = ase.Atoms(names.tolist(), positions=pos, cell=box, pbc=True)
    atoms.calc = DP(str(DATA / "aparam.dp"))
    atoms.info["aparam"] = REF["aparam_aparam"][0]
    assert abs(atoms.get_potential_energy() - REF["aparam_energy"][0]) <= TOL * abs(REF["aparam_energy"][0])
