"""Cell relaxation ([minimize] box, numdp.md.boxrelax; numdp lmp's `fix box/relax`) against a real
LAMMPS (22 Jul 2025 update 2): `fix box/relax iso|aniso|tri 0.0` with `min_style cg` and `minimize
0 1e-10 5000 100000` from a 32-atom fcc crystal (jittered) whose cell is strained (iso x1.03;
aniso 1.03 / 0.98 / 1.01; tri with tilts), with the shifted-force Lennard-Jones of
tests/test_md_potential.py (LAMMPS lj/smooth/linear 8.5, eps 1 eV, sigma 3.4 Å).  LAMMPS' thermo
lines and final cell are tests/data/box_relax/CASE.npz (tools/make_box_relax_fixtures.py; the
repository's water models collapse at zero pressure, so they have no relaxed state to compare).

The relaxed state is unique enough to compare: the minimum is the perfect fcc lattice at zero
pressure, isolated up to a rigid translation (and, for the triclinic cell, the cell's lattice
equivalences, far from these small strains).  Bounds (ftol = 1e-10 for the whole force vector,
the cell's generalized forces fextra in eV included):

- pressure: the cell force of a component is (P_aa - P_t) s_b s_c V_ref (or P_ab l l l_ref), so a
  run that stops on ftol has |P_aa - P_t| <= ftol / (s_b s_c V_ref) (x EV_PER_A3_TO_BAR for bar),
  plus the virial's round-off n_pairs u |r f|max / V (|r f| <= 8.5 Å x 10 eV/Å).  A wrong virial
  sign or a missing P_t V term moves the cell away from P_t and fails this.
- volume: dV/V = -dP/B with B the bulk modulus of the model at the minimum (computed here from
  the model by a central difference of the pressure, 1e-4 strain); the two runs' volumes differ by
  at most (|P_numdp| + |P_lammps| + 2 round-off) V / B.
- energy per atom: first order in the residual forces vanishes at the minimum; the rest is the
  summation round-off 2 n_pairs² u eps (as tests/test_minimize_cg.py) plus |P| dV, divided by N.

Iterations: the algorithm is LAMMPS' (the cell steps L_start + ds L_ref, the same fextra, alpha_max
from vmax, fextra·hextra in every dot product), so numdp repeats LAMMPS' iterations while round-off
allows: the first AGREE iterations' energies are compared to half the 17th printed digit plus the
energies' round-off.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from numdp.errors import InputError
from numdp.io.h5md import read_checkpoint
from numdp.lammps.translate import lammps_bar
from numdp.md.reporters import CheckpointReporter
from numdp.system import to_arrays
from numdp.units import EV_PER_A3_TO_BAR
from test_md_potential import LennardJones
from test_minimize import MIN, run

DATA = Path(__file__).parent / "data" / "box_relax"
CASES = ("iso", "aniso", "tri", "iso_p", "aniso_p")
COUPLING = {"iso": "isotropic", "aniso": "anisotropic", "tri": "triclinic"}
UNIT = np.finfo(float).eps / 2
PAIRS = 32 * 27 * 100 / 2   # pair terms summed: < 100 neighbours within 8.5 Å per atom image, 27 images (bound)
AGREE = 100   # iterations whose energies are compared with LAMMPS' (module docstring)


def write_start(path: Path, x: np.ndarray, box: np.ndarray) -> None:
    box = np.asarray(box, dtype=float).tolist()
    box = np.array(box, dtype=object)
    lines = ["box relax", "", f"{len(x)} atoms", "1 atom types", "", f"0.0 {box[0, 0]!r} xlo xhi",
             f"0.0 {box[1, 1]!r} ylo yhi", f"0.0 {box[2, 2]!r} zlo zhi",
             f"{box[1, 0]!r} {box[2, 0]!r} {box[2, 1]!r} xy xz yz", "", "Masses", "", "1 39.948", "",
             "Atoms # atomic", ""]
    lines += [f"{i + 1} 1 {float(p[0])!r} {float(p[1])!r} {float(p[2])!r}" for i, p in enumerate(x)]
    path.write_text("\n".join(lines) + "\n")


def setup_case(path: Path, name: str, minimize: str = "", output: str = "") -> Path:
    """The case's start structure and numdp's input (cg, ftol 1e-10, thermo every iteration)."""
    case = np.load(DATA / f"{name}.npz")
    path.mkdir(parents=True, exist_ok=True)
    write_start(path / "start.data", case["x0"], case["box0"])
    text = MIN.replace('file = "start.xyz"', 'file = "start.data"\ntype_names = ["Ar"]').replace(
        "steps = 400\nftol = 1e-4", 'steps = 5000\nftol = 1e-10\netol = 0.0\nstyle = "cg"\nmaxeval = 100000\n'
        f'box = {{ coupling = "{COUPLING[str(case["coupling"])]}", pressure = {lammps_bar(float(case["pressure"]))!r} }}\n'
        f'{minimize}').replace(
        "thermo_every = 10", f"thermo_every = 1\n{output}")
    (path / "min.toml").write_text(text)
    return path / "min.toml"


def lammps_p(virial: np.ndarray, box: np.ndarray) -> np.ndarray:
    """pxx pyy pzz pyz pxz pxy, bar, of a virial (3, 3) eV (no kinetic part: v = 0)."""
    w = virial / abs(np.linalg.det(box)) * EV_PER_A3_TO_BAR
    return np.array([w[0, 0], w[1, 1], w[2, 2], w[2, 1], w[2, 0], w[1, 0]])


def bulk_modulus(lj, x, box) -> float:
    """B = -V dP/dV, bar, of an affine dilation at (x, box) (central difference, strain 1e-4)."""
    p = []
    for s in (1.0 + 1e-4, 1.0 - 1e-4):
        _, _, w = lj.energy_forces_virial(x * s, box * s)
        p.append(np.trace(w) / (3 * abs(np.linalg.det(box * s))) * EV_PER_A3_TO_BAR)
    return -(p[0] - p[1]) / (3 * 2e-4)


def energies_of(monkeypatch, toml: Path) -> list[float]:
    """Run `toml` (LJ, eps 1 eV); the potential energy at the start and after each iteration, eV
    (full precision)."""
    from numdp.md.linesearch import LineSearchMinimizer

    energies = []
    step = LineSearchMinimizer.step

    def recording(self, state, forces):
        if not energies:
            energies.append(state.potential_energy)
        step(self, state, forces)
        energies.append(state.potential_energy)

    monkeypatch.setattr(LineSearchMinimizer, "step", recording)
    run(toml, model=LennardJones(eps=1.0))
    return energies


@pytest.mark.parametrize("name", CASES)
def test_relaxed_state_as_lammps(tmp_path, monkeypatch, name):
    case = np.load(DATA / f"{name}.npz")
    target = lammps_bar(float(case["pressure"]))   # numdp's bar for LAMMPS' P_t (numdp lmp's translation)
    lj = LennardJones(eps=1.0)
    energies = energies_of(monkeypatch, setup_case(tmp_path, name))
    log = (tmp_path / "log.txt").read_text()
    assert "Stopping criterion = force tolerance" in log and str(case["stop"]) == "force tolerance", log[-900:]
    b = read_checkpoint(tmp_path / "ck.h5")
    e, f, w = lj.energy_forces_virial(b.positions, b.box)
    volume = abs(float(np.linalg.det(b.box)))
    ref = np.asarray(case["box0"])
    v_ref = abs(float(np.linalg.det(ref)))
    s = np.diag(b.box) / np.diag(ref)
    # the pressure tensor is the target within what ftol allows (module docstring)
    p = lammps_p(w, b.box)
    p[:3] -= target
    roundoff = PAIRS * UNIT * 8.5 * 10.0 / volume * EV_PER_A3_TO_BAR
    bound = 1e-10 / (min(s[0] * s[1], s[0] * s[2], s[1] * s[2]) * v_ref) * EV_PER_A3_TO_BAR + roundoff
    if name == "iso":
        bound = 1e-10 / (3 * s[0] ** 2 * v_ref) * EV_PER_A3_TO_BAR + roundoff
        assert abs(p[:3].mean()) <= bound, (p, bound)
    else:
        controlled = 3 if name == "aniso" else 6
        if name == "tri":   # P_ab l_a l_b l_ref: the smallest of those products
            lengths = np.diag(b.box)
            bound = max(bound, 1e-10 / (lengths.min() ** 2 * np.diag(ref).min()) * EV_PER_A3_TO_BAR + roundoff)
        assert np.all(np.abs(p[:controlled]) <= bound), (p, bound)
    # the same relaxed volume, cell and energy per atom as LAMMPS
    p_lmp = np.asarray(case["p"]) - np.array([float(case["pressure"])] * 3 + [0.0] * 3)   # LAMMPS' bar
    big = bulk_modulus(lj, b.positions, b.box)
    assert big > 0
    dv = (abs(p[:3].mean()) + abs(p_lmp[:3].mean()) + 2 * roundoff) / big * volume
    assert abs(volume - float(case["vol"])) <= dv, (volume, float(case["vol"]), dv)
    lmp_box = np.asarray(case["box"])
    assert np.all(np.abs(b.box - lmp_box) <= dv / volume * np.abs(lmp_box).max() * 3), (b.box, lmp_box)
    # dE = -P dV at the minimum of E + P_t V: |P_t| dV, the residual pressures', the summation round-off
    pressures = abs(target) + abs(p[:3].mean()) + abs(p_lmp[:3].mean())
    de = (2 * PAIRS ** 2 * UNIT * 1.0 + pressures / EV_PER_A3_TO_BAR * dv) / 32
    assert abs(e - float(case["final_pe"])) / 32 <= de, (e, float(case["final_pe"]), de)
    # LAMMPS' first AGREE iterations to round-off: the two codes sum the pair energies in other
    # orders (2 n_pairs u eps each) from positions that agree to round-off (which the line searches
    # amplify only slowly over these iterations: the first disagreement > 1e-9 eV comes after 200)
    assert case["steps"][:AGREE + 1].tolist() == list(range(AGREE + 1))
    pe = np.asarray(case["pe"][:AGREE + 1])
    assert len(energies) > AGREE + 1
    assert np.all(np.abs(np.array(energies[:AGREE + 1]) - pe) <= 2 * PAIRS * UNIT * 1.0), \
        np.abs(np.array(energies[:AGREE + 1]) - pe).max()


def test_restart_continues_bit_for_bit(tmp_path, monkeypatch):
    """A checkpoint in the middle of a cell relaxation holds the cell, its direction and the
    reference cell: --restart from it ends in the uninterrupted run's final checkpoint, bit for bit."""
    extra = "checkpoint_every = 10"
    full = setup_case(tmp_path / "full", "tri", output=extra)
    part = setup_case(tmp_path / "part", "tri", output=extra)
    for toml in (full, part):
        toml.write_text(toml.read_text().replace("steps = 5000", "steps = 30"))
    write = CheckpointReporter.write

    def keep_step_10(self, s, path):
        write(self, s, path)
        if s.step == 10:
            shutil.copy(path, Path(path).with_name("ck10.h5"))

    monkeypatch.setattr(CheckpointReporter, "write", keep_step_10)
    run(full, model=LennardJones(eps=1.0))
    mid = read_checkpoint(tmp_path / "full" / "ck10.h5")
    assert mid.step == 10 and np.abs(mid.minimize["box_direction"]).max() > 0
    shutil.copy(tmp_path / "full" / "ck10.h5", tmp_path / "part" / "ck.h5")
    run(part, restart=tmp_path / "part" / "ck.h5", model=LennardJones(eps=1.0))
    a = to_arrays(read_checkpoint(tmp_path / "full" / "ck.h5"))
    c = to_arrays(read_checkpoint(tmp_path / "part" / "ck.h5"))
    assert a.keys() == c.keys() and int(a["step"]) == 30
    assert not np.array_equal(a["box"], np.load(DATA / "tri.npz")["box0"])   # the cell moved
    for key in a:
        floats = np.asarray(a[key]).dtype.kind == "f"
        assert np.array_equal(a[key], c[key], equal_nan=floats), key


@pytest.mark.parametrize("box, message", [
    ('{ coupling = "isotropic", pressure = 0.0 }\nstyle = "fire"', "[minimize] box: cell relaxation needs style"),
    ('{ coupling = "iso", pressure = 0.0 }', "[minimize] box.coupling: must be one of"),
    ('{ coupling = "anisotropic", pressure = [0.0, 1.0, 2.0, 0.0, 0.0, 0.0] }',
     "[minimize] box.pressure: one hydrostatic target pressure"),
    ('{ coupling = "isotropic", pressure = 0.0, vmax = 0.0 }', "[minimize] box.vmax: must be > 0"),
])
def test_input_errors(tmp_path, box, message):
    from numdp.config import load_run_settings
    toml = setup_case(tmp_path, "iso")
    text = toml.read_text().replace('box = { coupling = "isotropic", pressure = 0.0 }', f"box = {box}")
    text = text.replace('style = "cg"\n', "").replace("maxeval = 100000\n", "") if "fire" in box else text
    toml.write_text(text)
    with pytest.raises(InputError) as err:
        load_run_settings(toml)
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


@pytest.mark.parametrize("line, expected", [
    ("fix 1 all box/relax iso 0.0", {"coupling": "isotropic", "pressure": 0.0}),
    ("fix 1 all box/relax aniso 10.0 vmax 0.001", {"coupling": "anisotropic", "pressure": lammps_bar(10.0),
                                                   "vmax": 0.001}),
    ("fix 1 all box/relax tri 0.0 nreset 100", {"coupling": "triclinic", "pressure": 0.0}),
])
def test_lmp_translates_box_relax(tmp_path, line, expected):
    from numdp.lammps.translate import translate
    head = "units metal\nread_data conf.data\npair_style deepmd model.dp\npair_coeff * *\nchange_box all triclinic\nmin_style cg\n"
    t = translate(head + line + "\nminimize 0 1e-10 5000 500000\n", "in.lammps", {}, tmp_path).tables["minimize"]
    assert t["box"] == expected and t["style"] == "cg"


@pytest.mark.parametrize("line, message", [
    ("fix 1 all box/relax x 0.0", "relaxing x only"),
    ("fix 1 all box/relax iso 0.0 couple xy", "couple xy"),
    ("min_style fire\nfix 1 all box/relax iso 0.0", "box/relax with min_style fire"),
    ("fix 2 all npt temp 300 300 0.1 iso 0 0 1\nfix 1 all box/relax iso 0.0", "both change the box"),
])
def test_lmp_refuses_the_rest(tmp_path, line, message):
    from numdp.lammps.translate import translate
    head = "units metal\nread_data conf.data\npair_style deepmd model.dp\npair_coeff * *\n"
    with pytest.raises(InputError) as err:
        translate(head + line + "\nminimize 0 1e-10 5000 500000\n", "in.lammps", {}, tmp_path)
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_two_mpi_ranks_equal_the_serial_run(tmp_path):
    """`mpiexec -n 2 numdp run` of 15 cg iterations relaxing a tilted cell (triclinic coupling,
    1000 bar; a random model, a jittered rocksalt crystal) gives the serial run's cell, positions
    and energy to round-off: the cell forces come from the virial summed over the ranks, so both
    ranks move the cell alike."""
    import math

    from mpi_helpers import minimize_serial_and_on_two_ranks
    from test_mpi import rocksalt

    minimize = 'steps = 15\nftol = 0.0\nstyle = "cg"\nbox = { coupling = "triclinic", pressure = 1000.0, vmax = 0.001 }'
    box = rocksalt((2, 2, 2))[2]   # the start cell (mpi_helpers)
    runs = minimize_serial_and_on_two_ranks(tmp_path, minimize, thermo_every=5)
    (a, _), (b, _) = runs[1], runs[2]
    assert a.step == b.step == 15
    assert np.abs(a.box - box).max() > 1e-6   # the cell moved
    assert np.abs(a.box - b.box).max() < 1e-9 and np.abs(a.positions - b.positions).max() < 1e-9
    assert math.isclose(a.potential_energy, b.potential_energy, rel_tol=1e-12)


def test_ctrl_c_during_a_line_search_restarts_bit_for_bit(tmp_path, monkeypatch):
    """Ctrl-C (SIGINT, numdp.signals) in the middle of a cg line search (`numdp run`, the sheared
    crystal relaxing its triclinic cell with vmax 0.01, where iteration 6's search makes two
    trials): the run finishes that iteration before it stops, so the checkpoint holds the state
    between iterations (positions, cell, the atoms' and the cell's search directions, the
    reference cell; none of the line search's start arrays), and `--restart` from it ends in the
    uninterrupted run's final checkpoint, bit for bit."""
    import os
    import signal

    import numdp
    import numdp.md.setup as setup
    from numdp.cli import main as cli_main
    from numdp.md.forces import ForceProvider
    from numdp.signals import EXIT_STATUS

    monkeypatch.setattr(numdp, "load_model", lambda *args, **kwargs: LennardJones(eps=1.0))
    monkeypatch.setattr(setup, "_with_inputs", lambda model, *args: model)
    for name in ("full", "part"):
        toml = setup_case(tmp_path / name, "tri")
        toml.write_text(toml.read_text().replace("steps = 5000", "steps = 30").replace(
            "pressure = 0.0 }", "pressure = 0.0, vmax = 0.01 }"))
    monkeypatch.chdir(tmp_path / "full")
    assert cli_main(["run", "min.toml"]) == 0
    call = ForceProvider.__call__
    calls = []   # (step, inside a line search) of each force evaluation
    signal_at = 7   # the evaluation at which the signal comes: the first trial of iteration 6's search

    def interrupting(self, state):
        call(self, state)
        calls.append((state.step, "start" in state.minimize))
        if len(calls) == signal_at:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(ForceProvider, "__call__", interrupting)
    monkeypatch.chdir(tmp_path / "part")
    assert cli_main(["run", "min.toml"]) == EXIT_STATUS
    # the signal came at a trial followed by another trial of the same search, and the run
    # finished that iteration before writing the checkpoint
    k = signal_at - 1
    assert calls[k][1] and len(calls) > signal_at and calls[signal_at][0] == calls[k][0], calls
    mid = read_checkpoint(tmp_path / "part" / "ck.h5")
    assert mid.step == calls[-1][0] + 1 == calls[k][0] + 1 < 30
    assert not {"start", "start_forces"} & set(mid.minimize) and np.abs(mid.minimize["box_direction"]).max() > 0
    monkeypatch.setattr(ForceProvider, "__call__", call)
    assert cli_main(["run", "min.toml", "--restart", "ck.h5"]) == 0
    a = to_arrays(read_checkpoint(tmp_path / "full" / "ck.h5"))
    c = to_arrays(read_checkpoint(tmp_path / "part" / "ck.h5"))
    assert a.keys() == c.keys() and int(a["step"]) == 30
    for key in a:
        floats = np.asarray(a[key]).dtype.kind == "f"
        assert np.array_equal(a[key], c[key], equal_nan=floats), key


def test_a_step_through_zero_volume_is_one_line(tmp_path):
    """vmax = 2 lets the first line search's trial shrink the strained crystal's cell by twice its
    size: the isotropic cell went to a negative scale and the next force evaluation failed with a
    bare ZeroDivisionError (numdp.md.forces.needs_rebuild); now it is LAMMPS' "Fix box/relax
    generated negative box length" as one line naming the key."""
    toml = setup_case(tmp_path, "iso")
    toml.write_text(toml.read_text().replace("pressure = 0.0 }", "pressure = 0.0, vmax = 2.0 }"))
    with pytest.raises(InputError, match=r"cell relaxation made a cell without volume .*\[minimize\] box.vmax") as err:
        run(toml, model=LennardJones(eps=1.0))
    assert "\n" not in str(err.value)


def test_cell_requirements_and_restart_mismatch_are_one_line(tmp_path):
    """Anisotropic coupling on a rotated (not lower-triangular) cell, and a checkpoint of a fixed-box
    cg run continued with [minimize] box, are refused with one line each."""
    from numdp.io.structure import write_extxyz

    case = np.load(DATA / "aniso.npz")
    q = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0]
    toml = setup_case(tmp_path / "rot", "aniso")
    write_extxyz(tmp_path / "rot" / "start.xyz", ["Ar"] * 32, np.asarray(case["x0"]) @ q, np.asarray(case["box0"]) @ q)
    toml.write_text(toml.read_text().replace('file = "start.data"\ntype_names = ["Ar"]', 'file = "start.xyz"'))
    with pytest.raises(InputError, match=r"box.coupling = 'anisotropic' needs a lower-triangular cell") as err:
        run(toml, model=LennardJones(eps=1.0))
    assert "\n" not in str(err.value)
    fixed = setup_case(tmp_path / "fixed", "iso")
    fixed.write_text(fixed.read_text().replace('box = { coupling = "isotropic", pressure = 0.0 }', "").replace(
        "steps = 5000", "steps = 3"))
    run(fixed, model=LennardJones(eps=1.0))
    relax = setup_case(tmp_path / "fixed", "iso")
    relax.write_text(relax.read_text().replace("steps = 5000", "steps = 6"))
    with pytest.raises(InputError, match=r"relaxes no cell; \[minimize\] box must say the same") as err:
        run(relax, restart=tmp_path / "fixed" / "ck.h5", model=LennardJones(eps=1.0))
    assert "\n" not in str(err.value)
