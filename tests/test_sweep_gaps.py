"""Gaps left by earlier sweeps: i-PI's flexible-cell (NST) dynamics and the virial tensor on the
wire; frame and atomic parameters through the dpdata driver; the compressed tables' last
interval at and beyond xmax."""
import socket
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import numdp
from numdp.io.structure import read_extxyz
from numdp.units import IPI_BOHR_PER_ANGSTROM as BOHR, IPI_HARTREE_PER_EV as HARTREE
from test_ipi import SHEAR, _ipi_executable
from test_sweep_ipi import _read_bin

ROOT = Path(__file__).resolve().parents[1]
WATER = ROOT / "inputs" / "water"
MODEL = WATER / "model.h5"

# --- i-PI: constant stress (NST), a flexible triclinic cell -------------------------------------

NST_STEPS = 3
NST_INPUT = """<simulation verbosity='low' floatformat='%.17e' sockets_prefix='{prefix}'>
  <output prefix='sim'>
    <properties stride='1' filename='out'> [ step, volume, virial_md ] </properties>
    <trajectory filename='pos' stride='1' format='bin'> positions </trajectory>
  </output>
  <total_steps>{steps}</total_steps>
  <prng><seed>31415</seed></prng>
  <ffsocket name='numdp' mode='unix' pbc='false'><address>numdp</address></ffsocket>
  <system>
    <initialize nbeads='1'>
      <file mode='xyz' units='angstrom'> ipi.xyz </file>
      <velocities mode='thermal' units='kelvin'> 300 </velocities>
    </initialize>
    <forces><force forcefield='numdp'/></forces>
    <ensemble><temperature units='kelvin'>300</temperature>
      <stress units='gigapascal'> [ 1.0, 0.5, 0.0, 0.5, 1.0, 0.0, 0.0, 0.0, 1.0 ] </stress>
    </ensemble>
    <motion mode='dynamics'>
      <dynamics mode='nst'><timestep units='femtosecond'>0.5</timestep>
        <thermostat mode='langevin'><tau units='femtosecond'>100</tau></thermostat>
        <barostat mode='anisotropic'><tau units='femtosecond'>20</tau>
          <thermostat mode='langevin'><tau units='femtosecond'>100</tau></thermostat>
          <h0 shape='(3,3)' units='angstrom'> [ {h0} ] </h0>
        </barostat>
      </dynamics>
    </motion>
  </system>
</simulation>
"""


def _tilted_ipi_start(tmp_path):
    """The water box sheared by test_ipi.SHEAR (box rows lower triangular, so i-PI's h = box^T is
    upper triangular, as i-PI requires) as i-PI's xyz; returns (types, h in Å)."""
    s = read_extxyz(WATER / "start.xyz")
    box, pos = s.box @ SHEAR, s.positions @ SHEAR
    h = box.T
    head = [str(s.natoms), "# CELL(H): " + " ".join(f"{v:.17g}" for v in h.ravel())
            + " cell{angstrom} positions{angstrom}"]
    rows = [f"{e} {x:.17g} {y:.17g} {z:.17g}" for e, (x, y, z) in zip(s.elements, pos)]
    (tmp_path / "ipi.xyz").write_text("\n".join(head + rows) + "\n")
    return np.array([{"O": 0, "H": 1}[e] for e in s.elements]), h


@pytest.mark.slow
def test_ipi_nst_flexible_cell_gets_the_full_virial_tensor(tmp_path):
    """i-PI's NST dynamics (anisotropic Raiteri-Gale-Bussi barostat, external stress with a
    shear component) on a triclinic water box: every step, the six components of the virial i-PI
    received (virial_md * V: i-PI keeps the upper triangle of the matrix on the wire, in Ha) are
    numdp's -dE/dstrain at i-PI's positions and cell (i-PI's W_ab = sum f_a r_b = DeePMD-kit's
    W^T, equal for a symmetric virial); the off-diagonal ones are large against the tolerance (a
    client sending only the trace, or only the diagonal, fails), and the cell changes shape,
    off-diagonal entries included (the run is a flexible-cell one)."""
    types, h_start = _tilted_ipi_start(tmp_path)
    prefix = f"{tmp_path}/s_"
    (tmp_path / "input.xml").write_text(NST_INPUT.format(
        prefix=prefix, steps=NST_STEPS, h0=", ".join(f"{v:.17g}" for v in h_start.ravel())))
    client = subprocess.Popen(
        [sys.executable, "-m", "numdp.cli", "ipi", "-m", str(MODEL), "--unix", "numdp",
         "--sockets-prefix", prefix, "--init", "ipi.xyz", "--threads", "1", "--wait", "60"],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    server = subprocess.Popen([sys.executable, _ipi_executable(), "input.xml"], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        log = server.communicate(timeout=120)[0].decode(errors="replace")
        err = client.communicate(timeout=60)[1]
    finally:
        for p in (server, client):
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    assert server.returncode == 0, log[-2000:]
    assert client.returncode == 0, err
    assert f"{NST_STEPS + 1} evaluations; stopped on EXIT" in err, err
    props = np.loadtxt(tmp_path / "sim.out", ndmin=2)
    frames = _read_bin(tmp_path / "sim.pos_0.bin")
    assert len(frames) == len(props) == NST_STEPS + 1
    model = numdp.load_model(MODEL, nthreads=1)
    upper = np.triu_indices(3)
    for k, (h, q) in enumerate(frames):
        ref = model.evaluate(q / BOHR, types, h.T / BOHR, atom_virial=False)
        vol = props[k, 1]
        assert abs(vol - np.linalg.det(h)) <= 1e-12 * vol   # the frame is the step's
        w = ref.virial * HARTREE   # Ha
        expect = np.array([w[0, 0], w[1, 1], w[2, 2], w[0, 1], w[0, 2], w[1, 2]])
        # positions and cell reach the client through the same Bohr factor, the virial returns
        # through the same eV -> Ha one: round-off of the ~1e4-term pair sums, 1e-11 of the
        # largest component leaves orders of margin
        tol = 1e-11 * np.abs(w).max()
        assert np.allclose(props[k, 2:8] * vol, expect, rtol=0, atol=tol), k
        assert np.abs(expect[3:]).min() > 1e4 * tol   # the shear components are tested
        # the model's virial is symmetric to round-off: its two triangles are one tensor
        assert np.abs(w - w.T).max() <= tol
        assert np.array_equal(h, np.triu(h))   # i-PI's h stays upper triangular
    # the cell changed shape: every upper entry of h moved, the off-diagonal ones included
    moved = np.abs(frames[-1][0] - frames[0][0])[upper]
    assert np.all(moved > 1e-8 * np.abs(frames[0][0]).max()), moved


def _hdr(word):
    return word.upper().ljust(12).encode()


def test_ipi_virial_on_the_wire_is_deepmd_kits_transposed():
    """The nine virial numbers of FORCEREADY, read the way i-PI reads them (row-major into a
    (3, 3) array), are the evaluator's virial transposed, in Ha: i-PI's W_ab = sum_i f_ia r_ib
    is DeePMD-kit's (-sum r_a dE/dr_b) transposed, and DeePMD-kit's own dp_ipi sends
    virial[i] = dvirial[(i % 3) * 3 + i / 3].  A virial that is not symmetric tells a transposed
    or symmetrised client from the right one (the NST test above cannot: a model's virial is
    symmetric)."""
    from numdp.ipi import serve

    n = 4
    pos = np.arange(3.0 * n).reshape(n, 3)
    h = np.diag([20.0, 21.0, 22.0])
    w = np.arange(1.0, 10.0).reshape(3, 3) ** 2   # eV, not symmetric
    server, client = socket.socketpair()
    try:
        server.sendall(_hdr("INIT") + struct.pack("=ii", 0, 0) + _hdr("POSDATA") + h.tobytes()
                       + np.linalg.inv(h).tobytes() + struct.pack("=i", n) + pos.tobytes()
                       + _hdr("GETFORCE") + _hdr("EXIT"))
        session = serve(client, lambda p, box: (-1.0, np.zeros((len(p), 3)), w), n)
        reply = b""
        while len(reply) < 12 + 12 + 24 * n + 72 + 4:
            reply += server.recv(1 << 16)
    finally:
        server.close()
        client.close()
    assert session.exited and session.evaluations == 1
    off = 12 + 12 + 24 * n
    vir = np.frombuffer(reply[off:off + 72], np.float64).reshape(3, 3)   # as i-PI reads it
    # one multiplication by the eV -> Ha factor: exact to half an ulp
    assert np.allclose(vir, w.T * HARTREE, rtol=2.3e-16, atol=0)
    dp_ipi = np.array([w.ravel()[(i % 3) * 3 + i // 3] for i in range(9)]) * HARTREE
    assert np.allclose(vir.ravel(), dp_ipi, rtol=2.3e-16, atol=0)


# --- dpdata driver: frame and atomic parameters -------------------------------------------------

FPARAM_DIR = ROOT / "tests" / "data" / "fparam"
APARAM_DIR = ROOT / "tests" / "data" / "aparam"


def _reference(folder):
    """The DeePMD-kit reference frames and results of tests/data/fparam or aparam, as a dict."""
    with np.load(folder / "reference.npz") as z:
        return dict(z)


def _register_inputs():
    """dpdata's data types "fparam" (nframes, nfp) and "aparam" (nframes, natoms, nap), as its
    documentation registers them (and its LMDB format does; the same shapes and deepmd names),
    unless registered already."""
    import dpdata
    from dpdata.data_type import Axis, DataType

    for cls in (dpdata.System, dpdata.LabeledSystem):
        have = {dt.name for dt in cls.DTYPES}
        new = [dt for dt in (DataType("fparam", np.ndarray, (Axis.NFRAMES, -1), required=False,
                                      deepmd_name="fparam"),
                             DataType("aparam", np.ndarray, (Axis.NFRAMES, Axis.NATOMS, -1),
                                      required=False, deepmd_name="aparam"))
               if dt.name not in have]
        if new:
            cls.register_data_type(*new)


def _system(ref, **extra):
    import dpdata

    types = np.asarray(ref["atype"], dtype=int)
    data = {"atom_names": ["O", "H"], "atom_numbs": [int((types == t).sum()) for t in (0, 1)],
            "atom_types": types, "orig": np.zeros(3), "coords": np.array(ref["coord"]),
            "cells": np.array(ref["box"]), **extra}
    return dpdata.System(data=data)


def _direct(model, ref, fparams, aparams):
    """Energies, forces, virials of model.evaluate frame by frame with the given parameters."""
    outs = [model.evaluate(ref["coord"][f], ref["atype"], ref["box"][f], atom_virial=False,
                           fparam=fparams[f], aparam=aparams[f]) for f in range(len(ref["coord"]))]
    return (np.array([o.energy for o in outs]), np.array([o.forces for o in outs]),
            np.array([o.virial for o in outs]))


def _same_labels(labeled, direct):
    """The driver's labels are model.evaluate's bit for bit (one evaluate call per frame, the
    same arguments)."""
    e, f, v = direct
    assert np.array_equal(labeled["energies"], e)
    assert np.array_equal(labeled["forces"], f)
    assert np.array_equal(labeled["virials"], v)


def test_dpdata_driver_takes_the_systems_fparam_and_aparam():
    """A dpdata System holding "fparam" and "aparam" (registered data types: what deepmd/npy reads
    from fparam.npy / aparam.npy) is labelled with them, frame by frame (was: ignored, so a model
    without default_fparam failed with "give fparam" and one with a default was labelled at the
    default).  The energies are DeePMD-kit's for the same parameters (oracle tolerance)."""
    from numdp.dpdata_driver import NumdpDriver
    from test_oracle import TOL, rel_err

    _register_inputs()
    ref = _reference(APARAM_DIR)
    fp, ap = ref["fparam_aparam_fparam"], ref["fparam_aparam_aparam"]   # (3, 1), (3, 12, 2)
    model = numdp.load_model(APARAM_DIR / "fparam_aparam.dp", nthreads=1)
    labeled = _system(ref, fparam=fp, aparam=ap).predict(driver=NumdpDriver(model))
    _same_labels(labeled, _direct(model, ref, fp, ap))
    assert rel_err(labeled["energies"], ref["fparam_aparam_energy"]) <= TOL
    # a model with a default_fparam takes the system's, not its default
    ref = _reference(FPARAM_DIR)
    fp = ref["fparam_default_fparam"]
    model = numdp.load_model(FPARAM_DIR / "fparam_default.dp", nthreads=1)
    labeled = _system(ref, fparam=fp).predict(driver=NumdpDriver(model))
    _same_labels(labeled, _direct(model, ref, fp, [None] * 3))
    assert rel_err(labeled["energies"], ref["fparam_default_energy"]) <= TOL
    assert np.abs(labeled["energies"] - ref["default_energy"]).min() > 1e3 * TOL * np.abs(
        ref["default_energy"]).max()   # the default would give other energies


def test_dpdata_driver_fparam_aparam_keywords_as_deepmd_kit_eval():
    """predict(model, driver="numdp", fparam=..., aparam=...): the sizes DeePMD-kit's
    DeepPot.eval takes (per frame, or one set for every frame / every atom); the labels are
    model.evaluate's with the same parameters."""
    ref = _reference(APARAM_DIR)
    path = str(APARAM_DIR / "fparam_aparam.dp")
    model = numdp.load_model(path, nthreads=1)
    fp, ap = ref["fparam_aparam_fparam"], ref["fparam_aparam_aparam"]
    system = _system(ref)
    labeled = system.predict(path, driver="numdp", threads=1, fparam=fp, aparam=ap)
    _same_labels(labeled, _direct(model, ref, fp, ap))
    # one fparam for every frame, one aparam row (natoms x nap) for every frame, one set for
    # every atom
    for a in (ap[1], ap[1, 3]):
        labeled = system.predict(path, driver="numdp", threads=1, fparam=fp[1], aparam=a)
        _same_labels(labeled, _direct(model, ref, [fp[1]] * 3, [a] * 3))


@pytest.mark.parametrize("case, message", [
    ("both", "the system holds fparam and the driver was given fparam too: give them once"),
    ("size", "fparam has 2 values; for 3 frame(s) of 12 atoms give 3 x 1 or 1"),
    ("aparam_size", "aparam has 5 values; for 3 frame(s) of 12 atoms give 3 x 12 x 2, 12 x 2 or 2"),
    ("unused", "aparam given, but the model takes no atomic parameters (numb_aparam 0)"),
])
def test_dpdata_driver_parameter_mistakes_are_one_line(case, message):
    from numdp.dpdata_driver import NumdpDriver
    from numdp.errors import InputError

    _register_inputs()
    ref = _reference(APARAM_DIR)
    fp, ap = ref["fparam_aparam_fparam"], ref["fparam_aparam_aparam"]
    path = FPARAM_DIR / "fparam.dp" if case == "unused" else APARAM_DIR / "fparam_aparam.dp"
    kwargs = {"both": dict(fparam=fp, aparam=ap), "size": dict(fparam=[1.0, 2.0], aparam=ap),
              "aparam_size": dict(fparam=fp, aparam=np.ones(5)),
              "unused": dict(aparam=ap)}[case]
    system = _system(ref, fparam=fp) if case == "both" else _system(ref)
    with pytest.raises(InputError) as err:
        system.predict(driver=NumdpDriver(str(path), threads=1, **kwargs))
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


# --- compressed tables: the last interval at and beyond xmax ------------------------------------

def _two_stride_table(order):
    """A Table on [0, 3]: fine step 0.25 to upper = 1, coarse step 0.5 to xmax = 3 (4 + 4
    intervals, all binary fractions: (xmax - upper) / h1 is exactly 4 = nint - n0, so an input
    at xmax indexes one past the last interval unless clamped).  Random coefficients, different
    in every interval, so a neighbouring interval's polynomial gives other numbers."""
    from numdp.model.tables import Table

    coef = np.random.default_rng(11).uniform(-1.0, 1.0, size=(8, order + 1, 5))
    return Table(lower=0.0, upper=1.0, xmax=3.0, h0=0.25, h1=0.5, n0=4, coef=coef)


def _last_piece(table, x):
    """Value and slope (n, M) DeePMD-kit's tabulate gives at x >= xmax (locate_xx: the last
    interval at tau = xmax - its node, plus the slope there times x - xmax)."""
    c = table.coef[-1]                       # (order+1, M), c[k] multiplies tau^k
    tau = table.xmax - (table.upper + 3 * table.h1)
    k = np.arange(c.shape[0])
    v = (c * tau ** k[:, None]).sum(axis=0)
    d = (c[1:] * (k[1:] * tau ** (k[1:] - 1))[:, None]).sum(axis=0)
    ex = np.asarray(x) - table.xmax
    return v + ex[:, None] * d, np.broadcast_to(d, (len(ex), d.size))


# |coefficients| <= 1, tau <= 0.5, excess <= 0.75: every value and slope is a sum of at most 6
# terms of size <= 5, each formed in a few roundings; 1e-13 is 100 ulps of that
TABLE_TOL = 1e-13
AT_AND_BEYOND = np.array([3.0, np.nextafter(3.0, 4.0), 3.75])


@pytest.mark.parametrize("order", [3, 5])
def test_table_at_and_beyond_xmax_uses_the_last_interval(order):
    """numdp.model.tables.evaluate_table (the reference `numdp compress` checks its tables with):
    at exactly xmax and beyond it, the last interval's polynomial continued linearly."""
    from numdp.model.tables import evaluate_table

    table = _two_stride_table(order)
    val, der = evaluate_table(table, AT_AND_BEYOND)
    want_v, want_d = _last_piece(table, AT_AND_BEYOND)
    assert np.allclose(val, want_v, rtol=0, atol=TABLE_TOL)
    assert np.allclose(der, want_d, rtol=0, atol=TABLE_TOL)


@pytest.mark.parametrize("order", [3, 5])
def test_tabulated_kernel_at_and_beyond_xmax_uses_the_last_interval(order):
    """The CPU kernel (tab_contract_T, the compressed model's forward pass) on one pair per
    input, two nets packed back to back (net 1's intervals follow net 0's, as in a model): the
    pair at xmax and those beyond it get net 0's last interval continued linearly, never net 1's
    first (an unclamped index) nor net 0's last but one; the two beyond are counted."""
    from numdp.kernels.cpu.tabulated import tab_contract_T

    table = _two_stride_table(order)
    other = np.random.default_rng(12).uniform(-1.0, 1.0, size=table.coef.shape)
    coef = np.concatenate([table.coef, other])
    coff = np.array([0, 8, 16], np.int64)
    meta = np.stack([table.meta(), table.meta()])
    M = coef.shape[2]
    got = []
    beyond = np.zeros(1, np.int64)
    for x in AT_AND_BEYOND:
        rt = np.array([[x, 1.0, 0.0, 0.0]])   # T[0, 1, :] = 1.0 * G(x)
        T = np.zeros((1, 4, M))
        tab_contract_T(np.zeros(1, np.int64), rt, np.array([[0, 1]], np.int64),
                       np.zeros((1, 1), np.int64), np.zeros((1, 1, 4)), np.zeros((1, 1, M)),
                       coef, coff, meta, np.zeros((1, 1), np.int64), 1.0, T, beyond)
        got.append(T[0, 1])
    want_v, _ = _last_piece(table, AT_AND_BEYOND)
    assert np.allclose(np.array(got), want_v, rtol=0, atol=TABLE_TOL)
    assert beyond[0] == 2   # xmax itself is inside the table


def test_dpdata_docs_fparam_example_runs_as_written(tmp_path, monkeypatch):
    """docs/dpdata.md's example of parameters stored with the data (its ```py block, apart from
    the page's ```python examples that test_sweep_docs runs in another folder): the data types
    registered, a deepmd/npy system with fparam.npy and aparam.npy read back and labelled with
    them, to DeePMD-kit's energies."""
    import re
    import shutil

    from test_oracle import TOL, rel_err

    (block,) = re.findall(r"```py\n(.*?)```", (ROOT / "docs" / "dpdata.md").read_text(), re.S)
    ref = _reference(APARAM_DIR)
    _register_inputs()
    _system(ref, fparam=ref["fparam_aparam_fparam"], aparam=ref["fparam_aparam_aparam"]).to(
        "deepmd/npy", str(tmp_path / "data"))
    assert (tmp_path / "data" / "set.000" / "aparam.npy").exists()
    shutil.copy(APARAM_DIR / "fparam_aparam.dp", tmp_path / "model.dp")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(block, "docs/dpdata.md fparam example", "exec"), namespace)
    assert rel_err(namespace["labeled"]["energies"], ref["fparam_aparam_energy"]) <= TOL
