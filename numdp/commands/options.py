"""Command-line options shared by the commands that evaluate a model: one wording, one default."""
from __future__ import annotations

from ..model.precision import PRECISIONS


def add_threads_option(parser) -> None:
    """--threads N: the worker threads (numdp.cli checks the value)."""
    parser.add_argument("--threads", type=int, default=None,
                        help="worker threads (default: NUMDP_NUM_THREADS or the usable cores)")


def add_evaluation_options(parser) -> None:
    """--threads, --precision and --device of a command that evaluates models (as numdp.load_model
    takes them)."""
    add_threads_option(parser)
    parser.add_argument("--precision", default="double", choices=list(PRECISIONS),
                        help="evaluation precision (default double)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="evaluate on the CPU or an NVIDIA GPU (cuda extra, docs/gpu.md)")
