"""`numdp freeze [-c CHECKPOINT] [-o OUTPUT] [--ema]`: the model of a training checkpoint, like DeePMD-kit's
`dp freeze` (numdp.train.freeze).  `numdp train` writes its model at the end of a run; this
writes one from any checkpoint, an interrupted run's included.  DeePMD-kit's PyTorch
checkpoints (`model.ckpt-N.pt`, or a folder whose `checkpoint` file names one, as `dp train`
leaves them) give their model too, as `dp freeze` does; numdp's own checkpoint under dp's names
(model.ckpt.pt, model.ckpt.index: numdp.train.checkpoint.DeepmdNames) is read by its content.  An existing output is kept as #NAME.N#
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
BACKENDS = {"tensorflow": "tensorflow", "tf": "tensorflow", "pytorch": "pytorch", "pt": "pytorch",
            "dpmodel": "dpmodel", "dp": "dpmodel", "jax": "jax", "paddle": "paddle", "pd": "paddle"}
"""DeePMD-kit 3.2's backend names and aliases (dp -b, DP_BACKEND) -> the backend."""
BACKEND_SUFFIXES = {"tensorflow": ".pb", "pytorch": ".pth", "dpmodel": ".dp"}
"""The suffix dp freeze / dp compress give their default names (frozen_model,
frozen_model_compressed) per DeePMD-kit backend (dp's --tf / --pt / --dp, or DP_BACKEND)."""
DEEPMD_NAMES = (".pb", ".pth")
"""Suffixes of DeePMD-kit formats numdp does not write: under these default names numdp writes
its HDF5 model (read by content everywhere in numdp)."""


def chosen_backend(args) -> str:
    """The DeePMD-kit backend of the command line (`numdp --pt ...`: `args.backend`) or of
    DP_BACKEND, as dp chooses it (default tensorflow), by its name in BACKENDS; InputError for
    a DP_BACKEND dp does not know."""
    import os

    from ..errors import InputError

    given = getattr(args, "backend", None) or os.environ.get("DP_BACKEND") or "tensorflow"
    backend = BACKENDS.get(str(given).strip().lower())
    if backend is None:
        where = "DP_BACKEND" if getattr(args, "backend", None) is None else "the backend option"
        raise InputError(f"{where} {given}: not a DeePMD-kit backend ({', '.join(BACKENDS)})")
    return backend


def backend_suffix(args) -> str:
    """The suffix of dp's default model names for the backend of the command line or of
    DP_BACKEND (`chosen_backend`; default tensorflow: .pb)."""
    from ..errors import InputError

    backend = chosen_backend(args)
    suffix = BACKEND_SUFFIXES.get(backend)
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


def pointed_checkpoint(folder: Path) -> Path | None:
    """The checkpoint that `folder`'s `checkpoint` file names, as dp train writes it (PyTorch:
    the file's name, model.ckpt-N.pt; TensorFlow: `model_checkpoint_path: "PREFIX"`, its
    prefix), when that is a numdp checkpoint or a DeePMD-kit PyTorch one; None otherwise."""
    import re

    from ..train.checkpoint import POINTER, is_checkpoint, resolve_checkpoint

    try:
        text = (folder / POINTER).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    tf = re.search(r'^model_checkpoint_path:\s*"([^"]+)"', text, re.MULTILINE)
    named = resolve_checkpoint(folder / (tf.group(1) if tf else text)) if text else None
    if named is None or not named.is_file():
        return None
    return named if is_checkpoint(named) or named.suffix in TORCH_SUFFIXES else None


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
    from ..train.checkpoint import is_checkpoint, resolve_checkpoint
    from ..train.freeze import model_from_checkpoint

    if args.output is None:   # dp freeze's default name (DP-GEN links it as graph.00N.pb)
        out = default_model_path("frozen_model", args)
    else:
        out = check_model_output(args.output)
    checkpoint = args.checkpoint
    if checkpoint is None or Path(checkpoint).is_dir():   # a folder, as DeePMD-kit's -c
        folder = Path(checkpoint or ".")
        found = [folder / name for name in DEFAULT_CHECKPOINTS if (folder / name).is_file()]
        named = pointed_checkpoint(folder) if not found else None
        if named is not None:
            found = [named]
        if not found:
            where = "here" if checkpoint is None else f"in {folder}"
            raise InputError(f"no {' or '.join(DEFAULT_CHECKPOINTS)} {where}: name the training "
                             f"checkpoint with -c ([training] save_ckpt of the run)")
        checkpoint = found[0]
    else:   # a prefix, as dp freeze -c model.ckpt: model.ckpt.h5 (or .pt, .index)
        checkpoint = resolve_checkpoint(checkpoint)
    if not is_checkpoint(checkpoint) and Path(checkpoint).suffix in TORCH_SUFFIXES:
        # DeePMD-kit's: its model, as dp freeze (numdp's own under dp's name model.ckpt.pt: below)
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
