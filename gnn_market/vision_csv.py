"""Parsing of Binance public-archive CSV bytes into store-schema frames (for :mod:`gnn_market.vision`).

Kline files are read by position (the REST kline array order), funding files by
header name; header or not is decided by content, timestamps in ms or µs per
value. Every data line becomes one row or the file is refused with a
:class:`~gnn_market.errors.DataError` naming it (the policy: :mod:`gnn_market.vision`).
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError
from .store_schema import checked_frame, first_time_out_of_range
from .timeutil import HOUR_MS

#: Timestamps at or above this are microseconds (spot files from 2025 on); below, milliseconds.
MICROSECOND_THRESHOLD = 10 ** 15

#: Kline CSV columns by position (the REST kline array order), and the store column each maps to.
KLINE_CSV_COLUMNS = ("open_time", "open", "high", "low", "close", "volume", "close_time",
                     "quote_volume", "count", "taker_buy_volume", "taker_buy_quote_volume", "ignore")
_KLINE_TO_STORE = {"open": "open", "high": "high", "low": "low", "close": "close", "volume": "volume",
                   "quote_volume": "quote_volume", "count": "trades",
                   "taker_buy_volume": "taker_buy_volume", "taker_buy_quote_volume": "taker_buy_quote_volume"}
# Header names seen for funding files (archive, REST-style exports), by meaning.
_FUNDING_TIME = ("calc_time", "fundingtime", "funding_time")
_FUNDING_RATE = ("last_funding_rate", "fundingrate", "funding_rate")
_FUNDING_MARK = ("markprice", "mark_price")


def parse_klines(data: bytes, source: str | Path) -> pd.DataFrame:
    """Parse a kline CSV (spot or USDT-M, header or not, ms or µs) into the store's kline schema.

    Returns a frame indexed by ``open_time`` (UTC) with the columns of
    ``store.KLINE_COLUMNS``. Raises :class:`DataError` naming ``source`` if the
    file is empty, truncated, non-numeric, off the hour, or not 1h candles.
    """
    table = _read_csv(data, source, time_columns=(0, 6), numeric=True)
    if table.shape[1] != len(KLINE_CSV_COLUMNS):
        raise DataError(f"{source}: expected {len(KLINE_CSV_COLUMNS)} kline columns, found {table.shape[1]}")
    table.columns = list(KLINE_CSV_COLUMNS)
    numbers = table.drop(columns="ignore")
    if not table.attrs["numeric"]:
        numbers = _numeric(numbers, source)
    open_ms = _to_ms(numbers["open_time"].to_numpy(), source, "open_time")
    close_ms = _to_ms(numbers["close_time"].to_numpy(), source, "close_time")
    span = close_ms - open_ms + 1
    if (span != HOUR_MS).any():
        bad = int(np.nonzero(span != HOUR_MS)[0][0])
        raise DataError(f"{source}: row {bad + 1} spans {span[bad] / 1000:g} s, not a 1h candle "
                        f"(only 1h klines are imported)")
    if (open_ms % HOUR_MS != 0).any():
        bad = int(np.nonzero(open_ms % HOUR_MS)[0][0])
        raise DataError(f"{source}: row {bad + 1} open_time is not on the hour")
    _refuse_repeats(open_ms, source, "open_time")
    out = numbers[list(_KLINE_TO_STORE)].rename(columns=_KLINE_TO_STORE)
    out.index = pd.DatetimeIndex(pd.to_datetime(open_ms, unit="ms", utc=True)).as_unit("ns").rename("open_time")
    return checked_frame(out, "klines", source)  # the store's rules (prices, OHLC order, volumes), per file


def parse_funding(data: bytes, source: str | Path) -> pd.DataFrame:
    """Parse a fundingRate CSV into the store's funding schema (index ``funding_time``).

    Columns are found by header name (``calc_time``/``fundingTime``,
    ``last_funding_rate``/``fundingRate``, optional ``markPrice``). A file
    without a header must have three columns: the archive's
    ``calc_time, funding_interval_hours, last_funding_rate`` (recognised by the
    small whole numbers in the middle column) or ``fundingTime, fundingRate, markPrice``.
    Times are rounded to the minute (the archive has millisecond jitter), like
    :func:`gnn_market.binance.parsers.round_funding_time`, so archive and REST rows coincide.
    """
    table = _read_csv(data, source, time_columns=(0,))
    if table.attrs["header"]:
        names = {str(c).strip().lower(): c for c in table.columns}
        time_col = next((names[n] for n in _FUNDING_TIME if n in names), None)
        rate_col = next((names[n] for n in _FUNDING_RATE if n in names), None)
        mark_col = next((names[n] for n in _FUNDING_MARK if n in names), None)
        if time_col is None or rate_col is None:
            raise DataError(f"{source}: funding file needs a time and a rate column, found {list(table.columns)}")
    else:
        if table.shape[1] != 3:
            raise DataError(f"{source}: headerless funding file must have 3 columns, found {table.shape[1]}")
        middle = pd.to_numeric(table[1], errors="coerce")
        archive_order = bool(middle.isin([1, 2, 4, 8]).all())
        time_col, rate_col, mark_col = (0, 2, None) if archive_order else (0, 1, 2)
    cols = [time_col, rate_col] + ([mark_col] if mark_col is not None else [])
    numbers = _numeric(table[cols], source)
    ms = _to_ms(numbers[time_col].to_numpy(), source, "funding time")
    seconds = (ms + 30_000) // 60_000 * 60  # to the minute, as the REST client does (no duplicates)
    _refuse_repeats(seconds, source, "funding time")
    out = pd.DataFrame({"funding_rate": numbers[rate_col].to_numpy(dtype="float64"),
                        "mark_price": numbers[mark_col].to_numpy(dtype="float64") if mark_col is not None
                        else np.full(len(numbers), np.nan)})
    out.index = pd.DatetimeIndex(pd.to_datetime(seconds, unit="s", utc=True)).as_unit("ns").rename("funding_time")
    return checked_frame(out, "funding", source)




def _read_csv(data: bytes, source: str | Path, time_columns: tuple[int, ...], numeric: bool = False) -> pd.DataFrame:
    """CSV cells as strings, or with ``numeric`` as float64 when every cell is a number.

    ``attrs["header"]`` says whether a header row was found and used: the
    first row is a header when every one of its ``time_columns`` holds a
    field name (letters first), decided by content, never by the shape of a
    number. Every non-blank line after it must become exactly one row.
    ``attrs["numeric"]`` says whether the float64 parse succeeded (else the
    cells are strings, for :func:`_numeric` to name the bad one). The bytes are
    parsed in place (no decoded copy): a large member costs a few times its size.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        data.decode("utf-8", errors="strict")  # validation only; the text itself is not kept
    except UnicodeDecodeError as exc:
        raise DataError(f"{source}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                        f"archive files are plain ASCII CSV") from exc
    first_line = _NON_BLANK_LINE.search(data)
    if first_line is None:
        raise DataError(f"{source}: empty CSV file")
    line_end = data.find(b"\n", first_line.start())
    first = next(csv.reader([data[first_line.start():None if line_end < 0 else line_end].decode()]), [])
    header = all(i < len(first) and _is_field_name(first[i]) for i in time_columns)
    lines_in = sum(1 for _ in _NON_BLANK_LINE.finditer(data)) - header
    table = None
    if numeric:
        try:
            table = pd.read_csv(io.BytesIO(data), header=0 if header else None, dtype="float64",
                                skip_blank_lines=True, engine="c", **_EXACT_FLOATS)
            if table.isna().to_numpy().any():
                table = None  # a missing cell: the string parse below names it
        except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
            table = None  # a non-numeric cell, or malformed: the string parse below says which
    if table is None:
        try:
            table = pd.read_csv(io.BytesIO(data), header=0 if header else None, dtype=str,
                                skip_blank_lines=True, engine="c")
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise DataError(f"{source}: malformed CSV ({str(exc).strip()})") from exc
        table.attrs["numeric"] = False
    else:
        table.attrs["numeric"] = True
    if table.empty:
        raise DataError(f"{source}: CSV file has no data rows")
    if len(table) != lines_in:  # e.g. a quoted field spanning lines: never lose or invent a row silently
        raise DataError(f"{source}: {lines_in} data line(s) but {len(table)} CSV row(s); malformed quoting?")
    table.attrs["header"] = header
    return table


# pandas 3 parses floats exactly (as float(text)) by default and deprecates the option; pandas 2's default
# may be one ulp off, which would make an archive row differ from the same REST row.
_EXACT_FLOATS = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}
_NON_BLANK_LINE = re.compile(rb"^[^\S\n]*\S", re.MULTILINE)
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_ .-]*")
_NOT_NAMES = {"nan", "inf", "infinity", "null", "none", "na", "n/a"}


def _is_field_name(cell: str) -> bool:
    """True for a header cell such as ``open_time`` / ``calc_time``; False for numbers, blanks, ``NaN``."""
    cell = cell.strip()
    return bool(_FIELD_NAME.fullmatch(cell)) and cell.lower() not in _NOT_NAMES


def _numeric(table: pd.DataFrame, source: str | Path) -> pd.DataFrame:
    """Every cell as a number; a missing or non-numeric cell (e.g. a truncated last row) is an error."""
    out = table.apply(lambda col: pd.to_numeric(col.str.strip(), errors="coerce"))
    bad = out.isna().to_numpy()
    if bad.any():
        row, col = (int(v[0]) for v in np.nonzero(bad))
        raise DataError(f"{source}: row {row + 1} column {table.columns[col]!r} is missing or not a number "
                        f"({table.iat[row, col]!r}); truncated or malformed file?")
    return out


def _to_ms(values: np.ndarray, source: str | Path, what: str) -> np.ndarray:
    """Epoch timestamps in ms or µs (detected per value; any numeric spelling) -> int64 milliseconds.

    Values must be whole numbers and, once in ms, fall in ``[MIN_TIME_MS, now + 1 day]``.
    """
    values = np.asarray(values, dtype="float64")
    # float64 holds every integer below 2**53 (~9e15, year 2255 in µs) exactly: the test below is exact.
    if not np.isfinite(values).all() or (values != np.floor(values)).any() or (values <= 0).any():
        raise DataError(f"{source}: {what} must be positive whole numbers (epoch ms or µs)")
    too_big = values >= 2.0 ** 53
    if too_big.any():
        raise DataError(f"{source}: row {int(np.flatnonzero(too_big)[0]) + 1} {what} {values[too_big][0]:.0f} "
                        f"is not an epoch time in ms or µs")
    as_int = values.astype("int64")
    ms = np.where(as_int >= MICROSECOND_THRESHOLD, as_int // 1000, as_int)
    row = first_time_out_of_range(ms)
    if row is not None:
        raise DataError(f"{source}: row {row + 1} {what} {as_int[row]} is {_ms_text(ms[row])}, outside "
                        f"2010-01-01 .. tomorrow (a unit or format mistake?)")
    return ms


def _refuse_repeats(times: np.ndarray, source: str | Path, what: str) -> None:
    """An archive file never repeats a time: a file that does is malformed (rows in must equal rows stored)."""
    order = np.sort(times)
    repeated = order[1:][order[1:] == order[:-1]]
    if len(repeated):
        raise DataError(f"{source}: {len(repeated)} row(s) repeat an earlier {what} (first "
                        f"{pd.Timestamp(int(repeated[0]), unit='ms' if what == 'open_time' else 's', tz='UTC')}); "
                        f"a malformed file")


def _ms_text(ms: int) -> str:
    """An epoch ms as a date when pandas can show it, else its year (no overflow on absurd values)."""
    if -(2 ** 63) // 1_000_000 < ms < (2 ** 63 - 1) // 1_000_000:
        return f"{pd.Timestamp(int(ms), unit='ms'):%Y-%m-%d %H:%M}"
    return f"in year ~{1970 + ms / (365.2425 * 86_400_000):.0f}"
