"""Import hourly candles from plain CSV files, one file per symbol, into a store.

The format is the one of public kline dumps such as the three-year Binance
spot set ``binance-spot-1h-2021-2023`` (40 USDT pairs, April 2021 to December
2023, taken from https://github.com/misrori/binance_startegy): one file
``<SYMBOL>.csv`` or ``<SYMBOL>.csv.gz`` per pair, a header row, and the columns

    open_time,open,high,low,close,volume[,quote_volume,trades,taker_buy_volume,taker_buy_quote_volume]

with ``open_time`` in milliseconds since the epoch (UTC) or as an ISO time.
Columns the file lacks are stored as missing. ::

    python -m gnn_market.data import-csv ~/binance-spot-1h-2021-2023 --store data/spot3y

The folder is a :class:`CsvSource`, a :class:`~gnn_market.market_source.MarketSource`
(its files' symbols are the universe of one market); :func:`import_csv_folder` copies it
into the store (:func:`~gnn_market.market_source.copy_source`).

Such dumps are usually downloaded while the last hour is still open, so its
candle is partial: ``drop_last=True`` (the default; ``--keep-last`` turns it
off) leaves the **newest** row of every file out, whatever the file's row order
(a newest-first file loses its first line, not its oldest, complete candle).
A file with no candle left (a header only, or a single row without
``--keep-last``) is refused.

Every file is read and checked first, then every target: a stored file of one
of the symbols that breaks a store rule, or a store whose ``STORE.json`` this
version cannot write, stops the import before anything is written. A write that
fails midway (a full disk) names the symbols already written.

Survivorship: a dump made at one date holds the pairs that were listed then.
Delisted pairs are missing, so a study over its past is biased toward
survivors; say so wherever results on such data are reported.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from .errors import CryptoGraphError, DataError, StoreError
from .market_source import Series, copy_source, empty_frame, in_range, wall_clock_ms
from .store import Store
from .store_schema import KLINE_COLUMNS, checked_frame, first_time_out_of_range, validate_market, validate_symbol
from .timeutil import HOUR_MS, ms_to_utc_index, to_utc_index

REQUIRED = ("open_time", "open", "high", "low", "close", "volume")
SUFFIXES = (".csv", ".csv.gz")


@dataclass
class CsvImportReport:
    """What an import did: rows read and stored per symbol."""

    rows_read: dict[str, int] = field(default_factory=dict)
    rows_added: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        read, added = sum(self.rows_read.values()), sum(self.rows_added.values())
        return f"{len(self.rows_read)} symbols, {read} candles read, {added} new in the store"


def symbol_of(path: Path) -> str:
    """``BTCUSDT.csv.gz`` / ``btcusdt.csv`` -> ``BTCUSDT`` (validated)."""
    name = path.name
    for suffix in SUFFIXES[::-1]:  # longest first
        if name.lower().endswith(suffix):
            return validate_symbol(name[: -len(suffix)].upper())
    raise DataError(f"{path}: expected a <SYMBOL>.csv or <SYMBOL>.csv.gz file")


def _open_time_index(values: pd.Series, path: Path) -> pd.DatetimeIndex:
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all():
        ms = numeric.to_numpy(dtype=np.float64)
        if not np.isfinite(ms).all() or (ms != np.round(ms)).any():
            raise DataError(f"{path}: open_time holds non-integer milliseconds")
        bad = first_time_out_of_range(ms)
        if bad is not None:
            raise DataError(f"{path}: row {bad + 1}: open_time {ms[bad]:.0f} is outside 2010-01-01 .. tomorrow "
                            f"in milliseconds (a unit or format mistake?)")
        ms = ms.astype(np.int64)
        if (ms % HOUR_MS).any():
            bad = int(np.flatnonzero(ms % HOUR_MS)[0])
            raise DataError(f"{path}: row {bad + 1}: open_time {ms[bad]} is not on the hour")
        return ms_to_utc_index(ms, "open_time")
    try:
        idx = to_utc_index(values.to_numpy(), "open_time")
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path}: open_time is neither milliseconds nor a time: {exc}") from exc
    if (idx.asi8 % (HOUR_MS * 1_000_000)).any():
        raise DataError(f"{path}: open_time values off the hour")
    return idx


def read_kline_csv(path: Path, drop_last: bool = True) -> pd.DataFrame:
    """One symbol's CSV -> a frame in the store's kline schema (index ``open_time``, UTC).

    Raises :class:`DataError` naming the file for a missing column, a
    non-numeric price, a time off the hour or out of range, duplicated hours,
    or a row breaking the store's value rules (:func:`~gnn_market.store.row_faults`):
    a bad file stops the import before anything is written.
    """
    try:
        raw = pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError, EOFError) as exc:
        raise DataError(f"{path}: unreadable CSV: {exc}") from exc
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; expected at least {list(REQUIRED)}")
    if raw.empty:
        raise DataError(f"{path}: no candles, only a header; remove the file or fill it")
    index = _open_time_index(raw["open_time"], path)
    if index.has_duplicates:
        raise DataError(f"{path}: open_time {index[index.duplicated()][0]} appears twice")
    if drop_last:
        # The partial candle is the newest one, wherever it sits in the file (dumps come in either order).
        keep = np.arange(len(raw)) != int(np.argmax(index.asi8))
        raw, index = raw[keep], index[keep]
        if raw.empty:
            raise DataError(f"{path}: its only candle is the newest hour, left out as possibly partial; "
                            f"pass --keep-last to import it")
    frame = pd.DataFrame(index=index)
    for column in KLINE_COLUMNS:
        if column in raw.columns:
            values = pd.to_numeric(raw[column], errors="coerce").to_numpy()
            if np.isnan(values.astype(np.float64)).any() and raw[column].notna().all():
                raise DataError(f"{path}: column {column!r} holds non-numeric values")
            frame[column] = values
    return checked_frame(frame, "klines", path)  # the store's value rules, before anything is written


def csv_files(folder: Path) -> list[Path]:
    """The ``<SYMBOL>.csv[.gz]`` files of ``folder`` (not recursive), sorted."""
    if not folder.is_dir():
        raise DataError(f"no such folder: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(SUFFIXES))
    if not files:
        raise DataError(f"no <SYMBOL>.csv or <SYMBOL>.csv.gz files in {folder}")
    return files


def read_csv_folder(folder: Path, drop_last: bool = True) -> dict[str, pd.DataFrame]:
    """Every symbol file of ``folder``, read and checked; ``{symbol: frame}``."""
    frames: dict[str, pd.DataFrame] = {}
    for path in csv_files(folder):
        symbol = symbol_of(path)
        if symbol in frames:
            raise DataError(f"{folder}: two files for {symbol}")
        frames[symbol] = read_kline_csv(path, drop_last)
    return frames


class CsvSource:
    """A folder of ``<SYMBOL>.csv[.gz]`` candle files as a :class:`~gnn_market.market_source.MarketSource`.

    Every file is read and checked when the source is made (:func:`read_csv_folder`: a bad file
    raises :class:`DataError` naming it then). The files' symbols are the universe of ``market``;
    a range filters rows; there is no book and no funding.

    Args:
        folder: the folder of ``<SYMBOL>.csv`` / ``<SYMBOL>.csv.gz`` files (not recursive).
        market: the market the candles belong to (``"spot"`` or ``"perp"``).
        drop_last: leave each file's newest row out (usually a partial hour).
    """

    def __init__(self, folder: Path, market: str = "spot", drop_last: bool = True) -> None:
        self.folder, self.market = Path(folder), validate_market(market)
        self.frames = read_csv_folder(self.folder, drop_last)

    def symbols(self, market: str) -> list[str]:
        return list(self.frames) if market == self.market else []

    def klines(self, symbol: str, market: str, start_ms: int, end_ms: int | None = None) -> pd.DataFrame:
        if market != self.market or symbol not in self.frames:
            return empty_frame("klines")
        return in_range(self.frames[symbol], start_ms, end_ms)

    def book(self, symbol: str, market: str) -> pd.DataFrame:
        return empty_frame("book")

    def funding(self, symbol: str, start_ms: int, end_ms: int | None = None) -> pd.DataFrame:
        return empty_frame("funding")

    def now_ms(self, market: str) -> int:
        return wall_clock_ms()


def import_csv_folder(folder: Path, store: Store, market: str = "spot", drop_last: bool = True,
                      symbols: list[str] | None = None, progress: bool = False) -> CsvImportReport:
    """Import every ``<SYMBOL>.csv[.gz]`` of ``folder`` (or only ``symbols``) into ``store``.

    Every file is read and checked (a :class:`CsvSource`), then every target (:meth:`Store.check_targets`:
    the store's marker and each symbol's stored file), before the first write
    (:func:`~gnn_market.market_source.copy_source`). A write that still fails
    (a full disk) raises :class:`StoreError` naming the symbols already written.
    """
    source = CsvSource(folder, market, drop_last)
    planned = list(source.frames)
    if symbols is not None:
        unknown = sorted(set(symbols) - set(planned))
        if unknown:
            raise DataError(f"no file for {', '.join(unknown)} in {folder}")
        planned = list(symbols)
    report = CsvImportReport()
    bar = tqdm(total=len(planned), desc="import-csv", unit="symbol", disable=None if progress else True)

    def written(series: Series, rows: int, added: int) -> None:
        report.rows_added[series[2]], report.rows_read[series[2]] = added, rows
        bar.update(1)

    def write_failed(exc: CryptoGraphError) -> StoreError:
        return StoreError(f"{exc}; {_written_so_far(report, planned)}")

    try:
        copy_source(source, store, [("klines", market, s) for s in planned], written=written, write_failed=write_failed)
    finally:
        bar.close()
    return report


def _written_so_far(report: CsvImportReport, planned: list[str]) -> str:
    """Which symbols an interrupted import wrote and which it did not, for the error line."""
    written = list(report.rows_added)
    left = [s for s in planned if s not in report.rows_added]
    done = (f"written before the failure: {', '.join(f'{s} (+{report.rows_added[s]} rows)' for s in written)}"
            if written else "no symbol was written")
    return f"{done}; not written: {', '.join(left)}; re-running the import is safe (writes are upserts)"
