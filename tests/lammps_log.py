"""Reading a LAMMPS log, text dump and data file (LAMMPS' or numdp lmp's): one home for the tests and
for the fixture tools that read real LAMMPS' outputs (tools/make_*_fixtures.py, which import it from
tests/)."""
from __future__ import annotations

import numpy as np


def thermo_blocks(text: str) -> list[tuple[list[str], np.ndarray]]:
    """(column titles, rows (M, len(titles))) of each thermo block of the log `text`, as LAMMPS log
    parsers read them (lammps-logfile's rule): the line after 'Per MPI rank memory allocation'
    names the columns, the rows follow up to a line with 'Loop time'; lines of another word count
    (warnings, notices) are passed over."""
    lines, blocks, k = text.splitlines(), [], 0
    while k < len(lines):
        if lines[k].startswith("Per MPI rank memory allocation"):
            names = lines[k + 1].split()
            rows, k = [], k + 2
            while "Loop time" not in lines[k]:
                words = lines[k].split()
                if len(words) == len(names):
                    rows.append([float(w) for w in words])
                k += 1
            blocks.append((names, np.array(rows)))
        k += 1
    return blocks


def dump_frames(path) -> tuple[list[int], np.ndarray]:
    """(steps, x y z (frames, N, 3) in id order) of the LAMMPS text dump `path` (LAMMPS' or numdp
    lmp's; columns id type x y z first)."""
    lines = open(path).read().splitlines()
    steps, frames = [], []
    for i, ln in enumerate(lines):
        if ln == "ITEM: TIMESTEP":
            steps.append(int(lines[i + 1]))
            n = int(lines[i + 3])
            rows = sorted((int(w[0]), [float(x) for x in w[2:5]]) for w in (r.split() for r in lines[i + 9:i + 9 + n]))
            frames.append([x for _, x in rows])
    return steps, np.array(frames)


def data_file(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bounds (4, 3): xlo xhi / ylo yhi / zlo zhi / xy xz yz (zeros without tilts), x (n, 3) Å and
    image flags (n, 3) (zeros where the file has none)) of a LAMMPS data file's `Atoms # atomic`
    section, in atom-id order."""
    from pathlib import Path

    lines = Path(path).read_text().splitlines()
    bounds = np.zeros((4, 3))
    for ln in lines:
        w = ln.split()
        for k, key in enumerate(("xlo", "ylo", "zlo")):
            if w[2:3] == [key]:
                bounds[k, :2] = [float(w[0]), float(w[1])]
        if w[3:6] == ["xy", "xz", "yz"]:
            bounds[3] = [float(v) for v in w[:3]]
    k = next(i for i, ln in enumerate(lines) if ln.startswith("Atoms"))
    rows = []
    for ln in lines[k + 2:]:
        if not ln.strip():
            break
        r = [float(v) for v in ln.split()]
        rows.append(r + [0.0] * (8 - len(r)))
    rows = np.array(sorted(rows))
    return bounds, rows[:, 2:5], rows[:, 5:8]
