"""Archive importer: header styles, timestamp units, checksums, bad files, folder walks."""
from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gnn_market.errors import DataError, StoreError
from gnn_market.store import Store
from gnn_market.vision import import_paths, parse_funding, parse_klines

HOUR_MS = 3_600_000
JAN_2024_MS = 1_704_067_200_000  # 2024-01-01 00:00 UTC
JAN_2025_MS = 1_735_689_600_000  # 2025-01-01 00:00 UTC
KLINE_HEADER = ("open_time,open,high,low,close,volume,close_time,quote_volume,count,"
                "taker_buy_volume,taker_buy_quote_volume,ignore")


def kline_csv(start_ms: int, hours: int, *, header: bool = False, micro: bool = False,
              interval_ms: int = HOUR_MS, price: float = 100.0) -> bytes:
    """Archive-style kline CSV: ``hours`` rows from ``start_ms`` (ms or µs timestamps)."""
    unit = 1000 if micro else 1
    lines = [KLINE_HEADER] if header else []
    for k in range(hours):
        open_t = (start_ms + k * interval_ms) * unit
        close_t = open_t + interval_ms * unit - 1
        p = price + k
        lines.append(f"{open_t},{p:.8f},{p + 2:.8f},{p - 1:.8f},{p + 1:.8f},{10 + k:.8f},{close_t},"
                     f"{(10 + k) * p:.8f},{100 + k},{5 + k / 2:.8f},{(5 + k / 2) * p:.8f},0")
    return ("\n".join(lines) + "\n").encode()


def funding_csv(start_ms: int, n: int, jitter_ms: int = 7) -> bytes:
    lines = ["calc_time,funding_interval_hours,last_funding_rate"]
    for k in range(n):
        lines.append(f"{start_ms + k * 8 * HOUR_MS + jitter_ms},8,{0.0001 * (k + 1):.8f}")
    return ("\n".join(lines) + "\n").encode()


def write_zip(path: Path, csv_bytes: bytes, checksum: str | None = "good") -> Path:
    """Zip ``csv_bytes`` as ``<stem>.csv`` into ``path``; add a ``.CHECKSUM`` (good/bad/None)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(path.stem + ".csv", csv_bytes)
    if checksum is not None:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if checksum == "bad":
            digest = hashlib.sha256(b"something else").hexdigest()
        path.with_name(path.name + ".CHECKSUM").write_text(f"{digest}  {path.name}\n")
    return path


def archive_tree(root: Path) -> Path:
    """A small copy of the archive's own layout under ``root/data``."""
    data = root / "data"
    write_zip(data / "spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-01.zip", kline_csv(JAN_2024_MS, 24))
    # spot from 2025: µs timestamps, daily file
    write_zip(data / "spot/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2025-01-01.zip", kline_csv(JAN_2025_MS, 24, micro=True))
    write_zip(data / "spot/monthly/klines/ETHUSDT/1h/ETHUSDT-1h-2024-01.zip", kline_csv(JAN_2024_MS, 10))
    # futures with a header row, no checksum file
    write_zip(data / "futures/um/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-01.zip",
              kline_csv(JAN_2024_MS, 24, header=True, price=101.0), checksum=None)
    write_zip(data / "futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2024-01.zip",
              funding_csv(JAN_2024_MS, 3))
    # things that are not imported
    write_zip(data / "spot/monthly/klines/BTCUSDT/4h/BTCUSDT-4h-2024-01.zip",
              kline_csv(JAN_2024_MS, 6, interval_ms=4 * HOUR_MS))
    write_zip(data / "futures/um/daily/bookDepth/BTCUSDT/BTCUSDT-bookDepth-2024-01-15.zip", b"timestamp,x\n1,2\n")
    write_zip(data / "futures/cm/monthly/klines/BTCUSD_PERP/1h/BTCUSD_PERP-1h-2024-01.zip", kline_csv(JAN_2024_MS, 2))
    (data / "README.txt").write_text("notes")
    return data


# ------------------------------------------------------------------ parsing
@pytest.mark.parametrize("header", [False, True])
@pytest.mark.parametrize("micro", [False, True])
def test_parse_klines_header_styles_and_timestamp_units(header, micro):
    df = parse_klines(kline_csv(JAN_2025_MS, 5, header=header, micro=micro), "x.csv")
    assert df.index[0] == pd.Timestamp("2025-01-01", tz="UTC") and len(df) == 5
    assert (np.diff(df.index.asi8) == pd.Timedelta(hours=1).value).all()
    assert df["open"].iloc[0] == 100.0 and df["close"].iloc[1] == 102.0
    assert df["trades"].tolist() == [100, 101, 102, 103, 104]
    assert df["quote_volume"].iloc[0] == pytest.approx(1000.0)
    assert df["taker_buy_quote_volume"].iloc[0] == pytest.approx(500.0)


def test_parse_funding_rounds_jitter_and_reads_by_header_name():
    df = parse_funding(funding_csv(JAN_2024_MS, 3, jitter_ms=11), "f.csv")
    assert list(df.index) == list(pd.date_range("2024-01-01", periods=3, freq="8h", tz="UTC"))
    assert df["funding_rate"].tolist() == pytest.approx([1e-4, 2e-4, 3e-4])
    assert df["mark_price"].isna().all()
    # REST-style export with columns in another order, and a headerless archive-order file
    rest = b"markPrice,fundingRate,fundingTime\n42000.5,-0.0002,1704067200000\n"
    got = parse_funding(rest, "rest.csv")
    assert got["funding_rate"].iloc[0] == -0.0002 and got["mark_price"].iloc[0] == 42000.5
    bare = parse_funding(b"1704067200003,8,0.0001\n1704096000002,8,0.0002\n", "bare.csv")
    assert bare["funding_rate"].tolist() == [0.0001, 0.0002]


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (kline_csv(JAN_2024_MS, 3)[:-40], "truncated"),               # cut inside the last row
    (kline_csv(JAN_2024_MS, 3).replace(b"101.00000000", b"abc", 1), "not a number"),
    (kline_csv(JAN_2024_MS, 3, interval_ms=15 * 60_000), "not a 1h candle"),
    (b"1,2,3\n", "expected 12 kline columns"),
])
def test_malformed_kline_csv_is_a_data_error_naming_the_file(data, message):
    with pytest.raises(DataError, match=message) as info:
        parse_klines(data, "BTCUSDT-1h-2024-01.csv")
    assert "BTCUSDT-1h-2024-01.csv" in str(info.value)


# ------------------------------------------------------------------ import
def test_import_archive_tree(tmp_path):
    data = archive_tree(tmp_path)
    store = Store(tmp_path / "store")
    report = import_paths([data], store)
    assert report.files == 5 and report.checksums_verified == 4
    assert report.per_symbol == {("spot", "BTCUSDT"): 48, ("spot", "ETHUSDT"): 10,
                                 ("perp", "BTCUSDT"): 24, ("funding", "BTCUSDT"): 3}
    assert report.rows == report.new_rows == 85
    reasons = {p.name: r for p, r in ((s.path, s.reason) for s in report.skipped)}
    assert "interval 4h" in reasons["BTCUSDT-4h-2024-01.zip"]
    assert "bookDepth" in reasons["BTCUSDT-bookDepth-2024-01-15.zip"]
    assert "COIN-M" in reasons["BTCUSD_PERP-1h-2024-01.zip"]
    assert "README.txt" in reasons
    spot = store.klines("BTCUSDT", "spot")
    assert len(spot) == 48 and spot.index[24] == pd.Timestamp("2025-01-01", tz="UTC")  # µs understood
    assert store.klines("BTCUSDT", "perp")["open"].iloc[0] == 101.0  # header row skipped, perp kept apart
    assert store.funding("BTCUSDT").index[1] == pd.Timestamp("2024-01-01 08:00", tz="UTC")
    assert len(store.gaps("BTCUSDT", "spot")) == 1  # Jan 2024 .. Jan 2025: the gap stays a gap
    text = report.summary()
    assert "imported 5 file(s)" in text and "ETHUSDT" in text and "skipped" in text


def test_import_is_idempotent(tmp_path):
    data = archive_tree(tmp_path)
    store = Store(tmp_path / "store")
    import_paths([data], store)
    before = store.klines("BTCUSDT", "spot")
    again = import_paths([data], store)
    assert again.new_rows == 0 and again.rows == 85
    pd.testing.assert_frame_equal(store.klines("BTCUSDT", "spot"), before)


def test_loose_files_need_market_and_symbol_when_the_path_does_not_say(tmp_path):
    loose = tmp_path / "BTCUSDT-1h-2024-01.csv"
    loose.write_bytes(kline_csv(JAN_2024_MS, 4, header=True))
    store = Store(tmp_path / "store")
    with pytest.raises(DataError, match="spot or perp"):
        import_paths([loose], store)
    assert import_paths([loose], store, market="perp").per_symbol == {("perp", "BTCUSDT"): 4}
    odd = tmp_path / "download.csv"
    odd.write_bytes(kline_csv(JAN_2024_MS, 2))
    with pytest.raises(DataError, match="symbol"):
        import_paths([odd], store, market="spot")
    assert import_paths([odd], store, market="spot", symbol="SOLUSDT").rows == 2
    funding = tmp_path / "rates.csv"
    funding.write_bytes(funding_csv(JAN_2024_MS, 2))
    assert import_paths([funding], store, symbol="SOLUSDT").per_symbol == {("funding", "SOLUSDT"): 2}
    with pytest.raises(DataError, match="says symbol BTCUSDT"):
        import_paths([loose], store, market="perp", symbol="ETHUSDT")


def test_checksum_mismatch_is_refused_before_anything_is_written(tmp_path):
    zip_path = write_zip(tmp_path / "data/spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-01.zip",
                         kline_csv(JAN_2024_MS, 5), checksum="bad")
    store = Store(tmp_path / "store")
    with pytest.raises(DataError, match="checksum mismatch") as info:
        import_paths([zip_path], store)
    assert "BTCUSDT-1h-2024-01.zip" in str(info.value)
    assert not store.exists()  # nothing written


def test_bad_file_stops_its_group_and_leaves_the_store_valid(tmp_path):
    data = tmp_path / "data/spot/monthly/klines"
    write_zip(data / "AAAUSDT/1h/AAAUSDT-1h-2024-01.zip", kline_csv(JAN_2024_MS, 5))
    good = write_zip(data / "BBBUSDT/1h/BBBUSDT-1h-2024-01.zip", kline_csv(JAN_2024_MS, 5))
    corrupt = data / "BBBUSDT/1h/BBBUSDT-1h-2024-02.zip"
    corrupt.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])  # truncated download
    store = Store(tmp_path / "store")
    with pytest.raises(DataError, match="corrupt zip") as info:
        import_paths([tmp_path / "data"], store)
    assert "BBBUSDT-1h-2024-02.zip" in str(info.value)
    assert store.symbols("spot") == ["AAAUSDT"]  # the earlier group is complete; BBB untouched
    assert len(store.klines("AAAUSDT")) == 5


def test_zip_with_crc_error_or_truncated_csv_inside_is_refused(tmp_path):
    path = write_zip(tmp_path / "spot/BTCUSDT-1h-2024-01.zip", kline_csv(JAN_2024_MS, 50), checksum=None)
    raw = bytearray(path.read_bytes())
    raw[60] ^= 0xFF  # flip a byte of the compressed CSV
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="corrupt zip"):
        import_paths([path], Store(tmp_path / "store"))
    cut = write_zip(tmp_path / "spot/ETHUSDT-1h-2024-01.zip", kline_csv(JAN_2024_MS, 3)[:-30], checksum=None)
    with pytest.raises(DataError, match="ETHUSDT-1h-2024-01.zip.*truncated"):
        import_paths([cut], Store(tmp_path / "store"))


def test_missing_path_and_bad_arguments(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        import_paths([tmp_path / "nope"], Store(tmp_path / "store"))
    with pytest.raises(DataError):
        import_paths([tmp_path], Store(tmp_path / "store"), market="coin")
    with pytest.raises(DataError, match="path says market spot"):
        p = write_zip(tmp_path / "data/spot/monthly/klines/XUSDT/1h/XUSDT-1h-2024-01.zip", kline_csv(JAN_2024_MS, 2))
        import_paths([p], Store(tmp_path / "store"), market="perp")


def test_archive_and_rest_funding_rows_coincide(tmp_path):
    """Archive calc_time jitter and the REST client round to the same minute: no duplicate rows."""
    from gnn_market.binance.parsers import round_funding_time

    archive = write_zip(tmp_path / "BTCUSDT-fundingRate-2024-01.zip", funding_csv(JAN_2024_MS, 3, jitter_ms=11))
    store = Store(tmp_path / "store")
    import_paths([archive], store, market="perp", symbol="BTCUSDT")
    rest_ms = JAN_2024_MS + 8 * HOUR_MS + 23  # the same settlement as the archive's second row
    rest = pd.DataFrame({"funding_rate": [0.0002]},
                        index=pd.to_datetime([round_funding_time(rest_ms)], unit="ms", utc=True))
    assert store.write_funding("BTCUSDT", rest) == 0
    assert len(store.funding("BTCUSDT")) == 3


def test_import_vision_cli_imports_a_tree_and_reports_bad_files(tmp_path, capsys):
    from gnn_market.cli import run_cli
    from gnn_market.data import main

    root = archive_tree(tmp_path)
    store_dir = tmp_path / "store"
    assert run_cli(main, ["import-vision", str(root), "--store", str(store_dir)]) == 0
    assert "BTCUSDT" in Store(store_dir).symbols("spot")
    before = {p: p.read_bytes() for p in store_dir.rglob("*.parquet")}
    bad = tmp_path / "bad" / "ETHUSDT-1h-2024-01.zip"
    bad.parent.mkdir()
    bad.write_bytes(b"PK\x03\x04 truncated")
    capsys.readouterr()
    assert run_cli(main, ["import-vision", str(bad), "--store", str(store_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "ETHUSDT-1h-2024-01.zip" in err[0]
    assert {p: p.read_bytes() for p in store_dir.rglob("*.parquet")} == before


# ------------------------------------------------------------------ issue 11: hostile and careless input
def _respell(data: bytes, spell) -> bytes:
    """``kline_csv`` bytes with the two time columns of every row rewritten by ``spell(int) -> str``."""
    lines = []
    for line in data.decode().splitlines():
        cells = line.split(",")
        if cells[0].isdigit():
            cells[0], cells[6] = spell(int(cells[0])), spell(int(cells[6]))
        lines.append(",".join(cells))
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("spell", [
    lambda v: f"{v}.0",                 # float
    lambda v: f'"{v}"',                 # quoted
    lambda v: f"{v:.12e}",              # exponent, e.g. 1.704067200000e+12
    lambda v: f'"{v * 1000}.0"',        # quoted float microseconds
    lambda v: f" {v} ",                 # padded
], ids=["float", "quoted", "exponent", "quoted-float-us", "padded"])
@pytest.mark.parametrize("header", [False, True])
def test_first_candle_is_kept_whatever_the_timestamp_spelling(tmp_path, spell, header):
    data = _respell(kline_csv(JAN_2024_MS, 6, header=header), spell)
    df = parse_klines(data, "x.csv")
    assert len(df) == 6 and df.index[0] == pd.Timestamp("2024-01-01", tz="UTC")
    assert df["open"].iloc[0] == 100.0
    path = write_zip(tmp_path / "data/spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-01.zip", data, checksum=None)
    report = import_paths([path], Store(tmp_path / "store"))
    assert report.rows_in == report.rows == report.new_rows == 6  # rows in = rows stored
    assert "6 rows in, 6 stored" in report.summary()


def test_quoted_header_is_a_header_and_a_numeric_first_row_never_is():
    quoted = b'"open_time","open","high","low","close","volume","close_time","quote_volume","count",' \
             b'"taker_buy_volume","taker_buy_quote_volume","ignore"\n' + kline_csv(JAN_2024_MS, 2)
    assert len(parse_klines(quoted, "q.csv")) == 2
    with pytest.raises(DataError, match="row 1 column 'open_time'"):  # NaN is not a field name: a bad row
        parse_klines(kline_csv(JAN_2024_MS, 2).replace(str(JAN_2024_MS).encode(), b"NaN", 1), "n.csv")


def test_rows_repeated_across_files_are_reported(tmp_path):
    data = tmp_path / "data/spot/monthly/klines/BTCUSDT/1h"
    write_zip(data / "BTCUSDT-1h-2024-01.zip", kline_csv(JAN_2024_MS, 5))
    write_zip(data / "BTCUSDT-1h-2024-01-01.zip", kline_csv(JAN_2024_MS + 3 * HOUR_MS, 4))  # overlaps 2 rows
    report = import_paths([tmp_path / "data"], Store(tmp_path / "store"))
    assert (report.rows_in, report.rows) == (9, 7)
    assert "9 rows in, 7 stored (7 new)" in report.summary() and "2 repeated in overlapping files" in report.summary()
    one = tmp_path / "spot" / "ETHUSDT-1h-2024-01.csv"  # but one file never repeats a candle: malformed
    one.parent.mkdir()
    one.write_bytes(kline_csv(JAN_2024_MS, 3) + kline_csv(JAN_2024_MS + HOUR_MS, 1))
    with pytest.raises(DataError, match=r"1 row\(s\) repeat an earlier open_time \(first 2024-01-01 01:00"):
        import_paths([one], Store(tmp_path / "store"))


def _deflate64(path: Path, csv_bytes: bytes) -> Path:
    """A zip whose member claims compression method 9 (Deflate64), which zipfile cannot read."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(path.stem + ".csv", csv_bytes)
    raw = bytearray(path.read_bytes())
    raw[8:10] = (9).to_bytes(2, "little")  # local file header: compression method
    central = raw.index(b"PK\x01\x02")
    raw[central + 10:central + 12] = (9).to_bytes(2, "little")  # central directory: compression method
    path.write_bytes(bytes(raw))
    return path


def _encrypted_flag(path: Path, csv_bytes: bytes) -> Path:
    """A zip whose member has the "encrypted" flag set: zipfile then demands a password."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(path.stem + ".csv", csv_bytes)
    raw = bytearray(path.read_bytes())
    raw[6] |= 0x1  # local file header: general purpose flags
    central = raw.index(b"PK\x01\x02")
    raw[central + 8] |= 0x1  # central directory: general purpose flags
    path.write_bytes(bytes(raw))
    return path


def _latin1_csv(path: Path) -> Path:
    path = path.with_suffix(".csv")
    path.write_bytes(b"open_time\xff,open\n1,2\n")
    return path


YEAR_24785_MS = (24785 - 1970) * 8_766 * HOUR_MS  # on the hour, ~7.2e14: read as ms, far outside pandas' range


@pytest.mark.parametrize("make, message", [
    (_latin1_csv, "not UTF-8"),
    (lambda p: _encrypted_flag(p, kline_csv(JAN_2024_MS, 3)), "encrypted"),
    (lambda p: _deflate64(p, kline_csv(JAN_2024_MS, 3)), "Deflate64"),
    (lambda p: write_zip(p, kline_csv(YEAR_24785_MS, 2), checksum=None), "outside 2010-01-01"),
    (lambda p: write_zip(p, kline_csv(JAN_2024_MS, 2).replace(str(JAN_2024_MS).encode(), b"9" * 25, 1),
                         checksum=None), "not an epoch time"),
], ids=["non-utf8", "encrypted", "deflate64", "year-24785", "huge-number"])
def test_hostile_files_are_one_error_line_and_write_nothing(tmp_path, capsys, make, message):
    from gnn_market.cli import run_cli
    from gnn_market.data import main

    folder = tmp_path / "in" / "spot"
    folder.mkdir(parents=True)
    bad = make(folder / "BTCUSDT-1h-2024-01.zip")
    store = tmp_path / "store"
    assert run_cli(main, ["import-vision", str(bad), "--store", str(store)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0] and bad.name in err[0]
    assert not store.exists()  # a failed import leaves nothing behind


def test_member_size_cap_refuses_a_zip_bomb_before_inflating_it(tmp_path, capsys):
    from gnn_market.cli import run_cli
    from gnn_market.data import main

    bomb = tmp_path / "spot" / "BTCUSDT-1h-2024-01.zip"
    write_zip(bomb, kline_csv(JAN_2024_MS, 24) * 2000, checksum=None)  # ~4 MB of CSV in a small zip
    assert bomb.stat().st_size < 200_000
    with pytest.raises(DataError, match="expands to .* over the limit"):
        import_paths([bomb], Store(tmp_path / "store"), max_member_bytes=1_000_000)
    assert run_cli(main, ["import-vision", str(bomb), "--store", str(tmp_path / "store"),
                          "--max-member-mb", "1"]) == 2
    assert "over the limit of 1.0 MiB" in capsys.readouterr().err
    loose = tmp_path / "spot" / "ETHUSDT-1h-2024-01.csv"
    loose.write_bytes(kline_csv(JAN_2024_MS, 24) * 100)
    with pytest.raises(DataError, match="per file"):
        import_paths([loose], Store(tmp_path / "store"), max_member_bytes=10_000)
    assert not (tmp_path / "store").exists()


def test_member_read_stops_at_the_cap_whatever_the_header_says(tmp_path, monkeypatch):
    """A header that understates the size: reading stops at cap + 1 bytes and the file is refused."""
    path = write_zip(tmp_path / "spot/BTCUSDT-1h-2024-01.zip", kline_csv(JAN_2024_MS, 200), checksum=None)
    real_infolist = zipfile.ZipFile.infolist

    def lying(self):
        infos = real_infolist(self)
        for info in infos:
            info.file_size = 10  # what a crafted header would claim
        return infos

    monkeypatch.setattr(zipfile.ZipFile, "infolist", lying)
    with pytest.raises(DataError, match="past the limit|corrupt zip"):
        import_paths([path], Store(tmp_path / "store"), max_member_bytes=path.stat().st_size + 100)


def test_symlinks_out_of_the_folder_are_skipped_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "ETHUSDT-1h-2024-01.csv"
    secret.write_bytes(kline_csv(JAN_2024_MS, 3))
    (outside / "sub").mkdir()
    (outside / "sub" / "SOLUSDT-1h-2024-01.csv").write_bytes(kline_csv(JAN_2024_MS, 3))
    root = tmp_path / "in" / "spot"
    root.mkdir(parents=True)
    (root / "BTCUSDT-1h-2024-01.csv").write_bytes(kline_csv(JAN_2024_MS, 3))
    (root / "ETHUSDT-1h-2024-01.csv").symlink_to(secret)
    (root / "linked-folder").symlink_to(outside / "sub", target_is_directory=True)
    inside = root / "copy"
    inside.mkdir()
    (inside / "XRPUSDT-1h-2024-01.csv").symlink_to(root / "BTCUSDT-1h-2024-01.csv")  # inside: fine (same file)
    store = Store(tmp_path / "store")
    report = import_paths([tmp_path / "in"], store)
    assert store.symbols("spot") == ["BTCUSDT"]
    reasons = {s.path.name: s.reason for s in report.skipped}
    assert "outside" in reasons["ETHUSDT-1h-2024-01.csv"] and "not followed" in reasons["linked-folder"]
    assert "skipped" in report.summary() and "ETHUSDT-1h-2024-01.csv" in report.summary()
    # a file named explicitly is the user's choice and is read
    assert import_paths([root / "ETHUSDT-1h-2024-01.csv"], store).rows == 3


def test_import_vision_cli_market_and_symbol_flags_as_documented(tmp_path, capsys):
    from gnn_market.cli import run_cli
    from gnn_market.data import main

    odd = tmp_path / "download.csv"
    odd.write_bytes(kline_csv(JAN_2024_MS, 2))
    store = tmp_path / "store"
    assert run_cli(main, ["import-vision", str(odd), "--store", str(store), "--market", "perp",
                          "--symbol", "solusdt"]) == 0
    assert Store(store).symbols("perp") == ["SOLUSDT"]
    assert run_cli(main, ["import-vision", str(odd), "--store", str(store), "--market", "coin"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: ")


@pytest.mark.parametrize("command", [
    ["import-vision", "{tmp}/nope"],
    ["import-csv", "{tmp}/nope"],
    ["import-csv", "{tmp}/empty"],
])
def test_failed_imports_leave_no_store_folder(tmp_path, capsys, command):
    from gnn_market.cli import run_cli
    from gnn_market.data import main

    (tmp_path / "empty").mkdir()
    store = tmp_path / "new-store"
    argv = [c.format(tmp=tmp_path) for c in command] + ["--store", str(store)]
    assert run_cli(main, argv) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert not store.exists()


# ------------------------------------------------------------------ issue 21
def test_a_file_named_for_another_symbol_than_its_folder_is_refused(tmp_path):
    """Issue 21 item 11: SYNAUSDT-1h-... under klines/SYNBUSDT/ was stored as SYNAUSDT without a word."""
    data = tmp_path / "data"
    write_zip(data / "spot/monthly/klines/SYNBUSDT/1h/SYNBUSDT-1h-2024-01.zip", kline_csv(JAN_2024_MS, 5))
    wrong = write_zip(data / "spot/monthly/klines/SYNBUSDT/1h/SYNAUSDT-1h-2024-02.zip", kline_csv(JAN_2024_MS, 5))
    store = Store(tmp_path / "store")
    with pytest.raises(DataError, match=f"{wrong}: the file name says symbol SYNAUSDT but its archive folder "
                                        f"says SYNBUSDT"):
        import_paths([data], store)
    assert not (tmp_path / "store").exists()
    write_zip(data / "futures/um/monthly/fundingRate/SYNBUSDT/SYNAUSDT-fundingRate-2024-01.zip",
              funding_csv(JAN_2024_MS, 2))
    wrong.unlink()
    with pytest.raises(DataError, match="SYNAUSDT but its archive folder says SYNBUSDT"):
        import_paths([data], store)
    loose = tmp_path / "loose" / "2024" / "SYNAUSDT-1h-2024-01.csv"  # no archive folders: nothing to compare
    loose.parent.mkdir(parents=True)
    loose.write_bytes(kline_csv(JAN_2024_MS, 5))
    assert import_paths([loose], store, market="spot").per_symbol == {("spot", "SYNAUSDT"): 5}


def test_a_bad_stored_target_stops_the_archive_import_before_any_write(tmp_path):
    data = tmp_path / "data"
    write_zip(data / "spot/monthly/klines/AAAUSDT/1h/AAAUSDT-1h-2024-01.zip", kline_csv(JAN_2024_MS, 5))
    write_zip(data / "spot/monthly/klines/BBBUSDT/1h/BBBUSDT-1h-2024-01.zip", kline_csv(JAN_2024_MS, 5))
    store = Store(tmp_path / "store")
    store.write_klines("AAAUSDT", parse_klines(kline_csv(JAN_2024_MS, 2), "x"))
    frame = parse_klines(kline_csv(JAN_2024_MS, 2), "x")
    bbb = store.month_file("klines", "BBBUSDT", "2024-01")
    bbb.parent.mkdir(parents=True)
    pd.concat([frame, frame]).to_parquet(bbb)
    with pytest.raises(StoreError, match="symbol=BBBUSDT/month=2024-01/data.parquet: 2 duplicated timestamp"):
        import_paths([data], store)
    assert len(pd.read_parquet(store.month_file("klines", "AAAUSDT", "2024-01"))) == 2  # untouched
