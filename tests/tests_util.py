"""Helpers for tests: write small DeePMD npy systems; finite-difference forces."""
from pathlib import Path

import numpy as np


def write_system(path, coord, box, atype, type_map, energy=None, force=None, virial=None):
    """Write a one-set DeePMD npy system; box None marks it non-periodic."""
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
    for name, arr in (("energy", energy), ("force", force), ("virial", virial)):
        if arr is not None:
            np.save(s / f"{name}.npy", np.asarray(arr).reshape(nf, -1) if name != "energy" else arr)
    return path


def fd_force(model, pos, types, box, i, c, h):
    """-(E(x + h) - E(x - h)) / 2h for coordinate c of atom i: the central-difference force (eV/Å)."""
    p = np.array(pos, dtype=float)
    p[i, c] += h
    ep = model.evaluate(p, types, box, atom_virial=False).energy
    p[i, c] -= 2 * h
    em = model.evaluate(p, types, box, atom_virial=False).energy
    return -(ep - em) / (2 * h)
