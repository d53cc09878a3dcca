"""i-PI socket client: i-PI (the server) sends positions, numdp answers with energy, forces and
virial.  Written from i-PI's protocol description (docs/ipi.md has the message table).

Every message starts with a 12-byte ASCII header, upper case, padded with spaces.  Numbers are
native-endian int32 and float64, in atomic units as i-PI converts them (numdp.units.IPI_*).

    server -> client                      client -> server
    STATUS                                NEEDINIT | READY | HAVEDATA
    INIT     int32 replica, int32 n, n bytes      (no reply)
    POSDATA  9 f64 cell h, 9 f64 h^-1, int32 N, 3N f64 positions (Bohr)   (no reply)
    GETFORCE                              FORCEREADY, f64 energy (Ha), int32 N, 3N f64 forces
                                          (Ha/Bohr), 9 f64 virial (Ha), int32 n, n bytes extra
    EXIT                                  (the client stops)

The cell h arrives row-major with the cell vectors as its columns (i-PI's upper-triangular h), so
numdp's box (rows = vectors) is h transposed; the virial goes back transposed the same way
(it is -dE/dstrain, DeePMD-kit's sign, symmetric up to round-off).

Only this plain protocol is spoken: i-PI's batched exchange (an ffsocket `batch_size` > 1,
announced in the INIT string as `batch_size:N`) and its shared-memory mode (`mode="shm"`, whose
POSDATA carries no cell) are refused in one line (InputError), as is anything else that is not
this protocol (an unknown header, a POSDATA whose cell and inverse cell disagree), and a server
that closes the connection in the middle of a message.
"""
from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .units import IPI_BOHR_PER_ANGSTROM, IPI_HARTREE_PER_EV

HEADER_LEN = 12
_ANGSTROM_PER_BOHR = 1.0 / IPI_BOHR_PER_ANGSTROM
_EV_PER_HARTREE = 1.0 / IPI_HARTREE_PER_EV


def _header(word: str) -> bytes:
    return word.upper().ljust(HEADER_LEN).encode("ascii")


STATUS, READY, HAVEDATA, NEEDINIT = (
    _header(w) for w in ("status", "ready", "havedata", "needinit"))
INIT, POSDATA, GETFORCE, FORCEREADY, EXIT = (
    _header(w) for w in ("init", "posdata", "getforce", "forceready", "exit"))


class Disconnected(Exception):
    """The server closed the connection."""


@dataclass
class Session:
    """What one connection did: evaluations answered and whether the server said EXIT."""

    evaluations: int = 0
    exited: bool = False


def check_target(address: str | None, unix: str | None, prefix: str = "/tmp/ipi_",
                 wait: float = 60.0):
    """(socket family, connect() target, description) of `address` "HOST:PORT" (TCP, PORT
    1-65535) or `unix` NAME (the socket prefix + NAME); InputError naming the option for a bad
    address or a `wait` (seconds) that is negative or NaN."""
    if (address is None) == (unix is None):
        raise InputError("give exactly one of --address HOST:PORT and --unix NAME")
    if not wait >= 0:  # NaN too: it would retry forever
        raise InputError(f"--wait: must be >= 0 seconds, got {wait:g}")
    if unix is not None:
        return socket.AF_UNIX, prefix + unix, f"unix socket {prefix + unix}"
    host, sep, port = address.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()):
        raise InputError(f"--address: expected HOST:PORT, got {address!r}")
    if not 1 <= int(port) <= 65535:
        raise InputError(f"--address: port must be 1-65535, got {address!r}")
    return socket.AF_INET, (host, int(port)), f"{host}:{port}"


def connect(address: str | None = None, unix: str | None = None, prefix: str = "/tmp/ipi_",
            wait: float = 60.0) -> socket.socket:
    """Connect to an i-PI server: `address` "HOST:PORT" (TCP) or `unix` NAME (the socket
    prefix + NAME, i-PI's `sockets_prefix` + `<address>`), checked by `check_target`.  Retries
    for `wait` seconds while the server is not listening yet; InputError after that."""
    family, target, where = check_target(address, unix, prefix, wait)
    deadline = time.monotonic() + wait
    while True:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.connect(target)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            if time.monotonic() >= deadline:
                raise InputError(f"cannot connect to the i-PI server at {where} "
                                 f"({exc.strerror}) after {wait:g} s") from None
            time.sleep(0.2)
            continue
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
            sock.close()
            raise InputError(f"cannot connect to the i-PI server at {where} ({exc})") from None
        if family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    """Exactly n bytes from `sock`; Disconnected when the server closes or resets the connection."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        try:
            k = sock.recv_into(view[got:], n - got)
        except ConnectionError:  # reset by the server (TCP RST)
            raise Disconnected() from None
        if k == 0:
            raise Disconnected()
        got += k
    return bytes(buf)


def _recv_array(sock, dtype, count: int) -> np.ndarray:
    dt = np.dtype(dtype)
    return np.frombuffer(_recv_exact(sock, dt.itemsize * count), dtype=dt).copy()


def _batch_size(params: bytes) -> int:
    """The batch size i-PI announces in an INIT parameter string (`batch_size:N`, after any
    parameters of the force field, comma separated); 1 when it announces none."""
    for item in params.decode("utf-8", "replace").replace(",", " ").split():
        key, sep, value = item.partition(":")
        if sep and key == "batch_size" and value.strip().isdigit():
            return int(value)
    return 1


def _check_cell(h: np.ndarray, ih: np.ndarray) -> None:
    """InputError unless `ih` is the inverse of the cell `h` (both as i-PI sends them, Bohr): a
    POSDATA that does not hold them is not the plain protocol (i-PI's mode="shm" sends the atom
    count and shared-memory names there)."""
    with np.errstate(all="ignore"):
        # i-PI computes ih = h^-1 in float64: h ih = I to ~1e-16 cond(h), and a cell's condition
        # number is far below 1e10; any other 18 numbers miss I by far more than 1e-6
        ok = bool(np.abs(h @ ih - np.eye(3)).max() <= 1e-6)   # False for NaN or inf too
    if not ok:
        raise InputError("i-PI sent a POSDATA message whose cell and inverse cell disagree: not "
                         "the plain i-PI protocol (an ffsocket in mode 'shm'? numdp ipi speaks "
                         "mode 'unix' or 'inet')")


def serve(sock: socket.socket, evaluate, natoms: int | None) -> Session:
    """Answer the server until it says EXIT or closes the connection.

    evaluate(positions (N, 3) Å, box (3, 3) Å rows = vectors) -> (energy eV, forces (N, 3) eV/Å,
    virial (3, 3) eV, DeePMD-kit sign).  natoms: the atom count the types were given for (a
    different count from the server is an InputError), or None.  A connection closed (or reset)
    between messages ends the session; one closed in the middle of a message, a message that is
    not the plain protocol, and i-PI's batched protocol (INIT `batch_size:N`, N > 1) are
    InputErrors.
    """
    session = Session()
    try:
        return _serve(sock, evaluate, natoms, session)
    except Disconnected:
        raise InputError(f"the i-PI server closed the connection in the middle of a message "
                         f"(after {session.evaluations} evaluations)") from None


def _serve(sock: socket.socket, evaluate, natoms: int | None, session: Session) -> Session:
    """`serve`'s loop; raises Disconnected when the server leaves in the middle of a message."""
    ready = False  # INIT received
    result = None  # answer of the last POSDATA, until GETFORCE
    while True:
        try:
            head = _recv_exact(sock, HEADER_LEN)
        except Disconnected:
            return session
        if head == STATUS:
            _send(sock, NEEDINIT if not ready else HAVEDATA if result is not None else READY)
        elif head == INIT:
            _replica, length = struct.unpack("=ii", _recv_exact(sock, 8))
            if not 0 <= length <= 1 << 20:
                raise InputError(f"i-PI sent an INIT message with a parameter string of {length} "
                                 f"bytes: not the i-PI protocol")
            batch = _batch_size(_recv_exact(sock, length))  # numdp takes no other parameter
            if batch > 1:
                raise InputError(f"i-PI announced batch_size {batch}: numdp ipi evaluates one "
                                 f"structure per message; set the ffsocket's batch_size to 1")
            ready = True
        elif head == POSDATA:
            h = _recv_array(sock, np.float64, 9).reshape(3, 3)
            ih = _recv_array(sock, np.float64, 9).reshape(3, 3)  # numdp inverts the box itself
            _check_cell(h, ih)
            (n,) = struct.unpack("=i", _recv_exact(sock, 4))
            if n <= 0 or (natoms is not None and n != natoms):
                raise InputError(f"i-PI sent {n} atoms, but the atom types given are for "
                                 f"{natoms if natoms is not None else 'a positive number'}")
            pos = _recv_array(sock, np.float64, 3 * n).reshape(n, 3)
            energy, forces, virial = evaluate(pos * _ANGSTROM_PER_BOHR, h.T * _ANGSTROM_PER_BOHR)
            result = (energy, forces, virial)
            session.evaluations += 1
        elif head == GETFORCE:
            if result is None:
                raise InputError("i-PI asked for forces (GETFORCE) before sending positions "
                                 "(POSDATA): not the i-PI protocol")
            energy, forces, virial = result
            f = np.ascontiguousarray(forces, dtype=np.float64)
            f = f * (IPI_HARTREE_PER_EV * _ANGSTROM_PER_BOHR)  # eV/Å -> Ha/Bohr
            v = np.ascontiguousarray(np.asarray(virial, dtype=np.float64).T) * IPI_HARTREE_PER_EV
            _send(sock, FORCEREADY + struct.pack("=di", energy * IPI_HARTREE_PER_EV, f.shape[0])
                  + f.tobytes() + v.tobytes() + struct.pack("=i", 0))
            result = None
        elif head == EXIT:
            session.exited = True
            return session
        else:
            raise InputError(f"unexpected message from the server: {head!r} (is it an i-PI "
                             f"server? numdp ipi speaks i-PI's socket protocol)")


def _send(sock: socket.socket, data: bytes) -> None:
    """sock.sendall(data); Disconnected when the server has closed or reset the connection."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionError):
        raise Disconnected() from None
