"""Numba kernels of the training passes (reference §7.6).

Pairs use the flat layout of `numdp.kernels.cpu.envmat.env_pairs` (grouped by neighbour-type
block t, then chunk atom a, then slot; pair p of (t, a) lies in poff[t, a] <= p < poff[t, a+1]),
and pairs of one embedding net whose inputs agree share one embedding row (`merge_inputs`);
`order_members` then renumbers the pairs so that row u's member pairs are the consecutive
ustart[u] <= p < ustart[u+1] (the per-pair kernels stream their pairs in row order); pair p's
centre is pair_atom[p].
Normalised rows rt (npairs, 4), pair vectors dvec (npairs, 3) Å, and Tbar-style adjoints carry
the 1/nnei factor of T = R̃ᵀG / nnei already (as `back_D` produces them).

Notation: a dot marks the tangent (directional derivative of the forward pass when every pair
vector d_ij moves by q_ij), a bar the adjoint of the loss-gradient objective
Ψ = c_E·Σ E_i + Σ Ė_i.  All kernels are plain functions over arrays: inputs, then outputs.
"""
import numpy as np
from numba import njit

from ..math import CPU as _MATH
from .descriptor import back_D_row
from .envmat import FASTMATH, row_tangent
from .layers import ACT_ANY, by_activation
from .mathfn import fma64

_activation = _MATH.activation
_curvature = _MATH.activation_curvature


# ---------------------------------------------------------------------- shared embedding rows
@njit(cache=True, nogil=True)
def pair_centres(poff, pair_atom):
    """pair_atom[p] = the chunk atom a of pair p (poff (ntypes, na+1), the env_pairs layout)."""
    ntypes = poff.shape[0]
    na = poff.shape[1] - 1
    for t in range(ntypes):
        for a in range(na):
            for p in range(poff[t, a], poff[t, a + 1]):
                pair_atom[p] = a


@njit(cache=True, nogil=True)
def merge_inputs(x, order, p0, tol, xu, ustart, mem, u0):
    """Share embedding rows among pairs p0..p0+n-1 of one embedding net whose inputs agree.

    x: (n,) the pairs' inputs rt[p0:p0+n, 0]; order: (n,) their ascending argsort.  Walking
    the sorted inputs, a pair joins the current row while its input is within
    tol * (1 + |anchor|) of the row's first (smallest) input, the anchor, else it starts a row.
    Writes rows u0.. : xu[u] = the anchor (the row's input), ustart[u] = the start of its
    members in mem (absolute: the members of row u are mem[ustart[u]:ustart[u + 1]], pair
    indices p0 + order), and ustart[u0 + nu] = p0 + n.  Returns nu, the rows made.
    """
    n = x.shape[0]
    nu = 0
    lim = 0.0
    for k in range(n):
        v = x[order[k]]
        if k == 0 or v > lim:
            lim = v + tol * (1.0 + abs(v))
            xu[u0 + nu] = v
            ustart[u0 + nu] = p0 + k
            nu += 1
        mem[p0 + k] = p0 + order[k]
    ustart[u0 + nu] = p0 + n
    return nu


@njit(cache=True, nogil=True)
def order_members(mem, rt, dvec, nbr, pair_atom, rt_o, dvec_o, nbr_o, pair_atom_o):
    """Renumber the pairs in the order of their rows' members: pair k of the outputs is pair
    mem[k] of the inputs, so that the members of shared row u (`merge_inputs`, which wrote mem
    over every pair) are pairs ustart[u] <= k < ustart[u+1].  rt, rt_o (npairs, 4); dvec, dvec_o
    (npairs, 3); nbr, pair_atom and their outputs (npairs,)."""
    for k in range(mem.shape[0]):
        p = mem[k]
        for c in range(4):
            rt_o[k, c] = rt[p, c]
        for c in range(3):
            dvec_o[k, c] = dvec[p, c]
        nbr_o[k] = nbr[p]
        pair_atom_o[k] = pair_atom[p]


# ---------------------------------------------------------------------- environment tangent
@njit(cache=True, nogil=True, fastmath=FASTMATH)
def tangent_rows(u0, u1, t, ustart, pair_atom, atoms, atypes, dvec, nbr, mapping, u, eps, c_f, c_v,
                 sd, rcut, rcut_smth, rtd):
    """Tangent of the normalised rows for the pair displacement of the force/virial loss, for the
    member pairs ustart[u0] <= p < ustart[u1] of shared rows u0..u1-1 (`order_members`), all of
    neighbour block t.

    q_ij = -c_f (u[owner(j)] - u[i]) - c_v · eps d_ij   (Å; u (nloc, 3) force residuals eV/Å,
    eps (3, 3) virial residual eV, mapping (nall,) ghost -> owner), and
    rtd[p, c] = (∂R_c/∂d · q)_p / sd[t_i, t, c]  (reference §2.3 Jacobian, the shared scalar
    `numdp.kernels.math.row_tangent`).  rtd: (npairs, 4); pair p's centre is chunk atom
    pair_atom[p], local atom atoms[a] of type atypes[a].
    """
    for p in range(ustart[u0], ustart[u1]):
        a = pair_atom[p]
        i = atoms[a]
        ti = atypes[a]
        j = mapping[nbr[p]]
        dx = dvec[p, 0]
        dy = dvec[p, 1]
        dz = dvec[p, 2]
        qx = -c_f * (u[j, 0] - u[i, 0]) - c_v * (eps[0, 0] * dx + eps[0, 1] * dy + eps[0, 2] * dz)
        qy = -c_f * (u[j, 1] - u[i, 1]) - c_v * (eps[1, 0] * dx + eps[1, 1] * dy + eps[1, 2] * dz)
        qz = -c_f * (u[j, 2] - u[i, 2]) - c_v * (eps[2, 0] * dx + eps[2, 1] * dy + eps[2, 2] * dz)
        d0, d1, d2, d3 = row_tangent(qx, qy, qz, dx, dy, dz, rcut_smth, rcut)
        rtd[p, 0] = d0 / sd[ti, t, 0]
        rtd[p, 1] = d1 / sd[ti, t, 1]
        rtd[p, 2] = d2 / sd[ti, t, 2]
        rtd[p, 3] = d3 / sd[ti, t, 3]


# ---------------------------------------------------------------------- descriptor tangent
@njit(cache=True, nogil=True, fastmath=FASTMATH)
def tangent_T(u0, u1, ulo, ustart, pair_atom, rt, rtd, G, Gp, Td):
    """Td[a] (4, M) += Σ over the member pairs p (`order_members`) of shared rows u0..u1-1
    centred on a of ṙt_p ⊗ G + rt_p ⊗ ẋ_p G', ẋ_p = ṙt[p, 0]; G, Gp: the rows' embedding output
    and dG/dx, row u at u - ulo.  Unscaled (the caller applies 1/nnei); padding slots have no
    tangent.
    """
    M = Td.shape[2]
    for uu in range(u0, u1):
        r = uu - ulo
        for p in range(ustart[uu], ustart[uu + 1]):
            a = pair_atom[p]
            r0 = rt[p, 0]
            r1 = rt[p, 1]
            r2 = rt[p, 2]
            r3 = rt[p, 3]
            d0 = rtd[p, 0]
            d1 = rtd[p, 1]
            d2 = rtd[p, 2]
            d3 = rtd[p, 3]
            for m in range(M):
                g = G[r, m]
                gd = d0 * Gp[r, m]   # ẋ_p = ṙt[p, 0]
                Td[a, 0, m] += d0 * g + r0 * gd
                Td[a, 1, m] += d1 * g + r1 * gd
                Td[a, 2, m] += d2 * g + r2 * gd
                Td[a, 3, m] += d3 * g + r3 * gd


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def back_D_pair(T, Td, Dbar, Ddbar, naxis, inv_nnei, Tbar):
    """Primal adjoint of T from those of D and Dd (na, M*naxis), scaled by inv_nnei.

    D = Tᵀ T<, Ḋ = Ṫᵀ T< + Tᵀ Ṫ<:  T̄ = B(T, D̄) + B(Ṫ, Ḋ̄)  with B the map of
    `numdp.kernels.cpu.descriptor.back_D_row`; Tbar: (na, 4, M).  The tangent adjoint
    Ṫ̄ = B(T, Ḋ̄) is not formed: the training passes' Ḋ̄ is dE/dD, so Ṫ̄ is the forward's dE/dT
    (`back_D`), which they keep.
    """
    na = T.shape[0]
    acc = np.empty((4 + naxis, naxis))
    for a in range(na):
        back_D_row(T[a], Dbar[a], naxis, False, inv_nnei, Tbar[a], acc, False)
        back_D_row(Td[a], Ddbar[a], naxis, False, inv_nnei, Tbar[a], acc, True)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def pair_adjoints(u0, u1, ustart, pair_atom, rt, rtd, Tbar, Tdbar, Gbar, Gpbar):
    """Adjoints of the embedding outputs of shared rows u0..u1-1 (one block of the embedding
    reverse, formed just before it while it is in cache), summed over each row's member pairs
    p (`order_members`), centred on a = pair_atom[p]:

    Ḡ[u] = Σ_p Σ_c rt[p,c] T̄[a,c] + ṙt[p,c] Ṫ̄[a,c];  Ḡ'[u] = Σ_p ẋ_p Σ_c rt[p,c] Ṫ̄[a,c]
    into rows u - u0 of Gbar, Gpbar (>= u1 - u0, M).
    """
    M = Tbar.shape[2]
    for uu in range(u0, u1):
        q = uu - u0
        for m in range(M):
            Gbar[q, m] = 0.0
            Gpbar[q, m] = 0.0
        for p in range(ustart[uu], ustart[uu + 1]):
            a = pair_atom[p]
            r0 = rt[p, 0]
            r1 = rt[p, 1]
            r2 = rt[p, 2]
            r3 = rt[p, 3]
            d0 = rtd[p, 0]
            d1 = rtd[p, 1]
            d2 = rtd[p, 2]
            d3 = rtd[p, 3]
            for m in range(M):
                s0 = Tdbar[a, 0, m]
                s1 = Tdbar[a, 1, m]
                s2 = Tdbar[a, 2, m]
                s3 = Tdbar[a, 3, m]
                Gbar[q, m] += (r0 * Tbar[a, 0, m] + r1 * Tbar[a, 1, m] + r2 * Tbar[a, 2, m]
                               + r3 * Tbar[a, 3, m] + d0 * s0 + d1 * s1 + d2 * s2 + d3 * s3)
                Gpbar[q, m] += d0 * (r0 * s0 + r1 * s1 + r2 * s2 + r3 * s3)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def padding_adjoints(atypes, npad, rt_pad, Tbar, Gpad_bar):
    """Gpad_bar[t_i, t] (ntypes, ntypes, M) += npad[a, t] Σ_c rt_pad[t_i, t, c] T̄[a, c] over the
    chunk atoms a (padding rows are constants of the coordinates, but their embedding depends
    on θ)."""
    ntypes = npad.shape[1]
    na = Tbar.shape[0]
    M = Tbar.shape[2]
    for a in range(na):
        ti = atypes[a]
        for t in range(ntypes):
            npd = npad[a, t]
            if npd > 0:
                for c in range(4):
                    rc = npd * rt_pad[ti, t, c]
                    if rc != 0.0:
                        for m in range(M):
                            Gpad_bar[ti, t, m] += rc * Tbar[a, c, m]


# ---------------------------------------------------------------------- dense layers
@njit(cache=True, nogil=True, inline="always")
def _add_residual_row(Y, ry, mode, out, ro):
    """out[ro] += ρ(Y[ry]) for one row (mode 0 none, 1 same width, 2 doubled)."""
    n_in = Y.shape[1]
    if mode == 1:
        for c in range(n_in):
            out[ro, c] += Y[ry, c]
    elif mode == 2:
        for c in range(n_in):
            out[ro, c] += Y[ry, c]
            out[ro, n_in + c] += Y[ry, c]


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def layer_tangent_out(H, Zd, idt, use_idt, Yd, mode, out):
    """Tangent of a tanh layer: out (n, k) = ρ(Ẏ) + idt ⊙ (1 - H²) ⊙ Ż."""
    n, k = H.shape
    for r in range(n):
        if use_idt:
            for c in range(k):
                h = H[r, c]
                out[r, c] = (1.0 - h * h) * Zd[r, c] * idt[c]
        else:
            for c in range(k):
                h = H[r, c]
                out[r, c] = (1.0 - h * h) * Zd[r, c]
        _add_residual_row(Yd, r, mode, out, r)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def layer_back_pair(Obar, Odbar, H, Zd, idt, use_idt, want_dbar, ZB, dbar, bbar, R, rmode):
    """Reverse step of y' = ρ(y) + d ⊙ tanh(z) over primal and tangent together.

    Obar, Odbar: (n, k) adjoints of the primal and tangent outputs; H = tanh(z), Zd = ż (n, k).
    Writes ZB (2n, k) = [z̄; ż̄] with ż̄ = (1-h²) d ȱ and z̄ = (1-h²)(d ō - 2 h ż d ȱ);
    accumulates bbar (k,) += Σ z̄ and, when want_dbar, dbar (k,) += Σ (ō h + ȱ (1-h²) ż).

    R (2n, k_R), rmode: the output adjoints [ō; ȱ] of the layer above and its residual mode
    (0 none, 1 same width, 2 doubled): its residual's share ρᵀ(R) is first added row by row into
    Obar, Odbar (which then hold this layer's whole output adjoints, as the layer below's R
    needs them), instead of in a pass of its own over the block.
    """
    _layer_back(Obar, Odbar, H, Zd, idt, use_idt, want_dbar, ZB, True, dbar, bbar, R, rmode)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def layer_back_primal(Obar, Odbar, H, Zd, idt, use_idt, want_dbar, ZBtop, dbar, bbar):
    """`layer_back_pair` without the tangent half and without a residual share: writes
    ZBtop (n, k) = z̄ and accumulates bbar and dbar as it does, for a caller that has ż̄
    already (the fitting nets' reverse, whose tangent adjoints are the forward's seed-1
    adjoints)."""
    _layer_back(Obar, Odbar, H, Zd, idt, use_idt, want_dbar, ZBtop, False, dbar, bbar, Obar, 0)


@njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")
def _layer_back(Obar, Odbar, H, Zd, idt, use_idt, want_dbar, ZB, dot, dbar, bbar, R, rmode):
    """Body of layer_back_pair (dot: ż̄ into the bottom half of ZB) and layer_back_primal (dot
    False: z̄ only); dot is a constant in each inlined copy."""
    n, k = H.shape
    for r in range(n):
        if rmode == 1:
            for c in range(k):
                Obar[r, c] += R[r, c]
                Odbar[r, c] += R[n + r, c]
        elif rmode == 2:
            for c in range(k):
                Obar[r, c] += R[r, c] + R[r, k + c]
                Odbar[r, c] += R[n + r, c] + R[n + r, k + c]
        if want_dbar:
            for c in range(k):
                h = H[r, c]
                dbar[c] += Obar[r, c] * h + Odbar[r, c] * (1.0 - h * h) * Zd[r, c]
        if use_idt:
            for c in range(k):
                h = H[r, c]
                g = 1.0 - h * h
                od = Odbar[r, c] * idt[c]
                zb = g * (Obar[r, c] * idt[c] - 2.0 * h * Zd[r, c] * od)
                ZB[r, c] = zb
                if dot:
                    ZB[n + r, c] = g * od
                bbar[c] += zb
        else:
            for c in range(k):
                h = H[r, c]
                g = 1.0 - h * h
                od = Odbar[r, c]
                zb = g * (Obar[r, c] - 2.0 * h * Zd[r, c] * od)
                ZB[r, c] = zb
                if dot:
                    ZB[n + r, c] = g * od
                bbar[c] += zb


# ---------------------------------------------------------------------- dense layers, any activation
# The tanh kernels above take h = tanh z and form h' = 1 - h², h'' = -2 h h' from it; these take the
# pre-activation z (`numdp.kernels.cpu.layers.post_tangent_keep_act`, `post_forward_keep_act`) and
# evaluate act, act', act'' of the activation code `act` (numdp.kernels.math.activation_curvature):
# families of variants, the code a constant for gelu, silu and sigmoid (vectorised), each compiled on
# its first call (`numdp.kernels.cpu.layers.by_activation`).

@by_activation
def layer_tangent_out_act(code):
    """`layer_tangent_out` for activation `act`: out (n, k) = ρ(Ẏ) + idt ⊙ act'(z) ⊙ Ż, with the
    pre-activations z in Zk (n, k)."""
    @njit(cache=True, nogil=True, fastmath=FASTMATH)
    def kernel(act, Zk, Zd, idt, use_idt, Yd, mode, out):
        _tangent_out_act(act if code == ACT_ANY else code, Zk, Zd, idt, use_idt, Yd, mode, out)
    return kernel


@njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")
def _tangent_out_act(act, Zk, Zd, idt, use_idt, Yd, mode, out):
    """Body of layer_tangent_out_act."""
    n, k = Zk.shape
    for r in range(n):
        zr = Zk[r]
        dr = Zd[r]
        orow = out[r]
        if use_idt:
            for c in range(k):
                _, d = _activation(act, zr[c])
                orow[c] = d * dr[c] * idt[c]
        else:
            for c in range(k):
                _, d = _activation(act, zr[c])
                orow[c] = d * dr[c]
        _add_residual_row(Yd, r, mode, out, r)


@by_activation
def layer_back_pair_act(code):
    """`layer_back_pair` for y' = ρ(y) + d ⊙ act(z), with the pre-activations z in Zk (n, k):
    ż̄ = act'(z) d ȱ and z̄ = act'(z) d ō + act''(z) ż d ȱ; dbar += Σ (ō act(z) + ȱ act'(z) ż)."""
    @njit(cache=True, nogil=True, fastmath=FASTMATH)
    def kernel(act, Obar, Odbar, Zk, Zd, idt, use_idt, want_dbar, ZB, dbar, bbar, R, rmode):
        _layer_back_body(act if code == ACT_ANY else code, Obar, Odbar, Zk, Zd, idt, use_idt, want_dbar,
                         ZB, True, dbar, bbar, R, rmode)
    return kernel


@by_activation
def layer_back_primal_act(code):
    """`layer_back_primal` for activation `act` (pre-activations in Zk): z̄ only."""
    @njit(cache=True, nogil=True, fastmath=FASTMATH)
    def kernel(act, Obar, Odbar, Zk, Zd, idt, use_idt, want_dbar, ZBtop, dbar, bbar):
        _layer_back_body(act if code == ACT_ANY else code, Obar, Odbar, Zk, Zd, idt, use_idt, want_dbar,
                         ZBtop, False, dbar, bbar, Obar, 0)
    return kernel


@njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")
def _layer_back_body(act, Obar, Odbar, Zk, Zd, idt, use_idt, want_dbar, ZB, dot, dbar, bbar, R, rmode):
    """Body of layer_back_pair_act and layer_back_primal_act (as `_layer_back`: the residual share
    first, the flags tested outside the inner loops)."""
    n, k = Zk.shape
    for r in range(n):
        ob = Obar[r]
        odb = Odbar[r]
        if rmode == 1:
            for c in range(k):
                ob[c] += R[r, c]
                odb[c] += R[n + r, c]
        elif rmode == 2:
            for c in range(k):
                ob[c] += R[r, c] + R[r, k + c]
                odb[c] += R[n + r, c] + R[n + r, k + c]
        zr = Zk[r]
        zdr = Zd[r]
        zbt = ZB[r]
        if want_dbar:
            for c in range(k):
                h, g = _activation(act, zr[c])
                dbar[c] += ob[c] * h + odb[c] * g * zdr[c]
        if use_idt:
            for c in range(k):
                _, g, g2 = _curvature(act, zr[c])
                od = odb[c] * idt[c]
                zb = g * (ob[c] * idt[c]) + g2 * zdr[c] * od
                zbt[c] = zb
                if dot:
                    ZB[n + r, c] = g * od
                bbar[c] += zb
        else:
            for c in range(k):
                _, g, g2 = _curvature(act, zr[c])
                od = odb[c]
                zb = g * ob[c] + g2 * zdr[c] * od
                zbt[c] = zb
                if dot:
                    ZB[n + r, c] = g * od
                bbar[c] += zb


# ---------------------------------------------------------------------- statistics
@njit(cache=True, nogil=True)
def env_stat_sums(atypes, rt, poff, sums):
    """Accumulate raw environment sums per centre type from rows of occupied slots.

    rt (npairs, 4): raw rows (davg 0, dstd 1).  sums (ntypes, 4) += [Σ s, Σ s², Σ a, Σ a²] with a
    running over the 3 angular components.  Padding rows are zero and add nothing.
    """
    ntypes = poff.shape[0]
    na = atypes.shape[0]
    for t in range(ntypes):
        for a in range(na):
            ti = atypes[a]
            for p in range(poff[t, a], poff[t, a + 1]):
                s = rt[p, 0]
                sums[ti, 0] += s
                sums[ti, 1] += s * s
                for c in range(1, 4):
                    sums[ti, 2] += rt[p, c]
                    sums[ti, 3] += rt[p, c] * rt[p, c]


# ---------------------------------------------------------------------- optimiser
ADAM_CHUNK = 2048
"""Entries per chunk of `adam_update`: the gradient rows' sum of a chunk (16 kB) stays in L1."""


@njit(cache=True, nogil=True)
def ema_update(ema, theta, weight, lo, hi):
    """ema ← ema + weight·(θ - ema) on entries lo..hi-1, in PyTorch's `lerp_` form (for weight
    ≥ 0.5: θ - (θ - ema)·(1 - weight)), each a fused multiply-add as PyTorch's vectorised and CUDA
    kernels form it (one rounding), so that the bits are DeePMD-kit's ModelEMA update with
    weight = 1 - ema_decay."""
    if weight < 0.5:
        for i in range(lo, hi):
            ema[i] = fma64(weight, theta[i] - ema[i], ema[i])
    else:
        w1 = 1.0 - weight
        for i in range(lo, hi):
            ema[i] = fma64(-(theta[i] - ema[i]), w1, theta[i])


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def adam_update(theta, grads, m, v, lo, hi, lr, beta1, beta2, eps, bc1, bc2, l2=0.0, shrink=1.0,
                scale=1.0):
    """One Adam step in place on entries lo..hi-1 (PyTorch form, reference §7.3).

    g = scale · Σ_w grads[w] (per-worker accumulators, summed in row order; `scale` is the
    gradient clipping's factor, `numdp.train.optim.clip_scale`: 1 skips the product);
    m ← β1 m + (1-β1) g;  v ← β2 v + (1-β2) g²;  θ ← θ - lr/bc1 · m / (√v/√bc2 + ε)
    with bc1 = 1 - β1^t, bc2 = 1 - β2^t for the t-th update (t ≥ 1).  Weight decay as PyTorch
    applies it: Adam's L2 term g ← g + l2·θ (before the moments), AdamW's decoupled
    θ ← shrink·θ first (shrink = 1 - lr·weight_decay); l2 = 0 and shrink = 1 skip them.

    Chunk by chunk: first g into a small buffer, then the update (`_adam_chunk`).  One loop
    over θ, m, v and every gradient row at once was not vectorised (LLVM's run-time checks
    that the five or more arrays do not overlap are too many for it), so its square roots and
    divisions ran one at a time: 2.0 ms per 507 091 entries against 1.0 ms in two loops; the
    arithmetic of each entry is the same, bit for bit.
    """
    step = lr / bc1
    inv_sbc2 = 1.0 / np.sqrt(bc2)
    nw = grads.shape[0]
    gs = np.empty(ADAM_CHUNK)
    for c0 in range(lo, hi, ADAM_CHUNK):
        c1 = min(c0 + ADAM_CHUNK, hi)
        g = gs[:c1 - c0]
        g0 = grads[0, c0:c1]
        for i in range(c1 - c0):
            g[i] = g0[i]
        for w in range(1, nw):
            gw = grads[w, c0:c1]
            for i in range(c1 - c0):
                g[i] += gw[i]
        if scale != 1.0:
            for i in range(c1 - c0):
                g[i] *= scale
        th = theta[c0:c1]
        if l2 != 0.0:
            for i in range(c1 - c0):
                g[i] += l2 * th[i]
        if shrink != 1.0:
            for i in range(c1 - c0):
                th[i] *= shrink
        _adam_chunk(th, g, m[c0:c1], v[c0:c1], beta1, beta2, eps, step, inv_sbc2)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def _adam_chunk(theta, g, m, v, beta1, beta2, eps, step, inv_sbc2):
    """The Adam update of `adam_update` on one chunk, gradient g already summed."""
    for k in range(theta.shape[0]):
        gk = g[k]
        mk = beta1 * m[k] + (1.0 - beta1) * gk
        vk = beta2 * v[k] + (1.0 - beta2) * gk * gk
        m[k] = mk
        v[k] = vk
        theta[k] -= step * mk / (np.sqrt(vk) * inv_sbc2 + eps)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def grad_sumsq(grads, lo, hi, mult):
    """Σ_i (mult · g_i)² over entries lo..hi-1 of g = Σ_w grads[w] (the rows summed in row
    order, as `adam_update` sums them); inf or nan when an entry is (FASTMATH keeps them).
    `mult` rescales against overflow (`numdp.train.optim.grad_norm`)."""
    nw = grads.shape[0]
    s = 0.0
    for i in range(lo, hi):
        g = grads[0, i]
        for w in range(1, nw):
            g += grads[w, i]
        x = mult * g
        s += x * x
    return s


@njit(cache=True, nogil=True, error_model="numpy")
def grad_absmax(grads, lo, hi):
    """max_i |g_i| over entries lo..hi-1 of g = Σ_w grads[w] (rows summed in row order)."""
    nw = grads.shape[0]
    amax = 0.0
    for i in range(lo, hi):
        g = grads[0, i]
        for w in range(1, nw):
            g += grads[w, i]
        amax = max(amax, abs(g))
    return amax
