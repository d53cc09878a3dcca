"""Start-structure readers: LAMMPS data files as LAMMPS' read_data documents them (comments in the
header, every section keyword, type labels, general triclinic boxes, the style's column count),
extended XYZ column shapes, ASE slabs, and masses that are not positive numbers."""
from __future__ import annotations

import numpy as np
import pytest

from numdp.errors import InputError
from numdp.io.structure import read_lammps_data, read_structure

DATA = """LAMMPS data file # a title with a # in it

3 atoms # count
2 atom types
-1.0 9.0 xlo xhi
2.0 11.0 ylo yhi
0.5 11.5 zlo zhi
1.0 0.5 -0.7 xy xz yz

Masses

1 63.546
2 1.008

Atoms # atomic

1 1 0.0 2.5 1.0 0 0 0
2 2 3.0 3.0 3.0 1 -1 0
3 1 8.0 10.0 11.0 0 0 1

Velocities

1 1.0 0 0
2 0 1.0 0
3 0 0 1.0
"""
BOX = np.array([[10.0, 0.0, 0.0], [1.0, 9.0, 0.0], [0.5, -0.7, 11.0]])
LO = np.array([-1.0, 2.0, 0.5])
RAW = np.array([[0.0, 2.5, 1.0], [3.0, 3.0, 3.0], [8.0, 10.0, 11.0]])
IMAGES = np.array([[0, 0, 0], [1, -1, 0], [0, 0, 1]])


def _check(s):
    np.testing.assert_allclose(s.box, BOX)
    np.testing.assert_allclose(s.positions, RAW - LO + IMAGES @ BOX)
    assert s.type_ids.tolist() == [0, 1, 0]
    np.testing.assert_allclose(s.masses, [63.546, 1.008, 63.546])
    np.testing.assert_allclose(s.velocities, np.eye(3))


def test_header_comment_is_still_a_lammps_data_file(tmp_path):
    """'3 atoms # count' (a comment, as LAMMPS allows on any line) sent the file to ASE, which
    failed: 'unknown structure format (... StopIteration)'."""
    (tmp_path / "start.data").write_text(DATA)
    _check(read_structure(tmp_path / "start.data"))
    (tmp_path / "tabs.data").write_text(DATA.replace("2 atom types", "2\tatom\ttypes"))
    _check(read_structure(tmp_path / "tabs.data"))


def test_type_labels_and_any_section_order(tmp_path):
    """An 'Atom Type Labels' section after Masses was read as Masses lines (an error), after Atoms
    as atom lines; types written as labels were refused."""
    labels = "Atom Type Labels\n\n1 Cu\n2 H\n\n"
    after_masses = DATA.replace("Atoms # atomic", labels + "Atoms # atomic")
    (tmp_path / "a.data").write_text(after_masses)
    _check(read_lammps_data(tmp_path / "a.data"))
    after_atoms = DATA.replace("Velocities", labels + "Bond Type Labels\n\n1 x\n\nVelocities")
    (tmp_path / "b.data").write_text(after_atoms)
    _check(read_lammps_data(tmp_path / "b.data"))
    named = (DATA.replace("Masses", labels + "Masses").replace("\n1 63.546", "\nCu 63.546")
             .replace("\n2 1.008", "\nH 1.008").replace("\n2 2 3.0", "\n2 H 3.0"))
    (tmp_path / "c.data").write_text(named)
    _check(read_lammps_data(tmp_path / "c.data"))
    (tmp_path / "d.data").write_text(named.replace("\n2 H 3.0", "\n2 O 3.0"))
    with pytest.raises(InputError, match=r"d.data:23: atom type 'O' is neither a number nor a label"):
        read_lammps_data(tmp_path / "d.data")


def test_general_triclinic_header(tmp_path):
    """LAMMPS' general triclinic data file (avec bvec cvec, abc origin): refused as 'header line
    xlo xhi missing'.  Its cell is taken as written, the origin moved to 0."""
    cell = np.array([[8.0, 2.0, 1.0], [-1.0, 9.0, 0.5], [0.3, 0.2, 10.0]])
    head = "\n".join(f"{' '.join(map(str, v))} {k}" for v, k in zip(cell, ("avec", "bvec", "cvec")))
    text = DATA.replace("-1.0 9.0 xlo xhi\n2.0 11.0 ylo yhi\n0.5 11.5 zlo zhi\n1.0 0.5 -0.7 xy xz yz",
                        head + "\n-1.0 2.0 0.5 abc origin")
    (tmp_path / "g.data").write_text(text)
    s = read_lammps_data(tmp_path / "g.data")
    np.testing.assert_allclose(s.box, cell)
    np.testing.assert_allclose(s.positions, RAW - LO + IMAGES @ cell)
    (tmp_path / "h.data").write_text(text.replace("-1.0 2.0 0.5 abc origin\n", ""))
    with pytest.raises(InputError, match="needs the header lines avec, bvec, cvec and abc origin"):
        read_lammps_data(tmp_path / "h.data")


def test_lammps_data_lines_lammps_refuses(tmp_path):
    """Two of three image flags were ignored, a Velocities line of a missing atom was ignored, a
    zero mass stopped the run at step 0 with non-finite velocities."""
    cases = [(DATA.replace("1 1 0.0 2.5 1.0 0 0 0", "1 1 0.0 2.5 1.0 0 0"), r"x.data:17: cannot read an 'atomic'"),
             (DATA.replace("Velocities\n", "Velocities\n\n4 1 1 1\n"), "Velocities has a line for atom id 4"),
             (DATA.replace("1 63.546", "1 0.0"), r"x.data:12: the mass of type 1 must be a positive number")]
    for text, message in cases:
        (tmp_path / "x.data").write_text(text)
        with pytest.raises(InputError, match=message):
            read_lammps_data(tmp_path / "x.data")


def test_extxyz_vector_columns_need_three_components(tmp_path):
    """pos:R:2 gave (N, 2) positions that failed later with a traceback."""
    (tmp_path / "a.xyz").write_text("1\nProperties=species:S:1:pos:R:2\nH 0 0\n")
    with pytest.raises(InputError, match=r"a.xyz:2: Properties column 'pos' has 2 components, expected 3"):
        read_structure(tmp_path / "a.xyz")


def test_ase_slab_keeps_its_periodicity(tmp_path):
    """An ASE file with mixed pbc (a .traj slab) was refused; numdp runs slabs."""
    ase = pytest.importorskip("ase")
    import ase.io

    atoms = ase.Atoms("Cu2", positions=[[0, 0, 0], [1.8, 1.8, 2.0]], cell=[3.6, 3.6, 20.0],
                      pbc=[True, True, False])
    ase.io.write(tmp_path / "slab.traj", atoms)
    s = read_structure(tmp_path / "slab.traj")
    assert s.pbc == (True, True, False)
    np.testing.assert_allclose(s.box, np.diag([3.6, 3.6, 20.0]))
    atoms.pbc = True
    ase.io.write(tmp_path / "bulk.traj", atoms)
    assert read_structure(tmp_path / "bulk.traj").pbc is None


def test_file_mass_not_positive_is_one_line(tmp_path):
    """A masses column of -1 in an extxyz start ran with a negative mass."""
    from numdp.config import load_run_settings
    from numdp.md.start import structure_atoms

    (tmp_path / "m.xyz").write_text('2\nLattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3:masses:R:1 '
                                    'pbc="T T T"\nCu 0 0 0 63.5\nCu 2 2 2 -1\n')
    (tmp_path / "md.toml").write_text('[model]\nfile = "model.h5"\n[system]\nfile = "m.xyz"\n'
                                      '[md]\ntimestep = 0.001\nsteps = 1\n')
    settings = load_run_settings(tmp_path / "md.toml")
    with pytest.raises(InputError, match=r"m.xyz frame 0: atom 1 \(Cu\) has the mass -1.0; a mass must be a "
                                         r"positive number \(amu\), or set it with \[system\] masses.Cu"):
        structure_atoms(settings, ["Cu"])
    (tmp_path / "md.toml").write_text('[model]\nfile = "model.h5"\n[system]\nfile = "m.xyz"\nmasses = { Cu = 63.5 }\n'
                                      '[md]\ntimestep = 0.001\nsteps = 1\n')
    source = structure_atoms(load_run_settings(tmp_path / "md.toml"), ["Cu"])
    np.testing.assert_allclose(source.base.masses, [63.5, 63.5])


def test_pdb_unit_cube_cryst1_is_no_cell(tmp_path):
    """PDB's CRYST1 1 1 1 90 90 90 P 1 means "no unit cell" (the PDB format's convention for
    structures not from crystallography); it became a periodic 1 Å cube."""
    pytest.importorskip("ase")
    atoms = ("ATOM      1  O   HOH A   1       0.000   0.000   0.000  1.00  0.00           O\n"
             "ATOM      2  H   HOH A   1       0.957   0.000   0.000  1.00  0.00           H\nEND\n")
    (tmp_path / "w.pdb").write_text("CRYST1    1.000    1.000    1.000  90.00  90.00  90.00 P 1           1\n" + atoms)
    s = read_structure(tmp_path / "w.pdb")
    assert s.box is None and s.elements == ["O", "H"]
    (tmp_path / "c.pdb").write_text("CRYST1   12.000   12.000   12.000  90.00  90.00  90.00 P 1           1\n" + atoms)
    np.testing.assert_allclose(read_structure(tmp_path / "c.pdb").box, np.eye(3) * 12.0, atol=1e-12)


def test_h5md_of_other_programs_fixed_nm_box_and_time_dependent_species(tmp_path):
    """H5MD written by other programs: a time-independent box/edges dataset in nm was read as Å
    (a 2 nm box became 2 Å), and species / mass given as time-dependent elements (value, step)
    raised a TypeError traceback."""
    import h5py

    from numdp.io.h5md import read_frame

    path = tmp_path / "other.h5md"
    with h5py.File(path, "w") as h5:
        part = h5.create_group("particles/all")
        pos = part.create_group("position")
        pos["value"] = np.array([[[0.1, 0.2, 0.3], [1.0, 1.0, 1.0]]])
        pos["value"].attrs["unit"] = "nm"
        pos["step"] = np.array([0])
        box = part.create_group("box")
        box.attrs["dimension"] = 3
        box.attrs["boundary"] = ["periodic"] * 3
        box["edges"] = np.array([2.0, 2.0, 2.0])
        box["edges"].attrs["unit"] = "nm"
        for name, values in (("species", [0, 1]), ("mass", [16.0, 1.0])):
            g = part.create_group(name)
            g["value"] = np.array([values])
            g["step"] = np.array([0])
    f = read_frame(path)
    assert np.array_equal(f["box"], np.diag([20.0, 20.0, 20.0]))
    assert np.allclose(f["positions"], [[1.0, 2.0, 3.0], [10.0, 10.0, 10.0]], rtol=0, atol=1e-12)
    assert f["species"].tolist() == [0, 1] and f["masses"].tolist() == [16.0, 1.0]
