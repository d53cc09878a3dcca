"""Model compression (tables) and precision policies."""
import numpy as np
import pytest

import numdp
from numdp.cli import main
from numdp.errors import InputError
from numdp.io.model_file import read_model, write_model
from numdp.model.compress import compress
from numdp.model.dp_model import DPModel
from numdp.model.tables import build_table, evaluate_table, net_derivatives
from randmodel import random_config, random_params
from tests_util import U32, U64, fd_force, order_bound


@pytest.fixture(scope="module")
def water(oracle_dir):
    return read_model(oracle_dir / "water.dp"), np.load(oracle_dir / "water.npz")


@pytest.mark.parametrize("order,dx", [(5, 0.01), (3, 0.001)])
def test_compressed_forces_within_1e6_of_network(water, order, dx):
    params, ref = water
    cparams, report = compress(params, dx=dx, order=order)
    exact = DPModel(params, nthreads=2)
    model = DPModel(cparams, nthreads=2)
    for f in range(ref["coord"].shape[0]):
        a = exact.evaluate(ref["coord"][f], ref["atype"], ref["box"][f])
        b = model.evaluate(ref["coord"][f], ref["atype"], ref["box"][f])
        assert np.abs(b.forces - a.forces).max() <= 1e-6
        assert abs(b.energy - a.energy) <= 1e-6
    assert model.beyond_table == 0
    assert all(r["errors"]["between_grid"]["value_fine"] < 1e-9 for r in report)


def test_hermite_tables_match_values_and_slopes_at_nodes():
    params = random_params(ntypes=1, neuron=(3, 6, 12), resnet_dt=False, seed=2)
    net = params.descriptor.embeddings[0]
    errs = []
    for order in (3, 5):
        tab = build_table(net, -1.0, 3.0, 0.05, order)
        x = tab.nodes[:-1] + 1e-14
        v, d = evaluate_table(tab, x)
        yv, yd, _ = net_derivatives(net, x)
        assert np.abs(v - yv).max() < 1e-12 and np.abs(d - yd).max() < 1e-10
        # between nodes the interpolant is close and its error shrinks with the order
        xm = tab.nodes[:-1] + 0.5 * np.diff(tab.nodes)
        errs.append(np.abs(evaluate_table(tab, xm)[0] - net_derivatives(net, xm)[0]).max())
    assert errs[0] < 1e-4 and errs[1] < 1e-7 and errs[1] < errs[0] / 100


def test_compressed_model_forces_are_derivatives_and_roundtrip(tmp_path):
    params = random_params(ntypes=2, sel=[40, 40], neuron=(4, 8), axis_neuron=2,
                           type_one_side=True, resnet_dt=False, seed=9)
    params.min_nbor_dist = 0.9
    cparams, _ = compress(params, dx=0.01, order=5)
    write_model(cparams, tmp_path / "c.h5")
    model = numdp.load_model(tmp_path / "c.h5", nthreads=1)
    assert model.compressed
    pos, types, box = random_config(12, 2, box_len=6.0, tilt=0.3, seed=8)
    out = model.evaluate(pos, types, box)
    h = 1e-5
    for i, c in [(0, 0), (3, 1), (7, 2)]:
        assert abs(fd_force(model, pos, types, box, i, c, h) - out.forces[i, c]) < 1e-7
    exact = DPModel(params, nthreads=1).evaluate(pos, types, box)
    assert np.abs(exact.forces - out.forces).max() < 1e-8


def test_pairs_beyond_the_table_are_extrapolated_and_counted():
    params = random_params(ntypes=1, sel=[40], neuron=(4, 8), axis_neuron=2, resnet_dt=False, seed=3)
    params.min_nbor_dist = 1.5
    cparams, _ = compress(params, dx=0.01, order=3)
    # the extrapolation grid reaches 10x the data range; atoms far closer go beyond it
    model = DPModel(cparams, nthreads=1)
    pos = np.array([[0.0, 0, 0], [0.02, 0, 0], [2.0, 0, 0]])
    out = model.evaluate(pos, np.zeros(3, np.int32), None)
    assert np.isfinite(out.energy)
    assert model.beyond_table == 2
    ok = DPModel(cparams, nthreads=1)
    ok.evaluate(np.array([[0.0, 0, 0], [1.6, 0, 0]]), np.zeros(2, np.int32), None)
    assert ok.beyond_table == 0


def test_compress_cli(tmp_path, oracle_dir, capsys):
    out = tmp_path / "cmp"
    assert main(["compress", str(oracle_dir / "alloy5.dp"), "--order", "5", "-s", "0.02", "-o", str(out)]) == 0
    text = capsys.readouterr()
    assert "largest |table - net|" in text.out and (tmp_path / "cmp.h5").is_file()
    assert "warning" not in text.err
    # a step far too coarse for the nets still writes the model, with one warning line
    assert main(["compress", str(oracle_dir / "alloy5.dp"), "-s", "100", "-o", str(tmp_path / "coarse")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "-s 100 is too coarse" in err[0], err
    assert main(["test", "-m", str(tmp_path / "cmp.h5"), "-s", str(oracle_dir)]) == 2  # no systems there
    assert main(["compress", str(tmp_path / "cmp.h5")]) == 2
    assert "already compressed" in capsys.readouterr().err


def test_compress_takes_dp_compress_options(tmp_path, oracle_dir, capsys):
    """`dp compress -i MODEL -o OUT -s STEP -e EXTRAPOLATE -f FREQ -t INPUT` as DeePMD-kit users
    type it: -e sets how far the coarse grid reaches (xmax = e x upper, to its 10 dx step), -t
    takes the range of s from the input's training systems (the same tables as --data on them),
    the default output is MODEL_compressed with the input's format."""
    from numdp.io.model_file import read_model
    from tests_util import write_system

    ref = np.load(oracle_dir / "water.npz")
    write_system(tmp_path / "data" / "sys", ref["coord"], ref["box"], ref["atype"], ["O", "H"])
    script = tmp_path / "input.json"
    script.write_text('{"training": {"training_data": {"systems": ["data"]}}}')
    src = tmp_path / "water.dp"
    src.write_bytes((oracle_dir / "water.dp").read_bytes())
    assert main(["compress", "-i", str(src), "-s", "0.05", "-e", "5", "-f", "10", "-t", str(script)]) == 0
    assert main(["compress", str(src), "-o", str(tmp_path / "ref.h5"), "-s", "0.05",
                 "--data", str(tmp_path / "data")]) == 0
    five, ten = read_model(tmp_path / "water_compressed.dp"), read_model(tmp_path / "ref.h5")
    for a, b in zip(five.descriptor.tables, ten.descriptor.tables):
        assert a.lower == b.lower and a.upper == b.upper
        assert 5 * a.upper <= a.xmax < 5 * a.upper + 10 * 0.05 + 1e-12
        assert 10 * b.upper <= b.xmax < 10 * b.upper + 10 * 0.05 + 1e-12


def test_compress_output_is_checked_before_tabulating(tmp_path, oracle_dir, capsys, monkeypatch):
    """-o naming a directory was a ValueError traceback ('.' has an empty name); a bad suffix or a
    missing directory is refused before the tabulation, in one line; so are numdp compress's
    former -o ORDER and -s OUTPUT, which dp compress's -o OUTPUT and -s STEP replaced."""
    import numdp.model.compress as mc

    def never(*args, **kwargs):
        raise AssertionError("tabulated before the output was checked")

    monkeypatch.setattr(mc, "compress", never)
    monkeypatch.chdir(tmp_path)
    model = str(oracle_dir / "alloy5.dp")
    for argv, message in ((["-o", "."], "-o .: is a directory; name the output model file"),
                          (["-o", str(tmp_path)], f"-o {tmp_path}: is a directory"),
                          (["-o", "cmp.pb"], "cmp.pb: cannot choose a model format for suffix '.pb'"),
                          (["-o", "nodir/cmp.h5"], "nodir/cmp.h5: cannot write model file (directory nodir does not exist)"),
                          (["-o", "5"], "-o 5: -o names the output model (as dp compress -o); the polynomial order is --order 5"),
                          (["-s", "cmp_model"], "-s cmp_model: -s is the table step (as dp compress -s); name the output model with -o cmp_model"),
                          (["-s", "0"], "-s 0: the table step must be > 0"),
                          (["-e", "1"], "-e 1: the extrapolation factor must be > 1"),
                          (["-i", model], "give the model to compress once: as MODEL or as -i MODEL")):
        assert main(["compress", model, *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


# mix32: one float32 evaluation against float64, chains of n = nnei + D width + fitting widths
# (138 + 1600 + 720 for the water model) sums: 10 gamma_n relative to max|F| (half of
# order_bound, which compares two such evaluations) = 1.5e-3 (realized 1.1e-6).  mix16: the
# half-precision operands carry 2 u16 = 2^-10 relative error per product whatever the sum's
# length; through the two widest layers and a cancellation factor 10, 2e-2 (realized 1.5e-3).
@pytest.mark.parametrize("precision,tol", [("mix32", None), ("mix16", 2e-2)])
def test_precision_policies_stay_close_to_double(water, precision, tol):
    params, ref = water
    if tol is None:
        d = params.descriptor
        tol = order_bound(U32, d.nnei + d.dim_out + sum(params.fitting.nets[0].widths[1:])) / 2
    double = DPModel(params, nthreads=1).evaluate(ref["coord"][0], ref["atype"], ref["box"][0])
    low = DPModel(params, nthreads=1, precision=precision).evaluate(ref["coord"][0], ref["atype"], ref["box"][0])
    scale = np.abs(double.forces).max()
    err = np.abs(low.forces - double.forces).max() / scale
    assert 0 < err < tol
    assert low.forces.dtype == np.float64


def test_unknown_precision_is_an_input_error(water):
    with pytest.raises(InputError, match="precision 'half'"):
        DPModel(water[0], precision="half")


def test_compressed_dp_roundtrip_keeps_tables(tmp_path, water):
    """DeePMD-kit's compressed layout (descriptor v3, compress_data (nspline, 6M), compress_info)
    written by numdp and read back gives the same compressed model."""
    params, ref = water
    cparams, _ = compress(params, dx=0.02, order=3)
    write_model(cparams, tmp_path / "c.dp")
    back = read_model(tmp_path / "c.dp")
    assert back.descriptor.tables is not None
    a = DPModel(cparams, nthreads=1).evaluate(ref["coord"][0], ref["atype"], ref["box"][0])
    b = DPModel(back, nthreads=1).evaluate(ref["coord"][0], ref["atype"], ref["box"][0])
    assert np.abs(a.forces - b.forces).max() < 1e-12
    assert abs(a.energy - b.energy) < 1e-9


@pytest.mark.parametrize("order", [3, 5])
def test_forces_are_derivatives_inside_and_beyond_the_tables(order):
    """The grouped fast path (four pairs inside their tables), the single-pair path and linear
    extrapolation beyond the table all give forces equal to the energy's finite differences;
    mix32 tables stay within float32 round-off of the double ones.  M = 10 is padded to whole
    SIMD vectors (16 columns in both dtypes), so the zero padding is exercised too."""
    params = random_params(ntypes=2, sel=[30, 30], neuron=(4, 10), axis_neuron=2, resnet_dt=True, seed=5)
    params.min_nbor_dist = 2.4   # tables cover s for r >= 2.4 / 10-ish: the 0.15 A pair is beyond
    cparams, _ = compress(params, dx=0.01, order=order)
    pos, types, box = random_config(14, 2, box_len=6.5, tilt=0.2, seed=4)
    pos[1] = pos[0] + np.array([0.15, 0.0, 0.0])
    model = DPModel(cparams, nthreads=1, chunk=5)
    out = model.evaluate(pos, types, box)
    assert model.beyond_table > 0
    h = 1e-6
    for i, c in [(0, 0), (1, 0), (1, 2), (5, 1), (9, 2)]:
        fd = fd_force(model, pos, types, box, i, c, h)
        assert abs(fd - out.forces[i, c]) <= 1e-6 * max(1.0, abs(fd))
    low = DPModel(cparams, nthreads=1, precision="mix32").evaluate(pos, types, box)
    scale = np.abs(out.forces).max()
    assert np.abs(low.forces - out.forces).max() < 1e-5 * scale
    assert abs(low.energy - out.energy) < 1e-5 * abs(out.energy)


def test_s_max_from_data_systems(tmp_path):
    """--data measures the largest s = w(r)/r per centre type over every frame (brute force check)."""
    from numdp.kernels.cpu.envmat import switch
    from numdp.model.compress import s_max_from_systems
    from tests_util import write_system

    params = random_params(ntypes=2, sel=[30, 30], neuron=(4, 8), axis_neuron=2, rcut=4.0, rcut_smth=1.0)
    frames = [random_config(16, 2, box_len=6.0, seed=s) for s in (11, 12)]
    box = frames[0][2]
    types = frames[0][1]
    coords = np.stack([f[0] for f in frames])
    write_system(tmp_path / "sys", coords, np.stack([box, box]), types, params.type_map)
    got = s_max_from_systems(params, [tmp_path])
    want = np.zeros(2)
    inv = np.linalg.inv(box)
    for pos in coords:
        for i in range(len(types)):
            d = pos - pos[i]
            d -= np.round(d @ inv) @ box
            r = np.linalg.norm(d, axis=1)
            r = r[(r > 0) & (r < 4.0)]
            want[types[i]] = max(want[types[i]], switch(r.min(), 1.0, 4.0)[0] / r.min())
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_numdp_test_and_run_take_a_compressed_model_and_a_precision(tmp_path, oracle_dir, capsys):
    """`numdp test --precision` on a compressed model; `numdp run` reports pairs beyond the
    tables (a model whose training data had no atoms closer than 2.6 A, one pair at 0.4 A)."""
    import io
    import json

    from numdp.config import load_run_settings
    from numdp.io.structure import write_extxyz
    from numdp.md.setup import run_md
    from tests_util import write_system

    ref = np.load(oracle_dir / "water.npz")
    sysdir = write_system(tmp_path / "sys", ref["coord"], ref["box"], ref["atype"], ["O", "H"],
                          energy=ref["energy"], force=ref["force"])
    assert main(["compress", str(oracle_dir / "water.dp"), "--order", "5", "-o", str(tmp_path / "w")]) == 0
    figures = {}
    for precision in ("double", "mix32"):
        out = tmp_path / f"{precision}.json"
        assert main(["test", "-m", str(tmp_path / "w.h5"), "-s", str(sysdir), "--precision", precision,
                     "--json", str(out)]) == 0
        assert f"precision {precision}" in capsys.readouterr().out
        figures[precision] = json.loads(out.read_text())["overall"]["rmse_force"]
    assert figures["double"] < 1e-6 < figures["mix32"] < 1e-2   # force RMSE against DeePMD-kit's, meV/A

    params = random_params(ntypes=1, sel=[30], neuron=(4, 8), axis_neuron=2, seed=4)
    params.min_nbor_dist = 2.6
    write_model(compress(params, dx=0.01, order=3)[0], tmp_path / "far.h5")
    x = np.array([[i, j, k] for i in range(3) for j in range(3) for k in range(3)], float) * 2.5
    x[0] = x[1] - [0.0, 0.0, 0.4]   # one pair far closer than the training data had
    write_extxyz(tmp_path / "start.xyz", ["A"] * len(x), x, np.eye(3) * 7.5)
    (tmp_path / "md.toml").write_text(
        '[model]\nfile = "far.h5"\nprecision = "mix32"\n[system]\nfile = "start.xyz"\nmasses = { A = 20.0 }\n'
        '[md]\ntimestep = 0.0005\nsteps = 3\n[neighbor]\nskin = 0.5\n'
        '[output]\ncheckpoint_every = 0\nprogress = "none"\n[safety]\nmin_distance = 0.0\n')
    screen = io.StringIO()
    result = run_md(load_run_settings(tmp_path / "md.toml"), screen=screen)
    text = screen.getvalue()
    assert "compressed, precision mix32" in text
    # the close pair (both directions) in each of the 3 steps' force calls at least
    assert result.beyond_table >= 2 * 3
    assert f"Compressed model: {result.beyond_table} pair evaluations beyond its tables" in text


@pytest.mark.parametrize("type_one_side", [False, True])
def test_statistics_per_neighbour_block(type_one_side):
    """davg/dstd that differ between a centre type's neighbour-type blocks (numdp reads such
    models; DeePMD-kit's own are equal across blocks): each net's table spans its own block's
    normalised range.  Quintic pieces at dx 0.001 are exact to round-off, so the compressed
    model equals the network to the bound of two evaluations summing in another order; a table
    over another block's range leaves inputs outside it (linear continuation) and misses it by
    orders of magnitude."""
    params = random_params(ntypes=2, sel=[8, 12], neuron=(4, 8), axis_neuron=2, rcut=4.0, rcut_smth=1.0,
                           type_one_side=type_one_side, seed=5)
    d = params.descriptor
    rng = np.random.default_rng(1)
    for t in range(2):
        for j in range(2):
            blk = slice(d.sec[j], d.sec[j + 1])
            d.davg[t, blk, 0] = rng.uniform(-0.3, 0.6)
            d.dstd[t, blk, 0] = rng.uniform(0.1, 0.4)
    params.min_nbor_dist = 0.8
    cparams, _ = compress(params, dx=0.001, order=5)
    pos, types, box = random_config(12, 2, box_len=5.0, tilt=0.2, seed=4)
    a = DPModel(params, nthreads=1).evaluate(pos, types, box)
    b = DPModel(cparams, nthreads=1).evaluate(pos, types, box)
    n = d.nnei + d.dim_out + sum(params.fitting.nets[0].widths[1:])
    # relative to max(1 eV/Å, max|F|), as test_model_physics: the forces here are sums of larger
    # pair terms that cancel
    assert np.abs(a.forces - b.forces).max() <= order_bound(U64, n) * max(1.0, np.abs(a.forces).max())
