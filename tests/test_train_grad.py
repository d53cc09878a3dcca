"""Training passes: primal equals the Evaluator; the hand-derived loss gradient equals central
finite differences of the loss for every parameter array (embedding and fitting W, b, idt)."""
import numpy as np
import pytest

from numdp.model.evaluator import Evaluator
from numdp.neighbor import build_nlist, extend
from numdp.train.flat import FlatParams
from numdp.train.loss import Labels, LossStats, Prefactors
from numdp.train.passes import Frame, ModelPasses
from randmodel import random_config, random_params
from tests_util import U64, order_bound

# (ntypes, neuron, type_one_side, resnet_dt, fitting, natoms); the first three have idt arrays
HYPER = [
    (2, (4, 8), True, True, (8, 8), 16),
    (2, (4, 8), False, True, (8, 8), 16),
    (1, (1, 2, 2), False, True, (6, 12), 12),    # residual on layer 1; fitting doubles
    (3, (3, 5), True, False, (7,), 18),          # no residual and no idt anywhere
]


def make_case(ntypes, neuron, tos, resnet_dt, fitting, natoms, periodic, seed=0):
    params = random_params(ntypes=ntypes, sel=[24] * ntypes, neuron=neuron, axis_neuron=2,
                           type_one_side=tos, resnet_dt=resnet_dt, fitting=fitting, rcut=4.0,
                           rcut_smth=1.0, seed=seed)
    pos, types, box = random_config(natoms, ntypes, box_len=6.0 if periodic else None, tilt=0.3,
                                    seed=seed + 1)
    d = params.descriptor
    ext = extend(pos, types, box, d.rcut)
    nl = build_nlist(ext, d.rcut, d.sel, d.ntypes)
    assert not nl.overflowed
    # some padding in every block, so that the padding embedding carries gradient
    assert (nl.nlist < 0).any()
    return params, Frame(ext.positions, nl.nlist, types, ext.mapping), ext, nl


def labels_for(result, rng, virial):
    return Labels(result.energy + rng.normal(0.0, 0.5),
                  result.forces + rng.normal(0.0, 0.5, result.forces.shape),
                  result.virial + rng.normal(0.0, 0.5, (3, 3)) if virial else None)


@pytest.mark.parametrize("hyper", HYPER, ids=lambda h: f"nt{h[0]}-tos{h[2]}-idt{h[3]}")
@pytest.mark.parametrize("periodic", [True, False], ids=["pbc", "nopbc"])
def test_primal_equals_evaluator(hyper, periodic):
    params, frame, ext, nl = make_case(*hyper, periodic)
    raw = Evaluator(params).compute(ext.positions, nl.nlist, frame.types)
    forces = np.zeros((frame.nloc, 3))
    np.add.at(forces, ext.mapping, raw.force)
    for nthreads in (1, 2):
        flat = FlatParams.bind(params)
        passes = ModelPasses(params, flat, nthreads)
        res = passes.primal(frame)
        passes.close()
        # two implementations (training passes, inference evaluator) order their sums differently:
        # chains of < 120 terms (<= 72 neighbours, 16 inputs, 12 hidden, 18 atoms), so
        # order_bound(U64, 120) = 2.7e-13 < 1e-12
        scale = abs(raw.atom_energy).max()
        assert np.allclose(res.atom_energy, raw.atom_energy, rtol=0, atol=1e-12 * scale)
        assert abs(res.energy - raw.atom_energy.sum()) <= 1e-12 * abs(raw.atom_energy).sum()
        assert np.allclose(res.forces, forces, rtol=0, atol=1e-12 * abs(forces).max())
        assert np.allclose(res.virial, raw.virial, rtol=0, atol=1e-12 * abs(raw.virial).max())


def _loss_and_grad(passes, flat, frame, labels, pref, want_grad=True):
    st = LossStats()
    res = passes.primal(frame)
    seeds = st.add_frame(res, labels, pref, 1)
    if not want_grad:
        return st.loss_sum, None
    passes.zero_grad()
    passes.gradient(seeds.c_e, seeds.u, seeds.eps, seeds.c_f, seeds.c_v)
    return st.loss_sum, passes.total_grad()


@pytest.mark.parametrize("hyper", HYPER, ids=lambda h: f"nt{h[0]}-tos{h[2]}-idt{h[3]}")
@pytest.mark.parametrize("periodic", [True, False], ids=["pbc", "nopbc"])
@pytest.mark.parametrize("virial", [True, False], ids=["virial", "novirial"])
def test_gradient_matches_finite_differences(hyper, periodic, virial):
    params, frame, _, _ = make_case(*hyper, periodic)
    flat = FlatParams.bind(params)
    passes = ModelPasses(params, flat, nthreads=2)
    rng = np.random.default_rng(7)
    labels = labels_for(passes.primal(frame), rng, virial)
    pref = Prefactors(e=0.7, f=2.0, v=0.3)
    theta0 = flat.theta.copy()
    _, g = _loss_and_grad(passes, flat, frame, labels, pref)
    gscale = np.abs(g).max()
    assert gscale > 0

    def loss_at(theta):
        flat.theta[:] = theta
        return _loss_and_grad(passes, flat, frame, labels, pref, want_grad=False)[0]

    h = 1e-6
    checked = set()
    for name, a, b in flat.names:
        assert np.abs(g[a:b]).max() > 0, f"{name}: zero gradient"
        for k in rng.choice(np.arange(a, b), size=min(4, b - a), replace=False):
            tp, tm = theta0.copy(), theta0.copy()
            tp[k] += h
            tm[k] -= h
            fd = (loss_at(tp) - loss_at(tm)) / (2 * h)
            assert abs(fd - g[k]) <= 1e-6 * gscale + 1e-5 * abs(fd), (name, k, fd, g[k])
        checked.add(name.split(".")[-1])
    assert checked == ({"w", "b", "idt"} if hyper[3] else {"w", "b"})
    # one directional derivative over all parameters at once
    v = rng.normal(size=theta0.shape)
    h = 1e-6 / np.sqrt(v.size)
    fd = (loss_at(theta0 + h * v) - loss_at(theta0 - h * v)) / (2 * h)
    assert abs(fd - g @ v) <= 1e-6 * abs(g @ v) + 1e-8 * np.abs(g).sum(), (fd, g @ v)
    passes.close()


def test_padding_embedding_gradient_is_included():
    """A model whose atoms have no neighbours at all: the loss depends on the embedding nets only
    through the padding rows, and their gradient must still be exact."""
    params = random_params(ntypes=2, sel=[6, 6], neuron=(3, 6), axis_neuron=2, type_one_side=False,
                           fitting=(5,), rcut=2.0, rcut_smth=0.5, seed=4)
    pos = np.array([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    types = np.array([0, 1, 1], dtype=np.int32)
    d = params.descriptor
    ext = extend(pos, types, None, d.rcut)
    nl = build_nlist(ext, d.rcut, d.sel, d.ntypes)
    frame = Frame(ext.positions, nl.nlist, types, ext.mapping)
    flat = FlatParams.bind(params)
    passes = ModelPasses(params, flat, nthreads=1)
    labels = Labels(passes.primal(frame).energy + 1.0, None, None)
    pref = Prefactors(e=1.0, f=0.0, v=0.0)
    _, g = _loss_and_grad(passes, flat, frame, labels, pref)
    theta0 = flat.theta.copy()
    a, b = next((a, b) for name, a, b in flat.names if name == "embedding[1].layer[0].w")
    h = 1e-6
    for k in range(a, b):
        flat.theta[:] = theta0
        flat.theta[k] += h
        lp = _loss_and_grad(passes, flat, frame, labels, pref, want_grad=False)[0]
        flat.theta[:] = theta0
        flat.theta[k] -= h
        lm = _loss_and_grad(passes, flat, frame, labels, pref, want_grad=False)[0]
        fd = (lp - lm) / (2 * h)
        assert abs(g[k]) > 0
        assert abs(fd - g[k]) <= 1e-6 * abs(g).max(), (k, fd, g[k])


def test_gradient_independent_of_thread_count():
    params, frame, _, _ = make_case(*HYPER[0], periodic=True)
    flat = FlatParams.bind(params)
    rng = np.random.default_rng(3)
    grads = []
    for nthreads in (1, 2, 3):
        passes = ModelPasses(params, flat, nthreads)
        if not grads:
            labels = labels_for(passes.primal(frame), rng, True)
        _, g = _loss_and_grad(passes, flat, frame, labels, Prefactors(0.5, 1.0, 0.5))
        grads.append(g)
        passes.close()
    # each gradient entry sums over every pair and atom of the frame, split among the threads in
    # another order: chains of at most nloc * nnei + the widest layer terms
    n = frame.types.shape[0] * params.descriptor.nnei + params.descriptor.dim_out
    for g in grads[1:]:
        assert np.allclose(g, grads[0], rtol=0, atol=order_bound(U64, n) * np.abs(grads[0]).max())
