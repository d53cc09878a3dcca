"""dpdata workflows with the numdp driver (numdp/dpdata_driver.py), as DP and DP-GEN users run them
with DeePMD-kit's "dp" driver: parity with that driver on the same model (tests/data/dpdata_sweep,
tools/make_dpdata_sweep_fixtures.py), the driver arguments DeePMD-kit's driver takes (a DeepPot
object, the keyword `dp` of hybrid configurations), mixed-type systems, and labels written in
dpdata's deepmd formats read back by `numdp test` and numdp's system reader."""
import json
from pathlib import Path

import dpdata
import numpy as np
import pytest

import numdp
from numdp.cli import main
from numdp.errors import InputError
from numdp.io.npy_system import find_systems, load_system
from test_oracle import TOL, rel_err   # the oracle tolerance: relative error <= 1e-10

DATA = Path(__file__).parent / "data"
MODEL = str(DATA / "pytorch" / "se_a_two_side_f64.dp")   # type_map ["O", "H"]
NAMES = ["H", "C", "O"]   # the fixture's atom_names: reverse order, and an element without atoms


@pytest.fixture(scope="module")
def ref():
    return np.load(DATA / "dpdata_sweep" / "dp_driver.npz")


def fixture_system(ref, name, nopbc=False):
    types = ref[f"{name}_types"]
    data = {"atom_names": list(NAMES), "atom_numbs": [int((types == i).sum()) for i in range(3)],
            "atom_types": types, "orig": np.zeros(3), "coords": ref[f"{name}_coords"],
            "cells": ref[f"{name}_cells"]}
    if nopbc:
        data["nopbc"] = True
    return dpdata.System(data=data)


@pytest.fixture(scope="module")
def driver():
    from numdp.dpdata_driver import NumdpDriver

    return NumdpDriver(MODEL)


def test_matches_deepmd_kit_driver(ref, driver):
    """System.predict and MultiSystems.predict give DeePMD-kit's labels: element order reversed
    and an element without atoms, periodic, nopbc (numdp gives no virials there, by design:
    docs/dpdata.md) and one atom whose only neighbours are its periodic images."""
    for name, nopbc in (("small", False), ("small_nopbc", True), ("one", False)):
        ls = fixture_system(ref, name, nopbc).predict(MODEL, driver="numdp")
        nf, na = ref[f"{name}_coords"].shape[:2]
        assert ls["energies"].shape == (nf,) and ls["forces"].shape == (nf, na, 3)
        assert ls["atom_names"] == NAMES
        assert rel_err(ls["energies"], ref[f"{name}_energies"]) <= TOL, name
        if name == "one":
            # its images' pull cancels: the force is round-off of pair forces, each at most
            # |virial| / 4 eV/Å (the images are 4 Å or farther)
            bound = TOL * np.abs(ref["one_virials"]).max() / 4.0
            assert np.abs(ls["forces"] - ref["one_forces"]).max() <= bound
        else:
            assert rel_err(ls["forces"], ref[f"{name}_forces"]) <= TOL, name
        if nopbc:
            assert "virials" not in ls.data
        else:
            assert ls["virials"].shape == (nf, 3, 3)
            assert rel_err(ls["virials"], ref[f"{name}_virials"]) <= TOL, name
    multi = dpdata.MultiSystems(fixture_system(ref, "small"), fixture_system(ref, "one"))
    labeled = {s.get_natoms(): s for s in multi.predict(driver=driver)}
    assert rel_err(labeled[12]["energies"], ref["small_energies"]) <= TOL
    assert rel_err(labeled[1]["energies"], ref["one_energies"]) <= TOL


def test_empty_system(ref, driver):
    """0 frames give 0 labels of the right shapes (DeePMD-kit's driver raises IndexError)."""
    ls = fixture_system(ref, "small")[[]].predict(driver=driver)
    assert ls.get_nframes() == 0
    assert ls["energies"].shape == (0,) and ls["forces"].shape == (0, 12, 3)
    assert ls["virials"].shape == (0, 3, 3)


def test_deeppot_object_is_a_model(ref, driver):
    """What DeePMD-kit users hand the "dp" driver, a DeepPot object, works here with numdp's
    DeepPot (numdp.infer), bit for bit the labels of the model file."""
    system = fixture_system(ref, "small")
    want = system.predict(driver=driver)
    got = system.predict(numdp.DeepPot(MODEL), driver="numdp")
    for key in ("energies", "forces", "virials"):
        assert np.array_equal(got[key], want[key]), key
    with pytest.raises(InputError, match="belong to the loaded model"):
        system.predict(numdp.DeepPot(MODEL), driver="numdp", threads=1)


def test_bad_model_argument_is_one_line_input_error(ref):
    for bad in (42, None, ["m.dp"]):
        with pytest.raises(InputError) as exc:
            fixture_system(ref, "one").predict(bad, driver="numdp")
        assert "\n" not in str(exc.value) and "numdp driver" in str(exc.value)


def test_hybrid_with_deepmd_kit_style_config(ref, driver):
    """dpdata's hybrid driver takes configurations {"type": ..., "dp": model} written for
    DeePMD-kit's driver; changing "type" to "numdp" is all it takes.  Two copies of one model
    give twice its labels."""
    system = fixture_system(ref, "small")
    one = system.predict(driver=driver)
    both = system.predict(driver="hybrid", drivers=[{"type": "numdp", "dp": MODEL},
                                                    {"type": "numdp", "model": MODEL}, ])
    for key in ("energies", "forces", "virials"):
        assert np.array_equal(both[key], 2 * one[key]), key
    with pytest.raises(InputError, match="both"):
        system.predict(driver="hybrid", drivers=[{"type": "numdp", "dp": MODEL, "model": MODEL}])


def formula_pair(ref):
    """Two 12-atom systems with different formulas: "small" (4 O, 8 H), and the same with its
    last atom an O (5 O, 7 H)."""
    a = fixture_system(ref, "small")
    types = a["atom_types"].copy()
    types[-1] = NAMES.index("O")
    b = dpdata.System(data={**a.data, "atom_types": types,
                            "atom_numbs": [int((types == i).sum()) for i in range(3)]})
    return a, b


def test_mixed_type_system_is_one_clear_error(ref, driver):
    """A mixed-type System (dpdata's convert_to_mixed_type: atom_names ["MIXED_TOKEN"], types per
    frame) cannot be labelled in dpdata 1.1 (its LabeledSystem refuses the data whatever the
    driver): one line saying so and what to do, not "'MIXED_TOKEN' is not in the type_map"."""
    mixed = fixture_system(ref, "small")
    mixed.convert_to_mixed_type(["O", "H", "C"])
    with pytest.raises(InputError) as exc:
        mixed.predict(driver=driver)
    msg = str(exc.value)
    assert "\n" not in msg and "mixed-type" in msg and "MultiSystems" in msg
    assert "not in the model's type_map" not in msg


@pytest.mark.parametrize("fmt", ["deepmd/npy", "deepmd/hdf5", "deepmd/npy/mixed"])
def test_labels_round_trip_to_numdp(ref, driver, tmp_path, fmt, capsys):
    """DP-GEN's path: predicted labels written by dpdata are read back by numdp's system reader
    (what `numdp train` and `numdp test` use) with the same numbers and the virial's sign, and
    `numdp test` with the labelling model finds zero error."""
    labeled = dpdata.MultiSystems(*formula_pair(ref)).predict(driver=driver)
    target = tmp_path / ("data.h5" if "hdf5" in fmt else "data")
    labeled.to(fmt, str(target))
    found = find_systems(target)
    assert len(found) == (1 if fmt.endswith("mixed") else 2)
    frames = [load_system(p) for p in found]
    want = [s.sub_system([f]) for s in labeled for f in range(s.get_nframes())]
    for s in frames:
        for f in range(s.nframes):
            names = [s.type_map[t] for t in (s.types if s.frame_types is None else s.frame_types[f])]
            (w,) = [w for w in want if np.array_equal(w["coords"][0], s.coords[f])
                    and [w["atom_names"][t] for t in w["atom_types"]] == names]
            assert s.energy[f] == w["energies"][0]
            assert np.array_equal(s.forces[f], w["forces"][0])
            assert np.array_equal(s.virial[f], w["virials"][0])   # eV, DeePMD-kit's sign kept
    out = tmp_path / "r.json"
    assert main(["test", "-m", MODEL, "-s", str(target), "--json", str(out)]) == 0
    fig = json.loads(out.read_text())
    assert sum(s["frames"] for s in fig["systems"]) == 4
    for q in ("energy", "force", "virial"):
        assert fig["overall"][f"rmse_{q}"] == 0.0, q
