"""DeePMD-kit's [model] preset_out_bias: the preset types' energy bias fixed, the others fitted to
what their atoms leave of the energies (DeePMD-kit's compute_stats_from_redu with an assigned
bias); TOML and input.json forms; the combinations refused."""
import io
import json
import re

import numpy as np
import pytest

from numdp.errors import InputError
from numdp.io.model_file import read_model
from numdp.train.config import load_config
from numdp.train.loop import Trainer
from numdp.train.stats import energy_bias
from test_train_run import data_dir, make_input  # noqa: F401  (fixture)


class Frames:
    """A DataSystem stand-in: types and energies of frames."""

    def __init__(self, types, energy):
        self.types, self.energy = types, energy

    def types_of(self, f):
        return self.types[f]


def test_energy_bias_with_a_preset_type():
    """Energies of 6 frames of several compositions (3 types): the free fit's residual is
    orthogonal to every count column (least squares); with type 0 preset to the free fit's own
    b_0 the others are the free fit's; preset to another value w, type 0 takes w and types 1, 2
    are the least squares of E − n_0 w, which the residual's orthogonality to their count columns
    proves; a preset type without atoms keeps its value.  Bounds: a least-squares solve in double
    moves a solution by ~ cond(A) ε relative, a residual's projection by ~ ε |A|·|E| (64 for the
    sums' lengths and the solver's steps)."""
    eps = np.finfo(float).eps
    rng = np.random.default_rng(3)
    types = [rng.integers(0, 3, size=n) for n in (5, 7, 6, 9, 4, 8)]
    b = np.array([-3.5, -1.25, -7.0])
    counts = np.array([np.bincount(t, minlength=3) for t in types], dtype=float)
    energy = counts @ b + rng.normal(0, 1e-3, len(types))
    systems = [Frames(types, energy)]
    frames = [np.arange(len(types))]

    def orthogonal(bias, cols):
        residual = energy - counts @ bias
        proj = np.abs(counts[:, cols].T @ residual)
        return (proj <= 64 * eps * (np.abs(counts[:, cols]).T @ np.abs(energy))).all()

    free = energy_bias(systems, frames, 3)
    assert orthogonal(free, [0, 1, 2])
    same = energy_bias(systems, frames, 3, preset=[float(free[0]), None, None])
    assert np.abs(same - free).max() <= 64 * eps * np.linalg.cond(counts) * np.abs(free).max()
    w = -2.0
    got = energy_bias(systems, frames, 3, preset=[w, None, None])
    assert got[0] == w and not np.allclose(got[1:], free[1:], atol=1e-3)
    assert orthogonal(got, [1, 2]) and not orthogonal(got, [0])
    none = energy_bias([Frames([t[t > 0] for t in types], energy)], frames, 3, preset=[w, None, None])
    assert none[0] == w


def test_training_starts_from_the_preset_bias(tmp_path, data_dir):
    """[model] preset_out_bias = { A = -1.5 }: the run's statistics give A -1.5 eV (said in the
    log) and B the fit of the rest; the model keeps them (the bias is not trained)."""
    path = make_input(tmp_path, data_dir, steps=2)
    path.write_text(path.read_text().replace('type_map = ["A", "B"]\n', 'type_map = ["A", "B"]\npreset_out_bias = { A = -1.5 }\n'))
    out = io.StringIO()
    trainer = Trainer(load_config(path), nthreads=2, stream=out)
    try:
        trainer.run()
    finally:
        trainer.close()
    bias = read_model(path.parent / "model.h5").out_bias
    assert bias[0] == -1.5
    assert "A: " in out.getvalue() and "bias -1.5 eV (preset_out_bias)" in out.getvalue()
    (tmp_path / "free").mkdir()
    free = make_input(tmp_path / "free", data_dir, steps=2)
    t2 = Trainer(load_config(free), nthreads=2, stream=io.StringIO())
    try:
        assert t2.params.out_bias[0] != -1.5 and t2.params.out_bias[1] != bias[1]
    finally:
        t2.close()
    with pytest.raises(InputError, match=r"preset_out_bias with --finetune"):
        Trainer(load_config(path), nthreads=2, stream=io.StringIO(), init_model=path.parent / "model.h5",
                finetune=True)


def test_preset_out_bias_keys(tmp_path, data_dir, monkeypatch):
    path = make_input(tmp_path, data_dir)
    text = path.read_text()
    for value, fragment in (('{ C = 1.0 }', "[model] preset_out_bias: 'C' is not an element of type_map"),
                            ('{ A = "x" }', "[model] preset_out_bias: A: expected an energy in eV"),
                            ('[1.0, 2.0]', "[model] preset_out_bias: expected a table of element = energy bias")):
        path.write_text(text.replace('type_map = ["A", "B"]\n', f'type_map = ["A", "B"]\npreset_out_bias = {value}\n'))
        with pytest.raises(InputError, match=re.escape(fragment)):
            load_config(path)
    path.write_text(text.replace('type_map = ["A", "B"]\n', 'type_map = ["A", "B"]\npreset_out_bias = { B = 2 }\n')
                    .replace("seed = 11\n", "seed = 11\nchange_bias_after_training = true\n"))
    with pytest.raises(InputError, match=r"\[training\] change_bias_after_training: not with \[model\] preset_out_bias"):
        load_config(path)
    monkeypatch.chdir(tmp_path / "run")

    def json_input(preset):
        (tmp_path / "run" / "input.json").write_text(json.dumps({
            "model": {"type_map": ["A", "B"], "descriptor": {"type": "se_e2_a"}, "fitting_net": {},
                      "preset_out_bias": preset},
            "training": {"training_data": {"systems": ["data/train"]}, "numb_steps": 1}}))
        return load_config("input.json")

    assert json_input({"energy": [None, 0.5]}).preset_out_bias == [None, 0.5]
    assert json_input({"energy": [[-1.0], None]}).preset_out_bias == [-1.0, None]
    assert json_input({"energy": [None, None]}).preset_out_bias is None
    for preset, fragment in (({"energy": [1.0]}, "energy needs one entry per type of type_map ['A', 'B']"),
                             ({"dipole": [None, None]}, 'expected {"energy": [one bias or null per type]}'),
                             ({"energy": [None, "x"]}, "energy: B: expected a number or null")):
        with pytest.raises(InputError, match=re.escape(fragment)):
            json_input(preset)
