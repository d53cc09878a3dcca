"""`numdp freeze [-c CHECKPOINT] [-o OUTPUT]`: the model of a training checkpoint, like DeePMD-kit's
`dp freeze` (numdp.train.freeze).  `numdp train` writes its model at the end of a run; this
writes one from any checkpoint, an interrupted run's included.  An existing output is kept as
#NAME.N# (numdp.io.backup)."""
from __future__ import annotations

from pathlib import Path


def configure(parser):
    parser.add_argument("-c", "--checkpoint", default="model.ckpt.h5",
                        help="training checkpoint (default model.ckpt.h5, numdp train's save_ckpt)")
    parser.add_argument("-o", "--output", default="frozen_model.h5",
                        help="model file: .h5 numdp, .dp DeePMD-kit (default frozen_model.h5)")


def main(args) -> int:
    from ..errors import InputError
    from ..io.backup import Backups
    from ..io.model_file import output_kind, write_model
    from ..train.freeze import model_from_checkpoint

    out = Path(args.output)
    output_kind(out)
    if out.is_dir() or not out.parent.is_dir():
        raise InputError(f"-o {out}: cannot write a model file there (a directory, or its directory does not exist)")
    params = model_from_checkpoint(args.checkpoint)
    with Backups.move([out], "the existing") as backups:
        write_model(params, out)
    if backups.moved:
        print(backups.line())
    print(f"wrote {out} (step {params.info['step']} of {args.checkpoint})")
    return 0
