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

Units: pressure bar (eV/Å³ inside), τ ps, μ 1/ps, W eV ps², kT eV, V Å³.
Variables: state.barostat["nu"] (3, 3) μ, ["xi"], ["vxi"] (chain,) the chain's positions and
velocities (1/ps).
"""
from __future__ import annotations

import numpy as np

from ..parallel.world import World
from ..system import State
from ..units import EV_PER_A3_TO_BAR, KB
from ..kernels.cpu.barostat import expm3
from ..kernels.cpu.thermostat import nose_hoover_chain_half_step
from .barostat import COUPLINGS, check_cell_move, is_lower_triangular
from .ramp import Ramp
from .thermostats import SUZUKI_YOSHIDA_3, HostVelocities

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
                 chain: int = 3, world: World | None = None):
        if coupling not in COUPLINGS:
            raise ValueError(f"coupling must be one of {COUPLINGS}, got {coupling!r}")
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
            nu = np.eye(3) * float(np.trace(nu) / 3.0)
        b["nu"] = nu
        for key in ("xi", "vxi"):
            if key not in b or np.shape(b[key]) != (self.chain,):
                b[key] = np.zeros(self.chain)

    def mass(self, state: State) -> float:
        """W = (N + 1) kT τ², eV ps² (LAMMPS' omega_mass), kT at the target of step 0."""
        return (state.natoms_global + 1) * KB * self.temperature.value(0) * self.tau ** 2

    def chain_masses(self, kt: float) -> np.ndarray:
        return np.full(self.chain, kt * self.tau ** 2)

    def _k2(self, state: State) -> float:
        """2 K_b = W Σ μ_ab² (isotropic: 3 W ν²), eV."""
        nu = state.barostat["nu"]
        return self.mass(state) * float(np.sum(nu * nu))

    # -- the half-steps (numdp.md.integrator.VelocityVerlet.step) ---------------------------------
    def chain_half(self, state: State, h: float) -> None:
        """The barostat's Nosé–Hoover chain for h ps: μ scaled by the chain's factor (no chain:
        nothing)."""
        if self.chain == 0:
            return
        k2 = self._k2(state)
        kt = KB * self.temperature.in_step(state.step)
        b = state.barostat
        factor = float(nose_hoover_chain_half_step(k2, self.ndof, kt, self.chain_masses(kt), h, 1,
                                                   SUZUKI_YOSHIDA_3, b["xi"], b["vxi"]))
        b["nu"] = b["nu"] * factor

    def _kinetic_coupling(self, state: State) -> float:
        """c = 2 / N_f."""
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
        """v → v exp(−(μ + c tr μ I) h)."""
        nu = state.barostat["nu"]
        a = nu + self._kinetic_coupling(state) * float(np.trace(nu)) * IDENTITY
        self.ops.transform(state, IDENTITY, self._exp(-a * h))

    def scale_cell(self, state: State, h: float) -> None:
        """r → r exp(μ h), h → h exp(μ h); CellCollapse (numdp.md.barostat) on a runaway move."""
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
