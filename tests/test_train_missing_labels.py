"""A training system without a label file whose loss term is weighed trains no such term (as in
DeePMD-kit): the run says so in one warning line per label, naming the systems."""
import io

from numdp.train.config import load_config
from numdp.train.loop import Trainer
from randmodel import random_params
from test_train_run import make_input, write_system


def _warnings(path):
    out = io.StringIO()
    trainer = Trainer(load_config(path), nthreads=1, stream=out)
    trainer.close()
    return [line for line in out.getvalue().splitlines() if line.startswith("warning:")]


def test_a_missing_energy_file_is_reported(tmp_path):
    teacher = random_params(ntypes=2, sel=[30, 30], neuron=(4, 8), axis_neuron=2, fitting=(8, 8),
                            rcut=4.0, rcut_smth=1.0, seed=42)
    root = tmp_path / "data"
    for name, seed in (("a", 100), ("b", 200)):
        write_system(root / "train" / name, teacher, 12, 3, True, seed)
    write_system(root / "valid" / "pbc", teacher, 12, 2, True, 300)
    path = make_input(tmp_path, root, steps=2)
    assert _warnings(path) == []
    (root / "train" / "b" / "set.000" / "energy.npy").unlink()
    (root / "train" / "b" / "set.000" / "force.npy").unlink()
    lines = _warnings(path)
    assert len(lines) == 2, lines
    assert "1 of 2 training systems have no energy.npy" in lines[0] and "train/b" in lines[0]
    assert "no force.npy" in lines[1] and "train/a" not in lines[1]
