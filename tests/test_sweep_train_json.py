"""`numdp train input.json` on the forms of DeePMD-kit's own inputs that `dp train` 3.2 converts
before its checks (deepmd.utils.compat.update_deepmd_input) and on its argcheck's other key names:
each reads as `dp train` 3.2 reads it (numdp.train.deepmd_json._compat, KEY_ALIASES).

Found by a sweep over DeePMD-kit's example and test inputs (source/tests/tf/compat_inputs/
water_se_a_v1.json, its v1 layout; source/tests/pt inputs): all were refused in one line, or, for
AdamW without weight_decay and 3.1's training.opt_type beside an optimizer table, read with
another meaning than dp train 3.2's (checked against its update_deepmd_input + normalize)."""
import copy
import json
import math

import pytest

from numdp.errors import InputError
from numdp.train.config import OptimizerType, load_config

from test_train_json import UPSTREAM_WATER, _write, workdir  # noqa: F401  (the fixture)


def _same(a, b) -> bool:
    """Whether two TrainConfigs are the same run (their input texts apart)."""
    a.text = b.text
    return a == b


def test_argcheck_aliases_read_as_their_keys(workdir):
    """n_axis_neuron (descriptor), n_neuron (fitting_net) and validation_data's numb_batch are
    DeePMD-kit's aliases of axis_neuron, neuron and numb_btch; both names at once is one line."""
    base = json.loads(UPSTREAM_WATER)
    tree = copy.deepcopy(base)
    tree["model"]["descriptor"]["n_axis_neuron"] = tree["model"]["descriptor"].pop("axis_neuron")
    tree["model"]["fitting_net"]["n_neuron"] = tree["model"]["fitting_net"].pop("neuron")
    tree["training"]["validation_data"]["numb_batch"] = tree["training"]["validation_data"].pop("numb_btch")
    assert _same(load_config(_write(workdir, tree)), load_config(_write(workdir, base)))
    tree["model"]["fitting_net"]["neuron"] = [240, 240, 240]
    with pytest.raises(InputError) as err:
        load_config(_write(workdir, tree))
    assert str(err.value) == "input.json: [model.fitting_net] n_neuron: give neuron or its alias n_neuron, not both"
    tree = copy.deepcopy(base)
    tree["training"]["training_data"]["numb_batch"] = 2
    with pytest.raises(InputError, match=r"^input.json: \[training.training_data\] numb_batch: unknown key$"):
        load_config(_write(workdir, tree))


def test_v1_layout_reads_as_dp_train_converts_it(workdir):
    """The v1 layout (training.systems, batch_size, stop_batch, numb_test; learning_rate.decay_rate
    without stop_lr), as source/tests/tf/compat_inputs/water_se_a_v1.json: the data keys go to
    training_data, numb_test is dropped and decay_rate becomes stop_lr = start_lr ·
    rate^(stop_batch / decay_steps) (convert_input_v1_v2, remove_decay_rate)."""
    v2 = json.loads(UPSTREAM_WATER)
    v2["training"].pop("validation_data")
    v2["training"]["training_data"]["batch_size"] = [1, 1, 1]
    v2["learning_rate"] = {"type": "exp", "decay_steps": 5000, "start_lr": 0.001,
                           "stop_lr": 0.001 * math.exp(math.log(0.95) * 200000 / 5000)}
    v2["training"]["numb_steps"] = 200000
    v1 = copy.deepcopy(v2)
    data = v1["training"].pop("training_data")
    v1["training"].update(systems=data["systems"], batch_size=data["batch_size"], set_prefix="set",
                          stop_batch=v1["training"].pop("numb_steps"), numb_test=10)
    v1["learning_rate"] = {"type": "exp", "decay_steps": 5000, "decay_rate": 0.95, "start_lr": 0.001}
    a, b = load_config(_write(workdir, v1)), load_config(_write(workdir, v2))
    assert _same(a, b)
    assert a.learning_rate.schedule(200000).decay.stop_lr == pytest.approx(0.001 * 0.95 ** 40, rel=1e-12)
    v1["training"]["training_data"] = {"systems": data["systems"]}
    with pytest.raises(InputError, match=r"^input.json: \[training\] systems: v1's training.systems and v2's "
                                         r"training.training_data are both given"):
        load_config(_write(workdir, v1))


def test_training_warmup_keys_move_to_learning_rate(workdir):
    """dp train 3.2 moves training.warmup_steps / warmup_ratio / warmup_start_factor to
    learning_rate (migrate_training_warmup); one given in both is one line."""
    tree = json.loads(UPSTREAM_WATER)
    tree["training"]["numb_steps"] = 100
    tree["training"].update(warmup_steps=10, warmup_start_factor=0.5)
    s = load_config(_write(workdir, tree)).learning_rate.schedule(100)
    assert (s.warmup_steps, s.warmup_start_lr) == (10, 5e-4)
    tree["learning_rate"]["warmup_steps"] = 20
    with pytest.raises(InputError) as err:
        load_config(_write(workdir, tree))
    assert str(err.value) == ("input.json: [training] warmup_steps: also given in learning_rate: give it in "
                              "learning_rate only")


def test_optimizer_as_dp_train_32_completes_it(workdir):
    """dp train 3.2 fills an Adam / AdamW optimizer table with betas 0.9, 0.999 and weight_decay
    0 before its checks, so AdamW without weight_decay trains with none (not argcheck's 0.001),
    and moves 3.1's optimizer keys of training (opt_type, weight_decay, adam_beta1, ...) over the
    optimizer table's (convert_optimizer_v31_to_v32)."""
    tree = json.loads(UPSTREAM_WATER)
    tree["optimizer"] = {"type": "AdamW"}
    opt = load_config(_write(workdir, tree)).optimizer
    assert (opt.type, opt.adam_beta1, opt.adam_beta2, opt.weight_decay) == (OptimizerType.ADAMW, 0.9, 0.999, 0.0)
    tree["optimizer"] = {"type": "AdamW", "weight_decay": 0.01}
    tree["training"]["opt_type"] = "Adam"   # 3.1's key wins, the table's decay stays
    opt = load_config(_write(workdir, tree)).optimizer
    assert (opt.type, opt.weight_decay) == (OptimizerType.ADAM, 0.01)
    del tree["optimizer"]
    tree["training"].update(opt_type="AdamW", weight_decay=0.02, adam_beta2=0.99)
    opt = load_config(_write(workdir, tree)).optimizer
    assert (opt.type, opt.adam_beta1, opt.adam_beta2, opt.weight_decay) == (OptimizerType.ADAMW, 0.9, 0.99, 0.02)
    tree["training"]["opt_type"] = "LKF"
    with pytest.raises(InputError, match=r"^input.json: \[optimizer\] type: expected one of 'Adam', 'AdamW'"):
        load_config(_write(workdir, tree))


def test_keys_dp_train_drops_or_pytorch_ignores(workdir):
    """Accepted and changing nothing: training.numb_test (dropped by dp train since 2.0),
    model.data_bias_nsample (TensorFlow backend only), training.save_dir (where DeePMD-kit writes
    its numbered checkpoints), fitting_net.atom_ener with every entry null (no vacuum energy
    given, as []); an atom_ener value is still refused in one line."""
    base = json.loads(UPSTREAM_WATER)
    tree = copy.deepcopy(base)
    tree["training"].update(numb_test=5, save_dir="ckpt")
    tree["model"]["data_bias_nsample"] = 3
    tree["model"]["fitting_net"]["atom_ener"] = [None, None]
    assert _same(load_config(_write(workdir, tree)), load_config(_write(workdir, base)))
    tree["model"]["fitting_net"]["atom_ener"] = [-10.0, None]
    with pytest.raises(InputError, match=r"^input.json: \[model.fitting_net\] atom_ener: numdp supports only \[\]"):
        load_config(_write(workdir, tree))


def test_a_sel_of_zero_is_taken_as_deepmd_kit_takes_it(workdir):
    """A type with no neighbour slots (sel entry 0), which DeePMD-kit takes: numdp trains it too
    (tests/test_sweep_sel0.py); a list of zeros only is one line."""
    tree = json.loads(UPSTREAM_WATER)
    tree["model"]["type_map"] = ["O", "H", "C"]
    tree["model"]["descriptor"]["sel"] = [46, 92, 0]
    assert load_config(_write(workdir, tree)).descriptor.sel == [46, 92, 0]
    tree["model"]["descriptor"]["sel"] = [0, 0, 0]
    with pytest.raises(InputError, match=r"^input.json: \[model.descriptor\] sel: at least one entry must be > 0"):
        load_config(_write(workdir, tree))


def test_yaml_input_reads_as_its_json(workdir):
    """dp train reads its input in YAML too (input.yaml / .yml, as source/tests/tf/yaml_inputs):
    the same run as the JSON; the text kept for the checkpoint is the tree as JSON, so numdp
    freeze reads the networks back (model_config)."""
    import yaml

    from numdp.train.config import model_config

    tree = json.loads(UPSTREAM_WATER)
    (workdir / "input.yaml").write_text(yaml.safe_dump(tree))
    a, b = load_config("input.yaml"), load_config(_write(workdir, tree))
    assert model_config(a.text, "input.yaml") == model_config(b.text, "input.json")
    a.source = b.source
    assert _same(a, b)
    (workdir / "bad.yml").write_text("model: [1\n")
    with pytest.raises(InputError, match=r"^bad.yml: not valid YAML"):
        load_config("bad.yml")
    with pytest.raises(InputError, match=r"^bad.yml: not valid YAML \("):
        load_config("bad.yml")


def test_a_multi_task_input_is_refused_by_its_key(workdir):
    """DeePMD-kit's multi-task inputs (examples/water_multi_task: model.model_dict,
    training.data_dict) stopped with "[training] training_data: required key is missing"; the
    line now names what numdp does not do."""
    tree = json.loads(UPSTREAM_WATER)
    tree["model"] = {"shared_dict": {}, "model_dict": {"water_1": tree["model"]}}
    tree["training"]["data_dict"] = {"water_1": {"training_data": tree["training"].pop("training_data")}}
    with pytest.raises(InputError) as err:
        load_config(_write(workdir, tree))
    assert str(err.value) == ("input.json: [model] model_dict: a multi-task input (model_dict, training.data_dict); "
                              "numdp trains one model: give its model and training_data")
