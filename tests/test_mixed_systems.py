"""DeePMD-kit's mixed-type systems (real_atom_types.npy: atom types per frame), read by every data
command and by the trainer.  A reader that took type.raw (all zeros in this layout) would give
every atom the first element: each test below fails then."""
import json

import numpy as np
import pytest

from numdp.cli import main
from numdp.errors import InputError
from numdp.io.model_file import read_model, write_model
from numdp.io.npy_system import load_system
from numdp.train.config import BatchSize
from numdp.train.data import FrameCache, load_dataset
from numdp.train.stats import energy_bias, max_neighbour_counts
from test_oracle import TOL
from tests_util import write_system

ALLOY = ["Ni", "Cu", "Pd", "Ag", "Au"]


def within_oracle(fig, ref) -> bool:
    """numdp test's RMSEs (meV/atom, meV/Å) within the oracle agreement test_oracle proves
    (relative TOL of the largest value); a wrong element on an atom costs eV."""
    n = ref["atype"].size
    return (fig["rmse_energy"] <= 1e3 * TOL * np.abs(ref["energy"]).max() / n
            and fig["rmse_force"] <= 1e3 * TOL * np.abs(ref["force"]).max()
            and fig["rmse_virial"] <= 1e3 * TOL * np.abs(ref["virial"]).max() / n)


def write_mixed(path, coord, box, frame_types, type_map, energy=None, force=None, virial=None, sets=1):
    """A mixed-type system as dpdata's deepmd/npy/mixed writes it: type.raw all 0, per-frame
    types in every set's real_atom_types.npy; frames split evenly over `sets` sets."""
    path.mkdir(parents=True)
    nf, n = frame_types.shape
    (path / "type.raw").write_text("0\n" * n)
    (path / "type_map.raw").write_text("\n".join(type_map) + "\n")
    for k, idx in enumerate(np.array_split(np.arange(nf), sets)):
        s = path / f"set.{k:03d}"
        s.mkdir()
        np.save(s / "coord.npy", coord[idx].reshape(len(idx), -1))
        np.save(s / "box.npy", box[idx].reshape(len(idx), 9))
        np.save(s / "real_atom_types.npy", frame_types[idx])
        for name, arr in (("energy", energy), ("force", force), ("virial", virial)):
            if arr is not None:
                np.save(s / f"{name}.npy", arr[idx].reshape(len(idx), -1) if name != "energy" else arr[idx])
    return path


def oracle_mixed(oracle_dir, path, sets=1):
    """DeePMD-kit's two alloy frames as a mixed system whose frames order their atoms differently
    (frame 1 permuted, labels with it) and whose type_map.raw lists the elements reversed."""
    ref = np.load(oracle_dir / "alloy5.npz")
    perm = np.random.default_rng(5).permutation(108)
    order = [np.arange(108), perm]
    coord = np.stack([ref["coord"][f][o] for f, o in enumerate(order)])
    force = np.stack([ref["force"][f][o] for f, o in enumerate(order)])
    names = ALLOY[::-1]
    frame_types = np.stack([len(ALLOY) - 1 - ref["atype"][o] for o in order])  # indices into `names`
    return write_mixed(path, coord, ref["box"], frame_types, names, energy=ref["energy"], force=force,
                       virial=ref["virial"], sets=sets), ref, order


@pytest.mark.parametrize("sets", [1, 2])
def test_numdp_test_uses_each_frames_types(tmp_path, oracle_dir, sets):
    """Against DeePMD-kit's own energies, forces and virials of the two frames: agreement to the
    oracle's level needs the right element on every atom of every frame."""
    sysdir, ref, order = oracle_mixed(oracle_dir, tmp_path / "mixed", sets)
    s = load_system(sysdir)
    assert s.frame_types is not None and s.nframes == 2
    mapped = s.frame_model_types(ALLOY)
    for f, o in enumerate(order):
        np.testing.assert_array_equal(mapped[f], ref["atype"][o])
    out = tmp_path / "r.json"
    assert main(["test", "-m", str(oracle_dir / "alloy5.dp"), "-s", str(sysdir), "--json", str(out)]) == 0
    assert within_oracle(json.loads(out.read_text())["overall"], ref)
    # the frames in another order (-n, --shuffle select frames): still each with its own types
    assert main(["test", "-m", str(oracle_dir / "alloy5.dp"), "-s", str(sysdir), "--shuffle-test",
                 "-r", "1", "--json", str(out)]) == 0
    assert within_oracle(json.loads(out.read_text())["overall"], ref)


def test_commands_on_a_mixed_system(tmp_path, oracle_dir, capsys):
    """model_devi, eval-desc, change-bias and neighbor-stat take each frame's types: the same
    figures as on the standard system of the same frames."""
    sysdir, ref, order = oracle_mixed(oracle_dir, tmp_path / "mixed")
    plain = write_system(tmp_path / "plain", ref["coord"], ref["box"], ref["atype"], ALLOY,
                         energy=ref["energy"], force=ref["force"], virial=ref["virial"])
    model = str(oracle_dir / "alloy5.dp")
    params = read_model(oracle_dir / "alloy5.dp")
    for net in params.fitting.nets:   # a second model: each element's fitting net perturbed its own way
        net.layers[0].w = net.layers[0].w * (1.0 + 0.01 * np.random.default_rng(len(net.layers[0].b)).normal(
            size=net.layers[0].w.shape))
    other = tmp_path / "other.h5"
    write_model(params, other)
    stat = []
    for d in (sysdir, plain):
        assert main(["model-devi", "-m", model, str(other), "-s", str(d), "-o", str(d / "devi.out")]) == 0
        assert main(["eval-desc", "-m", model, "-s", str(d), "-o", str(d / "desc")]) == 0
        capsys.readouterr()
        assert main(["neighbor-stat", "-s", str(d), "-r", "6.0", "-t", *ALLOY]) == 0
        # without the comments (the paths, the time taken)
        stat.append([ln.split("#")[0] for ln in capsys.readouterr().out.splitlines()])
    assert stat[0] == stat[1]
    devi = [np.loadtxt(d / "devi.out") for d in (sysdir, plain)]
    assert devi[1][:, 4].min() > 1e-4   # the models differ (max force deviation, eV/Å)
    # printed with 7 significant digits: equal to half a unit of the last one
    np.testing.assert_allclose(devi[0], devi[1], rtol=5e-7, atol=0)
    desc = [np.load(next((d / "desc").glob("*.npy"))) for d in (sysdir, plain)]
    np.testing.assert_allclose(desc[0][1], desc[1][1][order[1]], rtol=0, atol=1e-12)
    np.testing.assert_allclose(desc[0][0], desc[1][0], rtol=0, atol=1e-12)
    shifts = []
    for d in (sysdir, plain):
        assert main(["change-bias", model, "-s", str(d), "-o", str(d / "shifted.dp")]) == 0
        shifts.append(capsys.readouterr().out)
    assert shifts[0].replace(str(sysdir), "") == shifts[1].replace(str(plain), "")


def test_trainer_statistics_and_frames(tmp_path, oracle_dir):
    """The trainer's frames carry each frame's types; its energy bias and neighbour counts equal
    those of the same frames as a standard system."""
    sysdir, ref, order = oracle_mixed(oracle_dir, tmp_path / "mixed")
    plain = write_system(tmp_path / "plain", ref["coord"], ref["box"], ref["atype"], ALLOY,
                         energy=ref["energy"] + np.array([0.3, -0.2]), force=ref["force"])
    (mixed,), (std,) = (load_dataset([p], ALLOY, BatchSize(fixed=1)) for p in (sysdir, plain))
    assert mixed.frame_types is not None and std.frame_types is None
    cache = FrameCache([mixed], 6.0, [60] * 5, 5)
    for f, o in enumerate(order):
        np.testing.assert_array_equal(cache.frame(0, f).types, ref["atype"][o])
    np.testing.assert_array_equal(max_neighbour_counts([mixed], 6.0, 5), max_neighbour_counts([std], 6.0, 5))
    mixed.energy = std.energy
    frames = [np.arange(2)]
    np.testing.assert_allclose(energy_bias([mixed], frames, 5), energy_bias([std], frames, 5),
                               rtol=0, atol=1e-12)


def test_train_on_a_mixed_system(tmp_path, oracle_dir):
    sysdir, ref, order = oracle_mixed(oracle_dir, tmp_path / "data" / "mixed")
    toml = tmp_path / "train.toml"
    toml.write_text(f"""
[model]
type_map = {json.dumps(ALLOY)}
[model.descriptor]
rcut = 5.0
rcut_smth = 1.0
sel = "auto"
neuron = [4, 8]
axis_neuron = 2
[model.fitting]
neuron = [8, 8]
[training]
systems = ["data/mixed"]
numb_steps = 2
disp_freq = 1
""")
    assert main(["train", str(toml), "--threads", "1"]) == 0
    rows = [line.split() for line in (tmp_path / "lcurve.out").read_text().splitlines() if not line.startswith("#")]
    assert len(rows) >= 2 and all(np.isfinite(float(v)) for r in rows for v in r[1:])


def test_dpdata_mixed_layout(tmp_path, oracle_dir):
    """dpdata's own writer: two compositions of the same atom count in one mixed system read back
    frame by frame with their elements; with padding (atom_numb_pad) refused in one line."""
    dpdata = pytest.importorskip("dpdata")
    ref = np.load(oracle_dir / "alloy5.npz")
    systems = []
    for k in range(2):
        types = np.random.default_rng(k).integers(0, 5 - k, 108)  # the second has no Au
        systems.append(dpdata.LabeledSystem(data={
            "atom_names": list(ALLOY), "atom_numbs": [int(c) for c in np.bincount(types, minlength=5)],
            "atom_types": types, "coords": ref["coord"][k:k + 1], "cells": ref["box"][k:k + 1],
            "orig": np.zeros(3), "energies": ref["energy"][k:k + 1], "forces": ref["force"][k:k + 1],
            "nopbc": False}))
    ms = dpdata.MultiSystems(*systems)
    ms.to("deepmd/npy/mixed", str(tmp_path / "mixed"))
    found = sorted(p.parent for p in (tmp_path / "mixed").rglob("type.raw"))
    assert len(found) == 1
    s = load_system(found[0])
    assert s.frame_types is not None and s.nframes == 2
    mapped = s.frame_model_types(ALLOY)
    for src in systems:   # dpdata may sort atoms and frames: match each frame by its coordinates
        names = np.array(src["atom_names"])[src["atom_types"]]
        f = int(np.argmin([abs(s.coords[g].sum() - src["coords"][0].sum()) for g in range(2)]))
        key = lambda xyz: np.lexsort(np.round(xyz, 6).T)  # noqa: E731
        a, b = key(s.coords[f]), key(src["coords"][0])
        np.testing.assert_array_equal(np.array(ALLOY)[mapped[f][a]], names[b])
    padded = tmp_path / "padded"
    dpdata.MultiSystems(systems[0]).to("deepmd/npy/mixed", str(padded), atom_numb_pad=112)
    s = load_system(next(p.parent for p in padded.rglob("type.raw")))
    assert s.natoms == 112 and (s.frame_model_types(ALLOY)[0] < 0).sum() == 4


def _edit_mixed(tmp_path, oracle_dir, edit):
    sysdir, _, _ = oracle_mixed(oracle_dir, tmp_path / "m", sets=2)
    edit(sysdir)
    return sysdir


@pytest.mark.parametrize("edit, message", [
    (lambda d: (d / "set.001" / "real_atom_types.npy").unlink(),
     r"set.001/real_atom_types.npy: missing, but set.000 has it"),
    (lambda d: (d / "type_map.raw").unlink(), r"type_map.raw: missing \(a mixed-type system"),
    (lambda d: np.save(d / "set.000" / "real_atom_types.npy", np.full((1, 108), 5)),
     r"set.000/real_atom_types.npy: frame 0, atom 0: type 5 is not an index into type_map.raw's 5"),
    (lambda d: np.save(d / "set.000" / "real_atom_types.npy", np.zeros((1, 100), dtype=int)),
     r"set.000/real_atom_types.npy: shape \(1, 100\) does not match 1 frames of 108 atoms"),
])
def test_bad_mixed_systems(tmp_path, oracle_dir, edit, message):
    sysdir = _edit_mixed(tmp_path, oracle_dir, edit)
    with pytest.raises(InputError, match=message):
        load_system(sysdir)


def test_unknown_element_named(tmp_path, oracle_dir):
    sysdir, _, _ = oracle_mixed(oracle_dir, tmp_path / "m")
    with pytest.raises(InputError, match=r"real_atom_types.npy: atom \d+ is 'Ni', an element not in the model"):
        load_system(sysdir).frame_model_types(["Cu", "Pd", "Ag", "Au"])


def test_mixed_system_in_hdf5(tmp_path, oracle_dir):
    """The deepmd/hdf5 layout of the same mixed system: the same per-frame types and figures."""
    import h5py
    from test_h5_system import write_h5_system

    sysdir, ref, order = oracle_mixed(oracle_dir, tmp_path / "mixed", sets=2)
    with h5py.File(tmp_path / "data.h5", "w") as h5:
        write_h5_system(h5, "alloy", sysdir)
    s = load_system(f"{tmp_path / 'data.h5'}#/alloy")
    np.testing.assert_array_equal(s.frame_model_types(ALLOY), load_system(sysdir).frame_model_types(ALLOY))
    out = tmp_path / "r.json"
    assert main(["test", "-m", str(oracle_dir / "alloy5.dp"), "-s", f"{tmp_path / 'data.h5'}#/alloy",
                 "--json", str(out)]) == 0
    assert within_oracle(json.loads(out.read_text())["overall"], ref)


def test_start_structure_from_a_mixed_system(tmp_path, oracle_dir):
    from numdp.io.structure import read_npy_frame

    sysdir, ref, order = oracle_mixed(oracle_dir, tmp_path / "mixed")
    st = read_npy_frame(sysdir, 1)
    assert st.elements == [ALLOY[t] for t in ref["atype"][order[1]]]
    np.testing.assert_array_equal(st.positions, ref["coord"][1][order[1]])
