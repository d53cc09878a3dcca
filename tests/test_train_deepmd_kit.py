"""numdp's trainer against DeePMD-kit's own (3.2, PyTorch backend) on the same model and frames.

tests/data/deepmd_kit_training/ was written by tools/deepmd_kit_training_oracle.py with DeePMD-kit
itself: its random initial model after its data statistics (init.dp), the loss and the autograd
gradient of its loss at step 0 on one training frame (grad.dp: the model's arrays replaced by
∂L/∂θ), and the model after 8 updates of its own training loop with the frames it drew (final.dp,
case.json). Four cases: water (two types, one-sided embedding, fitting with timestep residuals,
energy + force loss), copper (one type, two-sided embedding with timestep residuals, energy +
force + virial loss), copper with the absolute-error loss (loss_func "mae") and water with the
model-level exclusions (pair_exclude_types [[0, 0]]: every O-O slot is padding; atom_exclude_types
[1]: the H atoms' energies are zero and, as DeePMD-kit 3.2's loss masks them like absent atoms,
their forces leave the loss and N counts the O atoms only; the nets only H centres use get a zero
gradient).

Tolerances. DeePMD-kit 3.2 forms the 1/N of the energy and virial loss terms in single precision
(its per-atom mask is an int32 tensor; 1/Σmask is float32), so those terms, and their part of the
gradient, carry a relative rounding of up to 2^-24 = 6.0e-8 that numdp (exact 1/N in float64)
does not; float64 summation in a different order adds about n·ε with n ≈ 2.6e4 pair terms
(3e-12). Hence 1e-7 relative for the loss and each parameter array's gradient (norm-wise).
Adam's step m̂/(√v̂+ε) is homogeneous of degree 0 in the gradient, so a relative gradient error δ
changes a step by about δ·lr per component, and 8 steps move each array by at most 8·δ relative to
its total displacement; with δ = 1e-7, 8e-7, rounded up to 1e-6. Seen: 7e-9 (gradients), 1.5e-8
(trajectories).
"""
import io
import json
from pathlib import Path

import numpy as np
import pytest

from numdp.io.model_file import read_model
from numdp.train.config import load_config
from numdp.train.flat import FlatParams
from numdp.train.loop import Trainer
from numdp.train.loss import LossStats

from conftest import DATA

REF = Path(__file__).parent / "data" / "deepmd_kit_training"
CASES = ("water", "cu", "cu_mae", "water_excl")
GRAD_RTOL = 1e-7
STEPS_RTOL = 1e-6


def _trainer(name: str, tmp_path, monkeypatch) -> tuple[Trainer, dict]:
    if not DATA.is_dir():
        pytest.skip("../shared/data not present")
    case = json.loads((REF / name / "case.json").read_text())
    inp = case["input"]
    for key in ("training_data", "validation_data"):
        inp["training"][key]["systems"] = [str(DATA / s) for s in inp["training"][key]["systems"]]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "input.json").write_text(json.dumps(inp))
    trainer = Trainer(load_config(tmp_path / "input.json"), nthreads=1, init_model=REF / name / "init.dp",
                      stream=io.StringIO())
    return trainer, case


def _flat(path: Path) -> np.ndarray:
    return FlatParams.bind(read_model(path)).theta


@pytest.mark.parametrize("name", CASES)
def test_loss_and_gradient_equal_deepmd_kits(name, tmp_path, monkeypatch):
    trainer, case = _trainer(name, tmp_path, monkeypatch)
    try:
        lr, pref = trainer.prefactors(0)
        assert lr == case["start_lr"]
        k, f = case["grad_frame"]
        stats = LossStats(trainer.loss_options)
        trainer.passes.zero_grad()
        trainer._batch_loss(trainer.train_sys, trainer.train_cache, k, np.array([f]), pref, stats, True)
        assert stats.loss() == pytest.approx(case["loss"], rel=GRAD_RTOL)
        g = trainer.passes.total_grad()
        ref = _flat(REF / name / "grad.dp")
        for array, lo, hi in trainer.flat.names:
            if not ref[lo:hi].any():   # a net the loss does not reach (water_excl: the H atoms'): exactly 0
                assert not g[lo:hi].any(), f"{array}: DeePMD-kit's gradient is 0, numdp's is not"
                continue
            err = np.linalg.norm(g[lo:hi] - ref[lo:hi]) / np.linalg.norm(ref[lo:hi])
            assert err <= GRAD_RTOL, f"{array}: gradient differs from DeePMD-kit's by {err:.2e} (relative)"
    finally:
        trainer.close()


@pytest.mark.parametrize("name", CASES)
def test_training_steps_follow_deepmd_kits(name, tmp_path, monkeypatch):
    """DeePMD-kit's frames, fed to numdp's loop: the parameters after 8 updates are DeePMD-kit's."""
    trainer, case = _trainer(name, tmp_path, monkeypatch)
    try:
        frames = iter([(k, np.array([f])) for k, f in case["sequence"]])
        trainer.sampler.next = lambda: next(frames)
        theta0 = trainer.flat.theta.copy()
        for step in range(case["steps"]):
            trainer.train_step(step, False)
        ref = _flat(REF / name / "final.dp")
        for array, lo, hi in trainer.flat.names:
            moved = np.linalg.norm(ref[lo:hi] - theta0[lo:hi])
            if moved == 0.0:   # a net the loss does not reach: it stays as it was, bit for bit
                assert np.array_equal(trainer.flat.theta[lo:hi], theta0[lo:hi]), array
                continue
            err = np.linalg.norm(trainer.flat.theta[lo:hi] - ref[lo:hi]) / moved
            assert err <= STEPS_RTOL, f"{array}: after {case['steps']} steps, {err:.2e} of its displacement off DeePMD-kit's"
    finally:
        trainer.close()
