"""Dense edge features and hour batches: values against the per-hour reference, file = memory, no look-ahead."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gnn_market.classes import IGNORE_INDEX
from gnn_market.correlations import correlation_matrix, lead_lag_matrix
from gnn_market.errors import DataError
from gnn_market.graph_builder import GraphConfig, build_snapshot
from gnn_market.hour_batches import DenseEdges, HourBatcher, hour_batches, iter_dense_edges

T, N, F = 260, 7, 3


@pytest.fixture(scope="module")
def returns() -> np.ndarray:
    rng = np.random.default_rng(0)
    r = rng.normal(0, 0.01, (T, N)) + rng.normal(0, 0.01, (T, 1))
    r[:80, 2] = np.nan          # listed late
    r[150:158, 4] = np.nan      # a gap
    r[200:, 6] = np.nan         # delisted
    return r


@pytest.fixture(scope="module")
def arrays(returns):
    rng = np.random.default_rng(1)
    valid = np.isfinite(returns)
    x = np.where(valid[..., None], rng.normal(size=(T, N, F)), 0.0).astype(np.float32)
    y = np.where(valid, rng.integers(0, 3, (T, N)), IGNORE_INDEX)
    return x, valid, y


def test_dense_edges_equal_the_per_hour_matrices_target_major(returns) -> None:
    config = GraphConfig(lead_lag=True)
    for t0, chunk in iter_dense_edges(returns, 120, 170, config, chunk_hours=16):
        for k in range(len(chunk)):
            t = t0 + k
            corr = correlation_matrix(returns, t)
            lag = lead_lag_matrix(returns, t)
            off = ~np.eye(N, dtype=bool)
            np.testing.assert_allclose(chunk[k, ..., 0][off], corr.T[off], atol=1e-5)
            np.testing.assert_allclose(chunk[k, ..., 1][off], lag.T[off], atol=1e-5)  # [i, j] = lag[j, i]
            np.testing.assert_array_equal(np.diagonal(chunk[k], axis1=0, axis2=1), 1.0)


def test_file_and_memory_hold_the_same_features(returns, tmp_path) -> None:
    config = GraphConfig(lead_lag=True)
    hours = np.array([170, 101, 169, 130])
    with DenseEdges(returns, 100, 171, config) as memory, \
            DenseEdges(returns, 100, 171, config, memory_mb=0, directory=tmp_path) as on_disk:
        assert memory.in_memory and not on_disk.in_memory
        assert not list(tmp_path.iterdir())  # an anonymous file: nothing left to clean up, even after a crash
        torch.testing.assert_close(on_disk.read(hours), memory.read(hours), rtol=0, atol=0)
        with pytest.raises(DataError, match="outside"):
            memory.read(np.array([99]))
    with pytest.raises(DataError, match="closed"):
        on_disk.read(hours)


def test_edges_at_t_ignore_every_later_return(returns) -> None:
    config = GraphConfig(lead_lag=True)
    later = returns.copy()
    later[151:] = np.random.default_rng(9).normal(0, 0.05, later[151:].shape)
    a = DenseEdges(returns, 100, 200, config).read(np.arange(100, 151))
    b = DenseEdges(later, 100, 200, config).read(np.arange(100, 151))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(DenseEdges(returns, 151, 152, config).read([151]),
                           DenseEdges(later, 151, 152, config).read([151]))


def test_dense_batch_holds_the_snapshot_of_each_hour(returns, arrays) -> None:
    """The dense batch and the PyG snapshot of the same hour describe the same graph."""
    x, valid, y = arrays
    config = GraphConfig(lead_lag=True)
    edges = DenseEdges(returns, 100, 200, config)
    hours = np.array([160, 120, 151])
    dense = HourBatcher(x, valid, y, config, edges).batch(hours)
    sparse = HourBatcher(x, valid, y, config, edges, sparse=True).batch(hours)
    assert dense.dense and dense.graphs is None and not sparse.dense
    torch.testing.assert_close(dense.x.reshape(-1, F), sparse.graphs.x)
    torch.testing.assert_close(dense.y.reshape(-1), sparse.graphs.y)
    for k, t in enumerate(hours):  # every edge j -> i of the snapshot carries dense[k, i, j]
        snap = build_snapshot(x[t], correlation_matrix(returns, t), y[t], valid[t], 0, [], config, hour=int(t),
                              lag=lead_lag_matrix(returns, t))
        src, dst = snap.edge_index
        np.testing.assert_allclose(dense.edge_attr[k, dst, src].numpy(), snap.edge_attr.numpy(), atol=1e-5)
        assert snap.edge_index.size(1) == valid[t].sum() * (valid[t].sum() - 1)  # fully connected among present


def test_no_edge_batches_need_no_edge_features(arrays) -> None:
    x, valid, y = arrays
    batch = HourBatcher(x, valid, y, GraphConfig(edges="none")).batch(np.array([5, 6]))
    assert batch.dense and batch.edge_attr is None
    assert (batch.y[~batch.node_mask] == IGNORE_INDEX).all()
    with pytest.raises(DataError, match="edge features"):
        HourBatcher(x, valid, y, GraphConfig()).batch(np.array([5]))


def test_hour_batches_cover_every_hour_once_in_seeded_order() -> None:
    hours = np.arange(10, 47)
    a = hour_batches(hours, 8, torch.Generator().manual_seed(3))
    b = hour_batches(hours, 8, torch.Generator().manual_seed(3))
    assert [len(c) for c in a] == [8, 8, 8, 8, 5]
    np.testing.assert_array_equal(np.sort(np.concatenate(a)), hours)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    np.testing.assert_array_equal(np.concatenate(hour_batches(hours, 8)), hours)  # no generator: in order


def test_top_k_edge_lists_are_kept_and_served_unchanged(returns, arrays) -> None:
    x, valid, y = arrays
    config = GraphConfig(top_k=2, lead_lag=True)
    edges = DenseEdges(returns, 100, 200, config)
    batcher = HourBatcher(x, valid, y, config, edges)
    hours = np.array([150, 120])
    first = batcher.batch(hours).graphs
    assert sorted(batcher._edge_lists) == [120, 150]
    edges.close()  # a kept hour needs no edge features any more
    again = batcher.batch(hours).graphs
    for name in ("x", "edge_index", "edge_attr", "y", "node_mask", "hour", "batch"):
        torch.testing.assert_close(getattr(again, name), getattr(first, name), msg=name)
    assert first.edge_index.size(1) <= len(hours) * 2 * N * 2  # at most 2 N k edges per hour
