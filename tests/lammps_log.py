"""Reading a LAMMPS log and text dump (LAMMPS' or numdp lmp's): one home for the tests and for the
fixture tools that read real LAMMPS' logs (tools/make_*_fixtures.py, which import it from tests/)."""
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
