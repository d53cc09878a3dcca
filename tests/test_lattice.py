"""Crystal lattices as start structures: numdp.lattice, numdp run's [system] lattice, and numdp
lmp's lattice / region / create_box / create_atoms.

The reference is LAMMPS itself: tests/data/lammps_lattice/*.data are the write_data files of
LAMMPS 22 Jul 2025 after `lattice STYLE A`, `region box block 0 NX 0 NY 0 NZ`, `create_box`,
`create_atoms 1 box [basis ...]` (tools/make_lattice_fixtures.py): the same atoms in the same
order (LAMMPS' ids), types and box.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from numdp.cli import main as cli_main
from numdp.config import load_run_settings
from numdp.errors import InputError
from numdp.io.h5md import read_frame
from numdp.io.structure import read_lammps_data
from numdp.lammps.translate import translate
from numdp.lattice import BASES, Lattice

LAMMPS = Path(__file__).resolve().parent / "data" / "lammps_lattice"
MODEL = Path(__file__).resolve().parent / "data" / "pytorch" / "se_a_one_side_f64.dp"   # type_map O H
# tools/make_lattice_fixtures.py's cases: style, a, cells, element per basis atom (type 1 = O, 2 = H)
CASES = {"fcc": ("fcc", 3.61, (3, 2, 1), ("O",)),
         "bcc_b2": ("bcc", 2.87, (2, 2, 2), ("O", "H")),
         "sc": ("sc", 2.5, (2, 1, 3), ("O",)),
         "hcp": ("hcp", 3.21, (2, 1, 2), ("O",)),
         "diamond": ("diamond", 5.43, (1, 1, 2), ("O",) * 4 + ("H",) * 4)}


def _same_as_lammps(name, positions, elements, box):
    ref = read_lammps_data(LAMMPS / f"{name}.data")
    a = CASES[name][1]
    # LAMMPS writes %.17g-rounded coordinates of the same products: round-off of a few ulps of a
    assert np.abs(positions - ref.positions).max() <= 4 * np.finfo(float).eps * a * max(CASES[name][2]) * 2
    assert np.abs(box - ref.box).max() <= 4 * np.finfo(float).eps * a * max(CASES[name][2]) * 2
    assert [{"O": 0, "H": 1}[e] for e in elements] == ref.type_ids.tolist()


@pytest.mark.parametrize("name", CASES)
def test_every_style_is_lammps_lattice(name):
    style, a, cells, elements = CASES[name]
    positions, names, box = Lattice(style, a, cells, elements).build()
    assert len(positions) == len(BASES[style]) * np.prod(cells)
    _same_as_lammps(name, positions, names, box)


def _input(tmp_path: Path, system: str, steps: int = 0) -> Path:
    path = tmp_path / "in.toml"
    path.write_text(textwrap.dedent(f"""
        [model]
        file = "{MODEL}"
        threads = 1
        [system]
        {system}
        [md]
        timestep = 0.0005
        steps = {steps}
        [output]
        trajectory = ""
        progress = "none"
        """))
    return path


def test_numdp_run_starts_from_a_lattice(tmp_path, capsys):
    """[system] lattice: the start state is LAMMPS' crystal (the checkpoint of a run of 0 steps)."""
    style, a, cells, elements = CASES["hcp"]
    path = _input(tmp_path, f'lattice = {{ style = "{style}", a = {a}, cells = {list(cells)}, elements = ["O"] }}')
    assert cli_main(["run", str(path)]) == 0
    capsys.readouterr()
    f = read_frame(tmp_path / "checkpoint.h5")
    _same_as_lammps("hcp", f["positions"], [f["type_map"][t] for t in f["species"]], f["box"])


@pytest.mark.parametrize("system, message", [
    ('lattice = { style = "fcc", a = 3.6, elements = ["O"] }\nfile = "x.xyz"', "[system] lattice: give the start "
                                                                             "structure as a file or as a lattice"),
    ('velocities = { temperature = 10.0 }', "[system] file: required key is missing"),
    ('lattice = { style = "bct", a = 3.6, elements = ["O"] }', "[system] lattice.style"),
    ('lattice = { style = "fcc", a = 3.6, cells = [2, 2], elements = ["O"] }', "[system] lattice.cells: expected three"),
    ('lattice = { style = "bcc", a = 3.6, elements = ["O", "H", "O"] }', "[system] lattice.elements: expected one"),
    ('lattice = { style = "fcc", a = -1.0, elements = ["O"] }', "[system] lattice.a"),
    ('lattice = { style = "fcc", a = 3.6, elements = ["O"] }\ntype_names = ["O"]', "[system] type_names: not used"),
])
def test_lattice_errors_are_one_line(tmp_path, system, message):
    with pytest.raises(InputError) as err:
        load_run_settings(_input(tmp_path, system))
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


SCRIPT = """
    units metal
    boundary p p p
    lattice diamond 5.43
    region box block 0 1 0 1 0 2
    create_box 2 box
    create_atoms 1 box basis 5 2 basis 6 2 basis 7 2 basis 8 2
    mass 1 15.999
    mass 2 1.008
    pair_style deepmd {model}
    pair_coeff * * O H
    fix 1 all nve
    dump 1 all custom 1 traj.lammpstrj id type x y z
    run 0
    """


def test_numdp_lmp_creates_lammps_atoms(tmp_path, monkeypatch, capsys):
    """LAMMPS' commands that make a crystal become [system] lattice; the run's first frame is the
    crystal LAMMPS makes from the same commands, atom for atom (ids, types, positions)."""
    script = textwrap.dedent(SCRIPT.format(model=MODEL))
    tr = translate(script, "in.lammps", {}, tmp_path)
    assert tr.tables["system"] == {"lattice": {"style": "diamond", "a": 5.43, "cells": [1, 1, 2],
                                               "elements": ["O"] * 4 + ["H"] * 4},
                                   "masses": {"O": 15.999, "H": 1.008}}
    (tmp_path / "in.lammps").write_text(script)
    monkeypatch.chdir(tmp_path)
    assert cli_main(["lmp", "-i", "in.lammps"]) == 0
    capsys.readouterr()
    lines = (tmp_path / "traj.lammpstrj").read_text().splitlines()
    rows = np.array([[float(w) for w in ln.split()] for ln in lines[9:25]])
    assert rows[:, 0].tolist() == list(range(1, 17))
    _same_as_lammps("diamond", rows[:, 2:5], ["O" if t == 1 else "H" for t in rows[:, 1]],
                    np.diag([5.43, 5.43, 10.86]))
    one = translate(script.replace(" basis 5 2 basis 6 2 basis 7 2 basis 8 2", ""), "in.lammps", {}, tmp_path)
    assert one.tables["system"]["lattice"]["elements"] == ["O"]


@pytest.mark.parametrize("change, message", [
    (("block 0 1 0 1 0 2", "block 0 1.5 0 1 0 2"), "in.lammps:6: create_box: the region's x bounds 0 1.5 are not "
                                                   "whole lattice cells"),
    (("region box block 0 1 0 1 0 2", "region box sphere 0 0 0 5"), "in.lammps:5: region: numdp lmp reads `region ID block"),
    (("create_atoms 1 box", "create_atoms 1 region box"), "in.lammps:7: create_atoms: numdp lmp reads `create_atoms TYPE box"),
    (("lattice diamond 5.43", "lattice diamond 5.43 orient x 1 1 0"), "in.lammps:4: lattice: keyword 'orient'"),
    (("lattice diamond 5.43", "lattice bct 5.43"), "in.lammps:4: lattice: numdp lmp makes the lattices sc, bcc"),
    (("basis 5 2", "basis 9 2"), "in.lammps:7: create_atoms: basis 9: a diamond lattice has basis atoms 1-8"),
    (("basis 5 2", "basis 5 3"), "in.lammps:7: create_atoms: atom type 3: create_box declared types 1-2"),
    (("create_box 2 box", "create_box 2 other"), "in.lammps:6: create_box: no region 'other'"),
    (("mass 1 15.999", "create_atoms 1 box\nmass 1 15.999"), "in.lammps:8: create_atoms: a second create_atoms"),
])
def test_crystal_commands_refused_in_one_line(tmp_path, change, message):
    with pytest.raises(InputError) as err:
        translate(textwrap.dedent(SCRIPT.format(model=MODEL)).replace(*change, 1), "in.lammps", {}, tmp_path)
    assert str(err.value).startswith(message), str(err.value)


def test_a_region_off_the_origin_gives_lammps_corner_to_the_outputs(tmp_path):
    """numdp's crystal starts at 0; the translation's origin (the outputs' [output] box_center)
    puts LAMMPS' box, from the region's lower corner, back: (-1, 0, -1) spacings of 5.43 Å, the
    box 1 x 1 x 2 cells.  Against real LAMMPS under fix npt: tests/test_lmp_fidelity.py."""
    tr = translate(textwrap.dedent(SCRIPT.format(model=MODEL)).replace("block 0 1 0 1 0 2", "block -1 0 0 1 -1 1"),
                   "in.lammps", {}, tmp_path)
    assert tr.tables["system"]["lattice"]["cells"] == [1, 1, 2]
    assert tr.tables["output"]["box_center"] == pytest.approx([-0.5 * 5.43, 0.5 * 5.43, 0.0], abs=1e-14)
    corner = tr.origin.corner(np.diag([5.43, 5.43, 2 * 5.43]))
    assert corner == pytest.approx([-5.43, 0.0, -5.43], abs=1e-14)
