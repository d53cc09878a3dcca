"""Start-structure readers: extended XYZ, LAMMPS data, DeePMD npy frame, H5MD; replicate; types."""
from __future__ import annotations

import numpy as np
import pytest

from numdp.errors import InputError
from numdp.io.h5md import H5MDWriter
from numdp.io.structure import (assign_types, read_extxyz, read_lammps_data, read_structure, replicate,
                                write_extxyz, write_lammps_data)
from tests_util import write_system

BOX = np.array([[10.0, 0.0, 0.0], [1.0, 9.0, 0.0], [0.5, -0.7, 11.0]])


def test_extxyz_roundtrip_with_cell_and_velocities(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 9, size=(5, 3))
    v = rng.normal(size=(5, 3))
    write_extxyz(tmp_path / "a.xyz", ["O", "H", "H", "Cu", "O"], x, BOX, v)
    s = read_structure(tmp_path / "a.xyz")
    assert s.elements == ["O", "H", "H", "Cu", "O"]
    np.testing.assert_allclose(s.positions, x, atol=1e-9)
    np.testing.assert_allclose(s.box, BOX, atol=1e-9)
    np.testing.assert_allclose(s.velocities, v, atol=1e-9)


def test_extxyz_frames_plain_xyz_and_ase_momenta(tmp_path):
    text = "2\ncomment without keys\nAr 0 0 0\nAr 1 2 3\n2\nsecond\nAr 5 5 5\nAr 6 6 6\n"
    (tmp_path / "m.xyz").write_text(text)
    assert read_extxyz(tmp_path / "m.xyz", 0).box is None
    np.testing.assert_allclose(read_extxyz(tmp_path / "m.xyz", -1).positions[1], [6, 6, 6])
    with pytest.raises(InputError, match="frame 2 does not exist"):
        read_extxyz(tmp_path / "m.xyz", 2)
    # ASE writes momenta in amu * Angstrom / (ASE time unit = 10.18051 fs): p = 1 for m = 1 -> 98.2269 A/ps
    ase = ('1\nLattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3:masses:R:1:momenta:R:3 pbc="T T T"\n'
           "H 0 0 0 1.0 1.0 0 0\n")
    (tmp_path / "ase.xyz").write_text(ase)
    s = read_extxyz(tmp_path / "ase.xyz")
    assert s.velocities[0, 0] == pytest.approx(98.2269, rel=1e-5)
    slab = '1\nLattice="5 0 0 0 5 0 0 0 5" pbc="T T F"\nH 0 0 0\n'
    (tmp_path / "slab.xyz").write_text(slab)
    assert read_extxyz(tmp_path / "slab.xyz").pbc == (True, True, False)   # mixed pbc read as given
    (tmp_path / "bad.xyz").write_text(slab.replace("T T F", "T T"))
    with pytest.raises(InputError, match="expected three of T / F"):
        read_extxyz(tmp_path / "bad.xyz")


def test_lammps_data_triclinic_images_velocities_and_unsorted_ids(tmp_path):
    text = """LAMMPS data file

3 atoms
2 atom types

-1.0 9.0 xlo xhi
0.0 9.0 ylo yhi
0.0 11.0 zlo zhi
1.0 0.5 -0.7 xy xz yz

Masses

1 15.999
2 1.008

Atoms # full

3 1 2 0.4 1.0 2.0 3.0 0 0 0
1 1 1 -0.8 0.0 0.0 0.0 1 0 -1
2 1 2 0.4 4.0 4.0 4.0

Velocities

1 0.1 0.2 0.3
2 -0.1 0.0 0.0
3 0.0 0.0 1.0
"""
    (tmp_path / "w.data").write_text(text)
    s = read_structure(tmp_path / "w.data")
    np.testing.assert_allclose(s.box, BOX)
    assert s.type_ids.tolist() == [0, 1, 1]
    np.testing.assert_allclose(s.masses, [15.999, 1.008, 1.008])
    # atom 1: (0,0,0) - lo + image (1, 0, -1) @ box
    np.testing.assert_allclose(s.positions[0], np.array([1.0, 0.0, 0.0]) + BOX[0] - BOX[2])
    np.testing.assert_allclose(s.positions[2], [2.0, 2.0, 3.0])
    np.testing.assert_allclose(s.velocities[2], [0.0, 0.0, 1.0])
    assert assign_types(s, ["H", "O"], ["O", "H"]).tolist() == [1, 0, 0]


def test_lammps_data_roundtrip_and_errors(tmp_path):
    x = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    write_lammps_data(tmp_path / "a.data", [0, 1], x, BOX, [63.5, 58.7])
    s = read_lammps_data(tmp_path / "a.data")
    np.testing.assert_allclose(s.positions, x)
    np.testing.assert_allclose(s.box, BOX)
    (tmp_path / "b.data").write_text("x\n\n2 atoms\n1 atom types\n0 1 xlo xhi\n0 1 ylo yhi\n0 1 zlo zhi\n\n"
                                     "Atoms\n\n1 1 0 0 0\n")
    with pytest.raises(InputError, match="Atoms section has 1 lines, the header says 2"):
        read_lammps_data(tmp_path / "b.data")


def test_npy_frame_and_h5md_frame(tmp_path):
    coord = np.arange(2 * 3 * 3, dtype=float).reshape(2, 3, 3)
    box = np.stack([np.eye(3) * 20.0, np.eye(3) * 21.0])
    write_system(tmp_path / "sys", coord, box, np.array([0, 1, 1]), ["O", "H"])
    s = read_structure(tmp_path / "sys", frame=1)
    assert s.elements == ["O", "H", "H"]
    np.testing.assert_allclose(s.positions, coord[1])
    np.testing.assert_allclose(s.box, box[1])
    w = H5MDWriter(tmp_path / "t.h5md", [0, 1, 1], [16.0, 1.0, 1.0], ["O", "H"], ("position", "velocity"))
    for k in range(3):
        w.append(10 * k, 0.1 * k, coord[0] + k, coord[0] * 0 + k, None, box[0] * (1 + k), {})
    w.close()
    h = read_structure(tmp_path / "t.h5md")  # default: last frame
    np.testing.assert_allclose(h.positions, coord[0] + 2)
    np.testing.assert_allclose(h.velocities, 2.0)
    np.testing.assert_allclose(h.box, box[0] * 3)
    assert h.elements == ["O", "H", "H"]
    np.testing.assert_allclose(h.masses, [16.0, 1.0, 1.0])
    assert read_structure(tmp_path / "t.h5md", frame=0).positions[0, 0] == coord[0, 0, 0]


def test_replicate_tiles_along_cell_vectors():
    from numdp.io.structure import Structure

    s = Structure(np.array([[0.1, 0.2, 0.3], [1.0, 1.0, 1.0]]), BOX, ["O", "H"], None, np.ones((2, 3)), None, "t")
    r = replicate(s, (2, 1, 3))
    assert r.natoms == 12 and r.elements == ["O", "H"] * 6
    np.testing.assert_allclose(r.box, BOX * np.array([2, 1, 3])[:, None])
    np.testing.assert_allclose(r.positions[2], s.positions[0] + BOX[2])  # image (0, 0, 1)
    np.testing.assert_allclose(r.positions[-1], s.positions[1] + BOX[0] + 2 * BOX[2])
    assert r.velocities.shape == (12, 3)


def test_assign_types_errors():
    from numdp.io.structure import Structure

    s = Structure(np.zeros((2, 3)), None, ["O", "Xe"], None, None, None, "start.xyz")
    with pytest.raises(InputError, match="start.xyz: atom 1 is 'Xe', an element not in the model's type_map"):
        assign_types(s, ["O", "H"])
    n = Structure(np.zeros((2, 3)), None, None, np.array([0, 2]), None, None, "a.data")
    with pytest.raises(InputError, match="type_names"):
        assign_types(n, ["O", "H"])
    with pytest.raises(InputError, match="type_names: 2 names, but a.data uses 3 atom types"):
        assign_types(n, ["O", "H"], ["O", "H"])
    assert assign_types(n, ["O", "H", "C"]).tolist() == [0, 2]


def test_numeric_xyz_species_are_atom_types_named_by_type_names(tmp_path):
    """LAMMPS's `dump xyz` writes atom types 1, 2, ... in the species column: numeric types, named
    by [system] type_names as for a LAMMPS data file; type_names for atoms the file names is an
    error, not silently ignored."""
    path = tmp_path / "dump.xyz"
    path.write_text("3\nAtoms. Timestep: 0\n2 0.0 0.0 0.0\n1 0.96 0.0 0.0\n1 -0.24 0.93 0.0\n")
    s = read_extxyz(path)
    assert s.elements is None and s.type_ids.tolist() == [1, 0, 0]
    assert assign_types(s, ["O", "H"], ["H", "O"]).tolist() == [0, 1, 1]  # type 1 = H, type 2 = O
    assert assign_types(s, ["O", "H"]).tolist() == [1, 0, 0]  # no names: types are model indices
    assert replicate(s, (1, 1, 1)).type_ids.tolist() == [1, 0, 0]
    named = tmp_path / "named.xyz"
    named.write_text("3\n\nO 0.0 0.0 0.0\nH 0.96 0.0 0.0\nH -0.24 0.93 0.0\n")
    with pytest.raises(InputError) as err:
        assign_types(read_extxyz(named), ["O", "H"], ["O", "H"], "md.toml: [system]")
    assert str(err.value) == (f"md.toml: [system] type_names: {named} frame 0 names its elements (O, H); "
                              "type_names names numeric atom types only: remove it")
    path.write_text("2\n\n0 0.0 0.0 0.0\n1 0.96 0.0 0.0\n")
    with pytest.raises(InputError, match=r"dump.xyz:2: numeric species are atom types 1, 2, \.\.\..*got 0"):
        read_extxyz(path)


def test_lammps_data_written_from_any_cell_wraps_rotates_and_keeps_velocities(tmp_path):
    """write_lammps_data of a cell that is not LAMMPS' restricted form (a not along x) and of
    positions outside the box: the file holds the rotated cell (lammps_box), positions wrapped
    with image flags and rotated velocities, so that reading it back gives pos @ Q and vel @ Q
    (the reader unwraps with the flags); an unwrapped copy would differ by lattice vectors."""
    from numdp.io.structure import lammps_box, write_lammps_data

    rng = np.random.default_rng(3)
    box = np.array([[5.0, 0.4, 0.3], [0.2, 6.0, -0.5], [0.1, 0.3, 7.0]])
    pos = rng.uniform(-0.5, 1.5, (9, 3)) @ box          # some atoms outside the cell
    vel = rng.normal(size=(9, 3))
    write_lammps_data(tmp_path / "a.data", np.arange(9) % 2, pos, box, [1.0, 2.0], velocities=vel)
    back = read_lammps_data(tmp_path / "a.data")
    h, q = lammps_box(box)
    assert np.allclose(h, box @ q, atol=1e-12) and np.allclose(h[[0, 0, 1], [1, 2, 2]], 0.0)
    assert np.allclose(back.box, h, atol=1e-9)
    assert np.allclose(back.positions, pos @ q, atol=5e-9)
    assert np.allclose(back.velocities, vel @ q, atol=1e-9)
    text = (tmp_path / "a.data").read_text()
    atoms = text.split("Atoms # atomic\n\n")[1].split("\n\n")[0].splitlines()
    frac = np.linalg.solve(h.T, np.array([[float(w) for w in ln.split()[2:5]] for ln in atoms]).T).T
    assert np.all((frac > -1e-9) & (frac < 1 + 1e-9)) and any(ln.split()[5:] != ["0", "0", "0"] for ln in atoms)


def test_convert_writes_the_last_frame_as_lammps_data(tmp_path, capsys):
    """numdp convert CHECKPOINT/TRAJECTORY OUT.data: the last frame, types by numdp's type_map
    (type 1 = type_map[0]), masses of the atoms, velocities; an input that is no H5MD is refused."""
    from numdp.cli import main
    from numdp.io.h5md import read_frame

    box = np.diag([6.0, 6.0, 6.0])
    w = H5MDWriter(tmp_path / "t.h5md", species=np.array([1, 0, 1]), masses=np.array([1.0, 16.0, 1.0]),
                   type_map=["O", "H"], fields=("position", "velocity"))
    for step, shift in ((0, 0.0), (10, 0.5)):
        w.append(step, 0.001 * step, np.array([[0.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0]]) + shift,
                 np.ones((3, 3)) * (step + 1), None, box, {})
    w.close()
    assert main(["convert", str(tmp_path / "t.h5md"), str(tmp_path / "o.lmp")]) == 0
    back, last = read_lammps_data(tmp_path / "o.lmp"), read_frame(tmp_path / "t.h5md")
    assert "from step 10" in capsys.readouterr().out
    assert back.type_ids.tolist() == [1, 0, 1] and back.masses.tolist() == [1.0, 16.0, 1.0]
    assert np.allclose(back.positions, last["positions"], atol=1e-9)
    assert np.allclose(back.velocities, 11.0, atol=1e-9)
    (tmp_path / "x.xyz").write_text("1\n\nH 0 0 0\n")
    assert main(["convert", str(tmp_path / "x.xyz"), str(tmp_path / "o.data")]) == 2
    assert "not an H5MD file" in capsys.readouterr().err
