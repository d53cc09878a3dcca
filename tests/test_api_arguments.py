"""Arguments of the Python API and of `numdp change-bias` that used to be taken silently:
misspelled keywords of the ASE calculators, thread counts that were rounded or replaced, and
bias values that made a model no reader loads."""
from pathlib import Path

import numpy as np
import pytest

import numdp
from numdp.ase import ASE_KEYWORDS, DP, DPCalculator
from numdp.cli import main as cli_main
from numdp.errors import InputError
from numdp.infer import DeepPot
from numdp.io.model_file import read_model

ROOT = Path(__file__).resolve().parents[1]
CU = ROOT / "inputs" / "cu" / "model.h5"
WATER = ROOT / "inputs" / "water" / "model.h5"


def _one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg, msg
    return msg


# ---------------------------------------------------------------- ASE calculators


@pytest.mark.parametrize("cls", [DPCalculator, DP])
def test_calculators_refuse_unknown_keywords(cls):
    """Before: precison='mix32' was stored as an ASE parameter and the model ran in double."""
    name = cls.__name__
    with pytest.raises(InputError) as ei:
        cls(CU, precison="mix32")
    assert _one_line(ei).startswith(f"{name}: unknown keyword argument 'precison' (numdp's: model, ")
    calc = cls(CU, threads=1)
    assert calc.parameters == {}
    with pytest.raises(InputError, match=rf"^{name}\.set: unknown keyword argument 'precision'"):
        calc.set(precision="mix32")
    assert calc.set() == {} and calc.model.precision == "double"


@pytest.mark.parametrize("cls", [DPCalculator, DP])
def test_calculators_keep_ase_keywords(cls, tmp_path):
    """ASE's own Calculator keywords still reach it: label, directory, atoms."""
    from ase.build import bulk

    assert {"label", "atoms", "directory", "restart"} <= set(ASE_KEYWORDS)
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    calc = cls(CU, threads=1, label="run", directory=str(tmp_path), atoms=atoms)
    assert atoms.calc is calc and calc.label == f"{tmp_path}/run"
    assert np.isfinite(atoms.get_potential_energy())


def test_calculators_precision_keyword_is_taken():
    assert DPCalculator(CU, precision="mix32", threads=1).model.precision == "mix32"
    assert DP(CU, precision="mix32", threads=1).model.precision == "mix32"


# ---------------------------------------------------------------- thread counts

BAD_THREADS = [0, -3, 2.5, True, "2", np.float64(2.0)]


@pytest.mark.parametrize("bad", BAD_THREADS, ids=repr)
def test_load_model_refuses_bad_nthreads(bad):
    """Before: 0 ran 2 threads (numdp's default), -3 one, 2.5 two."""
    with pytest.raises(InputError) as ei:
        numdp.load_model(CU, nthreads=bad)
    assert _one_line(ei) == f"nthreads: expected a whole number of worker threads >= 1, got {bad!r}"


@pytest.mark.parametrize("bad", [0, 2.5], ids=repr)
def test_the_model_class_refuses_bad_nthreads(bad):
    """DPModel itself (numdp.model.dp_model, what every entry point builds) checks too."""
    from numdp.model.dp_model import DPModel

    with pytest.raises(InputError, match="nthreads: expected a whole number of worker threads >= 1"):
        DPModel(numdp.load_model(CU, nthreads=1).source_params, nthreads=bad)


@pytest.mark.parametrize("bad", [0, 2.5], ids=repr)
def test_deeppot_and_calculators_refuse_bad_threads(bad):
    for make, who in ((lambda: DeepPot(CU, threads=bad), "DeepPot"),
                      (lambda: DPCalculator(CU, threads=bad), "DPCalculator"),
                      (lambda: DP(CU, threads=bad), "DP")):
        with pytest.raises(InputError) as ei:
            make()
        assert _one_line(ei).startswith(f"{who}: threads: expected a whole number of worker threads >= 1")


def test_good_thread_counts_are_used():
    assert numdp.load_model(CU, nthreads=1).nthreads == 1
    assert numdp.load_model(CU, nthreads=np.int64(3)).nthreads == 3
    assert DeepPot(CU, threads=3).model.nthreads == 3
    assert DPCalculator(CU, threads=3).model.nthreads == 3


# ---------------------------------------------------------------- numdp change-bias


@pytest.mark.parametrize("value", ["nan", "inf", "1e400"])
def test_change_bias_refuses_non_finite_values(tmp_path, capsys, value):
    """Before: `-b nan 1.0` wrote a model that every reader refuses, and exited 0."""
    out = tmp_path / "out.h5"
    assert cli_main(["change-bias", str(WATER), "-b", value, "1.0", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"numdp change-bias: error: -b {float(value)}: out_bias values must be finite numbers (eV)"
    assert not out.exists()


def test_change_bias_given_values_still_written(tmp_path):
    out = tmp_path / "out.h5"
    assert cli_main(["change-bias", str(WATER), "-b", "-93.5", "1e3", "-o", str(out)]) == 0
    assert read_model(out).out_bias.tolist() == [-93.5, 1000.0]


def test_change_bias_refuses_negative_seed(tmp_path, capsys):
    """Before: numpy's "expected non-negative integer" traceback once the frames were drawn."""
    assert cli_main(["change-bias", str(WATER), "-s", str(tmp_path), "--seed", "-1", "-n", "1",
                     "-o", str(tmp_path / "out.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "numdp change-bias: error: --seed -1: the seed of the frame draw must be >= 0"
