"""Plain per-symbol CSV import: values, optional columns, idempotence, one clear error per bad file."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gnn_market.csv_import import import_csv_folder, read_kline_csv, symbol_of
from gnn_market.errors import DataError
from gnn_market.store import Store

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "binance-spot-1h-2021-2023"
T0 = 1_700_000_000_000 // 3_600_000 * 3_600_000
MONTH = "2023-11"  # store month file of T0 (2023-11-14 22:00 UTC) and the hours after it


def _csv(rows: int = 5, extra: str = "", times=None) -> str:
    lines = ["open_time,open,high,low,close,volume" + extra]
    for i in range(rows):
        t = T0 + i * 3_600_000 if times is None else times[i]
        tail = f",{1000 + i}" if extra else ""
        lines.append(f"{t},{10 + i},{11 + i},{9 + i},{10.5 + i},{100 + i}{tail}")
    return "\n".join(lines) + "\n"


def test_import_drops_the_partial_last_hour_and_keeps_values(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "AAAUSDT.csv").write_text(_csv())
    with gzip.open(src / "BBBUSDT.csv.gz", "wt") as fh:
        fh.write(_csv(extra=",quote_volume"))
    store = Store(tmp_path / "store")
    report = import_csv_folder(src, store)
    assert report.rows_read == {"AAAUSDT": 4, "BBBUSDT": 4} and report.rows_added == report.rows_read
    got = store.klines("AAAUSDT")
    assert list(got.index) == list(pd.date_range(pd.Timestamp(T0, unit="ms", tz="UTC"), periods=4, freq="h"))
    np.testing.assert_array_equal(got["close"].to_numpy(), [10.5, 11.5, 12.5, 13.5])
    assert got["quote_volume"].isna().all()
    np.testing.assert_array_equal(store.klines("BBBUSDT")["quote_volume"].to_numpy(), [1000, 1001, 1002, 1003])
    again = import_csv_folder(src, store)
    assert sum(again.rows_added.values()) == 0  # idempotent upsert


def test_iso_times_and_keep_last(tmp_path):
    times = [pd.Timestamp(T0 + i * 3_600_000, unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M:%S") for i in range(3)]
    path = tmp_path / "CCCUSDT.csv"
    path.write_text(_csv(3, times=times))
    frame = read_kline_csv(path, drop_last=False)
    assert len(frame) == 3 and frame.index[0] == pd.Timestamp(T0, unit="ms", tz="UTC")


@pytest.mark.parametrize("text, message", [
    ("open_time,open,high,low,close\n1,2,3,1,2\n", "missing column"),
    (_csv(3, times=[T0, T0 + 60_000, T0 + 7_200_000]), "not on the hour"),
    (_csv(3, times=[T0, T0, T0 + 7_200_000]), "appears twice"),
    (_csv(3).replace("10.5", "abc"), "non-numeric"),
])
def test_bad_files_are_one_clear_error(tmp_path, text, message):
    path = tmp_path / "DDDUSDT.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        read_kline_csv(path)


def test_bad_folder_or_name(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        import_csv_folder(tmp_path / "nope", Store(tmp_path / "s"))
    with pytest.raises(DataError, match="no <SYMBOL>.csv"):
        import_csv_folder(tmp_path, Store(tmp_path / "s"))
    with pytest.raises(DataError, match="invalid symbol"):
        symbol_of(Path("btc-usdt.csv"))
    assert symbol_of(Path("ethusdt.CSV.GZ")) == "ETHUSDT"


def test_bad_file_stops_before_any_write(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "AAAUSDT.csv").write_text(_csv())
    (src / "ZZZUSDT.csv").write_text("open_time,open\n1,2\n")
    store = Store(tmp_path / "store")
    with pytest.raises(DataError, match="ZZZUSDT"):
        import_csv_folder(src, store)
    assert not (tmp_path / "store").exists() or store.symbols() == []


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared dataset not present on this machine")
def test_three_year_file_rows_in_equal_rows_stored(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "BTCUSDT.csv.gz").symlink_to(SHARED / "BTCUSDT.csv.gz")
    report = import_csv_folder(src, Store(tmp_path / "store"))
    assert report.rows_read == {"BTCUSDT": 23988 - 1} == report.rows_added


def test_cli_import_csv_and_errors(tmp_path, capsys):
    from gnn_market.cli import run_cli
    from gnn_market.data import main

    src = tmp_path / "src"
    src.mkdir()
    (src / "AAAUSDT.csv").write_text(_csv())
    (src / "BBBUSDT.csv").write_text(_csv())
    assert run_cli(main, ["import-csv", str(src), "--store", str(tmp_path / "s"), "--symbols", "BBBUSDT"]) == 0
    assert "1 symbols, 4 candles read, 4 new" in capsys.readouterr().out
    assert Store(tmp_path / "s").symbols() == ["BBBUSDT"]
    assert run_cli(main, ["import-csv", str(src), "--store", str(tmp_path / "s"), "--symbols", "CCCUSDT"]) == 2
    assert "no file for CCCUSDT" in capsys.readouterr().err
    assert run_cli(main, ["import-csv", str(tmp_path / "nope"), "--store", str(tmp_path / "t")]) == 2
    assert not (tmp_path / "t").exists()  # a failed import leaves no empty store behind


@pytest.mark.parametrize("row, message", [
    (f"{(24785 - 1970) * 8_766 * 3_600_000},10,11,9,10.5,100", "outside 2010-01-01"),  # year 24785
    (f"{T0 + 3_600_000},10,8,9,10.5,100", "high < low"),
    (f"{T0 + 3_600_000},10,1e300,9,10.5,100", r"price > 1e\+09"),
    (f"{T0 + 3_600_000},10,,9,10.5,100", "missing or non-finite price"),
    (f"{T0 + 3_600_000},10,11,9,10.5,-1", "volume < 0"),
], ids=["year-24785", "high<low", "1e300", "empty-price", "negative-volume"])
def test_bad_values_stop_the_import_before_any_write(tmp_path, capsys, row, message):
    from gnn_market.cli import run_cli
    from gnn_market.data import main

    src = tmp_path / "src"
    src.mkdir()
    (src / "AAAUSDT.csv").write_text(_csv())
    lines = _csv(4).splitlines()
    lines[2] = row
    (src / "BBBUSDT.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=message):
        import_csv_folder(src, Store(tmp_path / "store"))
    assert run_cli(main, ["import-csv", str(src), "--store", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "BBBUSDT.csv" in err[0]
    assert not (tmp_path / "store").exists()  # AAAUSDT, read first, was not written either


# ------------------------------------------------------------------ issue 21
def test_a_newest_first_file_loses_its_newest_row_not_its_oldest(tmp_path):
    """Issue 21 item 8: a file in descending order lost 00:00 instead of its partial newest candle."""
    lines = _csv(5).splitlines()
    path = tmp_path / "AAAUSDT.csv"
    path.write_text("\n".join([lines[0], *lines[:0:-1]]) + "\n")  # header, then newest first
    frame = read_kline_csv(path).sort_index()
    start = pd.Timestamp(T0, unit="ms", tz="UTC")
    assert list(frame.index) == list(pd.date_range(start, periods=4, freq="h"))
    np.testing.assert_array_equal(frame["close"].to_numpy(), [10.5, 11.5, 12.5, 13.5])
    shuffled = [lines[0], lines[3], lines[5], lines[1], lines[4], lines[2]]  # any order: the newest goes
    path.write_text("\n".join(shuffled) + "\n")
    assert read_kline_csv(path).index.max() == start + pd.Timedelta(hours=3)
    assert len(read_kline_csv(path, drop_last=False)) == 5


def test_a_header_only_or_single_row_file_is_refused(tmp_path):
    """Issue 21 item 11: a header-only CSV stored an empty symbol that `info` reported "ok yes"."""
    path = tmp_path / "AAAUSDT.csv"
    path.write_text("open_time,open,high,low,close,volume\n")
    with pytest.raises(DataError, match="AAAUSDT.csv: no candles, only a header"):
        read_kline_csv(path)
    path.write_text(_csv(1))
    with pytest.raises(DataError, match="only candle is the newest hour.*--keep-last"):
        read_kline_csv(path)
    assert len(read_kline_csv(path, drop_last=False)) == 1
    path.write_text("open_time,open,high,low,close,volume\n")
    with pytest.raises(DataError, match="AAAUSDT.csv: no candles"):
        import_csv_folder(tmp_path, Store(tmp_path / "store"))
    assert not (tmp_path / "store").exists()


def _bad_stored_store(tmp_path) -> tuple[Path, Store, dict[str, bytes]]:
    """Source files for SYN00..SYN05 and a store holding 3 rows of each, SYN01's file breaking a rule."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        (src / f"SYN0{i}USDT.csv").write_text(_csv(6))
        store = Store(tmp_path / "store")
        store.write_klines(f"SYN0{i}USDT", read_kline_csv(src / f"SYN0{i}USDT.csv").iloc[:3])
    bad = store.klines("SYN01USDT").reset_index()
    pd.concat([bad, bad.iloc[[0]]]).set_index("open_time").to_parquet(store.month_file("klines", "SYN01USDT", MONTH))
    files = {str(p): p.read_bytes() for p in (tmp_path / "store" / "klines").rglob("*.parquet")}
    return src, store, files


def test_a_bad_stored_target_stops_the_import_before_any_write(tmp_path):
    """Issue 21 item 7: SYN00USDT had grown when SYN01USDT's stored file stopped the import."""
    from gnn_market.errors import StoreError

    src, store, files = _bad_stored_store(tmp_path)
    with pytest.raises(StoreError, match=f"symbol=SYN01USDT/month={MONTH}/data.parquet: 1 duplicated timestamp.*"
                                         f"nothing was changed"):
        import_csv_folder(src, store)
    now = {str(p): p.read_bytes() for p in (tmp_path / "store" / "klines").rglob("*.parquet")}
    assert now == files


def test_a_write_failing_midway_names_the_symbols_written(tmp_path, monkeypatch):
    """Issue 21 item 7, a nearly full disk: the error says which symbols were written."""
    import gnn_market.store as store_module
    from gnn_market.errors import StoreError

    src, store, _ = _bad_stored_store(tmp_path)
    store.month_file("klines", "SYN01USDT", MONTH).unlink()  # every target fine now
    real, calls = store_module.pq.write_table, []

    def fills_up(*args, **kwargs):
        calls.append(1)
        if len(calls) > 2:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(store_module.pq, "write_table", fills_up)
    with pytest.raises(StoreError, match=r"symbol=SYN02USDT/month=\d{4}-\d\d/data.parquet: No space left on device; written before the "
                                         r"failure: SYN00USDT \(\+2 rows\), SYN01USDT \(\+5 rows\); not written: "
                                         r"SYN02USDT, SYN03USDT, SYN04USDT, SYN05USDT"):
        import_csv_folder(src, store)
    monkeypatch.undo()
    assert [len(store.klines(f"SYN0{i}USDT")) for i in range(6)] == [5, 5, 3, 3, 3, 3]
