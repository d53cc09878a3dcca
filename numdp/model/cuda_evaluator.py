"""The se_e2_a evaluation on a CUDA device (numdp.kernels.cuda), data on the device throughout.

Same interface and results as numdp.model.evaluator.Evaluator (whose per-model constants it
reuses: normalisation, padding embeddings G_pad, nets prepared for the precision, folded D layout,
packed tables).  Work proceeds in chunks of centre atoms (sorted by type, so each fitting product
is one matrix product per type), so device memory per atom is bounded (docs/gpu.md, "Memory"):

    env_pairs → embedding (matmul + fused layer kernels) or tab_contract_T → contract_T →
    contract_D → fitting nets (matmul + fused kernels) forward and back → back_D →
    pair_forces / tab_pair_forces (one force vector per slot) → gather_centres, gather_neighbours
    → (DPModel.evaluate, `compute_owned`) fold_rows: ghost rows onto their owners

Deterministic: every output element is written by one thread, which sums in a fixed order (no
floating-point atomics); chunks run in a fixed order.  Same input, same bits.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

import numpy as np

from ..backend import Backend, DeviceConstants
from ..neighbor.device import DeviceNeighborList
from .evaluator import Evaluator, RawOutput
from .params import ModelParams

DEFAULT_CHUNK = 4096             # uncompressed: G and dG/dx take 2 M nnei bytes per atom per width
DEFAULT_CHUNK_COMPRESSED = 32768  # no G stored


def descriptor_columns(M: int, naxis: int, width: int, folded: bool):
    """(colm, colk) int64 (width,): D[col] = Σ_c T[c, colm] T[c, colk] in the full layout
    (col = m naxis + k) or the folded one (numdp.kernels.cpu.descriptor.folded_rows)."""
    if not folded:
        m, k = np.divmod(np.arange(M * naxis), naxis)
        return m.astype(np.int64), k.astype(np.int64)
    cols = [(m, k) for m in range(naxis) for k in range(m, naxis)]
    cols += [(m, k) for k in range(naxis) for m in range(naxis, M)]
    assert len(cols) == width
    a = np.array(cols, np.int64)
    return a[:, 0].copy(), a[:, 1].copy()


def descriptor_adjacency(colm, colk, M: int):
    """CSR (start (M+1,), col, other) of the columns in which T[:, x] appears, as m (other = k)
    and as k (other = m), sorted by (x, col, role): the fixed summation order of back_D."""
    x = np.concatenate([colm, colk])
    col = np.concatenate([np.arange(len(colm)), np.arange(len(colm))])
    other = np.concatenate([colk, colm])
    role = np.repeat([0, 1], len(colm))
    order = np.lexsort((role, col, x))
    start = np.searchsorted(x[order], np.arange(M + 1)).astype(np.int64)
    return start, col[order].astype(np.int64), other[order].astype(np.int64)


def descriptor_column_map(colm, colk, M: int, naxis: int):
    """(M, naxis) int64: the column of D holding (m, k), or -1 where the layout has none."""
    colmap = np.full((M, naxis), -1, np.int64)
    colmap[np.asarray(colm), np.asarray(colk)] = np.arange(len(colm))
    return colmap


def back_D_products(be: Backend, T, gD, colmap, inv_nnei: float):
    """Tbar (na, 4, M) = inv_nnei dE/dT (as back_D) from gD = dE/dD (na, width), as two batched
    matrix products: with Gm (na, M, naxis) = inv_nnei times the adjoint of D[m, k] = Σ_c T[c, m]
    T[c, k] (`unfold_gD` through `descriptor_column_map`), Tbar = T< Gmᵀ + [T Gm, 0] with
    T< = T[:, :, :naxis].  Four device operations."""
    xp = be.xp
    na, _, M = T.shape
    naxis = colmap.shape[1]
    Gm = xp.empty((na, M, naxis))
    be.kernels.descriptor.unfold_gD[be.kernels.launch.strided2(na, M * naxis)](gD, colmap, inv_nnei, Gm)
    Tbar = xp.matmul(T[:, :, :naxis], Gm.transpose(0, 2, 1))
    Tbar[:, :, :naxis] += xp.matmul(T, Gm)
    return Tbar


@dataclass
class _DevNet:
    """A net's layers as device arrays (weights already in the policy's dtype), and the same
    packed flat for the fused per-pair kernel (numdp.kernels.cuda.embedding)."""

    w: list
    b: list
    idt: list
    mode: list
    act: list          # activation code per layer (numdp.model.activation)
    packed: tuple = ()


@dataclass
class DeviceChunkEnv:
    """The environment rows of one chunk of na centre atoms on the device (kernel env_pairs), and
    the reverse index of their neighbours, which is all the force kernels read of the pairs: one
    per chunk for every model that shares_environment (`compute_device_shared`).

    atoms_host (na,) local indices sorted by type (host), atoms / atypes (na,) int64 the same and
    their types (device); rt (P, 4) normalised rows, dvec (P, 3) pair vectors Å, nbr (P,) int32
    extended neighbour, SLOT_PAD (-1) or SLOT_EXCLUDED (-2) (numdp.kernels.cuda.envmat), for the
    P = na nnei slots (device); tb (ntypes + 1,) type
    boundaries in atoms (host)."""

    atoms_host: np.ndarray
    atoms: object
    atypes: object
    rt: object
    dvec: object
    nbr: object
    tb: np.ndarray
    _reverse: tuple | None = None

    def reverse_index(self, be: Backend) -> tuple:
        """(rev (P,), snbr (P,)) device arrays for gather_neighbours: the pairs sorted by
        (neighbour, pair) (unique keys: every sort agrees; padding and excluded slots, negative, sort
        first) and their
        neighbours in that order, so that each neighbour's pairs are one run of snbr.  Formed at
        the first call: the keys and the sorted neighbours are kernels
        (numdp.kernels.cuda.forces), the sort the array library's: three launches, no host read
        (the runs are found by the gather itself, one thread per sorted position)."""
        if self._reverse is None:
            xp, K = be.xp, be.kernels
            nbr = self.nbr
            P = int(nbr.shape[0])
            key = xp.empty(P, np.int64)
            K.forces.pair_sort_keys[K.launch.strided(P)](nbr, key)
            rev = xp.argsort(key)
            snbr = xp.empty(P, np.int32)
            K.forces.sorted_neighbours[K.launch.strided(P)](nbr, rev, snbr)
            self._reverse = (rev, snbr)
        return self._reverse


EMBEDDINGS = ("gemm", "fused")


class KernelForm(Enum):
    """How T of a compressed model and the adjoint of D are formed (an experiment until timed on
    a GPU; both give the same T bits, Tbar to round-off):

    THREAD: one thread per element, tab_contract_T and back_D (the default);
    TEAM: a team of threads per atom for T (tab_contract_T_team, contract_T_team: each slot's
    loads, and for tables its lookup, serve four channels) and for the pair forces (tab_pair_forces_team, pair_forces_team: table rows and
    G, G' read along the channels), and back_D as two batched matrix products, Tbar = (T< Gmᵀ + [T Gm, 0]) / nnei
    with Gm (na, M, naxis) the adjoint of D as a matrix (unfold_gD), four operations for one."""

    THREAD = "thread"
    TEAM = "team"
# device copies of chunk atoms kept (`CUDAEvaluator._env`): every chunk of a run's systems
CHUNK_ATOMS_KEPT = 64
# False: the force call's outputs zeroed by the array library, the virial subtracted by it and the
# fitting nets' adjoint seeds filled at every call (2 + 1 per type of each chunk more operations
# per call and model, the same bits: tests/test_cuda_force_launches.py compares the two)
FOLD_TOTALS = True
# the largest adjoint seed (atoms x fitting width elements, 512 kB in float64) kept between calls:
# at most CHUNK_ATOMS_KEPT of them, 32 MB; larger chunks, whose launch count does not matter,
# make theirs per call (a 32 768-atom chunk's is 63 MB)
SEED_KEPT_ELEMENTS = 1 << 16
ASSEMBLIES = ("gather", "atomic")


class CUDAEvaluator:
    """Evaluates a model on a CUDA backend; `compute` has Evaluator.compute's signature and
    returns host arrays (RawOutput)."""

    def __init__(self, params: ModelParams, backend: Backend, chunk: int | None = None,
                 precision="double"):
        self.be = be = backend
        self.cpu = cpu = Evaluator(params, 1, precision=precision)   # shared per-model constants
        self.params = params
        self.precision = cpu.precision
        self.compressed = cpu.compressed
        self.chunk = int(chunk or (DEFAULT_CHUNK_COMPRESSED if self.compressed else DEFAULT_CHUNK))
        d = params.descriptor
        self.M = M = d.neuron[-1]
        self.sec = be.to_device(np.asarray(cpu.sec, np.int64))
        self.sec_host = np.asarray(cpu.sec, np.int64)
        self.mu = be.to_device(cpu.mu)
        self.sd = be.to_device(cpu.sd)
        self.rt_pad = be.to_device(cpu.rt_pad)
        self.excl = be.to_device(cpu.excl)
        self.G_pad = be.to_device(np.ascontiguousarray(cpu.G_pad[..., :M]))
        self.folded = cpu.folded
        colm, colk = descriptor_columns(M, d.axis_neuron, cpu.d_width, cpu.folded)
        self.colm, self.colk = be.to_device(colm), be.to_device(colk)
        self.adj = tuple(be.to_device(a) for a in descriptor_adjacency(colm, colk, M))
        self.colmap = be.to_device(descriptor_column_map(colm, colk, M, d.axis_neuron))
        self.embed = [self._dev_net(net) for net in cpu.embed]
        self.fit = [self._dev_net(net) for net in cpu.fit]
        self.fit_bias = [float(net.layers[-1].b[0]) for net in cpu.fit]
        if self.compressed:
            self.coef = be.to_device(np.ascontiguousarray(cpu.coef[..., :M]))
            self.coff = be.to_device(cpu.coff)
            self.meta = be.to_device(cpu.meta)
            self.netidx = be.to_device(cpu.netidx)
            self.tab = be.kernels.tabulated.kernels_for(cpu.coef.dtype)
        self.atom_bias = cpu.atom_bias
        # device copies of Evaluator.atom_delta and aparam_w (`set_atom_parameters`)
        self.atom_delta = None
        self.aparam_w = None
        # pairs evaluated beyond the tables, counted on the device by the forward table kernel
        # (read only when asked for: no host read per evaluation, and an MD force call captured
        # in a CUDA graph, numdp.md.device_graph, keeps counting when replayed)
        self._beyond = be.xp.zeros(1, np.int64) if self.compressed else None
        self._chunk_atoms = DeviceConstants(CHUNK_ATOMS_KEPT)   # device copies of chunk atoms (`_env`)
        self._fit_seeds = DeviceConstants(CHUNK_ATOMS_KEPT)   # `_fit`'s adjoint seeds per (type, atoms)
        self._embedding = "gemm"
        # "gather" (deterministic, the default) or "atomic" (floating-point atomics: for the
        # benchmark's measurement of what determinism costs; results vary in the last bits)
        self.assembly = "gather"
        self.kernel_form = KernelForm.THREAD

    def set_first_layer_biases(self, biases) -> None:
        """`Evaluator.set_first_layer_biases` on the device copies (in place: a CUDA graph that
        captured them stays valid) and on the host evaluator's."""
        self.cpu.set_first_layer_biases(biases)
        for net, cnet in zip(self.fit, self.cpu.fit):
            net.b[0][...] = self.be.to_device(cnet.layers[0].b)

    def set_atom_parameters(self, delta, weights=None) -> None:
        """`Evaluator.set_atom_parameters` with device copies (float64; the rows delta_i W_a are
        formed per chunk and rounded to the fitting nets' dtype, as on the CPU)."""
        if weights is not None and self.aparam_w is None:
            self.aparam_w = [self.be.to_device(np.ascontiguousarray(w, dtype=np.float64)) for w in weights]
        self.atom_delta = None if delta is None else self.be.to_device(np.ascontiguousarray(delta, dtype=np.float64))

    def use_kernel_products(self) -> None:
        """From now on, the matrix products through numdp.kernels.cuda.gemm instead of cuBLAS
        (`CUDABackend.kernel_products`): what a force call captured in a CUDA graph needs."""
        self.be = replace(self.be, kernel_products=True)

    @property
    def beyond_table(self) -> int:
        """Pairs evaluated outside a compressed model's tables so far (counted on the device:
        one host read when this is read, none per evaluation)."""
        return 0 if self._beyond is None else int(self.be.to_host(self._beyond)[0])

    def _dev_net(self, net) -> _DevNet:
        be = self.be
        lays = net.layers
        widths = [lays[0].w.shape[0]] + [lay.w.shape[1] for lay in lays]
        woff = np.concatenate([[0], np.cumsum([lay.w.size for lay in lays])]).astype(np.int64)
        boff = np.concatenate([[0], np.cumsum(widths[1:])]).astype(np.int64)
        packed = (be.to_device(np.concatenate([lay.w.ravel() for lay in lays])),
                  be.to_device(np.concatenate([lay.b for lay in lays])),
                  be.to_device(np.concatenate([lay.idt for lay in lays])),
                  be.to_device(woff), be.to_device(boff), be.to_device(np.array(widths, np.int64)),
                  be.to_device(np.array([int(lay.mode) for lay in lays], np.int64)),
                  be.to_device(np.array([int(lay.act) for lay in lays], np.int64)))
        return _DevNet([be.to_device(lay.w) for lay in lays], [be.to_device(lay.b) for lay in lays],
                       [be.to_device(lay.idt) for lay in lays], [int(lay.mode) for lay in lays],
                       [int(lay.act) for lay in lays], packed)

    @property
    def embedding(self) -> str:
        """How uncompressed embedding nets run: "gemm" (batched matrix products + fused layer
        kernels, the default) or "fused" (one thread per slot runs the whole net; not for mix16,
        whose half-precision operands need the matrix products)."""
        return self._embedding

    @embedding.setter
    def embedding(self, mode: str) -> None:
        from ..errors import InputError

        if mode not in EMBEDDINGS:
            raise InputError(f"embedding '{mode}' is not one of {', '.join(EMBEDDINGS)}")
        if mode == "fused":
            from ..kernels.cuda.embedding import MAX_WIDTH

            if self.precision.half_operands:
                raise InputError("the fused embedding kernel does not do mix16 (use embedding 'gemm')")
            if max(self.params.descriptor.neuron) > MAX_WIDTH:
                raise InputError(f"the fused embedding kernel takes layers up to {MAX_WIDTH} wide")
        self._embedding = mode

    # -- orchestration -------------------------------------------------------------------
    def compute(self, ext_pos, nlist, types, want_force=True, want_atom_virial=False,
                want_descriptor=False) -> RawOutput:
        """As Evaluator.compute: ext_pos (nall, 3) Å, nlist (nloc, nnei) int32, types (nloc,)
        int32, host or device arrays; returns host arrays."""
        be = self.be
        energy, force, virial, av, descr = self._compute(ext_pos, nlist, types, want_force, want_atom_virial,
                                                         want_descriptor)
        out = RawOutput(be.to_host(energy), be.to_host(force), be.to_host(virial).reshape(3, 3),
                        be.to_host(av) if want_atom_virial else None)
        if want_descriptor:
            out.descriptor = descr
        return out

    def compute_owned(self, ext_pos, nlist, types, mapping, want_atom_virial=False) -> RawOutput:
        """The evaluation of DPModel.evaluate: as `compute`, with the forces and atomic virials of
        the ghost atoms folded onto their owners on the device (`fold_order`, kernel
        numdp.kernels.cuda.forces.fold_rows: each owner sums itself then its images in index
        order, np.bincount's order on the CPU path).  mapping (nall,) int32 owner of each extended
        atom (host or device).  Returns host arrays: force (nloc, 3), atom_virial (nloc, 9) or None."""
        be, xp, K = self.be, self.be.xp, self.be.kernels
        energy, force, virial, av, _ = self._compute(ext_pos, nlist, types, True, want_atom_virial, False)
        nloc = int(energy.shape[0])
        order, start = fold_order(xp, be.to_device(mapping, np.int32), nloc)
        f_own = xp.empty((nloc, 3))
        K.forces.fold_rows[K.launch.strided2(nloc, 3)](force, order, start, f_own)
        av_own = None
        if want_atom_virial:
            av_own = xp.empty((nloc, 9))
            K.forces.fold_rows[K.launch.strided2(nloc, 9)](av, order, start, av_own)
        return RawOutput(be.to_host(energy), be.to_host(f_own), be.to_host(virial).reshape(3, 3),
                         None if av_own is None else be.to_host(av_own))

    def closest_pair(self, ext_pos, nlist) -> tuple[float, int, int]:
        """(distance Å, centre, extended neighbour) of the closest pair of a DeePMD-kit list of
        this model's sel on the device (module function `closest_pair`)."""
        return closest_pair(self.be, ext_pos, nlist, self.sec)

    def compute_device(self, ext_pos, nlist, types):
        """Energies and forces left on the device, for MD on the GPU (numdp.md.device).

        ext_pos (nall, 3) float64 Å and nlist (nloc, nnei) int32: device arrays (or a
        numdp.neighbor.device.DeviceRows, whose rows each chunk forms when it runs); types (nloc,)
        int32 host array (the atoms are ordered by type on the host, once per call).  Returns
        device arrays (atom_energy (nloc,) eV, force (nall, 3) eV/Å on every extended atom,
        virial (9,) eV)."""
        energy, force, virial, _, _ = self._compute(ext_pos, nlist, types, True, False, False)
        return energy, force, virial

    def shares_environment(self, other: "CUDAEvaluator") -> bool:
        """True when `other` computes the same environment matrix as this evaluator
        (Evaluator.shares_environment: equal rcut, rcut_smth, sel, davg, dstd and excluded type
        pairs) on the same
        chunks of centre atoms (equal chunk size), so that `compute_device_shared` hands it the
        environment rows of each chunk and its results keep their bits."""
        return self.chunk == other.chunk and self.cpu.shares_environment(other.cpu)

    def _compute(self, ext_pos, nlist, types, want_force, want_atom_virial, want_descriptor):
        return compute_device_shared([self], ext_pos, nlist, types, want_force, want_atom_virial,
                                     want_descriptor)[0]

    # -- one chunk -----------------------------------------------------------------------
    def _env(self, pos, nl, atoms_host, atypes_host) -> "DeviceChunkEnv":
        """The environment rows of a chunk of centre atoms `atoms_host` (host, sorted by type);
        nl: the whole list (nloc, nnei) on the device, or a numdp.neighbor.device.DeviceRows that
        formats this chunk's rows now."""
        from ..neighbor.device import DeviceRows

        be, xp, K = self.be, self.be.xp, self.be.kernels
        d = self.params.descriptor
        na = atoms_host.shape[0]
        P = na * d.nnei
        key = atoms_host.astype(np.int64).tobytes() + atypes_host.astype(np.int64).tobytes()
        atoms, atypes = self._chunk_atoms.get(   # MD: the same chunks every step, uploaded once
            key, lambda: (be.to_device(atoms_host.astype(np.int64)),
                          be.to_device(atypes_host.astype(np.int64))))
        rows = atoms   # the list row of chunk atom a
        if isinstance(nl, DeviceRows):
            nl = xp.asarray(nl.rows(atoms))
            rows = self._chunk_atoms.get(("rows", na), lambda: be.to_device(np.arange(na, dtype=np.int64)))
        rt = xp.empty((P, 4))
        dvec = xp.empty((P, 3))
        nbr = xp.empty(P, np.int32)
        K.envmat.env_pairs[K.launch.strided(P)](pos, nl, rows, atoms, atypes, self.sec, self.mu, self.sd,
                                                self.excl, d.rcut, d.rcut_smth, self.rt_pad, rt, dvec, nbr)
        tb = np.searchsorted(atypes_host, np.arange(d.ntypes + 1))
        return DeviceChunkEnv(atoms_host, atoms, atypes, rt, dvec, nbr, tb)

    def _chunk(self, env: "DeviceChunkEnv", want_force, energy, force, virial, atom_virial,
               want_atom_virial, descr, first: bool = False):
        """Embedding, descriptor, fitting and pair forces of one chunk on its environment rows
        `env` (computed by this evaluator or by one that shares_environment with it).  With
        want_force, force and virial are added to, or with `first` (the call's first chunk)
        written: the caller leaves them unset (kernel start_totals zeroes them)."""
        be, xp, K = self.be, self.be.xp, self.be.kernels
        launch = K.launch
        d = self.params.descriptor
        nt = d.ntypes
        atoms_host, atoms, atypes, rt, dvec, nbr, tb = (env.atoms_host, env.atoms, env.atypes, env.rt, env.dvec,
                                                        env.nbr, env.tb)
        na = atoms_host.shape[0]
        nnei = d.nnei
        P = na * nnei
        M = self.M
        T = xp.empty((na, 4, M))
        g2 = launch.strided2(na, M)
        if self.compressed:
            if self.kernel_form is KernelForm.TEAM:
                self.tab[2][launch.teams(na)](atypes, rt, nbr, self.sec, self.G_pad, self.coef, self.coff,
                                              self.meta, self.netidx, 1.0 / nnei, T, self._beyond)
            else:
                self.tab[0][g2](atypes, rt, nbr, self.sec, self.G_pad, self.coef, self.coff, self.meta,
                                self.netidx, 1.0 / nnei, T, self._beyond)
            G = Gp = None
        else:
            G, Gp = self._embed(rt, nbr, na, tb, want_force)
            if self.kernel_form is KernelForm.TEAM:
                K.descriptor.contract_T_team[launch.teams(na)](atypes, rt, G, nbr, self.sec, self.G_pad, 1.0 / nnei, T)
            else:
                K.descriptor.contract_T[g2](atypes, rt, G, nbr, self.sec, self.G_pad, 1.0 / nnei, T)
        width = self.cpu.d_width
        D = xp.empty((na, width), self.precision.dtype)
        K.descriptor.contract_D[launch.strided2(na, width)](T, self.colm, self.colk, D)
        if descr is not None:
            from ..kernels.cpu.descriptor import contract_D as contract_D_cpu  # full float64 layout

            D64 = np.empty((na, d.dim_out))
            contract_D_cpu(np.ascontiguousarray(be.to_host(T)), d.axis_neuron, False, D64)
            descr[atoms_host] = D64
        gD = xp.empty((na, width), self.precision.dtype) if want_force else None
        for ti in range(nt):
            a0, a1 = int(tb[ti]), int(tb[ti + 1])
            if a1 == a0:
                continue
            if self.cpu.atom_excluded[ti]:   # atom_exclude_types: no energy, no gradient
                energy[atoms[a0:a1]] = 0.0
                if gD is not None:
                    gD[a0:a1] = 0.0
                continue
            shift = None if self.atom_delta is None else \
                be.matmul(self.atom_delta[atoms[a0:a1]], self.aparam_w[ti]).astype(self.precision.dtype)
            z = self._fit(D[a0:a1], self.fit[ti], None if gD is None else gD[a0:a1], ti, shift)
            K.layers.fit_energy[launch.strided(a1 - a0)](z, atoms[a0:a1], float(self.fit_bias[ti]),
                                                         float(self.atom_bias[ti]), energy)
        if not want_force:
            return
        if self.kernel_form is KernelForm.TEAM:
            Tbar = back_D_products(be, T, gD, self.colmap, 1.0 / nnei)
        else:
            Tbar = xp.empty((na, 4, M))
            K.descriptor.back_D[launch.strided2(na, 4 * M)](T, gD, *self.adj, 1.0 / nnei, Tbar)
        fpair = xp.empty((P, 3))
        if self.compressed and self.kernel_form is KernelForm.TEAM:
            self.tab[3][launch.teams(na)](atypes, rt, dvec, nbr, self.sec, self.coef, self.coff, self.meta,
                                          self.netidx, Tbar, self.sd, d.rcut, d.rcut_smth, fpair)
        elif self.compressed:
            self.tab[1][launch.strided(P)](atypes, rt, dvec, nbr, self.sec, self.coef, self.coff,
                                           self.meta, self.netidx, Tbar, self.sd, d.rcut, d.rcut_smth,
                                           fpair)
        elif self.kernel_form is KernelForm.TEAM:
            K.envmat.pair_forces_team[launch.teams(na)](atypes, rt, dvec, nbr, self.sec, G, Gp, Tbar, self.sd,
                                                        d.rcut, d.rcut_smth, fpair)
        else:
            K.envmat.pair_forces[launch.strided(P)](atypes, rt, dvec, nbr, self.sec, G, Gp, Tbar,
                                                    self.sd, d.rcut, d.rcut_smth, fpair)
        # the chunk's virial, -Σ_p fpair[p] ⊗ dvec[p] (padding slots are zero in both), as one
        # 3 x P x 3 product: deterministic, and no (P, 9) array summed along its long axis
        if FOLD_TOTALS:   # virial -= the product, on the first chunk from virial and force zeroed: one launch
            K.forces.start_totals[launch.strided(max(9, force.shape[0]))](
                be.matmul(fpair.T, dvec).reshape(9), first, virial, force)
        else:
            if first:
                virial[...] = 0.0
                force[...] = 0.0
            virial -= be.matmul(fpair.T, dvec).reshape(9)
        if self.assembly == "atomic":
            K.forces.scatter_atomic[launch.strided(P)](atoms, self.sec, nbr, fpair, dvec, force,
                                                       atom_virial, want_atom_virial)
            return
        K.forces.gather_centres[launch.strided(na)](atoms, self.sec, fpair, force)
        rev, snbr = env.reverse_index(be)
        K.forces.gather_neighbours[launch.strided(P)](snbr, rev, fpair, dvec, force, atom_virial,
                                                      want_atom_virial)

    # -- networks ------------------------------------------------------------------------
    def _embed(self, rt, nbr, na, tb, want_force):
        """G, Gp (P, M) in the policy's dtype, net by net (rows block-major).  Only the rows of
        occupied slots (nbr >= 0) are evaluated and written (gathered, run through the net,
        scattered back: the CPU path also runs the nets on occupied slots only); padding rows are
        left unset, as contract_T reads G_pad and pair_forces writes zero there."""
        xp = self.be.xp
        d = self.params.descriptor
        P = rt.shape[0]
        dt = self.precision.dtype
        half = self.precision.half_operands
        x = xp.ascontiguousarray(rt[:, 0]).astype(dt)
        if half:
            x = x.astype(np.float16).astype(np.float32)
        G = xp.empty((P, self.M), dt)
        Gp = xp.empty((P, self.M), dt)
        sec = self.sec_host
        ranges = []   # (p0, p1, net): the slots of each net, contiguous and in increasing order
        for t in range(d.ntypes):
            sel_t = int(sec[t + 1] - sec[t])
            base = na * int(sec[t])
            ranges += [(base + a0 * sel_t, base + a1 * sel_t, k) for a0, a1, k in d.net_spans(t, tb)
                       if a1 > a0 and sel_t > 0]   # (a block without slots, sel 0: no range)
        if not ranges:
            return G, (Gp if want_force else None)
        # the occupied slots of every range from one running count and one host read per chunk
        # (a flatnonzero per range read its count back: a wait for the device each)
        cs = xp.cumsum(nbr >= 0, dtype=np.int64)
        ends = self.be.to_host(xp.stack([cs[p1 - 1] for _, p1, _ in ranges]))
        rows_all = xp.empty(int(ends[-1]), np.int64)
        self.be.kernels.envmat.occupied_rows[self.be.kernels.launch.strided(P)](nbr, cs, rows_all)
        c0 = 0
        for (p0, p1, k), c1 in zip(ranges, ends.tolist()):
            n = c1 - c0
            if n == p1 - p0:   # every slot occupied: in place
                self._embed_rows(x[p0:p1], self.embed[k], G[p0:p1], Gp[p0:p1])
            elif n > 0:
                rows = rows_all[c0:c1]
                Gc = xp.empty((n, self.M), dt)
                Gpc = xp.empty((n, self.M), dt)
                self._embed_rows(x[rows], self.embed[k], Gc, Gpc)
                G[rows] = Gc
                Gp[rows] = Gpc
            c0 = c1
        return G, (Gp if want_force else None)

    def _embed_rows(self, x, net: _DevNet, G, Gp):
        be, xp, K = self.be, self.be.xp, self.be.kernels
        n = x.shape[0]
        if self._embedding == "fused":
            K.embedding.embed_fused_for(G.dtype)[K.launch.strided(n)](x, *net.packed, G, Gp)
            return
        half = self.precision.half_operands
        k = net.w[0].shape[1]
        Y = xp.empty((2 * n, k), x.dtype)
        K.layers.first_layer_tangent[K.launch.strided2(n, k)](net.act[0], x, net.w[0][0], net.b[0], net.idt[0],
                                                             net.mode[0], Y)
        nl = len(net.w)
        for li in range(1, nl):
            w = net.w[li]
            Z = be.matmul(Y, w, half=half)
            if li == nl - 1:
                val, slope = G, Gp
            else:
                out = xp.empty((2 * n, w.shape[1]), Y.dtype)
                val, slope = out[:n], out[n:]
            K.layers.post_tangent[K.launch.strided2(n, w.shape[1])](net.act[li], Z, net.b[li], net.idt[li], Y,
                                                                    net.mode[li], val, slope)
            Y = out if li < nl - 1 else None
        if nl == 1:
            G[...] = Y[:n]
            Gp[...] = Y[n:]

    def _fit(self, D, net: _DevNet, gD, ti: int, shift=None):
        """The last layer's product (n, 1) in the policy's dtype (the atomic network energies
        without the last layer's bias: kernel fit_energy adds the biases) and, unless gD is None,
        dE/dD written into gD (n, width).  ti: the type whose net `net` is; shift: None or the
        atoms' rows (n, first width) added to the first layer's z (`set_atom_parameters`)."""
        be, xp, K = self.be, self.be.xp, self.be.kernels
        half = self.precision.half_operands
        n = D.shape[0]
        y = D
        cache = []
        for li in range(len(net.w) - 1):
            w = net.w[li]
            k = w.shape[1]
            Z = be.matmul(y, w, half=half)
            if li == 0 and shift is not None:
                Z += shift
            Dz = xp.empty((n, k), Z.dtype)   # act'(z), for the backward pass
            out = xp.empty((n, k), Z.dtype)
            K.layers.post_forward[K.launch.strided2(n, k)](net.act[li], Z, net.b[li], net.idt[li], y, net.mode[li],
                                                           Dz, out)
            cache.append(Dz)
            y = out
        last = net.w[-1]
        energy = be.matmul(y, last, half=half)
        if len(net.w) == 1 and shift is not None:
            energy += shift[:, :1]
        if gD is None:
            return energy

        def seed():
            gy = xp.empty((n, last.shape[0]), D.dtype)
            gy[...] = last[:, 0]
            return gy

        # dE/dy of the last layer, the same every call: for small chunks made once per (type,
        # atoms) and only read; a large chunk's (MBs, and a run has several sizes) made per call
        keep = FOLD_TOTALS and n * last.shape[0] <= SEED_KEPT_ELEMENTS
        gy = self._fit_seeds.get((ti, n, np.dtype(D.dtype).str), seed) if keep else seed()
        for li in range(len(net.w) - 2, -1, -1):
            Dz = cache[li]
            gZ = xp.empty(Dz.shape, Dz.dtype)
            K.layers.back_act[K.launch.strided2(n, Dz.shape[1])](gy, Dz, net.idt[li], gZ)
            # the first layer's adjoint is dE/dD: written straight into gD
            gx = be.matmul(gZ, net.w[li].T, out=gD if li == 0 else None, half=half)
            if net.mode[li]:
                K.layers.add_residual_adjoint[K.launch.strided2(n, gx.shape[1])](gy, net.mode[li], gx)
            gy = gx
        if len(net.w) == 1:
            gD[...] = gy
        return energy


def compute_device_shared(evaluators, ext_pos, nlist, types, want_force=True, want_atom_virial=False,
                          want_descriptor=False) -> list[tuple]:
    """Evaluate several models on one configuration on the device, computing the environment
    matrix (and the reverse index of its pairs) once per chunk.

    evaluators: CUDAEvaluators that all shares_environment with evaluators[0] (ValueError
    otherwise: equal rcut, rcut_smth, sel, davg, dstd and chunk size).  Chunk by chunk, env_pairs
    runs once and each model runs its embedding, descriptor, fitting and force kernels on the rows,
    in its own output arrays and in the order of its own evaluation, so that every model's
    results are bit for bit those of its own `compute_device` (no floating-point atomics; with
    assembly "atomic" they vary in the last bits anyway).  Arguments as CUDAEvaluator.compute
    (nlist may be a numdp.neighbor.device.DeviceRows: each chunk's rows are formed once);
    returns per evaluator (atom_energy (nloc,) eV, force (nall, 3) eV/Å, virial (9,) eV,
    atom_virial (nall or 1, 9) eV, descriptor (nloc, dim_out) host or None), device arrays but
    the descriptor."""
    ev0 = evaluators[0]
    for ev in evaluators[1:]:
        if not ev0.shares_environment(ev):
            raise ValueError("compute_device_shared: the models differ in rcut, rcut_smth, sel, davg, dstd "
                             "or chunk size")
    from ..neighbor.device import DeviceRows

    be, xp = ev0.be, ev0.be.xp
    pos = be.to_device(ext_pos, np.float64)
    nl = nlist if isinstance(nlist, DeviceRows) else be.to_device(nlist, np.int32)
    typ_host = np.asarray(types if isinstance(types, np.ndarray) else be.to_host(types)).astype(np.int64)
    nloc = typ_host.shape[0]
    nall = pos.shape[0]
    for ev in evaluators:
        if ev.atom_delta is not None and ev.atom_delta.shape[0] != nloc:
            raise ValueError(f"compute: atomic parameters of {ev.atom_delta.shape[0]} atoms, {nloc} given")
    order = np.argsort(typ_host, kind="stable")
    # atomic energies: every atom's written by its chunk (fit_energy); the atomic virials only
    # accumulated when asked for (a placeholder row otherwise)
    # forces and virial: zeroed by the first chunk's kernel start_totals (`_chunk`)
    zeroed = not (want_force and nloc)
    fill = xp.zeros if zeroed else xp.empty
    outs = [(xp.empty(nloc), fill((nall, 3)), fill(9),
             xp.zeros((nall, 9)) if want_atom_virial else xp.empty((1, 9)),
             np.zeros((nloc, ev.params.descriptor.dim_out)) if want_descriptor else None) for ev in evaluators]
    for c0 in range(0, nloc, ev0.chunk):
        atoms = order[c0:c0 + ev0.chunk]
        env = ev0._env(pos, nl, atoms, typ_host[atoms])
        for ev, (energy, force, virial, av_all, descr) in zip(evaluators, outs):
            ev._chunk(env, want_force, energy, force, virial, av_all, want_atom_virial, descr, first=c0 == 0)
    return outs


def fold_order(xp, mapping, nloc: int):
    """(order (nall,) int64, start (nloc + 1,) int64) device arrays: the extended atoms sorted by
    (owner, index), so owner i's atoms are order[start[i]:start[i + 1]], itself first (i < nloc
    is its own owner and the smallest index), then its ghost images in index order."""
    nall = int(mapping.shape[0])
    key = mapping.astype(np.int64) * nall + xp.arange(nall, dtype=np.int64)
    order = xp.argsort(key)
    start = xp.searchsorted(mapping[order], xp.arange(nloc + 1, dtype=mapping.dtype)).astype(np.int64)
    return order, start


def closest_pair(be: Backend, ext_pos, nlist, sec) -> tuple[float, int, int]:
    """(distance Å, centre, extended neighbour) of the closest pair of a DeePMD-kit list on the
    device (the twin of numdp.kernels.cpu.md.closest_pair): `closest_pair_device`, whose three
    numbers reach the host in one copy.  ext_pos (nall, 3) float64 Å, nlist (nloc, nnei) int32,
    sec (ntypes + 1,) int64 slot block starts: device arrays.  (inf, -1, -1) when no atom has a
    neighbour."""
    return closest_pair_of(be.to_host(closest_pair_device(be, ext_pos, nlist, sec)))


def closest_pair_device(be: Backend, ext_pos, nlist, sec):
    """The record (d² Å², centre, extended neighbour) (3,) float64 of the closest pair, left on
    the device (MD reads it with the step's energy): kernel closest_records reads the first slot
    of each per-type block (the nearest neighbour of that type) per centre, then one tree of
    extreme_rows picks the first minimum (the CPU loop's centre).  (inf, 0, -1) without pairs."""
    from ..kernels.cuda.md import closest_records
    from ..md.device_state import tree_extreme_device
    from ..neighbor.device import DeviceRows

    nloc = int(nlist.shape[0])
    if nloc == 0:
        return be.xp.asarray(be.to_device(np.array([np.inf, 0.0, -1.0])))
    if isinstance(nlist, DeviceRows):   # the records were written as its rows were formed
        rows = be.xp.asarray(nlist.closest)
    else:
        rows = be.xp.empty((nloc, 3))
        closest_records[be.kernels.launch.grid(nloc)](ext_pos, nlist, sec, rows)
    return tree_extreme_device(be, rows, 3, minimum=True)


def closest_pair_of(record) -> tuple[float, int, int]:
    """(distance Å, centre, neighbour) of a host copy of a closest_pair_device record."""
    import math

    d2, fi, fj = (float(v) for v in record)
    if fj < 0:
        return math.inf, -1, -1
    return math.sqrt(d2), int(fi), int(fj)


def device_neighbor_list(backend: Backend, positions, types, box, rcut, sel, nthreads=1,
                         pbc=None) -> DeviceNeighborList:
    """The neighbour list of `positions` (N, 3) Å, built on the device by
    numdp.neighbor.device.build_nlist_cuda; its arrays are handed over as the backend's arrays
    (zero-copy: CuPy on a GPU, NumPy views under the simulator).  `nthreads` is unused (kept for
    the CPU-built list's signature); `pbc` three booleans or None (mixed boundary conditions)."""
    from ..neighbor.device import THREADS_PER_CENTRE, build_nlist_cuda

    # the simulator runs each thread in Python: one thread per centre there (the same list)
    dn = build_nlist_cuda(positions, types, box, rcut, sel, pbc=pbc,
                          threads_per_centre=1 if backend.simulator else THREADS_PER_CENTRE)
    xp = backend.xp
    return replace(dn, positions=xp.asarray(dn.positions), types=xp.asarray(dn.types),
                   mapping=xp.asarray(dn.mapping), nlist=xp.asarray(dn.nlist))
