"""Thermo keywords: the columns a thermo line may have, with LAMMPS' names and meanings (units metal).

`[output] thermo_columns` (numdp run) and `thermo_style custom` (numdp lmp) name them; the
default is numdp's `step time temp pe ke etotal press vol`.  Each keyword has a unit, a column
width, a format and LAMMPS' column title; `values` computes the values of a Snapshot that the
columns ask for (collective: every rank calls it, reductions are global).

Box keywords are those of LAMMPS' restricted triclinic form of the cell (numdp.io.structure.
lammps_box: a along x, b in the xy plane) with the origin at 0, and the pressure tensor is
expressed in that frame, so the columns are what LAMMPS prints for the same cell whatever the
orientation numdp holds it in.  Without a cell periodic along a, b and c the pressure, the volume
and what derives from them are nan, and without a cell the box columns are nan.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ..units import EV_PER_A3_TO_BAR

AMU_PER_A3_TO_G_PER_CM3 = 1.66053906660   # 1 amu / 1 Å³ in g/cm³ (LAMMPS' density, units metal)


@dataclass(frozen=True)
class ThermoKeyword:
    unit: str       # "" for a count or a dimensionless number
    width: int
    fmt: str        # the format of the value, e.g. ".6f"
    what: str
    title: str = ""   # LAMMPS' column title (thermo_style custom's header), e.g. "PotEng" for pe


_E = dict(unit="eV", width=16, fmt=".6f")
_L = dict(unit="Å", width=12, fmt=".6f")
_P = dict(unit="bar", width=12, fmt=".3f")
_A = dict(unit="degree", width=10, fmt=".4f")
_SPECS: dict[str, ThermoKeyword] = {   # (titles below)
    "step": ThermoKeyword("", 10, "d", "step"),
    "time": ThermoKeyword("ps", 10, ".4f", "time"),
    "atoms": ThermoKeyword("", 10, "d", "number of atoms"),
    "temp": ThermoKeyword("K", 10, ".3f", "temperature (N_f = 3N - 3)"),
    "pe": ThermoKeyword(**_E, what="potential energy"),
    "evdwl": ThermoKeyword(**_E, what="pair energy (= pe: the Deep Potential)"),
    "epair": ThermoKeyword(**_E, what="pair energy (= pe)"),
    "emol": ThermoKeyword(**_E, what="bonded energy (0)"),
    "ecoul": ThermoKeyword(**_E, what="Coulomb energy (0)"),
    "elong": ThermoKeyword(**_E, what="long-range energy (0)"),
    "ke": ThermoKeyword("eV", 12, ".6f", "kinetic energy"),
    "etotal": ThermoKeyword(**_E, what="pe + ke"),
    "enthalpy": ThermoKeyword(**_E, what="etotal + press vol"),
    "ecouple": ThermoKeyword(**_E, what="energy the thermostat took out"),
    "econserve": ThermoKeyword(**_E, what="etotal + ecouple"),
    "press": ThermoKeyword(**_P, what="pressure"),
    "vol": ThermoKeyword("Å³", 12, ".3f", "volume"),
    "density": ThermoKeyword("g/cm³", 10, ".6f", "mass density"),
    **{k: ThermoKeyword(**_L, what=f"LAMMPS box {k}") for k in
       ("lx", "ly", "lz", "xy", "xz", "yz", "xlo", "xhi", "ylo", "yhi", "zlo", "zhi", "cella", "cellb", "cellc")},
    **{k: ThermoKeyword(**_A, what=f"cell angle {k[4:]}") for k in ("cellalpha", "cellbeta", "cellgamma")},
    **{k: ThermoKeyword(**_P, what=f"pressure tensor {k[1:]} (LAMMPS' frame)") for k in
       ("pxx", "pyy", "pzz", "pxy", "pxz", "pyz")},
    "fnorm": ThermoKeyword("eV/Å", 14, ".6g", "2-norm of the global force vector (the atoms' 3N components)"),
    "fmax": ThermoKeyword("eV/Å", 14, ".6g", "largest |component| of any atom's force"),
}
_TITLES = {"step": "Step", "time": "Time", "atoms": "Atoms", "temp": "Temp", "press": "Press", "vol": "Volume",
           "density": "Density", "pe": "PotEng", "evdwl": "E_vdwl", "epair": "E_pair", "emol": "E_mol",
           "ecoul": "E_coul", "elong": "E_long", "ke": "KinEng", "etotal": "TotEng", "enthalpy": "Enthalpy",
           "ecouple": "Ecouple", "econserve": "Econserve", "cellalpha": "CellAlpha", "cellbeta": "CellBeta",
           "cellgamma": "CellGamma"}
KEYWORDS: dict[str, ThermoKeyword] = {k: replace(kw, title=_TITLES.get(k, k.capitalize()))
                                       for k, kw in _SPECS.items()}
FROM_TITLE = {kw.title: k for k, kw in KEYWORDS.items()}
"""LAMMPS' column title -> keyword."""
HEADERS = ("keywords", "lammps")
"""Header styles: the keywords themselves (numdp run's default) or LAMMPS' titles (numdp lmp)."""
DEFAULT_COLUMNS = ("step", "time", "temp", "pe", "ke", "etotal", "press", "vol")
"""numdp's thermo columns."""
ZERO_ENERGIES = ("emol", "ecoul", "elong")
_SNAPSHOT = DEFAULT_COLUMNS   # numdp's columns are the Snapshot's own fields
# LAMMPS' pair deepmd takes the off-diagonal virial components from the rows below the diagonal
_TENSOR = {"pxx": (0, 0), "pyy": (1, 1), "pzz": (2, 2), "pxy": (1, 0), "pxz": (2, 0), "pyz": (2, 1)}


def header(columns, style: str = "keywords") -> str:
    """The header line of thermo lines with `columns`: the keywords, or LAMMPS' titles (`style`
    "lammps": Step Temp PotEng ..., what LAMMPS log parsers look for), right-aligned over their
    values."""
    names = [KEYWORDS[c].title if style == "lammps" else c for c in columns]
    return " ".join(f"{n:>{max(KEYWORDS[c].width, len(n))}}" for n, c in zip(names, columns))


def memory_line(world) -> str:
    """LAMMPS' line before a run's thermo header, with each process's peak resident memory so far
    (MB; the model, the neighbour lists and the first forces are in), min/avg/max over the ranks:
    LAMMPS log parsers (lammps-logfile, ...) start a thermo block after it.  Collective."""
    import resource

    mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # Linux: kB
    lo, hi, avg = -world.max_global(-mb), world.max_global(mb), world.sum_global(mb) / world.size
    return (f"Per MPI rank memory allocation (min/avg/max) = {lo:.4g} | {avg:.4g} | {hi:.4g} Mbytes "
            f"(peak resident memory of each process so far)")


def line(columns, values, style: str = "keywords") -> str:
    """One thermo line: `values` (one per column) in the columns' formats, aligned under
    `header(columns, style)`."""
    out = []
    for c, v in zip(columns, values):
        kw = KEYWORDS[c]
        width = max(kw.width, len(kw.title if style == "lammps" else c))
        out.append(f"{int(v):>{width}d}" if kw.fmt == "d" else f"{v:>{width}{kw.fmt}}")
    return " ".join(out)


def values(snap, columns, origin=None) -> list[float]:
    """The values of `columns` for the Snapshot `snap` (collective when a column needs a sum over
    the ranks: density, atoms, the pressure tensor, fnorm and fmax); `origin`: LAMMPS' box corner
    (numdp.io.trajectory.BoxOrigin, [output] box_center) that xlo ... zhi are from (None: 0)."""
    out = []
    tensor = cell = norms = None
    for c in columns:
        if c in _SNAPSHOT:
            out.append(getattr(snap, c))
            continue
        world, state = snap.world, snap.state
        periodic = state.box is not None and all(state.pbc_flags)
        if cell is None and state.box is not None:
            cell = _LammpsCell(state.box, origin)
        if c in ("evdwl", "epair"):
            v = snap.pe
        elif c in ZERO_ENERGIES:
            v = 0.0
        elif c == "atoms":
            v = state.natoms_global
        elif c == "enthalpy":
            v = snap.etotal + snap.press * snap.vol / EV_PER_A3_TO_BAR if periodic else math.nan
        elif c == "ecouple":
            v = snap.econs - snap.etotal
        elif c == "econserve":
            v = snap.econs
        elif c == "density":
            mass = _global_sum(world, float(np.sum(state.masses)))
            v = mass / snap.vol * AMU_PER_A3_TO_G_PER_CM3 if periodic else math.nan
        elif c in ("fnorm", "fmax"):   # LAMMPS' thermo: the atoms' forces (a minimizer's cell forces not counted)
            if norms is None:
                from .minimize import force_norms_global

                norms = force_norms_global(state.forces, world) if state.forces is not None else None
            v = math.nan if norms is None else (norms.two if c == "fnorm" else norms.component)
        elif c in _TENSOR:
            if tensor is None:
                tensor = _pressure_tensor(snap, cell) if periodic else np.full((3, 3), math.nan)
            v = tensor[_TENSOR[c]]
        else:
            v = cell.value(c) if cell is not None else math.nan
        out.append(v)
    return out


class _LammpsCell:
    """The cell as LAMMPS holds it: lower-triangular rows H' = H Q (lammps_box), its lower corner
    at 0 or where `origin` (BoxOrigin) puts it."""

    def __init__(self, box: np.ndarray, origin=None):
        from ..io.structure import lammps_box

        self.h, self.q = lammps_box(np.asarray(box, dtype=np.float64))
        self.lo = np.zeros(3) if origin is None else origin.corner(self.h)

    def value(self, name: str) -> float:
        h = self.h
        lx, ly, lz = h[0, 0], h[1, 1], h[2, 2]
        a, b, c = h
        table = {"lx": lx, "ly": ly, "lz": lz, "xy": h[1, 0], "xz": h[2, 0], "yz": h[2, 1],
                 "xlo": self.lo[0], "xhi": self.lo[0] + lx, "ylo": self.lo[1], "yhi": self.lo[1] + ly,
                 "zlo": self.lo[2], "zhi": self.lo[2] + lz,
                 "cella": float(np.linalg.norm(a)), "cellb": float(np.linalg.norm(b)),
                 "cellc": float(np.linalg.norm(c))}
        if name in table:
            return float(table[name])
        u, v = {"cellalpha": (b, c), "cellbeta": (a, c), "cellgamma": (a, b)}[name]
        cos = float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))
        return math.degrees(math.acos(min(1.0, max(-1.0, cos))))


def _global_sum(world, value):
    return world.sum_global(value) if world is not None else value


def _pressure_tensor(snap, cell: _LammpsCell) -> np.ndarray:
    """(3, 3) bar: the snapshot's pressure tensor (Σ m v vᵀ + W) / V (`Snapshot.pressure_tensor`,
    collective) in LAMMPS' frame (Qᵀ P Q)."""
    return cell.q.T @ snap.pressure_tensor() @ cell.q
