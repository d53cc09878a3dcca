"""Files numdp writes, read by the programs DP users read them with (ASE, dpdata, MDAnalysis,
pyh5md: the `test` extra), and `numdp convert`'s trajectory conversions.

Each test names the defect it guards against; see the module docstrings of numdp.io.trajectory
and numdp.io.h5md for the formats."""
from __future__ import annotations

import tracemalloc

import h5py
import numpy as np
import pytest

from numdp.cli import main as cli_main
from numdp.errors import InputError
from numdp.io.h5md import FORCE_UNITS, H5MDWriter
from numdp.io.trajectory import convert_trajectory


def _h5md(path, natoms, nframes, fields=("position", "force"), box=None):
    """An H5MD trajectory of `nframes` frames of `natoms` O atoms (forces in kJ/mol/Å)."""
    w = H5MDWriter(path, np.zeros(natoms, dtype=int), np.full(natoms, 16.0), ["O"], fields)
    rng = np.random.default_rng(0)
    box = np.eye(3) * 30.0 if box is None else box
    for k in range(nframes):
        x = rng.random((natoms, 3)) * 30.0
        w.append(k, 0.001 * k, x, x * 0.1 if "velocity" in fields else None, x - 15.0, box,
                 {"potential_energy": -float(k), "temperature": 300.0})
    w.close()


def test_convert_reads_the_trajectory_one_frame_at_a_time(tmp_path):
    """`numdp convert traj.h5md out.lammpstrj` read the whole force dataset (every frame's forces:
    T N 3 float64) into memory before writing the first frame: a trajectory of a large run
    (1 M atoms, 100 frames: 2.4 GB of forces) needs that much memory to convert.  Streaming frame
    by frame holds a frame's arrays and text only.  Here T = 300 frames of N = 500 atoms: all the
    forces are 3.6 MB, one frame's arrays 12 kB each and its text about 60 kB; the bound, a third
    of the whole dataset, leaves room for numpy's and h5py's temporaries of a few frames."""
    natoms, nframes = 500, 300
    _h5md(tmp_path / "t.h5md", natoms, nframes)
    whole = nframes * natoms * 3 * 8
    tracemalloc.start()
    try:
        n = convert_trajectory(tmp_path / "t.h5md", tmp_path / "t.lammpstrj", "lammps-dump")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == nframes
    assert peak < whole / 3, f"peak {peak / 1e6:.2f} MB while converting; all the forces are {whole / 1e6:.2f} MB"
    # and the forces still arrive, in eV/Å, in every frame (the dump's last three columns)
    lines = (tmp_path / "t.lammpstrj").read_text().splitlines()
    assert lines.count("ITEM: TIMESTEP") == nframes
    with h5py.File(tmp_path / "t.h5md", "r") as f:
        ref = f["particles/trajectory/force/value"][-1]
    last = np.array([ln.split()[-3:] for ln in lines[-natoms:]], dtype=float)
    np.testing.assert_array_equal(last, ref / FORCE_UNITS["kJ mol-1 Angstrom-1"])


@pytest.mark.parametrize("fmt", ["extxyz", "lammps-dump"])
def test_restart_scans_a_text_trajectory_without_reading_it_whole(tmp_path, fmt):
    """A restart (`resume_after`) that continues an extxyz or LAMMPS dump trajectory read the whole
    file into memory (bytes, then a list of decoded lines: several times the file's size) to find
    where to cut it: continuing a large run's trajectory of many GB needed that much memory.  It
    is scanned line by line now.  Here 120 frames of 400 atoms, 5.5-5.8 MB of text; the scan may
    hold a line at a time (the bound: a tenth of the file)."""
    from numdp.io.trajectory import open_trajectory

    natoms, nframes = 400, 120
    path = tmp_path / "t.traj"
    rng = np.random.default_rng(1)
    species, masses = np.zeros(natoms, dtype=int), np.full(natoms, 16.0)
    w = open_trajectory(fmt, path, species, masses, ["O"], ("position", "force"), True, "eV Angstrom-1")
    for k in range(nframes):
        w.append(10 * k, 0.01 * k, rng.random((natoms, 3)) * 20.0, None, rng.random((natoms, 3)),
                 np.eye(3) * 20.0, {"potential_energy": -1.0})
    w.close()
    size = path.stat().st_size
    text = path.read_bytes()
    tracemalloc.start()
    try:
        w = open_trajectory(fmt, path, species, masses, ["O"], ("position", "force"), True, "eV Angstrom-1",
                            resume_after=10 * 59)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    w.close()
    assert peak < size / 10, f"peak {peak / 1e6:.2f} MB to continue a {size / 1e6:.2f} MB trajectory"
    # frames 0 .. 59 kept byte for byte, the rest dropped
    assert w.last_step() == 590
    kept = path.read_bytes()
    assert text.startswith(kept) and 0.45 < len(kept) / size < 0.55
    # an empty file (a run stopped before its first frame) is continued from nothing; a file whose
    # first frame is cut short is no trajectory numdp wrote
    path.write_bytes(b"")
    open_trajectory(fmt, path, species, masses, ["O"], ("position",), True, "eV Angstrom-1", resume_after=0).close()
    assert path.read_bytes() == b""
    path.write_bytes(text[:200])
    with pytest.raises(InputError, match=f"not a numdp {fmt} trajectory"):
        open_trajectory(fmt, path, species, masses, ["O"], ("position",), True, "eV Angstrom-1", resume_after=0)


def test_extxyz_without_velocities_keeps_the_masses(tmp_path, capsys):
    """An extended XYZ trajectory held the masses only next to the velocities (ASE's momenta):
    without the velocity field (`fields = ["position", "force"]`, or `numdp convert` of such an
    H5MD file) ASE and numdp's reader fell back to the standard masses, deuterium's 2.0141 amu
    read as 1.008.  The masses column is always written now."""
    ase_io = pytest.importorskip("ase.io")
    from numdp.io.structure import read_structure

    w = H5MDWriter(tmp_path / "t.h5md", [0, 1, 1], [15.999, 2.01410178, 2.01410178], ["O", "H"], ("position", "force"))
    x = np.array([[1.0, 1.0, 1.0], [1.9, 1.6, 1.0], [0.4, 1.7, 1.2]])
    w.append(0, 0.0, x, None, x * 0.1, np.eye(3) * 10.0, {"potential_energy": -3.0})
    w.close()
    assert cli_main(["convert", str(tmp_path / "t.h5md"), str(tmp_path / "t.xyz")]) == 0
    assert "(extxyz, 1 frame)" in capsys.readouterr().out
    atoms = ase_io.read(tmp_path / "t.xyz")
    np.testing.assert_array_equal(atoms.get_masses(), [15.999, 2.01410178, 2.01410178])
    np.testing.assert_array_equal(atoms.positions, x)
    np.testing.assert_array_equal(read_structure(tmp_path / "t.xyz").masses, [15.999, 2.01410178, 2.01410178])


def test_lammps_data_keeps_every_digit_and_a_slabs_atoms_inside_its_box(tmp_path):
    """write_lammps_data (numdp convert X.data, numdp lmp's write_data): numbers with 17
    significant digits (was %.10f: a velocity of 1e-12 A/ps written 0.0000000000, deuterium's
    2.01410178 amu as 2.014102), and along an open direction the box grown to hold atoms that left
    the cell, as a dump's `mm` bounds (LAMMPS' read_data of `p p f` stopped with 'Did not assign
    all atoms correctly' for an atom at z = 9.5 in an 8 A cell).  Read back: positions within a
    few ulp of 10 A (the cell's rotation into LAMMPS' frame is the identity here), velocities and
    masses exact, every atom inside the written z bounds."""
    from numdp.io.structure import read_lammps_data, write_lammps_data

    box = np.diag([6.0, 7.0, 8.0])
    pos = np.array([[0.5, 0.5, 1.0], [3.0, 3.5, 4.0], [5.5, 6.5, 9.5], [1.0, 2.0, -0.7]])
    vel = np.array([[1e-12, 0.0, 0.0], [0.1, -0.2, 0.3], [1.0 / 3.0, 0.0, -2.5], [0.0, 0.0, 0.0]])
    write_lammps_data(tmp_path / "s.data", np.array([0, 1, 1, 0]), pos, box, np.array([15.999, 2.01410178]),
                      velocities=vel, pbc=(True, True, False))
    text = (tmp_path / "s.data").read_text()
    zlo, zhi = (float(w) for w in next(ln for ln in text.splitlines() if ln.endswith("zlo zhi")).split()[:2])
    assert zlo < -0.7 and zhi > 9.5
    back = read_lammps_data(tmp_path / "s.data")
    shift = np.array([0.0, 0.0, zlo])   # the reader moves the box's lower corner to 0
    np.testing.assert_allclose(back.positions + shift, pos, rtol=0, atol=8 * np.spacing(10.0))
    assert np.array_equal(back.velocities, vel)
    assert np.array_equal(back.masses, np.array([15.999, 2.01410178, 2.01410178, 15.999]))


def test_convert_of_an_h5md_file_without_masses_writes_standard_ones(tmp_path):
    """An H5MD file that stores no masses (LAMMPS' dump h5md): `numdp convert` to extxyz wrote a
    masses column of zeros once the column was always written (the review of that change: ASE
    read masses 0, numdp run refused the file); now the elements' standard masses, and no column
    for a type no element names."""
    ase_io = pytest.importorskip("ase.io")
    _h5md(tmp_path / "t.h5md", 4, 2)
    with h5py.File(tmp_path / "t.h5md", "a") as h5:
        part = h5["particles"][next(iter(h5["particles"]))]
        assert "mass" in part
        del part["mass"]
    assert cli_main(["convert", str(tmp_path / "t.h5md"), str(tmp_path / "t.xyz")]) == 0
    atoms = ase_io.read(tmp_path / "t.xyz")
    np.testing.assert_array_equal(atoms.get_masses(), np.full(4, 15.999))
    assert "masses" in (tmp_path / "t.xyz").read_text().splitlines()[1]
