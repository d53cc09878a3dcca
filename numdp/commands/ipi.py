"""`numdp ipi --model M (--address HOST:PORT | --unix NAME) (--init FILE | --types T ...)`:
numdp as an i-PI client (numdp/ipi.py; docs/ipi.md).

i-PI sends only positions and the cell, so numdp must be told the element of every atom:
`--init` reads them from a structure file (the extxyz/xyz i-PI starts from, a LAMMPS data file,
an npy system or H5MD; element names map through the model's type_map, and `--rename OW=O`
renames labels first, like DeePMD-kit's dp_ipi "atom_type"), or `--types O H H` lists them,
repeated in order to the number of atoms.  `--dp-json FILE` reads DeePMD-kit's dp_ipi parameter
file instead (graph_file, use_unix/host/port, coord_file + atom_type); options given on the
command line take precedence over it.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import InputError
from ..io.model_file import MODEL_HELP
from .options import add_evaluation_options


def configure(parser):
    parser.add_argument("-m", "--model", help=MODEL_HELP)
    parser.add_argument("--dp-json", metavar="FILE",
                        help="DeePMD-kit dp_ipi parameter file (graph_file, use_unix, host, port, "
                             "coord_file, atom_type); paths in it are relative to the working "
                             "directory, as for dp_ipi")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--address", help="HOST:PORT of an i-PI server (TCP socket)")
    where.add_argument("--unix", metavar="NAME",
                       help="i-PI unix socket NAME (the socket file is PREFIX + NAME)")
    parser.add_argument("--sockets-prefix", default="/tmp/ipi_", metavar="PREFIX",
                        help="i-PI's sockets_prefix for --unix (default /tmp/ipi_)")
    types = parser.add_mutually_exclusive_group()
    types.add_argument("--init", metavar="STRUCTURE",
                       help="structure file giving the element of every atom, in i-PI's order")
    types.add_argument("--types", nargs="+", metavar="ELEMENT",
                       help="elements of the atoms, repeated in order to the atom count "
                            "(e.g. --types O H H for water)")
    parser.add_argument("--rename", nargs="+", action="extend", default=[], metavar="LABEL=ELEMENT",
                        help="with --init: rename atom labels before the type_map lookup (OW=O)")
    parser.add_argument("--wait", type=float, default=60.0,
                        help="seconds to keep trying to connect (default 60)")
    add_evaluation_options(parser)


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
    try:
        return assign_types(s, type_map, what="--init",
                            hint="element names in the --init file, or --types ELEMENT ...")
    except InputError as exc:
        unknown = [e for e in dict.fromkeys(s.elements or []) if e not in type_map]
        if not unknown:
            raise
        raise InputError(f"{exc} (i-PI labels such as OW: --rename {unknown[0]}=ELEMENT)") from None


def _types_from_list(names: list[str], type_map: list[str]):
    from ..io.type_map import type_indices

    return type_indices(names, type_map, "--types")


def _dp_json(path: str) -> dict:
    """The settings of a dp_ipi parameter file: model, unix or address, init, atom_type; every
    key checked against its JSON type (errors name the file and the key)."""
    import json

    from ..validate import read_input_text

    try:
        cfg = json.loads(read_input_text(Path(path), "dp_ipi parameter file"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(cfg, dict):
        raise InputError(f"{path}: expected a JSON object")
    known = {"verbose", "use_unix", "port", "host", "graph_file", "coord_file", "atom_type"}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise InputError(f"{path}: unknown key {unknown[0]!r} (dp_ipi keys: {sorted(known)})")

    def bad(key, need):
        got = json.dumps(cfg[key], ensure_ascii=False)  # as the file spells it (true, not True)
        return InputError(f"{path}: {key!r} must be {need}, got {got if len(got) <= 60 else got[:57] + '...'}")

    for key in ("graph_file", "coord_file", "host"):
        if key in cfg and not (isinstance(cfg[key], str) and cfg[key]):
            raise bad(key, "a non-empty string")
    use_unix = cfg.get("use_unix", False)
    if not isinstance(use_unix, bool):
        raise bad("use_unix", "true or false")
    port = cfg.get("port", 31415)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise bad("port", "an integer 1-65535")
    out = {"model": cfg.get("graph_file"), "init": cfg.get("coord_file"), "unix": None,
           "address": None, "atom_type": cfg.get("atom_type")}
    host = cfg.get("host", "localhost")
    if use_unix:
        out["unix"] = host  # dp_ipi, like i-PI's drivers, names the unix socket /tmp/ipi_<host>
    else:
        out["address"] = f"{host}:{port}"
    at = out["atom_type"]
    if at is not None and not (isinstance(at, dict) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in at.values())):
        raise InputError(f"{path}: atom_type must map atom names to integer types, got {at!r}")
    return out


def _types_from_atom_type(path: str, atom_type: dict, type_map: list[str], where: str):
    """dp_ipi's rule: the atom names of `path` translated by `atom_type` to model type indices."""
    import numpy as np

    from ..io.structure import read_structure

    s = read_structure(Path(path), 0)
    names = s.elements if s.elements is not None else [str(t + s.first_type) for t in s.type_ids]
    out = np.empty(len(names), dtype=np.int32)
    for i, name in enumerate(names):
        if name not in atom_type:
            raise InputError(f"{where} atom_type: atom {i} of {path} is {name!r}, which it does "
                             f"not map (it maps {sorted(atom_type)})")
        t = atom_type[name]
        if not 0 <= t < len(type_map):
            raise InputError(f"{where} atom_type: {name!r} -> {t} is outside the model's "
                             f"type_map {type_map}")
        out[i] = t
    return out


def main(args) -> int:
    import numpy as np

    from .. import load_model
    from ..ipi import check_target, connect, serve
    from ..signals import sigterm_interrupts

    cfg = _dp_json(args.dp_json) if args.dp_json else {}
    model_path = args.model or cfg.get("model")
    if args.address is None and args.unix is None:
        args.address, args.unix = cfg.get("address"), cfg.get("unix")
    if not model_path:
        raise InputError("give the model with -m (or graph_file in --dp-json)")
    if args.address is None and args.unix is None:
        raise InputError("give the server with --address HOST:PORT or --unix NAME")
    if args.init is None and args.types is None and not cfg.get("init"):
        raise InputError("give the atoms' elements with --init STRUCTURE or --types ELEMENT ...")
    if args.rename and args.init is None:
        raise InputError("--rename applies to the labels of an --init file")
    check_target(args.address, args.unix, args.sockets_prefix, args.wait)  # before the model loads
    model = load_model(model_path, nthreads=args.threads, precision=args.precision, device=args.device)
    # i-PI passes no frame or atomic parameters: a model that takes them runs with its defaults
    if model.numb_fparam and model.fparam is None:
        raise InputError(f"{model_path}: the model takes {model.numb_fparam} frame parameter(s) (numb_fparam) "
                         f"and has no default_fparam, and i-PI passes none: numdp ipi serves a model with frame "
                         f"parameters at its default_fparam")
    if model.numb_aparam and model.aparam is None:
        raise InputError(f"{model_path}: the model takes {model.numb_aparam} atomic parameter(s) per atom "
                         f"(numb_aparam), and i-PI passes none: numdp ipi cannot serve it")
    model.use_inputs()
    if args.init is None and args.types is None:  # dp_ipi's coord_file (+ atom_type)
        if cfg.get("atom_type") is not None:
            types = _types_from_atom_type(cfg["init"], cfg["atom_type"], model.type_map,
                                          args.dp_json)
        else:
            types = _types_from_init(cfg["init"], model.type_map, {})
        natoms = len(types)
    elif args.init is not None:
        types = _types_from_init(args.init, model.type_map, _renames(args.rename))
        natoms = len(types)
    else:
        pattern = _types_from_list(args.types, model.type_map)
        types, natoms = None, None

    state = {"types": types}

    def evaluate(positions, box):
        t = state["types"]
        n = positions.shape[0]
        if natoms is None and (t is None or len(t) != n):  # --types: the pattern repeated to
            # the atom count of this frame (systems of one i-PI run sharing a forcefield may differ)
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
        with sigterm_interrupts():
            session = serve(sock, evaluate, natoms)
    finally:
        sock.close()
    if not session.exited:  # i-PI says EXIT whenever it ends a run, even after its own errors
        raise InputError(f"the i-PI server closed the connection without EXIT after "
                         f"{session.evaluations} evaluations: i-PI died (killed, or crashed: "
                         f"see its output)")
    print(f"numdp ipi: {session.evaluations} evaluations; stopped on EXIT", file=sys.stderr)
    return 0
