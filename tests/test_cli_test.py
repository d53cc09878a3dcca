"""`numdp test`: figures per system and overall, JSON output, errors."""
import json

import numpy as np
import pytest

from numdp.cli import main
from tests_util import write_system


def test_numdp_test_matches_direct_evaluation(tmp_path, oracle_dir, capsys):
    ref = np.load(oracle_dir / "alloy5.npz")
    sysdir = write_system(tmp_path / "sys", ref["coord"], ref["box"], ref["atype"],
                          ["Ni", "Cu", "Pd", "Ag", "Au"],
                          energy=ref["energy"] + np.array([0.108, -0.216]),
                          force=ref["force"] + 0.001,
                          virial=ref["virial"] - 0.0108 * np.arange(9).reshape(3, 3))
    out = tmp_path / "r.json"
    assert main(["test", "-m", str(oracle_dir / "alloy5.dp"), "-s", str(sysdir), "--json", str(out)]) == 0
    fig = json.loads(out.read_text())
    n = 108
    e_rmse = 1000 * np.sqrt(np.mean((np.array([0.108, -0.216]) / n) ** 2))
    v_rmse = 1000 * np.sqrt(np.mean((0.0108 * np.arange(9) / n) ** 2))
    assert fig["overall"]["rmse_energy"] == pytest.approx(e_rmse, rel=1e-6)
    assert fig["overall"]["rmse_force"] == pytest.approx(1.0, rel=1e-6)
    assert fig["overall"]["rmse_virial"] == pytest.approx(v_rmse, rel=1e-6)
    assert fig["systems"][0]["frames"] == 2
    assert "overall" in capsys.readouterr().out


def test_numdp_test_without_virial_and_missing_model(tmp_path, oracle_dir, capsys):
    ref = np.load(oracle_dir / "water_cluster.npz")
    sysdir = write_system(tmp_path / "c", ref["coord"], None, ref["atype"], ["O", "H"],
                          energy=ref["energy"], force=ref["force"])
    out = tmp_path / "r.json"
    assert main(["test", "-m", str(oracle_dir / "water.dp"), "-s", str(sysdir), "--json", str(out)]) == 0
    fig = json.loads(out.read_text())["overall"]
    assert fig["rmse_virial"] is None
    assert fig["rmse_energy"] < 1e-9 and fig["rmse_force"] < 1e-9
    assert main(["test", "-m", str(tmp_path / "nope.dp"), "-s", str(sysdir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.dp" in err[0]


def test_mae_beside_rmse(tmp_path, oracle_dir, capsys):
    """Known label offsets give known MAEs: |0.108|, |-0.216| eV over 108 atoms; force +0.001 eV/A
    everywhere; virial offsets 0.0108*k eV (k = 0..8) per 108 atoms."""
    ref = np.load(oracle_dir / "alloy5.npz")
    sysdir = write_system(tmp_path / "sys", ref["coord"], ref["box"], ref["atype"],
                          ["Ni", "Cu", "Pd", "Ag", "Au"],
                          energy=ref["energy"] + np.array([0.108, -0.216]),
                          force=ref["force"] + 0.001,
                          virial=ref["virial"] - 0.0108 * np.arange(9).reshape(3, 3))
    out = tmp_path / "r.json"
    assert main(["test", "-m", str(oracle_dir / "alloy5.dp"), "-s", str(sysdir), "--json", str(out)]) == 0
    fig = json.loads(out.read_text())
    # the DeePMD-kit oracle agrees with numdp to ~1e-10 eV, far below the offsets: rel 1e-6
    assert fig["overall"]["mae_energy"] == pytest.approx(1000 * 0.162 / 108, rel=1e-6)
    assert fig["overall"]["mae_force"] == pytest.approx(1.0, rel=1e-6)
    assert fig["overall"]["mae_virial"] == pytest.approx(1000 * 0.0108 * 4 / 108, rel=1e-6)
    assert fig["units"]["mae_force"] == "meV/Angstrom"
    assert "MAE" in capsys.readouterr().out


def test_detail_files(tmp_path, oracle_dir, capsys):
    """-d writes dp test's five files; columns are the data and numdp's own predictions; a
    second system (no virial labels) appends blocks to e/f only, each under its header."""
    from numdp.model.dp_model import load_model

    ref = np.load(oracle_dir / "alloy5.npz")
    tmap = ["Ni", "Cu", "Pd", "Ag", "Au"]
    energy = ref["energy"] + np.array([0.108, -0.216])
    s1 = write_system(tmp_path / "s1", ref["coord"], ref["box"], ref["atype"], tmap, energy=energy,
                      force=ref["force"] + 0.001, virial=ref["virial"] - 0.01)
    s2 = write_system(tmp_path / "s2", ref["coord"][:1], ref["box"][:1], ref["atype"], tmap,
                      energy=energy[:1], force=ref["force"][:1])
    prefix = tmp_path / "out" / "res"
    model_file = str(oracle_dir / "alloy5.dp")
    assert main(["test", "-m", model_file, "-s", str(s1), str(s2), "-d", str(prefix)]) == 2
    assert "does not exist" in capsys.readouterr().err
    prefix.parent.mkdir()
    # earlier outputs are kept as #NAME.N# (first free N), like every other numdp output: the
    # NAME.bak of before lost the first run's file on the third run, and --json was overwritten
    (tmp_path / "out" / "res.f.out").write_text("old\n")
    (tmp_path / "out" / "#res.f.out.1#").write_text("older\n")
    (tmp_path / "r.json").write_text("{}\n")
    capsys.readouterr()
    assert main(["test", "-m", model_file, "-s", str(s1), str(s2), "-d", str(prefix),
                 "--json", str(tmp_path / "r.json")]) == 0
    assert (tmp_path / "out" / "#res.f.out.1#").read_text() == "older\n"
    assert (tmp_path / "out" / "#res.f.out.2#").read_text() == "old\n"
    assert (tmp_path / "#r.json.1#").read_text() == "{}\n"
    out = capsys.readouterr().out
    assert (f"backed up the existing {prefix}.f.out to #res.f.out.2#, "
            f"{tmp_path / 'r.json'} to #r.json.1#") in out
    model = load_model(model_file)
    n = 108
    pred = [model.evaluate(ref["coord"][f].reshape(n, 3), ref["atype"], ref["box"][f].reshape(3, 3),
                           atom_virial=False) for f in range(2)]
    e = np.loadtxt(f"{prefix}.e.out")
    np.testing.assert_array_equal(e[:, 0], np.r_[energy, energy[:1]])
    # written with 18 significant digits (savetxt's %.18e): the float64 round trip is exact
    np.testing.assert_array_equal(e[:, 1], [pred[0].energy, pred[1].energy, pred[0].energy])
    np.testing.assert_allclose(np.loadtxt(f"{prefix}.e_peratom.out"), e / n, rtol=1e-15)
    f = np.loadtxt(f"{prefix}.f.out")
    assert f.shape == (3 * n, 6)
    np.testing.assert_array_equal(f[:2 * n, :3], (ref["force"] + 0.001).reshape(-1, 3))
    np.testing.assert_array_equal(f[:, 3:], np.concatenate([pred[0].forces, pred[1].forces, pred[0].forces]))
    v = np.loadtxt(f"{prefix}.v.out")
    assert v.shape == (2, 18)
    np.testing.assert_array_equal(v[:, :9], (ref["virial"] - 0.01).reshape(2, 9))
    np.testing.assert_array_equal(v[:, 9:], np.stack([pred[0].virial.ravel(), pred[1].virial.ravel()]))
    np.testing.assert_allclose(np.loadtxt(f"{prefix}.v_peratom.out"), v / n, rtol=1e-15)
    # dp test 3.2's stress file: −virial / volume of each frame, eV/Å³
    volume = np.abs(np.linalg.det(ref["box"][:2].reshape(2, 3, 3)))[:, None]
    np.testing.assert_allclose(np.loadtxt(f"{prefix}.s.out"), -v / volume, rtol=1e-15)
    assert (tmp_path / "out" / "res.s.out").read_text().splitlines()[0] == (
        f"# {s1} (eV/Å³): data_sxx data_sxy data_sxz data_syx data_syy data_syz data_szx data_szy data_szz "
        "pred_sxx pred_sxy pred_sxz pred_syx pred_syy pred_syz pred_szx pred_szy pred_szz")
    lines = (tmp_path / "out" / "res.f.out").read_text().splitlines()
    assert lines[0] == f"# {s1}: data_fx data_fy data_fz pred_fx pred_fy pred_fz"
    assert lines[1 + 2 * n] == f"# {s2}: data_fx data_fy data_fz pred_fx pred_fy pred_fz"
    assert (tmp_path / "out" / "res.v.out").read_text().splitlines()[0] == (
        f"# {s1}: data_vxx data_vxy data_vxz data_vyx data_vyy data_vyz data_vzx data_vzy data_vzz "
        "pred_vxx pred_vxy pred_vxz pred_vyx pred_vyy pred_vyz pred_vzx pred_vzy pred_vzz")
    # the printed / JSON MAE and RMSE are those of the detail columns: same float64 differences,
    # summed in another order (relative rounding ~1e-16 * log2(324)): rel 1e-12.  Per-atom energy
    # differences from the file are (pred/n - data/n) rather than (pred - data)/n: the rounding of
    # a ~1e3 eV energy (1e-13 eV) relative to 0.1 eV differences is ~1e-12: rel 1e-9.
    fig = json.loads((tmp_path / "r.json").read_text())["overall"]
    df = f[:, 3:] - f[:, :3]
    assert fig["mae_force"] == pytest.approx(1000 * np.abs(df).mean(), rel=1e-12)
    assert fig["rmse_force"] == pytest.approx(1000 * np.sqrt((df ** 2).mean()), rel=1e-12)
    de = np.loadtxt(f"{prefix}.e_peratom.out")
    assert fig["mae_energy"] == pytest.approx(1000 * np.abs(de[:, 1] - de[:, 0]).mean(), rel=1e-9)


def test_bad_options_are_refused_before_evaluating(tmp_path, oracle_dir, capsys, monkeypatch):
    """-n < 0 silently meant every frame, --threads 0 the default; --json in a missing directory
    failed only after the whole evaluation.  Each is now one line and exit 2, before any model is
    evaluated (evaluate_system is replaced by one that fails)."""
    import numdp.commands.test as cmd

    def never(*args, **kwargs):
        raise AssertionError("evaluated before the options were checked")

    monkeypatch.setattr(cmd, "evaluate_system", never)
    ref = np.load(oracle_dir / "water_cluster.npz")
    sysdir = write_system(tmp_path / "c", ref["coord"], None, ref["atype"], ["O", "H"],
                          energy=ref["energy"], force=ref["force"])
    base = ["test", "-m", str(oracle_dir / "water.dp"), "-s", str(sysdir)]
    for extra, message in ((["-n", "-3"], "-n -3: the number of frames per system must be >= 0"),
                           (["--threads", "0"], "--threads: expected a whole number of worker threads >= 1, got 0"),
                           (["--json", str(tmp_path / "nodir" / "r.json")], "directory"),
                           (["--json", str(tmp_path)], "is a directory")):
        assert main(base + extra) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (extra, err)


@pytest.mark.parametrize("error, status", [(OSError(28, "No space left on device"), 2), (KeyboardInterrupt(), 130)])
def test_failed_detail_write_gives_the_earlier_files_their_names_back(tmp_path, oracle_dir, monkeypatch,
                                                                     error, status):
    """The third output file cannot be written (disk full, or Ctrl-C): the two new files already
    written go as well, every earlier file is back under its name byte for byte, no #NAME.N#."""
    import pathlib

    ref = np.load(oracle_dir / "alloy5.npz")
    tmap = ["Ni", "Cu", "Pd", "Ag", "Au"]
    s1 = write_system(tmp_path / "s1", ref["coord"][:1], ref["box"][:1], ref["atype"], tmap,
                      energy=ref["energy"][:1], force=ref["force"][:1])
    out = tmp_path / "out"
    out.mkdir()
    earlier = {"res.e.out": b"e\x00", "res.f.out": b"f\x00", "r.json": b"{}"}
    for name, data in earlier.items():
        (out / name).write_bytes(data)
    write_text = pathlib.Path.write_text
    calls = []

    def failing(self, text, *args, **kwargs):
        calls.append(self)
        if len(calls) == 3:  # e.out, e_peratom.out, then f.out
            raise error
        return write_text(self, text, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", failing)
    assert main(["test", "-m", str(oracle_dir / "alloy5.dp"), "-s", str(s1), "-d", str(out / "res"),
                 "--json", str(out / "r.json")]) == status
    assert len(calls) == 3
    assert {p.name: p.read_bytes() for p in out.iterdir()} == earlier


def _labelled_frames(tmp_path, oracle_dir, name="sys"):
    """alloy5's two configurations as 6 frames whose energy labels 0..5 name them."""
    ref = np.load(oracle_dir / "alloy5.npz")
    idx = np.array([0, 1, 0, 1, 0, 1])
    return write_system(tmp_path / name, ref["coord"][idx], ref["box"][idx], ref["atype"],
                        ["Ni", "Cu", "Pd", "Ag", "Au"], energy=np.arange(6.0), force=ref["force"][idx])


def test_shuffled_frames(tmp_path, oracle_dir):
    """--shuffle-test -n 3 -r S tests the first 3 frames of numpy's permutation of seed S (the
    detail file's data column names them); the same seed draws the same frames; no flag: the
    first frames."""
    sysdir = _labelled_frames(tmp_path, oracle_dir)
    model = str(oracle_dir / "alloy5.dp")
    for seed in (3, 11):
        prefix = tmp_path / f"r{seed}"
        assert main(["test", "-m", model, "-s", str(sysdir), "-n", "3", "--shuffle-test", "-r", str(seed),
                     "-d", str(prefix)]) == 0
        drawn = np.loadtxt(f"{prefix}.e.out")[:, 0]
        assert np.array_equal(drawn, np.random.default_rng(seed).permutation(6)[:3])
    assert not np.array_equal(np.loadtxt(f"{tmp_path}/r3.e.out")[:, 0], np.loadtxt(f"{tmp_path}/r11.e.out")[:, 0])
    assert main(["test", "-m", model, "-s", str(sysdir), "-n", "2", "-d", str(tmp_path / "plain")]) == 0
    assert np.array_equal(np.loadtxt(f"{tmp_path}/plain.e.out")[:, 0], [0.0, 1.0])


def test_data_sources(tmp_path, oracle_dir, capsys):
    """-f DATAFILE, --train-data and --valid-data (TOML and input.json, paths relative to the
    input's folder, as dp test reads them) select the same systems as -s."""
    import json as _json

    a = _labelled_frames(tmp_path / "data", oracle_dir, "a")
    b = _labelled_frames(tmp_path / "data", oracle_dir, "b")
    model = str(oracle_dir / "alloy5.dp")

    def frames(*source):
        out = tmp_path / "r.json"
        assert main(["test", "-m", model, *source, "-n", "1", "--json", str(out)]) == 0, capsys.readouterr().err
        return [(s["system"].split("/")[-1], s["frames"]) for s in _json.loads(out.read_text())["systems"]]

    listing = tmp_path / "list.txt"
    listing.write_text(f"{b}\n\n{a}\n")
    assert frames("-f", str(listing)) == [("b", 1), ("a", 1)]
    toml = tmp_path / "in" / "train.toml"
    toml.parent.mkdir()
    toml.write_text('[training]\nsystems = ["../data/a"]\n[validation]\nsystems = ["../data/b"]\n')
    assert frames("--train-data", str(toml)) == [("a", 1)]
    assert frames("--valid-data", str(toml)) == [("b", 1)]
    js = tmp_path / "in" / "input.json"
    js.write_text(_json.dumps({"training": {"training_data": {"systems": ["../data"]}}}))
    assert frames("--train-data", str(js)) == [("a", 1), ("b", 1)]
    for argv, message in ((["--valid-data", str(js)], "input.json: names no validation data"),
                          (["-s", str(a), "-n", "1", "-r", "-1"], "-r -1: the seed must be >= 0")):
        assert main(["test", "-m", model, *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0]
    with pytest.raises(SystemExit):   # one source at a time, as dp test
        main(["test", "-m", model, "-s", str(a), "-f", str(listing)])


def test_dp_test_figures_weighted_force_stress_and_atomic_energy(tmp_path, oracle_dir, capsys):
    """The other figures of dp test 3.2 from known label offsets (the oracle agrees with numdp to
    ~1e-10, far below them): absolute energy and virial, stress = -ΔΞ/V, the atom_pref-weighted
    force (a uniform 0.001 eV/Å offset: 1 meV/Å whatever the weights; then only atom 0 off), and
    with -a the atomic energies against atom_ener.npy; -a without atom_ener.npy is refused."""
    ref = np.load(oracle_dir / "alloy5.npz")
    tmap = ["Ni", "Cu", "Pd", "Ag", "Au"]
    de, dv = np.array([0.108, -0.216]), 0.0108 * np.arange(9).reshape(3, 3)
    sysdir = write_system(tmp_path / "sys", ref["coord"], ref["box"], ref["atype"], tmap,
                          energy=ref["energy"] + de, force=ref["force"] + 0.001, virial=ref["virial"] - dv)
    n = len(ref["atype"])
    pref = np.random.default_rng(1).uniform(0.5, 2.0, (2, n))
    np.save(sysdir / "set.000" / "atom_pref.npy", pref)
    dae = np.random.default_rng(2).normal(0.0, 0.01, (2, n))
    np.save(sysdir / "set.000" / "atom_ener.npy", ref["atom_energy"] - dae)
    out = tmp_path / "r.json"
    model = str(oracle_dir / "alloy5.dp")
    assert main(["test", "-m", model, "-s", str(sysdir), "-a", "--json", str(out)]) == 0
    fig = json.loads(out.read_text())["overall"]
    vol = np.abs(np.linalg.det(ref["box"].reshape(-1, 3, 3)))
    expect = {"energy_total": (np.sqrt(np.mean(de ** 2)), np.mean(np.abs(de))),
              "virial_total": (np.sqrt(np.mean(dv ** 2)), np.mean(np.abs(dv))),
              "stress": (np.sqrt(np.mean([(dv / v) ** 2 for v in vol])), np.mean([np.abs(dv / v) for v in vol])),
              "force_weighted": (0.001, 0.001),
              "atom_energy": (np.sqrt(np.mean(dae ** 2)), np.mean(np.abs(dae)))}
    for name, (rmse, mae) in expect.items():
        assert fig[f"rmse_{name}"] == pytest.approx(1000 * rmse, rel=1e-6), name
        assert fig[f"mae_{name}"] == pytest.approx(1000 * mae, rel=1e-6), name
    assert "also, as dp test" in capsys.readouterr().out
    force = ref["force"].copy()
    force[:, 0, :] += 0.003                                   # only atom 0 off: its weight decides
    write_system(tmp_path / "one", ref["coord"], ref["box"], ref["atype"], tmap, force=force)
    np.save(tmp_path / "one" / "set.000" / "atom_pref.npy", pref)
    assert main(["test", "-m", model, "-s", str(tmp_path / "one"), "--json", str(out)]) == 0
    fig = json.loads(out.read_text())["overall"]
    w = np.repeat(pref, 3, axis=1)                            # each atom's weight on its 3 components
    assert fig["rmse_force_weighted"] == pytest.approx(3.0 * np.sqrt(3 * pref[:, 0].sum() / w.sum()), rel=1e-6)
    assert "rmse_atom_energy" not in fig and "rmse_stress" not in fig
    assert main(["test", "-m", model, "-s", str(tmp_path / "one"), "-a"]) == 2
    assert "-a/--atomic needs atomic energy labels (atom_ener.npy)" in capsys.readouterr().err


def test_set_prefix(tmp_path, oracle_dir, capsys):
    """-S PREFIX (dp test -S): the frames of the PREFIX.* sets; without it, set.*."""
    ref = np.load(oracle_dir / "alloy5.npz")
    sysdir = write_system(tmp_path / "sys", ref["coord"], ref["box"], ref["atype"],
                          ["Ni", "Cu", "Pd", "Ag", "Au"], energy=ref["energy"] + 0.108, force=ref["force"])
    (sysdir / "set.000").rename(sysdir / "test.000")
    model = str(oracle_dir / "alloy5.dp")
    assert main(["test", "-m", model, "-s", str(sysdir)]) == 2
    assert f"{sysdir}: no set.* directories with frames" in capsys.readouterr().err
    out = tmp_path / "r.json"
    assert main(["test", "-m", model, "-s", str(sysdir), "-S", "test", "--json", str(out)]) == 0
    fig = json.loads(out.read_text())
    assert fig["systems"][0]["frames"] == 2
    assert fig["overall"]["rmse_energy"] == pytest.approx(1000 * 0.108 / 108, rel=1e-6)
