"""`numdp train input.toml`: train an se_e2_a energy model (see numdp.train); `--restart CKPT`
continues a run, `--init-model MODEL` starts one from a trained model (numdp.train.init_model),
`--finetune MODEL` too, with the model's energy bias first moved to the training data.

A new run backs up an earlier run's lcurve, model and checkpoint to `#name.N#` (numdp.io.backup);
SIGINT / SIGTERM finish the step, write the checkpoint and exit 128 + the signal's number (130,
143), a second one aborts at once (numdp.signals).
"""
from __future__ import annotations

import sys


def configure(parser) -> None:
    parser.add_argument("input", help="training input file: TOML, or DeePMD-kit's input.json")
    parser.add_argument("-r", "--restart", metavar="CHECKPOINT",
                        help="continue from a checkpoint written by an earlier run of this input")
    # DeePMD-kit's short options: -i --init-model, -f --init-frz-model, -t --finetune
    parser.add_argument("-i", "--init-model", "-f", "--init-frz-model", metavar="MODEL", dest="init_model",
                        help="start from a trained model's weights and statistics (any model file "
                             "numdp reads: .h5, DeePMD-kit .dp, .pb, .pt/.pth; networks must match "
                             "the input), optimiser fresh; --init-frz-model is DeePMD-kit's name")
    parser.add_argument("-t", "--finetune", metavar="MODEL",
                        help="as --init-model, then the model's energy bias moved to the training "
                             "data (the least-squares shift of its errors), DeePMD-kit's --finetune")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="worker threads (default: NUMDP_NUM_THREADS or the usable cores)")
    parser.add_argument("--skip-neighbor-stat", action="store_true",
                        help="accepted for DeePMD-kit's (and DP-GEN's) command lines; numdp's "
                             "neighbour statistics cost little and are always taken")


def main(args) -> int:
    from ..errors import InputError
    from ..train.config import load_config
    from ..train.loop import Trainer, TrainingInterrupted

    if args.restart is not None and args.init_model is not None:
        raise InputError("--restart and --init-model: give one (a restart continues a run, "
                         "--init-model starts a new one from a model)")
    if args.finetune is not None and (args.restart is not None or args.init_model is not None):
        raise InputError("--finetune with --restart or --init-model: give one (--finetune starts "
                         "a new run from a model, as --init-model, and moves its energy bias)")
    cfg = load_config(args.input)
    start = args.finetune if args.finetune is not None else args.init_model
    trainer = Trainer(cfg, restart=args.restart, nthreads=args.threads, init_model=start,
                      finetune=args.finetune is not None)
    try:
        trainer.run()
    except TrainingInterrupted as exc:
        from ..signals import exit_status

        print(f"numdp train: {exc}", file=sys.stderr)
        return exit_status(exc)
    finally:
        trainer.close()
    return 0
