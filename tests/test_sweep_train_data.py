"""numdp train's handling of training data against DeePMD-kit 3.2's `dp --pt train` (the data
sweep): sampling weights and other figures dp prints, taken from side-by-side runs on the same
input and data.  No DeePMD-kit at test time; the data are made here, small."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from numdp.train.config import AutoProb, ProbBlock, ProbStyle, epoch_steps
from numdp.train.data import DataSystem, system_probs


def _system(nframes: int, batch_size: int, natoms: int = 3) -> DataSystem:
    z = np.zeros((nframes, natoms, 3))
    return DataSystem(Path(f"s{nframes}"), np.zeros(natoms, dtype=np.int32), z, None, np.zeros(nframes), z, None,
                      min(batch_size, nframes))


def test_prob_sys_size_counts_partial_batches():
    """dp --pt train with systems of 10 (sets of 3 and 7), 1 and 10 frames and batch_size 4
    prints prob 4.286e-01, 1.429e-01, 4.286e-01 in its "Summary of DataSystem" (3/7, 1/7, 3/7):
    its sampler weighs each system by the length of its DataLoader, ⌈nframes / batch_size⌉ =
    3, 1, 3.  numdp weighed ⌊nframes / batch_size⌋ = 2, 1, 2 (0.4, 0.2, 0.4)."""
    systems = [_system(10, 4), _system(1, 4), _system(10, 4)]
    assert [s.nbatches for s in systems] == [3, 1, 3]
    prob = system_probs([s.nbatches for s in systems], AutoProb(ProbStyle.SYS_SIZE, ()), None)
    assert prob.tolist() == pytest.approx([3 / 7, 1 / 7, 3 / 7], abs=1e-15)
    # an epoch as dp --pt counts it (compute_total_numb_batch over its DataLoader lengths):
    # ⌈max_i nbatch_i / p_i⌉ = ⌈3 / (3/7)⌉ = 7 batches
    assert epoch_steps(1.0, [s.nbatches for s in systems], prob)[1] == 7


@pytest.mark.parametrize("batch, auto_prob, sys_probs, expected", [
    # dp --pt train's prob column, systems of 10, 1, 10 and 6 frames (the last of 64 atoms)
    ([4, 1, 3, 4], AutoProb(ProbStyle.SYS_SIZE, (ProbBlock(0, 2, 0.7), ProbBlock(2, 4, 0.3))), None,
     [0.525, 0.175, 0.2, 0.1]),                   # auto_prob "prob_sys_size;0:2:0.7;2:4:0.3"
    ([3, 3, 3, 3], AutoProb(), [0.5, -1, -1, -1], [0.5, 0.07143, 0.2857, 0.1429]),
    ([1, 1, 1, 2], AutoProb(), None, [0.4167, 0.04167, 0.4167, 0.125]),   # batch_size "auto:100"
])
def test_probabilities_as_dp_prints_them(batch, auto_prob, sys_probs, expected):
    """The drawing probabilities of blocks, sys_probs and "auto:N" batches, as dp --pt train
    printed them (4 significant digits) for the same data and input; with ⌊nframes /
    batch_size⌋ the first two came out 0.467, 0.233, 0.225, 0.075 and 0.5, 0.0833, 0.25, 0.167."""
    systems = [_system(n, b) for n, b in zip([10, 1, 10, 6], batch)]
    prob = system_probs([s.nbatches for s in systems], auto_prob, sys_probs)
    assert prob.tolist() == pytest.approx(expected, rel=5e-4)


def _one_frame_system(root: Path, flat: bool, mixed: bool = False) -> Path:
    """A 3-atom system of one frame; `flat`: every array saved without its frame axis
    (coord (9,), box (9,), energy a 0-d scalar, force (9,), fparam (2,), real_atom_types (3,))."""
    rng = np.random.default_rng(7)
    arrays = {"coord": rng.uniform(0, 4, 9), "box": 5.0 * np.eye(3).ravel(), "energy": np.float64(-3.25),
              "force": rng.normal(size=9), "virial": rng.normal(size=9), "fparam": np.array([0.5, 2.0]),
              "atom_ener": np.array([-1.0, -1.0, -1.25])}
    if mixed:
        arrays["real_atom_types"] = np.array([1, 0, 1])
    root.mkdir(parents=True)
    (root / "type.raw").write_text("0 1 1\n")
    (root / "type_map.raw").write_text("O H\n")
    (root / "set.000").mkdir()
    for name, a in arrays.items():
        np.save(root / "set.000" / f"{name}.npy", np.asarray(a) if flat else np.asarray(a).reshape(1, -1))
    return root


@pytest.mark.parametrize("mixed", [False, True])
def test_one_frame_without_frame_axis(tmp_path, mixed):
    """dp --pt train 3.2 trains a one-frame system whose .npy files lack the frame axis
    (coord.npy (576,) for 192 atoms, energy.npy a scalar: it reads a 1-D coord.npy as one frame
    and reshapes every array to (1, -1)), with the statistics of the same frame stored (1, ...):
    out_bias -93.57352295 / -187.1470459 and davg/dstd equal to 2e-15 in numdp's and dp's runs.
    numdp stopped: 'coord.npy: shape (576,) is not (nframes, 576) for 192 atoms'."""
    from numdp.io.npy_system import load_system

    flat = load_system(_one_frame_system(tmp_path / "flat", True, mixed))
    ref = load_system(_one_frame_system(tmp_path / "ref", False, mixed))
    assert flat.coords.shape == (1, 3, 3) and flat.energy.shape == (1,)
    for name in ("coords", "boxes", "energy", "forces", "virial", "fparam", "atom_ener", "frame_types"):
        a, b = getattr(flat, name), getattr(ref, name)
        assert (a is None) == (b is None) and (a is None or np.array_equal(a, b)), name
    assert flat.frame_types is None or flat.frame_types.tolist() == [[1, 0, 1]]


def test_flat_coord_of_two_frames_still_refused(tmp_path):
    """A 1-D coord.npy is one frame only when it holds natoms·3 numbers (DeePMD-kit stops too)."""
    from numdp.errors import InputError
    from numdp.io.npy_system import load_system

    root = _one_frame_system(tmp_path / "s", True)
    np.save(root / "set.000" / "coord.npy", np.zeros(18))
    with pytest.raises(InputError, match=r"coord.npy: shape \(18,\) is not \(nframes, 9\) for 3 atoms"):
        load_system(root)


def test_a_pass_ends_with_a_short_batch():
    """dp --pt train draws a system's batches from a DataLoader over a shuffled pass, its last
    batch short (drop_last false): 5 frames in batches of 2 give 2, 2, 1 and every frame once
    per pass; that is why a system is weighted by ⌈5 / 2⌉ = 3 batches.  numdp reshuffled when
    fewer than 2 frames were left, so one frame of each pass went unseen (sizes 2, 2, 2, 2, ...)."""
    from numdp.train.data import BatchSampler

    sampler = BatchSampler([_system(5, 2)], 3, np.ones(1))
    batches = [sampler.next()[1] for _ in range(6)]
    assert [len(b) for b in batches] == [2, 2, 1, 2, 2, 1]
    for p in (batches[:3], batches[3:]):
        assert sorted(np.concatenate(p).tolist()) == [0, 1, 2, 3, 4]
    # a batch size that divides the frames draws as before: full batches, one pass each
    sampler = BatchSampler([_system(6, 2)], 3, np.ones(1))
    sizes = [len(sampler.next()[1]) for _ in range(6)]
    assert sizes == [2] * 6


def test_all_zero_cells_name_nopbc(tmp_path):
    """A molecule written with box.npy all zeros and no nopbc file: dp --pt train stops with an
    AssertionError deep in its neighbour list; numdp stopped with 'degenerate cell (zero
    volume)' and now also says what such a system lacks."""
    from numdp.errors import InputError
    from numdp.io.npy_system import load_system

    root = _one_frame_system(tmp_path / "s", False)
    np.save(root / "set.000" / "box.npy", np.zeros((1, 9)))
    with pytest.raises(InputError, match=r"box.npy: frame 0 has a degenerate cell \(zero volume\): all zero; "
                                         r"a system without periodic boundaries has an empty file nopbc"):
        load_system(root)
    (root / "nopbc").write_text("")
    assert load_system(root).boxes is None


def test_one_frame_wrong_size_names_its_shape(tmp_path):
    """A one-frame set's label of the wrong size is refused with the shape it has on disk."""
    from numdp.errors import InputError
    from numdp.io.npy_system import load_system

    root = _one_frame_system(tmp_path / "s", True)
    np.save(root / "set.000" / "force.npy", np.zeros((4, 3)))
    with pytest.raises(InputError, match=r"force.npy: shape \(4, 3\) does not match 1 frames of 3 atoms"):
        load_system(root)
