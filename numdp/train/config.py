"""The `numdp train` input: a TOML file with DeePMD-kit's sections and key names.

`load_config(path)` returns a validated `TrainConfig`; every mistake (unknown key, wrong type,
bad value, missing system) raises InputError with a one-line message naming the file, the
section and the key, e.g. ``train.toml: [loss] start_pref_x: unknown key``.  Relative paths
(systems and outputs) are taken relative to the directory of the input file.

Schema (defaults in brackets; see also docs/training.md)::

    [model]               type_map (list of element names, required)
    [model.descriptor]    type ["se_e2_a"], rcut [6.0], rcut_smth [0.5], sel ["auto"],
                          neuron [[10, 20, 40]], axis_neuron [4], type_one_side [false],
                          resnet_dt [false], seed [none], activation_function ["tanh"]
    [model.fitting]       type ["ener"], neuron [[120, 120, 120]], resnet_dt [true], seed [none],
                          activation_function ["tanh"] (also accepted as [model.fitting_net])
    [learning_rate]       type ["exp"], start_lr [1e-3], stop_lr [5e-8], decay_steps [5000]
    [loss]                type ["ener"], start_pref_e [0.02], limit_pref_e [1.0],
                          start_pref_f [1000], limit_pref_f [1.0], start_pref_v [0], limit_pref_v [0]
    [training]            systems (required), batch_size ["auto"], numb_steps (required),
                          seed [none], disp_freq [1000], save_freq [1000], disp_file ["lcurve.out"],
                          save_ckpt ["model.ckpt.h5"], model_file ["model.h5"],
                          data_stat_nbatch [10], disp_training [true], precondition [false]
                          (numdp option: optimise the first fitting layers in units where the
                          descriptor has unit RMS, see numdp.train.precond; false = plain Adam
                          as DeePMD-kit)
    [validation]          systems [none], batch_size ["auto"], numb_btch [1]
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python < 3.11
    import tomli as tomllib

_MISSING = object()


@dataclass
class DescriptorConfig:
    rcut: float = 6.0
    rcut_smth: float = 0.5
    sel: list[int] | None = None
    """Slots per neighbour type, or None for "auto" (then `sel_factor` applies)."""
    sel_factor: float = 1.1
    neuron: list[int] = field(default_factory=lambda: [10, 20, 40])
    axis_neuron: int = 4
    type_one_side: bool = False
    resnet_dt: bool = False
    seed: int | None = None


@dataclass
class FittingConfig:
    neuron: list[int] = field(default_factory=lambda: [120, 120, 120])
    resnet_dt: bool = True
    seed: int | None = None


@dataclass
class LearningRateConfig:
    start_lr: float = 1e-3
    stop_lr: float = 5e-8
    decay_steps: int = 5000


@dataclass
class LossConfig:
    start_pref_e: float = 0.02
    limit_pref_e: float = 1.0
    start_pref_f: float = 1000.0
    limit_pref_f: float = 1.0
    start_pref_v: float = 0.0
    limit_pref_v: float = 0.0


@dataclass
class BatchSize:
    """An integer batch size, or "auto:K" (⌈K/N⌉ frames for N atoms)."""

    fixed: int | None = None
    auto: int = 32

    def frames(self, natoms: int) -> int:
        if self.fixed is not None:
            return self.fixed
        return max(1, -(-self.auto // natoms))


@dataclass
class TrainingConfig:
    systems: list[Path] = field(default_factory=list)
    batch_size: BatchSize = field(default_factory=BatchSize)
    numb_steps: int = 0
    seed: int | None = None
    disp_freq: int = 1000
    save_freq: int = 1000
    disp_file: Path = Path("lcurve.out")
    save_ckpt: Path = Path("model.ckpt.h5")
    model_file: Path = Path("model.h5")
    data_stat_nbatch: int = 10
    disp_training: bool = True
    precondition: bool = False


@dataclass
class ValidationConfig:
    systems: list[Path] = field(default_factory=list)
    batch_size: BatchSize = field(default_factory=BatchSize)
    numb_btch: int = 1


@dataclass
class TrainConfig:
    """A validated training input.  `source` is the input file, `text` its content."""

    source: Path
    text: str
    type_map: list[str]
    descriptor: DescriptorConfig
    fitting: FittingConfig
    learning_rate: LearningRateConfig
    loss: LossConfig
    training: TrainingConfig
    validation: ValidationConfig


class _Section:
    """Typed, checked access to one TOML table; `done()` rejects the keys nobody asked for."""

    def __init__(self, file: str, name: str, table):
        self.file, self.name = file, name
        if not isinstance(table, dict):
            raise InputError(f"{file}: [{name}]: expected a table, got {_kind(table)}")
        self.table = table
        self.used: set[str] = set()

    def fail(self, key: str, msg: str) -> InputError:
        return InputError(f"{self.file}: [{self.name}] {key}: {msg}")

    def raw(self, key: str, default=_MISSING):
        self.used.add(key)
        if key in self.table:
            return self.table[key]
        if default is _MISSING:
            raise self.fail(key, "required key is missing")
        return default

    def has(self, key: str) -> bool:
        return key in self.table

    def float(self, key, default=_MISSING, *, positive=False, nonneg=False):
        v = self.raw(key, default)
        if v is default and default is not _MISSING:
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.fail(key, f"expected a number, got {_show(v)}")
        v = float(v)
        if not math.isfinite(v):
            raise self.fail(key, f"expected a finite number, got {v}")
        if positive and not v > 0:
            raise self.fail(key, f"must be > 0, got {v:g}")
        if nonneg and v < 0:
            raise self.fail(key, f"must be >= 0, got {v:g}")
        return v

    def int(self, key, default=_MISSING, *, minimum=None):
        v = self.raw(key, default)
        if v is default and default is not _MISSING:
            return v
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(key, f"expected an integer, got {_show(v)}")
        if minimum is not None and v < minimum:
            raise self.fail(key, f"must be >= {minimum}, got {v}")
        return v

    def bool(self, key, default=_MISSING):
        v = self.raw(key, default)
        if not isinstance(v, bool):
            raise self.fail(key, f"expected true or false, got {_show(v)}")
        return v

    def choice(self, key, choices, default):
        v = self.raw(key, default)
        if v not in choices:
            raise self.fail(key, f"expected one of {', '.join(repr(c) for c in choices)}, got {_show(v)}")
        return v

    def int_list(self, key, default=_MISSING, *, minimum=1, nonempty=True):
        v = self.raw(key, default)
        if v is default and default is not _MISSING:
            return list(v) if v is not None else v
        if (not isinstance(v, list) or (nonempty and not v)
                or any(isinstance(x, bool) or not isinstance(x, int) or x < minimum for x in v)):
            need = "a non-empty list" if nonempty else "a list"
            raise self.fail(key, f"expected {need} of integers >= {minimum}, got {_show(v)}")
        return list(v)

    def str_list(self, key, default=_MISSING):
        v = self.raw(key, default)
        if v is default and default is not _MISSING:
            return v
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not v or any(not isinstance(x, str) or not x for x in v):
            raise self.fail(key, f"expected a non-empty list of strings, got {_show(v)}")
        return v

    def done(self, subtables=()) -> None:
        for key in self.table:
            if key not in self.used and key not in subtables:
                raise self.fail(key, "unknown key")


def _kind(v) -> str:
    return {dict: "a table", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number"}.get(type(v), type(v).__name__)


def _show(v) -> str:
    text = repr(v) if not isinstance(v, dict) else "a table"
    return text if len(text) <= 60 else text[:57] + "..."


def _batch_size(sec: _Section, key: str) -> BatchSize:
    v = sec.raw(key, "auto")
    if isinstance(v, int) and not isinstance(v, bool):
        if v < 1:
            raise sec.fail(key, f"must be >= 1, got {v}")
        return BatchSize(fixed=v)
    if isinstance(v, str):
        m = re.fullmatch(r"auto(?::(\d+))?", v.strip())
        if m:
            k = int(m.group(1) or 32)
            if k < 1:
                raise sec.fail(key, f"auto:N needs N >= 1, got {v!r}")
            return BatchSize(auto=k)
    raise sec.fail(key, f'expected an integer, "auto" or "auto:N", got {_show(v)}')


def _sel(sec: _Section, ntypes: int):
    v = sec.raw("sel", "auto")
    if isinstance(v, str):
        m = re.fullmatch(r"auto(?::([0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?))?", v.strip())
        if not m:
            raise sec.fail("sel", f'expected a list of integers, "auto" or "auto:FACTOR", got {v!r}')
        factor = float(m.group(1)) if m.group(1) else 1.1
        if not factor > 0:
            raise sec.fail("sel", f"auto factor must be > 0, got {v!r}")
        return None, factor
    sel = sec.int_list("sel", minimum=0)
    if len(sel) != ntypes:
        raise sec.fail("sel", f"has {len(sel)} entries but type_map has {ntypes} types")
    if sum(sel) == 0:
        raise sec.fail("sel", "at least one entry must be > 0")
    return sel, 1.1


def _systems(sec: _Section, key: str, base: Path, required: bool) -> list[Path]:
    from ..io.npy_system import find_systems

    raw = sec.str_list(key, _MISSING if required else None)
    if raw is None:
        return []
    out: list[Path] = []
    for entry in raw:
        p = Path(entry).expanduser()
        p = p if p.is_absolute() else base / p
        try:
            found = find_systems(p)
        except InputError as exc:
            raise sec.fail(key, str(exc)) from None
        out.extend(found)
    return out


def _output(sec: _Section, key: str, default: str, base: Path) -> Path:
    v = sec.raw(key, default)
    if not isinstance(v, str) or not v:
        raise sec.fail(key, f"expected a file name, got {_show(v)}")
    p = Path(v).expanduser()
    return p if p.is_absolute() else base / p


def parse_config(data: dict, source: Path, text: str = "") -> TrainConfig:
    """Validate the parsed TOML `data` of file `source` (see the module docstring)."""
    file = source.name
    base = source.resolve().parent
    root = _Section(file, "root", data)
    for key in data:
        if key not in ("model", "learning_rate", "loss", "training", "validation"):
            raise InputError(f"{file}: [{key}]: unknown section")

    model = _Section(file, "model", root.raw("model"))
    type_map = model.str_list("type_map")
    if len(set(type_map)) != len(type_map):
        raise model.fail("type_map", f"names must be unique, got {type_map}")
    nt = len(type_map)

    ds = _Section(file, "model.descriptor", model.raw("descriptor"))
    kind = ds.choice("type", ("se_e2_a", "se_a"), "se_e2_a")
    del kind
    dc = DescriptorConfig()
    dc.rcut = ds.float("rcut", 6.0, positive=True)
    dc.rcut_smth = ds.float("rcut_smth", 0.5, nonneg=True)
    if not dc.rcut_smth < dc.rcut:
        raise ds.fail("rcut_smth", f"must be smaller than rcut = {dc.rcut:g}, got {dc.rcut_smth:g}")
    dc.sel, dc.sel_factor = _sel(ds, nt)
    dc.neuron = ds.int_list("neuron", [10, 20, 40])
    dc.axis_neuron = ds.int("axis_neuron", 4, minimum=1)
    if dc.axis_neuron > dc.neuron[-1]:
        raise ds.fail("axis_neuron", f"must be <= the last neuron width {dc.neuron[-1]}, got {dc.axis_neuron}")
    dc.type_one_side = ds.bool("type_one_side", False)
    dc.resnet_dt = ds.bool("resnet_dt", False)
    dc.seed = ds.int("seed", None, minimum=0)
    act = ds.choice("activation_function", ("tanh",), "tanh")
    del act
    ds.done()

    if model.has("fitting") and model.has("fitting_net"):
        raise model.fail("fitting_net", "give either [model.fitting] or [model.fitting_net], not both")
    fkey = "fitting_net" if model.has("fitting_net") else "fitting"
    fs = _Section(file, f"model.{fkey}", model.raw(fkey, {}))
    fs.choice("type", ("ener",), "ener")
    fc = FittingConfig()
    fc.neuron = fs.int_list("neuron", [120, 120, 120])
    fc.resnet_dt = fs.bool("resnet_dt", True)
    fc.seed = fs.int("seed", None, minimum=0)
    fs.choice("activation_function", ("tanh",), "tanh")
    fs.done()
    model.done()

    ls = _Section(file, "learning_rate", root.raw("learning_rate", {}))
    ls.choice("type", ("exp",), "exp")
    lc = LearningRateConfig()
    lc.start_lr = ls.float("start_lr", 1e-3, positive=True)
    lc.stop_lr = ls.float("stop_lr", 5e-8, positive=True)
    if lc.stop_lr > lc.start_lr:
        raise ls.fail("stop_lr", f"must be <= start_lr = {lc.start_lr:g}, got {lc.stop_lr:g}")
    lc.decay_steps = ls.int("decay_steps", 5000, minimum=1)
    ls.done()

    os_ = _Section(file, "loss", root.raw("loss", {}))
    os_.choice("type", ("ener",), "ener")
    oc = LossConfig()
    for name in ("start_pref_e", "limit_pref_e", "start_pref_f", "limit_pref_f",
                 "start_pref_v", "limit_pref_v"):
        setattr(oc, name, os_.float(name, getattr(LossConfig, name), nonneg=True))
    os_.done()
    if not any(getattr(oc, f"start_pref_{x}") and getattr(oc, f"limit_pref_{x}") for x in "efv"):
        raise InputError(f"{file}: [loss]: every term is off (a term needs non-zero start and limit prefactors)")

    ts = _Section(file, "training", root.raw("training"))
    tc = TrainingConfig()
    tc.numb_steps = ts.int("numb_steps", minimum=1)
    tc.batch_size = _batch_size(ts, "batch_size")
    tc.seed = ts.int("seed", None, minimum=0)
    tc.disp_freq = ts.int("disp_freq", 1000, minimum=1)
    tc.save_freq = ts.int("save_freq", 1000, minimum=1)
    tc.disp_file = _output(ts, "disp_file", "lcurve.out", base)
    tc.save_ckpt = _output(ts, "save_ckpt", "model.ckpt.h5", base)
    tc.model_file = _output(ts, "model_file", "model.h5", base)
    if tc.model_file.suffix.lower() not in (".h5", ".hdf5", ".dp"):
        raise ts.fail("model_file", f"must end in .h5 (numdp) or .dp (DeePMD-kit), got {tc.model_file.name!r}")
    tc.data_stat_nbatch = ts.int("data_stat_nbatch", 10, minimum=1)
    tc.disp_training = ts.bool("disp_training", True)
    tc.precondition = ts.bool("precondition", False)
    tc.systems = _systems(ts, "systems", base, required=True)
    ts.done()

    vc = ValidationConfig()
    if "validation" in data:
        vs = _Section(file, "validation", data["validation"])
        vc.batch_size = _batch_size(vs, "batch_size")
        vc.numb_btch = vs.int("numb_btch", 1, minimum=1)
        vc.systems = _systems(vs, "systems", base, required=True)
        vs.done()

    return TrainConfig(source=source, text=text, type_map=type_map, descriptor=dc, fitting=fc,
                       learning_rate=lc, loss=oc, training=tc, validation=vc)


def load_config(path) -> TrainConfig:
    """Read and validate a training input file (TOML)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(f"{path}: input file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path.name}: not valid TOML ({exc})") from None
    return parse_config(data, path, text)
