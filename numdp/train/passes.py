"""Per-frame training passes: primal (energy, forces, virial) and the exact loss gradient.

Reference §7.6.  `primal` evaluates one frame and keeps every cache; `gradient` then takes the
loss seeds of that frame — the energy adjoint c_E, the force residuals u and virial residual ε
with their constants c_F, c_V — and accumulates ∂L/∂θ for the frame:

    ∂L/∂θ = ∂/∂θ [ c_E Σ_i E_i + Σ_pairs g_ij · q_ij ],   q_ij = -c_F (u_j - u_i) - c_V ε d_ij

where the second term is the tangent Σ Ė_i of the energy for pair displacements q, followed by a
reverse pass over primal and tangent.  Gradients accumulate per worker (`zero_grad`,
`gradient` or `frames`, `total_grad`); the optimiser sums the worker rows itself.

Work split, over `nthreads` workers that run single-threaded BLAS and Numba kernels releasing
the GIL:

- `frames` (a batch, or validation frames): whole frames are dealt to the workers in rounds of
  `nthreads` (frame i of a round to worker i), each worker running primal, loss seeds and
  gradient of its frames with no synchronisation in between; the frames left over after the
  last full round are shared by the workers as below.
- `primal` / `gradient` (one frame): the workers share the frame (`_Team`).  Its pairs are
  collected once; pairs of one embedding net whose inputs agree (`MERGE_TOL`) share one
  embedding row: in a periodic frame the two directions i→j and j→i of every pair of atoms of
  one type, which halves the embedding work of a one-type system such as copper.  Each worker
  evaluates a contiguous share of every net's rows and adds their member pairs into its own
  sums of T; after a barrier it reduces T over the workers for its atoms (an equal contiguous
  share of every type) and runs their fitting nets; after another, the forces of its rows'
  pairs.  The gradient pass follows the same split (two barriers: Td, then T̄).  The fitting
  nets' hidden-layer weight adjoints are then formed after a barrier, each worker a fixed
  block of their rows over the whole frame (`_fit_weight_rows`), in gradient row 0 alone
  (`segments`).

Both assignments are fixed by the frame count and the thread count, and forces, virials and
gradients are reduced in worker order, so results depend only on the thread count, never on
timing.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from ..kernels.cpu.descriptor import back_D, contract_D, contract_D_tangent, contract_T_members, reduce_T
from ..kernels.cpu.envmat import env_pairs, pair_forces_members
from ..model.params import ModelParams
from ..model.workspace import Workspace
from ..kernels.cpu import train as K
from .flat import FlatParams
from .layers import (EmbedCache, FitCache, GradRow, embed_forward, embed_reverse,
                     fit_cache, fit_forward, fit_reverse, fit_tangent)
from .optim import without_ranges

PAD_SHARE = 0.03
"""Of its equal share of the rows of the fitting weight adjoints (`_fit_weight_rows`), worker 0
leaves this fraction to the others when it also reverses the padding embedding: on DeePMD-kit's
cu and water inputs that reverse takes 5-6 % of a worker's time on its rows (thread CPU time,
2 threads)."""
PAD_UPDATE_SHARE = 0.04
"""As PAD_SHARE, when worker 0 also updates the rest of θ and evaluates the next padding
embedding (`_update_rest`): with the padding reverse 0.45-0.55 ms (cu) and 0.8-0.9 ms (water)
against about 5.5 µs per row of W̄ formed and updated (2 threads, quiet); at 0.04 the two
workers' times after the barrier came out within 0.3 ms of each other on both inputs (at
0.06 and 0.08 worker 1's were 0.1-0.35 ms longer)."""


@dataclass
class Frame:
    """One configuration ready for the passes.

    ext_pos: (nall, 3) Å, local atoms first; nlist: (nloc, nnei) int32 extended indices in
    per-type blocks, -1 padding; types: (nloc,) int32; mapping: (nall,) int32 owner of each
    extended atom; fparam: (nfp,) the frame parameters of a model that takes them, else None;
    aparam: (nloc, nap) the local atoms' atomic parameters (row i: atom i's) of a model that takes
    them, else None.
    """

    ext_pos: np.ndarray
    nlist: np.ndarray
    types: np.ndarray
    mapping: np.ndarray
    fparam: np.ndarray | None = None
    aparam: np.ndarray | None = None

    @property
    def nloc(self) -> int:
        return int(self.types.shape[0])


@dataclass
class PrimalResult:
    """energy eV; forces (nloc, 3) eV/Å; virial (3, 3) eV; atom_energy (nloc,) eV."""

    energy: float
    forces: np.ndarray
    virial: np.ndarray
    atom_energy: np.ndarray


class FrameSeeds(Protocol):
    """Gradient seeds of one frame (numdp.train.loss.Seeds): c_e (a number, or (nloc,)),
    u (nloc, 3), eps (3, 3), c_f, c_v."""

    c_e: float | np.ndarray
    u: np.ndarray
    eps: np.ndarray
    c_f: float
    c_v: float


MERGE_TOL = 2.0 ** -42
"""Relative tolerance within which the pairs of one embedding net share one embedding row
(`numdp.kernels.cpu.train.merge_inputs`): inputs x within MERGE_TOL (1 + |x|) of the row's
first.  The two directions i→j and j→i of a pair of atoms of one type have the same input up
to the rounding of their two coordinate differences: about 2u(|r_i| + |r_j| + |shift|) Å
(u = 2^-53) times |dx/dr| (1/(σ r²) ≲ 4 /Å on DeePMD-kit's inputs), 1e-14 to 1e-13 for
coordinates of tens of Å; the largest measured on DeePMD-kit's water and copper data is below
1e-13, and 2^-42 (2.3e-13 at |x| = 0, 9e-13 at |x| = 3) merges every such pair there, halving
the embedding rows of copper.  A shared row changes the pair's G by at most
MERGE_TOL (1 + |x|) |dG/dx|, the size of the rounding of x itself."""


@dataclass
class _Group:
    """One worker's rows of one embedding net: block t, net k, shared rows u0:u1 (global row
    indices of its team), held in rows r0:r0 + u1 - u0 of the worker's G, Gp."""

    t: int
    k: int
    u0: int
    u1: int
    r0: int
    cache: EmbedCache | None = None

    @property
    def r1(self) -> int:
        return self.r0 + self.u1 - self.u0


@dataclass
class _FitGroup:
    """Team atoms a0:a1 (one worker's atoms of centre type ti) and their fitting cache."""

    ti: int
    a0: int
    a1: int
    cache: FitCache


class _Team:
    """One frame and what the workers that share it (`nteam` of them, `barrier` between their
    phases, None for one) build and read together: its local atoms in type order (`atoms`;
    team atom a is local atom atoms[a]), their pairs and the pairs' shared embedding rows
    (`merge_inputs`: `groups` (t, k, U0, U1) per embedding net, row u's input xu[u]; the pairs
    in row order (`order_members`): row u's members are pairs ustart[u] <= p < ustart[u+1],
    pair p's rt, dvec, nbr as `env_pairs` writes them and its centre pair_atom[p]) and the
    per-atom arrays (na, 4, M): T, dE/dT (`Tbar`), the tangent Td and the adjoint T̄ of the
    gradient pass (`Tbar_rev`); `parts` (nteam, na, 4, M) holds each worker's pair sums of T,
    then of Td, before `reduce_T`."""

    frame: Frame
    nteam: int
    barrier: threading.Barrier | None
    atoms: np.ndarray
    atypes: np.ndarray
    tb: np.ndarray
    npairs: int
    rt: np.ndarray
    dvec: np.ndarray
    nbr: np.ndarray
    npad: np.ndarray
    pair_atom: np.ndarray
    xu: np.ndarray
    ustart: np.ndarray
    groups: list
    rtd: np.ndarray
    T: np.ndarray
    Tbar: np.ndarray
    Td: np.ndarray
    Tbar_rev: np.ndarray
    parts: np.ndarray

    def wait(self) -> None:
        """Every worker of the team has finished the phase before."""
        if self.barrier is not None:
            self.barrier.wait()

    def abort(self) -> None:
        """A worker failed: the others raise BrokenBarrierError instead of waiting."""
        if self.barrier is not None:
            self.barrier.abort()

    @property
    def nrows(self) -> int:
        return self.groups[-1][3] if self.groups else 0

    def rows_of(self, rank: int) -> tuple[list[_Group], int]:
        """Worker `rank`'s contiguous share of every net's rows, and their total."""
        out, r = [], 0
        for t, k, U0, U1 in self.groups:
            n = U1 - U0
            u0, u1 = U0 + n * rank // self.nteam, U0 + n * (rank + 1) // self.nteam
            out.append(_Group(t, k, u0, u1, r))
            r += u1 - u0
        return out, r

    def atoms_of(self, rank: int) -> list[tuple[int, int, int]]:
        """Worker `rank`'s team atoms: (ti, a0, a1), an equal contiguous share of every type."""
        out = []
        for ti in range(self.tb.shape[0] - 1):
            lo, n = int(self.tb[ti]), int(self.tb[ti + 1] - self.tb[ti])
            a0, a1 = lo + n * rank // self.nteam, lo + n * (rank + 1) // self.nteam
            if a1 > a0:
                out.append((ti, a0, a1))
        return out


class _Chunk:
    """Everything one worker keeps from the primal pass for the gradient pass: its team and rank,
    its atoms (`ranges` (ti, a0, a1) of team atoms), its embedding
    rows (`groups`, values G and slopes Gp), fitting groups, the team atom ranges of its
    atom_exclude_types atoms (`excluded`), and its share of the forces and virial."""

    team: _Team
    rank: int
    ranges: list
    G: np.ndarray
    Gp: np.ndarray
    groups: list
    fits: list
    excluded: list
    force: np.ndarray
    virial: np.ndarray


class ModelPasses:
    """Primal and gradient passes of one model whose trainable arrays are views of `flat.theta`.

    davg/dstd and the energy biases are constants during training; the networks may change
    between calls (the padding embedding is recomputed by every `primal`).  embedding_grad
    False: the embedding nets do not train (DeePMD-kit's descriptor `trainable` false), so the
    gradient pass forms no adjoint of the descriptor (D̄, T̄, Ḡ and the embedding nets'
    reverse): their gradient entries stay zero.
    """

    def __init__(self, params: ModelParams, flat: FlatParams, nthreads: int = 1, embedding_grad: bool = True,
                 merge_tol: float = MERGE_TOL):
        params.validate()
        self.merge_tol = float(merge_tol)
        """Pairs of one embedding net share a row when their inputs agree to merge_tol (`MERGE_TOL`;
        0: only equal inputs)."""
        self.params = params
        self.flat = flat
        self.embedding_grad = embedding_grad
        d = params.descriptor
        nt = d.ntypes
        self.nt = nt
        self.sec = d.sec
        self.mu, self.sd = d.block_stats()   # (nt, nt, 4); a block without slots (sel 0): 0, 1
        self.rt_pad = np.ascontiguousarray(-self.mu / self.sd)
        self.excl = params.slot_modes   # (nt, nt) int8: pairs, zero rows or padding per block
        self.atom_excluded = params.atom_excluded
        """(nt,) bool: the model's atom_exclude_types, whose atoms' energy is zero: their fitting
        nets are not run (no energy, no dE/dD; their parameters' gradient stays zero)."""
        self.inv_nnei = 1.0 / d.nnei
        self.dim = d.dim_out
        self.nfp = params.fitting.numb_fparam
        self.nap = params.fitting.numb_aparam
        """Descriptor width, frame and atomic parameters: atom i's fitting net input is [D_i, f̂, â_i]
        with f̂ = (f - fparam_avg) * fparam_inv_std in the nfp columns after D and
        â_i = (a_i - aparam_avg) * aparam_inv_std in the last nap (none without)."""
        self.nw = max(1, int(nthreads))
        self.ws = [Workspace() for _ in range(self.nw)]
        self.grads = np.zeros((self.nw, flat.size))
        """Per-worker gradient accumulators; ∂L/∂θ is the sum of the rows (`total_grad`)."""
        products = [s.w[:2] for net in flat.embedding for s in net]
        products += [s.w[:2] for net in flat.fitting for s in net[:-1]]  # (`embed_reverse`, `fit_reverse`)
        self._rows = [GradRow(self.grads[w], products) for w in range(self.nw)]
        self.pad_bars = [np.zeros((nt, nt, d.neuron[-1])) for _ in range(self.nw)]
        self._main_ws = Workspace()
        self._pool = (ThreadPoolExecutor(self.nw - 1, thread_name_prefix="numdp-train")
                      if self.nw > 1 else None)
        self._pad_rows = self._padding_rows()
        emb = [r for net in flat.embedding for s in net for r in (s.w[:2], s.b, s.idt) if r is not None]
        self._emb_lo, self._emb_hi = min(a for a, _ in emb), max(b for _, b in emb)
        assert sum(b - a for a, b in emb) == self._emb_hi - self._emb_lo  # the front of θ
        self._pad_theta: np.ndarray | None = None
        self._barrier = threading.Barrier(self.nw) if self.nw > 1 else None
        self._shared_fit: dict | None = None
        self._fit_storage_last = None
        self._defer_fit_weights = True  # False: per-worker weight adjoints (for A/B timing)
        self._rest_done = False
        self.updated: list[tuple[int, int]] = []
        """(start, stop) ranges of θ that `frames` already updated with its `update` since the
        last `zero_grad` (the optimiser skips them)."""
        self.segments: list[tuple[int, int, int]] = [(0, flat.size, self.nw)]
        """(start, stop, k): entries start..stop-1 of ∂L/∂θ are the sum of the first k rows of
        `grads` (set at the end of each gradient accumulation, `_finish_rows`)."""
        self._chunks: list[_Chunk | None] = [None] * self.nw
        self._fresh = [True] * self.nw
        self.busy = np.zeros((self.nw, 2))
        """Seconds each worker spent in primal (column 0) and gradient (column 1) work in
        `frames` (the caller may reset it)."""

    @property
    def atom_bias(self) -> np.ndarray:
        """(ntypes,) eV added to each atom's fitted energy: bias_atom_e + out_bias of `params`,
        read at each use, so a bias the trainer changes (`Trainer.change_bias`) applies at once."""
        return self.params.fitting.bias_atom_e + self.params.out_bias

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    # ---------------------------------------------------------------- orchestration
    def _run(self, fn, *args):
        """fn(w, *args) for every worker w; one after the other in the calling thread when there
        is no pool (one worker, or after `close`)."""
        if self._pool is None:
            return [fn(w, *args) for w in range(self.nw)]
        # worker 0 is the calling thread: one thread fewer to wake per section, and the serial
        # parts between sections (reductions, loss seeds, padding reverse into row 0) run on
        # the core whose cache holds worker 0's chunk
        futs = [self._pool.submit(fn, w, *args) for w in range(1, self.nw)]
        try:
            first = fn(0, *args)
        except threading.BrokenBarrierError:
            wait(futs)  # another worker's error broke the barrier: raise that one
            for f in futs:
                e = f.exception()
                if e is not None and not isinstance(e, threading.BrokenBarrierError):
                    raise e from None
            raise
        finally:
            wait(futs)  # every worker has finished before anything else runs
        return [first] + [f.result() for f in futs]

    def primal(self, frame: Frame) -> PrimalResult:
        """Energy, forces and virial of `frame`; keeps the caches for `gradient`."""
        self._padding_forward()
        return self._primal_split(frame)

    def _primal_split(self, frame: Frame) -> PrimalResult:
        """`primal` with the padding embedding already evaluated, the frame shared by every worker:
        each evaluates its share of the embedding rows and fits its share of the atoms
        (`_forward_chunk`)."""
        # without a pool (after `close`) the workers would run one after the other: one does it all
        nteam = self.nw if self._pool is not None else 1
        tm = self._team(frame, self._main_ws, nteam, self._barrier if nteam > 1 else None)
        atom_energy = np.zeros(frame.nloc)
        atoms = [_range_atoms(tm, tm.atoms_of(w)) for w in range(nteam)]
        shared = self._shared_fit = self._fit_storage(frame, atoms) if nteam > 1 else None
        if tm.barrier is not None:
            tm.barrier.reset()

        def forward(w):
            if w < nteam:
                self._forward_chunk(w, w, tm, atom_energy, shared)
            else:
                self._chunks[w] = None

        self._run(forward)
        return _result(frame, [c for c in self._chunks if c is not None], atom_energy)

    def frames(self, frames: list[Frame],
               seeds_of: Callable[[int, PrimalResult], FrameSeeds] | None = None,
               update: Callable[..., None] | None = None) -> list[PrimalResult]:
        """Primal results of `frames` (in order); with `seeds_of`, also accumulate the loss
        gradient of every frame (as `gradient` after `primal`, frame by frame).

        seeds_of(i, result of frame i) returns that frame's gradient seeds; it runs on the worker
        threads, so it must not touch shared state.  Frames are dealt whole to the workers in
        rounds of `nthreads`; the rest are shared by the workers (module docstring).

        update(lo, hi, j), when given, is the optimiser's step of θ entries lo..hi-1 from the
        sum of the first j rows of `grads` (`Adam.row_update`): when every frame is shared by
        the workers (fewer frames than threads, several threads), the workers call it on their
        blocks of the fitting hidden-layer weights as soon as these are complete
        (`_fit_weight_rows`, the blocks still in cache) and worker 0 on everything else
        (`_update_rest`), after the last use of θ in the call; `updated` then lists all of θ.
        """
        n = len(frames)
        results: list[PrimalResult | None] = [None] * n
        if n == 0:
            return []
        pad_done = False
        self._padding_forward()
        for w in range(self.nw):
            self.pad_bars[w][:] = 0.0
        whole = n - n % self.nw if self.nw > 1 else n
        if whole:
            self._shared_fit = None
            self._run(self._frames_worker, frames[:whole], seeds_of, results)
        for i in range(whole, n):
            t0 = time.perf_counter()
            res = results[i] = self._primal_split(frames[i])
            t1 = time.perf_counter()
            self.busy[:, 0] += t1 - t0
            if seeds_of is not None:
                s = seeds_of(i, res)
                pad_done = self._split_backward(_seed_args(s.c_e, s.u, s.eps, s.c_f, s.c_v), i == n - 1,
                                                update if whole == 0 and i == n - 1 else None)
                self.busy[:, 1] += time.perf_counter() - t1
        if seeds_of is not None:
            if not pad_done:
                self._padding_reverse_all()
            if not self._rest_done:  # (`_update_rest` set the segments)
                self._finish_rows()
        return results

    def _frames_worker(self, w: int, frames: list[Frame], seeds_of, results: list) -> None:
        """Worker w's share of `frames`: frames w, w + nthreads, ..., each whole."""
        busy = self.busy[w]
        for i in range(w, len(frames), self.nw):
            t0 = time.perf_counter()
            fr = frames[i]
            atom_energy = np.zeros(fr.nloc)
            self._forward_chunk(w, 0, self._team(fr, self.ws[w], 1, None), atom_energy)
            res = results[i] = _result(fr, [self._chunks[w]], atom_energy)
            t1 = time.perf_counter()
            busy[0] += t1 - t0
            if seeds_of is not None:
                s = seeds_of(i, res)
                self._backward_chunk(w, *_seed_args(s.c_e, s.u, s.eps, s.c_f, s.c_v))
                busy[1] += time.perf_counter() - t1

    def descriptors(self) -> dict[int, np.ndarray]:
        """Fitting inputs of the last `primal` frame per centre type t: the descriptor rows D
        (n_t, M*M<), followed by the frame's normalised parameters f̂ and each atom's â for a
        model that takes them."""
        out: dict[int, list] = {}
        for c in self._chunks:
            if c is not None:
                for f in c.fits:
                    out.setdefault(f.ti, []).append(f.cache.D.copy())
        return {t: np.concatenate(v) for t, v in out.items()}

    def zero_grad(self) -> None:
        """Start a new gradient accumulation (each worker clears its row at its next pass)."""
        self._fresh = [True] * self.nw
        self.updated = []
        self._rest_done = False

    def gradient(self, c_e: float | np.ndarray, u: np.ndarray, eps: np.ndarray, c_f: float,
                 c_v: float) -> None:
        """Accumulate ∂L/∂θ of the last `primal` frame into the worker rows of `grads`.

        c_e: ∂L/∂E_i (1/eV·loss units), one number for every atom or (nloc,) one per local
        atom; u: (nloc, 3) with ∂L/∂F = c_f u (the force residuals F - F̂ eV/Å of the plain
        loss); eps: (3, 3) with ∂L/∂Ξ = c_v eps (the virial residual Ξ - Ξ̂ eV); c_f, c_v: force
        and virial constants (§7.6, numdp.train.loss).
        """
        for w in range(self.nw):
            self.pad_bars[w][:] = 0.0
        if not self._split_backward(_seed_args(c_e, u, eps, c_f, c_v), True):
            self._padding_reverse_all()
        self._finish_rows()

    def _split_backward(self, seed_args: tuple, last: bool, update=None) -> bool:
        """Gradient of the last `_primal_split` frame, shared by the workers; with
        several workers the fitting nets' hidden-layer weight adjoints are formed after a
        barrier, each worker taking a block of rows of W̄ over the whole frame
        (`_fit_weight_rows`), into row 0 of `grads`, and, if `last` (the accumulation's last
        frame: every padding adjoint is in), worker 0 reverses the padding embedding there
        too, and with `update` (`frames`) the workers update their blocks of weights.  Returns
        whether the padding was reversed."""
        defer = None
        if self._shared_fit and self._defer_fit_weights:
            row0 = self._rows[0]  # cleared by worker 0 at the start of the section if fresh
            defer = {(ti, l): self._fresh[0] or self.flat.fitting[ti][l].w[0] not in row0.written
                     for ti, l in self._shared_fit_layers()}
            defer["pad"] = last
            defer["update"] = update
            self._barrier.reset()
        self._run(self._backward_chunk, *seed_args, defer)
        if defer is None:
            return False
        for ti, l in self._shared_fit_layers():
            self._rows[0].written.add(self.flat.fitting[ti][l].w[0])
        if update is not None:
            self.updated = [(0, self.flat.size)]  # `_fit_weight_rows` and `_update_rest`
        return last

    def _update_rest(self, update) -> None:
        """Worker 0, after the barrier and the padding reverse of the accumulation's last frame:
        every gradient row is final but for the fitting hidden-layer weights (which the workers
        are forming and updating, `_fit_weight_rows`): set `segments`, `update` everything else
        (a few thousand entries: the embedding nets, biases, idt, output layers), and evaluate
        the padding embedding of the next step with the updated embedding nets."""
        hidden = []
        for ti, l in self._shared_fit_layers():
            slot = self.flat.fitting[ti][l]
            self._rows[0].written.add(slot.w[0])  # being written by `_fit_weight_rows`
            hidden.append(slot.w[:2])
        self._finish_rows()
        for lo, hi, k in without_ranges(self.segments, hidden):
            update(lo, hi, k)
        self._padding_forward()
        self._rest_done = True

    def _shared_fit_layers(self):
        """(ti, l) of every fitting hidden layer whose weight adjoint `_fit_weight_rows` forms."""
        return [(ti, l) for ti in self._shared_fit for l in range(len(self.flat.fitting[ti]) - 1)]

    def _padding_reverse_all(self) -> None:
        """Reverse the padding embedding for the workers' padding adjoints (summed in order)."""
        if not self.embedding_grad:
            return
        if self._fresh[0]:  # worker 0's row takes the padding gradient: start it if untouched
            self._rows[0].clear()
            self._fresh[0] = False
        pad_bar = self.pad_bars[0].copy()
        for w in range(1, self.nw):
            pad_bar += self.pad_bars[w]
        self._padding_reverse(pad_bar, self._rows[0])

    def _finish_rows(self) -> None:
        """End of a gradient accumulation: set `segments` and zero what they would read unwritten.

        A weight matrix that only products write counts in the rows up to the last one that
        wrote it (k rows: a matrix formed over the whole frame in row 0 alone is not summed
        with k - 1 untouched rows), and is zeroed in the rows below that did not write it;
        every other entry counts in every row (rows no worker touched are cleared)."""
        nw = self.nw
        for w in range(nw):
            if self._fresh[w]:
                self._rows[w].clear()
                self._fresh[w] = False
        segs, pos = [], 0
        for a, b in self._rows[0].products:
            if a > pos:
                segs.append((pos, a, nw))
            wrote = [a in self._rows[w].written for w in range(nw)]
            k = 1 + max((w for w in range(nw) if wrote[w]), default=0)
            for w in range(k):
                if not wrote[w]:
                    self.grads[w, a:b] = 0.0
            segs.append((a, b, k))
            pos = b
        if pos < self.grads.shape[1]:
            segs.append((pos, self.grads.shape[1], nw))
        merged = [segs[0]]
        for a, b, k in segs[1:]:  # fewer, longer calls of the optimiser's kernel
            if k == merged[-1][2]:
                merged[-1] = (merged[-1][0], b, k)
            else:
                merged.append((a, b, k))
        self.segments = merged

    def total_grad(self) -> np.ndarray:
        """(nparams,) ∂L/∂θ accumulated since `zero_grad` (sum of the worker rows in order,
        as `segments` says)."""
        g = np.zeros(self.grads.shape[1])
        for a, b, k in self.segments:
            for w in range(k):
                g[a:b] += self.grads[w, a:b]
        return g

    def each_worker(self, fn) -> None:
        """fn(w) for every worker index w, on the worker threads."""
        self._run(fn)

    def split(self, fn, n: int) -> None:
        """fn(lo, hi) over `nthreads` contiguous ranges covering 0..n, on the worker threads."""
        bounds = [n * w // self.nw for w in range(self.nw + 1)]
        self._run(lambda w: fn(bounds[w], bounds[w + 1]))

    # ---------------------------------------------------------------- padding embedding
    def _padding_rows(self):
        """For every embedding net k, the (centre type, block) pairs whose padding uses it."""
        d = self.params.descriptor
        rows = {}
        for ti in range(self.nt):
            for t in range(self.nt):
                if d.sel[t] > 0:
                    rows.setdefault(d.net_index(ti, t), []).append((ti, t))
        return rows

    def _padding_forward(self) -> None:
        """G of the padding rows (and their caches for the reverse), unless already computed for
        the embedding nets' present parameters."""
        emb = self.flat.theta[self._emb_lo:self._emb_hi]
        if self._pad_theta is not None and np.array_equal(emb, self._pad_theta):
            return
        d = self.params.descriptor
        M = d.neuron[-1]
        self.G_pad = np.zeros((self.nt, self.nt, M))
        self._pad_caches = {}
        for k, pairs in self._pad_rows.items():
            n = len(pairs)
            x = np.array([self.rt_pad[ti, t, 0] for ti, t in pairs])
            G = self._main_ws.get(("padG", k), (n, M))
            Gp = self._main_ws.get(("padGp", k), (n, M))
            self._pad_caches[k] = embed_forward(d.embeddings[k], x, G, Gp, self._main_ws, ("pad", k))
            for r, (ti, t) in enumerate(pairs):
                self.G_pad[ti, t] = G[r]
        self._pad_theta = emb.copy()

    def _padding_reverse(self, pad_bar: np.ndarray, grad: GradRow) -> None:
        d = self.params.descriptor
        M = d.neuron[-1]
        for k, pairs in self._pad_rows.items():
            n = len(pairs)
            Gbar = np.array([pad_bar[ti, t] for ti, t in pairs]).reshape(n, M)

            def adjoint(b0, b1, Ob, Odb, Gbar=Gbar):
                Ob[:] = Gbar[b0:b1]
                Odb[:] = 0.0

            embed_reverse(d.embeddings[k], self.flat.embedding[k], self._pad_caches[k], adjoint,
                          grad, self._main_ws)

    # ---------------------------------------------------------------- worker passes
    def _fit_storage(self, frame: Frame, atoms: list[np.ndarray]) -> dict:
        """Per centre type ti present in `frame`: (Yin, ZB, offsets), the fitting caches' stacked
        hidden-layer inputs [y; ẏ] and adjoints [z̄; ż̄] of every worker's chunk in one buffer
        per layer (2 x that type's atoms of the frame rows; worker w's 2 n_w rows from row 2
        offsets[w]), so that `_fit_weight_rows` forms W̄ over the whole frame in one product."""
        nt = self.nt
        counts = np.array([np.bincount(frame.types[a], minlength=nt) for a in atoms], dtype=np.int64)
        key = counts.tobytes()
        if self._fit_storage_last is not None and self._fit_storage_last[0] == key:
            return self._fit_storage_last[1]  # the same views (the buffers only grow on a larger request)
        shared = {}
        for ti in range(nt):
            n = int(counts[:, ti].sum())
            if n == 0 or self.atom_excluded[ti]:
                continue
            widths = self.params.fitting.nets[ti].widths
            nh = len(widths) - 2
            Yin = [self._main_ws.get(("fitcat", ti, "Yin", l), (2 * n, widths[l])) for l in range(nh)]
            ZB = [self._main_ws.get(("fitcat", ti, "ZB", l), (2 * n, widths[l + 1])) for l in range(nh)]
            offsets = np.concatenate([[0], np.cumsum(counts[:, ti])]).tolist()
            shared[ti] = (Yin, ZB, offsets)
        self._fit_storage_last = (key, shared)
        return shared

    def _fit_weight_rows(self, w: int, first: dict) -> None:
        """Worker w's block of rows of every fitting hidden layer's weight adjoint
        W̄_l += Yinᵀ ZB (n_in x n_out) over the whole frame (`_fit_storage`), into row 0 of
        `grads` (written there, or added if first[(ti, l)] is False).  The blocks are
        contiguous, in worker order, an equal share each, but for worker 0's smaller one when
        first["pad"] (`PAD_SHARE`): fixed by the shapes and the thread count."""
        ws = self.ws[w]
        row0 = self.grads[0]
        nw = self.nw
        # worker 0 first reverses the padding embedding (if first["pad"]): it takes fewer rows
        f0 = (1.0 - (0.0 if not first["pad"] else PAD_SHARE if first["update"] is None
                     else PAD_UPDATE_SHARE)) / nw
        for ti, (Yin, ZB, _) in self._shared_fit.items():
            for l, slot in enumerate(self.flat.fitting[ti][:-1]):
                gW = slot.views(row0)[0]
                n_in = gW.shape[0]
                b0 = int(n_in * f0)
                r0, r1 = [b0 + (n_in - b0) * (v - 1) // (nw - 1) if v else 0 for v in (w, w + 1)]
                if r1 == r0:
                    continue
                A = Yin[l][:, r0:r1].T
                if first[(ti, l)]:
                    np.matmul(A, ZB[l], out=gW[r0:r1])
                else:
                    tmp = ws.get(("rev", "gW rows"), (r1 - r0, gW.shape[1]))
                    np.matmul(A, ZB[l], out=tmp)
                    gW[r0:r1] += tmp
                if first["update"] is not None:  # these entries' gradient is complete
                    n_out = gW.shape[1]
                    first["update"](slot.w[0] + r0 * n_out, slot.w[0] + r1 * n_out)

    def _team(self, frame: Frame, ws: Workspace, nteam: int, barrier: threading.Barrier | None) -> _Team:
        """The frame's pairs and their shared embedding rows, and the team's per-atom arrays, in
        buffers of `ws` (the caller's thread, before the workers start)."""
        d = self.params.descriptor
        nt = self.nt
        M = d.neuron[-1]
        tm = _Team()
        tm.frame, tm.nteam, tm.barrier = frame, nteam, barrier
        tm.atoms = _type_order(frame.types)
        tm.atypes = frame.types[tm.atoms].astype(np.int64)
        tm.tb = np.searchsorted(tm.atypes, np.arange(nt + 1))
        na = tm.atoms.shape[0]
        cap = na * d.nnei
        rt = ws.get(("team", "rt"), (cap, 4))
        dvec = ws.get(("team", "dvec"), (cap, 3))
        nbr = ws.get(("team", "nbr"), (cap,), np.int64)
        poff = ws.get(("team", "poff"), (nt, na + 1), np.int64)
        tm.npad = ws.get(("team", "npad"), (na, nt), np.int64)
        n = tm.npairs = env_pairs(frame.ext_pos, frame.nlist, tm.atoms, tm.atypes, self.sec, self.mu, self.sd,
                                  self.excl, d.rcut, d.rcut_smth, rt, dvec, nbr, poff, tm.npad)
        pair_atom = ws.get(("team", "pair_atom"), (cap,), np.int64)[:n]
        K.pair_centres(poff, pair_atom)
        tm.xu = ws.get(("team", "xu"), (cap,))
        tm.ustart = ws.get(("team", "ustart"), (cap + 1,), np.int64)
        mem = ws.get(("team", "mem"), (cap,), np.int64)[:n]
        tm.groups = []
        nu = 0
        for t in range(nt):
            for a0, a1, k in d.net_spans(t, tm.tb):
                p0, p1 = int(poff[t, a0]), int(poff[t, a1])
                if p1 == p0:
                    continue
                x = rt[p0:p1, 0]
                # stable: timsort takes the centres' lists, each already in ascending r (descending x), as
                # runs (copper 0.07 ms against quicksort's 0.27), and orders a row's members by pair
                rows = K.merge_inputs(x, np.argsort(x, kind="stable"), p0, self.merge_tol, tm.xu, tm.ustart,
                                      mem, nu)
                tm.groups.append((t, k, nu, nu + rows))
                nu += rows
        # every pair is some row's member (the spans cover every atom of every block): renumber
        # the pairs in row order, so that the per-pair kernels stream them
        tm.rt, tm.dvec, tm.nbr, tm.pair_atom = (
            ws.get(("team", name), shape, dtype)[:n] for name, shape, dtype in
            (("rt_rows", (cap, 4), np.float64), ("dvec_rows", (cap, 3), np.float64),
             ("nbr_rows", (cap,), np.int64), ("pair_atom_rows", (cap,), np.int64)))
        K.order_members(mem, rt[:n], dvec[:n], nbr[:n], pair_atom, tm.rt, tm.dvec, tm.nbr, tm.pair_atom)
        tm.rtd = ws.get(("team", "rtd"), (cap, 4))
        tm.T, tm.Tbar, tm.Td, tm.Tbar_rev = (ws.get(("team", name), (na, 4, M))
                                            for name in ("T", "Tbar", "Td", "Tbar_rev"))
        tm.parts = ws.get(("team", "parts"), (nteam, na, 4, M))
        return tm

    def _forward_chunk(self, w: int, rank: int, tm: _Team, atom_energy: np.ndarray,
                       shared: dict | None = None) -> None:
        """Primal pass of worker w, rank `rank` of team `tm`: its embedding rows and their pair
        sums of T; after a barrier, T and the fitting nets of its atoms (atom energies, dE/dT);
        after another, the forces and virial of its rows' pairs.  With `shared`
        (`_fit_storage`), the fitting caches' Yin and ZB are views of its buffers."""
        try:
            self._forward_steps(w, rank, tm, atom_energy, shared)
        except BaseException:
            tm.abort()
            raise

    def _forward_steps(self, w: int, rank: int, tm: _Team, atom_energy: np.ndarray, shared: dict | None) -> None:
        p = self.params
        d = p.descriptor
        ws = self.ws[w]
        frame = tm.frame
        c = _Chunk()
        self._chunks[w] = c
        c.team, c.rank = tm, rank
        c.ranges = tm.atoms_of(rank)
        M = d.neuron[-1]
        c.groups, nrows = tm.rows_of(rank)
        c.G = ws.get("G", (nrows, M))
        c.Gp = ws.get("Gp", (nrows, M))
        part = tm.parts[rank]
        part[:] = 0.0
        # each block of rows is added to T right after its embedding, while G is in cache
        for g in c.groups:
            if g.u1 == g.u0:
                continue
            G = c.G[g.r0:g.r1]

            def add_T(b0, b1, g=g, G=G):
                contract_T_members(g.u0 + b0, g.u0 + b1, g.u0, tm.ustart, tm.pair_atom, tm.rt, G, part)

            g.cache = embed_forward(d.embeddings[g.k], tm.xu[g.u0:g.u1], G, c.Gp[g.r0:g.r1], ws,
                                    ("emb", g.t, g.k), done=add_T)
        tm.wait()  # every worker's pair sums are in
        c.fits = []
        c.excluded = []   # (a0, a1) of the worker's atoms of atom_exclude_types: dE/dT = 0
        for ti, a0, a1 in c.ranges:
            reduce_T(tm.parts, a0, a1, tm.atypes, tm.npad, self.rt_pad, self.G_pad, True, self.inv_nnei, tm.T)
            if self.atom_excluded[ti]:
                atom_energy[tm.atoms[a0:a1]] = 0.0
                tm.Tbar[a0:a1] = 0.0
                c.excluded.append((a0, a1))
                continue
            net = p.fitting.nets[ti]
            n = a1 - a0
            if shared is not None:
                Yin, ZB, offsets = shared[ti]
                o = 2 * offsets[w]
                fc = fit_cache(net, n, ws, ("fit", ti), [Y[o:o + 2 * n] for Y in Yin],
                               [Z[o:o + 2 * n] for Z in ZB])
            else:
                fc = fit_cache(net, n, ws, ("fit", ti))
            params_in = self._param_columns(frame, tm.atoms[a0:a1])
            if params_in is None:
                contract_D(tm.T[a0:a1], d.axis_neuron, False, fc.D)
            else:   # [D, f̂, â]: the parameters' columns are constants of the coordinates
                contract_D(tm.T[a0:a1], d.axis_neuron, False, fc.D[:, :self.dim])
                fc.D[:, self.dim:] = params_in
                fc.Dd[:, self.dim:] = 0.0
            e, gD = fit_forward(net, fc, ws, ("fit", ti))
            atom_energy[tm.atoms[a0:a1]] = e + self.atom_bias[ti]
            back_D(tm.T[a0:a1], gD if params_in is None else gD[:, :self.dim], d.axis_neuron, False,
                   self.inv_nnei, tm.Tbar[a0:a1])
            c.fits.append(_FitGroup(ti, a0, a1, fc))
        tm.wait()  # every atom's dE/dT is in
        nall = frame.ext_pos.shape[0]
        c.force = ws.get("force", (nall, 3))
        c.force[:] = 0.0
        c.virial = ws.get("virial", (3, 3))
        c.virial[:] = 0.0
        for g in c.groups:
            pair_forces_members(g.u0, g.u1, g.u0, g.t, tm.ustart, tm.pair_atom, tm.atoms, tm.atypes,
                                tm.rt, tm.dvec, tm.nbr, c.G[g.r0:g.r1], c.Gp[g.r0:g.r1], tm.Tbar, self.sd,
                                d.rcut, d.rcut_smth, c.force, c.virial)

    def _param_columns(self, frame: Frame, atoms: np.ndarray) -> np.ndarray | None:
        """(na, nfp + nap) the fitting input columns after D of local atoms `atoms` (na,) of
        `frame`, in their order: the frame's normalised parameters f̂ in every row, then each
        atom's â_i; None for a model that takes neither."""
        f = self.params.fitting
        if self.nfp + self.nap == 0:
            return None
        out = np.empty((atoms.shape[0], self.nfp + self.nap))
        if self.nfp:
            fp = _given(frame.fparam, (self.nfp,), "frame")
            out[:, :self.nfp] = (fp - f.fparam_avg) * f.fparam_inv_std
        if self.nap:
            ap = _given(frame.aparam, (frame.nloc, self.nap), "atomic")
            out[:, self.nfp:] = (ap[atoms] - f.aparam_avg) * f.aparam_inv_std
        return out

    def _backward_chunk(self, w: int, c_e: float | np.ndarray, u: np.ndarray, eps: np.ndarray, c_f: float,
                        c_v: float, defer: dict | None = None) -> None:
        """Gradient pass of worker w over its chunk of the last primal; adds to grads[w] and to
        pad_bars[w] (the padding embedding's adjoint, reversed later for all workers at once).
        With `defer` (`_split_backward`), the fitting hidden layers' weight adjoints are left
        out of the chunk pass and formed by `_fit_weight_rows` once every worker is done."""
        grad = self._rows[w]
        if self._fresh[w]:
            grad.clear()
            self._fresh[w] = False
        c = self._chunks[w]
        if c is None:   # not in the team of the last primal
            return
        tm = c.team
        try:
            self._backward_pass(w, c_e, u, eps, c_f, c_v, defer is None)
            if defer is None:
                return
            self._barrier.wait()  # every chunk's [y; ẏ], [z̄; ż̄] and padding adjoint are in
            if w == 0 and defer["pad"]:
                self._padding_reverse_all()
                if defer["update"] is not None:
                    self._update_rest(defer["update"])
            self._fit_weight_rows(w, defer)
        except BaseException:
            tm.abort()  # the other workers raise BrokenBarrierError instead of waiting (split: the
            raise       # team's barrier is `_barrier`)

    def _backward_pass(self, w: int, c_e: float | np.ndarray, u: np.ndarray, eps: np.ndarray, c_f: float,
                       c_v: float, fit_weights: bool) -> None:
        """Tangent rows and pair sums of Td of the worker's embedding rows; after a barrier, Td,
        the fitting tangent and reverse of its atoms (T̄) and their padding adjoints; after
        another, the reverse of its embedding rows."""
        grad = self._rows[w]
        c = self._chunks[w]
        tm = c.team
        p = self.params
        d = p.descriptor
        ws = self.ws[w]
        part = tm.parts[c.rank]
        part[:] = 0.0
        mapping = tm.frame.mapping
        for g in c.groups:
            K.tangent_rows(g.u0, g.u1, g.t, tm.ustart, tm.pair_atom, tm.atoms, tm.atypes, tm.dvec,
                           tm.nbr, mapping, u, eps, c_f, c_v, self.sd, d.rcut, d.rcut_smth, tm.rtd)
            K.tangent_T(g.u0, g.u1, g.u0, tm.ustart, tm.pair_atom, tm.rt, tm.rtd, c.G[g.r0:g.r1],
                        c.Gp[g.r0:g.r1], part)
        tm.wait()  # every worker's pair sums of Td are in
        # Ṫ̄ = B(T, Ḋ̄) (`back_D_pair`) with Ḋ̄ = dE/dD (the tangent adjoints are the seed-1
        # adjoints, `FitCache`): the forward's dE/dT, bit for bit the same back_D_row call
        Tdbar = tm.Tbar
        Tbar = tm.Tbar_rev
        for a0, a1 in c.excluded:
            Tbar[a0:a1] = 0.0
        for f in c.fits:
            a0, a1 = f.a0, f.a1
            net = p.fitting.nets[f.ti]
            reduce_T(tm.parts, a0, a1, tm.atypes, tm.npad, self.rt_pad, self.G_pad, False, self.inv_nnei, tm.Td)
            # [D, f̂, â]: the tangent of f̂ and â is 0 (set by the forward)
            contract_D_tangent(tm.T[a0:a1], tm.Td[a0:a1], d.axis_neuron,
                               f.cache.Dd[:, :self.dim] if self.nfp + self.nap else f.cache.Dd)
            fit_tangent(net, f.cache)
            ce = c_e if not isinstance(c_e, np.ndarray) else c_e[tm.atoms[a0:a1]]
            Db, Ddb = fit_reverse(net, self.flat.fitting[f.ti], f.cache, ce, grad, ws, ("fit", f.ti),
                                  fit_weights, self.embedding_grad)
            if not self.embedding_grad:
                continue
            if self.nfp + self.nap:   # (the parameters' adjoints go nowhere)
                Db, Ddb = Db[:, :self.dim], Ddb[:, :self.dim]
            K.back_D_pair(tm.T[a0:a1], tm.Td[a0:a1], Db, Ddb, d.axis_neuron, self.inv_nnei, Tbar[a0:a1])
        if not self.embedding_grad:
            return
        for _, a0, a1 in c.ranges:
            K.padding_adjoints(tm.atypes[a0:a1], tm.npad[a0:a1], self.rt_pad, Tbar[a0:a1], self.pad_bars[w])
        tm.wait()  # every atom's T̄ is in
        for g in c.groups:
            if g.u1 == g.u0:
                continue

            def adjoint(b0, b1, Gbar, Gpbar, g=g):
                K.pair_adjoints(g.u0 + b0, g.u0 + b1, tm.ustart, tm.pair_atom, tm.rt, tm.rtd, Tbar,
                                Tdbar, Gbar, Gpbar)

            embed_reverse(d.embeddings[g.k], self.flat.embedding[g.k], g.cache, adjoint, grad, ws)


def _seed_args(c_e, u, eps, c_f, c_v) -> tuple:
    """The gradient seeds (c_e, u, eps, c_f, c_v) as the kernels take them (float64, contiguous;
    c_e a float, or a per-atom array)."""
    ce = np.asarray(c_e, dtype=np.float64) if isinstance(c_e, np.ndarray) else float(c_e)
    return (ce, np.ascontiguousarray(u, dtype=np.float64), np.ascontiguousarray(eps, dtype=np.float64),
            float(c_f), float(c_v))


def _given(values, shape: tuple, what: str) -> np.ndarray:
    """A frame's `what` ("frame" or "atomic") parameters `values` as float64 of `shape`;
    ValueError if absent or of another shape."""
    if values is None or np.shape(values) != shape:
        raise ValueError(f"the model takes {what} parameters of shape {shape}; the frame has "
                         f"{None if values is None else np.shape(values)}")
    return np.asarray(values, dtype=np.float64)


def _range_atoms(tm: _Team, ranges: list[tuple[int, int, int]]) -> np.ndarray:
    """The local atom indices of team atom ranges (ti, a0, a1), in order (int64)."""
    if not ranges:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([tm.atoms[a0:a1] for _, a0, a1 in ranges])


def _type_order(types: np.ndarray) -> np.ndarray:
    """Local atom indices sorted by type (stable), int64."""
    return np.argsort(types, kind="stable").astype(np.int64)


def _result(frame: Frame, chunks: list, atom_energy: np.ndarray) -> PrimalResult:
    """Reduce the chunks' extended forces and virials (in chunk order) to the frame's result."""
    nall = frame.ext_pos.shape[0]
    force_ext = np.zeros((nall, 3))
    virial = np.zeros((3, 3))
    for c in chunks:
        force_ext += c.force
        virial += c.virial
    forces = np.zeros((frame.nloc, 3))
    for a in range(3):
        forces[:, a] = np.bincount(frame.mapping, weights=force_ext[:, a], minlength=frame.nloc)
    return PrimalResult(float(atom_energy.sum()), forces, virial, atom_energy)
