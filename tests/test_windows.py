"""Lookback windows against a per-pair loop, with the time direction checked by perturbing the future."""
from __future__ import annotations

import numpy as np
import pytest

from gnn_market.windows import lookback_windows


def test_windows_equal_a_plain_loop_and_pad_before_the_start():
    rng = np.random.default_rng(0)
    T, N, F, L = 30, 4, 3, 5
    x = rng.normal(size=(T, N, F)).astype(np.float32)
    valid = rng.random((T, N)) > 0.2
    hours = np.array([0, 3, 4, 17, 29])
    w, m = lookback_windows(x, valid, hours, L)
    assert w.shape == (5, N, L, F) and m.shape == (5, N, L) and w.dtype == np.float32
    for h, t in enumerate(hours):
        for n in range(N):
            for k in range(L):
                s = t - (L - 1) + k
                ok = s >= 0 and valid[s, n]
                assert m[h, n, k] == ok
                np.testing.assert_array_equal(w[h, n, k], x[s, n] if ok else 0.0)


def test_the_future_never_enters_a_window():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 3, 2))
    valid = np.ones((40, 3), bool)
    cut = 20
    y = x.copy()
    y[cut + 1:] += 100.0
    hours = np.arange(cut + 1)
    np.testing.assert_array_equal(lookback_windows(x, valid, hours, 8)[0], lookback_windows(y, valid, hours, 8)[0])
    assert not np.array_equal(lookback_windows(x, valid, [cut + 1], 8)[0], lookback_windows(y, valid, [cut + 1], 8)[0])


def test_bad_length():
    with pytest.raises(ValueError, match=">= 1"):
        lookback_windows(np.zeros((3, 1, 1)), np.ones((3, 1), bool), [0], 0)
