"""numdp: Deep Potential (se_e2_a) models and molecular dynamics with Numba kernels.

Public API: `load_model(path)` returns a model with `evaluate(positions, types, box=None)`.
"""

__version__ = "0.1.0"


def load_model(path, nthreads=None, precision="double"):
    """Load a numdp (.h5) or DeePMD-kit (.dp) model; see numdp.model.dp_model.DPModel."""
    from .model.dp_model import load_model as _load

    return _load(path, nthreads=nthreads, precision=precision)
