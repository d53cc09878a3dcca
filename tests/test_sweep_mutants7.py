"""Tests for the survivors of the seventh round of mutation testing (the Python inference API and
interop: numdp.infer, the dpdata driver; structure and trajectory I/O; the commands convert,
model-devi, compress, eval-desc and their system lists): each fails on one plausible mistake that
the rest of the suite let through (the mutant is named in the test's docstring; 2026-12-07).
Small inputs only: one oracle model (water.dp, 192 atoms) or a random two-type model.
"""
from __future__ import annotations

from argparse import Namespace

import numpy as np
import pytest

from numdp.cli import main
from numdp.commands.systems import system_paths
from numdp.dpdata_driver import NumdpDriver
from numdp.infer import DeepPot
from numdp.io.model_file import read_model
from numdp.io.structure import read_lammps_data
from numdp.model.compress import compress, s_max_from_params, s_max_from_systems
from numdp.model.dp_model import DPModel
from randmodel import random_params
from tests_util import fd_virial, write_system


# --------------------------------------------------------------------------------------------------
# DeepPot.eval_descriptor with mixed_type: each frame's own atom types
# --------------------------------------------------------------------------------------------------


def test_eval_descriptor_takes_each_frames_types(oracle_dir):
    """Mutant `types[0]` for `types[min(f, types.shape[0] - 1)]` in DeepPot.eval_descriptor (every
    frame described with the first frame's types, as `eval` itself is tested not to do).  Two
    frames of water.npz, the second with its first two O atoms made H: each frame's rows must be
    those of that frame evaluated alone (the same code path, so equal bit for bit), and the
    second frame's rows of atom 0 differ from the first's (its type changes its embedding nets)."""
    z = np.load(oracle_dir / "water.npz")
    dp = DeepPot(oracle_dir / "water.dp", threads=1)
    coords, cells = z["coord"][:2], z["box"][:2]
    types = np.tile(z["atype"], (2, 1))
    types[1, np.flatnonzero(types[1] == 0)[:2]] = 1
    rows = dp.eval_descriptor(coords, cells, types, mixed_type=True)
    for f in range(2):
        alone = dp.eval_descriptor(coords[f], cells[f], types[f])
        np.testing.assert_array_equal(rows[f], alone[0])
    assert not np.array_equal(rows[1, 0], dp.eval_descriptor(coords[1], cells[1], types[0])[0, 0])


# --------------------------------------------------------------------------------------------------
# the dpdata driver: fparam given per frame (nframes x numb_fparam) is used frame by frame
# --------------------------------------------------------------------------------------------------


def test_driver_fparam_per_frame_rows():
    """Mutant `[given.reshape(nframes, -1)[0]] * nframes` for `list(given.reshape(nframes, -1))` in
    NumdpDriver._per_frame (the driver's fparam of DeePMD-kit's size nframes x numb_fparam used
    as its first row for every frame).  Two copies of one frame with fparam rows (0.3, -1) and
    (2, 0.5): each frame's energy must be DPModel.evaluate's with its own row (the same sum,
    compared within 1e-12 eV of relative rounding), and the two energies differ (the random
    fitting net's first layer takes the fparam)."""
    params = random_params(ntypes=2, sel=[6, 6], neuron=(4, 8), axis_neuron=2, fitting=(6,),
                           seed=5, numb_fparam=2)
    params.type_map = ["A", "B"]
    model = DPModel(params, nthreads=1)
    pos = np.array([[0.0, 0.0, 0.0], [1.4, 0.2, 0.0], [0.3, 1.5, 0.4], [1.2, 1.1, 1.3]])
    cell = np.eye(3) * 5.0
    data = {"atom_names": ["A", "B"], "atom_types": np.array([0, 1, 1, 0]),
            "coords": np.stack([pos, pos]), "cells": np.stack([cell, cell]), "nopbc": False}
    rows = np.array([[0.3, -1.0], [2.0, 0.5]])
    labeled = NumdpDriver(model, fparam=rows).label(data)
    want = [model.evaluate(pos, data["atom_types"], cell, fparam=r).energy for r in rows]
    np.testing.assert_allclose(labeled["energies"], want, rtol=1e-12, atol=0)
    assert abs(want[0] - want[1]) > 1e-6


# --------------------------------------------------------------------------------------------------
# LAMMPS data files: the atom styles' columns
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("style,line", [("charge", "{id} {t} 0.5 {x} {y} {z}"),
                                        ("full", "{id} 7 {t} -0.5 {x} {y} {z}"),
                                        ("molecular", "{id} 7 {t} {x} {y} {z}")])
def test_lammps_data_atom_style_columns(tmp_path, style, line):
    """Mutant `"charge": (1, 2)` for `(1, 3)` in structure._STYLES (charge's `atom-ID atom-type q
    x y z` read with x at the charge's column).  LAMMPS' read_data documentation gives each
    style's columns: charge `id type q x y z`, full `id mol type q x y z`, molecular `id mol type
    x y z`; the numbers are read as written (no arithmetic: exact)."""
    xyz = [(0.25, 1.5, 2.75), (3.0, 0.5, 1.25)]
    atoms = "\n".join(line.format(id=k + 1, t=k + 1, x=x, y=y, z=z) for k, (x, y, z) in enumerate(xyz))
    path = tmp_path / f"{style}.data"
    path.write_text(f"numdp test\n\n2 atoms\n2 atom types\n0 5 xlo xhi\n0 5 ylo yhi\n0 5 zlo zhi\n\n"
                    f"Atoms # {style}\n\n{atoms}\n")
    s = read_lammps_data(path)
    np.testing.assert_array_equal(s.positions, np.array(xyz))
    assert list(s.type_ids) == [0, 1]


# --------------------------------------------------------------------------------------------------
# numdp compress: --order and --data / -t reach the tabulation
# --------------------------------------------------------------------------------------------------


def test_compress_order_option_reaches_the_tables(tmp_path, oracle_dir, capsys):
    """Mutant `order=3` for `order=args.order` in commands/compress.main (--order 5 accepted and
    printed but the tables built as quintic's default, cubic).  A table of order p holds p + 1
    coefficients per interval (numdp.model.tables), so --order 5 gives coef.shape[1] == 6."""
    out = tmp_path / "c.h5"
    assert main(["compress", str(oracle_dir / "water.dp"), "-s", "0.05", "-e", "2", "--order", "5",
                 "-o", str(out)]) == 0
    tables = read_model(out).descriptor.tables
    assert tables and all(t.coef.shape[1] == 6 for t in tables)


def test_compress_data_sets_the_table_range(tmp_path, oracle_dir, capsys):
    """Mutant `smax = None` for `s_max_from_systems(params, data) if data else None` in
    commands/compress.main (--data / -t ignored: the tables' range from the model's statistics, not
    from the data as dp compress's -t).  One frame of water.npz stretched by 1.3 (every distance
    30 % longer, so its largest s = w(r)/r is well below the model's stored range): the tables'
    bounds must be those of compress(..., s_max=s_max_from_systems) on that system (the same
    arithmetic: exact), and differ from the model-only range's: s_max falls from 1.09 to 0.83 per
    Å, upper by about 2 (x = (s - mu)/sigma), against the 0.1 asked here (two 0.05 steps, more
    than upper's rounding to the grid, under one step, can move it)."""
    z = np.load(oracle_dir / "water.npz")
    write_system(tmp_path / "sys", 1.3 * z["coord"][:1], 1.3 * z["box"][:1], z["atype"], ["O", "H"])
    params = read_model(oracle_dir / "water.dp")
    data_smax = s_max_from_systems(params, [str(tmp_path / "sys")])
    want, _ = compress(params, dx=0.05, order=3, s_max=data_smax, extrapolate=2)
    base, _ = compress(params, dx=0.05, order=3, s_max=s_max_from_params(params), extrapolate=2)
    assert all(w.upper < b.upper - 0.1 for w, b in zip(want.descriptor.tables, base.descriptor.tables))
    out = tmp_path / "c.h5"
    assert main(["compress", str(oracle_dir / "water.dp"), "-s", "0.05", "-e", "2",
                 "--data", str(tmp_path / "sys"), "-o", str(out)]) == 0
    got = read_model(out).descriptor.tables
    assert [(t.lower, t.upper) for t in got] == [(t.lower, t.upper) for t in want.descriptor.tables]


# --------------------------------------------------------------------------------------------------
# the commands' system lists: each system once
# --------------------------------------------------------------------------------------------------


def test_system_paths_names_each_system_once(tmp_path):
    """Mutant `return list(found)` for `list(dict.fromkeys(found))` in commands/systems.system_paths
    (a system named twice, by its folder and by a parent's search or in a -f list, evaluated twice
    by numdp test and counted twice in its weighted averages).  The docstring's contract: each
    system once, in the order first named."""
    coord = np.zeros((1, 1, 3))
    for name in ("a", "b"):
        write_system(tmp_path / "root" / name, coord, None, [0], ["X"])
    root, a, b = tmp_path / "root", tmp_path / "root" / "a", tmp_path / "root" / "b"
    args = Namespace(system=[str(b), str(root), str(b)], datafile=None)
    assert system_paths(args) == [b, a]
    listing = tmp_path / "list.txt"
    listing.write_text(f"{a}\n{a}\n{root}\n")
    assert system_paths(Namespace(system=None, datafile=str(listing))) == [a, b]


# --------------------------------------------------------------------------------------------------
# LMDB datasets: a frame whose cell is all zeros is non-periodic (DeePMD-kit's nopbc frame)
# --------------------------------------------------------------------------------------------------


def test_lmdb_zero_cell_frame_is_grouped_as_nopbc(tmp_path):
    """Mutant `pbc = "box" in frame` in lmdb_system._summary (a frame stored with an all-zero cell,
    as DeePMD-kit's LMDB writes a non-periodic frame, counted periodic): it would share a group
    with the periodic frames of its atom count.  numdp.io.lmdb_system's docstring: such frames get
    their own `:nopbc` group, read without cells."""
    pytest.importorskip("lmdb")
    from lmdb_util import write_lmdb
    from numdp.io.lmdb_system import lmdb_groups
    from numdp.io.npy_system import load_system

    coords = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    frames = [{"atom_types": np.array([0, 1]), "coords": coords, "cells": cell}
              for cell in (np.eye(3) * 6.0, np.zeros((3, 3)))]
    data = write_lmdb(tmp_path / "d.lmdb", frames, {"type_map": ["O", "H"]})
    groups = lmdb_groups(data)
    assert groups == {"nloc=2:unlabelled": [0], "nloc=2:unlabelled:nopbc": [1]}
    assert load_system(f"{data}#nloc=2:unlabelled:nopbc").boxes is None


# --------------------------------------------------------------------------------------------------
# extxyz trajectories: ASE's stress = +dE/dstrain / V = -virial / V
# --------------------------------------------------------------------------------------------------


def test_ase_stress_is_the_strain_derivative_over_volume():
    """Mutant `return w / ...` for `return -w / ...` in trajectory.ase_stress (the extxyz
    trajectory's `stress` with the virial's sign).  ASE's stress is (1/V) dE/dε for the strain
    r -> r (1 + ε); numdp's virial (DeePMD-kit's sign) is -dE/dε.  Central differences of a
    random model's energy (|E| ~ 12 eV) on a 4-atom cell (V ~ 28 Å³), every component
    (tests_util.fd_virial), h = 1e-5: rounding eps |E| / (h V) ~ 1e-11 eV/Å³, truncation ~h²
    smaller still; the bound, 1e-6 of the stress (~1e-3 eV/Å³) or 1e-9 eV/Å³, is 100 times
    that; the mutant is off by twice the value."""
    from numdp.io.trajectory import ase_stress

    params = random_params(ntypes=2, sel=[24, 24], neuron=(4, 8), axis_neuron=2, fitting=(6,), seed=7)
    model = DPModel(params, nthreads=1)
    pos = np.array([[0.0, 0.0, 0.0], [1.4, 0.2, 0.0], [0.3, 1.5, 0.4], [1.2, 1.1, 1.3]])
    types = np.array([0, 1, 1, 0])
    box = np.array([[3.0, 0.0, 0.0], [0.4, 3.2, 0.0], [0.2, 0.3, 2.9]])
    stress = ase_stress(model.evaluate(pos, types, box).virial, box, (True, True, True))
    want = -fd_virial(model, pos, types, box, 1e-5) / abs(np.linalg.det(box))
    assert np.all(np.abs(stress - want) <= 1e-6 * np.maximum(np.abs(want), 1e-3))
