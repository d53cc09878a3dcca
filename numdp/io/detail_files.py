"""`dp test -d PREFIX` detail files: data and prediction side by side, one block per system.

Files and columns (DeePMD-kit's names and order; one row per frame, or per atom for forces;
a suffix of PREFIX itself is replaced, as dp test's pathlib `with_suffix` does: `-d res.txt`
writes res.e.out, ...)::

    PREFIX.e.out          data_e pred_e                                   eV
    PREFIX.e_peratom.out  data_e pred_e  (both divided by the atom count)  eV/atom
    PREFIX.f.out          data_fx data_fy data_fz pred_fx pred_fy pred_fz eV/Å
    PREFIX.v.out          data_vxx ... data_vzz pred_vxx ... pred_vzz     eV (9 + 9 columns)
    PREFIX.v_peratom.out  the same divided by the atom count             eV/atom
    PREFIX.s.out          data_sxx ... data_szz pred_sxx ... pred_szz     eV/Å³ (stress −Ξ/V,
                          periodic systems with virial labels, as dp test 3.2)

As `dp test` does with several systems, every system appends a block to the same files, headed
by a comment line ``# SYSTEM: <column names>`` (``# SYSTEM (eV/Å³): ...`` in the stress file; dp
test 3.2 writes this line for the first system only, 2.x for each, as numdp), so
`numpy.loadtxt` reads a whole file at once.
A quantity without labels in a system gets no block there (dp test would write zeros as data);
a file no system has labels for is not written.  Existing files are backed up by `numdp test`
(#NAME.N#, numdp.io.backup).
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError

_V = ("xx", "xy", "xz", "yx", "yy", "yz", "zx", "zy", "zz")
COLUMNS = {
    "e": "data_e pred_e",
    "e_peratom": "data_e pred_e",
    "f": "data_fx data_fy data_fz pred_fx pred_fy pred_fz",
    "v": " ".join([f"data_v{c}" for c in _V] + [f"pred_v{c}" for c in _V]),
    "v_peratom": " ".join([f"data_v{c}" for c in _V] + [f"pred_v{c}" for c in _V]),
    "s": " ".join([f"data_s{c}" for c in _V] + [f"pred_s{c}" for c in _V]),
}
UNITS = {"s": " (eV/Å³)"}
"""The header's unit after the system's name, where dp test writes one."""


@dataclass
class Predictions:
    """A model's predictions on consecutive frames of one system: energy eV, forces (N, 3) eV/Å,
    virial (3, 3) eV per frame."""

    energy: list = field(default_factory=list)
    forces: list = field(default_factory=list)
    virial: list = field(default_factory=list)

    def add(self, energy: float, forces: np.ndarray, virial: np.ndarray) -> None:
        self.energy.append(float(energy))
        self.forces.append(np.asarray(forces, dtype=np.float64))
        self.virial.append(np.asarray(virial, dtype=np.float64))


class DetailFiles:
    """Collects the blocks of the detail files with prefix `prefix`; `write` writes them."""

    def __init__(self, prefix):
        self.prefix = str(prefix)
        self.blocks: dict[str, list[str]] = {kind: [] for kind in COLUMNS}

    def path(self, kind: str) -> Path:
        """PREFIX with its last suffix replaced by `.KIND.out`, as dp test names them
        (pathlib's with_suffix: `-d res` and `-d res.txt` both give res.e.out, `-d out/` gives
        out.e.out); InputError for a prefix without a file name (`.`)."""
        try:
            return Path(self.prefix).with_suffix(f".{kind}.out")
        except ValueError:
            raise InputError(f"-d {self.prefix}: not a file name prefix (the detail files are "
                             f"PREFIX.e.out, ...)") from None

    def _block(self, kind: str, name: str, rows: np.ndarray) -> None:
        buf = io.StringIO()
        np.savetxt(buf, rows, header=f"{name}{UNITS.get(kind, '')}: {COLUMNS[kind]}")
        self.blocks[kind].append(buf.getvalue())

    def add_system(self, name: str, system, pred: Predictions) -> None:
        """Blocks for `system` (numdp.io.npy_system.System) over its first len(pred.energy)
        frames, with predictions `pred`."""
        nf, n = len(pred.energy), system.natoms
        if system.energy is not None:
            rows = np.column_stack([system.energy[:nf], pred.energy])
            self._block("e", name, rows)
            self._block("e_peratom", name, rows / n)
        if system.forces is not None:
            rows = np.column_stack([system.forces[:nf].reshape(-1, 3), np.reshape(pred.forces, (-1, 3))])
            self._block("f", name, rows)
        if system.virial is not None:
            rows = np.column_stack([system.virial[:nf].reshape(-1, 9), np.reshape(pred.virial, (-1, 9))])
            self._block("v", name, rows)
            self._block("v_peratom", name, rows / n)
            volume = (None if system.boxes is None else
                      np.abs(np.linalg.det(system.boxes[:nf].reshape(-1, 3, 3)))[:, None])
            if volume is not None and (volume > 0.0).all():   # stress −Ξ/V, as dp test
                self._block("s", name, -rows / volume)

    def paths(self) -> list[Path]:
        """The files `write` writes: those that have blocks."""
        return [self.path(kind) for kind, blocks in self.blocks.items() if blocks]

    def write(self) -> list[Path]:
        """Write the files that have blocks, each atomically (numdp.io.atomic; the caller backs
        up earlier files first: numdp.io.backup.Backups); returns their paths."""
        from .atomic import atomic_path

        written = []
        for kind, blocks in self.blocks.items():
            if not blocks:
                continue
            path = self.path(kind)
            with atomic_path(path, "detail file") as tmp:
                try:
                    tmp.write_text("".join(blocks))
                except OSError as exc:
                    raise InputError(f"{path}: cannot write ({exc.strerror})") from None
            written.append(path)
        return written
