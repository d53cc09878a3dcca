"""Stochastic cell rescaling (Bernetti & Bussi 2020; anisotropic/triclinic as in Del Tatto et al.
2022): a first-order stochastic equation for the cell that samples the isothermal-isobaric
ensemble, combinable with any thermostat.

A cell move keeps the fractional coordinates s and the scaled momenta π fixed: with the cell
h (rows = cell vectors) going to h', positions r -> r h⁻¹ h' and momenta p -> p (h'⁻¹ h)ᵀ.  The
cell variables x then follow Brownian dynamics in the effective potential
Φ = K + U + P0 V - kT ln J, J the Jacobian from the ensemble's measure to (x, s, π), with
mobility D = kT β_T / (c V τ):

    dx = -(D / kT) ∂Φ/∂x dt + (∂D/∂x) dt + sqrt(2 D) dW          (Itô)

whose stationary law is exp(-Φ / kT).  Using ∂(K + U)/∂h = -V h⁻ᵀ P_int, with the instantaneous
pressure tensor P_int = (Σ m v⊗v + virial) / V (so P = tr P_int / 3 = (2K + tr W)/(3V)).

The Jacobian.  The ensemble is the isothermal-isobaric one of the N atoms with the total momentum
held at zero (every thermostat keeps it zero: N_f = 3N - 3), measure dV d³ᴺr d³ᴺ⁻³p.  With
r = s h and p = π h⁻ᵀ, d³ᴺr = V^N d³ᴺs and, on the plane Σp = 0, d³ᴺ⁻³p = V^-(N-1) d³ᴺ⁻³π;
for x = ε = ln V, dV = V dε.  So J = V · V^N · V^-(N-1) = V², and ∂Φ/∂ε = V (P0 - P) - 2 kT.
With ∂D/∂ε = -D the drift is -(β_T/τ)(P0 - P - kT/V): the -kT/V of Bernetti & Bussi's isotropic
equation.  (Check: for an ideal gas the volume law is V² V^(N-1) exp(-P0 V/kT) dε =
V^N exp(-P0 V/kT) dV, the textbook P0 V/kT ~ Gamma(N + 1).)  For the three couplings:

* isotropic, x = ε = ln V (measure dV, c = 1):
      dε = -(β_T/τ) (P0 - tr(P_int)/3 - kT/V) dt + sqrt(2 kT β_T / (V τ)) dW
  (positions scale by exp(Δε/3)).
* anisotropic, x_k = ln h_kk (measure Π dh_kk, c = 3; per direction J_k = h_kk² as above, with
  N positions and N - 1 free momenta along k): each Cartesian component scales alone,
      d ln h_kk = -(β_T/(3τ)) (P0 - P_kk - kT/V) dt + sqrt(2 kT β_T / (3 V τ)) dW_k.
* triclinic, h lower-triangular written as h = T diag(L) with T unit lower-triangular
  (measure Π dL_k Π dT_ij, c = 3): ln L_k as for anisotropic, and for i > j (J and D do not
  depend on T_ij)
      dT_ij = (β_T/(3τ)) L_j (h⁻ᵀ P_int)_ij dt + sqrt(2 kT β_T / (3 V τ)) dW_ij.

Pressure identities (the stationary law makes ⟨∂Φ/∂x⟩ = 0, and ⟨e⁻ᵋ(kT + ∂Φ/∂ε)⟩ = 0):

    ⟨V (P0 - P_kk)⟩ = 2 kT  per scaled direction,   ⟨P⟩ = P0 - kT ⟨1/V⟩,   ⟨shear stress⟩ = 0.

Of the 2 kT, one kT is the dV measure (the usual NPT virial theorem for a kinetic term with
3N degrees of freedom) and one kT the three momenta held at zero (the estimator's kinetic part
averages (N - 1) kT/V, not N kT/V).  The shift of ⟨P⟩ is O(1/N): 30 bar for 108 Cu atoms at
300 K.  tests/test_md_dynamics.py checks the identities on an ideal gas of two atoms, where
they are as large as the noise of one sample.
The equations are integrated with one Euler-Maruyama step per timestep, with the pressure of the
last force call; β_T only sets the relaxation time (about τ β_T,true / β_T), not the ensemble.

The target pressure P0 and the temperature T of the noise are numdp.md.ramp.Ramp targets (a
number is a constant one; T is the thermostat's own Ramp, so a ramped thermostat ramps the noise
too): the barostat step of the step from n to n + 1 uses their `in_step(n)` values (LAMMPS'
compute_press_target in initial_integrate, after ntimestep was incremented).

Units: pressure bar, compressibility 1/bar, τ ps, kT eV, V Å³.  The barostat has no variables of
its own (first-order dynamics): a checkpoint needs only the cell.

A step that moves the cell by more than a factor MAX_STEP_FACTOR in volume or in a cell-vector
length (or to a non-finite or non-positive cell) stops the run with one line naming the step and
the cell (`CellCollapse`): the Euler-Maruyama step assumes a small change per step (a sound
setting moves the cell by ~1e-4 per step), and a collapsed cell would otherwise end later in the
neighbour search.
"""
from __future__ import annotations

import math

import numpy as np

from ..parallel.world import World
from ..system import State
from ..units import EV_PER_A3_TO_BAR, KB
from ..kernels.cpu.rng import STREAM_BAROSTAT, normals
from .ramp import Ramp
from .safety import SafetyStop
from .thermostats import HostVelocities

COUPLINGS = ("isotropic", "anisotropic", "triclinic")
# the largest factor by which one barostat step may change the volume or a cell-vector length: a
# sound setting moves the cell by ~1e-4 per step; the largest legitimate moves are those of a
# handful of atoms (tests/test_md_dynamics.py's 4-atom ideal gas: up to 2.6x in volume in a step)
MAX_STEP_FACTOR = 10.0


class CellCollapse(SafetyStop):
    """A barostat step moved the cell by more than MAX_STEP_FACTOR (or to a degenerate cell)."""


SCR_HINT = "lower [md] barostat compressibility or raise its tau, or check the pressure"


def check_cell_move(box: np.ndarray, new: np.ndarray, step: int, hint: str = SCR_HINT) -> None:
    """CellCollapse (one line naming the step and the cells, ending with the barostat's `hint`)
    unless `new` (3, 3) Å is finite and within a factor MAX_STEP_FACTOR of `box` in volume and in
    every cell-vector length."""
    v0 = abs(float(np.linalg.det(box)))
    v1 = float(np.linalg.det(new)) if np.isfinite(new).all() else math.nan
    l0 = np.linalg.norm(box, axis=1)
    l1 = np.linalg.norm(new, axis=1) if np.isfinite(new).all() else np.full(3, math.nan)
    limit = math.log(MAX_STEP_FACTOR)
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = v1 > 0.0 and abs(math.log(v1 / v0)) <= limit and bool((np.abs(np.log(l1 / l0)) <= limit).all())
    if not ok:
        raise CellCollapse(
            f"step {step}: the barostat moved the cell from volume {v0:.6g} A^3 (lengths "
            f"{np.array2string(l0, precision=4, separator=', ')} A) to {v1:.6g} A^3 (lengths "
            f"{np.array2string(l1, precision=4, separator=', ')} A) in one step, more than a factor "
            f"{MAX_STEP_FACTOR:g}: the cell collapses or explodes; {hint}")


def is_lower_triangular(box: np.ndarray, tol: float = 1e-12) -> bool:
    """True when the cell rows a, b, c have a_y = a_z = b_z = 0 (relative to the cell size)."""
    scale = float(np.abs(box).max())
    return abs(box[0, 1]) <= tol * scale and abs(box[0, 2]) <= tol * scale and abs(box[1, 2]) <= tol * scale


def lower_triangular_rotation(box: np.ndarray) -> np.ndarray:
    """Orthogonal (3, 3) Q with box @ Q lower-triangular and a positive diagonal.

    Rotating positions, velocities, forces and the box by Q (x -> x @ Q) leaves a rotation- and
    reflection-invariant potential unchanged.
    """
    q, r = np.linalg.qr(box.T)  # box.T = q r  ->  box q = r.T (lower-triangular)
    signs = np.where(np.diag(r) < 0.0, -1.0, 1.0)
    return q * signs[None, :]


class StochasticCellRescaling:
    """The barostat object (see the module docstring for the equations).

    pressure: P0, bar (a number or a Ramp); tau: relaxation time, ps; compressibility: β_T, 1/bar;
    coupling: one of COUPLINGS; temperature: K (a number or a Ramp: the thermostat's target); world: the run's ranks (the kinetic
    tensor is summed over them; the new cell is then the same on every rank).  The per-atom work
    (the kinetic tensor, scaling positions and velocities) goes through `ops`
    (numdp.md.thermostats.HostVelocities, or numdp.md.device.DeviceVelocities for a run on the
    GPU); the cell maths (a few scalars) is the same on both devices.
    """

    kind = "c-rescale"
    extended = False   # first-order: no variables of its own, one step in the middle of the drift

    def __init__(self, pressure: float | Ramp, tau: float, compressibility: float, coupling: str,
                 temperature: float | Ramp, world: World | None = None):
        self.world = world if world is not None else World(None)
        self.ops = HostVelocities(self.world)
        if coupling not in COUPLINGS:
            raise ValueError(f"coupling must be one of {COUPLINGS}, got {coupling!r}")
        self.pressure = Ramp.of(pressure)
        self.tau = float(tau)
        self.compressibility = float(compressibility)
        self.coupling = coupling
        self.temperature = Ramp.of(temperature)

    def initialize(self, state: State) -> None:
        if state.box is None:
            raise ValueError("a barostat needs a periodic cell")
        if self.coupling == "triclinic" and not is_lower_triangular(state.box):
            raise ValueError("triclinic coupling needs a lower-triangular cell; rotate it first "
                             "(lower_triangular_rotation)")

    def _pressure_tensor(self, state: State, volume: float) -> np.ndarray:
        w = 0.5 * (state.virial + state.virial.T)
        return (self.ops.kinetic_tensor(state) + w) / volume

    def new_box(self, state: State, dt: float) -> np.ndarray:
        """The cell after the barostat step of dt ps of the step from state.step to state.step + 1
        (does not modify the state)."""
        box = state.box
        volume = abs(float(np.linalg.det(box)))
        p_int = self._pressure_tensor(state, volume)
        p0 = self.pressure.in_step(state.step) / EV_PER_A3_TO_BAR
        beta = self.compressibility * EV_PER_A3_TO_BAR  # Å³/eV
        kt = KB * self.temperature.in_step(state.step)
        if self.coupling == "isotropic":
            g = normals(state.seed, state.step, STREAM_BAROSTAT, np.arange(1), 1)[0, 0]
            d_eps = (-(beta / self.tau) * (p0 - np.trace(p_int) / 3.0 - kt / volume) * dt
                     + math.sqrt(2.0 * kt * beta * dt / (volume * self.tau)) * g)
            return box * math.exp(d_eps / 3.0)
        rate = beta / (3.0 * self.tau)
        sigma = math.sqrt(2.0 * kt * beta * dt / (3.0 * volume * self.tau))
        g = normals(state.seed, state.step, STREAM_BAROSTAT, np.arange(6), 1)[:, 0]
        d_log = -rate * (p0 - np.diag(p_int) - kt / volume) * dt + sigma * g[:3]
        if self.coupling == "anisotropic":
            return box * np.exp(d_log)[None, :]
        lengths = np.diag(box).copy()
        shear = box / lengths[None, :]  # T = h diag(L)⁻¹, unit lower-triangular
        drive = np.linalg.inv(box).T @ p_int  # h⁻ᵀ P_int
        new_shear = shear.copy()
        for n, (i, j) in enumerate(((1, 0), (2, 0), (2, 1))):
            new_shear[i, j] += rate * lengths[j] * drive[i, j] * dt + sigma * g[3 + n]
        return new_shear * (lengths * np.exp(d_log))[None, :]

    def reservoir_energy(self, state: State) -> float:
        """0: the stochastic barostat's work is not tracked (the conserved energy leaves it out)."""
        return 0.0

    def step(self, state: State, dt: float) -> None:
        """Move the cell by one barostat step; scale positions and velocities along."""
        box = state.box
        new = self.new_box(state, dt)
        check_cell_move(box, new, state.step + 1)   # the step being made
        inv = np.linalg.inv(box)
        m = inv @ new                       # positions: r -> r h⁻¹ h'
        mv = (np.linalg.inv(new) @ box).T   # momenta:   p -> p (h'⁻¹ h)ᵀ
        self.ops.transform(state, m, mv)
        state.box = new
