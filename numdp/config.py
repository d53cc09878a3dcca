"""`numdp run` input: TOML -> validated, typed settings.

Every key is checked; an unknown key or a bad value raises `InputError` with a one-line message
naming the file, the table and the key, e.g. ``md.toml: [md] thermostat.tau: must be > 0``.
Relative paths are taken relative to the input file.  The schema (keys, defaults, units) is
documented in docs/md.md and mirrored by the dataclasses below.  An input has either an [md]
table (dynamics) or a [minimize] table (energy minimization, numdp.md.minimize), never both.  The checks
themselves are `numdp.validate.Table`'s (shared with `numdp train`): to add a key, read it in its
table's function below and add it to that function's `check_keys`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from .io.h5md import DEFAULT_FORCE_UNIT, FIELDS, FORCE_UNITS
from .io.trajectory import FORMATS as TRAJ_FORMATS, SUFFIXES as TRAJ_SUFFIXES
from .io.trajectory import DUMP_COLUMNS, FRAME_SERIES_MARK, dump_fields
from .io.trajectory import format_of_path as traj_format_of_path
from .lattice import BASES as LATTICE_BASES, STYLES as LATTICE_STYLES, Lattice
from .md.barostat import COUPLINGS, StochasticCellRescaling
from .md.mtk import MTKBarostat
from .md.thermo import DEFAULT_COLUMNS as THERMO_DEFAULT, HEADERS as THERMO_HEADERS, KEYWORDS as THERMO_KEYWORDS
from .md.thermostats import THERMOSTATS, Langevin, NoseHooverChain
from .backend import DEVICES
from .model.precision import PRECISIONS
from .errors import InputError
from .validate import (RUN_WORDING, Limit, Table, distinct_files, is_int_list, parse_toml_text, read_input_text,
                       resolve_path, toml_value)

# The names an input may use; each set has its home where it is implemented.
ENSEMBLES = ("nve", "nvt", "npt", "nph")
THERMOSTAT_KINDS = tuple(THERMOSTATS)
BAROSTAT_KINDS = (StochasticCellRescaling.kind, MTKBarostat.kind)
REPLICATE_ORDERS = ("numdp", "lammps")   # [system] replicate_order: replicas c fastest, or a fastest (LAMMPS')
MOMENTUM_CHOICES = ("keep", "zero")   # [system] momentum: the start's total momentum kept, or zeroed
FORMS = ("numdp", "lammps")   # nose-hoover / mtk: numdp's splitting, or LAMMPS' fix nvt / npt equations
PRECISIONS_AVAILABLE = tuple(PRECISIONS)

# The largest values a run input takes (numdp.validate.Limit): far beyond any meaningful run, they
# turn an exponent too many (1e300) into one line instead of an overflow or a division by zero.
TIMESTEP_MAX = Limit(1.0, " ps", "1000 fs; MD of atoms steps 0.1 to 5 fs")
TEMPERATURE_MAX = Limit(1e9, " K", "warm dense matter stays below 1e8 K")
CHAIN_MAX = Limit(1000, "", "links of a Nose-Hoover chain; 3 to 10 are usual")
SKIN_MAX = Limit(1000.0, " A", "skins are 0.5 to 2 A; each atom's ghost images grow as the cutoff cubed")
COUPLING_STEPS_MAX = 1e12
"""Thermostat and barostat tau: at most this many timesteps.  CSVR's per-step weight 1 - exp(-dt/tau)
is 0 in double precision below dt/tau = 1.1e-16 (a division by zero), and a chain's mass
(dof kT tau^2) overflows; at dt/tau = 1e-12 the weight still has four of its sixteen digits."""


@dataclass
class ModelSettings:
    file: Path  # model 0, which drives the dynamics
    precision: str = "double"
    threads: int | None = None
    deviation_files: tuple[Path, ...] = ()  # models 1.. of a deviation ensemble ([model] file = [...])
    device: str = "cpu"  # "cpu" or "cuda" (numdp.backend; docs/gpu.md, "MD on the GPU")
    fparam: tuple[float, ...] | None = None  # frame parameters of models that take them (numb_fparam)
    aparam: tuple[float, ...] | None = None  # atomic parameters of every atom, models with numb_aparam

    @property
    def files(self) -> tuple[Path, ...]:
        """Every model file, model 0 first."""
        return (self.file,) + self.deviation_files


@dataclass
class ModelDeviSettings:
    """[model_devi]: LAMMPS `pair_style deepmd ... out_freq out_file atomic relative relative_v`."""

    every: int = 100
    file: Path | None = None
    atomic: bool = False
    relative: float | None = None    # eV/Å
    relative_v: float | None = None  # eV
    precision: str = "double"        # of the deviation models 1.. (default: [model] precision)


@dataclass
class VelocitySettings:
    temperature: float  # K
    seed: int = 1


@dataclass
class SystemSettings:
    file: Path | None   # None: `lattice` makes the structure
    frame: int | None = None
    replicate: tuple[int, int, int] = (1, 1, 1)
    velocities: VelocitySettings | None = None
    masses: dict[str, float] = field(default_factory=dict)  # amu
    type_names: list[str] | None = None
    pbc: tuple[bool, bool, bool] | None = None  # None: as the structure file says (else all periodic with a cell)
    lattice: Lattice | None = None   # a crystal instead of a file (numdp.lattice)
    replicate_order: str = "numdp"   # "numdp": replicas a-major, c fastest; "lammps": a fastest (LAMMPS' ids)
    momentum: str | None = None   # None: a structure's zeroed, a checkpoint's kept; "keep" | "zero" at the start


@dataclass
class ThermostatSettings:
    kind: str
    temperature: float | tuple[float, float]  # K: a constant, or a ramp (start, stop) over steps 0 -> [md] steps
    tau: float  # ps
    chain: int = 3
    form: str = "numdp"  # nose-hoover: "numdp" (Suzuki-Yoshida splitting) or "lammps" (fix nvt's single pass)


@dataclass
class BarostatSettings:
    pressure: float | tuple[float, float]  # bar: a constant, or a ramp (start, stop) over steps 0 -> [md] steps
    tau: float  # ps
    coupling: str = "isotropic"
    compressibility: float = 4.5e-5  # 1/bar (c-rescale)
    kind: str = "c-rescale"
    chain: int = 3  # links of the cell momentum's Nose-Hoover chain (mtk; 0: none)
    temperature: float | None = None  # K: the reference kT of the cell's mass and chain (mtk in nph: LAMMPS' ptemp)
    form: str = "numdp"  # mtk: "numdp" (c = 2/N_f, exact exponentials) or "lammps" (fix npt's equations and splitting)


@dataclass
class MDSettings:
    timestep: float  # ps
    steps: int
    ensemble: str = "nve"
    thermostat: ThermostatSettings | None = None
    barostat: BarostatSettings | None = None
    seed: int = 1


class NormStyle(str, Enum):
    """How the force vector is measured for [minimize] ftol (LAMMPS `min_modify norm`)."""

    TWO = "two"   # the 2-norm of the global 3N force vector (LAMMPS' default)
    MAX = "max"   # the largest per-atom force length |F_i|
    INF = "inf"   # the largest force component |F_i,k|


class LineSearch(str, Enum):
    """The line search of [minimize] style = "cg" / "sd" (LAMMPS `min_modify line`)."""

    QUADRATIC = "quadratic"   # LAMMPS' default
    BACKTRACK = "backtrack"


MIN_STYLES = ("fire", "cg", "sd")
FIRE_INTEGRATORS = ("eulerimplicit",)
FIRE_KEYS = ("timestep", "integrator", "tmax", "tmin", "delaystep", "dtgrow", "dtshrink", "alpha0", "alphashrink",
             "halfstepback", "initialdelay", "vdfmax")
LINE_KEYS = ("line", "maxeval")
AXES = ("x", "y", "z")   # [minimize] fixed_directions: the Cartesian axes


@dataclass
class MinimizeSettings:
    """[minimize]: LAMMPS `min_style fire|cg|sd` + `min_modify ...` + `minimize etol ftol maxiter
    maxeval`, with LAMMPS' defaults.  style: "fire" (FIRE 2.0, Guénolé et al., Comput. Mater. Sci.
    175, 109584 (2020); numdp.md.minimize; numdp run's default), "cg" (Polak-Ribière conjugate
    gradient, LAMMPS' default) or "sd" (steepest descent), with line: LAMMPS' line search
    (numdp.md.linesearch) and maxeval: stop after this many force evaluations (None: no limit).

    steps: the step number at which the minimization ends (maxiter of a new run); ftol eV/Å and
    norm: stop when the force norm < ftol (0: off); etol: stop when |E - E_prev| < etol (|E| +
    |E_prev| + 1e-8 eV) / 2 (0: off); timestep ps: FIRE's initial step dt0; dmax Å: no atom moves
    more than dmax along x, y or z per iteration (the velocity before the step, as LAMMPS); tmax /
    tmin: dt stays within [tmin, tmax] dt0; delaystep, dtgrow, dtshrink, alpha0, alphashrink,
    halfstepback, initialdelay, vdfmax: FIRE 2.0's N_delay, f_inc, f_dec, alpha_start, f_alpha,
    the half step back, the initial delay, and the most consecutive iterations with P <= 0.
    fixed_directions: the Cartesian axes ("x", "y", "z", each once) along which every atom's
    force is set to zero after every force evaluation, so that no atom moves along them (LAMMPS'
    `fix ID all setforce 0 0 NULL`: numdp.md.minimize.FixedForces); () (the key left out) fixes none."""

    steps: int
    style: str = "fire"
    ftol: float = 1e-3          # eV/Å
    norm: NormStyle = NormStyle.TWO
    etol: float = 0.0
    timestep: float = 0.001     # ps
    dmax: float = 0.1           # Å
    integrator: str = "eulerimplicit"
    tmax: float = 10.0
    tmin: float = 0.02
    delaystep: int = 20
    dtgrow: float = 1.1
    dtshrink: float = 0.5
    alpha0: float = 0.25
    alphashrink: float = 0.99
    halfstepback: bool = True
    initialdelay: bool = True
    vdfmax: int = 2000
    line: LineSearch = LineSearch.QUADRATIC
    maxeval: int | None = None
    box: "BoxRelaxSettings | None" = None   # [minimize] box: cell relaxation (LAMMPS' fix box/relax); None: fixed cell
    fixed_directions: tuple[str, ...] = ()   # axes of AXES whose force components are zeroed (fix setforce)
    anew: bool = False   # a minimization checkpoint as [system] file: a new minimization from its state and
    # step, `steps` iterations long (LAMMPS' minimize after a minimize), not that one continued


BOX_COUPLINGS = ("isotropic", "anisotropic", "triclinic")   # as [md] barostat coupling


@dataclass(frozen=True)
class BoxRelaxSettings:
    """[minimize] box = { coupling, pressure, vmax }: the cell relaxes with the atoms to the
    hydrostatic target `pressure` (bar), as LAMMPS' `fix box/relax iso|aniso|tri P vmax V`
    (numdp.md.boxrelax).  coupling: "isotropic" (one cell degree of freedom: the cell scales
    uniformly), "anisotropic" (the three lengths; tilts keep their ratio to the lengths) or
    "triclinic" (lengths and tilts: six); vmax: the largest relative change of a cell degree of
    freedom in one line-search step (LAMMPS' vmax)."""

    coupling: str = "isotropic"
    pressure: float = 0.0   # bar
    vmax: float = 0.0001


@dataclass
class NeighborSettings:
    skin: float = 2.0  # Å


@dataclass
class OutputSettings:
    trajectory: Path | None
    format: str = "h5md"  # numdp.io.trajectory.FORMATS
    every: int = 100
    fields: tuple[str, ...] = FIELDS
    force_unit: str = DEFAULT_FORCE_UNIT
    thermo_every: int = 100
    log: Path | None = None
    checkpoint: Path | None = None
    checkpoint_every: int = 1000
    progress: str = "auto"  # "auto" | "bar" | "lines" | "none"
    columns: tuple[str, ...] | None = None  # lammps-dump ATOMS columns (LAMMPS dump custom keywords); None: default
    thermo_columns: tuple[str, ...] | None = THERMO_DEFAULT  # thermo keywords of the thermo lines (numdp.md.thermo);
    # None: a minimization's own step pe fnorm fmax
    thermo_header: str = "keywords"  # numdp.md.thermo.HEADERS
    triclinic_bounds: bool = False  # lammps-dump: every box as `BOX BOUNDS xy xz yz` (LAMMPS' triclinic box)
    box_center: tuple[float, float, float] | None = None  # LAMMPS' box centre, Å, where LAMMPS' box is not
    # from 0: a lammps-dump's bounds and x/xu columns, an extxyz's positions and the thermo columns xlo ... zhi
    # from its corner (numdp.io.trajectory.BoxOrigin); None: the box from 0
    box_corner: tuple[float, float, float] | None = None  # LAMMPS' fixed box corner, Å, of a system without
    # a cell (boundary f f f): added to the positions of a lammps-dump or an extxyz (BoxOrigin.open_corner)
    end_frame: bool = True  # the last step of a run (of a minimization: the one it ended at) gets a trajectory
    # frame off the `every` cadence too; False: only a minimization's stop before its last iteration does
    # (LAMMPS' dumps: numdp lmp)


@dataclass
class SafetySettings:
    min_distance: float = 0.5  # Å


@dataclass
class ParallelSettings:
    grid: tuple[int, int, int] | None = None  # subdomains along a, b, c; None: chosen from ranks and cell


@dataclass
class RunSettings:
    path: Path
    text: str
    model: ModelSettings
    system: SystemSettings
    md: MDSettings | None   # [md], or None for a minimization
    neighbor: NeighborSettings
    output: OutputSettings
    safety: SafetySettings
    parallel: ParallelSettings = field(default_factory=ParallelSettings)
    model_devi: ModelDeviSettings | None = None
    minimize: MinimizeSettings | None = None   # [minimize] (then md is None)
    lammps: bool = False   # translated from a LAMMPS script (numdp lmp): messages use the script's words

    @property
    def minimizing(self) -> bool:
        """True for an energy minimization ([minimize]), False for MD ([md])."""
        return self.minimize is not None

    @property
    def end_step(self) -> int:
        """The step number at which the run ends: [md] steps or [minimize] steps."""
        return self.minimize.steps if self.minimizing else self.md.steps

    @property
    def seed(self) -> int:
        """The seed of the run's counter-based random numbers ([md] seed; 1 for a minimization)."""
        return self.md.seed if self.md is not None else 1


# -- tables ------------------------------------------------------------------------------------------


def _precision(t: Table, default: str) -> str:
    """The table's `precision` key (one of PRECISIONS_AVAILABLE), or `default` when absent."""
    precision = t.string("precision", default)
    if precision not in PRECISIONS_AVAILABLE:
        raise t.error("precision", f"must be one of {', '.join(PRECISIONS_AVAILABLE)}, got {precision!r}")
    return precision


def _model(t: Table, base: Path) -> ModelSettings:
    t.check_keys(("file", "precision", "threads", "device", "fparam", "aparam"))
    precision = _precision(t, "double")
    names = t.str_list("file")
    files = tuple(resolve_path(n, base) for n in names)
    fparam = t.number_list("fparam", None)
    aparam = t.number_list("aparam", None)
    return ModelSettings(file=files[0], precision=precision,
                         threads=t.integer("threads", None, positive=True), deviation_files=files[1:],
                         device=t.string("device", "cpu", choices=DEVICES),
                         fparam=None if fparam is None else tuple(fparam),
                         aparam=None if aparam is None else tuple(aparam))


def _model_devi(t: Table, base: Path, model_precision: str) -> ModelDeviSettings:
    t.check_keys(("every", "file", "atomic", "relative", "relative_v", "precision"))
    return ModelDeviSettings(every=t.integer("every", 100, positive=True),
                             file=t.path("file", base, "model_devi.out"),
                             atomic=t.boolean("atomic", False),
                             relative=t.number("relative", None, nonnegative=True),
                             relative_v=t.number("relative_v", None, nonnegative=True),
                             precision=_precision(t, model_precision))


def _lattice(t: Table) -> Lattice:
    """[system] lattice = { style, a, cells, elements } (numdp.lattice)."""
    t.check_keys(("style", "a", "cells", "elements"))
    style = t.string("style", choices=LATTICE_STYLES)
    cells = t.data.get("cells", [1, 1, 1])
    if not is_int_list(cells, minimum=1, length=3):
        raise t.error("cells", f"expected three integers >= 1 like [10, 10, 10], got {cells!r}")
    elements = t.data.get("elements")
    nbasis = len(LATTICE_BASES[style])
    if not isinstance(elements, list) or len(elements) not in (1, nbasis) \
            or not all(isinstance(e, str) and e for e in elements):
        raise t.error("elements", f"expected one element name for every atom, or one per basis atom of "
                                  f"{style} ({nbasis}), like [\"Cu\"], got {elements!r}")
    return Lattice(style=style, a=t.number("a", positive=True), cells=tuple(cells), elements=tuple(elements))


def _system(t: Table, base: Path) -> SystemSettings:
    t.check_keys(("file", "lattice", "frame", "replicate", "replicate_order", "velocities", "masses", "type_names",
                  "pbc", "momentum"))
    if t.has("lattice") == ("file" in t.data):
        raise t.error("lattice" if t.has("lattice") else "file",
                      "give the start structure as a file or as a lattice, not both" if t.has("lattice")
                      else "required key is missing (the start structure; or give a lattice)")
    lattice = _lattice(t.sub("lattice")) if t.has("lattice") else None
    if lattice is not None:
        for key in ("frame", "type_names"):
            if key in t.data:
                raise t.error(key, "not used with a lattice (its elements name the atoms)")
    pbc = t.data.get("pbc")
    if pbc is not None and (not isinstance(pbc, list) or len(pbc) != 3 or not all(isinstance(p, bool) for p in pbc)):
        raise t.error("pbc", f"expected three booleans (periodic along a, b, c) like [true, true, false], got {toml_value(pbc)}")
    rep = t.data.get("replicate", [1, 1, 1])
    if not is_int_list(rep, minimum=1, length=3):
        raise t.error("replicate", f"expected three integers >= 1 like [2, 2, 2], got {rep!r}")
    velocities = None
    if t.has("velocities"):
        v = t.sub("velocities")
        v.check_keys(("temperature", "seed"))
        velocities = VelocitySettings(temperature=v.number("temperature", nonnegative=True, maximum=TEMPERATURE_MAX),
                                      seed=v.integer("seed", 1, nonnegative=True))
    masses = {}
    if t.has("masses"):
        m = t.sub("masses")
        for element in m.data:
            masses[element] = m.number(element, positive=True)
    type_names = t.data.get("type_names")
    if type_names is not None and (not isinstance(type_names, list) or not type_names
                                   or not all(isinstance(n, str) and n for n in type_names)):
        raise t.error("type_names", f"expected a list of element names like [\"O\", \"H\"], got {type_names!r}")
    return SystemSettings(file=None if lattice is not None else t.path("file", base),
                          frame=t.integer("frame", None),
                          replicate=tuple(rep), velocities=velocities, masses=masses, type_names=type_names,
                          pbc=None if pbc is None else tuple(pbc), lattice=lattice,
                          replicate_order=t.string("replicate_order", "numdp", choices=REPLICATE_ORDERS),
                          momentum=t.string("momentum", None, choices=MOMENTUM_CHOICES))


def _thermostat(t: Table) -> ThermostatSettings:
    kind = t.string("kind", choices=THERMOSTAT_KINDS)
    nose_hoover = NoseHooverChain.kind
    allowed = ("kind", "temperature", "tau") + (("chain", "form") if kind == nose_hoover else ())
    for key in t.data:
        if key in ("chain", "form") and kind != nose_hoover:
            raise t.error(key, f"only for kind = 'nose-hoover' (this is '{kind}')")
    t.check_keys(allowed)
    # a Langevin bath may ramp from or to 0 K (a quench); the chain's masses and CSVR's draw
    # divide by the target, so theirs stays > 0 (LAMMPS' fix nvt refuses 0 too)
    return ThermostatSettings(kind=kind, temperature=t.ramp("temperature", positive=True,
                                                            zero_end=kind == Langevin.kind, maximum=TEMPERATURE_MAX),
                              tau=t.number("tau", positive=True),
                              chain=t.integer("chain", 3, positive=True, maximum=CHAIN_MAX),
                              form=t.string("form", "numdp", choices=FORMS))


def _barostat(t: Table, ensemble: str) -> BarostatSettings:
    kind = t.string("kind", StochasticCellRescaling.kind)
    if kind not in BAROSTAT_KINDS:
        raise t.error("kind", f"'{kind}' is not available; numdp implements 'c-rescale' "
                              f"(stochastic cell rescaling) and 'mtk' (Martyna-Tobias-Klein, LAMMPS' fix npt)")
    if ensemble == "nph" and kind != MTKBarostat.kind:
        raise t.error("kind", f"ensemble = 'nph' needs kind = 'mtk' (got '{kind}': stochastic cell rescaling "
                              f"draws its noise at the thermostat's temperature)")
    own = {StochasticCellRescaling.kind: ("compressibility",), MTKBarostat.kind: ("chain", "temperature", "form")}
    for other, keys in own.items():
        for key in keys:
            if other != kind and key in t.data:
                raise t.error(key, f"only for kind = '{other}' (this is '{kind}')")
    if ensemble != "nph" and "temperature" in t.data:
        raise t.error("temperature", "only for ensemble = 'nph' (in 'npt' the cell's mass and chain take the "
                                     "thermostat's target)")
    t.check_keys(("kind", "pressure", "tau", "coupling") + own[kind])
    return BarostatSettings(kind=kind, pressure=t.ramp("pressure"),
                            tau=t.number("tau", positive=True),
                            coupling=t.string("coupling", "isotropic", choices=COUPLINGS),
                            compressibility=t.number("compressibility", 4.5e-5, positive=True),
                            chain=t.integer("chain", 3, nonnegative=True, maximum=CHAIN_MAX),
                            temperature=t.number("temperature", positive=True, maximum=TEMPERATURE_MAX)
                            if ensemble == "nph" else None,
                            form=t.string("form", "numdp", choices=FORMS))


def _md(t: Table) -> MDSettings:
    t.check_keys(("timestep", "steps", "ensemble", "thermostat", "barostat", "seed"))
    ensemble = t.string("ensemble", "nve", choices=ENSEMBLES)
    thermostat = _thermostat(t.sub("thermostat")) if t.has("thermostat") else None
    if ensemble in ("nve", "nph") and thermostat is not None:
        raise t.error("thermostat", f"not used with ensemble = '{ensemble}' (remove it or use "
                                    f"'{'nvt' if ensemble == 'nve' else 'npt'}')")
    if ensemble in ("nve", "nvt") and t.has("barostat"):
        raise t.error("barostat", f"not used with ensemble = '{ensemble}' (remove it or use 'npt')")
    barostat = _barostat(t.sub("barostat"), ensemble) if t.has("barostat") else None
    if ensemble in ("nvt", "npt") and thermostat is None:
        raise t.error("thermostat", f"required for ensemble = '{ensemble}'")
    if ensemble in ("npt", "nph") and barostat is None:
        raise t.error("barostat", f"required for ensemble = '{ensemble}'")
    md = MDSettings(timestep=t.number("timestep", positive=True, maximum=TIMESTEP_MAX),
                    steps=t.integer("steps", nonnegative=True),
                    ensemble=ensemble, thermostat=thermostat, barostat=barostat,
                    seed=t.integer("seed", 1, nonnegative=True))
    for name, coupling in (("thermostat", thermostat), ("barostat", barostat)):
        _check_coupling(t, f"{name}.tau", coupling.tau if coupling is not None else None, md.timestep)
    return md


def _check_coupling(t: Table, key: str, tau: float | None, timestep: float) -> None:
    """InputError unless the coupling time `tau` (ps) is at most COUPLING_STEPS_MAX timesteps (ps)."""
    if tau is not None and tau > COUPLING_STEPS_MAX * timestep:
        raise t.error(key, f"must be <= {COUPLING_STEPS_MAX:g} timesteps ({COUPLING_STEPS_MAX * timestep:g} ps), "
                           f"got {tau:g} ps: a coupling this weak is lost in double precision's round-off")


def _minimize(t: Table) -> MinimizeSettings:
    t.check_keys(("style", "steps", "ftol", "norm", "etol", "timestep", "dmax", "integrator", "tmax", "tmin",
                  "delaystep", "dtgrow", "dtshrink", "alpha0", "alphashrink", "halfstepback", "initialdelay",
                  "vdfmax", "box", "anew", "fixed_directions", *LINE_KEYS))
    style = t.string("style", "fire")
    if style not in MIN_STYLES:
        raise t.error("style", f"'{style}' is not available; numdp implements 'fire' (FIRE 2.0, as LAMMPS' "
                               f"min_style fire), 'cg' and 'sd' (LAMMPS' min_style cg and sd)")
    for key in FIRE_KEYS if style != "fire" else LINE_KEYS:
        if key in t.data:
            raise t.error(key, f"not used by style = '{style}' (only by " + (
                "style = 'fire')" if style != "fire" else "the line-search styles 'cg' and 'sd')"))
    line = t.string("line", LineSearch.QUADRATIC.value, choices=tuple(x.value for x in LineSearch))
    maxeval = t.integer("maxeval", 0, nonnegative=True) if "maxeval" in t.data else None
    integrator = t.string("integrator", "eulerimplicit")
    if integrator not in FIRE_INTEGRATORS:
        raise t.error("integrator", f"'{integrator}' is not available; numdp's FIRE integrates with "
                                    f"'eulerimplicit' (semi-implicit Euler, LAMMPS' default)")
    norm = t.string("norm", NormStyle.TWO.value, choices=tuple(n.value for n in NormStyle))
    m = MinimizeSettings(
        steps=t.integer("steps", nonnegative=True), style=style,
        ftol=t.number("ftol", 1e-3, nonnegative=True), norm=NormStyle(norm),
        etol=t.number("etol", 0.0, nonnegative=True), timestep=t.number("timestep", 0.001, positive=True, maximum=TIMESTEP_MAX),
        dmax=t.number("dmax", 0.1, positive=True), integrator=integrator,
        tmax=t.number("tmax", 10.0, positive=True), tmin=t.number("tmin", 0.02, nonnegative=True),
        delaystep=t.integer("delaystep", 20, nonnegative=True), dtgrow=t.number("dtgrow", 1.1),
        dtshrink=t.number("dtshrink", 0.5, positive=True), alpha0=t.number("alpha0", 0.25, nonnegative=True),
        alphashrink=t.number("alphashrink", 0.99, positive=True),
        halfstepback=t.boolean("halfstepback", True), initialdelay=t.boolean("initialdelay", True),
        vdfmax=t.integer("vdfmax", 2000, nonnegative=True), line=LineSearch(line), maxeval=maxeval,
        box=_box_relax(t.sub("box")) if t.has("box") else None, anew=t.boolean("anew", False),
        fixed_directions=_fixed_directions(t))
    if m.box is not None and m.fixed_directions:
        raise t.error("fixed_directions", "not with box: numdp fixes force components in a relaxation "
                                          "with a fixed cell only")
    if m.box is not None and style == "fire":
        raise t.error("box", "cell relaxation needs style = 'cg' or 'sd' (as LAMMPS' fix box/relax, which no "
                             "damped-dynamics style such as fire supports)")
    # LAMMPS' own checks (MinFire::init), and alpha a mixing fraction
    if m.tmax < m.tmin:
        raise t.error("tmax", f"must be >= tmin = {m.tmin}, got {m.tmax}")
    if m.dtgrow < 1.0:
        raise t.error("dtgrow", f"must be >= 1, got {m.dtgrow}")
    if m.dtshrink > 1.0:
        raise t.error("dtshrink", f"must be <= 1, got {m.dtshrink}")
    if m.alpha0 > 1.0:
        raise t.error("alpha0", f"must be <= 1 (a mixing fraction), got {m.alpha0}")
    if m.alphashrink > 1.0:
        raise t.error("alphashrink", f"must be <= 1, got {m.alphashrink}")
    return m


def _fixed_directions(t: Table) -> tuple[str, ...]:
    """[minimize] fixed_directions: distinct axes of AXES, in the order x, y, z."""
    axes = t.str_list("fixed_directions", [])
    if any(a not in AXES for a in axes) or len(set(axes)) != len(axes):
        raise t.error("fixed_directions", f"expected a list of distinct axes from {list(AXES)}, got {axes!r}")
    return tuple(a for a in AXES if a in axes)


def _box_relax(t: Table) -> BoxRelaxSettings:
    """[minimize] box (BoxRelaxSettings)."""
    t.check_keys(("coupling", "pressure", "vmax"))
    if isinstance(t.data.get("pressure"), list):
        raise t.error("pressure", "one hydrostatic target pressure (bar) only; numdp does not relax the cell to "
                                  "a non-hydrostatic stress (LAMMPS' fix box/relax x/y/z/xy/xz/yz targets)")
    return BoxRelaxSettings(coupling=t.string("coupling", "isotropic", choices=BOX_COUPLINGS),
                            pressure=t.number("pressure"), vmax=t.number("vmax", 0.0001, positive=True))


def _neighbor(t: Table) -> NeighborSettings:
    t.check_keys(("skin",))
    return NeighborSettings(skin=t.number("skin", 2.0, positive=True, maximum=SKIN_MAX))


def _output(t: Table, base: Path) -> OutputSettings:
    t.check_keys(("trajectory", "format", "every", "fields", "force_unit", "thermo_every", "log", "checkpoint",
                  "checkpoint_every", "progress", "columns", "thermo_columns", "thermo_header", "triclinic_bounds",
                  "box_center", "box_corner", "end_frame"))
    thermo_columns = t.data.get("thermo_columns", list(THERMO_DEFAULT))
    if not isinstance(thermo_columns, list) or not thermo_columns \
            or any(not isinstance(c, str) or c not in THERMO_KEYWORDS for c in thermo_columns) \
            or len(set(thermo_columns)) != len(thermo_columns):
        raise t.error("thermo_columns", f"expected a list of distinct thermo keywords from "
                                        f"{list(THERMO_KEYWORDS)}, got {thermo_columns!r}")
    columns = t.data.get("columns")
    if columns is not None:
        if not isinstance(columns, list) or not columns or any(c not in DUMP_COLUMNS for c in columns) \
                or len(set(columns)) != len(columns):
            raise t.error("columns", f"expected a list of distinct LAMMPS dump columns from "
                                     f"{list(DUMP_COLUMNS)}, got {columns!r}")
        if "fields" in t.data:
            raise t.error("columns", "give fields or columns, not both (the columns name the fields)")
    fields = t.data.get("fields", list(FIELDS) if columns is None else list(dump_fields(columns)))
    if not isinstance(fields, list) or not fields or any(f not in FIELDS for f in fields) \
            or len(set(fields)) != len(fields):
        raise t.error("fields", f"expected a list of distinct names from {list(FIELDS)}, got {fields!r}")
    progress = t.data.get("progress", "auto")
    if progress is True:
        progress = "bar"
    elif progress is False:
        progress = "none"
    if progress not in ("auto", "bar", "lines", "none"):
        raise t.error("progress", f"must be 'auto', 'bar', 'lines', 'none', true or false, got {progress!r}")
    # the format: `format`, else the one the trajectory's suffix names, else H5MD
    named = t.data.get("trajectory")
    suggested = traj_format_of_path(Path(named)) if isinstance(named, str) and named else None
    if isinstance(named, str) and named and suggested is None and "format" not in t.data:
        raise t.error("trajectory", f"cannot tell the format from the name {named!r}: use a suffix "
                                    f".h5md/.h5, .extxyz/.xyz or .lammpstrj/.dump, or set [output] format")
    fmt = t.string("format", suggested or "h5md", choices=TRAJ_FORMATS)
    if suggested is not None and suggested != fmt:
        raise t.error("trajectory", f"the suffix of {named!r} names format {suggested!r}, but "
                                    f"format = {fmt!r}")
    if columns is not None and fmt != "lammps-dump":
        raise t.error("columns", f"only for format = 'lammps-dump' (this is {fmt!r})")
    if t.data.get("triclinic_bounds") is True and fmt != "lammps-dump":
        raise t.error("triclinic_bounds", f"only for format = 'lammps-dump' (this is {fmt!r})")
    points = {}   # LAMMPS' box corner: box_center, box_corner
    for key in ("box_center", "box_corner"):
        point = t.number_list(key, None)
        if point is not None and len(point) != 3:
            raise t.error(key, f"three numbers (Å), got {point!r}")
        points[key] = None if point is None else tuple(float(c) for c in point)
    if points["box_corner"] is not None and points["box_center"] is not None:
        raise t.error("box_corner", "give box_center (a box LAMMPS changes about its centre) or box_corner "
                                    "(an open system's fixed corner), not both")
    if isinstance(named, str) and FRAME_SERIES_MARK in named and (
            fmt != "lammps-dump" or FRAME_SERIES_MARK in str(Path(named).parent)):
        raise t.error("trajectory", f"a {FRAME_SERIES_MARK!r} (one file per frame) is only for format "
                                    f"'lammps-dump', in the file name, got {named!r}")
    named_ck = t.data.get("checkpoint")
    if isinstance(named_ck, str) and FRAME_SERIES_MARK in str(Path(named_ck).parent):
        raise t.error("checkpoint", f"a {FRAME_SERIES_MARK!r} (one checkpoint per step) belongs in the file "
                                    f"name, got {named_ck!r}")
    return OutputSettings(
        trajectory=t.path("trajectory", base, "traj" + TRAJ_SUFFIXES[fmt], allow_empty=True),
        format=fmt,
        every=t.integer("every", 100, positive=True),
        fields=tuple(f for f in FIELDS if f in fields),
        force_unit=t.string("force_unit", DEFAULT_FORCE_UNIT, choices=tuple(FORCE_UNITS)),
        thermo_every=t.integer("thermo_every", 100, positive=True),
        log=t.path("log", base, "log.txt", allow_empty=True),
        checkpoint=t.path("checkpoint", base, "checkpoint.h5"),
        checkpoint_every=t.integer("checkpoint_every", 1000, nonnegative=True),
        progress=progress,
        columns=None if columns is None else tuple(columns),
        thermo_columns=tuple(thermo_columns),
        thermo_header=t.string("thermo_header", "keywords", choices=THERMO_HEADERS),
        triclinic_bounds=t.boolean("triclinic_bounds", False),
        box_center=points["box_center"],
        box_corner=points["box_corner"],
        end_frame=t.boolean("end_frame", True),
    )


def _safety(t: Table) -> SafetySettings:
    t.check_keys(("min_distance",))
    return SafetySettings(min_distance=t.number("min_distance", 0.5, nonnegative=True))


def _parallel(t: Table) -> ParallelSettings:
    t.check_keys(("grid",))
    grid = t.data.get("grid")
    if grid is not None and not is_int_list(grid, minimum=1, length=3):
        raise t.error("grid", f"expected three integers >= 1 like [2, 1, 1] (their product = MPI ranks), got {grid!r}")
    return ParallelSettings(grid=None if grid is None else tuple(grid))


TABLES = ("model", "system", "md", "minimize", "neighbor", "output", "safety", "parallel", "model_devi")
REQUIRED_TABLES = ("model", "system")   # and one of [md] and [minimize]


LAMMPS_SCRIPT_COMMANDS = frozenset(("units", "atom_style", "boundary", "read_data", "pair_style", "pair_coeff",
                                    "fix", "run", "minimize", "thermo", "thermo_style", "dump", "lattice"))
"""First words of a LAMMPS input script's lines, none of which a TOML line starts with."""


def load_run_settings(path) -> RunSettings:
    """Read and validate a `numdp run` input file."""
    path = Path(path)
    if path.suffix.lower() in (".json", ".yaml", ".yml"):
        raise InputError(f"{path.name}: numdp run reads a TOML input (docs/md.md); a DeePMD-kit "
                         f"input{path.suffix} is a training input: numdp train")
    text = read_input_text(path)
    try:
        data = parse_toml_text(text, path.name)
    except InputError:
        if _is_lammps_script(text):
            raise InputError(f"{path.name}: a LAMMPS input script, not a numdp run input (TOML, docs/md.md): "
                             f"run it with numdp lmp -i {path}") from None
        raise
    return run_settings(path, text, data, path.parent.resolve())


def _is_lammps_script(text: str) -> bool:
    """Whether `text` has a line `COMMAND args` of a LAMMPS script (a TOML line would be `key = ...`)."""
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 2 and words[0] in LAMMPS_SCRIPT_COMMANDS and not words[1].startswith("=") \
                and "=" not in words[0]:   # (a TOML `lattice ={ ... }` is a key)
            return True
    return False


def run_settings(path: Path, text: str, data: dict, base: Path) -> RunSettings:
    """Validate the parsed tables `data` of the input `path` (named in messages; its TOML `text`),
    relative paths taken relative to the folder `base`.  `numdp lmp` validates its translation
    of a LAMMPS script here too (numdp.lammps)."""
    root = Table.root(path.name, data, RUN_WORDING)
    if "md" not in data and "minimize" not in data and any(name in data for name in ("training", "learning_rate",
                                                                                       "loss")):
        raise InputError(f"{path.name}: a training input ([training], [loss], ...): run it with numdp train")
    root.check_tables(TABLES)
    for name in REQUIRED_TABLES:  # a missing table is reported before any table is read
        root.raw(name)
    if ("md" in data) == ("minimize" in data):
        raise InputError(f"{path.name}: " + ("[md] and [minimize]: an input is either dynamics ([md]) or an "
                                             "energy minimization ([minimize]), not both" if "md" in data else
                                             "[md]: required table missing (or [minimize] for an energy "
                                             "minimization)"))
    minimizing = "minimize" in data

    def table(name):
        return root.section(name, {})

    model = _model(table("model"), base)
    if minimizing and "model_devi" in data:
        raise InputError(f"{path.name}: [model_devi]: model deviation is computed during MD ([md]); "
                         f"remove it from a minimization ([minimize])")
    if minimizing and model.deviation_files:
        raise InputError(f"{path.name}: [model] file: a minimization ([minimize]) uses one model, "
                         f"got {len(model.files)}")
    model_devi = _model_devi(root.section("model_devi"), base, model.precision) if "model_devi" in data else None
    if model_devi is not None and not model.deviation_files:
        raise InputError(f"{path.name}: [model_devi]: needs an ensemble of two or more models: "
                         f"[model] file = [\"m0.h5\", \"m1.h5\", ...]")
    if model.deviation_files and model_devi is None:
        raise InputError(f"{path.name}: [model] file: {len(model.files)} models are given but there is no "
                         f"[model_devi] table (add one, e.g. every = 100, or give one model)")
    settings = RunSettings(path=path, text=text, model=model,
                           system=_system(table("system"), base),
                           md=None if minimizing else _md(table("md")),
                           minimize=_minimize(table("minimize")) if minimizing else None,
                           neighbor=_neighbor(table("neighbor")), output=_output(table("output"), base),
                           safety=_safety(table("safety")), parallel=_parallel(table("parallel")),
                           model_devi=model_devi)
    given = data.get("output") or {}
    if minimizing and "thermo_columns" not in given:   # the minimizer's own: step pe fnorm fmax
        if "thermo_header" in given:
            raise InputError(f"{path.name}: [output] thermo_header: a minimization without thermo_columns "
                             f"writes step pe fnorm fmax; remove it, or give thermo_columns")
        settings.output.thermo_columns = None
    if minimizing and settings.system.velocities is not None:
        raise InputError(f"{path.name}: [system] velocities: not used by a minimization ([minimize]), which "
                         f"starts at rest; remove it")
    out = settings.output
    # the start structure may be an output of the run (a checkpoint, the last trajectory frame):
    # it is read before the new run backs up the old file
    distinct_files(path.name,
                   [("[output] trajectory", out.trajectory), ("[output] log", out.log),
                    ("[output] checkpoint", out.checkpoint),
                    ("[model_devi] file", model_devi.file if model_devi else None)],
                   [("the input file", path)] + [("[model] file", f) for f in model.files])
    # ... but never a text output: the start structure would be backed up and replaced by it
    distinct_files(path.name, [("[output] log", out.log), ("[model_devi] file", model_devi.file if model_devi else None)],
                   [("[system] file", settings.system.file)])
    return settings
