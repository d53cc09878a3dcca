"""`[output] format = "extxyz" | "lammps-dump"`, `numdp convert traj.h5md ...` and start structures
read by ASE (numdp.io.trajectory, numdp.io.structure.read_with_ase).

The reference is the H5MD trajectory of the same run (the triclinic NPT argon run of
test_md_run, whose cell leaves the LAMMPS form): the text files must carry the same numbers."""
from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from numdp.cli import main as cli_main
from numdp.errors import InputError
from numdp.io.structure import read_structure
from numdp.io.trajectory import lammps_box
from numdp.units import ASE_TIME_IN_PS
from test_md_run import argon_dir, run

ase_io = pytest.importorskip("ase.io")

# Values are written with repr (17 significant digits: float64 round-trips exactly); ASE's
# velocities are momenta / masses, momenta = m v c: two roundings, 2 ulp (4.4e-16 relative).
# The LAMMPS dump rotates vectors by Q = H^-1 H' (a 3x3 solve, condition ~1 for a near-cubic
# cell): ~10 ulp of the largest coordinate (unwrapped positions ~20 A, velocities ~10 A/ps,
# forces ~1 eV/A) -> absolute 1e-12 of the values' scale.
ROT_RTOL = 1e-12


def h5md_frames(path):
    with h5py.File(path, "r") as f:
        p = f["particles/trajectory"]
        return {"step": p["position/step"][()], "pos": p["position/value"][()],
                "vel": p["velocity/value"][()], "force": p["force/value"][()],
                "box": p["box/edges/value"][()], "pe": f["observables/potential_energy/value"][()]}


def argon_runs(tmp_path, fmt, suffix):
    """The argon run written as H5MD (forces in eV/A) and as `fmt`; (H5MD frames, text path)."""
    ref = argon_dir(tmp_path / "h5md", **{'trajectory = "traj.h5md"':
                                          'trajectory = "traj.h5md"\nforce_unit = "eV Angstrom-1"',
                                          "KIND": "csvr"})
    run(ref)
    toml = argon_dir(tmp_path / fmt, **{'trajectory = "traj.h5md"':
                                        f'trajectory = "traj{suffix}"\nformat = "{fmt}"',
                                        "KIND": "csvr"})
    run(toml)
    return h5md_frames(tmp_path / "h5md" / "traj.h5md"), tmp_path / fmt / f"traj{suffix}"


def test_extxyz_is_read_by_ase_with_every_field(tmp_path):
    ref, path = argon_runs(tmp_path, "extxyz", ".extxyz")
    frames = ase_io.read(path, ":")
    assert len(frames) == len(ref["step"]) == 13
    for k, atoms in enumerate(frames):
        assert set(atoms.get_chemical_symbols()) == {"Ar"}
        assert atoms.pbc.all() and atoms.info["step"] == ref["step"][k]
        np.testing.assert_array_equal(atoms.cell.array, ref["box"][k])
        np.testing.assert_array_equal(atoms.positions, ref["pos"][k])
        np.testing.assert_allclose(atoms.get_velocities() / ASE_TIME_IN_PS, ref["vel"][k], rtol=1e-15, atol=0)
        np.testing.assert_array_equal(atoms.get_forces(), ref["force"][k])
        assert atoms.get_potential_energy() == ref["pe"][k]
    # numdp's own reader reads it back as a start structure (velocities through the momenta)
    s = read_structure(path, 12)
    np.testing.assert_array_equal(s.positions, ref["pos"][12])
    np.testing.assert_allclose(s.velocities, ref["vel"][12], rtol=1e-15, atol=0)


def dump_frames(path):
    """A minimal reader of numdp's LAMMPS dump: per frame step, box lines and the ATOMS table."""
    lines = path.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        assert lines[i] == "ITEM: TIMESTEP"
        step, n = int(lines[i + 1]), int(lines[i + 3])
        head = lines[i + 8].split()[2:]
        rows = [ln.split() for ln in lines[i + 9:i + 9 + n]]
        out.append({"step": step, "bounds": lines[i + 4], "cols": head, "rows": rows})
        i += 9 + n
    return out


def test_lammps_dump_is_read_by_dpdata_and_carries_rotated_vectors(tmp_path):
    ref, path = argon_runs(tmp_path, "lammps-dump", ".lammpstrj")
    frames = dump_frames(path)
    assert [f["step"] for f in frames] == ref["step"].tolist()
    assert frames[0]["bounds"] == "ITEM: BOX BOUNDS pp pp pp"  # the start cell is cubic
    assert frames[-1]["bounds"] == "ITEM: BOX BOUNDS xy xz yz pp pp pp"  # NPT made it triclinic
    assert frames[0]["cols"] == "id type element xu yu zu vx vy vz fx fy fz".split()
    dpdata = pytest.importorskip("dpdata")
    system = dpdata.System(str(path), fmt="lammps/dump", type_map=["Ar"], unwrap=True)
    assert system.get_nframes() == 13 and system["atom_names"] == ["Ar"]
    for k, f in enumerate(frames):
        cell = system["cells"][k]
        q = np.linalg.solve(ref["box"][k], cell)  # the rotation the writer applied
        np.testing.assert_allclose(q @ q.T, np.eye(3), atol=1e-13)  # a rotation: lengths, angles kept
        assert abs(np.linalg.det(q) - 1) < 1e-13
        assert cell[0, 1] == cell[0, 2] == cell[1, 2] == 0 and (np.diag(cell) > 0).all()
        np.testing.assert_allclose(system["coords"][k], ref["pos"][k] @ q, rtol=0, atol=ROT_RTOL * 50)
        table = np.array([r[3:] for r in f["rows"]], dtype=float)
        assert {r[1] for r in f["rows"]} == {"1"} and {r[2] for r in f["rows"]} == {"Ar"}
        np.testing.assert_allclose(table[:, 3:6], ref["vel"][k] @ q, rtol=0, atol=ROT_RTOL * 50)
        np.testing.assert_allclose(table[:, 6:9], ref["force"][k] @ q, rtol=0, atol=ROT_RTOL * 50)


def test_lammps_box_of_a_general_cell():
    """A rotated triclinic cell maps back to LAMMPS' restricted form with fractional coordinates kept."""
    h = np.array([[5.0, 0.0, 0.0], [1.2, 4.5, 0.0], [-0.7, 0.9, 6.1]])
    c, s = np.cos(0.4), np.sin(0.4)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.array([[1, 0, 0], [0, c, s], [0, -s, c]])
    hp, q = lammps_box(h @ rot)
    np.testing.assert_allclose(hp, h, atol=1e-14 * 6)
    np.testing.assert_allclose(q, rot.T, atol=1e-14)
    with pytest.raises(InputError, match="left-handed"):
        lammps_box(h * np.array([1, 1, -1]))


@pytest.mark.parametrize("fmt, suffix", [("extxyz", ".extxyz"), ("lammps-dump", ".lammpstrj")])
def test_restart_continues_the_text_trajectory(tmp_path, fmt, suffix):
    """A run stopped at step 40 (its file cut inside a frame, as a kill leaves it) and restarted
    to 60 writes the same file as the uninterrupted run, byte for byte."""
    edit = {'trajectory = "traj.h5md"': f'trajectory = "traj{suffix}"\nformat = "{fmt}"', "KIND": "csvr"}
    full = argon_dir(tmp_path / "full", **edit)
    run(full)
    part = argon_dir(tmp_path / "part", **edit, **{"steps = 60": "steps = 40"})
    run(part)
    traj = tmp_path / "part" / f"traj{suffix}"
    whole = traj.read_bytes()
    traj.write_bytes(whole + whole[: len(whole) // 30])  # a frame past the checkpoint, half written
    shutil.copy(full, part)
    run(part, restart=tmp_path / "part" / "ck.h5")
    assert traj.read_bytes() == (tmp_path / "full" / f"traj{suffix}").read_bytes()
    # a new run keeps the previous file as a numbered backup
    run(part)
    assert (tmp_path / "part" / f"#traj{suffix}.1#").is_file()


@pytest.mark.parametrize("fmt, suffix", [("extxyz", ".extxyz"), ("lammps-dump", ".dump")])
def test_convert_h5md_gives_the_file_the_run_writes(tmp_path, fmt, suffix, capsys):
    ref = argon_dir(tmp_path / "h5md", **{'trajectory = "traj.h5md"':
                                          'trajectory = "traj.h5md"\nforce_unit = "eV Angstrom-1"',
                                          "KIND": "csvr"})
    run(ref)
    direct = argon_dir(tmp_path / fmt, **{'trajectory = "traj.h5md"':
                                          f'trajectory = "traj{suffix}"\nformat = "{fmt}"', "KIND": "csvr"})
    run(direct)
    out = tmp_path / f"converted{suffix}"
    assert cli_main(["convert", str(tmp_path / "h5md" / "traj.h5md"), str(out)]) == 0
    assert "13 frames" in capsys.readouterr().out
    assert out.read_bytes() == (tmp_path / fmt / f"traj{suffix}").read_bytes()
    assert cli_main(["convert", str(tmp_path / "h5md" / "traj.h5md"), str(tmp_path / "x.pdf")]) == 2


def test_unknown_format_is_refused(tmp_path):
    from numdp.config import load_run_settings

    toml = argon_dir(tmp_path, **{'trajectory = "traj.h5md"': 'format = "xtc"', "KIND": "csvr"})
    with pytest.raises(InputError, match=r"\[output\] format: must be one of 'h5md', 'extxyz', 'lammps-dump'"):
        load_run_settings(toml)
    toml = argon_dir(tmp_path, **{'trajectory = "traj.h5md"': 'format = "lammps-dump"', "KIND": "csvr"})
    assert load_run_settings(toml).output.trajectory.name == "traj.lammpstrj"
    # without `format`, the trajectory's suffix names it; a contradiction is an error
    toml = argon_dir(tmp_path, **{'trajectory = "traj.h5md"': 'trajectory = "out.xyz"', "KIND": "csvr"})
    assert load_run_settings(toml).output.format == "extxyz"
    toml = argon_dir(tmp_path, **{'trajectory = "traj.h5md"': 'trajectory = "out.dump"\nformat = "h5md"',
                                  "KIND": "csvr"})
    with pytest.raises(InputError, match=r"\[output\] trajectory: the suffix of 'out.dump' names format 'lammps-dump'"):
        load_run_settings(toml)


def test_poscar_and_cif_start_structures_are_read_through_ase(tmp_path):
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
    atoms.rattle(0.05, seed=1)
    ase_io.write(tmp_path / "POSCAR", atoms, format="vasp")
    ase_io.write(tmp_path / "start.cif", atoms)
    for name in ("POSCAR", "start.cif"):
        s = read_structure(tmp_path / name)
        assert s.elements == ["Cu"] * 8 and "ASE" in s.source
        np.testing.assert_allclose(s.box, atoms.cell.array, atol=1e-6)  # CIF stores lengths, angles
        frac = (s.positions - atoms.positions) @ np.linalg.inv(atoms.cell.array)
        np.testing.assert_allclose(frac - np.round(frac), 0, atol=1e-6)  # CIF wraps into the cell
    (tmp_path / "junk.dat").write_text("not a structure\n")
    with pytest.raises(InputError, match="junk.dat: unknown structure format"):
        read_structure(tmp_path / "junk.dat")


def test_open_system_and_foreign_file(tmp_path):
    """An open system: no Lattice and pbc F in extxyz, shrink-wrapped `ss` bounds in the dump;
    continuing a file that is not a numdp trajectory is refused without touching it."""
    from numdp.io.trajectory import open_trajectory

    rng = np.random.default_rng(3)
    pos, vel, frc = (rng.normal(size=(5, 3)) for _ in range(3))
    species, masses = np.array([0, 1, 1, 0, 1]), np.array([16.0, 1.0, 1.0, 16.0, 1.0])
    obs = {"potential_energy": -3.5, "temperature": 12.0, "pressure": float("nan")}
    for fmt, name in (("extxyz", "a.extxyz"), ("lammps-dump", "a.lammpstrj")):
        w = open_trajectory(fmt, tmp_path / name, species, masses, ["O", "H"],
                            ("position", "velocity", "force"), False, "eV Angstrom-1")
        w.append(7, 0.007, pos, vel, frc, None, obs)
        w.close()
    atoms = ase_io.read(tmp_path / "a.extxyz", ":")[0]
    assert not atoms.pbc.any() and atoms.get_chemical_symbols() == ["O", "H", "H", "O", "H"]
    np.testing.assert_array_equal(atoms.positions, pos)
    assert atoms.get_potential_energy() == -3.5 and "pressure" not in atoms.info  # nan left out
    frame = dump_frames(tmp_path / "a.lammpstrj")[0]
    assert frame["bounds"] == "ITEM: BOX BOUNDS ss ss ss" and frame["step"] == 7
    table = np.array([r[3:] for r in frame["rows"]], dtype=float)
    np.testing.assert_array_equal(table, np.concatenate([pos, vel, frc], axis=1))
    assert [r[1:3] for r in frame["rows"]] == [["1", "O"], ["2", "H"], ["2", "H"], ["1", "O"], ["2", "H"]]
    foreign = tmp_path / "notes.extxyz"
    foreign.write_text("hello\nworld\n")
    with pytest.raises(InputError, match="not a numdp extxyz trajectory"):
        open_trajectory("extxyz", foreign, species, masses, ["O", "H"], ("position",), False, "eV Angstrom-1",
                        resume_after=0)
    assert foreign.read_text() == "hello\nworld\n"


def test_convert_to_a_trajectory_from_what_is_no_h5md_says_why(tmp_path, capsys):
    """A damaged H5MD file (a killed copy) or another file converted to .extxyz/.dump was reported
    as "cannot choose a model format for suffix '.extxyz'"; and .h5md is not an output."""
    damaged = tmp_path / "traj.h5md"
    with h5py.File(damaged, "w") as f:
        f["particles/trajectory/position/value"] = np.zeros((50, 10, 3))
    damaged.write_bytes(damaged.read_bytes()[:3000])
    other = tmp_path / "data.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.zeros(3)
    text = tmp_path / "frames.extxyz"
    text.write_text("1\n\nAr 0 0 0\n")
    for src, dst, message in ((damaged, "out.extxyz", "traj.h5md: not an H5MD trajectory (unreadable HDF5 file: "),
                              (other, "out.dump", "data.h5: not an H5MD trajectory (no /particles group); "
                                                  "numdp convert writes .dump files from H5MD trajectories only"),
                              (text, "out.xyz", "frames.extxyz: not an H5MD trajectory (not an HDF5 file)"),
                              (tmp_path / "none.h5md", "out.lammpstrj", "none.h5md: not an H5MD trajectory (file not found)"),
                              (text, "out.h5md", "out.h5md: numdp convert writes no H5MD files")):
        assert cli_main(["convert", str(src), str(tmp_path / dst)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


@pytest.mark.parametrize("error, status", [(InputError("unreadable frame"), 2), (KeyboardInterrupt(), 130)])
def test_failed_trajectory_convert_gives_the_existing_output_its_name_back(tmp_path, monkeypatch, error, status):
    """The second frame cannot be read (or Ctrl-C comes) while OUT is being written: no partial
    file, the earlier OUT back under its name byte for byte, no #OUT.1#."""
    import numdp.io.h5md as h5md

    src = tmp_path / "traj.h5md"
    w = h5md.H5MDWriter(src, np.zeros(2, dtype=np.int64), np.ones(2), ["Ar"], fields=("position",))
    for k in range(2):
        w.append(k, 0.001 * k, np.eye(3)[:2] * (1 + k), None, None, 10.0 * np.eye(3), {})
    w.close()
    out = tmp_path / "out.extxyz"
    out.write_bytes(b"earlier\x00frames")
    frame_of = h5md.frame_of   # (convert reads every frame of the file it holds open through it)

    def failing(h5, path, k):
        if k == 1:
            raise error
        return frame_of(h5, path, k)

    monkeypatch.setattr(h5md, "frame_of", failing)
    assert cli_main(["convert", str(src), str(out)]) == status
    assert out.read_bytes() == b"earlier\x00frames"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.extxyz", "traj.h5md"]
    monkeypatch.setattr(h5md, "frame_of", frame_of)
    assert cli_main(["convert", str(src), str(out)]) == 0
    assert (tmp_path / "#out.extxyz.1#").read_bytes() == b"earlier\x00frames"
    assert len(read_structure(out, 1).positions) == 2
