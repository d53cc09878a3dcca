"""The user documentation stays navigable and true to the code: every relative link in README.md and
docs/*.md points at a file that exists and, with a #fragment, at a heading of that page (GitHub's
anchor rule); every `numdp <command> --option` and `tools/NAME.py --option` quoted is an option of
that parser; every `numdp run` TOML snippet passes the validator; every key and default of
docs/training.md's Input keys table is the training validator's, and so is every default of
docs/md.md's key tables the run validator's; the Python API example runs."""
import re
from pathlib import Path

import pytest

from numdp.validate import toml_lines

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"```.*?```", re.S)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped except - and _, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def links(page: Path):
    for m in LINK.finditer(FENCE.sub("", page.read_text())):
        target = m.group(1)
        if not re.match(r"[a-z]+:", target):   # http:, mailto: ... are not checked
            yield target


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    bad = []
    for target in links(page):
        path, _, frag = target.partition("#")
        dest = (page.parent / path) if path else page
        if not dest.exists():
            bad.append(f"missing file {target}")
        elif frag and dest.suffix == ".md" and frag not in anchors(dest):
            bad.append(f"no heading for {target}")
    assert not bad, f"{page.relative_to(ROOT)}: " + "; ".join(bad)


def test_every_docs_page_is_in_the_index():
    index = (ROOT / "docs" / "index.md").read_text()
    missing = [p.name for p in (ROOT / "docs").glob("*.md") if p.name != "index.md" and f"({p.name}" not in index]
    assert not missing, f"docs/index.md does not link {missing}"


# -- commands and snippets quoted in the docs still match the code -----------------------------------

# fenced blocks, inline code spans and indented code lines (with their continuation lines)
CODE = re.compile(r"```[^\n]*\n.*?```|`[^`\n]+`|^    \S[^\n]*(?:\n    [^\n]*)*", re.S | re.M)
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def code_spans(page: Path):
    """Code blocks and inline code of a page, with shell line continuations joined."""
    for m in CODE.finditer(page.read_text()):
        yield m.group(0).replace("\\\n", " ")


def subcommand_options() -> dict[str, set[str]]:
    from numdp.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(getattr(a, "choices", None), dict))
    return {name: set(p._option_string_actions) for name, p in sub.choices.items()}


def test_every_quoted_numdp_option_exists():
    """Each `numdp <command> ... --option` in README.md and docs/ is an option of that command's
    parser (up to a `#` comment or a table's `|`)."""
    options = subcommand_options()
    command = re.compile(r"numdp (" + "|".join(map(re.escape, options)) + r")\b([^\n|#`]*)")
    bad = [f"{page.name}: {m.group(0).strip()!r}: {tok}"
           for page in PAGES for span in code_spans(page) for m in command.finditer(span)
           for tok in OPTION.findall(m.group(2)) if tok not in options[m.group(1)]]
    assert not bad, "options the parser does not have: " + "; ".join(bad)


def test_every_quoted_tool_option_exists():
    """Each `tools/NAME.py ... --option` quoted in the docs is one of that script's add_argument
    options (read from its source, so no script is imported)."""
    bad = []
    for page in PAGES:
        for span in code_spans(page):
            for m in re.finditer(r"tools/(\w+\.py)([^\n|#`]*)", span):
                script = ROOT / "tools" / m.group(1)
                if not script.exists():
                    bad.append(f"{page.name}: no file tools/{m.group(1)}")
                    continue
                calls = re.findall(r"add_argument\((.*?)\)", script.read_text(), re.S)
                known = {s for c in calls for s in re.findall(r"[\"'](--?[\w-]+)[\"']", c)} | {"-h", "--help"}
                bad += [f"{page.name}: tools/{m.group(1)} {tok}" for tok in OPTION.findall(m.group(2))
                        if tok not in known]
    assert not bad, "; ".join(bad)


RUN_BASE = {"model": {"file": "model.h5"}, "system": {"file": "start.xyz"},
            "md": {"timestep": 0.0005, "steps": 10}}


def run_snippets():
    """(page, text) of every ```toml block whose tables all belong to a `numdp run` input."""
    from numdp.config import TABLES

    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib
    for page in PAGES:
        for m in re.finditer(r"```toml\n(.*?)```", page.read_text(), re.S):
            data = tomllib.loads(m.group(1))
            if data and set(data) <= set(TABLES):
                yield page, data


def test_every_run_input_snippet_validates(tmp_path):
    """Each `numdp run` TOML snippet of the docs, completed with the required keys it leaves out,
    passes numdp's validator: every key, table and value it shows exists and is accepted."""
    from numdp.config import load_run_settings

    snippets = list(run_snippets())
    assert len(snippets) >= 4, "the docs' [model] / [parallel] / [model_devi] / annotated snippets are gone"
    bad = []
    for k, (page, data) in enumerate(snippets):
        # a [minimize] snippet is a minimization input: no [md] from the base
        base = {n: t for n, t in RUN_BASE.items() if not (n == "md" and "minimize" in data)}
        merged = {name: dict(base.get(name, {}), **data.get(name, {})) for name in set(base) | set(data)}
        path = tmp_path / f"snippet{k}.toml"
        path.write_text("\n".join(toml_lines(merged)) + "\n")
        try:
            load_run_settings(path)
        except Exception as exc:  # InputError: the message names the key
            bad.append(f"{page.name}: {exc}")
    assert not bad, "; ".join(bad)


def test_python_api_example_runs():
    """The opening example of docs/python-api.md runs as written from the repository root."""
    import os

    block = re.search(r"```python\n(.*?)```", (ROOT / "docs" / "python-api.md").read_text(), re.S).group(1)
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        exec(compile(block, "docs/python-api.md", "exec"), {})
    finally:
        os.chdir(cwd)


def test_quoted_files_and_python_names_exist():
    """Every `numdp/...`, `tests/...`, `tools/...` file or folder and every `tests/x.py::name`
    quoted in the docs exists, and every dotted `numdp.module.Name` resolves by import (a name
    ending in `_` is a family such as `numdp.units.IPI_*`)."""
    import importlib

    bad = []
    for page in PAGES:
        for span in code_spans(page):
            for path in re.findall(r"(?<![\w/.])((?:numdp|tests|tools)/[\w/]+(?:\.py|\.sh|/))", span):
                if not (ROOT / path).exists():
                    bad.append(f"{page.name}: no {path}")
            for path, name in re.findall(r"(tests/\w+\.py)::(\w+)", span):
                if not (ROOT / path).exists() or not re.search(rf"def {name}\b", (ROOT / path).read_text()):
                    bad.append(f"{page.name}: no test {path}::{name}")
            for dotted in re.findall(r"(?<![\w/.])numdp(?:\.\w+)+", span):
                parts = dotted.split(".")
                if parts[-1].endswith("_"):
                    parts = parts[:-1]
                for i in range(len(parts), 0, -1):
                    try:
                        obj = importlib.import_module(".".join(parts[:i]))
                        break
                    except ImportError:
                        continue
                try:
                    for attr in parts[i:]:
                        obj = getattr(obj, attr)
                except AttributeError:
                    bad.append(f"{page.name}: {dotted} does not resolve")
    assert not bad, "; ".join(bad)


def training_key_rows():
    """(section, key, default or None) of docs/training.md's "Input keys" table; default is the
    documented value in brackets when it is a TOML value (`neuron` [[10,20,40]] -> [10, 20, 40])."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib
    text = (ROOT / "docs" / "training.md").read_text()
    rows = re.findall(r"^\| `\[([\w.]+)\]`[^|]*\| (.*) \|$", text, re.M)
    assert len(rows) >= 7, "docs/training.md's Input keys table is gone"
    for section, cell in rows:
        for m in re.finditer(r"`(\w+)`( \[)?", cell):
            default = None
            if m.group(2):
                rest = cell[m.end():]
                # the value ends at a ';' or at the ']' that closes the brackets (a list default
                # such as [[10,20,40]] keeps its own ']')
                for end in (i for i, c in enumerate(rest) if c in "];"):
                    inner_list = rest[end] == "]" and "[" in rest[:end]
                    try:
                        default = tomllib.loads("v = " + rest[:end + 1 if inner_list else end])["v"]
                        break
                    except tomllib.TOMLDecodeError:
                        continue
            if m.group(1) not in ("true", "false"):  # values quoted in the prose, not keys
                yield section, m.group(1), default


def test_training_keys_and_defaults_match_the_validator():
    """Every key of docs/training.md's Input keys table is accepted by `numdp train`'s validator,
    and where the table gives a default, leaving the key out of inputs/water/train.toml gives the
    same validated input as setting it to that default."""
    import copy

    from numdp.train.config import parse_config

    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib
    source = ROOT / "inputs" / "water" / "train.toml"
    base = tomllib.loads(source.read_text())

    def table(data, section):
        t = data
        for name in section.split("."):
            t = t.setdefault(name, {})
        return t

    bad = []
    for section, key, default in training_key_rows():
        if section == "model.fitting_net":
            continue  # the alias of [model.fitting], which the water input uses
        if default is None:
            if key not in table(copy.deepcopy(base), section) and key not in ("seed", "precondition", "sys_probs", "numb_epoch", "rglob_patterns", "preset_out_bias",
                                                                          "relative_f", "default_fparam"):
                bad.append(f"[{section}] {key}: no default documented and not in the water input")
            continue
        with_default, without = copy.deepcopy(base), copy.deepcopy(base)
        table(with_default, section)[key] = default
        table(without, section).pop(key, None)
        try:
            a = parse_config(with_default, source)
            b = parse_config(without, source)
        except Exception as exc:  # InputError naming the key
            bad.append(f"[{section}] {key} = {default!r}: {exc}")
            continue
        if a != b:
            bad.append(f"[{section}] {key}: documented default {default!r} is not the validator's")
    assert not bad, "; ".join(bad)


RUN_FULL = {
    "model": {"file": ["m0.h5", "m1.h5"]},
    "system": {"file": "start.xyz", "velocities": {"temperature": 300.0}},
    "md": {"timestep": 0.001, "steps": 10, "ensemble": "npt",
           "thermostat": {"kind": "nose-hoover", "temperature": 300.0, "tau": 0.1},
           "barostat": {"pressure": 1.0, "tau": 1.0}},
    "model_devi": {},
}
# the complete input of the [minimize] table's defaults: a minimization has no [md], [model_devi],
# ensemble or start velocities
RUN_MINIMIZE = {"model": {"file": "m0.h5"}, "system": {"file": "start.xyz"}, "minimize": {"steps": 10}}


def run_key_rows():
    """(table, dotted key, default) of docs/md.md's key tables whose default cell is, or starts
    with, a TOML value (`"double"`, `[1, 1, 1]`, 2.0, false, ...)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib
    text = (ROOT / "docs" / "md.md").read_text()
    for section in re.split(r"^### ", text, flags=re.M)[1:]:
        name = re.match(r"`\[(\w+)\]`", section)
        if not name:
            continue
        for key, cell in re.findall(r"^\| `([\w.]+)` \| ([^|]*) \|", section, re.M):
            value = re.match(r"`([^`]+)`", cell).group(1) if cell.startswith("`") else cell
            try:
                yield name.group(1), key, tomllib.loads("v = " + value)["v"]
            except tomllib.TOMLDecodeError:  # "required", "none", prose: no value to check
                pass


def test_run_defaults_match_the_validator(tmp_path):
    """Each default documented in docs/md.md's key tables is the validator's: leaving the key out
    of a complete input (NPT with a Nosé-Hoover chain, start velocities, a 2-model ensemble)
    gives the same settings as setting it to the documented value ([minimize]'s keys: in a
    minimization input)."""
    import copy
    import dataclasses

    from numdp.config import load_run_settings

    def settings(data, name):
        path = tmp_path / name
        path.write_text("\n".join(toml_lines(data)) + "\n")
        try:
            s = load_run_settings(path)
        except Exception as exc:  # an InputError; compared by its message
            return str(exc).replace(name, "INPUT")
        return {k: v for k, v in dataclasses.asdict(s).items() if k not in ("path", "text")}

    rows = list(run_key_rows())
    assert len(rows) >= 20, "docs/md.md's key tables are gone or no longer quote their defaults"
    bad = []
    assert any(table == "minimize" for table, _, _ in rows), "docs/md.md's [minimize] table is gone"
    for table, key, default in rows:
        full = RUN_MINIMIZE if table == "minimize" else RUN_FULL
        with_default, without = copy.deepcopy(full), copy.deepcopy(full)
        if key in ("barostat.chain", "barostat.form"):   # keys of the MTK barostat only
            for d in (with_default, without):
                d["md"]["barostat"]["kind"] = "mtk"
        if table == "minimize" and key in ("line", "maxeval"):   # keys of the line searches only
            for d in (with_default, without):
                d["minimize"]["style"] = "cg"
        *parents, leaf = key.split(".")
        a, b = with_default.setdefault(table, {}), without.setdefault(table, {})
        for p in parents:
            a, b = a.setdefault(p, {}), b.setdefault(p, {})
        a[leaf] = default
        b.pop(leaf, None)
        if settings(with_default, "a.toml") != settings(without, "b.toml"):
            bad.append(f"[{table}] {key}: documented default {default!r} is not the validator's")
    assert not bad, "; ".join(bad)


@pytest.mark.parametrize("page, command", [("testing-models.md", "test"), ("compression.md", "compress")])
def test_option_tables_match_the_parser(page, command):
    """The option tables of a command's page name its options, and the defaults they give
    ("required", a number, a `value`) are the parser's."""
    from numdp.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(getattr(a, "choices", None), dict)).choices[command]
    actions = sub._option_string_actions
    rows = re.findall(r"^\| (`-[^|]*) \| ([^|]*) \|", (ROOT / "docs" / page).read_text(), re.M)
    assert rows, f"docs/{page} has no option table"
    bad = []
    for names, default in rows:
        opts = re.findall(r"`(--?[\w-]+)", names)
        missing = [o for o in opts if o not in actions]
        if missing:
            bad.append(f"{missing} not options of numdp {command}")
            continue
        action = actions[opts[0]]
        word = (re.match(r"`([^`]*)`", default) or re.match(r"(\S*)", default)).group(1)
        if word == "required":
            ok = action.required
        elif re.fullmatch(r"[-+.\deE]+", word):
            ok = action.default is not None and float(word) == float(action.default)
        elif default.startswith("`") and not word.isupper():  # a literal value (not an env variable)
            ok = str(action.default) == word
        else:
            continue
        if not ok:
            bad.append(f"{opts[0]}: documented default {default.strip()!r}, parser {action.default!r}")
    assert not bad, f"docs/{page}: " + "; ".join(bad)
