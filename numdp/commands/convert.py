"""`numdp convert IN OUT`: convert a model between numdp's HDF5 file and DeePMD-kit's `.dp`.

IN is recognised by its content; OUT's format is chosen by its suffix (.dp for DeePMD-kit,
.h5 or .hdf5 for numdp).  OUT is replaced atomically; converting a file into its own format
rewrites it.  Prints one line saying what was written.
"""
from __future__ import annotations

from pathlib import Path

from ..io.model_file import DESCRIPTIONS, model_kind, output_kind, read_model, write_model


def configure(parser):
    parser.add_argument("input", metavar="IN", help="model to read: numdp (.h5) or DeePMD-kit (.dp)")
    parser.add_argument("output", metavar="OUT",
                        help="model to write; .dp = DeePMD-kit, .h5/.hdf5 = numdp")


def main(args) -> int:
    src, dst = Path(args.input), Path(args.output)
    out_kind = output_kind(dst)  # reject a bad OUT suffix before reading anything
    in_kind = model_kind(src)
    params = read_model(src)
    write_model(params, dst)
    print(f"wrote {dst} ({DESCRIPTIONS[out_kind]}, types {' '.join(params.type_map)}, "
          f"rcut {params.descriptor.rcut:g} Å) from {src} ({DESCRIPTIONS[in_kind]})")
    return 0
