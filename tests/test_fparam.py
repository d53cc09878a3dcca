"""Models with frame parameters (DeePMD-kit's fitting `numb_fparam`): models built and evaluated
by DeePMD-kit itself (tests/data/fparam, tools/make_fparam_fixtures.py) against numdp's paths
(CPU double, mix32, mix16, compressed, CUDA), forces and virial as derivatives, the file formats,
and every place a user gives the parameters: `DPModel.evaluate`, `DeepPot.eval`,
`calc_model_devi`, `numdp test` / `model-devi` / `change-bias` (fparam.npy), `numdp run`
([model] fparam), `numdp lmp` (pair_style deepmd ... fparam), the ASE calculator
(atoms.info["fparam"])."""
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
from numdp.model.params import fold_frame_inputs as fold_fparam
from test_oracle import TOL
from tests_util import (U32, U64, assert_model_reproduces_labels, fd_force, fd_virial, order_bound, rel,
                        run_step0_energy)
from tests_util import write_system as write_npy_system

DATA = Path(__file__).resolve().parent / "data" / "fparam"
REF = np.load(DATA / "reference.npz")
MODELS = json.loads(str(REF["meta"]))["models"]
NF = REF["coord"].shape[0]


def frame(f):
    return REF["coord"][f], REF["atype"], REF["box"][f]


@pytest.mark.parametrize("name", MODELS)
def test_deepmd_kit_energies(name):
    """Each frame with its own parameters, as DeePMD-kit evaluated it (the oracle's 1e-10)."""
    model = numdp.load_model(DATA / f"{name}.dp", nthreads=1)
    assert model.numb_fparam == REF[f"{name}_fparam"].shape[1]
    for f in range(NF):
        out = model.evaluate(*frame(f), fparam=REF[f"{name}_fparam"][f])
        assert abs(out.energy - REF[f"{name}_energy"][f]) <= TOL * abs(REF[f"{name}_energy"][f])
        assert rel(out.atom_energies, REF[f"{name}_atom_energy"][f]) <= TOL


def test_default_fparam():
    """Without fparam a model with default_fparam evaluates at it (DeePMD-kit's energies); one
    without refuses in one line, and wrong widths or a model without parameters are named."""
    model = numdp.load_model(DATA / "fparam_default.dp", nthreads=1)
    for f in range(NF):
        out = model.evaluate(*frame(f))
        assert abs(out.energy - REF["default_energy"][f]) <= TOL * abs(REF["default_energy"][f])
    # an empty fparam is none given (as DeePMD-kit takes it): the default again
    assert model.evaluate(*frame(NF - 1), fparam=[]).energy == out.energy
    bare = numdp.load_model(DATA / "fparam.dp", nthreads=1)
    with pytest.raises(InputError, match=r"^the model takes 2 frame parameter\(s\) \(numb_fparam\) and has no "
                                         r"default_fparam: give fparam$"):
        bare.evaluate(*frame(0))
    with pytest.raises(InputError, match=r"takes 2 frame parameter\(s\) \(numb_fparam\), got 3$"):
        bare.evaluate(*frame(0), fparam=[1.0, 2.0, 3.0])
    with pytest.raises(InputError, match=r"frame parameters must be finite"):
        bare.evaluate(*frame(0), fparam=[1.0, np.nan])
    plain = numdp.load_model(Path(__file__).resolve().parent / "data" / "activations" / "tanh.dp", nthreads=1)
    with pytest.raises(InputError, match=r"takes no frame parameters \(numb_fparam 0\), got fparam \[1.0\]"):
        plain.evaluate(*frame(0), fparam=[1.0])


def test_forces_and_virial_are_derivatives():
    """The parameters enter the first fitting layer's bias only: forces and virial stay the
    energy's derivatives (central differences, h = 1e-5: O(h²) ≈ 1e-10 of the forces' scale)."""
    model = numdp.load_model(DATA / "fparam.dp", nthreads=1)
    fp = REF["fparam_fparam"][1]
    pos, types, box = frame(1)
    out = model.evaluate(pos, types, box, fparam=fp)
    other = model.evaluate(pos, types, box, fparam=fp + 1.0)
    assert rel(other.forces, out.forces) > 1e-3   # the parameters change the forces
    at = numdp.load_model(DATA / "fparam.dp", nthreads=1, fparam=fp)
    for i, c in [(0, 0), (5, 1), (11, 2)]:
        assert abs(fd_force(at, pos, types, box, i, c, 1e-5) - out.forces[i, c]) < 2e-7 * np.abs(out.forces).max()
    vir = fd_virial(at, pos, types, box, 1e-5)   # against the strain derivative of the energy
    assert np.abs(out.virial - vir).max() < 2e-7 * max(1.0, np.abs(out.virial).max())


@pytest.mark.parametrize("precision, device", [("double", "cpu"), ("mix32", "cpu"), ("double", "cuda")])
def test_parameters_switched_per_call(precision, device):
    """evaluate(..., fparam=f) sets the first layers' biases of f in the model's evaluator: bit
    for bit a model loaded with f (the same folded biases), and the next call without fparam is
    the model's own parameters again."""
    if device == "cuda":
        pytest.importorskip("numba_cuda")
    kw = dict(nthreads=1, precision=precision, device=device)
    fps = REF["fparam_fparam"]
    model = numdp.load_model(DATA / "fparam.dp", fparam=fps[0], **kw)
    own = model.evaluate(*frame(0))
    fresh = {}   # each distinct call on a freshly loaded model
    for f in (1, 2, 1):
        out = model.evaluate(*frame(f), fparam=fps[f])
        if f not in fresh:
            fresh[f] = numdp.load_model(DATA / "fparam.dp", fparam=fps[f], **kw).evaluate(*frame(f))
        assert out.energy == fresh[f].energy and np.array_equal(out.forces, fresh[f].forces)
    again = model.evaluate(*frame(0))
    assert again.energy == own.energy and np.array_equal(again.forces, own.forces)


def test_fold_is_the_concatenated_input():
    """fold_fparam's first layer equals the layer on [D, (f - avg) * inv_std] (NumPy)."""
    params = read_model(DATA / "fparam.dp")
    f = params.fitting
    fp = np.array([0.3, -2.0])
    folded = fold_fparam(params, fp)
    assert folded.fitting.numb_fparam == 0
    rng = np.random.default_rng(1)
    D = rng.normal(size=(5, params.descriptor.dim_out))
    x = np.hstack([D, np.tile((fp - f.fparam_avg) * f.fparam_inv_std, (5, 1))])
    for net, fnet in zip(f.nets, folded.fitting.nets):
        a, b = net.layers[0], fnet.layers[0]
        assert b.residual == 0 and b.w.shape[0] == params.descriptor.dim_out
        assert np.allclose(x @ a.w + a.b, D @ b.w + b.b, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("precision", ["mix32", "mix16"])
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_every_path_takes_the_parameters(precision, device):
    """mix32 / mix16 on either device against the CPU's double (the bounds of test_activations),
    and CUDA double against CPU double to 1e-12 (test_cuda_model's bound)."""
    if device == "cuda":
        pytest.importorskip("numba_cuda")
    params = read_model(DATA / "fparam.dp")
    fp = REF["fparam_fparam"][2]
    pos, types, box = frame(2)
    double = DPModel(params, nthreads=1, fparam=fp).evaluate(pos, types, box)
    low = DPModel(params, nthreads=1, precision=precision, device=device, fparam=fp).evaluate(pos, types, box)
    d = params.descriptor
    tol = order_bound(U32, d.nnei + d.dim_out + sum(params.fitting.nets[0].widths[1:])) / 2 \
        if precision == "mix32" else 2e-2
    assert 0 < rel(low.forces, double.forces) < tol
    if device == "cuda" and precision == "mix32":
        gpu = DPModel(params, nthreads=1, device="cuda", fparam=fp).evaluate(pos, types, box)
        assert rel(gpu.energy, double.energy) < 1e-12 and rel(gpu.forces, double.forces) < 1e-12


def test_compressed_and_file_formats(tmp_path, capsys):
    """numdp compress keeps the parameters (the compressed model equals the network to round-off,
    test_activations' bound); .dp and .h5 round trips keep avg, inv_std and default; show names them."""
    params = read_model(DATA / "fparam_default.dp")
    params.min_nbor_dist = 0.5
    cparams, _ = compress(params, dx=0.001, order=5)
    fp = REF["fparam_default_fparam"][0]
    exact = DPModel(params, nthreads=1).evaluate(*frame(0), fparam=fp)
    d = params.descriptor
    n = d.nnei + d.dim_out + sum(params.fitting.nets[0].widths[1:])
    for name in ("c.dp", "c.h5"):
        write_model(cparams, tmp_path / name)
        model = numdp.load_model(tmp_path / name, nthreads=1)
        assert model.compressed and model.numb_fparam == 3
        out = model.evaluate(*frame(0), fparam=fp)
        assert np.abs(out.forces - exact.forces).max() < order_bound(U64, n) * max(1.0, np.abs(exact.forces).max())
        back = read_model(tmp_path / name).fitting
        for key in ("fparam_avg", "fparam_inv_std", "default_fparam"):
            assert np.array_equal(getattr(back, key), getattr(params.fitting, key))
    from numdp.cli import main

    assert main(["show", str(tmp_path / "c.dp"), "fitting-net"]) == 0
    assert "'numb_fparam': 3, 'default_fparam': [0.7, -1.2, 3.0]" in capsys.readouterr().out


def test_deeppot_eval_and_model_devi():
    """DeepPot.eval takes fparam as (nframes, nfp) or (nfp,) (every frame), as DeePMD-kit;
    calc_model_devi passes it to every model."""
    dp = DeepPot(str(DATA / "fparam.dp"))
    assert dp.get_dim_fparam() == 2 and not dp.has_default_fparam()
    assert DeepPot(str(DATA / "fparam_default.dp")).has_default_fparam()
    coords = REF["coord"].reshape(NF, -1)
    cells = REF["box"].reshape(NF, 9)
    e, f, v = dp.eval(coords, cells, REF["atype"], fparam=REF["fparam_fparam"])
    assert rel(e[:, 0], REF["fparam_energy"]) <= TOL
    e1, _, _ = dp.eval(coords, cells, REF["atype"], fparam=REF["fparam_fparam"][1])
    assert abs(e1[1, 0] - REF["fparam_energy"][1]) <= TOL * abs(REF["fparam_energy"][1])
    with pytest.raises(InputError, match=r"DeepPot.eval: fparam has shape \(3,\); expected \(3, 2\) or \(2,\)"):
        dp.eval(coords, cells, REF["atype"], fparam=[1.0, 2.0, 3.0])
    with pytest.raises(InputError, match=r"DeepPot.eval: frame 0: the model takes 2 frame parameter"):
        dp.eval(coords, cells, REF["atype"])
    table = calc_model_devi(coords, cells, REF["atype"], [dp, dp], fparam=REF["fparam_fparam"])
    assert table.shape == (NF, 8) and np.all(table[:, 1:] == 0.0)   # one model twice: no deviation


def write_system(root, with_fparam=True, energy_of=None):
    return write_npy_system(root, REF["coord"], REF["box"], REF["atype"], ["O", "H"],
                            REF["fparam_energy"] if energy_of is None else energy_of,
                            fparam=REF["fparam_fparam"] if with_fparam else None)


def test_numdp_test_model_devi_and_change_bias_read_fparam_npy(tmp_path, capsys):
    """fparam.npy gives each frame's parameters: numdp test on DeePMD-kit's energies gives a zero
    error, model-devi of a model against itself zero, change-bias no shift; a system without it
    is named (or the default used)."""
    from numdp.cli import main

    sysdir = write_system(tmp_path / "sys")
    model = str(DATA / "fparam.dp")
    assert_model_reproduces_labels(model, sysdir, NF, tmp_path)
    capsys.readouterr()
    bare = write_system(tmp_path / "bare", with_fparam=False)
    assert main(["test", "-m", model, "-s", str(bare)]) == 2
    assert re.search(r"bare: the model takes 2 frame parameter\(s\) \(numb_fparam\) and has no default_fparam; "
                     r"the system has no fparam.npy$", capsys.readouterr().err.strip())
    three = np.concatenate([REF["fparam_fparam"], np.zeros((NF, 1))], axis=1)
    np.save(bare / "set.000" / "fparam.npy", three)
    assert main(["test", "-m", model, "-s", str(bare)]) == 2
    assert re.search(r"bare: fparam.npy has 3 parameter\(s\) per frame, the model takes 2 \(numb_fparam\)$",
                     capsys.readouterr().err.strip())
    default = write_system(tmp_path / "default", with_fparam=False, energy_of=REF["default_energy"])
    assert main(["test", "-m", str(DATA / "fparam_default.dp"), "-s", str(default), "--json",
                 str(tmp_path / "d.json")]) == 0
    assert json.loads((tmp_path / "d.json").read_text())["overall"]["rmse_energy"] < 1e-9


def test_md_run_and_lammps_and_ase(tmp_path, capsys):
    """[model] fparam drives a run (its step-0 energy is the model's at those parameters);
    without them the input is named; `pair_style deepmd ... fparam` becomes [model] fparam;
    the ASE calculator reads atoms.info["fparam"]."""
    from numdp.cli import main
    from numdp.config import load_run_settings
    from numdp.io.structure import write_extxyz, write_lammps_data
    from numdp.lammps.translate import translate

    names = np.array(["O", "H"])[REF["atype"]]
    pos, types, box = frame(0)
    write_extxyz(tmp_path / "start.xyz", names, pos, box)
    fp = REF["fparam_fparam"][0]
    text = (f'[model]\nfile = "{DATA / "fparam.dp"}"\nfparam = {fp.tolist()}\n'
            '[system]\nfile = "start.xyz"\nmasses = { O = 16.0, H = 2.0 }\n'
            '[md]\ntimestep = 0.0005\nsteps = 0\nensemble = "nve"\n'
            '[output]\nlog = "log.txt"\nthermo_every = 1\n')
    toml = tmp_path / "md.toml"
    pe = run_step0_energy(toml, text)
    assert abs(pe - REF["fparam_energy"][0]) <= 1e-6 * abs(REF["fparam_energy"][0])   # the log's digits
    toml.write_text(text.replace(f"fparam = {fp.tolist()}\n", ""))
    capsys.readouterr()
    assert main(["run", str(toml)]) == 2
    assert re.search(r"md.toml: \[model\] fparam: .*fparam.dp: the model takes 2 frame parameter\(s\) "
                     r"\(numb_fparam\) and has no default_fparam: give fparam$", capsys.readouterr().err.strip())
    toml.write_text(text.replace(f"fparam = {fp.tolist()}", 'fparam = ["a"]'))
    with pytest.raises(InputError, match=r"\[model\] fparam: expected a non-empty list of numbers"):
        load_run_settings(toml)

    write_lammps_data(tmp_path / "conf.lmp", REF["atype"], pos, box, [16.0, 2.0])
    tr = translate("units metal\nboundary p p p\natom_style atomic\nread_data conf.lmp\n"
                   f"pair_style deepmd {DATA / 'fparam.dp'} fparam 0.5 -1.5 out_freq 10\npair_coeff * * O H\n"
                   "fix 1 all nve\nrun 10\n", "in.lmp", {}, tmp_path)
    assert tr.tables["model"]["fparam"] == [0.5, -1.5]

    ase = pytest.importorskip("ase")
    from numdp.calculator import DP

    atoms = ase.Atoms(names.tolist(), positions=pos, cell=box, pbc=True)
    atoms.calc = DP(str(DATA / "fparam.dp"))
    atoms.info["fparam"] = fp
    assert abs(atoms.get_potential_energy() - REF["fparam_energy"][0]) <= TOL * abs(REF["fparam_energy"][0])


def test_init_model_needs_the_inputs_numb_fparam(tmp_path):
    """--init-model of a model with frame parameters: the input must declare as many (its
    networks are the model's); then the model's weights and statistics are taken."""
    from numdp.train.config import load_config
    from numdp.train.init_model import load_init_model

    toml = tmp_path / "t.toml"
    data = Path(__file__).resolve().parents[1] / "inputs" / "water" / "data" / "data_0"
    text = ('[model]\ntype_map = ["O", "H"]\n[model.descriptor]\nsel = [8, 16]\nrcut = 4.0\nrcut_smth = 1.0\n'
            'neuron = [4, 8, 16]\naxis_neuron = 3\nresnet_dt = true\ntype_one_side = false\n'
            '[model.fitting]\nneuron = [10, 10]\n'
            f'[training]\nsystems = ["{data}"]\nnumb_steps = 1\n')
    toml.write_text(text)
    with pytest.raises(InputError, match=r"fparam.dp: --init-model: \[model.fitting\] numb_fparam: the model has 2, "
                                         r"t.toml has 0; the networks must match"):
        load_init_model(DATA / "fparam.dp", load_config(toml))
    toml.write_text(text.replace("neuron = [10, 10]\n", "neuron = [10, 10]\nnumb_fparam = 2\n"))
    params = load_init_model(DATA / "fparam.dp", load_config(toml))
    assert np.array_equal(params.fitting.fparam_avg, read_model(DATA / "fparam.dp").fitting.fparam_avg)


def test_deepmd_kit_input_json_numb_fparam(tmp_path):
    """DeePMD-kit's input.json with fitting_net numb_fparam / default_fparam: read as given; a
    default of another length is named."""
    from numdp.train.config import load_config

    data = Path(__file__).resolve().parents[1] / "inputs" / "water" / "data" / "data_0"
    tree = {"model": {"type_map": ["O", "H"], "descriptor": {"type": "se_e2_a", "sel": [8, 16]},
                      "fitting_net": {"neuron": [10, 10], "numb_fparam": 2, "default_fparam": [1.0, 2.0]}},
            "learning_rate": {"start_lr": 1e-3}, "loss": {},
            "training": {"training_data": {"systems": [str(data)]}, "numb_steps": 1}}
    path = tmp_path / "input.json"
    path.write_text(json.dumps(tree))
    cfg = load_config(path)
    assert (cfg.fitting.numb_fparam, cfg.fitting.default_fparam) == (2, [1.0, 2.0])
    tree["model"]["fitting_net"]["default_fparam"] = [1.0]
    path.write_text(json.dumps(tree))
    with pytest.raises(InputError, match=r"\[model.fitting_net\] default_fparam: has 1 values, numb_fparam is 2"):
        load_config(path)


def test_ipi_needs_a_default(capsys):
    """numdp ipi (i-PI sends no frame parameters) refuses a model without default_fparam before
    connecting."""
    from numdp.cli import main

    assert main(["ipi", "-m", str(DATA / "fparam.dp"), "--unix", "nobody", "--types", "O", "H",
                 "--wait", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert re.search(r"fparam.dp: the model takes 2 frame parameter\(s\) \(numb_fparam\) and has no "
                     r"default_fparam, and i-PI passes none: numdp ipi serves a model with frame parameters at "
                     r"its default_fparam$", err), err
    assert "give fparam" not in err   # (numdp ipi has no way to give them)


def test_deepmd_kit_fparam_example(tmp_path, monkeypatch, capsys):
    """DeePMD-kit's own fparam example (examples/fparam: Be, the electronic temperature as the
    frame parameter; tests/data/deepmd_kit_inputs, tools/make_json_fixtures.py): its train
    input.json as published and as DeePMD-kit normalises it give the same training; it trains
    (run shortened) on systems laid out as the example's (../data/e3000_i2000, e8000_i2000, a
    constant fparam.npy each, labels of a teacher model), with the two temperatures' mean and
    deviation as the model's statistics; and its LAMMPS script (pair_style deepmd ... fparam
    0.25852028, the model file renamed) runs with numdp lmp."""
    from numdp.cli import main
    from numdp.io.structure import read_lammps_data
    from numdp.train.config import load_config
    from test_train_run import write_system

    inputs = Path(__file__).resolve().parent / "data" / "deepmd_kit_inputs"
    raw = json.loads((inputs / "fparam.json").read_text())
    full = json.loads((inputs / "fparam.out.json").read_text())
    from randmodel import random_params

    teacher = random_params(ntypes=1, sel=[60], neuron=(4, 8), axis_neuron=2, fitting=(8, 8), rcut=6.0,
                            rcut_smth=1.8, seed=9, numb_fparam=1)
    teacher.type_map = ["Be"]
    temps = {"e3000_i2000": 0.25852028, "e8000_i2000": 0.68938740}   # eV, the example's values
    for k, (name, t) in enumerate(temps.items()):
        write_system(tmp_path / "data" / name, teacher, 8, 3, True, 70 + 10 * k, fparam=np.full((3, 1), t),
                     ntypes=1)
    work = tmp_path / "train"
    work.mkdir()
    monkeypatch.chdir(work)
    for tree in (raw, full):
        tree["training"]["stop_batch" if "stop_batch" in tree["training"] else "numb_steps"] = 4
        tree["training"].pop("numb_steps" if "stop_batch" in tree["training"] else "stop_batch", None)
    (work / "input.json").write_text(json.dumps(raw))
    (work / "out.json").write_text(json.dumps(full))
    a, b = load_config("input.json"), load_config("out.json")
    b.text, b.source = a.text, a.source
    assert (a.training.save_ckpt.name, b.training.save_ckpt.name) == ("model.ckpt", "model.ckpt")
    assert a == b and a.fitting.numb_fparam == 1
    assert main(["train", "input.json"]) == 0
    model = read_model(work / "model.h5")
    assert model.fitting.fparam_avg[0] == pytest.approx(np.mean(list(temps.values())), rel=1e-12)
    assert 1.0 / model.fitting.fparam_inv_std[0] == pytest.approx(np.std(list(temps.values())), rel=1e-9)
    lmp = tmp_path / "lmp"
    lmp.mkdir()
    (lmp / "conf.lmp").write_text((inputs / "fparam_conf.lmp").read_text())
    script = (inputs / "fparam_in.lammps").read_text().replace("frozen_model.pb", str(work / "model.h5"))
    script = script.replace("run             1000", "run             5")
    (lmp / "in.lammps").write_text(script)
    monkeypatch.chdir(lmp)
    capsys.readouterr()
    assert main(["lmp", "-i", "in.lammps", "--print-toml"]) == 0
    assert "fparam = [0.25852028]" in capsys.readouterr().out
    assert main(["lmp", "-i", "in.lammps"]) == 0
    pos = read_lammps_data(lmp / "conf.lmp").positions
    step0 = numdp.load_model(work / "model.h5", nthreads=1, fparam=[0.25852028]).evaluate(
        pos, np.zeros(len(pos), np.int32), np.diag([10.42807993] * 3)).energy
    log = (lmp / "log.lammps").read_text().splitlines()
    header = next(i for i, l in enumerate(log) if l.split()[:2] == ["Step", "PotEng"])
    assert float(log[header + 1].split()[1]) == pytest.approx(step0, rel=1e-6)
