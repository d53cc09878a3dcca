"""numdp: Deep Potential (se_e2_a) models and molecular dynamics with Numba kernels.

Public API: `load_model(path)` returns a model with `evaluate(positions, types, box=None)`;
`DeepPot(path).eval(coords, cells, atom_types)` is DeePMD-kit's inference class (numdp.infer).
"""

import os

# Numba's OpenMP threading layer keeps its workers spinning for a while after every parallel
# region (the neighbour kernels).  That spinning takes a core from the evaluator's worker threads
# that run right after: measured at +3-5 ms on a 20 ms, 192-atom evaluation with 2 threads.
# Passive waiting puts them to sleep at once; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

from .infer import DeepPot  # noqa: E402  (after the environment default above)


def load_model(path, nthreads=None, precision="double", device="cpu", fparam=None, aparam=None):
    """Load a numdp (.h5), DeePMD-kit (.dp), TensorFlow (.pb) or PyTorch (.pt/.pth) model on device
    "cpu" or "cuda"; nthreads: worker threads, an integer >= 1 (None: numdp's default); fparam,
    aparam: frame parameters and atomic parameters (every atom's) of a model that takes them; see
    numdp.model.dp_model.DPModel."""
    from .model.dp_model import load_model as _load
    from .validate import checked_threads

    nthreads = checked_threads(nthreads, "nthreads")   # before the file is read (DPModel checks too)
    return _load(path, nthreads=nthreads, precision=precision, device=device, fparam=fparam, aparam=aparam)
