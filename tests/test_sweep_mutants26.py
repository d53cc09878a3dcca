"""Tests for the survivors of the 26th round of mutation testing (structure and trajectory I/O,
second round: numdp.io.structure's extxyz and LAMMPS data readers and writers and lammps_box,
numdp.io.trajectory's LAMMPS dump and extxyz writers, numdp.io.h5md's layout and read_frame):
each fails on one plausible mistake that tests/test_structure.py, test_trajectory_formats.py,
test_h5md.py, test_sweep_h5md.py, test_sweep_structure.py and the earlier mutation rounds (7, 8,
11) let through; the mutant is named in the test's docstring (2026-12-08).  ASE, LAMMPS' tools,
dpdata and MDAnalysis read these files, so each test checks the meaning the reader gives them
(ASE itself where it is the reader); small hand-made frames, no model: the file runs in about a
second.
"""
from __future__ import annotations

import numpy as np

from numdp.io.structure import (read_extxyz, read_lammps_data, write_extxyz, write_frame_lammps_data,
                                 write_lammps_data)


def test_write_extxyz_pbc_flags_are_in_cell_vector_order(tmp_path):
    """numdp.io.structure.write_extxyz: pbc="T F F" names the periodicity of a, b, c in that order
    (ASE's Atoms.pbc).  A slab periodic along a only, read back by ASE and by numdp's reader.
    Mutant killed: the flags written reversed ("F F T")."""
    import ase.io

    box = np.array([[5.0, 0.0, 0.0], [0.0, 6.0, 0.0], [0.0, 0.0, 7.0]])
    write_extxyz(tmp_path / "s.xyz", ["O", "H"], [[0.5, 0.5, 0.5], [1.0, 2.0, 3.0]], box, pbc=(True, False, False))
    assert ase.io.read(tmp_path / "s.xyz").pbc.tolist() == [True, False, False]
    assert read_extxyz(tmp_path / "s.xyz").pbc == (True, False, False)


def test_write_data_names_each_lammps_type_through_the_permutation(tmp_path):
    """numdp.io.structure.write_frame_lammps_data with lammps_types (numdp lmp write_data after a
    pair_coeff that orders the elements otherwise): LAMMPS type lammps_types[k] + 1 is model type
    k, type_map[k]; a type without atoms gets its element's standard mass.  type_map [O, H, C]
    to LAMMPS types [2, 3, 1] (a 3-cycle: a swap of two is its own inverse and would not tell the
    map from its inverse); only O atoms, so the masses of LAMMPS types 1 (C, 12.011) and 3 (H,
    1.008) come from their names.  Mutant killed: names[k] = type_map[t] (the inverse map)."""
    from numdp.units import standard_mass

    frame = {"species": np.array([0, 0]), "type_map": ["O", "H", "C"], "box": np.eye(3) * 8.0, "pbc": None,
             "positions": np.array([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]), "velocities": None,
             "masses": np.array([15.999, 15.999]), "step": 0}
    write_frame_lammps_data(tmp_path / "w.data", frame, lammps_types=[1, 2, 0])
    text = (tmp_path / "w.data").read_text().split("Masses")[1].split("Atoms")[0].split()
    masses = dict(zip(map(int, text[0::2]), map(float, text[1::2])))
    assert masses == {1: standard_mass("C", "t"), 2: 15.999, 3: standard_mass("H", "t")}
    assert read_lammps_data(tmp_path / "w.data").type_ids.tolist() == [1, 1]


def test_write_data_of_a_grown_slab_takes_the_corner_of_the_cell_not_of_the_grown_box(tmp_path):
    """numdp.io.structure.write_lammps_data with an origin whose fixed point is the box's centre
    (BoxOrigin fraction 1/2: LAMMPS' corner = fixed - L/2) for a slab (pbc T T F) with an atom at
    z = 12 above its 10 Å cell: the box is grown along c to hold it (frame_cell: [0, 1.2 (1 +
    1e-4)] of c), but LAMMPS' corner is that of the cell, (6, 7, 8) - 5 = (1, 2, 3), so every
    coordinate is numdp's + (1, 2, 3) exactly (sums of small integers: exact in float64).
    Mutant killed: the corner from the grown cell (origin.corner(h): z shifted by -1.0006)."""
    from numdp.io.trajectory import BoxOrigin

    pos = np.array([[1.0, 1.0, 1.0], [2.0, 3.0, 12.0]])
    write_lammps_data(tmp_path / "s.data", [0, 0], pos, np.eye(3) * 10.0, [1.0], pbc=(True, True, False),
                      origin=BoxOrigin((6.0, 7.0, 8.0)))
    lines = (tmp_path / "s.data").read_text().splitlines()
    assert lines[5:7] == ["1.0 11.0 xlo xhi", "2.0 12.0 ylo yhi"] and lines[7].startswith("3.0 ")
    atoms = np.array([[float(v) for v in line.split()[2:5]] for line in lines[-2:]])
    assert np.array_equal(atoms, pos + [1.0, 2.0, 3.0])


def test_extxyz_positions_from_lammps_corner_are_rotated_back_into_numdps_frame(tmp_path):
    """numdp.io.trajectory.ExtxyzWriter with an origin (numdp lmp's `dump xyz`) of a cell that is
    not in LAMMPS' form (a cube turned 30 degrees about z): LAMMPS' position of an atom is
    p Q + corner (Q of lammps_box), so the file's (numdp's frame, its Lattice) is p + corner Qᵀ;
    rotated into LAMMPS' frame it is p Q + corner.  Tolerance: a few ulps of 10 Å per product.
    Mutant killed: corner Q in place of corner Qᵀ (Q is a rotation of -30 degrees, Q² != 1)."""
    from numdp.io.structure import lammps_box
    from numdp.io.trajectory import BoxOrigin, open_trajectory

    c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
    box = 10.0 * np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
    pos = np.array([[1.0, 2.0, 3.0], [4.0, 1.0, 5.0]])
    w = open_trajectory("extxyz", tmp_path / "t.xyz", np.array([0, 0]), np.array([1.0, 1.0]), ["H"],
                        ("position",), True, "eV Angstrom-1", origin=BoxOrigin.at_corner((1.0, 2.0, 3.0)))
    w.append(0, 0.0, pos, None, None, box, {})
    w.close()
    q = lammps_box(box)[1]
    back = read_extxyz(tmp_path / "t.xyz").positions
    assert np.allclose(back @ q, pos @ q + [1.0, 2.0, 3.0], rtol=0, atol=1e-12)


def test_dump_of_a_slab_grows_its_open_box_from_the_cell_and_flags_it_mm(tmp_path):
    """numdp.io.trajectory.frame_cell and the dump header: a slab (pbc T T F, 10 Å cube) whose
    atoms span z = 1 .. 12 is written with the bounds LAMMPS' ``m`` boundary gives, the cell
    itself grown to hold the atoms: zlo = min(0, 1 - margin) = 0, zhi = max(10, 12 + margin) with
    margin = 1e-4 of the span 1.2 c (relative tolerance: a few ulps of the two products), flagged
    ``pp pp mm``; the next frame, whose atoms the cell holds, keeps the cell, ``pp pp ff``.
    Mutants killed: the grown vector flagged ``ff``; the box fitted to the atoms without the cell
    (lo, hi = lo - margin, hi + margin: zlo near 1)."""
    from numdp.io.trajectory import open_trajectory

    w = open_trajectory("lammps-dump", tmp_path / "s.dump", np.array([0, 0]), np.array([1.0, 1.0]), ["H"],
                        ("position",), (True, True, False), "eV Angstrom-1")
    w.append(0, 0.0, np.array([[1.0, 1.0, 1.0], [2.0, 3.0, 12.0]]), None, None, np.eye(3) * 10.0, {})
    w.append(1, 0.0, np.array([[1.0, 1.0, 1.0], [2.0, 3.0, 8.0]]), None, None, np.eye(3) * 10.0, {})
    w.close()
    lines = (tmp_path / "s.dump").read_text().splitlines()
    assert lines[4] == "ITEM: BOX BOUNDS pp pp mm" and lines[5:7] == ["0.0 10.0", "0.0 10.0"]
    zlo, zhi = map(float, lines[7].split())
    assert zlo == 0.0 and np.isclose(zhi, 10.0 * 1.2 * (1.0 + 1e-4), rtol=4 * np.finfo(float).eps, atol=0)
    assert lines[15:19] == ["ITEM: BOX BOUNDS pp pp ff", "0.0 10.0", "0.0 10.0", "0.0 10.0"]


def test_dump_of_a_frame_in_blocks_numbers_every_atom_once_in_id_order(tmp_path):
    """numdp.io.trajectory.LammpsDumpWriter.append_frame with a frame whose atoms arrive in two
    blocks (an MPI run's rank 0 gathers them block by block: numdp.parallel.distribute.GlobalAtoms):
    the ids are 1 .. N in order, as LAMMPS' ``dump_modify sort id``, and each row holds its own
    atom's type and position.  Mutant killed: the id counted within the block (k + 1: ids 1 2 1 2)."""
    from numdp.io.trajectory import Frame, open_trajectory

    pos = np.arange(12.0).reshape(4, 3) * 0.5
    w = open_trajectory("lammps-dump", tmp_path / "b.dump", np.array([0, 1, 1, 0]), np.ones(4), ["O", "H"],
                        ("position",), True, "eV Angstrom-1")
    blocks = [(0, {"positions": pos[:2]}), (2, {"positions": pos[2:]})]
    w.append_frame(Frame(5, 0.005, 4, np.eye(3) * 10.0, {}, ("positions",), blocks))
    w.close()
    rows = [line.split() for line in (tmp_path / "b.dump").read_text().splitlines()[-4:]]
    assert [r[:3] for r in rows] == [["1", "1", "O"], ["2", "2", "H"], ["3", "2", "H"], ["4", "1", "O"]]
    assert np.array_equal(np.array([[float(v) for v in r[3:]] for r in rows]), pos)


def test_extxyz_trajectory_of_a_slab_is_periodic_along_a_and_b_for_ase(tmp_path):
    """numdp.io.trajectory.ExtxyzWriter of a slab (periodic along a and b, open along c): ASE's
    Atoms.pbc of the frame is [T, T, F], and numdp's reader gives the same flags back.
    Mutant killed: the pbc flags written in reverse ("F T T": an open a, a periodic c)."""
    import ase.io
    from numdp.io.trajectory import open_trajectory

    w = open_trajectory("extxyz", tmp_path / "s.extxyz", np.array([0]), np.array([1.008]), ["H"],
                        ("position",), (True, True, False), "eV Angstrom-1")
    w.append(0, 0.0, np.array([[1.0, 2.0, 3.0]]), None, None, np.diag([5.0, 6.0, 7.0]), {})
    w.close()
    assert ase.io.read(tmp_path / "s.extxyz").pbc.tolist() == [True, True, False]
    assert read_extxyz(tmp_path / "s.extxyz").pbc == (True, True, False)


def test_h5md_velocities_in_nm_per_ps_are_read_in_angstrom_per_ps(tmp_path):
    """numdp.io.h5md.read_frame of another program's H5MD file (GROMACS' units: nm, nm ps-1):
    velocities in ``nm ps-1`` are 10 Å/ps per unit, as the positions in ``nm`` are 10 Å.  The
    numbers are small dyadic fractions times 10: exact.  Mutant killed: nm ps-1 read as Å/ps."""
    import h5py

    from numdp.io.h5md import read_frame

    path = tmp_path / "gmx.h5md"
    with h5py.File(path, "w") as h5:
        part = h5.create_group("particles/all")
        for name, unit, value in (("position", "nm", [[0.5, 0.25, 0.125]]), ("velocity", "nm ps-1", [[1.5, -0.5, 0.25]])):
            g = part.create_group(name)
            g["value"] = np.array([value])
            g["value"].attrs["unit"] = unit
            g["step"] = np.array([0])
            g["time"] = np.array([0.0])
    f = read_frame(path)
    assert f["positions"].tolist() == [[5.0, 2.5, 1.25]] and f["velocities"].tolist() == [[15.0, -5.0, 2.5]]


def test_h5md_of_a_slab_stores_no_volume(tmp_path):
    """numdp.io.h5md.H5MDWriter: /observables/volume only for a cell periodic along a, b and c (a
    slab's cell volume includes an arbitrary vacuum: the module docstring's layout); the other
    observables are there for the slab too.  Mutant killed: volume left out only for an open
    system (``not any(flags)``)."""
    import h5py

    from numdp.io.h5md import H5MDWriter

    for pbc, has_volume in (((True, True, False), False), ((True, True, True), True)):
        w = H5MDWriter(tmp_path / "s.h5md", np.array([0]), np.array([1.0]), ["H"], ("position",), pbc)
        w.close()
        with h5py.File(tmp_path / "s.h5md", "r") as h5:
            assert ("volume" in h5["observables"]) is has_volume and "pressure" in h5["observables"]


def test_h5md_time_dependent_species_and_mass_are_read_at_the_frame(tmp_path):
    """numdp.io.h5md.read_frame of an H5MD file whose species and mass are time-dependent
    elements (H5MD allows it: value (T, N)): frame k's species and masses are row k of theirs, as
    its positions are.  Mutant killed: always row 0 (the first frame's species for every frame)."""
    import h5py

    from numdp.io.h5md import read_frame

    path = tmp_path / "td.h5md"
    with h5py.File(path, "w") as h5:
        part = h5.create_group("particles/all")
        for name, value in (("position", np.zeros((2, 2, 3))), ("species", [[0, 1], [1, 1]]),
                            ("mass", [[16.0, 1.0], [1.0, 1.0]])):
            g = part.create_group(name)
            g["value"] = np.array(value)
            g["step"] = np.array([0, 10])
    first, last = read_frame(path, 0), read_frame(path, 1)
    assert first["species"].tolist() == [0, 1] and first["masses"].tolist() == [16.0, 1.0]
    assert last["species"].tolist() == [1, 1] and last["masses"].tolist() == [1.0, 1.0] and last["step"] == 10


def test_dump_of_a_slab_with_an_atom_below_its_cell_starts_the_box_below_zero(tmp_path):
    """numdp.io.trajectory.LammpsDumpWriter, a slab (pbc T T F, 10 Å cube) with an atom at z = -2
    below its cell: the grown box starts at zlo = 10 (-0.2 - m), m = 1e-4 x the span 1.2 (frame_cell),
    and ends at the cell's top, 10; the x y z columns hold the positions wrapped along a and b only
    (z as it is: -2 and 5) and zs the fraction (z - zlo) / (zhi - zlo) of that box.  Tolerance:
    the fractions go through a 3x3 solve, a few ulps of 10 Å.  Mutants killed: the lower bound
    written as 0.0 (an orthogonal box's header taking a grown box for one from 0: the atom at -2
    outside it), and the fractions taken from 0 instead of the grown box's origin (z, zs off by
    2.0012 Å)."""
    from numdp.io.trajectory import open_trajectory

    w = open_trajectory("lammps-dump", tmp_path / "s.dump", np.array([0, 0]), np.array([1.0, 1.0]), ["H"],
                        ("position",), (True, True, False), "eV Angstrom-1", columns=("id", "x", "y", "z", "zs"))
    w.append(0, 0.0, np.array([[11.0, 1.0, -2.0], [2.0, 3.0, 5.0]]), None, None, np.eye(3) * 10.0, {})
    w.close()
    lines = (tmp_path / "s.dump").read_text().splitlines()
    assert lines[4] == "ITEM: BOX BOUNDS pp pp mm"
    zlo, zhi = map(float, lines[7].split())
    tol = dict(rtol=0, atol=1e-13)
    assert np.isclose(zlo, 10.0 * (-0.2 - 1e-4 * 1.2), **tol) and np.isclose(zhi, 10.0, **tol)
    rows = np.array([[float(v) for v in line.split()[1:]] for line in lines[-2:]])
    assert np.allclose(rows[:, :3], [[1.0, 1.0, -2.0], [2.0, 3.0, 5.0]], **tol)
    assert np.allclose(rows[:, 3], (np.array([-2.0, 5.0]) - zlo) / (zhi - zlo), **tol)


def test_dump_with_triclinic_bounds_writes_a_box_without_tilts_as_lammps_triclinic_one(tmp_path):
    """numdp.io.trajectory.LammpsDumpWriter(triclinic=True) ([output] triclinic_bounds, numdp lmp
    for a data file with an ``xy xz yz`` line): LAMMPS keeps such a box triclinic when its tilts
    are zero, and its dump writes ``BOX BOUNDS xy xz yz pp pp pp`` with a third number per line
    (the tilt, 0.0).  Mutant killed: the orthogonal header for a box without tilts despite the
    option."""
    from numdp.io.trajectory import open_trajectory

    w = open_trajectory("lammps-dump", tmp_path / "t.dump", np.array([0]), np.array([1.0]), ["H"], ("position",),
                        True, "eV Angstrom-1", triclinic=True)
    w.append(0, 0.0, np.array([[1.0, 2.0, 3.0]]), None, None, np.diag([5.0, 6.0, 7.0]), {})
    w.close()
    lines = (tmp_path / "t.dump").read_text().splitlines()
    assert lines[4:8] == ["ITEM: BOX BOUNDS xy xz yz pp pp pp", "0.0 5.0 0.0", "0.0 6.0 0.0", "0.0 7.0 0.0"]


def test_dump_of_a_turned_cell_rotates_forces_with_the_positions(tmp_path):
    """numdp.io.trajectory.LammpsDumpWriter of a cell not in LAMMPS' form (a cube turned 30
    degrees about z): LAMMPS' frame is turned with it, so every vector column (xu, vx, fx) holds
    the vector in that frame, and its components along the cell vectors are numdp's: v_dump · h_i
    = v · a_i for LAMMPS' cell rows h_i and numdp's a_i (work of a force along a cell vector,
    independent of the frame).  Tolerance: products of numbers of order 10, a few ulps of 100.
    Mutant killed: the forces written in numdp's frame (positions and velocities turned)."""
    from numdp.io.structure import lammps_box
    from numdp.io.trajectory import open_trajectory

    c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
    box = 10.0 * np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
    pos, vel, frc = np.array([[1.0, 2.0, 3.0]]), np.array([[0.5, -1.0, 2.0]]), np.array([[3.0, 1.0, -2.0]])
    w = open_trajectory("lammps-dump", tmp_path / "r.dump", np.array([0]), np.array([1.0]), ["H"],
                        ("position", "velocity", "force"), True, "eV Angstrom-1")
    w.append(0, 0.0, pos, vel, frc, box, {})
    w.close()
    lines = (tmp_path / "r.dump").read_text().splitlines()
    assert lines[8] == "ITEM: ATOMS id type element xu yu zu vx vy vz fx fy fz"
    row = np.array([float(v) for v in lines[9].split()[3:]]).reshape(3, 3)
    h = lammps_box(box)[0]
    for got, numdp in zip(row, (pos, vel, frc)):
        assert np.allclose(got @ h.T, numdp[0] @ box.T, rtol=0, atol=1e-12)
