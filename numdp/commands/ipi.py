"""`numdp ipi --model M (--address HOST:PORT | --unix NAME) (--init FILE | --types T ...)`:
numdp as an i-PI client (numdp/ipi.py; docs/ipi.md).

i-PI sends only positions and the cell, so numdp must be told the element of every atom:
`--init` reads them from a structure file (the extxyz/xyz i-PI starts from, a LAMMPS data file,
an npy system or H5MD; element names map through the model's type_map, and `--rename OW=O`
renames labels first, like DeePMD-kit's dp_ipi "atom_type"), or `--types O H H` lists them,
repeated in order to the number of atoms.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import InputError


def configure(parser):
    parser.add_argument("-m", "--model", required=True, help="numdp (.h5) or DeePMD-kit (.dp) model")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--address", help="HOST:PORT of an i-PI server (TCP socket)")
    where.add_argument("--unix", metavar="NAME",
                       help="i-PI unix socket NAME (the socket file is PREFIX + NAME)")
    parser.add_argument("--sockets-prefix", default="/tmp/ipi_", metavar="PREFIX",
                        help="i-PI's sockets_prefix for --unix (default /tmp/ipi_)")
    types = parser.add_mutually_exclusive_group(required=True)
    types.add_argument("--init", metavar="STRUCTURE",
                       help="structure file giving the element of every atom, in i-PI's order")
    types.add_argument("--types", nargs="+", metavar="ELEMENT",
                       help="elements of the atoms, repeated in order to the atom count "
                            "(e.g. --types O H H for water)")
    parser.add_argument("--rename", nargs="+", default=[], metavar="LABEL=ELEMENT",
                        help="with --init: rename atom labels before the type_map lookup (OW=O)")
    parser.add_argument("--wait", type=float, default=60.0,
                        help="seconds to keep trying to connect (default 60)")
    parser.add_argument("--threads", type=int, default=None,
                        help="worker threads (default: all cores)")
    parser.add_argument("--precision", default="double", choices=["double", "mix32", "mix16"],
                        help="evaluation precision (default double)")


def _renames(items) -> dict[str, str]:
    out = {}
    for item in items:
        label, sep, element = item.partition("=")
        if not sep or not label or not element:
            raise InputError(f"--rename: expected LABEL=ELEMENT, got {item!r}")
        out[label] = element
    return out


def _types_from_init(path: str, type_map: list[str], renames: dict[str, str]):
    from ..io.structure import assign_types, read_structure

    s = read_structure(Path(path), 0)
    if s.elements is not None and renames:
        s.elements = [renames.get(e, e) for e in s.elements]
    return assign_types(s, type_map, what="--init")


def _types_from_list(names: list[str], type_map: list[str]):
    import numpy as np

    for name in names:
        if name not in type_map:
            raise InputError(f"--types: element {name} is not in the model's type_map {type_map}")
    return np.array([type_map.index(n) for n in names], dtype=np.int32)


def main(args) -> int:
    import numpy as np

    from .. import load_model
    from ..ipi import connect, serve

    if args.rename and args.init is None:
        raise InputError("--rename applies to the labels of an --init file")
    model = load_model(args.model, nthreads=args.threads, precision=args.precision)
    if args.init is not None:
        types = _types_from_init(args.init, model.type_map, _renames(args.rename))
        natoms = len(types)
    else:
        pattern = _types_from_list(args.types, model.type_map)
        types, natoms = None, None

    state = {"types": types}

    def evaluate(positions, box):
        t = state["types"]
        if t is None:  # --types: repeat the pattern to the atom count of the first frame
            n = positions.shape[0]
            if n % len(pattern):
                raise InputError(f"--types: {len(pattern)} elements do not divide the {n} atoms "
                                 f"that i-PI sent")
            t = state["types"] = np.tile(pattern, n // len(pattern))
        out = model.evaluate(positions, t, box, atom_virial=False)
        return out.energy, out.forces, out.virial

    sock = connect(args.address, args.unix, args.sockets_prefix, args.wait)
    where = args.address or args.sockets_prefix + args.unix
    print(f"numdp ipi: connected to {where}", file=sys.stderr, flush=True)
    try:
        session = serve(sock, evaluate, natoms)
    finally:
        sock.close()
    how = "EXIT" if session.exited else "the server closed the connection"
    print(f"numdp ipi: {session.evaluations} evaluations; stopped on {how}", file=sys.stderr)
    return 0
