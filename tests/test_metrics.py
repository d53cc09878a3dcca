"""numdp.model.metrics.ErrorSums: the RMSEs of `numdp test` and lcurve.out, as `dp test` weights them."""
import math

import numpy as np
import pytest

from numdp.model.metrics import ErrorSums


def test_frames_of_different_sizes_are_weighted_like_dp_test():
    rng = np.random.default_rng(1)
    frames = [(n, rng.normal(), rng.normal(size=(n, 3)), rng.normal(size=(3, 3))) for n in (2, 5, 5, 9)]
    one, parts = ErrorSums(), [ErrorSums(), ErrorSums()]
    for k, (n, de, df, dv) in enumerate(frames):
        for acc in (one, parts[k % 2]):
            acc.add_energy(de, n)
            acc.add_forces(df)
            acc.add_virial(dv, n)
    parts[0].merge(parts[1])
    # energy and virial: per-atom errors, every frame one sample (virial: its 9 components);
    # forces: every component of every atom one sample, so larger frames weigh more.
    e = math.sqrt(np.mean([(de / n) ** 2 for n, de, _, _ in frames]))
    f = math.sqrt(np.mean(np.concatenate([df.ravel() for _, _, df, _ in frames]) ** 2))
    v = math.sqrt(np.mean([np.mean((dv / n) ** 2) for n, _, _, dv in frames]))
    for acc in (one, parts[0]):
        # relative 1e-14: a few float64 roundings in sums of < 50 positive terms
        assert (acc.rmse_e, acc.rmse_f, acc.rmse_v) == pytest.approx((e, f, v), rel=1e-14)


def test_a_metric_without_labels_is_nan():
    acc = ErrorSums()
    acc.add_forces(np.ones((2, 3)))
    assert acc.rmse_f == 1.0 and math.isnan(acc.rmse_e) and math.isnan(acc.rmse_v)
