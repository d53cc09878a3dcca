"""The model-deviation text file of LAMMPS `pair_style deepmd` and `dp model-devi`.

Header (one line; `dp model-devi` first writes a `# <system>` line per system):

    #       step         max_devi_v         min_devi_v ... avg_devi_f[         devi_e][  atm_devi_f(N)]

"#" and "step" right-aligned in 12 characters, then each name right-aligned in 19.  Rows: the
step as %12d, then every value as " %18.6e" (the two programs' formats give identical text).
`devi_e` is written by `dp model-devi` and `numdp model-devi`, not by LAMMPS; with `atomic` the
per-atom force deviations follow (N columns, in atom order).  Comment lines start with "#", so
numpy.loadtxt reads the numbers.
"""
from __future__ import annotations

from typing import TextIO

from ..model.deviation import FrameDeviation

COLUMNS = ("max_devi_v", "min_devi_v", "avg_devi_v", "max_devi_f", "min_devi_f", "avg_devi_f")


def header_line(energy: bool, atomic: bool) -> str:
    """The column header line, without newline."""
    names = list(COLUMNS) + (["devi_e"] if energy else []) + (["atm_devi_f(N)"] if atomic else [])
    return "#" + f"{'step':>11}" + "".join(f"{n:>19}" for n in names)


def row_line(step: int, d: FrameDeviation, energy: bool, atomic: bool) -> str:
    """One data row, without newline."""
    values = [d.max_devi_v, d.min_devi_v, d.avg_devi_v, d.max_devi_f, d.min_devi_f, d.avg_devi_f]
    if energy:
        values.append(d.devi_e)
    if atomic:
        values.extend(d.atom_devi_f.tolist())
    return f"{int(step):12d}" + "".join(f" {v:18.6e}" for v in values)


def write_block(fp: TextIO, rows, energy: bool, atomic: bool, title: str | None = None) -> None:
    """Write an optional "# title" line, the header and (step, FrameDeviation) rows to `fp`."""
    if title is not None:
        fp.write(f"# {title}\n")
    fp.write(header_line(energy, atomic) + "\n")
    for step, d in rows:
        fp.write(row_line(step, d, energy, atomic) + "\n")
