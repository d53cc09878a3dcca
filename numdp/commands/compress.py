"""`numdp compress [MODEL | -i MODEL] [-o OUTPUT] [-s 0.01] [-e 10] [--order 3|5] [-t INPUT |
--data SYSTEM ...]`: tabulate the embedding nets of a model, with DeePMD-kit's `dp compress`
options (-i, -o, -s, -e, -f, -t); prints the largest table error against the nets.

Without a model, as `dp compress` (and DP-GEN's `dp_compress`), it compresses dp freeze's
default name into dp compress's: frozen_model.pb -> frozen_model_compressed.pb (.pth with
`numdp --pt compress` or DP_BACKEND=pytorch), the output holding numdp's HDF5 model as `numdp
freeze` writes under those names (numdp.commands.freeze)."""
from __future__ import annotations

import math
import sys
from pathlib import Path

from ..errors import InputError
from ..io.model_file import MODEL_HELP
from ..model.compress import EXTRAPOLATE
from .freeze import write_default_named


def configure(parser):
    parser.add_argument("model", nargs="?", help=MODEL_HELP)
    parser.add_argument("-i", "--input", help="the model, as dp compress -i (instead of MODEL)")
    parser.add_argument("-o", "--output",
                        help="output model: .h5 numdp format (added when no suffix is given), .dp "
                             "DeePMD-kit's compressed layout (default: MODEL_compressed.dp for a .dp "
                             "MODEL, else MODEL_compressed.h5)")
    parser.add_argument("-s", "-d", "--step", default="0.01", help="table step in x (default 0.01)")
    parser.add_argument("-e", "--extrapolate", type=float, default=EXTRAPOLATE,
                        help=f"the coarse table reaches EXTRAPOLATE x the data range (default "
                             f"{EXTRAPOLATE:g}; dp compress: 5)")
    parser.add_argument("-f", "--frequency", type=int, default=-1,
                        help="dp compress's overflow-check frequency: accepted; numdp always counts "
                             "pairs beyond the tables")
    parser.add_argument("--order", type=int, default=3, choices=[3, 5],
                        help="polynomial order: 3 (cubic Hermite, default) or 5 (quintic Hermite, DeePMD-kit's)")
    data = parser.add_mutually_exclusive_group()
    data.add_argument("-t", "--training-script", metavar="INPUT",
                      help="the training input (TOML or input.json) whose training systems give the "
                           "range of s (default: the range stored in the model)")
    data.add_argument("--data", nargs="+",
                      help="training systems giving the range of s (default: stored in the model)")


def _model_path(args) -> Path:
    """MODEL or -i MODEL; with neither, dp compress's default input, frozen_model.pb (.pth with
    DeePMD-kit's PyTorch backend chosen); `args.default_names` says which."""
    args.default_names = False
    if args.model is None and args.input is None:
        from .freeze import backend_suffix

        args.default_names = True
        return Path("frozen_model" + backend_suffix(args))   # the input: a missing one is named when read
    if args.model is not None and args.input is not None:
        raise InputError("give the model to compress once: as MODEL or as -i MODEL")
    return Path(args.model if args.model is not None else args.input)


def _output_path(model: Path, output: str | None) -> Path:
    """The output model file: -o (".h5" added when it has no suffix) or the default name."""
    if output is None:
        suffix = ".dp" if model.suffix.lower() == ".dp" else ".h5"
        return model.with_name(model.stem + "_compressed" + suffix)
    if output.strip() in ("3", "5"):   # numdp compress's former -o ORDER
        raise InputError(f"-o {output}: -o names the output model (as dp compress -o); the "
                         f"polynomial order is --order {output.strip()}")
    out = Path(output)
    if out.is_dir() or not out.name:
        raise InputError(f"-o {output}: is a directory; name the output model file "
                         f"(e.g. {out / 'compressed.h5'})")
    return out if out.suffix else out.with_suffix(".h5")


def _step(text: str) -> float:
    try:
        step = float(text)
    except ValueError:   # numdp compress's former -s OUTPUT
        raise InputError(f"-s {text}: -s is the table step (as dp compress -s); name the output "
                         f"model with -o {text}") from None
    if not (step > 0 and math.isfinite(step)):
        raise InputError(f"-s {text}: the table step must be > 0 and finite")
    return step


COARSE_TABLE_ERROR = 1e-3
"""Largest |table - net| (the embedding outputs are O(1)) above which `compress` warns: the
shipped water model's tables differ by 1e-11 at the default step 0.01 (order 3; 2e-15 at order
5), 1e-7 at 0.1, 1e-3 at 1, 5 at 100."""


def main(args) -> int:
    from ..io.backup import Backups
    from ..io.model_file import output_kind, read_model
    from ..model.compress import compress, s_max_from_params, s_max_from_systems

    model_path = _model_path(args)
    step = _step(args.step)
    if not (args.extrapolate > 1 and math.isfinite(args.extrapolate)):
        raise InputError(f"-e {args.extrapolate:g}: the extrapolation factor must be > 1 and finite")
    if args.default_names and args.output is None:   # dp compress's: frozen_model_compressed.pb
        from .freeze import default_model_path

        out_path = default_model_path("frozen_model_compressed", args)   # checked before the tabulation
    else:
        out_path = _output_path(model_path, args.output)
        # the output is checked before the (long) tabulation
        output_kind(out_path)
    if not out_path.parent.is_dir():
        raise InputError(f"{out_path}: cannot write model file (directory {out_path.parent} does not exist)")
    if args.training_script is not None:
        from ..train.config import input_systems

        data = input_systems(args.training_script)
    else:
        data = args.data
    params = read_model(model_path)
    if params.descriptor.tables is not None:
        raise InputError(f"{model_path}: the model is already compressed")
    smax = s_max_from_systems(params, data) if data else None
    try:
        if smax is None:
            smax = s_max_from_params(params)
        cparams, report = compress(params, dx=step, order=args.order, s_max=smax, extrapolate=args.extrapolate)
    except InputError as exc:   # the model's range of s, or tables too large: name the model
        raise InputError(f"{model_path}: {exc}") from None
    print(f"# order {args.order}, step {step:g}, extrapolation to {args.extrapolate:g}x the data range")
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
    if not worst <= COARSE_TABLE_ERROR:
        print(f"warning: the tables differ from the embedding nets by up to {worst:.2e} in the data range "
              f"(more than {COARSE_TABLE_ERROR:g}): -s {step:g} is too coarse for this model; dp compress's "
              "default is -s 0.01", file=sys.stderr)
    # an earlier output is kept as #name.1#, never replaced silently, and back if the write fails
    with Backups.move([out_path], "the existing") as backups:
        note = write_default_named(cparams, out_path)
    if backups.moved:
        print(backups.line())
    print(f"wrote {out_path}{' (' + note[2:] + ')' if note else ''}")
    return 0
