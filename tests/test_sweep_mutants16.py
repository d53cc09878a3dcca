"""Tests for the survivors of the sixteenth round of mutation testing (how training is configured
and started: DeePMD-kit's input.json read as numdp's input (numdp.train.deepmd_json), the TOML
input's defaults and checks (numdp.train.config), the initial networks (numdp.train.init),
--init-model, --restart and freeze): each fails on one plausible mistake that the rest of the
suite let through (the mutant is named in the test's docstring; 2026-12-07).  Inputs are only
parsed and small nets drawn: nothing trains.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from numdp.errors import InputError
from numdp.train.config import epoch_steps, load_config, model_config
from numdp.train.init import initial_model, random_net

from test_train_json import UPSTREAM_WATER, _write, workdir  # noqa: F401  (the fixture)


# --------------------------------------------------------------------------------------------------
# DeePMD-kit's input.json
# --------------------------------------------------------------------------------------------------


def _v1(stop_batch: int, lr: dict) -> dict:
    """The upstream water example in DeePMD-kit's v1 layout (training.systems, stop_batch) with
    learning_rate `lr`."""
    tree = json.loads(UPSTREAM_WATER)
    tree["training"].pop("validation_data")
    data = tree["training"].pop("training_data")
    tree["training"].pop("numb_steps")
    tree["training"].update(systems=data["systems"], batch_size=1, stop_batch=stop_batch)
    tree["learning_rate"] = lr
    return tree


def test_v1_decay_rate_is_the_schedules_rate_with_start_lr_and_decay_steps_left_out(workdir):  # noqa: F811
    """Mutants `lr.get("decay_steps", 10000)`, `lr.get("start_lr", 1e-2)` and the staircase
    `steps // decay_steps` in deepmd_json._compat's v1 decay_rate: v1's decay_rate r becomes
    stop_lr = start_lr · r^(stop_batch / decay_steps) (DeePMD-kit's remove_decay_rate, real
    exponent), which the exp schedule turns back into its rate (stop_lr / start_lr)^(decay_steps /
    stop_batch) = r.  Where the v1 input leaves start_lr or decay_steps out (dp train 3.2 stops
    with a KeyError there), the conversion must take the defaults the schedule then uses (1e-3,
    5000), else the run decays at another rate than the r it was given; the existing test gives
    both, with stop_batch a multiple of decay_steps, where the staircase is exact.

    Tolerance: the rate goes through exp(log r · 12000/5000) and back through a power, a few
    rounding errors of relative size 2^-53 each: rel 1e-12 leaves a wide margin; the mutants move
    it by factors (r^(1/2), 10^(5/12), r^(-1/6) at r = 0.95, 2.5 % and more)."""
    cfg = load_config(_write(workdir, _v1(12000, {"type": "exp", "decay_rate": 0.95})))
    lr = cfg.learning_rate
    assert (lr.start_lr, lr.decay_steps) == (1e-3, 5000)
    decay = lr.schedule(12000).decay
    assert decay.decay_rate == pytest.approx(0.95, rel=1e-12)
    assert decay.lr(10000) == pytest.approx(1e-3 * 0.95 ** 2, rel=1e-12)
    # decay_steps given, stop_batch not a multiple of it: the exponent is 7000/2000 = 3.5, not 3
    cfg = load_config(_write(workdir, _v1(7000, {"type": "exp", "decay_rate": 0.9, "decay_steps": 2000,
                                                  "start_lr": 2e-3})))
    assert cfg.learning_rate.stop_lr == pytest.approx(2e-3 * math.exp(math.log(0.9) * 3.5), rel=1e-12)
    assert cfg.learning_rate.schedule(7000).decay.decay_rate == pytest.approx(0.9, rel=1e-12)


def test_fitting_net_precision_other_than_float64_is_refused(workdir):  # noqa: F811
    """Mutant `"precision": ("float64", "default", "float32")` in IGNORED["model.fitting_net"]:
    numdp trains and evaluates in float64 only, so a fitting net declared float32 (or float16,
    bfloat16) would silently train another model than DeePMD-kit's; it is one line naming the key,
    as the descriptor's precision (whose refusal test_train_json checks)."""
    tree = json.loads(UPSTREAM_WATER)
    tree["model"]["fitting_net"]["precision"] = "default"
    load_config(_write(workdir, tree))
    for bad in ("float32", "float16", "bfloat16"):
        tree["model"]["fitting_net"]["precision"] = bad
        with pytest.raises(InputError, match=r"^input.json: \[model.fitting_net\] precision: numdp supports only "
                                             r"'float64' or 'default' \(what numdp does\), got '" + bad + "'$"):
            load_config(_write(workdir, tree))


def test_descriptor_env_protection_other_than_zero_is_refused(workdir):  # noqa: F811
    """Mutant `"env_protection": ANY` in IGNORED["model.descriptor"]: DeePMD-kit's env_protection
    > 0 adds a protection to the distances of the environment matrix (1/(r + p)), which numdp's
    kernels do not; dropping the key would train another descriptor than the input asks for
    (numdp's model files refuse it too: test_sweep_model_files).  0 is read, anything else is one
    line naming the key."""
    tree = json.loads(UPSTREAM_WATER)
    tree["model"]["descriptor"]["env_protection"] = 0.0
    load_config(_write(workdir, tree))
    tree["model"]["descriptor"]["env_protection"] = 1e-2
    with pytest.raises(InputError, match=r"^input.json: \[model.descriptor\] env_protection: numdp supports "
                                         r"only 0.0 \(what numdp does\), got 0.01$"):
        load_config(_write(workdir, tree))


# --------------------------------------------------------------------------------------------------
# the initial networks
# --------------------------------------------------------------------------------------------------

SMALL_MODEL = """
[model]
type_map = ["A", "B"]
[model.descriptor]
neuron = [2, 4]
axis_neuron = 2
{dseed}
[model.fitting]
neuron = [3, 3]
{fseed}
"""


def _initial(dseed: int | None, fseed: int | None, fallback: int):
    """initial_model of a two-type model with small nets, the given seeds (None: not given) and
    the training seed `fallback`."""
    mc = model_config(SMALL_MODEL.format(dseed="" if dseed is None else f"seed = {dseed}",
                                         fseed="" if fseed is None else f"seed = {fseed}"), "m.toml")
    sel = [4, 4]
    return initial_model(mc, sel, np.zeros((2, 8, 4)), np.ones((2, 8, 4)), np.zeros(2), fallback)


def _arrays(nets) -> list[np.ndarray]:
    return [a for net in nets for layer in net.layers
            for a in (layer.w, layer.b, *(() if layer.idt is None else (layer.idt,)))]


def test_fitting_nets_are_drawn_from_their_own_seed():
    """Mutants `default_rng(dc.seed if dc.seed is not None else ...)` for the fitting nets (the
    descriptor's seed) and `seed_fallback` instead of `seed_fallback + 1` (initial_model): the
    fitting nets are drawn from [model.fitting] seed, else from the training seed + 1 (module
    docstring), whatever the descriptor's seed; the embedding nets from [model.descriptor] seed,
    else the training seed.  Draws are compared exactly (the same generator, the same calls)."""
    fits = [_arrays(_initial(d, None, 7).fitting.nets) for d in (3, 5, None)]
    width_in = 4 * 2   # neuron[-1] · axis_neuron
    rng = np.random.default_rng(8)
    expected = _arrays([random_net(rng, [width_in, 3, 3, 1], True, True, "tanh") for _ in range(2)])
    for got in fits:
        assert len(got) == len(expected) and all(np.array_equal(a, b) for a, b in zip(got, expected))
    given = _arrays(_initial(3, 11, 7).fitting.nets)
    rng = np.random.default_rng(11)
    expected = _arrays([random_net(rng, [width_in, 3, 3, 1], True, True, "tanh") for _ in range(2)])
    assert all(np.array_equal(a, b) for a, b in zip(given, expected))
    # the embedding nets: the descriptor's seed, else the training seed (4 nets: type_one_side false)
    for dseed, rng_seed in ((3, 3), (None, 7)):
        rng = np.random.default_rng(rng_seed)
        expected = _arrays([random_net(rng, [1, 2, 4], False, False, "tanh") for _ in range(4)])
        got = _arrays(_initial(dseed, 11, 7).descriptor.embeddings)
        assert len(got) == len(expected) and all(np.array_equal(a, b) for a, b in zip(got, expected))


# --------------------------------------------------------------------------------------------------
# the run's length from numb_epoch
# --------------------------------------------------------------------------------------------------


def test_epoch_batches_round_up_when_a_systems_share_is_not_a_whole_number():
    """Mutant `int(np.max(nb / p))` (truncated) for total_numb_batch in epoch_steps: DeePMD-kit
    3.2's compute_total_numb_batch (deepmd.dpmodel.utils.training_utils) is ⌈max_i nbatch_i / p_i⌉;
    test_train_config's cases all have whole quotients.  Here 1/0.6 = 1.67 and 5/0.4 = 12.5
    (12.5 up to one rounding, 2^-53 relative, far from a whole number): dp's function gives 13
    (run with DeePMD-kit 3.2, /tmp/dpk), and half an epoch ⌈6.5⌉ = 7 steps."""
    assert epoch_steps(1.0, [1, 5], [0.6, 0.4]) == (13, 13)
    assert epoch_steps(0.5, [1, 5], [3.0, 2.0]) == (7, 13)   # weights normalised: 0.6, 0.4


def test_random_layers_follow_deepmd_kits_draw():
    """Mutant `1 / sqrt(n_in)` for the weights' deviation in init._layer (and the residual's
    `n_out == 2 * n_in` case dropped): reference §3.3, DeePMD-kit's dpmodel / PyTorch draw:
    W ~ N(0, 1/√(n_in + n_out)), b ~ N(0, 1), idt ~ N(0.1, 0.001) on each layer whose residual
    applies (width kept or doubled) with resnet_dt; a linear output layer has b = 0, no idt.

    Tolerances from the sampling errors: the relative standard error of a sample deviation of N
    normal draws is 1/√(2N): 0.17 % for W (180 000 and 360 000 entries), 2.9 % for b (600), so
    2 % and 20 % are over 7 standard errors; idt's mean over 600 draws of deviation 0.001 has
    standard error 4e-5 (tolerance 5e-4).  The mutant's W deviation is √(900/300) = 1.73 times
    too large."""
    net = random_net(np.random.default_rng(5), [300, 600, 600], True, False)
    (l1, l2), widths = net.layers, ((300, 600), (600, 600))
    for layer, (n_in, n_out) in zip((l1, l2), widths):
        assert layer.w.shape == (n_in, n_out)
        assert layer.w.std() == pytest.approx(1.0 / math.sqrt(n_in + n_out), rel=0.02)
        assert abs(layer.w.mean()) < 7 * layer.w.std() / math.sqrt(layer.w.size)
        assert layer.b.std() == pytest.approx(1.0, rel=0.2) and abs(layer.b.mean()) < 7 / math.sqrt(600)
        assert layer.idt is not None and layer.idt.mean() == pytest.approx(0.1, abs=5e-4)
        assert layer.idt.std() == pytest.approx(0.001, rel=0.2)
    out = random_net(np.random.default_rng(5), [600, 1], True, True).layers[0]
    assert out.w.std() == pytest.approx(1.0 / math.sqrt(601), rel=0.2)   # 600 draws: 2.9 %
    assert not out.b.any() and out.idt is None and not out.resnet
    # without resnet_dt no idt; a width neither kept nor doubled has no residual
    assert random_net(np.random.default_rng(5), [4, 4], False, False).layers[0].idt is None
    assert random_net(np.random.default_rng(5), [4, 12], True, False).layers[0].idt is None


# --------------------------------------------------------------------------------------------------
# --init-model: the input's networks must be the model's
# --------------------------------------------------------------------------------------------------

INIT_MODEL = """
[model]
type_map = ["A", "B"]
[model.descriptor]
rcut = 4.0
rcut_smth = 0.5
sel = [4, 4]
neuron = [2, 4]
axis_neuron = 2
[model.fitting]
neuron = [3, 3]
"""

D, F, MODEL = "[model.descriptor]\n", "[model.fitting]\n", '"B"]\n'
"""Where a line is added to INIT_MODEL's tables."""


def _model_cfg(old: str = "", new: str = ""):
    """The [model] of INIT_MODEL with `old` replaced by `new`, as load_init_model reads a
    training input (a ModelConfig and the input's file name)."""
    mc = model_config(INIT_MODEL.replace(old, new), "input.toml")
    return SimpleNamespace(**vars(mc), source=Path("input.toml"))


@pytest.mark.parametrize("old, new, key, message", [
    ("rcut_smth = 0.5", "rcut_smth = 0.25", "model.descriptor] rcut_smth", "the model has 0.5, input.toml has 0.25"),
    ("sel = [4, 4]", "sel = [4, 8]", "model.descriptor] sel", r"the model has \[4, 4\], input.toml has \[4, 8\]"),
    ("axis_neuron = 2", "axis_neuron = 1", "model.descriptor] axis_neuron", "the model has 2, input.toml has 1"),
    (D, D + "type_one_side = true\n", "model.descriptor] type_one_side", "the model has False, input.toml has True"),
    (D, D + "resnet_dt = true\n", "model.descriptor] resnet_dt", "the model has False, input.toml has True"),
    (D, D + "exclude_types = [[0, 1]]\n", "model.descriptor] exclude_types", None),
    (D, D + 'activation_function = "gelu"\n', "model.descriptor] activation_function", None),
    (F, F + "resnet_dt = false\n", "model.fitting] resnet_dt", "the model has True, input.toml has False"),
    (F, F + "numb_fparam = 1\n", "model.fitting] numb_fparam", "the model has 0, input.toml has 1"),
    (F, F + "numb_aparam = 2\n", "model.fitting] numb_aparam", "the model has 0, input.toml has 2"),
    (F, F + 'activation_function = "relu"\n', "model.fitting] activation_function", None),
    (MODEL, MODEL + "pair_exclude_types = [[0, 0]]\n", "model] pair_exclude_types", None),
    (MODEL, MODEL + "atom_exclude_types = [1]\n", "model] atom_exclude_types", None),
])
def test_init_model_refuses_every_network_difference(tmp_path, old, new, key, message):
    """Mutants that drop one entry of load_init_model's checks (rcut_smth, sel, type_one_side,
    numb_aparam): the suite checked only the fitting's neuron.  Another rcut_smth keeps every
    array's shape, so nothing downstream would notice that the weights were trained on other
    descriptors; another sel or type_one_side changes the shapes only deep in the first step;
    each difference is one line naming the table and the key."""
    from numdp.io.model_file import write_model
    from numdp.train.init_model import load_init_model

    mc = _model_cfg()
    params = initial_model(mc, [4, 4], np.zeros((2, 8, 4)), np.ones((2, 8, 4)), np.zeros(2), 1)
    write_model(params, tmp_path / "m.h5")
    assert load_init_model(tmp_path / "m.h5", _model_cfg()).descriptor.sel == [4, 4]
    assert new in INIT_MODEL.replace(old, new)
    pattern = rf"--init-model: \[{key}: " + (message or "the model has .*, input.toml has .*")
    with pytest.raises(InputError, match=pattern + "; the networks must match$"):
        load_init_model(tmp_path / "m.h5", _model_cfg(old, new))



def test_axis_neuron_may_be_the_last_embedding_width():
    """Mutant `axis_neuron >= neuron[-1]` refused (config._model): the descriptor D = T^T T<
    takes the first M< of the M columns of T (reference §4), so M< = M is a valid model (every
    column); only M< > M is one line naming the key."""
    text = SMALL_MODEL.format(dseed="", fseed="")
    assert model_config(text, "m.toml").descriptor.axis_neuron == 2
    assert model_config(text.replace("axis_neuron = 2", "axis_neuron = 4"), "m.toml").descriptor.axis_neuron == 4
    with pytest.raises(InputError, match=r"^m.toml: \[model.descriptor\] axis_neuron: must be <= the last "
                                         r"neuron width 4, got 5$"):
        model_config(text.replace("axis_neuron = 2", "axis_neuron = 5"), "m.toml")


def test_a_negative_sel_entry_is_refused():
    """Mutant `int_list("sel", minimum=-100)` in config._sel: a negative slot count has no
    meaning (the neighbour list would have fewer than no slots of that type) and would fail deep in
    the kernels; sel needs integers >= 0 (0: no neighbour of that type), one line naming the key."""
    text = SMALL_MODEL.format(dseed="", fseed="")
    given = model_config(text.replace("axis_neuron = 2", "axis_neuron = 2\nsel = [0, 4]"), "m.toml")
    assert given.descriptor.sel == [0, 4]
    with pytest.raises(InputError, match=r"^m.toml: \[model.descriptor\] sel: expected a non-empty list of integers "
                                         r">= 0, got \[-1, 4\]$"):
        model_config(text.replace("axis_neuron = 2", "axis_neuron = 2\nsel = [-1, 4]"), "m.toml")


def test_default_fparam_needs_one_value_per_frame_parameter():
    """Mutant that drops the length check of [model.fitting] default_fparam (config._model): a
    system without fparam.npy would feed the fitting nets the wrong number of inputs (numb_fparam
    of them are expected: DeePMD-kit's default_fparam has numb_fparam entries)."""
    text = SMALL_MODEL.format(dseed="", fseed="numb_fparam = 2\ndefault_fparam = {}")
    assert model_config(text.format("[1.0, 2.0]"), "m.toml").fitting.default_fparam == [1.0, 2.0]
    with pytest.raises(InputError, match=r"^m.toml: \[model.fitting\] default_fparam: has 1 values, "
                                         r"numb_fparam is 2$"):
        model_config(text.format("[1.0]"), "m.toml")


def test_data_stat_nbatch_must_be_at_least_one(workdir):  # noqa: F811
    """Mutant `minimum=0` for [training] data_stat_nbatch (config.parse_config): 0 batches give
    the statistics (davg/dstd, the energy bias) no frame at all; input.json's
    model.data_stat_nbatch is read there (deepmd_json), so its 0 is one line naming the key."""
    tree = json.loads(UPSTREAM_WATER)
    tree["model"]["data_stat_nbatch"] = 1
    assert load_config(_write(workdir, tree)).training.data_stat_nbatch == 1
    tree["model"]["data_stat_nbatch"] = 0
    with pytest.raises(InputError, match=r"^input.json: \[training\] data_stat_nbatch: .*>= 1.*got 0$"):
        load_config(_write(workdir, tree))
