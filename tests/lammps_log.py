"""Reading a LAMMPS log (LAMMPS' log.lammps or numdp lmp's): one home for the tests and for the
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
