"""DeePMD-kit 3.2's training_data min_pair_dist ([training] min_pair_dist): the training frames
with a pair of atoms closer than the threshold are left out (validation frames are not).

- the closest pair of a frame (numdp.train.data.closest_pairs) equals a search over every pair
  and every periodic image, across cell faces and for an atom and its own image in a box
  narrower than the threshold;
- a run keeps exactly the frames at or above the threshold (its statistics and batches see no
  other), says how many it left out, and stops with one line when no frame is left or when a
  system loses every frame while weights per system name the systems by position.
"""
import io
import itertools
import json

import numpy as np
import pytest

from numdp.errors import InputError
from numdp.io.npy_system import load_system
from numdp.train.config import load_config
from numdp.train.data import DataSystem, closest_pairs
from numdp.train.loop import Trainer
from test_train_run import data_dir, make_input  # noqa: F401  (fixture)
from tests_util import U64, order_bound

# a distance from differences of coordinates of size ≤ ~20 Å: a few roundings of the coordinates
# and of the sum of three squares, relative to the distance
DIST_RTOL = order_bound(U64, 16)


def brute_closest(pos: np.ndarray, box) -> float:
    """Smallest distance between two atoms of a frame, periodic images (-2..2 cells) included."""
    images = [np.zeros(3)] if box is None else [np.array(n) @ box for n in itertools.product(range(-2, 3), repeat=3)]
    best = np.inf
    for i in range(len(pos)):
        for j in range(len(pos)):
            for shift in images:
                if i == j and not shift.any():
                    continue
                best = min(best, float(np.linalg.norm(pos[j] + shift - pos[i])))
    return best


def _system(coords, boxes, types=(0, 1)) -> DataSystem:
    coords = np.asarray(coords, dtype=float)
    return DataSystem(None, np.asarray(types, dtype=np.int32), coords, boxes, None, None, None, 1)


def test_closest_pairs_equal_a_search_over_images(data_dir):
    for name in ("pbc", "cluster"):
        s = load_system(data_dir / "train" / name)
        ds = _system(s.coords, s.boxes, s.model_types(["A", "B"], "test").astype(np.int32))
        got = closest_pairs(ds, 10.0, 2)
        want = [brute_closest(s.coords[f], None if s.boxes is None else s.boxes[f]) for f in range(s.nframes)]
        np.testing.assert_allclose(got, want, rtol=DIST_RTOL, atol=0)
        # below the threshold only: a frame whose closest pair is farther reads inf
        cut = float(np.median(want))
        below = closest_pairs(ds, cut, 2)
        assert np.all(np.isinf(below[np.array(want) >= cut]))
        np.testing.assert_allclose(below[np.array(want) < cut], np.array(want)[np.array(want) < cut], rtol=DIST_RTOL)


def test_closest_pairs_across_faces_and_own_images():
    box = np.array([[5.0, 0.0, 0.0], [1.5, 5.0, 0.0], [-1.0, 2.0, 5.0]])
    # across the a face: 0.1 from the origin and 0.2 short of a
    pair = np.array([[0.1, 0.0, 0.0], [4.8, 0.0, 0.0]])
    got = closest_pairs(_system(pair[None], box[None]), 1.0, 2)
    assert got[0] == pytest.approx(0.3, rel=DIST_RTOL)
    assert closest_pairs(_system(pair[None], None), 5.0, 2)[0] == pytest.approx(4.7, rel=DIST_RTOL)
    # one atom in a cell narrower than the threshold: it and its own image are a pair
    small = np.array([[1.2, 0.0, 0.0], [0.3, 1.5, 0.0], [0.0, 0.2, 1.8]])
    one = _system(np.array([[[0.4, 0.5, 0.6]]]), small[None], types=(0,))
    assert closest_pairs(one, 2.0, 1)[0] == pytest.approx(brute_closest(one.coords[0], small), rel=DIST_RTOL)


def _input(tmp_path, data_dir, extra: str):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = make_input(tmp_path, data_dir, steps=2)
    path.write_text(path.read_text().replace("seed = 11\n", f"seed = 11\n{extra}"))
    return path


def _closest(data_dir, name):
    s = load_system(data_dir / "train" / name)
    return s, np.array([brute_closest(s.coords[f], None if s.boxes is None else s.boxes[f])
                        for f in range(s.nframes)])


def test_a_run_trains_on_the_frames_at_or_above_the_threshold(tmp_path, data_dir):
    systems = {name: _closest(data_dir, name) for name in ("pbc", "cluster")}
    every = np.concatenate([d for _, d in systems.values()])
    srt = np.sort(every)
    k = len(every) // 2   # halfway between two frames' distances: no frame within rounding of it
    cut = float(0.5 * (srt[k - 1] + srt[k]))
    assert srt[k] - srt[k - 1] > 1e-6
    left = int((every < cut).sum())
    assert 0 < left < len(every)
    out = io.StringIO()
    trainer = Trainer(load_config(_input(tmp_path, data_dir, f"min_pair_dist = {cut!r}\n")), nthreads=2, stream=out)
    try:
        kept = {s.path.name: s for s in trainer.train_sys}
        for name, (s, d) in systems.items():
            keep = d >= cut
            if not keep.any():
                assert name not in kept
                continue
            np.testing.assert_array_equal(kept[name].coords, s.coords[keep])
            np.testing.assert_array_equal(kept[name].energy, s.energy[keep])
            np.testing.assert_array_equal(kept[name].forces, s.forces[keep])
            assert kept[name].batch_size <= int(keep.sum())
        assert f"min_pair_dist {cut:g} A left out {left} of {len(every)} frames" in out.getvalue()
        # the validation frames are all there
        assert sum(s.nframes for s in trainer.valid_sys) == load_system(data_dir / "valid" / "pbc").nframes
        history = trainer.run()
        assert np.isfinite(history.rows[max(history.rows)]).all()
    finally:
        trainer.close()


def test_nothing_left_or_a_weighted_system_emptied_stop_with_one_line(tmp_path, data_dir):
    (_, pbc), (_, cluster) = _closest(data_dir, "pbc"), _closest(data_dir, "cluster")
    above_all = float(max(pbc.max(), cluster.max())) + 0.01
    with pytest.raises(InputError, match=r"^input.toml: \[training\] min_pair_dist: every training frame has a "
                                         r"pair of atoms closer than .* none is left to train on$"):
        Trainer(load_config(_input(tmp_path / "a", data_dir, f"min_pair_dist = {above_all}\n")), nthreads=1,
                stream=io.StringIO())
    # a threshold that empties one system (all its frames closer) but not the other
    (lo, lo_name), (hi, _) = sorted([(float(pbc.max()), "pbc"), (float(cluster.max()), "cluster")])
    assert hi - lo > 1e-6, "the fixture's systems need different largest closest-pair distances"
    cut = 0.5 * (lo + hi)
    out = io.StringIO()
    trainer = Trainer(load_config(_input(tmp_path / "c", data_dir, f"min_pair_dist = {cut!r}\n")), nthreads=1,
                      stream=out)   # without weights the emptied system is left out, and the log says so
    try:
        assert [s.path.name for s in trainer.train_sys] == [{"pbc": "cluster", "cluster": "pbc"}[lo_name]]
        line = out.getvalue().splitlines()[0]
        assert line.startswith("training data: 1 systems,") and ", and with them 1 system(s))" in line
        assert "filter" not in line
    finally:
        trainer.close()
    path = _input(tmp_path / "b", data_dir, f"min_pair_dist = {cut!r}\nsys_probs = [0.5, 0.5]\n")
    with pytest.raises(InputError, match=rf"^input.toml: \[training\] min_pair_dist: every frame of .*{lo_name} has "
                                         r"a pair of atoms closer than .*sys_probs.* by position"):
        Trainer(load_config(path), nthreads=1, stream=io.StringIO())


def test_input_json_key(tmp_path):
    """DeePMD-kit's training.training_data.min_pair_dist reads as [training] min_pair_dist."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "type.raw").write_text("0\n")
    tree = {"model": {"type_map": ["A"], "descriptor": {"type": "se_e2_a", "sel": [4]}},
            "training": {"training_data": {"systems": [str(tmp_path / "data")], "min_pair_dist": 0.7},
                         "numb_steps": 1}}
    (tmp_path / "input.json").write_text(json.dumps(tree))
    assert load_config(tmp_path / "input.json").training.min_pair_dist == 0.7
