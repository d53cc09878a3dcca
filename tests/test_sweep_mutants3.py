"""Tests for the survivors of the third round of mutation testing (model files, data, model
deviation, compression, training, H5MD, MPI): each fails on one plausible mistake that the rest of
the suite let through (the mutant is named in the test's docstring; 2026-12-07).
"""
from __future__ import annotations

import numpy as np
import pytest

from numdp.io.model_file import read_model, write_model
from randmodel import random_params


@pytest.mark.parametrize("suffix", [".dp", ".h5"])
def test_out_std_survives_a_write_and_read(tmp_path, suffix):
    """The model's out_std (DeePMD-kit's per-type output standard deviation, which its energy
    model does not apply but change-bias and fine-tuning read) is kept by a write and a read.
    random_params sets it to 1, the value a reader that ignores it gives back.  Mutant killed:
    the `.dp` reader taking out_std from its default (1) instead of the file.  Exact: the
    arrays are stored as float64."""
    params = random_params(ntypes=2, seed=4)
    params.out_std = np.array([0.625, 2.5])
    path = tmp_path / f"m{suffix}"
    write_model(params, path)
    back = read_model(path)
    assert back.out_std.tolist() == [0.625, 2.5]
    assert back.out_bias.tolist() == params.out_bias.tolist()


def test_a_net_fed_only_through_an_excluded_pair_is_tabulated_on_its_padding_value_only():
    """numdp.model.compress: a centre type whose pair with the net's neighbour type is excluded
    feeds the net only its padding value, so it sets the table's lower end, not its upper end;
    a two-sided net (one centre type each) of an excluded pair then spans [lower, 0] plus at
    most one step (the fine grid's whole steps, `dp_upper`'s few ulps).  The other nets reach
    upper = (s_max - mu) / sd of their block.  Mutant killed: `upper` taken over every centre
    type, excluded ones too (tables ten times as long as they need, against the documented
    range); also the neighbour type of net k taken as k % nt (the centre type's own block)."""
    from numdp.model.compress import compress

    params = random_params(ntypes=2, seed=6, exclude_types=[(0, 1)])
    dx = 0.01
    out, report = compress(params, dx=dx, order=3, s_max=np.array([1.5, 1.5]))
    mu, sd = params.descriptor.block_stats()
    for k, rep in enumerate(report):
        ct, nbr = k % 2, k // 2   # net k: centre type k % nt, neighbour type k // nt
        lower = min(0.0, -mu[ct, nbr, 0] / sd[ct, nbr, 0])
        assert rep["lower"] == lower
        if params.descriptor.excluded[ct, nbr]:
            assert -1e-9 * dx <= rep["upper"] <= dx * (1 + 1e-9)   # build_table's 1e-9 step slack
        else:
            want = (1.5 - mu[ct, nbr, 0]) / sd[ct, nbr, 0]
            assert want - 1e-9 * dx <= rep["upper"] <= want + dx * (1 + 1e-9)


def _frames(writer, steps, natoms=2):
    """Append frames at `steps` (positions, velocities, forces and cell of exact binary numbers)."""
    box = np.eye(3) * 8.0
    for s in steps:
        x = np.full((natoms, 3), 0.5) + np.arange(natoms)[:, None] + s / 16.0
        writer.append(s, s * 0.5, x, x * 0.25, x * 0.125, box, {})


def test_an_h5md_resume_without_a_new_frame_leaves_step_and_time_of_equal_length(tmp_path):
    """Resuming after step k keeps the frames with step <= k in every element and in the shared
    step and time datasets, also when the run then stops before its next frame (a restart that
    fails at once).  Mutant killed: the resume truncating `step` but not `time` (the next
    append resizes both, hiding it)."""
    import h5py
    from numdp.io.h5md import H5MDWriter

    path = tmp_path / "t.h5md"
    w = H5MDWriter(path, [0, 0], [1.0, 1.0], ["Ar"])
    _frames(w, [0, 10, 20, 30])
    w.close()
    H5MDWriter(path, [0, 0], [1.0, 1.0], ["Ar"], resume_after=10).close()
    with h5py.File(path, "r") as h5:
        pos = h5["particles/trajectory/position"]
        assert pos["step"][()].tolist() == [0, 10]
        assert pos["time"][()].tolist() == [0.0, 5.0]
        assert pos["value"].shape[0] == 2


@pytest.mark.parametrize("fmt", ["extxyz", "lammps-dump"])
def test_a_text_trajectory_resumed_after_step_k_drops_step_k_plus_1(tmp_path, fmt):
    """A trajectory written every step, resumed after step 1: frames 0 and 1 stay, 2 and 3 go,
    and the frames appended next follow them.  Mutant killed: the truncation keeping frames with
    step <= k + 1 (invisible when frames are written every 2 steps or more, as the other resume
    tests do)."""
    from numdp.io.trajectory import open_trajectory

    path = tmp_path / ("t.xyz" if fmt == "extxyz" else "t.lammpstrj")

    def writer(resume):
        return open_trajectory(fmt, path, [0, 0], [39.948, 39.948], ["Ar"], ("velocity",), True,
                               "eV Angstrom-1", resume_after=resume)

    w = writer(None)
    _frames(w, [0, 1, 2, 3])
    w.close()
    w = writer(1)
    assert w.last_step() == 1
    _frames(w, [2])
    w.close()
    whole = tmp_path / ("whole" + path.suffix)
    w = open_trajectory(fmt, whole, [0, 0], [39.948, 39.948], ["Ar"], ("velocity",), True, "eV Angstrom-1")
    _frames(w, [0, 1, 2])
    w.close()
    assert path.read_text() == whole.read_text()


def test_h5md_velocities_in_nm_per_ps_are_read_in_angstrom_per_ps(tmp_path):
    """An H5MD file of another program (GROMACS writes nm and nm ps-1): positions, cell and
    velocities are converted to Å and Å/ps (x 10, exact for these binary fractions).  Mutant
    killed: the velocity's "nm ps-1" read with factor 1."""
    import h5py
    from numdp.io.h5md import read_frame

    path = tmp_path / "g.h5"
    x = np.array([[0.125, 0.25, 0.5], [1.0, 1.5, 0.75]])
    v = np.array([[0.5, -0.25, 0.125], [-1.0, 0.0, 2.0]])
    with h5py.File(path, "w") as h5:
        part = h5.create_group("particles/all")
        for name, value, unit in (("position", x, "nm"), ("velocity", v, "nm ps-1"),
                                  ("box/edges", np.eye(3) * 2.0, "nm")):
            g = part.create_group(name)
            g["step"] = np.array([7])
            g["time"] = np.array([0.014])
            g.create_dataset("value", data=value[None]).attrs["unit"] = unit
    f = read_frame(path)
    assert f["positions"].tolist() == (x * 10).tolist()
    assert f["velocities"].tolist() == (v * 10).tolist()
    assert f["box"].tolist() == (np.eye(3) * 20.0).tolist()
    assert f["step"] == 7


def test_env_stats_protect_the_angular_std_of_atoms_without_neighbours():
    """Two atoms of one type 10 Å apart, rcut 4 Å, no cell: every environment row is padding
    (zero), so both standard deviations are 0 and DeePMD-kit's protection sets them to 1e-2
    (a zero dstd would divide the environment matrix by zero).  Mutant killed: the protection
    applied to the radial column only.  Exact: sums of zeros."""
    import pathlib
    from numdp.train.data import DataSystem, FrameCache
    from numdp.train.stats import PROTECTION, env_stats

    coords = np.array([[[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]]])
    system = DataSystem(pathlib.Path("pair"), np.zeros(2, dtype=np.int32), coords, None,
                        np.array([-1.0]), None, None, 1)
    cache = FrameCache([system], 4.0, [4], 1)
    davg, dstd = env_stats(cache, [np.arange(1)], 1, [4], 4.0, 1.0)
    assert np.all(davg == 0.0)
    assert np.all(dstd == PROTECTION)


def test_an_atom_a_rounding_below_the_lower_face_belongs_to_the_last_subdomain():
    """x = -1e-20 Å wraps to the fractional coordinate -1e-21 + 1, which rounds to exactly 1.0
    (the wrapped coordinate is in [0, 1) only up to round-off, numdp.parallel.domain.wrap_images);
    its owner must still be a rank of the grid: the last subdomain along that vector (the
    periodic image it sits at).  Mutant killed: `cells_of` without its clamp, which hands the
    atom to cell index grid[k] (rank 2 of 2 here: no such rank; the migration sends it the
    wrong way round).  No MPI needed: the ownership arithmetic alone."""
    from numdp.parallel.domain import Domain, wrap_images

    frac, image = wrap_images(np.array([[-1e-20, 5.0, 5.0], [5.0, 5.0, 5.0]]), np.eye(3) * 10.0)
    assert frac[0, 0] == 1.0 and image[0, 0] == -1.0   # the round-off the clamp exists for
    domain = Domain((2, 1, 1), 0)
    assert domain.cells_of(frac).tolist() == [[1, 0, 0], [1, 0, 0]]
    assert domain.owners(frac).tolist() == [1, 1]
