"""Element-wise parts of dense layers, fused around the BLAS matrix products.

Each kernel adds the bias, applies tanh (numdp's vectorisable tanh), the timestep idt and the
residual shortcut in one pass over data that the preceding product left in cache.
Residual modes: 0 none, 1 same width (y' = y + ...), 2 doubled width (y' = [y, y] + ...).
"""
from numba import njit

from ..math import ACT_GELU, ACT_SIGMOID, ACT_SILU
from ..math import CPU as _MATH
from .mathfn import cast_like, tanh

_activation = _MATH.activation
_curvature = _MATH.activation_curvature
_tangent_element = _MATH.tangent_element

FLAGS = dict(cache=True, nogil=True, error_model="numpy", fastmath={"contract", "nsz"})


@njit(**FLAGS)
def first_layer_tangent(x, w, b, idt, mode, out):
    """Layer 1 of an embedding net (input width 1) with its derivative.

    x: (n,); w, b, idt: (k,); out: (2n, k) = [y'; dy'/dx] with y' = residual + idt*tanh(x w + b).
    """
    n = x.shape[0]
    _first_layer(x, w, b, idt, mode, out[:n], out[n:], out, False, False)


@njit(**FLAGS)
def first_layer_tangent_keep(x, w, b, idt, mode, out_val, out_slope, Z):
    """`first_layer_tangent` into out_val, out_slope (n, k), keeping Z (2n, k) = [h; dz/dx]
    = [tanh(x w + b); w] for the training passes' reverse (as `post_tangent_keep` does for the
    later layers)."""
    _first_layer(x, w, b, idt, mode, out_val, out_slope, Z, True, False)


@njit(cache=True, nogil=True, inline="always", error_model="numpy", fastmath={"contract", "nsz"})
def _first_layer(x, w, b, idt, mode, top_out, bot_out, Z, keep, have_h):
    """Body of the first-layer kernels: keep stores [h; w] in Z; have_h reads h from Z's top
    half instead of computing it (`rebuild_tangent`: the same expression, so the same bits);
    both are constants in each inlined copy."""
    n = x.shape[0]
    k = w.shape[0]
    one = cast_like(1.0, top_out)   # a float64 literal would promote float32 arithmetic
    for r in range(n):
        xr = x[r]
        top = top_out[r]
        bot = bot_out[r]
        if keep or have_h:
            zt = Z[r]
            zb = Z[n + r]
        for c in range(k):
            h = zt[c] if have_h else tanh(xr * w[c] + b[c])
            if keep:
                zt[c] = h
                zb[c] = w[c]
            top[c] = idt[c] * h
            bot[c] = idt[c] * (one - h * h) * w[c]
        if mode == 1:
            top[0] += xr
            bot[0] += 1.0
        elif mode == 2:
            for c in range(2):
                top[c] += xr
                bot[c] += 1.0


@njit(**FLAGS)
def post_tangent(Z, b, idt, Y, mode, out_val, out_slope):
    """Embedding layer after the product Z = [y; dy/dx] @ W (2n, k).

    Y: (2n, n_in) the layer input; out_val, out_slope: (n, k) = residual(Y) + idt * h and
    residual(dY/dx) + idt * (1 - h^2) z', with h = tanh(z + b).  The outputs must not alias Z
    (aliasing defeats vectorisation); they may be the two halves of one (2n, k) buffer.
    """
    _tangent_rows(Z, b, idt, Y, mode, out_val, out_slope, False, False)


@njit(**FLAGS)
def post_tangent_keep(Z, b, idt, Y, mode, out_val, out_slope):
    """`post_tangent`, and the top half of Z becomes h = tanh(z + b) (the training passes keep
    [h; z'] for their reverse pass)."""
    _tangent_rows(Z, b, idt, Y, mode, out_val, out_slope, True, False)


@njit(cache=True, nogil=True, inline="always", error_model="numpy", fastmath={"contract", "nsz"})
def _tangent_rows(Z, b, idt, Y, mode, out_val, out_slope, keep, have_h):
    """Body of post_tangent, post_tangent_keep and rebuild_tangent: out_val, out_slope (n, k) =
    residual(Y) + idt h and residual(dY/dx) + idt (1 - h²) z' for Z (2n, k) = [z or h; z'],
    with h = tanh(z + b) (stored in Z's top half when `keep`), or h read from Z's top half when
    `have_h` (`rebuild_tangent`: the same expression, so the same bits); keep and have_h are
    constants in each inlined copy.

    The residual is added in the same pass, segment by segment (mode 1: one segment of n_in
    columns, mode 2: two), so that each output element is stored once (25 % faster than a
    second pass over the row); the mode is tested outside the inner loop: tested inside it, or
    with the segments taken by a strided range, it kept LLVM from vectorising the loop (3.5x
    slower, measured)."""
    n = Z.shape[0] // 2
    one = cast_like(1.0, Z)
    zero = cast_like(0.0, Z)
    k = Z.shape[1]
    nseg = 1 if mode == 0 else k // Y.shape[1]
    seg = k // nseg
    for r in range(n):
        zt = Z[r]
        zb = Z[n + r]
        ot = out_val[r]
        ob = out_slope[r]
        yt = Y[r]
        yb = Y[n + r]
        for half in range(nseg):
            o = half * seg
            if mode == 0:
                for c in range(seg):
                    h = zt[c] if have_h else tanh(zt[c] + b[c])
                    if keep:
                        zt[c] = h
                    ot[c], ob[c] = _tangent_out(h, zb[c], idt[c], zero, zero, one)
            else:
                for c in range(seg):
                    h = zt[o + c] if have_h else tanh(zt[o + c] + b[o + c])
                    if keep:
                        zt[o + c] = h
                    ot[o + c], ob[o + c] = _tangent_out(h, zb[o + c], idt[o + c], yt[c], yb[c], one)


@njit(cache=True, nogil=True, inline="always", error_model="numpy", fastmath={"contract", "nsz"})
def _tangent_out(h, zd, idt, res, res_d, one):
    """An embedding layer's value and slope outputs from h = tanh z, z' and the residual's
    value and slope: idt h + res and idt ((1 - h²) z') + res_d (res = 0 adds an exact 0)."""
    return idt * h + res, idt * ((one - h * h) * zd) + res_d


@njit(**FLAGS)
def rebuild_tangent(Z, idt, Y, mode, first, out_val, out_slope):
    """The outputs [y'; dy'/dx] of an embedding layer again, from what the training forward
    kept: Z (2n, k) = [h; dz/dx] and the layer input Y (2n, n_in) (x in Y[:n, 0] when `first`),
    bit for bit what `post_tangent_keep` (`first_layer_tangent_keep` when `first`) wrote into
    out_val, out_slope (n, k): the same products in the same order, without the tanh.  The
    training passes rebuild a block's layer inputs in its reverse instead of keeping them for
    every pair (memory traffic)."""
    if first:   # x = Y[:n, 0]; the kept dz/dx rows are the weights w (any row of Z's bottom half)
        n = Z.shape[0] // 2
        _first_layer(Y[:n, 0], Z[n], idt, idt, mode, out_val, out_slope, Z, False, True)
    else:
        _tangent_rows(Z, idt, idt, Y, mode, out_val, out_slope, False, True)


@njit(**FLAGS)
def post_forward(Z, b, idt, Y, mode, H, out):
    """Fitting layer after the product Z = y @ W (n, k): H = tanh(Z + b) is kept for the
    backward pass and out (n, k) = residual(Y) + idt * H.  out must not alias Z (aliasing
    defeats vectorisation: measured 10x slower)."""
    n, k = Z.shape
    n_in = Y.shape[1]
    for r in range(n):
        zr = Z[r]
        hr = H[r]
        orow = out[r]
        for c in range(k):
            h = tanh(zr[c] + b[c])
            hr[c] = h
            orow[c] = idt[c] * h
        yr = Y[r]
        if mode == 1:
            for c in range(k):
                orow[c] += yr[c]
        elif mode == 2:
            for c in range(n_in):
                orow[c] += yr[c]
                orow[n_in + c] += yr[c]


@njit(**FLAGS)
def back_tanh(gY, H, idt, gZ):
    """gZ (n, k) = (1 - H^2) * idt * gY: adjoint of z from the adjoint of the layer output."""
    n, k = H.shape
    one = cast_like(1.0, H)
    for r in range(n):
        gr = gY[r]
        hr = H[r]
        zr = gZ[r]
        for c in range(k):
            zr[c] = (one - hr[c] * hr[c]) * idt[c] * gr[c]


@njit(**FLAGS)
def add_residual_adjoint(gY, mode, gX):
    """gX (n, n_in) += transpose of the residual map applied to gY (n, k)."""
    n, k = gY.shape
    n_in = gX.shape[1]
    if mode == 1:
        for r in range(n):
            for c in range(k):
                gX[r, c] += gY[r, c]
    elif mode == 2:
        for r in range(n):
            for c in range(n_in):
                gX[r, c] += gY[r, c] + gY[r, n_in + c]


# -- any activation ---------------------------------------------------------------------------------
# The kernels above fuse numdp's vectorisable tanh (DeePMD-kit's default, nearly every model); these
# evaluate any activation code `act` of numdp.model.activation through the scalar
# numdp.kernels.math.activation, in the same order of operations.  The fitting layer keeps the
# derivative D = act'(z) for the backward pass instead of H (which only tanh can turn into it); the
# training passes keep the pre-activation z itself (their reverse needs act, act' and act'').
#
# Each such kernel is a family (`by_activation`): for gelu, silu and sigmoid (built on the
# vectorisable tanh) a compiled variant with the code a constant (LLVM folds `activation`'s branches
# and vectorises the loop, 3-6x faster than with the code a run-time value), and one variant with
# the run-time code for the others (relu and relu6 vectorise as they are; softplus calls exp and
# log1p, which do not).  Each variant compiles on its first call, so that a model compiles only what
# its activations run: one kernel holding all four bodies took 1.7x the four apart to compile, and a
# gelu model's first training compiled all of them (70 s against 10 s for its variants alone).

INLINE = dict(cache=True, nogil=True, inline="always", error_model="numpy", fastmath={"contract", "nsz"})

ACT_ANY = -1
"""The `code` of a family's variant that takes the activation code at run time (`by_activation`)."""


def by_activation(make):
    """The kernel `run(act, *args)` of a family: make(code) returns an @njit kernel(act, *args)
    that evaluates activation `code` (a constant in it), or the run-time `act` when code is
    ACT_ANY; run calls the variant of gelu, silu or sigmoid for those codes and the ACT_ANY one for
    the others.  The variants are closures over `code`, which Numba's cache tells apart (it keys a
    closure's machine code by the values of its cells)."""
    fixed = {code: make(code) for code in (ACT_GELU, ACT_SILU, ACT_SIGMOID)}
    generic = make(ACT_ANY)

    def run(act, *args):
        return fixed.get(act, generic)(act, *args)

    run.__name__ = run.__qualname__ = make.__name__
    run.__doc__ = make.__doc__
    run.variants = dict(fixed, any=generic)
    return run


@by_activation
def first_layer_tangent_act(code):
    """`first_layer_tangent` with activation `act`: out (2n, k) = [y'; dy'/dx]."""
    @njit(**FLAGS)
    def kernel(act, x, w, b, idt, mode, out):
        n = x.shape[0]
        _first_layer_body(act if code == ACT_ANY else code, x, w, b, idt, mode, out[:n], out[n:], out,
                          False, False)
    return kernel


@by_activation
def first_layer_tangent_keep_act(code):
    """`first_layer_tangent_act` into out_val, out_slope (n, k), keeping Z (2n, k) = [z; dz/dx]
    = [x w + b; w] for the training passes' reverse (`rebuild_tangent_act`)."""
    @njit(**FLAGS)
    def kernel(act, x, w, b, idt, mode, out_val, out_slope, Z):
        _first_layer_body(act if code == ACT_ANY else code, x, w, b, idt, mode, out_val, out_slope, Z,
                          True, False)
    return kernel


@njit(**INLINE)
def _first_layer_body(act, x, w, b, idt, mode, top_out, bot_out, Z, keep, have_z):
    """Body of the first-layer kernels with activation `act`: keep stores [z; w] in Z; have_z
    reads z from Z's top half instead of computing it (the same bits); both are constants in
    each inlined copy."""
    n = x.shape[0]
    k = w.shape[0]
    for r in range(n):
        xr = x[r]
        top = top_out[r]
        bot = bot_out[r]
        zt = Z[r]
        zb = Z[n + r]
        for c in range(k):
            z = zt[c] if have_z else xr * w[c] + b[c]
            if keep:
                zt[c] = z
                zb[c] = w[c]
            h, d = _activation(act, z)
            top[c] = idt[c] * h
            bot[c] = idt[c] * d * w[c]
        if mode == 1:
            top[0] += xr
            bot[0] += 1.0
        elif mode == 2:
            for c in range(2):
                top[c] += xr
                bot[c] += 1.0


@by_activation
def post_tangent_act(code):
    """`post_tangent` with activation `act`: out_val, out_slope (n, k) = residual(Y) + idt h and
    residual(dY/dx) + idt (h'(z) z'), h = act(z + b)."""
    @njit(**FLAGS)
    def kernel(act, Z, b, idt, Y, mode, out_val, out_slope):
        _tangent_rows_body(act if code == ACT_ANY else code, Z, b, idt, Y, mode, out_val, out_slope,
                           False, False)
    return kernel


@by_activation
def post_tangent_keep_act(code):
    """`post_tangent_act`, and the top half of Z becomes z + b (the pre-activation, kept for the
    training passes' reverse)."""
    @njit(**FLAGS)
    def kernel(act, Z, b, idt, Y, mode, out_val, out_slope):
        _tangent_rows_body(act if code == ACT_ANY else code, Z, b, idt, Y, mode, out_val, out_slope,
                           True, False)
    return kernel


@njit(**INLINE)
def _tangent_rows_body(act, Z, b, idt, Y, mode, out_val, out_slope, keep, have_z):
    """Body of post_tangent_act, post_tangent_keep_act and rebuild_tangent_act over Z (2n, k) =
    [z or z + b; z']: keep stores z + b in Z's top half, have_z reads it from there.  The loops
    are `_tangent_rows`' (residual segments outside the inner loop)."""
    n = Z.shape[0] // 2
    k = Z.shape[1]
    nseg = 1 if mode == 0 else k // Y.shape[1]
    seg = k // nseg
    for r in range(n):
        zt = Z[r]
        zb = Z[n + r]
        ot = out_val[r]
        ob = out_slope[r]
        yt = Y[r]
        yb = Y[n + r]
        for half in range(nseg):
            o = half * seg
            if mode == 0:
                for c in range(seg):
                    z = zt[c] if have_z else zt[c] + b[c]
                    if keep:
                        zt[c] = z
                    ot[c], ob[c] = _tangent_element(act, z, zb[c], idt[c], 0.0, 0.0)
            else:
                for c in range(seg):
                    z = zt[o + c] if have_z else zt[o + c] + b[o + c]
                    if keep:
                        zt[o + c] = z
                    ot[o + c], ob[o + c] = _tangent_element(act, z, zb[o + c], idt[o + c], yt[c], yb[c])


@by_activation
def rebuild_tangent_act(code):
    """`rebuild_tangent` for activation `act`, from Z (2n, k) = [z; dz/dx] as
    `post_tangent_keep_act` (`first_layer_tangent_keep_act` when `first`) kept it: bit for bit
    the outputs the forward wrote."""
    @njit(**FLAGS)
    def kernel(act, Z, idt, Y, mode, first, out_val, out_slope):
        a = act if code == ACT_ANY else code
        n = Z.shape[0] // 2
        if first:   # x = Y[:n, 0]; the kept dz/dx rows are the weights w (any row of Z's bottom half)
            _first_layer_body(a, Y[:n, 0], Z[n], idt, idt, mode, out_val, out_slope, Z, False, True)
        else:
            _tangent_rows_body(a, Z, idt, idt, Y, mode, out_val, out_slope, False, True)
    return kernel


@by_activation
def post_forward_act(code):
    """`post_forward` with activation `act`: D = act'(Z + b) is kept for the backward pass
    (`back_act`) and out (n, k) = residual(Y) + idt * act(Z + b)."""
    @njit(**FLAGS)
    def kernel(act, Z, b, idt, Y, mode, D, out):
        _forward_rows_body(act if code == ACT_ANY else code, Z, b, idt, Y, mode, D, out, False)
    return kernel


@by_activation
def post_forward_keep_act(code):
    """`post_forward_act` keeping the pre-activation Zk (n, k) = Z + b instead of D (the training
    passes: their reverse needs act, act' and act'' of it)."""
    @njit(**FLAGS)
    def kernel(act, Z, b, idt, Y, mode, Zk, out):
        _forward_rows_body(act if code == ACT_ANY else code, Z, b, idt, Y, mode, Zk, out, True)
    return kernel


@njit(**INLINE)
def _forward_rows_body(act, Z, b, idt, Y, mode, K, out, keep_z):
    """Body of post_forward_act (K = act'(z)) and post_forward_keep_act (K = z); the residual is
    added in a loop of its own, as in `post_forward`."""
    n, k = Z.shape
    n_in = Y.shape[1]
    for r in range(n):
        zr = Z[r]
        kr = K[r]
        orow = out[r]
        for c in range(k):
            z = zr[c] + b[c]
            h, d = _activation(act, z)
            kr[c] = z if keep_z else d
            orow[c] = idt[c] * h
        yr = Y[r]
        if mode == 1:
            for c in range(k):
                orow[c] += yr[c]
        elif mode == 2:
            for c in range(n_in):
                orow[c] += yr[c]
                orow[n_in + c] += yr[c]


@njit(**FLAGS)
def back_act(gY, D, idt, gZ):
    """gZ (n, k) = D * idt * gY: adjoint of z from the layer output's, D = act'(z) (`post_forward_act`)."""
    n, k = D.shape
    for r in range(n):
        for c in range(k):
            gZ[r, c] = D[r, c] * idt[c] * gY[r, c]


@by_activation
def back_act_z(code):
    """`back_act` from the kept pre-activation Zk (n, k) (`post_forward_keep_act`):
    gZ = act'(Zk) * idt * gY."""
    @njit(**FLAGS)
    def kernel(act, gY, Zk, idt, gZ):
        _back_rows_z(act if code == ACT_ANY else code, gY, Zk, idt, gZ)
    return kernel


@njit(**INLINE)
def _back_rows_z(act, gY, Zk, idt, gZ):
    """Body of back_act_z."""
    n, k = Zk.shape
    for r in range(n):
        zr = Zk[r]
        gr = gY[r]
        out = gZ[r]
        for c in range(k):
            _, d = _activation(act, zr[c])
            out[c] = d * idt[c] * gr[c]


@njit(**FLAGS)
def activation_values(act, z, out):
    """out[:, i] = (h, h', h'') of activation `act` at z[i]: z (n,), out (3, n)."""
    for i in range(z.shape[0]):
        out[0, i], out[1, i], out[2, i] = _curvature(act, z[i])
