"""The fast refresh path (downloads on threads, parsing and writes in a process pool) against the sequential reference.

Every test runs both :func:`gnn_market.data.refresh_reference` (one thread: the naive sequential
refresh, everything in this process) and :func:`gnn_market.refresh_pipeline.refresh` on the same
fake market and compares what the stores hold, through the Store API (so it holds on any layout).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd
import pytest

from gnn_market.binance import PERP, SPOT, BinanceClient, ClientConfig
from gnn_market.data import refresh_reference
from gnn_market.errors import DataError
from gnn_market.refresh_pipeline import book_pass, refresh
from gnn_market.refresh_writes import SymbolFetch, WritePool, WritePoolConfig, write_fetched
from gnn_market.store import Store

from fake_binance import FakeBinance, FakeSymbol

NOW = 1_709_294_430_000  # 2024-03-01 12:00:30 UTC
HOUR_MS = 3_600_000
ROOT = Path(__file__).resolve().parents[1]


def market() -> list[FakeSymbol]:
    """Spot and perp symbols with a maintenance gap, a young listing and a perp without a spot twin."""
    gap = (NOW // HOUR_MS - 40) * HOUR_MS
    return [FakeSymbol("BTCUSDT", "BTC", price=60000, listed_hours=300, gaps=(gap,)),
            FakeSymbol("ETHUSDT", "ETH", price=3000, listed_hours=300),
            FakeSymbol("NEWUSDT", "NEW", price=5.0, listed_hours=20),
            FakeSymbol("BTCUSDT", "BTC", market="perp", price=60000, listed_hours=300, gaps=(gap,)),
            FakeSymbol("SHIBUSDT", "SHIB", market="perp", price=0.00002, listed_hours=300),
            FakeSymbol("HYPEUSDT", "HYPE", market="perp", price=30, listed_hours=30)]


PLAN = {SPOT: ["BTCUSDT", "ETHUSDT", "NEWUSDT"], PERP: ["BTCUSDT", "HYPEUSDT", "SHIBUSDT"]}


@pytest.fixture
def fixed_receive_time(monkeypatch):
    """Spot depth carries no time (the receive time stands for it): pin it, so two runs store identical stamps."""
    monkeypatch.setattr(BinanceClient, "server_now_ms", lambda self: NOW - 1234)


def client(srv: FakeBinance, workers: int, retries: int = 5) -> BinanceClient:
    return BinanceClient(ClientConfig(spot_url=srv.url, futures_url=srv.url, max_workers=workers,
                                      max_retries=retries, backoff_base=0.0))


def stored(store: Store) -> dict[str, pd.DataFrame]:
    """Every stored row by kind/market/symbol, read through the Store API."""
    out = {}
    for m in (SPOT, PERP):
        for s in store.symbols(m):
            out[f"klines/{m}/{s}"] = store.klines(s, m)
        for s in store.book_symbols(m):
            out[f"book/{m}/{s}"] = store.book(s, m)
    for s in store.funding_symbols():
        out[f"funding/{s}"] = store.funding(s)
    return out


def assert_same_rows(a: Store, b: Store) -> None:
    """Same series, same rows, values and dtypes (index included), exactly."""
    ra, rb = stored(a), stored(b)
    assert sorted(ra) == sorted(rb)
    for name in ra:
        pd.testing.assert_frame_equal(ra[name], rb[name], check_exact=True, obj=name)


@pytest.mark.parametrize("processes", [0, 2], ids=["writes-in-thread", "write-processes"])
def test_pipeline_stores_exactly_what_the_sequential_reference_stores(tmp_path, fixed_receive_time, processes):
    """Backfill, an hour later a collect cycle, then a deeper backfill (older hours): same rows after each step."""
    ref, new = Store(tmp_path / "ref"), Store(tmp_path / "new")
    with WritePool(WritePoolConfig(processes=processes)) as pool:
        for now, hours in ((NOW, 100), (NOW + HOUR_MS, 24), (NOW + 3 * HOUR_MS, 250)):
            with FakeBinance(market(), now_ms=now) as srv:
                r_ref = refresh_reference(client(srv, 1), ref, PLAN, hours)
                r_new = refresh(client(srv, 4), new, PLAN, hours, pool=pool)
            assert not r_ref.errors and not r_new.errors
            assert r_new.results == r_ref.results  # the same rows added per symbol and kind
            assert_same_rows(ref, new)
    assert len(new.klines("BTCUSDT", PERP)) == 249  # 250 hours back, the maintenance hour stays a gap
    assert new.funding("BTCUSDT").index[-1] == pd.Timestamp("2024-03-01 16:00", tz="UTC")  # live estimate


def test_book_pass_stores_what_the_reference_stores(tmp_path, fixed_receive_time, monkeypatch):
    ref, new = Store(tmp_path / "ref"), Store(tmp_path / "new")
    with FakeBinance(market(), now_ms=NOW) as srv, WritePool(WritePoolConfig(processes=1)) as pool:
        refresh_reference(client(srv, 1), ref, PLAN, 10)
        refresh(client(srv, 4), new, PLAN, 10, pool=pool)
    monkeypatch.setattr(BinanceClient, "server_now_ms", lambda self: NOW + HOUR_MS - 30_000)  # spot receive time
    with FakeBinance(market(), now_ms=NOW + HOUR_MS - 30_000) as srv, WritePool(WritePoolConfig(processes=1)) as pool:
        report = book_pass(client(srv, 4), new, PLAN, pool=pool)
    assert report.total("book") == 6 and not report.errors
    for m, syms in PLAN.items():
        for s in syms:
            pd.testing.assert_frame_equal(new.book(s, m).iloc[:1], ref.book(s, m), check_exact=True)
            assert len(new.book(s, m)) == 2


def test_a_symbol_whose_book_download_fails_keeps_its_candles_in_both_paths(tmp_path, fixed_receive_time):
    """The reference writes each kind before downloading the next: a failed book request leaves the
    candles written and the funding untouched; the pipeline must leave the same store and report the same error."""
    stores, errors = [], []
    for path, workers in (("ref", 1), ("new", 4)):
        with FakeBinance(market(), now_ms=NOW) as srv, WritePool(WritePoolConfig(processes=1)) as pool:
            srv.add_fault("500", endpoint="depth", symbol="SHIBUSDT", times=10)
            c = client(srv, workers, retries=1)
            run = refresh_reference if path == "ref" else (lambda *a: refresh(*a, pool=pool))
            report = run(c, Store(tmp_path / path), PLAN, 50)
        stores.append(Store(tmp_path / path))
        errors.append(report.errors)
    assert list(errors[0]) == list(errors[1]) == [(PERP, "SHIBUSDT")]
    assert "HTTP 500" in errors[1][(PERP, "SHIBUSDT")]
    assert_same_rows(*stores)
    assert len(stores[1].klines("SHIBUSDT", PERP)) == 50
    assert "SHIBUSDT" not in stores[1].book_symbols(PERP) and "SHIBUSDT" not in stores[1].funding_symbols()


def test_a_bad_stored_file_skips_only_its_symbol_in_both_paths(tmp_path, fixed_receive_time):
    """A funding file that breaks a store rule: that perp is skipped after its candles and book are written
    (the reference reads the funding range last), every other symbol is refreshed."""
    for path in ("ref", "new"):
        with FakeBinance(market(), now_ms=NOW) as srv:
            refresh_reference(client(srv, 1), Store(tmp_path / path), PLAN, 30)
        # the newest month: the one the refresh rewrites (older month files are not read by an upsert)
        funding = sorted((tmp_path / path / "funding").rglob("symbol=BTCUSDT/month=*/data.parquet"))[-1]
        frame = pd.read_parquet(funding)
        frame.iloc[0, frame.columns.get_loc("funding_rate")] = 5.0  # |rate| > 1: breaks a store rule
        frame.to_parquet(funding)
    reports = []
    with FakeBinance(market(), now_ms=NOW + HOUR_MS) as srv, WritePool(WritePoolConfig(processes=1)) as pool:
        reports.append(refresh_reference(client(srv, 1), Store(tmp_path / "ref"), PLAN, 30))
        reports.append(refresh(client(srv, 4), Store(tmp_path / "new"), PLAN, 30, pool=pool))
    for report in reports:
        assert list(report.errors) == [(PERP, "BTCUSDT")] and "funding_rate" in report.errors[(PERP, "BTCUSDT")]
        assert len(report.results) == 5
    for path in ("ref", "new"):  # the bad file still breaks the rule: read everything else
        store = Store(tmp_path / path)
        assert store.klines("BTCUSDT", PERP).index[-1] == pd.Timestamp("2024-03-01 12:00", tz="UTC")  # written first
    ref, new = Store(tmp_path / "ref"), Store(tmp_path / "new")
    for m, syms in PLAN.items():
        for s in syms:
            pd.testing.assert_frame_equal(ref.klines(s, m), new.klines(s, m), check_exact=True)
            pd.testing.assert_frame_equal(ref.book(s, m), new.book(s, m), check_exact=True)


def test_pipeline_keeps_the_servers_weight_count_under_its_limit(tmp_path):
    """Pacing is the client's, unchanged: a server limit of 60 per 2 s window is never exceeded, no 429."""
    syms = [FakeSymbol(f"C{i}USDT", f"C{i}", market="perp", listed_hours=40) for i in range(12)]
    with FakeBinance(syms, now_ms=NOW, perp_limit=60, window_s=2.0) as srv, \
            WritePool(WritePoolConfig(processes=1)) as pool:
        c = BinanceClient(ClientConfig(spot_url=srv.url, futures_url=srv.url, max_workers=8,
                                       futures_weight_limit=60, weight_window=2.0, weight_safety=0.9))
        report = refresh(c, Store(tmp_path), {PERP: [s.symbol for s in syms]}, 30, pool=pool)
        assert not report.errors
        assert srv.count(status=429) == 0
        assert 54 >= srv.peak_weight("perp") > 30  # the budget (0.9 x 60) was used, never passed
    assert report.weight_budget[PERP] == 60 and report.peak_weight[PERP] <= 54


def _exit_in_a_worker(parent: int, value: int) -> int:
    """Kills the pool process that runs it (a crash, an out-of-memory kill); returns ``value`` in the parent."""
    if os.getpid() != parent:
        os._exit(3)
    return value


def test_a_write_whose_process_dies_is_redone_here_and_the_pool_restarts():
    with WritePool(WritePoolConfig(processes=1)) as pool:
        assert pool.run(_exit_in_a_worker, os.getpid(), 7) == 7
        assert pool.run(pow, 2, 5) == 32  # a fresh pool serves the next write
        assert pool.cpu_seconds() >= 0.0


def test_errors_of_a_write_process_come_back_with_their_class(tmp_path):
    """A value the store refuses raises DataError from the worker, and nothing is written."""
    fetch = SymbolFetch(PERP, "BTCUSDT", NOW, kline_pages=[[[(NOW // HOUR_MS - 2) * HOUR_MS, "-1", "1", "1", "1", "1", 0,
                                                              "1", 1, "0.5", "0.5", "0"]]])
    with WritePool(WritePoolConfig(processes=1)) as pool:
        with pytest.raises(DataError, match="nothing was written"):
            pool.run(write_fetched, str(tmp_path), fetch)
    assert not (tmp_path / "klines").exists()


def test_bench_refresh_smoke(tmp_path, monkeypatch):
    """The benchmark's logic at toy sizes: every scenario and path runs and stores the same candle counts."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import bench_refresh

    out = bench_refresh.main(["--symbols", "2", "--latency", "0", "--repeat", "1", "--backfill-hours", "20",
                              "--histories", "30,60", "--out", str(tmp_path / "r.json")])
    rows = out["results"]
    scenarios = (("backfill", "empty"), ("refresh", "30 h"), ("refresh", "60 h"))
    assert {(r["scenario"], r["history"], r["layout"], r["mode"]) for r in rows} == {
        *((s, h, "monthly", m) for s, h in scenarios for m in ("pipeline", "threads", "sequential")),
        *((s, h, "per-symbol", m) for s, h in scenarios for m in ("threads", "sequential"))}
    for r in rows:
        assert r["http_429"] == 0 and r["peak_weight"] <= r["limit"]
        assert r["new_candles"] == (2 * 20 if r["scenario"] == "backfill" else 2 * 3)
        assert r["requests"] == (2 + 3 * 2 if r["scenario"] == "backfill" else 2 + 2 * 2)
    assert (tmp_path / "r.json").exists()
