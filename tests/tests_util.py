"""Helpers for tests: write small DeePMD npy systems; finite-difference forces; tolerances from
the arithmetic; comparisons with DeePMD-kit's evaluations."""
from pathlib import Path

import numpy as np


def write_system(path, coord, box, atype, type_map, energy=None, force=None, virial=None, **extra):
    """Write a one-set DeePMD npy system; box None marks it non-periodic; extra: more set
    arrays by name (fparam=..., aparam=...), each written (nframes, -1)."""
    path = Path(path)
    s = path / "set.000"
    s.mkdir(parents=True)
    nf = coord.shape[0]
    (path / "type.raw").write_text("\n".join(str(int(t)) for t in atype) + "\n")
    (path / "type_map.raw").write_text("\n".join(type_map) + "\n")
    np.save(s / "coord.npy", coord.reshape(nf, -1))
    if box is None:
        (path / "nopbc").write_text("")
    else:
        np.save(s / "box.npy", box.reshape(nf, 9))
    for name, arr in (("energy", energy), ("force", force), ("virial", virial), *extra.items()):
        if arr is not None:
            np.save(s / f"{name}.npy", np.asarray(arr).reshape(nf, -1) if name != "energy" else arr)
    return path


def write_labelled_systems(root, model, compositions, nframes: int, box_len: float, seed_stride: int) -> None:
    """Systems root/sys0, sys1, ... of two types A and B, (na, nb) atoms each as `compositions`
    lists, `nframes` random periodic frames (box_len Å, tilted) whose energies are `model`'s (a
    DPModel): seeds seed_stride * k + frame."""
    from randmodel import random_config

    for k, (na, nb) in enumerate(compositions):
        types = np.array([0] * na + [1] * nb)
        coords, boxes, energies = [], [], []
        for f in range(nframes):
            pos, _, box = random_config(na + nb, 2, box_len=box_len, tilt=0.1, seed=seed_stride * k + f)
            coords.append(pos)
            boxes.append(box)
            energies.append(model.evaluate(pos, types, box, atom_virial=False).energy)
        write_system(Path(root) / f"sys{k}", np.array(coords), np.array(boxes), types, ["A", "B"],
                     energy=np.array(energies))


def assert_model_reproduces_labels(model, sysdir, nframes: int, tmp_path) -> None:
    """`model` (a .dp file) on `sysdir`, whose energies are the model's own: numdp test gives a
    zero error (< 1e-9 meV/atom), model-devi of the model against itself a zero deviation,
    change-bias no shift of the output bias (1e-9 eV)."""
    import json

    from numdp.cli import main
    from numdp.io.model_file import read_model

    model, sysdir = str(model), str(sysdir)
    assert main(["test", "-m", model, "-s", sysdir, "--json", str(tmp_path / "t.json")]) == 0
    fig = json.loads((tmp_path / "t.json").read_text())["overall"]
    assert fig["frames"] == nframes and fig["rmse_energy"] < 1e-9   # meV/atom
    assert main(["model-devi", "-m", model, model, "-s", sysdir, "-o", str(tmp_path / "md.out")]) == 0
    rows = np.loadtxt(tmp_path / "md.out")
    assert rows.shape == (nframes, 8) and np.all(rows[:, 1:] == 0.0)
    assert main(["change-bias", model, "-s", sysdir, "-o", str(tmp_path / "cb.dp")]) == 0
    shifted = read_model(tmp_path / "cb.dp")
    assert np.allclose(shifted.out_bias, read_model(model).out_bias, rtol=0, atol=1e-9)


def run_step0_energy(toml: Path, text: str) -> float:
    """Write the MD input `text` (steps = 0, [output] log = "log.txt", thermo_every = 1) to `toml`,
    run it with numdp run, and return the logged potential energy of step 0 (eV)."""
    from numdp.cli import main

    toml.write_text(text)
    assert main(["run", str(toml)]) == 0
    lines = [line.split() for line in (toml.parent / "log.txt").read_text().splitlines() if line.strip()]
    header = next(line for line in lines if line[0] == "step")
    row = next(line for line in lines if line[0] == "0")
    return float(row[header.index("pe")])


def input_error_message(fn, *args, **kw) -> str:
    """The message of the InputError that fn(*args, **kw) raises, checked to be one line."""
    import pytest

    from numdp.errors import InputError

    with pytest.raises(InputError) as exc:
        fn(*args, **kw)
    text = str(exc.value)
    assert "\n" not in text
    return text


def rel(a, b) -> float:
    """max |a - b| / max |b|: the largest difference relative to b's largest entry."""
    return np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max()


def fd_force(model, pos, types, box, i, c, h):
    """-(E(x + h) - E(x - h)) / 2h for coordinate c of atom i: the central-difference force (eV/Å)."""
    p = np.array(pos, dtype=float)
    p[i, c] += h
    ep = model.evaluate(p, types, box, atom_virial=False).energy
    p[i, c] -= 2 * h
    em = model.evaluate(p, types, box, atom_virial=False).energy
    return -(ep - em) / (2 * h)


def assert_finite_differences(model, pos, types, box, h=1e-5, atoms=(0, 4, 8), rel=2e-7):
    """The forces of `atoms` and the virial of `model` at (pos, types, box) against central
    differences of step h (fd_force, fd_virial) within rel of the scale (the largest force or
    virial entry, at least 1), and the total force zero within 1e-10 of it (as
    tests/test_model_physics.py).  Returns (the evaluation, the force scale)."""
    out = model.evaluate(pos, types, box)
    atoms = list(atoms)
    fd = np.array([[fd_force(model, pos, types, box, i, c, h) for c in range(3)] for i in atoms])
    scale = max(1.0, np.abs(out.forces).max())
    assert np.abs(out.forces[atoms] - fd).max() < rel * scale
    vir = fd_virial(model, pos, types, box, h)
    assert np.abs(out.virial - vir).max() < rel * max(1.0, np.abs(out.virial).max())
    assert np.abs(out.forces.sum(axis=0)).max() < 1e-10 * scale
    return out, scale


def fd_virial(model, pos, types, box, h):
    """(3, 3) eV: -(E(x m+) - E(x m-)) / 2h with m± = 1 ± h e_ab applied to the positions and the
    cell rows alike: the central-difference virial (−dE/dstrain)."""
    vir = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            e = []
            for s in (h, -h):
                m = np.eye(3)
                m[a, b] += s
                e.append(model.evaluate(pos @ m, types, box @ m, atom_virial=False).energy)
            vir[a, b] = -(e[0] - e[1]) / (2 * h)
    return vir


# -- round-off bounds for comparisons across arithmetic paths --------------------------------------
# Two evaluations of the same quantity whose sums run in another order (thread or rank
# decomposition, chunk sizes, the BLAS kernel's blocking, a folded or full layout) agree to
# round-off, not bit for bit.  A sum of n terms in any order is within gamma_n = n u / (1 - n u)
# of the exact sum, relative to the sum of the terms' magnitudes; through a chain of sums (a
# network's layers, then the neighbour sums) the n's add.  The magnitudes exceed the compared
# value's scale by a cancellation factor, taken as 10 (near-equilibrium forces, energies of mixed
# sign).  Two evaluations, each that far from the exact result: 2 * 10 * gamma_n.
U64 = 2.0 ** -53   # float64 unit round-off
U32 = 2.0 ** -24   # float32 (mix32 networks and tables)


def order_bound(u: float, n: int, cancel: float = 10.0) -> float:
    """Relative bound (to the compared values' scale) on the difference between two evaluations
    that sum chains of n terms in different orders in arithmetic of unit round-off u."""
    gamma = n * u / (1.0 - n * u)
    return 2.0 * cancel * gamma


def shift_fit_bound(counts, energies, n_terms: int) -> float:
    """Bound (eV) on the difference between per-type shifts fitted by least squares
    (numdp.model.bias.fit_type_shift) to frame energies and to the same energies evaluated
    another way (another summation order, or another bias added per atom): each energy a sum of
    chains of at most n_terms terms, off by at most order_bound(U64, n_terms)·max|E|.  A change e
    of the right-hand side moves the solution by at most ‖e‖₂ / σ_min(A) (A: the (nframes,
    ntypes) counts); lstsq's own backward error (order_bound(U64, nframes) of |E|) is amplified
    by cond(A) the same way."""
    A = np.asarray(counts, dtype=np.float64)
    s = np.linalg.svd(A, compute_uv=False)
    norm_e = np.sqrt(A.shape[0]) * float(np.abs(energies).max())
    return (order_bound(U64, n_terms) + order_bound(U64, A.shape[0]) * s.max() / s.min()) * norm_e / s.min()


DEEPMD_TOL = 1e-10
"""DeePMD-kit's float64 oracle requirement (../shared/oracle/README.md): relative error."""


def assert_matches_deepmd(result, ref, descriptor, float64: bool) -> None:
    """numdp's evaluation `result` (energy, atom_energies, forces, virial) against DeePMD-kit's of
    the same model, `ref` (the npz of tools/make_pth_fixtures.py or make_pb_fixtures.py), relative
    to each reference's largest entry: DEEPMD_TOL for a float64 model, order_bound(U32, n) for a
    float32 one, which DeePMD-kit evaluates in float32 (n the longest summation chain: neighbour
    slots + descriptor width + atoms, as tests/test_oracle.py)."""
    tol = DEEPMD_TOL if float64 else order_bound(U32, descriptor.nnei + descriptor.dim_out + len(ref["atype"]))
    for got, key in ((result.energy, "energy"), (result.atom_energies, "atom_energy"), (result.forces, "force"),
                     (result.virial, "virial")):
        want = np.asarray(ref[key])
        assert np.abs(np.asarray(got) - want).max() <= tol * np.abs(want).max(), key


def documented_langevin_normals(seed, step, stream, atom):
    """The three N(0, 1) numbers of one atom's Langevin update, from numdp.kernels.cpu.rng's
    documented key (counter: atom id, step low / high 32 bits, stream << 16 | block; key: seed
    low / high 32 bits) on the Philox block that tests/test_md_rng.py checks against Random123's
    known answers, and Box-Muller (cos, sin of one angle) on two 53-bit uniforms (u1 in (0, 1],
    u2 in [0, 1)): the tests' own reading of the documentation, not numdp's normals."""
    import math

    from numdp.kernels.cpu.rng import philox_block

    lo = 0xFFFFFFFF
    out = []
    for block in (0, 1):
        x0, x1, x2, x3 = philox_block((atom & lo, step & lo, step >> 32, (stream << 16) | block),
                                      (seed & lo, seed >> 32))
        u1 = 1.0 - float(((x0 << 21) | (x1 >> 11)) & (2**64 - 1)) * 2.0**-53
        u2 = float(((x2 << 21) | (x3 >> 11)) & (2**64 - 1)) * 2.0**-53
        r = math.sqrt(-2.0 * math.log(u1))
        out += [r * math.cos(2.0 * math.pi * u2), r * math.sin(2.0 * math.pi * u2)]
    return out[:3]
