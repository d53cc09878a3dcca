"""Mixed boundary conditions (a slab periodic along a and b only) in extend() and model.evaluate."""
import numpy as np
import pytest

from numdp.errors import InputError
from numdp.model.dp_model import DPModel
from numdp.neighbor import extend
from randmodel import random_config, random_params
from tests_util import fd_force

SLAB = (True, True, False)
RCUT = 4.0


@pytest.fixture(scope="module")
def model():
    return DPModel(random_params(ntypes=2, sel=[40, 40], neuron=(4, 8), axis_neuron=3,
                                 rcut=RCUT, seed=7), nthreads=2)


def _slab(seed=2, tilt=0.3):
    """24 atoms in a tilted 7 Å cell; the third vector is the non-periodic one."""
    pos, types, box = random_config(24, 2, box_len=7.0, tilt=tilt, seed=seed)
    return pos, types, box


def _vacuum_box(box):
    """The same in-plane vectors with c made long enough that no interaction crosses it."""
    b = box.copy()
    normal = np.cross(b[0], b[1])
    normal /= np.linalg.norm(normal)
    b[2] = b[2] + (2 * RCUT + 10.0) * normal
    return b


def _close(a, b, scale):
    # Same pairs, same neighbour order; only the wrapped coordinates of the local atoms differ by
    # round-off (x - m @ box against f @ box), a few ulps of ~10 Å -> ~1e-14 Å, times forces and
    # curvatures of O(10) -> 1e-12 relative leaves three orders of margin.
    return np.abs(np.asarray(a) - np.asarray(b)).max() <= 1e-12 * max(1.0, scale)


def test_slab_equals_slab_in_vacuum_box(model):
    pos, types, box = _slab()
    slab = model.evaluate(pos, types, box, pbc=SLAB)
    vac = model.evaluate(pos, types, _vacuum_box(box))
    assert _close(slab.energy, vac.energy, abs(vac.energy))
    assert _close(slab.forces, vac.forces, np.abs(vac.forces).max())
    assert _close(slab.virial, vac.virial, np.abs(vac.virial).max())
    assert _close(slab.atom_energies, vac.atom_energies, np.abs(vac.atom_energies).max())
    # ...and differs from the fully periodic 7 Å cell (the test can fail)
    full = model.evaluate(pos, types, box)
    assert abs(full.energy - slab.energy) > 1e-3


def test_slab_is_not_wrapped_and_zero_vacuum_vector_is_allowed(model):
    pos, types, box = _slab()
    ref = model.evaluate(pos, types, box, pbc=SLAB)
    # moving every atom far along the non-periodic vector changes nothing (no wrapping along c)
    out = model.evaluate(pos + 25.0 * box[2], types, box, pbc=SLAB)
    assert _close(out.energy, ref.energy, abs(ref.energy))
    assert _close(out.forces, ref.forces, np.abs(ref.forces).max())
    # ASE's slab cell: a zero third vector
    flat = box.copy()
    flat[2] = 0.0
    out = model.evaluate(pos, types, flat, pbc=SLAB)
    assert _close(out.energy, ref.energy, abs(ref.energy))
    assert _close(out.virial, ref.virial, np.abs(ref.virial).max())
    # all False is a cluster
    cl = model.evaluate(pos, types, box, pbc=(False, False, False))
    none = model.evaluate(pos, types, None)
    assert cl.energy == none.energy


def test_wire_one_periodic_direction(model):
    pos, types, box = _slab(seed=4, tilt=0.0)
    wire = model.evaluate(pos, types, box, pbc=(False, True, False))
    big = box.copy()
    big[0] *= 4.0
    big[2] *= 4.0
    ref = model.evaluate(pos, types, big)
    assert _close(wire.energy, ref.energy, abs(ref.energy))
    assert _close(wire.forces, ref.forces, np.abs(ref.forces).max())
    # two zero non-periodic vectors (completed to an orthonormal pair)
    thin = np.zeros((3, 3))
    thin[1] = box[1]
    out = model.evaluate(pos, types, thin, pbc=(False, True, False))
    assert _close(out.energy, ref.energy, abs(ref.energy))
    assert _close(out.forces, ref.forces, np.abs(ref.forces).max())


def test_slab_forces_and_virial_match_finite_differences(model):
    pos, types, box = _slab(seed=3)
    out = model.evaluate(pos, types, box, pbc=SLAB)
    h = 1e-5

    class _Slab:  # fd_force calls evaluate(pos, types, box, atom_virial=False)
        @staticmethod
        def evaluate(p, t, b, atom_virial=False):
            return model.evaluate(p, t, b, atom_virial=atom_virial, pbc=SLAB)

    atoms = [0, 7, 23]
    fd = np.array([[fd_force(_Slab, pos, types, box, i, c, h) for c in range(3)] for i in atoms])
    # Same tolerance as test_model_physics: central differences with h = 1e-5 have truncation
    # error ~h^2 |E'''| ~ 1e-9 and round-off ~1e-16 |E| / h ~ 1e-9 for |E| ~ 100 eV.
    scale = max(1.0, np.abs(out.forces).max())
    assert np.abs(out.forces[atoms] - fd).max() < 2e-7 * scale
    # virial = -dE/dstrain with all atoms (and the in-plane cell) strained
    vir = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            e = np.zeros((3, 3))
            e[a, b] = h
            ep = model.evaluate(pos @ (np.eye(3) + e), types, box @ (np.eye(3) + e), pbc=SLAB).energy
            em = model.evaluate(pos @ (np.eye(3) - e), types, box @ (np.eye(3) - e), pbc=SLAB).energy
            vir[a, b] = -(ep - em) / (2 * h)
    assert np.abs(out.virial - vir).max() < 2e-7 * max(1.0, np.abs(out.virial).max())


def test_extend_mixed_pbc_shifts_and_all_periodic_default():
    pos, types, box = _slab()
    ext = extend(pos, types, box, RCUT, pbc=SLAB)
    assert ext.nghost > 0 and np.all(ext.shifts[:, 2] == 0)
    rebuilt = ext.positions[ext.mapping] + ext.shifts @ box
    assert np.allclose(rebuilt, ext.positions, rtol=0, atol=1e-12)
    # pbc=None and all True are the same call as before (bit-identical ghost set and order)
    a = extend(pos, types, box, RCUT)
    b = extend(pos, types, box, RCUT, pbc=(True, True, True))
    for f in ("positions", "types", "mapping", "shifts"):
        assert np.array_equal(getattr(a, f), getattr(b, f))


@pytest.mark.parametrize("pbc,box", [((True, False), np.eye(3)), ((1, 2, 0), np.eye(3)),
                                     ((True, True, False), None)])
def test_bad_pbc(model, pbc, box):
    pos, types, _ = _slab()
    with pytest.raises(InputError, match="pbc"):
        model.evaluate(pos, types, box, pbc=pbc)
