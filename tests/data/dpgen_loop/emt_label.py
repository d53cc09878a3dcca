"""DP-GEN fp_style "custom" labeller: reads input.POSCAR (vasp/poscar), labels it with ASE's EMT,
writes the frame as deepmd/npy into ./labeled (energy eV, forces eV/A, virial eV)."""
import os
import sys

import numpy as np
from ase.calculators.emt import EMT
from ase.io import read

inp, out = (sys.argv[1:3] if len(sys.argv) > 2 else ("input.POSCAR", "labeled"))
atoms = read(inp, format="vasp")
atoms.calc = EMT()
energy = atoms.get_potential_energy()
forces = atoms.get_forces()
virial = -atoms.get_stress(voigt=False) * atoms.get_volume()
symbols = sorted(set(atoms.get_chemical_symbols()), key=atoms.get_chemical_symbols().index)
os.makedirs(os.path.join(out, "set.000"), exist_ok=True)
np.savetxt(os.path.join(out, "type.raw"), [symbols.index(s) for s in atoms.get_chemical_symbols()], fmt="%d")
with open(os.path.join(out, "type_map.raw"), "w") as f:
    f.write("\n".join(symbols) + "\n")
for name, value in (("box", atoms.cell.array), ("coord", atoms.positions), ("energy", [energy]),
                    ("force", forces), ("virial", virial)):
    np.save(os.path.join(out, "set.000", f"{name}.npy"), np.reshape(value, (1, -1)))
print(f"EMT energy {energy:.10f} eV, max |F| {np.abs(forces).max():.6f} eV/A")
