"""`numdp lmp` against a real LAMMPS (22 Jul 2025 update 2 with DeePMD-kit 3.2's `pair_style
deepmd`), the differences removed on 2026-12-06 (a second sweep): a data file's momentum, `velocity
all zero linear` and LAMMPS' constants.  The LAMMPS trajectories are fixtures of
tests/data/lammps_nh/ (tools/make_lammps_nh_fixtures.py; test_sweep_lammps_nh.py compares them,
the cases nve_momentum and nve_zero_linear among them); replicate's ids are tested in
test_sweep_lammps_oracle.py.  No test needs LAMMPS; each runs a few steps of 192 water atoms with
the repository's tiny model, or translates only.

What LAMMPS does, and numdp lmp did before:
- LAMMPS keeps a data file's velocities as they are: its total momentum stays (NVE conserves it);
  numdp zeroed it at the start of every run (for tests/data/lammps_nh/water_drift.data, a drift of
  (0.3, -0.2, 0.1) Å/ps: velocities 0.3 Å/ps and positions 3e-3 Å from LAMMPS' after 20 steps).
  `velocity all zero linear` zeroes it where the script says, between runs too.
- LAMMPS' units metal kB (8.617343e-5 eV/K) and bar (1.6021765e6 per eV/Å³) are not CODATA 2018's,
  numdp's: `velocity create 300` gave a kinetic energy 1.13e-6 relative below LAMMPS', and fix
  nvt / npt targets a kT and P0 1.13e-6 and 8.4e-8 apart (velocities 1.4e-5 Å/ps apart after 20
  steps of the fixtures).
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from numdp.cli import main as cli_main
from numdp.errors import InputError
from numdp.lammps.translate import translate

DATA = Path(__file__).parent / "data" / "lammps_nh"
MODEL = Path(__file__).parent / "data" / "tensorflow" / "tf_one_side_f64.dp"
KB_LAMMPS, MVV2E = 8.617343e-5, 1.0364269e-4
DRIFT = np.array([0.3, -0.2, 0.1])   # Å/ps, water_drift.data's velocities minus water.data's

HEAD = """units metal
atom_style atomic
read_data {data}
pair_style deepmd {model}
pair_coeff * *
neighbor 1.0 bin
timestep 0.0005
"""


def frames(path: Path) -> list[tuple[int, np.ndarray, list[str]]]:
    """(step, atom rows in id order, column names) of every frame of a custom dump."""
    lines = path.read_text().splitlines()
    out = []
    for k, line in enumerate(lines):
        if line == "ITEM: TIMESTEP":
            n = int(lines[k + 3])
            cols = lines[k + 8].split()[2:]
            a = np.array([[float(x) for x in ln.split()] for ln in lines[k + 9:k + 9 + n]])
            out.append((int(lines[k + 1]), a[np.argsort(a[:, cols.index("id")])], cols))
    return out


def momentum(rows: np.ndarray, cols: list[str]) -> np.ndarray:
    m = rows[:, cols.index("mass")]
    return m @ rows[:, [cols.index(c) for c in ("vx", "vy", "vz")]]


def run_lmp(tmp_path, monkeypatch, body: str, data: str = "water_drift.data") -> Path:
    (tmp_path / data).write_text((DATA / data).read_text())
    (tmp_path / "in.lammps").write_text(HEAD.format(data=data, model=MODEL) + textwrap.dedent(body))
    monkeypatch.chdir(tmp_path)
    assert cli_main(["lmp", "-i", "in.lammps", "-log", "none"]) == 0
    return tmp_path


def test_data_file_momentum_is_kept_and_velocity_zero_linear_zeroes_it(tmp_path, monkeypatch):
    """A data file's total momentum is LAMMPS': kept by the first run (NVE conserves it), zeroed by
    `velocity all zero linear` before the next run (numdp run's [system] momentum = "zero" on the
    checkpoint it continues from).  The bound: Σ m v of 192 atoms (m <= 16 amu, |v| <= 20 Å/ps) in
    float64, and NVE's Σ F = 0 to the model's round-off over 10 steps: far below 1e-9 amu Å/ps,
    where the momentum is 700 amu Å/ps."""
    folder = run_lmp(tmp_path, monkeypatch, """
        fix 1 all nve
        dump 1 all custom 5 v.dump id mass vx vy vz
        run 5
        velocity all zero linear
        run 5
        """)
    got = {step: momentum(rows, cols) for step, rows, cols in frames(folder / "v.dump")}
    rows, cols = frames(folder / "v.dump")[0][1:]
    start = DRIFT * rows[:, cols.index("mass")].sum()   # water.data's momentum is zero
    assert sorted(got) == [0, 5, 10]
    assert np.abs(got[0] - start).max() <= 1e-9 and np.abs(got[5] - start).max() <= 1e-9
    assert np.abs(got[10]).max() <= 1e-9


def test_momentum_in_the_tables(tmp_path):
    """The [system] momentum numdp lmp writes: "keep" for read_data (LAMMPS keeps the file's),
    "zero" after `velocity all zero linear` or with `fix momentum` (numdp zeroes it at the start
    and keeps it zero), and on a later run only where the script zeroes it before that run."""
    (tmp_path / "water.data").write_text((DATA / "water.data").read_text())

    def tables(body):
        tr = translate(HEAD.format(data="water.data", model=MODEL) + textwrap.dedent(body), "in.lammps", {}, tmp_path)
        return [tr.tables] + [t for t, _ in tr.later]

    assert tables("fix 1 all nve\nrun 5\n")[0]["system"]["momentum"] == "keep"
    assert tables("velocity all zero linear\nfix 1 all nve\nrun 5\n")[0]["system"]["momentum"] == "zero"
    assert tables("fix 1 all nve\nfix 2 all momentum 10 linear 1 1 1\nrun 5\n")[0]["system"]["momentum"] == "zero"
    first, second, third = tables("fix 1 all nve\nrun 5\nvelocity all zero linear\nrun 5\nrun 5\n")
    assert first["system"]["momentum"] == "keep" and second["system"]["momentum"] == "zero"
    assert "momentum" not in third["system"]   # a checkpoint's velocities as they are


def test_velocity_create_gives_lammps_kinetic_energy(tmp_path, monkeypatch):
    """`velocity all create 300 SEED`: LAMMPS scales the kinetic energy to 3(N-1)/2 kB T with its
    kB; numdp lmp's start has that kinetic energy (numdp's temperature of it: 300 * 8.617343e-5 /
    8.617333262e-5).  The bound: K summed over 192 atoms in float64, 1e-13 relative; before, 1.13e-6."""
    folder = run_lmp(tmp_path, monkeypatch, """
        velocity all create 300 4928459
        fix 1 all nve
        dump 1 all custom 1 v.dump id mass vx vy vz
        run 1
        """, data="water.data")
    step, rows, cols = frames(folder / "v.dump")[0]
    v = rows[:, [cols.index(c) for c in ("vx", "vy", "vz")]]
    ke = 0.5 * MVV2E * rows[:, cols.index("mass")] @ (v * v).sum(1)
    want = 1.5 * (len(rows) - 1) * KB_LAMMPS * 300.0
    assert step == 0 and abs(ke / want - 1.0) <= 1e-13, ke / want - 1.0


def test_print_toml_says_why_its_numbers_are_not_the_scripts(tmp_path):
    """The translated temperatures and pressures are the script's times LAMMPS' kB / numdp's and
    numdp's bar / LAMMPS': the TOML says so in a comment, where it has such numbers."""
    (tmp_path / "water.data").write_text((DATA / "water.data").read_text())
    head = HEAD.format(data="water.data", model=MODEL)
    tr = translate(head + "fix 1 all npt temp 300 300 0.1 iso 1000 1000 0.5\nrun 5\n", "in.lammps", {}, tmp_path)
    assert "# constants: temperatures (K) and pressures (bar) below are the script's times" in tr.toml
    assert tr.tables["md"]["thermostat"]["temperature"] == 300.0 * KB_LAMMPS / 8.617333262e-5
    assert tr.tables["md"]["barostat"]["pressure"] == 1000.0 * 1.602176634e6 / 1.6021765e6
    tr = translate(head + "velocity all create 300 5\nfix 1 all nve\nrun 5\n", "in.lammps", {}, tmp_path)
    assert "# constants:" in tr.toml
    assert "# constants:" not in translate(head + "fix 1 all nve\nrun 5\n", "in.lammps", {}, tmp_path).toml


def test_numdp_run_keeps_its_defaults_and_refuses_bad_values(tmp_path):
    """numdp run alone: [system] momentum absent zeroes a structure's momentum (its default),
    "keep" keeps it; replicate_order and momentum take their values only (one line)."""
    from numdp.config import run_settings
    from numdp.md.start import state_from_structure

    (tmp_path / "w.data").write_text((DATA / "water_drift.data").read_text())

    def settings(**system):
        t = {"model": {"file": str(MODEL)}, "system": {"file": "w.data", **system},
             "md": {"timestep": 0.0005, "steps": 1}}
        return run_settings(Path("in.toml"), "", t, tmp_path)

    def p(s):
        state = state_from_structure(s, ["O", "H"])
        return state.masses @ state.velocities, state.masses.sum()

    zeroed, total = p(settings())
    kept, _ = p(settings(momentum="keep"))
    assert np.abs(zeroed).max() <= 1e-9
    assert np.abs(kept - DRIFT * total).max() <= 1e-9
    for key in ("momentum", "replicate_order"):
        with pytest.raises(InputError) as err:
            settings(**{key: "lammps-ish"})
        assert f"[system] {key}" in str(err.value) and "\n" not in str(err.value)


def test_restart_continues_without_zeroing_again(tmp_path, monkeypatch):
    """[system] momentum = "zero" on a checkpoint given as [system] file is a new run's start; a
    --restart of that input continues a run and must not zero again, even from the very file
    [system] names (it did: the two were told apart by comparing the paths)."""
    (tmp_path / "water_drift.data").write_text((DATA / "water_drift.data").read_text())
    common = (f'[model]\nfile = "{MODEL}"\n[md]\ntimestep = 0.0005\nensemble = "nve"\nsteps = {{steps}}\n'
              f'[output]\nthermo_every = 1\ncheckpoint = "{{ck}}"\n'
              f'trajectory = "{{traj}}"\nformat = "lammps-dump"\nevery = 1\ncolumns = ["id", "mass", "vx", "vy", "vz"]\n')
    (tmp_path / "a.toml").write_text('[system]\nfile = "water_drift.data"\ntype_names = ["O", "H"]\n'
                                     'momentum = "keep"\n' + common.format(steps=2, ck="ck.h5", traj="a.dump"))
    (tmp_path / "b.toml").write_text('[system]\nfile = "ck.h5"\nmomentum = "zero"\n'
                                     + common.format(steps=4, ck="ck2.h5", traj="b.dump"))
    monkeypatch.chdir(tmp_path)
    assert cli_main(["run", "a.toml"]) == 0
    start = momentum(*frames(tmp_path / "a.dump")[-1][1:])
    assert np.abs(start).max() > 100.0          # the drift, kept
    assert cli_main(["run", "b.toml", "--restart", str(tmp_path / "ck.h5")]) == 0   # the very path
    got = [momentum(rows, cols) for _, rows, cols in frames(tmp_path / "b.dump")]
    assert all(np.abs(p - start).max() <= 1e-9 for p in got), got   # bound: the first test's
