"""The data CLI against the fake server: backfill, resumability, faults, collect, info, bad input."""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from gnn_market.cli import run_cli
from gnn_market.data import main
from gnn_market.errors import DataError, StoreError
from gnn_market.store import Store

from fake_binance import FakeBinance, FakeSymbol

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
    """Same files and rows. Spot book snapshots are stamped with their receive time (spot depth carries
    none), which differs between runs by milliseconds: for them the latest snapshot's values and hour
    are compared. (Every backfill run takes one snapshot per symbol it completes, so a symbol finished
    before an interruption legitimately holds one snapshot more after the resumed run; whether a
    symbol finished before the interruption depends on timing.)"""
    ca, cb = store_content(a), store_content(b)
    assert sorted(ca) == sorted(cb)
    for name in ca:
        fa, fb = ca[name], cb[name]
        if name.startswith("book/market=spot"):
            fa, fb = fa.iloc[-1:], fb.iloc[-1:]
            assert (fa.index.floor("h") == fb.index.floor("h")).all(), name
            fa, fb = fa.reset_index(drop=True), fb.reset_index(drop=True)
        pd.testing.assert_frame_equal(fa, fb, obj=name)


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
    b = store.book("1000SHIBUSDT", "perp")  # true capture times (the server's event time), not floored
    assert list(b.index) == [pd.Timestamp("2024-03-01 12:00:30", tz="UTC"),
                             pd.Timestamp("2024-03-01 13:00:30", tz="UTC")]


def test_collect_with_symbols_works_on_exactly_those_even_on_a_stored_store(tmp_path):
    with FakeBinance(plain_symbols(), now_ms=NOW) as srv:
        assert cli(srv, "backfill", "--store", str(tmp_path), "--symbols", "BTCUSDT,ETHUSDT", "--hours", "50") == 0
    before = Store(tmp_path).klines("ETHUSDT", "spot")
    with FakeBinance(plain_symbols(), now_ms=NOW + HOUR_MS) as srv:
        assert cli(srv, "collect", "--store", str(tmp_path), "--once", "--symbols", "BTCUSDT,SHIBUSDT",
                   "--hours", "5") == 0
    store = Store(tmp_path)
    assert store.symbols("spot") == ["BTCUSDT", "ETHUSDT", "SHIBUSDT"]
    assert store.klines("BTCUSDT", "spot").index[-1] == pd.Timestamp("2024-03-01 12:00", tz="UTC")
    assert len(store.klines("SHIBUSDT", "spot")) == 5  # new to the store: --hours of history
    pd.testing.assert_frame_equal(store.klines("ETHUSDT", "spot"), before)  # not asked for: untouched
    with FakeBinance(plain_symbols(), now_ms=NOW + HOUR_MS) as srv:  # unknown: refused, nothing written
        assert cli(srv, "collect", "--store", str(tmp_path), "--once", "--symbols", "NOPEUSDT") == 2
    assert Store(tmp_path).symbols("spot") == ["BTCUSDT", "ETHUSDT", "SHIBUSDT"]


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


def _stop_after(monkeypatch, cycles: int) -> list[float]:
    """Replace the collect loop's wait: record each wait, end the loop at the ``cycles``-th; returns the record."""
    import gnn_market.data as data_cli

    waits: list[float] = []

    def fake_wait(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == cycles:
            raise _StopLoop

    monkeypatch.setattr(data_cli, "_wait", fake_wait)
    return waits


def test_collect_loop_survives_an_outage_and_stops_on_a_ban(tmp_path, monkeypatch, caplog):
    with FakeBinance(plain_symbols(), now_ms=NOW) as srv:
        assert cli(srv, "backfill", "--store", str(tmp_path), "--hours", "50") == 0
    waits = _stop_after(monkeypatch, 3)
    with FakeBinance(plain_symbols(), now_ms=NOW + HOUR_MS) as srv:  # 13:00:30, a clock that stands still
        srv.add_fault("500", endpoint="/time")  # the first cycle's first request fails, no retries left
        with pytest.raises(_StopLoop):
            cli(srv, "collect", "--store", str(tmp_path), "--retries", "0")
    assert "collect cycle failed" in caplog.text
    # to 30 s before the next hour (book pass), to 15 s after it (candle pass), and again
    assert waits == [pytest.approx(3540), pytest.approx(3585), pytest.approx(3540)]
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


def test_collect_loop_takes_the_book_before_the_close_for_the_closing_hours_row(tmp_path, monkeypatch):
    """The loop's book pass runs --book-lead s before the hour; the panel's row for that hour then uses it."""
    import gnn_market.data as data_cli
    from gnn_market.panel import load_panel

    with FakeBinance(plain_symbols(), now_ms=NOW) as srv:
        assert cli(srv, "backfill", "--store", str(tmp_path), "--market", "both", "--hours", "30") == 0
    before_close = NOW + HOUR_MS - 30_000 - 15_000  # 12:59:45: inside the 30 s lead of 13:00
    waits: list[float] = []
    with FakeBinance(plain_symbols(), now_ms=before_close) as srv:

        def fake_wait(seconds: float) -> None:
            waits.append(seconds)
            if len(waits) == 2:
                srv.now_ms_fixed = NOW + HOUR_MS - 30_000 + 15_000  # 13:00:15: the candle pass
            if len(waits) == 3:
                raise _StopLoop

        monkeypatch.setattr(data_cli, "_wait", fake_wait)
        with pytest.raises(_StopLoop):
            cli(srv, "collect", "--store", str(tmp_path), "--market", "both")
    close = pd.Timestamp("2024-03-01 13:00", tz="UTC")
    assert waits[:2] == [0.0, pytest.approx(30.0)]
    store = Store(tmp_path)
    for market in ("spot", "perp"):
        for sym in store.symbols(market):
            snaps = store.book(sym, market).index
            assert len(snaps) == 2 and close - pd.Timedelta(seconds=20) < snaps[-1] <= close  # before the close
        panel = load_panel(store, market)
        assert panel.times[-1] == pd.Timestamp("2024-03-01 12:00", tz="UTC")  # the candle closing at 13:00
        assert panel.has_book[-1].all() and not panel.has_book[:-1].any()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-3", "soon"])
def test_timeout_must_be_finite_and_positive(server, tmp_path, capsys, value):
    store = tmp_path / "s"
    assert run_cli(main, ["backfill", "--store", str(store), "--spot-url", server.url,
                          "--futures-url", server.url, f"--timeout={value}"]) == 2
    line = _one_error_line(capsys)
    assert "--timeout" in line and value in line
    assert server.count() == 0 and not store.exists()  # refused before any request or folder


def test_collect_hours_zero_is_refused_before_any_work(server, tmp_path, capsys):
    assert cli(server, "collect", "--store", str(tmp_path / "s"), "--once", "--hours", "0") == 2
    assert "--hours must be >= 1" in _one_error_line(capsys)
    assert server.count() == 0 and not (tmp_path / "s").exists()
    assert cli(server, "backfill", "--store", str(tmp_path / "s"), "--hours", "-5") == 2
    assert "--hours must be >= 1" in _one_error_line(capsys)
    assert cli(server, "collect", "--store", str(tmp_path / "s"), "--book-lead", "600") == 2
    assert "--book-lead" in _one_error_line(capsys)
    assert server.count() == 0 and not (tmp_path / "s").exists()


def test_a_store_path_that_is_a_file_is_named_as_such(server, tmp_path, capsys):
    blocker = tmp_path / "file.parquet"
    blocker.write_bytes(b"x")
    for argv in (["info", "--store", str(blocker)], ["repair", "--store", str(blocker)],
                 ["import-vision", str(tmp_path), "--store", str(blocker)]):
        assert run_cli(main, argv) == 2
        assert "is a file, not a folder" in _one_error_line(capsys)
    assert cli(server, "backfill", "--store", str(blocker), "--hours", "5") == 2
    assert "is a file, not a folder" in _one_error_line(capsys)
    assert blocker.read_bytes() == b"x"


def test_failed_backfill_leaves_no_store_folder(server, tmp_path, capsys):
    store = tmp_path / "new"
    assert cli(server, "backfill", "--store", str(store), "--symbols", "NOPEUSDT") == 2
    assert "unknown symbol" in _one_error_line(capsys)
    assert not store.exists()


def test_argument_errors_are_one_line_too(capsys):
    assert run_cli(main, ["backfill"]) == 2
    line = _one_error_line(capsys)
    assert "--store" in line and "required" in line
    assert run_cli(main, ["import-vision", "x", "--store", "s", "--max-member-mb", "nan"]) == 2
    assert "--max-member-mb" in _one_error_line(capsys)
    assert run_cli(main, ["frobnicate"]) == 2
    assert "invalid choice" in _one_error_line(capsys)


def _write_foreign(path: Path, frame: pd.DataFrame) -> None:
    """What another tool might leave in the store: a plain pandas Parquet file, no checks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path)


def test_info_reports_bad_files_per_symbol_and_repair_fixes_them_explicitly(tmp_path, capsys):
    idx = pd.date_range("2024-01-01", periods=6, freq="h", tz="UTC", name="open_time")
    good = pd.DataFrame({"open": 10.0, "high": 11.0, "low": 9.0, "close": 10.5, "volume": 1.0}, index=idx)
    store = Store(tmp_path)
    store.write_klines("OKUSDT", good)
    spot = tmp_path / "klines" / "market=spot"

    def jan(symbol: str) -> Path:  # the symbol's one month file
        return store.month_file("klines", symbol, "2024-01")

    _write_foreign(jan("DUPUSDT"), pd.concat([good, good.iloc[[2]].assign(close=10.7)]))
    off = good.copy()
    off.index = idx[:5].append(pd.DatetimeIndex([idx[5] + pd.Timedelta(minutes=30)])).rename("open_time")
    _write_foreign(jan("OFFUSDT"), off)
    _write_foreign(jan("HILOUSDT"), good.assign(high=[11.0, 8.0, 11, 11, 11, 11]))
    _write_foreign(jan("HUGEUSDT"), good.assign(close=[10.5, 1e300, 10.5, 10.5, 10.5, 10.5]))
    before = {str(p.relative_to(spot)): p.read_bytes() for p in spot.rglob("data.parquet")}

    assert run_cli(main, ["info", "--store", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "problems: 4;" in out and "(format 3)" in out
    assert "klines/spot DUPUSDT: 1 duplicated timestamp(s) (first 2024-01-01 02:00:00)" in out
    assert "OFFUSDT: 1 row(s) with open_time not on the hour (first at 2024-01-01 05:30:00)" in out
    assert "HILOUSDT: 1 row(s) with high < low" in out and "HUGEUSDT: 1 row(s) with price > 1e+09" in out
    for sym in ("DUPUSDT", "OFFUSDT", "HILOUSDT", "HUGEUSDT"):  # reading refuses, naming file and problem
        with pytest.raises(StoreError, match=f"invalid store file .*symbol={sym}/month=2024-01/data.parquet"):
            store.klines(sym)
        with pytest.raises(StoreError, match="invalid store file"):  # and an upsert never keeps the problem
            store.write_klines(sym, good.iloc[[0]])
    assert {str(p.relative_to(spot)): p.read_bytes() for p in spot.rglob("data.parquet")} == before  # nothing changed silently

    listing = sorted(p.name for p in tmp_path.rglob("*"))
    assert run_cli(main, ["repair", "--store", str(tmp_path), "--dry-run"]) == 0
    assert "would drop 1 of 7 rows" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.rglob("*")) == listing  # a dry run creates nothing, not even a lock
    assert {str(p.relative_to(spot)): p.read_bytes() for p in spot.rglob("data.parquet")} == before
    assert run_cli(main, ["repair", "--store", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("dropped 1 of") == 4 and "original kept in" in out
    assert store.klines("DUPUSDT").loc[idx[2], "close"] == 10.7  # the later row in the file wins
    assert len(store.klines("OFFUSDT")) == 5 and len(store.klines("HILOUSDT")) == 5
    assert store.check() == []
    backups = sorted(p.parent.parent.name for p in (tmp_path / "repair-backup").rglob("*.parquet"))
    assert backups == ["symbol=DUPUSDT", "symbol=HILOUSDT", "symbol=HUGEUSDT", "symbol=OFFUSDT"]
    assert store.symbols("spot") == ["DUPUSDT", "HILOUSDT", "HUGEUSDT", "OFFUSDT", "OKUSDT"]  # backups not listed
    assert run_cli(main, ["info", "--store", str(tmp_path)]) == 0
    assert "problems: none" in capsys.readouterr().out
    (tmp_path / "STORE.json").write_text('{"format": "cryptograph-store", "version": 9}')
    assert run_cli(main, ["info", "--store", str(tmp_path)]) == 2  # a newer layout is not guessed at
    assert "newer than this cryptograph" in _one_error_line(capsys)


def test_collect_skips_a_symbol_whose_file_is_bad_and_goes_on(tmp_path, capsys):
    with FakeBinance(plain_symbols(), now_ms=NOW) as srv:
        assert cli(srv, "backfill", "--store", str(tmp_path), "--hours", "30") == 0
    path = Store(tmp_path).month_file("klines", "ETHUSDT", "2024-03")  # 00:00 .. 11:00, where collect appends
    frame = pd.read_parquet(path)
    pd.concat([frame, frame.iloc[[3]]]).to_parquet(path)  # a duplicated hour, written by another tool
    raw = path.read_bytes()
    capsys.readouterr()
    with FakeBinance(plain_symbols(), now_ms=NOW + HOUR_MS) as srv:
        assert cli(srv, "collect", "--store", str(tmp_path), "--once") == 0
    out = capsys.readouterr().out
    assert "skipped ETHUSDT: invalid store file" in out and "duplicated timestamp" in out
    assert path.read_bytes() == raw  # refused, not rewritten
    assert Store(tmp_path).klines("BTCUSDT").index[-1] == pd.Timestamp("2024-03-01 12:00", tz="UTC")


# ------------------------------------------------------------------ issue 21
@pytest.mark.parametrize("marker", ['{"format": "cryptograph-store", "version": 99}', "garbage", "", "[2]", None],
                         ids=["version-99", "garbage", "empty", "list", "directory"])
def test_writing_commands_refuse_a_store_marker_readers_refuse(tmp_path, capsys, marker):
    """Issue 21 item 9: import-csv wrote 350 rows into a store of format 99."""
    store = tmp_path / "store"
    Store(store).write_klines("BTCUSDT", pd.DataFrame(
        {"open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0], "volume": [1.0]},
        index=pd.DatetimeIndex([pd.Timestamp("2024-01-01", tz="UTC")], name="open_time")))
    (store / "STORE.json").unlink()
    if marker is None:
        (store / "STORE.json").mkdir()
    else:
        (store / "STORE.json").write_text(marker)
    src = tmp_path / "src"
    src.mkdir()
    rows = ["open_time,open,high,low,close,volume"] + [f"{1704067200000 + i * 3_600_000},1,2,1,1.5,3"
                                                       for i in range(5)]
    (src / "ETHUSDT.csv").write_text("\n".join(rows) + "\n")
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    for argv in (["import-csv", str(src)], ["import-vision", str(src / "ETHUSDT.csv"), "--market", "spot"],
                 ["repair"]):
        assert run_cli(main, [*argv, "--store", str(store)]) == 2, argv
        line = _one_error_line(capsys)
        assert "STORE.json" in line or "newer than this cryptograph" in line, line
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before


def test_info_does_not_call_an_empty_symbol_ok(tmp_path, capsys):
    """Issue 21 item 11: a header-only import left an empty symbol that `info` reported "ok yes"."""
    store = Store(tmp_path)
    idx = pd.DatetimeIndex([pd.Timestamp("2024-01-01", tz="UTC")], name="open_time")
    store.write_klines("BTCUSDT", pd.DataFrame({"open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0],
                                                "volume": [1.0]}, index=idx))
    empty = store.month_file("klines", "EMPTYUSDT", "2024-01")
    empty.parent.mkdir(parents=True)
    store.klines("BTCUSDT").iloc[:0].to_parquet(empty)
    assert run_cli(main, ["info", "--store", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[1]: line.split()[-1] for line in out.splitlines() if line.startswith("  spot ")}
    assert rows == {"BTCUSDT": "yes", "EMPTYUSDT": "NO"}, out
    assert "empty: 1 kline file(s) hold no candle" in out and "  klines/spot EMPTYUSDT" in out


# --------------------------------------------------------------------------- issue 21 (checkpoint_cli area)
@pytest.mark.parametrize("command", ["backfill", "collect"])
def test_repeated_symbols_are_refused_while_parsing_before_any_request(server, tmp_path, capsys, command):
    """Issue 21 item 16: ``--symbols BTCUSDT,btcusdt`` was refused only after fetching the universe."""
    store = tmp_path / "s"
    once = ["--once"] if command == "collect" else []
    assert cli(server, command, "--store", str(store), "--symbols", "BTCUSDT,btcusdt", *once) == 2
    assert _one_error_line(capsys) == "error: --symbols lists BTCUSDT more than once; give each symbol once"
    assert server.count() == 0 and not store.exists()


def _error_records(caplog, what: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "ERROR" and r.getMessage().startswith(what)]


def test_collect_loop_says_each_failed_cycle_with_its_retry_time_and_count(tmp_path, monkeypatch, caplog):
    """Issue 21 item 17: one ERROR line, then silence; now every failed pass says what failed, when it is
    tried again (UTC, the server's clock) and how many failed in a row, and the recovery is logged."""
    caplog.set_level(logging.INFO, logger="gnn_market.data")
    with FakeBinance(plain_symbols(), now_ms=NOW) as srv:
        assert cli(srv, "backfill", "--store", str(tmp_path), "--hours", "50") == 0
    _stop_after(monkeypatch, 5)
    with FakeBinance(plain_symbols(), now_ms=NOW + HOUR_MS) as srv:  # 13:00:30, a clock that stands still
        srv.add_fault("500", endpoint="klines", times=8)  # the 4 symbols' candles fail in two cycles, then work
        with pytest.raises(_StopLoop):
            cli(srv, "collect", "--store", str(tmp_path), "--retries", "0", "--workers", "1")
    failed = _error_records(caplog, "collect cycle failed")
    assert len(failed) == 2, failed
    for n, line in enumerate(failed, start=1):
        assert line.startswith(f"collect cycle failed ({n} in a row, a network outage or server error): "
                               f"nothing downloaded: spot klines "), line
        assert "HTTP 500" in line and line.endswith("; next try at 2024-03-01 14:00:15 UTC"), line
    assert "collect cycle works again after 2 failed in a row" in caplog.text
    assert Store(tmp_path).klines("BTCUSDT", "spot").index[-1] == pd.Timestamp("2024-03-01 12:00", tz="UTC")


def test_collect_loop_rides_out_an_unreachable_api_from_its_first_cycle(tmp_path, monkeypatch, caplog):
    """The README's live form with the API unreachable (connection refused): an outage, retried and said."""
    _stop_after(monkeypatch, 3)
    store = tmp_path / "data"
    with pytest.raises(_StopLoop):
        run_cli(main, ["collect", "--store", str(store), "--spot-url", "http://127.0.0.1:9",
                       "--futures-url", "http://127.0.0.1:9", "--retries", "0"])
    failed = _error_records(caplog, "collect cycle failed")
    assert [line[:len("collect cycle failed (1 in a row")] for line in failed] == \
        ["collect cycle failed (1 in a row", "collect cycle failed (2 in a row"]
    assert all("cannot reach http://127.0.0.1:9 (connection error)" in line for line in failed)
    assert len(_error_records(caplog, "book pass failed (1 in a row")) == 1
    assert not store.exists()


@pytest.mark.parametrize("case, words", [
    ("unknown symbol", "unknown symbol(s) NOPEUSDT"),
    ("not a Binance host", "HTTP 404"),
    ("no symbol left", "empty result: no symbols match"),
    ("unwritable store", "is a file, not a folder"),
])
def test_collect_loop_stops_with_one_line_when_its_first_cycle_fails_on_configuration(
        server, tmp_path, monkeypatch, capsys, case, words):
    """Issue 21 item 17: a configuration error in the first cycle used to be logged and retried forever."""
    waits = _stop_after(monkeypatch, 1)  # the job went on: stop it, the assertions below fail
    store = tmp_path / "data"
    url = server.url
    extra: list[str] = []
    if case == "unknown symbol":
        extra = ["--symbols", "NOPEUSDT"]
    elif case == "not a Binance host":
        url = f"{server.url}/not-binance"
    elif case == "no symbol left":
        extra = ["--min-quote-volume", "1e15"]
    else:
        (tmp_path / "file").write_text("x")
        store = tmp_path / "file" / "data"
    try:
        code = run_cli(main, ["collect", "--store", str(store), "--spot-url", url, "--futures-url", url,
                              "--retries", "0", *extra])
    except _StopLoop:
        code = None
    assert code == 2 and waits == []
    assert words in _one_error_line(capsys)
    assert not store.exists()


def test_after_a_working_cycle_only_a_ban_or_the_store_stops_the_collect_loop():
    """The classification: before the first working cycle, an error that is not an outage stops the job."""
    from gnn_market.data import stops_collect
    from gnn_market.errors import BannedError, BinanceError, OutageError, UnknownSymbolError

    for error, at_start, later in [(OutageError("timeout"), False, False), (BinanceError("HTTP 404"), True, False),
                                   (UnknownSymbolError("NOPEUSDT"), True, False), (DataError("empty"), True, False),
                                   (BannedError("418"), True, True), (StoreError("read-only"), True, True)]:
        assert stops_collect(error, worked_before=False) is at_start, error
        assert stops_collect(error, worked_before=True) is later, error
