"""The systems a data command reads, chosen as DeePMD-kit's `dp test` chooses them.

One of (a mutually exclusive group, `add_system_options`):

- `-s DIR ...`: DeePMD systems (npy folders, data.h5 or data.h5#/group), or folders searched
  for them (default: the current folder);
- `-f DATAFILE`: a text file naming one system (or folder) per line, blank lines skipped;
- `--train-data INPUT` / `--valid-data INPUT` (when the command offers them): the training or
  validation systems of a training input (numdp TOML or DeePMD-kit input.json), relative to
  the input file's directory (numdp.train.config.input_systems), named without `..` as dp
  test names them.

`system_paths(args)` returns the systems found, in order, each once.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError


SYSTEM_HELP = "DeePMD systems (npy folders, data.h5 or data.h5#/group), or folders searched for them"


def add_system_argument(parser, help: str = SYSTEM_HELP) -> None:
    """Add -s SYSTEM ... to `parser` (or a group): repeated -s add up; none given, `system_roots`
    gives DeePMD-kit's default, the current folder."""
    parser.add_argument("-s", "--system", nargs="+", action="extend", default=None,
                        help=f"{help} (default: the current folder, as DeePMD-kit's dp)")


def system_roots(args) -> list[str]:
    """The -s values of `add_system_argument`, or ["."] (a default list would be extended by -s)."""
    return args.system if args.system is not None else ["."]


def add_system_options(parser, inputs: bool = False) -> None:
    """Add -s / -f (and --train-data / --valid-data when `inputs`) to `parser`."""
    group = parser.add_mutually_exclusive_group()
    add_system_argument(group)
    group.add_argument("-f", "--datafile", help="a text file naming one system per line")
    if inputs:
        group.add_argument("--train-data", metavar="INPUT",
                           help="the training systems of a training input (TOML or input.json)")
        group.add_argument("--valid-data", metavar="INPUT",
                           help="the validation systems of a training input (TOML or input.json)")
    return group


def system_paths(args) -> list[Path]:
    """The systems named by the options of `add_system_options`, each once, in order."""
    from ..io.npy_system import find_systems

    train, valid = getattr(args, "train_data", None), getattr(args, "valid_data", None)
    if train is not None or valid is not None:
        from ..train.config import input_systems

        found = input_systems(train if train is not None else valid, validation=valid is not None)
        # dp test names them by the resolved path (input/../data -> data), in its output and
        # in the detail files' headers; ".." taken out by the text, symlinks kept
        found = [Path(os.path.normpath(p)) for p in found]
    else:
        if args.datafile is not None:
            try:
                lines = Path(args.datafile).read_text().splitlines()
            except OSError as exc:
                raise InputError(f"-f {args.datafile}: cannot read ({exc.strerror})") from None
            roots = [line.strip() for line in lines if line.strip()]
            if not roots:
                raise InputError(f"-f {args.datafile}: names no system")
        else:
            roots = system_roots(args)
        found = [p for root in roots for p in find_systems(Path(root))]
    return list(dict.fromkeys(found))
