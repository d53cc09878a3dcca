"""The Martyna–Tobias–Klein barostat (MTK 1994; the fully flexible cell of Shinoda, Shiga and
Mikami 2004): LAMMPS' `fix npt`, deterministic, with the cell's own momentum and a Nosé–Hoover
chain on it.

Rows are vectors (positions r, velocities v, the cell h = rows a, b, c).  The barostat's variable
is the strain rate μ (3, 3), lower-triangular so that the lower-triangular cell stays so:

    ṙ_i = v_i + r_i μ                            ḣ = h μ
    v̇_i = F_i / m_i − v_i (μ + c tr(μ) I) − vξ_1 v_i      (vξ: the particles' thermostat, if a chain)
    W μ̇_ab = G_ab − vξ'_1 W μ_ab    for the active components ab
    G = V (P_int − P0 I) + c 2K I,   P_int = (Σ m v ⊗ v + Ξ) / V,   c = 2 / N_f

with the components: isotropic μ = ν I (one variable, W ν̇ = tr G / 3, barostat kinetic energy
K_b = 3 W ν² / 2, n_b = 1 degree of freedom); anisotropic the diagonal (n_b = 3); triclinic the
diagonal and the three below it (n_b = 6), K_b = W Σ μ_ab² / 2.  Ξ is the virial (DeePMD-kit's
sign, symmetrised), 2K = Σ m v², N_f = 3N − 3 (the total momentum stays zero), P0 the target
(a numdp.md.ramp.Ramp, `in_step(n)` in the step from n to n + 1).  The mass is LAMMPS': W = (N + 1)
kT τ² (τ the barostat's tau, ps; kT of the thermostat's target at step 0), and the chain's
masses Q'_j = kT τ² at the target of the step; the chain (`chain` links) is numdp's
Nosé–Hoover chain's maths (numdp.kernels.mdmath.nose_hoover_chain) on K_b with n_b degrees of
freedom.

Conserved: H' = K + U + K_b + P0 V + (the particles' thermostat reservoir) + Σ Q'_j vξ'_j² / 2 +
n_b kT ξ'_1 + kT Σ_{j>1} ξ'_j (`reservoir_energy` gives the barostat's part).

The ensemble.  The flow's phase-space compressibility is κ = N tr μ (positions) − ((N − 1) +
N_f c) tr μ (velocities on the plane Σ m v = 0) + the cell's (tr μ for the isotropic volume and
for the anisotropic lengths; 3μ_00 + 2μ_11 + μ_22 for the six triclinic components), so with
c = 2/N_f the invariant measure is exp(−H'/kT) in dV (isotropic), Π dh_kk (anisotropic) and
Π dL_k Π dT_ij with h = T diag(L) (triclinic): the isothermal-isobaric ensemble of the N atoms at
zero total momentum that the stochastic cell rescaling samples (numdp.md.barostat), with its
identities ⟨V (P0 − P_kk)⟩ = 2 kT per scaled direction (the stationary μ̇ above) and, for an ideal
gas, P0 V / kT ~ Gamma(N + 1).  LAMMPS' `fix npt` takes c = 1/(3N) (its mtk_term2), which makes
κ = tr μ: it samples the volume with one power of V less (⟨P0 V/kT⟩ = N for the ideal gas), an
O(1/N) difference.

One step of dt (h = dt/2), a palindrome of exact flows (numdp.md.integrator.VelocityVerlet):

    chain(h) · thermostat(h) · μ(h) · v-scale(h) · kick(h) · cell(h) · drift(dt) · cell(h) ·
    force · kick(h) · v-scale(h) · μ(h) · thermostat(h) · chain(h)

v-scale: v → v exp(−(μ + c tr μ I) h); cell: r → r exp(μ h), h → h exp(μ h) (velocities
unchanged); μ: μ += h G / W with the last force call's virial and the current velocities.  Every
operation on the atoms goes through `ops` (numdp.md.thermostats.HostVelocities or
numdp.md.device.DeviceVelocities): the kinetic tensor (a global sum) and linear maps of the rows;
the rest is host arithmetic on a few numbers, the same on every rank and device.

LAMMPS' form (`form = "lammps"`, what numdp lmp runs for fix npt / nph): LAMMPS' fix_nh to
round-off (tests/test_sweep_lammps_nh.py against LAMMPS 22 Jul 2025): c = 1/(3N); the chain in one
pass (`lammps_chain`), its masses at the target of step 0 as W (LAMMPS' etap_mass_flag and
omega_mass_flag 0), kT of the start half the target of step n and of the end half step n + 1's;
v-scale v → v D (I − h L) D, D = exp(−(diag μ + c tr μ) h/2), L the strictly lower part of μ
(nh_v_press); cell: `lammps_cell` (remap: quarter/eighth-step factors around Euler terms for the
tilts, else tilts scaled with their row's length), the atoms keeping their fractional
coordinates.  The conserved H' is the same (the c-terms cancel in dH'/dt for any c).

Units: pressure bar (eV/Å³ inside), τ ps, μ 1/ps, W eV ps², kT eV, V Å³.
Variables: state.barostat["nu"] (3, 3) μ, ["xi"], ["vxi"] (chain,) the chain's positions and
velocities (1/ps).
"""
from __future__ import annotations

import math

import numpy as np

from ..parallel.world import World
from ..system import State
from ..units import EV_PER_A3_TO_BAR, KB
from ..kernels.cpu.barostat import expm3
from ..kernels.cpu.thermostat import nose_hoover_chain_half_step
from .barostat import COUPLINGS, check_cell_move, is_lower_triangular
from .ramp import Ramp
from .thermostats import FORMS, SUZUKI_YOSHIDA_3, HostVelocities

IDENTITY = np.eye(3)
_ACTIVE = {
    "isotropic": np.eye(3, dtype=bool),
    "anisotropic": np.eye(3, dtype=bool),
    "triclinic": np.tril(np.ones((3, 3), dtype=bool)),
}
_DOF = {"isotropic": 1, "anisotropic": 3, "triclinic": 6}


class MTKBarostat:
    """The barostat object (the equations: module docstring).

    pressure: P0, bar (a number or a Ramp); tau: ps; coupling: one of COUPLINGS; temperature: K
    (the thermostat's target, a number or a Ramp; without a thermostat, NPH, a constant reference,
    LAMMPS' ptemp); chain: links of the barostat's own chain (0: none);
    world: the run's ranks (sums over atoms are global; the variables are the same on every
    rank)."""

    kind = "mtk"
    extended = True   # its own variables and half-steps around the thermostat's (the integrator's cue)

    def __init__(self, pressure: float | Ramp, tau: float, coupling: str, temperature: float | Ramp,
                 chain: int = 3, world: World | None = None, form: str = "numdp"):
        if coupling not in COUPLINGS:
            raise ValueError(f"coupling must be one of {COUPLINGS}, got {coupling!r}")
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {form!r}")
        self.form = form
        self.lammps = form == "lammps"
        self.world = world if world is not None else World(None)
        self.ops = HostVelocities(self.world)
        self.pressure = Ramp.of(pressure)
        self.tau = float(tau)
        self.coupling = coupling
        self.temperature = Ramp.of(temperature)
        self.chain = int(chain)
        self.active = _ACTIVE[coupling]
        self.ndof = _DOF[coupling]

    # -- set-up -----------------------------------------------------------------------------------
    def initialize(self, state: State) -> None:
        """Check the cell; put μ = 0 and the chain at rest into state.barostat unless restored
        (a restored μ keeps only this coupling's components: an isotropic run takes the mean of
        the diagonal)."""
        if state.box is None:
            raise ValueError("a barostat needs a periodic cell")
        if self.coupling == "triclinic" and not is_lower_triangular(state.box):
            raise ValueError("triclinic coupling needs a lower-triangular cell; rotate it first "
                             "(lower_triangular_rotation)")
        b = state.barostat
        nu = np.asarray(b.get("nu", np.zeros((3, 3))), dtype=np.float64).reshape(3, 3)
        nu = np.where(self.active, nu, 0.0)
        if self.coupling == "isotropic":
            diag = np.diag(nu)
            # an isotropic run's own μ = ν I keeps its bits ((ν + ν + ν) / 3 need not be ν)
            nu = np.eye(3) * (float(diag[0]) if np.all(diag == diag[0]) else float(np.trace(nu) / 3.0))
        b["nu"] = nu
        for key in ("xi", "vxi"):
            if key not in b or np.shape(b[key]) != (self.chain,):
                b[key] = np.zeros(self.chain)

    def mass(self, state: State) -> float:
        """W = (N + 1) kT τ², eV ps² (LAMMPS' omega_mass), kT at the target of step 0 (LAMMPS sets
        omega_mass in its setup and, with its default omega_mass_flag 0, keeps it)."""
        return (state.natoms_global + 1) * KB * self.temperature.value(0) * self.tau ** 2

    def chain_masses(self, kt: float) -> np.ndarray:
        """Q'_j = kT τ², eV ps² (form "lammps": at the target of step 0 whatever `kt`, LAMMPS'
        etap_mass, set in its setup and kept with its default etap_mass_flag 0)."""
        if self.lammps:
            kt = KB * self.temperature.value(0)
        return np.full(self.chain, kt * self.tau ** 2)

    def _k2(self, state: State) -> float:
        """2 K_b = W Σ μ_ab² (isotropic: 3 W ν²), eV."""
        nu = state.barostat["nu"]
        return self.mass(state) * float(np.sum(nu * nu))

    # -- the half-steps (numdp.md.integrator.VelocityVerlet.step) ---------------------------------
    def chain_half(self, state: State, h: float, end: bool = False) -> None:
        """The barostat's Nosé–Hoover chain for h ps: μ scaled by the chain's factor (no chain:
        nothing).  `end`: the step's second call.  Form "numdp": kT at the target of the step
        (in_step), Suzuki–Yoshida splitting.  Form "lammps": `lammps_chain`, with kT at the target
        LAMMPS' t_target holds then (step n's at the start of the step from n, since its
        nhc_press_integrate runs before compute_temp_target; step n + 1's at the end), the links
        above the first pushed in the down sweep by the kT of the call before (step n's in both)."""
        if self.chain == 0:
            return
        b = state.barostat
        if self.lammps:
            kt_down = KB * self.temperature.value(state.step)
            kt = KB * self.temperature.value(state.step + 1) if end else kt_down
            factor = lammps_chain(self._k2(state), self.ndof, kt, kt_down, self.chain_masses(kt), h,
                                  b["xi"], b["vxi"])
        else:
            kt = KB * self.temperature.in_step(state.step)
            factor = float(nose_hoover_chain_half_step(self._k2(state), self.ndof, kt, self.chain_masses(kt), h, 1,
                                                       SUZUKI_YOSHIDA_3, b["xi"], b["vxi"]))
        b["nu"] = b["nu"] * factor

    def _kinetic_coupling(self, state: State) -> float:
        """c = 2 / N_f (form "lammps": 1 / (3N), LAMMPS' mtk_term1 and mtk_term2)."""
        if self.lammps:
            return 1.0 / (3.0 * state.natoms_global)
        return 2.0 / state.dof

    def momentum_half(self, state: State, h: float) -> None:
        """μ += h G / W from the current velocities and the last force call's virial."""
        kin = self.ops.kinetic_tensor(state)
        p0 = self.pressure.in_step(state.step) / EV_PER_A3_TO_BAR
        g = kin + 0.5 * (state.virial + state.virial.T) - p0 * state.volume * IDENTITY
        g = g + self._kinetic_coupling(state) * float(np.trace(kin)) * IDENTITY
        w = self.mass(state)
        b = state.barostat
        if self.coupling == "isotropic":
            b["nu"] = b["nu"] + (h * float(np.trace(g)) / (3.0 * w)) * IDENTITY
        else:
            b["nu"] = b["nu"] + np.where(self.active, h * g / w, 0.0)

    def scale_velocities(self, state: State, h: float) -> None:
        """v → v exp(−(μ + c tr μ I) h).  Form "lammps": LAMMPS' nh_v_press, v → v D (I − h L) D
        with D = exp(−(diag μ + c tr μ) h/2) and L the part of μ below the diagonal (triclinic)."""
        nu = state.barostat["nu"]
        a = nu + self._kinetic_coupling(state) * float(np.trace(nu)) * IDENTITY
        if self.lammps:
            d = np.diag(np.exp(-0.5 * h * np.diag(a)))
            mid = IDENTITY - h * np.tril(nu, -1) if self.coupling == "triclinic" else IDENTITY
            self.ops.transform(state, IDENTITY, d @ mid @ d)
            return
        self.ops.transform(state, IDENTITY, self._exp(-a * h))

    def scale_cell(self, state: State, h: float) -> None:
        """r → r exp(μ h), h → h exp(μ h); CellCollapse (numdp.md.barostat) on a runaway move.
        Form "lammps": the cell of LAMMPS' remap (`lammps_cell`), the atoms keeping their
        fractional coordinates (r → r h⁻¹ h')."""
        if self.lammps:
            new = lammps_cell(state.box, state.barostat["nu"], h, self.coupling == "triclinic")
            m = np.linalg.solve(state.box, new)
        else:
            m = self._exp(state.barostat["nu"] * h)
            new = state.box @ m
        check_cell_move(state.box, new, state.step + 1, "raise [md] barostat tau (the cell's mass), or check the pressure")
        self.ops.transform(state, m, IDENTITY)
        state.box = new

    def _exp(self, x: np.ndarray) -> np.ndarray:
        if self.coupling == "triclinic":
            return expm3(np.ascontiguousarray(x, dtype=np.float64))
        return np.diag(np.exp(np.diag(x)))

    # -- bookkeeping -------------------------------------------------------------------------------
    def reservoir_energy(self, state: State) -> float:
        """The barostat's part of the conserved H' at state.step, eV: K_b + P0 V + the chain's
        Σ Q'_j vξ'_j² / 2 + n_b kT ξ'_1 + kT Σ_{j>1} ξ'_j."""
        b = state.barostat
        kt = KB * self.temperature.value(state.step)
        q = self.chain_masses(kt)
        xi, vxi = b["xi"], b["vxi"]
        p0 = self.pressure.value(state.step) / EV_PER_A3_TO_BAR
        chain = (0.5 * np.sum(q * vxi * vxi) + self.ndof * kt * xi[0] + kt * np.sum(xi[1:])) if self.chain else 0.0
        return float(0.5 * self._k2(state) + p0 * state.volume + chain)


def lammps_cell(box: np.ndarray, nu: np.ndarray, h: float, triclinic: bool) -> np.ndarray:
    """The cell after LAMMPS' fix npt `remap` of h ps (its dto; rows a, b, c, lower-triangular):
    the diagonal scaled by exp(μ_kk h); triclinic, the tilts (xy = b_x, xz = c_x, yz = c_y) around
    it by LAMMPS' time-symmetric quarter- and eighth-step factors with Euler terms (in its second
    half with the diagonal of before the step: LAMMPS' domain->h is updated only after); else the
    tilts scaled with their cell vector's length (LAMMPS' default scalexy, scalexz, scaleyz yes:
    xy by b's factor, xz and yz by c's), so that a tilted cell keeps its fractional shape."""
    lx, ly, lz = box[0, 0], box[1, 1], box[2, 2]
    xy, xz, yz = box[1, 0], box[2, 0], box[2, 1]
    w0, w1, w2 = nu[0, 0], nu[1, 1], nu[2, 2]
    w3, w4, w5 = nu[2, 1], nu[2, 0], nu[1, 0]   # LAMMPS' omega_dot yz, xz, xy

    def tilts(xy, xz, yz):
        e = math.exp(h / 8.0 * w0)
        xz = (xz * e + h / 4.0 * (w5 * yz + w4 * lz)) * e
        e = math.exp(h / 4.0 * w1)
        yz = (yz * e + h / 2.0 * (w3 * lz)) * e
        e = math.exp(h / 4.0 * w0)
        xy = (xy * e + h / 2.0 * (w5 * ly)) * e
        e = math.exp(h / 8.0 * w0)
        xz = (xz * e + h / 4.0 * (w5 * yz + w4 * lz)) * e
        return xy, xz, yz

    if triclinic:
        xy, xz, yz = tilts(xy, xz, yz)
    e0, e1, e2 = math.exp(h * w0), math.exp(h * w1), math.exp(h * w2)
    if triclinic:
        xy, xz, yz = tilts(xy, xz, yz)
    else:
        xy, xz, yz = xy * e1, xz * e2, yz * e2
    return np.array([[lx * e0, 0.0, 0.0], [xy, ly * e1, 0.0], [xz, yz, lz * e2]])


def lammps_chain(k2: float, ndof: int, kt: float, kt_down: float, q: np.ndarray, h: float,
                 xi: np.ndarray, vxi: np.ndarray) -> float:
    """One half-step h (ps) of the cell's chain as LAMMPS' nhc_press_integrate with ploop 1:
    returns the factor of μ, updates xi, vxi (M,) in place.  The same pass as
    numdp.kernels.mdmath.nose_hoover_chain with one sub-step (down the chain by h/2, positions and
    scale by h, up by h/2), but LAMMPS' down sweep pushes the links j > 0 with the etap_dotdot of
    the call before, (Q_{j-1} vξ_{j-1}² − kT_down) / Q_j, its kT then (a ramp's previous target;
    the same value without a ramp, the link below not having moved since).  k2 = 2 K_b (eV),
    ndof its degrees of freedom (LAMMPS' lkt_press / kT), kt (eV) the current target."""
    m = q.shape[0]
    for j in range(m - 1, -1, -1):
        g = (k2 - ndof * kt) / q[0] if j == 0 else (q[j - 1] * vxi[j - 1] * vxi[j - 1] - kt_down) / q[j]
        f = math.exp(-vxi[j + 1] * h / 4) if j < m - 1 else 1.0
        vxi[j] = (vxi[j] * f + g * h / 2) * f
    xi += vxi * h
    scale = math.exp(-vxi[0] * h)
    for j in range(m):
        g = (k2 * scale * scale - ndof * kt) / q[0] if j == 0 else (q[j - 1] * vxi[j - 1] * vxi[j - 1] - kt) / q[j]
        f = math.exp(-vxi[j + 1] * h / 4) if j < m - 1 else 1.0
        vxi[j] = (vxi[j] * f + g * h / 2) * f
    return scale
