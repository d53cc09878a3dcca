"""Cell relaxation during a line-search minimization, as LAMMPS' `fix box/relax iso|aniso|tri P`
with its defaults (docs/md.md, "Energy minimization"; [minimize] box).

The cell adds degrees of freedom s (scale factors of the cell at the minimization's start, the
reference cell h_ref: lengths lx, ly, lz and tilts xy, xz, yz of its lower-triangular form, the
frame LAMMPS holds a cell in) to the atoms' 3N, and the minimizer lowers the enthalpy-like
objective

    E + P_t (V - V_ref)        (P_t: the target pressure, V_ref = lx_ref ly_ref lz_ref)

whose generalized forces on s ("fextra", eV) are, with P the virial pressure tensor (no kinetic
part, as LAMMPS' `compute pressure ... virial`; the velocities are zero anyway) and s_a = l_a /
l_a,ref:

- isotropic (1 dof: s = lx / lx_ref, the cell scales uniformly):  (P - P_t) 3 s² V_ref, P the
  scalar pressure;
- anisotropic (3: s_x, s_y, s_z):  (P_xx - P_t) s_y s_z V_ref, (P_yy - P_t) s_x s_z V_ref,
  (P_zz - P_t) s_x s_y V_ref; the tilts keep their ratio to the lengths (LAMMPS' scalexy /
  scalexz / scaleyz default);
- triclinic (6: s_x, s_y, s_z, then yz, xz, xy in units of ly_ref, lx_ref, lx_ref):  the three
  above and P_yz lx ly ly_ref, P_xz lx ly lx_ref, P_xy lx lz lx_ref (the off-diagonal target is 0).

These are -dE/ds for an orthogonal cell (for a tilted one LAMMPS' approximation, kept here);
every one is zero exactly when the pressure tensor equals the target, so a converged run ends at
P = P_t within what ftol allows (fextra joins the atoms' forces in the force norms).  A line-search
step of alpha along the direction (h, h_s) moves s by ds = alpha h_s: a length to l_start +
ds l_ref, a tilt to t_start + ds l_ref (triclinic), and the atoms with the cell (fractional
coordinates kept; LAMMPS' `dilate all`) before they move by alpha h.  No cell dof moves by more
than vmax per step: alpha <= vmax / |h_s| (LAMMPS' max_alpha).  The cell dofs are global: every
rank holds the same and computes the same (the virial is already summed over the ranks).

The atoms scale about the origin (LAMMPS: about the cell's centre); the two differ by a rigid
translation, which changes no energy, force or pressure.
"""
from __future__ import annotations

import math

import numpy as np

from ..config import BoxRelaxSettings
from ..errors import InputError
from ..system import State
from ..units import EV_PER_A3_TO_BAR
from .barostat import is_lower_triangular

DOFS = {"isotropic": 1, "anisotropic": 3, "triclinic": 6}
_LENGTH = ((0, 0), (1, 1), (2, 2))     # lx, ly, lz in the rows-as-vectors cell
_TILT = ((2, 1), (2, 0), (1, 0))       # yz, xz, xy (LAMMPS' dof order after the lengths)


def lammps_pressure_components(virial: np.ndarray, volume: float) -> np.ndarray:
    """(6,) eV/Å³: P_xx, P_yy, P_zz, P_yz, P_xz, P_xy of the virial (3, 3) eV alone (LAMMPS' pair
    deepmd takes the off-diagonal ones from the rows below the diagonal)."""
    w = np.asarray(virial, dtype=np.float64)
    return np.array([w[0, 0], w[1, 1], w[2, 2], w[2, 1], w[2, 0], w[1, 0]]) / volume


class BoxRelax:
    """The cell degrees of freedom of a minimization (module docstring); `settings`: [minimize] box.

    `reference` is the cell h_ref (3, 3) Å at the minimization's start (the minimizer keeps it in
    State.minimize["box_reference"], so that a checkpoint carries it)."""

    def __init__(self, settings: BoxRelaxSettings):
        self.settings = settings
        self.ndof = DOFS[settings.coupling]
        self.target = settings.pressure / EV_PER_A3_TO_BAR   # eV/Å³

    def check_cell(self, state: State, where: str) -> None:
        """InputError unless the cell is periodic along a, b, c (and lower-triangular, a along x and
        b in the xy plane as LAMMPS holds it, for anisotropic and triclinic coupling)."""
        pbc = state.pbc_flags if state.box is not None else (False, False, False)
        if state.box is None or not all(pbc):
            raise InputError(f"{where}: [minimize] box: cell relaxation needs a cell periodic along a, b and c "
                             f"(as LAMMPS' fix box/relax)")
        if self.settings.coupling != "isotropic" and not is_lower_triangular(state.box):
            raise InputError(f"{where}: [minimize] box.coupling = '{self.settings.coupling}' needs a lower-"
                             f"triangular cell (a along x, b in the xy plane, as LAMMPS' cells); rotate it first")

    # -- forces --------------------------------------------------------------------------------------
    def scales(self, box: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """(3,) s_x, s_y, s_z: the lengths over the reference's (isotropic: |a| / |a_ref| thrice)."""
        if self.ndof == 1:
            return np.full(3, float(np.linalg.norm(box[0]) / np.linalg.norm(reference[0])))
        return np.array([box[i, j] / reference[i, j] for i, j in _LENGTH])

    def reference_volume(self, reference: np.ndarray) -> float:
        return abs(float(np.linalg.det(reference)))

    def energy(self, state: State, reference: np.ndarray) -> float:
        """P_t (V - V_ref), eV (the scale factors' product for V, as LAMMPS)."""
        s = self.scales(state.box, reference)
        return self.target * (float(s[0] * s[1] * s[2]) - 1.0) * self.reference_volume(reference)

    def forces(self, state: State, reference: np.ndarray) -> np.ndarray:
        """(ndof,) eV: the generalized forces on the cell dofs at state.box and state.virial."""
        box = state.box
        p = lammps_pressure_components(state.virial, abs(float(np.linalg.det(box))))
        s = self.scales(box, reference)
        v0 = self.reference_volume(reference)
        if self.ndof == 1:
            return np.array([(float(p[:3].sum()) / 3.0 - self.target) * 3.0 * s[0] * s[0] * v0])
        f = np.array([(p[0] - self.target) * s[1] * s[2] * v0,
                      (p[1] - self.target) * s[0] * s[2] * v0,
                      (p[2] - self.target) * s[0] * s[1] * v0])
        if self.ndof == 3:
            return f
        lx, ly, lz = (box[i, j] for i, j in _LENGTH)
        lx0, ly0 = reference[0, 0], reference[1, 1]
        return np.concatenate([f, [p[3] * ly * lx * ly0, p[4] * lx * ly * lx0, p[5] * lx * lz * lx0]])

    # -- steps ---------------------------------------------------------------------------------------
    def max_alpha(self, direction: np.ndarray) -> float:
        """The largest step (Å²/eV) that moves no cell dof by more than vmax (inf: h_s = 0)."""
        moving = np.abs(direction[direction != 0.0])
        return float(self.settings.vmax / moving.max()) if moving.size else math.inf

    def cell_at(self, start: np.ndarray, reference: np.ndarray, ds: np.ndarray) -> np.ndarray:
        """The cell (3, 3) Å after moving the dofs by ds (ndof,) from the cell `start`."""
        if self.ndof == 1:
            scale = float(np.linalg.norm(start[0]) / np.linalg.norm(reference[0])) + float(ds[0])
            return self._checked(reference * scale, scale=scale)
        new = start.copy()
        for k, (i, j) in enumerate(_LENGTH):
            new[i, j] = start[i, j] + ds[k] * reference[i, j]
        if self.ndof == 3:   # the tilts keep their ratio to the length of the vector they lean along
            for i, j in _TILT:
                new[i, j] = new[i, i] * reference[i, j] / reference[i, i]
        else:
            for k, ((i, j), along) in enumerate(zip(_TILT, (1, 0, 0))):
                new[i, j] = start[i, j] + ds[3 + k] * reference[along, along]
        return self._checked(new, scale=min(new[i, j] for i, j in _LENGTH))

    def _checked(self, new: np.ndarray, scale: float) -> np.ndarray:
        """`new`, unless a length (or the isotropic scale) is not positive: then the one-line
        error of LAMMPS' "Fix box/relax generated negative box length"."""
        if not scale > 0.0 or not np.all(np.isfinite(new)):
            raise InputError(f"cell relaxation made a cell without volume ({np.round(new, 6).tolist()} A): a line "
                             f"search stepped a cell length to zero or below; reduce [minimize] box.vmax")
        return new

    def move(self, state: State, start_box: np.ndarray, start_positions: np.ndarray, reference: np.ndarray,
             ds: np.ndarray) -> None:
        """state.box = the cell after ds, and the atoms at `start_positions` (in `start_box`) with it."""
        if not np.any(ds):   # back at the start: exactly its cell and positions
            state.positions[:] = start_positions
            state.box = start_box.copy()
            return
        new = self.cell_at(start_box, reference, ds)
        state.positions[:] = start_positions @ (np.linalg.inv(start_box) @ new)
        state.box = new

    # -- report --------------------------------------------------------------------------------------
    def describe(self) -> str:
        b = self.settings
        return f"cell relaxation {b.coupling} to {b.pressure:g} bar (vmax {b.vmax:g})"

    def final_line(self, state: State, reference: np.ndarray) -> str:
        """The summary's line on the cell: volume at the start and end, the pressure tensor (bar)."""
        volume = abs(float(np.linalg.det(state.box)))
        p = lammps_pressure_components(state.virial, volume) * EV_PER_A3_TO_BAR
        return (f"  Cell volume initial, final = {self.reference_volume(reference):.10g} {volume:.10g} A^3; "
                f"pressure xx yy zz yz xz xy = {' '.join(f'{x:.6g}' for x in p)} bar "
                f"(target {self.settings.pressure:g}, {self.settings.coupling})")
