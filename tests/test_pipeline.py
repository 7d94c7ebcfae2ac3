"""gnn_market.pipeline: one data path for training and inference; labels only when asked for."""
from __future__ import annotations

import numpy as np
import pytest

from gnn_market.errors import DataError
from gnn_market.feature_generator import FeatureConfig
from gnn_market.panel import load_panel
from gnn_market.pipeline import load_market, prepare_market, simple_returns
from gnn_market.timeutil import HOUR

from graph_fixtures import build_store


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    return load_panel(build_store(tmp_path_factory.mktemp("pipeline_store")))


def test_simple_returns() -> None:
    close = np.array([[100.0, np.nan], [110.0, 5.0], [99.0, 5.5]])
    r = simple_returns(close)
    assert np.isnan(r[0]).all() and np.isnan(r[1, 1])
    np.testing.assert_allclose(r[1:, 0], [0.1, -0.1])
    np.testing.assert_allclose(r[2, 1], 0.1)


def test_inference_path_equals_training_path_without_labels(panel) -> None:
    trained = prepare_market(panel, 0.02)
    inference = prepare_market(panel, feature_config=FeatureConfig(), labels=False)
    assert inference.labels is None and trained.labels is not None and trained.labels.threshold == 0.02
    assert trained.require_labels() is trained.labels
    with pytest.raises(DataError, match="without labels"):
        inference.require_labels()
    np.testing.assert_array_equal(trained.features.values, inference.features.values)
    np.testing.assert_array_equal(trained.features.valid, inference.features.valid)
    np.testing.assert_array_equal(trained.log_ret, inference.log_ret)
    np.testing.assert_array_equal(trained.current_return, inference.current_return)
    assert list(trained.times) == list(panel.times) and trained.feature_config == FeatureConfig()


def test_empty_panel_is_refused(panel) -> None:
    empty = panel.slice(end=panel.times[0] - HOUR)
    for labels in (True, False):
        with pytest.raises(DataError, match="no candles in the requested range"):
            prepare_market(empty, labels=labels)


def test_load_market_is_store_to_prepare_market(tmp_path, panel) -> None:
    store = build_store(tmp_path / "store")
    loaded = load_market(store, end=panel.times[-1].isoformat(), labels=False)
    assert loaded.labels is None
    np.testing.assert_array_equal(loaded.features.values, prepare_market(panel).features.values)
