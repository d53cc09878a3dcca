"""Compression sweep: the `.dp` layout's fine-interval count, and users' mistakes in the step,
the extrapolation factor and the model's training range (one line, exit 2, no traceback)."""
import copy

import numpy as np
import pytest

from numdp.cli import main
from numdp.io.dp_write import write_dp
from numdp.io.model_file import read_model, write_model
from numdp.model.compress import compress
from numdp.model.dp_model import DPModel
from numdp.model.tables import evaluate_table


@pytest.fixture(scope="module")
def water(oracle_dir):
    return read_model(oracle_dir / "water.dp")


def _coarse_points(tab):
    """Inputs x in the first coarse intervals of a table (where a wrong n0 picks a wrong piece)."""
    return tab.upper + tab.h1 * np.array([0.05, 0.5, 0.95, 1.5, 2.5])


def test_dp_tables_give_back_their_fine_interval_count(tmp_path, water):
    """DeePMD-kit's `.dp` layout stores no n0: its readers (DeePMD-kit's tabulate_fusion and
    numdp's) take int((upper - lower) / h0).  The oracle water model's nets 1 and 3 at the
    default step have upper = lower + 878 h0 with that quotient 877.99999..., so they read back
    with n0 = 877 and every x on the coarse grid was evaluated on the piece before its own (a fine
    quintic 10 h0 beyond its interval: 6e-3 eV, 2e-2 eV/A on a pair at 0.6 A).  Read back, the
    tables must be the written ones: same n0, and the same value on the coarse grid up to the
    ulps by which `upper` may move (|slope| x 8 ulp(upper) < 1e-12 for these nets)."""
    cparams, _ = compress(water, dx=0.01, order=5, extrapolate=5)
    write_model(cparams, tmp_path / "c.dp")
    back = read_model(tmp_path / "c.dp")
    for a, b in zip(cparams.descriptor.tables, back.descriptor.tables):
        assert b.n0 == a.n0 == int((a.upper - a.lower) / a.h0)
        x = _coarse_points(a)
        assert np.abs(evaluate_table(b, x)[0] - evaluate_table(a, x)[0]).max() < 1e-12


def test_tables_of_earlier_versions_are_written_with_their_count(tmp_path, water):
    """A compressed model from an earlier numdp (an `.h5` whose tables have upper = lower + n0 h0
    as computed, with n0 stored beside) converted to `.dp`: compress_info's upper is moved by
    the ulps that make the readers' quotient give n0."""
    cparams, _ = compress(water, dx=0.01, order=5, extrapolate=5)
    old = copy.deepcopy(cparams)
    for tab in old.descriptor.tables:
        tab.upper = tab.lower + tab.n0 * tab.h0   # as build_table computes it
    assert any(int((t.upper - t.lower) / t.h0) != t.n0 for t in old.descriptor.tables)
    write_dp(old, tmp_path / "old.dp")
    back = read_model(tmp_path / "old.dp")
    assert [t.n0 for t in back.descriptor.tables] == [t.n0 for t in old.descriptor.tables]


def test_a_pair_on_the_coarse_grid_of_a_dp_model(tmp_path, oracle_dir, water):
    """numdp compress -o X.dp, a pair closer than the training data (H-H at 0.6 A, on net 3's
    coarse grid): the `.dp` model gives the uncompressed forces within the docs' 1e-6 eV/A."""
    z = np.load(oracle_dir / "water_cluster.npz")
    pos, types = z["coord"][0].copy(), z["atype"]
    h = np.flatnonzero(types == 1)
    pos[h[0]] = pos[h[1]] + np.array([0.6, 0.0, 0.0])
    assert main(["compress", str(oracle_dir / "water.dp"), "-e", "5", "--order", "5",
                 "-o", str(tmp_path / "c.dp")]) == 0
    exact = DPModel(water, nthreads=1).evaluate(pos, types, None)
    model = DPModel(read_model(tmp_path / "c.dp"), nthreads=1)
    got = model.evaluate(pos, types, None)
    assert model.beyond_table == 0
    assert np.abs(got.forces - exact.forces).max() <= 1e-6
    assert abs(got.energy - exact.energy) <= 1e-6


@pytest.mark.parametrize("argv,message", [
    (["-s", "inf"], "-s inf: the table step must be > 0 and finite"),
    (["-e", "inf"], "-e inf: the extrapolation factor must be > 1 and finite"),
    (["-s", "1e-300"], "step 1e-300, extrapolate 10: the tables would need"),
    (["-e", "1e300"], "step 0.01, extrapolate 1e+300: the tables would need"),
])
def test_impossible_step_or_extrapolation_is_one_line(tmp_path, oracle_dir, capsys, argv, message):
    """A step or extrapolation factor that is infinite, or that makes tables larger than any
    memory, was a ValueError / numpy allocation traceback; now one line, exit 2, and an existing
    output is left as it was."""
    out = tmp_path / "c.h5"
    out.write_bytes(b"keep")
    assert main(["compress", str(oracle_dir / "alloy5.dp"), "-o", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert out.read_bytes() == b"keep"


@pytest.mark.parametrize("value,message", [
    (float("nan"), "min_nbor_dist (dataset"),
    (float("inf"), "min_nbor_dist (dataset"),
    (-0.5, "min_nbor_dist -0.5 A is no range for the tables (it must be > 0 and < rcut 6 A)"),
    (7.0, "min_nbor_dist 7 A is no range for the tables"),
    (1e-9, "the tables would need"),
])
def test_odd_min_nbor_dist_is_one_line(tmp_path, capsys, water, value, message, monkeypatch):
    """The range of s from a model's min_nbor_dist: NaN was a ValueError traceback, 1e-9 a
    numpy allocation traceback, and a negative distance, one beyond rcut or inf silently gave
    tables spanning only the padding value (every real pair then extrapolated; inf even wrote an
    .h5 that numdp refuses to read).  Now one line naming the model, exit 2.  (numdp's writers
    refuse a non-finite min_nbor_dist: such a file is written here past that check.)"""
    from numdp.model.params import ModelParams

    params = copy.deepcopy(water)
    params.min_nbor_dist = value
    with monkeypatch.context() as m:
        m.setattr(ModelParams, "validate", lambda self, source="model": None)
        write_dp(params, tmp_path / "odd.dp")
    assert main(["compress", str(tmp_path / "odd.dp"), "-o", str(tmp_path / "c.h5")]) == 2
    err = capsys.readouterr().err
    assert message in err and str(tmp_path / "odd.dp") in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "c.h5").exists()


def test_dp_files_of_earlier_versions_read_with_their_count(tmp_path, water, monkeypatch):
    """A `.dp` that numdp wrote before compress_info's upper was moved (upper a few ulps short of
    lower + n0 h0) is read with its n0: the coarse-grid rows one more than DeePMD-kit's quotient
    allows for identify it, and the tables evaluate as written."""
    import numdp.model.compress as mc

    cparams, _ = compress(water, dx=0.01, order=5, extrapolate=5)
    for tab in cparams.descriptor.tables:
        tab.upper = tab.lower + tab.n0 * tab.h0   # as build_table computes it
    monkeypatch.setattr(mc, "dp_upper", lambda lower, upper, h0, n0: upper)   # the earlier writer
    write_dp(cparams, tmp_path / "old.dp")
    back = read_model(tmp_path / "old.dp")
    for a, b in zip(cparams.descriptor.tables, back.descriptor.tables):
        assert b.n0 == a.n0
        x = _coarse_points(a)
        assert np.abs(evaluate_table(b, x)[0] - evaluate_table(a, x)[0]).max() == 0.0


@pytest.mark.parametrize("suffix", [".dp", ".h5"])
def test_writers_refuse_a_non_finite_min_nbor_dist(tmp_path, water, suffix):
    """A non-finite min_nbor_dist (which the readers refuse as a damaged file) is not written:
    `numdp convert` of such a model wrote an .h5 numdp could not read back."""
    from numdp.errors import InputError

    params = copy.deepcopy(water)
    params.min_nbor_dist = float("inf")
    with pytest.raises(InputError, match="min_nbor_dist: must be a finite distance in Angstrom, got inf"):
        write_model(params, tmp_path / f"m{suffix}")
    assert not (tmp_path / f"m{suffix}").exists()
