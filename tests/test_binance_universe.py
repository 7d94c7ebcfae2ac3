"""Universe rules, ranking by quote volume and the perp <-> spot mapping."""
from __future__ import annotations

import logging

from gnn_market.binance.universe import map_perp_base


def test_universe_rules_ranking_and_mapping(fake_binance, caplog, client_for):
    with caplog.at_level(logging.WARNING):
        uni = client_for(fake_binance).universe("both")
    # ranked by 24 h quote volume; stablecoin, fiat, leveraged, BREAK, non-USDT and non-ASCII removed
    assert uni.spot == ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "SHIBUSDT", "JUPUSDT", "NEWUSDT"]
    # PERPETUAL + TRADING only, no index contract, no dated or TradFi contract
    assert uni.perp == ["BTCUSDT", "ETHUSDT", "SOLUSDT", "1000SHIBUSDT", "HYPEUSDT"]
    assert uni.spot_to_perp["SHIBUSDT"] == "1000SHIBUSDT" and uni.multiplier["1000SHIBUSDT"] == 1000
    assert uni.perp_to_spot["BTCUSDT"] == "BTCUSDT" and "HYPEUSDT" not in uni.perp_to_spot
    assert {s for s, _ in uni.skipped} == {"币安人生USDT", "我踏马来了USDT"}
    assert "币安人生USDT" in caplog.text


def test_universe_top_and_min_volume(fake_binance, client_for):
    client = client_for(fake_binance)
    assert client.universe("spot", top=2).spot == ["BTCUSDT", "ETHUSDT"]
    assert client.universe("spot", min_quote_volume=1e9).spot == ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]
    uni = client.universe("perp", top=3, min_quote_volume=5e9)
    assert uni.perp == ["BTCUSDT", "ETHUSDT"]


def test_perp_base_mapping_rules():
    spot = {"SHIB", "1INCH", "PEPE", "LUNA", "BTC"}
    assert map_perp_base("1INCH", spot) == ("1INCH", 1)  # exact match first, no prefix stripping
    assert map_perp_base("1000SHIB", spot) == ("SHIB", 1000)
    assert map_perp_base("1000000PEPE", spot) == ("PEPE", 1_000_000)
    assert map_perp_base("LUNA2", spot) == ("LUNA", 1)
    assert map_perp_base("BTCDOM", spot) == (None, 1)
