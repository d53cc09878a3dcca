"""Training data: systems in model types, neighbour lists per frame, and batch sampling.

`DataSet` holds the npy systems of one role (training or validation) with their labels as
float64 and their atom types mapped to the model's type_map.  `FrameCache` prepares `Frame`s
(extended atoms and DeePMD-kit neighbour lists) and keeps them within a memory budget, since
every frame is visited many times.  `BatchSampler` draws batches as DeePMD-kit does (reference
§7.4): a system with the probabilities of `system_probs` (by default proportional to its number
of batches), then the next `batch_size` frames of a shuffled pass over that system (the last
batch of a pass short when batch_size does not divide its frames).
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.npy_system import System, load_system, real_atoms
from ..neighbor import build_nlist, extend
from ..neighbor.distances import NeighborCensus
from .config import AutoProb, BatchSize, ProbBlock, ProbStyle
from .loss import Labels
from .passes import Frame


@dataclass
class DataSystem:
    """One npy system in model types.

    types: (N,) int32 model types; coords (nf, N, 3) Å; boxes (nf, 3, 3) Å or None;
    energy (nf,) eV, forces (nf, N, 3) eV/Å, virial (nf, 3, 3) eV, each None when absent;
    batch_size: frames per batch (≤ nf); atom_ener (nf, N) eV, atom_pref (nf, N),
    atom_ener_coeff (nf, N): the per-atom labels of numdp.io.npy_system, None when absent;
    frame_types (nf, N) int32: a mixed-type system's model types per frame (then `types` is its
    first frame's), None for a standard system.  `types_of(f)` is frame f's.  fparam (nf, nfp):
    the frame parameters of a model that takes them (fparam.npy, or the input's default_fparam
    in every row), else None.  aparam (nf, N, nap): the atomic parameters of a model that takes
    them (aparam.npy; row i of frame f is atom i's, in the order of `types`), else None.
    """

    path: Path
    types: np.ndarray
    coords: np.ndarray
    boxes: np.ndarray | None
    energy: np.ndarray | None
    forces: np.ndarray | None
    virial: np.ndarray | None
    batch_size: int
    atom_ener: np.ndarray | None = None
    atom_pref: np.ndarray | None = None
    atom_ener_coeff: np.ndarray | None = None
    frame_types: np.ndarray | None = None
    fparam: np.ndarray | None = None
    aparam: np.ndarray | None = None

    @property
    def natoms(self) -> int:
        return int(self.types.shape[0])

    def types_of(self, f: int) -> np.ndarray:
        """(N,) int32 model types of the atoms of frame f (-1: a virtual atom, `real_of`)."""
        return self.types if self.frame_types is None else self.frame_types[f]

    def real_of(self, f: int) -> slice | np.ndarray:
        """The real atoms of frame f: slice(None), or a (N,) bool mask when the frame has virtual
        atoms (mixed-type padding, type -1), which the trainer leaves out of the frame, its
        statistics and its loss, as DeePMD-kit 3.2 masks them."""
        return slice(None) if self.frame_types is None else real_atoms(self.frame_types[f])

    def atoms_of(self, f: int) -> tuple[np.ndarray, np.ndarray]:
        """(positions (n, 3) Å, model types (n,) int32) of the n real atoms of frame f."""
        keep = self.real_of(f)
        return self.coords[f][keep], self.types_of(f)[keep]

    @property
    def nframes(self) -> int:
        return int(self.coords.shape[0])

    @property
    def nbatches(self) -> int:
        """⌈nframes / batch_size⌉: DeePMD-kit 3.2's (PyTorch) count of the system's batches, the
        length of its DataLoader, which weighs its draws (prob_sys_size) and sizes an epoch."""
        return -(-self.nframes // self.batch_size)

    def labels(self, f: int) -> Labels:
        """The labels of frame f, its real atoms' rows only (`real_of`)."""
        keep = self.real_of(f)

        def row(a):
            return None if a is None else a[f][keep]

        return Labels(None if self.energy is None else float(self.energy[f]), row(self.forces),
                      None if self.virial is None else self.virial[f], row(self.atom_ener), row(self.atom_pref),
                      row(self.atom_ener_coeff))

    def box(self, f: int):
        return None if self.boxes is None else self.boxes[f]

    PER_FRAME = ("coords", "boxes", "energy", "forces", "virial", "atom_ener", "atom_pref",
                 "atom_ener_coeff", "frame_types", "fparam", "aparam")
    """The fields whose first axis is the frame."""

    def subset(self, keep: np.ndarray) -> "DataSystem":
        """The system with the frames `keep` ((nframes,) bool) only; batch_size at most their
        number."""
        rows = {f.name: getattr(self, f.name)[keep] for f in fields(self)
                if f.name in self.PER_FRAME and getattr(self, f.name) is not None}
        return replace(self, **rows, batch_size=max(1, min(self.batch_size, int(keep.sum()))))


def closest_pairs(s: DataSystem, cutoff: float, ntypes: int) -> np.ndarray:
    """(nframes,) the distance (Å) of each frame's closest pair of atoms, periodic images
    included, where it is below `cutoff` Å; inf where no pair is that close.  One neighbour list
    within `cutoff` per frame (`NeighborCensus`)."""
    out = np.full(s.nframes, np.inf)
    for f in range(s.nframes):
        census = NeighborCensus(ntypes, cutoff)
        census.add(*s.atoms_of(f), s.box(f))
        if census.min_nbor_dist is not None:
            out[f] = census.min_nbor_dist
    return out


@dataclass(frozen=True)
class CloseFrames:
    """What `drop_close_frames` left out of one system: its path, the frames left out and its
    frames before."""

    path: Path
    left_out: int
    nframes: int


def drop_close_frames(systems: list[DataSystem], min_pair_dist: float,
                      ntypes: int) -> tuple[list[DataSystem], list[CloseFrames]]:
    """DeePMD-kit's training_data min_pair_dist: the frames with a pair of atoms closer than
    `min_pair_dist` Å left out of `systems` (a system left with none is dropped); returns the
    systems kept and, for every system, what was left out."""
    kept, report = [], []
    for s in systems:
        ok = closest_pairs(s, min_pair_dist, ntypes) >= min_pair_dist
        report.append(CloseFrames(s.path, int((~ok).sum()), s.nframes))
        if ok.all():
            kept.append(s)
        elif ok.any():
            kept.append(s.subset(ok))
    return kept, report


def load_dataset(paths: list[Path], type_map: list[str], batch: BatchSize,
                 whose: str = "the input's [model] type_map", numb_fparam: int = 0,
                 default_fparam=None, numb_aparam: int = 0) -> list[DataSystem]:
    """Load the systems at `paths`; atoms are mapped to `type_map` by name (type_map.raw);
    `whose` names the type map in messages.  System i's batch is `batch.frames(natoms, i)`
    frames, at most its number of frames.  With numb_fparam > 0 each system needs fparam.npy of
    that width, or `default_fparam` is taken for all its frames; with numb_aparam > 0 each needs
    aparam.npy of numb_aparam per atom (InputError naming the system otherwise).  With
    `batch.filter` ("filter:K") the systems of more than K atoms are left out, as DeePMD-kit
    does; InputError when none is left."""
    out = []
    left_out = None   # (the first system "filter:K" leaves out, its atoms), for the message
    for i, p in enumerate(paths):
        s: System = load_system(p)
        if batch.filter and s.natoms > batch.max_atoms:
            left_out = left_out or (p, s.natoms)
            continue
        frame_types = None
        if s.frame_types is None:
            types = s.model_types(type_map, whose).astype(np.int32)
        else:
            frame_types = np.ascontiguousarray(s.frame_model_types(type_map, whose), dtype=np.int32)
            types = frame_types[0]
        bs = min(batch.frames(s.natoms, i), s.nframes)
        out.append(DataSystem(p, types, s.coords, s.boxes, s.energy, s.forces, s.virial, bs,
                              s.atom_ener, s.atom_pref, s.atom_ener_coeff, frame_types,
                              s.fparam_rows(numb_fparam, default_fparam, "the input"),
                              s.aparam_rows(numb_aparam, "the input")))
    if not out:
        raise InputError(f'batch_size "filter:{batch.max_atoms}": every system has more than {batch.max_atoms} '
                         f"atoms ({left_out[0]}: {left_out[1]}); none is left to read")
    return out


class FrameCache:
    """Frames (extended atoms + neighbour list) of a list of systems, cached up to `budget` bytes.

    rcut Å, sel slots per type; frames beyond the budget are rebuilt on every use.
    """

    def __init__(self, systems: list[DataSystem], rcut: float, sel: list[int], ntypes: int,
                 budget: float = 2e9):
        self.systems = systems
        self.rcut, self.sel, self.ntypes = rcut, list(sel), ntypes
        self.budget = budget
        self.used = 0
        self._cache: dict[tuple[int, int], Frame] = {}
        self.overflow = np.zeros(ntypes, dtype=np.int64)
        self.max_count = np.zeros(ntypes, dtype=np.int64)

    def build(self, k: int, f: int) -> Frame:
        s = self.systems[k]
        keep = s.real_of(f)   # a frame with virtual atoms (padding) is built without them
        pos, types = s.atoms_of(f)
        ext = extend(pos, types, s.box(f), self.rcut)
        nl = build_nlist(ext, self.rcut, self.sel, self.ntypes)
        self.overflow += nl.overflow
        np.maximum(self.max_count, nl.max_count, out=self.max_count)
        # the extended atoms start with the local ones in the system's order: aparam's rows as they are
        return Frame(ext.positions, nl.nlist, types, ext.mapping, None if s.fparam is None else s.fparam[f],
                     None if s.aparam is None else s.aparam[f][keep])

    def frame(self, k: int, f: int) -> Frame:
        fr = self._cache.get((k, f))
        if fr is not None:
            return fr
        fr = self.build(k, f)
        size = fr.ext_pos.nbytes + fr.nlist.nbytes + fr.mapping.nbytes
        if self.used + size <= self.budget:
            self._cache[(k, f)] = fr
            self.used += size
        return fr


def system_probs(nbatches, auto_prob: AutoProb, sys_probs: list[float] | None) -> np.ndarray:
    """(nsys,) float64 probability of drawing each system, DeePMD-kit's meaning of its options.

    nbatches: (nsys,) batches per system (≥ 1); auto_prob, sys_probs: as checked by
    numdp.train.config for nsys systems (`sys_probs`, when given, wins).
    - sys_probs: entries ≥ 0 as given; the negative entries share 1 − Σ(entries ≥ 0) ∝ nbatches
      (the list as it is when no entry is negative);
    - prob_uniform: 1/nsys each;
    - prob_sys_size: ∝ nbatches, or with blocks, block b gets weight_b / Σ weights shared ∝
      nbatches among its systems, and a system in no block gets 0.
    """
    nb = np.asarray(nbatches, dtype=np.float64)
    if sys_probs is not None:
        given = np.asarray(sys_probs, dtype=np.float64)
        share = given < 0
        if not share.any():
            return given
        left = 1.0 - given[~share].sum()
        return np.where(share, left * nb / nb[share].sum(), given)
    if auto_prob.style is ProbStyle.UNIFORM:
        return np.full(nb.shape, 1.0 / nb.size)
    blocks = auto_prob.blocks or (ProbBlock(0, nb.size, 1.0),)
    total = sum(b.weight for b in blocks)
    prob = np.zeros(nb.shape)
    for b in blocks:
        inside = nb[b.start:b.end]
        prob[b.start:b.end] = inside / inside.sum() * (b.weight / total)
    return prob


class BatchSampler:
    """Batches (system index, frame indices) from a seeded generator; state is serialisable.

    Systems are drawn with probabilities `prob` ((nsys,), summing to 1: `system_probs`); frames
    come from a shuffled pass over the system, batch_size at a time, the pass's last batch short
    when batch_size does not divide the frames (DeePMD-kit's DataLoader, drop_last false), and
    a new pass is shuffled when one is used up.
    """

    def __init__(self, systems: list[DataSystem], seed, prob: np.ndarray):
        self.systems = systems
        self.rng = np.random.default_rng(seed)
        self.prob = np.asarray(prob, dtype=np.float64)
        if self.prob.shape != (len(systems),):
            raise ValueError(f"prob has shape {self.prob.shape} for {len(systems)} systems")
        self.perm = [self.rng.permutation(s.nframes) for s in systems]
        self.cursor = [0] * len(systems)

    def next(self) -> tuple[int, np.ndarray]:
        k = int(self.rng.choice(len(self.systems), p=self.prob)) if len(self.systems) > 1 else 0
        s = self.systems[k]
        if self.cursor[k] >= s.nframes:
            self.perm[k] = self.rng.permutation(s.nframes)
            self.cursor[k] = 0
        c = self.cursor[k]
        self.cursor[k] = c + s.batch_size
        return k, self.perm[k][c:c + s.batch_size]

    def state(self) -> dict:
        """JSON-serialisable state (generator, permutations, cursors)."""
        return {"rng": self.rng.bit_generator.state,
                "perm": [p.tolist() for p in self.perm], "cursor": list(self.cursor)}

    def restore(self, state: dict) -> None:
        if len(state["perm"]) != len(self.systems) or any(
                len(p) != s.nframes for p, s in zip(state["perm"], self.systems)):
            raise InputError("checkpoint: its data sampler does not match the systems of the input")
        self.rng.bit_generator.state = state["rng"]
        self.perm = [np.asarray(p, dtype=np.int64) for p in state["perm"]]
        self.cursor = [int(c) for c in state["cursor"]]


def missing_labels(systems: list[DataSystem], loss) -> list[str]:
    """One line per label file that some training systems lack while the loss weighs its term
    (a start or limit prefactor > 0; `loss` a numdp.train.config.LossConfig): those systems'
    frames train no such term (DeePMD-kit's find_energy etc. are 0 for them), which a missing
    or misnamed file makes easy to overlook.  Empty when every weighed label is present."""
    terms = (("energy.npy", "energy", loss.start_pref_e, loss.limit_pref_e, lambda s: s.energy),
             ("force.npy", "force", loss.start_pref_f, loss.limit_pref_f, lambda s: s.forces),
             ("virial.npy", "virial", loss.start_pref_v, loss.limit_pref_v, lambda s: s.virial),
             ("atom_ener.npy", "atomic energy", loss.start_pref_ae, loss.limit_pref_ae,
              lambda s: s.atom_ener))
    lines = []
    for name, what, start, limit, label in terms:
        if max(start, limit) <= 0.0:
            continue
        lacking = [s.path for s in systems if label(s) is None]
        if lacking:
            shown = ", ".join(str(p) for p in lacking[:3]) + (f" and {len(lacking) - 3} more" if len(lacking) > 3 else "")
            lines.append(f"warning: {len(lacking)} of {len(systems)} training systems have no {name} "
                         f"({shown}): their frames train no {what} term")
    return lines
