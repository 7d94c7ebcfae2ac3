"""The data-source seam: the MarketSource Protocol, its three implementations, and the generic copy and sync."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import gnn_market
from gnn_market.binance import BinanceClient, ClientConfig
from gnn_market.csv_import import CsvSource
from gnn_market.data import refresh_any
from gnn_market.errors import DataError
from gnn_market.market_source import MarketSource, all_series, copy_source, in_range
from gnn_market.source_sync import sync_source
from gnn_market.store import Store
from gnn_market.vision import VisionSource

ROOT = Path(__file__).resolve().parents[1]
HOUR_MS = 3_600_000
JAN_2024_MS = 1_704_067_200_000  # 2024-01-01 00:00 UTC


def candles(hours: int = 30, start: str = "2024-01-01") -> pd.DataFrame:
    """A random walk in the store's kline schema (every column, ``trades`` as Int64)."""
    index = pd.date_range(start, periods=hours, freq="h", tz="UTC", name="open_time").as_unit("ns")
    close = 100 * np.exp(np.cumsum(np.random.default_rng(1).normal(0, 0.01, hours)))
    return pd.DataFrame({"open": close, "high": close * 1.01, "low": close * 0.99, "close": close,
                         "volume": 10.0, "quote_volume": 10.0 * close, "trades": pd.array([7] * hours, dtype="Int64"),
                         "taker_buy_volume": 4.0, "taker_buy_quote_volume": 4.0 * close}, index=index)


def settlements(n: int = 6) -> pd.DataFrame:
    index = pd.date_range("2024-01-01", periods=n, freq="8h", tz="UTC", name="funding_time").as_unit("ns")
    return pd.DataFrame({"funding_rate": np.linspace(-1e-4, 2e-4, n), "mark_price": 100.0}, index=index)


class ToySource:
    """A source over frames in memory: spot and perp candles, perp funding, one book row."""

    def __init__(self, klines: pd.DataFrame | None = None, funding: pd.DataFrame | None = None,
                 now: str = "2024-01-03 00:00:10") -> None:
        self.frames = {"klines": candles() if klines is None else klines,
                       "funding": settlements() if funding is None else funding}
        self.now = pd.Timestamp(now, tz="UTC")

    def symbols(self, market: str) -> list[str]:
        return ["TOYUSDT"]

    def klines(self, symbol: str, market: str, start_ms: int, end_ms: int | None = None) -> pd.DataFrame:
        return in_range(self.frames["klines"], start_ms, end_ms)

    def book(self, symbol: str, market: str) -> pd.DataFrame:
        return pd.DataFrame({"best_bid": [99.0], "best_ask": [101.0], "bid_qty": [5.0], "ask_qty": [6.0]},
                            index=pd.DatetimeIndex([self.now], name="snapshot_time"))

    def funding(self, symbol: str, start_ms: int, end_ms: int | None = None) -> pd.DataFrame:
        return in_range(self.frames["funding"], start_ms, end_ms)

    def now_ms(self, market: str) -> int:
        return self.now.value // 1_000_000


def test_the_three_implementations_and_a_toy_are_market_sources(tmp_path):
    kline_file = tmp_path / "spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-01.csv"
    kline_file.parent.mkdir(parents=True)
    close_ms = JAN_2024_MS + HOUR_MS - 1
    kline_file.write_text(f"{JAN_2024_MS},100,102,99,101,10,{close_ms},1000,100,5,500,0\n")
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "ETHUSDT.csv").write_text(f"open_time,open,high,low,close,volume\n{JAN_2024_MS},1,2,0.5,1.5,3\n")
    sources = [BinanceClient(ClientConfig()), VisionSource([tmp_path / "spot"]),
               CsvSource(tmp_path / "csv", drop_last=False), ToySource()]
    for source in sources:
        assert isinstance(source, MarketSource), type(source).__name__
    assert sources[1].symbols("spot") == ["BTCUSDT"] and sources[1].symbols("perp") == []
    assert sources[2].symbols("spot") == ["ETHUSDT"] and len(sources[2].klines("ETHUSDT", "spot", JAN_2024_MS)) == 1
    assert not isinstance(object(), MarketSource)
    assert gnn_market.MarketSource is MarketSource and "MarketSource" in gnn_market.__all__


def test_a_toy_source_copied_into_a_store_gives_exactly_its_rows(tmp_path):
    source = ToySource()
    store = Store(tmp_path / "s")
    added = copy_source(source, store, all_series(source))
    assert added == {("klines", "spot", "TOYUSDT"): 30, ("klines", "perp", "TOYUSDT"): 30,
                     ("funding", "perp", "TOYUSDT"): 6}
    for market in ("spot", "perp"):
        pd.testing.assert_frame_equal(store.klines("TOYUSDT", market), source.frames["klines"], check_exact=True,
                                      check_freq=False)
    pd.testing.assert_frame_equal(store.funding("TOYUSDT"), source.frames["funding"], check_exact=True,
                                  check_freq=False)


def test_a_range_copies_only_the_rows_inside_it(tmp_path):
    source, store = ToySource(), Store(tmp_path / "s")
    start, end = JAN_2024_MS + 5 * HOUR_MS, JAN_2024_MS + 9 * HOUR_MS
    copy_source(source, store, [("klines", "spot", "TOYUSDT")], start_ms=start, end_ms=end)
    pd.testing.assert_frame_equal(store.klines("TOYUSDT", "spot"), source.frames["klines"].iloc[5:10],
                                  check_exact=True, check_freq=False)


def test_the_generic_sync_stores_the_closed_hours_a_book_and_funding(tmp_path):
    """sync_source: the refresh any source gets (backfill/collect without the Binance pipeline)."""
    source, store = ToySource(klines=candles(48)), Store(tmp_path / "s")  # to 2024-01-02 23:00, closed at now
    report = sync_source(source, store, {"spot": ["TOYUSDT"], "perp": ["TOYUSDT"]}, hours=24)
    assert not report.errors
    closed = source.frames["klines"].iloc[24:]  # the 24 hours before now
    pd.testing.assert_frame_equal(store.klines("TOYUSDT", "perp"), closed, check_exact=True, check_freq=False)
    assert report.results[("spot", "TOYUSDT")].klines == 24 and report.results[("perp", "TOYUSDT")].book == 1
    assert len(store.book("TOYUSDT", "spot")) == 1 and store.book("TOYUSDT", "spot").index[0] == source.now
    assert report.results[("perp", "TOYUSDT")].funding == 3  # settlements from the first closed hour on
    later = ToySource(klines=candles(58), now="2024-01-03 10:00:10")  # ten hours later: only those are asked
    again = refresh_any(later, store, {"perp": ["TOYUSDT"]}, hours=24, book=False)  # not a BinanceClient: generic
    assert again.results[("perp", "TOYUSDT")].klines == 10
    assert store.klines("TOYUSDT", "perp").index[-1] == pd.Timestamp("2024-01-03 09:00", tz="UTC")


def _bad(kind: str) -> pd.DataFrame:
    frame = candles()
    if kind == "missing column":
        return frame.drop(columns="close")
    if kind == "naive times":
        return frame.tz_localize(None)
    frame.iloc[3, frame.columns.get_loc("low")] = -1.0  # negative price
    return frame


@pytest.mark.parametrize("kind, words", [("missing column", "close"), ("naive times", "naive"),
                                         ("negative price", "price <= 0")])
def test_a_bad_frame_is_one_error_naming_the_source_and_nothing_is_written(tmp_path, kind, words):
    source, store = ToySource(klines=_bad(kind)), Store(tmp_path / "s")
    with pytest.raises(DataError, match="source ToySource: klines TOYUSDT") as caught:
        copy_source(source, store, [("klines", "spot", "TOYUSDT")])
    assert words in str(caught.value) and "\n" not in str(caught.value)
    assert not store.root.exists()
    report = sync_source(source, store, {"spot": ["TOYUSDT"]}, hours=48)  # the refresh skips that symbol
    assert "source ToySource" in report.errors[("spot", "TOYUSDT")] and not store.root.exists()


GENERIC = ("gnn_market/source_sync.py", "gnn_market/market_source.py", "gnn_market/data_maintenance.py")


@pytest.mark.parametrize("path", GENERIC)
def test_the_generic_data_code_names_no_binance_type(path):
    """data.py's generic half speaks to MarketSource only: no import of the binance package or a name from it."""
    tree = ast.parse((ROOT / path).read_text())
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names]
    assert not [m for m in imported if "binance" in m], imported
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert not names & {"BinanceClient", "ClientConfig", "Universe"}


def test_the_generic_data_code_does_not_import_the_binance_package_even_indirectly():
    """Not through a shared module either (the refresh report lives in neutral gnn_market.refresh_report)."""
    code = ("import sys, gnn_market.source_sync, gnn_market.market_source, gnn_market.data_maintenance; "
            "print(sorted(m for m in sys.modules if 'binance' in m))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "[]"
