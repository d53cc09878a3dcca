"""`numdp eval-desc -m MODEL [-s DIR ... | -f DATAFILE] [-o DIR] [--dtype native|fp32|fp64]`:
the descriptor of every frame of DeePMD systems, like DeePMD-kit's `dp eval-desc`.

Each system's descriptors are saved as ``DIR/<system name>.npy``, a (nframes, natoms, M*M<)
array (reference §4: M the last embedding width, M< axis_neuron) in the atoms' order of the
system, all its sets in order.  The system name is the last part of its path (of the group for
``data.h5#/group``; ``STEM_GROUP`` for a group of an LMDB dataset); two systems of one name are refused before anything is evaluated (dp
eval-desc would overwrite the first).  Each file is written atomically, frame by frame (one
frame's rows in memory at a time); an existing file is kept as #NAME.N# (numdp.io.backup).
A virtual atom (mixed-type padding, type -1) has a row of zeros, and the others are those of
the frame without it (dp eval-desc 3.2 gives it the row of an isolated atom instead).
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError
from ..infer import DESCRIPTOR_DTYPES
from ..io.model_file import MODEL_HELP
from .options import add_evaluation_options
from .systems import add_system_options, system_paths


def configure(parser):
    parser.add_argument("-m", "--model", required=True,
                        help=MODEL_HELP)
    add_system_options(parser)
    parser.add_argument("-o", "--output", default="desc",
                        help="output folder: one NAME.npy per system (default: desc)")
    parser.add_argument("--dtype", default="native", choices=list(DESCRIPTOR_DTYPES),
                        help="dtype of the saved arrays: native (the model's, float64), fp32 or fp64")
    add_evaluation_options(parser)


def system_name(path: Path) -> str:
    """The name a system's descriptor file takes: the last part of its folder, or of its group
    in an HDF5 file (``data.h5#/a/b`` → ``b``; the file's stem for its root group), or the
    dataset's stem and the group of an LMDB dataset (``w.lmdb#nloc=192`` → ``w_nloc=192``);
    the text split by numdp.io.location (a folder ``sys#1`` → ``sys#1``, as dp eval-desc)."""
    from ..io.lmdb_system import is_lmdb
    from ..io.location import DataLocation

    loc = DataLocation.parse(path)
    if loc.location is None:
        return Path(os.path.abspath(loc.path)).name
    if is_lmdb(loc.path):
        return f"{loc.path.stem}_{loc.location.replace(':', '_')}"
    parts = [p for p in loc.location.split("/") if p]
    return parts[-1] if parts else loc.path.stem


def output_files(paths: list[Path], folder: Path) -> list[Path]:
    """`folder`/<system_name>.npy for each system; InputError when two share a name."""
    seen: dict[str, Path] = {}
    for p in paths:
        name = system_name(p)
        if name in seen:
            raise InputError(f"systems {seen[name]} and {p} would both be saved as "
                             f"{folder / (name + '.npy')}: evaluate them in separate runs (-o)")
        seen[name] = p
    return [folder / f"{name}.npy" for name in seen]


def main(args) -> int:
    import numpy as np

    from ..io.atomic import atomic_path
    from ..io.backup import Backups
    from ..io.npy_system import load_system, real_atoms
    from ..model.dp_model import load_model

    folder = Path(args.output)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"-o {folder}: exists and is not a folder")
    paths = system_paths(args)
    files = output_files(paths, folder)
    model = load_model(args.model, nthreads=args.threads, precision=args.precision, device=args.device)
    folder.mkdir(parents=True, exist_ok=True)
    print(f"# model {args.model}  type_map {' '.join(model.type_map)}  precision {model.precision}"
          + ("  (compressed)" if model.compressed else ""))
    with Backups.move(files, "the existing") as backups:
        for path, out in zip(paths, files):
            system = load_system(path)
            types = system.frame_model_types(model.type_map)
            with atomic_path(out, "descriptor file") as tmp:
                arr = None
                for f in range(system.nframes):
                    box = None if system.boxes is None else system.boxes[f]
                    keep = real_atoms(types[f])
                    try:
                        real = model.descriptor(system.coords[f][keep], types[f][keep], box)
                    except InputError as exc:
                        raise InputError(f"{path}: frame {f}: {exc}") from None
                    if arr is None:
                        arr = np.lib.format.open_memmap(
                            tmp, mode="w+", dtype=DESCRIPTOR_DTYPES[args.dtype] or real.dtype,
                            shape=(system.nframes, system.natoms, real.shape[1]))
                    arr[f] = 0.0   # virtual atoms' rows (mixed-type padding)
                    arr[f, keep] = real
                if arr is None:
                    raise InputError(f"{path}: holds no frame")
                arr.flush()
                shape = arr.shape
                del arr
            print(f"  {str(path)[-48:]:<48} {shape[0]:6d} frames  ({shape[0]}, {shape[1]}, {shape[2]})  -> {out}")
    if model.beyond_table:
        print(f"# warning: {model.beyond_table} neighbour pairs fell outside the model's tables "
              "(closer than any training pair); they were extrapolated linearly")
    if backups.moved:
        print("# " + backups.line())
    return 0
