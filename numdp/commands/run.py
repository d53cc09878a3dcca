"""`numdp run input.toml [--restart checkpoint.h5]`: molecular dynamics with a Deep Potential model.

The input file is described in the README ("numdp run").  A restart continues the run recorded in
the checkpoint up to [md] steps, appending to the trajectory and the log.
"""
from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="TOML input file ([model], [system], [md], [neighbor], [output], [safety])")
    parser.add_argument("--restart", metavar="CHECKPOINT", default=None,
                        help="continue from this numdp checkpoint (overrides [system]); runs up to [md] steps")


def main(args) -> int:
    from ..config import load_run_settings
    from ..errors import InputError
    from ..io.h5md import is_checkpoint
    from ..md.setup import run_md
    from pathlib import Path

    settings = load_run_settings(args.input)
    restart = None
    if args.restart is not None:
        restart = Path(args.restart)
        if not restart.is_file():
            raise InputError(f"--restart {restart}: file not found")
        if not is_checkpoint(restart):
            raise InputError(f"--restart {restart}: not a numdp checkpoint (no /numdp/state group)")
    run_md(settings, restart=restart)
    return 0
