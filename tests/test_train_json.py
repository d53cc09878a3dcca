"""`numdp train input.json`: DeePMD-kit's own input files read unchanged (numdp.train.deepmd_json)."""
import copy
import json
from pathlib import Path

import pytest

from conftest import ORACLE
from numdp.cli import main as cli_main
from numdp.errors import InputError
from numdp.train.config import AutoProb, ProbBlock, ProbStyle, load_config
from numdp.train.data import system_probs
from numdp.train.deepmd_json import IGNORED

REPO = Path(__file__).resolve().parents[1]

# DeePMD-kit's examples/water/se_e2_a/input.json as published (tabs and `_comment` keys
# included), with the systems moved to inputs/water/data and numb_steps 1000000 -> 2.
UPSTREAM_WATER = """{
    "_comment": " model parameters",
    "model": {
\t"type_map":\t["O", "H"],
\t"descriptor" :{
\t    "type":\t\t"se_e2_a",
\t    "sel":\t\t[46, 92],
\t    "rcut_smth":\t0.50,
\t    "rcut":\t\t6.00,
\t    "neuron":\t\t[25, 50, 100],
\t    "resnet_dt":\tfalse,
\t    "axis_neuron":\t16,
\t    "seed":\t\t1,
\t    "_comment":\t\t" that's all"
\t},
\t"fitting_net" : {
\t    "neuron":\t\t[240, 240, 240],
\t    "resnet_dt":\ttrue,
\t    "seed":\t\t1,
\t    "_comment":\t\t" that's all"
\t},
\t"_comment":\t" that's all"
    },

    "learning_rate" :{
\t"type":\t\t"exp",
\t"decay_steps":\t5000,
\t"start_lr":\t0.001,
\t"stop_lr":\t3.51e-8,
\t"_comment":\t"that's all"
    },

    "loss" :{
\t"type":\t\t"ener",
\t"start_pref_e":\t0.02,
\t"limit_pref_e":\t1,
\t"start_pref_f":\t1000,
\t"limit_pref_f":\t1,
\t"start_pref_v":\t0,
\t"limit_pref_v":\t0,
\t"_comment":\t" that's all"
    },

    "training" : {
\t"training_data": {
\t    "systems":\t\t["inputs/water/data/data_0/", "inputs/water/data/data_1/", "inputs/water/data/data_2/"],
\t    "batch_size":\t"auto",
\t    "_comment":\t\t"that's all"
\t},
\t"validation_data":{
\t    "systems":\t\t["inputs/water/data/data_3"],
\t    "batch_size":\t1,
\t    "numb_btch":\t3,
\t    "_comment":\t\t"that's all"
\t},
\t"numb_steps":\t2,
\t"seed":\t\t10,
\t"disp_file":\t"lcurve.out",
\t"disp_freq":\t1,
\t"save_freq":\t1000,
\t"_comment":\t"that's all"
    },

    "_comment":\t\t"that's all"
}
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working directory in which inputs/ is the repository's (paths as in the upstream example)."""
    (tmp_path / "inputs").symlink_to(REPO / "inputs")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_upstream_water_example_trains(workdir):
    (workdir / "input.json").write_text(UPSTREAM_WATER)
    assert cli_main(["train", "input.json", "--threads", "1"]) == 0
    rows = [line.split() for line in (workdir / "lcurve.out").read_text().splitlines()
            if not line.startswith("#")]
    assert [int(r[0]) for r in rows] == [1, 2]   # DeePMD-kit's rows: after updates 1 and 2
    # numdp freeze reads the networks from the input.json text the checkpoint carries
    assert cli_main(["freeze", "-o", "frozen.h5"]) == 0
    from numdp.io.model_file import read_model
    from test_model_file import assert_params_equal
    frozen, model = read_model(workdir / "frozen.h5"), read_model(workdir / "model.h5")
    frozen.info = model.info  # (which step, which file: the rest is the model's)
    assert_params_equal(frozen, model)
    assert (workdir / "model.h5").is_file() and (workdir / "model.ckpt.h5").is_file()


def test_upstream_example_matches_its_toml(workdir):
    """Every value of the JSON reaches the same TrainConfig field as the TOML spelling."""
    (workdir / "input.json").write_text(UPSTREAM_WATER)
    cfg = load_config("input.json")
    d, f = cfg.descriptor, cfg.fitting
    assert cfg.type_map == ["O", "H"]
    assert (d.rcut, d.rcut_smth, d.sel, d.neuron, d.axis_neuron) == (6.0, 0.5, [46, 92], [25, 50, 100], 16)
    assert (d.resnet_dt, d.type_one_side, d.seed) == (False, False, 1)
    assert (f.neuron, f.resnet_dt, f.seed) == ([240, 240, 240], True, 1)
    assert (cfg.learning_rate.decay_steps, cfg.learning_rate.stop_lr) == (5000, 3.51e-8)
    tr = cfg.training
    assert (tr.numb_steps, tr.seed, tr.disp_freq, tr.save_freq, tr.batch_size.auto) == (2, 10, 1, 1000, 32)
    data = REPO / "inputs/water/data"
    assert [p.resolve() for p in tr.systems] == [(data / f"data_{i}").resolve() for i in range(3)]
    assert [p.resolve() for p in cfg.validation.systems] == [(data / "data_3").resolve()]
    assert (cfg.validation.batch_size.fixed, cfg.validation.numb_btch) == (1, 3)
    assert tr.disp_file == workdir / "lcurve.out"  # outputs in the working directory


@pytest.mark.parametrize("name", ["water_2k_seed1", "cu_5k_seed1"])
def test_oracle_inputs_parse(name, monkeypatch):
    folder = ORACLE / "training"
    if not folder.is_dir():
        pytest.skip("../shared/oracle not present")
    monkeypatch.chdir(folder)  # DeePMD-kit ran them from there
    cfg = load_config(f"{name}.input.json")
    raw = json.loads((folder / f"{name}.input.json").read_text())
    d = raw["model"]["descriptor"]
    assert (cfg.descriptor.sel, cfg.descriptor.rcut_smth, cfg.descriptor.type_one_side) == (
        d["sel"], d["rcut_smth"], True)
    assert cfg.loss.start_pref_v == raw["loss"]["start_pref_v"]
    assert cfg.training.numb_steps == raw["training"]["numb_steps"]
    assert len(cfg.training.systems) == len(raw["training"]["training_data"]["systems"])
    assert all(p.is_dir() for p in cfg.training.systems + cfg.validation.systems)
    assert cfg.validation.numb_btch == 3


def test_oracle_water_input_trains(tmp_path, monkeypatch):
    """DeePMD-kit's exact water input (only numb_steps cut to 2), run from a folder where its
    ../../data paths resolve as they did for DeePMD-kit."""
    src = ORACLE / "training" / "water_2k_seed1.input.json"
    if not src.is_file():
        pytest.skip("../shared/oracle not present")
    (tmp_path / "data").symlink_to(ORACLE.parent / "data")
    work = tmp_path / "oracle" / "training"
    work.mkdir(parents=True)
    tree = json.loads(src.read_text())
    tree["training"]["numb_steps"] = 2
    (work / "input.json").write_text(json.dumps(tree))
    monkeypatch.chdir(work)
    assert cli_main(["train", "input.json", "--threads", "1"]) == 0
    rows = [line.split() for line in (work / "lcurve.out").read_text().splitlines() if not line.startswith("#")]
    assert [int(r[0]) for r in rows] == [1]  # disp_freq 100: DeePMD-kit's first row only, none for step 2
    assert (work / "model.h5").is_file()


def _write(workdir, tree) -> str:
    (workdir / "input.json").write_text(json.dumps(tree))
    return "input.json"


@pytest.mark.parametrize("edit, message", [
    (lambda t: t["model"]["descriptor"].update(foo=1), r"\[model.descriptor\] foo: unknown key"),
    (lambda t: t["model"]["descriptor"].update(precision="float32"),
     r"\[model.descriptor\] precision: numdp supports only 'float64' or 'default'"),
    (lambda t: t["model"].update(type_embedding={}), r"\[model\] type_embedding: unknown key"),
    (lambda t: t.update(nvnmd={}), r"\[nvnmd\]: unknown section"),
    (lambda t: t["training"]["training_data"].update(set_prefix="frames"),
     r"\[training.training_data\] set_prefix: numdp reads only set"),
    (lambda t: t["training"]["training_data"].update(auto_prob="prob_sys_size; 0:4:1"),
     r"\[training\] auto_prob: block '0:4:1': outside the 3 systems \(0 <= START < END <= 3\)"),
    (lambda t: t["training"]["training_data"].update(auto_prob_style="prob_sys_size;0:57"),
     r"\[training\] auto_prob: block '0:57': expected START:END:WEIGHT"),
    (lambda t: t["training"]["training_data"].update(auto_prob="prob_uniform", auto_prob_style="prob_uniform"),
     r"\[training.training_data\] auto_prob_style: give auto_prob or its alias auto_prob_style, not both"),
    (lambda t: t["training"]["training_data"].update(sys_probs=[0.5, 0.5]),
     r"\[training\] sys_probs: has 2 entries for 3 systems \(give one entry per system"),
    (lambda t: t["training"]["training_data"].update(sys_weights=[0.5, 0.6, -1]),
     r"\[training\] sys_probs: the entries >= 0 sum to 1.1, more than 1"),
    (lambda t: t["training"]["validation_data"].update(sys_probs=[0.5, -1]),
     r"\[validation\] sys_probs: has 2 entries for 1 system \("),
    (lambda t: t["training"]["validation_data"].update(auto_prob="prob_sys_size;0:1:0"),
     r"\[validation\] auto_prob: every block has weight 0"),
    (lambda t: t["training"]["training_data"].update(numb_btch=3),
     r"\[training.training_data\] numb_btch: unknown key"),
    (lambda t: t["training"].update(enable_ema=True, ema_decay=1.5),
     r"\[training\] ema_decay: must be in \[0, 1\), got 1.5"),
    (lambda t: t["training"]["training_data"].update(min_pair_dist=-0.5),
     r"\[training\] min_pair_dist: must be >= 0"),
    (lambda t: t["training"].update(validation_data={"systems": ["data"], "min_pair_dist": 0.5}),
     r"\[training.validation_data\] min_pair_dist: unknown key"),
    (lambda t: t.update(validating={"full_validation": True}),
     r"\[root\] validating: numdp supports only \{\} \(what numdp does\)"),
    (lambda t: t["training"].update(num_steps=5), r"\[training\] num_steps: give numb_steps or num_steps, not both"),
    (lambda t: t["training"].update(numb_epoch=2), r"\[training\] numb_epoch: give numb_steps or numb_epoch, not both"),
    (lambda t: t["training"].update(gradient_max_norm=-1.0), r"\[training\] gradient_max_norm: must be >= 0"),
    (lambda t: t["training"].update(disp_avg=1), r"\[training\] disp_avg: expected true or false"),
    (lambda t: t["loss"].update(start_pref_gf=1.0, limit_pref_gf=1.0),
     r"\[loss\] start_pref_gf: the generalized-force loss term is not supported by numdp"),
    (lambda t: t["loss"].update(loss_func="mae", use_huber=True), r"\[loss\] use_huber: not with loss_func = \"mae\""),
    (lambda t: t["loss"].update(use_huber=True, relative_f=0.1), r"\[loss\] relative_f: not with use_huber"),
    (lambda t: t["model"]["descriptor"].update(activation_function="custom_silu:3.0"),
     r"\[model.descriptor\] activation_function: must be one of tanh, gelu, relu, relu6, softplus, "
     r"sigmoid, silu, none, gelu_tf, linear; got 'custom_silu:3.0'$"),
    (lambda t: t["model"]["fitting_net"].update(activation_function="swish"),
     r"\[model.fitting_net\] activation_function: must be one of .*; got 'swish'$"),
    (lambda t: t["model"]["fitting_net"].update(activation_function=1),
     r"\[model.fitting_net\] activation_function: must be one of .*; got 1$"),
    (lambda t: t["training"]["training_data"].update(systems=["nowhere"]), r"\[training\] systems: .*nowhere"),
    (lambda t: t["training"]["training_data"].update(batch_size=[1, 1]),
     r"\[training\] batch_size: has 2 entries for 3 systems \(give one entry per system"),
    (lambda t: t["training"]["training_data"].update(batch_size=[1, 0, 1]),
     r"\[training\] batch_size: every entry must be >= 1, got \[1, 0, 1\]"),
    (lambda t: t["training"]["training_data"].update(batch_size=[1, "auto", 1]),
     r"\[training\] batch_size: a list must hold one integer per system"),
    (lambda t: t["training"]["validation_data"].update(batch_size=[1, 1]),
     r"\[validation\] batch_size: has 2 entries for 1 system \("),
    (lambda t: t["training"]["training_data"].update(batch_size="mixed:4"),
     r"\[training\] batch_size: expected an integer, a list"),
])
def test_errors_name_the_key(workdir, edit, message):
    tree = json.loads(UPSTREAM_WATER)
    edit(tree)
    with pytest.raises(InputError, match=message):
        load_config(_write(workdir, tree))
    assert cli_main(["train", "input.json"]) == 2


def test_deepmd_kit_32_learning_rate_tables(workdir):
    """DeePMD-kit 3.2's learning_rate keys reach the schedule: type, stop_lr_ratio, the warmup
    (warmup_ratio of numb_steps), a type's own keys; a JSON null is the default."""
    from numdp.train.schedule import CosineDecay, ExpDecay, WSDDecay, WSDRule

    tree = json.loads(UPSTREAM_WATER)
    tree["training"]["numb_steps"] = 1000
    tree["learning_rate"] = {"type": "wsd", "start_lr": 1e-3, "stop_lr_ratio": 0.01, "warmup_ratio": 0.1,
                             "warmup_start_factor": 0.5, "decay_type": "linear", "decay_phase_ratio": 0.2,
                             "stop_lr": None, "scale_by_worker": "linear"}
    s = load_config(_write(workdir, tree)).learning_rate.schedule(1000)
    assert (s.warmup_steps, s.warmup_start_lr) == (100, 5e-4)
    assert s.decay == WSDDecay(1e-3, 1e-3 * 0.01, 900, 200, WSDRule.LINEAR)
    tree["learning_rate"] = {"type": "cosine", "start_lr": 1e-3, "stop_lr": 1e-6, "warmup_steps": 50}
    s = load_config(_write(workdir, tree)).learning_rate.schedule(1000)
    assert (s.warmup_steps, s.decay) == (50, CosineDecay(1e-3, 1e-6, 950))
    tree["learning_rate"] = {"type": "exp", "start_lr": 1e-3, "decay_steps": 20, "decay_rate": 0.95,
                             "smooth": True}
    s = load_config(_write(workdir, tree)).learning_rate.schedule(1000)
    assert (s.warmup_steps, s.decay) == (0, ExpDecay(1e-3, 5e-8, 20, 1000, 0.95, True))


def test_deepmd_kit_32_optimizer_table(workdir):
    """DeePMD-kit 3.2's optimizer table: Adam or AdamW, betas, weight decay (AdamW's default as
    dp train 3.2 fills it before its checks: 0) reach the trainer's Adam."""
    from numdp.train.config import OptimizerType

    tree = json.loads(UPSTREAM_WATER)
    tree["optimizer"] = {"type": "AdamW", "adam_beta1": 0.85, "_comment": "x"}
    opt = load_config(_write(workdir, tree)).optimizer
    assert (opt.type, opt.adam_beta1, opt.adam_beta2, opt.weight_decay) == (OptimizerType.ADAMW, 0.85, 0.999, 0.0)
    tree["optimizer"] = {"type": "Adam", "weight_decay": 1e-4}
    opt = load_config(_write(workdir, tree)).optimizer
    assert (opt.type, opt.weight_decay) == (OptimizerType.ADAM, 1e-4)
    tree["optimizer"] = {"type": "LKF"}
    with pytest.raises(InputError, match=r"\[optimizer\] type: expected one of 'Adam', 'AdamW'"):
        load_config(_write(workdir, tree))


def test_system_probabilities_read(workdir):
    """auto_prob (alias auto_prob_style) and sys_probs (alias sys_weights) of training_data and
    validation_data reach [training] / [validation]; DP-GEN's spaced auto_prob reads as written."""
    tree = json.loads(UPSTREAM_WATER)
    tree["training"]["training_data"]["auto_prob"] = "prob_sys_size; 0:2:0.8; 2:3:0.2"
    tree["training"]["validation_data"]["auto_prob_style"] = "prob_uniform"
    cfg = load_config(_write(workdir, tree))
    assert cfg.training.auto_prob == AutoProb(ProbStyle.SYS_SIZE, (ProbBlock(0, 2, 0.8), ProbBlock(2, 3, 0.2)))
    assert cfg.validation.auto_prob == AutoProb(ProbStyle.UNIFORM)
    assert cfg.training.sys_probs is None and cfg.validation.sys_probs is None
    assert system_probs([4, 1, 3], cfg.training.auto_prob, None).tolist() == pytest.approx([0.64, 0.16, 0.2])
    tree["training"]["training_data"]["sys_weights"] = [0.5, -1, -1]
    tree["training"]["validation_data"]["sys_probs"] = [1]
    cfg = load_config(_write(workdir, tree))
    assert cfg.training.sys_probs == [0.5, -1, -1] and cfg.validation.sys_probs == [1.0]
    assert system_probs([4, 1, 3], cfg.training.auto_prob, cfg.training.sys_probs).tolist() == [0.5, 0.125, 0.375]


def test_set_davg_zero_and_change_bias_read(workdir):
    """descriptor.set_davg_zero and training.change_bias_after_training reach the config
    (their effect: tests/test_train_run.py)."""
    tree = json.loads(UPSTREAM_WATER)
    cfg = load_config(_write(workdir, tree))
    assert (cfg.descriptor.set_davg_zero, cfg.training.change_bias_after_training) == (False, False)
    tree["model"]["descriptor"]["set_davg_zero"] = True
    tree["training"]["change_bias_after_training"] = True
    cfg = load_config(_write(workdir, tree))
    assert (cfg.descriptor.set_davg_zero, cfg.training.change_bias_after_training) == (True, True)


def test_trimmed_keys_as_deepmd_kit(workdir):
    """Keys starting with _ (DeePMD-kit 3's examples number them: _comment7) at any level, even in
    training_data, and $schema are dropped before the checks, as DeePMD-kit trims "_*"; the
    result equals the input without them."""
    base = json.loads(UPSTREAM_WATER)
    tree = copy.deepcopy(base)
    tree["$schema"] = "https://deepmd.readthedocs.io/schema.json"
    tree["_comment1"] = " model parameters"
    tree["model"]["descriptor"]["_note"] = {"anything": [1, None]}
    tree["training"]["training_data"]["_comment7"] = "that's all"
    tree["training"]["validation_data"]["_x"] = None
    tree["learning_rate"]["_comment3"] = "that's all"
    tree["training"]["stat_file"] = "./se_e2_a.hdf5"
    trimmed, plain = load_config(_write(workdir, tree)), load_config(_write(workdir, base))
    plain.text = trimmed.text   # (the file's text, kept for the checkpoint)
    assert trimmed == plain


INPUTS = REPO / "tests/data/deepmd_kit_inputs"


def _local_data(tree):
    """The example's systems (../data/data_k) as the repository's copies (inputs/water/data)."""
    for key in ("training_data", "validation_data"):
        sec = tree["training"].get(key)
        if sec:
            sec["systems"] = [f"inputs/water/data/{Path(p).name}" for p in sec["systems"]]
    return tree


@pytest.mark.parametrize("name", ["water_se_e2_a_tf", "water_se_e2_a_pt", "water_se_e2_a_epochs"])
def test_deepmd_kit_examples_and_their_normalized_form(workdir, name):
    """DeePMD-kit's current examples as published (_comment7 keys, stat_file) and as `dp train`
    writes them to out.json, every default filled in by DeePMD-kit's own normalize
    (tools/make_json_fixtures.py): numdp reads both, to the same training, so numdp's default
    for every key it reads is DeePMD-kit's."""
    raw = _local_data(json.loads((INPUTS / f"{name}.json").read_text()))
    full = _local_data(json.loads((INPUTS / f"{name}.out.json").read_text()))
    assert len(json.dumps(full)) > 1.8 * len(json.dumps(raw))   # (the defaults are there)
    a, b = load_config(_write(workdir, raw)), load_config(_write(workdir, full))
    b.text = a.text
    # the one default that differs on purpose: numdp's checkpoint is HDF5, named model.ckpt.h5
    assert (a.training.save_ckpt.name, b.training.save_ckpt.name) == ("model.ckpt.h5", "model.ckpt")
    b.training.save_ckpt = a.training.save_ckpt
    assert a == b


def test_other_model_types_refused(workdir):
    tree = json.loads(UPSTREAM_WATER)
    tree["model"]["type"] = "standard"
    load_config(_write(workdir, tree))
    tree["model"]["type"] = "linear_ener"
    with pytest.raises(InputError, match=r"input.json: \[model\] type: numdp supports only 'standard' "
                                         r"\(what numdp does\), got 'linear_ener'"):
        load_config(_write(workdir, tree))


def test_harmless_keys_accepted(workdir):
    """The keys of IGNORED, at accepted values, change nothing; nulls are defaults; sel "auto",
    type_one_side, activation_function, stop_batch and model.data_stat_nbatch are read."""
    base = json.loads(UPSTREAM_WATER)
    tree = copy.deepcopy(base)
    tree["model"]["descriptor"].update(precision="float64", trainable=True, exclude_types=[],
                                       sel="auto", type_one_side=True, activation_function="tanh")
    tree["model"]["fitting_net"].update(precision="default", seed=None, activation_function="tanh", rcond=None)
    tree["model"]["data_stat_nbatch"] = 3
    tree["training"].update(max_ckpt_keep=2, time_training=True, profiling=False, tensorboard=False,
                            stop_batch=7, validation_data=None)
    del tree["training"]["numb_steps"]
    tree["training"]["training_data"].update(set_prefix="set", auto_prob="prob_sys_size")
    cfg = load_config(_write(workdir, tree))
    assert cfg.descriptor.sel is None and cfg.descriptor.type_one_side
    assert cfg.fitting.seed is None
    assert (cfg.training.numb_steps, cfg.training.data_stat_nbatch) == (7, 3)
    assert cfg.validation.systems == []
    assert set(IGNORED["training"]) >= {"max_ckpt_keep", "tensorboard", "profiling"}


def test_the_keys_dp_train_writes_to_out_json_are_read(workdir):
    """dp train 3.2 writes its input back with every default filled in (out.json), among them
    model.bridging_method "None" with its two radii and training.enable_tf32: read as the input
    itself, changing nothing; bridging switched on is refused in one line."""
    base = json.loads(UPSTREAM_WATER)
    tree = copy.deepcopy(base)
    tree["model"].update(bridging_method="None", bridging_r_inner=0.5, bridging_r_outer=0.8, enable_tf32=True)
    tree["training"]["enable_tf32"] = False
    a, b = load_config(_write(workdir, tree)), load_config(_write(workdir, base))
    a.text = b.text
    assert a == b
    tree["model"]["bridging_method"] = "ZBL"
    with pytest.raises(InputError, match=r"\[model\] bridging_method: numdp supports only 'None'"):
        load_config(_write(workdir, tree))


def test_tensorflow_mixed_precision_is_ignored_as_by_deepmd_kits_pytorch_backend(workdir):
    """training.mixed_precision (DeePMD-kit's examples/water/se_e2_a_mixed_prec: half-precision
    compute in the TensorFlow backend) is accepted and changes nothing, as DeePMD-kit's PyTorch
    backend ignores it (its argcheck marks it TensorFlow-only)."""
    base = json.loads(UPSTREAM_WATER)
    tree = copy.deepcopy(base)
    tree["training"]["mixed_precision"] = {"output_prec": "float32", "compute_prec": "float16"}
    a, b = load_config(_write(workdir, tree)), load_config(_write(workdir, base))
    a.text = b.text
    assert a == b


@pytest.mark.parametrize("steps, epoch", [("num_steps", None), ("numb_step", None), ("num_step", None),
                                         (None, "numb_epoch"), (None, "num_epochs"), (None, "num_epoch"),
                                         (None, "numb_epochs")])
def test_run_length_names_and_gradient_max_norm(workdir, steps, epoch):
    """DeePMD-kit 3.2's names of training.numb_steps and training.numb_epoch (one of the two),
    and training.gradient_max_norm, read as the TOML keys; numb_epoch leaves numb_steps to the
    loaded data."""
    tree = json.loads(UPSTREAM_WATER)
    del tree["training"]["numb_steps"]
    tree["training"][steps or epoch] = 3 if steps else 1.5
    tree["training"]["gradient_max_norm"] = 5
    tr = load_config(_write(workdir, tree)).training
    assert (tr.numb_steps, tr.numb_epoch) == ((3, None) if steps else (None, 1.5))
    assert tr.gradient_max_norm == 5.0


def test_paths_against_working_directory(workdir, tmp_path, monkeypatch):
    sub = workdir / "elsewhere"
    sub.mkdir()
    (sub / "input.json").write_text(UPSTREAM_WATER)
    cfg = load_config(sub / "input.json")  # run from workdir: inputs/ resolves there
    assert cfg.training.disp_file == workdir / "lcurve.out"
    monkeypatch.chdir(sub)
    with pytest.raises(InputError, match="inputs/water/data/data_0"):
        load_config("input.json")


def test_paths_found_next_to_the_input_get_a_hint(workdir, monkeypatch):
    """Run from elsewhere, a DeePMD-kit input whose systems lie beside it: the message says where
    the paths are taken from and where to run (it only said the directory does not exist)."""
    (workdir / "input.json").write_text(UPSTREAM_WATER)
    away = workdir / "away"
    away.mkdir()
    monkeypatch.chdir(away)
    with pytest.raises(InputError) as err:
        load_config(workdir / "input.json")
    text = str(err.value)
    assert "does not exist (input.json paths are relative to the working directory" in text
    assert f"run numdp train from {workdir.resolve()})" in text and "\n" not in text
    # a path found nowhere gets no hint
    (workdir / "input.json").write_text(UPSTREAM_WATER.replace("inputs/water/data/data_0", "nowhere/data_0"))
    monkeypatch.chdir(workdir)
    with pytest.raises(InputError) as err:
        load_config(workdir / "input.json")
    assert "nowhere/data_0: data directory (or HDF5 file) does not exist" in str(err.value)
    assert "relative to the working directory" not in str(err.value)


def test_not_json(workdir):
    (workdir / "input.json").write_text("{ not json")
    with pytest.raises(InputError, match="input.json: not valid JSON"):
        load_config("input.json")
