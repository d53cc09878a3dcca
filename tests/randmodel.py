"""Random se_e2_a models for tests: every parameter group carries non-trivial numbers."""
import numpy as np

from numdp.model.params import Descriptor, Fitting, Layer, ModelParams, Net


def _net(rng, widths, use_idt, last_linear=False, activation="tanh"):
    layers = []
    for k, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        last = last_linear and k == len(widths) - 2
        residual = not last and (n_out == n_in or n_out == 2 * n_in)
        layers.append(Layer(
            w=rng.normal(0.0, 1.0 / np.sqrt(n_in + n_out), (n_in, n_out)),
            b=rng.normal(0.0, 1.0, n_out),
            idt=rng.normal(0.5, 0.2, n_out) if (use_idt and residual) else None,
            activation="none" if last else activation,
            resnet=not last))
    return Net(layers)


def random_params(ntypes=2, sel=None, neuron=(4, 8, 16), axis_neuron=3, type_one_side=False,
                  resnet_dt=True, fitting=(12, 12), fit_resnet_dt=True, rcut=4.0, rcut_smth=1.0,
                  seed=0, exclude_types=(), activation="tanh", fit_activation=None, numb_fparam=0,
                  numb_aparam=0):
    """A random model; `activation` is the embedding nets' (numdp.model.activation.NAMES),
    `fit_activation` the fitting nets' hidden layers' (default: `activation`); numb_fparam > 0
    (numb_aparam > 0) gives it frame (atomic) parameters with random statistics."""
    rng = np.random.default_rng(seed)
    sel = list(sel or [12] * ntypes)
    nnei = sum(sel)
    davg = np.zeros((ntypes, nnei, 4))
    dstd = np.ones((ntypes, nnei, 4))
    for t in range(ntypes):
        davg[t, :, 0] = rng.uniform(0.05, 0.3)
        dstd[t, :, 0] = rng.uniform(0.1, 0.4)
        dstd[t, :, 1:] = rng.uniform(0.1, 0.3)
    nnet = ntypes if type_one_side else ntypes * ntypes
    embeds = [_net(rng, [1, *neuron], resnet_dt, activation=activation) for _ in range(nnet)]
    dim = neuron[-1] * axis_neuron
    fnets = [_net(rng, [dim + numb_fparam + numb_aparam, *fitting, 1], fit_resnet_dt, last_linear=True,
                  activation=fit_activation or activation) for _ in range(ntypes)]
    bias_atom_e = rng.normal(0.0, 1.0, ntypes)   # (drawn in this order since the first seeds)
    stats = {}
    for kind, n in (("fparam", numb_fparam), ("aparam", numb_aparam)):
        if n:
            stats.update({f"{kind}_avg": rng.normal(0.0, 1.0, n), f"{kind}_inv_std": rng.uniform(0.5, 2.0, n)})
    params = ModelParams(
        type_map=["A", "B", "C", "D"][:ntypes],
        descriptor=Descriptor(rcut=rcut, rcut_smth=rcut_smth, sel=sel, neuron=list(neuron),
                              axis_neuron=axis_neuron, type_one_side=type_one_side,
                              resnet_dt=resnet_dt, davg=davg, dstd=dstd, embeddings=embeds,
                              exclude_types=[list(pair) for pair in exclude_types]),
        fitting=Fitting(neuron=list(fitting), resnet_dt=fit_resnet_dt, nets=fnets,
                        bias_atom_e=bias_atom_e, **stats),
        out_bias=rng.normal(-3.0, 1.0, ntypes), out_std=np.ones(ntypes))
    params.validate()
    return params


def random_config(natoms, ntypes, box_len=None, tilt=0.0, min_dist=0.9, seed=0):
    """Random positions (natoms, 3) with a minimum separation, types and a (tilted) box."""
    rng = np.random.default_rng(seed)
    if box_len is None:
        box = None
        extent = (natoms / 0.08) ** (1 / 3)
    else:
        box = np.diag(np.full(3, float(box_len)))
        box[1, 0] = tilt * box_len
        box[2, 0] = -0.5 * tilt * box_len
        box[2, 1] = 0.7 * tilt * box_len
        extent = box_len
    pos = []
    while len(pos) < natoms:
        x = rng.uniform(0, extent, 3)
        if box is not None:
            x = (x / extent) @ box
        ok = True
        for y in pos:
            d = x - y
            if box is not None:
                f = d @ np.linalg.inv(box)
                f -= np.round(f)
                d = f @ box
            if np.linalg.norm(d) < min_dist:
                ok = False
                break
        if ok:
            pos.append(x)
    types = (np.arange(natoms) % ntypes).astype(np.int32)
    return np.array(pos), types, box
