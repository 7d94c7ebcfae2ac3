"""Correlations, edges, normalisation, snapshots and batching."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch
from torch_geometric.loader import DataLoader

from gnn_market.classes import IGNORE_INDEX
from gnn_market.correlations import correlation_matrix, iter_correlations, iter_lead_lag, lead_lag_matrix
from gnn_market.errors import DataError
from gnn_market.feature_generator import compute_features, log_returns, make_labels
from gnn_market.graph_builder import (
    GraphConfig,
    HourlyGraphDataset,
    build_snapshot,
    edges_from_correlation,
    hours_between,
    iter_edge_sets,
)
from gnn_market.normalizer import PASSTHROUGH_FEATURES, FeatureNormalizer
from gnn_market.panel import load_panel
from gnn_market.sample import sample_store

from graph_fixtures import build_store
from test_feature_generator import _perturb_after


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return build_store(tmp_path_factory.mktemp("graph_store"))


@pytest.fixture(scope="module")
def panel(store):
    return load_panel(store)


@pytest.fixture(scope="module")
def sample():
    p = load_panel(sample_store(), end="2023-03-31 23:00")
    return p, compute_features(p), make_labels(p), log_returns(p)


def test_log_returns(panel):
    r = log_returns(panel)
    np.testing.assert_allclose(r[5, 0], np.log(panel.close[5, 0] / panel.close[4, 0]))
    assert np.isnan(r[0]).all() and np.isnan(r[:121, 2]).all() and np.isfinite(r[121:, 2]).all()


def test_correlation_equals_numpy_corrcoef_on_random_windows(sample):
    _, _, _, r = sample
    rng = np.random.default_rng(0)
    for t in rng.integers(100, len(r), 10):
        got = correlation_matrix(r, int(t), window=100, min_periods=50)
        want = np.corrcoef(r[t - 99: t + 1].T)
        assert got.dtype == np.float32 and got.shape == (30, 30)
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_correlation_with_missing_returns_is_pairwise(panel):
    r = log_returns(panel)
    frame = pd.DataFrame(r)
    for t in (60, 130, 175, 215, 260, 330, 380):  # listing, gaps, delisting inside the window
        got = correlation_matrix(r, t, 100, 50)
        want = frame.iloc[max(0, t - 99): t + 1].corr(min_periods=50).to_numpy()
        want = np.where(np.isfinite(want), want, 0.0)
        np.fill_diagonal(want, 1.0)
        np.testing.assert_allclose(got, want, atol=1e-6, err_msg=f"hour {t}")
    # CCC is listed at row 120: at t=165 it has 45 returns < min_periods -> 0
    assert (correlation_matrix(r, 165)[2, [0, 1, 3]] == 0).all()
    assert correlation_matrix(r, 175)[2, 0] != 0


def test_zero_variance_and_too_few_returns_give_zero():
    rng = np.random.default_rng(1)
    r = rng.normal(0, 0.01, (120, 4))
    r[:, 1] = 0.0  # constant price
    r[:80, 3] = np.nan  # only 40 returns
    c = correlation_matrix(r, 119)
    assert (c[1, [0, 2, 3]] == 0).all() and (c[3, [0, 1, 2]] == 0).all()
    assert (np.diag(c) == 1).all() and np.isfinite(c).all() and np.allclose(c, c.T)


def test_chunked_correlations_equal_per_hour(panel, sample):
    for r in (log_returns(panel), sample[3][:400]):
        seen = 0
        for t0, chunk in iter_correlations(r, 0, None, 100, 50, chunk_hours=37):
            for k in range(len(chunk)):
                np.testing.assert_allclose(chunk[k], correlation_matrix(r, t0 + k), atol=2e-6)
            seen += len(chunk)
        assert seen == len(r)


def test_dense_edges_count_and_invalid_nodes():
    rng = np.random.default_rng(2)
    corr = np.corrcoef(rng.normal(size=(50, 6)).T).astype(np.float32)
    mask = np.array([True, True, False, True, True, True])
    ei, ea = edges_from_correlation(corr, mask)
    n = mask.sum()
    assert ei.shape == (2, n * (n - 1)) and ea.shape == (n * (n - 1), 1) and ea.dtype == torch.float32
    assert ei.dtype == torch.long and (ei[0] != ei[1]).all()
    assert not (ei == 2).any()  # invalid node: no edges
    assert torch.allclose(ea[:, 0], torch.from_numpy(corr[ei[0].numpy(), ei[1].numpy()]))
    pairs = set(map(tuple, ei.T.tolist()))
    assert all((j, i) in pairs for i, j in pairs)


def test_top_k_is_symmetric_and_keeps_strongest():
    rng = np.random.default_rng(3)
    corr = np.corrcoef(rng.normal(size=(30, 10)).T).astype(np.float32)
    mask = np.ones(10, bool)
    ei, ea = edges_from_correlation(corr, mask, top_k=2)
    pairs = set(map(tuple, ei.T.tolist()))
    assert all((j, i) in pairs for i, j in pairs)
    for i in range(10):
        strongest = np.argsort(-np.abs(np.where(np.eye(10, dtype=bool)[i], 0, corr[i])))[:2]
        assert all((i, int(j)) in pairs for j in strongest)
    assert len(pairs) < 10 * 9
    ei_all, _ = edges_from_correlation(corr, mask, top_k=9)
    assert ei_all.shape[1] == 90


def test_no_edge_ablation_is_self_loops_only():
    mask = np.array([True, False, True])
    ei, ea = edges_from_correlation(None, mask, edges="none")
    assert ei.tolist() == [[0, 2], [0, 2]] and ea.tolist() == [[1.0], [1.0]]


def test_iter_edge_sets_matches_per_hour(panel):
    r = log_returns(panel)
    feats = compute_features(panel)
    for config in (GraphConfig(), GraphConfig(top_k=1), GraphConfig(edges="none")):
        for t, ei, ea in iter_edge_sets(r, feats.valid, 140, 260, config, chunk_hours=16):
            want_i, want_a = edges_from_correlation(correlation_matrix(r, t), feats.valid[t], config.top_k,
                                                    config.edges)
            assert np.array_equal(ei, want_i.numpy()), (config, t)
            np.testing.assert_allclose(ea, want_a[:, 0].numpy(), atol=2e-6)


def test_normalizer_global_fit_on_training_hours_only(sample, tmp_path):
    p, feats, _, _ = sample
    train = hours_between(p.times, None, "2023-02-28 23:00")
    norm = FeatureNormalizer().fit(feats, train)
    ret = feats.names.index("ret_1h")
    vals = feats.values[train][feats.valid[train]][:, ret]
    assert np.isclose(norm.mean[ret], vals.mean(), atol=1e-9) and np.isclose(norm.std[ret], vals.std(), rtol=1e-6)
    out = norm.transform(feats.values)
    assert out.dtype == np.float32 and np.abs(out).max() <= norm.clip
    assert abs(out[train][feats.valid[train]][:, ret].mean()) < 1e-3
    for name in PASSTHROUGH_FEATURES:
        j = feats.names.index(name)
        assert np.array_equal(out[..., j], feats.values[..., j])
    # checkpoint round trip with weights_only=True
    buf = io.BytesIO()
    torch.save({"normalizer": norm.state_dict()}, buf)
    buf.seek(0)
    back = FeatureNormalizer.from_state_dict(torch.load(buf, weights_only=True)["normalizer"])
    assert np.array_equal(back.transform(feats.values), out)


def test_normalizer_cross_sectional_uses_each_hour_only(sample):
    p, feats, _, _ = sample
    norm = FeatureNormalizer("cross_sectional").fit(feats, np.arange(0))
    out = norm.transform(feats.values, feats.valid)
    t = 500
    ret = feats.names.index("ret_4h")
    assert abs(out[t, :, ret].mean()) < 1e-5 and abs(out[t, :, ret].std() - 1) < 1e-4
    single = norm.transform(feats.values[t], feats.valid[t])
    assert np.allclose(single, out[t])


def test_snapshot_contract(sample):
    p, feats, labels, r = sample
    t = 300
    mask = feats.valid[t].copy()
    mask[4] = False
    data = build_snapshot(feats.values[t], correlation_matrix(r, t), labels.classes[t], mask, p.times[t],
                          p.symbols, GraphConfig(), hour=t)
    assert data.x.shape == (30, len(feats.names)) and data.x.dtype == torch.float32
    assert (data.x[4] == 0).all() and data.y[4] == IGNORE_INDEX and not data.node_mask[4]
    assert data.edge_index.shape[1] == 29 * 28 and data.edge_attr.shape == (29 * 28, 1)
    assert data.y.dtype == torch.long and data.time.tolist() == [p.times[t].value] and data.hour.tolist() == [t]
    assert data.symbols == p.symbols


def test_dataset_batches_with_pyg_dataloader(sample):
    p, feats, labels, r = sample
    train = hours_between(p.times, "2023-01-03", "2023-02-28 23:00")
    norm = FeatureNormalizer().fit(feats, train)
    ds = HourlyGraphDataset(feats, labels, r, train, GraphConfig(), norm)
    assert len(ds) == len(train)
    batch = next(iter(DataLoader(ds, batch_size=4, shuffle=False)))
    assert batch.num_graphs == 4 and batch.x.shape == (120, len(feats.names))
    assert batch.batch.bincount().tolist() == [30] * 4 and batch.hour.tolist() == list(train[:4])
    assert batch.edge_index.max() < 120 and batch.edge_attr.shape[1] == 1
    # edges stay inside their own hour
    assert (batch.batch[batch.edge_index[0]] == batch.batch[batch.edge_index[1]]).all()
    first, t0 = ds[0], int(train[0])
    want = torch.from_numpy(norm.transform(feats.values[t0]))
    m = first.node_mask
    assert torch.equal(first.x[m], want[m]) and (first.x[~m] == 0).all()
    assert torch.equal(first.y[m], torch.from_numpy(labels.classes[t0])[m])
    cross = HourlyGraphDataset(feats, labels, r, train[:3], GraphConfig(normalisation="cross_sectional",
                                                                         edges="none"))
    assert cross[0].edge_index.shape[1] == int(feats.valid[train[0]].sum())
    with pytest.raises(DataError):
        HourlyGraphDataset(feats, labels, r, train, GraphConfig(), None)


def test_dataset_without_labels_has_ignored_targets(sample):
    """Inference passes labels=None: same snapshots, y all IGNORE_INDEX."""
    p, feats, labels, r = sample
    hours = np.arange(150, 154)
    norm = FeatureNormalizer().fit(feats, hours)
    with_y = HourlyGraphDataset(feats, labels, r, hours, GraphConfig(), norm)
    without = HourlyGraphDataset(feats, None, r, hours, GraphConfig(), norm)
    for i in range(len(hours)):
        a, b = with_y[i], without[i]
        assert b.y.dtype == torch.long and b.y.shape == a.y.shape and (b.y == IGNORE_INDEX).all()
        assert torch.equal(a.x, b.x) and torch.equal(a.edge_index, b.edge_index)
        assert torch.equal(a.edge_attr, b.edge_attr) and torch.equal(a.node_mask, b.node_mask)


def test_no_look_ahead_in_edges_and_normalizer(store, panel, tmp_path):
    t = 230
    changed = load_panel(_perturb_after(store, tmp_path / "perturbed", panel.times[t]))
    r0, r1 = log_returns(panel), log_returns(changed)
    for h in range(100, t + 1, 13):
        assert np.array_equal(correlation_matrix(r0, h), correlation_matrix(r1, h))
    f0, f1 = compute_features(panel), compute_features(changed)
    hours = np.arange(t + 1)
    s0 = FeatureNormalizer().fit(f0, hours).state_dict()
    s1 = FeatureNormalizer().fit(f1, hours).state_dict()
    assert s0 == s1
    e0 = list(iter_edge_sets(r0, f0.valid, 150, t + 1))
    e1 = list(iter_edge_sets(r1, f1.valid, 150, t + 1))
    assert all(np.array_equal(a[2], b[2]) for a, b in zip(e0, e1))


def test_config_validation():
    with pytest.raises(DataError):
        GraphConfig(edges="knn")
    with pytest.raises(DataError):
        GraphConfig(normalisation="minmax")
    assert GraphConfig.from_dict(GraphConfig(top_k=5).to_dict()) == GraphConfig(top_k=5)


def test_dataset_cached_and_lazy_correlations_agree(sample):
    p, feats, labels, r = sample
    hours = np.arange(150, 190)
    norm = FeatureNormalizer().fit(feats, hours)
    cached = HourlyGraphDataset(feats, labels, r, hours, GraphConfig(), norm)
    lazy = HourlyGraphDataset(feats, labels, r, hours, GraphConfig(), norm, cache_mb=0)
    assert cached._corr is not None and lazy._corr is None
    for i in (0, 17, 39):
        a, b = cached[i], lazy[i]
        assert torch.equal(a.edge_index, b.edge_index)
        assert torch.allclose(a.edge_attr, b.edge_attr, atol=2e-6)


# --------------------------------------------------------------------------- lead-lag edges
def lead_lag_by_loop(r: np.ndarray, t: int, window: int = 100, min_periods: int = 50) -> np.ndarray:
    """corr(r_j[s-1], r_i[s]) over consecutive hours inside the window ending at t, one pair at a time."""
    lo = max(0, t - window + 1)
    n = r.shape[1]
    out = np.zeros((n, n))
    for j in range(n):
        for i in range(n):
            a, b = r[lo:t, j], r[lo + 1:t + 1, i]
            ok = np.isfinite(a) & np.isfinite(b)
            if ok.sum() >= min_periods and a[ok].std() > 0 and b[ok].std() > 0:
                out[j, i] = np.corrcoef(a[ok], b[ok])[0, 1]
    return out


def test_lead_lag_equals_a_pairwise_loop_with_gaps_and_constant_series(panel):
    rng = np.random.default_rng(0)
    r = rng.normal(size=(260, 5))
    r[1:, 1] += 0.8 * r[:-1, 0]          # 0 leads 1
    r[120:140, 2] = np.nan               # a hole
    r[:, 4] = 0.0                        # zero variance
    for t in (10, 60, 99, 135, 259):
        np.testing.assert_allclose(lead_lag_matrix(r, t), lead_lag_by_loop(r, t), atol=1e-6)
    chunks = np.concatenate([c for _, c in iter_lead_lag(r, 0, 260, chunk_hours=37)])
    np.testing.assert_allclose(chunks, np.stack([lead_lag_by_loop(r, t) for t in range(260)]), atol=1e-6)
    lag = lead_lag_matrix(r, 259)
    assert lag[0, 1] > 0.5 and abs(lag[1, 0]) < 0.3 and (lag[4] == 0).all() and (lag[:, 4] == 0).all()
    real = log_returns(panel)              # listings, delistings and gaps of the graph fixture store
    for t in (130, 210, 300):
        np.testing.assert_allclose(lead_lag_matrix(real, t), lead_lag_by_loop(real, t), atol=1e-6)


def test_lead_lag_snapshot_carries_both_edge_features(sample):
    p, feats, labels, r = sample
    t = 300
    mask = feats.valid[t].copy()
    mask[4] = False
    corr, lag = correlation_matrix(r, t), lead_lag_matrix(r, t)
    config = GraphConfig(lead_lag=True)
    data = build_snapshot(feats.values[t], corr, labels.classes[t], mask, p.times[t], p.symbols, config, hour=t,
                          lag=lag)
    src, dst = data.edge_index
    assert data.edge_attr.shape == (29 * 28, 2) and config.edge_dim == 2
    np.testing.assert_array_equal(data.edge_attr[:, 0].numpy(), corr[src, dst])
    np.testing.assert_array_equal(data.edge_attr[:, 1].numpy(), lag[src, dst])   # edge j -> i: j leads i
    bare = build_snapshot(feats.values[t], None, labels.classes[t], mask, p.times[t], p.symbols,
                          GraphConfig(edges="none", lead_lag=True), hour=t)
    assert bare.edge_attr.shape == (29, 2) and (bare.edge_attr == 1).all()
    with pytest.raises(DataError, match="lead-lag"):
        build_snapshot(feats.values[t], corr, labels.classes[t], mask, p.times[t], p.symbols, config, hour=t)
    norm = FeatureNormalizer().fit(feats, np.arange(150, 190))
    cached = HourlyGraphDataset(feats, labels, r, np.arange(280, 320), config, norm)
    lazy = HourlyGraphDataset(feats, labels, r, np.arange(280, 320), config, norm, cache_mb=0)
    assert cached._lag is not None and lazy._lag is None
    for i in (0, 20, 39):
        assert torch.equal(cached[i].edge_index, lazy[i].edge_index)
        torch.testing.assert_close(cached[i].edge_attr, lazy[i].edge_attr, atol=2e-6, rtol=0)


def test_lead_lag_has_no_look_ahead(store, panel, tmp_path):
    t = 230
    changed = load_panel(_perturb_after(store, tmp_path / "perturbed", panel.times[t]))
    r0, r1 = log_returns(panel), log_returns(changed)
    for h in range(100, t + 1, 13):
        assert np.array_equal(lead_lag_matrix(r0, h), lead_lag_matrix(r1, h))
    assert not np.array_equal(lead_lag_matrix(r0, t + 5), lead_lag_matrix(r1, t + 5))


def test_older_graph_configs_mean_no_lead_lag():
    old = {"window": 100, "min_periods": 50, "top_k": None, "edges": "correlation", "normalisation": "global"}
    assert GraphConfig.from_dict(old) == GraphConfig() and GraphConfig.from_dict(old).edge_dim == 1
    assert GraphConfig.from_dict(GraphConfig(lead_lag=True).to_dict()).lead_lag
