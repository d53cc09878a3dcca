"""DeePMD-kit's activation functions (numdp.model.activation): models built and evaluated by
DeePMD-kit itself (tests/data/activations, tools/make_activation_fixtures.py) against numdp's CPU
paths: double (the oracle's tolerance), forces and virial as derivatives, mix32, compressed;
the generic kernels against the fused tanh ones; --init-model checks the input's function
(training with each is tested in test_train_grad and test_train_run)."""
import functools
import json
from pathlib import Path

import numpy as np
import pytest

import numdp
from numdp.errors import InputError
from numdp.io.model_file import read_model, write_model
from numdp.kernels.cpu import layers as K
from numdp.kernels.math import GELU_A, GELU_C
from numdp.model.activation import NAMES, Activation, canonical, derivatives
from numdp.model.compress import compress
from numdp.model.dp_model import DPModel
from test_oracle import TOL
from tests_util import U32, U64, fd_force, order_bound, rel

DATA = Path(__file__).resolve().parent / "data" / "activations"
REF = np.load(DATA / "reference.npz")
ACTS = json.loads(str(REF["meta"]))["activations"]
H = 1e-5


def frames(act):
    return [(REF[f"{act}_coord"][f], REF[f"{act}_atype"], REF[f"{act}_box"][f]) for f in range(2)]


@pytest.mark.parametrize("act", ACTS)
def test_deepmd_kit_energies(act):
    model = numdp.load_model(DATA / f"{act}.dp", nthreads=1)
    assert model.params.descriptor.activation == model.params.fitting.activation == canonical(act)
    for f, (pos, types, box) in enumerate(frames(act)):
        out = model.evaluate(pos, types, box)
        assert rel(out.energy, REF[f"{act}_energy"][f]) <= TOL
        assert rel(out.atom_energies, REF[f"{act}_atom_energy"][f]) <= TOL
    if act != "tanh":   # the test tells the activations apart: the same weights under tanh are far off
        params = read_model(DATA / f"{act}.dp")
        for net in params.descriptor.embeddings + params.fitting.nets:
            for lay in net.layers:
                lay.activation = "tanh" if lay.activation != "none" or lay is not net.layers[-1] else "none"
        out = DPModel(params, nthreads=1).evaluate(*frames(act)[0])
        assert rel(out.atom_energies, REF[f"{act}_atom_energy"][0]) > 1e3 * TOL


@pytest.mark.parametrize("act", ACTS)
def test_forces_and_virial_are_derivatives(act):
    model = numdp.load_model(DATA / f"{act}.dp", nthreads=1)
    pos, types, box = frames(act)[0]
    out = model.evaluate(pos, types, box)
    scale = max(1.0, np.abs(out.forces).max())
    for i in (0, 5, 11):
        fd = [fd_force(model, pos, types, box, i, c, H) for c in range(3)]
        assert np.abs(out.forces[i] - fd).max() < 2e-7 * scale   # as test_model_physics
    vir = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            eps = np.zeros((3, 3))
            eps[a, b] = H
            e = [model.evaluate(pos @ (np.eye(3) + s * eps), types, box @ (np.eye(3) + s * eps),
                                atom_virial=False).energy for s in (1, -1)]
            vir[a, b] = -(e[0] - e[1]) / (2 * H)
    assert np.abs(out.virial - vir).max() < 2e-7 * max(1.0, np.abs(out.virial).max())


@pytest.mark.parametrize("act", ["gelu", "softplus", "silu"])
@pytest.mark.parametrize("precision", ["mix32", "mix16"])
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_low_precision_close_to_double(act, precision, device):
    """mix32 / mix16 on either device against the CPU's double: the bounds of test_compress's
    precision test (mix32: one float32 evaluation, chains of nnei + D width + fitting widths
    sums; mix16: 2e-2 from the half-precision operands)."""
    if device == "cuda":
        pytest.importorskip("numba_cuda")
    params = read_model(DATA / f"{act}.dp")
    pos, types, box = frames(act)[0]
    double = DPModel(params, nthreads=1).evaluate(pos, types, box)
    low = DPModel(params, nthreads=1, precision=precision, device=device).evaluate(pos, types, box)
    d = params.descriptor
    tol = order_bound(U32, d.nnei + d.dim_out + sum(params.fitting.nets[0].widths[1:])) / 2 \
        if precision == "mix32" else 2e-2
    assert 0 < rel(low.forces, double.forces) < tol


@pytest.mark.parametrize("act", ACTS)
def test_compressed(act, tmp_path):
    """Tables of the net (its value and first two derivatives from `derivatives`).  Quintic
    pieces at dx 0.001 interpolate a smooth net within (dx/2)^6/6! max|G^(6)|, far below double
    round-off, so the compressed model equals the network to round-off (the bound of two
    evaluations summing in another order).  A kink of relu or relu6 inside a table interval is
    not followed by the polynomial pieces: for those only the tables' own consistency (forces =
    -dE/dx of the compressed model) is asserted.  The fixtures' statistics vary by neighbour-type
    block: a table spanning the wrong block's range fails the bound by orders of magnitude."""
    params = read_model(DATA / f"{act}.dp")
    params.min_nbor_dist = 0.5
    cparams, _ = compress(params, dx=0.001, order=5)
    d = params.descriptor
    write_model(cparams, tmp_path / "c.dp")
    model = numdp.load_model(tmp_path / "c.dp", nthreads=1)
    assert model.compressed and model.params.descriptor.activation == canonical(act)
    pos, types, box = frames(act)[0]
    out = model.evaluate(pos, types, box)
    exact = DPModel(params, nthreads=1).evaluate(pos, types, box)
    if canonical(act) not in ("relu", "relu6"):
        n = d.nnei + d.dim_out + sum(params.fitting.nets[0].widths[1:])
        scale = max(1.0, np.abs(exact.forces).max())   # as test_compress's per-block test
        assert np.abs(out.forces - exact.forces).max() < order_bound(U64, n) * scale
    for i, c in [(0, 0), (5, 1), (11, 2)]:
        assert abs(fd_force(model, pos, types, box, i, c, H) - out.forces[i, c]) < 2e-7 * np.abs(out.forces).max()


def numpy_derivatives(name: str, z: np.ndarray):
    """(h, dh/dz, d²h/dz²) of activation `name` at z in NumPy, written apart from the kernels'
    scalar functions (the reference they are tested against)."""
    z = np.asarray(z, dtype=np.float64)
    one, zero = np.ones_like(z), np.zeros_like(z)
    if name == "tanh":
        h = np.tanh(z)
        g = 1.0 - h * h
        return h, g, -2.0 * h * g
    if name == "gelu":
        u = GELU_C * (z + GELU_A * z ** 3)
        du = GELU_C * (1.0 + 3.0 * GELU_A * z * z)
        t = np.tanh(u)
        s = 1.0 - t * t                                   # tanh'(u)
        h = 0.5 * z * (1.0 + t)
        d1 = 0.5 * (1.0 + t) + 0.5 * z * s * du
        d2 = s * du + 0.5 * z * (-2.0 * t * s * du * du + s * 6.0 * GELU_C * GELU_A * z)
        return h, d1, d2
    if name == "relu":
        pos = z > 0.0
        return np.where(pos, z, 0.0), np.where(pos, one, zero), zero
    if name == "relu6":
        inside = (z > 0.0) & (z < 6.0)
        return np.clip(z, 0.0, 6.0), np.where(inside, one, zero), zero
    sig = 0.5 * (1.0 + np.tanh(0.5 * z))                   # σ(z) without overflow
    if name == "softplus":
        return np.logaddexp(0.0, z), sig, sig * (1.0 - sig)
    if name == "sigmoid":
        ds = sig * (1.0 - sig)
        return sig, ds, ds * (1.0 - 2.0 * sig)
    if name == "silu":
        ds = sig * (1.0 - sig)
        return z * sig, sig + z * ds, ds * (2.0 + z * (1.0 - 2.0 * sig))
    if name == "none":
        return z.copy(), one, zero
    raise ValueError(f"unknown activation {name!r}")


@functools.cache
def _scalar_kernel():
    """(kind, z (n,)) -> (n, 5): h, h' of CPU.activation, h, h', h'' of CPU.activation_curvature.
    One compiled kernel for every activation (the code is a run-time argument, as in the kernels
    that inline them), built once: each parametrization compiling its own took ~1-2 s."""
    from numba import njit

    from numdp.kernels.math import CPU

    act = CPU.activation
    curvature = CPU.activation_curvature

    @njit
    def kernel(kind, z):
        out = np.empty((z.size, 5))
        for i in range(z.size):
            out[i, 0], out[i, 1] = act(kind, z[i])
            out[i, 2], out[i, 3], out[i, 4] = curvature(kind, z[i])
        return out

    return kernel


@pytest.mark.parametrize("name", NAMES)
def test_scalar_activation_and_its_derivatives(name):
    """The kernels' scalar activation against `derivatives`, and each derivative against central
    differences of the one before (away from the kinks of relu and relu6)."""
    z = np.linspace(-7.3, 7.9, 41)
    h, d1, d2 = numpy_derivatives(name, z)
    got = _scalar_kernel()(int(Activation[name.upper()]), z)
    tables = np.stack(derivatives(name, z), axis=1)   # the same scalar, as the tables take it
    # two evaluations of a few operations (the kernels' tanh within 2 eps of NumPy's) relative
    # to the values' scale, |z| up to 8 multiplying the derivative's terms
    eps = np.finfo(float).eps
    assert np.abs(got[:, 0] - h).max() <= 32 * eps * max(1.0, np.abs(h).max())
    assert np.abs(got[:, 1] - d1).max() <= 32 * eps * max(1.0, np.abs(d1).max())
    assert np.array_equal(got[:, 2:4], got[:, :2])   # the same expressions for h and h'
    # h'' multiplies the tanh's error (which cancels in 1 - t², leaving it absolute) by terms up
    # to gelu's 0.5 z s 2 t u'² ≈ 0.01 |z|⁵ < (1 + |z|)³ at |z| < 8
    for h2 in (got[:, 4], tables[:, 2]):
        assert np.all(np.abs(h2 - d2) <= 64 * eps * max(1.0, np.abs(d2).max()) * (1.0 + np.abs(z)) ** 3)
    assert np.allclose(tables[:, :2], got[:, :2], rtol=0, atol=32 * eps * max(1.0, np.abs(d1).max(), np.abs(h).max()))
    e = 1e-5
    hp, d1p, _ = numpy_derivatives(name, z + e)
    hm, d1m, _ = numpy_derivatives(name, z - e)
    smooth = np.abs(np.abs(z - 3.0) - 3.0) > 2 * e if name == "relu6" else np.abs(z) > 2 * e
    assert np.allclose(((hp - hm) / (2 * e))[smooth], d1[smooth], rtol=0, atol=1e-8)
    assert np.allclose(((d1p - d1m) / (2 * e))[smooth], d2[smooth], rtol=0, atol=1e-8)


def test_generic_kernels_equal_the_fused_tanh_kernels():
    """The generic kernels with code tanh give what the fused tanh kernels give (same products,
    same order), to a few units of round-off (the fused tanh is numdp's vectorised one)."""
    rng = np.random.default_rng(4)
    n, n_in, k = 7, 5, 10
    Z = rng.normal(size=(2 * n, k))
    Y = rng.normal(size=(2 * n, n_in))
    b, idt = rng.normal(size=k), rng.normal(size=k)
    a = [np.empty((n, k)) for _ in range(4)]
    K.post_tangent(Z, b, idt, Y, 2, a[0], a[1])
    K.post_tangent_act(int(Activation.TANH), Z, b, idt, Y, 2, a[2], a[3])
    assert np.allclose(a[0], a[2], rtol=1e-15, atol=1e-15) and np.allclose(a[1], a[3], rtol=1e-15, atol=1e-15)
    x, w = rng.normal(size=n), rng.normal(size=k)
    f = [np.empty((2 * n, k)) for _ in range(2)]
    K.first_layer_tangent(x, w, b, idt, 0, f[0])
    K.first_layer_tangent_act(int(Activation.TANH), x, w, b, idt, 0, f[1])
    assert np.allclose(f[0], f[1], rtol=1e-15, atol=1e-15)
    Zf, Yf = rng.normal(size=(n, k)), rng.normal(size=(n, k))
    Hh, Dh, o1, o2 = (np.empty((n, k)) for _ in range(4))
    K.post_forward(Zf, b, idt, Yf, 1, Hh, o1)
    K.post_forward_act(int(Activation.TANH), Zf, b, idt, Yf, 1, Dh, o2)
    assert np.allclose(o1, o2, rtol=1e-15, atol=1e-15)
    gY = rng.normal(size=(n, k))
    g1, g2 = np.empty((n, k)), np.empty((n, k))
    K.back_tanh(gY, Hh, idt, g1)
    K.back_act(gY, Dh, idt, g2)
    assert np.allclose(g1, g2, rtol=1e-14, atol=1e-15)


def test_round_trips_and_show(tmp_path, capsys):
    params = read_model(DATA / "gelu.dp")
    for name in ("m.h5", "m.dp"):
        write_model(params, tmp_path / name)
        back = read_model(tmp_path / name)
        assert back.descriptor.activation == back.fitting.activation == "gelu"
    from numdp.cli import main

    assert main(["show", str(tmp_path / "m.dp"), "descriptor", "fitting-net"]) == 0
    assert capsys.readouterr().out.count("'activation_function': 'gelu'") == 2


def test_init_model_needs_the_inputs_activation(tmp_path):
    from numdp.train.config import load_config
    from numdp.train.init_model import load_init_model

    toml = tmp_path / "t.toml"
    data = Path(__file__).resolve().parents[1] / "inputs" / "water" / "data" / "data_0"
    toml.write_text('[model]\ntype_map = ["O", "H"]\n[model.descriptor]\nsel = [8, 16]\nrcut = 4.0\n'
                    'rcut_smth = 1.0\nneuron = [4, 8, 16]\naxis_neuron = 3\nresnet_dt = true\n'
                    'type_one_side = true\n[model.fitting]\nneuron = [10, 10]\n'
                    f'[training]\nsystems = ["{data}"]\nnumb_steps = 1\n')
    with pytest.raises(InputError, match=r"--init-model: \[model.descriptor\] activation_function: the model "
                                         r"has 'gelu', t.toml has 'tanh'"):
        load_init_model(DATA / "gelu.dp", load_config(toml))
    toml.write_text(toml.read_text().replace("type_one_side = true\n", 'type_one_side = true\n'
                                             'activation_function = "gelu_tf"\n'))
    with pytest.raises(InputError, match=r"\[model.fitting\] activation_function: the model has 'gelu', "
                                         r"t.toml has 'tanh'"):
        load_init_model(DATA / "gelu.dp", load_config(toml))
    toml.write_text(toml.read_text().replace("neuron = [10, 10]\n", 'neuron = [10, 10]\n'
                                             'activation_function = "gelu"\n'))
    params = load_init_model(DATA / "gelu.dp", load_config(toml))
    assert params.descriptor.activation == params.fitting.activation == "gelu"


def test_unknown_activation_named(tmp_path):
    import h5py

    src = DATA / "gelu.dp"
    dst = tmp_path / "x.dp"
    dst.write_bytes(src.read_bytes())
    with h5py.File(dst, "r+") as f:
        f.attrs["json"] = f.attrs["json"].replace('"gelu"', '"custom_silu:3.0"')
    with pytest.raises(InputError, match=r"activation 'custom_silu:3.0' is not supported \(numdp runs tanh, gelu"):
        read_model(dst)


@pytest.mark.parametrize("act", ["gelu", "relu6", "softplus", "silu"])
@pytest.mark.parametrize("embedding", ["gemm", "fused"])
def test_cuda_matches_cpu(act, embedding):
    """The CUDA kernels (Numba's simulator in CI) with another activation against the CPU double
    path: 1e-12 relative, the bound of tests/test_cuda_model.py (same float64 expressions,
    other summation orders), for both ways of running the embedding nets."""
    pytest.importorskip("numba_cuda")
    params = read_model(DATA / f"{act}.dp")
    pos, types, box = frames(act)[0]
    cpu = DPModel(params, nthreads=1).evaluate(pos, types, box)
    model = DPModel(params, nthreads=1, device="cuda")
    model._ev.embedding = embedding
    gpu = model.evaluate(pos, types, box)
    assert rel(gpu.energy, cpu.energy) < 1e-12
    assert rel(gpu.forces, cpu.forces) < 1e-12 and rel(gpu.virial, cpu.virial) < 1e-12
