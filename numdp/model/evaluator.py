"""Energy, forces and virials of an se_e2_a model on extended (local + ghost) atoms.

The work is split into chunks of centre atoms (sorted by type so that every fitting product is
one contiguous GEMM) so that memory stays bounded whatever the system size.  Chunks are handed
to worker threads in a fixed round-robin order; each worker accumulates into its own force and
virial buffers, which are summed in worker order, so results are deterministic for a given
thread count.  All kernels release the GIL, as do NumPy's BLAS products and ufuncs.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..kernels.cpu.descriptor import back_D, contract_D, contract_T
from ..kernels.cpu.envmat import env_pairs_rows, pair_forces
from ..kernels.cpu.tabulated import tab_contract_T, tab_pair_forces
from ..blas import set_blas_threads
from ..neighbor.threads import free_at_fork
from .nets import InferenceNet, embed_into, embed_value, fit_energy_and_grad, fold_symmetric_input
from .params import ModelParams
from .precision import get_precision
from .tables import evaluate_table
from .workspace import ThreadWorkspaces

DEFAULT_CHUNK = 256          # centre atoms per chunk: G and dG/dx take ~140 kB per atom
DEFAULT_CHUNK_COMPRESSED = 512  # no G is stored; bigger chunks make bigger fitting GEMMs


def padded_width(M: int, dtype) -> int:
    """M rounded up to a whole number of 64-byte vectors of dtype (8 float64, 16 float32)."""
    lanes = 64 // np.dtype(dtype).itemsize
    return -(-M // lanes) * lanes


@dataclass
class RawOutput:
    """Per-extended-atom results before folding ghosts onto owners.

    atom_energy: (nloc,) eV; force: (nall, 3) eV/Å; virial: (3, 3) eV;
    atom_virial: (nall, 9) eV or None.
    """

    atom_energy: np.ndarray
    force: np.ndarray
    virial: np.ndarray
    atom_virial: np.ndarray | None


@dataclass
class ChunkEnv:
    """Environment rows of one chunk of na centre atoms (numdp.kernels.cpu.envmat.env_pairs).

    atoms (na,) local indices sorted by type, atypes (na,) int64; rt (>=npairs, 4) normalised
    rows; dvec (>=npairs, 3) pair vectors Å; nbr (>=npairs,) extended neighbour indices;
    poff (ntypes, na+1) pair offsets; npad (na, ntypes) padding slots; tb (ntypes+1,) type
    boundaries in `atoms`.
    """

    atoms: np.ndarray
    atypes: np.ndarray
    rt: np.ndarray
    dvec: np.ndarray
    nbr: np.ndarray
    poff: np.ndarray
    npad: np.ndarray
    npairs: int
    tb: np.ndarray


class Evaluator:
    """Holds the per-model constants (normalisation per block, padding embeddings)."""

    def __init__(self, params: ModelParams, nthreads: int = 1, chunk: int | None = None,
                 precision="double"):
        params.validate()
        self.params = params
        self.precision = get_precision(precision)
        self.nthreads = max(1, int(nthreads))
        compressed = params.descriptor.tables is not None
        self.chunk = int(chunk or (DEFAULT_CHUNK_COMPRESSED if compressed else DEFAULT_CHUNK))
        d = params.descriptor
        nt = d.ntypes
        sec = d.sec
        self.sec = sec
        self.mu, self.sd = d.block_stats()   # (ntypes, ntypes, 4); a block without slots: 0, 1
        self.rt_pad = -self.mu / self.sd
        self.excl = params.slot_modes   # (ntypes, ntypes) int8: pairs, zero rows or padding per block
        self.atom_excluded = params.atom_excluded   # (ntypes,) bool: types whose atomic energy is zero
        self.embed = [InferenceNet(net, self.precision) for net in d.embeddings]
        # the fitting nets read D in the folded layout (symmetric block stored once) when none
        # of their first layers has a residual
        folded = [fold_symmetric_input(net, d.neuron[-1], d.axis_neuron) for net in params.fitting.nets]
        self.folded = all(net is not None for net in folded)
        fit_nets = folded if self.folded else params.fitting.nets
        self.fit = [InferenceNet(net, self.precision) for net in fit_nets]
        self.d_width = fit_nets[0].layers[0].n_in   # columns of D per atom in the layout used
        self.netidx = np.array([[d.net_index(ti, t) for t in range(nt)] for ti in range(nt)], np.int64)
        self.compressed = d.tables is not None
        M = d.neuron[-1]
        # compressed models pad M to whole SIMD vectors (64 bytes) with zero coefficients, so the
        # table kernels' loops over M have no scalar remainder; T and Tbar carry the padding
        self.M_pad = padded_width(M, self.precision.dtype) if self.compressed else M
        if self.compressed:
            self.coef = np.zeros((sum(tab.coef.shape[0] for tab in d.tables), d.tables[0].coef.shape[1],
                                  self.M_pad), self.precision.dtype)
            self.coef[..., :M] = np.concatenate([tab.coef for tab in d.tables])
            self.coff = np.concatenate([[0], np.cumsum([tab.coef.shape[0] for tab in d.tables])]).astype(np.int64)
            self.meta = np.stack([tab.meta() for tab in d.tables])
        self.G_pad = np.zeros((nt, nt, self.M_pad))
        for ti in range(nt):
            for t in range(nt):
                if d.sel[t] > 0:
                    k = self.netidx[ti, t]
                    x_pad = self.rt_pad[ti, t, :1].copy()
                    if self.compressed:
                        self.G_pad[ti, t, :M] = evaluate_table(d.tables[k], x_pad)[0][0]
                    else:
                        self.G_pad[ti, t] = embed_value(x_pad, self.embed[k])[0]
        self.beyond_table = 0  # pairs evaluated outside a compressed model's tables
        self.atom_bias = params.fitting.bias_atom_e + params.out_bias
        # atomic parameters that differ between atoms (`set_atom_parameters`): delta (nloc, nap)
        # and each type's W_a (nap, first fitting width), or None
        self.atom_delta: np.ndarray | None = None
        self.aparam_w: list[np.ndarray] | None = None
        self._pool = None
        self._pool_pid = None   # the process that made _pool
        self._lock = threading.Lock()
        # a child forked while another thread made the pool or counted pairs beyond the tables
        # gets the lock free (the pool is remade anyway, `_executor`)
        free_at_fork(self, self._lock)
        self._scratch = ThreadWorkspaces()

    def set_first_layer_biases(self, biases) -> None:
        """Give each fitting net's first layer the bias biases[t] ((n_out,) float64, rounded to
        the policy's dtype), in place: a model with frame parameters evaluated at other ones
        (numdp.model.dp_model.DPModel; the arrays may be the model's own)."""
        for net, b in zip(self.fit, biases):
            net.layers[0].b[...] = b

    def set_atom_parameters(self, delta: np.ndarray | None, weights=None) -> None:
        """From now on add delta[i] W_a[t_i] to the first fitting layer's z of local atom i of
        type t_i (atomic parameters that differ between atoms: delta (nloc, nap) float64,
        `numdp.model.params.aparam_delta`; weights: each type's W_a (nap, n_out),
        `aparam_weights`, kept from the first call); None: nothing.  Each compute must then have
        nloc atoms.  The rows are formed chunk by chunk: nap numbers kept per atom."""
        if weights is not None and self.aparam_w is None:
            self.aparam_w = [np.ascontiguousarray(w, dtype=np.float64) for w in weights]
        self.atom_delta = None if delta is None else np.ascontiguousarray(delta, dtype=np.float64)

    def shares_environment(self, other: "Evaluator") -> bool:
        """True when `other` computes the same environment matrix as this evaluator on any
        configuration: equal rcut, rcut_smth, sel (slot blocks), normalisation (davg, dstd) and
        excluded type pairs, of the descriptor and of the model (a DP-GEN ensemble trained on one
        data set), so one env_pairs serves both."""
        a, b = self.params.descriptor, other.params.descriptor
        return (float(a.rcut) == float(b.rcut) and float(a.rcut_smth) == float(b.rcut_smth)
                and np.array_equal(self.sec, other.sec) and np.array_equal(self.mu, other.mu)
                and np.array_equal(self.sd, other.sd) and np.array_equal(self.excl, other.excl))

    # -- orchestration -------------------------------------------------------------------
    def compute(self, ext_pos, nlist, types, want_force=True, want_atom_virial=False,
                want_descriptor=False) -> RawOutput:
        """Evaluate on nloc = len(types) local atoms.

        ext_pos: (nall, 3) Å, locals first; nlist: (nloc, nnei) int32 extended indices, per-type
        blocks, -1 padding, or a `numdp.neighbor.NeighborRows` whose rows are formatted chunk by
        chunk into scratch (the whole list is never stored); types: (nloc,) int32.
        """
        return compute_shared([self], ext_pos, nlist, types, want_force, want_atom_virial,
                              want_descriptor)[0]

    def _executor(self, nw):
        """The worker pool (at least nw threads), shared by concurrent callers.  A process forked
        after the pool was made has none of its threads (work submitted there would wait for
        ever), so it gets its own: one os.getpid() per call (~0.1 us)."""
        with self._lock:
            if self._pool is None or self._pool._max_workers < nw or self._pool_pid != os.getpid():
                self._pool = ThreadPoolExecutor(max_workers=nw, thread_name_prefix="numdp")
                self._pool_pid = os.getpid()
            return self._pool

    # -- one chunk -----------------------------------------------------------------------
    def _env(self, ext_pos, nlist, types, atoms, ws) -> "ChunkEnv":
        """The environment rows of a chunk of centre atoms (sorted by type), in `ws`."""
        d = self.params.descriptor
        nt = d.ntypes
        na = atoms.shape[0]
        atypes = types[atoms].astype(np.int64)
        cap = na * d.nnei
        rt = ws.get("rt", (cap, 4))
        dvec = ws.get("dvec", (cap, 3))
        nbr = ws.get("nbr", cap, np.int64)
        poff = ws.get("poff", (nt, na + 1), np.int64)
        npad = ws.get("npad", (na, nt), np.int64)
        if isinstance(nlist, np.ndarray):
            rows, nl = atoms, nlist
        else:  # NeighborRows: this chunk's rows only, in chunk order
            nl = nlist.rows(atoms, ws.get("nlist", (na, d.nnei), np.int32), ws.get("ncount", (na, nt), np.int32))
            rows = ws.get("rows", na, np.int64)
            rows[:] = np.arange(na)
        npairs = env_pairs_rows(ext_pos, nl, rows, atoms, atypes, self.sec, self.mu, self.sd, self.excl,
                                d.rcut, d.rcut_smth, rt, dvec, nbr, poff, npad)
        tb = np.searchsorted(atypes, np.arange(nt + 1))  # type boundaries (atoms sorted by type)
        return ChunkEnv(atoms, atypes, rt, dvec, nbr, poff, npad, int(npairs), tb)

    def _chunk(self, env: "ChunkEnv", want_force, want_atom_virial, atom_energy, descr, force,
               virial, atom_virial):
        """Embedding, descriptor, fitting and pair forces of one chunk on its environment rows
        `env` (computed by this evaluator or by one that shares_environment with it)."""
        p = self.params
        d = p.descriptor
        nt = d.ntypes
        ws = self._scratch.get()
        atoms, atypes, rt, poff, npad, tb = env.atoms, env.atypes, env.rt, env.poff, env.npad, env.tb
        na = atoms.shape[0]
        T = ws.get("T", (na, 4, self.M_pad))
        if self.compressed:
            beyond = np.zeros(1, np.int64)
            tab_contract_T(atypes, rt, poff, npad, self.rt_pad, self.G_pad, self.coef, self.coff,
                           self.meta, self.netidx, 1.0 / d.nnei, T, beyond)
            if beyond[0]:
                with self._lock:
                    self.beyond_table += int(beyond[0])
        else:
            G, Gp = self._embed(rt, env.npairs, poff, tb, want_force, ws)
            contract_T(atypes, rt, G, poff, npad, self.rt_pad, self.G_pad, 1.0 / d.nnei, T)
        # D is computed in float64 and stored in the fitting nets' dtype (rounded once, here)
        D = ws.get("D", (na, self.d_width), self.precision.dtype)
        contract_D(T, d.axis_neuron, self.folded, D)
        if descr is not None:   # the full float64 layout
            if D.dtype != np.float64 or self.folded:
                contract_D(T, d.axis_neuron, False, ws.get("D64", (na, d.dim_out)))
                descr[atoms] = ws.get("D64", (na, d.dim_out))
            else:
                descr[atoms] = D
        gD = ws.get("gD", (na, self.d_width), self.precision.dtype) if want_force else None
        for ti in range(nt):
            a0, a1 = tb[ti], tb[ti + 1]
            if a1 == a0:
                continue
            if self.atom_excluded[ti]:   # atom_exclude_types: no energy, no gradient
                atom_energy[atoms[a0:a1]] = 0.0
                if gD is not None:
                    gD[a0:a1] = 0.0
                continue
            shift = None if self.atom_delta is None else self.atom_delta[atoms[a0:a1]] @ self.aparam_w[ti]
            e, _ = fit_energy_and_grad(D[a0:a1], self.fit[ti], want_force, ws,
                                       None if gD is None else gD[a0:a1], shift)
            atom_energy[atoms[a0:a1]] = e + self.atom_bias[ti]
        if not want_force:
            return
        # the table kernels read Tbar in the tables' dtype: back_D sums in float64 and rounds
        # once on storing
        Tbar = ws.get("Tbar", T.shape, self.coef.dtype if self.compressed else np.float64)
        back_D(T, gD, d.axis_neuron, self.folded, 1.0 / d.nnei, Tbar)
        if self.compressed:
            tab_pair_forces(atoms, atypes, rt, env.dvec, env.nbr, poff, self.coef, self.coff, self.meta,
                            self.netidx, Tbar, self.sd, d.rcut, d.rcut_smth, force, virial,
                            atom_virial, want_atom_virial)
        else:
            pair_forces(atoms, atypes, rt, env.dvec, env.nbr, poff, G, Gp, Tbar, self.sd, d.rcut,
                        d.rcut_smth, force, virial, atom_virial, want_atom_virial)

    def _embed(self, rt, npairs, poff, tb, want_force, ws):
        """G and dG/dx (npairs, M) of every occupied pair, net by net (Gp None without forces)."""
        d = self.params.descriptor
        nt = d.ntypes
        M = d.neuron[-1]
        x = ws.get("x", npairs)
        x[:] = rt[:npairs, 0]
        G = ws.get("G", (npairs, M), self.precision.dtype)
        Gp = ws.get("Gp", (npairs, M), self.precision.dtype) if want_force else None
        for t in range(nt):
            for a0, a1, k in d.net_spans(t, tb):
                p0, p1 = poff[t, a0], poff[t, a1]
                if p1 == p0:
                    continue
                embed_into(x[p0:p1], self.embed[k], G[p0:p1], None if Gp is None else Gp[p0:p1], ws)
        return G, Gp


def compute_shared(evaluators, ext_pos, nlist, types, want_force=True, want_atom_virial=False,
                   want_descriptor=False) -> list[RawOutput]:
    """Evaluate several models on one configuration, computing the environment matrix once.

    evaluators: Evaluators that all shares_environment with evaluators[0] (ValueError
    otherwise); the chunking, thread count and pool are evaluators[0]'s, so its result is
    bit-identical to evaluators[0].compute, and every other model's equals its own compute up to
    the order of the force and virial sums (chunk sizes, thread count).  Per chunk of centre
    atoms, env_pairs runs once and each model's embedding, descriptor, fitting and pair forces
    run on its rows.  Arguments as Evaluator.compute; returns one RawOutput per evaluator.
    """
    ev0 = evaluators[0]
    for ev in evaluators[1:]:
        if not ev0.shares_environment(ev):
            raise ValueError("compute_shared: the models differ in rcut, rcut_smth, sel, davg, dstd or "
                             "excluded type pairs")
    set_blas_threads(1)
    nloc = types.shape[0]
    nall = ext_pos.shape[0]
    for ev in evaluators:
        if ev.atom_delta is not None and ev.atom_delta.shape[0] != nloc:
            raise ValueError(f"compute: atomic parameters of {ev.atom_delta.shape[0]} atoms, {nloc} given")
    order = np.argsort(types, kind="stable").astype(np.int64)
    # a multiple of the thread count of equal chunks, none larger than the chunk size
    nchunk = -(-max(1, -(-nloc // ev0.chunk)) // ev0.nthreads) * ev0.nthreads
    size = max(1, -(-nloc // nchunk))
    chunks = [order[s:s + size] for s in range(0, nloc, size)]
    nw = min(ev0.nthreads, max(1, len(chunks)))
    nm = len(evaluators)
    atom_energy = [np.zeros(nloc) for _ in range(nm)]
    descr = [np.zeros((nloc, ev.params.descriptor.dim_out)) if want_descriptor else None for ev in evaluators]
    forces = [[np.zeros((nall, 3)) for _ in range(nw)] for _ in range(nm)]
    virials = [[np.zeros((3, 3)) for _ in range(nw)] for _ in range(nm)]
    avs = [[np.zeros((nall if want_atom_virial else 1, 9)) for _ in range(nw)] for _ in range(nm)]

    def work(w):
        for c in range(w, len(chunks), nw):
            env = ev0._env(ext_pos, nlist, types, chunks[c], ev0._scratch.get())
            for k, ev in enumerate(evaluators):
                ev._chunk(env, want_force, want_atom_virial, atom_energy[k], descr[k], forces[k][w],
                          virials[k][w], avs[k][w])

    if nw == 1:
        work(0)
    else:
        pool = ev0._executor(nw)
        for fut in [pool.submit(work, w) for w in range(nw)]:
            fut.result()
    outs = []
    for k in range(nm):
        force = forces[k][0]
        virial = virials[k][0]
        atom_virial = avs[k][0] if want_atom_virial else None
        for w in range(1, nw):
            force += forces[k][w]
            virial += virials[k][w]
            if want_atom_virial:
                atom_virial += avs[k][w]
        out = RawOutput(atom_energy[k], force, virial, atom_virial)
        if want_descriptor:
            out.descriptor = descr[k]
        outs.append(out)
    return outs
