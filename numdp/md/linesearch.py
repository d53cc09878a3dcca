"""Energy minimization by line searches, as LAMMPS' `min_style cg` (its default) and `min_style sd`
with `min_modify line quadratic` (its default) or `line backtrack`, and `minimize etol ftol
maxiter maxeval` (docs/md.md, "Energy minimization").

One iteration moves the atoms along the search direction h (3N vector, eV/Å) to a lower energy by
a line search from x0 (the positions at its start), with E0 the energy there, F·h the global sum
(the "slope"; F·h <= 0 stops: "search direction is not downhill"; h = 0: "forces are zero") and
the largest step alpha_max = min(1, dmax / max_ik |h_ik|) Å²/eV (no coordinate moves more than
dmax).  Each trial sets x = x0 + alpha h and evaluates the forces (one force evaluation):

- backtrack: alpha = alpha_max, halved until E - E0 <= -0.4 alpha F·h (success); once alpha
  reaches 0 or 0.4 alpha F·h <= EMACH = 1e-8 eV, back to x0 (an evaluation) and stop: "energy
  tolerance" when the last trial lowered E, else "linesearch alpha is zero".
- quadratic: the same halving, and at each trial also, from the projected force fh = F(x)·h and
  the previous trial's (fh_prev, alpha_prev, E_prev; at the start F·h, 0, E0), the secant step
  alpha' = alpha - (alpha - alpha_prev) fh / (fh - fh_prev): taken (an evaluation) when the energy
  agrees with the quadratic model, |1 - (½ (alpha - alpha_prev)(fh + fh_prev) + E) / E_prev| <=
  0.1, and 0 < alpha' < alpha_max; it succeeds when E(alpha') - E0 < EMACH.  |fh| or |fh -
  fh_prev| < EPS_QUAD = 1e-28 stops, back at x0: "quadratic factors are zero".  (As LAMMPS, a
  secant trial that fails leaves its energy as the one the halving test and the next quadratic
  model see.)

Then, in this order, the run stops on `maxeval` (evaluations >= maxeval), etol (|E - E_prev| <
etol (|E| + |E_prev| + 1e-8 eV) / 2) and ftol (the force norm < ftol); otherwise the next
direction is, for sd, h = F, and for cg (Polak-Ribière) h = F + beta h with beta = max(0, (F·F -
F·g) / g·g) (g: the forces at the line search's start), beta = 0 every 3N-th iteration of the
minimization, and h = F when F·h <= 0.  The first direction is h = F.

With [minimize] box (numdp.md.boxrelax, LAMMPS' fix box/relax) the cell's degrees of freedom
join the atoms' as LAMMPS' "extra global dofs": their generalized forces fextra (eV) and direction
h_s (`state.minimize["box_direction"]`) enter F·h, F·F, F·g, the norms, beta and the not-downhill
test; alpha_max is also at most vmax / max|h_s|; a trial moves the cell by alpha h_s from the
search's start and the atoms with it before x0 + alpha h; E is E_pot + P_t (V - V_ref) throughout
(the line searches, etol, the summary), and cg restarts every (3N + ndof)-th iteration.

Every sum and maximum over atoms is a global reduction (numdp.parallel.world.World), so every rank
takes the same branch and a run on several ranks equals the serial run to round-off.

The search direction is the per-atom array `state.minimize["direction"]` between iterations
(numdp.system.MINIMIZE_ATOM_ARRAYS: it moves with the atoms when they migrate, and a checkpoint
carries it); with g = F at the end of every iteration and the scalars in `State.minimize`, a
checkpoint holds the whole state and `--restart` continues the minimization bit for bit.  During
an iteration x0 and g are per-atom arrays of `state.minimize` too ("start", "start_forces"), since
a force evaluation may migrate the atoms.  The velocities stay zero.  At the end the direction is
set to zero (the relaxed structure); a restart from such a checkpoint starts with h = F again, as
LAMMPS' next `minimize` command.
"""
from __future__ import annotations

import math

import numpy as np

from ..config import LineSearch, MinimizeSettings, NormStyle
from ..errors import InputError
from ..parallel.world import World
from ..system import State
from .boxrelax import BoxRelax
from .minimize import EPS_ENERGY, ForceNorms, MinimizerState, StopReason, force_norms_global

ALPHA_MAX = 1.0          # Å²/eV: the largest step along h (LAMMPS' ALPHA_MAX)
ALPHA_REDUCE = 0.5       # backtracking factor
BACKTRACK_SLOPE = 0.4    # sufficient decrease: E - E0 <= -0.4 alpha F·h
QUADRATIC_TOL = 0.1      # relative error of the quadratic model that allows the secant step
EMACH = 1e-8             # eV: energy changes below this are round-off
EPS_QUAD = 1e-28         # eV²/Å² · Å²/eV: projected forces below this stop the quadratic search

# the scalars of State.minimize for cg / sd (float64), with their meaning
LINE_STATE = {
    "start_step": "the step at which the minimization started",
    "evaluations": "force evaluations made by the iterations",
    "gg": "g·g, the squared 2-norm of the forces at the start of the next line search, eV²/Å²",
    "alpha": "the step of the last line search, Å²/eV",
    "e_initial": "potential energy at the start, eV",
    "e_previous": "potential energy before the last iteration, eV",
    "fnorm_initial": "2-norm of the force vector at the start, eV/A",
    "fmax_initial": "largest force component at the start, eV/A",
}
# and with [minimize] box (numdp.md.boxrelax), global arrays
BOX_STATE = {
    "box_reference": "(3, 3) the cell at the minimization's start, A",
    "box_direction": "(ndof,) the search direction of the cell dofs, eV",
}


class LineSearchMinimizer(MinimizerState):
    """cg / sd iterations on a State (module docstring), in the run loop's integrator place as
    numdp.md.minimize.FireMinimizer: `step(state, forces)`, `finished`, `at_end`, `final_lines`.

    settings: the [minimize] table (style "cg" or "sd"); world: the run's ranks."""

    thermostat = None
    barostat = None
    minimizing = True
    dt = 0.0   # no timestep (the run summary's)

    def __init__(self, settings: MinimizeSettings, world: World | None = None):
        self.settings = settings
        self.world = world if world is not None else World(None)
        self.finished: StopReason | None = None
        self.last_norm = math.nan
        self.box = BoxRelax(settings.box) if settings.box is not None else None

    # -- state -------------------------------------------------------------------------------------
    def initialize(self, state: State) -> None:
        """Start a minimization (h = F once the forces are known), or continue the one whose scalars
        `state.minimize` holds (a restart; h its "direction")."""
        if self._continues(state, LINE_STATE):
            held = "box_direction" in state.minimize
            if held != (self.box is not None) or (held and state.minimize["box_direction"].size != self.box.ndof):
                raise InputError("the checkpoint's minimization relaxes " + (
                    f"{state.minimize['box_direction'].size} cell degrees of freedom" if held else "no cell") +
                    "; [minimize] box must say the same to continue it (or give the checkpoint as [system] "
                    "file to start anew)")
            return
        state.velocities[:] = 0.0
        state.minimize = {k: np.float64(math.nan) for k in LINE_STATE}
        state.minimize["start_step"] = np.float64(state.step)
        state.minimize["evaluations"] = np.float64(0.0)
        state.minimize["direction"] = np.zeros_like(state.positions)
        self._start_record(state)
        if self.box is not None:
            state.minimize["box_reference"] = np.array(state.box, dtype=np.float64)
            state.minimize["box_direction"] = np.zeros(self.box.ndof)

    def _dot(self, a: np.ndarray, b: np.ndarray) -> float:
        """Global a·b of two (n, 3) per-atom arrays.  Collective."""
        return float(self.world.sum_global(float(np.dot(a.ravel(), b.ravel()))))

    # the cell dofs (numdp.md.boxrelax; none without [minimize] box): global, the same on every rank
    def _cell_forces(self, state: State) -> np.ndarray:
        """(ndof,) eV: the generalized forces on the cell dofs at the current state."""
        return np.zeros(0) if self.box is None else self.box.forces(state, state.minimize["box_reference"])

    def _cell_direction(self, state: State) -> np.ndarray:
        return state.minimize["box_direction"] if self.box is not None else np.zeros(0)

    def objective(self, state: State) -> float:
        """The minimized energy, eV: the potential energy, plus P_t (V - V_ref) with [minimize] box."""
        if self.box is None:
            return state.potential_energy
        return state.potential_energy + self.box.energy(state, state.minimize["box_reference"])

    def norms(self, state: State) -> ForceNorms:
        """The force norms of the atoms' forces and the cell dofs' generalized forces together (as
        LAMMPS counts a fix's extra dofs; each cell force as an atom of its own for `max`).  Collective."""
        norms = force_norms_global(state.forces, self.world)
        fe = self._cell_forces(state)
        if fe.size == 0:
            return norms
        largest = float(np.abs(fe).max())
        return ForceNorms(math.sqrt(norms.two ** 2 + float(fe @ fe)), max(norms.atom, largest),
                          max(norms.component, largest))

    def _record_start(self, state: State) -> None:
        """The start values (and h = F, g·g) once the start forces are known; a restart from a
        final checkpoint (h = 0 everywhere) also starts with h = F.  Collective."""
        if math.isnan(self._get(state, "e_initial")):
            norms = self.norms(state)
            e = self.objective(state)
            self._set(state, e_initial=e, e_previous=e, fnorm_initial=norms.two, fmax_initial=norms.component)
        h, he = state.minimize["direction"], self._cell_direction(state)
        if math.isnan(self._get(state, "gg")) or max(self.world.max_global(float(np.abs(h).max(initial=0.0))),
                                                     float(np.abs(he).max(initial=0.0))) == 0.0:
            h[:] = state.forces
            fe = self._cell_forces(state)
            he[:] = fe
            self._set(state, gg=self._dot(state.forces, state.forces) + float(fe @ fe))

    def sync_host(self, state: State) -> None:
        """Nothing to copy: the minimization works on the host arrays."""

    # -- one iteration -----------------------------------------------------------------------------
    def step(self, state: State, forces) -> None:
        """One line search and the next direction (module docstring); `forces(state)` fills
        state.forces and .potential_energy.  Sets `finished` when the run stops.  Collective."""
        p = self.settings
        self._record_start(state)
        e0 = self.objective(state)
        # x0 and g travel with the atoms through the force evaluations (they may migrate)
        state.minimize["start"] = state.positions.copy()
        state.minimize["start_forces"] = state.forces.copy()
        g_cell = self._cell_forces(state)
        search = _LineSearch(state, forces, self.world, p.dmax, self)
        try:
            failed = search.backtrack(e0) if p.line is LineSearch.BACKTRACK else search.quadratic(e0)
        finally:
            del state.minimize["start"]
            g = state.minimize.pop("start_forces")
        state.step += 1
        evaluations = self._get(state, "evaluations") + search.evaluations
        self._set(state, evaluations=evaluations, e_previous=e0, alpha=search.alpha)
        self.last_norm = self.norms(state).of(p.norm) if p.ftol > 0.0 else math.nan
        if failed is not None:
            self.finished = failed
            return
        if p.maxeval is not None and evaluations >= p.maxeval:
            self.finished = StopReason.MAXEVAL
            return
        e = self.objective(state)
        if abs(e - e0) < p.etol * 0.5 * (abs(e) + abs(e0) + EPS_ENERGY):
            self.finished = StopReason.ETOL
            return
        f, h = state.forces, state.minimize["direction"]
        fe, he = self._cell_forces(state), self._cell_direction(state)
        ff, fg = (float(s) for s in self.world.sum_global(
            np.array([np.dot(f.ravel(), f.ravel()), np.dot(f.ravel(), g.ravel())])))
        ff, fg = ff + float(fe @ fe), fg + float(fe @ g_cell)   # the cell dofs' (the same on every rank)
        if p.ftol > 0.0:
            measure = ff if p.norm is NormStyle.TWO else self.last_norm ** 2
            if measure < p.ftol * p.ftol:
                self.finished = StopReason.FTOL
                return
        if p.style == "sd":
            h[:] = f
            he[:] = fe
            return
        iteration = state.step - int(self._get(state, "start_step"))
        beta = max(0.0, (ff - fg) / self._get(state, "gg"))
        if (iteration + 1) % (3 * state.natoms_global + fe.size) == 0:   # restart every 3N (+ cell dofs) iterations
            beta = 0.0
        self._set(state, gg=ff)
        h *= beta
        h += f
        he *= beta
        he += fe
        if self._dot(f, h) + float(fe @ he) <= 0.0:   # not downhill: steepest descent again
            h[:] = f
            he[:] = fe

    # -- end -----------------------------------------------------------------------------------------
    def at_end(self, state: State, end_step: int) -> None:
        """The run ended: the relaxed structure, h = 0 (a restart starts with h = F)."""
        self._record_start(state)
        if self.finished is None:
            self.finished = StopReason.STEPS
        state.minimize["direction"][:] = 0.0
        self._cell_direction(state)[:] = 0.0

    def final_lines(self, state: State) -> list[str]:
        """The log's last lines (as numdp.md.minimize.FireMinimizer's, with LAMMPS' wording).  Collective."""
        p = self.settings
        m = state.minimize
        norms = self.norms(state)
        reason = self.finished or StopReason.STEPS
        if reason is StopReason.FTOL:
            why = f": force norm ({p.norm.value}) {norms.of(p.norm):.6g} < ftol = {p.ftol:g} eV/A"
        elif reason is StopReason.ETOL:
            why = f": relative energy change < etol = {p.etol:g}" if p.etol > 0 else \
                ": the line search's energy change is below 1e-8 eV (backtrack)"
        elif reason is StopReason.MAXEVAL:
            why = f": {int(float(m['evaluations']))} >= maxeval = {p.maxeval} (not converged)"
        elif reason is StopReason.STEPS:
            why = f": reached steps = {state.step} (not converged: force norm ({p.norm.value}) " \
                  f"{norms.of(p.norm):.6g} eV/A)"
        else:
            why = " (the line search made no progress; usually the end of what the precision allows)"
        key = f" ([minimize] {reason.key})" if reason.key else ""
        return self._stats(state, f"{reason.value}{key}{why}", self.objective(state), norms,
                           f"  Final line search alpha = {float(m['alpha']):.6g} A^2/eV ({p.style}, line {p.line.value})"
                           ) + ([self.box.final_line(state, m["box_reference"])] if self.box is not None else [])


class _LineSearch:
    """One line search along h from x0 (state.minimize's "direction" and "start").
    `evaluations` counts its force evaluations, `alpha` is its step (0 after a failure)."""

    def __init__(self, state: State, forces, world: World, dmax: float, minimizer: LineSearchMinimizer):
        self.state, self.forces, self.world, self.dmax = state, forces, world, dmax
        self.minimizer = minimizer
        self.box = minimizer.box
        self.start_box = None if state.box is None else state.box.copy()   # the cell at x0
        self.evaluations = 0
        self.alpha = 0.0

    def _h(self) -> np.ndarray:
        return self.state.minimize["direction"]

    def _fh(self) -> float:
        """F·h of the atoms and the cell dofs.  Collective."""
        fh = float(self.world.sum_global(float(np.dot(self.state.forces.ravel(), self._h().ravel()))))
        m = self.minimizer
        return fh + float(m._cell_forces(self.state) @ m._cell_direction(self.state))

    def _at(self, alpha: float) -> float:
        """x = x0 + alpha h (with the cell dofs: the cell moved by alpha h_s, the atoms x0 with it,
        then by alpha h), forces there; the minimized energy, eV.  Collective."""
        s = self.state
        if self.box is None:
            s.positions[:] = s.minimize["start"]
        else:
            self.box.move(s, self.start_box, s.minimize["start"], s.minimize["box_reference"],
                          alpha * s.minimize["box_direction"])
        if alpha > 0.0:
            s.positions += alpha * s.minimize["direction"]
        self.forces(s)   # may migrate the atoms (and state.minimize's per-atom arrays with them)
        self.evaluations += 1
        return self.minimizer.objective(s)

    def _start(self) -> tuple[float, float] | StopReason:
        """(F·h, alpha_max), or why the search cannot start.  Collective."""
        h = self._h()
        fh = self._fh()
        if fh <= 0.0:
            return StopReason.DOWNHILL
        hmax = self.world.max_global(float(np.abs(h).max(initial=0.0)))
        alpha_max = min(ALPHA_MAX, self.dmax / hmax) if hmax > 0.0 else ALPHA_MAX
        if self.box is not None:
            he = self.state.minimize["box_direction"]
            alpha_max = min(alpha_max, self.box.max_alpha(he))
            hmax = max(hmax, float(np.abs(he).max(initial=0.0)))
        if hmax == 0.0:
            return StopReason.ZEROFORCE
        return fh, alpha_max

    def backtrack(self, e0: float) -> StopReason | None:
        """LAMMPS' `line backtrack` (module docstring); None on success.  Collective."""
        start = self._start()
        if isinstance(start, StopReason):
            return start
        fh0, alpha = start
        while True:
            e = self._at(alpha)
            ideal = -BACKTRACK_SLOPE * alpha * fh0
            if e - e0 <= ideal:
                self.alpha = alpha
                return None
            alpha *= ALPHA_REDUCE
            if alpha <= 0.0 or ideal >= -EMACH:
                self._at(0.0)
                return StopReason.ETOL if e - e0 < 0.0 else StopReason.ZEROALPHA

    def quadratic(self, e0: float) -> StopReason | None:
        """LAMMPS' `line quadratic` (module docstring); None on success.  Collective."""
        start = self._start()
        if isinstance(start, StopReason):
            return start
        fh0, alpha_max = start
        alpha, alpha_prev, fh_prev, e_prev = alpha_max, 0.0, fh0, e0
        while True:
            e = self._at(alpha)
            fh = self._fh()
            dfh = fh - fh_prev
            if abs(fh) < EPS_QUAD or abs(dfh) < EPS_QUAD:
                self._at(0.0)
                return StopReason.ZEROQUAD
            # (LAMMPS divides by e_prev = 0 too: inf or nan, which skips the secant step)
            relerr = abs(1.0 - (0.5 * (alpha - alpha_prev) * (fh + fh_prev) + e) / e_prev) if e_prev != 0.0 \
                else math.inf
            secant = alpha - (alpha - alpha_prev) * fh / dfh
            if relerr <= QUADRATIC_TOL and 0.0 < secant < alpha_max:
                e = self._at(secant)
                if e - e0 < EMACH:
                    self.alpha = secant
                    return None
            ideal = -BACKTRACK_SLOPE * alpha * fh0
            if e - e0 <= ideal:
                self.alpha = alpha
                return None
            fh_prev, e_prev, alpha_prev = fh, e, alpha
            alpha *= ALPHA_REDUCE
            if alpha <= 0.0 or ideal >= -EMACH:
                self._at(0.0)
                return StopReason.ZEROALPHA
