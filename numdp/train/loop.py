"""The training loop: data statistics, model set-up, steps, feedback, checkpoints, final model.

One step t (0-based) draws a batch, evaluates the loss at θ_t with prefactors and learning rate
of step t, accumulates the exact gradient over the batch's frames and makes one Adam update
(the gradient's norm clipped first with [training] gradient_max_norm > 0).  The run's steps are
[training] numb_steps, or from numb_epoch once the data is loaded
(numdp.train.config.resolve_steps).
lcurve.out's rows are DeePMD-kit 3.2's: after step t, with k = t + 1 updates made, row k is
written when k % disp_freq == 0 or k == 1, holding the validation of θ_k (after the update) on
`numb_btch` validation batches, step t's batch metrics (at θ_t, before the update; with disp_avg
their mean over the steps since the previous row) and lr(t), the rate of that update.  No other
row is written: a run whose numb_steps is not a multiple of disp_freq ends without a row for
its last steps, as DeePMD-kit's does.
Checkpoints hold the state after t updates (every save_freq updates, at the end and after SIGINT
or SIGTERM: numdp.signals).  A run of DeePMD-kit's input.json also leaves dp train's checkpoint
names for the backend of the command line (numdp.train.checkpoint.DeepmdNames: model.ckpt.index
or model.ckpt.pt and the `checkpoint` file), which DP-GEN's restart and reuse branches use.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np

from .. import __version__
from ..blas import get_blas_threads, set_blas_threads
from ..errors import InputError
from ..io.backup import Backups, prepare_outputs
from ..io.model_file import write_model
from ..kernels.cpu.train import ema_update
from ..model.params import exclusion_mask
from ..progress import CompileNotice, Progress
from ..signals import STDOUT_CLOSED, StdoutGuard, StopRequest, agreed_stop
from ..validate import distinct_files
from .checkpoint import Checkpoint, DeepmdNames, read_checkpoint, resolve_checkpoint, write_checkpoint
from .config import OptimizerType, TrainConfig, ema_model_path, resolve_steps, steps_text
from .data import (BatchSampler, DataSystem, FrameCache, drop_close_frames, load_dataset, missing_labels,
                   system_probs)
from .flat import FlatParams, frozen_ranges
from .init import MAX_SPREAD_FACTOR, initial_model, spread_first_layers
from .loss import LossStats, Prefactors
from .optim import Adam, clip_scale, grad_norm, without_ranges
from .passes import Frame, ModelPasses
from .report import Lcurve, lcurve_columns, lcurve_kinds
from ..neighbor.distances import DistanceStats
from .stats import (auto_sel, energy_bias, env_stats, max_neighbour_counts, param_stats,
                    stat_frames)

PHASES = ("data", "forward", "backward", "optimizer", "validation")


class TrainingDiverged(InputError):
    """The gradient of a step is not finite ([training] gradient_max_norm measures it): the run
    stops before that step's update, with one line naming the step (DeePMD-kit stops too)."""


class TrainingInterrupted(Exception):
    """Raised after SIGINT (Ctrl-C), SIGTERM or a closed stdout (`numdp train ... | head`) once the
    checkpoint of the last completed step is written (numdp.signals; a second signal aborts at
    once).  reason: what asked, put before the message (numdp.signals.STDOUT_CLOSED), or None."""

    def __init__(self, step: int, path: Path, reason: str | None = None):
        super().__init__((f"{reason}: " if reason else "") + f"interrupted after step {step}; checkpoint "
                         f"written to {path} (continue with --restart {path})")
        self.step = step
        self.path = path


@dataclass
class TestResult:
    """RMSE over frames: energy eV/atom, force eV/Å, virial eV/atom (nan without labels)."""

    nframes: int
    rmse_e: float
    rmse_f: float
    rmse_v: float

    def figures(self) -> str:
        """The RMSEs as the run's last lines give them (meV/atom, meV/Å)."""
        return (f"energy RMSE {self.rmse_e * 1e3:.3f} meV/atom, force RMSE {self.rmse_f * 1e3:.2f} meV/A"
                + (f", virial RMSE {self.rmse_v * 1e3:.2f} meV/atom" if math.isfinite(self.rmse_v) else ""))


@dataclass
class History:
    """The rows written to lcurve.out, for callers and tests: the row's step label (the updates
    made: 1, disp_freq, 2·disp_freq, ...) -> its values in the order of `columns`."""

    columns: list[str]
    rows: dict = field(default_factory=dict)


def batch_atoms(frames: list[Frame], included: list, sizes: list[int]) -> list[int]:
    """N_b of each frame's batch (numdp.train.loss): the atoms the loss sees (`included`, None =
    all), summed over the batch's frames; frames: the batches' frames in order, sizes[i] the
    frame count of frame i's batch.  The per-atom loss terms pool a batch's atoms, as DeePMD-kit
    3.2's masked means do: frames of one padded mixed-type system differ in real-atom count."""
    counts = [fr.types.shape[0] if inc is None else int(np.count_nonzero(inc))
              for fr, inc in zip(frames, included)]
    totals, i = [], 0
    while i < len(frames):
        nb = sum(counts[i:i + sizes[i]])
        totals += [nb] * sizes[i]
        i += sizes[i]
    return totals


class Trainer:
    """A training run of `cfg`, new or continued from a checkpoint.

    nthreads: worker threads (default: numdp's default thread count); stream: where progress
    and messages go; on_step(step): optional callback after every update (tests).
    init_model: a trained model to start from (weights and statistics); with `finetune`, its
    energy bias is first moved to the training data (`change_bias`), DeePMD-kit's --finetune.
    init_option: the command-line option that named `init_model` (--init-model, or DeePMD-kit's
    other name, --init-frz-model), for messages.
    deepmd_backend: DeePMD-kit's backend of the command line (numdp.commands.freeze.chosen_backend):
    for a DeePMD-kit input (`cfg.training.deepmd_ckpt`) the checkpoint is also left under that
    backend's names (`DeepmdNames`); None leaves none.
    """

    def __init__(self, cfg: TrainConfig, restart=None, nthreads: int | None = None, stream=None,
                 on_step=None, frame_budget: float = 2e9, init_model=None, finetune: bool = False,
                 init_option: str = "--init-model", deepmd_backend: str | None = None):
        from ..model.dp_model import default_threads

        if restart is not None and init_model is not None:
            raise InputError(f"--restart and {init_option}: give one (a restart continues a run, "
                             f"{init_option} starts a new one from a model)")
        if finetune and init_model is not None and cfg.preset_out_bias is not None:
            raise InputError(f"{cfg.source.name}: [model] preset_out_bias with --finetune: DeePMD-kit would add "
                             f"the preset values to the model's bias; give one of them")
        tr = cfg.training
        self.deepmd_names = DeepmdNames.of(tr.deepmd_ckpt, deepmd_backend)
        if self.deepmd_names is not None:   # (save_ckpt "checkpoint" would be overwritten by dp's pointer)
            distinct_files(cfg.source.name, tr.output_files("training.{}")
                           + [(f"DeePMD-kit's checkpoint name {p.name}", p) for p in self.deepmd_names.paths()],
                           [("the input file", cfg.source)])
        # outputs checked (directories made) before the data statistics, which can take minutes
        self.cfg = cfg
        prepare_outputs(self._output_paths())
        # DeePMD-kit's checkpoint prefixes (DP-GEN: --restart model.ckpt, --init-model old/model.ckpt)
        self.restart = resolve_checkpoint(restart) if restart is not None else None
        self.init_model = resolve_checkpoint(init_model) if init_model is not None else None
        self.finetune = finetune and init_model is not None
        self.init_option = "--finetune" if self.finetune else init_option
        self.nthreads = max(1, int(nthreads or default_threads()))
        # sys.stdout through the guard: a closed stdout stops the run after the step (numdp.signals)
        self.stream = stream if stream is not None else StdoutGuard()
        self.on_step = on_step
        self.frame_budget = frame_budget
        self.timings = dict.fromkeys(PHASES, 0.0)
        # The workers call BLAS on modest matrices: a threaded BLAS underneath only oversubscribes.
        # Numba's own parallel kernels (neighbour lists, built once per frame) run on one thread
        # for the same reason.
        self._old_blas = get_blas_threads()
        set_blas_threads(1)
        self._old_numba = numba.get_num_threads()
        numba.set_num_threads(1)
        # a first run compiles kernels in the statistics and the first step: say so
        self._compile_notice = CompileNotice(self.say).start()
        try:
            self._setup()
        except BaseException:
            self._compile_notice.stop()
            self._restore_threads()
            raise

    # ------------------------------------------------------------------ set-up
    def say(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def _setup(self) -> None:
        cfg = self.cfg
        dc = cfg.descriptor
        nt = len(cfg.type_map)
        tr = cfg.training
        whose = f"{cfg.source.name}'s [model] type_map"
        fc = cfg.fitting
        ck = self._read_restart()   # before the data, which can take minutes to load
        self.train_sys = load_dataset(tr.systems, cfg.type_map, tr.batch_size, whose, fc.numb_fparam,
                                      fc.default_fparam, fc.numb_aparam)
        self.valid_sys = (load_dataset(cfg.validation.systems, cfg.type_map, cfg.validation.batch_size, whose,
                                       fc.numb_fparam, fc.default_fparam, fc.numb_aparam)
                          if cfg.validation.systems else [])
        loaded = list(self.train_sys)
        close_note = self._drop_close_frames() if tr.min_pair_dist > 0.0 else ""
        nfr = sum(s.nframes for s in self.train_sys)
        msg = f"training data: {len(self.train_sys)} systems, {nfr} frames{close_note}"
        for role, given, kept, batch in (("training", tr.systems, loaded, tr.batch_size),
                                         ("validation", cfg.validation.systems, self.valid_sys,
                                          cfg.validation.batch_size)):
            if len(kept) < len(given):
                msg += (f' ({role} batch_size "filter:{batch.max_atoms}" leaves out {len(given) - len(kept)} '
                        f"system(s) of more than {batch.max_atoms} atoms)")
        if self.valid_sys:
            msg += (f"; validation data: {len(self.valid_sys)} systems, "
                    f"{sum(s.nframes for s in self.valid_sys)} frames")
        self.say(msg)
        for line in missing_labels(self.train_sys, cfg.loss):
            self.say(line)
        nbatches = [s.nbatches for s in self.train_sys]
        train_prob = system_probs(nbatches, tr.auto_prob, tr.sys_probs)
        self._epoch_batches = resolve_steps(cfg, nbatches, train_prob)
        if ck is not None and len(ck.sel) != nt:  # before the model is built from it
            raise InputError(f"{self.restart}: checkpoint of a run with {len(ck.sel)} atom type(s) (sel {ck.sel}), "
                             f"{cfg.source.name} has {nt} (type_map {list(cfg.type_map)}): not a checkpoint of this input")
        seed, seed_note = self._run_seed(ck)
        self.seed = seed
        self._stat_frames: list[np.ndarray] | None = None
        if ck is not None:
            sel = ck.sel
            self.train_cache = FrameCache(self.train_sys, dc.rcut, sel, nt, self.frame_budget)
            davg, dstd, bias = ck.davg, ck.dstd, ck.out_bias
            s_range, min_nbor = ck.s_range, ck.min_nbor_dist
            input_stats = ck.input_stats
            self.say(f"continuing from {self.restart} at step {ck.step}")
        elif self.init_model is not None:  # weights and statistics of a trained model
            from .init_model import load_init_model

            start_model = load_init_model(self.init_model, cfg, self.init_option)
            sel = list(start_model.descriptor.sel)
            self.train_cache = FrameCache(self.train_sys, dc.rcut, sel, nt, self.frame_budget)
            self.say(f"initialised from {self.init_model}: its weights and statistics; "
                     f"optimiser fresh at step 0")
        else:
            sel, davg, dstd, bias, s_range, min_nbor = self._statistics(seed)
            input_stats = self._input_statistics()
        if self.init_model is not None and ck is None:
            self.params = start_model
        else:
            self.params = initial_model(cfg, sel, davg, dstd, bias, seed, input_stats)
            self.params.s_range = s_range
            self.params.min_nbor_dist = min_nbor
        self.flat = FlatParams.bind(self.params)
        opt = cfg.optimizer
        self.adam = Adam(self.flat.size, opt.adam_beta1, opt.adam_beta2, weight_decay=opt.weight_decay,
                         decoupled=opt.type is OptimizerType.ADAMW,
                         frozen=frozen_ranges(self.flat, dc.trainable, cfg.fitting.trainable))
        self.sampler = BatchSampler(self.train_sys, [seed, 1], train_prob)
        vd = cfg.validation
        self.valid_sampler = BatchSampler(self.valid_sys, [seed, 2], system_probs(
            [s.nbatches for s in self.valid_sys], vd.auto_prob, vd.sys_probs)) if self.valid_sys else None
        self.valid_cache = (FrameCache(self.valid_sys, dc.rcut, sel, nt, self.frame_budget)
                            if self.valid_sys else None)
        self.start_step = 0
        self.elapsed0 = 0.0
        if ck is not None:
            self._load_state(ck)
        self.sched = cfg.learning_rate.schedule(tr.numb_steps)
        lc = cfg.loss
        self.prefs = lc.prefactors()
        self.loss_options = lc.options
        self.passes = ModelPasses(self.params, self.flat, self.nthreads, embedding_grad=dc.trainable)
        if ck is None:
            self._data_init()
            if self.finetune:  # DeePMD-kit's --finetune: the model's bias moved to the new data
                self.change_bias("--finetune")
        self.theta_ema = None   # DeePMD-kit's ModelEMA: from θ at the start, or the checkpoint's
        if tr.enable_ema:
            self.theta_ema = (ck.theta_ema.copy() if ck is not None and ck.theta_ema is not None
                              else self.flat.theta.copy())
        steps = f"{tr.numb_steps} steps"
        if self._epoch_batches is not None:
            steps += f" (numb_epoch {tr.numb_epoch:g} x {self._epoch_batches} batches per epoch)"
        clip = f"; gradient clipped to norm {tr.gradient_max_norm:g}" if tr.gradient_max_norm > 0 else ""
        self.say(f"model: {self.flat.size:,} trainable parameters; sel {list(sel)}; "
                 f"{self.nthreads} thread{'s' if self.nthreads > 1 else ''}; {steps}; "
                 f"{self.sched.describe()}{clip}; seed {seed}{seed_note}")

    def _read_restart(self) -> Checkpoint | None:
        """The checkpoint of --restart (None without one), read before the data; a missing file
        names this input's save_ckpt when that exists (DeePMD-kit's `--restart model.ckpt.pt`
        names a file numdp does not write)."""
        if self.restart is None:
            return None
        save_ckpt = self.cfg.training.save_ckpt
        if not self.restart.exists() and save_ckpt.is_file():
            raise InputError(f"{self.restart}: checkpoint not found ({self.cfg.source.name}'s save_ckpt, where "
                             f"its run writes its checkpoint, is {save_ckpt}: --restart {save_ckpt})")
        return read_checkpoint(self.restart)

    def _run_seed(self, ck: Checkpoint | None) -> tuple[int, str]:
        """The run's seed and a note for the log: a restart's is its checkpoint's (the seed that
        drew the run's statistics frames, network draws and samplers), else [training] seed, else
        one drawn at random, which the log, the checkpoint and the model file record."""
        given = self.cfg.training.seed
        if ck is not None and ck.seed is not None:
            other = given is not None and given != ck.seed
            return ck.seed, (f" (the checkpoint's; the input's {given} applies to new runs)" if other else "")
        if given is not None:
            return given, ""
        seed = int(np.random.SeedSequence().entropy % (2**31))
        if ck is not None:   # a checkpoint of an earlier numdp version, which kept no seed
            return seed, " (drawn at random: the checkpoint, of an earlier numdp version, records no seed)"
        return seed, f" (drawn at random: [training] seed = {seed} repeats this run)"

    def _statistics_frames(self) -> list[np.ndarray]:
        """The statistics frames (per training system, frame indices: `stat_frames`), drawn once
        from the run's seed: davg/dstd and the energy bias come from them, the fitting nets'
        first-layer spread and the bias changes (`change_bias`) use them again."""
        if self._stat_frames is None:
            rng = np.random.default_rng([self.seed, 3])
            self._stat_frames = stat_frames(self.train_sys, self.cfg.training.data_stat_nbatch, rng)
        return self._stat_frames

    def _drop_close_frames(self) -> str:
        """[training] min_pair_dist: leave out the training frames with a closer pair of atoms
        (numdp.train.data.drop_close_frames); returns the note for the data line.  InputError
        when no frame is left, or when a system loses every frame while weights per system
        (sys_probs, auto_prob blocks) name the systems by position."""
        tr = self.cfg.training
        cut = tr.min_pair_dist
        kept, report = drop_close_frames(self.train_sys, cut, len(self.cfg.type_map))
        emptied = [r for r in report if r.left_out == r.nframes]
        where = f"{self.cfg.source.name}: [training] min_pair_dist"
        if not kept:
            raise InputError(f"{where}: every training frame has a pair of atoms closer than {cut:g} A "
                             f"(e.g. {report[0].path}); none is left to train on")
        if emptied and (tr.sys_probs is not None or tr.auto_prob.blocks):
            raise InputError(f"{where}: every frame of {emptied[0].path} has a pair of atoms closer than "
                             f"{cut:g} A, which leaves the system out, and the weights per system "
                             f"({'sys_probs' if tr.sys_probs is not None else 'auto_prob blocks'}) name the "
                             f"systems by position: remove that system, or lower min_pair_dist")
        self.train_sys = kept
        left = sum(r.left_out for r in report)
        note = (f" (min_pair_dist {cut:g} A left out {left} of {sum(r.nframes for r in report)} frames"
                + (f", and with them {len(emptied)} system(s)" if emptied else "") + ")")
        return note

    def _statistics(self, seed: int):
        cfg = self.cfg
        dc = cfg.descriptor
        nt = len(cfg.type_map)
        t0 = time.perf_counter()
        if dc.sel is None:
            counts = max_neighbour_counts(self.train_sys, dc.rcut, nt)
            sel = auto_sel(counts, dc.sel_factor)
            self.say(f"sel auto: largest neighbour counts {counts.tolist()} x {dc.sel_factor:g} -> {sel}")
            if sum(sel) == 0:
                raise InputError(f"{cfg.source.name}: [model.descriptor] sel: no atom has a neighbour "
                                 f"within rcut = {dc.rcut:g} in the training data")
            empty = [t for t in range(nt) if sel[t] == 0]
            if empty:   # no slots for the type, as DeePMD-kit: its atoms are no atom's neighbours
                why = ", ".join(f"{cfg.type_map[t]} never within rcut of an atom in the training data" if counts[t] == 0
                                else f"{cfg.type_map[t]}'s largest count {int(counts[t])} x {dc.sel_factor:g} below 1"
                                for t in empty)
                self.say(f"sel auto: {why}: sel 0 for it, as DeePMD-kit (its atoms are no atom's neighbours)")
        else:
            sel = list(dc.sel)
        self.train_cache = FrameCache(self.train_sys, dc.rcut, sel, nt, self.frame_budget)
        dist = DistanceStats(nt, dc.rcut, dc.rcut_smth)
        for k, s in enumerate(self.train_sys):
            for f in range(s.nframes):
                dist.add(self.train_cache.frame(k, f))
        over = self.train_cache.overflow
        if over.any():
            self.say(f"warning: sel {sel} is too small for the training data: "
                     f"{over.tolist()} centre-atom blocks overflowed (largest counts "
                     f"{self.train_cache.max_count.tolist()}); the farthest neighbours are dropped")
        frames = self._statistics_frames()
        # the model-level pair exclusions count as zero rows too (DeePMD-kit's EnvMatStatSe takes
        # the neighbour list without them; the descriptor's exclusions zero the rows)
        davg, dstd = env_stats(self.train_cache, frames, nt, sel, dc.rcut, dc.rcut_smth,
                               exclusion_mask(dc.exclude_types, nt) | exclusion_mask(cfg.pair_exclude_types, nt))
        if dc.set_davg_zero:
            davg[:] = 0.0
        bias = energy_bias(self.train_sys, frames, nt, preset=cfg.preset_out_bias,
                           excluded=np.isin(np.arange(nt), cfg.atom_exclude_types))
        names = cfg.type_map
        self.say("statistics from " + f"{sum(len(f) for f in frames)} frames: "
                 + "; ".join(f"{names[t]}: davg {davg[t, 0, 0]:.4g}, dstd {dstd[t, 0, 0]:.4g}/"
                             f"{dstd[t, 0, 1]:.4g}, bias {bias[t]:.6g} eV"
                             + (" (preset_out_bias)" if cfg.preset_out_bias and cfg.preset_out_bias[t] is not None
                                else "") for t in range(nt))
                 + f"; min_nbor_dist {dist.min_nbor_dist:.4g} A ({time.perf_counter() - t0:.1f} s)")
        return sel, davg, dstd, bias, dist.s_range, dist.min_nbor_dist

    def _input_statistics(self) -> dict:
        """fparam_avg and fparam_inv_std of a model with frame parameters, aparam_avg and
        aparam_inv_std of one with atomic parameters (empty without either): the mean and
        standard deviation (at least [model] data_stat_protect, 1e-2) of each parameter over the
        statistics frames (the atomic ones over every atom of them), as DeePMD-kit's fitting
        computes them (`param_stats`)."""
        fc = self.cfg.fitting
        out = {}
        for name, n, what, values in (("fparam", fc.numb_fparam, "frame", [s.fparam for s in self.train_sys]),
                                      ("aparam", fc.numb_aparam, "atomic", [s.aparam for s in self.train_sys])):
            if n == 0:
                continue
            frames = self._statistics_frames()
            avg, inv_std = param_stats(values, frames, fc.data_stat_protect)
            self.say(f"{what} parameters from {sum(len(f) for f in frames)} frames: mean "
                     f"{np.array2string(avg, precision=4)}, std {np.array2string(1.0 / inv_std, precision=4)}")
            out.update({f"{name}_avg": avg, f"{name}_inv_std": inv_std})
        return out

    def _data_init(self) -> None:
        """A new run's last touch to the random networks.

        The output layers of the fitting nets start at zero (weights and bias): the initial
        model is the energy bias alone — no random energy landscape of order 1 eV per atom and
        no random forces and virials for the first steps to unlearn (DeePMD-kit draws them at
        random).  The first layers are rescaled so that their pre-activations spread by
        `[training] init_spread` across the atoms of the statistics frames
        (numdp.train.init.spread_first_layers; DeePMD-kit's draw gives ~0.005).
        """
        if self.init_model is not None:  # (a model given by --init-model is kept as it is)
            return
        nets = self.params.fitting.nets
        for net in nets:
            net.layers[-1].w[:] = 0.0
            net.layers[-1].b[:] = 0.0
        spread = self.cfg.training.init_spread
        if spread > 0.0:
            factors = spread_first_layers(nets, self.stat_descriptors(), spread)
            names = self.cfg.type_map
            self.say("fitting nets' first layers x " + ", ".join(
                f"{names[t]} {x:.3g}" for t, x in sorted(factors.items()))
                + f": pre-activations spread {spread:g} across the statistics frames' atoms")
            capped = [names[t] for t, x in sorted(factors.items()) if x == MAX_SPREAD_FACTOR]
            if capped:
                self.say(f"note: the statistics frames' {', '.join(capped)} atoms have nearly the same "
                         f"environments; their first layer was scaled by the bound {MAX_SPREAD_FACTOR:g}, "
                         f"a smaller spread than {spread:g}")

    def stat_descriptors(self) -> dict[int, np.ndarray]:
        """Fitting-net inputs per centre type t of the statistics frames' atoms under the current
        embedding nets (a new run's; the frames davg/dstd came from): descriptor rows D
        (n_t, M*M<), then the normalised frame and atomic parameters of a model that takes them
        (`ModelPasses.descriptors`)."""
        rows: dict[int, list[np.ndarray]] = {}
        for k, idx in enumerate(self._statistics_frames()):
            for f in idx:
                self.passes.primal(self.train_cache.frame(k, int(f)))
                for t, D in self.passes.descriptors().items():
                    rows.setdefault(t, []).append(D)
        return {t: np.concatenate(v) for t, v in rows.items()}

    def _load_state(self, ck: Checkpoint) -> None:
        if ck.theta.shape != self.flat.theta.shape:
            raise InputError(f"{self.restart}: checkpoint has {ck.theta.size} parameters, the model of "
                             f"{self.cfg.source.name} has {self.flat.size}: networks differ")
        if ck.step > self.cfg.training.numb_steps:
            raise InputError(f"{self.restart}: checkpoint is at step {ck.step}, beyond "
                             f"{steps_text(self.cfg.training.numb_steps, self.cfg.training.numb_epoch)}")
        if ck.precond_scale is not None:
            raise InputError(f"{self.restart}: checkpoint was written with [training] precondition, "
                             f"which numdp no longer supports; start a new run (its model can "
                             f"seed one: --init-model)")
        self.flat.theta[:] = ck.theta
        self.adam.m[:] = ck.adam_m
        self.adam.v[:] = ck.adam_v
        self.adam.t = ck.adam_t
        self.sampler.restore(ck.sampler)
        if self.valid_sampler is not None and ck.valid_sampler is not None:
            self.valid_sampler.restore(ck.valid_sampler)
        self.start_step = ck.step
        self.elapsed0 = ck.elapsed

    # ------------------------------------------------------------------ steps
    def prefactors(self, step: int) -> tuple[float, Prefactors]:
        lr = self.sched.lr(step)
        return lr, self.prefs.at(lr, self.sched.start_lr)

    def _batch_loss(self, systems: list[DataSystem], cache: FrameCache, k: int, idx, pref: Prefactors,
                    stats: LossStats, grad: bool, update=None) -> None:
        """Add one batch to `stats`; with `grad`, also accumulate its loss gradient in the passes
        (and let them make the optimiser's `update` of what they finish early: `ModelPasses.frames`)."""
        self._batches_loss(systems, cache, [(k, idx)], pref, stats, grad, update)

    def _batches_loss(self, systems: list[DataSystem], cache: FrameCache, batches, pref: Prefactors,
                      stats: LossStats, grad: bool, update=None) -> None:
        """Add batches [(system k, frame indices)] to `stats` in order; with `grad`, also
        accumulate their loss gradient.  All their frames go to the passes at once (frames in
        parallel over the worker threads).  Timings: `data` is the frames' preparation; the
        rest of the wall time is split between `forward` and `backward` in proportion to the
        time the workers spent in each."""
        tm = self.timings
        t0 = time.perf_counter()
        frames, labels, sizes = [], [], []
        for k, idx in batches:
            s = systems[k]
            for f in idx:
                frames.append(cache.frame(k, int(f)))
                labels.append(s.labels(int(f)))
                sizes.append(len(idx))
        excluded = self.params.atom_excluded   # atom_exclude_types: out of the loss, as DeePMD-kit's mask
        included = [~excluded[fr.types] if excluded.any() else None for fr in frames]
        totals = batch_atoms(frames, included, sizes)
        t1 = time.perf_counter()
        def seeds_of(i, res):  # on a worker thread: a private LossStats, only for the seeds
            return LossStats(self.loss_options).add_frame(res, labels[i], pref, sizes[i], included[i],
                                                          totals[i])

        busy = self.passes.busy
        busy[:] = 0.0
        results = self.passes.frames(frames, seeds_of if grad else None, update if grad else None)
        wall = time.perf_counter() - t1
        fwd, bwd = float(busy[:, 0].sum()), float(busy[:, 1].sum())
        share = fwd / (fwd + bwd) if fwd + bwd > 0 else 1.0
        tm["data"] += t1 - t0
        tm["forward"] += wall * share
        tm["backward"] += wall * (1.0 - share)
        i = 0
        for _, idx in batches:
            for _ in idx:
                stats.add_frame(results[i], labels[i], pref, sizes[i], included[i], totals[i])
                i += 1
            stats.end_batch()

    def train_step(self, step: int, display: bool) -> tuple[LossStats, LossStats | None]:
        """One update at step `step` (0-based): returns the stats of the step's batch at θ before
        the update and, if `display`, the validation stats of θ after it (with the prefactors of
        step `step`), DeePMD-kit's lcurve row step + 1."""
        lr, pref = self.prefactors(step)
        t0 = time.perf_counter()
        k, idx = self.sampler.next()
        self.timings["data"] += time.perf_counter() - t0
        self.passes.zero_grad()
        stats = LossStats(self.loss_options)
        max_norm = self.cfg.training.gradient_max_norm
        # the passes may update the weights whose gradient they finish first (`ModelPasses.frames`),
        # but not with clipping (its factor needs the whole gradient)
        update = None if max_norm > 0.0 else self.adam.row_update(self.flat.theta, self.passes.grads, lr)
        self._batch_loss(self.train_sys, self.train_cache, k, idx, pref, stats, True, update)
        scale = self._clip_scale(step, max_norm) if max_norm > 0.0 else 1.0
        t1 = time.perf_counter()
        self.adam.step(self.flat.theta, self.passes.grads, lr, self.passes.split, self.passes.segments,
                       self.passes.updated, scale)
        if self.theta_ema is not None:
            weight = 1.0 - self.cfg.training.ema_decay
            self.passes.split(lambda lo, hi: ema_update(self.theta_ema, self.flat.theta, weight, lo, hi),
                              self.flat.size)
        self.timings["optimizer"] += time.perf_counter() - t1
        vstats = self.validate(pref) if display else None   # θ after the update, as DeePMD-kit's
        return stats, vstats

    def _clip_scale(self, step: int, max_norm: float) -> float:
        """The clipping factor of step `step`'s gradient (numdp.train.optim.clip_scale); a
        non-finite gradient norm stops the run before the update (TrainingDiverged)."""
        t0 = time.perf_counter()
        norm = grad_norm(self.passes.grads, without_ranges(self.passes.segments, self.adam.frozen))
        self.timings["optimizer"] += time.perf_counter() - t0
        if not math.isfinite(norm):
            raise TrainingDiverged(
                f"step {step}: the gradient norm is {norm}: training has diverged (stopped before "
                f"this step's update; [training] gradient_max_norm measures the norm)")
        return clip_scale(norm, max_norm)

    def validate(self, pref: Prefactors) -> LossStats | None:
        """Loss and RMSEs of the current model on numb_btch validation batches."""
        if self.valid_sampler is None:
            return None
        t0 = time.perf_counter()
        saved = dict(self.timings)
        vs = LossStats(self.loss_options)
        batches = [self.valid_sampler.next() for _ in range(self.cfg.validation.numb_btch)]
        self._batches_loss(self.valid_sys, self.valid_cache, batches, pref, vs, False)
        self.timings.update(saved)
        self.timings["validation"] += time.perf_counter() - t0
        return vs

    def test(self, systems: list[DataSystem], cache: FrameCache) -> TestResult:
        """RMSE of the current model over every frame of `systems` (like `dp test`)."""
        st = LossStats()
        zero = Prefactors(0.0, 0.0, 0.0)
        n = 0
        step = 4 * self.nthreads  # frames per call: whole rounds for the workers
        for k, s in enumerate(systems):
            for f0 in range(0, s.nframes, step):
                idx = range(f0, min(f0 + step, s.nframes))
                results = self.passes.frames([cache.frame(k, f) for f in idx])
                for f, res in zip(idx, results):
                    st.add_frame(res, s.labels(f), zero, 1)
                    n += 1
        return TestResult(n, st.rmse_e, st.rmse_f, st.rmse_v)

    # ------------------------------------------------------------------ checkpoints and output
    def checkpoint(self, step: int, elapsed: float) -> None:
        ck = Checkpoint(step=step, theta=self.flat.theta, adam_m=self.adam.m, adam_v=self.adam.v,
                        adam_t=self.adam.t, sel=list(self.params.descriptor.sel),
                        davg=self.params.descriptor.davg, dstd=self.params.descriptor.dstd,
                        out_bias=self.params.out_bias, s_range=self.params.s_range,
                        min_nbor_dist=self.params.min_nbor_dist, sampler=self.sampler.state(),
                        **{n: getattr(self.params.fitting, n) for n in Checkpoint.INPUT_STATS},
                        valid_sampler=self.valid_sampler.state() if self.valid_sampler else None,
                        input_text=self.cfg.text, elapsed=elapsed, theta_ema=self.theta_ema,
                        seed=self.seed)
        write_checkpoint(ck, self.cfg.training.save_ckpt)
        if self.deepmd_names is not None:
            self.deepmd_names.publish(self.cfg.training.save_ckpt)

    def _output_paths(self) -> list[Path]:
        """Every file this run writes: the training section's (`TrainingConfig.output_files`),
        then those of dp's checkpoint names (`DeepmdNames.paths`), if any."""
        dp = [] if self.deepmd_names is None else self.deepmd_names.paths()
        return [path for _, path in self.cfg.training.output_files()] + dp

    def _figures(self, st: LossStats | None) -> np.ndarray:
        """The lcurve figures of `st` in the order of `_lcurve_kinds` (nan for None)."""
        return np.array([math.nan if st is None else st.shown(kind) for kind in self._lcurve_kinds()])

    def _row(self, step, train: np.ndarray, vstats, lr) -> list[float]:
        """An lcurve row: `train` the training figures (`_figures`, or their mean over the display
        interval with disp_avg), each after the validation's when there is validation data."""
        if not self.valid_sys:
            return train.tolist() + [lr]
        return np.column_stack([self._figures(vstats), train]).ravel().tolist() + [lr]

    def _lcurve_kinds(self) -> list[str]:
        p = self.prefs
        return lcurve_kinds(p.has_v, p.has_ae, p.has_pf, self.loss_options.mae, has_e=p.has_e, has_f=p.has_f)

    # ------------------------------------------------------------------ the run
    def run(self) -> History:
        """Train to numb_steps; returns the lcurve rows.  Raises TrainingInterrupted after SIGINT or
        SIGTERM (numdp.signals)."""
        cfg = self.cfg
        tr = cfg.training
        total = tr.numb_steps
        p = self.prefs
        columns = lcurve_columns(bool(self.valid_sys), p.has_v, p.has_ae, p.has_pf, self.loss_options.mae,
                                 has_e=p.has_e, has_f=p.has_f)
        history = History(columns)
        outputs = self._output_paths()  # checked in __init__
        # a new run keeps the previous run's files under numbered names, and gives them their names
        # back if it fails before its first step is done (numdp.io.backup.Backups)
        backups = Backups.move(outputs) if self.restart is None else Backups.none()
        if backups.moved:
            self.say(backups.line())
        with backups, StopRequest("train") as stop:
            lcurve = Lcurve(tr.disp_file, columns, self.start_step if self.restart else None)
            if lcurve.backup is not None:
                d = lcurve.dropped
                self.say(f"{tr.disp_file}: {len(d)} row(s) of steps {d[0]}-{d[-1]}, beyond the checkpoint's step "
                         f"{self.start_step}, left out (the file as it was: {lcurve.backup.name})")
            progress = Progress(0, total, "auto", self.stream, bar_width=0, elapsed0=self.elapsed0)
            start = time.monotonic()
            step = self.start_step
            saved_at = None
            running = None
            interval_sum, interval_n = None, 0
            first = None
            # with relative_f the force RMSE is of relative errors (DeePMD-kit's rmse_f)
            f_unit = "meV/A" if cfg.loss.options.relative_f is None else "e-3 rel"
            try:
                while step < total:
                    # DeePMD-kit's display step: row `done` after the update of step `step`; with
                    # disp_training false none (no validation, no row), as DeePMD-kit's
                    done = step + 1
                    display = tr.disp_training and (done % tr.disp_freq == 0 or done == 1)
                    try:
                        stats, vstats = self.train_step(step, display)
                    finally:
                        self._compile_notice.stop()  # after the first step (idempotent)
                    if first is None:   # the first step's time and phases (`_first_step`)
                        first = (time.monotonic() - start, dict(self.timings))
                    backups.keep()  # a step is done: from here on a failure keeps both runs' files
                    lr = self.sched.lr(step)
                    running = stats.loss() if running is None else 0.9 * running + 0.1 * stats.loss()
                    figures = self._figures(stats)
                    if tr.disp_avg:   # DeePMD-kit's: the mean over the steps since the last row
                        interval_sum = figures if interval_sum is None else interval_sum + figures
                        interval_n += 1
                    if display:
                        row = self._row(done, interval_sum / interval_n if tr.disp_avg else figures, vstats, lr)
                        lcurve.row(done, row)
                        history.rows[done] = row
                        interval_sum, interval_n = None, 0
                    step = done
                    elapsed = time.monotonic() - start
                    if step % tr.save_freq == 0 or step == total:
                        self.checkpoint(step, self.elapsed0 + elapsed)
                        saved_at = step
                    if self.on_step is not None:
                        self.on_step(step)
                    if stop.requested and step < total:   # in the last step: training is complete (below)
                        if saved_at != step:
                            self.checkpoint(step, self.elapsed0 + elapsed)
                        raise TrainingInterrupted(step, tr.save_ckpt,
                                                  STDOUT_CLOSED if stop.by_closed_stdout else None)
                    progress.update(step, f"loss {running:9.3e}  e {stats.rmse_e * 1e3:8.3f} meV/atom  "
                                          f"f {stats.rmse_f * 1e3:8.2f} {f_unit}  lr {lr:8.2e}",
                                    line=display)
                # (no row after the last step unless it is a display step: DeePMD-kit's end)
                progress.finish()
            finally:
                lcurve.close()
                progress.finish()
        wall = time.monotonic() - start
        self.wall = wall
        nsteps = total - self.start_step
        if tr.change_bias_after_training and nsteps:
            self.change_bias("change_bias_after_training")
            self.checkpoint(total, self.elapsed0 + wall)
        self.write_model()
        if nsteps:
            ema = "" if self.theta_ema is None else f" (moving average: {ema_model_path(tr.model_file)})"
            dn = self.deepmd_names
            also = "" if dn is None else f" (also as {dn.checkpoint.name}, DeePMD-kit's {dn.backend} name)"
            compiled = self._first_step(first, nsteps)
            per = (f"{wall / nsteps:.4f} s/step" if compiled is None else
                   f"{(wall - compiled[0]) / (nsteps - 1):.4f} s/step; the first step, {compiled[0]:.1f} s, left out: "
                   f"this run compiled kernels")
            self.say(f"trained {nsteps} steps in {wall:.1f} s ({per}); model "
                     f"written to {tr.model_file}{ema}; checkpoint {tr.save_ckpt}{also}; learning curve {tr.disp_file}")
            self.say(self.timing_table(nsteps, None if compiled is None else compiled[1]))
        else:
            self.say(self.timing_table(nsteps))
        if stop.requested:   # during the last step: the model is written, the validation skipped
            line = (f"{STDOUT_CLOSED if stop.by_closed_stdout else stop.signame + ' received'} during the last "
                    f"step: training is complete (step {total}; model {tr.model_file})")
            self.say(line)
            raise agreed_stop(line, 128 + stop.signum)
        if self.valid_sys:
            res = self.test(self.valid_sys, self.valid_cache)
            self.final_test = res
            over = self.valid_cache.overflow
            if over.any():
                sel = list(self.params.descriptor.sel)
                zero = [self.params.type_map[t] for t, n in enumerate(sel) if n == 0 and over[t]]
                note = (f"; sel 0 for {', '.join(zero)} (never within rcut in the training data): its atoms are "
                        "no atom's neighbours, as in DeePMD-kit" if zero else "")
                self.say(f"warning: sel {sel} overflowed in the validation data ({over.tolist()} centre-atom "
                         f"blocks; largest counts {self.valid_cache.max_count.tolist()}){note}")
            self.say(f"validation over {res.nframes} frames (all validation data): {res.figures()}")
            if self.theta_ema is not None:
                with self.ema_weights():
                    self.final_test_ema = self.test(self.valid_sys, self.valid_cache)
                self.say(f"validation of the moving average (enable_ema): {self.final_test_ema.figures()}")
        return history

    @contextlib.contextmanager
    def ema_weights(self):
        """θ replaced by its moving average (enable_ema) inside the block, in place (the passes
        and params read θ's arrays), and given back after."""
        saved = self.flat.theta.copy()
        self.flat.theta[:] = self.theta_ema
        try:
            yield
        finally:
            self.flat.theta[:] = saved

    def change_bias(self, why: str) -> np.ndarray:
        """DeePMD-kit's change_bias_after_training: add to out_bias the least-squares per-type
        shift of the energy errors of the current model over the statistics frames (the
        frames drawn for davg/dstd, drawn again from the run's seed).  Returns the shift (ntypes,)
        eV; `why` names the cause in the message."""
        frames = self._statistics_frames()
        # (systems without energy labels take no part in the fit: not evaluated)
        predicted = [None if self.train_sys[k].energy is None else
                     np.array([r.energy for r in self.passes.frames([self.train_cache.frame(k, int(f)) for f in idx])])
                     for k, idx in enumerate(frames)]
        nt = len(self.cfg.type_map)
        delta = energy_bias(self.train_sys, frames, nt, predicted, excluded=self.params.atom_excluded)
        p = self.params
        old = p.out_bias.copy()
        p.out_bias += delta   # (the passes read the bias from params: ModelPasses.atom_bias)
        names = self.cfg.type_map
        self.say(f"{why}: energy bias "
                 + ", ".join(f"{names[t]} {old[t]:.6g} -> {p.out_bias[t]:.6g} eV" for t in range(nt)))
        return delta

    def timing_table(self, nsteps: int, first: dict | None = None) -> str:
        """The phases' time per step; with `first` (the phases' times after the first step) over
        the steps after it."""
        if first is None:
            n = max(nsteps, 1)
            parts = [f"{p} {self.timings[p] / n * 1e3:.1f}" for p in PHASES]
            return "time per step (ms): " + ", ".join(parts)
        parts = [f"{p} {(self.timings[p] - first[p]) / (nsteps - 1) * 1e3:.1f}" for p in PHASES]
        return "time per step after the first (ms): " + ", ".join(parts)

    def _first_step(self, first, nsteps: int):
        """(wall s, phase times) of the first step when kernels were compiled in the run and other
        steps followed (a first run's compile is not a step's time), else None."""
        if first is None or nsteps < 2 or not self._compile_notice.compiled:
            return None
        return first

    def write_model(self) -> None:
        p = self.params
        p.info = {"software": "numdp", "version": __version__, "training_input": self.cfg.text,
                  "numb_steps": self.cfg.training.numb_steps, "seed": self.seed}
        write_model(p, self.cfg.training.model_file)
        if self.theta_ema is not None:
            with self.ema_weights():
                p.info = {**p.info, "ema_decay": self.cfg.training.ema_decay}
                write_model(p, ema_model_path(self.cfg.training.model_file))

    def _restore_threads(self) -> None:
        """Give NumPy's BLAS and Numba back their thread counts from before the trainer."""
        if self._old_blas is not None:
            set_blas_threads(self._old_blas)
            self._old_blas = None
        if self._old_numba is not None:
            numba.set_num_threads(self._old_numba)
            self._old_numba = None

    def close(self) -> None:
        """Stop the worker threads and restore NumPy's BLAS thread count."""
        self._compile_notice.stop()
        self.passes.close()
        self._restore_threads()
