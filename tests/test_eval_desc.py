"""Descriptors out: `DeepPot.eval_descriptor` (DeePMD-kit's method) and `numdp eval-desc`
(DeePMD-kit's `dp eval-desc`), against the DeePMD-kit oracle's descriptor rows."""
import numpy as np
import pytest

from numdp.cli import main
from numdp.errors import InputError
from numdp.infer import DeepPot
from tests_util import write_system

TOL = 1e-10   # the oracle's tolerance (tests/test_oracle.py): DeePMD-kit's rows in its own double arithmetic


def rel_err(a, b):
    return np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max()


@pytest.fixture(scope="module")
def water(oracle_dir):
    return DeepPot(oracle_dir / "water.dp"), np.load(oracle_dir / "water_triclinic.npz")


def test_eval_descriptor_matches_the_oracle(water):
    dp, ref = water
    nf = ref["coord"].shape[0]
    d = dp.eval_descriptor(ref["coord"].reshape(nf, -1), ref["box"].reshape(nf, 9), ref["atype"])
    assert d.shape == (nf, len(ref["atype"]), 100 * 16) and d.dtype == np.float64
    assert rel_err(d[0][ref["descriptor_rows"]], ref["descriptor_frame0"]) <= TOL
    # every frame is its own evaluation: frame 1 equals a one-frame call on frame 1
    one = dp.eval_descriptor(ref["coord"][1], ref["box"][1], ref["atype"])
    assert one.shape == (1,) + d.shape[1:] and np.array_equal(one[0], d[1])
    single = dp.eval_descriptor(ref["coord"][:1], ref["box"][:1], ref["atype"], dtype="fp32")
    assert single.dtype == np.float32 and np.array_equal(single[0], d[0].astype(np.float32))


def test_eval_descriptor_errors(water):
    dp, ref = water
    with pytest.raises(InputError, match="dtype must be one of native, fp32, fp64"):
        dp.eval_descriptor(ref["coord"][0], ref["box"][0], ref["atype"], dtype="half")
    with pytest.raises(InputError, match=r"^DeepPot.eval_descriptor: fparam given"):
        dp.eval_descriptor(ref["coord"][0], ref["box"][0], ref["atype"], fparam=[1.0])
    with pytest.raises(InputError, match=r"^DeepPot.eval_descriptor: coords has shape"):
        dp.eval_descriptor(ref["coord"][0][:5], ref["box"][0], ref["atype"])


def test_eval_desc_command(tmp_path, oracle_dir, capsys):
    """One NAME.npy per system, equal to eval_descriptor frame by frame; a datafile; an
    existing file kept as #NAME.N#; two systems of one name refused before anything is written."""
    ref = np.load(oracle_dir / "water_triclinic.npz")
    cl = np.load(oracle_dir / "water_cluster.npz")
    s1 = write_system(tmp_path / "a" / "tri", ref["coord"], ref["box"], ref["atype"], ["O", "H"])
    s2 = write_system(tmp_path / "b" / "cluster", cl["coord"], None, cl["atype"], ["O", "H"])
    model = str(oracle_dir / "water.dp")
    out = tmp_path / "desc"
    assert main(["eval-desc", "-m", model, "-s", str(s1), str(s2), "-o", str(out)]) == 0
    dp = DeepPot(model)
    tri, clu = np.load(out / "tri.npy"), np.load(out / "cluster.npy")
    assert np.array_equal(tri, dp.eval_descriptor(ref["coord"], ref["box"], ref["atype"]))
    assert np.array_equal(clu, dp.eval_descriptor(cl["coord"], None, cl["atype"]))
    assert rel_err(tri[0][ref["descriptor_rows"]], ref["descriptor_frame0"]) <= TOL
    assert rel_err(clu[0][cl["descriptor_rows"]], cl["descriptor_frame0"]) <= TOL

    listing = tmp_path / "systems.txt"
    listing.write_text(f"{s2}\n\n")
    assert main(["eval-desc", "-m", model, "-f", str(listing), "-o", str(out), "--dtype", "fp32"]) == 0
    assert np.load(out / "cluster.npy").dtype == np.float32
    assert np.array_equal(np.load(out / "#cluster.npy.1#"), clu)
    assert "backed up" in capsys.readouterr().out

    twin = write_system(tmp_path / "c" / "tri", ref["coord"][:1], ref["box"][:1], ref["atype"], ["O", "H"])
    assert main(["eval-desc", "-m", model, "-s", str(s1), str(twin), "-o", str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "both be saved as" in err[0]
    assert not (tmp_path / "new").exists()


def test_system_names():
    from pathlib import Path

    from numdp.commands.eval_desc import system_name

    assert system_name(Path("data/water/data_3")) == "data_3"
    assert system_name(Path("data.h5#/alloy/frames")) == "frames"
    assert system_name(Path("run/data.h5#/")) == "data"
    assert system_name(Path(".")) == Path.cwd().name
