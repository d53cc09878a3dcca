"""MPI spatial domain decomposition (LAMMPS' Domain / Comm in NumPy and Numba).

    world.py       World: rank, size, global reductions (*_global), buffer exchange, error agreement
    domain.py      Domain: the grid of subdomains in fractional coordinates, grid choice, owners
    comm.py        GhostComm: borders (ghost shell by staged exchange), forward, reverse
    exchange.py    migrate: atoms to their owners at neighbour rebuilds, sorted by id
    atoms.py       per-atom arrays packed into one float64 buffer
    distribute.py  scatter_state: start-up distribution from an AtomSource; GlobalAtoms: output in global id order, block by block
    threads.py     threads per rank so that ranks x threads fits the cores

Its Numba kernels (packing, accumulating, slab selection) live in numdp.kernels.cpu.comm.

A run on one rank goes through the same code with `World(None)` (no MPI needed): every exchange
is then a local copy and every reduction the identity.
"""
