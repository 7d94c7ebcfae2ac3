"""The store's read cache (gnn_market/store_cache.py): fewer file opens, never different rows.

Every read path must return exactly what the month files alone give (``Store(..., read_cache=False)``),
whatever happened to the month files or to the cache file. Stores here are small (4 months per symbol);
``RACY_NS`` is 0 unless a test is about it, so a file written a moment ago may be cached.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import gnn_market.store_cache as store_cache
from gnn_market.errors import BadStoreFile
from gnn_market.panel import load_panel
from gnn_market.store import Store
from gnn_market.store_schema import KLINES

HOURS = 24 * 100  # 2024-01-01 .. 2024-04-09: three closed months and a current one
CLOSED = ["2024-01", "2024-02", "2024-03"]
ALL = CLOSED + ["2024-04"]  # the cache also keeps the newest month, used while its file is unchanged


@pytest.fixture(autouse=True)
def no_racy_window(monkeypatch):
    monkeypatch.setattr(store_cache, "RACY_NS", 0)
    monkeypatch.delenv(store_cache.ENV_VAR, raising=False)


def klines(start: str, hours: int, seed: int = 0, scale: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx = pd.date_range(start, periods=hours, freq="h", tz="UTC", name="open_time").as_unit("ns")
    close = scale * 10 * np.exp(np.cumsum(rng.normal(0, 0.01, hours)))
    volume = rng.uniform(1, 100, hours)
    return pd.DataFrame({"open": close, "high": close * 1.01, "low": close * 0.99, "close": close,
                         "volume": volume, "quote_volume": volume * close,
                         "trades": pd.array(rng.integers(1, 10_000, hours), dtype="Int64"),
                         "taker_buy_volume": volume / 2, "taker_buy_quote_volume": volume * close / 2}, index=idx)


def book(start: str, hours: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed + 100)
    idx = (pd.date_range(start, periods=hours, freq="h", tz="UTC") + pd.Timedelta(minutes=59, seconds=30))
    price = 10 + rng.uniform(0, 1, hours)
    return pd.DataFrame({"best_bid": price, "best_ask": price * 1.001, "best_bid_qty": 1.0, "best_ask_qty": 2.0,
                         "bid_qty": 5.0, "ask_qty": 6.0, "bid_notional": price * 5, "ask_notional": price * 6,
                         "spread": price * 0.001, "levels": np.full(hours, 20, dtype="int64")},
                        index=idx.rename("snapshot_time"))


def funding(start: str, hours: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed + 200)
    idx = pd.date_range(start, periods=hours // 8, freq="8h", tz="UTC", name="funding_time")
    return pd.DataFrame({"funding_rate": rng.normal(0, 1e-4, len(idx)), "mark_price": 10.0}, index=idx)


@pytest.fixture
def root(tmp_path) -> Path:
    """Two symbols in each market, every kind, 100 days from 2024-01-01."""
    store = Store(tmp_path / "store", read_cache=False)
    for i, symbol in enumerate(["BTCUSDT", "ETHUSDT"]):
        for market in ("spot", "perp"):
            store.write_klines(symbol, klines("2024-01-01", HOURS, seed=i), market)
            store.write_book(symbol, book("2024-01-01", HOURS, seed=i), market)
        store.write_funding(symbol, funding("2024-01-01", HOURS, seed=i))
    return store.root


def every_read(store: Store) -> dict[str, object]:
    """What each read path gives: frames by kind, market and symbol, ranged reads, read_many, load_panel."""
    out: dict[str, object] = {}
    for market in ("spot", "perp"):
        for symbol in store.symbols(market):
            out[f"klines/{market}/{symbol}"] = store.klines(symbol, market)
            out[f"book/{market}/{symbol}"] = store.book(symbol, market)
            out[f"ranged/{market}/{symbol}"] = store.klines(symbol, market, start="2024-01-20", end="2024-04-02 05:00")
        for kind in ("klines", "book", "funding"):
            for symbol, frame in store.read_many(kind, store.symbols(market), market).items():
                out[f"many/{kind}/{market}/{symbol}"] = frame
        panel = load_panel(store, market)
        out[f"panel/{market}"] = {f.name: getattr(panel, f.name) for f in dataclasses.fields(panel)}
    for symbol in store.funding_symbols():
        out[f"funding/{symbol}"] = store.funding(symbol)
    return out


def assert_same(got: dict[str, object], want: dict[str, object]) -> None:
    assert got.keys() == want.keys()
    for key, value in want.items():
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(got[key], value, check_exact=True, obj=key)
        else:
            for name, array in value.items():
                other = got[key][name]
                if isinstance(array, np.ndarray):
                    assert np.array_equal(other, array, equal_nan=array.dtype.kind == "f"), f"{key}.{name}"
                elif isinstance(array, pd.Index):
                    assert other.equals(array), f"{key}.{name}"
                else:
                    assert other == array, f"{key}.{name}"


def assert_reads_as_month_files(root: Path) -> None:
    """Cached reads (twice: the first may rebuild the cache, the second reads it) equal uncached ones."""
    want = every_read(Store(root, read_cache=False))
    assert_same(every_read(Store(root)), want)
    assert_same(every_read(Store(root)), want)


def manifest(root: Path, kind: str = "klines", market: str = "spot", symbol: str = "BTCUSDT") -> list[str]:
    """Months the cache file of (kind, market, symbol) holds, as ``YYYY-MM``."""
    path = root / ".read-cache" / kind / f"market={market}" / f"symbol={symbol}.parquet"
    meta = json.loads(pq.read_schema(path).metadata[b"cryptograph.read_cache"])
    return [f"{k // 12:04d}-{k % 12 + 1:02d}" for k, _, _ in meta["months"]]


def count_month_reads(monkeypatch) -> list[str]:
    """Record the month files the cache path opens (as ``YYYY-MM``)."""
    opened: list[str] = []
    real = store_cache.read_table

    def spy(path):
        opened.append(Path(path).parent.name[len("month="):])
        return real(path)

    monkeypatch.setattr(store_cache, "read_table", spy)
    return opened


def later() -> None:
    """Let the file system's (coarse, ~ms) clock tick, so a hand edit gets a new ctime (what RACY_NS guards)."""
    time.sleep(0.03)


def test_first_read_builds_the_cache_and_the_second_opens_no_month_file(root, monkeypatch):
    store = Store(root)
    first = store.klines("BTCUSDT")
    cache = root / ".read-cache" / "klines" / "market=spot" / "symbol=BTCUSDT.parquet"
    assert cache.is_file() and manifest(root) == ALL
    assert pq.read_table(cache).num_rows == HOURS
    opened = count_month_reads(monkeypatch)
    second = store.klines("BTCUSDT")
    assert opened == []
    pd.testing.assert_frame_equal(second, first, check_exact=True)
    pd.testing.assert_frame_equal(second, Store(root, read_cache=False).klines("BTCUSDT"), check_exact=True)


def test_the_newest_month_rewritten_every_hour_is_read_from_its_file_without_rebuilding_the_cache(root, monkeypatch):
    Store(root).klines("BTCUSDT")
    cache = root / ".read-cache" / "klines" / "market=spot" / "symbol=BTCUSDT.parquet"
    built = os.stat(cache)
    opened = count_month_reads(monkeypatch)
    for hour in range(3):  # what an hourly collect does: the newest month only
        Store(root).write_klines("BTCUSDT", klines(f"2024-04-10 0{hour}:00", 1, seed=20 + hour), "spot")
        opened.clear()
        got = Store(root).klines("BTCUSDT")
        assert opened == ["2024-04"]
        pd.testing.assert_frame_equal(got, Store(root, read_cache=False).klines("BTCUSDT"), check_exact=True)
        assert len(got) == HOURS + hour + 1
    assert os.stat(cache).st_ino == built.st_ino and os.stat(cache).st_mtime_ns == built.st_mtime_ns


def test_every_read_path_gives_the_month_files_rows(root, monkeypatch):
    assert_reads_as_month_files(root)
    opened = count_month_reads(monkeypatch)
    every_read(Store(root))
    assert opened == []  # warm: every read path takes every month from the cache
    assert {p.name for p in (root / ".read-cache" / "funding" / "market=perp").glob("*.parquet")} == \
        {"symbol=BTCUSDT.parquet", "symbol=ETHUSDT.parquet"}


def test_engines_check_and_repair_never_see_the_cache(root):
    every_read(Store(root))
    assert (root / ".read-cache").is_dir()
    globbed = {p.relative_to(root).parts[0] for p in root.glob("*/*/*/*/*.parquet")}
    assert globbed == {"klines", "book", "funding"}
    import pyarrow.dataset as ds
    rows = ds.dataset(root / "klines", partitioning="hive").count_rows()
    assert rows == 2 * 2 * HOURS
    (root / ".read-cache" / "junk.parquet").write_bytes(b"not parquet")
    assert Store(root).check() == [] and Store(root).repair() == []
    assert not (root / "repair-backup").exists()


def test_upserts_into_a_closed_month_are_read_back(root, monkeypatch):
    every_read(Store(root))
    later()
    new = klines("2024-02-10", 48, seed=9, scale=3.0)
    Store(root).write_klines("BTCUSDT", new, "spot")
    opened = count_month_reads(monkeypatch)
    got = Store(root).klines("BTCUSDT")
    assert opened == ["2024-02"]  # the other months still come from the cache
    pd.testing.assert_frame_equal(got.loc[new.index], new, check_exact=True, check_freq=False)
    assert_reads_as_month_files(root)
    opened.clear()
    Store(root).klines("BTCUSDT")
    assert opened == []  # rebuilt with February's new file


def test_a_month_file_replaced_by_hand_with_the_same_size_and_mtime_is_read_from_the_file(root):
    every_read(Store(root))
    path = Store(root).month_file("klines", "BTCUSDT", "2024-02", "spot")
    before = os.stat(path)
    table = pq.read_table(path)
    changed = table.set_column(table.schema.get_field_index("close"), "close",
                               pa.array(np.asarray(table.column("close")) * 1.001))
    later()
    pq.write_table(changed, path, compression="snappy", use_dictionary=False)  # in place: the same inode
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the old mtime
    assert os.stat(path).st_ino == before.st_ino and os.stat(path).st_size == before.st_size
    got = Store(root).klines("BTCUSDT")
    assert np.allclose(got.loc["2024-02", "close"].to_numpy(), np.asarray(changed.column("close")), rtol=0)
    assert_reads_as_month_files(root)


def test_a_bad_month_file_is_refused_with_or_without_the_cache_and_repair_makes_both_agree(root):
    every_read(Store(root))
    path = Store(root).month_file("klines", "BTCUSDT", "2024-03", "spot")
    table = pq.read_table(path)
    low = np.asarray(table.column("low")).copy()
    low[5] = 1e6  # low above high: a rule of the store
    later()
    pq.write_table(table.set_column(table.schema.get_field_index("low"), "low", pa.array(low)), path)
    for store in (Store(root), Store(root, read_cache=False)):
        with pytest.raises(BadStoreFile, match=re.escape(f"invalid store file {path}")):
            store.klines("BTCUSDT")
    assert [r.path for r in Store(root).repair()] == [path]
    assert_reads_as_month_files(root)
    assert len(Store(root).klines("BTCUSDT")) == HOURS - 1


@pytest.mark.parametrize("damage", ["corrupt", "truncate", "delete", "garbage"])
def test_a_damaged_or_missing_cache_is_rebuilt_without_error(root, damage, caplog, monkeypatch):
    want = every_read(Store(root, read_cache=False))
    every_read(Store(root))
    cache = root / ".read-cache" / "klines" / "market=spot" / "symbol=BTCUSDT.parquet"
    raw = bytearray(cache.read_bytes())
    if damage == "corrupt":
        raw[len(raw) // 3: len(raw) // 3 + 64] = bytes(64)  # inside a data page: its CRC fails
        cache.write_bytes(bytes(raw))
    elif damage == "truncate":
        cache.write_bytes(bytes(raw[: len(raw) // 2]))
    elif damage == "garbage":
        cache.write_bytes(b"PAR1 not really")
    else:
        cache.unlink()
    with caplog.at_level(logging.WARNING, logger="gnn_market.store_cache"):
        assert_same(every_read(Store(root)), want)
    assert (damage == "delete") == (not caplog.records)
    opened = count_month_reads(monkeypatch)
    assert_same(every_read(Store(root)), want)  # rebuilt: read again without a warning
    assert manifest(root) == ALL and opened == []


def test_a_cache_holding_rows_the_store_refuses_is_not_believed(root, caplog):
    every_read(Store(root))
    cache = root / ".read-cache" / "klines" / "market=spot" / "symbol=BTCUSDT.parquet"
    table = pq.read_table(cache)
    high = np.asarray(table.column("high")).copy()
    high[10] = 0.0  # below low: refused by find_problems
    forged = table.set_column(table.schema.get_field_index("high"), "high", pa.array(high))
    pq.write_table(forged.replace_schema_metadata(table.schema.metadata), cache)  # same manifest
    with caplog.at_level(logging.WARNING, logger="gnn_market.store_cache"):
        got = Store(root).klines("BTCUSDT")
    pd.testing.assert_frame_equal(got, Store(root, read_cache=False).klines("BTCUSDT"), check_exact=True)
    assert "refuses" in caplog.text
    assert np.asarray(pq.read_table(cache).column("high"))[10] > 0  # rebuilt from the month files


def test_a_cache_of_another_symbol_or_kind_is_not_used(root):
    every_read(Store(root))
    folder = root / ".read-cache" / "klines" / "market=spot"
    (folder / "symbol=BTCUSDT.parquet").write_bytes((folder / "symbol=ETHUSDT.parquet").read_bytes())
    assert_reads_as_month_files(root)
    assert manifest(root) == ALL


def test_a_new_month_needs_no_rebuild_and_a_removed_month_leaves_the_cache(root):
    every_read(Store(root))
    Store(root).write_klines("BTCUSDT", klines("2024-05-01", 24, seed=4), "spot")
    assert_reads_as_month_files(root)
    assert manifest(root) == ALL  # April, now closed, was cached while newest and has not changed
    Store(root).month_file("klines", "BTCUSDT", "2024-02", "spot").unlink()
    assert_reads_as_month_files(root)
    assert manifest(root) == ["2024-01", "2024-03", "2024-04", "2024-05"]


def test_a_foreign_month_file_is_read_by_the_store_rules_and_not_cached(root):
    path = Store(root).month_file("klines", "BTCUSDT", "2024-02", "spot")
    frame = pq.read_table(path).to_pandas()
    frame["trades"] = frame["trades"].astype("float64")  # another tool's types
    frame.to_parquet(path)
    assert_reads_as_month_files(root)
    assert manifest(root) == ["2024-01", "2024-03", "2024-04"]
    cache = root / ".read-cache" / "klines" / "market=spot" / "symbol=BTCUSDT.parquet"
    stamp = os.stat(cache).st_mtime_ns
    Store(root).klines("BTCUSDT")
    assert os.stat(cache).st_mtime_ns == stamp  # not rewritten on every read


def test_short_ranges_and_single_months_do_not_use_the_cache(root):
    store = Store(root)
    store.klines("BTCUSDT", start="2024-04-01")
    store.klines("BTCUSDT", start="2024-03-01", end="2024-03-20")
    assert not (root / ".read-cache").exists()
    fresh = Store(root / "one-month")
    fresh.write_klines("BTCUSDT", klines("2024-01-01", 24 * 40))
    fresh.klines("BTCUSDT")
    assert not (fresh.root / ".read-cache").exists()


def test_files_changed_within_the_racy_window_are_not_cached_yet(root, monkeypatch):
    monkeypatch.setattr(store_cache, "RACY_NS", 2_000_000_000)
    later()
    Store(root).write_klines("BTCUSDT", klines("2024-02-10", 5, seed=3), "spot")
    changed = os.stat(Store(root).month_file("klines", "BTCUSDT", "2024-02", "spot")).st_ctime_ns
    # A read just under 2 s after February's change: January and March (older) are cached, February not yet.
    monkeypatch.setattr(store_cache, "clock_ns", lambda: changed + 2_000_000_000 - 1)
    assert_reads_as_month_files(root)
    assert manifest(root) == ["2024-01", "2024-03", "2024-04"]
    monkeypatch.setattr(store_cache, "clock_ns", lambda: changed + 2_000_000_000 + 1)
    assert_reads_as_month_files(root)
    assert manifest(root) == ALL


@pytest.mark.parametrize("order", ["write-then-read", "read-then-write"])
def test_a_month_rewritten_while_the_cache_is_built_is_never_served_stale(root, monkeypatch, order):
    """A writer replaces a closed month after the builder took the stats: the cache it writes then carries
    the old stats (whichever content it read), so the next read takes that month from its file."""
    new = klines("2024-02-03", 10, seed=5, scale=2.0)
    real, done = store_cache.read_table, []

    def racing_read(path):
        if "month=2024-02" in str(path) and not done:
            done.append(True)
            if order == "read-then-write":
                table = real(path)
                Store(root, read_cache=False).write_klines("BTCUSDT", new, "spot")
                return table
            Store(root, read_cache=False).write_klines("BTCUSDT", new, "spot")
        return real(path)

    monkeypatch.setattr(store_cache, "read_table", racing_read)
    Store(root).klines("BTCUSDT")
    monkeypatch.setattr(store_cache, "read_table", real)
    got = Store(root).klines("BTCUSDT")
    pd.testing.assert_frame_equal(got.loc[new.index], new, check_exact=True, check_freq=False)
    assert_reads_as_month_files(root)


def test_readers_and_a_writer_at_once_leave_a_correct_cache(root, monkeypatch):
    monkeypatch.setattr(store_cache, "RACY_NS", 50_000_000)  # above any file system's clock tick here
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                Store(root).read_many("klines", ["BTCUSDT", "ETHUSDT"], "spot")
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(6):
        Store(root).write_klines("BTCUSDT", klines(f"2024-0{1 + i % 3}-05", 30, seed=10 + i), "spot")
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    time.sleep(0.06)
    assert_reads_as_month_files(root)


def test_off_by_environment_or_keyword(root, monkeypatch):
    want = every_read(Store(root, read_cache=False))
    assert not (root / ".read-cache").exists()
    monkeypatch.setenv(store_cache.ENV_VAR, "0")
    assert Store(root).read_cache is False
    assert_same(every_read(Store(root)), want)
    assert not (root / ".read-cache").exists()
    monkeypatch.setenv(store_cache.ENV_VAR, "1")
    assert Store(root).read_cache is True and Store(root, read_cache=False).read_cache is False


def test_a_store_where_the_cache_cannot_be_written_reads_correctly(root, monkeypatch):
    want = every_read(Store(root, read_cache=False))
    (root / ".read-cache").write_text("a file where the cache folder would be")
    assert_same(every_read(Store(root)), want)
    (root / ".read-cache").unlink()

    def disk_full(path, table):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_cache, "_write_file", disk_full)
    assert_same(every_read(Store(root)), want)
    assert not list((root / ".read-cache").rglob("*.parquet"))


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_store_reads_correctly_without_caching(root):
    want = every_read(Store(root, read_cache=False))
    folders = [root, *(p for p in root.rglob("*") if p.is_dir())]
    for folder in folders:
        folder.chmod(0o555)
    try:
        assert_same(every_read(Store(root)), want)
        assert not (root / ".read-cache").exists()
    finally:
        for folder in folders:
            folder.chmod(0o755)


def test_the_cache_holds_the_store_schema(root):
    Store(root).klines("BTCUSDT")
    cache = root / ".read-cache" / "klines" / "market=spot" / "symbol=BTCUSDT.parquet"
    from gnn_market.store_layout import arrow_schema
    assert pq.read_schema(cache).equals(arrow_schema(KLINES), check_metadata=False)


def checksum_flags(monkeypatch) -> list[bool]:
    """Record, per cache file opened, whether its page checksums were verified."""
    flags: list[bool] = []
    real = store_cache.pq.ParquetFile

    def spy(path, **kwargs):
        flags.append(kwargs["page_checksum_verification"])
        return real(path, **kwargs)

    monkeypatch.setattr(store_cache.pq, "ParquetFile", spy)
    return flags


def test_a_sealed_cache_skips_its_checksums_only_while_its_stats_and_the_boot_hold(root, monkeypatch):
    store = Store(root)
    store.klines("BTCUSDT")  # builds the cache
    flags = checksum_flags(monkeypatch)
    store.klines("BTCUSDT")  # verifies it once, then seals it
    cache = root / ".read-cache" / "klines" / "market=spot" / "symbol=BTCUSDT.parquet"
    seal = cache.with_suffix(".seal")
    assert json.loads(seal.read_text())[0] == store_cache.BOOT_ID and flags == [True]
    store.klines("BTCUSDT")
    assert flags == [True, False]
    monkeypatch.setattr(store_cache, "BOOT_ID", "another-boot")  # after a reboot: verified again, resealed
    store.klines("BTCUSDT")
    assert flags == [True, False, True] and json.loads(seal.read_text())[0] == "another-boot"


def test_a_cache_torn_by_a_crash_is_caught_by_its_checksums_after_the_reboot(root, monkeypatch, caplog):
    want = Store(root, read_cache=False).klines("BTCUSDT")
    Store(root).klines("BTCUSDT")
    Store(root).klines("BTCUSDT")
    cache = root / ".read-cache" / "klines" / "market=spot" / "symbol=BTCUSDT.parquet"
    raw = bytearray(cache.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 256] = bytes(256)  # blocks never written before the power went
    cache.write_bytes(bytes(raw))
    # The crash left a seal naming the file as it now is (same inode, size, times), from the boot before.
    cache.with_suffix(".seal").write_text(json.dumps([store_cache.BOOT_ID, *store_cache.file_stat(cache)]))
    monkeypatch.setattr(store_cache, "BOOT_ID", "after-the-reboot")
    with caplog.at_level(logging.WARNING, logger="gnn_market.store_cache"):
        pd.testing.assert_frame_equal(Store(root).klines("BTCUSDT"), want, check_exact=True)
    assert "CRC" in caplog.text
    assert manifest(root) == ALL  # rebuilt


def test_the_bundled_sample_store_is_never_written_to(tmp_path):
    import gnn_market
    sample = Path(gnn_market.__file__).parent / "sample"
    store = Store(sample)
    for symbol in store.symbols(store.markets()[0])[:2]:
        store.klines(symbol, store.markets()[0])
    assert not (sample / ".read-cache").exists()
