"""`numdp freeze [-c CHECKPOINT] [-o OUTPUT] [--ema]`: the model of a training checkpoint, like DeePMD-kit's
`dp freeze` (numdp.train.freeze).  `numdp train` writes its model at the end of a run; this
writes one from any checkpoint, an interrupted run's included.  DeePMD-kit's PyTorch
checkpoints (`model.ckpt-N.pt`, or a folder whose `checkpoint` file names one, as `dp train`
leaves them) give their model too, as `dp freeze` does.  An existing output is kept as #NAME.N#
(numdp.io.backup)."""
from __future__ import annotations

from pathlib import Path

DEFAULT_CHECKPOINTS = ("model.ckpt.h5", "model.ckpt")
"""Looked for in the working directory without -c: numdp's default save_ckpt, then the name
DeePMD-kit's inputs usually give (numdp writes its HDF5 checkpoint under that name then).
Else a folder's `checkpoint` file (DeePMD-kit's PyTorch backend: the name of its latest
checkpoint) is followed."""
TORCH_SUFFIXES = (".pt", ".pth")
"""DeePMD-kit's PyTorch checkpoints: read as models (numdp.io.pt_read)."""


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
        if not found and (folder / "checkpoint").is_file():   # dp train's (PyTorch backend)
            named = folder / (folder / "checkpoint").read_text().strip()
            if named.suffix in TORCH_SUFFIXES and named.is_file():
                found = [named]
        if not found:
            where = "here" if checkpoint is None else f"in {folder}"
            raise InputError(f"no {' or '.join(DEFAULT_CHECKPOINTS)} {where}: name the training "
                             f"checkpoint with -c ([training] save_ckpt of the run)")
        checkpoint = found[0]
    if Path(checkpoint).suffix in TORCH_SUFFIXES:   # DeePMD-kit's: its model, as dp freeze
        from ..io.model_file import read_model

        if args.ema:
            raise InputError(f"{checkpoint}: --ema takes a numdp checkpoint's moving average; "
                             f"a DeePMD-kit checkpoint holds none")
        params = read_model(Path(checkpoint))
        params.info = {**(params.info or {}), "frozen_from": Path(checkpoint).name}
        what = f"the model of DeePMD-kit's checkpoint {checkpoint}"
    else:
        params = model_from_checkpoint(checkpoint, ema=args.ema)
        what = f"step {params.info['step']} of {checkpoint}"
    with Backups.move([out], "the existing") as backups:
        write_model(params, out)
    if backups.moved:
        print(backups.line())
    print(f"wrote {out} ({what})")
    return 0
