"""Bundled sample and data-source resolution."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gnn_market.csv_import import read_kline_csv
from gnn_market.errors import StoreError
from gnn_market.sample import SAMPLE_DIR, sample_store
from gnn_market.sources import open_store
from gnn_market.store import Store

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "binance-spot-1h-2021-2023"


def test_sample_is_a_store_of_30_pairs_over_2023():
    store = sample_store()
    symbols = store.symbols("spot")
    assert len(symbols) == 30 and "BTCUSDT" in symbols and "ETHUSDT" in symbols
    meta = json.loads((SAMPLE_DIR / "sample.json").read_text())
    assert meta["symbols"] == symbols
    btc = store.klines("BTCUSDT")
    assert btc.index.min() == pd.Timestamp("2023-01-01", tz="UTC")
    assert btc.index.max() < pd.Timestamp("2023-12-30 20:00", tz="UTC")  # in-progress hour dropped
    assert (btc["high"] >= btc[["open", "close"]].max(axis=1)).all()
    assert (SAMPLE_DIR / "PROVENANCE.md").exists()


def test_sample_keeps_the_known_gap():
    gaps = sample_store().gaps("ETHUSDT")
    assert gaps["start"].tolist() == [pd.Timestamp("2023-03-24 13:00", tz="UTC")]


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared dataset not present on this machine")
def test_sample_values_equal_the_shared_source():
    src = read_kline_csv(SHARED / "SOLUSDT.csv.gz")
    src = src[src.index >= pd.Timestamp("2023-01-01", tz="UTC")]
    got = sample_store().klines("SOLUSDT")
    assert got.index.equals(src.index)
    np.testing.assert_array_equal(got[["open", "high", "low", "close", "volume"]].to_numpy(),
                                  src[["open", "high", "low", "close", "volume"]].to_numpy())


def test_open_store_defaults_to_sample_and_rejects_bad_choices(tmp_path):
    assert open_store().root == SAMPLE_DIR
    with pytest.raises(StoreError, match="not found"):
        open_store(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="empty store"):
        open_store(tmp_path / "empty")
    with pytest.raises(StoreError, match="unknown data source"):
        open_store(data="nasdaq")
    assert isinstance(open_store(Store(SAMPLE_DIR)), Store)
