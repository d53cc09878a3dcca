"""One validator for numdp's input files: a typed, checked reader over a TOML table.

Every input reader (`numdp.config` for `numdp run`, `numdp.train.config` for `numdp train`) reads
its tables through `Table`, so a check fixed here is fixed for every input.  Each bad key or value
raises `InputError` with one line ``file: [table] key: message`` (``file: [table]: message`` for a
whole table), e.g. ``md.toml: [md] thermostat.tau: must be > 0, got -0.1``.

API
---
``text, data = load_toml(path)``
    Read and parse a TOML file; a missing, unreadable or malformed file is an InputError.
``distinct_files(file, outputs, inputs)``
    Refuse two outputs naming one file, or an output naming an input.
``root = Table.root(file, data, wording)``
    The top level of a parsed file (`file` is the name used in messages, `wording` the input
    format's `Wording`).  ``root.check_tables(allowed)`` rejects unknown tables,
    ``root.section("md")`` returns the table ``[md]`` (``root.section("md", {})`` when optional).
``t = Table(file, name, data, wording)``
    A table named ``[name]`` in messages.  Readers, each marking the key as used:

    - ``t.number(key, default, positive=, nonnegative=, maximum=)`` -> float (finite; bool is not a
      number; `maximum` a `Limit`)
    - ``t.ramp(key, default, positive=, zero_end=, maximum=)`` -> a number as ``t.number`` does, or a list
      ``[start, stop]`` of two numbers as a (float, float) pair (a target ramped over the run)
    - ``t.integer(key, default, positive=, nonnegative=, minimum=, maximum=)`` -> int
    - ``t.boolean(key, default)``, ``t.string(key, default, choices=)``,
      ``t.choice(key, choices, default)`` (any type, membership only)
    - ``t.int_list(key, default, minimum=, nonempty=)``, ``t.str_list(key, default)``
      (a lone string counts as a list of one)
    - ``t.path(key, base, default, allow_empty=)`` -> Path relative to `base` (None if empty)
    - ``t.raw(key, default)`` for a value checked by the caller; ``t.error(key, msg)`` builds the
      InputError to raise for it
    - ``t.sub(key)``: an inline table ``key = { ... }``, reported as ``[name] key.sub``;
      ``t.section(key, default)``: a nested TOML table ``[name.key]``

    Leave `default` out (it is `REQUIRED`) for a required key; an absent optional key gives
    `default` as it is (not checked, not converted).  Unknown keys: either
    ``t.check_keys(allowed)`` before reading (the message can list `allowed`) or ``t.done()``
    after reading (every key not read is unknown).

To add a key, read it in the table's function of the input reader with the matching reader
above and add it to that table's `check_keys` tuple (if it has one); to add a table, write one
more such function and add its name to the reader's list of tables.

`Wording`: the two inputs grew separately and word some messages differently ("required" or
"required key is missing", "must be one of" or "expected one of", ...).  So that no existing
message changes, the words are data (`RUN_WORDING`, `TRAIN_WORDING`); the checks are shared.
"""
from __future__ import annotations

import difflib
import json
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import InputError

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python < 3.11
    import tomli as tomllib


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
"""Default of a reader for a key that must be present."""


def show_value(v) -> str:
    """A value as shown after "got": its repr, cut to 60 characters; a table as "a table"."""
    text = repr(v) if not isinstance(v, dict) else "a table"
    return text if len(text) <= 60 else text[:57] + "..."


def toml_value(v) -> str:
    """A parsed TOML value spelt as in the file (true, "text", [1, 2], { a = 1 }), cut to 60
    characters: for messages that echo a value the user wrote."""
    if isinstance(v, bool):
        text = "true" if v else "false"
    elif isinstance(v, str):
        text = json.dumps(v, ensure_ascii=False)
    elif isinstance(v, list):
        text = "[" + ", ".join(toml_value(x) for x in v) + "]"
    elif isinstance(v, dict):
        text = "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    else:
        text = str(v)
    return text if len(text) <= 60 else text[:57] + "..."


def toml_literal(v) -> str:
    """`v` (bool, int, float, str, list or dict of them) written in full as a TOML value: inline
    tables for dicts, nan and ±inf as TOML spells them (as Python's repr does).  (`toml_value`
    echoes a value in a message, cut short.)"""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)   # a TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(toml_literal(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_literal(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def toml_key(k: str) -> str:
    """`k` as a TOML key: bare when it can be, else quoted."""
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)


def toml_lines(tables: dict) -> list[str]:
    """The lines of a TOML document holding `tables` ({name: {key: value}}, as an input parses):
    its top-level values first (`name = value`), then each table as a blank line, `[name]` and its
    keys (nested dicts inline)."""
    lines = [f"{toml_key(k)} = {toml_literal(t)}" for k, t in tables.items() if not isinstance(t, dict)]
    for name, keys in tables.items():
        if isinstance(keys, dict):
            lines += ["", f"[{toml_key(name)}]"] + [f"{toml_key(k)} = {toml_literal(x)}" for k, x in keys.items()]
    return lines


def checked_threads(value, name: str = "nthreads"):
    """`value` as a worker-thread count: None (numdp's default) or an integer >= 1 (a bool or a
    float is refused, not rounded); else InputError "NAME: ..." (`name` as the caller spells the
    argument: load_model's nthreads, DeepPot's and the ASE calculators' threads, --threads)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InputError(f"{name}: expected a whole number of worker threads >= 1, got {value!r}")
    return int(value)


def kind_of(v) -> str:
    """The TOML type of a value in words ("a table", "a list", "a string", ...)."""
    return {dict: "a table", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number"}.get(type(v), type(v).__name__)


@dataclass(frozen=True)
class Wording:
    """How one input format words the messages that `Table` builds.

    required: message for a missing required key; missing_table: message for a missing required
    top-level table (None: reported as a missing key of [root]); unknown_key / unknown_table:
    message given the allowed names; not_finite: for inf/nan; one_of: the words before the list
    of choices; show: a bad value after "got"; show_number: an out-of-range number after "got";
    show_table: what stands where a table was expected.
    """

    required: str
    missing_table: str | None
    unknown_key: Callable[[tuple], str]
    unknown_table: Callable[[tuple], str]
    not_finite: str
    one_of: str
    show: Callable[[Any], str]
    show_number: Callable[[Any], str]
    show_table: Callable[[Any], str]


RUN_WORDING = Wording(
    required="required", missing_table="required table missing",
    unknown_key=lambda allowed: f"unknown key (allowed: {', '.join(allowed)})",
    unknown_table=lambda allowed: f"unknown table (allowed: {', '.join(allowed)})",
    not_finite="must be finite", one_of="must be one of",
    show=repr, show_number=repr, show_table=repr)
"""The words of `numdp run` input messages (numdp.config)."""

TRAIN_WORDING = Wording(
    required="required key is missing", missing_table=None,
    unknown_key=lambda allowed: "unknown key", unknown_table=lambda allowed: "unknown section",
    not_finite="expected a finite number", one_of="expected one of",
    show=show_value, show_number=lambda v: f"{float(v):g}", show_table=kind_of)
"""The words of `numdp train` input messages (numdp.train.config)."""


INTERVAL_WORDS = ("every", "freq", "frequency", "interval", "period")
"""Words that name an interval in steps: numdp writes X_every, DeePMD-kit X_freq (save_freq)."""


def did_you_mean(name: str, allowed) -> str:
    """``"; did you mean X?"`` for the one allowed name that a misspelt `name` abbreviates or, failing
    that, the one closest to it among those with its words respelt (`_respelt`; difflib's
    similarity >= 0.6, as DeePMD-kit's input check suggests); ``""`` when none is close or several
    are equally close (start_pref_x: e, f or v?)."""
    name, allowed = str(name), [str(a) for a in allowed]
    close = [a for a in allowed if a.startswith(name)]
    if not close:
        ratios = {a: difflib.SequenceMatcher(None, _words(name), _words(a)).ratio()
                  for a in allowed if _respelt(name, a)}
        best = max(ratios.values(), default=0.0)
        close = [a for a, r in ratios.items() if r == best and r >= 0.6]
    return f"; did you mean {close[0]}?" if len(close) == 1 else ""


def _words(name: str) -> str:
    """`name` with an interval word (INTERVAL_WORDS) spelt "every": save_freq and save_every are one."""
    return "_".join("every" if w in INTERVAL_WORDS else w for w in name.split("_"))


def _respelt(name: str, key: str) -> bool:
    """Whether `name` may be `key` misspelt: the same words (split at _, or written together:
    time_step), each respelt (difflib's similarity >= 0.6), abbreviated (start_pref_energy:
    start_pref_e) or one letter for another.  A name with other words than the key's names another
    setting (checkpoint_freq is not checkpoint, trajectory_every not trajectory)."""
    a, b = _words(name).split("_"), _words(key).split("_")
    if "".join(a) == "".join(b):
        return True
    return len(a) == len(b) and all(
        x.startswith(y) or y.startswith(x) or (len(x) == len(y) == 1)
        or difflib.SequenceMatcher(None, x, y).ratio() >= 0.6 for x, y in zip(a, b))


def read_input_text(path: Path, what: str = "input file") -> str:
    """The text of the input file `path` (`what` names it when missing), without the UTF-8
    byte-order mark some Windows editors write first; InputError if missing or unreadable (TOML
    and JSON inputs, LAMMPS scripts)."""
    try:
        return Path(path).read_text().removeprefix("\ufeff")
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None


def load_toml(path: Path) -> tuple[str, dict]:
    """(text, parsed table) of the TOML file `path`; InputError if missing, unreadable or invalid."""
    text = read_input_text(path)
    return text, parse_toml_text(text, path.name)


def parse_toml_text(text: str, name: str) -> dict:
    """The parsed table of TOML `text`; InputError naming `name` if invalid."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{name}: not valid TOML ({exc})") from None


def is_int_list(v, *, minimum: int, length: int | None = None, nonempty: bool = True) -> bool:
    """Whether `v` is a list of integers (not bools) >= `minimum`, of `length` items if given."""
    return (isinstance(v, list) and (bool(v) or not nonempty) and (length is None or len(v) == length)
            and all(not isinstance(x, bool) and isinstance(x, int) and x >= minimum for x in v))


def resolve_path(value: str, base: Path) -> Path:
    """`value` (a path from an input file, ~ expanded) taken relative to `base` unless absolute."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def distinct_files(file: str, outputs, inputs=()) -> None:
    """InputError unless every output file is distinct from the other outputs and from the inputs.

    outputs, inputs: (label, Path or None) pairs, labels as in messages ("[output] log"); None
    entries (no such file) are skipped.  Two outputs on one file would write over each other, and
    an output on an input would be backed up (renamed) away by a new run.  The message is
    ``file: LABEL: names the same file as OTHER (path)``.
    """
    seen: dict[Path, str] = {}
    for label, path in inputs:
        if path is not None:
            seen.setdefault(Path(path).resolve(), label)
    inputs_seen = dict(seen)
    for label, path in outputs:
        if path is None:
            continue
        key = Path(path).resolve()
        if key in seen:
            what = "an input, " if key in inputs_seen else ""
            raise InputError(f"{file}: {label}: names the same file as {what}{seen[key]} ({path}); "
                             "give each output its own file")
        seen[key] = label


@dataclass(frozen=True)
class Limit:
    """The largest value a key may take, and why (for the message ``must be <= 1 ps (why), got
    ...``): the input's own limits, beyond any meaningful run, so that a typo or an exponent too
    many (1e300) gets one line instead of an overflow, a division by zero or a run without end.
    `unit` is written after the number (" ps", " K", "")."""

    value: float
    unit: str
    why: str


class Table:
    """Typed, checked access to one TOML table (see the module docstring)."""

    def __init__(self, file: str, name: str, data, wording: Wording = RUN_WORDING, prefix: str = ""):
        if not isinstance(data, dict):
            raise InputError(f"{file}: [{name}]: expected a table, got {wording.show_table(data)}")
        self.file = file
        self.name = name
        self.data = data
        self.wording = wording
        self.prefix = prefix
        self.used: dict[str, None] = {}  # keys read, in order
        self._is_root = False

    @classmethod
    def root(cls, file: str, data, wording: Wording = RUN_WORDING) -> "Table":
        """The top level of a parsed file; its keys are the file's tables."""
        t = cls(file, "root", data, wording)
        t._is_root = True
        return t

    # -- messages and keys
    def error(self, key: str, msg: str) -> InputError:
        """The one-line error ``file: [table] key: msg``."""
        return InputError(f"{self.file}: [{self.name}] {self.prefix}{key}: {msg}")

    def table_error(self, msg: str) -> InputError:
        """The one-line error ``file: [table]: msg`` about the whole table."""
        return InputError(f"{self.file}: [{self.name}]: {msg}")

    def has(self, key: str) -> bool:
        return key in self.data

    def check_keys(self, allowed) -> None:
        """Reject any key not in `allowed` (before reading)."""
        allowed = tuple(allowed)
        for key in self.data:
            if key not in allowed:
                raise self.error(key, self.wording.unknown_key(allowed) + did_you_mean(key, allowed))

    def done(self, also=()) -> None:
        """Reject every key that was not read (nor named in `also`)."""
        self.check_keys(tuple(self.used) + tuple(also))

    def check_tables(self, allowed) -> None:
        """At the top level: reject any table not in `allowed`."""
        allowed = tuple(allowed)
        for name in self.data:
            if name not in allowed:
                raise InputError(f"{self.file}: [{name}]: {self.wording.unknown_table(allowed)}"
                                 f"{did_you_mean(name, allowed)}")

    # -- readers
    def raw(self, key: str, default=REQUIRED):
        """The value of `key` unchecked, or `default`; a missing required key is an error."""
        self.used[key] = None
        if key in self.data:
            return self.data[key]
        if default is REQUIRED:
            if self._is_root and self.wording.missing_table is not None:
                raise InputError(f"{self.file}: [{key}]: {self.wording.missing_table}")
            raise self.error(key, self.wording.required)
        return default

    def _absent(self, key: str, default) -> bool:
        """True (and the key marked as read) when an optional key is absent: the reader then
        returns `default` unchecked."""
        if key in self.data or default is REQUIRED:
            return False
        self.used[key] = None
        return True

    def sub(self, key: str) -> "Table":
        """The inline table ``key = { ... }``; its keys are reported as ``key.subkey``."""
        value = self.raw(key)
        if not isinstance(value, dict):
            raise self.error(key, f"expected a table like {key} = {{ ... }}, got {self.wording.show(value)}")
        return Table(self.file, self.name, value, self.wording, f"{self.prefix}{key}.")

    def section(self, key: str, default=REQUIRED) -> "Table":
        """The table ``[key]`` (at the top level) or ``[name.key]`` (below it)."""
        value = self.raw(key, default)
        return Table(self.file, key if self._is_root else f"{self.name}.{key}", value, self.wording)

    def number(self, key: str, default=REQUIRED, *, positive=False, nonnegative=False, maximum: Limit | None = None):
        """A finite real number (an integer is accepted) as float, at most `maximum` if given;
        `default` when absent."""
        if self._absent(key, default):
            return default
        v = self.raw(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.error(key, f"expected a number, got {self.wording.show(v)}")
        if not math.isfinite(v):
            raise self.error(key, f"{self.wording.not_finite}, got {self.wording.show(v)}")
        if positive and not v > 0:
            raise self.error(key, f"must be > 0, got {self.wording.show_number(v)}")
        if nonnegative and v < 0:
            raise self.error(key, f"must be >= 0, got {self.wording.show_number(v)}")
        self._check_maximum(key, v, maximum)
        return float(v)

    def _check_maximum(self, key: str, v, maximum: Limit | None) -> None:
        if maximum is not None and v > maximum.value:
            raise self.error(key, f"must be <= {maximum.value:g}{maximum.unit} ({maximum.why}), got "
                                  f"{self.wording.show_number(v)}")

    def ramp(self, key: str, default=REQUIRED, *, positive=False, zero_end=False, maximum: Limit | None = None):
        """A constant target, a number (float, checked as by `number`), or a linear ramp, a list
        [start, stop] of two finite numbers ((float, float); numdp.md.ramp.Ramp); `default` when
        absent.  positive: > 0 (both ends of a ramp); zero_end: with positive, a ramp's ends may
        be 0 but not both (a number stays > 0); maximum: at most this (both ends of a ramp)."""
        if self._absent(key, default):
            return default
        v = self.raw(key, default)
        if not isinstance(v, list):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise self.error(key, f"expected a number or a list [start, stop] of two numbers, got "
                                      f"{self.wording.show(v)}")
            return self.number(key, default, positive=positive, maximum=maximum)
        if len(v) != 2 or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in v):
            raise self.error(key, f"expected a number or a list [start, stop] of two numbers, got "
                                  f"{self.wording.show(v)}")
        if not all(math.isfinite(x) for x in v):
            raise self.error(key, f"{self.wording.not_finite}, got {self.wording.show(v)}")
        if positive and zero_end and (min(v) < 0 or max(v) == 0):
            raise self.error(key, f"must be >= 0 at both ends of the ramp and > 0 at one, got {self.wording.show(v)}")
        if positive and not zero_end and not min(v) > 0:
            raise self.error(key, f"must be > 0 at both ends of the ramp, got {self.wording.show(v)}")
        self._check_maximum(key, max(v), maximum)
        return float(v[0]), float(v[1])

    def integer(self, key: str, default=REQUIRED, *, positive=False, nonnegative=False, minimum=None,
                maximum: Limit | None = None):
        """An integer (not a bool, not a float), at most `maximum` if given; `default` when absent."""
        if self._absent(key, default):
            return default
        v = self.raw(key, default)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.error(key, f"expected an integer, got {self.wording.show(v)}")
        if positive and not v > 0:
            raise self.error(key, f"must be > 0, got {v}")
        if nonnegative and v < 0:
            raise self.error(key, f"must be >= 0, got {v}")
        if minimum is not None and v < minimum:
            raise self.error(key, f"must be >= {minimum}, got {v}")
        self._check_maximum(key, v, maximum)
        return v

    def boolean(self, key: str, default=REQUIRED) -> bool:
        """true or false; `default` when absent."""
        if self._absent(key, default):
            return default
        v = self.raw(key, default)
        if not isinstance(v, bool):
            raise self.error(key, f"expected true or false, got {self.wording.show(v)}")
        return v

    def string(self, key: str, default=REQUIRED, *, choices=None):
        """A string, one of `choices` if given; `default` when absent."""
        if self._absent(key, default):
            return default
        v = self.raw(key, default)
        if not isinstance(v, str):
            raise self.error(key, f"expected a string, got {self.wording.show(v)}")
        if choices is not None and v not in choices:
            raise self._not_one_of(key, choices, v)
        return v

    def choice(self, key: str, choices, default=REQUIRED):
        """A value (of any type) that must be one of `choices`; `default` when absent."""
        if self._absent(key, default):
            return default
        v = self.raw(key, default)
        if v not in choices:
            raise self._not_one_of(key, choices, v)
        return v

    def _not_one_of(self, key, choices, v) -> InputError:
        listed = ", ".join(repr(c) for c in choices)
        return self.error(key, f"{self.wording.one_of} {listed}, got {self.wording.show(v)}")

    def int_list(self, key: str, default=REQUIRED, *, minimum=1, nonempty=True):
        """A list of integers >= `minimum` (non-empty unless told); a copy of `default` when absent."""
        if self._absent(key, default):
            return None if default is None else list(default)
        v = self.raw(key, default)
        if not is_int_list(v, minimum=minimum, nonempty=nonempty):
            need = "a non-empty list" if nonempty else "a list"
            raise self.error(key, f"expected {need} of integers >= {minimum}, got {self.wording.show(v)}")
        return list(v)

    def number_list(self, key: str, default=REQUIRED):
        """A non-empty list of finite numbers (a lone number: a list of one), as floats; `default`
        when absent."""
        if self._absent(key, default):
            return default
        v = self.raw(key, default)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            v = [v]
        if not isinstance(v, list) or not v or any(isinstance(x, bool) or not isinstance(x, (int, float))
                                                   or not math.isfinite(x) for x in v):
            raise self.error(key, f"expected a non-empty list of numbers, got {self.wording.show(v)}")
        return [float(x) for x in v]

    def str_list(self, key: str, default=REQUIRED):
        """A non-empty list of non-empty strings (a lone string: a list of one); `default` when absent."""
        if self._absent(key, default):
            return default
        v = self.raw(key, default)
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not v or any(not isinstance(x, str) or not x for x in v):
            raise self.error(key, f"expected a non-empty list of strings, got {self.wording.show(v)}")
        return v

    def path(self, key: str, base: Path, default=REQUIRED, *, allow_empty=False):
        """A file path relative to `base` (None for an absent key with default None, or for "" with
        `allow_empty`)."""
        v = self.string(key, default)
        if v is None:
            return None
        if v == "":
            if allow_empty:
                return None
            raise self.error(key, "must not be empty")
        return resolve_path(v, base)
