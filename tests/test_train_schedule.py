"""Learning rate, prefactors (reference §7.1-7.2) and Adam (§7.3)."""
import math

import numpy as np
import pytest

from numdp.train.optim import Adam
from numdp.train.schedule import (CosineDecay, ExpDecay, PrefactorSchedule, Schedule, WSDDecay, WSDRule,
                                  effective_decay_steps)

EPS = np.finfo(float).eps


def test_water_example_schedule():
    """Reference §7.2: start 1e-3, stop 3.51e-8, decay_steps 5000 over 1M steps."""
    s = ExpDecay.create(1e-3, 3.51e-8, 5000, 1_000_000)
    assert s.decay_rate == pytest.approx(0.9500064, abs=1e-7)
    assert s.lr(0) == 1e-3 and s.lr(4999) == 1e-3
    assert s.lr(5000) == pytest.approx(1e-3 * s.decay_rate)
    assert s.lr(100_000) == pytest.approx(3.59e-4, rel=2e-3)
    assert s.lr(500_000) == pytest.approx(5.92e-6, rel=2e-3)
    assert s.lr(1_000_000) == pytest.approx(3.51e-8, rel=1e-9)
    assert s.lr(2_000_000) == 3.51e-8  # clipped at stop_lr


def test_decay_steps_reset_rule():
    assert effective_decay_steps(5000, 100_000) == 5000
    assert effective_decay_steps(5000, 900) == 900 // 100 + 1       # numb_steps // 10 <= 100
    assert effective_decay_steps(5000, 2000) == 100                 # numb_steps // 10 > 100
    assert effective_decay_steps(2000, 2000) == 100
    assert ExpDecay.create(1e-3, 1e-8, 5000, 500).decay_steps == 6


def test_exp_smooth_and_given_rate():
    """smooth: the exponent t / decay_steps, not its floor; a given rate is used as it is (no
    reset of decay_steps, whatever numb_steps) and the clip at stop_lr stays."""
    s = ExpDecay.create(1e-3, 1e-6, 100, 1000, smooth=True)
    r = (1e-6 / 1e-3) ** (100 / 1000)
    assert s.decay_rate == r
    for t in (0, 1, 50, 99, 100, 101, 999, 1000):
        assert s.lr(t) == max(1e-3 * r ** (t / 100), 1e-6)
    assert s.lr(1000) == pytest.approx(1e-6, rel=10 * EPS)
    assert s.lr(50) < s.lr(1) < s.lr(0)          # it moves within a decay period
    g = ExpDecay.create(1e-3, 1e-5, 5000, 100, rate=0.5)
    assert g.decay_steps == 5000 and g.decay_rate == 0.5  # no reset with a given rate
    g = ExpDecay.create(1e-3, 1e-5, 10, 100, rate=0.5)
    assert g.lr(9) == 1e-3 and g.lr(10) == 5e-4 and g.lr(25) == 2.5e-4
    assert g.lr(100) == 1e-5                     # 1e-3 · 0.5^10 < stop_lr: clipped


def test_cosine_decay():
    """start_lr at 0, the mean of start and stop half-way, stop_lr from the end on, and
    decreasing in between; a phase of 0 steps keeps start_lr."""
    c = CosineDecay(1e-3, 1e-5, 400)
    assert c.lr(0) == 1e-3
    assert c.lr(200) == pytest.approx(0.5 * (1e-3 + 1e-5), rel=4 * EPS)
    assert c.lr(400) == 1e-5 and c.lr(401) == 1e-5
    assert c.lr(100) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi / 4)), rel=4 * EPS)
    lrs = [c.lr(t) for t in range(401)]
    assert all(a > b for a, b in zip(lrs[:-1], lrs[1:]))
    assert CosineDecay(1e-3, 1e-5, 0).lr(5) == 1e-3


@pytest.mark.parametrize("rule, mid", [
    (WSDRule.INVERSE_LINEAR, 2.0 / (1.0 / 1e-5 + 1.0 / 1e-3)),   # the harmonic mean
    (WSDRule.COSINE, 0.5 * (1e-3 + 1e-5)),
    (WSDRule.LINEAR, 0.5 * (1e-3 + 1e-5)),
])
def test_wsd_phases(rule, mid):
    """Stable at start_lr, then the rule's curve over the decay phase (its mid-point as the rule
    says), stop_lr from the end; the decay phase is ⌊ratio · run steps⌋ steps, clamped to
    1..numb_steps."""
    w = WSDDecay.create(1e-3, 1e-5, 1000, 1000, 0.2, rule)
    assert (w.numb_steps, w.decay_steps) == (1000, 200)
    assert all(w.lr(t) == 1e-3 for t in (0, 1, 500, 799, 800))
    assert w.lr(900) == pytest.approx(mid, rel=8 * EPS)
    assert w.lr(999) < w.lr(900) < w.lr(801) < 1e-3
    assert w.lr(1000) == 1e-5 and w.lr(5000) == 1e-5
    assert WSDDecay.create(1e-3, 1e-5, 900, 1000, 0.99, rule).decay_steps == 900   # clamped to the phase
    assert WSDDecay.create(1e-3, 1e-5, 900, 1000, 1e-4, rule).decay_steps == 1     # at least one step


def test_warmup_then_decay():
    """A linear warmup from warmup_start_lr to start_lr, then the decay counted from the
    warmup's end; the loss prefactors follow lr / start_lr (at their limits while lr is 0)."""
    d = CosineDecay(1e-3, 1e-5, 300)
    s = Schedule(d, 100, 2e-4)
    assert s.lr(0) == 2e-4
    assert s.lr(50) == pytest.approx(6e-4, rel=4 * EPS)
    assert s.lr(99) < 1e-3 and s.lr(100) == 1e-3
    for t in (100, 150, 250, 399, 400, 500):
        assert s.lr(t) == d.lr(t - 100)
    assert (s.start_lr, s.stop_lr) == (1e-3, 1e-5)
    z = Schedule(ExpDecay.create(1e-3, 1e-5, 10, 90), 10, 0.0)
    assert z.lr(0) == 0.0 and z.lr(5) == 5e-4 and z.lr(10) == 1e-3
    p = PrefactorSchedule(0.02, 1.0, 1000.0, 1.0, 0.0, 0.0)
    at0 = p.at(z.lr(0), z.start_lr)
    assert (at0.e, at0.f) == (1.0, 1.0)
    at5 = p.at(z.lr(5), z.start_lr)
    assert at5.f == pytest.approx(1.0 + 999.0 * 0.5)


def test_config_builds_the_schedule():
    """[learning_rate] with a warmup ratio: the warmup is ⌊ratio · numb_steps⌋ steps and the
    decay phase the rest; stop_lr_ratio gives stop_lr = ratio · start_lr."""
    from numdp.train.config import _learning_rate, _warmup_steps
    from numdp.validate import TRAIN_WORDING, Table

    lc = _learning_rate(Table("in.toml", "learning_rate",
                              {"type": "exp", "start_lr": 2e-3, "stop_lr_ratio": 0.01, "decay_steps": 30,
                               "warmup_ratio": 0.15, "warmup_start_factor": 0.5}, TRAIN_WORDING))
    _warmup_steps(lc, 1001, "in.toml")
    s = lc.schedule(1001)
    assert s.warmup_steps == 150 and s.warmup_start_lr == 1e-3
    assert s.stop_lr == pytest.approx(2e-5, rel=EPS)
    assert s.decay == ExpDecay.create(2e-3, s.stop_lr, 30, 851)
    lc = _learning_rate(Table("in.toml", "learning_rate", {"type": "wsd", "decay_type": "cosine",
                                                           "decay_phase_ratio": 0.5}, TRAIN_WORDING))
    s = lc.schedule(100)
    assert s.decay == WSDDecay(1e-3, 5e-8, 100, 50, WSDRule.COSINE)


def test_prefactors_follow_lr():
    p = PrefactorSchedule(0.02, 1.0, 1000.0, 1.0, 0.0, 0.0)
    assert (p.has_e, p.has_f, p.has_v) == (True, True, False)
    a = p.at(1e-3, 1e-3)
    assert (a.e, a.f, a.v) == (pytest.approx(0.02, abs=1e-15), 1000.0, 0.0)
    b = p.at(1e-4, 1e-3)
    assert b.e == pytest.approx(1.0 + (0.02 - 1.0) * 0.1)
    assert b.f == pytest.approx(1.0 + 999.0 * 0.1)
    # a term with one zero prefactor is off (DeePMD-kit)
    assert PrefactorSchedule(0.0, 1.0, 1.0, 1.0, 0.02, 1.0).at(1.0, 1.0).e == 0.0


def test_adam_matches_reference_formula():
    rng = np.random.default_rng(0)
    n = 50
    theta = rng.normal(size=n)
    ref = theta.copy()
    m = np.zeros(n)
    v = np.zeros(n)
    opt = Adam(n)
    for t in range(1, 6):
        g = rng.normal(size=n)
        lr = 1e-3 * 0.9 ** t
        opt.step(theta, g, lr)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        mhat = m / (1 - 0.9 ** t)
        vhat = v / (1 - 0.999 ** t)
        ref -= lr * mhat / (np.sqrt(vhat) + 1e-8)
        assert np.allclose(theta, ref, rtol=1e-13, atol=1e-16)
    assert opt.t == 5
    # per-worker rows are summed; a split over ranges gives the same update
    th1, th2 = np.zeros(n), np.zeros(n)
    rows = rng.normal(size=(3, n))
    o1, o2 = Adam(n), Adam(n)
    o1.step(th1, rows.sum(axis=0), 1e-2)
    o2.step(th2, rows, 1e-2, split=lambda fn, size: [fn(0, 17), fn(17, size)])
    assert np.allclose(th1, th2, rtol=1e-14, atol=1e-18)
    # the first step moves every parameter by about lr (sign of the gradient)
    th = np.zeros(3)
    Adam(3).step(th, np.array([2.0, -0.5, 1e-3]), 0.01)
    assert np.allclose(th, [-0.01, 0.01, -0.01 * 1e-3 / (1e-3 + 1e-8)])
    assert math.isfinite(th.sum())


@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_weight_decay(decoupled):
    """PyTorch's weight decay: Adam adds wd·θ to the gradient before the moments; AdamW scales
    θ by 1 - lr·wd before the update.  Against the formulas in NumPy (the kernel's arithmetic
    is the same operations, up to the contractions fastmath allows: a few eps), with betas
    other than the defaults; wd = 0 is bit for bit the plain update."""
    rng = np.random.default_rng(5)
    n, wd, b1, b2 = 40, 0.05, 0.8, 0.99
    theta = rng.normal(size=n)
    ref = theta.copy()
    m = np.zeros(n)
    v = np.zeros(n)
    opt = Adam(n, b1, b2, weight_decay=wd, decoupled=decoupled)
    for t in range(1, 5):
        g = rng.normal(size=n)
        lr = 1e-2 / t
        opt.step(theta, g, lr)
        ge = g if decoupled else g + wd * ref
        if decoupled:
            ref = ref * (1 - lr * wd)
        m = b1 * m + (1 - b1) * ge
        v = b2 * v + (1 - b2) * ge * ge
        ref = ref - lr / (1 - b1 ** t) * m / (np.sqrt(v / (1 - b2 ** t)) + 1e-8)
        assert np.allclose(theta, ref, rtol=1e-12, atol=1e-15)
    # the decay acts: with a zero gradient AdamW still shrinks θ, Adam moves it against θ
    th = np.full(3, 2.0)
    Adam(3, weight_decay=0.5, decoupled=decoupled).step(th, np.zeros(3), 0.1)
    assert np.all(th < 2.0)
    a, b = rng.normal(size=n), rng.normal(size=n)
    x, y = a.copy(), a.copy()
    Adam(n).step(x, b, 1e-3)
    Adam(n, weight_decay=0.0, decoupled=decoupled).step(y, b, 1e-3)
    assert np.array_equal(x, y)


def test_adam_segments_sum_only_their_rows():
    """With `segments`, entries of a segment (start, stop, j) take the sum of the first j rows
    only: bit for bit the update of the rows' sum with the rows beyond j left out, whatever
    those rows hold, also when the threads' ranges cut the segments."""
    rng = np.random.default_rng(4)
    n = 3000
    rows = rng.normal(size=(3, n))
    segments = [(0, 700, 3), (700, 2100, 1), (2100, 2500, 2), (2500, n, 3)]
    ref = rows.copy()
    for a, b, j in segments:
        ref[j:, a:b] = 0.0
    th1, th2 = np.ones(n), np.ones(n)
    o1, o2 = Adam(n), Adam(n)
    for _ in range(2):
        o1.step(th1, ref, 1e-2)
        o2.step(th2, rows, 1e-2, split=lambda fn, size: [fn(0, 1234), fn(1234, size)],
                segments=segments)
        rows[1:, 700:2100] = rng.normal(size=(2, 1400))  # what the segments leave out
    assert np.array_equal(th1, th2)
    assert np.array_equal(o1.m, o2.m) and np.array_equal(o1.v, o2.v)


def test_adam_kernel_chunks_cover_every_entry_once():
    """adam_update works chunk by chunk (ADAM_CHUNK entries): ranges that start and end inside
    chunks must update every entry exactly once, with the same arithmetic whatever the range
    (bit for bit), and the rows' sum in row order."""
    from numdp.kernels.cpu.train import ADAM_CHUNK, adam_update

    rng = np.random.default_rng(3)
    n = 2 * ADAM_CHUNK + 37
    for nw in (1, 2, 3):
        theta0 = rng.normal(size=n)
        m0 = rng.normal(size=n) * 1e-3
        v0 = rng.random(n) * 1e-6
        rows = rng.normal(size=(nw, n)) * 1e-3
        args = (1e-3, 0.9, 0.999, 1e-8, 1.0 - 0.9 ** 3, 1.0 - 0.999 ** 3)
        whole = [a.copy() for a in (theta0, m0, v0)]
        adam_update(whole[0], rows, whole[1], whole[2], 0, n, *args)
        parts = [a.copy() for a in (theta0, m0, v0)]
        cuts = [0, 5, ADAM_CHUNK - 1, ADAM_CHUNK + 700, 2 * ADAM_CHUNK + 1, n]
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            adam_update(parts[0], rows, parts[1], parts[2], lo, hi, *args)
        for a, b in zip(whole, parts):
            assert np.array_equal(a, b)
        # against the formula in NumPy, g summed in the same order (so bit for bit the
        # kernel's g).  m and v: two products and a sum, each rounded once or fused, but the
        # kernel's fastmath "reassoc" lets the compiler regroup (1-β) g as g - β g (measured:
        # v off by 167 eps of itself where β2 v0 << g², 0.98 eps of β2 v0 + g²), so the bound
        # is 4 eps of the magnitudes |β m0| + |g| and β2 v0 + g².  θ from the kernel's m and
        # v: the kernel multiplies by 1/√bc2 where the formula divides by √bc2, and rounds a
        # product, a square root, a sum, a quotient and the difference: 8 eps of |θ0| + |update|.
        eps = np.finfo(float).eps
        g = rows[0].copy()
        for w in range(1, nw):
            g += rows[w]
        c1, c2 = 1.0 - 0.9, 1.0 - 0.999   # as the kernel forms them (not 0.1, 0.001 exactly)
        m_size = np.abs(0.9 * m0) + np.abs(g)
        assert np.all(np.abs(whole[1] - (0.9 * m0 + c1 * g)) <= 4 * eps * m_size)
        v_size = 0.999 * v0 + g * g
        assert np.all(np.abs(whole[2] - (0.999 * v0 + c2 * g * g)) <= 4 * eps * v_size)
        upd = 1e-3 / args[4] * whole[1] / (np.sqrt(whole[2]) / np.sqrt(args[5]) + 1e-8)
        assert np.all(np.abs(whole[0] - (theta0 - upd)) <= 8 * eps * (np.abs(theta0) + np.abs(upd)))


@pytest.mark.parametrize("l2", [0.0, 0.05])
def test_adam_scale_is_the_update_of_the_scaled_gradient(l2):
    """adam_update's `scale` multiplies the rows' sum (before Adam's L2 term, as PyTorch clips
    p.grad before its optimiser adds wd·θ): bit for bit the update of the scaled sum given as
    one row, and the formula in NumPy; scale 1 is today's update bit for bit (Adam.step too)."""
    from numdp.kernels.cpu.train import adam_update

    rng = np.random.default_rng(8)
    n, s = 5000, 0.37
    theta0, m0, v0 = rng.normal(size=n), rng.normal(size=n) * 1e-3, rng.random(n) * 1e-6
    rows = rng.normal(size=(3, n)) * 1e-3
    args = (1e-3, 0.9, 0.999, 1e-8, 1.0 - 0.9 ** 3, 1.0 - 0.999 ** 3, l2, 1.0)
    g = rows[0] + rows[1] + rows[2]
    a = [x.copy() for x in (theta0, m0, v0)]
    adam_update(a[0], rows, a[1], a[2], 0, n, *args, s)
    b = [x.copy() for x in (theta0, m0, v0)]
    adam_update(b[0], (s * g)[None, :], b[1], b[2], 0, n, *args)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    ge = s * g + l2 * theta0
    m = 0.9 * m0 + (1 - 0.9) * ge
    v = 0.999 * v0 + (1 - 0.999) * ge * ge
    ref = theta0 - 1e-3 / (1 - 0.9 ** 3) * m / (np.sqrt(v / (1 - 0.999 ** 3)) + 1e-8)
    assert np.allclose(a[1], m, rtol=1e-12, atol=1e-18) and np.allclose(a[2], v, rtol=1e-12, atol=1e-24)
    assert np.allclose(a[0], ref, rtol=1e-12, atol=1e-15)
    one, plain = [x.copy() for x in (theta0, m0, v0)], [x.copy() for x in (theta0, m0, v0)]
    adam_update(one[0], rows, one[1], one[2], 0, n, *args, 1.0)
    adam_update(plain[0], rows, plain[1], plain[2], 0, n, *args)
    for x, y in zip(one, plain):
        assert np.array_equal(x, y)
    th1, th2 = theta0.copy(), theta0.copy()
    o1, o2 = Adam(n, weight_decay=l2), Adam(n, weight_decay=l2)
    o1.step(th1, rows, 1e-3, segments=[(0, 100, 3), (100, n, 1)])
    o2.step(th2, rows, 1e-3, segments=[(0, 100, 3), (100, n, 1)], scale=1.0)
    assert np.array_equal(th1, th2) and np.array_equal(o1.v, o2.v)


def test_grad_norm_and_clip_scale():
    """grad_norm is ‖g‖₂ of the gradient the segments describe (entries start..stop-1 the sum of
    the first j rows, as Adam.step sums them), overflow-safe for a finite gradient, inf or nan
    for a non-finite one; clip_scale is torch's min(1, max / (norm + 1e-6))."""
    from numdp.train.optim import clip_scale, grad_norm

    rng = np.random.default_rng(9)
    n = 3000
    rows = rng.normal(size=(3, n))
    segments = [(0, 700, 3), (700, 2100, 1), (2100, 2500, 2), (2500, n, 3)]
    g = np.zeros(n)
    for a, b, j in segments:
        g[a:b] = rows[:j, a:b].sum(axis=0)
    assert grad_norm(rows, segments) == pytest.approx(np.linalg.norm(g), rel=1e-14)
    assert grad_norm(rows) == pytest.approx(np.linalg.norm(rows.sum(axis=0)), rel=1e-14)
    assert grad_norm(g) == pytest.approx(np.linalg.norm(g), rel=1e-14)
    big = rows * 1e200                                   # Σ g² overflows, ‖g‖ does not
    with np.errstate(over="ignore"):
        assert np.isinf(np.sum(big.sum(axis=0) ** 2))
    assert grad_norm(big) == pytest.approx(1e200 * np.linalg.norm(rows.sum(axis=0)), rel=1e-13)
    bad = rows.copy()
    bad[1, 2200] = np.nan                                # in the rows (2100, 2500, 2) counts
    assert math.isnan(grad_norm(bad, segments))
    bad[1, 2200] = rows[1, 2200]
    bad[1, 800] = np.inf                                 # in a row segment (700, 2100, 1) leaves out
    assert grad_norm(bad, segments) == grad_norm(rows, segments)
    bad[0, 800] = -np.inf
    assert grad_norm(bad, segments) == math.inf
    assert clip_scale(3.0, 1.5) == 1.5 / (3.0 + 1e-6) and clip_scale(1.0, 5.0) == 1.0
