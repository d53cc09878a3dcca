"""The `numdp train` input: a TOML file with DeePMD-kit's sections and key names.

`load_config(path)` returns a validated `TrainConfig`; every mistake (unknown key, wrong type,
bad value, missing system) raises InputError with a one-line message naming the file, the
section and the key, e.g. ``train.toml: [loss] start_pref_x: unknown key``.  Relative paths
(systems and outputs) are taken relative to the directory of the input file.  DeePMD-kit's
`input.json` is read too: numdp.train.deepmd_json rearranges it into these sections (its paths
are taken against the working directory, as DeePMD-kit does).  The checks are
`numdp.validate.Table`'s (shared with `numdp run`); to add a key, read it from its section in
`parse_config` (a key not read is rejected by the section's `done()`).

Schema (defaults in brackets; see also docs/training.md)::

    [model]               type_map (list of element names, required), preset_out_bias [none;
                          { ELEMENT = eV }: those types' energy bias fixed in the statistics],
                          data_stat_protect [0.01; the least std of a frame/atomic parameter],
                          pair_exclude_types [[]] (type index pairs: not neighbours),
                          atom_exclude_types [[]] (type indices: atomic energy zero)
    [model.descriptor]    type ["se_e2_a"], rcut [6.0], rcut_smth [0.5], sel ["auto"],
                          neuron [[10, 20, 40]], axis_neuron [4], type_one_side [false],
                          resnet_dt [false], seed [none], activation_function ["tanh"],
                          exclude_types [[]] (type index pairs [[ti, tj], ...]), trainable [true]
    [model.fitting]       type ["ener"], neuron [[120, 120, 120]], resnet_dt [true], seed [none],
                          activation_function ["tanh"], numb_fparam [0], default_fparam [none],
                          numb_aparam [0], use_aparam_as_mask [false; true is refused],
                          trainable [true; or one boolean per layer, len(neuron) + 1]
                          (also accepted as [model.fitting_net])
    [learning_rate]       type ["exp"], start_lr [1e-3], stop_lr [5e-8], decay_steps [5000]
    [loss]                type ["ener"], start_pref_e [0.02], limit_pref_e [1.0],
                          start_pref_f [1000], limit_pref_f [1.0], start_pref_v [0], limit_pref_v [0],
                          start_pref_ae [0], limit_pref_ae [0] (atom_ener.npy),
                          start_pref_pf [0], limit_pref_pf [0] (atom_pref.npy), use_default_pf
                          [false], relative_f [none; > 0 eV/A], enable_atom_ener_coeff [false]
                          (atom_ener_coeff.npy), intensive_ener_virial [false], use_huber [false],
                          huber_delta [0.01; or [energy, force, virial]], f_use_norm [false],
                          loss_func ["mse"; "mae"]; DeePMD-kit 3.2's energy loss (numdp.train.loss;
                          generalized-force and Hessian terms are refused: `LossConfig`)
    [training]            systems (required), rglob_patterns [none; folders below systems matching
                          one], batch_size ["auto"; "auto:K", "max:K", "filter:K", an
                          integer, or one integer per system],
                          numb_steps or numb_epoch (one of them; `STEPS_NAMES`,
                          `EPOCH_NAMES`: DeePMD-kit's aliases; numb_epoch is turned into
                          numb_steps once the data is loaded: `resolve_steps`),
                          gradient_max_norm [0 = off], enable_ema [false], ema_decay [0.999],
                          min_pair_dist [0 = off; > 0 Å: training frames with a closer pair left out],
                          seed [none], disp_freq [1000], save_freq [1000], disp_file ["lcurve.out"],
                          save_ckpt ["model.ckpt.h5"], model_file ["model.h5"],
                          data_stat_nbatch [10], disp_training [true], disp_avg [false],
                          init_spread [0.15],
                          auto_prob ["prob_sys_size"], sys_probs [none] (`AutoProb`,
                          numdp.train.data.system_probs)
                          (`precondition`, a former numdp option, is refused when true and
                          ignored when false: see docs/training.md)
    [validation]          systems [none], rglob_patterns [none], batch_size ["auto"], numb_btch [1],
                          auto_prob, sys_probs
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..model.params import exclusion_mask
from ..validate import (REQUIRED, TRAIN_WORDING, Table, distinct_files, load_toml, parse_toml_text, resolve_path,
                        show_value)
from .loss import HuberDeltas, LossFunc, LossOptions
from .schedule import CosineDecay, ExpDecay, LRType, PrefactorSchedule, Schedule, WSDDecay, WSDRule


PRECONDITION_REMOVED = ("no longer supported: it helped water but hurt copper (force RMSE 166 "
                        "instead of 39 meV/A after 1000 steps); delete the key (docs/training.md)")


@dataclass
class DescriptorConfig:
    rcut: float = 6.0
    rcut_smth: float = 0.5
    sel: list[int] | None = None
    """Slots per neighbour type, or None for "auto" (then `sel_factor` applies)."""
    sel_factor: float = 1.1
    neuron: list[int] = field(default_factory=lambda: [10, 20, 40])
    axis_neuron: int = 4
    type_one_side: bool = False
    resnet_dt: bool = False
    seed: int | None = None
    set_davg_zero: bool = False
    """Keep davg at zero (DeePMD-kit's set_davg_zero); dstd is computed as usual."""
    exclude_types: list[list[int]] = field(default_factory=list)
    """Excluded (centre, neighbour) type index pairs, either order (Descriptor.exclude_types)."""
    activation: str = "tanh"
    """The embedding nets' activation_function (numdp.model.activation.NAMES)."""
    trainable: bool = True
    """False: the embedding nets keep their initial (or --init-model) parameters."""


@dataclass
class FittingConfig:
    neuron: list[int] = field(default_factory=lambda: [120, 120, 120])
    resnet_dt: bool = True
    seed: int | None = None
    activation: str = "tanh"
    """The hidden layers' activation_function (numdp.model.activation.NAMES)."""
    numb_fparam: int = 0
    """Frame parameters the nets take (fparam.npy of the data; numdp.model.params.Fitting)."""
    default_fparam: list[float] | None = None
    """The frame parameters of a system without fparam.npy (None: such a system is an error)."""
    numb_aparam: int = 0
    """Atomic parameters the nets take per atom (aparam.npy of the data, required;
    numdp.model.params.Fitting)."""
    trainable: list[bool] | None = None
    """Per layer (hidden layers, then the output layer) whether it trains; None: every layer."""
    data_stat_protect: float = 1e-2
    """[model] data_stat_protect (DeePMD-kit's): the least standard deviation the statistics
    give a frame or atomic parameter (numdp.train.stats.param_stats)."""


@dataclass
class ModelConfig:
    """[model] of a training input: the networks' type map and shapes."""

    type_map: list[str]
    descriptor: DescriptorConfig
    fitting: FittingConfig
    preset_out_bias: list[float | None] | None = None
    """DeePMD-kit's preset_out_bias: per type, the energy bias (eV) it takes instead of the
    statistics' least squares, or None (fitted); None when no type has one."""
    pair_exclude_types: list[list[int]] = field(default_factory=list)
    """DeePMD-kit's model-level pair_exclude_types (ModelParams.pair_exclude_types)."""
    atom_exclude_types: list[int] = field(default_factory=list)
    """DeePMD-kit's model-level atom_exclude_types (ModelParams.atom_exclude_types)."""


@dataclass
class LearningRateConfig:
    """[learning_rate]: DeePMD-kit 3.2's schedules (numdp.train.schedule).  stop_lr is given or
    start_lr · stop_lr_ratio; warmup_steps is given or ⌊warmup_ratio · numb_steps⌋."""

    type: LRType = LRType.EXP
    start_lr: float = 1e-3
    stop_lr: float = 5e-8
    warmup_steps: int = 0
    warmup_start_factor: float = 0.0
    decay_steps: int = 5000           # exp
    decay_rate: float | None = None   # exp: None = from start_lr, stop_lr and the steps
    smooth: bool = False              # exp
    decay_phase_ratio: float = 0.1    # wsd
    decay_type: WSDRule = WSDRule.INVERSE_LINEAR   # wsd
    warmup_ratio: float | None = None  # as given; warmup_steps is set from it

    def schedule(self, numb_steps: int) -> Schedule:
        """The schedule of a run of numb_steps steps."""
        n = numb_steps - self.warmup_steps
        if self.type is LRType.EXP:
            decay = ExpDecay.create(self.start_lr, self.stop_lr, self.decay_steps, n,
                                    self.decay_rate, self.smooth)
        elif self.type is LRType.COSINE:
            decay = CosineDecay(self.start_lr, self.stop_lr, n)
        else:
            decay = WSDDecay.create(self.start_lr, self.stop_lr, n, numb_steps,
                                    self.decay_phase_ratio, self.decay_type)
        return Schedule(decay, self.warmup_steps, self.warmup_start_factor * self.start_lr)


class OptimizerType(Enum):
    """`[optimizer] type`: PyTorch's Adam (weight decay as an L2 term of the gradient) or AdamW
    (decoupled weight decay), as DeePMD-kit 3.2 uses them."""

    ADAM = "Adam"
    ADAMW = "AdamW"


@dataclass
class OptimizerConfig:
    """[optimizer] (DeePMD-kit 3.2's `optimizer`): β1, β2 and the weight decay (default 0 for
    Adam, 0.001 for AdamW)."""

    type: OptimizerType = OptimizerType.ADAM
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    weight_decay: float = 0.0


@dataclass
class LossConfig:
    """[loss]: DeePMD-kit 3.2's energy loss ("ener"), its keys and defaults (numdp.train.loss
    has the formulas).  Refused with one line each: the generalized-force (start/limit_pref_gf,
    numb_generalized_coord) and Hessian (start/limit_pref_h) terms unless 0; the combinations
    DeePMD-kit refuses (f_use_norm without use_huber or loss_func "mae"; use_huber with the
    weighted-force term or relative_f) and the one where it ignores a key (use_huber with "mae")."""

    start_pref_e: float = 0.02
    limit_pref_e: float = 1.0
    start_pref_f: float = 1000.0
    limit_pref_f: float = 1.0
    start_pref_v: float = 0.0
    limit_pref_v: float = 0.0
    start_pref_ae: float = 0.0
    limit_pref_ae: float = 0.0
    start_pref_pf: float = 0.0
    limit_pref_pf: float = 0.0
    options: LossOptions = field(default_factory=LossOptions)

    def prefactors(self) -> PrefactorSchedule:
        """The prefactors' schedule of the run."""
        return PrefactorSchedule(*(getattr(self, f"{end}_pref_{x}") for x in PREF_TERMS
                                   for end in ("start", "limit")))


PREF_TERMS = ("e", "f", "v", "ae", "pf")
"""The loss terms with start/limit prefactors, in `PrefactorSchedule`'s order."""
UNSUPPORTED_LOSS = {"start_pref_gf": "generalized-force", "limit_pref_gf": "generalized-force",
                    "numb_generalized_coord": "generalized-force", "start_pref_h": "Hessian",
                    "limit_pref_h": "Hessian"}
"""DeePMD-kit [loss] keys of terms numdp does not implement: accepted only as 0."""


@dataclass
class BatchSize:
    """An integer batch size, "auto:K" (⌈K/N⌉ frames for N atoms), DeePMD-kit's list form (one
    integer per system, in the order of the (expanded) systems), or DeePMD-kit's "max:K"
    (max(1, ⌊K/N⌋) frames) and "filter:K" ("max:K", and systems of more than K atoms are left
    out: `numdp.train.data.load_dataset`)."""

    fixed: int | None = None
    auto: int = 32
    per_system: list[int] | None = None
    max_atoms: int | None = None
    filter: bool = False

    def frames(self, natoms: int, system: int | None = None) -> int:
        """Frames per batch of system number `system` (needed by the list form) of `natoms` atoms."""
        if self.per_system is not None:
            if system is None:
                raise ValueError("a per-system batch size needs the system's index")
            return self.per_system[system]
        if self.fixed is not None:
            return self.fixed
        if self.max_atoms is not None:
            return max(1, self.max_atoms // natoms)
        return max(1, -(-self.auto // natoms))


class ProbStyle(Enum):
    """DeePMD-kit's `auto_prob` styles: p_i ∝ nbatch_i (within blocks, if any), or 1/nsys."""

    SYS_SIZE = "prob_sys_size"
    UNIFORM = "prob_uniform"


@dataclass(frozen=True)
class ProbBlock:
    """Systems [start, end) of the expanded list (0-based) drawn together with probability
    weight / Σ weights, shared among them ∝ their number of batches."""

    start: int
    end: int
    weight: float


@dataclass(frozen=True)
class AutoProb:
    """DeePMD-kit's `auto_prob`: "prob_sys_size" (style SYS_SIZE, no blocks: p_i ∝ nbatch_i),
    "prob_uniform" (p_i = 1/nsys), or "prob_sys_size;A:B:w;..." (SYS_SIZE with `blocks`:
    disjoint, within the systems, not all of weight 0; systems in no block are never drawn)."""

    style: ProbStyle = ProbStyle.SYS_SIZE
    blocks: tuple[ProbBlock, ...] = ()


SHARE_TOL = 1e-8
"""DeePMD-kit's tolerance on 1 − Σ(sys_probs entries ≥ 0): within it nothing is left to share."""


@dataclass
class TrainingConfig:
    systems: list[Path] = field(default_factory=list)
    batch_size: BatchSize = field(default_factory=BatchSize)
    auto_prob: AutoProb = field(default_factory=AutoProb)
    sys_probs: list[float] | None = None
    """DeePMD-kit's sys_probs, one entry per system (when given it wins over `auto_prob`): an
    entry ≥ 0 is that system's probability, the negative entries share 1 − Σ(entries ≥ 0) ∝
    their number of batches (numdp.train.data.system_probs)."""
    numb_steps: int | None = None
    """The run's steps (updates): as given, or None until `resolve_steps` sets them from
    `numb_epoch` once the data is loaded; every later use (schedule, warmup, progress,
    restart, lcurve, model file) reads the value set here."""
    numb_epoch: float | None = None
    """DeePMD-kit's numb_epoch (> 0, may be fractional; instead of numb_steps): the run's steps
    are ⌈numb_epoch · total_numb_batch⌉ (`epoch_steps`)."""
    gradient_max_norm: float = 0.0
    """DeePMD-kit's gradient clipping: > 0 scales the gradient g by min(1, max / (‖g‖₂ + 1e-6))
    before each Adam update (numdp.train.optim.clip_scale); 0 = off."""
    seed: int | None = None
    disp_freq: int = 1000
    save_freq: int = 1000
    disp_file: Path = Path("lcurve.out")
    save_ckpt: Path = Path("model.ckpt.h5")
    deepmd_ckpt: Path | None = None
    """DeePMD-kit's input.json (or YAML): the checkpoint prefix `dp train` would use (its
    save_ckpt, default model.ckpt), under which numdp train leaves dp's checkpoint names
    (numdp.train.checkpoint.DeepmdNames); None for numdp's TOML input."""
    model_file: Path = Path("model.h5")
    data_stat_nbatch: int = 10
    disp_training: bool = True
    disp_avg: bool = False
    """lcurve's training columns averaged over the steps since the previous row (DeePMD-kit's)."""
    init_spread: float = 0.15
    """Spread across atoms of the fitting nets' first-layer pre-activations at the start
    (numdp.train.init.spread_first_layers); 0 keeps DeePMD-kit's draw."""
    enable_ema: bool = False
    """DeePMD-kit's exponential moving average of the parameters: after every update
    θ_ema ← θ_ema + (1 - ema_decay)·(θ - θ_ema), from θ at the start; written to the
    checkpoint and, at the end, as a model file of its own (`ema_model_path`)."""
    ema_decay: float = 0.999
    min_pair_dist: float = 0.0
    """DeePMD-kit's training_data min_pair_dist (Å): > 0 leaves out the training frames with a
    pair of atoms closer than this (numdp.train.data.drop_close_frames); 0 = off."""
    change_bias_after_training: bool = False
    """After the last update, add to the energy bias the least-squares per-type shift of the
    statistics frames' energy errors (DeePMD-kit's change_bias_after_training)."""

    def output_files(self, label: str = "[training] {}") -> list[tuple[str, Path]]:
        """(label, path) of every file a run writes, in the one order the checks, the output
        preparation and the backups use: disp_file, save_ckpt, model_file and, with enable_ema,
        the moving average's model (`ema_model_path`).  `label` formats each key for messages:
        "[training] {}" (a TOML input's section) or "training.{}" (an input.json's keys)."""
        out = [(label.format("disp_file"), self.disp_file), (label.format("save_ckpt"), self.save_ckpt),
               (label.format("model_file"), self.model_file)]
        if self.enable_ema:
            out.append((f"the moving average's model ({label.format('enable_ema')})", ema_model_path(self.model_file)))
        return out


@dataclass
class ValidationConfig:
    systems: list[Path] = field(default_factory=list)
    batch_size: BatchSize = field(default_factory=BatchSize)
    numb_btch: int = 1
    auto_prob: AutoProb = field(default_factory=AutoProb)
    sys_probs: list[float] | None = None
    """As `TrainingConfig.sys_probs`, for the validation systems."""


@dataclass
class TrainConfig:
    """A validated training input.  `source` is the input file, `text` its content."""

    source: Path
    text: str
    type_map: list[str]
    descriptor: DescriptorConfig
    fitting: FittingConfig
    learning_rate: LearningRateConfig
    loss: LossConfig
    training: TrainingConfig
    validation: ValidationConfig
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    preset_out_bias: list[float | None] | None = None
    """[model] preset_out_bias (`ModelConfig.preset_out_bias`)."""
    pair_exclude_types: list[list[int]] = field(default_factory=list)
    """[model] pair_exclude_types (`ModelConfig.pair_exclude_types`)."""
    atom_exclude_types: list[int] = field(default_factory=list)
    """[model] atom_exclude_types (`ModelConfig.atom_exclude_types`)."""


SECTIONS = ("model", "learning_rate", "loss", "training", "validation", "optimizer")


def _batch_size(sec: Table, key: str) -> BatchSize:
    """The batch size of `key`; a list is checked against the number of systems by
    `_per_system_batch`, once the systems are known."""
    v = sec.raw(key, "auto")
    if isinstance(v, int) and not isinstance(v, bool):
        if v < 1:
            raise sec.error(key, f"must be >= 1, got {v}")
        return BatchSize(fixed=v)
    if isinstance(v, list):
        if not v or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            raise sec.error(key, f"a list must hold one integer per system, got {show_value(v)}")
        if min(v) < 1:
            raise sec.error(key, f"every entry must be >= 1, got {show_value(v)}")
        return BatchSize(per_system=list(v))
    if isinstance(v, str):
        m = re.fullmatch(r"auto(?::(\d+))?", v.strip())
        if m:
            k = int(m.group(1) or 32)
            if k < 1:
                raise sec.error(key, f"auto:N needs N >= 1, got {v!r}")
            return BatchSize(auto=k)
        m = re.fullmatch(r"(max|filter)(?::(\d*))?", v.strip())
        if m:
            if not m.group(2) or int(m.group(2)) < 1:
                raise sec.error(key, f'"{m.group(1)}:N" needs a number of atoms N >= 1, got {v!r}')
            return BatchSize(max_atoms=int(m.group(2)), filter=m.group(1) == "filter")
    raise sec.error(key, f'expected an integer, a list of integers (one per system), "auto", "auto:N", '
                         f'"max:N" or "filter:N", got {show_value(v)}')


def _per_system_batch(sec: Table, key: str, batch: BatchSize, systems: list[Path]) -> None:
    """A list batch size must have one entry per system (after folders are searched for systems)."""
    if batch.per_system is not None and len(batch.per_system) != len(systems):
        n = len(systems)
        raise sec.error(key, f"has {len(batch.per_system)} entries for {n} system{'s' if n != 1 else ''} "
                             f"(give one entry per system, in the order of systems)")


def _auto_prob(sec: Table, key: str, nsys: int) -> AutoProb:
    """DeePMD-kit's `auto_prob` string for `nsys` systems (whitespace around its parts allowed,
    as DeePMD-kit's int()/float() take it)."""
    v = sec.string(key, ProbStyle.SYS_SIZE.value)
    head, *parts = v.split(";")
    if head.strip() == ProbStyle.UNIFORM.value and not parts:
        return AutoProb(ProbStyle.UNIFORM)
    if head.strip() != ProbStyle.SYS_SIZE.value:
        raise sec.error(key, f'expected "prob_sys_size", "prob_uniform" or '
                             f'"prob_sys_size;START:END:WEIGHT;...", got {show_value(v)}')
    blocks: list[ProbBlock] = []
    for part in parts:
        where = f"block {part.strip()!r}"
        fields = part.split(":")
        try:
            if len(fields) != 3:
                raise ValueError
            b = ProbBlock(int(fields[0]), int(fields[1]), float(fields[2]))
        except ValueError:
            raise sec.error(key, f"{where}: expected START:END:WEIGHT (systems START to END-1, "
                                 f"0-based integers; WEIGHT a number)") from None
        if not math.isfinite(b.weight) or b.weight < 0:
            raise sec.error(key, f"{where}: the weight must be a number >= 0")
        if b.start >= b.end:
            raise sec.error(key, f"{where}: START must be smaller than END (systems START to END-1)")
        if b.start < 0 or b.end > nsys:
            raise sec.error(key, f"{where}: outside the {nsys} system{'s' if nsys != 1 else ''} "
                                 f"(0 <= START < END <= {nsys})")
        for o in blocks:
            if b.start < o.end and o.start < b.end:
                raise sec.error(key, f"{where}: overlaps block '{o.start}:{o.end}' (a system "
                                     f"belongs to one block at most)")
        blocks.append(b)
    if parts and not any(b.weight > 0 for b in blocks):
        raise sec.error(key, "every block has weight 0: no system could be drawn")
    return AutoProb(ProbStyle.SYS_SIZE, tuple(blocks))


def _filter_sampling(sec: Table, batch: BatchSize, auto_prob: AutoProb, sys_probs) -> None:
    """Refuse weights per system with batch_size "filter:N", which leaves systems out: the
    weights' positions would no longer name the systems they were written for."""
    if not batch.filter:
        return
    if sys_probs is not None:
        raise sec.error("sys_probs", 'weights per system do not go with batch_size "filter:N", which leaves '
                                     'systems out (remove one of them)')
    if auto_prob.blocks:
        raise sec.error("auto_prob", 'blocks of systems do not go with batch_size "filter:N", which leaves '
                                     'systems out (remove one of them)')


def _lmdb_sampling(sec: Table, systems: list[Path], auto_prob: AutoProb, sys_probs) -> None:
    """Refuse weights per system where systems come from an LMDB dataset: numdp splits a dataset
    into groups of frames (numdp.io.lmdb_system), DeePMD-kit counts blocks in the dataset's own
    system ids; only the default, p_i ∝ batches of group i (every batch equally likely, as
    DeePMD-kit draws an LMDB dataset's batches), means the same in both."""
    from ..io.lmdb_system import is_lmdb

    lmdb = next((p for p in systems if is_lmdb(p)), None)
    if lmdb is None:
        return
    if sys_probs is not None:
        raise sec.error("sys_probs", f"weights per system are not read with an LMDB dataset ({lmdb}): "
                                     f"numdp draws every batch equally likely (remove sys_probs)")
    if auto_prob != AutoProb():
        raise sec.error("auto_prob", f"weights per system are not read with an LMDB dataset ({lmdb}): "
                                     f'numdp draws every batch equally likely ("prob_sys_size", the default)')


def _sys_probs(sec: Table, key: str, nsys: int) -> list[float] | None:
    """DeePMD-kit's `sys_probs` for `nsys` systems, checked so that the probabilities
    numdp.train.data.system_probs makes of it are ≥ 0, sum to 1 and are not all 0."""
    v = sec.raw(key, None)
    if v is None:
        return None
    if not isinstance(v, list) or not v or any(
            isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) for x in v):
        raise sec.error(key, f"expected a list of numbers, one per system, got {show_value(v)}")
    if len(v) != nsys:
        raise sec.error(key, f"has {len(v)} entries for {nsys} system{'s' if nsys != 1 else ''} "
                             f"(give one entry per system, in the order of systems)")
    given = sum(x for x in v if x >= 0)
    sharing = any(x < 0 for x in v)
    if given > 1 + SHARE_TOL:
        raise sec.error(key, f"the entries >= 0 sum to {given:.10g}, more than 1")
    if abs(1 - given) <= SHARE_TOL:
        if sharing:
            raise sec.error(key, "the entries >= 0 sum to 1: nothing is left for the negative "
                                 "entries to share")
    elif not sharing:
        if given == 0:
            raise sec.error(key, "every entry is 0: no system could be drawn")
        raise sec.error(key, f"the entries sum to {given:.10g}, not 1, and no entry is negative to "
                             f"share the {1 - given:.10g} left (a negative entry takes a share "
                             f"∝ its system's number of batches)")
    return [float(x) for x in v]


def _sel(sec: Table, ntypes: int):
    v = sec.raw("sel", "auto")
    if isinstance(v, str):
        m = re.fullmatch(r"auto(?::([0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?))?", v.strip())
        if not m:
            raise sec.error("sel", f'expected a list of integers, "auto" or "auto:FACTOR", got {v!r}')
        factor = float(m.group(1)) if m.group(1) else 1.1
        if not factor > 0:
            raise sec.error("sel", f"auto factor must be > 0, got {v!r}")
        return None, factor
    sel = sec.int_list("sel", minimum=0)
    if len(sel) != ntypes:
        raise sec.error("sel", f"has {len(sel)} entries but type_map has {ntypes} types")
    if sum(sel) == 0:
        raise sec.error("sel", "at least one entry must be > 0")
    return sel, 1.1


def _exclude_types(sec: Table, ntypes: int, key: str = "exclude_types") -> list[list[int]]:
    """[model.descriptor] exclude_types or [model] pair_exclude_types (`key`): pairs of type
    indices (numdp.model.params.exclusion_mask)."""
    v = sec.raw(key, [])
    if not isinstance(v, list):
        raise sec.error(key, f"expected a list of type index pairs [[ti, tj], ...], got {sec.wording.show(v)}")
    try:
        exclusion_mask(v, ntypes)
    except ValueError as exc:
        raise sec.error(key, str(exc)) from None
    return [[int(ti), int(tj)] for ti, tj in v]


def _atom_exclude_types(sec: Table, ntypes: int) -> list[int]:
    """[model] atom_exclude_types: type indices whose atomic energy is zero (sorted, distinct)."""
    v = sec.raw("atom_exclude_types", [])
    if not isinstance(v, list) or any(isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < ntypes
                                      for t in v):
        raise sec.error("atom_exclude_types", f"expected a list of type indices 0..{ntypes - 1}, "
                                              f"got {sec.wording.show(v)}")
    if len(set(v)) == ntypes:
        raise sec.error("atom_exclude_types", "excludes every type: the model would have no energy")
    return sorted(set(int(t) for t in v))


def _systems(sec: Table, key: str, base: Path, required: bool, input_dir: Path | None = None) -> list[Path]:
    """The systems of `key`, paths relative to `base`, folders searched for systems (with the
    section's `rglob_patterns`, DeePMD-kit's, the folders below them matching one).  `input_dir`: the input file's directory
    when `base` is another (input.json: the working directory); a path missing from `base` but
    present there gets a hint in the message."""
    from ..io.location import DataLocation
    from ..io.npy_system import find_systems

    raw = sec.str_list(key, REQUIRED if required else None)
    patterns = sec.str_list("rglob_patterns", None)
    if raw is None:
        return []
    out: list[Path] = []
    for entry in raw:
        p = resolve_path(entry, base)
        try:
            found = find_systems(p, patterns)
        except InputError as exc:
            hint = ""
            if (input_dir is not None and input_dir != base and not DataLocation.parse(p).path.exists()
                    and DataLocation.parse(resolve_path(entry, input_dir)).path.exists()):
                hint = (f" (input.json paths are relative to the working directory, as dp train reads "
                        f"them; {entry!r} is found relative to the input file: run numdp train from {input_dir})")
            raise sec.error(key, str(exc) + hint) from None
        out.extend(found)
    return out


def ema_model_path(model_file: Path) -> Path:
    """Where a run with enable_ema writes the model of the moving average: `model_file` with
    "_ema" before its suffix (DeePMD-kit's rule for its EMA checkpoints): model_ema.h5."""
    model_file = Path(model_file)
    return model_file.with_name(f"{model_file.stem}_ema{model_file.suffix}")


def _output(sec: Table, key: str, default: str, base: Path) -> Path:
    v = sec.raw(key, default)
    if not isinstance(v, str) or not v:
        raise sec.error(key, f"expected a file name, got {show_value(v)}")
    return resolve_path(v, base)


_LR_KEYS = {LRType.EXP: ("decay_steps", "decay_rate", "smooth"), LRType.COSINE: (),
            LRType.WSD: ("decay_phase_ratio", "decay_type")}
"""The keys of [learning_rate] that belong to one type only."""


def _learning_rate(ls: Table) -> LearningRateConfig:
    """[learning_rate] as DeePMD-kit 3.2 reads it (its defaults; its exclusions as one-line
    errors).  The warmup given as a ratio is kept in `warmup_ratio` until the run's steps are
    known (`_warmup_steps`)."""
    lc = LearningRateConfig()
    lc.type = LRType(ls.choice("type", tuple(t.value for t in LRType), LRType.EXP.value))
    for t, keys in _LR_KEYS.items():
        for key in keys:
            if t is not lc.type and ls.has(key):
                raise ls.error(key, f'belongs to type "{t.value}", not "{lc.type.value}"')
    lc.start_lr = ls.number("start_lr", 1e-3, positive=True)
    if ls.has("stop_lr") and ls.has("stop_lr_ratio"):
        raise ls.error("stop_lr_ratio", "give stop_lr or stop_lr_ratio, not both")
    if ls.has("stop_lr_ratio"):
        ratio = ls.number("stop_lr_ratio", positive=True)
        if ratio > 1.0:
            raise ls.error("stop_lr_ratio", f"must be <= 1, got {ratio:g}")
        lc.stop_lr = lc.start_lr * ratio
    else:
        lc.stop_lr = ls.number("stop_lr", 5e-8, positive=True)
        if lc.stop_lr > lc.start_lr:
            raise ls.error("stop_lr", f"must be <= start_lr = {lc.start_lr:g}, got {lc.stop_lr:g}")
    if ls.has("warmup_ratio") and ls.raw("warmup_steps", 0) != 0:
        raise ls.error("warmup_ratio", "give warmup_steps or warmup_ratio, not both")
    lc.warmup_steps = ls.integer("warmup_steps", 0, nonnegative=True)
    ratio = ls.number("warmup_ratio", None, nonnegative=True)
    if ratio is not None and not ratio < 1.0:
        raise ls.error("warmup_ratio", f"must be < 1, got {ratio:g}")
    lc.warmup_ratio = ratio
    lc.warmup_start_factor = ls.number("warmup_start_factor", 0.0, nonnegative=True)
    if lc.type is LRType.EXP:
        lc.decay_steps = ls.integer("decay_steps", 5000, minimum=1)
        lc.decay_rate = ls.number("decay_rate", None, positive=True)
        if lc.decay_rate is not None and lc.decay_rate > 1.0:
            raise ls.error("decay_rate", f"must be in (0, 1], got {lc.decay_rate:g}")
        lc.smooth = ls.boolean("smooth", False)
    elif lc.type is LRType.WSD:
        lc.decay_phase_ratio = ls.number("decay_phase_ratio", 0.1, positive=True)
        if lc.decay_phase_ratio > 1.0:
            raise ls.error("decay_phase_ratio", f"must be in (0, 1], got {lc.decay_phase_ratio:g}")
        lc.decay_type = WSDRule(ls.choice("decay_type", tuple(r.value for r in WSDRule),
                                          WSDRule.INVERSE_LINEAR.value))
    ls.done()
    return lc


def _loss(sec: Table) -> LossConfig:
    """[loss] as DeePMD-kit 3.2 reads its energy loss (`LossConfig`)."""
    sec.choice("type", ("ener",), "ener")
    oc = LossConfig()
    for x in PREF_TERMS:
        for end in ("start", "limit"):
            name = f"{end}_pref_{x}"
            setattr(oc, name, sec.number(name, getattr(LossConfig, name), nonnegative=True))
    for key, term in UNSUPPORTED_LOSS.items():
        if sec.number(key, 0.0) != 0.0:
            raise sec.error(key, f"the {term} loss term is not supported by numdp (only 0)")
    loss_func = LossFunc(sec.choice("loss_func", tuple(f.value for f in LossFunc), LossFunc.MSE.value))
    relative_f = sec.number("relative_f", None, positive=True)
    use_huber = sec.boolean("use_huber", False)
    deltas = _huber_deltas(sec, "huber_delta")
    f_use_norm = sec.boolean("f_use_norm", False)
    mae = loss_func is LossFunc.MAE
    if use_huber and mae:
        raise sec.error("use_huber", 'not with loss_func = "mae" (DeePMD-kit then ignores use_huber): '
                                     "choose one")
    if f_use_norm and not (use_huber or mae):
        raise sec.error("f_use_norm", 'needs use_huber = true or loss_func = "mae" (as in DeePMD-kit)')
    prefs = oc.prefactors()
    if use_huber and (prefs.has_pf or relative_f is not None):
        key = "relative_f" if relative_f is not None else "start_pref_pf"
        raise sec.error(key, "not with use_huber = true (DeePMD-kit has no Huber form of the "
                             "weighted-force or relative force terms)")
    oc.options = LossOptions(relative_f=relative_f,
                             atom_ener_coeff=sec.boolean("enable_atom_ener_coeff", False),
                             use_default_pf=sec.boolean("use_default_pf", False),
                             intensive=sec.boolean("intensive_ener_virial", False),
                             huber=deltas if use_huber else None, f_use_norm=f_use_norm,
                             loss_func=loss_func)
    sec.done()
    if not any((prefs.has_e, prefs.has_f, prefs.has_v, prefs.has_ae, prefs.has_pf)):
        raise sec.table_error("every term is off (a term needs non-zero start and limit prefactors)")
    return oc


def _huber_deltas(sec: Table, key: str) -> HuberDeltas:
    """`huber_delta`: one number > 0 for every term, or [energy, force, virial]."""
    v = sec.raw(key, 0.01)
    values = v if isinstance(v, list) else [v]   # a list has three items (DeePMD-kit's resolve_huber_deltas)
    if len(values) != (3 if isinstance(v, list) else 1) or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0
            for x in values):
        raise sec.error(key, f"expected a number > 0 or a list of three ([energy, force, virial]), "
                             f"got {show_value(v)}")
    e, f, vir = values * 3 if len(values) == 1 else values
    return HuberDeltas(float(e), float(f), float(vir))


def _optimizer(sec: Table) -> OptimizerConfig:
    """[optimizer] as DeePMD-kit 3.2 reads it, for its Adam and AdamW."""
    oc = OptimizerConfig()
    oc.type = OptimizerType(sec.choice("type", tuple(t.value for t in OptimizerType), OptimizerType.ADAM.value))
    for key in ("adam_beta1", "adam_beta2"):
        beta = sec.number(key, getattr(OptimizerConfig, key), nonnegative=True)
        if not beta < 1.0:
            raise sec.error(key, f"must be in [0, 1), got {beta:g}")
        setattr(oc, key, beta)
    oc.weight_decay = sec.number("weight_decay", 0.001 if oc.type is OptimizerType.ADAMW else 0.0,
                                 nonnegative=True)
    sec.done()
    return oc


def _warmup_steps(lc: LearningRateConfig, numb_steps: int, file: str, numb_epoch: float | None = None) -> None:
    """Set the warmup of a ratio from the run's steps (given, or resolved from `numb_epoch`),
    and refuse a warmup as long as the run."""
    key = "warmup_steps"
    if lc.warmup_ratio is not None:
        lc.warmup_steps = int(lc.warmup_ratio * numb_steps)
        key = "warmup_ratio"
    if lc.warmup_steps >= numb_steps:
        raise InputError(f"{file}: [learning_rate] {key}: the warmup ({lc.warmup_steps} steps) must be "
                         f"shorter than {steps_text(numb_steps, numb_epoch)}")


STEPS_NAMES = ("numb_steps", "num_steps", "numb_step", "num_step", "stop_batch")
"""[training] numb_steps and DeePMD-kit 3.2's aliases of it (stop_batch: v1's name)."""
EPOCH_NAMES = ("numb_epoch", "num_epochs", "num_epoch", "numb_epochs")
"""[training] numb_epoch and DeePMD-kit 3.2's aliases of it."""


def _given_name(sec: Table, names: tuple[str, ...]) -> str | None:
    """Which of `names` (a key and its aliases) `sec` gives, or None; two of them is an error
    naming both."""
    given = [n for n in names if sec.has(n)]
    if len(given) > 1:
        raise sec.error(given[1], f"give {given[0]} or {given[1]}, not both (two names of one key)")
    return given[0] if given else None


def _run_length(ts: Table, tc: TrainingConfig) -> None:
    """[training] numb_steps or numb_epoch (either under any of its names), exactly one."""
    steps, epoch = _given_name(ts, STEPS_NAMES), _given_name(ts, EPOCH_NAMES)
    if steps is not None and epoch is not None:
        raise ts.error(epoch, f"give {steps} or {epoch}, not both")
    if epoch is not None:
        tc.numb_epoch = ts.number(epoch, positive=True)
    elif steps is not None:
        tc.numb_steps = ts.integer(steps, minimum=1)
    else:
        raise ts.error("numb_steps", f"{ts.wording.required} (or give numb_epoch)")


def steps_text(numb_steps: int, numb_epoch: float | None = None) -> str:
    """The run's steps in words for messages: "[training] numb_steps = N", or when they came
    from numb_epoch "the run's N steps ([training] numb_epoch = E)"."""
    if numb_epoch is None:
        return f"[training] numb_steps = {numb_steps}"
    return f"the run's {numb_steps} steps ([training] numb_epoch = {numb_epoch:g})"


def epoch_steps(numb_epoch: float, nbatches, prob) -> tuple[int, int]:
    """(steps, total_numb_batch) of a run of `numb_epoch` epochs, DeePMD-kit 3.2's rule:
    total_numb_batch = ⌈max_i nbatch_i / p_i⌉ over the systems with p_i > 0 (p the drawing
    probabilities normalised to sum 1), steps = ⌈numb_epoch · total_numb_batch⌉.

    nbatches: (nsys,) batches per training system (`DataSystem.nbatches`); prob: (nsys,) the
    probabilities of drawing each (numdp.train.data.system_probs)."""
    p = np.asarray(prob, dtype=np.float64)
    p = p / p.sum()
    nb = np.asarray(nbatches, dtype=np.float64)
    drawn = p > 0.0
    total = int(np.ceil(np.max(nb[drawn] / p[drawn])))
    return int(np.ceil(numb_epoch * total)), total


def resolve_steps(cfg: TrainConfig, nbatches, prob) -> int | None:
    """Set `cfg.training.numb_steps` from numb_epoch (`epoch_steps`) once the training data is
    loaded, unless it is set already, and then the warmup (`_warmup_steps`: a warmup as long
    as the run is a one-line InputError).  Returns total_numb_batch when the steps came from
    numb_epoch here, else None."""
    tc = cfg.training
    if tc.numb_steps is not None:
        return None
    tc.numb_steps, total = epoch_steps(tc.numb_epoch, nbatches, prob)
    _warmup_steps(cfg.learning_rate, tc.numb_steps, cfg.source.name, tc.numb_epoch)
    return total


def _activation(sec: Table) -> str:
    """activation_function ["tanh"]: numdp's name of one of DeePMD-kit's functions
    (numdp.model.activation; "linear" and "gelu_tf" are aliases), else a one-line error."""
    from ..model.activation import ALIASES, NAMES, canonical

    act = sec.raw("activation_function", "tanh")
    name = canonical(act) if isinstance(act, str) else None
    if name is None:
        known = ", ".join(list(NAMES) + list(ALIASES))
        raise sec.error("activation_function", f"must be one of {known}; got {show_value(act)}")
    return name


def _fitting_trainable(fs: Table, nlayers: int) -> list[bool] | None:
    """[model.fitting] trainable: true / false for the whole net, or one boolean per layer (the
    hidden layers, then the output layer: len(neuron) + 1, as DeePMD-kit's TensorFlow backend
    takes it); None when every layer trains."""
    raw = fs.raw("trainable", True)
    if isinstance(raw, bool):
        return None if raw else [False] * nlayers
    if not (isinstance(raw, list) and raw and all(isinstance(v, bool) for v in raw)):
        raise fs.error("trainable", f"expected true, false or a list of them, got {show_value(raw)}")
    if len(raw) != nlayers:
        raise fs.error("trainable", f"has {len(raw)} values; the fitting nets have {nlayers} layers "
                                    f"(len(neuron) + 1)")
    return None if all(raw) else list(raw)


def _model(root: Table) -> ModelConfig:
    """[model] (type_map, [model.descriptor], [model.fitting] or [model.fitting_net])."""
    model = root.section("model")
    type_map = model.str_list("type_map")
    if len(set(type_map)) != len(type_map):
        raise model.error("type_map", f"names must be unique, got {type_map}")
    nt = len(type_map)

    ds = model.section("descriptor")
    kind = ds.choice("type", ("se_e2_a", "se_a"), "se_e2_a")
    del kind
    dc = DescriptorConfig()
    dc.rcut = ds.number("rcut", 6.0, positive=True)
    dc.rcut_smth = ds.number("rcut_smth", 0.5, nonnegative=True)
    if not dc.rcut_smth < dc.rcut:
        raise ds.error("rcut_smth", f"must be smaller than rcut = {dc.rcut:g}, got {dc.rcut_smth:g}")
    dc.sel, dc.sel_factor = _sel(ds, nt)
    dc.neuron = ds.int_list("neuron", [10, 20, 40])
    dc.axis_neuron = ds.integer("axis_neuron", 4, minimum=1)
    if dc.axis_neuron > dc.neuron[-1]:
        raise ds.error("axis_neuron", f"must be <= the last neuron width {dc.neuron[-1]}, got {dc.axis_neuron}")
    dc.type_one_side = ds.boolean("type_one_side", False)
    dc.resnet_dt = ds.boolean("resnet_dt", False)
    dc.seed = ds.integer("seed", None, minimum=0)
    dc.set_davg_zero = ds.boolean("set_davg_zero", False)
    dc.exclude_types = _exclude_types(ds, nt)
    dc.activation = _activation(ds)
    dc.trainable = ds.boolean("trainable", True)
    ds.done()

    if model.has("fitting") and model.has("fitting_net"):
        raise model.error("fitting_net", "give either [model.fitting] or [model.fitting_net], not both")
    fkey = "fitting_net" if model.has("fitting_net") else "fitting"
    fs = model.section(fkey, {})
    fs.choice("type", ("ener",), "ener")
    fc = FittingConfig()
    fc.neuron = fs.int_list("neuron", [120, 120, 120])
    fc.resnet_dt = fs.boolean("resnet_dt", True)
    fc.seed = fs.integer("seed", None, minimum=0)
    fc.activation = _activation(fs)
    fc.numb_fparam = fs.integer("numb_fparam", 0, minimum=0)
    if fs.raw("default_fparam", None) is not None:   # (DeePMD-kit's normalised input writes null)
        fc.default_fparam = fs.number_list("default_fparam")
        if len(fc.default_fparam) != fc.numb_fparam:
            raise fs.error("default_fparam", f"has {len(fc.default_fparam)} values, numb_fparam is "
                                              f"{fc.numb_fparam}")
    fc.trainable = _fitting_trainable(fs, len(fc.neuron) + 1)
    fc.numb_aparam = fs.integer("numb_aparam", 0, minimum=0)
    if fs.boolean("use_aparam_as_mask", False):
        raise fs.error("use_aparam_as_mask", "true (the atomic parameters as a mask of the atoms, not "
                                             "fitting inputs) is not supported; numdp feeds them to "
                                             "the fitting nets (false)")
    fs.done()
    fc.data_stat_protect = model.number("data_stat_protect", FittingConfig.data_stat_protect, positive=True)
    preset = _preset_out_bias(model, type_map)
    pairs = _exclude_types(model, nt, "pair_exclude_types")
    atoms = _atom_exclude_types(model, nt)
    model.done()
    return ModelConfig(type_map, dc, fc, preset, pairs, atoms)


def _preset_out_bias(model: Table, type_map: list[str]) -> list[float | None] | None:
    """[model] preset_out_bias = { ELEMENT = eV, ... }: the energy bias of those types, fixed
    (DeePMD-kit's {"energy": [...]} by type index, numdp.train.deepmd_json)."""
    raw = model.raw("preset_out_bias", None)
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw:
        raise model.error("preset_out_bias", f"expected a table of element = energy bias (eV), got {show_value(raw)}")
    out: list[float | None] = [None] * len(type_map)
    for name, value in raw.items():
        if name not in type_map:
            raise model.error("preset_out_bias", f"{name!r} is not an element of type_map {type_map}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise model.error("preset_out_bias", f"{name}: expected an energy in eV, got {show_value(value)}")
        out[type_map.index(name)] = float(value)
    return out


def model_config(text: str, name: str) -> ModelConfig:
    """The [model] of a training input's `text` (numdp's TOML, or DeePMD-kit's input.json when it
    starts with ``{``), validated as `numdp train` does, without the rest of the input: what a
    checkpoint's networks are (`numdp freeze`).  `name` names the input in messages."""
    if text.lstrip().startswith("{"):
        from .deepmd_json import parse_json_text, to_train_tables

        data = to_train_tables(parse_json_text(text, name), name)
    else:
        data = parse_toml_text(text, name)
    return _model(Table.root(name, data, TRAIN_WORDING))


def parse_config(data: dict, source: Path, text: str = "", base: Path | None = None) -> TrainConfig:
    """Validate the parsed TOML `data` of file `source` (see the module docstring); relative
    paths are taken against `base` (default: the directory of `source`)."""
    file = source.name
    base = source.resolve().parent if base is None else base
    root = Table.root(file, data, TRAIN_WORDING)
    if "training" not in data and "md" in data:
        raise InputError(f"{file}: an MD input ([md], [system], ...): run it with numdp run")
    root.check_tables(SECTIONS)

    m = _model(root)
    type_map, dc, fc = m.type_map, m.descriptor, m.fitting

    lc = _learning_rate(root.section("learning_rate", {}))

    oc = _loss(root.section("loss", {}))

    ts = root.section("training")
    tc = TrainingConfig()
    _run_length(ts, tc)
    tc.batch_size = _batch_size(ts, "batch_size")
    tc.seed = ts.integer("seed", None, minimum=0)
    tc.disp_freq = ts.integer("disp_freq", 1000, minimum=1)
    tc.save_freq = ts.integer("save_freq", 1000, minimum=1)
    tc.disp_file = _output(ts, "disp_file", "lcurve.out", base)
    tc.save_ckpt = _output(ts, "save_ckpt", "model.ckpt.h5", base)
    tc.model_file = _output(ts, "model_file", "model.h5", base)
    if tc.model_file.suffix.lower() not in (".h5", ".hdf5", ".dp"):
        raise ts.error("model_file", f"must end in .h5 (numdp) or .dp (DeePMD-kit), got {tc.model_file.name!r}")
    tc.enable_ema = ts.boolean("enable_ema", False)
    tc.ema_decay = ts.number("ema_decay", 0.999, nonnegative=True)
    if not tc.ema_decay < 1.0:
        raise ts.error("ema_decay", f"must be in [0, 1), got {tc.ema_decay:g}")
    distinct_files(ts.file, tc.output_files(), [("the input file", source)])
    tc.data_stat_nbatch = ts.integer("data_stat_nbatch", 10, minimum=1)
    tc.disp_training = ts.boolean("disp_training", True)
    tc.disp_avg = ts.boolean("disp_avg", False)
    tc.init_spread = ts.number("init_spread", TrainingConfig.init_spread, nonnegative=True)
    tc.change_bias_after_training = ts.boolean("change_bias_after_training", False)
    if tc.change_bias_after_training and m.preset_out_bias is not None:
        raise ts.error("change_bias_after_training", "not with [model] preset_out_bias (DeePMD-kit would add "
                                                     "the preset values to the bias again): give one of them")
    if ts.boolean("precondition", False):
        raise ts.error("precondition", PRECONDITION_REMOVED)
    tc.gradient_max_norm = ts.number("gradient_max_norm", 0.0, nonnegative=True)
    tc.min_pair_dist = ts.number("min_pair_dist", 0.0, nonnegative=True)
    if tc.numb_steps is not None:  # (from numb_epoch: once the data is loaded, `resolve_steps`)
        _warmup_steps(lc, tc.numb_steps, file)
    tc.systems = _systems(ts, "systems", base, required=True, input_dir=source.resolve().parent)
    _per_system_batch(ts, "batch_size", tc.batch_size, tc.systems)
    tc.auto_prob = _auto_prob(ts, "auto_prob", len(tc.systems))
    tc.sys_probs = _sys_probs(ts, "sys_probs", len(tc.systems))
    _lmdb_sampling(ts, tc.systems, tc.auto_prob, tc.sys_probs)
    _filter_sampling(ts, tc.batch_size, tc.auto_prob, tc.sys_probs)
    ts.done()

    vc = ValidationConfig()
    if "validation" in data:
        vs = root.section("validation")
        vc.batch_size = _batch_size(vs, "batch_size")
        vc.numb_btch = vs.integer("numb_btch", 1, minimum=1)
        vc.systems = _systems(vs, "systems", base, required=True, input_dir=source.resolve().parent)
        _per_system_batch(vs, "batch_size", vc.batch_size, vc.systems)
        vc.auto_prob = _auto_prob(vs, "auto_prob", len(vc.systems))
        vc.sys_probs = _sys_probs(vs, "sys_probs", len(vc.systems))
        _lmdb_sampling(vs, vc.systems, vc.auto_prob, vc.sys_probs)
        _filter_sampling(vs, vc.batch_size, vc.auto_prob, vc.sys_probs)
        vs.done()

    opt = _optimizer(root.section("optimizer", {}))
    return TrainConfig(source=source, text=text, type_map=type_map, descriptor=dc, fitting=fc,
                       learning_rate=lc, loss=oc, training=tc, validation=vc, optimizer=opt,
                       preset_out_bias=m.preset_out_bias, pair_exclude_types=m.pair_exclude_types,
                       atom_exclude_types=m.atom_exclude_types)


def load_config(path) -> TrainConfig:
    """Read and validate a training input file: numdp's TOML, or DeePMD-kit's input.json (a
    `.json` file, or one whose text starts with ``{``; numdp.train.deepmd_json) or the same in
    YAML (`.yaml` / `.yml`), whose relative paths are taken against the working directory as
    DeePMD-kit does."""
    path = Path(path)
    text, data, is_json = _input_tables(path)
    cfg = parse_config(data, path, text, base=Path.cwd() if is_json else None)
    if is_json:   # (save_ckpt validated by parse_config)
        cfg.training.deepmd_ckpt = resolve_path(data["training"].get("save_ckpt", "model.ckpt"), Path.cwd())
    return cfg


def _input_tables(path: Path) -> tuple[str, dict, bool]:
    """(text, the tables of numdp's TOML input, whether it was DeePMD-kit's input.json) of the
    training input `path` (a `.json` file, or one whose text starts with ``{``, is JSON)."""
    if path.suffix.lower() in (".yaml", ".yml"):   # DeePMD-kit's input in YAML, as dp train reads it
        from .deepmd_json import load_yaml, to_train_tables

        text, raw = load_yaml(path)
        return text, to_train_tables(raw, path.name), True
    if path.suffix.lower() == ".json" or _looks_like_json(path):
        from .deepmd_json import load_json, to_train_tables

        text, raw = load_json(path)
        return text, to_train_tables(raw, path.name), True
    text, data = load_toml(path)
    return text, data, False


def input_systems(path, validation: bool = False) -> list[Path]:
    """The systems of a training input's training data (or its validation data), as
    `dp test --train-data / --valid-data` reads them: paths relative to the input file's
    directory, folders searched for systems.  The rest of the input is not validated.
    InputError when the input names none."""
    path = Path(path)
    _, data, _ = _input_tables(path)
    root = Table.root(path.name, data, TRAIN_WORDING)
    if validation and "validation" not in data:
        raise InputError(f"{path.name}: names no validation data")
    sec = root.section("validation" if validation else "training")
    return _systems(sec, "systems", path.resolve().parent, required=True)


def _looks_like_json(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(256).lstrip().startswith(b"{")
    except OSError:
        return False
