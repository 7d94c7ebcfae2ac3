"""Store: schema, idempotent upserts, crash safety, gaps, bad input."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

import gnn_market.store_health as store_health
from gnn_market.errors import DataError, StoreError
from gnn_market.store import Store, find_gaps


def candles(start: str, hours: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, hours)))
    idx = pd.date_range(start, periods=hours, freq="h", tz="UTC", name="open_time")
    return pd.DataFrame({"open": close, "high": close * 1.01, "low": close * 0.99, "close": close,
                         "volume": rng.uniform(1, 10, hours), "trades": np.arange(hours)}, index=idx)


def kfile(root, symbol: str = "BTCUSDT", month: str = "2024-01", market: str = "spot", kind: str = "klines"):
    """The month file of ``symbol`` (its folders created, for tests that put a file there by hand)."""
    path = Store(root).month_file(kind, symbol, month, market)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_round_trip_schema(tmp_path):
    store = Store(tmp_path / "s")
    df = candles("2024-01-01", 48)
    assert store.write_klines("BTCUSDT", df) == 48
    got = store.klines("BTCUSDT")
    assert str(got.index.tz) == "UTC" and got.index.name == "open_time"
    np.testing.assert_array_equal(got["close"].to_numpy(), df["close"].to_numpy())
    assert got["trades"].dtype == "Int64" and got["trades"].iloc[5] == 5
    assert got["quote_volume"].isna().all()  # unknown stays explicit
    assert store.symbols("spot") == ["BTCUSDT"] and store.markets() == ["spot"]


def test_upsert_is_idempotent_and_overlapping_writes_merge(tmp_path):
    store = Store(tmp_path)
    df = candles("2024-01-01", 100)
    store.write_klines("ETHUSDT", df.iloc[:60])
    assert store.write_klines("ETHUSDT", df.iloc[40:]) == 40
    assert store.write_klines("ETHUSDT", df) == 0
    got = store.klines("ETHUSDT")
    assert len(got) == 100 and got.index.is_unique and got.index.is_monotonic_increasing
    np.testing.assert_allclose(got["close"].to_numpy(), df["close"].to_numpy())


def test_upsert_replaces_values_of_existing_rows(tmp_path):
    store = Store(tmp_path)
    df = candles("2024-01-01", 10)
    store.write_klines("ETHUSDT", df)
    fixed = df.iloc[[3]].copy()
    fixed["close"] = fixed["low"]  # a corrected value that still satisfies low <= close <= high
    assert store.write_klines("ETHUSDT", fixed) == 0
    assert store.klines("ETHUSDT")["close"].iloc[3] == fixed["low"].iloc[0]
    assert len(store.klines("ETHUSDT")) == 10


def test_gaps_are_kept_and_reported(tmp_path):
    store = Store(tmp_path)
    df = candles("2024-01-01", 50).drop(index=pd.date_range("2024-01-01 10:00", periods=3, freq="h", tz="UTC"))
    store.write_klines("SOLUSDT", df)
    gaps = store.gaps("SOLUSDT")
    assert len(gaps) == 1 and gaps["hours"].iloc[0] == 3
    assert gaps["start"].iloc[0] == pd.Timestamp("2024-01-01 10:00", tz="UTC")
    assert gaps["end"].iloc[0] == pd.Timestamp("2024-01-01 12:00", tz="UTC")
    assert len(store.klines("SOLUSDT")) == 47  # nothing filled
    assert find_gaps(pd.DatetimeIndex([], tz="UTC")).empty


def test_funding_and_book_round_trip(tmp_path):
    store = Store(tmp_path)
    ft = pd.date_range("2024-01-01", periods=3, freq="8h", tz="UTC")
    store.write_funding("BTCUSDT", pd.DataFrame({"funding_rate": [1e-4, -2e-4, 3e-4]}, index=ft))
    assert store.funding("BTCUSDT")["funding_rate"].tolist() == [1e-4, -2e-4, 3e-4]
    assert store.funding("ETHUSDT").empty  # none stored: empty frame, not an error
    book = pd.DataFrame({"best_bid": [99.0], "best_ask": [101.0], "bid_qty": [5.0], "ask_qty": [0.0]},
                        index=pd.DatetimeIndex(["2024-01-01 01:00"], tz="UTC"))
    store.write_book("BTCUSDT", book, market="perp")
    got = store.book("BTCUSDT", market="perp")
    assert got["best_ask"].iloc[0] == 101.0 and np.isnan(got["spread"].iloc[0])


@pytest.mark.parametrize("symbol", ["btcusdt", "币安USDT", "../etc", "A", ""])
def test_invalid_symbols_are_refused(tmp_path, symbol):
    with pytest.raises(DataError):
        Store(tmp_path).write_klines(symbol, candles("2024-01-01", 2))


def test_bad_frames_are_refused_without_touching_stored_data(tmp_path):
    store = Store(tmp_path)
    store.write_klines("BTCUSDT", candles("2024-01-01", 5))
    bad = candles("2024-01-02", 2).drop(columns="close")
    with pytest.raises(DataError, match="close"):
        store.write_klines("BTCUSDT", bad)
    off_hour = candles("2024-01-02", 2)
    off_hour.index = off_hour.index + pd.Timedelta(minutes=30)
    with pytest.raises(DataError, match="not on the hour"):
        store.write_klines("BTCUSDT", off_hour)
    assert len(store.klines("BTCUSDT")) == 5


def test_missing_store_and_symbol_are_clear_errors(tmp_path):
    with pytest.raises(StoreError, match="not found"):
        Store(tmp_path / "nope").symbols()
    store = Store(tmp_path)
    store.write_klines("BTCUSDT", candles("2024-01-01", 2))
    with pytest.raises(StoreError, match="no klines for XRPUSDT"):
        store.klines("XRPUSDT")
    with pytest.raises(StoreError, match="no klines for XRPUSDT"):  # the threaded read says the same
        store.read_many("klines", ["BTCUSDT", "XRPUSDT"], "spot")
    assert store.read_many("funding", ["BTCUSDT", "XRPUSDT"], "spot")["XRPUSDT"].empty


def test_corrupt_file_is_reported_and_never_overwritten(tmp_path):
    store = Store(tmp_path)
    store.write_klines("BTCUSDT", candles("2024-01-01", 5))
    path = kfile(tmp_path, "BTCUSDT")
    path.write_bytes(b"not a parquet file")
    with pytest.raises(StoreError, match="corrupt"):
        store.klines("BTCUSDT")
    with pytest.raises(StoreError, match="corrupt"):
        store.write_klines("BTCUSDT", candles("2024-01-02", 5))
    assert path.read_bytes() == b"not a parquet file"


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    store = Store(tmp_path)
    store.write_klines("BTCUSDT", candles("2024-01-01", 5))
    import gnn_market.store as store_module

    def explode(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_module.pq, "write_table", explode)
    with pytest.raises(StoreError, match="No space left"):
        store.write_klines("BTCUSDT", candles("2024-01-01", 10))
    monkeypatch.undo()
    assert len(store.klines("BTCUSDT")) == 5
    assert not list(tmp_path.rglob(".*.tmp"))


def test_stale_temp_file_is_ignored_then_cleaned(tmp_path):
    store = Store(tmp_path)
    store.write_klines("BTCUSDT", candles("2024-01-01", 5))
    stale = kfile(tmp_path).parent / ".data.parquet.abc.tmp"
    stale.write_bytes(b"half a file")
    assert store.symbols() == ["BTCUSDT"] and len(store.klines("BTCUSDT")) == 5
    store.write_klines("BTCUSDT", candles("2024-01-01", 6))
    assert not stale.exists()


def test_process_killed_mid_write_leaves_a_readable_store(tmp_path):
    """SIGKILL a writer in a loop of large rewrites (23 years: 274 month files each); the store must stay
    readable, each month file whole (the old or the new one), and completable."""
    script = textwrap.dedent(f"""
        import numpy as np, pandas as pd, sys
        sys.path.insert(0, {os.getcwd()!r})
        from gnn_market.store import Store
        store = Store({str(tmp_path)!r})
        hours = 200_000
        idx = pd.date_range("2000-01-01", periods=hours, freq="h", tz="UTC")
        close = np.linspace(1, 2, hours)
        df = pd.DataFrame({{"open": close, "high": close, "low": close, "close": close, "volume": close}}, index=idx)
        store.write_klines("BTCUSDT", df.iloc[:1000])
        print("ready", flush=True)
        k = 0
        while True:
            k += 1
            store.write_klines("BTCUSDT", df.assign(volume=df["volume"] + k))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    import time  # noqa: PLC0415

    time.sleep(1.5)  # let it get into the middle of a rewrite
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = Store(tmp_path)
    got = store.klines("BTCUSDT")  # readable: every month file complete
    hours = pd.date_range("2000-01-01", periods=200_000, freq="h", tz="UTC")
    first = hours[:1000]
    months = got.index.strftime("%Y-%m")
    for month, rows in got.groupby(months):  # each month file is one write's, whole: the first or a full one
        full = hours[hours.strftime("%Y-%m") == month]
        assert rows.index.equals(full) or rows.index.equals(first[first.strftime("%Y-%m") == month]), month
        assert (rows["volume"] - rows["close"]).round(9).nunique() == 1, f"{month} mixes two writes"
    assert set(first.strftime("%Y-%m")) <= set(months)  # nothing of the first write lost
    close = np.linspace(1, 2, 200_000)
    full = pd.DataFrame({"open": close, "high": close, "low": close, "close": close, "volume": close}, index=hours)
    store.write_klines("BTCUSDT", full)  # the next run completes normally
    assert len(store.klines("BTCUSDT")) == 200_000


def test_fast_reader_equals_pyarrow_to_pandas_for_every_kind(tmp_path):
    """The store's own-schema fast path gives exactly what pyarrow's pandas conversion gives."""
    import pyarrow.parquet as pq

    from gnn_market.store import _frame_from_own_table
    from gnn_market.store_schema import BOOK, FUNDING, KLINES
    from gnn_market.synthetic import SyntheticConfig, write_synthetic_store

    config = SyntheticConfig(n_symbols=4, hours=72, seed=1, n_sectors=1, leaders_per_sector=1)
    store = write_synthetic_store(tmp_path / "syn", config)
    klines = store.klines(store.symbols("spot")[0]).copy()
    klines.loc[klines.index[5], "trades"] = pd.NA  # a nullable integer gap
    klines.loc[klines.index[6], "quote_volume"] = np.nan
    store.write_klines("GAPUSDT", klines)
    readers = {"klines": lambda sym, market: store.klines(sym, market),
               "book": lambda sym, market: store.book(sym, market),
               "funding": lambda sym, market: store.funding(sym)}
    seen = set()
    for path in sorted(store.root.rglob("*.parquet")):
        kind, market, symbol, month = path.relative_to(store.root).parts[:4]
        market, symbol, month = (part.split("=")[1] for part in (market, symbol, month))
        seen.add(kind)
        kind_spec = {"klines": KLINES, "book": BOOK, "funding": FUNDING}[kind]
        assert _frame_from_own_table(pq.read_table(path), kind_spec) is not None  # the fast path is taken
        whole = readers[kind](symbol, market)
        in_month = whole[whole.index.strftime("%Y-%m") == month]
        pd.testing.assert_frame_equal(in_month, pq.read_table(path).to_pandas())
    assert seen == {"klines", "funding", "book"}
    gap = store.klines("GAPUSDT")
    assert gap["trades"].isna().sum() == 1 and np.isnan(gap["quote_volume"].iloc[6])


def test_foreign_column_order_is_read_through_the_general_path(tmp_path):
    store = Store(tmp_path)
    store.write_klines("BTCUSDT", candles("2024-01-01", 5))
    path = kfile(tmp_path)
    shuffled = pd.read_parquet(path)[["close", "open", "high", "low", "volume"]]
    shuffled.to_parquet(path)
    got = store.klines("BTCUSDT")
    assert list(got.columns)[:5] == ["open", "high", "low", "close", "volume"]
    pd.testing.assert_series_equal(got["close"], shuffled["close"], check_names=False)


def test_direct_arrow_writer_equals_pyarrow_from_pandas(tmp_path):
    """Files stay exactly what ``Table.from_pandas`` would write, metadata included."""
    import pyarrow as pa

    from gnn_market.store import _table_from_frame
    from gnn_market.store_schema import BOOK, FUNDING, KLINES
    from gnn_market.synthetic import SyntheticConfig, write_synthetic_store

    config = SyntheticConfig(n_symbols=4, hours=72, seed=2, n_sectors=1, leaders_per_sector=1)
    store = write_synthetic_store(tmp_path / "syn", config)
    klines = store.klines(store.symbols("perp")[0], "perp").copy()
    klines.loc[klines.index[2], "trades"] = pd.NA
    klines.loc[klines.index[3], "taker_buy_volume"] = np.nan
    frames = [(KLINES, klines), (BOOK, store.book(store.book_symbols("perp")[0], "perp")),
              (FUNDING, store.funding(store.funding_symbols()[0]))]
    for kind, frame in frames:
        expected = pa.Table.from_pandas(frame.rename_axis(kind.index), preserve_index=True)
        got = _table_from_frame(frame, kind)
        assert got.schema.equals(expected.schema, check_metadata=True), kind.name
        assert got.equals(expected), kind.name


def test_stored_range_reads_bounds_of_each_kind(tmp_path):
    store = Store(tmp_path)
    k = candles("2024-01-01", 30)
    store.write_klines("BTCUSDT", k.iloc[::-1])  # written out of order: bounds are min/max, not first/last row
    assert store.stored_range("BTCUSDT") == (k.index[0], k.index[-1])
    assert store.stored_range("ETHUSDT") is None
    funding = pd.DataFrame({"funding_rate": [1e-4, -2e-4]},
                           index=pd.DatetimeIndex(["2024-01-01 08:00", "2024-01-01 16:00"], tz="UTC",
                                                  name="funding_time"))
    store.write_funding("BTCUSDT", funding)
    assert store.stored_range("BTCUSDT", kind="funding") == (funding.index[0], funding.index[-1])
    with pytest.raises(DataError, match="unknown kind"):
        store.stored_range("BTCUSDT", kind="trades")
    kfile(tmp_path).write_bytes(b"garbage")
    with pytest.raises(StoreError, match="corrupt"):
        store.stored_range("BTCUSDT")


def test_stored_range_comes_from_the_footer_and_falls_back_to_the_column(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    import gnn_market.store as store_module

    store = Store(tmp_path)
    k = candles("2024-01-01", 30)
    store.write_klines("BTCUSDT", k.iloc[::-1])
    expected = (k.index[0], k.index[-1])
    column_reads = []
    real = store_module.time_column
    monkeypatch.setattr(store_module, "time_column", lambda *a: column_reads.append(a) or real(*a))
    assert store.stored_range("BTCUSDT") == expected and column_reads == []  # the footer's statistics answered
    table = pq.read_table(kfile(tmp_path))
    pq.write_table(table, kfile(tmp_path), row_group_size=7)  # several row groups: min/max over all of them
    assert store.stored_range("BTCUSDT") == expected and column_reads == []
    pq.write_table(table, kfile(tmp_path), write_statistics=False)  # another writer, no statistics
    assert store.stored_range("BTCUSDT") == expected and len(column_reads) == 2  # first and last edge


def test_parse_utc_reads_user_times():
    from gnn_market.timeutil import parse_utc

    assert parse_utc(None) is None
    assert parse_utc("2023-09-01T05:00") == pd.Timestamp("2023-09-01 05:00", tz="UTC")  # naive = UTC
    assert parse_utc("2023-09-01T07:00+02:00") == pd.Timestamp("2023-09-01 05:00", tz="UTC")
    with pytest.raises(DataError, match="--start: cannot parse 'yesterday-ish'"):
        parse_utc("yesterday-ish", "--start")
    with pytest.raises(DataError, match="not a time"):
        parse_utc("NaT", "--end")


# ------------------------------------------------------------------ issue 11: foreign or corrupt files
def _foreign(tmp_path, frame: pd.DataFrame, symbol: str = "BTCUSDT") -> Store:
    """A store holding ``frame`` as another tool would write it: plain pandas Parquet, no checks."""
    store = Store(tmp_path)
    store.write_klines("OKUSDT", candles("2024-01-01", 3))
    frame.to_parquet(kfile(tmp_path, symbol))
    return store


def test_one_write_with_repeated_timestamps_keeps_the_later_row(tmp_path):
    """The documented rule the REST client and the archive importer rely on."""
    store = Store(tmp_path)
    df = candles("2024-01-01", 4)
    again = df.iloc[[1]].assign(close=df["low"].iloc[1], volume=123.0)
    assert store.write_klines("BTCUSDT", pd.concat([df, again])) == 4
    got = store.klines("BTCUSDT")
    assert len(got) == 4 and got["volume"].iloc[1] == 123.0 and got.index.is_unique
    import gnn_market.store as store_module  # the rule is stated where users read it

    assert "collapse to the **later** row" in store_module.__doc__


def test_duplicated_timestamps_in_a_stored_file_are_refused_never_kept(tmp_path):
    df = candles("2024-01-01", 5)
    store = _foreign(tmp_path, pd.concat([df, df.iloc[[2]]]))
    path = kfile(tmp_path, "BTCUSDT")
    raw = path.read_bytes()
    with pytest.raises(StoreError, match=r"BTCUSDT/month=2024-01/data.parquet: 1 duplicated timestamp\(s\) \(first 2024-01-01 02:00"):
        store.klines("BTCUSDT")
    with pytest.raises(StoreError, match="duplicated"):  # an upsert does not carry the duplicates on
        store.write_klines("BTCUSDT", candles("2024-01-02", 2))
    assert path.read_bytes() == raw  # never overwritten
    assert [r.line() for r in store.check()] == \
        ["klines/spot BTCUSDT: 1 duplicated timestamp(s) (first 2024-01-01 02:00:00)"]


@pytest.mark.parametrize("damage, rule", [
    (lambda d: d.set_axis(d.index + pd.Timedelta(minutes=17)), "not on the hour"),
    (lambda d: d.assign(high=d["low"] * 0.5), "high < low"),
    (lambda d: d.assign(close=1e300, high=1e300), r"price > 1e\+09"),
    (lambda d: d.assign(open=-1.0), "price <= 0"),
    (lambda d: d.assign(close=np.nan), "missing or non-finite price"),
    (lambda d: d.assign(volume=-2.0), "volume < 0"),
], ids=["off-hour", "high<low", "1e300", "negative", "nan-close", "negative-volume"])
def test_invalid_values_in_a_stored_file_are_refused_on_read_and_on_write(tmp_path, damage, rule):
    bad = damage(candles("2024-01-01", 5))
    store = _foreign(tmp_path, bad)
    with pytest.raises(StoreError, match=f"invalid store file .*symbol=BTCUSDT/month=2024-01/data.parquet: .*{rule}"):
        store.klines("BTCUSDT")
    with pytest.raises(DataError, match=rule):  # the same rules guard every write
        Store(tmp_path / "fresh").write_klines("BTCUSDT", bad)
    assert not (tmp_path / "fresh").exists()
    summary = store.summary().set_index("symbol")
    assert re.search(rule, summary.loc["BTCUSDT", "problems"]) and summary.loc["OKUSDT", "problems"] == ""


def test_ohlc_rule_tolerates_float_round_trips_only():
    from gnn_market.store_schema import KLINES, OHLC_TOLERANCE, row_faults

    df = candles("2024-01-01", 3).assign(open=100.0, close=100.0, low=100.0)
    df["high"] = 100.0 * (1 - OHLC_TOLERANCE / 10)  # a last-digit difference: accepted
    from gnn_market.store_schema import _normalise

    assert row_faults(_normalise(df, KLINES, check=False), KLINES) == {}
    df["high"] = 99.99
    assert "high < max(open, close)" in row_faults(_normalise(df, KLINES, check=False), KLINES)


def test_real_binance_data_passes_the_rules():
    from gnn_market.sample import sample_store

    assert sample_store().check() == []  # the three-year set: tests/test_csv_import.py imports it


def test_funding_and_book_rules(tmp_path):
    store = Store(tmp_path)
    t = pd.DatetimeIndex(["2024-01-01 08:00", "2024-01-01 16:00"], tz="UTC")
    with pytest.raises(DataError, match="funding_rate"):
        store.write_funding("BTCUSDT", pd.DataFrame({"funding_rate": [1e-4, 5.0]}, index=t))
    store.write_funding("BTCUSDT", pd.DataFrame({"funding_rate": [1e-4, np.nan]}, index=t))  # NaN = unknown
    with pytest.raises(DataError, match="best_ask"):
        store.write_book("BTCUSDT", pd.DataFrame({"best_bid": [1.0], "best_ask": [np.inf], "bid_qty": [1.0],
                                                  "ask_qty": [1.0]}, index=t[:1]))
    with pytest.raises(DataError, match="ask_qty < 0"):
        store.write_book("BTCUSDT", pd.DataFrame({"best_bid": [1.0], "best_ask": [2.0], "bid_qty": [1.0],
                                                  "ask_qty": [-1.0]}, index=t[:1]))


def test_repair_is_explicit_backs_up_and_keeps_the_later_duplicate(tmp_path):
    df = candles("2024-01-01", 6)
    dup = df.iloc[[3]].assign(volume=77.0)
    bad = pd.concat([df.iloc[:2], df.iloc[2:3].assign(high=0.1), df.iloc[3:], dup])
    store = _foreign(tmp_path, bad)
    path = kfile(tmp_path, "BTCUSDT")
    raw = path.read_bytes()
    dry = store.repair(dry_run=True)
    assert [(r.symbol, r.rows_before, r.rows_after, r.backup) for r in dry] == [("BTCUSDT", 7, 5, None)]
    assert path.read_bytes() == raw
    done = store.repair()
    assert done[0].backup is not None and done[0].backup.read_bytes() == raw
    got = store.klines("BTCUSDT")
    assert len(got) == 5 and got["volume"].iloc[2] == 77.0  # 02:00 dropped (high < low); 03:00 = the later row
    assert store.repair() == [] and store.symbols() == ["BTCUSDT", "OKUSDT"]
    path.write_bytes(b"garbage")
    report = store.repair()
    assert not report[0].repairable and path.read_bytes() == b"garbage"  # unreadable: left alone


def test_format_version_of_new_old_and_future_stores(tmp_path):
    import json

    store = Store(tmp_path)
    store.write_klines("BTCUSDT", candles("2024-01-01", 2))
    assert store.format_version() == 3 and store.book_time() == "capture"
    assert json.loads((tmp_path / "STORE.json").read_text()) == {
        "format": "cryptograph-store", "version": 3, "book_time": "capture"}
    (tmp_path / "STORE.json").unlink()
    assert store.format_version() == 3  # month files without a marker: not the old layout
    (tmp_path / "STORE.json").write_text(json.dumps({"format": "cryptograph-store", "version": 9}))
    with pytest.raises(StoreError, match="newer"):
        store.format_version()


def test_duplicate_hours_inside_one_write_keep_the_later_row(tmp_path):
    store = Store(tmp_path / "s")
    df = candles("2024-01-01", 3)
    dup = df.iloc[[1]].copy()
    dup["volume"] = 12345.0
    store.write_klines("BTCUSDT", pd.concat([df, dup]))   # hour 1 twice: the second (later) row wins
    got = store.klines("BTCUSDT")
    assert len(got) == 3 and got.index.is_unique
    assert got["volume"].iloc[1] == 12345.0 and got["volume"].iloc[0] == df["volume"].iloc[0]


# ------------------------------------------------------------------ issue 21: repair, links, markers, rules
def _backups(root) -> list:
    """Every file under the store's repair-backup folder."""
    return sorted(p for p in (root / "repair-backup").rglob("*") if p.is_file()) \
        if (root / "repair-backup").exists() else []


def test_a_second_repair_waits_and_never_backs_up_the_repaired_file(tmp_path, monkeypatch):
    """Issue 21 item 1: a repair started while another runs found the file bad, then backed up its
    repaired version (over the original's backup when both ran in the same second)."""
    import threading


    df = candles("2024-01-01", 8)
    store = _foreign(tmp_path, pd.concat([df, df.iloc[[3]]]))
    original = (kfile(tmp_path, "BTCUSDT")).read_bytes()
    release, first_copy = threading.Event(), threading.Event()
    real_copy = shutil.copy2

    def slow_copy(src, dst, **kwargs):  # the first run pauses in its backup, the file lock held
        if not first_copy.is_set():
            first_copy.set()
            assert release.wait(10)
        return real_copy(src, dst, **kwargs)

    monkeypatch.setattr(store_health.shutil, "copy2", slow_copy)
    results: dict[str, list] = {}
    first = threading.Thread(target=lambda: results.setdefault("first", Store(tmp_path).repair()))
    first.start()
    assert first_copy.wait(10)
    second = threading.Thread(target=lambda: results.setdefault("second", Store(tmp_path).repair()))
    second.start()
    second.join(0.5)  # the second run is now waiting for a lock
    release.set()
    first.join(30)
    second.join(30)
    assert [r.rows_after for r in results["first"]] == [8]
    assert results["second"] == []  # it found nothing left to repair
    backups = _backups(tmp_path)
    assert len(backups) == 1 and backups[0].read_bytes() == original
    assert len(store.klines("BTCUSDT")) == 8


def test_each_repair_gets_its_own_backup_folder(tmp_path):
    df = candles("2024-01-01", 4)
    path = kfile(tmp_path, "BTCUSDT")
    store = _foreign(tmp_path, pd.concat([df, df.iloc[[1]]]))
    first_raw = path.read_bytes()
    store.repair()
    pd.concat([df, df.iloc[[2]], df.iloc[[2]]]).to_parquet(path)  # damaged again within the same second
    second_raw = path.read_bytes()
    store.repair()
    folders = sorted((tmp_path / "repair-backup").iterdir())
    assert len(folders) == 2 and all(re.fullmatch(r"\d{8}T\d{6}Z-\d+-[0-9a-f]{8}", f.name) for f in folders)
    assert sorted(p.read_bytes() for p in _backups(tmp_path)) == sorted([first_raw, second_raw])


@pytest.mark.parametrize("unit, factor", [("s", 10 ** 9), ("ms", 10 ** 6), ("us", 10 ** 3), ("ns", 1)])
def test_integer_times_of_a_foreign_file_are_read_by_magnitude(tmp_path, unit, factor):
    """Issue 21 item 2: int64 milliseconds were read as nanoseconds (1970) and repair emptied the file."""
    df = candles("2024-01-01", 700)  # inside January: one month file
    frame = pd.concat([df, df.iloc[[5]]])  # 701 rows, one duplicate
    frame.index = pd.Index(frame.index.as_unit("ns").asi8 // factor, name="open_time")
    store = _foreign(tmp_path, frame)
    assert [r.problems for r in store.check()] == [["1 duplicated timestamp(s) (first 2024-01-01 05:00:00)"]]
    report = store.repair()
    assert [(r.rows_before, r.rows_after) for r in report] == [(701, 700)]
    got = store.klines("BTCUSDT")
    assert list(got.index) == list(df.index)
    np.testing.assert_allclose(got["close"].to_numpy(), df["close"].to_numpy())


def test_integer_times_in_no_unit_are_refused_not_emptied(tmp_path):
    frame = candles("2024-01-01", 3)
    frame.index = pd.Index([5, 6, 7], name="open_time")
    store = _foreign(tmp_path, frame)
    path = kfile(tmp_path, "BTCUSDT")
    raw = path.read_bytes()
    with pytest.raises(StoreError, match="integer time 5 is in 2010-01-01 .. tomorrow neither as epoch seconds"):
        store.klines("BTCUSDT")
    assert [r.repairable for r in store.repair()] == [False] and path.read_bytes() == raw


def _full_disk_copy(src, dst, **kwargs):
    open(dst, "wb").close()  # a copy that got as far as creating the file
    raise OSError(28, "No space left on device")


def test_repair_on_a_full_disk_leaves_no_backup_and_says_the_truth(tmp_path, monkeypatch):
    """Issue 21 item 2: a failed backup left a 0-byte file behind a "nothing was changed" message."""

    df = candles("2024-01-01", 4)
    store = _foreign(tmp_path, pd.concat([df, df.iloc[[1]]]))
    path = kfile(tmp_path, "BTCUSDT")
    raw = path.read_bytes()
    monkeypatch.setattr(store_health.shutil, "copy2", _full_disk_copy)
    with pytest.raises(StoreError, match="cannot back up .*symbol=BTCUSDT/month=2024-01/data.parquet.*No space left on device; that file "
                                         "was not changed and no partial backup was left; no file was repaired"):
        store.repair()
    assert path.read_bytes() == raw and _backups(tmp_path) == []
    assert list((tmp_path / "repair-backup").iterdir()) == []  # no empty run folder either


def test_repair_failing_on_a_second_file_names_the_first(tmp_path, monkeypatch):

    df = candles("2024-01-01", 4)
    store = _foreign(tmp_path, pd.concat([df, df.iloc[[1]]]), symbol="AAAUSDT")
    pd.concat([df, df.iloc[[2]]]).to_parquet(kfile(tmp_path, "BBBUSDT"))
    bbb = (kfile(tmp_path, "BBBUSDT")).read_bytes()
    real_copy = shutil.copy2
    monkeypatch.setattr(store_health.shutil, "copy2",
                        lambda s, d, **k: _full_disk_copy(s, d) if "BBB" in str(s) else real_copy(s, d, **k))
    with pytest.raises(StoreError, match=r"symbol=BBBUSDT/month=2024-01/data.parquet.*not changed.*already repaired in this run: "
                                         r"klines/spot/AAAUSDT \(original in .*symbol=AAAUSDT/month=2024-01/data.parquet\)"):
        store.repair()
    assert len(store.klines("AAAUSDT")) == 4
    assert (kfile(tmp_path, "BBBUSDT")).read_bytes() == bbb
    assert [p.relative_to(p.parents[3]).as_posix() for p in _backups(tmp_path)] == [
        "market=spot/symbol=AAAUSDT/month=2024-01/data.parquet"]


def test_a_symlinked_store_file_is_written_through(tmp_path):
    """Issue 21 item 6: a write replaced the link by a plain file; readers of the target saw nothing."""
    store = Store(tmp_path / "s")
    elsewhere = tmp_path / "shared" / "BTCUSDT.parquet"
    Store(tmp_path / "other").write_klines("BTCUSDT", candles("2024-01-01", 3))
    elsewhere.parent.mkdir()
    shutil.move(kfile(tmp_path / "other"), elsewhere)
    store.write_klines("ETHUSDT", candles("2024-01-01", 2))
    link = kfile(tmp_path / "s")
    link.symlink_to(elsewhere)
    assert store.write_klines("BTCUSDT", candles("2024-01-01", 5)) == 2
    assert link.is_symlink() and os.readlink(link) == str(elsewhere)
    assert len(pd.read_parquet(elsewhere)) == 5 and len(store.klines("BTCUSDT")) == 5
    assert not list(elsewhere.parent.glob(".*.tmp")) and not list(link.parent.glob(".*.tmp"))
    df = candles("2024-01-01", 5)
    pd.concat([df, df.iloc[[0]]]).to_parquet(elsewhere)  # damaged: repair also writes through the link
    assert [r.rows_after for r in store.repair()] == [5]
    assert link.is_symlink() and len(pd.read_parquet(elsewhere)) == 5


MARKERS = {
    "version-99": '{"format": "cryptograph-store", "version": 99}',
    "garbage": "not json at all {",
    "empty": "",
    "list": "[2]",
    "no-format": '{"version": 2}',
    "version-0": '{"format": "cryptograph-store", "version": 0}',
    "version-text": '{"format": "cryptograph-store", "version": "2"}',
    "directory": None,
}


def write_marker(root, name: str) -> None:
    """Replace ``root``'s STORE.json by the damaged marker ``MARKERS[name]`` (None: a folder)."""
    marker = root / "STORE.json"
    marker.unlink()
    if MARKERS[name] is None:
        marker.mkdir()
    else:
        marker.write_text(MARKERS[name])


@pytest.mark.parametrize("name", list(MARKERS))
def test_writers_refuse_a_store_whose_marker_readers_refuse(tmp_path, name):
    """Issue 21 item 9: a store of format 99 (or a damaged marker) was written to."""
    store = Store(tmp_path)
    store.write_klines("BTCUSDT", candles("2024-01-01", 3))
    path = kfile(tmp_path, "BTCUSDT")
    pd.concat([candles("2024-01-01", 3), candles("2024-01-01", 1)]).to_parquet(path)  # repairable
    raw = path.read_bytes()
    write_marker(tmp_path, name)
    with pytest.raises(StoreError, match="newer than this cryptograph|store marker"):
        store.format_version()  # what readers do
    with pytest.raises(StoreError, match="newer than this cryptograph|store marker"):
        store.write_klines("ETHUSDT", candles("2024-01-01", 3))
    with pytest.raises(StoreError, match="newer than this cryptograph|store marker"):
        store.write_funding("BTCUSDT", pd.DataFrame({"funding_rate": [1e-4]},
                                                    index=pd.DatetimeIndex(["2024-01-01"], tz="UTC")))
    with pytest.raises(StoreError, match="newer than this cryptograph|store marker"):
        store.repair()
    assert list(tmp_path.rglob("data.parquet")) == [path] and path.read_bytes() == raw
    assert not (tmp_path / "funding").exists() and not (tmp_path / "repair-backup").exists()


RULE_BREAKERS = {
    "volume-1e300": (lambda d: d.assign(volume=1e300), r"volume x close > 1e\+12 USDT"),
    "quote-volume-1e300": (lambda d: d.assign(quote_volume=1e300), r"quote_volume > 1e\+12 USDT"),
    "taker-above-volume": (lambda d: d.assign(taker_buy_volume=d["volume"] * 1.01), "taker_buy_volume > volume"),
    "taker-quote-above": (lambda d: d.assign(quote_volume=10.0, taker_buy_quote_volume=11.0),
                          "taker_buy_quote_volume > quote_volume"),
    "open-1e-300": (lambda d: d.assign(open=1e-300, low=1e-300), r"price < 1e-10"),
    "low-1e-300": (lambda d: d.assign(low=1e-300), r"price < 1e-10"),
    "trades-1e12": (lambda d: d.assign(trades=10 ** 12), r"trades > 1e\+09"),
}


@pytest.mark.parametrize("name", list(RULE_BREAKERS))
def test_implausible_values_are_refused_on_write_and_on_read(tmp_path, name):
    """Issue 21 item 11: a volume of 1e300 changed a prediction; taker volume above volume, prices of
    1e-300 were accepted."""
    damage, rule = RULE_BREAKERS[name]
    bad = damage(candles("2024-01-01", 5))
    with pytest.raises(DataError, match=rule):
        Store(tmp_path / "fresh").write_klines("BTCUSDT", bad)
    assert not (tmp_path / "fresh").exists()
    store = _foreign(tmp_path / "foreign", bad)
    with pytest.raises(StoreError, match=f"invalid store file .*symbol=BTCUSDT/month=2024-01/data.parquet: .*{rule}"):
        store.klines("BTCUSDT")
    assert [r.rows_after for r in store.repair()] == [0]  # every row broke it: dropped, original kept


@pytest.mark.parametrize("trades", [1.5, 2.0000001, 1e300])
def test_fractional_trade_counts_are_refused_never_rounded(tmp_path, trades):
    bad = candles("2024-01-01", 3).astype({"trades": "float64"})
    bad.loc[bad.index[1], "trades"] = trades
    with pytest.raises(DataError, match=r"column 'trades' holds 1 non-integer value\(s\) .*at 2024-01-01 01:00"):
        Store(tmp_path / "fresh").write_klines("BTCUSDT", bad)
    store = _foreign(tmp_path / "foreign", bad)
    with pytest.raises(StoreError, match="corrupt store file .*trades"):
        store.klines("BTCUSDT")


def test_volume_rules_keep_their_slack_for_float_round_trips(tmp_path):
    from gnn_market.store_schema import MAX_NOTIONAL, MIN_PRICE, TAKER_TOLERANCE

    ok = candles("2024-01-01", 3).assign(taker_buy_volume=lambda d: d["volume"] * (1 + TAKER_TOLERANCE / 10),
                                         quote_volume=MAX_NOTIONAL, trades=[0, 1, 10 ** 9])
    ok.loc[ok.index[0], ["open", "low", "close"]] = MIN_PRICE
    ok.loc[ok.index[0], ["high", "volume", "taker_buy_volume"]] = [MIN_PRICE * 2, np.nan, np.nan]
    assert Store(tmp_path).write_klines("BTCUSDT", ok) == 3  # the bounds themselves are accepted


def test_an_empty_write_creates_no_symbol(tmp_path):
    store = Store(tmp_path)
    assert store.write_klines("BTCUSDT", candles("2024-01-01", 0)) == 0
    assert not tmp_path.exists() or store.symbols() == []


def test_a_volume_whose_value_overflows_is_one_clean_error(tmp_path):
    import warnings

    bad = candles("2024-01-01", 3).assign(volume=1e307, close=1e5, high=1e5 * 1.01)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning on stderr beside the error line
        with pytest.raises(DataError, match=r"volume x close > 1e\+12 USDT"):
            Store(tmp_path).write_klines("BTCUSDT", bad)


@pytest.mark.parametrize("unit,factor", [("s", 10 ** 9), ("ms", 10 ** 6), ("us", 10 ** 3)])
def test_integer_time_windows_end_at_2010_on_both_sides(tmp_path, unit, factor):
    """The first accepted integer time of each unit is 2010-01-01; one unit earlier is refused
    (a time in 1970-2009 in one unit must not be read as another unit or as itself)."""
    from gnn_market.store_schema import MIN_TIME_MS, epoch_index

    first = MIN_TIME_MS * 10 ** 6 // factor      # 2010-01-01 in this unit
    index = epoch_index(np.array([first], dtype=np.int64), "open_time")
    assert index[0] == pd.Timestamp("2010-01-01", tz="UTC")
    with pytest.raises((StoreError, DataError), match="2010-01-01 .. tomorrow"):
        epoch_index(np.array([first - 1], dtype=np.int64), "open_time")
    with pytest.raises((StoreError, DataError), match="2010-01-01 .. tomorrow"):
        epoch_index(np.array([first // 1000 - 1], dtype=np.int64), "open_time")   # 1970 here, pre-2010 a unit up


# ------------------------------------------------------------------ issue 24: one file per month
def test_an_hourly_upsert_rewrites_only_the_current_month_file(tmp_path):
    store = Store(tmp_path)
    store.write_klines("BTCUSDT", candles("2024-01-01", 24 * 75))  # January .. mid-March
    files = sorted(tmp_path.rglob("data.parquet"))
    assert [p.parent.name for p in files] == ["month=2024-01", "month=2024-02", "month=2024-03"]
    before = {p: (p.stat().st_ino, p.read_bytes()) for p in files}
    last = store.klines("BTCUSDT").index[-1]
    hour = candles("2024-01-01", 24 * 75 + 1).iloc[[-1]]
    assert hour.index[0] == last + pd.Timedelta(hours=1)
    assert store.write_klines("BTCUSDT", hour) == 1
    after = {p: (p.stat().st_ino, p.read_bytes()) for p in files}
    assert after[files[0]] == before[files[0]] and after[files[1]] == before[files[1]]  # not even rewritten
    assert after[files[2]] != before[files[2]]
    assert store.stored_range("BTCUSDT") == (pd.Timestamp("2024-01-01", tz="UTC"), hour.index[0])


def test_a_row_outside_its_month_file_is_refused_then_repaired(tmp_path):
    store = Store(tmp_path)
    store.write_klines("BTCUSDT", candles("2024-01-30", 72))  # Jan 30 .. Feb 1
    january = kfile(tmp_path)
    stray = pd.concat([pd.read_parquet(january), candles("2024-03-05", 1)])  # another tool put a March row here
    stray.to_parquet(january)
    with pytest.raises(StoreError, match=r"month=2024-01/data.parquet: 1 row\(s\) outside month 2024-01 "
                                         r"\(first at 2024-03-05 00:00:00\)"):
        store.klines("BTCUSDT")
    assert [(r.month, r.rows_before, r.rows_after) for r in store.repair()] == [(2024 * 12, 49, 48)]
    assert len(store.klines("BTCUSDT")) == 72 and store.check() == []
