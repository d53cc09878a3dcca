"""Tests added by mutation round 21 (thermostats and barostats, second round: numdp.md.thermostats,
numdp.kernels.mdmath's Nosé-Hoover chain and Ornstein-Uhlenbeck step, numdp.kernels.rng /
numdp.kernels.cpu.rng, numdp.md.barostat, numdp.md.mtk, numdp.md.ramp): each kills a plausible
mistake that tests/test_md_dynamics.py, test_md_mtk.py, test_md_ramp.py, test_md_rng.py,
test_sweep_lammps_nh.py and the earlier mutation rounds (4, 4b, 9, 11) let through (the mutants
are named in each test's docstring): Suzuki-Yoshida weights that do not sum to 1, the first CSVR
normal drawn twice, a χ² of one square too many, the host Langevin noise of one mass for all, the
MTK velocity scale without its c tr μ.  Exact one-step constructions against the documented
formulas, a convergence order against the exact chain flow, and distribution moments with bounds
of 5 standard errors.  Small states built directly, no model file: the whole file runs in a few
seconds."""
from __future__ import annotations

import math

import numpy as np
import pytest

from numdp.kernels.cpu.thermostat import nose_hoover_chain_half_step
from numdp.md.thermostats import SINGLE_PASS, SUZUKI_YOSHIDA_3, StochasticVelocityRescaling
from numdp.system import State, kinetic_energy
from numdp.units import KB, MVV2E
from tests_util import documented_langevin_normals

U = np.finfo(np.float64).eps / 2   # unit round-off
Z = 5.0                            # standard errors: a false alarm below 1e-6 per comparison


def _state(velocities, masses, box=None, seed=11, step=0) -> State:
    v = np.array(velocities, dtype=np.float64)
    n = len(v)
    rng = np.random.default_rng(5)
    return State(positions=rng.uniform(0.0, 10.0, (n, 3)), velocities=v,
                 types=np.zeros(n, np.int32), masses=np.asarray(masses, dtype=np.float64),
                 box=np.eye(3) * 10.0 if box is None else np.asarray(box, dtype=np.float64),
                 type_map=["A"], ids=np.arange(n, dtype=np.int64), seed=seed, step=step)


# -- Langevin on the host: the documented key and the per-atom amplitude ---------------------------


def test_host_langevin_update_is_the_documented_ou_step_with_the_documented_key():
    """numdp.kernels.cpu.md.langevin_update (what HostVelocities.langevin runs): v -> c v +
    sqrt(1 - c²) sqrt(kT / (m_i MVV2E)) g with g from the documented Philox key of atom id i.
    Two species (1.5 and 16 amu), ids and a seed above 2**32 so that every word of the key counts.
    Bound: the same double operations; Numba's log / cos / sin may differ from CPython's by an
    ulp, carried into c v + sigma g as a few ulps of max(|v|, 6 sigma): 1e-13 of that is far above
    it and far below a changed draw (order sigma).  Round 9's test of the same formula runs the
    device kernel (numdp.kernels.cuda.md.langevin_update), a separate loop; the statistical tests
    of tests/test_md_dynamics.py use one species.  Mutant killed: the host loop passing atom 0's
    mass (masses[0] for masses[i]) to every atom's noise amplitude.  (It fails too for the key's
    words swapped, the stream shifted by 8 bits, the z normal taken from block 0 and sqrt(1 - c)
    for sqrt(1 - c²), which round 9 and test_md_ramp.py also kill.)"""
    from numdp.kernels.cpu.md import langevin_update

    seed, stream, c, kt = 2**40 + 12345, 3, 0.9, 0.025
    masses = np.array([1.5, 16.0])
    ids = np.array([7, 2**32 + 3], dtype=np.int64)
    v0 = np.array([[0.3, -1.2, 2.0], [-0.5, 0.25, 0.75]])
    for step in (12, 2**32 + 9):
        got = v0.copy()
        langevin_update(got, masses, ids, c, kt, np.int64(seed), np.int64(step), np.int64(stream))
        for i in range(2):
            sigma = math.sqrt(1.0 - c * c) * math.sqrt(kt / (masses[i] * MVV2E))
            want = c * v0[i] + sigma * np.array(documented_langevin_normals(seed, step, stream, int(ids[i])))
            scale = max(np.abs(v0[i]).max(), 6.0 * sigma)
            assert np.abs(got[i] - want).max() <= 1e-13 * scale, (step, i, got[i], want)


# -- CSVR: the exact kinetic-energy draw ----------------------------------------------------------------


def _csvr_ratios(c: float, draws: int) -> tuple[np.ndarray, int]:
    """K'/K̄ after one CSVR half-step from K = K̄ (3 atoms of 2 amu: N_f = 6), one per step
    0..draws-1 (independent keys); returns the ratios and N_f.  c = exp(-h/tau)."""
    t = 300.0
    v0 = np.array([[1.0, 2.0, -1.0], [-2.0, 0.5, 1.5], [1.0, -2.5, -0.5]])
    m = np.full(3, 2.0)
    nf = 6
    kbar = 0.5 * nf * KB * t
    v0 *= math.sqrt(kbar / kinetic_energy(v0, m))
    h = 0.01
    tau = h / -math.log(c) if c > 0.0 else 1e-6 * h
    th = StochasticVelocityRescaling(t, tau=tau)
    out = np.empty(draws)
    for step in range(draws):
        st = _state(v0, m, step=step)
        assert st.dof == nf
        th.initialize(st)
        th.half_step(st, h, 2)
        out[step] = kinetic_energy(st.velocities, st.masses) / kbar
    return out, nf


def test_csvr_with_tau_far_below_the_step_draws_a_gamma_kinetic_energy():
    """Bussi, Donadio & Parrinello (2007, eq. A7) with c = 0: K' = K̄ (R1² + Σ_{i=2}^{N_f} R_i²)
    / N_f, so K'/K̄ ~ χ²_{N_f} / N_f: mean 1, variance 2/N_f, for N_f = 6 (so that N_f - 1 = 5 is
    odd).  Over M = 4000 draws the mean has standard error sqrt(2/(N_f M)) = 0.0091; the sample
    variance sqrt((μ4 - σ⁴)/M), with χ²_k's central fourth moment 12 k (k + 4) (over N_f⁴):
    μ4 = 720/1296, σ⁴ = 1/9, 0.0105.  Both to Z = 5.  Round 4's test has N_f = 3 (an even count
    of squares besides R1).  Mutants killed: R1 drawn with the key of the sum's first normal (R1
    counted twice: variance 16/36 for 12/36, 10 standard errors) and numdp.kernels.cpu.rng's
    sum_of_squared_normals taking one normal more when the count is odd (mean 7/6;
    tests/test_md_rng.py's χ² of 20001 squares sees only 1/20001 of it)."""
    r, nf = _csvr_ratios(0.0, 4000)
    m = len(r)
    assert abs(r.mean() - 1.0) < Z * math.sqrt(2.0 / (nf * m))
    mu4 = 12.0 * nf * (nf + 4) / nf ** 4
    sigma2 = 2.0 / nf
    assert abs(r.var() - sigma2) < Z * math.sqrt((mu4 - sigma2 ** 2) / m)


# -- the Nosé-Hoover chain: the half-step against the exact flow ----------------------------------------


def _chain_rhs(y, k2, dof, kt, q):
    """d/dt of (ln s, ξ (M,), vξ (M,)) of the chain with the particles' 2K = k2 s² (Martyna,
    Klein, Tuckerman 1992): d ln s/dt = -vξ_1, dξ_j/dt = vξ_j, Q_1 dvξ_1/dt = k2 s² - N_f kT -
    Q_1 vξ_1 vξ_2, Q_j dvξ_j/dt = Q_{j-1} vξ_{j-1}² - kT - Q_j vξ_j vξ_{j+1} (no friction on the
    last)."""
    m = len(q)
    ln_s, vxi = y[0], y[1 + m:]
    dv = np.empty(m)
    for j in range(m):
        g = (k2 * math.exp(2.0 * ln_s) - dof * kt) / q[0] if j == 0 else (q[j - 1] * vxi[j - 1] ** 2 - kt) / q[j]
        dv[j] = g - (vxi[j] * vxi[j + 1] if j < m - 1 else 0.0)
    return np.concatenate([[-vxi[0]], vxi, dv])


def _chain_flow(y, h, k2, dof, kt, q, n=400):
    """The exact flow for h ps by classical RK4 with n steps (local error O((h/n)⁵): ~1e-16 of
    the chain's own scale here)."""
    d = h / n
    for _ in range(n):
        a = _chain_rhs(y, k2, dof, kt, q)
        b = _chain_rhs(y + 0.5 * d * a, k2, dof, kt, q)
        c = _chain_rhs(y + 0.5 * d * b, k2, dof, kt, q)
        e = _chain_rhs(y + d * c, k2, dof, kt, q)
        y = y + d / 6.0 * (a + 2.0 * b + 2.0 * c + e)
    return y


def _chain_error(h, weights):
    """Max |half-step − exact flow| over (ln s, ξ, vξ τ) after one half-step h of a 3-link chain
    out of equilibrium (2K = 1.6 N_f kT, the links already moving)."""
    dof, kt, tau = 30, 0.025, 0.1
    q = np.array([dof, 1.0, 1.0]) * kt * tau ** 2
    k2 = 1.6 * dof * kt
    xi0, vxi0 = np.array([0.1, -0.2, 0.3]), np.array([4.0, -6.0, 8.0])
    xi, vxi = xi0.copy(), vxi0.copy()
    s = float(nose_hoover_chain_half_step(k2, dof, kt, q, h, 1, weights, xi, vxi))
    y = _chain_flow(np.concatenate([[0.0], xi0, vxi0]), h, k2, dof, kt, q)
    got = np.concatenate([[math.log(s)], xi, vxi * tau])
    return float(np.abs(got - np.concatenate([y[:4], y[4:] * tau])).max())


@pytest.mark.parametrize("weights, order", [(SINGLE_PASS, 2), (SUZUKI_YOSHIDA_3, 4)], ids=["lammps", "numdp"])
def test_chain_half_step_converges_to_the_exact_chain_flow_at_its_order(weights, order):
    """numdp.kernels.mdmath.nose_hoover_chain is a symmetric Trotter split of the chain's flow
    (one pass: second order, local error C h³; the Suzuki-Yoshida composition: fourth order, C h⁵),
    so halving h divides its one-step error by 2^(p+1): 8 and 32.  Every mistake in the split's
    arithmetic makes it first order (ratio 2: a wrong time, a link driven by the wrong one, a
    Suzuki-Yoshida weight set that does not sum to 1) or at best second (ratio 4; the
    Suzuki-Yoshida form then 8).  The bounds are the geometric means of the right ratio and the
    mutants' best, sqrt(8·4) and sqrt(32·8), so higher-order terms may move the ratio by a factor
    1.4 either way (measured: 7.9 and 33 for numdp's split, 2 to 4.1 for the mutants); h = 0.005
    ps (h vξ <= 0.04), the error far above round-off (7e-7 at the least against 1e-13).  Mutant
    killed: the middle Suzuki-Yoshida weight 1 - 1/(2 - 2^(1/3)) (the weights sum to 2.35: the
    chain runs 2.35 times too fast, which only shortens its effective tau, so the sampling and
    the conserved energy tests cannot see it, and form "lammps", which the LAMMPS trajectories
    check, makes one pass).  (It fails too for the friction factor exp(-vξ_{j+1} d/2) for d/4,
    the last link's full step for a half, the links above the first driven by the first, the
    scale and the positions moved by half the sub-step, and the first link's force without the
    scale so far, which tests/test_md_mtk.py's conserved-energy order also kills.)"""
    e1, e2 = _chain_error(0.005, weights), _chain_error(0.0025, weights)
    assert e2 > 1e3 * U    # the error is the split's, not round-off
    best_mutant = 4.0 if order == 2 else 8.0
    assert e1 / e2 > math.sqrt(2.0 ** (order + 1) * best_mutant), (e1, e2, e1 / e2)


# -- MTK: the velocities' share of the cell's strain rate --------------------------------------------


def test_mtk_velocity_scale_carries_the_kinetic_coupling_two_over_nf():
    """numdp.md.mtk, form "numdp": the v-scale half-step is v -> v exp(-(μ + c tr μ I) h) with
    c = 2/N_f (its module docstring: the c tr μ term is what makes dH'/dt vanish against the
    c 2K I of G, and the ensemble the one of the N atoms at zero momentum).  Anisotropic μ =
    diag(0.3, -0.5, 0.8) /ps, h = 0.01 ps, 3 atoms (N_f = 6, c = 1/3, so c tr μ h = 2e-3, against
    μ_kk h up to 8e-3).  Bound: the exponent's sum and product (3 roundings), exp (1 ulp) and the
    product with v (1): 8 u relative per component.  Mutant killed: the v-scale without the
    c tr μ term (v exp(-μ h)): with N_f ~ 100 its missing energy c 2K tr μ averages out over a
    run, and the ensemble moves by O(1/N), both inside the statistical tests' errors."""
    from numdp.md.mtk import MTKBarostat

    v0 = np.array([[1.0, -2.0, 0.5], [-1.5, 0.5, 1.0], [0.5, 1.5, -1.5]])
    st = _state(v0, np.full(3, 4.0), box=np.diag([8.0, 9.0, 10.0]))
    nu = np.diag([0.3, -0.5, 0.8])
    st.barostat["nu"] = nu.copy()
    baro = MTKBarostat(1.0, 0.5, "anisotropic", 300.0, chain=3)
    baro.initialize(st)
    h = 0.01
    baro.scale_velocities(st, h)
    c = 2.0 / st.dof
    factor = np.exp(-(np.diag(nu) + c * np.trace(nu)) * h)
    np.testing.assert_allclose(st.velocities, v0 * factor[None, :], rtol=8 * U, atol=0.0)

