"""Network evaluation for inference: BLAS products and fused Numba element-wise kernels.

Embedding nets have a scalar input, so their derivative dG/dx is propagated in forward mode
next to the value: each layer is one product of the stacked [y; dy/dx] rows.  Rows are processed
in tiles small enough to stay in L2 cache between the product and the element-wise pass.
Fitting nets are evaluated forward, then back-propagated to their input (reference §6.1).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..kernels.cpu.layers import (add_residual_adjoint, back_act, back_tanh, first_layer_tangent,
                                  first_layer_tangent_act, post_forward, post_forward_act, post_tangent,
                                  post_tangent_act)
from .activation import Activation, code
from .params import Net, RESIDUAL_NONE
from .precision import Precision, get_precision, round_half
from .workspace import Workspace

EMBED_TILE = 384  # pairs per tile: 2*384 rows x 100 doubles = 600 kB


@dataclass
class _Layer:
    w: np.ndarray
    b: np.ndarray
    idt: np.ndarray
    mode: int
    act: int          # numdp.model.activation code; tanh runs the fused tanh kernels

    @property
    def tanh(self) -> bool:
        return self.act == Activation.TANH


class InferenceNet:
    """A net prepared for the kernels under a precision policy: contiguous weights of the policy's
    dtype (rounded to float16 values for mix16), idt of ones where absent."""

    def __init__(self, net: Net, precision: Precision | str = "double"):
        self.precision = prec = get_precision(precision)
        self.dtype = prec.dtype

        def weights(w):
            w = np.ascontiguousarray(w, prec.dtype)
            return round_half(w) if prec.half_operands else w

        self.layers = [_Layer(weights(lay.w),
                              np.ascontiguousarray(lay.b, prec.dtype),
                              np.ascontiguousarray(lay.idt if lay.idt is not None else np.ones(lay.n_out),
                                                   prec.dtype),
                              lay.residual, code(lay.activation))
                       for lay in net.layers]
        self.width = net.layers[-1].n_out

    def operand(self, a: np.ndarray) -> np.ndarray:
        """A product operand in the policy's dtype (rounded to half for mix16)."""
        a = np.ascontiguousarray(a, self.dtype)
        return round_half(a) if self.precision.half_operands else a


def fold_symmetric_input(net: Net, M: int, naxis: int) -> Net | None:
    """The fitting net rewritten for the folded layout of D (see
    `numdp.kernels.cpu.descriptor.folded_rows`), or None when its first layer has a residual.

    The block D[m, k], m, k < naxis, is symmetric, so the first layer's rows for D[m, k] and
    D[k, m] act on equal inputs and can be summed: naxis (naxis - 1) / 2 fewer inputs (1 480
    instead of 1 600 for M = 100, naxis = 16: 7.5 % fewer multiply-adds in the first layer's
    forward and backward products).  The same function, up to round-off.
    """
    first = net.layers[0]
    if first.residual != RESIDUAL_NONE or naxis < 2 or first.n_in != M * naxis:
        return None
    w = first.w.reshape(M, naxis, first.n_out)
    block = [w[m, m] if k == m else w[m, k] + w[k, m] for m in range(naxis) for k in range(m, naxis)]
    wf = np.concatenate([np.stack(block), w[naxis:].transpose(1, 0, 2).reshape(-1, first.n_out)])
    return Net([replace(first, w=wf, resnet=False)] + list(net.layers[1:]))


def _view(buf: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """A contiguous (rows, cols) view at the start of the flat buffer `buf`."""
    return buf[:rows * cols].reshape(rows, cols)


def embed_into(x: np.ndarray, net: InferenceNet, G: np.ndarray, Gp: np.ndarray | None,
               ws: Workspace | None = None) -> None:
    """G (n, M) = net(x) and, unless Gp is None, Gp (n, M) = d net/dx, for x (n,).

    x is taken in the net's dtype (and rounded to half for mix16); G, Gp have the net's dtype.
    The last layer writes straight into G and Gp.  Scratch tiles come from `ws` when given.
    """
    n = x.shape[0]
    x = net.operand(x)
    half = net.precision.half_operands
    first, rest = net.layers[0], net.layers[1:]
    wmax = max(lay.w.shape[1] for lay in net.layers)
    ws = ws or Workspace()
    bufs = [ws.get(f"embed{i}", 2 * EMBED_TILE * wmax, net.dtype) for i in range(3)]
    for p0 in range(0, n, EMBED_TILE):
        p1 = min(n, p0 + EMBED_TILE)
        m = p1 - p0
        Y = _view(bufs[0], 2 * m, first.w.shape[1])
        if first.tanh:
            first_layer_tangent(x[p0:p1], first.w[0], first.b, first.idt, first.mode, Y)
        else:
            first_layer_tangent_act(first.act, x[p0:p1], first.w[0], first.b, first.idt, first.mode, Y)
        iy = 0  # Y, Z and the layer output rotate through the three buffers
        for li, lay in enumerate(rest):
            width = lay.w.shape[1]
            Z = np.matmul(round_half(Y) if half else Y, lay.w, out=_view(bufs[(iy + 1) % 3], 2 * m, width))
            out = _view(bufs[(iy + 2) % 3], 2 * m, width)
            if li == len(rest) - 1:
                val, slope = G[p0:p1], out[m:] if Gp is None else Gp[p0:p1]
            else:
                val, slope = out[:m], out[m:]
            if lay.tanh:
                post_tangent(Z, lay.b, lay.idt, Y, lay.mode, val, slope)
            else:
                post_tangent_act(lay.act, Z, lay.b, lay.idt, Y, lay.mode, val, slope)
            Y = out
            iy = (iy + 2) % 3
        if not rest:
            G[p0:p1] = Y[:m]
            if Gp is not None:
                Gp[p0:p1] = Y[m:]


def embed_value(x: np.ndarray, net: InferenceNet) -> np.ndarray:
    """G (n, M) for inputs x (n,)."""
    G = np.empty((x.shape[0], net.width), dtype=net.dtype)
    embed_into(x, net, G, None)
    return G


def fit_energy_and_grad(D: np.ndarray, net: InferenceNet, want_grad: bool = True,
                        ws: Workspace | None = None, grad_out: np.ndarray | None = None,
                        shift: np.ndarray | None = None):
    """Atomic network energies (n,) float64 and their gradient dE/dD (n, dim) in the net's dtype,
    for inputs D (n, dim).  Hidden layers use their activation with the width-tested residual; the last layer
    is linear.  Scratch (and the returned gradient, valid until the next call with the same
    workspace) comes from `ws` when given.  grad_out: optional C-contiguous (n, dim) array of the
    net's dtype that receives the gradient directly (saves a copy of n x dim values).  shift:
    optional (n, width of the first layer) float64 added to each atom's first-layer z (atomic
    parameters: `numdp.model.params.aparam_delta`), rounded to the net's dtype.
    """
    ws = ws or Workspace()
    n = D.shape[0]

    def operand(a, name):
        if net.precision.half_operands:
            return net.operand(a)
        if a.dtype == net.dtype and a.flags.c_contiguous:
            return a
        out = ws.get(name, a.shape, net.dtype)
        out[...] = a
        return out

    y = operand(D, "fit_in")
    cache = []
    hidden, last = net.layers[:-1], net.layers[-1]
    for li, lay in enumerate(hidden):
        k = lay.w.shape[1]
        Z = np.matmul(operand(y, "fit_op"), lay.w, out=ws.get(f"fit_z{li}", (n, k), net.dtype))
        if li == 0 and shift is not None:
            Z += shift.astype(net.dtype)
        H = ws.get(f"fit_h{li}", (n, k), net.dtype)   # tanh: h; other activations: h'(z)
        out = ws.get(f"fit_y{li}", (n, k), net.dtype)  # not Z: aliasing blocks vectorisation (10x)
        if lay.tanh:
            post_forward(Z, lay.b, lay.idt, y, lay.mode, H, out)
        else:
            post_forward_act(lay.act, Z, lay.b, lay.idt, y, lay.mode, H, out)
        cache.append(H)
        y = out
    energy = (operand(y, "fit_op") @ last.w)[:, 0].astype(np.float64) + float(last.b[0])
    if not hidden and shift is not None:
        energy += shift[:, 0]
    if not want_grad:
        return energy, None
    gy = ws.get("fit_gy_last", (n, last.w.shape[0]), net.dtype)
    gy[...] = last.w[:, 0]
    for li in range(len(hidden) - 1, -1, -1):
        lay, H = hidden[li], cache[li]
        gZ = ws.get("fit_gz", H.shape, net.dtype)
        if lay.tanh:
            back_tanh(gy, H, lay.idt, gZ)
        else:
            back_act(gy, H, lay.idt, gZ)
        target = grad_out if li == 0 and grad_out is not None else \
            ws.get(f"fit_gx{li % 2}", (n, lay.w.shape[0]), net.dtype)
        gx = np.matmul(operand(gZ, "fit_op"), lay.w.T, out=target)
        if lay.mode != RESIDUAL_NONE:
            add_residual_adjoint(gy, lay.mode, gx)
        gy = gx
    if grad_out is not None and gy is not grad_out:   # no hidden layer
        grad_out[...] = gy
        gy = grad_out
    return energy, gy
