"""Training passes: primal equals the Evaluator; the hand-derived loss gradient equals central
finite differences of the loss for every parameter array (embedding and fitting W, b, idt), with
tanh and with each of DeePMD-kit's other activation functions."""
import numpy as np
import pytest

from numdp.model.evaluator import Evaluator
from numdp.neighbor import build_nlist, extend
from numdp.train.flat import FlatParams
from numdp.train.loss import Labels, LossStats, Prefactors
from numdp.train.passes import Frame, ModelPasses
from randmodel import random_config, random_params
from tests_util import U64, order_bound

# (ntypes, neuron, type_one_side, resnet_dt, fitting, natoms, exclude_types); the first three
# and the last have idt arrays
HYPER = [
    (2, (4, 8), True, True, (8, 8), 16, ()),
    (2, (4, 8), False, True, (8, 8), 16, ()),
    (1, (1, 2, 2), False, True, (6, 12), 12, ()),    # residual on layer 1; fitting doubles
    (3, (3, 5), True, False, (7,), 18, ()),          # no residual and no idt anywhere
    # excluded type pairs: A-B neighbours add nothing (the nets of A-B blocks see only padding),
    # B-B too; one-sided, so net B serves A centres' padding and nothing else of theirs
    (2, (4, 8), True, True, (8, 8), 16, ([0, 1], [1, 1])),
]


def _ids(h):
    return f"nt{h[0]}-tos{h[2]}-idt{h[3]}" + ("-excl" if h[6] else "")


def make_case(ntypes, neuron, tos, resnet_dt, fitting, natoms, exclude_types, periodic, seed=0,
              activation="tanh", fit_activation=None, numb_fparam=0):
    params = random_params(ntypes=ntypes, sel=[24] * ntypes, neuron=neuron, axis_neuron=2,
                           type_one_side=tos, resnet_dt=resnet_dt, fitting=fitting, rcut=4.0,
                           rcut_smth=1.0, seed=seed, exclude_types=exclude_types,
                           activation=activation, fit_activation=fit_activation, numb_fparam=numb_fparam)
    pos, types, box = random_config(natoms, ntypes, box_len=6.0 if periodic else None, tilt=0.3,
                                    seed=seed + 1)
    d = params.descriptor
    ext = extend(pos, types, box, d.rcut)
    nl = build_nlist(ext, d.rcut, d.sel, d.ntypes)
    assert not nl.overflowed
    # some padding in every block, so that the padding embedding carries gradient
    assert (nl.nlist < 0).any()
    fparam = np.random.default_rng(seed + 2).normal(0.0, 2.0, numb_fparam) if numb_fparam else None
    return params, Frame(ext.positions, nl.nlist, types, ext.mapping, fparam), ext, nl


def labels_for(result, rng, virial):
    return Labels(result.energy + rng.normal(0.0, 0.5),
                  result.forces + rng.normal(0.0, 0.5, result.forces.shape),
                  result.virial + rng.normal(0.0, 0.5, (3, 3)) if virial else None)


@pytest.mark.parametrize("hyper", HYPER, ids=_ids)
@pytest.mark.parametrize("periodic", [True, False], ids=["pbc", "nopbc"])
def test_primal_equals_evaluator(hyper, periodic):
    _check_primal(*make_case(*hyper, periodic))


def _check_primal(params, frame, ext, nl):
    from numdp.model.params import fold_frame_inputs as fold_fparam

    model = params if frame.fparam is None else fold_fparam(params, frame.fparam)
    raw = Evaluator(model).compute(ext.positions, nl.nlist, frame.types)
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


@pytest.mark.parametrize("hyper", HYPER, ids=_ids)
@pytest.mark.parametrize("periodic", [True, False], ids=["pbc", "nopbc"])
@pytest.mark.parametrize("virial", [True, False], ids=["virial", "novirial"])
def test_gradient_matches_finite_differences(hyper, periodic, virial):
    params, frame, _, _ = make_case(*hyper, periodic)
    _check_gradient(params, frame, virial, {"w", "b", "idt"} if hyper[3] else {"w", "b"})


# DeePMD-kit's activation functions other than tanh (numdp.model.activation), each in the
# embedding and the fitting nets (they run the *_act kernels), on a two-type one-sided model and
# a one-type model whose embedding layer 1 has a residual and whose fitting nets double
OTHER_ACTS = ["gelu", "relu", "relu6", "softplus", "sigmoid", "silu", "none"]


@pytest.mark.parametrize("act", OTHER_ACTS)
@pytest.mark.parametrize("hyper", [HYPER[0], HYPER[2]], ids=_ids)
def test_other_activations(act, hyper):
    """The primal against the Evaluator and the gradient against finite differences.  relu and
    relu6 have kinks; the central differences (θ ± 1e-6) of this fixed case cross none of them."""
    # relu's and relu6's zero slope below 0 can silence the one-unit layer 1 of HYPER[2] for every
    # pair (a zero gradient there, rightly): seed 1 keeps it active
    seed = 1 if act in ("relu", "relu6") and hyper is HYPER[2] else 0
    case = make_case(*hyper, True, seed=seed, activation=act)
    assert case[0].descriptor.activation == case[0].fitting.activation == act
    _check_primal(*case)
    _check_gradient(case[0], case[1], True, {"w", "b", "idt"})


@pytest.mark.parametrize("hyper", [HYPER[0], HYPER[1]], ids=_ids)
def test_frame_parameters(hyper):
    """A model with frame parameters (numb_fparam 2): the fitting input [D, f̂] (numdp's
    evaluator folds f̂ into the first layer's bias instead) and the gradient of the parameters'
    weight rows, whose tangent is zero, against finite differences."""
    case = make_case(*hyper, True, numb_fparam=2)
    assert case[0].fitting.numb_fparam == 2 and case[1].fparam is not None
    _check_primal(*case)
    _check_gradient(case[0], case[1], True, {"w", "b", "idt"})
    other = make_case(*hyper, True, numb_fparam=2)
    other[1].fparam = other[1].fparam + 1.0   # the parameters move the energy
    passes = ModelPasses(case[0], FlatParams.bind(case[0]), 1)
    assert abs(passes.primal(other[1]).energy - passes.primal(case[1]).energy) > 1e-6
    passes.close()


def test_embedding_and_fitting_activations_apart():
    """Different activations in the embedding (gelu) and the fitting nets (silu): each net runs
    its own (a swapped code would fail the finite differences)."""
    case = make_case(*HYPER[0], True, activation="gelu", fit_activation="silu")
    assert (case[0].descriptor.activation, case[0].fitting.activation) == ("gelu", "silu")
    _check_primal(*case)
    _check_gradient(case[0], case[1], False, {"w", "b", "idt"})


def _check_gradient(params, frame, virial, kinds):
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
    assert checked == kinds
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


def test_reused_passes_start_every_gradient_afresh():
    """After `zero_grad`, a gradient has no trace of the previous one: a frame without atoms of
    type 1 after one with them gives exactly the gradient of fresh passes, with an exactly zero
    fitting net 1 (weight matrices are not zeroed by `zero_grad` but left to the first product
    that writes them; those no product writes are zeroed at the end of the pass)."""
    params, frame, _, _ = make_case(*HYPER[0], periodic=True)
    d = params.descriptor
    pos, _, box = random_config(12, 1, box_len=6.0, tilt=0.3, seed=21)
    types = np.zeros(12, np.int32)
    ext = extend(pos, types, box, d.rcut)
    nl = build_nlist(ext, d.rcut, d.sel, d.ntypes)
    only0 = Frame(ext.positions, nl.nlist, types, ext.mapping)
    assert (frame.types == 1).any()
    flat = FlatParams.bind(params)
    rng = np.random.default_rng(5)
    pref = Prefactors(0.5, 1.0, 0.5)
    for nthreads in (1, 2):
        used = ModelPasses(params, flat, nthreads)
        _loss_and_grad(used, flat, frame, labels_for(used.primal(frame), rng, True), pref)
        labels = labels_for(used.primal(only0), rng, True)
        _, g = _loss_and_grad(used, flat, only0, labels, pref)
        used.close()
        fresh = ModelPasses(params, flat, nthreads)
        _, g_fresh = _loss_and_grad(fresh, flat, only0, labels, pref)
        fresh.close()
        assert np.array_equal(g, g_fresh)
        fit1 = [(a, b) for name, a, b in flat.names if name.startswith("fitting[1].")]
        assert fit1 and all(not g[a:b].any() for a, b in fit1)
        assert np.abs(g).max() > 0


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


def test_split_frame_fitting_weights_in_row_zero_alone():
    """A frame split by atoms over 2 threads: the fitting nets' hidden-layer weight adjoints are
    formed over the whole frame into row 0 alone (`ModelPasses.segments` says so, and what row 1
    holds there is never read); everything else sums both rows."""
    params, frame, _, _ = make_case(*HYPER[0], periodic=True)
    flat = FlatParams.bind(params)
    passes = ModelPasses(params, flat, 2)
    labels = labels_for(passes.primal(frame), np.random.default_rng(8), True)
    _, g = _loss_and_grad(passes, flat, frame, labels, Prefactors(0.5, 1.0, 0.5))
    hidden = {s.w[:2] for net in flat.fitting for s in net[:-1]}
    assert {(a, b) for a, b, k in passes.segments if k == 1} == hidden  # the rest: k = 2
    passes.grads[1, [a for a, _ in hidden]] = np.nan
    assert np.array_equal(passes.total_grad(), g)
    passes.close()


def optimiser_states_fused_and_not(params, frames, make_labels, natoms_weight, check_updated=True):
    """(θ, m, v) after three Adam steps of ModelPasses on 2 threads over `frames`, without and with
    the optimiser's `update` given to `frames` (the early step of the fitting hidden-layer weights):
    a list of the two states.  make_labels(passes) -> the labels of each frame."""
    from numdp.train.optim import Adam

    labels = None
    states = []
    for fused in (False, True):
        flat = FlatParams.bind(params)
        theta0 = flat.theta.copy()
        passes = ModelPasses(params, flat, 2)
        if labels is None:
            labels = make_labels(passes)
        opt = Adam(flat.size)
        for _ in range(3):
            passes.zero_grad()
            upd = opt.row_update(flat.theta, passes.grads, 1e-2) if fused else None
            seeds_of = lambda i, res: LossStats().add_frame(res, labels[i], Prefactors(0.5, 1.0, 0.5),  # noqa: E731
                                                            natoms_weight)
            passes.frames(frames, seeds_of, upd)
            if check_updated:
                assert bool(passes.updated) == fused
            opt.step(flat.theta, passes.grads, 1e-2, passes.split, passes.segments, passes.updated)
        states.append((flat.theta.copy(), opt.m.copy(), opt.v.copy()))
        passes.close()
        flat.theta[:] = theta0  # the model's arrays are views of θ: back to the start
    return states


def test_weights_updated_in_the_gradient_pass_as_by_the_optimiser():
    """A frame split by atoms over 2 threads, with the optimiser's `update` given to `frames`:
    the workers step the fitting hidden-layer weights as soon as their gradient is complete and
    the optimiser then skips them; θ, m and v after three steps are bit for bit those of the
    plain optimiser step after the pass."""
    params, frame, _, _ = make_case(*HYPER[0], periodic=True)
    states = optimiser_states_fused_and_not(
        params, [frame], lambda passes: [labels_for(passes.primal(frame), np.random.default_rng(9), True)], 1)
    for a, b in zip(*states):
        assert np.array_equal(a, b)


def test_worker_error_in_the_gradient_pass_is_raised_not_a_hang():
    """An error in one worker before the gradient pass's barrier breaks it for the others: the
    call raises that error (not BrokenBarrierError), and the passes work again afterwards."""
    params, frame, _, _ = make_case(*HYPER[0], periodic=True)
    flat = FlatParams.bind(params)
    passes = ModelPasses(params, flat, 2)
    labels = labels_for(passes.primal(frame), np.random.default_rng(8), True)
    _, g = _loss_and_grad(passes, flat, frame, labels, Prefactors(0.5, 1.0, 0.5))
    real = passes._backward_pass

    def failing(w, *a):
        if w == 1:
            raise ValueError("worker 1 failed")
        return real(w, *a)

    passes._backward_pass = failing
    with pytest.raises(ValueError, match="worker 1 failed"):
        _loss_and_grad(passes, flat, frame, labels, Prefactors(0.5, 1.0, 0.5))
    passes._backward_pass = real
    _, again = _loss_and_grad(passes, flat, frame, labels, Prefactors(0.5, 1.0, 0.5))
    assert np.array_equal(g, again)
    passes.close()


def _batch_case(nframes=5):
    """One model and `nframes` periodic frames of it (different configurations and sizes)."""
    params, frame, _, _ = make_case(*HYPER[1], periodic=True)
    d = params.descriptor
    frames = [frame]
    for s in range(1, nframes):
        pos, types, box = random_config(14 + s, d.ntypes, box_len=6.0, tilt=0.3, seed=10 + s)
        ext = extend(pos, types, box, d.rcut)
        nl = build_nlist(ext, d.rcut, d.sel, d.ntypes)
        assert not nl.overflowed
        frames.append(Frame(ext.positions, nl.nlist, types, ext.mapping))
    return params, frames


def _batch_grad(params, flat, frames, labels, pref, nthreads):
    """frames() over the batch: (results, ∂L/∂θ)."""
    passes = ModelPasses(params, flat, nthreads)
    n = len(frames)
    passes.zero_grad()
    results = passes.frames(frames, lambda i, res: LossStats().add_frame(res, labels[i], pref, n))
    g = passes.total_grad()
    passes.close()
    return results, g


def test_frames_in_parallel_equal_frame_by_frame_passes():
    """`frames` (frames dealt whole to the workers, the rest split by atoms) gives the results and
    the batch gradient of one frame after the other, for 1-3 threads (5 frames: whole rounds and
    a remainder), and the same bits when called again with the same thread count."""
    params, frames = _batch_case(5)
    flat = FlatParams.bind(params)
    rng = np.random.default_rng(11)
    pref = Prefactors(0.5, 1.0, 0.5)
    serial = ModelPasses(params, flat, 1)
    labels, ref_res = [], []
    serial.zero_grad()
    for fr in frames:
        res = serial.primal(fr)
        labels.append(labels_for(res, rng, True))
        seeds = LossStats().add_frame(res, labels[-1], pref, len(frames))
        serial.gradient(seeds.c_e, seeds.u, seeds.eps, seeds.c_f, seeds.c_v)
        ref_res.append(res)
    g_ref = serial.total_grad()
    serial.close()
    # the gradient sums every pair and atom of every frame (and the padding adjoints) in another
    # order: chains of at most Σ_f nloc_f * nnei + the widest layer terms
    d = params.descriptor
    n = sum(fr.nloc for fr in frames) * d.nnei + d.dim_out
    tol = order_bound(U64, n) * np.abs(g_ref).max()
    for nthreads in (1, 2, 3):
        results, g = _batch_grad(params, flat, frames, labels, pref, nthreads)
        assert np.abs(g - g_ref).max() <= tol, (nthreads, np.abs(g - g_ref).max(), tol)
        for res, ref in zip(results, ref_res):
            # one frame: chains of nloc * nnei terms at most (order_bound(U64, 1e3) = 2.2e-12)
            fb = order_bound(U64, frames[0].nloc * d.nnei + d.dim_out)
            assert abs(res.energy - ref.energy) <= fb * np.abs(ref.atom_energy).sum()
            assert np.abs(res.forces - ref.forces).max() <= fb * np.abs(ref.forces).max()
            assert np.abs(res.virial - ref.virial).max() <= fb * np.abs(ref.virial).max()
        _, again = _batch_grad(params, flat, frames, labels, pref, nthreads)
        assert np.array_equal(g, again), nthreads


def test_frames_batch_gradient_matches_finite_differences():
    """The batch loss (mean over frames) through `frames` on 2 threads: its gradient equals
    central differences along a random direction of all parameters."""
    params, frames = _batch_case(3)
    flat = FlatParams.bind(params)
    rng = np.random.default_rng(12)
    pref = Prefactors(0.5, 1.0, 0.5)
    probe = ModelPasses(params, flat, 1)
    labels = [labels_for(probe.primal(fr), rng, True) for fr in frames]
    probe.close()
    _, g = _batch_grad(params, flat, frames, labels, pref, 2)
    theta0 = flat.theta.copy()

    def loss_at(theta):
        flat.theta[:] = theta
        passes = ModelPasses(params, flat, 2)
        st = LossStats()
        for res, lab in zip(passes.frames(frames), labels):
            st.add_frame(res, lab, pref, len(frames))
        passes.close()
        return st.loss_sum

    v = rng.normal(size=theta0.shape)
    h = 1e-6 / np.sqrt(v.size)
    fd = (loss_at(theta0 + h * v) - loss_at(theta0 - h * v)) / (2 * h)
    flat.theta[:] = theta0
    # as test_gradient_matches_finite_differences: truncation O(h²) and cancellation in the loss
    assert abs(fd - g @ v) <= 1e-6 * abs(g @ v) + 1e-8 * np.abs(g).sum(), (fd, g @ v)


def test_row_tangent_is_the_jacobian_of_the_environment_row():
    """The shared scalar Jacobian (numdp.kernels.math): row_tangent(q) equals central differences
    of env_row along q, and is the transpose of row_grad_to_dvec (g · J q = Jᵀg · q), on both
    sides of rcut_smth."""
    from numdp.kernels.math import CPU

    rng = np.random.default_rng(21)
    rmin, rmax = 1.0, 4.0
    for r in (0.7, 1.5, 2.9, 3.8):
        d = rng.normal(size=3)
        d *= r / np.linalg.norm(d)
        q = rng.normal(size=3)
        g = rng.normal(size=4)

        def raw(x):
            _, s0, s1 = CPU.env_row(x[0], x[1], x[2], rmin, rmax)
            return np.array([s0, s1 * x[0], s1 * x[1], s1 * x[2]])

        jq = np.array(CPU.row_tangent(*q, *d, rmin, rmax))
        h = 1e-5
        fd = (raw(d + h * q) - raw(d - h * q)) / (2 * h)
        # central differences: truncation h²/6 |q|³ |R'''|, with |R'''| <~ 10 |R'| here (the
        # switch's derivatives carry 1/(rmax - rmin)^k, rmax - rmin = 3): < 1e-8 |Jq|; rounding:
        # R's terms reach 32 / r (1 + 10 + 15 + 6 in the switch polynomial), each within u, so
        # 32 u |q| / (r h) on the quotient (|q| < 3 here)
        tol = 1e-8 * np.abs(jq).max() + 32 * U64 * 3.0 / (min(r, 1.0) * h)
        assert np.abs(jq - fd).max() <= tol, (r, jq, fd)
        jtg = np.array(CPU.row_grad_to_dvec(*g, *d, rmin, rmax))
        # two orders of the same 12 products: order_bound(U64, 12)
        assert abs(g @ jq - jtg @ q) <= order_bound(U64, 12) * np.abs(g).sum() * np.abs(jq).sum()


@pytest.mark.parametrize("act", ["tanh", "gelu", "softplus", "relu"])
@pytest.mark.parametrize("mode", [0, 1, 2])
@pytest.mark.parametrize("first", [True, False], ids=["layer1", "later"])
def test_rebuilt_layer_outputs_equal_the_forward_bit_for_bit(act, mode, first):
    """The embedding reverse rebuilds each block's layer inputs from the kept [h; dz/dx]
    (`rebuild_tangent`; [z; dz/dx] and `rebuild_tangent_act` for the other activations) instead
    of keeping them: they must be the forward's outputs exactly, so that the gradient is that of
    the forward pass that was evaluated."""
    from functools import partial

    from numdp.kernels.cpu import layers as L
    from numdp.model.activation import code

    if act == "tanh":
        first_keep, post_keep, rebuild = L.first_layer_tangent_keep, L.post_tangent_keep, L.rebuild_tangent
    else:
        first_keep, post_keep, rebuild = (partial(k, code(act)) for k in (
            L.first_layer_tangent_keep_act, L.post_tangent_keep_act, L.rebuild_tangent_act))
    rng = np.random.default_rng(mode + 3 * first)
    n, k = 37, 8
    n_in = 1 if first else {0: 5, 1: k, 2: k // 2}[mode]
    if first and mode:
        k = mode  # a residual on layer 1 needs width 1 (mode 1) or 2 (mode 2)
    w = rng.normal(size=(n_in, k))
    b, idt = rng.normal(size=k), rng.normal(size=k)
    Y = rng.normal(size=(2 * n, n_in))
    out = np.empty((2 * n, k))
    if first:
        Z = np.empty((2 * n, k))
        first_keep(Y[:n, 0].copy(), w[0], b, idt, mode, out[:n], out[n:], Z)
    else:
        Z = Y @ w
        post_keep(Z, b, idt, Y, mode, out[:n], out[n:])
    again = np.empty_like(out)
    rebuild(Z, idt, Y, mode, first, again[:n], again[n:])
    assert np.array_equal(again, out)
