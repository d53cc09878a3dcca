"""The LAMMPS input language as far as `numdp lmp` reads it: lines, variables, formulas, `if`.

LAMMPS executes a script line by line; so does `run_script`, handing every command that is not
part of the language itself to a callback (numdp.lammps.translate turns those into numdp run's
tables).  What is read, with LAMMPS' rules:

- A line ending in ``&`` continues on the next one (joined with no space: LAMMPS removes the
  ``&`` and the line break); then ``#`` starts a comment (outside quotes), which a ``&`` at its
  end continues too, as in LAMMPS.
- ``$x``, ``${NAME}`` and ``$(formula)`` are replaced before a line is split into words, except
  inside quotes ("..." or '...'); quotes group words.  An equal-style variable is replaced by
  its value formatted ``%.15g``, ``$(formula)`` by ``%.20g`` and ``$(formula:FORMAT)`` in the C
  floating-point FORMAT (``%.3f``, ``%g``, ``%e``), as LAMMPS.
- ``variable NAME equal FORMULA`` (evaluated at each use), ``variable NAME string VALUE``
  (either redefines a variable of its own style, and is refused over another style),
  ``variable NAME index VALUE`` (ignored when NAME exists: ``-v NAME VALUE`` on the command line
  defines an index variable that the script cannot redefine), ``variable NAME delete``.
- Formulas: numbers, ``v_NAME`` (an equal-style variable's value as its %.15g text, as LAMMPS'
  Variable::retrieve), ``PI``, the thermo keywords ``dt`` (the timestep; LAMMPS' manual writes
  Tdamp as ``$(100.0*dt)``) and ``step`` (the current step, between runs), parentheses, unary
  ``- !``, then ``^``, ``* / %``, ``+ -``,
  ``< <= > >=``, ``== !=``, ``&&``, ``||`` (LAMMPS' precedence, highest first), and the functions
  sqrt exp ln log abs sin cos tan asin acos atan atan2 floor ceil round (LAMMPS' round: halves up).
- ``if "BOOLEAN" then "CMD" ... [elif "BOOLEAN" "CMD" ...] [else "CMD" ...]``: variables in the
  quoted Boolean and commands are replaced when they are evaluated and run; the Boolean is a
  formula or a comparison of two strings (``"${ens} == npt"``, ``!=``).
- ``print TEXT [screen yes|no] [universe yes|no]``, ``echo``: harmless (print writes its text to
  the screen); ``print ... file|append FILE`` is refused.

- ``include FILE``: FILE's lines run there, as LAMMPS (relative to the current folder; errors name
  FILE and its line).

Anything else of the language (``label``/``jump``, ``next``, loop variables, triple quotes, thermo
keywords other than dt and step or computes in formulas) is refused with one line ``FILE:LINE: COMMAND: ...``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Callable

from ..errors import InputError


@dataclass(frozen=True)
class Command:
    """One command of the script: its first physical `line` (1-based), `name` and `args` (words,
    quotes removed), after variable substitution."""

    line: int
    name: str
    args: tuple[str, ...]
    file: str | None = None   # the `include`d file it is in; None: the script itself


class ScriptError(InputError):
    """A refused or wrong script line: ``FILE:LINE: COMMAND: message``."""


class VariableStyle(str, Enum):
    EQUAL = "equal"    # a formula, evaluated at each use
    INDEX = "index"    # a string (also every -v NAME VALUE of the command line)
    STRING = "string"


@dataclass
class Variable:
    style: VariableStyle
    value: str   # the formula of an equal-style variable, else the string


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) of every logical line: `&` continuations joined, then comments
    removed (LAMMPS' order: a line whose last printable character is `&` continues even inside a
    comment, which then takes in the next line too), blank lines dropped."""
    out = []
    pending, start = "", 0
    for no, raw in enumerate(text.splitlines(), start=1):
        raw = raw.rstrip()
        if not pending:
            start = no
        if raw.endswith("&"):
            pending += raw[:-1]   # LAMMPS removes the & and the line break, adding no space
            continue
        line = _strip_comment(pending + raw).rstrip()
        pending = ""
        if line.strip():
            out.append((start, line))
    line = _strip_comment(pending).rstrip()
    if line.strip():
        out.append((start, line))
    return out


def _strip_comment(line: str) -> str:
    quote = None
    for k, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return line[:k]
    return line


def split_words(line: str) -> list[str]:
    """The words of a line; a quoted word ("..." or '...') keeps its spaces, loses its quotes."""
    words, k, n = [], 0, len(line)
    while k < n:
        if line[k].isspace():
            k += 1
            continue
        if line[k] in "\"'":
            if line.startswith('"""', k):   # LAMMPS' triple quotes (quotes inside, several lines)
                raise ValueError('triple quotes """...""" are not supported by numdp lmp: write "..." or \'...\'')
            end = line.find(line[k], k + 1)
            if end < 0:
                raise ValueError(f"unbalanced quote in {line.strip()!r}")
            words.append(line[k + 1:end])
            k = end + 1
            continue
        end = k
        while end < n and not line[end].isspace():
            end += 1
        words.append(line[k:end])
        k = end
    return words


# -- formulas -----------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z_0-9]*)"
                    r"|(?P<op><=|>=|==|!=|&&|\|\||[-+*/^%()<>!,]))")
_FLOAT_FORMAT = re.compile(r"%[-+ 0#]*\d*(?:\.\d+)?[eEfFgG]")   # $(formula:FORMAT)
# binary operators by precedence, lowest first (LAMMPS' variable command)
_LEVELS = (("||",), ("&&",), ("==", "!="), ("<", "<=", ">", ">="), ("+", "-"), ("*", "/", "%"), ("^",))


class FormulaError(ValueError):
    pass


class _MathError(FormulaError):
    """A formula that reads but cannot be evaluated with these values (division by zero, a domain
    error, an overflow)."""


class KeywordUnavailable(_MathError):
    """A thermo keyword that has no value at this point of the script (step before the box exists;
    pe, temp, ... before a run): an equal-style variable holding it is defined, as in LAMMPS, and
    its evaluation refused."""


class FinalState(KeywordUnavailable):
    """A thermo keyword after a run / minimize (pe, pxx, vol, c_ID, count(all), ...): its value is
    that of the state the run ended with, known once it has run.  The line that needs it and every
    later line of the script are kept (`Script.deferred`) and run after the runs (`Script.finish`)."""


_DIVISION = "division by zero"


def _round(x: float) -> float:
    """LAMMPS' round(): halves away from floor (its MYROUND: round(2.5) = 3, round(-2.5) = -2), not
    Python's round-half-to-even."""
    return float(math.ceil(x) if x - math.floor(x) >= 0.5 else math.floor(x))


def _power(a: float, b: float) -> float:
    """LAMMPS' a^b: 1 for b = 0, an error for 0^(negative), else pow (a real number: a negative base
    with a fractional exponent is refused, where LAMMPS' pow gives NaN)."""
    if b == 0:
        return 1.0
    if a == 0 and b < 0:
        raise _MathError("invalid power expression 0^(negative)")
    return math.pow(a, b)


_FUNCTIONS = {"sqrt": math.sqrt, "exp": math.exp, "ln": math.log, "log": math.log10, "abs": abs,
              "sin": math.sin, "cos": math.cos, "tan": math.tan, "asin": math.asin, "acos": math.acos,
              "atan": math.atan, "atan2": math.atan2, "floor": math.floor, "ceil": math.ceil, "round": _round}


def _binary(op: str, a: float, b: float) -> float:
    if op in ("/", "%") and b == 0:
        raise _MathError(_DIVISION)
    if op == "^":
        try:
            return _power(a, b)
        except (ValueError, OverflowError) as exc:
            raise _MathError(f"{a:.15g}^{b:.15g}: {exc}") from None
    return {"||": lambda: float(a != 0 or b != 0), "&&": lambda: float(a != 0 and b != 0),
            "==": lambda: float(a == b), "!=": lambda: float(a != b), "<": lambda: float(a < b),
            "<=": lambda: float(a <= b), ">": lambda: float(a > b), ">=": lambda: float(a >= b),
            "+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b,
            "%": lambda: math.fmod(a, b)}[op]()


class _Formula:
    """Recursive descent over the tokens of one formula; `lookup(name)` gives v_NAME's value,
    `keyword(name)` a thermo keyword's (None: not one numdp lmp knows before a run)."""

    def __init__(self, text: str, lookup: Callable[[str], float],
                 keyword: Callable[[str], float | None] = lambda name: None):
        self.tokens, k = [], 0
        text = text.strip()
        while k < len(text):
            m = _TOKEN.match(text, k)
            if m is None or m.end() == k:
                raise FormulaError(f"cannot read {text[k:].strip()!r} in formula {text!r}")
            self.tokens.append((m.lastgroup, m.group(m.lastgroup)))
            k = m.end()
            while k < len(text) and text[k].isspace():
                k += 1
        self.k, self.text, self.lookup, self.keyword = 0, text, lookup, keyword

    def value(self) -> float:
        v = self._level(0)
        if self.k != len(self.tokens):
            raise FormulaError(f"unexpected {self.tokens[self.k][1]!r} in formula {self.text!r}")
        return v

    def _peek(self):
        return self.tokens[self.k] if self.k < len(self.tokens) else (None, None)

    def _take(self, op: str) -> None:
        if self._peek() != ("op", op):
            raise FormulaError(f"expected {op!r} in formula {self.text!r}")
        self.k += 1

    def _level(self, level: int) -> float:
        if level == len(_LEVELS):
            return self._unary()
        v = self._level(level + 1)
        while True:
            kind, tok = self._peek()
            if kind != "op" or tok not in _LEVELS[level]:
                return v
            self.k += 1
            v = _binary(tok, v, self._level(level + 1))

    def _unary(self) -> float:
        kind, tok = self._peek()
        if kind == "op" and tok in ("-", "!", "+"):
            self.k += 1
            v = self._unary()
            return -v if tok == "-" else (float(v == 0) if tok == "!" else v)
        return self._atom()

    def _atom(self) -> float:
        kind, tok = self._peek()
        if kind is None:
            raise FormulaError(f"formula {self.text!r} ends early")
        self.k += 1
        if kind == "num":
            return float(tok)
        if kind == "op" and tok == "(":
            v = self._level(0)
            self._take(")")
            return v
        if kind == "name":
            if tok.startswith("v_"):
                return self.lookup(tok[2:])
            if tok == "PI":
                return math.pi
            if tok == "count" and self._peek() == ("op", "("):
                return self._count()
            if tok in _FUNCTIONS and self._peek() == ("op", "("):
                self.k += 1
                args = [self._level(0)]
                while self._peek() == ("op", ","):
                    self.k += 1
                    args.append(self._level(0))
                self._take(")")
                try:
                    return float(_FUNCTIONS[tok](*args))
                except TypeError as exc:   # the number of arguments
                    raise FormulaError(f"{tok}(): {exc}") from None
                except (ValueError, ArithmeticError) as exc:   # a domain error, an overflow
                    raise _MathError(f"{tok}(): {exc}") from None
            if self._peek() != ("op", "(") and self.keyword(tok) is not None:
                return self.keyword(tok)
            raise FormulaError(f"{tok!r} in formula {self.text!r}: thermo keywords (but dt, step and, after the last run, "
                               f"those docs/lammps-input.md lists), computes (but c_ID of compute temp, pe, ke) and "
                               f"functions other than {', '.join(_FUNCTIONS)}, count(all) are not supported by numdp lmp")
        raise FormulaError(f"unexpected {tok!r} in formula {self.text!r}")

    def _count(self) -> float:
        """count(all): the number of atoms (LAMMPS' count(GROUP), of group all only), the thermo
        keyword atoms."""
        self.k += 1
        kind, group = self._peek()
        self.k += 1
        self._take(")")
        if kind != "name" or group != "all":
            raise FormulaError(f"count({group}): numdp lmp counts group all only")
        value = self.keyword("atoms")
        if value is None:
            raise FormulaError(f"count(all) in formula {self.text!r}: not supported by numdp lmp here")
        return value


# -- the script ---------------------------------------------------------------------------------------

_LANGUAGE_REFUSED = ("shell", "quit", "partition", "python")
_LOOPS = ("label", "jump", "next")
LOOP_MESSAGE = ("not supported by numdp lmp: write the loop's commands out, one after the other (numdp lmp runs "
                "several runs in a script)")


class Script:
    """Runs a script's lines; `handler(Command)` gets every command that is not the language's."""

    def __init__(self, name: str, handler: Callable[[Command], None], cli_variables: dict[str, str] | None = None,
                 keyword: Callable[[str], float | None] | None = None, base: Path | None = None):
        self.name = name
        self.main = name   # the script's own name (self.name: the file being read, an include's)
        self.base = Path.cwd() if base is None else base   # include FILE is relative to it
        self.depth = 0
        self.handler = handler
        self.keyword = keyword   # a thermo keyword's value in formulas (None: not one numdp lmp knows)
        self.variables: dict[str, Variable] = {
            k: Variable(VariableStyle.INDEX, v) for k, v in (cli_variables or {}).items()}
        self.printed: list[str] = []   # the text of `print` commands
        self.deferred: list[tuple[int, str, str]] = []   # (line, text, file) run by `finish` (FinalState)
        self.probing = False   # `finish(probe=True)`: a dry run of the deferred lines

    def error(self, line: int, command: str, message: str, file: str | None = None) -> ScriptError:
        """The one-line error of `command` at `line` of `file` (None: the file being read)."""
        return ScriptError(f"{self.name if file is None else file}:{line}: {command}: {message}")

    def run(self, text: str) -> None:
        for line, raw in logical_lines(text):
            self.execute(line, raw)

    # the value of a variable as text, and as a number
    def _text_of(self, name: str, depth: int = 0) -> str:
        var = self.variables.get(name)
        if var is None:
            raise FormulaError(f"variable {name} is not defined (give it with -v {name} VALUE)")
        if var.style is VariableStyle.EQUAL:
            return f"{self._number_of(name, depth):.15g}"
        return var.value

    def _number_of(self, name: str, depth: int = 0) -> float:
        var = self.variables.get(name)
        if var is None:
            raise FormulaError(f"variable {name} is not defined (give it with -v {name} VALUE)")
        if depth > 50:
            raise FormulaError(f"variable {name} refers to itself")
        if var.style is VariableStyle.EQUAL:   # LAMMPS reads its %.15g text (Variable::retrieve)
            return float(f"{self.evaluate(var.value, depth + 1):.15g}")
        try:
            return float(var.value)
        except ValueError:
            raise FormulaError(f"variable {name} = {var.value!r} is not a number") from None

    def evaluate(self, formula: str, depth: int = 0) -> float:
        """The value of an equal-style formula (after `$` substitution); nan for a math error while
        `probing` (the probe's made-up keyword values may divide by zero where the real ones do not)."""
        try:
            return _Formula(self.substitute(formula), lambda n: self._number_of(n, depth), self._keyword).value()
        except _MathError as exc:
            if self.probing and not isinstance(exc, KeywordUnavailable):
                return math.nan
            raise

    def _keyword(self, name: str) -> float | None:
        """The value of a thermo keyword in a formula evaluated now (the translator's: dt, step);
        None: not one numdp lmp knows between runs."""
        return self.keyword(name) if self.keyword is not None else None

    def substitute(self, line: str) -> str:
        """`line` with $x, ${NAME} and $(formula) replaced outside quotes."""
        out, k, quote = [], 0, None
        while k < len(line):
            ch = line[k]
            if quote:
                if ch == quote:
                    quote = None
                out.append(ch)
                k += 1
            elif ch in "\"'":
                quote = ch
                out.append(ch)
                k += 1
            elif ch == "$" and k + 1 < len(line):
                nxt = line[k + 1]
                if nxt in "{(":
                    close = _matching(line, k + 1)
                    if close < 0:
                        raise FormulaError(f"unbalanced {nxt!r} after $ in {line.strip()!r}")
                    inner = line[k + 2:close]
                    out.append(self._text_of(inner) if nxt == "{" else self._immediate(inner))
                    k = close + 1
                else:
                    out.append(self._text_of(nxt))
                    k += 2
            else:
                out.append(ch)
                k += 1
        return "".join(out)

    def _immediate(self, inner: str) -> str:
        """The text of ``$(formula)``, ``%.20g``, or of ``$(formula:FORMAT)`` in FORMAT (a C
        floating-point format such as ``%.3f``), as LAMMPS."""
        formula, colon, fmt = inner.rpartition(":")
        if colon and _FLOAT_FORMAT.fullmatch(fmt.strip()):
            return fmt.strip() % self.evaluate(formula)
        return f"{self.evaluate(inner):.20g}"

    def execute(self, line: int, raw: str) -> None:
        """Run one logical line (after substitution); from a line that needs the final state of the
        runs on (FinalState), keep the lines for `finish`."""
        first = raw.split(None, 1)[0] if raw.split() else ""
        if self.deferred:
            self._defer(line, raw, first)
            return
        try:
            self._execute(line, raw, first)
        except _Deferred as exc:
            command = _not_deferrable(raw)
            if command is not None:   # (a command of the run, e.g. write_data out.${step}.data)
                raise self.error(line, command, f"{exc}: this line needs the state the last run ended with, which "
                                                f"numdp lmp knows after the runs, where it accepts only "
                                                f"{', '.join(_DEFERRABLE)}") from None
            self.deferred.append((line, raw, self.name))

    def _defer(self, line: int, raw: str, first: str) -> None:
        command = _not_deferrable(raw)
        if command is not None:
            where = self.deferred[0]
            raise self.error(line, command, f"after {where[2]}:{where[0]} ({where[1].split()[0]}), which needs the "
                                            f"state the last run ended with: numdp lmp evaluates it after the runs, "
                                            f"where it accepts only {', '.join(_DEFERRABLE)} (put {command} before it)")
        self.deferred.append((line, raw, self.name))

    def finish(self, keyword: Callable[[str], float | None], probe: bool = False) -> list[str]:
        """Run the lines kept after a run (`deferred`) with `keyword`, the thermo keywords' values in
        the state the last run ended with; returns the text of their `print` commands, in order.
        probe: a dry run with made-up values (`probing`)."""
        start, lines = len(self.printed), self.deferred
        self.deferred, self.keyword, self.probing = [], keyword, probe
        outer = self.name
        try:
            for line, raw, name in lines:
                self.name = name
                first = raw.split(None, 1)[0] if raw.split() else ""
                try:
                    self._execute(line, raw, first)
                except _Deferred as exc:
                    raise self.error(line, first, str(exc)) from None
        finally:
            self.name = outer
        return self.printed[start:]

    def _execute(self, line: int, raw: str, first: str) -> None:
        try:
            words = split_words(self.substitute(raw))
        except FinalState as exc:
            raise _Deferred(str(exc)) from None
        except (FormulaError, ValueError) as exc:
            raise self.error(line, first, str(exc)) from None
        if not words:
            return
        name, args = words[0], tuple(words[1:])
        try:
            if name == "variable":
                self._variable(args)
            elif name == "if":
                self._if(line, args)
            elif name == "print":
                self._print(args)
            elif name == "echo":
                pass   # what LAMMPS echoes to the screen and the log: no physics
            elif name == "include":
                self._include(args)
            elif name in _LOOPS:
                raise FormulaError(LOOP_MESSAGE)
            elif name in _LANGUAGE_REFUSED:
                raise FormulaError("not supported by numdp lmp")
            else:
                self.handler(Command(line, name, args, None if self.name == self.main else self.name))
        except FinalState as exc:
            raise _Deferred(str(exc)) from None
        except FormulaError as exc:
            raise self.error(line, name, str(exc)) from None

    def _include(self, args: tuple[str, ...]) -> None:
        """include FILE: its lines run here, with the variables as they are (LAMMPS' include)."""
        from ..validate import read_input_text

        if len(args) != 1:
            raise FormulaError("expected: include FILE")
        path = self.base / args[0]
        if not path.is_file():
            raise FormulaError(f"cannot open {args[0]}: no such file")
        if self.depth >= 20:
            raise FormulaError(f"include {args[0]}: nested more than 20 deep (a file that includes itself?)")
        try:
            text = read_input_text(path, "included file")
        except InputError as exc:   # unreadable or not text
            raise FormulaError(str(exc)) from None
        outer = self.name
        self.name, self.depth = args[0], self.depth + 1
        try:
            self.run(text)
        finally:
            self.name, self.depth = outer, self.depth - 1

    def _print(self, args: tuple[str, ...]) -> None:
        """print TEXT [screen yes|no] [universe yes|no]: LAMMPS substitutes the variables of its
        (quoted) text; file / append (a file of the text) are refused."""
        keys = [k for k, a in enumerate(args) if a in ("file", "append", "screen", "universe")]
        first = keys[0] if keys else len(args)
        text, rest, screen = " ".join(args[:first]), list(args[first:]), True
        while rest:
            key, value = rest[0], rest[1] if len(rest) > 1 else None
            if key in ("file", "append"):
                raise FormulaError(f"print ... {key} FILE: numdp lmp writes no print files (the text goes to "
                                   f"the screen)")
            if value not in ("yes", "no"):
                raise FormulaError(f"expected: print TEXT [screen yes|no] [universe yes|no], got {key} {value}")
            screen = value == "yes" if key == "screen" else screen
            rest = rest[2:]
        if screen:
            self.printed.append(self.substitute(text))

    def _variable(self, args: tuple[str, ...]) -> None:
        if len(args) < 2:
            raise FormulaError("expected: variable NAME STYLE ...")
        name, style = args[0], args[1]
        if style == "delete":
            self.variables.pop(name, None)
            return
        if style not in ("equal", "index", "string"):
            raise FormulaError(f"variable style '{style}' is not supported by numdp lmp (equal, index, string)")
        if len(args) != 3:
            raise FormulaError(f"expected: variable {name} {style} VALUE (one value)")
        old = self.variables.get(name)
        if style == "index" and old is not None:
            return   # LAMMPS: an index definition of an existing name is ignored (-v on the command line wins)
        if old is not None and old.style is not VariableStyle(style):   # a string or equal one replaces its own style
            raise FormulaError(f"cannot redefine variable {name} as style {style} (it is {old.style.value}"
                               + (", from -v on the command line" if old.style is VariableStyle.INDEX else "")
                               + ")")
        if style == "equal":   # its syntax checked now (v_ names as 1); evaluated at each use
            try:
                _Formula(args[2], lambda n: 1.0, self._keyword).value()
            except _MathError:
                pass   # with v_ names as 1 only: the values at its use count
        self.variables[name] = Variable(VariableStyle(style), args[2])

    def _boolean(self, condition: str) -> bool:
        """An if command's Boolean: a formula, or (LAMMPS' example ``if "${myString} == a10"``) a
        comparison of two strings (non-numeric words) by == or !=."""
        try:
            return self.evaluate(condition) != 0
        except FormulaError:
            m = _STRING_COMPARISON.fullmatch(self.substitute(condition))
            if m is None or any(is_number(w) for w in (m[1], m[3])):
                raise
            return (m[1] == m[3]) == (m[2] == "==")

    def _if(self, line: int, args: tuple[str, ...]) -> None:
        # if BOOL then CMD ... [elif BOOL CMD ...]* [else CMD ...]
        if len(args) < 3 or args[1] != "then":
            raise FormulaError('expected: if "BOOLEAN" then "COMMAND" ... [elif ...] [else "COMMAND" ...]')
        branches: list[tuple[str | None, list[str]]] = [(args[0], [])]
        k = 2
        while k < len(args):
            if args[k] == "elif":
                if k + 1 >= len(args):
                    raise FormulaError("elif without a Boolean")
                branches.append((args[k + 1], []))
                k += 2
            elif args[k] == "else":
                branches.append((None, []))
                k += 1
            else:
                branches[-1][1].append(args[k])
                k += 1
        for condition, commands in branches:
            if condition is None or self._boolean(condition):
                for command in commands:
                    self.execute(line, command)
                return


class _Deferred(Exception):
    """A line needs the state a run ended with (FinalState): kept for `Script.finish`."""


_DEFERRABLE = ("variable", "print", "if", "echo")
"""What a script may do after a line that needs the state its last run ended with."""


def _not_deferrable(raw: str) -> str | None:
    """The first command of the line `raw` (with those of every branch of an `if`, whichever the
    run takes) that is not _DEFERRABLE, or None."""
    try:
        words = split_words(raw)
    except ValueError:
        return None   # (the line's own error is reported where it runs)
    if not words or words[0] not in _DEFERRABLE:
        return words[0] if words else None
    if words[0] != "if":
        return None
    k = 3   # if BOOL then CMD ... [elif BOOL CMD ...] [else CMD ...]
    while k < len(words):
        if words[k] == "elif":
            k += 2
            continue
        if words[k] != "else":
            inner = _not_deferrable(words[k])
            if inner is not None:
                return inner
        k += 1
    return None


_STRING_COMPARISON = re.compile(r"\s*(\S+?)\s*(==|!=)\s*(\S+)\s*")


def _matching(line: str, open_at: int) -> int:
    """Index of the bracket closing the one at `open_at`, or -1."""
    pair = {"{": "}", "(": ")"}[line[open_at]]
    depth = 0
    for k in range(open_at, len(line)):
        if line[k] == line[open_at]:
            depth += 1
        elif line[k] == pair:
            depth -= 1
            if depth == 0:
                return k
    return -1


def is_number(word: str) -> bool:
    """Whether `word` reads as a number (float())."""
    try:
        float(word)
        return True
    except ValueError:
        return False
