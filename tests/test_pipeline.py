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
from pit_fixtures import late_liquidity, ranked_before, scale_volume
from train_fixtures import tiny_store


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


# ------------------------------------------------- top=: ranked on the hours before start (issue 22 item 5)
TOP = 3


@pytest.fixture(scope="module")
def late(tmp_path_factory):
    """(tiny store, its copy where the pairs outside the pre-range top 3 turn liquid at `since`, top 3, since)."""
    root = tmp_path_factory.mktemp("pit_pipeline")
    store = tiny_store(root)
    since = load_panel(store).times[240]
    copy, before = late_liquidity(store, root / "late", TOP, since)
    return store, copy, before, since


def test_load_market_top_ranks_on_the_hours_before_start(late) -> None:
    store, copy, before, since = late
    end = (since + 100 * HOUR).isoformat()
    for s in (store, copy):  # the in-range volumes differ completely; the choice does not
        market = load_market(s, top=TOP, start=since.isoformat(), end=end, labels=False)
        assert market.panel.symbols == before and market.times[0] == since
    # the chosen pairs' own data are untouched by the perturbation: identical features
    a = load_market(store, top=TOP, start=since.isoformat(), end=end, labels=False)
    b = load_market(copy, top=TOP, start=since.isoformat(), end=end, labels=False)
    np.testing.assert_array_equal(a.features.values, b.features.values)


def test_load_market_top_ignores_volume_inside_and_after_the_range(late, tmp_path) -> None:
    store, _, before, since = late
    quiet = scale_volume(store, tmp_path / "quiet", before, since, 1e-6)  # the chosen pairs dry up in the range
    got = load_market(quiet, top=TOP, start=since.isoformat(), labels=False)
    assert got.panel.symbols == before


def test_load_market_top_among_symbols(late) -> None:
    store, copy, _, since = late
    names = sorted(store.symbols())[::2]  # every other pair: the ranking is among these only
    expect = ranked_before(store, 2, since, symbols=names)
    assert expect != ranked_before(copy, 2, copy.klines(names[0]).index[-1] + HOUR, symbols=names)  # hindsight differs
    got = load_market(copy, symbols=names, top=2, start=since.isoformat(), labels=False).panel.symbols
    assert got == expect


def test_load_market_top_without_history_before_the_range_is_refused(late) -> None:
    store, _, _, _ = late
    first = load_panel(store).times[0]
    with pytest.raises(DataError) as err:
        load_market(store, top=TOP, labels=False)  # the range would start at the first stored hour
    assert "no start= was given" in str(err.value) and "symbols= without top=" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match=r"holds no spot candles before it; pass a later start"):
        load_market(store, top=TOP, start=first.isoformat(), labels=False)
