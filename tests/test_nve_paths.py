"""Energy conservation (NVE) of the model paths beyond uncompressed double precision: compressed
(quintic tables), mix32 and mix32 compressed, on the shipped water model (64 H2O, masses O 16,
H 2, 330 K), through the integrator and force provider `numdp run` uses.

Velocity Verlet conserves a shadow Hamiltonian H~ = H + h^2 H2 + O(h^4) exactly (up to round-off)
when the forces are the exact gradient of the energy (Hairer, Lubich, Wanner, Geometric Numerical
Integration, IX.3), so along a run E(t) - E(0) = h^2 g(t) + O(h^4), with g the change of -H2 along
the trajectory.  Two runs from one start, at h and h/2 over the same time, compared at common
times, therefore show

1. E std(h) / E std(h/2) = 4 (the test's `ratio`), and
2. d_h(t) - 4 d_h/2(t) = O(h^4), where d(t) = E(t) - E(0) (`residual`, Richardson's
   extrapolation: relative to |d_h|, a few per cent).

Forces that are not the energy's gradient (a table's slope off by 1e-3, forces from another table
or precision than the energy) add an error that does not scale with h: the residual grows several
times and the ratio leaves 4 (figures at the end).

The bands, for a harmonic mode of frequency w with c = (w h / 2)^2: velocity Verlet conserves
K / (1 - c) + U, so E fluctuates by c / (1 - c) times the mode's kinetic-energy swing:
- ratio = 4 (1 - c/4) / (1 - c), between 4 and 4.06 at h = 0.5 fs for every mode up to the O-D
  stretch (about 2 500 cm^-1 with these masses; bound 3 000 cm^-1: w = 0.565 rad/fs, c = 0.020);
- the residual's harmonic part is 3c/4 = 0.015 relative;
- the two runs' oscillators differ in frequency (Verlet's is (2/h) arcsin(w h / 2) = w (1 + c/6 +
  ...)), by w c/8 between h and h/2; the kinetic energy oscillates at 2w, so at time t the two
  series are out of phase by phi(t) = w t c / 4: 0.084 rad at the window's end T = 30 fs, rms
  phi(T)/sqrt(3) = 0.049 over the window.  That mismatch enters the residual one for one and the
  std ratio at most as much as phi(T).
So: ratio in [4 (1 - phi(T)), 4.06 (1 + phi(T))] = [3.66, 4.40], and residual <= 2 x (0.015 +
0.049) = 0.13, the factor 2 for anharmonic mode coupling (the two trajectories separate, which
the harmonic picture leaves out).

Round-off floor of mix32 (float32 nets, unit round-off u = 2^-24 = 6.0e-8): each atomic energy
is off by ~k u |e_net| (net outputs |e_net| <~ 2 eV beyond the float64 bias, k ~ 10 roundings
in a row), so E carries noise sigma_E ~ k u |e_net| sqrt(N) = 1.7e-5 eV; forces are off by
dF ~ k u F_rms = 5e-7 eV/A (F_rms 0.9 eV/A), not a gradient, so their work random-walks by
sqrt(n) (h/2) sqrt(3N) v_rms dF = 3e-7 eV over the n = 120 short steps (v_rms 10 A/ps).  Measured
on this box: sigma_E 2e-6 eV, dF 6.4e-7 eV/A.  The h^2 term at h/2 is E std ~ 8e-4 eV: the estimated
floor is 2-3 % of it (measured: 0.3 %), and the mix32 cases check that it stays below 5 %, from
their own force and velocity scales.  mix16 (u = 2^-11) has a floor 2e3 times higher (measured), of the size of the h^2 term itself at 0.25 fs (sigma_E
4e-3 eV uncompressed, 7e-4 compressed): no h^2 law to test at these steps; tools/nve_drift.py
measures its drift instead.

How a broken path fails (these cases, patched in for one run; docs/compression.md#energy-conservation):
the compressed force kernel reading tables whose slope coefficients are 1.001x the energy's:
double-quintic and mix32-quintic ratio 4.24, residual 0.36; the embedding nets' slope dG/dx
1.001x (uncompressed mix32): ratio 4.24, residual 0.35; mix32 energies with mix16 forces: ratio
3.55, residual 0.65.  The correct paths, start velocities of seeds 1-4: ratio 3.95-4.04, residual
0.047-0.067.
"""
from __future__ import annotations

import functools
import math
import textwrap
from pathlib import Path

import numpy as np
import pytest

from numdp.config import load_run_settings
from numdp.io.model_file import read_model
from numdp.md.forces import ForceProvider
from numdp.md.integrator import VelocityVerlet
from numdp.md.start import state_from_structure
from numdp.model.compress import compress
from numdp.model.dp_model import DPModel
from numdp.system import kinetic_energy

ROOT = Path(__file__).resolve().parents[1]
WATER = ROOT / "inputs" / "water"

H = 0.0005          # ps: the longer of the two steps
STEPS = 60          # at H: T = 30 fs; 2 * STEPS at H / 2
OMEGA_MAX = 2 * math.pi * 2.998e-5 * 3000.0   # rad/fs: 3 000 cm^-1, above the O-D stretch
C = (OMEGA_MAX * H * 1e3 / 2) ** 2             # 0.020
PHI = OMEGA_MAX * STEPS * H * 1e3 * C / 4      # 0.084 rad at the window's end
RATIO_BAND = (4 * (1 - PHI), 4 * (1 - C / 4) / (1 - C) * (1 + PHI))
RESIDUAL_MAX = 2 * (3 * C / 4 + PHI / math.sqrt(3))
U32 = 2.0 ** -24


@functools.lru_cache(maxsize=None)
def params(order):
    """The shipped water model, tabulated at dx 0.01 with `order` (None: uncompressed)."""
    p = read_model(WATER / "model.h5")
    return p if order is None else compress(p, dx=0.01, order=order)[0]


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nve_paths")
    (folder / "md.toml").write_text(textwrap.dedent(f"""
        [model]
        file = "{WATER / 'model.h5'}"
        [system]
        file = "{WATER / 'start.xyz'}"
        velocities = {{ temperature = 330.0, seed = 1 }}
        masses = {{ O = 16.0, H = 2.0 }}
        [md]
        timestep = {H}
        steps = {STEPS}
    """))
    return load_run_settings(folder / "md.toml")


def nve(model, settings, h, steps):
    """Total energy (steps + 1,) eV of an NVE run of `steps` steps of h ps, and the final state."""
    state = state_from_structure(settings, list(model.type_map))
    forces = ForceProvider(model, 2.0)
    forces(state)
    verlet = VelocityVerlet(h)
    e = np.empty(steps + 1)
    e[0] = kinetic_energy(state.velocities, state.masses) + state.potential_energy
    for i in range(steps):
        verlet.step(state, forces)
        e[i + 1] = kinetic_energy(state.velocities, state.masses) + state.potential_energy
    return e, state


def dt2_figures(e_h, e_half):
    """(ratio, residual) of two runs over one time at h and h/2 (module docstring)."""
    e_half = e_half[::2]   # the times of the run at h
    d_h, d_half = e_h - e_h[0], e_half - e_half[0]
    return e_h.std() / e_half.std(), np.linalg.norm(d_h - 4 * d_half) / np.linalg.norm(d_h)


def round_off_floor(state, steps) -> float:
    """Estimated mix32 round-off floor of E, eV, over `steps` steps of H/2 from `state`'s force and
    velocity scales (module docstring: k = 10 roundings in a row, net outputs of 2 eV)."""
    n = state.natoms
    k, e_net = 10.0, 2.0
    f_rms = math.sqrt(np.mean(state.forces ** 2))
    v_rms = math.sqrt(np.mean(state.velocities ** 2))
    sigma_e = k * U32 * e_net * math.sqrt(n)
    walk = math.sqrt(steps) * (H / 2) * math.sqrt(3 * n) * v_rms * k * U32 * f_rms
    return math.hypot(sigma_e, walk)


@pytest.mark.parametrize("precision, order", [("double", 5), ("mix32", None), ("mix32", 5)],
                         ids=["double-quintic", "mix32", "mix32-quintic"])
def test_energy_error_shrinks_as_dt_squared(settings, precision, order):
    model = DPModel(params(order), nthreads=2, precision=precision)
    e_h, _ = nve(model, settings, H, STEPS)
    e_half, state = nve(model, settings, H / 2, 2 * STEPS)
    if precision != "double":   # the premise: round-off well below the h^2 term at h/2
        assert round_off_floor(state, 2 * STEPS) < 0.05 * e_half.std()
    ratio, residual = dt2_figures(e_h, e_half)
    assert RATIO_BAND[0] < ratio < RATIO_BAND[1], (ratio, residual)
    assert residual < RESIDUAL_MAX, (ratio, residual)


@pytest.mark.parametrize("ensemble, compressed, noted", [("nve", False, True), ("nvt", False, False),
                                                           ("nve", True, False)])
def test_numdp_run_notes_that_mix16_without_tables_heats_nve(tmp_path, ensemble, compressed, noted):
    """docs/compression.md#energy-conservation: uncompressed mix16 heats an NVE run (its half-
    precision embedding slopes are no gradient of the energy); numdp run's start lines say so
    where it matters: no thermostat and no tables."""
    import io

    from numdp.md.setup import run_md

    model = tmp_path / "model.h5"
    if compressed:
        from numdp.cli import main as cli_main
        assert cli_main(["compress", "-i", str(WATER / "model.h5"), "-o", str(model)]) == 0
    else:
        model.write_bytes((WATER / "model.h5").read_bytes())
    (tmp_path / "start.xyz").write_bytes((WATER / "start.xyz").read_bytes())
    thermostat = 'thermostat = { kind = "nose-hoover", temperature = 330.0, tau = 0.1 }' if ensemble == "nvt" else ""
    (tmp_path / "md.toml").write_text(textwrap.dedent(f"""\
        [model]
        file = "model.h5"
        precision = "mix16"
        [system]
        file = "start.xyz"
        masses = {{ O = 16.0, H = 2.0 }}
        [md]
        timestep = 0.0005
        steps = 1
        ensemble = "{ensemble}"
        {thermostat}
        [output]
        trajectory = ""
        checkpoint_every = 0
        progress = "none"
    """))
    screen = io.StringIO()
    run_md(load_run_settings(tmp_path / "md.toml"), screen=screen)
    assert ("mix16 with an uncompressed model does not conserve energy" in screen.getvalue()) is noted
