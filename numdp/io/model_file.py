"""Model files: read either format by its content, write the format the suffix names.

- numdp model file (`.h5` / `.hdf5`): HDF5 with root attribute `format = "numdp-model"`
  (numdp.io.h5_model).
- DeePMD-kit native model (`.dp`): HDF5 with a root attribute `json` (numdp.io.dp_read /
  numdp.io.dp_write).
- DeePMD-kit PyTorch model, read only: a training checkpoint (`.pt`) or frozen TorchScript model
  (`.pth`), both PyTorch zip archives (numdp.io.pt_read, read without torch).
- DeePMD-kit TensorFlow frozen model (`.pb`), read only: a serialised GraphDef (numdp.io.pb_read,
  read without TensorFlow).

Every problem raises numdp.errors.InputError with a one-line message naming the file.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import h5py

from ..errors import InputError, one_line, require_file
from ..model.params import ModelParams
from .pb_read import looks_like_graph
from .torch_archive import is_torch_archive

KIND_DP, KIND_NUMDP, KIND_PT, KIND_PB = "dp", "numdp", "pt", "pb"
DESCRIPTIONS = {KIND_DP: "DeePMD-kit .dp", KIND_NUMDP: "numdp HDF5 model",
                KIND_PT: "DeePMD-kit PyTorch model", KIND_PB: "DeePMD-kit TensorFlow model"}
SUFFIXES = {".dp": KIND_DP, ".h5": KIND_NUMDP, ".hdf5": KIND_NUMDP}
MODEL_HELP = "numdp (.h5) or DeePMD-kit (.dp, TensorFlow .pb, PyTorch .pt/.pth) model"
"""The command-line help of an option naming a model file to read."""
# DeePMD-kit formats numdp does not read (JAX / TensorFlow saved models)
_OTHER_DEEPMD = (".savedmodel",)


def _not_a_model(path: Path, why: str) -> InputError:
    msg = f"{path}: not a numdp or DeePMD-kit model ({why})"
    if path.suffix.lower() in _OTHER_DEEPMD:
        msg += f"; convert a DeePMD-kit {path.suffix} model first with `dp convert-backend {path.name} model.dp`"
    return InputError(msg)


def model_kind(path) -> str:
    """KIND_DP, KIND_NUMDP, KIND_PT or KIND_PB, decided from the file's content (not its name)."""
    path = Path(path)
    require_file(path, "model file")
    try:
        if not h5py.is_hdf5(path):
            if is_torch_archive(path):
                return KIND_PT
            if zipfile.is_zipfile(path):
                raise _not_a_model(path, "a zip file but not a PyTorch archive: no <folder>/data.pkl member")
            with open(path, "rb") as fh:
                head = fh.read(16)
            if head[:4] == b"PK\x03\x04":
                raise InputError(f"{path}: damaged zip archive (its end, the central directory, "
                                 f"is missing or unreadable: a truncated copy?)")
            if looks_like_graph(head):
                return KIND_PB
            raise _not_a_model(path, "neither HDF5, a PyTorch zip archive nor a TensorFlow graph")
        with h5py.File(path, "r") as h5:
            attrs = set(h5.attrs.keys())
    except OSError as exc:
        raise InputError(f"{path}: cannot read as HDF5 ({one_line(exc)})") from None
    if "json" in attrs:
        return KIND_DP
    if "format" in attrs:
        return KIND_NUMDP
    raise _not_a_model(path, "HDF5 file with neither a 'json' nor a 'format' root attribute")


def read_model(path) -> ModelParams:
    """Read a numdp (.h5), DeePMD-kit (.dp), DeePMD-kit PyTorch (.pt/.pth) or TensorFlow (.pb)
    model file, whatever its name."""
    path = Path(path)
    kind = model_kind(path)
    if kind == KIND_DP:
        from .dp_read import read_dp

        return read_dp(path)
    if kind == KIND_PT:
        from .pt_read import read_pt

        return read_pt(path)
    if kind == KIND_PB:
        from .pb_read import read_pb

        return read_pb(path)
    from .h5_model import read_h5_model

    return read_h5_model(path)


def output_kind(path) -> str:
    """The format write_model would choose for `path` (KIND_DP or KIND_NUMDP), from its suffix."""
    path = Path(path)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        got = f"suffix '{path.suffix}'" if path.suffix else "a name without suffix"
        dp_name = ("; .pb and .pth only under dp freeze's and dp compress's default names, which numdp freeze "
                   "and numdp compress given no names write (numdp's HDF5 model inside, for DP-GEN)"
                   if path.suffix.lower() in (".pb", ".pth") else "")
        raise InputError(f"{path}: cannot choose a model format for {got} "
                         f"(numdp writes .dp for DeePMD-kit, .h5 or .hdf5 for numdp{dp_name})")
    return kind


def check_model_output(path, option: str = "-o") -> Path:
    """`path` as a model file to write (before any work is done): a format its suffix names
    (`output_kind`), not a directory, in a directory that exists; else InputError naming
    `option`, the command-line option that gave it."""
    path = Path(path)
    output_kind(path)
    if path.is_dir() or not path.parent.is_dir():
        raise InputError(f"{option} {path}: cannot write a model file there (a directory, or its "
                         f"directory does not exist)")
    return path


def write_model(params: ModelParams, path) -> str:
    """Write `params` in the format named by the suffix of `path`; return that kind."""
    path = Path(path)
    kind = output_kind(path)
    if kind == KIND_DP:
        from .dp_write import write_dp

        write_dp(params, path)
    else:
        from .h5_model import write_h5_model

        write_h5_model(params, path)
    return kind
