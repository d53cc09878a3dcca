"""Counter-based random numbers (Philox4x32-10): known answers, statistics, key independence."""
from __future__ import annotations

import numpy as np

from numdp.kernels.cpu.rng import STREAM_THERMOSTAT_END, STREAM_THERMOSTAT_START, normals, philox_block, sum_of_squared_normals


def test_philox_known_answers_from_random123():
    assert philox_block((0, 0, 0, 0), (0, 0)) == (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)
    assert philox_block((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2) == (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)
    assert philox_block((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0)) == (
        0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)


def test_normals_are_standard_normal_and_keyed_by_atom_id():
    ids = np.arange(100_000)
    g = normals(7, 3, STREAM_THERMOSTAT_START, ids, 3)
    assert abs(g.mean()) < 4 / np.sqrt(g.size)
    assert abs(g.var() - 1) < 4 * np.sqrt(2 / g.size)
    assert abs((g ** 4).mean() - 3) < 0.05
    assert abs(np.corrcoef(g[:, 0], g[:, 2])[0, 1]) < 4 / np.sqrt(len(ids))
    # a draw depends only on its key: any order or subset of atoms gets the same numbers
    perm = np.random.default_rng(0).permutation(ids)[:1000]
    np.testing.assert_array_equal(normals(7, 3, STREAM_THERMOSTAT_START, perm, 3), g[perm])
    # other step, stream or seed: independent numbers
    for other in (normals(7, 4, STREAM_THERMOSTAT_START, ids[:5000], 3),
                  normals(7, 3, STREAM_THERMOSTAT_END, ids[:5000], 3),
                  normals(8, 3, STREAM_THERMOSTAT_START, ids[:5000], 3)):
        assert abs(np.corrcoef(other.ravel(), g[:5000].ravel())[0, 1]) < 4 / np.sqrt(other.size)


def test_chi_square_sum():
    n = 20001
    s = np.array([sum_of_squared_normals(1, step, 2, n) for step in range(200)])
    assert abs(s.mean() / n - 1) < 4 * np.sqrt(2 / n / 200)
    assert abs(s.var() / (2 * n) - 1) < 0.35
