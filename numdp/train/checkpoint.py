"""Training checkpoints: everything needed to continue a run exactly (HDF5, written atomically).

Contents: the flat parameter vector θ (and its moving average, with enable_ema), Adam's moments
and update count, the step, the states of
the training and validation samplers (generator state, permutations, cursors), the data
statistics of the model (sel, davg, dstd, out_bias, s_range, min_nbor_dist) and the training
input text.  A checkpoint is written atomically (numdp.io.atomic), so an interrupted write never
leaves a half-written checkpoint.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..errors import InputError
from ..io.atomic import atomic_h5, one_line

FORMAT = "numdp-train-checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    """State of a training run after `step` optimiser updates.

    theta, adam_m, adam_v: (nparams,); adam_t: Adam's update count; sel: slots per type;
    davg, dstd: (ntypes, nnei, 4); out_bias: (ntypes,) eV; s_range: (ntypes, 2) 1/Å or None;
    min_nbor_dist: Å or None; sampler, valid_sampler: JSON-able states; input_text: the input
    file; elapsed: training wall time so far, s; precond_scale: only in checkpoints of earlier
    versions trained with the removed `precondition` option (θ then held W' = s_t W0 in the
    first fitting layers), which the trainer refuses; None otherwise.  fparam_avg,
    fparam_inv_std: (numb_fparam,) statistics of the frame parameters of a model that takes them,
    else None; aparam_avg, aparam_inv_std: (numb_aparam,) those of the atomic parameters.
    theta_ema: (nparams,) the moving average of θ of a run with enable_ema, else None.
    seed: the run's [training] seed (drawn at random when the input gives none), which a restart
    takes over; None in checkpoints of earlier numdp versions.
    """

    step: int
    theta: np.ndarray
    adam_m: np.ndarray
    adam_v: np.ndarray
    adam_t: int
    sel: list[int]
    davg: np.ndarray
    dstd: np.ndarray
    out_bias: np.ndarray
    s_range: np.ndarray | None
    min_nbor_dist: float | None
    sampler: dict
    valid_sampler: dict | None
    input_text: str
    elapsed: float
    precond_scale: np.ndarray | None = None
    fparam_avg: np.ndarray | None = None
    fparam_inv_std: np.ndarray | None = None
    aparam_avg: np.ndarray | None = None
    aparam_inv_std: np.ndarray | None = None
    theta_ema: np.ndarray | None = None
    seed: int | None = None

    INPUT_STATS = ("fparam_avg", "fparam_inv_std", "aparam_avg", "aparam_inv_std")
    """The statistics of the fitting nets' parameter inputs: Fitting fields of the same names."""

    @property
    def input_stats(self) -> dict:
        """The Fitting fields of the parameter statistics that are not None, by name."""
        return {n: getattr(self, n) for n in self.INPUT_STATS if getattr(self, n) is not None}


def write_checkpoint(ck: Checkpoint, path) -> None:
    """Write `ck` to `path` atomically (numdp.io.atomic: temporary file in the same directory,
    fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_h5(path, "checkpoint") as h5:
            a = h5.attrs
            a["format"] = FORMAT
            a["version"] = VERSION
            a["step"] = np.int64(ck.step)
            a["adam_t"] = np.int64(ck.adam_t)
            a["sampler"] = json.dumps(ck.sampler)
            a["valid_sampler"] = json.dumps(ck.valid_sampler)
            a["input_text"] = ck.input_text
            a["elapsed"] = float(ck.elapsed)
            if ck.seed is not None:
                a["seed"] = np.int64(ck.seed)
            h5["theta"] = ck.theta
            h5["adam_m"] = ck.adam_m
            h5["adam_v"] = ck.adam_v
            h5["sel"] = np.asarray(ck.sel, dtype=np.int64)
            h5["davg"] = ck.davg
            h5["dstd"] = ck.dstd
            h5["out_bias"] = ck.out_bias
            if ck.s_range is not None:
                h5["s_range"] = ck.s_range
            if ck.min_nbor_dist is not None:
                h5["min_nbor_dist"] = float(ck.min_nbor_dist)
            if ck.precond_scale is not None:
                h5["precond_scale"] = ck.precond_scale
            for name, arr in ck.input_stats.items():
                h5[name] = arr
            if ck.theta_ema is not None:
                h5["theta_ema"] = ck.theta_ema
    except OSError as exc:
        raise InputError(f"{path}: cannot write checkpoint ({one_line(exc)})") from None


def is_checkpoint(path) -> bool:
    """Whether `path` is a checkpoint written by `write_checkpoint` (a readable HDF5 file with its
    format attribute); False for anything else, without raising."""
    path = Path(path)
    try:
        if not path.is_file() or not h5py.is_hdf5(path):
            return False
        with h5py.File(path, "r") as h5:
            return h5.attrs.get("format") == FORMAT
    except OSError:
        return False


PREFIX_SUFFIXES = (".h5", ".pt")
"""Tried after a checkpoint path that names no file (`resolve_checkpoint`): numdp's default
save_ckpt is model.ckpt.h5, DeePMD-kit's PyTorch backend writes model.ckpt.pt."""


def resolve_checkpoint(path) -> Path:
    """`path` as DeePMD-kit reads a checkpoint option (`--restart model.ckpt`, `--init-model
    old/model.ckpt`: "path prefix of checkpoint files"): the file itself when it exists, else the
    first of `path` + PREFIX_SUFFIXES that does; `path` unchanged when none does (the reader then
    names it)."""
    path = Path(path)
    if path.exists():
        return path
    for suffix in PREFIX_SUFFIXES:
        candidate = path.with_name(path.name + suffix)
        if candidate.is_file():
            return candidate
    return path


def read_checkpoint(path) -> Checkpoint:
    """Read a checkpoint written by `write_checkpoint`; InputError names the file on problems."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a checkpoint file (numdp train's save_ckpt)")
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    if not h5py.is_hdf5(path):
        hint = ("; a DeePMD-kit checkpoint: start from its weights with --init-model, or write its "
                "model with numdp freeze -c" if path.suffix in (".pt", ".pth") else "")
        raise InputError(f"{path}: not a numdp training checkpoint (not an HDF5 file){hint}")
    try:
        with h5py.File(path, "r") as h5:
            a = h5.attrs
            if a.get("format") != FORMAT:
                raise InputError(f"{path}: not a numdp training checkpoint")
            if int(a["version"]) != VERSION:
                raise InputError(f"{path}: checkpoint version {int(a['version'])} is not supported")
            return Checkpoint(
                step=int(a["step"]), theta=h5["theta"][()], adam_m=h5["adam_m"][()],
                adam_v=h5["adam_v"][()], adam_t=int(a["adam_t"]),
                sel=[int(x) for x in h5["sel"][()]], davg=h5["davg"][()], dstd=h5["dstd"][()],
                out_bias=h5["out_bias"][()],
                s_range=h5["s_range"][()] if "s_range" in h5 else None,
                min_nbor_dist=float(h5["min_nbor_dist"][()]) if "min_nbor_dist" in h5 else None,
                sampler=json.loads(a["sampler"]), valid_sampler=json.loads(a["valid_sampler"]),
                input_text=str(a["input_text"]), elapsed=float(a["elapsed"]),
                precond_scale=h5["precond_scale"][()] if "precond_scale" in h5 else None,
                theta_ema=h5["theta_ema"][()] if "theta_ema" in h5 else None,
                seed=int(a["seed"]) if "seed" in a else None,
                **{n: h5[n][()] for n in Checkpoint.INPUT_STATS if n in h5})
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})") from None
