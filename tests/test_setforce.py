"""Force components fixed to zero in a minimization ([minimize] fixed_directions,
numdp.md.minimize.FixedForces; numdp lmp's `fix ID all setforce 0 0 NULL`, as DP-GEN's autotest
gamma property relaxes its slabs) against a real LAMMPS (22 Jul 2025 update 2).

LAMMPS' `fix 1 all setforce 0 0 NULL` with `min_style cg` and `min_style fire`, `minimize 0 1e-10
5000 100000`, from a jittered 32-atom fcc slab with 10 Å of vacuum along z and the shifted-force
Lennard-Jones of tests/test_md_potential.py (LAMMPS lj/smooth/linear 8.5, eps 1 eV, sigma 3.4 Å):
tests/data/setforce/CASE.npz (tools/make_setforce_fixtures.py).

- x and y: the forces there are zero after every evaluation, so the search directions (cg) and
  velocities (FIRE) are exactly zero there and x0 + alpha * 0 = x0: every atom's x and y stay
  bit for bit (LAMMPS' too: the fixture's final x, y are its start's).
- z: the minimum along z (x, y held) is isolated up to the slab's rigid translation along z, so
  as tests/test_minimize_cg.py: |z - z*| <= |F| / k_min (the z dofs less their mean), k_min the
  smallest non-zero eigenvalue of the z-z block of the Hessian (central differences), |F| both
  runs' final force norm plus the force round-off n_pairs u max|f_pair| (<= 10 eV/Å).
- the iterations: the algorithms are LAMMPS', so numdp repeats LAMMPS' whole run (the stopping
  criterion, iterations and, for cg, force evaluations) and every iteration's energy to the summation
  round-off of the two codes' pair sums, 2 n_pairs u eps, while round-off does not flip a line
  search's decision: these short, well-conditioned runs agree to the end.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from numdp.config import load_run_settings
from numdp.errors import InputError
from numdp.io.h5md import read_checkpoint
from numdp.lammps.translate import translate as translate_lammps
from numdp.md.linesearch import LineSearchMinimizer
from numdp.md.minimize import FireMinimizer
from numdp.md.setup import run_md
from test_md_potential import LennardJones

DATA = Path(__file__).parent / "data" / "setforce"
UNIT = np.finfo(float).eps / 2
LJ_EPS = 1.0

INPUT = """
[model]
file = "unused.h5"
[system]
file = "start.data"
type_names = ["Ar"]
[minimize]
style = "{style}"
steps = 5000
ftol = 1e-10
etol = 0.0
{extra}
fixed_directions = ["x", "y"]
[neighbor]
skin = 1.0
[output]
thermo_every = 1
checkpoint = "ck.h5"
checkpoint_every = {every}
progress = "none"
"""


def write_start(path: Path, x: np.ndarray, box: np.ndarray) -> None:
    lines = ["setforce slab", "", f"{len(x)} atoms", "1 atom types", "", f"0.0 {float(box[0, 0])!r} xlo xhi",
             f"0.0 {float(box[1, 1])!r} ylo yhi", f"0.0 {float(box[2, 2])!r} zlo zhi", "", "Masses", "",
             "1 39.948", "", "Atoms # atomic", ""]
    lines += [f"{i + 1} 1 {float(p[0])!r} {float(p[1])!r} {float(p[2])!r}" for i, p in enumerate(x)]
    path.write_text("\n".join(lines) + "\n")


def setup_case(path: Path, name: str, every: int = 100000, steps: int | None = None) -> Path:
    case = np.load(DATA / f"{name}.npz")
    path.mkdir(parents=True, exist_ok=True)
    write_start(path / "start.data", case["x0"], case["box"])
    text = INPUT.format(style=name, extra="maxeval = 100000" if name == "cg" else "", every=every)
    if steps is not None:
        text = text.replace("steps = 5000", f"steps = {steps}")
    (path / "min.toml").write_text(text)
    return path / "min.toml"


def run(toml: Path, restart=None):
    return run_md(load_run_settings(toml), restart=restart, model=LennardJones(eps=LJ_EPS), screen=io.StringIO())


def energies_of(monkeypatch, toml: Path) -> list[float]:
    """Run `toml`; the potential energy at the start and after each iteration, eV (full precision)."""
    energies = []
    for cls in (LineSearchMinimizer, FireMinimizer):
        def recording(self, state, forces, _step=cls.step):
            if not energies:
                energies.append(state.potential_energy)
            _step(self, state, forces)
            energies.append(state.potential_energy)
        monkeypatch.setattr(cls, "step", recording)
    run(toml)
    return energies


def z_curvature_and_pairs(x: np.ndarray, box: np.ndarray) -> tuple[float, float]:
    """(k_min eV/Å²: the smallest eigenvalue of the z-z Hessian at `x` apart from the rigid
    translation along z (central differences, step 1e-4 Å), the number of pairs within the cutoff)."""
    lj = LennardJones(eps=LJ_EPS)
    d, n = 1e-4, len(x)
    h = np.zeros((n, n))
    for i in range(n):
        cols = []
        for s in (d, -d):
            y = x.copy()
            y[i, 2] += s
            cols.append(lj.energy_forces_virial(y, box)[1][:, 2])
        h[i] = -(cols[0] - cols[1]) / (2 * d)
    w = np.linalg.eigvalsh(0.5 * (h + h.T))
    assert abs(w[0]) < 1e-6 * w[-1] and w[1] > 1e-3 * w[-1]   # one zero mode: the translation along z
    r = x[:, None] - x[None]
    r -= np.diag(box) * np.round(r / np.diag(box))
    pairs = 0.5 * (np.count_nonzero(np.linalg.norm(r, axis=-1) < lj.rcut) - n) * 9   # x, y images: < 9 each
    return float(w[1]), pairs


@pytest.mark.parametrize("name", ["cg", "fire"])
def test_slab_relaxes_along_z_as_lammps(tmp_path, monkeypatch, name):
    case = np.load(DATA / f"{name}.npz")
    x0, box = np.asarray(case["x0"]), np.asarray(case["box"])
    energies = energies_of(monkeypatch, setup_case(tmp_path, name))
    log = (tmp_path / "log.txt").read_text()
    assert f"Stopping criterion = {case['stop']}" in log, log[-900:]
    # (FIRE: LAMMPS' count of force evaluations is one more than numdp's with or without setforce
    # (a difference of numdp's FIRE, not of the fixed directions): the iterations are compared)
    counts = f"{int(case['iterations'])} {int(case['evaluations'])}" if name == "cg" else f"{int(case['iterations'])} "
    assert f"Iterations, force evaluations = {counts}" in log, log[-900:]
    b = read_checkpoint(tmp_path / "ck.h5")
    # x and y bit for bit, as LAMMPS'
    assert np.array_equal(b.positions[:, :2], x0[:, :2]) and np.array_equal(case["x"][:, :2], x0[:, :2])
    assert np.abs(b.positions[:, 2] - x0[:, 2]).max() > 0.1   # z relaxed
    k_min, pairs = z_curvature_and_pairs(np.asarray(case["x"]), box)
    lj = LennardJones(eps=LJ_EPS)
    _, f, _ = lj.energy_forces_virial(b.positions, box)
    df = pairs * UNIT * 10.0
    fa, fb = float(case["fnorm"][-1]) + df, float(np.linalg.norm(f[:, 2])) + df
    dz = b.positions[:, 2] - case["x"][:, 2]
    dz -= dz.mean()
    assert np.linalg.norm(dz) <= (fa + fb) / k_min, (np.linalg.norm(dz), (fa + fb) / k_min)
    assert case["steps"].tolist() == list(range(len(energies)))
    bound = 2 * pairs * UNIT * LJ_EPS
    assert np.abs(np.array(energies) - case["pe"]).max() <= bound, np.abs(np.array(energies) - case["pe"]).max()


def test_restart_keeps_the_fixed_directions(tmp_path):
    """A checkpoint in the middle of the cg run continues to the uninterrupted run's end bit for
    bit with the same fixed_directions; another set of directions is one line."""
    full = setup_case(tmp_path / "full", "cg")
    run(full)
    part = setup_case(tmp_path / "part", "cg", every=10, steps=10)
    run(part)
    (tmp_path / "part" / "min.toml").write_text(full.read_text())
    run(tmp_path / "part" / "min.toml", restart=tmp_path / "part" / "ck.h5")
    a, b = read_checkpoint(tmp_path / "full" / "ck.h5"), read_checkpoint(tmp_path / "part" / "ck.h5")
    assert a.step == b.step and np.array_equal(a.positions, b.positions)
    other = setup_case(tmp_path / "other", "cg")
    other.write_text(other.read_text().replace('fixed_directions = ["x", "y"]', 'fixed_directions = ["x"]'))
    with pytest.raises(InputError) as err:
        run(other, restart=tmp_path / "part" / "ck.h5")
    assert "fixes the forces along x, y, [minimize] fixed_directions along x" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("value, message", [
    ('["x", "w"]', "[minimize] fixed_directions: expected a list of distinct axes from ['x', 'y', 'z'], got ['x', 'w']"),
    ('["x", "x"]', "[minimize] fixed_directions: expected a list of distinct axes"),
    ('3', "[minimize] fixed_directions: expected a non-empty list of strings"),
    ('["z"]\nstyle = "cg"\nbox = { pressure = 0.0 }', "[minimize] fixed_directions: not with box"),
])
def test_input_errors_are_one_line(tmp_path, value, message):
    toml = setup_case(tmp_path, "fire")
    toml.write_text(toml.read_text().replace('fixed_directions = ["x", "y"]', f"fixed_directions = {value}")
                    .replace('style = "fire"\n', "" if "style" in value else 'style = "fire"\n'))
    with pytest.raises(InputError) as err:
        load_run_settings(toml)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_md_input_has_no_fixed_directions(tmp_path):
    toml = tmp_path / "md.toml"
    toml.write_text('[model]\nfile = "m.h5"\n[system]\nfile = "s.xyz"\n[md]\ntimestep = 0.001\nsteps = 1\n'
                    'fixed_directions = ["x"]\n')
    with pytest.raises(InputError, match=r"\[md\].*fixed_directions"):
        load_run_settings(toml)


# -- numdp lmp --------------------------------------------------------------------------------------

SCRIPT = "units metal\nread_data conf.data\npair_style deepmd model.dp\npair_coeff * *\n"


def translate(tmp_path: Path, lines: str) -> dict:
    return translate_lammps(SCRIPT + lines + "\n", "in.lammps", {}, tmp_path).tables


@pytest.mark.parametrize("args, fixed", [("0 0 NULL", ["x", "y"]), ("NULL NULL 0.0", ["z"]),
                                         ("0 0 0", ["x", "y", "z"]), ("NULL 0 NULL", ["y"])])
def test_lmp_translates_setforce(tmp_path, args, fixed):
    for style in ("cg", "fire"):
        t = translate(tmp_path, f"min_style {style}\nfix 1 all setforce {args}\nminimize 0 1e-10 100 1000")
        assert t["minimize"]["fixed_directions"] == fixed and t["minimize"]["style"] == style


def test_lmp_unfix_setforce(tmp_path):
    t = translate(tmp_path, "fix 1 all setforce 0 0 NULL\nunfix 1\nminimize 0 1e-10 100 1000")
    assert "fixed_directions" not in t["minimize"]


@pytest.mark.parametrize("lines, message", [
    ("fix 1 all setforce 0 0.5 NULL\nminimize 0 1e-10 100 1000", "setforce 0 0.5 NULL: numdp sets force components"),
    ("fix 1 all setforce 0 v_f NULL\nminimize 0 1e-10 100 1000", "setforce 0 v_f NULL: numdp sets force components"),
    ("fix 1 all setforce 0 0 NULL region r\nminimize 0 1e-10 100 1000", "setforce keyword region"),
    ("fix 1 all setforce 0 0\nminimize 0 1e-10 100 1000", "expected: fix ID all setforce"),
    ("fix 1 all setforce NULL NULL NULL\nfix 2 all setforce 0 0 NULL\nminimize 0 1e-10 100 1000",
     "a second fix setforce"),
    ("fix 1 all setforce 0 0 NULL\nfix 2 all nve\nrun 10", "fix setforce in a run (MD)"),
])
def test_lmp_refuses_the_rest(tmp_path, lines, message):
    with pytest.raises(InputError) as err:
        translate(tmp_path, lines)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_two_mpi_ranks_equal_the_serial_run(tmp_path):
    """`mpiexec -n 2 numdp run` of 15 cg iterations with fixed_directions = ["x", "y"] (a random
    model, a jittered rocksalt crystal in a tilted cell: tests/mpi_helpers.py) gives the serial
    run's positions and energy to round-off, each rank zeroing its own atoms' forces: on both, x and
    y are the start's bit for bit and z moved."""
    import math

    from mpi_helpers import minimize_serial_and_on_two_ranks

    runs = minimize_serial_and_on_two_ranks(tmp_path, 'steps = 15\nftol = 0.0\nstyle = "cg"\n'
                                                      'fixed_directions = ["x", "y"]', thermo_every=5)
    (a, _), (b, _) = runs[1], runs[2]
    start = read_extxyz_positions(tmp_path / "r1" / "start.xyz")
    order_a, order_b = np.argsort(a.ids), np.argsort(b.ids)
    for s in (a, b):
        order = np.argsort(s.ids)
        assert np.array_equal(s.positions[order, :2], start[:, :2])
    assert np.abs(a.positions[order_a, 2] - start[:, 2]).max() > 1e-3
    assert np.abs(a.positions[order_a] - b.positions[order_b]).max() < 1e-9
    assert math.isclose(a.potential_energy, b.potential_energy, rel_tol=1e-12)


def read_extxyz_positions(path: Path) -> np.ndarray:
    """The positions (N, 3) Å of a one-frame extxyz file, as numdp reads them."""
    from numdp.io.structure import read_structure
    return np.asarray(read_structure(path).positions, dtype=np.float64)
