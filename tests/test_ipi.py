"""`numdp ipi` against the real i-PI server (PyPI `ipi`): a short NVE run of the water box, from
rest so that `numdp run` can integrate the same trajectory."""
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import numdp
from numdp.io.structure import assign_types, iter_extxyz, read_extxyz, write_extxyz
from numdp.units import IPI_BOHR_PER_ANGSTROM, IPI_HARTREE_PER_EV

ROOT = Path(__file__).resolve().parents[1]
WATER = ROOT / "inputs" / "water"
STEPS = 4

INPUT = """<simulation verbosity='low' floatformat='%.17e' sockets_prefix='{prefix}'>
  <output prefix='sim'>
    <properties stride='1' filename='out'> [ step, potential{{electronvolt}},
      conserved{{electronvolt}}, vir_component(index=0){{ev/ang3}} ] </properties>
    <trajectory filename='pos' stride='1' format='ase'> positions </trajectory>
    <trajectory filename='for' stride='1' format='xyz'> forces{{ev/ang}} </trajectory>
  </output>
  <total_steps>{steps}</total_steps>
  <prng><seed>31415</seed></prng>
  <ffsocket name='numdp' mode='unix' pbc='false'><address>numdp</address></ffsocket>
  <system>
    <initialize nbeads='1'>
      <file mode='xyz' units='angstrom'> {start} </file>
    </initialize>
    <forces><force forcefield='numdp'/></forces>
    <ensemble><temperature units='kelvin'>300</temperature></ensemble>
    <motion mode='dynamics'>
      <dynamics mode='nve'><timestep units='femtosecond'>0.5</timestep></dynamics>
    </motion>
  </system>
</simulation>
"""


MD_TOML = """
[model]
file = "{model}"
threads = 1
[system]
file = "{start}"
masses = {{ H = 1.00794, O = 15.9994 }}   # i-PI's masses
[md]
timestep = 0.0005
steps = {steps}
ensemble = "nve"
[output]
trajectory = "traj.h5md"
every = 1
thermo_every = 1
"""


def _ipi_executable():
    exe = Path(sys.executable).parent / "i-pi"
    found = exe if exe.exists() else shutil.which("i-pi")
    assert found, "the i-pi server (PyPI ipi, in the test extra) is not installed"
    return str(found)


# A triclinic cell, so that the cell's row/column convention on the wire is tested: the water
# box and its atoms sheared by a few per cent (x -> x @ SHEAR; no new close contacts).
SHEAR = np.array([[1.0, 0.0, 0.0], [0.03, 1.0, 0.0], [-0.02, 0.02, 1.0]])


def _start_files(tmp_path):
    """The tilted water start as extxyz (numdp run, model.evaluate) and as i-PI's own xyz
    (`# CELL(H):` h row-major, h = box^T with the cell vectors as columns), which i-PI converts
    with its own Å -> Bohr factor, the one numdp's client uses back (an ASE-format start would
    go through ASE's factor, 1.3e-8 relative away)."""
    s = read_extxyz(WATER / "start.xyz")
    write_extxyz(tmp_path / "start.xyz", s.elements, s.positions @ SHEAR, s.box @ SHEAR)
    s = read_extxyz(tmp_path / "start.xyz")  # exactly the numbers numdp run will read
    h = " ".join(f"{v:.17g}" for v in s.box.T.ravel())
    lines = [str(s.natoms), f"# CELL(H): {h} cell{{angstrom}} positions{{angstrom}}"]
    lines += [f"{e} {x:.17g} {y:.17g} {z:.17g}" for e, (x, y, z) in zip(s.elements, s.positions)]
    (tmp_path / "init.xyz").write_text("\n".join(lines) + "\n")
    return s, tmp_path / "start.xyz", tmp_path / "init.xyz"


def _read_ipi_forces(path):
    """Frames of i-PI's xyz trajectory (forces in eV/Å, printed as %12.5e)."""
    lines = Path(path).read_text().splitlines()
    frames, i = [], 0
    while i < len(lines):
        n = int(lines[i])
        block = lines[i + 2:i + 2 + n]
        frames.append(np.array([[float(w) for w in ln.split()[1:4]] for ln in block]))
        i += 2 + n
    return frames


@pytest.mark.slow
def test_ipi_nve_water_matches_model_evaluate(tmp_path):
    s0, start_extxyz, start = _start_files(tmp_path)  # `start` starts i-PI and names the atoms
    (tmp_path / "input.xml").write_text(
        INPUT.format(prefix=f"{tmp_path}/s_", steps=STEPS, start=start))
    server = subprocess.Popen([sys.executable, _ipi_executable(), "input.xml"], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        client = subprocess.run(
            [sys.executable, "-m", "numdp.cli", "ipi", "-m", str(WATER / "model.h5"),
             "--unix", "numdp", "--sockets-prefix", f"{tmp_path}/s_", "--init", str(start),
             "--threads", "1", "--wait", "60"],
            capture_output=True, text=True, timeout=180, cwd=tmp_path)
        log = server.communicate(timeout=60)[0].decode(errors="replace")
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
    assert client.returncode == 0, client.stderr
    assert f"{STEPS + 1} evaluations; stopped on EXIT" in client.stderr, client.stderr
    assert server.returncode == 0, log[-2000:]

    model = numdp.load_model(WATER / "model.h5", nthreads=1)
    types = assign_types(s0, model.type_map)
    props = np.loadtxt(tmp_path / "sim.out", ndmin=2)
    assert props[:, 0].tolist() == list(range(STEPS + 1))
    frames = list(iter_extxyz(tmp_path / "sim.pos_0.extxyz"))
    forces = _read_ipi_forces(tmp_path / "sim.for_0.xyz")
    assert len(frames) == len(forces) == STEPS + 1

    # Step 0: i-PI's positions are the file's, through Å -> Bohr -> Å with the same factor (a few
    # ulps: < 1e-14 Å, times sum |F| ~ 1e3 eV/Å -> 1e-11 eV); the energy comes back through
    # eV -> Ha -> eV (a few ulps of 3e4 eV: 1e-11 eV).  1e-9 eV leaves two orders of margin.
    ref0 = model.evaluate(s0.positions, types, s0.box)
    assert abs(props[0, 1] - ref0.energy) < 1e-9
    # Virial: i-PI's vir_component / V, [xx yy zz xy xz yz], equals numdp's virial / V up to
    # i-PI's "ev/ang3" constant 0.0054456877, 8 digits, 1.5e-7 relative from its own eV and Å
    # factors (0.036749326 / 1.8897261^3 = 0.00544568848): 2e-7 relative.
    vol = abs(np.linalg.det(s0.box))
    w = ref0.virial / vol
    expect = [w[0, 0], w[1, 1], w[2, 2], w[0, 1], w[0, 2], w[1, 2]]
    assert np.allclose(props[0, 3:9], expect, rtol=0, atol=2e-7 * np.abs(w).max())

    # i-PI writes extxyz only in "ase" units (x_file = x_bohr * ase.units.Bohr) while numdp's client
    # turned x_bohr into Å with i-PI's own factor: undo the 1.3e-8 relative difference.
    from ase.units import Bohr

    scale = 1.0 / (Bohr * IPI_BOHR_PER_ANGSTROM)
    for k, (frame, f_ipi) in enumerate(zip(frames, forces)):
        ref = model.evaluate(frame.positions * scale, types, frame.box * scale)
        # ASE writes positions as %16.8f: each coordinate is off by <= 5e-9 Å, so the energy by
        # <= 5e-9 sum|F| to first order (doubled for the curvature terms).
        tol = 2 * 5e-9 * np.abs(ref.forces).sum()
        assert abs(props[k, 1] - ref.energy) < tol, (k, props[k, 1], ref.energy, tol)
        # Forces printed as %12.5e (6 digits: half a unit of the 6th, 5e-6 relative; i-PI's 8-digit
        # "ev/ang" constant adds 1e-7) plus the position rounding times the curvature
        # (~50 eV/Å^2 * 1e-8 Å).
        assert np.allclose(f_ipi, ref.forces, rtol=5e-6, atol=1e-6), k
    # numdp run of the same start (at rest, i-PI's masses, same dt) integrates the same
    # trajectory.  i-PI works in atomic units with 8-digit constants for fs and amu, numdp with
    # MVV2E to 8 digits: accelerations, hence displacements and to first order the energy changes
    # U_k - U_0, agree to ~1e-7 relative; 1e-6 leaves a factor 10 (measured 2e-8).
    (tmp_path / "md.toml").write_text(MD_TOML.format(model=WATER / "model.h5",
                                                     start=start_extxyz, steps=STEPS))
    run = subprocess.run([sys.executable, "-m", "numdp.cli", "run", "md.toml"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    with h5py.File(tmp_path / "traj.h5md", "r") as h5:
        u_run = h5["observables/potential_energy/value"][:]
    assert len(u_run) == STEPS + 1
    change = np.abs(props[:, 1] - props[0, 1])
    assert np.all(np.abs(u_run - props[:, 1]) <= 1e-6 * change + 1e-9), (u_run, props[:, 1])
    assert change[-1] > 0.1  # the energies compared do change

    # The dynamics moved the atoms (the comparison is not of one frame five times)...
    assert np.abs(frames[-1].positions - frames[0].positions).max() > 1e-4
    # ...and velocity Verlet conserved the energy: over 2 fs the conserved quantity changes far
    # less than the potential energy does (a force in the wrong unit would break that).
    assert np.ptp(props[:, 2]) < 0.2 * np.ptp(props[:, 1])


def test_ipi_command_errors(tmp_path, capsys):
    from numdp.cli import main

    model = str(WATER / "model.h5")
    assert main(["ipi", "-m", model, "--unix", "nobody", "--sockets-prefix", f"{tmp_path}/",
                 "--types", "O", "H", "H", "--wait", "0"]) == 2
    assert "cannot connect to the i-PI server" in capsys.readouterr().err
    assert main(["ipi", "-m", model, "--address", "localhost", "--types", "O"]) == 2
    assert "HOST:PORT" in capsys.readouterr().err
    assert main(["ipi", "-m", model, "--unix", "x", "--types", "O", "Cu"]) == 2
    assert "--types: atom 1 is 'Cu', an element not in the model's type_map" in capsys.readouterr().err


def _one_step_server(path, box, positions, result):
    """A minimal i-PI-like server on unix socket `path`: one POSDATA/GETFORCE exchange, then EXIT;
    stores the client's energy (Ha) and forces (Ha/Bohr) in `result`."""
    import socket
    import struct

    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)
    srv.settimeout(60)

    def hdr(word):
        return word.ljust(12).encode()

    def recv(conn, n):
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            assert chunk, "client closed"
            buf += chunk
        return buf

    def run():
        conn, _ = srv.accept()
        with conn, srv:
            conn.settimeout(60)
            conn.sendall(hdr("STATUS"))
            assert recv(conn, 12) == hdr("NEEDINIT")
            conn.sendall(hdr("INIT") + struct.pack("=ii", 0, 0))
            conn.sendall(hdr("STATUS"))
            assert recv(conn, 12) == hdr("READY")
            h = box.T * IPI_BOHR_PER_ANGSTROM
            conn.sendall(hdr("POSDATA") + h.tobytes() + np.linalg.inv(h).tobytes()
                         + struct.pack("=i", len(positions))
                         + (positions * IPI_BOHR_PER_ANGSTROM).tobytes())
            conn.sendall(hdr("STATUS"))
            assert recv(conn, 12) == hdr("HAVEDATA")
            conn.sendall(hdr("GETFORCE"))
            assert recv(conn, 12) == hdr("FORCEREADY")
            energy, n = struct.unpack("=di", recv(conn, 12))
            result["energy"] = energy
            result["forces"] = np.frombuffer(recv(conn, 24 * n)).reshape(n, 3)
            recv(conn, 72 + 4)  # virial, extra-string length 0
            conn.sendall(hdr("EXIT"))

    import threading

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_ipi_dp_json_settings(tmp_path, capsys):
    """DeePMD-kit's dp_ipi parameter file: graph_file, use_unix + host, coord_file + atom_type."""
    import json

    from numdp.cli import main

    s = read_extxyz(WATER / "start.xyz")
    labels = [{"O": "OW", "H": "HW1"}[e] for e in s.elements]
    coord = tmp_path / "conf.xyz"
    coord.write_text(f"{s.natoms}\nwater\n" + "".join(f"{lab} 0 0 0\n" for lab in labels))
    cfg = {"verbose": False, "use_unix": True, "port": 31415, "host": "numdp_json",
           "graph_file": str(WATER / "model.h5"), "coord_file": str(coord),
           "atom_type": {"OW": 0, "HW1": 1, "HW2": 1}}
    (tmp_path / "water.json").write_text(json.dumps(cfg))
    result = {}
    thread = _one_step_server(tmp_path / "s_numdp_json", s.box, s.positions, result)
    rc = main(["ipi", "--dp-json", str(tmp_path / "water.json"), "--sockets-prefix",
               f"{tmp_path}/s_", "--threads", "1", "--wait", "30"])
    thread.join(timeout=60)
    assert rc == 0, capsys.readouterr().err
    model = numdp.load_model(WATER / "model.h5", nthreads=1)
    ref = model.evaluate(s.positions, assign_types(s, model.type_map), s.box)
    # Ha back to eV with the same factor: round-off only (a few ulps of 3e4 eV)
    assert abs(result["energy"] / IPI_HARTREE_PER_EV - ref.energy) < 1e-9
    f = result["forces"] * IPI_BOHR_PER_ANGSTROM / IPI_HARTREE_PER_EV  # Ha/Bohr -> eV/Å
    assert np.allclose(f, ref.forces, rtol=0, atol=1e-12)
    # a label atom_type does not map is named
    cfg["atom_type"] = {"OW": 0}
    (tmp_path / "bad.json").write_text(json.dumps(cfg))
    assert main(["ipi", "--dp-json", str(tmp_path / "bad.json"), "--wait", "0"]) == 2
    assert "is 'HW1', which it does not map" in capsys.readouterr().err


# --- the protocol's edge cases, against numdp.ipi.serve on a socket pair (no model, no i-PI) ---

def _hdr(word):
    return word.upper().ljust(12).encode()


def _posdata(h, positions):
    """i-PI's POSDATA: h (cell vectors as columns, Bohr), h^-1, N, positions (Bohr)."""
    return (_hdr("POSDATA") + h.tobytes() + np.linalg.inv(h).tobytes()
            + struct.pack("=i", len(positions)) + positions.tobytes())


def _stub():
    """An evaluate for serve that records its arguments and returns fixed numbers."""
    seen = []

    def evaluate(positions, box):
        seen.append((positions, box))
        n = len(positions)
        return -1.0 * n, np.full((n, 3), 0.5), np.diag([1.0, 2.0, 3.0])

    return evaluate, seen


def _serve_script(script, natoms=None, close=True):
    """Write the server's whole `script` (bytes) into one end of a socket pair, then run serve on
    the other end; returns (session or the exception raised, the client's replies, evaluations)."""
    import socket

    from numdp.ipi import serve

    server, client = socket.socketpair()
    try:
        server.sendall(script)
        if close:
            server.shutdown(socket.SHUT_WR)
        evaluate, seen = _stub()
        try:
            out = serve(client, evaluate, natoms)
        except Exception as exc:  # noqa: BLE001 (the test inspects it)
            out = exc
        client.close()
        replies = b""
        try:
            while chunk := server.recv(1 << 16):
                replies += chunk
        except ConnectionResetError:  # the client closed with the script's rest unread
            pass
        return out, replies, seen
    finally:
        server.close()


RNG_POS = np.random.default_rng(7).uniform(0.0, 10.0, size=(6, 3))


def test_ipi_protocol_reinit_and_cell_change():
    """A second INIT between steps (i-PI re-initialises clients, e.g. for another replica) and a
    new triclinic cell: both answered; the box numdp evaluates is h^T in Å."""
    from numdp.ipi import Session

    h1 = np.diag([20.0, 21.0, 22.0])
    h2 = np.array([[20.0, 1.0, -2.0], [0.0, 21.0, 0.5], [0.0, 0.0, 19.0]])  # upper triangular
    init = _hdr("INIT") + struct.pack("=ii", 0, 0)
    reinit = _hdr("INIT") + struct.pack("=ii", 3, 5) + b"abcde"
    script = (_hdr("STATUS") + init + _hdr("STATUS") + _posdata(h1, RNG_POS) + _hdr("STATUS")
              + _hdr("GETFORCE") + reinit + _hdr("STATUS") + _posdata(h2, RNG_POS) + _hdr("GETFORCE")
              + _hdr("EXIT"))
    out, replies, seen = _serve_script(script)
    assert isinstance(out, Session) and out.exited and out.evaluations == 2
    assert replies.startswith(_hdr("NEEDINIT") + _hdr("READY") + _hdr("HAVEDATA") + _hdr("FORCEREADY"))
    assert _hdr("READY") in replies[48:]
    # Bohr -> Å with numdp's factor: exact up to one rounding of each product
    assert np.allclose(seen[1][1], h2.T / IPI_BOHR_PER_ANGSTROM, rtol=1e-15, atol=0)
    assert np.allclose(seen[1][0], RNG_POS / IPI_BOHR_PER_ANGSTROM, rtol=1e-15, atol=0)


@pytest.mark.parametrize("case, message", [
    ("midclose", r"closed the connection in the middle of a message \(after 0 evaluations\)"),
    ("unknown", r"unexpected message from the server: b'HELLO       '"),
    ("getforce", r"GETFORCE\) before sending positions"),
    ("batch", r"i-PI announced batch_size 4: .*set the ffsocket's batch_size to 1"),
    ("shm", r"cell and inverse cell disagree: .*mode 'shm'"),
])
def test_ipi_protocol_violations_are_one_line_errors(case, message):
    """What is not the plain i-PI protocol (a server leaving mid-message, an unknown header,
    GETFORCE first, i-PI 3.3's batched and shared-memory exchanges) is an InputError, one line;
    never a traceback, a hang, or an allocation of garbage size."""
    from numdp.errors import InputError

    init = _hdr("INIT") + struct.pack("=ii", 0, 0)
    h = np.diag([20.0, 21.0, 22.0])
    if case == "midclose":
        script = init + _posdata(h, RNG_POS)[:100]
    elif case == "unknown":
        script = init + _hdr("HELLO")
    elif case == "getforce":
        script = init + _hdr("GETFORCE")
    elif case == "batch":  # ffsocket batch_size 4: announced in INIT after the ffsocket's parameters
        pars = b"{}, batch_size:4"
        script = _hdr("INIT") + struct.pack("=ii", 0, len(pars)) + pars
    else:  # mode="shm": POSDATA, the atom count, then the shared-memory segments' names
        names = b"".join(struct.pack("=i", len(k) + 20) + f"ipi_shm_12345_7_xxx_{k}".encode()
                         for k in ("pos", "h", "ih", "pot", "force", "vir"))
        script = init + _hdr("POSDATA") + struct.pack("=i", 6) + names + _hdr("STATUS")
    out, _, seen = _serve_script(script)
    assert isinstance(out, InputError), out
    assert re.search(message, str(out)) and "\n" not in str(out)
    assert not seen


def test_ipi_batch_size_one_and_reset_connection_end_cleanly():
    """INIT parameters announcing batch_size:1 are the plain protocol; a connection reset by the
    server (TCP RST) between messages ends the session like a close."""
    import socket

    from numdp.ipi import Session, serve

    pars = b"batch_size:1"
    out, replies, seen = _serve_script(_hdr("INIT") + struct.pack("=ii", 0, len(pars)) + pars
                                       + _hdr("STATUS"))
    assert isinstance(out, Session) and replies == _hdr("READY") and not out.exited

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname())
    conn, _ = listener.accept()
    conn.sendall(_hdr("INIT") + struct.pack("=ii", 0, 0) + _posdata(np.diag([20.0] * 3), RNG_POS))
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()  # linger 0: the close is a reset
    listener.close()
    evaluate, seen = _stub()
    try:
        out = serve(client, evaluate, None)
    finally:
        client.close()
    assert isinstance(out, Session) and out.evaluations == 1 and not out.exited


def test_ipi_types_follow_the_atom_count_of_each_frame(tmp_path, capsys):
    """--types repeats its pattern to the atom count of every frame, not only of the first: two
    systems of different size sharing one forcefield are both evaluated with their own types."""
    import socket
    import threading

    from numdp.cli import main

    s = read_extxyz(WATER / "start.xyz")
    h = s.box.T * IPI_BOHR_PER_ANGSTROM
    frames = [s.positions[:9], s.positions[:6]]   # 3 then 2 molecules, O H H order
    path = tmp_path / "s_types"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    energies = []

    def run():
        conn, _ = listener.accept()
        with conn:
            conn.sendall(_hdr("INIT") + struct.pack("=ii", 0, 0))
            for pos in frames:
                conn.sendall(_posdata(h, pos * IPI_BOHR_PER_ANGSTROM) + _hdr("GETFORCE"))
                buf = b""
                while len(buf) < 12 + 12 + 24 * len(pos) + 76:
                    buf += conn.recv(1 << 16)
                energies.append(struct.unpack("=d", buf[12:20])[0] / IPI_HARTREE_PER_EV)
            conn.sendall(_hdr("EXIT"))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    rc = main(["ipi", "-m", str(WATER / "model.h5"), "--unix", "types", "--sockets-prefix",
               f"{tmp_path}/s_", "--types", "O", "H", "H", "--threads", "1", "--wait", "30"])
    thread.join(timeout=60)
    listener.close()
    assert rc == 0, capsys.readouterr().err
    model = numdp.load_model(WATER / "model.h5", nthreads=1)
    for pos, e in zip(frames, energies):
        ref = model.evaluate(pos, np.tile([0, 1, 1], len(pos) // 3), s.box, atom_virial=False)
        # Ha and back with the same factor; positions through Bohr and back: round-off only
        assert abs(e - ref.energy) < 1e-9
