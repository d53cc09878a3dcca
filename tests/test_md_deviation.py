"""Model deviation during `numdp run` ([model_devi], issue 15 item 4): rows against the deviation
maths on `model.evaluate` of the trajectory frames written at the same steps, two MPI ranks
against serial, restart and backup of the file, and the ensemble errors.

The system is test_mpi's rocksalt crystal (64 atoms) driven by random model 0; models 1 and 2 are
other random models, model 2 with another sel (so a second neighbour list is formatted from the
shared candidates).  Model 1 has model 0's rcut, rcut_smth, sel, davg and dstd, as a DP-GEN
ensemble trained on one data set has, so it is evaluated on model 0's environment matrix
(numdp.model.dp_model.compute_ensemble): every test below covers that path, model 2 the separate
one."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from numdp.config import load_run_settings
from numdp.errors import InputError
from numdp.io.model_file import read_model, write_model
from numdp.md.setup import build_simulation
from numdp.model.deviation import frame_deviation
from numdp.model.dp_model import DPModel
from randmodel import random_params
from test_mpi import C_ROUND, MPIEXEC, U32, U64, frames, make_run, numdp_run, same_run_bounds

STEPS = 20
EVERY = 5
DEVI = f"""
[model_devi]
every = {EVERY}
file = "model_devi.out"
atomic = true
"""
SEL = {1: [24, 24], 3: [24, 24], 4: [22, 26]}
NNEI = 48      # the largest sum(sel): neighbours per atom
RCUT = 4.0


def _params(seed):
    return random_params(ntypes=2, sel=SEL[seed] if seed in SEL else [24, 24], neuron=(4, 8), axis_neuron=2,
                         fitting=(8, 8), rcut=RCUT, rcut_smth=1.0, seed=seed)


def ensemble_dir(path: Path, extra=DEVI, steps=STEPS) -> Path:
    """test_mpi's run directory (model.h5 = model 0, seed 2) plus m1.h5 and m2.h5 and [model_devi]."""
    make_run(path, cells=(2, 2, 2), steps=steps, every=EVERY, extra=extra)
    m0 = read_model(path / "model.h5").descriptor
    for k, seed in ((1, 3), (2, 4)):
        params = _params(seed)
        if k == 1:  # model 0's normalisation: the two share the environment matrix
            params.descriptor.davg, params.descriptor.dstd = m0.davg.copy(), m0.dstd.copy()
        write_model(params, path / f"m{k}.h5")
    text = (path / "md.toml").read_text().replace('file = "model.h5"', 'file = ["model.h5", "m1.h5", "m2.h5"]')
    (path / "md.toml").write_text(text)
    return path


def read_devi(path: Path):
    lines = (path / "model_devi.out").read_text().splitlines()
    return lines[0], np.loadtxt(path / "model_devi.out", ndmin=2)


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    path = ensemble_dir(tmp_path_factory.mktemp("serial"))
    numdp_run(path, 1)
    return path


# The file holds %.6e values: 7 significant digits, so each printed value is within 5e-7 |v| of
# the computed one.  The computed values differ from the reference (model.evaluate of the frame)
# only by the order of sums (candidates with a skin, ghosts) and by the frame's positions, which
# are the run's own float64 positions: each force by at most EPS_F = C_ROUND u64 max|F| (the
# round-off model of test_mpi), and a force deviation, a seminorm of the forces of the models, by
# at most that much.  The virial per atom is a sum of at most NNEI pair terms r (x) f with
# |r| <= rcut, each force off by <= EPS_F: off by <= NNEI rcut EPS_F.
PRINT = 5e-7


def test_rows_equal_the_deviation_of_the_trajectory_frames(serial):
    header, rows = read_devi(serial)
    assert header == ("#       step         max_devi_v         min_devi_v         avg_devi_v"
                      "         max_devi_f         min_devi_f         avg_devi_f      atm_devi_f(N)")
    traj = frames(serial)
    # rows at every multiple of `every`, step 0 included, each with its trajectory frame
    assert np.array_equal(rows[:, 0], np.arange(0, STEPS + 1, EVERY))
    assert np.array_equal(traj["step"], rows[:, 0])
    models = [DPModel(read_model(serial / name), nthreads=1) for name in ("model.h5", "m1.h5", "m2.h5")]
    types = np.tile([0, 0, 0, 0, 1, 1, 1, 1], 8)
    evaluated = [[m.evaluate(pos, types, box, atom_virial=False) for m in models]
                 for pos, box in zip(traj["position"], traj["box"])]
    # the round-off scale is that of the pair terms, not of the net forces (which vanish in the
    # perfect crystal of step 0): test_mpi's model takes the largest net force of the run's
    # thermal frames as that scale
    fmax = max(np.abs(o.forces).max() for outs in evaluated for o in outs)
    eps_f = C_ROUND * U64 * fmax
    for row, outs in zip(rows, evaluated):
        d = frame_deviation([o.energy for o in outs], [o.forces for o in outs], [o.virial for o in outs])
        ref = np.array([d.max_devi_v, d.min_devi_v, d.avg_devi_v, d.max_devi_f, d.min_devi_f, d.avg_devi_f,
                        *d.atom_devi_f])
        bound = PRINT * np.abs(ref) + np.r_[[NNEI * RCUT * eps_f] * 3, [eps_f] * (3 + len(types))]
        assert np.all(np.abs(row[1:] - ref) <= bound), np.abs(row[1:] - ref).max()
    assert rows[-1, 4] > 1e-3   # the models disagree: the comparison is not of zeros


def test_deviation_does_not_change_the_dynamics(serial, tmp_path):
    """The extra models are only evaluated: model 0's trajectory is bit for bit the one without them."""
    path = make_run(tmp_path, cells=(2, 2, 2), steps=STEPS, every=EVERY)
    numdp_run(path, 1)
    a, b = frames(serial), frames(path)
    for key in ("position", "velocity", "force", "pe"):
        assert np.array_equal(a[key], b[key]), key


def assert_rows_close(serial: Path, other: Path, u=U64):
    """The deviation rows of `other` equal those of the serial double run within the bounds of
    two runs that differ by the order of sums in arithmetic of round-off u (test_mpi)."""
    _, one = read_devi(serial)
    _, two = read_devi(other)
    assert np.array_equal(one[:, 0], two[:, 0])
    # Per frame, model 0's forces differ by <= `force` of same_run_bounds and positions by <= `pos`.
    # `force` is linear in the force scale max|F|, so for models 1 and 2 it is scaled by the
    # largest |F| of all three models over model 0's.  A force deviation (a seminorm of the
    # models' forces) moves by at most that; the virial per atom by NNEI (rcut dF + |F| dx).
    traj = frames(serial)
    pos, force, _ = same_run_bounds(traj, u)
    fmax0 = np.abs(traj["force"]).max()
    models = [DPModel(read_model(serial / n), nthreads=1) for n in ("m1.h5", "m2.h5")]
    types = np.tile([0, 0, 0, 0, 1, 1, 1, 1], 8)
    fall = max([fmax0] + [np.abs(m.evaluate(p, types, box).forces).max()
                          for p, box in zip(traj["position"], traj["box"]) for m in models])
    df = force * fall / fmax0
    dv = NNEI * (RCUT * df + fall * pos)
    bound = 2 * PRINT * np.abs(one[:, 1:]) + np.column_stack([dv] * 3 + [np.full_like(dv, df)] * (one.shape[1] - 4))
    diff = np.abs(one[:, 1:] - two[:, 1:])
    assert np.all(diff <= bound), diff.max()


def test_model_1_runs_on_model_0s_environment_matrix(serial, tmp_path):
    """Every deviation step (step 0 included) evaluates model 1 in model 0's force call, on its
    environment matrix; the rows are the subprocess run's."""
    import io

    path = ensemble_dir(tmp_path)
    sim, end = build_simulation(load_run_settings(path / "md.toml"), screen=io.StringIO())
    try:
        sim.run(end)
    finally:
        sim.close()
    assert sim.provider.shared_env == STEPS // EVERY + 1
    assert_rows_close(serial, path)


@pytest.mark.skipif(MPIEXEC is None, reason="needs mpiexec")
def test_two_ranks_equal_serial(serial, tmp_path):
    path = ensemble_dir(tmp_path)
    r = numdp_run(path, 2)
    assert "2 MPI ranks" in r.stdout and "model deviation of 3 models" in r.stdout
    assert "one environment matrix for 2 of them" in r.stdout
    assert_rows_close(serial, path)


@pytest.mark.skipif(MPIEXEC is None, reason="needs mpiexec")
def test_two_ranks_with_mix32_deviation_models(serial, tmp_path):
    """[model_devi] precision = "mix32" under mpiexec -n 2: the rows equal the serial double run's
    within the bounds of a run that differs by the order of sums (model 0) and float32 round-off
    (the deviation models)."""
    path = ensemble_dir(tmp_path, extra=DEVI + 'precision = "mix32"\n')
    r = numdp_run(path, 2)
    assert "2 MPI ranks" in r.stdout and "models 1-2 in mix32" in r.stdout
    assert_rows_close(serial, path, u=U32)


def test_compressed_mix32_ensemble_matches_double(serial, tmp_path):
    """Compressed models under mix32 (all three) give the double run's rows within float32
    round-off bounds (the quintic tables are exact below float32 round-off, as in test_mpi)."""
    from numdp.model.compress import compress

    path = ensemble_dir(tmp_path)
    for name in ("model.h5", "m1.h5", "m2.h5"):
        params = read_model(path / name)
        params.min_nbor_dist = 1.5     # no training data: the nearest pairs of the crystal are 2 A
        write_model(compress(params, dx=0.01, order=5)[0], path / name)
    text = (path / "md.toml").read_text().replace('"m2.h5"]', '"m2.h5"]\nprecision = "mix32"')
    (path / "md.toml").write_text(text)
    r = numdp_run(path, 1)
    assert "compressed, precision mix32" in r.stdout
    assert_rows_close(serial, path, u=U32)


def test_deviation_models_in_mix32_beside_a_double_model_0(serial, tmp_path):
    """[model_devi] precision = "mix32": models 1 and 2 are evaluated in mix32 (model 1 still on
    model 0's environment matrix, which is float64 in every precision) while model 0 drives the
    dynamics in double, so the trajectory is the double run's bit for bit and the rows differ
    from the double run's only by models 1 and 2's float32 round-off: each force by at most
    EPS_F = C_ROUND u32 max|F| (test_mpi), each force deviation (a seminorm of the models'
    forces) by as much, and the virial per atom by NNEI rcut EPS_F.  Evaluating them in mix16
    would move forces by up to ~1e-3 max|F|, far outside these bounds."""
    import io

    from numdp.md.deviation import DeviationReporter

    path = ensemble_dir(tmp_path, extra=DEVI + 'precision = "mix32"\n')
    screen = io.StringIO()
    sim, end = build_simulation(load_run_settings(path / "md.toml"), screen=screen)
    try:
        devi = [r for r in sim.reporters if isinstance(r, DeviationReporter)]
        assert [m.precision for m in devi[0].models] == ["mix32", "mix32"]
        assert sim.provider.model.precision == "double"
        sim.run(end)
    finally:
        sim.close()
    assert "models 1-2 in mix32" in screen.getvalue()
    assert sim.provider.shared_env == STEPS // EVERY + 1
    a, b = frames(serial), frames(path)
    for key in ("position", "velocity", "force", "pe"):
        assert np.array_equal(a[key], b[key]), key
    _, one = read_devi(serial)
    _, two = read_devi(path)
    assert np.array_equal(one[:, 0], two[:, 0])
    models = [DPModel(read_model(serial / n), nthreads=1) for n in ("m1.h5", "m2.h5")]
    types = np.tile([0, 0, 0, 0, 1, 1, 1, 1], 8)
    fall = max(np.abs(m.evaluate(p, types, box).forces).max()
               for p, box in zip(a["position"], a["box"]) for m in models)
    df = C_ROUND * (U32 + U64) * fall
    bound = 2 * PRINT * np.abs(one[:, 1:]) + np.r_[[NNEI * RCUT * df] * 3, [df] * (one.shape[1] - 4)]
    diff = np.abs(one[:, 1:] - two[:, 1:])
    assert np.all(diff <= bound), (diff - bound).max()


def test_restart_appends_and_a_new_run_backs_up(serial, tmp_path):
    path = ensemble_dir(tmp_path, steps=10)
    numdp_run(path, 1)
    # leave rows past the checkpoint (step 10) in the file: a restart must drop them
    shutil.copy(serial / "model_devi.out", path / "model_devi.out")
    (path / "md.toml").write_text((path / "md.toml").read_text().replace("steps = 10", f"steps = {STEPS}"))
    numdp_run(path, 1, "--restart", "checkpoint.h5")
    assert (path / "model_devi.out").read_text() == (serial / "model_devi.out").read_text()
    numdp_run(path, 1)   # a new run in the same place keeps the previous file
    assert (path / "#model_devi.out.1#").read_text() == (serial / "model_devi.out").read_text()


def _settings(path: Path, model_line: str, devi=DEVI):
    if not (path / "md.toml.orig").exists():
        shutil.copy(path / "md.toml", path / "md.toml.orig")
    text = (path / "md.toml.orig").read_text()
    text = text.replace('file = ["model.h5", "m1.h5", "m2.h5"]', model_line)
    text = text.replace(DEVI, devi)
    (path / "md.toml").write_text(text)
    return load_run_settings(path / "md.toml")


def test_ensemble_errors(tmp_path):
    path = ensemble_dir(tmp_path)
    p = _params(5)
    p.type_map = ["B", "A"]
    write_model(p, path / "swapped.h5")
    p = random_params(ntypes=2, sel=[24, 24], neuron=(4, 8), axis_neuron=2, fitting=(8, 8), rcut=4.5, seed=6)
    write_model(p, path / "far.h5")
    with pytest.raises(InputError, match=r"md.toml: \[model\] file: .*swapped.h5 has type_map \['B', 'A'\]"):
        build_simulation(_settings(path, 'file = ["model.h5", "swapped.h5"]'))
    with pytest.raises(InputError, match=r"md.toml: \[model\] file: .*far.h5 has rcut 4.5 A"):
        build_simulation(_settings(path, 'file = ["model.h5", "far.h5"]'))
    with pytest.raises(InputError, match=r"\[model_devi\]: needs an ensemble of two or more models"):
        _settings(path, 'file = "model.h5"')
    with pytest.raises(InputError, match=r"\[model\] file: 2 models are given but there is no \[model_devi\]"):
        _settings(path, 'file = ["model.h5", "m1.h5"]', devi="")
    with pytest.raises(InputError, match=r"\[model_devi\] relative: must be >= 0"):
        _settings(path, 'file = ["model.h5", "m1.h5"]', devi="[model_devi]\nrelative = -1.0\n")
    with pytest.raises(InputError, match=r"\[model_devi\] precision: must be one of double, mix32, mix16, got 'half'"):
        _settings(path, 'file = ["model.h5", "m1.h5"]', devi='[model_devi]\nprecision = "half"\n')


def test_docs_candidate_selection_runs_on_a_run_with_model_devi(serial, tmp_path, monkeypatch):
    """The candidate-selection block of docs/model-deviation.md, run as printed (only its output
    interval and trust levels replaced) on the serial run's model_devi.out and traj.h5md (a frame
    at every row): it writes exactly the frames whose max_devi_f lies in [lo, hi)."""
    import re

    from numdp.io.structure import read_structure

    doc = (Path(__file__).resolve().parents[1] / "docs" / "model-deviation.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", doc, re.S) if "candidate_" in b]
    assert len(blocks) == 1
    _, rows = read_devi(serial)
    lo, hi = np.sort(rows[:, 4])[[1, -1]]   # some rows below lo, some at or above hi
    code = blocks[0]
    code, n_every = re.subn(r"every = \d+ ", f"every = {EVERY} ", code)
    code, n_levels = re.subn(r"lo, hi = [0-9.]+, [0-9.]+ ", f"lo, hi = {lo!r}, {hi!r} ", code)
    assert n_every == 1 and n_levels == 1
    for name in ("model_devi.out", "traj.h5md"):
        shutil.copy(serial / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/model-deviation.md", "exec"), {})
    chosen = rows[(rows[:, 4] >= lo) & (rows[:, 4] < hi), 0].astype(int)
    assert 0 < len(chosen) < len(rows)
    written = sorted(tmp_path.glob("candidate_*.xyz"))
    assert [p.name for p in written] == [f"candidate_{s:08d}.xyz" for s in chosen]
    traj = frames(serial)
    for p, step in zip(written, chosen):
        k = int(np.flatnonzero(traj["step"] == step)[0])
        s = read_structure(p)
        # write_extxyz prints %.10f: half a unit of the 10th decimal (5e-11 A), plus the float64
        # round-off of reading back values below 100 A (~1e-14 A)
        assert np.abs(s.positions - traj["position"][k]).max() <= 5e-11 + 1e-13
