"""Model deviation: numdp.model.deviation against formulas written here, and `numdp model-devi`."""
from pathlib import Path

import numpy as np
import pytest

from numdp.cli import main
from numdp.io.h5md import H5MDWriter
from numdp.io.model_file import write_model
from numdp.io.structure import write_extxyz
from numdp.model.deviation import frame_deviation
from numdp.model.dp_model import DPModel
from randmodel import random_config, random_params
from tests_util import write_system

NATOMS = 10
HEADER = ("#       step         max_devi_v         min_devi_v         avg_devi_v"
          "         max_devi_f         min_devi_f         avg_devi_f             devi_e")


def _params(seed):
    p = random_params(ntypes=2, sel=[24, 24], neuron=(4, 8), axis_neuron=3, rcut=4.0, seed=seed)
    p.type_map = ["O", "H"]
    return p


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    paths = []
    for seed in (1, 2, 3):
        paths.append(d / f"m{seed}.h5")
        write_model(_params(seed), paths[-1])
    return paths, [DPModel(_params(s), nthreads=1) for s in (1, 2, 3)]


def _frames(nframes=3):
    out = []
    for f in range(nframes):
        pos, types, box = random_config(NATOMS, 2, box_len=5.5, tilt=0.2, seed=10 + f)
        out.append((pos, types, box))
    return out


def _reference(models, pos, types, box, relative=None, relative_v=None):
    """Deviations from the definitions, written independently of numdp.model.deviation:
    one-pass moments <x^2> - <x>^2 (the pair_style deepmd form) instead of two-pass."""
    outs = [m.evaluate(pos, types, box, atom_virial=False) for m in models]
    n = len(types)
    f = np.array([o.forces for o in outs])                         # (m, N, 3)
    mean_f = f.mean(axis=0)
    ef = np.sqrt(np.maximum((f ** 2).sum(-1).mean(0) - (mean_f ** 2).sum(-1), 0.0))
    if relative is not None:
        ef = ef / (np.sqrt((mean_f ** 2).sum(-1)) + relative)
    w = np.array([o.virial.ravel() for o in outs]) / n              # (m, 9)
    ev = np.sqrt(np.maximum((w ** 2).mean(0) - w.mean(0) ** 2, 0.0))
    if relative_v is not None:
        ev = ev / (np.abs(w.mean(0)) + relative_v)
    e = np.array([o.energy for o in outs]) / n
    de = np.sqrt(max((e ** 2).mean() - e.mean() ** 2, 0.0))
    return np.array([ev.max(), ev.min(), np.sqrt((ev ** 2).sum() / 9), ef.max(), ef.min(),
                     ef.sum() / n, de]), ef


# The one-pass moments lose digits to cancellation: error ~ 1e-16 * <x^2> / devi.  The random
# models disagree by O(1) of their forces and virials, so <x^2> / devi^2 < 1e3: 1e-11 relative
# is safe.  Energies per atom: |E/N| ~ 3 eV against devi_e ~ 0.5 eV, the same bound.
RTOL = 1e-11


@pytest.mark.parametrize("relative,relative_v", [(None, None), (0.5, 0.2)])
def test_frame_deviation_matches_definitions(ensemble, relative, relative_v):
    _, models = ensemble
    for pos, types, box in _frames(2):
        outs = [m.evaluate(pos, types, box, atom_virial=False) for m in models]
        d = frame_deviation([o.energy for o in outs], [o.forces for o in outs],
                            [o.virial for o in outs], relative, relative_v)
        ref, ef = _reference(models, pos, types, box, relative, relative_v)
        got = np.array([d.max_devi_v, d.min_devi_v, d.avg_devi_v, d.max_devi_f, d.min_devi_f,
                        d.avg_devi_f, d.devi_e])
        assert np.allclose(got, ref, rtol=RTOL, atol=0)
        assert np.allclose(d.atom_devi_f, ef, rtol=RTOL, atol=0)
        assert ref.min() > 1e-3  # the models really disagree: the test has teeth


def test_identical_models_have_zero_deviation(ensemble):
    _, models = ensemble
    pos, types, box = _frames(1)[0]
    o = models[0].evaluate(pos, types, box)
    d = frame_deviation([o.energy] * 3, [o.forces] * 3, [o.virial] * 3)
    # (x + x + x) / 3 rounds to x or a neighbour: deviations of a few ulps of the values
    assert d.max_devi_f <= 4e-16 * np.abs(o.forces).max()
    assert d.max_devi_v <= 4e-16 * np.abs(o.virial).max() / NATOMS
    assert d.devi_e <= 4e-16 * abs(o.energy) / NATOMS


def _read(path):
    lines = Path(path).read_text().splitlines()
    return lines, np.loadtxt(path, ndmin=2)


def test_command_on_npy_system_file_format(ensemble, tmp_path):
    paths, models = ensemble
    frames = _frames(3)
    sys_dir = write_system(tmp_path / "sys", np.array([f[0] for f in frames]),
                           np.array([f[2] for f in frames]), frames[0][1], ["O", "H"])
    out = tmp_path / "md.out"
    rc = main(["model-devi", "-m", *map(str, paths), "-s", str(sys_dir), "-o", str(out),
               "-f", "10", "--threads", "1"])
    assert rc == 0
    lines, data = _read(out)
    assert lines[0] == f"# {sys_dir}"
    assert lines[1] == HEADER
    assert data.shape == (3, 8)
    assert data[:, 0].tolist() == [0, 10, 20]
    for row, (pos, types, box) in zip(data, frames):
        ref, _ = _reference(models, pos, types, box)
        # six significant digits in the file (%.6e): half a unit of the last digit
        assert np.allclose(row[1:], ref, rtol=5e-7, atol=0)
    # formats of pair_style deepmd: %12d then " %18.6e" per column
    assert lines[2][:12] == f"{0:12d}" and len(lines[2]) == 12 + 7 * 19
    # an existing output is kept as #md.out.1#, then #md.out.2#, like every command's output
    first = out.read_text()
    out.write_text("previous\n")
    for n, kept in ((1, "previous\n"), (2, first)):
        assert main(["model-devi", "-m", *map(str, paths), "-s", str(sys_dir), "-o", str(out),
                     "-f", "10", "--threads", "1"]) == 0
        assert (tmp_path / f"#md.out.{n}#").read_text() == kept and out.read_text() == first


def test_failed_command_leaves_the_existing_output_in_place(ensemble, tmp_path, capsys):
    """A run that fails after backing up the existing output gives it its name back; an output
    naming an input is refused before anything moves."""
    paths, _ = ensemble
    frames = _frames(1)
    good = write_system(tmp_path / "good", frames[0][0][None], frames[0][2][None], frames[0][1], ["O", "H"])
    bad = write_system(tmp_path / "bad", frames[0][0][None], frames[0][2][None], frames[0][1], ["O", "C"])
    out = tmp_path / "devi.out"
    out.write_text("previous\n")
    # the first system is written, the second fails (element C): the partial file goes
    assert main(["model-devi", "-m", *map(str, paths), "-s", str(good), str(bad), "-o", str(out),
                 "--threads", "1"]) == 2
    assert "atom 1 is 'C', an element not in" in capsys.readouterr().err
    assert out.read_text() == "previous\n" and sorted(p.name for p in tmp_path.iterdir()) == [
        "bad", "devi.out", "good"]
    xyz = tmp_path / "traj.xyz"
    write_extxyz(xyz, [["O", "H"][t] for t in frames[0][1]], frames[0][0], frames[0][2])
    before = xyz.read_text()
    assert main(["model-devi", "-m", *map(str, paths), "-s", str(xyz), "-o", str(xyz)]) == 2
    err = capsys.readouterr().err.strip()
    assert "-o names the input -s" in err and len(err.splitlines()) == 1
    assert xyz.read_text() == before and not (tmp_path / "#traj.xyz.1#").exists()


def test_interrupted_command_leaves_the_existing_output_in_place(ensemble, tmp_path, monkeypatch):
    """Ctrl-C while the rows are written (after a first block reached the file): exit 130, the
    partial file goes and the earlier one is back under its name, byte for byte."""
    import numdp.io.model_devi_file as mdf

    paths, _ = ensemble
    frames = _frames(1)
    good = write_system(tmp_path / "good", frames[0][0][None], frames[0][2][None], frames[0][1], ["O", "H"])
    out = tmp_path / "devi.out"
    out.write_bytes(b"previous\n\x00")
    write_block = mdf.write_block
    calls = []

    def interrupted(fp, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        write_block(fp, *args, **kwargs)

    monkeypatch.setattr(mdf, "write_block", interrupted)
    assert main(["model-devi", "-m", *map(str, paths), "-s", str(good), str(good), "-o", str(out),
                 "--threads", "1"]) == 130
    assert len(calls) == 2
    assert out.read_bytes() == b"previous\n\x00"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["devi.out", "good"]


def test_command_atomic_relative_and_other_formats(ensemble, tmp_path):
    paths, models = ensemble
    frames = _frames(2)
    xyz = tmp_path / "traj.xyz"
    for pos, types, box in frames:  # write_extxyz writes one frame: concatenate two
        one = tmp_path / "one.xyz"
        write_extxyz(one, [["O", "H"][t] for t in types], pos, box)
        with open(xyz, "a") as fp:
            fp.write(one.read_text())
    h5 = tmp_path / "traj.h5"
    w = H5MDWriter(h5, frames[0][1], np.ones(NATOMS), ["O", "H"], fields=("position",))
    for k, (pos, types, box) in enumerate(frames):
        w.append(k, 0.001 * k, pos, None, None, box, {})
    w.close()
    out = tmp_path / "devi.out"
    rc = main(["model-devi", "-m", *map(str, paths), "-s", str(xyz), str(h5), "-o", str(out),
               "--atomic", "--relative", "0.5", "--relative_v", "0.2", "--threads", "1"])
    assert rc == 0
    lines, data = _read(out)
    assert lines[1] == HEADER + f"{'atm_devi_f(N)':>19}"
    assert lines[0] == f"# {xyz}" and lines[2 + len(frames)] == f"# {h5}"
    assert data.shape == (4, 8 + NATOMS)
    assert data[:, 0].tolist() == [0, 1, 0, 1]
    for row, (pos, types, box) in zip(data, frames + frames):
        ref, ef = _reference(models, pos, types, box, 0.5, 0.2)
        assert np.allclose(row[1:8], ref, rtol=5e-7, atol=0)
        assert np.allclose(row[8:], ef, rtol=5e-7, atol=0)


def test_command_errors(ensemble, tmp_path, capsys):
    paths, _ = ensemble
    frames = _frames(1)
    sys_dir = write_system(tmp_path / "sys", frames[0][0][None], frames[0][2][None], frames[0][1],
                           ["O", "C"])
    other = tmp_path / "other.h5"
    p = _params(9)
    p.type_map = ["H", "O"]
    write_model(p, other)
    cases = [
        (["-m", str(paths[0]), "-s", str(sys_dir)], "two or more models"),
        (["-m", str(paths[0]), str(other), "-s", str(sys_dir)], "differs from"),
        (["-m", *map(str, paths), "-s", str(sys_dir)], "'C', an element not in the model's"),
        (["-m", *map(str, paths), "-s", str(tmp_path / "nope")], "system not found"),
        (["-m", *map(str, paths), "-s", str(sys_dir), "--relative", "-1"], "--relative"),
    ]
    for argv, message in cases:
        out = tmp_path / "e.out"
        assert main(["model-devi", *argv, "-o", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
        assert not out.exists()


# -- the environment matrix shared by an ensemble (numdp.model.dp_model.compute_ensemble) ---------
def _shared_ensemble(precision, nthreads):
    """Models 0, 1, 2 with model 0's rcut, rcut_smth, sel, davg and dstd (model 2 compressed, with
    another chunk size, so its shared evaluation is chunked differently from its own) and model 3
    with other davg / dstd."""
    from numdp.model.compress import compress

    base = _params(1)
    out = []
    for seed in (1, 2, 3, 4):
        p = _params(seed)
        if seed != 4:
            p.descriptor.davg, p.descriptor.dstd = base.descriptor.davg.copy(), base.descriptor.dstd.copy()
        if seed == 3:
            p.min_nbor_dist = 0.9      # random_config's minimum separation
            p = compress(p, dx=0.01, order=5)[0]
        out.append(DPModel(p, nthreads=nthreads, chunk=23 if seed == 3 else 16, precision=precision))
    return out


@pytest.mark.parametrize("nthreads", [1, 2])
@pytest.mark.parametrize("precision", ["double", "mix32", "mix16"])
def test_shared_environment_equals_separate_evaluations(precision, nthreads):
    from numdp.model.dp_model import compute_ensemble
    from numdp.neighbor import build_nlist, extend
    from tests_util import U32, U64, order_bound

    models = _shared_ensemble(precision, nthreads)
    assert models[0].shares_environment(models[1]) and models[0].shares_environment(models[2])
    assert not models[0].shares_environment(models[3])
    with pytest.raises(ValueError, match="davg, dstd or excluded type pairs"):
        compute_ensemble(models, np.zeros((1, 3)), np.zeros((1, 48), np.int32), np.zeros(1, np.int32))
    pos, types, box = random_config(100, 2, box_len=10.0, tilt=0.2, seed=5)
    types = types.astype(np.int32)
    ext = extend(pos, types, box, 4.0)
    nl = build_nlist(ext, 4.0, [24, 24], 2)
    shared = compute_ensemble(models[:3], ext.positions, nl.nlist, types)
    alone = [m.compute(ext.positions, nl.nlist, types) for m in models[:3]]
    # models 0 and 1 are chunked as model 0 alone: the same operations in the same order
    for s, a in zip(shared[:2], alone[:2]):
        for name in ("atom_energy", "force", "virial"):
            assert np.array_equal(getattr(s, name), getattr(a, name)), name
    # model 2: other chunks, so (i) the fitting GEMMs may block its rows differently (chains of
    # n_fit = 24 + 8 + 8 + 1 products in the nets' arithmetic: float32 for mix32 and mix16, whose
    # fp16 operands are rounded element by element, in the same way in both evaluations) and
    # (ii) the forces and virial sum their pair terms (<= 2 x 48 per atom, two per pair) and the
    # workers' buffers in another order in float64
    u_net = U64 if precision == "double" else U32
    rel = order_bound(u_net, 41) + order_bound(U64, 2 * 48 + nthreads)
    s, a = shared[2], alone[2]
    assert np.abs(s.atom_energy - a.atom_energy).max() <= order_bound(u_net, 41) * np.abs(a.atom_energy).max()
    assert np.abs(s.force - a.force).max() <= rel * np.abs(a.force).max()
    assert np.abs(s.virial - a.virial).max() <= rel * np.abs(a.virial).max()
    assert np.abs(a.force).max() > 0.1 and np.abs(shared[1].force - shared[2].force).max() > 0.1  # not all alike


def test_evaluate_ensemble_equals_evaluate():
    """numdp model-devi's evaluation (evaluate_ensemble): models 0-2 on one neighbour list and
    environment matrix, model 3 alone; the same results as evaluate, exactly where the chunking is
    model 0's and within the bound of test_shared_environment_equals_separate_evaluations else."""
    from numdp.model.dp_model import evaluate_ensemble
    from tests_util import U64, order_bound

    models = _shared_ensemble("double", 1)
    pos, types, box = random_config(100, 2, box_len=10.0, tilt=0.2, seed=6)
    got = evaluate_ensemble(models, pos, types, box)
    ref = [m.evaluate(pos, types, box, atom_virial=False) for m in models]
    for k in (0, 1, 3):
        assert got[k].energy == ref[k].energy
        assert np.array_equal(got[k].forces, ref[k].forces) and np.array_equal(got[k].virial, ref[k].virial)
    rel = order_bound(U64, 41) + order_bound(U64, 2 * 48 + 1)
    assert abs(got[2].energy - ref[2].energy) <= order_bound(U64, 41) * np.abs(ref[2].atom_energies).sum()
    assert np.abs(got[2].forces - ref[2].forces).max() <= rel * np.abs(ref[2].forces).max()
    assert np.abs(got[2].virial - ref[2].virial).max() <= rel * np.abs(ref[2].virial).max()


def _reference_real(models, pos, types, box, label, relative=None, relative_v=None):
    """The models' RMS errors against `label` = (energy, forces, virial), from the definitions
    (DeePMD-kit's real_error): the mean over models of squared distances to the label."""
    outs = [m.evaluate(pos, types, box, atom_virial=False) for m in models]
    n = len(types)
    e0, f0, v0 = label
    f = np.array([o.forces for o in outs])
    ef = np.sqrt(((f - f0) ** 2).sum(-1).mean(0))
    if relative is not None:
        ef = ef / (np.linalg.norm(f0, axis=-1) + relative)
    w = np.array([o.virial.ravel() for o in outs]) / n
    ev = np.sqrt(((w - v0.ravel() / n) ** 2).mean(0))
    if relative_v is not None:
        ev = ev / (np.abs(v0.ravel() / n) + relative_v)
    de = np.sqrt(np.mean((np.array([o.energy for o in outs]) / n - e0 / n) ** 2))
    return np.array([ev.max(), ev.min(), np.sqrt((ev ** 2).sum() / 9), ef.max(), ef.min(),
                     ef.sum() / n, de]), ef


def _labels(models, frames):
    """Labels near the models' predictions (model 0 plus offsets), so the errors are O(offsets)."""
    out = []
    for k, (pos, types, box) in enumerate(frames):
        o = models[0].evaluate(pos, types, box, atom_virial=False)
        rng = np.random.default_rng(k)
        out.append((o.energy + 0.3, o.forces + rng.normal(0, 0.2, o.forces.shape),
                    o.virial + rng.normal(0, 0.5, (3, 3))))
    return out


@pytest.mark.parametrize("relative,relative_v", [(None, None), (0.5, 0.2)])
def test_real_error_matches_definitions(ensemble, relative, relative_v):
    from numdp.model.deviation import Reference

    _, models = ensemble
    frames = _frames(2)
    for (pos, types, box), lab in zip(frames, _labels(models, frames)):
        outs = [m.evaluate(pos, types, box, atom_virial=False) for m in models]
        d = frame_deviation([o.energy for o in outs], [o.forces for o in outs],
                            [o.virial for o in outs], relative, relative_v, Reference(*lab))
        ref, ef = _reference_real(models, pos, types, box, lab, relative, relative_v)
        got = np.array([d.max_devi_v, d.min_devi_v, d.avg_devi_v, d.max_devi_f, d.min_devi_f,
                        d.avg_devi_f, d.devi_e])
        # the same sums in another order: a few ulps (the terms are positive: no cancellation)
        assert np.allclose(got, ref, rtol=1e-14, atol=0) and np.allclose(d.atom_devi_f, ef, rtol=1e-14, atol=0)
        plain = frame_deviation([o.energy for o in outs], [o.forces for o in outs], [o.virial for o in outs])
        assert abs(d.devi_e - plain.devi_e) > 1e-3   # against the labels, not the mean


def test_calc_model_devi_python_api(ensemble, tmp_path):
    """numdp.infer.calc_model_devi: DeePMD-kit's table (step, 6 virial/force columns, devi_e,
    atomic columns) equal to frame_deviation of each frame; real_data in DeePMD-kit's per-atom
    units; fname appended in the model_devi.out format."""
    from numdp.infer import DeepPot, calc_model_devi

    paths, models = ensemble
    frames = _frames(3)
    coord = np.array([f[0] for f in frames])
    box = np.array([f[2] for f in frames])
    types = frames[0][1]
    pots = [DeepPot(p, threads=1) for p in paths]
    out = tmp_path / "devi.out"
    table = calc_model_devi(coord, box, types, pots, fname=str(out), frequency=5, atomic=True,
                            relative=0.5)
    assert table.shape == (3, 8 + NATOMS) and table[:, 0].tolist() == [0, 5, 10]
    for row, (pos, t, b) in zip(table, frames):
        ref, ef = _reference(models, pos, t, b, relative=0.5)
        assert np.allclose(row[1:8], ref, rtol=RTOL, atol=0) and np.allclose(row[8:], ef, rtol=RTOL, atol=0)
    calc_model_devi(coord, box, types, pots, fname=str(out))
    lines, data = out.read_text().splitlines(), None
    assert lines[0].startswith("#       step") and len(lines) == 1 + 3 + 1 + 3
    labels = _labels(models, frames)
    real = {"energy": np.array([lab[0] for lab in labels]) / NATOMS,
            "force": np.array([lab[1] for lab in labels]),
            "virial": np.array([lab[2].ravel() for lab in labels]) / NATOMS}
    table = calc_model_devi(coord, box, types, pots, real_data=real)
    for row, (pos, t, b), lab in zip(table, frames, labels):
        ref, _ = _reference_real(models, pos, t, b, lab)
        assert np.allclose(row[1:8], ref, rtol=1e-14, atol=0)
    from numdp.errors import InputError

    with pytest.raises(InputError, match="real_data has no 'virial'"):
        calc_model_devi(coord, box, types, pots, real_data={"energy": real["energy"], "force": real["force"]})
    with pytest.raises(InputError, match="models must be a non-empty list of numdp.infer.DeepPot"):
        calc_model_devi(coord, box, types, models)


def test_command_real_error(ensemble, tmp_path, capsys):
    """numdp model-devi --real_error: one model is enough; the rows are the RMS errors against
    the system's labels; a system without virial labels or a file without labels is refused."""
    paths, models = ensemble
    frames = _frames(2)
    labels = _labels(models, frames)
    sys_dir = write_system(tmp_path / "sys", np.array([f[0] for f in frames]), np.array([f[2] for f in frames]),
                           frames[0][1], ["O", "H"], energy=np.array([lab[0] for lab in labels]),
                           force=np.array([lab[1] for lab in labels]), virial=np.array([lab[2] for lab in labels]))
    out = tmp_path / "real.out"
    assert main(["model-devi", "-m", str(paths[0]), str(paths[1]), "-s", str(sys_dir), "-o", str(out),
                 "--real_error", "--threads", "1"]) == 0
    _, data = _read(out)
    for row, (pos, t, b), lab in zip(data, frames, labels):
        ref, _ = _reference_real(models[:2], pos, t, b, lab)
        assert np.allclose(row[1:], ref, rtol=5e-7, atol=0)
    assert main(["model-devi", "-m", str(paths[0]), "-s", str(sys_dir), "-o", str(out), "--real_error"]) == 0
    no_virial = write_system(tmp_path / "nov", np.array([f[0] for f in frames]), np.array([f[2] for f in frames]),
                             frames[0][1], ["O", "H"], energy=np.array([lab[0] for lab in labels]),
                             force=np.array([lab[1] for lab in labels]))
    xyz = tmp_path / "f.xyz"
    write_extxyz(xyz, [["O", "H"][t] for t in frames[0][1]], frames[0][0], frames[0][2])
    capsys.readouterr()
    for system, message in ((no_virial, "--real_error needs virial labels (virial.npy)"),
                            (xyz, "--real_error needs labelled DeePMD npy systems")):
        assert main(["model-devi", "-m", str(paths[0]), "-s", str(system), "-o", str(tmp_path / "x.out"),
                     "--real_error"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


def test_set_prefix(ensemble, tmp_path, capsys):
    """-S PREFIX (dp model-devi -S): the frames of the PREFIX.* sets."""
    paths, _ = ensemble
    frames = _frames(2)
    sys_dir = write_system(tmp_path / "sys", np.array([f[0] for f in frames]),
                           np.array([f[2] for f in frames]), frames[0][1], ["O", "H"])
    out = tmp_path / "md.out"
    assert main(["model-devi", "-m", *map(str, paths), "-s", str(sys_dir), "-o", str(out)]) == 0
    expected = _read(out)[1]
    (sys_dir / "set.000").rename(sys_dir / "val.000")
    assert main(["model-devi", "-m", *map(str, paths), "-s", str(sys_dir), "-o", str(out)]) == 2
    assert f"{sys_dir}: no set.* directories with frames" in capsys.readouterr().err
    assert main(["model-devi", "-m", *map(str, paths), "-s", str(sys_dir), "-o", str(out), "-S", "val"]) == 0
    assert np.array_equal(_read(out)[1], expected)
