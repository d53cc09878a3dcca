"""`numdp lmp -i in.lammps [-v NAME VALUE ...] [--print-toml]` (or `numdp lmp < in.lammps`): run a
LAMMPS input script with numdp.

The script (the subset of the LAMMPS language DP-GEN's exploration step and DP users write:
docs/lammps-input.md) is translated into the tables of a `numdp run` input (numdp.lammps), those
are validated by numdp.config.run_settings and run by numdp run's own code path
(numdp.commands.run).  Files are relative to the current folder, as for LAMMPS.  Where numdp
differs from LAMMPS (fix npt's barostat, velocity's random numbers, the thermo columns) one
notice line each is printed, and written as comments at the head of the equivalent input (which
the checkpoint and the trajectory record).  A script with several `run` commands is several
numdp runs, each later one a restart from the final checkpoint of the one before with the
script's fixes at its `run`.  `--print-toml` prints those inputs and runs nothing.

A run stopped by a signal (or a closed stdout) says how to continue it (`continuation`): a script
continues with its own `read_restart`, not numdp run's --restart, so the line names the command
that makes the script read the checkpoint written at the stop (DP-GEN's `-v restart 1`), checked
by translating the script with it, else the --print-toml input run with --restart.
"""
from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "-in", dest="input", default=None, metavar="FILE",
                        help="the LAMMPS input script (default: read from standard input, as `lmp < in.lammps`)")
    parser.add_argument("-v", "-var", dest="variables", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"), help="define an index-style variable, as LAMMPS' -var "
                                                        "(e.g. -v restart 0, as DP-GEN runs it)")
    parser.add_argument("-l", "-log", dest="log", default=None, metavar="FILE",
                        help="the log file (default log.lammps; none = no log); a `log` command overrides it")
    parser.add_argument("--print-toml", action="store_true",
                        help="print the equivalent numdp run input (TOML) and run nothing")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="run the MD step on this device (docs/gpu.md)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="worker threads (per MPI rank; default: NUMDP_NUM_THREADS or the usable cores)")


STDIN_NAME = "stdin"
"""The script's name in messages when it comes from standard input."""


def script_text(args, world=None) -> tuple[str, str]:
    """(text, name) of the script: the file -i, else standard input (read once, by rank 0 of
    `world` and broadcast, as LAMMPS reads `lmp < in.lammps`)."""
    import sys
    from pathlib import Path

    from ..errors import InputError
    from ..validate import read_input_text

    cached = getattr(args, "_script", None)
    if cached is not None:
        return cached
    if args.input is not None:
        found = read_input_text(Path(args.input), "input script"), Path(args.input).name
    else:
        text = error = None
        if world is None or world.is_root:
            if sys.stdin is None or sys.stdin.isatty():
                error = "no input script: give -i FILE, or pipe the script in (numdp lmp < in.lammps)"
            else:
                text = sys.stdin.read()
        if world is not None:
            text, error = world.bcast_object((text, error))
        if error is not None:
            raise InputError(error)
        found = text, STDIN_NAME
    args._script = found
    return found


def translate_file(args, world=None, variables: dict[str, str] | None = None, minimize_stop: int | None = None):
    """The Translation (numdp.lammps.translate) of the script (`script_text`) with args' -v (or
    `variables`) and -log; `minimize_stop`: the step its minimize before a run stopped at (once run)."""
    from pathlib import Path

    from ..lammps.translate import translate

    text, name = script_text(args, world)
    log = None if args.log is None else ("" if args.log == "none" else args.log)
    return translate(text, name, _variables(args) if variables is None else variables, Path.cwd(), log,
                     minimize_stop)


def main(args) -> int:
    import time
    from pathlib import Path

    from . import run
    from ..config import run_settings
    from ..signals import StdoutGuard
    from ..validate import parse_toml_text

    if args.print_toml:   # printed once, also under mpiexec (the launcher's rank 0; the others exit)
        from ..parallel.world import launched_rank

        if launched_rank() == 0:
            print(translate_file(args).all_toml(), end="")
        return 0

    started = time.monotonic()
    translated = []

    def loader(k: int):
        """RunSettings of the script's run k (0: the first; k > 0 continue from run k-1's end)."""
        def load(world):
            if not translated:
                tr = translate_file(args, world)
                translated.append(tr)
                if world.is_root:
                    for note in tr.notices:   # a closed stdout stops the run after a step (numdp.signals)
                        print(f"numdp lmp: note: {note}", file=StdoutGuard(), flush=True)
            toml = translated[0].run(k)[1]
            # the tables go through their own TOML text, so --print-toml shows exactly what runs
            name = script_text(args)[1]
            settings = run_settings(Path(name), toml, parse_toml_text(toml, name), Path.cwd())
            settings.lammps = True
            return settings
        return load

    args.restart = None   # read_restart in the script restarts ([system] file = the checkpoint)
    status = run.main(args, loader(0), continuation(args, translated, 0))
    k = 0
    while status == 0 and translated:
        status = _write_states(translated[0], k)
        if status == 0:
            status = _start_md(args, translated, k)
        k += 1
        if status or k > len(translated[0].later):
            break
        status = run.main(args, loader(k), continuation(args, translated, k))
    if status == 0 and translated:
        _finish(translated[0], started)
    return status


def _finish(tr, started: float) -> None:
    """After the script's last run, as LAMMPS: the script's lines after it that need the state it
    ended with (Translation.epilogue: their `print` text), then `Total wall time: H:MM:SS` (what
    DP-GEN's autotest looks for in log.lammps), on the screen and in the log, by rank 0."""
    import time
    from pathlib import Path

    from ..io.h5md import read_frame
    import numpy as np

    from ..lammps.translate import KINETIC_KEYWORDS, final_values
    from ..parallel.world import launched_rank
    from ..signals import StdoutGuard

    if launched_rank() != 0:
        return
    k = len(tr.later)
    tables = tr.run(k)[0]
    lines = []
    if tr.epilogue is not None:
        model = tables["model"]
        files = model["file"] if isinstance(model["file"], list) else [model["file"]]
        frame = read_frame(_final_checkpoint(tr, k))
        velocities = None
        if "minimize" in tables:   # LAMMPS' atoms keep the velocities they started the minimize with
            velocities = tr.epilogue.start_velocities()
            if velocities is not None:
                velocities = np.broadcast_to(velocities, frame["positions"].shape)
        values = final_values(frame, files[0], model.get("fparam"), model.get("aparam"), velocities, tr.origin,
                              tr.open_cell)
        if "minimize" in tables and velocities is None:
            for key in KINETIC_KEYWORDS:
                values.pop(key, None)
        lines = tr.epilogue.lines(values)
    elapsed = int(time.monotonic() - started)
    lines.append(f"Total wall time: {elapsed // 3600}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}")
    out = StdoutGuard()
    for line in lines:
        print(line, file=out, flush=True)
    log = tables["output"].get("log", "")
    if log:
        with open(Path(log), "a") as f:
            f.write("".join(line + "\n" for line in lines))


def _write_states(tr, k: int) -> int:
    """The script's `write_data FILE` / `write_restart FILE` commands after its run k: the state of
    that run's final checkpoint as a LAMMPS data file, or a copy of that checkpoint (one process
    writes; earlier files kept as #FILE.N#).  Collective under MPI: the other ranks wait for rank
    0's writes, so that a write that fails (a missing folder) stops every rank with rank 0's one
    line instead of leaving them waiting in the next run.  Returns 0, or 2 on a rank other than 0
    when rank 0 failed (rank 0 raises the error)."""
    writes = [w for w in tr.writes if w.after == k]
    if not writes:
        return 0
    from ..parallel.world import RankFailed, create_world

    world = create_world(command="lmp")
    try:
        with world.agreement():
            if world.is_root:
                _write_files(tr, k, writes)
    except RankFailed:
        return 2
    return 0


def _write_files(tr, k: int, writes) -> None:
    """`_write_states`' files, written by this process."""
    import shutil
    from pathlib import Path

    from ..io.atomic import atomic_path
    from ..io.backup import Backups
    from ..io.h5md import read_frame
    from ..io.structure import write_frame_lammps_data
    from ..lammps.translate import WriteKind
    from ..signals import StdoutGuard

    final = _final_checkpoint(tr, k)
    frame = read_frame(final)
    if frame["box"] is None and tr.open_cell is not None:   # an open system: LAMMPS' box, which stays put
        frame = {**frame, "box": tr.open_cell, "pbc": (False, False, False)}
    order = None
    if tr.type_elements is not None:   # LAMMPS type of each model type: pair_coeff's element order
        order = [tr.type_elements.index(e) if e in tr.type_elements else len(tr.type_elements) + j
                 for j, e in enumerate(frame["type_map"])]
    for w in writes:
        with Backups.move([Path(w.file)], "the existing") as backups:
            if w.kind is WriteKind.DATA:
                write_frame_lammps_data(w.file, frame, order, comment=f"numdp lmp write_data, step {frame['step']}",
                                        origin=tr.origin)
            else:
                with atomic_path(Path(w.file)) as tmp:
                    shutil.copyfile(final, tmp)
        print(f"numdp lmp: {w.kind.value}: {w.file} (step {frame['step']})"
              + (f"; {backups.line()}" if backups.moved else ""), file=StdoutGuard(), flush=True)


def _start_md(args, translated: list, k: int) -> int:
    """After the script's run k, when it is the minimize a run follows (Translation.md_start): the
    state that run starts from, as LAMMPS' (`_write_md_start`, by rank 0, the others waiting), then
    the script translated again with the step the minimize stopped at (the later runs' steps and
    checkpoint names count from it).  Collective; returns 0, or 2 on a rank other than 0 when
    rank 0 failed (rank 0 raises the error)."""
    start = translated[0].md_start
    if start is None or start.after != k:
        return 0
    from ..parallel.world import RankFailed, create_world

    world = create_world(command="lmp")
    stop = None
    try:
        with world.agreement():
            if world.is_root:
                stop = _write_md_start(translated[0], k)
    except RankFailed:
        return 2
    translated[0] = translate_file(args, world, minimize_stop=world.bcast_object(stop))
    return 0


def _write_md_start(tr, k: int) -> int:
    """Write Translation.md_start's file: the final state of the minimize (run k) as an MD
    checkpoint at the step it stopped at (or reset_timestep's), with LAMMPS' velocities (velocity
    create's drawn as numdp draws them, else the data file's Velocities, replicated as the atoms,
    else zero), the run's seed, no minimizer variables; an earlier file of that name kept as
    #FILE.N#, and so the files of a dump defined after the minimize (MdStart.dump: the run starts
    it anew, where a restart would go on from them).  Returns the step the minimize stopped at."""
    from pathlib import Path

    import numpy as np

    from ..io.backup import Backups
    from ..io.h5md import read_checkpoint, write_checkpoint
    from ..io.series import is_series, series_files
    from ..io.structure import read_structure
    from ..md.start import maxwell_boltzmann
    from ..signals import StdoutGuard

    start = tr.md_start
    state = read_checkpoint(_final_checkpoint(tr, k))
    stop = int(state.step)
    state.minimize, state.thermostat, state.barostat = {}, {}, {}
    state.forces = None   # the run evaluates them anew (LAMMPS' setup): a fix setforce acted on the minimize's
    state.step = stop if start.step is None else start.step
    state.time = start.time(stop)
    state.seed = int(tr.run(k + 1)[0]["md"].get("seed", 1))
    state.velocities = np.zeros_like(state.positions)
    if start.draw is not None:
        maxwell_boltzmann(state, *start.draw)
    elif start.data_file is not None:
        v = read_structure(Path(start.data_file)).velocities
        if v is not None:   # replica r of atom i has id r * n + i (numdp.md.start.ReplicatedAtoms)
            tiled = np.tile(np.asarray(v, float), (int(np.prod(start.replicate)), 1))
            state.velocities = np.ascontiguousarray(tiled[state.ids])
    dump = [] if start.dump is None else series_files(start.dump) if is_series(start.dump) else [Path(start.dump)]
    with Backups.move([Path(start.file)] + dump, "the existing") as backups:
        write_checkpoint(start.file, state, {})
    if backups.moved:   # (as every output numdp replaces: nothing lost silently)
        print(f"numdp lmp: the run's start {start.file}" + (f" and dump {start.dump}" if start.dump else "")
              + f"; {backups.line()}", file=StdoutGuard(), flush=True)
    return stop


def _final_checkpoint(tr, k: int):
    """The checkpoint the script's run k ended with (a Path)."""
    from pathlib import Path

    from ..io.series import is_series, latest_file, series_file

    tables = tr.run(k)[0]
    checkpoint = Path(tables["output"].get("checkpoint", "checkpoint.h5"))
    if not is_series(checkpoint):
        return checkpoint
    if "md" in tables:   # a run ends at its step (else it stopped and nothing is written)
        return series_file(checkpoint, tables["md"]["steps"])
    return latest_file(checkpoint)   # a minimization may stop before its last iteration: its latest


RESTART_SWITCH = ("restart", "1")
"""DP-GEN's way on (-v restart 1: its script then reads `read_restart dpgen.restart.*`)."""


def command_line(args, variables: dict[str, str] | None = None) -> str:
    """The numdp lmp command of `args` (its script, variables, log, device, threads), with
    `variables` in place of its -v ones; shell-quoted."""
    import shlex

    words = ["numdp", "lmp"] + (["-i", args.input] if args.input is not None else [])
    for name, value in (_variables(args) if variables is None else variables).items():
        words += ["-v", name, value]
    if args.log is not None:
        words += ["-log", args.log]
    return shlex.join(words + _machine(args)) + ("" if args.input is not None else " < SCRIPT")


def _machine(args) -> list[str]:
    """The --device and --threads options given (the same again: the continuation bit for bit)."""
    return [w for option, value in (("--device", args.device), ("--threads", args.threads)) if value is not None
            for w in (option, str(value))]


def continuation(args, translated: list, k: int):
    """numdp.md.loop.Continuation of the script's run k: what continues it from the checkpoint a
    stop wrote.  A script of one run: the command that makes it `read_restart` that checkpoint and
    run to the same end step, this one again (a script reading the latest ROOT.*) or with DP-GEN's
    -v restart 1, checked by translating the script so; else numdp run on the script's
    --print-toml input with --restart, where that input is still the one that ran (else, in words,
    the script that would read it).  A script of several runs starts over when run again
    (docs/lammps-input.md): its runs' inputs go on with numdp run."""
    from ..md.loop import Continuation

    def advice(checkpoint) -> str:
        import shlex

        tr = translated[0]
        if tr.later:
            return (f"numdp run on the inputs that {command_line(args)} --print-toml prints: run {k + 1}'s "
                    f"with --restart {checkpoint}, then each later run's")
        end = _end_step(tr.tables)
        same = _translation(args, _variables(args))
        switched = {**_variables(args), RESTART_SWITCH[0]: RESTART_SWITCH[1]}
        for variables, again in ((_variables(args), same), (switched, _translation(args, switched))):
            if again is not None and _starts_from(again, checkpoint, end):
                return command_line(args, variables)
        if same is not None and same.toml == tr.toml:   # --print-toml prints the input that ran
            toml = f"{script_text(args)[1]}.toml"
            run = shlex.join(["numdp", "run", toml, "--restart", str(checkpoint), *_machine(args)])
            return f"{command_line(args)} --print-toml > {shlex.quote(toml)} && {run}"
        return f"the script with read_restart {checkpoint} as its start (no velocity create) and run {end} upto"

    def completed() -> str:
        """A stop during run k's last step: the run is complete, so its write_data / write_restart
        are written (LAMMPS' timeout skips only later runs); the later runs go on with numdp run."""
        tr = translated[0]
        _write_states(tr, k)
        if k >= len(tr.later):
            return ""
        return (f"numdp run on the inputs that {command_line(args)} --print-toml prints: run {k + 2}'s, "
                f"then each later run's")

    return Continuation("lmp", advice, completed)


def _variables(args) -> dict[str, str]:
    """The -v variables, the first of a name given twice (LAMMPS ignores a later index definition)."""
    variables: dict[str, str] = {}
    for key, value in args.variables:
        variables.setdefault(key, value)
    return variables


def _end_step(tables: dict) -> int:
    return tables["md" if "md" in tables else "minimize"]["steps"]


def _translation(args, variables: dict[str, str]):
    """The Translation of the script with `variables` (its files as they are now); None if refused."""
    from ..errors import InputError

    try:
        return translate_file(args, variables=variables)
    except InputError:
        return None


def _starts_from(tr, checkpoint, end: int) -> bool:
    """Whether `tr` is one run that starts from `checkpoint` (the script's read_restart) and ends
    at step `end`."""
    from pathlib import Path

    start = tr.tables["system"].get("file")   # (none: a lattice)
    return (not tr.later and start is not None and (Path.cwd() / start).resolve() == Path(checkpoint).resolve()
            and _end_step(tr.tables) == end)
