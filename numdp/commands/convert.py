"""`numdp convert IN OUT`: convert a model between numdp's HDF5 file and DeePMD-kit's `.dp`, or
an H5MD trajectory to extended XYZ or a LAMMPS text dump, or its last frame (a checkpoint's
state) to a LAMMPS data file (.data, .lmp: positions, box, types, masses, velocities).

IN is recognised by its content (an H5MD file is a trajectory, else a model); OUT's format is
chosen by its suffix (models: .dp for DeePMD-kit, .h5 or .hdf5 for numdp; trajectories: .extxyz
or .xyz, .lammpstrj or .dump; numdp.io.trajectory).  OUT is written atomically; an existing OUT
is first backed up as #OUT.1#, and given its name back if the conversion fails (numdp.io.backup;
converting a model into its own format rewrites it, keeping the original as the backup).  Prints
one line saying what was written.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..io.trajectory import convert_trajectory, format_of_path, is_h5md_trajectory
from ..io.model_file import DESCRIPTIONS, model_kind, output_kind, read_model, write_model


def configure(parser):
    parser.add_argument("input", metavar="IN", help="model to read (numdp .h5, DeePMD-kit .dp, .pb, .pt/.pth) or H5MD trajectory")
    parser.add_argument("output", metavar="OUT",
                        help="model to write (.dp = DeePMD-kit, .h5/.hdf5 = numdp), trajectory (.extxyz/.xyz, "
                             ".lammpstrj/.dump) or LAMMPS data file of the last frame (.data/.lmp)")
    parser.add_argument("--atomic-virial", action="store_true",
                        help="accepted for dp convert-backend's command line: numdp's models always "
                             "give atomic virials")


def _replacing(dst: Path):
    """An existing OUT is kept as #OUT.1#, never replaced silently, and gets its name back if
    the conversion fails (numdp.io.backup.Backups; print `line()` after the block)."""
    from ..io.backup import Backups

    return Backups.move([dst], "the existing")


def _why_not_h5md(src: Path) -> str:
    """Why `src` is no H5MD trajectory, in parentheses (a damaged file says what h5py says)."""
    import h5py

    from ..errors import one_line

    if not src.exists():
        return " (file not found)"
    if not src.is_file():
        return " (not a regular file)"
    if not h5py.is_hdf5(src):
        return " (not an HDF5 file)"
    try:
        with h5py.File(src, "r") as h5:
            return "" if "particles" in h5 else " (no /particles group)"
    except OSError as exc:
        return f" (unreadable HDF5 file: {one_line(exc)})"


DATA_SUFFIXES = (".data", ".lmp")
"""OUT suffixes of a LAMMPS data file (the last frame of an H5MD file)."""


def main(args) -> int:
    src, dst = Path(args.input), Path(args.output)
    if dst.suffix.lower() in DATA_SUFFIXES:
        return _to_lammps_data(src, dst)
    if is_h5md_trajectory(src):
        fmt = format_of_path(dst)
        if fmt is None or fmt == "h5md":
            raise InputError(f"{dst}: {src} is an H5MD trajectory; convert it to extended XYZ "
                             f"(.extxyz/.xyz) or a LAMMPS dump (.lammpstrj/.dump)")
        with _replacing(dst) as backups:
            n = convert_trajectory(src, dst, fmt)
        if backups.moved:
            print(backups.line())
        print(f"wrote {dst} ({fmt}, {n} frame{'' if n == 1 else 's'}) from {src} (H5MD)")
        return 0
    if dst.suffix.lower() == ".h5md":
        raise InputError(f"{dst}: numdp convert writes no H5MD files; it converts H5MD trajectories to "
                         f".extxyz/.xyz or .lammpstrj/.dump, and models between .h5/.hdf5 and .dp")
    if format_of_path(dst) in ("extxyz", "lammps-dump"):
        raise InputError(f"{src}: not an H5MD trajectory{_why_not_h5md(src)}; numdp convert writes "
                         f"{dst.suffix} files from H5MD trajectories only (and converts models "
                         f"between .h5/.hdf5 and .dp)")
    out_kind = output_kind(dst)  # reject a bad OUT suffix before reading anything
    in_kind = model_kind(src)
    params = read_model(src)
    with _replacing(dst) as backups:
        write_model(params, dst)
    if backups.moved:
        print(backups.line())
    print(f"wrote {dst} ({DESCRIPTIONS[out_kind]}, types {' '.join(params.type_map)}, "
          f"rcut {params.descriptor.rcut:g} Å) from {src} ({DESCRIPTIONS[in_kind]})")
    return 0


def _to_lammps_data(src: Path, dst: Path) -> int:
    """The last frame of the H5MD file `src` (a checkpoint, a trajectory) as the LAMMPS data file
    `dst` (numdp.io.structure.write_frame_lammps_data)."""
    from ..io.h5md import read_frame
    from ..io.structure import write_frame_lammps_data

    if not is_h5md_trajectory(src):
        raise InputError(f"{src}: not an H5MD file{_why_not_h5md(src)}; numdp convert writes a LAMMPS data "
                         f"file ({dst.suffix}) from the last frame of an H5MD trajectory or checkpoint")
    frame = read_frame(src)
    with _replacing(dst) as backups:
        write_frame_lammps_data(dst, frame, comment=f"numdp convert {src.name}, step {frame['step']}")
    if backups.moved:
        print(backups.line())
    print(f"wrote {dst} (LAMMPS data file, {len(frame['positions'])} atoms, types {' '.join(frame['type_map'])}) "
          f"from step {frame['step']} of {src} (H5MD)")
    return 0
