"""Tests for the survivors of the eighteenth round of mutation testing (model compression: the
table's range from the environment statistics, the two grids, what a compressed model stores):
each fails on one plausible mistake that the rest of the suite let through (the mutant is named in
the test's docstring; 2026-12-07).  Small random models and the oracle water model only.
"""
from __future__ import annotations

import copy

import numpy as np

from numdp.io.dp_write import dp_tree
from numdp.io.model_file import read_model
from numdp.model.compress import compress, s_max_from_params
from numdp.model.tables import build_table
from randmodel import random_params


def _small(type_one_side: bool, seed: int = 3):
    """A two-type model whose centre types have different radial statistics (randmodel draws
    davg, dstd per centre type)."""
    return random_params(ntypes=2, sel=[6, 6], neuron=(4, 8), axis_neuron=2, fitting=(8,),
                         seed=seed, type_one_side=type_one_side)


def test_grids_follow_deepmd_kits_layout():
    """Reference §9.2's example: lower -1, upper 9, step 0.01, extrapolate 5 gives n0 = 1000 fine
    intervals, then step h1 = 10 h0 = 0.1 up to e x upper = 45: 360 coarse ones, 1360 in all.
    Mutant: the coarse grid with stride h0 instead of 10 h0 (every table 10x as long on [upper,
    xmax], and a `.dp` table DeePMD-kit reads as the convention's h1 = 10 step no longer)."""
    net = _small(True).descriptor.embeddings[0]
    tab = build_table(net, -1.0, 9.0, 0.01, 5, 5.0)
    assert tab.n0 == 1000
    assert tab.h1 == 10.0 * tab.h0
    assert tab.coef.shape[0] == 1360
    assert abs(tab.xmax - 45.0) < 1e-9   # 9 + 360 x 0.1, a few ulps of rounding


def test_type_one_side_table_reaches_every_centre_types_data():
    """A type_one_side net is fed by every centre type: its fine grid must reach the largest
    x = (s_max(t) - mu(t)) / sigma(t) over all of them (reference §9.2: 'the min/max run over all
    center types'), and end within one step of it.  Mutant: the min over centre types (the data
    of the other type then falls on the 10x coarser grid)."""
    p = _small(True)
    smax = np.array([1.0, 1.0])
    mu, sd = p.descriptor.block_stats()
    cp, _ = compress(p, dx=0.01, order=3, s_max=smax)
    for nbr, tab in enumerate(cp.descriptor.tables):
        x = (smax - mu[:, nbr, 0]) / sd[:, nbr, 0]
        assert x[0] != x[1]
        # upper = lower + n0 dx with n0 the ceiling of the span: in [max x, max x + dx), up to the
        # ulps of the sum (|x| < 20: 1e-12 is ~ 300 ulps)
        assert x.max() - 1e-12 <= tab.upper < x.max() + 0.01 + 1e-12


def test_stored_training_range_gives_the_upper_end():
    """A model trained by numdp stores s_range (ntypes, 2) = [smallest, largest] raw s seen per
    centre type; the table must reach the largest (it is the closest pair).  Mutant: the smallest
    s taken (the tables then cover hardly any of the data's x on the fine grid)."""
    p = _small(False)
    p.s_range = np.array([[0.05, 1.1], [0.02, 0.9]])
    assert np.array_equal(s_max_from_params(p), [1.1, 0.9])
    mu, sd = p.descriptor.block_stats()
    cp, _ = compress(p, dx=0.01, order=3)
    for k, tab in enumerate(cp.descriptor.tables):
        centre, nbr = k % 2, k // 2
        x = (p.s_range[centre, 1] - mu[centre, nbr, 0]) / sd[centre, nbr, 0]
        assert x - 1e-12 <= tab.upper < x + 0.01 + 1e-12


def test_dp_compress_info_gives_deepmd_kits_count(oracle_dir):
    """DeePMD-kit's lookup (reference §9.5) takes n0 = int((upper - lower) / h0) from
    compress_info; it has no numdp fallback for an `upper` a few ulps short.  The info written
    for tables of an earlier numdp (upper = lower + n0 h0 as computed, which for the oracle water
    model's nets 1 and 3 gives a quotient 877.999...) must give n0 by that formula alone.
    Mutant: compress_info's upper written as the table's (numdp's own reader, which adds the
    missing interval back, hid it)."""
    water = read_model(oracle_dir / "water.dp")
    cparams, _ = compress(water, dx=0.01, order=5, extrapolate=5)
    old = copy.deepcopy(cparams)
    for tab in old.descriptor.tables:
        tab.upper = tab.lower + tab.n0 * tab.h0
    assert any(int((t.upper - t.lower) / t.h0) != t.n0 for t in old.descriptor.tables)
    info = dp_tree(old)["model"]["descriptor"]["compress"]["@variables"]["compress_info"]
    for tab, row in zip(old.descriptor.tables, info):
        lower, upper, xmax, h0, h1 = (float(v) for v in np.ravel(row)[:5])
        assert int((upper - lower) / h0) == tab.n0
        assert (lower, xmax, h0, h1) == (tab.lower, tab.xmax, tab.h0, tab.h1)


def test_second_derivative_through_an_identity_shortcut():
    """The order-5 pieces match the net's second derivative, propagated forward (reference §9.3:
    'the residual adds y, y', y''').  With equal widths (8, 8) the second layer has the identity
    shortcut (DeePMD-kit's resnet), whose y'' is the first layer's, not 0.  Check against central
    differences of the analytic slope: error ~ h^2 |y''''| / 6 + eps |y'| / h; h = 1e-4 and
    O(1) derivatives of a tanh net give < 1e-8 + 1e-12; 1e-6 leaves a margin.  Mutant: the
    shortcut adds y and y' but not y'' (a wrong quintic second-derivative match on every node of
    such a model)."""
    from numdp.model.tables import net_derivatives

    p = random_params(ntypes=1, sel=[4], neuron=(8, 8), axis_neuron=2, fitting=(8,), seed=5,
                      resnet_dt=False)
    net = p.descriptor.embeddings[0]
    assert any(lay.residual == 1 for lay in net.layers)
    x = np.linspace(-1.0, 3.0, 9)
    h = 1e-4
    _, d1p, _ = net_derivatives(net, x + h)
    _, d1m, _ = net_derivatives(net, x - h)
    _, _, d2 = net_derivatives(net, x)
    assert np.abs(d2).max() > 1e-2   # y'' is not trivially 0 here
    np.testing.assert_allclose(d2, (d1p - d1m) / (2 * h), atol=1e-6, rtol=0)


def _write_small_model(tmp_path, s_range):
    from numdp.io.model_file import write_model

    p = _small(False)
    p.s_range = np.asarray(s_range, dtype=np.float64)
    write_model(p, tmp_path / "m.h5")
    return p


def test_cli_order_reaches_the_tables(tmp_path):
    """`numdp compress --order 5` writes quintic tables (6 coefficients per interval); the default
    is cubic.  Mutant: --order parsed but order 3 always passed on."""
    from numdp.cli import main

    _write_small_model(tmp_path, [[0.0, 0.8], [0.0, 0.8]])
    for order, argv in ((5, ["--order", "5"]), (3, [])):
        out = tmp_path / f"c{order}.h5"
        assert main(["compress", str(tmp_path / "m.h5"), *argv, "-s", "0.05", "-o", str(out)]) == 0
        assert {t.order for t in read_model(out).descriptor.tables} == {order}


def test_cli_data_gives_the_range(tmp_path):
    """`numdp compress --data SYSTEM`: the range of s comes from the systems, not from the range
    stored in the model.  One frame, two atoms (types 0, 1) 1.2 A apart in a 20 A box: each
    centre type's largest s is w(1.2)/1.2 (reference §2, the smooth switch between rcut_smth 1 and
    rcut 4), and net k = centre + 2 neighbour's table ends within one step above
    (s - mu) / sigma.  The model's own range (0.3) is far below.  Mutant: --data (and -t) read but
    the model's stored range used."""
    from numdp.cli import main
    from numdp.kernels.cpu.envmat import switch
    from tests_util import write_system

    p = _write_small_model(tmp_path, [[0.0, 0.3], [0.0, 0.3]])
    coords = np.array([[[5.0, 5.0, 5.0], [6.2, 5.0, 5.0]]])
    box = np.eye(3)[None] * 20.0
    write_system(tmp_path / "sys", coords, box, np.array([0, 1]), p.type_map)
    assert main(["compress", str(tmp_path / "m.h5"), "-s", "0.05", "--data", str(tmp_path / "sys"),
                 "-o", str(tmp_path / "c.h5")]) == 0
    s = switch(1.2, 1.0, 4.0)[0] / 1.2
    mu, sd = p.descriptor.block_stats()
    for k, tab in enumerate(read_model(tmp_path / "c.h5").descriptor.tables):
        centre, nbr = k % 2, k // 2
        x = (s - mu[centre, nbr, 0]) / sd[centre, nbr, 0]
        assert x - 1e-12 <= tab.upper < x + 0.05 + 1e-12


def test_compression_settings_are_stored(tmp_path):
    """The `.h5` format's tables attrs order, dx, extrapolate (numdp.io.h5_model's docstring) are
    the settings the tables were built with.  Mutant: the order recorded as 3 whatever was asked."""
    import h5py

    from numdp.io.model_file import write_model

    p = _small(False)
    cp, _ = compress(p, dx=0.05, order=5, s_max=[0.8, 0.8], extrapolate=4.0)
    assert cp.info["compression"] == {"order": 5, "dx": 0.05, "extrapolate": 4.0}
    write_model(cp, tmp_path / "c.h5")
    with h5py.File(tmp_path / "c.h5", "r") as f:
        attrs = dict(f["descriptor/tables"].attrs)
    assert (int(attrs["order"]), float(attrs["dx"]), float(attrs["extrapolate"])) == (5, 0.05, 4.0)
