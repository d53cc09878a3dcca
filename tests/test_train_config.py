"""`numdp train` input parsing: defaults, DeePMD-kit names, one-line errors naming the key."""
import json
import pathlib
import re
from types import SimpleNamespace

import numpy as np
import pytest

from numdp.cli import main as cli_main
from numdp.errors import InputError
from numdp.train.config import AutoProb, ProbBlock, ProbStyle, load_config
from numdp.train.data import BatchSampler, system_probs

MINIMAL = """
[model]
type_map = ["A", "B"]
[model.descriptor]
[training]
systems = ["sys"]
numb_steps = 10
"""


def write_system(root: pathlib.Path, natoms=4, nframes=3):
    root.mkdir(parents=True, exist_ok=True)
    (root / "type.raw").write_text("\n".join(str(i % 2) for i in range(natoms)) + "\n")
    (root / "type_map.raw").write_text("A\nB\n")
    s = root / "set.000"
    s.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    np.save(s / "coord.npy", rng.uniform(0, 5, (nframes, natoms * 3)))
    np.save(s / "box.npy", np.tile(np.eye(3).ravel() * 5.0, (nframes, 1)))
    np.save(s / "energy.npy", rng.normal(size=nframes))
    np.save(s / "force.npy", rng.normal(size=(nframes, natoms * 3)))


@pytest.fixture
def inp(tmp_path):
    write_system(tmp_path / "sys")

    def make(text):
        p = tmp_path / "input.toml"
        p.write_text(text)
        return p

    return make


def test_defaults(inp):
    cfg = load_config(inp(MINIMAL))
    d, f, lr, loss, tr = cfg.descriptor, cfg.fitting, cfg.learning_rate, cfg.loss, cfg.training
    assert (d.rcut, d.rcut_smth, d.sel, d.sel_factor) == (6.0, 0.5, None, 1.1)
    assert (d.neuron, d.axis_neuron, d.type_one_side, d.resnet_dt) == ([10, 20, 40], 4, False, False)
    assert (f.neuron, f.resnet_dt) == ([120, 120, 120], True)
    assert (lr.start_lr, lr.stop_lr, lr.decay_steps) == (1e-3, 5e-8, 5000)
    assert (loss.start_pref_e, loss.limit_pref_e, loss.start_pref_f, loss.limit_pref_f) == (0.02, 1, 1000, 1)
    assert (loss.start_pref_v, loss.limit_pref_v) == (0, 0)
    assert (tr.numb_steps, tr.disp_freq, tr.save_freq, tr.data_stat_nbatch) == (10, 1000, 1000, 10)
    assert tr.batch_size.frames(192) == 1 and tr.batch_size.frames(4) == 8
    base = inp(MINIMAL).parent.resolve()
    assert tr.systems == [base / "sys"]
    assert tr.disp_file == base / "lcurve.out" and tr.model_file == base / "model.h5"
    assert cfg.validation.systems == []


def test_values_and_aliases(inp):
    text = MINIMAL.replace("[model.descriptor]", '[model.descriptor]\nsel = "auto:1.5"\nrcut = 5') + """
[model.fitting_net]
neuron = [8, 8]
[learning_rate]
decay_steps = 7
[validation]
systems = ["sys"]
numb_btch = 2
batch_size = "auto:9"
"""
    text = text.replace("numb_steps = 10", 'numb_steps = 10\nbatch_size = 3')
    cfg = load_config(inp(text))
    assert cfg.descriptor.sel is None and cfg.descriptor.sel_factor == 1.5 and cfg.descriptor.rcut == 5.0
    assert cfg.fitting.neuron == [8, 8] and cfg.learning_rate.decay_steps == 7
    assert cfg.training.batch_size.frames(100) == 3
    assert cfg.validation.batch_size.frames(4) == 3 and cfg.validation.numb_btch == 2


def test_batch_size_list_one_entry_per_system(inp, tmp_path):
    """DeePMD-kit's list form: one batch size per system, in the order of the systems."""
    write_system(tmp_path / "sys2", natoms=6, nframes=5)
    text = MINIMAL.replace('systems = ["sys"]', 'systems = ["sys", "sys2"]\nbatch_size = [3, 2]')
    bs = load_config(inp(text)).training.batch_size
    assert (bs.frames(4, 0), bs.frames(6, 1)) == (3, 2)


@pytest.mark.parametrize("form,frames", [("max:9", (2, 1, 1)), ("filter:9", (2, 1, None))])
def test_batch_size_max_and_filter(inp, tmp_path, form, frames):
    """DeePMD-kit 3.2's "max:K" (max(1, ⌊K/natoms⌋) frames) and "filter:K" (also leaves the
    systems of more than K atoms out of the data, in order, with a line in the log)."""
    from numdp.train.data import load_dataset

    write_system(tmp_path / "sys9", natoms=9)
    write_system(tmp_path / "sys12", natoms=12)
    text = MINIMAL.replace('systems = ["sys"]', f'systems = ["sys", "sys9", "sys12"]\nbatch_size = "{form}"')
    cfg = load_config(inp(text))
    bs = cfg.training.batch_size
    assert (bs.frames(4), bs.frames(9), bs.frames(12)) == (2, 1, 1)
    data = load_dataset(cfg.training.systems, cfg.type_map, bs)
    assert [s.batch_size for s in data] == [f for f in frames if f is not None]
    assert [s.path.name for s in data] == ["sys", "sys9", "sys12"][:len(data)]
    if form.startswith("filter"):
        with pytest.raises(InputError, match=r'batch_size "filter:3": every system has more than 3 atoms '
                                             r'\(.*sys: 4\); none is left'):
            load_dataset(cfg.training.systems, cfg.type_map, load_config(inp(text.replace("filter:9", "filter:3")))
                         .training.batch_size)
        for extra, key in (('sys_probs = [0.5, 0.3, 0.2]', "sys_probs"), ('auto_prob = "prob_sys_size;0:2:1.0"',
                                                                          "auto_prob")):
            with pytest.raises(InputError, match=rf'\[training\] {key}: .* do not go with batch_size "filter:N"'):
                load_config(inp(text.replace("numb_steps = 10", f"numb_steps = 10\n{extra}")))
    for bad in ("max", "filter:0", "max:"):
        with pytest.raises(InputError, match=rf'\[training\] batch_size: "(max|filter):N" needs a number of atoms'):
            load_config(inp(text.replace(form, bad)))


THREE_SYSTEMS = MINIMAL.replace('systems = ["sys"]', 'systems = ["sys", "sys2", "sys3"]')


@pytest.fixture
def inp3(inp, tmp_path):
    """`inp` with the systems sys, sys2, sys3 (THREE_SYSTEMS)."""
    write_system(tmp_path / "sys2")
    write_system(tmp_path / "sys3")
    return inp


@pytest.mark.parametrize("keys, expected", [
    ("", [4 / 8, 1 / 8, 3 / 8]),  # prob_sys_size: ∝ nbatch
    ('auto_prob = "prob_sys_size"', [4 / 8, 1 / 8, 3 / 8]),
    ('auto_prob = "prob_uniform"', [1 / 3, 1 / 3, 1 / 3]),
    ('auto_prob = "prob_sys_size;0:1:0.8;1:3:0.2"', [0.8, 0.2 * 1 / 4, 0.2 * 3 / 4]),
    ('auto_prob = "prob_sys_size; 0:1:0.8; 1:3:0.2"', [0.8, 0.05, 0.15]),  # DP-GEN's spacing
    ('auto_prob = " prob_sys_size ; 0 : 1 : 8 ;1:3: 2 "', [0.8, 0.05, 0.15]),  # weights w / Σw
    ('auto_prob = "prob_sys_size;1:3:0.5"', [0, 1 / 4, 3 / 4]),  # system 0 in no block
    ('auto_prob = "prob_sys_size;2:3:1;0:1:0"', [0, 0, 1]),
    ("sys_probs = [0.5, -1, -1]", [0.5, 0.5 * 1 / 4, 0.5 * 3 / 4]),
    ("sys_probs = [0.2, 0.3, 0.5]", [0.2, 0.3, 0.5]),
    ("sys_probs = [1, 0, 0]", [1, 0, 0]),
    ("sys_probs = [0.6, 0.4, 1e-9]", [0.6, 0.4, 1e-9]),  # 1 − Σ within 1e-8: as given
    ("sys_probs = [-1, -2, -1]", [4 / 8, 1 / 8, 3 / 8]),
    ('sys_probs = [0.2, 0.3, 0.5]\nauto_prob = "prob_uniform"', [0.2, 0.3, 0.5]),  # sys_probs wins
])
def test_system_probabilities(inp3, keys, expected):
    """DeePMD-kit's auto_prob / sys_probs for 3 systems of 4, 1 and 3 batches, against the values
    worked out by hand from their definitions."""
    cfg = load_config(inp3(THREE_SYSTEMS.replace("numb_steps = 10", "numb_steps = 10\n" + keys)))
    tr = cfg.training
    assert system_probs([4, 1, 3], tr.auto_prob, tr.sys_probs).tolist() == pytest.approx(expected, abs=1e-15)


def test_validation_system_probabilities(inp3):
    """[validation] has its own auto_prob and sys_probs; [training] keeps the default."""
    text = THREE_SYSTEMS + """[validation]
systems = ["sys", "sys2"]
auto_prob = "prob_uniform"
"""
    cfg = load_config(inp3(text))
    assert cfg.validation.auto_prob == AutoProb(ProbStyle.UNIFORM) and cfg.training.auto_prob == AutoProb()
    cfg = load_config(inp3(text.replace('auto_prob = "prob_uniform"', "sys_probs = [-1, 0.25]")))
    assert cfg.validation.sys_probs == [-1.0, 0.25] and cfg.training.sys_probs is None
    assert system_probs([2, 5], cfg.validation.auto_prob, cfg.validation.sys_probs).tolist() == [0.75, 0.25]


def test_one_nonzero_probability_always_draws_that_system():
    """Drawing keeps the generator's sequence; a system of probability 0 is never drawn."""
    prob = system_probs([4, 1, 3], AutoProb(blocks=(ProbBlock(1, 2, 1.0),)), None)
    assert prob.tolist() == [0, 1, 0]
    systems = [SimpleNamespace(nframes=4, batch_size=1) for _ in range(3)]
    sampler = BatchSampler(systems, [5, 1], prob)
    assert {sampler.next()[0] for _ in range(50)} == {1}


@pytest.mark.parametrize("keys, message", [
    ('auto_prob = "prob_size"', '[training] auto_prob: expected "prob_sys_size", "prob_uniform" or'),
    ('auto_prob = "prob_uniform;0:1:1"', '[training] auto_prob: expected "prob_sys_size"'),
    ("auto_prob = 1", "[training] auto_prob: expected a string"),
    ('auto_prob = "prob_sys_size;0:57"', "[training] auto_prob: block '0:57': expected START:END:WEIGHT"),
    ('auto_prob = "prob_sys_size;a:b:c"', "[training] auto_prob: block 'a:b:c': expected START:END:WEIGHT"),
    ('auto_prob = "prob_sys_size;0:1:0.5:2"', "[training] auto_prob: block '0:1:0.5:2': expected START:END"),
    ('auto_prob = "prob_sys_size;0:1:1;"', "[training] auto_prob: block '': expected START:END:WEIGHT"),
    ('auto_prob = "prob_sys_size;0:4:1"', "[training] auto_prob: block '0:4:1': outside the 3 systems "
                                          "(0 <= START < END <= 3)"),
    ('auto_prob = "prob_sys_size;-1:2:1"', "[training] auto_prob: block '-1:2:1': outside the 3 systems"),
    ('auto_prob = "prob_sys_size;2:2:1"', "[training] auto_prob: block '2:2:1': START must be smaller than END"),
    ('auto_prob = "prob_sys_size;2:1:1"', "[training] auto_prob: block '2:1:1': START must be smaller than END"),
    ('auto_prob = "prob_sys_size;0:1:-0.5"', "[training] auto_prob: block '0:1:-0.5': the weight must be a number >= 0"),
    ('auto_prob = "prob_sys_size;0:1:nan"', "[training] auto_prob: block '0:1:nan': the weight must be a number >= 0"),
    ('auto_prob = "prob_sys_size;0:1:0;1:3:0"', "[training] auto_prob: every block has weight 0: no system could be drawn"),
    ('auto_prob = "prob_sys_size;0:2:0.5;1:3:0.5"',
     "[training] auto_prob: block '1:3:0.5': overlaps block '0:2' (a system belongs to one block at most)"),
    ("sys_probs = [0.5, 0.5]", "[training] sys_probs: has 2 entries for 3 systems (give one entry per system"),
    ('sys_probs = [0.5, "a", 0.5]', "[training] sys_probs: expected a list of numbers, one per system"),
    ("sys_probs = [0.5, true, 0.5]", "[training] sys_probs: expected a list of numbers"),
    ("sys_probs = 0.5", "[training] sys_probs: expected a list of numbers"),
    ("sys_probs = []", "[training] sys_probs: expected a list of numbers"),
    ("sys_probs = [0.5, 0.6, -1]", "[training] sys_probs: the entries >= 0 sum to 1.1, more than 1"),
    ("sys_probs = [0.2, 0.3, 0.4]", "[training] sys_probs: the entries sum to 0.9, not 1, and no entry is "
                                    "negative to share the 0.1 left"),
    ("sys_probs = [0, 0, 0]", "[training] sys_probs: every entry is 0: no system could be drawn"),
    ("sys_probs = [0.5, 0.5, -1]", "[training] sys_probs: the entries >= 0 sum to 1: nothing is left"),
    ('[validation]\nsystems = ["sys"]\nauto_prob = "prob_sys_size;0:2:1"',
     "[validation] auto_prob: block '0:2:1': outside the 1 system (0 <= START < END <= 1)"),
    ('[validation]\nsystems = ["sys"]\nsys_probs = [0.5, -1]',
     "[validation] sys_probs: has 2 entries for 1 system"),
])
def test_system_probability_errors(inp3, keys, message):
    with pytest.raises(InputError) as err:
        load_config(inp3(THREE_SYSTEMS.replace("numb_steps = 10", "numb_steps = 10\n" + keys)))
    text = str(err.value)
    assert text.startswith("input.toml: ") and message in text and "\n" not in text


@pytest.mark.parametrize("edit, message", [
    (("[training]", "[loss]\nstart_pref_x = 1\n[training]"), "input.toml: [loss] start_pref_x: unknown key"),
    (("[model.descriptor]", "[model.descriptor]\nrcut = \"6\""), "[model.descriptor] rcut: expected a number"),
    (("[model.descriptor]", "[model.descriptor]\nrcut_smth = 7.0"), "[model.descriptor] rcut_smth: must be smaller"),
    (("[model.descriptor]", "[model.descriptor]\nsel = [4]"), "[model.descriptor] sel: has 1 entries"),
    (("[model.descriptor]", "[model.descriptor]\nsel = \"many\""), "[model.descriptor] sel: expected"),
    (("[model.descriptor]", "[model.descriptor]\nneuron = [4, 0]"), "[model.descriptor] neuron: expected"),
    (("[model.descriptor]", "[model.descriptor]\naxis_neuron = 50"), "[model.descriptor] axis_neuron: must be <="),
    (("[model.descriptor]", "[model.descriptor]\ntype_one_side = 1"), "[model.descriptor] type_one_side: expected true or false"),
    (("numb_steps = 10", "numb_steps = 10.5"), "[training] numb_steps: expected an integer"),
    (("numb_steps = 10", ""), "[training] numb_steps: required key is missing (or give numb_epoch)"),
    (("numb_steps = 10", "num_steps = 10\nnumb_step = 10"),
     "[training] numb_step: give num_steps or numb_step, not both (two names of one key)"),
    (("numb_steps = 10", "numb_steps = 10\nstop_batch = 10"), "[training] stop_batch: give numb_steps or stop_batch"),
    (("numb_steps = 10", "num_step = 10\nnum_epochs = 2"), "[training] num_epochs: give num_step or num_epochs, not both"),
    (("numb_steps = 10", "numb_epoch = 2\nnumb_epochs = 2"),
     "[training] numb_epochs: give numb_epoch or numb_epochs, not both (two names of one key)"),
    (("numb_steps = 10", "numb_epoch = 0"), "[training] numb_epoch: must be > 0, got 0"),
    (("numb_steps = 10", "num_epoch = -1.5"), "[training] num_epoch: must be > 0, got -1.5"),
    (("numb_steps = 10", "numb_epoch = \"2\""), "[training] numb_epoch: expected a number"),
    (("numb_steps = 10", "num_steps = 1.5"), "[training] num_steps: expected an integer"),
    (("numb_steps = 10", "numb_steps = 10\ngradient_max_norm = -1"), "[training] gradient_max_norm: must be >= 0"),
    (("numb_steps = 10", "numb_steps = 10\ngradient_max_norm = true"), "[training] gradient_max_norm: expected a number"),
    (("numb_steps = 10", "numb_steps = 10\nbatch_size = \"most\""), "[training] batch_size: expected"),
    (("numb_steps = 10", "numb_steps = 10\nbatch_size = 0"), "[training] batch_size: must be >= 1"),
    (("numb_steps = 10", "numb_steps = 10\nbatch_size = [2, 2]"),
     "[training] batch_size: has 2 entries for 1 system (give one entry per system"),
    (("numb_steps = 10", "numb_steps = 10\nbatch_size = [-1]"), "[training] batch_size: every entry must be >= 1"),
    (("numb_steps = 10", "numb_steps = 10\nbatch_size = []"), "[training] batch_size: a list must hold one integer"),
    (("numb_steps = 10", "numb_steps = 10\nmodel_file = \"out.txt\""), "[training] model_file: must end in"),
    (('systems = ["sys"]', 'systems = ["nowhere"]'), "[training] systems:"),
    (("[training]", "[learning_rate]\nstop_lr = 1.0\n[training]"), "[learning_rate] stop_lr: must be <="),
    (("[training]", "[learning_rate]\nstart_lr = -1.0\n[training]"), "[learning_rate] start_lr: must be > 0"),
    (("[training]", "[learning_rate]\ntype = \"step\"\n[training]"), "[learning_rate] type: expected one of 'exp', 'cosine', 'wsd'"),
    (("[training]", "[learning_rate]\ntype = \"cosine\"\ndecay_steps = 10\n[training]"),
     '[learning_rate] decay_steps: belongs to type "exp", not "cosine"'),
    (("[training]", "[learning_rate]\ndecay_type = \"linear\"\n[training]"),
     '[learning_rate] decay_type: belongs to type "wsd", not "exp"'),
    (("[training]", "[learning_rate]\nstop_lr = 1e-5\nstop_lr_ratio = 0.01\n[training]"),
     "[learning_rate] stop_lr_ratio: give stop_lr or stop_lr_ratio, not both"),
    (("[training]", "[learning_rate]\nstop_lr_ratio = 2.0\n[training]"), "[learning_rate] stop_lr_ratio: must be <= 1"),
    (("[training]", "[learning_rate]\nwarmup_steps = 3\nwarmup_ratio = 0.1\n[training]"),
     "[learning_rate] warmup_ratio: give warmup_steps or warmup_ratio, not both"),
    (("[training]", "[learning_rate]\nwarmup_steps = 10\n[training]"),
     "[learning_rate] warmup_steps: the warmup (10 steps) must be shorter than [training] numb_steps = 10"),
    (("[training]", "[learning_rate]\nwarmup_ratio = 1.0\n[training]"), "[learning_rate] warmup_ratio: must be < 1"),
    (("[training]", "[learning_rate]\nwarmup_steps = -1\n[training]"), "[learning_rate] warmup_steps: must be >= 0"),
    (("[training]", "[learning_rate]\ndecay_rate = 1.5\n[training]"), "[learning_rate] decay_rate: must be in (0, 1]"),
    (("[training]", "[learning_rate]\ntype = \"wsd\"\ndecay_phase_ratio = 0\n[training]"),
     "[learning_rate] decay_phase_ratio: must be > 0"),
    (("[training]", "[learning_rate]\ntype = \"wsd\"\ndecay_type = \"step\"\n[training]"),
     "[learning_rate] decay_type: expected one of 'inverse_linear', 'cosine', 'linear'"),
    (("[training]", "[learning_rate]\nsmooth = 1\n[training]"), "[learning_rate] smooth: expected true or false"),
    (("[training]", "[loss]\nstart_pref_e = 0\nstart_pref_f = 0\n[training]"), "[loss]: every term is off"),
    (("[training]", "[optim]\n[training]"), "[optim]: unknown section"),
    (("[training]", "[optimizer]\ntype = \"SGD\"\n[training]"), "[optimizer] type: expected one of 'Adam', 'AdamW'"),
    (("[training]", "[optimizer]\nadam_beta2 = 1.0\n[training]"), "[optimizer] adam_beta2: must be in [0, 1)"),
    (("[training]", "[optimizer]\nweight_decay = -0.1\n[training]"), "[optimizer] weight_decay: must be >= 0"),
    (("[training]", "[optimizer]\nkf_blocksize = 5120\n[training]"), "[optimizer] kf_blocksize: unknown key"),
    (("[model.descriptor]", "[model.descriptor]\ntype = \"se_e3\""), "[model.descriptor] type: expected one of"),
    (("type_map = [\"A\", \"B\"]", "type_map = [\"A\", \"A\"]"), "[model] type_map: names must be unique"),
    (("numb_steps = 10", "numb_steps = 10\nprecondition = true"), "[training] precondition: no longer supported"),
    (("numb_steps = 10", "numb_steps = 10\ninit_spread = -0.1"), "[training] init_spread: must be >= 0"),
    (("numb_steps = 10", "numb_steps = 10\ninit_spread = true"), "[training] init_spread: expected a number"),
    (("numb_steps = 10", "numb_steps = 10\nsave_ckpt = \"model.h5\""),
     "input.toml: [training] model_file: names the same file as [training] save_ckpt"),
    (("numb_steps = 10", "numb_steps = 10\ndisp_file = \"input.toml\""),
     "input.toml: [training] disp_file: names the same file as an input, the input file"),
])
def test_errors_name_the_key(inp, edit, message):
    old, new = edit
    with pytest.raises(InputError) as err:
        load_config(inp(MINIMAL.replace(old, new, 1)))
    text = str(err.value)
    assert message in text and "\n" not in text


@pytest.mark.parametrize("name", ["numb_steps", "num_steps", "numb_step", "num_step", "stop_batch"])
def test_numb_steps_under_deepmd_kit_aliases(inp, name):
    """DeePMD-kit 3.2's names of numb_steps (v1's stop_batch among them) are numb_steps."""
    cfg = load_config(inp(MINIMAL.replace("numb_steps = 10", f"{name} = 7")))
    assert (cfg.training.numb_steps, cfg.training.numb_epoch) == (7, None)


@pytest.mark.parametrize("name", ["numb_epoch", "num_epochs", "num_epoch", "numb_epochs"])
def test_numb_epoch_leaves_the_steps_to_the_data(inp, name):
    """numb_epoch (any of DeePMD-kit's names; int or float) is kept as given and numb_steps is
    None until the data is loaded (`resolve_steps`); a warmup ratio waits for the steps too,
    then a warmup as long as the run stops with one line naming numb_epoch."""
    from numdp.train.config import resolve_steps

    text = MINIMAL.replace("numb_steps = 10", f"{name} = 2").replace(
        "[training]", "[learning_rate]\nwarmup_ratio = 0.5\n[training]")
    cfg = load_config(inp(text))
    assert (cfg.training.numb_steps, cfg.training.numb_epoch) == (None, 2.0)
    assert cfg.training.gradient_max_norm == 0.0
    # 3 systems: nbatch 4, 1, 3; p 0.1, 0.3, 0.6 -> max(40, 3.33, 5) = 40 batches per epoch
    assert resolve_steps(cfg, [4, 1, 3], np.array([0.1, 0.3, 0.6])) == 40
    assert (cfg.training.numb_steps, cfg.learning_rate.warmup_steps) == (80, 40)
    assert resolve_steps(cfg, [4, 1, 3], np.array([0.1, 0.3, 0.6])) is None   # set once
    cfg = load_config(inp(text.replace("warmup_ratio = 0.5", "warmup_steps = 3")))
    with pytest.raises(InputError) as err:
        resolve_steps(cfg, [1], np.array([1.0]))
    assert str(err.value) == ("input.toml: [learning_rate] warmup_steps: the warmup (3 steps) must be "
                              "shorter than the run's 2 steps ([training] numb_epoch = 2)")


def test_epoch_steps_is_deepmd_kits_rule():
    """steps = ⌈numb_epoch · ⌈max_i nbatch_i / p_i⌉⌉ over the systems drawn (p_i > 0), the
    probabilities normalised first; by hand."""
    from numdp.train.config import epoch_steps

    assert epoch_steps(1.0, [8, 2], [0.8, 0.2]) == (10, 10)           # prob_sys_size: Σ nbatch
    assert epoch_steps(0.3, [2, 8], [0.75, 0.25]) == (10, 32)         # ⌈0.3 · 32⌉ = ⌈9.6⌉
    assert epoch_steps(2.5, [3, 5, 7], [0.5, 0.5, 0.0]) == (25, 10)   # system 2 never drawn
    assert epoch_steps(1, [4, 1, 3], [1.0, 1.0, 2.0]) == (16, 16)     # weights, normalised: 4 / 0.25
    assert epoch_steps(1e-6, [5], [1.0]) == (1, 5)


def test_removed_precondition_false_is_accepted(inp):
    """`precondition = false` is what numdp does, so inputs of earlier versions still read."""
    cfg = load_config(inp(MINIMAL.replace("numb_steps = 10", "numb_steps = 10\nprecondition = false", 1)))
    assert not hasattr(cfg.training, "precondition")


def test_bad_toml_and_missing_file(inp, tmp_path):
    with pytest.raises(InputError, match="not valid TOML"):
        load_config(inp("[model\n"))
    with pytest.raises(InputError, match="input file not found"):
        load_config(tmp_path / "none.toml")


def test_cli_prints_one_line(inp, capsys):
    path = inp(MINIMAL.replace("[training]", "[loss]\nstart_pref_q = 1\n[training]"))
    assert cli_main(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "numdp train: error: input.toml: [loss] start_pref_q: unknown key"


def test_unreadable_system_names_the_file(inp, tmp_path):
    (tmp_path / "sys" / "set.000" / "coord.npy").write_text("garbage")
    cfg = load_config(inp(MINIMAL))
    from numdp.train.loop import Trainer

    with pytest.raises(InputError, match="coord.npy"):
        Trainer(cfg, nthreads=1)


def test_rglob_patterns_choose_the_folders_below(inp, tmp_path, monkeypatch):
    """DeePMD-kit's rglob_patterns (TOML and input.json, training and validation, and numdp test
    --train-data): the folders below each `systems` folder that match a pattern and hold type.raw
    or are LMDB datasets, sorted; the folder itself is not a candidate (as in DeePMD-kit); a
    pattern that finds nothing, an empty list and a root that is not a folder: one line each."""
    from lmdb_util import write_lmdb
    from numdp.train.config import input_systems

    data = tmp_path / "data"
    for name in ("b/sys_2", "a/sys_1", "a/other", "sys_0"):
        write_system(data / name)
    write_lmdb(data / "c" / "sys_3.lmdb", [{"atom_types": np.array([0, 1]), "coords": np.eye(2, 3),
                                          "cells": 4.0 * np.eye(3), "energies": 1.0}])
    write_system(data / "type_root")
    text = MINIMAL.replace('systems = ["sys"]', 'systems = ["data"]\nrglob_patterns = ["sys_*"]')
    got = load_config(inp(text)).training.systems
    assert got == [data / "a/sys_1", data / "b/sys_2", data / "c/sys_3.lmdb#nloc=2", data / "sys_0"]
    both = load_config(inp(text.replace('["sys_*"]', '["sys_1", "*_2"]'))).training.systems
    assert both == [data / "a/sys_1", data / "b/sys_2"]
    (tmp_path / "input.json").write_text(json.dumps({
        "model": {"type_map": ["A", "B"], "descriptor": {"type": "se_e2_a"}, "fitting_net": {}},
        "training": {"training_data": {"systems": "data", "rglob_patterns": ["sys_2"]},
                     "validation_data": {"systems": ["data"], "rglob_patterns": ["other"]}, "numb_steps": 1}}))
    monkeypatch.chdir(tmp_path)   # (input.json's paths are relative to the working directory)
    cfg = load_config(tmp_path / "input.json")
    assert [p.resolve() for p in cfg.training.systems] == [(data / "b/sys_2").resolve()]
    assert [p.resolve() for p in cfg.validation.systems] == [(data / "a/other").resolve()]
    assert [p.resolve() for p in input_systems(tmp_path / "input.json", validation=True)] == [(data / "a/other").resolve()]
    for patterns, fragment in (('["nothing*"]', "no system (folder holding type.raw, or LMDB dataset) below it "
                                               "matches rglob_patterns ['nothing*']"),
                               ("[]", "rglob_patterns: expected a non-empty list of strings")):
        with pytest.raises(InputError, match=re.escape(fragment)):
            load_config(inp(text.replace('["sys_*"]', patterns)))
    with pytest.raises(InputError, match=r"sys_0/type.raw: rglob_patterns \['sys_\*'\] search the folders below a folder"):
        load_config(inp(text.replace('systems = ["data"]', 'systems = ["data/sys_0/type.raw"]')))
