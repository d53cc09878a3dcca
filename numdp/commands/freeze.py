"""`numdp freeze [-c CHECKPOINT] [-o OUTPUT] [--ema]`: the model of a training checkpoint, like DeePMD-kit's
`dp freeze` (numdp.train.freeze).  `numdp train` writes its model at the end of a run; this
writes one from any checkpoint, an interrupted run's included.  An existing output is kept as
#NAME.N# (numdp.io.backup)."""
from __future__ import annotations

from pathlib import Path

DEFAULT_CHECKPOINTS = ("model.ckpt.h5", "model.ckpt")
"""Looked for in the working directory without -c: numdp's default save_ckpt, then the name
DeePMD-kit's inputs usually give (numdp writes its HDF5 checkpoint under that name then)."""


def configure(parser):
    parser.add_argument("-c", "--checkpoint", "--checkpoint-folder", default=None,
                        help="training checkpoint, or a folder holding one (default: the working "
                             "folder's model.ckpt.h5, numdp train's save_ckpt, or model.ckpt, the "
                             "name DeePMD-kit's inputs give it)")
    parser.add_argument("-o", "--output", default="frozen_model.h5",
                        help="model file: .h5 numdp, .dp DeePMD-kit (default frozen_model.h5)")
    parser.add_argument("--ema", action="store_true",
                        help="the moving average of the parameters (a run with [training] enable_ema) "
                             "instead of the parameters")


def main(args) -> int:
    from ..errors import InputError
    from ..io.backup import Backups
    from ..io.model_file import check_model_output, write_model
    from ..train.freeze import model_from_checkpoint

    out = check_model_output(args.output)
    checkpoint = args.checkpoint
    if checkpoint is None or Path(checkpoint).is_dir():   # a folder, as DeePMD-kit's -c
        folder = Path(checkpoint or ".")
        found = [folder / name for name in DEFAULT_CHECKPOINTS if (folder / name).is_file()]
        if not found:
            where = "here" if checkpoint is None else f"in {folder}"
            raise InputError(f"no {' or '.join(DEFAULT_CHECKPOINTS)} {where}: name the training "
                             f"checkpoint with -c ([training] save_ckpt of the run)")
        checkpoint = found[0]
    params = model_from_checkpoint(checkpoint, ema=args.ema)
    with Backups.move([out], "the existing") as backups:
        write_model(params, out)
    if backups.moved:
        print(backups.line())
    print(f"wrote {out} (step {params.info['step']} of {checkpoint})")
    return 0
