"""Energy minimization by FIRE 2.0, as LAMMPS' `min_style fire` with `minimize etol ftol maxiter`.

FIRE (Bitzek et al., PRL 97, 170201 (2006)) relaxes the atoms by damped dynamics: the velocity is
mixed towards the force direction while the power P = F·v is positive, and the motion is stopped
(and the step shortened) when it turns uphill.  This is FIRE 2.0 (Guénolé et al., Comput. Mater.
Sci. 175, 109584 (2020), Algorithm 2) with the choices of LAMMPS' `min_style fire` and its
`min_modify` defaults (docs/md.md, "Energy minimization").  One iteration, with dt the current
step (dt0 = [minimize] timestep at the start, kept within [tmin, tmax] dt0) and α the mixing:

    P = Σ F·v  (all atoms, all ranks)
    P > 0:   mixing factors 1 - α and α |v| / |F| (|v|, |F| the global 2-norms; 0 for |F|² <= 1e-20);
             after more than `delaystep` iterations since P was last <= 0: dt = min(dt dtgrow, tmax dt0),
             α = α alphashrink
    P <= 0:  unless `initialdelay` and fewer than `delaystep` iterations were made: α = alpha0 and
             dt = dt dtshrink if that stays >= tmin dt0; more than `vdfmax` such iterations in a row
             stop the run; `halfstepback`: x -= dt/2 v (then the forces are evaluated there); v = 0;
             this counts as a force evaluation with or without the half step back (LAMMPS
             evaluates the forces after every reset of v, the first iteration's too)
    h = dt, or dmax / max_ik |v_ik| when an atom would move farther than dmax along x, y or z
             (v: the velocity before the step, or dt F/m after a reset)
    v += h F / m;  v = (1 - α) v + α |v| F̂ when P > 0;  x += h v;  forces at the new positions

and the run stops after an iteration when (checked in this order, as LAMMPS)

- etol > 0, more than `delaystep` iterations since P was last <= 0, and
  |E - E_prev| < etol (|E| + |E_prev| + 1e-8 eV) / 2 (E_prev: the energy the last iteration
  ended with, before any half step back: LAMMPS' eprevious, the summary's next-to-last energy);
- ftol > 0 and the force norm < ftol ([minimize] norm: the 2-norm of the 3N force vector, the
  largest |F_i|, or the largest component);
- the step reaches [minimize] steps (the loop's end).

The velocities start at zero (as LAMMPS).  A step counts as one iteration, and the box is fixed
(no cell relaxation).

[minimize] fixed_directions (every minimizer, LAMMPS' `fix ID all setforce 0 0 NULL`): the run's
force provider is a `FixedForces`, which sets the force components along those Cartesian axes to
zero on every rank's own atoms after every force evaluation.  The minimizers see only these
forces: their search directions and velocities stay zero along the axes, so no atom moves along
them (its coordinates there stay bit for bit), and the force norms (ftol, the thermo's fnorm and
fmax, the summary) count the zeroed components as zero, as LAMMPS' do.  `State.minimize`'s
"fixed_directions" ((3,) float64, 1 for a fixed axis) records them: a restart must fix the same.

All global quantities (P, |v|², |F|², the norms, the largest velocity
component) are reductions over the ranks (numdp.parallel.world.World), so every rank takes the
same branch; a run on several ranks equals the serial run to round-off.

FIRE's own state (dt, α, the counters, the start values for the summary) lives in
`State.minimize`, so a checkpoint carries it: `--restart` continues the minimization where a
checkpoint of `checkpoint_every` or a signal left it, bit for bit.  At its end the velocities are
set to zero (`at_end`), so the final checkpoint is the relaxed structure at rest (an MD input can
start from it), and restarting from it continues FIRE from rest.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

from ..config import AXES, MinimizeSettings, NormStyle
from ..errors import InputError
from ..kernels.cpu.md import drift, fire_euler_step, fire_sums, force_norms, kick, largest_component
from ..parallel.world import World
from ..system import State

EPS_ENERGY = 1e-8   # eV: keeps the etol test defined at E = 0 (LAMMPS' EPS_ENERGY)
TINY_FORCE2 = 1e-20  # eV²/Å²: below this |F|², P > 0 mixes nothing in (LAMMPS' guard)


class StopReason(enum.Enum):
    """Why a minimization stopped (the value is LAMMPS' "Stopping criterion" wording)."""

    ETOL = "energy tolerance"
    FTOL = "force tolerance"
    VDFMAX = "max iterations with v.f negative"
    STEPS = "max iterations"
    MAXEVAL = "max force evaluations"
    DOWNHILL = "search direction is not downhill"     # the line searches' (numdp.md.linesearch)
    ZEROALPHA = "linesearch alpha is zero"
    ZEROFORCE = "forces are zero"
    ZEROQUAD = "quadratic factors are zero"

    @property
    def key(self) -> str | None:
        """The [minimize] key of the criterion (None: a line search's own stop)."""
        return {StopReason.ETOL: "etol", StopReason.FTOL: "ftol", StopReason.VDFMAX: "vdfmax",
                StopReason.STEPS: "steps", StopReason.MAXEVAL: "maxeval"}.get(self)


@dataclass(frozen=True)
class ForceNorms:
    """Norms of the global force vector (eV/Å): `two` = the 2-norm of the 3N vector, `atom` = the
    largest |F_i|, `component` = the largest |F_ik| (LAMMPS min_modify norm two / max / inf)."""

    two: float
    atom: float
    component: float

    def of(self, norm: NormStyle) -> float:
        return {NormStyle.TWO: self.two, NormStyle.MAX: self.atom, NormStyle.INF: self.component}[norm]


def force_norms_global(forces: np.ndarray, world: World | None = None) -> ForceNorms:
    """`ForceNorms` of every rank's forces (N, 3) eV/Å.  Collective."""
    world = world if world is not None else World(None)
    ff, fmax2, finf = force_norms(np.ascontiguousarray(forces, dtype=np.float64))
    return ForceNorms(math.sqrt(world.sum_global(ff)), math.sqrt(world.max_global(fmax2)), world.max_global(finf))


class FixedForces:
    """A force provider whose forces are zero along the [minimize] fixed_directions axes: calling it
    evaluates `provider` (numdp.md.forces.ForceProvider) and sets those components of state.forces
    (this rank's atoms, (N, 3) eV/Å) to zero, as LAMMPS' fix setforce 0 0 NULL after every force
    evaluation (energy and virial are the model's).  Everything else (timers, counters, the
    closest pair, the deviation hand-over) is `provider`'s own.

    Use `FixedForces.around(provider, settings)`: `provider` itself when nothing is fixed."""

    def __init__(self, provider, fixed_directions: tuple[str, ...]):
        self.provider = provider
        self.columns = [AXES.index(a) for a in fixed_directions]

    @classmethod
    def around(cls, provider, settings: MinimizeSettings):
        return cls(provider, settings.fixed_directions) if settings.fixed_directions else provider

    def __call__(self, state: State) -> None:
        self.provider(state)
        state.forces[:, self.columns] = 0.0

    def __getattr__(self, name: str):
        return getattr(self.provider, name)


def fixed_flags(fixed_directions: tuple[str, ...]) -> np.ndarray:
    """(3,) float64: 1.0 for each axis of `fixed_directions` (State.minimize's record), else 0.0."""
    return np.array([float(a in fixed_directions) for a in AXES])


def _axes_words(flags: np.ndarray) -> str:
    fixed = [a for a, f in zip(AXES, flags) if f]
    return "along " + ", ".join(fixed) if fixed else "along no axis"


# the scalars of State.minimize (float64), with their meaning
FIRE_STATE = {
    "dt": "FIRE's current step, ps",
    "alpha": "the current mixing fraction",
    "start_step": "the step at which the minimization started",
    "last_negative": "the last step at which P <= 0 (the start counts as one)",
    "negatives": "iterations in a row with P <= 0",
    "evaluations": "force evaluations made by the iterations",
    "e_initial": "potential energy at the start, eV",
    "e_previous": "potential energy before the last iteration, eV",
    "fnorm_initial": "2-norm of the force vector at the start, eV/A",
    "fmax_initial": "largest force component at the start, eV/A",
}


class MinimizerState:
    """What the minimizers share: their scalars in `State.minimize` (float64 0-d arrays, so that a
    checkpoint carries them) and the check that a checkpoint's are theirs.  Needs `settings`."""

    settings: MinimizeSettings

    def _continues(self, state: State, keys) -> bool:
        """Whether `state` holds a minimization to continue (a restart); InputError when it is
        another minimizer's (a scalar of `keys` is missing)."""
        if not state.minimize:
            return False
        missing = [k for k in keys if k not in state.minimize]
        if missing:
            raise InputError(f"the checkpoint holds another minimizer's state (it lacks {missing}); "
                             f"[minimize] style = '{self.settings.style}' cannot continue it: use the style that "
                             f"wrote it, or give the checkpoint as [system] file to start anew")
        held = np.asarray(state.minimize.get("fixed_directions", np.zeros(3)), dtype=np.float64)
        flags = fixed_flags(self.settings.fixed_directions)
        if held.shape != (3,) or not np.array_equal(held != 0.0, flags != 0.0):
            raise InputError(f"the checkpoint's minimization fixes the forces {_axes_words(held.ravel()[:3])}, "
                             f"[minimize] fixed_directions {_axes_words(flags)}: give the same to continue it "
                             f"(or give the checkpoint as [system] file with anew = true to start anew)")
        return True

    def _start_record(self, state: State) -> None:
        """Record the fixed axes in a new minimization's State.minimize (the restart check's)."""
        state.minimize["fixed_directions"] = fixed_flags(self.settings.fixed_directions)

    def _get(self, state: State, key: str) -> float:
        return float(state.minimize[key])

    def _set(self, state: State, **values) -> None:
        for key, value in values.items():
            state.minimize[key] = np.float64(value)

    def _stats(self, state: State, stop: str, final_energy: float, norms: ForceNorms, last: str) -> list[str]:
        """The log's closing lines (LAMMPS' "Minimization stats"): `stop` (the stopping criterion's
        line), the energies (the last one `final_energy`, eV), the force norms at the start and the
        end, iterations and evaluations, and the minimizer's own `last` line."""
        m = state.minimize
        iterations = state.step - int(float(m["start_step"]))
        return [
            "Minimization stats:",
            f"  Stopping criterion = {stop}",
            f"  Energy initial, next-to-last, final = {float(m['e_initial']):.10g} "
            f"{float(m['e_previous']):.10g} {final_energy:.10g} eV",
            f"  Force two-norm initial, final = {float(m['fnorm_initial']):.6g} {norms.two:.6g} eV/A",
            f"  Force max component initial, final = {float(m['fmax_initial']):.6g} {norms.component:.6g} eV/A",
            f"  Iterations, force evaluations = {iterations} {int(float(m['evaluations']))}",
            last,
        ]


class FireMinimizer(MinimizerState):
    """FIRE 2.0 iterations on a State (module docstring); used by the run loop in the place of the
    integrator: `step(state, forces)` makes one iteration, `finished` says why it stopped (None
    while it goes on), `at_end` ends the run, `final_lines` report it.

    settings: the [minimize] table; world: the run's ranks."""

    thermostat = None   # (the run loop's snapshot asks the integrator for these)
    barostat = None
    minimizing = True   # the run's steps are iterations (numdp.md.loop.RunResult)

    def __init__(self, settings: MinimizeSettings, world: World | None = None):
        self.settings = settings
        self.world = world if world is not None else World(None)
        self.dt0 = float(settings.timestep)
        self.dtmax = settings.tmax * self.dt0
        self.dtmin = settings.tmin * self.dt0
        self.finished: StopReason | None = None
        self.last_norm = math.nan   # the force norm ([minimize] norm) after the last iteration, eV/Å

    @property
    def dt(self) -> float:
        """The initial FIRE step dt0, ps (the run summary's timestep)."""
        return self.dt0

    # -- state -------------------------------------------------------------------------------------
    def initialize(self, state: State) -> None:
        """Start a minimization on `state` (velocities set to zero, FIRE's variables to their start
        values), or continue the one whose variables `state.minimize` holds (a restart)."""
        if self._continues(state, FIRE_STATE):
            return
        state.velocities[:] = 0.0
        step = float(state.step)
        state.minimize = {"dt": self.dt0, "alpha": self.settings.alpha0, "start_step": step,
                          "last_negative": step, "negatives": 0.0, "evaluations": 0.0,
                          "e_initial": math.nan, "e_previous": math.nan, "fnorm_initial": math.nan,
                          "fmax_initial": math.nan}
        state.minimize = {k: np.float64(v) for k, v in state.minimize.items()}
        self._start_record(state)

    def _record_start(self, state: State) -> None:
        """The start values of the summary, once the start forces are known.  Collective."""
        if math.isnan(self._get(state, "e_initial")):
            norms = force_norms_global(state.forces, self.world)
            self._set(state, e_initial=state.potential_energy, e_previous=state.potential_energy,
                      fnorm_initial=norms.two, fmax_initial=norms.component)

    def sync_host(self, state: State) -> None:
        """Nothing to copy: the minimization works on the host arrays."""

    # -- one iteration -----------------------------------------------------------------------------
    def step(self, state: State, forces) -> None:
        """One FIRE iteration (module docstring); `forces(state)` fills state.forces, .virial and
        .potential_energy for the current positions (once, or twice after a half step back).
        Sets `finished` when a stopping criterion is met.  Collective."""
        p = self.settings
        world = self.world
        self._record_start(state)
        m = state.minimize
        step = state.step + 1          # the step this iteration makes
        dt, alpha = float(m["dt"]), float(m["alpha"])
        power, vv, ff = world.sum_global(np.array(fire_sums(state.velocities, state.forces)))
        mix = power > 0.0
        scale_v = scale_f = 0.0
        evaluations = float(m["evaluations"])
        e_before = state.potential_energy   # LAMMPS' eprevious: not the half step back's energy
        if mix:
            negatives = 0.0
            scale_v = 1.0 - alpha
            scale_f = 0.0 if ff <= TINY_FORCE2 else alpha * math.sqrt(vv / ff)
            if step - float(m["last_negative"]) > p.delaystep:
                dt = min(dt * p.dtgrow, self.dtmax)
                alpha *= p.alphashrink
            last_negative = float(m["last_negative"])
        else:
            last_negative = float(step)
            if not (p.initialdelay and step - float(m["start_step"]) < p.delaystep):
                alpha = p.alpha0
                if dt * p.dtshrink >= self.dtmin:
                    dt *= p.dtshrink
            negatives = float(m["negatives"]) + 1.0
            if p.vdfmax > 0 and negatives > p.vdfmax:   # stuck: stop before moving (as LAMMPS)
                self._set(state, dt=dt, alpha=alpha, last_negative=last_negative, negatives=negatives)
                state.step += 1
                self.last_norm = force_norms_global(state.forces, world).of(p.norm)
                self.finished = StopReason.VDFMAX
                return
            moved = p.halfstepback and vv > 0.0
            if moved:   # back to the middle of the last step, where the motion turned uphill
                drift(state.positions, state.velocities, -0.5 * dt)
            state.velocities[:] = 0.0
            if moved:
                forces(state)
            # LAMMPS evaluates the forces after every reset of v (its flagv0, the first iteration
            # too) and counts it; where the atoms did not move that gives the forces they have
            evaluations += 1.0
        # no atom moves farther than dmax along x, y or z: the velocity now, or dt F/m after a reset
        if mix:
            vmax = largest_component(state.velocities)
        else:
            estimate = np.zeros_like(state.velocities)
            kick(estimate, state.forces, state.masses, dt)
            vmax = largest_component(estimate)
        vmax = world.max_global(vmax)
        h = dt
        if h * vmax > p.dmax:
            h = p.dmax / vmax
        fire_euler_step(state.positions, state.velocities, state.forces, state.masses, h, mix, scale_v, scale_f)
        forces(state)
        evaluations += 1.0
        state.step += 1
        self._set(state, dt=dt, alpha=alpha, last_negative=last_negative, negatives=negatives,
                  evaluations=evaluations, e_previous=e_before)
        e = state.potential_energy
        if p.etol > 0.0 and step - last_negative > p.delaystep \
                and abs(e - e_before) < p.etol * 0.5 * (abs(e) + abs(e_before) + EPS_ENERGY):
            self.finished = StopReason.ETOL
        self.last_norm = force_norms_global(state.forces, world).of(p.norm) if p.ftol > 0.0 else math.nan
        if self.finished is None and p.ftol > 0.0 and self.last_norm < p.ftol:
            self.finished = StopReason.FTOL

    # -- end -----------------------------------------------------------------------------------------
    def at_end(self, state: State, end_step: int) -> None:
        """The run ended without a stop (a criterion or the last step): the relaxed structure is
        left at rest (v = 0) for the final outputs.  Collective."""
        self._record_start(state)
        if self.finished is None:
            self.finished = StopReason.STEPS
        state.velocities[:] = 0.0

    def final_lines(self, state: State) -> list[str]:
        """The log's last lines: why the run stopped, the energies and force norms at the start,
        before the last iteration and at the end, the iterations and force evaluations.  Collective."""
        p = self.settings
        m = state.minimize
        norms = force_norms_global(state.forces, self.world)
        reason = self.finished or StopReason.STEPS
        if reason is StopReason.FTOL:
            why = f"force norm ({p.norm.value}) {norms.of(p.norm):.6g} < ftol = {p.ftol:g} eV/A"
        elif reason is StopReason.ETOL:
            why = f"relative energy change < etol = {p.etol:g}"
        elif reason is StopReason.VDFMAX:
            why = f"more than vdfmax = {p.vdfmax} iterations in a row with P = F.v <= 0 (not converged)"
        else:
            why = f"reached steps = {state.step} (not converged"
            why += f": force norm ({p.norm.value}) {norms.of(p.norm):.6g} eV/A" + (
                f" >= ftol = {p.ftol:g})" if p.ftol > 0.0 else ")")
        return self._stats(state, f"{reason.value} ([minimize] {reason.key}): {why}", state.potential_energy, norms,
                           f"  Final FIRE timestep, alpha = {float(m['dt']):.6g} ps {float(m['alpha']):.6g}")
