"""DeePMD-kit's `trainable` (descriptor: whether the embedding nets train; fitting_net: the whole
net or one boolean per layer, as its TensorFlow backend takes it): the frozen arrays keep their
values bit for bit through a run, a restart and gradient clipping, the others train, Adam's
moments of the frozen entries stay zero and the clipping norm leaves them out; the keys in TOML
and in DeePMD-kit's input.json, and their mistakes in one line."""
import json

import numpy as np
import pytest

from numdp.errors import InputError
from numdp.train.config import load_config
from numdp.train.flat import frozen_ranges
from numdp.train.optim import Adam, grad_norm, without_ranges
from test_train_run import data_dir, make_input, run, run_keeping  # noqa: F401  (data_dir: fixture)


def arrays(trainer):
    """{name: a copy of θ's entries} for every array of the trainer's flat parameters."""
    return {name: trainer.flat.theta[a:b].copy() for name, a, b in trainer.flat.names}


def initial_arrays(path):
    """`arrays` of a new run of input `path` before its first step."""
    import io

    from numdp.train.loop import Trainer

    trainer = Trainer(load_config(path), nthreads=2, stream=io.StringIO())
    try:
        return arrays(trainer)
    finally:
        trainer.close()


def test_frozen_ranges_cover_exactly_the_frozen_layers(tmp_path, data_dir):
    path = make_input(tmp_path, data_dir, steps=1)
    trainer, _ = run(path)
    flat = trainer.flat
    assert frozen_ranges(flat) == []
    emb = frozen_ranges(flat, embedding_trainable=False)
    covered = {n for n, a, b in flat.names if any(s <= a and b <= e for s, e in emb)}
    assert covered == {n for n, _, _ in flat.names if n.startswith("embedding")}
    fit = frozen_ranges(flat, True, [False, True, False])
    covered = {n for n, a, b in flat.names if any(s <= a and b <= e for s, e in fit)}
    assert covered == {n for n, _, _ in flat.names if n.startswith("fitting") and
                       (".layer[0]." in n or ".layer[2]." in n)}


@pytest.mark.parametrize("clip, batch", [(False, 2), (True, 2), (False, 1)])
def test_frozen_descriptor_keeps_its_weights_through_a_run_and_a_restart(tmp_path, data_dir, clip, batch):
    """[model.descriptor] trainable = false: every embedding array after 8 steps (and after a
    restart from step 5) is bit for bit that of the run's start; every fitting array moved.
    With gradient_max_norm the run is the same but for the clipping (a norm over the trained
    entries only); at batch 1 on 2 threads the passes update θ block by block as its gradient
    completes (`Adam.row_update`), which skips the frozen blocks too."""
    path = make_input(tmp_path, data_dir, steps=8)
    text = path.read_text().replace("seed = 3\n", "seed = 3\ntrainable = false\n")
    text = text.replace("batch_size = 2", f"batch_size = {batch}")
    if clip:
        text = text.replace("numb_steps = 8", "numb_steps = 8\ngradient_max_norm = 0.5")
    path.write_text(text)
    before = initial_arrays(path)
    trainer, _, ck5 = run_keeping(path, 5)
    after = arrays(trainer)
    for name in before:
        if name.startswith("embedding"):
            assert np.array_equal(after[name], before[name]), name
        else:
            assert not np.array_equal(after[name], before[name]), name
    frozen = trainer.adam.frozen
    assert frozen and all(not trainer.adam.m[a:b].any() and not trainer.adam.v[a:b].any() for a, b in frozen)
    again, _ = run(path, restart=ck5)
    assert np.array_equal(again.flat.theta, trainer.flat.theta)


def test_fitting_layers_frozen_one_by_one(tmp_path, data_dir):
    """[model.fitting] trainable = [true, false, true] (neuron [8, 8]: two hidden layers and the
    output layer): the second hidden layer of every fitting net keeps its arrays; the rest train."""
    path = make_input(tmp_path, data_dir, steps=6)
    path.write_text(path.read_text().replace("seed = 4\n", "seed = 4\ntrainable = [true, false, true]\n"))
    before = initial_arrays(path)
    trainer, _ = run(path)
    after = arrays(trainer)
    for name in before:
        same = np.array_equal(after[name], before[name])
        assert same == (name.startswith("fitting") and ".layer[1]." in name), name


def test_adam_and_the_norm_leave_frozen_entries_alone():
    """Adam.step and row_update never write a frozen entry (with weight decay too); grad_norm
    over the segments without the frozen ranges is the norm of the rest."""
    rng = np.random.default_rng(0)
    theta0 = rng.normal(size=50)
    grads = rng.normal(size=(2, 50))
    frozen = [(5, 12), (30, 31)]
    for decoupled in (False, True):
        adam = Adam(50, weight_decay=0.1, decoupled=decoupled, frozen=frozen)
        theta = theta0.copy()
        adam.row_update(theta, grads, 1e-2)(0, 20, 2)
        adam.step(theta, grads, 1e-2, skip=[(0, 20)])
        keep = np.zeros(50, bool)
        for a, b in frozen:
            keep[a:b] = True
        assert np.array_equal(theta[keep], theta0[keep]) and not np.any(theta[~keep] == theta0[~keep])
        assert not adam.m[keep].any() and not adam.v[keep].any()
    segs = without_ranges([(0, 50, 2)], frozen)
    g = grads.sum(axis=0)
    g[keep] = 0.0
    assert grad_norm(grads, segs) == pytest.approx(np.linalg.norm(g), rel=1e-14)


def test_trainable_keys_in_toml_and_input_json(tmp_path, data_dir):
    """Booleans or a list of len(neuron) + 1 booleans for the fitting nets; DeePMD-kit's
    input.json keys (no longer dropped); other values named in one line."""
    path = make_input(tmp_path, data_dir, steps=1)
    text = path.read_text()
    path.write_text(text.replace("seed = 4\n", "seed = 4\ntrainable = false\n"))
    cfg = load_config(path)
    assert cfg.descriptor.trainable and cfg.fitting.trainable == [False, False, False]
    path.write_text(text.replace("seed = 4\n", "seed = 4\ntrainable = [true, true, true]\n"))
    assert load_config(path).fitting.trainable is None
    path.write_text(text.replace("seed = 4\n", "seed = 4\ntrainable = [true, false]\n"))
    with pytest.raises(InputError, match=r"input.toml: \[model.fitting\] trainable: has 2 values; the fitting "
                                         r"nets have 3 layers \(len\(neuron\) \+ 1\)$"):
        load_config(path)
    path.write_text(text.replace("seed = 4\n", "seed = 4\ntrainable = [1, 0, 1]\n"))
    with pytest.raises(InputError, match=r"\[model.fitting\] trainable: expected true, false or a list of them"):
        load_config(path)
    path.write_text(text.replace("seed = 3\n", "seed = 3\ntrainable = \"no\"\n"))
    with pytest.raises(InputError, match=r"\[model.descriptor\] trainable: expected true or false"):
        load_config(path)
    tree = {"model": {"type_map": ["A", "B"],
                      "descriptor": {"type": "se_e2_a", "sel": [30, 30], "rcut": 4.0, "neuron": [4, 8],
                                     "trainable": False},
                      "fitting_net": {"neuron": [8, 8], "trainable": [False, True, True]}},
            "learning_rate": {"start_lr": 1e-3}, "loss": {},
            "training": {"training_data": {"systems": [str(data_dir / "train" / "pbc")]}, "numb_steps": 1}}
    js = tmp_path / "input.json"
    js.write_text(json.dumps(tree))
    cfg = load_config(js)
    assert not cfg.descriptor.trainable and cfg.fitting.trainable == [False, True, True]


@pytest.mark.parametrize("nthreads", [1, 2])
def test_frozen_descriptor_gradient_is_the_fitting_part(nthreads):
    """ModelPasses(embedding_grad=False) skips the descriptor's adjoints: its fitting gradient
    entries are bit for bit those of the full pass (which finite differences check,
    test_train_grad), its embedding entries zero."""
    from numdp.train.flat import FlatParams
    from numdp.train.loss import Prefactors
    from numdp.train.passes import ModelPasses
    from test_train_grad import HYPER, _loss_and_grad, labels_for, make_case

    params, frame, _, _ = make_case(*HYPER[1], True)
    flat = FlatParams.bind(params)
    grads = {}
    for full in (True, False):
        passes = ModelPasses(params, flat, nthreads, embedding_grad=full)
        labels = labels_for(passes.primal(frame), np.random.default_rng(7), True)
        loss, grads[full] = _loss_and_grad(passes, flat, frame, labels, Prefactors(e=0.7, f=2.0, v=0.3))
        passes.close()
    emb = [(a, b) for name, a, b in flat.names if name.startswith("embedding")]
    for name, a, b in flat.names:
        if (a, b) in emb:
            assert not grads[False][a:b].any() and grads[True][a:b].any(), name
        else:
            assert np.array_equal(grads[False][a:b], grads[True][a:b]), name
