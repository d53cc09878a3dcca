"""`numdp plot FILE [-o OUT.png]`: a PNG figure of a learning curve (lcurve.out), a thermo log
(numdp run's log file) or a model deviation file (model_devi.out), told apart by the header line.

matplotlib is optional (`pip install 'numdp[plot]'`); without it the command says so in one line
and exits with status 2.  The PNG is written atomically; an existing one is kept as #NAME.1#
(numdp.io.backup), and given its name back if the figure cannot be written.  Figures: numdp.plots.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

from ..errors import InputError

NEEDS_MATPLOTLIB = "numdp plot needs matplotlib: pip install 'numdp[plot]'"


def configure(parser):
    parser.add_argument("file", help="lcurve.out, a numdp run log (log.txt) or model_devi.out")
    parser.add_argument("-o", "--output", help="PNG file to write (default: FILE with suffix .png)")
    parser.add_argument("--trust-lo", type=float, help="model deviation: lower trust level (eV/A)")
    parser.add_argument("--trust-hi", type=float, help="model deviation: upper trust level (eV/A)")
    parser.add_argument("--dpi", type=int, default=120, help="resolution (default 120)")


def output_path(file: Path, output: str | None) -> Path:
    """`output`, or `file` with its suffix replaced by .png (beside the input)."""
    if output:
        return Path(output)
    return file.with_suffix(".png") if file.suffix else file.with_name(file.name + ".png")


def main(args) -> int:
    from ..plots import Kind, MatplotlibMissing, figure_for, read_table

    for name in ("trust_lo", "trust_hi"):
        v = getattr(args, name)
        if v is not None and not (math.isfinite(v) and v >= 0):
            raise InputError(f"--{name.replace('_', '-')} {v:g}: must be a number >= 0")
    if args.trust_lo is not None and args.trust_hi is not None and args.trust_lo > args.trust_hi:
        raise InputError(f"--trust-lo {args.trust_lo:g} is above --trust-hi {args.trust_hi:g}")
    if not args.dpi > 0:
        raise InputError(f"--dpi {args.dpi}: must be > 0")
    file = Path(args.file)
    table = read_table(file)
    if table.kind is not Kind.MODEL_DEVI and (args.trust_lo is not None or args.trust_hi is not None):
        raise InputError(f"{file}: --trust-lo/--trust-hi apply to model deviation files, this is a "
                         f"{table.description}")
    out = output_path(file, args.output)
    if out.suffix.lower() != ".png":
        raise InputError(f"-o {out}: the figure is a PNG file; name it *.png")
    try:
        fig = figure_for(table, args.trust_lo, args.trust_hi)
    except MatplotlibMissing:
        print(NEEDS_MATPLOTLIB, file=sys.stderr)
        return 2
    from ..io.atomic import atomic_path
    from ..io.backup import Backups

    # an earlier figure is kept as #NAME.1#, and gets its name back if the figure cannot be written
    with Backups.move([out], "the existing") as backups, atomic_path(out, "figure") as tmp:
        try:
            fig.savefig(tmp, format="png", dpi=args.dpi)
        except OSError as exc:
            raise InputError(f"{out}: cannot write ({exc.strerror or exc})") from None
    if backups.moved:
        print(backups.line())
    print(f"{table.description}: {len(table.data)} rows of {file} -> {out}")
    return 0
