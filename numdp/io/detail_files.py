"""`dp test -d PREFIX` detail files: data and prediction side by side, one block per system.

Files and columns (DeePMD-kit's names and order; one row per frame, or per atom for forces)::

    PREFIX.e.out          data_e pred_e                                   eV
    PREFIX.e_peratom.out  data_e pred_e  (both divided by the atom count)  eV/atom
    PREFIX.f.out          data_fx data_fy data_fz pred_fx pred_fy pred_fz eV/Å
    PREFIX.v.out          data_vxx ... data_vzz pred_vxx ... pred_vzz     eV (9 + 9 columns)
    PREFIX.v_peratom.out  the same divided by the atom count             eV/atom

As `dp test` does with several systems, every system appends a block to the same files, headed
by a comment line ``# SYSTEM: <column names>``, so `numpy.loadtxt` reads a whole file at once.
A quantity without labels in a system gets no block there (dp test would write zeros as data);
a file no system has labels for is not written.
"""
from __future__ import annotations

import io
import os
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
}


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
        return Path(f"{self.prefix}.{kind}.out")

    def _block(self, kind: str, name: str, rows: np.ndarray) -> None:
        buf = io.StringIO()
        np.savetxt(buf, rows, header=f"{name}: {COLUMNS[kind]}")
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

    def write(self) -> list[Path]:
        """Write the files that have blocks (an existing file is first kept as its first free
        backup `#NAME.N#`, numdp.io.backup: listed in `self.backed_up`); returns their paths."""
        from .backup import back_up

        written = []
        self.backed_up: list[tuple[Path, Path]] = []
        for kind, blocks in self.blocks.items():
            if not blocks:
                continue
            path = self.path(kind)
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            try:
                tmp.write_text("".join(blocks))
                self.backed_up += back_up([path])
                os.replace(tmp, path)
            except (OSError, InputError) as exc:
                tmp.unlink(missing_ok=True)
                if isinstance(exc, InputError):
                    raise
                raise InputError(f"{path}: cannot write ({exc.strerror})") from None
            written.append(path)
        return written
