"""Element-wise parts of dense layers around the matrix products (twins of kernels/cpu/layers.py).

One thread per output element, launched flat over (rows x columns) with `launch.strided2`
(consecutive threads take consecutive columns: coalesced loads and stores; a grid-stride loop, so
any grid covers the array).  Arithmetic runs in the arrays' dtype (float32 under mix32 /
mix16, where the literal 1.0 promotes 1 - h² to float64 before it is stored back: at most one
float32 rounding less than the CPU twin).  Residual modes: 0 none, 1 same width, 2 doubled width.
`act` is the activation code of numdp.model.activation (0 tanh), evaluated by the scalar
numdp.kernels.math.activation (one branch for the whole launch); the fitting layer keeps
D = act'(z) for the backward pass (`back_act`).
"""
from numba import cuda, float64

from .launch import MATH, split

_activation = MATH.activation
_tangent_element = MATH.tangent_element



@cuda.jit
def first_layer_tangent(act, x, w, b, idt, mode, out):
    """Layer 1 of an embedding net (input width 1) with its derivative: x (n,); w, b, idt (k,);
    out (2n, k) = [y'; dy'/dx] with y' = residual(x) + idt * act(x w + b)."""
    n = x.shape[0]
    k = w.shape[0]
    for idx in range(cuda.grid(1), n * k, cuda.gridsize(1)):
        r, c = split(idx, k)
        xr = x[r]
        h, d = _activation(act, xr * w[c] + b[c])
        top = idt[c] * h
        bot = idt[c] * d * w[c]
        if (mode == 1 and c == 0) or (mode == 2 and c < 2):
            top += xr
            bot += 1.0
        out[r, c] = top
        out[n + r, c] = bot


@cuda.jit
def post_tangent(act, Z, b, idt, Y, mode, out_val, out_slope):
    """After Z = [y; dy/dx] @ W (2n, k): out_val, out_slope (n, k) = residual(Y) + idt * h and
    residual(dY/dx) + idt * h'(z) z', h = act(z + b); Y (2n, n_in) the layer input."""
    n = Z.shape[0] // 2
    k = Z.shape[1]
    n_in = Y.shape[1]
    for idx in range(cuda.grid(1), n * k, cuda.gridsize(1)):
        r, c = split(idx, k)
        cc = c if mode == 1 or c < n_in else c - n_in   # the residual's column (modes 1, 2)
        res, res_d = (Y[r, cc], Y[n + r, cc]) if mode != 0 else (0.0, 0.0)
        out_val[r, c], out_slope[r, c] = _tangent_element(act, Z[r, c] + b[c], Z[n + r, c], idt[c], res, res_d)


@cuda.jit
def post_forward(act, Z, b, idt, Y, mode, D, out):
    """Fitting layer after Z = y @ W (n, k): D = act'(Z + b) (kept for the backward pass,
    `back_act`) and out = residual(Y) + idt * act(Z + b)."""
    n, k = Z.shape
    for idx in range(cuda.grid(1), n * k, cuda.gridsize(1)):
        r, c = split(idx, k)
        h, d = _activation(act, Z[r, c] + b[c])
        D[r, c] = d
        v = idt[c] * h
        n_in = Y.shape[1]
        if mode == 1:
            v += Y[r, c]
        elif mode == 2:
            v += Y[r, c if c < n_in else c - n_in]
        out[r, c] = v


@cuda.jit
def back_act(gY, D, idt, gZ):
    """gZ (n, k) = D idt gY, D = act'(z) (`post_forward`)."""
    n, k = D.shape
    for idx in range(cuda.grid(1), n * k, cuda.gridsize(1)):
        r, c = split(idx, k)
        gZ[r, c] = D[r, c] * idt[c] * gY[r, c]


@cuda.jit
def add_residual_adjoint(gY, mode, gX):
    """gX (n, n_in) += the transposed residual map applied to gY (n, k)."""
    n, n_in = gX.shape
    if mode == 0:
        return
    for idx in range(cuda.grid(1), n * n_in, cuda.gridsize(1)):
        r, c = split(idx, n_in)
        if mode == 1:
            gX[r, c] += gY[r, c]
        else:
            gX[r, c] += gY[r, c] + gY[r, n_in + c]


@cuda.jit
def fit_energy(z, atoms, fit_bias, atom_bias, energy):
    """energy[atoms[a]] = (float64(z[a, 0]) + fit_bias) + atom_bias: a type's atomic energies from
    its fitting net's last product z (n, 1), written at its atoms (the cast, two additions and the
    scatter of the array library's chain, in its order: the same bits, one launch)."""
    for a in range(cuda.grid(1), z.shape[0], cuda.gridsize(1)):
        energy[atoms[a]] = (float64(z[a, 0]) + fit_bias) + atom_bias
