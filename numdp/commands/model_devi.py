"""`numdp model-devi -m M0 M1 ... [-s SYSTEM ...] [-o FILE]`: model deviation per frame, like
`dp model-devi`.

SYSTEM: a DeePMD system (npy directory, `deepmd/hdf5` file or ``file.h5#/group``; or a folder or
group searched for them), an H5MD trajectory (.h5 with a /particles group, numdp's own or any
H5MD file with species) or an (extended) XYZ file.  For each system the file gets a
`# <system>` line, the column header and one row per frame: step = frame index x FREQ
(restarting at 0 per system, as `dp model-devi` does), the virial, force and energy deviations of
numdp.model.deviation, and with --atomic the per-atom force deviations.  --real_error: the
models' RMS errors against the labels of DeePMD systems in their place (energy, force and virial
labels required: DeePMD-kit would take a missing one as zeros).  An existing FILE is
kept as #FILE.N# (numdp.io.backup), and given its name back if the command fails.  See
docs/model-deviation.md.
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import h5py
import numpy as np

from ..errors import InputError
from ..model.deviation import ensemble_deviations
from .options import add_evaluation_options
from .systems import SYSTEM_HELP, add_system_argument, system_roots


def configure(parser):
    parser.add_argument("-m", "--models", nargs="+", action="extend", required=True,
                        help="two or more models (numdp .h5, DeePMD-kit .dp, .pth or .pb) with the same type_map")
    add_system_argument(parser, SYSTEM_HELP + ", H5MD trajectories, extxyz files")
    parser.add_argument("-S", "--set-prefix", default="set", metavar="PREFIX",
                        help="read the frames of DeePMD systems from their PREFIX.* sets (default set, "
                             "as dp model-devi -S)")
    parser.add_argument("-o", "--output", default="model_devi.out",
                        help="output file (default model_devi.out; an existing one is kept as "
                             "#NAME.1#)")
    parser.add_argument("-f", "--frequency", type=int, default=1,
                        help="steps between frames: step = frame index x FREQ (default 1)")
    parser.add_argument("--atomic", action="store_true",
                        help="also write the force deviation of every atom")
    parser.add_argument("--relative", type=float, default=None, metavar="L",
                        help="force deviation of atom i divided by |<F_i>| + L (eV/Å)")
    parser.add_argument("--relative_v", "--relative-v", dest="relative_v", type=float,
                        default=None, metavar="L",
                        help="virial deviation per component divided by |<W_ab>| + L (eV), "
                             "as LAMMPS does")
    parser.add_argument("--real_error", "--real-error", dest="real_error", action="store_true",
                        help="the models' RMS errors against the labels of DeePMD systems instead "
                             "of their deviation")
    add_evaluation_options(parser)


def frames_of(path: Path, type_map: list[str], labels: bool = False, set_prefix: str = "set", model=None):
    """(title, iterator of (positions (N, 3), types (N,), box (3, 3) or None, pbc, reference))
    for each system named by `path`: npy system directories, an H5MD file, or an extxyz file.
    pbc: the periodicity along each cell vector as the file gives it (extxyz `pbc`, H5MD
    `box/boundary`), or None (periodic along all three with a box).  reference: the frame's
    labels (numdp.model.deviation.Reference) with `labels` (DeePMD systems only), else None;
    DeePMD systems' frames come from their ``SET_PREFIX.*`` sets.  With `model` (a DPModel) a
    DeePMD system's frames carry a sixth and a seventh item, their fparam.npy row and aparam.npy
    rows (`System.model_fparam`, `System.model_aparam`; None for a model that takes none)."""
    from ..io.structure import assign_types, iter_extxyz, iter_h5md_structures

    if not path.exists() and not _data_location(path):
        raise InputError(f"{path}: system not found")
    if path.is_dir() or _deepmd_hdf5(path):
        from ..io.npy_system import find_systems, load_system
        from ..model.deviation import Reference

        found = find_systems(path)
        if not found:
            raise InputError(f"{path}: no DeePMD npy system (type.raw) in or below this directory")
        for sys_path in found:
            s = load_system(sys_path, set_prefix)
            types = s.frame_model_types(type_map)
            fparam = None if model is None else s.model_fparam(model)
            aparam = None if model is None else s.model_aparam(model)
            if labels:
                for name in ("energy", "forces", "virial"):
                    if getattr(s, name) is None:
                        raise InputError(f"{sys_path}: --real_error needs {name} labels "
                                         f"({'force' if name == 'forces' else name}.npy); the system has none")
            yield str(sys_path), ((s.coords[f], types[f], None if s.boxes is None else s.boxes[f], None,
                                   Reference(s.energy[f], s.forces[f], s.virial[f]) if labels else None,
                                   None if fparam is None else fparam[f],
                                   None if aparam is None else aparam[f])
                                  for f in range(s.nframes))
    elif labels:
        raise InputError(f"{path}: --real_error needs labelled DeePMD npy systems; this file has no labels")
    elif h5py.is_hdf5(path):
        yield str(path), ((st.positions, assign_types(st, type_map), st.box, st.pbc, None)
                          for st in iter_h5md_structures(path))
    elif path.suffix.lower() in (".xyz", ".extxyz"):
        yield str(path), ((st.positions, assign_types(st, type_map), st.box, st.pbc, None)
                          for st in iter_extxyz(path))
    else:
        raise InputError(f"{path}: unknown system format (expected a DeePMD npy system directory, "
                         f"an H5MD file or a .xyz/.extxyz file)")


def _deepmd_hdf5(path: Path) -> bool:
    """True for DeePMD-kit's HDF5 systems (`deepmd/hdf5`: ``data.h5``, ``data.h5#/group``), as
    dp model-devi reads them, and any other ``PATH#LOCATION`` (an LMDB dataset's group);
    False for an H5MD file (a /particles group) and anything else (a file whose name holds a
    `#`, such as run#2.xyz, is that file)."""
    if not path.exists():
        return _data_location(path)
    if not (path.is_file() and h5py.is_hdf5(path)):
        return False
    with h5py.File(path, "r") as h5:
        return "particles" not in h5


def _data_location(path: Path) -> bool:
    """Whether `path` is PATH#LOCATION of a group of DeePMD data (numdp.io.location): PATH a file
    (deepmd/hdf5) or an LMDB dataset (a directory)."""
    from ..io.lmdb_system import is_lmdb
    from ..io.location import DataLocation

    loc = DataLocation.parse(path)
    return loc.location is not None and (loc.path.is_file() or is_lmdb(loc.path))


def load_ensemble(paths, threads=None, precision="double", minimum: int = 2, device: str = "cpu"):
    """Load the models on `device`; InputError unless there are `minimum` or more with one type_map."""
    from .. import load_model

    if len(paths) < minimum:
        raise InputError(f"-m: model deviation needs two or more models, got {len(paths)}")
    models = [load_model(p, nthreads=threads, precision=precision, device=device) for p in paths]
    for p, m in zip(paths[1:], models[1:]):
        if m.type_map != models[0].type_map:
            raise InputError(f"{p}: type_map {m.type_map} differs from {paths[0]}'s "
                             f"{models[0].type_map}")
    return models


def main(args) -> int:
    from ..io.atomic import LineFile, special_target
    from ..io.backup import Backups, prepare_outputs
    from ..io.model_devi_file import write_block

    if args.frequency < 1:
        raise InputError(f"-f: the frequency must be a positive integer, got {args.frequency}")
    for name in ("relative", "relative_v"):
        value = getattr(args, name)
        if value is not None and not (np.isfinite(value) and value >= 0):
            raise InputError(f"--{name}: the level must be a finite number >= 0, got {value}")
    out = Path(args.output)
    systems = system_roots(args)
    for flag, names in (("-s", systems), ("-m", args.models)):
        for name in names:
            if Path(name).resolve() == out.resolve():
                raise InputError(f"{out}: -o names the input {flag} {name}; give the output its own file")
    prepare_outputs([out])
    models = load_ensemble(args.models, args.threads, args.precision, minimum=1 if args.real_error else 2,
                           device=args.device)
    type_map = models[0].type_map
    nrows = 0
    # an existing output is kept as #NAME.N#, like every command's; a failed run removes its
    # partial file and puts the earlier one back (numdp.io.backup.Backups)
    with Backups.move([out], "the existing") as backups:
        # a character device or FIFO (/dev/null) is written into; a file is new ("x")
        fp = LineFile(out, "model deviation file", "w" if special_target(out, "model deviation file") else "x")
        try:
            for s in systems:
                for title, frames in frames_of(Path(s), type_map, labels=args.real_error,
                                                  set_prefix=args.set_prefix, model=models[0]):
                    devi = ensemble_deviations(models, frames, args.relative, args.relative_v)
                    rows = list(enumerate(devi))
                    write_block(fp, ((k * args.frequency, d) for k, d in rows), energy=True,
                                atomic=args.atomic, title=title)
                    nrows += len(rows)
        except BaseException:
            with contextlib.suppress(InputError):   # closing after a failed write: the first error stands
                fp.close()
            raise
        fp.close()
    if backups.moved:
        print(backups.line(), file=sys.stderr)
    print(f"numdp model-devi: {nrows} frames, {len(models)} models -> {out}", file=sys.stderr)
    return 0
