"""`numdp train input.toml`: train an se_e2_a energy model (see numdp.train); `--restart CKPT`
continues a run, `--init-model MODEL` starts one from a trained model (numdp.train.init_model),
`--finetune MODEL` too, with the model's energy bias first moved to the training data;
`-l FILE` copies the run's messages to FILE, as DeePMD-kit's `dp train -l`.

A new run backs up an earlier run's lcurve, model and checkpoint to `#name.N#` (numdp.io.backup);
SIGINT / SIGTERM finish the step, write the checkpoint and exit 128 + the signal's number (130,
143), a second one aborts at once (numdp.signals); a closed stdout (`numdp train ... | head`) too,
with status 141 and the line on stderr.

With DeePMD-kit's input.json the checkpoint is also left under `dp train`'s names for dp's backend
option (`numdp --pt train`, -b, DP_BACKEND; default tensorflow): model.ckpt.pt, or
model.ckpt.index with placeholders model.ckpt.meta and .data-00000-of-00001, and the `checkpoint`
file (numdp.train.checkpoint.DeepmdNames), which DP-GEN's restart test and file transfers need.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..signals import StdoutGuard


class _InitModel(argparse.Action):
    """-i/--init-model and -f/--init-frz-model: one option, the model in `init_model`, and the
    long name the user gave in `init_option` (for messages)."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.init_model = values
        namespace.init_option = "--init-frz-model" if option_string in ("-f", "--init-frz-model") else "--init-model"


class _LogCopy:
    """The trainer's stream with -l/--log-path: every write goes to stdout and to the file (a
    LineFile, flushed per write).  Not a terminal, so progress comes as plain lines in both."""

    def __init__(self, path, restart: bool):
        from ..io.atomic import LineFile
        from ..io.backup import back_up, backup_line, prepare_outputs

        prepare_outputs([path])
        moved = [] if restart else back_up([path])
        self._file = LineFile(path, "log", "a")
        if moved:
            self.write(backup_line(moved) + "\n")

    def write(self, text: str) -> None:
        self._file.write(text)
        StdoutGuard().write(text)   # after a closed stdout, to the file alone (numdp.signals)

    def to_file(self, text: str) -> None:
        """`text` to the file alone (a line the command prints to stderr)."""
        self._file.write(text)

    def flush(self) -> None:
        StdoutGuard().flush()

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        self._file.close()


def configure(parser) -> None:
    parser.add_argument("input", help="training input file: TOML, or DeePMD-kit's input.json")
    parser.add_argument("-r", "--restart", metavar="CHECKPOINT",
                        help="continue from a checkpoint written by an earlier run of this input")
    # DeePMD-kit's short options: -i --init-model, -f --init-frz-model, -t --finetune
    parser.add_argument("-i", "--init-model", "-f", "--init-frz-model", metavar="MODEL", dest="init_model",
                        action=_InitModel,
                        help="start from a trained model's weights and statistics (any model file "
                             "numdp reads: .h5, DeePMD-kit .dp, .pb, .pt/.pth; networks must match "
                             "the input), optimiser fresh; --init-frz-model is DeePMD-kit's name")
    parser.add_argument("-t", "--finetune", metavar="MODEL",
                        help="as --init-model, then the model's energy bias moved to the training "
                             "data (the least-squares shift of its errors), DeePMD-kit's --finetune")
    parser.add_argument("-l", "--log-path", metavar="FILE",
                        help="also write the run's messages and progress lines to FILE (DeePMD-kit's "
                             "-l); a new run backs up an earlier FILE to #FILE.N#, --restart appends")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="worker threads (default: NUMDP_NUM_THREADS or the usable cores)")
    parser.add_argument("--skip-neighbor-stat", action="store_true",
                        help="accepted for DeePMD-kit's (and DP-GEN's) command lines; numdp's "
                             "neighbour statistics cost little and are always taken")


def main(args) -> int:
    from ..errors import InputError
    from ..train.config import load_config
    from ..train.loop import Trainer, TrainingInterrupted

    init = getattr(args, "init_option", "--init-model")
    if args.restart is not None and args.init_model is not None:
        raise InputError(f"--restart and {init}: give one (a restart continues a run, "
                         f"{init} starts a new one from a model)")
    if args.finetune is not None and (args.restart is not None or args.init_model is not None):
        raise InputError("--finetune with --restart or --init-model: give one (--finetune starts "
                         "a new run from a model, as --init-model, and moves its energy bias)")
    from .freeze import chosen_backend

    cfg = load_config(args.input)
    # dp's checkpoint names for an input.json (DeepmdNames); a TOML input has none, whatever DP_BACKEND says
    backend = chosen_backend(args) if cfg.training.deepmd_ckpt is not None else None
    start = args.finetune if args.finetune is not None else args.init_model
    log_path = getattr(args, "log_path", None)
    if log_path:   # before the copy opens it: -l lcurve.out would interleave the log with the curve
        from ..validate import distinct_files

        distinct_files("-l/--log-path", cfg.training.output_files("training.{}") + [("-l/--log-path", Path(log_path))],
                       [("the input file", cfg.source)]
                       + [(f"--{k.replace('_', '-')}", getattr(args, k)) for k in ("restart", "init_model", "finetune")
                          if getattr(args, k, None)])
    log = _LogCopy(log_path, args.restart is not None) if log_path else None
    try:
        trainer = Trainer(cfg, restart=args.restart, nthreads=args.threads, init_model=start,
                          finetune=args.finetune is not None, init_option=init, stream=log,
                          deepmd_backend=backend)
        try:
            trainer.run()
        except TrainingInterrupted as exc:
            from ..signals import exit_status

            print(f"numdp train: {exc}", file=sys.stderr)
            if log is not None:
                log.to_file(f"numdp train: {exc}\n")
            return exit_status(exc)
        finally:
            trainer.close()
    finally:
        if log is not None:
            log.close()
    return 0
