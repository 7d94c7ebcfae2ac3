"""The data CLI against the fake server: backfill, resumability, faults, collect, info, bad input."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from fake_binance import FakeBinance, FakeSymbol
from gnn_market.cli import run_cli
from gnn_market.data import main
from gnn_market.store import Store

NOW = 1_709_294_430_000  # 2024-03-01 12:00:30 UTC
HOUR_MS = 3_600_000


def plain_symbols() -> list[FakeSymbol]:
    """Valid names only, so stderr holds nothing but the error line."""
    out = []
    for name, vol, hours in [("BTC", 9e9, 500), ("ETH", 5e9, 500), ("SHIB", 1e9, 500), ("NEW", 5e8, 20)]:
        out.append(FakeSymbol(f"{name}USDT", name, quote_volume=vol, listed_hours=hours))
    out.append(FakeSymbol("BTCUSDT", "BTC", market="perp", quote_volume=2e10, listed_hours=500))
    out.append(FakeSymbol("1000SHIBUSDT", "1000SHIB", market="perp", quote_volume=1e9, listed_hours=500))
    return out


def cli(server: FakeBinance, *args: str) -> int:
    return run_cli(main, [*args, "--spot-url", server.url, "--futures-url", server.url,
                          "--timeout", "0.5", "--workers", "4"])


def store_content(root: Path) -> dict[str, pd.DataFrame]:
    """Every parquet file of a store, read back (the thing two runs must agree on)."""
    return {str(p.relative_to(root)): pq.read_table(p).to_pandas() for p in sorted(root.rglob("*.parquet"))}


def assert_same_store(a: Path, b: Path) -> None:
    ca, cb = store_content(a), store_content(b)
    assert sorted(ca) == sorted(cb)
    for name in ca:
        pd.testing.assert_frame_equal(ca[name], cb[name], obj=name)


@pytest.fixture
def server():
    with FakeBinance(plain_symbols(), now_ms=NOW) as srv:
        yield srv


def test_backfill_writes_every_kind(server, tmp_path, capsys):
    assert cli(server, "backfill", "--store", str(tmp_path), "--market", "both", "--hours", "300") == 0
    store = Store(tmp_path)
    assert store.symbols("spot") == ["BTCUSDT", "ETHUSDT", "NEWUSDT", "SHIBUSDT"]
    assert store.symbols("perp") == ["1000SHIBUSDT", "BTCUSDT"]
    k = store.klines("BTCUSDT", "spot")
    assert len(k) == 300 and k.index[-1] == pd.Timestamp("2024-03-01 11:00", tz="UTC")
    assert len(store.klines("NEWUSDT", "spot")) == 20  # listed 20 h ago
    assert len(store.book("BTCUSDT", "perp")) == 1
    f = store.funding("BTCUSDT")
    assert f.index[-1] == pd.Timestamp("2024-03-01 16:00", tz="UTC")  # live estimate for next settlement
    assert len(f) == 300 // 8 + 1 + 1
    out = capsys.readouterr().out
    assert "spot: 4 symbols" in out and "perp: 2 symbols" in out and "requests" in out


def test_backfill_top_and_symbols(server, tmp_path):
    assert cli(server, "backfill", "--store", str(tmp_path / "a"), "--top", "2", "--hours", "10") == 0
    assert Store(tmp_path / "a").symbols("spot") == ["BTCUSDT", "ETHUSDT"]
    # a spot name maps onto its perp twin (1000SHIB)
    assert cli(server, "backfill", "--store", str(tmp_path / "b"), "--market", "perp",
               "--symbols", "shibusdt", "--hours", "10") == 0
    assert Store(tmp_path / "b").symbols("perp") == ["1000SHIBUSDT"]


def test_backfill_is_resumable(server, tmp_path):
    assert cli(server, "backfill", "--store", str(tmp_path), "--hours", "100") == 0
    first = store_content(tmp_path)
    n = server.count("/api/v3/klines")
    assert cli(server, "backfill", "--store", str(tmp_path), "--hours", "100") == 0
    # up-to-date symbols need no kline request; only NEWUSDT asks for hours before its listing
    assert server.count("/api/v3/klines") - n == 1
    assert store_content(tmp_path).keys() == first.keys()
    # extend the horizon: only the older hours are fetched, and nothing is lost
    assert cli(server, "backfill", "--store", str(tmp_path), "--hours", "200") == 0
    k = Store(tmp_path).klines("BTCUSDT", "spot")
    assert len(k) == 200 and k.index.is_unique


def test_faulty_server_gives_identical_store(tmp_path):
    with FakeBinance(plain_symbols(), now_ms=NOW) as clean:
        assert cli(clean, "backfill", "--store", str(tmp_path / "clean"), "--market", "both",
                   "--hours", "1200") == 0
    with FakeBinance(plain_symbols(), now_ms=NOW, slow_seconds=0.7) as faulty:
        faulty.fault_every = 3  # every 3rd data request: 500, malformed, drop, 429, 502, slow
        assert cli(faulty, "backfill", "--store", str(tmp_path / "faulty"), "--market", "both",
                   "--hours", "1200", "--retries", "8") == 0
        assert set(faulty.faults_served) == set(faulty.fault_cycle)
    assert_same_store(tmp_path / "clean", tmp_path / "faulty")


def test_interrupted_backfill_completes_to_the_same_store(tmp_path):
    with FakeBinance(plain_symbols(), now_ms=NOW) as srv:
        assert cli(srv, "backfill", "--store", str(tmp_path / "ref"), "--hours", "100") == 0
        srv.add_fault("418", endpoint="klines", symbol="ETHUSDT")
        assert cli(srv, "backfill", "--store", str(tmp_path / "run"), "--hours", "100", "--workers", "1") == 2
    with FakeBinance(plain_symbols(), now_ms=NOW) as srv:  # a new day, ban over
        assert cli(srv, "backfill", "--store", str(tmp_path / "run"), "--hours", "100") == 0
    assert_same_store(tmp_path / "ref", tmp_path / "run")


def test_collect_once_appends_the_closed_hour(tmp_path):
    with FakeBinance(plain_symbols(), now_ms=NOW) as srv:
        assert cli(srv, "backfill", "--store", str(tmp_path), "--market", "both", "--hours", "50") == 0
    with FakeBinance(plain_symbols(), now_ms=NOW + HOUR_MS) as srv:  # one hour later
        assert cli(srv, "collect", "--store", str(tmp_path), "--once", "--market", "both") == 0
        assert srv.count("/api/v3/exchangeInfo") == 0  # universe = what the store holds
    store = Store(tmp_path)
    k = store.klines("BTCUSDT", "spot")
    assert k.index[-1] == pd.Timestamp("2024-03-01 12:00", tz="UTC") and len(k) == 51
    b = store.book("1000SHIBUSDT", "perp")
    assert list(b.index) == [pd.Timestamp("2024-03-01 12:00", tz="UTC"), pd.Timestamp("2024-03-01 13:00", tz="UTC")]


def test_info_on_store_and_sample(server, tmp_path, capsys):
    assert cli(server, "backfill", "--store", str(tmp_path), "--market", "perp", "--hours", "30") == 0
    capsys.readouterr()
    assert run_cli(main, ["info", "--store", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "perp: 2 symbols" in out and "funding: 2/2 symbols" in out and "book: 2/2" in out
    assert run_cli(main, ["info"]) == 0
    assert "spot: 30 symbols" in capsys.readouterr().out


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_bad_input_is_one_line(server, tmp_path, capsys):
    store = str(tmp_path / "s")
    assert cli(server, "backfill", "--store", store, "--symbols", "NOPEUSDT") == 2
    assert "unknown symbol" in _one_error_line(capsys)
    assert cli(server, "backfill", "--store", store, "--symbols", "bad/name") == 2
    assert "invalid symbol" in _one_error_line(capsys)
    assert cli(server, "backfill", "--store", store, "--min-quote-volume", "1e15") == 2
    assert "empty result" in _one_error_line(capsys)
    assert run_cli(main, ["backfill", "--store", store, "--spot-url", "ftp//x"]) == 2
    assert "bad spot URL" in _one_error_line(capsys)
    assert run_cli(main, ["backfill", "--store", store, "--spot-url", "http://127.0.0.1:9",
                          "--retries", "0"]) == 2
    assert "cannot reach" in _one_error_line(capsys)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cli(server, "backfill", "--store", str(blocker / "sub")) == 2
    assert "cannot write" in _one_error_line(capsys)
    assert run_cli(main, ["info", "--store", str(tmp_path / "missing")]) == 2
    assert "store not found" in _one_error_line(capsys)


def test_bad_input_leaves_stored_data_alone(server, tmp_path, capsys):
    assert cli(server, "backfill", "--store", str(tmp_path), "--hours", "20") == 0
    before = store_content(tmp_path)
    assert cli(server, "backfill", "--store", str(tmp_path), "--symbols", "NOPEUSDT") == 2
    assert run_cli(main, ["backfill", "--store", str(tmp_path), "--spot-url", "http://127.0.0.1:9",
                          "--retries", "0"]) == 2
    after = store_content(tmp_path)
    assert before.keys() == after.keys()
    for name in before:
        pd.testing.assert_frame_equal(before[name], after[name])


def test_subprocess_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "gnn_market.data", "backfill", "--store", str(tmp_path),
                           "--spot-url", "http://127.0.0.1:9", "--retries", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [line for line in proc.stderr.strip().splitlines()
                                                if line.startswith("error: ")]
    proc = subprocess.run([sys.executable, "-m", "gnn_market.data", "backfill"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "--store" in proc.stderr


class _StopLoop(Exception):
    """Ends the endless collect loop from inside its wait."""


def test_collect_loop_survives_an_outage_and_stops_on_a_ban(tmp_path, monkeypatch, caplog):
    import gnn_market.data as data_cli

    with FakeBinance(plain_symbols(), now_ms=NOW) as srv:
        assert cli(srv, "backfill", "--store", str(tmp_path), "--hours", "50") == 0
    waits: list[float] = []

    def fake_wait(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            raise _StopLoop

    monkeypatch.setattr(data_cli, "_wait", fake_wait)
    with FakeBinance(plain_symbols(), now_ms=NOW + HOUR_MS) as srv:
        srv.add_fault("500", endpoint="/time")  # the first cycle's first request fails, no retries left
        with pytest.raises(_StopLoop):
            cli(srv, "collect", "--store", str(tmp_path), "--retries", "0")
    assert "collect cycle failed" in caplog.text
    assert len(waits) == 2 and all(0 < w <= 3600 + 15 for w in waits)
    k = Store(tmp_path).klines("BTCUSDT", "spot")
    assert k.index[-1] == pd.Timestamp("2024-03-01 12:00", tz="UTC")  # the second cycle caught up

    waits.clear()
    before = store_content(tmp_path)
    with FakeBinance(plain_symbols(), now_ms=NOW + 2 * HOUR_MS) as srv:
        srv.add_fault("418", endpoint="klines")
        assert cli(srv, "collect", "--store", str(tmp_path), "--retries", "0", "--workers", "1") == 2
    assert waits == []  # a ban ends the job at once
    after = store_content(tmp_path)
    for name, frame in before.items():  # nothing stored was lost
        assert len(after[name]) >= len(frame)
