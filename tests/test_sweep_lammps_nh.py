"""`numdp lmp`'s fix nvt / npt / nph against a real LAMMPS (22 Jul 2025 update 2 with DeePMD-kit
3.2's `pair_style deepmd`): the same start (read_data with velocities) and model give LAMMPS'
trajectory to round-off.  The LAMMPS outputs are tests/data/lammps_nh/CASE.npz, made by
tools/make_lammps_nh_fixtures.py (it says how).  LAMMPS runs the same fix line as numdp lmp, which
translates LAMMPS' constants since 2026-12-06 (until then LAMMPS was given the targets that made
its kT and P0 numdp's; with the same line numdp's velocities were 8e-6 to 2.2e-5 Å/ps, its cells
4e-8 to 1.6e-7 Å from LAMMPS' after 20 steps); no test needs LAMMPS.  Each case
runs 20 steps of 0.5 fs of 192 water atoms with the repository's tiny water model, a few seconds.
nve_momentum / nve_zero_linear start from velocities with a total momentum (water_drift.data),
which LAMMPS keeps (before 2026-12-06 numdp zeroed it: 0.3 Å/ps, 3e-3 Å away after 20 steps).

Before the fix (numdp run's own equations, which numdp lmp used), these fixtures' final
velocities differed from LAMMPS' by 1.9e-4 Å/ps (fix nvt: the Suzuki-Yoshida chain), 3.7e-4
(tchain 1 with a ramp) and 3.1e-3 to 6.1e-3 Å/ps (fix npt / nph: the kinetic coupling 2/N_f
against LAMMPS' 1/(3N), the cell's splitting and tilt scaling, the chain masses), positions by
9e-7 to 5e-3 Å (checked with the code before the fix).

The bound.  The two codes evaluate the same model with round-off differences: forces to
|δF| <= 1e-11 eV/Å (the NVE oracle comparison: 8e-12).  Over n = 20 steps of dt = 5e-4 ps, with
nothing chaotic at work in 10 fs, a velocity accumulates at most n |δF| dt / (m_H MVV2E) =
20 * 1e-11 * 5e-4 / (1.008 * 1.0364e-4) = 1e-9 Å/ps, a position n dt times that, 1e-11 Å (the
thermostat's and barostat's scalars add relative errors of ~1e-15 per step, far below).  The
tests take VEL_TOL = 1e-9 Å/ps, POS_TOL = BOX_TOL = 1e-11 Å; the differences found are 4e-14 Å
and 2e-13 Å/ps; of the details of LAMMPS' equations, the smallest (the kT with which a
ramp pushes the cell chain's upper links) moves the velocities by 5e-8 Å/ps.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from numdp.cli import main as cli_main
from numdp.lammps.translate import translate

DATA = Path(__file__).parent / "data" / "lammps_nh"
MODEL = Path(__file__).parent / "data" / "tensorflow" / "tf_one_side_f64.dp"
CASES = sorted(p.stem for p in DATA.glob("*.npz"))

VEL_TOL = 1e-9    # Å/ps (module docstring)
POS_TOL = 1e-11   # Å
BOX_TOL = 1e-11   # Å

SCRIPT = """units metal
boundary p p p
atom_style atomic
read_data {data}
pair_style deepmd {model}
pair_coeff * *
neighbor 1.0 bin
timestep 0.0005
thermo 1
{fix}
dump 1 all custom {steps} final.dump id x y z vx vy vz
run {steps}
"""


def _fixture_tool():
    """tools/make_lammps_nh_fixtures.py, whose LAMMPS dump reader reads numdp lmp's dumps too."""
    import importlib.util
    import sys

    tools = Path(__file__).resolve().parent.parent / "tools"
    if str(tools) not in sys.path:   # the tool imports tools/lammps_oracle.py
        sys.path.insert(0, str(tools))
    spec = importlib.util.spec_from_file_location("make_lammps_nh_fixtures", tools / "make_lammps_nh_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_dump(path: Path):
    """(x - lo, v, cell rows) of the last frame of a custom dump (id x y z vx vy vz), id order."""
    return _fixture_tool().read_dump(path)[:3]


def run_numdp(tmp_path: Path, monkeypatch, case) -> tuple:
    data = str(case["data"])
    (tmp_path / data).write_text((DATA / data).read_text())
    (tmp_path / "in.lammps").write_text(SCRIPT.format(data=data, model=MODEL, fix=str(case["fix"]),
                                                      steps=int(case["steps"])))
    monkeypatch.chdir(tmp_path)
    assert cli_main(["lmp", "-i", "in.lammps"]) == 0
    return read_dump(tmp_path / "final.dump")


def differences(case, x, v, box) -> tuple[float, float, float]:
    """Largest |position| (minimum image, Å), |velocity| (Å/ps) and |cell| (Å) differences."""
    ds = np.linalg.solve(case["box"].T, (case["x"] - x).T).T   # fractional, LAMMPS' cell
    ds -= np.round(ds)
    return (float(np.abs(ds @ case["box"]).max()), float(np.abs(case["v"] - v).max()),
            float(np.abs(case["box"] - box).max()))


@pytest.mark.parametrize("name", CASES)
def test_lammps_trajectory(tmp_path, monkeypatch, name):
    """numdp lmp's fix nvt / npt / nph (chains, ramps, iso / aniso / tri, a tilted cell with
    aniso, nph with ptemp) end 20 steps at LAMMPS' positions, velocities and cell to round-off."""
    case = np.load(DATA / f"{name}.npz")
    dx, dv, dbox = differences(case, *run_numdp(tmp_path, monkeypatch, case))
    assert dbox <= BOX_TOL, (name, dbox)
    assert dx <= POS_TOL, (name, dx)
    assert dv <= VEL_TOL, (name, dv)


def test_fixtures_cover_the_fixes():
    """The fixtures exist (a missing folder would leave the parametrised test empty) and cover
    fix nvt, npt (iso, aniso, tri) and nph."""
    fixes = [str(np.load(DATA / f"{n}.npz")["fix"]) for n in CASES]
    assert len(fixes) >= 10
    for words in (("nvt",), ("npt", "iso"), ("npt", "aniso"), ("npt", "tri"), ("nph", "iso"), ("nph", "tri")):
        assert any(all(w in f.split() for w in words) for f in fixes), words


def test_translation_selects_lammps_equations(tmp_path):
    """fix nvt / npt / nph become numdp run's Nose-Hoover chain and mtk barostat in their form
    "lammps" (numdp run's default form "numdp" keeps its own splitting and coupling)."""
    head = "units metal\nread_data conf.data\npair_style deepmd model.dp\npair_coeff * *\n"
    for fix, thermostat in (("fix 1 all nvt temp 300 300 0.1", True),
                            ("fix 1 all npt temp 300 300 0.1 aniso 1 1 1", True),
                            ("fix 1 all nph tri 1 1 1 ptemp 300", False)):
        md = translate(head + fix + "\nrun 10\n", "in.lammps", {}, tmp_path).tables["md"]
        assert (md.get("thermostat", {}).get("form") == "lammps") == thermostat
        if "barostat" in md:
            assert md["barostat"]["form"] == "lammps"


@pytest.mark.parametrize("coupling, thermostat, chain", [("isotropic", True, 3), ("triclinic", True, 3),
                                                         ("triclinic", False, 3), ("anisotropic", False, 0)])
def test_lammps_form_conserves_its_energy_to_second_order(coupling, thermostat, chain):
    """LAMMPS' form (one-pass chains, kinetic coupling 1/(3N), LAMMPS' cell splitting) conserves
    numdp's H' (econserve) to second order, as numdp's form does (tests/test_md_mtk.py's argon at
    2 kbar): the fluctuation falls by about 4 when dt halves (3.8 to 5.2 here), with no drift; a
    term missing from the equations or from H' would leave an error that does not shrink (ratio
    about 1)."""
    from test_md_dynamics import T, thermalised_argon
    from test_md_mtk import run_mtk

    from numdp.md.mtk import MTKBarostat
    from numdp.md.thermostats import NoseHooverChain

    fluct = []
    for dt, steps in ((0.01, 400), (0.005, 800)):
        st = thermalised_argon(seed=11, a=5.45)
        baro = MTKBarostat(2000.0, 0.3, coupling, T, chain=chain, form="lammps")
        th = NoseHooverChain(T, 0.1, form="lammps") if thermostat else None
        e = run_mtk(st, steps, dt, th, baro)["econs"]
        fluct.append(e.std())
        assert abs(e[-steps // 4:].mean() - e[: steps // 4].mean()) < 3 * e.std()
    assert 3.0 < fluct[0] / fluct[1] < 6.0, fluct


def test_lammps_default_keywords_are_accepted_others_refused(tmp_path):
    """fix nvt / npt / nph keywords at LAMMPS' defaults (`tloop 1`, `ploop 1`, `mtk yes`, `dilate
    all`, `drag 0`, `couple none`) change nothing; `couple xyz` with aniso is LAMMPS' iso; other
    values (equations numdp does not run) are refused in one line."""
    from numdp.errors import InputError

    head = "units metal\nread_data conf.data\npair_style deepmd model.dp\npair_coeff * *\n"

    def md(fix):
        return translate(head + fix + "\nrun 10\n", "in.lammps", {}, tmp_path).tables["md"]

    base = "fix 1 all npt temp 300 300 0.1 aniso 1 1 1"
    assert md(base + " tloop 1 ploop 1 mtk yes dilate all drag 0.0 couple none") == md(base)
    assert md(base + " couple xyz")["barostat"]["coupling"] == "isotropic"
    assert md("fix 1 all nvt temp 300 300 0.1 tloop 1 drag 0") == md("fix 1 all nvt temp 300 300 0.1")
    for extra in ("tloop 2", "ploop 3", "mtk no", "dilate mobile", "drag 0.5", "couple xy", "fixedpoint 0 0 0"):
        with pytest.raises(InputError) as err:
            md(base + " " + extra)
        assert "\n" not in str(err.value) and extra.split()[0] in str(err.value)
    with pytest.raises(InputError, match="couple xyz"):
        md("fix 1 all npt temp 300 300 0.1 tri 1 1 1 couple xyz")
