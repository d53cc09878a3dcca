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
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise Disconnected()
        got += k
    return bytes(buf)


def _recv_array(sock, dtype, count: int) -> np.ndarray:
    dt = np.dtype(dtype)
    return np.frombuffer(_recv_exact(sock, dt.itemsize * count), dtype=dt).copy()


def serve(sock: socket.socket, evaluate, natoms: int | None) -> Session:
    """Answer the server until it says EXIT or closes the connection.

    evaluate(positions (N, 3) Å, box (3, 3) Å rows = vectors) -> (energy eV, forces (N, 3) eV/Å,
    virial (3, 3) eV, DeePMD-kit sign).  natoms: the atom count the types were given for (a
    different count from the server is an InputError), or None.
    """
    session = Session()
    ready = False  # INIT received
    result = None  # answer of the last POSDATA, until GETFORCE
    while True:
        try:
            head = _recv_exact(sock, HEADER_LEN)
        except Disconnected:
            return session
        if head == STATUS:
            sock.sendall(NEEDINIT if not ready else HAVEDATA if result is not None else READY)
        elif head == INIT:
            _replica, length = struct.unpack("=ii", _recv_exact(sock, 8))
            _recv_exact(sock, length)  # parameters string: numdp takes none
            ready = True
        elif head == POSDATA:
            h = _recv_array(sock, np.float64, 9).reshape(3, 3)
            _recv_array(sock, np.float64, 9)  # the inverse cell: numdp inverts the box itself
            (n,) = struct.unpack("=i", _recv_exact(sock, 4))
            pos = _recv_array(sock, np.float64, 3 * n).reshape(n, 3)
            if natoms is not None and n != natoms:
                raise InputError(f"i-PI sent {n} atoms, but the atom types given are for {natoms}")
            energy, forces, virial = evaluate(pos * _ANGSTROM_PER_BOHR, h.T * _ANGSTROM_PER_BOHR)
            result = (energy, forces, virial)
            session.evaluations += 1
        elif head == GETFORCE:
            if result is None:
                raise RuntimeError("i-PI asked for forces before sending positions")
            energy, forces, virial = result
            f = np.ascontiguousarray(forces, dtype=np.float64)
            f = f * (IPI_HARTREE_PER_EV * _ANGSTROM_PER_BOHR)  # eV/Å -> Ha/Bohr
            v = np.ascontiguousarray(np.asarray(virial, dtype=np.float64).T) * IPI_HARTREE_PER_EV
            sock.sendall(FORCEREADY + struct.pack("=di", energy * IPI_HARTREE_PER_EV, f.shape[0])
                         + f.tobytes() + v.tobytes() + struct.pack("=i", 0))
            result = None
        elif head == EXIT:
            session.exited = True
            return session
        else:
            raise RuntimeError(f"unexpected message from the i-PI server: {head!r}")
