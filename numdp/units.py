"""Metal units (LAMMPS `units metal`) and the constants that convert between them.

numdp works in: energy eV, length Å, time ps, mass amu (g/mol), temperature K, pressure bar,
velocity Å/ps, force eV/Å, virial eV (DeePMD-kit sign: virial = -stress * volume).

Derived relations used by the MD code::

    kinetic energy  K [eV]    = 0.5 * m [amu] * v**2 [Å²/ps²] * MVV2E
    acceleration    a [Å/ps²] = F [eV/Å] / (m [amu] * MVV2E)
    pressure        P [bar]   = P [eV/Å³] * EV_PER_A3_TO_BAR
    temperature     T [K]     = 2 K / (N_f * KB)

Standard atomic weights (`STANDARD_MASSES`, amu) are the IUPAC conventional values, rounded to
at most 5 significant digits; for elements without a stable isotope the mass number of the
longest-lived isotope is given.
"""
from __future__ import annotations

from .errors import InputError

# Boltzmann constant, eV/K (CODATA 2018, exact).
KB = 8.617333262e-5

# amu * Å² / ps² expressed in eV:  1.66053906660e-27 kg * 1e-20 m² / 1e-24 s² / 1.602176634e-19 J.
MVV2E = 1.0364269e-4

# eV/Å³ expressed in bar:  1.602176634e-19 J / 1e-30 m³ / 1e5 Pa.
EV_PER_A3_TO_BAR = 1.602176634e6

# 1 eV per particle expressed in kJ/mol: 1.602176634e-22 kJ * 6.02214076e23 / mol.
EV_TO_KJ_PER_MOL = 96.48533212331002

# ASE's time unit, Å * sqrt(amu / eV), expressed in ps (ASE writes momenta in amu Å / that unit).
# Since amu/eV = MVV2E ps²/Å², that unit is sqrt(MVV2E) ps (about 0.0101805 ps).
ASE_TIME_IN_PS = MVV2E ** 0.5

STANDARD_MASSES: dict[str, float] = {
    "H": 1.008, "He": 4.0026, "Li": 6.94, "Be": 9.0122, "B": 10.81, "C": 12.011, "N": 14.007,
    "O": 15.999, "F": 18.998, "Ne": 20.180, "Na": 22.990, "Mg": 24.305, "Al": 26.982,
    "Si": 28.085, "P": 30.974, "S": 32.06, "Cl": 35.45, "Ar": 39.948, "K": 39.098, "Ca": 40.078,
    "Sc": 44.956, "Ti": 47.867, "V": 50.942, "Cr": 51.996, "Mn": 54.938, "Fe": 55.845,
    "Co": 58.933, "Ni": 58.693, "Cu": 63.546, "Zn": 65.38, "Ga": 69.723, "Ge": 72.630,
    "As": 74.922, "Se": 78.971, "Br": 79.904, "Kr": 83.798, "Rb": 85.468, "Sr": 87.62,
    "Y": 88.906, "Zr": 91.224, "Nb": 92.906, "Mo": 95.95, "Tc": 98.0, "Ru": 101.07,
    "Rh": 102.91, "Pd": 106.42, "Ag": 107.87, "Cd": 112.41, "In": 114.82, "Sn": 118.71,
    "Sb": 121.76, "Te": 127.60, "I": 126.90, "Xe": 131.29, "Cs": 132.91, "Ba": 137.33,
    "La": 138.91, "Ce": 140.12, "Pr": 140.91, "Nd": 144.24, "Pm": 145.0, "Sm": 150.36,
    "Eu": 151.96, "Gd": 157.25, "Tb": 158.93, "Dy": 162.50, "Ho": 164.93, "Er": 167.26,
    "Tm": 168.93, "Yb": 173.05, "Lu": 174.97, "Hf": 178.49, "Ta": 180.95, "W": 183.84,
    "Re": 186.21, "Os": 190.23, "Ir": 192.22, "Pt": 195.08, "Au": 196.97, "Hg": 200.59,
    "Tl": 204.38, "Pb": 207.2, "Bi": 208.98, "Po": 209.0, "At": 210.0, "Rn": 222.0,
    "Fr": 223.0, "Ra": 226.0, "Ac": 227.0, "Th": 232.04, "Pa": 231.04, "U": 238.03,
    "Np": 237.0, "Pu": 244.0,
}


def standard_mass(element: str, what: str = "masses") -> float:
    """Standard atomic weight (amu) of an element symbol such as "Cu".

    Raises InputError naming `what` when the symbol is not in the table.
    """
    try:
        return STANDARD_MASSES[element]
    except KeyError:
        raise InputError(
            f"{what}: no standard mass for element '{element}'; give it in [system] masses, "
            f"e.g. masses = {{ {element} = 1.0 }} (amu)"
        ) from None

# i-PI's socket protocol carries atomic units as i-PI converts them (ipi.utils.units): 1 Å =
# 1.8897261 Bohr and 1 eV = 0.036749326 Hartree.  numdp's i-PI client uses the same factors, so
# that positions and energies make the round trip Å -> Bohr -> Å (eV -> Ha -> eV) up to round-off
# (CODATA's 1.8897261246 and 0.0367493222 differ by 1e-8 and 1e-7 relative).
IPI_BOHR_PER_ANGSTROM = 1.8897261
IPI_HARTREE_PER_EV = 0.036749326
