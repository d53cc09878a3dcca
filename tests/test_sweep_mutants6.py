"""Tests for the survivors of the sixth round of mutation testing (training beyond the gradients:
schedule, statistics, sampling, checkpoints; change-bias, show, neighbor-stat, test; the readers
of DeePMD-kit's .pt/.pth/.pb/.dp files): each fails on one plausible mistake that the rest of the
suite let through (the mutant is named in the test's docstring; 2026-12-07).  Small inputs only:
no model is evaluated and no training step is taken.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from numdp.commands.change_bias import fitted_bias
from numdp.commands.neighbor_stat import _type_map
from numdp.commands.show import describe
from numdp.io import pb_read
from numdp.io.model_file import read_model
from numdp.io.npy_system import load_system
from numdp.io.pt_read import _from_checkpoint, params_from_torch
from numdp.io.torch_archive import read_torch_archive
from numdp.model.activation import canonical
from numdp.model.dp_model import DPModel
from numdp.train.schedule import PrefactorSchedule
from randmodel import random_params
from tests_util import write_system

DATA = Path(__file__).parent / "data"


# --------------------------------------------------------------------------------------------------
# training: a loss term is on only when both its start and limit prefactors are non-zero
# --------------------------------------------------------------------------------------------------


def test_a_term_with_one_zero_prefactor_stays_off():
    """Mutant `start != 0.0 or limit != 0.0` in PrefactorSchedule._active: a term with
    start_pref_e 0.02 but limit_pref_e 0 (or start_pref_v 0, limit_pref_v 1) would weigh the
    loss with limit + (start − limit)·lr/lr0 = 0.01 at half the rate.  Reference §7 (DeePMD-kit's
    has_e = start_pref_e != 0 and limit_pref_e != 0): the term is off, its prefactor exactly 0."""
    sched = PrefactorSchedule(start_e=0.02, limit_e=0.0, start_f=1000.0, limit_f=1.0,
                              start_v=0.0, limit_v=1.0, start_ae=2.0, limit_ae=0.0)
    assert not (sched.has_e or sched.has_v or sched.has_ae) and sched.has_f
    for ratio in (1.0, 0.5, 1e-3):
        p = sched.at(ratio * 1e-3, 1e-3)
        assert (p.e, p.v, p.ae) == (0.0, 0.0, 0.0)
        assert p.f == pytest.approx(1.0 + 999.0 * ratio, rel=1e-15)


# --------------------------------------------------------------------------------------------------
# change-bias -n N: N frames drawn at random (--seed), not the first N
# --------------------------------------------------------------------------------------------------


def test_change_bias_n_draws_its_frames_at_random(tmp_path):
    """Mutant `frames = np.arange(numb_batch)` in change_bias.fitted_bias (the first N frames
    instead of N drawn at random without repetition, as the module docstring and --seed's help
    say).  One composition (1 A + 1 B) whose 8 frames have the energies 0, 1, ..., 7 eV: the
    minimum-norm least squares of one frame f gives b_A = b_B = E_f / 2, so each seed's fit names
    the frame it drew; over 8 seeds the draws cannot all be frame 0 (each seed alone names some
    frame in 0..7; all eight picking frame 0 would be no draw at all)."""
    nf = 8
    coord = np.tile(np.array([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0]]), (nf, 1, 1))
    write_system(tmp_path / "s", coord, None, [0, 1], ["A", "B"], energy=np.arange(nf, dtype=float))
    params = random_params(ntypes=2, sel=[4, 4], neuron=(2,), axis_neuron=1, fitting=(2,), seed=3)
    params.type_map = ["A", "B"]
    model = DPModel(params, nthreads=1)
    drawn = set()
    for seed in range(8):
        fit, n = fitted_bias(model, [tmp_path / "s"], 1, "set", seed)
        assert n == 1 and fit[0] == pytest.approx(fit[1], abs=1e-12)
        f = 2.0 * fit[0]
        assert f == pytest.approx(round(f), abs=1e-9) and 0 <= round(f) < nf
        drawn.add(round(f))
    assert drawn != {0}
    # -n 2: two frames drawn per seed; the first two (0 and 1 eV) would give b_A + b_B = 0.5 eV
    # for every seed
    means = {round(2.0 * fitted_bias(model, [tmp_path / "s"], 2, "set", s)[0][0], 9) for s in range(4)}
    assert means != {0.5}


# --------------------------------------------------------------------------------------------------
# neighbor-stat: the systems' element names in order of appearance
# --------------------------------------------------------------------------------------------------


def test_neighbor_stat_type_map_keeps_the_order_of_appearance(tmp_path):
    """Mutant `names = [new names] + names` in neighbor_stat._type_map: the default type map is
    the names of the systems' type_map.raw in order of appearance (the first system's, then the
    new names of the next), so sel's entries follow that order: [O, H, C], not [C, O, H]."""
    xyz = np.zeros((1, 2, 3))
    xyz[0, 1, 0] = 1.0
    write_system(tmp_path / "a", xyz, None, [0, 1], ["O", "H"])
    write_system(tmp_path / "b", xyz, None, [0, 1], ["H", "C"])
    assert _type_map([load_system(tmp_path / "a"), load_system(tmp_path / "b")], None) == ["O", "H", "C"]


# --------------------------------------------------------------------------------------------------
# show: the parameters the arrays hold win over a stale recorded model_def_script
# --------------------------------------------------------------------------------------------------


def test_show_prints_the_held_sel_over_the_recorded_one():
    """Mutant `if key not in out and key in rebuilt` in show._recorded: a DeePMD-kit model whose
    recorded model_def_script is stale (here its sel changed after DeePMD-kit wrote it) must show
    the sel and neuron its arrays hold (FITTING_HELD / DESCRIPTOR_HELD), other recorded keys as
    recorded."""
    params = read_model(DATA / "pytorch" / "se_a_one_side_f64.dp")
    held = list(params.descriptor.sel)
    script = copy.deepcopy(params.info["model_def_script"])
    script["descriptor"]["sel"] = [1] * len(held)
    script["fitting_net"]["neuron"] = [3]
    params.info["model_def_script"] = script
    lines = describe(params, ("descriptor", "fitting-net"))
    desc = next(ln for ln in lines if ln.startswith("The descriptor parameter is"))
    fit = next(ln for ln in lines if ln.startswith("The fitting_net parameter is"))
    assert f"'sel': {held}" in desc and "'seed'" in desc   # held sel, the recorded keys kept
    assert f"'neuron': {list(params.fitting.neuron)}" in fit


# --------------------------------------------------------------------------------------------------
# DeePMD-kit's files: the fitting's own activation, the graph's rcut/sel/tmap, the file's out_std
# --------------------------------------------------------------------------------------------------


def test_pytorch_fitting_takes_the_fitting_nets_activation():
    """Mutant `fact = desc.get("activation_function")` in pt_read.params_from_torch: every
    fixture uses tanh in both nets, so a fitting net read with the descriptor's activation went
    unseen.  The checkpoint's own section with fitting_net.activation_function "gelu": the
    fitting's hidden layers are gelu, its output layer linear, the embedding nets tanh."""
    path = DATA / "pytorch" / "se_a_one_side_f64.pt"
    model, tensors = _from_checkpoint(read_torch_archive(path).root, path)
    model = copy.deepcopy(model)
    model["descriptor"]["activation_function"] = "tanh"
    model["fitting_net"]["activation_function"] = "gelu"
    params = params_from_torch(model, tensors, path, "test")
    fit_layers = params.fitting.nets[0].layers
    assert [lay.activation for lay in fit_layers[:-1]] == [canonical("gelu")] * (len(fit_layers) - 1)
    assert fit_layers[-1].activation == canonical("none")
    assert {lay.activation for net in params.descriptor.embeddings for lay in net.layers} == {canonical("tanh")}


def test_pb_graph_rcut_sel_and_type_map_override_the_section(monkeypatch):
    """Mutants dropping `desc["rcut"] = descrpt_attr/rcut`, `desc["sel"] = descrpt_attr/sel`, or
    reading model_attr/tmap sorted (pb_read._tensors): the fixtures' training_script agrees with
    their graph nodes, so the override went untested.  With the section's rcut, sel and type_map
    spoiled (no type_map: an older graph's JSON), the model is still the graph's: that of
    DeePMD-kit's own .dp conversion of the same model."""
    original = pb_read._model_section

    def stale(graph, path):
        model = original(graph, path)
        model["descriptor"]["rcut"] = 1.0
        model["descriptor"]["sel"] = [1, 1]
        model.pop("type_map", None)
        return model

    monkeypatch.setattr(pb_read, "_model_section", stale)
    got = pb_read.read_pb(DATA / "tensorflow" / "tf_two_side_f64.pb")
    ref = read_model(DATA / "tensorflow" / "tf_two_side_f64.dp")
    assert got.type_map == ref.type_map == ["O", "H"]
    assert got.descriptor.rcut == ref.descriptor.rcut and got.descriptor.sel == ref.descriptor.sel


def test_dp_out_std_is_read_from_the_file():
    """Mutant `out_std = per_type(None, ...)` (dp_read: out_std always 1): a .dp that DeePMD-kit
    trained carries out_std ≠ 1 (the energy's σ per type), which numdp carries through to the
    files it writes ("everything but out_bias written as read").  Read against the file's own
    dataset, through h5py."""
    path = DATA / "deepmd_kit_training" / "cu" / "final.dp"
    with h5py.File(path, "r") as h5:
        where = json.loads(h5.attrs["json"])["model"]["@variables"]["out_std"]
        stored = np.asarray(h5[where][()], dtype=np.float64).ravel()
    assert not np.all(stored == 1.0)
    np.testing.assert_array_equal(read_model(path).out_std, stored)


# --------------------------------------------------------------------------------------------------
# numdp test: per-atom figures divide by the padded atom count of every frame
# --------------------------------------------------------------------------------------------------


def test_numdp_test_per_atom_figures_do_not_depend_on_the_frame_order():
    """Mutant `n = int((types[0] >= 0).sum())` in commands/test.evaluate_system (the first
    frame's real atoms as the per-atom divisor): tests/data/mixed_pad's first frame has no
    virtual atoms, so its dp figures (dp.json, dp test 3.2: the padded count, 12) did not see
    it.  The frames in reverse order (the first one then has 3 virtual atoms) give the same
    pooled figures — sums over frames in another order, within a few ulps (rel 1e-12) — and
    dp's, to the 7 digits dp prints."""
    from numdp.commands.test import evaluate_system
    from numdp.model.dp_model import load_model

    model = load_model(DATA / "dp32_models" / "gelu_relu.dp", nthreads=1)
    system = load_system(DATA / "mixed_pad" / "sys")
    assert (system.frame_types[0] >= 0).all()
    backward = system.select(np.arange(system.nframes)[::-1])
    assert (backward.frame_types[0] < 0).any()
    fwd, bwd = (evaluate_system(model, s)[0].figures() for s in (system, backward))
    dp = json.loads((DATA / "mixed_pad" / "dp.json").read_text())["test"]
    for key, theirs in (("rmse_energy", "rmse_e"), ("mae_energy", "mae_e"), ("rmse_virial", "rmse_v")):
        assert bwd[key] == pytest.approx(fwd[key], rel=1e-12), key
        assert bwd[key] == pytest.approx(1000.0 * dp[theirs], rel=5e-7, abs=0), key
