"""Molecular dynamics: state updates (integrator half-steps, thermostats, barostat), forces with a
Verlet skin, safety checks, reporters and the run loop.  Entry point: `numdp.md.setup.run_md`.

Layers (imports point upward only)::

    rng.py          counter-based Philox4x32-10 random numbers keyed by (seed, step, stream, atom id)
    kernels.py      Numba kernels over plain arrays (kick, drift, cell moves, checks, Langevin)
    integrator.py   velocity Verlet composed of named half-steps
    thermostats.py  Nose-Hoover chain, Langevin, stochastic velocity rescaling (CSVR)
    barostat.py     stochastic cell rescaling (isotropic, anisotropic, triclinic)
    forces.py       neighbour list with skin, ghost exchange (numdp.parallel) + model evaluation
    safety.py       close contacts, non-finite energies or forces, too large steps
    reporters.py    thermo log, progress bar, H5MD trajectory, checkpoints
    loop.py         the run loop with per-phase timers and the final summary
    setup.py        builds all of the above from a validated configuration
"""
