"""The per-type energy bias fitted to frame energies (reference §5.3), one home for the trainer's
statistics, `change_bias_after_training` and `numdp change-bias`."""
from __future__ import annotations

import numpy as np


def fit_type_shift(counts: np.ndarray, energies: np.ndarray) -> np.ndarray:
    """(ntypes,) eV per atom b minimising Σ_f (Σ_t counts[f, t] b_t − energies[f])², the
    minimum-norm solution where the compositions do not fix b (DeePMD-kit's least squares,
    rcond None).  counts: (nframes, ntypes) atoms of each type per frame; energies: (nframes,) eV."""
    counts = np.asarray(counts, dtype=np.float64)
    b, *_ = np.linalg.lstsq(counts, np.asarray(energies, dtype=np.float64), rcond=None)
    return b
