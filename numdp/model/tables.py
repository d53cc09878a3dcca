"""Tabulated embedding nets (model compression, reference §9).

Each embedding net x -> G(x) in R^M is replaced by piecewise polynomials in x (the normalised
radial entry): a fine grid of step h0 from `lower` to `upper` (the largest x seen in the training
data), then a grid of step h1 = 10 h0 up to `xmax` (about 10 x upper) for extrapolation.  Order 3
matches value and first derivative at both ends of every interval (cubic Hermite); order 5 also
matches the second derivative (quintic Hermite).  Beyond `xmax` (or below `lower`) the table
continues linearly with the value and slope at the end point; such inputs are counted and
reported by the evaluator.

Coefficients are stored per interval as (nint, order+1, M): coef[l, c, m] multiplies tau^c,
tau = x - node_l.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .activation import derivatives
from .params import Net


@dataclass
class Table:
    """One tabulated embedding net.

    lower, upper, xmax: grid bounds (upper = end of the fine grid); h0, h1: steps;
    n0: number of fine intervals; coef: (nint, order+1, M) float64.
    """

    lower: float
    upper: float
    xmax: float
    h0: float
    h1: float
    n0: int
    coef: np.ndarray

    @property
    def order(self) -> int:
        return self.coef.shape[1] - 1

    @property
    def nodes(self) -> np.ndarray:
        """(nint+1,) grid nodes."""
        n1 = self.coef.shape[0] - self.n0
        return np.concatenate([self.lower + self.h0 * np.arange(self.n0 + 1),
                               self.upper + self.h1 * np.arange(1, n1 + 1)])

    def meta(self) -> np.ndarray:
        """(6,) float64 [lower, upper, xmax, h0, h1, n0] for the kernels."""
        return np.array([self.lower, self.upper, self.xmax, self.h0, self.h1, self.n0], dtype=np.float64)


def net_derivatives(net: Net, x: np.ndarray):
    """Value, first and second derivative of a scalar-input net at x (n,): three (n, M) arrays."""
    y = x.reshape(-1, 1).astype(np.float64)
    d1 = np.ones_like(y)
    d2 = np.zeros_like(y)
    for lay in net.layers:
        z, z1, z2 = y @ lay.w + lay.b, d1 @ lay.w, d2 @ lay.w
        h, g, g2 = derivatives(lay.activation, z)
        h1 = g * z1
        h2 = g2 * z1 * z1 + g * z2
        if lay.idt is not None:
            h, h1, h2 = h * lay.idt, h1 * lay.idt, h2 * lay.idt
        mode = lay.residual
        if mode == 1:
            h, h1, h2 = h + y, h1 + d1, h2 + d2
        elif mode == 2:
            h = h + np.concatenate([y, y], axis=1)
            h1 = h1 + np.concatenate([d1, d1], axis=1)
            h2 = h2 + np.concatenate([d2, d2], axis=1)
        y, d1, d2 = h, h1, h2
    return y, d1, d2


def hermite_coefficients(nodes: np.ndarray, y, d1, d2, order: int) -> np.ndarray:
    """(nint, order+1, M) coefficients of the Hermite interpolant on consecutive nodes."""
    dx = np.diff(nodes)[:, None]
    y0, y1 = y[:-1], y[1:]
    p0, p1 = d1[:-1], d1[1:]
    h = y1 - y0
    if order == 3:
        c2 = (3.0 * h - (p1 + 2.0 * p0) * dx) / dx ** 2
        c3 = ((p1 + p0) * dx - 2.0 * h) / dx ** 3
        return np.stack([y0, p0, c2, c3], axis=1)
    if order == 5:
        q0, q1 = d2[:-1], d2[1:]
        c3 = (20.0 * h - (8.0 * p1 + 12.0 * p0) * dx - (3.0 * q0 - q1) * dx ** 2) / (2.0 * dx ** 3)
        c4 = (-30.0 * h + (14.0 * p1 + 16.0 * p0) * dx + (3.0 * q0 - 2.0 * q1) * dx ** 2) / (2.0 * dx ** 4)
        c5 = (12.0 * h - 6.0 * (p1 + p0) * dx + (q1 - q0) * dx ** 2) / (2.0 * dx ** 5)
        return np.stack([y0, p0, 0.5 * q0, c3, c4, c5], axis=1)
    raise ValueError(f"order must be 3 or 5, got {order}")


def build_table(net: Net, lower: float, upper: float, dx: float, order: int,
                extrapolate: float = 10.0) -> Table:
    """Tabulate `net` on [lower, upper) with step dx, then step 10 dx up to extrapolate*upper."""
    n0 = max(1, int(np.ceil((upper - lower) / dx - 1e-9)))
    up = lower + n0 * dx
    h1 = 10.0 * dx
    n1 = max(1, int(np.ceil((extrapolate * max(up, dx) - up) / h1 - 1e-9)))
    nodes = np.concatenate([lower + dx * np.arange(n0 + 1), up + h1 * np.arange(1, n1 + 1)])
    y, d1, d2 = net_derivatives(net, nodes)
    coef = hermite_coefficients(nodes, y, d1, d2, order)
    return Table(lower=float(lower), upper=float(up), xmax=float(nodes[-1]), h0=float(dx), h1=float(h1),
                 n0=int(n0), coef=coef)


def evaluate_table(table: Table, x: np.ndarray):
    """Reference (NumPy) evaluation of a table: value and slope (n, M) at x (n,), with the
    linear continuation outside [lower, xmax]."""
    x = np.asarray(x, dtype=np.float64)
    nint = table.coef.shape[0]
    xc = np.clip(x, table.lower, table.xmax)
    fine = xc < table.upper
    l = np.where(fine, np.floor((xc - table.lower) / table.h0),
                 table.n0 + np.floor((xc - table.upper) / table.h1)).astype(np.int64)
    l = np.clip(l, 0, nint - 1)
    node = np.where(l < table.n0, table.lower + l * table.h0, table.upper + (l - table.n0) * table.h1)
    tau = (xc - node)[:, None]
    c = table.coef[l]
    val = np.zeros((x.shape[0], c.shape[2]))
    for k in range(table.order, -1, -1):
        val = val * tau + c[:, k, :]
    der = np.zeros_like(val)
    for k in range(table.order, 0, -1):
        der = der * tau + k * c[:, k, :]
    val = val + der * (x - xc)[:, None]
    return val, der


def table_errors(net: Net, table: Table, samples_per_interval: int = 4) -> dict:
    """Largest |table - net| of value and slope on grid points and between them (fine grid and
    extrapolation grid), for `numdp compress` to report."""
    nodes = table.nodes
    frac = np.arange(samples_per_interval) / samples_per_interval
    between = (nodes[:-1, None] + np.diff(nodes)[:, None] * (frac[1:] if samples_per_interval > 1 else frac)).ravel()
    out = {}
    for name, x in (("on_grid", nodes), ("between_grid", between)):
        yv, yd, _ = net_derivatives(net, x)
        tv, td = evaluate_table(table, x)
        fine = x < table.upper
        out[name] = {"value_fine": float(np.abs(tv - yv)[fine].max(initial=0.0)),
                     "value_extrapolation": float(np.abs(tv - yv)[~fine].max(initial=0.0)),
                     "slope_fine": float(np.abs(td - yd)[fine].max(initial=0.0))}
    return out
