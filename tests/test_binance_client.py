"""BinanceClient against the local fake server: shapes, pagination, faults, retries, 429/418.

``client_for`` (tests/conftest.py) builds a client with test-sized timeouts and backoffs.
"""
from __future__ import annotations

import pandas as pd
import pytest

from gnn_market.binance import BinanceClient, ClientConfig
from gnn_market.binance.parsers import round_funding_time
from gnn_market.errors import BannedError, BinanceError, DataError, UnknownSymbolError
from gnn_market.store_schema import BOOK_COLUMNS, FUNDING_COLUMNS, KLINE_COLUMNS
from gnn_market.timeutil import HOUR_MS

from fake_binance import FakeBinance, FakeSymbol


# ----------------------------------------------------------------------------- klines
@pytest.mark.parametrize("market,hours,page_calls", [("spot", 2500, 3), ("perp", 2500, 2)])
def test_klines_paginate_and_drop_open_candle(fake_binance, market, hours, page_calls, client_for):
    client = client_for(fake_binance)
    now = fake_binance.now_ms()
    start = (now // HOUR_MS - hours) * HOUR_MS
    df = client.klines("BTCUSDT", market, start, now_ms=now)
    path = "/api/v3/klines" if market == "spot" else "/fapi/v1/klines"
    assert fake_binance.count(path) == page_calls  # spot pages of 1000, futures 1500
    assert len(df) == hours  # hours start .. last closed; the open candle is not included
    assert df.index[-1] == pd.Timestamp(now // HOUR_MS * HOUR_MS - HOUR_MS, unit="ms", tz="UTC")
    assert df.index.is_monotonic_increasing and df.index.is_unique
    assert list(df.columns) == list(KLINE_COLUMNS)
    assert str(df.index.dtype) == "datetime64[ns, UTC]" and df.index.name == "open_time"
    assert str(df["trades"].dtype) == "Int64"
    raw = fake_binance.kline(fake_binance._sym(market, "BTCUSDT"), int(df.index[0].value // 1_000_000))
    assert df["close"].iloc[0] == float(raw[4]) and df["quote_volume"].iloc[0] == float(raw[7])


def test_klines_keep_exchange_gaps_and_new_listings(client_for):
    now = 1_709_294_430_000
    gap = (now // HOUR_MS - 5) * HOUR_MS
    syms = [FakeSymbol("BTCUSDT", "BTC", gaps=(gap, gap + HOUR_MS)), FakeSymbol("NEWUSDT", "NEW", listed_hours=3)]
    with FakeBinance(syms, now_ms=now) as srv:
        client = client_for(srv)
        df = client.klines("BTCUSDT", "spot", (now // HOUR_MS - 10) * HOUR_MS)
        assert len(df) == 8 and pd.Timestamp(gap, unit="ms", tz="UTC") not in df.index
        assert len(client.klines("NEWUSDT", "spot", 0)) == 3


def test_open_candle_dropped_by_server_clock_not_local_clock(client_for):
    # Server clock in 2024: every candle up to now is closed except the current hour's.
    with FakeBinance(now_ms=1_709_294_430_000) as srv:
        df = client_for(srv).klines("ETHUSDT", "spot", 1_709_294_430_000 - 4 * HOUR_MS)
        assert df.index[-1] == pd.Timestamp("2024-03-01 11:00", tz="UTC")


# ----------------------------------------------------------------------------- book & funding
def test_book_row_schema_and_values(fake_binance, client_for):
    client = client_for(fake_binance)
    client.server_time_ms()
    row = client.book("BTCUSDT", "spot")
    raw = fake_binance.depth(fake_binance._sym("spot", "BTCUSDT"), 20)
    assert list(row.columns) == list(BOOK_COLUMNS) and len(row) == 1
    assert row["best_bid"].iloc[0] == float(raw["bids"][0][0])
    assert row["best_ask"].iloc[0] == float(raw["asks"][0][0])
    assert row["bid_qty"].iloc[0] == pytest.approx(sum(float(q) for _, q in raw["bids"]))
    assert row["spread"].iloc[0] == pytest.approx(float(raw["asks"][0][0]) - float(raw["bids"][0][0]))
    assert row["levels"].iloc[0] == 20
    # server clock is 12:00:30: the snapshot is stamped when it was taken (receive time on the server's
    # clock), never floored to 12:00, which would make it look taken at the close of candle 11:00
    server = pd.Timestamp(fake_binance.now_ms(), unit="ms", tz="UTC")
    assert server <= row.index[0] < server + pd.Timedelta(seconds=5)
    assert fake_binance.count("/api/v3/depth") == 1
    perp = client.book("BTCUSDT", "perp")  # futures answers carry the server's event time E
    assert perp.index[0] == server


def test_funding_history_paginates_and_rounds_jitter(client_for):
    with FakeBinance(symbols=[FakeSymbol("BTCUSDT", "BTC", market="perp", listed_hours=24 * 400)]) as srv:
        client = client_for(srv)
        df = client.funding_history("BTCUSDT", 0)
        assert srv.count("/fapi/v1/fundingRate") == 2  # 1200 settlements, pages of 1000
        assert len(df) == 400 * 3
        assert list(df.columns) == list(FUNDING_COLUMNS) and df.index.is_unique
        assert (df.index.asi8 % (8 * HOUR_MS * 1_000_000) == 0).all()  # ms jitter rounded away
        cur = client.current_funding("BTCUSDT")
        assert cur["funding_rate"].iloc[0] == pytest.approx(0.00012345)
        assert cur.index[0] == pd.Timestamp("2024-03-01 16:00", tz="UTC")
        assert set(client.current_funding()) == {"BTCUSDT"}
    assert round_funding_time(1_570_608_000_011) == 1_570_608_000_000


# ----------------------------------------------------------------------------- faults
@pytest.mark.parametrize("kind", ["500", "502", "malformed", "drop", "slow", "429"])
def test_each_fault_is_retried(kind, client_for):
    with FakeBinance(slow_seconds=0.6) as srv:
        client = client_for(srv, timeout=0.3)
        good = client.klines("BTCUSDT", "spot", srv.now_ms() - 50 * HOUR_MS)
        srv.add_fault(kind, endpoint="klines", times=2)
        again = client.klines("BTCUSDT", "spot", srv.now_ms() - 50 * HOUR_MS)
        assert srv.faults_served == [kind, kind]
        pd.testing.assert_frame_equal(good, again)
        assert client.retries == 2


def test_429_honours_retry_after(client_for):
    import time

    with FakeBinance(retry_after_s=1) as srv:
        client = client_for(srv)
        srv.add_fault("429", endpoint="depth")
        t0 = time.monotonic()
        client.book("BTCUSDT", "spot")
        assert time.monotonic() - t0 >= 0.95  # waited Retry-After, not the tiny backoff


def test_retries_exhausted_is_a_clear_error(fake_binance, client_for):
    client = client_for(fake_binance, max_retries=2)
    fake_binance.add_fault("500", endpoint="depth", times=10)
    with pytest.raises(BinanceError, match="HTTP 500 after 3 attempts"):
        client.book("BTCUSDT", "spot")
    assert fake_binance.count("/api/v3/depth") == 3


def test_418_stops_everything(fake_binance, client_for):
    client = client_for(fake_binance)
    fake_binance.add_fault("418", endpoint="klines")
    with pytest.raises(BannedError, match="418"):
        client.klines("BTCUSDT", "spot", 0)
    sent = fake_binance.count()
    for call in (lambda: client.book("ETHUSDT", "spot"), lambda: client.server_time_ms("perp")):
        with pytest.raises(BannedError):
            call()
    assert fake_binance.count() == sent  # not one more request after the ban


def test_418_inside_a_batch_stops_the_batch(fake_binance, client_for):
    client = client_for(fake_binance, max_workers=2)
    fake_binance.add_fault("418", endpoint="depth", symbol="ETHUSDT")
    with pytest.raises(BannedError):
        client.map_symbols(lambda s: client.book(s, "spot"), ["BTCUSDT", "ETHUSDT"])
    assert fake_binance.count("/api/v3/depth") <= 2


def test_unknown_symbol_is_reported_and_skipped(fake_binance, client_for):
    client = client_for(fake_binance)
    with pytest.raises(UnknownSymbolError, match="-1121"):
        client.book("NOPEUSDT", "spot")
    batch = client.map_symbols(lambda s: client.book(s, "spot"), ["BTCUSDT", "NOPEUSDT", "ETHUSDT"])
    assert set(batch.values) == {"BTCUSDT", "ETHUSDT"}
    assert isinstance(batch.errors["NOPEUSDT"], UnknownSymbolError)
    assert fake_binance.count("/api/v3/depth") == 4  # -1121 is not retried


def test_unreachable_host_and_bad_url():
    client = BinanceClient(ClientConfig(spot_url="http://127.0.0.1:9", max_retries=1, backoff_base=0.01))
    with pytest.raises(BinanceError, match="cannot reach"):
        client.server_time_ms()
    with pytest.raises(DataError, match="bad spot URL"):
        ClientConfig(spot_url="not a url")


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), 0.0, -1.0])
def test_timeout_must_be_finite_and_positive(timeout):
    with pytest.raises(DataError, match="timeout must be a finite number > 0"):
        ClientConfig(timeout=timeout)
