"""`numdp neighbor-stat`: counts and closest pair against a brute-force search over images; the
sel rule; npy and HDF5 systems alike; errors."""
import itertools
import math

import h5py
import numpy as np
import pytest

from numdp.cli import main
from numdp.commands.neighbor_stat import neighbor_census
from numdp.io.npy_system import load_system
from numdp.train.stats import auto_sel
from test_h5_system import write_h5_system
from tests_util import write_system


def brute_force(coords, box, types, ntypes, rcut):
    """Largest type-t neighbour count within rcut over atoms and frames, and the smallest
    distance, by looping over every atom pair and every image shift that can reach rcut."""
    best = np.zeros(ntypes, dtype=int)
    rmin = math.inf
    for f in range(coords.shape[0]):
        x = coords[f]
        if box is None:
            shifts = [np.zeros(3)]
        else:
            b = box[f]
            # images up to n cells away in each direction: n >= rcut / (perpendicular width)
            vol = abs(np.linalg.det(b))
            widths = [vol / np.linalg.norm(np.cross(b[(k + 1) % 3], b[(k + 2) % 3])) for k in range(3)]
            n = [int(math.ceil(rcut / w)) + 1 for w in widths]
            shifts = [np.array(s, dtype=float) @ b for s in
                      itertools.product(*(range(-m, m + 1) for m in n))]
        for i in range(len(x)):
            counts = np.zeros(ntypes, dtype=int)
            for j in range(len(x)):
                for sh in shifts:
                    if j == i and not sh.any():
                        continue
                    r = np.linalg.norm(x[j] + sh - x[i])
                    if r < rcut:
                        counts[types[j]] += 1
                        rmin = min(rmin, r)
            best = np.maximum(best, counts)
    return best, rmin


@pytest.fixture
def small(tmp_path):
    """Two systems: 3 types in a small triclinic cell (images of an atom itself are neighbours),
    and a non-periodic cluster."""
    rng = np.random.default_rng(7)
    nf, n = 3, 10
    box = np.array([[5.0, 0.0, 0.0], [1.3, 4.6, 0.0], [-0.8, 0.9, 4.8]])
    coords = rng.uniform(0, 5, (nf, n, 3))
    types = np.array([0, 1, 2, 0, 1, 2, 0, 0, 1, 2])
    boxes = np.tile(box, (nf, 1, 1))
    p = write_system(tmp_path / "pbc", coords, boxes, types, ["A", "B", "C"])
    cl = rng.uniform(0, 6, (2, 8, 3))
    q = write_system(tmp_path / "cluster", cl, None, types[:8], ["C", "A", "B"])
    return p, q, (coords, boxes, types), (cl, types[:8])


def test_census_matches_brute_force(small):
    p, q, (coords, boxes, types), (cl, ctypes) = small
    rcut = 4.3
    census = neighbor_census([load_system(p)], ["A", "B", "C"], rcut)
    best, rmin = brute_force(coords, boxes, types, 3, rcut)
    assert census.max_count.tolist() == best.tolist()
    assert census.max_count.max() > 10  # rcut reaches several images: the test can fail
    # same float64 differences and norms, summed in another order: rel 1e-12
    assert census.min_nbor_dist == pytest.approx(rmin, rel=1e-12)
    # the cluster's file names C A B: mapped by name onto A B C
    census = neighbor_census([load_system(q)], ["A", "B", "C"], rcut)
    mapped = np.array([2, 0, 1])[ctypes]
    best, rmin = brute_force(cl, None, mapped, 3, rcut)
    assert census.max_count.tolist() == best.tolist()
    assert census.min_nbor_dist == pytest.approx(rmin, rel=1e-12)


def test_one_type(small, capsys):
    """--one-type (dp's --mixed-type): every neighbour counted together, whatever its element."""
    p, q, (coords, boxes, types), _ = small
    best, rmin = brute_force(coords, boxes, np.zeros_like(types), 1, 4.3)
    per_type, _ = brute_force(coords, boxes, types, 3, 4.3)
    assert best[0] > per_type.max()   # (so the test can tell the totals from one type's count)
    assert main(["neighbor-stat", "-s", str(p), "-r", "4.3", "--mixed-type"]) == 0
    out = capsys.readouterr().out
    assert f"max_nbor_size: {np.array(best)}" in out and f"sel: {auto_sel(best, 1.1)}" in out
    assert f"min_nbor_dist: {rmin:f}" in out


def test_cli_npy_and_h5_agree(small, tmp_path, capsys):
    p, q, (coords, boxes, types), _ = small
    assert main(["neighbor-stat", "-s", str(p), "-r", "4.3"]) == 0
    out = capsys.readouterr().out
    best, rmin = brute_force(coords, boxes, types, 3, 4.3)
    assert f"max_nbor_size: {np.array(best)}" in out
    assert f"sel: {auto_sel(best, 1.1)}" in out
    assert f"min_nbor_dist: {rmin:f}" in out
    with h5py.File(tmp_path / "d.h5", "w") as h5:
        write_h5_system(h5, "x/pbc", p)
    assert main(["neighbor-stat", "-s", str(tmp_path / "d.h5"), "-r", "4.3"]) == 0
    out_h5 = capsys.readouterr().out
    strip = lambda text: [ln.split("#")[0] for ln in text.splitlines()]  # noqa: E731  (paths, time)
    assert strip(out_h5) == strip(out)
    # -t reorders the types: the counts follow
    assert main(["neighbor-stat", "-s", str(p), "-r", "4.3", "-t", "C", "B", "A"]) == 0
    assert f"max_nbor_size: {np.array(best[::-1])}" in capsys.readouterr().out


def test_sel_rule():
    """DeePMD-kit's wrap_up_4(int(count * ratio)): truncated, then up to a multiple of 4."""
    assert auto_sel(np.array([38, 72, 0, 4, 37, 19]), 1.1) == [44, 80, 0, 4, 40, 20]
    assert auto_sel(np.array([40]), 1.0) == [40]


def test_errors(small, tmp_path, capsys):
    p, q, *_ = small
    bare = tmp_path / "bare"
    write_system(bare, np.zeros((1, 2, 3)) + [[0, 0, 0], [1, 0, 0]], None, [0, 0], ["A"])
    (bare / "type_map.raw").unlink()
    cases = [
        (["-s", str(p), "-r", "0"], "-r 0"),
        (["-s", str(p), "-r", "nan"], "-r nan"),
        (["-s", str(tmp_path / "nope"), "-r", "4"], "nope"),
        (["-s", str(p), "-r", "4", "-t", "A", "B"], "'C', an element not in the type map given with -t ['A', 'B']"),
        (["-s", str(p), str(bare), "-r", "4"], "give the type map with -t"),
        (["-s", str(p), "-r", "4", "-t", "A", "A", "C"], "unique"),
    ]
    for argv, fragment in cases:
        assert main(["neighbor-stat", *argv]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and fragment in err[0], (argv, err)
    # without type_map.raw anywhere the indices are the types
    assert main(["neighbor-stat", "-s", str(bare), "-r", "4"]) == 0
    out = capsys.readouterr().out
    assert "max_nbor_size: [1]" in out and "min_nbor_dist: 1.000000" in out


def test_water_matches_deepmd_kit(capsys):
    """DeePMD-kit's measured maximum for its water example data at rcut 6 A is [38, 72]
    (shared/reference/deep-potential.md, §1.3)."""
    import pathlib

    data = pathlib.Path(__file__).resolve().parents[1] / "inputs" / "water" / "data"
    assert main(["neighbor-stat", "-s", str(data), "-r", "6", "-t", "O", "H"]) == 0
    out = capsys.readouterr().out
    assert "max_nbor_size: [38 72]" in out and "sel: [44, 80]" in out


def test_a_cutoff_whose_ghosts_exceed_memory_is_refused(small, monkeypatch, capsys):
    """A cutoff far beyond the cell makes millions of images per atom (a 1000 A cutoff in a 12 A
    water box: ~36 GB): refused in one line before anything is allocated, for any periodicity."""
    import numdp.neighbor.extended as E

    p, *_ = small
    monkeypatch.setattr(E, "available_memory", lambda: 10**6)   # 1 MB left
    # 10 atoms x (1 + 2 x 40 / ~4.6)^3 images ~ 60 000 extended atoms ~ 5.6 MB
    assert main(["neighbor-stat", "-s", str(p), "-r", "40"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "GiB of memory available" in err[0] and "extended atoms" in err[0], err
    # the same with periodicity along two cell vectors only
    box = np.diag([5.0, 5.0, 5.0])
    x = np.random.default_rng(0).uniform(0, 5, (10, 3))
    with pytest.raises(E.InputError, match="GiB of memory available"):
        E.extend(x, np.zeros(10, dtype=int), box, 200.0, pbc=[True, True, False])
    # within the memory, the same calls run
    monkeypatch.setattr(E, "available_memory", lambda: None)
    assert E.extend(x, np.zeros(10, dtype=int), box, 200.0, pbc=[True, True, False]).nall > 10
