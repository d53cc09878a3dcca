"""`numdp run input.toml [--restart checkpoint.h5] [--device cpu|cuda] [--threads N]`: molecular dynamics with a Deep Potential model.

With a [minimize] table instead of [md] the run is an energy minimization (FIRE, numdp.md.minimize).

The input file is described in docs/md.md.  A restart continues the run recorded in
the checkpoint up to [md] steps, appending to the trajectory and the log; a new run first backs up
the outputs of an earlier one to `#name.N#` (numdp.io.backup).  SIGINT / SIGTERM: finish the step,
write the checkpoint, exit 128 + the signal's number (130, 143); a second one aborts at once
(numdp.signals); one during the last step ends the run complete, with that status.  The stop's line
says how to continue (`main`'s continuation: --restart here, the script under numdp lmp).
docs/md-run-outputs.md describes all of this for users.

Under an MPI launcher (`mpiexec -n N numdp run input.toml`) the run is spread over N ranks
(numdp.parallel).  Failures never leave ranks waiting: errors that all ranks agree on (bad input,
a safety stop, a signal) are printed once, by rank 0 or the failing rank, and every rank exits
with the same status; any other error on one rank prints its message and aborts all ranks
(MPI_Abort).
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="TOML input file ([model], [system], [md] or [minimize], [neighbor], [output], "
                                      "[safety], [parallel], [model_devi]; docs/md.md); paths in it are "
                                      "relative to it, outputs written there too")
    parser.add_argument("--restart", metavar="CHECKPOINT", default=None,
                        help="continue from this numdp checkpoint (overrides [system]); runs up to [md] steps "
                             "([minimize] steps for a minimization's checkpoint and input)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="run the MD step on this device (overrides [model] device; docs/gpu.md)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="worker threads (per MPI rank; overrides [model] threads; default: "
                             "NUMDP_NUM_THREADS or the usable cores)")


def _run(args, world, load=None, continuation=None) -> int:
    from pathlib import Path

    from ..config import load_run_settings
    from ..errors import InputError
    from ..io.h5md import checkpoint_problem
    from ..md.setup import run_md

    with world.agreement():
        settings = load_run_settings(args.input) if load is None else load(world)
        if args.device is not None:
            settings.model.device = args.device
        if args.threads is not None:
            settings.model.threads = args.threads
        from ..parallel.threads import thread_count

        thread_count(settings.model.threads)  # a bad NUMDP_NUM_THREADS: reported once under MPI
        restart = None
        if args.restart is not None:
            restart = Path(args.restart)
            if restart.is_dir():
                raise InputError(f"--restart {restart}: is a directory, not a checkpoint file")
            if not restart.is_file():
                raise InputError(f"--restart {restart}: file not found" + _checkpoint_hint(restart, settings))
            problem = checkpoint_problem(restart)
            if problem is not None:
                raise InputError(f"--restart {restart}: {problem}")
    run_md(settings, restart=restart, world=world, continuation=continuation)
    return 0


def _checkpoint_hint(restart, settings) -> str:
    """Where the input's own checkpoint is, when --restart names a missing file of its name (paths
    on the command line are relative to the working folder, an input's to the input)."""
    own = settings.output.checkpoint
    if own is not None and own.name == restart.name and own.is_file():
        return f" (the input writes its checkpoint beside it: --restart {os.path.relpath(own)})"
    return ""


def main(args, load=None, continuation=None) -> int:
    """`load(world)`: the run's RunSettings in place of reading `args.input` (numdp lmp's translation
    of a LAMMPS script; numdp.commands.lmp); `continuation`: how a stopped run says it continues
    (numdp.md.loop.Continuation; default numdp run's --restart)."""
    from ..parallel.world import create_world

    world = create_world(command=getattr(args, "command", "run"))   # (numdp lmp runs through here too)
    if world.size == 1:
        return _run(args, world, load, continuation)
    return _on_ranks(args, world, load, continuation)


def _on_ranks(args, world, load, continuation) -> int:
    """`_run` on several MPI ranks: the failures' statuses and messages (the module's docstring)."""
    from ..errors import InputError
    from ..parallel.world import RankFailed
    from ..signals import exit_status

    try:
        return _run(args, world, load, continuation)
    except RankFailed:
        return 2  # the failing rank reports it
    except BaseException as exc:  # noqa: BLE001
        report = getattr(exc, "numdp_report", None)
        if report is True:  # known to every rank; this one prints it (numdp.cli)
            raise
        if report is False:
            return exit_status(exc) if isinstance(exc, KeyboardInterrupt) else 2
        # an error the other ranks cannot know about: print it, then stop every rank
        if isinstance(exc, InputError):
            sys.stderr.write(f"numdp {getattr(args, 'command', 'run')}: error on MPI rank {world.rank} of {world.size}: {exc}\n")
        else:
            sys.stderr.write(f"numdp {getattr(args, 'command', 'run')}: error on MPI rank {world.rank} of {world.size}:\n")
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        sys.stderr.flush()
        world.abort(2 if isinstance(exc, InputError) else 3)
        return 3
