"""Dense-network passes for training: forward with caches, tangent, reverse over primal+tangent.

Products are BLAS GEMMs into preallocated buffers (a `Workspace`); bias, tanh (numdp's
vectorisable tanh), idt and residual are fused in the inference kernels of
`numdp.kernels.cpu.layers` where the maths is the evaluator's (forward layers, the seed-1
adjoint of the fitting nets), and in `numdp.kernels.cpu.train` for what only training needs
(tangent and reverse over primal and tangent).

Layer l: z = y W + b, h = tanh z, y' = ρ(y) + d ⊙ h (reference §3.2).  Per-layer reverse rules
over the primal (bar) and tangent (dot-bar) adjoints are those of reference §7.6.  Layers with
another activation (DeePMD-kit's activation_function, numdp.model.activation) run the kernels
named *_act, which keep the pre-activation z where tanh's keep h (only tanh has its derivatives
as functions of h) and evaluate act, act' and act'' of it.

Embedding nets have a scalar input x; their tangent is carried as the slope dG/dx (one stacked
GEMM [y; dy/dx] W per layer), so the tangent of G for an input displacement ẋ is ẋ·dG/dx and the
tangent adjoint of the slope output is ẋ·Ġ̄.  Fitting nets get their tangent Ḋ from the
descriptor in a second pass; their cache keeps the inputs stacked [y; ẏ] so that the weight
adjoint is one GEMM [y; ẏ]ᵀ [z̄; ż̄].
"""
from __future__ import annotations

import numpy as np

from ..model.activation import code as activation_code
from ..model.params import Net, RESIDUAL_NONE
from ..kernels.cpu import train as K
from ..kernels.cpu.layers import (add_residual_adjoint, back_act_z, back_tanh, first_layer_tangent_keep,
                                  first_layer_tangent_keep_act, post_forward, post_forward_keep_act,
                                  post_tangent_keep, post_tangent_keep_act, rebuild_tangent,
                                  rebuild_tangent_act)
from ..model.workspace import Workspace
from .flat import LayerSlots

_ONE = np.ones(1)
_SINK = np.zeros(1)


class GradRow:
    """One worker's gradient accumulator (flat layout) that knows which weight matrices were
    already written since it was cleared: the first product goes straight into the gradient,
    later ones through a scratch matrix and an addition.

    `products`: the (start, stop) ranges of the weight matrices that only `add_matmul` writes.
    `clear` zeroes everything else (those matrices are ~99 % of the parameters: zeroing them
    would be a pass over megabytes per step that the first product overwrites anyway); at the
    end of an accumulation `ModelPasses._finish_rows` zeroes the ones no product wrote since.
    """

    def __init__(self, row: np.ndarray, products: list[tuple[int, int]] = ()):
        self.row = row
        self.written: set[int] = set()
        self._products = sorted(products)
        self._rest = []  # the complement of the product ranges
        pos = 0
        for a, b in self._products:
            if a > pos:
                self._rest.append((pos, a))
            pos = max(pos, b)
        if pos < row.shape[0]:
            self._rest.append((pos, row.shape[0]))

    def clear(self) -> None:
        for a, b in self._rest:
            self.row[a:b] = 0.0
        self.written.clear()

    @property
    def products(self) -> list[tuple[int, int]]:
        """The (start, stop) ranges of the weight matrices that only products write."""
        return self._products

    def add_matmul(self, slot: LayerSlots, A: np.ndarray, B: np.ndarray, ws: Workspace) -> None:
        """W̄ of `slot` += A @ B."""
        gW = slot.views(self.row)[0]
        if slot.w[0] in self.written:
            tmp = ws.get(("rev", "gW"), gW.shape)
            np.matmul(A, B, out=tmp)
            gW += tmp
        else:
            np.matmul(A, B, out=gW)
            self.written.add(slot.w[0])


def _act(layer) -> int | None:
    """None for a tanh layer (the fused tanh kernels), else its activation's kernel code."""
    return None if layer.activation == "tanh" else activation_code(layer.activation)


def _idt(layer):
    return (layer.idt, True) if layer.idt is not None else (_ONE, False)


_ONES: dict[int, np.ndarray] = {}


def _idt_full(layer) -> np.ndarray:
    """The layer's idt (n_out,), ones where it has none (as the inference kernels take it:
    multiplying by 1.0 is exact)."""
    if layer.idt is not None:
        return layer.idt
    ones = _ONES.get(layer.n_out)
    if ones is None:
        ones = _ONES.setdefault(layer.n_out, np.ones(layer.n_out))
    return ones


# ---------------------------------------------------------------------------- embedding
EMBED_BLOCK = 512
"""Pair rows per block of the embedding passes: a block's chain of layers stays in cache."""


class EmbedCache:
    """What the reverse of one embedding net on n rows needs from its forward: the stacked
    input X (2n, 1) = [x; 1] of layer 1 and, per layer, Z_l (2n, k) = [tanh z; dz/dx] ([z; dz/dx]
    for another activation).

    The rows are processed in blocks [b0, b1) of at most EMBED_BLOCK; block rows 2*b0 .. 2*b1
    of X and Z_l belong to that block.  The inputs [y; dy/dx] of the later layers are not kept:
    the reverse rebuilds them block by block from Z (`rebuild_tangent`, bit for bit), which
    saves writing them for every pair and reading them back (2 x 75 doubles per pair for a
    (25, 50, 100) net) at the cost of a few multiplications per element.
    """

    def __init__(self, n: int, block: int):
        self.n = n
        self.blocks = [(b0, min(b0 + block, n)) for b0 in range(0, n, block)]
        self.X: np.ndarray | None = None
        self.Z: list[np.ndarray] = []


def embed_forward(net: Net, x: np.ndarray, G: np.ndarray, Gp: np.ndarray, ws: Workspace,
                  key, block: int = EMBED_BLOCK, done=None) -> EmbedCache:
    """Evaluate one embedding net on inputs x (n,); write G (n, M) and dG/dx Gp (n, M).

    done(b0, b1), when given, is called after each block of rows b0..b1-1 is written (to use
    it while it is in cache)."""
    n = x.shape[0]
    cache = EmbedCache(n, block)
    layers = net.layers
    cache.X = ws.get((key, "X"), (2 * n, 1))
    cache.Z = [ws.get((key, "Z", l), (2 * n, lay.n_out)) for l, lay in enumerate(layers)]
    last = len(layers) - 1
    # what the block loop needs of each layer, looked up once per call (the loop runs for every
    # block of every worker: Python between the kernels holds the GIL that the other worker
    # needs at its next call); the next layer's input is block scratch, two alternating
    # buffers, taken at the largest block size and sliced per block (the same memory)
    mb = min(block, n)
    plan = [(lay.w, lay.b, _idt_full(lay), lay.residual, cache.Z[l],
             None if l == last else ws.get(("fwdY", l % 2), (2 * mb, lay.n_out)), _act(lay))
            for l, lay in enumerate(layers)]
    X = cache.X
    for b0, b1 in cache.blocks:
        m = b1 - b0
        Xb = X[2 * b0:2 * b1]
        Xb[:m, 0] = x[b0:b1]
        Xb[m:, 0] = 1.0
        Y = Xb
        for l, (w, b, idt, residual, Zl, Ybuf, act) in enumerate(plan):
            Z = Zl[2 * b0:2 * b1]
            if l == last:
                val, slope = G[b0:b1], Gp[b0:b1]
            else:
                Yn = Ybuf[:2 * m]
                val, slope = Yn[:m], Yn[m:]
            if l == 0:  # input width 1: element-wise, as the evaluator (a GEMM of depth 1 is slow)
                if act is None:
                    first_layer_tangent_keep(x[b0:b1], w[0], b, idt, residual, val, slope, Z)
                else:
                    first_layer_tangent_keep_act(act, x[b0:b1], w[0], b, idt, residual, val, slope, Z)
            else:
                np.matmul(Y, w, out=Z)
                if act is None:
                    post_tangent_keep(Z, b, idt, Y, residual, val, slope)
                else:
                    post_tangent_keep_act(act, Z, b, idt, Y, residual, val, slope)
            if l != last:
                Y = Yn
        if done is not None:
            done(b0, b1)
    return cache


def embed_reverse(net: Net, slots: list[LayerSlots], cache: EmbedCache, adjoint,
                  grad: GradRow, ws: Workspace) -> None:
    """Accumulate into `grad` (flat layout) the parameter adjoint of one embedding net.

    adjoint(b0, b1, Gbar, Gpbar) writes the adjoints of the value and slope outputs of rows
    b0..b1-1 into Gbar, Gpbar (b1 - b0, M), block by block, so that they are formed while the
    block is in cache.  The input x is a constant of θ, so the first layer's input adjoint is
    not formed.
    """
    layers = net.layers
    nl = len(layers)
    M = layers[-1].n_out
    mb = max((b1 - b0 for b0, b1 in cache.blocks), default=0)
    # per-layer constants and block scratch at the largest block size, once per call (as in
    # `embed_forward`); every block takes the leading rows of each scratch buffer
    plan = []
    for l, lay in enumerate(layers):
        _, gb, gidt = slots[l].views(grad.row)
        idt, use_idt = _idt(lay)
        plan.append((lay.w, idt, use_idt, gidt if use_idt else _SINK, gb, lay.residual, cache.Z[l],
                     _idt_full(lay), lay.n_out,
                     ws.get(("revY", l), (2 * mb, lay.n_out)) if l < nl - 1 else None,
                     ws.get(("rev", "YB", l % 2), (2 * mb, lay.n_in)) if l > 0 else None, _act(lay)))
    ZBbuf = ws.get(("rev", "ZB"), (2 * mb * max(lay.n_out for lay in layers),))
    # the output adjoints [Ḡ; Ḡ'] as the two halves of one buffer, like every later [ȳ; ẏ̄]
    OB = ws.get(("rev", "GB"), (2 * mb, M))
    for b0, b1 in cache.blocks:
        m = b1 - b0
        # the block's layer inputs, rebuilt from the kept Z (as the forward wrote them)
        Ys = [cache.X[2 * b0:2 * b1]]
        for l in range(nl - 1):
            Zl, idt_full, residual, Ybuf, act = plan[l][6], plan[l][7], plan[l][5], plan[l][9], plan[l][11]
            Yn = Ybuf[:2 * m]
            if act is None:
                rebuild_tangent(Zl[2 * b0:2 * b1], idt_full, Ys[-1], residual, l == 0, Yn[:m], Yn[m:])
            else:
                rebuild_tangent_act(act, Zl[2 * b0:2 * b1], idt_full, Ys[-1], residual, l == 0, Yn[:m], Yn[m:])
            Ys.append(Yn)
        OBb = OB[:2 * m]
        Ob, Odb = OBb[:m], OBb[m:]
        adjoint(b0, b1, Ob, Odb)
        R, rmode = OBb, RESIDUAL_NONE   # the output adjoints [Ḡ; Ḡ'] are whole
        for l in range(nl - 1, -1, -1):
            w, idt, use_idt, gidt, gb, residual, Zl, _, n_out, _, YBbuf, act = plan[l]
            Z = Zl[2 * b0:2 * b1]
            ZB = ZBbuf[:2 * m * n_out].reshape(2 * m, n_out)
            if act is None:
                K.layer_back_pair(Ob, Odb, Z[:m], Z[m:], idt, use_idt, use_idt, ZB, gidt, gb, R, rmode)
            else:
                K.layer_back_pair_act(act, Ob, Odb, Z[:m], Z[m:], idt, use_idt, use_idt, ZB, gidt, gb, R,
                                      rmode)
            grad.add_matmul(slots[l], Ys[l].T, ZB, ws)
            if l == 0:
                break
            Yb = YBbuf[:2 * m]
            np.matmul(ZB, w.T, out=Yb)
            # [ȳ; ẏ̄] = [z̄; ż̄] Wᵀ + ρᵀ([ō; ȱ]): the residual share is added by the next
            # layer_back_pair, row by row
            R, rmode = OBb, residual
            OBb = Yb
            Ob, Odb = Yb[:m], Yb[m:]


# ---------------------------------------------------------------------------- fitting
class FitCache:
    """Stacked inputs Yin[l] (2n, n_in) = [y; ẏ] of every layer (the last linear one included),
    tanh outputs H[l] (n, k) (pre-activations z for another activation) and tangent pre-activations Zd[l] (n, k) of the hidden layers, and
    what the forward's seed-1 adjoint pass leaves for the reverse: its seed (n, n_last) = the
    output layer's weights in every row (∂E/∂y of the last hidden output), ZB[l] (2n, k), whose
    bottom half is ∂E/∂z of hidden layer l (the top half is the reverse's scratch for z̄), and
    GX[l] (n, n_in) = ∂E/∂y of its input (GX[0] = dE/dD).

    Why keep them: the tangent adjoints of the reverse over primal and tangent are the seed-1
    adjoints.  The tangent ė = Σ ∂e/∂D · Ḋ is linear in Ḋ with the primal Jacobian, so its
    adjoint chain (seeded with 1 at the output, as ∂Ψ/∂ė = 1) is the chain that `fit_forward`
    runs to get dE/dD: ż̄ = ∂E/∂z and Ḋ̄ = dE/dD, already computed.  Reusing them saves the
    tangent half of every input-adjoint product of the reverse (n rows of n_out x n_in each).
    """

    def __init__(self, n: int, Yin: list[np.ndarray], H: list[np.ndarray], Zd: list[np.ndarray],
                 ZB: list[np.ndarray], GX: list[np.ndarray], seed: np.ndarray):
        self.n = n
        self.Yin = Yin
        self.H = H
        self.Zd = Zd
        self.ZB = ZB
        self.GX = GX
        self.seed = seed

    @property
    def D(self) -> np.ndarray:
        """(n, dim) descriptor rows (primal input), to be filled before `fit_forward`."""
        return self.Yin[0][:self.n]

    @property
    def Dd(self) -> np.ndarray:
        """(n, dim) descriptor tangent, to be filled before `fit_tangent`."""
        return self.Yin[0][self.n:]


def fit_cache(net: Net, n: int, ws: Workspace, key, Yin=None, ZB=None) -> FitCache:
    """Buffers for one fitting net on n atoms.

    Yin, ZB: optional lists of the (2n, ·) buffers of the hidden layers' stacked inputs and
    adjoints (views of storage shared between workers, `ModelPasses`); by default from `ws`."""
    widths = net.widths
    nh = len(net.layers) - 1
    if Yin is None:
        Yin = [ws.get((key, "Yin", l), (2 * n, widths[l])) for l in range(nh)]
    Yin = list(Yin) + [ws.get((key, "Yin", nh), (2 * n, widths[nh]))]
    H = [ws.get((key, "H", l), (n, widths[l + 1])) for l in range(nh)]
    Zd = [ws.get((key, "Zd", l), (n, widths[l + 1])) for l in range(nh)]
    if ZB is None:
        ZB = [ws.get((key, "ZB", l), (2 * n, widths[l + 1])) for l in range(nh)]
    GX = [ws.get((key, "GX", l), (n, widths[l])) for l in range(nh)]
    seed = ws.get((key, "seed"), (n, widths[-2]))
    return FitCache(n, Yin, H, Zd, ZB, GX, seed)


def fit_forward(net: Net, cache: FitCache, ws: Workspace, key) -> tuple[np.ndarray, np.ndarray]:
    """Network energies e (n,) eV (no bias) and their gradient dE/dD (n, dim) (seed 1).

    Reads cache.D; fills the primal halves of the cache and its seed-1 adjoints (ZB bottom
    halves, GX; `FitCache`).  dE/dD is cache.GX[0].
    """
    n = cache.n
    hidden, last = net.layers[:-1], net.layers[-1]
    for l, layer in enumerate(hidden):
        y = cache.Yin[l][:n]
        Z = ws.get(("fwd", "Z"), (n, layer.n_out))
        np.matmul(y, layer.w, out=Z)
        act = _act(layer)
        if act is None:
            post_forward(Z, layer.b, _idt_full(layer), y, layer.residual, cache.H[l], cache.Yin[l + 1][:n])
        else:
            post_forward_keep_act(act, Z, layer.b, _idt_full(layer), y, layer.residual, cache.H[l],
                                  cache.Yin[l + 1][:n])
    y = cache.Yin[-1][:n]
    e = y @ last.w[:, 0]
    e += last.b[0]
    gy = cache.seed
    gy[:] = last.w[:, 0]
    for l in range(len(hidden) - 1, -1, -1):
        layer = hidden[l]
        gZ = cache.ZB[l][n:]
        act = _act(layer)
        if act is None:
            back_tanh(gy, cache.H[l], _idt_full(layer), gZ)
        else:
            back_act_z(act, gy, cache.H[l], _idt_full(layer), gZ)
        gx = cache.GX[l]
        np.matmul(gZ, layer.w.T, out=gx)
        if layer.residual != RESIDUAL_NONE:
            add_residual_adjoint(gy, layer.residual, gx)
        gy = gx
    return e, gy


def fit_tangent(net: Net, cache: FitCache) -> None:
    """Propagate the tangent from cache.Dd through the hidden layers (fills Zd and Yin tangents)."""
    n = cache.n
    for l, layer in enumerate(net.layers[:-1]):
        yd = cache.Yin[l][n:]
        Zd = cache.Zd[l]
        np.matmul(yd, layer.w, out=Zd)
        idt, use_idt = _idt(layer)
        act = _act(layer)
        if act is None:
            K.layer_tangent_out(cache.H[l], Zd, idt, use_idt, yd, layer.residual, cache.Yin[l + 1][n:])
        else:
            K.layer_tangent_out_act(act, cache.H[l], Zd, idt, use_idt, yd, layer.residual,
                                    cache.Yin[l + 1][n:])


def fit_reverse(net: Net, slots: list[LayerSlots], cache: FitCache, c_e: float | np.ndarray,
                grad: GradRow, ws: Workspace, key, weights: bool = True,
                input_adjoint: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Reverse pass of Ψ = Σ (c_e e + ė) over one fitting net, after `fit_forward` and
    `fit_tangent` of the same cache; returns (D̄, Ḋ̄), each (n, dim).  c_e: one number for
    every atom, or (n,) one per atom (1/eV).

    Accumulates the parameter adjoint into `grad` (flat layout).  The tangent adjoints are the
    forward's seed-1 adjoints (`FitCache`): only the primal adjoints z̄ and D̄ are formed here.
    With weights=False the hidden layers' weight adjoints W̄_l += Yin[l]ᵀ ZB[l] are left to the
    caller (the cache keeps both factors).  With input_adjoint=False D̄ is not formed (the
    descriptor does not train): returns (None, None).
    """
    n = cache.n
    hidden, last = net.layers[:-1], net.layers[-1]
    gW, gb, _ = slots[-1].views(grad.row)
    yl = cache.Yin[-1]
    Ob = ws.get((key, "Ob"), (n, last.n_in))
    if isinstance(c_e, np.ndarray):
        gW[:, 0] += c_e @ yl[:n] + yl[n:].sum(axis=0)
        gb[0] += c_e.sum()
        np.multiply(c_e[:, None], last.w[:, 0], out=Ob)
    else:
        gW[:, 0] += c_e * yl[:n].sum(axis=0) + yl[n:].sum(axis=0)
        gb[0] += c_e * n
        Ob[:] = c_e * last.w[:, 0]
    Odb = cache.seed   # fit_forward's seed: last.w in every row
    Yb = None
    for l in range(len(hidden) - 1, -1, -1):
        layer = hidden[l]
        _, gb, gidt = slots[l].views(grad.row)
        idt, use_idt = _idt(layer)
        ZB = cache.ZB[l]
        act = _act(layer)
        if act is None:
            K.layer_back_primal(Ob, Odb, cache.H[l], cache.Zd[l], idt, use_idt, use_idt,
                                ZB[:n], gidt if use_idt else _SINK, gb)
        else:
            K.layer_back_primal_act(act, Ob, Odb, cache.H[l], cache.Zd[l], idt, use_idt, use_idt,
                                    ZB[:n], gidt if use_idt else _SINK, gb)
        if weights:
            grad.add_matmul(slots[l], cache.Yin[l].T, ZB, ws)
        if l == 0 and not input_adjoint:
            return None, None
        Yb = ws.get(("rev", "YB", l % 2), (n, layer.n_in))
        np.matmul(ZB[:n], layer.w.T, out=Yb)
        if layer.residual != RESIDUAL_NONE:
            add_residual_adjoint(Ob, layer.residual, Yb)
        Ob, Odb = Yb, cache.GX[l]
    return Yb, cache.GX[0]
