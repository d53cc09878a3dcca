"""Molecular dynamics and energy minimization: state updates (integrator half-steps, thermostats,
barostat, minimizer iterations), forces with a Verlet skin, safety checks, reporters and the run loop.
Entry point: `numdp.md.setup.run_md`.

Layers (imports point upward only; the Numba kernels are in numdp.kernels.cpu.md and the
Philox random numbers in numdp.kernels.cpu.rng; the device twins in numdp.kernels.cuda.md)::

    integrator.py   velocity Verlet composed of named half-steps
    minimize.py     FIRE 2.0 energy minimization (LAMMPS min_style fire), run by the same loop
    linesearch.py   cg / sd energy minimization (LAMMPS min_style cg, sd), run by the same loop
    thermostats.py  Nose-Hoover chain, Langevin, stochastic velocity rescaling (CSVR)
    barostat.py     stochastic cell rescaling (isotropic, anisotropic, triclinic)
    forces.py       neighbour list with skin, ghost exchange (numdp.parallel) + model evaluation
    safety.py       close contacts, non-finite energies or forces, too large steps
    reporters.py    thermo log, progress bar, H5MD trajectory, checkpoints
    loop.py         the run loop with per-phase timers and the final summary
    device_state.py the per-atom arrays of a run on the GPU, fixed-order device sums
    device_forces.py  the device twin of forces.py (one rank)
    device.py       the step on the GPU: integrator, thermostat operations, safety twins
    start.py        the start state (checkpoint, replicated structure), handed out block by block
    setup.py        builds all of the above from a validated configuration
"""
