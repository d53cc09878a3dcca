"""Mutation fuzz of numdp's user inputs: every mistake should give one line and exit status 2.

Usage::

    python tools/fuzz_inputs.py [--run] [--cli] [--out report.json] [--timeout 60] [--limit N]

--run: every `numdp run` TOML input (inputs/*/md.toml, and each ```toml snippet of docs/*.md whose
tables all belong to a run input, completed as tests/test_docs.py completes them) is taken as a
base; [md] / [minimize] steps is set to 1 so that each accepted input makes one step.  For every
key (also inside inline tables and lists) the mutations are: wrong type (a string for a number, a
number for a string, a table for a list, a number for a table), zero, negative, NaN, +-inf, 1e300,
an empty string, a list one item shorter and one longer, the key removed, an unknown extra key in
each table, and each table given twice.
--cli: every sub-command's file arguments replaced by wrong kinds of file (a directory, an empty
file, a truncated model, random bytes named like the file, a missing file, a FIFO) and its number
options by out-of-range values (0, -1, nan, 1e300, a word).

Each case runs `numdp ...` (numdp.cli.main) in a worker process, in a fresh folder that holds the
outputs of a previous run.  Outcomes:

    error2     exit status 2 with one `numdp CMD: error: ...` line (or argparse's usage + error)
    accepted   exit status 0
    traceback  an exception escaped numdp.cli.main, or "Traceback" on stderr
    hang       no answer within --timeout seconds (the worker is killed and restarted)
    other      any other status, or status 2 with more than one line
    destroyed  (a flag) an output of the previous run is gone, under its name and as a backup

An accepted mutation of a class that can never be meaningful (NaN, inf, wrong type, empty string,
unknown key, duplicate table) is listed as `suspicious`; accepted zeros, negatives and 1e300 are
listed for a person to judge.  The summary gives counts by outcome; --out writes every case.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import math
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WATER = ROOT / "inputs" / "water"
CU = ROOT / "inputs" / "cu"
ALWAYS_WRONG = ("wrong-type", "nan", "inf", "-inf", "empty-string", "unknown-key", "duplicate-table",
                "table-for-list", "number-for-table", "list-for-scalar")

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib

from numdp.validate import toml_lines, toml_literal


def toml_text(data: dict) -> str:
    """A run input of the parsed tables `data` (numdp.validate.toml_lines)."""
    return "\n".join(toml_lines(data)) + "\n"


# -- bases -----------------------------------------------------------------------------------------

RUN_BASE = {"model": {"file": "model.h5"}, "system": {"file": "start.xyz"},
            "md": {"timestep": 0.0005, "steps": 10}}


def run_bases() -> list[tuple[str, Path, dict]]:
    """(label, folder of its files, parsed input) of every run input to mutate."""
    from numdp.config import TABLES

    bases = []
    for folder in (WATER, CU):
        bases.append((f"inputs/{folder.name}/md.toml", folder, tomllib.loads((folder / "md.toml").read_text())))
    for page in sorted((ROOT / "docs").glob("*.md")):
        for k, m in enumerate(re.finditer(r"```toml\n(.*?)```", page.read_text(), re.S)):
            data = tomllib.loads(m.group(1))
            if not data or not set(data) <= set(TABLES):
                continue
            base = {n: t for n, t in RUN_BASE.items() if not (n == "md" and "minimize" in data)}
            merged = {n: dict(base.get(n, {}), **data.get(n, {})) for n in list(base) + list(data)}
            bases.append((f"docs/{page.name}#{k}", WATER, merged))
    for _, _, data in bases:
        table = data.get("minimize") or data.get("md")
        table["steps"] = 1
        data.setdefault("output", {}).setdefault("progress", "none")
        if "grid" in data.get("parallel", {}):   # one process runs the fuzz
            data["parallel"]["grid"] = [1, 1, 1]
    return bases


# -- mutations -------------------------------------------------------------------------------------

def scalar_mutations(v):
    """(class, value) replacements of the scalar `v`."""
    out = []
    if isinstance(v, bool):
        out += [("wrong-type", "yes"), ("wrong-type", 1)]
    elif isinstance(v, (int, float)):
        out += [("wrong-type", "1.0"), ("zero", 0 if isinstance(v, int) else 0.0),
                ("negative", -v if v else -1), ("nan", math.nan), ("inf", math.inf), ("-inf", -math.inf),
                ("huge", 1e300), ("empty-string", "")]
        if isinstance(v, int):
            out += [("wrong-type", float(v) + 0.5), ("huge", 2 ** 62)]
    elif isinstance(v, str):
        out += [("wrong-type", 1), ("empty-string", ""), ("wrong-type", "nonsense")]
    out += [("table-for-list", {"a": 1}) if isinstance(v, list) else ("list-for-scalar", [v, v])]
    return out


def mutations(data: dict):
    """(description, class, mutated data) for every key of `data`."""
    for name, table in data.items():
        yield f"[{name}] unknown extra key", "unknown-key", _with(data, (name, "bogus_key"), 1)
        yield f"[{name}] table given twice", "duplicate-table", (data, name)
        yield f"[{name}] as a number", "number-for-table", _with(data, (name,), 1)
        yield from _key_mutations(data, (name,), table)


def _key_mutations(data, path, value):
    where = f"[{path[0]}] " + ".".join(str(p) for p in path[1:])
    if isinstance(value, dict):
        for key, v in value.items():
            sub = path + (key,)
            label = f"[{path[0]}] " + ".".join(str(p) for p in sub[1:])
            yield f"{label} removed", "missing", _without(data, sub)
            if len(path) > 1:
                yield f"{label[:label.rfind('.')] if '.' in label else label} unknown extra key", "unknown-key", \
                    _with(data, path + ("bogus_key",), 1)
                if isinstance(v, (int, float, str, bool)):
                    yield f"{label} as a table", "wrong-type", _with(data, sub, {"a": 1})
            yield from _key_mutations(data, sub, v)
        if len(path) > 1:
            yield f"{where} as a number", "number-for-table", _with(data, path, 1)
        return
    if isinstance(value, list):
        yield f"{where} = {{}} (table for list)", "table-for-list", _with(data, path, {"a": 1})
        yield f"{where} = [] (empty)", "wrong-length", _with(data, path, [])
        if value:
            yield f"{where} one item short", "wrong-length", _with(data, path, value[:-1])
            yield f"{where} one item more", "wrong-length", _with(data, path, value + [value[-1]])
            for cls, x in scalar_mutations(value[0]):
                if cls not in ("list-for-scalar",):
                    yield f"{where}[0] = {toml_literal(x)}", cls, _with(data, path + (0,), x)
        yield f"{where} as a string", "wrong-type", _with(data, path, "x")
        return
    for cls, x in scalar_mutations(value):
        if cls == "huge" and path[-1] in ("steps", "every", "thermo_every", "checkpoint_every", "seed"):
            continue   # 2^62 steps is a run that long, as asked (and 2^62 between reports: none but the last)
        yield f"{where} = {toml_literal(x)}", cls, _with(data, path, x)


def _with(data, path, value):
    d = copy.deepcopy(data)
    node = d
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return d


def _without(data, path):
    d = copy.deepcopy(data)
    node = d
    for p in path[:-1]:
        node = node[p]
    del node[path[-1]]
    return d


# -- the worker: runs numdp.cli.main in-process, one case a line -------------------------------------

def worker() -> None:
    """Read JSON cases {argv, dir} on stdin; answer {rc, exc} per line on the original stdout."""
    from numdp.cli import main

    answer = os.fdopen(os.dup(1), "w")
    for line in sys.stdin:
        case = json.loads(line)
        os.chdir(case["dir"])
        err = open("fuzz.stderr", "w")
        out = open(os.devnull, "w")
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        rc, exc = None, None
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                rc = main(case["argv"])
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
        except BaseException:  # noqa: BLE001 - the point
            exc = traceback.format_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            err.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            err.close()
            out.close()
        answer.write(json.dumps({"rc": rc, "exc": exc}) + "\n")
        answer.flush()


class Runner:
    """A worker process; `run(argv, folder)` -> (rc or None, exception text or None, hung)."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.proc = None

    def _start(self):
        env = dict(os.environ, NUMDP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)

    def run(self, argv, folder, timeout=None):
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.proc.stdin.write(json.dumps({"argv": argv, "dir": str(folder)}) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout or self.timeout)
        if not ready:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            return None, None, True
        line = self.proc.stdout.readline()
        if not line:   # the worker died (a crash in native code)
            self.proc = None
            return -1, "worker died", False
        answer = json.loads(line)
        return answer["rc"], answer["exc"], False

    def close(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


def classify(rc, exc, hung, stderr: str, command: str) -> str:
    if hung:
        return "hang"
    if exc is not None or "Traceback" in stderr:
        return "traceback"
    if rc == 0:
        return "accepted"
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    if rc == 2:
        errors = [ln for ln in lines if ln.startswith(f"numdp {command}: error")]
        if len(errors) == 1 and (len(lines) == 1 or lines[0].startswith("usage:")):
            return "error2"
    return "other"


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()
            if p.is_file() and not p.is_symlink() and p.name != "fuzz.stderr"}


# -- the run fuzz ----------------------------------------------------------------------------------

def prepare_previous(base_dir: Path, data: dict, work: Path) -> Path | None:
    """A folder with the base's files (links) and its input, after a run of it: the previous outputs."""
    work.mkdir(parents=True)
    for p in base_dir.iterdir():
        if p.is_file() and p.suffix not in (".toml", ".log") and not p.name.startswith(("traj", "checkpoint", "log")):
            (work / p.name).symlink_to(p)
    for k in range(4):   # the docs' ensembles name m0.h5 ... m3.h5
        (work / f"m{k}.h5").symlink_to(base_dir / "model.h5")
    (work / "md.toml").write_text(toml_text(data))
    return work


def run_fuzz(runner: Runner, scratch: Path, limit: int | None, results: list) -> None:
    bases = run_bases()
    for label, base_dir, data in bases:
        prev = prepare_previous(base_dir, data, scratch / f"base{len(results)}_{abs(hash(label))}")
        rc, exc, hung = runner.run(["run", "md.toml"], prev)
        stderr = (prev / "fuzz.stderr").read_text()
        if classify(rc, exc, hung, stderr, "run") != "accepted":
            results.append({"base": label, "case": "(the base itself)", "class": "base",
                            "outcome": classify(rc, exc, hung, stderr, "run"),
                            "stderr": stderr[-2000:], "exc": exc})
            print(f"base {label}: does not run ({stderr.strip().splitlines()[-1:]}); skipped", flush=True)
            continue
        before = digests(prev)
        seen = set()
        cases = list(mutations(data))[:limit]
        print(f"base {label}: {len(cases)} mutations", flush=True)
        for desc, cls, mutated in cases:
            if isinstance(mutated, tuple):   # a table given twice
                d, name = mutated
                text = toml_text(d) + f"[{name}]\n"
            else:
                text = toml_text(mutated)
            if text in seen:
                continue
            seen.add(text)
            folder = scratch / f"c{len(results)}"
            shutil.copytree(prev, folder, symlinks=True)
            (folder / "md.toml").write_text(text)
            t0 = time.time()
            rc, exc, hung = runner.run(["run", "md.toml"], folder)
            stderr = (folder / "fuzz.stderr").read_text() if (folder / "fuzz.stderr").exists() else ""
            outcome = classify(rc, exc, hung, stderr, "run")
            after = set(digests(folder).values())
            lost = [n for n, h in before.items() if n != "md.toml" and h not in after]
            results.append({"base": label, "case": desc, "class": cls, "outcome": outcome, "rc": rc,
                            "destroyed": lost, "seconds": round(time.time() - t0, 2),
                            "stderr": stderr[-1500:], "exc": exc[-3000:] if exc else None})
            shutil.rmtree(folder, ignore_errors=True)


# -- the CLI fuzz ----------------------------------------------------------------------------------

def bad_files(scratch: Path, like: str) -> list[tuple[str, str]]:
    """(description, path) of wrong kinds of file standing where `like` (a file name) is expected."""
    suffix = Path(like).suffix or ".bin"
    d = scratch / "badfiles"
    if not d.exists():
        d.mkdir()
        (d / "a_dir").mkdir()
        os.mkfifo(d / "a_fifo")
    rng = bytes((i * 7919 + 13) % 256 for i in range(4096))
    empty = d / f"empty{suffix}"
    empty.write_bytes(b"")
    rand = d / f"random{suffix}"
    rand.write_bytes(rng)
    out = [("a directory", str(d / "a_dir")), ("an empty file", str(empty)), ("random bytes", str(rand)),
           ("a missing file", str(d / f"missing{suffix}"))]
    source = WATER / "model.h5"
    if suffix in (".h5", ".dp", ".pb", ".pth", ".pt", ".h5md", ".npy", ".json"):
        src = {".h5": source, ".dp": None, ".h5md": None, ".npy": WATER / "data" / "data_1" / "set.000" / "coord.npy"}.get(suffix)
        if src is not None:
            cut = d / f"truncated{suffix}"
            cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
            out.append(("a truncated file", str(cut)))
    out.append(("a FIFO", str(d / "a_fifo")))   # (see cli_fuzz)
    return out


def cli_cases(scratch: Path):
    """(command, base argv, {argument index: kind}) of every sub-command worth fuzzing."""
    m = str(WATER / "model.h5")
    s = str(WATER / "data" / "data_1")
    cases = [
        ("show", ["show", m], {1: "file"}),
        ("convert", ["convert", m, "out.dp"], {1: "file"}),
        ("test", ["test", "-m", m, "-s", s, "-n", "1"], {2: "file", 4: "file", 6: "int"}),
        ("model-devi", ["model-devi", "-m", m, m, "-s", s, "-o", "md.out", "-f", "1"], {2: "file", 5: "file", 9: "int"}),
        ("eval-desc", ["eval-desc", "-m", m, "-s", s, "-o", "desc"], {2: "file", 4: "file"}),
        ("neighbor-stat", ["neighbor-stat", "-s", s, "-r", "6.0"], {2: "file", 4: "float"}),
        ("change-bias", ["change-bias", m, "-s", s, "-o", "out.h5", "-n", "1"], {1: "file", 3: "file", 7: "int"}),
        ("plot", ["plot", "log.txt", "-o", "p.png"], {1: "file"}),
        ("run", ["run", "md.toml", "--restart", "checkpoint.h5"], {1: "file", 3: "file"}),
        ("freeze", ["freeze", "-c", "checkpoint.h5", "-o", "f.h5"], {2: "file"}),
        ("compress", ["compress", m, "-o", "c.h5", "-s", "0.01"], {1: "file", 5: "float"}),
        ("train", ["train", "train.toml"], {1: "file"}),
        ("lmp", ["lmp", "-i", "in.lmp"], {2: "file"}),
    ]
    return cases


BAD_NUMBERS = {"int": ["0", "-1", "x", "1e300", "99999999999999999999"],
               "float": ["0", "-1", "nan", "inf", "1e300", "x"]}


def cli_fuzz(runner: Runner, scratch: Path, results: list) -> None:
    prev = scratch / "cli_prev"
    prev.mkdir()
    for p in ("model.h5", "start.xyz"):
        (prev / p).symlink_to(WATER / p)
    bases = run_bases()
    data = copy.deepcopy(bases[0][2])
    (prev / "md.toml").write_text(toml_text(data))
    runner.run(["run", "md.toml"], prev)   # the previous run's outputs: checkpoint.h5, log.txt, traj.h5md
    (prev / "train.toml").write_text((WATER / "train.toml").read_text())
    before = digests(prev)
    for command, argv, slots in cli_cases(scratch):
        for index, kind in slots.items():
            if kind == "file":
                subs = bad_files(scratch, argv[index])
            else:
                subs = [(f"{v}", v) for v in BAD_NUMBERS[kind]]
            for desc, value in subs:
                folder = scratch / f"c{len(results)}"
                shutil.copytree(prev, folder, symlinks=True)
                mutated = list(argv)
                mutated[index] = value
                t0 = time.time()
                # reading a FIFO with no writer blocks, as `cat` does (a pipe is a fine input,
                # `numdp run <(...)`): such a hang is the expected one, so it is waited on briefly
                rc, exc, hung = runner.run(mutated, folder, 5 if desc == "a FIFO" else None)
                stderr = (folder / "fuzz.stderr").read_text() if (folder / "fuzz.stderr").exists() else ""
                outcome = classify(rc, exc, hung, stderr, command)
                after = set(digests(folder).values())
                lost = [n for n, h in before.items() if h not in after]
                results.append({"base": f"numdp {command}", "case": f"{argv[index - 1] if index > 1 else 'arg'} "
                                f"{argv[index]} -> {desc}", "class": "file" if kind == "file" else "number",
                                "outcome": outcome, "rc": rc, "destroyed": lost,
                                "seconds": round(time.time() - t0, 2),
                                "stderr": stderr[-1500:], "exc": exc[-3000:] if exc else None})
                shutil.rmtree(folder, ignore_errors=True)


# -- report ----------------------------------------------------------------------------------------

def summary(results: list) -> None:
    from collections import Counter

    for part in ("run", "cli"):
        rs = [r for r in results if (r["base"].startswith("numdp ")) == (part == "cli") and r["class"] != "base"]
        print(f"\n== {part}: {len(rs)} cases: " + ", ".join(f"{k} {v}" for k, v in Counter(r["outcome"] for r in rs).most_common())
              + f"; destroyed outputs {sum(bool(r.get('destroyed')) for r in rs)}")
    for r in results:
        bad = r["outcome"] in ("traceback", "hang", "other") or r.get("destroyed") \
            or (r["outcome"] == "accepted" and r["class"] in ALWAYS_WRONG)
        if bad:
            tail = (r["exc"] or r["stderr"] or "").strip().splitlines()[-1:] 
            print(f"  {r['outcome']:9} {r['base']}: {r['case']} [{r['class']}] {'DESTROYED ' + str(r['destroyed']) if r.get('destroyed') else ''} {tail}")
    print("\n-- accepted zero / negative / huge / missing / wrong-length (judge):")
    for r in results:
        if r["outcome"] == "accepted" and r["class"] not in ALWAYS_WRONG:
            print(f"  {r['base']}: {r['case']} [{r['class']}]")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--run", action="store_true", help="fuzz the numdp run inputs")
    ap.add_argument("--cli", action="store_true", help="fuzz the command-line file and number arguments")
    ap.add_argument("--out", default=None, help="write every case's outcome to this JSON file")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds before a case counts as a hang")
    ap.add_argument("--limit", type=int, default=None, help="at most this many mutations per base")
    args = ap.parse_args(argv)
    if args.worker:
        worker()
        return 0
    if not (args.run or args.cli):
        args.run = args.cli = True
    results: list = []
    runner = Runner(args.timeout)
    scratch = Path(tempfile.mkdtemp(prefix="numdp_fuzz_"))
    t0 = time.time()
    try:
        if args.run:
            run_fuzz(runner, scratch, args.limit, results)
        if args.cli:
            cli_fuzz(runner, scratch, results)
    finally:
        runner.close()
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=1))
        shutil.rmtree(scratch, ignore_errors=True)
    summary(results)
    print(f"\n{time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
