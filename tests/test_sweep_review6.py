"""Review of the cell relaxation ([minimize] box, numdp.md.boxrelax; LAMMPS' fix box/relax): the
run summary's energies, and the parts of LAMMPS' algorithm tests/test_box_relax.py's fixtures do
not reach (its aniso cells have no tilts, its early iterations are vmax-limited steps with beta = 0,
its crystals never have the atoms at rest while the cell is strained).

LAMMPS fixtures: tools/make_review6_fixtures.py (the oracle and LJ model of
tools/make_box_relax_fixtures.py).  Energies agree to the round-off bound of tests/test_box_relax.py
(2 n_pairs u eps: the two codes sum the pair energies in other orders)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import test_box_relax as tb
from numdp.io.h5md import read_checkpoint
from numdp.units import EV_PER_A3_TO_BAR
from test_md_potential import LennardJones, fcc

DATA = Path(__file__).parent / "data" / "review6"


energies_of = tb.energies_of


def review_case(tmp_path, monkeypatch, name: str, agree: int) -> None:
    """numdp's first `agree` iterations of the LAMMPS case `name` (tests/data/review6) equal LAMMPS'
    energies to round-off."""
    monkeypatch.setattr(tb, "DATA", DATA)
    case = np.load(DATA / f"{name}.npz")
    toml = tb.setup_case(tmp_path, name)
    toml.write_text(toml.read_text().replace("steps = 5000", f"steps = {agree}").replace(
        "pressure = 0.0 }", f"pressure = 0.0, vmax = {float(case['vmax'])!r} }}"))
    e = np.array(energies_of(monkeypatch, toml))
    pe = np.asarray(case["pe"])
    assert case["steps"][:agree + 1].tolist() == list(range(agree + 1)) and len(e) == agree + 1
    natoms = len(case["x0"])
    pairs = natoms * 27 * 100 / 2   # as tb.PAIRS: < 100 neighbours within 8.5 Å, 27 images (bound)
    assert np.all(np.abs(e - pe[:agree + 1]) <= 2 * pairs * tb.UNIT), np.abs(e - pe[:agree + 1])


def test_aniso_scales_the_tilts_with_the_lengths_as_lammps(tmp_path, monkeypatch):
    """`fix box/relax aniso` on a sheared cell: LAMMPS keeps each tilt's ratio to the length it
    leans along (scalexy/scalexz/scaleyz, on by default for a non-zero tilt); keeping the tilts
    fixed instead moves the energy by ~0.04 eV from the first iteration."""
    review_case(tmp_path, monkeypatch, "aniso_tilt", 100)


def test_cg_restarts_every_3n_plus_cell_dofs_as_lammps(tmp_path, monkeypatch):
    """4 atoms, `fix box/relax tri 0.0 vmax 0.01`: cg's beta is > 0 from the first iterations, so
    the restart every 3N + 6 = 18 iterations (LAMMPS' ndoftotal counts the fix's dofs) shows; a
    restart every 3N = 12 leaves LAMMPS' path at iteration 12."""
    case = np.load(DATA / "tri_small.npz")
    assert int(case["iterations"]) >= 40
    review_case(tmp_path, monkeypatch, "tri_small", 40)


@pytest.mark.parametrize("norm", ["two", "max", "inf"])
def test_cell_forces_join_the_force_norms(tmp_path, monkeypatch, norm):
    """A perfect fcc crystal (every atom's force 0 by symmetry, to round-off) in a cell strained by
    3 %: only the cell's generalized force is not zero, so a run whose norms left it out would stop
    on ftol at once.  It runs until the pressure is at the target within what ftol allows
    ((P - P_t) 3 s² V_ref is the cell force; plus the virial's round-off as tests/test_box_relax.py)."""
    x, box = fcc(2, 5.3)
    path = tmp_path / norm
    path.mkdir()
    tb.write_start(path / "start.data", x * 1.03, box * 1.03)
    monkeypatch.setattr(tb, "DATA", DATA)
    toml = tb.setup_case(path, "tri_small")   # its settings; the start structure is the one above
    tb.write_start(path / "start.data", x * 1.03, box * 1.03)
    toml.write_text(toml.read_text().replace('coupling = "triclinic"', 'coupling = "isotropic"').replace(
        "pressure = 0.0 }", "pressure = 0.0, vmax = 0.01 }").replace("steps = 5000", f'steps = 500\nnorm = "{norm}"'))
    energies = energies_of(monkeypatch, toml)
    assert len(energies) > 2, "stopped at the start: the cell force is not in the norm"
    assert "Stopping criterion = force tolerance" in (path / "log.txt").read_text()
    b = read_checkpoint(path / "ck.h5")
    _, _, w = LennardJones(eps=1.0).energy_forces_virial(b.positions, b.box)
    volume = abs(float(np.linalg.det(b.box)))
    s = b.box[0, 0] / (box[0, 0] * 1.03)
    v_ref = abs(float(np.linalg.det(box * 1.03)))
    roundoff = tb.PAIRS * tb.UNIT * 8.5 * 10.0 / volume * EV_PER_A3_TO_BAR
    bound = 1e-10 / (3 * s * s * v_ref) * EV_PER_A3_TO_BAR + roundoff
    pressure = np.trace(w) / (3 * volume) * EV_PER_A3_TO_BAR
    assert abs(pressure) <= bound, (pressure, bound)


def test_summary_energies_are_all_the_minimized_objective(tmp_path, monkeypatch):
    """The summary's "Energy initial, next-to-last, final" are E + P_t (V - V_ref) (docs/md.md, as
    LAMMPS' einitial / eprevious / efinal, which include the fix's min_energy).  The final one
    was the potential energy E alone: at 5000 bar, the strained crystal relaxed to ftol printed a
    final 0.36 eV above the next-to-last one, which a minimization cannot do."""
    toml = tb.setup_case(tmp_path, "iso_p")
    energies_of(monkeypatch, toml)   # to ftol (218 iterations, 0.7 s)
    log = (tmp_path / "log.txt").read_text()
    initial, previous, final = (float(v) for v in re.search(
        r"Energy initial, next-to-last, final = (\S+) (\S+) (\S+) eV", log).groups())
    b = read_checkpoint(tmp_path / "ck.h5")
    case = np.load(tb.DATA / "iso_p.npz")
    target = tb.lammps_bar(float(case["pressure"])) / EV_PER_A3_TO_BAR   # eV/Å³
    v_ref = abs(float(np.linalg.det(case["box0"])))
    s = b.box[0, 0] / float(case["box0"][0, 0])
    objective = b.potential_energy + target * (s ** 3 - 1.0) * v_ref
    assert abs(target * (s ** 3 - 1.0) * v_ref) > 0.1   # the PV term is far above the printed digits
    # printed to 10 significant digits: half a unit of the last one (and the sums' round-off)
    half_digit = 0.5 * 10.0 ** (np.floor(np.log10(abs(objective))) - 9)
    assert abs(final - objective) <= half_digit + 1e-12 * abs(objective), (final, objective, b.potential_energy)
    assert final <= previous <= initial, (initial, previous, final)
