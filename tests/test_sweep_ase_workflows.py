"""ASE workflows of DeePMD-kit users run on numdp.ase.DPCalculator / numdp.calculator.DP:
cell relaxations with every filter and optimiser, constraints, slabs and clusters; NVE, Langevin
and Berendsen NPT; the result cache; per-atom properties and type maps; NEB.

DeePMD-kit's ASE calculator's answers are in tests/data/ase_workflows/dp_calculator.npz
(tools/make_ase_workflows_fixtures.py).  Values and finite differences are tests/test_ase.py's.
"""
import warnings
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError
from ase.constraints import FixAtoms, FixedLine
from ase.filters import ExpCellFilter, FrechetCellFilter, UnitCellFilter
from ase.md.langevin import Langevin
from ase.md.nptberendsen import NPTBerendsen
from ase.md.velocitydistribution import Stationary
from ase.md.verlet import VelocityVerlet
from ase.mep import NEB
from ase.optimize import BFGS, FIRE, LBFGS
from ase.stress import voigt_6_to_full_3x3_stress
from scipy.optimize import minimize_scalar
from scipy.sparse.linalg import LinearOperator, eigsh

import numdp
from numdp.ase import DPCalculator
from numdp.calculator import DP
from numdp.errors import InputError
from numdp.model.dp_model import DPModel
from randmodel import random_config, random_params

try:   # ASE >= 3.29, where MaxwellBoltzmannDistribution (the same numbers) is deprecated
    from ase.md.velocitydistribution import thermalize_momenta
except ImportError:   # ASE 3.23-3.28
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    def thermalize_momenta(atoms, temperature_K, *, rng=None):
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)

ROOT = Path(__file__).resolve().parents[1]
CU = ROOT / "inputs" / "cu" / "model.h5"
FPARAM_MODEL = ROOT / "tests" / "data" / "fparam" / "fparam.dp"
ORACLE = np.load(ROOT / "tests" / "data" / "ase_workflows" / "dp_calculator.npz")


@pytest.fixture(scope="module")
def cu_model():
    return numdp.load_model(CU, nthreads=1)


@pytest.fixture(scope="module")
def cu_eos(cu_model):
    """The model's fcc lattice: (a0 Å, bulk modulus B eV/Å^3, E(a) per atom eV), from E(a) of the
    perfect 4-atom cubic cell (every atom a centre of symmetry: no internal relaxation)."""
    def e_atom(a):
        atoms = bulk("Cu", "fcc", a=a, cubic=True)
        return cu_model.evaluate(atoms.positions, np.zeros(4, int), atoms.cell.array,
                                 atom_virial=False).energy / 4

    res = minimize_scalar(e_atom, bracket=(3.4, 3.6, 3.8), tol=1e-10)
    h = 1e-3
    curv = (e_atom(res.x + h) - 2 * res.fun + e_atom(res.x - h)) / h**2
    return res.x, curv / (9 * res.x / 4), e_atom   # B = V d2E/dV2, V/N = a^3 / 4


def _strained_cu(a, reps=1, seed=0):
    atoms = bulk("Cu", "fcc", a=a, cubic=True) * (reps, reps, reps)
    atoms.set_cell(atoms.cell.array @ np.array([[1.03, 0.01, 0.0], [0.0, 0.98, 0.0],
                                                [0.02, 0.0, 1.01]]), scale_atoms=True)
    atoms.rattle(0.01, seed=seed)
    return atoms


def _lattice_tolerance(atoms, fmax, a0, bulk_modulus):
    """At convergence of a cell filter (cell "forces" virial / N, cell_factor N) every stress
    component is below fmax N / V: the hydrostatic residual strains a by at most that / (3 B).
    Twice it, plus the E(a) minimiser's 1e-8 Å."""
    return 2 * a0 * fmax * len(atoms) / atoms.get_volume() / (3 * bulk_modulus) + 1e-8


@pytest.mark.parametrize("cell_filter", [FrechetCellFilter, ExpCellFilter, UnitCellFilter])
@pytest.mark.parametrize("optimizer", [BFGS, FIRE, LBFGS])
def test_cell_relaxation_every_filter_and_optimizer(cu_model, cu_eos, cell_filter, optimizer):
    """Each ASE cell filter with each optimiser relaxes a sheared, rattled cell to the model's
    lattice constant from E(a): the stress (sign, eV/Å^3, Voigt order) drives the cell."""
    a0, bulk_modulus, _ = cu_eos
    atoms = _strained_cu(a0)
    atoms.calc = DPCalculator(cu_model)
    fmax = 1e-3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (FutureWarning, DeprecationWarning))   # ExpCellFilter
        assert optimizer(cell_filter(atoms), logfile=None).run(fmax=fmax, steps=2000)
    # every residual stress component below the filter's bound (shear and tetragonal ones
    # included), and the volume at the model's lattice constant
    assert np.abs(atoms.get_stress()).max() < 2 * fmax * len(atoms) / atoms.get_volume()
    a = (atoms.get_volume() / len(atoms) * 4) ** (1 / 3)
    assert abs(a - a0) < _lattice_tolerance(atoms, fmax, a0, bulk_modulus)


@pytest.mark.parametrize("cell_filter", [UnitCellFilter, FrechetCellFilter])
def test_scalar_pressure_gives_the_enthalpy_minimum(cu_model, cu_eos, cell_filter):
    """Under scalar_pressure P = 2 GPa the cell ends at the minimum of the enthalpy per atom
    E(a) + P a^3 / 4 and the stress is -P on the diagonal (ASE's sign: compression negative).
    A stress of the wrong sign or unit (bar, GPa, eV/Å^3 confusion) would land elsewhere."""
    a0, bulk_modulus, e_atom = cu_eos
    pressure = 2.0 * units.GPa
    a_p = minimize_scalar(lambda a: e_atom(a) + pressure * a**3 / 4, bracket=(3.4, 3.6, 3.8),
                          tol=1e-10).x
    assert a0 - a_p > 1e-3   # the pressure compresses measurably: the check has teeth
    atoms = _strained_cu(a0, seed=1)
    atoms.calc = DPCalculator(cu_model)
    fmax = 1e-4
    assert BFGS(cell_filter(atoms, scalar_pressure=pressure), logfile=None).run(fmax=fmax, steps=2000)
    tol = _lattice_tolerance(atoms, fmax, a_p, bulk_modulus)
    assert abs((atoms.get_volume() / len(atoms) * 4) ** (1 / 3) - a_p) < tol
    sigma = fmax * len(atoms) / atoms.get_volume()   # residual stress bound, as above
    assert np.abs(atoms.get_stress()[:3] + pressure).max() < 2 * sigma
    assert np.abs(atoms.get_stress()[3:]).max() < 2 * sigma


def test_constraints_with_and_without_the_cell(cu_model):
    """FixAtoms atoms do not move (also under FrechetCellFilter, where they follow the cell
    only); a FixedLine atom moves along its line, to round-off; forces converge on the rest."""
    atoms = _strained_cu(3.6, reps=2, seed=2)
    atoms.calc = DPCalculator(cu_model)
    start = atoms.positions.copy()
    direction = np.array([1.0, 1.0, 0.0]) / np.sqrt(2)
    atoms.set_constraint([FixAtoms(indices=[0, 1]), FixedLine(5, direction)])
    assert np.abs(atoms.get_forces(apply_constraint=False)[[0, 1]]).max() > 1e-3   # teeth
    opt = BFGS(atoms, logfile=None)
    assert opt.run(fmax=1e-3, steps=500)
    assert np.array_equal(atoms.positions[[0, 1]], start[[0, 1]])
    step = atoms.positions[5] - start[5]
    assert np.linalg.norm(step) > 1e-4
    # FixedLine projects each step on the line: each step leaves at most a few roundings of the
    # position off it, and the steps add up
    eps = np.finfo(float).eps
    assert np.linalg.norm(np.cross(step, direction)) < (opt.nsteps + 1) * 4 * eps * np.abs(atoms.positions).max()
    assert np.linalg.norm(atoms.get_forces(), axis=1).max() < 1e-3   # BFGS's fmax: each atom's force norm

    atoms = _strained_cu(3.6, reps=2, seed=3)
    atoms.calc = DPCalculator(cu_model)
    atoms.set_constraint(FixAtoms(indices=[0]))
    frac = atoms.get_scaled_positions()[0]
    opt = BFGS(FrechetCellFilter(atoms), logfile=None)
    assert opt.run(fmax=1e-3, steps=500)
    # a fixed atom keeps its fractional position while the cell changes: each step's change of
    # cell rounds it a few times
    assert np.abs(atoms.get_scaled_positions()[0] - frac).max() < (opt.nsteps + 1) * 4 * np.finfo(float).eps


def test_slab_and_cluster_relax(cu_model):
    """A slab (pbc False along z, atoms relaxing in the vacuum) and an Atoms without a cell relax
    with BFGS; the slab's in-plane cell relaxes under a masked FrechetCellFilter, with its
    in-plane stress then below the filter's bound; the cluster has no stress (one-line error)."""
    slab = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)
    slab.pbc = (True, True, False)
    slab.center(vacuum=5.0, axis=2)
    slab.rattle(0.02, seed=4)
    slab.calc = DPCalculator(cu_model)
    z0 = slab.positions[:, 2].copy()
    fmax = 1e-3
    assert BFGS(FrechetCellFilter(slab, mask=[1, 1, 0, 0, 0, 1]), logfile=None).run(fmax=fmax, steps=500)
    assert np.abs(slab.get_forces()).max() < fmax * np.sqrt(3)
    assert np.abs(slab.positions[:, 2] - z0).max() > 1e-2   # the surfaces relaxed
    assert np.abs(slab.get_stress()[[0, 1, 5]]).max() < 2 * fmax * len(slab) / slab.get_volume()

    cluster = Atoms("Cu13", positions=bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2).positions[:13])
    cluster.rattle(0.05, seed=5)
    cluster.calc = DPCalculator(cu_model)
    e0 = cluster.get_potential_energy()
    assert BFGS(cluster, logfile=None).run(fmax=fmax, steps=500)
    assert cluster.get_potential_energy() < e0
    with pytest.raises(PropertyNotImplementedError, match="stress needs a cell with non-zero volume"):
        cluster.get_stress()


def _max_angular_frequency(atoms, eps=1e-3):
    """Largest ω (1/ASE time unit) of the mass-weighted Hessian at `atoms`, by Lanczos on
    central-difference Hessian-vector products (truncation O(eps^2), ~1e-6 relative)."""
    x0 = atoms.positions.copy()
    m = np.repeat(atoms.get_masses(), 3)

    def hv(v):
        d = (np.ravel(v) / np.sqrt(m)).reshape(-1, 3)
        atoms.positions = x0 + eps * d
        f_plus = atoms.get_forces().ravel()
        atoms.positions = x0 - eps * d
        f_minus = atoms.get_forces().ravel()
        atoms.positions = x0
        return -(f_plus - f_minus) / (2 * eps) / np.sqrt(m)

    op = LinearOperator((m.size, m.size), matvec=hv, dtype=float)
    top = eigsh(op, k=1, which="LA", tol=1e-6, v0=np.random.default_rng(0).normal(size=m.size),
                return_eigenvectors=False)[0]
    return np.sqrt(top)


def test_nve_energy_bounded_by_verlet_arithmetic(cu_model, cu_eos):
    """VelocityVerlet, 300 steps of 2 fs, 64 atoms from the perfect lattice at 300 K
    (thermalize_momenta).  For a harmonic mode of angular frequency ω, velocity Verlet
    conserves p^2/2 + ω^2 x^2 (1 - f) / 2 with f = (ω dt / 2)^2 exactly, so the true energy of the
    mode stays within a band of width f / (1 - f) of it: the total energy stays within
    f / (1 - f) (E - U_lattice) of its start, with f from the model's own highest frequency.
    A secular drift (forces not -dE/dx, stale cached forces) breaks it within the run."""
    a0 = cu_eos[0]
    atoms = bulk("Cu", "fcc", a=a0, cubic=True) * (4, 2, 2)
    atoms.calc = DPCalculator(cu_model)
    u_lattice = atoms.get_potential_energy()
    omega = _max_angular_frequency(atoms)
    dt = 2.0 * units.fs
    f = (omega * dt / 2) ** 2
    assert f < 0.1   # a sane time step for this model
    thermalize_momenta(atoms, 300, rng=np.random.default_rng(0))
    Stationary(atoms)
    md = VelocityVerlet(atoms, timestep=dt, logfile=None)
    energies = []
    md.attach(lambda: energies.append(atoms.get_total_energy()), interval=1)
    md.run(300)
    e = np.array(energies)
    bound = f / (1 - f) * (e[0] - u_lattice)
    assert np.abs(e - e[0]).max() < bound, (np.abs(e - e[0]).max(), bound)
    assert atoms.get_temperature() < 250   # equipartition happened: atoms really moved


def test_langevin_reaches_its_temperature(cu_model, cu_eos):
    """Langevin (friction 0.02/fs) from 0 K to 600 K, 64 atoms: after 400 fs (8 friction times,
    e^-8 of the start left) the mean temperature of the last 200 fs is within 25 % of 600 K.
    Instantaneous T has relative spread sqrt(2 / (3 N)) = 0.10; the 200 fs window holds about
    four independent samples (correlation time ~1 / friction = 50 fs): 0.05, so 25 % is 5 sd."""
    atoms = bulk("Cu", "fcc", a=cu_eos[0], cubic=True) * (2, 2, 2)
    atoms.rattle(1e-3, seed=6)
    atoms.calc = DPCalculator(cu_model)
    md = Langevin(atoms, timestep=2 * units.fs, temperature_K=600, friction=0.02 / units.fs,
                  fixcm=False, logfile=None, rng=np.random.default_rng(7))
    md.run(200)
    temps = []
    md.attach(lambda: temps.append(atoms.get_temperature()), interval=1)
    md.run(100)
    assert abs(np.mean(temps) / 600 - 1) < 0.25, np.mean(temps)


def test_berendsen_npt_reaches_the_model_lattice(cu_model, cu_eos):
    """NPTBerendsen at 0 bar and ~0.1 K from a 1 % expanded perfect lattice (forces zero by
    symmetry, so only the barostat acts): with compressibility 1 / B the pressure error decays by
    (1 - dt / taup) per step, to e^-8 after 8 taup; the kinetic pressure N k T / V strains by
    p / (3 B).  The lattice constant must come to a0 within both, doubled."""
    a0, bulk_modulus, _ = cu_eos
    atoms = bulk("Cu", "fcc", a=1.01 * a0, cubic=True) * (2, 2, 2)
    atoms.calc = DPCalculator(cu_model)
    thermalize_momenta(atoms, 0.1, rng=np.random.default_rng(8))
    Stationary(atoms)
    dt, taup = 2 * units.fs, 40 * units.fs
    md = NPTBerendsen(atoms, timestep=dt, temperature_K=0.1, pressure_au=0.0, taut=1e4 * units.fs,
                      taup=taup, compressibility_au=1 / bulk_modulus, logfile=None)
    md.run(int(8 * taup / dt))
    a = (atoms.get_volume() / len(atoms) * 4) ** (1 / 3)
    p_kin = len(atoms) * units.kB * 1.0 / atoms.get_volume()   # T stays below 1 K
    tol = 2 * a0 * (0.01 * np.exp(-8) + p_kin / (3 * bulk_modulus)) + 1e-8
    assert abs(a - a0) < tol, (a, a0, tol)


class _Counting(DPModel):
    """A DPModel that counts its evaluations."""
    calls = 0

    def evaluate(self, *args, **kwargs):
        type(self).calls += 1
        return super().evaluate(*args, **kwargs)


def _two_type_model(**kw):
    params = random_params(ntypes=2, sel=[30, 30], neuron=(4, 8), axis_neuron=3, seed=11, **kw)
    params.type_map = ["Cu", "Ag"]
    return params


def test_cache_recomputes_exactly_when_inputs_change():
    """Recomputed on any change of positions, cell, pbc or numbers, also of 1e-12 (Å or in
    fparam), and then equal to model.evaluate of the new state; not on a change of momenta,
    masses or tags; calculation_required, get_property(allow_calculation=False), reset and
    check_state answer as ASE documents; one calculator alternating between two Atoms."""
    model = _Counting(_two_type_model(numb_fparam=1), nthreads=1, fparam=[0.0])
    pos, types, box = random_config(12, 2, box_len=7.0, tilt=0.2, seed=12)
    atoms = Atoms([model.type_map[t] for t in types], positions=pos, cell=box, pbc=True)
    atoms.info["fparam"] = [0.5]
    calc = DPCalculator(model)
    atoms.calc = calc
    assert calc.calculation_required(atoms, ["energy"])
    assert calc.get_property("energy", atoms, allow_calculation=False) is None
    assert _Counting.calls == 0

    def expect(change):
        n = _Counting.calls
        assert change in calc.check_state(atoms)
        assert calc.calculation_required(atoms, ["forces"])
        assert calc.get_property("energy", atoms, allow_calculation=False) is None
        typ = np.array([model.type_map.index(s) for s in atoms.get_chemical_symbols()])
        ref = model.evaluate(atoms.positions, typ, atoms.cell.array,
                             pbc=tuple(bool(p) for p in atoms.pbc), fparam=atoms.info["fparam"])
        assert atoms.get_potential_energy() == ref.energy
        assert np.array_equal(atoms.get_forces(), ref.forces)
        atoms.get_stress()
        assert _Counting.calls == n + 2   # one for ref, one for the calculator
        assert not calc.calculation_required(atoms, ["energy", "forces", "stress", "free_energy"])
        assert calc.check_state(atoms) == []

    atoms.get_potential_energy()
    atoms.positions[3, 1] += 1e-12
    expect("positions")
    atoms.cell[0, 0] += 1e-12
    expect("cell")
    atoms.pbc = (True, True, False)
    expect("pbc")
    atoms.numbers[0] = 47 if atoms.numbers[0] == 29 else 29
    expect("numbers")
    atoms.info["fparam"] = [0.5 + 1e-12]
    expect("fparam")
    n = _Counting.calls
    atoms.set_momenta(np.ones((12, 3)))
    atoms.set_masses(np.full(12, 50.0))
    atoms.set_tags(np.arange(12))
    assert calc.check_state(atoms) == [] and atoms.get_forces() is not None
    assert _Counting.calls == n
    assert calc.get_property("stresses", atoms, allow_calculation=False) is None   # not asked yet
    calc.reset()
    assert calc.results == {} and calc.atoms is None
    assert calc.calculation_required(atoms, ["energy"])
    # two Atoms, one calculator: each call recomputes for the Atoms it is given
    other = atoms.copy()
    assert other.calc is None   # ASE's Atoms.copy drops the calculator
    other.positions[0] += 0.1
    other.calc = calc
    e_atoms, e_other = atoms.get_potential_energy(), other.get_potential_energy()
    assert e_atoms != e_other
    for _ in range(2):
        assert atoms.get_potential_energy() == e_atoms and other.get_potential_energy() == e_other


def test_per_atom_properties_and_voigt(cu_model):
    """energies sum to energy, stresses to stress (ASE's sign, eV/Å^3); free_energy is energy;
    get_stress(voigt=False) is the symmetric 3x3 of the Voigt stress; implemented_properties
    holds DeePMD-kit's."""
    atoms = _strained_cu(3.6, reps=2, seed=9)
    atoms.calc = DP(CU, threads=1)
    deepmd_kit = ["energy", "free_energy", "forces", "virial", "stress"]   # deepmd.calculator.DP's
    assert set(deepmd_kit) <= set(atoms.calc.implemented_properties)
    e = atoms.get_potential_energy()
    assert atoms.calc.get_property("free_energy", atoms) == e
    assert atoms.get_potential_energies().sum() == e   # the same sum of the same array
    s = atoms.get_stress()
    assert np.array_equal(atoms.get_stress(voigt=False), voigt_6_to_full_3x3_stress(s))
    w = atoms.calc.results["virial"]
    assert np.allclose(-0.5 * (w + w.T) / atoms.get_volume(), voigt_6_to_full_3x3_stress(s),
                       rtol=1e-14, atol=0)
    # per-atom virials sum to the total to round-off: 32 terms of ~|stress| each
    stresses = atoms.get_stresses()
    assert stresses.shape == (32, 6)
    assert np.abs(stresses.sum(axis=0) - s).max() < 32 * 1e-15 * np.abs(stresses).max() * 10


def test_type_map_order_and_unknown_elements_as_deepmd_kit():
    """Atoms in an element order other than the model's type_map (H before O, interleaved) give
    DeePMD-kit's DP answers, with fparam from atoms.info, periodic and as a cluster; an element
    outside the type map is one InputError naming the atom and the element."""
    # the same float64 sums in a different order: a few hundred ulps (tests/test_sweep_api.py)
    tol = 1e-10

    def rel(a, b):
        return np.abs(np.asarray(a) - b).max() / np.abs(b).max()

    for prefix, pbc in (("", True), ("cluster_", False)):
        atoms = Atoms(symbols=list(ORACLE["symbols"]), positions=ORACLE["positions"],
                      cell=ORACLE["cell"], pbc=pbc)
        atoms.info["fparam"] = ORACLE["fparam"]
        atoms.calc = DP(FPARAM_MODEL, threads=1)
        assert rel(atoms.get_potential_energy(), ORACLE[prefix + "energy"]) < tol
        assert rel(atoms.get_forces(), ORACLE[prefix + "forces"]) < tol
        if pbc:
            assert rel(atoms.get_stress(), ORACLE["stress"]) < tol
            assert rel(atoms.calc.results["virial"], ORACLE["virial"]) < tol
    atoms[5].symbol = "Na"
    atoms.calc = DPCalculator(FPARAM_MODEL, threads=1)
    with pytest.raises(InputError, match=r"DPCalculator: atom 5 is 'Na', an element not in the model's type_map \['O', 'H'\]"):
        atoms.get_potential_energy()


@pytest.mark.parametrize("shared", [True, False])
def test_neb_vacancy_hop(cu_model, cu_eos, shared):
    """ase.mep.NEB of a vacancy hop in 31-atom Cu, with one calculator shared by all images
    (allow_shared_calculator=True) or one per image: converges, symmetric barrier (the hop is
    its own mirror image), and the same band either way, to the optimiser's fmax."""
    a = bulk("Cu", "fcc", a=cu_eos[0], cubic=True) * (2, 2, 2)
    site = a.positions[0].copy()
    del a[0]
    hop = int(np.argmin(np.linalg.norm(a.positions - site, axis=1)))
    images = [a.copy() for _ in range(5)]
    images[-1].positions[hop] = site
    calc = DPCalculator(cu_model)
    for im in images:
        im.calc = calc if shared else DPCalculator(cu_model)
    neb = NEB(images, allow_shared_calculator=shared, method="improvedtangent")
    neb.interpolate()
    fmax = 0.03
    assert FIRE(neb, logfile=None).run(fmax=fmax, steps=500)
    e = np.array([im.get_potential_energy() for im in images]) - images[0].get_potential_energy()
    assert 0.1 < e[2] < 3.0   # a barrier, of a metal's vacancy hop
    # mirror symmetry: images 1 and 3 are images of each other; their energies differ by at
    # most ~fmax times the distance the optimiser leaves them from the symmetric band (< 0.1 Å)
    assert abs(e[1] - e[3]) < fmax * 0.1 * len(a)
    assert abs(e[4]) < 1e-10
