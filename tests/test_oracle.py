"""Every DeePMD-kit oracle case reproduced to relative error <= 1e-10 (../shared/oracle)."""
import numpy as np
import pytest

import numdp
from tests_util import U64, order_bound

CASES = [("water.dp", "water.npz"), ("water.dp", "water_triclinic.npz"),
         ("water.dp", "water_cluster.npz"), ("alloy5.dp", "alloy5.npz")]
TOL = 1e-10


def rel_err(a, b):
    return np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max()


@pytest.fixture(scope="module")
def models(oracle_dir):
    return {name: numdp.load_model(oracle_dir / name) for name in ("water.dp", "alloy5.dp")}


@pytest.mark.parametrize("model_name,case", CASES)
@pytest.mark.parametrize("nthreads", [1, 2])
def test_oracle_case(models, oracle_dir, model_name, case, nthreads):
    model = models[model_name]
    model._ev.nthreads = nthreads
    ref = np.load(oracle_dir / case)
    for f in range(ref["coord"].shape[0]):
        box = ref["box"][f] if "box" in ref else None
        out = model.evaluate(ref["coord"][f], ref["atype"], box)
        assert rel_err(out.energy, ref["energy"][f]) <= TOL
        assert rel_err(out.atom_energies, ref["atom_energy"][f]) <= TOL
        assert rel_err(out.forces, ref["force"][f]) <= TOL
        assert rel_err(out.virial, ref["virial"][f]) <= TOL
        assert rel_err(out.atom_virials, ref["atom_virial"][f]) <= TOL
    box = ref["box"][0] if "box" in ref else None
    desc = model.descriptor(ref["coord"][0], ref["atype"], box)
    assert rel_err(desc[ref["descriptor_rows"]], ref["descriptor_frame0"]) <= TOL


def test_model_attributes(models):
    assert models["water.dp"].type_map == ["O", "H"]
    assert models["water.dp"].rcut == 6.0
    assert models["alloy5.dp"].type_map == ["Ni", "Cu", "Pd", "Ag", "Au"]


def test_small_chunks_and_threads_agree(oracle_dir):
    """Chunking and worker threads change only the summation order."""
    ref = np.load(oracle_dir / "water.npz")
    a = numdp.model.dp_model.DPModel(numdp.io.model_file.read_model(oracle_dir / "water.dp"),
                                     nthreads=1, chunk=1000)
    b = numdp.model.dp_model.DPModel(a.params, nthreads=3, chunk=7)
    oa = a.evaluate(ref["coord"][0], ref["atype"], ref["box"][0])
    ob = b.evaluate(ref["coord"][0], ref["atype"], ref["box"][0])
    # longest chain of sums: the neighbours (nnei), the first fitting layer's inputs (the width
    # of D) and the energy's sum over atoms; GEMMs on 7 rows block differently from 1000 rows
    d = a.params.descriptor
    n = d.nnei + d.dim_out + len(ref["atype"])
    assert rel_err(ob.forces, oa.forces) < order_bound(U64, n)
    assert rel_err(ob.energy, oa.energy) < order_bound(U64, n)
