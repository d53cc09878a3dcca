"""numdp as a dpdata driver (numdp/dpdata_driver.py): `System.predict(model, driver="numdp")`
reproduces the DeePMD-kit oracle and `DPModel.evaluate` bit for bit, maps elements by name, is
found through the `dpdata.plugins` entry point, and its labels round-trip through deepmd/npy into
`numdp test` with zero error."""
import json
import subprocess
import sys
from pathlib import Path

import dpdata
import numpy as np
import pytest

import numdp
from numdp.cli import main
from numdp.errors import InputError
from test_oracle import TOL, rel_err   # the oracle tolerance: relative error <= 1e-10


def make_system(ref, atom_names=("O", "H"), atom_types=None, nopbc=False):
    """A dpdata System of the oracle frames in `ref`; atom_types index atom_names (default: the
    oracle's own types, which index the model's type_map ["O", "H"])."""
    types = np.asarray(ref["atype"] if atom_types is None else atom_types, dtype=int)
    nf = ref["coord"].shape[0]
    data = {
        "atom_names": list(atom_names),
        "atom_numbs": [int((types == i).sum()) for i in range(len(atom_names))],
        "atom_types": types,
        "orig": np.zeros(3),
        "coords": np.array(ref["coord"]),
        # dpdata keeps a cell even for a non-periodic system; the driver must not use it
        "cells": np.zeros((nf, 3, 3)) if nopbc else np.array(ref["box"]),
    }
    if nopbc:
        data["nopbc"] = True
    return dpdata.System(data=data)


@pytest.fixture(scope="module")
def water(oracle_dir):
    return np.load(oracle_dir / "water.npz")


@pytest.fixture(scope="module")
def water_labeled(oracle_dir, water):
    return make_system(water).predict(str(oracle_dir / "water.dp"), driver="numdp")


def test_predict_matches_oracle_and_evaluate(oracle_dir, water, water_labeled):
    ls = water_labeled
    assert isinstance(ls, dpdata.LabeledSystem) and ls.get_nframes() == 3
    assert rel_err(ls["energies"], water["energy"]) <= TOL
    assert rel_err(ls["forces"], water["force"]) <= TOL
    assert rel_err(ls["virials"], water["virial"]) <= TOL   # dpdata stores DeePMD-kit's sign
    model = numdp.load_model(oracle_dir / "water.dp")
    for f in range(3):
        out = model.evaluate(water["coord"][f], water["atype"], water["box"][f], atom_virial=False)
        assert ls["energies"][f] == out.energy
        assert np.array_equal(ls["forces"][f], out.forces)
        assert np.array_equal(ls["virials"][f], out.virial)
    assert np.array_equal(ls["coords"], water["coord"])


def test_triclinic_and_alloy_match_oracle(oracle_dir):
    """A general 3x3 cell (water_triclinic) and a five-element type_map (alloy5)."""
    for model_name, case, names in (("water.dp", "water_triclinic.npz", ("O", "H")),
                                    ("alloy5.dp", "alloy5.npz", ("Ni", "Cu", "Pd", "Ag", "Au"))):
        ref = np.load(oracle_dir / case)
        ls = make_system(ref, names).predict(str(oracle_dir / model_name), driver="numdp")
        assert rel_err(ls["energies"], ref["energy"]) <= TOL
        assert rel_err(ls["forces"], ref["force"]) <= TOL
        assert rel_err(ls["virials"], ref["virial"]) <= TOL


@pytest.mark.parametrize("suffix", [".h5", ".pt", ".pth"])
def test_every_model_file_kind(tmp_path, suffix):
    """numdp .h5 (converted from the .dp), DeePMD-kit .pt and .pth give the labels of the .dp
    bit for bit (numdp reads the same parameters: tests/test_pth_models.py, test_model_file.py)."""
    data = Path(__file__).parent / "data" / "pytorch"
    ref = np.load(data / "se_a_one_side_f64.npz")
    frame = {"coord": ref["coord"][None], "box": ref["box"][None], "atype": ref["atype"]}
    system = make_system(frame, [str(t) for t in ref["type_map"]])
    dp = data / "se_a_one_side_f64.dp"
    if suffix == ".h5":
        model = tmp_path / "m.h5"
        assert main(["convert", str(dp), str(model)]) == 0
    else:
        model = data / f"se_a_one_side_f64{suffix}"
    got = system.predict(str(model), driver="numdp")
    want = system.predict(str(dp), driver="numdp")
    for key in ("energies", "forces", "virials"):
        assert np.array_equal(got[key], want[key]), key
    assert rel_err(got["energies"][0], ref["energy"]) <= TOL   # DeePMD-kit's own evaluation


def test_element_order_of_system_does_not_matter(oracle_dir, water, water_labeled):
    """atom_names ["H", "O"] (the reverse of the type_map) give the same labels, bit for bit."""
    swapped = make_system(water, ("H", "O"), 1 - water["atype"])
    ls = swapped.predict(str(oracle_dir / "water.dp"), driver="numdp")
    assert ls["atom_names"] == ["H", "O"]
    for key in ("energies", "forces", "virials"):
        assert np.array_equal(ls[key], water_labeled[key]), key


def test_unused_unknown_element_is_accepted(oracle_dir, water, water_labeled):
    """A name with no atoms (what MultiSystems gives every system) need not be in the type_map."""
    ls = make_system(water, ("O", "H", "C")).predict(str(oracle_dir / "water.dp"), driver="numdp")
    assert np.array_equal(ls["energies"], water_labeled["energies"])


def test_missing_element_is_one_line_error(oracle_dir, water):
    types = np.array(water["atype"])
    types[5] = 2
    system = make_system(water, ("O", "H", "C"), types)
    with pytest.raises(InputError) as exc:
        system.predict(str(oracle_dir / "water.dp"), driver="numdp")
    msg = str(exc.value)
    assert "\n" not in msg and "'C'" in msg and "['O', 'H']" in msg


def test_nopbc_cluster(oracle_dir, tmp_path, capsys):
    """No box: the oracle's cluster values; no virials (also none kept from earlier labels); the
    deepmd/npy round trip carries the nopbc mark into `numdp test`."""
    ref = np.load(oracle_dir / "water_cluster.npz")
    ls = make_system(ref, nopbc=True).predict(str(oracle_dir / "water.dp"), driver="numdp")
    assert ls.nopbc
    assert rel_err(ls["energies"], ref["energy"]) <= TOL
    assert rel_err(ls["forces"], ref["force"]) <= TOL
    assert "virials" not in ls.data
    ls.data["virials"] = np.ones((ls.get_nframes(), 3, 3))   # a stale label to be dropped
    again = ls.predict(str(oracle_dir / "water.dp"), driver="numdp")
    assert "virials" not in again.data
    assert np.array_equal(again["energies"], ls["energies"])
    again.to("deepmd/npy", str(tmp_path / "cluster"))
    out = tmp_path / "r.json"
    assert main(["test", "-m", str(oracle_dir / "water.dp"), "-s", str(tmp_path / "cluster"),
                 "--json", str(out)]) == 0
    fig = json.loads(out.read_text())["overall"]
    assert fig["rmse_energy"] == 0.0 and fig["rmse_force"] == 0.0 and fig["rmse_virial"] is None


def test_round_trip_through_numdp_test_is_exact(oracle_dir, water_labeled, tmp_path, capsys):
    """deepmd/npy stores float64 (dpdata's default), and `numdp test` evaluates the same
    coordinates with the same model and threads: every error is exactly zero."""
    water_labeled.to("deepmd/npy", str(tmp_path / "water"))
    out = tmp_path / "r.json"
    assert main(["test", "-m", str(oracle_dir / "water.dp"), "-s", str(tmp_path / "water"),
                 "--json", str(out)]) == 0
    fig = json.loads(out.read_text())
    assert fig["systems"][0]["frames"] == 3
    for q in ("energy", "force", "virial"):
        assert fig["overall"][f"rmse_{q}"] == 0.0 and fig["overall"][f"mae_{q}"] == 0.0, q


def test_precision_and_threads_pass_through(oracle_dir, water):
    from numdp.dpdata_driver import NumdpDriver

    drv = NumdpDriver(str(oracle_dir / "water.dp"), precision="mix32", threads=1)
    assert drv.model.precision == "mix32" and drv.model.nthreads == 1
    ref = numdp.load_model(oracle_dir / "water.dp", nthreads=1, precision="mix32")
    out = ref.evaluate(water["coord"][1], water["atype"], water["box"][1], atom_virial=False)
    for ls in (make_system(water).predict(driver=drv),
               make_system(water).predict(str(oracle_dir / "water.dp"), driver="numdp",
                                          precision="mix32", threads=1)):
        assert ls["energies"][1] == out.energy and np.array_equal(ls["forces"][1], out.forces)
    # a loaded model carries its own options: giving them again is refused
    for bad in ({"threads": 2}, {"precision": "mix16"}, {"device": "cuda"}):
        with pytest.raises(InputError, match="belong to the loaded model"):
            NumdpDriver(ref, **bad)
    assert NumdpDriver(ref).model is ref


def test_bad_model_file_is_input_error(tmp_path, water):
    with pytest.raises(InputError, match="nope.dp"):
        make_system(water).predict(str(tmp_path / "nope.dp"), driver="numdp")


def test_found_through_entry_point_in_fresh_process(oracle_dir, tmp_path):
    """`import dpdata` alone finds the driver (numdp's dpdata.plugins entry point, from the
    installed package's metadata: the processes run outside the source tree), and `import numdp`
    does not import dpdata (dpdata is optional)."""
    code = (
        "import sys, numpy as np, dpdata\n"
        "from dpdata.driver import Driver\n"
        "assert Driver.get_driver('numdp').__module__ == 'numdp.dpdata_driver'\n"
        "assert Driver.get_driver('dp').__module__ == 'dpdata.plugins.deepmd'\n"
        "assert 'numba' not in sys.modules   # the plugin is light until a driver is made\n"
        f"ref = np.load({str(oracle_dir / 'water_cluster.npz')!r})\n"
        "t = ref['atype']\n"
        "s = dpdata.System(data={'atom_names': ['O', 'H'], 'atom_numbs': [int((t == 0).sum()),"
        " int((t == 1).sum())], 'atom_types': t, 'orig': np.zeros(3), 'coords': ref['coord'],"
        " 'cells': np.zeros((1, 3, 3)), 'nopbc': True})\n"
        f"ls = s.predict({str(oracle_dir / 'water.dp')!r}, driver='numdp')\n"
        "print(repr(float(ls['energies'][0])))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    ref = np.load(oracle_dir / "water_cluster.npz")
    assert rel_err(float(run.stdout.split()[-1]), ref["energy"][0]) <= TOL
    code = "import sys, numdp; print('dpdata' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert run.returncode == 0 and run.stdout.strip() == "False", run.stderr
    # the plugin module imported first: dpdata, imported by it, loads it through the entry point
    # while it is half initialised; the class must still end up registered
    code = ("from numdp.dpdata_driver import NumdpDriver\n"
            "from dpdata.driver import Driver\n"
            "assert Driver.get_driver('numdp') is NumdpDriver\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr


def test_multisystems_and_ase_minimizer(oracle_dir, water, water_labeled):
    """MultiSystems.predict labels each system as System.predict does (the cluster keeps nopbc);
    dpdata's ASE minimizer (System.minimize) runs on the driver's ase_calculator: the energy goes
    down (it would go up with forces of the wrong sign) and the returned labels are the driver's
    own for the returned coordinates."""
    from numdp.dpdata_driver import NumdpDriver

    ref = np.load(oracle_dir / "water_cluster.npz")
    cluster = make_system(ref, nopbc=True)
    drv = NumdpDriver(str(oracle_dir / "water.dp"))
    labeled = dpdata.MultiSystems(make_system(water), cluster).predict(driver=drv)
    by_natoms = {s.get_natoms(): s for s in labeled}
    assert np.array_equal(by_natoms[192]["energies"], water_labeled["energies"])
    assert by_natoms[30].nopbc and "virials" not in by_natoms[30].data
    before = cluster.predict(driver=drv)
    assert np.array_equal(by_natoms[30]["energies"], before["energies"])
    relaxed = cluster.minimize(driver=drv, minimizer="ase", max_steps=5)
    assert relaxed["energies"][0] < before["energies"][0]
    again = relaxed.predict(driver=drv)
    assert np.array_equal(again["energies"], relaxed["energies"])
    assert np.array_equal(again["forces"], relaxed["forces"])


def test_cuda_device(oracle_dir):
    """device="cuda" labels with the device model (Numba's CUDA simulator in CI, tests/conftest.py):
    bit for bit its evaluate, frame by frame.  Five atoms of the oracle's cluster, two different
    frames (the simulator runs every CUDA thread in Python)."""
    pytest.importorskip("numba_cuda")
    ref = np.load(oracle_dir / "water_cluster.npz")
    c, t = ref["coord"][0][:5], ref["atype"][:5]
    frames = {"coord": np.stack([c, c + 0.1 * np.sin(np.arange(15)).reshape(5, 3)]), "atype": t}
    from numdp.dpdata_driver import NumdpDriver

    drv = NumdpDriver(str(oracle_dir / "water.dp"), device="cuda")
    assert drv.model.device == "cuda"
    ls = make_system(frames, nopbc=True).predict(driver=drv)
    model = numdp.load_model(oracle_dir / "water.dp", device="cuda")
    assert ls["energies"][0] != ls["energies"][1]
    for f in range(2):
        out = model.evaluate(frames["coord"][f], t, None, atom_virial=False)
        assert ls["energies"][f] == out.energy and np.array_equal(ls["forces"][f], out.forces)
