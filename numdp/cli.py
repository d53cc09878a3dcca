"""`numdp` command line: parses arguments and dispatches to the sub-command modules.

Each sub-command module provides `configure(parser)` and `main(args) -> int`.  A user's
mistake (numdp.errors.InputError) is printed as one line on stderr with exit status 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "test": ("numdp.commands.test", "energy/force/virial errors of a model on DeePMD systems"),
    "convert": ("numdp.commands.convert", "convert a model (numdp .h5 <-> DeePMD-kit .dp; DeePMD-kit .pb/.pt/.pth in) or an H5MD trajectory (to extxyz, LAMMPS dump)"),
    "compress": ("numdp.commands.compress", "tabulate a model's embedding nets (order 3 or 5)"),
    "train": ("numdp.commands.train", "train an se_e2_a energy model from a TOML input or DeePMD-kit's input.json"),
    "run": ("numdp.commands.run", "molecular dynamics (NVE, NVT, NPT) or an energy minimization (FIRE, CG, SD) from a TOML input file"),
    "lmp": ("numdp.commands.lmp", "run a LAMMPS input script (pair_style deepmd; the DP-GEN subset) with numdp run"),
    "plot": ("numdp.commands.plot", "PNG figure of lcurve.out, a numdp run log or model_devi.out"),
    "neighbor-stat": ("numdp.commands.neighbor_stat", "largest neighbour counts, smallest distance and sel of DeePMD systems"),
    "ipi": ("numdp.commands.ipi", "serve energies and forces to an i-PI server (socket client)"),
    "model-devi": ("numdp.commands.model_devi",
                   "model deviation of an ensemble on frames, like dp model-devi"),
    "freeze": ("numdp.commands.freeze", "write the model of a training checkpoint, like dp freeze"),
    "show": ("numdp.commands.show", "what a model holds: type map, descriptor, fitting net, size, like dp show"),
    "eval-desc": ("numdp.commands.eval_desc", "descriptors of every frame of DeePMD systems, like dp eval-desc"),
    "change-bias": ("numdp.commands.change_bias",
                    "fit a model's per-type energy bias to labelled data, like dp change-bias"),
}

ALIASES = {"convert": ["convert-backend"]}
"""DeePMD-kit's names of numdp's commands: `dp convert-backend IN OUT` is `numdp convert IN OUT`."""

DP_LOG_OPTIONS = ("-v", "--log-level", "-l", "--log-path", "-m", "--mpi-log")
"""dp's logging options, which numdp's commands (but train's -l) do not take: numdp prints to
stdout and stderr (docs/from-deepmd-kit.md)."""


def _backend_aliases() -> list[str]:
    """dp's -b/--backend values (DeePMD-kit 3.2): numdp.commands.freeze.BACKENDS."""
    from .commands.freeze import BACKENDS

    return list(BACKENDS)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="numdp", description="Deep Potential models and MD with Numba.")
    parser.add_argument("--version", action="version", version=f"numdp {__version__}")
    # dp's backend options (DP-GEN's train_backend "pytorch" runs `dp --pt train`, `dp --pt
    # freeze`): accepted; they choose the default model names of freeze and compress
    # (frozen_model.pth), numdp.commands.freeze.backend_suffix, and the checkpoint names train
    # leaves for an input.json (model.ckpt.pt), numdp.train.checkpoint.DeepmdNames
    backend = parser.add_mutually_exclusive_group()
    backend.add_argument("-b", "--backend", default=None, metavar="BACKEND", choices=_backend_aliases(),
                         help="DeePMD-kit's backend option, accepted for dp's command lines: it sets the "
                              "default names of numdp freeze and compress (.pb, .pth with pytorch) and "
                              "dp's checkpoint names numdp train leaves for an input.json "
                              "(model.ckpt.index, model.ckpt.pt with pytorch)")
    for flag, name in (("--tf", "tensorflow"), ("--pt", "pytorch"), ("--dp", "dpmodel"),
                       ("--jax", "jax"), ("--pd", "paddle")):
        backend.add_argument(flag, dest="backend", action="store_const", const=name,
                             help=f"as --backend {name}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, aliases=ALIASES.get(name, []))
        importlib.import_module(module).configure(p)
        p.set_defaults(_module=module)
    return parser


def main(argv=None) -> int:
    from .errors import InputError
    from .signals import PIPE_CLOSED, silence_stdout, stdout_was_closed
    from .validate import checked_threads

    args, extra = build_parser().parse_known_args(argv)
    if extra:
        print(f"numdp {args.command}: error: {unrecognized(args.command, extra, getattr(args, 'input', None))}",
              file=sys.stderr)
        return 2
    try:
        # --threads (train, test, model-devi, ipi, change-bias): checked here once for every sub-command
        checked_threads(getattr(args, "threads", None), "--threads")
        if not _one_process(args.command):
            return 2   # another MPI rank than the launcher's rank 0: rank 0 says why
        status = int(importlib.import_module(args._module).main(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers below
        # a command that completed while its stdout was closed (numdp.signals.StdoutGuard) says so too
        return PIPE_CLOSED if status == 0 and stdout_was_closed() else status
    except InputError as exc:
        print(f"numdp {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        from .signals import exit_status

        # a run's agreed stop says how it ended (numdp.signals.agreed_stop: a closed stdout's names the
        # checkpoint); Python's own KeyboardInterrupt says nothing
        print(f"numdp {args.command}: {str(exc) or 'interrupted'}", file=sys.stderr)
        return exit_status(exc)  # 128 + the signal's number, as the shell reports
    except BrokenPipeError:  # `numdp test ... | head`: the reader left; no traceback
        silence_stdout()
        return PIPE_CLOSED


def unrecognized(command: str, extra: list[str], script: str | None = None) -> str:
    """The error for the arguments `extra` that `command` does not take, with what to do instead
    where a DeePMD-kit or LAMMPS user's habit explains them (`script`: numdp lmp's -i, if given)."""
    line = f"unrecognized arguments: {' '.join(extra)}"
    flags = [a.split("=", 1)[0] if a.startswith("--") else a[:2] for a in extra if a.startswith("-")]
    if any(flag in DP_LOG_OPTIONS for flag in flags):
        return (line + " (DeePMD-kit's logging options -v/--log-level, -l/--log-path, -m/--mpi-log: numdp "
                "prints its lines to stdout and its errors to stderr; redirect them, e.g. > out.log 2>&1)")
    if command == "lmp" and script is None and not extra[0].startswith("-"):
        return line + f" (name the LAMMPS script with -i: numdp lmp -i {extra[0]})"
    return line


MPI_COMMANDS = ("run", "lmp")
"""The sub-commands that run on several MPI ranks (spatial decomposition, numdp.parallel)."""


def _one_process(command: str) -> bool:
    """Whether this process may run `command`.  When an MPI launcher started a sub-command that is
    not one of MPI_COMMANDS on several ranks (each rank would run the whole job, numdp train, test,
    ..., on the same outputs): InputError on the launcher's rank 0, False on the other ranks, which
    exit quietly (status 2) so that the line is printed once."""
    if command in MPI_COMMANDS:
        return True
    from .errors import InputError
    from .parallel.world import launched_rank, launched_size

    n = launched_size()
    if n > 1:
        if launched_rank() != 0:
            return False
        raise InputError(f"started on {n} MPI ranks, but numdp {command} runs as one process (each rank "
                         f"would run the whole job on the same files); only numdp {' and numdp '.join(MPI_COMMANDS)} "
                         f"use MPI: start it without mpiexec")
    return True


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
