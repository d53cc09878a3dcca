"""The training loss on mixed-type systems padded with virtual atoms (type -1), as DeePMD-kit 3.2's
EnergyStdLoss computes it with its per-atom mask (atype >= 0): for a batch of frames f with N_f
real atoms,

    energy, virial: the mean over frames of ΔE_f² / N_f, Σ_ab ΔΞ_fab² / (9 N_f)  (per frame, real atoms)
    force:          Σ_f Σ_k ΔF_fk² / (3 Σ_f N_f)                                (pooled over the batch)

so a padded batch whose frames have different real-atom counts weighs each frame's force errors by
its N_f (`dp --pt train` 3.2, measured: a 3-frame batch of 12, 9, 9 real atoms with per-frame
rmse_f 9.31, 0.801, 1.01 showed rmse_f 5.93 = √((12·9.31² + 9·0.801² + 9·1.01²)/30), not the
per-frame mean's 5.43, and the loss √ 188 = 1.88e+02, not 172).  Each relation below is derived
from those formulas, with the figures of each frame alone (its batch of one, unpadded) as input.
"""
import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from numdp.train.config import BatchSize, load_config
from numdp.train.data import FrameCache, load_dataset
from numdp.train.loss import LossStats, Prefactors
from numdp.train.loop import Trainer
from test_sweep_mixed_pad import DATA, stripped

INPUT = """
[model]
type_map = ["O", "H"]
[model.descriptor]
rcut = 3.5
rcut_smth = 0.5
sel = [12, 24]
neuron = [4, 8]
axis_neuron = 2
seed = 3
[model.fitting]
neuron = [8, 8]
seed = 4
[learning_rate]
start_lr = 1e-3
stop_lr = 1e-4
decay_steps = 4
[loss]
start_pref_e = 0.2
limit_pref_e = 1
start_pref_f = 100
limit_pref_f = 1
start_pref_v = 0.1
limit_pref_v = 1
[training]
systems = ["padded"]
batch_size = 3
numb_steps = 1
seed = 11
disp_freq = 1
"""
# sums of at most a few hundred non-negative terms, each from the same forward pass: the
# relations hold to a few hundred unit round-offs (2.2e-16)
RTOL = 1e-13


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(trainer on the padded system, the stripped frames as one-frame systems, their cache, N_f)."""
    root = tmp_path_factory.mktemp("mixed_loss")
    padded = Path(shutil.copytree(DATA / "sys", root / "padded"))
    # frame 0 (12 real atoms) with force labels far from the others': a per-frame mean of the
    # force errors and their pooled mean then differ by ~20 %
    force = np.load(padded / "set.000" / "force.npy")
    force[0] *= 10.0
    np.save(padded / "set.000" / "force.npy", force)
    (root / "input.toml").write_text(INPUT)
    trainer = Trainer(load_config(root / "input.toml"), nthreads=1, stream=io.StringIO())
    plain = load_dataset(stripped(padded, root / "plain"), ["O", "H"], BatchSize(fixed=1))
    cache = FrameCache(plain, 3.5, [12, 24], 2)
    counts = [s.natoms for s in plain]
    assert counts == [12, 9, 9]
    yield trainer, plain, cache, counts
    trainer.close()


def padded_batch(trainer, pref, grad=False):
    st = LossStats(trainer.loss_options)
    if grad:
        trainer.passes.zero_grad()
    trainer._batches_loss(trainer.train_sys, trainer.train_cache, [(0, np.arange(3))], pref, st, grad)
    return st, trainer.passes.total_grad() if grad else None


def frame_alone(trainer, plain, cache, k, pref, grad=False):
    st = LossStats(trainer.loss_options)
    if grad:
        trainer.passes.zero_grad()
    trainer._batches_loss(plain, cache, [(k, np.arange(1))], pref, st, grad)
    return st, trainer.passes.total_grad() if grad else None


def test_padded_batch_figures_and_loss_as_dp(setup):
    """Step 0's lcurve row (loss, rmse_e, rmse_f, rmse_v) of the padded batch from each frame's
    own: energy and virial per frame over real atoms, forces pooled over the batch's real atoms."""
    trainer, plain, cache, n = setup
    _, pref = trainer.prefactors(0)
    st, _ = padded_batch(trainer, pref)
    alone = [frame_alone(trainer, plain, cache, k, pref)[0] for k in range(3)]
    e2 = [a.rmse_e ** 2 for a in alone]      # (ΔE_f/N_f)²
    f2 = [a.rmse_f ** 2 for a in alone]      # Σ_k ΔF_fk² / (3 N_f)
    v2 = [a.rmse_v ** 2 for a in alone]      # Σ ΔΞ_f² / (9 N_f²)
    pooled_f2 = sum(nf * x for nf, x in zip(n, f2)) / sum(n)
    assert math.isclose(st.rmse_e, math.sqrt(np.mean(e2)), rel_tol=RTOL)
    assert math.isclose(st.rmse_v, math.sqrt(np.mean(v2)), rel_tol=RTOL)
    assert math.isclose(st.rmse_f, math.sqrt(pooled_f2), rel_tol=RTOL)
    # a frame alone: L_f = p_e N_f e_f² + p_f f_f² + p_v N_f v_f² (ΔE²/N = N (ΔE/N)²)
    for a, nf, e, f, v in zip(alone, n, e2, f2, v2):
        assert math.isclose(a.loss(), pref.e * nf * e + pref.f * f + pref.v * nf * v, rel_tol=RTOL)
    want = np.mean([pref.e * nf * e + pref.v * nf * v for nf, e, v in zip(n, e2, v2)]) + pref.f * pooled_f2
    assert math.isclose(st.loss(), want, rel_tol=RTOL)
    assert math.isclose(st.shown("rmse"), math.sqrt(want), rel_tol=RTOL)


def test_padded_batch_gradient_as_dp(setup):
    """The padded batch's gradient: the frames' own gradients weighted 1/n_f for the energy and
    virial terms, N_f / Σ N for the force term (the derivatives of the formulas above)."""
    trainer, plain, cache, n = setup
    for pref, weights in ((Prefactors(0.2, 0.0, 0.1), [1.0 / 3] * 3),
                          (Prefactors(0.0, 100.0, 0.0), [nf / sum(n) for nf in n])):
        _, g = padded_batch(trainer, pref, grad=True)
        parts = [frame_alone(trainer, plain, cache, k, pref, grad=True)[1] for k in range(3)]
        want = sum(w * p for w, p in zip(weights, parts))
        scale = sum(w * np.abs(p) for w, p in zip(weights, parts))
        # each component: a sum of three products of the same seeds, to their round-off
        assert np.all(np.abs(g - want) <= 1e-12 * scale + 1e-300), pref


def padded_lmdb(path, frames=(0, 1, 2)):
    """The fixture's padded frames as an LMDB dataset (DeePMD-kit's layout, atom_types -1 for the
    virtual atoms as its LMDB reader takes them)."""
    from lmdb_util import write_lmdb
    from numdp.io.npy_system import load_system

    s = load_system(DATA / "sys")
    records = [{"atom_types": s.frame_types[f].astype(np.int64), "coords": s.coords[f], "cells": s.boxes[f],
                "energies": float(s.energy[f]), "forces": s.forces[f], "virials": s.virial[f]} for f in frames]
    return write_lmdb(path, records, {"type_map": ["O", "H"]}), s


def test_lmdb_keeps_virtual_atoms_as_npy(tmp_path):
    """An LMDB frame's type -1 atoms are virtual, as in real_atom_types.npy: `numdp test` gives the
    padded npy system's figures (same frames, same arithmetic: equal)."""
    from numdp.cli import main
    from numdp.io.npy_system import find_systems, load_system
    from test_sweep_mixed_pad import MODEL

    path, npy = padded_lmdb(tmp_path / "pad.lmdb")
    (p,) = find_systems(path)
    s = load_system(p)
    assert s.has_virtual
    np.testing.assert_array_equal(s.frame_model_types(["O", "H"]), npy.frame_model_types(["O", "H"]))
    figs = []
    for system in (path, DATA / "sys"):
        out = tmp_path / f"{len(figs)}.json"
        assert main(["test", "-m", MODEL, "-s", str(system), "--json", str(out)]) == 0
        figs.append(json.loads(out.read_text())["overall"])
    assert figs[0] == figs[1]


def test_lmdb_virtual_atoms_in_the_same_slots_of_every_frame(tmp_path):
    """Frames that all have their virtual atoms in one place still mark them (a mixed-type system),
    and the trainer's frame is its real atoms only; a type below -1 is refused."""
    from numdp.errors import InputError
    from numdp.io.npy_system import find_systems, load_system

    path, npy = padded_lmdb(tmp_path / "one.lmdb", frames=(1,))
    (p,) = find_systems(path)
    s = load_system(p)
    assert s.has_virtual
    (ds,) = load_dataset([p], ["O", "H"], BatchSize(fixed=1))
    pos, types = ds.atoms_of(0)
    keep = npy.frame_types[1] >= 0
    np.testing.assert_array_equal(pos, npy.coords[1][keep])
    np.testing.assert_array_equal(types, npy.frame_model_types(["O", "H"])[1][keep])
    assert types.shape == (9,) and (types >= 0).all()
    np.testing.assert_array_equal(ds.labels(0).forces, npy.forces[1][keep])
    from lmdb_util import write_lmdb
    bad = write_lmdb(tmp_path / "bad.lmdb", [{"atom_types": np.array([0, -2]), "coords": np.zeros((2, 3))}])
    with pytest.raises(InputError, match=r"frame 0, atom 1: type -2 is not a type index"):
        for q in find_systems(bad):
            load_system(q)
