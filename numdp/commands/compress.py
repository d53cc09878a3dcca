"""`numdp compress MODEL [-d 0.01] [-o 3|5] [-s OUTPUT] [--data SYSTEM ...]`: tabulate the
embedding nets of a model; prints the largest table error against the nets."""
from __future__ import annotations

from pathlib import Path


def configure(parser):
    parser.add_argument("model", help="numdp (.h5) or DeePMD-kit (.dp, PyTorch .pt/.pth) model")
    parser.add_argument("-d", "--step", type=float, default=0.01, help="table step in x (default 0.01)")
    parser.add_argument("-o", "--order", type=int, default=3, choices=[3, 5],
                        help="polynomial order: 3 (cubic Hermite) or 5 (quintic Hermite)")
    parser.add_argument("-s", "--save", default="cmp_model",
                        help="output model: .h5 numdp format (added when no suffix is given), "
                             ".dp DeePMD-kit's compressed layout")
    parser.add_argument("--data", nargs="+",
                        help="training systems giving the range of s (default: stored in the model)")


def main(args) -> int:
    from ..errors import InputError
    from ..io.backup import Backups
    from ..io.model_file import output_kind, read_model, write_model
    from ..model.compress import compress, s_max_from_systems

    out_path = Path(args.save)
    if _is_number(args.save):   # `dp compress -s 0.01` is DeePMD-kit's table step
        raise InputError(f"-s {args.save}: -s names the output model file in numdp; the table step "
                         f"(DeePMD-kit's `dp compress -s`) is -d {args.save}")
    # the output is checked before the (long) tabulation
    if out_path.is_dir() or not out_path.name:
        raise InputError(f"-s {args.save}: is a directory; name the output model file "
                         f"(e.g. {out_path / 'cmp_model.h5'})")
    if out_path.suffix == "":
        out_path = out_path.with_suffix(".h5")
    output_kind(out_path)
    if not out_path.parent.is_dir():
        raise InputError(f"{out_path}: cannot write model file (directory {out_path.parent} does not exist)")
    params = read_model(Path(args.model))
    if params.descriptor.tables is not None:
        raise InputError(f"{args.model}: the model is already compressed")
    smax = s_max_from_systems(params, args.data) if args.data else None
    cparams, report = compress(params, dx=args.step, order=args.order, s_max=smax)
    print(f"# order {args.order}, step {args.step}, extrapolation to 10x the data range")
    print(f"# {'net':>3} {'lower':>8} {'upper':>8} {'xmax':>8} {'intervals':>9} "
          f"{'err grid':>9} {'err between':>11} {'slope err':>9} {'extrap err':>10}")
    worst = 0.0
    for r in report:
        e = r["errors"]
        between = e["between_grid"]
        worst = max(worst, between["value_fine"], e["on_grid"]["value_fine"])
        print(f"  {r['net']:3d} {r['lower']:8.3f} {r['upper']:8.3f} {r['xmax']:8.3f} {r['intervals']:9d} "
              f"{e['on_grid']['value_fine']:9.1e} {between['value_fine']:11.1e} "
              f"{between['slope_fine']:9.1e} {between['value_extrapolation']:10.1e}")
    print(f"# largest |table - net| in the data range: {worst:.2e}")
    # an earlier output is kept as #name.1#, never replaced silently, and back if the write fails
    with Backups.move([out_path], "the existing") as backups:
        write_model(cparams, out_path)
    if backups.moved:
        print(backups.line())
    print(f"wrote {out_path}")
    return 0


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
