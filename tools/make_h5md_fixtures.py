"""Write tests/data/h5md/: H5MD files written by MDAnalysis' H5MDWriter, read by
tests/test_sweep_h5md.py (numdp reading other programs' H5MD files).

Run with a Python that has MDAnalysis (not needed by the tests), from the repository root:

    python -m venv /tmp/h5rd && /tmp/h5rd/bin/pip install MDAnalysis h5py
    /tmp/h5rd/bin/python tools/make_h5md_fixtures.py

Files (3 atoms, 2 frames, a triclinic cell of lengths 10, 11, 12 Å and angles 80, 85, 95 degrees,
positions (k + 1) * [[1, 2, 3], [4, 5, 6], [7, 8, 9]] / 10 Å in frame k):

- mdanalysis_full.h5md: position, velocity (0.1 * positions, Å/ps), force (kJ mol-1 Å-1), box,
  step 10 k, time 0.5 k ps; no species (MDAnalysis writes none).
- mdanalysis_positions.h5md: the same positions and box only.
"""
from __future__ import annotations

from pathlib import Path

import MDAnalysis as mda
import numpy as np

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "h5md"
BASE = np.arange(1.0, 10.0).reshape(3, 3) / 10.0
DIMENSIONS = [10.0, 11.0, 12.0, 80.0, 85.0, 95.0]


def write(name: str, velocities: bool, forces: bool) -> None:
    u = mda.Universe.empty(3, trajectory=True, velocities=velocities, forces=forces)
    with mda.Writer(str(OUT / name), n_atoms=3, velocities=velocities, forces=forces, lengthunit="Angstrom",
                    timeunit="ps", velocityunit="Angstrom/ps", forceunit="kJ/(mol*Angstrom)") as w:
        for k in range(2):
            ts = u.trajectory.ts
            ts.positions = BASE * (k + 1)
            ts.dimensions = DIMENSIONS
            ts.time = 0.5 * k
            ts.data["step"] = 10 * k
            if velocities:
                ts.velocities = 0.1 * ts.positions
            if forces:
                ts.forces = -ts.positions
            w.write(u.atoms)


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    write("mdanalysis_full.h5md", True, True)
    write("mdanalysis_positions.h5md", False, False)
