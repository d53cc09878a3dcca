"""The CUDA evaluation (numdp.kernels.cuda, numdp.model.cuda_evaluator) against the CPU path.

Run under Numba's CUDA simulator (tests/conftest.py sets NUMBA_ENABLE_CUDASIM=1 unless
NUMDP_TEST_REAL_GPU=1), which executes every CUDA thread in Python: systems and nets are tiny.

Tolerances:
- CUDA double against CPU double, 1e-12 relative (of the largest magnitude of each quantity): both
  evaluate the same float64 expressions, only the summation orders differ (per-atom gathers
  instead of scatters, the matrix products' blocking); with sums of at most
  nnei + M + width ~ 50 terms of unit-size condition the difference is ~50 eps ~ 1e-14, so 1e-12
  leaves two orders of margin and still fails on any wrong term.
- mix32 / mix16 against double: u = 2^-24 (float32) or 2^-11 (float16 operands); every network
  value passes through L layers whose products sum K terms; the first-order error bound is
  u (L + 1) K_eff relative to the magnitudes, with K_eff = sqrt(K) for round-to-nearest errors of
  independent signs (probabilistic bound, Higham & Mary 2019) times a safety factor of 4.
"""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("numba_cuda")

from numdp.errors import InputError  # noqa: E402
from numdp.model.compress import compress  # noqa: E402
from numdp.model.dp_model import DPModel  # noqa: E402
from randmodel import random_config, random_params  # noqa: E402

# (name, params kwargs, config kwargs, s_max of the tables or None for uncompressed); s_max 0
# makes tables that end short of most pairs (the linear continuation beyond xmax is exercised)
CASES = {
    "2types-triclinic": (dict(ntypes=2, sel=[6, 8], neuron=(4, 8), fitting=(8, 8)),
                         dict(natoms=6, box_len=4.0, tilt=0.3), None),
    "2types-one-side-open": (dict(ntypes=2, sel=[6, 8], neuron=(4, 8, 8), type_one_side=True,
                                  resnet_dt=False, fitting=(8, 8), fit_resnet_dt=False),
                             dict(natoms=7), None),
    "1type-narrow-box": (dict(ntypes=1, sel=[14], neuron=(4, 8), fitting=(8,)),
                         dict(natoms=3, box_len=2.6, tilt=0.2), None),
    "3types-unfolded": (dict(ntypes=3, sel=[4, 4, 4], neuron=(2, 4), axis_neuron=2,
                             fitting=(8, 8)), dict(natoms=6, box_len=4.5, tilt=0.1), None),
    "2types-overflow-compressed": (dict(ntypes=2, sel=[3, 3], neuron=(4, 8), fitting=(8, 8)),
                                   dict(natoms=8, box_len=4.0, tilt=0.2), 0.0),
    "3types-one-side-compressed": (dict(ntypes=3, sel=[3, 4, 3], neuron=(4, 8), type_one_side=True,
                                        fitting=(8,)), dict(natoms=6), 1.5),
}


def _model(name, device="cpu", precision="double", chunk=None):
    kw, cfg, s_max = CASES[name]
    params = random_params(rcut=3.5, rcut_smth=0.8, seed=len(name), **kw)
    if s_max is not None:
        params, _ = compress(params, dx=0.02, order=5, s_max=np.full(params.descriptor.ntypes, s_max))
    pos, typ, box = random_config(ntypes=kw["ntypes"], seed=3, **cfg)
    return DPModel(params, nthreads=1, precision=precision, device=device, chunk=chunk), pos, typ, box


def _evaluate(model, pos, typ, box):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the overflow case warns on purpose
        return model.evaluate(pos, typ, box)


def _close(a, b, rel):
    scale = max(np.abs(a).max(), 1e-300)
    assert np.abs(np.asarray(a) - np.asarray(b)).max() <= rel * scale


@pytest.mark.parametrize("name", list(CASES))
def test_cuda_double_matches_cpu(name):
    cpu, pos, typ, box = _model(name)
    gpu = _model(name, device="cuda", chunk=4)[0]   # chunk 4: several chunks per system
    rc = _evaluate(cpu, pos, typ, box)
    rg = _evaluate(gpu, pos, typ, box)
    assert rg.energy == pytest.approx(rc.energy, rel=1e-12, abs=0)
    _close(rc.atom_energies, rg.atom_energies, 1e-12)
    _close(rc.forces, rg.forces, 1e-12)
    _close(rc.virial, rg.virial, 1e-12)
    _close(rc.atom_virials, rg.atom_virials, 1e-12)
    assert np.abs(rc.forces).max() > 1e-3   # the comparison is not between zeros
    assert gpu.beyond_table == cpu.beyond_table
    if CASES[name][2] == 0.0:
        assert gpu.beyond_table > 0   # the beyond-table continuation was exercised


def test_cuda_deterministic():
    gpu, pos, typ, box = _model("2types-triclinic", device="cuda", chunk=4)
    a = _evaluate(gpu, pos, typ, box)
    b = _evaluate(gpu, pos, typ, box)
    assert a.energy == b.energy
    for x, y in [(a.forces, b.forces), (a.virial, b.virial), (a.atom_virials, b.atom_virials)]:
        assert np.array_equal(x, y)


def _mixed_tolerance(u, model):
    d = model.params.descriptor
    L = len(d.neuron) + len(model.params.fitting.neuron) + 1
    K = max(d.nnei, d.neuron[-1] * d.axis_neuron, *d.neuron, *model.params.fitting.neuron)
    return 4 * u * (L + 1) * np.sqrt(K)


@pytest.mark.parametrize("precision,u", [("mix32", 2.0 ** -24), ("mix16", 2.0 ** -11)])
@pytest.mark.parametrize("name", ["2types-triclinic", "2types-overflow-compressed"])
def test_cuda_mixed_precision_against_double(name, precision, u):
    cpu, pos, typ, box = _model(name)
    gpu = _model(name, device="cuda", precision=precision)[0]
    rc = _evaluate(cpu, pos, typ, box)
    rg = _evaluate(gpu, pos, typ, box)
    tol = _mixed_tolerance(u, cpu)
    # the network part of the energy (the per-type biases are exact in every precision)
    net = rc.atom_energies - (cpu._ev.atom_bias[typ])
    _close(net, rg.atom_energies - cpu._ev.atom_bias[typ], tol)
    _close(rc.forces, rg.forces, tol)
    _close(rc.atom_virials, rg.atom_virials, tol)
    # and the error is really of the precision's size (the policy is applied, not double)
    assert np.abs(rc.forces - rg.forces).max() > 1e-3 * u * np.abs(rc.forces).max()


def test_cuda_finite_differences():
    """Forces = -dE/dx and the virial = -dE/dε (homogeneous deformation x -> x (1 + ε) of
    positions and box) through the CUDA path.  Central differences with h = 1e-5: truncation
    h² |E'''| / 6 ~ 1e-10 and round-off eps |E| / h ~ 5e-10 (|E| ~ 25 eV); the tolerance 1e-7 is
    far above both and far below the forces' scale (~0.1 eV/Å), so a wrong term fails."""
    gpu, pos, typ, box = _model("2types-triclinic", device="cuda")
    r = _evaluate(gpu, pos, typ, box)
    h = 1e-5
    for i, c in [(0, 0), (3, 2)]:
        e = []
        for s in (h, -h):
            p = pos.copy()
            p[i, c] += s
            e.append(_evaluate(gpu, p, typ, box).energy)
        assert -(e[0] - e[1]) / (2 * h) == pytest.approx(r.forces[i, c], abs=1e-7)
    for a, b in [(0, 0), (1, 2)]:
        e = []
        for s in (h, -h):
            F = np.eye(3)
            F[a, b] += s
            e.append(_evaluate(gpu, pos @ F, typ, box @ F).energy)
        assert -(e[0] - e[1]) / (2 * h) == pytest.approx(r.virial[a, b], abs=1e-7)


def test_cuda_descriptor_matches_cpu():
    cpu, pos, typ, box = _model("3types-unfolded")
    gpu = _model("3types-unfolded", device="cuda")[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _close(cpu.descriptor(pos, typ, box), gpu.descriptor(pos, typ, box), 1e-12)


def test_unavailable_device_errors(monkeypatch):
    import importlib.util

    from numdp import backend

    monkeypatch.setattr(backend, "_CACHE", {})
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "numba_cuda" else real(n, *a))
    with pytest.raises(InputError, match=r"numba-cuda.*pip install 'numdp\[cuda\]'"):
        backend.get_backend("cuda")
    monkeypatch.setattr(importlib.util, "find_spec", real)
    monkeypatch.setattr(backend, "cuda_simulator_enabled", lambda: False)
    from numba import cuda

    monkeypatch.setattr(cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="no usable NVIDIA GPU"):
        backend.get_backend("cuda")
    with pytest.raises(InputError, match="not one of cpu, cuda"):
        backend.get_backend("tpu")


@pytest.mark.skipif(os.environ.get("NUMDP_TEST_REAL_GPU") == "1", reason="a GPU is present")
def test_cli_cuda_without_gpu_exits_2(tmp_path):
    """`numdp test --device cuda` on a machine without GPU and with the simulator off: one line,
    exit 2, before the model file is read."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    out = subprocess.run([sys.executable, "-m", "numdp.cli", "test", "-m", str(tmp_path / "m.dp"),
                          "-s", str(tmp_path), "--device", "cuda"], capture_output=True, text=True, env=env)
    assert out.returncode == 2, out.stderr
    msg = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    assert len(msg) == 1 and "cuda" in msg[0], msg


def test_cpu_path_does_not_import_numba_cuda():
    code = ("import sys, numpy as np, numdp; sys.path.insert(0, 'tests');"
            "from randmodel import random_params, random_config;"
            "from numdp.model.dp_model import DPModel;"
            "p = random_params(ntypes=1, sel=[6], neuron=(2, 4), fitting=(4,));"
            "pos, typ, box = random_config(3, 1, box_len=4.0);"
            "DPModel(p, nthreads=1).evaluate(pos, typ, box);"
            "print('numba.cuda' in sys.modules)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_cuda_oracle_water_cluster(oracle_dir):
    """DeePMD-kit's water.dp (uncompressed) on the oracle's 30-atom open cluster through the whole
    CUDA path (device neighbour search, environment, embedding products, fitting, forces, ghost
    fold), every output against DeePMD-kit at the oracle's tolerance (tests/test_oracle.py: 1e-10
    relative, the same derivation: float64 throughout, summation orders differ).  A few seconds
    in the simulator: grid-stride kernels on a small grid, nets run on occupied slots only."""
    from numdp.io.model_file import read_model
    from test_oracle import TOL, rel_err

    ref = np.load(oracle_dir / "water_cluster.npz")
    out = DPModel(read_model(oracle_dir / "water.dp"), device="cuda").evaluate(ref["coord"][0], ref["atype"], None)
    assert rel_err(out.energy, ref["energy"][0]) <= TOL
    assert rel_err(out.atom_energies, ref["atom_energy"][0]) <= TOL
    assert rel_err(out.forces, ref["force"][0]) <= TOL
    assert rel_err(out.virial, ref["virial"][0]) <= TOL
    assert rel_err(out.atom_virials, ref["atom_virial"][0]) <= TOL


@pytest.mark.slow
def test_cuda_oracle_water_triclinic_atom_energies(oracle_dir):
    """The periodic path against DeePMD-kit: water.dp on the oracle's triclinic frames (a cell
    narrower than 2 rcut, sheared; then rigidly rotated into a general 3 x 3 cell), the first
    three atoms (O, H, H) evaluated on the CUDA path as centres among all their periodic
    neighbours (the CPU-built list, equal to the device's: tests/test_cuda_neighbor.py; the
    device search of all 192 centres is too slow for the simulator).  An atomic energy depends on
    the atoms within rcut of its atom only, so DeePMD-kit's are the exact reference: the oracle's
    tolerance (1e-10)."""
    from numdp.io.model_file import read_model
    from test_oracle import TOL, rel_err

    ref = np.load(oracle_dir / "water_triclinic.npz")
    params = read_model(oracle_dir / "water.dp")
    cpu = DPModel(params, nthreads=1)
    gpu = DPModel(params, device="cuda")
    centres = 3
    for f in range(ref["coord"].shape[0]):
        typ, ext, nl = cpu._prepare(ref["coord"][f], ref["atype"], ref["box"][f])
        assert ext.nall > 5 * ext.nloc   # many periodic images
        raw = gpu._ev.compute(ext.positions, nl.nlist[:centres], typ[:centres])
        assert rel_err(raw.atom_energy, ref["atom_energy"][f][:centres]) <= TOL


@pytest.mark.slow
def test_cuda_oracle_water_cluster_compressed(oracle_dir):
    """DeePMD-kit's water.dp, compressed (order 5, dx 0.01), on the oracle's 30-atom open cluster
    through the CUDA path.
    Against the CPU compressed path: 1e-12 (same arithmetic, other summation order).  Against
    DeePMD-kit's uncompressed evaluation: 1e-6 eV and eV/Å, the table error bound established on
    the CPU (tests/test_compress.py::test_compressed_forces_within_1e6_of_network)."""
    from numdp.io.model_file import read_model

    ref = np.load(oracle_dir / "water_cluster.npz")
    params, _ = compress(read_model(oracle_dir / "water.dp"), dx=0.01, order=5)
    pos, typ = ref["coord"][0], ref["atype"]
    rg = DPModel(params, device="cuda").evaluate(pos, typ, None)
    rc = DPModel(params, nthreads=1).evaluate(pos, typ, None)
    assert rg.energy == pytest.approx(rc.energy, rel=1e-12, abs=0)
    _close(rc.forces, rg.forces, 1e-12)
    _close(rc.atom_virials, rg.atom_virials, 1e-12)
    assert abs(rg.energy - ref["energy"][0]) <= 1e-6
    assert np.abs(rg.forces - ref["force"][0]).max() <= 1e-6
    assert np.abs(rg.atom_virials - ref["atom_virial"][0]).max() <= 1e-6


@pytest.mark.parametrize("precision,rel", [("double", 1e-12), ("mix32", 2.0 ** -24 * 64)])
def test_cuda_fused_embedding_matches_gemm(precision, rel, monkeypatch):
    """The fused per-pair embedding kernel against the batched-product path (same arithmetic up to
    the order of each dot product: 1e-12 in double as above; in float32 a few units of 2^-24 per
    layer, 64 u leaves margin), with residual layers of both kinds (neuron 4, 8, 8)."""
    gemm, pos, typ, box = _model("2types-one-side-open", device="cuda", precision=precision)
    fused = _model("2types-one-side-open", device="cuda", precision=precision)[0]
    fused._ev.embedding = "fused"
    from numdp.kernels.cuda import embedding

    calls = []
    real = embedding.embed_fused_for
    monkeypatch.setattr(embedding, "embed_fused_for", lambda dt: calls.append(dt) or real(dt))
    a = _evaluate(gemm, pos, typ, box)
    assert not calls
    b = _evaluate(fused, pos, typ, box)
    assert calls   # the fused kernel ran
    _close(a.atom_energies - gemm._ev.atom_bias[typ], b.atom_energies - gemm._ev.atom_bias[typ], rel)
    _close(a.forces, b.forces, rel)
    with pytest.raises(InputError, match="mix16"):
        _model("2types-one-side-open", device="cuda", precision="mix16")[0]._ev.embedding = "fused"


def test_numdp_test_device_cuda_matches_cpu(tmp_path):
    """`numdp test --device cuda` gives the CPU's figures (1e-10 relative: RMSEs of values that
    agree to 1e-12, see test_cuda_double_matches_cpu)."""
    import json

    from numdp.cli import main
    from numdp.io.model_file import write_model
    from tests_util import write_system

    kw, cfg, _ = CASES["2types-triclinic"]
    params = random_params(rcut=3.5, rcut_smth=0.8, **kw)
    write_model(params, tmp_path / "m.h5")
    frames = [random_config(ntypes=2, seed=s, **cfg) for s in (1, 2)]
    coord = np.stack([f[0] for f in frames])
    box = np.stack([f[2] for f in frames])
    sysdir = write_system(tmp_path / "s", coord, box, frames[0][1], ["A", "B"],
                          energy=np.array([-20.0, -21.0]), force=np.zeros_like(coord),
                          virial=np.zeros((2, 3, 3)))
    figs = {}
    for dev in ("cpu", "cuda"):
        out = tmp_path / f"{dev}.json"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert main(["test", "-m", str(tmp_path / "m.h5"), "-s", str(sysdir), "--device", dev,
                         "--threads", "1", "--json", str(out)]) == 0
        figs[dev] = json.loads(out.read_text())["overall"]
    for key in ("rmse_energy", "rmse_force", "rmse_virial"):
        assert figs["cuda"][key] == pytest.approx(figs["cpu"][key], rel=1e-10)
        assert figs["cpu"][key] > 0


@pytest.mark.parametrize("name,precision", [("2types-overflow-compressed", "double"),
                                            ("3types-one-side-compressed", "mix32"),
                                            ("2types-triclinic", "double"), ("3types-unfolded", "double")])
def test_cuda_team_kernels_match_thread_kernels(name, precision, monkeypatch):
    """KernelForm.TEAM (team kernel for T: the same bits; back_D as batched products: another
    summation order of the same float64 terms) against the default: 1e-12 as above, in mix32 too
    (both sum the adjoint in float64 from the same float32 dE/dD).  Folded and full D layouts."""
    from numdp.model import cuda_evaluator as ce

    thread, pos, typ, box = _model(name, device="cuda", precision=precision, chunk=4)
    team = _model(name, device="cuda", precision=precision, chunk=4)[0]
    team._ev.kernel_form = ce.KernelForm.TEAM
    calls = []
    real = ce.back_D_products
    monkeypatch.setattr(ce, "back_D_products", lambda *a: calls.append(1) or real(*a))
    a = _evaluate(thread, pos, typ, box)
    assert not calls
    b = _evaluate(team, pos, typ, box)
    assert calls   # the team path ran
    assert a.energy == pytest.approx(b.energy, rel=1e-12, abs=0)
    _close(a.atom_energies, b.atom_energies, 1e-12)
    _close(a.forces, b.forces, 1e-12)
    _close(a.virial, b.virial, 1e-12)
    _close(a.atom_virials, b.atom_virials, 1e-12)
    assert team.beyond_table == thread.beyond_table


def test_cuda_atomic_assembly_matches_gather():
    """The atomics variant (kept for the benchmark's cost comparison) sums the same terms in
    another order: 1e-12 as above."""
    gpu, pos, typ, box = _model("2types-triclinic", device="cuda", chunk=4)
    a = _evaluate(gpu, pos, typ, box)
    gpu._ev.assembly = "atomic"
    b = _evaluate(gpu, pos, typ, box)
    _close(a.forces, b.forces, 1e-12)
    _close(a.virial, b.virial, 1e-12)
    _close(a.atom_virials, b.atom_virials, 1e-12)


def test_cuda_ghost_forces_folded_on_device(monkeypatch):
    """DPModel.evaluate on the device folds ghost forces and atomic virials onto their owners on
    the device (the host fold is never called), in np.bincount's order (each owner itself first,
    then its images in index order, from 0.0): the same bits as the host fold of the unfolded
    device output.  A box narrower than the cutoff: every atom has many images.  Against the CPU
    path: 1e-12, as test_cuda_double_matches_cpu."""
    from numdp.model import dp_model

    cpu, pos, typ, box = _model("1type-narrow-box")
    gpu = _model("1type-narrow-box", device="cuda")[0]
    rc = _evaluate(cpu, pos, typ, box)

    def host_fold(*a):
        raise AssertionError("the host fold ran on the device path")

    monkeypatch.setattr(dp_model, "fold_to_owners", host_fold)
    rg = _evaluate(gpu, pos, typ, box)
    monkeypatch.undo()
    _close(rc.forces, rg.forces, 1e-12)
    _close(rc.atom_virials, rg.atom_virials, 1e-12)
    _, dn, _ = gpu._prepare(pos, typ, box)
    mapping = gpu._backend.to_host(dn.mapping)
    assert dn.nall > 4 * dn.nloc   # ghosts to fold
    raw = gpu._ev.compute(dn.positions, dn.nlist, typ, want_atom_virial=True)
    assert np.array_equal(rg.forces, dp_model.fold_to_owners(raw.force, mapping, len(typ)))
    assert np.array_equal(rg.atom_virials, dp_model.fold_to_owners(raw.atom_virial, mapping, len(typ)))


def test_cuda_overlapping_atoms_named_as_on_cpu():
    """The device path refuses atoms on top of each other with the CPU path's error, word for
    word (the closest pair is a device reduction over the first slot of each per-type block):
    two atoms at one place (periodic, non-periodic, and the descriptor path), an atom placed one
    cell vector away from another (wrapped onto it), a pair just below OVERLAP_DISTANCE, and an
    atom on a periodic image of another across the cell face."""
    from numdp.neighbor.overlap import OVERLAP_DISTANCE

    params = random_params(ntypes=2, sel=[12, 12], neuron=(2, 4), fitting=(4,), seed=1)
    cpu = DPModel(params, nthreads=1)
    gpu = DPModel(params, device="cuda")
    box = np.eye(3) * 6.0
    x0 = np.random.default_rng(0).uniform(0.5, 5.5, (10, 3))
    t = np.array([0, 1] * 5)
    cases = []
    for second, shift, b in [(7, 0.0, box), (7, 0.0, None), (4, box[0], box),
                             (7, [0.5 * OVERLAP_DISTANCE, 0.0, 0.0], box)]:
        x = x0.copy()
        x[second] = x[1 if second == 4 else 2] + shift
        cases.append((x, b))
    x = x0.copy()   # across the cell face: only a periodic image is close
    x[1, 0] = 0.25 * OVERLAP_DISTANCE
    x[4] = x[1] + [6.0 - 0.5 * OVERLAP_DISTANCE, 0.0, 0.0]
    cases.append((x, box))
    images = 0
    for x, b in cases:
        msgs = []
        for m in (cpu, gpu):
            with pytest.raises(InputError, match="on top of each other") as err:
                m.evaluate(x, t, b)
            msgs.append(str(err.value))
        assert msgs[0] == msgs[1]
        assert "\n" not in msgs[1]
        images += "a periodic image of" in msgs[1]
    assert images == 1
    with pytest.raises(InputError, match=r"atoms 2 \(A\) and 7 \(B\)"):
        gpu.descriptor(cases[0][0], t, box)
