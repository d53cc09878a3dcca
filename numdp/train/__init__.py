"""Training of se_e2_a energy models with hand-derived gradients (reference §7).

Modules:
    config      TOML input -> validated TrainConfig
    data        training/validation systems, neighbour lists, batch sampling
    stats       neighbour statistics, davg/dstd, energy bias (reference §2.5, §5.3)
    init        random initial networks
    flat        the flat parameter vector and per-layer views
    kernels     Numba kernels of the training passes
    layers      dense-layer passes with caches: forward, tangent, reverse over primal+tangent
    passes      per-frame primal pass (energy, forces, virial) and gradient pass
    loss        loss, residual seeds and RMSE metrics (reference §7.1)
    schedule    learning rate and loss prefactors (reference §7.2)
    optim       Adam (reference §7.3)
    checkpoint  atomic checkpoints for restart
    report      lcurve.out and the progress line
    loop        the training loop
"""
