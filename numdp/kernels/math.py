"""Scalar maths shared by the CPU and CUDA kernels, written once (reference §2, §2.3, §9.6; the
ghost images and cell-list stencil of the neighbour search).

Plain Python on scalars (`math.sqrt`, tuples for several results; `write_pair_row` and
`write_images` index the caller's arrays, which both targets compile alike), compiled for each
target with numdp.kernels.dual: `cpu_inline` for the @njit kernels of kernels/cpu (the compiled
copies live at the bottom of this module), `cuda_device` for the @cuda.jit kernels of kernels/cuda.
Being inlined, each copy takes the floating-point flags and the argument types of its caller:
float32 coefficients and a float32 tau give float32 polynomial arithmetic.
"""
import math
import types
from dataclasses import dataclass

from .dual import cpu_inline

# What the environment kernels of both targets make of the slots of a (centre type, neighbour
# type) block (numdp.model.params.ModelParams.slot_modes): every neighbour a pair; a neighbour
# within rcut a zero row (DeePMD-kit's descriptor exclude_types); every slot padding
# (DeePMD-kit's model-level pair_exclude_types).
SLOTS_PAIRS, SLOTS_ZERO, SLOTS_PADDING = 0, 1, 2


def switch(r, rmin, rmax):
    """(w(r), dw/dr) of the C2 polynomial switch from 1 at rmin (rcut_smth) to 0 at rmax (rcut)."""
    if r < rmin:
        return 1.0, 0.0
    if r >= rmax:
        return 0.0, 0.0
    u = (r - rmin) / (rmax - rmin)
    w = u * u * u * (-6.0 * u * u + 15.0 * u - 10.0) + 1.0
    dw = -30.0 * u * u * (1.0 - u) * (1.0 - u) / (rmax - rmin)
    return w, dw


def env_row(dx, dy, dz, rmin, rmax):
    """(r, s0, s1) of the pair vector d = r_j - r_i (Å): the raw environment row is
    (s0, s1 dx, s1 dy, s1 dz) with s0 = w(r) / r and s1 = w(r) / r²."""
    r = math.sqrt(dx * dx + dy * dy + dz * dz)
    w, _ = switch(r, rmin, rmax)
    inv_r = 1.0 / r
    s0 = w * inv_r
    return r, s0, s0 * inv_r


def row_jacobian(dx, dy, dz, rmin, rmax):
    """(a0, a1, b): the Jacobian of the raw row R = (w/r, w d/r²) of pair vector d (Å) is

        dR0/dd_k = a0 d_k,   dR_{1+c}/dd_k = a1 d_c d_k + b δ_ck

    with a0 = (w'/r - w/r²)/r, a1 = w'/r³ - 2w/r⁴, b = w/r² (reference §2.3)."""
    r = math.sqrt(dx * dx + dy * dy + dz * dz)
    inv_r = 1.0 / r
    inv_r2 = inv_r * inv_r
    w, dw = switch(r, rmin, rmax)
    return (dw * inv_r - w * inv_r2) * inv_r, dw * inv_r * inv_r2 - 2.0 * w * inv_r2 * inv_r2, w * inv_r2


def row_grad_to_dvec(g0, g1, g2, g3, dx, dy, dz, rmin, rmax):
    """dE/dd (3 components) from dE/dR (g0..g3) of the raw row R of pair vector d: Jᵀg
    (`row_jacobian`)."""
    a0, a1, b = row_jacobian(dx, dy, dz, rmin, rmax)
    c = g0 * a0 + a1 * (g1 * dx + g2 * dy + g3 * dz)
    return c * dx + b * g1, c * dy + b * g2, c * dz + b * g3


def row_tangent(qx, qy, qz, dx, dy, dz, rmin, rmax):
    """(dR0, dR1, dR2, dR3) = J q: the tangent of the raw row of pair vector d for a displacement
    q of d (Å; `row_jacobian`; the training passes' tangent)."""
    a0, a1, b = row_jacobian(dx, dy, dz, rmin, rmax)
    dq = dx * qx + dy * qy + dz * qz
    c = a1 * dq
    return a0 * dq, c * dx + b * qx, c * dy + b * qy, c * dz + b * qz


def write_pair_row(pos, i, j, ti, t, mu, sd, rmin, rmax, p, rt, dvec, nbr):
    """The environment slot p of centre i (type ti) and extended neighbour j in type block t, the
    step that env_pairs does on both targets: with d = pos[j] - pos[i] (Å; pos (nall, 3)) at
    r < rmax, writes the normalised row rt[p] = ((s0, s1 d) - mu[ti, t]) / sd[ti, t] (rt (P, 4),
    mu, sd (ntypes, ntypes, 4); `env_row`), dvec[p] = d (P, 3) and nbr[p] = j, and returns True;
    at r >= rmax writes nothing and returns False (the caller's padding)."""
    dx = pos[j, 0] - pos[i, 0]
    dy = pos[j, 1] - pos[i, 1]
    dz = pos[j, 2] - pos[i, 2]
    r, s0, s1 = env_row(dx, dy, dz, rmin, rmax)
    if r >= rmax:
        return False
    rt[p, 0] = (s0 - mu[ti, t, 0]) / sd[ti, t, 0]
    rt[p, 1] = (s1 * dx - mu[ti, t, 1]) / sd[ti, t, 1]
    rt[p, 2] = (s1 * dy - mu[ti, t, 2]) / sd[ti, t, 2]
    rt[p, 3] = (s1 * dz - mu[ti, t, 3]) / sd[ti, t, 3]
    dvec[p, 0] = dx
    dvec[p, 1] = dy
    dvec[p, 2] = dz
    nbr[p] = j
    return True


def poly3_value(c0, c1, c2, c3, tau):
    """c0 + c1 τ + c2 τ² + c3 τ³ (Horner)."""
    return ((c3 * tau + c2) * tau + c1) * tau + c0


def poly5_value(c0, c1, c2, c3, c4, c5, tau):
    """c0 + c1 τ + ... + c5 τ⁵ (Horner)."""
    return ((((c5 * tau + c4) * tau + c3) * tau + c2) * tau + c1) * tau + c0


def poly3_at(c0, c1, c2, c3, tau):
    """(value, slope) at τ of the cubic piece; Horner carries the slope along (2 FMA per degree)."""
    d = c3
    v = d * tau + c2
    d = d * tau + v
    v = v * tau + c1
    d = d * tau + v
    v = v * tau + c0
    return v, d


def poly5_at(c0, c1, c2, c3, c4, c5, tau):
    """(value, slope) at τ of the quintic piece (Horner with the slope carried along)."""
    d = c5
    v = d * tau + c4
    d = d * tau + v
    v = v * tau + c3
    d = d * tau + v
    v = v * tau + c2
    d = d * tau + v
    v = v * tau + c1
    d = d * tau + v
    v = v * tau + c0
    return v, d


tanh = math.tanh   # the CPU copy binds numdp's vectorisable tanh instead (`compile_math`)

# activation codes of the kernels (numdp.model.activation.Activation names them)
ACT_TANH, ACT_GELU, ACT_RELU, ACT_RELU6, ACT_SOFTPLUS, ACT_SIGMOID, ACT_SILU, ACT_NONE = range(8)
GELU_C = math.sqrt(2.0 / math.pi)   # gelu's tanh form (numdp.model.activation uses these too)
GELU_A = 0.044715


def activation(kind, z):
    """(h, dh/dz) of activation `kind` (one of the ACT_* codes; gelu in its tanh form) at z."""
    if kind == ACT_TANH:
        h = tanh(z)
        return h, 1.0 - h * h
    if kind == ACT_GELU:
        t = tanh(GELU_C * (z + GELU_A * z * z * z))
        return (0.5 * z * (1.0 + t),
                0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_A * z * z))
    if kind == ACT_RELU:
        return (z + 0.0, 1.0) if z > 0.0 else (0.0 * z, 0.0)
    if kind == ACT_RELU6:
        if z <= 0.0:
            return 0.0 * z, 0.0
        return (z + 0.0, 1.0) if z < 6.0 else (6.0 + 0.0 * z, 0.0)
    if kind == ACT_NONE:
        return z + 0.0, 1.0
    sig = 0.5 * (1.0 + tanh(0.5 * z))          # σ(z), no overflow for any z
    if kind == ACT_SOFTPLUS:
        # ln(1 + e^z) = max(z, 0) + ln(1 + e^-|z|)
        return max(z, 0.0) + math.log1p(math.exp(-abs(z))), sig
    if kind == ACT_SIGMOID:
        return sig, sig * (1.0 - sig)
    return z * sig, sig + z * sig * (1.0 - sig)


def activation_curvature(kind, z):
    """(h, dh/dz, d²h/dz²) of activation `kind` (as `activation`) at z: what the training passes'
    reverse over value and slope needs (numdp.kernels.cpu.train)."""
    if kind == ACT_TANH:
        h = tanh(z)
        g = 1.0 - h * h
        return h, g, -2.0 * h * g
    if kind == ACT_GELU:
        # h and h' as `activation` writes them; u = c (z + a z³), s = tanh'(u), du = u'
        t = tanh(GELU_C * (z + GELU_A * z * z * z))
        s = 1.0 - t * t
        du = GELU_C * (1.0 + 3.0 * GELU_A * z * z)
        return (0.5 * z * (1.0 + t), 0.5 * (1.0 + t) + 0.5 * z * s * GELU_C * (1.0 + 3.0 * GELU_A * z * z),
                s * du + 0.5 * z * s * (6.0 * GELU_C * GELU_A * z - 2.0 * t * du * du))
    if kind == ACT_RELU or kind == ACT_RELU6 or kind == ACT_NONE:              # piecewise linear
        h, d = activation(kind, z)
        return h, d, 0.0 * z
    sig = 0.5 * (1.0 + tanh(0.5 * z))
    ds = sig * (1.0 - sig)
    if kind == ACT_SOFTPLUS:
        return max(z, 0.0) + math.log1p(math.exp(-abs(z))), sig, ds
    if kind == ACT_SIGMOID:
        return sig, ds, ds * (1.0 - 2.0 * sig)
    return z * sig, sig + z * sig * (1.0 - sig), ds * (2.0 + z * (1.0 - 2.0 * sig))


def tangent_element(act, z, zd, idt, res, res_d):
    """(value, slope) of one output of an embedding layer with activation `act`: idt act(z) + res
    and idt (act'(z) zd) + res_d, for pre-activation z, its slope zd and the residual's value and
    slope (0, 0 without a residual)."""
    h, d = activation(act, z)
    return idt * h + res, idt * (d * zd) + res_d


def locate_piece(x, lower, upper, xmax, h0, h1, n0, nint):
    """(interval l, local coordinate τ, excess x - clamp(x)) of input x in a two-stride table:
    stride h0 on [lower, upper), h1 on [upper, xmax]; n0 intervals in the first part, nint in all.
    Outside [lower, xmax] the caller continues the piece linearly by the excess."""
    xc = x
    if xc < lower:
        xc = lower
    elif xc > xmax:
        xc = xmax
    if xc < upper:
        l = int((xc - lower) / h0)
        node = lower + l * h0
    else:
        l = n0 + int((xc - upper) / h1)
        if l > nint - 1:
            l = nint - 1
        node = upper + (l - n0) * h1
    return l, xc - node, x - xc


def shift_range(f, lo, hi):
    """Integers n with lo <= f + n < hi: (n_min, n_max), inclusive (the ghost-image shifts of a
    fractional coordinate f along one cell vector, region [lo, hi))."""
    return math.ceil(lo - f), math.ceil(hi - f) - 1


def write_images(x, frac, types, box, lo, hi, i, p, out_pos, out_types, out_map, out_shift, keep_shift):
    """Rows p, p + 1, ... of the ghost images of local atom i, the order of
    numdp.neighbor.extend on both targets: every non-zero integer shift n with
    lo_k <= frac[i, k] + n_k < hi_k (`shift_range`), n0, n1, n2 ascending.  Writes
    out_pos[q] = x[i] + n @ box (Å; x (nloc, 3) wrapped, box (3, 3) rows = cell vectors),
    out_types[q] = types[i], out_map[q] = i and, if keep_shift (a constant at each call site),
    out_shift[q] = n."""
    a0, b0 = shift_range(frac[i, 0], lo[0], hi[0])
    a1, b1 = shift_range(frac[i, 1], lo[1], hi[1])
    a2, b2 = shift_range(frac[i, 2], lo[2], hi[2])
    for n0 in range(a0, b0 + 1):
        for n1 in range(a1, b1 + 1):
            for n2 in range(a2, b2 + 1):
                if n0 == 0 and n1 == 0 and n2 == 0:
                    continue
                for k in range(3):
                    out_pos[p, k] = x[i, k] + n0 * box[0, k] + n1 * box[1, k] + n2 * box[2, k]
                out_types[p] = types[i]
                out_map[p] = i
                if keep_shift:
                    out_shift[p, 0] = n0
                    out_shift[p, 1] = n1
                    out_shift[p, 2] = n2
                p += 1


def stencil_bounds(c, nx, ny, nz, reach):
    """(x0, x1, y0, y1, z0, z1), inclusive: the cells within `reach` of linear cell
    c = (cz ny + cy) nx + cx along each axis of an nx × ny × nz grid, clipped to the grid (the
    cell-list stencil of an atom in cell c)."""
    cx = c % nx
    cy = (c // nx) % ny
    cz = c // (nx * ny)
    return (max(cx - reach, 0), min(cx + reach, nx - 1), max(cy - reach, 0), min(cy + reach, ny - 1),
            max(cz - reach, 0), min(cz + reach, nz - 1))


@dataclass(frozen=True)
class ScalarMath:
    """The functions above compiled for one target (see `compile_math`)."""

    switch: object
    env_row: object
    write_pair_row: object
    row_jacobian: object
    row_grad_to_dvec: object
    row_tangent: object
    poly3_value: object
    poly5_value: object
    poly3_at: object
    poly5_at: object
    locate_piece: object
    shift_range: object
    write_images: object
    stencil_bounds: object
    activation: object
    activation_curvature: object
    tangent_element: object


def _rebind(fn, **deps):
    """fn with the global names in deps (the helpers it calls) bound to their compiled copies."""
    g = dict(fn.__globals__)
    g.update(deps)
    return types.FunctionType(fn.__code__, g, fn.__name__, fn.__defaults__, fn.__closure__)


def compile_math(compile_fn, tanh_fn=None) -> ScalarMath:
    """Every function of this module compiled with compile_fn (dual.cpu_inline or dual.cuda_device);
    `activation` calls tanh_fn (default math.tanh)."""
    sw = compile_fn(switch)
    jac = compile_fn(_rebind(row_jacobian, switch=sw))
    row = compile_fn(_rebind(env_row, switch=sw))
    sr = compile_fn(shift_range)
    act = compile_fn(_rebind(activation, tanh=tanh_fn or math.tanh))
    return ScalarMath(
        switch=sw,
        env_row=row,
        write_pair_row=compile_fn(_rebind(write_pair_row, env_row=row)),
        row_jacobian=jac,
        row_grad_to_dvec=compile_fn(_rebind(row_grad_to_dvec, row_jacobian=jac)),
        row_tangent=compile_fn(_rebind(row_tangent, row_jacobian=jac)),
        poly3_value=compile_fn(poly3_value), poly5_value=compile_fn(poly5_value),
        poly3_at=compile_fn(poly3_at), poly5_at=compile_fn(poly5_at),
        locate_piece=compile_fn(locate_piece),
        shift_range=sr,
        write_images=compile_fn(_rebind(write_images, shift_range=sr)),
        stencil_bounds=compile_fn(stencil_bounds),
        activation=act,
        activation_curvature=compile_fn(_rebind(activation_curvature, tanh=tanh_fn or math.tanh,
                                                activation=act)),
        tangent_element=compile_fn(_rebind(tangent_element, activation=act)))


from .cpu.mathfn import tanh as _vector_tanh  # noqa: E402  (imports nothing of this module)

CPU = compile_math(cpu_inline, _vector_tanh)   # the copies that numdp.kernels.cpu inlines
