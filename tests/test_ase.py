"""numdp.ase.DPCalculator: ASE's finite differences, relaxation, NVE, per-atom sums, caching."""
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.filters import FrechetCellFilter
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS
from scipy.optimize import minimize_scalar

import numdp
from numdp.ase import DPCalculator
from numdp.errors import InputError
from numdp.model.dp_model import DPModel
from randmodel import random_config, random_params

CU = Path(__file__).resolve().parents[1] / "inputs" / "cu" / "model.h5"


@pytest.fixture(scope="module")
def cu_model():
    return numdp.load_model(CU, nthreads=2)


def _cu(a=3.6, reps=2, rattle=0.0, seed=0):
    atoms = bulk("Cu", "fcc", a=a, cubic=True) * (reps, reps, reps)
    if rattle:
        atoms.rattle(rattle, seed=seed)
    return atoms


def test_results_equal_model_evaluate_and_per_atom_sums(cu_model):
    atoms = _cu(rattle=0.05)
    atoms.cell[1, 0] = 0.3  # triclinic, so every stress component is non-trivial
    atoms.calc = DPCalculator(cu_model)
    ref = cu_model.evaluate(atoms.positions, np.zeros(len(atoms), int), atoms.cell.array)
    assert atoms.get_potential_energy() == ref.energy
    assert atoms.get_potential_energy(force_consistent=True) == ref.energy
    assert np.array_equal(atoms.get_forces(), ref.forces)
    v = atoms.get_volume()
    s = -0.5 * (ref.virial + ref.virial.T) / v
    # equal up to the volume's round-off (|det| against ASE's get_volume): a few ulps
    assert np.allclose(atoms.get_stress(voigt=False), s, rtol=1e-14, atol=0)
    energies = atoms.get_potential_energies()
    assert energies.sum() == atoms.get_potential_energy()  # the same sum of the same array
    # ASE: stresses.sum(axis=0) == stress (intensive per-atom stresses, whole-cell volume).
    # The per-atom virials sum to the total virial to round-off: N terms of ~|virial| / N each.
    stresses = atoms.get_stresses()
    assert stresses.shape == (len(atoms), 6)
    assert np.allclose(stresses.sum(axis=0), atoms.get_stress(), rtol=0,
                       atol=1e-13 * len(atoms) * max(1e-3, np.abs(s).max()))


def test_forces_and_stress_against_ase_finite_differences(cu_model):
    atoms = _cu(a=3.55, rattle=0.08, seed=1)
    atoms.cell[2, 0] = -0.4
    atoms.calc = DPCalculator(cu_model)
    # Central differences with step eps: truncation ~eps^2 |E'''| and round-off ~1e-16 |E| / eps.
    # With eps = 1e-4 Å and |E| < 10 eV both are < 1e-8 eV/Å (|E'''| ~ 1e2 eV/Å^3 at most);
    # 1e-6 eV/Å leaves two orders of margin and is far below the forces (~0.1-1 eV/Å).
    fd = calculate_numerical_forces(atoms, eps=1e-4, iatoms=[0, 9, 31])
    assert np.abs(atoms.get_forces()[[0, 9, 31]] - fd).max() < 1e-6
    # Stress: strain step 1e-5, round-off ~1e-16 |E| / (1e-5 V) ~ 1e-13 eV/Å^3 for V ~ 370 Å^3.
    fd_s = calculate_numerical_stress(atoms, eps=1e-5)
    assert np.abs(atoms.get_stress() - fd_s).max() < 1e-8
    assert np.abs(atoms.get_stress()).max() > 1e-4  # a strained cell: the check has teeth


def _energy_per_atom(model, a):
    atoms = _cu(a=a)
    return model.evaluate(atoms.positions, np.zeros(len(atoms), int), atoms.cell.array,
                          atom_virial=False).energy / len(atoms)


@pytest.mark.slow
def test_bfgs_cell_relaxation_reaches_model_lattice_constant(cu_model):
    # The model's equilibrium lattice constant, found independently from E(a) of the perfect
    # 32-atom fcc cell (every atom at a centre of symmetry: no internal relaxation).
    res = minimize_scalar(lambda a: _energy_per_atom(cu_model, a), bracket=(3.4, 3.6, 3.8),
                          tol=1e-10)
    a0 = res.x
    h = 1e-3
    curv = (_energy_per_atom(cu_model, a0 + h) - 2 * res.fun
            + _energy_per_atom(cu_model, a0 - h)) / h**2  # d2(E/N)/da2, eV/Å^2
    bulk_modulus = curv / (9 * a0 / 4)  # B = V d2E/dV2 with V/N = a^3 / 4, eV/Å^3
    assert 3.3 < a0 < 3.9 and bulk_modulus > 0

    atoms = _cu(a=a0)
    atoms.set_cell(atoms.cell.array @ np.array([[1.03, 0.01, 0.0], [0.0, 0.98, 0.0],
                                                [0.02, 0.0, 1.01]]), scale_atoms=True)
    atoms.rattle(0.01, seed=2)
    atoms.calc = DPCalculator(cu_model)
    fmax = 1e-3
    opt = BFGS(FrechetCellFilter(atoms), logfile=None)
    assert opt.run(fmax=fmax, steps=300)
    assert np.abs(atoms.get_forces()).max() < fmax * np.sqrt(3)
    # The filter's cell "force" is virial / N (cell_factor N), so at convergence every stress
    # component is below fmax N / V; a hydrostatic residual p strains the volume by p / B and
    # the lattice constant by p / (3 B).  Twice that bound, plus the E(a) minimiser's 1e-8 Å.
    sigma = fmax * len(atoms) / atoms.get_volume()
    tol = 2 * a0 * sigma / (3 * bulk_modulus) + 1e-8
    a_relaxed = (atoms.get_volume() / 8) ** (1 / 3)
    assert abs(a_relaxed - a0) < tol, (a_relaxed, a0, tol)
    # ...and back to a cube (the imposed shear and tetragonal strain relax away)
    lengths = atoms.cell.lengths() / 2
    assert np.abs(lengths - a0).max() < 3 * tol
    assert np.abs(atoms.cell.angles() - 90.0).max() < np.degrees(3 * tol / a0)


def _nve_fluctuation(model, dt_fs, duration_fs):
    atoms = _cu(a=3.6, rattle=0.02, seed=3)
    masses = atoms.get_masses()[:, None]  # Maxwell-Boltzmann momenta at 300 K, zero total
    p = np.sqrt(masses * units.kB * 300.0) * np.random.default_rng(4).normal(size=(len(atoms), 3))
    atoms.set_momenta(p - masses * p.sum(axis=0) / masses.sum())
    atoms.calc = DPCalculator(model)
    md = VelocityVerlet(atoms, timestep=dt_fs * units.fs, logfile=None)
    energies = []
    md.attach(lambda: energies.append(atoms.get_total_energy()), interval=1)
    md.run(int(round(duration_fs / dt_fs)))
    e = np.array(energies)
    return np.sqrt(np.mean((e - e.mean()) ** 2)), atoms.get_kinetic_energy()


@pytest.mark.slow
def test_velocity_verlet_conserves_energy(cu_model):
    # Velocity Verlet's energy error is O(dt^2): halving dt must divide the RMS fluctuation of the
    # total energy by ~4 (a force that is not -dE/dx shows no such scaling, only drift).  Same
    # start, same 100 fs; 4 +- 25% allows for the O(dt^4) terms and the different sampling.
    f_big, kin = _nve_fluctuation(cu_model, 4.0, 100.0)
    f_small, _ = _nve_fluctuation(cu_model, 2.0, 100.0)
    assert 3.0 < f_big / f_small < 5.0, (f_big, f_small)
    # Absolute size: for a harmonic mode of angular frequency w the Verlet energy oscillates by
    # a fraction (w dt / 2)^2 of the mode's energy; Cu's top phonon is ~7.5 THz (w ~ 47 / ps), so
    # at dt = 4 fs the fraction is < 0.009 of ~2 K (kinetic + potential of the vibrations).
    assert f_big < 0.009 * 2 * kin


def test_caching_unknown_element_and_slab(cu_model):
    atoms = _cu(rattle=0.02)
    calls = []

    class Counting(DPModel):
        def evaluate(self, *args, **kwargs):
            calls.append(1)
            return super().evaluate(*args, **kwargs)

    m = Counting.__new__(Counting)
    m.__dict__.update(cu_model.__dict__)
    atoms.calc = DPCalculator(m)
    atoms.get_potential_energy()
    atoms.get_forces()
    atoms.get_stress()
    assert len(calls) == 1
    atoms.positions[0, 0] += 0.01
    atoms.get_forces()
    assert len(calls) == 2

    bad = atoms.copy()
    bad[3].symbol = "Au"
    bad.calc = DPCalculator(cu_model)
    with pytest.raises(InputError, match=r"DPCalculator: atom 3 is 'Au', an element not in the model's type_map \['Cu'\]"):
        bad.get_potential_energy()

    with pytest.raises(InputError, match="belong to the loaded model"):
        DPCalculator(cu_model, threads=1)


def test_slab_pbc_is_passed_through():
    params = random_params(ntypes=2, sel=[40, 40], neuron=(4, 8), axis_neuron=3, seed=5)
    params.type_map = ["Cu", "Ag"]
    model = DPModel(params, nthreads=1)
    pos, types, box = random_config(20, 2, box_len=7.0, tilt=0.2, seed=6)
    atoms = Atoms(symbols=[model.type_map[t] for t in types], positions=pos, cell=box,
                  pbc=[True, True, False])
    atoms.calc = DPCalculator(model)
    ref = model.evaluate(pos, types, box, pbc=(True, True, False))
    assert atoms.get_potential_energy() == ref.energy
    assert np.array_equal(atoms.get_forces(), ref.forces)
    # ASE's slab cell with a zero third vector: same energy and forces; no volume, no stress
    flat = atoms.copy()
    flat.cell[2] = 0.0
    flat.calc = DPCalculator(model)
    assert abs(flat.get_potential_energy() - ref.energy) < 1e-12 * abs(ref.energy)
    from ase.calculators.calculator import PropertyNotImplementedError
    with pytest.raises(PropertyNotImplementedError, match="non-zero volume"):
        flat.get_stress()
    # a cluster: no pbc at all
    cl = Atoms(symbols=atoms.get_chemical_symbols(), positions=pos)
    cl.calc = DPCalculator(model)
    assert cl.get_potential_energy() == model.evaluate(pos, types, None).energy


def test_deepmd_kit_dp_class(cu_model):
    """numdp.calculator.DP takes deepmd.calculator.DP's constructor and reports its `virial`
    (3x3, DeePMD-kit's sign) beside DPCalculator's results, bit for bit; type_dict maps
    elements to model types (Ag atoms evaluated as the model's Cu: the same numbers); what numdp
    models cannot take is refused in one line."""
    from numdp.calculator import DP

    atoms = _cu(rattle=0.05)
    atoms.cell[1, 0] = 0.3
    ref = cu_model.evaluate(atoms.positions, np.zeros(len(atoms), int), atoms.cell.array)
    atoms.calc = DP(CU, label="x", neighbor_list=None, nlist_backend="auto", threads=2)
    assert atoms.get_potential_energy() == ref.energy
    assert np.array_equal(atoms.get_forces(), ref.forces)
    assert np.array_equal(atoms.calc.results["virial"], ref.virial)
    assert atoms.calc.label == "x"
    ag = atoms.copy()
    ag.set_chemical_symbols(["Ag"] * len(ag))
    ag.calc = DP(CU, type_dict={"Ag": 0}, threads=2)
    assert ag.get_potential_energy() == ref.energy
    assert np.array_equal(ag.get_stress(), atoms.get_stress())
    for make, message in ((lambda: DP(CU, type_dict={"Cu": 1}), "DP: type_dict {'Cu': 1}: type indices must be in 0..0"),
                          (lambda: DP(CU, head="branch"), "DP: head='branch': numdp models are single-task")):
        with pytest.raises(InputError, match=message):
            make()
    ag.calc = DP(CU, type_dict={"Cu": 0}, threads=2)
    with pytest.raises(InputError, match="DP: atom 0 is 'Ag', an element not in type_dict"):
        ag.get_potential_energy()
    atoms.info["fparam"] = [1.0]
    atoms.calc = DP(CU, threads=2)
    with pytest.raises(InputError, match=r"the model takes no frame parameters \(numb_fparam 0\), got fparam \[1.0\]"):
        atoms.get_potential_energy()
    del atoms.info["fparam"]
    atoms.info["aparam"] = [1.0]
    with pytest.raises(InputError, match=r"the model takes no atomic parameters \(numb_aparam 0\), got aparam"):
        atoms.get_potential_energy()


def test_calculator_copies_and_pickles(cu_model):
    """copy.deepcopy (ASE's NEB recipe: one calculator copied to every image) and pickle (an Atoms
    with its calculator sent to another process) give calculators with models of their own that
    evaluate bit for bit as the original; the evaluator's thread pool and lock are rebuilt."""
    import copy
    import pickle

    from numdp.calculator import DP

    atoms = _cu(rattle=0.05)
    atoms.cell[1, 0] = 0.3
    for calc in (DPCalculator(cu_model), DP(CU, type_dict={"Cu": 0}, threads=1)):
        atoms.calc = calc
        e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        clone = copy.deepcopy(calc)
        assert clone.model is not calc.model and clone.model.nthreads == calc.model.nthreads
        assert type(clone) is type(calc) and clone.type_dict == calc.type_dict
        moved = pickle.loads(pickle.dumps(atoms))
        for other in (atoms.copy(), moved):
            other.calc = clone if other is not moved else moved.calc
            assert other.get_potential_energy() == e
            assert np.array_equal(other.get_forces(), f) and np.array_equal(other.get_stress(), s)


def test_dp_type_dict_needs_integer_types():
    """DP's type_dict maps elements to integer model types: a string or a fraction is an
    InputError naming type_dict, not a ValueError traceback or a silently truncated 0.5 -> 0."""
    from numdp.calculator import DP

    for bad in ({"Cu": "x"}, {"Cu": 0.5}, {"Cu": "0"}, {"Cu": True}):
        with pytest.raises(InputError, match="DP: type_dict must map element names to integer model types"):
            DP(CU, type_dict=bad, threads=1)
    assert DP(CU, type_dict={"Cu": np.int64(0)}, threads=1).type_dict == {"Cu": 0}


def test_changed_frame_and_atomic_parameters_are_not_cached():
    """atoms.info["fparam"] / ["aparam"] change the model's results, so changing them (or an
    array of them in place) recomputes, while unchanged ones keep ASE's cache: ASE's own
    check_state does not look at atoms.info, and returned the previous parameters' energy."""
    params = random_params(ntypes=2, sel=[20, 20], neuron=(4, 8), axis_neuron=3, seed=5,
                           numb_fparam=1, numb_aparam=1)
    params.type_map = ["Cu", "Ag"]
    calls = []

    class Counting(DPModel):
        def evaluate(self, *args, **kwargs):
            calls.append(1)
            return super().evaluate(*args, **kwargs)

    model = Counting(params, nthreads=1, fparam=[0.0], aparam=[0.0])
    pos, types, box = random_config(10, 2, box_len=6.0, seed=6)
    atoms = Atoms([params.type_map[t] for t in types], positions=pos, cell=box, pbc=True)
    atoms.calc = DPCalculator(model)
    aparam = np.full((10, 1), 0.5)
    for fparam, ap in (([0.3], None), ([0.9], None), ([0.9], aparam)):
        atoms.info["fparam"] = fparam
        if ap is not None:
            atoms.info["aparam"] = ap
        ref = model.evaluate(pos, types, box, fparam=fparam, aparam=ap if ap is not None else [0.0])
        assert atoms.get_potential_energy() == ref.energy
        assert np.array_equal(atoms.get_forces(), ref.forces)
    n = len(calls)
    atoms.get_stress()
    assert len(calls) == n  # unchanged parameters: cached
    aparam[3, 0] = 0.7  # in place
    ref = model.evaluate(pos, types, box, fparam=[0.9], aparam=aparam)
    assert atoms.get_potential_energy() == ref.energy
