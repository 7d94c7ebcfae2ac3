"""Lookback windows against a per-pair loop, with the time direction checked by perturbing the future."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gnn_market.windows import NodeWindows, lookback_windows


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


def test_node_windows_gather_equals_lookback_windows_with_the_mask_as_last_channel():
    rng = np.random.default_rng(2)
    T, N, F, L = 30, 4, 3, 6
    x = rng.normal(size=(T, N, F)).astype(np.float32)
    valid = rng.random((T, N)) > 0.25
    hours = np.array([0, 2, 5, 6, 29, 17])
    nw = NodeWindows(x, valid, L)
    got = nw.gather(torch.as_tensor(hours)).numpy()
    want, mask = lookback_windows(np.where(valid[..., None], x, 0), valid, hours, L)
    assert got.shape == (len(hours) * N, L, F + 1) and nw.channels == F + 1
    np.testing.assert_array_equal(got[..., :F], want.reshape(-1, L, F))
    np.testing.assert_array_equal(got[..., F], mask.reshape(-1, L).astype(np.float32))
    with pytest.raises(ValueError, match="indices"):
        nw.gather(torch.tensor([T]))
    with pytest.raises(ValueError, match="indices"):
        nw.gather(torch.tensor([-1]))


def test_node_windows_never_read_the_future():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 3, 2)).astype(np.float32)
    valid = np.ones((40, 3), bool)
    y = x.copy()
    y[21:] += 100.0
    a = NodeWindows(x, valid, 8).gather(torch.arange(21))
    b = NodeWindows(y, valid, 8).gather(torch.arange(21))
    assert torch.equal(a, b)
