"""Energy minimization by conjugate gradient and steepest descent ([minimize] style = "cg" / "sd",
numdp.md.linesearch) against a real LAMMPS (22 Jul 2025 update 2 with DeePMD-kit 3.2's
`pair_style deepmd`): `numdp lmp` on a script with LAMMPS' default minimizer (no min_style: cg,
line quadratic), `min_modify line backtrack`, `min_style sd`, and a run stopped by maxeval, from
192 atoms of liquid water (tests/data/lammps_nh/water.data) with the repository's tiny water model.
LAMMPS' thermo lines (thermo 1) and stopping criteria are tests/data/minimize_cg/CASE.npz, made by
tools/make_minimize_cg_fixtures.py; no test needs LAMMPS.

The algorithm is deterministic, so numdp repeats LAMMPS' iterations while the two force fields
agree: they differ by round-off only (|δF| <= 1e-11 eV/Å, |δE| ~ 1e-10 eV: test_sweep_lammps_nh),
and numdp lmp prints pe to 1e-6 eV: each iteration's pe agrees to the printed rounding, 0.5e-6
eV, plus the difference of the two runs' energies (`pe_tolerance`).  An evaluation's energy E is
the sum of N = 192 atomic energies of one sign (sum |e_i| = |E| ~ 3.0e4 eV), each the fitting
net's output layer (8 products and the bias): its round-off in either code is at most
(N - 1 + 9) u |E| = OPS_PER_EVALUATION u |E| (u the unit round-off; ~7e-10 eV).  A line search
carries each evaluation's round-off into the positions it accepts and so into every later
energy: over the `evaluations` force evaluations of the compared iterations (numdp's count) the
runs' energies differ by at most evaluations x OPS_PER_EVALUATION x u |E| to first order (9e-8
eV for cg's first 30 iterations, 137 evaluations; 1.6e-7 eV for sd's whole run, 244), which
holds while the runs agree, the iterations compared.  A wrong constant or branch moves an
iteration's energy by far more (the runs' first disagreements are 2e-4 eV).  This start is far from a minimum and the model is rough there (the
force norm jumps from 2 to 673 eV/Å between iterations), so LAMMPS' own runs are chaotic: a
line search's accept/halve decisions compare energies that differ by ~1e-8 eV (EMACH), and
round-off that flips one of them sends the runs apart.  With this model the cg run agrees for
the first 36 iterations (the 37th differs by 2e-4 eV), backtrack for 25, sd for 32 (from the 33rd
its energies differ by 1e-6 to 5e-4 eV, yet its run ends as LAMMPS' after 48 iterations and 244
force evaluations on "linesearch alpha is zero"), the run
that maxeval stops for all 17 (17 iterations, 28 evaluations: LAMMPS checks maxeval = 25 after
each line search).  The tests compare the first AGREE[case] iterations, and the stopping
criterion and counts where the whole run agrees.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from numdp.cli import main as cli_main

DATA = Path(__file__).parent / "data" / "minimize_cg"
WATER = Path(__file__).parent / "data" / "lammps_nh" / "water.data"
MODEL = Path(__file__).parent / "data" / "tensorflow" / "tf_one_side_f64.dp"
UNIT = np.finfo(float).eps / 2   # unit round-off
N_WATER = 192                    # atoms of water.data
OPS_PER_EVALUATION = N_WATER - 1 + 9   # additions of the atomic energies; each one's output layer
HALF_PRINTED = 0.5e-6            # eV: numdp lmp prints pe to 6 decimals
# case: (iterations whose energies are compared, whole run: stopping criterion and counts compared)
AGREE = {"cg_quadratic": (30, False), "cg_backtrack": (20, False), "sd_quadratic": (30, True),
         "cg_maxeval": (17, True)}

SCRIPT = """units metal
boundary p p p
atom_style atomic
read_data water.data
pair_style deepmd {model}
pair_coeff * *
neighbor 1.0 bin
thermo 1
{lines}
minimize 0 {ftol!r} {maxiter} {maxeval}
"""


def run_lmp(tmp_path: Path, monkeypatch, capsys, case, maxiter: int) -> str:
    (tmp_path / "water.data").write_text(WATER.read_text())
    (tmp_path / "in.lammps").write_text(SCRIPT.format(model=MODEL, lines=str(case["lines"]), ftol=float(case["ftol"]),
                                                      maxiter=maxiter, maxeval=int(case["maxeval"])))
    monkeypatch.chdir(tmp_path)
    assert cli_main(["lmp", "-i", "in.lammps"]) == 0
    return capsys.readouterr().out


def pe_tolerance(pe: np.ndarray, out: str) -> float:
    """eV: how far numdp lmp's printed pe may be from LAMMPS' `pe` (M,) eV over a run whose
    output `out` counts its force evaluations (module docstring)."""
    evaluations = int(out.split("Iterations, force evaluations =")[1].split()[1])
    return HALF_PRINTED + evaluations * OPS_PER_EVALUATION * UNIT * float(np.abs(pe).max())


def thermo(out: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, pe eV) of the thermo block (LAMMPS' column titles Step PotEng ...)."""
    rows = []
    for line in out.splitlines():
        words = line.split()
        if len(words) == 4:
            try:
                rows.append([float(w) for w in words])
            except ValueError:
                pass
    rows = np.array(rows)
    return rows[:, 0].astype(int), rows[:, 1]


@pytest.mark.parametrize("name", sorted(AGREE))
def test_lammps_iterations(tmp_path, monkeypatch, capsys, name):
    """numdp lmp's minimize (cg by default, line quadratic or backtrack, sd, maxeval) repeats LAMMPS'
    iterations: the energy after every one of the first AGREE iterations, and where the whole run
    agrees, LAMMPS' stopping criterion, iterations and force evaluations."""
    case = np.load(DATA / f"{name}.npz")
    iterations, whole = AGREE[name]
    out = run_lmp(tmp_path, monkeypatch, capsys, case, int(case["maxiter"]) if whole else iterations)
    assert "minimize " + ("sd" if "sd" in str(case["lines"]) else "cg") in out
    steps, pe = thermo(out)
    n = min(iterations, len(case["pe"]) - 1) + 1
    assert steps[:n].tolist() == case["steps"][:n].tolist()
    assert np.abs(pe[:n] - case["pe"][:n]).max() <= pe_tolerance(case["pe"][:n], out), np.abs(pe[:n] - case["pe"][:n])
    if whole:
        assert len(pe) == len(case["pe"])
        assert f"Stopping criterion = {case['stop']}" in out
        assert f"Iterations, force evaluations = {int(case['iterations'])} {int(case['evaluations'])}" in out


def test_fixtures_cover_the_styles():
    """The fixtures exist and hold LAMMPS' default (no min_style), backtrack, sd and a maxeval stop."""
    lines = {n: str(np.load(DATA / f"{n}.npz")["lines"]) for n in AGREE}
    assert lines["cg_quadratic"] == "" and "backtrack" in lines["cg_backtrack"] and "sd" in lines["sd_quadratic"]
    assert str(np.load(DATA / "cg_maxeval.npz")["stop"]) == "max force evaluations"


# -- numdp run's [minimize] style = "cg" / "sd" (Lennard-Jones argon, tests/test_minimize.py's inputs) ---------


def _lj():
    from test_minimize import LennardJones, crystal, run
    return LennardJones, crystal, run


def test_translation_of_a_plain_minimize(tmp_path):
    """LAMMPS' default minimizer (no min_style) is cg with line quadratic; before numdp had cg,
    numdp lmp refused the script ("numdp minimizes with FIRE only")."""
    from numdp.lammps.translate import translate

    head = "units metal\nread_data conf.data\npair_style deepmd model.dp\npair_coeff * *\n"
    t = translate(head + "minimize 1.0e-4 1.0e-6 100 1000\n", "in.lammps", {}, tmp_path).tables["minimize"]
    assert t == {"style": "cg", "steps": 100, "etol": 1e-4, "ftol": 1e-6, "maxeval": 1000}
    t = translate(head + "min_style sd\nmin_modify line backtrack dmax 0.2 tmax 4\nminimize 0 1e-6 10 20\n",
                  "in.lammps", {}, tmp_path)
    assert t.tables["minimize"]["style"] == "sd" and t.tables["minimize"]["line"] == "backtrack"
    assert t.tables["minimize"]["dmax"] == 0.2 and "tmax" not in t.tables["minimize"]


@pytest.mark.parametrize("old, new, expected", [
    ("steps = 400", 'steps = 400\nstyle = "bfgs"', "[minimize] style: 'bfgs' is not available"),
    ("steps = 400", 'steps = 400\nstyle = "cg"\ntmax = 2.0', "[minimize] tmax: not used by style = 'cg'"),
    ("steps = 400", 'steps = 400\nline = "backtrack"', "[minimize] line: not used by style = 'fire'"),
    ("steps = 400", 'steps = 400\nstyle = "sd"\nline = "forcezero"', "[minimize] line: must be one of"),
    ("steps = 400", 'steps = 400\nstyle = "cg"\nmaxeval = -1', "[minimize] maxeval: must be >= 0"),
])
def test_input_errors_are_one_line(tmp_path, old, new, expected):
    from numdp.config import load_run_settings
    from numdp.errors import InputError

    _, crystal, _ = _lj()
    with pytest.raises(InputError) as err:
        load_run_settings(crystal(tmp_path, **{old: new}))
    assert expected in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("style", ["cg", "sd"])
def test_reaches_fires_minimum(tmp_path, style):
    """From a jittered fcc argon crystal (32 atoms, periodic), cg and sd stop on ftol = 1e-6 eV/Å
    at FIRE's minimum: positions within |F| / k_min, with k_min >= 0.05 eV/Å² the crystal's
    smallest non-zero curvature, so 2e-6 / 0.05 = 4e-5 Å for two runs each within ftol."""
    from numdp.io.h5md import read_checkpoint

    LennardJones, crystal, run = _lj()
    runs = {}
    for s in ("fire", style):
        text = {"ftol = 1e-4": "ftol = 1e-6" + (f'\nstyle = "{s}"' if s != "fire" else "")}
        run(crystal(tmp_path / s, **text))
        log = (tmp_path / s / "log.txt").read_text()
        assert "Stopping criterion = force tolerance ([minimize] ftol)" in log, log[-800:]
        runs[s] = read_checkpoint(tmp_path / s / "ck.h5")
    a, b = runs["fire"], runs[style]
    assert not b.velocities.any()
    e, f, _ = LennardJones().energy_forces_virial(b.positions, b.box)
    assert np.linalg.norm(f) < 1e-6 * (1 + 1e-9) and abs(e - a.potential_energy) < 1e-9
    d = b.positions - a.positions
    d -= d.mean(axis=0)   # (a common translation is no difference)
    assert np.abs(d).max() < 1e-4


def test_restart_continues_cg_bit_for_bit(tmp_path, monkeypatch):
    """A checkpoint written during a cg run holds the search direction and the scalars
    (State.minimize; the velocities stay zero): --restart from it ends in the uninterrupted run's final checkpoint
    bit for bit; FIRE refuses it in one line."""
    import shutil

    from numdp.errors import InputError
    from numdp.io.h5md import read_checkpoint
    from numdp.md.reporters import CheckpointReporter
    from numdp.system import to_arrays

    _, crystal, run = _lj()
    repl = {"steps = 400\nftol = 1e-4": 'steps = 30\nftol = 0.0\nstyle = "cg"',
            'checkpoint = "ck.h5"': 'checkpoint = "ck.h5"\ncheckpoint_every = 12'}
    full, part = crystal(tmp_path / "full", **repl), crystal(tmp_path / "part", **repl)
    write = CheckpointReporter.write

    def keep_step_12(self, s, path):
        write(self, s, path)
        if s.step == 12:
            shutil.copy(path, Path(path).with_name("ck12.h5"))

    monkeypatch.setattr(CheckpointReporter, "write", keep_step_12)
    run(full)
    mid = read_checkpoint(tmp_path / "full" / "ck12.h5")
    assert mid.step == 12 and mid.minimize["direction"].any() and not mid.velocities.any() and "gg" in mid.minimize
    assert "start" not in mid.minimize and "start_forces" not in mid.minimize   # an iteration's own
    shutil.copy(tmp_path / "full" / "ck12.h5", tmp_path / "part" / "ck.h5")
    run(part, restart=tmp_path / "part" / "ck.h5")
    a = to_arrays(read_checkpoint(tmp_path / "full" / "ck.h5"))
    b = to_arrays(read_checkpoint(tmp_path / "part" / "ck.h5"))
    assert int(a["step"]) == 30 and a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    fire = crystal(tmp_path / "fire", **{"steps = 400": "steps = 40"})
    with pytest.raises(InputError, match=r"ck12.h5: the checkpoint holds another minimizer's state"):
        run(fire, restart=tmp_path / "full" / "ck12.h5")


# -- the same minimum as LAMMPS: a jittered crystal near its minimum (tests/data/minimize_cg/lj_*.npz) ----------

# case: [minimize] lines of LAMMPS' style lines (tools/make_minimize_cg_fixtures.py, LJ_CASES)
LJ_CASES = {"lj_cg_quadratic": 'style = "cg"', "lj_cg_backtrack": 'style = "cg"\nline = "backtrack"',
            "lj_sd_quadratic": 'style = "sd"'}
LJ_EPS = 1.0   # eV: the fixtures' pair_coeff (LAMMPS lj/smooth/linear = test_md_potential.LennardJones)


@pytest.fixture(scope="module")
def lj_curvature():
    """(k_min eV/Å², number of pairs within the cutoff) at LAMMPS' cg minimum: the smallest
    eigenvalue of the Hessian (central differences of the forces, step 1e-4 Å: error ~ d² F''' ~
    1e-7 k) apart from the 3 zero modes of a rigid translation."""
    LennardJones, _, _ = _lj()
    lj = LennardJones(eps=LJ_EPS)
    x = np.load(DATA / "lj_cg_quadratic.npz")["x"]
    box, d = np.eye(3) * 10.6, 1e-4
    h = np.zeros((x.size, x.size))
    for i in range(x.size):
        cols = []
        for s in (d, -d):
            y = x.ravel().copy()
            y[i] += s
            cols.append(lj.energy_forces_virial(y.reshape(-1, 3), box)[1].ravel())
        h[i] = -(cols[0] - cols[1]) / (2 * d)
    w = np.linalg.eigvalsh(0.5 * (h + h.T))
    assert np.abs(w[:3]).max() < 1e-6 * w[-1]   # the translations
    r = np.linalg.norm((x[:, None] - x[None]) - 10.6 * np.round((x[:, None] - x[None]) / 10.6), axis=-1)
    pairs = 0.5 * (np.count_nonzero(r < lj.rcut) - len(x)) * 27   # images within 8.5 Å of a 10.6 Å box: < 27 each
    return float(w[3]), pairs


@pytest.mark.parametrize("name", sorted(LJ_CASES))
def test_same_minimum_as_lammps(tmp_path, lj_curvature, name):
    """From a jittered fcc crystal (32 atoms, near its minimum, the perfect lattice) numdp's cg
    (line quadratic, LAMMPS' default), cg with line backtrack and sd follow LAMMPS' whole run with
    the same shifted-force Lennard-Jones (LAMMPS lj/smooth/linear): the same stopping criterion,
    iterations and force evaluations, every iteration's pe, and the same minimum.

    Bounds: near a minimum E(x) - E* <= |F(x)|² / (2 k_min) and |x - x*| <= |F(x)| / k_min (2-norm,
    the 3N vector less a rigid translation: the crystal's zero modes), k_min the Hessian's smallest
    non-zero eigenvalue (lj_curvature); both runs' |F| (LAMMPS' last fnorm; numdp's) plus the force
    round-off of either code, dF <= n_pairs u max|f_pair| (max|f_pair| <= 24 eps / r_min <= 10 eV/Å
    here), and the energies' summation round-off n_pairs² u eps each (|e_pair| <= eps).  The
    thermo pe (numdp prints 7 significant digits) agrees to half a unit of the printed digit."""
    from numdp.io.h5md import read_checkpoint

    LennardJones, crystal, run = _lj()
    case = np.load(DATA / f"{name}.npz")
    k_min, pairs = lj_curvature
    toml = crystal(tmp_path, **{"steps = 400\nftol = 1e-4": "steps = 1000\nftol = 1e-10\netol = 0.0\n"
                                f"maxeval = 100000\n{LJ_CASES[name]}", "thermo_every = 10": "thermo_every = 1"})
    lj = LennardJones(eps=LJ_EPS)
    run(toml, model=lj)
    log = (tmp_path / "log.txt").read_text()
    assert f"Stopping criterion = {case['stop']}" in log, log[-900:]
    assert f"Iterations, force evaluations = {int(case['iterations'])} {int(case['evaluations'])}" in log
    rows = np.array(thermo_rows_numdp(log))
    assert rows[:, 0].astype(int).tolist() == case["steps"].tolist()
    half_digit = 0.5 * 10.0 ** (np.floor(np.log10(np.abs(case["pe"]))) - 6)
    assert np.all(np.abs(rows[:, 1] - case["pe"]) <= half_digit * (1 + 1e-9)), np.abs(rows[:, 1] - case["pe"]).max()
    b = read_checkpoint(tmp_path / "ck.h5")
    e, f, _ = lj.energy_forces_virial(b.positions, b.box)
    df = pairs * UNIT * 10.0
    fa, fb = float(case["fnorm"][-1]) + df, float(np.linalg.norm(f)) + df
    d = b.positions - case["x"]
    d -= 10.6 * np.round(d / 10.6)
    d -= d.mean(axis=0)
    assert np.linalg.norm(d) <= (fa + fb) / k_min, (np.linalg.norm(d), (fa + fb) / k_min)
    de = abs(e - float(case["pe"][-1]))
    assert de <= (fa ** 2 + fb ** 2) / (2 * k_min) + 2 * pairs ** 2 * UNIT * LJ_EPS, de


def thermo_rows_numdp(log: str):
    from test_minimize import thermo_rows
    return thermo_rows(log)


# -- numdp lmp's min_style / min_modify / minimize as LAMMPS (checked with LAMMPS 22 Jul 2025 update 2) -------

HEAD = "units metal\nread_data conf.data\npair_style deepmd model.dp\npair_coeff * *\n"


def _table(tmp_path, lines: str) -> dict:
    from numdp.lammps.translate import translate
    return translate(HEAD + lines, "in.lammps", {}, tmp_path).tables["minimize"]


@pytest.mark.parametrize("lines", ["min_modify line backtrack dmax 0.2\nmin_style cg\n",
                                   "min_style cg\nmin_modify line backtrack dmax 0.2\nmin_style cg\n",
                                   "min_modify dmax 0.2 tmax 4\nmin_style fire\n"])
def test_min_style_resets_min_modify(tmp_path, lines):
    """LAMMPS' min_style makes a new minimizer with every min_modify setting at its default (also
    for the same style): LAMMPS with `min_modify line backtrack` before `min_style cg` runs line
    quadratic (26 iterations, 50 evaluations on lj_cg_quadratic's crystal, as without it; after
    min_style: 15, 69).  numdp lmp kept them."""
    t = _table(tmp_path, lines + "minimize 0 1e-6 10 100\n")
    assert not {"line", "dmax", "tmax"} & t.keys(), t


def test_fire_runs_with_maxeval_below_maxiter(tmp_path):
    """LAMMPS' FIRE does not check maxeval: `min_style fire` / `minimize 0 1e-10 100 20` stops
    on "max iterations" after 100 iterations and 104 evaluations.  numdp lmp refused the script;
    it runs it with a note (the [minimize] table has no maxeval: FIRE has none)."""
    t = _table(tmp_path, "min_style fire\nminimize 0 1e-10 100 20\n")
    assert t["style"] == "fire" and t["steps"] == 100 and "maxeval" not in t


def test_quadratic_search_from_an_energy_of_exactly_zero():
    """LAMMPS' quadratic search divides by the previous trial's energy (an inf or nan there skips
    the secant step); numdp's raised ZeroDivisionError when the iteration starts at E = 0 exactly.
    A harmonic well E = k/2 (|x - x*|² - |x0 - x*|²) is 0 at x0: the search must step downhill."""
    from numdp.config import MinimizeSettings
    from numdp.md.linesearch import LineSearchMinimizer
    from numdp.system import State

    k, target = 2.0, np.array([[0.5, 0.0, 0.0], [0.0, 0.3, 0.0]])   # alpha_max = dmax / max|h| = 0.1
    x0 = np.zeros((2, 3))
    d0 = float(np.sum((x0 - target) ** 2))

    def forces(state):
        d = state.positions - target
        state.potential_energy = 0.5 * k * (float(np.sum(d * d)) - d0)
        state.forces = -k * d

    state = State(positions=x0.copy(), velocities=np.zeros((2, 3)), types=np.zeros(2, np.int32),
                  masses=np.ones(2), box=None, type_map=["A"], ids=np.arange(2))
    minimizer = LineSearchMinimizer(MinimizeSettings(steps=5, style="cg", ftol=0.0))
    minimizer.initialize(state)
    forces(state)
    assert state.potential_energy == 0.0
    minimizer.step(state, forces)
    assert state.potential_energy < 0.0 and minimizer.finished is None
