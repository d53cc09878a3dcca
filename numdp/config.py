"""`numdp run` input: TOML -> validated, typed settings.

Every key is checked; an unknown key or a bad value raises `InputError` with a one-line message
naming the file, the table and the key, e.g. ``md.toml: [md] thermostat.tau: must be > 0``.
Relative paths are taken relative to the input file.  The schema (keys, defaults, units) is
documented in docs/md.md and mirrored by the dataclasses below.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib

ENSEMBLES = ("nve", "nvt", "npt")
THERMOSTAT_KINDS = ("nose-hoover", "langevin", "csvr")
BAROSTAT_KINDS = ("c-rescale",)
COUPLINGS = ("isotropic", "anisotropic", "triclinic")
PRECISIONS_AVAILABLE = ("double", "mix32", "mix16")
FIELDS = ("position", "velocity", "force")
FORCE_UNITS = ("kJ mol-1 Angstrom-1", "eV Angstrom-1")


@dataclass
class ModelSettings:
    file: Path
    precision: str = "double"
    threads: int | None = None


@dataclass
class VelocitySettings:
    temperature: float  # K
    seed: int = 1


@dataclass
class SystemSettings:
    file: Path
    frame: int | None = None
    replicate: tuple[int, int, int] = (1, 1, 1)
    velocities: VelocitySettings | None = None
    masses: dict[str, float] = field(default_factory=dict)  # amu
    type_names: list[str] | None = None


@dataclass
class ThermostatSettings:
    kind: str
    temperature: float  # K
    tau: float  # ps
    chain: int = 3


@dataclass
class BarostatSettings:
    pressure: float  # bar
    tau: float  # ps
    coupling: str = "isotropic"
    compressibility: float = 4.5e-5  # 1/bar
    kind: str = "c-rescale"


@dataclass
class MDSettings:
    timestep: float  # ps
    steps: int
    ensemble: str = "nve"
    thermostat: ThermostatSettings | None = None
    barostat: BarostatSettings | None = None
    seed: int = 1


@dataclass
class NeighborSettings:
    skin: float = 2.0  # Å


@dataclass
class OutputSettings:
    trajectory: Path | None
    every: int = 100
    fields: tuple[str, ...] = ("position", "velocity", "force")
    force_unit: str = "kJ mol-1 Angstrom-1"
    thermo_every: int = 100
    log: Path | None = None
    checkpoint: Path | None = None
    checkpoint_every: int = 1000
    progress: str = "auto"  # "auto" | "bar" | "lines" | "none"


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
    md: MDSettings
    neighbor: NeighborSettings
    output: OutputSettings
    safety: SafetySettings
    parallel: ParallelSettings = field(default_factory=ParallelSettings)


# -- small validators ------------------------------------------------------------------------------


class _Table:
    """A TOML table being validated: reads keys, remembers which were used, reports errors."""

    def __init__(self, file: str, name: str, data, prefix: str = ""):
        self.file = file
        self.name = name
        self.prefix = prefix
        if not isinstance(data, dict):
            raise InputError(f"{file}: [{name}]: expected a table, got {data!r}")
        self.data = data

    def error(self, key: str, msg: str) -> InputError:
        return InputError(f"{self.file}: [{self.name}] {self.prefix}{key}: {msg}")

    def check_keys(self, allowed) -> None:
        for key in self.data:
            if key not in allowed:
                raise self.error(key, f"unknown key (allowed: {', '.join(allowed)})")

    def has(self, key: str) -> bool:
        return key in self.data

    def sub(self, key: str) -> "_Table":
        value = self.data[key]
        if not isinstance(value, dict):
            raise self.error(key, f"expected a table like {key} = {{ ... }}, got {value!r}")
        return _Table(self.file, self.name, value, f"{self.prefix}{key}.")

    def number(self, key, default=None, *, positive=False, nonnegative=False, integer=False,
               required=False):
        if key not in self.data:
            if required:
                raise self.error(key, "required")
            return default
        v = self.data[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.error(key, f"expected {'an integer' if integer else 'a number'}, got {v!r}")
        if integer and not isinstance(v, int):
            raise self.error(key, f"expected an integer, got {v!r}")
        if not math.isfinite(v):
            raise self.error(key, f"must be finite, got {v!r}")
        if positive and not v > 0:
            raise self.error(key, f"must be > 0, got {v!r}")
        if nonnegative and v < 0:
            raise self.error(key, f"must be >= 0, got {v!r}")
        return int(v) if integer else float(v)

    def string(self, key, default=None, *, choices=None, required=False):
        if key not in self.data:
            if required:
                raise self.error(key, "required")
            return default
        v = self.data[key]
        if not isinstance(v, str):
            raise self.error(key, f"expected a string, got {v!r}")
        if choices is not None and v not in choices:
            raise self.error(key, f"must be one of {', '.join(repr(c) for c in choices)}, got {v!r}")
        return v

    def path(self, key, base: Path, default=None, *, required=False, allow_empty=False):
        v = self.string(key, default, required=required)
        if v is None:
            return None
        if v == "":
            if allow_empty:
                return None
            raise self.error(key, "must not be empty")
        p = Path(v).expanduser()
        return p if p.is_absolute() else base / p


def _load_toml(path: Path) -> tuple[str, dict]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(f"{path}: input file not found") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path.name}: not valid TOML ({exc})") from None


# -- tables ------------------------------------------------------------------------------------------


def _model(t: _Table, base: Path) -> ModelSettings:
    t.check_keys(("file", "precision", "threads"))
    precision = t.string("precision", "double")
    if precision not in PRECISIONS_AVAILABLE:
        raise t.error("precision", f"must be one of {', '.join(PRECISIONS_AVAILABLE)}, got {precision!r}")
    return ModelSettings(file=t.path("file", base, required=True), precision=precision,
                         threads=t.number("threads", None, positive=True, integer=True))


def _system(t: _Table, base: Path) -> SystemSettings:
    t.check_keys(("file", "frame", "replicate", "velocities", "masses", "type_names"))
    rep = t.data.get("replicate", [1, 1, 1])
    if (not isinstance(rep, list) or len(rep) != 3
            or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in rep)):
        raise t.error("replicate", f"expected three integers >= 1 like [2, 2, 2], got {rep!r}")
    velocities = None
    if t.has("velocities"):
        v = t.sub("velocities")
        v.check_keys(("temperature", "seed"))
        velocities = VelocitySettings(temperature=v.number("temperature", required=True, nonnegative=True),
                                      seed=v.number("seed", 1, nonnegative=True, integer=True))
    masses = {}
    if t.has("masses"):
        m = t.sub("masses")
        for element in m.data:
            masses[element] = m.number(element, positive=True)
    type_names = t.data.get("type_names")
    if type_names is not None and (not isinstance(type_names, list) or not type_names
                                   or not all(isinstance(n, str) and n for n in type_names)):
        raise t.error("type_names", f"expected a list of element names like [\"O\", \"H\"], got {type_names!r}")
    return SystemSettings(file=t.path("file", base, required=True),
                          frame=t.number("frame", None, integer=True),
                          replicate=tuple(rep), velocities=velocities, masses=masses, type_names=type_names)


def _thermostat(t: _Table) -> ThermostatSettings:
    kind = t.string("kind", required=True, choices=THERMOSTAT_KINDS)
    allowed = ("kind", "temperature", "tau") + (("chain",) if kind == "nose-hoover" else ())
    for key in t.data:
        if key == "chain" and kind != "nose-hoover":
            raise t.error(key, f"only for kind = 'nose-hoover' (this is '{kind}')")
    t.check_keys(allowed)
    return ThermostatSettings(kind=kind, temperature=t.number("temperature", required=True, positive=True),
                              tau=t.number("tau", required=True, positive=True),
                              chain=t.number("chain", 3, positive=True, integer=True))


def _barostat(t: _Table) -> BarostatSettings:
    t.check_keys(("kind", "pressure", "tau", "coupling", "compressibility"))
    kind = t.string("kind", "c-rescale")
    if kind not in BAROSTAT_KINDS:
        raise t.error("kind", f"'{kind}' is not available; numdp implements 'c-rescale' "
                              f"(stochastic cell rescaling)")
    return BarostatSettings(kind=kind, pressure=t.number("pressure", required=True),
                            tau=t.number("tau", required=True, positive=True),
                            coupling=t.string("coupling", "isotropic", choices=COUPLINGS),
                            compressibility=t.number("compressibility", 4.5e-5, positive=True))


def _md(t: _Table) -> MDSettings:
    t.check_keys(("timestep", "steps", "ensemble", "thermostat", "barostat", "seed"))
    ensemble = t.string("ensemble", "nve", choices=ENSEMBLES)
    thermostat = _thermostat(t.sub("thermostat")) if t.has("thermostat") else None
    barostat = _barostat(t.sub("barostat")) if t.has("barostat") else None
    if ensemble == "nve" and thermostat is not None:
        raise t.error("thermostat", "not used with ensemble = 'nve' (remove it or use 'nvt')")
    if ensemble != "npt" and barostat is not None:
        raise t.error("barostat", f"not used with ensemble = '{ensemble}' (remove it or use 'npt')")
    if ensemble in ("nvt", "npt") and thermostat is None:
        raise t.error("thermostat", f"required for ensemble = '{ensemble}'")
    if ensemble == "npt" and barostat is None:
        raise t.error("barostat", "required for ensemble = 'npt'")
    return MDSettings(timestep=t.number("timestep", required=True, positive=True),
                      steps=t.number("steps", required=True, nonnegative=True, integer=True),
                      ensemble=ensemble, thermostat=thermostat, barostat=barostat,
                      seed=t.number("seed", 1, nonnegative=True, integer=True))


def _neighbor(t: _Table) -> NeighborSettings:
    t.check_keys(("skin",))
    return NeighborSettings(skin=t.number("skin", 2.0, positive=True))


def _output(t: _Table, base: Path) -> OutputSettings:
    t.check_keys(("trajectory", "every", "fields", "force_unit", "thermo_every", "log", "checkpoint",
                  "checkpoint_every", "progress"))
    fields = t.data.get("fields", ["position", "velocity", "force"])
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
    return OutputSettings(
        trajectory=t.path("trajectory", base, "traj.h5md", allow_empty=True),
        every=t.number("every", 100, positive=True, integer=True),
        fields=tuple(f for f in FIELDS if f in fields),
        force_unit=t.string("force_unit", "kJ mol-1 Angstrom-1", choices=FORCE_UNITS),
        thermo_every=t.number("thermo_every", 100, positive=True, integer=True),
        log=t.path("log", base, "log.txt", allow_empty=True),
        checkpoint=t.path("checkpoint", base, "checkpoint.h5"),
        checkpoint_every=t.number("checkpoint_every", 1000, nonnegative=True, integer=True),
        progress=progress,
    )


def _safety(t: _Table) -> SafetySettings:
    t.check_keys(("min_distance",))
    return SafetySettings(min_distance=t.number("min_distance", 0.5, nonnegative=True))


def _parallel(t: _Table) -> ParallelSettings:
    t.check_keys(("grid",))
    grid = t.data.get("grid")
    if grid is not None and (not isinstance(grid, list) or len(grid) != 3
                             or any(isinstance(g, bool) or not isinstance(g, int) or g < 1 for g in grid)):
        raise t.error("grid", f"expected three integers >= 1 like [2, 1, 1] (their product = MPI ranks), got {grid!r}")
    return ParallelSettings(grid=None if grid is None else tuple(grid))


TABLES = ("model", "system", "md", "neighbor", "output", "safety", "parallel")


def load_run_settings(path) -> RunSettings:
    """Read and validate a `numdp run` input file."""
    path = Path(path)
    text, data = _load_toml(path)
    file = path.name
    base = path.parent.resolve()
    for name in data:
        if name not in TABLES:
            raise InputError(f"{file}: [{name}]: unknown table (allowed: {', '.join(TABLES)})")
    for name in ("model", "system", "md"):
        if name not in data:
            raise InputError(f"{file}: [{name}]: required table missing")

    def table(name):
        return _Table(file, name, data.get(name, {}))

    return RunSettings(path=path, text=text, model=_model(table("model"), base),
                       system=_system(table("system"), base), md=_md(table("md")),
                       neighbor=_neighbor(table("neighbor")), output=_output(table("output"), base),
                       safety=_safety(table("safety")), parallel=_parallel(table("parallel")))
