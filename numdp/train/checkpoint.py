"""Training checkpoints: everything needed to continue a run exactly (HDF5, written atomically).

Contents: the flat parameter vector θ (and its moving average, with enable_ema), Adam's moments
and update count, the step, the states of
the training and validation samplers (generator state, permutations, cursors), the data
statistics of the model (sel, davg, dstd, out_bias, s_range, min_nbor_dist) and the training
input text.  A checkpoint is written atomically (numdp.io.atomic), so an interrupted write never
leaves a half-written checkpoint.

A run of DeePMD-kit's input.json also leaves the names `dp train` gives its checkpoint
(`DeepmdNames`), which DP-GEN tests, brings back and passes on to the next iteration.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..errors import InputError
from ..io.atomic import atomic_h5, atomic_path, cannot_write, one_line

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


PREFIX_SUFFIXES = (".h5", ".pt", ".index")
"""Tried after a checkpoint path that names no file (`resolve_checkpoint`): numdp's default
save_ckpt is model.ckpt.h5; DeePMD-kit's PyTorch backend writes model.ckpt.pt, its TensorFlow
backend model.ckpt.index (both also left by numdp for an input.json run: `DeepmdNames`)."""


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


DEEPMD_SUFFIXES = {"tensorflow": (".index", ".meta", ".data-00000-of-00001"), "pytorch": (".pt",)}
"""The files `dp train` leaves under its checkpoint prefix (save_ckpt, default model.ckpt), per
backend: those DP-GEN 0.14 tests (`[ -f model.ckpt.index ]`, `model.ckpt.pt`), brings back
(backward_files) and sends with --init-model (forward_files old/model.ckpt.*).  The first holds
numdp's checkpoint (`DeepmdNames.checkpoint`), the others are placeholders (`DeepmdNames.others`)."""
POINTER = "checkpoint"
"""The file in which dp train names its latest checkpoint (DP-GEN brings it back too)."""
PLACEHOLDER = ("numdp: DeePMD-kit's TensorFlow checkpoint name, left for DP-GEN; the run's checkpoint is "
               "numdp's HDF5 file {name}\n")


@dataclass(frozen=True)
class DeepmdNames:
    """DeePMD-kit's checkpoint names for a numdp run of its input.json, under dp's `prefix`
    (input.json's save_ckpt, default model.ckpt) for `backend` ("tensorflow" or "pytorch", a key
    of DEEPMD_SUFFIXES), with dp's pointer file in `pointer_dir` (the working directory for
    pytorch, the prefix's folder for tensorflow, as dp).

    After each checkpoint (`publish`): `checkpoint` (model.ckpt.pt, model.ckpt.index) is a hard
    link to numdp's checkpoint (a copy where the file system has none), so `--restart model.ckpt`
    and `--init-model old/model.ckpt` find it (`resolve_checkpoint`) wherever it was brought;
    the `others` (TensorFlow's .meta and .data-00000-of-00001) are placeholders of a line;
    `pointer` names the checkpoint as dp's does (pytorch: the file's name; tensorflow: the
    text format of TensorFlow's `checkpoint`)."""

    prefix: Path
    backend: str
    pointer_dir: Path

    @classmethod
    def of(cls, prefix: Path | None, backend: str | None) -> DeepmdNames | None:
        """The names for `prefix` (None: not a DeePMD-kit input) and `backend` (a canonical
        backend name, numdp.commands.freeze.chosen_backend); None where dp's backend has none
        that numdp writes (dpmodel, jax, paddle) or no prefix is given."""
        if prefix is None or backend not in DEEPMD_SUFFIXES:
            return None
        prefix = Path(prefix)
        return cls(prefix, backend, Path.cwd() if backend == "pytorch" else prefix.parent)

    def _name(self, suffix: str) -> Path:
        return self.prefix.with_name(self.prefix.name + suffix)

    @property
    def checkpoint(self) -> Path:
        """The dp name that holds numdp's checkpoint (hard link): model.ckpt.pt / .index."""
        return self._name(DEEPMD_SUFFIXES[self.backend][0])

    @property
    def others(self) -> list[Path]:
        """The placeholders: TensorFlow's model.ckpt.meta and model.ckpt.data-00000-of-00001."""
        return [self._name(s) for s in DEEPMD_SUFFIXES[self.backend][1:]]

    @property
    def pointer(self) -> Path:
        return self.pointer_dir / POINTER

    def paths(self) -> list[Path]:
        """Every file `publish` writes."""
        return [self.checkpoint, *self.others, self.pointer]

    def pointer_text(self) -> str:
        """dp's pointer: pytorch, the checkpoint's path from the pointer's folder (dp writes
        model.ckpt-N.pt); tensorflow, TensorFlow's text format naming the prefix."""
        if self.backend == "pytorch":
            return os.path.relpath(self.checkpoint, self.pointer_dir)
        name = os.path.relpath(self.prefix, self.pointer_dir)
        return f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n'

    def publish(self, ckpt: Path) -> None:
        """Point dp's names at the checkpoint file `ckpt` just written (each file replaced
        atomically, numdp.io.atomic); nothing when `ckpt` is not a regular file (/dev/null)."""
        ckpt = Path(ckpt)
        if not ckpt.is_file():
            return
        _link(ckpt, self.checkpoint)
        holder = os.path.relpath(self.checkpoint, self.prefix.parent)
        for other in self.others:
            _write_text(other, PLACEHOLDER.format(name=holder))
        _write_text(self.pointer, self.pointer_text())


def _link(src: Path, dst: Path) -> None:
    """`dst` replaced atomically by a hard link to `src` (a copy where links are refused)."""
    with contextlib.suppress(OSError):
        if os.path.samefile(src, dst):
            return
    what = "DeePMD-kit's checkpoint name"
    with atomic_path(dst, what) as tmp:
        try:
            if tmp != dst:   # (else a character device or FIFO: written into)
                os.unlink(tmp)
                try:
                    os.link(src, tmp)
                    return
                except OSError:   # a file system without hard links
                    pass
            shutil.copyfile(src, tmp)
        except OSError as exc:
            raise cannot_write(dst, what, exc) from None


def _write_text(path: Path, text: str) -> None:
    """`path` holding `text`, written atomically unless it already does."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        if path.is_file() and path.read_text() == text:
            return
    what = "DeePMD-kit's checkpoint file"
    with atomic_path(path, what) as tmp:
        try:
            with open(tmp, "w") as fh:
                fh.write(text)
        except OSError as exc:
            raise cannot_write(path, what, exc) from None
