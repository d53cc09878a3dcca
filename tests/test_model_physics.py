"""Forces and virial against finite differences; invariances; replicas; overflow; bad input."""
import warnings

import numpy as np
import pytest

from numdp.errors import InputError
from numdp.model.dp_model import DPModel
from numdp.neighbor import NeighborOverflowWarning
from randmodel import random_config, random_params
from tests_util import fd_force

H = 1e-5

HYPER = [
    # (ntypes, neuron, type_one_side, resnet_dt, fitting)
    (1, (4, 8, 16), False, True, (12, 12)),     # doubling widths
    (2, (6, 6, 6), True, True, (10, 10)),       # widths that keep size
    (2, (5, 7, 3), False, False, (9, 18)),      # widths that change size; fitting doubles
    (3, (2, 4, 8), True, False, (8, 8, 8)),
    (3, (1, 2, 2), False, True, (6, 6)),        # input width 1 -> 1 -> doubled residual
    (2, (8,), True, False, (6,)),               # a one-layer embedding net
]


def _energy(model, pos, types, box):
    return model.evaluate(pos, types, box, atom_virial=False).energy


def _fd_forces(model, pos, types, box, atoms):
    return np.array([[fd_force(model, pos, types, box, i, c, H) for c in range(3)] for i in atoms])


def _strained(pos, box, eps):
    m = np.eye(3) + eps
    return pos @ m, (None if box is None else box @ m)


def _fd_virial(model, pos, types, box):
    vir = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            eps = np.zeros((3, 3))
            eps[a, b] = H
            pp, bp = _strained(pos, box, eps)
            pm, bm = _strained(pos, box, -eps)
            vir[a, b] = -(_energy(model, pp, types, bp) - _energy(model, pm, types, bm)) / (2 * H)
    return vir


@pytest.mark.parametrize("hyper", HYPER, ids=lambda h: f"nt{h[0]}-{'x'.join(map(str, h[1]))}-"
                                                      f"{'one' if h[2] else 'two'}side-dt{int(h[3])}")
@pytest.mark.parametrize("periodic", [True, False], ids=["triclinic", "cluster"])
def test_forces_and_virial_match_finite_differences(hyper, periodic):
    ntypes, neuron, one_side, rdt, fitting = hyper
    params = random_params(ntypes=ntypes, sel=[40] * ntypes, neuron=neuron, axis_neuron=2,
                           type_one_side=one_side, resnet_dt=rdt, fitting=fitting, seed=ntypes)
    model = DPModel(params, nthreads=1)
    pos, types, box = random_config(14, ntypes, box_len=6.5 if periodic else None, tilt=0.4, seed=3)
    out = model.evaluate(pos, types, box)
    atoms = [0, 5, 13]
    fd = _fd_forces(model, pos, types, box, atoms)
    scale = max(1.0, np.abs(out.forces).max())
    assert np.abs(out.forces[atoms] - fd).max() < 2e-7 * scale
    vir_fd = _fd_virial(model, pos, types, box)
    assert np.abs(out.virial - vir_fd).max() < 2e-7 * max(1.0, np.abs(out.virial).max())
    assert np.allclose(out.atom_virials.sum(axis=0).reshape(3, 3), out.virial, atol=1e-12)
    assert abs(out.atom_energies.sum() - out.energy) < 1e-10
    assert np.abs(out.forces.sum(axis=0)).max() < 1e-10 * scale


@pytest.fixture(scope="module")
def model2():
    return DPModel(random_params(ntypes=2, sel=[40, 40], neuron=(4, 8), axis_neuron=3,
                                 type_one_side=False, seed=11), nthreads=2)


def test_translation_rotation_permutation_wrapping(model2):
    pos, types, box = random_config(20, 2, box_len=7.0, tilt=0.5, seed=1)
    ref = model2.evaluate(pos, types, box)
    rng = np.random.default_rng(5)
    # translation
    out = model2.evaluate(pos + np.array([1.3, -7.2, 40.1]), types, box)
    assert abs(out.energy - ref.energy) < 1e-11 * abs(ref.energy)
    assert np.allclose(out.forces, ref.forces, atol=1e-11)
    # rotation of coordinates and cell
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    out = model2.evaluate(pos @ q.T, types, box @ q.T)
    assert abs(out.energy - ref.energy) < 1e-11 * abs(ref.energy)
    assert np.allclose(out.forces, ref.forces @ q.T, atol=1e-10)
    assert np.allclose(out.virial, q @ ref.virial @ q.T, atol=1e-10)
    # permutation
    perm = rng.permutation(len(pos))
    out = model2.evaluate(pos[perm], types[perm], box)
    assert np.allclose(out.atom_energies, ref.atom_energies[perm], atol=1e-12)
    assert np.allclose(out.forces, ref.forces[perm], atol=1e-11)
    # wrapping by lattice vectors
    shifts = rng.integers(-3, 4, size=(len(pos), 3))
    out = model2.evaluate(pos + shifts @ box, types, box)
    assert np.allclose(out.atom_energies, ref.atom_energies, atol=1e-12)
    assert np.allclose(out.forces, ref.forces, atol=1e-11)
    assert np.allclose(out.virial, ref.virial, atol=1e-10)


def _replicate(pos, types, box, n):
    shifts = np.array([(a, b, c) for a in range(n[0]) for b in range(n[1]) for c in range(n[2])])
    big = np.concatenate([pos + s @ box for s in shifts])
    return big, np.tile(types, len(shifts)), box * np.array(n)[:, None]


def test_replica_has_eight_times_the_energy(model2):
    pos, types, box = random_config(20, 2, box_len=8.5, tilt=0.3, seed=2)
    ref = model2.evaluate(pos, types, box)
    out = model2.evaluate(*_replicate(pos, types, box, (2, 2, 2)))
    assert abs(out.energy - 8 * ref.energy) < 1e-10 * abs(ref.energy)
    assert np.allclose(out.atom_energies, np.tile(ref.atom_energies, 8), atol=1e-11)
    assert np.allclose(out.forces, np.tile(ref.forces, (8, 1)), atol=1e-10)
    assert np.allclose(out.virial, 8 * ref.virial, atol=1e-9)


def test_box_narrower_than_rcut_equals_replicated_box():
    """A 3.3 Å cell with rcut 4: several images of each atom, and of the centre itself, count."""
    params = random_params(ntypes=2, sel=[60, 60], neuron=(4, 8), axis_neuron=3, rcut=4.0, seed=4)
    model = DPModel(params, nthreads=1)
    pos, types, box = random_config(3, 2, box_len=3.3, tilt=0.6, min_dist=1.5, seed=4)
    small = model.evaluate(pos, types, box)
    big = model.evaluate(*_replicate(pos, types, box, (3, 3, 3)))
    assert np.allclose(big.atom_energies, np.tile(small.atom_energies, 27), atol=1e-11)
    assert np.allclose(big.forces, np.tile(small.forces, (27, 1)), atol=1e-10)
    assert np.allclose(big.virial, 27 * small.virial, atol=1e-9)


def test_overflow_is_reported_and_truncates_farthest():
    params = random_params(ntypes=2, sel=[3, 40], neuron=(4, 8), axis_neuron=2, seed=6)
    model = DPModel(params, nthreads=1)
    pos, types, box = random_config(20, 2, box_len=7.0, seed=6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.evaluate(pos, types, box)
    msgs = [str(w.message) for w in caught if issubclass(w.category, NeighborOverflowWarning)]
    assert len(msgs) == 1 and "A" in msgs[0] and "3" in msgs[0]


@pytest.mark.parametrize("args,match", [
    ((np.zeros((4, 2)), [0, 0, 0, 0], None), "positions must have shape"),
    ((np.zeros((4, 3)), [0, 0, 0], None), "types must have shape"),
    ((np.zeros((2, 3)), [0, 5], None), "atom 1 has type 5"),
    ((np.array([[0.0, 0, 0], [np.nan, 1, 1]]), [0, 1], None), "atom 1 has a non-finite position"),
    ((np.zeros((2, 3)), [0, 1], np.eye(2)), "box must have shape"),
    ((np.zeros((2, 3)), [0.5, 1.0], None), "types must be integers"),
])
def test_bad_input_gives_clear_error(model2, args, match):
    with pytest.raises(InputError, match=match):
        model2.evaluate(*args)


def test_singular_box_is_rejected(model2):
    box = np.array([[5.0, 0, 0], [10.0, 0, 0], [0, 0, 5.0]])
    with pytest.raises(InputError):
        model2.evaluate(np.zeros((2, 3)) + [[0, 0, 0], [1, 1, 1]], [0, 1], box)
