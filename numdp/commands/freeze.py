"""`numdp freeze [-c CHECKPOINT] [-o OUTPUT] [--ema]`: the model of a training checkpoint, like DeePMD-kit's
`dp freeze` (numdp.train.freeze).  `numdp train` writes its model at the end of a run; this
writes one from any checkpoint, an interrupted run's included.  DeePMD-kit's PyTorch
checkpoints (`model.ckpt-N.pt`, or a folder whose `checkpoint` file names one, as `dp train`
leaves them) give their model too, as `dp freeze` does.  An existing output is kept as #NAME.N#
(numdp.io.backup).

Without -o the model is written under `dp freeze`'s default name, the one DP-GEN links into its
iteration as graph.00N.pb: frozen_model.pb, or frozen_model.pth with DeePMD-kit's PyTorch
backend chosen (`numdp --pt freeze`, or DP_BACKEND=pytorch, as dp).  numdp writes neither
TensorFlow nor TorchScript: the file holds numdp's HDF5 model, which every numdp command reads
by its content (`numdp lmp`, `test`, `model-devi`, `convert`); DeePMD-kit cannot read it."""
from __future__ import annotations

from pathlib import Path

DEFAULT_CHECKPOINTS = ("model.ckpt.h5", "model.ckpt")
"""Looked for in the working directory without -c: numdp's default save_ckpt, then the name
DeePMD-kit's inputs usually give (numdp writes its HDF5 checkpoint under that name then).
Else a folder's `checkpoint` file (DeePMD-kit's PyTorch backend: the name of its latest
checkpoint) is followed."""
TORCH_SUFFIXES = (".pt", ".pth")
"""DeePMD-kit's PyTorch checkpoints: read as models (numdp.io.pt_read)."""
BACKEND_SUFFIXES = {"tensorflow": ".pb", "tf": ".pb", "pytorch": ".pth", "pt": ".pth",
                    "dpmodel": ".dp", "dp": ".dp"}
"""The suffix dp freeze / dp compress give their default names (frozen_model,
frozen_model_compressed) per DeePMD-kit backend (dp's --tf / --pt / --dp, or DP_BACKEND)."""
DEEPMD_NAMES = (".pb", ".pth")
"""Suffixes of DeePMD-kit formats numdp does not write: under these default names numdp writes
its HDF5 model (read by content everywhere in numdp)."""


def backend_suffix(args) -> str:
    """The suffix of dp's default model names for the backend of the command line (`numdp --pt
    ...`: `args.backend`) or of DP_BACKEND, as dp chooses it (default tensorflow: .pb)."""
    import os

    from ..errors import InputError

    backend = getattr(args, "backend", None) or os.environ.get("DP_BACKEND") or "tensorflow"
    suffix = BACKEND_SUFFIXES.get(str(backend).strip().lower())
    if suffix is None:
        where = "DP_BACKEND" if getattr(args, "backend", None) is None else "the backend option"
        raise InputError(f"{where} {backend}: numdp writes models for DeePMD-kit's tensorflow (.pb name), "
                         f"pytorch (.pth name) or dpmodel (.dp) backends; name the output with -o")
    return suffix


def default_model_path(stem: str, args) -> Path:
    """dp's default model name `stem` + the backend's suffix (`backend_suffix`: frozen_model.pb,
    frozen_model_compressed.pth, ...); InputError when a directory has that name."""
    from ..errors import InputError

    path = Path(stem + backend_suffix(args))
    if path.is_dir():
        raise InputError(f"{path}: is a directory; name the output model with -o")
    return path


def write_default_named(params, out: Path) -> str:
    """Write `params` to `out`: by its suffix (numdp.io.model_file.write_model), or for a
    DeePMD-kit default name of a format numdp does not write (DEEPMD_NAMES) numdp's HDF5 model;
    returns what to add to the 'wrote' line."""
    from ..io.model_file import write_model

    if out.suffix.lower() in DEEPMD_NAMES:
        from ..io.h5_model import write_h5_model

        write_h5_model(params, out)
        return (f"; numdp's HDF5 model under dp's default name {out.name}: numdp reads it, "
                f"DeePMD-kit does not")
    write_model(params, out)
    return ""


def configure(parser):
    parser.add_argument("-c", "--checkpoint", "--checkpoint-folder", default=None,
                        help="training checkpoint, or a folder holding one (default: the working "
                             "folder's model.ckpt.h5, numdp train's save_ckpt, or model.ckpt, the "
                             "name DeePMD-kit's inputs give it)")
    parser.add_argument("-o", "--output", default=None,
                        help="model file: .h5 numdp, .dp DeePMD-kit (default: dp freeze's name, "
                             "frozen_model.pb, frozen_model.pth with --pt, holding numdp's HDF5 model)")
    parser.add_argument("--ema", action="store_true",
                        help="the moving average of the parameters (a run with [training] enable_ema) "
                             "instead of the parameters")


def main(args) -> int:
    from ..errors import InputError
    from ..io.backup import Backups
    from ..io.model_file import check_model_output
    from ..train.freeze import model_from_checkpoint

    if args.output is None:   # dp freeze's default name (DP-GEN links it as graph.00N.pb)
        out = default_model_path("frozen_model", args)
    else:
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
    else:   # a prefix, as dp freeze -c model.ckpt: model.ckpt.h5 (or .pt)
        from ..train.checkpoint import resolve_checkpoint

        checkpoint = resolve_checkpoint(checkpoint)
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
        note = write_default_named(params, out)
    if backups.moved:
        print(backups.line())
    print(f"wrote {out} ({what}{note})")
    return 0
