"""Tests for the survivors of the eleventh round of mutation testing (what an MD run reports:
numdp.md.thermo's columns, numdp.md.reporters' snapshot, numdp.md.ramp, numdp.md.mtk's and the
thermostats' conserved energy, numdp.io.h5md's observables, numdp.io.trajectory's writers,
numdp.io.model_devi_file): each fails on one plausible mistake that the rest of the suite let
through (the mutant is named in the test's docstring; 2026-12-07).  No model and no MD run: the
pieces are called directly on a few atoms whose values are set by hand.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from numdp.md import thermo
from numdp.md.reporters import snapshot
from numdp.system import State
from numdp.units import EV_PER_A3_TO_BAR, KB


def _state(box=None, virial=None, natoms=4, seed=0) -> State:
    """`natoms` atoms of 2 amu with velocities of a few Å/ps (zero total momentum), pe = -3 eV."""
    rng = np.random.default_rng(seed)
    vel = rng.normal(scale=3.0, size=(natoms, 3))
    vel -= vel.mean(axis=0)
    box = np.diag([9.0, 10.0, 11.0]) if box is None else np.asarray(box, dtype=np.float64)
    return State(positions=rng.uniform(0.0, 5.0, size=(natoms, 3)), velocities=vel,
                 types=np.zeros(natoms, dtype=np.int32), masses=np.full(natoms, 2.0), box=box, type_map=["H"],
                 ids=np.arange(natoms, dtype=np.int64), step=7, time=0.0035,
                 forces=np.zeros((natoms, 3)), potential_energy=-3.0,
                 virial=np.diag([0.4, -0.2, 0.9]) if virial is None else virial, natoms_global=natoms)


class _Bath:
    """A thermostat that has taken `heat` eV out of the system (numdp.md.thermostats' protocol)."""

    def __init__(self, heat: float):
        self.heat = heat

    def reservoir_energy(self, state) -> float:
        return self.heat


def _values(snap, columns) -> dict[str, float]:
    return dict(zip(columns, thermo.values(snap, columns)))


# --------------------------------------------------------------------------------------------------
# numdp.md.thermo: LAMMPS' keywords, with a thermostat that has done work and a cell with three angles
# --------------------------------------------------------------------------------------------------


def test_ecouple_and_econserve_carry_the_thermostats_energy_with_lammps_sign():
    """Mutants `snap.etotal - snap.econs` for ecouple (its sign), `snap.econs + P V` for
    enthalpy, `etotal - reservoir` for econs in reporters.snapshot and `self.econs` for the
    total_energy observable (the other suites read them at step 0, where the thermostat has done nothing:
    ecouple = 0, econserve = etotal).  LAMMPS (thermo_style): ecouple is the cumulative energy
    change due to the thermostat, econserve = etotal + ecouple, enthalpy = etotal + press vol
    (no thermostat energy in it).  A bath that took 1.5 eV out: ecouple = +1.5 eV."""
    snap = snapshot(_state(), _Bath(1.5))
    v = _values(snap, ["etotal", "ecouple", "econserve", "enthalpy", "press", "vol"])
    assert v["ecouple"] == 1.5
    assert v["econserve"] == v["etotal"] + 1.5
    # P V in eV: press (bar) vol (Å³) / EV_PER_A3_TO_BAR; the same expression as the column's: exact
    assert v["enthalpy"] == v["etotal"] + v["press"] * v["vol"] / EV_PER_A3_TO_BAR
    # the trajectory's observables (numdp.io.h5md.OBSERVABLES) keep the two apart the same way
    obs = snap.observables()
    assert obs["total_energy"] == v["etotal"] and obs["conserved_energy"] == v["etotal"] + 1.5


def test_temperature_counts_3n_minus_3_degrees_of_freedom_and_press_its_kinetic_part():
    """Mutant `temperature(ke, 3 * state.natoms_global)` in reporters.snapshot (3N degrees of
    freedom: the thermo runs check temp only through ensembles whose thermostats use their own
    count).  numdp holds the total momentum at zero, so T = 2 K / ((3N - 3) kB) (LAMMPS' compute
    temp removes 3 for the same reason); for N = 4 the mutant is 25 % low.  The kinetic energy
    and the pressure from their definitions: K = Σ m v² / 2 MVV2E, P = (2K + tr W) / (3V)."""
    from numdp.units import MVV2E

    st = _state(natoms=4)
    snap = snapshot(st)
    ke = 0.5 * MVV2E * float(np.sum(st.masses[:, None] * st.velocities ** 2))
    # a few float64 sums of four atoms: relative round-off far below 1e-13
    assert snap.ke == pytest.approx(ke, rel=1e-13)
    assert snap.temp == pytest.approx(2.0 * ke / (9 * KB), rel=1e-13)
    assert snap.press == pytest.approx((2.0 * ke + 1.1) / (3.0 * 990.0) * EV_PER_A3_TO_BAR, rel=1e-13)
    assert snap.etotal == pytest.approx(ke - 3.0, rel=1e-13) and snap.vol == pytest.approx(990.0, rel=1e-15)


def test_cell_angles_are_lammps_alpha_beta_gamma():
    """Mutant cellalpha and cellbeta swapped (angle(a, c) for alpha).  LAMMPS (thermo_style):
    cellalpha is the angle between b and c, cellbeta between a and c, cellgamma between a and b.
    A cell with three different angles, built from them: a = (1, 0, 0) L_a, b in the xy plane at
    gamma from a, c at alpha from b and beta from a (the crystallographic construction)."""
    alpha, beta, gamma = 70.0, 80.0, 100.0
    la, lb, lc = 9.0, 10.0, 11.0
    ca, cb, cg = (math.cos(math.radians(x)) for x in (alpha, beta, gamma))
    sg = math.sin(math.radians(gamma))
    cx, cy = cb, (ca - cb * cg) / sg
    box = np.array([[la, 0.0, 0.0], [lb * cg, lb * sg, 0.0], [lc * cx, lc * cy, lc * math.sqrt(1 - cx * cx - cy * cy)]])
    v = _values(snapshot(_state(box)), ["cellalpha", "cellbeta", "cellgamma", "cella", "cellb", "cellc"])
    # acos of a cosine made of a few float64 operations: 1e-9 degree is far above the round-off
    assert [v["cellalpha"], v["cellbeta"], v["cellgamma"]] == pytest.approx([alpha, beta, gamma], abs=1e-9)
    assert [v["cella"], v["cellb"], v["cellc"]] == pytest.approx([la, lb, lc], rel=1e-14)


def test_box_bounds_are_each_directions_own():
    """Mutants zhi = zlo + ly and ylo = xlo (the other suites read lx ly lz xy xz yz and xlo xhi
    only).  LAMMPS: (xlo, ylo, zlo) is the box's lower corner and xhi = xlo + lx, yhi = ylo + ly,
    zhi = zlo + lz; numdp's corner is 0 unless a BoxOrigin puts it where LAMMPS holds it (numdp
    lmp: a data file's xlo ylo zlo, the box centre the fixed point).  Lengths 9, 10, 11 and a
    corner (-1, 2, 5) that tell the three directions apart; all numbers are sums of exact
    binary fractions: exact."""
    from numdp.io.trajectory import BoxOrigin

    cols = ["xlo", "xhi", "ylo", "yhi", "zlo", "zhi", "lx", "ly", "lz"]
    snap = snapshot(_state())
    assert thermo.values(snap, cols) == [0.0, 9.0, 0.0, 10.0, 0.0, 11.0, 9.0, 10.0, 11.0]
    origin = BoxOrigin.of_box((-1.0, 2.0, 5.0), (9.0, 10.0, 11.0))
    assert thermo.values(snap, cols, origin) == [-1.0, 8.0, 2.0, 12.0, 5.0, 16.0, 9.0, 10.0, 11.0]


# --------------------------------------------------------------------------------------------------
# numdp.md.ramp: the schedule reaches its stop value exactly
# --------------------------------------------------------------------------------------------------


def test_a_ramp_holds_exactly_its_stop_value_from_its_last_step_on():
    """Mutant `step > self.end` for `step >= self.end` in Ramp.value (at step end the formula
    start + (end/end) (stop - start), which in float64 need not be stop: 300 + (0.1 - 300) is
    0.10000000000002274).  The module's contract: the target goes from start at step 0 to stop
    at step end and stays there; a run's last thermo line and its last step's thermostat then
    use the target the input names, not one a rounding away (the other suites' ramps, 300 ->
    1000 and 1e4 -> 1, happen to round to the stop value)."""
    from numdp.md.ramp import Ramp

    down = Ramp.of((300.0, 0.1), 7)
    assert 300.0 + (0.1 - 300.0) != 0.1   # the case the formula alone gets wrong
    assert down.value(7) == 0.1 and down.in_step(6) == 0.1 and down.value(8) == 0.1
    assert down.value(0) == 300.0 and down.in_step(0) == down.value(1)


# --------------------------------------------------------------------------------------------------
# numdp.io.model_devi_file: LAMMPS' and DP-GEN's text, digit for digit
# --------------------------------------------------------------------------------------------------


def test_model_devi_rows_have_lammps_six_digit_format():
    """Mutant " %18.8e" for " %18.6e" in row_line (the other suites check a row's length, which
    8 digits keep, and its values to 6 digits).  LAMMPS' pair deepmd writes each row as
    `setw(12) << step` then `" " << setw(18) << value` in scientific notation with the stream's
    default precision 6, dp model-devi with numpy.savetxt's "%12d" and "%18.6e" (the module
    docstring): the row is that text exactly, with the energy deviation and the per-atom force
    deviations after the six columns."""
    from numdp.io.model_devi_file import header_line, row_line
    from numdp.model.deviation import FrameDeviation

    vals = [1.2345678912e-2, 3.4e-5, 7.654321e-3, 0.123456789, 1.0e-6, 4.5678901234e-2]
    d = FrameDeviation(*vals, 2.5e-4, np.array([0.111111111, 0.2]))
    assert row_line(40, d, energy=False, atomic=False) == "%12d" % 40 + "".join(" %18.6e" % v for v in vals)
    assert row_line(40, d, energy=True, atomic=True) == \
        "%12d" % 40 + "".join(" %18.6e" % v for v in [*vals, 2.5e-4, 0.111111111, 0.2])
    assert header_line(True, False).split() == ["#", "step", "max_devi_v", "min_devi_v", "avg_devi_v",
                                                "max_devi_f", "min_devi_f", "avg_devi_f", "devi_e"]


# --------------------------------------------------------------------------------------------------
# numdp.md.mtk and numdp.md.thermostats: every term of the conserved energy, at the state's own step
# --------------------------------------------------------------------------------------------------


def test_mtk_reservoir_energy_has_every_term_at_the_states_step():
    """Mutants of MTKBarostat.reservoir_energy: P0 V dropped, K_b without its 1/2, the chain's
    ξ'_1 term with kT for n_b kT, the chain's kinetic term dropped, P0 or kT of the step being
    made (in_step) for the state's step (value).  The module docstring's H' barostat part, from
    hand-set variables: K_b = W Σ μ_ab² / 2 with W = (N + 1) kT(0) τ², P0 V, Σ Q' vξ'² / 2 with
    Q' = kT τ², n_b kT ξ'_1 + kT Σ_{j>1} ξ'_j, with P0 and T ramps read at the state's step 7
    (a ramp over 10 steps: step 8's values differ by a tenth of the span)."""
    from numdp.md.mtk import MTKBarostat
    from numdp.md.ramp import Ramp

    st = _state()
    tau = 0.5
    b = MTKBarostat(Ramp.of((1000.0, 2000.0), 10), tau, "anisotropic", Ramp.of((300.0, 400.0), 10), chain=3)
    st.barostat.update(nu=np.diag([0.3, -0.1, 0.2]), xi=np.array([0.7, -0.4, 0.25]), vxi=np.array([1.5, -2.0, 0.5]))
    kt0, kt = KB * 300.0, KB * 370.0                     # T(0), T(7)
    p0 = 1700.0 / EV_PER_A3_TO_BAR                       # P0(7), eV/Å³
    w = 5 * kt0 * tau ** 2                               # N + 1 = 5
    expected = (0.5 * w * (0.09 + 0.01 + 0.04) + p0 * 990.0
                + 0.5 * kt * tau ** 2 * (1.5 ** 2 + 2.0 ** 2 + 0.5 ** 2) + 3 * kt * 0.7 + kt * (-0.4 + 0.25))
    # a dozen float64 operations on numbers of order 1 eV: 1e-12 relative is far above the round-off
    assert b.reservoir_energy(st) == pytest.approx(expected, rel=1e-12)


def test_nose_hoover_reservoir_energy_has_every_term():
    """Mutants of NoseHooverChain.reservoir_energy: the chain's kinetic term dropped, N_f kT ξ_1
    with kT for N_f kT.  Its conserved part: Σ Q_j vξ_j² / 2 + N_f kT ξ_1 + kT Σ_{j>1} ξ_j with
    Q_1 = N_f kT τ², Q_j = kT τ² (numdp.md.thermostats), N_f = 3N - 3 = 9, T at the state's step."""
    from numdp.md.thermostats import NoseHooverChain

    st = _state()
    tau = 0.2
    th = NoseHooverChain(300.0, tau, chain=3)
    st.thermostat.update(xi=np.array([0.7, -0.4, 0.25]), vxi=np.array([1.5, -2.0, 0.5]))
    kt = KB * 300.0
    expected = (0.5 * kt * tau ** 2 * (9 * 1.5 ** 2 + 2.0 ** 2 + 0.5 ** 2) + 9 * kt * 0.7 + kt * (-0.4 + 0.25))
    assert th.reservoir_energy(st) == pytest.approx(expected, rel=1e-12)   # as above


# --------------------------------------------------------------------------------------------------
# numdp.io.trajectory and numdp.io.h5md: units, frames and boxes as the readers define them
# --------------------------------------------------------------------------------------------------

_TILTED = np.array([[6.0, 0.0, 0.0], [-2.0, 7.0, 0.0], [-3.0, -1.5, 8.0]])   # xy, xz, yz < 0, xy + xz < both


def _frame_arrays():
    pos = np.array([[1.0, 2.0, 3.0], [-5.0, 0.5, 7.5], [4.0, 6.5, 1.0]])   # atom 1: fractional x < 0
    vel = np.array([[1.0, -2.0, 0.5], [0.25, 3.0, -1.0], [-0.5, 0.0, 2.0]])
    frc = np.array([[0.1, 0.2, -0.3], [-0.4, 0.5, 0.6], [0.3, -0.7, -0.3]])
    return pos, vel, frc


def test_extxyz_reads_back_in_ase_with_its_cell_velocities_and_stress(tmp_path):
    """Mutants of ExtxyzWriter: the Lattice written transposed (columns for rows), the momenta
    as v m / ASE_TIME_IN_PS, the stress with the virial's sign, energy= the total energy.  ASE
    (its extxyz reader, the format's reference) reads a frame of a tilted cell back as the
    cell's rows, velocities in Å/ps (ASE's get_velocities() × ase.units.fs × 1000), the
    potential energy, and the stress -W / V (its calculator's sign, without the kinetic part)."""
    import ase.io
    import ase.units
    from numdp.io.trajectory import ExtxyzWriter

    pos, vel, frc = _frame_arrays()
    virial = np.array([[0.4, 0.1, -0.2], [0.1, -0.3, 0.05], [-0.2, 0.05, 0.9]])
    obs = {"potential_energy": -3.25, "kinetic_energy": 0.5, "total_energy": -2.75, "virial": virial}
    w = ExtxyzWriter(tmp_path / "t.extxyz", np.array([0, 1, 1]), np.array([16.0, 1.0, 1.0]), ["O", "H"],
                     ("position", "velocity", "force"), None)
    w.append(3, 0.0015, pos, vel, frc, _TILTED, obs)
    w.close()
    atoms = ase.io.read(tmp_path / "t.extxyz")
    assert np.array_equal(atoms.cell.array, _TILTED)
    # ASE's velocity unit is Å / (ase.units.fs fs); numdp's ASE time unit comes from LAMMPS' 8-digit
    # mvv2e = 1.0364269e-4 (numdp.units), ASE's from CODATA 2014: they agree to 3e-8 relative
    assert atoms.get_velocities() * ase.units.fs * 1000.0 == pytest.approx(vel, rel=1e-7)
    assert atoms.get_potential_energy() == -3.25
    vol = abs(np.linalg.det(_TILTED))
    assert atoms.get_stress(voigt=False) == pytest.approx(-virial / vol, rel=1e-12)


def test_lammps_dump_box_bounds_images_and_velocities_are_lammps(tmp_path):
    """Mutants of LammpsDumpWriter: xlo_bound without the xy + xz term, ylo_bound without yz,
    image flags truncated toward zero (int) rather than floored, velocities not rotated with the
    cell (or in Å/fs).  LAMMPS' dump documentation (Howto triclinic): xlo_bound = xlo + MIN(0,
    xy, xz, xy + xz), xhi_bound = xhi + MAX(0, xy, xz, xy + xz), ylo_bound = ylo + MIN(0, yz),
    yhi_bound = yhi + MAX(0, yz); ix = floor of the fractional coordinate (xu = x + ix a + ...);
    velocities in Å/ps (units metal) in LAMMPS' frame.  The tilted cell has xy = -2, xz = -3,
    yz = -1.5, so xy + xz is the minimum; atom 2 lies at a fractional x < 0 (image -1); the same
    cell rotated gives the same dump (velocities rotated back into LAMMPS' frame)."""
    from numdp.io.trajectory import LammpsDumpWriter

    pos, vel, frc = _frame_arrays()
    rng = np.random.default_rng(3)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    q = q if np.linalg.det(q) > 0 else -q
    texts = []
    for name, rot in (("a", np.eye(3)), ("b", q)):
        w = LammpsDumpWriter(tmp_path / f"{name}.lammpstrj", np.array([0, 1, 1]), np.array([16.0, 1.0, 1.0]),
                             ["O", "H"], ("position", "velocity", "force"), None,
                             columns=("id", "type", "x", "y", "z", "ix", "iy", "iz", "vx", "vy", "vz"))
        w.append(3, 0.0015, pos @ rot, vel @ rot, frc @ rot, _TILTED @ rot, {})
        w.close()
        texts.append((tmp_path / f"{name}.lammpstrj").read_text().splitlines())
    lines = texts[0]
    k = lines.index("ITEM: BOX BOUNDS xy xz yz pp pp pp")
    bounds = np.array([[float(x) for x in lines[k + d].split()] for d in (1, 2, 3)])
    assert bounds.tolist() == [[-5.0, 6.0, -2.0], [-1.5, 7.0, -3.0], [0.0, 8.0, -1.5]]
    rows = np.array([[float(x) for x in line.split()] for line in lines[k + 5:]])
    frac = np.linalg.solve(_TILTED.T, pos.T).T
    assert rows[:, 5:8].tolist() == np.floor(frac).tolist()
    assert rows[1, 5] == -1.0
    # wrapped x y z: the fractional coordinates minus the images; a solve and a product: round-off
    assert rows[:, 2:5] == pytest.approx((frac - np.floor(frac)) @ _TILTED, abs=1e-12)
    assert rows[:, 8:11].tolist() == vel.tolist()   # the cell is in LAMMPS' form: written as it is
    rotated = np.array([[float(x) for x in line.split()] for line in texts[1][k + 5:]])
    # the rotated input: LAMMPS' frame again, up to the round-off of two rotations of O(1) numbers
    assert rotated[:, 8:11] == pytest.approx(vel, abs=1e-13)
    assert rotated[:, 5:8].tolist() == rows[:, 5:8].tolist()


def test_an_open_systems_flat_direction_still_gets_a_margin(tmp_path):
    """Mutant `SHRINK_WRAP_MARGIN * (hi - lo)` for `* np.maximum(hi - lo, 1.0)` in
    shrink_wrap_bounds (a planar molecule, all atoms at z = 0, gets zlo = zhi = 0: a box of zero
    thickness, in which a reader computing fractional coordinates divides by zero).  The
    documented margin: 1e-4 of the extent, at least 1e-4 Å (LAMMPS' shrink-wrapping keeps a
    box of finite size).  Bounds of atoms spanning x 0..20, y 0..0.5, z 0..0: exact binary
    arithmetic aside from the 1e-4 products."""
    from numdp.io.trajectory import shrink_wrap_bounds

    lo, hi = shrink_wrap_bounds([0.0, 0.0, 0.0], [20.0, 0.5, 0.0])
    assert lo == pytest.approx([-2e-3, -1e-4, -1e-4], rel=1e-15) and hi == pytest.approx([20.002, 0.5001, 1e-4], rel=1e-15)


def test_h5md_time_is_in_picoseconds_and_observables_in_their_units(tmp_path):
    """Mutants of H5MDWriter: the time dataset holding fs (time × 1000) or labelled "fs", the
    pressure labelled "atm".  H5MD: each time-dependent element's `time` dataset holds the time
    of each frame in its `unit` attribute; numdp writes ps (a frame at 7 steps of 0.5 fs is at
    0.0035 ps), energies in eV, the pressure in bar; an observable the frame does not give is nan."""
    import h5py
    from numdp.io.h5md import H5MDWriter

    pos, vel, frc = _frame_arrays()
    w = H5MDWriter(tmp_path / "t.h5md", np.array([0, 1, 1]), np.array([16.0, 1.0, 1.0]), ["O", "H"])
    w.append(7, 0.0035, pos, vel, frc, _TILTED, {"potential_energy": -3.25, "pressure": 120.5})
    w.close()
    with h5py.File(tmp_path / "t.h5md", "r") as h5:
        for element in ("particles/trajectory/position", "observables/pressure", "particles/trajectory/box/edges"):
            assert h5[element + "/time"][()].tolist() == [0.0035]
            assert h5[element + "/time"].attrs["unit"] == "ps"
            assert h5[element + "/step"][()].tolist() == [7]
        assert h5["observables/pressure/value"].attrs["unit"] == "bar"
        assert h5["observables/pressure/value"][()].tolist() == [120.5]
        assert h5["observables/potential_energy/value"].attrs["unit"] == "eV"
        assert np.isnan(h5["observables/temperature/value"][0])

