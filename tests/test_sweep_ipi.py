"""`numdp ipi` as i-PI users run it (PyPI `ipi`, the real server): path integrals with one and
with two clients on the same socket, an NPT run (the virial i-PI receives), the client's end when
the server dies and when it is sent SIGTERM.  The water box of inputs/water, a few steps each."""
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import numdp
from numdp.io.structure import read_extxyz
from numdp.units import IPI_BOHR_PER_ANGSTROM as BOHR, IPI_HARTREE_PER_EV as HARTREE
from test_ipi import _ipi_executable

ROOT = Path(__file__).resolve().parents[1]
WATER = ROOT / "inputs" / "water"
MODEL = WATER / "model.h5"
STEPS = 2

INPUT = """<simulation verbosity='low' floatformat='%.17e' sockets_prefix='{prefix}'>
  <output prefix='sim'>
    <properties stride='1' filename='out'> [ step, volume, pressure_md, virial_md,
      bead_potentials ] </properties>
    <trajectory filename='pos' stride='1' format='bin'> positions </trajectory>
    <trajectory filename='for' stride='1' format='bin'> forces </trajectory>
  </output>
  <total_steps>{steps}</total_steps>
  <prng><seed>31415</seed></prng>
  <ffsocket name='numdp' mode='unix' pbc='false'><address>numdp</address></ffsocket>
  <system>
    <initialize nbeads='{nbeads}'>
      <file mode='xyz' units='angstrom'> ipi.xyz </file>
      <velocities mode='thermal' units='kelvin'> 300 </velocities>
    </initialize>
    <forces><force forcefield='numdp'/></forces>
    <ensemble><temperature units='kelvin'>300</temperature>{pressure}</ensemble>
    <motion mode='dynamics'>
      <dynamics mode='{mode}'><timestep units='femtosecond'>0.5</timestep>
        <thermostat mode='pile_l'><tau units='femtosecond'>100</tau></thermostat>{barostat}
      </dynamics>
    </motion>
  </system>
</simulation>
"""

BAROSTAT = """
        <barostat mode='isotropic'><tau units='femtosecond'>50</tau>
          <thermostat mode='langevin'><tau units='femtosecond'>100</tau></thermostat></barostat>"""


def _start_files(tmp_path):
    """The water box with its hydrogens first (the model's type_map is O H: the file's order is
    not the model's), as i-PI's xyz (`# CELL(H):` h = box^T, elements H and O, for i-PI's masses)
    and the same atoms labelled HW/OW as users' i-PI inputs often are (for `--init --rename`)."""
    s = read_extxyz(WATER / "start.xyz")
    order = np.argsort([e != "H" for e in s.elements], kind="stable")
    elements = [s.elements[i] for i in order]
    h = " ".join(f"{v:.17g}" for v in s.box.T.ravel())
    head = [str(s.natoms), f"# CELL(H): {h} cell{{angstrom}} positions{{angstrom}}"]

    def write(name, labels):
        rows = [f"{lab} {x:.17g} {y:.17g} {z:.17g}" for lab, (x, y, z)
                in zip(labels, s.positions[order])]
        (tmp_path / name).write_text("\n".join(head + rows) + "\n")

    write("ipi.xyz", elements)
    write("labels.xyz", [e + "W" for e in elements])
    return np.array([{"O": 0, "H": 1}[e] for e in elements])


def _read_bin(path):
    """Frames of i-PI's `format='bin'` trajectory: (h (3, 3), values (N, 3)), atomic units, as
    float64 (io_binary.print_binary: h, int64 N, 3N f64, int64 L, the names and the title as
    UTF-32 text; the title ends with `cell{UNIT}`)."""
    raw = Path(path).read_bytes()
    off, frames = 0, []
    while off < len(raw):
        h = np.frombuffer(raw, np.float64, 9, off).reshape(3, 3)
        n = int(np.frombuffer(raw, np.int64, 1, off + 72)[0])
        q = np.frombuffer(raw, np.float64, 3 * n, off + 80).reshape(n, 3)
        off += 80 + 24 * n
        off += 8 + 4 * int(np.frombuffer(raw, np.int64, 1, off)[0])
        title = raw[off:off + 4 * 200].decode("utf-32-le", "replace")
        off += 4 * (title.index("}", title.index("cell{")) + 1)
        frames.append((h, q))
    return frames


def _run_ipi(tmp_path, nbeads, nclients, npt=False):
    """i-PI on a unix socket under tmp_path with `nclients` numdp clients (--init labels.xyz
    --rename); returns (the clients' stderr, i-PI's properties array)."""
    prefix = f"{tmp_path}/s_"
    (tmp_path / "input.xml").write_text(INPUT.format(
        prefix=prefix, steps=STEPS, nbeads=nbeads, mode="npt" if npt else "nvt",
        pressure="<pressure units='gigapascal'>1.0</pressure>" if npt else "",
        barostat=BAROSTAT if npt else ""))
    cmd = [sys.executable, "-m", "numdp.cli", "ipi", "-m", str(MODEL), "--unix", "numdp",
           "--sockets-prefix", prefix, "--init", "labels.xyz", "--rename", "OW=O", "HW=H",
           "--threads", "1", "--wait", "60"]
    clients = [subprocess.Popen(cmd, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
               for _ in range(nclients)]
    server = subprocess.Popen([sys.executable, _ipi_executable(), "input.xml"], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        log = server.communicate(timeout=120)[0].decode(errors="replace")
        errs = [c.communicate(timeout=60)[1] for c in clients]
    finally:
        for p in [server] + clients:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    assert server.returncode == 0, log[-2000:]
    assert all(c.returncode == 0 for c in clients), errs
    return errs, np.loadtxt(tmp_path / "sim.out", ndmin=2)


def _evaluations(errs):
    return sum(int(e.split(" evaluations; stopped on EXIT")[0].split()[-1]) for e in errs)


# Forces and energies go Å -> Bohr (i-PI) -> Å, eV -> Ha -> eV with the same factors, and the
# evaluation here repeats the client's arithmetic (same positions, same thread count): only
# round-off separates them, a few ulps of each sum of ~100 neighbour terms; 1e-11 of the
# largest force and 1e-11 relative on the ~3e4 eV energy leave orders of margin.
REL = 1e-11


@pytest.mark.parametrize("nclients", [1, 2])
def test_pimd_every_bead_gets_its_own_forces(tmp_path, nclients):
    """Path integrals, 4 beads, served by one client or by two at once (i-PI dispatches the beads
    to whichever is free): every bead's forces and potential, in every step, are the model's at
    that bead's positions; the start file's atoms are H first (not the type_map's order) and
    labelled HW/OW (--rename)."""
    nbeads = 4
    types = _start_files(tmp_path)
    errs, props = _run_ipi(tmp_path, nbeads, nclients)
    assert _evaluations(errs) == nbeads * (STEPS + 1)
    model = numdp.load_model(MODEL, nthreads=1)
    beads = []
    for b in range(nbeads):
        pos = _read_bin(tmp_path / f"sim.pos_{b}.bin")
        forces = _read_bin(tmp_path / f"sim.for_{b}.bin")
        assert len(pos) == len(forces) == STEPS + 1
        for k, ((h, q), (_, f)) in enumerate(zip(pos, forces)):
            ref = model.evaluate(q / BOHR, types, h.T / BOHR, atom_virial=False)
            scale = np.abs(ref.forces).max()
            assert np.abs(f * BOHR / HARTREE - ref.forces).max() <= REL * scale, (b, k)
            assert abs(props[k, 9 + b] / HARTREE - ref.energy) <= REL * abs(ref.energy), (b, k)
        beads.append(pos[-1][1])
    # the beads moved apart (thermal velocities): the check is not of one geometry four times
    assert np.abs(beads[0] - beads[1]).max() > 1e-6


def test_npt_virial_is_the_models_and_the_cell_moves_toward_the_target(tmp_path):
    """i-PI's NPT (isotropic barostat, 1 GPa): the virial it received (virial_md * V, Ha, i-PI
    keeps its upper triangle) is the model's -dE/dstrain at i-PI's positions and cell, every
    step; the model's water box is at about -0.2 GPa, so the cell shrinks and the pressure rises."""
    types = _start_files(tmp_path)
    errs, props = _run_ipi(tmp_path, 1, 1, npt=True)
    assert _evaluations(errs) == STEPS + 1
    model = numdp.load_model(MODEL, nthreads=1)
    pos = _read_bin(tmp_path / "sim.pos_0.bin")
    volumes = []
    for k, (h, q) in enumerate(pos):
        ref = model.evaluate(q / BOHR, types, h.T / BOHR, atom_virial=False)
        vol = props[k, 1]
        assert abs(vol - np.linalg.det(h)) <= 1e-12 * vol  # the frame is the step's
        w = ref.virial * HARTREE  # Ha
        expect = [w[0, 0], w[1, 1], w[2, 2], w[0, 1], w[0, 2], w[1, 2]]
        assert np.allclose(props[k, 3:9] * vol, expect, rtol=0, atol=REL * np.abs(w).max()), k
        volumes.append(vol)
    # pressure_md (atomic units) = tr(W + K) / 3V: below the target at the start, so the
    # barostat compresses the cell; a virial of the wrong sign would expand it
    target = 1.0 / 29421.015697  # 1 GPa in atomic units of pressure (i-PI's constant)
    assert props[0, 2] < target
    assert volumes[-1] < volumes[1] < volumes[0]
    assert props[-1, 2] > props[0, 2]


# --- the client's end: a server that dies, a SIGTERM ---

def _hdr(word):
    return word.ljust(12).encode()


def _exchange_then(tmp_path, then):
    """A one-exchange i-PI-like server on a unix socket: INIT, one POSDATA/GETFORCE of the water
    box, then `then(client process, connection)`; returns the client's (status, stderr)."""
    s = read_extxyz(WATER / "start.xyz")
    path = tmp_path / "s_life"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    listener.settimeout(60)
    client = subprocess.Popen(
        [sys.executable, "-m", "numdp.cli", "ipi", "-m", str(MODEL), "--unix", "life",
         "--sockets-prefix", f"{tmp_path}/s_", "--types", "O", "H", "H", "--threads", "1"],
        stderr=subprocess.PIPE, text=True)
    try:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(60)
            h = s.box.T * BOHR
            conn.sendall(_hdr("INIT") + struct.pack("=ii", 0, 0) + _hdr("POSDATA") + h.tobytes()
                         + np.linalg.inv(h).tobytes() + struct.pack("=i", s.natoms)
                         + (s.positions * BOHR).tobytes() + _hdr("GETFORCE"))
            want, got = 12 + 12 + 24 * s.natoms + 76, b""
            while len(got) < want:
                chunk = conn.recv(1 << 16)
                assert chunk, "the client closed"
                got += chunk
            then(client, conn)
            err = client.communicate(timeout=60)[1]
    finally:
        listener.close()
        if client.poll() is None:
            client.kill()
            client.wait(timeout=10)
    return client.returncode, err


def test_server_dying_mid_run_is_a_one_line_error(tmp_path):
    """i-PI sends EXIT whenever it ends a run; a connection closed without it is an i-PI that was
    killed or crashed: one line, non-zero status (was status 0, "stopped on the server closed
    the connection", so a script could not tell a dead server from a finished run)."""
    rc, err = _exchange_then(tmp_path, lambda client, conn: conn.close())
    lines = [ln for ln in err.splitlines() if "connected to" not in ln]
    assert rc == 2, err
    assert lines == ["numdp ipi: error: the i-PI server closed the connection without EXIT after "
                     "1 evaluations: i-PI died (killed, or crashed: see its output)"], err


def test_sigterm_ends_the_client_with_one_line(tmp_path):
    """SIGTERM (kill, a batch system's time limit) while the client waits for i-PI: one line and
    status 143, as SIGINT gives one line and 130 (was a silent death by the signal)."""
    def terminate(client, conn):
        time.sleep(0.2)  # the client is back in its blocking receive
        client.send_signal(signal.SIGTERM)
        client.wait(timeout=30)

    rc, err = _exchange_then(tmp_path, terminate)
    assert rc == 128 + signal.SIGTERM, (rc, err)
    assert err.splitlines()[-1] == "numdp ipi: terminated by SIGTERM", err


def test_an_unknown_label_names_the_rename_option(tmp_path, capsys):
    """An --init file labelled OW/HW without --rename said only that 'OW' is not in the
    type_map: the line now names the option that maps it."""
    from numdp.cli import main

    init = tmp_path / "init.xyz"
    init.write_text("3\n\nOW 0 0 0\nHW 0.9 0 0\nHW 0 0.9 0\n")
    status = main(["ipi", "-m", str(MODEL), "--init", str(init), "--unix", "nobody", "--wait", "0"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and "--rename OW=ELEMENT" in err, err
