"""Store: schema, idempotent upserts, crash safety, gaps, bad input."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from gnn_market.errors import DataError, StoreError
from gnn_market.store import Store, find_gaps


def candles(start: str, hours: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, hours)))
    idx = pd.date_range(start, periods=hours, freq="h", tz="UTC", name="open_time")
    return pd.DataFrame({"open": close, "high": close * 1.01, "low": close * 0.99, "close": close,
                         "volume": rng.uniform(1, 10, hours), "trades": np.arange(hours)}, index=idx)


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


def test_corrupt_file_is_reported_and_never_overwritten(tmp_path):
    store = Store(tmp_path)
    store.write_klines("BTCUSDT", candles("2024-01-01", 5))
    path = tmp_path / "klines" / "spot" / "BTCUSDT.parquet"
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
    assert not list((tmp_path / "klines" / "spot").glob(".*.tmp"))


def test_stale_temp_file_is_ignored_then_cleaned(tmp_path):
    store = Store(tmp_path)
    store.write_klines("BTCUSDT", candles("2024-01-01", 5))
    stale = tmp_path / "klines" / "spot" / ".BTCUSDT.parquet.abc.tmp"
    stale.write_bytes(b"half a file")
    assert store.symbols() == ["BTCUSDT"] and len(store.klines("BTCUSDT")) == 5
    store.write_klines("BTCUSDT", candles("2024-01-01", 6))
    assert not stale.exists()


def test_process_killed_mid_write_leaves_a_readable_store(tmp_path):
    """SIGKILL a writer in a loop of large rewrites; the store must stay readable and completable."""
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
    got = store.klines("BTCUSDT")
    assert len(got) in (1000, 200_000)
    store.write_klines("BTCUSDT", got.iloc[:10])  # the next run completes normally
    assert len(store.klines("BTCUSDT")) == len(got)


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
        kind = path.relative_to(store.root).parts[0]
        market = path.parent.name if kind != "funding" else None
        seen.add(kind)
        kind_spec = {"klines": KLINES, "book": BOOK, "funding": FUNDING}[kind]
        assert _frame_from_own_table(pq.read_table(path), kind_spec) is not None  # the fast path is taken
        pd.testing.assert_frame_equal(readers[kind](path.stem, market), pq.read_table(path).to_pandas())
    assert seen == {"klines", "funding", "book"}
    gap = store.klines("GAPUSDT")
    assert gap["trades"].isna().sum() == 1 and np.isnan(gap["quote_volume"].iloc[6])


def test_foreign_column_order_is_read_through_the_general_path(tmp_path):
    store = Store(tmp_path)
    store.write_klines("BTCUSDT", candles("2024-01-01", 5))
    path = next(tmp_path.rglob("BTCUSDT.parquet"))
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
    next(tmp_path.rglob("klines/spot/BTCUSDT.parquet")).write_bytes(b"garbage")
    with pytest.raises(StoreError, match="corrupt"):
        store.stored_range("BTCUSDT")


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
    frame.to_parquet(tmp_path / "klines" / "spot" / f"{symbol}.parquet")
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
    path = tmp_path / "klines" / "spot" / "BTCUSDT.parquet"
    raw = path.read_bytes()
    with pytest.raises(StoreError, match=r"BTCUSDT.parquet: 1 duplicated timestamp\(s\) \(first 2024-01-01 02:00"):
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
    with pytest.raises(StoreError, match=f"invalid store file .*BTCUSDT.parquet: .*{rule}"):
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
    path = tmp_path / "klines" / "spot" / "BTCUSDT.parquet"
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
    assert store.format_version() == 2
    (tmp_path / "STORE.json").unlink()
    assert store.format_version() == 1
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
