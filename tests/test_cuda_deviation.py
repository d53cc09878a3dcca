"""Model deviation on the device: the environment matrix shared by the models of an ensemble
(numdp.model.cuda_evaluator.compute_device_shared, DeviceForceProvider.evaluate_next_with) and the
deviation models' neighbour-overflow warnings.

Run under Numba's CUDA simulator (tests/conftest.py sets NUMBA_ENABLE_CUDASIM=1 unless
NUMDP_TEST_REAL_GPU=1).  Sharing must not change a bit: every model runs the same kernels on the
same environment rows, in its own output arrays and in its own chunk order, with no
floating-point atomics, so the shared and the separate evaluations are compared for equality.
That sharing took place is checked by counting kernel launches (one env_pairs per chunk fewer per
sharing model) or the provider's `shared_env`.
"""
from __future__ import annotations

import copy
import io
import warnings

import numpy as np
import pytest

pytest.importorskip("numba_cuda")

from numdp.config import load_run_settings  # noqa: E402
from numdp.io.model_file import read_model, write_model  # noqa: E402
from numdp.md.setup import build_simulation  # noqa: E402
from numdp.model.compress import compress  # noqa: E402
from numdp.model.dp_model import DPModel, compute_device_ensemble, compute_ensemble, evaluate_ensemble  # noqa: E402,E501
from numdp.neighbor import NeighborOverflowWarning  # noqa: E402
from randmodel import random_config, random_params  # noqa: E402
from numdp.io.h5md import read_checkpoint  # noqa: E402
from numdp.system import to_arrays  # noqa: E402
from test_cuda_md import assert_devi_rows_close, make_run  # noqa: E402
from test_mpi import frames  # noqa: E402

KW = dict(ntypes=2, sel=[12, 14], neuron=(4, 8), fitting=(8, 8), rcut=3.5, rcut_smth=0.8)


def ensemble_params(compressed: bool):
    """Three models: 0; 1 with other networks and model 0's davg / dstd (shares its environment
    matrix); 2 as 1 with one davg block moved (does not)."""
    p0 = random_params(seed=11, **KW)
    p1 = random_params(seed=12, **KW)
    p1.descriptor.davg = p0.descriptor.davg.copy()
    p1.descriptor.dstd = p0.descriptor.dstd.copy()
    p2 = copy.deepcopy(p1)
    p2.descriptor.davg[1, :12, 0] += 1e-3   # the block of type 0 neighbours of type 1 centres
    out = [p0, p1, p2]
    if compressed:
        out = [compress(p, dx=0.02, order=5, s_max=np.full(2, 1.5))[0] for p in out]
    return out


@pytest.mark.parametrize("compressed", [False, True])
def test_shared_environment_on_the_device_keeps_every_bit(compressed):
    """compute_device_ensemble of models 0 and 1 (equal rcut, rcut_smth, sel, davg, dstd) equals
    each model's own compute_device bit for bit, over several chunks, with env_pairs and the
    reverse index's three launches once per chunk; model 2 (davg differs) does not share, on the
    device as on the CPU."""
    from numdp.backend import get_backend
    from numdp.kernels.cuda.opcount import OpCounter
    from numdp.model.cuda_evaluator import device_neighbor_list

    params = ensemble_params(compressed)
    chunk = 3
    models = [DPModel(p, nthreads=1, device="cuda", chunk=chunk) for p in params]
    cpus = [DPModel(p, nthreads=1) for p in params]
    assert models[0].shares_environment(models[1]) and cpus[0].shares_environment(cpus[1])
    assert not models[0].shares_environment(models[2]) and not cpus[0].shares_environment(cpus[2])
    assert not models[0].shares_environment(cpus[1])   # another device
    # another chunk size: the same rows, other chunks (the device sums forces chunk by chunk)
    assert not models[0].shares_environment(DPModel(params[1], nthreads=1, device="cuda", chunk=chunk + 1))
    with pytest.raises(ValueError):
        compute_device_ensemble([models[0], models[2]], None, None, None)

    be = get_backend("cuda")
    pos, typ, box = random_config(natoms=8, ntypes=2, box_len=4.0, tilt=0.2, seed=3)
    dn = device_neighbor_list(be, pos, typ.astype(np.int32), box, 3.5, KW["sel"])
    nloc = dn.nloc
    nchunks = -(-nloc // chunk)
    assert nchunks >= 3
    counter = OpCounter()
    with counter.counting():
        alone = [m.compute_device(dn.positions, dn.nlist, typ.astype(np.int32)) for m in models[:2]]
    separate = counter.launches
    counter.reset()
    with counter.counting():
        shared = compute_device_ensemble(models[:2], dn.positions, dn.nlist, typ.astype(np.int32))
    # per chunk, once for both models: env_pairs and the reverse index of its pairs (kernels
    # pair_sort_keys, sorted_neighbours)
    assert counter.launches == separate - 3 * nchunks
    for one, two in zip(alone, shared):
        for a, b in zip(one, two):
            assert np.array_equal(be.to_host(a), be.to_host(b))
    assert np.abs(be.to_host(alone[0][1]) - be.to_host(alone[1][1])).max() > 1e-3   # two models
    # compute_ensemble (host results) on the device: the same bits
    for raw, (e, f, v) in zip(compute_ensemble(models[:2], dn.positions, dn.nlist, typ.astype(np.int32)), alone):
        assert np.array_equal(raw.atom_energy, be.to_host(e)) and np.array_equal(raw.force, be.to_host(f))
        assert np.array_equal(raw.virial.reshape(9), be.to_host(v))
    # evaluate_ensemble (numdp model-devi's entry) on the device: each model's evaluate, the ghost
    # forces folded on the host in the order of the device's fold (owner, then its images by index)
    for res, m in zip(evaluate_ensemble(models, pos, typ, box), models):
        one = m.evaluate(pos, typ, box, atom_virial=False)
        assert res.energy == one.energy and np.array_equal(res.forces, one.forces)
        assert np.array_equal(res.virial, one.virial)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_a_mix32_model_shares_a_double_models_environment_matrix(device):
    """[model_devi] precision: a deviation model in mix32 beside model 0 in double still shares
    its environment matrix (the rows are float64 in every precision; only the networks round to
    float32), and the shared evaluation equals each model's own, bit for bit (one thread, one
    chunk size)."""
    from numdp.backend import get_backend
    from numdp.model.cuda_evaluator import device_neighbor_list

    params = ensemble_params(False)[:2]
    kw = dict(nthreads=1, device=device, chunk=3) if device == "cuda" else dict(nthreads=1)
    models = [DPModel(params[0], precision="double", **kw), DPModel(params[1], precision="mix32", **kw)]
    assert models[0].shares_environment(models[1])
    pos, typ, box = random_config(natoms=8, ntypes=2, box_len=4.0, tilt=0.2, seed=3)
    typ = typ.astype(np.int32)
    if device == "cuda":
        be = get_backend("cuda")
        dn = device_neighbor_list(be, pos, typ, box, 3.5, KW["sel"])
        alone = [m.compute_device(dn.positions, dn.nlist, typ) for m in models]
        shared = compute_device_ensemble(models, dn.positions, dn.nlist, typ)
        for one, two in zip(alone, shared):
            for a, b in zip(one, two):
                assert np.array_equal(be.to_host(a), be.to_host(b))
        double = DPModel(params[1], precision="double", **kw).compute_device(dn.positions, dn.nlist, typ)
        f32, f64 = be.to_host(alone[1][1]), be.to_host(double[1])
    else:
        res = evaluate_ensemble(models, pos, typ, box)
        for r, m in zip(res, models):
            one = m.evaluate(pos, typ, box, atom_virial=False)
            assert r.energy == one.energy and np.array_equal(r.forces, one.forces)
        f32 = res[1].forces
        f64 = DPModel(params[1], precision="double", **kw).evaluate(pos, typ, box).forces
    # model 1 really ran in float32: its forces differ from its double forces by float32
    # round-off (above double's, within C_ROUND u32 max|F| of test_mpi's bound)
    err = np.abs(f32 - f64).max() / np.abs(f64).max()
    assert 2.0 ** -40 < err < 1000 * 2.0 ** -24


def make_shared_devi_run(folder, device: str, overflow: bool = False):
    """make_run (16 atoms of rocksalt, 4 steps) with a 4-model ensemble and [model_devi] every 2,
    atomic: m1 has other networks and model 0's davg / dstd (shares the environment matrix), m2
    the same as m1 but one davg block moved (does not share), m3 another sel ([3, 3] with
    `overflow`: its list overflows at every deviation step)."""
    toml = make_run(folder, device, steps=4, every=2)
    p0 = read_model(toml.parent / "model.h5")
    kw = dict(ntypes=2, neuron=(4,), axis_neuron=2, fitting=(8,), rcut=2.9, rcut_smth=1.0)
    p1 = random_params(sel=[14, 14], seed=3, **kw)
    p1.descriptor.davg = p0.descriptor.davg.copy()
    p1.descriptor.dstd = p0.descriptor.dstd.copy()
    p2 = copy.deepcopy(p1)
    p2.descriptor.davg[0, :14, 0] += 1e-3   # the block of type 0 neighbours of type 0 centres
    p3 = random_params(sel=[3, 3] if overflow else [12, 16], seed=5, **kw)
    for k, p in enumerate((p1, p2, p3), start=1):
        write_model(p, toml.parent / f"m{k}.h5")
    text = toml.read_text().replace('file = "model.h5"', 'file = ["model.h5", "m1.h5", "m2.h5", "m3.h5"]', 1)
    toml.write_text(text + '\n[model_devi]\nevery = 2\natomic = true\n')
    return toml


def run_counted(toml):
    """Run `toml`; returns (simulation provider, kernel launches of the whole run)."""
    from numdp.kernels.cuda.opcount import OpCounter

    settings = load_run_settings(toml)
    model = DPModel(read_model(toml.parent / "model.h5"), nthreads=1, device=settings.model.device)
    sim, end = build_simulation(settings, model=model, screen=io.StringIO())
    counter = OpCounter()
    try:
        with counter.counting():
            sim.run(end)
    finally:
        sim.close()
    return sim.provider, counter.launches


def test_gpu_deviation_shares_the_environment_matrix_bit_for_bit(tmp_path, monkeypatch):
    """[model_devi] on the device with a 4-model ensemble: model 1 shares model 0's environment
    matrix at each of the 3 deviation steps (three launches fewer per step), model 2 (davg
    differs) and model 3 (another sel) do not; the run's files are byte for byte those of the same
    run with sharing switched off, and its rows equal the CPU run's (the CPU shares model 1 too)."""
    shared = make_shared_devi_run(tmp_path / "shared", "cuda")
    provider, launches = run_counted(shared)
    assert provider.shared_env == 3
    cpu = make_shared_devi_run(tmp_path / "cpu", "cpu")
    cpu_provider, _ = run_counted(cpu)
    assert cpu_provider.shared_env == 3
    assert_devi_rows_close(tmp_path / "cpu", tmp_path / "shared")

    monkeypatch.setattr(DPModel, "shares_environment", lambda self, other: False)
    alone = make_shared_devi_run(tmp_path / "alone", "cuda")
    provider, launches_alone = run_counted(alone)
    assert provider.shared_env == 0
    # 16 atoms: one chunk; per deviation step, env_pairs and the reverse index's two kernels
    assert launches_alone - launches == 3 * 3
    assert (tmp_path / "shared" / "model_devi.out").read_bytes() == (tmp_path / "alone" / "model_devi.out").read_bytes()
    one, two = frames(tmp_path / "shared"), frames(tmp_path / "alone")   # HDF5 files carry their creation time
    assert all(np.array_equal(one[k], two[k]) for k in one)
    one, two = (to_arrays(read_checkpoint(tmp_path / name / "ck.h5")) for name in ("shared", "alone"))
    assert one.keys() == two.keys() and all(np.array_equal(one[k], two[k]) for k in one)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_deviation_model_overflow_warns_once(tmp_path, device):
    """A deviation model whose list overflows at every deviation step warns once, as model 0 does
    (model 3's sel [3, 3] against ~14 neighbours per type)."""
    toml = make_shared_devi_run(tmp_path, device, overflow=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_counted(toml)
    overflow = [w for w in caught if issubclass(w.category, NeighborOverflowWarning)]
    assert len(overflow) == 1 and "sel = 3" in str(overflow[0].message)
