"""Each numdp.kernels.cuda kernel against its numdp.kernels.cpu twin, under the simulator.

Same float64 expressions in both, different summation orders at most: 1e-13 relative (sums of
fewer than 30 terms of unit-size condition: ~30 eps ~ 7e-15; a wrong term gives O(1)).
"""
import numpy as np
import pytest

pytest.importorskip("numba_cuda")

from numdp.kernels.cpu import descriptor as cdesc  # noqa: E402
from numdp.kernels.cpu import envmat as cenv  # noqa: E402
from numdp.kernels.cpu import layers as clay  # noqa: E402
from numdp.kernels.cuda import descriptor as gdesc  # noqa: E402
from numdp.kernels.cuda import envmat as genv  # noqa: E402
from numdp.kernels.cuda import forces as gfor  # noqa: E402
from numdp.kernels.cuda import layers as glay  # noqa: E402
from numdp.kernels.cuda.launch import grid, grid2, teams  # noqa: E402
from numdp.model.cuda_evaluator import descriptor_adjacency, descriptor_columns  # noqa: E402

RNG = np.random.default_rng(7)


def _eq(a, b, rel=1e-13):
    assert np.abs(a - b).max() <= rel * max(np.abs(a).max(), 1e-300)


@pytest.mark.parametrize("mode,n_in,k,act", [(0, 3, 5, 0), (1, 4, 4, 0), (2, 3, 6, 0), (2, 3, 6, 1),
                                             (1, 4, 4, 4), (0, 3, 5, 6), (2, 3, 6, 3)])
def test_layer_kernels(mode, n_in, k, act):
    """act: numdp.model.activation codes (0 tanh against the fused tanh kernels, the others
    against the CPU's generic ones)."""
    n = 5
    Y = RNG.normal(size=(2 * n, n_in))
    Z = 3 * RNG.normal(size=(2 * n, k))   # across relu6's kinks too
    b, idt = RNG.normal(size=k), RNG.normal(size=k)
    ref = np.empty((2 * n, k))
    if act == 0:
        clay.post_tangent(Z, b, idt, Y, mode, ref[:n], ref[n:])
    else:
        clay.post_tangent_act(act, Z, b, idt, Y, mode, ref[:n], ref[n:])
    out = np.empty((2 * n, k))
    glay.post_tangent[grid2(n, k)](act, Z, b, idt, Y, mode, out[:n], out[n:])
    _eq(ref, out)
    D, D2, o1, o2 = (np.empty((2 * n, k)) for _ in range(4))
    clay.post_forward_act(act, Z, b, idt, Y, mode, D, o1)
    glay.post_forward[grid2(2 * n, k)](act, Z, b, idt, Y, mode, D2, o2)
    _eq(D, D2)
    _eq(o1, o2)
    gY = RNG.normal(size=(2 * n, k))
    g1, g2 = np.empty((2 * n, k)), np.empty((2 * n, k))
    clay.back_act(gY, D, idt, g1)
    glay.back_act[grid2(2 * n, k)](gY, D, idt, g2)
    _eq(g1, g2)
    gx1 = RNG.normal(size=(2 * n, n_in))
    gx2 = gx1.copy()
    clay.add_residual_adjoint(gY, mode, gx1)
    glay.add_residual_adjoint[grid2(2 * n, n_in)](gY, mode, gx2)
    _eq(gx1, gx2)


@pytest.mark.parametrize("mode,k,act", [(0, 3, 0), (1, 1, 0), (2, 2, 0), (0, 3, 1), (2, 2, 5), (1, 1, 2)])
def test_first_layer_tangent(mode, k, act):
    x = RNG.normal(size=7)
    w, b, idt = RNG.normal(size=k), RNG.normal(size=k), RNG.normal(size=k)
    ref, out = np.empty((14, k)), np.empty((14, k))
    if act == 0:
        clay.first_layer_tangent(x, w, b, idt, mode, ref)
    else:
        clay.first_layer_tangent_act(act, x, w, b, idt, mode, ref)
    glay.first_layer_tangent[grid2(7, k)](act, x, w, b, idt, mode, out)
    _eq(ref, out)


@pytest.mark.parametrize("folded", [False, True])
def test_contract_D_and_back_D(folded):
    na, M, naxis = 3, 6, 3
    T = RNG.normal(size=(na, 4, M))
    width = M * naxis - (naxis * (naxis - 1) // 2 if folded else 0)
    D1, D2 = np.empty((na, width)), np.empty((na, width))
    cdesc.contract_D(T, naxis, folded, D1)
    colm, colk = descriptor_columns(M, naxis, width, folded)
    gdesc.contract_D[grid2(na, width)](T, colm, colk, D2)
    _eq(D1, D2)
    gD = RNG.normal(size=(na, width))
    B1, B2 = np.empty((na, 4, M)), np.empty((na, 4, M))
    cdesc.back_D(T, gD, naxis, folded, 0.25, B1)
    gdesc.back_D[grid2(na, 4 * M)](T, gD, *descriptor_adjacency(colm, colk, M), 0.25, B2)
    _eq(B1, B2)
    # KernelForm.TEAM: the same adjoint as two batched matrix products (other summation order)
    from numdp.backend import get_backend
    from numdp.model.cuda_evaluator import back_D_products, descriptor_column_map

    _eq(B1, back_D_products(get_backend("cuda"), T, gD, descriptor_column_map(colm, colk, M, naxis), 0.25))


EXCLUSIONS = [[], [[0, 1], [1, 1]]]   # none; atom 0's type-1 block and atom 2's type-1 block


def _pairs(M=4, seed=11, exclude=()):
    """A 3-atom chunk of 2 types with full, partial and empty blocks, on the CPU's compacted pairs
    and the device's block-major slots (its own random numbers: the same chunk whichever tests
    ran before); `exclude`: excluded type pairs (descriptor exclude_types), whose neighbours
    within rcut are neither pairs nor padding on the CPU and SLOT_EXCLUDED slots on the device."""
    from numdp.model.params import exclusion_mask

    rng = np.random.default_rng(seed)
    nt, na = 2, 3
    sel = np.array([3, 4])
    sec = np.concatenate([[0], np.cumsum(sel)]).astype(np.int64)
    pos = rng.uniform(0, 3, (7, 3))
    nlist = np.full((na, sec[-1]), -1, np.int32)
    nlist[0, :3] = [3, 4, 5]          # a full block
    nlist[0, 3:5] = [6, 1]
    nlist[1, :1] = [0]
    nlist[2, 3:7] = [0, 1, 4, 6]
    atoms = np.arange(na, dtype=np.int64)
    atypes = np.array([0, 0, 1], np.int64)
    mu = rng.uniform(0, 0.2, (nt, nt, 4))
    sd = rng.uniform(0.5, 1.0, (nt, nt, 4))
    rt_pad = -mu / sd
    rcut, rsm = 2.5, 0.5
    cap = na * sec[-1]
    rt, dvec, nbr = np.empty((cap, 4)), np.empty((cap, 3)), np.empty(cap, np.int64)
    poff, npad = np.empty((nt, na + 1), np.int64), np.empty((na, nt), np.int64)
    excl = exclusion_mask(exclude, nt)
    npairs = cenv.env_pairs(pos, nlist, atoms, atypes, sec, mu, sd, excl, rcut, rsm, rt, dvec, nbr, poff, npad)
    grt, gdv, gnb = np.empty((cap, 4)), np.empty((cap, 3)), np.empty(cap, np.int32)
    genv.env_pairs[grid(cap)](pos, nlist, atoms, atoms, atypes, sec, mu, sd, excl, rcut, rsm, rt_pad, grt, gdv,
                              gnb)
    occ = gnb >= 0
    assert occ.sum() == npairs > 3
    # every slot is a pair, padding or excluded on both: the device's padding slots are the CPU's
    is_pad = gnb == genv.SLOT_PAD
    for a in range(na):
        for t in range(nt):
            block = slice(na * sec[t] + a * (sec[t + 1] - sec[t]), na * sec[t] + (a + 1) * (sec[t + 1] - sec[t]))
            assert is_pad[block].sum() == npad[a, t]
    assert np.all(grt[gnb == genv.SLOT_EXCLUDED] == 0.0)
    assert (gnb == genv.SLOT_EXCLUDED).any() == bool(exclude)
    # the device keeps slots in the CPU's order (block, atom, slot): occupied rows agree in order
    _eq(rt[:npairs], grt[occ])
    _eq(dvec[:npairs], gdv[occ])
    assert np.array_equal(nbr[:npairs], gnb[occ])
    return dict(nt=nt, na=na, M=M, sec=sec, pos=pos, atoms=atoms, atypes=atypes, sd=sd, rt_pad=rt_pad,
                rcut=rcut, rsm=rsm, rt=rt, dvec=dvec, nbr=nbr, poff=poff, npad=npad, npairs=npairs,
                grt=grt, gdv=gdv, gnb=gnb, occ=occ, cap=cap)


def _gather(c, fpair):
    """Device per-pair forces gathered as the CUDA evaluator does: (force, virial, atom virial)."""
    nall = c["pos"].shape[0]
    force, av = np.zeros((nall, 3)), np.zeros((nall, 9))
    gfor.gather_centres[grid(c["na"])](c["atoms"], c["sec"], fpair, force)
    P = c["cap"]
    rev = np.argsort(c["gnb"].astype(np.int64) * P + np.arange(P))
    snbr = c["gnb"][rev]
    gfor.gather_neighbours[grid(P)](snbr, rev, fpair, c["gdv"], force, av, True)
    # without the atom virial: the same force bits, the atom virial untouched
    force2, av2 = np.zeros((nall, 3)), np.full((nall, 9), np.nan)
    gfor.gather_centres[grid(c["na"])](c["atoms"], c["sec"], fpair, force2)
    gfor.gather_neighbours[grid(P)](snbr, rev, fpair, c["gdv"], force2, av2, False)
    assert np.array_equal(force2, force) and np.isnan(av2).all()
    return force, -(fpair.T @ c["gdv"]), av   # the evaluator's total virial: one product


def _cpu_forces(c, kernel, *args):
    nall = c["pos"].shape[0]
    force, vir, av = np.zeros((nall, 3)), np.zeros((3, 3)), np.zeros((nall, 9))
    kernel(c["atoms"], c["atypes"], c["rt"], c["dvec"], c["nbr"], c["poff"], *args, c["sd"], c["rcut"],
           c["rsm"], force, vir, av, True)
    return force, vir, av


@pytest.mark.parametrize("exclude", EXCLUSIONS, ids=["all-pairs", "excluded"])
@pytest.mark.parametrize("M", [4, 21])
def test_env_pairs_contract_T_and_pair_forces(M, exclude):
    """Slot rows, pair vectors, T and the forces / virials from per-pair buffers and gathers,
    against the CPU's compacted pairs and scatters (padding: npad x one row on both; excluded
    neighbours: nothing on both); the team kernels too (M = 21: two groups of channels per team
    of 4 under the simulator)."""
    c = _pairs(M, exclude=exclude)
    nt, na, M, cap, occ = c["nt"], c["na"], c["M"], c["cap"], c["occ"]
    atypes, rt, grt, gnb, sec, rt_pad = c["atypes"], c["rt"], c["grt"], c["gnb"], c["sec"], c["rt_pad"]
    poff, npad = c["poff"], c["npad"]
    G_pad = RNG.normal(size=(nt, nt, M))
    Gd = RNG.normal(size=(cap, M))
    G = Gd[occ]
    T1, T2 = np.empty((na, 4, M)), np.empty((na, 4, M))
    cdesc.contract_T(atypes, rt, G, poff, npad, rt_pad, G_pad, 1 / 7, T1)
    gdesc.contract_T[grid2(na, M)](atypes, grt, Gd, gnb, sec, G_pad, 1 / 7, T2)
    _eq(T1, T2)
    T3 = np.full((na, 4, M), np.nan)   # KernelForm.TEAM: the same ordered sums, the same bits
    gdesc.contract_T_team[teams(na)](atypes, grt, Gd, gnb, sec, G_pad, 1 / 7, T3)
    assert np.array_equal(T3, T2)
    Gpd = RNG.normal(size=(cap, M))
    Tbar = RNG.normal(size=(na, 4, M))
    ref = _cpu_forces(c, cenv.pair_forces, G, Gpd[occ], Tbar)
    fpair = np.empty((cap, 3))
    genv.pair_forces[grid(cap)](atypes, grt, c["gdv"], gnb, sec, Gd, Gpd, Tbar, c["sd"], c["rcut"],
                                c["rsm"], fpair)
    for a, b in zip(ref, _gather(c, fpair)):
        _eq(a, b)
    fpair2 = np.full((cap, 3), np.nan)   # KernelForm.TEAM: sub-teams over the channels
    genv.pair_forces_team[teams(na)](atypes, grt, c["gdv"], gnb, sec, Gd, Gpd, Tbar, c["sd"], c["rcut"],
                                     c["rsm"], fpair2)
    _eq(fpair, fpair2)


@pytest.mark.parametrize("order,M,exclude", [(3, 4, EXCLUSIONS[0]), (5, 4, EXCLUSIONS[0]), (5, 21, EXCLUSIONS[0]),
                                             (3, 4, EXCLUSIONS[1])])
def test_tabulated_kernels(order, M, exclude):
    """tab_contract_T (with pairs beyond the table) and tab_pair_forces against the CPU twins;
    tab_contract_T_team gives tab_contract_T's bits (M = 21: two groups of channels per team
    of 4 threads under the simulator, the second one partly filled); also with excluded type
    pairs."""
    from numdp.kernels.cpu import tabulated as ctab
    from numdp.kernels.cuda.tabulated import kernels_for
    from numdp.model.tables import build_table
    from randmodel import random_params

    c = _pairs(M, exclude=exclude)
    nt, na, cap = c["nt"], c["na"], c["cap"]
    net = random_params(ntypes=1, neuron=(2, M), seed=4).descriptor.embeddings[0]
    # short tables (xmax = 1.0) so that some rows lie beyond them
    tabs = [build_table(net, -2.0, 0.1 + 0.2 * k, 0.05, order, extrapolate=1.0 / (0.1 + 0.2 * k))
            for k in range(nt * nt)]
    coef = np.ascontiguousarray(np.concatenate([t.coef for t in tabs]))
    coff = np.concatenate([[0], np.cumsum([t.coef.shape[0] for t in tabs])]).astype(np.int64)
    meta = np.stack([t.meta() for t in tabs])
    netidx = np.arange(nt * nt, dtype=np.int64).reshape(nt, nt)
    G_pad = RNG.normal(size=(nt, nt, M))
    T1, T2 = np.empty((na, 4, M)), np.empty((na, 4, M))
    b1 = np.zeros(1, np.int64)
    ctab.tab_contract_T(c["atypes"], c["rt"], c["poff"], c["npad"], c["rt_pad"], G_pad, coef, coff,
                        meta, netidx, 1 / 7, T1, b1)
    count = np.full(1, 5, np.int64)   # a running count: the kernel adds to it
    fwd, bwd, team, team_bwd = kernels_for(np.float64)
    fwd[grid2(na, M)](c["atypes"], c["grt"], c["gnb"], c["sec"], G_pad, coef, coff, meta,
                              netidx, 1 / 7, T2, count)
    _eq(T1, T2)
    assert count[0] - 5 == b1[0] and (b1[0] > 0 or exclude)   # (the far rows are excluded ones)
    T3, count3 = np.full((na, 4, M), np.nan), np.zeros(1, np.int64)
    team[teams(na)](c["atypes"], c["grt"], c["gnb"], c["sec"], G_pad, coef, coff, meta, netidx, 1 / 7,
                    T3, count3)
    assert np.array_equal(T3, T2) and count3[0] == b1[0]
    Tbar = RNG.normal(size=(na, 4, M))
    ref = _cpu_forces(c, ctab.tab_pair_forces, coef, coff, meta, netidx, Tbar)
    fpair = np.empty((cap, 3))
    bwd[grid(cap)](c["atypes"], c["grt"], c["gdv"], c["gnb"], c["sec"], coef, coff, meta, netidx, Tbar,
                   c["sd"], c["rcut"], c["rsm"], fpair)
    for a, b in zip(ref, _gather(c, fpair)):
        _eq(a, b)
    fpair2 = np.full((cap, 3), np.nan)
    team_bwd[teams(na)](c["atypes"], c["grt"], c["gdv"], c["gnb"], c["sec"], coef, coff, meta, netidx, Tbar,
                        c["sd"], c["rcut"], c["rsm"], fpair2)
    _eq(fpair, fpair2)   # the same terms summed by sub-teams: round-off apart


@pytest.mark.parametrize("ncol", [3, 9])
def test_fold_rows_matches_host_fold(ncol):
    """fold_rows (ghost rows onto their owners, through fold_order) against the host's
    np.bincount fold: the same additions in the same order (each owner, then its images in index
    order, from 0.0), so the same bits; under both launch geometries (one element per thread, and
    the simulator's grid-stride one)."""
    from numdp.kernels.cuda.launch import strided2
    from numdp.model.cuda_evaluator import fold_order
    from numdp.model.dp_model import fold_to_owners

    nloc, nall = 5, 23
    mapping = np.concatenate([np.arange(nloc), RNG.integers(0, nloc, nall - nloc)]).astype(np.int32)
    ext = RNG.normal(size=(nall, ncol))
    order, start = fold_order(np, mapping, nloc)
    ref = fold_to_owners(ext, mapping, nloc)
    for launch in (grid2(nloc, ncol), strided2(nloc, ncol)):
        out = np.full((nloc, ncol), np.nan)
        gfor.fold_rows[launch](ext, order, start, out)
        assert np.array_equal(out, ref)


def test_occupied_rows_are_flatnonzero_of_every_range():
    """The embedding's occupied slots from one running count: each contiguous range [p0, p1) of
    slots gets exactly flatnonzero(nbr[p0:p1] >= 0) + p0, in order."""
    rng = np.random.default_rng(5)
    nbr = np.where(rng.random(37) < 0.6, rng.integers(0, 9, 37), -1).astype(np.int32)
    nbr[:4] = -1   # a leading empty stretch
    cs = np.cumsum(nbr >= 0, dtype=np.int64)
    rows = np.full(int(cs[-1]), -7, np.int64)
    genv.occupied_rows[grid(nbr.shape[0])](nbr, cs, rows)
    assert np.array_equal(rows, np.flatnonzero(nbr >= 0))
    for p0, p1 in ((0, 4), (0, 10), (10, 23), (23, 37)):
        c0 = cs[p0 - 1] if p0 else 0
        assert np.array_equal(rows[c0:cs[p1 - 1]], np.flatnonzero(nbr[p0:p1] >= 0) + p0)
